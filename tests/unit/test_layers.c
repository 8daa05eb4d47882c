/*
 * test_layers.c - convolution, pooling, batch and group norm and attention
 * (kiln_conv2d, kiln_max_pool2d, kiln_avg_pool2d, kiln_adaptive_avg_pool2d,
 * kiln_batch_norm, kiln_group_norm, kiln_scaled_dot_product_attention)
 * against PyTorch (tests/data/layers_table.txt, made by
 * tests/ref/layers_table.py in float64): every output, the gradients of
 * sum(y * ct) with respect to the inputs and batch norm's running statistics
 * after a step, on the interpreter and the C target (test_layers_cuda: the
 * GPU; test_layers_launch: the C device), within 1e-10; and every error path
 * with PyTorch's text.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *table; /* the whole reference file */

/* The reference values of `name` ("conv_basic.y"), n of them. */
static double *ref(const char *name, int64_t n)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s:", name);
    const char *at = strstr(table, key);
    if (!at && strncmp(table, key + 1, strlen(key + 1)) == 0)
        at = table - 1;
    if (!at)
        fail_msg("no reference values for %s", name);
    at += strlen(key);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) {
        char *end;
        v[i] = strtod(at, &end);
        if (end == at)
            fail_msg("%s: %lld reference values, want %lld", name, (long long)i, (long long)n);
        at = end;
    }
    while (*at == ' ')
        at++;
    if (*at != '\n' && *at != 0)
        fail_msg("%s: more than %lld reference values", name, (long long)n);
    return v;
}

/* The closed forms of tests/ref/conv_table.py. */
static double *form(int64_t n, int a, int m, int c, double d)
{
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = (double)((a * i) % m - c) / d;
    return v;
}

static int64_t numel(int rank, const int64_t *dims)
{
    int64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= dims[d];
    return n;
}

/* One case: y = f(x, w, b) (the inputs given: rank 0 = none); entry "f"
 * outputs y and the gradients of sum(y*ct) with respect to the inputs, then
 * whatever updates the graph registered ("f.new.<param>", compared with the
 * reference "<case>.new_<param>"). */
typedef kiln_tensor *(*build_fn)(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                                 const void *arg);
typedef struct {
    int rank;
    int64_t dims[KILN_MAX_RANK];
} shape;

static void compare(kiln_module *m, const char *oname, const char *key, int64_t n, const char *on)
{
    double *want = ref(key, n), *got = malloc(sizeof(double) * (size_t)(n ? n : 1));
    assert_non_null(got);
    assert_int_equal(kiln_module_get(m, oname, got, sizeof(double) * (size_t)n), KILN_OK);
    for (int64_t i = 0; i < n; i++)
        if (!(fabs(got[i] - want[i]) <= 1e-10 * (1 + fabs(want[i]))))
            fail_msg("%s on %s: element %lld is %.17g, PyTorch %.17g", key, on, (long long)i,
                     got[i], want[i]);
    free(want);
    free(got);
}

static void check3(const char *name, const shape in[3], build_fn f, const void *arg)
{
    static const kiln_target targets[2] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    static const char *const pname[3] = {"x", "w", "b"}, *gname[3] = {"dx", "dw", "db"};
    double *v[3];
    for (int i = 0; i < 3; i++) {
        int64_t n = in[i].rank ? numel(in[i].rank, in[i].dims) : 0;
        v[i] = i == 0   ? form(n, 37, 101, 50, 64)
               : i == 1 ? form(n, 53, 97, 48, 64)
                        : form(n, 1, 7, 3, 8); /* (i mod 7 - 3) / 8 */
    }
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *p[3] = {NULL, NULL, NULL}, *wrt[3], *grads[3] = {NULL, NULL, NULL};
        const char *names[4] = {"y"};
        int nwrt = 0;
        for (int i = 0; i < 3; i++)
            if (in[i].rank) {
                p[i] =
                    kiln_param(g, pname[i], KILN_F64, in[i].rank, in[i].dims, kiln_init_data(v[i]));
                names[1 + nwrt] = gname[i];
                wrt[nwrt++] = p[i];
            }
        kiln_tensor *y = f(g, p[0], p[1], p[2], arg);
        ku_assert_ok(g);
        double *ctv = form(ir_numel(y), 29, 89, 44, 32);
        kiln_tensor *ct = kiln_tensor_from(g, KILN_F64, y->rank, y->dims, ctv);
        kiln_tensor *loss = kiln_sum(g, kiln_mul(g, y, ct), KILN_ALL, false);
        assert_int_equal(kiln_grad(g, loss, nwrt, wrt, NULL, grads), KILN_OK);
        kiln_tensor *outs[4] = {y, grads[0], grads[1], grads[2]};
        assert_int_equal(kiln_entry(g, "f", 1 + nwrt, outs, names), KILN_OK);
        const ir_entry *e = &g->entries[g->nentries - 1]; /* with the appended updates */
        kiln_module *m = ku_compile_for(g, targets[t]);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        for (int o = 0; o < e->n; o++) {
            char key[200];
            if (o <= nwrt)
                snprintf(key, sizeof key, "%s.%s", name, names[o]);
            else /* "f.new.rm" -> "<case>.new_rm" */
                snprintf(key, sizeof key, "%s.new_%s", name, e->output_names[o] + strlen("f.new."));
            compare(m, e->output_names[o], key, ir_numel(e->outputs[o]),
                    t ? "C" : "the interpreter");
        }
        kiln_module_free(m);
        kiln_graph_free(g);
        free(ctv);
    }
    for (int i = 0; i < 3; i++)
        free(v[i]);
}

/* x [xd], w [wd] (or none: wr 0), b [wd[0]] (bias) */
static void check(const char *name, int xr, const int64_t *xd, int wr, const int64_t *wd, bool bias,
                  build_fn f, const void *arg)
{
    shape in[3] = {{xr, {0}}, {wr, {0}}, {bias ? 1 : 0, {bias ? wd[0] : 0}}};
    memcpy(in[0].dims, xd, sizeof(int64_t) * (size_t)xr);
    if (wr)
        memcpy(in[1].dims, wd, sizeof(int64_t) * (size_t)wr);
    check3(name, in, f, arg);
}

