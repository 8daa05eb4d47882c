/* test_movement.c - reshape/view, permute/transpose, squeeze/unsqueeze,
 * expand, slice/select, concat/stack, flatten, pad: shapes, node attributes
 * and every error message. */
#include "frontend/fe.h"
#include "testutil.h"

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

#define DIMS(...)                                                                                  \
    (const int64_t[])                                                                              \
    {                                                                                              \
        __VA_ARGS__                                                                                \
    }

/* A fresh graph with one f32 input of the given shape. */
static kiln_graph *g_with(int rank, const int64_t *dims, kiln_tensor **x)
{
    kiln_graph *g = kiln_graph_new();
    *x = kiln_input(g, "x", KILN_F32, rank, dims);
    assert_non_null(*x);
    return g;
}

/* ---- reshape / view ------------------------------------------------------------ */

static void test_reshape(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(4, 6), &x);
    kiln_tensor *r = kiln_reshape(g, x, KILN_SHAPE(2, 12));
    assert_dims(r, 2, DIMS(2, 12));
    assert_int_equal(r->op, IR_RESHAPE);
    assert_ptr_equal(r->in[0], x);
    assert_int_equal(r->dtype, KILN_F32);
    assert_dims(kiln_reshape(g, x, KILN_SHAPE(-1, 8)), 2, DIMS(3, 8));
    assert_dims(kiln_reshape(g, x, KILN_SHAPE(2, -1, 3)), 3, DIMS(2, 4, 3));
    assert_dims(kiln_reshape(g, x, KILN_SHAPE(-1)), 1, DIMS(24));
    assert_dims(kiln_view(g, x, KILN_SHAPE(24, 1)), 2, DIMS(24, 1));
    /* the same shape is the tensor itself */
    assert_ptr_equal(kiln_reshape(g, x, KILN_SHAPE(4, 6)), x);
    kiln_tensor *one = kiln_reshape(g, x, KILN_SHAPE(2, 2, 2, 3));
    kiln_tensor *s = kiln_reshape(g, kiln_reshape(g, one, KILN_SHAPE(24)), KILN_SHAPE(1, 24));
    assert_dims(s, 2, DIMS(1, 24));
    kiln_tensor *sc = kiln_scalar(g, 3);
    assert_dims(kiln_reshape(g, sc, KILN_SHAPE(1, 1)), 2, DIMS(1, 1));
    kiln_tensor *v = kiln_input(g, "v", KILN_I32, KILN_SHAPE(1));
    assert_dims(kiln_reshape(g, v, 0, NULL), 0, NULL);
    kiln_tensor *e = kiln_input(g, "e", KILN_F32, KILN_SHAPE(0, 3));
    assert_dims(kiln_reshape(g, e, KILN_SHAPE(3, 0, 5)), 3, DIMS(3, 0, 5));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_reshape_errors(void **state)
{
    (void)state;
    struct {
        const char *fn;
        int rank;
        const int64_t *dims;
        kiln_status s;
        const char *msg;
    } cases[] = {
        {"reshape", KILN_SHAPE(3, 5), KILN_ERR_SHAPE,
         "kiln_reshape: shape '[3, 5]' is invalid for input of size 16"},
        {"view", KILN_SHAPE(3, 5), KILN_ERR_SHAPE,
         "kiln_view: shape '[3, 5]' is invalid for input of size 16"},
        {"reshape", KILN_SHAPE(-1, 5), KILN_ERR_SHAPE,
         "kiln_reshape: shape '[-1, 5]' is invalid for input of size 16"},
        {"reshape", KILN_SHAPE(-1, -1), KILN_ERR_SHAPE,
         "kiln_reshape: only one dimension can be inferred"},
        {"reshape", KILN_SHAPE(4, -2), KILN_ERR_SHAPE, "kiln_reshape: invalid shape dimension -2"},
        {"reshape", KILN_SHAPE(0, -1), KILN_ERR_SHAPE,
         "kiln_reshape: shape '[0, -1]' is invalid for input of size 16"},
        {"view", KILN_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 16), KILN_ERR_UNSUPPORTED,
         "kiln_view: tensors of rank 9 are not supported (KILN_MAX_RANK is 8)"},
        {"reshape", -1, DIMS(16), KILN_ERR_INVALID,
         "kiln_reshape: rank must be non-negative, but got -1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kiln_tensor *x;
        kiln_graph *g = g_with(KILN_SHAPE(4, 4), &x);
        kiln_tensor *r = strcmp(cases[i].fn, "view") == 0
                             ? kiln_view(g, x, cases[i].rank, cases[i].dims)
                             : kiln_reshape(g, x, cases[i].rank, cases[i].dims);
        assert_null(r);
        assert_graph_error(g, cases[i].s, cases[i].msg);
        kiln_graph_free(g);
    }
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(0, 4), &x);
    assert_null(kiln_reshape(g, x, KILN_SHAPE(0, -1)));
    assert_graph_error(
        g, KILN_ERR_SHAPE,
        "kiln_reshape: cannot reshape tensor of 0 elements into shape [0, -1] because "
        "the unspecified dimension size -1 can be any value and is ambiguous");
    kiln_graph_free(g);
}

