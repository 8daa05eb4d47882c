/*
 * test_sweep.c - the op-table-driven sweep: every op of include/kiln_ops.def x
 * every dtype it accepts x shapes with broadcasting, non-contiguous views
 * (transpose, permute, slice with step, expand), size-1 and size-0 dims,
 * compiled for a target and compared with the reference interpreter.
 *
 * The case builders are a table indexed by op and expanded from the op table:
 * an op added to kiln_ops.def without a cases_<OP> function does not build,
 * and one whose builder makes no node of that op, or misses a dtype it
 * accepts, fails test_every_op_has_cases. All cases are outputs of a few
 * entries of ONE graph (sweep_harness.h), so a target compiles them once.
 *
 * test_c_target_matches_interpreter is the check of the C backend: f32 within
 * 1e-5 relative or 1e-6 absolute, f64 within 1e-12, integers, bools and
 * random draws exactly, NaN equal to NaN; after compile and after two runs.
 * Until the C target exists kiln_compile refuses it and that test FAILS (it
 * is never skipped); test_interpreter_matches_hand_computed and
 * test_harness_catches_a_difference check the harness.
 */
#include "codegen/cuda/cuda.h"
#include "cuda_emu.h"
#include "passes/passes.h"
#include "runtime/device.h"
#include "runtime/nvrtc.h"
#include "sweep_harness.h"

typedef kiln_tensor *(*unop)(kiln_graph *, kiln_tensor *);
typedef kiln_tensor *(*binop)(kiln_graph *, kiln_tensor *, kiln_tensor *);
typedef kiln_tensor *(*redop)(kiln_graph *, kiln_tensor *, int, bool);

/* Shapes in static tables (SH* are compound literals). */
#define B0                                                                                         \
    {                                                                                              \
        0,                                                                                         \
        {                                                                                          \
            0                                                                                      \
        }                                                                                          \
    }
#define B1(a)                                                                                      \
    {                                                                                              \
        1,                                                                                         \
        {                                                                                          \
            a                                                                                      \
        }                                                                                          \
    }
#define B2(a, b)                                                                                   \
    {                                                                                              \
        2,                                                                                         \
        {                                                                                          \
            a, b                                                                                   \
        }                                                                                          \
    }
#define B3(a, b, c)                                                                                \
    {                                                                                              \
        3,                                                                                         \
        {                                                                                          \
            a, b, c                                                                                \
        }                                                                                          \
    }

static sweep *sw; /* built once by the group setup */

/* ---- raw IR nodes: primitive forms no builder makes --------------------------------- */

static kiln_tensor *raw(sweep *s, ir_op op, kiln_dtype dt, shp sh, int nin, kiln_tensor *const *in)
{
    kiln_tensor *t = ir_node_new(s->g, op, dt, sh.rank, sh.dims, nin, in);
    sw_built(s, t, ir_ops[op].name);
    return t;
}

/* An elementwise binary node over operands of one shape and dtype. */
static kiln_tensor *raw2(sweep *s, ir_op op, kiln_tensor *a, kiln_tensor *b)
{
    shp sh = {a->rank, {0}};
    memcpy(sh.dims, a->dims, sizeof(sh.dims));
    return raw(s, op, a->dtype, sh, 2, (kiln_tensor *const[]){a, b});
}

/* A reduction over the axes mask, keeping them as size 1 (docs/ir.md). */
static kiln_tensor *raw_reduce(sweep *s, ir_op op, kiln_tensor *x, uint32_t axes)
{
    shp sh = {x->rank, {0}};
    for (int d = 0; d < x->rank; d++)
        sh.dims[d] = (axes >> d) & 1u ? 1 : x->dims[d];
    bool arg = op == IR_ARGMAX || op == IR_ARGMIN;
    kiln_tensor *t = raw(s, op, arg ? KILN_I64 : x->dtype, sh, 1, &x);
    t->axes = axes;
    return t;
}

static kiln_tensor *expand_to(sweep *s, kiln_tensor *t, shp sh)
{
    kiln_tensor *r = kiln_expand(s->g, t, sh.rank, sh.dims);
    sw_built(s, r, "expand");
    return r;
}

/* ---- elementwise unary ---------------------------------------------------------------- */

typedef struct {
    const char *label;
    shp sh;
    form f;
    unsigned dts;
} ushape;

static const ushape ushapes[] = {
    {"vec", B1(7), F_CONTIG, DT_ALL},
    {"rank0", B0, F_CONTIG, DT_ALL},
    {"T", B2(4, 5), F_T, DT_ALL},
    {"size0", B2(0, 4), F_CONTIG, DT_MAIN},
    {"size1", B3(1, 1, 1), F_CONTIG, DT_MAIN},
    {"step", B2(3, 4), F_STEP, DT_MAIN},
    {"expand", B3(2, 3, 4), F_EXPAND, DT_MAIN},
    {"perm", B3(2, 3, 4), F_PERM, DT_MAIN},
    {"large", B2(33, 65), F_CONTIG, DT(KILN_F32)},
};

/* fn over every shape of every dtype in dts, plus the special values (NaN,
 * infinities, signed zeros; integers at their limits) when specials. */
static void unary_sweep(sweep *s, unop fn, unsigned dts, gen_kind gk, bool specials)
{
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        if (!has_dt(dts, dt))
            continue;
        for (size_t k = 0; k < sizeof(ushapes) / sizeof(*ushapes); k++) {
            const ushape *u = &ushapes[k];
            if (has_dt(u->dts, dt))
                out(s, fn(s->g, sw_operand(s, 0, dt, u->sh, gk, u->f)), "%s.%s", dn(dt), u->label);
        }
        if (specials && dt != KILN_BOOL)
            out(s, fn(s->g, sw_operand(s, 0, dt, SH1(12), G_SPECIAL, F_CONTIG)), "%s.special",
                dn(dt));
    }
}

static void cases_NEG(sweep *s)
{
    unary_sweep(s, kiln_neg, DT_NUM, G_ANY, true);
}

static void cases_ABS(sweep *s)
{
    unary_sweep(s, kiln_abs, DT_ALL, G_ANY, true);
}

/* EXP also covers the composites built on it: softmax, log_softmax. */
static void cases_EXP(sweep *s)
{
    unary_sweep(s, kiln_exp, DT_ALL, G_ANY, true);
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = sw_dtypes[d];
        kiln_tensor *x = sw_operand(s, 0, dt, SH3(2, 3, 5), G_ANY, F_CONTIG);
        out(s, kiln_softmax(s->g, x, -1), "%s.softmax_last", dn(dt));
        out(s, kiln_softmax(s->g, x, 1), "%s.softmax_mid", dn(dt));
        out(s, kiln_log_softmax(s->g, sw_operand(s, 0, dt, SH2(4, 5), G_ANY, F_T), 1),
            "%s.log_softmax_T", dn(dt));
    }
}

static void cases_LOG(sweep *s)
{
    unary_sweep(s, kiln_log, DT_ALL, G_POS, true);
}

static void cases_LOG1P(sweep *s)
{
    unary_sweep(s, kiln_log1p, DT_ALL, G_POS, true);
}

static void cases_SQRT(sweep *s)
{
    unary_sweep(s, kiln_sqrt, DT_ALL, G_POS, true);
}

/* RSQRT also covers layer_norm. */
static void cases_RSQRT(sweep *s)
{
    unary_sweep(s, kiln_rsqrt, DT_ALL, G_POS, true);
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = sw_dtypes[d];
        kiln_tensor *x = sw_operand(s, 0, dt, SH3(2, 3, 8), G_ANY, F_CONTIG);
        kiln_tensor *w = sw_operand(s, 1, dt, SH1(8), G_ANY, F_CONTIG);
        kiln_tensor *b = sw_operand(s, 2, dt, SH1(8), G_ANY, F_CONTIG);
        out(s, kiln_layer_norm(s->g, x, w, b, 1e-5), "%s.layer_norm", dn(dt));
        out(s, kiln_layer_norm(s->g, x, NULL, NULL, 1e-5), "%s.layer_norm_plain", dn(dt));
    }
}

static void cases_SIN(sweep *s)
{
    unary_sweep(s, kiln_sin, DT_ALL, G_ANY, true);
}

static void cases_COS(sweep *s)
{
    unary_sweep(s, kiln_cos, DT_ALL, G_ANY, true);
}

static void cases_TANH(sweep *s)
{
    unary_sweep(s, kiln_tanh, DT_ALL, G_ANY, true);
}

/* ERF also covers gelu. */
static void cases_ERF(sweep *s)
{
    unary_sweep(s, kiln_erf, DT_ALL, G_ANY, true);
    for (int d = 0; d < 2; d++)
        out(s, kiln_gelu(s->g, sw_operand(s, 0, sw_dtypes[d], SH2(4, 5), G_ANY, F_T)), "%s.gelu",
            dn(sw_dtypes[d]));
}

/* SIGMOID also covers silu. */
static void cases_SIGMOID(sweep *s)
{
    unary_sweep(s, kiln_sigmoid, DT_ALL, G_ANY, true);
    for (int d = 0; d < 2; d++)
        out(s, kiln_silu(s->g, sw_operand(s, 0, sw_dtypes[d], SH2(4, 5), G_ANY, F_T)), "%s.silu",
            dn(sw_dtypes[d]));
}

static void cases_RELU(sweep *s)
{
    unary_sweep(s, kiln_relu, DT_ALL, G_ANY, true);
}

static void cases_DETACH(sweep *s)
{
    unary_sweep(s, kiln_detach, DT_ALL, G_ANY, false);
}

/* Every pair of dtypes (the same dtype makes no node: an identity case),
 * floats out of every integer range (saturating), NaN, integers at their
 * limits (wrapping to i32, rounding to f32). */
static void cases_CAST(sweep *s)
{
    for (int i = 0; i < SW_NDTYPES; i++) {
        kiln_dtype from = sw_dtypes[i];
        for (int j = 0; j < SW_NDTYPES; j++) {
            kiln_dtype to = sw_dtypes[j];
            kiln_tensor *x = sw_operand(s, 0, from, SH2(2, 3), G_ANY, F_CONTIG);
            out(s, kiln_cast(s->g, x, to), "%s_to_%s", dn(from), dn(to));
            x = sw_operand(s, 0, from, SH2(4, 5), G_TIES, F_T);
            out(s, kiln_cast(s->g, x, to), "%s_to_%s.T_ties", dn(from), dn(to));
            if (from == KILN_BOOL)
                continue;
            x = sw_operand(s, 0, from, SH1(14), G_HUGE, F_CONTIG);
            out(s, kiln_cast(s->g, x, to), "%s_to_%s.%s", dn(from), dn(to),
                ir_dtype_is_float(from) ? "huge" : "limits");
        }
    }
}

/* ---- elementwise binary --------------------------------------------------------------- */

typedef struct {
    const char *label;
    shp a;
    form fa;
    shp b;
    form fb;
    unsigned dts;
} bshape;

static const bshape bshapes[] = {
    {"same", B2(2, 3), F_CONTIG, B2(2, 3), F_CONTIG, DT_ALL},
    {"bcast_3x1_1x4", B2(3, 1), F_CONTIG, B2(1, 4), F_CONTIG, DT_ALL},
    {"rank0_rank3", B0, F_CONTIG, B3(2, 3, 4), F_CONTIG, DT_ALL},
    {"T_step", B2(4, 5), F_T, B2(4, 5), F_STEP, DT_ALL},
    {"size0", B2(0, 3), F_CONTIG, B2(1, 3), F_CONTIG, DT_MAIN},
    {"size1", B2(1, 1), F_CONTIG, B1(1), F_CONTIG, DT_MAIN},
    {"perm_rank1", B3(2, 3, 4), F_PERM, B1(4), F_CONTIG, DT_MAIN},
    {"expand_T", B2(3, 4), F_EXPAND, B2(3, 4), F_T, DT_MAIN},
    {"large", B2(37, 70), F_CONTIG, B2(37, 70), F_CONTIG, DT(KILN_F32) | DT(KILN_I32)},
};

