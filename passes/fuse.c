/*
 * fuse.c - fusion: decides, per entry, which nodes own a buffer.
 *
 * Requires: a verified graph (after dce and cse). Produces: a fuse_plan that
 * says for every node an entry needs whether it is a leaf buffer, embedded
 * constant data, the root of its own kernel, inlined into its readers, or a
 * matmul absorbed into its epilogue. pass_lower builds one kernel per root.
 *
 * The rule (for one entry; uses = operand slots and outputs that read a node):
 *   1. INPUT/PARAM are leaf buffers; a CONST of more than one element is a
 *      KB_CONST buffer; a CONST of at most one element is a literal (inlined).
 *   2. Roots: every entry output (except leaves and constant buffers, which
 *      get a copy kernel), every REDUCE-class node, MATMUL, SDPA and SCATTER_ADD.
 *   3. MATMUL and SDPA operands must be strided views (permute/expand/slice/reshape/
 *      detach chains, offset 0, batch axes collapsible) of a buffer; the node
 *      where that fails becomes a root. A matmul operand's row and col axes may
 *      walk several axes of the buffer (parts: a reshape merged axes no one
 *      stride walks), and a stack of views of one buffer at evenly spaced
 *      offsets is a view (a convolution's taps: the implicit GEMM reads them in
 *      place, no im2col); such views and stacks read only by matmuls are
 *      inlined, whatever their cost. SCATTER_ADD and GATHER operands are
 *      inlined like any elementwise operand (their kernels read them by index).
 *   4. Any other node (elementwise, cast, where, rand/randn, views, full,
 *      arange, gather, assign's value) with one use is inlined into its user,
 *      unless it loads more than CHEAP_LOADS buffers and that use broadcasts
 *      it where the loop nest cannot hoist it (read_broadcast: inlined, its
 *      loads would be repeated for every copy; max-pool's gradient spreads
 *      col2im's sum of 9 taps over each 2x2 window so). With several uses it is
 *      recomputed in each user when cheap, else a root.
 *      Cheap: its inlined expression tree holds at most CHEAP_OPS arithmetic
 *      ops and CHEAP_LOADS buffer loads (views, casts, detach and constants
 *      cost nothing; a Philox draw costs RAND_COST, so a random node with
 *      several uses is always materialized: computed once, read everywhere).
 *   5. Epilogues: a MATMUL whose readers, and theirs, up to one root, are all
 *      inlined elementwise nodes (bias add, relu, GELU's two reads of its
 *      input, ...) and reshapes (a convolution's [N, 1, O, H*W] as
 *      [N, O, H, W]), at least one elementwise, is absorbed: the root's
 *      kernel becomes the matmul kernel and stores the epilogue.
 *   6. An output that only reshapes (or detaches) a single-use root aliases it:
 *      the root's kernel stores into the output's buffers, in the same order.
 *      So does an assign output whose value is a root of its dtype and shape,
 *      whatever else reads that root (the root's readers read the output).
 *   7. A node that would be inlined at depth MAX_DEPTH (the longest chain of
 *      inlined operands under it) is a root instead, so a kernel's expression
 *      is at most MAX_DEPTH deep however long the graph's chain.
 */
#include "passes/passes.h"

#include <string.h>

enum { CHEAP_OPS = 4, CHEAP_LOADS = 2, RAND_COST = 8, COST_CAP = 1 << 20 };
/* The deepest expression a kernel inlines (rule 7): lowering and rendering
 * walk it recursively, and no real model comes near it. */
enum { MAX_DEPTH = 512 };

static bool has_buf(unsigned char k)
{
    return k == FUSE_ROOT || k == FUSE_LEAF || k == FUSE_CONSTBUF;
}

