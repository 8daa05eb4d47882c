/*
 * interp.c - the reference interpreter (KILN_TARGET_INTERP): docs/ir.md, op by op.
 *
 * Requires a verified graph (compile.c verifies its copy) and every needed
 * input set. Walks the nodes an entry needs in id order (a topological
 * order), giving each computed node a fresh row-major buffer that is freed
 * after its last use. Floats are computed in double and rounded once to the
 * output dtype; integers in int64 with two's-complement wrap-around; sums and
 * matmul accumulate in double / int64. Views are computed by index arithmetic
 * into fresh buffers: clarity over speed, except MATMUL (a tiled i-k-j loop
 * over double copies) so that the interpreter can check real-sized models.
 * Nothing reaches the module's buffers until every node succeeded: then the
 * outputs are copied out, then the entry's ASSIGN outputs update their params.
 */
#include "rt.h"

#include <limits.h>
#include <math.h>
#include <string.h>

typedef struct {
    kiln_module *m;
    void **val;    /* node id -> its value (NULL: not computed or freed) */
    bool *owned;   /* val[id] was allocated here */
    int *last_use; /* node id -> id of the last needed node reading it */
} ictx;

/* Run-time errors of int DIV and POW, reported by the element functions. */
enum { E_NONE, E_ZERO_DIV, E_NEG_POW };

static kiln_status oom(ictx *c)
{
    return rt_fail(c->m, KILN_ERR_NOMEM, "kiln_module_run: out of memory");
}

static size_t nbytes_of(const kiln_tensor *t)
{
    return (size_t)ir_numel(t) * kiln_dtype_size(t->dtype);
}

/* ---- element functions ------------------------------------------------------ */

static int64_t wrap_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static int64_t wrap_mul(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a * (uint64_t)b);
}

static double f_neg(double x)
{
    return -x;
}
static double f_rsqrt(double x)
{
    return 1.0 / sqrt(x);
}
static double f_sigmoid(double x)
{
    return 1.0 / (1.0 + exp(-x));
}
static double f_relu(double x)
{
    return x < 0 ? 0.0 : x; /* NaN stays NaN */
}
static double f_id(double x)
{
    return x;
}
static int64_t i_neg(int64_t x)
{
    return (int64_t)(0 - (uint64_t)x);
}
static int64_t i_abs(int64_t x)
{
    return x < 0 ? i_neg(x) : x;
}
static int64_t i_relu(int64_t x)
{
    return x < 0 ? 0 : x;
}
static int64_t i_id(int64_t x)
{
    return x;
}

static double f_add(double a, double b)
{
    return a + b;
}
static double f_sub(double a, double b)
{
    return a - b;
}
static double f_mul(double a, double b)
{
    return a * b;
}
static double f_div(double a, double b)
{
    return a / b;
}
static double f_max(double a, double b)
{
    return isnan(a) ? a : isnan(b) ? b : a > b ? a : b;
}
static double f_min(double a, double b)
{
    return isnan(a) ? a : isnan(b) ? b : a < b ? a : b;
}

static int64_t i_add(int64_t a, int64_t b, int *err)
{
    (void)err;
    return wrap_add(a, b);
}
static int64_t i_sub(int64_t a, int64_t b, int *err)
{
    (void)err;
    return (int64_t)((uint64_t)a - (uint64_t)b);
}
static int64_t i_mul(int64_t a, int64_t b, int *err)
{
    (void)err;
    return wrap_mul(a, b);
}
/* Floor division, like Python's // (and PyTorch's floor_divide). */
static int64_t i_div(int64_t a, int64_t b, int *err)
{
    if (b == 0) {
        *err = E_ZERO_DIV;
        return 0;
    }
    if (b == -1)
        return i_neg(a); /* INT64_MIN / -1 wraps */
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0)))
        q--;
    return q;
}
static int64_t i_pow(int64_t a, int64_t b, int *err)
{
    if (b < 0) {
        *err = E_NEG_POW;
        return 0;
    }
    int64_t r = 1;
    while (b) {
        if (b & 1)
            r = wrap_mul(r, a);
        a = wrap_mul(a, a);
        b >>= 1;
    }
    return r;
}
static int64_t i_max(int64_t a, int64_t b, int *err)
{
    (void)err;
    return a > b ? a : b;
}
static int64_t i_min(int64_t a, int64_t b, int *err)
{
    (void)err;
    return a < b ? a : b;
}

typedef enum { C_EQ, C_NE, C_LT, C_LE, C_GT, C_GE } cmp_kind;

static bool cmp_f(cmp_kind k, double a, double b)
{
    switch (k) {
    case C_EQ: return a == b;
    case C_NE: return a != b;
    case C_LT: return a < b;
    case C_LE: return a <= b;
    case C_GT: return a > b;
    case C_GE: return a >= b;
    }
    return false;
}

static bool cmp_i(cmp_kind k, int64_t a, int64_t b)
{
    switch (k) {
    case C_EQ: return a == b;
    case C_NE: return a != b;
    case C_LT: return a < b;
    case C_LE: return a <= b;
    case C_GT: return a > b;
    case C_GE: return a >= b;
    }
    return false;
}

/* ---- elementwise ------------------------------------------------------------- */

/* fi NULL: integer outputs are computed in double too (and converted). */
static void unary(const kiln_tensor *t, const void *x, void *out, double (*ff)(double),
                  int64_t (*fi)(int64_t))
{
    kiln_dtype xd = t->in[0]->dtype;
    int64_t n = ir_numel(t);
    if (ir_dtype_is_float(t->dtype) || !fi)
        for (int64_t i = 0; i < n; i++)
            ir_store_f(t->dtype, out, i, ff(ir_load_f(xd, x, i)));
    else
        for (int64_t i = 0; i < n; i++)
            ir_store_i(t->dtype, out, i, fi(ir_load_i(xd, x, i)));
}

