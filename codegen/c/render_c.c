/*
 * render_c.c - the C renderer: a kprogram as one C99 translation unit.
 *
 * Requires a verified kprogram (kp_verify) and its graph (p->g, for the
 * kernel header comments). Produces helpers, embedded constants, one static
 * function per kernel (loop nest with literal bounds; every kx node a const
 * local in dependency order, hoisted to the outermost loop it depends on;
 * OpenMP on outer loops when asked and worth it), one kiln_entry_<i> per
 * entry and kiln_abi (runtime/abi.h). Expressions come from codegen/c/expr.c,
 * shared with the CUDA renderer; this file owns loops, reductions and GEMM.
 */
#include "codegen/c/cgen.h"
#include "codegen/c/expr.h"
#include "runtime/abi.h"

#include <ctype.h>
#include <string.h>

/* Below this many loop iterations a kernel runs on one thread. */
enum { PAR_WORK = 1 << 15 };
/* GEMM cache blocks: a MM_MB x MM_NB double tile (64 KiB) stays in L2 while
 * MM_KB rows of B stream through it. In the packed path a B micro-panel of
 * MM_KB x NR floats (24 KiB) stays in L1 while A's panels stream past it
 * (192 measured a little better than 128 and 256 on SGEMM and the MLP). */
enum { MM_MB = 32, MM_NB = 256, MM_KB = 192 };
/* The packed f32 path's tiles are taller: B's packed KB x NB block is reused
 * by all MB rows, and A's packed MB x K row block by all of a thread's tiles
 * in that row (on the stack up to MM_APK_STACK bytes, else on the heap up
 * to MM_APK_MAX; past that each tile packs its own). 256 x 256 measured best
 * of 128..384 x 256 for SGEMM 512..4096 on a 2-core Zen 4 (2048: 145 -> 175
 * GFLOP/s from 128 rows); the f64 tile is 512 KiB of the thread's stack. */
enum { MM_PMB = 256, MM_PNB = 256, MM_APK_STACK = 512 << 10, MM_APK_MAX = 64 << 20 };

typedef struct {
    cgen_buf *b;
    const kprogram *p;
    const kernel *k;
    cgen_opts o;
    bool *need;         /* the node reaches a store or the reduce body */
    bool *post;         /* REDUCE: the node reads the accumulator */
    bool *done;         /* already declared in an enclosing scope */
    int *lev;           /* the loop depth it can be computed at (0 = before every loop) */
    unsigned char *use; /* per buffer: 1 read, 2 written */
    bool *plain;        /* cgen_plain_nodes */
    bool *chunk;        /* POINTWISE: an f32 rand/randn filled a chunk at a time */
    bool *defer;        /* REDUCE by columns: the node needs the last kept variable */
    bool inner;         /* REDUCE by columns: emitting inside the innermost loop */
    bool fails, rng;
    cgen_ectx e;
} kr;

/* ---- small printing helpers ------------------------------------------------------ */

static size_t column(const cgen_buf *b)
{
    size_t i = b->len;
    while (i > 0 && b->s[i - 1] != '\n')
        i--;
    return b->len - i;
}

/* Names and graph text go into comments: keep them printable, never close the
 * comment, and never form k<digits>_ (reserved for kernel names). */
static void comment_text(cgen_buf *b, const char *s)
{
    int state = 0; /* 1: after 'k', 2: after 'k' and digits */
    for (; s && *s; s++) {
        char c = *s;
        if (!isalnum((unsigned char)c) && !strchr("_.-:[], ", c))
            c = '?';
        if (c == '_' && state == 2)
            c = '-';
        state = c == 'k' ? 1 : (state >= 1 && isdigit((unsigned char)c)) ? 2 : 0;
        char t[2] = {c, 0};
        cgen_puts(b, t);
    }
}

static void dims_text(cgen_buf *b, int rank, const int64_t *dims)
{
    cgen_puts(b, "[");
    for (int i = 0; i < rank; i++)
        cgen_printf(b, "%s%lld", i ? ", " : "", (long long)dims[i]);
    cgen_puts(b, "]");
}

/* The kernel's C name: k->name when it is k<id>_<identifier>, else k<id>_kernel. */
static void kernel_name(cgen_buf *b, const kernel *k)
{
    char want[24];
    snprintf(want, sizeof want, "k%d_", k->id);
    size_t n = strlen(want), len = strnlen(k->name, sizeof k->name);
    bool ok = len > n && strncmp(k->name, want, n) == 0;
    for (size_t i = n; ok && i < len; i++)
        ok = isalnum((unsigned char)k->name[i]) || k->name[i] == '_';
    if (ok)
        cgen_printf(b, "%.*s", (int)len, k->name);
    else
        cgen_printf(b, "k%d_kernel", k->id);
}

static void pragma_for(kr *r, int ind, int collapse, const char *extra)
{
    cgen_indent(r->b, ind);
    cgen_puts(r->b, "#pragma omp parallel for");
    if (collapse > 1)
        cgen_printf(r->b, " collapse(%d)", collapse);
    cgen_printf(r->b, " schedule(static)%s num_threads(kiln_threads(ctx))\n", extra);
}

static void close_to(kr *r, int from, int to)
{
    for (int d = from; d > to; d--) {
        cgen_indent(r->b, d);
        cgen_puts(r->b, "}\n");
    }
}

/* ---- node placement -------------------------------------------------------------- */

static int var_level(const kernel *k, int var)
{
    if (k->kind == KK_MATMUL)
        return var == 2 ? 2 : 1; /* epilogue loops: (b, i) rows, then j */
    return var + 1;
}

static void mark(kr *r, int i)
{
    if (i >= 0 && i < r->k->nx)
        r->need[i] = true;
}

static int rng_chunk_base(const kr *r, int i);

/* need[]: the nodes that reach a store, the reduce body or a check; a chunked
 * rng node needs only its base, not its index. */
static void mark_needs(kr *r)
{
    const kernel *k = r->k;
    memset(r->need, 0, (size_t)k->nx + 1);
    for (int i = 0; i < k->nstores; i++) {
        mark(r, k->stores[i].index);
        mark(r, k->stores[i].value);
    }
    if (k->kind == KK_REDUCE)
        mark(r, k->body);
    /* a bounds check runs even when no store reads its value (a gather from
     * a table whose elements are all equal needs no index, only the check) */
    for (int i = 0; i < k->nx; i++)
        if (k->x[i].kind == KX_CHECK)
            mark(r, i);
    for (int i = k->nx - 1; i >= 0; i--) {
        int ops[3], ar = cgen_operands(&k->x[i], ops);
        if (r->need[i] && r->chunk[i])
            mark(r, rng_chunk_base(r, i));
        else if (r->need[i])
            for (int j = 0; j < ar; j++)
                mark(r, ops[j]);
    }
}

static void place_nodes(kr *r)
{
    const kernel *k = r->k;
    mark_needs(r);
    for (int i = 0; i < k->nx; i++) {
        const kx_node *n = &k->x[i];
        int ops[3], ar = cgen_operands(n, ops), lev = 0;
        bool post = false;
        if (n->kind == KX_VAR)
            lev = var_level(k, n->var);
        if (n->kind == KX_ACC) {
            lev = k->kind == KK_MATMUL ? 2 : k->kind == KK_REDUCE ? k->rank : 0;
            post = k->kind == KK_REDUCE;
        }
        for (int j = 0; j < ar; j++)
            if (ops[j] >= 0 && ops[j] < i) {
                lev = r->lev[ops[j]] > lev ? r->lev[ops[j]] : lev;
                post = post || r->post[ops[j]];
            }
        r->lev[i] = lev;
        r->post[i] = post;
        if (!r->need[i])
            continue;
        r->fails = r->fails || cgen_node_fails(r->e.lang, k, i);
        r->rng = r->rng || n->kind == KX_RAND || n->kind == KX_RANDN;
        if (n->kind == KX_LOAD && n->buf >= 0 && n->buf < r->p->nbufs)
            r->use[n->buf] |= 1;
    }
    for (int i = 0; i < k->nstores; i++)
        if (k->stores[i].buf >= 0 && k->stores[i].buf < r->p->nbufs)
            r->use[k->stores[i].buf] |= 2;
    if (k->kind == KK_MATMUL) {
        if (k->mm.a >= 0 && k->mm.a < r->p->nbufs)
            r->use[k->mm.a] |= 1;
        if (k->mm.b >= 0 && k->mm.b < r->p->nbufs)
            r->use[k->mm.b] |= 1;
    }
}

static const char *node_desc(const kx_node *n)
{
    switch (n->kind) {
    case KX_CONST: return "const";
    case KX_VAR: return "var";
    case KX_LOAD: return "load";
    case KX_OP: return n->op >= 0 && n->op < IR_OP_COUNT ? ir_ops[n->op].name : "?";
    case KX_IDIV: return "idiv";
    case KX_IMOD: return "imod";
    case KX_RAND: return "rand";
    case KX_RANDN: return "randn";
    case KX_CHECK: return "check";
    case KX_ACC: return "acc";
    }
    return "?";
}

