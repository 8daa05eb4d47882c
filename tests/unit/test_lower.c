/*
 * test_lower.c - lowered kernel programs against the reference interpreter.
 *
 * Each test builds a graph with the builder API (or raw IR nodes for forms
 * the builders never make), compiles it for KILN_TARGET_INTERP, lowers a
 * clone through pass_pipeline, runs every entry with the kernel-IR evaluator
 * (kp_eval.h) over buffers laid out as the program says (temps inside the
 * planned arena), and compares every output and param with the interpreter.
 */
#include "ir/ir.h"
#include "kp_eval.h"
#include "passes/passes.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static kiln_graph *g;

static int setup(void **state)
{
    (void)state;
    g = kiln_graph_new();
    kiln_graph_seed(g, 1234);
    return g ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kiln_graph_free(g);
    g = NULL;
    return 0;
}

#define SH KILN_SHAPE

/* ---- the harness -------------------------------------------------------------- */

typedef struct {
    int nkernels[8]; /* per entry */
    int nbufs_temp;
} lowered;

static void fill_input(const kiln_tensor *t, void *data)
{
    int64_t n = ir_numel(t);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case KILN_F32:
        case KILN_F64:
            ir_store_f(t->dtype, data, i, 2.0 * sin(0.7 * (double)i + (double)t->id) + 0.25);
            break;
        case KILN_I32:
        case KILN_I64: ir_store_i(t->dtype, data, i, (i * 7 + t->id) % 3); break;
        case KILN_BOOL: ir_store_i(t->dtype, data, i, (i + t->id) % 2); break;
        }
    }
}

static bool close_enough(kiln_dtype dt, const void *a, const void *b, int64_t i)
{
    if (ir_dtype_is_float(dt)) {
        double x = ir_load_f(dt, a, i), y = ir_load_f(dt, b, i);
        if (x == y)
            return true;
        if (isnan(x) || isnan(y))
            return isnan(x) && isnan(y);
        return fabs(x - y) <= 1e-6 + 1e-5 * fabs(y);
    }
    return ir_load_i(dt, a, i) == ir_load_i(dt, b, i);
}

static void compare(const char *what, kiln_dtype dt, int64_t n, const void *got, const void *want)
{
    for (int64_t i = 0; i < n; i++)
        if (!close_enough(dt, got, want, i)) {
            fprintf(stderr, "%s[%lld]: kernels %.9g, interpreter %.9g\n", what, (long long)i,
                    ir_load_f(dt, got, i), ir_load_f(dt, want, i));
            fail();
        }
}

/* Compiles and lowers g, runs every entry `runs` times on both sides and
 * compares. want_err: the run-time message both must fail with (NULL: none). */
