/*
 * autodiff.c - reverse-mode autodiff (kiln_grad): one VJP rule per primitive.
 *
 * kiln_grad appends the backward nodes to the same graph, built from ordinary
 * primitives (raw nodes of the operand's dtype and shape, so no promotion or
 * broadcasting sneaks in), so the backward graph can itself be differentiated.
 * Composites (softmax, mean, layer_norm, ...) get gradients through their
 * primitives; broadcasting is an EXPAND node whose rule sums back.
 *
 * The sweep: dep[i] = node i depends (through differentiable, floating-point
 * nodes) on some wrt; reach[i] = y depends on node i. Nodes with both get a
 * gradient, visited in reverse id order from y, accumulated over fan-out.
 *
 * Non-differentiable points follow PyTorch: relu'(0) = 0, abs'(0) = 0,
 * max/min reductions and maximum/minimum split the gradient evenly on ties,
 * pow's exponent gradient is 0 where the base is 0 and the exponent >= 0.
 * A wrt that y does not depend on gets zeros of its shape and dtype.
 */
#include "frontend/fe.h"
#include "passes/passes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* sdpa differentiates through its fused backward ops (no score matrix kept)
 * from this many scores (batch x T x S) on, or KILN_SDPA_FUSED_MIN's: below
 * it the ordinary nodes are faster (batched GEMMs; the fused kernels
 * recompute each score up to five times), above it the score matrices and
 * their gradients would take gigabytes. */
enum { SDPA_FUSED_MIN = 1 << 26 };

/* ---- raw builders: operands share dtype and shape ---------------------------------- */

static kiln_tensor *ad_full(kiln_graph *g, const kiln_tensor *like, double v)
{
    return like ? fe_full_raw(g, like->dtype, like->rank, like->dims, v) : NULL;
}

static kiln_tensor *ad_un(kiln_graph *g, ir_op op, kiln_tensor *a)
{
    return a ? ir_node_new(g, op, a->dtype, a->rank, a->dims, 1, &a) : NULL;
}

static kiln_tensor *ad_bin(kiln_graph *g, ir_op op, kiln_tensor *a, kiln_tensor *b)
{
    if (!a || !b)
        return NULL;
    kiln_tensor *in[2] = {a, b};
    kiln_dtype dt = (ir_ops[op].flags & IR_F_CMP) ? KILN_BOOL : a->dtype;
    return ir_node_new(g, op, dt, a->rank, a->dims, 2, in);
}

static kiln_tensor *ad_where(kiln_graph *g, kiln_tensor *c, kiln_tensor *a, kiln_tensor *b)
{
    if (!c || !a || !b)
        return NULL;
    kiln_tensor *in[3] = {c, a, b};
    return ir_node_new(g, IR_WHERE, a->dtype, a->rank, a->dims, 3, in);
}

static kiln_tensor *ad_mul(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    return ad_bin(g, IR_MUL, a, b);
}

static kiln_tensor *ad_scale(kiln_graph *g, kiln_tensor *a, double v)
{
    return ad_mul(g, a, ad_full(g, a, v));
}

/* where(c, g, 0) */
static kiln_tensor *ad_mask(kiln_graph *g, kiln_tensor *c, kiln_tensor *gr)
{
    return ad_where(g, c, gr, ad_full(g, gr, 0));
}

/* a with its axes permuted: axis d of the result is axis perm[d] of a */
static kiln_tensor *ad_permute(kiln_graph *g, kiln_tensor *a, const int *perm)
{
    if (!a)
        return NULL;
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0; d < a->rank; d++)
        dims[d] = a->dims[perm[d]];
    kiln_tensor *r = ir_node_new(g, IR_PERMUTE, a->dtype, a->rank, dims, 1, &a);
    if (r)
        memcpy(r->perm, perm, sizeof(int) * (size_t)a->rank);
    return r;
}

/* a with its last two axes swapped */
static kiln_tensor *ad_mT(kiln_graph *g, kiln_tensor *a)
{
    if (!a)
        return NULL;
    int perm[KILN_MAX_RANK];
    for (int d = 0; d < a->rank; d++)
        perm[d] = d;
    perm[a->rank - 1] = a->rank - 2;
    perm[a->rank - 2] = a->rank - 1;
    return ad_permute(g, a, perm);
}

/* Whether t is a rank-2 transpose (a permute swapping its two axes). */
static bool is_mT(const kiln_tensor *t)
{
    return t->op == IR_PERMUTE && t->rank == 2 && t->perm[0] == 1 && t->perm[1] == 0;
}

/* a (..., M, K) @ b (..., K, N) */
static kiln_tensor *ad_matmul(kiln_graph *g, kiln_tensor *a, kiln_tensor *b)
{
    if (!a || !b)
        return NULL;
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, a->dims, sizeof(dims));
    dims[a->rank - 1] = b->dims[b->rank - 1];
    kiln_tensor *in[2] = {a, b};
    return ir_node_new(g, IR_MATMUL, a->dtype, a->rank, dims, 2, in);
}

/* The batch axes along which matmul operand x expands its input (a
 * broadcast weight: a convolution's), as bits; 0 when x is not such an expand. */
static uint32_t ad_batch_expanded(const kiln_tensor *x)
{
    uint32_t e = 0;
    for (int d = 0; x->op == IR_EXPAND && d < x->rank; d++)
        if (x->in[0]->dims[d] != x->dims[d]) {
            if (d >= x->rank - 2)
                return 0;
            e |= 1u << d;
        }
    return x->op == IR_EXPAND ? e : 0;
}

/* The sum over batch axes e of lhs @ rhs ([.., p, q] @ [.., q, s]), shaped
 * like x0: one matmul with those axes folded into its k axis (lhs permuted to
 * [other batch.., p, e.., q], rhs to [other batch.., e.., q, s], both
 * reshaped: read in place, passes/fuse.c) instead of a product per batch and
 * a sum over them. */
