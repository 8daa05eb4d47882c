/* test_gcc.c - generated code compiled by gcc (KILN_CC=gcc, what `cc` is on a
 * machine without clang): OpenMP kernels run on libgomp, and freeing their
 * modules, then exiting, must not crash (the runtime was unloaded under its
 * own worker threads); and a training run gives the same params, bit for bit,
 * as with clang (both compile with -ffp-contract=off; the GEMM tiles fuse
 * their mul-adds in both). Skips (77) where gcc is not installed. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool have_gcc(void)
{
    return system("command -v gcc >/dev/null 2>&1") == 0;
}

/* Three modules, each with a parallel loop (a million elements), run and
 * freed in turn; the sums are exact in f32. */
static void test_openmp_modules_free_cleanly(void **state)
{
    (void)state;
    static float xs[1024 * 1024];
    for (int i = 0; i < 1024 * 1024; i++)
        xs[i] = (float)(i % 7);
    for (int r = 1; r <= 3; r++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(1024, 1024));
        kiln_tensor *y = kiln_sum(g, kiln_mul(g, x, kiln_scalar(g, r)), 1, false);
        assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *[]){"y"}), KILN_OK);
        kiln_module *m = NULL;
        kiln_status s = kiln_compile(g, NULL, &m);
        if (s != KILN_OK)
            fail_msg("%s", kiln_graph_error(g));
        assert_non_null(strstr(kiln_module_source(m), "#pragma omp parallel for"));
        assert_int_equal(kiln_module_set(m, "x", xs, sizeof xs), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        float all[1024];
        assert_int_equal(kiln_module_get(m, "y", all, sizeof all), KILN_OK);
        for (int row = 0; row < 2; row++) {
            double want = 0;
            for (int c = 0; c < 1024; c++)
                want += (double)r * (double)((row * 1024 + c) % 7);
            assert_true((double)all[row] == want);
        }
        kiln_module_free(m);
        kiln_graph_free(g);
    }
}

/* Ten Adam steps of an MLP (64-128-128-10, batch 32: the packed GEMM, bias
 * and ReLU epilogues, cross-entropy, reductions) compiled by cc: its params. */
static void train_with(const char *cc, float *params, size_t n)
{
    setenv("KILN_CC", cc, 1);
    const int64_t sizes[] = {64, 128, 128, 10};
    kiln_graph *g = ku_mlp(32, sizes, 3, kiln_adam(1e-2, 0.9, 0.999, 1e-8));
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, NULL, &m);
    if (s != KILN_OK)
        fail_msg("%s: %s", cc, kiln_graph_error(g));
    static float x[32 * 64];
    int64_t y[32];
    for (int step = 0; step < 10; step++) {
        for (int i = 0; i < 32 * 64; i++)
            x[i] = (float)((i * 37 + step * 11) % 23) / 11.0f - 1.0f;
        for (int i = 0; i < 32; i++)
            y[i] = (i * 7 + step) % 10;
        assert_int_equal(kiln_module_set(m, "x", x, sizeof x), KILN_OK);
        assert_int_equal(kiln_module_set(m, "y", y, sizeof y), KILN_OK);
        assert_int_equal(kiln_module_run(m, "train"), KILN_OK);
    }
    const char *names[] = {"w0", "w1", "w2"};
    size_t at = 0, sz[] = {128 * 64, 128 * 128, 10 * 128};
    for (int i = 0; i < 3; i++) {
        assert_true(at + sz[i] <= n);
        assert_int_equal(kiln_module_get(m, names[i], params + at, sz[i] * sizeof(float)), KILN_OK);
        at += sz[i];
    }
    kiln_module_free(m);
    kiln_graph_free(g);
    setenv("KILN_CC", "gcc", 1);
}

static void test_same_params_as_clang(void **state)
{
    (void)state;
    if (system("command -v clang >/dev/null 2>&1") != 0)
        ku_skip("clang is not installed: nothing to compare gcc with");
    enum { N = 128 * 64 + 128 * 128 + 10 * 128 };
    static float with_gcc[N], with_clang[N];
    train_with("gcc", with_gcc, N);
    train_with("clang", with_clang, N);
    for (int i = 0; i < N; i++)
        if (memcmp(&with_gcc[i], &with_clang[i], sizeof(float)) != 0)
            fail_msg("param %d: %.9g with gcc, %.9g with clang", i, (double)with_gcc[i],
                     (double)with_clang[i]);
}

int main(void)
{
    if (!have_gcc()) {
        printf("skipped: gcc is not installed\n");
        return 77;
    }
    setenv("KILN_CC", "gcc", 1);
    unsetenv("KILN_OPENMP");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openmp_modules_free_cleanly),
        cmocka_unit_test(test_same_params_as_clang),
    };
    return ku_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