/* Declares every needed node of the phase computable at loop depth `depth`. */
static void emit_at(kr *r, int depth, bool post, int ind)
{
    const kernel *k = r->k;
    for (int i = 0; i < k->nx; i++) {
        if (!r->need[i] || r->done[i] || r->post[i] != post || r->lev[i] > depth ||
            (r->defer && r->defer[i] && !r->inner && !post && depth > r->k->rank))
            continue;
        r->done[i] = true;
        if (cgen_inline(&k->x[i]))
            continue;
        cgen_indent(r->b, ind);
        if (r->chunk[i])
            cgen_printf(r->b, "const float v%d = rn%d[i%d - c%d];", i, i, k->rank - 1, k->rank - 1);
        else
            cgen_decl(r->b, &r->e, i);
        if (r->o.debug_comments)
            cgen_printf(r->b, " /* x%d %s */", i, node_desc(&k->x[i]));
        cgen_puts(r->b, "\n");
    }
}

/* Nodes a REDUCE kernel needs after its reduction but cannot have there. */
static void emit_leftovers(kr *r, int ind)
{
    for (int i = 0; i < r->k->nx; i++)
        if (r->need[i] && !r->done[i]) {
            cgen_indent(r->b, ind);
            cgen_printf(r->b, "#error \"kernel IR: x%d is used outside its loops\"\n", i);
            r->done[i] = true;
        }
}

static void emit_stores(kr *r, int ind)
{
    for (int i = 0; i < r->k->nstores; i++)
        cgen_store(r->b, &r->e, r->p, &r->k->stores[i], ind, false);
}

static bool serial(const kernel *k)
{
    bool s = k->serial;
    for (int i = 0; i < k->nstores; i++)
        s = s || k->stores[i].accumulate;
    return s;
}

/* How many outer loops one `omp parallel for` covers (0: none). */
static int outer_collapse(const kr *r, int64_t work)
{
    const kernel *k = r->k;
    if (!r->o.openmp || serial(k) || k->rank == 0 || work < PAR_WORK ||
        ir_shape_numel(k->rank, k->dims) < 2)
        return 0;
    /* a short first axis leaves threads idle; collapse it with the next */
    return k->rank >= 2 && k->dims[0] < 64 ? 2 : 1;
}

/* Opens the first n loops, declaring each node at the outermost loop it can
 * live in (with collapse(c), nothing may sit between the first c loops). */
static void open_outer(kr *r, int col, int n)
{
    const kernel *k = r->k;
    emit_at(r, 0, false, 1);
    for (int d = 0; d < n; d++) {
        if (d == 0 && col)
            pragma_for(r, 1, col, "");
        cgen_indent(r->b, d + 1);
        cgen_printf(r->b, "for (int64_t i%d = 0; i%d < %lld; i%d++) {\n", d, d,
                    (long long)k->dims[d], d);
        if (d + 1 >= col)
            emit_at(r, d + 1, false, d + 2);
    }
}

/* ---- POINTWISE ------------------------------------------------------------------- */

/* An f32 rand or randn node whose element index is the innermost loop
 * variable plus a value computed outside that loop can be filled KILN_RCHUNK
 * values at a time, a Philox block per 4 elements and vectorized over blocks,
 * into a small buffer the loop then reads: no random tensor is materialized
 * and no block is computed 4 times. Returns the added node, -1 when the index
 * is the variable alone, -2 when node i is not such a node. */
static int rng_chunk_base(const kr *r, int i)
{
    const kernel *k = r->k;
    const kx_node *n = &k->x[i];
    int inner = k->rank - 1;
    if (k->kind != KK_POINTWISE || k->rank < 1 || !r->need[i] || n->dtype != KILN_F32 ||
        (n->kind != KX_RAND && n->kind != KX_RANDN) || n->a[0] < 0 || n->a[0] >= i)
        return -2;
    const kx_node *x = &k->x[n->a[0]];
    if (x->kind == KX_VAR && x->var == inner)
        return -1;
    if (x->kind != KX_OP || x->op != IR_ADD)
        return -2;
    for (int s = 0; s < 2; s++) {
        int v = x->a[s], o = x->a[1 - s];
        if (v >= 0 && v < n->a[0] && o >= 0 && o < n->a[0] && k->x[v].kind == KX_VAR &&
            k->x[v].var == inner && r->lev[o] < k->rank)
            return o;
    }
    return -2;
}

static void render_pointwise(kr *r)
{
    const kernel *k = r->k;
    cgen_buf *b = r->b;
    int col = outer_collapse(r, ir_shape_numel(k->rank, k->dims)), nchunk = 0;
    for (int i = 0; i < k->nx; i++)
        nchunk += r->chunk[i] = rng_chunk_base(r, i) >= -1;
    if (nchunk)
        mark_needs(r); /* their indices may be needed no more */
    if (!nchunk) {
        open_outer(r, col, k->rank);
        emit_leftovers(r, k->rank + 1);
        emit_stores(r, k->rank + 1);
        close_to(r, k->rank, 0);
        return;
    }
    /* the innermost loop d runs in chunks: fill, then consume */
    int d = k->rank - 1;
    long long dim = (long long)k->dims[d];
    open_outer(r, col, d);
    if (d == 0 && col)
        pragma_for(r, 1, col, "");
    cgen_indent(b, d + 1);
    cgen_printf(b, "for (int64_t c%d = 0; c%d < %lld; c%d += KILN_RCHUNK) {\n", d, d, dim, d);
    emit_at(r, d, false, d + 2);
    cgen_indent(b, d + 2);
    cgen_printf(b, "const int64_t e%d = c%d + KILN_RCHUNK < %lld ? c%d + KILN_RCHUNK : %lld;\n", d,
                d, dim, d, dim);
    for (int i = 0; i < k->nx; i++) {
        if (!r->chunk[i])
            continue;
        int base = rng_chunk_base(r, i);
        cgen_indent(b, d + 2);
        cgen_printf(b, "float rnb%d[KILN_RCHUNK + 8];\n", i);
        cgen_indent(b, d + 2);
        cgen_printf(b, "const float *restrict rn%d = kiln_%s_f32_chunk(ctx->seed, %uu, ctx->run,\n",
                    i, k->x[i].kind == KX_RANDN ? "randn" : "rand", (unsigned)k->x[i].stream);
        cgen_indent(b, d + 3);
        cgen_puts(b, "(uint64_t)(");
        if (base >= 0) {
            cgen_operand(b, &r->e, base);
            cgen_puts(b, " + ");
        }
        cgen_printf(b, "c%d), e%d - c%d, rnb%d);\n", d, d, d, i);
    }
    cgen_indent(b, d + 2);
    cgen_printf(b, "for (int64_t i%d = c%d; i%d < e%d; i%d++) {\n", d, d, d, d, d);
    emit_at(r, d + 1, false, d + 3);
    emit_leftovers(r, d + 3);
    emit_stores(r, d + 3);
    close_to(r, d + 2, d);
    close_to(r, d, 0);
}

/* ---- REDUCE ---------------------------------------------------------------------- */

/* True when an index node is `v + something` or `v` alone: loads through it
 * walk memory contiguously as loop variable v runs. */
static bool unit_stride(const kernel *k, int idx, int v)
{
    if (idx < 0 || idx >= k->nx)
        return false;
    const kx_node *n = &k->x[idx];
    if (n->kind == KX_VAR)
        return n->var == v;
    if (n->kind != KX_OP || n->op != IR_ADD)
        return false;
    for (int s = 0; s < 2; s++)
        if (n->a[s] >= 0 && n->a[s] < idx && k->x[n->a[s]].kind == KX_VAR && k->x[n->a[s]].var == v)
            return true;
    return false;
}

/* A float sum whose loads run contiguously along the last kept axis and not
 * along the innermost reduced one (a sum over rows: a bias gradient) is
 * better computed a block of kept columns at a time, each reduced row adding
 * into a vector of accumulators: see render_reduce_columns. */
static bool by_columns(const kr *r)
{
    const kernel *k = r->k;
    if (k->rop != IR_SUM || !ir_dtype_is_float(k->acc_dtype) || k->rank < 1 || k->rrank < 1 ||
        k->dims[k->rank - 1] < 16 || r->fails)
        return false;
    int last = k->rank - 1, red = k->rank + k->rrank - 1;
    bool along_last = false;
    for (int i = 0; i < k->nx; i++)
        if (r->need[i] && !r->post[i] && k->x[i].kind == KX_LOAD) {
            if (unit_stride(k, k->x[i].a[0], red))
                return false;
            along_last = along_last || unit_stride(k, k->x[i].a[0], last);
        }
    return along_last;
}

enum { COLS = 64 };

/* The sum over the reduced axes for COLS columns of the last kept axis at a
 * time: accv[COLS] in the accumulator's dtype, the reduced loops outside and
 * the columns innermost (contiguous loads that vectorize), then the epilogue
 * per column. Nodes that need the last kept variable are computed in the
 * innermost loop (and again in the epilogue loop when it needs them). */