/* ---- conv2d ----------------------------------------------------------------------- */

static kiln_tensor *conv(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                         const void *arg)
{
    return kiln_conv2d(g, x, w, b, *(const kiln_conv_opts *)arg);
}

/* The table of tests/ref/conv_table.py's CONVS. */
static void test_conv2d_matches_pytorch(void **state)
{
    (void)state;
    check("conv_basic", 4, (int64_t[]){2, 3, 5, 5}, 4, (int64_t[]){4, 3, 3, 3}, true, conv,
          &(kiln_conv_opts){0});
    check("conv_groups_stride_pad", 4, (int64_t[]){2, 4, 7, 6}, 4, (int64_t[]){6, 2, 3, 2}, true,
          conv, &(kiln_conv_opts){.stride = {2, 2}, .padding = {1, 1}, .groups = 2});
    check("conv_dilated", 4, (int64_t[]){1, 2, 8, 8}, 4, (int64_t[]){3, 2, 3, 3}, false, conv,
          &(kiln_conv_opts){.padding = {2, 2}, .dilation = {2, 2}});
    check("conv_unbatched_1x1", 3, (int64_t[]){3, 4, 4}, 4, (int64_t[]){2, 3, 1, 1}, true, conv,
          &(kiln_conv_opts){.stride = {2, 1}, .padding = {0, 1}});
    check("conv_depthwise", 4, (int64_t[]){1, 4, 5, 5}, 4, (int64_t[]){4, 1, 3, 3}, false, conv,
          &(kiln_conv_opts){.padding = {1, 1}, .groups = 4});
}

static kiln_tensor *conv1(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                          const void *arg)
{
    return kiln_conv1d(g, x, w, b, *(const kiln_conv_opts *)arg);
}

/* tests/ref/layers_table.py's CONV1DS */
static void test_conv1d_matches_pytorch(void **state)
{
    (void)state;
    check("conv1d_basic", 3, (int64_t[]){2, 3, 9}, 3, (int64_t[]){4, 3, 3}, true, conv1,
          &(kiln_conv_opts){0});
    check("conv1d_strided_groups", 3, (int64_t[]){2, 4, 11}, 3, (int64_t[]){6, 2, 4}, false, conv1,
          &(kiln_conv_opts){.stride = {2}, .padding = {2}, .dilation = {2}, .groups = 2});
    check("conv1d_unbatched", 2, (int64_t[]){3, 7}, 3, (int64_t[]){2, 3, 2}, true, conv1,
          &(kiln_conv_opts){.padding = {1}});
}

/* f32 gives the f64 numbers within f32's tolerance, and the shape rules. */
static void test_conv2d_f32_and_shapes(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3, 9, 7));
    kiln_tensor *w = kiln_input(g, "w", KILN_F32, KILN_SHAPE(5, 3, 3, 2));
    kiln_tensor *y =
        kiln_conv2d(g, x, w, NULL, (kiln_conv_opts){.stride = {2, 3}, .padding = {1, 0}});
    assert_shape(y, 2, 5, 5, 2); /* (9 + 2 - 3) / 2 + 1, (7 - 2) / 3 + 1 */
    kiln_tensor *u = kiln_conv2d(g, kiln_input(g, "u", KILN_F32, KILN_SHAPE(3, 6, 6)), w, NULL,
                                 (kiln_conv_opts){0});
    assert_shape(u, 5, 4, 5);
    assert_shape(kiln_max_pool2d(g, x, 2, 0, 0), 2, 3, 4, 3);
    assert_shape(kiln_avg_pool2d(g, x, 3, 2, 1), 2, 3, 5, 4);
    assert_shape(kiln_adaptive_avg_pool2d(g, x, 1, 1), 2, 3, 1, 1);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

/* An f32 convolution through the implicit GEMM (passes/fuse.c reads the
 * taps in place; codegen/c's packed gather tile) and its gradients, whose
 * weight gradient folds the batch into k and splits k between threads:
 * a compiled module (threads: 0 = all) against the interpreter. Sizes make
 * every block ragged: 13 output rows (not whole register blocks), k = 216
 * (two k blocks), 17 x 19 = 323 columns (two column tiles), 3 x 323 = 969 k
 * for the weight gradient (split k). Outputs into out[0..3] (y, dx, dw, db). */
static void conv_f32_run(kiln_target t, int threads, float *out[4])
{
    kiln_graph *g = ku_graph_new();
    const int64_t xd[4] = {3, 24, 17, 19}, wd[4] = {13, 24, 3, 3};
    double *xv = form(numel(4, xd), 37, 101, 50, 64), *wv = form(numel(4, wd), 53, 97, 48, 64);
    float *xf = malloc(sizeof(float) * (size_t)numel(4, xd));
    float *wf = malloc(sizeof(float) * (size_t)numel(4, wd)), bf[13];
    assert_non_null(xf);
    assert_non_null(wf);
    for (int64_t i = 0; i < numel(4, xd); i++)
        xf[i] = (float)xv[i];
    for (int64_t i = 0; i < numel(4, wd); i++)
        wf[i] = (float)wv[i];
    for (int i = 0; i < 13; i++)
        bf[i] = (float)(i % 7 - 3) / 8;
    kiln_tensor *x = kiln_param(g, "x", KILN_F32, 4, xd, kiln_init_data(xf));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, 4, wd, kiln_init_data(wf));
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(13), kiln_init_data(bf));
    kiln_tensor *y = kiln_relu(g, kiln_conv2d(g, x, w, b, (kiln_conv_opts){.padding = {1, 1}}));
    double *ctv = form(ir_numel(y), 29, 89, 44, 32);
    kiln_tensor *ct = kiln_tensor_from(g, KILN_F64, y->rank, y->dims, ctv);
    kiln_tensor *loss = kiln_sum(g, kiln_mul(g, y, kiln_cast(g, ct, KILN_F32)), KILN_ALL, false);
    kiln_tensor *wrt[3] = {x, w, b}, *gr[3];
    assert_int_equal(kiln_grad(g, loss, 3, wrt, NULL, gr), KILN_OK);
    kiln_tensor *outs[4] = {y, gr[0], gr[1], gr[2]};
    assert_int_equal(kiln_entry(g, "f", 4, outs, NULL), KILN_OK);
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &(kiln_compile_opts){.target = t, .threads = threads}, &m),
                     KILN_OK);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    for (int i = 0; i < 4; i++) {
        out[i] = malloc(sizeof(float) * (size_t)ir_numel(outs[i]));
        assert_non_null(out[i]);
        ku_get_f32(m, i, out[i], (size_t)ir_numel(outs[i]));
    }
    kiln_module_free(m);
    kiln_graph_free(g);
    free(xv);
    free(wv);
    free(xf);
    free(wf);
    free(ctv);
}

