/* test_gcc.c - generated code compiled by gcc (KILN_CC=gcc, what `cc` is on a
 * machine without clang): OpenMP kernels run on libgomp, and freeing their
 * modules, then exiting, must not crash (the runtime was unloaded under its
 * own worker threads). Skips (77) where gcc is not installed. */
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