/* ---- permute / transpose ---------------------------------------------------------- */

static void test_permute(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(2, 3, 4), &x);
    kiln_tensor *p = kiln_permute(g, x, (const int[]){2, 0, 1});
    assert_dims(p, 3, DIMS(4, 2, 3));
    assert_int_equal(p->op, IR_PERMUTE);
    assert_int_equal(p->perm[0], 2);
    assert_int_equal(p->perm[1], 0);
    assert_int_equal(p->perm[2], 1);
    kiln_tensor *n = kiln_permute(g, x, (const int[]){-1, -3, 1});
    assert_dims(n, 3, DIMS(4, 2, 3));
    assert_int_equal(n->perm[0], 2);
    assert_ptr_equal(kiln_permute(g, x, (const int[]){0, 1, 2}), x);
    kiln_tensor *s = kiln_scalar(g, 1);
    assert_ptr_equal(kiln_permute(g, s, NULL), s);

    kiln_tensor *t = kiln_transpose(g, x, 0, 2);
    assert_dims(t, 3, DIMS(4, 3, 2));
    assert_int_equal(t->op, IR_PERMUTE);
    assert_int_equal(t->perm[0], 2);
    assert_int_equal(t->perm[1], 1);
    assert_int_equal(t->perm[2], 0);
    assert_dims(kiln_transpose(g, x, -1, -2), 3, DIMS(2, 4, 3));
    assert_ptr_equal(kiln_transpose(g, x, 1, -2), x);
    assert_ptr_equal(kiln_transpose(g, s, 0, -1), s);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_permute_errors(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(2, 3, 4), &x);
    assert_null(kiln_permute(g, x, (const int[]){0, 2, -3}));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_permute: permute(): duplicate dims are not allowed.");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(2, 3, 4), &x);
    assert_null(kiln_permute(g, x, (const int[]){0, 3, 1}));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_permute: Dimension out of range (expected to be in "
                       "range of [-3, 2], but got 3)");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(2, 3), &x);
    assert_null(kiln_transpose(g, x, 0, -3));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_transpose: Dimension out of range (expected to be "
                       "in range of [-2, 1], but got -3)");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(2, 3), &x);
    assert_null(kiln_permute(g, x, NULL));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

/* ---- squeeze / unsqueeze / flatten ------------------------------------------------------ */

static void test_squeeze_unsqueeze(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(1, 3, 1, 2), &x);
    kiln_tensor *all = kiln_squeeze(g, x, KILN_ALL);
    assert_dims(all, 2, DIMS(3, 2));
    assert_int_equal(all->op, IR_RESHAPE);
    assert_dims(kiln_squeeze(g, x, 2), 3, DIMS(1, 3, 2));
    assert_dims(kiln_squeeze(g, x, -4), 3, DIMS(3, 1, 2));
    assert_ptr_equal(kiln_squeeze(g, x, 1), x); /* not size 1: a no-op, as PyTorch */
    kiln_tensor *s = kiln_scalar(g, 2);
    assert_ptr_equal(kiln_squeeze(g, s, 0), s);
    assert_ptr_equal(kiln_squeeze(g, s, KILN_ALL), s);
    kiln_tensor *ones = kiln_zeros(g, KILN_F32, KILN_SHAPE(1, 1));
    assert_dims(kiln_squeeze(g, ones, KILN_ALL), 0, NULL);

    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(3, 4));
    kiln_tensor *u = kiln_unsqueeze(g, y, 0);
    assert_dims(u, 3, DIMS(1, 3, 4));
    assert_int_equal(u->op, IR_RESHAPE);
    assert_int_equal(u->dtype, KILN_I64);
    assert_dims(kiln_unsqueeze(g, y, 2), 3, DIMS(3, 4, 1));
    assert_dims(kiln_unsqueeze(g, y, -1), 3, DIMS(3, 4, 1));
    assert_dims(kiln_unsqueeze(g, y, -3), 3, DIMS(1, 3, 4));
    assert_dims(kiln_unsqueeze(g, y, 1), 3, DIMS(3, 1, 4));
    assert_dims(kiln_unsqueeze(g, s, 0), 1, DIMS(1));
    assert_dims(kiln_unsqueeze(g, s, -1), 1, DIMS(1));
    assert_int_equal(kiln_graph_status(g), KILN_OK);

    assert_null(kiln_unsqueeze(g, y, 3));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_unsqueeze: Dimension out of range (expected to be "
                       "in range of [-3, 2], but got 3)");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(2, 3), &x);
    assert_null(kiln_squeeze(g, x, 2));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_squeeze: Dimension out of range (expected to be in "
                       "range of [-2, 1], but got 2)");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(1, 1, 1, 1, 1, 1, 1, 1), &x);
    assert_null(kiln_unsqueeze(g, x, 0));
    assert_graph_error(g, KILN_ERR_UNSUPPORTED,
                       "kiln_unsqueeze: tensors of rank 9 are not supported (KILN_MAX_RANK is 8)");
    kiln_graph_free(g);
}

