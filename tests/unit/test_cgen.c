/*
 * test_cgen.c - the C renderer (codegen/c): hand-built kernel-IR programs are
 * rendered, compiled with the system C compiler into a shared object, loaded
 * and run; the values are checked against the interpreter's element rules
 * (runtime/interp.c, ir_store_f/ir_store_i, ir/philox.c).
 */
#include "codegen/c/cgen.h"
#include "ir/abi.h"
#include "ir/kernel.h"
#include "testutil.h"

#include <dlfcn.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

KILN_CTX_DEF

typedef int (*entry_fn)(kiln_ctx *ctx);

/* ---- building programs -------------------------------------------------------- */

static kprogram *prog_new(void)
{
    kprogram *p = ir_alloc(sizeof *p);
    assert_non_null(p);
    memset(p, 0, sizeof *p);
    return p;
}

static int buf(kprogram *p, kiln_dtype dt, int64_t n)
{
    int b = kp_buf_add(
        p, (kbuf){.role = KB_TEMP, .dtype = dt, .numel = n, .node = -1, .entry = -1, .index = -1});
    assert_true(b >= 0);
    return b;
}

static kernel *kern(kprogram *p, kk_kind kind, const char *ops, int rank, const int64_t *dims)
{
    kernel *k = kp_kernel_new(p, kind);
    assert_non_null(k);
    snprintf(k->name, sizeof k->name, "k%d_%s", k->id, ops);
    k->rank = rank;
    for (int i = 0; i < rank; i++)
        k->dims[i] = dims[i];
    return k;
}

static int nx(kernel *k, kx_node n)
{
    int i = kk_expr(k, n);
    assert_true(i >= 0);
    return i;
}

static int var(kernel *k, int v)
{
    int i = kk_var(k, v);
    assert_true(i >= 0);
    return i;
}

static int ci(kernel *k, int64_t v)
{
    int i = kk_const_i(k, KILN_I64, v);
    assert_true(i >= 0);
    return i;
}

static int op(kernel *k, ir_op o, kiln_dtype dt, int a, int b, int c)
{
    int ar = ir_ops[o].arity;
    return nx(
        k,
        (kx_node){.kind = KX_OP, .dtype = dt, .op = o, .a = {a, ar >= 2 ? b : 0, ar >= 3 ? c : 0}});
}

static int ld(kernel *k, const kprogram *p, int b, int idx)
{
    return nx(k, (kx_node){.kind = KX_LOAD, .dtype = p->bufs[b].dtype, .buf = b, .a = {idx}});
}

static void st(kernel *k, int b, int idx, int v, bool acc)
{
    assert_true(kk_store_add(k, (kk_store){b, idx, v, acc, false}) >= 0);
}

/* v0 * d1 + v1 */
static int lin2(kernel *k, int64_t d1)
{
    return op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, var(k, 0), ci(k, d1), 0), var(k, 1), 0);
}

static int cast(kernel *k, int x, kiln_dtype dt)
{
    return k->x[x].dtype == dt ? x : op(k, IR_CAST, dt, x, 0, 0);
}

/* ---- compiling and running ------------------------------------------------------ */

typedef struct {
    char dir[64];
    char *src;
    void *so;
} built;

/* Extra compiler flags of the next builds (test_rng_chunks: -march=native),
 * and their cgen_opts.stream_min (test_streamed_stores). */
static const char *build_flags = "";
static int64_t build_stream_min = 0;

static void build(built *B, const kprogram *p, bool openmp)
{
    /* KILN_OPENMP=0 (the sanitizer run): OpenMP pragmas are still rendered
     * but compiled without -fopenmp, as the runtime does */
    const char *env = getenv("KILN_OPENMP");
    bool compile_omp = openmp && !(env && strcmp(env, "0") == 0);
    cgen_opts o = {.openmp = openmp,
                   .debug_comments = true,
                   .features = cgen_host_features(),
                   .stream_min = build_stream_min};
    B->src = cgen_c(p, &o);
    assert_non_null(B->src);
    strcpy(B->dir, "/tmp/kiln_cgen_XXXXXX");
    assert_non_null(mkdtemp(B->dir));
    char path[128], so[128], log[128], cmd[1024];
    snprintf(path, sizeof path, "%s/k.c", B->dir);
    snprintf(so, sizeof so, "%s/k.so", B->dir);
    snprintf(log, sizeof log, "%s/log", B->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(B->src, f);
    fclose(f);
    int rc = 1;
    /* e.g. KILN_TEST_CFLAGS="-fsanitize=undefined -fsanitize-trap=undefined" */
    const char *extra = getenv("KILN_TEST_CFLAGS");
    for (int attempt = compile_omp ? 0 : 1; attempt < 2 && rc != 0; attempt++) {
        snprintf(cmd, sizeof cmd,
                 "clang -std=c99 -O2 -fPIC -shared -Wall -Wextra -Wno-unknown-pragmas -Werror %s "
                 "%s %s -o %s %s -lm > %s 2>&1",
                 attempt == 0 ? "-fopenmp" : "", extra ? extra : "", build_flags, so, path, log);
        rc = system(cmd);
    }
    if (rc != 0) {
        char *msg = ku_read_file(log, NULL);
        fail_msg("generated C does not compile (%s):\n%s", path, msg ? msg : "");
    }
    B->so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(B->so);
}

static int run(const built *B, int entry, kiln_ctx *ctx)
{
    char name[32];
    snprintf(name, sizeof name, "kiln_entry_%d", entry);
    void *sym = dlsym(B->so, name);
    assert_non_null(sym);
    entry_fn fn;
    memcpy(&fn, &sym, sizeof fn);
    return fn(ctx);
}

static void unbuild(built *B)
{
    char path[128];
    if (B->so)
        dlclose(B->so);
    const char *files[] = {"k.c", "k.so", "log"};
    for (int i = getenv("KILN_TEST_KEEP") ? 3 : 0; i < 3; i++) { /* keep: to read the source */
        snprintf(path, sizeof path, "%s/%s", B->dir, files[i]);
        unlink(path);
    }
    if (!getenv("KILN_TEST_KEEP"))
        rmdir(B->dir);
    ir_free(B->src);
}

/* Host storage for every buffer of p. */
typedef struct {
    void **bufs;
    int n;
} store_set;

static store_set alloc_bufs(const kprogram *p)
{
    store_set s = {calloc((size_t)p->nbufs + 1, sizeof(void *)), p->nbufs};
    assert_non_null(s.bufs);
    for (int i = 0; i < p->nbufs; i++) {
        s.bufs[i] = calloc((size_t)p->bufs[i].numel + 1, 8);
        assert_non_null(s.bufs[i]);
    }
    return s;
}

static void free_bufs(store_set *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->bufs[i]);
    free(s->bufs);
}

static kiln_ctx ctx_of(store_set *s)
{
    kiln_ctx c;
    memset(&c, 0, sizeof c);
    c.bufs = s->bufs;
    c.seed = 42;
    return c;
}

static bool close_to(double got, double want, double rel, double abs_tol)
{
    if (isnan(want))
        return isnan(got);
    if (isinf(want))
        return got == want;
    return fabs(got - want) <= abs_tol + rel * fabs(want);
}

/* ---- reference element functions (runtime/interp.c) ------------------------------ */

static double ref_float(ir_op o, double x, double y)
{
    if (o == IR_NEG)
        return -x;
    if (o == IR_ABS)
        return fabs(x);
    if (o == IR_EXP)
        return exp(x);
    if (o == IR_LOG)
        return log(x);
    if (o == IR_SQRT)
        return sqrt(x);
    if (o == IR_RSQRT)
        return 1.0 / sqrt(x);
    if (o == IR_SIN)
        return sin(x);
    if (o == IR_COS)
        return cos(x);
    if (o == IR_TANH)
        return tanh(x);
    if (o == IR_ERF)
        return erf(x);
    if (o == IR_SIGMOID)
        return 1.0 / (1.0 + exp(-x));
    if (o == IR_RELU)
        return x < 0 ? 0.0 : x;
    if (o == IR_ADD)
        return x + y;
    if (o == IR_SUB)
        return x - y;
    if (o == IR_MUL)
        return x * y;
    if (o == IR_DIV)
        return x / y;
    if (o == IR_POW)
        return pow(x, y);
    if (o == IR_MAXIMUM)
        return isnan(x) ? x : isnan(y) ? y : x > y ? x : y;
    if (o == IR_MINIMUM)
        return isnan(x) ? x : isnan(y) ? y : x < y ? x : y;
    if (o == IR_EQ)
        return x == y;
    if (o == IR_NE)
        return x != y;
    if (o == IR_LT)
        return x < y;
    if (o == IR_LE)
        return x <= y;
    if (o == IR_GT)
        return x > y;
    if (o == IR_GE)
        return x >= y;
    return (double)NAN;
}

static int64_t wrap(uint64_t v)
{
    return (int64_t)v;
}

