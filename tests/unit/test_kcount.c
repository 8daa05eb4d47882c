/*
 * test_kcount.c - golden kernel counts: softmax, log-softmax, layer-norm and
 * cross-entropy, forward and forward + backward, and the whole MLP train step
 * compile to the number of kernels the fusion rules give today
 * (passes/fuse.c, passes/hfuse.c, passes/rowfuse.c). A change in fusion
 * changes these numbers: update them with the reason. Also: which row
 * reductions stay apart (columns, few long rows), and the kernel-IR
 * verifier's checks of a row kernel.
 *
 * Where the counts come from (rows of [R, C], reduced over C): fusion makes
 * a reduction per pass (softmax: max, then the sum of exp, then the
 * division), and row fusion (rowfuse.c) runs the passes over one row in one
 * kernel, one after another, while the row is in cache:
 *   softmax, log-softmax: 1 forward; backward recomputes the forward's max
 *                  and sum, then the row sum of g * y and the gradient: 1.
 *   layer-norm:    1 forward (mean, variance, output); backward 2: the row
 *                  kernel (mean, variance, the two row sums the input's
 *                  gradient needs, the gradient) and the column sums of the
 *                  weight's and bias's gradients, one kernel of two sibling
 *                  sums (other rows: summed a block of columns at a time).
 *   cross-entropy: 2 forward: the row kernel (max, sum of exp, each row's
 *                  loss); the count of labels kept (not -100) and the sum of
 *                  the rows' losses (a gather that can fail: a small whole
 *                  reduction may) with the division. Backward 2: that count,
 *                  and the row kernel of the gradient.
 */
#include "codegen/c/cgen.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
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
    row_counts(SOFTMAX, 1, 1);
}

static void test_log_softmax(void **state)
{
    (void)state;
    row_counts(LOG_SOFTMAX, 1, 1);
}

static void test_layer_norm(void **state)
{
    (void)state;
    row_counts(LAYER_NORM, 1, 2);
}

static void test_cross_entropy(void **state)
{
    (void)state;
    row_counts(CROSS_ENTROPY, 2, 2);
}

/* The MLP 784-1024-1024-10 train step (batch 256, ReLU, cross-entropy, Adam):
 * per layer one matmul with its bias + ReLU epilogue forward (ReLU's
 * gradient reads its output, which the epilogue stores, not its input), two
 * matmuls backward, and a bias-gradient sum (the two hidden layers' in one
 * kernel of sibling sums); the loss's kernels (its row kernel keeps x - max per
 * element: the loss gathers the label's from it, at another element than the
 * one each pass computes); one merged Adam kernel per parameter shape. */
static void test_mlp_train_step(void **state)
{
    (void)state;
    const int64_t sizes[] = {784, 1024, 1024, 10};
    kiln_graph *g = ku_mlp(256, sizes, 3, kiln_adam(1e-3, 0.9, 0.999, 1e-8));
    assert_int_equal(kernels_of(g, "train"), 20);
    kiln_graph_free(g);
}

/* Softmax of [rows, cols] over `axis`: forward kernels. */
static int softmax_kernels(int64_t rows, int64_t cols, int axis)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(rows, cols));
    kiln_tensor *y = kiln_softmax(g, x, axis);
    assert_int_equal(kiln_entry(g, "fwd", 1, &y, NULL), KILN_OK);
    int n = kernels_of(g, "fwd");
    kiln_graph_free(g);
    return n;
}

/* Reductions down columns stay three kernels (a row kernel would read each
 * column three times, a stride apart); so do few long rows (a row kernel's
 * only parallel loop is over its rows), but not few short ones. */
static void test_rows_that_stay_apart(void **state)
{
    (void)state;
    assert_int_equal(softmax_kernels(R, C, 1), 1);
    assert_int_equal(softmax_kernels(R, C, 0), 3);
    assert_int_equal(softmax_kernels(2, 40000, 1), 3);
    assert_int_equal(softmax_kernels(2, 100, 1), 1);
}

/* A row value something else reads is still stored: the max as an output
 * beside the softmax, one kernel storing both. */
