/* test_leaves.c - inputs, params, constants, fills, ranges and random sources:
 * node kinds, attributes, shapes, dtypes and every error message. */
#include "frontend/fe.h"
#include "testutil.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static void assert_dims(const kiln_tensor *t, int rank, const int64_t *dims)
{
    assert_non_null(t);
    assert_int_equal(t->rank, rank);
    for (int i = 0; i < rank; i++)
        assert_int_equal(t->dims[i], dims[i]);
}

/* ---- initialisers ------------------------------------------------------------ */

static void test_init_constructors(void **state)
{
    (void)state;
    assert_int_equal(kiln_init_zeros().kind, KILN_INIT_ZEROS);
    assert_int_equal(kiln_init_ones().kind, KILN_INIT_ONES);
    kiln_init c = kiln_init_const(2.5);
    assert_int_equal(c.kind, KILN_INIT_CONST);
    assert_true(c.a == 2.5);
    kiln_init n = kiln_init_normal(1.0, 0.5);
    assert_int_equal(n.kind, KILN_INIT_NORMAL);
    assert_true(n.a == 1.0 && n.b == 0.5);
    kiln_init u = kiln_init_uniform(-1.0, 3.0);
    assert_int_equal(u.kind, KILN_INIT_UNIFORM);
    assert_true(u.a == -1.0 && u.b == 3.0);
    assert_int_equal(kiln_init_kaiming_uniform().kind, KILN_INIT_KAIMING_UNIFORM);
    float x = 1;
    kiln_init d = kiln_init_data(&x);
    assert_int_equal(d.kind, KILN_INIT_DATA);
    assert_ptr_equal(d.data, &x);
}

/* ---- inputs ----------------------------------------------------------------- */

static void test_input(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
    assert_dims(x, 2, (const int64_t[]){2, 3});
    assert_int_equal(x->op, IR_INPUT);
    assert_int_equal(x->dtype, KILN_F32);
    assert_string_equal(x->name, "x");
    assert_ptr_equal(x->graph, g);
    kiln_tensor *s = kiln_input(g, "s", KILN_I64, 0, NULL);
    assert_dims(s, 0, NULL);
    assert_int_equal(s->dtype, KILN_I64);
    kiln_tensor *e = kiln_input(g, "e", KILN_BOOL, KILN_SHAPE(0, 4));
    assert_dims(e, 2, (const int64_t[]){0, 4});
    kiln_tensor *big = kiln_input(g, "big", KILN_F64, KILN_SHAPE(1, 2, 1, 2, 1, 2, 1, 2));
    assert_int_equal(big->rank, 8);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_input_name_copied(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    char name[8] = "abc";
    kiln_tensor *x = kiln_input(g, name, KILN_F32, 0, NULL);
    strcpy(name, "zzz");
    assert_string_equal(x->name, "abc");
    kiln_graph_free(g);
}

static void test_input_errors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    assert_null(kiln_input(g, "", KILN_F32, 0, NULL));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_input: the name must be a non-empty string");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_non_null(kiln_input(g, "x", KILN_F32, 0, NULL));
    assert_null(kiln_input(g, "x", KILN_F64, 0, NULL));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_input: name 'x' is already used");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, -1)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_input: Trying to create tensor with negative dimension -1: [2, -1]");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_input(g, "x", KILN_F32, KILN_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)));
    assert_graph_error(g, KILN_ERR_UNSUPPORTED,
                       "kiln_input: tensors of rank 9 are not supported (KILN_MAX_RANK is 8)");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_input(g, "x", KILN_F32, -1, (const int64_t[]){1}));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_input: rank must be non-negative, but got -1");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_input(g, "x", (kiln_dtype)42, 0, NULL));
    assert_graph_error(g, KILN_ERR_DTYPE, "kiln_input: invalid dtype 42");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_input(g, "x", KILN_F32, KILN_SHAPE(INT64_MAX, 4)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_input: the shape [9223372036854775807, 4] has more "
                       "elements than int64 can count");
    kiln_graph_free(g);
}

