/*
 * test_hfuse.c - horizontal fusion (passes/hfuse.c) on hand-built kernel
 * programs: which kernels merge and which must not (a value read at another
 * element, both writing one buffer, a kernel in between, a kernel that can
 * fail, another domain), that merged programs compute what the unmerged ones
 * do (the test evaluator, tests/unit/kp_eval.h), that forwarded temporaries
 * disappear and that scalar kernels move up out of the way.
 */
#include "kp_eval.h"
#include "passes/passes.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

enum { N = 13, M = 5 };

/* inputs and outputs first, temps after: fusion renumbers only temps */
static int buf(kprogram *p, kb_role role, int64_t n)
{
    int b = kp_buf_add(p, (kbuf){.role = role,
                                 .dtype = KILN_F32,
                                 .numel = n,
                                 .node = -1,
                                 .entry = role == KB_TEMP ? 0 : -1,
                                 .index = -1});
    assert_true(b >= 0);
    return b;
}

static kernel *kern(kprogram *p, const char *ops, int rank, int64_t n)
{
    kernel *k = kp_kernel_new(p, KK_POINTWISE);
    assert_non_null(k);
    snprintf(k->name, sizeof k->name, "k%d_%s", k->id, ops);
    k->rank = rank;
    k->dims[0] = n;
    return k;
}

static int nx(kernel *k, kx_node n)
{
    int i = kk_expr(k, n);
    assert_true(i >= 0);
    return i;
}

static int i0(kernel *k)
{
    return nx(k, (kx_node){.kind = KX_VAR, .dtype = KILN_I64, .var = 0});
}

static int ci(kernel *k, int64_t v)
{
    int i = kk_const_i(k, KILN_I64, v);
    assert_true(i >= 0);
    return i;
}

static int cf(kernel *k, double v)
{
    int i = kk_const_f(k, KILN_F32, v);
    assert_true(i >= 0);
    return i;
}

static int op2(kernel *k, ir_op o, kiln_dtype dt, int a, int b)
{
    return nx(k, (kx_node){.kind = KX_OP, .dtype = dt, .op = o, .a = {a, b}});
}

static int ld(kernel *k, int b, int idx)
{
    return nx(k, (kx_node){.kind = KX_LOAD, .dtype = KILN_F32, .buf = b, .a = {idx}});
}

static void st(kernel *k, int b, int idx, int v)
{
    assert_true(kk_store_add(k, (kk_store){b, idx, v, false, false}) >= 0);
}

/* N - 1 - i */
static int reversed(kernel *k)
{
    return op2(k, IR_SUB, KILN_I64, ci(k, N - 1), i0(k));
}

/* The programs of one case, by number; buffers 0 .. 3 are x (input), y, z,
 * w (outputs, numel N), 4 a scalar input, then temps. */