static void test_row_value_kept(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(R, C));
    kiln_tensor *outs[2] = {kiln_softmax(g, x, 1), kiln_max(g, x, 1, true)};
    assert_int_equal(kiln_entry(g, "fwd", 2, outs, NULL), KILN_OK);
    kiln_graph *c = ir_graph_clone(g);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(c, &p), KILN_OK);
    assert_int_equal(p->entries[0].nkernels, 1);
    const kernel *k = &p->kernels[p->entries[0].kernels[0]];
    assert_int_equal(k->npre, 1);
    int row = 0, element = 0;
    for (int i = 0; i < k->nstores; i++)
        k->stores[i].element ? element++ : row++;
    assert_int_equal(row, 1);
    assert_int_equal(element, 1);
    kp_free(p);
    kiln_graph_free(c);
    kiln_graph_free(g);
}

/* A row kernel's max and sum see NaN and infinities as the interpreter does:
 * a NaN anywhere in a row makes the row's softmax NaN, +inf gives NaN where
 * inf - inf is taken, and a row of -inf stays NaN; other rows are untouched.
 * The row's max, an output too, is the row kernel's first phase (stored as
 * it is): NaN there comes from the phase's own NaN flag. The C target (one
 * row kernel, its max vectorized) against the interpreter. */
static void test_row_kernel_nan_inf(void **state)
{
    (void)state;
    enum { RR = 40, CC = 33 }; /* odd row length: the vector loops' remainders */
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(RR, CC));
    kiln_tensor *outs[3] = {kiln_softmax(g, x, 1), kiln_log_softmax(g, x, 1),
                            kiln_max(g, x, 1, true)};
    assert_int_equal(kiln_entry(g, "fwd", 3, outs, NULL), KILN_OK);
    static float data[RR * CC];
    for (int i = 0; i < RR * CC; i++)
        data[i] = (float)((i * 37) % 101) / 25.0f - 2.0f;
    data[0 * CC + 17] = NAN;
    data[1 * CC + 32] = INFINITY;
    for (int j = 0; j < CC; j++)
        data[2 * CC + j] = -INFINITY;
    data[3 * CC + 5] = -INFINITY;
    kiln_module *m[2] = {ku_compile_for(g, KILN_TARGET_C), ku_compile_for(g, KILN_TARGET_INTERP)};
    static float got[2][3][RR * CC];
    for (int t = 0; t < 2; t++) {
        assert_int_equal(kiln_module_set(m[t], "x", data, sizeof data), KILN_OK);
        assert_int_equal(kiln_module_run(m[t], "fwd"), KILN_OK);
        for (int o = 0; o < 3; o++) {
            char name[16];
            snprintf(name, sizeof name, "fwd.%d", o);
            size_t bytes = sizeof(float) * (o == 2 ? RR : RR * CC);
            assert_int_equal(kiln_module_get(m[t], name, got[t][o], bytes), KILN_OK);
        }
    }
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < (o == 2 ? RR : RR * CC); i++) {
            float a = got[0][o][i], b = got[1][o][i];
            if (isnan(a) != isnan(b) || (!isnan(a) && fabsf(a - b) > 1e-6f + 1e-5f * fabsf(b)))
                fail_msg("output %d element %d: C %g, interpreter %g", o, i, (double)a, (double)b);
        }
    assert_true(isnan(got[0][0][0]) && isnan(got[0][0][2 * CC]) && isnan(got[0][2][0]));
    assert_false(isnan(got[0][0][3 * CC]));
    for (int t = 0; t < 2; t++)
        kiln_module_free(m[t]);
    kiln_graph_free(g);
}

/* Sibling sums: layer-norm's weight and bias gradients are one kernel
 * summed a block of columns at a time, an accumulator vector each (accv1,
 * accv), with the interpreter's values; the gradient of one odd-sized column
 * block's edge included (C = 100: a block of 64, then 36). */
