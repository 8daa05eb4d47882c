/*
 * schedule.c - the packed GEMM's schedule for a host: the model used when
 * nothing was tuned, and the bounds every schedule (tuned, cached or read
 * back) must keep.
 *
 * The model follows BLIS's analytical one (Low et al., "Analytical modeling
 * is enough for high-performance BLIS", 2016): the register block fills the
 * vector registers (MR x NR / VL accumulators, NR / VL vectors of B and A's
 * broadcast; with two FMA units 16 accumulators, 8 x 32, measured faster
 * than 12 on a 2-core Zen 5 (SGEMM 512..2048, the MLP's shapes)); B's
 * KB x NR micro-panel fills most of L1 (3/4: A's panel and the accumulators'
 * spills share the rest); B's packed KB x NB block stays in L2. MB 256 and
 * the 3/4 were measured on a 2-core Zen 4 (SGEMM 512..4096 and the MLP).
 * Pointwise kernels whose f32 output is larger than the last-level cache
 * store it non-temporally (cgen_stream_min): measured 1.3x on a 400 MB
 * x * 2 + 1 on the same host.
 */
#include "codegen/c/cgen.h"

enum {
    SCHED_MB = 256,                /* rows of a tile */
    SCHED_KB_MIN = 64,             /* KB's range, in steps of 16 */
    SCHED_KB_MAX = 512,            /*   */
    SCHED_TILE_MAX = 128 << 10,    /* MB x NB doubles: the f64 tile on the thread's stack */
    SCHED_BPANEL_MAX = 256 << 10,  /* KB x NB floats of packed B, on the stack */
    SCHED_L1_DEFAULT = 32 << 10,   /* when the host does not say */
    SCHED_L2_DEFAULT = 1024 << 10, /*   */
};

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

cgen_gemm_sched cgen_gemm_model(const cgen_host *h)
{
    bool wide = h->features & CGEN_AVX512F;
    bool two = h->fma_inflight >= 6; /* two FMA units (4-cycle latency: 8 in flight) */
    cgen_gemm_sched s = {
        wide ? (two ? 8 : 6) : 4, wide ? 32 : 24, wide ? 16 : 8, SCHED_MB, 256, 192};
    int64_t l1 = h->l1d > 0 ? h->l1d : SCHED_L1_DEFAULT;
    int64_t l2 = h->l2 > 0 ? h->l2 : SCHED_L2_DEFAULT;
    s.kb = clamp(l1 * 3 / 4 / (s.nr * 4) / 16 * 16, SCHED_KB_MIN, SCHED_KB_MAX);
    int64_t nb = l2 / 4 / (s.kb * 4) / s.nr * s.nr; /* a quarter of L2, whole micro-panels */
    s.nb = clamp(nb, (128 + s.nr - 1) / s.nr * s.nr, SCHED_TILE_MAX / s.mb);
    while (s.kb * s.nb > SCHED_BPANEL_MAX)
        s.nb -= s.nr;
    return s;
}

bool cgen_gemm_sched_ok(const cgen_gemm_sched *s, unsigned features)
{
    int vl = (features & CGEN_AVX512F) ? 16 : 8, regs = (features & CGEN_AVX512F) ? 32 : 16;
    if (s->vl != vl || s->mr < 1 || s->mr > 16 || s->nr < vl || s->nr > 64 || s->nr % vl)
        return false;
    if (s->mr * (s->nr / vl) + s->nr / vl + 1 > regs)
        return false;
    if (s->mb < 16 || s->mb > 4096 || s->nb < 16 || s->nb > 4096 || s->kb < 16 ||
        s->kb > SCHED_KB_MAX) /* the f32 partial sums' error grows with KB (test_cgen's bound) */
        return false;
    return s->mb * s->nb <= SCHED_TILE_MAX && s->kb * s->nb <= SCHED_BPANEL_MAX;
}

int cgen_vector_width(const cgen_host *h)
{
    return (h->features & CGEN_AVX512F) && h->fma_inflight >= 6 ? 512 : 0;
}

int64_t cgen_stream_min(const cgen_host *h)
{
    const int64_t lo = (int64_t)32 << 20, hi = (int64_t)128 << 20;
    return h->llc <= 0 ? hi : clamp(h->llc, lo, hi);
}