static kprogram *build(int which)
{
    kprogram *p = ir_alloc(sizeof *p);
    assert_non_null(p);
    memset(p, 0, sizeof *p);
    int x = buf(p, KB_INPUT, N), y = buf(p, KB_OUTPUT, N), z = buf(p, KB_OUTPUT, N);
    int w = buf(p, KB_OUTPUT, N), s = buf(p, KB_INPUT, 1);
    kernel *a, *b, *c;
    switch (which) {
    case 0: /* a temp read at the element written: merged, forwarded, dropped */
    case 1: /* ... read reversed: crosses iterations */
    {
        int t = buf(p, KB_TEMP, N);
        a = kern(p, "mul", 1, N);
        st(a, t, i0(a), op2(a, IR_MUL, KILN_F32, ld(a, x, i0(a)), cf(a, 2)));
        b = kern(p, "add", 1, N);
        int at = which == 0 ? i0(b) : reversed(b);
        st(b, y, i0(b), op2(b, IR_ADD, KILN_F32, ld(b, t, at), cf(b, 1)));
        break;
    }
    case 2: /* A reads z where B then writes it: the same element merges */
    case 3: /* ... another element does not */
        a = kern(p, "neg", 1, N);
        st(a, y, i0(a),
           op2(a, IR_MUL, KILN_F32, ld(a, z, which == 2 ? i0(a) : reversed(a)), cf(a, -3)));
        b = kern(p, "copy", 1, N);
        st(b, z, i0(b), ld(b, x, i0(b)));
        break;
    case 4: /* both write y */
        a = kern(p, "copy", 1, N);
        st(a, y, i0(a), ld(a, x, i0(a)));
        b = kern(p, "mul", 1, N);
        st(b, y, i0(b), op2(b, IR_MUL, KILN_F32, ld(b, x, i0(b)), cf(b, 2)));
        break;
    case 5: /* a kernel over [M] between writes u, which B reads */
    case 6: /* ... B does not read u: it moves up past that kernel (both merge
             * with their own domain's kernel) */
    {
        int u = buf(p, KB_TEMP, M);
        a = kern(p, "copy", 1, N);
        st(a, y, i0(a), ld(a, x, i0(a)));
        c = kern(p, "mul", 1, M);
        st(c, u, i0(c), op2(c, IR_MUL, KILN_F32, ld(c, x, i0(c)), cf(c, 4)));
        b = kern(p, "add", 1, N);
        int other = which == 5 ? ld(b, u, ci(b, 1)) : cf(b, 1);
        st(b, z, i0(b), op2(b, IR_ADD, KILN_F32, ld(b, x, i0(b)), other));
        c = kern(p, "sum", 1, M); /* the reader of u, so it is not dead */
        st(c, w, i0(c), ld(c, u, i0(c)));
        break;
    }
    case 7: /* B checks an index: it can fail, so it stays alone */
        a = kern(p, "copy", 1, N);
        st(a, y, i0(a), ld(a, x, i0(a)));
        b = kern(p, "gather", 1, N);
        st(b, z, i0(b),
           ld(b, x,
              nx(b, (kx_node){.kind = KX_CHECK, .dtype = KILN_I64, .a = {i0(b)}, .size = N})));
        break;
    case 8: /* another domain */
        a = kern(p, "copy", 1, N);
        st(a, y, i0(a), ld(a, x, i0(a)));
        b = kern(p, "copy", 1, M);
        st(b, z, i0(b), ld(b, x, i0(b)));
        break;
    case 9: /* a scalar kernel between two that merge moves up first */
    {
        int t = buf(p, KB_TEMP, 1);
        a = kern(p, "copy", 1, N);
        st(a, y, i0(a), ld(a, x, i0(a)));
        c = kern(p, "scale", 0, 1);
        st(c, t, ci(c, 0), op2(c, IR_MUL, KILN_F32, ld(c, s, ci(c, 0)), cf(c, 2)));
        b = kern(p, "mul", 1, N);
        st(b, z, i0(b), op2(b, IR_MUL, KILN_F32, ld(b, x, i0(b)), ld(b, t, ci(b, 0))));
        break;
    }
    default: fail();
    }
    ku_entry_all(p);
    return p;
}

/* Runs p on fixed inputs; returns y, z, w (3 N floats, malloc'd). */
static float *run(const kprogram *p)
{
    void **bufs = calloc((size_t)p->nbufs, sizeof(void *));
    float *out = calloc(3 * N, sizeof(float));
    assert_non_null(bufs);
    assert_non_null(out);
    for (int b = 0; b < p->nbufs; b++) {
        bufs[b] = calloc((size_t)p->bufs[b].numel + 1, sizeof(float));
        assert_non_null(bufs[b]);
        for (int64_t i = 0; i < p->bufs[b].numel; i++)
            ((float *)bufs[b])[i] = (float)(b * 100 + i) * 0.25f;
    }
    char msg[256] = "";
    if (!kpe_run(p, 0, bufs, 1, 0, msg, sizeof msg))
        fail_msg("%s", msg);
    for (int j = 0; j < 3; j++)
        memcpy(out + j * N, bufs[1 + j], sizeof(float) * N);
    for (int b = 0; b < p->nbufs; b++)
        free(bufs[b]);
    free(bufs);
    return out;
}

/* Fuses case `which`; checks its kernel count and its values against the
 * unfused program. Returns the fused program. */