static void test_flatten(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(2, 3, 4, 5), &x);
    kiln_tensor *f = kiln_flatten(g, x, 0, -1);
    assert_dims(f, 1, DIMS(120));
    assert_int_equal(f->op, IR_RESHAPE);
    assert_dims(kiln_flatten(g, x, 1, 2), 3, DIMS(2, 12, 5));
    assert_dims(kiln_flatten(g, x, 1, -1), 2, DIMS(2, 60));
    assert_dims(kiln_flatten(g, x, -2, 3), 3, DIMS(2, 3, 20));
    assert_ptr_equal(kiln_flatten(g, x, 2, 2), x);
    kiln_tensor *s = kiln_full(g, KILN_F32, 0, NULL, 1);
    assert_dims(kiln_flatten(g, s, 0, -1), 1, DIMS(1));
    assert_int_equal(kiln_graph_status(g), KILN_OK);

    assert_null(kiln_flatten(g, x, 2, 1));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_flatten: flatten() has invalid args: start_dim "
                       "cannot come after end_dim");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(2, 3), &x);
    assert_null(kiln_flatten(g, x, 0, 2));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_flatten: Dimension out of range (expected to be in "
                       "range of [-2, 1], but got 2)");
    kiln_graph_free(g);
}

/* ---- expand ------------------------------------------------------------------------ */

static void test_expand(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(3, 1), &x);
    kiln_tensor *e = kiln_expand(g, x, KILN_SHAPE(3, 4));
    assert_dims(e, 2, DIMS(3, 4));
    assert_int_equal(e->op, IR_EXPAND);
    assert_ptr_equal(e->in[0], x);
    kiln_tensor *lead = kiln_expand(g, x, KILN_SHAPE(2, -1, 5));
    assert_dims(lead, 3, DIMS(2, 3, 5));
    assert_int_equal(lead->op, IR_EXPAND);
    assert_int_equal(lead->in[0]->op, IR_RESHAPE); /* rank first, then sizes */
    assert_dims(lead->in[0], 3, DIMS(1, 3, 1));
    assert_ptr_equal(kiln_expand(g, x, KILN_SHAPE(-1, -1)), x);
    assert_ptr_equal(kiln_expand(g, x, KILN_SHAPE(3, 1)), x);
    kiln_tensor *s = kiln_scalar(g, 1.5);
    kiln_tensor *es = kiln_expand(g, s, KILN_SHAPE(2, 2));
    assert_dims(es, 2, DIMS(2, 2));
    assert_int_equal(es->dtype, KILN_F32);
    assert_dims(kiln_expand(g, x, KILN_SHAPE(0, 3, 0)), 3, DIMS(0, 3, 0));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_expand_errors(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(3), &x);
    assert_null(kiln_expand(g, x, KILN_SHAPE(2, 4)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_expand: The expanded size of the tensor (4) must match the existing "
                       "size (3) at non-singleton dimension 1.  Target sizes: [2, 4].  Tensor "
                       "sizes: [3]");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(2, 3), &x);
    assert_null(kiln_expand(g, x, KILN_SHAPE(3)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_expand: the number of sizes provided (1) must be greater or equal to "
                       "the number of dimensions in the tensor (2)");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(3), &x);
    assert_null(kiln_expand(g, x, KILN_SHAPE(-1, 3)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_expand: The expanded size of the tensor (-1) isn't allowed in a "
                       "leading, non-existing dimension 0");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(1), &x);
    assert_null(kiln_expand(g, x, KILN_SHAPE(-2)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_expand: Trying to create tensor with negative dimension -2: [-2]");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(1), &x);
    assert_null(kiln_expand(g, x, KILN_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)));
    assert_graph_error(g, KILN_ERR_UNSUPPORTED, "kiln_expand: tensors of rank 9 are not supported");
    kiln_graph_free(g);
}

/* ---- slice / select ------------------------------------------------------------------- */

static void check_slice(int64_t size, int64_t start, int64_t end, int64_t step, int64_t len,
                        int64_t begin)
{
    kiln_tensor *x;
    kiln_graph *g = g_with(2, DIMS(2, size), &x);
    kiln_tensor *s = kiln_slice(g, x, 1, start, end, step);
    assert_dims(s, 2, DIMS(2, len));
    if (s != x) {
        assert_int_equal(s->op, IR_SLICE);
        assert_int_equal(s->begin[0], 0);
        assert_int_equal(s->step[0], 1);
        assert_int_equal(s->begin[1], begin);
        assert_int_equal(s->step[1], step);
    }
    kiln_graph_free(g);
}

