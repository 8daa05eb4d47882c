/*
 * conv.c - convolution and pooling (NCHW), as PyTorch's F.conv2d,
 * F.max_pool2d, F.avg_pool2d and F.adaptive_avg_pool2d, with their error texts.
 *
 *   conv2d   (conv1d: over a height of 1) pad, then one conv node (kiln_ops.def), which the graph
 *            keeps whole so that its VJP is again a conv (passes/autodiff.c) and the interpreter
 *            runs it directly; before fusion passes/decompose.c spells it as fe_conv_gemm: the
 *            padded input's kH x kW taps (strided slices, stacked: views the GEMM reads in place,
 *            no im2col), one batched matmul per group against the weight as [O/g, C/g*kH*kW];
 *            then the bias.
 *   pooling  built from existing ops: a window that tiles the input (kernel == stride, no
 *            padding) is a reshape and a reduction over the window; any other is the same taps
 *            and a max (padding -inf; its gradient to the window's first maximum: window_max) or
 *            a mean (padding 0, count_include_pad) over them; adaptive windows
 *            [floor(i H/o), ceil((i+1) H/o)): the reshape when o divides the size (global pooling
 *            included), else one mean per output row and column, concatenated.
 * A 3-D (unbatched) input gets a batch axis of 1 and loses it at the end.
 */
#include "frontend/fe.h"

#include <math.h>
#include <stdio.h>

