/*
 * norm.c - batch norm, group norm and scaled dot-product attention, as
 * PyTorch's F.batch_norm, F.group_norm and F.scaled_dot_product_attention,
 * built from existing ops (autodiff and every target know them already).
 *
 * Batch norm in training normalizes with the batch's statistics (biased
 * variance) over every axis but the channels (axis 1) and registers the
 * update of the running statistics, momentum-weighted with the unbiased
 * variance as nn.BatchNorm2d does, as an assign that every later entry whose
 * outputs depend on the result applies after its outputs (fe_add_update,
 * kiln_entry). The running statistics are read through kiln_detach: like
 * PyTorch's buffers they never get a gradient, so a train step leaves them
 * to the update.
 */
#include "frontend/fe.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static kiln_tensor *konst(kiln_graph *g, kiln_dtype dt, double v)
{
    return fe_convert(g, kiln_scalar(g, v), dt);
}

/* t [C] as [1, C, 1, ...] against x's rank. */
static kiln_tensor *per_channel(kiln_graph *g, kiln_tensor *t, int rank)
{
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0; d < rank; d++)
        dims[d] = d == 1 ? t->dims[0] : 1;
    return kiln_reshape(g, t, rank, dims);
}

/* A [C] operand of channel count c: NULL is fine; else PyTorch's text. */
static bool channel_vec(kiln_graph *g, const char *fn, const char *what, const kiln_tensor *t,
                        int64_t c, kiln_dtype dt)
{
    if (!t)
        return true;
    if (t->rank != 1 || t->dims[0] != c) {
        fe_fail(g, KILN_ERR_SHAPE, fn, "%s should contain %lld elements not %lld", what,
                (long long)c, (long long)ir_numel(t));
        return false;
    }
    if (t->dtype != dt) {
        fe_fail(g, KILN_ERR_DTYPE, fn, "expected scalar type %s but found %s", ir_dtype_torch(dt),
                ir_dtype_torch(t->dtype));
        return false;
    }
    return true;
}

kiln_tensor *kiln_batch_norm(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                             kiln_tensor *running_mean, kiln_tensor *running_var, bool training,
                             double momentum, double eps)
{
    const char *fn = __func__;
    kiln_tensor *opt[4] = {w, b, running_mean, running_var};
    if (!fe_begin(g, 1, &x))
        return NULL;
    for (int i = 0; i < 4; i++)
        if (opt[i] && !fe_begin(g, 1, &opt[i]))
            return NULL;
    if (x->rank < 2) {
        char s[128];
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Expected 2D or more input (got %dD input of size %s)", x->rank,
                       ir_shape_str(s, sizeof s, x->rank, x->dims));
    }
    if (!ir_dtype_is_float(x->dtype))
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"batch_norm\" not implemented for '%s'",
                       ir_dtype_torch(x->dtype));
    int64_t c = x->dims[1];
    if (!channel_vec(g, fn, "weight", w, c, x->dtype) ||
        !channel_vec(g, fn, "bias", b, c, x->dtype) ||
        !channel_vec(g, fn, "running_mean", running_mean, c, x->dtype) ||
        !channel_vec(g, fn, "running_var", running_var, c, x->dtype))
        return NULL;
    if (!running_mean != !running_var)
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "running_mean and running_var must be given together");
    for (int i = 2; i < 4; i++)
        if (opt[i] && opt[i]->op != IR_PARAM)
            return fe_fail(g, KILN_ERR_INVALID, fn,
                           "%s must be a param (the training update assigns it)",
                           i == 2 ? "running_mean" : "running_var");
    if (!training && !running_mean)
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "running_mean and running_var must be defined in evaluation mode");
    int axes[KILN_MAX_RANK], na = 0;
    for (int d = 0; d < x->rank; d++)
        if (d != 1)
            axes[na++] = d;
    int64_t count = ir_numel(x) / (c ? c : 1);
    if (training && count <= 1) {
        char s[128];
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "Expected more than 1 value per channel when training, got input size "
                       "torch.Size(%s)",
                       ir_shape_str(s, sizeof s, x->rank, x->dims));
    }
    kiln_tensor *mean, *var;
    if (training) {
        mean = kiln_mean_axes(g, x, na, axes, true);
        kiln_tensor *xc = kiln_sub(g, x, mean);
        var = kiln_mean_axes(g, kiln_mul(g, xc, xc), na, axes, true);
    } else {
        mean = per_channel(g, kiln_detach(g, running_mean), x->rank);
        var = per_channel(g, kiln_detach(g, running_var), x->rank);
    }
    kiln_tensor *y =
        kiln_mul(g, kiln_sub(g, x, mean), kiln_rsqrt(g, kiln_add(g, var, konst(g, x->dtype, eps))));
    if (w)
        y = kiln_mul(g, y, per_channel(g, w, x->rank));
    if (b)
        y = kiln_add(g, y, per_channel(g, b, x->rank));
    if (!y || !training || !running_mean)
        return y;
    /* running = (1 - momentum) running + momentum batch (unbiased variance) */
    kiln_tensor *bm = kiln_reshape(g, kiln_detach(g, mean), 1, &c);
    kiln_tensor *bv = kiln_mul(g, kiln_reshape(g, kiln_detach(g, var), 1, &c),
                               konst(g, x->dtype, (double)count / (double)(count - 1)));
    kiln_tensor *keep = konst(g, x->dtype, 1 - momentum), *take = konst(g, x->dtype, momentum);
    kiln_tensor *nm =
        kiln_add(g, kiln_mul(g, kiln_detach(g, running_mean), keep), kiln_mul(g, bm, take));
    kiln_tensor *nv =
        kiln_add(g, kiln_mul(g, kiln_detach(g, running_var), keep), kiln_mul(g, bv, take));
    kiln_tensor *am = kiln_assign(g, running_mean, nm), *av = kiln_assign(g, running_var, nv);
    if (!am || !av || !fe_add_update(g, y, am) || !fe_add_update(g, y, av))
        return NULL;
    return y;
}