typedef struct {
    binop fn;
    unsigned dts;
    gen_kind ga, gb; /* ordinary data of a and b */
    gen_kind ia, ib; /* integer special data of a and b (floats: G_SPECIAL x G_SPECIAL) */
} bspec;

/* The special values of dt as a (n, 1) and b (1, m): the result meets every pair. */
static void binary_specials(sweep *s, binop fn, kiln_dtype dt, gen_kind ga, gen_kind gb,
                            const char *label)
{
    kiln_tensor *a = sw_operand(s, 0, dt, SH2(sw_gen_count(ga), 1), ga, F_CONTIG);
    kiln_tensor *b = sw_operand(s, 1, dt, SH2(1, sw_gen_count(gb)), gb, F_CONTIG);
    out(s, fn(s->g, a, b), "%s.%s", dn(dt), label);
}

static void binary_sweep(sweep *s, bspec p)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        if (!has_dt(p.dts, dt))
            continue;
        for (size_t k = 0; k < sizeof(bshapes) / sizeof(*bshapes); k++) {
            const bshape *u = &bshapes[k];
            if (!has_dt(u->dts, dt))
                continue;
            kiln_tensor *a = sw_operand(s, 0, dt, u->a, p.ga, u->fa);
            kiln_tensor *b = sw_operand(s, 1, dt, u->b, p.gb, u->fb);
            out(s, p.fn(g, a, b), "%s.%s", dn(dt), u->label);
        }
        if (dt != KILN_BOOL) { /* weak Python numbers: integral, fractional, on the left */
            kiln_tensor *a = sw_operand(s, 0, dt, SH2(2, 3), p.ga, F_CONTIG);
            kiln_tensor *b = sw_operand(s, 1, dt, SH2(2, 3), p.gb, F_CONTIG);
            out(s, p.fn(g, a, kiln_scalar(g, 2)), "%s.scalar_2", dn(dt));
            out(s, p.fn(g, a, kiln_scalar(g, 0.5)), "%s.scalar_half", dn(dt));
            out(s, p.fn(g, kiln_scalar(g, 3), b), "%s.scalar_lhs", dn(dt));
        }
        if (ir_dtype_is_float(dt))
            binary_specials(s, p.fn, dt, G_SPECIAL, G_SPECIAL, "special");
        else if (ir_dtype_is_int(dt) && p.ia != G_ANY)
            binary_specials(s, p.fn, dt, p.ia, p.ib, "limits");
    }
    /* type promotion: int op float, float op wider float, bool op int, 0-d tiers */
    static const struct {
        kiln_dtype a, b;
        shp sa, sb;
    } mix[] = {{KILN_I32, KILN_F32, B2(2, 3), B1(3)},
               {KILN_F32, KILN_F64, B0, B2(2, 3)},
               {KILN_I64, KILN_F32, B2(2, 3), B0},
               {KILN_BOOL, KILN_I32, B2(2, 3), B2(2, 3)},
               {KILN_I32, KILN_I64, B2(3, 1), B1(4)}};
    for (size_t k = 0; k < sizeof(mix) / sizeof(*mix); k++) {
        if (!has_dt(p.dts, mix[k].a) || !has_dt(p.dts, mix[k].b))
            continue;
        kiln_tensor *a = sw_operand(s, 0, mix[k].a, mix[k].sa, p.ga, F_CONTIG);
        kiln_tensor *b = sw_operand(s, 1, mix[k].b, mix[k].sb, p.gb, F_CONTIG);
        out(s, p.fn(g, a, b), "%s_%s.promote", dn(mix[k].a), dn(mix[k].b));
    }
}

static void cases_ADD(sweep *s)
{
    binary_sweep(s, (bspec){kiln_add, DT_ALL, G_ANY, G_ANY, G_SPECIAL, G_SPECIAL});
}

static void cases_SUB(sweep *s)
{
    binary_sweep(s, (bspec){kiln_sub, DT_NUM, G_ANY, G_ANY, G_SPECIAL, G_SPECIAL});
}

static void cases_MUL(sweep *s)
{
    binary_sweep(s, (bspec){kiln_mul, DT_ALL, G_ANY, G_ANY, G_SPECIAL, G_SPECIAL});
}

/* kiln_div is true division (integers divide as f32); integer DIV is floor
 * division, made raw: divisors nonzero, INT_MIN / -1 wraps. */
static void cases_DIV(sweep *s)
{
    binary_sweep(s, (bspec){kiln_div, DT_ALL, G_ANY, G_NZ, G_SPECIAL, G_SPECIAL});
    for (int d = 2; d < 4; d++) {
        kiln_dtype dt = sw_dtypes[d];
        out(s,
            raw2(s, IR_DIV, sw_operand(s, 0, dt, SH2(2, 3), G_ANY, F_CONTIG),
                 sw_operand(s, 1, dt, SH2(2, 3), G_NZ, F_CONTIG)),
            "%s.floor", dn(dt));
        out(s,
            raw2(s, IR_DIV, sw_operand(s, 0, dt, SH2(4, 5), G_ANY, F_T),
                 sw_operand(s, 1, dt, SH2(4, 5), G_NZ, F_STEP)),
            "%s.floor_T_step", dn(dt));
        out(s,
            raw2(s, IR_DIV, sw_operand(s, 0, dt, SH2(0, 3), G_ANY, F_CONTIG),
                 sw_operand(s, 1, dt, SH2(0, 3), G_NZ, F_CONTIG)),
            "%s.floor_size0", dn(dt));
        kiln_tensor *a = sw_operand(s, 0, dt, SH2(9, 1), G_SPECIAL, F_CONTIG);
        kiln_tensor *b = sw_operand(s, 1, dt, SH2(1, 6), G_NZLIM, F_CONTIG);
        out(s, raw2(s, IR_DIV, expand_to(s, a, SH2(9, 6)), expand_to(s, b, SH2(9, 6))),
            "%s.floor_limits", dn(dt));
    }
}

/* Bases positive for floats (no NaN from a fractional exponent); integer
 * exponents non-negative; integer powers wrap. */
static void cases_POW(sweep *s)
{
    binary_sweep(s, (bspec){kiln_pow, DT_ALL, G_POS, G_EXP, G_SPECIAL, G_POWEXP});
    for (int d = 2; d < 4; d++) {
        kiln_dtype dt = sw_dtypes[d];
        out(s,
            kiln_pow(s->g, sw_operand(s, 0, dt, SH2(2, 3), G_ANY, F_CONTIG),
                     sw_operand(s, 1, dt, SH2(2, 3), G_EXP, F_CONTIG)),
            "%s.negative_bases", dn(dt));
    }
}

static void cases_MAXIMUM(sweep *s)
{
    binary_sweep(s, (bspec){kiln_maximum, DT_ALL, G_ANY, G_ANY, G_SPECIAL, G_SPECIAL});
}

static void cases_MINIMUM(sweep *s)
{
    binary_sweep(s, (bspec){kiln_minimum, DT_ALL, G_ANY, G_ANY, G_SPECIAL, G_SPECIAL});
}

/* Comparisons draw from few values, so equal elements occur. */
static void cases_EQ(sweep *s)
{
    binary_sweep(s, (bspec){kiln_eq, DT_ALL, G_TIES, G_TIES, G_SPECIAL, G_SPECIAL});
}

static void cases_NE(sweep *s)
{
    binary_sweep(s, (bspec){kiln_ne, DT_ALL, G_TIES, G_TIES, G_SPECIAL, G_SPECIAL});
}

static void cases_LT(sweep *s)
{
    binary_sweep(s, (bspec){kiln_lt, DT_ALL, G_TIES, G_TIES, G_SPECIAL, G_SPECIAL});
}

static void cases_LE(sweep *s)
{
    binary_sweep(s, (bspec){kiln_le, DT_ALL, G_TIES, G_TIES, G_SPECIAL, G_SPECIAL});
}

static void cases_GT(sweep *s)
{
    binary_sweep(s, (bspec){kiln_gt, DT_ALL, G_TIES, G_TIES, G_SPECIAL, G_SPECIAL});
}

static void cases_GE(sweep *s)
{
    binary_sweep(s, (bspec){kiln_ge, DT_ALL, G_TIES, G_TIES, G_SPECIAL, G_SPECIAL});
}

/* ---- where ------------------------------------------------------------------------------ */

static void cases_WHERE(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        kiln_tensor *c = sw_operand(s, 0, KILN_BOOL, SH2(3, 1), G_ANY, F_CONTIG);
        kiln_tensor *a = sw_operand(s, 1, dt, SH2(1, 4), G_ANY, F_CONTIG);
        kiln_tensor *b = sw_operand(s, 2, dt, SH0, G_ANY, F_CONTIG);
        out(s, kiln_where(g, c, a, b), "%s.bcast_3x1_1x4_rank0", dn(dt));
        c = sw_operand(s, 0, KILN_BOOL, SH2(4, 5), G_ANY, F_T);
        a = sw_operand(s, 1, dt, SH2(4, 5), G_ANY, F_STEP);
        b = sw_operand(s, 2, dt, SH1(5), G_ANY, F_CONTIG);
        out(s, kiln_where(g, c, a, b), "%s.T_step_row", dn(dt));
        a = sw_operand(s, 1, dt, SH2(2, 3), G_TIES, F_CONTIG);
        b = sw_operand(s, 2, dt, SH2(2, 3), G_TIES, F_CONTIG);
        out(s, kiln_where(g, kiln_lt(g, a, b), a, b), "%s.cond_from_lt", dn(dt));
        if (dt != KILN_BOOL)
            out(s, kiln_where(g, kiln_gt(g, a, kiln_scalar(g, 0)), a, kiln_scalar(g, 0)),
                "%s.scalar", dn(dt));
        if (has_dt(DT_MAIN, dt)) {
            c = sw_operand(s, 0, KILN_BOOL, SH2(0, 3), G_ANY, F_CONTIG);
            a = sw_operand(s, 1, dt, SH2(1, 3), G_ANY, F_CONTIG);
            b = sw_operand(s, 2, dt, SH2(0, 1), G_ANY, F_CONTIG);
            out(s, kiln_where(g, c, a, b), "%s.size0", dn(dt));
            c = sw_operand(s, 0, KILN_BOOL, SH3(2, 3, 4), G_ANY, F_EXPAND);
            a = sw_operand(s, 1, dt, SH3(2, 3, 4), G_ANY, F_PERM);
            b = sw_operand(s, 2, dt, SH2(3, 4), G_ANY, F_T);
            out(s, kiln_where(g, c, a, b), "%s.expand_perm_T", dn(dt));
        }
        if (ir_dtype_is_float(dt)) {
            c = sw_operand(s, 0, KILN_BOOL, SH1(12), G_SPECIAL, F_CONTIG);
            a = sw_operand(s, 1, dt, SH1(12), G_SPECIAL, F_CONTIG);
            out(s, kiln_where(g, c, a, kiln_neg(g, a)), "%s.special", dn(dt));
        }
    }
    kiln_tensor *c = sw_operand(s, 0, KILN_BOOL, SH2(2, 3), G_ANY, F_CONTIG);
    out(s,
        kiln_where(g, c, sw_operand(s, 1, KILN_I32, SH2(2, 3), G_ANY, F_CONTIG),
                   sw_operand(s, 2, KILN_F32, SH1(3), G_ANY, F_CONTIG)),
        "i32_f32.promote");
}

/* ---- reductions ----------------------------------------------------------------------- */

typedef struct {
    const char *label;
    shp sh;
    form f;
    int axis;
    bool keep;
    bool empty; /* reduces a size-0 axis: sum only */
    bool pos;   /* positive data: long f32 sums stay well-conditioned */
    unsigned dts;
} rcfg;

