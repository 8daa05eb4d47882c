/* test_grad.c - kiln_grad: error paths, an op-table-driven gradient check of
 * every op against central differences (interpreter and C target), second
 * derivatives, detach, fan-out, intermediate and unreached wrt. */
#include "frontend/fe.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- error paths ----------------------------------------------------------------- */

static void test_grad_errors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3));
    kiln_tensor *y = kiln_mul(g, x, x);
    kiln_tensor *gr[1] = {x};
    assert_int_equal(kiln_grad(g, y, 1, &x, NULL, gr), KILN_ERR_SHAPE);
    assert_null(gr[0]);
    assert_graph_error(g, KILN_ERR_SHAPE, "grad can be implicitly created only for scalar outputs");
    assert_string_equal(kiln_graph_error(g),
                        "kiln_grad: grad can be implicitly created only for scalar outputs");
    kiln_graph_free(g);

    g = kiln_graph_new();
    x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3));
    y = kiln_mul(g, x, x);
    kiln_tensor *seed = kiln_ones(g, KILN_F64, KILN_SHAPE(2));
    assert_int_equal(kiln_grad(g, y, 1, &x, seed, gr), KILN_ERR_SHAPE);
    assert_graph_error(g, KILN_ERR_SHAPE, "kiln_grad: Mismatch in shape");
    kiln_graph_free(g);

    g = kiln_graph_new();
    kiln_tensor *xi = kiln_input(g, "xi", KILN_I32, KILN_SHAPE(3));
    y = kiln_sum(g, kiln_mul(g, xi, kiln_scalar(g, 2.5)), KILN_ALL, false);
    assert_int_equal(kiln_grad(g, y, 1, &xi, NULL, gr), KILN_ERR_DTYPE);
    assert_graph_error(g, KILN_ERR_DTYPE,
                       "kiln_grad: only Tensors of floating point dtype can require gradients");
    kiln_graph_free(g);

    g = kiln_graph_new();
    x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3));
    y = kiln_sum(g, kiln_cast(g, x, KILN_I64), KILN_ALL, false);
    assert_int_equal(kiln_grad(g, y, 1, &x, NULL, gr), KILN_ERR_DTYPE);
    assert_graph_error(g, KILN_ERR_DTYPE, "only Tensors of floating point dtype");
    kiln_graph_free(g);

    g = kiln_graph_new();
    x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3));
    y = kiln_sum(g, x, KILN_ALL, false);
    assert_int_equal(kiln_grad(g, y, 1, NULL, NULL, gr), KILN_ERR_INVALID);
    kiln_graph_free(g);
    assert_int_equal(kiln_grad(NULL, NULL, 0, NULL, NULL, NULL), KILN_ERR_INVALID);

    /* a seed of y's shape is fine; an f32 seed is converted */
    g = kiln_graph_new();
    x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3));
    y = kiln_mul(g, x, x);
    seed = kiln_ones(g, KILN_F32, KILN_SHAPE(3));
    assert_int_equal(kiln_grad(g, y, 1, &x, seed, gr), KILN_OK);
    assert_non_null(gr[0]);
    assert_int_equal(gr[0]->dtype, KILN_F64);
    kiln_graph_free(g);
}

/* ---- the op table: one case per op ------------------------------------------------ */

typedef kiln_tensor *(*case_fn)(kiln_graph *g, kiln_tensor **x);

typedef struct {
    case_fn fn;
    bool zero; /* no gradient: kiln_grad must give zeros (checked on the graph) */
    int nin;
    int rank[3];
    int64_t dims[3][4];
    double lo, hi; /* input range */
    bool f32;      /* input 0 is float32 (looser check) */
} gcase;

static kiln_tensor *konst(kiln_graph *g, int rank, const int64_t *dims, unsigned seed)
{
    int64_t n = ir_shape_numel(rank, dims);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        v[i] = (double)(seed >> 8 & 0xffff) / 65536.0 * 2 - 1;
    }
    kiln_tensor *t = kiln_tensor_from(g, KILN_F64, rank, dims, v);
    free(v);
    return t;
}

static kiln_tensor *ids5(kiln_graph *g)
{
    return kiln_tensor_from(g, KILN_I64, KILN_SHAPE(5), (const int64_t[]){0, 2, 2, 3, 1});
}

#define U(name, expr)                                                                              \
    static kiln_tensor *c_##name(kiln_graph *g, kiln_tensor **x)                                   \
    {                                                                                              \
        (void)g;                                                                                   \
        (void)x;                                                                                   \
        return (expr);                                                                             \
    }