static lowered check_runs(int runs, const char *want_err)
{
    lowered res = {{0}, 0};
    kiln_compile_opts o = {.target = KILN_TARGET_INTERP};
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    kiln_graph *c = ir_graph_clone(g);
    assert_non_null(c);
    kprogram *p = NULL;
    kiln_status s = pass_pipeline(c, &p);
    if (getenv("KP_DUMP") && p)
        kp_print(p, stderr);
    if (s != KILN_OK)
        fprintf(stderr, "pipeline: %s\n", kiln_graph_error(c));
    assert_int_equal(s, KILN_OK);
    char msg[256];
    assert_int_equal(kp_verify(p, msg, sizeof msg), KILN_OK);
    void **bufs = calloc((size_t)p->nbufs + 1, sizeof(void *));
    void **inputs = calloc((size_t)g->nnodes + 1, sizeof(void *));
    assert_non_null(bufs);
    assert_non_null(inputs);
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->op == IR_INPUT) {
            const kiln_tensor *t = g->nodes[i];
            size_t nb = (size_t)ir_numel(t) * kiln_dtype_size(t->dtype);
            inputs[i] = calloc(nb + 1, 1);
            fill_input(t, inputs[i]);
            assert_int_equal(kiln_module_set(m, t->name, inputs[i], nb), KILN_OK);
        }
    for (int b = 0; b < p->nbufs; b++)
        res.nbufs_temp += p->bufs[b].role == KB_TEMP;
    for (int e = 0; e < p->nentries && e < 8; e++)
        res.nkernels[e] = p->entries[e].nkernels;
    uint32_t run = 0;
    for (int r = 0; r < runs; r++)
        for (int e = 0; e < p->nentries; e++) {
            const kentry *x = &p->entries[e];
            char *arena = aligned_alloc(64, (size_t)x->arena_bytes + 64);
            assert_non_null(arena);
            memset(arena, 0xcd, (size_t)x->arena_bytes + 64);
            for (int b = 0; b < p->nbufs; b++) {
                const kbuf *kb = &p->bufs[b];
                size_t nb = (size_t)kb->numel * kiln_dtype_size(kb->dtype);
                const kiln_tensor *t = kb->node >= 0 ? p->g->nodes[kb->node] : NULL;
                bufs[b] = NULL;
                switch (kb->role) {
                case KB_INPUT: bufs[b] = inputs[ir_find_leaf(g, t->name)->id]; break;
                case KB_PARAM:
                    bufs[b] = calloc(nb + 1, 1);
                    assert_int_equal(kiln_module_get(m, t->name, bufs[b], nb), KILN_OK);
                    break;
                case KB_OUTPUT:
                    bufs[b] = malloc(nb + 1);
                    memset(bufs[b], 0xab, nb + 1);
                    break;
                case KB_TEMP:
                    if (kb->entry == e) {
                        assert_true(kb->offset % 64 == 0);
                        assert_true(kb->offset + (int64_t)nb <= x->arena_bytes);
                        bufs[b] = arena + kb->offset;
                    }
                    break;
                case KB_CONST: bufs[b] = (void *)(uintptr_t)kb->data; break;
                }
            }
            bool ok = kpe_run(p, e, bufs, c->seed, run, msg, sizeof msg);
            kiln_status rs = kiln_module_run(m, x->name);
            if (want_err) {
                assert_false(ok);
                assert_int_not_equal(rs, KILN_OK);
                if (!strstr(msg, want_err) || !strstr(kiln_module_error(m), want_err)) {
                    fprintf(stderr, "kernels: %s\ninterpreter: %s\n", msg, kiln_module_error(m));
                    fail();
                }
            } else {
                if (!ok || rs != KILN_OK) {
                    fprintf(stderr, "kernels: %s\ninterpreter: %s\n", ok ? "ok" : msg,
                            kiln_module_error(m));
                    kp_print(p, stderr);
                    fail();
                }
                run++;
                for (int b = 0; b < p->nbufs; b++) {
                    const kbuf *kb = &p->bufs[b];
                    size_t nb = (size_t)kb->numel * kiln_dtype_size(kb->dtype);
                    void *want = calloc(nb + 1, 1);
                    const char *name = NULL;
                    if (kb->role == KB_OUTPUT && kb->entry == e)
                        name = c->entries[e].output_names[kb->index];
                    if (kb->role == KB_PARAM)
                        name = p->g->nodes[kb->node]->name;
                    if (name) {
                        assert_int_equal(kiln_module_get(m, name, want, nb), KILN_OK);
                        compare(name, kb->dtype, kb->numel, bufs[b], want);
                    }
                    free(want);
                }
            }
            for (int b = 0; b < p->nbufs; b++)
                if (p->bufs[b].role == KB_PARAM || p->bufs[b].role == KB_OUTPUT)
                    free(bufs[b]);
            free(arena);
        }
    for (int i = 0; i < g->nnodes; i++)
        free(inputs[i]);
    free(inputs);
    free(bufs);
    kp_free(p);
    kiln_graph_free(c);
    kiln_module_free(m);
    return res;
}

static lowered check(void)
{
    return check_runs(2, NULL);
}

static void entry(int n, kiln_tensor *const *outs)
{
    if (kiln_graph_status(g) != KILN_OK)
        fprintf(stderr, "graph: %s\n", kiln_graph_error(g));
    assert_int_equal(kiln_entry(g, "f", n, outs, NULL), KILN_OK);
}

static kiln_tensor *in(const char *name, kiln_dtype dt, int rank, const int64_t *dims)
{
    kiln_tensor *t = kiln_input(g, name, dt, rank, dims);
    assert_non_null(t);
    return t;
}

/* ---- elementwise ----------------------------------------------------------------- */

