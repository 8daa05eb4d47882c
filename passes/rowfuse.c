/*
 * rowfuse.c - row fusion: reductions over the same rows, and the pointwise
 * work over those rows that reads them, become one kernel that passes over
 * each row several times while the row is in cache: softmax's max, its sum
 * of exp and the division; layer-norm's mean, variance and normalized output;
 * their gradients' row sums and the gradient itself.
 *
 * Requires: a lowered program after pass_hfuse, before pass_memplan.
 * Produces: the same program with fewer kernels (renumbered), REDUCE kernels
 * with earlier phases (kernel.pre) and element stores (ir/kernel.h).
 *
 * A REDUCE kernel A merges into a later kernel B of its entry (at most WINDOW
 * kernels later) when
 *   - every phase of A is a float SUM, MAX or MIN, neither has accumulating
 *     stores, and A has at least MIN_ROWS rows (the row kernel's only
 *     parallel loop is over rows) or little work (a small tensor's whole sum:
 *     one thread either way);
 *   - neither can fail at run time, unless A is a small whole-tensor
 *     reduction (cross-entropy's sum of the rows' losses, a gather, and its
 *     count of kept labels: a check per element, outside any vector loop)
 *     and only one of them can, and then a failing entry stops where it did:
 *     a failing A stays where it was (B moves up), a failing B too (A moves
 *     down); the merged kernel's checks are ones kk_row_may_fail allows;
 *   - B reads what A stores, or both are float sums with no element stores
 *     (sibling sums: a weight's and a bias's gradients summed over the rows in
 *     one pass, each a phase);
 *   - B is a REDUCE over the same rows (dims) and reduced axes (rdims) whose
 *     phases are float SUM, MAX or MIN, a POINTWISE over dims ++ rdims (the
 *     rows' elements, in the same loop variables), or a POINTWISE over dims
 *     (a value per row: its stores are row stores);
 *   - every load of A and B that walks a row walks it contiguously along the
 *     innermost reduced axis, unless they are sibling sums (codegen/c sums
 *     them a block of columns at a time where their loads run along the
 *     last kept axis, else walks the rows as any row kernel) or A is a small
 *     whole-tensor reduction;
 *   - B reads a buffer A stores only at the row (or element) A stores it
 *     (the load's index is A's store's): that load becomes A's value, never
 *     reloaded (an element's is computed again where B needs it);
 *   - the merged kernel writes no buffer it also reads, and has at most
 *     KK_MAX_PHASES phases;
 *   - B can move up to A, or A down to B: no kernel in between writes a
 *     buffer the one that moves reads, or reads or writes one it writes.
 * A's phases run first, then B's; B's stores, when B is pointwise, become
 * element stores. A's row stores stay when something else reads them (an
 * output, the backward's saved statistics); else they and their temporaries
 * are dropped.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

enum { WINDOW = 8, MIN_ROWS = 32 };

static bool row_phases(const kernel *k)
{
    for (int q = 0; q <= k->npre; q++) {
        kk_phase ph = kk_phase_at(k, q);
        if (!ir_dtype_is_float(ph.acc_dtype) ||
            (ph.rop != IR_SUM && ph.rop != IR_MAX && ph.rop != IR_MIN))
            return false;
    }
    return true;
}

static bool plain_stores(const kernel *k)
{
    if (k->serial)
        return false;
    for (int i = 0; i < k->nstores; i++)
        if (k->stores[i].accumulate)
            return false;
    return true;
}

/* Whether each load of k that walks its rows (reads a reduced variable, or
 * for a pointwise over rows x elements, one of the last rrank variables)
 * walks them contiguously along the innermost one: a row kernel passes over
 * each row several times and wants it to be lines of cache. A reduction over
 * columns (a bias gradient) merges only with its sibling sums (the renderer
 * sums them a block of columns at a time). 0 not, 1 yes, -1 out of memory. */
static int rows_contiguous(const kernel *k, int first, int inner)
{
    uint64_t *deps = ir_alloc(sizeof(uint64_t) * (size_t)(k->nx ? k->nx : 1));
    if (!deps)
        return -1;
    uint64_t row = 0;
    for (int v = first; v <= inner && v < 64; v++)
        row |= 1ull << v;
    int ok = 1;
    for (int i = 0; i < k->nx && ok; i++) {
        const kx_node *n = &k->x[i];
        int ops[3], ar = kx_operands(n, ops);
        deps[i] = n->kind == KX_VAR && n->var < 64 ? 1ull << n->var : 0;
        for (int j = 0; j < ar; j++)
            deps[i] |= deps[ops[j]];
        if (n->kind == KX_LOAD && (deps[n->a[0]] & row) && !kk_unit_stride(k, n->a[0], inner))
            ok = 0;
    }
    ir_free(deps);
    return ok;
}

/* Kernels of at most this much work run on one thread (the renderers' bound
 * is the same): a reduction of the whole of a small tensor may lead. */