static void test_null_arguments_are_quiet(void **state)
{
    (void)state;
    assert_null(kiln_input(NULL, "x", KILN_F32, 0, NULL));
    assert_null(kiln_param(NULL, "w", KILN_F32, 0, NULL, kiln_init_zeros()));
    assert_null(kiln_scalar(NULL, 1));
    assert_null(kiln_full(NULL, KILN_F32, 0, NULL, 1));
    assert_null(kiln_arange(NULL, KILN_F32, 0, 1, 1));
    assert_null(kiln_linspace(NULL, KILN_F32, 0, 1, 3));
    assert_null(kiln_rand(NULL, KILN_F32, 0, NULL));
    kiln_graph *g = kiln_graph_new();
    assert_null(kiln_input(g, NULL, KILN_F32, 0, NULL));
    assert_null(kiln_input(g, "x", KILN_F32, 2, NULL));
    assert_null(kiln_param(g, NULL, KILN_F32, 0, NULL, kiln_init_zeros()));
    assert_null(kiln_param(g, "w", KILN_F32, 0, NULL, kiln_init_data(NULL)));
    assert_null(kiln_tensor_from(g, KILN_F32, 0, NULL, NULL));
    assert_null(kiln_zeros(g, KILN_F32, 1, NULL));
    assert_null(kiln_zeros_like(g, NULL));
    assert_null(kiln_ones_like(g, NULL));
    assert_null(kiln_full_like(g, NULL, 3));
    assert_null(kiln_rand_like(g, NULL));
    assert_null(kiln_randn_like(g, NULL));
    assert_null(kiln_randn(g, KILN_F32, 1, NULL));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    assert_int_equal(g->nnodes, 0);
    kiln_graph_free(g);
}

static void test_sticky_first_error(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    assert_null(kiln_input(g, "", KILN_F32, 0, NULL));
    /* later calls do nothing and keep the first message */
    assert_null(kiln_input(g, "ok", KILN_F32, 0, NULL));
    assert_null(kiln_arange(g, KILN_F32, 0, 1, 0));
    assert_null(kiln_scalar(g, 1));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_input: the name must be a non-empty string");
    assert_int_equal(g->nnodes, 0);
    kiln_graph_free(g);
}

/* ---- params ------------------------------------------------------------------ */

static void test_param(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(4, 3), kiln_init_kaiming_uniform());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(4), kiln_init_normal(0, 0.1));
    kiln_tensor *r = kiln_rand(g, KILN_F32, KILN_SHAPE(2));
    kiln_tensor *c = kiln_param(g, "c", KILN_I32, 0, NULL, kiln_init_const(7));
    assert_dims(w, 2, (const int64_t[]){4, 3});
    assert_int_equal(w->op, IR_PARAM);
    assert_string_equal(w->name, "w");
    assert_int_equal(w->init.kind, KILN_INIT_KAIMING_UNIFORM);
    assert_int_equal(w->fan_in, 0);
    assert_null(w->data);
    assert_int_equal(b->init.kind, KILN_INIT_NORMAL);
    assert_true(b->init.b == 0.1);
    assert_int_equal(c->init.kind, KILN_INIT_CONST);
    assert_true(c->init.a == 7);
    assert_int_equal(c->dtype, KILN_I32);
    /* every param and random node draws its own stream */
    assert_int_equal(w->stream, 0);
    assert_int_equal(b->stream, 1);
    assert_int_equal(r->stream, 2);
    assert_int_equal(c->stream, 3);
    assert_int_equal(g->next_stream, 4);
    kiln_graph_free(g);
}