static void test_elementwise_chain(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(4, 5)), *b = in("b", KILN_F32, SH(5));
    kiln_tensor *y = kiln_mul(g, kiln_add(g, x, b), kiln_scalar(g, 0.5));
    kiln_tensor *r = kiln_rand_like(g, y);
    kiln_tensor *z = kiln_where(g, kiln_gt(g, r, kiln_scalar(g, 0.3)), kiln_exp(g, y),
                                kiln_cast(g, kiln_neg(g, y), KILN_F32));
    kiln_tensor *out = kiln_cast(g, z, KILN_F64);
    entry(1, &out);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 1);
    assert_int_equal(l.nbufs_temp, 0);
}

static void test_unary_all(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(3, 4)), *d = in("d", KILN_F64, SH(7));
    kiln_tensor *pos = kiln_add(g, kiln_abs(g, x), kiln_scalar(g, 0.5));
    kiln_tensor *outs[] = {
        kiln_neg(g, x),    kiln_abs(g, x),     kiln_exp(g, x),     kiln_log(g, pos),
        kiln_sqrt(g, pos), kiln_rsqrt(g, pos), kiln_sin(g, x),     kiln_cos(g, x),
        kiln_tanh(g, x),   kiln_erf(g, x),     kiln_sigmoid(g, x), kiln_relu(g, x),
        kiln_gelu(g, x),   kiln_silu(g, x),    kiln_square(g, x),  kiln_exp(g, d),
        kiln_tanh(g, d),   kiln_relu(g, d),    kiln_detach(g, x),  kiln_sigmoid(g, d)};
    entry(20, outs);
    check();
}

static void test_binary_all(void **state)
{
    (void)state;
    kiln_tensor *a = in("a", KILN_F32, SH(2, 3)), *b = in("b", KILN_F32, SH(2, 3));
    kiln_tensor *i = in("i", KILN_I64, SH(2, 3)), *j = in("j", KILN_I32, SH(3));
    kiln_tensor *outs[] = {kiln_add(g, a, b),
                           kiln_sub(g, a, b),
                           kiln_mul(g, a, b),
                           kiln_div(g, a, b),
                           kiln_pow(g, kiln_abs(g, a), b),
                           kiln_maximum(g, a, b),
                           kiln_minimum(g, a, b),
                           kiln_eq(g, a, b),
                           kiln_ne(g, a, b),
                           kiln_lt(g, a, b),
                           kiln_le(g, i, j),
                           kiln_gt(g, i, j),
                           kiln_ge(g, a, b),
                           kiln_add(g, i, j),
                           kiln_mul(g, i, j),
                           kiln_sub(g, j, i),
                           kiln_maximum(g, i, j),
                           kiln_pow(g, i, j),
                           kiln_div(g, i, j),
                           kiln_mul(g, j, j)};
    entry(20, outs);
    check();
}

static void test_casts(void **state)
{
    (void)state;
    kiln_tensor *x = kiln_mul(g, in("x", KILN_F32, SH(6)), kiln_scalar(g, 1e10));
    kiln_tensor *i = in("i", KILN_I64, SH(6)), *bo = in("bo", KILN_BOOL, SH(6));
    kiln_tensor *outs[] = {kiln_cast(g, x, KILN_I32),  kiln_cast(g, x, KILN_I64),
                           kiln_cast(g, x, KILN_BOOL), kiln_cast(g, i, KILN_F32),
                           kiln_cast(g, i, KILN_I32),  kiln_cast(g, bo, KILN_F64),
                           kiln_cast(g, bo, KILN_I64), kiln_cast(g, x, KILN_F64)};
    entry(8, outs);
    check();
}

/* Integer floor division by zero: a run-time error on both sides. */
static void test_int_div_zero(void **state)
{
    (void)state;
    kiln_tensor *a = in("a", KILN_I64, SH(4)), *b = in("b", KILN_I64, SH(4));
    kiln_tensor *ops[] = {a, b};
    kiln_tensor *d = ir_node_new(g, IR_DIV, KILN_I64, 1, a->dims, 2, ops);
    assert_non_null(d);
    entry(1, &d);
    check_runs(1, "ZeroDivisionError");
}

