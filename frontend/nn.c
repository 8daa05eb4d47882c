/*
 * nn.c - linear algebra and neural-network builders: matmul with NumPy's rank
 * rules, linear, softmax/log_softmax, layer_norm, embedding, dropout and the
 * losses. Everything but matmul and embedding is a composite of primitives.
 *
 * Requires operands from one graph. Produces MATMUL nodes with rank >= 2 and
 * equal batch dims, GATHER nodes with axis 0, and RAND nodes with a fresh stream.
 */
#include "fe.h"

#include <math.h>
#include <string.h>

/* PyTorch's C type names, as its dtype-mismatch messages print them. */
static const char *c_name(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return "float";
    case KILN_F64: return "double";
    case KILN_I32: return "int";
    case KILN_I64: return "long";
    case KILN_BOOL: return "bool";
    }
    return "?";
}

/* The label nn.CrossEntropyLoss ignores by default (ignore_index). */
#define IGNORE_INDEX (-100) /* PyTorch's default ignore_index */

static kiln_tensor *konst(kiln_graph *g, kiln_dtype dt, double v)
{
    return fe_full_raw(g, dt, 0, NULL, v);
}

static kiln_tensor *transpose2(kiln_graph *g, kiln_tensor *w)
{
    int64_t dims[2] = {w->dims[1], w->dims[0]};
    kiln_tensor *t = ir_node_new(g, IR_PERMUTE, w->dtype, 2, dims, 1, &w);
    if (t) {
        t->perm[0] = 1;
        t->perm[1] = 0;
    }
    return t;
}

static kiln_tensor *detach(kiln_graph *g, kiln_tensor *t)
{
    return t ? ir_node_new(g, IR_DETACH, t->dtype, t->rank, t->dims, 1, &t) : NULL;
}

/* ---- matmul --------------------------------------------------------------- */

static bool same_dtype(kiln_graph *g, const char *fn, const kiln_tensor *a, const kiln_tensor *b)
{
    if (a->dtype != b->dtype) {
        fe_fail(g, KILN_ERR_DTYPE, fn,
                "expected m1 and m2 to have the same dtype, but got: %s != %s", c_name(a->dtype),
                c_name(b->dtype));
        return false;
    }
    if (a->dtype == KILN_BOOL) {
        fe_fail(g, KILN_ERR_DTYPE, fn, "\"addmm_impl_cpu_\" not implemented for 'Bool'");
        return false;
    }
    return true;
}

static kiln_tensor *mat_mismatch(kiln_graph *g, const char *fn, int64_t m, int64_t ka, int64_t kb,
                                 int64_t n)
{
    return fe_fail(g, KILN_ERR_SHAPE, fn,
                   "mat1 and mat2 shapes cannot be multiplied (%lldx%lld and %lldx%lld)",
                   (long long)m, (long long)ka, (long long)kb, (long long)n);
}

/* The broadcast of two batch shapes (PyTorch's wording on a mismatch). */
static bool batch_broadcast(kiln_graph *g, const char *fn, int ra, const int64_t *da, int rb,
                            const int64_t *db, int *rank, int64_t *dims)
{
    int r = ra > rb ? ra : rb;
    for (int d = 0; d < r; d++) {
        int64_t x = d < r - ra ? 1 : da[d - (r - ra)];
        int64_t y = d < r - rb ? 1 : db[d - (r - rb)];
        if (x != y && x != 1 && y != 1) {
            fe_fail(g, KILN_ERR_SHAPE, fn,
                    "The size of tensor a (%lld) must match the size of tensor b (%lld) at "
                    "non-singleton dimension %d",
                    (long long)x, (long long)y, d);
            return false;
        }
        dims[d] = x == 1 ? y : x;
    }
    *rank = r;
    return true;
}

/* a @ b by NumPy's rules; the operands have passed same_dtype. A 1-D operand
 * becomes a row (a) or a column (b) matrix whose axis is dropped again from
 * the result. A batched a times a matrix b is folded into one 2-D product, as
 * PyTorch does; other batched products expand both to the broadcast batch. */
