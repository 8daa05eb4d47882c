/*
 * sweep_harness.h - the machinery of the op-table sweep (test_sweep.c): a
 * graph of many cases, deterministic input data, operand views, and the
 * comparison of two compiled modules of that graph.
 *
 * Every case is one output of an entry of ONE graph, so a target compiles the
 * whole sweep once (for the C target: one translation unit). Inputs are graph
 * inputs filled with pseudo-random data from a fixed seed, so two modules of
 * the graph see the same numbers. Included by test_sweep.c only.
 */
#ifndef KILN_SWEEP_HARNESS_H
#define KILN_SWEEP_HARNESS_H

#include "ir/ir.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* NAN and INFINITY are floats; the tables hold doubles */
#define SW_NAN ((double)NAN)
#define SW_INF ((double)INFINITY)

enum { SW_MAX_CASES = 4096, SW_MAX_INPUTS = 4096, SW_MAX_SHARED = 4096, SW_NAME = 96 };

/* Dtype sets, as bit masks over kiln_dtype. */
#define DT(d)    (1u << (unsigned)(d))
#define DT_FLOAT (DT(KILN_F32) | DT(KILN_F64))
#define DT_INT   (DT(KILN_I32) | DT(KILN_I64))
#define DT_NUM   (DT_FLOAT | DT_INT)
#define DT_ALL   (DT_NUM | DT(KILN_BOOL))
/* The dtypes that get every shape; the others get the core shapes only, so
 * the sweep stays one module of a size a C compiler handles quickly. */
#define DT_MAIN (DT(KILN_F32) | DT(KILN_I64))

static const kiln_dtype sw_dtypes[] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64, KILN_BOOL};
#define SW_NDTYPES 5

static inline bool has_dt(unsigned mask, kiln_dtype dt)
{
    return (mask >> (unsigned)dt) & 1u;
}

static inline const char *dn(kiln_dtype dt)
{
    return ir_dtype_kir(dt);
}

/* The entries: cases go to one by the class of the op whose builder made them. */
typedef enum {
    E_SOURCES,
    E_ELEMENTWISE,
    E_REDUCE,
    E_MOVEMENT,
    E_LINALG,
    E_ASSIGN,
    E_COUNT
} sw_entry;
static const char *const sw_entry_names[E_COUNT] = {"sources",  "elementwise", "reduce",
                                                    "movement", "linalg",      "assign"};

static inline sw_entry sw_entry_of(ir_op op)
{
    switch (ir_ops[op].cls) {
    case IR_CLASS_SOURCE: return E_SOURCES;
    case IR_CLASS_UNARY:
    case IR_CLASS_BINARY:
    case IR_CLASS_TERNARY: return E_ELEMENTWISE;
    case IR_CLASS_REDUCE: return E_REDUCE;
    case IR_CLASS_MOVEMENT: return E_MOVEMENT;
    case IR_CLASS_MATMUL:
    case IR_CLASS_CONV:
    case IR_CLASS_ATTENTION:
    case IR_CLASS_INDEX: return E_LINALG;
    case IR_CLASS_ASSIGN: return E_ASSIGN;
    }
    return E_SOURCES;
}

/* How an input's data is drawn. The sequential kinds repeat a table of
 * values in order, so (N, 1) op (1, N) of one of them meets every pair. */
typedef enum {
    G_ANY,     /* floats in [-2, 2), ints in [-9, 9], bools 50/50 */
    G_UNIT,    /* floats in [-1, 1), ints in [-3, 3]: long sums and products */
    G_POS,     /* floats in [0.25, 4), ints in [1, 9], bools true: log, sqrt, pow bases */
    G_EXP,     /* floats in [-2, 2), ints in [0, 4]: pow exponents */
    G_NZ,      /* floats in +-[0.5, 3), ints in +-[1, 9], bools true: divisors */
    G_TIES,    /* floats in {-1, -0.5, 0, 0.5, 1}, ints in [-2, 2]: ties for eq and argmax */
    G_IDX,     /* ints in [0, bound): gather and scatter ids */
    G_SPECIAL, /* sequential: NaN, +-inf, +-0 and ordinary values; ints at their limits */
    G_HUGE,    /* sequential: floats out of every integer range; ints at their limits */
    G_NZLIM,   /* sequential: nonzero ints at and near their limits: divisors */
    G_POWEXP   /* sequential: non-negative exponents up to 63 */
} gen_kind;