static int64_t ref_int(ir_op o, int64_t x, int64_t y)
{
    if (o == IR_NEG)
        return wrap(0 - (uint64_t)x);
    if (o == IR_ABS)
        return x < 0 ? wrap(0 - (uint64_t)x) : x;
    if (o == IR_RELU)
        return x < 0 ? 0 : x;
    if (o == IR_ADD)
        return wrap((uint64_t)x + (uint64_t)y);
    if (o == IR_SUB)
        return wrap((uint64_t)x - (uint64_t)y);
    if (o == IR_MUL)
        return wrap((uint64_t)x * (uint64_t)y);
    if (o == IR_DIV && y == -1)
        return wrap(0 - (uint64_t)x);
    if (o == IR_DIV)
        return x / y - (x % y != 0 && ((x < 0) != (y < 0)));
    if (o == IR_POW) {
        uint64_t r = 1, a = (uint64_t)x;
        for (int64_t b = y; b; b >>= 1) {
            if (b & 1)
                r *= a;
            a *= a;
        }
        return wrap(r);
    }
    if (o == IR_MAXIMUM)
        return x > y ? x : y;
    if (o == IR_MINIMUM)
        return x < y ? x : y;
    if (o == IR_EQ)
        return x == y;
    if (o == IR_NE)
        return x != y;
    if (o == IR_LT)
        return x < y;
    if (o == IR_LE)
        return x <= y;
    if (o == IR_GT)
        return x > y;
    if (o == IR_GE)
        return x >= y;
    return 0;
}

/* ---- elementwise ------------------------------------------------------------------ */

static const ir_op unary_f[] = {IR_NEG, IR_ABS,  IR_EXP, IR_LOG,  IR_SQRT,    IR_RSQRT, IR_SIN,
                                IR_COS, IR_TANH, IR_ERF, IR_RELU, IR_SIGMOID, IR_DETACH};
static const ir_op binary_f[] = {IR_ADD, IR_SUB, IR_MUL, IR_DIV, IR_POW, IR_MAXIMUM, IR_MINIMUM,
                                 IR_EQ,  IR_NE,  IR_LT,  IR_LE,  IR_GT,  IR_GE};
#define NU (int)(sizeof unary_f / sizeof unary_f[0])
#define NB (int)(sizeof binary_f / sizeof binary_f[0])

/* Every float op of dtype dt over a [3, 4] domain, one output buffer each. */
static void float_ops(kiln_dtype dt, bool openmp)
{
    const double av[12] = {0.5, -1.25, 2, 3.5, -0.0, 7, (double)NAN, 1e-3, 100, -3, 0.75, 1.5};
    const double bv[12] = {2, 0.5, -3, 1.5, 1, -2, 4, (double)NAN, 0.25, 3, -0.75, 2.5};
    kprogram *p = prog_new();
    int a = buf(p, dt, 12), b = buf(p, dt, 12), out[NU + NB + 1];
    for (int i = 0; i < NU; i++)
        out[i] = buf(p, dt, 12);
    for (int i = 0; i < NB; i++)
        out[NU + i] = buf(p, ir_ops[binary_f[i]].flags & IR_F_CMP ? KILN_BOOL : dt, 12);
    out[NU + NB] = buf(p, dt, 12);
    kernel *k = kern(p, KK_POINTWISE, "float_ops", 2, (const int64_t[]){3, 4});
    int idx = lin2(k, 4), x = ld(k, p, a, idx), y = ld(k, p, b, idx);
    for (int i = 0; i < NU; i++)
        st(k, out[i], idx, op(k, unary_f[i], dt, x, 0, 0), false);
    for (int i = 0; i < NB; i++)
        st(k, out[NU + i], idx, op(k, binary_f[i], p->bufs[out[NU + i]].dtype, x, y, 0), false);
    int lt = op(k, IR_LT, KILN_BOOL, x, y, 0);
    st(k, out[NU + NB], idx, op(k, IR_WHERE, dt, lt, x, y), false);
    ku_entry_all(p);

    built B;
    build(&B, p, openmp);
    store_set s = alloc_bufs(p);
    for (int i = 0; i < 12; i++) {
        ir_store_f(dt, s.bufs[a], i, av[i]);
        ir_store_f(dt, s.bufs[b], i, bv[i]);
    }
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    double rel = dt == KILN_F32 ? 1e-5 : 1e-14, abs_tol = dt == KILN_F32 ? 1e-6 : 1e-300;
    for (int i = 0; i < 12; i++) {
        double x0 = ir_load_f(dt, s.bufs[a], i), y0 = ir_load_f(dt, s.bufs[b], i);
        for (int j = 0; j < NU; j++) {
            double want = unary_f[j] == IR_DETACH ? x0 : ref_float(unary_f[j], x0, 0);
            double got = ir_load_f(dt, s.bufs[out[j]], i);
            if (!close_to(got, dt == KILN_F32 ? (double)(float)want : want, rel, abs_tol))
                fail_msg("%s %s(%g) = %.17g, want %.17g", ir_dtype_kir(dt), ir_ops[unary_f[j]].name,
                         x0, got, want);
        }
        for (int j = 0; j < NB; j++) {
            double want = ref_float(binary_f[j], x0, y0);
            double got = ir_load_f(p->bufs[out[NU + j]].dtype, s.bufs[out[NU + j]], i);
            if (dt == KILN_F32 && !(ir_ops[binary_f[j]].flags & IR_F_CMP))
                want = (double)(float)want;
            if (!close_to(got, want, rel, abs_tol))
                fail_msg("%s %s(%g, %g) = %.17g, want %.17g", ir_dtype_kir(dt),
                         ir_ops[binary_f[j]].name, x0, y0, got, want);
        }
        double w = x0 < y0 ? x0 : y0, got = ir_load_f(dt, s.bufs[out[NU + NB]], i);
        assert_true(close_to(got, w, 0, 0));
    }
    /* + - * / round exactly as the interpreter's double rounded once */
    for (int i = 0; i < 12; i++)
        for (int j = 0; j < 4; j++) {
            double x0 = ir_load_f(dt, s.bufs[a], i), y0 = ir_load_f(dt, s.bufs[b], i);
            double want = ref_float(binary_f[j], x0, y0);
            if (dt == KILN_F32)
                want = (double)(float)want;
            double got = ir_load_f(dt, s.bufs[out[NU + j]], i);
            assert_true((isnan(want) && isnan(got)) || got == want);
        }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

static void test_float_ops(void **state)
{
    (void)state;
    float_ops(KILN_F32, false);
    float_ops(KILN_F32, true);
    float_ops(KILN_F64, true);
}

static const ir_op int_ops[] = {IR_ADD,     IR_SUB, IR_MUL, IR_DIV,  IR_POW,   IR_MAXIMUM,
                                IR_MINIMUM, IR_NEG, IR_ABS, IR_RELU, IR_EQ,    IR_NE,
                                IR_LT,      IR_LE,  IR_GT,  IR_GE,   IR_DETACH};
#define NI (int)(sizeof int_ops / sizeof int_ops[0])

/* Integer and bool ops: exact, wrapping as two's complement. */
static void integer_ops(kiln_dtype dt)
{
    enum { N = 10 };
    const int64_t av[N] = {INT64_MAX, INT64_MIN, -7, 7, 0, 5, -1, 3, 123456789, INT32_MIN};
    const int64_t bv[N] = {1, -1, 2, -2, 3, -5, 1, 7, -1000, -1};
    const int64_t ev[N] = {2, 3, 3, 0, 63, 1, 64, 40, 2, 1};
    kprogram *p = prog_new();
    int a = buf(p, dt, N), b = buf(p, dt, N), e = buf(p, dt, N), out[NI + 1];
    for (int i = 0; i < NI; i++)
        out[i] = buf(p, ir_ops[int_ops[i]].flags & IR_F_CMP ? KILN_BOOL : dt, N);
    out[NI] = buf(p, dt, N);
    kernel *k = kern(p, KK_POINTWISE, "int_ops", 1, (const int64_t[]){N});
    int idx = var(k, 0), x = ld(k, p, a, idx), y = ld(k, p, b, idx), z = ld(k, p, e, idx);
    for (int i = 0; i < NI; i++) {
        ir_op o = int_ops[i];
        int rhs = o == IR_POW ? z : y;
        st(k, out[i], idx, op(k, o, p->bufs[out[i]].dtype, x, rhs, 0), false);
    }
    st(k, out[NI], idx, op(k, IR_WHERE, dt, op(k, IR_GT, KILN_BOOL, x, y, 0), x, y), false);
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    store_set s = alloc_bufs(p);
    for (int i = 0; i < N; i++) {
        ir_store_i(dt, s.bufs[a], i, av[i]);
        ir_store_i(dt, s.bufs[b], i, dt == KILN_BOOL ? 1 : bv[i]); /* bool: no division by 0 */
        ir_store_i(dt, s.bufs[e], i, ev[i]);
    }
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    for (int i = 0; i < N; i++) {
        int64_t x0 = ir_load_i(dt, s.bufs[a], i), y0 = ir_load_i(dt, s.bufs[b], i);
        int64_t z0 = ir_load_i(dt, s.bufs[e], i);
        for (int j = 0; j < NI; j++) {
            ir_op o = int_ops[j];
            kiln_dtype od = p->bufs[out[j]].dtype;
            int64_t want = o == IR_DETACH ? x0 : ref_int(o, x0, o == IR_POW ? z0 : y0), w1;
            int64_t got = ir_load_i(od, s.bufs[out[j]], i);
            ir_store_i(od, &w1, 0, want);
            want = ir_load_i(od, &w1, 0);
            if (got != want)
                fail_msg("%s %s(%lld, %lld) = %lld, want %lld", ir_dtype_kir(dt), ir_ops[o].name,
                         (long long)x0, (long long)(o == IR_POW ? z0 : y0), (long long)got,
                         (long long)want);
        }
        assert_true(ir_load_i(dt, s.bufs[out[NI]], i) == (x0 > y0 ? x0 : y0));
    }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

static void test_integer_ops(void **state)
{
    (void)state;
    integer_ops(KILN_I64);
    integer_ops(KILN_I32);
    integer_ops(KILN_BOOL);
}

/* CAST between every pair of dtypes, as the interpreter's cast(). */
static void test_casts(void **state)
{
    (void)state;
    enum { N = 10 };
    const double fv[N] = {(double)NAN,      3e9,  -3e9, -2.7,  2.7,
                          (double)INFINITY, -0.0, 1e19, -1e19, 16777217};
    const int64_t iv[N] = {0,
                           1,
                           -1,
                           (int64_t)1 << 32 | 5,
                           INT64_MIN,
                           INT64_MAX,
                           (int64_t)1 << 53 | 1,
                           -123456789,
                           2147483648LL,
                           7};
    const kiln_dtype dts[5] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64, KILN_BOOL};
    kprogram *p = prog_new();
    int src[5], out[5][5];
    for (int i = 0; i < 5; i++)
        src[i] = buf(p, dts[i], N);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            out[i][j] = buf(p, dts[j], N);
    kernel *k = kern(p, KK_POINTWISE, "cast", 1, (const int64_t[]){N});
    int idx = var(k, 0);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            st(k, out[i][j], idx, cast(k, ld(k, p, src[i], idx), dts[j]), false);
    ku_entry_all(p);
    built B;
    build(&B, p, false);
    store_set s = alloc_bufs(p);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < 5; i++) {
            if (ir_dtype_is_float(dts[i]))
                ir_store_f(dts[i], s.bufs[src[i]], r, fv[r]);
            else
                ir_store_i(dts[i], s.bufs[src[i]], r, iv[r]);
        }
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    for (int r = 0; r < N; r++)
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 5; j++) {
                kiln_dtype xd = dts[i], od = dts[j];
                unsigned char want[8] = {0};
                if (od == KILN_BOOL)
                    ((bool *)want)[0] = ir_dtype_is_float(xd)
                                            ? ir_load_f(xd, s.bufs[src[i]], r) != 0
                                            : ir_load_i(xd, s.bufs[src[i]], r) != 0;
                else if (ir_dtype_is_float(xd))
                    ir_store_f(od, want, 0, ir_load_f(xd, s.bufs[src[i]], r));
                else
                    ir_store_i(od, want, 0, ir_load_i(xd, s.bufs[src[i]], r));
                size_t es = kiln_dtype_size(od);
                const unsigned char *got =
                    (const unsigned char *)s.bufs[out[i][j]] + es * (size_t)r;
                bool same = memcmp(got, want, es) == 0 ||
                            (ir_dtype_is_float(od) && isnan(ir_load_f(od, got, 0)) &&
                             isnan(ir_load_f(od, want, 0)));
                if (!same)
                    fail_msg("cast %s -> %s of row %d: got %.17g, want %.17g", ir_dtype_kir(xd),
                             ir_dtype_kir(od), r, ir_load_f(od, got, 0), ir_load_f(od, want, 0));
            }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* ---- random numbers ----------------------------------------------------------------- */