static const rcfg rcfgs[] = {
    {"ax0", B3(3, 4, 5), F_CONTIG, 0, false, false, false, DT_ALL},
    {"ax1_keep", B3(3, 4, 5), F_CONTIG, 1, true, false, false, DT_ALL},
    {"ax_neg1", B3(3, 4, 5), F_CONTIG, -1, false, false, false, DT_ALL},
    {"all", B3(3, 4, 5), F_CONTIG, KILN_ALL, false, false, false, DT_ALL},
    {"T_ax0", B2(4, 5), F_T, 0, false, false, false, DT_ALL},
    {"all_keep", B2(3, 4), F_CONTIG, KILN_ALL, true, false, false, DT_MAIN},
    {"rank0_all", B0, F_CONTIG, KILN_ALL, false, false, false, DT_MAIN},
    {"rank0_ax0_keep", B0, F_CONTIG, 0, true, false, false, DT_MAIN},
    {"T_all", B2(4, 5), F_T, KILN_ALL, false, false, false, DT_MAIN},
    {"step_ax1", B2(3, 4), F_STEP, 1, false, false, false, DT_MAIN},
    {"expand_ax2", B3(2, 3, 4), F_EXPAND, 2, false, false, false, DT_MAIN},
    {"perm_ax1_keep", B3(2, 3, 4), F_PERM, 1, true, false, false, DT_MAIN},
    {"size1_ax1", B2(3, 1), F_CONTIG, 1, false, false, false, DT_MAIN},
    {"size0_kept_axis", B2(0, 3), F_CONTIG, 1, false, false, false, DT_MAIN},
    {"size0_ax0", B2(0, 3), F_CONTIG, 0, false, true, false, DT_MAIN},
    {"size0_all", B2(0, 3), F_CONTIG, KILN_ALL, true, true, false, DT_MAIN},
    {"large_rows", B2(64, 300), F_CONTIG, 1, false, false, true, DT_MAIN | DT(KILN_F64)},
    {"large_cols", B2(300, 64), F_CONTIG, 0, false, false, true, DT(KILN_F32)},
    {"large_all", B2(64, 300), F_CONTIG, KILN_ALL, false, false, true, DT_MAIN},
};

static void reduce_sweep(sweep *s, redop fn, unsigned dts, gen_kind gk, bool allow_empty)
{
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        if (!has_dt(dts, dt))
            continue;
        for (size_t k = 0; k < sizeof(rcfgs) / sizeof(*rcfgs); k++) {
            const rcfg *c = &rcfgs[k];
            if (!has_dt(c->dts, dt) || (c->empty && !allow_empty))
                continue;
            kiln_tensor *x = sw_operand(s, 0, dt, c->sh, c->pos ? G_POS : gk, c->f);
            out(s, fn(s->g, x, c->axis, c->keep), "%s.%s", dn(dt), c->label);
        }
    }
}

/* NaN, infinities and signed zeros along rows of 7: some rows hold a NaN. */
static void reduce_specials(sweep *s, redop fn)
{
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = sw_dtypes[d];
        kiln_tensor *x = sw_operand(s, 0, dt, SH2(4, 7), G_SPECIAL, F_CONTIG);
        out(s, fn(s->g, x, 1, false), "%s.special_ax1", dn(dt));
        out(s, fn(s->g, x, 0, false), "%s.special_ax0", dn(dt));
        out(s, fn(s->g, x, KILN_ALL, false), "%s.special_all", dn(dt));
        /* the row without NaN alone */
        out(s, fn(s->g, kiln_select(s->g, x, 0, 2), 0, false), "%s.special_row2", dn(dt));
    }
}

/* SUM also covers sum_axes, mean, mean_axes, mse_loss, and raw SUM of i32 and
 * bool (the builder sums integers as i64). */
static void cases_SUM(sweep *s)
{
    kiln_graph *g = s->g;
    reduce_sweep(s, kiln_sum, DT_ALL, G_UNIT, true);
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        kiln_tensor *x = sw_operand(s, 0, dt, SH3(3, 4, 5), G_UNIT, F_CONTIG);
        out(s, kiln_sum_axes(g, x, 2, (const int[]){0, 2}, false), "%s.axes02", dn(dt));
        out(s, kiln_sum_axes(g, x, 2, (const int[]){-1, 1}, true), "%s.axes12_keep", dn(dt));
        out(s, kiln_sum_axes(g, x, 0, NULL, false), "%s.axes_none_all", dn(dt));
        kiln_tensor *p = sw_operand(s, 0, dt, SH3(2, 3, 4), G_UNIT, F_PERM);
        out(s, kiln_sum_axes(g, p, 2, (const int[]){0, 1}, true), "%s.perm_axes01_keep", dn(dt));
        if (ir_dtype_is_float(dt)) {
            out(s, kiln_mean(g, x, 1, false), "%s.mean_ax1", dn(dt));
            out(s, kiln_mean_axes(g, x, 2, (const int[]){0, 2}, true), "%s.mean_axes02", dn(dt));
            out(s, kiln_mean(g, sw_operand(s, 0, dt, SH2(4, 5), G_UNIT, F_T), KILN_ALL, false),
                "%s.mean_T_all", dn(dt));
            out(s,
                kiln_mse_loss(g, sw_operand(s, 0, dt, SH2(4, 5), G_UNIT, F_CONTIG),
                              sw_operand(s, 1, dt, SH2(4, 5), G_UNIT, F_CONTIG)),
                "%s.mse_loss", dn(dt));
            out(s, kiln_sum(g, sw_operand(s, 0, dt, SH1(12), G_SPECIAL, F_CONTIG), 0, false),
                "%s.special", dn(dt));
            /* sums over rows, whole columns at a time (render_c's by_columns):
             * a ragged last block of columns, a kept axis before them, and an
             * epilogue */
            kiln_tensor *w = sw_operand(s, 0, dt, SH3(3, 40, 70), G_UNIT, F_CONTIG);
            out(s, kiln_sum(g, w, 1, false), "%s.cols_ax1", dn(dt));
            out(s, kiln_mean(g, sw_operand(s, 1, dt, SH2(50, 33), G_UNIT, F_CONTIG), 0, true),
                "%s.cols_mean_ax0", dn(dt));
        }
    }
    kiln_tensor *xi = sw_operand(s, 0, KILN_I32, SH3(3, 4, 5), G_UNIT, F_CONTIG);
    out(s, raw_reduce(s, IR_SUM, xi, 0x5u), "i32.raw_axes02");
    out(s, raw_reduce(s, IR_SUM, sw_operand(s, 0, KILN_I32, SH1(9), G_SPECIAL, F_CONTIG), 0x1u),
        "i32.raw_limits_wrap");
    kiln_tensor *xb = sw_operand(s, 0, KILN_BOOL, SH2(4, 5), G_TIES, F_T);
    out(s, raw_reduce(s, IR_SUM, xb, 0x2u), "bool.raw_ax1");
}

static void cases_MAX(sweep *s)
{
    reduce_sweep(s, kiln_max, DT_ALL, G_ANY, false);
    reduce_specials(s, kiln_max);
}

static void cases_MIN(sweep *s)
{
    reduce_sweep(s, kiln_min, DT_ALL, G_ANY, false);
    reduce_specials(s, kiln_min);
}

/* Ties: the first index wins; several axes (raw): flat over the reduced axes. */
static void arg_cases(sweep *s, ir_op op, redop fn)
{
    reduce_sweep(s, fn, DT_NUM, G_TIES, false);
    reduce_specials(s, fn);
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        if (!has_dt(DT_NUM, dt))
            continue;
        kiln_tensor *x = sw_operand(s, 0, dt, SH3(3, 4, 5), G_TIES, F_CONTIG);
        out(s, raw_reduce(s, op, x, 0x5u), "%s.raw_axes02", dn(dt));
        out(s, raw_reduce(s, op, sw_operand(s, 0, dt, SH3(2, 3, 4), G_TIES, F_PERM), 0x6u),
            "%s.raw_perm_axes12", dn(dt));
        out(s, fn(s->g, sw_operand(s, 0, dt, SH1(9), G_SPECIAL, F_CONTIG), 0, false),
            "%s.special_vec", dn(dt));
    }
}

static void cases_ARGMAX(sweep *s)
{
    arg_cases(s, IR_ARGMAX, kiln_argmax);
}

static void cases_ARGMIN(sweep *s)
{
    arg_cases(s, IR_ARGMIN, kiln_argmin);
}

/* ---- movement -------------------------------------------------------------------------- */

static void cases_RESHAPE(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        out(s,
            kiln_reshape(g, sw_operand(s, 0, dt, SH3(2, 3, 4), G_ANY, F_CONTIG), KILN_SHAPE(6, 4)),
            "%s.contig", n);
        out(s, kiln_reshape(g, sw_operand(s, 0, dt, SH2(4, 6), G_ANY, F_T), KILN_SHAPE(3, 8)),
            "%s.of_T", n);
        out(s, kiln_reshape(g, sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_STEP), KILN_SHAPE(-1)),
            "%s.of_step", n);
        out(s, kiln_reshape(g, sw_operand(s, 0, dt, SH2(1, 1), G_ANY, F_CONTIG), 0, NULL),
            "%s.to_rank0", n);
        out(s, kiln_reshape(g, sw_operand(s, 0, dt, SH0, G_ANY, F_CONTIG), KILN_SHAPE(1, 1, 1)),
            "%s.from_rank0", n);
        out(s, kiln_reshape(g, sw_operand(s, 0, dt, SH2(0, 3), G_ANY, F_CONTIG), KILN_SHAPE(3, 0)),
            "%s.size0", n);
        out(s, kiln_flatten(g, sw_operand(s, 0, dt, SH3(2, 3, 4), G_ANY, F_PERM), 1, 2),
            "%s.flatten_perm", n);
        kiln_tensor *sq = kiln_squeeze(g, sw_operand(s, 0, dt, SH3(3, 1, 4), G_ANY, F_CONTIG), 1);
        out(s, kiln_unsqueeze(g, sq, 0), "%s.squeeze_unsqueeze", n);
        out(s, kiln_reshape(g, sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_EXPAND), KILN_SHAPE(2, 6)),
            "%s.of_expand", n);
    }
}

static void cases_PERMUTE(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        kiln_tensor *x = sw_operand(s, 0, dt, SH3(2, 3, 4), G_ANY, F_CONTIG);
        out(s, kiln_permute(g, x, (const int[]){2, 0, 1}), "%s.p201", n);
        out(s, kiln_permute(g, x, (const int[]){1, 0, 2}), "%s.p102", n);
        out(s, kiln_transpose(g, sw_operand(s, 0, dt, SH2(3, 5), G_ANY, F_CONTIG), 0, 1),
            "%s.transpose", n);
        out(s,
            kiln_permute(g, sw_operand(s, 0, dt, SH3(3, 4, 2), G_ANY, F_STEP),
                         (const int[]){2, 1, 0}),
            "%s.of_step", n);
        out(s,
            kiln_permute(g, sw_operand(s, 0, dt, SH3(0, 3, 2), G_ANY, F_CONTIG),
                         (const int[]){2, 0, 1}),
            "%s.size0", n);
        out(s, kiln_transpose(g, sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_EXPAND), 0, 1),
            "%s.of_expand", n);
        out(s, kiln_transpose(g, sw_operand(s, 0, dt, SH3(2, 3, 4), G_ANY, F_PERM), 0, 2),
            "%s.of_perm", n);
        if (has_dt(DT_MAIN, dt))
            out(s,
                kiln_permute(g, sw_operand(s, 0, dt, SH4(2, 3, 2, 3), G_ANY, F_CONTIG),
                             (const int[]){3, 1, 0, 2}),
                "%s.rank4", n);
    }
}