static void test_int_neg_pow(void **state)
{
    (void)state;
    kiln_tensor *a = in("a", KILN_I64, SH(4));
    kiln_tensor *p = kiln_pow(g, a, kiln_sub(g, a, kiln_scalar(g, 1)));
    entry(1, &p);
    check_runs(1, "negative integer powers");
}

/* ---- sources ------------------------------------------------------------------------ */

static void test_sources(void **state)
{
    (void)state;
    float data[6] = {1, -2, 3.5f, 4, 5, 6};
    int64_t one = 42;
    kiln_tensor *outs[] = {kiln_tensor_from(g, KILN_F32, SH(2, 3), data),
                           kiln_tensor_from(g, KILN_I64, 0, NULL, &one),
                           kiln_full(g, KILN_I32, SH(2, 2), -7),
                           kiln_arange(g, KILN_F32, 1, 4, 0.5),
                           kiln_arange(g, KILN_I64, 0, 5, 1),
                           kiln_linspace(g, KILN_F64, -1, 1, 5),
                           kiln_rand(g, KILN_F64, SH(3, 2)),
                           kiln_randn(g, KILN_F32, SH(5)),
                           kiln_randn(g, KILN_F64, SH(2, 2)),
                           kiln_add(g, kiln_tensor_from(g, KILN_F32, SH(2, 3), data),
                                    kiln_ones(g, KILN_F32, SH(2, 3)))};
    entry(10, outs);
    check_runs(3, NULL);
}

/* A random tensor read twice is computed once: both reads see the same values.
 * Its kernel, its two readers' and the dropout (all over [4, 3]) merge into
 * one loop (pass_hfuse), the random values forwarded, not stored. */
static void test_rand_shared(void **state)
{
    (void)state;
    kiln_tensor *r = kiln_rand(g, KILN_F32, SH(4, 3));
    kiln_tensor *y = kiln_sub(g, kiln_mul(g, r, r), kiln_exp(g, r));
    kiln_tensor *d = kiln_dropout(g, in("x", KILN_F32, SH(4, 3)), 0.5);
    kiln_tensor *outs[] = {y, d};
    entry(2, outs);
    lowered l = check_runs(3, NULL);
    assert_int_equal(l.nkernels[0], 1);
}

/* ---- views ------------------------------------------------------------------------- */

static void test_views(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(2, 3, 4));
    kiln_tensor *p = kiln_permute(g, x, (const int[]){2, 0, 1});
    kiln_tensor *s = kiln_slice(g, p, 0, 1, 4, 2);
    kiln_tensor *r = kiln_reshape(g, s, SH(4, 3));
    kiln_tensor *f = kiln_flatten(g, kiln_transpose(g, x, 0, 2), 0, 1);
    kiln_tensor *e = kiln_expand(g, kiln_unsqueeze(g, kiln_select(g, x, 1, 2), 1), SH(2, 5, 4));
    kiln_tensor *pad = kiln_pad(g, x, (const int64_t[]){0, 1, 2}, (const int64_t[]){1, 0, 1}, -3);
    kiln_tensor *crop =
        kiln_pad(g, kiln_exp(g, x), (const int64_t[]){2, 0, 0}, (const int64_t[]){0, 0, 3}, 9);
    kiln_tensor *parts[] = {x, kiln_neg(g, x), kiln_slice(g, x, 2, 0, 1, 1)};
    kiln_tensor *cat = kiln_concat(g, 3, parts, 2);
    kiln_tensor *st = kiln_stack(g, 2, parts, 0);
    kiln_tensor *sq = kiln_squeeze(g, kiln_reshape(g, x, SH(1, 24, 1)), KILN_ALL);
    kiln_tensor *regroup = kiln_reshape(g, kiln_transpose(g, x, 1, 2), SH(2, 2, 6));
    kiln_tensor *outs[] = {p, s, r, f, e, pad, crop, cat, st, sq, regroup, kiln_exp(g, r)};
    entry(12, outs);
    lowered l = check();
    assert_int_equal(l.nbufs_temp, 0);
}

/* Views of views with a reduction in between: nothing is copied but the roots. */
static void test_views_into_reduce(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(3, 4, 5));
    kiln_tensor *v = kiln_reshape(g, kiln_permute(g, x, (const int[]){1, 2, 0}), SH(4, 15));
    kiln_tensor *sm = kiln_sum(g, kiln_exp(g, v), 1, false);
    kiln_tensor *outs[] = {sm, kiln_max(g, kiln_transpose(g, x, 0, 2), 0, true)};
    entry(2, outs);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 2);
}

