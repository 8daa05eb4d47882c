/*
 * test_profile.c - kiln_module_profile: runs and time per entry on every
 * target, calls and time per kernel on the C target (counted by the
 * generated code), the profile printed at module free under KILN_DEBUG=1,
 * and its errors.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Two entries: "f" (three kernels: a softmax over columns, whose reductions
 * walk down columns, which passes/rowfuse.c leaves as kernels of their own) and "g". */
static kiln_graph *two_entries(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4, 8));
    kiln_tensor *s = kiln_softmax(g, x, 0);
    kiln_tensor *n = kiln_neg(g, x);
    assert_int_equal(kiln_entry(g, "f", 1, &s, NULL), KILN_OK);
    assert_int_equal(kiln_entry(g, "g", 1, &n, NULL), KILN_OK);
    return g;
}

static void run_times(kiln_module *m, const char *entry, int n)
{
    float x[32];
    for (int i = 0; i < 32; i++)
        x[i] = (float)i / 8;
    assert_int_equal(kiln_module_set(m, "x", x, sizeof x), KILN_OK);
    for (int i = 0; i < n; i++)
        assert_int_equal(kiln_module_run(m, entry), KILN_OK);
}

static void test_c_target_kernels(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    run_times(m, "f", 3);
    run_times(m, "g", 2);
    char *text = ku_profile_text(m);
    assert_non_null(strstr(text, "kiln profile (c target)\n"));
    assert_int_equal(ku_profile_calls(text, "f"), 3);
    assert_int_equal(ku_profile_calls(text, "g"), 2);
    /* every kernel of the source that ran has its row and count */
    const char *src = kiln_module_source(m);
    int kernels = 0, negs = 0;
    for (const char *at = ku_next_kernel(src); at; at = ku_next_kernel(at)) {
        char name[64];
        assert_int_equal(sscanf(at, "%63[a-z0-9_]", name), 1);
        /* g is the one neg kernel; softmax (f) has no neg */
        bool of_g = strstr(name, "neg") != NULL;
        assert_int_equal(ku_profile_calls(text, name), of_g ? 2 : 3);
        kernels++;
        negs += of_g;
    }
    assert_int_equal(negs, 1);
    assert_true(kernels >= 3);
    free(text);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* One row of the kernel table: name, calls, total ms, mean us, share %. */
typedef struct {
    char name[64];
    long long calls;
    double total_ms, mean_us, share;
} kernel_row;

/* The rows after the "kernel" header; returns how many (at most cap). */
static int kernel_rows(const char *text, kernel_row *rows, int cap)
{
    const char *at = strstr(text, "\nkernel ");
    assert_non_null(at);
    at = strchr(at + 1, '\n');
    int n = 0;
    while (at && at[1] && n < cap) {
        kernel_row *r = &rows[n];
        assert_int_equal(sscanf(at + 1, "%63s %lld %lf %lf %lf%%", r->name, &r->calls, &r->total_ms,
                                &r->mean_us, &r->share),
                         5);
        n++;
        at = strchr(at + 1, '\n');
    }
    return n;
}

/* The total ms in entry name's row. */
static double entry_ms(const char *text, const char *name)
{
    char head[80];
    snprintf(head, sizeof head, "\n%s ", name);
    const char *row = strstr(text, head);
    assert_non_null(row);
    long long runs = 0;
    double total = -1;
    assert_int_equal(sscanf(row + strlen(head), "%lld %lf", &runs, &total), 2);
    return total;
}

/* The per-kernel times are consistent with the entry times: every kernel that
 * ran has a non-zero time, its mean is its total over its calls, the shares
 * add up to 100%, and the kernels of an entry take no more time than the
 * entry's runs (kernel times are measured inside the entry's run). Work big
 * enough (8 MB per kernel) that the printed rounding, 0.0005 ms a value, is a
 * tolerance far below the times themselves; nothing is asserted about speed. */
static void test_c_target_kernel_times(void **state)
{
    (void)state;
    enum { R = 512, C = 4096 };
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(R, C));
    kiln_tensor *s = kiln_softmax(g, x, 0);
    kiln_tensor *n = kiln_neg(g, x);
    assert_int_equal(kiln_entry(g, "f", 1, &s, NULL), KILN_OK);
    assert_int_equal(kiln_entry(g, "g", 1, &n, NULL), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    float *data = malloc(sizeof(float) * R * C);
    assert_non_null(data);
    for (int i = 0; i < R * C; i++)
        data[i] = (float)(i % 97) / 16;
    assert_int_equal(kiln_module_set(m, "x", data, sizeof(float) * R * C), KILN_OK);
    free(data);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(kiln_module_run(m, "g"), KILN_OK);
    char *text = ku_profile_text(m);
    kernel_row rows[16];
    int nrows = kernel_rows(text, rows, 16);
    assert_true(nrows >= 3);
    const double round_ms = 0.0005; /* half the last printed digit of a total */
    double sum_f = 0, sum_g = 0, share = 0;
    int nf = 0, ng = 0;
    for (int i = 0; i < nrows; i++) {
        const kernel_row *r = &rows[i];
        bool of_g = strstr(r->name, "neg") != NULL;
        assert_int_equal(r->calls, of_g ? 2 : 3);
        assert_true(r->total_ms > 0);
        assert_true(r->mean_us > 0);
        /* mean us x calls is the total: both rounded, 0.005 us and 0.0005 ms */
        double diff = r->mean_us * (double)r->calls / 1e3 - r->total_ms;
        if (diff < -(round_ms + 0.005e-3 * (double)r->calls) ||
            diff > round_ms + 0.005e-3 * (double)r->calls)
            fail_msg("%s: mean %.2f us x %lld calls is not the total %.3f ms", r->name, r->mean_us,
                     r->calls, r->total_ms);
        share += r->share;
        if (of_g) {
            sum_g += r->total_ms;
            ng++;
        } else {
            sum_f += r->total_ms;
            nf++;
        }
    }
    assert_int_equal(ng, 1);
    assert_true(share > 100 - 0.05 * nrows && share < 100 + 0.05 * nrows);
    double f_ms = entry_ms(text, "f"), g_ms = entry_ms(text, "g");
    if (sum_f > f_ms + round_ms * (nf + 1))
        fail_msg("the kernels of f took %.3f ms, more than f's %.3f ms", sum_f, f_ms);
    if (sum_g > g_ms + round_ms * (ng + 1))
        fail_msg("the kernels of g took %.3f ms, more than g's %.3f ms", sum_g, g_ms);
    free(text);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_interpreter_entries(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_module *m = ku_compile_for(g, KILN_TARGET_INTERP);
    char *text = ku_profile_text(m); /* nothing ran yet: zero rows */
    assert_int_equal(ku_profile_calls(text, "f"), 0);
    free(text);
    run_times(m, "g", 4);
    text = ku_profile_text(m);
    assert_non_null(strstr(text, "kiln profile (interpreter target)\n"));
    assert_int_equal(ku_profile_calls(text, "f"), 0);
    assert_int_equal(ku_profile_calls(text, "g"), 4);
    assert_non_null(strstr(text, "compile for KILN_TARGET_C for per-kernel times"));
    free(text);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* KILN_DEBUG=1 prints the profile on stderr when a module that ran is freed. */
static void test_debug_prints_at_free(void **state)
{
    (void)state;
    char path[] = "/tmp/kiln-profile-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    kiln_graph *g = two_entries();
    for (int ran = 0; ran < 2; ran++) {
        kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
        if (ran)
            run_times(m, "f", 1);
        fflush(stderr);
        int saved = dup(2);
        assert_true(saved >= 0 && ftruncate(fd, 0) == 0 && dup2(fd, 2) == 2);
        setenv("KILN_DEBUG", "1", 1);
        kiln_module_free(m);
        unsetenv("KILN_DEBUG");
        fflush(stderr);
        assert_int_equal(dup2(saved, 2), 2);
        close(saved);
        size_t len = 0;
        char *out = ku_read_file(path, &len);
        assert_non_null(out);
        if (ran)
            assert_non_null(strstr(out, "kiln profile (c target)"));
        else
            assert_null(strstr(out, "kiln profile")); /* nothing ran: nothing to say */
        free(out);
    }
    kiln_graph_free(g);
    close(fd);
    unlink(path);
}

static void test_errors(void **state)
{
    (void)state;
    assert_int_equal(kiln_module_profile(NULL, stdout), KILN_ERR_INVALID);
    kiln_graph *g = two_entries();
    kiln_module *m = ku_compile_for(g, KILN_TARGET_INTERP);
    kiln_status s = kiln_module_profile(m, NULL);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_profile: the FILE is NULL");
    FILE *ro = fopen("/dev/null", "r"); /* writes to it fail */
    assert_non_null(ro);
    s = kiln_module_profile(m, ro);
    assert_module_error(m, s, KILN_ERR_IO, "kiln_module_profile: cannot write the profile");
    fclose(ro);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c_target_kernels),
        cmocka_unit_test(test_c_target_kernel_times),
        cmocka_unit_test(test_interpreter_entries),
        cmocka_unit_test(test_debug_prints_at_free),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
