/*
 * kp_eval.h - a test-only evaluator of the kernel IR (header-only).
 *
 * Runs one entry of a kprogram over buffers in memory, node by node, with the
 * interpreter's arithmetic (runtime/interp.c): floats in double rounded to the
 * node's dtype, integers in int64 with wrap-around, reductions and matmul in
 * the loop order the kernel states. Every load is bounds-checked, so an index
 * map that strays outside its buffer fails the test instead of reading junk.
 */
#ifndef KILN_KP_EVAL_H
#define KILN_KP_EVAL_H

#include "ir/kernel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double f;  /* F32 (already rounded), F64 */
    int64_t i; /* I32, I64, BOOL (0/1) */
} kpe_val;

typedef struct {
    const kprogram *p;
    void *const *bufs;
    uint64_t seed;
    uint32_t run;
    kpe_val *v;
    int64_t var[2 * KILN_MAX_RANK];
    kpe_val acc[KK_MAX_PHASES]; /* by KX_ACC var: 0 the kernel's own, p + 1 its pre[p] */
    char msg[256];
    bool failed;
} kpe_ctx;

static bool kpe_fl(kiln_dtype dt)
{
    return dt == KILN_F32 || dt == KILN_F64;
}

static double kpe_round(kiln_dtype dt, double v)
{
    return dt == KILN_F32 ? (double)(float)v : v;
}

static int64_t kpe_wrap(kiln_dtype dt, int64_t v)
{
    return dt == KILN_I32 ? (int64_t)(int32_t)v : dt == KILN_BOOL ? v != 0 : v;
}

static void kpe_fail(kpe_ctx *c, const char *msg)
{
    if (!c->failed)
        snprintf(c->msg, sizeof c->msg, "%s", msg);
    c->failed = true;
}

static double kpe_as_f(kiln_dtype dt, kpe_val v)
{
    return kpe_fl(dt) ? v.f : (double)v.i;
}

/* A value converted to dt, as the interpreter's CAST / ir_store_f do. */
static kpe_val kpe_convert(kiln_dtype from, kiln_dtype to, kpe_val x)
{
    kpe_val r = {0, 0};
    if (kpe_fl(to)) {
        r.f =
            kpe_fl(from) ? kpe_round(to, x.f) : (to == KILN_F32 ? (double)(float)x.i : (double)x.i);
    } else if (to == KILN_BOOL) {
        r.i = kpe_fl(from) ? x.f != 0 : x.i != 0;
    } else if (kpe_fl(from)) {
        if (to == KILN_I32) {
            int32_t o;
            ir_store_f(KILN_I32, &o, 0, x.f);
            r.i = o;
        } else {
            int64_t o;
            ir_store_f(KILN_I64, &o, 0, x.f);
            r.i = o;
        }
    } else {
        r.i = kpe_wrap(to, x.i);
    }
    return r;
}

static double kpe_fop(ir_op op, double a, double b, bool *cmp)
{
    *cmp = false;
    if (op == IR_NEG)
        return -a;
    if (op == IR_ABS)
        return fabs(a);
    if (op == IR_EXP)
        return exp(a);
    if (op == IR_LOG)
        return log(a);
    if (op == IR_LOG1P)
        return log1p(a);
    if (op == IR_SQRT)
        return sqrt(a);
    if (op == IR_RSQRT)
        return 1.0 / sqrt(a);
    if (op == IR_SIN)
        return sin(a);
    if (op == IR_COS)
        return cos(a);
    if (op == IR_TANH)
        return tanh(a);
    if (op == IR_ERF)
        return erf(a);
    if (op == IR_SIGMOID)
        return 1.0 / (1.0 + exp(-a));
    if (op == IR_RELU)
        return a < 0 ? 0.0 : a;
    if (op == IR_ADD)
        return a + b;
    if (op == IR_SUB)
        return a - b;
    if (op == IR_MUL)
        return a * b;
    if (op == IR_DIV)
        return a / b;
    if (op == IR_POW)
        return pow(a, b);
    if (op == IR_MAXIMUM)
        return isnan(a) ? a : isnan(b) ? b : a > b ? a : b;
    if (op == IR_MINIMUM)
        return isnan(a) ? a : isnan(b) ? b : a < b ? a : b;
    *cmp = true;
    if (op == IR_EQ)
        return a == b;
    if (op == IR_NE)
        return a != b;
    if (op == IR_LT)
        return a < b;
    if (op == IR_LE)
        return a <= b;
    if (op == IR_GT)
        return a > b;
    if (op == IR_GE)
        return a >= b;
    return (double)NAN;
}