/* ---- reductions ------------------------------------------------------------------------ */

static void test_reductions(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(3, 4, 5)), *i = in("i", KILN_I32, SH(4, 3));
    kiln_tensor *outs[] = {kiln_sum(g, x, KILN_ALL, false),
                           kiln_sum_axes(g, x, 2, (const int[]){0, 2}, true),
                           kiln_mean_axes(g, x, 2, (const int[]){1, 2}, false),
                           kiln_max(g, x, 1, false),
                           kiln_min(g, x, -1, true),
                           kiln_argmax(g, x, KILN_ALL, false),
                           kiln_argmin(g, x, 0, false),
                           kiln_argmax(g, x, 2, true),
                           kiln_sum(g, i, 0, false),
                           kiln_max(g, i, 1, false),
                           kiln_argmin(g, i, KILN_ALL, false),
                           kiln_mean(g, kiln_sum(g, kiln_exp(g, x), 2, false), 0, false)};
    entry(12, outs);
    check();
}

/* sum(where(arange == e, v, 0)) is lowered as one load of v at e; e out of
 * [0, 4) gives 0 (the inputs' e cycle 0, 1, 2; the constant rows -1 and 4). */
static void test_onehot_sum(void **state)
{
    (void)state;
    kiln_tensor *v = in("v", KILN_F32, SH(5, 4)), *e = in("e", KILN_I64, SH(3, 1));
    const int64_t out_of_range[] = {-1, 4};
    kiln_tensor *far = kiln_tensor_from(g, KILN_I64, 2, (const int64_t[]){2, 1}, out_of_range);
    kiln_tensor *at = kiln_concat(g, 2, (kiln_tensor *[]){e, far}, 0);
    kiln_tensor *i = kiln_arange(g, KILN_I64, 0, 4, 1);
    kiln_tensor *hit = kiln_eq(g, i, at);
    kiln_tensor *outs[] = {
        kiln_sum(g, kiln_where(g, hit, v, kiln_scalar(g, 0)), 1, false),
        kiln_sum(g, kiln_where(g, hit, kiln_exp(g, v), kiln_scalar(g, 0)), -1, true)};
    entry(2, outs);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 1); /* two pointwise kernels over [5], merged */
}

static void test_softmax_family(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(4, 6)), *w = in("w", KILN_F32, SH(6));
    kiln_tensor *bb = in("bb", KILN_F32, SH(6)), *lab = in("lab", KILN_I64, SH(4));
    kiln_tensor *outs[] = {kiln_softmax(g, x, 1), kiln_log_softmax(g, x, 0),
                           kiln_layer_norm(g, x, w, bb, 1e-5), kiln_cross_entropy(g, x, lab),
                           kiln_mse_loss(g, x, kiln_softmax(g, x, -1))};
    entry(5, outs);
    check();
}

/* ---- matmul ------------------------------------------------------------------------------ */

static void test_matmul_forms(void **state)
{
    (void)state;
    kiln_tensor *a = in("a", KILN_F32, SH(3, 4)), *b = in("b", KILN_F32, SH(4, 5));
    kiln_tensor *bt = in("bt", KILN_F32, SH(5, 4)), *ba = in("ba", KILN_F32, SH(2, 3, 4));
    kiln_tensor *bb = in("bb", KILN_F32, SH(2, 4, 5)), *ia = in("ia", KILN_I64, SH(2, 3));
    kiln_tensor *outs[] = {
        kiln_matmul(g, a, b),
        kiln_matmul(g, a, kiln_transpose(g, bt, 0, 1)),
        kiln_matmul(g, kiln_transpose(g, kiln_transpose(g, a, 0, 1), 0, 1), b),
        kiln_matmul(g, ba, bb),
        kiln_matmul(g, ba, b), /* broadcast B: batch stride 0 */
        kiln_matmul(g, kiln_relu(g, a), b),
        kiln_matmul(g, kiln_slice(g, a, 1, 1, 4, 1), kiln_slice(g, b, 0, 1, 4, 1)),
        kiln_matmul(g, kiln_transpose(g, bb, 1, 2), kiln_transpose(g, ba, 1, 2)),
        kiln_matmul(g, ia, kiln_transpose(g, ia, 0, 1)),
        kiln_matmul(g, kiln_reshape(g, ba, SH(6, 4)), b)};
    entry(10, outs);
    check();
}

