/* test_masks.c - kiln_tril, kiln_triu, kiln_masked_fill and kiln_graph_find:
 * values against loops written here (PyTorch's definitions), on the
 * interpreter and the C target, their gradients, PyTorch's errors, and a
 * second entry that reuses a param found by name. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const kiln_target targets[] = {KILN_TARGET_INTERP, KILN_TARGET_C};

/* tril/triu of a [2, 3, 4] f32 tensor for diagonals -2..3, and of a bool and an
 * i64 matrix, against j - i <= d (tril) and j - i >= d (triu). */
static void test_tril_triu_values(void **state)
{
    (void)state;
    float xv[24];
    for (int i = 0; i < 24; i++)
        xv[i] = (float)(i + 1);
    for (int t = 0; t < 2; t++)
        for (int64_t d = -2; d <= 3; d++) {
            kiln_graph *g = ku_graph_new();
            kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3, 4));
            kiln_tensor *b = kiln_input(g, "b", KILN_BOOL, KILN_SHAPE(3, 4));
            kiln_tensor *n = kiln_input(g, "n", KILN_I64, KILN_SHAPE(3, 4));
            kiln_tensor *outs[] = {kiln_tril(g, x, d), kiln_triu(g, x, d), kiln_tril(g, b, d),
                                   kiln_triu(g, n, d)};
            assert_int_equal(kiln_tensor_dtype(outs[2]), KILN_BOOL);
            assert_int_equal(kiln_tensor_dtype(outs[3]), KILN_I64);
            assert_int_equal(kiln_entry(g, "f", 4, outs, (const char *[]){"lo", "up", "bl", "nu"}),
                             KILN_OK);
            kiln_module *m = ku_compile_for(g, targets[t]);
            bool bv[12];
            int64_t nv[12];
            for (int i = 0; i < 12; i++)
                bv[i] = true, nv[i] = -(int64_t)i - 1;
            assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
            assert_int_equal(kiln_module_set(m, "b", bv, sizeof bv), KILN_OK);
            assert_int_equal(kiln_module_set(m, "n", nv, sizeof nv), KILN_OK);
            assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
            float lo[24], up[24];
            bool bl[12];
            int64_t nu[12];
            assert_int_equal(kiln_module_get(m, "lo", lo, sizeof lo), KILN_OK);
            assert_int_equal(kiln_module_get(m, "up", up, sizeof up), KILN_OK);
            assert_int_equal(kiln_module_get(m, "bl", bl, sizeof bl), KILN_OK);
            assert_int_equal(kiln_module_get(m, "nu", nu, sizeof nu), KILN_OK);
            for (int k = 0; k < 24; k++) {
                int i = (k / 4) % 3, j = k % 4;
                if (lo[k] != (j - i <= d ? xv[k] : 0.0f) || up[k] != (j - i >= d ? xv[k] : 0.0f))
                    fail_msg("target %d, diagonal %lld, element %d: tril %g triu %g", t,
                             (long long)d, k, (double)lo[k], (double)up[k]);
            }
            for (int k = 0; k < 12; k++) {
                int i = k / 4, j = k % 4;
                assert_int_equal(bl[k], j - i <= d);
                assert_int_equal(nu[k], j - i >= d ? nv[k] : 0);
            }
            kiln_module_free(m);
            kiln_graph_free(g);
        }
}

/* masked_fill: the value where the mask is true (the mask broadcasts over
 * rows), converted to the tensor's dtype (2.5 into i32 is 2, as PyTorch),
 * -inf into f32 (attention masks); gradients flow where the mask is false. */
static void test_masked_fill_values_and_gradient(void **state)
{
    (void)state;
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(2, 3));
        kiln_tensor *i = kiln_input(g, "i", KILN_I32, KILN_SHAPE(2, 3));
        kiln_tensor *mk = kiln_input(g, "m", KILN_BOOL, KILN_SHAPE(3));
        kiln_tensor *fx = kiln_masked_fill(g, x, mk, -(double)INFINITY);
        kiln_tensor *fi = kiln_masked_fill(g, i, mk, 2.5);
        assert_int_equal(kiln_tensor_dtype(fi), KILN_I32);
        kiln_tensor *sq = kiln_masked_fill(g, kiln_mul(g, x, x), mk, 7.0);
        kiln_tensor *loss = kiln_sum(g, sq, KILN_ALL, false), *dx;
        assert_int_equal(kiln_grad(g, loss, 1, &x, NULL, &dx), KILN_OK);
        kiln_tensor *outs[] = {fx, fi, dx};
        assert_int_equal(kiln_entry(g, "f", 3, outs, (const char *[]){"fx", "fi", "dx"}), KILN_OK);
        kiln_module *m = ku_compile_for(g, targets[t]);
        const double xv[6] = {1, -2, 3, 4, 5, -6};
        const int32_t iv[6] = {10, 20, 30, 40, 50, 60};
        const bool mv[3] = {false, true, false};
        assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
        assert_int_equal(kiln_module_set(m, "i", iv, sizeof iv), KILN_OK);
        assert_int_equal(kiln_module_set(m, "m", mv, sizeof mv), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        double fxv[6], dxv[6];
        int32_t fiv[6];
        assert_int_equal(kiln_module_get(m, "fx", fxv, sizeof fxv), KILN_OK);
        assert_int_equal(kiln_module_get(m, "fi", fiv, sizeof fiv), KILN_OK);
        assert_int_equal(kiln_module_get(m, "dx", dxv, sizeof dxv), KILN_OK);
        for (int k = 0; k < 6; k++) {
            bool on = mv[k % 3];
            assert_true(on ? isinf(fxv[k]) && fxv[k] < 0 : fxv[k] == xv[k]);
            assert_int_equal(fiv[k], on ? 2 : iv[k]);
            assert_true(dxv[k] == (on ? 0.0 : 2 * xv[k]));
        }
        kiln_module_free(m);
        kiln_graph_free(g);
    }
}

