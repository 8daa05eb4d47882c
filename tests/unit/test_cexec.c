/*
 * test_cexec.c - the C executor end to end: graphs built with the builder API
 * run on KILN_TARGET_C and KILN_TARGET_INTERP give the same values (f32 within
 * 1e-5 relative / 1e-6 absolute, integers and Philox draws exactly), and the
 * module API (set, get, get_scalar, bind, print, run errors) behaves and fails
 * the same way on both.
 */
#include "ir/ir.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kiln_target targets[2] = {KILN_TARGET_INTERP, KILN_TARGET_C};

static void assert_close(const float *c, const float *ref, int n)
{
    for (int i = 0; i < n; i++) {
        double tol = 1e-6 + 1e-5 * fabs((double)ref[i]);
        if (fabs((double)c[i] - (double)ref[i]) > tol)
            fail_msg("element %d: C %.9g, interpreter %.9g", i, (double)c[i], (double)ref[i]);
    }
}

static void get_f32(kiln_module *m, const char *name, float *out, size_t n)
{
    assert_int_equal(kiln_module_get(m, name, out, n * sizeof(float)), KILN_OK);
}

/* A 2-layer MLP (8 -> 16 -> 4, batch 5) with cross-entropy, a manual SGD
 * update of every param through kiln_assign, and a predict entry sharing the
 * params: several steps on both targets must track each other. */
static kiln_graph *mlp(kiln_tensor **loss_out)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 1234);
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(5, 8));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(5));
    kiln_tensor *w1 = kiln_param(g, "w1", KILN_F32, KILN_SHAPE(16, 8), kiln_init_kaiming_uniform());
    kiln_tensor *b1 = kiln_param(g, "b1", KILN_F32, KILN_SHAPE(16), kiln_init_kaiming_uniform());
    kiln_tensor *w2 = kiln_param(g, "w2", KILN_F32, KILN_SHAPE(4, 16), kiln_init_normal(0, 0.1));
    kiln_tensor *h = kiln_relu(g, kiln_linear(g, x, w1, b1));
    kiln_tensor *logits = kiln_matmul(g, h, kiln_transpose(g, w2, 0, 1));
    kiln_tensor *loss = kiln_cross_entropy(g, logits, y);
    /* a hand-written "update": decay the weights by a loss-dependent factor */
    kiln_tensor *f = kiln_sub(g, kiln_scalar(g, 1), kiln_mul(g, loss, kiln_scalar(g, 0.01)));
    kiln_tensor *outs[] = {loss, kiln_assign(g, w1, kiln_mul(g, w1, f)),
                           kiln_assign(g, w2, kiln_mul(g, w2, f)), kiln_softmax(g, logits, -1)};
    assert_int_equal(
        kiln_entry(g, "step", 4, outs, (const char *[]){"loss", "w1_new", "w2_new", "probs"}),
        KILN_OK);
    assert_int_equal(kiln_entry(g, "predict", 1, &logits, (const char *[]){"logits"}), KILN_OK);
    if (loss_out)
        *loss_out = loss;
    return g;
}

