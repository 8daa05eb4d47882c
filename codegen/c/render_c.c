/*
 * render_c.c - the C renderer: a kprogram as one C99 translation unit.
 *
 * Requires a verified kprogram and its graph (p->g, for header comments).
 * Produces the helpers the rest uses, constants, one static function per
 * kernel (literal loop bounds, each kx node a const local hoisted to the
 * outermost loop it depends on, OpenMP where worth it), the entries and
 * kiln_abi. Expressions: expr.c (shared with CUDA); matmul: render_gemm.c.
 */
#include "codegen/c/cgen.h"
#include "codegen/c/expr.h"
#include "codegen/c/render.h"
#include "ir/abi.h"

#include <ctype.h>
#include <string.h>

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

/* ---- POINTWISE ------------------------------------------------------------------- */

/* The node a store's index adds to the innermost variable when the store can
 * be streamed (cgen_opts.stream_min): an f32 row written contiguously along
 * the innermost loop, from nothing that depends on it, into a buffer the
 * kernel does not read; -1 when the index is that variable alone, -2 when
 * the store is not such a store. */
static int stream_base(const kr *r, const kk_store *s)
{
    const kernel *k = r->k;
    int inner = k->rank - 1;
    if (s->accumulate || s->buf < 0 || s->buf >= r->p->nbufs ||
        r->p->bufs[s->buf].dtype != KILN_F32 || kk_reads(k, s->buf) ||
        !kk_unit_stride(k, s->index, inner))
        return -2;
    const kx_node *x = &k->x[s->index];
    if (x->kind == KX_VAR)
        return -1;
    for (int j = 0; j < 2; j++) {
        int v = x->a[j], o = x->a[1 - j];
        if (k->x[v].kind == KX_VAR && k->x[v].var == inner && r->lev[o] <= inner)
            return o;
    }
    return -2;
}

/* Which stores of a pointwise kernel go around the caches: all that can when
 * they write at least stream_min bytes together over rows of at least
 * CGEN_RCHUNK_MIN. Returns how many (stream[i] per store). */
static int streamed_stores(const kr *r, bool *stream)
{
    const kernel *k = r->k;
    int n = 0;
    for (int i = 0; i < k->nstores; i++)
        n += stream[i] = stream_base(r, &k->stores[i]) >= -1;
    int64_t bytes = (int64_t)n * 4 * ir_shape_numel(k->rank, k->dims);
    if (r->o.stream_min <= 0 || bytes < r->o.stream_min || cgen_serial(k) || k->rank < 1 ||
        k->dims[k->rank - 1] < CGEN_RCHUNK_MIN)
        n = 0;
    for (int i = 0; i < k->nstores && !n; i++)
        stream[i] = false;
    return n;
}