static void test_param_data_is_copied(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    double src[3] = {1.5, -2, 4};
    kiln_tensor *w = kiln_param(g, "w", KILN_F64, KILN_SHAPE(3), kiln_init_data(src));
    src[0] = 99;
    assert_non_null(w->data);
    assert_ptr_not_equal(w->data, src);
    assert_ptr_equal(w->init.data, w->data);
    assert_int_equal(w->init.kind, KILN_INIT_DATA);
    const double *d = w->data;
    assert_true(d[0] == 1.5 && d[1] == -2 && d[2] == 4);
    /* bool params accept data and fills */
    bool flags[2] = {true, false};
    kiln_tensor *f = kiln_param(g, "f", KILN_BOOL, KILN_SHAPE(2), kiln_init_data(flags));
    assert_true(((bool *)f->data)[0] && !((bool *)f->data)[1]);
    assert_non_null(kiln_param(g, "o", KILN_BOOL, KILN_SHAPE(2), kiln_init_ones()));
    /* an empty param with data copies nothing */
    assert_non_null(kiln_param(g, "e", KILN_F32, KILN_SHAPE(0), kiln_init_data(src)));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_param_errors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_input(g, "w", KILN_F32, 0, NULL);
    assert_null(kiln_param(g, "w", KILN_F32, 0, NULL, kiln_init_zeros()));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_param: name 'w' is already used");
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_param(g, "w", KILN_F32, 0, NULL, kiln_init_zeros());
    assert_null(kiln_input(g, "w", KILN_F32, 0, NULL));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_input: name 'w' is already used");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_param(g, "", KILN_F32, 0, NULL, kiln_init_zeros()));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_param: the name must be a non-empty string");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_param(g, "w", KILN_I64, KILN_SHAPE(2), kiln_init_normal(0, 1)));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_param: \"normal_kernel_cpu\" not implemented for "
                       "'Long'");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_param(g, "w", KILN_I32, KILN_SHAPE(2), kiln_init_uniform(0, 1)));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_param: \"check_uniform_bounds\" not implemented for 'Int'");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_param(g, "w", KILN_BOOL, KILN_SHAPE(2, 2), kiln_init_kaiming_uniform()));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_param: \"check_uniform_bounds\" not implemented for 'Bool'");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_param(g, "w", KILN_F32, KILN_SHAPE(2), kiln_init_uniform(1, 0)));
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_param: uniform_ expects to return a [from, to) "
                       "range, but found from=1 > to=0");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_param(g, "w", KILN_F32, KILN_SHAPE(2), kiln_init_normal(0, -1)));
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_param: normal expects std >= 0.0, but found std -1");
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_init bad = {.kind = (kiln_init_kind)77};
    assert_null(kiln_param(g, "w", KILN_F32, KILN_SHAPE(2), bad));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_param: unknown initialiser kind 77");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_param(g, "w", (kiln_dtype)-1, KILN_SHAPE(2), kiln_init_zeros()));
    assert_graph_error(g, KILN_ERR_DTYPE, "kiln_param: invalid dtype -1");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_param(g, "w", KILN_F32, KILN_SHAPE(-3), kiln_init_zeros()));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_param: Trying to create tensor with negative dimension -3: [-3]");
    kiln_graph_free(g);
}

static void test_name_clashes_with_entry_output(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, 0, NULL);
    assert_int_equal(kiln_entry(g, "f", 1, &x, (const char *const[]){"y"}), KILN_OK);
    assert_null(kiln_param(g, "y", KILN_F32, 0, NULL, kiln_init_zeros()));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_param: name 'y' is already used");
    kiln_graph_free(g);
}

/* ---- constants and fills --------------------------------------------------- */

static void test_tensor_from(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    int32_t src[6] = {1, 2, 3, 4, 5, 6};
    kiln_tensor *c = kiln_tensor_from(g, KILN_I32, KILN_SHAPE(2, 3), src);
    src[5] = 0;
    assert_dims(c, 2, (const int64_t[]){2, 3});
    assert_int_equal(c->op, IR_CONST);
    assert_int_equal(c->dtype, KILN_I32);
    assert_ptr_not_equal(c->data, src);
    assert_int_equal(((int32_t *)c->data)[5], 6);
    float one = 3.5f;
    kiln_tensor *s = kiln_tensor_from(g, KILN_F32, 0, NULL, &one);
    assert_dims(s, 0, NULL);
    assert_true(((float *)s->data)[0] == 3.5f);
    assert_false(s->weak);

    assert_null(kiln_tensor_from(g, KILN_F32, KILN_SHAPE(-2), &one));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_tensor_from: Trying to create tensor with negative dimension -2");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_tensor_from(g, (kiln_dtype)9, 0, NULL, &one));
    assert_graph_error(g, KILN_ERR_DTYPE, "kiln_tensor_from: invalid dtype 9");
    kiln_graph_free(g);
}

static void test_scalar(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    struct {
        double v;
        kiln_dtype dt;
    } cases[] = {{2, KILN_I64},
                 {2.0, KILN_I64},
                 {-7, KILN_I64},
                 {0.0, KILN_I64},
                 {2.5, KILN_F32},
                 {0.1, KILN_F32},
                 {(double)NAN, KILN_F32},
                 {(double)INFINITY, KILN_F32},
                 {-(double)INFINITY, KILN_F32},
                 {1e300, KILN_F32},
                 {0x1p63, KILN_F32},
                 {-0x1p63, KILN_I64},
                 {0x1p62, KILN_I64}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln_tensor *s = kiln_scalar(g, cases[i].v);
        assert_non_null(s);
        assert_int_equal(s->op, IR_FULL);
        assert_int_equal(s->rank, 0);
        assert_true(s->weak);
        assert_int_equal(s->dtype, cases[i].dt);
        assert_true(isnan(cases[i].v) ? isnan(s->value) : s->value == cases[i].v);
    }
    kiln_graph_free(g);
}