static void render_reduce_columns(kr *r, int col)
{
    const kernel *k = r->k;
    cgen_buf *b = r->b;
    int last = k->rank - 1;
    long long dim = (long long)k->dims[last];
    for (int i = 0; i < k->nx; i++) { /* defer: depends on the last kept variable */
        int ops[3], ar = cgen_operands(&k->x[i], ops);
        r->defer[i] = k->x[i].kind == KX_VAR && k->x[i].var == last;
        for (int j = 0; j < ar; j++)
            r->defer[i] = r->defer[i] || (ops[j] >= 0 && ops[j] < i && r->defer[ops[j]]);
    }
    open_outer(r, col > last ? last : col, last);
    if (last == 0 && col)
        pragma_for(r, 1, 0, "");
    int ind = last + 1;
    cgen_indent(b, ind);
    cgen_printf(b, "for (int64_t c%d = 0; c%d < %lld; c%d += %d) {\n", last, last, dim, last, COLS);
    cgen_indent(b, ind + 1);
    cgen_printf(b, "const int64_t e%d = c%d + %d < %lld ? c%d + %d : %lld;\n", last, last, COLS,
                dim, last, COLS, dim);
    cgen_indent(b, ind + 1);
    cgen_printf(b, "%s accv[%d] = {0};\n", cgen_ctype(k->acc_dtype), COLS);
    for (int j = 0; j < k->rrank; j++) {
        int d = k->rank + j;
        cgen_indent(b, ind + 1 + j);
        cgen_printf(b, "for (int64_t i%d = 0; i%d < %lld; i%d++) {\n", d, d, (long long)k->rdims[j],
                    d);
        emit_at(r, d + 1, false, ind + 2 + j);
    }
    int in = ind + 1 + k->rrank;
    cgen_indent(b, in);
    cgen_printf(b, "for (int64_t i%d = c%d; i%d < e%d; i%d++) {\n", last, last, last, last, last);
    /* only what the body reads: the epilogue's per-column nodes come later */
    bool *body = ir_alloc((size_t)k->nx + 1), *hidden = ir_alloc((size_t)k->nx + 1);
    if (!body || !hidden) {
        b->oom = true;
        ir_free(body);
        ir_free(hidden);
        return;
    }
    memset(body, 0, (size_t)k->nx + 1);
    if (k->body >= 0 && k->body < k->nx)
        body[k->body] = true;
    for (int i = k->nx - 1; i >= 0; i--) {
        int ops[3], ar = cgen_operands(&k->x[i], ops);
        for (int j = 0; j < ar && body[i]; j++)
            if (ops[j] >= 0 && ops[j] < i)
                body[ops[j]] = true;
        hidden[i] = r->need[i] && r->defer[i] && !body[i];
        r->need[i] = r->need[i] && !hidden[i];
    }
    r->inner = true;
    emit_at(r, k->rank + k->rrank, false, in + 1);
    r->inner = false;
    for (int i = 0; i < k->nx; i++)
        r->need[i] = r->need[i] || hidden[i];
    ir_free(body);
    ir_free(hidden);
    cgen_indent(b, in + 1);
    cgen_printf(b, "accv[i%d - c%d] += ", last, last);
    cgen_body_as(b, &r->e, k->acc_dtype);
    cgen_puts(b, ";\n");
    close_to(r, in, ind);
    /* the epilogue, per column: what it needs of the last variable again */
    for (int i = 0; i < k->nx; i++)
        if (r->defer[i] && r->lev[i] <= k->rank)
            r->done[i] = false;
    cgen_indent(b, ind + 1);
    cgen_printf(b, "for (int64_t i%d = c%d; i%d < e%d; i%d++) {\n", last, last, last, last, last);
    cgen_indent(b, ind + 2);
    cgen_printf(b, "const %s acc = accv[i%d - c%d];\n", cgen_ctype(k->acc_dtype), last, last);
    r->e.acc = "acc";
    emit_at(r, k->rank, false, ind + 2);
    emit_at(r, k->rank, true, ind + 2);
    emit_leftovers(r, ind + 2);
    emit_stores(r, ind + 2);
    close_to(r, ind + 1, ind - 1);
    close_to(r, last, 0);
}

static void render_reduce(kr *r)
{
    const kernel *k = r->k;
    cgen_buf *b = r->b;
    if (k->body < 0 || k->body >= k->nx) {
        cgen_puts(b, "#error \"kernel IR: reduce without a body\"\n");
        return;
    }
    int64_t outer = ir_shape_numel(k->rank, k->dims), red = ir_shape_numel(k->rrank, k->rdims);
    bool isum = k->rop == IR_SUM && !ir_dtype_is_float(k->acc_dtype);
    bool arg = k->rop == IR_ARGMAX || k->rop == IR_ARGMIN;
    /* a whole-tensor sum splits its first reduced loop across threads */
    bool fullpar = r->o.openmp && !serial(k) && k->rank == 0 && k->rop == IR_SUM && k->rrank >= 1 &&
                   red >= PAR_WORK;
    /* sums may be reassociated (DESIGN.md); kiln_fail's critical section may
     * not sit in a simd loop */
    bool simd = r->o.openmp && k->rop == IR_SUM && k->rrank >= 1 && !r->fails;
    if (by_columns(r)) {
        render_reduce_columns(r, outer_collapse(r, outer * red));
        return;
    }
    open_outer(r, outer_collapse(r, outer * red), k->rank);
    int ind = k->rank + 1;
    cgen_indent(b, ind);
    if (isum) {
        cgen_puts(b, "uint64_t acc = 0;\n");
        r->e.acc = k->acc_dtype == KILN_I64 ? "(int64_t)acc" : "kiln_bad_acc";
        if (k->acc_dtype == KILN_I32)
            r->e.acc = "(int32_t)acc";
        else if (k->acc_dtype == KILN_BOOL)
            r->e.acc = "(acc != 0)";
    } else {
        cgen_printf(b, "%s acc = ", cgen_ctype(k->acc_dtype));
        if (k->rop == IR_SUM || arg)
            cgen_puts(b, "0");
        else
            cgen_reduce_init(b, k->rop, k->acc_dtype);
        cgen_puts(b, ";\n");
        r->e.acc = "acc";
    }
    if (arg) {
        kiln_dtype bdt = k->x[k->body].dtype;
        cgen_indent(b, ind);
        cgen_printf(b, "%s best = ", cgen_ctype(bdt));
        cgen_reduce_init(b, k->rop, bdt);
        cgen_puts(b, ";\n");
    }
    for (int j = 0; j < k->rrank; j++) {
        int d = k->rank + j;
        bool inner = j == k->rrank - 1;
        if (j == 0 && fullpar)
            pragma_for(r, d + 1, 0, " reduction(+ : acc)");
        if (inner && simd && !(j == 0 && fullpar)) {
            cgen_indent(b, d + 1);
            cgen_puts(b, "#pragma omp simd reduction(+ : acc)\n");
        }
        cgen_indent(b, d + 1);
        cgen_printf(b, "for (int64_t i%d = 0; i%d < %lld; i%d++) {\n", d, d, (long long)k->rdims[j],
                    d);
        emit_at(r, d + 1, false, d + 2);
    }
    cgen_reduce_combine(b, &r->e, k->rank + k->rrank + 1);
    close_to(r, k->rank + k->rrank, k->rank);
    emit_at(r, k->rank, true, ind);
    emit_leftovers(r, ind);
    emit_stores(r, ind);
    close_to(r, k->rank, 0);
}

/* ---- MATMUL ---------------------------------------------------------------------- */

/* " + i0 * 12 + p" for the nonzero strides */
static void offset_terms(cgen_buf *b, int n, const char *const *vars, const int64_t *strides)
{
    for (int i = 0; i < n; i++) {
        if (strides[i] == 0)
            continue;
        cgen_printf(b, " + %s", vars[i]);
        if (strides[i] != 1)
            cgen_printf(b, " * %lld", (long long)strides[i]);
    }
}

static bool empty_domain(const kernel *k)
{
    switch (k->kind) {
    case KK_POINTWISE:
    case KK_REDUCE: return ir_shape_numel(k->rank, k->dims) == 0;
    case KK_MATMUL: return k->mm.batch * k->mm.m * k->mm.n == 0;
    }
    return false;
}

/* GEMM tiles go through one shared function per layout and dtypes, not a loop
 * nest per kernel: clang then unrolls and schedules each inner loop once per
 * translation unit (an MLP train step has eleven matmuls), which is most of a
 * cold compile's time. The function adds A[i, k0:k1] @ B[k0:k1, j] into a
 * tile of the accumulator type; its strides are arguments. Layouts:
 *   ROWS     B's rows are contiguous along j: tile rows += a * B row (axpy)
 *   DOT      B is read along k and A's rows are contiguous: dot products
 *   STRIDED  anything else (axpy over a strided B row) */
typedef enum { MMV_ROWS, MMV_DOT, MMV_STRIDED, MMV_PACKED } mm_variant;

/* The packed microkernel's register block: MR rows x NR columns of f32
 * accumulators in VL-wide vectors (AVX-512: 12 of 32 registers; AVX2: 12 of
 * 16). Generated code is built with -march=native for the host whose
 * features the caller passed (cgen_host_features); the CPU is in the compile
 * cache's key. */
static void mm_block(const cgen_opts *o, int *mr, int *nr, int *vl)
{
    bool wide = o->features & CGEN_AVX512F;
    *mr = wide ? 6 : 4;
    *nr = wide ? 32 : 24;
    *vl = wide ? 16 : 8;
}

static mm_variant mm_variant_of(const kprogram *p, const kernel *k)
{
    const kk_matmul *mm = &k->mm;
    if (k->acc_dtype == KILN_F64 && p->bufs[mm->a].dtype == KILN_F32 &&
        p->bufs[mm->b].dtype == KILN_F32)
        return MMV_PACKED;
    if (mm->b_stride[2] == 1)
        return MMV_ROWS;
    return mm->b_stride[1] == 1 && mm->a_stride[2] == 1 ? MMV_DOT : MMV_STRIDED;
}

/* "kiln_mm_rows_f64_f32_f32": layout, accumulator, A and B dtypes. */
static void mm_fn_name(cgen_buf *b, const kprogram *p, const kernel *k)
{
    static const char *const layout[] = {"rows", "dot", "strided", "packed"};
    const kk_matmul *mm = &k->mm;
    cgen_printf(b, "kiln_mm_%s_%s_%s_%s", layout[mm_variant_of(p, k)],
                ir_dtype_is_float(k->acc_dtype) ? ir_dtype_kir(k->acc_dtype) : "u64",
                ir_dtype_kir(p->bufs[mm->a].dtype), ir_dtype_kir(p->bufs[mm->b].dtype));
}

