/* test_nn.c - matmul, linear, softmax, layer_norm, embedding, dropout and the
 * losses: shapes, dtypes, node structure, every error path, and values
 * through the interpreter. */
#include "frontend/fe.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Finds the MATMUL node under t (through reshapes). */
static const kiln_tensor *find_matmul(const kiln_tensor *t)
{
    while (t && t->op != IR_MATMUL)
        t = t->nin ? t->in[0] : NULL;
    assert_non_null(t);
    return t;
}

static int count_ops(const kiln_graph *g, ir_op op)
{
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        n += g->nodes[i]->op == op;
    return n;
}

/* Runs one case that must fail with status s and message msg. */
typedef void (*build_fn)(kiln_graph *g);
static void expect_error(build_fn build, kiln_status s, const char *msg)
{
    kiln_graph *g = ku_graph_new();
    build(g);
    assert_graph_error(g, s, msg);
    kiln_graph_free(g);
}

/* ---- matmul --------------------------------------------------------------- */

static void test_matmul_shapes(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *r = kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 3)),
                                 ku_input(g, KILN_F32, KILN_SHAPE(3, 2)));
    assert_shape(r, 4, 2);
    assert_int_equal(r->op, IR_MATMUL);
    assert_int_equal(r->dtype, KILN_F32);

    /* 1-D @ 1-D: a 0-d dot product */
    r = kiln_matmul(g, ku_input(g, KILN_F64, KILN_SHAPE(3)), ku_input(g, KILN_F64, KILN_SHAPE(3)));
    assert_scalar_shape(r);
    assert_int_equal(r->dtype, KILN_F64);
    assert_int_equal(find_matmul(r)->rank, 2);

    /* matrix-vector and vector-matrix */
    assert_shape(kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 3)),
                             ku_input(g, KILN_F32, KILN_SHAPE(3))),
                 4);
    assert_shape(kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(3)),
                             ku_input(g, KILN_F32, KILN_SHAPE(3, 2))),
                 2);

    /* batched times a matrix folds into one 2-D product */
    r = kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 4, 3)),
                    ku_input(g, KILN_F32, KILN_SHAPE(3, 5)));
    assert_shape(r, 2, 4, 5);
    const kiln_tensor *mm = find_matmul(r);
    assert_int_equal(mm->rank, 2);
    assert_int_equal(mm->dims[0], 8);
    assert_int_equal(mm->dims[1], 5);

    /* broadcast batch dims: both operands expanded to the same batch */
    r = kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(5, 1, 4, 3)),
                    ku_input(g, KILN_F32, KILN_SHAPE(2, 3, 6)));
    assert_shape(r, 5, 2, 4, 6);
    assert_int_equal(r->op, IR_MATMUL);
    assert_int_equal(r->in[0]->rank, 4);
    assert_int_equal(r->in[1]->rank, 4);
    for (int d = 0; d < 2; d++) {
        assert_int_equal(r->in[0]->dims[d], r->dims[d]);
        assert_int_equal(r->in[1]->dims[d], r->dims[d]);
    }

    /* a matrix times a batch */
    assert_shape(kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 3)),
                             ku_input(g, KILN_F32, KILN_SHAPE(2, 3, 5))),
                 2, 4, 5);
    /* 1-D with batched */
    assert_shape(kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(3)),
                             ku_input(g, KILN_F32, KILN_SHAPE(2, 3, 4))),
                 2, 4);
    assert_shape(kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 4, 3)),
                             ku_input(g, KILN_F32, KILN_SHAPE(3))),
                 2, 4);
    /* integers are allowed (no promotion) */
    assert_int_equal(kiln_tensor_dtype(kiln_matmul(g, ku_input(g, KILN_I64, KILN_SHAPE(2, 2)),
                                                   ku_input(g, KILN_I64, KILN_SHAPE(2, 2)))),
                     KILN_I64);
    /* empty dims */
    assert_shape(kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(0, 3)),
                             ku_input(g, KILN_F32, KILN_SHAPE(3, 2))),
                 0, 2);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void mm_0d(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_F32, 0, NULL), ku_input(g, KILN_F32, KILN_SHAPE(3)));
}
static void mm_dot(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), ku_input(g, KILN_F32, KILN_SHAPE(4)));
}
static void mm_2d(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 3)),
                ku_input(g, KILN_F32, KILN_SHAPE(4, 2)));
}
static void mm_mv(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 3)), ku_input(g, KILN_F32, KILN_SHAPE(4)));
}
static void mm_vm(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), ku_input(g, KILN_F32, KILN_SHAPE(4, 2)));
}
static void mm_batched(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 4, 3)),
                ku_input(g, KILN_F32, KILN_SHAPE(2, 4, 2)));
}
static void mm_batch_bcast(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 4, 3)),
                ku_input(g, KILN_F32, KILN_SHAPE(3, 3, 2)));
}
static void mm_dtype(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 2)),
                ku_input(g, KILN_F64, KILN_SHAPE(2, 2)));
}
static void mm_dtype2(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_I32, KILN_SHAPE(2, 2)),
                ku_input(g, KILN_I64, KILN_SHAPE(2, 2)));
}
static void mm_bool(kiln_graph *g)
{
    kiln_matmul(g, ku_input(g, KILN_BOOL, KILN_SHAPE(2, 2)),
                ku_input(g, KILN_BOOL, KILN_SHAPE(2, 2)));
}