typedef enum {
    F_CONTIG, /* the input itself */
    F_T,      /* a transpose of the last two axes (rank >= 2) */
    F_STEP,   /* every other row of an input twice as tall (rank >= 1) */
    F_EXPAND, /* an expand of an input whose last non-1 axis has size 1 */
    F_PERM    /* a permute (2, 0, 1) of a rank-3 input */
} form;

typedef struct {
    int rank;
    int64_t dims[KILN_MAX_RANK];
} shp;

#define SH0             ((shp){0, {0}})
#define SH1(a)          ((shp){1, {a}})
#define SH2(a, b)       ((shp){2, {a, b}})
#define SH3(a, b, c)    ((shp){3, {a, b, c}})
#define SH4(a, b, c, d) ((shp){4, {a, b, c, d}})

typedef struct {
    char name[SW_NAME];
    kiln_dtype dt;
    int64_t numel;
    gen_kind gk;
    void *data;
} sw_input;

typedef struct {
    char name[SW_NAME]; /* the output or param name in the module */
    ir_op op;           /* the op whose builder made the case */
    kiln_tensor *t;
    bool exact; /* compared bit for bit (value equality), floats too: RNG, params */
    bool param; /* a param, read by name; not an entry output */
} sw_case;

typedef struct {
    kiln_graph *g;
    uint64_t rng;
    ir_op op; /* the op whose builder is running */
    int ninputs, ncases, nparams, nshared;
    int per_op[IR_OP_COUNT];
    sw_input inputs[SW_MAX_INPUTS];
    sw_case cases[SW_MAX_CASES];
    struct {
        char key[128];
        kiln_tensor *t;
    } shared[SW_MAX_SHARED];
} sweep;

/* ---- building ------------------------------------------------------------------ */

static inline void sw_built(sweep *s, const kiln_tensor *t, const char *what)
{
    if (!t)
        fail_msg("sweep: building %s for op %s failed: %s", what, ir_ops[s->op].name,
                 kiln_graph_error(s->g));
}

