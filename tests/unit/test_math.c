/* test_math.c - elementwise and reduction builders: shapes, dtypes (PyTorch's
 * promotion), node structure of composites, every error path, and values
 * through the interpreter. */
#include "frontend/fe.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

/* ---- promotion ------------------------------------------------------------ */

static kiln_dtype add_dtype(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *r = kiln_add(g, a, b);
    assert_non_null(r);
    return kiln_tensor_dtype(r);
}

static void test_promotion_tensors(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const int64_t d[] = {3};
    struct {
        kiln_dtype a, b, want;
    } table[] = {
        {KILN_I32, KILN_F32, KILN_F32},  {KILN_I64, KILN_F64, KILN_F64},
        {KILN_BOOL, KILN_I32, KILN_I32}, {KILN_I32, KILN_I64, KILN_I64},
        {KILN_F32, KILN_F64, KILN_F64},  {KILN_BOOL, KILN_BOOL, KILN_BOOL},
        {KILN_BOOL, KILN_F32, KILN_F32}, {KILN_I64, KILN_F32, KILN_F32},
        {KILN_F32, KILN_F32, KILN_F32},  {KILN_I32, KILN_I32, KILN_I32},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        kiln_tensor *a = ku_input(g, table[i].a, 1, d), *b = ku_input(g, table[i].b, 1, d);
        assert_int_equal(add_dtype(g, a, b), table[i].want);
        assert_int_equal(add_dtype(g, b, a), table[i].want);
    }
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void test_promotion_zero_dim_and_scalars(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *f32 = ku_input(g, KILN_F32, KILN_SHAPE(3));
    kiln_tensor *i32 = ku_input(g, KILN_I32, KILN_SHAPE(3));
    kiln_tensor *b = ku_input(g, KILN_BOOL, KILN_SHAPE(3));
    kiln_tensor *f64_0d = ku_input(g, KILN_F64, 0, NULL);
    kiln_tensor *i64_0d = ku_input(g, KILN_I64, 0, NULL);
    kiln_tensor *f32_0d = ku_input(g, KILN_F32, 0, NULL);
    /* a 0-d tensor does not widen a dimensioned one of the same category */
    assert_int_equal(add_dtype(g, f32, f64_0d), KILN_F32);
    assert_int_equal(add_dtype(g, i32, i64_0d), KILN_I32);
    /* ... but a higher category wins */
    assert_int_equal(add_dtype(g, i32, f64_0d), KILN_F64);
    assert_int_equal(add_dtype(g, b, i64_0d), KILN_I64);
    /* 0-d with 0-d: ordinary promotion */
    assert_int_equal(add_dtype(g, i64_0d, f32_0d), KILN_F32);
    assert_int_equal(add_dtype(g, f32_0d, f64_0d), KILN_F64);
    /* weak scalars: the tensor's dtype unless the category is higher */
    assert_int_equal(add_dtype(g, i32, kiln_scalar(g, 2.5)), KILN_F32);
    assert_int_equal(add_dtype(g, i32, kiln_scalar(g, 2)), KILN_I32);
    assert_int_equal(add_dtype(g, f64_0d, kiln_scalar(g, 2.5)), KILN_F64);
    assert_int_equal(add_dtype(g, f32, kiln_scalar(g, 2)), KILN_F32);
    assert_int_equal(add_dtype(g, b, kiln_scalar(g, 2)), KILN_I64);
    assert_int_equal(add_dtype(g, kiln_scalar(g, 2), i32), KILN_I32);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void test_binary_structure(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *a = ku_input(g, KILN_I32, KILN_SHAPE(3, 1));
    kiln_tensor *b = ku_input(g, KILN_F32, KILN_SHAPE(4));
    kiln_tensor *r = kiln_mul(g, a, b);
    assert_shape(r, 3, 4);
    assert_int_equal(r->op, IR_MUL);
    assert_int_equal(r->dtype, KILN_F32);
    /* operands broadcast and converted: a is cast then expanded, b reshaped then expanded */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r->in[i]->dtype, KILN_F32);
        assert_int_equal(r->in[i]->rank, 2);
        assert_int_equal(r->in[i]->dims[0], 3);
        assert_int_equal(r->in[i]->dims[1], 4);
    }
    assert_int_equal(r->in[0]->op, IR_EXPAND);
    assert_int_equal(r->in[0]->in[0]->op, IR_CAST);
    assert_ptr_equal(r->in[0]->in[0]->in[0], a);
    /* no broadcast, no conversion: the operands themselves */
    kiln_tensor *s = kiln_sub(g, b, b);
    assert_int_equal(s->op, IR_SUB);
    assert_ptr_equal(s->in[0], b);
    assert_ptr_equal(s->in[1], b);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void test_broadcast_shapes(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    assert_shape(
        kiln_add(g, ku_input(g, KILN_F32, KILN_SHAPE(3, 1)), ku_input(g, KILN_F32, KILN_SHAPE(4))),
        3, 4);
    assert_shape(kiln_sub(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 1, 4)),
                          ku_input(g, KILN_F32, KILN_SHAPE(3, 1))),
                 2, 3, 4);
    assert_shape(
        kiln_pow(g, ku_input(g, KILN_F32, KILN_SHAPE(0, 1)), ku_input(g, KILN_F32, KILN_SHAPE(5))),
        0, 5);
    assert_shape(
        kiln_maximum(g, ku_input(g, KILN_F32, 0, NULL), ku_input(g, KILN_F32, KILN_SHAPE(2))), 2);
    assert_scalar_shape(kiln_minimum(g, ku_input(g, KILN_F32, 0, NULL), kiln_scalar(g, 1)));
    ku_assert_ok(g);
    kiln_add(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 3)), ku_input(g, KILN_F32, KILN_SHAPE(4)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_add: The size of tensor a (3) must match the size of tensor b (4) at "
                       "non-singleton dimension 1");
    kiln_graph_free(g);
}