static void test_matmul_errors(void **state)
{
    (void)state;
    expect_error(mm_0d, KILN_ERR_SHAPE,
                 "kiln_matmul: both arguments to matmul need to be at least 1D, but they are 0D "
                 "and 1D");
    expect_error(mm_dot, KILN_ERR_SHAPE,
                 "kiln_matmul: inconsistent tensor size, expected tensor [3] and src [4] to have "
                 "the same number of elements, but got 3 and 4 elements respectively");
    expect_error(mm_2d, KILN_ERR_SHAPE,
                 "kiln_matmul: mat1 and mat2 shapes cannot be multiplied (4x3 and 4x2)");
    expect_error(mm_mv, KILN_ERR_SHAPE,
                 "kiln_matmul: size mismatch, got input (4), mat (4x3), vec (4)");
    expect_error(mm_vm, KILN_ERR_SHAPE,
                 "kiln_matmul: mat1 and mat2 shapes cannot be multiplied (1x3 and 4x2)");
    expect_error(mm_batched, KILN_ERR_SHAPE,
                 "kiln_matmul: mat1 and mat2 shapes cannot be multiplied (4x3 and 4x2)");
    expect_error(mm_batch_bcast, KILN_ERR_SHAPE,
                 "kiln_matmul: The size of tensor a (2) must match the size of tensor b (3) at "
                 "non-singleton dimension 0");
    expect_error(mm_dtype, KILN_ERR_DTYPE,
                 "kiln_matmul: expected m1 and m2 to have the same dtype, but got: float != "
                 "double");
    expect_error(mm_dtype2, KILN_ERR_DTYPE,
                 "kiln_matmul: expected m1 and m2 to have the same dtype, but got: int != long");
    expect_error(mm_bool, KILN_ERR_DTYPE,
                 "kiln_matmul: \"addmm_impl_cpu_\" not implemented for 'Bool'");
}

/* ---- linear --------------------------------------------------------------- */

static void test_linear(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(4, 3));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2, 3), kiln_init_kaiming_uniform());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(2), kiln_init_kaiming_uniform());
    assert_non_null(w);
    assert_non_null(b);
    kiln_tensor *y = kiln_linear(g, x, w, b);
    assert_shape(y, 4, 2);
    assert_int_equal(y->op, IR_ADD);
    const kiln_tensor *mm = find_matmul(y->in[0]);
    assert_ptr_equal(mm->in[0], x);
    assert_int_equal(mm->in[1]->op, IR_PERMUTE);
    assert_ptr_equal(mm->in[1]->in[0], w);
    assert_int_equal(mm->in[1]->perm[0], 1);
    assert_int_equal(mm->in[1]->perm[1], 0);
    /* the bias takes the weight's fan_in, as nn.Linear's does */
    assert_int_equal(b->fan_in, 3);

    assert_shape(kiln_linear(g, ku_input(g, KILN_F32, KILN_SHAPE(5, 4, 3)), w, NULL), 5, 4, 2);
    assert_int_equal(kiln_linear(g, x, w, NULL)->op, IR_MATMUL);
    assert_shape(kiln_linear(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), w, b), 2);

    /* a bias that is not a kaiming param, or already has a fan_in, is left alone */
    kiln_tensor *b2 = kiln_param(g, "b2", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_linear(g, x, w, b2);
    assert_int_equal(b2->fan_in, 0);
    kiln_tensor *b3 = kiln_param(g, "b3", KILN_F32, KILN_SHAPE(2), kiln_init_kaiming_uniform());
    b3->fan_in = 7;
    kiln_linear(g, x, w, b3);
    assert_int_equal(b3->fan_in, 7);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void lin_mismatch(kiln_graph *g)
{
    kiln_linear(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 3)), ku_input(g, KILN_F32, KILN_SHAPE(2, 4)),
                NULL);
}
static void lin_mismatch_nd(kiln_graph *g)
{
    kiln_linear(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 5, 3)),
                ku_input(g, KILN_F32, KILN_SHAPE(2, 4)), NULL);
}
static void lin_0d(kiln_graph *g)
{
    kiln_linear(g, ku_input(g, KILN_F32, 0, NULL), ku_input(g, KILN_F32, KILN_SHAPE(2, 4)), NULL);
}
static void lin_w1d(kiln_graph *g)
{
    kiln_linear(g, ku_input(g, KILN_F32, KILN_SHAPE(4)), ku_input(g, KILN_F32, KILN_SHAPE(4)),
                NULL);
}
static void lin_dtype(kiln_graph *g)
{
    kiln_linear(g, ku_input(g, KILN_F64, KILN_SHAPE(4, 3)), ku_input(g, KILN_F32, KILN_SHAPE(2, 3)),
                NULL);
}
static void lin_bias_dtype(kiln_graph *g)
{
    kiln_linear(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 3)), ku_input(g, KILN_F32, KILN_SHAPE(2, 3)),
                ku_input(g, KILN_F64, KILN_SHAPE(2)));
}
static void lin_bias_shape(kiln_graph *g)
{
    kiln_linear(g, ku_input(g, KILN_F32, KILN_SHAPE(4, 3)), ku_input(g, KILN_F32, KILN_SHAPE(2, 3)),
                ku_input(g, KILN_F32, KILN_SHAPE(3)));
}

static void test_linear_errors(void **state)
{
    (void)state;
    expect_error(lin_mismatch, KILN_ERR_SHAPE,
                 "kiln_linear: mat1 and mat2 shapes cannot be multiplied (4x3 and 4x2)");
    expect_error(lin_mismatch_nd, KILN_ERR_SHAPE,
                 "kiln_linear: mat1 and mat2 shapes cannot be multiplied (10x3 and 4x2)");
    expect_error(lin_0d, KILN_ERR_SHAPE,
                 "kiln_linear: both arguments to linear need to be at least 1D, but they are 0D "
                 "and 2D");
    expect_error(lin_w1d, KILN_ERR_SHAPE,
                 "kiln_linear: weight must be 2-D (out_features, in_features), but got 1D");
    expect_error(lin_dtype, KILN_ERR_DTYPE,
                 "kiln_linear: expected m1 and m2 to have the same dtype, but got: double != "
                 "float");
    expect_error(lin_bias_dtype, KILN_ERR_DTYPE,
                 "kiln_linear: self and mat2 must have the same dtype, but got double and float");
    expect_error(lin_bias_shape, KILN_ERR_SHAPE,
                 "kiln_linear: The size of tensor a (2) must match the size of tensor b (3) at "
                 "non-singleton dimension 1");
}

/* ---- softmax -------------------------------------------------------------- */