U(input, x[0])
U(param, kiln_mul(g, x[0], kiln_param(g, "p_param", KILN_F64, KILN_SHAPE(3), kiln_init_const(1.5))))
U(const, kiln_mul(g, x[0], konst(g, KILN_SHAPE(3), 7)))
U(full, kiln_mul(g, x[0], kiln_full(g, KILN_F64, KILN_SHAPE(2, 3), 2.5)))
U(arange, kiln_mul(g, x[0], kiln_arange(g, KILN_F64, 0, 3, 1)))
U(rand, kiln_add(g, kiln_rand(g, KILN_F64, KILN_SHAPE(2, 3)), kiln_detach(g, x[0])))
U(randn, kiln_add(g, kiln_randn(g, KILN_F64, KILN_SHAPE(2, 3)), kiln_detach(g, x[0])))
U(neg, kiln_neg(g, x[0]))
U(abs, kiln_abs(g, x[0]))
U(exp, kiln_exp(g, x[0]))
U(log, kiln_log(g, x[0]))
U(log1p, kiln_log1p(g, x[0]))
U(sqrt, kiln_sqrt(g, x[0]))
U(rsqrt, kiln_rsqrt(g, x[0]))
U(sin, kiln_sin(g, x[0]))
U(cos, kiln_cos(g, x[0]))
U(tanh, kiln_tanh(g, x[0]))
U(erf, kiln_erf(g, x[0]))
U(sigmoid, kiln_sigmoid(g, x[0]))
U(relu, kiln_relu(g, x[0]))
U(detach, kiln_detach(g, x[0]))
U(cast, kiln_mul(g, kiln_cast(g, x[0], KILN_F64), kiln_cast(g, x[0], KILN_F64)))
U(add, kiln_add(g, x[0], x[1]))
U(sub, kiln_sub(g, x[0], x[1]))
U(mul, kiln_mul(g, x[0], x[1]))
U(div, kiln_div(g, x[0], x[1]))
U(pow, kiln_pow(g, x[0], x[1]))
U(maximum, kiln_maximum(g, x[0], x[1]))
U(minimum, kiln_minimum(g, x[0], x[1]))
U(eq, kiln_eq(g, x[0], x[1]))
U(ne, kiln_ne(g, x[0], x[1]))
U(lt, kiln_lt(g, x[0], x[1]))
U(le, kiln_le(g, x[0], x[1]))
U(gt, kiln_gt(g, x[0], x[1]))
U(ge, kiln_ge(g, x[0], x[1]))
U(where, kiln_where(g, kiln_gt(g, x[2], kiln_scalar(g, 0)), x[0], x[1]))
U(sum, kiln_sum_axes(g, kiln_sin(g, x[0]), 2, (const int[]){0, 2}, false))
U(max, kiln_max(g, x[0], 1, false))
U(min, kiln_min(g, x[0], KILN_ALL, false))
U(argmax, kiln_argmax(g, x[0], 1, false))
U(argmin, kiln_argmin(g, x[0], KILN_ALL, false))
U(reshape, kiln_reshape(g, x[0], KILN_SHAPE(3, 4)))
U(permute, kiln_permute(g, x[0], (const int[]){2, 0, 1}))
U(expand, kiln_mul(g, kiln_expand(g, x[0], KILN_SHAPE(2, 4, 3)), x[1]))
U(slice, kiln_slice(g, kiln_slice(g, x[0], 0, 1, 5, 2), 1, 0, 4, 3))
U(pad, kiln_pad(g, kiln_slice(g, x[0], 1, 1, 3, 1), (const int64_t[]){1, 0},
                (const int64_t[]){0, 2}, 0.5))
U(concat, kiln_concat(g, 3, (kiln_tensor *const[]){x[0], x[1], x[0]}, 1))
U(matmul, kiln_matmul(g, x[0], x[1]))
/* a [3, 5] mask: some keys of each row; with empty, none of row 1 (whose
 * output is 0, and its logsumexp -inf) */
static kiln_tensor *mask35(kiln_graph *g, bool empty)
{
    bool bits[15] = {1, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 1};
    bits[7] = !empty;
    return kiln_tensor_from(g, KILN_BOOL, 2, (const int64_t[]){3, 5}, bits);
}

U(sdpa,
  kiln_add(g,
           kiln_add(g, kiln_scaled_dot_product_attention(g, x[0], x[1], x[2], NULL, true, 0),
                    kiln_scaled_dot_product_attention(g, x[0], x[1], x[2], NULL, false, 0.7)),
           kiln_scaled_dot_product_attention(g, x[0], x[1], x[2], mask35(g, true), false, 0.5)))
U(gather, kiln_embedding(g, x[0], ids5(g)))

/* x [2, 4, 7, 6], w [6, 2, 3, 2]: convolutions whose input gradients are
 * transposed convolutions with every kind of spreading and cropping: groups
 * with padding; strides 2 and 3 with dilation and a remainder row; a 1x1
 * kernel of stride 2 (its spread gradient longer than the input: cropped). */
static kiln_tensor *c_conv(kiln_graph *g, kiln_tensor **x)
{
    kiln_tensor *w11 = kiln_slice(g, kiln_slice(g, x[1], 2, 0, 1, 1), 3, 1, 2, 1);
    kiln_tensor *y[3] = {
        kiln_conv2d(g, x[0], x[1], NULL, (kiln_conv_opts){.padding = {1, 0}, .groups = 2}),
        kiln_conv2d(
            g, x[0], x[1], NULL,
            (kiln_conv_opts){.stride = {2, 3}, .padding = {1, 2}, .dilation = {2, 1}, .groups = 2}),
        kiln_conv2d(g, x[0], w11, NULL, (kiln_conv_opts){.stride = {2, 2}, .groups = 2}),
    };
    for (int i = 0; i < 3; i++)
        y[i] = kiln_reshape(g, y[i], 2, (const int64_t[]){2, y[i] ? ir_numel(y[i]) / 2 : 0});
    return kiln_concat(g, 3, y, 1);
}

