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

/* Threads per block the kernels are written for (a multiple of the warp). */
#define KILN_CUDA_BLOCK 256

#endif /* KILN_CUDA_H */