static void cases_EXPAND(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        out(s, kiln_expand(g, sw_operand(s, 0, dt, SH2(3, 1), G_ANY, F_CONTIG), KILN_SHAPE(3, 4)),
            "%s.col", n);
        out(s, kiln_expand(g, sw_operand(s, 0, dt, SH0, G_ANY, F_CONTIG), KILN_SHAPE(2, 3)),
            "%s.rank0", n);
        out(s, kiln_expand(g, sw_operand(s, 0, dt, SH1(4), G_ANY, F_CONTIG), KILN_SHAPE(2, 3, 4)),
            "%s.new_axes", n);
        out(s, kiln_expand(g, sw_operand(s, 0, dt, SH2(1, 3), G_ANY, F_CONTIG), KILN_SHAPE(0, 3)),
            "%s.to_size0", n);
        out(s, kiln_expand(g, sw_operand(s, 0, dt, SH2(4, 1), G_ANY, F_T), KILN_SHAPE(4, 5)),
            "%s.of_T", n);
        out(s,
            kiln_expand(g, sw_operand(s, 0, dt, SH2(1, 1), G_ANY, F_CONTIG), KILN_SHAPE(2, -1, 5)),
            "%s.keep_size", n);
    }
}

static void cases_SLICE(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        kiln_tensor *x = sw_operand(s, 0, dt, SH2(6, 5), G_ANY, F_CONTIG);
        out(s, kiln_slice(g, x, 0, 1, 5, 2), "%s.rows_step2", n);
        out(s, kiln_slice(g, x, 1, -3, INT64_MAX, 1), "%s.cols_negative_start", n);
        out(s, kiln_slice(g, x, 1, 0, 5, 3), "%s.cols_step3", n);
        out(s, kiln_select(g, x, 0, 2), "%s.select_row", n);
        out(s, kiln_select(g, x, 1, -1), "%s.select_last_col", n);
        out(s, kiln_slice(g, x, 0, 3, 3, 1), "%s.empty", n);
        out(s, kiln_slice(g, kiln_slice(g, x, 0, 1, 6, 2), 1, 1, 5, 2), "%s.of_slice", n);
        out(s, kiln_slice(g, sw_operand(s, 0, dt, SH2(5, 6), G_ANY, F_T), 1, 0, 6, 4), "%s.of_T",
            n);
        if (has_dt(DT_MAIN, dt)) {
            out(s, kiln_slice(g, sw_operand(s, 0, dt, SH2(0, 5), G_ANY, F_CONTIG), 1, 1, 4, 1),
                "%s.of_size0", n);
            out(s, kiln_slice(g, sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_EXPAND), 1, 1, 3, 1),
                "%s.of_expand", n);
            out(s, kiln_slice(g, sw_operand(s, 0, dt, SH3(2, 7, 3), G_ANY, F_CONTIG), 1, 1, 7, 3),
                "%s.mid_axis", n);
        }
    }
}

static void cases_PAD(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        double v = ir_dtype_is_float(dt) ? 1.5 : dt == KILN_BOOL ? 1 : 7;
        kiln_tensor *x = sw_operand(s, 0, dt, SH2(2, 3), G_ANY, F_CONTIG);
        out(s, kiln_pad(g, x, (const int64_t[]){1, 0}, (const int64_t[]){0, 2}, 0), "%s.zero", n);
        out(s, kiln_pad(g, x, (const int64_t[]){0, 1}, (const int64_t[]){2, 1}, v), "%s.value", n);
        out(s,
            kiln_pad(g, sw_operand(s, 0, dt, SH2(4, 5), G_ANY, F_T), (const int64_t[]){2, 1},
                     (const int64_t[]){0, 3}, v),
            "%s.of_T", n);
        out(s,
            kiln_pad(g, sw_operand(s, 0, dt, SH1(5), G_ANY, F_CONTIG), (const int64_t[]){3},
                     (const int64_t[]){2}, v),
            "%s.vec", n);
        if (has_dt(DT_MAIN, dt)) {
            out(s,
                kiln_pad(g, sw_operand(s, 0, dt, SH3(2, 3, 4), G_ANY, F_CONTIG),
                         (const int64_t[]){0, 2, 0}, (const int64_t[]){0, 1, 0}, v),
                "%s.mid_axis", n);
            out(s,
                kiln_pad(g, sw_operand(s, 0, dt, SH2(0, 3), G_ANY, F_CONTIG),
                         (const int64_t[]){1, 0}, (const int64_t[]){1, 1}, v),
                "%s.of_size0", n);
            out(s,
                kiln_pad(g, sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_STEP), (const int64_t[]){1, 1},
                         (const int64_t[]){1, 1}, v),
                "%s.of_step", n);
        }
    }
}

static void cases_CONCAT(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        kiln_tensor *a = sw_operand(s, 0, dt, SH2(2, 3), G_ANY, F_CONTIG);
        kiln_tensor *b = sw_operand(s, 1, dt, SH2(1, 3), G_ANY, F_CONTIG);
        out(s, kiln_concat(g, 2, (kiln_tensor *const[]){a, b}, 0), "%s.rows", n);
        kiln_tensor *c = sw_operand(s, 1, dt, SH2(2, 1), G_ANY, F_CONTIG);
        kiln_tensor *e = sw_operand(s, 2, dt, SH2(2, 2), G_ANY, F_CONTIG);
        out(s, kiln_concat(g, 3, (kiln_tensor *const[]){a, c, e}, 1), "%s.three_cols", n);
        kiln_tensor *z = sw_operand(s, 1, dt, SH2(0, 3), G_ANY, F_CONTIG);
        out(s, kiln_concat(g, 3, (kiln_tensor *const[]){z, a, z}, 0), "%s.size0_piece", n);
        kiln_tensor *t = sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_T);
        kiln_tensor *st = sw_operand(s, 1, dt, SH2(3, 4), G_ANY, F_STEP);
        out(s, kiln_concat(g, 2, (kiln_tensor *const[]){t, st}, 1), "%s.T_step", n);
        kiln_tensor *a2 = sw_operand(s, 1, dt, SH2(2, 3), G_ANY, F_CONTIG);
        out(s, kiln_stack(g, 2, (kiln_tensor *const[]){a, a2}, 0), "%s.stack0", n);
        out(s, kiln_stack(g, 2, (kiln_tensor *const[]){a, a2}, 1), "%s.stack1", n);
        out(s, kiln_stack(g, 3, (kiln_tensor *const[]){a, a2, a}, -1), "%s.stack_last", n);
        out(s,
            kiln_concat(g, 2,
                        (kiln_tensor *const[]){sw_operand(s, 0, dt, SH1(5), G_ANY, F_CONTIG),
                                               sw_operand(s, 1, dt, SH1(2), G_ANY, F_CONTIG)},
                        0),
            "%s.vec", n);
        if (dt != KILN_F32) {
            kiln_tensor *f = sw_operand(s, 1, KILN_F32, SH2(2, 3), G_ANY, F_CONTIG);
            out(s, kiln_concat(g, 2, (kiln_tensor *const[]){a, f}, 0), "%s_f32.promote", n);
        }
    }
}

/* ---- matmul ----------------------------------------------------------------------------- */

typedef struct {
    const char *label;
    shp a;
    form fa;
    shp b;
    form fb;
    unsigned dts;
    bool pos; /* positive data: long f32 dot products without cancellation */
} mcfg;

static const mcfg mcfgs[] = {
    {"dot", B1(7), F_CONTIG, B1(7), F_CONTIG, DT_NUM, false},
    {"mat_vec", B2(4, 7), F_CONTIG, B1(7), F_CONTIG, DT_NUM, false},
    {"vec_mat", B1(7), F_CONTIG, B2(7, 5), F_CONTIG, DT_NUM, false},
    {"mat_mat", B2(4, 7), F_CONTIG, B2(7, 5), F_CONTIG, DT_NUM, false},
    {"batched", B3(2, 3, 4), F_CONTIG, B3(2, 4, 5), F_CONTIG, DT_NUM, false},
    {"batch_bcast", {4, {2, 1, 3, 4}}, F_CONTIG, B3(3, 4, 2), F_CONTIG, DT_NUM, false},
    {"batched_mat", B3(2, 3, 4), F_CONTIG, B2(4, 5), F_CONTIG, DT_NUM, false},
    {"aT", B2(4, 7), F_T, B2(7, 5), F_CONTIG, DT_NUM, false},
    {"bT", B2(4, 7), F_CONTIG, B2(7, 5), F_T, DT_NUM, false},
    {"aT_bT", B2(4, 7), F_T, B2(7, 5), F_T, DT_NUM, false},
    {"a_step_b_expand", B2(4, 7), F_STEP, B2(7, 5), F_EXPAND, DT_NUM, false},
    {"batched_perm", B3(2, 3, 4), F_PERM, B3(2, 4, 5), F_T, DT_MAIN, false},
    {"k0", B2(3, 0), F_CONTIG, B2(0, 4), F_CONTIG, DT_NUM, false},
    {"m0", B2(0, 4), F_CONTIG, B2(4, 3), F_CONTIG, DT_MAIN, false},
    {"n0", B2(3, 4), F_CONTIG, B2(4, 0), F_CONTIG, DT_MAIN, false},
    {"size1", B2(1, 1), F_CONTIG, B2(1, 1), F_CONTIG, DT_MAIN, false},
    {"large", B2(33, 65), F_CONTIG, B2(65, 17), F_CONTIG, DT_NUM, true},
    {"large_bT", B2(40, 96), F_CONTIG, B2(96, 24), F_T, DT(KILN_F32), true},
};

/* MATMUL also covers linear. */
static void cases_MATMUL(sweep *s)
{
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        for (size_t k = 0; k < sizeof(mcfgs) / sizeof(*mcfgs); k++) {
            const mcfg *c = &mcfgs[k];
            if (!has_dt(c->dts, dt))
                continue;
            gen_kind gk = c->pos ? G_POS : G_UNIT;
            kiln_tensor *a = sw_operand(s, 0, dt, c->a, gk, c->fa);
            kiln_tensor *b = sw_operand(s, 1, dt, c->b, gk, c->fb);
            out(s, kiln_matmul(s->g, a, b), "%s.%s", dn(dt), c->label);
        }
        if (ir_dtype_is_float(dt)) {
            kiln_tensor *x = sw_operand(s, 0, dt, SH2(5, 7), G_UNIT, F_CONTIG);
            kiln_tensor *w = sw_operand(s, 1, dt, SH2(3, 7), G_UNIT, F_CONTIG);
            kiln_tensor *b = sw_operand(s, 2, dt, SH1(3), G_UNIT, F_CONTIG);
            out(s, kiln_linear(s->g, x, w, b), "%s.linear", dn(dt));
            out(s, kiln_relu(s->g, kiln_linear(s->g, x, w, NULL)), "%s.linear_relu", dn(dt));
        }
    }
}

/* ---- convolution ------------------------------------------------------------------------ */

/* The conv node (as kiln_conv2d/conv1d build it) and its input's gradient
 * (a conv of the spread, padded gradient and the flipped weight, as autodiff
 * builds it): stride, padding, dilation, groups, a transposed (strided) input,
 * bias and ReLU after it; checked against the interpreter's direct loops. */