static kiln_tensor *matmul_impl(kiln_graph *g, const char *fn, kiln_tensor *a, kiln_tensor *b)
{
    int ra = a->rank, rb = b->rank;
    if (ra == 1 && rb == 1 && a->dims[0] != b->dims[0])
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "inconsistent tensor size, expected tensor [%lld] and src [%lld] to have "
                       "the same number of elements, but got %lld and %lld elements respectively",
                       (long long)a->dims[0], (long long)b->dims[0], (long long)a->dims[0],
                       (long long)b->dims[0]);
    if (ra == 2 && rb == 1 && a->dims[1] != b->dims[0])
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "size mismatch, got input (%lld), mat (%lldx%lld), vec (%lld)",
                       (long long)a->dims[0], (long long)a->dims[0], (long long)a->dims[1],
                       (long long)b->dims[0]);

    kiln_tensor *a2 = a, *b2 = b;
    if (ra == 1)
        a2 = fe_reshape_raw(g, a, 2, (const int64_t[]){1, a->dims[0]});
    if (rb == 1)
        b2 = fe_reshape_raw(g, b, 2, (const int64_t[]){b->dims[0], 1});
    if (!a2 || !b2)
        return NULL;
    int r2a = a2->rank, r2b = b2->rank;
    int64_t m = a2->dims[r2a - 2], ka = a2->dims[r2a - 1];
    int64_t kb = b2->dims[r2b - 2], n = b2->dims[r2b - 1];
    if (ka != kb)
        return mat_mismatch(g, fn, m, ka, kb, n);

    int br;
    int64_t out[KILN_MAX_RANK];
    if (!batch_broadcast(g, fn, r2a - 2, a2->dims, r2b - 2, b2->dims, &br, out))
        return NULL;
    /* the result and both operands expanded to the broadcast batch */
    int64_t full[KILN_MAX_RANK + 2];
    memcpy(full, out, sizeof(*out) * (size_t)br);
    const int64_t mats[3][2] = {{m, n}, {m, ka}, {kb, n}};
    for (int i = 0; i < 3; i++) {
        full[br] = mats[i][0], full[br + 1] = mats[i][1];
        if (!fe_check_shape(g, fn, a->dtype, br + 2, full))
            return NULL;
    }
    kiln_tensor *prod;
    if (r2b == 2 && r2a > 2) {
        int64_t rows = ir_shape_numel(r2a - 1, a2->dims);
        kiln_tensor *flat = fe_reshape_raw(g, a2, 2, (const int64_t[]){rows, ka});
        prod = flat ? ir_node_new(g, IR_MATMUL, a->dtype, 2, (const int64_t[]){rows, n}, 2,
                                  (kiln_tensor *const[]){flat, b2})
                    : NULL;
    } else {
        int64_t da[KILN_MAX_RANK], db[KILN_MAX_RANK], dc[KILN_MAX_RANK];
        memcpy(da, out, sizeof(*out) * (size_t)br);
        memcpy(db, out, sizeof(*out) * (size_t)br);
        memcpy(dc, out, sizeof(*out) * (size_t)br);
        da[br] = m, da[br + 1] = ka;
        db[br] = kb, db[br + 1] = n;
        dc[br] = m, dc[br + 1] = n;
        kiln_tensor *ea = fe_expand_to(g, a2, br + 2, da);
        kiln_tensor *eb = fe_expand_to(g, b2, br + 2, db);
        prod = (ea && eb) ? ir_node_new(g, IR_MATMUL, a->dtype, br + 2, dc, 2,
                                        (kiln_tensor *const[]){ea, eb})
                          : NULL;
    }
    if (!prod)
        return NULL;
    int r = br;
    if (ra > 1)
        out[r++] = m;
    if (rb > 1)
        out[r++] = n;
    return fe_reshape_raw(g, prod, r, out);
}

kiln_tensor *kiln_matmul(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *ts[2] = {a, b};
    if (!fe_begin(g, 2, ts))
        return NULL;
    if (a->rank == 0 || b->rank == 0)
        return fe_fail(g, KILN_ERR_SHAPE, __func__,
                       "both arguments to matmul need to be at least 1D, but they are %dD and %dD",
                       a->rank, b->rank);
    if (!same_dtype(g, __func__, a, b))
        return NULL;
    return matmul_impl(g, __func__, a, b);
}