/* CAST: float -> int truncates toward zero (saturating), x -> bool is x != 0,
 * int -> float rounds once (an int64 is not routed through double). */
static void cast(const kiln_tensor *t, const void *x, void *out)
{
    kiln_dtype xd = t->in[0]->dtype, od = t->dtype;
    int64_t n = ir_numel(t);
    for (int64_t i = 0; i < n; i++) {
        if (od == KILN_BOOL)
            ((bool *)out)[i] =
                ir_dtype_is_float(xd) ? ir_load_f(xd, x, i) != 0 : ir_load_i(xd, x, i) != 0;
        else if (ir_dtype_is_float(xd) && od == KILN_I32) {
            double v = ir_load_f(xd, x, i);
            v = isnan(v) ? 0 : v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v;
            ((int32_t *)out)[i] = (int32_t)v;
        } else if (ir_dtype_is_float(xd))
            ir_store_f(od, out, i, ir_load_f(xd, x, i));
        else
            ir_store_i(od, out, i, ir_load_i(xd, x, i));
    }
}

static kiln_status binary(ictx *c, const kiln_tensor *t, const void *a, const void *b, void *out,
                          double (*ff)(double, double), int64_t (*fi)(int64_t, int64_t, int *))
{
    kiln_dtype ad = t->in[0]->dtype, bd = t->in[1]->dtype;
    int64_t n = ir_numel(t);
    if (ir_dtype_is_float(t->dtype)) {
        for (int64_t i = 0; i < n; i++)
            ir_store_f(t->dtype, out, i, ff(ir_load_f(ad, a, i), ir_load_f(bd, b, i)));
        return KILN_OK;
    }
    int err = E_NONE;
    for (int64_t i = 0; i < n && err == E_NONE; i++)
        ir_store_i(t->dtype, out, i, fi(ir_load_i(ad, a, i), ir_load_i(bd, b, i), &err));
    if (err == E_ZERO_DIV)
        return rt_fail(c->m, KILN_ERR_INVALID, "kiln_module_run: ZeroDivisionError");
    if (err == E_NEG_POW)
        return rt_fail(c->m, KILN_ERR_INVALID,
                       "kiln_module_run: Integers to negative integer powers are not allowed.");
    return KILN_OK;
}

static void compare(const kiln_tensor *t, const void *a, const void *b, void *out, cmp_kind k)
{
    kiln_dtype d = t->in[0]->dtype;
    int64_t n = ir_numel(t);
    bool *o = out;
    if (ir_dtype_is_float(d))
        for (int64_t i = 0; i < n; i++)
            o[i] = cmp_f(k, ir_load_f(d, a, i), ir_load_f(d, b, i));
    else
        for (int64_t i = 0; i < n; i++)
            o[i] = cmp_i(k, ir_load_i(d, a, i), ir_load_i(d, b, i));
}

static void where(const kiln_tensor *t, const void *cond, const void *a, const void *b, void *out)
{
    size_t es = kiln_dtype_size(t->dtype);
    int64_t n = ir_numel(t);
    const bool *cb = cond;
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)out + (size_t)i * es, (const char *)(cb[i] ? a : b) + (size_t)i * es, es);
}

/* ---- sources ----------------------------------------------------------------- */

static void fill_full(const kiln_tensor *t, void *out)
{
    int64_t n = ir_numel(t);
    size_t es = kiln_dtype_size(t->dtype);
    if (n == 0)
        return;
    ir_store_f(t->dtype, out, 0, t->value);
    for (int64_t i = 1; i < n; i++)
        memcpy((char *)out + (size_t)i * es, out, es);
}

static void fill_arange(const kiln_tensor *t, void *out)
{
    int64_t n = ir_numel(t);
    for (int64_t i = 0; i < n; i++)
        ir_store_f(t->dtype, out, i, t->value + (double)i * t->value2);
}

static void fill_random(const ictx *c, const kiln_tensor *t, void *out, bool normal)
{
    uint64_t seed = c->m->seed;
    uint32_t run = c->m->run;
    int64_t n = ir_numel(t);
    for (int64_t i = 0; i < n; i++) {
        uint64_t k = (uint64_t)i;
        if (t->dtype == KILN_F32)
            ((float *)out)[i] = normal ? ir_randn_f32(seed, t->stream, run, k)
                                       : ir_rand_f32(seed, t->stream, run, k);
        else
            ir_store_f(t->dtype, out, i,
                       normal ? ir_randn_f64(seed, t->stream, run, k)
                              : ir_rand_f64(seed, t->stream, run, k));
    }
}

/* ---- reductions -------------------------------------------------------------- */

typedef enum { R_SUM, R_MAX, R_MIN, R_ARGMAX, R_ARGMIN } red_kind;

static const char *red_name(red_kind k)
{
    switch (k) {
    case R_SUM: return "sum";
    case R_MAX: return "max";
    case R_MIN: return "min";
    case R_ARGMAX: return "argmax";
    case R_ARGMIN: return "argmin";
    }
    return "?";
}

/* Is v a better extremum than best? NaN beats everything and the first wins. */
static bool better_f(red_kind k, double v, double best)
{
    if (isnan(best))
        return false;
    if (isnan(v))
        return true;
    return (k == R_MAX || k == R_ARGMAX) ? v > best : v < best;
}

/* Reduces x over t->axes; the reduced sub-index runs row-major over the
 * reduced axes (ARGMAX/ARGMIN report it). */
