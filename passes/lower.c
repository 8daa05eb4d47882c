/*
 * lower.c - lowers a fused graph to the kernel IR: one kernel per root.
 *
 * Requires: a verified graph and its fuse_plan. Produces: a kprogram with one
 * buffer per leaf (shared by entries), per embedded constant, per entry output
 * and per (entry, root) temporary; per entry, its kernels in topological order
 * and the ASSIGN copies. A node's value at a multi-index is built recursively
 * from docs/ir.md: views become index arithmetic on the loop variables, never
 * copies; roots and leaves are loads. Temp offsets are left to pass_memplan.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    kiln_graph *g;
    kprogram *p;
    int e;
    const unsigned char *kind;
    const int *epi;
    const int *alias;
    int *bufof;    /* node -> its buffer in this entry, or -1 */
    int *constbuf; /* node -> its KB_CONST buffer (all entries), or -1 */
    int *outbuf;   /* output index -> its KB_OUTPUT buffer */
    int *ek;       /* this entry's kernels */
    int nek, capek;
    kernel *k;    /* the kernel being built */
    int root;     /* the node it computes (computed, not loaded), or -1 */
    int acc_node; /* the node whose value is KX_ACC, or -1 */
    bool internal;
} lw;

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((x) < 0)                                                                               \
            return -1;                                                                             \
    } while (0)

/* ---- expression helpers ------------------------------------------------------ */

static int c64(lw *L, int64_t v)
{
    return kk_const_i(L->k, KILN_I64, v);
}

static int xop(lw *L, ir_op op, kiln_dtype dt, int a, int b, int c)
{
    if (a < 0 || b < -1 || c < -1)
        return -1;
    int ar = ir_ops[op].arity;
    if ((ar >= 2 && b < 0) || (ar >= 3 && c < 0))
        return -1;
    return kk_expr(L->k, (kx_node){.kind = KX_OP,
                                   .dtype = dt,
                                   .op = op,
                                   .a = {a, ar >= 2 ? b : 0, ar >= 3 ? c : 0}});
}

static int ikind(lw *L, kx_kind kind, int a, int b)
{
    if (a < 0 || b < 0)
        return -1;
    return kk_expr(L->k, (kx_node){.kind = kind, .dtype = KILN_I64, .a = {a, b, 0}});
}

static int convert(lw *L, int x, kiln_dtype dt)
{
    if (x < 0)
        return -1;
    if (L->k->x[x].dtype == dt)
        return x;
    return xop(L, IR_CAST, dt, x, -1, -1);
}

/* Row-major linear index of idx in dims; size-1 axes contribute nothing. */
static int linear(lw *L, int rank, const int64_t *dims, const int *idx)
{
    int lin = c64(L, 0);
    int64_t stride = 1;
    int terms[KILN_MAX_RANK], nt = 0;
    for (int d = rank - 1; d >= 0; d--) {
        if (dims[d] != 1) {
            TRY(terms[nt++] = xop(L, IR_MUL, KILN_I64, idx[d], c64(L, stride), -1));
        }
        stride *= dims[d];
    }
    for (int i = nt - 1; i >= 0; i--)
        TRY(lin = xop(L, IR_ADD, KILN_I64, lin, terms[i], -1));
    return lin;
}

/* Splits lin (< numel of dims[0..n)) into per-axis indices. */
static int unlinear(lw *L, int lin, int n, const int64_t *dims, int *idx)
{
    int outer = -1;
    for (int d = 0; d < n; d++)
        if (dims[d] != 1) {
            outer = d;
            break;
        }
    for (int d = n - 1; d >= 0; d--) {
        if (dims[d] == 1) {
            TRY(idx[d] = c64(L, 0));
        } else if (d == outer) {
            idx[d] = lin;
        } else {
            TRY(idx[d] = ikind(L, KX_IMOD, lin, c64(L, dims[d])));
            TRY(lin = ikind(L, KX_IDIV, lin, c64(L, dims[d])));
        }
    }
    return 0;
}

static int load(lw *L, int buf, int lin)
{
    if (lin < 0)
        return -1;
    return kk_expr(
        L->k,
        (kx_node){.kind = KX_LOAD, .dtype = L->p->bufs[buf].dtype, .buf = buf, .a = {lin, 0, 0}});
}

/* The loop variables of a domain, as indices (0 for size-1 axes). */
static int vars(lw *L, int first, int rank, const int64_t *dims, int *idx)
{
    for (int d = 0; d < rank; d++)
        TRY(idx[d] = dims[d] == 1 ? c64(L, 0) : kk_var(L->k, first + d));
    return 0;
}

static int internal(lw *L)
{
    L->internal = true;
    return -1;
}

/* ---- a node's value at a multi-index ------------------------------------------- */

static int emit(lw *L, const kiln_tensor *t, const int *idx);

