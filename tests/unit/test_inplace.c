/*
 * test_inplace.c - assigns done in place (passes/inplace.c) and what the
 * runtime makes of them: which copies become shares and which must stay (a
 * later kernel reads the param, the value is a matmul or reads the param at
 * another element, a later kernel can fail), that a module's
 * "<entry>.new.<param>" is the param's storage (get, bind, a failed run),
 * that the C code of an in-place update vectorizes inside its parallel loop,
 * and that the numbers are the interpreter's.
 */
#include "passes/passes.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

/* The program kiln_compile would run for g on the C target. */
static kprogram *program(kiln_graph *g)
{
    kiln_graph *mg = ir_graph_clone(g);
    assert_non_null(mg);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(mg, &p), KILN_OK);
    assert_int_equal(pass_inplace(mg, p), KILN_OK);
    p->g = NULL; /* mg is freed below; the tests read only the kernels and buffers */
    kiln_graph_free(mg);
    return p;
}

/* How many copies and shares entry e has; for a share, checks that the
 * output's buffer is stored by no kernel and the param's by one pointwise
 * kernel. */
static void shapes(const kprogram *p, int e, int copies, int shares)
{
    const kentry *x = &p->entries[e];
    assert_int_equal(x->ncopies, copies);
    assert_int_equal(x->nshares, shares);
    for (int s = 0; s < x->nshares; s++) {
        int writers = 0;
        for (int i = 0; i < x->nkernels; i++) {
            const kernel *k = &p->kernels[x->kernels[i]];
            for (int j = 0; j < k->nstores; j++) {
                assert_int_not_equal(k->stores[j].buf, x->shares[s].src);
                if (k->stores[j].buf == x->shares[s].dst) {
                    writers++;
                    assert_int_equal(k->kind, KK_POINTWISE);
                }
            }
        }
        assert_int_equal(writers, 1);
        assert_int_equal(p->bufs[x->shares[s].src].role, KB_OUTPUT);
        assert_int_equal(p->bufs[x->shares[s].dst].role, KB_PARAM);
    }
}

static kiln_tensor *param(kiln_graph *g, const char *name, int64_t r, int64_t c)
{
    return kiln_param(g, name, KILN_F32, KILN_SHAPE(r, c), kiln_init_normal(0, 1));
}

/* Case `which` of one entry "step" over param p [4, 4]. */
static kiln_graph *graph(int which)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *p = param(g, "p", 4, 4), *q = param(g, "q", 4, 4);
    kiln_tensor *outs[2] = {NULL, NULL};
    int n = 1;
    switch (which) {
    case 0: /* p = p * 0.5 + q: in place */
        outs[0] = kiln_assign(g, p, kiln_add(g, kiln_mul(g, p, kiln_scalar(g, 0.5)), q));
        break;
    case 1: /* p = p @ q: a matmul writes the output */
        outs[0] = kiln_assign(g, p, kiln_matmul(g, p, q));
        break;
    case 2: /* p = p^T + 1: element (i, j) reads (j, i), which another iteration writes */
        outs[0] = kiln_assign(g, p, kiln_add(g, kiln_transpose(g, p, 0, 1), kiln_scalar(g, 1)));
        break;
    case 3: /* a reduction of p runs after the update: it must read the old p */
        outs[0] = kiln_assign(g, p, kiln_mul(g, p, kiln_scalar(g, 2)));
        outs[1] = kiln_sum(g, p, -1, false);
        n = 2;
        break;
    case 4: { /* a gather that can fail runs after the update */
        kiln_tensor *ids = kiln_input(g, "ids", KILN_I64, KILN_SHAPE(2));
        outs[0] = kiln_assign(g, p, kiln_mul(g, p, kiln_scalar(g, 2)));
        outs[1] = kiln_embedding(g, q, ids);
        n = 2;
        break;
    }
    default: fail();
    }
    assert_int_equal(kiln_entry(g, "step", n, outs, NULL), KILN_OK);
    ku_assert_ok(g);
    return g;
}

static void test_which_copies_become_shares(void **state)
{
    (void)state;
    static const struct {
        int copies, shares;
    } want[] = {{0, 1}, {1, 0}, {1, 0}, {1, 0}, {1, 0}};
    for (int which = 0; which < 5; which++) {
        kiln_graph *g = graph(which);
        kprogram *p = program(g);
        shapes(p, 0, want[which].copies, want[which].shares);
        kp_free(p);
        kiln_graph_free(g);
    }
}

/* Adam over an MLP: every param and both moments of each are updated in
 * place; the values after three steps are the
 * interpreter's. */