/* sdpa's backward ops as autodiff builds them, over q, k, v and an output
 * gradient g (q's first three columns, so g's path is checked too): their
 * own derivatives (a second derivative through attention). */
static kiln_tensor *sdpa_bw(kiln_graph *g, ir_op op, int axis, kiln_tensor **in, bool causal,
                            int masked)
{
    /* masked: mask35 over both batches; 2: with an empty row */
    kiln_tensor *mask =
        masked ? kiln_expand(g, mask35(g, masked == 2), 3, (const int64_t[]){2, 3, 5}) : NULL;
    return ir_sdpa_backward_new(g, op, axis, in, mask, 0.6, causal);
}

static kiln_tensor *c_sdpa_stats(kiln_graph *g, kiln_tensor **x)
{
    kiln_tensor *in[4] = {x[0], x[1], x[2], kiln_slice(g, x[0], 2, 0, 3, 1)};
    return kiln_add(g,
                    kiln_add(g, sdpa_bw(g, IR_SDPA_STATS, 0, in, false, false),
                             sdpa_bw(g, IR_SDPA_STATS, 0, in, true, false)),
                    sdpa_bw(g, IR_SDPA_STATS, 0, in, false, 1));
}

static kiln_tensor *c_sdpa_grad(kiln_graph *g, kiln_tensor **x)
{
    kiln_tensor *in[5] = {x[0], x[1], x[2], kiln_slice(g, x[0], 2, 0, 3, 1), NULL}, *flat[6];
    for (int masked = 0; masked < 2; masked++) {
        in[4] = sdpa_bw(g, IR_SDPA_STATS, 0, in, !masked, 2 * masked);
        for (int a = 0; a < 3; a++) {
            kiln_tensor *d = sdpa_bw(g, IR_SDPA_GRAD, a, in, !masked, 2 * masked);
            flat[3 * masked + a] =
                kiln_reshape(g, d, 2, (const int64_t[]){2, d ? ir_numel(d) / 2 : 0});
        }
    }
    return kiln_concat(g, 6, flat, 1);
}

static kiln_tensor *c_scatter_add(kiln_graph *g, kiln_tensor **x)
{
    kiln_tensor *in[2] = {x[0], ids5(g)};
    kiln_tensor *r = ir_node_new(g, IR_SCATTER_ADD, KILN_F64, KILN_SHAPE(4, 3), 2, in);
    r->axis = 0;
    return r;
}

static kiln_tensor *c_assign(kiln_graph *g, kiln_tensor **x)
{
    kiln_tensor *p = kiln_param(g, "p_assign", KILN_F64, KILN_SHAPE(2, 3), kiln_init_zeros());
    return kiln_assign(g, p, x[0]);
}

#define S1(a, b)                                                                                   \
    1, {2},                                                                                        \
    {                                                                                              \
        {                                                                                          \
            a, b                                                                                   \
        }                                                                                          \
    }
#define S2(a, b)                                                                                   \
    2, {2},                                                                                        \
    {                                                                                              \
        {                                                                                          \
            a, b                                                                                   \
        }                                                                                          \
    }
#define BIN                                                                                        \
    2, {2, 1},                                                                                     \
    {                                                                                              \
        {2, 3},                                                                                    \
        {                                                                                          \
            3                                                                                      \
        }                                                                                          \
    }
#define CMP                                                                                        \
    2, {2, 2},                                                                                     \
    {                                                                                              \
        {2, 3},                                                                                    \
        {                                                                                          \
            2, 3                                                                                   \
        }                                                                                          \
    }