static kiln_tensor *ad_folded_matmul(kiln_graph *g, uint32_t e, const kiln_tensor *x0,
                                     kiln_tensor *lhs, kiln_tensor *rhs)
{
    if (!lhs || !rhs)
        return NULL;
    int r = lhs->rank, pl[KILN_MAX_RANK], pr[KILN_MAX_RANK], nl = 0, nr = 0;
    int64_t dl[KILN_MAX_RANK], dr[KILN_MAX_RANK], fold = 1;
    for (int d = 0; d < r - 2; d++)
        if (!(e >> d & 1)) {
            dl[nl] = dr[nl] = lhs->dims[d];
            pl[nl++] = pr[nr++] = d;
        }
    int rest = nl;
    pl[nl++] = r - 2;
    for (int d = 0; d < r - 2; d++)
        if (e >> d & 1) {
            pl[nl++] = pr[nr++] = d;
            fold *= lhs->dims[d];
        }
    pl[nl++] = r - 1;
    pr[nr++] = r - 2;
    pr[nr++] = r - 1;
    dl[rest] = lhs->dims[r - 2];
    dl[rest + 1] = dr[rest] = fold * lhs->dims[r - 1];
    dr[rest + 1] = rhs->dims[r - 1];
    kiln_tensor *a = ad_permute(g, lhs, pl), *b = ad_permute(g, rhs, pr);
    a = a ? fe_reshape_raw(g, a, rest + 2, dl) : NULL;
    b = b ? fe_reshape_raw(g, b, rest + 2, dr) : NULL;
    kiln_tensor *m = ad_matmul(g, a, b);
    return m ? fe_reshape_raw(g, m, x0->rank, x0->dims) : NULL;
}

/* sum of gr over the axes where x has size 1 and gr does not (keepdim) */
static kiln_tensor *ad_unexpand(kiln_graph *g, kiln_tensor *gr, const kiln_tensor *x)
{
    if (!gr)
        return NULL;
    uint32_t axes = 0;
    for (int d = 0; d < x->rank; d++)
        if (x->dims[d] != gr->dims[d])
            axes |= 1u << d;
    return axes ? fe_reduce(g, IR_SUM, gr, axes, true, gr->dtype) : gr;
}

/* gr (shape of a slice of x along axis d from begin with step) scattered back */
static kiln_tensor *ad_unslice_axis(kiln_graph *g, kiln_tensor *gr, int d, int64_t begin,
                                    int64_t step, int64_t size)
{
    if (!gr)
        return NULL;
    int64_t n = gr->dims[d];
    if (begin == 0 && (step == 1 || n <= 1) && n == size)
        return gr;
    int64_t len[1] = {n};
    kiln_tensor *ids = ir_node_new(g, IR_ARANGE, KILN_I64, 1, len, 0, NULL);
    if (!ids)
        return NULL;
    ids->value = (double)begin;
    ids->value2 = (double)step;
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, gr->dims, sizeof(dims));
    dims[d] = size;
    kiln_tensor *in[2] = {gr, ids};
    kiln_tensor *r = ir_node_new(g, IR_SCATTER_ADD, gr->dtype, gr->rank, dims, 2, in);
    if (r)
        r->axis = d;
    return r;
}

/* gr's window [begin, begin + x dims) along every axis, step 1 */
static kiln_tensor *ad_window(kiln_graph *g, kiln_tensor *gr, const int64_t *begin,
                              const kiln_tensor *x)
{
    if (!gr)
        return NULL;
    kiln_tensor *r = ir_node_new(g, IR_SLICE, gr->dtype, x->rank, x->dims, 1, &gr);
    if (!r)
        return NULL;
    for (int d = 0; d < x->rank; d++) {
        r->begin[d] = begin[d];
        r->step[d] = 1;
    }
    return r;
}

/* One axis of the transposed convolution, for the input rows y = r + s q of
 * phase r (sub-pixel: each phase is a convolution of stride 1 over the
 * output gradient with its own taps, so no zero of a spread gradient is ever
 * multiplied). Tap i reaches y when s divides y + pb - i d: the taps first +
 * t step (t < n; step = s / gcd(s, d)), read from the gradient dil = d / gcd
 * apart. Correlated with the taps in reverse order, the gradient is placed
 * with its element 0 at `at` in zeros of length len = q + (n - 1) dil. */
typedef struct {
    int64_t q;              /* rows of the phase: r + s q < the input's length */
    int64_t first, n, step; /* its taps (n 0: none reaches it) */
    int64_t dil, at, len;   /* the correlation's dilation and input */
} ad_phase;

static ad_phase ad_phase_of(int64_t r, int64_t s, int64_t d, int64_t k, int64_t pb, int64_t size)
{
    ad_phase ph = {r < size ? (size - r + s - 1) / s : 0, -1, 0, 1, 1, 0, 0};
    int64_t gcd = s, b = d;
    while (b) {
        int64_t m = gcd % b;
        gcd = b;
        b = m;
    }
    ph.step = s / gcd;
    ph.dil = d / gcd;
    for (int64_t i = 0; i < k && ph.first < 0; i++)
        if (((r + pb - i * d) % s + s) % s == 0)
            ph.first = i;
    if (ph.first < 0 || ph.q == 0)
        return ph;
    ph.n = (k - 1 - ph.first) / ph.step + 1;
    int64_t c0 = (r + pb - ph.first * d) / s; /* the gradient row tap `first` reads at q 0 */
    ph.at = (ph.n - 1) * ph.dil - c0;
    ph.len = ph.q + (ph.n - 1) * ph.dil;
    return ph;
}

/* u [N, O, h, w] with element (.., 0, 0) at (at[0], at[1]) of zeros [N, O,
 * len[0], len[1]]: what falls outside is cut first. */
