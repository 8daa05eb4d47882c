/* test_vmath.c - the vectorizable f32 math of generated C code (ir/vmath.inc).
 *
 * Each function against libm's double result: within 2 ulp of it (and of it
 * rounded to f32) over a strided sweep of every bit pattern and dense sweeps of
 * the ranges that matter (reduction boundaries, branch thresholds, overflow,
 * underflow, subnormals, near 0 and 1), and its special values exact. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* as the generated code defines it */
#define KILN_FN static inline __attribute__((unused))
#include "ir/vmath.inc"

/* Kiln's contract for the fast f32 math. */
#define MAX_ULP 2.0

typedef struct {
    const char *name;
    float (*f)(float);
    double (*ref)(double);
    double max_ulp; /* the largest error seen, in ulp of the exact (double) result */
    float worst;    /* where */
    uint64_t n;     /* inputs checked */
} vm_fn;

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Floats in order as integers: consecutive floats differ by 1, -0 == +0, and
 * +inf is one past FLT_MAX. */
static int64_t ordinal(float f)
{
    uint32_t u = to_bits(f);
    return u >> 31 ? -(int64_t)(u & 0x7fffffffu) : (int64_t)u;
}

static float from_ordinal(int64_t o)
{
    return o < 0 ? from_bits(0x80000000u | (uint32_t)-o) : from_bits((uint32_t)o);
}

/* The f32 ulp at |r| (r finite): 2^(e - 23) for |r| in [2^e, 2^(e+1)),
 * 2^-149 below 2^-126. */
static double ulp_at(double r)
{
    int e;
    frexp(fabs(r), &e);
    e -= 1;
    return ldexp(1.0, (e < -126 ? -126 : e) - 23);
}

static void check(vm_fn *fn, float x)
{
    float y = fn->f(x);
    double r = fn->ref((double)x);
    float want = (float)r;
    fn->n++;
    if (isnan(want) || isnan(y)) {
        if (!isnan(want) || !isnan(y))
            fail_msg("%s(%a) = %a, want %a", fn->name, (double)x, (double)y, (double)want);
        return;
    }
    int64_t d = ordinal(y) - ordinal(want);
    if (d > 2 || d < -2)
        fail_msg("%s(%a) = %a, want %a (%lld ulp apart)", fn->name, (double)x, (double)y,
                 (double)want, (long long)d);
    if (isinf(y) || isinf(want))
        return; /* equal, or FLT_MAX against an r that rounds past it */
    double e = fabs((double)y - r) / ulp_at(r);
    if (e > fn->max_ulp) {
        fn->max_ulp = e;
        fn->worst = x;
    }
}

/* Every step-th float from a up to b (in the order of ordinal). */
static void sweep(vm_fn *fn, float a, float b, int64_t step)
{
    for (int64_t o = ordinal(a), end = ordinal(b); o <= end; o += step)
        check(fn, from_ordinal(o));
}

/* Every step-th bit pattern of the whole 32-bit range: NaNs, infinities,
 * subnormals and both signs included. */
static void sweep_all_bits(vm_fn *fn, uint32_t step)
{
    for (uint64_t u = 0; u <= UINT32_MAX; u += step)
        check(fn, from_bits((uint32_t)u));
}

/* n floats either side of x */
static void around(vm_fn *fn, float x, int64_t n)
{
    sweep(fn, from_ordinal(ordinal(x) - n), from_ordinal(ordinal(x) + n), 1);
}

static void finish(vm_fn *fn)
{
    print_message("%-10s max %.3f ulp (at %a) over %llu inputs\n", fn->name, fn->max_ulp,
                  (double)fn->worst, (unsigned long long)fn->n);
    assert_true(fn->max_ulp <= MAX_ULP);
}

/* got is want bit for bit (any NaN matches any NaN) */
#define assert_same(got, want) assert_same_((got), (want), #got, __FILE__, __LINE__)
static void assert_same_(float got, float want, const char *expr, const char *file, int line)
{
    if (isnan(got) && isnan(want))
        return;
    if (to_bits(got) != to_bits(want)) {
        print_error("%s:%d: %s = %a, want %a\n", file, line, expr, (double)got, (double)want);
        fail();
    }
}