static void test_rng_bit_identical(void **state)
{
    (void)state;
    enum { N = 41 };
    const int64_t big = ((int64_t)1 << 34) + 3; /* the block index's high word is used */
    kprogram *p = prog_new();
    int out[8];
    for (int i = 0; i < 8; i++)
        out[i] = buf(p, i % 2 ? KILN_F64 : KILN_F32, N);
    kernel *k = kern(p, KK_POINTWISE, "rand_randn", 1, (const int64_t[]){N});
    int i0 = var(k, 0), ib = op(k, IR_ADD, KILN_I64, i0, ci(k, big), 0);
    for (int j = 0; j < 8; j++) {
        kx_kind kind = j & 2 ? KX_RANDN : KX_RAND;
        kiln_dtype dt = j % 2 ? KILN_F64 : KILN_F32;
        int at = j & 4 ? ib : i0;
        st(k, out[j], i0,
           nx(k, (kx_node){.kind = kind, .dtype = dt, .stream = 5u + (unsigned)j, .a = {at}}),
           false);
    }
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    store_set s = alloc_bufs(p);
    const uint64_t seeds[3] = {0, 42, 0x0123456789abcdefull};
    const uint32_t runs[3] = {0, 7, IR_RUN_INIT};
    for (int si = 0; si < 3; si++)
        for (int ri = 0; ri < 3; ri++) {
            kiln_ctx c = ctx_of(&s);
            c.seed = seeds[si];
            c.run = runs[ri];
            assert_int_equal(run(&B, 0, &c), 0);
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < N; i++) {
                    uint64_t at = (uint64_t)i + (j & 4 ? (uint64_t)big : 0);
                    uint32_t st5 = 5u + (unsigned)j;
                    if (j % 2) {
                        double want = j & 2 ? ir_randn_f64(seeds[si], st5, runs[ri], at)
                                            : ir_rand_f64(seeds[si], st5, runs[ri], at);
                        assert_memory_equal(&((double *)s.bufs[out[j]])[i], &want, sizeof want);
                    } else {
                        float want = j & 2 ? ir_randn_f32(seeds[si], st5, runs[ri], at)
                                           : ir_rand_f32(seeds[si], st5, runs[ri], at);
                        assert_memory_equal(&((float *)s.bufs[out[j]])[i], &want, sizeof want);
                    }
                }
        }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* f32 rand/randn indexed by (something outside the innermost loop) + the
 * innermost variable fill chunks of KILN_RCHUNK values, a Philox block per 4
 * elements (starting mid-block, several chunks per row, a ragged last one),
 * when a row has at least 64 (CGEN_RCHUNK_MIN); any other index, and shorter
 * rows, take the per-element helper. Both are the spec. */
static void rng_chunks(int64_t C)
{
    enum { R = 3 };
    bool chunked = C >= 64;
    kprogram *p = prog_new();
    int out[3];
    for (int i = 0; i < 3; i++)
        out[i] = buf(p, KILN_F32, R * C);
    kernel *k = kern(p, KK_POINTWISE, "rand_randn", 2, (const int64_t[]){R, C});
    int i0 = var(k, 0), i1 = var(k, 1);
    int row = op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, i0, ci(k, C), 0), i1, 0);
    int shifted = op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, i0, ci(k, C + 1), 0), i1, 0);
    int col = op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, i1, ci(k, R), 0), i0, 0);
    const int at[3] = {row, shifted, col};
    for (int j = 0; j < 3; j++)
        st(k, out[j], row,
           nx(k, (kx_node){.kind = j == 1 ? KX_RAND : KX_RANDN,
                           .dtype = KILN_F32,
                           .stream = 9u + (unsigned)j,
                           .a = {at[j]}}),
           false);
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    /* the first two fill chunks (long rows); the transposed index cannot */
    assert_true(!strstr(B.src, "kiln_randn_f32_chunk(ctx->seed, 9u") == !chunked);
    assert_true(!strstr(B.src, "kiln_rand_f32_chunk(ctx->seed, 10u") == !chunked);
    assert_true(!strstr(B.src, "kiln_randn_f32(ctx->seed, 9u") == chunked);
    assert_true(!strstr(B.src, "kiln_rand_f32(ctx->seed, 10u") == chunked);
    assert_non_null(strstr(B.src, "kiln_randn_f32(ctx->seed, 11u"));
    store_set s = alloc_bufs(p);
    kiln_ctx c = ctx_of(&s);
    c.seed = 77;
    c.run = 3;
    assert_int_equal(run(&B, 0, &c), 0);
    for (int64_t r = 0; r < R; r++)
        for (int64_t q = 0; q < C; q++) {
            float want[3] = {ir_randn_f32(77, 9, 3, (uint64_t)(r * C + q)),
                             ir_rand_f32(77, 10, 3, (uint64_t)(r * (C + 1) + q)),
                             ir_randn_f32(77, 11, 3, (uint64_t)(q * R + r))};
            for (int j = 0; j < 3; j++)
                assert_memory_equal(&((float *)s.bufs[out[j]])[r * C + q], &want[j], sizeof(float));
        }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* portable C, then this host's vector extensions (AVX-512: the intrinsics) */
static void test_rng_chunks(void **state)
{
    (void)state;
    const int64_t cols[] = {2100, 64, 63, 3};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        rng_chunks(cols[i]);
        build_flags = "-march=native";
        rng_chunks(cols[i]);
        build_flags = "";
    }
}

