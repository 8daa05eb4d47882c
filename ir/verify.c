/*
 * verify.c - the graph IR verifier: every structural invariant of docs/ir.md.
 *
 * Requires nothing of the graph (it is the check); produces KILN_OK, or
 * KILN_ERR_INVALID with a message naming the node ("verify: %5 (add): ...")
 * or entry recorded on the graph. It runs between passes in debug builds and
 * at the end of the .kir parser, so it must never crash on a malformed graph:
 * each node is checked for well-formedness (op, dtype, rank, operands) before
 * any rule reads its shape or its operands' shapes.
 */
#include "ir.h"

#include <string.h>

/* The largest element count a tensor may have: its byte size fits in int64. */
#define VERIFY_MAX_NUMEL (INT64_MAX / 8)

typedef struct {
    kiln_graph *g;
    const kiln_tensor *t; /* the node being checked */
    int index;            /* its index in g->nodes */
    int node, entry;      /* where the problem is, for ir_verify_where */
} vctx;

static const char *op_name(const kiln_tensor *t)
{
    return (unsigned)t->op < IR_OP_COUNT ? ir_ops[t->op].name : "?";
}

static kiln_status node_fail(vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static kiln_status node_fail(vctx *v, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    v->node = v->index;
    return ir_fail_status(v->g, KILN_ERR_INVALID, "verify: %%%d (%s): %s", v->index, op_name(v->t),
                          msg);
}

static kiln_status entry_fail(vctx *v, int e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kiln_status entry_fail(vctx *v, int e, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    v->entry = e;
    const char *name = v->g->entries[e].name ? v->g->entries[e].name : "";
    return ir_fail_status(v->g, KILN_ERR_INVALID, "verify: entry \"%s\": %s", name, msg);
}

static const char *shape_of(char *buf, size_t cap, const kiln_tensor *t)
{
    return ir_shape_str(buf, cap, t->rank, t->dims);
}

/* ---- well-formedness: op, dtype, shape, operands ----------------------------- */

static kiln_status check_node_form(vctx *v, int id)
{
    const kiln_tensor *t = v->t;
    if ((unsigned)t->op >= IR_OP_COUNT)
        return node_fail(v, "op %d is not in the op table", (int)t->op);
    if (t->id != id)
        return node_fail(v, "node at index %d has id %d", id, t->id);
    if (t->graph != v->g)
        return node_fail(v, "node belongs to another graph");
    if (!ir_dtype_valid((int)t->dtype))
        return node_fail(v, "dtype %d is not a dtype", (int)t->dtype);
    if (t->rank < 0 || t->rank > KILN_MAX_RANK)
        return node_fail(v, "rank %d is outside 0..%d", t->rank, KILN_MAX_RANK);
    int64_t numel = 1;
    for (int d = 0; d < t->rank; d++) {
        if (t->dims[d] < 0)
            return node_fail(v, "dim %d is %lld; dims must be >= 0", d, (long long)t->dims[d]);
        if (t->dims[d] > 0 && numel > VERIFY_MAX_NUMEL / t->dims[d])
            return node_fail(v, "shape has more than %lld elements", (long long)VERIFY_MAX_NUMEL);
        if (t->dims[d] > 0)
            numel *= t->dims[d];
    }
    int arity = ir_ops[t->op].arity;
    if (arity < 0 && t->nin < 1)
        return node_fail(v, "takes at least 1 operand, has %d", t->nin);
    if (arity >= 0 && t->nin != arity)
        return node_fail(v, "takes %d operand%s, has %d", arity, arity == 1 ? "" : "s", t->nin);
    if (t->nin > 0 && !t->in)
        return node_fail(v, "operand list is missing");
    for (int k = 0; k < t->nin; k++) {
        const kiln_tensor *x = t->in[k];
        if (!x)
            return node_fail(v, "operand %d is NULL", k);
        if (x->graph != v->g)
            return node_fail(v, "operand %d belongs to another graph", k);
        if (x->id < 0 || x->id >= id || v->g->nodes[x->id] != x)
            return node_fail(v, "operand %d is %%%d, which is not defined before this node", k,
                             x->id);
    }
    if (t->weak && !(ir_ops[t->op].attrs & IR_AT(WEAK)))
        return node_fail(v, "only a full node can be weak");
    return KILN_OK;
}

/* ---- per-class rules ------------------------------------------------------------ */

static kiln_status same_shape_as_result(vctx *v, int k)
{
    const kiln_tensor *t = v->t, *x = t->in[k];
    if (ir_same_shape(x, t))
        return KILN_OK;
    char a[160], b[160];
    return node_fail(v, "operand %d has shape %s but the result is %s", k,
                     shape_of(a, sizeof(a), x), shape_of(b, sizeof(b), t));
}

static kiln_status dtype_is(vctx *v, int k, kiln_dtype want, const char *what)
{
    const kiln_tensor *x = v->t->in[k];
    if (x->dtype == want)
        return KILN_OK;
    return node_fail(v, "operand %d has dtype %s but %s %s", k, ir_dtype_kir(x->dtype), what,
                     ir_dtype_kir(want));
}

static kiln_status result_dtype_is(vctx *v, kiln_dtype want, const char *why)
{
    if (v->t->dtype == want)
        return KILN_OK;
    return node_fail(v, "the result has dtype %s but %s %s", ir_dtype_kir(v->t->dtype), why,
                     ir_dtype_kir(want));
}

static kiln_status check_param(vctx *v)
{
    const kiln_tensor *t = v->t;
    if ((unsigned)t->init.kind > KILN_INIT_DATA)
        return node_fail(v, "init kind %d is not an init kind", (int)t->init.kind);
    if (t->init.kind == KILN_INIT_DATA && !t->data)
        return node_fail(v, "init=data but the param has no data");
    if (t->fan_in < 0)
        return node_fail(v, "fan_in is %lld; it must be >= 0", (long long)t->fan_in);
    return KILN_OK;
}

static kiln_status check_const(vctx *v)
{
    if (!v->t->data)
        return node_fail(v, "a constant has no data");
    return KILN_OK;
}

static kiln_status check_arange(vctx *v)
{
    if (v->t->rank != 1)
        return node_fail(v, "the result has rank %d but arange makes rank 1", v->t->rank);
    return KILN_OK;
}

static kiln_status check_random(vctx *v)
{
    if (!ir_dtype_is_float(v->t->dtype))
        return node_fail(v, "the result has dtype %s but random numbers are f32 or f64",
                         ir_dtype_kir(v->t->dtype));
    return KILN_OK;
}

static kiln_status check_elementwise(vctx *v)
{
    const kiln_tensor *t = v->t;
    kiln_status s;
    for (int k = 0; k < t->nin; k++)
        if ((s = same_shape_as_result(v, k)) != KILN_OK)
            return s;
    unsigned flags = ir_ops[t->op].flags;
    if (t->op == IR_CAST)
        return KILN_OK;
    if (t->op == IR_WHERE) {
        if ((s = dtype_is(v, 0, KILN_BOOL, "the condition must be")) != KILN_OK)
            return s;
        for (int k = 1; k < 3; k++)
            if ((s = dtype_is(v, k, t->dtype, "the result is")) != KILN_OK)
                return s;
        return KILN_OK;
    }
    if (flags & IR_F_CMP) {
        if ((s = result_dtype_is(v, KILN_BOOL, "a comparison makes")) != KILN_OK)
            return s;
        return dtype_is(v, 1, t->in[0]->dtype, "operand 0 is");
    }
    for (int k = 0; k < t->nin; k++)
        if ((s = dtype_is(v, k, t->dtype, "the result is")) != KILN_OK)
            return s;
    if ((flags & IR_F_FLOATY) && !ir_dtype_is_float(t->dtype))
        return node_fail(v, "dtype %s is not a floating point dtype", ir_dtype_kir(t->dtype));
    return KILN_OK;
}

/* The axes of a mask the verifier is refusing: any of its 32 bits may be set,
 * so the first KILN_MAX_RANK set bits are listed. */
static char *axes_str(char *buf, size_t cap, uint32_t axes)
{
    int64_t list[KILN_MAX_RANK];
    int n = 0;
    for (int d = 0; d < 32 && n < KILN_MAX_RANK; d++)
        if ((axes >> d) & 1u)
            list[n++] = d;
    return ir_shape_str(buf, cap, n, list);
}

static kiln_status check_reduce(vctx *v)
{
    const kiln_tensor *t = v->t, *x = t->in[0];
    char a[160], b[160], c[160], m[160];
    if (x->rank != t->rank)
        return node_fail(v,
                         "operand 0 has rank %d but the result has rank %d (reduced axes are "
                         "kept as size 1)",
                         x->rank, t->rank);
    if ((t->axes >> t->rank) != 0)
        return node_fail(v, "axes %s name an axis outside rank %d", axes_str(m, sizeof(m), t->axes),
                         t->rank);
    int64_t want[KILN_MAX_RANK];
    bool ok = true;
    for (int d = 0; d < t->rank; d++) {
        want[d] = (t->axes >> d) & 1u ? 1 : x->dims[d];
        ok = ok && t->dims[d] == want[d];
    }
    if (!ok)
        return node_fail(v, "reducing %s over axes %s gives %s, not %s", shape_of(a, sizeof(a), x),
                         axes_str(m, sizeof(m), t->axes), ir_shape_str(c, sizeof(c), t->rank, want),
                         shape_of(b, sizeof(b), t));
    if (t->op == IR_ARGMAX || t->op == IR_ARGMIN)
        return result_dtype_is(v, KILN_I64, "an index reduction makes");
    return dtype_is(v, 0, t->dtype, "the result is");
}

static kiln_status check_slice(vctx *v)
{
    const kiln_tensor *t = v->t, *x = t->in[0];
    for (int d = 0; d < t->rank; d++) {
        int64_t b = t->begin[d], s = t->step[d], n = t->dims[d], in = x->dims[d];
        if (s <= 0)
            return node_fail(v, "step %lld on axis %d; steps must be > 0", (long long)s, d);
        if (b < 0 || b > in)
            return node_fail(v, "begin %lld on axis %d is outside 0..%lld", (long long)b, d,
                             (long long)in);
        /* the last element read, b + (n-1)*s, must be < in; written without overflow */
        if (n > 0 && (b == in || n - 1 > (in - 1 - b) / s))
            return node_fail(v,
                             "axis %d: %lld elements from %lld with step %lld read past size %lld",
                             d, (long long)n, (long long)b, (long long)s, (long long)in);
    }
    return KILN_OK;
}

static kiln_status check_pad(vctx *v)
{
    const kiln_tensor *t = v->t, *x = t->in[0];
    for (int d = 0; d < t->rank; d++) {
        int64_t b = t->begin[d], a = t->after[d];
        if (b < 0 || a < 0)
            return node_fail(v, "axis %d pads %lld before and %lld after; pads must be >= 0", d,
                             (long long)b, (long long)a);
        if (t->dims[d] < x->dims[d] || b > t->dims[d] - x->dims[d] ||
            a != t->dims[d] - x->dims[d] - b)
            return node_fail(v, "axis %d: %lld + %lld before + %lld after is not %lld", d,
                             (long long)x->dims[d], (long long)b, (long long)a,
                             (long long)t->dims[d]);
    }
    return KILN_OK;
}

static kiln_status check_concat(vctx *v)
{
    const kiln_tensor *t = v->t;
    char a[160], b[160];
    if (t->axis < 0 || t->axis >= t->rank)
        return node_fail(v, "axis %d is outside the result's rank %d", t->axis, t->rank);
    int64_t sum = 0;
    for (int k = 0; k < t->nin; k++) {
        const kiln_tensor *x = t->in[k];
        kiln_status s = dtype_is(v, k, t->dtype, "the result is");
        if (s != KILN_OK)
            return s;
        bool ok = x->rank == t->rank;
        for (int d = 0; ok && d < t->rank; d++)
            ok = d == t->axis ? x->dims[d] <= t->dims[d] - sum : x->dims[d] == t->dims[d];
        if (!ok)
            return node_fail(v,
                             "operand %d has shape %s, which does not fit the result %s on axis %d",
                             k, shape_of(a, sizeof(a), x), shape_of(b, sizeof(b), t), t->axis);
        sum += x->dims[t->axis];
    }
    if (sum != t->dims[t->axis])
        return node_fail(v, "operands add up to %lld on axis %d but the result has %lld",
                         (long long)sum, t->axis, (long long)t->dims[t->axis]);
    return KILN_OK;
}

/* RESHAPE, PERMUTE, EXPAND, SLICE, PAD: one operand of the result's dtype. */
static kiln_status check_view(vctx *v)
{
    const kiln_tensor *t = v->t, *x = t->in[0];
    char a[160], b[160];
    kiln_status s = dtype_is(v, 0, t->dtype, "the result is");
    if (s != KILN_OK)
        return s;
    if (t->op == IR_RESHAPE) {
        if (ir_numel(x) != ir_numel(t))
            return node_fail(v, "cannot reshape %s (%lld elements) to %s (%lld elements)",
                             shape_of(a, sizeof(a), x), (long long)ir_numel(x),
                             shape_of(b, sizeof(b), t), (long long)ir_numel(t));
        return KILN_OK;
    }
    if (x->rank != t->rank)
        return node_fail(v, "operand 0 has rank %d but the result has rank %d", x->rank, t->rank);
    return KILN_OK;
}

static kiln_status check_permute(vctx *v)
{
    const kiln_tensor *t = v->t, *x = t->in[0];
    char a[160];
    unsigned seen = 0;
    for (int d = 0; d < t->rank; d++) {
        int p = t->perm[d];
        if (p < 0 || p >= t->rank || (seen >> p) & 1u)
            return node_fail(v, "perm is not a permutation of 0..%d", t->rank - 1);
        seen |= 1u << p;
        if (t->dims[d] != x->dims[p])
            return node_fail(v, "permuting %s gives dim %lld at axis %d, not %lld",
                             shape_of(a, sizeof(a), x), (long long)x->dims[p], d,
                             (long long)t->dims[d]);
    }
    return KILN_OK;
}

static kiln_status check_expand(vctx *v)
{
    const kiln_tensor *t = v->t, *x = t->in[0];
    char a[160], b[160];
    for (int d = 0; d < t->rank; d++)
        if (x->dims[d] != 1 && x->dims[d] != t->dims[d])
            return node_fail(v, "cannot expand %s to %s: axis %d is neither 1 nor equal",
                             shape_of(a, sizeof(a), x), shape_of(b, sizeof(b), t), d);
    return KILN_OK;
}

static kiln_status check_matmul(vctx *v)
{
    const kiln_tensor *t = v->t, *x = t->in[0], *y = t->in[1];
    char a[160], b[160], c[160];
    kiln_status s;
    if ((s = dtype_is(v, 0, t->dtype, "the result is")) != KILN_OK ||
        (s = dtype_is(v, 1, t->dtype, "the result is")) != KILN_OK)
        return s;
    int r = t->rank;
    bool ok = r >= 2 && x->rank == r && y->rank == r;
    for (int d = 0; ok && d < r - 2; d++)
        ok = x->dims[d] == t->dims[d] && y->dims[d] == t->dims[d];
    ok = ok && x->dims[r - 1] == y->dims[r - 2] && x->dims[r - 2] == t->dims[r - 2] &&
         y->dims[r - 1] == t->dims[r - 1];
    if (!ok)
        return node_fail(v, "%s @ %s does not give %s (expected (..., M, K) @ (..., K, N))",
                         shape_of(a, sizeof(a), x), shape_of(b, sizeof(b), y),
                         shape_of(c, sizeof(c), t));
    return KILN_OK;
}

/* CONV: x [N, C, H, W] and w [O, C/groups, kH, kW] of the result's float
 * dtype; stride and dilation 1 on N and C; the shape ir_conv_shape gives. */
static kiln_status check_conv(vctx *v)
{
    const kiln_tensor *t = v->t;
    kiln_status s;
    if ((s = dtype_is(v, 0, t->dtype, "the result is")) != KILN_OK ||
        (s = dtype_is(v, 1, t->dtype, "the result is")) != KILN_OK)
        return s;
    if (!ir_dtype_is_float(t->dtype))
        return node_fail(v, "a conv of dtype %s (float only)", ir_dtype_kir(t->dtype));
    char why[400], a[160], b[160];
    int64_t want[4];
    if (!ir_conv_shape(t->in[0], t->in[1], t->step + 2, t->dilation + 2, t->groups, want, why,
                       sizeof why))
        return node_fail(v, "%s", why);
    if (t->rank != 4 || memcmp(want, t->dims, sizeof want) != 0)
        return node_fail(v, "the result is %s but the conv gives %s", shape_of(a, sizeof(a), t),
                         ir_shape_str(b, sizeof(b), 4, want));
    if (t->step[0] != 1 || t->step[1] != 1 || t->dilation[0] != 1 || t->dilation[1] != 1)
        return node_fail(v, "stride and dilation must be 1 on the batch and channel axes");
    return KILN_OK;
}

/* SDPA: q [..., T, D], k [..., S, D], v [..., S, Dv] -> [..., T, Dv], one
 * float dtype, the same batch axes (no broadcasting), a scale > 0. */
/* Operand i has the batch dims of q and the given last two. */
static bool attention_shape(const kiln_tensor *x, const kiln_tensor *q, int64_t rows, int64_t cols)
{
    int r = q->rank;
    bool ok = x->rank == r && x->dims[r - 2] == rows && x->dims[r - 1] == cols;
    for (int i = 0; ok && i < r - 2; i++)
        ok = x->dims[i] == q->dims[i];
    return ok;
}

/* sdpa: q (..., T, D), k (..., S, D), v (..., S, Dv) -> (..., T, Dv); its
 * backward adds g (..., T, Dv), and sdpa_grad stats (..., T, 2) in f64;
 * sdpa_stats gives (..., T, 2) in f64, sdpa_grad q's, k's or v's shape; a
 * last operand, if any, is a bool mask (..., T, S). */
static kiln_status check_attention(vctx *v)
{
    const kiln_tensor *t = v->t;
    if (t->nin != ir_attention_arity(t->op) && t->nin != ir_attention_arity(t->op) + 1)
        return node_fail(v, "takes %d operands and an optional mask, has %d",
                         ir_attention_arity(t->op), t->nin);
    const kiln_tensor *q = t->in[0], *k = t->in[1], *w = t->in[2];
    char a[160], b[160], c[160], d[160], e[160];
    kiln_status s;
    kiln_dtype dt = q->dtype;
    if (!ir_dtype_is_float(dt))
        return node_fail(v, "attention needs a float dtype, not %s", ir_dtype_kir(dt));
    if (t->op != IR_SDPA_STATS && (s = dtype_is(v, 0, t->dtype, "the result is")) != KILN_OK)
        return s;
    if (t->op == IR_SDPA_STATS && t->dtype != KILN_F64)
        return node_fail(v, "sdpa_stats gives f64, not %s", ir_dtype_kir(t->dtype));
    for (int i = 1; i < ir_attention_arity(t->op) && i < 4; i++)
        if (t->in[i]->dtype != dt)
            return node_fail(v, "operand %d has dtype %s but q has %s", i,
                             ir_dtype_kir(t->in[i]->dtype), ir_dtype_kir(dt));
    if (t->op == IR_SDPA_GRAD && (t->axis < 0 || t->axis > 2))
        return node_fail(v, "sdpa_grad axis %d is not 0 (q), 1 (k) or 2 (v)", t->axis);
    if (t->op == IR_SDPA_GRAD && t->in[4]->dtype != KILN_F64)
        return node_fail(v, "operand 4 (the stats) has dtype %s, not f64",
                         ir_dtype_kir(t->in[4]->dtype));
    int r = q->rank;
    int64_t T = r >= 2 ? q->dims[r - 2] : 0, D = r >= 2 ? q->dims[r - 1] : 0;
    int64_t S = r >= 2 && k->rank == r ? k->dims[r - 2] : -1;
    int64_t Dv = r >= 2 && w->rank == r ? w->dims[r - 1] : -1;
    int64_t rows = t->op == IR_SDPA_GRAD && t->axis != 0 ? S : T;
    int64_t cols = t->op == IR_SDPA ? Dv : t->op == IR_SDPA_STATS ? 2 : t->axis == 2 ? Dv : D;
    bool ok = r >= 2 && attention_shape(k, q, S, D) && attention_shape(w, q, S, Dv) &&
              attention_shape(t, q, rows, cols);
    if (!ok && t->op == IR_SDPA)
        return node_fail(v,
                         "attention of q %s, k %s, v %s does not give %s (expected (..., T, D), "
                         "(..., S, D), (..., S, Dv) -> (..., T, Dv))",
                         shape_of(a, sizeof(a), q), shape_of(b, sizeof(b), k),
                         shape_of(c, sizeof(c), w), shape_of(d, sizeof(d), t));
    if (t->op != IR_SDPA)
        ok = ok && attention_shape(t->in[3], q, T, Dv) &&
             (t->op != IR_SDPA_GRAD || attention_shape(t->in[4], q, T, 2));
    if (!ok)
        return node_fail(v,
                         "%s of q %s, k %s, v %s, g %s does not give %s (expected (..., T, D), "
                         "(..., S, D), (..., S, Dv), g (..., T, Dv)%s)",
                         ir_ops[t->op].name, shape_of(a, sizeof(a), q), shape_of(b, sizeof(b), k),
                         shape_of(c, sizeof(c), w), shape_of(d, sizeof(d), t->in[3]),
                         shape_of(e, sizeof(e), t),
                         t->op == IR_SDPA_STATS ? " -> (..., T, 2)"
                                                : ", stats (..., T, 2) -> q's, k's or v's shape");
    const kiln_tensor *mask = ir_attention_mask(t);
    if (mask && mask->dtype != KILN_BOOL)
        return node_fail(v, "the mask has dtype %s, not bool", ir_dtype_kir(mask->dtype));
    if (mask && !attention_shape(mask, q, T, S))
        return node_fail(v, "the mask %s is not (..., T, S) = %s batch axes, %lld, %lld",
                         shape_of(a, sizeof(a), mask), shape_of(b, sizeof(b), q), (long long)T,
                         (long long)S);
    if (!(t->value > 0))
        return node_fail(v, "the scale %g is not positive", t->value);
    return KILN_OK;
}

/* GATHER: out = table[:axis] + ids + table[axis+1:]; SCATTER_ADD: src = out[:axis] + ids +
 * out[axis+1:]. `big` is the tensor indexed along axis, `small` the one shaped by ids. */
static kiln_status check_index(vctx *v)
{
    const kiln_tensor *t = v->t, *ids = t->in[1];
    const kiln_tensor *big = t->op == IR_GATHER ? t->in[0] : t;
    const kiln_tensor *small = t->op == IR_GATHER ? t : t->in[0];
    char a[160], b[160], c[160], w[160];
    if (!ir_dtype_is_int(ids->dtype))
        return node_fail(v, "operand 1 (ids) has dtype %s but ids must be i32 or i64",
                         ir_dtype_kir(ids->dtype));
    kiln_status s = dtype_is(v, 0, t->dtype, "the result is");
    if (s != KILN_OK)
        return s;
    if (t->axis < 0 || t->axis >= big->rank)
        return node_fail(v, "axis %d is outside rank %d", t->axis, big->rank);
    int want_rank = big->rank - 1 + ids->rank, r = 0;
    int64_t want[2 * KILN_MAX_RANK];
    for (int d = 0; d < t->axis; d++)
        want[r++] = big->dims[d];
    for (int d = 0; d < ids->rank; d++)
        want[r++] = ids->dims[d];
    for (int d = t->axis + 1; d < big->rank; d++)
        want[r++] = big->dims[d];
    bool ok = small->rank == want_rank;
    for (int d = 0; ok && d < want_rank; d++)
        ok = small->dims[d] == want[d];
    if (!ok) {
        const char *role = t->op == IR_GATHER ? "the result" : "operand 0 (src)";
        return node_fail(v, "%s is %s but indexing %s along axis %d with ids %s gives %s", role,
                         shape_of(a, sizeof(a), small), shape_of(b, sizeof(b), big), t->axis,
                         shape_of(c, sizeof(c), ids),
                         want_rank <= KILN_MAX_RANK ? ir_shape_str(w, sizeof(w), want_rank, want)
                                                    : "a rank above 8");
    }
    return KILN_OK;
}

static kiln_status check_assign(vctx *v)
{
    const kiln_tensor *t = v->t, *p = t->in[0];
    kiln_status s;
    if (p->op != IR_PARAM)
        return node_fail(v, "operand 0 is %%%d (%s), not a param", p->id, op_name(p));
    if ((s = dtype_is(v, 1, p->dtype, "the param is")) != KILN_OK ||
        (s = result_dtype_is(v, p->dtype, "the param is")) != KILN_OK)
        return s;
    if ((s = same_shape_as_result(v, 0)) != KILN_OK)
        return s;
    return same_shape_as_result(v, 1);
}

/* Chains a check and a further one (f NULL: none). */
static kiln_status both(kiln_status s, vctx *v, kiln_status (*f)(vctx *))
{
    return s != KILN_OK || !f ? s : f(v);
}

/* The shape and dtype rule of the op's class (kiln_ops.def). */
static kiln_status check_class(vctx *v)
{
    const kiln_tensor *t = v->t;
    switch (ir_ops[t->op].cls) {
    case IR_CLASS_SOURCE: return KILN_OK; /* leaf names are checked graph-wide */
    case IR_CLASS_UNARY:
    case IR_CLASS_BINARY:
    case IR_CLASS_TERNARY: return check_elementwise(v);
    case IR_CLASS_REDUCE: return check_reduce(v);
    case IR_CLASS_MOVEMENT:
        if (ir_ops[t->op].arity < 0)
            return check_concat(v);
        return both(check_view(v), v, t->op == IR_EXPAND ? check_expand : NULL);
    case IR_CLASS_MATMUL: return check_matmul(v);
    case IR_CLASS_CONV: return check_conv(v);
    case IR_CLASS_ATTENTION: return check_attention(v);
    case IR_CLASS_INDEX: return check_index(v);
    case IR_CLASS_ASSIGN: return check_assign(v);
    }
    return node_fail(v, "class %d is not an op class", (int)ir_ops[t->op].cls);
}

/* A node's class rule, then the rules its attributes and flags bring. */
static kiln_status check_node(vctx *v)
{
    unsigned at = ir_ops[v->t->op].attrs, flags = ir_ops[v->t->op].flags;
    kiln_status s = check_class(v);
    if (s == KILN_OK && (at & IR_AT(INIT)))
        s = check_param(v);
    else if (s == KILN_OK && (flags & IR_F_DATA))
        s = check_const(v);
    s = both(s, v, (at & IR_AT(START)) ? check_arange : NULL);
    s = both(s, v, (flags & IR_F_RANDOM) ? check_random : NULL);
    s = both(s, v, (at & IR_AT(PERM)) ? check_permute : NULL);
    s = both(s, v, (at & IR_AT(STEP)) ? check_slice : NULL);
    return both(s, v, (at & IR_AT(BEFORE)) ? check_pad : NULL);
}

/* ---- names and entries ------------------------------------------------------------ */

static bool is_leaf(const kiln_tensor *t)
{
    return (ir_ops[t->op].flags & IR_F_LEAF) != 0;
}

/* The names of the graph's leaves and entry outputs, and for each the first
 * equal one before it (ir_first_equal): leaves in id order, then outputs in
 * entry order. NULL when out of memory. */
typedef struct {
    const char **s;
    int *first_leaf;   /* per leaf: the first earlier leaf of that name, or -1 */
    int *first_output; /* per output: the first earlier output of that name, or -1 */
    int *first_any;    /* per output: the first leaf or output of that name, or -1 */
    int *leaf_node;    /* per leaf: its node id */
    int nleaves, noutputs;
} names;

static void names_free(names *n)
{
    ir_free(n->s);
    ir_free(n->first_leaf);
    ir_free(n->first_output);
    ir_free(n->first_any);
    ir_free(n->leaf_node);
}

static bool names_make(names *n, const kiln_graph *g)
{
    memset(n, 0, sizeof *n);
    for (int i = 0; i < g->nnodes; i++)
        n->nleaves += is_leaf(g->nodes[i]);
    for (int e = 0; e < g->nentries; e++)
        n->noutputs += g->entries[e].n > 0 ? g->entries[e].n : 0;
    size_t all = (size_t)(n->nleaves + n->noutputs) + 1;
    n->s = ir_alloc(sizeof(*n->s) * all);
    n->first_leaf = ir_alloc(sizeof(int) * all);
    n->first_output = ir_alloc(sizeof(int) * all);
    n->first_any = ir_alloc(sizeof(int) * all);
    n->leaf_node = ir_alloc(sizeof(int) * all);
    if (!n->s || !n->first_leaf || !n->first_output || !n->first_any || !n->leaf_node)
        return false;
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (is_leaf(g->nodes[i])) {
            n->leaf_node[k] = i;
            n->s[k++] = g->nodes[i]->name && g->nodes[i]->name[0] ? g->nodes[i]->name : NULL;
        }
    for (int e = 0; e < g->nentries; e++)
        for (int j = 0; j < g->entries[e].n; j++)
            n->s[k++] = g->entries[e].output_names ? g->entries[e].output_names[j] : NULL;
    return ir_first_equal(n->s, n->nleaves, n->first_leaf) &&
           ir_first_equal(n->s + n->nleaves, n->noutputs, n->first_output) &&
           ir_first_equal(n->s, n->nleaves + n->noutputs, n->first_any);
}

/* Leaf names: non-empty and unique. Checked after every node is well-formed. */
static kiln_status check_leaf_names(vctx *v, const names *n)
{
    kiln_graph *g = v->g;
    for (int l = 0; l < n->nleaves; l++) {
        int i = n->leaf_node[l];
        const kiln_tensor *t = g->nodes[i];
        v->t = t;
        v->index = i;
        if (!t->name || !t->name[0])
            return node_fail(v, "%s needs a non-empty name",
                             t->op == IR_INPUT ? "an input" : "a param");
        if (n->first_leaf[l] >= 0) {
            const kiln_tensor *u = g->nodes[n->leaf_node[n->first_leaf[l]]];
            return node_fail(v, "name \"%s\" is already used by %%%d (%s)", t->name, u->id,
                             op_name(u));
        }
    }
    return KILN_OK;
}

static kiln_status check_entries(vctx *v, const names *n)
{
    kiln_graph *g = v->g;
    const char **entry_names = ir_alloc(sizeof(char *) * (size_t)(g->nentries + 1));
    int *first_entry = ir_alloc(sizeof(int) * (size_t)(g->nentries + 1));
    bool ok = entry_names && first_entry;
    for (int e = 0; ok && e < g->nentries; e++)
        entry_names[e] = g->entries[e].name;
    ok = ok && ir_first_equal(entry_names, g->nentries, first_entry);
    ir_free(entry_names);
    if (!ok) {
        ir_free(first_entry);
        return ir_fail_status(g, KILN_ERR_NOMEM, "out of memory");
    }
    kiln_status s = KILN_OK;
    for (int e = 0, at = 0; e < g->nentries && s == KILN_OK; e++) {
        const ir_entry *x = &g->entries[e];
        if (!x->name || !x->name[0])
            s = entry_fail(v, e, "an entry needs a non-empty name");
        else if (first_entry[e] >= 0)
            s = entry_fail(v, e, "another entry has the same name");
        else if (x->n < 0 || (x->n > 0 && (!x->outputs || !x->output_names)))
            s = entry_fail(v, e, "the output list is malformed");
        for (int k = 0; k < x->n && s == KILN_OK; k++, at++) {
            const kiln_tensor *t = x->outputs[k];
            const char *name = x->output_names[k];
            int any = n->first_any[n->nleaves + at];
            if (!t || t->graph != g || t->id < 0 || t->id >= g->nnodes || g->nodes[t->id] != t)
                s = entry_fail(v, e, "output %d is not a node of this graph", k);
            else if (!name || !name[0])
                s = entry_fail(v, e, "output %d needs a non-empty name", k);
            else if (n->first_output[at] >= 0)
                s = entry_fail(v, e, "output name \"%s\" is used twice", name);
            else if (any >= 0 && any < n->nleaves) {
                const kiln_tensor *leaf = g->nodes[n->leaf_node[any]];
                s = entry_fail(v, e, "output name \"%s\" is already the name of %%%d (%s)", name,
                               leaf->id, op_name(leaf));
            }
        }
    }
    ir_free(first_entry);
    return s;
}

kiln_status ir_verify_where(kiln_graph *g, int *node, int *entry)
{
    vctx v = {g, NULL, 0, -1, -1};
    kiln_status s = KILN_OK;
    if (!g)
        return KILN_ERR_INVALID;
    if (g->status == KILN_OK) {
        for (int i = 0; i < g->nnodes && s == KILN_OK; i++) {
            v.t = g->nodes[i];
            v.index = i;
            if (!v.t) {
                s = ir_fail_status(g, KILN_ERR_INVALID, "verify: node %d is NULL", i);
                v.node = i;
                break;
            }
            s = check_node_form(&v, i);
            if (s == KILN_OK)
                s = check_node(&v);
        }
        names n = {0};
        if (s == KILN_OK && !names_make(&n, g))
            s = ir_fail_status(g, KILN_ERR_NOMEM, "out of memory");
        if (s == KILN_OK)
            s = check_leaf_names(&v, &n);
        if (s == KILN_OK)
            s = check_entries(&v, &n);
        names_free(&n);
    } else {
        s = g->status;
    }
    if (node)
        *node = v.node;
    if (entry)
        *entry = v.entry;
    return s;
}

kiln_status ir_verify(kiln_graph *g)
{
    return ir_verify_where(g, NULL, NULL);
}