static kiln_tensor *ad_place(kiln_graph *g, kiln_tensor *u, const int64_t at[2],
                             const int64_t len[2])
{
    if (!u)
        return NULL;
    int64_t from[4] = {0, 0, 0, 0}, keep[4] = {u->dims[0], u->dims[1], 0, 0};
    bool cut = false;
    for (int a = 0; a < 2; a++) {
        from[2 + a] = at[a] < 0 ? -at[a] : 0;
        int64_t end = u->dims[2 + a] < len[a] - at[a] ? u->dims[2 + a] : len[a] - at[a];
        keep[2 + a] = end > from[2 + a] ? end - from[2 + a] : 0;
        cut = cut || keep[2 + a] != u->dims[2 + a];
    }
    if (cut) {
        kiln_tensor like = {.rank = 4};
        memcpy(like.dims, keep, sizeof keep);
        u = ad_window(g, u, from, &like);
    }
    kiln_tensor *up =
        u ? ir_node_new(g, IR_PAD, u->dtype, 4,
                        (const int64_t[]){u->dims[0], u->dims[1], len[0], len[1]}, 1, &u)
          : NULL;
    for (int a = 0; up && a < 2; a++) {
        up->begin[2 + a] = at[a] + from[2 + a];
        up->after[2 + a] = len[a] - up->begin[2 + a] - u->dims[2 + a];
    }
    return up;
}

/* wt's taps first + t step along axis (t < n), in reverse order. */
static kiln_tensor *ad_taps_reversed(kiln_graph *g, kiln_tensor *wt, int axis, int64_t first,
                                     int64_t n, int64_t step)
{
    if (!wt || (first == 0 && n == wt->dims[axis] && n == 1))
        return wt;
    kiln_tensor *ids = ir_node_new(g, IR_ARANGE, KILN_I64, 1, &n, 0, NULL);
    if (!ids)
        return NULL;
    ids->value = (double)(first + (n - 1) * step);
    ids->value2 = (double)-step;
    int64_t dims[4];
    memcpy(dims, wt->dims, sizeof dims);
    dims[axis] = n;
    kiln_tensor *in[2] = {wt, ids};
    kiln_tensor *r = ir_node_new(g, IR_GATHER, wt->dtype, 4, dims, 2, in);
    if (r)
        r->axis = axis;
    return r;
}

/* The gradient of conv node t's input for the output's gradient gr
 * [N, O, oh, ow]: the transposed convolution, as one conv of stride 1 per
 * phase (rows r mod sh, columns c mod sw: ad_phase_of; one in all for stride
 * 1) of gr placed in zeros with the phase's taps of the weight flipped and
 * its in and out channels swapped within each group (no column buffer:
 * passes/decompose.c makes each an implicit GEMM), the phases interleaved:
 * dx[y] = sum_i w[i] g[(y + pb - i d) / s]. The result is shaped like x
 * [N, C, H, W]: t's input itself (pb 0), or the input of a zero pad before t
 * (pb: its padding before), whose border gradient is then never computed. */
static kiln_tensor *ad_conv_input_grad(kiln_graph *g, const kiln_tensor *t, kiln_tensor *gr,
                                       const kiln_tensor *x, const int64_t pb[2])
{
    kiln_tensor *w = t->in[1];
    const int64_t *s = t->step + 2, *d = t->dilation + 2, *k = w->dims + 2;
    int64_t n = x->dims[0], c = x->dims[1], o = w->dims[0], cg = w->dims[1], groups = t->groups;
    /* w [groups, O/g, C/g, kh, kw] -> [groups, C/g, O/g, kh, kw] -> [C, O/g, kh, kw] */
    kiln_tensor *wt =
        fe_reshape_raw(g, w, 5, (const int64_t[]){groups, o / groups, cg, k[0], k[1]});
    wt = ad_permute(g, wt, (const int[]){0, 2, 1, 3, 4});
    wt = wt ? fe_reshape_raw(g, wt, 4, (const int64_t[]){groups * cg, o / groups, k[0], k[1]})
            : NULL;
    int64_t qmax[2] = {(x->dims[2] + s[0] - 1) / s[0], (x->dims[3] + s[1] - 1) / s[1]};
    int64_t nph = s[0] * s[1];
    kiln_tensor **ph = ir_calloc(sizeof *ph * (size_t)nph);
    if (!ph)
        return ir_fail(g, KILN_ERR_NOMEM, "kiln_grad: out of memory");
    bool ok = wt != NULL;
    for (int64_t rh = 0; ok && rh < s[0]; rh++)
        for (int64_t rw = 0; ok && rw < s[1]; rw++) {
            ad_phase p[2] = {ad_phase_of(rh, s[0], d[0], k[0], pb[0], x->dims[2]),
                             ad_phase_of(rw, s[1], d[1], k[1], pb[1], x->dims[3])};
            kiln_tensor *y;
            if (p[0].n == 0 || p[1].n == 0) { /* no tap reaches the phase: zeros */
                const int64_t *q = nph > 1 ? qmax : (const int64_t[]){p[0].q, p[1].q};
                y = fe_full_raw(g, gr->dtype, 4, (const int64_t[]){n, c, q[0], q[1]}, 0);
            } else {
                kiln_tensor *up = ad_place(g, gr, (const int64_t[]){p[0].at, p[1].at},
                                           (const int64_t[]){p[0].len, p[1].len});
                kiln_tensor *taps = ad_taps_reversed(g, wt, 2, p[0].first, p[0].n, p[0].step);
                taps = ad_taps_reversed(g, taps, 3, p[1].first, p[1].n, p[1].step);
                y = up && taps ? ir_conv_new(g, up, taps, (const int64_t[]){1, 1},
                                             (const int64_t[]){p[0].dil, p[1].dil}, groups)
                               : NULL;
            }
            bool short_ = y && (y->dims[2] != qmax[0] || y->dims[3] != qmax[1]);
            if (short_ && nph > 1) /* [N, C, qmax_h, 1, qmax_w, 1], zeros past its rows */
                y = ad_place(g, y, (const int64_t[]){0, 0}, qmax);
            if (y && nph > 1)
                y = fe_reshape_raw(g, y, 6, (const int64_t[]){n, c, qmax[0], 1, qmax[1], 1});
            ph[rh * s[1] + rw] = y;
            ok = y != NULL;
        }
    kiln_tensor *dx = ok && nph == 1 ? ph[0] : NULL;
    if (ok && nph > 1) { /* interleaved: the columns' phases, then the rows' */
        kiln_tensor **rows = ir_calloc(sizeof *rows * (size_t)s[0]);
        for (int64_t rh = 0; rows && rh < s[0] && ok; rh++) {
            int64_t dims[6] = {n, c, qmax[0], 1, qmax[1], s[1]};
            rows[rh] =
                s[1] > 1 ? ir_node_new(g, IR_CONCAT, gr->dtype, 6, dims, (int)s[1], ph + rh * s[1])
                         : ph[rh];
            if (rows[rh] && s[1] > 1)
                rows[rh]->axis = 5;
            ok = rows[rh] != NULL;
        }
        int64_t all[6] = {n, c, qmax[0], s[0], qmax[1], s[1]};
        kiln_tensor *il =
            rows && ok ? (s[0] > 1 ? ir_node_new(g, IR_CONCAT, gr->dtype, 6, all, (int)s[0], rows)
                                   : rows[0])
                       : NULL;
        if (il && s[0] > 1)
            il->axis = 3;
        il = il ? fe_reshape_raw(g, il, 4, (const int64_t[]){n, c, qmax[0] * s[0], qmax[1] * s[1]})
                : NULL;
        dx = ad_place(g, il, (const int64_t[]){0, 0}, x->dims + 2);
        ir_free(rows);
        if (!rows)
            ir_fail(g, KILN_ERR_NOMEM, "kiln_grad: out of memory");
    }
    ir_free(ph);
    return dx;
}