/* Stores of f32 rows contiguous along the innermost loop go around the caches
 * (kiln_stream_f32 a chunk at a time) when the kernel stores at least
 * stream_min bytes and its rows are at least 64 long: at a row's start, at an
 * offset from it (unaligned), beside random numbers filled by chunks; a
 * transposed store and an in-place update stay plain stores. The values are
 * exactly the plain stores'. */
static void streamed_stores(int64_t C)
{
    enum { R = 5 };
    bool streams = C >= 64;
    kprogram *p = prog_new();
    int x = buf(p, KILN_F32, R * (C + 1)), io = buf(p, KILN_F32, R * C), out[4];
    for (int i = 0; i < 4; i++)
        out[i] = buf(p, KILN_F32, R * (C + 1));
    kernel *k = kern(p, KK_POINTWISE, "mul_add_rand", 2, (const int64_t[]){R, C});
    int i0 = var(k, 0), i1 = var(k, 1);
    int row = lin2(k, C);
    int shifted = op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, i0, ci(k, C + 1), 0), i1, 0);
    int col = op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, i1, ci(k, R), 0), i0, 0);
    int xv = ld(k, p, x, shifted);
    int y = op(k, IR_ADD, KILN_F32,
               op(k, IR_MUL, KILN_F32, xv,
                  nx(k, (kx_node){.kind = KX_CONST, .dtype = KILN_F32, .value = 2}), 0),
               nx(k, (kx_node){.kind = KX_CONST, .dtype = KILN_F32, .value = 1}), 0);
    int rn = nx(k, (kx_node){.kind = KX_RAND, .dtype = KILN_F32, .stream = 5, .a = {row}});
    st(k, out[0], row, y, false);      /* streamed: the row's start */
    st(k, out[1], shifted, rn, false); /* streamed: an offset, random numbers */
    st(k, out[2], col, y, false);      /* transposed: plain */
    st(k, io, row, op(k, IR_ADD, KILN_F32, ld(k, p, io, row), y, 0), false); /* in place: plain */
    ku_entry_all(p);
    built B;
    build_stream_min = 1;
    build(&B, p, true);
    build_stream_min = 0;
    char want[64];
    for (int j = 0; j < 2; j++) {
        snprintf(want, sizeof want, "kiln_stream_f32(b%d", out[j]);
        if (!strstr(B.src, want) != !streams)
            fail_msg("C %lld: '%s' %s", (long long)C, want, streams ? "missing" : "unwanted");
    }
    for (int b2 = 0; b2 < 2; b2++) {
        snprintf(want, sizeof want, "kiln_stream_f32(b%d", b2 ? io : out[2]);
        assert_null(strstr(B.src, want));
    }
    store_set s = alloc_bufs(p);
    for (int64_t i = 0; i < R * (C + 1); i++)
        ((float *)s.bufs[x])[i] = (float)(i % 37) * 0.25f - 3;
    for (int64_t i = 0; i < R * C; i++)
        ((float *)s.bufs[io])[i] = (float)i;
    kiln_ctx c = ctx_of(&s);
    c.run = 2;
    assert_int_equal(run(&B, 0, &c), 0);
    for (int64_t r = 0; r < R; r++)
        for (int64_t q = 0; q < C; q++) {
            float xs = (float)((r * (C + 1) + q) % 37) * 0.25f - 3, yv = xs * 2 + 1;
            float rv = ir_rand_f32(42, 5, 2, (uint64_t)(r * C + q));
            float iv = (float)(r * C + q) + yv;
            assert_memory_equal(&((float *)s.bufs[out[0]])[r * C + q], &yv, sizeof yv);
            assert_memory_equal(&((float *)s.bufs[out[1]])[r * (C + 1) + q], &rv, sizeof rv);
            assert_memory_equal(&((float *)s.bufs[out[2]])[q * R + r], &yv, sizeof yv);
            assert_memory_equal(&((float *)s.bufs[io])[r * C + q], &iv, sizeof iv);
        }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

static void test_streamed_stores(void **state)
{
    (void)state;
    const int64_t cols[] = {2100, 64, 63};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        streamed_stores(cols[i]);
        build_flags = "-march=native";
        streamed_stores(cols[i]);
        build_flags = "";
    }
}

/* ---- reductions ---------------------------------------------------------------------- */

/* A REDUCE kernel of x (rows x cols, f32 or other) over axis `axis` (or both: -1). */
static void reduce_kernel(kprogram *p, ir_op rop, int x, int out, int64_t rows, int64_t cols,
                          int axis)
{
    kiln_dtype xd = p->bufs[x].dtype, od = p->bufs[out].dtype;
    bool fl = ir_dtype_is_float(xd);
    kernel *k = kp_kernel_new(p, KK_REDUCE);
    assert_non_null(k);
    snprintf(k->name, sizeof k->name, "k%d_%s", k->id, ir_ops[rop].name);
    k->rop = rop;
    k->acc_dtype = rop == IR_SUM                            ? (fl ? KILN_F64 : KILN_I64)
                   : (rop == IR_ARGMAX || rop == IR_ARGMIN) ? KILN_I64
                                                            : xd;
    int idx, oidx;
    if (axis == 1) {
        k->rank = 1, k->dims[0] = rows, k->rrank = 1, k->rdims[0] = cols;
        idx = lin2(k, cols);
        oidx = var(k, 0);
    } else if (axis == 0) {
        k->rank = 1, k->dims[0] = cols, k->rrank = 1, k->rdims[0] = rows;
        idx = op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, var(k, 1), ci(k, cols), 0), var(k, 0),
                 0);
        oidx = var(k, 0);
    } else {
        k->rank = 0, k->rrank = 2, k->rdims[0] = rows, k->rdims[1] = cols;
        idx = lin2(k, cols);
        oidx = ci(k, 0);
    }
    int body = ld(k, p, x, idx);
    if (rop == IR_SUM)
        body = cast(k, body, k->acc_dtype);
    k->body = body;
    int acc = nx(k, (kx_node){.kind = KX_ACC, .dtype = k->acc_dtype});
    st(k, out, oidx, cast(k, acc, od), false);
}

/* The interpreter's reduce() over n values at stride. */
static double ref_reduce(ir_op rop, const float *x, int64_t n, int64_t stride)
{
    double s = 0, best = (double)x[0];
    int64_t bi = 0;
    for (int64_t r = 0; r < n; r++) {
        double v = (double)x[r * stride];
        s += v;
        bool mx = rop == IR_MAX || rop == IR_ARGMAX;
        if (r > 0 && !isnan(best) && (isnan(v) || (mx ? v > best : v < best))) {
            best = v;
            bi = r;
        }
    }
    return rop == IR_SUM ? s : (rop == IR_ARGMAX || rop == IR_ARGMIN) ? (double)bi : best;
}

static void check_reduce(ir_op rop, kiln_dtype od, const void *got, const float *x, int64_t rows,
                         int64_t cols, int axis)
{
    int64_t nout = axis == 1 ? rows : axis == 0 ? cols : 1;
    for (int64_t o = 0; o < nout; o++) {
        double want = axis == 1   ? ref_reduce(rop, x + o * cols, cols, 1)
                      : axis == 0 ? ref_reduce(rop, x + o, rows, cols)
                                  : ref_reduce(rop, x, rows * cols, 1);
        double g = ir_load_f(od, got, o);
        if (!close_to(g, od == KILN_F32 ? (double)(float)want : want, 1e-5, 1e-6))
            fail_msg("%s axis %d, output %lld: got %.9g, want %.9g", ir_ops[rop].name, axis,
                     (long long)o, g, want);
    }
}