static inline uint64_t sw_next(sweep *s)
{
    uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline double sw_uniform(sweep *s)
{
    return (double)(sw_next(s) >> 11) * 0x1p-53;
}

static inline int64_t sw_irange(sweep *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(sw_next(s) % (uint64_t)(hi - lo + 1));
}

static const double sw_f_special[] = {SW_NAN, SW_INF, -SW_INF, 0.0, -0.0,  1.0,
                                      -1.0,   0.5,    -2.5,    3.0, 100.0, -100.0};
static const double sw_f_huge[] = {SW_NAN, SW_INF, -SW_INF,      -0.0,         2.9,
                                   -2.9,   3e9,    -3e9,         1e19,         -1e19,
                                   1e30,   -1e30,  2147483647.0, -2147483649.0};
static const int sw_powexp[] = {0, 1, 2, 3, 31, 63};

/* Integers at and near the limits of dt (sequential kinds). */
static inline int64_t sw_int_limit(kiln_dtype dt, int64_t k, bool nonzero)
{
    int64_t lo = dt == KILN_I32 ? INT32_MIN : INT64_MIN,
            hi = dt == KILN_I32 ? INT32_MAX : INT64_MAX;
    const int64_t all[] = {lo, lo + 1, -7, -1, 0, 1, 7, hi - 1, hi};
    const int64_t nz[] = {lo, -7, -1, 1, 7, hi};
    return nonzero ? nz[k % 6] : all[k % 9];
}

static inline int sw_gen_count(gen_kind gk)
{
    switch (gk) {
    case G_SPECIAL: return (int)(sizeof(sw_f_special) / sizeof(*sw_f_special));
    case G_HUGE: return (int)(sizeof(sw_f_huge) / sizeof(*sw_f_huge));
    case G_NZLIM: return 6;
    case G_POWEXP: return (int)(sizeof(sw_powexp) / sizeof(*sw_powexp));
    case G_ANY:
    case G_UNIT:
    case G_POS:
    case G_EXP:
    case G_NZ:
    case G_TIES:
    case G_IDX: break;
    }
    return 0;
}

static inline double sw_gen_f(sweep *s, gen_kind gk, int64_t i)
{
    double sign = (sw_next(s) & 1) ? 1.0 : -1.0;
    switch (gk) {
    case G_ANY:
    case G_EXP: return -2.0 + 4.0 * sw_uniform(s);
    case G_UNIT: return -1.0 + 2.0 * sw_uniform(s);
    case G_POS: return 0.25 + 3.75 * sw_uniform(s);
    case G_NZ: return sign * (0.5 + 2.5 * sw_uniform(s));
    case G_TIES: return 0.5 * (double)sw_irange(s, -2, 2);
    case G_IDX: return (double)sw_irange(s, 0, 3);
    case G_SPECIAL: return sw_f_special[i % sw_gen_count(gk)];
    case G_HUGE: return sw_f_huge[i % sw_gen_count(gk)];
    case G_NZLIM: return sw_f_special[5 + i % 7]; /* the finite nonzero ones */
    case G_POWEXP: return (double)sw_powexp[i % sw_gen_count(gk)];
    }
    return 0;
}

static inline int64_t sw_gen_i(sweep *s, kiln_dtype dt, gen_kind gk, int64_t bound, int64_t i)
{
    switch (gk) {
    case G_ANY: return sw_irange(s, -9, 9);
    case G_UNIT: return sw_irange(s, -3, 3);
    case G_POS: return sw_irange(s, 1, 9);
    case G_EXP: return sw_irange(s, 0, 4);
    case G_NZ: return (sw_next(s) & 1 ? 1 : -1) * sw_irange(s, 1, 9);
    case G_TIES: return sw_irange(s, -2, 2);
    case G_IDX: return sw_irange(s, 0, bound - 1);
    case G_SPECIAL:
    case G_HUGE: return sw_int_limit(dt, i, false);
    case G_NZLIM: return sw_int_limit(dt, i, true);
    case G_POWEXP: return sw_powexp[i % sw_gen_count(gk)];
    }
    return 0;
}

/* n values of dt drawn by gk into data. */
static inline void sw_fill(sweep *s, kiln_dtype dt, gen_kind gk, int64_t bound, void *data,
                           int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        if (ir_dtype_is_float(dt))
            ir_store_f(dt, data, i, sw_gen_f(s, gk, i));
        else if (dt == KILN_BOOL)
            ((bool *)data)[i] = gk == G_POS || gk == G_NZ || gk == G_NZLIM ? true
                                : gk == G_SPECIAL || gk == G_HUGE          ? (i % 3) != 0
                                                                           : (sw_next(s) & 1);
        else
            ir_store_i(dt, data, i, sw_gen_i(s, dt, gk, bound, i));
    }
}

/* A fresh graph input of dt and shape, with its data drawn now. */
static inline kiln_tensor *sw_input_new(sweep *s, kiln_dtype dt, shp sh, gen_kind gk, int64_t bound)
{
    if (s->ninputs == SW_MAX_INPUTS)
        fail_msg("sweep: more than %d inputs", SW_MAX_INPUTS);
    sw_input *in = &s->inputs[s->ninputs];
    snprintf(in->name, sizeof in->name, "in%d", s->ninputs);
    kiln_tensor *t = kiln_input(s->g, in->name, dt, sh.rank, sh.dims);
    sw_built(s, t, in->name);
    in->dt = dt;
    in->gk = gk;
    in->numel = ir_shape_numel(sh.rank, sh.dims);
    in->data = calloc((size_t)(in->numel ? in->numel : 1), kiln_dtype_size(dt));
    assert_non_null(in->data);
    sw_fill(s, dt, gk, bound, in->data, in->numel);
    s->ninputs++;
    return t;
}

/* A tensor of dt and shape sh whose values come from a graph input, reached
 * through the view `f`. Operands are shared: the same (slot, dtype, shape,
 * data kind, form) gives the same tensor, so ops see common inputs and a
 * target may fuse across cases. */