static void test_slice(void **state)
{
    (void)state;
    check_slice(10, 2, 5, 1, 3, 2);
    check_slice(10, 0, 10, 3, 4, 0);     /* 0 3 6 9 */
    check_slice(10, 1, 10, 3, 3, 1);     /* 1 4 7 */
    check_slice(10, -3, 10, 1, 3, 7);    /* x[-3:] */
    check_slice(10, 0, -1, 1, 9, 0);     /* x[:-1] */
    check_slice(10, -100, 100, 2, 5, 0); /* clamped both ways */
    check_slice(10, 5, 2, 1, 0, 0);      /* end before start: empty */
    check_slice(10, 12, 20, 1, 0, 0);    /* past the end: empty */
    check_slice(10, 0, INT64_MAX, 4, 3, 0);
    check_slice(10, INT64_MIN, 3, 1, 3, 0);
    check_slice(0, 0, 5, 1, 0, 0);

    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(4, 5), &x);
    assert_ptr_equal(kiln_slice(g, x, 0, 0, 4, 1), x);
    assert_ptr_equal(kiln_slice(g, x, -1, -5, INT64_MAX, 1), x);
    kiln_tensor *s = kiln_slice(g, x, -2, 1, 3, 1);
    assert_dims(s, 2, DIMS(2, 5));
    assert_int_equal(s->begin[0], 1);
    assert_int_equal(s->step[1], 1);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_slice_errors(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(4), &x);
    assert_null(kiln_slice(g, x, 0, 0, 4, 0));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_slice: slice step must be positive");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(4), &x);
    assert_null(kiln_slice(g, x, 0, 4, 0, -1));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_slice: slice step must be positive");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(4), &x);
    assert_null(kiln_slice(g, x, 1, 0, 4, 1));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_slice: Dimension out of range (expected to be in "
                       "range of [-1, 0], but got 1)");
    kiln_graph_free(g);

    g = g_with(0, NULL, &x);
    assert_null(kiln_slice(g, x, 0, 0, 1, 1));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_slice: slice() cannot be applied to a 0-dim tensor.");
    kiln_graph_free(g);
}

static void test_select(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(3, 4, 5), &x);
    kiln_tensor *s = kiln_select(g, x, 1, 2);
    assert_dims(s, 2, DIMS(3, 5));
    assert_int_equal(s->op, IR_RESHAPE);
    kiln_tensor *sl = s->in[0];
    assert_int_equal(sl->op, IR_SLICE);
    assert_dims(sl, 3, DIMS(3, 1, 5));
    assert_int_equal(sl->begin[1], 2);
    kiln_tensor *n = kiln_select(g, x, -1, -1);
    assert_dims(n, 2, DIMS(3, 4));
    assert_int_equal(n->in[0]->begin[2], 4);
    kiln_tensor *v = kiln_input(g, "v", KILN_I32, KILN_SHAPE(1));
    kiln_tensor *sv = kiln_select(g, v, 0, 0);
    assert_dims(sv, 0, NULL);
    assert_int_equal(sv->dtype, KILN_I32);
    assert_int_equal(kiln_graph_status(g), KILN_OK);

    assert_null(kiln_select(g, x, 0, 5));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_select: index 5 is out of bounds for dimension 0 with size 3");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(3, 4), &x);
    assert_null(kiln_select(g, x, -1, -5));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_select: index -5 is out of bounds for dimension 1 with size 4");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(3, 4), &x);
    assert_null(kiln_select(g, x, 2, 0));
    assert_graph_error(g, KILN_ERR_SHAPE, "kiln_select: Dimension out of range");
    kiln_graph_free(g);

    g = g_with(0, NULL, &x);
    assert_null(kiln_select(g, x, 0, 0));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_select: select() cannot be applied to a 0-dim tensor.");
    kiln_graph_free(g);
}

/* ---- concat / stack --------------------------------------------------------------------- */