static int emit_source(lw *L, const kiln_tensor *t, const int *idx)
{
    kernel *k = L->k;
    if (t->op == IR_CONST) {
        if (ir_numel(t) == 0)
            return kk_const_i(k, t->dtype, 0);
        if (ir_dtype_is_float(t->dtype))
            return kk_const_f(k, t->dtype, ir_load_f(t->dtype, t->data, 0));
        return kk_const_i(k, t->dtype, ir_load_i(t->dtype, t->data, 0));
    }
    if (t->op == IR_FULL)
        return kk_const_f(k, t->dtype, t->value);
    if (t->op == IR_ARANGE) {
        /* start + i * step in double, converted once (as the interpreter) */
        if (t->value == 0 && t->value2 == 1)
            return convert(L, idx[0], t->dtype);
        int i = convert(L, idx[0], KILN_F64);
        int v = xop(L, IR_MUL, KILN_F64, i, kk_const_f(k, KILN_F64, t->value2), -1);
        v = xop(L, IR_ADD, KILN_F64, kk_const_f(k, KILN_F64, t->value), v, -1);
        return convert(L, v, t->dtype);
    }
    if (t->op == IR_RAND || t->op == IR_RANDN) {
        /* element index = linear index in the random node's own shape */
        int lin = linear(L, t->rank, t->dims, idx);
        TRY(lin);
        return kk_expr(k, (kx_node){.kind = t->op == IR_RAND ? KX_RAND : KX_RANDN,
                                    .dtype = t->dtype,
                                    .stream = t->stream,
                                    .a = {lin, 0, 0}});
    }
    return internal(L); /* INPUT, PARAM: always buffers */
}

static int and_cond(lw *L, int a, int b)
{
    if (a < 0)
        return b;
    return xop(L, IR_WHERE, KILN_BOOL, a, b, kk_const_f(L->k, KILN_BOOL, 0));
}

/* p clamped into [0, hi]: loads stay in bounds when every node is computed eagerly. */
static int clamp(lw *L, int p, bool lo, int64_t hi, bool check_hi)
{
    if (lo)
        p = xop(L, IR_WHERE, KILN_I64, xop(L, IR_LT, KILN_BOOL, p, c64(L, 0), -1), c64(L, 0), p);
    if (check_hi)
        p = xop(L, IR_MINIMUM, KILN_I64, p, c64(L, hi), -1);
    return p;
}

static int emit_pad(lw *L, const kiln_tensor *t, const int *idx)
{
    const kiln_tensor *x = t->in[0];
    int fill = kk_const_f(L->k, t->dtype, t->value);
    if (ir_numel(x) == 0)
        return fill;
    int xi[KILN_MAX_RANK], cond = -1;
    for (int d = 0; d < t->rank; d++) {
        int p = xop(L, IR_SUB, KILN_I64, idx[d], c64(L, t->begin[d]), -1);
        TRY(p);
        if (t->begin[d] > 0)
            TRY(cond = and_cond(L, cond, xop(L, IR_GE, KILN_BOOL, p, c64(L, 0), -1)));
        if (t->after[d] > 0)
            TRY(cond = and_cond(L, cond, xop(L, IR_LT, KILN_BOOL, p, c64(L, x->dims[d]), -1)));
        TRY(xi[d] = clamp(L, p, t->begin[d] > 0, x->dims[d] - 1, t->after[d] > 0));
    }
    int v = emit(L, x, xi);
    if (cond < 0)
        return v;
    return xop(L, IR_WHERE, t->dtype, cond, v, fill);
}

static int emit_concat(lw *L, const kiln_tensor *t, const int *idx)
{
    int ax = t->axis, res = -1, first = -1, last = -1;
    int64_t o = 0;
    for (int k = 0; k < t->nin; k++) {
        if (t->in[k]->dims[ax] > 0) {
            first = first < 0 ? k : first;
            last = k;
        }
    }
    if (first < 0 || ir_numel(t) == 0)
        return kk_const_i(L->k, t->dtype, 0);
    for (int k = last; k >= first; k--) {
        const kiln_tensor *xk = t->in[k];
        o = 0;
        for (int j = 0; j < k; j++)
            o += t->in[j]->dims[ax];
        if (xk->dims[ax] == 0)
            continue;
        int xi[KILN_MAX_RANK];
        memcpy(xi, idx, sizeof(int) * (size_t)t->rank);
        int p = xop(L, IR_SUB, KILN_I64, idx[ax], c64(L, o), -1);
        TRY(xi[ax] = clamp(L, p, k > first, xk->dims[ax] - 1, k < last));
        int v = emit(L, xk, xi);
        TRY(v);
        if (res < 0)
            res = v;
        else
            TRY(res = xop(L, IR_WHERE, t->dtype,
                          xop(L, IR_LT, KILN_BOOL, idx[ax], c64(L, o + xk->dims[ax]), -1), v, res));
    }
    return res;
}

static int emit_gather(lw *L, const kiln_tensor *t, const int *idx)
{
    const kiln_tensor *table = t->in[0], *ids = t->in[1];
    int ax = t->axis, ir = ids->rank, ti[KILN_MAX_RANK];
    int id = convert(L, emit(L, ids, idx + ax), KILN_I64);
    TRY(id);
    TRY(id = kk_expr(L->k, (kx_node){.kind = KX_CHECK,
                                     .dtype = KILN_I64,
                                     .a = {id, 0, 0},
                                     .size = table->dims[ax],
                                     .axis = ax}));
    for (int d = 0; d < ax; d++)
        ti[d] = idx[d];
    ti[ax] = id;
    for (int d = ax + 1; d < table->rank; d++)
        ti[d] = idx[d - 1 + ir];
    return emit(L, table, ti);
}

/* x's indices for a reshape t = reshape(x): axes are matched in groups of
 * equal element count, so only axes that really regroup need div/mod. */