static void test_div_is_true_division(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *i = ku_input(g, KILN_I32, KILN_SHAPE(3));
    kiln_tensor *r = kiln_div(g, i, i);
    assert_int_equal(r->op, IR_DIV);
    assert_int_equal(r->dtype, KILN_F32);
    assert_int_equal(r->in[0]->dtype, KILN_F32);
    assert_int_equal(r->in[1]->dtype, KILN_F32);
    assert_int_equal(kiln_tensor_dtype(kiln_div(g, i, kiln_scalar(g, 2))), KILN_F32);
    assert_int_equal(kiln_tensor_dtype(kiln_div(g, ku_input(g, KILN_BOOL, KILN_SHAPE(3)), i)),
                     KILN_F32);
    assert_int_equal(kiln_tensor_dtype(kiln_div(g, ku_input(g, KILN_F64, KILN_SHAPE(3)), i)),
                     KILN_F64);
    assert_int_equal(kiln_tensor_dtype(kiln_div(g, i, ku_input(g, KILN_F64, 0, NULL))), KILN_F64);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void test_comparisons(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *i = ku_input(g, KILN_I32, KILN_SHAPE(2, 3));
    kiln_tensor *f = ku_input(g, KILN_F32, KILN_SHAPE(3));
    kiln_tensor *(*fns[])(kiln_graph *, kiln_tensor *, kiln_tensor *) = {kiln_eq, kiln_ne, kiln_lt,
                                                                         kiln_le, kiln_gt, kiln_ge};
    ir_op ops[] = {IR_EQ, IR_NE, IR_LT, IR_LE, IR_GT, IR_GE};
    for (int k = 0; k < 6; k++) {
        kiln_tensor *r = fns[k](g, i, f);
        assert_shape(r, 2, 3);
        assert_int_equal(r->op, ops[k]);
        assert_int_equal(r->dtype, KILN_BOOL);
        /* computed in the promoted dtype */
        assert_int_equal(r->in[0]->dtype, KILN_F32);
        assert_int_equal(r->in[1]->dtype, KILN_F32);
    }
    kiln_tensor *r = kiln_lt(g, i, kiln_scalar(g, 2.5));
    assert_int_equal(r->dtype, KILN_BOOL);
    assert_int_equal(r->in[0]->dtype, KILN_F32);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void test_where(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *c = ku_input(g, KILN_BOOL, KILN_SHAPE(3, 1));
    kiln_tensor *a = ku_input(g, KILN_I32, KILN_SHAPE(4));
    kiln_tensor *b = ku_input(g, KILN_F64, 0, NULL);
    kiln_tensor *r = kiln_where(g, c, a, b);
    assert_shape(r, 3, 4);
    assert_int_equal(r->op, IR_WHERE);
    assert_int_equal(r->dtype, KILN_F64);
    assert_int_equal(r->in[0]->dtype, KILN_BOOL);
    assert_int_equal(r->in[1]->dtype, KILN_F64);
    /* a and b promote like a binary op: the condition takes no part */
    assert_int_equal(kiln_tensor_dtype(kiln_where(g, c, a, kiln_scalar(g, 0))), KILN_I32);
    assert_int_equal(kiln_tensor_dtype(
                         kiln_where(g, c, ku_input(g, KILN_F32, KILN_SHAPE(4)), kiln_scalar(g, 0))),
                     KILN_F32);
    ku_assert_ok(g);
    kiln_where(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), a, b);
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_where: where expected condition to be a boolean tensor, but got a "
                       "tensor with dtype Float");
    kiln_graph_free(g);

    g = ku_graph_new();
    kiln_where(g, ku_input(g, KILN_I64, KILN_SHAPE(3)), ku_input(g, KILN_F32, KILN_SHAPE(3)),
               ku_input(g, KILN_F32, KILN_SHAPE(3)));
    assert_graph_error(g, KILN_ERR_DTYPE, "but got a tensor with dtype Long");
    kiln_graph_free(g);

    g = ku_graph_new();
    kiln_where(g, ku_input(g, KILN_BOOL, KILN_SHAPE(3)), ku_input(g, KILN_F32, KILN_SHAPE(4)),
               ku_input(g, KILN_F32, 0, NULL));
    assert_graph_error(g, KILN_ERR_SHAPE, "kiln_where: The size of tensor a");
    kiln_graph_free(g);
}