static void test_concat(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(2, 5));
    kiln_tensor *c = kiln_concat(g, 2, (kiln_tensor *const[]){a, b}, 1);
    assert_dims(c, 2, DIMS(2, 8));
    assert_int_equal(c->op, IR_CONCAT);
    assert_int_equal(c->axis, 1);
    assert_int_equal(c->nin, 2);
    assert_ptr_equal(c->in[0], a);
    assert_ptr_equal(c->in[1], b);
    kiln_tensor *r = kiln_concat(g, 3, (kiln_tensor *const[]){a, a, a}, -2);
    assert_dims(r, 2, DIMS(6, 3));
    assert_int_equal(r->axis, 0);
    assert_ptr_equal(kiln_concat(g, 1, &a, 0), a);

    /* promotion over all operands, with casts */
    kiln_tensor *i = kiln_input(g, "i", KILN_I64, KILN_SHAPE(2, 1));
    kiln_tensor *d = kiln_input(g, "d", KILN_F64, KILN_SHAPE(2, 2));
    kiln_tensor *m = kiln_concat(g, 3, (kiln_tensor *const[]){i, a, d}, 1);
    assert_dims(m, 2, DIMS(2, 6));
    assert_int_equal(m->dtype, KILN_F64);
    assert_int_equal(m->in[0]->op, IR_CAST);
    assert_int_equal(m->in[0]->dtype, KILN_F64);
    assert_int_equal(m->in[1]->op, IR_CAST);
    assert_ptr_equal(m->in[2], d);
    kiln_tensor *e = kiln_input(g, "e", KILN_F32, KILN_SHAPE(0, 3));
    assert_dims(kiln_concat(g, 2, (kiln_tensor *const[]){e, a}, 0), 2, DIMS(2, 3));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_concat_errors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    assert_null(kiln_concat(g, 0, (kiln_tensor *const[]){NULL}, 0));
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_concat: torch.cat(): expected a non-empty list "
                       "of Tensors");
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2, 2));
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(3, 2));
    assert_null(kiln_concat(g, 2, (kiln_tensor *const[]){a, b}, 1));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_concat: Sizes of tensors must match except in dimension 1. Expected "
                       "size 2 but got size 3 for tensor number 1 in the list.");
    kiln_graph_free(g);

    g = kiln_graph_new();
    a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2, 2));
    b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(2));
    assert_null(kiln_concat(g, 2, (kiln_tensor *const[]){a, b}, 0));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_concat: Tensors must have same number of dimensions: got 2 and 1");
    kiln_graph_free(g);

    g = kiln_graph_new();
    a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2));
    b = kiln_scalar(g, 1);
    assert_null(kiln_concat(g, 2, (kiln_tensor *const[]){a, b}, 0));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_concat: zero-dimensional tensor (at position 1) "
                       "cannot be concatenated");
    kiln_graph_free(g);

    g = kiln_graph_new();
    a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2));
    assert_null(kiln_concat(g, 2, (kiln_tensor *const[]){a, a}, 1));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_concat: Dimension out of range (expected to be in "
                       "range of [-1, 0], but got 1)");
    kiln_graph_free(g);

    g = kiln_graph_new();
    a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2));
    assert_null(kiln_concat(g, 2, (kiln_tensor *const[]){a, NULL}, 0));
    assert_null(kiln_concat(g, 2, NULL, 0));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_stack(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *b = kiln_input(g, "b", KILN_I32, KILN_SHAPE(2, 3));
    kiln_tensor *s = kiln_stack(g, 2, (kiln_tensor *const[]){a, b}, 0);
    assert_dims(s, 3, DIMS(2, 2, 3));
    assert_int_equal(s->op, IR_CONCAT);
    assert_int_equal(s->dtype, KILN_F32);
    assert_int_equal(s->axis, 0);
    assert_dims(kiln_stack(g, 3, (kiln_tensor *const[]){a, a, a}, 1), 3, DIMS(2, 3, 3));
    assert_dims(kiln_stack(g, 3, (kiln_tensor *const[]){a, a, a}, -1), 3, DIMS(2, 3, 3));
    assert_dims(kiln_stack(g, 2, (kiln_tensor *const[]){a, a}, 2), 3, DIMS(2, 3, 2));
    kiln_tensor *one = kiln_stack(g, 1, &a, 0);
    assert_dims(one, 3, DIMS(1, 2, 3));
    kiln_tensor *x = kiln_full(g, KILN_F32, 0, NULL, 1), *y = kiln_full(g, KILN_F32, 0, NULL, 2);
    assert_dims(kiln_stack(g, 2, (kiln_tensor *const[]){x, y}, 0), 1, DIMS(2));
    assert_int_equal(kiln_graph_status(g), KILN_OK);

    assert_null(kiln_stack(g, 2, (kiln_tensor *const[]){a, a}, 3));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_stack: Dimension out of range (expected to be in "
                       "range of [-3, 2], but got 3)");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_stack(g, 0, NULL, 0));
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_stack: stack expects a non-empty TensorList");
    kiln_graph_free(g);

    g = kiln_graph_new();
    a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2, 3));
    b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(2, 4));
    assert_null(kiln_stack(g, 2, (kiln_tensor *const[]){a, b}, 0));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_stack: stack expects each tensor to be equal size, "
                       "but got [2, 3] at entry 0 and [2, 4] at entry 1");
    kiln_graph_free(g);

    g = kiln_graph_new();
    a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(1, 1, 1, 1, 1, 1, 1, 1));
    assert_null(kiln_stack(g, 2, (kiln_tensor *const[]){a, a}, 0));
    assert_graph_error(g, KILN_ERR_UNSUPPORTED, "kiln_stack: tensors of rank 9 are not supported");
    kiln_graph_free(g);
}

