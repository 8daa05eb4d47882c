/*
 * math.c - elementwise and reduction builders: PyTorch's broadcasting and type
 * promotion on top of the IR's elementwise primitives, and reductions over one
 * axis, a list of axes, or all of them.
 *
 * Requires operands from one graph; produces nodes whose operands are already
 * broadcast and converted (docs/ir.md). Composites (div, gelu, silu, square,
 * mean) are spelled in primitives so autodiff and fusion see through them.
 */
#include "fe.h"

#include <math.h>
#include <string.h>

/* A strong 0-d constant of dtype dt: mixes with a tensor of dt without promoting it. */
static kiln_tensor *konst(kiln_graph *g, kiln_dtype dt, double v)
{
    return fe_full_raw(g, dt, 0, NULL, v);
}

/* ---- elementwise binary --------------------------------------------------- */

kiln_tensor *kiln_add(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    if (!fe_begin(g, 2, ts))
        return NULL;
    return fe_binary(g, __func__, IR_ADD, a, b);
}

kiln_tensor *kiln_sub(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    if (!fe_begin(g, 2, ts))
        return NULL;
    if (a->dtype == KILN_BOOL && b->dtype == KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, __func__,
                       "Subtraction, the `-` operator, with two bool tensors is not supported. "
                       "Use the `^` or `logical_xor()` operator instead.");
    if (a->dtype == KILN_BOOL || b->dtype == KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, __func__,
                       "Subtraction, the `-` operator, with a bool tensor is not supported. If "
                       "you are trying to invert a mask, use the `~` or `logical_not()` operator "
                       "instead.");
    return fe_binary(g, __func__, IR_SUB, a, b);
}

kiln_tensor *kiln_mul(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    if (!fe_begin(g, 2, ts))
        return NULL;
    return fe_binary(g, __func__, IR_MUL, a, b);
}

/* True division: integer and bool operands are divided as float32 (PyTorch's
 * default dtype), so the builder never makes an integer DIV. */
kiln_tensor *kiln_div(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    if (!fe_begin(g, 2, ts))
        return NULL;
    kiln_dtype dt = fe_result_type(2, ts);
    if (!ir_dtype_is_float(dt))
        dt = KILN_F32;
    return fe_elementwise(g, __func__, IR_DIV, 2, ts, dt);
}

kiln_tensor *kiln_pow(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    if (!fe_begin(g, 2, ts))
        return NULL;
    return fe_binary(g, __func__, IR_POW, a, b);
}

kiln_tensor *kiln_maximum(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    if (!fe_begin(g, 2, ts))
        return NULL;
    return fe_binary(g, __func__, IR_MAXIMUM, a, b);
}

kiln_tensor *kiln_minimum(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    if (!fe_begin(g, 2, ts))
        return NULL;
    return fe_binary(g, __func__, IR_MINIMUM, a, b);
}

/* Comparisons run in the promoted dtype and give bool (fe_elementwise). */
#define KILN_CMP(fname, OP)                                                                        \
    kiln_tensor *fname(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)                              \
    {                                                                                              \
        kiln_tensor *ts[2] = {a, b};                                                               \
        if (!fe_begin(g, 2, ts))                                                                   \
            return NULL;                                                                           \
        return fe_binary(g, __func__, OP, a, b);                                                   \
    }
KILN_CMP(kiln_eq, IR_EQ)
KILN_CMP(kiln_ne, IR_NE)
KILN_CMP(kiln_lt, IR_LT)
KILN_CMP(kiln_le, IR_LE)
KILN_CMP(kiln_gt, IR_GT)
KILN_CMP(kiln_ge, IR_GE)
#undef KILN_CMP

kiln_tensor *kiln_where(kiln_graph *g, kiln_tensor *cond, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[3] = {cond, a, b};
    if (!fe_begin(g, 3, ts))
        return NULL;
    if (cond->dtype != KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, __func__,
                       "where expected condition to be a boolean tensor, but got a tensor with "
                       "dtype %s",
                       ir_dtype_torch(cond->dtype));
    return fe_elementwise(g, __func__, IR_WHERE, 3, ts, fe_result_type(2, ts + 1));
}

/* ---- elementwise unary ---------------------------------------------------- */