static kprogram *fused(int which, int nkernels)
{
    kprogram *ref = build(which), *p = build(which);
    kiln_graph *g = kiln_graph_new();
    assert_int_equal(pass_hfuse(g, p), KILN_OK);
    char msg[256];
    if (kp_verify(p, msg, sizeof msg) != KILN_OK)
        fail_msg("case %d: %s", which, msg);
    if (p->entries[0].nkernels != nkernels || p->nkernels != nkernels)
        fail_msg("case %d: %d kernels, want %d", which, p->entries[0].nkernels, nkernels);
    float *want = run(ref), *got = run(p);
    assert_memory_equal(got, want, sizeof(float) * 3 * N);
    free(want);
    free(got);
    kp_free(ref);
    kiln_graph_free(g);
    return p;
}

static void test_forwarded_temp(void **state)
{
    (void)state;
    kprogram *p = fused(0, 1);
    assert_int_equal(p->nbufs, 5); /* the temp is gone */
    assert_string_equal(p->kernels[0].name, "k0_mul_add");
    for (int i = 0; i < p->kernels[0].nx; i++)
        assert_false(p->kernels[0].x[i].kind == KX_LOAD && p->kernels[0].x[i].buf >= 5);
    kp_free(p);
    kp_free(fused(1, 2)); /* reversed: no merge, the temp stays */
}

static void test_write_after_read(void **state)
{
    (void)state;
    kp_free(fused(2, 1));
    kp_free(fused(3, 2));
}

static void test_both_write(void **state)
{
    (void)state;
    kp_free(fused(4, 2));
}

static void test_kernels_between(void **state)
{
    (void)state;
    /* B stays below the kernel that writes what it reads; that kernel and
     * the other reader of u over [M] merge */
    kprogram *p = fused(5, 3);
    int wide = 0;
    for (int i = 0; i < p->nkernels; i++)
        wide += p->kernels[i].dims[0] == N;
    assert_int_equal(wide, 2);
    kp_free(p);
    p = fused(6, 2);
    /* the [N] kernels first, merged; then the [M] ones */
    assert_int_equal(p->kernels[p->entries[0].kernels[0]].dims[0], N);
    assert_int_equal(p->kernels[p->entries[0].kernels[1]].dims[0], M);
    kp_free(p);
}

static void test_failing_and_other_domain(void **state)
{
    (void)state;
    kp_free(fused(7, 2));
    kp_free(fused(8, 2));
}

static void test_scalar_hoisted(void **state)
{
    (void)state;
    kprogram *p = fused(9, 2);
    /* ids follow execution order: the scalar kernel runs first */
    assert_int_equal(p->entries[0].kernels[0], 0);
    assert_int_equal(p->kernels[0].rank, 0);
    assert_string_equal(p->kernels[1].name, "k1_copy_mul");
    kp_free(p);
}

/* Every failed allocation in the pass is KILN_ERR_NOMEM with its message, and
 * leaves a valid program that still computes what the unmerged one does. */
static void test_out_of_memory(void **state)
{
    (void)state;
    const int cases[3] = {0, 6, 9};
    for (int c = 0; c < 3; c++)
        for (int fail = 0;; fail++) {
            kprogram *ref = build(cases[c]), *p = build(cases[c]);
            kiln_graph *g = kiln_graph_new();
            kiln_set_allocator(&ku_failing_allocator);
            ku_fail_after = fail;
            kiln_status st = pass_hfuse(g, p);
            ku_fail_after = -1;
            kiln_set_allocator(NULL);
            char msg[256];
            assert_int_equal(kp_verify(p, msg, sizeof msg), KILN_OK);
            float *want = run(ref), *got = run(p);
            assert_memory_equal(got, want, sizeof(float) * 3 * N);
            free(want);
            free(got);
            bool done = st == KILN_OK;
            if (!done) {
                assert_int_equal(st, KILN_ERR_NOMEM);
                assert_non_null(strstr(kiln_graph_error(g), "kiln_compile: out of memory"));
            }
            kp_free(ref);
            kp_free(p);
            kiln_graph_free(g);
            if (done) {
                assert_true(fail > 2);
                break;
            }
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forwarded_temp),
        cmocka_unit_test(test_write_after_read),
        cmocka_unit_test(test_both_write),
        cmocka_unit_test(test_kernels_between),
        cmocka_unit_test(test_failing_and_other_domain),
        cmocka_unit_test(test_scalar_hoisted),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