/* clang-format off */
static const gcase cases[IR_OP_COUNT] = {
    [IR_INPUT] = {c_input, false, BIN, -1, 1, false},
    [IR_PARAM] = {c_param, false, BIN, -1, 1, false},
    [IR_CONST] = {c_const, false, BIN, -1, 1, false},
    [IR_FULL] = {c_full, false, BIN, -1, 1, false},
    [IR_ARANGE] = {c_arange, false, BIN, -1, 1, false},
    [IR_RAND] = {c_rand, true, BIN, -1, 1, false},
    [IR_RANDN] = {c_randn, true, BIN, -1, 1, false},
    [IR_NEG] = {c_neg, false, BIN, -1, 1, false},
    [IR_ABS] = {c_abs, false, BIN, -1, 1, false},
    [IR_EXP] = {c_exp, false, BIN, -1, 1, false},
    [IR_LOG] = {c_log, false, BIN, 0.5, 2, false},
    [IR_LOG1P] = {c_log1p, false, BIN, -0.5, 2, false},
    [IR_SQRT] = {c_sqrt, false, BIN, 0.5, 2, false},
    [IR_RSQRT] = {c_rsqrt, false, BIN, 0.5, 2, false},
    [IR_SIN] = {c_sin, false, BIN, -1, 1, false},
    [IR_COS] = {c_cos, false, BIN, -1, 1, false},
    [IR_TANH] = {c_tanh, false, BIN, -1, 1, false},
    [IR_ERF] = {c_erf, false, BIN, -1, 1, false},
    [IR_SIGMOID] = {c_sigmoid, false, BIN, -1, 1, false},
    [IR_RELU] = {c_relu, false, BIN, -1, 1, false},
    [IR_DETACH] = {c_detach, true, BIN, -1, 1, false},
    [IR_CAST] = {c_cast, false, BIN, -1, 1, true},
    [IR_ADD] = {c_add, false, BIN, -1, 1, false},
    [IR_SUB] = {c_sub, false, BIN, -1, 1, false},
    [IR_MUL] = {c_mul, false, BIN, -1, 1, false},
    [IR_DIV] = {c_div, false, BIN, 0.5, 2, false},
    [IR_POW] = {c_pow, false, BIN, 0.5, 2, false},
    [IR_MAXIMUM] = {c_maximum, false, BIN, -1, 1, false},
    [IR_MINIMUM] = {c_minimum, false, BIN, -1, 1, false},
    [IR_EQ] = {c_eq, true, CMP, -1, 1, false},
    [IR_NE] = {c_ne, true, CMP, -1, 1, false},
    [IR_LT] = {c_lt, true, CMP, -1, 1, false},
    [IR_LE] = {c_le, true, CMP, -1, 1, false},
    [IR_GT] = {c_gt, true, CMP, -1, 1, false},
    [IR_GE] = {c_ge, true, CMP, -1, 1, false},
    [IR_WHERE] = {c_where, false, 3, {2, 1, 2}, {{2, 3}, {3}, {2, 3}}, -1, 1, false},
    [IR_SUM] = {c_sum, false, 1, {3}, {{2, 3, 4}}, -1, 1, false},
    [IR_MAX] = {c_max, false, S1(3, 4), -1, 1, false},
    [IR_MIN] = {c_min, false, S1(3, 4), -1, 1, false},
    [IR_ARGMAX] = {c_argmax, true, S1(3, 4), -1, 1, false},
    [IR_ARGMIN] = {c_argmin, true, S1(3, 4), -1, 1, false},
    [IR_RESHAPE] = {c_reshape, false, S1(2, 6), -1, 1, false},
    [IR_PERMUTE] = {c_permute, false, 1, {3}, {{2, 3, 4}}, -1, 1, false},
    [IR_EXPAND] = {c_expand, false, 2, {3, 2}, {{2, 1, 3}, {4, 1}}, -1, 1, false},
    [IR_SLICE] = {c_slice, false, S1(5, 4), -1, 1, false},
    [IR_PAD] = {c_pad, false, S1(2, 4), -1, 1, false},
    [IR_CONCAT] = {c_concat, false, 2, {2, 2}, {{2, 3}, {2, 2}}, -1, 1, false},
    [IR_MATMUL] = {c_matmul, false, 2, {3, 2}, {{2, 3, 4}, {4, 2}}, -1, 1, false},
    [IR_CONV] = {c_conv, false, 2, {4, 4}, {{2, 4, 7, 6}, {6, 2, 3, 2}}, -1, 1, false},
    [IR_SDPA] = {c_sdpa, false, 3, {3, 3, 3}, {{2, 3, 4}, {2, 5, 4}, {2, 5, 3}}, -1, 1, false},
    [IR_SDPA_STATS] = {c_sdpa_stats, false, 3, {3, 3, 3}, {{2, 3, 4}, {2, 5, 4}, {2, 5, 3}}, -1, 1, false},
    [IR_SDPA_GRAD] = {c_sdpa_grad, false, 3, {3, 3, 3}, {{2, 3, 4}, {2, 5, 4}, {2, 5, 3}}, -1, 1, false},
    [IR_GATHER] = {c_gather, false, S1(4, 3), -1, 1, false},
    [IR_SCATTER_ADD] = {c_scatter_add, false, S1(5, 3), -1, 1, false},
    [IR_ASSIGN] = {c_assign, true, BIN, -1, 1, false},
};
/* clang-format on */

/* second derivatives: the case's output is a first gradient */
static kiln_tensor *first_grad(kiln_graph *g, kiln_tensor *y, kiln_tensor *x, unsigned seed)
{
    kiln_tensor *w = konst(g, y->rank, y->dims, seed);
    kiln_tensor *l = kiln_sum(g, kiln_mul(g, y, w), KILN_ALL, false);
    kiln_tensor *d = NULL;
    assert_int_equal(kiln_grad(g, l, 1, &x, NULL, &d), KILN_OK);
    return d;
}
U(d2_tanh, first_grad(g, kiln_tanh(g, x[0]), x[0], 11))
U(d2_exp, first_grad(g, kiln_exp(g, x[0]), x[0], 12))
U(d2_mul, kiln_add(g, first_grad(g, kiln_mul(g, x[0], x[1]), x[0], 13),
                   first_grad(g, kiln_mul(g, x[0], x[1]), x[1], 14)))
U(d2_matmul, first_grad(g, kiln_matmul(g, kiln_tanh(g, x[0]), x[1]), x[0], 15))
U(d2_softmax, first_grad(g, kiln_softmax(g, x[0], 1), x[0], 16))
/* the input's gradient is a conv too (of the spread gradient and the flipped
 * weight): its own derivatives, with respect to the weight and the input */