static void test_conv2d_f32_implicit_gemm(void **state)
{
    (void)state;
    const int64_t n[4] = {3 * 13 * 17 * 19, 3 * 24 * 17 * 19, 13 * 24 * 9, 13};
    float *want[4], *got[4], *one[4];
    conv_f32_run(KILN_TARGET_INTERP, 0, want);
    conv_f32_run(KILN_TARGET_C, 0, got);
    conv_f32_run(KILN_TARGET_C, 1, one);
    for (int o = 0; o < 4; o++) {
        double scale = 0;
        for (int64_t i = 0; i < n[o]; i++)
            scale = fmax(scale, fabs((double)want[o][i]));
        assert_true(scale > 0.1); /* not all zeros */
        for (int64_t i = 0; i < n[o]; i++)
            if (!(fabs((double)got[o][i] - (double)want[o][i]) <= 1e-5 * scale))
                fail_msg("output %d element %lld: C %.9g, interpreter %.9g", o, (long long)i,
                         (double)got[o][i], (double)want[o][i]);
        /* split k adds its chunks in one order whatever the thread count */
        assert_memory_equal(got[o], one[o], sizeof(float) * (size_t)n[o]);
        free(want[o]);
        free(got[o]);
        free(one[o]);
    }
}

/* ---- pooling --------------------------------------------------------------------------- */

typedef struct {
    bool max;
    int64_t k, s, p;
} pool_arg;

static kiln_tensor *pool(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                         const void *arg)
{
    (void)w;
    (void)b;
    const pool_arg *a = arg;
    return a->max ? kiln_max_pool2d(g, x, a->k, a->s, a->p)
                  : kiln_avg_pool2d(g, x, a->k, a->s, a->p);
}

static kiln_tensor *adaptive(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                             const void *arg)
{
    (void)w;
    (void)b;
    const int64_t *o = arg;
    return kiln_adaptive_avg_pool2d(g, x, o[0], o[1]);
}

static void test_pooling_matches_pytorch(void **state)
{
    (void)state;
    check("max_tiled", 4, (int64_t[]){2, 3, 6, 6}, 0, NULL, false, pool,
          &(pool_arg){true, 2, 0, 0});
    check("max_tiled_floor", 4, (int64_t[]){1, 2, 7, 5}, 0, NULL, false, pool,
          &(pool_arg){true, 2, 0, 0});
    check("max_padded", 4, (int64_t[]){1, 2, 7, 7}, 0, NULL, false, pool,
          &(pool_arg){true, 3, 2, 1});
    check("max_overlap_unbatched", 3, (int64_t[]){2, 5, 5}, 0, NULL, false, pool,
          &(pool_arg){true, 2, 1, 0});
    check("avg_tiled", 4, (int64_t[]){2, 3, 6, 6}, 0, NULL, false, pool,
          &(pool_arg){false, 3, 0, 0});
    check("avg_padded", 4, (int64_t[]){1, 2, 7, 7}, 0, NULL, false, pool,
          &(pool_arg){false, 3, 2, 1});
    check("avg_overlap", 4, (int64_t[]){1, 2, 5, 5}, 0, NULL, false, pool,
          &(pool_arg){false, 2, 1, 0});
    check("adaptive_global", 4, (int64_t[]){2, 3, 6, 5}, 0, NULL, false, adaptive,
          (int64_t[]){1, 1});
    check("adaptive_uneven", 4, (int64_t[]){1, 2, 7, 5}, 0, NULL, false, adaptive,
          (int64_t[]){3, 2});
    check("adaptive_divisible", 4, (int64_t[]){1, 2, 8, 8}, 0, NULL, false, adaptive,
          (int64_t[]){4, 2});
}

/* Tied maxima: F.max_pool2d sends a window's gradient to its first maximum
 * (the index it returns), as torch 1.13 printed for these inputs; tiled,
 * overlapping and padded windows, f32 and f64, on the interpreter and C. */
static void test_max_pool_ties(void **state)
{
    (void)state;
    static const double tied[8] = {1, 1, 3, 2, 1, 0, 3, 3}, ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    static const double ct[4] = {5, 7, 3, 4}, ct4[4] = {1, 2, 3, 4};
    const struct {
        const double *x, *ct;
        int64_t h, w, k, s, p;
        double y[4], dx[9];
    } cases[] = {
        {tied, ct, 2, 4, 2, 0, 0, {1, 3}, {5, 0, 7, 0, 0, 0, 0, 0}},
        {ones, ct4, 3, 3, 2, 1, 0, {1, 1, 1, 1}, {1, 2, 0, 3, 4, 0, 0, 0, 0}},
        {ones, ct4, 3, 3, 3, 2, 1, {1, 1, 1, 1}, {1, 2, 0, 3, 4, 0, 0, 0, 0}},
    };
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 4; v++) {
            kiln_dtype dt = v & 1 ? KILN_F64 : KILN_F32;
            kiln_graph *g = ku_graph_new();
            const int64_t xd[4] = {1, 1, cases[c].h, cases[c].w};
            kiln_tensor *x = kiln_param(g, "x", KILN_F64, 4, xd, kiln_init_data(cases[c].x));
            kiln_tensor *y =
                kiln_max_pool2d(g, kiln_cast(g, x, dt), cases[c].k, cases[c].s, cases[c].p);
            int64_t ny = ir_numel(y), nx = cases[c].h * cases[c].w;
            kiln_tensor *ctt = kiln_tensor_from(g, KILN_F64, y->rank, y->dims, cases[c].ct);
            kiln_tensor *loss =
                kiln_sum(g, kiln_mul(g, kiln_cast(g, y, KILN_F64), ctt), KILN_ALL, false);
            kiln_tensor *dx = NULL;
            assert_int_equal(kiln_grad(g, loss, 1, &x, NULL, &dx), KILN_OK);
            kiln_tensor *outs[2] = {kiln_cast(g, y, KILN_F64), dx};
            assert_int_equal(kiln_entry(g, "f", 2, outs, (const char *[]){"y", "dx"}), KILN_OK);
            kiln_module *m = ku_compile_for(g, v & 2 ? KILN_TARGET_C : KILN_TARGET_INTERP);
            assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
            double got[9];
            assert_int_equal(kiln_module_get(m, "y", got, sizeof(double) * (size_t)ny), KILN_OK);
            assert_memory_equal(got, cases[c].y, sizeof(double) * (size_t)ny);
            assert_int_equal(kiln_module_get(m, "dx", got, sizeof(double) * (size_t)nx), KILN_OK);
            assert_memory_equal(got, cases[c].dx, sizeof(double) * (size_t)nx);
            kiln_module_free(m);
            kiln_graph_free(g);
        }
}