kiln_tensor *kiln_neg(kiln_graph *g, kiln_tensor *a)
{
    if (!fe_begin(g, 1, &a))
        return NULL;
    if (a->dtype == KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, __func__,
                       "Negation, the `-` operator, on a bool tensor is not supported. If you are "
                       "trying to invert a mask, use the `~` or `logical_not()` operator instead.");
    return fe_unary(g, __func__, IR_NEG, a);
}

#define KILN_UNARY(fname, OP)                                                                      \
    kiln_tensor *fname(kiln_graph *g, kiln_tensor *a)                                              \
    {                                                                                              \
        if (!fe_begin(g, 1, &a))                                                                   \
            return NULL;                                                                           \
        return fe_unary(g, __func__, OP, a);                                                       \
    }
KILN_UNARY(kiln_abs, IR_ABS)
KILN_UNARY(kiln_exp, IR_EXP)
KILN_UNARY(kiln_log, IR_LOG)
KILN_UNARY(kiln_log1p, IR_LOG1P)
KILN_UNARY(kiln_sqrt, IR_SQRT)
KILN_UNARY(kiln_rsqrt, IR_RSQRT)
KILN_UNARY(kiln_sin, IR_SIN)
KILN_UNARY(kiln_cos, IR_COS)
KILN_UNARY(kiln_tanh, IR_TANH)
KILN_UNARY(kiln_erf, IR_ERF)
KILN_UNARY(kiln_sigmoid, IR_SIGMOID)
KILN_UNARY(kiln_relu, IR_RELU)
#undef KILN_UNARY

/* Integer and bool operands of the float-only composites run in float32, as
 * the FLOATY primitives do. */
static kiln_tensor *as_float(kiln_graph *g, kiln_tensor *a)
{
    return fe_convert(g, a, ir_dtype_is_float(a->dtype) ? a->dtype : KILN_F32);
}

/* gelu(x) = 0.5 * x * (1 + erf(x / sqrt(2))): nn.GELU's exact form. */
kiln_tensor *kiln_gelu(kiln_graph *g, kiln_tensor *a)
{
    if (!fe_begin(g, 1, &a))
        return NULL;
    kiln_tensor *x = as_float(g, a);
    if (!x)
        return NULL;
    kiln_dtype dt = x->dtype;
    kiln_tensor *u = kiln_mul(g, x, konst(g, dt, M_SQRT1_2));
    kiln_tensor *e = kiln_add(g, kiln_erf(g, u), konst(g, dt, 1.0));
    return kiln_mul(g, kiln_mul(g, x, konst(g, dt, 0.5)), e);
}

/* silu(x) = x * sigmoid(x) */
kiln_tensor *kiln_silu(kiln_graph *g, kiln_tensor *a)
{
    if (!fe_begin(g, 1, &a))
        return NULL;
    kiln_tensor *x = as_float(g, a);
    if (!x)
        return NULL;
    return kiln_mul(g, x, kiln_sigmoid(g, x));
}

kiln_tensor *kiln_square(kiln_graph *g, kiln_tensor *a)
{
    if (!fe_begin(g, 1, &a))
        return NULL;
    return kiln_mul(g, a, a);
}

kiln_tensor *kiln_cast(kiln_graph *g, kiln_tensor *t, kiln_dtype dt)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    if (!ir_dtype_valid((int)dt))
        return fe_fail(g, KILN_ERR_DTYPE, __func__, "invalid dtype %d", (int)dt);
    return fe_convert(g, t, dt);
}

/* ---- reductions ----------------------------------------------------------- */

static uint32_t all_axes(int rank)
{
    return rank ? (uint32_t)((1u << rank) - 1u) : 0u;
}

/* The axis mask for one axis or KILN_ALL; a rank-0 tensor accepts 0 and -1
 * and has nothing to reduce. */
static bool one_axis(kiln_graph *g, const char *fn, const kiln_tensor *t, int axis, uint32_t *mask)
{
    if (axis == KILN_ALL) {
        *mask = all_axes(t->rank);
        return true;
    }
    int a;
    if (!fe_axis(g, fn, axis, t->rank, &a))
        return false;
    *mask = t->rank ? 1u << a : 0u;
    return true;
}