static int64_t kpe_iop(kpe_ctx *c, ir_op op, int64_t a, int64_t b)
{
    uint64_t ua = (uint64_t)a, ub = (uint64_t)b;
    if (op == IR_NEG)
        return (int64_t)(0 - ua);
    if (op == IR_ABS)
        return a < 0 ? (int64_t)(0 - ua) : a;
    if (op == IR_RELU)
        return a < 0 ? 0 : a;
    if (op == IR_ADD)
        return (int64_t)(ua + ub);
    if (op == IR_SUB)
        return (int64_t)(ua - ub);
    if (op == IR_MUL)
        return (int64_t)(ua * ub);
    if (op == IR_DIV) {
        if (b == 0) {
            kpe_fail(c, "ZeroDivisionError");
            return 0;
        }
        if (b == -1)
            return (int64_t)(0 - ua);
        int64_t q = a / b;
        if (a % b != 0 && ((a < 0) != (b < 0)))
            q--;
        return q;
    }
    if (op == IR_POW) {
        if (b < 0) {
            kpe_fail(c, "Integers to negative integer powers are not allowed.");
            return 0;
        }
        uint64_t r = 1;
        while (b) {
            if (b & 1)
                r *= ua;
            ua *= ua;
            b >>= 1;
        }
        return (int64_t)r;
    }
    if (op == IR_MAXIMUM)
        return a > b ? a : b;
    if (op == IR_MINIMUM)
        return a < b ? a : b;
    if (op == IR_EQ)
        return a == b;
    if (op == IR_NE)
        return a != b;
    if (op == IR_LT)
        return a < b;
    if (op == IR_LE)
        return a <= b;
    if (op == IR_GT)
        return a > b;
    if (op == IR_GE)
        return a >= b;
    kpe_fail(c, "integer op without meaning");
    return 0;
}

static kpe_val kpe_load(kpe_ctx *c, int buf, int64_t i)
{
    kpe_val r = {0, 0};
    const kbuf *b = &c->p->bufs[buf];
    if (i < 0 || i >= b->numel) {
        char m[128];
        snprintf(m, sizeof m, "load buf%d[%lld] out of bounds (numel %lld)", buf, (long long)i,
                 (long long)b->numel);
        kpe_fail(c, m);
        return r;
    }
    if (kpe_fl(b->dtype))
        r.f = ir_load_f(b->dtype, c->bufs[buf], i);
    else
        r.i = ir_load_i(b->dtype, c->bufs[buf], i);
    return r;
}