U(d2_conv, kiln_add(g,
                    first_grad(g,
                               kiln_conv2d(g, kiln_tanh(g, x[0]), x[1], NULL,
                                           (kiln_conv_opts){.stride = {2, 1}, .padding = {1, 1}}),
                               x[0], 18),
                    kiln_sum(g,
                             first_grad(g,
                                        kiln_conv2d(g, kiln_tanh(g, x[0]), x[1], NULL,
                                                    (kiln_conv_opts){.stride = {1, 2}}),
                                        x[1], 19),
                             KILN_ALL, false)))
U(d2_mix, first_grad(g, kiln_mul(g, x[0], kiln_sigmoid(g, kiln_matmul(g, x[0], x[1]))), x[1], 17))

static const gcase d2_cases[] = {
    {c_d2_tanh, false, BIN, -1, 1, false},
    {c_d2_exp, false, BIN, -1, 1, false},
    {c_d2_mul, false, CMP, -1, 1, false},
    {c_d2_matmul, false, 2, {2, 2}, {{3, 4}, {4, 2}}, -1, 1, false},
    {c_d2_softmax, false, S1(2, 4), -1, 1, false},
    {c_d2_mix, false, 2, {2, 2}, {{3, 3}, {3, 3}}, -1, 1, false},
    {c_d2_conv, false, 2, {4, 4}, {{1, 2, 5, 4}, {3, 2, 2, 3}}, -1, 1, false},
};

#define MAXC (IR_OP_COUNT + 8)
typedef struct {
    const gcase *c;
    kiln_tensor *x[3], *loss, *grad[3];
    char xname[3][32], lname[32], gname[3][32];
    double *val[3];
    int64_t numel[3];
} built;

static bool op_used(kiln_graph *g, int from, ir_op op)
{
    for (int i = from; i < g->nnodes; i++)
        if (g->nodes[i]->op == op)
            return true;
    return false;
}

static void build_case(kiln_graph *g, built *b, const gcase *c, int k, unsigned *rng)
{
    b->c = c;
    for (int j = 0; j < c->nin; j++) {
        snprintf(b->xname[j], sizeof b->xname[j], "c%d_x%d", k, j);
        kiln_dtype dt = (j == 0 && c->f32) ? KILN_F32 : KILN_F64;
        b->x[j] = kiln_input(g, b->xname[j], dt, c->rank[j], c->dims[j]);
        b->numel[j] = ir_shape_numel(c->rank[j], c->dims[j]);
        b->val[j] = malloc(sizeof(double) * (size_t)b->numel[j]);
        for (int64_t e = 0; e < b->numel[j]; e++) {
            *rng = *rng * 1664525u + 1013904223u;
            double u = (double)(*rng >> 8) / 16777216.0;
            b->val[j][e] = c->lo + (c->hi - c->lo) * u;
            if (c->f32)
                b->val[j][e] = (double)(float)b->val[j][e];
        }
    }
    kiln_tensor *out = c->fn(g, b->x);
    assert_non_null(out);
    if (!ir_dtype_is_float(out->dtype))
        out = kiln_cast(g, out, KILN_F64);
    kiln_tensor *w = konst(g, out->rank, out->dims, 100u + (unsigned)k);
    b->loss = kiln_sum(g, kiln_mul(g, out, w), KILN_ALL, false);
    snprintf(b->lname, sizeof b->lname, "c%d_loss", k);
    assert_int_equal(kiln_grad(g, b->loss, c->nin, b->x, NULL, b->grad), KILN_OK);
    for (int j = 0; j < c->nin; j++) {
        snprintf(b->gname[j], sizeof b->gname[j], "c%d_g%d", k, j);
        assert_int_equal(b->grad[j]->dtype, b->x[j]->dtype);
        assert_true(ir_same_shape(b->grad[j], b->x[j]));
        if (c->zero) { /* no gradient: zeros */
            assert_int_equal(b->grad[j]->op, IR_FULL);
            assert_true(b->grad[j]->value == 0);
        }
    }
}

static void set_inputs(kiln_module *m, const built *b)
{
    for (int j = 0; j < b->c->nin; j++) {
        if (b->c->f32 && j == 0) {
            float *tmp = malloc(sizeof(float) * (size_t)b->numel[j]);
            assert_non_null(tmp);
            for (int64_t e = 0; e < b->numel[j]; e++)
                tmp[e] = (float)b->val[j][e];
            assert_int_equal(
                kiln_module_set(m, b->xname[j], tmp, sizeof(float) * (size_t)b->numel[j]), KILN_OK);
            free(tmp);
        } else {
            assert_int_equal(
                kiln_module_set(m, b->xname[j], b->val[j], sizeof(double) * (size_t)b->numel[j]),
                KILN_OK);
        }
    }
}

static void get_grad(kiln_module *m, const built *b, int j, double *out)
{
    if (b->c->f32 && j == 0) {
        float *tmp = malloc(sizeof(float) * (size_t)b->numel[j]);
        assert_non_null(tmp);
        assert_int_equal(kiln_module_get(m, b->gname[j], tmp, sizeof(float) * (size_t)b->numel[j]),
                         KILN_OK);
        for (int64_t e = 0; e < b->numel[j]; e++)
            out[e] = (double)tmp[e];
        free(tmp);
    } else {
        assert_int_equal(kiln_module_get(m, b->gname[j], out, sizeof(double) * (size_t)b->numel[j]),
                         KILN_OK);
    }
}