static void test_bool_sub_and_neg(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *b = ku_input(g, KILN_BOOL, KILN_SHAPE(3));
    assert_null(kiln_sub(g, b, b));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_sub: Subtraction, the `-` operator, with two bool tensors is not "
                       "supported. Use the `^` or `logical_xor()` operator instead.");
    kiln_graph_free(g);

    g = ku_graph_new();
    b = ku_input(g, KILN_BOOL, KILN_SHAPE(3));
    assert_null(kiln_sub(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), b));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_sub: Subtraction, the `-` operator, with a bool tensor is not "
                       "supported. If you are trying to invert a mask, use the `~` or "
                       "`logical_not()` operator instead.");
    kiln_graph_free(g);

    g = ku_graph_new();
    b = ku_input(g, KILN_BOOL, KILN_SHAPE(3));
    assert_null(kiln_neg(g, b));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_neg: Negation, the `-` operator, on a bool tensor is not supported. "
                       "If you are trying to invert a mask, use the `~` or `logical_not()` "
                       "operator instead.");
    kiln_graph_free(g);
}

static void test_unary_dtypes(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *i = ku_input(g, KILN_I32, KILN_SHAPE(2, 3));
    kiln_tensor *l = ku_input(g, KILN_I64, KILN_SHAPE(2, 3));
    kiln_tensor *d = ku_input(g, KILN_F64, KILN_SHAPE(2, 3));
    kiln_tensor *(*floaty[])(kiln_graph *, kiln_tensor *) = {
        kiln_exp, kiln_log,  kiln_log1p, kiln_sqrt,    kiln_rsqrt, kiln_sin,
        kiln_cos, kiln_tanh, kiln_erf,   kiln_sigmoid, kiln_gelu,  kiln_silu};
    for (size_t k = 0; k < sizeof(floaty) / sizeof(floaty[0]); k++) {
        kiln_tensor *r = floaty[k](g, i);
        assert_shape(r, 2, 3);
        assert_int_equal(r->dtype, KILN_F32);
        assert_int_equal(kiln_tensor_dtype(floaty[k](g, d)), KILN_F64);
        assert_int_equal(kiln_tensor_dtype(floaty[k](g, ku_input(g, KILN_BOOL, KILN_SHAPE(2)))),
                         KILN_F32);
    }
    assert_int_equal(kiln_exp(g, i)->op, IR_EXP);
    assert_int_equal(kiln_exp(g, i)->in[0]->op, IR_CAST);
    /* abs, neg, relu keep integer dtypes */
    assert_int_equal(kiln_tensor_dtype(kiln_abs(g, i)), KILN_I32);
    assert_int_equal(kiln_tensor_dtype(kiln_neg(g, l)), KILN_I64);
    assert_int_equal(kiln_tensor_dtype(kiln_relu(g, l)), KILN_I64);
    assert_int_equal(kiln_relu(g, l)->op, IR_RELU);
    assert_int_equal(kiln_abs(g, d)->op, IR_ABS);
    assert_int_equal(kiln_neg(g, d)->op, IR_NEG);
    assert_int_equal(kiln_tensor_dtype(kiln_square(g, i)), KILN_I32);
    assert_int_equal(kiln_tensor_dtype(kiln_square(g, d)), KILN_F64);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static bool has_op(const kiln_tensor *t, ir_op op, int depth)
{
    if (t->op == op)
        return true;
    if (depth == 0)
        return false;
    for (int i = 0; i < t->nin; i++)
        if (has_op(t->in[i], op, depth - 1))
            return true;
    return false;
}

static void test_composite_structure(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(4));
    kiln_tensor *gl = kiln_gelu(g, x);
    assert_int_equal(gl->op, IR_MUL);
    assert_true(has_op(gl, IR_ERF, 4));
    assert_false(has_op(gl, IR_TANH, 6));
    kiln_tensor *s = kiln_silu(g, x);
    assert_int_equal(s->op, IR_MUL);
    assert_ptr_equal(s->in[0], x);
    assert_int_equal(s->in[1]->op, IR_SIGMOID);
    kiln_tensor *q = kiln_square(g, x);
    assert_int_equal(q->op, IR_MUL);
    assert_ptr_equal(q->in[0], x);
    assert_ptr_equal(q->in[1], x);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void test_cast(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(2, 2));
    kiln_tensor *c = kiln_cast(g, x, KILN_I64);
    assert_shape(c, 2, 2);
    assert_int_equal(c->op, IR_CAST);
    assert_int_equal(c->dtype, KILN_I64);
    assert_ptr_equal(kiln_cast(g, x, KILN_F32), x);
    assert_int_equal(kiln_tensor_dtype(kiln_cast(g, kiln_scalar(g, 2), KILN_F64)), KILN_F64);
    ku_assert_ok(g);
    assert_null(kiln_cast(g, x, (kiln_dtype)42));
    assert_graph_error(g, KILN_ERR_DTYPE, "kiln_cast: invalid dtype 42");
    kiln_graph_free(g);
}

