/*
 * test_torch_diffs.c - the documented differences from PyTorch (docs/ir.md,
 * "Differences from PyTorch"): the C target and the interpreter agree with
 * each other and with the value the table states, and the table lists each.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef kiln_tensor *(*build_fn)(kiln_graph *g, kiln_tensor *x);

static kiln_tensor *b_cast_i32(kiln_graph *g, kiln_tensor *x)
{
    return kiln_cast(g, x, KILN_I32);
}
static kiln_tensor *b_cast_i64(kiln_graph *g, kiln_tensor *x)
{
    return kiln_cast(g, x, KILN_I64);
}
static kiln_tensor *b_pow_half(kiln_graph *g, kiln_tensor *x)
{
    return kiln_pow(g, x, kiln_scalar(g, 0.5));
}
static kiln_tensor *b_gelu(kiln_graph *g, kiln_tensor *x)
{
    return kiln_gelu(g, x);
}
static kiln_tensor *b_max0(kiln_graph *g, kiln_tensor *x)
{
    return kiln_maximum(g, x, kiln_zeros(g, KILN_F32, 0, NULL));
}
static kiln_tensor *b_min0(kiln_graph *g, kiln_tensor *x)
{
    return kiln_minimum(g, x, kiln_zeros(g, KILN_F32, 0, NULL));
}
static kiln_tensor *b_0max(kiln_graph *g, kiln_tensor *x)
{
    return kiln_maximum(g, kiln_zeros(g, KILN_F32, 0, NULL), x);
}
static kiln_tensor *b_0min(kiln_graph *g, kiln_tensor *x)
{
    return kiln_minimum(g, kiln_zeros(g, KILN_F32, 0, NULL), x);
}
static kiln_tensor *b_layer_norm(kiln_graph *g, kiln_tensor *x)
{
    return kiln_layer_norm(g, x, NULL, NULL, 1e-5);
}

/* Runs f(x) for one f32 value on target t; the result as double (ints too). */
static double run1(build_fn f, float x, kiln_target t, kiln_dtype *dt)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *in = kiln_input(g, "x", KILN_F32, KILN_SHAPE(1));
    kiln_tensor *y = f(g, in);
    assert_non_null(y);
    *dt = kiln_tensor_dtype(y);
    assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *const[]){"y"}), KILN_OK);
    kiln_module *m = ku_compile_for(g, t);
    assert_int_equal(kiln_module_set(m, "x", &x, sizeof x), KILN_OK);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    double v = 0;
    assert_int_equal(kiln_module_get_scalar(m, "y", &v), KILN_OK);
    kiln_module_free(m);
    kiln_graph_free(g);
    return v;
}

/* Each case on both targets: the value docs/ir.md states, sign of zero included. */
static void test_values_on_both_targets(void **state)
{
    (void)state;
    const double i64max = 9223372036854775807.0, i64min = -9223372036854775808.0;
    struct {
        build_fn f;
        float x;
        double want;
    } c[] = {
        {b_cast_i32, NAN, 0},
        {b_cast_i32, INFINITY, 2147483647.0},
        {b_cast_i32, 1e30f, 2147483647.0},
        {b_cast_i32, -INFINITY, -2147483648.0},
        {b_cast_i64, NAN, 0},
        {b_cast_i64, 1e30f, i64max},
        {b_cast_i64, -1e30f, i64min},
        {b_pow_half, -INFINITY, (double)INFINITY},
        {b_pow_half, -0.0f, 0.0},
        {b_max0, -0.0f, 0.0},
        {b_0max, -0.0f, -0.0},
        {b_min0, -0.0f, 0.0},
        {b_0min, -0.0f, -0.0},
        {b_gelu, -0.0f, -0.0},
        {b_gelu, -40.0f, -0.0},
        {b_layer_norm, 5.0f, 0.0},
        {b_layer_norm, -0.0f, -0.0},
    };
    static const kiln_target targets[] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
        for (int t = 0; t < 2; t++) {
            kiln_dtype dt;
            double got = run1(c[i].f, c[i].x, targets[t], &dt);
            if (got != c[i].want || signbit(got) != signbit(c[i].want))
                fail_msg("case %zu on target %d: got %.17g, docs/ir.md says %.17g", i, t, got,
                         c[i].want);
        }
}

/* An integer tensor to a negative power is a run-time error for every base. */
static void test_integer_negative_power(void **state)
{
    (void)state;
    static const kiln_target targets[] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *a = kiln_input(g, "a", KILN_I32, KILN_SHAPE(3));
        kiln_tensor *b = kiln_input(g, "b", KILN_I32, KILN_SHAPE(3));
        kiln_tensor *y = kiln_pow(g, a, b);
        assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *const[]){"y"}), KILN_OK);
        kiln_module *m = ku_compile_for(g, targets[t]);
        const int32_t base[3] = {1, -1, 0}, ex[3] = {-1, -1, -1};
        assert_int_equal(kiln_module_set(m, "a", base, sizeof base), KILN_OK);
        assert_int_equal(kiln_module_set(m, "b", ex, sizeof ex), KILN_OK);
        kiln_status s = kiln_module_run(m, "f");
        assert_module_error(m, s, KILN_ERR_INVALID,
                            "Integers to negative integer powers are not allowed.");
        kiln_module_free(m);
        kiln_graph_free(g);
    }
}

/* The table lists every case the tests above pin. */
static void test_docs_list_each_difference(void **state)
{
    (void)state;
    FILE *f = fopen(KILN_SOURCE_DIR "/docs/ir.md", "rb");
    assert_non_null(f);
    static char doc[1 << 16];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = 0;
    const char *sec = strstr(doc, "## Differences from PyTorch");
    assert_non_null(sec);
    static const char *const rows[] = {
        "| float->int `CAST` of NaN |",
        "| float->int `CAST` of +inf, 1e30 |",
        "| `pow(-inf, 0.5)` |",
        "| `pow(-0, 0.5)` |",
        "| integer `POW` with a negative exponent |",
        "| sign of zero in `maximum`/`minimum`",
        "| sign of zero in `gelu` |",
        "| sign of zero in `layer_norm` |",
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (!strstr(sec, rows[i]))
            fail_msg("docs/ir.md lacks the row %s", rows[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_values_on_both_targets),
        cmocka_unit_test(test_integer_negative_power),
        cmocka_unit_test(test_docs_list_each_difference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