static void tril_rank1(kiln_graph *g)
{
    kiln_tril(g, kiln_input(g, "v", KILN_F32, KILN_SHAPE(4)), 0);
}
static void triu_rank0(kiln_graph *g)
{
    kiln_triu(g, kiln_input(g, "s", KILN_F32, 0, NULL), 0);
}
static void fill_float_mask(kiln_graph *g)
{
    kiln_masked_fill(g, kiln_input(g, "x", KILN_F32, KILN_SHAPE(3)),
                     kiln_input(g, "m", KILN_F32, KILN_SHAPE(3)), 0);
}
static void fill_nan_into_int(kiln_graph *g)
{
    kiln_masked_fill(g, kiln_input(g, "x", KILN_I64, KILN_SHAPE(3)),
                     kiln_input(g, "m", KILN_BOOL, KILN_SHAPE(3)), (double)NAN);
}
static void fill_unbroadcastable(kiln_graph *g)
{
    kiln_masked_fill(g, kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3)),
                     kiln_input(g, "m", KILN_BOOL, KILN_SHAPE(2)), 0);
}

static void expect(void (*build)(kiln_graph *), kiln_status s, const char *msg)
{
    kiln_graph *g = ku_graph_new();
    build(g);
    assert_graph_error(g, s, msg);
    kiln_graph_free(g);
}

static void test_errors(void **state)
{
    (void)state;
    expect(tril_rank1, KILN_ERR_SHAPE,
           "kiln_tril: tril: input tensor must have at least 2 "
           "dimensions");
    expect(triu_rank0, KILN_ERR_SHAPE,
           "kiln_triu: triu: input tensor must have at least 2 "
           "dimensions");
    expect(fill_float_mask, KILN_ERR_DTYPE,
           "kiln_masked_fill: masked_fill_ only supports boolean masks, but got mask with dtype "
           "Float");
    expect(fill_nan_into_int, KILN_ERR_INVALID,
           "kiln_masked_fill: value cannot be converted to type int64 without overflow");
    expect(fill_unbroadcastable, KILN_ERR_SHAPE, "must match the size of tensor");
    /* NULL operands are quiet */
    kiln_graph *g = ku_graph_new();
    assert_null(kiln_tril(g, NULL, 0));
    assert_null(kiln_masked_fill(g, NULL, NULL, 0));
    assert_null(kiln_graph_find(g, NULL));
    assert_null(kiln_graph_find(NULL, "x"));
    ku_assert_ok(g);
    kiln_graph_free(g);
}

/* kiln_graph_find: inputs and params by name (not outputs, not unknown names);
 * an inference entry built beside the train step reuses the trained weight. */
static void test_graph_find_shares_params(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4, 2));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(1, 2), kiln_init_const(0.5));
    kiln_tensor *y = kiln_input(g, "y", KILN_F32, KILN_SHAPE(4, 1));
    kiln_tensor *loss = kiln_mse_loss(g, kiln_linear(g, x, w, NULL), y);
    assert_int_equal(kiln_train_step(g, "train", loss, kiln_sgd(0.1, 0, 0)), KILN_OK);
    assert_ptr_equal(kiln_graph_find(g, "w"), w);
    assert_ptr_equal(kiln_graph_find(g, "x"), x);
    assert_null(kiln_graph_find(g, "train.loss")); /* an output, not a leaf */
    assert_null(kiln_graph_find(g, "nothing"));
    kiln_tensor *x1 = kiln_input(g, "x1", KILN_F32, KILN_SHAPE(1, 2));
    kiln_tensor *p = kiln_linear(g, x1, kiln_graph_find(g, "w"), NULL);
    assert_int_equal(kiln_entry(g, "predict", 1, &p, (const char *[]){"p"}), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    const float xv[8] = {1, 0, 0, 1, 1, 1, 2, 0}, yv[4] = {1, 2, 3, 2}, one[2] = {1, 1};
    assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
    assert_int_equal(kiln_module_set(m, "y", yv, sizeof yv), KILN_OK);
    assert_int_equal(kiln_module_run(m, "train"), KILN_OK);
    float wv[2], pv;
    assert_int_equal(kiln_module_get(m, "w", wv, sizeof wv), KILN_OK);
    assert_true(wv[0] != 0.5f); /* trained */
    assert_int_equal(kiln_module_set(m, "x1", one, sizeof one), KILN_OK);
    assert_int_equal(kiln_module_run(m, "predict"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "p", &pv, sizeof pv), KILN_OK);
    assert_true(pv == wv[0] + wv[1]);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tril_triu_values),
        cmocka_unit_test(test_masked_fill_values_and_gradient),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_graph_find_shares_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