/* "[2, 4, 5, 5]" */
static void dims_str(char *out, size_t cap, const kiln_tensor *t)
{
    size_t n = (size_t)snprintf(out, cap, "[");
    for (int d = 0; d < t->rank && n < cap; d++)
        n += (size_t)snprintf(out + n, cap - n, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
    if (n < cap)
        snprintf(out + n, cap - n, "]");
}

/* The input as 4-D: a 3-D one gains a batch axis (*unbatched). */
static kiln_tensor *batched(kiln_graph *g, kiln_tensor *x, bool *unbatched)
{
    *unbatched = x->rank == 3;
    return *unbatched ? kiln_unsqueeze(g, x, 0) : x;
}

static kiln_tensor *unbatch(kiln_graph *g, kiln_tensor *y, bool unbatched)
{
    return unbatched && y ? kiln_squeeze(g, y, 0) : y;
}

/* x [N, C, H, W] (padded) -> its taps [N, C, kh*kw, oh, ow]: tap (i, j) is
 * x[:, :, i*dh + sh*a, j*dw + sw*b] for output (a, b). Nested: a stack over
 * i of stacks over j, whose offsets in x are evenly spaced at each level, so
 * a matmul reads the taps in place (passes/fuse.c: an implicit GEMM). */
static kiln_tensor *taps(kiln_graph *g, kiln_tensor *x, const int64_t k[2], const int64_t s[2],
                         const int64_t d[2], const int64_t o[2], bool nested)
{
    if (nested && k[0] * k[1] > 1) {
        kiln_tensor **t = ir_alloc(sizeof *t * (size_t)(k[0] + k[1]));
        if (!t)
            return fe_fail(g, KILN_ERR_NOMEM, "kiln_conv2d", "out of memory");
        kiln_tensor **row = t + k[0];
        for (int64_t i = 0; i < k[0]; i++) {
            kiln_tensor *a = kiln_slice(g, x, 2, i * d[0], i * d[0] + s[0] * (o[0] - 1) + 1, s[0]);
            for (int64_t j = 0; j < k[1]; j++)
                row[j] = kiln_slice(g, a, 3, j * d[1], j * d[1] + s[1] * (o[1] - 1) + 1, s[1]);
            t[i] = kiln_stack(g, (int)k[1], row, 2); /* [N, C, kw, oh, ow] */
        }
        kiln_tensor *r = kiln_stack(g, (int)k[0], t, 2); /* [N, C, kh, kw, oh, ow] */
        ir_free(t);
        return r ? kiln_reshape(g, r, 5,
                                (const int64_t[]){r->dims[0], r->dims[1], k[0] * k[1], o[0], o[1]})
                 : NULL;
    }
    int n = (int)(k[0] * k[1]);
    kiln_tensor **t = ir_alloc(sizeof *t * (size_t)n);
    if (!t)
        return fe_fail(g, KILN_ERR_NOMEM, "kiln_conv2d", "out of memory");
    for (int64_t i = 0; i < k[0]; i++)
        for (int64_t j = 0; j < k[1]; j++) {
            kiln_tensor *a = kiln_slice(g, x, 2, i * d[0], i * d[0] + s[0] * (o[0] - 1) + 1, s[0]);
            t[i * k[1] + j] = kiln_slice(g, a, 3, j * d[1], j * d[1] + s[1] * (o[1] - 1) + 1, s[1]);
        }
    kiln_tensor *r = kiln_stack(g, n, t, 2);
    ir_free(t);
    return r;
}

static int64_t or_default(int64_t v, int64_t dflt)
{
    return v ? v : dflt;
}

/* "(2 x 2)" / "(2)": sizes v of the sd spatial axes, as PyTorch prints them. */
static void sizes_str(char *out, size_t cap, int sd, const int64_t *v)
{
    if (sd == 2)
        snprintf(out, cap, "(%lld x %lld)", (long long)v[0], (long long)v[1]);
    else
        snprintf(out, cap, "(%lld)", (long long)v[0]);
}

/* F.conv1d (sd 1) and F.conv2d (sd 2): the checks with PyTorch's texts for
 * that rank, then the 2-D computation (a 1-D convolution is a 2-D one over
 * a height of 1; o's first sd entries are the spatial axes'). */
static kiln_tensor *conv(kiln_graph *g, const char *fn, int sd, kiln_tensor *x, kiln_tensor *w,
                         kiln_tensor *b, kiln_conv_opts o)
{
    if (!fe_begin(g, 1, &x) || !fe_begin(g, 1, &w) || (b && !fe_begin(g, 1, &b)))
        return NULL;
    char xs[128], ws[128], bs[128];
    dims_str(xs, sizeof xs, x);
    dims_str(ws, sizeof ws, w);
    if (x->rank != sd + 1 && x->rank != sd + 2)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Expected %dD (unbatched) or %dD (batched) input to conv%dd, but got input "
                       "of size: %s",
                       sd + 1, sd + 2, sd, xs);
    if (w->rank != sd + 2) /* PyTorch words it from the weight's side */
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Expected %d-dimensional input for %d-dimensional weight %s, but got "
                       "%d-dimensional input of size %s instead",
                       w->rank, w->rank, ws, x->rank, xs);
    /* the 2-D parameters: a 1-D convolution runs over a height of 1 */
    int64_t s[2] = {1, 1}, p[2] = {0, 0}, d[2] = {1, 1}, k[2] = {1, 1}, hw[2] = {1, 1};
    int at = x->rank - sd - 1; /* x's channel axis */
    for (int a = 0; a < sd; a++) {
        s[2 - sd + a] = or_default(o.stride[a], 1);
        p[2 - sd + a] = o.padding[a];
        d[2 - sd + a] = or_default(o.dilation[a], 1);
        k[2 - sd + a] = w->dims[2 + a];
        hw[2 - sd + a] = x->dims[at + 1 + a];
    }
    int64_t groups = or_default(o.groups, 1);
    if (s[0] < 0 || s[1] < 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "non-positive stride is not supported");
    if (p[0] < 0 || p[1] < 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "negative padding is not supported");
    if (d[0] < 0 || d[1] < 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "non-positive dilation is not supported");
    if (groups < 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "non-positive groups is not supported");
    if (!ir_dtype_is_float(x->dtype))
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"slow_conv%dd_cpu\" not implemented for '%s'", sd,
                       ir_dtype_torch(x->dtype));
    const kiln_tensor *other = w->dtype != x->dtype ? w : b && b->dtype != x->dtype ? b : NULL;
    if (other)
        return fe_fail(g, KILN_ERR_DTYPE, fn, "expected scalar type %s but found %s",
                       ir_dtype_torch(x->dtype), ir_dtype_torch(other->dtype));
    int64_t n = at ? x->dims[0] : 1, c = x->dims[at], out = w->dims[0], cg = w->dims[1];
    if (out % groups != 0)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Given groups=%lld, expected weight to be divisible by %lld at dimension 0, "
                       "but got weight of size [%s] instead",
                       (long long)groups, (long long)groups, ws);
    if (cg * groups != c) {
        char in4[160];
        snprintf(in4, sizeof in4, "%s", xs);
        if (!at) /* PyTorch names the batched shape */
            snprintf(in4, sizeof in4, "[1, %s", xs + 1);
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Given groups=%lld, weight of size %s, expected input%s to have %lld "
                       "channels, but got %lld channels instead",
                       (long long)groups, ws, in4, (long long)(cg * groups), (long long)c);
    }
    if (b && (b->rank != 1 || b->dims[0] != out)) {
        dims_str(bs, sizeof bs, b);
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Given weight of size %s, expected bias to be 1-dimensional with %lld "
                       "elements, but got bias of size %s instead",
                       ws, (long long)out, bs);
    }
    int64_t oh[2], padded[2], span[2];
    for (int a = 0; a < 2; a++) {
        padded[a] = hw[a] + 2 * p[a];
        span[a] = d[a] * (k[a] - 1) + 1;
        oh[a] = padded[a] < span[a] ? 0 : (padded[a] - span[a]) / s[a] + 1;
    }
    if (padded[0] < span[0] || padded[1] < span[1]) {
        char ps[64], ks[64];
        sizes_str(ps, sizeof ps, sd, padded + 2 - sd);
        sizes_str(ks, sizeof ks, sd, span + 2 - sd);
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Calculated padded input size per channel: %s. Kernel size: %s. Kernel "
                       "size can't be greater than actual input size",
                       ps, ks);
    }
    /* as 2-D: x [n, c, h, w] (padded), w [out, cg, kh, kw]: one conv node, kept whole for
     * autodiff and decomposed into the implicit GEMM (fe_conv_gemm) before fusion */
    kiln_tensor *x4 = kiln_reshape(g, x, 4, (const int64_t[]){n, c, hw[0], hw[1]});
    kiln_tensor *w4 = kiln_reshape(g, w, 4, (const int64_t[]){out, cg, k[0], k[1]});
    if (p[0] || p[1])
        x4 = kiln_pad(g, x4, (const int64_t[]){0, 0, p[0], p[1]},
                      (const int64_t[]){0, 0, p[0], p[1]}, 0);
    kiln_tensor *y = ir_conv_new(g, x4, w4, s, d, groups);
    if (b)
        y = kiln_add(g, y, kiln_reshape(g, b, 3, (const int64_t[]){out, 1, 1}));
    /* back to the input's rank: [N,] O, spatial... */
    int64_t dims[4], r = 0;
    if (at)
        dims[r++] = n;
    dims[r++] = out;
    for (int a = 2 - sd; a < 2; a++)
        dims[r++] = oh[a];
    return kiln_reshape(g, y, (int)r, dims);
}