static void test_null_propagation(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(3));
    int before = g->nnodes;
    assert_null(kiln_add(g, x, NULL));
    assert_null(kiln_add(g, NULL, x));
    assert_null(kiln_add(NULL, x, x));
    assert_null(kiln_where(g, NULL, x, x));
    assert_null(kiln_exp(g, NULL));
    assert_null(kiln_neg(g, NULL));
    assert_null(kiln_gelu(g, NULL));
    assert_null(kiln_silu(g, NULL));
    assert_null(kiln_square(g, NULL));
    assert_null(kiln_cast(g, NULL, KILN_F32));
    assert_null(kiln_sum(g, NULL, 0, false));
    assert_null(kiln_mean(g, NULL, 0, false));
    assert_null(kiln_max(g, NULL, 0, false));
    assert_null(kiln_argmin(g, NULL, 0, false));
    assert_null(kiln_sum_axes(g, NULL, 0, NULL, false));
    assert_null(kiln_sum_axes(g, x, 1, NULL, false));
    assert_null(kiln_mean_axes(g, x, 1, NULL, false));
    assert_int_equal(g->nnodes, before);
    ku_assert_ok(g);

    /* after an error every builder is a quiet NULL and the first error stays */
    kiln_neg(g, ku_input(g, KILN_BOOL, KILN_SHAPE(2)));
    assert_null(kiln_add(g, x, x));
    assert_null(kiln_sum(g, x, 5, false));
    assert_graph_error(g, KILN_ERR_DTYPE, "kiln_neg: Negation");
    kiln_graph_free(g);

    /* a tensor from another graph */
    g = ku_graph_new();
    kiln_graph *h = ku_graph_new();
    kiln_tensor *y = ku_input(h, KILN_F32, KILN_SHAPE(3));
    assert_null(kiln_add(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), y));
    assert_graph_error(g, KILN_ERR_INVALID, "operand 1 belongs to another graph");
    kiln_graph_free(g);
    kiln_graph_free(h);
}

/* ---- reductions ----------------------------------------------------------- */

static void test_sum_shapes(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(2, 3, 4));
    kiln_tensor *s = kiln_sum(g, x, 1, false);
    assert_shape(s, 2, 4);
    assert_int_equal(s->dtype, KILN_F32);
    assert_int_equal(s->op, IR_RESHAPE);
    assert_int_equal(s->in[0]->op, IR_SUM);
    assert_int_equal(s->in[0]->axes, 2u);
    kiln_tensor *k = kiln_sum(g, x, -1, true);
    assert_shape(k, 2, 3, 1);
    assert_int_equal(k->op, IR_SUM);
    assert_int_equal(k->axes, 4u);
    kiln_tensor *all = kiln_sum(g, x, KILN_ALL, false);
    assert_scalar_shape(all);
    assert_int_equal(all->in[0]->axes, 7u);
    assert_shape(kiln_sum(g, x, KILN_ALL, true), 1, 1, 1);
    /* integer and bool sums are int64, cast first */
    kiln_tensor *si = kiln_sum(g, ku_input(g, KILN_I32, KILN_SHAPE(3)), 0, false);
    assert_scalar_shape(si);
    assert_int_equal(si->dtype, KILN_I64);
    assert_int_equal(si->in[0]->op, IR_SUM);
    assert_int_equal(si->in[0]->in[0]->op, IR_CAST);
    assert_int_equal(
        kiln_tensor_dtype(kiln_sum(g, ku_input(g, KILN_BOOL, KILN_SHAPE(3)), 0, false)), KILN_I64);
    assert_int_equal(kiln_tensor_dtype(kiln_sum(g, ku_input(g, KILN_F64, KILN_SHAPE(3)), 0, false)),
                     KILN_F64);
    /* rank 0: axis 0 and -1 are allowed */
    kiln_tensor *z = ku_input(g, KILN_F32, 0, NULL);
    assert_scalar_shape(kiln_sum(g, z, 0, false));
    assert_scalar_shape(kiln_sum(g, z, -1, true));
    assert_scalar_shape(kiln_max(g, z, 0, false));
    assert_scalar_shape(kiln_argmax(g, z, KILN_ALL, false));
    ku_assert_ok(g);
    kiln_sum(g, x, 3, false);
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_sum: Dimension out of range (expected to be in range of [-3, 2], but "
                       "got 3)");
    kiln_graph_free(g);

    g = ku_graph_new();
    kiln_sum(g, ku_input(g, KILN_F32, 0, NULL), 1, false);
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_sum: Dimension out of range (expected to be in range of [-1, 0], but "
                       "got 1)");
    kiln_graph_free(g);
}