/* Whether t (a conv's input) is a zero pad of the spatial axes only: then
 * the conv's input gradient goes to the pad's input directly. */
static bool ad_zero_pad(const kiln_tensor *t)
{
    return t->op == IR_PAD && t->value == 0 && t->begin[0] == 0 && t->begin[1] == 0 &&
           t->after[0] == 0 && t->after[1] == 0;
}

/* ---- the rules -------------------------------------------------------------------- */

typedef struct {
    kiln_graph *g;
    kiln_tensor **grad; /* by node id; NULL = none yet */
    const bool *need;   /* by node id: gets a gradient */
    const bool *target; /* by node id: one of the wrt tensors */
    int count;
} ad_ctx;

static bool ad_wants(const ad_ctx *c, const kiln_tensor *t)
{
    return t->id < c->count && c->need[t->id];
}

static void ad_accum(ad_ctx *c, kiln_tensor *t, kiln_tensor *gr)
{
    if (!ad_wants(c, t) || !gr)
        return;
    kiln_tensor *old = c->grad[t->id];
    c->grad[t->id] = old ? ad_bin(c->g, IR_ADD, old, gr) : gr;
}

/* Whether sdpa node t differentiates through the fused backward ops (see
 * SDPA_FUSED_MIN; KILN_SDPA_FUSED_MIN counts only when it is a whole
 * positive number). */
static bool ad_sdpa_fused(const kiln_tensor *t)
{
    const char *env = getenv("KILN_SDPA_FUSED_MIN");
    char *end = NULL;
    long long v = env ? strtoll(env, &end, 10) : 0;
    int64_t min = env && end != env && *end == '\0' && v > 0 ? (int64_t)v : SDPA_FUSED_MIN;
    const kiln_tensor *k = t->in[1];
    return ir_shape_numel(t->rank - 1, t->dims) * k->dims[k->rank - 2] >= min;
}

/* What sdpa_stats (op) or sdpa_grad of operand axis computes over
 * in = (q, k, v, g) for an attention with t's scale and mask, as ordinary
 * nodes: P = softmax(q k^T s, masked) (0 on a row that attends to nothing),
 * dP = g v^T, D = rowsum(P dP), dS = P (dP - D); stats (logsumexp, D) in
 * f64, dq = dS k s, dk = dS^T q s, dv = P^T g. */
static kiln_tensor *ad_sdpa_composite(kiln_graph *g, const kiln_tensor *t, ir_op op, int axis,
                                      kiln_tensor *const *in)
{
    kiln_tensor *q = in[0], *k = in[1], *v = in[2], *gr = in[3];
    kiln_tensor *sc = fe_full_raw(g, q->dtype, 0, NULL, t->value); /* as the forward's */
    kiln_tensor *scores = kiln_mul(g, ad_matmul(g, q, ad_mT(g, k)), sc);
    kiln_tensor *keep = ir_attention_mask(t);
    if (t->causal && scores) {
        int64_t l = scores->dims[scores->rank - 2], m = scores->dims[scores->rank - 1];
        keep = kiln_tril(g, kiln_ones(g, KILN_BOOL, 2, (const int64_t[]){l, m}), 0);
    }
    if (keep)
        scores = kiln_where(g, keep, scores, kiln_scalar(g, -(double)INFINITY));
    kiln_tensor *p = kiln_softmax(g, scores, -1);
    if (ir_attention_mask(t)) /* a row with no key: 0, not NaN */
        p = kiln_where(g, keep, p, kiln_scalar(g, 0));
    if (op == IR_SDPA_GRAD && axis == 2)
        return ad_matmul(g, ad_mT(g, p), gr);
    kiln_tensor *dp = ad_matmul(g, gr, ad_mT(g, v));
    kiln_tensor *rows = kiln_sum(g, kiln_mul(g, p, dp), -1, true);
    if (op == IR_SDPA_STATS) {
        kiln_tensor *mx = kiln_detach(g, kiln_max(g, scores, -1, true));
        kiln_tensor *lse = kiln_add(
            g, kiln_log(g, kiln_sum(g, kiln_exp(g, kiln_sub(g, scores, mx)), -1, true)), mx);
        kiln_tensor *two[2] = {kiln_cast(g, lse, KILN_F64), kiln_cast(g, rows, KILN_F64)};
        return two[0] && two[1] ? kiln_concat(g, 2, two, -1) : NULL;
    }
    kiln_tensor *ds = kiln_mul(g, kiln_mul(g, p, kiln_sub(g, dp, rows)), sc);
    return axis == 0 ? ad_matmul(g, ds, k) : ad_matmul(g, ad_mT(g, ds), q);
}