/* ---- normalization and attention ------------------------------------------------------ */

typedef struct {
    bool training;
    double momentum, eps;
} bn_arg;

static kiln_tensor *batch_norm(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                               const void *arg)
{
    const bn_arg *a = arg;
    int64_t c = x->dims[1];
    double rm[8], rv[8]; /* tests/ref/layers_table.py's starting statistics */
    for (int64_t i = 0; i < c; i++) {
        rm[i] = (double)(i % 5 - 2) / 4;
        rv[i] = 0.5 + (double)i / 8;
    }
    kiln_tensor *m = kiln_param(g, "rm", KILN_F64, 1, &c, kiln_init_data(rm));
    kiln_tensor *v = kiln_param(g, "rv", KILN_F64, 1, &c, kiln_init_data(rv));
    return kiln_batch_norm(g, x, w, b, m, v, a->training, a->momentum, a->eps);
}

static kiln_tensor *group_norm(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                               const void *arg)
{
    const double *a = arg; /* groups, eps */
    return kiln_group_norm(g, x, (int64_t)a[0], w, b, a[1]);
}

typedef struct {
    int kind; /* 0 none, 1 causal, 2 the table's mask */
    double scale;
} sdpa_arg;

static kiln_tensor *attention(kiln_graph *g, kiln_tensor *q, kiln_tensor *k, kiln_tensor *v,
                              const void *arg)
{
    const sdpa_arg *a = arg;
    kiln_tensor *mask = NULL;
    if (a->kind == 2) { /* attend where (3i + 2j) mod 5 != 0, and to j = 0 */
        int64_t l = q->dims[q->rank - 2], s = k->dims[k->rank - 2];
        bool *mv = malloc((size_t)(l * s));
        assert_non_null(mv);
        for (int64_t i = 0; i < l; i++)
            for (int64_t j = 0; j < s; j++)
                mv[i * s + j] = (3 * i + 2 * j) % 5 != 0 || j == 0;
        mask = kiln_tensor_from(g, KILN_BOOL, 2, (const int64_t[]){l, s}, mv);
        free(mv);
    }
    return kiln_scaled_dot_product_attention(g, q, k, v, mask, a->kind == 1, a->scale);
}

static void test_norms_match_pytorch(void **state)
{
    (void)state;
    check("bn_train", 4, (int64_t[]){4, 3, 2, 3}, 1, (int64_t[]){3}, true, batch_norm,
          &(bn_arg){true, 0.1, 1e-5});
    check("bn_train_2d", 2, (int64_t[]){5, 4}, 1, (int64_t[]){4}, true, batch_norm,
          &(bn_arg){true, 0.3, 1e-3});
    check("bn_eval", 4, (int64_t[]){2, 3, 2, 2}, 1, (int64_t[]){3}, true, batch_norm,
          &(bn_arg){false, 0.1, 1e-5});
    check("gn", 4, (int64_t[]){2, 6, 3, 2}, 1, (int64_t[]){6}, true, group_norm,
          (double[]){3, 1e-5});
    check("gn_per_channel", 3, (int64_t[]){2, 4, 5}, 1, (int64_t[]){4}, true, group_norm,
          (double[]){4, 1e-3});
}

/* The same values through the fused backward (sdpa_stats, sdpa_grad), which
 * autodiff takes for every size when KILN_SDPA_FUSED_MIN is 1. */
static void test_attention_fused_backward_matches_pytorch(void **state)
{
    (void)state;
    setenv("KILN_SDPA_FUSED_MIN", "1", 1);
    check3("sdpa", (shape[3]){{4, {2, 2, 4, 3}}, {4, {2, 2, 5, 3}}, {4, {2, 2, 5, 4}}}, attention,
           &(sdpa_arg){0, 0});
    check3("sdpa_causal", (shape[3]){{4, {2, 3, 4, 2}}, {4, {2, 3, 4, 2}}, {4, {2, 3, 4, 3}}},
           attention, &(sdpa_arg){1, 0});
    unsetenv("KILN_SDPA_FUSED_MIN");
}

static void test_attention_matches_pytorch(void **state)
{
    (void)state;
    check3("sdpa", (shape[3]){{4, {2, 2, 4, 3}}, {4, {2, 2, 5, 3}}, {4, {2, 2, 5, 4}}}, attention,
           &(sdpa_arg){0, 0});
    check3("sdpa_causal", (shape[3]){{4, {2, 3, 4, 2}}, {4, {2, 3, 4, 2}}, {4, {2, 3, 4, 3}}},
           attention, &(sdpa_arg){1, 0});
    check3("sdpa_mask_scale", (shape[3]){{3, {3, 4, 3}}, {3, {3, 5, 3}}, {3, {3, 5, 2}}}, attention,
           &(sdpa_arg){2, 0.5});
}

/* Attention spelled out (matmul, masked softmax, matmul) with PyTorch's
 * _safe_softmax: a row that attends to no key gives 0. */