static inline kiln_tensor *sw_operand_b(sweep *s, int slot, kiln_dtype dt, shp sh, gen_kind gk,
                                        form f, int64_t bound)
{
    char key[128];
    int len = snprintf(key, sizeof key, "%d/%d/%d/%d/%lld/", slot, (int)dt, (int)gk, (int)f,
                       (long long)bound);
    for (int d = 0; d < sh.rank; d++)
        len += snprintf(key + len, sizeof key - (size_t)len, "%lld,", (long long)sh.dims[d]);
    for (int i = 0; i < s->nshared; i++)
        if (strcmp(s->shared[i].key, key) == 0)
            return s->shared[i].t;

    kiln_graph *g = s->g;
    shp in = sh;
    kiln_tensor *t = NULL;
    if (f == F_T && sh.rank >= 2) {
        in.dims[sh.rank - 1] = sh.dims[sh.rank - 2];
        in.dims[sh.rank - 2] = sh.dims[sh.rank - 1];
        t = kiln_transpose(g, sw_input_new(s, dt, in, gk, bound), -1, -2);
    } else if (f == F_STEP && sh.rank >= 1) {
        in.dims[0] = 2 * sh.dims[0] + 1;
        t = kiln_slice(g, sw_input_new(s, dt, in, gk, bound), 0, 1, INT64_MAX, 2);
    } else if (f == F_PERM && sh.rank == 3) {
        in = SH3(sh.dims[1], sh.dims[2], sh.dims[0]);
        t = kiln_permute(g, sw_input_new(s, dt, in, gk, bound), (const int[]){2, 0, 1});
    } else if (f == F_EXPAND && sh.rank >= 1) {
        int ax = sh.rank - 1;
        while (ax > 0 && sh.dims[ax] == 1)
            ax--;
        in.dims[ax] = 1;
        t = kiln_expand(g, sw_input_new(s, dt, in, gk, bound), sh.rank, sh.dims);
    } else {
        t = sw_input_new(s, dt, sh, gk, bound);
    }
    sw_built(s, t, key);
    if (s->nshared == SW_MAX_SHARED)
        fail_msg("sweep: more than %d shared operands", SW_MAX_SHARED);
    snprintf(s->shared[s->nshared].key, sizeof s->shared[0].key, "%s", key);
    s->shared[s->nshared++].t = t;
    return t;
}

static inline kiln_tensor *sw_operand(sweep *s, int slot, kiln_dtype dt, shp sh, gen_kind gk,
                                      form f)
{
    return sw_operand_b(s, slot, dt, sh, gk, f, 0);
}

/* Ids in [0, bound) of an int dtype. */
static inline kiln_tensor *sw_ids(sweep *s, int slot, kiln_dtype dt, shp sh, int64_t bound)
{
    return sw_operand_b(s, slot, dt, sh, G_IDX, F_CONTIG, bound);
}