/* PyTorch's dim list: n == 0 means every axis; a repeated axis is an error. */
static bool axis_list(kiln_graph *g, const char *fn, const kiln_tensor *t, int n, const int *axes,
                      uint32_t *mask)
{
    if (n < 0) {
        fe_fail(g, KILN_ERR_INVALID, fn, "number of dims must be >= 0, but got %d", n);
        return false;
    }
    if (n == 0) {
        *mask = all_axes(t->rank);
        return true;
    }
    uint32_t m = 0, seen = 0;
    for (int i = 0; i < n; i++) {
        int a;
        if (!fe_axis(g, fn, axes[i], t->rank, &a))
            return false;
        if (seen & (1u << a)) {
            fe_fail(g, KILN_ERR_SHAPE, fn, "dim %d appears multiple times in the list of dims", a);
            return false;
        }
        seen |= 1u << a;
        if (t->rank)
            m |= 1u << a;
    }
    *mask = m;
    return true;
}

static int64_t reduced_count(const kiln_tensor *t, uint32_t mask)
{
    int64_t n = 1;
    for (int d = 0; d < t->rank; d++)
        if (mask & (1u << d))
            n *= t->dims[d];
    return n;
}

/* sum: integer and bool inputs are summed as int64 (cast first, as PyTorch). */
static kiln_tensor *sum_mask(kiln_graph *g, kiln_tensor *t, uint32_t mask, bool keepdim)
{
    kiln_dtype dt = ir_dtype_is_float(t->dtype) ? t->dtype : KILN_I64;
    kiln_tensor *x = fe_convert(g, t, dt);
    return x ? fe_reduce(g, IR_SUM, x, mask, keepdim, dt) : NULL;
}

static kiln_tensor *mean_mask(kiln_graph *g, const char *fn, kiln_tensor *t, uint32_t mask,
                              bool keepdim)
{
    if (!ir_dtype_is_float(t->dtype))
        return fe_fail(g, KILN_ERR_DTYPE, fn,
                       "mean(): could not infer output dtype. Input dtype must be either a "
                       "floating point or complex dtype. Got: %s",
                       ir_dtype_torch(t->dtype));
    kiln_tensor *s = sum_mask(g, t, mask, keepdim);
    kiln_tensor *n = konst(g, t->dtype, (double)reduced_count(t, mask));
    return (s && n) ? fe_binary(g, fn, IR_DIV, s, n) : NULL;
}

kiln_tensor *kiln_sum(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim)
{
    uint32_t mask;
    if (!fe_begin(g, 1, &t) || !one_axis(g, __func__, t, axis, &mask))
        return NULL;
    return sum_mask(g, t, mask, keepdim);
}

kiln_tensor *kiln_mean(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim)
{
    uint32_t mask;
    if (!fe_begin(g, 1, &t) || !one_axis(g, __func__, t, axis, &mask))
        return NULL;
    return mean_mask(g, __func__, t, mask, keepdim);
}

kiln_tensor *kiln_sum_axes(kiln_graph *g, kiln_tensor *t, int n, const int *axes, bool keepdim)
{
    if (!fe_begin(g, 1, &t) || (n > 0 && !axes))
        return NULL;
    uint32_t mask;
    if (!axis_list(g, __func__, t, n, axes, &mask))
        return NULL;
    return sum_mask(g, t, mask, keepdim);
}

kiln_tensor *kiln_mean_axes(kiln_graph *g, kiln_tensor *t, int n, const int *axes, bool keepdim)
{
    if (!fe_begin(g, 1, &t) || (n > 0 && !axes))
        return NULL;
    uint32_t mask;
    if (!axis_list(g, __func__, t, n, axes, &mask))
        return NULL;
    return mean_mask(g, __func__, t, mask, keepdim);
}

/* max/min/argmax/argmin have no identity: an empty reduction is an error,
 * worded as PyTorch words it (name: "max", "argmax", ...). */
static bool check_nonempty(kiln_graph *g, const char *fn, const char *name, const kiln_tensor *t,
                           int axis, bool arg)
{
    if (axis == KILN_ALL) {
        if (ir_numel(t) != 0)
            return true;
        fe_fail(g, KILN_ERR_SHAPE, fn,
                "%s(): Expected reduction dim to be specified for input.numel() == 0.%s", name,
                arg ? "" : " Specify the reduction dim with the 'dim' argument.");
        return false;
    }
    int a;
    if (!fe_axis(g, fn, axis, t->rank, &a))
        return false;
    if (t->rank == 0 || t->dims[a] != 0)
        return true;
    fe_fail(g, KILN_ERR_SHAPE, fn, "%s(): Expected reduction dim %d to have non-zero size.", name,
            a);
    return false;
}