/* ---- linear --------------------------------------------------------------- */

kiln_tensor *kiln_linear(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b)
{
    kiln_tensor *ts[3] = {x, w, b};
    if (!fe_begin(g, b ? 3 : 2, ts))
        return NULL;
    if (x->rank == 0 || w->rank == 0)
        return fe_fail(g, KILN_ERR_SHAPE, __func__,
                       "both arguments to linear need to be at least 1D, but they are %dD and %dD",
                       x->rank, w->rank);
    if (w->rank != 2)
        return fe_fail(g, KILN_ERR_SHAPE, __func__,
                       "weight must be 2-D (out_features, in_features), but got %dD", w->rank);
    if (!same_dtype(g, __func__, x, w))
        return NULL;
    int64_t in = x->dims[x->rank - 1];
    if (in != w->dims[1]) /* PyTorch reports x flattened to 2-D and w^T */
        return mat_mismatch(g, __func__, ir_shape_numel(x->rank - 1, x->dims), in, w->dims[1],
                            w->dims[0]);
    if (b && b->dtype != x->dtype)
        return fe_fail(g, KILN_ERR_DTYPE, __func__,
                       "self and mat2 must have the same dtype, but got %s and %s",
                       c_name(b->dtype), c_name(x->dtype));
    kiln_tensor *wt = transpose2(g, w);
    kiln_tensor *y = wt ? matmul_impl(g, __func__, x, wt) : NULL;
    if (y && b)
        y = fe_binary(g, __func__, IR_ADD, y, b);
    /* nn.Linear draws its bias from U(+-1/sqrt(fan_in)) of the weight's fan_in */
    if (y && b && b->op == IR_PARAM && b->rank == 1 && b->init.kind == KILN_INIT_KAIMING_UNIFORM &&
        b->fan_in == 0)
        b->fan_in = w->dims[1];
    return y;
}

/* ---- softmax -------------------------------------------------------------- */

/* PyTorch's kernels are float-only; their names say which kernel refused. */
static bool float_only(kiln_graph *g, const char *fn, const char *kernel, const kiln_tensor *t)
{
    if (ir_dtype_is_float(t->dtype))
        return true;
    fe_fail(g, KILN_ERR_DTYPE, fn, "\"%s\" not implemented for '%s'", kernel,
            ir_dtype_torch(t->dtype));
    return false;
}

/* x - max(x) along axis (a constant for autodiff): exp of it cannot overflow.
 * An empty tensor has no max and needs no shift. */
static kiln_tensor *shifted(kiln_graph *g, const char *fn, kiln_tensor *x, int axis)
{
    if (ir_numel(x) == 0)
        return x;
    kiln_tensor *m = detach(g, kiln_max(g, x, axis, true));
    return m ? fe_binary(g, fn, IR_SUB, x, m) : NULL;
}

static kiln_tensor *softmax_impl(kiln_graph *g, const char *fn, kiln_tensor *t, int axis, bool log)
{
    int a;
    if (!fe_axis(g, fn, axis, t->rank, &a))
        return NULL;
    bool last = t->rank == 0 || a == t->rank - 1;
    const char *kernel =
        log ? (last ? "log_softmax_lastdim_kernel_impl" : "log_softmax_kernel_impl")
            : (last ? "softmax_lastdim_kernel_impl" : "softmax_kernel_impl");
    if (!float_only(g, fn, kernel, t))
        return NULL;
    kiln_tensor *z = shifted(g, fn, t, a);
    kiln_tensor *e = z ? fe_unary(g, fn, IR_EXP, z) : NULL;
    kiln_tensor *s = kiln_sum(g, e, a, true);
    if (!s)
        return NULL;
    if (!log)
        return fe_binary(g, fn, IR_DIV, e, s);
    kiln_tensor *ls = fe_unary(g, fn, IR_LOG, s);
    return ls ? fe_binary(g, fn, IR_SUB, z, ls) : NULL;
}

kiln_tensor *kiln_softmax(kiln_graph *g, kiln_tensor *t, int axis)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    return softmax_impl(g, __func__, t, axis, false);
}