static bool mm_operands_ok(const kprogram *p, const kernel *k)
{
    return k->mm.a >= 0 && k->mm.a < p->nbufs && k->mm.b >= 0 && k->mm.b < p->nbufs;
}

/* Register-blocked bodies of the ROWS and DOT tile functions: a 4 x 16
 * block of the tile (ROWS: 4 rows of a broadcast against 16 contiguous
 * elements of B's row) or 4 x 4 dot products over 8-wide chunks of k (DOT)
 * stays in registers for the whole k range, then is added to the tile; the
 * edges past the last whole block take the plain loops. KILN_UNROLL is a
 * per-loop pragma: the code is compiled with -fno-unroll-loops, so only
 * these block loops unroll, into straight-line code the SLP vectorizer packs
 * into vector registers. TT, TA and TB are the accumulator, A and B types. */
static const char mm_rows_body[] =
    "    (void)sb2;\n"
    "    int64_t i = 0;\n"
    "    for (; i + 4 <= mi; i += 4) {\n"
    "        int64_t j = 0;\n"
    "        for (; j + 16 <= nj; j += 16) {\n"
    "            TT acc[4][16] = {{0}};\n"
    "            for (int64_t p = k0; p < k1; p++) {\n"
    "                const TB *restrict brow = b + p * sb1 + j;\n"
    "                KILN_UNROLL\n"
    "                for (int r = 0; r < 4; r++) {\n"
    "                    const TT av = (TT)a[(i + r) * sa1 + p * sa2];\n"
    "                    KILN_UNROLL\n"
    "                    for (int c = 0; c < 16; c++)\n"
    "                        acc[r][c] += av * (TT)brow[c];\n"
    "                }\n"
    "            }\n"
    "            KILN_UNROLL\n"
    "            for (int r = 0; r < 4; r++)\n"
    "                for (int c = 0; c < 16; c++)\n"
    "                    tile[(i + r) * ldt + j + c] += acc[r][c];\n"
    "        }\n"
    "        for (int r = 0; r < 4 && j < nj; r++) /* the columns past the last 16 */\n"
    "            for (int64_t p = k0; p < k1; p++) {\n"
    "                const TT av = (TT)a[(i + r) * sa1 + p * sa2];\n"
    "                for (int64_t c = j; c < nj; c++)\n"
    "                    tile[(i + r) * ldt + c] += av * (TT)b[p * sb1 + c];\n"
    "            }\n"
    "    }\n"
    "    for (; i < mi; i++) /* the rows past the last 4 */\n"
    "        for (int64_t p = k0; p < k1; p++) {\n"
    "            const TT av = (TT)a[i * sa1 + p * sa2];\n"
    "            const TB *restrict brow = b + p * sb1;\n"
    "            for (int64_t c = 0; c < nj; c++)\n"
    "                tile[i * ldt + c] += av * (TT)brow[c];\n"
    "        }\n";

static const char mm_dot_body[] =
    "    (void)sa2;\n"
    "    (void)sb1;\n"
    "    int64_t i = 0;\n"
    "    for (; i + 4 <= mi; i += 4) {\n"
    "        int64_t j = 0;\n"
    "        for (; j + 4 <= nj; j += 4) {\n"
    "            TT acc[4][4][8] = {{{0}}};\n"
    "            int64_t p = k0;\n"
    "            for (; p + 8 <= k1; p += 8) {\n"
    "                KILN_UNROLL\n"
    "                for (int r = 0; r < 4; r++) {\n"
    "                    KILN_UNROLL\n"
    "                    for (int c = 0; c < 4; c++) {\n"
    "                        KILN_UNROLL\n"
    "                        for (int v = 0; v < 8; v++)\n"
    "                            acc[r][c][v] += (TT)a[(i + r) * sa1 + p + v] *\n"
    "                                            (TT)b[(j + c) * sb2 + p + v];\n"
    "                    }\n"
    "                }\n"
    "            }\n"
    "            for (int r = 0; r < 4; r++)\n"
    "                for (int c = 0; c < 4; c++) {\n"
    "                    TT s = 0;\n"
    "                    for (int v = 0; v < 8; v++)\n"
    "                        s += acc[r][c][v];\n"
    "                    for (int64_t q = p; q < k1; q++) /* k past the last 8 */\n"
    "                        s += (TT)a[(i + r) * sa1 + q] * (TT)b[(j + c) * sb2 + q];\n"
    "                    tile[(i + r) * ldt + j + c] += s;\n"
    "                }\n"
    "        }\n"
    "        for (int r = 0; r < 4; r++) /* the columns past the last 4 */\n"
    "            for (int64_t c = j; c < nj; c++) {\n"
    "                TT s = 0;\n"
    "                for (int64_t q = k0; q < k1; q++)\n"
    "                    s += (TT)a[(i + r) * sa1 + q] * (TT)b[c * sb2 + q];\n"
    "                tile[(i + r) * ldt + c] += s;\n"
    "            }\n"
    "    }\n"
    "    for (; i < mi; i++) /* the rows past the last 4 */\n"
    "        for (int64_t c = 0; c < nj; c++) {\n"
    "            TT s = 0;\n"
    "            for (int64_t q = k0; q < k1; q++)\n"
    "                s += (TT)a[i * sa1 + q] * (TT)b[c * sb2 + q];\n"
    "            tile[i * ldt + c] += s;\n"
    "        }\n";

/* The f32 x f32 tile (f64 tile): both operands are packed into contiguous
 * panels first, A as MR-row panels [k][MR] (apk: packed by the caller, once
 * per row block; NULL: here) and B as NR-column panels [k][NR], zero-padded,
 * so every layout (transposes included) runs the same microkernel: an MR x NR
 * block of f32 accumulators in vector registers, per k one broadcast of A per
 * row and NR / VL loads of B. The block sums in f32 over at most MM_KB terms
 * and is added to the f64 tile, as BLAS accumulates: the full f32 FMA rate,
 * within the 1e-5 contract on sums that do not cancel, and within the
 * recursive-summation bound MM_KB * 2^-24 * sum |a b| on those that do (the
 * f64 tile keeps the error from growing with k past one block). The B panels
 * live on the stack (MM_KB x MM_PNB floats). */
static const char mm_packed_body[] =
    "    const int64_t kn = k1 - k0, mp = (mi + MR - 1) / MR, np = (nj + NR - 1) / NR;\n"
    "    float apbuf[apk ? 16 : mp * MR * kn + 16], bpbuf[np * NR * kn + 16];\n"
    "    const float *restrict ap = apk;\n"
    "    float *restrict bp = (float *)(((uintptr_t)bpbuf + 63) & ~(uintptr_t)63);\n"
    "    if (!ap) {\n"
    "        float *restrict own = (float *)(((uintptr_t)apbuf + 63) & ~(uintptr_t)63);\n"
    "        kiln_mm_pack_a_f32(own, mi, k0, k1, a, sa1, sa2);\n"
    "        ap = own;\n"
    "    }\n"
    "    if (sb1 == 1) /* B[k][j] contiguous along k (a transposed weight) */\n"
    "        kiln_mm_pack_bt_f32(bp, kn, nj, b + k0, sb2);\n"
    "    else if (sb2 != 1) /* neither */\n"
    "        for (int64_t jp = 0; jp < np; jp++)\n"
    "            for (int c = 0; c < NR; c++) {\n"
    "                const int64_t j = jp * NR + c;\n"
    "                float *restrict dst = bp + jp * kn * NR + c;\n"
    "                KILN_NOVEC\n"
    "                for (int64_t p = 0; p < kn; p++)\n"
    "                    dst[p * NR] = j < nj ? b[(k0 + p) * sb1 + j * sb2] : 0.0f;\n"
    "            }\n"
    "    else /* contiguous along j: each row of B read once, in order */\n"
    "        for (int64_t p = 0; p < kn; p++) {\n"
    "            const float *restrict brow = b + (k0 + p) * sb1;\n"
    "            int64_t jp = 0;\n"
    "            for (; jp < nj / NR; jp++) {\n"
    "                KILN_PREFETCH(brow + 8 * sb1 + jp * NR);\n"
    "                KILN_PREFETCH(brow + 8 * sb1 + jp * NR + NR - 1);\n"
    "                memcpy(bp + (jp * kn + p) * NR, brow + jp * NR, sizeof(float) * NR);\n"
    "            }\n"
    "            for (int c = 0; jp < np && c < NR; c++) /* the zero-padded last panel */\n"
    "                bp[(jp * kn + p) * NR + c] = jp * NR + c < nj ? brow[jp * NR + c] : 0.0f;\n"
    "        }\n"
    "    for (int64_t jp = 0; jp < np; jp++) /* B's micro-panel stays in L1 */\n"
    "        for (int64_t ip = 0; ip < mp; ip++) {\n"
    "            const float *restrict pa = ap + ip * kn * MR, *restrict pb = bp + jp * kn * NR;\n"
    "            kiln_vf acc[MR][NR / VL];\n"
    "            KILN_UNROLL\n"
    "            for (int r = 0; r < MR; r++)\n"
    "                KILN_UNROLL\n"
    "                for (int v = 0; v < NR / VL; v++)\n"
    "                    acc[r][v] = (kiln_vf){0};\n"
    "            KILN_UNROLL_K\n"
    "            for (int64_t p = 0; p < kn; p++) {\n"
    "                const kiln_vf *restrict bv = (const kiln_vf *)(pb + p * NR);\n"
    "                KILN_UNROLL\n"
    "                for (int r = 0; r < MR; r++) {\n"
    "                    const float av = pa[p * MR + r];\n"
    "                    KILN_UNROLL\n"
    "                    for (int v = 0; v < NR / VL; v++)\n"
    "                        acc[r][v] += av * bv[v];\n"
    "                }\n"
    "            }\n"
    "            float out[MR][NR];\n"
    "            memcpy(out, acc, sizeof out);\n"
    "            const int64_t rn = mi - ip * MR < MR ? mi - ip * MR : MR;\n"
    "            const int64_t cn = nj - jp * NR < NR ? nj - jp * NR : NR;\n"
    "            double *restrict t = tile + ip * MR * ldt + jp * NR;\n"
    "            for (int64_t r = 0; r < rn; r++)\n"
    "                for (int64_t c = 0; c < cn; c++)\n"
    "                    t[r * ldt + c] += out[r][c];\n"
    "        }\n";