static inline void sw_vcase(sweep *s, kiln_tensor *t, bool exact, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
static inline void sw_vcase(sweep *s, kiln_tensor *t, bool exact, const char *fmt, va_list ap)
{
    char label[48];
    vsnprintf(label, sizeof label, fmt, ap);
    sw_built(s, t, label);
    if (s->ncases == SW_MAX_CASES)
        fail_msg("sweep: more than %d cases", SW_MAX_CASES);
    sw_case *c = &s->cases[s->ncases];
    snprintf(c->name, sizeof c->name, "c%d.%s.%s", s->ncases, ir_ops[s->op].name, label);
    c->op = s->op;
    c->t = t;
    c->exact = exact;
    c->param = false;
    s->ncases++;
    s->per_op[s->op]++;
}

/* Registers t as a case: an output of the entry of the running op's class. */
static inline void __attribute__((format(printf, 3, 4)))
out(sweep *s, kiln_tensor *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sw_vcase(s, t, false, fmt, ap);
    va_end(ap);
}

/* A case compared exactly, floats too: random draws and pure data movement of them. */
static inline void __attribute__((format(printf, 3, 4)))
out_exact(sweep *s, kiln_tensor *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sw_vcase(s, t, true, fmt, ap);
    va_end(ap);
}

/* A param "p<N>", whose buffer is compared (exactly) after compile and each run. */
static inline kiln_tensor *sw_param(sweep *s, kiln_dtype dt, shp sh, kiln_init init)
{
    char name[32];
    snprintf(name, sizeof name, "p%d", s->nparams++);
    kiln_tensor *p = kiln_param(s->g, name, dt, sh.rank, sh.dims, init);
    sw_built(s, p, name);
    if (s->ncases == SW_MAX_CASES)
        fail_msg("sweep: more than %d cases", SW_MAX_CASES);
    sw_case *c = &s->cases[s->ncases++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->op = s->op;
    c->t = p;
    c->exact = true;
    c->param = true;
    s->per_op[s->op]++;
    return p;
}

/* Puts every non-param case into the entry of its op's class. */
static inline void sw_make_entries(sweep *s)
{
    for (int e = 0; e < E_COUNT; e++) {
        int n = 0;
        for (int i = 0; i < s->ncases; i++)
            n += !s->cases[i].param && sw_entry_of(s->cases[i].op) == (sw_entry)e;
        if (n == 0)
            continue;
        kiln_tensor **outs = calloc((size_t)n, sizeof *outs);
        const char **names = calloc((size_t)n, sizeof *names);
        assert_non_null(outs);
        assert_non_null(names);
        int k = 0;
        for (int i = 0; i < s->ncases; i++)
            if (!s->cases[i].param && sw_entry_of(s->cases[i].op) == (sw_entry)e) {
                outs[k] = s->cases[i].t;
                names[k++] = s->cases[i].name;
            }
        kiln_status st = kiln_entry(s->g, sw_entry_names[e], n, outs, names);
        if (st != KILN_OK)
            fail_msg("sweep: kiln_entry(%s): %s", sw_entry_names[e], kiln_graph_error(s->g));
        free(outs);
        free(names);
    }
}

/* ---- compiling, running, comparing ------------------------------------------------ */

/* Compiles the sweep (opts NULL: kiln_compile's defaults, the C target) and
 * sets every input. Fails the test, with the compiler's message, if it cannot. */
static inline kiln_module *sw_compile(sweep *s, const kiln_compile_opts *opts, const char *what)
{
    kiln_module *m = NULL;
    kiln_status st = kiln_compile(s->g, opts, &m);
    if (st != KILN_OK || !m)
        fail_msg("sweep: kiln_compile for %s failed with %s: %s", what, kiln_status_str(st),
                 kiln_graph_error(s->g));
    for (int i = 0; i < s->ninputs; i++) {
        const sw_input *in = &s->inputs[i];
        st = kiln_module_set(m, in->name, in->data, (size_t)in->numel * kiln_dtype_size(in->dt));
        if (st != KILN_OK)
            fail_msg("sweep: %s: kiln_module_set(%s): %s", what, in->name, kiln_module_error(m));
    }
    return m;
}

static inline void sw_run_all(kiln_module *m, const char *what)
{
    for (int e = 0; e < E_COUNT; e++) {
        kiln_status st = kiln_module_run(m, sw_entry_names[e]);
        if (st == KILN_ERR_NOT_FOUND)
            continue; /* an entry with no cases */
        if (st != KILN_OK)
            fail_msg("sweep: %s: kiln_module_run(%s) failed with %s: %s", what, sw_entry_names[e],
                     kiln_status_str(st), kiln_module_error(m));
    }
}

/* Tolerances of the contract (DESIGN.md, Numerics): the interpreter is the reference. */
#define SW_F32_REL 1e-5
#define SW_F32_ABS 1e-6
#define SW_F64_REL 1e-12
#define SW_F64_ABS 1e-12

/* ULPs an exact f64 comparison allows (0: none). The CUDA sweep sets 2: f64
 * normal draws go through the device's double log, sin and cos, which may
 * round differently from glibc's in the last bit (f32 draws stay bit-equal). */
static double sw_exact_f64_ulps = 0;

/* Does `got` match the reference `ref`? NaN matches NaN, an infinity only
 * itself; exact: equal values (so -0 == 0), else within the dtype's tolerance. */
static inline bool sw_close(kiln_dtype dt, bool exact, double ref, double got)
{
    if (isnan(ref) || isnan(got))
        return isnan(ref) && isnan(got);
    if (exact && dt == KILN_F64 && sw_exact_f64_ulps > 0 && !isinf(ref) && !isinf(got))
        return fabs(ref - got) <= sw_exact_f64_ulps * (nextafter(fabs(ref), SW_INF) - fabs(ref));
    if (exact || isinf(ref) || isinf(got) || !ir_dtype_is_float(dt))
        return ref == got;
    double d = fabs(ref - got);
    double rel = dt == KILN_F32 ? SW_F32_REL : SW_F64_REL;
    double abs_ = dt == KILN_F32 ? SW_F32_ABS : SW_F64_ABS;
    return d <= abs_ || d <= rel * fabs(ref);
}

static inline bool sw_equal_at(kiln_dtype dt, bool exact, const void *a, const void *b, int64_t i)
{
    if (ir_dtype_is_float(dt))
        return sw_close(dt, exact, ir_load_f(dt, a, i), ir_load_f(dt, b, i));
    return ir_load_i(dt, a, i) == ir_load_i(dt, b, i);
}

static inline void sw_format_at(char *buf, size_t cap, kiln_dtype dt, const void *p, int64_t i)
{
    if (ir_dtype_is_float(dt))
        snprintf(buf, cap, "%.17g", ir_load_f(dt, p, i));
    else if (dt == KILN_BOOL)
        snprintf(buf, cap, "%s", ir_load_i(dt, p, i) ? "true" : "false");
    else
        snprintf(buf, cap, "%lld", (long long)ir_load_i(dt, p, i));
}

/* Compares every case of m with the reference module ref (params only when
 * params_only). Prints the first mismatches of each case (unless quiet) and
 * returns the number of cases that differ. */
static inline int sw_compare(const sweep *s, kiln_module *ref, kiln_module *m, const char *rname,
                             const char *mname, const char *when, bool params_only, bool quiet)
{
    int bad = 0, printed = 0;
    for (int i = 0; i < s->ncases; i++) {
        const sw_case *c = &s->cases[i];
        if (params_only && !c->param)
            continue;
        kiln_dtype dt = c->t->dtype;
        int64_t n = ir_numel(c->t);
        size_t nbytes = (size_t)n * kiln_dtype_size(dt);
        void *a = calloc(nbytes ? nbytes : 1, 1), *b = calloc(nbytes ? nbytes : 1, 1);
        assert_non_null(a);
        assert_non_null(b);
        kiln_status sa = kiln_module_get(ref, c->name, a, nbytes);
        kiln_status sb = kiln_module_get(m, c->name, b, nbytes);
        if (sa != KILN_OK || sb != KILN_OK) {
            bad++;
            if (!quiet)
                print_message("MISMATCH %s (%s): cannot read it: %s: %s / %s: %s\n", c->name, when,
                              rname, sa == KILN_OK ? "ok" : kiln_module_error(ref), mname,
                              sb == KILN_OK ? "ok" : kiln_module_error(m));
            free(a);
            free(b);
            continue;
        }
        int shown = 0;
        int64_t wrong = 0;
        for (int64_t k = 0; k < n; k++) {
            if (sw_equal_at(dt, c->exact, a, b, k))
                continue;
            if (!quiet && shown < 3 && printed < 200) {
                char va[64], vb[64];
                sw_format_at(va, sizeof va, dt, a, k);
                sw_format_at(vb, sizeof vb, dt, b, k);
                print_message("MISMATCH %s %s[%lld] (%s, %s): %s=%s %s=%s\n", c->name, dn(dt),
                              (long long)k, when, c->exact ? "exact" : "tolerance", rname, va,
                              mname, vb);
                shown++;
                printed++;
            }
            wrong++;
        }
        if (wrong) {
            bad++;
            if (!quiet && wrong > shown)
                print_message("MISMATCH %s: %lld of %lld elements differ\n", c->name,
                              (long long)wrong, (long long)n);
        }
        free(a);
        free(b);
    }
    return bad;
}

/* Compiles the sweep for the interpreter and for `opts`, runs every entry
 * twice on both (random streams and ASSIGN updates advance between runs) and
 * compares params after compile and every output and param after each run.
 * Returns the number of mismatching (case, moment) pairs. */
static inline int sw_check_target(sweep *s, const kiln_compile_opts *opts, const char *what,
                                  bool quiet)
{
    kiln_compile_opts interp = {.target = KILN_TARGET_INTERP};
    kiln_module *m = sw_compile(s, opts, what); /* first: a failure leaks nothing */
    kiln_module *ref = sw_compile(s, &interp, "the interpreter");
    int bad = sw_compare(s, ref, m, "interp", what, "after compile", true, quiet);
    const char *when[2] = {"after run 1", "after run 2"};
    for (int r = 0; r < 2; r++) {
        sw_run_all(ref, "the interpreter");
        sw_run_all(m, what);
        bad += sw_compare(s, ref, m, "interp", what, when[r], false, quiet);
    }
    kiln_module_free(ref);
    kiln_module_free(m);
    return bad;
}

#endif