kiln_tensor *kiln_log_softmax(kiln_graph *g, kiln_tensor *t, int axis)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    return softmax_impl(g, __func__, t, axis, true);
}

/* ---- layer_norm ----------------------------------------------------------- */

static bool affine_ok(kiln_graph *g, const char *fn, const char *what, const kiln_tensor *p,
                      const kiln_tensor *x)
{
    if (!p)
        return true;
    int64_t d = x->dims[x->rank - 1];
    if (p->rank != 1 || p->dims[0] != d) {
        char ps[160];
        fe_fail(g, KILN_ERR_SHAPE, fn,
                "Expected %s to be of same shape as normalized_shape, but got %s of shape %s "
                "and normalized_shape = [%lld]",
                what, what, ir_shape_str(ps, sizeof(ps), p->rank, p->dims), (long long)d);
        return false;
    }
    if (p->dtype != x->dtype) {
        fe_fail(g, KILN_ERR_DTYPE, fn, "expected scalar type %s but found %s",
                ir_dtype_torch(x->dtype), ir_dtype_torch(p->dtype));
        return false;
    }
    return true;
}

/* (x - mean) / sqrt(var + eps) * w + b over the last axis, biased variance. */
kiln_tensor *kiln_layer_norm(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                             double eps)
{
    if (!fe_begin(g, 1, &x) || (w && !fe_begin(g, 1, &w)) || (b && !fe_begin(g, 1, &b)))
        return NULL;
    if (x->rank == 0)
        return fe_fail(g, KILN_ERR_SHAPE, __func__,
                       "Given normalized_shape=[], expected input with shape [*], but got input "
                       "of size[]");
    if (!float_only(g, __func__, "LayerNormKernelImpl", x) ||
        !affine_ok(g, __func__, "weight", w, x) || !affine_ok(g, __func__, "bias", b, x))
        return NULL;
    kiln_tensor *mu = kiln_mean(g, x, -1, true);
    kiln_tensor *xc = mu ? fe_binary(g, __func__, IR_SUB, x, mu) : NULL;
    kiln_tensor *var = kiln_mean(g, kiln_mul(g, xc, xc), -1, true);
    kiln_tensor *ve = kiln_add(g, var, konst(g, x->dtype, eps));
    kiln_tensor *y = kiln_mul(g, xc, kiln_rsqrt(g, ve));
    if (w)
        y = kiln_mul(g, y, w);
    if (b)
        y = kiln_add(g, y, b);
    return y;
}

/* ---- embedding ------------------------------------------------------------ */

static const char *torch_tensor_type(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return "torch.FloatTensor";
    case KILN_F64: return "torch.DoubleTensor";
    case KILN_I32: return "torch.IntTensor";
    case KILN_I64: return "torch.LongTensor";
    case KILN_BOOL: return "torch.BoolTensor";
    }
    return "?";
}

kiln_tensor *kiln_embedding(kiln_graph *g, kiln_tensor *table, kiln_tensor *ids)
{
    kiln_tensor *ts[2] = {table, ids};
    if (!fe_begin(g, 2, ts))
        return NULL;
    if (!ir_dtype_is_int(ids->dtype))
        return fe_fail(g, KILN_ERR_DTYPE, __func__,
                       "Expected tensor for argument #1 'indices' to have one of the following "
                       "scalar types: Long, Int; but got %s instead (while checking arguments for "
                       "embedding)",
                       torch_tensor_type(ids->dtype));
    if (table->rank != 2)
        return fe_fail(g, KILN_ERR_SHAPE, __func__, "'weight' must be 2-D");
    if (ids->rank + 1 > KILN_MAX_RANK)
        return fe_fail(g, KILN_ERR_SHAPE, __func__, "result would have rank %d; the limit is %d",
                       ids->rank + 1, KILN_MAX_RANK);
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, ids->dims, sizeof(*dims) * (size_t)ids->rank);
    dims[ids->rank] = table->dims[1];
    if (!fe_check_shape(g, __func__, table->dtype, ids->rank + 1, dims))
        return NULL;
    kiln_tensor *r = ir_node_new(g, IR_GATHER, table->dtype, ids->rank + 1, dims, 2, ts);
    if (r)
        r->axis = 0;
    return r;
}

