/*
 * test_fuse.c - golden fusion tests and the passes' error paths.
 *
 * Each file in tests/golden/fuse/ holds cases split by a line "// -----".
 * A case is a .kir graph, a line "// expect:", and the kp_print text of the
 * program pass_pipeline makes from it. Expression lines ("    x..") are left
 * out unless the case has a line "# full", so most goldens read as a fusion
 * report: kernels, their domains, the graph nodes they cover and their stores.
 * KILN_UPDATE_GOLDEN=1 rewrites the files with what the passes print now.
 */
#include "ir/ir.h"
#include "passes/passes.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The program of a .kir text as the golden form; NULL on a parse or pass error. */
static char *lower_text(const char *kir, bool full, char *err, size_t errlen)
{
    kiln_graph *g = kiln_graph_parse(kir, err, errlen);
    if (!g)
        return NULL;
    kprogram *p = NULL;
    char *out = NULL;
    if (pass_pipeline(g, &p) == KILN_OK) {
        size_t len = 0;
        char *buf = NULL;
        FILE *f = open_memstream(&buf, &len);
        assert_non_null(f);
        assert_int_equal(kp_print(p, f), KILN_OK);
        fclose(f);
        out = calloc(len + 1, 1);
        assert_non_null(out);
        size_t o = 0;
        for (char *line = buf; line && *line;) {
            char *nl = strchr(line, '\n');
            size_t n = nl ? (size_t)(nl - line) + 1 : strlen(line);
            if (full || strncmp(line, "    x", 5) != 0) {
                memcpy(out + o, line, n);
                o += n;
            }
            line += n;
        }
        free(buf);
    } else {
        snprintf(err, errlen, "%s", kiln_graph_error(g));
    }
    kp_free(p);
    kiln_graph_free(g);
    return out;
}

static void run_golden(const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tests/golden/fuse/%s", KILN_SOURCE_DIR, file);
    char *text = ku_read_file(path, NULL);
    assert_non_null(text);
    bool update = getenv("KILN_UPDATE_GOLDEN") != NULL;
    size_t cap = strlen(text) * 4 + 65536, used = 0;
    char *rewritten = calloc(cap, 1);
    assert_non_null(rewritten);
    int failures = 0, ncases = 0;
    const char *sep = "// -----\n";
    for (char *c = text; c && *c;) {
        char *end = strstr(c, sep);
        if (end)
            *end = 0;
        char *exp = strstr(c, "// expect:\n");
        assert_non_null(exp);
        *exp = 0;
        const char *want = exp + strlen("// expect:\n");
        bool full = strstr(c, "# full\n") != NULL;
        char err[512] = "";
        char *got = lower_text(c, full, err, sizeof err);
        if (!got) {
            fprintf(stderr, "%s case %d: %s\n", file, ncases, err);
            fail();
        }
        if (strcmp(got, want) != 0 && !update) {
            fprintf(stderr, "%s case %d differs.\n--- expected\n%s--- got\n%s", file, ncases, want,
                    got);
            failures++;
        }
        used += (size_t)snprintf(rewritten + used, cap - used, "%s// expect:\n%s%s", c, got,
                                 end ? sep : "");
        free(got);
        ncases++;
        c = end ? end + strlen(sep) : NULL;
    }
    if (update) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(rewritten, f);
        fclose(f);
    }
    free(rewritten);
    free(text);
    assert_true(ncases > 0);
    assert_int_equal(failures, 0);
}

static void test_golden_elementwise(void **state)
{
    (void)state;
    run_golden("elementwise.kir");
}

static void test_golden_reduce(void **state)
{
    (void)state;
    run_golden("reduce.kir");
}

static void test_golden_matmul(void **state)
{
    (void)state;
    run_golden("matmul.kir");
}

static void test_golden_views(void **state)
{
    (void)state;
    run_golden("views.kir");
}

/* ---- the passes' own contracts and error paths ------------------------------------- */