static kiln_status reduce(ictx *c, const kiln_tensor *t, const void *x, void *out, red_kind k)
{
    const kiln_tensor *in = t->in[0];
    int rank = in->rank;
    int64_t xs[KILN_MAX_RANK], rdims[KILN_MAX_RANK];
    int raxes[KILN_MAX_RANK], nr = 0;
    ir_strides(rank, in->dims, xs);
    for (int d = 0; d < rank; d++)
        if (t->axes & (1u << d)) {
            raxes[nr] = d;
            rdims[nr++] = in->dims[d];
        }
    int64_t R = ir_shape_numel(nr, rdims), n = ir_numel(t);
    if (n == 0)
        return KILN_OK;
    if (R == 0 && k != R_SUM) {
        for (int j = 0; j < nr; j++)
            if (rdims[j] == 0)
                return rt_fail(c->m, KILN_ERR_INVALID,
                               "kiln_module_run: %s(): Expected reduction dim %d to have "
                               "non-zero size.",
                               red_name(k), raxes[j]);
    }
    /* offsets of the reduced elements relative to an output's base */
    int64_t *roff = ir_alloc(sizeof(int64_t) * (size_t)(R ? R : 1));
    if (!roff)
        return oom(c);
    int64_t rc[KILN_MAX_RANK] = {0};
    for (int64_t r = 0; r < R; r++) {
        int64_t off = 0;
        for (int j = 0; j < nr; j++)
            off += rc[j] * xs[raxes[j]];
        roff[r] = off;
        for (int j = nr - 1; j >= 0 && ++rc[j] == rdims[j]; j--)
            rc[j] = 0;
    }
    kiln_dtype xd = in->dtype;
    bool fl = ir_dtype_is_float(xd);
    int64_t oc[KILN_MAX_RANK] = {0};
    for (int64_t o = 0; o < n; o++) {
        int64_t base = 0;
        for (int d = 0; d < rank; d++)
            base += oc[d] * xs[d];
        for (int d = rank - 1; d >= 0 && ++oc[d] == t->dims[d]; d--)
            oc[d] = 0;
        if (k == R_SUM) {
            if (fl) {
                double s = 0;
                for (int64_t r = 0; r < R; r++)
                    s += ir_load_f(xd, x, base + roff[r]);
                ir_store_f(t->dtype, out, o, s);
            } else {
                int64_t s = 0;
                for (int64_t r = 0; r < R; r++)
                    s = wrap_add(s, ir_load_i(xd, x, base + roff[r]));
                ir_store_i(t->dtype, out, o, s);
            }
            continue;
        }
        int64_t best = 0;
        if (fl) {
            double bv = ir_load_f(xd, x, base + roff[0]);
            for (int64_t r = 1; r < R; r++) {
                double v = ir_load_f(xd, x, base + roff[r]);
                if (better_f(k, v, bv)) {
                    bv = v;
                    best = r;
                }
            }
        } else {
            int64_t bv = ir_load_i(xd, x, base + roff[0]);
            for (int64_t r = 1; r < R; r++) {
                int64_t v = ir_load_i(xd, x, base + roff[r]);
                if ((k == R_MAX || k == R_ARGMAX) ? v > bv : v < bv) {
                    bv = v;
                    best = r;
                }
            }
        }
        if (k == R_ARGMAX || k == R_ARGMIN)
            ir_store_i(t->dtype, out, o, best);
        else
            memcpy((char *)out + (size_t)o * kiln_dtype_size(xd),
                   (const char *)x + (size_t)(base + roff[best]) * kiln_dtype_size(xd),
                   kiln_dtype_size(xd));
    }
    ir_free(roff);
    return KILN_OK;
}

/* ---- movement ------------------------------------------------------------------ */

/* out[c] = x[base + sum c[d] * st[d]] over t's shape, element by element. */
static void strided_copy(const kiln_tensor *t, const void *x, void *out, int64_t base,
                         const int64_t *st)
{
    size_t es = kiln_dtype_size(t->dtype);
    int64_t n = ir_numel(t), oc[KILN_MAX_RANK] = {0};
    for (int64_t o = 0; o < n; o++) {
        int64_t off = base;
        for (int d = 0; d < t->rank; d++)
            off += oc[d] * st[d];
        memcpy((char *)out + (size_t)o * es, (const char *)x + (size_t)off * es, es);
        for (int d = t->rank - 1; d >= 0 && ++oc[d] == t->dims[d]; d--)
            oc[d] = 0;
    }
}

static void permute(const kiln_tensor *t, const void *x, void *out)
{
    int64_t xs[KILN_MAX_RANK], st[KILN_MAX_RANK];
    ir_strides(t->in[0]->rank, t->in[0]->dims, xs);
    for (int d = 0; d < t->rank; d++)
        st[d] = xs[t->perm[d]];
    strided_copy(t, x, out, 0, st);
}

static void expand(const kiln_tensor *t, const void *x, void *out)
{
    const kiln_tensor *in = t->in[0];
    int64_t xs[KILN_MAX_RANK], st[KILN_MAX_RANK];
    ir_strides(in->rank, in->dims, xs);
    for (int d = 0; d < t->rank; d++)
        st[d] = in->dims[d] == 1 ? 0 : xs[d];
    strided_copy(t, x, out, 0, st);
}

static void slice(const kiln_tensor *t, const void *x, void *out)
{
    const kiln_tensor *in = t->in[0];
    int64_t xs[KILN_MAX_RANK], st[KILN_MAX_RANK], base = 0;
    ir_strides(in->rank, in->dims, xs);
    for (int d = 0; d < t->rank; d++) {
        st[d] = xs[d] * t->step[d];
        base += t->begin[d] * xs[d];
    }
    strided_copy(t, x, out, base, st);
}