static void test_softmax_structure(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(2, 5));
    kiln_tensor *s = kiln_softmax(g, x, -1);
    assert_shape(s, 2, 5);
    assert_int_equal(s->dtype, KILN_F32);
    assert_int_equal(s->op, IR_DIV);
    assert_int_equal(s->in[0]->op, IR_EXP);
    kiln_tensor *z = s->in[0]->in[0]; /* x - detach(max) */
    assert_int_equal(z->op, IR_SUB);
    assert_ptr_equal(z->in[0], x);
    assert_int_equal(z->in[1]->op, IR_EXPAND);
    assert_int_equal(z->in[1]->in[0]->op, IR_DETACH);
    assert_int_equal(z->in[1]->in[0]->in[0]->op, IR_MAX);
    assert_int_equal(z->in[1]->in[0]->in[0]->axes, 2u);

    kiln_tensor *l = kiln_log_softmax(g, x, 0);
    assert_shape(l, 2, 5);
    assert_int_equal(l->op, IR_SUB);
    assert_int_equal(l->in[1]->op, IR_EXPAND);
    assert_int_equal(l->in[1]->in[0]->op, IR_LOG);
    assert_int_equal(kiln_tensor_dtype(kiln_softmax(g, ku_input(g, KILN_F64, KILN_SHAPE(3)), 0)),
                     KILN_F64);
    assert_scalar_shape(kiln_softmax(g, ku_input(g, KILN_F32, 0, NULL), 0));
    assert_shape(kiln_softmax(g, ku_input(g, KILN_F32, KILN_SHAPE(0, 4)), 0), 0, 4);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void sm_long(kiln_graph *g)
{
    kiln_softmax(g, ku_input(g, KILN_I64, KILN_SHAPE(2, 3)), 1);
}
static void sm_int_dim0(kiln_graph *g)
{
    kiln_softmax(g, ku_input(g, KILN_I32, KILN_SHAPE(2, 3)), 0);
}
static void lsm_long(kiln_graph *g)
{
    kiln_log_softmax(g, ku_input(g, KILN_I64, KILN_SHAPE(3)), -1);
}
static void lsm_bool_dim0(kiln_graph *g)
{
    kiln_log_softmax(g, ku_input(g, KILN_BOOL, KILN_SHAPE(2, 3)), 0);
}
static void sm_axis(kiln_graph *g)
{
    kiln_softmax(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 3)), 2);
}

static void test_softmax_errors(void **state)
{
    (void)state;
    expect_error(sm_long, KILN_ERR_DTYPE,
                 "kiln_softmax: \"softmax_lastdim_kernel_impl\" not implemented for 'Long'");
    expect_error(sm_int_dim0, KILN_ERR_DTYPE,
                 "kiln_softmax: \"softmax_kernel_impl\" not implemented for 'Int'");
    expect_error(lsm_long, KILN_ERR_DTYPE,
                 "kiln_log_softmax: \"log_softmax_lastdim_kernel_impl\" not implemented for "
                 "'Long'");
    expect_error(lsm_bool_dim0, KILN_ERR_DTYPE,
                 "kiln_log_softmax: \"log_softmax_kernel_impl\" not implemented for 'Bool'");
    expect_error(sm_axis, KILN_ERR_SHAPE,
                 "kiln_softmax: Dimension out of range (expected to be in range of [-2, 1], but "
                 "got 2)");
}

/* ---- layer_norm ----------------------------------------------------------- */

static void test_layer_norm_shapes(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(2, 3, 4));
    kiln_tensor *w = ku_input(g, KILN_F32, KILN_SHAPE(4));
    kiln_tensor *b = ku_input(g, KILN_F32, KILN_SHAPE(4));
    kiln_tensor *y = kiln_layer_norm(g, x, w, b, 1e-5);
    assert_shape(y, 2, 3, 4);
    assert_int_equal(y->dtype, KILN_F32);
    assert_int_equal(y->op, IR_ADD);
    assert_int_equal(kiln_layer_norm(g, x, w, NULL, 1e-5)->op, IR_MUL);
    assert_shape(kiln_layer_norm(g, x, NULL, NULL, 1e-5), 2, 3, 4);
    assert_int_equal(kiln_layer_norm(g, x, NULL, b, 1e-5)->op, IR_ADD);
    assert_int_equal(kiln_tensor_dtype(
                         kiln_layer_norm(g, ku_input(g, KILN_F64, KILN_SHAPE(3)), NULL, NULL, 0.1)),
                     KILN_F64);
    assert_true(count_ops(g, IR_RSQRT) >= 5);
    ku_assert_ok(g);
    assert_null(kiln_layer_norm(g, NULL, w, b, 1e-5));
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void ln_weight(kiln_graph *g)
{
    kiln_layer_norm(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 3)),
                    ku_input(g, KILN_F32, KILN_SHAPE(4)), NULL, 1e-5);
}
static void ln_bias(kiln_graph *g)
{
    kiln_layer_norm(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 3)), NULL,
                    ku_input(g, KILN_F32, KILN_SHAPE(1, 3)), 1e-5);
}
static void ln_int(kiln_graph *g)
{
    kiln_layer_norm(g, ku_input(g, KILN_I64, KILN_SHAPE(2, 3)), NULL, NULL, 1e-5);
}
static void ln_0d(kiln_graph *g)
{
    kiln_layer_norm(g, ku_input(g, KILN_F32, 0, NULL), NULL, NULL, 1e-5);
}
static void ln_dtype(kiln_graph *g)
{
    kiln_layer_norm(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 3)),
                    ku_input(g, KILN_F64, KILN_SHAPE(3)), NULL, 1e-5);
}

static void test_layer_norm_errors(void **state)
{
    (void)state;
    expect_error(ln_weight, KILN_ERR_SHAPE,
                 "kiln_layer_norm: Expected weight to be of same shape as normalized_shape, but "
                 "got weight of shape [4] and normalized_shape = [3]");
    expect_error(ln_bias, KILN_ERR_SHAPE,
                 "kiln_layer_norm: Expected bias to be of same shape as normalized_shape, but got "
                 "bias of shape [1, 3] and normalized_shape = [3]");
    expect_error(ln_int, KILN_ERR_DTYPE,
                 "kiln_layer_norm: \"LayerNormKernelImpl\" not implemented for 'Long'");
    expect_error(ln_0d, KILN_ERR_SHAPE,
                 "kiln_layer_norm: Given normalized_shape=[], expected input with shape [*], but "
                 "got input of size[]");
    expect_error(ln_dtype, KILN_ERR_DTYPE,
                 "kiln_layer_norm: expected scalar type Float but found Double");
}