static void test_mlp_steps_match(void **state)
{
    (void)state;
    kiln_graph *g = mlp(NULL);
    kiln_module *m[2];
    for (int t = 0; t < 2; t++)
        m[t] = ku_compile_for(g, targets[t]);
    float x[40];
    for (int i = 0; i < 40; i++)
        x[i] = (float)sin(i * 0.7) * 2;
    int64_t y[5] = {0, 3, 1, 2, 3};
    float w1[2][128], w2[2][64], probs[2][20], logits[2][20];
    double loss[2];
    for (int t = 0; t < 2; t++) { /* params are initialised identically */
        get_f32(m[t], "w1", w1[t], 128);
        get_f32(m[t], "w2", w2[t], 64);
    }
    assert_memory_equal(w1[0], w1[1], sizeof w1[0]);
    assert_memory_equal(w2[0], w2[1], sizeof w2[0]);
    for (int step = 0; step < 4; step++) {
        for (int t = 0; t < 2; t++) {
            assert_int_equal(kiln_module_set(m[t], "x", x, sizeof x), KILN_OK);
            assert_int_equal(kiln_module_set(m[t], "y", y, sizeof y), KILN_OK);
            assert_int_equal(kiln_module_run(m[t], "step"), KILN_OK);
            assert_int_equal(kiln_module_get_scalar(m[t], "loss", &loss[t]), KILN_OK);
            get_f32(m[t], "w1", w1[t], 128);
            get_f32(m[t], "w2", w2[t], 64);
            get_f32(m[t], "probs", probs[t], 20);
            assert_int_equal(kiln_module_run(m[t], "predict"), KILN_OK);
            get_f32(m[t], "logits", logits[t], 20);
        }
        assert_true(loss[0] > 0.1 && loss[0] < 10);
        assert_true(fabs(loss[1] - loss[0]) <= 1e-6 + 1e-5 * loss[0]);
        assert_close(w1[1], w1[0], 128);
        assert_close(w2[1], w2[0], 64);
        assert_close(probs[1], probs[0], 20);
        assert_close(logits[1], logits[0], 20);
    }
    float row = 0; /* softmax rows sum to one */
    for (int j = 0; j < 4; j++)
        row += probs[1][j];
    assert_true(fabsf(row - 1) < 1e-5f);
    for (int t = 0; t < 2; t++)
        kiln_module_free(m[t]);
    kiln_graph_free(g);
}

/* Integer math and random draws are exact on both targets, run after run. */
static void test_integers_and_random_exact(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 99);
    kiln_tensor *a = kiln_input(g, "a", KILN_I64, KILN_SHAPE(2, 3));
    kiln_tensor *q = kiln_sub(g, kiln_mul(g, a, kiln_scalar(g, 7)), kiln_scalar(g, 3));
    kiln_tensor *s = kiln_sum(g, q, 1, false);
    kiln_tensor *am = kiln_argmax(g, a, KILN_ALL, false);
    kiln_tensor *r = kiln_rand(g, KILN_F32, KILN_SHAPE(3, 5));
    kiln_tensor *rn = kiln_randn(g, KILN_F64, KILN_SHAPE(7));
    kiln_tensor *outs[] = {q, s, am, r, rn};
    assert_int_equal(kiln_entry(g, "f", 5, outs, NULL), KILN_OK);
    kiln_module *m[2];
    int64_t av[6] = {5, -4, 9, 0, 11, -13};
    int64_t qv[2][6], sv[2][2], amv[2];
    float rv[2][15];
    double rnv[2][7];
    for (int t = 0; t < 2; t++) {
        m[t] = ku_compile_for(g, targets[t]);
        assert_int_equal(kiln_module_set(m[t], "a", av, sizeof av), KILN_OK);
    }
    for (int run = 0; run < 3; run++) {
        for (int t = 0; t < 2; t++) {
            assert_int_equal(kiln_module_run(m[t], "f"), KILN_OK);
            assert_int_equal(kiln_module_get(m[t], "f.0", qv[t], sizeof qv[t]), KILN_OK);
            assert_int_equal(kiln_module_get(m[t], "f.1", sv[t], sizeof sv[t]), KILN_OK);
            assert_int_equal(kiln_module_get(m[t], "f.2", &amv[t], sizeof amv[t]), KILN_OK);
            get_f32(m[t], "f.3", rv[t], 15);
            assert_int_equal(kiln_module_get(m[t], "f.4", rnv[t], sizeof rnv[t]), KILN_OK);
        }
        assert_memory_equal(qv[0], qv[1], sizeof qv[0]);
        assert_true(qv[1][1] == -31 && qv[1][5] == -94);
        assert_memory_equal(sv[0], sv[1], sizeof sv[0]);
        assert_true(amv[0] == 4 && amv[1] == 4);
        assert_memory_equal(rv[0], rv[1], sizeof rv[0]);    /* bit-identical Philox */
        assert_memory_equal(rnv[0], rnv[1], sizeof rnv[0]); /* f64 randn too */
    }
    for (int t = 0; t < 2; t++)
        kiln_module_free(m[t]);
    kiln_graph_free(g);
}