static void test_scalar_is_weak_in_promotion(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *i = kiln_input(g, "i", KILN_I32, KILN_SHAPE(3));
    kiln_tensor *f = kiln_input(g, "f", KILN_F64, KILN_SHAPE(3));
    kiln_tensor *two = kiln_scalar(g, 2), *half = kiln_scalar(g, 0.5);
    assert_int_equal(fe_result_type(2, (kiln_tensor *const[]){i, two}), KILN_I32);
    assert_int_equal(fe_result_type(2, (kiln_tensor *const[]){i, half}), KILN_F32);
    assert_int_equal(fe_result_type(2, (kiln_tensor *const[]){f, half}), KILN_F64);
    kiln_graph_free(g);
}

static void test_full_and_friends(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *f = kiln_full(g, KILN_F64, KILN_SHAPE(2, 2), 3.25);
    assert_dims(f, 2, (const int64_t[]){2, 2});
    assert_int_equal(f->op, IR_FULL);
    assert_int_equal(f->dtype, KILN_F64);
    assert_true(f->value == 3.25);
    assert_false(f->weak);
    kiln_tensor *z = kiln_zeros(g, KILN_I32, KILN_SHAPE(5));
    assert_true(z->value == 0);
    assert_int_equal(z->dtype, KILN_I32);
    kiln_tensor *o = kiln_ones(g, KILN_BOOL, 0, NULL);
    assert_true(o->value == 1);
    assert_int_equal(o->rank, 0);

    kiln_tensor *x = kiln_input(g, "x", KILN_I64, KILN_SHAPE(3, 1, 2));
    kiln_tensor *zl = kiln_zeros_like(g, x), *ol = kiln_ones_like(g, x);
    kiln_tensor *fl = kiln_full_like(g, x, -4);
    kiln_tensor *ts[3] = {zl, ol, fl};
    double want[3] = {0, 1, -4};
    for (int k = 0; k < 3; k++) {
        assert_dims(ts[k], 3, (const int64_t[]){3, 1, 2});
        assert_int_equal(ts[k]->dtype, KILN_I64);
        assert_int_equal(ts[k]->op, IR_FULL);
        assert_true(ts[k]->value == want[k]);
    }
    /* like a weak scalar: a strong 0-d tensor of its dtype */
    kiln_tensor *sl = kiln_full_like(g, kiln_scalar(g, 2.5), 1);
    assert_false(sl->weak);
    assert_int_equal(sl->dtype, KILN_F32);
    assert_int_equal(kiln_graph_status(g), KILN_OK);

    assert_null(kiln_ones(g, KILN_F32, KILN_SHAPE(2, -5)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_ones: Trying to create tensor with negative dimension -5: [2, -5]");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_full(g, (kiln_dtype)5, 0, NULL, 1));
    assert_graph_error(g, KILN_ERR_DTYPE, "kiln_full: invalid dtype 5");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_zeros(g, KILN_F32, KILN_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)));
    assert_graph_error(g, KILN_ERR_UNSUPPORTED, "kiln_zeros: tensors of rank 10 are not supported");
    kiln_graph_free(g);
}

/* NaN, infinities and values outside the range into an integer tensor used
 * to saturate silently; PyTorch raises (torch.full((1,), 1e20,
 * dtype=torch.int64)): "value cannot be converted to type int64 without
 * overflow". */
static void test_integer_fill_overflow(void **state)
{
    (void)state;
    struct {
        kiln_dtype dt;
        double v;
        bool param; /* kiln_param with kiln_init_const, else kiln_full */
        const char *msg;
    } cases[] = {
        {KILN_I64, (double)NAN, false,
         "kiln_full: value cannot be converted to type int64 without overflow"},
        {KILN_I64, 1e20, false,
         "kiln_full: value cannot be converted to type int64 without overflow"},
        {KILN_I64, 9223372036854775808.0, false, "to type int64 without overflow"},
        {KILN_I64, -(double)INFINITY, false, "to type int64 without overflow"},
        {KILN_I32, 3e9, false,
         "kiln_full: value cannot be converted to type int32 without overflow"},
        {KILN_I32, 2147483648.0, false, "to type int32 without overflow"},
        {KILN_I32, -2147483649.0, false, "to type int32 without overflow"},
        {KILN_I32, 1e10, true,
         "kiln_param: value cannot be converted to type int32 without overflow"},
        {KILN_I64, (double)NAN, true,
         "kiln_param: value cannot be converted to type int64 without overflow"},
        {KILN_I32, 2147483647.0, false, NULL},
        {KILN_I32, -2147483648.0, false, NULL},
        {KILN_I64, -9223372036854775808.0, false, NULL},
        {KILN_I64, 1e18, true, NULL},
        {KILN_F32, (double)NAN, false, NULL},
        {KILN_BOOL, (double)NAN, false, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *t = cases[i].param ? kiln_param(g, "p", cases[i].dt, KILN_SHAPE(2),
                                                     kiln_init_const(cases[i].v))
                                        : kiln_full(g, cases[i].dt, KILN_SHAPE(2), cases[i].v);
        if (cases[i].msg) {
            assert_null(t);
            assert_graph_error(g, KILN_ERR_INVALID, cases[i].msg);
        } else {
            assert_non_null(t);
        }
        kiln_graph_free(g);
    }
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_I32, KILN_SHAPE(2));
    assert_null(kiln_full_like(g, x, (double)NAN));
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_full_like: value cannot be converted to type int32 without overflow");
    kiln_graph_free(g);
}