/* ---- embedding ------------------------------------------------------------ */

static void test_embedding(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *table = ku_input(g, KILN_F32, KILN_SHAPE(10, 4));
    kiln_tensor *ids = ku_input(g, KILN_I64, KILN_SHAPE(2, 3));
    kiln_tensor *e = kiln_embedding(g, table, ids);
    assert_shape(e, 2, 3, 4);
    assert_int_equal(e->op, IR_GATHER);
    assert_int_equal(e->axis, 0);
    assert_int_equal(e->dtype, KILN_F32);
    assert_ptr_equal(e->in[0], table);
    assert_ptr_equal(e->in[1], ids);
    assert_shape(kiln_embedding(g, table, ku_input(g, KILN_I32, 0, NULL)), 4);
    assert_shape(kiln_embedding(g, table, ku_input(g, KILN_I32, KILN_SHAPE(0))), 0, 4);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void emb_float(kiln_graph *g)
{
    kiln_embedding(g, ku_input(g, KILN_F32, KILN_SHAPE(10, 4)),
                   ku_input(g, KILN_F32, KILN_SHAPE(3)));
}
static void emb_bool(kiln_graph *g)
{
    kiln_embedding(g, ku_input(g, KILN_F32, KILN_SHAPE(10, 4)),
                   ku_input(g, KILN_BOOL, KILN_SHAPE(3)));
}
static void emb_table(kiln_graph *g)
{
    kiln_embedding(g, ku_input(g, KILN_F32, KILN_SHAPE(10)), ku_input(g, KILN_I64, KILN_SHAPE(3)));
}
static void emb_rank(kiln_graph *g)
{
    kiln_embedding(g, ku_input(g, KILN_F32, KILN_SHAPE(10, 4)),
                   ku_input(g, KILN_I64, KILN_SHAPE(1, 1, 1, 1, 1, 1, 1, 1)));
}

static void test_embedding_errors(void **state)
{
    (void)state;
    expect_error(emb_float, KILN_ERR_DTYPE,
                 "kiln_embedding: Expected tensor for argument #1 'indices' to have one of the "
                 "following scalar types: Long, Int; but got torch.FloatTensor instead (while "
                 "checking arguments for embedding)");
    expect_error(emb_bool, KILN_ERR_DTYPE, "but got torch.BoolTensor instead");
    expect_error(emb_table, KILN_ERR_SHAPE, "kiln_embedding: 'weight' must be 2-D");
    expect_error(emb_rank, KILN_ERR_SHAPE,
                 "kiln_embedding: result would have rank 9; the limit is 8");
}

/* ---- dropout -------------------------------------------------------------- */

static void test_dropout(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(4, 5));
    assert_ptr_equal(kiln_dropout(g, x, 0.0), x);
    kiln_tensor *z = kiln_dropout(g, x, 1.0);
    assert_shape(z, 4, 5);
    assert_int_equal(z->op, IR_MUL);
    kiln_tensor *d1 = kiln_dropout(g, x, 0.25);
    kiln_tensor *d2 = kiln_dropout(g, x, 0.25);
    assert_shape(d1, 4, 5);
    assert_int_equal(d1->op, IR_WHERE);
    assert_int_equal(d1->dtype, KILN_F32);
    kiln_tensor *keep1 = d1->in[0], *keep2 = d2->in[0];
    assert_int_equal(keep1->op, IR_GE);
    assert_int_equal(keep1->in[0]->op, IR_RAND);
    assert_int_equal(keep1->in[0]->dtype, KILN_F32);
    /* every dropout draws its own mask */
    assert_int_not_equal(keep1->in[0]->stream, keep2->in[0]->stream);
    assert_int_equal(count_ops(g, IR_RAND), 2);
    assert_int_equal(d1->in[1]->op, IR_DIV);
    assert_int_equal(kiln_tensor_dtype(kiln_dropout(g, ku_input(g, KILN_F64, KILN_SHAPE(3)), 0.5)),
                     KILN_F64);
    /* integers: p == 0 and p == 1 are fine, as in PyTorch */
    kiln_tensor *i = ku_input(g, KILN_I64, KILN_SHAPE(3));
    assert_ptr_equal(kiln_dropout(g, i, 0.0), i);
    assert_int_equal(kiln_tensor_dtype(kiln_dropout(g, i, 1.0)), KILN_I64);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void drop_big(kiln_graph *g)
{
    kiln_dropout(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), 1.5);
}
static void drop_neg(kiln_graph *g)
{
    kiln_dropout(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), -0.5);
}
static void drop_nan(kiln_graph *g)
{
    kiln_dropout(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), (double)NAN);
}
static void drop_int(kiln_graph *g)
{
    kiln_dropout(g, ku_input(g, KILN_I64, KILN_SHAPE(3)), 0.5);
}

static void test_dropout_errors(void **state)
{
    (void)state;
    expect_error(drop_big, KILN_ERR_INVALID,
                 "kiln_dropout: dropout probability has to be between 0 and 1, but got 1.5");
    expect_error(drop_neg, KILN_ERR_INVALID,
                 "kiln_dropout: dropout probability has to be between 0 and 1, but got -0.5");
    expect_error(drop_nan, KILN_ERR_INVALID,
                 "kiln_dropout: dropout probability has to be between 0 and 1, but got nan");
    expect_error(drop_int, KILN_ERR_DTYPE,
                 "kiln_dropout: result type Float can't be cast to the desired output type Long");
}

/* ---- losses --------------------------------------------------------------- */

