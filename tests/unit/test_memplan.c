/*
 * test_memplan.c - the arena plan of passes/memplan.c: temps live at the same
 * time never share bytes, every temp lies inside its entry's arena, and the
 * arena of a whole MLP train step (784-1024-1024-10, batch 256, Adam) and of
 * smaller graphs is within 1.1x of the liveness lower bound (bytes are values,
 * not timings).
 */
#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

/* The program of a private clone of g (*clone: freed by the caller after
 * kp_free of the program). */
static kprogram *plan(kiln_graph *g, kiln_graph **clone)
{
    kiln_graph *c = *clone = ir_graph_clone(g);
    assert_non_null(c);
    kprogram *p = NULL;
    if (pass_pipeline(c, &p) != KILN_OK)
        fail_msg("pipeline: %s", kiln_graph_error(c));
    assert_non_null(p);
    return p;
}

static void mark(const kprogram *p, int *first, int *last, int b, int pos)
{
    if (b < 0 || b >= p->nbufs || p->bufs[b].role != KB_TEMP)
        return;
    if (first[b] < 0)
        first[b] = pos;
    last[b] = pos;
}

/* Checks every entry's plan from lifetimes computed here, independently;
 * returns the largest arena / lower-bound ratio. */
static double check_plan(const kprogram *p)
{
    int *first = malloc(sizeof(int) * (size_t)p->nbufs),
        *last = malloc(sizeof(int) * (size_t)p->nbufs);
    assert_non_null(first);
    assert_non_null(last);
    double worst = 1;
    for (int e = 0; e < p->nentries; e++) {
        const kentry *x = &p->entries[e];
        for (int b = 0; b < p->nbufs; b++)
            first[b] = last[b] = -1;
        for (int pos = 0; pos < x->nkernels; pos++) {
            const kernel *k = &p->kernels[x->kernels[pos]];
            for (int i = 0; i < k->nx; i++)
                if (k->x[i].kind == KX_LOAD)
                    mark(p, first, last, k->x[i].buf, pos);
            for (int i = 0; i < k->nstores; i++)
                mark(p, first, last, k->stores[i].buf, pos);
            if (k->kind == KK_MATMUL) {
                mark(p, first, last, k->mm.a, pos);
                mark(p, first, last, k->mm.b, pos);
            }
        }
        for (int a = 0; a < p->nbufs; a++) {
            if (first[a] < 0 || p->bufs[a].entry != e)
                continue;
            int64_t sa = p->bufs[a].numel * (int64_t)kiln_dtype_size(p->bufs[a].dtype);
            assert_true(p->bufs[a].offset >= 0 && p->bufs[a].offset % 64 == 0);
            assert_true(p->bufs[a].offset + sa <= x->arena_bytes);
            for (int b = a + 1; b < p->nbufs; b++) {
                if (first[b] < 0 || p->bufs[b].entry != e)
                    continue;
                int64_t sb = p->bufs[b].numel * (int64_t)kiln_dtype_size(p->bufs[b].dtype);
                bool together = first[a] <= last[b] && first[b] <= last[a];
                bool share = p->bufs[a].offset < p->bufs[b].offset + sb &&
                             p->bufs[b].offset < p->bufs[a].offset + sa;
                if (together && share && sa > 0 && sb > 0)
                    fail_msg("entry %d: temps %d and %d are live together but share bytes", e, a,
                             b);
            }
        }
        assert_true(x->live_bytes <= x->arena_bytes);
        if (x->live_bytes > 0 && (double)x->arena_bytes / (double)x->live_bytes > worst)
            worst = (double)x->arena_bytes / (double)x->live_bytes;
    }
    free(first);
    free(last);
    return worst;
}

static void test_mlp_train_step(void **state)
{
    (void)state;
    const int64_t big[] = {784, 1024, 1024, 10}, small[] = {32, 16, 8, 4};
    kiln_optim opts[] = {kiln_adam(1e-3, 0.9, 0.999, 1e-8), kiln_sgd(0.1, 0.9, 1e-4)};
    for (int i = 0; i < 4; i++) {
        kiln_graph *g = i < 2 ? ku_mlp(256, big, 3, opts[i]) : ku_mlp(5, small, 3, opts[i - 2]);
        kiln_graph *clone;
        kprogram *p = plan(g, &clone);
        double ratio = check_plan(p);
        if (ratio > 1.1)
            fail_msg("graph %d: arena %.3fx the liveness lower bound", i, ratio);
        assert_true(p->entries[0].live_bytes > 0);
        kp_free(p);
        kiln_graph_free(clone);
        kiln_graph_free(g);
    }
}

/* Softmax, layer norm and a chain of reductions: still valid plans. */
static void test_other_graphs(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(64, 100));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(100), kiln_init_ones());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(100), kiln_init_zeros());
    kiln_tensor *y = kiln_layer_norm(g, kiln_softmax(g, x, 1), w, b, 1e-5);
    kiln_tensor *z = kiln_sum(g, kiln_mul(g, y, kiln_exp(g, y)), KILN_ALL, false);
    kiln_tensor *grads[2];
    kiln_tensor *wb[2] = {w, b};
    assert_int_equal(kiln_grad(g, z, 2, wb, NULL, grads), KILN_OK);
    kiln_tensor *outs[3] = {z, grads[0], grads[1]};
    assert_int_equal(kiln_entry(g, "f", 3, outs, NULL), KILN_OK);
    kiln_graph *clone;
    kprogram *p = plan(g, &clone);
    assert_true(check_plan(p) <= 1.1);
    kp_free(p);
    kiln_graph_free(clone);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_train_step),
        cmocka_unit_test(test_other_graphs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