static void kpe_node(kpe_ctx *c, const kernel *k, int i)
{
    const kx_node *n = &k->x[i];
    kpe_val r = {0, 0};
    const kpe_val *a = c->v;
    switch (n->kind) {
    case KX_CONST:
        if (kpe_fl(n->dtype))
            r.f = n->value;
        else if (n->dtype == KILN_BOOL)
            r.i = n->value != 0;
        else
            r.i = n->ivalue;
        break;
    case KX_VAR: r.i = c->var[n->var]; break;
    case KX_LOAD: r = kpe_load(c, n->buf, a[n->a[0]].i); break;
    case KX_OP: {
        kiln_dtype xd = k->x[n->a[0]].dtype;
        if (n->op == IR_CAST) {
            r = kpe_convert(xd, n->dtype, a[n->a[0]]);
        } else if (n->op == IR_WHERE) {
            r = a[n->a[0]].i ? a[n->a[1]] : a[n->a[2]];
        } else if (kpe_fl(xd) || kpe_fl(n->dtype)) {
            bool cmp;
            double y = ir_ops[n->op].arity >= 2 ? kpe_as_f(k->x[n->a[1]].dtype, a[n->a[1]]) : 0;
            double v = kpe_fop(n->op, kpe_as_f(xd, a[n->a[0]]), y, &cmp);
            if (n->dtype == KILN_BOOL)
                r.i = v != 0;
            else if (kpe_fl(n->dtype))
                r.f = kpe_round(n->dtype, v);
            else
                r = kpe_convert(KILN_F64, n->dtype, (kpe_val){v, 0});
        } else {
            int64_t y = ir_ops[n->op].arity >= 2 ? a[n->a[1]].i : 0;
            r.i = kpe_wrap(n->dtype, kpe_iop(c, n->op, a[n->a[0]].i, y));
        }
        break;
    }
    case KX_IDIV:
    case KX_IMOD:
        if (a[n->a[1]].i == 0) {
            kpe_fail(c, "index division by zero");
            break;
        }
        r.i = n->kind == KX_IDIV ? a[n->a[0]].i / a[n->a[1]].i : a[n->a[0]].i % a[n->a[1]].i;
        break;
    case KX_RAND:
    case KX_RANDN: {
        uint64_t e = (uint64_t)a[n->a[0]].i;
        bool nrm = n->kind == KX_RANDN;
        if (n->dtype == KILN_F32)
            r.f = nrm ? (double)ir_randn_f32(c->seed, n->stream, c->run, e)
                      : (double)ir_rand_f32(c->seed, n->stream, c->run, e);
        else
            r.f = nrm ? ir_randn_f64(c->seed, n->stream, c->run, e)
                      : ir_rand_f64(c->seed, n->stream, c->run, e);
        break;
    }
    case KX_CHECK:
        r.i = a[n->a[0]].i;
        if (r.i < 0 || r.i >= n->size) {
            char m[160];
            snprintf(m, sizeof m, "index %lld is out of bounds for dimension %d with size %lld",
                     (long long)r.i, n->axis, (long long)n->size);
            kpe_fail(c, m);
        }
        break;
    case KX_ACC: r = c->acc[n->var]; break;
    }
    c->v[i] = r;
}

/* mask[i] = node i is an operand (transitively) of a root in roots. */
static void kpe_mark(const kernel *k, bool *mask, int root)
{
    if (root < 0 || mask[root])
        return;
    mask[root] = true;
    int ops[3], ar = kx_operands(&k->x[root], ops);
    for (int j = 0; j < ar; j++)
        kpe_mark(k, mask, ops[j]);
}

static void kpe_eval_mask(kpe_ctx *c, const kernel *k, const bool *mask)
{
    for (int i = 0; i < k->nx && !c->failed; i++)
        if (mask[i])
            kpe_node(c, k, i);
}

/* The stores of kernel k: all (which -1), its row stores (0) or its element
 * stores (1). */
static void kpe_stores(kpe_ctx *c, const kernel *k, const bool *smask, int which)
{
    kpe_eval_mask(c, k, smask);
    for (int s = 0; s < k->nstores && !c->failed; s++) {
        const kk_store *st = &k->stores[s];
        if (which >= 0 && st->element != (which == 1))
            continue;
        const kbuf *b = &c->p->bufs[st->buf];
        int64_t i = c->v[st->index].i;
        if (i < 0 || i >= b->numel) {
            kpe_fail(c, "store out of bounds");
            return;
        }
        kpe_val v = c->v[st->value];
        if (st->accumulate) {
            kpe_val o = kpe_load(c, st->buf, i);
            if (kpe_fl(b->dtype))
                v.f = kpe_round(b->dtype, o.f + v.f);
            else
                v.i = kpe_wrap(b->dtype, (int64_t)((uint64_t)o.i + (uint64_t)v.i));
        }
        if (kpe_fl(b->dtype))
            ir_store_f(b->dtype, c->bufs[st->buf], i, v.f);
        else
            ir_store_i(b->dtype, c->bufs[st->buf], i, v.i);
    }
}