static void test_mse_loss(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *p = ku_input(g, KILN_F32, KILN_SHAPE(4, 1));
    kiln_tensor *t = ku_input(g, KILN_F32, KILN_SHAPE(4, 1));
    kiln_tensor *l = kiln_mse_loss(g, p, t);
    assert_scalar_shape(l);
    assert_int_equal(l->dtype, KILN_F32);
    assert_int_equal(l->op, IR_DIV);
    assert_true(l->in[1]->value == 4.0);
    /* broadcasting is allowed (PyTorch warns) */
    kiln_tensor *lb = kiln_mse_loss(g, p, ku_input(g, KILN_F32, KILN_SHAPE(4)));
    assert_scalar_shape(lb);
    assert_true(lb->in[1]->value == 16.0);
    assert_int_equal(
        kiln_tensor_dtype(kiln_mse_loss(g, p, ku_input(g, KILN_F64, KILN_SHAPE(4, 1)))), KILN_F64);
    assert_int_equal(
        kiln_tensor_dtype(kiln_mse_loss(g, p, ku_input(g, KILN_I64, KILN_SHAPE(4, 1)))), KILN_F32);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static void mse_int(kiln_graph *g)
{
    kiln_mse_loss(g, ku_input(g, KILN_I64, KILN_SHAPE(3)), ku_input(g, KILN_I64, KILN_SHAPE(3)));
}
static void mse_shape(kiln_graph *g)
{
    kiln_mse_loss(g, ku_input(g, KILN_F32, KILN_SHAPE(3)), ku_input(g, KILN_F32, KILN_SHAPE(4)));
}

static void test_mse_errors(void **state)
{
    (void)state;
    expect_error(mse_int, KILN_ERR_DTYPE, "kiln_mse_loss: \"mse_cpu\" not implemented for 'Long'");
    expect_error(mse_shape, KILN_ERR_SHAPE,
                 "kiln_mse_loss: The size of tensor a (3) must match the size of tensor b (4) at "
                 "non-singleton dimension 0");
}

static void test_cross_entropy(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(3, 5));
    kiln_tensor *y = ku_input(g, KILN_I64, KILN_SHAPE(3));
    kiln_tensor *l = kiln_cross_entropy(g, x, y);
    assert_scalar_shape(l);
    assert_int_equal(l->dtype, KILN_F32);
    assert_int_equal(count_ops(g, IR_ARANGE), 1);
    assert_int_equal(count_ops(g, IR_EQ), 1);
    assert_int_equal(count_ops(g, IR_NE), 1);    /* labels kept: not ignore_index */
    assert_int_equal(count_ops(g, IR_WHERE), 2); /* the picked log-prob, the checked id */
    assert_int_equal(count_ops(g, IR_LOG), 1);
    assert_int_equal(
        kiln_tensor_dtype(kiln_cross_entropy(g, ku_input(g, KILN_F64, KILN_SHAPE(2, 4)),
                                             ku_input(g, KILN_I64, KILN_SHAPE(2)))),
        KILN_F64);
    /* one sample: logits (C), a 0-d label */
    assert_scalar_shape(kiln_cross_entropy(g, ku_input(g, KILN_F32, KILN_SHAPE(5)),
                                           ku_input(g, KILN_I64, 0, NULL)));
    ku_assert_ok(g);
    kiln_graph_free(g);
}

/* A label outside [0, C) is a run-time error on both targets, also inside a
 * train step (whose params then stay as they were); in-range labels run. */
static void test_cross_entropy_label_out_of_range(void **state)
{
    (void)state;
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3, 4), kiln_init_const(0.5));
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
        kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(2));
        kiln_tensor *loss = kiln_cross_entropy(g, kiln_matmul(g, x, w), y);
        assert_int_equal(kiln_train_step(g, "train", loss, kiln_sgd(0.1, 0, 0)), KILN_OK);
        kiln_module *m = NULL;
        kiln_compile_opts o = {.target = t ? KILN_TARGET_C : KILN_TARGET_INTERP};
        assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
        float xv[6] = {1, 2, 3, 4, 5, 6}, wv[12], before[12];
        assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
        assert_int_equal(kiln_module_get(m, "w", before, sizeof before), KILN_OK);
        static const int64_t bad[][2] = {{0, 4}, {-1, 2}, {7, 0}};
        static const char *const why[] = {"index 4 is out of bounds for dimension 0 with size 4",
                                          "index -1 is out of bounds for dimension 0 with size 4",
                                          "index 7 is out of bounds for dimension 0 with size 4"};
        for (int i = 0; i < 3; i++) {
            assert_int_equal(kiln_module_set(m, "y", bad[i], sizeof bad[i]), KILN_OK);
            kiln_status s = kiln_module_run(m, "train");
            assert_module_error(m, s, KILN_ERR_INVALID, why[i]);
            assert_int_equal(kiln_module_get(m, "w", wv, sizeof wv), KILN_OK);
            assert_memory_equal(wv, before, sizeof wv);
        }
        const int64_t good[2] = {3, 0};
        assert_int_equal(kiln_module_set(m, "y", good, sizeof good), KILN_OK);
        assert_int_equal(kiln_module_run(m, "train"), KILN_OK);
        double l;
        assert_int_equal(kiln_module_get_scalar(m, "train.loss", &l), KILN_OK);
        assert_true(fabs(l - log(4.0)) < 1e-6); /* equal logits in every row */
        kiln_module_free(m);
        kiln_graph_free(g);
    }
}

/* PyTorch's ignore_index = -100: a -100 label adds nothing to the loss or the
 * gradient and does not count in the mean; every label -100 gives nan; -101
 * is still out of range. Values against log-softmax computed here in double,
 * on both targets. */