/* ---- dropout -------------------------------------------------------------- */

/* Training-mode dropout: each element survives with probability 1-p and is
 * scaled by 1/(1-p). A RAND node with its own stream draws a new mask per run. */
kiln_tensor *kiln_dropout(kiln_graph *g, kiln_tensor *t, double p)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    if (!(p >= 0.0 && p <= 1.0))
        return fe_fail(g, KILN_ERR_INVALID, __func__,
                       "dropout probability has to be between 0 and 1, but got %g", p);
    if (p == 0.0 || ir_numel(t) == 0)
        return t;
    if (p == 1.0) /* PyTorch multiplies by zero: NaN stays NaN, gradients are zero */
        return kiln_mul(g, t, konst(g, t->dtype, 0.0));
    if (!ir_dtype_is_float(t->dtype))
        return fe_fail(g, KILN_ERR_DTYPE, __func__,
                       "result type Float can't be cast to the desired output type %s",
                       ir_dtype_torch(t->dtype));
    kiln_tensor *r = ir_node_new(g, IR_RAND, t->dtype, t->rank, t->dims, 0, NULL);
    if (!r)
        return NULL;
    r->stream = g->next_stream++;
    kiln_tensor *keep = kiln_ge(g, r, konst(g, t->dtype, p));
    kiln_tensor *scaled = kiln_div(g, t, konst(g, t->dtype, 1.0 - p));
    return kiln_where(g, keep, scaled, konst(g, t->dtype, 0.0));
}

/* ---- losses --------------------------------------------------------------- */

kiln_tensor *kiln_mse_loss(kiln_graph *g, kiln_tensor *pred, kiln_tensor *target)
{
    kiln_tensor *ts[2] = {pred, target};
    if (!fe_begin(g, 2, ts))
        return NULL;
    kiln_dtype dt = fe_result_type(2, ts);
    if (!ir_dtype_is_float(dt))
        return fe_fail(g, KILN_ERR_DTYPE, __func__, "\"mse_cpu\" not implemented for '%s'",
                       ir_dtype_torch(dt));
    kiln_tensor *d = fe_binary(g, __func__, IR_SUB, pred, target);
    return kiln_mean(g, kiln_mul(g, d, d), KILN_ALL, false);
}

/* mean_i -log_softmax(logits)[i, labels[i]], picking each row's label with a
 * one-hot mask (labels[:, None] == arange(C)) so autodiff needs no new rule. */