/* sdpa: one ATTENTION kernel per node, causal or not, strided operands (a
 * transposed key read in place), f32 and f64; what reads it is another kernel
 * (the kernel-IR evaluator against the interpreter). */
static void test_attention(void **state)
{
    (void)state;
    kiln_tensor *q = in("q", KILN_F32, SH(2, 4, 3)), *k = in("k", KILN_F32, SH(2, 5, 3));
    kiln_tensor *v = in("v", KILN_F32, SH(2, 5, 2)), *kt = in("kt", KILN_F64, SH(2, 3, 5));
    kiln_tensor *q64 = in("q64", KILN_F64, SH(2, 4, 3)), *v64 = in("v64", KILN_F64, SH(2, 5, 2));
    kiln_tensor *outs[] = {
        kiln_scaled_dot_product_attention(g, q, k, v, NULL, false, 0),
        kiln_exp(g, kiln_scaled_dot_product_attention(g, q, k, v, NULL, true, 0.25)),
        kiln_scaled_dot_product_attention(g, q64, kiln_transpose(g, kt, 1, 2), v64, NULL, true, 0)};
    entry(3, outs);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 4); /* three sdpa, one exp */
}

/* Attention heads permuted in ([N, T, H, D] read as [N, H, T, D], sliced out
 * of one q|k|v projection) are read in place: their batch axes need two
 * strides, (b / H) and (b % H). Three runs of strides do not fit: that query
 * is copied first. */
static void test_attention_heads_in_place(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(2, 5, 18)), *qkv[3];
    for (int p = 0; p < 3; p++)
        qkv[p] = kiln_transpose(
            g, kiln_reshape(g, kiln_slice(g, x, 2, 6 * p, 6 * (p + 1), 1), SH(2, 5, 2, 3)), 1, 2);
    kiln_tensor *x3 = in("x3", KILN_F32, SH(2, 4, 3, 2, 3));
    kiln_tensor *q3 = kiln_permute(g, x3, (const int[]){3, 2, 0, 1, 4}); /* [2, 3, 2, 4, 3] */
    kiln_tensor *k3 = in("k3", KILN_F32, SH(2, 3, 2, 6, 3)),
                *v3 = in("v3", KILN_F32, SH(2, 3, 2, 6, 2));
    kiln_tensor *outs[] = {
        kiln_scaled_dot_product_attention(g, qkv[0], qkv[1], qkv[2], NULL, true, 0),
        kiln_scaled_dot_product_attention(g, q3, k3, v3, NULL, false, 0)};
    entry(2, outs);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 3); /* two sdpa, one copy of q3 */
}

/* A bool mask is the ATTENTION kernel's sixth operand, read in place: one
 * [T, S] mask broadcast over the batch (batch stride 0), one transposed, one
 * [B, 1, T, S] over heads permuted in (two batch strides, the inner 0). */
static void test_attention_masked(void **state)
{
    (void)state;
    kiln_tensor *q = in("q", KILN_F32, SH(2, 4, 3)), *k = in("k", KILN_F32, SH(2, 5, 3));
    kiln_tensor *v = in("v", KILN_F32, SH(2, 5, 2));
    kiln_tensor *m = in("m", KILN_BOOL, SH(4, 5)), *mt = in("mt", KILN_BOOL, SH(2, 5, 4));
    kiln_tensor *x = in("x", KILN_F32, SH(2, 4, 18)), *qkv[3];
    for (int p = 0; p < 3; p++)
        qkv[p] = kiln_transpose(
            g, kiln_reshape(g, kiln_slice(g, x, 2, 6 * p, 6 * (p + 1), 1), SH(2, 4, 2, 3)), 1, 2);
    kiln_tensor *mh = in("mh", KILN_BOOL, SH(2, 1, 4, 4));
    kiln_tensor *outs[] = {
        kiln_scaled_dot_product_attention(g, q, k, v, m, false, 0),
        kiln_scaled_dot_product_attention(g, q, k, v, kiln_transpose(g, mt, 1, 2), false, 0.5),
        kiln_scaled_dot_product_attention(g, qkv[0], qkv[1], qkv[2], mh, false, 0)};
    entry(3, outs);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 3); /* three sdpa, no copy of a mask */
}

