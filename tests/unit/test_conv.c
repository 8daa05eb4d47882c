/*
 * test_conv.c - kiln_conv2d, kiln_max_pool2d, kiln_avg_pool2d and
 * kiln_adaptive_avg_pool2d against PyTorch (tests/data/conv_table.txt, made
 * by tests/ref/conv_table.py in float64): every output and the gradients of
 * sum(y * ct) with respect to the input (and weight, bias), on the
 * interpreter and the C target (test_conv_cuda: the GPU), within 1e-10; and
 * every error path with PyTorch's text.
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
    char key[96];
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

/* One case: y = f(x, w, b); entry outputs y and the gradients of sum(y*ct)
 * with respect to x, w, b (those given). */
typedef kiln_tensor *(*build_fn)(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                                 const void *arg);

static void check(const char *name, int xr, const int64_t *xd, int wr, const int64_t *wd, bool bias,
                  build_fn f, const void *arg)
{
    static const kiln_target targets[2] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    int64_t nx = numel(xr, xd), nw = wr ? numel(wr, wd) : 0, nb = bias ? wd[0] : 0;
    double *xv = form(nx, 37, 101, 50, 64), *wv = form(nw, 53, 97, 48, 64);
    double *bv = malloc(sizeof(double) * (size_t)(nb ? nb : 1));
    assert_non_null(bv);
    for (int64_t i = 0; i < nb; i++)
        bv[i] = (double)(i % 7 - 3) / 8;
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *x = kiln_param(g, "x", KILN_F64, xr, xd, kiln_init_data(xv));
        kiln_tensor *w = wr ? kiln_param(g, "w", KILN_F64, wr, wd, kiln_init_data(wv)) : NULL;
        kiln_tensor *b = bias ? kiln_param(g, "b", KILN_F64, 1, wd, kiln_init_data(bv)) : NULL;
        kiln_tensor *y = f(g, x, w, b, arg);
        ku_assert_ok(g);
        int64_t ny = ir_numel(y);
        double *ctv = form(ny, 29, 89, 44, 32);
        kiln_tensor *ct = kiln_tensor_from(g, KILN_F64, y->rank, y->dims, ctv);
        kiln_tensor *loss = kiln_sum(g, kiln_mul(g, y, ct), KILN_ALL, false);
        kiln_tensor *wrt[3] = {x, w, b}, *grads[3] = {NULL, NULL, NULL};
        int nwrt = 1 + (w != NULL) + (b != NULL);
        assert_int_equal(kiln_grad(g, loss, nwrt, wrt, NULL, grads), KILN_OK);
        kiln_tensor *outs[4] = {y, grads[0], grads[1], grads[2]};
        const char *names[4] = {"y", "dx", "dw", "db"};
        assert_int_equal(kiln_entry(g, "f", 1 + nwrt, outs, names), KILN_OK);
        kiln_module *m = ku_compile_for(g, targets[t]);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        for (int o = 0; o < 1 + nwrt; o++) {
            int64_t n = ir_numel(outs[o]);
            char key[96];
            snprintf(key, sizeof key, "%s.%s", name, names[o]);
            double *want = ref(key, n), *got = malloc(sizeof(double) * (size_t)(n ? n : 1));
            assert_non_null(got);
            assert_int_equal(kiln_module_get(m, names[o], got, sizeof(double) * (size_t)n),
                             KILN_OK);
            for (int64_t i = 0; i < n; i++)
                if (!(fabs(got[i] - want[i]) <= 1e-10 * (1 + fabs(want[i]))))
                    fail_msg("%s on %s: element %lld is %.17g, PyTorch %.17g", key,
                             t ? "C" : "the interpreter", (long long)i, got[i], want[i]);
            free(want);
            free(got);
        }
        kiln_module_free(m);
        kiln_graph_free(g);
        free(ctv);
    }
    free(xv);
    free(wv);
    free(bv);
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
           "kiln_conv2d: Expected 4-dimensional weight for 4-dimensional input [2, 4, 5, 5], but "
           "got 3-dimensional weight of size [8, 4, 3] instead");
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
    /* a max pool of integers pads with the dtype's least value */
    FRESH();
    assert_shape(kiln_max_pool2d(g, xi, 3, 2, 1), 2, 4, 3, 3);
    ku_assert_ok(g);
    kiln_graph_free(g);
}

static int setup(void **state)
{
    (void)state;
    table = ku_read_file(KILN_SOURCE_DIR "/tests/data/conv_table.txt", NULL);
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
        cmocka_unit_test(test_conv2d_f32_and_shapes),
        cmocka_unit_test(test_pooling_matches_pytorch),
        cmocka_unit_test(test_errors),
    };
    return ku_exit(cmocka_run_group_tests(tests, setup, teardown));
}