/* The index xi in shape (xr, xd) of the element at index idx in shape (r, dims)
 * of the same elements in the same row-major order: axis groups of equal size
 * map through their linear index, so a split or merged axis costs a division
 * and nothing else does. */
static int regroup(lw *L, int r, const int64_t *dims, const int *idx, int xr, const int64_t *xd,
                   int *xi)
{
    if (ir_shape_numel(r, dims) == 0) {
        for (int d = 0; d < xr; d++)
            TRY(xi[d] = c64(L, 0));
        return 0;
    }
    int i = 0, j = 0;
    while (i < r || j < xr) {
        int i0 = i, j0 = j;
        int64_t po = 1, px = 1;
        if (i < r)
            po *= dims[i++];
        if (j < xr)
            px *= xd[j++];
        while (po != px) {
            if (po < px && i < r)
                po *= dims[i++];
            else if (j < xr)
                px *= xd[j++];
            else if (i < r)
                po *= dims[i++];
            else
                break;
        }
        int lin = linear(L, i - i0, dims + i0, idx + i0);
        TRY(lin);
        TRY(unlinear(L, lin, j - j0, xd + j0, xi + j0));
    }
    return 0;
}

static int reshape_index(lw *L, const kiln_tensor *t, const int *idx, int *xi)
{
    return regroup(L, t->rank, t->dims, idx, t->in[0]->rank, t->in[0]->dims, xi);
}

static int emit_movement(lw *L, const kiln_tensor *t, const int *idx)
{
    const kiln_tensor *x = t->in[0];
    int xi[KILN_MAX_RANK];
    if (t->op == IR_PAD)
        return emit_pad(L, t, idx);
    if (t->op == IR_CONCAT)
        return emit_concat(L, t, idx);
    if (t->op == IR_RESHAPE) {
        TRY(reshape_index(L, t, idx, xi));
    } else if (t->op == IR_PERMUTE) {
        for (int d = 0; d < t->rank; d++)
            xi[t->perm[d]] = idx[d];
    } else if (t->op == IR_EXPAND) {
        for (int d = 0; d < t->rank; d++)
            TRY(xi[d] = x->dims[d] == 1 ? c64(L, 0) : idx[d]);
    } else if (t->op == IR_SLICE) {
        for (int d = 0; d < t->rank; d++)
            TRY(xi[d] = xop(L, IR_ADD, KILN_I64, c64(L, t->begin[d]),
                            xop(L, IR_MUL, KILN_I64, idx[d], c64(L, t->step[d]), -1), -1));
    } else {
        return internal(L);
    }
    return emit(L, x, xi);
}

static int emit(lw *L, const kiln_tensor *t, const int *idx)
{
    if (t->id == L->acc_node) {
        TRY(kk_note_node(L->k, t->id));
        int acc = kk_expr(L->k, (kx_node){.kind = KX_ACC, .dtype = L->k->acc_dtype});
        return convert(L, acc, t->dtype);
    }
    if (t->id != L->root && L->bufof[t->id] >= 0) {
        int b = L->bufof[t->id];
        return load(L, b, linear(L, t->rank, t->dims, idx));
    }
    TRY(kk_note_node(L->k, t->id));
    int a = -1, b = -1, c = -1;
    switch (ir_ops[t->op].cls) {
    case IR_CLASS_SOURCE: return emit_source(L, t, idx);
    case IR_CLASS_UNARY:
        TRY(a = emit(L, t->in[0], idx));
        if (t->op == IR_DETACH)
            return a;
        return xop(L, t->op, t->dtype, a, -1, -1);
    case IR_CLASS_BINARY:
        TRY(a = emit(L, t->in[0], idx));
        TRY(b = emit(L, t->in[1], idx));
        return xop(L, t->op, t->dtype, a, b, -1);
    case IR_CLASS_TERNARY:
        TRY(a = emit(L, t->in[0], idx));
        TRY(b = emit(L, t->in[1], idx));
        TRY(c = emit(L, t->in[2], idx));
        return xop(L, t->op, t->dtype, a, b, c);
    case IR_CLASS_MOVEMENT: return emit_movement(L, t, idx);
    case IR_CLASS_INDEX:
        if (t->op == IR_GATHER)
            return emit_gather(L, t, idx);
        return internal(L);
    case IR_CLASS_ASSIGN: return convert(L, emit(L, t->in[1], idx), t->dtype);
    case IR_CLASS_REDUCE:
    case IR_CLASS_MATMUL:
    case IR_CLASS_CONV:
    case IR_CLASS_ATTENTION: return internal(L);
    }
    return internal(L);
}

/* ---- kernels ------------------------------------------------------------------- */

static bool quiet_op(ir_op op)
{
    return op == IR_RESHAPE || op == IR_PERMUTE || op == IR_EXPAND || op == IR_SLICE ||
           op == IR_DETACH || op == IR_FULL || op == IR_CONST || op == IR_INPUT || op == IR_PARAM;
}