static void test_sibling_sums(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(R, C));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(C), kiln_init_ones());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(C), kiln_init_zeros());
    kiln_tensor *y = kiln_layer_norm(g, x, w, b, 1e-5);
    kiln_tensor *loss = kiln_sum(g, kiln_mul(g, y, kiln_sin(g, x)), KILN_ALL, false);
    kiln_tensor *wrt[2] = {w, b}, *grads[2];
    assert_int_equal(kiln_grad(g, loss, 2, wrt, NULL, grads), KILN_OK);
    assert_int_equal(kiln_entry(g, "bwd", 2, grads, NULL), KILN_OK);
    static float data[R * C], got[2][2][C];
    for (int i = 0; i < R * C; i++)
        data[i] = (float)((i * 53) % 97) / 24.0f - 2.0f;
    kiln_module *m[2] = {ku_compile_for(g, KILN_TARGET_C), ku_compile_for(g, KILN_TARGET_INTERP)};
    const char *src = kiln_module_source(m[0]);
    assert_non_null(strstr(src, " accv1[64] = {0};"));
    assert_non_null(strstr(src, "const double acc1 = accv1["));
    for (int t = 0; t < 2; t++) {
        assert_int_equal(kiln_module_set(m[t], "x", data, sizeof data), KILN_OK);
        assert_int_equal(kiln_module_run(m[t], "bwd"), KILN_OK);
        assert_int_equal(kiln_module_get(m[t], "bwd.0", got[t][0], sizeof got[t][0]), KILN_OK);
        assert_int_equal(kiln_module_get(m[t], "bwd.1", got[t][1], sizeof got[t][1]), KILN_OK);
    }
    for (int o = 0; o < 2; o++)
        for (int i = 0; i < C; i++)
            if (fabsf(got[0][o][i] - got[1][o][i]) > 1e-5f * (1 + fabsf(got[1][o][i])))
                fail_msg("gradient %d [%d]: C %g, interpreter %g", o, i, (double)got[0][o][i],
                         (double)got[1][o][i]);
    for (int t = 0; t < 2; t++)
        kiln_module_free(m[t]);
    kiln_graph_free(g);
}

/* The verifier's checks of row kernels: each broken program is refused with
 * the message naming what is wrong. */
static void verify_fails(kprogram *p, const char *want)
{
    char msg[256] = "";
    assert_int_equal(kp_verify(p, msg, sizeof msg), KILN_ERR_INVALID);
    if (!strstr(msg, want))
        fail_msg("verifier said '%s', want '%s'", msg, want);
}

static void test_verify_row_kernels(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(R, C));
    kiln_tensor *y = kiln_softmax(g, x, 1);
    assert_int_equal(kiln_entry(g, "fwd", 1, &y, NULL), KILN_OK);
    kiln_graph *c = ir_graph_clone(g);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(c, &p), KILN_OK);
    kernel *k = &p->kernels[0];
    char msg[256];
    assert_int_equal(kp_verify(p, msg, sizeof msg), KILN_OK);
    assert_int_equal(k->npre, 1);
    kernel saved = *k;
    int acc0 = kk_expr(k, (kx_node){.kind = KX_ACC, .dtype = KILN_F64});
    assert_true(acc0 >= 0);
    saved.x = k->x; /* kk_expr may have moved them */
    saved.nx = k->nx;
    saved.capx = k->capx;
    saved.xmap = k->xmap;
    saved.capxmap = k->capxmap;
    saved.nxmap = k->nxmap;

    k->pre[0].body = acc0; /* the max reads the sum, which runs after it */
    verify_fails(p, "phase body reads a later accumulator");
    *k = saved;
    k->pre[0].rop = IR_ARGMAX;
    verify_fails(p, "not a float sum, max or min");
    *k = saved;
    k->npre = KK_MAX_PHASES;
    verify_fails(p, "too many phases");
    *k = saved;
    k->npre = 0; /* acc1 names a phase there is none of */
    verify_fails(p, "accumulator of a missing phase");
    *k = saved;
    k->stores[0].element = false; /* the softmax, per row: reads the row's variable */
    verify_fails(p, "row store reads a reduced variable");
    k->stores[0].element = true;
    int check = kk_expr(k, (kx_node){.kind = KX_CHECK, .dtype = KILN_I64, .a = {0}, .size = 3});
    assert_true(check >= 0);
    saved.x = k->x;
    saved.nx = k->nx;
    saved.capx = k->capx;
    saved.xmap = k->xmap;
    saved.capxmap = k->capxmap;
    saved.nxmap = k->nxmap;
    verify_fails(p, "a row kernel can fail");
    k->x[check].kind = KX_CONST; /* the check no more */
    k->x[check].ivalue = 0;
    assert_int_equal(kp_verify(p, msg, sizeof msg), KILN_OK);
    int out = k->stores[0].buf;
    kernel *pw = kp_kernel_new(p, KK_POINTWISE); /* an element store outside a reduce */
    assert_non_null(pw);
    pw->rank = 1;
    pw->dims[0] = R;
    int at = kk_var(pw, 0), one = kk_const_f(pw, KILN_F32, 1);
    assert_true(at >= 0 && one >= 0);
    assert_true(kk_store_add(pw, (kk_store){out, at, one, false, true}) >= 0);
    verify_fails(p, "phases or element stores outside a reduce");
    kp_free(p);
    kiln_graph_free(c);
    kiln_graph_free(g);
}