static void test_linear_relu_epilogue(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(8, 4));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, SH(16, 4), kiln_init_kaiming_uniform());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, SH(16), kiln_init_uniform(-1, 1));
    kiln_tensor *y = kiln_relu(g, kiln_linear(g, x, w, b));
    entry(1, &y);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 1);
    assert_int_equal(l.nbufs_temp, 0);
}

/* A convolution's bias and activation run in its GEMM's epilogue, through
 * the reshape of [N, 1, O, H*W] to [N, O, H, W]: an im2col kernel and the
 * matmul per convolution, nothing else (padded; strided and dilated). */
static void test_conv_epilogue(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(2, 4, 6, 5));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, SH(6, 4, 3, 3), kiln_init_kaiming_uniform());
    kiln_tensor *w2 = kiln_param(g, "w2", KILN_F32, SH(3, 4, 2, 2), kiln_init_kaiming_uniform());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, SH(6), kiln_init_uniform(-1, 1));
    kiln_tensor *b2 = kiln_param(g, "b2", KILN_F32, SH(3), kiln_init_uniform(-1, 1));
    kiln_conv_opts strided = {.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 2}};
    kiln_tensor *outs[] = {
        kiln_relu(g, kiln_conv2d(g, x, w, b, (kiln_conv_opts){.padding = {1, 1}})),
        kiln_relu(g, kiln_conv2d(g, x, w2, b2, strided))};
    entry(2, outs);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 4); /* without the epilogues: 6 */
}

/* GELU reads its input twice (x * (1 + erf(x / sqrt 2)) / 2): the epilogue
 * is a DAG that joins at one root, still one kernel with its matmul, for a
 * linear and a convolution. */
static void test_gelu_epilogue(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(8, 4)), *xi = in("xi", KILN_F32, SH(2, 3, 5, 5));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, SH(16, 4), kiln_init_kaiming_uniform());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, SH(16), kiln_init_uniform(-1, 1));
    kiln_tensor *wc = kiln_param(g, "wc", KILN_F32, SH(4, 3, 3, 3), kiln_init_kaiming_uniform());
    kiln_tensor *y = kiln_gelu(g, kiln_linear(g, x, w, b));
    kiln_tensor *yc = kiln_gelu(g, kiln_conv2d(g, xi, wc, NULL, (kiln_conv_opts){0}));
    entry(1, &y);
    assert_int_equal(kiln_entry(g, "conv", 1, &yc, NULL), KILN_OK);
    lowered l = check();
    assert_int_equal(l.nkernels[0], 1);
    assert_int_equal(l.nkernels[1], 1); /* the GEMM reads the taps in place */
}

static void test_mlp_sgd(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(8, 4)), *t = in("t", KILN_F32, SH(8, 2));
    kiln_tensor *w1 = kiln_param(g, "w1", KILN_F32, SH(16, 4), kiln_init_kaiming_uniform());
    kiln_tensor *b1 = kiln_param(g, "b1", KILN_F32, SH(16), kiln_init_uniform(-1, 1));
    kiln_tensor *w2 = kiln_param(g, "w2", KILN_F32, SH(2, 16), kiln_init_normal(0, 0.5));
    kiln_tensor *h = kiln_dropout(g, kiln_relu(g, kiln_linear(g, x, w1, b1)), 0.25);
    kiln_tensor *y = kiln_linear(g, h, w2, NULL);
    kiln_tensor *loss = kiln_mse_loss(g, y, t);
    entry(2, (kiln_tensor *[]){y, loss});
    /* a manual step: w2 -= 0.1 * (sum of h over the batch, broadcast) */
    kiln_tensor *gw = kiln_expand(g, kiln_sum(g, h, 0, true), SH(2, 16));
    kiln_tensor *upd = kiln_assign(g, w2, kiln_sub(g, w2, kiln_mul(g, gw, kiln_scalar(g, 0.1))));
    kiln_tensor *outs2[] = {loss, upd, w2};
    assert_int_equal(kiln_entry(g, "step", 3, outs2, NULL), KILN_OK);
    check_runs(3, NULL);
}

