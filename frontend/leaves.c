/*
 * leaves.c - the builders that start a graph: named inputs and params with
 * their initialisers, constants, fills, ranges and random sources.
 *
 * Requires nothing but a graph; produces SOURCE nodes (docs/ir.md), except
 * kiln_linspace, a composite of ARANGE and elementwise primitives that
 * reproduces PyTorch's CPU formula. Argument checks follow PyTorch's factory
 * functions and use its messages.
 */
#include "fe.h"

#include <float.h>
#include <math.h>
#include <string.h>

/* ---- initialisers --------------------------------------------------------- */

kiln_init kiln_init_zeros(void)
{
    return (kiln_init){.kind = KILN_INIT_ZEROS};
}

kiln_init kiln_init_ones(void)
{
    return (kiln_init){.kind = KILN_INIT_ONES};
}

kiln_init kiln_init_const(double v)
{
    return (kiln_init){.kind = KILN_INIT_CONST, .a = v};
}

kiln_init kiln_init_normal(double mean, double std)
{
    return (kiln_init){.kind = KILN_INIT_NORMAL, .a = mean, .b = std};
}

kiln_init kiln_init_uniform(double lo, double hi)
{
    return (kiln_init){.kind = KILN_INIT_UNIFORM, .a = lo, .b = hi};
}

kiln_init kiln_init_kaiming_uniform(void)
{
    return (kiln_init){.kind = KILN_INIT_KAIMING_UNIFORM};
}

kiln_init kiln_init_data(const void *ptr)
{
    return (kiln_init){.kind = KILN_INIT_DATA, .data = ptr};
}

/* ---- shared checks -------------------------------------------------------- */

static bool check_dtype(kiln_graph *g, const char *fn, kiln_dtype dt)
{
    if (ir_dtype_valid((int)dt))
        return true;
    fe_fail(g, KILN_ERR_DTYPE, fn, "invalid dtype %d", (int)dt);
    return false;
}

/* Inputs, params and entry outputs share one namespace. */
static bool name_is_used(const kiln_graph *g, const char *name)
{
    if (ir_find_leaf(g, name))
        return true;
    for (int i = 0; i < g->nentries; i++)
        for (int k = 0; k < g->entries[i].n; k++)
            if (strcmp(g->entries[i].output_names[k], name) == 0)
                return true;
    return false;
}

static kiln_tensor *named_leaf(kiln_graph *g, const char *fn, ir_op op, const char *name,
                               kiln_dtype dt, int rank, const int64_t *dims)
{
    if (!fe_begin(g, 0, NULL) || !name || (rank > 0 && !dims))
        return NULL;
    if (!name[0])
        return fe_fail(g, KILN_ERR_INVALID, fn, "the name must be a non-empty string");
    if (!check_dtype(g, fn, dt) || !fe_check_shape(g, fn, dt, rank, dims))
        return NULL;
    if (name_is_used(g, name))
        return fe_fail(g, KILN_ERR_INVALID, fn, "name '%s' is already used", name);
    char *copy = ir_arena_strdup(&g->arena, name);
    if (!copy)
        return fe_fail(g, KILN_ERR_NOMEM, fn, "out of memory");
    kiln_tensor *t = ir_node_new(g, op, dt, rank, dims, 0, NULL);
    if (t)
        t->name = copy;
    return t;
}

/* Copies numel(t) elements of t's dtype from src into the graph's arena. */
static void *copy_data(kiln_graph *g, const char *fn, const kiln_tensor *t, const void *src)
{
    size_t n = (size_t)ir_numel(t) * kiln_dtype_size(t->dtype);
    void *p = ir_arena_alloc(&g->arena, n);
    if (!p) {
        fe_fail(g, KILN_ERR_NOMEM, fn, "out of memory");
        return NULL;
    }
    if (n)
        memcpy(p, src, n);
    if (t->dtype == KILN_BOOL)
        ir_bool_normalise(p, n);
    return p;
}