/* ---- pad ---------------------------------------------------------------------------- */

static void test_pad(void **state)
{
    (void)state;
    kiln_tensor *x;
    kiln_graph *g = g_with(KILN_SHAPE(2, 3), &x);
    kiln_tensor *p = kiln_pad(g, x, DIMS(1, 0), DIMS(2, 3), -1.5);
    assert_dims(p, 2, DIMS(5, 6));
    assert_int_equal(p->op, IR_PAD);
    assert_int_equal(p->begin[0], 1);
    assert_int_equal(p->begin[1], 0);
    assert_int_equal(p->after[0], 2);
    assert_int_equal(p->after[1], 3);
    assert_true(p->value == -1.5);
    assert_int_equal(p->dtype, KILN_F32);
    assert_ptr_equal(kiln_pad(g, x, DIMS(0, 0), DIMS(0, 0), 1), x);
    kiln_tensor *s = kiln_scalar(g, 1);
    assert_ptr_equal(kiln_pad(g, s, NULL, NULL, 0), s);
    assert_int_equal(kiln_graph_status(g), KILN_OK);

    assert_null(kiln_pad(g, x, NULL, DIMS(1, 1), 0));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    assert_null(kiln_pad(g, x, DIMS(0, -1), DIMS(1, 1), 0));
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_pad: padding must be non-negative, but got -1 "
                       "before and 1 after axis 1");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(2), &x);
    assert_null(kiln_pad(g, x, DIMS(1), DIMS(INT64_MAX), 0));
    assert_graph_error(g, KILN_ERR_SHAPE, "kiln_pad: the padded size of axis 0 overflows int64");
    kiln_graph_free(g);
}

/* A shape whose element count or byte size does not fit int64 is refused by
 * every builder that makes a new shape, naming the function and the shape:
 * the counts would otherwise wrap (kiln_tensor_numel gave 0 or 2^32). */
static void test_shapes_past_int64_are_refused(void **state)
{
    (void)state;
    const int64_t big = INT64_C(1) << 40;
    kiln_tensor *x, *y;
    kiln_graph *g = g_with(KILN_SHAPE(1, 1, 1), &x);
    assert_null(kiln_expand(g, x, KILN_SHAPE(big, big, 1)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_expand: the shape [1099511627776, 1099511627776, 1] has more elements "
                       "than int64 can count");
    kiln_graph_free(g);

    /* 2^60 elements fit as float32 (2^62 bytes), not as float64 (2^63 bytes) */
    g = g_with(KILN_SHAPE(1, 1), &x);
    assert_non_null(kiln_expand(g, x, KILN_SHAPE(INT64_C(1) << 30, INT64_C(1) << 30)));
    kiln_tensor *d = kiln_cast(g, x, KILN_F64);
    assert_null(kiln_expand(g, d, KILN_SHAPE(INT64_C(1) << 30, INT64_C(1) << 30)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_expand: the shape [1073741824, 1073741824] of dtype float64 has "
                       "more bytes than int64 can count");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(big, 1), &x);
    assert_null(kiln_pad(g, x, DIMS(0, 0), DIMS(0, big), 0));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_pad: the shape [1099511627776, 1099511627777] has more elements than "
                       "int64 can count");
    kiln_graph_free(g);

    g = g_with(KILN_SHAPE(big, 1), &x);
    y = ku_input(g, KILN_F32, KILN_SHAPE(1, big));
    assert_null(kiln_add(g, x, y));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_add: the shape [1099511627776, 1099511627776] has more elements than "
                       "int64 can count");
    kiln_graph_free(g);

    /* batched matmul: the broadcast batch (2^40 x 2^40) times 1x1 matrices */
    g = g_with(KILN_SHAPE(big, 1, 1, 1), &x);
    y = ku_input(g, KILN_F32, KILN_SHAPE(big, 1, 1));
    assert_null(kiln_matmul(g, x, y));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_matmul: the shape [1099511627776, 1099511627776, 1");
    kiln_graph_free(g);

    g = kiln_graph_new();
    x = ku_input(g, KILN_BOOL, KILN_SHAPE(INT64_C(1) << 31, INT64_C(1) << 31));
    y = ku_input(g, KILN_BOOL, KILN_SHAPE(INT64_C(1) << 31, INT64_C(1) << 31));
    assert_null(kiln_concat(g, 2, (kiln_tensor *const[]){x, y}, 1));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_concat: the shape [2147483648, 4294967296] has more elements");
    kiln_graph_free(g);

    g = kiln_graph_new();
    x = ku_input(g, KILN_F32, KILN_SHAPE(10, big));
    y = ku_input(g, KILN_I64, KILN_SHAPE(big));
    assert_null(kiln_embedding(g, x, y));
    assert_graph_error(
        g, KILN_ERR_SHAPE,
        "kiln_embedding: the shape [1099511627776, 1099511627776] has more elements");
    kiln_graph_free(g);

    g = kiln_graph_new();
    assert_null(kiln_full(g, KILN_I64, KILN_SHAPE(INT64_C(1) << 60, 2), 0));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_full: the shape [1152921504606846976, 2] of dtype int64 has more "
                       "bytes than int64 can count");
    kiln_graph_free(g);

    /* a zero-size axis does not excuse the others: strides are products of them */
    g = kiln_graph_new();
    assert_null(kiln_zeros(g, KILN_F32, KILN_SHAPE(big, big, 0)));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_zeros: the shape [1099511627776, 1099511627776, 0]");
    kiln_graph_free(g);
}