static void gradcheck(const gcase *list, int n, bool by_op)
{
    kiln_graph *g = kiln_graph_new();
    built *b = calloc(MAXC, sizeof(built));
    kiln_tensor *losses[MAXC], *grads[3 * MAXC];
    const char *lnames[MAXC], *gnames[3 * MAXC];
    int nl = 0, ng = 0, nb = 0;
    unsigned rng = 12345;
    for (int k = 0; k < n; k++) {
        if (!list[k].fn)
            continue;
        int from = g->nnodes;
        build_case(g, &b[nb], &list[k], k, &rng);
        if (by_op && k != IR_INPUT && !op_used(g, from, (ir_op)k)) {
            fprintf(stderr, "case for op %s does not use it\n", ir_ops[k].name);
            fail();
        }
        if (!list[k].zero) {
            losses[nl] = b[nb].loss;
            lnames[nl++] = b[nb].lname;
            for (int j = 0; j < list[k].nin; j++) {
                grads[ng] = b[nb].grad[j];
                gnames[ng++] = b[nb].gname[j];
            }
        }
        nb++;
    }
    assert_int_equal(kiln_entry(g, "fwd", nl, losses, lnames), KILN_OK);
    assert_int_equal(kiln_entry(g, "bwd", ng, grads, gnames), KILN_OK);
    static const kiln_target targets[2] = {KILN_TARGET_C, KILN_TARGET_INTERP};
    double *fd[MAXC][3] = {{NULL}};
    for (int t = 0; t < 2; t++) {
        kiln_module *m = NULL;
        kiln_status s = kiln_compile(g, &(kiln_compile_opts){.target = targets[t]}, &m);
        if (s != KILN_OK)
            fprintf(stderr, "compile (target %d): %s\n", t, kiln_graph_error(g));
        assert_int_equal(s, KILN_OK);
        for (int k = 0; k < nb; k++)
            if (!b[k].c->zero)
                set_inputs(m, &b[k]);
        if (t == 0) { /* central differences on the C target */
            for (int k = 0; k < nb; k++) {
                if (b[k].c->zero)
                    continue;
                for (int j = 0; j < b[k].c->nin; j++) {
                    fd[k][j] = malloc(sizeof(double) * (size_t)b[k].numel[j]);
                    double eps = b[k].c->f32 && j == 0 ? 1.0 / 1024 : 1e-6;
                    for (int64_t e = 0; e < b[k].numel[j]; e++) {
                        double v0 = b[k].val[j][e], l[2];
                        for (int sgn = 0; sgn < 2; sgn++) {
                            b[k].val[j][e] = v0 + (sgn ? -eps : eps);
                            set_inputs(m, &b[k]);
                            assert_int_equal(kiln_module_run(m, "fwd"), KILN_OK);
                            assert_int_equal(kiln_module_get_scalar(m, b[k].lname, &l[sgn]),
                                             KILN_OK);
                        }
                        b[k].val[j][e] = v0;
                        set_inputs(m, &b[k]);
                        fd[k][j][e] = (l[0] - l[1]) / (2 * eps);
                    }
                }
            }
        }
        assert_int_equal(kiln_module_run(m, "bwd"), KILN_OK);
        for (int k = 0; k < nb; k++) {
            if (b[k].c->zero)
                continue;
            for (int j = 0; j < b[k].c->nin; j++) {
                double *got = malloc(sizeof(double) * (size_t)b[k].numel[j]);
                assert_non_null(got);
                get_grad(m, &b[k], j, got);
                double tol = b[k].c->f32 && j == 0 ? 1e-3 : 1e-6;
                for (int64_t e = 0; e < b[k].numel[j]; e++) {
                    double want = fd[k][j][e];
                    if (!(fabs(got[e] - want) <= tol * (1 + fabs(want)))) {
                        fprintf(stderr, "%s (target %d) d/dx%d[%lld]: got %.12g, want %.12g\n",
                                b[k].lname, t, j, (long long)e, got[e], want);
                        fail();
                    }
                }
                free(got);
            }
        }
        kiln_module_free(m);
    }
    for (int k = 0; k < nb; k++)
        for (int j = 0; j < 3; j++) {
            free(fd[k][j]);
            free(b[k].val[j]);
        }
    free(b);
    kiln_graph_free(g);
}

/* every op in kiln_ops.def has a case; IR_F_DIFF ops are checked against
 * central differences, the others must give zeros */