static kiln_tensor *extremum(kiln_graph *g, const char *fn, const char *name, ir_op op,
                             kiln_tensor *t, int axis, bool keepdim)
{
    bool arg = op == IR_ARGMAX || op == IR_ARGMIN;
    uint32_t mask;
    if (!fe_begin(g, 1, &t) || !check_nonempty(g, fn, name, t, axis, arg) ||
        !one_axis(g, fn, t, axis, &mask))
        return NULL;
    if (arg && t->dtype == KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"%s_cpu\" not implemented for 'Bool'", name);
    return fe_reduce(g, op, t, mask, keepdim, arg ? KILN_I64 : t->dtype);
}

kiln_tensor *kiln_max(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim)
{
    return extremum(g, __func__, "max", IR_MAX, t, axis, keepdim);
}

kiln_tensor *kiln_min(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim)
{
    return extremum(g, __func__, "min", IR_MIN, t, axis, keepdim);
}

kiln_tensor *kiln_argmax(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim)
{
    return extremum(g, __func__, "argmax", IR_ARGMAX, t, axis, keepdim);
}

kiln_tensor *kiln_argmin(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim)
{
    return extremum(g, __func__, "argmin", IR_ARGMIN, t, axis, keepdim);
}

/* ---- masks: tril, triu, masked_fill --------------------------------------- */

/* torch.tril / torch.triu over the last two axes: element (i, j) is kept when
 * j - i <= diagonal (lower) or j - i >= diagonal (upper), else zero (false). */
static kiln_tensor *triangle(kiln_graph *g, const char *fn, kiln_tensor *t, int64_t diagonal,
                             bool lower)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    if (t->rank < 2)
        return fe_fail(g, KILN_ERR_SHAPE, fn, "%s: input tensor must have at least 2 dimensions",
                       lower ? "tril" : "triu");
    int64_t r = t->dims[t->rank - 2], c = t->dims[t->rank - 1];
    kiln_tensor *rows = ir_node_new(g, IR_ARANGE, KILN_I64, 1, &r, 0, NULL);
    kiln_tensor *cols = ir_node_new(g, IR_ARANGE, KILN_I64, 1, &c, 0, NULL);
    if (!rows || !cols)
        return NULL;
    rows->value = cols->value = 0.0;
    rows->value2 = cols->value2 = 1.0;
    kiln_tensor *diff = kiln_sub(g, fe_reshape_raw(g, cols, 2, (const int64_t[]){1, c}),
                                 fe_reshape_raw(g, rows, 2, (const int64_t[]){r, 1}));
    kiln_tensor *d = fe_full_raw(g, KILN_I64, 0, NULL, (double)diagonal);
    kiln_tensor *keep = lower ? kiln_le(g, diff, d) : kiln_ge(g, diff, d);
    return kiln_where(g, keep, t, fe_full_raw(g, t->dtype, 0, NULL, 0.0));
}

kiln_tensor *kiln_tril(kiln_graph *g, kiln_tensor *t, int64_t diagonal)
{
    return triangle(g, __func__, t, diagonal, true);
}

kiln_tensor *kiln_triu(kiln_graph *g, kiln_tensor *t, int64_t diagonal)
{
    return triangle(g, __func__, t, diagonal, false);
}

/* torch.masked_fill: value (converted to t's dtype, as PyTorch does) where the
 * bool mask is true, t elsewhere; mask and t broadcast. */
kiln_tensor *kiln_masked_fill(kiln_graph *g, kiln_tensor *t, kiln_tensor *mask, double value)
{
    kiln_tensor *ts[2] = {t, mask};
    if (!fe_begin(g, 2, ts))
        return NULL;
    if (mask->dtype != KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, __func__,
                       "masked_fill_ only supports boolean masks, but got mask with dtype %s",
                       ir_dtype_torch(mask->dtype));
    if (!ir_value_fits(t->dtype, value))
        return fe_fail(g, KILN_ERR_INVALID, __func__,
                       "value cannot be converted to type %s without overflow",
                       kiln_dtype_name(t->dtype));
    return kiln_where(g, mask, fe_full_raw(g, t->dtype, 0, NULL, value), t);
}