kiln_tensor *kiln_group_norm(kiln_graph *g, kiln_tensor *x, int64_t groups, kiln_tensor *w,
                             kiln_tensor *b, double eps)
{
    const char *fn = __func__;
    if (!fe_begin(g, 1, &x) || (w && !fe_begin(g, 1, &w)) || (b && !fe_begin(g, 1, &b)))
        return NULL;
    char s[128];
    if (x->rank < 2)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Expected at least 2 dimensions for input tensor but received %d", x->rank);
    if (!ir_dtype_is_float(x->dtype))
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"group_norm\" not implemented for '%s'",
                       ir_dtype_torch(x->dtype));
    int64_t c = x->dims[1];
    if (groups <= 0 || c % groups != 0)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Expected number of channels in input to be divisible by num_groups, but "
                       "got input of shape %s and num_groups=%lld",
                       ir_shape_str(s, sizeof s, x->rank, x->dims), (long long)groups);
    if (!channel_vec(g, fn, "weight", w, c, x->dtype) ||
        !channel_vec(g, fn, "bias", b, c, x->dtype))
        return NULL;
    int64_t n = x->dims[0], per = ir_numel(x) / (n ? n : 1) / groups;
    kiln_tensor *xg = kiln_reshape(g, x, 3, (const int64_t[]){n, groups, per});
    kiln_tensor *mean = kiln_mean(g, xg, 2, true);
    kiln_tensor *xc = kiln_sub(g, xg, mean);
    kiln_tensor *var = kiln_mean(g, kiln_mul(g, xc, xc), 2, true);
    kiln_tensor *y = kiln_mul(g, xc, kiln_rsqrt(g, kiln_add(g, var, konst(g, x->dtype, eps))));
    y = kiln_reshape(g, y, x->rank, x->dims);
    if (w)
        y = kiln_mul(g, y, per_channel(g, w, x->rank));
    if (b)
        y = kiln_add(g, y, per_channel(g, b, x->rank));
    return y;
}

