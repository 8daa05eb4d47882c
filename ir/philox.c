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
 *   randn:     block = i / 2 (one Box-Muller pair per block)
 *              f32: u1 = ((x0 >> 8) + 1) * 2^-24                           in (0, 1]
 *                   u2 = (x1 >> 8) * 2^-24                                 in [0, 1)
 *              f64: u1 = ((((x1 << 32) | x0) >> 11) + 1) * 2^-53           in (0, 1]
 *                   u2 = (((x3 << 32) | x2) >> 11) * 2^-53                 in [0, 1)
 *              r = sqrt(-2 ln u1); z = (i even) ? r cos(2 pi u2) : r sin(2 pi u2)
 *              with every step in double (2 pi = the double 6.283185307179586),
 *              rounded once to the dtype.
 * The uniform values are exact in both dtypes; randn depends on libm's log,
 * sqrt, cos and sin in double, which agree with CUDA's to well under an f32
 * ulp (an f32 result may differ only when the double lies within a double
 * ulp of an f32 rounding boundary).
 */
#include "ir.h"

#include <math.h>

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

static uint64_t join(uint32_t lo, uint32_t hi)
{
    return (uint64_t)hi << 32 | lo;
}

float ir_rand_f32(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)
{
    uint32_t x[4];
    block(seed, stream, run, i / 4, x);
    return (float)((double)(x[i % 4] >> 8) * TWO_M24);
}

void ir_rand_f32_fill(uint64_t seed, uint32_t stream, uint32_t run, float *out, int64_t n)
{
    /* elements 0..n-1, one Philox block per four of them */
    for (int64_t b = 0; b * 4 < n; b++) {
        uint32_t x[4];
        block(seed, stream, run, (uint64_t)b, x);
        for (int w = 0; w < 4 && b * 4 + w < n; w++)
            out[b * 4 + w] = (float)((double)(x[w] >> 8) * TWO_M24);
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
    block(seed, stream, run, i / 2, x);
    double u1 = (double)((x[0] >> 8) + 1) * TWO_M24;
    double u2 = (double)(x[1] >> 8) * TWO_M24;
    return (float)box_muller(u1, u2, i);
}

double ir_randn_f64(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)
{
    uint32_t x[4];
    block(seed, stream, run, i / 2, x);
    double u1 = (double)((join(x[0], x[1]) >> 11) + 1) * TWO_M53;
    double u2 = (double)(join(x[2], x[3]) >> 11) * TWO_M53;
    return box_muller(u1, u2, i);
}
