/*
 * philox.c - Philox-4x32-10 and the element functions of Kiln's random ops.
 *
 * This comment is the spec: the interpreter, the C backend and the CUDA
 * backend must all produce these values bit for bit.
 *
 * Generator: Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy
 * as 1, 2, 3", SC'11; Random123's philox4x32_10). One round maps counter
 * c[0..3] and key k[0..1] to
 *     (hi0, lo0) = mulhilo32(0xD2511F53, c[0])
 *     (hi1, lo1) = mulhilo32(0xCD9E8D57, c[2])
 *     c' = { hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0 }
 * Ten rounds; between rounds the key advances by the Weyl constants
 * k[0] += 0x9E3779B9, k[1] += 0xBB67AE85 (so round r uses k + r * W).
 *
 * Kiln's use of it, for value i (row-major flat index) of a random tensor:
 *     key     = { seed & 0xffffffff, seed >> 32 }           (the graph seed)
 *     counter = { block & 0xffffffff, block >> 32, stream, run }
 * stream is the node's (or param's) stream id; run is the module's run
 * counter (0 for the first kiln_module_run, then 1, 2, ...) or IR_RUN_INIT
 * (0xffffffff) for parameter initialisation. x = philox(counter, key).
 *
 *   rand f32:  block = i / 4, w = x[i % 4],  u = (w >> 8) * 2^-24         in [0, 1)
 *   rand f64:  block = i / 2, lo = x[2*(i%2)], hi = x[2*(i%2)+1],
 *              u = (((hi << 32) | lo) >> 11) * 2^-53                     in [0, 1)
 *   randn f32: block = i / 4: words (x0, x1) make elements 4 block and
 *              4 block + 1, words (x2, x3) elements 4 block + 2 and 4 block + 3,
 *              by kiln_box_mullerf (ir/vmath.inc) in f32: u1 = ((xa >> 8) + 1)
 *              * 2^-24 in (0, 1], r = sqrtf(-2 kiln_logf(u1)), (c, s) =
 *              kiln_cossin_turn24(xb >> 8), the cos and sin of 2 pi (xb >> 8)
 *              2^-24; the even element is r c, the odd one r s. Every backend
 *              runs that same code, whose results do not depend on FP
 *              contraction: the values agree bit for bit.
 *   randn f64: block = i / 2 (one Box-Muller pair per block)
 *              u1 = ((((x1 << 32) | x0) >> 11) + 1) * 2^-53           in (0, 1]
 *              u2 = (((x3 << 32) | x2) >> 11) * 2^-53                 in [0, 1)
 *              r = sqrt(-2 ln u1); z = (i even) ? r cos(2 pi u2) : r sin(2 pi u2)
 *              in double (2 pi = the double 6.283185307179586), with libm's
 *              log, sqrt, cos and sin, which agree with CUDA's to about a
 *              double ulp.
 * The uniform values are exact in both dtypes.
 */
#include "ir.h"

#include <math.h>
#include <string.h>

#define KILN_FN static inline __attribute__((unused))
#include "ir/vmath.inc"
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define KILN_PHILOX_AVX512 1
#endif

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static void philox_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

void ir_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
    uint32_t k[2] = {key[0], key[1]};
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += PHILOX_W0;
            k[1] += PHILOX_W1;
        }
        philox_round(c, k);
    }
    for (int i = 0; i < 4; i++)
        out[i] = c[i];
}

static void block(uint64_t seed, uint32_t stream, uint32_t run, uint64_t b, uint32_t x[4])
{
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    const uint32_t ctr[4] = {(uint32_t)b, (uint32_t)(b >> 32), stream, run};
    ir_philox4x32_10(ctr, key, x);
}

#define TWO_M24 (1.0 / 16777216.0)         /* 2^-24 */
#define TWO_M53 (1.0 / 9007199254740992.0) /* 2^-53 */
#define TWO_PI  6.283185307179586

/* The uniform f32 of a Philox word: exact, (w >> 8) * 2^-24. */
static float word_f32(uint32_t w)
{
    return (float)(w >> 8) * (float)TWO_M24;
}

static uint64_t join(uint32_t lo, uint32_t hi)
{
    return (uint64_t)hi << 32 | lo;
}

float ir_rand_f32(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)
{
    uint32_t x[4];
    block(seed, stream, run, i / 4, x);
    return word_f32(x[i % 4]);
}

/* ---- ir_rand_f32_fill: 16 blocks at a time -------------------------------------
 *
 * Parameter initialisation draws millions of values (a 784-1024-1024-10 MLP:
 * 1.9 M), so the fill runs sixteen Philox blocks side by side in
 * structure-of-arrays form: lane j holds block b0 + j. With AVX-512 each round
 * is two even/odd pairs of 32x32->64 multiplies (vpmuludq) and a few blends;
 * otherwise the same lanes run as plain C. Both give the values of the spec
 * above; test_philox checks the fill against ir_rand_f32 element by element. */

enum { LANES = 16, GROUP = 4 * LANES };

/* f[4 * j + w] = word_f32(word w of block b0 + j): elements 4 * b0 onwards. */
static void group_c(uint64_t seed, uint32_t stream, uint32_t run, uint64_t b0, float f[GROUP])
{
    for (int j = 0; j < LANES; j++) {
        uint32_t w[4];
        block(seed, stream, run, b0 + (uint64_t)j, w);
        for (int i = 0; i < 4; i++)
            f[4 * j + i] = word_f32(w[i]);
    }
}

#ifdef KILN_PHILOX_AVX512
#define AVX512 __attribute__((target("avx512f")))