kiln_tensor *fe_conv_columns(kiln_graph *g, kiln_tensor *xp, const kiln_tensor *conv)
{
    const int64_t *k = conv->in[1]->dims + 2, *o = conv->dims + 2;
    kiln_tensor *t = taps(g, xp, k, conv->step + 2, conv->dilation + 2, o, true);
    int64_t kk = conv->in[1]->dims[1] * k[0] * k[1];
    return kiln_reshape(g, t, 4, (const int64_t[]){xp->dims[0], conv->groups, kk, o[0] * o[1]});
}

kiln_tensor *fe_conv_gemm(kiln_graph *g, const kiln_tensor *conv)
{
    kiln_tensor *w = conv->in[1];
    int64_t groups = conv->groups;
    kiln_tensor *cols = fe_conv_columns(g, conv->in[0], conv);
    kiln_tensor *wm = kiln_reshape(
        g, w, 3,
        (const int64_t[]){groups, w->dims[0] / groups, w->dims[1] * w->dims[2] * w->dims[3]});
    kiln_tensor *y = kiln_matmul(g, wm, cols); /* [N, groups, O/g, oh*ow] */
    return kiln_reshape(g, y, 4, conv->dims);
}

kiln_tensor *kiln_conv2d(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                         kiln_conv_opts o)
{
    return conv(g, __func__, 2, x, w, b, o);
}

kiln_tensor *kiln_conv1d(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                         kiln_conv_opts o)
{
    return conv(g, __func__, 1, x, w, b, o);
}

/* ---- pooling ----------------------------------------------------------------- */

typedef enum { POOL_MAX, POOL_AVG } pool_kind;