/* k<id>_<first four distinct ops it covers, views and constants left out>. */
static void name_kernel(lw *L, const char *fallback)
{
    kernel *k = L->k;
    const char *names[4];
    int n = 0;
    for (int i = 0; i < k->nnodes && n < 4; i++) {
        const char *nm = ir_ops[L->g->nodes[k->nodes[i]]->op].name;
        bool dup = quiet_op(L->g->nodes[k->nodes[i]]->op);
        for (int j = 0; j < n && !dup; j++)
            dup = strcmp(names[j], nm) == 0;
        if (!dup)
            names[n++] = nm;
    }
    size_t len = (size_t)snprintf(k->name, sizeof k->name, "k%d", k->id);
    if (n == 0) {
        names[0] = fallback;
        n = 1;
    }
    for (int i = 0; i < n && len + strlen(names[i]) + 1 < sizeof k->name; i++)
        len += (size_t)snprintf(k->name + len, sizeof k->name - len, "_%s", names[i]);
}

static int begin_kernel(lw *L, kk_kind kind, int root)
{
    if (L->nek + 1 > L->capek) {
        int nc = L->capek ? L->capek * 2 : 16;
        int *a = ir_realloc(L->ek, sizeof(int) * (size_t)nc);
        if (!a)
            return -1;
        L->ek = a;
        L->capek = nc;
    }
    L->k = kp_kernel_new(L->p, kind);
    if (!L->k)
        return -1;
    L->ek[L->nek++] = L->k->id;
    L->root = root;
    L->acc_node = -1;
    return 0;
}

/* Stores v (node n's value at linear index lin) into n's buffers in this entry:
 * every output slot that names n, or its temp. */
static int store_node(lw *L, const kiln_tensor *n, int lin, int v)
{
    const ir_entry *x = &L->g->entries[L->e];
    if (L->alias[n->id] >= 0)
        n = L->g->nodes[L->alias[n->id]];
    bool any = false;
    for (int k = 0; k < x->n; k++)
        if (x->outputs[k] == n) {
            int b = L->outbuf[k];
            TRY(kk_store_add(L->k,
                             (kk_store){b, lin, convert(L, v, L->p->bufs[b].dtype), false, false}));
            any = true;
        }
    if (!any) {
        int b = L->bufof[n->id];
        TRY(kk_store_add(L->k,
                         (kk_store){b, lin, convert(L, v, L->p->bufs[b].dtype), false, false}));
    }
    return 0;
}

static int pointwise_kernel(lw *L, const kiln_tensor *n)
{
    TRY(begin_kernel(L, KK_POINTWISE, n->id));
    kernel *k = L->k;
    /* A root that reshapes an inlined node of more axes loops over those axes:
     * a reshape keeps the row-major order, so the store index is the same,
     * and the operand's index needs no division (im2col's taps [N, C, 9, H, W]
     * stored as the matmul operand [N, 1, 9C, HW]). */
    const kiln_tensor *d = n;
    while ((d->op == IR_RESHAPE || d->op == IR_DETACH) && L->bufof[d->in[0]->id] < 0 &&
           d->in[0]->rank >= d->rank && d->in[0]->id != L->acc_node) {
        TRY(kk_note_node(k, d->id));
        d = d->in[0];
    }
    int idx[KILN_MAX_RANK];
    k->rank = d->rank;
    memcpy(k->dims, d->dims, sizeof(int64_t) * (size_t)d->rank);
    TRY(vars(L, 0, d->rank, d->dims, idx));
    int v = emit(L, d, idx); /* d is inlined: computed, not loaded */
    TRY(v);
    TRY(store_node(L, n, linear(L, d->rank, d->dims, idx), v));
    name_kernel(L, ir_ops[n->op].name);
    return 0;
}

/* A copy of a buffered node (a leaf output) into its output buffers. */
static int copy_kernel(lw *L, const kiln_tensor *n)
{
    TRY(begin_kernel(L, KK_POINTWISE, -1));
    kernel *k = L->k;
    int idx[KILN_MAX_RANK];
    k->rank = n->rank;
    memcpy(k->dims, n->dims, sizeof(int64_t) * (size_t)n->rank);
    TRY(kk_note_node(k, n->id));
    TRY(vars(L, 0, n->rank, n->dims, idx));
    int lin = linear(L, n->rank, n->dims, idx);
    TRY(store_node(L, n, lin, load(L, L->bufof[n->id], lin)));
    name_kernel(L, "copy");
    return 0;
}

/* Whether expression i of k reads loop variable v. */
static bool reads_var(const kernel *k, int i, int v, unsigned char *seen)
{
    if (seen[i])
        return seen[i] == 2;
    seen[i] = 1;
    const kx_node *x = &k->x[i];
    int ops[3], n = kx_operands(x, ops);
    bool r = x->kind == KX_VAR && x->var == v;
    for (int j = 0; j < n && !r; j++)
        r = reads_var(k, ops[j], v, seen);
    seen[i] = r ? 2 : 1;
    return r;
}

/* A sum over one axis of where(i == e, v, 0), where i is the position on that
 * axis and e does not depend on it, is v at i = e (0 when e is out of range):
 * one load per output, not a loop over the axis (max-pool's value, the window
 * element at its argmax). When x, at the reduce kernel's indices xi, is such
 * a select, the kernel starts over as that pointwise kernel and this returns 1;
 * 0 when it is not. */