static void cases_CONV(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        if (!ir_dtype_is_float(dt))
            continue;
        const char *n = dn(dt);
        kiln_tensor *x = sw_operand(s, 0, dt, SH4(2, 4, 9, 8), G_UNIT, F_CONTIG);
        kiln_tensor *xt = sw_operand(s, 0, dt, SH4(2, 4, 8, 9), G_UNIT, F_T);
        kiln_tensor *w = sw_operand(s, 1, dt, SH4(6, 4, 3, 3), G_UNIT, F_CONTIG);
        kiln_tensor *wg = sw_operand(s, 1, dt, SH4(6, 2, 3, 2), G_UNIT, F_CONTIG);
        kiln_tensor *b = sw_operand(s, 2, dt, SH1(6), G_UNIT, F_CONTIG);
        out(s, kiln_conv2d(g, x, w, NULL, (kiln_conv_opts){0}), "%s.plain", n);
        out(s, kiln_relu(g, kiln_conv2d(g, x, w, b, (kiln_conv_opts){.padding = {1, 1}})),
            "%s.pad_bias_relu", n);
        out(s, kiln_conv2d(g, xt, w, NULL, (kiln_conv_opts){.stride = {2, 2}, .padding = {1, 0}}),
            "%s.strided_view", n);
        out(s,
            kiln_conv2d(g, x, wg, b,
                        (kiln_conv_opts){.stride = {3, 2}, .dilation = {2, 3}, .groups = 2}),
            "%s.groups_dilation", n);
        kiln_tensor *x1 = sw_operand(s, 0, dt, SH3(2, 4, 11), G_UNIT, F_CONTIG);
        kiln_tensor *w1 = sw_operand(s, 1, dt, SH3(6, 4, 3), G_UNIT, F_CONTIG);
        out(s, kiln_conv1d(g, x1, w1, b, (kiln_conv_opts){.stride = {2}, .padding = {2}}),
            "%s.conv1d", n);
        kiln_tensor *gy = sw_operand(s, 3, dt, SH4(2, 6, 4, 3), G_UNIT, F_CONTIG);
        kiln_tensor *dx = NULL, *xs = sw_operand(s, 0, dt, SH4(2, 4, 9, 8), G_UNIT, F_CONTIG);
        kiln_tensor *y = kiln_conv2d(g, xs, w, NULL, (kiln_conv_opts){.stride = {2, 2}});
        assert_int_equal(kiln_grad(g, y, 1, &xs, gy, &dx), KILN_OK);
        out(s, dx, "%s.input_grad", n);
    }
}

/* ---- scaled dot-product attention ------------------------------------------------------ */

/* The fused op (no broadcasting of q, k, v): causal or not, more or fewer
 * keys than rows, transposed and permuted operands (strided reads), one row;
 * random bool masks (rows that attend to nothing among them) broadcast over
 * the batch, transposed, or one per batch. */
static void cases_SDPA(sweep *s)
{
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        if (!ir_dtype_is_float(dt))
            continue;
        const char *n = dn(dt);
        for (int causal = 0; causal < 2; causal++) {
            kiln_tensor *q = sw_operand(s, 0, dt, SH3(2, 5, 4), G_UNIT, F_CONTIG);
            kiln_tensor *k = sw_operand(s, 1, dt, SH3(2, 7, 4), G_UNIT, F_CONTIG);
            kiln_tensor *v = sw_operand(s, 2, dt, SH3(2, 7, 3), G_UNIT, F_CONTIG);
            out(s, kiln_scaled_dot_product_attention(s->g, q, k, v, NULL, causal, 0), "%s.%s", n,
                causal ? "causal" : "full");
            kiln_tensor *kt = sw_operand(s, 1, dt, SH3(2, 7, 4), G_UNIT, F_T);
            kiln_tensor *vp = sw_operand(s, 2, dt, SH3(2, 7, 3), G_UNIT, F_PERM);
            out(s, kiln_scaled_dot_product_attention(s->g, q, kt, vp, NULL, causal, 0.5),
                "%s.%s.views", n, causal ? "causal" : "full");
        }
        kiln_tensor *q1 = sw_operand(s, 0, dt, SH2(1, 6), G_UNIT, F_CONTIG);
        kiln_tensor *k1 = sw_operand(s, 1, dt, SH2(9, 6), G_UNIT, F_CONTIG);
        kiln_tensor *v1 = sw_operand(s, 2, dt, SH2(9, 2), G_UNIT, F_CONTIG);
        out(s, kiln_scaled_dot_product_attention(s->g, q1, k1, v1, NULL, false, 0), "%s.one_row",
            n);
        kiln_tensor *q = sw_operand(s, 0, dt, SH3(2, 5, 4), G_UNIT, F_CONTIG);
        kiln_tensor *k = sw_operand(s, 1, dt, SH3(2, 7, 4), G_UNIT, F_CONTIG);
        kiln_tensor *vp = sw_operand(s, 2, dt, SH3(2, 7, 3), G_UNIT, F_PERM);
        kiln_tensor *masks[3] = {sw_operand(s, 3, KILN_BOOL, SH2(5, 7), G_ANY, F_CONTIG),
                                 sw_operand(s, 3, KILN_BOOL, SH2(5, 7), G_ANY, F_T),
                                 sw_operand(s, 3, KILN_BOOL, SH3(2, 5, 7), G_ANY, F_CONTIG)};
        for (int i = 0; i < 3; i++)
            out(s, kiln_scaled_dot_product_attention(s->g, q, k, vp, masks[i], false, 0),
                "%s.mask%d", n, i);
    }
}

/* sdpa's backward, built as autodiff builds it: the stats of q, k, v and an
 * output gradient g, then each gradient from them; causal or not, more keys
 * than rows, transposed and permuted operands. */
static kiln_tensor *sdpa_backward(sweep *s, ir_op op, int axis, kiln_tensor **in, bool causal,
                                  double scale, kiln_tensor *mask)
{
    kiln_tensor *t = ir_sdpa_backward_new(s->g, op, axis, in, mask, scale, causal);
    assert_non_null(t);
    return t;
}

static void sdpa_backward_cases(sweep *s, bool grads)
{
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        if (!ir_dtype_is_float(dt))
            continue;
        const char *n = dn(dt);
        /* causal 2: not causal, a random mask (one per batch, its rows read transposed) */
        kiln_tensor *mask = kiln_transpose(
            s->g, sw_operand(s, 4, KILN_BOOL, SH3(2, 7, 5), G_ANY, F_CONTIG), -2, -1);
        for (int causal = 0; causal < 3; causal++)
            for (int views = 0; views < 2; views++) {
                kiln_tensor *in[5] = {
                    sw_operand(s, 0, dt, SH3(2, 5, 4), G_UNIT, F_CONTIG),
                    sw_operand(s, 1, dt, SH3(2, 7, 4), G_UNIT, views ? F_T : F_CONTIG),
                    sw_operand(s, 2, dt, SH3(2, 7, 3), G_UNIT, views ? F_PERM : F_CONTIG),
                    sw_operand(s, 3, dt, SH3(2, 5, 3), G_UNIT, F_CONTIG), NULL};
                double scale = views ? 0.5 : 0.25;
                kiln_tensor *mk = causal == 2 ? mask : NULL;
                in[4] = sdpa_backward(s, IR_SDPA_STATS, 0, in, causal == 1, scale, mk);
                const char *what = causal == 2 ? "masked" : causal ? "causal" : "full";
                const char *how = views ? ".views" : "";
                if (!grads) { /* of f32 operands only as exact as f32 (f32 weights) */
                    out(s, dt == KILN_F32 ? kiln_cast(s->g, in[4], KILN_F32) : in[4],
                        "%s.%s%s.stats", n, what, how);
                    continue;
                }
                for (int axis = 0; axis < 3; axis++)
                    out(s, sdpa_backward(s, IR_SDPA_GRAD, axis, in, causal == 1, scale, mk),
                        "%s.%s%s.d%c", n, what, how, "qkv"[axis]);
            }
    }
}

static void cases_SDPA_STATS(sweep *s)
{
    sdpa_backward_cases(s, false);
}

static void cases_SDPA_GRAD(sweep *s)
{
    sdpa_backward_cases(s, true);
}

/* ---- gather, scatter_add ----------------------------------------------------------------- */

static kiln_tensor *raw_gather(sweep *s, kiln_tensor *table, kiln_tensor *ids, int axis)
{
    shp sh = {0, {0}};
    for (int d = 0; d < axis; d++)
        sh.dims[sh.rank++] = table->dims[d];
    for (int d = 0; d < ids->rank; d++)
        sh.dims[sh.rank++] = ids->dims[d];
    for (int d = axis + 1; d < table->rank; d++)
        sh.dims[sh.rank++] = table->dims[d];
    kiln_tensor *t = raw(s, IR_GATHER, table->dtype, sh, 2, (kiln_tensor *const[]){table, ids});
    t->axis = axis;
    return t;
}

/* GATHER also covers cross_entropy (its labels are runtime ids). */
static void cases_GATHER(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        for (int k = 0; k < 2; k++) {
            kiln_dtype it = k ? KILN_I32 : KILN_I64;
            if (k && !has_dt(DT_MAIN, dt))
                continue;
            const char *n = dn(dt), *in = dn(it);
            kiln_tensor *table = sw_operand(s, 0, dt, SH2(5, 3), G_ANY, F_CONTIG);
            out(s, kiln_embedding(g, table, sw_ids(s, 1, it, SH1(4), 5)), "%s.%s.vec", n, in);
            out(s, kiln_embedding(g, table, sw_ids(s, 1, it, SH2(2, 3), 5)), "%s.%s.mat", n, in);
            out(s, kiln_embedding(g, table, sw_ids(s, 1, it, SH0, 5)), "%s.%s.rank0", n, in);
            out(s, kiln_embedding(g, table, sw_ids(s, 1, it, SH1(0), 5)), "%s.%s.size0", n, in);
            kiln_tensor *tt = sw_operand(s, 0, dt, SH2(5, 3), G_ANY, F_T);
            out(s, kiln_embedding(g, tt, sw_ids(s, 1, it, SH1(4), 5)), "%s.%s.of_T", n, in);
            kiln_tensor *t3 = sw_operand(s, 0, dt, SH3(2, 5, 3), G_ANY, F_CONTIG);
            out(s, raw_gather(s, t3, sw_ids(s, 1, it, SH1(4), 5), 1), "%s.%s.raw_axis1", n, in);
            kiln_tensor *t4 = sw_operand(s, 0, dt, SH3(2, 3, 5), G_ANY, F_PERM);
            out(s, raw_gather(s, t4, sw_ids(s, 1, it, SH2(2, 2), 5), 2), "%s.%s.raw_axis2_perm", n,
                in);
            if (ir_dtype_is_float(dt)) { /* cross-entropy labels are int64 only */
                kiln_tensor *e = kiln_embedding(g, table, sw_ids(s, 1, it, SH1(4), 5));
                out(s, kiln_mul(g, kiln_tanh(g, e), kiln_scalar(g, 2)), "%s.%s.fused", n, in);
                kiln_tensor *logits = sw_operand(s, 0, dt, SH2(4, 5), G_ANY, F_CONTIG);
                if (it == KILN_I64)
                    out(s, kiln_cross_entropy(g, logits, sw_ids(s, 1, it, SH1(4), 5)),
                        "%s.%s.cross_entropy", n, in);
            }
        }
    }
}

/* out = zeros(src.shape[:axis] + (size,) + src.shape[axis + ids.rank:]),
 * out[..., ids[j], ...] += src[..., j, ...] */
static kiln_tensor *raw_scatter(sweep *s, kiln_tensor *src, kiln_tensor *ids, int axis,
                                int64_t size)
{
    shp sh = {0, {0}};
    for (int d = 0; d < axis; d++)
        sh.dims[sh.rank++] = src->dims[d];
    sh.dims[sh.rank++] = size;
    for (int d = axis + ids->rank; d < src->rank; d++)
        sh.dims[sh.rank++] = src->dims[d];
    kiln_tensor *t = raw(s, IR_SCATTER_ADD, src->dtype, sh, 2, (kiln_tensor *const[]){src, ids});
    t->axis = axis;
    return t;
}