/* PyTorch's view-stride computation for a reshape (at::detail::computeStride). */
static bool reshape_strides(const kiln_tensor *in, const int64_t *ist, const kiln_tensor *t,
                            int64_t *st)
{
    if (ir_numel(t) == 0 || in->rank == 0) {
        for (int d = 0; d < t->rank; d++)
            st[d] = 0;
        return true;
    }
    int view_d = t->rank - 1;
    int64_t chunk = ist[in->rank - 1], tnumel = 1, vnumel = 1;
    for (int d = in->rank - 1; d >= 0; d--) {
        tnumel *= in->dims[d];
        if (d == 0 || (in->dims[d - 1] != 1 && ist[d - 1] != tnumel * chunk)) {
            while (view_d >= 0 && (vnumel < tnumel || t->dims[view_d] == 1)) {
                st[view_d] = vnumel * chunk;
                vnumel *= t->dims[view_d];
                view_d--;
            }
            if (vnumel != tnumel)
                return false;
            if (d > 0) {
                chunk = ist[d - 1];
                tnumel = 1;
                vnumel = 1;
            }
        }
    }
    return view_d == -1;
}

/* Appends part (size, stride) as the innermost of axis d of v, merged into
 * the part outside it when one stride walks both. */
static bool add_part(fuse_view *v, int d, int64_t size, int64_t stride)
{
    int n = v->nparts[d];
    if (n > 0 && v->pstride[d][n - 1] == size * stride) {
        v->psize[d][n - 1] *= size;
        v->pstride[d][n - 1] = stride;
        return true;
    }
    if (n == KK_MAX_PARTS)
        return false;
    v->psize[d][n] = size;
    v->pstride[d][n] = stride;
    v->nparts[d] = n + 1;
    return true;
}

/* A reshape of view in (of x) as t: x's axes as a row-major list of parts
 * (size-1 ones dropped), then each of t's axes takes the next parts whose
 * sizes multiply to its size, splitting a part where the axis ends inside it.
 * An axis left with one part is plain; one with more keeps them (a merge no
 * stride can walk). False when an axis ends inside a part it does not divide
 * or needs more than KK_MAX_PARTS parts. */
static bool reshape_parts(const kiln_tensor *x, const fuse_view *in, const kiln_tensor *t,
                          fuse_view *v)
{
    enum { MAXP = KILN_MAX_RANK * KK_MAX_PARTS };
    int64_t size[MAXP], stride[MAXP];
    int np = 0;
    for (int d = 0; d < x->rank; d++) {
        int n = in->nparts[d];
        for (int p = 0; p < (n ? n : 1); p++) {
            int64_t sz = n ? in->psize[d][p] : x->dims[d];
            if (sz != 1) {
                size[np] = sz;
                stride[np++] = n ? in->pstride[d][p] : in->strides[d];
            }
        }
    }
    int p = 0;
    for (int d = 0; d < t->rank; d++) {
        v->nparts[d] = 0;
        v->strides[d] = 0;
        for (int64_t need = t->dims[d]; need > 1;) {
            if (p == np)
                return false;
            int64_t take = size[p] <= need ? size[p] : need;
            if (need % take != 0 || size[p] % take != 0 ||
                !add_part(v, d, take, stride[p] * (size[p] / take)))
                return false;
            need /= take;
            size[p] /= take;
            p += size[p] == 1;
        }
        if (v->nparts[d] == 1) { /* one stride walks it */
            v->strides[d] = v->pstride[d][0];
            v->nparts[d] = 0;
        }
    }
    return p == np;
}

static bool is_view_op(ir_op op)
{
    return op == IR_PERMUTE || op == IR_EXPAND || op == IR_SLICE || op == IR_RESHAPE ||
           op == IR_DETACH;
}

/* The node under t's chain of views (stacks of views count: the one node
 * under all of a stack's slabs), or NULL when a stack's slabs stand on
 * different nodes. */
static const kiln_tensor *view_source(const kiln_tensor *t, const unsigned char *kind)
{
    while (!has_buf(kind[t->id]) && is_view_op(t->op))
        t = t->in[0];
    if (has_buf(kind[t->id]) || t->op != IR_CONCAT)
        return t;
    const kiln_tensor *s = view_source(t->in[0], kind);
    for (int i = 1; i < t->nin && s; i++)
        s = view_source(t->in[i], kind) == s ? s : NULL;
    return s;
}

/* A stack t (a concat of slabs of size 1 along its axis) of views of one
 * base with the same strides, at offsets o, o + delta, o + 2 delta, ...: the
 * view whose stacked axis has stride delta. False (*bad set) otherwise. */