enum { SMALL_WORK = 1 << 15 };

/* A whole tensor's small reduction: one "row", one thread, where no layout
 * or bounds check costs a row kernel anything (cross-entropy's sum of the
 * rows' losses, a gather that can fail, and its count of kept labels). */
static bool small_whole(const kernel *a)
{
    return a->rank == 0 && ir_shape_numel(a->rrank, a->rdims) < SMALL_WORK;
}

static bool can_lead(const kernel *a)
{
    int64_t rows = ir_shape_numel(a->rank, a->dims),
            work = rows * ir_shape_numel(a->rrank, a->rdims);
    return a->kind == KK_REDUCE && row_phases(a) && plain_stores(a) &&
           (!kk_can_fail(a) || small_whole(a)) && (rows >= MIN_ROWS || work < SMALL_WORK);
}

/* Whether B runs over A's rows: the same rows and reduced axes, a pointwise
 * over each row's elements, or a pointwise over the rows themselves. */
static bool same_rows(const kernel *a, const kernel *b)
{
    if (!plain_stores(b) || (kk_can_fail(b) && !(small_whole(a) && b->kind == KK_REDUCE)) ||
        (kk_can_fail(a) && kk_can_fail(b)))
        return false; /* a check per element would keep a row kernel's loops scalar; of
                         two that can fail, which fails first would change */
    size_t outer = sizeof(int64_t) * (size_t)a->rank, red = sizeof(int64_t) * (size_t)a->rrank;
    if (b->kind == KK_REDUCE)
        return row_phases(b) && b->rank == a->rank && b->rrank == a->rrank &&
               memcmp(b->dims, a->dims, outer) == 0 && memcmp(b->rdims, a->rdims, red) == 0 &&
               a->npre + 1 + b->npre + 1 <= KK_MAX_PHASES;
    if (b->kind != KK_POINTWISE || memcmp(b->dims, a->dims, outer) != 0)
        return false;
    return b->rank == a->rank ||
           (b->rank == a->rank + a->rrank && memcmp(b->dims + a->rank, a->rdims, red) == 0);
}

static bool reads_any(const kernel *k, int buf)
{
    for (int i = 0; i < k->nx; i++)
        if (k->x[i].kind == KX_LOAD && k->x[i].buf == buf)
            return true;
    return false;
}

/* Builds A's phases, then B's, into m (a copy of A). Returns 1 merged, 0 not
 * legal, -1 out of memory. */
static int merge(kernel *m, const kernel *a, const kernel *b)
{
    if (!kk_copy(m, a))
        return -1;
    bool reduce = b->kind == KK_REDUCE;
    int base = a->npre + 1; /* B's phase q runs as phase base + q */
    if (reduce) {           /* A's own reduction becomes the phase before B's */
        for (int i = 0; i < m->nx; i++)
            if (m->x[i].kind == KX_ACC && m->x[i].var == 0)
                m->x[i].var = base;
        m->pre[a->npre] = kk_phase_at(a, a->npre);
        m->npre = base + b->npre;
        m->rop = b->rop;
        m->acc_dtype = b->acc_dtype;
    }
    int *map = ir_alloc(sizeof(int) * (size_t)(b->nx ? b->nx : 1));
    int rc = map ? 1 : -1;
    for (int i = 0; i < b->nx && rc == 1; i++) {
        kx_node n = b->x[i];
        int ops[3], ar = kx_operands(&n, ops);
        for (int j = 0; j < ar; j++)
            n.a[j] = ops[j] >= 0 && ops[j] < i ? map[ops[j]] : -1;
        if (n.kind == KX_ACC && n.var > 0)
            n.var += base;
        int s = n.kind == KX_LOAD ? kk_store_of(a, n.buf) : -1;
        if (s >= 0) { /* A's value of that row or element, when it is that one */
            map[i] = m->stores[s].index == n.a[0] ? m->stores[s].value : -1;
            rc = map[i] >= 0 ? 1 : 0;
        } else {
            map[i] = kk_expr(m, n);
            rc = map[i] >= 0 ? 1 : -1;
        }
    }
    for (int q = 0; reduce && q <= b->npre && rc == 1; q++) { /* a pointwise B has none */
        kk_phase ph = kk_phase_at(b, q);
        ph.body = map[ph.body];
        if (q < b->npre)
            m->pre[base + q] = ph;
        else
            m->body = ph.body;
    }
    for (int i = 0; i < b->nstores && rc == 1; i++) {
        kk_store s = b->stores[i];
        s.index = map[s.index];
        s.value = map[s.value];
        s.element = s.element || (!reduce && b->rank > a->rank);
        if (kk_store_add(m, s) < 0)
            rc = -1;
    }
    for (int i = 0; i < m->nstores && rc == 1; i++) /* no buffer both read and written */
        if (reads_any(m, m->stores[i].buf))
            rc = 0;
    for (int i = 0; i < b->nnodes && rc == 1; i++)
        if (kk_note_node(m, b->nodes[i]) < 0)
            rc = -1;
    ir_free(map);
    if (rc == 1 && kk_can_fail(m) && !kk_row_may_fail(m)) /* unread checks it cannot place */
        rc = 0;
    if (rc != 1) {
        kk_release(m);
        return rc;
    }
    kk_merged_name(m, a, b);
    m->kind = KK_REDUCE;
    return 1;
}