/* Raw nodes (only autodiff makes SCATTER_ADD); repeated ids accumulate. */
static void cases_SCATTER_ADD(sweep *s)
{
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        for (int k = 0; k < 2; k++) {
            kiln_dtype it = k ? KILN_I32 : KILN_I64;
            if (k && !has_dt(DT_MAIN, dt))
                continue;
            const char *n = dn(dt), *in = dn(it);
            kiln_tensor *ids6 = sw_ids(s, 1, it, SH1(6), 4);
            out(s, raw_scatter(s, sw_operand(s, 0, dt, SH2(6, 3), G_ANY, F_CONTIG), ids6, 0, 4),
                "%s.%s.rows", n, in);
            out(s,
                raw_scatter(s, sw_operand(s, 0, dt, SH3(2, 6, 3), G_ANY, F_CONTIG),
                            sw_ids(s, 1, it, SH1(6), 5), 1, 5),
                "%s.%s.axis1", n, in);
            out(s, raw_scatter(s, sw_operand(s, 0, dt, SH2(6, 3), G_ANY, F_T), ids6, 0, 4),
                "%s.%s.of_T", n, in);
            out(s,
                raw_scatter(s, sw_operand(s, 0, dt, SH2(0, 3), G_ANY, F_CONTIG),
                            sw_ids(s, 1, it, SH1(0), 4), 0, 4),
                "%s.%s.no_ids", n, in);
            out(s,
                raw_scatter(s, sw_operand(s, 0, dt, SH3(2, 3, 3), G_ANY, F_CONTIG),
                            sw_ids(s, 1, it, SH2(2, 3), 5), 0, 5),
                "%s.%s.ids_rank2", n, in);
        }
    }
}

/* ---- assign ---------------------------------------------------------------------------- */

/* The entry "assign" outputs each param as it was (read before the update)
 * and the assigned values; the params are compared after every run. */
static void cases_ASSIGN(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        double data[6]; /* aligned for every dtype */
        sw_fill(s, dt, G_ANY, 0, data, 6);
        kiln_tensor *p = sw_param(s, dt, SH2(2, 3), kiln_init_data(data));
        kiln_tensor *x = sw_operand(s, 0, dt, SH2(2, 3), G_ANY, F_CONTIG);
        out_exact(s, p, "%s.before", n);
        out(s, kiln_assign(g, p, kiln_add(g, p, x)), "%s.accumulate", n);
        kiln_tensor *q = sw_param(s, dt, SH2(3, 4), kiln_init_ones());
        out(s, kiln_mul(g, q, sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_T)), "%s.reads_old", n);
        out(s, kiln_assign(g, q, sw_operand(s, 0, dt, SH0, G_ANY, F_CONTIG)), "%s.bcast_rank0", n);
        kiln_tensor *r = sw_param(s, dt, SH2(4, 5), kiln_init_zeros());
        out(s, kiln_assign(g, r, sw_operand(s, 1, dt, SH2(4, 5), G_ANY, F_T)), "%s.from_T", n);
        kiln_tensor *c = sw_param(s, dt, SH1(4), kiln_init_const(2));
        out(s, kiln_assign(g, c, sw_operand(s, 1, KILN_F64, SH1(4), G_ANY, F_CONTIG)),
            "%s.from_f64", n);
    }
}

/* ---- sources ----------------------------------------------------------------------------- */

static void cases_INPUT(sweep *s)
{
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        out_exact(s, sw_operand(s, 0, dt, SH2(2, 3), G_ANY, F_CONTIG), "%s.mat", dn(dt));
        out_exact(s, sw_operand(s, 0, dt, SH0, G_ANY, F_CONTIG), "%s.rank0", dn(dt));
        out_exact(s, sw_operand(s, 0, dt, SH2(0, 4), G_ANY, F_CONTIG), "%s.size0", dn(dt));
    }
}

static void cases_PARAM(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        double data[6]; /* aligned for every dtype */
        sw_fill(s, dt, G_ANY, 0, data, 6);
        kiln_tensor *p = sw_param(s, dt, SH2(2, 3), kiln_init_data(data));
        out_exact(s, p, "%s.data", n);
        out(s, kiln_mul(g, p, sw_operand(s, 0, dt, SH2(2, 3), G_ANY, F_CONTIG)), "%s.times_input",
            n);
        out_exact(s, sw_param(s, dt, SH1(3), kiln_init_zeros()), "%s.zeros", n);
        out_exact(s, sw_param(s, dt, SH2(2, 2), kiln_init_ones()), "%s.ones", n);
        out_exact(s, sw_param(s, dt, SH0, kiln_init_const(2.5)), "%s.const_rank0", n);
        out_exact(s, sw_param(s, dt, SH2(0, 3), kiln_init_const(1)), "%s.size0", n);
        if (!ir_dtype_is_float(dt))
            continue;
        kiln_tensor *nrm = sw_param(s, dt, SH2(4, 5), kiln_init_normal(0.5, 2));
        out_exact(s, nrm, "%s.normal", n);
        out(s, kiln_add(g, nrm, sw_operand(s, 0, dt, SH1(5), G_ANY, F_CONTIG)), "%s.normal_plus",
            n);
        out_exact(s, sw_param(s, dt, SH2(3, 7), kiln_init_uniform(-3, 1)), "%s.uniform", n);
        out_exact(s, sw_param(s, dt, SH2(6, 4), kiln_init_kaiming_uniform()), "%s.kaiming", n);
        out_exact(s, sw_param(s, dt, SH1(5), kiln_init_kaiming_uniform()), "%s.kaiming_vec", n);
    }
}

static void cases_CONST(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        double data[6]; /* aligned for every dtype */
        sw_fill(s, dt, G_ANY, 0, data, 6);
        kiln_tensor *c = kiln_tensor_from(g, dt, KILN_SHAPE(2, 3), data);
        out_exact(s, c, "%s.mat", n);
        out(s, kiln_add(g, c, sw_operand(s, 0, dt, SH2(2, 3), G_ANY, F_CONTIG)), "%s.plus_input",
            n);
        kiln_tensor *col = kiln_tensor_from(g, dt, KILN_SHAPE(3, 1), data);
        out(s, kiln_mul(g, col, sw_operand(s, 0, dt, SH2(1, 4), G_ANY, F_CONTIG)), "%s.bcast", n);
        out_exact(s, kiln_tensor_from(g, dt, 0, NULL, data), "%s.rank0", n);
        out_exact(s, kiln_tensor_from(g, dt, KILN_SHAPE(0, 3), data), "%s.size0", n);
        out_exact(s, kiln_transpose(g, c, 0, 1), "%s.T", n);
    }
}

static void cases_FULL(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        out_exact(s, kiln_full(g, dt, KILN_SHAPE(2, 3), 2.5), "%s.full", n);
        out_exact(s, kiln_full(g, dt, KILN_SHAPE(4), -1.75), "%s.negative", n);
        out_exact(s, kiln_zeros(g, dt, KILN_SHAPE(4)), "%s.zeros", n);
        out_exact(s, kiln_ones(g, dt, 0, NULL), "%s.ones_rank0", n);
        out_exact(s, kiln_full(g, dt, KILN_SHAPE(0, 2), 3), "%s.size0", n);
        kiln_tensor *x = sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_CONTIG);
        out_exact(s, kiln_ones_like(g, x), "%s.ones_like", n);
        out(s, kiln_add(g, x, kiln_full(g, dt, KILN_SHAPE(3, 1), 1)), "%s.bcast_add", n);
        out(s, kiln_mul(g, x, kiln_full_like(g, x, 0.5)), "%s.full_like_mul", n);
        if (dt != KILN_BOOL)
            out(s, kiln_sub(g, x, kiln_scalar(g, 1.25)), "%s.weak_scalar", n);
    }
}

static void cases_ARANGE(sweep *s)
{
    kiln_graph *g = s->g;
    for (int d = 0; d < SW_NDTYPES; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        if (!has_dt(DT_NUM, dt))
            continue;
        out_exact(s, kiln_arange(g, dt, 0, 10, 1), "%s.count", n);
        out_exact(s, kiln_arange(g, dt, 10, -2, -3), "%s.negative_step", n);
        out_exact(s, kiln_arange(g, dt, 3, 3, 1), "%s.empty", n);
        out(s,
            kiln_add(g, kiln_arange(g, dt, 0, 4, 1),
                     sw_operand(s, 0, dt, SH2(3, 1), G_ANY, F_CONTIG)),
            "%s.bcast_add", n);
        out(s, kiln_linspace(g, dt, 0, 10, 6), "%s.linspace", n);
        if (ir_dtype_is_float(dt)) {
            out(s, kiln_arange(g, dt, 1, 2, 0.1), "%s.fractional_step", n);
            out(s, kiln_linspace(g, dt, -1, 1, 9), "%s.linspace_sym", n);
            out(s, kiln_linspace(g, dt, 0, 1, 1), "%s.linspace_one", n);
        } else {
            out_exact(s, kiln_arange(g, dt, 0.5, 7, 1.5), "%s.fractional_args", n);
        }
    }
}

/* Random draws are compared exactly, also as views; fused into arithmetic
 * within tolerance; a draw used twice is one draw. */
static void random_cases(sweep *s, bool normal)
{
    kiln_graph *g = s->g;
    kiln_tensor *(*mk)(kiln_graph *, kiln_dtype, int, const int64_t *) =
        normal ? kiln_randn : kiln_rand;
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = sw_dtypes[d];
        const char *n = dn(dt);
        out_exact(s, mk(g, dt, KILN_SHAPE(3, 4)), "%s.mat", n);
        out_exact(s, mk(g, dt, 0, NULL), "%s.rank0", n);
        out_exact(s, mk(g, dt, KILN_SHAPE(0, 5)), "%s.size0", n);
        out_exact(s, mk(g, dt, KILN_SHAPE(257)), "%s.odd_257", n);
        out_exact(s, mk(g, dt, KILN_SHAPE(2, 3, 5)), "%s.rank3", n);
        out_exact(s, kiln_transpose(g, mk(g, dt, KILN_SHAPE(3, 5)), 0, 1), "%s.T", n);
        out(s,
            kiln_sub(g, kiln_mul(g, mk(g, dt, KILN_SHAPE(4, 4)), kiln_scalar(g, 2)),
                     kiln_scalar(g, 1)),
            "%s.affine", n);
        kiln_tensor *r = mk(g, dt, KILN_SHAPE(4, 4));
        out_exact(s, r, "%s.twice_raw", n);
        out(s, kiln_add(g, kiln_mul(g, r, r), r), "%s.twice_fused", n);
        out(s, kiln_sum(g, r, 1, false), "%s.twice_sum", n);
        kiln_tensor *x = sw_operand(s, 0, dt, SH2(3, 4), G_ANY, F_CONTIG);
        out(s, kiln_add(g, (normal ? kiln_randn_like : kiln_rand_like)(g, x), x), "%s.like_plus",
            n);
        if (!normal)
            out(s, kiln_dropout(g, x, 0.25), "%s.dropout", n);
    }
}

static void cases_RAND(sweep *s)
{
    random_cases(s, false);
}

static void cases_RANDN(sweep *s)
{
    random_cases(s, true);
}

/* ---- the table, coverage --------------------------------------------------------------- */

typedef void (*case_builder)(sweep *s);

static const case_builder case_builders[IR_OP_COUNT] = {
#define KILN_OP(e, name, arity, cls, flags, attrs) [IR_##e] = cases_##e,
#include "kiln_ops.def"
#undef KILN_OP
};

/* The dtypes each op accepts in the IR (operand dtype for comparisons, index
 * reductions and casts; the table's for gather). Every one must be swept. */
