/*
 * fe_core.c - the machinery every builder uses: operand checks, axis
 * normalisation, PyTorch's type promotion, broadcasting, and raw node makers.
 */
#include "fe.h"

#include <math.h>
#include <string.h>

bool fe_begin(kiln_graph *g, int n, kiln_tensor *const *ts)
{
    if (!ir_begin(g))
        return false;
    for (int i = 0; i < n; i++)
        if (!ts[i])
            return false;
    for (int i = 0; i < n; i++)
        if (ts[i]->graph != g) {
            ir_fail(g, KILN_ERR_INVALID, "operand %d belongs to another graph", i);
            return false;
        }
    return true;
}

kiln_tensor *fe_fail(kiln_graph *g, kiln_status s, const char *fn, const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return ir_fail(g, s, "%s: %s", fn, msg);
}

bool fe_axis(kiln_graph *g, const char *fn, int axis, int rank, int *out)
{
    int r = rank > 0 ? rank : 1;
    if (axis < -r || axis >= r) {
        fe_fail(g, KILN_ERR_SHAPE, fn,
                "Dimension out of range (expected to be in range of [%d, %d], but got %d)", -r,
                r - 1, axis);
        return false;
    }
    *out = axis < 0 ? axis + r : axis;
    if (rank == 0)
        *out = 0;
    return true;
}

bool fe_check_shape(kiln_graph *g, const char *fn, kiln_dtype dt, int rank, const int64_t *dims)
{
    if (rank < 0) {
        fe_fail(g, KILN_ERR_INVALID, fn, "rank must be non-negative, but got %d", rank);
        return false;
    }
    if (rank > KILN_MAX_RANK) {
        fe_fail(g, KILN_ERR_UNSUPPORTED, fn,
                "tensors of rank %d are not supported (KILN_MAX_RANK is %d)", rank, KILN_MAX_RANK);
        return false;
    }
    char buf[400];
    for (int d = 0; d < rank; d++)
        if (dims[d] < 0) {
            fe_fail(g, KILN_ERR_SHAPE, fn,
                    "Trying to create tensor with negative dimension %lld: %s", (long long)dims[d],
                    ir_shape_str(buf, sizeof(buf), rank, dims));
            return false;
        }
    if (!ir_shape_fits(buf, sizeof(buf), dt, rank, dims)) {
        fe_fail(g, KILN_ERR_SHAPE, fn, "%s", buf);
        return false;
    }
    return true;
}

static int category(kiln_dtype dt)
{
    return dt == KILN_BOOL ? 0 : ir_dtype_is_int(dt) ? 1 : 2;
}

kiln_dtype fe_promote(kiln_dtype a, kiln_dtype b)
{
    if (a == b)
        return a;
    if (category(a) != category(b))
        return category(a) > category(b) ? a : b;
    /* same category: the wider one */
    return kiln_dtype_size(a) >= kiln_dtype_size(b) ? a : b;
}

/* -1 stands for "no operand in this tier" (PyTorch's Undefined). */
static int promote_opt(int a, kiln_dtype b)
{
    return a < 0 ? (int)b : (int)fe_promote((kiln_dtype)a, b);
}

static int combine(int higher, int lower)
{
    if (higher < 0)
        return lower;
    if (lower < 0)
        return higher;
    if (ir_dtype_is_float((kiln_dtype)higher))
        return higher;
    if (higher == KILN_BOOL || ir_dtype_is_float((kiln_dtype)lower))
        return (int)fe_promote((kiln_dtype)higher, (kiln_dtype)lower);
    return higher;
}

kiln_dtype fe_result_type(int n, kiln_tensor *const *ts)
{
    int dim = -1, zero = -1, wrapped = -1;
    for (int i = 0; i < n; i++) {
        const kiln_tensor *t = ts[i];
        if (t->weak)
            wrapped = promote_opt(wrapped, t->dtype);
        else if (t->rank == 0)
            zero = promote_opt(zero, t->dtype);
        else
            dim = promote_opt(dim, t->dtype);
    }
    int r = combine(dim, combine(zero, wrapped));
    return r < 0 ? KILN_F32 : (kiln_dtype)r;
}

