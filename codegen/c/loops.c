/*
 * loops.c - the loop nests of the C renderer's kernels: where each kernel-IR
 * node is computed (the outermost loop it depends on), which nodes a kernel
 * needs, and the pieces every kernel kind prints (OpenMP pragmas, outer loops,
 * the closing of blocks, stores). render_c.c (pointwise, reduce) and
 * render_gemm.c (matmul) build on it.
 */
#include "codegen/c/render.h"

#include <string.h>

void cgen_pragma_for(kr *r, int ind, int collapse, const char *extra)
{
    cgen_indent(r->b, ind);
    cgen_puts(r->b, "#pragma omp parallel for");
    if (collapse > 1)
        cgen_printf(r->b, " collapse(%d)", collapse);
    cgen_printf(r->b, " schedule(static)%s num_threads(kiln_threads(ctx))\n", extra);
}

void cgen_close_to(kr *r, int from, int to)
{
    for (int d = from; d > to; d--) {
        cgen_indent(r->b, d);
        cgen_puts(r->b, "}\n");
    }
}

static int var_level(const kernel *k, int var)
{
    if (k->kind == KK_MATMUL || k->kind == KK_ATTENTION)
        return var == 2 ? 2 : 1; /* epilogue loops: (b, i) rows, then j */
    return var + 1;
}

static void mark(kr *r, int i)
{
    if (i >= 0 && i < r->k->nx)
        r->need[i] = true;
}

/* An f32 rand or randn node whose element index is the innermost loop
 * variable plus a value computed outside that loop can be filled KILN_RCHUNK
 * values at a time, a Philox block per 4 elements and vectorized over blocks,
 * into a small buffer the loop then reads: no random tensor is materialized
 * and no block is computed 4 times. Rows shorter than CGEN_RCHUNK_MIN draw
 * element by element (the same numbers: a short row does not fill one vector
 * of blocks). Returns the added node, -1 when the index is the variable alone,
 * -2 when node i is not such a node. */
int cgen_rng_chunk_base(const kr *r, int i)
{
    const kernel *k = r->k;
    const kx_node *n = &k->x[i];
    int inner = k->rank - 1;
    if (k->kind != KK_POINTWISE || k->rank < 1 || !r->need[i] || n->dtype != KILN_F32 ||
        (n->kind != KX_RAND && n->kind != KX_RANDN) || n->a[0] < 0 || n->a[0] >= i ||
        k->dims[inner] < CGEN_RCHUNK_MIN)
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

/* need[]: the nodes that reach a store, the reduce body or a check; a chunked
 * rng node needs only its base, not its index. */
void cgen_mark_needs(kr *r)
{
    const kernel *k = r->k;
    memset(r->need, 0, (size_t)k->nx + 1);
    for (int i = 0; i < k->nstores; i++) {
        mark(r, k->stores[i].index);
        mark(r, k->stores[i].value);
    }
    for (int q = 0; k->kind == KK_REDUCE && q <= k->npre; q++)
        mark(r, kk_phase_at(k, q).body);
    /* a bounds check runs even when no store reads its value (a gather from
     * a table whose elements are all equal needs no index, only the check) */
    for (int i = 0; i < k->nx; i++)
        if (k->x[i].kind == KX_CHECK)
            mark(r, i);
    for (int i = k->nx - 1; i >= 0; i--) {
        int ops[3], ar = cgen_operands(&k->x[i], ops);
        if (r->need[i] && r->chunk[i])
            mark(r, cgen_rng_chunk_base(r, i));
        else if (r->need[i])
            for (int j = 0; j < ar; j++)
                mark(r, ops[j]);
    }
}

void cgen_place_nodes(kr *r)
{
    const kernel *k = r->k;
    cgen_mark_needs(r);
    for (int i = 0; i < k->nx; i++) {
        const kx_node *n = &k->x[i];
        int ops[3], ar = cgen_operands(n, ops), lev = 0;
        bool post = false;
        if (n->kind == KX_VAR)
            lev = var_level(k, n->var);
        if (n->kind == KX_ACC) {
            lev = k->kind == KK_MATMUL || k->kind == KK_ATTENTION ? 2
                  : k->kind == KK_REDUCE                          ? k->rank
                                                                  : 0;
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
    int ops[KK_MAX_OPERANDS], nops = kk_operand_bufs(k, ops);
    for (int i = 0; i < nops; i++)
        if (ops[i] >= 0 && ops[i] < r->p->nbufs)
            r->use[ops[i]] |= 1;
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
void cgen_emit_at(kr *r, int depth, bool post, int ind)
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
void cgen_emit_leftovers(kr *r, int ind)
{
    for (int i = 0; i < r->k->nx; i++)
        if (r->need[i] && !r->done[i]) {
            cgen_indent(r->b, ind);
            cgen_printf(r->b, "#error \"kernel IR: x%d is used outside its loops\"\n", i);
            r->done[i] = true;
        }
}

void cgen_emit_stores(kr *r, int ind)
{
    for (int i = 0; i < r->k->nstores; i++)
        cgen_store(r->b, &r->e, r->p, &r->k->stores[i], ind, false);
}

bool cgen_serial(const kernel *k)
{
    bool s = k->serial;
    for (int i = 0; i < k->nstores; i++)
        s = s || k->stores[i].accumulate;
    return s;
}

/* How many outer loops one `omp parallel for` covers (0: none). */
int cgen_outer_collapse(const kr *r, int64_t work)
{
    const kernel *k = r->k;
    if (!r->o.openmp || cgen_serial(k) || k->rank == 0 || work < PAR_WORK ||
        ir_shape_numel(k->rank, k->dims) < 2)
        return 0;
    /* a short first axis leaves threads idle; collapse it with the next */
    return k->rank >= 2 && k->dims[0] < 64 ? 2 : 1;
}

/* Opens the first n loops, declaring each node at the outermost loop it can
 * live in (with collapse(c), nothing may sit between the first c loops).
 * With simd, the last of them, when it is not one of the parallel ones, is
 * an `omp simd` loop: inside a parallel region clang sees the buffers as
 * captured pointers without `restrict`, and a kernel with several stores
 * then stays scalar (its run-time overlap checks cost more than vectors
 * gain). Only for loops whose iterations are independent: a pointwise
 * kernel reads a buffer it writes only at the element it writes. */
void cgen_open_outer(kr *r, int col, int n, bool simd)
{
    const kernel *k = r->k;
    cgen_emit_at(r, 0, false, 1);
    for (int d = 0; d < n; d++) {
        if (d == 0 && col)
            cgen_pragma_for(r, 1, col, "");
        if (simd && col && d == n - 1 && d >= col) {
            cgen_indent(r->b, d + 1);
            cgen_puts(r->b, "#pragma omp simd\n");
        }
        cgen_indent(r->b, d + 1);
        cgen_printf(r->b, "for (int64_t i%d = 0; i%d < %lld; i%d++) {\n", d, d,
                    (long long)k->dims[d], d);
        if (d + 1 >= col)
            cgen_emit_at(r, d + 1, false, d + 2);
    }
}

bool cgen_empty_domain(const kernel *k)
{
    switch (k->kind) {
    case KK_POINTWISE:
    case KK_REDUCE: return ir_shape_numel(k->rank, k->dims) == 0;
    case KK_MATMUL: return k->mm.batch * k->mm.m * k->mm.n == 0;
    case KK_ATTENTION: return ir_shape_numel(3, k->dims) == 0; /* (batch, rows, cols) */
    }
    return false;
}