/* Advances an odometer over dims; false when it wraps around. */
static bool kpe_next(int64_t *v, int rank, const int64_t *dims)
{
    for (int d = rank - 1; d >= 0; d--) {
        if (++v[d] < dims[d])
            return true;
        v[d] = 0;
    }
    return false;
}

static bool kpe_better(kiln_dtype dt, ir_op op, kpe_val v, kpe_val best)
{
    bool max = op == IR_MAX || op == IR_ARGMAX;
    if (kpe_fl(dt)) {
        if (isnan(best.f))
            return false;
        if (isnan(v.f))
            return true;
        return max ? v.f > best.f : v.f < best.f;
    }
    return max ? v.i > best.i : v.i < best.i;
}

/* One phase's reduction over the row at c->var[0..rank): its accumulator. */
static kpe_val kpe_phase(kpe_ctx *c, const kernel *k, kk_phase ph, const bool *bmask)
{
    int64_t *r = c->var + k->rank;
    kiln_dtype bd = k->x[ph.body].dtype;
    kpe_val acc = {0, 0}, best = {0, 0};
    int64_t n = 0;
    for (int d = 0; d < k->rrank; d++)
        r[d] = 0;
    if (ir_shape_numel(k->rrank, k->rdims) > 0) {
        do {
            kpe_eval_mask(c, k, bmask);
            if (c->failed)
                return acc;
            kpe_val v = c->v[ph.body];
            if (ph.rop == IR_SUM) {
                if (kpe_fl(ph.acc_dtype))
                    acc.f += kpe_as_f(bd, v);
                else
                    acc.i = (int64_t)((uint64_t)acc.i + (uint64_t)v.i);
            } else if (n == 0 || kpe_better(bd, ph.rop, v, best)) {
                best = v;
                acc = (ph.rop == IR_ARGMAX || ph.rop == IR_ARGMIN) ? (kpe_val){0, n} : v;
            }
            n++;
        } while (kpe_next(r, k->rrank, k->rdims));
    }
    for (int d = 0; d < k->rrank; d++)
        r[d] = 0;
    return acc;
}

/* Per row: each phase in order (the body masks in bmask[q]), the row
 * stores, then the element stores over the row (their masks: smask[0], [1]). */
static void kpe_reduce(kpe_ctx *c, const kernel *k, bool *const *bmask, bool *const *smask)
{
    int64_t *o = c->var, *r = c->var + k->rank;
    for (int d = 0; d < k->rank + k->rrank; d++)
        c->var[d] = 0;
    if (ir_shape_numel(k->rank, k->dims) == 0)
        return;
    do {
        for (int q = 0; q <= k->npre && !c->failed; q++)
            c->acc[q < k->npre ? q + 1 : 0] = kpe_phase(c, k, kk_phase_at(k, q), bmask[q]);
        if (c->failed)
            return;
        kpe_stores(c, k, smask[0], 0);
        if (kk_has_element_stores(k) && ir_shape_numel(k->rrank, k->rdims) > 0) {
            do
                kpe_stores(c, k, smask[1], 1);
            while (!c->failed && kpe_next(r, k->rrank, k->rdims));
        }
        for (int d = 0; d < k->rrank; d++)
            r[d] = 0;
    } while (!c->failed && kpe_next(o, k->rank, k->dims));
}

