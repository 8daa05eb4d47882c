/*
 * test_interp.c - the reference interpreter, op by op (docs/ir.md).
 *
 * Graphs are built from IR nodes directly (ir_node_new), so each test pins
 * the meaning of one primitive, including forms the builders never make
 * (integer floor DIV, raw SCATTER_ADD). Expected values are worked by hand
 * or computed in double and rounded once, as the interpreter must.
 */
#include "ir/ir.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

static kiln_graph *g;

static int setup(void **state)
{
    (void)state;
    g = kiln_graph_new();
    kiln_graph_seed(g, 1234);
    return g ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kiln_graph_free(g);
    g = NULL;
    return 0;
}

/* ---- graph building helpers ---------------------------------------------------- */

static kiln_tensor *konst(kiln_dtype dt, int rank, const int64_t *dims, const void *data)
{
    kiln_tensor *t = ir_node_new(g, IR_CONST, dt, rank, dims, 0, NULL);
    assert_non_null(t);
    size_t n = (size_t)ir_numel(t) * kiln_dtype_size(dt);
    t->data = ir_arena_alloc(&g->arena, n ? n : 1);
    assert_non_null(t->data);
    if (n)
        memcpy(t->data, data, n);
    return t;
}

static kiln_tensor *node(ir_op op, kiln_dtype dt, int rank, const int64_t *dims, int nin,
                         kiln_tensor *const *in)
{
    kiln_tensor *t = ir_node_new(g, op, dt, rank, dims, nin, in);
    assert_non_null(t);
    return t;
}

/* An elementwise node with a's shape and the given dtype. */
static kiln_tensor *ew(ir_op op, kiln_dtype dt, int nin, kiln_tensor *const *in)
{
    return node(op, dt, in[0]->rank, in[0]->dims, nin, in);
}

static kiln_tensor *un(ir_op op, kiln_tensor *a)
{
    return ew(op, a->dtype, 1, &a);
}

static kiln_tensor *bin(ir_op op, kiln_tensor *a, kiln_tensor *b)
{
    kiln_tensor *in[2] = {a, b};
    return ew(op, (ir_ops[op].flags & IR_F_CMP) ? KILN_BOOL : a->dtype, 2, in);
}

static kiln_tensor *reduce(ir_op op, kiln_tensor *x, uint32_t axes)
{
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0; d < x->rank; d++)
        dims[d] = (axes >> d) & 1u ? 1 : x->dims[d];
    bool arg = op == IR_ARGMAX || op == IR_ARGMIN;
    kiln_tensor *t = node(op, arg ? KILN_I64 : x->dtype, x->rank, dims, 1, &x);
    t->axes = axes;
    return t;
}

/* Compiles g with the outputs as entry "f" (named f.0, f.1, ...) and runs it. */
static kiln_status try_run(int n, kiln_tensor *const *outs, kiln_module **m)
{
    ir_entry *e = ir_entry_new(g, "f", n);
    assert_non_null(e);
    for (int k = 0; k < n; k++) {
        char name[16];
        snprintf(name, sizeof(name), "f.%d", k);
        e->outputs[k] = outs[k];
        e->output_names[k] = ir_arena_strdup(&g->arena, name);
    }
    kiln_compile_opts opts = {.target = KILN_TARGET_INTERP};
    kiln_status s = kiln_compile(g, &opts, m);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_compile: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    return kiln_module_run(*m, "f");
}

static kiln_module *run(int n, kiln_tensor *const *outs)
{
    kiln_module *m = NULL;
    kiln_status s = try_run(n, outs, &m);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_run: %s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
    return m;
}

static void get(kiln_module *m, int k, void *dst, size_t nbytes)
{
    char name[16];
    snprintf(name, sizeof(name), "f.%d", k);
    kiln_status s = kiln_module_get(m, name, dst, nbytes);
    if (s != KILN_OK)
        fprintf(stderr, "%s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

static void assert_f32s(kiln_module *m, int k, const float *want, size_t n)
{
    float got[64];
    assert_true(n <= 64);
    get(m, k, got, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        if (!(got[i] == want[i] || (isnan(got[i]) && isnan(want[i])))) {
            fprintf(stderr, "f.%d[%zu]: got %.9g, want %.9g\n", k, i, (double)got[i],
                    (double)want[i]);
            fail();
        }
}

static void assert_i64s(kiln_module *m, int k, const int64_t *want, size_t n)
{
    int64_t got[64];
    assert_true(n <= 64);
    get(m, k, got, n * sizeof(int64_t));
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "f.%d[%zu]: got %lld, want %lld\n", k, i, (long long)got[i],
                    (long long)want[i]);
            fail();
        }
}

static void assert_i32s(kiln_module *m, int k, const int32_t *want, size_t n)
{
    int32_t got[64];
    assert_true(n <= 64);
    get(m, k, got, n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "f.%d[%zu]: got %d, want %d\n", k, i, got[i], want[i]);
            fail();
        }
}

static void assert_bools(kiln_module *m, int k, const bool *want, size_t n)
{
    bool got[64];
    assert_true(n <= 64);
    get(m, k, got, n);
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "f.%d[%zu]: got %d, want %d\n", k, i, got[i], want[i]);
            fail();
        }
}

/* ---- sources -------------------------------------------------------------------- */