static void reductions(int64_t rows, int64_t cols, bool openmp, bool special)
{
    const ir_op rops[5] = {IR_SUM, IR_MAX, IR_MIN, IR_ARGMAX, IR_ARGMIN};
    kprogram *p = prog_new();
    int x = buf(p, KILN_F32, rows * cols), out[3][5];
    for (int a = 0; a < 3; a++)
        for (int r = 0; r < 5; r++) {
            int64_t n = a == 1 ? rows : a == 0 ? cols : 1;
            out[a][r] = buf(p, r >= 3 ? KILN_I64 : KILN_F32, n);
            reduce_kernel(p, rops[r], x, out[a][r], rows, cols, a == 2 ? -1 : a);
        }
    ku_entry_all(p);
    built B;
    build(&B, p, openmp);
    /* reductions of at most 16 elements are unrolled whole, longer ones not */
    if (rows <= 16 && cols <= 16)
        assert_non_null(strstr(B.src, "KILN_UNROLL\n"));
    else if (rows > 16 && cols > 16)
        assert_null(strstr(B.src, "KILN_UNROLL\n"));
    store_set s = alloc_bufs(p);
    float *xv = s.bufs[x];
    for (int64_t i = 0; i < rows * cols; i++)
        xv[i] = (float)sin((double)i * 0.37) * 10;
    if (special) {
        /* row 1 has a NaN (it wins, first one), row 2 ties (first index wins), row 3 is flat */
        xv[1 * cols + 3] = NAN;
        xv[1 * cols + 4] = NAN;
        xv[2 * cols + 1] = 50, xv[2 * cols + 4] = 50, xv[2 * cols + 0] = -50,
                      xv[2 * cols + 5] = -50;
        for (int64_t j = 0; j < cols; j++)
            xv[3 * cols + j] = 2;
    }
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    for (int a = 0; a < 3; a++)
        for (int r = 0; r < 5; r++)
            check_reduce(rops[r], p->bufs[out[a][r]].dtype, s.bufs[out[a][r]], xv, rows, cols,
                         a == 2 ? -1 : a);
    if (special) {
        assert_true(isnan(((float *)s.bufs[out[1][1]])[1]));
        assert_int_equal(((int64_t *)s.bufs[out[1][3]])[1], 3);
        assert_int_equal(((int64_t *)s.bufs[out[1][4]])[1], 3);
        assert_int_equal(((int64_t *)s.bufs[out[1][3]])[2], 1);
        assert_int_equal(((int64_t *)s.bufs[out[1][4]])[2], 0);
        assert_int_equal(((int64_t *)s.bufs[out[1][3]])[3], 0);
        assert_int_equal(((int64_t *)s.bufs[out[2][3]])[0], 1 * cols + 3); /* flat index */
    }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

static void test_reductions(void **state)
{
    (void)state;
    reductions(4, 6, false, true);
    reductions(4, 6, true, true);
    reductions(300, 257, true, false); /* parallel outer loops and a parallel whole sum */
    reductions(70, 100, false, false); /* sums over rows, 64 columns at a time */
}

static void test_integer_reductions(void **state)
{
    (void)state;
    kprogram *p = prog_new();
    int x = buf(p, KILN_I64, 6), y = buf(p, KILN_I32, 6), b = buf(p, KILN_BOOL, 6);
    int sum = buf(p, KILN_I64, 2), mx = buf(p, KILN_I32, 2), am = buf(p, KILN_I64, 2);
    int bmax = buf(p, KILN_BOOL, 2), bmin = buf(p, KILN_BOOL, 2);
    reduce_kernel(p, IR_SUM, x, sum, 2, 3, 1);
    reduce_kernel(p, IR_MAX, y, mx, 2, 3, 1);
    reduce_kernel(p, IR_ARGMIN, y, am, 2, 3, 1);
    reduce_kernel(p, IR_MAX, b, bmax, 2, 3, 1);
    reduce_kernel(p, IR_MIN, b, bmin, 2, 3, 1);
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    store_set s = alloc_bufs(p);
    int64_t xv[6] = {INT64_MAX, 1, 1, INT64_MIN, -1, 5};
    int32_t yv[6] = {INT32_MIN, INT32_MIN, -4, 3, 9, 9};
    bool bv[6] = {false, false, false, true, true, false};
    memcpy(s.bufs[x], xv, sizeof xv);
    memcpy(s.bufs[y], yv, sizeof yv);
    memcpy(s.bufs[b], bv, sizeof bv);
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    assert_true(((int64_t *)s.bufs[sum])[0] == INT64_MIN + 1); /* wraps */
    assert_true(((int64_t *)s.bufs[sum])[1] == INT64_MIN + 4);
    assert_int_equal(((int32_t *)s.bufs[mx])[0], -4);
    assert_int_equal(((int32_t *)s.bufs[mx])[1], 9);
    assert_int_equal(((int64_t *)s.bufs[am])[0], 0);
    assert_int_equal(((int64_t *)s.bufs[am])[1], 0);
    assert_true(((bool *)s.bufs[bmax])[0] == false && ((bool *)s.bufs[bmax])[1] == true);
    assert_true(((bool *)s.bufs[bmin])[0] == false && ((bool *)s.bufs[bmin])[1] == false);
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* ---- matmul ------------------------------------------------------------------------- */

/* out[b, i, j] = relu(A[b] @ B[b] + bias[j]) with A row-major and B stored
 * transposed (or not), accumulated in double. */
static void matmul_case(int64_t batch, int64_t m, int64_t kk, int64_t n, bool bt, bool at,
                        bool openmp)
{
    kprogram *p = prog_new();
    int a = buf(p, KILN_F32, batch * m * kk), b = buf(p, KILN_F32, batch * kk * n);
    int bias = buf(p, KILN_F32, n), out = buf(p, KILN_F32, batch * m * n);
    kernel *k = kp_kernel_new(p, KK_MATMUL);
    assert_non_null(k);
    snprintf(k->name, sizeof k->name, "k%d_matmul_add_relu", k->id);
    k->rank = 3;
    k->dims[0] = batch, k->dims[1] = m, k->dims[2] = n;
    k->mm = (kk_matmul){.a = a, .b = b, .batch = batch, .m = m, .n = n, .k = kk};
    int64_t sa[3] = {m * kk, kk, 1}, sat[3] = {m * kk, 1, m};
    int64_t sb[3] = {kk * n, n, 1}, sbt[3] = {kk * n, 1, kk};
    memcpy(k->mm.a_stride, at ? sat : sa, sizeof sa);
    memcpy(k->mm.b_stride, bt ? sbt : sb, sizeof sb);
    k->acc_dtype = KILN_F64;
    int acc = cast(k, nx(k, (kx_node){.kind = KX_ACC, .dtype = KILN_F64}), KILN_F32);
    int v = op(k, IR_ADD, KILN_F32, acc, ld(k, p, bias, var(k, 2)), 0);
    v = op(k, IR_RELU, KILN_F32, v, 0, 0);
    int idx = op(k, IR_ADD, KILN_I64,
                 op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, var(k, 0), ci(k, m * n), 0),
                    op(k, IR_MUL, KILN_I64, var(k, 1), ci(k, n), 0), 0),
                 var(k, 2), 0);
    st(k, out, idx, v, false);
    ku_entry_all(p);
    built B;
    build(&B, p, openmp);
    store_set s = alloc_bufs(p);
    float *av = s.bufs[a], *bv = s.bufs[b], *cv = s.bufs[bias], *ov = s.bufs[out];
    for (int64_t i = 0; i < batch * m * kk; i++)
        av[i] = (float)cos((double)i * 0.7);
    for (int64_t i = 0; i < batch * kk * n; i++)
        bv[i] = (float)sin((double)i * 1.3);
    for (int64_t i = 0; i < n; i++)
        cv[i] = (float)i * 0.1f - 0.5f;
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    const int64_t *as = k->mm.a_stride, *bs = k->mm.b_stride;
    for (int64_t q = 0; q < batch; q++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double sum = 0, mag = 0;
                for (int64_t l = 0; l < kk; l++) {
                    double t = (double)av[q * as[0] + i * as[1] + l * as[2]] *
                               (double)bv[q * bs[0] + l * bs[1] + j * bs[2]];
                    sum += t;
                    mag += fabs(t);
                }
                float want = (float)sum + cv[j];
                want = want < 0 ? 0 : want;
                float got = ov[(q * m + i) * n + j];
                /* f32 x f32 products sum in f32 within each k block of at most
                 * 512 (the schedule's KB, cgen_gemm_sched_ok; then in f64 across
                 * blocks), as BLAS does: the recursive-summation bound n u sum
                 * |a b| with u = 2^-24 on top of the 1e-5 contract, which it is
                 * for sums that do not cancel. */
                double blk = (double)(kk < 512 ? kk : 512) * 0x1p-24 * mag;
                if (!close_to((double)got, (double)want, 1e-5, 1e-6 + blk))
                    fail_msg("matmul [%lld, %lld, %lld] = %.9g, want %.9g", (long long)q,
                             (long long)i, (long long)j, (double)got, (double)want);
            }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

static void test_matmul(void **state)
{
    (void)state;
    matmul_case(2, 5, 7, 3, true, false, false);
    matmul_case(2, 5, 7, 3, false, true, true);
    matmul_case(1, 70, 300, 300, false, false, true); /* crosses every cache block */
    matmul_case(3, 33, 260, 257, true, true, true);
    /* row blocks (128) with a ragged last one, A packed once per row block
     * and batch, threaded and not */
    matmul_case(2, 300, 520, 70, false, false, true);
    matmul_case(1, 130, 300, 40, false, false, false);
    matmul_case(1, 520, 40, 33, false, true, true); /* full-height (256-row) blocks */
    matmul_case(1, 4, 0, 3, false, false, false);   /* k = 0: bias only */
    /* this host's vector extensions: AVX-512 packs transposed B by 16 x 16
     * register transposes (whole blocks, a ragged edge, zero-padded panels) */
    build_flags = "-march=native";
    matmul_case(1, 40, 300, 70, true, false, true);
    matmul_case(2, 33, 260, 257, true, true, true);
    matmul_case(1, 130, 33, 17, true, false, false);
    build_flags = "";
}

static void test_matmul_int(void **state)
{
    (void)state;
    kprogram *p = prog_new();
    int a = buf(p, KILN_I64, 4), b = buf(p, KILN_I64, 4), out = buf(p, KILN_I64, 4);
    kernel *k = kp_kernel_new(p, KK_MATMUL);
    assert_non_null(k);
    snprintf(k->name, sizeof k->name, "k%d_matmul", k->id);
    k->rank = 3;
    k->dims[0] = 1, k->dims[1] = 2, k->dims[2] = 2;
    k->mm = (kk_matmul){.a = a,
                        .b = b,
                        .batch = 1,
                        .m = 2,
                        .n = 2,
                        .k = 2,
                        .a_stride = {0, 2, 1},
                        .b_stride = {0, 2, 1}};
    k->acc_dtype = KILN_I64;
    int acc = nx(k, (kx_node){.kind = KX_ACC, .dtype = KILN_I64});
    st(k, out,
       op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, var(k, 1), ci(k, 2), 0), var(k, 2), 0), acc,
       false);
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    store_set s = alloc_bufs(p);
    int64_t av[4] = {INT64_MAX, 2, -3, 4}, bv[4] = {2, 1, 5, -7};
    memcpy(s.bufs[a], av, sizeof av);
    memcpy(s.bufs[b], bv, sizeof bv);
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    int64_t *o = s.bufs[out];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            uint64_t want = (uint64_t)av[i * 2] * (uint64_t)bv[j] +
                            (uint64_t)av[i * 2 + 1] * (uint64_t)bv[2 + j];
            assert_true(o[i * 2 + j] == (int64_t)want);
        }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* Matmuls of one layout and dtype share one tile function: rendered once,
 * called by each kernel; a transposed B gets the dot-product layout. */