/* ---- indexing ----------------------------------------------------------------------------- */

static void test_gather(void **state)
{
    (void)state;
    kiln_tensor *table = in("table", KILN_F32, SH(3, 4)), *ids = in("ids", KILN_I64, SH(2, 5));
    kiln_tensor *ids32 = in("ids32", KILN_I32, SH(4));
    kiln_tensor *outs[] = {kiln_embedding(g, table, ids),
                           kiln_embedding(g, kiln_exp(g, table), ids32)};
    entry(2, outs);
    check();
}

static void test_gather_out_of_range(void **state)
{
    (void)state;
    kiln_tensor *table = in("table", KILN_F32, SH(3, 4)), *ids = in("ids", KILN_I64, SH(5));
    kiln_tensor *e = kiln_embedding(g, table, kiln_add(g, ids, kiln_scalar(g, 2)));
    entry(1, &e);
    check_runs(1, "index 3 is out of bounds for dimension 0 with size 3");
}

static void test_scatter_add(void **state)
{
    (void)state;
    kiln_tensor *src = in("src", KILN_F32, SH(2, 5, 3)), *ids = in("ids", KILN_I64, SH(5));
    kiln_tensor *ops[] = {kiln_mul(g, src, src), ids};
    kiln_tensor *sa =
        ir_node_new(g, IR_SCATTER_ADD, KILN_F32, 3, (const int64_t[]){2, 4, 3}, 2, ops);
    assert_non_null(sa);
    sa->axis = 1;
    kiln_tensor *outs[] = {sa, kiln_exp(g, sa), sa};
    entry(3, outs);
    check();
}

/* ---- assign and outputs --------------------------------------------------------------------- */

static void test_assign_twice_and_leaf_outputs(void **state)
{
    (void)state;
    kiln_tensor *x = in("x", KILN_F32, SH(2, 3));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, SH(2, 3), kiln_init_const(1.5));
    float cd[6] = {1, 2, 3, 4, 5, 6};
    kiln_tensor *c = kiln_tensor_from(g, KILN_F32, SH(2, 3), cd);
    kiln_tensor *v = kiln_param(g, "v", KILN_F32, SH(2, 3), kiln_init_const(-1));
    /* one assign output twice (two assigns to one param are refused by kiln_entry) */
    kiln_tensor *a1 = kiln_assign(g, v, kiln_add(g, w, x));
    kiln_tensor *a2 = kiln_assign(g, w, kiln_mul(g, v, c));
    kiln_tensor *outs[] = {a1, w, a2, x, c, kiln_transpose(g, w, 0, 1), a2, c};
    entry(8, outs);
    check_runs(3, NULL);
}

/* ---- sizes 0 and 1 -----------------------------------------------------------------------------
 */

static void test_size0_size1(void **state)
{
    (void)state;
    kiln_tensor *z = in("z", KILN_F32, SH(0, 3)), *o = in("o", KILN_F32, SH(1, 1, 3));
    kiln_tensor *s = in("s", KILN_F32, 0, NULL);
    kiln_tensor *outs[] = {kiln_exp(g, z),
                           kiln_sum(g, z, 0, false),
                           kiln_sum(g, z, KILN_ALL, false),
                           kiln_add(g, o, s),
                           kiln_sum(g, o, KILN_ALL, false),
                           kiln_matmul(g, kiln_reshape(g, o, SH(1, 3)), kiln_transpose(g, z, 0, 1)),
                           kiln_matmul(g, kiln_transpose(g, z, 0, 1), z),
                           kiln_reshape(g, z, SH(3, 0)),
                           kiln_exp(g, s),
                           kiln_concat(g, 2, (kiln_tensor *[]){z, z}, 0)};
    entry(10, outs);
    check();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_elementwise_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unary_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_casts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_div_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_int_neg_pow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sources, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rand_shared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_views_into_reduce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reductions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_onehot_sum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_softmax_family, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matmul_forms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_heads_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_masked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_linear_relu_epilogue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conv_epilogue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gelu_epilogue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mlp_sgd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gather, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gather_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scatter_add, setup, teardown),
        cmocka_unit_test_setup_teardown(test_assign_twice_and_leaf_outputs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_size0_size1, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