/* New cells get value; x lands at offset begin (negative begin/after crop). */
static void pad(const kiln_tensor *t, const void *x, void *out)
{
    const kiln_tensor *in = t->in[0];
    size_t es = kiln_dtype_size(t->dtype);
    fill_full(t, out); /* uses t->value */
    int64_t os[KILN_MAX_RANK], n = ir_numel(in), xc[KILN_MAX_RANK] = {0};
    ir_strides(t->rank, t->dims, os);
    for (int64_t i = 0; i < n; i++) {
        int64_t off = 0;
        bool inside = true;
        for (int d = 0; d < in->rank; d++) {
            int64_t p = xc[d] + t->begin[d];
            inside = inside && p >= 0 && p < t->dims[d];
            off += p * os[d];
        }
        if (inside)
            memcpy((char *)out + (size_t)off * es, (const char *)x + (size_t)i * es, es);
        for (int d = in->rank - 1; d >= 0 && ++xc[d] == in->dims[d]; d--)
            xc[d] = 0;
    }
}

static void concat(ictx *c, const kiln_tensor *t, void *out)
{
    size_t es = kiln_dtype_size(t->dtype);
    int64_t outer = ir_shape_numel(t->axis, t->dims);
    int64_t inner = ir_shape_numel(t->rank - t->axis - 1, t->dims + t->axis + 1);
    char *o = out;
    for (int64_t i = 0; i < outer; i++)
        for (int k = 0; k < t->nin; k++) {
            size_t chunk = (size_t)(t->in[k]->dims[t->axis] * inner) * es;
            memcpy(o, (const char *)c->val[t->in[k]->id] + (size_t)i * chunk, chunk);
            o += chunk;
        }
}

/* ---- matmul ------------------------------------------------------------------------ */

enum { MM_KB = 128, MM_JB = 512 }; /* a B tile of 128 x 512 doubles fits in L2 */

/* C (M, N) = A (M, K) @ B (K, N) in double, i-k-j inside cache tiles. */
static void gemm_f64(const double *A, const double *B, double *C, int64_t M, int64_t K, int64_t N)
{
    memset(C, 0, sizeof(double) * (size_t)(M * N));
    for (int64_t kb = 0; kb < K; kb += MM_KB) {
        int64_t ke = kb + MM_KB < K ? kb + MM_KB : K;
        for (int64_t jb = 0; jb < N; jb += MM_JB) {
            int64_t je = jb + MM_JB < N ? jb + MM_JB : N;
            for (int64_t i = 0; i < M; i++) {
                double *restrict ci = C + i * N;
                for (int64_t k = kb; k < ke; k++) {
                    double a = A[i * K + k];
                    const double *restrict bk = B + k * N;
                    for (int64_t j = jb; j < je; j++)
                        ci[j] += a * bk[j];
                }
            }
        }
    }
}

static void gemm_i64(const int64_t *A, const int64_t *B, int64_t *C, int64_t M, int64_t K,
                     int64_t N)
{
    memset(C, 0, sizeof(int64_t) * (size_t)(M * N));
    for (int64_t i = 0; i < M; i++)
        for (int64_t k = 0; k < K; k++) {
            uint64_t a = (uint64_t)A[i * K + k];
            for (int64_t j = 0; j < N; j++)
                C[i * N + j] = (int64_t)((uint64_t)C[i * N + j] + a * (uint64_t)B[k * N + j]);
        }
}

static kiln_status matmul(ictx *c, const kiln_tensor *t, const void *a, const void *b, void *out)
{
    const kiln_tensor *ta = t->in[0], *tb = t->in[1];
    int r = t->rank;
    int64_t M = t->dims[r - 2], N = t->dims[r - 1], K = ta->dims[r - 1];
    int64_t batch = ir_shape_numel(r - 2, t->dims);
    bool fl = ir_dtype_is_float(t->dtype);
    size_t w = fl ? sizeof(double) : sizeof(int64_t);
    void *A = ir_alloc(w * (size_t)(M * K + 1)), *B = ir_alloc(w * (size_t)(K * N + 1));
    void *C = ir_alloc(w * (size_t)(M * N + 1));
    kiln_status s = KILN_OK;
    if (!A || !B || !C)
        s = oom(c);
    for (int64_t p = 0; p < batch && s == KILN_OK; p++) {
        for (int64_t i = 0; i < M * K; i++)
            if (fl)
                ((double *)A)[i] = ir_load_f(ta->dtype, a, p * M * K + i);
            else
                ((int64_t *)A)[i] = ir_load_i(ta->dtype, a, p * M * K + i);
        for (int64_t i = 0; i < K * N; i++)
            if (fl)
                ((double *)B)[i] = ir_load_f(tb->dtype, b, p * K * N + i);
            else
                ((int64_t *)B)[i] = ir_load_i(tb->dtype, b, p * K * N + i);
        if (fl)
            gemm_f64(A, B, C, M, K, N);
        else
            gemm_i64(A, B, C, M, K, N);
        for (int64_t i = 0; i < M * N; i++)
            if (fl)
                ir_store_f(t->dtype, out, p * M * N + i, ((double *)C)[i]);
            else
                ir_store_i(t->dtype, out, p * M * N + i, ((int64_t *)C)[i]);
    }
    ir_free(A);
    ir_free(B);
    ir_free(C);
    return s;
}

/* conv (the direct loops, in double): y[n, o, a, b] = the sum over the
 * channels c of o's group and the taps (i, j) of w[o, c, i, j] *
 * x[n, group's first channel + c, a sh + i dh, b sw + j dw]. */