static void test_like_foreign_graph(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new(), *h = kiln_graph_new();
    kiln_tensor *x = kiln_input(h, "x", KILN_F32, 0, NULL);
    assert_null(kiln_zeros_like(g, x));
    assert_graph_error(g, KILN_ERR_INVALID, "belongs to another graph");
    assert_int_equal(kiln_graph_status(h), KILN_OK);
    kiln_graph_free(g);
    kiln_graph_free(h);
}

/* ---- arange --------------------------------------------------------------------- */

static void check_arange(kiln_dtype dt, double start, double end, double step, int64_t size,
                         double value, double value2)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *t = kiln_arange(g, dt, start, end, step);
    if (!t)
        fprintf(stderr, "arange(%g, %g, %g): %s\n", start, end, step, kiln_graph_error(g));
    assert_non_null(t);
    assert_int_equal(t->op, IR_ARANGE);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->rank, 1);
    assert_int_equal(t->dims[0], size);
    assert_true(t->value == value);
    assert_true(t->value2 == value2);
    kiln_graph_free(g);
}

static void test_arange(void **state)
{
    (void)state;
    check_arange(KILN_F32, 0, 5, 1, 5, 0, 1);
    check_arange(KILN_F32, 0, 1, 0.1, 10, 0, 0.1);
    check_arange(KILN_F64, 1, 2.5, 0.5, 3, 1, 0.5);
    check_arange(KILN_F32, 0, 2.5, 1, 3, 0, 1);
    check_arange(KILN_F32, 5, 0, -1.5, 4, 5, -1.5);
    check_arange(KILN_F32, 3, 3, 1, 0, 3, 1);
    check_arange(KILN_I64, 0, 10, 3, 4, 0, 3);
    check_arange(KILN_I64, 10, 0, -3, 4, 10, -3);
    check_arange(KILN_I64, -5, 5, 1, 10, -5, 1);
    check_arange(KILN_I32, 0, 7, 2, 4, 0, 2);
    /* integer dtypes run with start and step truncated, as PyTorch's kernel */
    check_arange(KILN_I64, 0.5, 3, 1, 3, 0, 1);
    check_arange(KILN_I64, 0, 2.5, 1, 3, 0, 1);
    check_arange(KILN_I32, 0, 3, 0.5, 6, 0, 0);
    /* int64 with integral arguments is exact beyond 2^53 */
    check_arange(KILN_I64, 0x1p60, 0x1p60 + 4096, 1024, 4, 0x1p60, 1024);
}