/* ---- values (reference interpreter) ------------------------------------------------ */

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

/* arange(n) as int64, reshaped. */
static kiln_tensor *iota(kiln_graph *g, int rank, const int64_t *dims)
{
    return kiln_reshape(g, kiln_arange(g, KILN_I64, 0, (double)ir_shape_numel(rank, dims), 1), rank,
                        dims);
}

#define EXPECT_I64(got, ...)                                                                       \
    do {                                                                                           \
        const int64_t want_[] = {__VA_ARGS__};                                                     \
        assert_memory_equal(got, want_, sizeof(want_));                                            \
    } while (0)

static void test_movement_values(void **state)
{
    (void)state;
    int64_t out[64];
    kiln_graph *g = kiln_graph_new();
    run_get(g, kiln_slice(g, iota(g, KILN_SHAPE(2, 5)), 1, 1, 5, 2), out, 4 * 8);
    EXPECT_I64(out, 1, 3, 6, 8);

    g = kiln_graph_new();
    run_get(g, kiln_slice(g, iota(g, KILN_SHAPE(10)), 0, -3, INT64_MAX, 1), out, 3 * 8);
    EXPECT_I64(out, 7, 8, 9);

    g = kiln_graph_new();
    run_get(g, kiln_select(g, iota(g, KILN_SHAPE(3, 4)), 1, -1), out, 3 * 8);
    EXPECT_I64(out, 3, 7, 11);

    g = kiln_graph_new();
    run_get(g, kiln_select(g, iota(g, KILN_SHAPE(3, 4)), 0, 1), out, 4 * 8);
    EXPECT_I64(out, 4, 5, 6, 7);

    g = kiln_graph_new();
    run_get(g, kiln_transpose(g, iota(g, KILN_SHAPE(2, 3)), 0, 1), out, 6 * 8);
    EXPECT_I64(out, 0, 3, 1, 4, 2, 5);

    g = kiln_graph_new();
    run_get(g, kiln_permute(g, iota(g, KILN_SHAPE(2, 3, 2)), (const int[]){2, 0, 1}), out, 12 * 8);
    EXPECT_I64(out, 0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11);

    g = kiln_graph_new();
    run_get(g, kiln_expand(g, iota(g, KILN_SHAPE(3, 1)), KILN_SHAPE(2, -1, 2)), out, 12 * 8);
    EXPECT_I64(out, 0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2);

    g = kiln_graph_new();
    kiln_tensor *a = iota(g, KILN_SHAPE(2, 2));
    kiln_tensor *b = kiln_full(g, KILN_I64, KILN_SHAPE(2, 1), 9);
    run_get(g, kiln_concat(g, 3, (kiln_tensor *const[]){a, b, a}, 1), out, 10 * 8);
    EXPECT_I64(out, 0, 1, 9, 0, 1, 2, 3, 9, 2, 3);

    g = kiln_graph_new();
    a = iota(g, KILN_SHAPE(2, 2));
    b = kiln_full(g, KILN_I64, KILN_SHAPE(2, 2), 7);
    run_get(g, kiln_stack(g, 2, (kiln_tensor *const[]){a, b}, 1), out, 8 * 8);
    EXPECT_I64(out, 0, 1, 7, 7, 2, 3, 7, 7);

    g = kiln_graph_new();
    a = iota(g, KILN_SHAPE(1, 2));
    run_get(g, kiln_pad(g, a, DIMS(1, 0), DIMS(0, 2), 9), out, 8 * 8);
    EXPECT_I64(out, 9, 9, 9, 9, 0, 1, 9, 9);

    g = kiln_graph_new();
    run_get(g, kiln_flatten(g, kiln_transpose(g, iota(g, KILN_SHAPE(2, 3)), 0, 1), 0, -1), out,
            6 * 8);
    EXPECT_I64(out, 0, 3, 1, 4, 2, 5);

    /* concat promotes: int64 and float32 give float32 */
    g = kiln_graph_new();
    float f[4];
    a = iota(g, KILN_SHAPE(2));
    kiln_tensor *h = kiln_full(g, KILN_F32, KILN_SHAPE(2), 0.5);
    run_get(g, kiln_concat(g, 2, (kiln_tensor *const[]){a, h}, 0), f, sizeof(f));
    assert_true(f[0] == 0 && f[1] == 1 && f[2] == 0.5f && f[3] == 0.5f);
}