static int onehot_sum(lw *L, const kiln_tensor *n, int *xi)
{
    const kiln_tensor *x = n->in[0];
    if (n->op != IR_SUM || !n->axes || (n->axes & (n->axes - 1)) || x->op != IR_WHERE ||
        L->bufof[x->id] >= 0)
        return 0;
    const kiln_tensor *c = x->in[0];
    int a = __builtin_ctz(n->axes);
    if (c->op != IR_EQ || L->bufof[c->id] >= 0 || x->dims[a] < 2)
        return 0;
    kernel *k = L->k;
    int zero = emit(L, x->in[2], xi), p = emit(L, c->in[0], xi), q = emit(L, c->in[1], xi);
    TRY(zero);
    TRY(p);
    TRY(q);
    const kx_node *z = &k->x[zero];
    if (z->kind != KX_CONST || (ir_dtype_is_float(z->dtype) ? z->value != 0 : z->ivalue != 0))
        return 0;
    int pos = kk_var(k, k->rank); /* the reduced axis' variable */
    TRY(pos);
    unsigned char *seen = ir_alloc((size_t)k->nx);
    if (!seen)
        return -1;
    memset(seen, 0, (size_t)k->nx);
    int side = p == pos && !reads_var(k, q, k->rank, seen)   ? 1
               : q == pos && !reads_var(k, p, k->rank, seen) ? 0
                                                             : -1;
    ir_free(seen);
    if (side < 0)
        return 0;
    /* start over: a pointwise kernel over the outer axes */
    k->kind = KK_POINTWISE;
    k->rrank = 0;
    k->nx = k->nstores = k->nnodes = 0;
    TRY(kk_note_node(k, n->id));
    TRY(kk_note_node(k, x->id));
    int ei[KILN_MAX_RANK]; /* as xi, in the new expression; e at axis a */
    for (int d = 0, o = 0; d < x->rank; d++) {
        TRY(ei[d] = d == a || x->dims[d] == 1 ? c64(L, 0) : kk_var(k, o));
        o += d != a;
    }
    int e = emit(L, c->in[side], ei);
    TRY(e);
    int ok = and_cond(L, xop(L, IR_GE, KILN_BOOL, e, c64(L, 0), -1),
                      xop(L, IR_LT, KILN_BOOL, e, c64(L, x->dims[a]), -1));
    TRY(ei[a] = clamp(L, e, true, x->dims[a] - 1, true));
    int v = emit(L, x->in[1], ei);
    TRY(v);
    v = xop(L, IR_WHERE, x->dtype, ok, v, convert(L, emit(L, x->in[2], ei), x->dtype));
    int oi[KILN_MAX_RANK];
    for (int d = 0; d < x->rank; d++)
        oi[d] = d == a ? c64(L, 0) : ei[d];
    TRY(store_node(L, n, linear(L, n->rank, n->dims, oi), convert(L, v, n->dtype)));
    name_kernel(L, ir_ops[n->op].name);
    return 1;
}

static int reduce_kernel(lw *L, const kiln_tensor *n)
{
    TRY(begin_kernel(L, KK_REDUCE, n->id));
    kernel *k = L->k;
    const kiln_tensor *x = n->in[0];
    TRY(kk_note_node(k, n->id));
    k->rop = n->op;
    bool fl = ir_dtype_is_float(x->dtype);
    k->acc_dtype = n->op == IR_SUM                              ? (fl ? KILN_F64 : KILN_I64)
                   : (n->op == IR_ARGMAX || n->op == IR_ARGMIN) ? KILN_I64
                                                                : x->dtype;
    for (int d = 0; d < x->rank; d++) {
        if (n->axes & (1u << d))
            k->rdims[k->rrank++] = x->dims[d];
        else
            k->dims[k->rank++] = x->dims[d];
    }
    int xi[KILN_MAX_RANK], oi[KILN_MAX_RANK], o = 0, r = 0;
    for (int d = 0; d < x->rank; d++) {
        if (n->axes & (1u << d)) {
            TRY(xi[d] = x->dims[d] == 1 ? c64(L, 0) : kk_var(k, k->rank + r));
            TRY(oi[d] = c64(L, 0));
            r++;
        } else {
            TRY(xi[d] = x->dims[d] == 1 ? c64(L, 0) : kk_var(k, o));
            oi[d] = xi[d];
            o++;
        }
    }
    int onehot = onehot_sum(L, n, xi);
    TRY(onehot);
    if (onehot)
        return 0;
    int body = emit(L, x, xi);
    if (n->op == IR_SUM)
        body = convert(L, body, k->acc_dtype);
    TRY(body);
    k->body = body;
    int acc = kk_expr(k, (kx_node){.kind = KX_ACC, .dtype = k->acc_dtype});
    TRY(store_node(L, n, linear(L, n->rank, n->dims, oi), convert(L, acc, n->dtype)));
    name_kernel(L, ir_ops[n->op].name);
    return 0;
}

/* The (batch, row, col) domain of a MATMUL or ATTENTION kernel computing
 * node acc (of rank >= 2: its leading axes are the batch) and the stores of
 * root, its epilogue (KX_ACC is acc's element). */
static int epilogue(lw *L, const kiln_tensor *root, const kiln_tensor *acc, int64_t batch,
                    int64_t rows, int64_t cols)
{
    kernel *k = L->k;
    int r = acc->rank;
    k->rank = 3;
    k->dims[0] = batch;
    k->dims[1] = rows;
    k->dims[2] = cols;
    int idx[KILN_MAX_RANK];
    TRY(unlinear(L, batch == 1 ? c64(L, 0) : kk_var(k, 0), r - 2, acc->dims, idx));
    TRY(idx[r - 2] = rows == 1 ? c64(L, 0) : kk_var(k, 1));
    TRY(idx[r - 1] = cols == 1 ? c64(L, 0) : kk_var(k, 2));
    int ri[KILN_MAX_RANK]; /* root's index: reshapes between acc and root keep the order */
    if (root->rank == r && memcmp(root->dims, acc->dims, sizeof(int64_t) * (size_t)r) == 0)
        memcpy(ri, idx, sizeof(int) * (size_t)r);
    else
        TRY(regroup(L, r, acc->dims, idx, root->rank, root->dims, ri));
    int v = emit(L, root, ri);
    TRY(v);
    return store_node(L, root, linear(L, r, acc->dims, idx), v);
}