static void test_mean(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F64, KILN_SHAPE(2, 3, 4));
    kiln_tensor *m = kiln_mean(g, x, 1, false);
    assert_shape(m, 2, 4);
    assert_int_equal(m->dtype, KILN_F64);
    assert_int_equal(m->op, IR_DIV);
    assert_int_equal(m->in[1]->op, IR_EXPAND);
    assert_int_equal(m->in[1]->in[0]->in[0]->op, IR_FULL);
    assert_true(m->in[1]->in[0]->in[0]->value == 3.0);
    assert_scalar_shape(kiln_mean(g, x, KILN_ALL, false));
    assert_shape(kiln_mean(g, x, KILN_ALL, true), 1, 1, 1);
    ku_assert_ok(g);

    const kiln_dtype bad[] = {KILN_I64, KILN_I32, KILN_BOOL};
    const char *names[] = {"Long", "Int", "Bool"};
    for (int i = 0; i < 3; i++) {
        kiln_graph *h = ku_graph_new();
        assert_null(kiln_mean(h, ku_input(h, bad[i], KILN_SHAPE(3)), 0, false));
        char want[256];
        snprintf(want, sizeof(want),
                 "kiln_mean: mean(): could not infer output dtype. Input dtype must be either a "
                 "floating point or complex dtype. Got: %s",
                 names[i]);
        assert_graph_error(h, KILN_ERR_DTYPE, want);
        kiln_graph_free(h);
    }
    kiln_graph_free(g);
}