/* The max of w over its window axis, as F.max_pool2d: the gradient goes to
 * the window's first maximum (the index max_pool2d returns), not split
 * between tied maxima as amax's; it is sum(where(i == argmax, w, 0)), whose
 * gradient is one select. Integers (no gradient) take the plain max. */
static kiln_tensor *window_max(kiln_graph *g, kiln_tensor *w, int axis)
{
    if (!ir_dtype_is_float(w->dtype))
        return kiln_max(g, w, axis, false);
    int64_t dims[KILN_MAX_RANK];
    int rank = w->rank - axis;
    for (int a = 0; a < rank; a++)
        dims[a] = a ? 1 : w->dims[axis];
    kiln_tensor *i = kiln_arange(g, KILN_I64, 0, (double)w->dims[axis], 1);
    kiln_tensor *first = kiln_eq(g, kiln_reshape(g, i, rank, dims), kiln_argmax(g, w, axis, true));
    return kiln_sum(g, kiln_where(g, first, w, kiln_scalar(g, 0)), axis, false);
}

/* The pooled input x4 [N, C, H, W] when the windows tile it (kernel ==
 * stride, no padding): [N, C, o0, k0, o1, k1] reduced over axes 3 and 5. */
static kiln_tensor *tiled(kiln_graph *g, kiln_tensor *x4, pool_kind kind, const int64_t k[2],
                          const int64_t o[2])
{
    kiln_tensor *x = x4;
    if (o[0] * k[0] != x->dims[2]) /* floor mode drops the last rows */
        x = kiln_slice(g, x, 2, 0, o[0] * k[0], 1);
    if (o[1] * k[1] != x4->dims[3])
        x = kiln_slice(g, x, 3, 0, o[1] * k[1], 1);
    x = kiln_reshape(g, x, 6, (const int64_t[]){x4->dims[0], x4->dims[1], o[0], k[0], o[1], k[1]});
    if (kind == POOL_MAX) { /* the window on one axis: [N, C, o0, o1, k0*k1] */
        x = kiln_permute(g, x, (const int[]){0, 1, 2, 4, 3, 5});
        x = kiln_reshape(g, x, 5,
                         (const int64_t[]){x4->dims[0], x4->dims[1], o[0], o[1], k[0] * k[1]});
        return window_max(g, x, 4);
    }
    return kiln_mean_axes(g, x, 2, (const int[]){3, 5}, false);
}

static kiln_tensor *pool2d(kiln_graph *g, const char *fn, pool_kind kind, kiln_tensor *x,
                           int64_t kernel, int64_t stride, int64_t padding)
{
    const char *name = kind == POOL_MAX ? "max_pool2d" : "avg_pool2d";
    if (!fe_begin(g, 1, &x))
        return NULL;
    if ((x->rank != 3 && x->rank != 4) || ir_numel(x) == 0)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "non-empty 3D or 4D (batch mode) tensor expected for input");
    if (kind == POOL_AVG && !ir_dtype_is_float(x->dtype))
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"%s\" not implemented for '%s'", name,
                       ir_dtype_torch(x->dtype));
    if (x->dtype == KILN_BOOL)
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"%s\" not implemented for 'Bool'", name);
    if (kernel <= 0)
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "%s: kernel_size must be greater than zero, but got kH: %lld kW: %lld", name,
                       (long long)kernel, (long long)kernel);
    stride = stride ? stride : kernel;
    if (stride < 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "stride should not be zero");
    if (padding < 0 || padding > kernel / 2)
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "pad should be at most half of kernel size, but got pad=%lld and "
                       "kernel_size=%lld",
                       (long long)padding, (long long)kernel);
    bool unb;
    kiln_tensor *x4 = batched(g, x, &unb);
    int64_t k[2] = {kernel, kernel}, s[2] = {stride, stride}, d[2] = {1, 1}, o[2];
    for (int a = 0; a < 2; a++)
        o[a] = x4->dims[2 + a] + 2 * padding < kernel
                   ? 0 /* PyTorch's floor division */
                   : (x4->dims[2 + a] + 2 * padding - kernel) / stride + 1;
    if (o[0] < 1 || o[1] < 1 || x4->dims[2] + 2 * padding < kernel ||
        x4->dims[3] + 2 * padding < kernel)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "Given input size: (%lldx%lldx%lld). Calculated output size: "
                       "(%lldx%lldx%lld). Output size is too small",
                       (long long)x4->dims[1], (long long)x4->dims[2], (long long)x4->dims[3],
                       (long long)x4->dims[1], (long long)(o[0] > 0 ? o[0] : 0),
                       (long long)(o[1] > 0 ? o[1] : 0));
    if (stride == kernel && padding == 0)
        return unbatch(g, tiled(g, x4, kind, k, o), unb);
    if (padding) {
        double fill = kind == POOL_AVG              ? 0
                      : ir_dtype_is_float(x->dtype) ? -(double)INFINITY
                      : x->dtype == KILN_I32        ? (double)INT32_MIN
                                                    : (double)INT64_MIN;
        x4 = kiln_pad(g, x4, (const int64_t[]){0, 0, padding, padding},
                      (const int64_t[]){0, 0, padding, padding}, fill);
    }
    kiln_tensor *t = taps(g, x4, k, s, d, o, false);
    kiln_tensor *y = kind == POOL_MAX ? window_max(g, t, 2) : kiln_mean(g, t, 2, false);
    return unbatch(g, y, unb);
}