static void render_pointwise(kr *r)
{
    const kernel *k = r->k;
    cgen_buf *b = r->b;
    int col = cgen_outer_collapse(r, ir_shape_numel(k->rank, k->dims)), nchunk = 0;
    for (int i = 0; i < k->nx; i++)
        nchunk += r->chunk[i] = cgen_rng_chunk_base(r, i) >= -1;
    if (nchunk)
        cgen_mark_needs(r); /* their indices may be needed no more */
    bool *stream = ir_calloc((size_t)k->nstores + 1);
    if (!stream) {
        b->oom = true;
        return;
    }
    int nstream = streamed_stores(r, stream);
    if (!nchunk && !nstream) {
        cgen_open_outer(r, col, k->rank, !r->fails);
        cgen_emit_leftovers(r, k->rank + 1);
        cgen_emit_stores(r, k->rank + 1);
        cgen_close_to(r, k->rank, 0);
        ir_free(stream);
        return;
    }
    /* the innermost loop d runs in chunks: fill (random numbers), compute,
     * then stream out (what goes around the caches) */
    int d = k->rank - 1;
    long long dim = (long long)k->dims[d];
    cgen_open_outer(r, col, d, false);
    if (d == 0 && col)
        cgen_pragma_for(r, 1, col, "");
    cgen_indent(b, d + 1);
    cgen_printf(b, "for (int64_t c%d = 0; c%d < %lld; c%d += KILN_RCHUNK) {\n", d, d, dim, d);
    cgen_emit_at(r, d, false, d + 2);
    cgen_indent(b, d + 2);
    cgen_printf(b, "const int64_t e%d = c%d + KILN_RCHUNK < %lld ? c%d + KILN_RCHUNK : %lld;\n", d,
                d, dim, d, dim);
    for (int i = 0; i < k->nx; i++) {
        if (!r->chunk[i])
            continue;
        int base = cgen_rng_chunk_base(r, i);
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
    for (int i = 0; i < k->nstores; i++)
        if (stream[i]) {
            cgen_indent(b, d + 2);
            cgen_printf(b, "float sb%d[KILN_RCHUNK];\n", i);
        }
    cgen_indent(b, d + 2);
    cgen_printf(b, "for (int64_t i%d = c%d; i%d < e%d; i%d++) {\n", d, d, d, d, d);
    cgen_emit_at(r, d + 1, false, d + 3);
    cgen_emit_leftovers(r, d + 3);
    for (int i = 0; i < k->nstores; i++) {
        if (!stream[i]) {
            cgen_store(b, &r->e, r->p, &k->stores[i], d + 3, false);
            continue;
        }
        cgen_indent(b, d + 3);
        cgen_printf(b, "sb%d[i%d - c%d] = ", i, d, d);
        cgen_operand(b, &r->e, k->stores[i].value);
        cgen_puts(b, ";\n");
    }
    cgen_close_to(r, d + 2, d + 1);
    for (int i = 0; i < k->nstores; i++) {
        if (!stream[i])
            continue;
        int base = stream_base(r, &k->stores[i]);
        cgen_indent(b, d + 2);
        cgen_puts(b, "kiln_stream_f32(");
        cgen_buf_name(b, r->p, k->stores[i].buf);
        cgen_puts(b, " + ");
        if (base >= 0) {
            cgen_operand(b, &r->e, base);
            cgen_puts(b, " + ");
        }
        cgen_printf(b, "c%d, sb%d, e%d - c%d);\n", d, i, d, d);
    }
    cgen_close_to(r, d + 1, d);
    cgen_close_to(r, d, 0);
    ir_free(stream);
}

/* ---- REDUCE ---------------------------------------------------------------------- */

/* A float sum whose loads run contiguously along the last kept axis and not
 * along the innermost reduced one, unless they are the same for every column
 * (a sum over rows: a bias gradient, a layer-norm weight's reading each row's
 * statistics), is better computed a block of kept columns at a time, each
 * reduced row adding into a vector of accumulators: see
 * render_reduce_columns. */
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
            int64_t coef[2 * KILN_MAX_RANK + 3], c0;
            /* a value per reduced row (a row's statistics) is read once per row */
            if (kk_unit_stride(k, k->x[i].a[0], red) &&
                !(kk_affine(k, k->x[i].a[0], k->rank + k->rrank, coef, &c0) && coef[last] == 0))
                return false;
            along_last = along_last || kk_unit_stride(k, k->x[i].a[0], last);
        }
    return along_last;
}

enum { COLS = 64 };

