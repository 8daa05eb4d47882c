/*
 * shim.h - just enough of CUDA for Kiln's generated kernels to compile as
 * C++ on the CPU (tests/unit/test_cuda_emu.c): a kernel runs as one block of
 * KEMU_THREADS POSIX threads that the test starts, __syncthreads and the warp
 * shuffles go through barriers the test provides (kemu_bind), shared memory is
 * a function's static storage (one block runs at a time). No standard header
 * that defines the fixed-width types is included: the kernels' own prelude
 * defines them as NVRTC sees them, and libm is declared here.
 */
#include <string.h>

/* libm, declared here: <math.h> would bring glibc's int64_t (long), which the
 * kernels' prelude defines as NVRTC does (long long) */
extern "C" {
double exp(double);
float expf(float);
double log(double);
float logf(float);
double log1p(double);
float log1pf(float);
double expm1(double);
float expm1f(float);
double exp2(double);
float exp2f(float);
double log2(double);
float log2f(float);
double log10(double);
float log10f(float);
double sqrt(double);
float sqrtf(float);
double cbrt(double);
float cbrtf(float);
double sin(double);
float sinf(float);
double cos(double);
float cosf(float);
double tan(double);
float tanf(float);
double asin(double);
float asinf(float);
double acos(double);
float acosf(float);
double atan(double);
float atanf(float);
double sinh(double);
float sinhf(float);
double cosh(double);
float coshf(float);
double tanh(double);
float tanhf(float);
double asinh(double);
float asinhf(float);
double acosh(double);
float acoshf(float);
double atanh(double);
float atanhf(float);
double erf(double);
float erff(float);
double erfc(double);
float erfcf(float);
double lgamma(double);
float lgammaf(float);
double tgamma(double);
float tgammaf(float);
double fabs(double);
float fabsf(float);
double floor(double);
float floorf(float);
double ceil(double);
float ceilf(float);
double round(double);
float roundf(float);
double trunc(double);
float truncf(float);
double rint(double);
float rintf(float);
double nearbyint(double);
float nearbyintf(float);
double pow(double, double);
float powf(float, float);
double fmod(double, double);
float fmodf(float, float);
double atan2(double, double);
float atan2f(float, float);
double fmax(double, double);
float fmaxf(float, float);
double fmin(double, double);
float fminf(float, float);
double copysign(double, double);
float copysignf(float, float);
double hypot(double, double);
float hypotf(float, float);
double remainder(double, double);
float remainderf(float, float);
double fdim(double, double);
float fdimf(float, float);
double fma(double, double, double);
float fmaf(float, float, float);
}
template <class T> static inline bool isnan(T x)
{
    return __builtin_isnan(x);
}
template <class T> static inline bool isinf(T x)
{
    return __builtin_isinf(x);
}
template <class T> static inline bool isfinite(T x)
{
    return __builtin_isfinite(x);
}
template <class T> static inline bool signbit(T x)
{
    return __builtin_signbit(x);
}

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

struct kemu_dim3 {
    unsigned x, y, z;
};

/* What the test provides: a barrier over the block, and one warp's exchange
 * (every lane of thread tid's warp passes v; the call returns lane src's). */
struct kemu_hooks {
    void (*sync)(void);
    unsigned long long (*shfl)(unsigned tid, unsigned long long v, int src);
};

static const kemu_hooks *kemu;
extern "C" __thread kemu_dim3 threadIdx;
__thread kemu_dim3 threadIdx;
static const kemu_dim3 blockIdx = {0, 0, 0}, gridDim = {1, 1, 1}, blockDim = {256, 1, 1};

extern "C" void kemu_bind(const kemu_hooks *h)
{
    kemu = h;
}

static inline void __syncthreads(void)
{
    kemu->sync();
}

template <class T> static T kemu_shfl(T v, int src)
{
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = kemu->shfl(threadIdx.x, bits, src);
    T r;
    memcpy(&r, &bits, sizeof r);
    return r;
}
template <class T> static T __shfl_sync(unsigned, T v, int src)
{
    return kemu_shfl(v, src);
}
template <class T> static T __shfl_xor_sync(unsigned, T v, int o)
{
    return kemu_shfl(v, (int)(threadIdx.x % 32) ^ o);
}
template <class T> static T __shfl_down_sync(unsigned, T v, int o)
{
    int lane = (int)(threadIdx.x % 32);
    return kemu_shfl(v, lane + o < 32 ? lane + o : lane);
}

static inline float __int_as_float(int i)
{
    float f;
    memcpy(&f, &i, sizeof f);
    return f;
}

static inline int atomicCAS(int *p, int cmp, int val)
{
    __atomic_compare_exchange_n(p, &cmp, val, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    return cmp;
}
template <class T> static T atomicAdd(T *p, T v)
{
    T old;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    for (;;) {
        T next = old + v;
        if (__atomic_compare_exchange(p, &old, &next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            return old;
    }
}

/* Thread tid of a launch: fn(a[0..nargs)), every argument a pointer. fn is
 * called through a type of KEMU_MAX_ARGS pointers, a[] padded with NULL: on
 * x86-64 (System V) the callee reads its own arguments from the same
 * registers and stack slots and ignores the rest, so one call serves every
 * arity (undefined in C++, and only ever run here, in a test). */
typedef void *kemu_p;
enum { KEMU_MAX_ARGS = 512 };
/* 8, 64 and 512 pointer parameters, and a[n .. n + 512) as arguments */
#define KEMU_P8   kemu_p, kemu_p, kemu_p, kemu_p, kemu_p, kemu_p, kemu_p, kemu_p
#define KEMU_P64  KEMU_P8, KEMU_P8, KEMU_P8, KEMU_P8, KEMU_P8, KEMU_P8, KEMU_P8, KEMU_P8
#define KEMU_P512 KEMU_P64, KEMU_P64, KEMU_P64, KEMU_P64, KEMU_P64, KEMU_P64, KEMU_P64, KEMU_P64
#define KEMU_A8(n)                                                                                 \
    a[(n)], a[(n) + 1], a[(n) + 2], a[(n) + 3], a[(n) + 4], a[(n) + 5], a[(n) + 6], a[(n) + 7]
#define KEMU_A64(n)                                                                                \
    KEMU_A8(n), KEMU_A8((n) + 8), KEMU_A8((n) + 16), KEMU_A8((n) + 24), KEMU_A8((n) + 32),         \
        KEMU_A8((n) + 40), KEMU_A8((n) + 48), KEMU_A8((n) + 56)
#define KEMU_A512                                                                                  \
    KEMU_A64(0), KEMU_A64(64), KEMU_A64(128), KEMU_A64(192), KEMU_A64(256), KEMU_A64(320),         \
        KEMU_A64(384), KEMU_A64(448)
typedef void (*kemu_fn)(KEMU_P512);
extern "C" void kemu_thread(void (*fn)(void), int nargs, kemu_p *args, unsigned tid)
{
    kemu_p a[KEMU_MAX_ARGS];
    for (int i = 0; i < KEMU_MAX_ARGS; i++)
        a[i] = i < nargs ? args[i] : 0;
    threadIdx.x = tid;
    ((kemu_fn)fn)(KEMU_A512);
}