bool fe_broadcast(kiln_graph *g, const char *fn, int n, kiln_tensor *const *ts, int *rank,
                  int64_t *dims)
{
    int r = 0;
    for (int i = 0; i < n; i++)
        if (ts[i]->rank > r)
            r = ts[i]->rank;
    for (int d = 0; d < r; d++)
        dims[d] = 1;
    for (int i = 0; i < n; i++) {
        const kiln_tensor *t = ts[i];
        int off = r - t->rank;
        for (int d = 0; d < t->rank; d++) {
            int64_t have = dims[off + d], want = t->dims[d];
            if (want == have || want == 1)
                continue;
            if (have == 1) {
                dims[off + d] = want;
                continue;
            }
            /* name the operands as PyTorch does for binary ops: a and b */
            fe_fail(g, KILN_ERR_SHAPE, fn,
                    "The size of tensor a (%lld) must match the size of tensor b (%lld) at "
                    "non-singleton dimension %d",
                    (long long)have, (long long)want, off + d);
            return false;
        }
    }
    *rank = r;
    return true;
}

kiln_tensor *fe_reshape_raw(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims)
{
    if (t->rank == rank && memcmp(t->dims, dims, sizeof(*dims) * (size_t)rank) == 0)
        return t;
    return ir_node_new(g, IR_RESHAPE, t->dtype, rank, dims, 1, &t);
}

kiln_tensor *fe_expand_raw(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims)
{
    if (t->rank == rank && memcmp(t->dims, dims, sizeof(*dims) * (size_t)rank) == 0)
        return t;
    return ir_node_new(g, IR_EXPAND, t->dtype, rank, dims, 1, &t);
}

kiln_tensor *fe_full_raw(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims, double v)
{
    kiln_tensor *t = ir_node_new(g, IR_FULL, dt, rank, dims, 0, NULL);
    if (t)
        t->value = v;
    return t;
}

kiln_tensor *fe_convert(kiln_graph *g, kiln_tensor *t, kiln_dtype dt)
{
    if (t->weak) /* a strong 0-d constant of the operand's dtype, rounded to it */
        return fe_full_raw(g, dt, 0, NULL, t->value);
    if (t->dtype == dt)
        return t;
    return ir_node_new(g, IR_CAST, dt, t->rank, t->dims, 1, &t);
}

kiln_tensor *fe_expand_to(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims)
{
    if (t->rank == rank && memcmp(t->dims, dims, sizeof(*dims) * (size_t)rank) == 0)
        return t;
    int64_t padded[KILN_MAX_RANK];
    int off = rank - t->rank;
    for (int d = 0; d < rank; d++)
        padded[d] = d < off ? 1 : t->dims[d - off];
    kiln_tensor *r = fe_reshape_raw(g, t, rank, padded);
    return r ? fe_expand_raw(g, r, rank, dims) : NULL;
}

kiln_tensor *fe_elementwise(kiln_graph *g, const char *fn, ir_op op, int n, kiln_tensor *const *ts,
                            kiln_dtype compute)
{
    int rank;
    int64_t dims[KILN_MAX_RANK];
    if (!fe_broadcast(g, fn, n, ts, &rank, dims) || !fe_check_shape(g, fn, compute, rank, dims))
        return NULL;
    kiln_tensor *ops[3];
    for (int i = 0; i < n; i++) {
        kiln_dtype want = (op == IR_WHERE && i == 0) ? KILN_BOOL : compute;
        kiln_tensor *c = fe_convert(g, ts[i], want);
        ops[i] = c ? fe_expand_to(g, c, rank, dims) : NULL;
        if (!ops[i])
            return NULL;
    }
    kiln_dtype out = (ir_ops[op].flags & IR_F_CMP) ? KILN_BOOL : compute;
    return ir_node_new(g, op, out, rank, dims, n, ops);
}

kiln_tensor *fe_unary(kiln_graph *g, const char *fn, ir_op op, kiln_tensor *a)
{
    kiln_dtype dt = a->dtype;
    if ((ir_ops[op].flags & IR_F_FLOATY) && !ir_dtype_is_float(dt))
        dt = KILN_F32;
    return fe_elementwise(g, fn, op, 1, &a, dt);
}

kiln_tensor *fe_binary(kiln_graph *g, const char *fn, ir_op op, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    return fe_elementwise(g, fn, op, 2, ts, fe_result_type(2, ts));
}

kiln_tensor *fe_reduce(kiln_graph *g, ir_op op, kiln_tensor *t, uint32_t axes, bool keepdim,
                       kiln_dtype out)
{
    int64_t kept[KILN_MAX_RANK], dropped[KILN_MAX_RANK];
    int nd = 0;
    for (int d = 0; d < t->rank; d++) {
        bool red = (axes >> d) & 1u;
        kept[d] = red ? 1 : t->dims[d];
        if (!red)
            dropped[nd++] = t->dims[d];
    }
    kiln_tensor *r = ir_node_new(g, op, out, t->rank, kept, 1, &t);
    if (!r)
        return NULL;
    r->axes = axes;
    return keepdim ? r : fe_reshape_raw(g, r, nd, dropped);
}