static void test_dce_cse(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *unused = kiln_input(g, "unused", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *a = kiln_exp(g, x), *b = kiln_exp(g, x);
    kiln_tensor *dead = kiln_sin(g, x);
    kiln_tensor *r1 = kiln_rand(g, KILN_F32, KILN_SHAPE(3)),
                *r2 = kiln_rand(g, KILN_F32, KILN_SHAPE(3));
    kiln_tensor *y = kiln_add(g, kiln_add(g, a, b), kiln_add(g, r1, r2));
    (void)unused;
    (void)dead;
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    int before = g->nnodes;
    assert_int_equal(pass_dce(g), KILN_OK);
    assert_int_equal(g->nnodes, before - 1); /* sin is dead; the unused input stays */
    assert_int_equal(pass_cse(g), KILN_OK);
    assert_int_equal(g->nnodes, before - 2); /* one exp; both rands stay */
    for (int i = 0; i < g->nnodes; i++) {
        assert_int_equal(g->nodes[i]->id, i);
        for (int k = 0; k < g->nodes[i]->nin; k++)
            assert_true(g->nodes[i]->in[k]->id < i);
    }
    assert_ptr_equal(g->entries[0].outputs[0], g->nodes[g->nnodes - 1]);
    assert_int_equal(ir_verify(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_null_arguments(void **state)
{
    (void)state;
    kprogram *p = (kprogram *)1;
    assert_int_equal(pass_pipeline(NULL, &p), KILN_ERR_INVALID);
    assert_null(p);
    kiln_graph *g = kiln_graph_new();
    assert_int_equal(pass_pipeline(g, NULL), KILN_ERR_INVALID);
    assert_int_equal(pass_dce(NULL), KILN_ERR_INVALID);
    assert_int_equal(pass_cse(NULL), KILN_ERR_INVALID);
    assert_int_equal(pass_compact(g, NULL), KILN_ERR_INVALID);
    assert_int_equal(pass_fuse(NULL, NULL), KILN_ERR_INVALID);
    assert_int_equal(pass_lower(g, NULL, &p), KILN_ERR_INVALID);
    assert_int_equal(pass_memplan(g, NULL), KILN_ERR_INVALID);
    assert_int_equal(kp_print(NULL, stderr), KILN_ERR_INVALID);
    assert_int_equal(kp_verify(NULL, NULL, 0), KILN_ERR_INVALID);
    assert_int_equal(kk_expr(NULL, (kx_node){.kind = KX_CONST}), -1);
    assert_int_equal(kk_store_add(NULL, (kk_store){0}), -1);
    assert_int_equal(kk_note_node(NULL, 0), -1);
    assert_null(kp_kernel_new(NULL, KK_POINTWISE));
    assert_int_equal(kp_buf_add(NULL, (kbuf){0}), -1);
    kp_free(NULL);
    fuse_plan_free(NULL);
    /* an empty graph lowers to an empty program */
    assert_int_equal(pass_pipeline(g, &p), KILN_OK);
    assert_int_equal(p->nkernels, 0);
    kp_free(p);
    kiln_graph_free(g);
}

/* A plan that does not match the graph is refused. */
static void test_lower_plan_mismatch(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *y = kiln_exp(g, x);
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    fuse_plan *plan = NULL;
    assert_int_equal(pass_fuse(g, &plan), KILN_OK);
    plan->nnodes--;
    kprogram *p = NULL;
    assert_int_equal(pass_lower(g, plan, &p), KILN_ERR_INVALID);
    assert_null(p);
    fuse_plan_free(plan);
    kiln_graph_free(g);
}

/* The builders hash-cons and fold index arithmetic. */
static void test_kernel_builders(void **state)
{
    (void)state;
    kprogram p = {0};
    kernel *k = kp_kernel_new(&p, KK_POINTWISE);
    assert_non_null(k);
    k->rank = 1;
    k->dims[0] = 4;
    int v = kk_var(k, 0);
    assert_int_equal(kk_var(k, 0), v);
    int one = kk_const_i(k, KILN_I64, 1), zero = kk_const_i(k, KILN_I64, 0);
    kx_node mul = {.kind = KX_OP, .dtype = KILN_I64, .op = IR_MUL, .a = {v, one}};
    assert_int_equal(kk_expr(k, mul), v);
    kx_node add = {.kind = KX_OP, .dtype = KILN_I64, .op = IR_ADD, .a = {zero, v}};
    assert_int_equal(kk_expr(k, add), v);
    kx_node mod = {.kind = KX_IMOD, .dtype = KILN_I64, .a = {v, one}};
    assert_int_equal(kk_expr(k, mod), zero);
    int six = kk_const_i(k, KILN_I64, 6), four = kk_const_i(k, KILN_I64, 4);
    kx_node div = {.kind = KX_IDIV, .dtype = KILN_I64, .a = {six, four}};
    int q = kk_expr(k, div);
    assert_int_equal(k->x[q].kind, KX_CONST);
    assert_int_equal(k->x[q].ivalue, 1);
    kx_node lt = {.kind = KX_OP, .dtype = KILN_BOOL, .op = IR_LT, .a = {four, six}};
    int c = kk_expr(k, lt);
    assert_true(k->x[c].kind == KX_CONST && k->x[c].value == 1.0);
    kx_node w = {.kind = KX_OP, .dtype = KILN_I64, .op = IR_WHERE, .a = {c, v, six}};
    assert_int_equal(kk_expr(k, w), v);
    /* float constants are rounded to their dtype; an i32 constant saturates */
    int f = kk_const_f(k, KILN_F32, 0.1);
    assert_true(k->x[f].value == (double)0.1f);
    int s = kk_const_f(k, KILN_I32, 1e12);
    assert_int_equal(k->x[s].ivalue, INT32_MAX);
    assert_int_equal(kk_note_node(k, 5), 0);
    assert_int_equal(kk_note_node(k, 2), 0);
    assert_int_equal(kk_note_node(k, 5), 1);
    assert_int_equal(k->nnodes, 2);
    /* the verifier finds an operand that does not precede its user */
    kx_node bad = {.kind = KX_OP, .dtype = KILN_F32, .op = IR_EXP, .a = {k->nx + 3}};
    assert_true(kk_expr(k, bad) >= 0);
    char msg[128];
    assert_int_equal(kp_verify(&p, msg, sizeof msg), KILN_ERR_INVALID);
    assert_non_null(strstr(msg, "does not precede"));
    ir_free(p.kernels[0].x);
    ir_free(p.kernels[0].xmap);
    ir_free(p.kernels[0].nodes);
    ir_free(p.kernels);
}

/* A select sinks below the ops its branches share, loads included, down to
 * where they differ; an index offset of 0 is matched with the others; checks
 * do not sink (each branch's check must still run). */
static void test_select_sinking(void **state)
{
    (void)state;
    kprogram p = {0};
    kernel *k = kp_kernel_new(&p, KK_POINTWISE);
    assert_non_null(k);
    k->rank = 2;
    k->dims[0] = k->dims[1] = 4;
    int v0 = kk_var(k, 0), v1 = kk_var(k, 1), two = kk_const_i(k, KILN_I64, 2);
    int three = kk_const_i(k, KILN_I64, 3);
    int c = kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_BOOL, .op = IR_LT, .a = {v0, two}});
    int shifted =
        kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_I64, .op = IR_ADD, .a = {two, v1}});
    int la = kk_expr(k, (kx_node){.kind = KX_LOAD, .dtype = KILN_F32, .buf = 0, .a = {shifted}});
    int lb = kk_expr(k, (kx_node){.kind = KX_LOAD, .dtype = KILN_F32, .buf = 0, .a = {v1}});
    int w =
        kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_F32, .op = IR_WHERE, .a = {c, la, lb}});
    /* one load at (where(c, 2, 0) + v1) */
    assert_int_equal(k->x[w].kind, KX_LOAD);
    const kx_node *ix = &k->x[k->x[w].a[0]];
    assert_true(ix->kind == KX_OP && ix->op == IR_ADD && ix->a[1] == v1);
    const kx_node *off = &k->x[ix->a[0]];
    assert_true(off->kind == KX_OP && off->op == IR_WHERE && off->a[0] == c && off->a[1] == two);
    assert_true(k->x[off->a[2]].kind == KX_CONST && k->x[off->a[2]].ivalue == 0);
    /* loads of different buffers stay two loads under the select */
    int lc = kk_expr(k, (kx_node){.kind = KX_LOAD, .dtype = KILN_F32, .buf = 1, .a = {v1}});
    w = kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_F32, .op = IR_WHERE, .a = {c, la, lc}});
    assert_true(k->x[w].kind == KX_OP && k->x[w].op == IR_WHERE && k->x[w].a[1] == la);
    /* the same pure op sinks; checks stay where they were */
    int e = kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_F32, .op = IR_EXP, .a = {la}});
    int f = kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_F32, .op = IR_EXP, .a = {lc}});
    w = kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_F32, .op = IR_WHERE, .a = {c, e, f}});
    assert_true(k->x[w].kind == KX_OP && k->x[w].op == IR_EXP);
    int ca = kk_expr(k, (kx_node){.kind = KX_CHECK, .dtype = KILN_I64, .a = {v1}, .size = 3});
    int cb = kk_expr(k, (kx_node){.kind = KX_CHECK, .dtype = KILN_I64, .a = {three}, .size = 3});
    w = kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_I64, .op = IR_WHERE, .a = {c, ca, cb}});
    assert_true(k->x[w].kind == KX_OP && k->x[w].op == IR_WHERE && k->x[w].a[1] == ca &&
                k->x[w].a[2] == cb);
    ir_free(p.kernels[0].x);
    ir_free(p.kernels[0].xmap);
    ir_free(p.kernels[0].nodes);
    ir_free(p.kernels);
}