static void test_grad_every_op(void **state)
{
    (void)state;
#define KILN_OP(e, name, arity, cls, flags, attrs)                                                 \
    if (!cases[IR_##e].fn) {                                                                       \
        fprintf(stderr, "op %s has no gradient check case\n", name);                               \
        fail();                                                                                    \
    }                                                                                              \
    if (((flags)&IR_F_DIFF) && cases[IR_##e].zero) {                                               \
        fprintf(stderr, "differentiable op %s is checked as zero\n", name);                        \
        fail();                                                                                    \
    }
#include "kiln_ops.def"
#undef KILN_OP
    gradcheck(cases, IR_OP_COUNT, true);
}

/* sdpa's backward: the ordinary nodes for the short rows of every case here,
 * the fused sdpa_stats and sdpa_grad from KILN_SDPA_FUSED_MIN scores on
 * (long rows by default), with the same gradients. */
static void test_grad_sdpa_fused(void **state)
{
    (void)state;
    /* not a whole positive number: the default (the ordinary nodes here) */
    static const char *const env[4] = {"-1", "1e9junk", "", "1"};
    for (int i = 0; i < 4; i++) {
        bool fused = i == 3;
        setenv("KILN_SDPA_FUSED_MIN", env[i], 1);
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *q = kiln_input(g, "q", KILN_F64, KILN_SHAPE(2, 3, 4));
        kiln_tensor *k = kiln_input(g, "k", KILN_F64, KILN_SHAPE(2, 5, 4));
        kiln_tensor *v = kiln_input(g, "v", KILN_F64, KILN_SHAPE(2, 5, 3));
        kiln_tensor *y = kiln_scaled_dot_product_attention(g, q, k, v, NULL, true, 0);
        kiln_tensor *wrt[3] = {q, k, v}, *d[3];
        assert_int_equal(kiln_grad(g, kiln_sum(g, y, KILN_ALL, false), 3, wrt, NULL, d), KILN_OK);
        assert_int_equal(op_used(g, 0, IR_SDPA_STATS), fused);
        assert_int_equal(op_used(g, 0, IR_SDPA_GRAD), fused);
        assert_int_equal(op_used(g, 0, IR_MATMUL), !fused);
        kiln_graph_free(g);
        if (i == 0 || fused)
            gradcheck(&cases[IR_SDPA], 1, false);
    }
    unsetenv("KILN_SDPA_FUSED_MIN");
}

static void test_grad_second_order(void **state)
{
    (void)state;
    gradcheck(d2_cases, (int)(sizeof d2_cases / sizeof d2_cases[0]), false);
}

/* ---- semantics: detach, fan-out, intermediate, unreached, ties --------------------- */

static void test_grad_semantics(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3));
    kiln_tensor *u = kiln_input(g, "u", KILN_F64, KILN_SHAPE(3));
    kiln_tensor *h = kiln_mul(g, x, kiln_scalar(g, 3));
    /* y = sum(h * h) + sum(detach(x) * x): dy/dx = 18 x + x, dy/dh = 2 h */
    kiln_tensor *y = kiln_add(g, kiln_sum(g, kiln_mul(g, h, h), KILN_ALL, false),
                              kiln_sum(g, kiln_mul(g, kiln_detach(g, x), x), KILN_ALL, false));
    kiln_tensor *wrt[3] = {x, h, u}, *gr[3];
    assert_int_equal(kiln_grad(g, y, 3, wrt, NULL, gr), KILN_OK);
    /* ties: amax splits evenly, relu'(0) = abs'(0) = 0, maximum splits in half */
    kiln_tensor *t = kiln_input(g, "t", KILN_F64, KILN_SHAPE(4));
    kiln_tensor *z =
        kiln_add(g, kiln_max(g, t, KILN_ALL, false),
                 kiln_sum(g, kiln_add(g, kiln_relu(g, t), kiln_abs(g, t)), KILN_ALL, false));
    z = kiln_add(g, z, kiln_sum(g, kiln_maximum(g, t, kiln_scalar(g, 2)), KILN_ALL, false));
    kiln_tensor *gt = NULL;
    assert_int_equal(kiln_grad(g, z, 1, &t, NULL, &gt), KILN_OK);
    kiln_tensor *outs[4] = {gr[0], gr[1], gr[2], gt};
    const char *names[4] = {"gx", "gh", "gu", "gt"};
    assert_int_equal(kiln_entry(g, "e", 4, outs, names), KILN_OK);
    assert_int_equal(gr[2]->op, IR_FULL); /* unreached: zeros */
    static const kiln_target targets[2] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    for (int k = 0; k < 2; k++) {
        kiln_module *m = NULL;
        assert_int_equal(kiln_compile(g, &(kiln_compile_opts){.target = targets[k]}, &m), KILN_OK);
        double xv[3] = {1, -2, 0.5}, uv[3] = {0}, tv[4] = {2, 0, 2, -1};
        assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
        assert_int_equal(kiln_module_set(m, "u", uv, sizeof uv), KILN_OK);
        assert_int_equal(kiln_module_set(m, "t", tv, sizeof tv), KILN_OK);
        assert_int_equal(kiln_module_run(m, "e"), KILN_OK);
        double gx[3], gh[3], gu[3], gtv[4];
        assert_int_equal(kiln_module_get(m, "gx", gx, sizeof gx), KILN_OK);
        assert_int_equal(kiln_module_get(m, "gh", gh, sizeof gh), KILN_OK);
        assert_int_equal(kiln_module_get(m, "gu", gu, sizeof gu), KILN_OK);
        assert_int_equal(kiln_module_get(m, "gt", gtv, sizeof gtv), KILN_OK);
        for (int i = 0; i < 3; i++) {
            assert_true(fabs(gx[i] - 19 * xv[i]) < 1e-12);
            assert_true(fabs(gh[i] - 6 * xv[i]) < 1e-12);
            assert_true(gu[i] == 0);
        }
        /* t = {2, 0, 2, -1}: amax 0.5 to each 2; relu 1,0,1,0; abs 1,0,1,-1;
         * maximum(t, 2): 0.5 at ties (t == 2), 0 below */
        const double want[4] = {0.5 + 1 + 1 + 0.5, 0, 0.5 + 1 + 1 + 0.5, -1};
        for (int i = 0; i < 4; i++)
            assert_true(fabs(gtv[i] - want[i]) < 1e-12);
        kiln_module_free(m);
    }
    kiln_graph_free(g);
}

