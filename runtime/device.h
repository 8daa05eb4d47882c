/*
 * device.h - the device interface of the device executor (dexec.c): what a
 * machine that holds its own memory and runs kernels must offer.
 *
 * Two devices implement it: the CUDA GPU (cudev.c, driver calls and nothing
 * else) and the C device (cdev.c: the C target's kernels, compiled with one
 * exported launch function each, run one launch at a time over memory kept
 * apart from the module's host buffers). The executor, and so everything a
 * module does with device memory, is the same code for both: the CPU suite
 * tests it through the C device (KILN_EXECUTOR=launch).
 *
 * Calls are ordered as made (one stream). Copies and launches may run
 * asynchronously; download and finish wait. Any failure leaves the reason in
 * d->error and returns KILN_ERR_DEVICE (KILN_ERR_NOMEM for a failed alloc).
 */
#ifndef KILN_DEVICE_H
#define KILN_DEVICE_H

#include "ir/ir.h"
#include "ir/kernel.h"

#include <stdint.h>

typedef uint64_t rt_dptr; /* a device address; 0 is none */

/* The first run-time error of a run (ir/abi.h's KILN_RUNERR_* and details). */
typedef struct {
    int32_t code, kernel, axis;
    int64_t index, size;
} rt_runerr;

typedef struct rt_device rt_device;
typedef struct {
    const char *name; /* "c", "cuda" */
    void (*destroy)(rt_device *d);
    kiln_status (*alloc)(rt_device *d, size_t n, rt_dptr *p); /* zeroed */
    void (*free)(rt_device *d, rt_dptr p);
    kiln_status (*upload)(rt_device *d, rt_dptr dst, const void *src, size_t n);
    kiln_status (*download)(rt_device *d, void *dst, rt_dptr src, size_t n); /* waits */
    kiln_status (*copy)(rt_device *d, rt_dptr dst, rt_dptr src, size_t n);
    /* A run: begin (the Philox key and counter; the error record cleared),
     * kernels launched in order with the program's buffer table (a kernel
     * after a failed one does nothing), then finish: waits, and *err is the
     * run's first error (code 0: none). */
    kiln_status (*begin)(rt_device *d, uint64_t seed, uint32_t run);
    kiln_status (*launch)(rt_device *d, int kernel, const rt_dptr *table);
    kiln_status (*finish)(rt_device *d, rt_runerr *err);
    /* Per kernel id: launches and nanoseconds of device time measured so far
     * (zero where the device does not time its kernels). */
    void (*kernel_time)(rt_device *d, int kernel, uint64_t *calls, uint64_t *ns);
} rt_device_ops;

struct rt_device {
    const rt_device_ops *ops;
    char error[1024];
};

/* Records why the device failed (d->error) and returns s. */
kiln_status rt_device_fail(rt_device *d, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The C device over a shared object of the C target's source rendered with
 * cgen_opts.launch (taken over; dlclose'd on destroy), for program p (which
 * must outlive the device). NULL with the reason in why. */
rt_device *rt_cdev_new(void *handle, const kprogram *p, int threads, char *why, size_t cap);

/* Compiled images of a program's CUDA source (a CUDA export's, ir/abi.h):
 * cubins for some architectures and the PTX of one. */
typedef struct {
    int n;
    const int32_t *archs; /* major * 10 + minor */
    const unsigned char *const *cubins;
    const unsigned char *ptx; /* NUL-terminated */
} rt_cuda_images;

/* Of images, the one a device of compute capability cc loads: a cubin of the
 * same major version and the highest minor not above cc's, else the PTX. */
const unsigned char *rt_cuda_pick_image(const rt_cuda_images *images, int cc);

/* The CUDA device (the current process's first GPU): loads images (an
 * export's) or else compiles source for the device's own architecture with
 * NVRTC (or finds the cubin in the compile cache dir; *hit), and finds p's
 * kernels. NULL with the reason in why and *status (KILN_ERR_DEVICE: no GPU;
 * KILN_ERR_COMPILE: NVRTC failed). */
rt_device *rt_cudev_new(const kprogram *p, const char *source, const rt_cuda_images *images,
                        const char *cache_dir, bool *hit, kiln_status *status, char *why,
                        size_t cap);

/* A MATMUL kernel as one column-major strided-batched GEMM (cuBLAS's
 * [SD]gemmStridedBatched): row-major C = A B per batch is, column-major,
 * C^T = B^T A^T, so x = B^T (n x k) and y = A^T (k x m), written to a
 * contiguous m x n product per batch (ldc = n). op: 0 = N, 1 = T. */
typedef struct {
    bool f64; /* the operands' dtype: DGEMM, else SGEMM (f32 sums, also where the
                 kernel's own loop sums f32 operands in f64) */
    int opx, opy, ldx, ldy, m, n, k, batch;
    long long sx, sy; /* elements between batches of x and y (0: broadcast) */
} rt_gemm_plan;
enum { RT_GEMM_N = 0, RT_GEMM_T = 1 };
/* Whether kernel k of p maps to such a GEMM (float, both operands f32 or f64,
 * each with a contiguous row or column, sizes within int), and how. */
bool rt_gemm_plan_of(const kprogram *p, const kernel *k, rt_gemm_plan *g);

/* A MATMUL kernel whose whole epilogue cuBLASLt does in the GEMM: an f32 GEMM
 * whose one store writes the product, plus bias[column] where bias >= 0, into
 * out, a contiguous [batch, m, n] f32 range starting at element out_at (bias:
 * at element bias_at; both multiples of 4, so every pointer is 16-byte
 * aligned). Not ReLU: cuBLASLt's is max(x, 0), which need not keep a NaN as
 * PyTorch's (and Kiln's) relu does; not GELU: cuBLASLt's is the tanh
 * approximation, Kiln's (as nn.GELU's default) the erf form. */
typedef struct {
    int out, bias;
    int64_t out_at, bias_at;
} rt_gemm_epi;
bool rt_gemm_epilogue_of(const kprogram *p, const kernel *k, rt_gemm_epi *e);

/* cublasLt.h's and library_types.h's values (tests/unit/test_cuda_driver.c
 * checks them against the headers where the toolkit is installed) */
enum {
    RT_LT_COMPUTE_32F = 68,
    RT_LT_COMPUTE_32F_FAST_TF32 = 77,
    RT_LT_R_32F = 0,
    RT_LT_DESC_TRANSA = 3,
    RT_LT_DESC_TRANSB = 4,
    RT_LT_DESC_EPILOGUE = 7,
    RT_LT_DESC_BIAS_POINTER = 8,
    RT_LT_DESC_BIAS_BATCH_STRIDE = 10,
    RT_LT_LAYOUT_BATCH_COUNT = 5,
    RT_LT_LAYOUT_STRIDED_BATCH_OFFSET = 6,
    RT_LT_PREF_MAX_WORKSPACE_BYTES = 1,
    RT_LT_PREF_MIN_ALIGNMENT_A_BYTES = 5, /* B, C, D: the next three */
    RT_LT_EPILOGUE_DEFAULT = 1,
    RT_LT_EPILOGUE_BIAS = 4,
    RT_LT_WORKSPACE = 32 << 20, /* what the heuristics may ask for, allocated once */
};

#endif /* KILN_DEVICE_H */