static bool stacked_view(const kiln_tensor *t, const unsigned char *kind, fuse_view *v,
                         const kiln_tensor **bad)
{
    int a = t->axis;
    bool slabs = t->nin >= 2 && view_source(t, kind) != NULL;
    for (int i = 0; i < t->nin && slabs; i++)
        slabs = t->in[i]->dims[a] == 1;
    if (!slabs) {
        *bad = t;
        return false;
    }
    fuse_view w;
    int64_t delta = 0;
    for (int i = 0; i < t->nin; i++) {
        if (!fuse_strided(t->in[i], kind, i ? &w : v, bad))
            return false; /* materialize what the slab stands on first */
        if (i == 0)
            continue;
        if (i == 1)
            delta = w.offset - v->offset;
        bool same = w.base == v->base && w.offset == v->offset + i * delta;
        for (int d = 0; d < t->rank && same; d++)
            same =
                w.nparts[d] == 0 && v->nparts[d] == 0 && (d == a || w.strides[d] == v->strides[d]);
        if (!same) {
            *bad = t;
            return false;
        }
    }
    v->strides[a] = delta;
    return true;
}

bool fuse_strided(const kiln_tensor *t, const unsigned char *kind, fuse_view *v,
                  const kiln_tensor **bad)
{
    memset(v->nparts, 0, sizeof v->nparts);
    if (has_buf(kind[t->id])) {
        v->base = t;
        ir_strides(t->rank, t->dims, v->strides);
        v->offset = 0;
        return true;
    }
    if (t->op == IR_CONCAT)
        return stacked_view(t, kind, v, bad);
    fuse_view in;
    if (!is_view_op(t->op) || !fuse_strided(t->in[0], kind, &in, bad)) {
        if (!is_view_op(t->op))
            *bad = t;
        return false;
    }
    const kiln_tensor *x = t->in[0];
    v->base = in.base;
    v->offset = in.offset;
    if (t->op == IR_PERMUTE) {
        for (int d = 0; d < t->rank; d++) {
            int f = t->perm[d];
            v->strides[d] = in.strides[f];
            v->nparts[d] = in.nparts[f];
            memcpy(v->psize[d], in.psize[f], sizeof in.psize[f]);
            memcpy(v->pstride[d], in.pstride[f], sizeof in.pstride[f]);
        }
    } else if (t->op == IR_EXPAND) { /* an expanded axis had size 1: never parts */
        *v = in;
        for (int d = 0; d < t->rank; d++)
            v->strides[d] = x->dims[d] == 1 ? 0 : in.strides[d];
    } else if (t->op == IR_SLICE) {
        *v = in;
        for (int d = 0; d < t->rank; d++) {
            if (in.nparts[d] && (t->begin[d] != 0 || t->dims[d] != x->dims[d])) {
                *bad = t; /* a part of an axis with parts: not one view */
                return false;
            }
            v->strides[d] = in.strides[d] * t->step[d];
            v->offset += in.strides[d] * t->begin[d];
        }
    } else if (t->op == IR_RESHAPE) {
        bool plain = true;
        for (int d = 0; d < x->rank; d++)
            plain = plain && in.nparts[d] == 0;
        if (!(plain && reshape_strides(x, in.strides, t, v->strides)) &&
            !reshape_parts(x, &in, t, v)) {
            *bad = t;
            return false;
        }
    } else {
        *v = in;
    }
    return true;
}

/* Whether the view has no axis with parts. */
static bool plain_view(const kiln_tensor *t, const fuse_view *v)
{
    for (int d = 0; d < t->rank; d++)
        if (v->nparts[d])
            return false;
    return true;
}