static void kpe_matmul(kpe_ctx *c, const kernel *k, const bool *smask)
{
    const kk_matmul *m = &k->mm;
    for (int d = 0; d < 3; d++)
        c->var[d] = 0;
    if (m->batch * m->m * m->n == 0)
        return;
    bool fl = kpe_fl(k->acc_dtype);
    kiln_dtype ad = c->p->bufs[m->a].dtype, bd = c->p->bufs[m->b].dtype;
    do {
        kpe_val acc = {0, 0};
        int64_t b = c->var[0], i = c->var[1], j = c->var[2];
        for (int64_t q = 0; q < m->k && !c->failed; q++) {
            kpe_val x =
                kpe_load(c, m->a,
                         b * m->a_stride[0] + kk_parts_at(&m->a_parts[0], m->a_stride[1], i) +
                             kk_parts_at(&m->a_parts[1], m->a_stride[2], q));
            kpe_val y =
                kpe_load(c, m->b,
                         b * m->b_stride[0] + kk_parts_at(&m->b_parts[0], m->b_stride[1], q) +
                             kk_parts_at(&m->b_parts[1], m->b_stride[2], j));
            if (fl)
                acc.f += kpe_as_f(ad, x) * kpe_as_f(bd, y);
            else
                acc.i = (int64_t)((uint64_t)acc.i + (uint64_t)x.i * (uint64_t)y.i);
        }
        c->acc[0] = acc;
        kpe_stores(c, k, smask, -1);
    } while (!c->failed && kpe_next(c->var, 3, k->dims));
}

/* sdpa per (batch, row), in double as the interpreter: scores, their
 * maximum, the weights, then the epilogue per column (KX_ACC = out). */
/* Operand `which` of an attention kernel at (batch b, row, col), as double. */
static double kpe_at(kpe_ctx *c, const kk_attention *at, int which, int64_t b, int64_t row,
                     int64_t col)
{
    int buf = kk_attention_buf(at, which);
    const int64_t *st = kk_attention_strides(at, which);
    kiln_dtype dt = c->p->bufs[buf].dtype;
    return kpe_as_f(dt,
                    kpe_load(c, buf, kk_attention_batch(at, which, b) + row * st[1] + col * st[2]));
}

/* Whether query row i of batch b attends to key j (the mask, if any). */
static bool kpe_attends(kpe_ctx *c, const kk_attention *at, int64_t b, int64_t i, int64_t j)
{
    return at->mask < 0 || kpe_at(c, at, KA_MASK, b, i, j) != 0;
}

/* The dot product of row ra of operand a and row rb of operand b over n. */
static double kpe_at_dot(kpe_ctx *c, const kk_attention *at, int a, int64_t ra, int b, int64_t rb,
                         int64_t bb, int64_t n)
{
    double s = 0;
    for (int64_t d = 0; d < n; d++)
        s += kpe_at(c, at, a, bb, ra, d) * kpe_at(c, at, b, bb, rb, d);
    return s;
}

/* sdpa's backward per (batch, row) in double, as runtime/interp.c computes
 * it; then the epilogue per column (KX_ACC = the value). */