static void test_sources(void **state)
{
    (void)state;
    kiln_tensor *full = node(IR_FULL, KILN_F32, KILN_SHAPE(2, 2), 0, NULL);
    full->value = 0.1;
    kiln_tensor *fulli = node(IR_FULL, KILN_I32, KILN_SHAPE(3), 0, NULL);
    fulli->value = -2.9; /* converted: truncates */
    kiln_tensor *fullb = node(IR_FULL, KILN_BOOL, KILN_SHAPE(2), 0, NULL);
    fullb->value = 0.5;
    kiln_tensor *ar = node(IR_ARANGE, KILN_F32, KILN_SHAPE(4), 0, NULL);
    ar->value = 1;
    ar->value2 = 0.1;
    kiln_tensor *ari = node(IR_ARANGE, KILN_I64, KILN_SHAPE(3), 0, NULL);
    ari->value = 5;
    ari->value2 = -2;
    kiln_tensor *c = konst(KILN_F64, KILN_SHAPE(2), (const double[]){1.5, -2.25});
    kiln_tensor *empty = node(IR_FULL, KILN_F32, KILN_SHAPE(0, 3), 0, NULL);
    kiln_tensor *outs[] = {full, fulli, fullb, ar, ari, c, empty};
    kiln_module *m = run(7, outs);
    assert_f32s(m, 0, (const float[]){0.1f, 0.1f, 0.1f, 0.1f}, 4);
    assert_i32s(m, 1, (const int32_t[]){-2, -2, -2}, 3);
    assert_bools(m, 2, (const bool[]){true, true}, 2);
    /* start + i*step in double, rounded once */
    assert_f32s(m, 3, (const float[]){1.0f, (float)1.1, (float)1.2, (float)(1 + 3 * 0.1)}, 4);
    assert_i64s(m, 4, (const int64_t[]){5, 3, 1}, 3);
    double d[2];
    get(m, 5, d, sizeof(d));
    assert_true(d[0] == 1.5 && d[1] == -2.25);
    get(m, 6, d, 0); /* a size-0 tensor has 0 bytes */
    kiln_module_free(m);
}

/* ---- elementwise ---------------------------------------------------------------- */

static void test_unary_float(void **state)
{
    (void)state;
    const float xv[4] = {0.5f, -1.25f, 2.0f, 0.0f};
    kiln_tensor *x = konst(KILN_F32, KILN_SHAPE(4), xv);
    const ir_op ops[] = {IR_NEG, IR_ABS,  IR_EXP, IR_LOG,     IR_SQRT, IR_RSQRT, IR_SIN,
                         IR_COS, IR_TANH, IR_ERF, IR_SIGMOID, IR_RELU, IR_DETACH};
    enum { NOPS = sizeof(ops) / sizeof(ops[0]) };
    kiln_tensor *outs[NOPS];
    for (int k = 0; k < NOPS; k++)
        outs[k] = un(ops[k], x);
    kiln_module *m = run(NOPS, outs);
    for (int k = 0; k < NOPS; k++) {
        float want[4];
        for (int i = 0; i < 4; i++) {
            double v = (double)xv[i], r = 0;
            switch (k) {
            case 0: r = -v; break;
            case 1: r = fabs(v); break;
            case 2: r = exp(v); break;
            case 3: r = log(v); break;
            case 4: r = sqrt(v); break;
            case 5: r = 1 / sqrt(v); break;
            case 6: r = sin(v); break;
            case 7: r = cos(v); break;
            case 8: r = tanh(v); break;
            case 9: r = erf(v); break;
            case 10: r = 1 / (1 + exp(-v)); break;
            case 11: r = v > 0 ? v : 0; break;
            case 12: r = v; break;
            }
            want[i] = (float)r; /* computed in double, rounded once */
        }
        assert_f32s(m, k, want, 4);
    }
    kiln_module_free(m);
}

static void test_unary_special_values(void **state)
{
    (void)state;
    kiln_tensor *x =
        konst(KILN_F64, KILN_SHAPE(3), (const double[]){(double)NAN, -(double)INFINITY, -0.5});
    kiln_tensor *outs[] = {un(IR_RELU, x), un(IR_LOG, x), un(IR_EXP, x)};
    kiln_module *m = run(3, outs);
    double r[3];
    get(m, 0, r, sizeof(r));
    assert_true(isnan(r[0]) && r[1] == 0 && r[2] == 0); /* relu keeps NaN */
    get(m, 1, r, sizeof(r));
    assert_true(isnan(r[0]) && isnan(r[1]) && isnan(r[2]));
    get(m, 2, r, sizeof(r));
    assert_true(isnan(r[0]) && r[1] == 0 && r[2] == exp(-0.5));
    kiln_module_free(m);
}

static void test_unary_int(void **state)
{
    (void)state;
    kiln_tensor *x = konst(KILN_I32, KILN_SHAPE(4), (const int32_t[]){3, -4, 0, INT32_MIN});
    kiln_tensor *y = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){INT64_MIN, -9});
    kiln_tensor *outs[] = {un(IR_NEG, x), un(IR_ABS, x), un(IR_RELU, x), un(IR_NEG, y),
                           un(IR_ABS, y)};
    kiln_module *m = run(5, outs);
    assert_i32s(m, 0, (const int32_t[]){-3, 4, 0, INT32_MIN}, 4); /* wraps */
    assert_i32s(m, 1, (const int32_t[]){3, 4, 0, INT32_MIN}, 4);
    assert_i32s(m, 2, (const int32_t[]){3, 0, 0, 0}, 4);
    assert_i64s(m, 3, (const int64_t[]){INT64_MIN, 9}, 2);
    assert_i64s(m, 4, (const int64_t[]){INT64_MIN, 9}, 2);
    kiln_module_free(m);
}