/* Appends the VJP of node t given its gradient gr; false when t has no rule. */
static bool ad_rule(ad_ctx *c, kiln_tensor *t, kiln_tensor *gr)
{
    kiln_graph *g = c->g;
    kiln_tensor *x = t->nin > 0 ? t->in[0] : NULL;
    kiln_tensor *b = t->nin > 1 ? t->in[1] : NULL;
    switch (t->op) {
    /* no gradient: sources, comparisons, indices, detach, assign */
    case IR_INPUT:
    case IR_PARAM:
    case IR_CONST:
    case IR_FULL:
    case IR_ARANGE:
    case IR_RAND:
    case IR_RANDN:
    case IR_DETACH:
    case IR_EQ:
    case IR_NE:
    case IR_LT:
    case IR_LE:
    case IR_GT:
    case IR_GE:
    case IR_ARGMAX:
    case IR_ARGMIN:
    case IR_ASSIGN: return false;

    /* y = -x: dx = -g */
    case IR_NEG: ad_accum(c, x, ad_un(g, IR_NEG, gr)); return true;
    /* y = |x|: dx = g * sign(x), 0 at 0 */
    case IR_ABS:
        ad_accum(c, x,
                 ad_where(g, ad_bin(g, IR_GT, x, ad_full(g, x, 0)), gr,
                          ad_mask(g, ad_bin(g, IR_LT, x, ad_full(g, x, 0)), ad_un(g, IR_NEG, gr))));
        return true;
    /* y = exp(x): dx = g * y */
    case IR_EXP: ad_accum(c, x, ad_mul(g, gr, t)); return true;
    /* y = log(x): dx = g / x */
    case IR_LOG: ad_accum(c, x, ad_bin(g, IR_DIV, gr, x)); return true;
    /* y = log(1 + x): dx = g / (1 + x) */
    case IR_LOG1P:
        ad_accum(c, x, ad_bin(g, IR_DIV, gr, ad_bin(g, IR_ADD, x, ad_full(g, x, 1))));
        return true;
    /* y = sqrt(x): dx = g / (2 y) */
    case IR_SQRT: ad_accum(c, x, ad_bin(g, IR_DIV, ad_scale(g, gr, 0.5), t)); return true;
    /* y = x^-1/2: dx = -g y^3 / 2 */
    case IR_RSQRT:
        ad_accum(c, x, ad_mul(g, ad_scale(g, gr, -0.5), ad_mul(g, t, ad_mul(g, t, t))));
        return true;
    /* y = sin(x): dx = g cos(x) */
    case IR_SIN: ad_accum(c, x, ad_mul(g, gr, ad_un(g, IR_COS, x))); return true;
    /* y = cos(x): dx = -g sin(x) */
    case IR_COS: ad_accum(c, x, ad_mul(g, ad_un(g, IR_NEG, gr), ad_un(g, IR_SIN, x))); return true;
    /* y = tanh(x): dx = g (1 - y^2) */
    case IR_TANH:
        ad_accum(c, x, ad_mul(g, gr, ad_bin(g, IR_SUB, ad_full(g, t, 1), ad_mul(g, t, t))));
        return true;
    /* y = erf(x): dx = g 2/sqrt(pi) exp(-x^2) */
    case IR_ERF:
        ad_accum(c, x,
                 ad_mul(g, ad_scale(g, gr, 1.1283791670955126),
                        ad_un(g, IR_EXP, ad_un(g, IR_NEG, ad_mul(g, x, x)))));
        return true;
    /* y = sigmoid(x): dx = g y (1 - y) */
    case IR_SIGMOID:
        ad_accum(c, x, ad_mul(g, ad_mul(g, gr, t), ad_bin(g, IR_SUB, ad_full(g, t, 1), t)));
        return true;
    /* y = relu(x): dx = where(y > 0, g, 0), as PyTorch (y > 0 exactly where
     * x > 0, NaN included): the backward reads the output the forward
     * stores, so a linear layer's matmul keeps its bias + ReLU epilogue */
    case IR_RELU:
        ad_accum(c, x, ad_mask(g, ad_bin(g, IR_GT, t, ad_full(g, t, 0)), gr));
        return true;
    /* y = dt(x): dx = x.dtype(g) (float operands only reach here) */
    case IR_CAST:
        if (ad_wants(c, x))
            ad_accum(c, x, fe_convert(g, gr, x->dtype));
        return true;

    /* y = a + b */
    case IR_ADD:
        ad_accum(c, x, gr);
        ad_accum(c, b, gr);
        return true;
    /* y = a - b */
    case IR_SUB:
        ad_accum(c, x, gr);
        if (ad_wants(c, b))
            ad_accum(c, b, ad_un(g, IR_NEG, gr));
        return true;
    /* y = a * b: da = g b, db = g a */
    case IR_MUL:
        if (ad_wants(c, x))
            ad_accum(c, x, ad_mul(g, gr, b));
        if (ad_wants(c, b))
            ad_accum(c, b, ad_mul(g, gr, x));
        return true;
    /* y = a / b: da = g / b, db = -g a / b^2 */
    case IR_DIV:
        if (ad_wants(c, x))
            ad_accum(c, x, ad_bin(g, IR_DIV, gr, b));
        if (ad_wants(c, b))
            ad_accum(c, b, ad_bin(g, IR_DIV, ad_mul(g, ad_un(g, IR_NEG, gr), x), ad_mul(g, b, b)));
        return true;
    /* y = a^b: da = g b a^(b-1) (0 where b == 0); db = g y log(a) (0 where a == 0, b >= 0) */
    case IR_POW:
        if (ad_wants(c, x)) {
            kiln_tensor *d =
                ad_mul(g, b, ad_bin(g, IR_POW, x, ad_bin(g, IR_SUB, b, ad_full(g, b, 1))));
            ad_accum(c, x,
                     ad_where(g, ad_bin(g, IR_EQ, b, ad_full(g, b, 0)), ad_full(g, gr, 0),
                              ad_mul(g, gr, d)));
        }
        if (ad_wants(c, b)) {
            kiln_tensor *z = ad_full(g, x, 0);
            kiln_tensor *at0 = ad_bin(g, IR_EQ, x, z);
            kiln_tensor *bpos = ad_bin(g, IR_GE, b, ad_full(g, b, 0));
            kiln_tensor *cut = ad_where(g, at0, bpos, ad_bin(g, IR_NE, z, z));
            ad_accum(c, b,
                     ad_where(g, cut, ad_full(g, gr, 0),
                              ad_mul(g, gr, ad_mul(g, t, ad_un(g, IR_LOG, x)))));
        }
        return true;
    /* y = max(a, b) / min(a, b): the chosen operand gets g, ties split g / 2 */
    case IR_MAXIMUM:
    case IR_MINIMUM: {
        ir_op win = t->op == IR_MAXIMUM ? IR_GT : IR_LT;
        kiln_tensor *half = ad_scale(g, gr, 0.5);
        kiln_tensor *tie = ad_bin(g, IR_EQ, x, b);
        if (ad_wants(c, x))
            ad_accum(c, x, ad_where(g, ad_bin(g, win, x, b), gr, ad_mask(g, tie, half)));
        if (ad_wants(c, b))
            ad_accum(c, b, ad_where(g, ad_bin(g, win, b, x), gr, ad_mask(g, tie, half)));
        return true;
    }
    /* y = where(cond, a, b): da = where(cond, g, 0), db = where(cond, 0, g) */
    case IR_WHERE: {
        kiln_tensor *a = t->in[1], *e = t->in[2];
        if (ad_wants(c, a))
            ad_accum(c, a, ad_mask(g, x, gr));
        if (ad_wants(c, e))
            ad_accum(c, e, ad_where(g, x, ad_full(g, gr, 0), gr));
        return true;
    }

    /* y = sum(x, axes, keepdim): dx = expand(g) */
    case IR_SUM: ad_accum(c, x, gr ? fe_expand_raw(g, gr, x->rank, x->dims) : NULL); return true;
    /* y = amax/amin(x, axes): dx = g / count(ties) where x == y, else 0 */
    case IR_MAX:
    case IR_MIN: {
        kiln_tensor *hit = ad_bin(g, IR_EQ, x, fe_expand_raw(g, t, x->rank, x->dims));
        kiln_tensor *ones =
            hit ? ir_node_new(g, IR_CAST, x->dtype, x->rank, x->dims, 1, &hit) : NULL;
        kiln_tensor *cnt = ones ? fe_reduce(g, IR_SUM, ones, t->axes, true, x->dtype) : NULL;
        kiln_tensor *share = ad_bin(g, IR_DIV, gr, cnt);
        ad_accum(c, x, ad_mask(g, hit, share ? fe_expand_raw(g, share, x->rank, x->dims) : NULL));
        return true;
    }

    /* y = reshape(x): dx = reshape(g, x.shape) */
    case IR_RESHAPE:
        ad_accum(c, x, gr ? fe_reshape_raw(g, gr, x->rank, x->dims) : NULL);
        return true;
    /* y = permute(x, p): dx = permute(g, p^-1) */
    case IR_PERMUTE: {
        kiln_tensor *r =
            gr ? ir_node_new(g, IR_PERMUTE, gr->dtype, x->rank, x->dims, 1, &gr) : NULL;
        if (r)
            for (int d = 0; d < x->rank; d++)
                r->perm[t->perm[d]] = d;
        ad_accum(c, x, r);
        return true;
    }
    /* y = expand(x): dx = sum of g over the broadcast axes (keepdim) */
    case IR_EXPAND: ad_accum(c, x, ad_unexpand(g, gr, x)); return true;
    /* y = x[begin::step]: dx = zeros with g scattered back, axis by axis */
    case IR_SLICE: {
        bool unit = true;
        for (int d = 0; d < x->rank; d++)
            unit = unit && (t->step[d] == 1 || t->dims[d] <= 1);
        kiln_tensor *r = gr;
        if (unit && gr) {
            int64_t after[KILN_MAX_RANK];
            for (int d = 0; d < x->rank; d++)
                after[d] = x->dims[d] - t->begin[d] - t->dims[d];
            r = ir_node_new(g, IR_PAD, gr->dtype, x->rank, x->dims, 1, &gr);
            if (r) {
                memcpy(r->begin, t->begin, sizeof(r->begin));
                memcpy(r->after, after, sizeof(after));
                r->value = 0;
            }
        } else {
            for (int d = 0; d < x->rank; d++)
                r = ad_unslice_axis(g, r, d, t->begin[d], t->step[d], x->dims[d]);
        }
        ad_accum(c, x, r);
        return true;
    }
    /* y = pad(x, before, after): dx = g[before : before + x.shape] */
    case IR_PAD: ad_accum(c, x, ad_window(g, gr, t->begin, x)); return true;
    /* y = concat(x0..xn): dxi = g's slice for xi along axis */
    case IR_CONCAT: {
        int64_t begin[KILN_MAX_RANK] = {0};
        for (int i = 0; i < t->nin; i++) {
            if (ad_wants(c, t->in[i]))
                ad_accum(c, t->in[i], ad_window(g, gr, begin, t->in[i]));
            begin[t->axis] += t->in[i]->dims[t->axis];
        }
        return true;
    }

    /* y = a (..., M, K) @ b (..., K, N): da = g @ b^T, db = a^T @ g. When b
     * is a transposed matrix w^T (a linear layer's weight), dw = g^T @ a goes
     * straight to w in w's own layout, instead of a^T @ g read transposed by
     * every consumer (the optimizer's update walks it column by column). */
    case IR_MATMUL: {
        uint32_t ea = ad_batch_expanded(x), eb = ad_batch_expanded(b);
        if (ea && ad_wants(c, x->in[0])) /* a broadcast operand: its batches folded into k */
            ad_accum(c, x->in[0], ad_folded_matmul(g, ea, x->in[0], gr, ad_mT(g, b)));
        else if (ad_wants(c, x))
            ad_accum(c, x, ad_matmul(g, gr, ad_mT(g, b)));
        kiln_tensor *w = x->rank == 2 && is_mT(b) && !c->target[b->id] ? b->in[0] : NULL;
        if (w && ad_wants(c, w))
            ad_accum(c, w, ad_matmul(g, ad_mT(g, gr), x));
        else if (eb && ad_wants(c, b->in[0]))
            ad_accum(c, b->in[0], ad_folded_matmul(g, eb, b->in[0], ad_mT(g, x), gr));
        else if (ad_wants(c, b))
            ad_accum(c, b, ad_matmul(g, ad_mT(g, x), gr));
        return true;
    }
    /* y = conv(x, w): dx = the transposed convolution (ad_conv_input_grad; of
     * the unpadded input when x is a zero pad);
     * dw = g @ x's columns^T, the implicit GEMM with the batch folded into k */
    case IR_CONV:
        if (ad_zero_pad(x) && ad_wants(c, x->in[0]) && !c->target[x->id])
            ad_accum(c, x->in[0], ad_conv_input_grad(g, t, gr, x->in[0], x->begin + 2));
        else if (ad_wants(c, x))
            ad_accum(c, x, ad_conv_input_grad(g, t, gr, x, (const int64_t[]){0, 0}));
        if (ad_wants(c, b) && gr) {
            int64_t groups = t->groups, l = gr->dims[2] * gr->dims[3];
            kiln_tensor *gm = fe_reshape_raw(
                g, gr, 4, (const int64_t[]){gr->dims[0], groups, gr->dims[1] / groups, l});
            ad_accum(c, b, ad_folded_matmul(g, 1u, b, gm, ad_mT(g, fe_conv_columns(g, x, t))));
        }
        return true;
    /* y = softmax(S) v with S = q k^T s (masked j > i when causal): the
     * ordinary nodes of ad_sdpa_composite, or for long rows FlashAttention-2's
     * backward as fused ops that keep no score matrix: sdpa_stats recomputes
     * each row's logsumexp and rowsum(g * y), then sdpa_grad each gradient
     * from them. */
    case IR_SDPA: {
        kiln_tensor *in[5] = {x, b, t->in[2], gr, NULL};
        if (!ad_sdpa_fused(t)) { /* short rows: the ordinary nodes are faster */
            kiln_tensor *d[3] = {NULL, NULL, NULL};
            for (int i = 0; i < 3; i++)
                d[i] = ad_wants(c, in[i]) ? ad_sdpa_composite(g, t, IR_SDPA_GRAD, i, in) : NULL;
            for (int i = 0; i < 3; i++)
                ad_accum(c, in[i], d[i]);
            return true;
        }
        kiln_tensor *mask = ir_attention_mask(t);
        in[4] = ir_sdpa_backward_new(g, IR_SDPA_STATS, 0, in, mask, t->value, t->causal);
        for (int i = 0; i < 3; i++)
            if (ad_wants(c, in[i]))
                ad_accum(c, in[i],
                         ir_sdpa_backward_new(g, IR_SDPA_GRAD, i, in, mask, t->value, t->causal));
        return true;
    }
    /* The fused backward's own derivatives (a second derivative through
     * attention): those of the ordinary nodes that compute the same value,
     * over stand-ins for q, k, v, g (identity reshapes: a partial derivative
     * each, even where one operand is computed from another); the stats are
     * a cache, so none flows to them. */
    case IR_SDPA_STATS:
    case IR_SDPA_GRAD: {
        kiln_tensor *in[4] = {x, b, t->in[2], t->in[3]}, *d[4] = {NULL, NULL, NULL, NULL};
        for (int i = 0; i < 4; i++)
            in[i] =
                ir_node_new(g, IR_RESHAPE, in[i]->dtype, in[i]->rank, in[i]->dims, 1, &t->in[i]);
        kiln_tensor *y =
            in[0] && in[1] && in[2] && in[3] ? ad_sdpa_composite(g, t, t->op, t->axis, in) : NULL;
        if (y && ad_grad(g, y, 4, in, gr, false, d) == KILN_OK)
            for (int i = 0; i < 4; i++)
                ad_accum(c, t->in[i], d[i]);
        return true;
    }
    /* y = index_select(table, ids, axis): dtable = scatter_add(g, ids, axis) */
    case IR_GATHER: {
        kiln_tensor *in[2] = {gr, b};
        kiln_tensor *r =
            gr ? ir_node_new(g, IR_SCATTER_ADD, gr->dtype, x->rank, x->dims, 2, in) : NULL;
        if (r)
            r->axis = t->axis;
        ad_accum(c, x, r);
        return true;
    }
    /* y = scatter_add(src, ids, axis): dsrc = index_select(g, ids, axis) */
    case IR_SCATTER_ADD: {
        kiln_tensor *in[2] = {gr, b};
        kiln_tensor *r = gr ? ir_node_new(g, IR_GATHER, gr->dtype, x->rank, x->dims, 2, in) : NULL;
        if (r)
            r->axis = t->axis;
        ad_accum(c, x, r);
        return true;
    }
    case IR_OP_COUNT: return false;
    }
    return false;
}