static kiln_tensor *attention_composite(kiln_graph *g, kiln_tensor *const x[3], kiln_tensor *mask)
{
    double scale = 1 / sqrt((double)x[0]->dims[x[0]->rank - 1]);
    kiln_tensor *s =
        kiln_mul(g, kiln_matmul(g, x[0], kiln_transpose(g, x[1], -2, -1)), kiln_scalar(g, scale));
    s = kiln_where(g, mask, s, kiln_scalar(g, -(double)INFINITY));
    kiln_tensor *p = kiln_where(g, mask, kiln_softmax(g, s, -1), kiln_scalar(g, 0));
    return kiln_matmul(g, p, x[2]);
}

/* The fused op (one sdpa node, the mask read in place) and the composite
 * (attention_composite) agree within 1e-5, forward and the gradients of q,
 * k and v: no mask, causal, a [T, S] mask with a row that attends to
 * nothing and a [B, 1, T, S] mask broadcast over the heads; the backward
 * through the ordinary nodes and through the fused sdpa_stats / sdpa_grad. */
static void test_attention_fused_matches_composite(void **state)
{
    (void)state;
    for (int fused_bw = 0; fused_bw < 2; fused_bw++)
        for (int how = 0; how < 4; how++) {
            if (fused_bw)
                setenv("KILN_SDPA_FUSED_MIN", "1", 1);
            kiln_graph *g = ku_graph_new();
            kiln_tensor *x[3] = {
                kiln_param(g, "q", KILN_F32, KILN_SHAPE(2, 3, 5, 4), kiln_init_normal(0, 1)),
                kiln_param(g, "k", KILN_F32, KILN_SHAPE(2, 3, 6, 4), kiln_init_normal(0, 1)),
                kiln_param(g, "v", KILN_F32, KILN_SHAPE(2, 3, 6, 3), kiln_init_normal(0, 1))};
            /* a pattern with some keys masked on every row, row 2 all masked */
            bool bits[2 * 5 * 6];
            for (int i = 0; i < 2 * 5 * 6; i++)
                bits[i] = (i * 7 + i / 6) % 3 != 0 && (i / 6) % 5 != 2;
            kiln_tensor *mask =
                how == 0   ? kiln_ones(g, KILN_BOOL, 2, (const int64_t[]){5, 6})
                : how == 1 ? kiln_tril(g, kiln_ones(g, KILN_BOOL, 2, (const int64_t[]){5, 6}), 0)
                : how == 2 ? kiln_tensor_from(g, KILN_BOOL, 2, (const int64_t[]){5, 6}, bits)
                           : kiln_tensor_from(g, KILN_BOOL, 4, (const int64_t[]){2, 1, 5, 6}, bits);
            kiln_tensor *fused = kiln_scaled_dot_product_attention(
                g, x[0], x[1], x[2], how >= 2 ? mask : NULL, how == 1, 0);
            kiln_tensor *comp = attention_composite(g, x, mask);
            assert_int_equal(fused->op, IR_SDPA);
            assert_int_equal(fused->nin, how >= 2 ? 4 : 3);
            kiln_tensor *w = kiln_sin(g, kiln_arange(g, KILN_F32, 0, 2 * 3 * 5 * 3, 1));
            w = kiln_reshape(g, w, 4, (const int64_t[]){2, 3, 5, 3});
            kiln_tensor *outs[8] = {fused, comp};
            kiln_grad(g, kiln_sum(g, kiln_mul(g, fused, w), KILN_ALL, false), 3, x, NULL, outs + 2);
            kiln_grad(g, kiln_sum(g, kiln_mul(g, comp, w), KILN_ALL, false), 3, x, NULL, outs + 5);
            assert_int_equal(kiln_entry(g, "f", 8, outs, NULL), KILN_OK);
            unsetenv("KILN_SDPA_FUSED_MIN");
            kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
            assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
            for (int o = 0; o < 4; o++) {
                int64_t n = ir_numel(outs[o == 0 ? 0 : o + 1]);
                float *a = malloc(sizeof(float) * (size_t)n);
                float *b = malloc(sizeof(float) * (size_t)n);
                ku_get_f32(m, o == 0 ? 0 : o + 1, a, (size_t)n);
                ku_get_f32(m, o == 0 ? 1 : o + 4, b, (size_t)n);
                for (int64_t i = 0; i < n; i++)
                    if (!(fabsf(a[i] - b[i]) <= 1e-5f * fabsf(b[i]) + 1e-6f))
                        fail_msg("mask %d, fused backward %d, output %d[%lld]: fused %.9g, "
                                 "composite %.9g",
                                 how, fused_bw, o, (long long)i, (double)a[i], (double)b[i]);
                if (how == 2 && o == 0) /* row 2 attends to nothing: 0, as PyTorch */
                    for (int64_t i = 0; i < n; i++)
                        if (i / 3 % 5 == 2 && a[i] != 0)
                            fail_msg("a row with no key gives %.9g, not 0", (double)a[i]);
                free(a);
                free(b);
            }
            kiln_module_free(m);
            kiln_graph_free(g);
        }
}

typedef struct {
    int n;
    int64_t labels[8], ignore;
    double smoothing;
} ce_arg;

static kiln_tensor *cross_entropy(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                                  const void *arg)
{
    (void)w;
    (void)b;
    const ce_arg *a = arg;
    kiln_tensor *y = kiln_tensor_from(g, KILN_I64, 1, (const int64_t[]){a->n}, a->labels);
    return kiln_cross_entropy_ex(g, x, y, a->ignore, a->smoothing);
}

/* F.cross_entropy with ignore_index and label_smoothing */
static void test_cross_entropy_options_match_pytorch(void **state)
{
    (void)state;
    check("ce_smooth", 2, (int64_t[]){4, 5}, 0, NULL, false, cross_entropy,
          &(ce_arg){4, {1, -100, 4, 0}, -100, 0.1});
    check("ce_ignore_smooth", 2, (int64_t[]){5, 3}, 0, NULL, false, cross_entropy,
          &(ce_arg){5, {2, 0, 1, 2, 0}, 2, 0.25});
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(2));
    assert_null(kiln_cross_entropy_ex(g, x, y, -100, 1.5));
    assert_graph_error(g, KILN_ERR_INVALID,
                       "kiln_cross_entropy_ex: label_smoothing must be between 0.0 and 1.0. Got: "
                       "1.5");
    kiln_graph_free(g);
}