bool fuse_attention_strides(const kiln_tensor *t, const fuse_view *v, int64_t st[3], int64_t *inner,
                            int64_t *istride)
{
    int r = t->rank;
    *inner = 1;
    *istride = 0;
    if (r < 2 || !plain_view(t, v))
        return false;
    st[1] = t->dims[r - 2] == 1 ? 0 : v->strides[r - 2];
    st[2] = t->dims[r - 1] == 1 ? 0 : v->strides[r - 1];
    st[0] = 0;
    /* batch axes from the innermost: runs of one stride (a run's stride times
     * its size is the next axis' stride); at most two runs */
    int64_t size = 1;
    int groups = 0;
    for (int d = r - 3; d >= 0; d--) {
        if (t->dims[d] == 1)
            continue;
        if (groups == 0 || v->strides[d] != st[0] * size) {
            if (++groups > 2)
                return false;
            if (groups == 2) {
                *inner = size;
                *istride = st[0];
            }
            st[0] = v->strides[d];
            size = 1;
        }
        size *= t->dims[d];
    }
    return true;
}

bool fuse_matmul_strides(const kiln_tensor *t, const fuse_view *v, int64_t st[3], kk_parts parts[2])
{
    int r = t->rank;
    if (r < 2 || v->offset != 0)
        return false;
    fuse_view w = *v; /* the row and col axes as plain ones for the batch check */
    for (int i = 0; i < 2; i++) {
        int d = r - 2 + i, n = v->nparts[d];
        parts[i].n = n;
        memcpy(parts[i].size, v->psize[d], sizeof parts[i].size);
        memcpy(parts[i].stride, v->pstride[d], sizeof parts[i].stride);
        w.nparts[d] = 0;
        if (n && (t->dims[d] > KK_PART_LEN || ir_numel(v->base) >= INT32_MAX))
            return false;
    }
    int64_t inner, istride;
    return fuse_attention_strides(t, &w, st, &inner, &istride) && inner == 1;
}

/* The cost of a node when inlined: its own ops plus those of its inlined operands. */
static int own_cost(const kiln_tensor *t)
{
    switch (ir_ops[t->op].cls) {
    case IR_CLASS_SOURCE: return (ir_ops[t->op].flags & IR_F_RANDOM) ? RAND_COST : 0;
    case IR_CLASS_UNARY: return t->op == IR_CAST || t->op == IR_DETACH ? 0 : 1;
    case IR_CLASS_BINARY:
    case IR_CLASS_TERNARY: return 1;
    case IR_CLASS_MOVEMENT: return t->op == IR_PAD || t->op == IR_CONCAT ? 1 : 0;
    case IR_CLASS_INDEX: return 1;
    case IR_CLASS_REDUCE:
    case IR_CLASS_MATMUL:
    case IR_CLASS_CONV: /* decomposed before fusion */
    case IR_CLASS_ATTENTION:
    case IR_CLASS_ASSIGN: return 0;
    }
    return 0;
}

static int cap_add(int a, int b)
{
    return a + b > COST_CAP ? COST_CAP : a + b;
}

/* Operand t of a matmul (or of attention: two batch strides allowed) becomes a
 * strided view of a buffer: what it cannot be read through is materialized. */
static void force_view(const kiln_tensor *t, bool attention, unsigned char *kind)
{
    fuse_view v;
    const kiln_tensor *bad = NULL;
    while (!fuse_strided(t, kind, &v, &bad))
        kind[bad->id] = FUSE_ROOT;
    int64_t st[3], inner, istride;
    kk_parts parts[2];
    if (attention ? !fuse_attention_strides(t, &v, st, &inner, &istride)
                  : !fuse_matmul_strides(t, &v, st, parts))
        kind[t->id] = FUSE_ROOT;
}

/* The root that matmul m's epilogue ends in, or -1: every node reached from m
 * through its readers (all of them, in this entry) up to that one root is an
 * inlined elementwise node or reshape; at least one elementwise (a bare
 * reshape aliases instead, rule 6). The nodes may branch and join (GELU reads
 * its input twice). first/next: each node's readers, as lists. */
static int epilogue_root(const kiln_graph *g, const unsigned char *kind, const int *first,
                         const int *next, const int *reader, int m, int *stack, bool *seen)
{
    int top = 0, root = -1;
    bool elementwise = false, ok = true;
    stack[top++] = m;
    while (top > 0 && ok) {
        int n = stack[--top];
        for (int e = first[n]; e >= 0 && ok; e = next[e]) {
            int u = reader[e];
            ir_class c = ir_ops[g->nodes[u]->op].cls;
            bool reshape = g->nodes[u]->op == IR_RESHAPE; /* same element order */
            ok = c == IR_CLASS_UNARY || c == IR_CLASS_BINARY || c == IR_CLASS_TERNARY || reshape;
            elementwise = elementwise || !reshape;
            if (ok && kind[u] == FUSE_ROOT) {
                ok = root < 0 || root == u;
                root = u;
            } else if (ok && !seen[u]) {
                ok = kind[u] == FUSE_INLINE;
                seen[u] = true;
                stack[top++] = u;
            }
        }
    }
    for (int i = 0; i < g->nnodes; i++)
        seen[i] = false;
    return ok && elementwise ? root : -1;
}