/* Packs rows [0, mi) x columns [k0, k1) of A into MR-row panels [k][MR],
 * zero-padded to whole panels: the microkernel's A operand. Packing reads
 * along whichever axis is contiguous in memory. */
static const char mm_pack_a_body[] =
    "    const int64_t kn = k1 - k0, mp = (mi + MR - 1) / MR;\n"
    "    for (int64_t ip = 0; ip < mp; ip++) {\n"
    "        const int64_t rn = mi - ip * MR < MR ? mi - ip * MR : MR;\n"
    "        float *restrict dst = ap + ip * kn * MR;\n"
    "        const float *restrict src = a + ip * MR * sa1 + k0 * sa2;\n"
    "        if (sa2 == 1 && rn == MR) /* rows contiguous: one stream per row */\n"
    "            for (int r = 0; r < MR; r++)\n"
    "                KILN_NOVEC\n"
    "                for (int64_t p = 0; p < kn; p++)\n"
    "                    dst[p * MR + r] = src[r * sa1 + p];\n"
    "        else\n"
    "            for (int64_t p = 0; p < kn; p++)\n"
    "                KILN_UNROLL\n"
    "                for (int r = 0; r < MR; r++)\n"
    "                    dst[p * MR + r] = r < rn ? src[r * sa1 + p * sa2] : 0.0f;\n"
    "    }\n";

/* Packs B[p][j] = b[p + j * sb2] (p < kn, j < nj: a transposed weight) into
 * NR-column panels [k][NR], zero-padded. With GNU C vector extensions whole
 * 16 x 16 blocks are transposed in registers (16 row loads, 64 shuffles that
 * AVX-512 does as unpacks and 128-bit lane shuffles, 16 stores); the rest goes
 * element by element (vectorizing it made scatters, slower). */
static const char mm_pack_bt_body[] =
    "    const int64_t np = (nj + NR - 1) / NR;\n"
    "    for (int64_t jp = 0; jp < np; jp++)\n"
    "        for (int g = 0; g < NR; g += 16) {\n"
    "            const int64_t j0 = jp * NR + g;\n"
    "            float *restrict dst = bp + jp * kn * NR + g;\n"
    "            int64_t p = 0;\n"
    "#if defined(__GNUC__)\n"
    "            for (; g + 16 <= NR && j0 + 16 <= nj && p + 16 <= kn; p += 16) {\n"
    "                kiln_v16f r[16], t[16], u[16], v[16];\n"
    "                KILN_UNROLL\n"
    "                for (int i = 0; i < 16; i++)\n"
    "                    memcpy(&r[i], b + (j0 + i) * sb2 + p, sizeof r[i]);\n"
    "                KILN_UNROLL\n"
    "                for (int i = 0; i < 8; i++) { /* pairs of rows, 32-bit interleave */\n"
    "                    t[2 * i] = KILN_SHUF(r[2 * i], r[2 * i + 1], KILN_LO32);\n"
    "                    t[2 * i + 1] = KILN_SHUF(r[2 * i], r[2 * i + 1], KILN_HI32);\n"
    "                }\n"
    "                KILN_UNROLL\n"
    "                for (int i = 0; i < 4; i++) { /* u[4i + e]: element e of rows 4i.. */\n"
    "                    u[4 * i] = KILN_SHUF(t[4 * i], t[4 * i + 2], KILN_LO64);\n"
    "                    u[4 * i + 1] = KILN_SHUF(t[4 * i], t[4 * i + 2], KILN_HI64);\n"
    "                    u[4 * i + 2] = KILN_SHUF(t[4 * i + 1], t[4 * i + 3], KILN_LO64);\n"
    "                    u[4 * i + 3] = KILN_SHUF(t[4 * i + 1], t[4 * i + 3], KILN_HI64);\n"
    "                }\n"
    "                KILN_UNROLL\n"
    "                for (int q = 0; q < 4; q++) { /* then 128-bit lanes */\n"
    "                    v[q] = KILN_SHUF(u[q], u[4 + q], KILN_EVEN128);\n"
    "                    v[4 + q] = KILN_SHUF(u[q], u[4 + q], KILN_ODD128);\n"
    "                    v[8 + q] = KILN_SHUF(u[8 + q], u[12 + q], KILN_EVEN128);\n"
    "                    v[12 + q] = KILN_SHUF(u[8 + q], u[12 + q], KILN_ODD128);\n"
    "                }\n"
    "                KILN_UNROLL\n"
    "                for (int q = 0; q < 4; q++) { /* r[e]: element e of the 16 rows */\n"
    "                    r[q] = KILN_SHUF(v[q], v[8 + q], KILN_EVEN128);\n"
    "                    r[4 + q] = KILN_SHUF(v[4 + q], v[12 + q], KILN_EVEN128);\n"
    "                    r[8 + q] = KILN_SHUF(v[q], v[8 + q], KILN_ODD128);\n"
    "                    r[12 + q] = KILN_SHUF(v[4 + q], v[12 + q], KILN_ODD128);\n"
    "                }\n"
    "                KILN_UNROLL\n"
    "                for (int e = 0; e < 16; e++)\n"
    "                    memcpy(dst + (p + e) * NR, &r[e], sizeof r[e]);\n"
    "            }\n"
    "#endif\n"
    "            for (int c = 0; c < 16 && g + c < NR; c++) {\n"
    "                const int64_t j = j0 + c;\n"
    "                KILN_NOVEC\n"
    "                for (int64_t q = p; q < kn; q++)\n"
    "                    dst[q * NR + c] = j < nj ? b[j * sb2 + q] : 0.0f;\n"
    "            }\n"
    "        }\n";

/* Prints body with TT, TA and TB replaced by the C types. */
static void typed_body(cgen_buf *b, const char *body, const char *tt, const char *ta,
                       const char *tb)
{
    for (const char *s = body; *s; s++) {
        if (s[0] == 'T' && (s[1] == 'T' || s[1] == 'A' || s[1] == 'B') &&
            !(s[2] == '_' || (s[2] >= 'A' && s[2] <= 'Z'))) {
            cgen_puts(b, s[1] == 'T' ? tt : s[1] == 'A' ? ta : tb);
            s++;
        } else {
            cgen_printf(b, "%c", *s);
        }
    }
}

/* The tile function of kernel k (see mm_variant). */
static void render_mm_fn(cgen_buf *b, const kprogram *p, const kernel *k, const cgen_opts *o)
{
    const kk_matmul *mm = &k->mm;
    bool fl = ir_dtype_is_float(k->acc_dtype);
    const char *tt = fl ? cgen_ctype(k->acc_dtype) : "uint64_t";
    const char *ta = cgen_ctype(p->bufs[mm->a].dtype), *tb = cgen_ctype(p->bufs[mm->b].dtype);
    mm_variant v = mm_variant_of(p, k);
    int mr, nr, vl;
    mm_block(o, &mr, &nr, &vl);
    if (v == MMV_PACKED) {
        cgen_puts(b,
                  "static KILN_NOINLINE void kiln_mm_pack_a_f32(float *restrict ap, int64_t mi,\n"
                  "    int64_t k0, int64_t k1, const float *restrict a, int64_t sa1, int64_t sa2)\n"
                  "{\n");
        cgen_printf(b, "    enum { MR = %d };\n", mr);
        cgen_puts(b, mm_pack_a_body);
        cgen_puts(b, "}\n\n");
        cgen_puts(b,
                  "static KILN_NOINLINE void kiln_mm_pack_bt_f32(float *restrict bp, int64_t kn,\n"
                  "    int64_t nj, const float *restrict b, int64_t sb2)\n{\n");
        cgen_printf(b, "    enum { NR = %d };\n", nr);
        cgen_puts(b, mm_pack_bt_body);
        cgen_puts(b, "}\n\n");
    }
    cgen_puts(b, "/* tile[i][j] += sum over k0 <= p < k1 of a[i * sa1 + p * sa2] * "
                 "b[p * sb1 + j * sb2] */\nstatic KILN_NOINLINE void ");
    mm_fn_name(b, p, k);
    cgen_printf(b,
                "(%s *restrict tile, int64_t ldt, int64_t mi, int64_t nj,\n"
                "    int64_t k0, int64_t k1, const %s *restrict a, int64_t sa1, int64_t sa2,\n"
                "    const %s *restrict b, int64_t sb1, int64_t sb2%s)\n{\n",
                tt, ta, tb, v == MMV_PACKED ? ", const float *restrict apk" : "");
    if (v == MMV_PACKED) {
        cgen_printf(b,
                    "    typedef float kiln_vf __attribute__((vector_size(%d)));\n"
                    "    enum { MR = %d, NR = %d, VL = %d };\n",
                    vl * 4, mr, nr, vl);
        cgen_puts(b, mm_packed_body);
    } else if (v == MMV_STRIDED) {
        cgen_puts(b, "    for (int64_t i = 0; i < mi; i++) {\n");
        cgen_printf(b, "        %s *restrict trow = tile + i * ldt;\n", tt);
        cgen_puts(b, "        for (int64_t p = k0; p < k1; p++) {\n");
        cgen_printf(b, "            const %s av = (%s)a[i * sa1 + p * sa2];\n", tt, tt);
        cgen_printf(b, "            const %s *restrict brow = b + p * sb1;\n", tb);
        cgen_puts(b, "            for (int64_t j = 0; j < nj; j++)\n");
        cgen_printf(b, "                trow[j] += av * (%s)brow[j * sb2];\n", tt);
        cgen_puts(b, "        }\n    }\n");
    } else {
        typed_body(b, v == MMV_ROWS ? mm_rows_body : mm_dot_body, tt, ta, tb);
    }
    cgen_puts(b, "}\n\n");
}