static void conv(const kiln_tensor *t, const void *x, const void *w, void *out)
{
    const kiln_tensor *tx = t->in[0], *tw = t->in[1];
    int64_t C = tx->dims[1], H = tx->dims[2], W = tx->dims[3];
    int64_t cg = tw->dims[1], kh = tw->dims[2], kw = tw->dims[3], og = t->dims[1] / t->groups;
    const int64_t *s = t->step + 2, *d = t->dilation + 2;
    int64_t at = 0;
    for (int64_t n = 0; n < t->dims[0]; n++)
        for (int64_t o = 0; o < t->dims[1]; o++)
            for (int64_t a = 0; a < t->dims[2]; a++)
                for (int64_t b = 0; b < t->dims[3]; b++) {
                    double acc = 0;
                    for (int64_t ci = 0; ci < cg; ci++) {
                        int64_t plane = (n * C + o / og * cg + ci) * H;
                        for (int64_t i = 0; i < kh; i++)
                            for (int64_t j = 0; j < kw; j++)
                                acc += ir_load_f(tw->dtype, w, ((o * cg + ci) * kh + i) * kw + j) *
                                       ir_load_f(tx->dtype, x,
                                                 (plane + a * s[0] + i * d[0]) * W + b * s[1] +
                                                     j * d[1]);
                    }
                    ir_store_f(t->dtype, out, at++, acc);
                }
}

/* Whether query row `row` (of all batches' T rows) attends to key j under
 * the bool mask mk (..., T, S), if any. */
static bool attends(const bool *mk, int64_t S, int64_t row, int64_t j)
{
    return !mk || mk[row * S + j];
}

/* sdpa: per batch and row i, p_j = exp(s q_i.k_j - max) over the keys j it
 * attends to (j <= i when causal; where the mask is true), out_i = sum_j p_j
 * v_j / sum_j p_j (0 for a row that attends to none, as PyTorch's
 * _safe_softmax), all in double from the operands' values with s the scale
 * rounded to the dtype; rounded once. */
static kiln_status sdpa(ictx *c, const kiln_tensor *t, const void *q, const void *k, const void *v,
                        void *out)
{
    const kiln_tensor *mask = ir_attention_mask(t);
    const bool *mk = mask ? c->val[mask->id] : NULL;
    const kiln_tensor *tk = t->in[1];
    int r = t->rank;
    int64_t T = t->dims[r - 2], Dv = t->dims[r - 1], S = tk->dims[r - 2], D = tk->dims[r - 1];
    int64_t batch = ir_shape_numel(r - 2, t->dims);
    double scale = t->dtype == KILN_F32 ? (double)(float)t->value : t->value; /* as stored */
    double *p = ir_alloc(sizeof(double) * (size_t)(S + 1)),
           *acc = ir_alloc(sizeof(double) * (size_t)(Dv + 1));
    if (!p || !acc) {
        ir_free(p);
        ir_free(acc);
        return oom(c);
    }
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < T; i++) {
            int64_t n = t->causal ? (i + 1 < S ? i + 1 : S) : S;
            double mx = -(double)INFINITY, sum = 0;
            for (int64_t j = 0; j < n; j++) {
                if (!attends(mk, S, b * T + i, j))
                    continue;
                double dot = 0;
                for (int64_t d = 0; d < D; d++)
                    dot += ir_load_f(t->dtype, q, (b * T + i) * D + d) *
                           ir_load_f(t->dtype, k, (b * S + j) * D + d);
                p[j] = dot * scale;
                mx = p[j] > mx ? p[j] : mx;
            }
            for (int64_t e = 0; e < Dv; e++)
                acc[e] = 0;
            for (int64_t j = 0; j < n; j++) {
                if (!attends(mk, S, b * T + i, j))
                    continue;
                p[j] = exp(p[j] - mx);
                sum += p[j];
                for (int64_t e = 0; e < Dv; e++)
                    acc[e] += p[j] * ir_load_f(t->dtype, v, (b * S + j) * Dv + e);
            }
            for (int64_t e = 0; e < Dv; e++)
                ir_store_f(t->dtype, out, (b * T + i) * Dv + e, sum > 0 ? acc[e] / sum : 0.0);
        }
    ir_free(p);
    ir_free(acc);
    return KILN_OK;
}

/* sdpa's backward (FlashAttention-2's, in double): with the scores
 * s_ij = scale q_i.k_j of the keys row i sees, lse_i = log sum_j exp(s_ij),
 * p_ij = exp(s_ij - lse_i), dp_ij = g_i.v_j and D_i = sum_j p_ij dp_ij,
 * sdpa_stats gives (lse_i, D_i); sdpa_grad gives dq_i = scale sum_j p_ij
 * (dp_ij - D_i) k_j, dk_j = scale sum_i p_ij (dp_ij - D_i) q_i or
 * dv_j = sum_i p_ij g_i, from the stats. */
typedef struct {
    kiln_dtype dt;
    const void *q, *k, *v, *g;
    const double *st;
    const bool *mask; /* (..., T, S), or NULL */
    int64_t T, S, D, Dv;
    double scale;
} bw_in;

static double bw_dot(const bw_in *w, const void *a, int64_t ia, const void *b, int64_t ib,
                     int64_t n)
{
    double s = 0;
    for (int64_t d = 0; d < n; d++)
        s += ir_load_f(w->dt, a, ia + d) * ir_load_f(w->dt, b, ib + d);
    return s;
}