/* A sum of more than CHEAP_LOADS loads read through a broadcast that the
 * kernel cannot hoist gets its own kernel: a 2x2 window (window 1), or a
 * trailing broadcast that a select and a permute move inward (window 2, as
 * max-pool's gradient: [.., o, o, 4] -> [.., 2o, 2o]); broadcast along
 * trailing axes (a row's value over the row, window 0) it is inlined. */
static void test_broadcast_reads(void **state)
{
    (void)state;
    for (int window = 0; window < 3; window++) {
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *s = NULL;
        for (int i = 0; i < 3; i++) {
            char name[8];
            snprintf(name, sizeof name, "x%d", i);
            kiln_tensor *x = kiln_input(g, name, KILN_F32, KILN_SHAPE(4, 4));
            s = s ? kiln_add(g, s, x) : x;
        }
        kiln_tensor *y;
        if (window == 2) {
            kiln_tensor *r = kiln_reshape(g, s, 3, (const int64_t[]){4, 4, 1});
            r = kiln_expand(g, r, 3, (const int64_t[]){4, 4, 4});
            kiln_tensor *m = kiln_input(g, "m", KILN_BOOL, KILN_SHAPE(4, 4, 4));
            r = kiln_where(g, m, r, kiln_scalar(g, 0));
            r = kiln_reshape(g, r, 4, (const int64_t[]){4, 4, 2, 2});
            r = kiln_permute(g, r, (const int[]){0, 2, 1, 3});
            y = kiln_reshape(g, r, 2, (const int64_t[]){8, 8});
        } else if (window) {
            kiln_tensor *r = kiln_reshape(g, s, 4, (const int64_t[]){4, 1, 4, 1});
            r = kiln_expand(g, r, 4, (const int64_t[]){4, 2, 4, 2});
            y = kiln_exp(g, kiln_reshape(g, r, 2, (const int64_t[]){8, 8}));
        } else {
            kiln_tensor *r = kiln_reshape(g, s, 3, (const int64_t[]){4, 4, 1});
            y = kiln_exp(g, kiln_expand(g, r, 3, (const int64_t[]){4, 4, 8}));
        }
        assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
        fuse_plan *plan = NULL;
        assert_int_equal(pass_fuse(g, &plan), KILN_OK);
        assert_int_equal(plan->kind[s->id], window ? FUSE_ROOT : FUSE_INLINE);
        fuse_plan_free(plan);
        kiln_graph_free(g);
    }
}