/* A MATMUL kernel for node mm; root is mm itself or the epilogue root whose
 * value (with mm's value = KX_ACC) is stored. */
static int matmul_kernel(lw *L, const kiln_tensor *root, const kiln_tensor *mm)
{
    TRY(begin_kernel(L, KK_MATMUL, root->id));
    kernel *k = L->k;
    L->acc_node = mm->id;
    const kiln_tensor *a = mm->in[0], *b = mm->in[1];
    int r = mm->rank;
    fuse_view va, vb;
    const kiln_tensor *bad = NULL;
    if (!fuse_strided(a, L->kind, &va, &bad) || !fuse_strided(b, L->kind, &vb, &bad) ||
        !fuse_matmul_strides(a, &va, k->mm.a_stride, k->mm.a_parts) ||
        !fuse_matmul_strides(b, &vb, k->mm.b_stride, k->mm.b_parts) || L->bufof[va.base->id] < 0 ||
        L->bufof[vb.base->id] < 0)
        return internal(L);
    k->mm.a = L->bufof[va.base->id];
    k->mm.b = L->bufof[vb.base->id];
    k->mm.batch = ir_shape_numel(r - 2, mm->dims);
    k->mm.m = mm->dims[r - 2];
    k->mm.n = mm->dims[r - 1];
    k->mm.k = a->dims[r - 1];
    k->acc_dtype = ir_dtype_is_float(mm->dtype) ? KILN_F64 : KILN_I64;
    TRY(epilogue(L, root, mm, k->mm.batch, k->mm.m, k->mm.n));
    name_kernel(L, "matmul");
    return 0;
}

/* An ATTENTION kernel for node n (sdpa, or its backward sdpa_stats and
 * sdpa_grad): operands read as strided views, the domain (batch, row,
 * column) of n's last two axes as a matmul's, KX_ACC = out[b, row, col]. */
static int attention_kernel(lw *L, const kiln_tensor *n)
{
    TRY(begin_kernel(L, KK_ATTENTION, n->id));
    kernel *k = L->k;
    L->acc_node = n->id;
    int r = n->rank;
    int64_t *strides[KK_MAX_OPERANDS] = {k->at.q_stride, k->at.k_stride,  k->at.v_stride,
                                         k->at.g_stride, k->at.st_stride, k->at.mask_stride};
    int *bufs[KK_MAX_OPERANDS] = {&k->at.q, &k->at.k, &k->at.v, &k->at.g, &k->at.st, &k->at.mask};
    const kiln_tensor *bad = NULL;
    k->at.mode = n->op == IR_SDPA         ? KA_FORWARD
                 : n->op == IR_SDPA_STATS ? KA_STATS
                 : n->axis == 0           ? KA_DQ
                 : n->axis == 1           ? KA_DK
                                          : KA_DV;
    k->at.g = k->at.st = k->at.mask = -1;
    for (int i = 0; i < n->nin; i++) {
        int slot = i < ir_attention_arity(n->op) ? i : KA_MASK; /* the mask: last */
        fuse_view vw;
        if (!fuse_strided(n->in[i], L->kind, &vw, &bad) ||
            !fuse_attention_strides(n->in[i], &vw, strides[slot], &k->at.inner[slot],
                                    &k->at.istride[slot]) ||
            L->bufof[vw.base->id] < 0)
            return internal(L);
        k->at.offset[slot] = vw.offset;
        *bufs[slot] = L->bufof[vw.base->id];
    }
    const kiln_tensor *q = n->in[0];
    k->at.batch = ir_shape_numel(r - 2, n->dims);
    k->at.t = q->dims[r - 2];
    k->at.dv = n->in[2]->dims[r - 1];
    k->at.s = n->in[1]->dims[r - 2];
    k->at.d = n->in[1]->dims[r - 1];
    k->at.scale = q->dtype == KILN_F32 ? (double)(float)n->value : n->value;
    k->at.causal = n->causal;
    k->acc_dtype = KILN_F64;
    TRY(epilogue(L, n, n, k->at.batch, n->dims[r - 2], n->dims[r - 1]));
    name_kernel(L, ir_ops[n->op].name);
    return 0;
}