/* The sums over the reduced axes for COLS columns of the last kept axis at a
 * time: a vector of accumulators per phase (accv1.. for the earlier phases,
 * accv for the kernel's own; independent sums over the same rows, as a
 * weight's and a bias's gradients merged by passes/rowfuse.c) in their
 * accumulators' dtypes, the reduced loops outside and the columns innermost
 * (contiguous loads that vectorize), then the epilogue per column. Nodes
 * that need the last kept variable are computed in the innermost loop (and
 * again in the epilogue loop when it needs them). */
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
    cgen_open_outer(r, col > last ? last : col, last, false);
    if (last == 0 && col)
        cgen_pragma_for(r, 1, 0, "");
    int ind = last + 1;
    cgen_indent(b, ind);
    cgen_printf(b, "for (int64_t c%d = 0; c%d < %lld; c%d += %d) {\n", last, last, dim, last, COLS);
    cgen_indent(b, ind + 1);
    cgen_printf(b, "const int64_t e%d = c%d + %d < %lld ? c%d + %d : %lld;\n", last, last, COLS,
                dim, last, COLS, dim);
    char names[KK_MAX_PHASES][16], accs[KK_MAX_PHASES][16]; /* accv1 .. accv, acc1 .. acc */
    for (int q = 0; q <= k->npre; q++) {
        snprintf(names[q], sizeof names[q], q < k->npre ? "accv%d" : "accv", q + 1);
        snprintf(accs[q], sizeof accs[q], q < k->npre ? "acc%d" : "acc", q + 1);
        cgen_indent(b, ind + 1);
        cgen_printf(b, "%s %s[%d] = {0};\n", cgen_ctype(kk_phase_at(k, q).acc_dtype), names[q],
                    COLS);
    }
    for (int j = 0; j < k->rrank; j++) {
        int d = k->rank + j;
        cgen_indent(b, ind + 1 + j);
        cgen_printf(b, "for (int64_t i%d = 0; i%d < %lld; i%d++) {\n", d, d, (long long)k->rdims[j],
                    d);
        cgen_emit_at(r, d + 1, false, ind + 2 + j);
    }
    int in = ind + 1 + k->rrank;
    cgen_indent(b, in);
    cgen_printf(b, "for (int64_t i%d = c%d; i%d < e%d; i%d++) {\n", last, last, last, last, last);
    /* only what the bodies read: the epilogue's per-column nodes come later */
    bool *body = ir_alloc((size_t)k->nx + 1), *hidden = ir_alloc((size_t)k->nx + 1);
    if (!body || !hidden) {
        b->oom = true;
        ir_free(body);
        ir_free(hidden);
        return;
    }
    memset(body, 0, (size_t)k->nx + 1);
    for (int q = 0; q <= k->npre; q++) {
        int at = kk_phase_at(k, q).body;
        if (at >= 0 && at < k->nx)
            body[at] = true;
    }
    for (int i = k->nx - 1; i >= 0; i--) {
        int ops[3], ar = cgen_operands(&k->x[i], ops);
        for (int j = 0; j < ar && body[i]; j++)
            if (ops[j] >= 0 && ops[j] < i)
                body[ops[j]] = true;
        hidden[i] = r->need[i] && r->defer[i] && !body[i];
        r->need[i] = r->need[i] && !hidden[i];
    }
    r->inner = true;
    cgen_emit_at(r, k->rank + k->rrank, false, in + 1);
    r->inner = false;
    for (int i = 0; i < k->nx; i++)
        r->need[i] = r->need[i] || hidden[i];
    ir_free(body);
    ir_free(hidden);
    for (int q = 0; q <= k->npre; q++) {
        kk_phase ph = kk_phase_at(k, q);
        cgen_indent(b, in + 1);
        cgen_printf(b, "%s[i%d - c%d] += ", names[q], last, last);
        cgen_node_as(b, &r->e, ph.body, ph.acc_dtype);
        cgen_puts(b, ";\n");
    }
    cgen_close_to(r, in, ind);
    /* the epilogue, per column: what it needs of the last variable again */
    for (int i = 0; i < k->nx; i++)
        if (r->defer[i] && r->lev[i] <= k->rank)
            r->done[i] = false;
    cgen_indent(b, ind + 1);
    cgen_printf(b, "for (int64_t i%d = c%d; i%d < e%d; i%d++) {\n", last, last, last, last, last);
    for (int q = 0; q <= k->npre; q++) {
        cgen_indent(b, ind + 2);
        cgen_printf(b, "const %s %s = %s[i%d - c%d];\n", cgen_ctype(kk_phase_at(k, q).acc_dtype),
                    accs[q], names[q], last, last);
    }
    r->e.acc = "acc";
    cgen_emit_at(r, k->rank, false, ind + 2);
    cgen_emit_at(r, k->rank, true, ind + 2);
    cgen_emit_leftovers(r, ind + 2);
    cgen_emit_stores(r, ind + 2);
    cgen_close_to(r, ind + 1, ind - 1);
    cgen_close_to(r, last, 0);
}