static void test_cross_entropy_ignores_minus_100(void **state)
{
    (void)state;
    static const double lv[3][4] = {{1, 2, 3, 4}, {0.5, -1, 2, 0}, {3, 3, -2, 1}};
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3, 4));
        kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(3));
        kiln_tensor *loss = kiln_cross_entropy(g, x, y), *dx;
        assert_int_equal(kiln_grad(g, loss, 1, &x, NULL, &dx), KILN_OK);
        kiln_tensor *outs[] = {loss, dx};
        assert_int_equal(kiln_entry(g, "f", 2, outs, (const char *[]){"loss", "dx"}), KILN_OK);
        kiln_module *m = ku_compile_for(g, t ? KILN_TARGET_C : KILN_TARGET_INTERP);
        assert_int_equal(kiln_module_set(m, "x", lv, sizeof lv), KILN_OK);
        const int64_t labels[3] = {2, -100, 0};
        assert_int_equal(kiln_module_set(m, "y", labels, sizeof labels), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        double got, dxv[3][4], want = 0, p[3][4];
        for (int r = 0; r < 3; r++) {
            double z = 0;
            for (int c = 0; c < 4; c++)
                z += exp(lv[r][c]);
            for (int c = 0; c < 4; c++)
                p[r][c] = exp(lv[r][c]) / z;
        }
        want = (-log(p[0][2]) - log(p[2][0])) / 2; /* the -100 row does not count */
        assert_int_equal(kiln_module_get_scalar(m, "loss", &got), KILN_OK);
        assert_true(fabs(got - want) < 1e-12);
        assert_int_equal(kiln_module_get(m, "dx", dxv, sizeof dxv), KILN_OK);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) {
                double wd = r == 1 ? 0 : (p[r][c] - (c == labels[r])) / 2;
                assert_true(fabs(dxv[r][c] - wd) < 1e-12);
            }
        const int64_t none[3] = {-100, -100, -100}, bad[3] = {0, -101, 1};
        assert_int_equal(kiln_module_set(m, "y", none, sizeof none), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        assert_int_equal(kiln_module_get_scalar(m, "loss", &got), KILN_OK);
        assert_true(isnan(got));
        assert_int_equal(kiln_module_set(m, "y", bad, sizeof bad), KILN_OK);
        kiln_status s = kiln_module_run(m, "f");
        assert_module_error(m, s, KILN_ERR_INVALID,
                            "index -101 is out of bounds for dimension 0 with size 4");
        kiln_module_free(m);
        kiln_graph_free(g);
    }
}

static void ce_float_labels(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_F32, KILN_SHAPE(3, 5)),
                       ku_input(g, KILN_F32, KILN_SHAPE(3)));
}

/* int32 class indices: PyTorch takes torch.long only */
static void ce_int32_labels(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_F32, KILN_SHAPE(3, 5)),
                       ku_input(g, KILN_I32, KILN_SHAPE(3)));
}

static void ce_batch(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_F32, KILN_SHAPE(3, 5)),
                       ku_input(g, KILN_I64, KILN_SHAPE(4)));
}
static void ce_batch_0d(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_F32, KILN_SHAPE(3, 5)), ku_input(g, KILN_I64, 0, NULL));
}
static void ce_multi(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_F32, KILN_SHAPE(3, 5)),
                       ku_input(g, KILN_I64, KILN_SHAPE(3, 1)));
}
static void ce_0d(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_F32, 0, NULL), ku_input(g, KILN_I64, 0, NULL));
}
static void ce_rank3(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_F32, KILN_SHAPE(2, 3, 4)),
                       ku_input(g, KILN_I64, KILN_SHAPE(2)));
}
static void ce_1d_target(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_F32, KILN_SHAPE(5)),
                       ku_input(g, KILN_I64, KILN_SHAPE(1)));
}
static void ce_int_logits(kiln_graph *g)
{
    kiln_cross_entropy(g, ku_input(g, KILN_I64, KILN_SHAPE(3, 5)),
                       ku_input(g, KILN_I64, KILN_SHAPE(3)));
}

static void test_cross_entropy_errors(void **state)
{
    (void)state;
    expect_error(ce_float_labels, KILN_ERR_DTYPE,
                 "kiln_cross_entropy: expected scalar type Long but found Float");
    expect_error(ce_int32_labels, KILN_ERR_DTYPE,
                 "kiln_cross_entropy: expected scalar type Long but found Int");
    expect_error(ce_batch, KILN_ERR_SHAPE,
                 "kiln_cross_entropy: Expected input batch_size (3) to match target batch_size "
                 "(4).");
    expect_error(ce_batch_0d, KILN_ERR_SHAPE,
                 "kiln_cross_entropy: Expected input batch_size (3) to match target batch_size "
                 "(1).");
    expect_error(ce_multi, KILN_ERR_SHAPE,
                 "kiln_cross_entropy: 0D or 1D target tensor expected, multi-target not "
                 "supported");
    expect_error(ce_0d, KILN_ERR_SHAPE,
                 "kiln_cross_entropy: Expected 1 or more dimensions (got 0)");
    expect_error(ce_rank3, KILN_ERR_UNSUPPORTED,
                 "kiln_cross_entropy: logits of rank 3 are not supported; expected (C) or (N, C)");
    expect_error(ce_1d_target, KILN_ERR_SHAPE,
                 "kiln_cross_entropy: size mismatch (got input: [5], target: [1])");
    expect_error(ce_int_logits, KILN_ERR_DTYPE,
                 "kiln_cross_entropy: \"log_softmax_lastdim_kernel_impl\" not implemented for "
                 "'Long'");
}

static void test_null_propagation(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, KILN_SHAPE(3, 3));
    kiln_tensor *ids = ku_input(g, KILN_I64, KILN_SHAPE(3));
    int before = g->nnodes;
    assert_null(kiln_matmul(g, x, NULL));
    assert_null(kiln_matmul(NULL, x, x));
    assert_null(kiln_linear(g, NULL, x, NULL));
    assert_null(kiln_linear(g, x, NULL, NULL));
    assert_null(kiln_softmax(g, NULL, 0));
    assert_null(kiln_log_softmax(g, NULL, 0));
    assert_null(kiln_layer_norm(g, NULL, NULL, NULL, 1e-5));
    assert_null(kiln_embedding(g, NULL, ids));
    assert_null(kiln_embedding(g, x, NULL));
    assert_null(kiln_dropout(g, NULL, 0.5));
    assert_null(kiln_mse_loss(g, x, NULL));
    assert_null(kiln_cross_entropy(g, x, NULL));
    assert_null(kiln_cross_entropy(g, NULL, ids));
    assert_int_equal(g->nnodes, before);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

/* Every allocation can fail: failing the n-th one (and every later one) at
 * any point of a model build gives NULL and KILN_ERR_NOMEM, never a crash. */
static long alloc_count, alloc_fail_at;

static void *failing_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (alloc_count++ >= alloc_fail_at)
        return NULL;
    return realloc(ptr, size);
}

static void plain_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