/* y = x @ w^T (a linear layer): dw comes out as g^T @ x in w's own layout
 * (a matmul, not the transpose of x^T @ g), and asking for the transposed
 * view itself still gets x^T @ g; both are checked by value. */
static void test_grad_linear_weight_layout(void **state)
{
    (void)state;
    enum { B = 3, K = 4, N = 2 };
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(B, K));
    kiln_tensor *w = kiln_input(g, "w", KILN_F64, KILN_SHAPE(N, K));
    kiln_tensor *wt = kiln_transpose(g, w, 0, 1);
    kiln_tensor *y = kiln_matmul(g, x, wt);
    kiln_tensor *seed = kiln_input(g, "s", KILN_F64, KILN_SHAPE(B, N));
    kiln_tensor *dw = NULL, *both[2];
    assert_int_equal(kiln_grad(g, y, 1, &w, seed, &dw), KILN_OK);
    assert_int_equal(dw->op, IR_MATMUL);
    kiln_tensor *wrt[2] = {w, wt};
    assert_int_equal(kiln_grad(g, y, 2, wrt, seed, both), KILN_OK);
    assert_int_equal(both[1]->op, IR_MATMUL); /* d/d(w^T) = x^T @ s: [K, N] */
    assert_int_equal(kiln_tensor_dim(both[1], 0), K);
    kiln_tensor *outs[3] = {dw, both[0], both[1]};
    const char *names[3] = {"dw", "dw2", "dwt"};
    assert_int_equal(kiln_entry(g, "e", 3, outs, names), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    double xv[B * K], wv[N * K], sv[B * N], got[N * K], got2[N * K], gott[K * N];
    for (int i = 0; i < B * K; i++)
        xv[i] = i - 5;
    for (int i = 0; i < N * K; i++)
        wv[i] = 0.5 * i;
    for (int i = 0; i < B * N; i++)
        sv[i] = 2 - i;
    assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
    assert_int_equal(kiln_module_set(m, "w", wv, sizeof wv), KILN_OK);
    assert_int_equal(kiln_module_set(m, "s", sv, sizeof sv), KILN_OK);
    assert_int_equal(kiln_module_run(m, "e"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "dw", got, sizeof got), KILN_OK);
    assert_int_equal(kiln_module_get(m, "dw2", got2, sizeof got2), KILN_OK);
    assert_int_equal(kiln_module_get(m, "dwt", gott, sizeof gott), KILN_OK);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double want = 0; /* dw[n][k] = sum_b s[b][n] x[b][k] */
            for (int b = 0; b < B; b++)
                want += sv[b * N + n] * xv[b * K + k];
            assert_true(got[n * K + k] == want);
            assert_true(got2[n * K + k] == want);
            assert_true(gott[k * N + n] == want);
        }
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* MIN ties split like MAX's, in f32 as the tutorials use: s = [[-1, 3], [-1, 5]],
 * z = sum(amin(s, 0)) + sum(minimum(s, 3)):
 *   amin over axis 0: column 0 ties (0.5 each), column 1 picks row 0;
 *   minimum(s, 3): 1 below 3, 0.5 at the tie, 0 above. */
static void test_grad_min_ties_f32(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *s = kiln_input(g, "s", KILN_F32, KILN_SHAPE(2, 2));
    kiln_tensor *z = kiln_add(g, kiln_sum(g, kiln_min(g, s, 0, false), KILN_ALL, false),
                              kiln_sum(g, kiln_minimum(g, s, kiln_scalar(g, 3)), KILN_ALL, false));
    kiln_tensor *gs = NULL;
    assert_int_equal(kiln_grad(g, z, 1, &s, NULL, &gs), KILN_OK);
    assert_int_equal(kiln_tensor_dtype(gs), KILN_F32);
    assert_int_equal(kiln_entry(g, "e", 1, &gs, (const char *[]){"gs"}), KILN_OK);
    static const kiln_target targets[2] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    for (int k = 0; k < 2; k++) {
        kiln_module *m = NULL;
        assert_int_equal(kiln_compile(g, &(kiln_compile_opts){.target = targets[k]}, &m), KILN_OK);
        const float sv[4] = {-1, 3, -1, 5};
        float got[4];
        assert_int_equal(kiln_module_set(m, "s", sv, sizeof sv), KILN_OK);
        assert_int_equal(kiln_module_run(m, "e"), KILN_OK);
        assert_int_equal(kiln_module_get(m, "gs", got, sizeof got), KILN_OK);
        const float want[4] = {1.5f, 1.5f, 1.5f, 0};
        for (int i = 0; i < 4; i++)
            assert_true(got[i] == want[i]);
        kiln_module_free(m);
    }
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grad_errors),
        cmocka_unit_test(test_grad_every_op),
        cmocka_unit_test(test_grad_second_order),
        cmocka_unit_test(test_grad_sdpa_fused),
        cmocka_unit_test(test_grad_semantics),
        cmocka_unit_test(test_grad_min_ties_f32),
        cmocka_unit_test(test_grad_linear_weight_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