/* the sweeps' strides: the whole range, and the dense ranges */
#define ALL_STEP   509
#define RANGE_STEP 401

static void test_expf(void **state)
{
    (void)state;
    vm_fn fn = {"kiln_expf", kiln_expf, exp, 0, 0, 0};
    sweep_all_bits(&fn, ALL_STEP);
    sweep(&fn, -104.0f, 89.0f, RANGE_STEP);
    sweep(&fn, -0x1p-20f, 0x1p-20f, 997);
    /* the reduction's boundaries, x = (k + 1/2) ln2 */
    for (int k = -151; k <= 128; k++)
        around(&fn, (float)((k + 0.5) * 0.69314718055994531), 64);
    sweep(&fn, 88.6f, 88.8f, 1);     /* overflow */
    sweep(&fn, -87.5f, -87.2f, 1);   /* results going subnormal */
    sweep(&fn, -104.0f, -103.0f, 1); /* and to 0 */
    finish(&fn);

    assert_same(kiln_expf(0.0f), 1.0f);
    assert_same(kiln_expf(-0.0f), 1.0f);
    assert_same(kiln_expf(1.0f), 0x1.5bf0a8p+1f);
    assert_same(kiln_expf(INFINITY), INFINITY);
    assert_same(kiln_expf(-INFINITY), 0.0f);
    assert_same(kiln_expf(FLT_MAX), INFINITY);
    assert_same(kiln_expf(-FLT_MAX), 0.0f);
    assert_true(isnan(kiln_expf(NAN)));
    assert_true(isnan(kiln_expf(-NAN)));
    /* the last finite result and the first overflow */
    assert_same(kiln_expf(0x1.62e42ep+6f), 0x1.ffff08p+127f);
    assert_same(kiln_expf(0x1.62e430p+6f), INFINITY);
    /* the smallest subnormal and underflow to 0 */
    assert_same(kiln_expf(-0x1.9fe368p+6f), 0x1p-149f);
    assert_same(kiln_expf(-0x1.9fe36ap+6f), 0.0f);
    assert_same(kiln_expf(-104.0f), 0.0f);
}

static void test_logf(void **state)
{
    (void)state;
    vm_fn fn = {"kiln_logf", kiln_logf, log, 0, 0, 0};
    sweep_all_bits(&fn, ALL_STEP);
    sweep(&fn, 0x1p-149f, FLT_MAX, RANGE_STEP);
    sweep(&fn, 0x1p-149f, 0x1p-126f, 7); /* subnormals */
    sweep(&fn, 0.99f, 1.01f, 1);         /* log(x) -> 0 */
    /* where the reduction's exponent steps, at sqrt(2) 2^k */
    for (int k = -126; k <= 127; k++)
        around(&fn, ldexpf(0x1.6a09e6p+0f, k), 256);
    for (int k = -149; k <= 127; k++)
        check(&fn, ldexpf(1.0f, k));
    finish(&fn);

    assert_same(kiln_logf(1.0f), 0.0f); /* +0 */
    assert_same(kiln_logf(0.0f), -INFINITY);
    assert_same(kiln_logf(-0.0f), -INFINITY);
    assert_same(kiln_logf(INFINITY), INFINITY);
    assert_same(kiln_logf(2.0f), 0x1.62e430p-1f);
    assert_same(kiln_logf(0x1p-149f), -0x1.9d1da0p+6f);
    assert_true(isnan(kiln_logf(-0x1p-149f)));
    assert_true(isnan(kiln_logf(-1.0f)));
    assert_true(isnan(kiln_logf(-INFINITY)));
    assert_true(isnan(kiln_logf(NAN)));
}