/* ---- kiln_grad -------------------------------------------------------------------- */

static const char ad_float_msg[] =
    "kiln_grad: only Tensors of floating point dtype can require gradients";

kiln_status ad_grad(kiln_graph *g, kiln_tensor *y, int n, kiln_tensor *const *wrt,
                    kiln_tensor *seed, bool zeros_if_unused, kiln_tensor **grads)
{
    if (n < 0 || (n > 0 && (!wrt || !grads)))
        return ir_fail_status(g, KILN_ERR_INVALID,
                              "kiln_grad: wrt and grads must hold n >= 0 tensors");
    if (!y || y->graph != g)
        return ir_fail_status(g, KILN_ERR_INVALID, "kiln_grad: y must be a tensor of this graph");
    for (int i = 0; i < n; i++)
        if (!wrt[i] || wrt[i]->graph != g)
            return ir_fail_status(g, KILN_ERR_INVALID,
                                  "kiln_grad: wrt[%d] must be a tensor of this graph", i);
    if (seed && seed->graph != g)
        return ir_fail_status(g, KILN_ERR_INVALID,
                              "kiln_grad: seed must be a tensor of this graph");
    if (!ir_dtype_is_float(y->dtype))
        return ir_fail_status(g, KILN_ERR_DTYPE, "%s (y is %s)", ad_float_msg,
                              kiln_dtype_name(y->dtype));
    for (int i = 0; i < n; i++)
        if (!ir_dtype_is_float(wrt[i]->dtype))
            return ir_fail_status(g, KILN_ERR_DTYPE, "%s (wrt[%d] is %s)", ad_float_msg, i,
                                  kiln_dtype_name(wrt[i]->dtype));
    char have[256], want[256];
    if (!seed) {
        if (ir_numel(y) != 1)
            return ir_fail_status(g, KILN_ERR_SHAPE, /* PyTorch's words, exactly */
                                  "kiln_grad: grad can be implicitly created only for scalar "
                                  "outputs");
    } else if (!ir_same_shape(seed, y)) {
        return ir_fail_status(g, KILN_ERR_SHAPE,
                              "kiln_grad: Mismatch in shape: grad_output[0] has a shape of %s and "
                              "output[0] has a shape of %s",
                              ir_shape_str(have, sizeof(have), seed->rank, seed->dims),
                              ir_shape_str(want, sizeof(want), y->rank, y->dims));
    }

    int count = y->id + 1;
    /* read g->nodes afresh each time: adding backward nodes may move the array
     * (the nodes themselves live in the arena and never move) */
    bool *need = ir_alloc(sizeof(bool) * 3 * (size_t)count);
    kiln_tensor **gr = ir_alloc(sizeof(*gr) * (size_t)count);
    if (!need || !gr) {
        ir_free(need);
        ir_free(gr);
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_grad: out of memory");
    }
    bool *reach = need + count, *target = need + 2 * count;
    memset(need, 0, sizeof(bool) * 3 * (size_t)count);
    memset(gr, 0, sizeof(*gr) * (size_t)count);
    /* dep (in need): depends on a wrt through differentiable float nodes */
    for (int i = 0; i < n; i++)
        if (wrt[i]->id < count)
            need[wrt[i]->id] = target[wrt[i]->id] = true;
    for (int i = 0; i < count; i++) {
        kiln_tensor *t = g->nodes[i];
        if (need[i] || !(ir_ops[t->op].flags & IR_F_DIFF) || !ir_dtype_is_float(t->dtype))
            continue;
        for (int k = 0; k < t->nin && !need[i]; k++)
            need[i] = need[t->in[k]->id];
    }
    reach[y->id] = true;
    for (int i = count - 1; i >= 0; i--)
        if (reach[i] && need[i] && (ir_ops[g->nodes[i]->op].flags & IR_F_DIFF))
            for (int k = 0; k < g->nodes[i]->nin; k++)
                reach[g->nodes[i]->in[k]->id] = true;
    for (int i = 0; i < count; i++)
        need[i] = need[i] && reach[i];

    ad_ctx c = {.g = g, .grad = gr, .need = need, .target = target, .count = count};
    kiln_status st = KILN_OK;
    if (need[y->id])
        gr[y->id] = seed ? fe_convert(g, seed, y->dtype) : ad_full(g, y, 1);
    for (int i = count - 1; i >= 0 && g->status == KILN_OK; i--) {
        kiln_tensor *t = g->nodes[i];
        if (!need[i] || !gr[i])
            continue;
        bool diff = (ir_ops[t->op].flags & IR_F_DIFF) != 0;
        bool ruled = ad_rule(&c, t, gr[i]);
        if (diff != ruled) {
            st = ir_fail_status(g, KILN_ERR_UNSUPPORTED,
                                "kiln_grad: op '%s' is marked %sdifferentiable but has %s VJP rule",
                                ir_ops[t->op].name, diff ? "" : "not ", ruled ? "a" : "no");
            break;
        }
    }
    if (st == KILN_OK && g->status != KILN_OK)
        st = g->status;
    for (int i = 0; i < n && st == KILN_OK; i++) {
        kiln_tensor *w = wrt[i];
        kiln_tensor *r = w->id < count ? gr[w->id] : NULL;
        grads[i] = r ? r : zeros_if_unused ? kiln_zeros_like(g, w) : NULL;
        if (!grads[i] && (r || zeros_if_unused))
            st = g->status != KILN_OK ? g->status : KILN_ERR_NOMEM;
    }
    if (st != KILN_OK)
        for (int i = 0; i < n; i++)
            grads[i] = NULL;
    ir_free(need);
    ir_free(gr);
    return st;
}

kiln_status kiln_grad(kiln_graph *g, kiln_tensor *y, int n, kiln_tensor *const *wrt,
                      kiln_tensor *seed, kiln_tensor **grads)
{
    if (grads)
        for (int i = 0; i < n; i++)
            grads[i] = NULL;
    if (!g)
        return KILN_ERR_INVALID;
    if (!ir_begin(g))
        return g->status;
    return ad_grad(g, y, n, wrt, seed, true, grads);
}
