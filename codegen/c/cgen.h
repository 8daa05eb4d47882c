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

typedef struct {
    bool openmp;         /* emit `#pragma omp` (parallel outer loops, simd reductions) */
    bool debug_comments; /* a comment after each local naming its kernel-IR node */
    unsigned features;   /* CGEN_* bits: what the GEMM microkernel may assume */
    bool launch;         /* also `int kiln_kernel_<id>(kiln_ctx *)` per kernel, which the
                            device executor's C device launches one at a time */
} cgen_opts;

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