static void test_tanhf(void **state)
{
    (void)state;
    vm_fn fn = {"kiln_tanhf", kiln_tanhf, tanh, 0, 0, 0};
    sweep_all_bits(&fn, ALL_STEP);
    sweep(&fn, -10.0f, 10.0f, RANGE_STEP);
    sweep(&fn, 0.99f, 1.01f, 1); /* the branch threshold */
    sweep(&fn, -1.01f, -0.99f, 1);
    sweep(&fn, 8.5f, 9.5f, 4); /* saturation */
    sweep(&fn, 0x1p-16f, 0x1p-2f, 97);
    finish(&fn);

    assert_same(kiln_tanhf(0.0f), 0.0f);
    assert_same(kiln_tanhf(-0.0f), -0.0f);
    assert_same(kiln_tanhf(INFINITY), 1.0f);
    assert_same(kiln_tanhf(-INFINITY), -1.0f);
    assert_same(kiln_tanhf(9.1f), 1.0f);
    assert_same(kiln_tanhf(-9.1f), -1.0f);
    assert_same(kiln_tanhf(FLT_MAX), 1.0f);
    assert_true(isnan(kiln_tanhf(NAN)));
    /* tanh(x) rounds to x for |x| <= 2^-13, subnormals included */
    for (uint32_t u = 1; u <= to_bits(0x1p-13f); u += 9973) {
        assert_same(kiln_tanhf(from_bits(u)), from_bits(u));
        assert_same(kiln_tanhf(-from_bits(u)), -from_bits(u));
    }
    /* odd */
    for (float x = 0x1p-10f; x < 12.0f; x *= 1.01f)
        assert_same(kiln_tanhf(-x), -kiln_tanhf(x));
}

static void test_erff(void **state)
{
    (void)state;
    vm_fn fn = {"kiln_erff", kiln_erff, erf, 0, 0, 0};
    sweep_all_bits(&fn, ALL_STEP);
    sweep(&fn, -4.5f, 4.5f, RANGE_STEP);
    sweep(&fn, 0.99f, 1.01f, 1); /* the branch threshold */
    sweep(&fn, -1.01f, -0.99f, 1);
    sweep(&fn, 3.8f, 4.1f, 8); /* saturation */
    sweep(&fn, 0x1p-16f, 0x1p-2f, 97);
    sweep(&fn, 0x1p-149f, 0x1p-126f, 97); /* subnormals */
    finish(&fn);

    assert_same(kiln_erff(0.0f), 0.0f);
    assert_same(kiln_erff(-0.0f), -0.0f);
    assert_same(kiln_erff(INFINITY), 1.0f);
    assert_same(kiln_erff(-INFINITY), -1.0f);
    assert_same(kiln_erff(4.0f), 1.0f);
    assert_same(kiln_erff(-4.0f), -1.0f);
    assert_same(kiln_erff(FLT_MAX), 1.0f);
    assert_same(kiln_erff(-FLT_MAX), -1.0f);
    assert_true(isnan(kiln_erff(NAN)));
    for (float x = 0x1p-10f; x < 12.0f; x *= 1.01f)
        assert_same(kiln_erff(-x), -kiln_erff(x));
}

/* cos and sin of 2 pi m 2^-24 for every m < 2^24 (the Box-Muller angles):
 * within 1.5 ulp of the exact value (an absolute 2^-24 where it is below 1/2
 * in magnitude), and exact at the quarter turns. */
static void test_cossin_turn24(void **state)
{
    (void)state;
    double worst = 0;
    for (uint32_t m = 0; m < (1u << 24); m++) {
        float c, s;
        kiln_cossin_turn24(m, &c, &s);
        /* 2 pi m 2^-24 reduced exactly to a quarter-turn multiple plus a rest */
        double turn = (double)m * 0x1p-24;
        double want[2] = {cos(2 * M_PI * turn), sin(2 * M_PI * turn)};
        float got[2] = {c, s};
        for (int j = 0; j < 2; j++) {
            double a = fabs(want[j]);
            double ulp = a < 1 ? 0x1p-24 : 0x1p-23;
            double err = fabs((double)got[j] - want[j]) / ulp;
            worst = err > worst ? err : worst;
            if (err > 1.5)
                fail_msg("kiln_cossin_turn24(%u)[%d] = %a, want %a (%.2f ulp)", m, j,
                         (double)got[j], want[j], err);
        }
    }
    print_message("kiln_cossin_turn24: %.3f ulp at worst\n", worst);
    const uint32_t q[4] = {0, 1u << 22, 2u << 22, 3u << 22};
    const float qc[4] = {1, 0, -1, 0}, qs[4] = {0, 1, 0, -1};
    for (int i = 0; i < 4; i++) {
        float c, s;
        kiln_cossin_turn24(q[i], &c, &s);
        assert_true(c == qc[i] && s == qs[i]);
    }
}