static void kpe_attention_backward(kpe_ctx *c, const kernel *k, const bool *smask)
{
    const kk_attention *at = &k->at;
    int64_t rows = k->dims[1], cols = k->dims[2];
    double *o = calloc((size_t)cols + 2, sizeof(double));
    for (int64_t b = 0; b < at->batch && o && !c->failed; b++)
        for (int64_t x = 0; x < rows && !c->failed; x++) {
            for (int64_t e = 0; e < cols; e++)
                o[e] = 0;
            int64_t n = at->causal ? (x + 1 < at->s ? x + 1 : at->s) : at->s;
            if (at->mode == KA_STATS) {
                double mx = -(double)INFINITY, l = 0, dsum = 0;
                for (int64_t j = 0; j < n; j++) {
                    double s = at->scale * kpe_at_dot(c, at, 0, x, 1, j, b, at->d);
                    mx = s > mx && kpe_attends(c, at, b, x, j) ? s : mx;
                }
                for (int64_t j = 0; j < n; j++)
                    if (kpe_attends(c, at, b, x, j))
                        l += exp(at->scale * kpe_at_dot(c, at, 0, x, 1, j, b, at->d) - mx);
                double lse = l > 0 ? mx + log(l) : -(double)INFINITY;
                for (int64_t j = 0; j < n; j++)
                    dsum += !kpe_attends(c, at, b, x, j)
                                ? 0
                                : exp(at->scale * kpe_at_dot(c, at, 0, x, 1, j, b, at->d) - lse) *
                                      kpe_at_dot(c, at, 3, x, 2, j, b, at->dv);
                o[0] = lse;
                o[1] = dsum;
            } else if (at->mode == KA_DQ) {
                double lse = kpe_at(c, at, 4, b, x, 0), dd = kpe_at(c, at, 4, b, x, 1);
                for (int64_t j = 0; j < n; j++) {
                    if (!kpe_attends(c, at, b, x, j))
                        continue;
                    double p = exp(at->scale * kpe_at_dot(c, at, 0, x, 1, j, b, at->d) - lse);
                    double ds = p * (kpe_at_dot(c, at, 3, x, 2, j, b, at->dv) - dd);
                    for (int64_t e = 0; e < cols; e++)
                        o[e] += at->scale * ds * kpe_at(c, at, 1, b, j, e);
                }
            } else {
                for (int64_t i = at->causal ? x : 0; i < at->t; i++) {
                    if (!kpe_attends(c, at, b, i, x))
                        continue;
                    double lse = kpe_at(c, at, 4, b, i, 0), dd = kpe_at(c, at, 4, b, i, 1);
                    double p = exp(at->scale * kpe_at_dot(c, at, 0, i, 1, x, b, at->d) - lse);
                    double ds = p * (kpe_at_dot(c, at, 3, i, 2, x, b, at->dv) - dd);
                    for (int64_t e = 0; e < cols; e++)
                        o[e] += at->mode == KA_DV ? p * kpe_at(c, at, 3, b, i, e)
                                                  : at->scale * ds * kpe_at(c, at, 0, b, i, e);
                }
            }
            c->var[0] = b;
            c->var[1] = x;
            for (int64_t e = 0; e < cols && !c->failed; e++) {
                c->var[2] = e;
                c->acc[0] = (kpe_val){o[e], 0};
                kpe_stores(c, k, smask, -1);
            }
        }
    free(o);
}

static void kpe_attention(kpe_ctx *c, const kernel *k, const bool *smask)
{
    const kk_attention *at = &k->at;
    if (at->mode != KA_FORWARD) {
        kpe_attention_backward(c, k, smask);
        return;
    }
    for (int d = 0; d < 3; d++)
        c->var[d] = 0;
    if (at->batch * at->t * at->dv == 0)
        return;
    kiln_dtype dt = c->p->bufs[at->q].dtype;
    double *sc = calloc((size_t)at->s + 1, sizeof(double));
    double *o = calloc((size_t)at->dv + 1, sizeof(double));
    for (int64_t b = 0; b < at->batch && sc && o && !c->failed; b++)
        for (int64_t i = 0; i < at->t && !c->failed; i++) {
            int64_t n = at->causal ? (i + 1 < at->s ? i + 1 : at->s) : at->s;
            double mx = -(double)INFINITY, l = 0;
            for (int64_t j = 0; j < n; j++) {
                sc[j] = -(double)INFINITY;
                if (!kpe_attends(c, at, b, i, j))
                    continue;
                double s = 0;
                for (int64_t d = 0; d < at->d; d++)
                    s += kpe_as_f(dt, kpe_load(c, at->q,
                                               kk_attention_batch(at, 0, b) + i * at->q_stride[1] +
                                                   d * at->q_stride[2])) *
                         kpe_as_f(dt, kpe_load(c, at->k,
                                               kk_attention_batch(at, 1, b) + j * at->k_stride[1] +
                                                   d * at->k_stride[2]));
                sc[j] = s * at->scale;
                mx = sc[j] > mx ? sc[j] : mx;
            }
            for (int64_t e = 0; e < at->dv; e++)
                o[e] = 0;
            for (int64_t j = 0; j < n; j++) {
                if (!kpe_attends(c, at, b, i, j))
                    continue;
                double w = exp(sc[j] - mx);
                l += w;
                for (int64_t e = 0; e < at->dv; e++)
                    o[e] +=
                        w * kpe_as_f(dt, kpe_load(c, at->v,
                                                  kk_attention_batch(at, 2, b) +
                                                      j * at->v_stride[1] + e * at->v_stride[2]));
            }
            c->var[0] = b;
            c->var[1] = i;
            for (int64_t e = 0; e < at->dv && !c->failed; e++) {
                c->var[2] = e;
                c->acc[0] = (kpe_val){l > 0 ? o[e] / l : 0, 0};
                kpe_stores(c, k, smask, -1);
            }
        }
    free(sc);
    free(o);
}

