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
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