static void test_optimizer_updates_in_place(void **state)
{
    (void)state;
    const int64_t sizes[] = {6, 5, 3};
    kiln_graph *g = ku_mlp(4, sizes, 2, kiln_adam(0.1, 0.9, 0.999, 1e-8));
    kprogram *p = program(g);
    /* 4 params and 2 moments each; the step counter stays a copy: the updates
     * after its own read it */
    shapes(p, 0, 1, 3 * 4);
    kp_free(p);
    kiln_module *c = ku_compile_for(g, KILN_TARGET_C), *r = ku_compile_for(g, KILN_TARGET_INTERP);
    float x[4 * 6];
    int64_t y[4] = {0, 2, 1, 2};
    for (int i = 0; i < 4 * 6; i++)
        x[i] = (float)((i * 7) % 11) / 11.0f - 0.4f;
    kiln_module *ms[2] = {c, r};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(kiln_module_set(ms[k], "x", x, sizeof x), KILN_OK);
        assert_int_equal(kiln_module_set(ms[k], "y", y, sizeof y), KILN_OK);
        for (int s = 0; s < 3; s++)
            assert_int_equal(kiln_module_run(ms[k], "train"), KILN_OK);
    }
    static const char *const names[] = {
        "w0", "train.new.w0", "w0.exp_avg_sq", "train.new.w0.exp_avg_sq", "b1", "train.new.b1"};
    for (int i = 0; i < 6; i++) {
        float a[30], b[30];
        size_t n = i < 4 ? sizeof(float) * 30 : sizeof(float) * 3;
        assert_int_equal(kiln_module_get(c, names[i], a, n), KILN_OK);
        assert_int_equal(kiln_module_get(r, names[i], b, n), KILN_OK);
        for (size_t j = 0; j < n / sizeof(float); j++)
            assert_float_equal(a[j], b[j], 1e-6);
    }
    kiln_module_free(c);
    kiln_module_free(r);
    kiln_graph_free(g);
}

/* "step.0" is p's storage: it reads as p, moves with p when p is bound and
 * unbound, and cannot be bound itself. */
static void test_output_is_the_params_storage(void **state)
{
    (void)state;
    kiln_graph *g = graph(0);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    float p[16], q[16], out[16], host[16];
    assert_int_equal(kiln_module_get(m, "p", p, sizeof p), KILN_OK);
    assert_int_equal(kiln_module_get(m, "q", q, sizeof q), KILN_OK);
    assert_int_equal(kiln_module_run(m, "step"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "step.0", out, sizeof out), KILN_OK);
    for (int i = 0; i < 16; i++)
        assert_true(out[i] == p[i] * 0.5f + q[i]);
    /* bound: the update lands in the user's memory, and step.0 reads it */
    memcpy(host, out, sizeof host);
    assert_int_equal(kiln_module_bind(m, "p", host), KILN_OK);
    assert_int_equal(kiln_module_run(m, "step"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "step.0", out, sizeof out), KILN_OK);
    for (int i = 0; i < 16; i++) {
        float want = (p[i] * 0.5f + q[i]) * 0.5f + q[i];
        assert_true(host[i] == want);
        assert_true(out[i] == want);
    }
    /* unbound: the module's own copy again, still shared */
    assert_int_equal(kiln_module_bind(m, "p", NULL), KILN_OK);
    host[0] = -1000; /* no longer the module's */
    assert_int_equal(kiln_module_run(m, "step"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "step.0", out, sizeof out), KILN_OK);
    assert_int_equal(kiln_module_get(m, "p", p, sizeof p), KILN_OK);
    assert_memory_equal(out, p, sizeof p);
    assert_true(out[0] != -1000 * 0.5f + q[0]);
    kiln_status s = kiln_module_bind(m, "step.0", host);
    assert_module_error(m, s, KILN_ERR_INVALID,
                        "kiln_module_bind: 'step.0' is 'p' updated in place (the same "
                        "storage): bind 'p'");
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* A training step whose label check fails leaves every param as it was (the
 * check runs before the updates, which are in place). */
static void test_failed_step_changes_nothing(void **state)
{
    (void)state;
    const int64_t sizes[] = {3, 2};
    kiln_graph *g = ku_mlp(2, sizes, 1, kiln_sgd(0.5, 0, 0));
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    float w[6], after[6];
    assert_int_equal(kiln_module_get(m, "w0", w, sizeof w), KILN_OK);
    assert_int_equal(kiln_module_set(m, "x", (const float[]){1, 2, 3, 4, 5, 6}, 24), KILN_OK);
    assert_int_equal(kiln_module_set(m, "y", (const int64_t[]){0, 7}, 16), KILN_OK);
    kiln_status s = kiln_module_run(m, "train");
    assert_module_error(m, s, KILN_ERR_INVALID, "out of bounds");
    assert_int_equal(kiln_module_get(m, "w0", after, sizeof after), KILN_OK);
    assert_memory_equal(after, w, sizeof w);
    assert_int_equal(kiln_module_set(m, "y", (const int64_t[]){0, 1}, 16), KILN_OK);
    assert_int_equal(kiln_module_run(m, "train"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "w0", after, sizeof after), KILN_OK);
    assert_memory_not_equal(after, w, sizeof w);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_which_copies_become_shares),
        cmocka_unit_test(test_optimizer_updates_in_place),
        cmocka_unit_test(test_output_is_the_params_storage),
        cmocka_unit_test(test_failed_step_changes_nothing),
    };
    return ku_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