/* ---- named leaves ----------------------------------------------------------- */

kiln_tensor *kiln_input(kiln_graph *g, const char *name, kiln_dtype dt, int rank,
                        const int64_t *dims)
{
    return named_leaf(g, __func__, IR_INPUT, name, dt, rank, dims);
}

/* A fill value for dtype dt: NaN or out of range for an integer dtype is an
 * error in PyTorch, not a saturated value. */
static bool check_value(kiln_graph *g, const char *fn, kiln_dtype dt, double v)
{
    if (ir_value_fits(dt, v))
        return true;
    fe_fail(g, KILN_ERR_INVALID, fn, "value cannot be converted to type %s without overflow",
            kiln_dtype_name(dt));
    return false;
}

/* The initialiser must suit the dtype, as torch.nn.init's in-place fills require. */
static bool check_init(kiln_graph *g, const char *fn, kiln_dtype dt, kiln_init init)
{
    switch (init.kind) {
    case KILN_INIT_ZEROS:
    case KILN_INIT_ONES:
    case KILN_INIT_DATA: return true;
    case KILN_INIT_CONST: return check_value(g, fn, dt, init.a);
    case KILN_INIT_NORMAL:
        if (!ir_dtype_is_float(dt)) {
            fe_fail(g, KILN_ERR_DTYPE, fn, "\"normal_kernel_cpu\" not implemented for '%s'",
                    ir_dtype_torch(dt));
            return false;
        }
        if (init.b < 0) {
            fe_fail(g, KILN_ERR_INVALID, fn, "normal expects std >= 0.0, but found std %g", init.b);
            return false;
        }
        return true;
    case KILN_INIT_UNIFORM:
    case KILN_INIT_KAIMING_UNIFORM:
        if (!ir_dtype_is_float(dt)) {
            fe_fail(g, KILN_ERR_DTYPE, fn, "\"check_uniform_bounds\" not implemented for '%s'",
                    ir_dtype_torch(dt));
            return false;
        }
        if (init.kind == KILN_INIT_UNIFORM && init.a > init.b) {
            fe_fail(g, KILN_ERR_INVALID, fn,
                    "uniform_ expects to return a [from, to) range, but found from=%g > to=%g",
                    init.a, init.b);
            return false;
        }
        return true;
    }
    fe_fail(g, KILN_ERR_INVALID, fn, "unknown initialiser kind %d", (int)init.kind);
    return false;
}

/* KILN_INIT_KAIMING_UNIFORM leaves fan_in at 0, "from the param's own shape"
 * (rank >= 2: dims[1] * prod(dims[2:]); rank 1: dims[0]); kiln_linear sets
 * it on a bias to its weight's fan_in. */
kiln_tensor *kiln_param(kiln_graph *g, const char *name, kiln_dtype dt, int rank,
                        const int64_t *dims, kiln_init init)
{
    if (init.kind == KILN_INIT_DATA && !init.data)
        return NULL;
    if (!ir_begin(g) || !name || (rank > 0 && !dims))
        return NULL;
    /* check the dtype first: check_init reads it */
    if (!check_dtype(g, __func__, dt) || !check_init(g, __func__, dt, init))
        return NULL;
    kiln_tensor *t = named_leaf(g, __func__, IR_PARAM, name, dt, rank, dims);
    if (!t)
        return NULL;
    t->init = init;
    t->stream = g->next_stream++;
    if (init.kind == KILN_INIT_DATA) {
        t->data = copy_data(g, __func__, t, init.data);
        if (!t->data)
            return NULL;
        t->init.data = t->data;
    }
    return t;
}

/* ---- constants and fills -------------------------------------------------- */