static unsigned accepted_dtypes(ir_op op)
{
    switch (op) {
    case IR_INPUT:
    case IR_PARAM:
    case IR_CONST:
    case IR_FULL: return DT_ALL;
    case IR_ARANGE: return DT_NUM;
    case IR_RAND:
    case IR_RANDN: return DT_FLOAT;
    case IR_NEG: return DT_NUM;
    case IR_ABS: return DT_ALL;
    case IR_EXP:
    case IR_LOG:
    case IR_LOG1P:
    case IR_SQRT:
    case IR_RSQRT:
    case IR_SIN:
    case IR_COS:
    case IR_TANH:
    case IR_ERF:
    case IR_SIGMOID: return DT_FLOAT;
    case IR_RELU:
    case IR_DETACH:
    case IR_CAST: return DT_ALL;
    case IR_ADD: return DT_ALL;
    case IR_SUB:
    case IR_DIV: return DT_NUM;
    case IR_MUL:
    case IR_POW:
    case IR_MAXIMUM:
    case IR_MINIMUM:
    case IR_EQ:
    case IR_NE:
    case IR_LT:
    case IR_LE:
    case IR_GT:
    case IR_GE:
    case IR_WHERE: return DT_ALL;
    case IR_SUM:
    case IR_MAX:
    case IR_MIN: return DT_ALL;
    case IR_ARGMAX:
    case IR_ARGMIN: return DT_NUM;
    case IR_RESHAPE:
    case IR_PERMUTE:
    case IR_EXPAND:
    case IR_SLICE:
    case IR_PAD:
    case IR_CONCAT: return DT_ALL;
    case IR_MATMUL: return DT_NUM;
    case IR_CONV: return DT_FLOAT;
    case IR_SDPA:
    case IR_SDPA_STATS:
    case IR_SDPA_GRAD: return DT_FLOAT;
    case IR_GATHER:
    case IR_SCATTER_ADD:
    case IR_ASSIGN: return DT_ALL;
    case IR_OP_COUNT: break;
    }
    return 0;
}

static kiln_dtype coverage_dtype(const kiln_tensor *t)
{
    unsigned f = ir_ops[t->op].flags;
    if ((f & IR_F_CMP) || t->op == IR_ARGMAX || t->op == IR_ARGMIN || t->op == IR_CAST ||
        t->op == IR_SDPA_STATS)
        return t->in[0]->dtype;
    return t->dtype;
}

static void build_sweep(sweep *s)
{
    s->g = kiln_graph_new();
    assert_non_null(s->g);
    kiln_graph_seed(s->g, 20240611);
    s->rng = 0x4b494c4eull; /* "KILN" */
    for (int op = 0; op < IR_OP_COUNT; op++) {
        if (!case_builders[op])
            fail_msg("sweep: op %s has no case builder", ir_ops[op].name);
        s->op = (ir_op)op;
        case_builders[op](s);
    }
    sw_make_entries(s);
    if (kiln_graph_status(s->g) != KILN_OK)
        fail_msg("sweep: the graph is in error: %s", kiln_graph_error(s->g));
}

static int group_setup(void **state)
{
    (void)state;
    sw = calloc(1, sizeof *sw);
    if (!sw)
        return -1;
    build_sweep(sw);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (!sw)
        return 0;
    for (int i = 0; i < sw->ninputs; i++)
        free(sw->inputs[i].data);
    kiln_graph_free(sw->g);
    free(sw);
    sw = NULL;
    return 0;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Every op of the table has a builder that made cases, and the graph holds a
 * node of that op for every dtype it accepts (casts: every pair of distinct
 * dtypes; gather and scatter_add: both id dtypes). Prints the case counts. */
static void test_every_op_has_cases(void **state)
{
    (void)state;
    const kiln_graph *g = sw->g;
    unsigned seen[IR_OP_COUNT] = {0}, ids_seen[IR_OP_COUNT] = {0}, cast_pairs[SW_NDTYPES] = {0};
    int nodes[IR_OP_COUNT] = {0};
    for (int i = 0; i < g->nnodes; i++) {
        const kiln_tensor *t = g->nodes[i];
        nodes[t->op]++;
        seen[t->op] |= DT(coverage_dtype(t));
        if (t->op == IR_GATHER || t->op == IR_SCATTER_ADD)
            ids_seen[t->op] |= DT(t->in[1]->dtype);
        if (t->op == IR_CAST)
            cast_pairs[t->in[0]->dtype] |= DT(t->dtype);
    }
    int bad = 0;
    print_message("%-12s %6s %6s  dtypes\n", "op", "cases", "nodes");
    for (int op = 0; op < IR_OP_COUNT; op++) {
        char dts[64] = "";
        for (int d = 0; d < SW_NDTYPES; d++)
            if (has_dt(seen[op], sw_dtypes[d])) {
                strcat(dts, " ");
                strcat(dts, dn(sw_dtypes[d]));
            }
        print_message("%-12s %6d %6d %s\n", ir_ops[op].name, sw->per_op[op], nodes[op], dts);
        unsigned want = accepted_dtypes((ir_op)op);
        if (case_builders[op] == NULL || sw->per_op[op] == 0 || nodes[op] == 0) {
            print_message("op %s: no cases\n", ir_ops[op].name);
            bad++;
        }
        if ((seen[op] & want) != want) {
            print_message("op %s: dtypes it accepts are not swept (mask %#x of %#x)\n",
                          ir_ops[op].name, seen[op] & want, want);
            bad++;
        }
    }
    for (int d = 0; d < SW_NDTYPES; d++)
        if ((cast_pairs[d] | DT(d)) != DT_ALL) {
            print_message("cast from %s: not to every dtype\n", dn((kiln_dtype)d));
            bad++;
        }
    for (int k = 0; k < 2; k++) {
        ir_op op = k ? IR_SCATTER_ADD : IR_GATHER;
        if (ids_seen[op] != DT_INT) {
            print_message("op %s: not swept with both i32 and i64 ids\n", ir_ops[op].name);
            bad++;
        }
    }
    print_message("sweep: %d cases (%d inputs, %d params) in one graph of %d nodes\n", sw->ncases,
                  sw->ninputs, sw->nparams, g->nnodes);
    assert_int_equal(bad, 0);
}

/* The comparison itself: tolerances, NaN, infinities, exactness. */
static void test_comparison_rules(void **state)
{
    (void)state;
    sw_exact_f64_ulps = 2; /* the CUDA sweep's: two ULPs of an exact f64, not three */
    assert_true(sw_close(KILN_F64, true, 1.0, nextafter(nextafter(1.0, 2), 2)));
    assert_false(sw_close(KILN_F64, true, 1.0, nextafter(nextafter(nextafter(1.0, 2), 2), 2)));
    assert_false(sw_close(KILN_F32, true, 1.0, 1.0 + 1e-7));
    sw_exact_f64_ulps = 0;
    assert_false(sw_close(KILN_F64, true, 1.0, nextafter(1.0, 2)));
    assert_true(sw_close(KILN_F32, false, 1.0, 1.0 + 0.9e-5));
    assert_false(sw_close(KILN_F32, false, 1.0, 1.0 + 1.1e-5));
    assert_true(sw_close(KILN_F32, false, 0.0, 0.9e-6));
    assert_false(sw_close(KILN_F32, false, 0.0, 1.1e-6));
    assert_true(sw_close(KILN_F64, false, 1e3, 1e3 * (1 + 0.9e-12)));
    assert_false(sw_close(KILN_F64, false, 1.0, 1.0 + 1e-11));
    assert_true(sw_close(KILN_F32, false, SW_NAN, SW_NAN));
    assert_false(sw_close(KILN_F32, false, SW_NAN, 1.0));
    assert_false(sw_close(KILN_F32, false, 1.0, SW_NAN));
    assert_true(sw_close(KILN_F64, false, SW_INF, SW_INF));
    assert_false(sw_close(KILN_F64, false, SW_INF, -SW_INF));
    assert_false(sw_close(KILN_F32, false, SW_INF, 3e38));
    assert_false(sw_close(KILN_F32, true, 1.0, 1.0 + 1e-7));
    assert_true(sw_close(KILN_F32, true, 0.0, -0.0));
    const int64_t a[] = {5, 7}, b[] = {5, 8};
    assert_true(sw_equal_at(KILN_I64, false, a, b, 0));
    assert_false(sw_equal_at(KILN_I64, false, a, b, 1));
    const bool ba[] = {true}, bb[] = {false};
    assert_false(sw_equal_at(KILN_BOOL, false, ba, bb, 0));
}

/* The data of the sweep input t (a graph input), or NULL. */
static const sw_input *input_of(const kiln_tensor *t)
{
    if (t->op != IR_INPUT)
        return NULL;
    for (int i = 0; i < sw->ninputs; i++)
        if (strcmp(sw->inputs[i].name, t->name) == 0)
            return &sw->inputs[i];
    return NULL;
}

/* Element i of neg/add/sub/mul over the input data a (and b), computed here
 * from the raw arrays: floats in double then rounded to the dtype once,
 * integers wrapping (two's complement, as unsigned arithmetic). */
static double hand_f(ir_op op, kiln_dtype dt, const void *a, const void *b, int64_t i)
{
    double x = dt == KILN_F32 ? (double)((const float *)a)[i] : ((const double *)a)[i];
    double y = !b ? 0 : dt == KILN_F32 ? (double)((const float *)b)[i] : ((const double *)b)[i];
    double r = op == IR_NEG ? -x : op == IR_ADD ? x + y : op == IR_SUB ? x - y : x * y;
    return dt == KILN_F32 ? (double)(float)r : r;
}

static int64_t hand_i(ir_op op, kiln_dtype dt, const void *a, const void *b, int64_t i)
{
    uint64_t x =
        dt == KILN_I32 ? (uint64_t)((const int32_t *)a)[i] : (uint64_t)((const int64_t *)a)[i];
    uint64_t y = !b               ? 0
                 : dt == KILN_I32 ? (uint64_t)((const int32_t *)b)[i]
                                  : (uint64_t)((const int64_t *)b)[i];
    uint64_t r = op == IR_NEG ? 0 - x : op == IR_ADD ? x + y : op == IR_SUB ? x - y : x * y;
    return dt == KILN_I32 ? (int64_t)(int32_t)(uint32_t)r : (int64_t)r;
}

/* The harness end to end (inputs set by name, entries run, every output read
 * back under its case's name) against values computed by hand: every neg,
 * add, sub and mul case of a numeric dtype whose operands are graph inputs of
 * the output's shape is recomputed from the sweep's own input data and
 * compared with what the interpreter module returns for that case. */
static void test_interpreter_matches_hand_computed(void **state)
{
    (void)state;
    static const ir_op ops[] = {IR_NEG, IR_ADD, IR_SUB, IR_MUL};
    int checked[4] = {0}, wrong = 0;
    kiln_compile_opts interp = {.target = KILN_TARGET_INTERP};
    kiln_module *m = sw_compile(sw, &interp, "the interpreter");
    sw_run_all(m, "the interpreter");
    for (int i = 0; i < sw->ncases; i++) {
        const sw_case *c = &sw->cases[i];
        const kiln_tensor *t = c->t;
        int k = 0;
        while (k < 4 && ops[k] != t->op)
            k++;
        if (c->param || k == 4 || t->dtype == KILN_BOOL || ir_numel(t) == 0)
            continue;
        const sw_input *a = input_of(t->in[0]), *b = t->nin > 1 ? input_of(t->in[1]) : NULL;
        if (!a || a->dt != t->dtype || a->numel != ir_numel(t) || (t->nin > 1 && !b) ||
            (b && (b->dt != t->dtype || b->numel != ir_numel(t))))
            continue;
        size_t nbytes = (size_t)ir_numel(t) * kiln_dtype_size(t->dtype);
        void *got = malloc(nbytes);
        assert_non_null(got);
        assert_int_equal(kiln_module_get(m, c->name, got, nbytes), KILN_OK);
        int64_t bad_at = -1;
        for (int64_t e = 0; e < ir_numel(t) && bad_at < 0; e++) {
            bool ok;
            if (ir_dtype_is_float(t->dtype)) {
                double g = t->dtype == KILN_F32 ? (double)((float *)got)[e] : ((double *)got)[e];
                ok = sw_close(t->dtype, false,
                              hand_f(t->op, t->dtype, a->data, b ? b->data : NULL, e), g);
            } else {
                int64_t g = t->dtype == KILN_I32 ? ((int32_t *)got)[e] : ((int64_t *)got)[e];
                ok = g == hand_i(t->op, t->dtype, a->data, b ? b->data : NULL, e);
            }
            if (!ok)
                bad_at = e;
        }
        if (bad_at >= 0) {
            print_message(
                "MISMATCH %s[%lld]: the interpreter differs from the hand-computed value\n",
                c->name, (long long)bad_at);
            wrong++;
        }
        checked[k]++;
        free(got);
    }
    kiln_module_free(m);
    print_message("hand-checked %d neg, %d add, %d sub, %d mul cases\n", checked[0], checked[1],
                  checked[2], checked[3]);
    for (int k = 0; k < 4; k++) /* each op x {f32, f64, i32, i64} at least */
        assert_true(checked[k] >= 4);
    assert_int_equal(wrong, 0);
}

/* The comparison catches a difference: a second interpreter module whose
 * float inputs are perturbed disagrees on many cases. */
static void test_harness_catches_a_difference(void **state)
{
    (void)state;
    kiln_compile_opts interp = {.target = KILN_TARGET_INTERP};
    kiln_module *a = sw_compile(sw, &interp, "interp a");
    kiln_module *b = sw_compile(sw, &interp, "interp b");
    int perturbed = 0;
    for (int i = 0; i < sw->ninputs; i++) {
        const sw_input *in = &sw->inputs[i];
        if (!ir_dtype_is_float(in->dt) || in->numel == 0)
            continue;
        size_t nbytes = (size_t)in->numel * kiln_dtype_size(in->dt);
        void *copy = malloc(nbytes);
        assert_non_null(copy);
        memcpy(copy, in->data, nbytes);
        ir_store_f(in->dt, copy, 0, ir_load_f(in->dt, copy, 0) * 1.001 + 0.01);
        assert_int_equal(kiln_module_set(b, in->name, copy, nbytes), KILN_OK);
        free(copy);
        perturbed++;
    }
    sw_run_all(a, "interp a");
    sw_run_all(b, "interp b");
    int bad = sw_compare(sw, a, b, "a", "b", "after run 1", false, true);
    print_message("perturbing %d float inputs changed %d of %d cases\n", perturbed, bad,
                  sw->ncases);
    assert_true(bad > sw->ncases / 10);
    kiln_module_free(a);
    kiln_module_free(b);
}

/* THE C BACKEND CHECK: the C target (kiln_compile's defaults) gives the
 * interpreter's results for every case. Fails while the C target is missing. */
static void test_c_target_matches_interpreter(void **state)
{
    (void)state;
    int bad = sw_check_target(sw, NULL, "C", false);
    if (bad)
        fail_msg("the C target differs from the interpreter in %d (case, moment) pairs", bad);
}

/* Every float matmul of the sweep that the CUDA device hands to cuBLAS keeps
 * cuBLAS's argument rules (ld >= the stored rows, sizes >= 0) and addresses
 * every operand element where the kernel does: x = B^T, y = A^T. */
static void test_gemm_plans_address_like_the_kernel(void **state)
{
    (void)state;
    kiln_graph *g = ir_graph_clone(sw->g);
    assert_non_null(g);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(g, &p), KILN_OK);
    int planned = 0, refused = 0, bad = 0;
    for (int ki = 0; ki < p->nkernels; ki++) {
        const kernel *k = &p->kernels[ki];
        rt_gemm_plan pl;
        if (k->kind != KK_MATMUL)
            continue;
        if (!rt_gemm_plan_of(p, k, &pl)) {
            refused++;
            continue;
        }
        planned++;
        const kk_matmul *mm = &k->mm;
        int64_t lx = pl.opx == RT_GEMM_N ? pl.n : pl.k, ly = pl.opy == RT_GEMM_N ? pl.k : pl.m;
        bool ok = pl.m == mm->m && pl.n == mm->n && pl.k == mm->k && pl.batch == mm->batch &&
                  pl.ldx >= (lx > 1 ? lx : 1) && pl.ldy >= (ly > 1 ? ly : 1);
        for (int64_t b = 0; b < mm->batch && ok; b++)
            for (int64_t q = 0; q < mm->k && ok; q++) {
                for (int64_t j = 0; j < mm->n && ok; j++) {
                    int64_t x = b * pl.sx + (pl.opx == RT_GEMM_N ? j + q * pl.ldx : q + j * pl.ldx);
                    ok = x == b * mm->b_stride[0] + q * mm->b_stride[1] + j * mm->b_stride[2];
                }
                for (int64_t i = 0; i < mm->m && ok; i++) {
                    int64_t y = b * pl.sy + (pl.opy == RT_GEMM_N ? q + i * pl.ldy : i + q * pl.ldy);
                    ok = y == b * mm->a_stride[0] + i * mm->a_stride[1] + q * mm->a_stride[2];
                }
            }
        if (!ok) {
            print_message(
                "GEMM PLAN %s: batch %lld m %lld n %lld k %lld, A strides %lld %lld %lld, "
                "B strides %lld %lld %lld -> opx %d ldx %d sx %lld, opy %d ldy %d sy "
                "%lld\n",
                k->name, (long long)mm->batch, (long long)mm->m, (long long)mm->n, (long long)mm->k,
                (long long)mm->a_stride[0], (long long)mm->a_stride[1], (long long)mm->a_stride[2],
                (long long)mm->b_stride[0], (long long)mm->b_stride[1], (long long)mm->b_stride[2],
                pl.opx, pl.ldx, pl.sx, pl.opy, pl.ldy, pl.sy);
            bad++;
        }
    }
    print_message("GEMM plans: %d matmul kernels to cuBLAS, %d to the generated kernel\n", planned,
                  refused);
    assert_true(planned >= 10 && refused >= 1);
    assert_int_equal(bad, 0);
    kp_free(p);
    kiln_graph_free(g);
}