static kiln_status sdpa_backward(ictx *c, const kiln_tensor *t, void *out)
{
    const kiln_tensor *q = t->in[0];
    int r = q->rank;
    bw_in w = {.dt = q->dtype,
               .q = c->val[t->in[0]->id],
               .k = c->val[t->in[1]->id],
               .v = c->val[t->in[2]->id],
               .g = c->val[t->in[3]->id],
               .st = t->op == IR_SDPA_GRAD ? c->val[t->in[4]->id] : NULL,
               .mask = ir_attention_mask(t) ? c->val[ir_attention_mask(t)->id] : NULL,
               .T = q->dims[r - 2],
               .D = q->dims[r - 1],
               .S = t->in[1]->dims[r - 2],
               .Dv = t->in[2]->dims[r - 1],
               .scale = q->dtype == KILN_F32 ? (double)(float)t->value : t->value};
    int64_t batch = ir_shape_numel(r - 2, q->dims), cols = t->dims[r - 1];
    int64_t rows = t->dims[r - 2];
    double *acc = ir_alloc(sizeof(double) * (size_t)(cols + 1));
    if (!acc)
        return oom(c);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t x = 0; x < rows; x++) {
            for (int64_t e = 0; e < cols; e++)
                acc[e] = 0;
            if (t->op == IR_SDPA_STATS) { /* x: a query row */
                int64_t n = t->causal ? (x + 1 < w.S ? x + 1 : w.S) : w.S;
                double mx = -(double)INFINITY, l = 0, dsum = 0;
                for (int64_t j = 0; j < n; j++) {
                    if (!attends(w.mask, w.S, b * w.T + x, j))
                        continue;
                    double s = w.scale *
                               bw_dot(&w, w.q, (b * w.T + x) * w.D, w.k, (b * w.S + j) * w.D, w.D);
                    mx = s > mx ? s : mx;
                }
                for (int64_t j = 0; j < n; j++)
                    if (attends(w.mask, w.S, b * w.T + x, j))
                        l += exp(w.scale * bw_dot(&w, w.q, (b * w.T + x) * w.D, w.k,
                                                  (b * w.S + j) * w.D, w.D) -
                                 mx);
                double lse = l > 0 ? mx + log(l) : -(double)INFINITY;
                for (int64_t j = 0; j < n; j++)
                    if (attends(w.mask, w.S, b * w.T + x, j))
                        dsum +=
                            exp(w.scale * bw_dot(&w, w.q, (b * w.T + x) * w.D, w.k,
                                                 (b * w.S + j) * w.D, w.D) -
                                lse) *
                            bw_dot(&w, w.g, (b * w.T + x) * w.Dv, w.v, (b * w.S + j) * w.Dv, w.Dv);
                acc[0] = lse;
                acc[1] = dsum;
            } else if (t->axis == 0) { /* dq: x is a query row i, over its keys */
                int64_t n = t->causal ? (x + 1 < w.S ? x + 1 : w.S) : w.S;
                double lse = w.st[(b * w.T + x) * 2], dd = w.st[(b * w.T + x) * 2 + 1];
                for (int64_t j = 0; j < n; j++) {
                    if (!attends(w.mask, w.S, b * w.T + x, j))
                        continue;
                    double p = exp(w.scale * bw_dot(&w, w.q, (b * w.T + x) * w.D, w.k,
                                                    (b * w.S + j) * w.D, w.D) -
                                   lse);
                    double ds = p * (bw_dot(&w, w.g, (b * w.T + x) * w.Dv, w.v,
                                            (b * w.S + j) * w.Dv, w.Dv) -
                                     dd);
                    for (int64_t e = 0; e < cols; e++)
                        acc[e] += w.scale * ds * ir_load_f(w.dt, w.k, (b * w.S + j) * w.D + e);
                }
            } else { /* dk, dv: x is a key row j, over the queries that see it */
                for (int64_t i = t->causal ? x : 0; i < w.T; i++) {
                    if (!attends(w.mask, w.S, b * w.T + i, x))
                        continue;
                    double lse = w.st[(b * w.T + i) * 2], dd = w.st[(b * w.T + i) * 2 + 1];
                    double p = exp(w.scale * bw_dot(&w, w.q, (b * w.T + i) * w.D, w.k,
                                                    (b * w.S + x) * w.D, w.D) -
                                   lse);
                    if (t->axis == 2) {
                        for (int64_t e = 0; e < cols; e++)
                            acc[e] += p * ir_load_f(w.dt, w.g, (b * w.T + i) * w.Dv + e);
                        continue;
                    }
                    double ds = p * (bw_dot(&w, w.g, (b * w.T + i) * w.Dv, w.v,
                                            (b * w.S + x) * w.Dv, w.Dv) -
                                     dd);
                    for (int64_t e = 0; e < cols; e++)
                        acc[e] += w.scale * ds * ir_load_f(w.dt, w.q, (b * w.T + i) * w.D + e);
                }
            }
            for (int64_t e = 0; e < cols; e++)
                ir_store_f(t->dtype, out, (b * rows + x) * cols + e, acc[e]);
        }
    ir_free(acc);
    return KILN_OK;
}

/* ---- indexing ------------------------------------------------------------------------ */

/* Every id must lie in [0, size): PyTorch's indexing message otherwise. */
static kiln_status check_ids(ictx *c, const kiln_tensor *ids, const void *idv, int axis,
                             int64_t size)
{
    int64_t n = ir_numel(ids);
    for (int64_t j = 0; j < n; j++) {
        int64_t id = ir_load_i(ids->dtype, idv, j);
        if (id < 0 || id >= size)
            return rt_fail(c->m, KILN_ERR_INVALID,
                           "kiln_module_run: index %lld is out of bounds for dimension %d with "
                           "size %lld",
                           (long long)id, axis, (long long)size);
    }
    return KILN_OK;
}