static kiln_tensor *cross_entropy(kiln_graph *g, const char *fn, kiln_tensor *logits,
                                  kiln_tensor *labels, int64_t ignore_index, double smoothing)
{
    kiln_tensor *ts[2] = {logits, labels};
    if (!fe_begin(g, 2, ts))
        return NULL;
    if (!(smoothing >= 0 && smoothing <= 1))
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "label_smoothing must be between 0.0 and 1.0. Got: %g", smoothing);
    if (logits->rank == 0)
        return fe_fail(g, KILN_ERR_SHAPE, fn, "Expected 1 or more dimensions (got 0)");
    if (logits->rank > 2)
        return fe_fail(g, KILN_ERR_UNSUPPORTED, fn,
                       "logits of rank %d are not supported; expected (C) or (N, C)", logits->rank);
    if (labels->dtype != KILN_I64) /* class indices are int64 (torch.long), as in PyTorch */
        return fe_fail(g, KILN_ERR_DTYPE, fn, "expected scalar type Long but found %s",
                       ir_dtype_torch(labels->dtype));
    if (labels->rank > 1)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "0D or 1D target tensor expected, multi-target not supported");
    if (logits->rank == 2 && (labels->rank != 1 || logits->dims[0] != labels->dims[0])) {
        if (labels->rank == 0)
            return fe_fail(g, KILN_ERR_SHAPE, fn,
                           "Expected input batch_size (%lld) to match target batch_size (1).",
                           (long long)logits->dims[0]);
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Expected input batch_size (%lld) to match target batch_size (%lld).",
                       (long long)logits->dims[0], (long long)labels->dims[0]);
    }
    if (logits->rank == 1 && labels->rank != 0) {
        char is[64], ls[64];
        return fe_fail(g, KILN_ERR_SHAPE, fn, "size mismatch (got input: %s, target: %s)",
                       ir_shape_str(is, sizeof(is), logits->rank, logits->dims),
                       ir_shape_str(ls, sizeof(ls), labels->rank, labels->dims));
    }
    kiln_tensor *x = logits, *y = labels;
    if (logits->rank == 1) { /* one sample: a batch of one */
        x = fe_reshape_raw(g, logits, 2, (const int64_t[]){1, logits->dims[0]});
        y = fe_reshape_raw(g, labels, 1, (const int64_t[]){1});
        if (!x || !y)
            return NULL;
    }
    int64_t n = x->dims[0], c = x->dims[1];
    kiln_tensor *logp = softmax_impl(g, fn, x, 1, true);
    if (!logp)
        return NULL;
    kiln_tensor *classes = ir_node_new(g, IR_ARANGE, y->dtype, 1, &c, 0, NULL);
    if (classes) {
        classes->value = 0.0;
        classes->value2 = 1.0;
    }
    kiln_tensor *col = fe_reshape_raw(g, y, 2, (const int64_t[]){n, 1});
    kiln_tensor *mask = (classes && col) ? kiln_eq(g, col, classes) : NULL;
    kiln_tensor *picked = kiln_where(g, mask, logp, konst(g, logp->dtype, 0.0));
    kiln_tensor *nll = kiln_neg(g, kiln_sum(g, picked, 1, false));
    /* ignore_index (PyTorch's default -100): such a label picks no class (its
     * nll is 0) and does not count in the mean, sum(nll) / (labels kept): nan
     * when none is. Any other label outside [0, C) stops the run with an index
     * error: gathering the labels from C zeros checks them and adds nothing. */
    kiln_tensor *kept = kiln_ne(g, y, fe_full_raw(g, y->dtype, 1, &n, (double)ignore_index));
    if (ignore_index >= 0) /* it names a class: those rows picked it, and must not count */
        nll = kiln_where(g, kept, nll, konst(g, logp->dtype, 0.0));
    if (smoothing > 0) { /* (1 - e) nll + e * mean over classes of -log p, kept rows only */
        kiln_tensor *uniform =
            kiln_div(g, kiln_neg(g, kiln_sum(g, logp, 1, false)), konst(g, logp->dtype, (double)c));
        nll = kiln_add(g, kiln_mul(g, nll, konst(g, logp->dtype, 1 - smoothing)),
                       kiln_mul(g, kiln_where(g, kept, uniform, konst(g, logp->dtype, 0.0)),
                                konst(g, logp->dtype, smoothing)));
    }
    kiln_tensor *ids = kiln_where(g, kept, y, fe_full_raw(g, y->dtype, 1, &n, 0.0));
    kiln_tensor *zeros = fe_full_raw(g, logp->dtype, 1, &c, 0.0);
    kiln_tensor *check = NULL;
    if (zeros && ids) {
        kiln_tensor *in[2] = {zeros, ids};
        if ((check = ir_node_new(g, IR_GATHER, logp->dtype, 1, &n, 2, in)))
            check->axis = 0;
    }
    nll = check ? kiln_add(g, nll, check) : NULL;
    kiln_tensor *count = kiln_sum(g, kiln_cast(g, kept, logp->dtype), KILN_ALL, false);
    return kiln_div(g, kiln_sum(g, nll, KILN_ALL, false), count);
}

kiln_tensor *kiln_cross_entropy(kiln_graph *g, kiln_tensor *logits, kiln_tensor *labels)
{
    return cross_entropy(g, __func__, logits, labels, IGNORE_INDEX, 0);
}

kiln_tensor *kiln_cross_entropy_ex(kiln_graph *g, kiln_tensor *logits, kiln_tensor *labels,
                                   int64_t ignore_index, double label_smoothing)
{
    return cross_entropy(g, __func__, logits, labels, ignore_index, label_smoothing);
}