/* Renders each distinct tile function the program's matmuls use, once. */
static void render_mm_fns(cgen_buf *b, const kprogram *p, const cgen_opts *o)
{
    for (int i = 0; i < p->nkernels; i++) {
        const kernel *k = &p->kernels[i];
        if (k->kind != KK_MATMUL || !mm_operands_ok(p, k) || k->mm.k == 0 || empty_domain(k))
            continue;
        cgen_buf mine = {0}, other = {0};
        mm_fn_name(&mine, p, k);
        bool seen = false;
        for (int j = 0; j < i && !seen && !mine.oom; j++) {
            const kernel *q = &p->kernels[j];
            if (q->kind != KK_MATMUL || !mm_operands_ok(p, q) || q->mm.k == 0 || empty_domain(q))
                continue;
            other.len = 0;
            mm_fn_name(&other, p, q);
            seen = !other.oom && strcmp(mine.s, other.s) == 0;
        }
        if (mine.oom || other.oom)
            b->oom = true;
        else if (!seen)
            render_mm_fn(b, p, k, o);
        cgen_buf_free(&mine);
        cgen_buf_free(&other);
    }
}

static void render_matmul(kr *r)
{
    const kernel *k = r->k;
    const kk_matmul *mm = &k->mm;
    cgen_buf *b = r->b;
    if (!mm_operands_ok(r->p, k)) {
        cgen_puts(b, "#error \"kernel IR: matmul operands\"\n");
        return;
    }
    bool fl = ir_dtype_is_float(k->acc_dtype);
    const char *tt = fl ? cgen_ctype(k->acc_dtype) : "uint64_t";
    bool packed = mm_variant_of(r->p, k) == MMV_PACKED;
    /* fewer than two row blocks of MM_PMB: half-height ones, one per thread */
    int64_t bm = packed ? (mm->m >= 2 * MM_PMB ? MM_PMB : MM_PMB / 2) : MM_MB;
    int64_t bn = packed ? MM_PNB : MM_NB;
    int64_t mb = mm->m < bm ? mm->m : bm, nb = mm->n < bn ? mm->n : bn;
    int64_t kb = mm->k < MM_KB ? mm->k : MM_KB;
    const int64_t *sa = mm->a_stride, *sb = mm->b_stride;
    /* threads split tiles: one tile alone would only pay the team's start */
    int64_t tiles =
        mm->batch * ((mm->m + mb - 1) / (mb ? mb : 1)) * ((mm->n + nb - 1) / (nb ? nb : 1));
    bool par = r->o.openmp && !serial(k) && tiles >= 2 &&
               mm->batch * mm->m * mm->n * (mm->k ? mm->k : 1) >= PAR_WORK;
    emit_at(r, 0, false, 1);
    /* The packed path packs A's row block for the whole k range once per
     * thread and row block (consecutive tiles of a thread share ib), not once
     * per tile: mpad x K floats on the thread's stack, or its heap when big
     * (malloc failing falls back to packing per tile). */
    int mr, nr, vl;
    mm_block(&r->o, &mr, &nr, &vl);
    int64_t mpad = (mb + mr - 1) / mr * mr, apk_bytes = mpad * mm->k * 4;
    bool apk = packed && mm->k > 0 && apk_bytes <= MM_APK_MAX;
    bool apk_heap = apk_bytes > MM_APK_STACK;
    if (apk) {
        if (par)
            cgen_puts(b, "#pragma omp parallel num_threads(kiln_threads(ctx))\n");
        if (apk_heap)
            cgen_printf(b, "    {\n    float *apk = malloc(%lld);\n", (long long)apk_bytes);
        else
            cgen_printf(b,
                        "    {\n    float apk_buf[%lld];\n"
                        "    float *apk = (float *)(((uintptr_t)apk_buf + 63) & ~(uintptr_t)63);\n",
                        (long long)(mpad * mm->k + 16));
        cgen_puts(b, "    int64_t apk_at = -1; /* the (i0, ib) packed in apk */\n");
        if (par)
            cgen_puts(b, "#pragma omp for collapse(3) schedule(static)\n");
    } else if (par) {
        pragma_for(r, 1, 3, "");
    }
    cgen_printf(b, "    for (int64_t i0 = 0; i0 < %lld; i0++) {\n", (long long)mm->batch);
    cgen_printf(b, "        for (int64_t ib = 0; ib < %lld; ib += %lld) {\n", (long long)mm->m,
                (long long)mb);
    cgen_printf(b, "            for (int64_t jb = 0; jb < %lld; jb += %lld) {\n", (long long)mm->n,
                (long long)nb);
    cgen_printf(b, "                const int64_t ie = ib + %lld < %lld ? ib + %lld : %lld;\n",
                (long long)mb, (long long)mm->m, (long long)mb, (long long)mm->m);
    cgen_printf(b,
                "                const int64_t jn = (jb + %lld < %lld ? jb + %lld : %lld) - jb;\n",
                (long long)nb, (long long)mm->n, (long long)nb, (long long)mm->n);
    cgen_printf(b, "                %s tile[%lld][%lld];\n", tt, (long long)mb, (long long)nb);
    cgen_puts(b, "                memset(tile, 0, sizeof tile);\n");
    if (mm->k > 0) {
        const char *av[2] = {"i0", "ib"}, *bv[2] = {"i0", "jb"};
        const int64_t as[2] = {sa[0], sa[1]}, bs[2] = {sb[0], sb[2]};
        if (apk) {
            cgen_printf(b, "                if (apk && apk_at != i0 * %lld + ib) {\n",
                        (long long)mm->m);
            cgen_printf(b, "                    for (int64_t kb = 0; kb < %lld; kb += %lld)\n",
                        (long long)mm->k, (long long)kb);
            cgen_printf(
                b, "                        kiln_mm_pack_a_f32(apk + %lld * kb, ie - ib, kb,\n",
                (long long)mpad);
            cgen_printf(b, "                            kb + %lld < %lld ? kb + %lld : %lld, b%d",
                        (long long)kb, (long long)mm->k, (long long)kb, (long long)mm->k, mm->a);
            offset_terms(b, 2, av, as);
            cgen_printf(b, ", %lld, %lld);\n", (long long)sa[1], (long long)sa[2]);
            cgen_printf(b, "                    apk_at = i0 * %lld + ib;\n                }\n",
                        (long long)mm->m);
        }
        cgen_printf(b, "                for (int64_t kb = 0; kb < %lld; kb += %lld)\n",
                    (long long)mm->k, (long long)kb);
        cgen_puts(b, "                    ");
        mm_fn_name(b, r->p, k);
        cgen_printf(b, "(&tile[0][0], %lld, ie - ib, jn, kb,\n", (long long)nb);
        cgen_printf(b, "                        kb + %lld < %lld ? kb + %lld : %lld, b%d",
                    (long long)kb, (long long)mm->k, (long long)kb, (long long)mm->k, mm->a);
        offset_terms(b, 2, av, as);
        cgen_printf(b, ", %lld, %lld,\n                        b%d", (long long)sa[1],
                    (long long)sa[2], mm->b);
        offset_terms(b, 2, bv, bs);
        cgen_printf(b, ", %lld, %lld", (long long)sb[1], (long long)sb[2]);
        if (apk)
            cgen_printf(b, ", apk ? apk + %lld * kb : NULL", (long long)mpad);
        else if (packed)
            cgen_puts(b, ", NULL");
        cgen_puts(b, ");\n");
    }
    /* the epilogue: KX_ACC is the finished sum of (i0, i1, i2) */
    cgen_puts(b, "                for (int64_t i1 = ib; i1 < ie; i1++) {\n");
    emit_at(r, 1, false, 5);
    cgen_puts(b, "                    for (int64_t i2 = jb; i2 < jb + jn; i2++) {\n");
    cgen_printf(b, "                        const %s acc = ", cgen_ctype(k->acc_dtype));
    if (!fl)
        cgen_printf(b, "(%s)", cgen_ctype(k->acc_dtype));
    cgen_puts(b, "tile[i1 - ib][i2 - jb];\n");
    r->e.acc = "acc";
    emit_at(r, 2, false, 6);
    emit_leftovers(r, 6);
    emit_stores(r, 6);
    close_to(r, 5, 0);
    if (apk)
        cgen_puts(b, apk_heap ? "    free(apk);\n    }\n" : "    }\n");
}