static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *at = strstr(s, needle); at; at = strstr(at + 1, needle))
        n++;
    return n;
}

static void test_matmul_tile_functions_shared(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3, 4));
    kiln_tensor *w = kiln_input(g, "w", KILN_F32, KILN_SHAPE(4, 4));
    kiln_tensor *h = kiln_matmul(g, kiln_matmul(g, x, w), w);
    kiln_tensor *y = kiln_matmul(g, h, kiln_transpose(g, w, 0, 1));
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_OK);
    const char *src = kiln_module_source(m);
    /* f32 matmuls of every layout share the packed tile function (named with
     * its register block: one schedule here) */
    assert_int_equal(count(src, "void kiln_mm_packed_f64_f32_f32_"), 1);
    assert_int_equal(count(src, "kiln_mm_packed_f64_f32_f32_"), 1 + 3);
    assert_int_equal(count(src, "void kiln_mm_panels_"), 1);
    assert_int_equal(count(src, "kiln_mm_rows_"), 0);
    assert_int_equal(count(src, "kiln_mm_dot_"), 0);
    float xv[12], wv[16], got[12];
    for (int i = 0; i < 12; i++)
        xv[i] = (float)(i % 5) - 2;
    for (int i = 0; i < 16; i++)
        wv[i] = (float)(i % 3) - 1;
    assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
    assert_int_equal(kiln_module_set(m, "w", wv, sizeof wv), KILN_OK);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "f.0", got, sizeof got), KILN_OK);
    for (int i = 0; i < 3; i++) { /* small integers: exact in f32 */
        double a[4], b[4];
        for (int j = 0; j < 4; j++) {
            a[j] = 0;
            for (int l = 0; l < 4; l++)
                a[j] += (double)xv[i * 4 + l] * (double)wv[l * 4 + j];
        }
        for (int j = 0; j < 4; j++) {
            b[j] = 0;
            for (int l = 0; l < 4; l++)
                b[j] += a[l] * (double)wv[l * 4 + j];
        }
        for (int j = 0; j < 4; j++) {
            double want = 0;
            for (int l = 0; l < 4; l++)
                want += b[l] * (double)wv[j * 4 + l];
            assert_true(got[i * 4 + j] == (float)want);
        }
    }
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* The register-blocked tile paths (f32: the packed microkernel; other dtypes:
 * 4 x 16 ROWS blocks, 4 x 4 DOT blocks over 8-wide k) and every edge past
 * them, for float and integer dtypes: shapes that are not multiples of the
 * blocks, exact values (small integers). */
static void test_matmul_blocked_paths(void **state)
{
    (void)state;
    static const kiln_dtype dts[] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64};
    enum { M = 9, K = 37, N = 21 };
    for (int d = 0; d < 4; d++)
        for (int transposed = 0; transposed < 2; transposed++) {
            kiln_graph *g = ku_graph_new();
            kiln_tensor *a = kiln_input(g, "a", dts[d], KILN_SHAPE(M, K));
            kiln_tensor *b = transposed ? kiln_input(g, "b", dts[d], KILN_SHAPE(N, K))
                                        : kiln_input(g, "b", dts[d], KILN_SHAPE(K, N));
            kiln_tensor *y = kiln_matmul(g, a, transposed ? kiln_transpose(g, b, 0, 1) : b);
            assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
            kiln_module *m = NULL;
            assert_int_equal(kiln_compile(g, NULL, &m), KILN_OK);
            assert_non_null(strstr(kiln_module_source(m), dts[d] == KILN_F32 ? "kiln_mm_packed_"
                                                          : transposed       ? "kiln_mm_dot_"
                                                                             : "kiln_mm_rows_"));
            double av[M * K], bv[K * N];
            for (int i = 0; i < M * K; i++)
                av[i] = (double)((i * 7) % 11) - 5;
            for (int i = 0; i < K * N; i++)
                bv[i] = (double)((i * 5) % 13) - 6;
            size_t es = kiln_dtype_size(dts[d]);
            unsigned char ab[M * K * 8], bb[K * N * 8], yb[M * N * 8];
            for (int i = 0; i < M * K; i++)
                ku_store(dts[d], ab, i, av[i]);
            for (int i = 0; i < K * N; i++)
                ku_store(dts[d], bb, i, bv[i]);
            assert_int_equal(kiln_module_set(m, "a", ab, es * M * K), KILN_OK);
            assert_int_equal(kiln_module_set(m, "b", bb, es * K * N), KILN_OK);
            assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
            assert_int_equal(kiln_module_get(m, "f.0", yb, es * M * N), KILN_OK);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double want = 0;
                    for (int p = 0; p < K; p++)
                        want += av[i * K + p] * (transposed ? bv[j * K + p] : bv[p * N + j]);
                    if (ku_load(dts[d], yb, i * N + j) != want)
                        fail_msg("%s%s [%d, %d] = %g, want %g", kiln_dtype_name(dts[d]),
                                 transposed ? " (B transposed)" : "", i, j,
                                 ku_load(dts[d], yb, i * N + j), want);
                }
            kiln_module_free(m);
            kiln_graph_free(g);
        }
}

/* ---- parallel loops ---------------------------------------------------------------- */

/* Big enough for `omp parallel for`: a short first axis collapses with the
 * next, so nodes of the first loop move inside the second. */
static void test_parallel_loops(void **state)
{
    (void)state;
    enum { R = 3, C = 20000, RED = 8000 };
    kprogram *p = prog_new();
    int a = buf(p, KILN_F32, R * C), out = buf(p, KILN_F32, R * C);
    int x = buf(p, KILN_F64, 2 * 3 * RED), sum = buf(p, KILN_F64, 6);
    kernel *k = kern(p, KK_POINTWISE, "mul_add", 2, (const int64_t[]){R, C});
    int idx = lin2(k, C), row = cast(k, var(k, 0), KILN_F32);
    int v = op(k, IR_MUL, KILN_F32, ld(k, p, a, idx), kk_const_f(k, KILN_F32, 2), 0);
    st(k, out, idx, op(k, IR_ADD, KILN_F32, v, row, 0), false);
    k = kp_kernel_new(p, KK_REDUCE);
    assert_non_null(k);
    snprintf(k->name, sizeof k->name, "k%d_sum", k->id);
    k->rank = 2, k->dims[0] = 2, k->dims[1] = 3, k->rrank = 1, k->rdims[0] = RED;
    k->acc_dtype = KILN_F64;
    int o = op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, var(k, 0), ci(k, 3), 0), var(k, 1), 0);
    idx = op(k, IR_ADD, KILN_I64, op(k, IR_MUL, KILN_I64, o, ci(k, RED), 0), var(k, 2), 0);
    k->body = ld(k, p, x, idx);
    st(k, sum, o, nx(k, (kx_node){.kind = KX_ACC, .dtype = KILN_F64}), false);
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    assert_non_null(strstr(B.src, "collapse(2)"));
    store_set s = alloc_bufs(p);
    float *av = s.bufs[a];
    double *xv = s.bufs[x];
    for (int i = 0; i < R * C; i++)
        av[i] = (float)(i % 97) * 0.25f;
    for (int i = 0; i < 6 * RED; i++)
        xv[i] = (double)(i % 13) - 6;
    kiln_ctx c = ctx_of(&s);
    c.threads = 2;
    assert_int_equal(run(&B, 0, &c), 0);
    for (int i = 0; i < R * C; i++)
        assert_true(((float *)s.bufs[out])[i] == av[i] * 2 + (float)(i / C));
    for (int j = 0; j < 6; j++) {
        double want = 0;
        for (int i = 0; i < RED; i++)
            want += xv[j * RED + i];
        assert_true(close_to(((double *)s.bufs[sum])[j], want, 1e-12, 1e-9));
    }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* A parallel pointwise kernel's inner loop is `omp simd` (inside the
 * parallel region its buffers lose `restrict`, and with several stores clang
 * would not vectorize it); one that can fail is not (a check leaves the loop).
 * Both compute what they should, one updating a buffer in place. */