static void test_cast(void **state)
{
    (void)state;
    kiln_tensor *f =
        konst(KILN_F32, KILN_SHAPE(6), (const float[]){2.7f, -2.7f, 0.0f, NAN, 1e20f, -1e20f});
    kiln_tensor *i =
        konst(KILN_I64, KILN_SHAPE(3), (const int64_t[]){16777217, -3, ((int64_t)1 << 53) + 1});
    kiln_tensor *b = konst(KILN_BOOL, KILN_SHAPE(2), (const bool[]){true, false});
    kiln_tensor *outs[] = {
        ew(IR_CAST, KILN_I32, 1, &f), ew(IR_CAST, KILN_BOOL, 1, &f), ew(IR_CAST, KILN_F32, 1, &i),
        ew(IR_CAST, KILN_F64, 1, &i), ew(IR_CAST, KILN_I32, 1, &i),  ew(IR_CAST, KILN_F32, 1, &b),
        ew(IR_CAST, KILN_I64, 1, &f),
    };
    kiln_module *m = run(7, outs);
    /* float -> int truncates toward zero and saturates; NaN -> 0 */
    assert_i32s(m, 0, (const int32_t[]){2, -2, 0, 0, INT32_MAX, INT32_MIN}, 6);
    assert_bools(m, 1, (const bool[]){true, true, false, true, true, true}, 6);
    /* int64 -> float32 rounds once (to nearest even) */
    assert_f32s(m, 2, (const float[]){16777216.0f, -3.0f, 9007199254740992.0f}, 3);
    double d[3];
    get(m, 3, d, sizeof(d));
    assert_true(d[0] == 16777217.0 && d[1] == -3.0 && d[2] == 9007199254740992.0);
    assert_i32s(m, 4, (const int32_t[]){16777217, -3, 1}, 3); /* int -> int wraps */
    assert_f32s(m, 5, (const float[]){1.0f, 0.0f}, 2);
    assert_i64s(m, 6, (const int64_t[]){2, -2, 0, 0, INT64_MAX, INT64_MIN}, 6);
    kiln_module_free(m);
}

static void test_binary_float(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_F32, KILN_SHAPE(4), (const float[]){1.5f, -2.0f, 0.1f, 3.0f});
    kiln_tensor *b = konst(KILN_F32, KILN_SHAPE(4), (const float[]){0.25f, 3.0f, 0.2f, 0.0f});
    kiln_tensor *outs[] = {bin(IR_ADD, a, b), bin(IR_SUB, a, b), bin(IR_MUL, a, b),
                           bin(IR_DIV, a, b), bin(IR_POW, a, b)};
    kiln_module *m = run(5, outs);
    double av[4] = {1.5, -2.0, (double)0.1f, 3.0}, bv[4] = {0.25, 3.0, (double)0.2f, 0.0};
    float want[5][4];
    for (int i = 0; i < 4; i++) {
        want[0][i] = (float)(av[i] + bv[i]);
        want[1][i] = (float)(av[i] - bv[i]);
        want[2][i] = (float)(av[i] * bv[i]);
        want[3][i] = (float)(av[i] / bv[i]);
        want[4][i] = (float)pow(av[i], bv[i]);
    }
    for (int k = 0; k < 5; k++)
        assert_f32s(m, k, want[k], 4);
    float inf[4];
    get(m, 3, inf, sizeof(inf));
    assert_true(isinf(inf[3]) && inf[3] > 0); /* 3 / 0 */
    kiln_module_free(m);
}

static void test_maximum_minimum_nan(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_F32, KILN_SHAPE(4), (const float[]){1, NAN, 2, -0.5f});
    kiln_tensor *b = konst(KILN_F32, KILN_SHAPE(4), (const float[]){NAN, 1, 3, -1});
    kiln_tensor *ia = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){INT64_MIN, 7});
    kiln_tensor *ib = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){0, -7});
    kiln_tensor *outs[] = {bin(IR_MAXIMUM, a, b), bin(IR_MINIMUM, a, b), bin(IR_MAXIMUM, ia, ib),
                           bin(IR_MINIMUM, ia, ib)};
    kiln_module *m = run(4, outs);
    assert_f32s(m, 0, (const float[]){NAN, NAN, 3, -0.5f}, 4);
    assert_f32s(m, 1, (const float[]){NAN, NAN, 2, -1}, 4);
    assert_i64s(m, 2, (const int64_t[]){0, 7}, 2);
    assert_i64s(m, 3, (const int64_t[]){INT64_MIN, -7}, 2);
    kiln_module_free(m);
}

static void test_binary_int_wrap(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_I32, KILN_SHAPE(3), (const int32_t[]){INT32_MAX, INT32_MIN, 65536});
    kiln_tensor *b = konst(KILN_I32, KILN_SHAPE(3), (const int32_t[]){1, 1, 65536});
    kiln_tensor *la = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){INT64_MAX, INT64_MIN});
    kiln_tensor *lb = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){2, 1});
    kiln_tensor *outs[] = {bin(IR_ADD, a, b), bin(IR_SUB, a, b), bin(IR_MUL, a, b),
                           bin(IR_MUL, la, lb), bin(IR_SUB, la, lb)};
    kiln_module *m = run(5, outs);
    assert_i32s(m, 0, (const int32_t[]){INT32_MIN, INT32_MIN + 1, 131072}, 3);
    assert_i32s(m, 1, (const int32_t[]){INT32_MAX - 1, INT32_MAX, 0}, 3);
    assert_i32s(m, 2, (const int32_t[]){INT32_MAX, INT32_MIN, 0}, 3); /* 2^32 wraps to 0 */
    assert_i64s(m, 3, (const int64_t[]){-2, INT64_MIN}, 2);
    assert_i64s(m, 4, (const int64_t[]){INT64_MAX - 2, INT64_MAX}, 2);
    kiln_module_free(m);
}