/* Whether B reads anything A stores. */
static bool feeds(const kernel *a, const kernel *b)
{
    for (int i = 0; i < a->nstores; i++)
        if (reads_any(b, a->stores[i].buf))
            return true;
    return false;
}

/* Whether A and B are float sums over the same rows (same_rows holds) that
 * can share one pass, each a phase of its own: a weight's and a bias's
 * gradients, summed over the rows together (codegen/c sums them by columns). */
static bool sibling_sums(const kernel *a, const kernel *b)
{
    if (b->kind != KK_REDUCE || kk_has_element_stores(a) || kk_has_element_stores(b) ||
        kk_can_fail(a))
        return false;
    for (int q = 0; q <= a->npre; q++)
        if (kk_phase_at(a, q).rop != IR_SUM)
            return false;
    for (int q = 0; q <= b->npre; q++)
        if (kk_phase_at(b, q).rop != IR_SUM)
            return false;
    return true;
}

/* Where the merged kernel of A (at apos) and B (at bpos) can run: apos when
 * B can move up, bpos when A can move down, -1 neither. */
static int meeting_point(const kprogram *p, const kentry *x, int apos, int bpos)
{
    const kernel *a = &p->kernels[x->kernels[apos]], *b = &p->kernels[x->kernels[bpos]];
    bool up = true, down = true;
    for (int c = apos + 1; c < bpos; c++) {
        const kernel *k = &p->kernels[x->kernels[c]];
        up = up && !kk_blocks(k, b) && !kk_can_fail(k);
        down = down && !kk_blocks(k, a);
    }
    /* a failing entry stops where it did: what ran after A still runs after
     * it, what ran before B still runs before it (at most one of them can
     * fail: same_rows) */
    if (kk_can_fail(a))
        return up ? apos : -1;
    if (kk_can_fail(b))
        return down ? bpos : -1;
    return down ? bpos : up ? apos : -1;
}

kiln_status pass_rowfuse(kiln_graph *g, kprogram *p)
{
    if (!g || !p)
        return KILN_ERR_INVALID;
    bool *dead = ir_calloc((size_t)p->nkernels + 1);
    if (!dead)
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
    kiln_status s = KILN_OK;
    for (int e = 0; e < p->nentries && s == KILN_OK; e++) {
        kentry *x = &p->entries[e];
        for (int bpos = 1; bpos < x->nkernels && s == KILN_OK; bpos++) {
            /* B absorbs every row kernel before it that it can, nearest first */
            for (int apos = bpos - 1; apos >= 0 && apos >= bpos - WINDOW; apos--) {
                kernel *a = &p->kernels[x->kernels[apos]], *b = &p->kernels[x->kernels[bpos]];
                if (!can_lead(a) || !same_rows(a, b))
                    continue;
                bool feeding = feeds(a, b), siblings = !feeding && sibling_sums(a, b);
                if (!feeding && !siblings)
                    continue;
                int inner = a->rank + a->rrank - 1, ca = rows_contiguous(a, a->rank, inner),
                    cb = rows_contiguous(b, b->kind == KK_REDUCE ? b->rank : a->rank, inner);
                if (ca < 0 || cb < 0) {
                    s = KILN_ERR_NOMEM;
                    break;
                }
                if ((!ca || !cb) && !siblings && !small_whole(a))
                    continue;
                int at = meeting_point(p, x, apos, bpos);
                if (at < 0)
                    continue;
                kernel m;
                int rc = merge(&m, a, b);
                if (rc < 0) {
                    s = KILN_ERR_NOMEM;
                    break;
                }
                if (rc == 0)
                    continue;
                /* the merged kernel takes B's slot in the program, and runs at `at` */
                kk_release(b);
                m.id = b->id;
                *b = m;
                dead[a->id] = true;
                int bid = x->kernels[bpos];
                memmove(&x->kernels[apos], &x->kernels[apos + 1],
                        sizeof(int) * (size_t)(x->nkernels - apos - 1));
                x->nkernels--;
                bpos--; /* B moved one slot up */
                if (at == apos) {
                    memmove(&x->kernels[apos + 1], &x->kernels[apos],
                            sizeof(int) * (size_t)(bpos - apos));
                    x->kernels[apos] = bid;
                    bpos = apos;
                }
                apos = bpos; /* look again from B's new place */
            }
        }
    }
    s = kp_finish_merges(p, dead, s);
    return s == KILN_OK ? KILN_OK : ir_fail_status(g, s, "kiln_compile: out of memory");
}