static void test_arange_errors(void **state)
{
    (void)state;
    struct {
        kiln_dtype dt;
        double start, end, step;
        kiln_status s;
        const char *msg;
    } cases[] = {
        {KILN_F32, 0, 5, 0, KILN_ERR_INVALID, "kiln_arange: step must be nonzero"},
        {KILN_I64, 0, 5, 0, KILN_ERR_INVALID, "kiln_arange: step must be nonzero"},
        {KILN_F32, 0, 5, (double)NAN, KILN_ERR_INVALID, "kiln_arange: step must be nonzero"},
        {KILN_F32, 0, 5, -1, KILN_ERR_INVALID,
         "kiln_arange: upper bound and larger bound inconsistent with step sign"},
        {KILN_I32, 5, 0, 1, KILN_ERR_INVALID,
         "kiln_arange: upper bound and larger bound inconsistent with step sign"},
        {KILN_F32, 0, (double)INFINITY, 1, KILN_ERR_INVALID,
         "kiln_arange: unsupported range: 0 -> inf"},
        {KILN_F64, (double)NAN, 1, 1, KILN_ERR_INVALID, "kiln_arange: unsupported range: nan -> 1"},
        {KILN_F32, 0, 1e300, 1e-300, KILN_ERR_INVALID,
         "kiln_arange: invalid size, possible overflow?"},
        {KILN_I64, 0, 1e300, 1, KILN_ERR_INVALID,
         "kiln_arange: value cannot be converted to type int64_t without overflow"},
        {KILN_BOOL, 0, 2, 1, KILN_ERR_DTYPE,
         "kiln_arange: \"arange_cpu\" not implemented for 'Bool'"},
        {(kiln_dtype)11, 0, 2, 1, KILN_ERR_DTYPE, "kiln_arange: invalid dtype 11"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln_graph *g = kiln_graph_new();
        assert_null(kiln_arange(g, cases[i].dt, cases[i].start, cases[i].end, cases[i].step));
        assert_graph_error(g, cases[i].s, cases[i].msg);
        assert_int_equal(g->nnodes, 0);
        kiln_graph_free(g);
    }
}

/* ---- linspace --------------------------------------------------------------------- */

static void test_linspace_shapes(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_dtype dts[4] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64};
    for (int k = 0; k < 4; k++) {
        kiln_tensor *t = kiln_linspace(g, dts[k], -1, 10, 7);
        assert_dims(t, 1, (const int64_t[]){7});
        assert_int_equal(t->dtype, dts[k]);
    }
    /* float: the last op is the WHERE that picks a half; ints: its cast */
    kiln_tensor *f = kiln_linspace(g, KILN_F32, 0, 1, 5);
    assert_int_equal(f->op, IR_WHERE);
    kiln_tensor *i = kiln_linspace(g, KILN_I64, 0, 10, 5);
    assert_int_equal(i->op, IR_CAST);
    assert_int_equal(i->in[0]->op, IR_WHERE);
    assert_int_equal(i->in[0]->dtype, KILN_F64);

    kiln_tensor *one = kiln_linspace(g, KILN_F32, 3.5, 10, 1);
    assert_dims(one, 1, (const int64_t[]){1});
    assert_int_equal(one->op, IR_FULL);
    assert_true(one->value == 3.5);
    kiln_tensor *none = kiln_linspace(g, KILN_F64, 0, 1, 0);
    assert_dims(none, 1, (const int64_t[]){0});
    kiln_tensor *ione = kiln_linspace(g, KILN_I32, 2.7, 10, 1);
    assert_true(ione->value == 2); /* start converted to int first */
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_linspace_errors(void **state)
{
    (void)state;
    struct {
        kiln_dtype dt;
        double start, end;
        int64_t steps;
        kiln_status s;
        const char *msg;
    } cases[] = {
        {KILN_F32, 0, 1, -1, KILN_ERR_INVALID,
         "kiln_linspace: number of steps must be non-negative"},
        {KILN_BOOL, 0, 1, 3, KILN_ERR_DTYPE,
         "kiln_linspace: \"linspace_cpu\" not implemented for 'Bool'"},
        {KILN_I32, 0, 3e9, 3, KILN_ERR_INVALID,
         "kiln_linspace: value cannot be converted to type int32_t without overflow"},
        {KILN_I64, (double)NAN, 1, 3, KILN_ERR_INVALID,
         "kiln_linspace: value cannot be converted to type int64_t without overflow"},
        {KILN_F32, 0, 1e300, 3, KILN_ERR_INVALID,
         "kiln_linspace: value cannot be converted to type float without overflow"},
        {(kiln_dtype)7, 0, 1, 3, KILN_ERR_DTYPE, "kiln_linspace: invalid dtype 7"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln_graph *g = kiln_graph_new();
        assert_null(kiln_linspace(g, cases[i].dt, cases[i].start, cases[i].end, cases[i].steps));
        assert_graph_error(g, cases[i].s, cases[i].msg);
        kiln_graph_free(g);
    }
}

/* ---- random ---------------------------------------------------------------------- */

static void test_rand(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *r = kiln_rand(g, KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *n = kiln_randn(g, KILN_F64, KILN_SHAPE(4));
    kiln_tensor *rl = kiln_rand_like(g, n), *nl = kiln_randn_like(g, r);
    assert_dims(r, 2, (const int64_t[]){2, 3});
    assert_int_equal(r->op, IR_RAND);
    assert_int_equal(r->dtype, KILN_F32);
    assert_int_equal(n->op, IR_RANDN);
    assert_int_equal(n->dtype, KILN_F64);
    assert_dims(rl, 1, (const int64_t[]){4});
    assert_int_equal(rl->op, IR_RAND);
    assert_int_equal(rl->dtype, KILN_F64);
    assert_dims(nl, 2, (const int64_t[]){2, 3});
    assert_int_equal(nl->op, IR_RANDN);
    assert_int_equal(nl->dtype, KILN_F32);
    assert_int_equal(r->stream, 0);
    assert_int_equal(n->stream, 1);
    assert_int_equal(rl->stream, 2);
    assert_int_equal(nl->stream, 3);
    kiln_tensor *s = kiln_rand(g, KILN_F32, 0, NULL);
    assert_int_equal(s->rank, 0);
    kiln_graph_free(g);
}

static void test_rand_errors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    assert_null(kiln_rand(g, KILN_I64, KILN_SHAPE(2)));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_rand: \"check_uniform_bounds\" not implemented for 'Long'");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_randn(g, KILN_I64, KILN_SHAPE(2)));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_randn: \"normal_kernel_cpu\" not implemented for "
                       "'Long'");
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_tensor *b = kiln_input(g, "b", KILN_BOOL, KILN_SHAPE(2));
    assert_null(kiln_rand_like(g, b));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_rand_like: \"check_uniform_bounds\" not implemented for 'Bool'");
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_tensor *i = kiln_input(g, "i", KILN_I32, KILN_SHAPE(2));
    assert_null(kiln_randn_like(g, i));
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_randn_like: \"normal_kernel_cpu\" not implemented for 'Int'");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_randn(g, KILN_F32, KILN_SHAPE(-1)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_randn: Trying to create tensor with negative "
                       "dimension -1: [-1]");
    assert_int_equal(g->next_stream, 0);
    kiln_graph_free(g);
}