/* (hi, lo) of m * c for 16 lanes: even lanes from one vpmuludq, odd lanes
 * from another on the lanes shifted down; blends put them back in place. */
AVX512 static inline void mulhilo16(__m512i m, __m512i c, __m512i *hi, __m512i *lo)
{
    __m512i even = _mm512_mul_epu32(m, c);
    __m512i odd = _mm512_mul_epu32(m, _mm512_srli_epi64(c, 32));
    *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    *lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

AVX512 static inline __m512 words_f32(__m512i w)
{
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w, 8)),
                         _mm512_set1_ps((float)TWO_M24));
}

/* group_c with lane j of the vectors holding block b0 + j. */
AVX512 static void group_avx512(uint64_t seed, uint32_t stream, uint32_t run, uint64_t b0,
                                float f[GROUP])
{
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i base_lo = _mm512_set1_epi32((int)(uint32_t)b0);
    const __m512i base_hi = _mm512_set1_epi32((int)(uint32_t)(b0 >> 32));
    __m512i c0 = _mm512_add_epi32(base_lo, lane);
    /* a carry out of the low counter word bumps the high one (unsigned compare) */
    __mmask16 carry = _mm512_cmplt_epu32_mask(c0, base_lo);
    __m512i c1 = _mm512_mask_add_epi32(base_hi, carry, base_hi, _mm512_set1_epi32(1));
    __m512i c2 = _mm512_set1_epi32((int)stream), c3 = _mm512_set1_epi32((int)run);
    const __m512i m0 = _mm512_set1_epi32((int)PHILOX_M0), m1 = _mm512_set1_epi32((int)PHILOX_M1);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        __m512i hi0, lo0, hi1, lo1;
        mulhilo16(m0, c0, &hi0, &lo0);
        mulhilo16(m1, c2, &hi1, &lo1);
        c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32((int)k0));
        c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32((int)k1));
        c1 = lo1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    /* 4 x 16 transpose: word vectors -> element order (block j's words at 4j) */
    __m512 f0 = words_f32(c0), f1 = words_f32(c1), f2 = words_f32(c2), f3 = words_f32(c3);
    __m512 t0 = _mm512_unpacklo_ps(f0, f1), t1 = _mm512_unpackhi_ps(f0, f1);
    __m512 t2 = _mm512_unpacklo_ps(f2, f3), t3 = _mm512_unpackhi_ps(f2, f3);
    /* u_q's 128-bit lane l holds block 4l + q */
    __m512 u0 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    __m512 u1 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    __m512 u2 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
    __m512 u3 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
    __m512 v0 = _mm512_shuffle_f32x4(u0, u1, 0x44), v1 = _mm512_shuffle_f32x4(u2, u3, 0x44);
    __m512 w0 = _mm512_shuffle_f32x4(u0, u1, 0xEE), w1 = _mm512_shuffle_f32x4(u2, u3, 0xEE);
    _mm512_storeu_ps(f, _mm512_shuffle_f32x4(v0, v1, 0x88));
    _mm512_storeu_ps(f + 16, _mm512_shuffle_f32x4(v0, v1, 0xDD));
    _mm512_storeu_ps(f + 32, _mm512_shuffle_f32x4(w0, w1, 0x88));
    _mm512_storeu_ps(f + 48, _mm512_shuffle_f32x4(w0, w1, 0xDD));
}
#endif

void ir_rand_f32_fill(uint64_t seed, uint32_t stream, uint32_t run, uint64_t first, float *out,
                      int64_t n)
{
    void (*group)(uint64_t, uint32_t, uint32_t, uint64_t, float *) = group_c;
#ifdef KILN_PHILOX_AVX512
    if (__builtin_cpu_supports("avx512f"))
        group = group_avx512;
#endif
    /* element `first` is word `skip` of block first / 4 */
    int64_t skip = (int64_t)(first % 4), done = 0;
    for (uint64_t b0 = first / 4; done < n; b0 += LANES) {
        int64_t take = n - done + skip < GROUP ? n - done : GROUP - skip;
        if (skip == 0 && take == GROUP) { /* a whole group: straight into out */
            group(seed, stream, run, b0, out + done);
        } else {
            float f[GROUP];
            group(seed, stream, run, b0, f);
            memcpy(out + done, f + skip, sizeof(float) * (size_t)take);
        }
        done += take;
        skip = 0;
    }
}

double ir_rand_f64(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)
{
    uint32_t x[4];
    block(seed, stream, run, i / 2, x);
    unsigned w = (unsigned)(i % 2) * 2;
    return (double)(join(x[w], x[w + 1]) >> 11) * TWO_M53;
}

static double box_muller(double u1, double u2, uint64_t i)
{
    double r = sqrt(-2.0 * log(u1));
    return (i % 2 == 0) ? r * cos(TWO_PI * u2) : r * sin(TWO_PI * u2);
}

float ir_randn_f32(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)
{
    uint32_t x[4];
    block(seed, stream, run, i / 4, x);
    unsigned w = (unsigned)(i % 4) & 2u;
    float z[2];
    kiln_box_mullerf(x[w], x[w + 1], &z[0], &z[1]);
    return z[i % 2];
}

double ir_randn_f64(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)
{
    uint32_t x[4];
    block(seed, stream, run, i / 2, x);
    double u1 = (double)((join(x[0], x[1]) >> 11) + 1) * TWO_M53;
    double u2 = (double)(join(x[2], x[3]) >> 11) * TWO_M53;
    return box_muller(u1, u2, i);
}