/* out = zeros; out[..., check(ids[j]), ...] += src[..., j, ...], serially. */
static int scatter_kernels(lw *L, const kiln_tensor *n)
{
    const kiln_tensor *src = n->in[0], *ids = n->in[1];
    int buf = L->bufof[n->id], idx[KILN_MAX_RANK], oi[KILN_MAX_RANK], ax = n->axis;
    TRY(begin_kernel(L, KK_POINTWISE, n->id));
    kernel *k = L->k;
    TRY(kk_note_node(k, n->id));
    k->rank = n->rank;
    memcpy(k->dims, n->dims, sizeof(int64_t) * (size_t)n->rank);
    TRY(vars(L, 0, n->rank, n->dims, idx));
    TRY(kk_store_add(k, (kk_store){buf, linear(L, n->rank, n->dims, idx),
                                   kk_const_i(k, n->dtype, 0), false, false}));
    snprintf(k->name, sizeof k->name, "k%d_zero", k->id);

    TRY(begin_kernel(L, KK_POINTWISE, -1));
    k = L->k;
    k->serial = true;
    TRY(kk_note_node(k, n->id));
    k->rank = src->rank;
    memcpy(k->dims, src->dims, sizeof(int64_t) * (size_t)src->rank);
    TRY(vars(L, 0, src->rank, src->dims, idx));
    int v = convert(L, emit(L, src, idx), n->dtype);
    int id = convert(L, emit(L, ids, idx + ax), KILN_I64);
    TRY(v);
    TRY(id);
    TRY(id = kk_expr(k, (kx_node){.kind = KX_CHECK,
                                  .dtype = KILN_I64,
                                  .a = {id, 0, 0},
                                  .size = n->dims[ax],
                                  .axis = ax}));
    for (int d = 0; d < ax; d++)
        oi[d] = idx[d];
    oi[ax] = id;
    for (int d = ax + 1; d < n->rank; d++)
        oi[d] = idx[d - 1 + ids->rank];
    TRY(kk_store_add(k, (kk_store){buf, linear(L, n->rank, n->dims, oi), v, true, false}));
    name_kernel(L, "scatter_add");
    /* the same node output twice: copy the accumulated result to the others */
    const ir_entry *x = &L->g->entries[L->e];
    const kiln_tensor *tgt = L->alias[n->id] >= 0 ? L->g->nodes[L->alias[n->id]] : n;
    int copies = 0;
    for (int j = 0; j < x->n; j++)
        copies += x->outputs[j] == tgt && L->outbuf[j] != buf;
    if (copies) {
        TRY(begin_kernel(L, KK_POINTWISE, -1));
        k = L->k;
        TRY(kk_note_node(k, n->id));
        k->rank = n->rank;
        memcpy(k->dims, n->dims, sizeof(int64_t) * (size_t)n->rank);
        TRY(vars(L, 0, n->rank, n->dims, idx));
        int lin = linear(L, n->rank, n->dims, idx), val = load(L, buf, lin);
        for (int j = 0; j < x->n; j++)
            if (x->outputs[j] == tgt && L->outbuf[j] != buf)
                TRY(kk_store_add(k, (kk_store){L->outbuf[j], lin, val, false, false}));
        name_kernel(L, "copy");
    }
    return 0;
}

/* ---- buffers and entries ----------------------------------------------------------- */

static int temp_buf(lw *L, const kiln_tensor *n)
{
    return kp_buf_add(L->p, (kbuf){.role = KB_TEMP,
                                   .dtype = n->dtype,
                                   .numel = ir_numel(n),
                                   .node = n->id,
                                   .entry = L->e,
                                   .index = -1});
}

static int root_kernel(lw *L, const kiln_tensor *n)
{
    int epi = L->epi[n->id];
    if (epi >= 0)
        return matmul_kernel(L, n, L->g->nodes[epi]);
    switch (ir_ops[n->op].cls) {
    case IR_CLASS_REDUCE: return reduce_kernel(L, n);
    case IR_CLASS_MATMUL: return matmul_kernel(L, n, n);
    case IR_CLASS_CONV: return internal(L); /* decomposed before fusion */
    case IR_CLASS_ATTENTION: return attention_kernel(L, n);
    case IR_CLASS_INDEX:
        if (n->op == IR_SCATTER_ADD)
            return scatter_kernels(L, n);
        return pointwise_kernel(L, n);
    case IR_CLASS_SOURCE:
    case IR_CLASS_UNARY:
    case IR_CLASS_BINARY:
    case IR_CLASS_TERNARY:
    case IR_CLASS_MOVEMENT:
    case IR_CLASS_ASSIGN: return pointwise_kernel(L, n);
    }
    return internal(L);
}

