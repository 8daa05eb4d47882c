/*
 * test_cuda_emu.c - the CUDA renderer's kernels run on the CPU (cuda_emu.h)
 * and match the kernel-IR evaluator: the row kernels (a warp per row,
 * butterfly shuffles), warp sums, the tiled matmul (shared memory, operands
 * with parts, transposes, epilogues), attention and pointwise kernels,
 * before any GPU has run them. What this cannot show: the GPU's own memory
 * model, timing and libraries (cuBLAS); those are for `ctest -L gpu` on a
 * lent GPU. test_sweep --emu runs the whole op sweep the same way.
 */
#include "cuda_emu.h"

/* Softmax, log-softmax, layer-norm and cross-entropy over 40 rows of 70,
 * forward and backward: row kernels, warp sums, column sums. */
static void test_row_kernels(void **state)
{
    (void)state;
    kiln_graph *g = ku_row_ops(40, 70);
    int rows = 0, mm = 0;
    check_graph(g, NULL, &rows, &mm);
    assert_true(rows >= 2); /* the forward's and the backward's */
    kiln_graph_free(g);
}

/* An MLP's train step (batch 37, 50-70-9, Adam): tiled matmuls with bias +
 * ReLU epilogues, transposed operands, ragged tiles; the loss's row kernel. */
static void test_mlp_step(void **state)
{
    (void)state;
    const int64_t sizes[] = {50, 70, 9};
    kiln_graph *g = ku_mlp(37, sizes, 2, kiln_adam(1e-3, 0.9, 0.999, 1e-8));
    int rows = 0, mm = 0;
    check_graph(g, NULL, &rows, &mm);
    assert_true(rows >= 1);
    assert_true(mm >= 6);
    kiln_graph_free(g);
}

/* The golden programs: a convolution's train step (matmul operands with
 * parts) and attention with heads permuted in. */
static void test_goldens(void **state)
{
    (void)state;
    static const char *const files[] = {"conv_train.kir", "attention_heads.kir", "mlp.kir"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[4096], err[256] = "";
        snprintf(path, sizeof path, "%s/tests/golden/%s", KILN_SOURCE_DIR, files[i]);
        char *text = ku_read_file(path, NULL);
        assert_non_null(text);
        kiln_graph *g = kiln_graph_parse(text, err, sizeof err);
        if (!g)
            fail_msg("%s: %s", path, err);
        int rows = 0, mm = 0;
        check_graph(g, NULL, &rows, &mm);
        kiln_graph_free(g);
        free(text);
    }
}

/* Whether g's CUDA source calls fn. */
static bool source_calls(kiln_graph *g0, const char *fn)
{
    kiln_graph *g = ir_graph_clone(g0);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(g, &p), KILN_OK);
    char *src = cgen_cuda(p);
    assert_non_null(src);
    bool found = strstr(src, fn) != NULL;
    ir_free(src);
    kp_free(p);
    kiln_graph_free(g);
    return found;
}

/* Random draws four to a thread (one Philox block, kiln_rand4_f32 and
 * kiln_randn4_f32) where they are the kernel's own elements, with a ragged
 * rest; element by element where they are not (a transposed draw). */
static void test_random_blocks(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{10, 10}, {3, 7}, {1, 5}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        kiln_graph *g = ku_graph_new();
        kiln_graph_seed(g, 5 + i);
        const int64_t *d = shapes[i];
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(d[0], d[1]));
        kiln_tensor *y = kiln_add(g,
                                  kiln_mul(g, kiln_randn(g, KILN_F32, KILN_SHAPE(d[0], d[1])),
                                           kiln_randn(g, KILN_F32, KILN_SHAPE(d[0], d[1]))),
                                  kiln_mul(g, x, kiln_rand(g, KILN_F32, KILN_SHAPE(d[0], d[1]))));
        assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
        assert_true(source_calls(g, "kiln_randn4_f32(ctx->seed"));
        assert_true(source_calls(g, "kiln_rand4_f32(ctx->seed"));
        int rows = 0, mm = 0;
        check_graph(g, NULL, &rows, &mm);
        kiln_graph_free(g);
    }
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(6, 4));
    kiln_tensor *r = kiln_transpose(g, kiln_randn(g, KILN_F32, KILN_SHAPE(4, 6)), 0, 1);
    kiln_tensor *y = kiln_add(g, x, r);
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    assert_false(source_calls(g, "kiln_randn4_f32(ctx->seed"));
    int rows = 0, mm = 0;
    check_graph(g, NULL, &rows, &mm);
    kiln_graph_free(g);
}

static int setup(void **state)
{
    (void)state;
    return emu_setup();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_kernels),
        cmocka_unit_test(test_mlp_step),
        cmocka_unit_test(test_goldens),
        cmocka_unit_test(test_random_blocks),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