static void test_int_div_pow(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_I64, KILN_SHAPE(6), (const int64_t[]){7, -7, 7, -7, 6, INT64_MIN});
    kiln_tensor *b = konst(KILN_I64, KILN_SHAPE(6), (const int64_t[]){2, 2, -2, -2, 3, -1});
    kiln_tensor *pa = konst(KILN_I32, KILN_SHAPE(5), (const int32_t[]){3, -2, 0, 2, 1});
    kiln_tensor *pb = konst(KILN_I32, KILN_SHAPE(5), (const int32_t[]){4, 3, 0, 31, 100});
    kiln_tensor *ba = konst(KILN_BOOL, KILN_SHAPE(4), (const bool[]){false, true, false, true});
    kiln_tensor *bb = konst(KILN_BOOL, KILN_SHAPE(4), (const bool[]){false, false, true, true});
    kiln_tensor *outs[] = {bin(IR_DIV, a, b), bin(IR_POW, pa, pb), bin(IR_ADD, ba, bb),
                           bin(IR_MUL, ba, bb)};
    kiln_module *m = run(4, outs);
    /* floor division, like Python's // */
    assert_i64s(m, 0, (const int64_t[]){3, -4, -4, 3, 2, INT64_MIN}, 6);
    assert_i32s(m, 1, (const int32_t[]){81, -8, 1, INT32_MIN, 1}, 5); /* 2^31 wraps */
    assert_bools(m, 2, (const bool[]){false, true, true, true}, 4);   /* or */
    assert_bools(m, 3, (const bool[]){false, false, false, true}, 4); /* and */
    kiln_module_free(m);
}

static void test_int_div_by_zero(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_I32, KILN_SHAPE(2), (const int32_t[]){1, 2});
    kiln_tensor *b = konst(KILN_I32, KILN_SHAPE(2), (const int32_t[]){1, 0});
    kiln_tensor *d = bin(IR_DIV, a, b);
    kiln_module *m = NULL;
    kiln_status s = try_run(1, &d, &m);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_run: ZeroDivisionError");
    kiln_module_free(m);
}

static void test_int_negative_pow(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){2, 2});
    kiln_tensor *b = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){1, -1});
    kiln_tensor *p = bin(IR_POW, a, b);
    kiln_module *m = NULL;
    kiln_status s = try_run(1, &p, &m);
    assert_module_error(m, s, KILN_ERR_INVALID,
                        "kiln_module_run: Integers to negative integer powers are not allowed.");
    kiln_module_free(m);
}

static void test_compare_where(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_F32, KILN_SHAPE(4), (const float[]){1, 2, NAN, 3});
    kiln_tensor *b = konst(KILN_F32, KILN_SHAPE(4), (const float[]){1, 3, NAN, 2});
    const int64_t big = (int64_t)1 << 53;
    kiln_tensor *ia = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){big, big + 1});
    kiln_tensor *ib = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){big + 1, big + 1});
    kiln_tensor *lt = bin(IR_LT, a, b);
    kiln_tensor *win[3] = {lt, a, b};
    kiln_tensor *outs[] = {bin(IR_EQ, a, b),   bin(IR_NE, a, b),   lt,
                           bin(IR_LE, a, b),   bin(IR_GT, a, b),   bin(IR_GE, a, b),
                           bin(IR_EQ, ia, ib), bin(IR_LT, ia, ib), ew(IR_WHERE, KILN_F32, 3, win)};
    /* WHERE's shape and dtype come from a, not the bool condition */
    outs[8]->dtype = KILN_F32;
    kiln_module *m = run(9, outs);
    assert_bools(m, 0, (const bool[]){true, false, false, false}, 4);
    assert_bools(m, 1, (const bool[]){false, true, true, true}, 4); /* NaN != NaN */
    assert_bools(m, 2, (const bool[]){false, true, false, false}, 4);
    assert_bools(m, 3, (const bool[]){true, true, false, false}, 4);
    assert_bools(m, 4, (const bool[]){false, false, false, true}, 4);
    assert_bools(m, 5, (const bool[]){true, false, false, true}, 4);
    /* int64 compares exactly, not through double */
    assert_bools(m, 6, (const bool[]){false, true}, 2);
    assert_bools(m, 7, (const bool[]){true, false}, 2);
    assert_f32s(m, 8, (const float[]){1, 2, NAN, 2}, 4);
    kiln_module_free(m);
}

static void test_size_zero_elementwise(void **state)
{
    (void)state;
    kiln_tensor *a = node(IR_FULL, KILN_F32, KILN_SHAPE(0, 3), 0, NULL);
    kiln_tensor *s = bin(IR_ADD, a, a);
    kiln_tensor *outs[] = {s, reduce(IR_SUM, s, 1u), reduce(IR_SUM, a, 3u)};
    kiln_module *m = run(3, outs);
    float z[1];
    get(m, 0, z, 0);
    assert_f32s(m, 1, (const float[]){0, 0, 0}, 3); /* [1, 3]: sums of nothing */
    assert_f32s(m, 2, (const float[]){0}, 1);
    kiln_module_free(m);
}

/* ---- reductions ----------------------------------------------------------------- */