static void test_parallel_simd(void **state)
{
    (void)state;
    enum { R = 256, C = 512 };
    kprogram *p = prog_new();
    int x = buf(p, KILN_F32, R * C), y = buf(p, KILN_F32, R * C), z = buf(p, KILN_F32, R * C);
    int ids = buf(p, KILN_I64, R * C), g = buf(p, KILN_F32, R * C);
    kernel *k = kern(p, KK_POINTWISE, "mul_add", 2, (const int64_t[]){R, C});
    int idx = lin2(k, C), xv = ld(k, p, x, idx);
    st(k, y, idx,
       op(k, IR_ADD, KILN_F32,
          op(k, IR_MUL, KILN_F32, ld(k, p, y, idx), kk_const_f(k, KILN_F32, 0.5), 0), xv, 0),
       false);
    st(k, z, idx, op(k, IR_MUL, KILN_F32, xv, kk_const_f(k, KILN_F32, 2), 0), false);
    k = kern(p, KK_POINTWISE, "gather", 2, (const int64_t[]){R, C});
    idx = lin2(k, C);
    int at = nx(k, (kx_node){.kind = KX_CHECK,
                             .dtype = KILN_I64,
                             .a = {ld(k, p, ids, idx)},
                             .size = R * C,
                             .axis = 0});
    st(k, g, idx, ld(k, p, x, at), false);
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    assert_int_equal(count(B.src, "#pragma omp simd\n"), 1);
    const char *simd = strstr(B.src, "#pragma omp simd\n"), *gather = strstr(B.src, "k1_gather(");
    assert_non_null(gather);
    assert_true(simd < gather);
    store_set s = alloc_bufs(p);
    float *xs = s.bufs[x], *ys = s.bufs[y];
    int64_t *is = s.bufs[ids];
    for (int i = 0; i < R * C; i++) {
        xs[i] = (float)(i % 89) * 0.5f;
        ys[i] = (float)(i % 31);
        is[i] = (i * 7) % (R * C);
    }
    kiln_ctx c = ctx_of(&s);
    c.threads = 2;
    assert_int_equal(run(&B, 0, &c), 0);
    for (int i = 0; i < R * C; i++) {
        assert_true(ys[i] == (float)(i % 31) * 0.5f + xs[i]);
        assert_true(((float *)s.bufs[z])[i] == xs[i] * 2);
        assert_true(((float *)s.bufs[g])[i] == xs[(i * 7) % (R * C)]);
    }
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* ---- accumulating stores, checks and run-time errors ------------------------------- */

/* out = zeros(5); out[check(ids[j])] += src[j], serially (scatter_add's lowering). */
static kprogram *scatter_prog(int *src, int *ids, int *out, int *iout)
{
    kprogram *p = prog_new();
    *src = buf(p, KILN_F32, 6);
    *ids = buf(p, KILN_I64, 6);
    *out = buf(p, KILN_F32, 5);
    *iout = buf(p, KILN_I32, 5);
    kernel *k = kern(p, KK_POINTWISE, "zero", 1, (const int64_t[]){5});
    st(k, *out, var(k, 0), kk_const_f(k, KILN_F32, 0), false);
    st(k, *iout, var(k, 0), kk_const_i(k, KILN_I32, 0), false);
    k = kern(p, KK_POINTWISE, "scatter_add", 1, (const int64_t[]){6});
    k->serial = true;
    int j = var(k, 0);
    int id = nx(
        k,
        (kx_node){
            .kind = KX_CHECK, .dtype = KILN_I64, .a = {ld(k, p, *ids, j)}, .size = 5, .axis = 0});
    int v = ld(k, p, *src, j);
    st(k, *out, id, v, true);
    st(k, *iout, id, cast(k, v, KILN_I32), true);
    ku_entry_all(p);
    return p;
}

static void test_accumulate_and_check(void **state)
{
    (void)state;
    int src, ids, out, iout;
    kprogram *p = scatter_prog(&src, &ids, &out, &iout);
    built B;
    build(&B, p, true);
    assert_non_null(strstr(B.src, "serial"));
    store_set s = alloc_bufs(p);
    const float sv[6] = {1, 2, 3, 4, 5, 6};
    int64_t iv[6] = {0, 4, 0, 2, 4, 4};
    memcpy(s.bufs[src], sv, sizeof sv);
    memcpy(s.bufs[ids], iv, sizeof iv);
    ((float *)s.bufs[out])[3] = 99; /* zeroed by the first kernel */
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    const float want[5] = {4, 0, 4, 0, 13};
    for (int i = 0; i < 5; i++) {
        assert_true(((float *)s.bufs[out])[i] == want[i]);
        assert_int_equal(((int32_t *)s.bufs[iout])[i], (int32_t)want[i]);
    }
    /* an id out of range: the kernel fails with PyTorch's message fields set */
    iv[3] = 7;
    memcpy(s.bufs[ids], iv, sizeof iv);
    c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), KILN_RUNERR_INDEX);
    assert_int_equal(c.err_code, KILN_RUNERR_INDEX);
    assert_int_equal(c.err_kernel, 1);
    assert_int_equal(c.err_axis, 0);
    assert_int_equal(c.err_index, 7);
    assert_int_equal(c.err_size, 5);
    /* negative ids too */
    iv[3] = -1;
    memcpy(s.bufs[ids], iv, sizeof iv);
    c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), KILN_RUNERR_INDEX);
    assert_int_equal(c.err_index, -1);
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

static void test_integer_errors(void **state)
{
    (void)state;
    kprogram *p = prog_new();
    int a = buf(p, KILN_I64, 300), b = buf(p, KILN_I64, 300), q = buf(p, KILN_I64, 300);
    int r = buf(p, KILN_I32, 300);
    kern(p, KK_POINTWISE, "copy", 1, (const int64_t[]){1}); /* kernel 0 does nothing useful */
    kernel *k = &p->kernels[0];
    st(k, q, ci(k, 0), ci(k, 1), false);
    k = kern(p, KK_POINTWISE, "div", 1, (const int64_t[]){300});
    int i = var(k, 0);
    st(k, q, i, op(k, IR_DIV, KILN_I64, ld(k, p, a, i), ld(k, p, b, i), 0), false);
    k = kern(p, KK_POINTWISE, "pow", 1, (const int64_t[]){300});
    i = var(k, 0);
    st(k, r, i,
       op(k, IR_POW, KILN_I32, cast(k, ld(k, p, a, i), KILN_I32), cast(k, ld(k, p, b, i), KILN_I32),
          0),
       false);
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    store_set s = alloc_bufs(p);
    int64_t *av = s.bufs[a], *bv = s.bufs[b];
    for (int j = 0; j < 300; j++)
        av[j] = j - 150, bv[j] = j % 7 + 1;
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    bv[123] = 0;
    c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), KILN_RUNERR_ZERO_DIV);
    assert_int_equal(c.err_code, KILN_RUNERR_ZERO_DIV);
    assert_int_equal(c.err_kernel, 1);
    bv[123] = -2;
    c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), KILN_RUNERR_NEG_POW);
    assert_int_equal(c.err_kernel, 2);
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* ---- constants, copies, empty domains ------------------------------------------------- */

static void test_consts_and_copies(void **state)
{
    (void)state;
    static const float data[5] = {1.5f, -2, 1e-30f, 3.25f, 0};
    static const int64_t idata[3] = {INT64_MIN, -5, 7};
    kprogram *p = prog_new();
    int cb = kp_buf_add(
        p, (kbuf){.role = KB_CONST, .dtype = KILN_F32, .numel = 5, .node = -1, .data = data});
    int ib = kp_buf_add(
        p, (kbuf){.role = KB_CONST, .dtype = KILN_I64, .numel = 3, .node = -1, .data = idata});
    int eb = kp_buf_add(p, (kbuf){.role = KB_CONST, .dtype = KILN_F64, .numel = 0, .node = -1});
    (void)eb;
    int out = buf(p, KILN_F32, 5), param = buf(p, KILN_F32, 5), iout = buf(p, KILN_I64, 3);
    int empty = buf(p, KILN_F32, 0);
    kernel *k = kern(p, KK_POINTWISE, "mul", 1, (const int64_t[]){5});
    int i = var(k, 0);
    st(k, out, i, op(k, IR_MUL, KILN_F32, ld(k, p, cb, i), kk_const_f(k, KILN_F32, 2), 0), false);
    k = kern(p, KK_POINTWISE, "copy", 1, (const int64_t[]){3});
    i = var(k, 0);
    st(k, iout, i, ld(k, p, ib, i), false);
    k = kern(p, KK_POINTWISE, "empty", 2, (const int64_t[]){0, 3});
    st(k, empty, var(k, 1), kk_const_f(k, KILN_F32, 1), false);
    ku_entry_all(p);
    p->entries[0].copies = ir_alloc(sizeof(kcopy));
    assert_non_null(p->entries[0].copies);
    p->entries[0].copies[0] = (kcopy){out, param};
    p->entries[0].ncopies = 1;
    built B;
    build(&B, p, false);
    assert_non_null(strstr(B.src, "kiln_data_0"));
    store_set s = alloc_bufs(p);
    kiln_ctx c = ctx_of(&s);
    assert_int_equal(run(&B, 0, &c), 0);
    for (int j = 0; j < 5; j++) {
        assert_true(((float *)s.bufs[out])[j] == data[j] * 2);
        assert_true(((float *)s.bufs[param])[j] == data[j] * 2);
    }
    assert_memory_equal(s.bufs[iout], idata, sizeof idata);
    free_bufs(&s);
    unbuild(&B);
    kp_free(p);
}