/* A sum over one axis of where(position == e, v, 0), e not depending on the
 * position, lowers to one load of v at e (a pointwise kernel, no loop over
 * the axis): max-pool's value; a select of another form stays a reduction.
 * tests/unit/test_lower.c checks the values, out-of-range e included. */
static void test_onehot_sum(void **state)
{
    (void)state;
    for (int form = 0; form < 2; form++) {
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *v = kiln_input(g, "v", KILN_F32, KILN_SHAPE(3, 4));
        kiln_tensor *e = kiln_input(g, "e", KILN_I64, KILN_SHAPE(3, 1));
        kiln_tensor *i = kiln_arange(g, KILN_I64, 0, 4, 1);
        kiln_tensor *hit = form ? kiln_lt(g, i, e) : kiln_eq(g, e, i);
        kiln_tensor *y = kiln_sum(g, kiln_where(g, hit, v, kiln_scalar(g, 0)), 1, false);
        assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
        kprogram *p = NULL;
        assert_int_equal(pass_pipeline(g, &p), KILN_OK);
        assert_int_equal(p->nkernels, 1);
        assert_int_equal(p->kernels[0].kind, form ? KK_REDUCE : KK_POINTWISE);
        assert_int_equal(p->kernels[0].rrank, form ? 1 : 0);
        kp_free(p);
        kiln_graph_free(g);
    }
}