static kiln_tensor *build_model(kiln_graph *g)
{
    kiln_tensor *ids = kiln_input(g, "ids", KILN_I64, KILN_SHAPE(4, 3));
    kiln_tensor *labels = kiln_input(g, "labels", KILN_I64, KILN_SHAPE(12));
    kiln_tensor *table = kiln_param(g, "table", KILN_F32, KILN_SHAPE(10, 8), kiln_init_zeros());
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(5, 8), kiln_init_kaiming_uniform());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(5), kiln_init_kaiming_uniform());
    kiln_tensor *h = kiln_embedding(g, table, ids);
    h = kiln_layer_norm(g, h, NULL, NULL, 1e-5);
    h = kiln_dropout(g, kiln_gelu(g, h), 0.1);
    kiln_tensor *logits = kiln_linear(g, kiln_reshape(g, h, KILN_SHAPE(12, 8)), w, b);
    kiln_tensor *p = kiln_softmax(g, logits, -1);
    kiln_tensor *l = kiln_add(g, kiln_cross_entropy(g, logits, labels),
                              kiln_mse_loss(g, p, kiln_scalar(g, 0.2)));
    for (int i = 0; i < 40; i++) /* enough nodes to grow the node array and the arena */
        l = kiln_add(
            g, l,
            kiln_mean(g, kiln_matmul(g, logits, kiln_transpose(g, logits, 0, 1)), KILN_ALL, false));
    return l;
}

