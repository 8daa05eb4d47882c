/*
 * test_alloc.c - out-of-memory behaviour through the allocator hook.
 *
 * A counting allocator fails the n-th allocation, for every n until a build
 * succeeds. Each failure must surface as KILN_ERR_NOMEM (or a NULL graph from
 * kiln_graph_new), never a crash, and freeing the graph must release every
 * allocation that succeeded (live count back to zero).
 */
#include "ir/ir.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static struct {
    long calls;   /* allocations attempted since reset */
    long fail_at; /* the allocation that fails; -1 = none */
    long live;    /* allocations not yet freed */
} A;

static void *count_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (A.calls++ == A.fail_at)
        return NULL;
    void *p = realloc(ptr, size);
    if (p && !ptr)
        A.live++;
    return p;
}

static void count_free(void *ctx, void *ptr)
{
    (void)ctx;
    if (ptr)
        A.live--;
    free(ptr);
}

static const kiln_allocator counting = {count_realloc, count_free, NULL};

static void reset(long fail_at)
{
    A.calls = 0;
    A.fail_at = fail_at;
    A.live = 0;
}

/* A graph touching every kind of builder: leaves, views, math, reductions, nn. */
static kiln_status build(kiln_graph *g)
{
    kiln_graph_seed(g, 7);
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4, 3));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2, 3), kiln_init_kaiming_uniform());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(2), kiln_init_kaiming_uniform());
    float data[6] = {1, 2, 3, 4, 5, 6};
    kiln_tensor *c = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2, 3), data);
    kiln_tensor *h = kiln_relu(g, kiln_linear(g, x, w, b));
    kiln_tensor *s = kiln_softmax(g, h, -1);
    kiln_tensor *ls = kiln_log_softmax(g, h, 1);
    kiln_tensor *m = kiln_matmul(g, kiln_transpose(g, c, 0, 1), c);
    kiln_tensor *v = kiln_slice(g, kiln_reshape(g, m, KILN_SHAPE(-1)), 0, 1, 8, 2);
    kiln_tensor *r = kiln_add(g, kiln_sum(g, v, KILN_ALL, false), kiln_scalar(g, 2.5));
    kiln_tensor *a = kiln_argmax(g, s, 1, false);
    kiln_tensor *lin = kiln_linspace(g, KILN_F32, 0, 1, 5);
    kiln_tensor *rn = kiln_randn(g, KILN_F32, KILN_SHAPE(3, 3));
    kiln_tensor *st = kiln_stack(g, 2, (kiln_tensor *[]){lin, lin}, 0);
    int64_t labels_data[4] = {0, 1, 1, 0};
    kiln_tensor *labels = kiln_tensor_from(g, KILN_I64, KILN_SHAPE(4), labels_data);
    kiln_tensor *loss = kiln_cross_entropy(g, h, labels);
    kiln_tensor *upd = kiln_assign(g, w, kiln_mul(g, w, kiln_scalar(g, 0.5)));
    kiln_tensor *outs[] = {s, ls, r, a, rn, st, loss, upd};
    return kiln_entry(g, "step", 8, outs, NULL);
}

static void test_builders_survive_every_failed_allocation(void **state)
{
    (void)state;
    kiln_set_allocator(&counting);
    long n;
    for (n = 0;; n++) {
        reset(n);
        kiln_graph *g = kiln_graph_new();
        if (!g) {
            assert_int_equal(A.live, 0);
            continue;
        }
        kiln_status s = build(g);
        bool failed = A.calls > n;
        if (failed) {
            assert_int_equal(s, KILN_ERR_NOMEM);
            assert_int_equal(kiln_graph_status(g), KILN_ERR_NOMEM);
            assert_non_null(strstr(kiln_graph_error(g), "out of memory"));
        }
        kiln_graph_free(g);
        assert_int_equal(A.live, 0);
        if (!failed) {
            assert_int_equal(s, KILN_OK);
            break;
        }
    }
    kiln_set_allocator(NULL);
    assert_true(n > 3); /* the graph really did allocate several times */
}

static void test_compile_and_run_survive_every_failed_allocation(void **state)
{
    (void)state;
    kiln_set_allocator(&counting);
    long n;
    for (n = 0;; n++) {
        reset(-1);
        kiln_graph *g = kiln_graph_new();
        assert_non_null(g);
        assert_int_equal(build(g), KILN_OK);
        long before = A.live;
        A.calls = 0;
        A.fail_at = n;
        kiln_compile_opts opts = {.target = KILN_TARGET_INTERP};
        kiln_module *m = NULL;
        kiln_status s = kiln_compile(g, &opts, &m);
        if (s == KILN_OK) {
            float x[12] = {0};
            s = kiln_module_set(m, "x", x, sizeof(x));
            if (s == KILN_OK)
                s = kiln_module_run(m, "step");
            if (s != KILN_OK) {
                assert_int_equal(s, KILN_ERR_NOMEM);
                assert_non_null(strstr(kiln_module_error(m), "out of memory"));
            }
        } else {
            assert_int_equal(s, KILN_ERR_NOMEM);
            assert_null(m);
        }
        bool failed = A.calls > n;
        kiln_module_free(m);
        assert_int_equal(A.live, before);
        kiln_graph_free(g);
        assert_int_equal(A.live, 0);
        if (!failed) {
            assert_int_equal(s, KILN_OK);
            break;
        }
    }
    kiln_set_allocator(NULL);
    assert_true(n > 3);
}

static void test_null_allocator_restores_default(void **state)
{
    (void)state;
    kiln_set_allocator(&counting);
    reset(-1);
    kiln_graph *g = kiln_graph_new();
    assert_true(A.live > 0);
    kiln_graph_free(g);
    assert_int_equal(A.live, 0);
    kiln_set_allocator(NULL);
    g = kiln_graph_new();
    assert_int_equal(A.live, 0); /* the counting hook is no longer called */
    kiln_graph_free(g);
}

/* Tensor storage: ir_calloc is zeroed and ir_alloc_huge is whole writable
 * memory for ir_free, with the default hook (calloc, huge pages) and with a
 * user hook, which sees every one of them and can refuse them. */
static void test_tensor_storage(void **state)
{
    (void)state;
    enum { BIG = 5 << 20 };
    for (int hooked = 0; hooked < 2; hooked++) {
        kiln_set_allocator(hooked ? &counting : NULL);
        reset(-1);
        unsigned char *z = ir_calloc(BIG), *h = ir_alloc_huge(BIG);
        assert_non_null(z);
        assert_non_null(h);
        for (size_t i = 0; i < BIG; i += 4093)
            assert_int_equal(z[i], 0);
        memset(h, 0xA5, BIG);
        assert_int_equal(h[BIG - 1], 0xA5);
        assert_int_equal(A.live, hooked ? 2 : 0);
        ir_free(z);
        ir_free(h);
        assert_int_equal(A.live, 0);
        if (hooked) {
            reset(0);
            assert_null(ir_calloc(16));
            reset(0);
            assert_null(ir_alloc_huge(BIG));
        }
    }
    kiln_set_allocator(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builders_survive_every_failed_allocation),
        cmocka_unit_test(test_compile_and_run_survive_every_failed_allocation),
        cmocka_unit_test(test_null_allocator_restores_default),
        cmocka_unit_test(test_tensor_storage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