static void test_reduce_sum(void **state)
{
    (void)state;
    kiln_tensor *x = konst(KILN_F32, KILN_SHAPE(2, 3), (const float[]){1, 2, 3, 4, 5, 6});
    kiln_tensor *i = konst(KILN_I32, KILN_SHAPE(3), (const int32_t[]){INT32_MAX, 1, 1});
    kiln_tensor *f = konst(KILN_F32, KILN_SHAPE(3), (const float[]){1e8f, 1, -1e8f});
    kiln_tensor *outs[] = {reduce(IR_SUM, x, 1u), reduce(IR_SUM, x, 2u), reduce(IR_SUM, x, 3u),
                           reduce(IR_SUM, i, 1u), reduce(IR_SUM, f, 1u)};
    assert_int_equal(outs[0]->dims[0], 1);
    kiln_module *m = run(5, outs);
    assert_f32s(m, 0, (const float[]){5, 7, 9}, 3);
    assert_f32s(m, 1, (const float[]){6, 15}, 2);
    assert_f32s(m, 2, (const float[]){21}, 1);
    assert_i32s(m, 3, (const int32_t[]){INT32_MIN + 1}, 1); /* wraps */
    assert_f32s(m, 4, (const float[]){1}, 1);               /* accumulated in double */
    kiln_module_free(m);
}

static void test_reduce_max_min_arg(void **state)
{
    (void)state;
    kiln_tensor *x = konst(KILN_F32, KILN_SHAPE(2, 3), (const float[]){1, 5, 5, 2, 2, 0});
    kiln_tensor *n = konst(KILN_F64, KILN_SHAPE(2, 3),
                           (const double[]){1, (double)NAN, 9, 4, (double)NAN, (double)NAN});
    kiln_tensor *i = konst(KILN_I64, KILN_SHAPE(4), (const int64_t[]){-3, 8, 8, -3});
    kiln_tensor *outs[] = {
        reduce(IR_MAX, x, 2u),    reduce(IR_MIN, x, 1u),    reduce(IR_ARGMAX, x, 2u),
        reduce(IR_ARGMIN, x, 1u), reduce(IR_ARGMAX, x, 3u), reduce(IR_ARGMIN, x, 3u),
        reduce(IR_MAX, n, 2u),    reduce(IR_ARGMAX, n, 2u), reduce(IR_ARGMIN, n, 2u),
        reduce(IR_MIN, i, 1u),    reduce(IR_ARGMAX, i, 1u), reduce(IR_ARGMIN, i, 1u),
    };
    kiln_module *m = run(12, outs);
    assert_f32s(m, 0, (const float[]){5, 2}, 2);
    assert_f32s(m, 1, (const float[]){1, 2, 0}, 3);
    assert_i64s(m, 2, (const int64_t[]){1, 0}, 2); /* ties: the first index */
    assert_i64s(m, 3, (const int64_t[]){0, 1, 1}, 3);
    assert_i64s(m, 4, (const int64_t[]){1}, 1); /* a flat index over every axis */
    assert_i64s(m, 5, (const int64_t[]){5}, 1);
    double mx[2];
    get(m, 6, mx, sizeof(mx));
    assert_true(isnan(mx[0]) && isnan(mx[1]));     /* NaN propagates */
    assert_i64s(m, 7, (const int64_t[]){1, 1}, 2); /* the first NaN is the max ... */
    assert_i64s(m, 8, (const int64_t[]){1, 1}, 2); /* ... and the min */
    assert_i64s(m, 9, (const int64_t[]){-3}, 1);
    assert_i64s(m, 10, (const int64_t[]){1}, 1);
    assert_i64s(m, 11, (const int64_t[]){0}, 1);
    kiln_module_free(m);
}

static void test_reduce_middle_axes(void **state)
{
    (void)state;
    float xv[24];
    for (int i = 0; i < 24; i++)
        xv[i] = (float)((i * 7) % 24);
    kiln_tensor *x = konst(KILN_F32, KILN_SHAPE(2, 3, 4), xv);
    /* axes 1 and 2 of (2, 3, 4): each output reduces 12 values, row-major */
    kiln_tensor *outs[] = {reduce(IR_SUM, x, 6u), reduce(IR_ARGMAX, x, 6u), reduce(IR_SUM, x, 5u)};
    kiln_module *m = run(3, outs);
    float s0 = 0, s1 = 0;
    int64_t a0 = 0, a1 = 0;
    for (int r = 0; r < 12; r++) {
        s0 += xv[r];
        s1 += xv[12 + r];
        a0 = xv[r] > xv[a0] ? r : a0;
        a1 = xv[12 + r] > xv[12 + a1] ? r : a1;
    }
    assert_f32s(m, 0, (const float[]){s0, s1}, 2);
    assert_i64s(m, 1, (const int64_t[]){a0, a1}, 2);
    float want[3];
    for (int j = 0; j < 3; j++) {
        want[j] = 0;
        for (int a = 0; a < 2; a++)
            for (int c = 0; c < 4; c++)
                want[j] += xv[a * 12 + j * 4 + c];
    }
    assert_f32s(m, 2, want, 3);
    kiln_module_free(m);
}

static void test_reduce_max_of_nothing(void **state)
{
    (void)state;
    kiln_tensor *x = node(IR_FULL, KILN_F32, KILN_SHAPE(2, 0), 0, NULL);
    kiln_tensor *mx = reduce(IR_MAX, x, 2u);
    kiln_module *m = NULL;
    kiln_status s = try_run(1, &mx, &m);
    assert_module_error(m, s, KILN_ERR_INVALID,
                        "kiln_module_run: max(): Expected reduction dim 1 to have non-zero size.");
    kiln_module_free(m);
}