/* kiln_logf_normal is kiln_logf on normal positive floats: every Box-Muller
 * radius k 2^-24, and a sweep of the whole normal range. */
static void test_logf_normal(void **state)
{
    (void)state;
    for (uint32_t k = 1; k <= (1u << 24); k++) {
        float x = (float)k * 0x1p-24f;
        if (kiln_logf_normal(x) != kiln_logf(x))
            fail_msg("kiln_logf_normal(%a) = %a, kiln_logf %a", (double)x,
                     (double)kiln_logf_normal(x), (double)kiln_logf(x));
    }
    for (uint32_t u = 0x00800000u; u < 0x7f800000u; u += 4099) {
        float x = from_bits(u);
        assert_true(to_bits(kiln_logf_normal(x)) == to_bits(kiln_logf(x)));
    }
}

/* kiln_expf_normal is kiln_expf bit for bit on [-80, 80] (tanh's and erf's
 * exponents): every 13th float there, both signs. */
static void test_expf_normal(void **state)
{
    (void)state;
    const uint32_t top = 0x42a00000u; /* 80 */
    for (uint32_t u = 0; u <= top; u += 13) {
        for (int sign = 0; sign < 2; sign++) {
            float x = from_bits(u | (sign ? 0x80000000u : 0));
            if (to_bits(kiln_expf_normal(x)) != to_bits(kiln_expf(x)))
                fail_msg("kiln_expf_normal(%a) = %a, kiln_expf %a", (double)x,
                         (double)kiln_expf_normal(x), (double)kiln_expf(x));
        }
    }
    assert_true(to_bits(kiln_expf_normal(80.0f)) == to_bits(kiln_expf(80.0f)));
    assert_true(to_bits(kiln_expf_normal(-80.0f)) == to_bits(kiln_expf(-80.0f)));
    assert_true(isnan(kiln_expf_normal(NAN)));
}

/* Box-Muller from two words: r = sqrt(-2 log u1), u1 = ((x0 >> 8) + 1) 2^-24,
 * within 2 ulp of the double formula; the extremes of u1. */
static void test_box_mullerf(void **state)
{
    (void)state;
    for (uint32_t i = 0; i < 100000; i++) {
        uint32_t x0 = i * 2654435761u, x1 = i * 40503u + 0x9e3779b9u;
        float z0, z1;
        kiln_box_mullerf(x0, x1, &z0, &z1);
        double u1 = (double)((x0 >> 8) + 1) * 0x1p-24, u2 = (double)(x1 >> 8) * 0x1p-24;
        double r = sqrt(-2 * log(u1));
        double w0 = r * cos(2 * M_PI * u2), w1 = r * sin(2 * M_PI * u2);
        double tol0 = 2 * 0x1p-24 * (fabs(w0) > 1 ? fabs(w0) : 1) + 0x1p-23 * r;
        double tol1 = 2 * 0x1p-24 * (fabs(w1) > 1 ? fabs(w1) : 1) + 0x1p-23 * r;
        if (fabs((double)z0 - w0) > tol0 || fabs((double)z1 - w1) > tol1)
            fail_msg("kiln_box_mullerf(%#x, %#x) = (%a, %a), want (%a, %a)", x0, x1, (double)z0,
                     (double)z1, w0, w1);
    }
    float z0, z1;
    kiln_box_mullerf(0xffffffffu, 0, &z0, &z1); /* u1 = 1: r = 0 */
    assert_true(z0 == 0 && z1 == 0);
    kiln_box_mullerf(0, 0, &z0, &z1); /* u1 = 2^-24: the largest radius */
    assert_true(fabs((double)z0 - sqrt(48 * log(2.0))) < 1e-5 && z1 == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf),          cmocka_unit_test(test_logf),
        cmocka_unit_test(test_tanhf),         cmocka_unit_test(test_erff),
        cmocka_unit_test(test_cossin_turn24), cmocka_unit_test(test_logf_normal),
        cmocka_unit_test(test_box_mullerf),   cmocka_unit_test(test_expf_normal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