/* ---- values (reference interpreter) ----------------------------------------------- */

/* Makes t the one output of entry "f", runs it in the interpreter and copies
 * the result (nbytes) to dst. Frees g. */
static void run_get(kiln_graph *g, kiln_tensor *t, void *dst, size_t nbytes)
{
    assert_non_null(t);
    assert_int_equal(kiln_entry(g, "f", 1, &t, (const char *const[]){"out"}), KILN_OK);
    kiln_compile_opts o = {.target = KILN_TARGET_INTERP};
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &o, &m);
    if (s != KILN_OK)
        fprintf(stderr, "compile: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    s = kiln_module_run(m, "f");
    if (s != KILN_OK)
        fprintf(stderr, "run: %s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
    assert_int_equal(kiln_module_get(m, "out", dst, nbytes), KILN_OK);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_arange_values(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    float f[10];
    run_get(g, kiln_arange(g, KILN_F32, 0, 1, 0.1), f, sizeof(f));
    for (int i = 0; i < 10; i++)
        assert_true(f[i] == (float)(i * 0.1)); /* computed in double, then rounded */

    g = kiln_graph_new();
    double d[3];
    run_get(g, kiln_arange(g, KILN_F64, 1, 2.5, 0.5), d, sizeof(d));
    assert_true(d[0] == 1 && d[1] == 1.5 && d[2] == 2);

    g = kiln_graph_new();
    int64_t l[4];
    run_get(g, kiln_arange(g, KILN_I64, 10, 0, -3), l, sizeof(l));
    assert_true(l[0] == 10 && l[1] == 7 && l[2] == 4 && l[3] == 1);

    /* PyTorch's integer kernel truncates the step: torch.arange(0, 3, 0.5, dtype=torch.int32) */
    g = kiln_graph_new();
    int32_t z[6];
    run_get(g, kiln_arange(g, KILN_I32, 0, 3, 0.5), z, sizeof(z));
    for (int i = 0; i < 6; i++)
        assert_int_equal(z[i], 0);
}

/* PyTorch's CPU linspace in float32: both halves computed from their own end. */
static float linspace_f32(float s, float e, int64_t steps, int64_t i)
{
    float st = (e - s) / (float)(steps - 1);
    if (i < steps / 2) {
        float p = st * (float)i;
        return s + p;
    }
    float p = st * (float)(steps - 1 - i);
    return e - p;
}

static void test_linspace_values(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    float q[5];
    run_get(g, kiln_linspace(g, KILN_F32, 0, 1, 5), q, sizeof(q));
    assert_true(q[0] == 0 && q[1] == 0.25f && q[2] == 0.5f && q[3] == 0.75f && q[4] == 1);

    struct {
        double start, end;
        int64_t steps;
    } cases[] = {{-1, 1, 7}, {3, -2, 10}, {0.1, 0.7, 11}, {-5, 1e4, 33}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        float out[64];
        int64_t n = cases[k].steps;
        g = kiln_graph_new();
        run_get(g, kiln_linspace(g, KILN_F32, cases[k].start, cases[k].end, n), out,
                sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++)
            assert_true(out[i] == linspace_f32((float)cases[k].start, (float)cases[k].end, n, i));
        assert_true(out[0] == (float)cases[k].start);
        assert_true(out[n - 1] == (float)cases[k].end);
    }

    g = kiln_graph_new();
    double d[3];
    run_get(g, kiln_linspace(g, KILN_F64, 0, 1, 3), d, sizeof(d));
    assert_true(d[0] == 0 && d[1] == 0.5 && d[2] == 1);

    /* torch.linspace(0, 10, 5, dtype=torch.int64) == [0, 2, 5, 7, 10] */
    g = kiln_graph_new();
    int64_t l[5];
    run_get(g, kiln_linspace(g, KILN_I64, 0, 10, 5), l, sizeof(l));
    assert_true(l[0] == 0 && l[1] == 2 && l[2] == 5 && l[3] == 7 && l[4] == 10);

    g = kiln_graph_new();
    int32_t i4[4];
    run_get(g, kiln_linspace(g, KILN_I32, 0, -7, 4), i4, sizeof(i4));
    assert_true(i4[0] == 0 && i4[1] == -2 && i4[2] == -4 && i4[3] == -7);

    g = kiln_graph_new();
    float one[1];
    run_get(g, kiln_linspace(g, KILN_F32, 2.5, 9, 1), one, sizeof(one));
    assert_true(one[0] == 2.5f);
}

static void test_fill_values(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    int32_t fi[4];
    run_get(g, kiln_full(g, KILN_I32, KILN_SHAPE(2, 2), -3), fi, sizeof(fi));
    for (int i = 0; i < 4; i++)
        assert_int_equal(fi[i], -3);

    g = kiln_graph_new();
    double c[3] = {1.5, -2, 8};
    double got[3];
    run_get(g, kiln_tensor_from(g, KILN_F64, KILN_SHAPE(3), c), got, sizeof(got));
    assert_memory_equal(got, c, sizeof(c));

    g = kiln_graph_new();
    float data[2] = {4, 5};
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2), kiln_init_data(data));
    data[0] = 0;
    float wv[2];
    run_get(g, w, wv, sizeof(wv));
    assert_true(wv[0] == 4 && wv[1] == 5);
}