/* ---- movement ----------------------------------------------------------------- */

static void test_movement(void **state)
{
    (void)state;
    kiln_tensor *x = konst(KILN_F32, KILN_SHAPE(2, 3), (const float[]){1, 2, 3, 4, 5, 6});
    kiln_tensor *rs = node(IR_RESHAPE, KILN_F32, KILN_SHAPE(3, 2), 1, &x);
    kiln_tensor *pm = node(IR_PERMUTE, KILN_F32, KILN_SHAPE(3, 2), 1, &x);
    pm->perm[0] = 1;
    pm->perm[1] = 0;
    kiln_tensor *row = konst(KILN_I32, KILN_SHAPE(1, 3), (const int32_t[]){7, 8, 9});
    kiln_tensor *ex = node(IR_EXPAND, KILN_I32, KILN_SHAPE(2, 3), 1, &row);
    kiln_tensor *sl = node(IR_SLICE, KILN_F32, KILN_SHAPE(1, 2), 1, &x);
    sl->begin[0] = 1;
    sl->step[0] = 1;
    sl->begin[1] = 0;
    sl->step[1] = 2;
    kiln_tensor *pd = node(IR_PAD, KILN_F32, KILN_SHAPE(3, 4), 1, &x);
    pd->begin[0] = 1;
    pd->after[0] = 0;
    pd->begin[1] = 0;
    pd->after[1] = 1;
    pd->value = -1;
    kiln_tensor *y = konst(KILN_F32, KILN_SHAPE(2, 1), (const float[]){10, 20});
    kiln_tensor *cin[3] = {x, y, x};
    kiln_tensor *c1 = node(IR_CONCAT, KILN_F32, KILN_SHAPE(2, 7), 3, cin);
    c1->axis = 1;
    kiln_tensor *e0 = node(IR_FULL, KILN_F32, KILN_SHAPE(0, 3), 0, NULL);
    kiln_tensor *cin0[3] = {e0, x, e0};
    kiln_tensor *c0 = node(IR_CONCAT, KILN_F32, KILN_SHAPE(2, 3), 3, cin0);
    c0->axis = 0;
    kiln_tensor *outs[] = {rs, pm, ex, sl, pd, c1, c0};
    kiln_module *m = run(7, outs);
    assert_f32s(m, 0, (const float[]){1, 2, 3, 4, 5, 6}, 6);
    assert_f32s(m, 1, (const float[]){1, 4, 2, 5, 3, 6}, 6);
    assert_i32s(m, 2, (const int32_t[]){7, 8, 9, 7, 8, 9}, 6);
    assert_f32s(m, 3, (const float[]){4, 6}, 2);
    assert_f32s(m, 4, (const float[]){-1, -1, -1, -1, 1, 2, 3, -1, 4, 5, 6, -1}, 12);
    assert_f32s(m, 5, (const float[]){1, 2, 3, 10, 1, 2, 3, 4, 5, 6, 20, 4, 5, 6}, 14);
    assert_f32s(m, 6, (const float[]){1, 2, 3, 4, 5, 6}, 6);
    kiln_module_free(m);
}

static void test_permute_3d_expand_scalar(void **state)
{
    (void)state;
    float xv[24];
    for (int i = 0; i < 24; i++)
        xv[i] = (float)i;
    kiln_tensor *x = konst(KILN_F32, KILN_SHAPE(2, 3, 4), xv);
    kiln_tensor *pm = node(IR_PERMUTE, KILN_F32, KILN_SHAPE(4, 2, 3), 1, &x);
    pm->perm[0] = 2;
    pm->perm[1] = 0;
    pm->perm[2] = 1;
    kiln_tensor *one = konst(KILN_F64, KILN_SHAPE(1, 1), (const double[]){2.5});
    kiln_tensor *ex = node(IR_EXPAND, KILN_F64, KILN_SHAPE(2, 2), 1, &one);
    kiln_tensor *sl = node(IR_SLICE, KILN_F32, KILN_SHAPE(1, 2, 2), 1, &x);
    sl->begin[0] = 1, sl->step[0] = 1;
    sl->begin[1] = 0, sl->step[1] = 2;
    sl->begin[2] = 1, sl->step[2] = 2;
    kiln_tensor *outs[] = {pm, ex, sl};
    kiln_module *m = run(3, outs);
    float got[24];
    get(m, 0, got, sizeof(got));
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 3; c++)
                assert_true(got[a * 6 + b * 3 + c] == xv[b * 12 + c * 4 + a]);
    double d[4];
    get(m, 1, d, sizeof(d));
    assert_true(d[0] == 2.5 && d[3] == 2.5);
    assert_f32s(m, 2, (const float[]){13, 15, 21, 23}, 4);
    kiln_module_free(m);
}

/* ---- matmul --------------------------------------------------------------------- */