static void test_out_of_memory(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    assert_non_null(build_model(g));
    ku_assert_ok(g);
    kiln_graph_free(g);
    bool finished = false;
    for (alloc_fail_at = 0; !finished && alloc_fail_at < 100000; alloc_fail_at++) {
        alloc_count = 0;
        kiln_set_allocator(&(kiln_allocator){failing_realloc, plain_free, NULL});
        g = kiln_graph_new();
        kiln_tensor *l = build_model(g);
        kiln_status s = kiln_graph_status(g);
        bool ok = g && s == KILN_OK && l != NULL;
        bool nomem = !g || (s == KILN_ERR_NOMEM && l == NULL);
        kiln_graph_free(g);
        kiln_set_allocator(NULL);
        assert_true(ok || nomem);
        finished = ok;
    }
    assert_true(finished);
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

static void test_values_matmul(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const float av[] = {1, 2, 3, 4, 5, 6}; /* (2, 3) */
    const float bv[] = {1, 0, 0, 1, 1, 1}; /* (3, 2) */
    const float v3[] = {1, -1, 2};
    const float v2[] = {2, 3};
    kiln_tensor *a = f32_from(g, KILN_SHAPE(2, 3), av);
    kiln_tensor *b = f32_from(g, KILN_SHAPE(3, 2), bv);
    kiln_tensor *u = f32_from(g, KILN_SHAPE(3), v3);
    kiln_tensor *w = f32_from(g, KILN_SHAPE(2), v2);
    /* a batch of two: a and 2a, times b broadcast over the batch */
    kiln_tensor *ab =
        kiln_concat(g, 2,
                    (kiln_tensor *const[]){
                        kiln_reshape(g, a, KILN_SHAPE(1, 2, 3)),
                        kiln_reshape(g, kiln_mul(g, a, kiln_scalar(g, 2)), KILN_SHAPE(1, 2, 3))},
                    0);
    kiln_tensor *outs[] = {
        kiln_matmul(g, a, b),                                        /* [[4, 5], [10, 11]] */
        kiln_matmul(g, u, u),                                        /* 6 */
        kiln_matmul(g, a, u),                                        /* [5, 11] */
        kiln_matmul(g, w, a),                                        /* [14, 19, 24] */
        kiln_matmul(g, ab, kiln_reshape(g, b, KILN_SHAPE(1, 3, 2))), /* (2, 2, 2) */
        kiln_matmul(g, u, kiln_reshape(g, b, KILN_SHAPE(1, 3, 2))),  /* (1, 2): [3, 1] */
    };
    kiln_module *m = ku_run_entry(g, 6, outs);
    float f[8];
    ku_get_f32(m, 0, f, 4);
    assert_close_f32(f, (const double[]){4, 5, 10, 11}, 4, 0);
    ku_get_f32(m, 1, f, 1);
    assert_close_f32(f, (const double[]){6}, 1, 0);
    ku_get_f32(m, 2, f, 2);
    assert_close_f32(f, (const double[]){5, 11}, 2, 0);
    ku_get_f32(m, 3, f, 3);
    assert_close_f32(f, (const double[]){14, 19, 24}, 3, 0);
    ku_get_f32(m, 4, f, 8);
    assert_close_f32(f, (const double[]){4, 5, 10, 11, 8, 10, 20, 22}, 8, 0);
    ku_get_f32(m, 5, f, 2);
    assert_close_f32(f, (const double[]){3, 1}, 2, 0);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_values_linear(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const float xv[] = {1, 2, 3, 4, 5, 6};           /* (2, 3) */
    const float wv[] = {1, 0, -1, 0.5f, 0.5f, 0.5f}; /* (2, 3) */
    const float bv[] = {10, 20};
    kiln_tensor *x = f32_from(g, KILN_SHAPE(2, 3), xv);
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2, 3), kiln_init_data(wv));
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(2), kiln_init_data(bv));
    kiln_tensor *outs[] = {kiln_linear(g, x, w, b), kiln_linear(g, x, w, NULL)};
    kiln_module *m = ku_run_entry(g, 2, outs);
    float f[4];
    ku_get_f32(m, 0, f, 4);
    assert_close_f32(f, (const double[]){8, 23, 8, 27.5}, 4, 1e-7);
    ku_get_f32(m, 1, f, 4);
    assert_close_f32(f, (const double[]){-2, 3, -2, 7.5}, 4, 1e-7);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_values_softmax(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    /* the second row would overflow exp without the max shift */
    const float xv[] = {1, 2, 3, 1000, 1001, 1002};
    kiln_tensor *x = f32_from(g, KILN_SHAPE(2, 3), xv);
    kiln_tensor *outs[] = {kiln_softmax(g, x, -1), kiln_log_softmax(g, x, 1),
                           kiln_softmax(g, x, 0)};
    kiln_module *m = ku_run_entry(g, 3, outs);
    double lse = log(exp(1.0) + exp(2.0) + exp(3.0));
    double sm[6], lsm[6];
    for (int i = 0; i < 6; i++) {
        double z = (double)(i % 3 + 1);
        sm[i] = exp(z - lse);
        lsm[i] = z - lse;
    }
    float f[6];
    ku_get_f32(m, 0, f, 6);
    assert_close_f32(f, sm, 6, 1e-6);
    ku_get_f32(m, 1, f, 6);
    assert_close_f32(f, lsm, 6, 1e-6);
    ku_get_f32(m, 2, f, 6);
    assert_close_f32(f, (const double[]){0, 0, 0, 1, 1, 1}, 6, 1e-6);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_values_layer_norm(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const float xv[] = {1, 2, 3, 4, -1, 0, 0, 5};
    const float wv[] = {1, 2, 0.5f, -1};
    const float bv[] = {0, 1, 0, 0.25f};
    kiln_tensor *x = f32_from(g, KILN_SHAPE(2, 4), xv);
    kiln_tensor *w = f32_from(g, KILN_SHAPE(4), wv);
    kiln_tensor *b = f32_from(g, KILN_SHAPE(4), bv);
    kiln_tensor *outs[] = {kiln_layer_norm(g, x, w, b, 1e-5),
                           kiln_layer_norm(g, x, NULL, NULL, 1e-5)};
    kiln_module *m = ku_run_entry(g, 2, outs);
    double want[8], plain[8];
    for (int r = 0; r < 2; r++) {
        double mu = 0, var = 0;
        for (int k = 0; k < 4; k++)
            mu += (double)xv[r * 4 + k] / 4;
        for (int k = 0; k < 4; k++)
            var += ((double)xv[r * 4 + k] - mu) * ((double)xv[r * 4 + k] - mu) / 4;
        for (int k = 0; k < 4; k++) {
            plain[r * 4 + k] = ((double)xv[r * 4 + k] - mu) / sqrt(var + 1e-5);
            want[r * 4 + k] = plain[r * 4 + k] * (double)wv[k] + (double)bv[k];
        }
    }
    float f[8];
    ku_get_f32(m, 0, f, 8);
    assert_close_f32(f, want, 8, 1e-6);
    ku_get_f32(m, 1, f, 8);
    assert_close_f32(f, plain, 8, 1e-6);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_values_losses(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const float lv[] = {1, 2, 3, 1, 2, 3};
    const int64_t yv[] = {2, 0};
    const int64_t y1[] = {1};
    const float pv[] = {1, 2, 3, 4};
    const float tv[] = {0, 2, 5, 4};
    kiln_tensor *logits = f32_from(g, KILN_SHAPE(2, 3), lv);
    kiln_tensor *labels = kiln_tensor_from(g, KILN_I64, KILN_SHAPE(2), yv);
    kiln_tensor *one = kiln_tensor_from(g, KILN_I64, 0, NULL, y1);
    kiln_tensor *outs[] = {
        kiln_cross_entropy(g, logits, labels),
        kiln_cross_entropy(g, kiln_reshape(g, kiln_slice(g, logits, 0, 0, 1, 1), KILN_SHAPE(3)),
                           one),
        kiln_mse_loss(g, f32_from(g, KILN_SHAPE(4), pv), f32_from(g, KILN_SHAPE(4), tv)),
    };
    kiln_module *m = ku_run_entry(g, 3, outs);
    double lse = log(exp(1.0) + exp(2.0) + exp(3.0));
    float f[1];
    ku_get_f32(m, 0, f, 1);
    assert_close_f32(f, (const double[]){((lse - 3) + (lse - 1)) / 2}, 1, 1e-6);
    ku_get_f32(m, 1, f, 1);
    assert_close_f32(f, (const double[]){lse - 2}, 1, 1e-6);
    ku_get_f32(m, 2, f, 1);
    assert_close_f32(f, (const double[]){(1.0 + 0 + 4 + 0) / 4}, 1, 1e-7);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_values_embedding(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const float tv[] = {0, 1, 10, 11, 20, 21};
    const int32_t iv[] = {2, 0, 2, 1};
    kiln_tensor *t = f32_from(g, KILN_SHAPE(3, 2), tv);
    kiln_tensor *ids = kiln_tensor_from(g, KILN_I32, KILN_SHAPE(2, 2), iv);
    kiln_tensor *outs[] = {kiln_embedding(g, t, ids)};
    kiln_module *m = ku_run_entry(g, 1, outs);
    float f[8];
    ku_get_f32(m, 0, f, 8);
    assert_close_f32(f, (const double[]){20, 21, 0, 1, 20, 21, 10, 11}, 8, 0);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_values_dropout(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_graph_seed(g, 1234);
    kiln_tensor *x = kiln_ones(g, KILN_F32, KILN_SHAPE(1000));
    kiln_tensor *outs[] = {kiln_dropout(g, x, 0.25)};
    kiln_module *m = ku_run_entry(g, 1, outs);
    static float f[1000], f2[1000];
    ku_get_f32(m, 0, f, 1000);
    int kept = 0;
    for (int i = 0; i < 1000; i++) {
        assert_true(f[i] == 0.0f || fabsf(f[i] - 1.0f / 0.75f) < 1e-6f);
        kept += f[i] != 0.0f;
    }
    assert_in_range(kept, 650, 850);
    /* a new mask every run */
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    ku_get_f32(m, 0, f2, 1000);
    assert_true(memcmp(f, f2, sizeof(f)) != 0);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_shapes),
        cmocka_unit_test(test_matmul_errors),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_linear_errors),
        cmocka_unit_test(test_softmax_structure),
        cmocka_unit_test(test_softmax_errors),
        cmocka_unit_test(test_layer_norm_shapes),
        cmocka_unit_test(test_layer_norm_errors),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_embedding_errors),
        cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_dropout_errors),
        cmocka_unit_test(test_mse_loss),
        cmocka_unit_test(test_mse_errors),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_cross_entropy_label_out_of_range),
        cmocka_unit_test(test_cross_entropy_ignores_minus_100),
        cmocka_unit_test(test_cross_entropy_errors),
        cmocka_unit_test(test_null_propagation),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_values_matmul),
        cmocka_unit_test(test_values_linear),
        cmocka_unit_test(test_values_softmax),
        cmocka_unit_test(test_values_layer_norm),
        cmocka_unit_test(test_values_losses),
        cmocka_unit_test(test_values_embedding),
        cmocka_unit_test(test_values_dropout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