kiln_tensor *kiln_tensor_from(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims,
                              const void *data)
{
    if (!fe_begin(g, 0, NULL) || !data || (rank > 0 && !dims))
        return NULL;
    if (!check_dtype(g, __func__, dt) || !fe_check_shape(g, __func__, dt, rank, dims))
        return NULL;
    kiln_tensor *t = ir_node_new(g, IR_CONST, dt, rank, dims, 0, NULL);
    if (!t)
        return NULL;
    t->data = copy_data(g, __func__, t, data);
    return t->data ? t : NULL;
}

/* C cannot tell 2 from 2.0, so an integral value acts like a Python int (an
 * int64 weak scalar: int_tensor * 2 stays integer) and any other value like a
 * Python float (float32 weak scalar: int_tensor * 2.5 is float32). */
kiln_tensor *kiln_scalar(kiln_graph *g, double v)
{
    if (!fe_begin(g, 0, NULL))
        return NULL;
    bool integral = isfinite(v) && v == trunc(v) && v >= -0x1p63 && v < 0x1p63;
    kiln_tensor *t = fe_full_raw(g, integral ? KILN_I64 : KILN_F32, 0, NULL, v);
    if (t)
        t->weak = true;
    return t;
}

static kiln_tensor *full(kiln_graph *g, const char *fn, kiln_dtype dt, int rank,
                         const int64_t *dims, double v)
{
    if (!fe_begin(g, 0, NULL) || (rank > 0 && !dims))
        return NULL;
    if (!check_dtype(g, fn, dt) || !fe_check_shape(g, fn, dt, rank, dims) ||
        !check_value(g, fn, dt, v))
        return NULL;
    return fe_full_raw(g, dt, rank, dims, v);
}

kiln_tensor *kiln_full(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims, double v)
{
    return full(g, __func__, dt, rank, dims, v);
}

kiln_tensor *kiln_zeros(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
    return full(g, __func__, dt, rank, dims, 0.0);
}

kiln_tensor *kiln_ones(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
    return full(g, __func__, dt, rank, dims, 1.0);
}

kiln_tensor *kiln_full_like(kiln_graph *g, kiln_tensor *t, double v)
{
    if (!fe_begin(g, 1, &t) || !check_value(g, __func__, t->dtype, v))
        return NULL;
    return fe_full_raw(g, t->dtype, t->rank, t->dims, v);
}

kiln_tensor *kiln_zeros_like(kiln_graph *g, kiln_tensor *t)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    return fe_full_raw(g, t->dtype, t->rank, t->dims, 0.0);
}

kiln_tensor *kiln_ones_like(kiln_graph *g, kiln_tensor *t)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    return fe_full_raw(g, t->dtype, t->rank, t->dims, 1.0);
}

/* ---- ranges ----------------------------------------------------------------- */