static void test_max_min_arg(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_I32, KILN_SHAPE(2, 3));
    kiln_tensor *mx = kiln_max(g, x, 1, false);
    assert_shape(mx, 2);
    assert_int_equal(mx->dtype, KILN_I32);
    assert_int_equal(mx->in[0]->op, IR_MAX);
    kiln_tensor *mn = kiln_min(g, x, 0, true);
    assert_shape(mn, 1, 3);
    assert_int_equal(mn->op, IR_MIN);
    kiln_tensor *am = kiln_argmax(g, x, KILN_ALL, false);
    assert_scalar_shape(am);
    assert_int_equal(am->dtype, KILN_I64);
    assert_int_equal(am->in[0]->op, IR_ARGMAX);
    assert_int_equal(am->in[0]->axes, 3u);
    assert_shape(kiln_argmax(g, x, KILN_ALL, true), 1, 1);
    kiln_tensor *an = kiln_argmin(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 5)), -1, true);
    assert_shape(an, 4, 1);
    assert_int_equal(an->dtype, KILN_I64);
    assert_int_equal(an->op, IR_ARGMIN);
    /* max over a non-empty axis of a tensor that is empty elsewhere is fine */
    assert_shape(kiln_max(g, ku_input(g, KILN_F32, KILN_SHAPE(0, 3)), 1, false), 0);
    assert_int_equal(
        kiln_tensor_dtype(kiln_max(g, ku_input(g, KILN_BOOL, KILN_SHAPE(3)), 0, false)), KILN_BOOL);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void test_empty_reduction_errors(void **state)
{
    (void)state;
    struct {
        kiln_tensor *(*fn)(kiln_graph *, kiln_tensor *, int, bool);
        int axis;
        const char *msg;
    } cases[] = {
        {kiln_max, 0, "kiln_max: max(): Expected reduction dim 0 to have non-zero size."},
        {kiln_min, -2, "kiln_min: min(): Expected reduction dim 0 to have non-zero size."},
        {kiln_max, KILN_ALL,
         "kiln_max: max(): Expected reduction dim to be specified for input.numel() == 0. "
         "Specify the reduction dim with the 'dim' argument."},
        {kiln_min, KILN_ALL,
         "kiln_min: min(): Expected reduction dim to be specified for input.numel() == 0. "
         "Specify the reduction dim with the 'dim' argument."},
        {kiln_argmax, KILN_ALL,
         "kiln_argmax: argmax(): Expected reduction dim to be specified for input.numel() == 0."},
        {kiln_argmin, KILN_ALL,
         "kiln_argmin: argmin(): Expected reduction dim to be specified for input.numel() == 0."},
        {kiln_argmax, 0, "kiln_argmax: argmax(): Expected reduction dim 0 to have non-zero size."},
        {kiln_max, 2,
         "kiln_max: Dimension out of range (expected to be in range of [-2, 1], but "
         "got 2)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln_graph *g = ku_graph_new();
        assert_null(cases[i].fn(g, ku_input(g, KILN_F32, KILN_SHAPE(0, 3)), cases[i].axis, false));
        assert_graph_error(g, KILN_ERR_SHAPE, cases[i].msg);
        kiln_graph_free(g);
    }
    /* the sum and mean of nothing are fine (0 and nan) */
    kiln_graph *g = ku_graph_new();
    assert_scalar_shape(kiln_sum(g, ku_input(g, KILN_F32, KILN_SHAPE(0, 3)), KILN_ALL, false));
    assert_shape(kiln_mean(g, ku_input(g, KILN_F32, KILN_SHAPE(0, 3)), 0, false), 3);
    ku_assert_ok(g);
    kiln_graph_free(g);

    g = ku_graph_new();
    assert_null(kiln_argmax(g, ku_input(g, KILN_BOOL, KILN_SHAPE(3)), 0, false));
    assert_graph_error(g, KILN_ERR_DTYPE, "kiln_argmax: \"argmax_cpu\" not implemented for 'Bool'");
    kiln_graph_free(g);
}

static void test_sum_mean_axes(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(2, 3, 4));
    kiln_tensor *s = kiln_sum_axes(g, x, 2, (const int[]){0, 2}, false);
    assert_shape(s, 3);
    assert_int_equal(s->in[0]->axes, 5u);
    assert_shape(kiln_sum_axes(g, x, 2, (const int[]){-1, 0}, true), 1, 3, 1);
    assert_scalar_shape(kiln_sum_axes(g, x, 0, NULL, false));
    assert_shape(kiln_sum_axes(g, x, 0, NULL, true), 1, 1, 1);
    assert_int_equal(kiln_tensor_dtype(kiln_sum_axes(g, ku_input(g, KILN_I32, KILN_SHAPE(2, 2)), 1,
                                                     (const int[]){1}, false)),
                     KILN_I64);
    kiln_tensor *m = kiln_mean_axes(g, x, 2, (const int[]){0, 2}, false);
    assert_shape(m, 3);
    assert_int_equal(m->op, IR_DIV);
    assert_true(m->in[1]->in[0]->in[0]->value == 8.0);
    kiln_tensor *ma = kiln_mean_axes(g, x, 0, NULL, false);
    assert_scalar_shape(ma);
    assert_true(ma->in[1]->value == 24.0);
    ku_assert_ok(g);
    kiln_sum_axes(g, x, 2, (const int[]){1, -2}, false);
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_sum_axes: dim 1 appears multiple times in the list of dims");
    kiln_graph_free(g);

    g = ku_graph_new();
    kiln_mean_axes(g, ku_input(g, KILN_F32, KILN_SHAPE(2)), 2, (const int[]){0, 0}, true);
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_mean_axes: dim 0 appears multiple times in the list of dims");
    kiln_graph_free(g);

    g = ku_graph_new();
    kiln_mean_axes(g, ku_input(g, KILN_F32, KILN_SHAPE(2)), 1, (const int[]){4}, true);
    assert_graph_error(g, KILN_ERR_SHAPE, "kiln_mean_axes: Dimension out of range");
    kiln_graph_free(g);

    g = ku_graph_new();
    kiln_mean_axes(g, ku_input(g, KILN_I32, KILN_SHAPE(2)), 1, (const int[]){0}, true);
    assert_graph_error(g, KILN_ERR_DTYPE, "kiln_mean_axes: mean(): could not infer output dtype");
    kiln_graph_free(g);

    g = ku_graph_new();
    kiln_sum_axes(g, ku_input(g, KILN_F32, KILN_SHAPE(2)), -1, (const int[]){0}, true);
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_sum_axes: number of dims must be >= 0, but got -1");
    kiln_graph_free(g);
}

/* ---- values through the interpreter --------------------------------------- */