/* A kernel whose root reshapes an inlined node loops over that node's axes:
 * an im2col stored as [N, 9C, HW] (taps [N, C, 9, H, W]) loops over 5 axes,
 * so its indices need no division by W. */
static void test_reshape_root_domain(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3, 8, 8));
    kiln_tensor *t[9];
    for (int i = 0; i < 9; i++)
        t[i] = kiln_slice(g, kiln_slice(g, x, 2, i / 3, i / 3 + 6, 1), 3, i % 3, i % 3 + 6, 1);
    kiln_tensor *y = kiln_reshape(g, kiln_stack(g, 9, t, 2), 3, (const int64_t[]){2, 27, 36});
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(g, &p), KILN_OK);
    assert_int_equal(p->nkernels, 1);
    const kernel *k = &p->kernels[0];
    assert_int_equal(k->kind, KK_POINTWISE);
    assert_int_equal(k->rank, 5);
    const int64_t want[5] = {2, 3, 9, 6, 6};
    assert_memory_equal(k->dims, want, sizeof want);
    kp_free(p);
    kiln_graph_free(g);
}

/* conv2d is an implicit GEMM: its matmul reads the padded input in place,
 * its k axis (c, i, j) and its column axis (y, x) walking the input's axes as
 * parts; so do the weight gradient's operands (the image folded into k). */
static void test_conv_implicit_gemm(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3, 6, 6));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(4, 3, 3, 3), kiln_init_zeros());
    kiln_tensor *y = kiln_conv2d(g, x, w, NULL, (kiln_conv_opts){.padding = {1, 1}});
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(g, &p), KILN_OK);
    assert_int_equal(p->nkernels, 2); /* the padded input, the GEMM */
    assert_int_equal(p->kernels[0].kind, KK_POINTWISE);
    const int64_t padded[4] = {2, 3, 8, 8};
    assert_memory_equal(p->kernels[0].dims, padded, sizeof padded);
    const kk_matmul *mm = &p->kernels[1].mm;
    assert_int_equal(p->kernels[1].kind, KK_MATMUL);
    assert_int_equal(mm->b, p->kernels[0].stores[0].buf);
    assert_int_equal(mm->k, 27);
    assert_int_equal(mm->n, 36);
    assert_int_equal(mm->b_stride[0], 3 * 64);
    assert_int_equal(mm->a_parts[0].n + mm->a_parts[1].n, 0);
    const kk_parts k = {3, {3, 3, 3}, {64, 8, 1}}, n = {2, {6, 6}, {8, 1}};
    assert_int_equal(mm->b_parts[0].n, k.n);
    assert_memory_equal(mm->b_parts[0].size, k.size, sizeof(int64_t) * 3);
    assert_memory_equal(mm->b_parts[0].stride, k.stride, sizeof(int64_t) * 3);
    assert_int_equal(mm->b_parts[1].n, n.n);
    assert_memory_equal(mm->b_parts[1].size, n.size, sizeof(int64_t) * 2);
    assert_memory_equal(mm->b_parts[1].stride, n.stride, sizeof(int64_t) * 2);
    kp_free(p);
    kiln_graph_free(g);
}