/* ---- kernels ----------------------------------------------------------------------- */

void cgen_kernel_comment(cgen_buf *b, const kprogram *p, const kernel *k)
{
    const kiln_graph *g = p->g;
    cgen_puts(b, "/*\n * ");
    kernel_name(b, k);
    switch (k->kind) {
    case KK_POINTWISE:
        cgen_puts(b, ": pointwise over ");
        dims_text(b, k->rank, k->dims);
        break;
    case KK_REDUCE:
        cgen_printf(b, ": %s over ",
                    k->rop >= 0 && k->rop < IR_OP_COUNT ? ir_ops[k->rop].name : "?");
        dims_text(b, k->rrank, k->rdims);
        cgen_puts(b, " for each of ");
        dims_text(b, k->rank, k->dims);
        cgen_printf(b, ", accumulating in %s", ir_dtype_kir(k->acc_dtype));
        break;
    case KK_MATMUL:
        cgen_printf(b, ": matmul (%lld x %lld x %lld) x %lld batches, accumulating in %s",
                    (long long)k->mm.m, (long long)k->mm.k, (long long)k->mm.n,
                    (long long)k->mm.batch, ir_dtype_kir(k->acc_dtype));
        break;
    }
    if (serial(k))
        cgen_puts(b, ", serial");
    cgen_puts(b, "\n");
    for (int i = 0; i < k->nnodes; i++) {
        int id = k->nodes[i];
        cgen_printf(b, " *   %%%d", id);
        if (!g || id < 0 || id >= g->nnodes) {
            cgen_puts(b, "\n");
            continue;
        }
        const kiln_tensor *t = g->nodes[id];
        cgen_printf(b, " %s", t->op >= 0 && t->op < IR_OP_COUNT ? ir_ops[t->op].name : "?");
        if (t->name) {
            cgen_puts(b, " \"");
            comment_text(b, t->name);
            cgen_puts(b, "\"");
        }
        cgen_printf(b, " %s", ir_dtype_kir(t->dtype));
        dims_text(b, t->rank, t->dims);
        for (int j = 0; j < t->nin; j++)
            cgen_printf(b, "%s%%%d", j ? ", " : " <- ", t->in[j]->id);
        cgen_puts(b, "\n");
    }
    cgen_puts(b, " */\n");
}

/* "float *restrict b2, const float *restrict b0" or, for a call, the casts. */
static void kernel_args(kr *r, bool call)
{
    cgen_buf *b = r->b;
    cgen_puts(b, call ? "ctx" : "kiln_ctx *ctx");
    for (int i = 0; i < r->p->nbufs; i++) {
        if (!r->use[i])
            continue;
        const kbuf *kb = &r->p->bufs[i];
        const char *cst = r->use[i] & 2 ? "" : "const ";
        cgen_puts(b, ",");
        cgen_puts(b, column(b) > 72 ? (call ? "\n            " : "\n    ") : " ");
        if (!call)
            cgen_printf(b, "%s%s *restrict b%d", cst, cgen_ctype(kb->dtype), i);
        else if (kb->role == KB_CONST)
            cgen_printf(b, "kiln_data_%d", i);
        else
            cgen_printf(b, "(%s%s *)ctx->bufs[%d]", cst, cgen_ctype(kb->dtype), i);
    }
}

static bool kr_init(kr *r, cgen_buf *b, const kprogram *p, const kernel *k, const cgen_opts *o)
{
    memset(r, 0, sizeof(*r));
    r->b = b;
    r->p = p;
    r->k = k;
    r->o = *o;
    size_t n = (size_t)(k->nx + 1);
    r->need = ir_alloc(n);
    r->post = ir_alloc(n);
    r->done = ir_alloc(n);
    r->lev = ir_alloc(sizeof(int) * n);
    r->use = ir_alloc((size_t)p->nbufs + 1);
    r->plain = cgen_plain_nodes(k);
    r->chunk = ir_alloc(n);
    r->defer = ir_alloc(n);
    r->e = (cgen_ectx){.lang = &cgen_c_lang, .k = k, .plain = r->plain};
    if (!r->need || !r->post || !r->done || !r->lev || !r->use || !r->plain || !r->chunk ||
        !r->defer)
        return false;
    memset(r->chunk, 0, n);
    memset(r->defer, 0, n);
    memset(r->need, 0, n);
    memset(r->post, 0, n);
    memset(r->done, 0, n);
    memset(r->use, 0, (size_t)p->nbufs + 1);
    place_nodes(r);
    return true;
}

static void kr_free(kr *r)
{
    ir_free(r->need);
    ir_free(r->post);
    ir_free(r->done);
    ir_free(r->lev);
    ir_free(r->use);
    ir_free(r->plain);
    ir_free(r->chunk);
    ir_free(r->defer);
}

static bool render_kernel(cgen_buf *b, const kprogram *p, const kernel *k, const cgen_opts *o,
                          bool call)
{
    kr r;
    bool ok = kr_init(&r, b, p, k, o);
    if (ok && call) {
        kernel_name(b, k);
        cgen_puts(b, "(");
        kernel_args(&r, true);
        cgen_puts(b, ")");
    } else if (ok) {
        cgen_kernel_comment(b, p, k);
        cgen_puts(b, "static int ");
        kernel_name(b, k);
        cgen_puts(b, "(");
        kernel_args(&r, false);
        cgen_puts(b, ")\n{\n");
        if (empty_domain(k)) {
            cgen_puts(b, "    /* an empty domain: nothing to compute */\n    (void)ctx;\n");
            for (int i = 0; i < p->nbufs; i++)
                if (r.use[i])
                    cgen_printf(b, "    (void)b%d;\n", i);
        } else {
            if (k->kind == KK_MATMUL && k->mm.k == 0)
                cgen_printf(b, "    (void)b%d; /* k = 0: the sums are 0 */\n    (void)b%d;\n",
                            k->mm.a, k->mm.b);
            if (!r.fails && !r.rng)
                cgen_puts(b, "    (void)ctx;\n");
            switch (k->kind) {
            case KK_POINTWISE: render_pointwise(&r); break;
            case KK_REDUCE: render_reduce(&r); break;
            case KK_MATMUL: render_matmul(&r); break;
            }
        }
        cgen_puts(b, r.fails && !empty_domain(k) ? "    return ctx->err_code;\n}\n\n"
                                                 : "    return 0;\n}\n\n");
    }
    kr_free(&r);
    return ok;
}

/* ---- the translation unit ------------------------------------------------------------ */

static void render_consts(cgen_buf *b, const kprogram *p)
{
    for (int i = 0; i < p->nbufs; i++) {
        const kbuf *kb = &p->bufs[i];
        if (kb->role != KB_CONST)
            continue;
        int64_t n = kb->numel > 0 && kb->data ? kb->numel : 0;
        cgen_printf(b, "/* buffer %d: an embedded constant, %s[%lld] */\n", i,
                    ir_dtype_kir(kb->dtype), (long long)kb->numel);
        cgen_printf(b, "static const %s kiln_data_%d[%lld] KILN_UNUSED = {", cgen_ctype(kb->dtype),
                    i, (long long)(n ? n : 1));
        for (int64_t j = 0; j < n; j++) {
            kx_node c = {.kind = KX_CONST, .dtype = kb->dtype};
            if (ir_dtype_is_float(kb->dtype) || kb->dtype == KILN_BOOL)
                c.value = ir_load_f(kb->dtype, kb->data, j);
            else
                c.ivalue = ir_load_i(kb->dtype, kb->data, j);
            cgen_puts(b, j % 8 == 0 ? "\n    " : " ");
            cgen_literal(b, &c);
            cgen_puts(b, ",");
        }
        cgen_puts(b, n ? "\n};\n\n" : "0};\n\n");
    }
}

static bool render_entry(cgen_buf *b, const kprogram *p, int e, const cgen_opts *o)
{
    bool ok = true;
    const kentry *x = &p->entries[e];
    cgen_printf(b, "/* entry %d \"", e);
    comment_text(b, x->name);
    cgen_printf(b, "\": %d kernels, %d copies */\n", x->nkernels, x->ncopies);
    cgen_printf(b, "KILN_EXPORT int kiln_entry_%d(kiln_ctx *ctx);\n", e);
    cgen_printf(b, "KILN_EXPORT int kiln_entry_%d(kiln_ctx *ctx)\n{\n", e);
    cgen_puts(b, "    ctx->err_code = 0;\n");
    if (x->nkernels > 0)
        cgen_puts(b, "    int rc;\n    uint64_t t = ctx->prof ? kiln_now() : 0;\n");
    for (int i = 0; i < x->nkernels; i++) {
        int ki = x->kernels[i];
        if (ki < 0 || ki >= p->nkernels) {
            cgen_puts(b, "#error \"kernel IR: an entry names a missing kernel\"\n");
            continue;
        }
        cgen_puts(b, "    rc = ");
        ok = render_kernel(b, p, &p->kernels[ki], o, true) && ok;
        cgen_printf(b, ";\n    KILN_PROF(%d);\n    if (rc != 0)\n        return rc;\n",
                    p->kernels[ki].id);
    }
    for (int i = 0; i < x->ncopies; i++) {
        int s = x->copies[i].src, d = x->copies[i].dst;
        if (s < 0 || s >= p->nbufs || d < 0 || d >= p->nbufs) {
            cgen_puts(b, "#error \"kernel IR: a copy names a missing buffer\"\n");
            continue;
        }
        int64_t nb = p->bufs[d].numel * (int64_t)kiln_dtype_size(p->bufs[d].dtype);
        if (nb <= 0)
            continue;
        cgen_printf(b, "    kiln_copy(ctx, ctx->bufs[%d], ", d);
        if (p->bufs[s].role == KB_CONST)
            cgen_printf(b, "kiln_data_%d", s);
        else
            cgen_printf(b, "ctx->bufs[%d]", s);
        cgen_printf(b, ", %lld);\n", (long long)nb);
    }
    cgen_puts(b, "    return 0;\n}\n\n");
    return ok;
}