/* Rule 5: absorb matmuls into the root their elementwise epilogue ends in. */
static void absorb_epilogues(const kiln_graph *g, unsigned char *kind, int *epi, const bool *isout)
{
    int nn = g->nnodes, nedges = 0;
    for (int i = 0; i < nn; i++)
        nedges += kind[i] == FUSE_UNUSED ? 0 : g->nodes[i]->nin;
    int *first = ir_alloc(sizeof(int) * (size_t)(nn + 1));
    int *next = ir_alloc(sizeof(int) * (size_t)(nedges + 1));
    int *reader = ir_alloc(sizeof(int) * (size_t)(nedges + 1));
    int *stack = ir_alloc(sizeof(int) * (size_t)(nn + 1));
    bool *seen = ir_alloc(sizeof(bool) * (size_t)(nn + 1));
    if (first && next && reader && stack && seen) { /* out of memory: no epilogues */
        memset(seen, 0, sizeof(bool) * (size_t)(nn + 1));
        for (int i = 0; i < nn; i++)
            first[i] = -1;
        int e = 0;
        for (int u = 0; u < nn; u++)
            for (int k = 0; kind[u] != FUSE_UNUSED && k < g->nodes[u]->nin; k++) {
                int x = g->nodes[u]->in[k]->id;
                reader[e] = u;
                next[e] = first[x];
                first[x] = e++;
            }
        for (int i = 0; i < nn; i++) {
            if (g->nodes[i]->op != IR_MATMUL || kind[i] != FUSE_ROOT || isout[i])
                continue;
            int root = epilogue_root(g, kind, first, next, reader, i, stack, seen);
            if (root >= 0 && epi[root] < 0) {
                kind[i] = FUSE_ABSORBED;
                epi[root] = i;
            }
        }
    }
    ir_free(first);
    ir_free(next);
    ir_free(reader);
    ir_free(stack);
    ir_free(seen);
}

/* Rule 6: a root read only through reshapes by an output stores into it. */
static void alias_outputs(const kiln_graph *g, const unsigned char *kind, int *alias,
                          const int *uses, const int *user, const bool *isout)
{
    for (int i = 0; i < g->nnodes; i++)
        alias[i] = -1;
    /* An assign output whose value is a root of the same dtype and shape
     * (read elsewhere too: an optimizer state feeding the param's update)
     * takes that root's stores: its readers read the output's buffer, and no
     * kernel copies the value into it. */
    for (int u = 0; u < g->nnodes; u++) {
        const kiln_tensor *a = g->nodes[u];
        if (a->op != IR_ASSIGN || kind[u] != FUSE_ROOT || !isout[u])
            continue;
        const kiln_tensor *v = a->in[1];
        if (kind[v->id] == FUSE_ROOT && !isout[v->id] && alias[v->id] < 0 && v->dtype == a->dtype &&
            v->rank == a->rank &&
            memcmp(v->dims, a->dims, sizeof(int64_t) * (size_t)a->rank) == 0) {
            bool taken = false; /* one root per output */
            for (int j = 0; j < g->nnodes && !taken; j++)
                taken = alias[j] == u;
            if (!taken)
                alias[v->id] = u;
        }
    }
    for (int i = 0; i < g->nnodes; i++) {
        if (alias[i] >= 0)
            continue;
        if (kind[i] != FUSE_ROOT || isout[i] || uses[i] != 1)
            continue;
        int cur = i;
        for (;;) {
            int u = user[cur];
            if (u < 0 || (g->nodes[u]->op != IR_RESHAPE && g->nodes[u]->op != IR_DETACH))
                break;
            if (kind[u] == FUSE_ROOT && isout[u]) {
                alias[i] = u;
                break;
            }
            if (kind[u] != FUSE_INLINE || uses[u] != 1)
                break;
            cur = u;
        }
    }
}