/* A kernel of several independent float sums over the same rows (no phase
 * reads another's accumulator, no element stores) summed by columns. */
static bool sums_by_columns(const kr *r)
{
    const kernel *k = r->k;
    if (kk_has_element_stores(k))
        return false;
    for (int q = 0; q <= k->npre; q++) {
        kk_phase ph = kk_phase_at(k, q);
        if (ph.rop != IR_SUM || !ir_dtype_is_float(ph.acc_dtype) || ph.body < 0 ||
            ph.body >= k->nx || r->post[ph.body])
            return false;
    }
    return by_columns(r);
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
    bool fullpar = r->o.openmp && !cgen_serial(k) && k->rank == 0 && k->rop == IR_SUM &&
                   k->rrank >= 1 && red >= PAR_WORK;
    /* sums may be reassociated (DESIGN.md); kiln_fail's critical section may
     * not sit in a simd loop */
    bool simd = r->o.openmp && k->rop == IR_SUM && k->rrank >= 1 && !r->fails;
    if ((k->npre > 0 || kk_has_element_stores(k)) && !sums_by_columns(r)) {
        cgen_render_rows(r);
        return;
    }
    if (by_columns(r)) {
        render_reduce_columns(r, cgen_outer_collapse(r, outer * red));
        return;
    }
    cgen_open_outer(r, cgen_outer_collapse(r, outer * red), k->rank, false);
    int ind = k->rank + 1;
    cgen_indent(b, ind);
    if (isum) {
        cgen_puts(b, "uint64_t acc = 0;\n");
        /* an integer sum: i64, i32 or bool (the only non-float dtypes) */
        r->e.acc = k->acc_dtype == KILN_I32    ? "(int32_t)acc"
                   : k->acc_dtype == KILN_BOOL ? "(acc != 0)"
                                               : "(int64_t)acc";
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
            cgen_pragma_for(r, d + 1, 0, " reduction(+ : acc)");
        if (inner && simd && !(j == 0 && fullpar)) {
            cgen_indent(b, d + 1);
            cgen_puts(b, "#pragma omp simd reduction(+ : acc)\n");
        } else if (red <= CGEN_SHORT_REDUCE) {
            cgen_indent(b, d + 1);
            cgen_puts(b, "KILN_UNROLL\n");
        }
        cgen_indent(b, d + 1);
        cgen_printf(b, "for (int64_t i%d = 0; i%d < %lld; i%d++) {\n", d, d, (long long)k->rdims[j],
                    d);
        cgen_emit_at(r, d + 1, false, d + 2);
    }
    cgen_reduce_combine(b, &r->e, k->rank + k->rrank + 1);
    cgen_close_to(r, k->rank + k->rrank, k->rank);
    cgen_emit_at(r, k->rank, true, ind);
    cgen_emit_leftovers(r, ind);
    cgen_emit_stores(r, ind);
    cgen_close_to(r, k->rank, 0);
}

/* ---- kernels ----------------------------------------------------------------------- */

