/* test_philox.c - Philox-4x32-10 known answers and Kiln's element functions (ir/philox.c). */
#include "ir/ir.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

#define KILN_FN static inline __attribute__((unused))
#include "ir/vmath.inc"

/* |got - want| within 2 f32 ulp of want (an absolute ulp near 0) */
static bool near_f32(float got, double want)
{
    return fabs((double)got - want) <= 2.0 * 0x1p-24 * (fabs(want) > 1 ? fabs(want) : 1);
}

static void check_kat(const uint32_t ctr[4], const uint32_t key[2], const uint32_t want[4])
{
    uint32_t out[4];
    ir_philox4x32_10(ctr, key, out);
    for (int i = 0; i < 4; i++)
        assert_int_equal(out[i], want[i]);
}

/* Random123's kat_vectors for philox4x32_10. */
static void test_known_answers(void **state)
{
    (void)state;
    check_kat((const uint32_t[]){0, 0, 0, 0}, (const uint32_t[]){0, 0},
              (const uint32_t[]){0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
    check_kat((const uint32_t[]){0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
              (const uint32_t[]){0xffffffff, 0xffffffff},
              (const uint32_t[]){0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
    check_kat((const uint32_t[]){0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
              (const uint32_t[]){0xa4093822, 0x299f31d0},
              (const uint32_t[]){0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

/* The element functions follow the spec at the top of philox.c exactly. */
static void test_element_spec(void **state)
{
    (void)state;
    uint64_t seed = 0x0123456789abcdefull;
    uint32_t key[2] = {0x89abcdef, 0x01234567}, x[4];
    /* rand f32 element 9: block 2, word 1 */
    ir_philox4x32_10((const uint32_t[]){2, 0, 5, 7}, key, x);
    assert_true(ir_rand_f32(seed, 5, 7, 9) == (float)((double)(x[1] >> 8) / 16777216.0));
    /* rand f64 element 5: block 2, words 2 (lo) and 3 (hi) */
    uint64_t w = (uint64_t)x[3] << 32 | x[2];
    assert_true(ir_rand_f64(seed, 5, 7, 5) == (double)(w >> 11) / 9007199254740992.0);
    /* randn f32 elements 8 .. 11: block 2, Box-Muller pairs (x0, x1), (x2, x3)
     * through kiln_box_mullerf bit for bit, within 2 ulp of the exact pairs */
    for (int pair = 0; pair < 2; pair++) {
        uint32_t xa = x[2 * pair], xb = x[2 * pair + 1];
        float z0, z1;
        kiln_box_mullerf(xa, xb, &z0, &z1);
        uint64_t e = 8 + 2 * (uint64_t)pair;
        assert_true(ir_randn_f32(seed, 5, 7, e) == z0);
        assert_true(ir_randn_f32(seed, 5, 7, e + 1) == z1);
        double u1 = (double)((xa >> 8) + 1) / 16777216.0, u2 = (double)(xb >> 8) / 16777216.0;
        double r = sqrt(-2.0 * log(u1));
        assert_true(near_f32(z0, r * cos(6.283185307179586 * u2)));
        assert_true(near_f32(z1, r * sin(6.283185307179586 * u2)));
    }
    double u1, u2;
    /* randn f64 element 5 */
    u1 = (double)((((uint64_t)x[1] << 32 | x[0]) >> 11) + 1) / 9007199254740992.0;
    u2 = (double)(w >> 11) / 9007199254740992.0;
    assert_true(ir_randn_f64(seed, 5, 7, 5) == sqrt(-2.0 * log(u1)) * sin(6.283185307179586 * u2));
    /* the block index's high word is the second counter word */
    uint64_t big = ((uint64_t)3 << 32 | 1) * 4 + 2;
    ir_philox4x32_10((const uint32_t[]){1, 3, 0, 0}, key, x);
    assert_true(ir_rand_f32(seed, 0, 0, big) == (float)((double)(x[2] >> 8) / 16777216.0));
}

/* The sixteen-block fill is the per-element spec for every length and start
 * (mod 4, across lane groups, and across the carry into counter word 1). */
static void test_fill_matches_elements(void **state)
{
    (void)state;
    enum { CAP = 2 * 64 + 9 };
    static const uint64_t firsts[] = {0, 1, 2, 3, 61, 4 * ((1ull << 32) - 5), 4 * (1ull << 32) - 7};
    float out[CAP];
    for (size_t f = 0; f < sizeof firsts / sizeof firsts[0]; f++) {
        for (int64_t n = 0; n <= CAP; n += (n < 20 ? 1 : 13)) {
            memset(out, 0, sizeof out);
            ir_rand_f32_fill(99, 3, 7, firsts[f], out, n);
            for (int64_t i = 0; i < n; i++)
                assert_true(out[i] == ir_rand_f32(99, 3, 7, firsts[f] + (uint64_t)i));
            for (int64_t i = n; i < CAP; i++)
                assert_true(out[i] == 0); /* nothing written past n */
        }
    }
}

static void test_uniform_moments(void **state)
{
    (void)state;
    const int n = 200000;
    double s32 = 0, q32 = 0, s64 = 0, q64 = 0;
    float lo32 = 1, hi32 = 0;
    for (int i = 0; i < n; i++) {
        float a = ir_rand_f32(42, 3, 0, (uint64_t)i);
        double b = ir_rand_f64(42, 3, 0, (uint64_t)i);
        assert_true(a >= 0.0f && a < 1.0f);
        assert_true(b >= 0.0 && b < 1.0);
        lo32 = a < lo32 ? a : lo32;
        hi32 = a > hi32 ? a : hi32;
        s32 += (double)a;
        q32 += (double)a * (double)a;
        s64 += b;
        q64 += b * b;
    }
    double m32 = s32 / n, m64 = s64 / n;
    assert_true(fabs(m32 - 0.5) < 0.005 && fabs(m64 - 0.5) < 0.005);
    assert_true(fabs(q32 / n - m32 * m32 - 1.0 / 12) < 0.002);
    assert_true(fabs(q64 / n - m64 * m64 - 1.0 / 12) < 0.002);
    assert_true(lo32 < 0.001f && hi32 > 0.999f);
}

static void test_normal_moments(void **state)
{
    (void)state;
    const int n = 200000;
    double s32 = 0, q32 = 0, k32 = 0, s64 = 0, q64 = 0, k64 = 0;
    for (int i = 0; i < n; i++) {
        double a = (double)ir_randn_f32(7, 1, 2, (uint64_t)i);
        double b = ir_randn_f64(7, 1, 2, (uint64_t)i);
        assert_true(isfinite(a) && isfinite(b));
        s32 += a;
        q32 += a * a;
        k32 += a * a * a * a;
        s64 += b;
        q64 += b * b;
        k64 += b * b * b * b;
    }
    assert_true(fabs(s32 / n) < 0.01 && fabs(s64 / n) < 0.01);
    assert_true(fabs(q32 / n - 1) < 0.01 && fabs(q64 / n - 1) < 0.01);
    assert_true(fabs(k32 / n - 3) < 0.1 && fabs(k64 / n - 3) < 0.1); /* the normal's kurtosis */
}

/* Seeds, streams and runs each select a different sequence. */
static void test_independent_sequences(void **state)
{
    (void)state;
    float base[16];
    for (int i = 0; i < 16; i++)
        base[i] = ir_rand_f32(1, 0, 0, (uint64_t)i);
    for (int variant = 0; variant < 4; variant++) {
        int same = 0;
        for (int i = 0; i < 16; i++) {
            float v = variant == 0   ? ir_rand_f32(2, 0, 0, (uint64_t)i)
                      : variant == 1 ? ir_rand_f32(1, 1, 0, (uint64_t)i)
                      : variant == 2 ? ir_rand_f32(1, 0, 1, (uint64_t)i)
                                     : ir_rand_f32((uint64_t)1 << 32 | 1, 0, 0, (uint64_t)i);
            same += v == base[i];
        }
        assert_true(same < 2);
    }
    /* IR_RUN_INIT is a run of its own */
    assert_true(ir_randn_f64(1, 0, IR_RUN_INIT, 0) != ir_randn_f64(1, 0, 0, 0));
    /* and the functions are pure: randn f32 element 99 of seed 9, stream 9,
     * run 9 is the spec's value every time, whatever is drawn between. From
     * the spec: block 24 (counter {24, 0, stream, run}, key {seed lo, hi}),
     * its second Box-Muller pair (x2, x3), the sine (an odd element). */
    uint32_t x[4];
    ir_philox4x32_10((const uint32_t[]){24, 0, 9, 9}, (const uint32_t[]){9, 0}, x);
    double u1 = (double)((x[2] >> 8) + 1) / 16777216.0, u2 = (double)(x[3] >> 8) / 16777216.0;
    double want = sqrt(-2.0 * log(u1)) * sin(6.283185307179586 * u2);
    for (int rep = 0; rep < 3; rep++) {
        assert_true(near_f32(ir_randn_f32(9, 9, 9, 99), want));
        (void)ir_randn_f32(9, 9, 9, (uint64_t)rep);
        (void)ir_rand_f32(9, 9, 9, 99);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),         cmocka_unit_test(test_element_spec),
        cmocka_unit_test(test_uniform_moments),       cmocka_unit_test(test_normal_moments),
        cmocka_unit_test(test_independent_sequences), cmocka_unit_test(test_fill_matches_elements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