static void assert_parts(const kk_parts *pp, int n, const int64_t *size, const int64_t *stride)
{
    assert_int_equal(pp->n, n);
    assert_memory_equal(pp->size, size, sizeof(int64_t) * (size_t)n);
    assert_memory_equal(pp->stride, stride, sizeof(int64_t) * (size_t)n);
}

/* The input gradient of a padded convolution is a conv too: for stride 1 one
 * GEMM of the flipped weight [C, O*kh*kw] with the output gradient placed in
 * zeros ([N, O, H+2, W+2]), read in place, storing the unpadded input's
 * gradient (the border is never computed); for stride 2 one such GEMM per
 * phase (rows and columns even or odd), each with its own taps, so their
 * multiply-adds are the transposed convolution's own (no zero of a spread
 * gradient). No buffer has the columns' size (N*O*9*H*W). */
static void test_conv_input_grad_implicit(void **state)
{
    (void)state;
    for (int64_t s = 1; s <= 2; s++) {
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3, 6, 6));
        kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(4, 3, 3, 3), kiln_init_zeros());
        kiln_tensor *y =
            kiln_conv2d(g, x, w, NULL, (kiln_conv_opts){.stride = {s, s}, .padding = {1, 1}});
        kiln_tensor *loss = kiln_sum(g, kiln_mul(g, y, y), KILN_ALL, false), *dx = NULL;
        assert_int_equal(kiln_grad(g, loss, 1, &x, NULL, &dx), KILN_OK);
        assert_int_equal(kiln_entry(g, "f", 1, &dx, NULL), KILN_OK);
        kprogram *p = NULL;
        assert_int_equal(pass_pipeline(g, &p), KILN_OK);
        for (int i = 0; i < p->nbufs; i++)
            assert_true(p->bufs[i].numel < 2 * 4 * 9 * 36);
        if (s == 1) {
            const kernel *last = &p->kernels[p->nkernels - 1];
            assert_int_equal(last->kind, KK_MATMUL);
            const kk_matmul *mm = &last->mm;
            assert_int_equal(p->bufs[last->stores[0].buf].role, KB_OUTPUT);
            assert_int_equal(mm->batch, 2 * 1);
            assert_int_equal(mm->m, 3);
            assert_int_equal(mm->k, 4 * 9);
            assert_int_equal(mm->n, 36);
            assert_parts(&mm->b_parts[0], 3, (const int64_t[]){4, 3, 3},
                         (const int64_t[]){64, 8, 1});
            assert_parts(&mm->b_parts[1], 2, (const int64_t[]){6, 6}, (const int64_t[]){8, 1});
            assert_int_equal(p->bufs[mm->b].numel, 2 * 4 * 8 * 8);
        } else { /* the forward's GEMM, then one per phase: 1, 2, 2 and 4 taps */
            int gemms = 0, forward = 0;
            int64_t macs = 0;
            for (int i = 0; i < p->nkernels; i++) {
                const kk_matmul *mm = &p->kernels[i].mm;
                if (p->kernels[i].kind != KK_MATMUL)
                    continue;
                if (mm->m == 4) { /* the forward: 4 output channels */
                    forward++;
                    continue;
                }
                assert_int_equal(mm->m, 3);
                assert_int_equal(mm->n, 9);
                macs += mm->batch * mm->m * mm->n * mm->k;
                gemms++;
            }
            assert_int_equal(forward, 1);
            assert_int_equal(gemms, 4);
            assert_int_equal(macs, 2 * 4 * 3 * 3 * 3 * 9); /* N O C oh ow kh kw */
        }
        kp_free(p);
        kiln_graph_free(g);
    }
}

/* The weight gradient of a convolution whose weight the matmul broadcasts
 * over the batch: one matmul with the batch folded into k (autodiff), its
 * operands the output gradient and the padded input, both read in place. */