/* A row kernel that can fail: cross-entropy's merged whole reduction (rank
 * 0) passes the verifier, its check (read by nothing: the loss gathers from
 * a row of equal values here) rendered in the last phase's loop; an unread
 * check of one of the sums runs with the row stores, after the phases; one
 * of the row and the sums has nowhere to run and is refused, as is a failing
 * row kernel with element stores. */
static void test_verify_failing_row_kernel(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(R, C));
    kiln_tensor *y = kiln_cross_entropy(g, x, kiln_input(g, "labels", KILN_I64, KILN_SHAPE(R)));
    assert_int_equal(kiln_entry(g, "fwd", 1, &y, NULL), KILN_OK);
    kiln_graph *c = ir_graph_clone(g);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(c, &p), KILN_OK);
    kernel *k = &p->kernels[p->entries[0].kernels[p->entries[0].nkernels - 1]];
    assert_int_equal(k->rank, 0);
    assert_int_equal(k->npre, 1);
    assert_true(kk_can_fail(k));
    char msg[256];
    assert_int_equal(kp_verify(p, msg, sizeof msg), KILN_OK);
    cgen_opts o = {0};
    char *src = cgen_c(p, &o);
    assert_non_null(src);
    char head[96];
    snprintf(head, sizeof head, "static int %s(", k->name);
    const char *fn = strstr(src, head);
    assert_non_null(fn);
    const char *own = strstr(fn, "double acc = 0;"), *check = strstr(fn, "= kiln_check(");
    assert_true(own && check && check > own); /* in the last phase's loop */
    ir_free(src);
    /* an unread check of the first sum: with the row stores */
    int acc1 = kk_expr(k, (kx_node){.kind = KX_ACC, .dtype = KILN_F64, .var = 1});
    int idx = kk_expr(k, (kx_node){.kind = KX_OP, .op = IR_CAST, .dtype = KILN_I64, .a = {acc1}});
    int on_sum = kk_expr(k, (kx_node){.kind = KX_CHECK, .dtype = KILN_I64, .a = {idx}, .size = 7});
    assert_true(acc1 >= 0 && idx >= 0 && on_sum >= 0);
    assert_int_equal(kp_verify(p, msg, sizeof msg), KILN_OK);
    src = cgen_c(p, &o);
    assert_non_null(src);
    fn = strstr(src, head);
    assert_non_null(fn);
    const char *late = strstr(fn, "kiln_f2i64(acc1)"), *sum = strstr(fn, "acc += ");
    if (!late || !sum || late < sum || !strstr(late, ", 7, v"))
        fail_msg("the check of acc1 is not after the phases:\n%s", fn);
    ir_free(src);
    /* one of the row and that sum: refused */
    int row = kk_var(k, 0);
    int both =
        kk_expr(k, (kx_node){.kind = KX_OP, .op = IR_ADD, .dtype = KILN_I64, .a = {idx, row}});
    int bad = kk_expr(k, (kx_node){.kind = KX_CHECK, .dtype = KILN_I64, .a = {both}, .size = 5});
    assert_true(row >= 0 && both >= 0 && bad >= 0);
    verify_fails(p, "a row kernel can fail");
    k->x[bad].kind = KX_CONST; /* the check no more */
    k->x[bad].ivalue = 0;
    assert_int_equal(kp_verify(p, msg, sizeof msg), KILN_OK);
    k->stores[0].element = true; /* element stores in a failing row kernel */
    verify_fails(p, "a row kernel can fail");
    kp_free(p);
    kiln_graph_free(c);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_log_softmax),
        cmocka_unit_test(test_layer_norm),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_sibling_sums),
        cmocka_unit_test(test_verify_failing_row_kernel),
        cmocka_unit_test(test_mlp_train_step),
        cmocka_unit_test(test_rows_that_stay_apart),
        cmocka_unit_test(test_row_value_kept),
        cmocka_unit_test(test_verify_row_kernels),
        cmocka_unit_test(test_row_kernel_nan_inf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