/* ---- the source itself --------------------------------------------------------------- */

static void test_names_and_comments(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "k9_evil*/name", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *y = kiln_exp(g, x);
    kiln_tensor *z = kiln_add(g, y, y);
    assert_non_null(z);
    kprogram *p = prog_new();
    p->g = g;
    int xb = kp_buf_add(p, (kbuf){.role = KB_INPUT, .dtype = KILN_F32, .numel = 6, .node = 0});
    int zb = buf(p, KILN_F32, 6);
    kernel *k = kern(p, KK_POINTWISE, "exp_add", 2, (const int64_t[]){2, 3});
    assert_true(kk_note_node(k, y->id) >= 0);
    assert_true(kk_note_node(k, z->id) >= 0);
    int idx = lin2(k, 3), e = op(k, IR_EXP, KILN_F32, ld(k, p, xb, idx), 0, 0);
    st(k, zb, idx, op(k, IR_ADD, KILN_F32, e, e, 0), false);
    k = kern(p, KK_POINTWISE, "", 1, (const int64_t[]){6});
    k->name[0] = 0; /* no name: the renderer makes one up */
    assert_true(kk_note_node(k, x->id) >= 0);
    st(k, zb, var(k, 0), ld(k, p, xb, var(k, 0)), false);
    ku_entry_all(p);
    p->entries[0].name = "k3_entry";

    built B;
    build(&B, p, true);
    const char *src = B.src;
    assert_non_null(strstr(src, "k0_exp_add: pointwise over [2, 3]"));
    char want[128];
    snprintf(want, sizeof want, " *   %%%d exp f32[2, 3] <- %%%d\n", y->id, x->id);
    assert_non_null(strstr(src, want));
    snprintf(want, sizeof want, " *   %%%d add f32[2, 3] <- %%%d, %%%d\n", z->id, y->id, y->id);
    assert_non_null(strstr(src, want));
    assert_non_null(strstr(
        src, "static void k0_exp_add(kiln_ctx *ctx, const float *restrict b0_K9_evil__name,"));
    assert_non_null(strstr(src, "static void k1_kernel("));
    assert_non_null(strstr(src, "k9-evil??name")); /* sanitized: no k<N>_, no comment end */
    assert_non_null(strstr(src, "KILN_EXPORT const char kiln_abi[] = \"" KILN_ABI_TAG "\";"));
    assert_non_null(strstr(src, KILN_CTX_TEXT));
    /* every match of k[0-9]+_ is a kernel name */
    regex_t re;
    assert_int_equal(regcomp(&re, "k[0-9]+_[A-Za-z0-9_]*", REG_EXTENDED), 0);
    regmatch_t m;
    int hits = 0;
    for (const char *s = src; regexec(&re, s, 1, &m, 0) == 0; s += m.rm_eo) {
        size_t len = (size_t)(m.rm_eo - m.rm_so);
        bool kernel_name = (len == 10 && strncmp(s + m.rm_so, "k0_exp_add", len) == 0) ||
                           (len == 9 && strncmp(s + m.rm_so, "k1_kernel", len) == 0);
        if (!kernel_name)
            fail_msg("not a kernel name: %.*s", (int)len, s + m.rm_so);
        hits++;
    }
    regfree(&re);
    assert_true(hits >= 6); /* comment, definition and call of each */
    unbuild(&B);
    kp_free(p);
    kiln_graph_free(g);
}

/* A source carries the helpers its kernels call and what those call, no others. */
static void test_only_used_helpers(void **state)
{
    (void)state;
    kprogram *p = prog_new();
    int xb = buf(p, KILN_F32, 6), yb = buf(p, KILN_F32, 6), ib, qb;
    kernel *k = kern(p, KK_POINTWISE, "sigmoid", 1, (const int64_t[]){6});
    int i = var(k, 0);
    st(k, yb, i, op(k, IR_SIGMOID, KILN_F32, ld(k, p, xb, i), 0, 0), false);
    ku_entry_all(p);
    built B;
    build(&B, p, true);
    assert_non_null(strstr(B.src, "KILN_FN float kiln_sigmoidf(float x)"));
    assert_non_null(strstr(B.src, "KILN_FN float kiln_expf(float x)"));      /* sigmoid calls it */
    assert_non_null(strstr(B.src, "KILN_FN uint32_t kiln_vm_f2u(float f)")); /* and expf this */
    const char *absent[] = {
        "kiln_philox",         "kiln_rand", "kiln_tanhf", "kiln_logf", "kiln_fail",
        "kiln_floordiv",       "kiln_copy", "kiln_mm_",   "KILN_SHUF", "KILN_RUNERR_",
        "kiln_sigmoid(double", "Fast2Sum" /* helpers come without their comments */};
    for (size_t j = 0; j < sizeof absent / sizeof *absent; j++)
        if (strstr(B.src, absent[j]))
            fail_msg("the source carries %s, which nothing calls", absent[j]);
    unbuild(&B);
    kp_free(p);
    /* an integer division fails on 0: floordiv brings kiln_fail */
    p = prog_new();
    ib = buf(p, KILN_I64, 6);
    qb = buf(p, KILN_I64, 6);
    k = kern(p, KK_POINTWISE, "div", 1, (const int64_t[]){6});
    i = var(k, 0);
    st(k, qb, i, op(k, IR_DIV, KILN_I64, ld(k, p, ib, i), ld(k, p, ib, i), 0), false);
    ku_entry_all(p);
    build(&B, p, true);
    assert_non_null(strstr(B.src, "KILN_FN int64_t kiln_floordiv("));
    assert_non_null(strstr(B.src, "KILN_FN void kiln_fail("));
    assert_non_null(strstr(B.src, "    KILN_RUNERR_ZERO_DIV = 2,\n")); /* the codes, now used */
    assert_null(strstr(B.src, "kiln_ipow"));
    unbuild(&B);
    kp_free(p);
}

static void test_null_and_no_options(void **state)
{
    (void)state;
    assert_null(cgen_c(NULL, NULL));
    kprogram *p = prog_new();
    char *src = cgen_c(p, NULL);
    assert_non_null(src);
    assert_null(strstr(src, "#pragma omp parallel"));
    assert_non_null(strstr(src, "kiln_abi[]"));
    ir_free(src);
    kp_free(p);
}

static int fail_after = -1;

static void *counting_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (fail_after == 0)
        return NULL;
    if (fail_after > 0)
        fail_after--;
    return realloc(ptr, size);
}

static void counting_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

/* Failing the n-th allocation gives NULL, never a crash or a partial source. */
static void test_out_of_memory(void **state)
{
    (void)state;
    int src, ids, out, iout;
    kprogram *p = scatter_prog(&src, &ids, &out, &iout);
    cgen_opts o = {.openmp = true};
    char *full = cgen_c(p, &o);
    assert_non_null(full);
    kiln_allocator a = {counting_realloc, counting_free, NULL};
    kiln_set_allocator(&a);
    bool done = false;
    for (int n = 0; n < 500 && !done; n++) {
        fail_after = n;
        char *s = cgen_c(p, &o);
        fail_after = -1;
        done = s != NULL;
        if (s)
            assert_string_equal(s, full);
        ir_free(s);
    }
    kiln_set_allocator(NULL);
    assert_true(done);
    ir_free(full);
    kp_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_ops),
        cmocka_unit_test(test_integer_ops),
        cmocka_unit_test(test_casts),
        cmocka_unit_test(test_rng_bit_identical),
        cmocka_unit_test(test_rng_chunks),
        cmocka_unit_test(test_streamed_stores),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_integer_reductions),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_int),
        cmocka_unit_test(test_matmul_tile_functions_shared),
        cmocka_unit_test(test_matmul_blocked_paths),
        cmocka_unit_test(test_parallel_loops),
        cmocka_unit_test(test_parallel_simd),
        cmocka_unit_test(test_accumulate_and_check),
        cmocka_unit_test(test_integer_errors),
        cmocka_unit_test(test_consts_and_copies),
        cmocka_unit_test(test_names_and_comments),
        cmocka_unit_test(test_only_used_helpers),
        cmocka_unit_test(test_null_and_no_options),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