kiln_tensor *kiln_max_pool2d(kiln_graph *g, kiln_tensor *x, int64_t kernel, int64_t stride,
                             int64_t padding)
{
    return pool2d(g, __func__, POOL_MAX, x, kernel, stride, padding);
}

kiln_tensor *kiln_avg_pool2d(kiln_graph *g, kiln_tensor *x, int64_t kernel, int64_t stride,
                             int64_t padding)
{
    return pool2d(g, __func__, POOL_AVG, x, kernel, stride, padding);
}

/* The means of x over the windows [floor(i n/o), ceil((i+1) n/o)) of axis a,
 * one per output index, concatenated along a. */
static kiln_tensor *adaptive_axis(kiln_graph *g, kiln_tensor *x, int a, int64_t o)
{
    int64_t n = x->dims[a];
    kiln_tensor **parts = ir_alloc(sizeof *parts * (size_t)o);
    if (!parts)
        return fe_fail(g, KILN_ERR_NOMEM, "kiln_adaptive_avg_pool2d", "out of memory");
    for (int64_t i = 0; i < o; i++) {
        int64_t lo = i * n / o, hi = ((i + 1) * n + o - 1) / o;
        parts[i] = kiln_mean(g, kiln_slice(g, x, a, lo, hi, 1), a, true);
    }
    kiln_tensor *r = kiln_concat(g, (int)o, parts, a);
    ir_free(parts);
    return r;
}

kiln_tensor *kiln_adaptive_avg_pool2d(kiln_graph *g, kiln_tensor *x, int64_t out_h, int64_t out_w)
{
    const char *fn = __func__;
    if (!fe_begin(g, 1, &x))
        return NULL;
    char xs[128];
    dims_str(xs, sizeof xs, x);
    if (x->rank != 3 && x->rank != 4)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got %s", xs);
    if (!ir_dtype_is_float(x->dtype))
        return fe_fail(g, KILN_ERR_DTYPE, fn, "\"adaptive_avg_pool2d\" not implemented for '%s'",
                       ir_dtype_torch(x->dtype));
    if (out_h <= 0 || out_w <= 0)
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "adaptive_avg_pool2d(): output_size must be positive, but got [%lld, %lld]",
                       (long long)out_h, (long long)out_w);
    bool unb;
    kiln_tensor *x4 = batched(g, x, &unb);
    for (int a = 2; a < 4; a++)
        if (x4->dims[a] == 0)
            return fe_fail(g, KILN_ERR_SHAPE, fn,
                           "adaptive_avg_pool2d(): Expected input to have non-zero size for "
                           "non-batch dimensions, but input has sizes %s with dimension %d being "
                           "empty",
                           xs, a - (unb ? 1 : 0));
    int64_t h = x4->dims[2], w = x4->dims[3];
    kiln_tensor *y;
    if (h % out_h == 0 && w % out_w == 0)
        y = tiled(g, x4, POOL_AVG, (const int64_t[]){h / out_h, w / out_w},
                  (const int64_t[]){out_h, out_w});
    else
        y = adaptive_axis(g, adaptive_axis(g, x4, 2, out_h), 3, out_w);
    return unbatch(g, y, unb);
}