/* The running statistics move once per run of every entry that depends on a
 * training batch norm (a train step and a second entry alike), and not for
 * an entry that does not; eval mode registers nothing. */
static void test_batch_norm_updates_per_entry(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4, 2, 3));
    kiln_tensor *rm = kiln_param(g, "bn.running_mean", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_tensor *rv = kiln_param(g, "bn.running_var", KILN_F32, KILN_SHAPE(2), kiln_init_ones());
    kiln_tensor *w = kiln_param(g, "bn.weight", KILN_F32, KILN_SHAPE(2), kiln_init_ones());
    kiln_tensor *y = kiln_batch_norm(g, x, w, NULL, rm, rv, true, 0.5, 1e-5);
    kiln_tensor *loss = kiln_mean(g, kiln_mul(g, y, y), KILN_ALL, false);
    assert_int_equal(kiln_train_step(g, "train", loss, kiln_sgd(0.1, 0, 0)), KILN_OK);
    assert_int_equal(kiln_entry(g, "look", 1, &y, (const char *[]){"y"}), KILN_OK);
    kiln_tensor *z = kiln_mul(g, x, kiln_scalar(g, 2));
    assert_int_equal(kiln_entry(g, "other", 1, &z, (const char *[]){"z"}), KILN_OK);
    kiln_tensor *ye = kiln_batch_norm(g, x, NULL, NULL, rm, rv, false, 0.5, 1e-5);
    assert_int_equal(kiln_entry(g, "eval", 1, &ye, (const char *[]){"ye"}), KILN_OK);
    ku_assert_ok(g);
    assert_int_equal(g->entries[1].n, 3); /* look: y, then both running statistics */
    assert_string_equal(g->entries[1].output_names[1], "look.new.bn.running_mean");
    assert_string_equal(g->entries[1].output_names[2], "look.new.bn.running_var");
    assert_int_equal(g->entries[2].n, 1);
    assert_int_equal(g->entries[3].n, 1);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    float xv[24];
    for (int i = 0; i < 24; i++)
        xv[i] = (float)(i % 5) - 1.5f * (float)(i % 2);
    assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
    double mean[2] = {0, 0}; /* the batch mean per channel, from the data */
    for (int n = 0; n < 4; n++)
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 3; i++)
                mean[c] += (double)xv[(n * 2 + c) * 3 + i] / 12.0;
    const char *entries[4] = {"other", "eval", "train", "look"};
    const double share[4] = {0, 0, 0.5, 0.75}; /* of the batch mean in running_mean after */
    for (int r = 0; r < 4; r++) {
        float got[2];
        assert_int_equal(kiln_module_run(m, entries[r]), KILN_OK);
        assert_int_equal(kiln_module_get(m, "bn.running_mean", got, sizeof got), KILN_OK);
        for (int c = 0; c < 2; c++)
            if (fabs((double)got[c] - share[r] * mean[c]) > 1e-6)
                fail_msg("after %s: running_mean[%d] = %g, want %g", entries[r], c, (double)got[c],
                         share[r] * mean[c]);
    }
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* ---- errors: PyTorch's texts --------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_tensor *x, *w3, *w4, *x2, *small, *xi, *xd, *w_bad, *b7, *empty;
    /* each error poisons its graph: a fresh one per case */
#define EXPECT(call, status, text)                                                                 \
    do {                                                                                           \
        assert_null(call);                                                                         \
        assert_graph_error(g, status, text);                                                       \
        kiln_graph_free(g);                                                                        \
        g = NULL;                                                                                  \
    } while (0)