/* True when node i's reader, through its chain of single views, broadcasts
 * it in a way the kernel cannot hoist: an expand along an axis with a
 * non-broadcast axis inside it, or along trailing axes that a permute further
 * down the chain (through single-use elementwise nodes) moves inward (max-pool's
 * gradient spreads each window's value over the window's rows and columns so).
 * A broadcast along trailing axes only (a row's statistic over the row) is
 * computed once per outer iteration anyway (codegen places each value at the
 * outermost loop it depends on). */
static bool read_broadcast(const kiln_graph *g, int i, const int *user, const int *uses)
{
    bool trailing = false; /* seen: an expand along trailing axes */
    for (int u = user[i]; u >= 0; u = user[u]) {
        const kiln_tensor *t = g->nodes[u];
        ir_class c = ir_ops[t->op].cls;
        if (t->op == IR_EXPAND) {
            const kiln_tensor *in = t->in[0];
            bool grown = false;
            for (int d = 0; d < t->rank; d++) {
                if (in->dims[d] == 1 && t->dims[d] > 1)
                    grown = true;
                else if (grown && in->dims[d] > 1)
                    return true; /* a broadcast axis outside a real one */
            }
            trailing = trailing || grown;
        } else if (t->op == IR_PERMUTE) {
            if (trailing)
                return true;
        } else if (trailing && uses[u] == 1 &&
                   (c == IR_CLASS_UNARY || c == IR_CLASS_BINARY || c == IR_CLASS_TERNARY)) {
            continue;
        } else if (t->op != IR_RESHAPE && t->op != IR_SLICE && t->op != IR_DETACH) {
            return false;
        }
    }
    return false;
}

static void fuse_entry(const kiln_graph *g, fuse_plan *plan, int e, int *ops, int *loads,
                       int *depth, int *user, bool *isout)
{
    int nn = g->nnodes;
    unsigned char *kind = plan->kind + (size_t)e * (size_t)nn;
    int *epi = plan->epilogue + (size_t)e * (size_t)nn;
    int *uses = plan->uses + (size_t)e * (size_t)nn;
    const ir_entry *x = &g->entries[e];
    memset(isout, 0, sizeof(bool) * (size_t)nn);
    for (int k = 0; k < x->n; k++) {
        isout[x->outputs[k]->id] = true;
        kind[x->outputs[k]->id] = FUSE_INLINE; /* "needed"; decided below */
        uses[x->outputs[k]->id]++;
    }
    for (int i = 0; i < nn; i++)
        epi[i] = user[i] = -1;
    for (int i = nn - 1; i >= 0; i--) {
        if (kind[i] == FUSE_UNUSED)
            continue;
        const kiln_tensor *t = g->nodes[i];
        for (int k = 0; k < t->nin; k++) {
            kind[t->in[k]->id] = FUSE_INLINE;
            uses[t->in[k]->id]++;
            user[t->in[k]->id] = i;
        }
    }
    /* mmview[i]: every reader of node i, through views and stacks, is a
     * matmul operand (a convolution's taps: no kernel computes them) */
    bool *mmview = isout + nn;
    for (int i = 0; i < nn; i++)
        mmview[i] = !isout[i];
    for (int u = nn - 1; u >= 0; u--) {
        const kiln_tensor *t = g->nodes[u];
        bool through =
            t->op == IR_MATMUL || ((is_view_op(t->op) || t->op == IR_CONCAT) && mmview[u]);
        for (int k = 0; kind[u] != FUSE_UNUSED && k < t->nin; k++)
            mmview[t->in[k]->id] = mmview[t->in[k]->id] && through;
    }
    for (int i = 0; i < nn; i++) {
        if (kind[i] == FUSE_UNUSED)
            continue;
        const kiln_tensor *t = g->nodes[i];
        ops[i] = own_cost(t);
        loads[i] = 0;
        depth[i] = 1;
        for (int k = 0; k < t->nin; k++) {
            int o = t->in[k]->id;
            if (has_buf(kind[o]) || kind[o] == FUSE_ABSORBED) {
                loads[i] = cap_add(loads[i], 1);
            } else {
                ops[i] = cap_add(ops[i], ops[o]);
                loads[i] = cap_add(loads[i], loads[o]);
                depth[i] = depth[o] + 1 > depth[i] ? depth[o] + 1 : depth[i];
            }
        }
        bool cheap = ops[i] <= CHEAP_OPS && loads[i] <= CHEAP_LOADS;
        ir_class c = ir_ops[t->op].cls;
        if (t->op == IR_INPUT || t->op == IR_PARAM)
            kind[i] = FUSE_LEAF;
        else if (t->op == IR_CONST && ir_numel(t) > 1)
            kind[i] = FUSE_CONSTBUF;
        else if (isout[i] || c == IR_CLASS_REDUCE || c == IR_CLASS_MATMUL ||
                 c == IR_CLASS_ATTENTION || t->op == IR_SCATTER_ADD)
            kind[i] = FUSE_ROOT;
        else if (depth[i] >= MAX_DEPTH)
            kind[i] = FUSE_ROOT; /* a kernel inlines at most MAX_DEPTH levels */
        else if ((t->op == IR_CONCAT || is_view_op(t->op)) && mmview[i])
            kind[i] = FUSE_INLINE; /* read in place (force_view roots it if it cannot be) */
        else
            kind[i] = uses[i] <= 1 ? (loads[i] > CHEAP_LOADS && read_broadcast(g, i, user, uses)
                                          ? FUSE_ROOT
                                          : FUSE_INLINE)
                      : cheap      ? FUSE_INLINE
                                   : FUSE_ROOT;
        if (t->op == IR_MATMUL || c == IR_CLASS_ATTENTION)
            for (int k = 0; k < t->nin; k++)
                force_view(t->in[k], c == IR_CLASS_ATTENTION, kind);
    }
    absorb_epilogues(g, kind, epi, isout);
    alias_outputs(g, kind, plan->alias + (size_t)e * (size_t)nn, uses, user, isout);
}