/* The CUDA target (ctest sweep_cuda, label gpu): the same check on the GPU.
 * Skipped (77) where kiln_compile says there is no usable GPU. */
static void test_cuda_target_matches_interpreter(void **state)
{
    (void)state;
    kiln_compile_opts cuda = {.target = KILN_TARGET_CUDA};
    sw_exact_f64_ulps = 2;
    int bad = sw_check_target(sw, &cuda, "CUDA", false);
    sw_exact_f64_ulps = 0;
    if (bad)
        fail_msg("the CUDA target differs from the interpreter in %d (case, moment) pairs", bad);
}

/* The sweep's CUDA source (every op x dtype, one program) compiles through
 * NVRTC for the oldest and the newest architecture Kiln targets, with an
 * empty log: no error and no warning. NVRTC needs no GPU; ctest runs this
 * alone as sweep_nvrtc (test_sweep --nvrtc). */
/* Lowers g (a copy), renders CUDA and compiles it for sm_<arch> with NVRTC:
 * no error and an empty log. */
static void nvrtc_check(const kiln_graph *g0, const char *name, int arch)
{
    kiln_graph *g = ir_graph_clone(g0);
    assert_non_null(g);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(g, &p), KILN_OK);
    char *src = cgen_cuda(p);
    assert_non_null(src);
    assert_non_null(strstr(src, "extern \"C\" __global__ void k0_"));
    char *log = NULL;
    void *cubin = NULL;
    size_t n = 0;
    kiln_status s = rt_nvrtc_compile(src, name, arch, &cubin, &n, &log);
    if (s != KILN_OK || log)
        fail_msg("NVRTC %s sm_%d: %s\n%.4000s", name, arch, kiln_status_str(s),
                 log ? log : "(no log)");
    assert_true(n > 100); /* a cubin came back */
    ir_free(cubin);
    ir_free(src);
    kp_free(p);
    kiln_graph_free(g);
}

static void test_cuda_source_compiles_with_nvrtc(void **state)
{
    (void)state;
    char why[512];
    if (!rt_nvrtc_available(why, sizeof why))
        fail_msg("%s", why);
    nvrtc_check(sw->g, "sweep.cu", 75);     /* the oldest architecture the toolkit targets */
    nvrtc_check(sw->g, "sweep.cu", 90);     /* the lent GPUs' */
    kiln_graph *rows = ku_row_ops(64, 100); /* row kernels (passes/rowfuse.c) */
    nvrtc_check(rows, "rows.cu", 75);
    nvrtc_check(rows, "rows.cu", 90);
    kiln_graph_free(rows);
    /* attention_heads.kir: q, k, v sliced from one projection, heads permuted in;
     * conv_train.kir: matmul operands with parts (the implicit GEMM, its weight
     * gradient with the batch folded into k) */
    static const char *const golden[] = {"all_ops.kir", "mlp.kir", "values.kir",
                                         "attention_heads.kir", "conv_train.kir"};
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/golden/%s", KILN_SOURCE_DIR, golden[i]);
        char *text = ku_read_file(path, NULL);
        assert_non_null(text);
        char err[256] = "";
        kiln_graph *g = kiln_graph_parse(text, err, sizeof err);
        if (!g)
            fail_msg("%s: %s", path, err);
        nvrtc_check(g, golden[i], 90);
        kiln_graph_free(g);
        free(text);
    }
}

/* The sweep's inputs, by name, for the CUDA kernels on the CPU. */
static bool sweep_input(const kprogram *p, int b, void *data)
{
    const kbuf *kb = &p->bufs[b];
    if (kb->role != KB_INPUT || kb->node < 0)
        return false;
    const char *name = p->g->nodes[kb->node]->name;
    for (int i = 0; name && i < sw->ninputs; i++)
        if (strcmp(sw->inputs[i].name, name) == 0 && sw->inputs[i].numel == kb->numel) {
            memcpy(data, sw->inputs[i].data, (size_t)kb->numel * kiln_dtype_size(kb->dtype));
            return true;
        }
    return false;
}

/* Every kernel of the sweep (every op x dtype) as the CUDA renderer prints it,
 * run on the CPU (cuda_emu.h), matches the kernel-IR evaluator. */
static void test_cuda_kernels_on_cpu(void **state)
{
    (void)state;
    assert_int_equal(emu_setup(), 0);
    int rows = 0, mm = 0;
    check_graph(sw->g, sweep_input, &rows, &mm);
    assert_true(mm > 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--emu") == 0) {
        const struct CMUnitTest emu[] = {cmocka_unit_test(test_cuda_kernels_on_cpu)};
        return cmocka_run_group_tests(emu, group_setup, group_teardown);
    }
    if (argc > 1 && strcmp(argv[1], "--nvrtc") == 0) {
        /* No libnvrtc to dlopen: nothing to compile with, a skip (ctest's
         * SKIP_RETURN_CODE). One that loads but lacks a symbol still fails. */
        char why[512];
        if (!rt_nvrtc_available(why, sizeof why) && strstr(why, "is not installed")) {
            printf("libnvrtc not found: %s\n", why);
            return 77;
        }
        const struct CMUnitTest nvrtc[] = {cmocka_unit_test(test_cuda_source_compiles_with_nvrtc)};
        return cmocka_run_group_tests(nvrtc, group_setup, group_teardown);
    }
    if (argc > 1 && strcmp(argv[1], "--cuda") == 0) {
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(1));
        kiln_entry(g, "f", 1, &x, NULL);
        kiln_module *m = NULL;
        kiln_status s = kiln_compile(g, &(kiln_compile_opts){.target = KILN_TARGET_CUDA}, &m);
        if (s == KILN_ERR_DEVICE) {
            printf("no usable GPU: %s\n", kiln_graph_error(g));
            kiln_graph_free(g);
            return 77;
        }
        kiln_module_free(m);
        kiln_graph_free(g);
        const struct CMUnitTest cuda[] = {cmocka_unit_test(test_cuda_target_matches_interpreter)};
        return cmocka_run_group_tests(cuda, group_setup, group_teardown);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_has_cases),
        cmocka_unit_test(test_comparison_rules),
        cmocka_unit_test(test_interpreter_matches_hand_computed),
        cmocka_unit_test(test_harness_catches_a_difference),
        cmocka_unit_test(test_c_target_matches_interpreter),
        cmocka_unit_test(test_gemm_plans_address_like_the_kernel),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