static void test_conv_weight_grad_folded(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3, 6, 6));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(4, 3, 3, 3), kiln_init_zeros());
    kiln_tensor *y = kiln_conv2d(g, x, w, NULL, (kiln_conv_opts){.padding = {1, 1}});
    kiln_tensor *loss = kiln_sum(g, kiln_mul(g, y, y), KILN_ALL, false), *dw = NULL;
    assert_int_equal(kiln_grad(g, loss, 1, &w, NULL, &dw), KILN_OK);
    assert_int_equal(kiln_entry(g, "f", 1, &dw, NULL), KILN_OK);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(g, &p), KILN_OK);
    const kernel *k = NULL;
    for (int i = 0; i < p->nkernels; i++)
        if (p->kernels[i].kind == KK_MATMUL && p->kernels[i].mm.batch == 1)
            k = &p->kernels[i];
    assert_non_null(k);
    const kk_matmul *mm = &k->mm;
    assert_int_equal(mm->m, 4);
    assert_int_equal(mm->n, 27);
    assert_int_equal(mm->k, 2 * 36); /* the batch folded into k */
    assert_int_equal(mm->a_parts[0].n, 0);
    assert_parts(&mm->a_parts[1], 2, (const int64_t[]){2, 36}, (const int64_t[]){144, 1});
    assert_parts(&mm->b_parts[0], 3, (const int64_t[]){2, 6, 6}, (const int64_t[]){192, 8, 1});
    assert_parts(&mm->b_parts[1], 3, (const int64_t[]){3, 3, 3}, (const int64_t[]){64, 8, 1});
    for (int i = 0; i < p->nkernels; i++) /* no sum over the batch after it */
        assert_false(p->kernels[i].kind == KK_REDUCE);
    kp_free(p);
    kiln_graph_free(g);
}

/* B operands of a matmul over x [4, 6, 5] (contiguous), as [rows, cols]. */
static kiln_tensor *view_case(kiln_graph *g, kiln_tensor *x, int c)
{
    kiln_tensor *xt = kiln_permute(g, x, (const int[]){0, 2, 1}); /* [4, 5, 6] */
    switch (c) {
    case 0: /* rows (4 x 30, 5 x 1): two parts */
        return kiln_reshape(g, xt, 2, (const int64_t[]){20, 6});
    case 1: /* [5, 6, 4] as [20, 6]: rows would end inside the 6 */
        return kiln_reshape(g, kiln_permute(g, x, (const int[]){2, 1, 0}), 2,
                            (const int64_t[]){20, 6});
    case 2: /* rows of five parts: [2, 2, 2, 3, 5] reversed as [120, 1] */
        return kiln_reshape(g,
                            kiln_permute(g, kiln_reshape(g, x, 5, (const int64_t[]){2, 2, 2, 3, 5}),
                                         (const int[]){4, 3, 2, 1, 0}),
                            2, (const int64_t[]){120, 1});
    case 3: /* every other row of case 0 */
        return kiln_slice(g, kiln_reshape(g, xt, 2, (const int64_t[]){20, 6}), 0, 0, 20, 2);
    default: { /* a stack of three columns of x: at 0, 2, 4 (even) or 0, 1, 3 */
        const int64_t at[2][3] = {{0, 2, 4}, {0, 1, 3}};
        kiln_tensor *sl[3];
        for (int i = 0; i < 3; i++)
            sl[i] = kiln_slice(g, x, 2, at[c - 4][i], at[c - 4][i] + 1, 1);
        return kiln_reshape(g, kiln_stack(g, 3, sl, 0), 2, (const int64_t[]){12, 6});
    }
    }
}

/* Views a matmul reads in place or not: a reshape that merges axes no stride
 * walks gives parts, and so does a stack of evenly spaced slabs; one that
 * would end an axis inside a part it does not divide, an axis of more than
 * KK_MAX_PARTS parts, a slice of an axis with parts and a stack of unevenly
 * spaced slabs are materialized first (a copy kernel). Values against the
 * interpreter. */