#define FRESH()                                                                                    \
    g = ku_graph_new();                                                                            \
    x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 4, 5, 5));                                      \
    w3 = kiln_input(g, "w3", KILN_F32, KILN_SHAPE(8, 3, 3, 3));                                    \
    w4 = kiln_input(g, "w4", KILN_F32, KILN_SHAPE(8, 4, 3, 3));                                    \
    x2 = kiln_input(g, "x2", KILN_F32, KILN_SHAPE(2, 3));                                          \
    small = kiln_input(g, "small", KILN_F32, KILN_SHAPE(2, 3, 2, 2));                              \
    xi = kiln_input(g, "xi", KILN_I64, KILN_SHAPE(2, 4, 5, 5));                                    \
    xd = kiln_input(g, "xd", KILN_F64, KILN_SHAPE(2, 4, 5, 5));                                    \
    w_bad = kiln_input(g, "wbad", KILN_F32, KILN_SHAPE(8, 4, 3));                                  \
    b7 = kiln_input(g, "b7", KILN_F32, KILN_SHAPE(7));                                             \
    empty = kiln_input(g, "empty", KILN_F32, KILN_SHAPE(2, 4, 0, 5))
    kiln_conv_opts d = {0};
    FRESH();
    EXPECT(kiln_conv2d(g, x, w3, NULL, d), KILN_ERR_SHAPE,
           "kiln_conv2d: Given groups=1, weight of size [8, 3, 3, 3], expected input[2, 4, 5, 5] "
           "to have 3 channels, but got 4 channels instead");
    FRESH();
    EXPECT(kiln_conv2d(g, x2, w3, NULL, d), KILN_ERR_SHAPE,
           "kiln_conv2d: Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input "
           "of size: [2, 3]");
    FRESH();
    EXPECT(kiln_conv2d(g, small, w3, NULL, d), KILN_ERR_SHAPE,
           "kiln_conv2d: Calculated padded input size per channel: (2 x 2). Kernel size: (3 x "
           "3). Kernel size can't be greater than actual input size");
    FRESH();
    EXPECT(kiln_conv2d(g, x, w4, NULL, (kiln_conv_opts){.groups = 3}), KILN_ERR_SHAPE,
           "kiln_conv2d: Given groups=3, expected weight to be divisible by 3 at dimension 0, but "
           "got weight of size [[8, 4, 3, 3]] instead");
    FRESH();
    EXPECT(kiln_conv2d(g, x, w4, b7, d), KILN_ERR_SHAPE,
           "kiln_conv2d: Given weight of size [8, 4, 3, 3], expected bias to be 1-dimensional "
           "with 8 elements, but got bias of size [7] instead");
    FRESH();
    EXPECT(kiln_conv2d(g, x, w4, NULL, (kiln_conv_opts){.stride = {-1, 1}}), KILN_ERR_INVALID,
           "kiln_conv2d: non-positive stride is not supported");
    FRESH();
    EXPECT(kiln_conv2d(g, x, w4, NULL, (kiln_conv_opts){.padding = {0, -1}}), KILN_ERR_INVALID,
           "kiln_conv2d: negative padding is not supported");
    FRESH();
    EXPECT(kiln_conv2d(g, x, w4, NULL, (kiln_conv_opts){.dilation = {-2, 1}}), KILN_ERR_INVALID,
           "kiln_conv2d: non-positive dilation is not supported");
    FRESH();
    EXPECT(kiln_conv2d(g, x, w4, NULL, (kiln_conv_opts){.groups = -1}), KILN_ERR_INVALID,
           "kiln_conv2d: non-positive groups is not supported");
    FRESH();
    EXPECT(kiln_conv2d(g, x, w_bad, NULL, d), KILN_ERR_SHAPE,
           "kiln_conv2d: Expected 3-dimensional input for 3-dimensional weight [8, 4, 3], but got "
           "4-dimensional input of size [2, 4, 5, 5] instead");
    FRESH();
    EXPECT(kiln_conv2d(g, xd, w4, NULL, d), KILN_ERR_DTYPE,
           "kiln_conv2d: expected scalar type Double but found Float");
    FRESH();
    EXPECT(kiln_conv2d(g, xi, w4, NULL, d), KILN_ERR_DTYPE,
           "kiln_conv2d: \"slow_conv2d_cpu\" not implemented for 'Long'");
    FRESH();
    EXPECT(kiln_max_pool2d(g, x, 3, 0, 2), KILN_ERR_INVALID,
           "kiln_max_pool2d: pad should be at most half of kernel size, but got pad=2 and "
           "kernel_size=3");
    FRESH();
    EXPECT(kiln_avg_pool2d(g, small, 3, 0, 0), KILN_ERR_SHAPE,
           "kiln_avg_pool2d: Given input size: (3x2x2). Calculated output size: (3x0x0). Output "
           "size is too small");
    FRESH();
    EXPECT(kiln_max_pool2d(g, x2, 2, 0, 0), KILN_ERR_SHAPE,
           "kiln_max_pool2d: non-empty 3D or 4D (batch mode) tensor expected for input");
    FRESH();
    EXPECT(kiln_max_pool2d(g, empty, 2, 0, 0), KILN_ERR_SHAPE,
           "kiln_max_pool2d: non-empty 3D or 4D (batch mode) tensor expected for input");
    FRESH();
    EXPECT(kiln_max_pool2d(g, x, 0, 0, 0), KILN_ERR_INVALID,
           "kiln_max_pool2d: max_pool2d: kernel_size must be greater than zero, but got kH: 0 "
           "kW: 0");
    FRESH();
    EXPECT(kiln_max_pool2d(g, x, 2, -1, 0), KILN_ERR_INVALID,
           "kiln_max_pool2d: stride should not be zero");
    FRESH();
    EXPECT(kiln_avg_pool2d(g, xi, 2, 0, 0), KILN_ERR_DTYPE,
           "kiln_avg_pool2d: \"avg_pool2d\" not implemented for 'Long'");
    FRESH();
    EXPECT(kiln_adaptive_avg_pool2d(g, x2, 1, 1), KILN_ERR_SHAPE,
           "kiln_adaptive_avg_pool2d: adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got "
           "[2, 3]");
    FRESH();
    EXPECT(kiln_adaptive_avg_pool2d(g, x, 0, 1), KILN_ERR_INVALID,
           "kiln_adaptive_avg_pool2d: adaptive_avg_pool2d(): output_size must be positive, but "
           "got [0, 1]");
    FRESH();
    EXPECT(kiln_adaptive_avg_pool2d(g, xi, 1, 1), KILN_ERR_DTYPE,
           "kiln_adaptive_avg_pool2d: \"adaptive_avg_pool2d\" not implemented for 'Long'");
    FRESH();
    EXPECT(kiln_adaptive_avg_pool2d(g, empty, 1, 1), KILN_ERR_SHAPE,
           "kiln_adaptive_avg_pool2d: adaptive_avg_pool2d(): Expected input to have non-zero size "
           "for non-batch dimensions, but input has sizes [2, 4, 0, 5] with dimension 2 being "
           "empty");
    FRESH();
    EXPECT(kiln_batch_norm(g, kiln_input(g, "one", KILN_F32, KILN_SHAPE(1, 3)), NULL, NULL, NULL,
                           NULL, true, 0.1, 1e-5),
           KILN_ERR_INVALID,
           "kiln_batch_norm: Expected more than 1 value per channel when training, got input size "
           "torch.Size([1, 3])");
    FRESH();
    EXPECT(kiln_batch_norm(g, x, b7, NULL, NULL, NULL, true, 0.1, 1e-5), KILN_ERR_SHAPE,
           "kiln_batch_norm: weight should contain 4 elements not 7");
    FRESH();
    EXPECT(kiln_batch_norm(g, x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5), KILN_ERR_INVALID,
           "kiln_batch_norm: running_mean and running_var must be defined in evaluation mode");
    FRESH();
    EXPECT(kiln_batch_norm(g, xi, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), KILN_ERR_DTYPE,
           "kiln_batch_norm: \"batch_norm\" not implemented for 'Long'");
    FRESH();
    EXPECT(kiln_batch_norm(g, b7, NULL, NULL, NULL, NULL, true, 0.1, 1e-5), KILN_ERR_SHAPE,
           "kiln_batch_norm: Expected 2D or more input (got 1D input of size [7])");
    FRESH();
    {
        kiln_tensor *rm = kiln_input(g, "rm", KILN_F32, KILN_SHAPE(4));
        kiln_tensor *rv = kiln_input(g, "rv", KILN_F32, KILN_SHAPE(4));
        EXPECT(kiln_batch_norm(g, x, NULL, NULL, rm, rv, true, 0.1, 1e-5), KILN_ERR_INVALID,
               "kiln_batch_norm: running_mean must be a param (the training update assigns it)");
    }
    FRESH();
    {
        kiln_tensor *rm = kiln_param(g, "rm", KILN_F32, KILN_SHAPE(4), kiln_init_zeros());
        EXPECT(kiln_batch_norm(g, x, NULL, NULL, rm, NULL, true, 0.1, 1e-5), KILN_ERR_INVALID,
               "kiln_batch_norm: running_mean and running_var must be given together");
    }
    FRESH();
    EXPECT(kiln_group_norm(g, x, 3, NULL, NULL, 1e-5), KILN_ERR_SHAPE,
           "kiln_group_norm: Expected number of channels in input to be divisible by num_groups, "
           "but got input of shape [2, 4, 5, 5] and num_groups=3");
    FRESH();
    EXPECT(kiln_group_norm(g, x, 2, b7, NULL, 1e-5), KILN_ERR_SHAPE,
           "kiln_group_norm: weight should contain 4 elements not 7");
    FRESH();
    EXPECT(kiln_group_norm(g, b7, 1, NULL, NULL, 1e-5), KILN_ERR_SHAPE,
           "kiln_group_norm: Expected at least 2 dimensions for input tensor but received 1");
    FRESH();
    EXPECT(kiln_group_norm(g, xi, 2, NULL, NULL, 1e-5), KILN_ERR_DTYPE,
           "kiln_group_norm: \"group_norm\" not implemented for 'Long'");
    FRESH();
    EXPECT(kiln_scaled_dot_product_attention(g, x, x, x, kiln_ones(g, KILN_BOOL, KILN_SHAPE(5, 5)),
                                             true, 0),
           KILN_ERR_INVALID,
           "kiln_scaled_dot_product_attention: _scaled_dot_product_attention: Explicit attn_mask "
           "should not be set when is_causal=True");
    FRESH();
    EXPECT(kiln_scaled_dot_product_attention(g, x, x, small, NULL, false, 0), KILN_ERR_SHAPE,
           "kiln_scaled_dot_product_attention: key and value must have the same sequence "
           "length, but got 5 and 2");
    FRESH();
    EXPECT(kiln_scaled_dot_product_attention(g, x, x2, x2, NULL, false, 0), KILN_ERR_SHAPE,
           "kiln_scaled_dot_product_attention: query and key must have the same embedding size, "
           "but got 5 and 3");
    FRESH();
    EXPECT(kiln_scaled_dot_product_attention(g, x, x, xd, NULL, false, 0), KILN_ERR_DTYPE,
           "kiln_scaled_dot_product_attention: Expected query, key, and value to have the same "
           "floating dtype, but got query.dtype: Float key.dtype: Float and value.dtype: Double "
           "instead.");
    FRESH();
    EXPECT(kiln_scaled_dot_product_attention(g, x, x, x, x, false, 0), KILN_ERR_DTYPE,
           "kiln_scaled_dot_product_attention: attn_mask must be a bool tensor (true: attend), but "
           "got Float");
    FRESH();
    EXPECT(kiln_scaled_dot_product_attention(g, x, x, x, kiln_ones(g, KILN_BOOL, KILN_SHAPE(5, 4)),
                                             false, 0),
           KILN_ERR_SHAPE,
           "kiln_scaled_dot_product_attention: The size of tensor a (5) must match the size of "
           "tensor b (4) at non-singleton dimension 3");
    FRESH();
    EXPECT(kiln_scaled_dot_product_attention(g, b7, x, x, NULL, false, 0), KILN_ERR_SHAPE,
           "kiln_scaled_dot_product_attention: query must have at least 2 dimensions (..., L, E), "
           "but got 1D");
    FRESH();
    EXPECT(kiln_conv1d(g, x, w3, NULL, d), KILN_ERR_SHAPE,
           "kiln_conv1d: Expected 2D (unbatched) or 3D (batched) input to conv1d, but got input "
           "of size: [2, 4, 5, 5]");
    FRESH();
    EXPECT(kiln_conv1d(g, kiln_input(g, "l", KILN_F32, KILN_SHAPE(2, 3, 2)),
                       kiln_input(g, "k", KILN_F32, KILN_SHAPE(4, 3, 3)), NULL, d),
           KILN_ERR_SHAPE,
           "kiln_conv1d: Calculated padded input size per channel: (2). Kernel size: (3). Kernel "
           "size can't be greater than actual input size");
    FRESH();
    EXPECT(kiln_conv1d(g, kiln_input(g, "l", KILN_F32, KILN_SHAPE(2, 3, 9)), w3, NULL, d),
           KILN_ERR_SHAPE,
           "kiln_conv1d: Expected 4-dimensional input for 4-dimensional weight [8, 3, 3, 3], but "
           "got 3-dimensional input of size [2, 3, 9] instead");
    /* a max pool of integers pads with the dtype's least value */
    FRESH();
    assert_shape(kiln_max_pool2d(g, xi, 3, 2, 1), 2, 4, 3, 3);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static int setup(void **state)
{
    (void)state;
    table = ku_read_file(KILN_SOURCE_DIR "/tests/data/layers_table.txt", NULL);
    return table ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(table);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_matches_pytorch),
        cmocka_unit_test(test_conv1d_matches_pytorch),
        cmocka_unit_test(test_conv2d_f32_and_shapes),
        cmocka_unit_test(test_conv2d_f32_implicit_gemm),
        cmocka_unit_test(test_pooling_matches_pytorch),
        cmocka_unit_test(test_max_pool_ties),
        cmocka_unit_test(test_norms_match_pytorch),
        cmocka_unit_test(test_attention_matches_pytorch),
        cmocka_unit_test(test_attention_fused_backward_matches_pytorch),
        cmocka_unit_test(test_attention_fused_matches_composite),
        cmocka_unit_test(test_batch_norm_updates_per_entry),
        cmocka_unit_test(test_cross_entropy_options_match_pytorch),
        cmocka_unit_test(test_errors),
    };
    return ku_exit(cmocka_run_group_tests(tests, setup, teardown));
}