static void test_matmul(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_F32, KILN_SHAPE(2, 3), (const float[]){1, 2, 3, 4, 5, 6});
    kiln_tensor *b = konst(KILN_F32, KILN_SHAPE(3, 2), (const float[]){7, 8, 9, 10, 11, 12});
    kiln_tensor *ab[2] = {a, b};
    kiln_tensor *mm = node(IR_MATMUL, KILN_F32, KILN_SHAPE(2, 2), 2, ab);
    kiln_tensor *ba =
        konst(KILN_I64, KILN_SHAPE(2, 2, 2), (const int64_t[]){1, 2, 3, 4, 5, 6, 7, 8});
    kiln_tensor *bb = konst(KILN_I64, KILN_SHAPE(2, 2, 1), (const int64_t[]){1, -1, INT64_MAX, 1});
    kiln_tensor *bab[2] = {ba, bb};
    kiln_tensor *bmm = node(IR_MATMUL, KILN_I64, KILN_SHAPE(2, 2, 1), 2, bab);
    kiln_tensor *ea = node(IR_FULL, KILN_F64, KILN_SHAPE(2, 0), 0, NULL);
    kiln_tensor *eb = node(IR_FULL, KILN_F64, KILN_SHAPE(0, 3), 0, NULL);
    kiln_tensor *eab[2] = {ea, eb};
    kiln_tensor *emm = node(IR_MATMUL, KILN_F64, KILN_SHAPE(2, 3), 2, eab);
    kiln_tensor *fa = konst(KILN_F32, KILN_SHAPE(1, 3), (const float[]){1e8f, 1, -1e8f});
    kiln_tensor *fb = konst(KILN_F32, KILN_SHAPE(3, 1), (const float[]){1, 1, 1});
    kiln_tensor *fab[2] = {fa, fb};
    kiln_tensor *fmm = node(IR_MATMUL, KILN_F32, KILN_SHAPE(1, 1), 2, fab);
    kiln_tensor *outs[] = {mm, bmm, emm, fmm};
    kiln_module *m = run(4, outs);
    assert_f32s(m, 0, (const float[]){58, 64, 139, 154}, 4);
    /* batch 1: [5 6; 7 8] @ [MAX; 1] wraps */
    assert_i64s(m, 1,
                (const int64_t[]){-1, -1, (int64_t)(5 * (uint64_t)INT64_MAX + 6),
                                  (int64_t)(7 * (uint64_t)INT64_MAX + 8)},
                4);
    double z[6];
    get(m, 2, z, sizeof(z));
    for (int i = 0; i < 6; i++)
        assert_true(z[i] == 0);
    assert_f32s(m, 3, (const float[]){1}, 1); /* accumulated in double */
    kiln_module_free(m);
}

/* ---- indexing -------------------------------------------------------------------- */

static void test_gather_scatter(void **state)
{
    (void)state;
    kiln_tensor *table = konst(KILN_F32, KILN_SHAPE(3, 2), (const float[]){1, 2, 3, 4, 5, 6});
    kiln_tensor *ids = konst(KILN_I64, KILN_SHAPE(2, 2), (const int64_t[]){2, 0, 2, 1});
    kiln_tensor *gin[2] = {table, ids};
    kiln_tensor *g0 = node(IR_GATHER, KILN_F32, KILN_SHAPE(2, 2, 2), 2, gin);
    g0->axis = 0;
    kiln_tensor *cols = konst(KILN_I32, KILN_SHAPE(3), (const int32_t[]){1, 1, 0});
    kiln_tensor *gin1[2] = {table, cols};
    kiln_tensor *g1 = node(IR_GATHER, KILN_F32, KILN_SHAPE(3, 3), 2, gin1);
    g1->axis = 1;
    kiln_tensor *src = konst(KILN_F32, KILN_SHAPE(3, 2), (const float[]){1, 2, 3, 4, 5, 6});
    kiln_tensor *sid = konst(KILN_I32, KILN_SHAPE(3), (const int32_t[]){3, 0, 3});
    kiln_tensor *sin_[2] = {src, sid};
    kiln_tensor *s0 = node(IR_SCATTER_ADD, KILN_F32, KILN_SHAPE(4, 2), 2, sin_);
    s0->axis = 0;
    kiln_tensor *isrc = konst(KILN_I64, KILN_SHAPE(1, 3), (const int64_t[]){5, 6, 7});
    kiln_tensor *iid = konst(KILN_I64, KILN_SHAPE(3), (const int64_t[]){1, 1, 0});
    kiln_tensor *sin1[2] = {isrc, iid};
    kiln_tensor *s1 = node(IR_SCATTER_ADD, KILN_I64, KILN_SHAPE(1, 2), 2, sin1);
    s1->axis = 1;
    kiln_tensor *outs[] = {g0, g1, s0, s1};
    kiln_module *m = run(4, outs);
    assert_f32s(m, 0, (const float[]){5, 6, 1, 2, 5, 6, 3, 4}, 8);
    assert_f32s(m, 1, (const float[]){2, 2, 1, 4, 4, 3, 6, 6, 5}, 9);
    assert_f32s(m, 2, (const float[]){3, 4, 0, 0, 0, 0, 6, 8}, 8);
    assert_i64s(m, 3, (const int64_t[]){7, 11}, 2);
    kiln_module_free(m);
}

static void index_error(bool scatter, int64_t bad, const char *want)
{
    kiln_tensor *table = node(IR_FULL, KILN_F32, KILN_SHAPE(5, 2), 0, NULL);
    kiln_tensor *ids = konst(KILN_I64, KILN_SHAPE(2), (const int64_t[]){0, bad});
    kiln_tensor *in[2] = {table, ids};
    kiln_tensor *t = scatter ? NULL : node(IR_GATHER, KILN_F32, KILN_SHAPE(2, 2), 2, in);
    if (scatter) {
        kiln_tensor *src = node(IR_FULL, KILN_F32, KILN_SHAPE(2, 2), 0, NULL);
        kiln_tensor *sin_[2] = {src, ids};
        t = node(IR_SCATTER_ADD, KILN_F32, KILN_SHAPE(5, 2), 2, sin_);
    }
    kiln_module *m = NULL;
    kiln_status s = try_run(1, &t, &m);
    assert_module_error(m, s, KILN_ERR_INVALID, want);
    kiln_module_free(m);
}