/* out[o, j, r] = table[o, ids[j], r] */
static kiln_status gather(ictx *c, const kiln_tensor *t, const void *table, const void *idv,
                          void *out)
{
    const kiln_tensor *tt = t->in[0], *ids = t->in[1];
    int ax = t->axis;
    int64_t S = tt->dims[ax], outer = ir_shape_numel(ax, tt->dims);
    int64_t inner = ir_shape_numel(tt->rank - ax - 1, tt->dims + ax + 1), nid = ir_numel(ids);
    kiln_status s = check_ids(c, ids, idv, ax, S);
    if (s != KILN_OK)
        return s;
    size_t row = (size_t)inner * kiln_dtype_size(t->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < nid; j++) {
            int64_t id = ir_load_i(ids->dtype, idv, j);
            memcpy((char *)out + (size_t)(o * nid + j) * row,
                   (const char *)table + (size_t)(o * S + id) * row, row);
        }
    return KILN_OK;
}

/* out = zeros(t->dims); out[o, ids[j], r] += src[o, j, r], summed in double / int64. */
static kiln_status scatter_add(ictx *c, const kiln_tensor *t, const void *src, const void *idv,
                               void *out)
{
    const kiln_tensor *ts = t->in[0], *ids = t->in[1];
    int ax = t->axis;
    int64_t S = t->dims[ax], outer = ir_shape_numel(ax, t->dims);
    int64_t inner = ir_shape_numel(t->rank - ax - 1, t->dims + ax + 1), nid = ir_numel(ids);
    int64_t n = ir_numel(t);
    kiln_status s = check_ids(c, ids, idv, ax, S);
    if (s != KILN_OK)
        return s;
    bool fl = ir_dtype_is_float(t->dtype);
    double *accf = fl ? ir_alloc(sizeof(double) * (size_t)(n + 1)) : NULL;
    int64_t *acci = fl ? NULL : ir_alloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!accf && !acci)
        return oom(c);
    for (int64_t i = 0; i < n; i++)
        if (fl)
            accf[i] = 0;
        else
            acci[i] = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < nid; j++) {
            int64_t id = ir_load_i(ids->dtype, idv, j);
            for (int64_t r = 0; r < inner; r++) {
                int64_t si = (o * nid + j) * inner + r, di = (o * S + id) * inner + r;
                if (fl)
                    accf[di] += ir_load_f(ts->dtype, src, si);
                else
                    acci[di] = wrap_add(acci[di], ir_load_i(ts->dtype, src, si));
            }
        }
    for (int64_t i = 0; i < n; i++)
        if (fl)
            ir_store_f(t->dtype, out, i, accf[i]);
        else
            ir_store_i(t->dtype, out, i, acci[i]);
    ir_free(accf);
    ir_free(acci);
    return KILN_OK;
}

/* ---- one node ------------------------------------------------------------------------ */

/* Computes node t into out (a fresh buffer of t's size); operands are in c->val. */
static kiln_status eval(ictx *c, const kiln_tensor *t, void *out)
{
    const void *x = t->nin > 0 ? c->val[t->in[0]->id] : NULL;
    const void *y = t->nin > 1 ? c->val[t->in[1]->id] : NULL;
    switch (t->op) {
    case IR_INPUT:
    case IR_PARAM: return KILN_OK; /* never computed: their value is the module's buffer */
    case IR_CONST:
        if (nbytes_of(t))
            memcpy(out, t->data, nbytes_of(t));
        return KILN_OK;
    case IR_FULL: fill_full(t, out); return KILN_OK;
    case IR_ARANGE: fill_arange(t, out); return KILN_OK;
    case IR_RAND: fill_random(c, t, out, false); return KILN_OK;
    case IR_RANDN: fill_random(c, t, out, true); return KILN_OK;
    case IR_NEG: unary(t, x, out, f_neg, i_neg); return KILN_OK;
    case IR_ABS: unary(t, x, out, fabs, i_abs); return KILN_OK;
    case IR_EXP: unary(t, x, out, exp, NULL); return KILN_OK;
    case IR_LOG: unary(t, x, out, log, NULL); return KILN_OK;
    case IR_LOG1P: unary(t, x, out, log1p, NULL); return KILN_OK;
    case IR_SQRT: unary(t, x, out, sqrt, NULL); return KILN_OK;
    case IR_RSQRT: unary(t, x, out, f_rsqrt, NULL); return KILN_OK;
    case IR_SIN: unary(t, x, out, sin, NULL); return KILN_OK;
    case IR_COS: unary(t, x, out, cos, NULL); return KILN_OK;
    case IR_TANH: unary(t, x, out, tanh, NULL); return KILN_OK;
    case IR_ERF: unary(t, x, out, erf, NULL); return KILN_OK;
    case IR_SIGMOID: unary(t, x, out, f_sigmoid, NULL); return KILN_OK;
    case IR_RELU: unary(t, x, out, f_relu, i_relu); return KILN_OK;
    case IR_DETACH: unary(t, x, out, f_id, i_id); return KILN_OK;
    case IR_CAST: cast(t, x, out); return KILN_OK;
    case IR_ADD: return binary(c, t, x, y, out, f_add, i_add);
    case IR_SUB: return binary(c, t, x, y, out, f_sub, i_sub);
    case IR_MUL: return binary(c, t, x, y, out, f_mul, i_mul);
    case IR_DIV: return binary(c, t, x, y, out, f_div, i_div);
    case IR_POW: return binary(c, t, x, y, out, pow, i_pow);
    case IR_MAXIMUM: return binary(c, t, x, y, out, f_max, i_max);
    case IR_MINIMUM: return binary(c, t, x, y, out, f_min, i_min);
    case IR_EQ: compare(t, x, y, out, C_EQ); return KILN_OK;
    case IR_NE: compare(t, x, y, out, C_NE); return KILN_OK;
    case IR_LT: compare(t, x, y, out, C_LT); return KILN_OK;
    case IR_LE: compare(t, x, y, out, C_LE); return KILN_OK;
    case IR_GT: compare(t, x, y, out, C_GT); return KILN_OK;
    case IR_GE: compare(t, x, y, out, C_GE); return KILN_OK;
    case IR_WHERE: where(t, x, y, c->val[t->in[2]->id], out); return KILN_OK;
    case IR_SUM: return reduce(c, t, x, out, R_SUM);
    case IR_MAX: return reduce(c, t, x, out, R_MAX);
    case IR_MIN: return reduce(c, t, x, out, R_MIN);
    case IR_ARGMAX: return reduce(c, t, x, out, R_ARGMAX);
    case IR_ARGMIN: return reduce(c, t, x, out, R_ARGMIN);
    case IR_RESHAPE:
        if (nbytes_of(t))
            memcpy(out, x, nbytes_of(t));
        return KILN_OK;
    case IR_PERMUTE: permute(t, x, out); return KILN_OK;
    case IR_EXPAND: expand(t, x, out); return KILN_OK;
    case IR_SLICE: slice(t, x, out); return KILN_OK;
    case IR_PAD: pad(t, x, out); return KILN_OK;
    case IR_CONCAT: concat(c, t, out); return KILN_OK;
    case IR_MATMUL: return matmul(c, t, x, y, out);
    case IR_CONV: conv(t, x, y, out); return KILN_OK;
    case IR_SDPA: return sdpa(c, t, x, y, c->val[t->in[2]->id], out);
    case IR_SDPA_STATS:
    case IR_SDPA_GRAD: return sdpa_backward(c, t, out);
    case IR_GATHER: return gather(c, t, x, y, out);
    case IR_SCATTER_ADD: return scatter_add(c, t, x, y, out);
    case IR_ASSIGN: /* the value; the param changes when the entry commits */
        if (nbytes_of(t))
            memcpy(out, y, nbytes_of(t));
        return KILN_OK;
    case IR_OP_COUNT: break;
    }
    return rt_fail(c->m, KILN_ERR_INVALID, "kiln_module_run: node %%%d has no op", t->id);
}

