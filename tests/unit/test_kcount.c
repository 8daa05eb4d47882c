/*
 * test_kcount.c - golden kernel counts: softmax, log-softmax, layer-norm and
 * cross-entropy, forward and forward + backward, and the whole MLP train step
 * compile to the number of kernels the fusion rules give today
 * (passes/fuse.c, passes/hfuse.c). A change in fusion changes these numbers:
 * update them with the reason.
 *
 * Where the counts come from (rows of [R, C], reduced over C):
 *   softmax:       max, then exp-sum (exp recomputed, not stored), then the
 *                  division: 3 kernels (one pass per reduction).
 *   log-softmax:   max, sum of exp, then x - max - log(sum): 3.
 *   layer-norm:    mean, variance, then the normalized affine output: 3.
 *   cross-entropy: max, x - max (stored: two reductions read it), sum of
 *                  exp, the label's term (a masked row sum), then the mean
 *                  over rows: 5.
 * Backward recomputes what it needs of the forward and adds the reductions
 * the gradients need (a row sum per softmax row, column sums for the
 * layer-norm weight and bias); pointwise work of one domain merges (hfuse).
 * The one-pass row kernels the CPU performance issue asks for (softmax,
 * cross-entropy and layer-norm in one pass over each row) would bring each of
 * these to 1 or 2.
 */
#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

#include <string.h>

enum { R = 64, C = 100 };

/* Kernels of entry `name` after the whole pipeline (a private clone of g). */
static int kernels_of(kiln_graph *g, const char *name)
{
    ku_assert_ok(g);
    kiln_graph *c = ir_graph_clone(g);
    assert_non_null(c);
    kprogram *p = NULL;
    if (pass_pipeline(c, &p) != KILN_OK)
        fail_msg("pipeline: %s", kiln_graph_error(c));
    int n = -1;
    for (int e = 0; e < p->nentries; e++)
        if (strcmp(p->entries[e].name, name) == 0)
            n = p->entries[e].nkernels;
    kp_free(p);
    kiln_graph_free(c);
    return n;
}

typedef enum { SOFTMAX, LOG_SOFTMAX, LAYER_NORM, CROSS_ENTROPY } row_op;

/* The op's forward as entry "fwd" and its loss's gradient (sum of the
 * output, or the loss itself) with respect to x (and w, b) as "bwd". */
static void row_counts(row_op op, int want_fwd, int want_bwd)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_param(g, "x", KILN_F32, KILN_SHAPE(R, C), kiln_init_zeros());
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(C), kiln_init_ones());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(C), kiln_init_zeros());
    kiln_tensor *y = NULL;
    switch (op) {
    case SOFTMAX: y = kiln_softmax(g, x, -1); break;
    case LOG_SOFTMAX: y = kiln_log_softmax(g, x, -1); break;
    case LAYER_NORM: y = kiln_layer_norm(g, x, w, b, 1e-5); break;
    case CROSS_ENTROPY:
        y = kiln_cross_entropy(g, x, kiln_input(g, "labels", KILN_I64, KILN_SHAPE(R)));
        break;
    }
    assert_int_equal(kiln_entry(g, "fwd", 1, &y, NULL), KILN_OK);
    kiln_tensor *loss = op == CROSS_ENTROPY ? y : kiln_sum(g, kiln_mul(g, y, y), KILN_ALL, false);
    kiln_tensor *wrt[3] = {x, w, b}, *grads[3];
    int n = op == LAYER_NORM ? 3 : 1;
    assert_int_equal(kiln_grad(g, loss, n, wrt, NULL, grads), KILN_OK);
    assert_int_equal(kiln_entry(g, "bwd", n, grads, NULL), KILN_OK);
    int fwd = kernels_of(g, "fwd"), bwd = kernels_of(g, "bwd");
    if (fwd != want_fwd || bwd != want_bwd)
        fail_msg("op %d: %d forward and %d backward kernels, want %d and %d", (int)op, fwd, bwd,
                 want_fwd, want_bwd);
    kiln_graph_free(g);
}

static void test_softmax(void **state)
{
    (void)state;
    row_counts(SOFTMAX, 3, 5);
}

static void test_log_softmax(void **state)
{
    (void)state;
    row_counts(LOG_SOFTMAX, 3, 5);
}

static void test_layer_norm(void **state)
{
    (void)state;
    row_counts(LAYER_NORM, 3, 9);
}

/* One more kernel each way than before ignore_index: the count of labels
 * kept (not -100) is its own reduction. */
static void test_cross_entropy(void **state)
{
    (void)state;
    row_counts(CROSS_ENTROPY, 6, 5);
}

/* The MLP 784-1024-1024-10 train step (batch 256, ReLU, cross-entropy, Adam):
 * per layer one matmul with its bias + ReLU epilogue forward, two matmuls
 * and a bias-gradient sum backward; the loss's kernels; one merged Adam
 * kernel per parameter shape (the loss counts the labels it keeps: one small
 * reduction). */
static void test_mlp_train_step(void **state)
{
    (void)state;
    const int64_t sizes[] = {784, 1024, 1024, 10};
    kiln_graph *g = ku_mlp(256, sizes, 3, kiln_adam(1e-3, 0.9, 0.999, 1e-8));
    assert_int_equal(kernels_of(g, "train"), 28);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax),        cmocka_unit_test(test_log_softmax),
        cmocka_unit_test(test_layer_norm),     cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_mlp_train_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