static void test_gather_out_of_bounds(void **state)
{
    (void)state;
    index_error(false, 7, "kiln_module_run: index 7 is out of bounds for dimension 0 with size 5");
}

static void test_gather_negative_index(void **state)
{
    (void)state;
    index_error(false, -1,
                "kiln_module_run: index -1 is out of bounds for dimension 0 with size 5");
}

static void test_scatter_out_of_bounds(void **state)
{
    (void)state;
    index_error(true, 5, "kiln_module_run: index 5 is out of bounds for dimension 0 with size 5");
}

/* ---- random ------------------------------------------------------------------------ */

static void test_random_ops(void **state)
{
    (void)state;
    kiln_tensor *r = node(IR_RAND, KILN_F32, KILN_SHAPE(2, 3), 0, NULL);
    r->stream = 3;
    kiln_tensor *n = node(IR_RANDN, KILN_F64, KILN_SHAPE(5), 0, NULL);
    n->stream = 4;
    kiln_tensor *r64 = node(IR_RAND, KILN_F64, KILN_SHAPE(3), 0, NULL);
    r64->stream = 5;
    kiln_tensor *n32 = node(IR_RANDN, KILN_F32, KILN_SHAPE(3), 0, NULL);
    n32->stream = 6;
    kiln_tensor *outs[] = {r, n, r64, n32};
    kiln_module *m = run(4, outs);
    for (uint32_t runi = 0; runi < 3; runi++) {
        if (runi > 0)
            assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        float rv[6], n32v[3];
        double nv[5], r64v[3];
        get(m, 0, rv, sizeof(rv));
        get(m, 1, nv, sizeof(nv));
        get(m, 2, r64v, sizeof(r64v));
        get(m, 3, n32v, sizeof(n32v));
        for (int i = 0; i < 6; i++)
            assert_true(rv[i] == ir_rand_f32(1234, 3, runi, (uint64_t)i));
        for (int i = 0; i < 5; i++)
            assert_true(nv[i] == ir_randn_f64(1234, 4, runi, (uint64_t)i));
        for (int i = 0; i < 3; i++) {
            assert_true(r64v[i] == ir_rand_f64(1234, 5, runi, (uint64_t)i));
            assert_true(n32v[i] == ir_randn_f32(1234, 6, runi, (uint64_t)i));
        }
    }
    kiln_module_free(m);
}

/* ---- whole entries ------------------------------------------------------------------ */

/* Nodes an entry does not need are not computed: a failing node elsewhere is harmless. */
static void test_only_needed_nodes_run(void **state)
{
    (void)state;
    kiln_tensor *a = konst(KILN_I32, KILN_SHAPE(1), (const int32_t[]){1});
    kiln_tensor *z = konst(KILN_I32, KILN_SHAPE(1), (const int32_t[]){0});
    kiln_tensor *bad = bin(IR_DIV, a, z);
    kiln_tensor *good = bin(IR_ADD, a, a);
    ir_entry *e = ir_entry_new(g, "bad", 1);
    e->outputs[0] = bad;
    e->output_names[0] = ir_arena_strdup(&g->arena, "bad.0");
    kiln_module *m = run(1, &good);
    assert_i32s(m, 0, (const int32_t[]){2}, 1);
    kiln_status s = kiln_module_run(m, "bad");
    assert_module_error(m, s, KILN_ERR_INVALID, "ZeroDivisionError");
    kiln_module_free(m);
}

/* The same node twice, a leaf and a constant are all valid outputs. */
static void test_any_tensor_is_an_output(void **state)
{
    (void)state;
    kiln_tensor *p = node(IR_PARAM, KILN_F32, KILN_SHAPE(2), 0, NULL);
    p->name = ir_arena_strdup(&g->arena, "p");
    p->init = kiln_init_const(1.5);
    kiln_tensor *c = konst(KILN_F32, KILN_SHAPE(2), (const float[]){3, 4});
    kiln_tensor *s = bin(IR_ADD, p, c);
    kiln_tensor *outs[] = {s, s, p, c};
    kiln_module *m = run(4, outs);
    assert_f32s(m, 0, (const float[]){4.5f, 5.5f}, 2);
    assert_f32s(m, 1, (const float[]){4.5f, 5.5f}, 2);
    assert_f32s(m, 2, (const float[]){1.5f, 1.5f}, 2);
    assert_f32s(m, 3, (const float[]){3, 4}, 2);
    kiln_module_free(m);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_sources),
        T(test_unary_float),
        T(test_unary_special_values),
        T(test_unary_int),
        T(test_cast),
        T(test_binary_float),
        T(test_maximum_minimum_nan),
        T(test_binary_int_wrap),
        T(test_int_div_pow),
        T(test_int_div_by_zero),
        T(test_int_negative_pow),
        T(test_compare_where),
        T(test_size_zero_elementwise),
        T(test_reduce_sum),
        T(test_reduce_max_min_arg),
        T(test_reduce_middle_axes),
        T(test_reduce_max_of_nothing),
        T(test_movement),
        T(test_permute_3d_expand_scalar),
        T(test_matmul),
        T(test_gather_scatter),
        T(test_gather_out_of_bounds),
        T(test_gather_negative_index),
        T(test_scatter_out_of_bounds),
        T(test_random_ops),
        T(test_only_needed_nodes_run),
        T(test_any_tensor_is_an_output),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