/* An op that computes nothing: the kernel reads its operand at other indices. */
static bool is_view(int op)
{
    return op == IR_RESHAPE || op == IR_PERMUTE || op == IR_EXPAND || op == IR_SLICE;
}

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
        cgen_puts(b, k->npre > 0 || kk_has_element_stores(k) ? ": a row kernel," : ":");
        for (int q = 0; q < k->npre; q++)
            cgen_printf(b, " %s then", ir_ops[k->pre[q].rop].name);
        cgen_printf(b, " %s over ",
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
    case KK_ATTENTION: {
        static const char *const what[5] = {
            "an online softmax in f64", "its backward: each row's logsumexp and rowsum(g * y)",
            "its backward: the gradient of q", "its backward: the gradient of k",
            "its backward: the gradient of v"};
        cgen_printf(b, ": attention (%lld rows x %lld keys, dim %lld -> %lld) x %lld batches%s, %s",
                    (long long)k->at.t, (long long)k->at.s, (long long)k->at.d, (long long)k->at.dv,
                    (long long)k->at.batch, k->at.causal ? ", causal" : "", what[k->at.mode]);
        break;
    }
    }
    if (cgen_serial(k))
        cgen_puts(b, ", serial");
    cgen_puts(b, "\n");
    for (int i = 0; i < k->nnodes; i++) {
        int id = k->nodes[i];
        if (g && id >= 0 && id < g->nnodes && is_view(g->nodes[id]->op))
            continue;
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
    int views = 0; /* nodes that only move data: one line after the rest */
    for (int i = 0; i < k->nnodes; i++) {
        int id = k->nodes[i];
        if (g && id >= 0 && id < g->nnodes && is_view(g->nodes[id]->op))
            cgen_printf(b, "%s%%%d %s", views++ ? ", " : " *   views: ", id,
                        ir_ops[g->nodes[id]->op].name);
    }
    cgen_puts(b, views ? "\n */\n" : " */\n");
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
        if (!call) {
            cgen_printf(b, "%s%s *restrict ", cst, cgen_ctype(kb->dtype));
            cgen_buf_name(b, r->p, i);
        } else if (kb->role == KB_CONST)
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
    r->e = (cgen_ectx){.lang = &cgen_c_lang, .k = k, .p = p, .plain = r->plain};
    if (!r->need || !r->post || !r->done || !r->lev || !r->use || !r->plain || !r->chunk ||
        !r->defer)
        return false;
    memset(r->chunk, 0, n);
    memset(r->defer, 0, n);
    memset(r->need, 0, n);
    memset(r->post, 0, n);
    memset(r->done, 0, n);
    memset(r->use, 0, (size_t)p->nbufs + 1);
    cgen_place_nodes(r);
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
        bool fails = kk_can_fail(k); /* only a kernel that can fail returns a status */
        cgen_puts(b, fails ? "static int " : "static void ");
        kernel_name(b, k);
        cgen_puts(b, "(");
        kernel_args(&r, false);
        cgen_puts(b, ")\n{\n");
        if (cgen_empty_domain(k)) {
            cgen_puts(b, "    /* an empty domain: nothing to compute */\n    (void)ctx;\n");
            for (int i = 0; i < p->nbufs; i++)
                if (r.use[i]) {
                    cgen_puts(b, "    (void)");
                    cgen_buf_name(b, p, i);
                    cgen_puts(b, ";\n");
                }
        } else {
            if (k->kind == KK_MATMUL && k->mm.k == 0) {
                cgen_puts(b, "    (void)");
                cgen_buf_name(b, p, k->mm.a);
                cgen_puts(b, "; /* k = 0: the sums are 0 */\n    (void)");
                cgen_buf_name(b, p, k->mm.b);
                cgen_puts(b, ";\n");
            }
            if (!r.fails && !r.rng)
                cgen_puts(b, "    (void)ctx;\n");
            switch (k->kind) {
            case KK_POINTWISE: render_pointwise(&r); break;
            case KK_REDUCE: render_reduce(&r); break;
            case KK_MATMUL: cgen_render_matmul(&r); break;
            case KK_ATTENTION: cgen_render_attention(&r); break;
            }
        }
        cgen_puts(b, !fails                             ? "}\n\n"
                     : r.fails && !cgen_empty_domain(k) ? "    return ctx->err_code;\n}\n\n"
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
    cgen_printf(b, "\": %d kernels, %d copies", x->nkernels, x->ncopies);
    if (x->nshares) /* assigns whose kernel stores into the param (passes/inplace.c) */
        cgen_printf(b, ", %d in place", x->nshares);
    cgen_puts(b, " */\n");
    cgen_printf(b, "KILN_EXPORT int kiln_entry_%d(kiln_ctx *ctx)\n{\n", e);
    bool can_fail = false; /* only kernels that can fail have their status read */
    for (int i = 0; i < x->nkernels; i++)
        can_fail |= x->kernels[i] >= 0 && x->kernels[i] < p->nkernels &&
                    kk_can_fail(&p->kernels[x->kernels[i]]);
    if (can_fail)
        cgen_puts(b, "    ctx->err_code = 0;\n    int rc;\n");
    for (int i = 0; i < x->nkernels; i++) {
        int ki = x->kernels[i];
        if (ki < 0 || ki >= p->nkernels) {
            cgen_puts(b, "#error \"kernel IR: an entry names a missing kernel\"\n");
            continue;
        }
        bool fails = kk_can_fail(&p->kernels[ki]);
        cgen_puts(b, fails ? "    rc = " : "    ");
        ok = render_kernel(b, p, &p->kernels[ki], o, true) && ok;
        cgen_printf(b, ";\n    KILN_PROF(%d);\n", p->kernels[ki].id);
        if (fails)
            cgen_puts(b, "    if (rc != 0)\n        return rc;\n");
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
        cgen_printf(b, "    %s(ctx, ctx->bufs[%d], ", o->openmp ? "kiln_pcopy" : "kiln_copy", d);
        if (p->bufs[s].role == KB_CONST)
            cgen_printf(b, "kiln_data_%d", s);
        else
            cgen_printf(b, "ctx->bufs[%d]", s);
        cgen_printf(b, ", %lld);\n", (long long)nb);
    }
    cgen_puts(b, "    return 0;\n}\n\n");
    return ok;
}

/* The device executor's C device launches kernels one at a time (runtime/dexec.c). */
static bool render_launch(cgen_buf *b, const kprogram *p, const kernel *k, const cgen_opts *o)
{
    cgen_printf(b, "KILN_EXPORT int kiln_kernel_%d(kiln_ctx *ctx)\n{\n    ", k->id);
    if (kk_can_fail(k))
        cgen_puts(b, "return ");
    bool ok = render_kernel(b, p, k, o, true);
    cgen_puts(b, kk_can_fail(k) ? ";\n}\n\n" : ";\n    return 0;\n}\n\n");
    return ok;
}

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
    /* the body first: the prelude then carries only the helpers it uses */
    cgen_buf body = {0}, b = {0};
    render_consts(&body, p);
    cgen_render_mm_fns(&body, p, o);
    bool ok = true;
    for (int i = 0; i < p->nkernels && ok; i++)
        ok = render_kernel(&body, p, &p->kernels[i], o, false);
    for (int e = 0; e < p->nentries && ok; e++)
        ok = render_entry(&body, p, e, o);
    for (int i = 0; i < p->nkernels && ok && o->launch; i++)
        ok = render_launch(&body, p, &p->kernels[i], o);
    cgen_printf(&body, "KILN_EXPORT const char kiln_abi[] = \"%s\";\n", KILN_ABI_TAG);
    const char *const texts[] = {cgen_prelude_text, cgen_runtime_text, cgen_vmath_text,
                                 cgen_helpers_text};
    cgen_helpers h;
    ok = ok && !body.oom && cgen_helpers_init(&h, texts, 4);
    if (ok) {
        cgen_helpers_use(&h, body.s);
        cgen_printf(&b,
                    "/* Generated by Kiln's C renderer (codegen/c): %d kernel%s, %d entr%s%s */\n",
                    p->nkernels, p->nkernels == 1 ? "" : "s", p->nentries,
                    p->nentries == 1 ? "y" : "ies", o->openmp ? ", OpenMP" : "");
        if (o->vector_width > 0)
            cgen_printf(
                &b, "/* Built with -mprefer-vector-width=%d: its loops vectorize at %d bits */\n",
                o->vector_width, o->vector_width);
        cgen_helpers_print(&b, &h, cgen_prelude_text);
        cgen_puts(&b, KILN_CTX_TEXT);
        cgen_puts(&b, "\n\n");
        cgen_runerr_enum(&b, &h, body.s); /* when a kernel can fail */
        bool any = false;
        for (int i = 1; i < 4; i++)
            any |= cgen_helpers_needed(&h, texts[i]);
        if (any)
            cgen_puts(&b,
                      "/* The helpers it calls (commented in codegen/c/ and ir/vmath.inc) */\n");
        for (int i = 1; i < 4; i++)
            cgen_helpers_print(&b, &h, texts[i]);
        cgen_puts(&b, body.s);
    }
    cgen_buf_free(&body);
    if (!ok || b.oom) {
        cgen_buf_free(&b);
        return NULL;
    }
    return b.s;
}