kiln_tensor *kiln_scaled_dot_product_attention(kiln_graph *g, kiln_tensor *q, kiln_tensor *k,
                                               kiln_tensor *v, kiln_tensor *mask, bool causal,
                                               double scale)
{
    const char *fn = __func__;
    kiln_tensor *qkv[3] = {q, k, v};
    if (!fe_begin(g, 3, qkv) || (mask && !fe_begin(g, 1, &mask)))
        return NULL;
    if (mask && causal)
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "_scaled_dot_product_attention: Explicit attn_mask should not be set when "
                       "is_causal=True");
    for (int i = 0; i < 3; i++)
        if (qkv[i]->rank < 2)
            return fe_fail(g, KILN_ERR_SHAPE, fn,
                           "%s must have at least 2 dimensions (..., L, E), but got %dD",
                           i == 0   ? "query"
                           : i == 1 ? "key"
                                    : "value",
                           qkv[i]->rank);
    if (!ir_dtype_is_float(q->dtype) || k->dtype != q->dtype || v->dtype != q->dtype)
        return fe_fail(g, KILN_ERR_DTYPE, fn,
                       "Expected query, key, and value to have the same floating dtype, but got "
                       "query.dtype: %s key.dtype: %s and value.dtype: %s instead.",
                       ir_dtype_torch(q->dtype), ir_dtype_torch(k->dtype),
                       ir_dtype_torch(v->dtype));
    if (mask && mask->dtype != KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, fn,
                       "attn_mask must be a bool tensor (true: attend), but got %s",
                       ir_dtype_torch(mask->dtype));
    int64_t e = q->dims[q->rank - 1], l = q->dims[q->rank - 2], s = k->dims[k->rank - 2];
    if (k->dims[k->rank - 1] != e)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "query and key must have the same embedding size, but got %lld and %lld",
                       (long long)e, (long long)k->dims[k->rank - 1]);
    if (v->dims[v->rank - 2] != s)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "key and value must have the same sequence length, but got %lld and %lld",
                       (long long)s, (long long)v->dims[v->rank - 2]);
    double sc = scale != 0 ? scale : 1 / sqrt((double)e);
    /* one fused op (flash-attention style: an online softmax per row, no
     * score matrix; the mask, if any, broadcast to (..., T, S) and read in
     * place) when q, k and v have the same batch axes; else the composite
     * below, which gives the same numbers within 1e-5 */
    bool same =
        q->rank == k->rank && k->rank == v->rank && sc > 0 && (!mask || mask->rank <= q->rank);
    for (int d = 0; same && d < q->rank - 2; d++)
        same = q->dims[d] == k->dims[d] && k->dims[d] == v->dims[d];
    if (same) {
        int64_t dims[KILN_MAX_RANK];
        memcpy(dims, q->dims, sizeof(int64_t) * (size_t)q->rank);
        kiln_tensor *ops[4] = {q, k, v, NULL};
        if (mask) { /* the scores (..., T, S) + the mask, as PyTorch words it */
            dims[q->rank - 1] = s;
            for (int d = 0; d < mask->rank; d++) {
                int64_t want = dims[q->rank - mask->rank + d], have = mask->dims[d];
                if (have != want && have != 1)
                    return fe_fail(g, KILN_ERR_SHAPE, fn,
                                   "The size of tensor a (%lld) must match the size of tensor b "
                                   "(%lld) at non-singleton dimension %d",
                                   (long long)want, (long long)have, q->rank - mask->rank + d);
            }
            if (!(ops[3] = fe_expand_to(g, mask, q->rank, dims)))
                return NULL;
        }
        dims[q->rank - 1] = v->dims[v->rank - 1];
        kiln_tensor *t = ir_node_new(g, IR_SDPA, q->dtype, q->rank, dims, mask ? 4 : 3, ops);
        if (t) {
            t->value = sc;
            t->causal = causal;
        }
        return t;
    }
    kiln_tensor *scores =
        kiln_mul(g, kiln_matmul(g, q, kiln_transpose(g, k, -2, -1)), konst(g, q->dtype, sc));
    bool safe = mask != NULL; /* a row may attend to nothing: 0 there, as PyTorch */
    if (causal)               /* attend to positions j <= i (top-left aligned, as PyTorch) */
        mask = kiln_tril(g, kiln_ones(g, KILN_BOOL, 2, (const int64_t[]){l, s}), 0);
    if (mask)
        scores = kiln_where(g, mask, scores, konst(g, q->dtype, -(double)INFINITY));
    kiln_tensor *p = kiln_softmax(g, scores, -1);
    if (safe)
        p = kiln_where(g, mask, p, konst(g, q->dtype, 0));
    return kiln_matmul(g, p, v);
}