/* print writes the same PyTorch repr on both targets. */
static void test_print_same(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 2));
    kiln_tensor *y = kiln_mul(g, kiln_exp(g, x), kiln_scalar(g, 0.5));
    kiln_tensor *c = kiln_cast(g, kiln_gt(g, x, kiln_scalar(g, 0)), KILN_F64);
    kiln_tensor *outs[] = {y, c};
    assert_int_equal(kiln_entry(g, "f", 2, outs, (const char *[]){"y", "c"}), KILN_OK);
    char *text[2];
    for (int t = 0; t < 2; t++) {
        kiln_module *m = ku_compile_for(g, targets[t]);
        float xv[4] = {0, 1, -1, 2};
        assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        size_t len = 0;
        FILE *f = open_memstream(&text[t], &len);
        assert_int_equal(kiln_module_print(m, "y", f), KILN_OK);
        assert_int_equal(kiln_module_print(m, "c", f), KILN_OK);
        fclose(f);
        kiln_module_free(m);
    }
    assert_string_equal(text[0], text[1]);
    assert_string_equal(text[1], "tensor([[0.5000, 1.3591],\n        [0.1839, 3.6945]])\n"
                                 "tensor([[0., 1.],\n        [0., 1.]], dtype=torch.float64)\n");
    free(text[0]);
    free(text[1]);
    kiln_graph_free(g);
}

/* Every module-API error: same status, same message on both targets. */
static void test_errors_same(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *n = kiln_input(g, "n", KILN_I32, KILN_SHAPE(2));
    kiln_tensor *d = kiln_input(g, "d", KILN_I32, KILN_SHAPE(2));
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(3), kiln_init_ones());
    kiln_tensor *fo[] = {kiln_add(g, x, p)};
    assert_int_equal(kiln_entry(g, "f", 1, fo, (const char *[]){"y"}), KILN_OK);
    /* integer division and power (the builders promote div to float, as torch
     * does; the IR has the integer ops, which can fail at run time) */
    kiln_tensor *nd[2] = {n, d};
    kiln_tensor *q = ir_node_new(g, IR_DIV, KILN_I32, KILN_SHAPE(2), 2, nd);
    assert_int_equal(kiln_entry(g, "div", 1, &q, NULL), KILN_OK);
    kiln_tensor *pw = ir_node_new(g, IR_POW, KILN_I32, KILN_SHAPE(2), 2, nd);
    assert_int_equal(kiln_entry(g, "pow", 1, &pw, NULL), KILN_OK);
    char msgs[2][8][256];
    kiln_status sts[2][8];
    for (int t = 0; t < 2; t++) {
        kiln_module *m = ku_compile_for(g, targets[t]);
        float buf[3] = {1, 2, 3};
        double v;
        int k = 0;
#define RECORD(call)                                                                               \
    do {                                                                                           \
        sts[t][k] = (call);                                                                        \
        snprintf(msgs[t][k], sizeof msgs[t][k], "%s", kiln_module_error(m));                       \
        k++;                                                                                       \
    } while (0)
        RECORD(kiln_module_run(m, "f")); /* x was never set */
        RECORD(kiln_module_get(m, "nope", buf, sizeof buf));
        RECORD(kiln_module_set(m, "x", buf, 4));
        RECORD(kiln_module_run(m, "g"));
        RECORD(kiln_module_get_scalar(m, "y", &v));
        assert_int_equal(kiln_module_set(m, "n", (const int32_t[]){7, -3}, 8), KILN_OK);
        assert_int_equal(kiln_module_set(m, "d", (const int32_t[]){2, 0}, 8), KILN_OK);
        RECORD(kiln_module_run(m, "div"));
        assert_int_equal(kiln_module_set(m, "d", (const int32_t[]){2, -1}, 8), KILN_OK);
        RECORD(kiln_module_run(m, "pow"));
        RECORD(kiln_module_bind(m, "nope", buf));
#undef RECORD
        /* after all that the module still works, and p was never touched */
        assert_int_equal(kiln_module_set(m, "x", buf, sizeof buf), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        float out[3];
        get_f32(m, "y", out, 3);
        assert_true(out[0] == 2 && out[1] == 3 && out[2] == 4);
        kiln_module_free(m);
    }
    const kiln_status want[8] = {KILN_ERR_INVALID,   KILN_ERR_NOT_FOUND, KILN_ERR_SHAPE,
                                 KILN_ERR_NOT_FOUND, KILN_ERR_SHAPE,     KILN_ERR_INVALID,
                                 KILN_ERR_INVALID,   KILN_ERR_NOT_FOUND};
    for (int k = 0; k < 8; k++) {
        if (sts[0][k] != want[k] || sts[1][k] != want[k])
            fail_msg("call %d: %d and %d, want %d (%s)", k, (int)sts[0][k], (int)sts[1][k],
                     (int)want[k], msgs[0][k]);
        assert_string_equal(msgs[0][k], msgs[1][k]);
        assert_true(strlen(msgs[1][k]) > 10);
    }
    assert_non_null(strstr(msgs[1][0], "'x'"));
    assert_string_equal(msgs[1][5], "kiln_module_run: ZeroDivisionError");
    assert_string_equal(msgs[1][6],
                        "kiln_module_run: Integers to negative integer powers are not allowed.");
    kiln_graph_free(g);
}