/* ---- an entry -------------------------------------------------------------------------- */

static void release(ictx *c, int n)
{
    for (int i = 0; i < n; i++)
        if (c->owned[i])
            ir_free(c->val[i]);
}

static kiln_status compute(ictx *c, const ir_entry *x, const bool *needed)
{
    kiln_graph *g = c->m->g;
    for (int i = 0; i < g->nnodes; i++)
        c->last_use[i] = -1;
    for (int i = 0; i < g->nnodes; i++)
        if (needed[i])
            for (int k = 0; k < g->nodes[i]->nin; k++)
                c->last_use[g->nodes[i]->in[k]->id] = i;
    for (int k = 0; k < x->n; k++)
        c->last_use[x->outputs[k]->id] = INT_MAX;
    for (int i = 0; i < g->nnodes; i++) {
        if (!needed[i])
            continue;
        kiln_tensor *t = g->nodes[i];
        if (t->op == IR_INPUT || t->op == IR_PARAM) {
            c->val[i] = rt_leaf(c->m, t)->data;
            continue;
        }
        size_t nb = nbytes_of(t);
        c->val[i] = ir_alloc(nb ? nb : 1);
        if (!c->val[i])
            return oom(c);
        c->owned[i] = true;
        kiln_status s = eval(c, t, c->val[i]);
        if (s != KILN_OK)
            return s;
        for (int k = 0; k < t->nin; k++) {
            int id = t->in[k]->id;
            if (c->last_use[id] == i && c->owned[id]) {
                ir_free(c->val[id]);
                c->val[id] = NULL;
                c->owned[id] = false;
            }
        }
    }
    return KILN_OK;
}

static kiln_status interp_run(kiln_module *m, int e, const bool *needed)
{
    kiln_graph *g = m->g;
    const ir_entry *x = &g->entries[e];
    size_t n = (size_t)(g->nnodes ? g->nnodes : 1);
    ictx c = {m, ir_alloc(sizeof(void *) * n), ir_alloc(sizeof(bool) * n),
              ir_alloc(sizeof(int) * n)};
    kiln_status s = KILN_OK;
    if (!c.val || !c.owned || !c.last_use) {
        s = oom(&c);
    } else {
        memset(c.val, 0, sizeof(void *) * n);
        memset(c.owned, 0, sizeof(bool) * n);
        s = compute(&c, x, needed);
    }
    if (s == KILN_OK) {
        /* outputs first (an output that is a param shows its old value) ... */
        for (int k = 0; k < x->n; k++) {
            rt_buf *b = &m->bufs[m->entry_buf[e] + k];
            if (b->nbytes)
                memmove(b->data, c.val[x->outputs[k]->id], b->nbytes);
        }
        /* ... then the assignments, in output order */
        for (int k = 0; k < x->n; k++) {
            const kiln_tensor *t = x->outputs[k];
            if (t->op != IR_ASSIGN)
                continue;
            rt_buf *p = rt_leaf(m, t->in[0]);
            if (p->nbytes)
                memmove(p->data, c.val[t->id], p->nbytes);
        }
    }
    if (c.val && c.owned && c.last_use)
        release(&c, g->nnodes);
    ir_free(c.val);
    ir_free(c.owned);
    ir_free(c.last_use);
    return s;
}

const rt_executor rt_interp = {"interpreter", interp_run, NULL, NULL, NULL, NULL, NULL};