static int lower_entry(lw *L, const fuse_plan *plan, int e, const int *leafbuf)
{
    kiln_graph *g = L->g;
    const ir_entry *x = &g->entries[e];
    int nn = g->nnodes;
    L->e = e;
    L->kind = plan->kind + (size_t)e * (size_t)nn;
    L->epi = plan->epilogue + (size_t)e * (size_t)nn;
    L->alias = plan->alias + (size_t)e * (size_t)nn;
    L->nek = 0;
    for (int i = 0; i < nn; i++)
        L->bufof[i] = leafbuf[i];
    for (int k = 0; k < x->n; k++) {
        const kiln_tensor *t = x->outputs[k];
        TRY(L->outbuf[k] = kp_buf_add(L->p, (kbuf){.role = KB_OUTPUT,
                                                   .dtype = t->dtype,
                                                   .numel = ir_numel(t),
                                                   .node = t->id,
                                                   .entry = e,
                                                   .index = k}));
    }
    for (int i = 0; i < nn; i++) {
        const kiln_tensor *t = g->nodes[i];
        switch ((fuse_kind)L->kind[i]) {
        case FUSE_UNUSED:
        case FUSE_INLINE:
        case FUSE_ABSORBED:
        case FUSE_LEAF: break;
        case FUSE_CONSTBUF:
            if (L->constbuf[i] < 0)
                TRY(L->constbuf[i] = kp_buf_add(L->p, (kbuf){.role = KB_CONST,
                                                             .dtype = t->dtype,
                                                             .numel = ir_numel(t),
                                                             .node = i,
                                                             .entry = -1,
                                                             .index = -1,
                                                             .data = t->data}));
            L->bufof[i] = L->constbuf[i];
            break;
        case FUSE_ROOT: {
            /* an output aliased by an earlier root already has its value */
            const kiln_tensor *tgt = L->alias[i] >= 0 ? g->nodes[L->alias[i]] : t;
            bool aliased = false;
            for (int j = 0; j < i && !aliased; j++)
                aliased = L->alias[j] == i;
            int b = -1;
            for (int k = 0; k < x->n && b < 0; k++)
                if (x->outputs[k] == tgt)
                    b = L->outbuf[k];
            if (aliased)
                break;
            if (b < 0)
                TRY(b = temp_buf(L, t));
            L->bufof[i] = b;
            if (L->alias[i] >= 0)
                L->bufof[L->alias[i]] = b;
            TRY(root_kernel(L, t));
            break;
        }
        }
    }
    /* outputs that are leaves or embedded constants: one copy kernel each */
    for (int k = 0; k < x->n; k++) {
        const kiln_tensor *t = x->outputs[k];
        bool first = true;
        for (int j = 0; j < k; j++)
            first = first && x->outputs[j] != t;
        if (first && (L->kind[t->id] == FUSE_LEAF || L->kind[t->id] == FUSE_CONSTBUF))
            TRY(copy_kernel(L, t));
    }
    kentry *ke = &L->p->entries[e];
    ke->name = x->name;
    ke->nkernels = L->nek;
    ke->kernels = ir_alloc(sizeof(int) * (size_t)(L->nek ? L->nek : 1));
    TRY(ke->kernels ? 0 : -1);
    memcpy(ke->kernels, L->ek, sizeof(int) * (size_t)L->nek);
    /* ASSIGN outputs: the param takes the output's value after every kernel */
    int nc = 0;
    for (int k = 0; k < x->n; k++)
        nc += x->outputs[k]->op == IR_ASSIGN;
    ke->copies = ir_alloc(sizeof(kcopy) * (size_t)(nc ? nc : 1));
    TRY(ke->copies ? 0 : -1);
    for (int k = 0; k < x->n; k++)
        if (x->outputs[k]->op == IR_ASSIGN)
            ke->copies[ke->ncopies++] = (kcopy){L->outbuf[k], leafbuf[x->outputs[k]->in[0]->id]};
    return 0;
}

kiln_status pass_lower(kiln_graph *g, const fuse_plan *plan, kprogram **out)
{
    if (out)
        *out = NULL;
    if (!g || !plan || !out || plan->nnodes != g->nnodes || plan->nentries != g->nentries)
        return KILN_ERR_INVALID;
    size_t nn = (size_t)g->nnodes + 1;
    int maxout = 1;
    for (int e = 0; e < g->nentries; e++)
        maxout = g->entries[e].n > maxout ? g->entries[e].n : maxout;
    lw L = {.g = g, .root = -1, .acc_node = -1};
    kprogram *p = ir_alloc(sizeof(*p));
    int *leafbuf = ir_alloc(sizeof(int) * nn);
    L.bufof = ir_alloc(sizeof(int) * nn);
    L.constbuf = ir_alloc(sizeof(int) * nn);
    L.outbuf = ir_alloc(sizeof(int) * (size_t)maxout);
    int rc = -1;
    if (p)
        memset(p, 0, sizeof(*p));
    if (p && leafbuf && L.bufof && L.constbuf && L.outbuf) {
        p->g = g;
        L.p = p;
        p->entries = ir_alloc(sizeof(kentry) * (size_t)(g->nentries ? g->nentries : 1));
        rc = p->entries ? 0 : -1;
        if (p->entries) {
            memset(p->entries, 0, sizeof(kentry) * (size_t)(g->nentries ? g->nentries : 1));
            p->nentries = g->nentries;
        }
        /* every named leaf gets its buffer first, in node order */
        for (int i = 0; i < g->nnodes && rc == 0; i++) {
            const kiln_tensor *t = g->nodes[i];
            leafbuf[i] = L.constbuf[i] = -1;
            if (t->op == IR_INPUT || t->op == IR_PARAM)
                rc = leafbuf[i] =
                    kp_buf_add(p, (kbuf){.role = t->op == IR_INPUT ? KB_INPUT : KB_PARAM,
                                         .dtype = t->dtype,
                                         .numel = ir_numel(t),
                                         .node = i,
                                         .entry = -1,
                                         .index = -1});
            rc = rc < 0 ? -1 : 0;
        }
        for (int e = 0; e < g->nentries && rc == 0; e++)
            rc = lower_entry(&L, plan, e, leafbuf);
    }
    ir_free(leafbuf);
    ir_free(L.bufof);
    ir_free(L.constbuf);
    ir_free(L.outbuf);
    ir_free(L.ek);
    if (rc < 0) {
        kp_free(p);
        if (L.internal)
            return ir_fail_status(g, KILN_ERR_INVALID,
                                  "kiln_compile: internal error: lowering met a node the fusion "
                                  "plan left without a buffer");
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
    }
    *out = p;
    return KILN_OK;
}