static const char prelude[] =
    "#ifndef _POSIX_C_SOURCE\n"
    "#define _POSIX_C_SOURCE 200809L /* clock_gettime */\n"
    "#endif\n"
    "#include <math.h>\n"
    "#include <stdbool.h>\n"
    "#include <stdint.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include <time.h>\n"
    "#ifdef _OPENMP\n"
    "#include <omp.h>\n"
    "#endif\n"
    "\n"
    "#if defined(__GNUC__)\n"
    "#define KILN_UNUSED __attribute__((unused))\n"
    "#define KILN_EXPORT __attribute__((visibility(\"default\")))\n"
    "#define KILN_NOINLINE __attribute__((noinline))\n"
    "#define KILN_PREFETCH(p) __builtin_prefetch(p)\n"
    "/* 16-float shuffles (vector extensions, no intrinsics header) */\n"
    "typedef float kiln_v16f __attribute__((vector_size(64)));\n"
    "typedef int32_t kiln_v16i __attribute__((vector_size(64)));\n"
    "#if defined(__clang__)\n"
    "#define KILN_SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)\n"
    "#else\n"
    "#define KILN_SHUF(a, b, ...) __builtin_shuffle(a, b, (kiln_v16i){__VA_ARGS__})\n"
    "#endif\n"
    "#define KILN_LO32 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29\n"
    "#define KILN_HI32 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31\n"
    "#define KILN_LO64 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29\n"
    "#define KILN_HI64 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31\n"
    "#define KILN_EVEN128 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27\n"
    "#define KILN_ODD128 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31\n"
    "#else\n"
    "#define KILN_UNUSED\n"
    "#define KILN_EXPORT\n"
    "#define KILN_NOINLINE\n"
    "#define KILN_PREFETCH(p) ((void)(p))\n"
    "#endif\n"
    "#define KILN_FN static inline KILN_UNUSED\n"
    "#if defined(__clang__)\n"
    "#define KILN_UNROLL _Pragma(\"clang loop unroll(full)\")\n"
    "#define KILN_UNROLL_K _Pragma(\"clang loop unroll_count(4)\")\n"
    "#define KILN_NOVEC _Pragma(\"clang loop vectorize(disable)\")\n"
    "#elif defined(__GNUC__)\n"
    "#define KILN_UNROLL _Pragma(\"GCC unroll 16\")\n"
    "#define KILN_UNROLL_K _Pragma(\"GCC unroll 4\")\n"
    "#define KILN_NOVEC\n"
    "#else\n"
    "#define KILN_UNROLL\n"
    "#define KILN_UNROLL_K\n"
    "#define KILN_NOVEC\n"
    "#endif\n"
    "\n";

/* The profile: kiln_now() in nanoseconds; KILN_PROF(k) charges the time
 * since t to kernel k (ctx->prof is NULL when nobody keeps count). */
static const char prof_fn[] =
    "KILN_FN uint64_t kiln_now(void)\n"
    "{\n"
    "    struct timespec ts;\n"
    "    clock_gettime(CLOCK_MONOTONIC, &ts);\n"
    "    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;\n"
    "}\n"
    "#define KILN_PROF(k)                           \\\n"
    "    do {                                       \\\n"
    "        if (ctx->prof) {                       \\\n"
    "            uint64_t now_ = kiln_now();        \\\n"
    "            ctx->prof[k].calls++;              \\\n"
    "            ctx->prof[k].ns += now_ - t;       \\\n"
    "            t = now_;                          \\\n"
    "        }                                      \\\n"
    "    } while (0)\n"
    "\n";

static const char fail_fn[] =
    "/* Records the entry's first run-time error; the kernel returns err_code. */\n"
    "KILN_FN void kiln_fail(kiln_ctx *ctx, int32_t code, int32_t kernel, int32_t axis,\n"
    "                       int64_t index, int64_t size)\n"
    "{\n"
    "#ifdef _OPENMP\n"
    "#pragma omp critical(kiln_fail)\n"
    "#endif\n"
    "    {\n"
    "        if (ctx->err_code == 0) {\n"
    "            ctx->err_code = code;\n"
    "            ctx->err_kernel = kernel;\n"
    "            ctx->err_axis = axis;\n"
    "            ctx->err_index = index;\n"
    "            ctx->err_size = size;\n"
    "        }\n"
    "    }\n"
    "}\n"
    "\n"
    "#ifdef _OPENMP\n"
    "KILN_FN int kiln_threads(const kiln_ctx *ctx)\n"
    "{\n"
    "    return ctx->threads > 0 ? ctx->threads : omp_get_max_threads();\n"
    "}\n"
    "#endif\n"
    "\n"
    "\n";

/* An entry's assign: dst = src, n bytes; with OpenMP a big copy is split
 * across the threads (28 MB: 3.8 ms on one thread, 1.7 ms on two here). */
static const char copy_fn[] = "KILN_FN void kiln_copy(kiln_ctx *ctx, void *restrict dst, const "
                              "void *restrict src, int64_t n)\n"
                              "{\n"
                              "    (void)ctx;\n"
                              "    memcpy(dst, src, (size_t)n);\n"
                              "}\n"
                              "\n";
static const char copy_fn_omp[] =
    "KILN_FN void kiln_copy(kiln_ctx *ctx, void *restrict dst, const void *restrict src, int64_t "
    "n)\n"
    "{\n"
    "    enum { CHUNK = 1 << 16 };\n"
    "#ifdef _OPENMP\n"
    "    if (n >= 16 * CHUNK) {\n"
    "#pragma omp parallel for schedule(static) num_threads(kiln_threads(ctx))\n"
    "        for (int64_t at = 0; at < n; at += CHUNK)\n"
    "            memcpy((char *)dst + at, (const char *)src + at,\n"
    "                   (size_t)(n - at < CHUNK ? n - at : CHUNK));\n"
    "        return;\n"
    "    }\n"
    "#endif\n"
    "    (void)ctx;\n"
    "    memcpy(dst, src, (size_t)n);\n"
    "}\n"
    "\n";

unsigned cgen_host_features(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("avx512f") ? CGEN_AVX512F : 0;
#else
    return 0;
#endif
}

char *cgen_c(const kprogram *p, const cgen_opts *o)
{
    if (!p)
        return NULL;
    cgen_opts none = {0};
    o = o ? o : &none;
    cgen_buf b = {0};
    cgen_printf(&b,
                "/*\n * Generated by Kiln's C renderer (codegen/c): %d kernels, %d entries%s.\n"
                " * Each kernel is named after the ops it computes and lists the graph\n"
                " * nodes it covers; kiln_entry_<i> runs entry i (runtime/abi.h).\n */\n",
                p->nkernels, p->nentries, o->openmp ? ", OpenMP" : "");
    cgen_puts(&b, prelude);
    cgen_puts(&b, KILN_CTX_TEXT);
    cgen_printf(&b,
                "\n\nenum {\n    KILN_RUNERR_NONE = %d,\n    KILN_RUNERR_INDEX = %d,\n"
                "    KILN_RUNERR_ZERO_DIV = %d,\n    KILN_RUNERR_NEG_POW = %d\n};\n\n",
                KILN_RUNERR_NONE, KILN_RUNERR_INDEX, KILN_RUNERR_ZERO_DIV, KILN_RUNERR_NEG_POW);
    cgen_puts(&b, fail_fn);
    cgen_puts(&b, o->openmp ? copy_fn_omp : copy_fn);
    cgen_puts(&b, prof_fn);
    for (int i = 0, rng = 0; i < p->nkernels && !rng; i++) /* kiln_philox_soa */
        for (int j = 0; j < p->kernels[i].nx && !rng; j++) {
            const kx_node *n = &p->kernels[i].x[j];
            rng = p->kernels[i].kind == KK_POINTWISE && n->dtype == KILN_F32 &&
                  (n->kind == KX_RAND || n->kind == KX_RANDN);
            if (rng)
                cgen_puts(&b, "#define KILN_RNG_INTRINSICS 1\n");
        }
    cgen_puts(&b, cgen_vmath_text);
    for (int i = 0; cgen_helpers[i]; i++)
        cgen_puts(&b, cgen_helpers[i]);
    cgen_puts(&b, "\n");
    render_consts(&b, p);
    render_mm_fns(&b, p, o);
    bool ok = true;
    for (int i = 0; i < p->nkernels && ok; i++)
        ok = render_kernel(&b, p, &p->kernels[i], o, false);
    for (int e = 0; e < p->nentries && ok; e++)
        ok = render_entry(&b, p, e, o);
    cgen_printf(&b, "extern const char kiln_abi[];\nKILN_EXPORT const char kiln_abi[] = \"%s\";\n",
                KILN_ABI_TAG);
    if (!ok || b.oom) {
        cgen_buf_free(&b);
        return NULL;
    }
    return b.s;
}