void fuse_plan_free(fuse_plan *p)
{
    if (!p)
        return;
    ir_free(p->kind);
    ir_free(p->epilogue);
    ir_free(p->uses);
    ir_free(p->alias);
    ir_free(p);
}

kiln_status pass_fuse(kiln_graph *g, fuse_plan **out)
{
    if (out)
        *out = NULL;
    if (!g || !out)
        return KILN_ERR_INVALID;
    size_t nn = (size_t)g->nnodes, cells = nn * (size_t)g->nentries + 1;
    fuse_plan *p = ir_alloc(sizeof(*p));
    int *ops = ir_alloc(sizeof(int) * (nn + 1)), *loads = ir_alloc(sizeof(int) * (nn + 1));
    int *depth = ir_alloc(sizeof(int) * (nn + 1));
    int *user = ir_alloc(sizeof(int) * (nn + 1));
    bool *isout = ir_alloc(sizeof(bool) * (2 * nn + 1)); /* and fuse_entry's mmview */
    if (p) {
        memset(p, 0, sizeof(*p));
        p->kind = ir_alloc(cells);
        p->epilogue = ir_alloc(sizeof(int) * cells);
        p->uses = ir_alloc(sizeof(int) * cells);
        p->alias = ir_alloc(sizeof(int) * cells);
    }
    kiln_status s = KILN_OK;
    if (!p || !p->kind || !p->epilogue || !p->uses || !p->alias || !ops || !loads || !depth ||
        !user || !isout) {
        fuse_plan_free(p);
        s = ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
    } else {
        p->nnodes = g->nnodes;
        p->nentries = g->nentries;
        memset(p->kind, FUSE_UNUSED, cells);
        memset(p->uses, 0, sizeof(int) * cells);
        for (int e = 0; e < g->nentries; e++)
            fuse_entry(g, p, e, ops, loads, depth, user, isout);
        *out = p;
    }
    ir_free(ops);
    ir_free(loads);
    ir_free(depth);
    ir_free(user);
    ir_free(isout);
    return s;
}