static void test_matmul_view_parts(void **state)
{
    (void)state;
    const struct {
        int kernels; /* 1: read in place; 2: a copy first */
        int nparts;  /* then B's row (k) axis parts */
    } want[6] = {{1, 2}, {2, 0}, {2, 0}, {2, 0}, {1, 2}, {2, 0}};
    for (int c = 0; c < 6; c++) {
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4, 6, 5));
        kiln_tensor *b = view_case(g, x, c);
        ku_assert_ok(g);
        kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(3, kiln_tensor_dim(b, 0)));
        kiln_tensor *y = kiln_matmul(g, a, b);
        ku_assert_ok(g);
        assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
        kiln_graph *copy = ir_graph_clone(g);
        assert_non_null(copy);
        kprogram *p = NULL;
        assert_int_equal(pass_pipeline(copy, &p), KILN_OK);
        assert_int_equal(p->nkernels, want[c].kernels);
        const kernel *k = &p->kernels[p->nkernels - 1];
        assert_int_equal(k->kind, KK_MATMUL);
        assert_int_equal(k->mm.b_parts[0].n, want[c].nparts);
        kp_free(p);
        kiln_graph_free(copy);
        /* the values: compiled (parts or a copy) against the interpreter */
        int64_t na = ir_numel(a), nx = 120, ny = ir_numel(y);
        float xv[120], av[3 * 120], out[2][3 * 120];
        for (int i = 0; i < nx; i++)
            xv[i] = (float)((i * 37) % 101 - 50) / 64;
        for (int64_t i = 0; i < na; i++)
            av[i] = (float)((i * 53) % 97 - 48) / 64;
        for (int t = 0; t < 2; t++) {
            kiln_module *m = ku_compile_for(g, t ? KILN_TARGET_C : KILN_TARGET_INTERP);
            assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
            assert_int_equal(kiln_module_set(m, "a", av, sizeof(float) * (size_t)na), KILN_OK);
            assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
            ku_get_f32(m, 0, out[t], (size_t)ny);
            kiln_module_free(m);
        }
        for (int64_t i = 0; i < ny; i++)
            assert_true(fabs((double)out[1][i] - (double)out[0][i]) <= 1e-5);
        kiln_graph_free(g);
    }
}

/* KILN_DEBUG=2 prints the graph after each graph pass and the program. */
static void test_debug_dump(void **state)
{
    (void)state;
    char err[256];
    kiln_graph *g = kiln_graph_parse("kiln 1 seed=0 streams=0\n%0 = input \"x\" : f32[2]\n"
                                     "%1 = exp %0 : f32[2]\nentry \"f\" (%1 -> \"f.0\")\n",
                                     err, sizeof err);
    assert_non_null(g);
    fflush(stderr);
    FILE *saved = tmpfile();
    assert_non_null(saved);
    int fd = dup(fileno(stderr));
    assert_true(fd >= 0);
    assert_true(dup2(fileno(saved), fileno(stderr)) >= 0);
    setenv("KILN_DEBUG", "2", 1);
    kprogram *p = NULL;
    kiln_status s = pass_pipeline(g, &p);
    unsetenv("KILN_DEBUG");
    fflush(stderr);
    dup2(fd, fileno(stderr));
    close(fd);
    assert_int_equal(s, KILN_OK);
    rewind(saved);
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof text - 1, saved);
    text[n] = 0;
    fclose(saved);
    assert_non_null(strstr(text, "graph after dce"));
    assert_non_null(strstr(text, "graph after cse"));
    assert_non_null(strstr(text, "k0_exp: pointwise [2]"));
    kp_free(p);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_elementwise),
        cmocka_unit_test(test_golden_reduce),
        cmocka_unit_test(test_golden_matmul),
        cmocka_unit_test(test_golden_views),
        cmocka_unit_test(test_dce_cse),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_lower_plan_mismatch),
        cmocka_unit_test(test_kernel_builders),
        cmocka_unit_test(test_select_sinking),
        cmocka_unit_test(test_broadcast_reads),
        cmocka_unit_test(test_onehot_sum),
        cmocka_unit_test(test_reshape_root_domain),
        cmocka_unit_test(test_conv_implicit_gemm),
        cmocka_unit_test(test_conv_weight_grad_folded),
        cmocka_unit_test(test_conv_input_grad_implicit),
        cmocka_unit_test(test_matmul_view_parts),
        cmocka_unit_test(test_debug_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