/* bind: the C code reads and writes the user's memory on every run. */
static void test_bind_input_param_output(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4));
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(4), kiln_init_zeros());
    kiln_tensor *outs[] = {kiln_mul(g, x, kiln_scalar(g, 3)), kiln_assign(g, p, kiln_add(g, p, x))};
    assert_int_equal(kiln_entry(g, "f", 2, outs, (const char *[]){"y", "pn"}), KILN_OK);
    for (int t = 0; t < 2; t++) {
        kiln_module *m = ku_compile_for(g, targets[t]);
        float xv[4] = {1, 2, 3, 4}, pv[4] = {10, 20, 30, 40}, yv[4] = {0};
        assert_int_equal(kiln_module_bind(m, "x", xv), KILN_OK);
        assert_int_equal(kiln_module_bind(m, "p", pv), KILN_OK);
        assert_int_equal(kiln_module_bind(m, "y", yv), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        assert_true(yv[3] == 12 && pv[0] == 11 && pv[3] == 44); /* in place, in the user's array */
        xv[0] = -1;
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        assert_true(yv[0] == -3 && pv[0] == 10);
        float got[4];
        get_f32(m, "p", got, 4); /* get reads the bound memory */
        assert_memory_equal(got, pv, sizeof got);
        kiln_module_free(m);
    }
    kiln_graph_free(g);
}

/* The generated code is the module's source; the interpreter has its own text. */
static void test_source(void **state)
{
    (void)state;
    kiln_graph *g = mlp(NULL);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    const char *src = kiln_module_source(m);
    assert_non_null(strstr(src, "kiln_entry_0"));
    assert_non_null(strstr(src, "kiln_entry_1"));
    assert_non_null(strstr(src, "kiln_abi"));
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_steps_match),
        cmocka_unit_test(test_integers_and_random_exact),
        cmocka_unit_test(test_print_same),
        cmocka_unit_test(test_errors_same),
        cmocka_unit_test(test_bind_input_param_output),
        cmocka_unit_test(test_source),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
