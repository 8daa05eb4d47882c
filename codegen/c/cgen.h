/*
 * cgen.h - the C renderer: a kernel-IR program as one C99 translation unit.
 *
 * The source defines, per kernel, `static int k<id>_<ops>(kiln_ctx *ctx, ...)`
 * (typed restrict pointers for the buffers it touches), per entry i
 * `int kiln_entry_<i>(kiln_ctx *ctx)` (ir/abi.h), and `kiln_abi`.
 * Nothing but kernel names matches k[0-9]+_ in it.
 */
#ifndef KILN_CGEN_H
#define KILN_CGEN_H

#include "codegen/c/expr.h"
#include "ir/kernel.h"

/* CPU features of the machine the source will be compiled for (-march=native). */
enum { CGEN_AVX512F = 1 << 0 };

/* The schedule of a packed f32 GEMM (render_gemm.c): the microkernel's
 * register block, MR rows x NR columns of f32 accumulators in VL-wide vectors
 * (NR a multiple of VL), and the cache blocks: MB x NB tiles of the
 * accumulator, k in blocks of KB (B's KB x NR micro-panel stays in L1). */
typedef struct {
    int mr, nr, vl;
    int64_t mb, nb, kb;
} cgen_gemm_sched;

/* A machine as the schedule model sees it: CGEN_* features, the data caches
 * of one core (bytes; 0 = unknown) and how many vector FMAs it keeps in
 * flight (latency x units, measured: 4 on one 4-cycle unit, 8 on two; 0 =
 * unknown). */
typedef struct {
    unsigned features;
    int64_t l1d, l2;
    int fma_inflight;
    int64_t llc; /* the last-level cache as the OS reports it (a server's: the socket's) */
} cgen_host;

/* The host model (BLIS's analytical model, Low et al. 2016, with the block
 * sizes measured here): a register block that fills the vector registers
 * without spilling and keeps the FMA units busy (AVX-512: 8 x 32 with two
 * units, 6 x 32 with one, of 32 registers; AVX2: 4 x 24 of 16),
 * KB so that B's micro-panel takes 3/4 of L1, NB so that B's packed KB x NB
 * block takes at most a quarter of L2, MB 256. */
cgen_gemm_sched cgen_gemm_model(const cgen_host *h);
/* Whether s is a schedule the renderer can emit for these features: MR 1..16,
 * VL the features' vector width, NR VL..64 a multiple of it, MR * NR / VL
 * accumulators leaving room for B's vectors and A's broadcast (32 registers
 * with AVX-512, 16 without), blocks 16..4096 and KB at most 512 (the f32
 * partial sums' error grows with it), the f64 tile (MB x NB) and the packed
 * B (KB x NB) at most 1 MiB each: they live on the thread's stack. */
bool cgen_gemm_sched_ok(const cgen_gemm_sched *s, unsigned features);
/* Chooses kernel k's schedule into *s (a packed GEMM); false: the default
 * (cgen_opts.gemm). */
typedef bool (*cgen_gemm_pick)(void *ctx, const kprogram *p, const kernel *k, cgen_gemm_sched *s);

typedef struct {
    bool openmp;          /* emit `#pragma omp` (parallel outer loops, simd reductions) */
    bool debug_comments;  /* a comment after each local naming its kernel-IR node */
    unsigned features;    /* CGEN_* bits: what the GEMM microkernel may assume */
    bool launch;          /* also `int kiln_kernel_<id>(kiln_ctx *)` per kernel, which the
                             device executor's C device launches one at a time */
    cgen_gemm_sched gemm; /* packed GEMMs' schedule; zero: cgen_gemm_model of the features */
    cgen_gemm_pick pick;  /* NULL, or a kernel's own schedule (runtime/tune.c) */
    void *pick_ctx;
    int64_t stream_min; /* a pointwise kernel storing at least this many bytes of f32 rows
                           stores them around the caches (non-temporal); 0: never */
    int vector_width;   /* the bits the compiler's loop vectorizer is told to prefer
                           (-mprefer-vector-width, runtime/cc.c): 256 or 512; 0: its own
                           choice. Only the source's header comment says it here */
} cgen_opts;

/* The model's stream_min for a host: outputs larger than the last-level cache
 * one core can use are streamed (the OS's LLC, at least 32 MiB and at most
 * 128 MiB: a server reports its whole socket's, spread over slices no core
 * sees whole). */
int64_t cgen_stream_min(const cgen_host *h);

/* The model's vector_width for a host: 512 where AVX-512 runs two FMA units
 * (the probe), else 0, the compiler's own choice. clang -march=native prefers
 * 256-bit vectors on Intel's AVX-512 cores (their clock drops under 512-bit
 * work); on a 2-core EPYC with two 512-bit units 512-bit vectors ran a
 * tanh(exp(-x) * 2 + 1) * x chain 1.9x and exp(x * 0.5 + 1) * x - 2 1.4x
 * faster than 256-bit ones. Tuning (runtime/tune.c) times the program both
 * ways. */
int cgen_vector_width(const cgen_host *h);

/* Whether kernel k is a packed f32 GEMM (the one a schedule applies to). */
bool cgen_gemm_packed(const kprogram *p, const kernel *k);

/* The CGEN_* features of this machine, for a source compiled here. */
unsigned cgen_host_features(void);

/* Renders the whole program as one C translation unit. Returns a NUL-terminated
 * string allocated with ir_alloc (caller ir_free's), or NULL when out of memory
 * (or p is NULL). o may be NULL: all options off. */
char *cgen_c(const kprogram *p, const cgen_opts *o);

/* The comment heading kernel k in both renderers: its name, domain and
 * accumulator, then every graph node it computes with dtype, shape and operands. */
void cgen_kernel_comment(cgen_buf *b, const kprogram *p, const kernel *k);
/* Shared with the CUDA renderer: the body of one (batch i0, row i1) of an
 * ATTENTION kernel of sdpa's backward (render_attn.c), at indentation ind:
 * `double o[cols]` holds the row's values after it. */
void cgen_attention_backward_row(cgen_buf *b, const kprogram *p, const kernel *k, int ind,
                                 bool cuda);
/* With a mask (at->mask >= 0): "if (!mask[row, key]) skip" at indentation ind
 * (batch i0; query row `row` does not attend to key `key`), skip a statement;
 * without one, nothing. */
void cgen_attention_mask_skip(cgen_buf *b, const kprogram *p, const kk_attention *at, int ind,
                              const char *row, const char *key, const char *skip, bool cuda);

#endif /* KILN_CGEN_H */