/* c10::Scalar::to<int64_t>: a value outside int64 (or NaN) is an error. */
static bool to_i64(kiln_graph *g, const char *fn, double v, const char *type, double lo, double hi,
                   int64_t *out)
{
    if (!(v >= lo && v < hi)) {
        fe_fail(g, KILN_ERR_INVALID, fn, "value cannot be converted to type %s without overflow",
                type);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

static kiln_tensor *arange_node(kiln_graph *g, const char *fn, kiln_dtype dt, int64_t size,
                                double start, double step)
{
    if (!fe_check_shape(g, fn, dt, 1, &size))
        return NULL;
    kiln_tensor *t = ir_node_new(g, IR_ARANGE, dt, 1, (const int64_t[]){size}, 0, NULL);
    if (t) {
        t->value = start;
        t->value2 = step;
    }
    return t;
}

/* PyTorch's arange: bounds checked in double; the size from doubles, except for
 * int64 with integral arguments (exact integer arithmetic). Integer dtypes
 * run with start and step truncated to integers, as PyTorch's kernel does. */
kiln_tensor *kiln_arange(kiln_graph *g, kiln_dtype dt, double start, double end, double step)
{
    const char *fn = __func__;
    if (!fe_begin(g, 0, NULL) || !check_dtype(g, fn, dt))
        return NULL;
    if (dt == KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"arange_cpu\" not implemented for 'Bool'");
    if (!(step > 0 || step < 0))
        return fe_fail(g, KILN_ERR_INVALID, fn, "step must be nonzero");
    if (!isfinite(start) || !isfinite(end))
        return fe_fail(g, KILN_ERR_INVALID, fn, "unsupported range: %g -> %g", start, end);
    if (!((step > 0 && end >= start) || (step < 0 && end <= start)))
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "upper bound and larger bound inconsistent with step sign");
    double size = ceil((end - start) / step);
    if (ir_dtype_is_int(dt)) {
        int64_t s, e, st;
        if (!to_i64(g, fn, start, "int64_t", -0x1p63, 0x1p63, &s) ||
            !to_i64(g, fn, end, "int64_t", -0x1p63, 0x1p63, &e) ||
            !to_i64(g, fn, step, "int64_t", -0x1p63, 0x1p63, &st))
            return NULL;
        bool integral = start == (double)s && end == (double)e && step == (double)st;
        if (dt == KILN_I64 && integral) {
            int64_t sgn = st > 0 ? 1 : -1, num;
            if (__builtin_sub_overflow(e, s, &num) || __builtin_add_overflow(num, st - sgn, &num))
                return fe_fail(g, KILN_ERR_INVALID, fn, "invalid size, possible overflow?");
            size = (double)(num / st);
        }
        start = (double)s;
        step = (double)st;
    }
    if (!(size >= 0 && size < 0x1p63))
        return fe_fail(g, KILN_ERR_INVALID, fn, "invalid size, possible overflow?");
    return arange_node(g, __func__, dt, (int64_t)size, start, step);
}

/* linspace's endpoints as PyTorch's CPU kernel holds them: converted to the
 * output dtype (checked), and the step in that dtype (double for integers). */
static bool linspace_consts(kiln_graph *g, const char *fn, kiln_dtype dt, double start, double end,
                            int64_t steps, double *s, double *e, double *st)
{
    int64_t is = 0, ie = 0;
    switch (dt) {
    case KILN_F32:
        if ((isfinite(start) && fabs(start) > (double)FLT_MAX) ||
            (isfinite(end) && fabs(end) > (double)FLT_MAX)) {
            fe_fail(g, KILN_ERR_INVALID, fn,
                    "value cannot be converted to type float without "
                    "overflow");
            return false;
        }
        {
            float fs = (float)start, fe = (float)end;
            float fst = (fe - fs) / (float)(steps - 1);
            *s = (double)fs;
            *e = (double)fe;
            *st = (double)fst;
        }
        return true;
    case KILN_F64:
        *s = start;
        *e = end;
        *st = (end - start) / (double)(steps - 1);
        return true;
    case KILN_I32:
        if (!to_i64(g, fn, start, "int32_t", -0x1p31, 0x1p31, &is) ||
            !to_i64(g, fn, end, "int32_t", -0x1p31, 0x1p31, &ie))
            return false;
        break;
    case KILN_I64:
        if (!to_i64(g, fn, start, "int64_t", -0x1p63, 0x1p63, &is) ||
            !to_i64(g, fn, end, "int64_t", -0x1p63, 0x1p63, &ie))
            return false;
        break;
    case KILN_BOOL:
        fe_fail(g, KILN_ERR_DTYPE, fn, "\"linspace_cpu\" not implemented for 'Bool'");
        return false;
    }
    *s = (double)is;
    *e = (double)ie;
    *st = ((double)ie - (double)is) / (double)(steps - 1);
    return true;
}

static kiln_tensor *konst(kiln_graph *g, kiln_dtype dt, double v)
{
    return fe_full_raw(g, dt, 0, NULL, v);
}

/* out[i] = i < steps/2 ? start + step*i : end - step*(steps-1-i), computed in
 * the output dtype (double for integers, then truncated), like PyTorch's
 * scalar CPU loop: both ends are exact and the halves are symmetric. */
kiln_tensor *kiln_linspace(kiln_graph *g, kiln_dtype dt, double start, double end, int64_t steps)
{
    const char *fn = __func__;
    if (!fe_begin(g, 0, NULL) || !check_dtype(g, fn, dt))
        return NULL;
    if (steps < 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "number of steps must be non-negative");
    double s, e, st;
    if (!linspace_consts(g, fn, dt, start, end, steps > 1 ? steps : 2, &s, &e, &st))
        return NULL;
    if (steps <= 1)
        return fe_full_raw(g, dt, 1, (const int64_t[]){steps}, s);
    kiln_dtype ct = ir_dtype_is_float(dt) ? dt : KILN_F64;
    kiln_tensor *idx = arange_node(g, fn, KILN_I64, steps, 0, 1);
    kiln_tensor *rev = arange_node(g, fn, KILN_I64, steps, (double)(steps - 1), -1);
    if (!idx || !rev)
        return NULL;
    kiln_tensor *fidx = fe_convert(g, idx, ct), *frev = fe_convert(g, rev, ct);
    kiln_tensor *cs = konst(g, ct, s), *ce = konst(g, ct, e), *cst = konst(g, ct, st);
    kiln_tensor *half = konst(g, KILN_I64, (double)(steps / 2));
    if (!fidx || !frev || !cs || !ce || !cst || !half)
        return NULL;
    kiln_tensor *lo = fe_binary(g, fn, IR_MUL, cst, fidx);
    lo = lo ? fe_binary(g, fn, IR_ADD, cs, lo) : NULL;
    kiln_tensor *hi = fe_binary(g, fn, IR_MUL, cst, frev);
    hi = hi ? fe_binary(g, fn, IR_SUB, ce, hi) : NULL;
    kiln_tensor *cond = fe_binary(g, fn, IR_LT, idx, half);
    if (!lo || !hi || !cond)
        return NULL;
    kiln_tensor *ops[3] = {cond, lo, hi};
    kiln_tensor *r = fe_elementwise(g, fn, IR_WHERE, 3, ops, ct);
    return r ? fe_convert(g, r, dt) : NULL;
}

/* ---- random sources ----------------------------------------------------- */

static kiln_tensor *random_source(kiln_graph *g, const char *fn, ir_op op, kiln_dtype dt, int rank,
                                  const int64_t *dims)
{
    if (!check_dtype(g, fn, dt))
        return NULL;
    if (!ir_dtype_is_float(dt))
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"%s\" not implemented for '%s'",
                       op == IR_RAND ? "check_uniform_bounds" : "normal_kernel_cpu",
                       ir_dtype_torch(dt));
    if (!fe_check_shape(g, fn, dt, rank, dims))
        return NULL;
    kiln_tensor *t = ir_node_new(g, op, dt, rank, dims, 0, NULL);
    if (t)
        t->stream = g->next_stream++;
    return t;
}

kiln_tensor *kiln_rand(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
    if (!fe_begin(g, 0, NULL) || (rank > 0 && !dims))
        return NULL;
    return random_source(g, __func__, IR_RAND, dt, rank, dims);
}

kiln_tensor *kiln_randn(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
    if (!fe_begin(g, 0, NULL) || (rank > 0 && !dims))
        return NULL;
    return random_source(g, __func__, IR_RANDN, dt, rank, dims);
}

kiln_tensor *kiln_rand_like(kiln_graph *g, kiln_tensor *t)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    return random_source(g, __func__, IR_RAND, t->dtype, t->rank, t->dims);
}

kiln_tensor *kiln_randn_like(kiln_graph *g, kiln_tensor *t)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    return random_source(g, __func__, IR_RANDN, t->dtype, t->rank, t->dims);
}

kiln_tensor *kiln_graph_find(kiln_graph *g, const char *name)
{
    return g && name ? ir_find_leaf(g, name) : NULL;
}
