/*
 * cuda.h - the CUDA renderer (render_cuda.c) and NVRTC (runtime/nvrtc.c).
 */
#ifndef KILN_CUDA_H
#define KILN_CUDA_H

#include "ir/kernel.h"

/* Renders the program's kernels as one CUDA C source for NVRTC: one
 * `extern "C" __global__ void k<id>_<ops>(kiln_ctx *ctx, buffers...)` per
 * kernel. Returns an ir_alloc'd string, or NULL when out of memory. */
char *cgen_cuda(const kprogram *p);

/* How the executor launches kernel k of p: its buffer arguments after the
 * context (program buffer ids, in order, into args: room for p->nbufs) and
 * the number of threads its loops are written for (the grid may hold fewer:
 * they stride), 0 for an empty domain; -1 when out of memory. epi: the
 * kernel's epilogue `<name>_epi` instead (a float MATMUL of a non-empty
 * domain has one: the stores of the fused kernel over a product a library
 * GEMM wrote; its last argument, after these, is that product). */
int64_t cgen_cuda_launch(const kprogram *p, const kernel *k, bool epi, int *args, int *nargs);

/* Threads per block the kernels are written for (a multiple of the warp). */
#define KILN_CUDA_BLOCK 256

#endif /* KILN_CUDA_H */