/* ---- out of memory ---------------------------------------------------------------- */

/* Fails the n-th allocation for every n until the build succeeds: each
 * attempt either succeeds or records KILN_ERR_NOMEM, and never crashes. */
static void test_out_of_memory(void **state)
{
    (void)state;
    kiln_set_allocator(&ku_failing_allocator);
    bool done = false;
    for (int n = 0; n < 200 && !done; n++) {
        ku_fail_after = -1;
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
        kiln_tensor *i = kiln_input(g, "i", KILN_I32, KILN_SHAPE(2, 3));
        assert_non_null(x);
        ku_fail_after = n;
        kiln_tensor *st = kiln_stack(g, 3, (kiln_tensor *const[]){x, i, x}, 1);
        kiln_tensor *c = kiln_concat(g, 2, (kiln_tensor *const[]){i, x}, 0);
        kiln_tensor *s = kiln_select(g, x, 1, 2);
        kiln_tensor *p = kiln_pad(g, x, DIMS(1, 1), DIMS(0, 2), 0);
        kiln_tensor *e = kiln_expand(g, x, KILN_SHAPE(4, 2, 3));
        kiln_status es = kiln_entry(g, "f", 2, (kiln_tensor *const[]){st, c}, NULL);
        ku_fail_after = -1;
        if (st && c && s && p && e && es == KILN_OK) {
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

/* ---- NULLs, foreign graphs, sticky errors ---------------------------------------------- */

static void test_null_and_sticky(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
    assert_null(kiln_reshape(g, NULL, KILN_SHAPE(6)));
    assert_null(kiln_reshape(NULL, x, KILN_SHAPE(6)));
    assert_null(kiln_reshape(g, x, 2, NULL));
    assert_null(kiln_view(g, NULL, KILN_SHAPE(6)));
    assert_null(kiln_permute(g, NULL, (const int[]){1, 0}));
    assert_null(kiln_transpose(g, NULL, 0, 1));
    assert_null(kiln_squeeze(g, NULL, 0));
    assert_null(kiln_unsqueeze(g, NULL, 0));
    assert_null(kiln_expand(g, NULL, KILN_SHAPE(2, 3)));
    assert_null(kiln_expand(g, x, 2, NULL));
    assert_null(kiln_slice(g, NULL, 0, 0, 1, 1));
    assert_null(kiln_select(g, NULL, 0, 0));
    assert_null(kiln_stack(g, 1, (kiln_tensor *const[]){NULL}, 0));
    assert_null(kiln_flatten(g, NULL, 0, -1));
    assert_null(kiln_pad(g, NULL, DIMS(0, 0), DIMS(0, 0), 0));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    int before = g->nnodes;

    /* the first error sticks; later calls return NULL and add nothing */
    assert_null(kiln_reshape(g, x, KILN_SHAPE(7)));
    assert_null(kiln_select(g, x, 0, 9));
    assert_null(kiln_transpose(g, x, 0, 1));
    assert_graph_error(g, KILN_ERR_SHAPE,
                       "kiln_reshape: shape '[7]' is invalid for input of size 6");
    assert_int_equal(g->nnodes, before);
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_graph *h = kiln_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2));
    kiln_tensor *b = kiln_input(h, "b", KILN_F32, KILN_SHAPE(2));
    assert_null(kiln_concat(g, 2, (kiln_tensor *const[]){a, b}, 0));
    assert_graph_error(g, KILN_ERR_INVALID, "belongs to another graph");
    kiln_graph_free(g);
    kiln_graph_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reshape),
        cmocka_unit_test(test_reshape_errors),
        cmocka_unit_test(test_permute),
        cmocka_unit_test(test_permute_errors),
        cmocka_unit_test(test_squeeze_unsqueeze),
        cmocka_unit_test(test_flatten),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_expand_errors),
        cmocka_unit_test(test_slice),
        cmocka_unit_test(test_slice_errors),
        cmocka_unit_test(test_select),
        cmocka_unit_test(test_concat),
        cmocka_unit_test(test_concat_errors),
        cmocka_unit_test(test_stack),
        cmocka_unit_test(test_pad),
        cmocka_unit_test(test_shapes_past_int64_are_refused),
        cmocka_unit_test(test_movement_values),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_null_and_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