static void assert_close_f32(const float *got, const double *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * (1.0 + fabs(want[i])))) {
            fprintf(stderr, "element %zu: got %.9g, want %.9g\n", i, (double)got[i], want[i]);
            fail();
        }
}

static kiln_tensor *f32_from(kiln_graph *g, int rank, const int64_t *dims, const float *data)
{
    kiln_tensor *t = kiln_tensor_from(g, KILN_F32, rank, dims, data);
    assert_non_null(t);
    return t;
}

static void test_values_promotion(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const int32_t iv[] = {1, 2, 3};
    kiln_tensor *i = kiln_tensor_from(g, KILN_I32, KILN_SHAPE(3), iv);
    kiln_tensor *outs[] = {
        kiln_add(g, i, kiln_scalar(g, 2.5)),            /* f32 */
        kiln_mul(g, i, kiln_scalar(g, 2)),              /* i32 */
        kiln_div(g, i, kiln_scalar(g, 2)),              /* f32: true division */
        kiln_lt(g, i, kiln_scalar(g, 2.5)),             /* bool, compared as float */
        kiln_sum(g, i, 0, false),                       /* i64 */
        kiln_exp(g, kiln_sub(g, i, kiln_scalar(g, 1))), /* f32 */
    };
    kiln_module *m = ku_run_entry(g, 6, outs);
    float f[3];
    ku_get_f32(m, 0, f, 3);
    assert_close_f32(f, (const double[]){3.5, 4.5, 5.5}, 3, 0);
    int32_t iv2[3];
    ku_get_bytes(m, 1, iv2, sizeof(iv2));
    assert_int_equal(iv2[0], 2);
    assert_int_equal(iv2[2], 6);
    ku_get_f32(m, 2, f, 3);
    assert_close_f32(f, (const double[]){0.5, 1.0, 1.5}, 3, 0);
    bool lt[3];
    ku_get_bytes(m, 3, lt, sizeof(lt));
    assert_true(lt[0] && lt[1] && !lt[2]);
    int64_t sum;
    ku_get_bytes(m, 4, &sum, sizeof(sum));
    assert_int_equal(sum, 6);
    ku_get_f32(m, 5, f, 3);
    assert_close_f32(f, (const double[]){1.0, exp(1.0), exp(2.0)}, 3, 1e-6);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_values_unary(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const float xv[] = {-2.0f, -0.5f, 0.0f, 1.0f, 3.0f};
    kiln_tensor *x = f32_from(g, KILN_SHAPE(5), xv);
    kiln_tensor *outs[] = {kiln_gelu(g, x), kiln_silu(g, x), kiln_square(g, x),
                           kiln_relu(g, x), kiln_abs(g, x),  kiln_neg(g, x)};
    kiln_module *m = ku_run_entry(g, 6, outs);
    double want[6][5];
    for (int k = 0; k < 5; k++) {
        double v = (double)xv[k];
        want[0][k] = 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
        want[1][k] = v / (1.0 + exp(-v));
        want[2][k] = v * v;
        want[3][k] = v > 0 ? v : 0;
        want[4][k] = fabs(v);
        want[5][k] = -v;
    }
    for (int o = 0; o < 6; o++) {
        float f[5];
        ku_get_f32(m, o, f, 5);
        assert_close_f32(f, want[o], 5, 1e-6);
    }
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* log1p(x) = log(1 + x), exact near 0 where log(1 + x) is not: against the
 * series x - x^2/2 + x^3/3 there, and ln 2, 1, -inf, nan elsewhere; f64 and
 * f32, on the interpreter and the C target. */
static void test_values_log1p(void **state)
{
    (void)state;
    const double xv[] = {0.0, 1e-10, -3e-9, -0.5, 1.718281828459045 /* e - 1 */, -1.0, -2.0};
    double want[7];
    for (int k = 0; k < 3; k++) {
        double x = xv[k];
        want[k] = x - x * x / 2 + x * x * x / 3;
    }
    want[3] = -0.6931471805599453 /* -ln 2 */, want[4] = 1.0;
    want[5] = -(double)INFINITY, want[6] = (double)NAN;
    for (int target = 0; target < 2; target++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *x = kiln_tensor_from(g, KILN_F64, KILN_SHAPE(7), xv);
        kiln_tensor *outs[] = {kiln_log1p(g, x), kiln_log1p(g, kiln_cast(g, x, KILN_F32))};
        assert_int_equal(kiln_entry(g, "f", 2, outs, (const char *[]){"d", "s"}), KILN_OK);
        kiln_compile_opts o = {.target = target ? KILN_TARGET_C : KILN_TARGET_INTERP};
        kiln_module *m = NULL;
        assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        double d[7];
        float f[7];
        assert_int_equal(kiln_module_get(m, "d", d, sizeof d), KILN_OK);
        assert_int_equal(kiln_module_get(m, "s", f, sizeof f), KILN_OK);
        for (int k = 0; k < 5; k++) {
            double fk = (double)(float)xv[k], wf = k < 3 ? fk - fk * fk / 2 : want[k];
            if (fabs(d[k] - want[k]) > 1e-15 * fabs(want[k]) ||
                fabs((double)f[k] - wf) > 2e-7 * fabs(wf))
                fail_msg("target %d: log1p(%g) = %.17g (f64), %.9g (f32); want %.17g, %.9g", target,
                         xv[k], d[k], (double)f[k], want[k], wf);
        }
        assert_true(isinf(d[5]) && d[5] < 0 && isinf((double)f[5]) && f[5] < 0);
        assert_true(isnan(d[6]) && isnan((double)f[6]));
        kiln_module_free(m);
        kiln_graph_free(g);
    }
}

static void test_values_where_broadcast(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const bool cv[] = {true, false};
    const float av[] = {1, 2, 3};
    kiln_tensor *c = kiln_tensor_from(g, KILN_BOOL, KILN_SHAPE(2, 1), cv);
    kiln_tensor *a = f32_from(g, KILN_SHAPE(3), av);
    kiln_tensor *outs[] = {kiln_where(g, c, a, kiln_scalar(g, -1))};
    kiln_module *m = ku_run_entry(g, 1, outs);
    float f[6];
    ku_get_f32(m, 0, f, 6);
    assert_close_f32(f, (const double[]){1, 2, 3, -1, -1, -1}, 6, 0);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_values_reductions(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    /* x = [[1, 5, 3], [4, 2, 6]] */
    const float xv[] = {1, 5, 3, 4, 2, 6};
    kiln_tensor *x = f32_from(g, KILN_SHAPE(2, 3), xv);
    kiln_tensor *outs[] = {
        kiln_sum(g, x, 1, false),                           /* [9, 12] */
        kiln_mean(g, x, 0, false),                          /* [2.5, 3.5, 4.5] */
        kiln_max(g, x, 1, true),                            /* [[5], [6]] */
        kiln_min(g, x, KILN_ALL, false),                    /* 1 */
        kiln_argmax(g, x, KILN_ALL, false),                 /* 5 */
        kiln_argmin(g, x, 1, false),                        /* [0, 1] */
        kiln_sum_axes(g, x, 0, NULL, false),                /* 21 */
        kiln_mean_axes(g, x, 2, (const int[]){0, 1}, true), /* [[3.5]] */
    };
    kiln_module *m = ku_run_entry(g, 8, outs);
    float f[3];
    ku_get_f32(m, 0, f, 2);
    assert_close_f32(f, (const double[]){9, 12}, 2, 0);
    ku_get_f32(m, 1, f, 3);
    assert_close_f32(f, (const double[]){2.5, 3.5, 4.5}, 3, 0);
    ku_get_f32(m, 2, f, 2);
    assert_close_f32(f, (const double[]){5, 6}, 2, 0);
    ku_get_f32(m, 3, f, 1);
    assert_close_f32(f, (const double[]){1}, 1, 0);
    int64_t idx[2];
    ku_get_bytes(m, 4, idx, sizeof(int64_t));
    assert_int_equal(idx[0], 5);
    ku_get_bytes(m, 5, idx, sizeof(idx));
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    ku_get_f32(m, 6, f, 1);
    assert_close_f32(f, (const double[]){21}, 1, 0);
    ku_get_f32(m, 7, f, 1);
    assert_close_f32(f, (const double[]){3.5}, 1, 0);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promotion_tensors),
        cmocka_unit_test(test_promotion_zero_dim_and_scalars),
        cmocka_unit_test(test_binary_structure),
        cmocka_unit_test(test_broadcast_shapes),
        cmocka_unit_test(test_div_is_true_division),
        cmocka_unit_test(test_comparisons),
        cmocka_unit_test(test_where),
        cmocka_unit_test(test_bool_sub_and_neg),
        cmocka_unit_test(test_unary_dtypes),
        cmocka_unit_test(test_composite_structure),
        cmocka_unit_test(test_cast),
        cmocka_unit_test(test_null_propagation),
        cmocka_unit_test(test_sum_shapes),
        cmocka_unit_test(test_mean),
        cmocka_unit_test(test_max_min_arg),
        cmocka_unit_test(test_empty_reduction_errors),
        cmocka_unit_test(test_sum_mean_axes),
        cmocka_unit_test(test_values_promotion),
        cmocka_unit_test(test_values_unary),
        cmocka_unit_test(test_values_log1p),
        cmocka_unit_test(test_values_where_broadcast),
        cmocka_unit_test(test_values_reductions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