/* ---- out of memory --------------------------------------------------------------- */

/* Fails the n-th allocation for every n until the build succeeds: each
 * attempt must either succeed or record KILN_ERR_NOMEM, never crash. */
static void test_out_of_memory(void **state)
{
    (void)state;
    kiln_set_allocator(&ku_failing_allocator);
    bool done = false;
    for (int n = 0; n < 200 && !done; n++) {
        ku_fail_after = -1;
        kiln_graph *g = kiln_graph_new();
        assert_non_null(g);
        ku_fail_after = n;
        float data[4] = {1, 2, 3, 4};
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4));
        kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(4), kiln_init_data(data));
        kiln_tensor *c = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(4), data);
        kiln_tensor *l = kiln_linspace(g, KILN_F32, 0, 1, 4);
        kiln_tensor *r = kiln_arange(g, KILN_I64, 0, 4, 1);
        ku_fail_after = -1;
        if (x && w && c && l && r) {
            assert_int_equal(kiln_graph_status(g), KILN_OK);
            done = true;
        } else {
            assert_graph_error(g, KILN_ERR_NOMEM, "out of memory");
        }
        kiln_graph_free(g);
    }
    kiln_set_allocator(NULL);
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_constructors),
        cmocka_unit_test(test_input),
        cmocka_unit_test(test_input_name_copied),
        cmocka_unit_test(test_input_errors),
        cmocka_unit_test(test_null_arguments_are_quiet),
        cmocka_unit_test(test_sticky_first_error),
        cmocka_unit_test(test_param),
        cmocka_unit_test(test_param_data_is_copied),
        cmocka_unit_test(test_param_errors),
        cmocka_unit_test(test_name_clashes_with_entry_output),
        cmocka_unit_test(test_tensor_from),
        cmocka_unit_test(test_scalar),
        cmocka_unit_test(test_scalar_is_weak_in_promotion),
        cmocka_unit_test(test_full_and_friends),
        cmocka_unit_test(test_integer_fill_overflow),
        cmocka_unit_test(test_like_foreign_graph),
        cmocka_unit_test(test_arange),
        cmocka_unit_test(test_arange_errors),
        cmocka_unit_test(test_linspace_shapes),
        cmocka_unit_test(test_linspace_errors),
        cmocka_unit_test(test_rand),
        cmocka_unit_test(test_rand_errors),
        cmocka_unit_test(test_arange_values),
        cmocka_unit_test(test_linspace_values),
        cmocka_unit_test(test_fill_values),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