static void kpe_kernel(kpe_ctx *c, const kernel *k)
{
    bool *smask = calloc((size_t)k->nx + 1, 1), *bmask[KK_MAX_PHASES] = {0}, *split[2] = {0};
    bool ok = smask != NULL;
    for (int q = 0; q < KK_MAX_PHASES; q++)
        ok = ok && (bmask[q] = calloc((size_t)k->nx + 1, 1)) != NULL;
    for (int w = 0; w < 2; w++)
        ok = ok && (split[w] = calloc((size_t)k->nx + 1, 1)) != NULL;
    c->v = calloc((size_t)k->nx + 1, sizeof(kpe_val));
    if (!ok || !c->v) {
        kpe_fail(c, "out of memory");
    } else {
        for (int s = 0; s < k->nstores; s++) {
            kpe_mark(k, smask, k->stores[s].index);
            kpe_mark(k, smask, k->stores[s].value);
            kpe_mark(k, split[k->stores[s].element], k->stores[s].index);
            kpe_mark(k, split[k->stores[s].element], k->stores[s].value);
        }
        switch (k->kind) {
        case KK_POINTWISE:
            for (int d = 0; d < k->rank; d++)
                c->var[d] = 0;
            if (ir_shape_numel(k->rank, k->dims) > 0)
                do
                    kpe_stores(c, k, smask, -1);
                while (!c->failed && kpe_next(c->var, k->rank, k->dims));
            break;
        case KK_REDUCE:
            for (int q = 0; q <= k->npre; q++)
                kpe_mark(k, bmask[q], kk_phase_at(k, q).body);
            kpe_reduce(c, k, bmask, split);
            break;
        case KK_MATMUL: kpe_matmul(c, k, smask); break;
        case KK_ATTENTION: kpe_attention(c, k, smask); break;
        }
    }
    free(smask);
    for (int q = 0; q < KK_MAX_PHASES; q++)
        free(bmask[q]);
    free(split[0]);
    free(split[1]);
    free(c->v);
    c->v = NULL;
}

/* Runs entry e: its kernels, then its copies. Returns false with msg set on a
 * run-time error (index check, zero division) or a stray index. */
static bool kpe_run(const kprogram *p, int e, void *const *bufs, uint64_t seed, uint32_t run,
                    char *msg, size_t cap)
{
    kpe_ctx c = {.p = p, .bufs = bufs, .seed = seed, .run = run};
    const kentry *x = &p->entries[e];
    for (int i = 0; i < x->nkernels && !c.failed; i++) {
        kpe_kernel(&c, &p->kernels[x->kernels[i]]);
        if (c.failed && msg)
            snprintf(msg, cap, "%.60s: %.180s", p->kernels[x->kernels[i]].name, c.msg);
    }
    if (c.failed)
        return false;
    for (int i = 0; i < x->ncopies; i++) {
        const kbuf *s = &p->bufs[x->copies[i].src];
        size_t nb = (size_t)s->numel * kiln_dtype_size(s->dtype);
        if (nb)
            memmove(bufs[x->copies[i].dst], bufs[x->copies[i].src], nb);
    }
    return true;
}

#endif /* KILN_KP_EVAL_H */
