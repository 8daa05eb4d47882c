/*
 * cudev.c - the CUDA device of the device executor (device.h): driver calls
 * and nothing else, so that everything above it is tested on the CPU through
 * the C device.
 *
 * The first GPU's primary context and one stream. The program's CUDA source
 * (codegen/cuda) is compiled by NVRTC for the device's own compute
 * capability, or found in the compile cache (key: source, architecture,
 * NVRTC version), and loaded with cuModuleLoadData. A launch passes the
 * device-side kiln_ctx (seed, run counter, the first error) and the kernel's
 * buffers (cgen_cuda_launch) with blocks of KILN_CUDA_BLOCK threads, as many
 * as the grid-stride loops need up to a few per multiprocessor. Everything is
 * asynchronous on the stream; finish waits once and reads the error record.
 * With KILN_DEBUG=1 each launch is timed with a pair of events (the profile).
 */
#include "codegen/cuda/cuda.h"
#include "rt.h"
#include "runtime/cuda_driver.h"
#include "runtime/device.h"
#include "runtime/nvrtc.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* The device-side kiln_ctx of render_cuda.c's prelude, byte for byte. */
typedef struct {
    uint64_t seed;
    uint32_t run;
    int32_t err_code, err_kernel, err_axis;
    int64_t err_index, err_size;
} dev_ctx;
_Static_assert(sizeof(dev_ctx) == 40, "dev_ctx must match render_cuda.c's kiln_ctx");

enum { CU_ATTR_MP_COUNT = 16, CU_ATTR_CC_MAJOR = 75, CU_ATTR_CC_MINOR = 76 };

/* cuBLAS (libcublas, dlopen'd; its types as int and pointers). */
typedef struct cublas_ctx *cublas_handle;
typedef int (*gemm_fn)(cublas_handle, int, int, int, int, int, const void *, const void *, int,
                       long long, const void *, int, long long, const void *, void *, int,
                       long long, int);
typedef struct {
    void *lib;
    cublas_handle h;
    int (*create)(cublas_handle *);
    int (*set_stream)(cublas_handle, rt_cu_stream);
    int (*set_math_mode)(cublas_handle, int);
    gemm_fn sgemm, dgemm; /* cublas[SD]gemmStridedBatched */
} cublas_api;
enum { CUBLAS_TF32_TENSOR_OP_MATH = 3 };

/* cuBLASLt (libcublasLt, dlopen'd; its handles as pointers, its enums as int). */
typedef struct {
    uint64_t algo[8]; /* cublasLtMatmulAlgo_t */
    size_t workspace;
    int state;
    float waves;
    int reserved[4];
} lt_heuristic;
_Static_assert(sizeof(lt_heuristic) == 96, "cublasLtMatmulHeuristicResult_t's size");
typedef struct {
    void *lib, *h;
    int (*create)(void **);
    int (*desc_create)(void **, int, int);
    int (*desc_set)(void *, int, const void *, size_t);
    int (*desc_destroy)(void *);
    int (*layout_create)(void **, int, uint64_t, uint64_t, int64_t);
    int (*layout_set)(void *, int, const void *, size_t);
    int (*layout_destroy)(void *);
    int (*pref_create)(void **);
    int (*pref_set)(void *, int, const void *, size_t);
    int (*pref_destroy)(void *);
    int (*heuristic)(void *, void *, void *, void *, void *, void *, void *, int, lt_heuristic *,
                     int *);
    int (*matmul)(void *, void *, const void *, const void *, void *, const void *, void *,
                  const void *, const void *, void *, void *, void *, const void *, void *, size_t,
                  rt_cu_stream);
} cublaslt_api;
/* A MATMUL kernel run as a cuBLAS GEMM into the scratch, then its epilogue;
 * or, where its epilogue is cuBLASLt's (rt_gemm_epilogue_of), one cuBLASLt
 * call that writes its output. */
typedef struct {
    bool on;
    rt_gemm_plan g;
    rt_cu_function epi;
    int *args, nargs;
    int64_t threads; /* the epilogue's: a thread per output element */
    bool lt;
    rt_gemm_epi e;
    void *desc, *la, *lb, *ld; /* the operation; x's, y's and the output's layouts */
    lt_heuristic algo;
} gemm_plan;

typedef struct {
    rt_device base;
    const rt_cuda_api *cu;
    rt_cu_device dev;
    rt_cu_context ctx;
    rt_cu_stream stream;
    rt_cu_module mod;
    const kprogram *p;
    rt_cu_function *fns; /* per kernel index */
    int **args;          /* per kernel index: its buffer arguments */
    int *nargs;
    int64_t *threads; /* per kernel index: threads its loops are written for */
    rt_dptr *vals;    /* launch scratch: the argument values */
    void **params;    /* launch scratch: pointers to them */
    rt_dptr dctx;     /* the device's kiln_ctx */
    dev_ctx hctx;     /* its host copy (upload at begin, download at finish) */
    int sms;
    bool timing;            /* KILN_DEBUG >= 1: events around each launch */
    rt_cu_event *ev0, *ev1; /* per kernel index */
    bool *timed;            /* per kernel index: launched (timed) in this run */
    uint64_t *calls, *ns;   /* per kernel index */
    bool blas;              /* GEMMs go to cuBLAS (installed, and not KILN_CUBLAS=0) */
    gemm_plan *gemm;        /* per kernel index */
    rt_dptr scratch;        /* the GEMMs' products */
    rt_dptr workspace;      /* cuBLASLt's, where a GEMM uses it */
} cudev;

/* Process-wide, made once and kept (as PyTorch keeps them): the primary
 * context (creating it costs a tenth of a second; a module freed and another
 * compiled must not pay it again), and cuBLAS, loaded at the first compile
 * that wants it and given a handle at the first GEMM, which every module
 * shares under a lock (a handle serves one stream at a time). */
static struct {
    pthread_mutex_t mu;
    rt_cu_context ctx;
    bool tried_blas;
    cublas_api blas; /* .lib NULL: not installed */
    bool tried_lt;
    cublaslt_api lt; /* .lib NULL: not installed */
} proc = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* "what failed: the driver's text" into d->error. */
static kiln_status cu_check(cudev *c, rt_cu_result r, const char *what)
{
    if (r == 0)
        return KILN_OK;
    const char *text = NULL;
    if (c->cu->get_error_string(r, &text) != 0 || !text)
        text = "unknown error";
    return rt_device_fail(&c->base, KILN_ERR_DEVICE, "%s failed: %s (CUDA error %d)", what, text,
                          r);
}

static kiln_status current(cudev *c)
{
    return cu_check(c, c->cu->ctx_set_current(c->ctx), "cuCtxSetCurrent");
}

static void cu_destroy(rt_device *d)
{
    cudev *c = (cudev *)d;
    if (c->ctx)
        c->cu->ctx_set_current(c->ctx);
    if (c->stream)
        c->cu->stream_synchronize(c->stream);
    for (int k = 0; c->p && k < c->p->nkernels; k++) {
        if (c->ev0 && c->ev0[k])
            c->cu->event_destroy(c->ev0[k]);
        if (c->ev1 && c->ev1[k])
            c->cu->event_destroy(c->ev1[k]);
        if (c->args)
            ir_free(c->args[k]);
    }
    for (int k = 0; c->gemm && c->p && k < c->p->nkernels; k++) {
        gemm_plan *g = &c->gemm[k];
        ir_free(g->args);
        if (g->desc)
            proc.lt.desc_destroy(g->desc);
        void *layouts[] = {g->la, g->lb, g->ld};
        for (int i = 0; i < 3; i++)
            if (layouts[i])
                proc.lt.layout_destroy(layouts[i]);
    }
    if (c->workspace)
        c->cu->mem_free(c->workspace);
    ir_free(c->gemm);
    if (c->scratch)
        c->cu->mem_free(c->scratch);
    if (c->dctx)
        c->cu->mem_free(c->dctx);
    if (c->mod)
        c->cu->module_unload(c->mod);
    if (c->stream)
        c->cu->stream_destroy(c->stream);
    ir_free(c->fns);
    ir_free(c->args);
    ir_free(c->nargs);
    ir_free(c->threads);
    ir_free(c->vals);
    ir_free(c->params);
    ir_free(c->ev0);
    ir_free(c->ev1);
    ir_free(c->timed);
    ir_free(c->calls);
    ir_free(c);
}

static kiln_status cu_alloc(rt_device *d, size_t n, rt_dptr *p)
{
    cudev *c = (cudev *)d;
    rt_cu_deviceptr q = 0;
    size_t bytes = n ? (n + 255) & ~(size_t)255 : 256;
    kiln_status s = current(c);
    s = s ? s : cu_check(c, c->cu->mem_alloc(&q, bytes), "cuMemAlloc");
    if (s == KILN_OK)
        s = cu_check(c, c->cu->memset_d8_async(q, 0, bytes, c->stream), "cuMemsetD8Async");
    if (s != KILN_OK) {
        if (q)
            c->cu->mem_free(q);
        return rt_device_fail(d, KILN_ERR_NOMEM, "cannot allocate %zu bytes on the GPU: %.900s", n,
                              d->error);
    }
    *p = q;
    return KILN_OK;
}

static void cu_free(rt_device *d, rt_dptr p)
{
    cudev *c = (cudev *)d;
    c->cu->ctx_set_current(c->ctx);
    c->cu->mem_free(p);
}

static kiln_status cu_upload(rt_device *d, rt_dptr dst, const void *src, size_t n)
{
    cudev *c = (cudev *)d;
    kiln_status s = current(c);
    return s ? s
             : cu_check(c, c->cu->memcpy_htod_async(dst, src, n, c->stream), "cuMemcpyHtoDAsync");
}

static kiln_status cu_download(rt_device *d, void *dst, rt_dptr src, size_t n)
{
    cudev *c = (cudev *)d;
    kiln_status s = current(c);
    s = s ? s : cu_check(c, c->cu->memcpy_dtoh_async(dst, src, n, c->stream), "cuMemcpyDtoHAsync");
    return s ? s : cu_check(c, c->cu->stream_synchronize(c->stream), "cuStreamSynchronize");
}

static kiln_status cu_copy(rt_device *d, rt_dptr dst, rt_dptr src, size_t n)
{
    cudev *c = (cudev *)d;
    kiln_status s = current(c);
    return s ? s
             : cu_check(c, c->cu->memcpy_dtod_async(dst, src, n, c->stream), "cuMemcpyDtoDAsync");
}

static kiln_status cu_begin(rt_device *d, uint64_t seed, uint32_t run)
{
    cudev *c = (cudev *)d;
    c->hctx = (dev_ctx){.seed = seed, .run = run};
    if (c->timing)
        memset(c->timed, 0, sizeof(bool) * (size_t)c->p->nkernels);
    kiln_status s = current(c);
    return s ? s : cu_upload(d, c->dctx, &c->hctx, sizeof c->hctx);
}

/* cuBLAS's product into the scratch, then the kernel's epilogue over it. */
/* The blocks a launch of n threads takes: the loops stride over the rest. */
static int64_t blocks_for(const cudev *c, int64_t n)
{
    int64_t blocks = (n + KILN_CUDA_BLOCK - 1) / KILN_CUDA_BLOCK, most = (int64_t)c->sms * 32;
    return blocks > most ? most : blocks;
}

/* A GEMM and its epilogue in one cuBLASLt call, straight into the output. */
static kiln_status lt_launch(cudev *c, int k, const rt_dptr *table)
{
    gemm_plan *e = &c->gemm[k];
    const kk_matmul *mm = &c->p->kernels[k].mm;
    const float one = 1, zero = 0;
    void *out = (void *)(uintptr_t)(table[e->e.out] + (rt_dptr)e->e.out_at * 4);
    pthread_mutex_lock(&proc.mu);
    int r = 0;
    if (e->e.bias >= 0) {
        void *bias = (void *)(uintptr_t)(table[e->e.bias] + (rt_dptr)e->e.bias_at * 4);
        r = proc.lt.desc_set(e->desc, RT_LT_DESC_BIAS_POINTER, &bias, sizeof bias);
    }
    r = r ? r
          : proc.lt.matmul(proc.lt.h, e->desc, &one, (const void *)(uintptr_t)table[mm->b], e->la,
                           (const void *)(uintptr_t)table[mm->a], e->lb, &zero, out, e->ld, out,
                           e->ld, e->algo.algo, (void *)(uintptr_t)c->workspace, e->algo.workspace,
                           c->stream);
    pthread_mutex_unlock(&proc.mu);
    if (r != 0)
        return rt_device_fail(&c->base, KILN_ERR_DEVICE, "cuBLASLt matmul of %s failed (status %d)",
                              c->p->kernels[k].name, r);
    return KILN_OK;
}

static kiln_status gemm_launch(cudev *c, int k, const rt_dptr *table)
{
    if (c->gemm[k].lt)
        return lt_launch(c, k, table);
    const rt_gemm_plan *g = &c->gemm[k].g;
    const kk_matmul *mm = &c->p->kernels[k].mm;
    const double one = 1, zero = 0;
    const float onef = 1, zerof = 0;
    bool f64 = g->f64;
    const void *x = (const void *)(uintptr_t)table[mm->b];
    const void *y = (const void *)(uintptr_t)table[mm->a];
    cublas_api *b = &proc.blas;
    pthread_mutex_lock(&proc.mu);
    int r = 0;
    if (!b->h) { /* TF32 only when asked: PyTorch's default is off as well */
        const char *tf32 = getenv("KILN_TF32");
        r = b->create(&b->h);
        if (r == 0 && tf32 && strcmp(tf32, "1") == 0)
            r = b->set_math_mode(b->h, CUBLAS_TF32_TENSOR_OP_MATH);
    }
    r = r ? r : b->set_stream(b->h, c->stream);
    r = r ? r
          : (f64 ? b->dgemm : b->sgemm)(
                b->h, g->opx, g->opy, g->n, g->m, g->k, f64 ? (const void *)&one : &onef, x, g->ldx,
                g->sx, y, g->ldy, g->sy, f64 ? (const void *)&zero : &zerof,
                (void *)(uintptr_t)c->scratch, g->n, (long long)g->m * g->n, g->batch);
    pthread_mutex_unlock(&proc.mu);
    if (r != 0)
        return rt_device_fail(&c->base, KILN_ERR_DEVICE, "cuBLAS GEMM of %s failed (status %d)",
                              c->p->kernels[k].name, r);
    c->vals[0] = c->dctx;
    c->params[0] = &c->vals[0];
    const gemm_plan *e = &c->gemm[k];
    for (int i = 0; i < e->nargs; i++) {
        c->vals[i + 1] = table[e->args[i]];
        c->params[i + 1] = &c->vals[i + 1];
    }
    c->vals[e->nargs + 1] = c->scratch;
    c->params[e->nargs + 1] = &c->vals[e->nargs + 1];
    return cu_check(c,
                    c->cu->launch_kernel(e->epi, (unsigned)blocks_for(c, e->threads), 1, 1,
                                         KILN_CUDA_BLOCK, 1, 1, 0, c->stream, c->params, NULL),
                    c->p->kernels[k].name);
}

static kiln_status cu_launch(rt_device *d, int k, const rt_dptr *table)
{
    cudev *c = (cudev *)d;
    int64_t n = c->threads[k];
    if (n == 0) /* an empty domain */
        return KILN_OK;
    int64_t blocks = blocks_for(c, n);
    c->vals[0] = c->dctx;
    c->params[0] = &c->vals[0];
    for (int i = 0; i < c->nargs[k]; i++) {
        c->vals[i + 1] = table[c->args[k][i]];
        c->params[i + 1] = &c->vals[i + 1];
    }
    kiln_status s = KILN_OK;
    if (c->timing && !c->timed[k])
        s = cu_check(c, c->cu->event_record(c->ev0[k], c->stream), "cuEventRecord");
    if (s == KILN_OK && c->gemm[k].on)
        s = gemm_launch(c, k, table);
    else
        s = s ? s
              : cu_check(c,
                         c->cu->launch_kernel(c->fns[k], (unsigned)blocks, 1, 1, KILN_CUDA_BLOCK, 1,
                                              1, 0, c->stream, c->params, NULL),
                         c->p->kernels[k].name);
    if (s == KILN_OK && c->timing && !c->timed[k]) {
        s = cu_check(c, c->cu->event_record(c->ev1[k], c->stream), "cuEventRecord");
        c->timed[k] = true;
    }
    c->calls[k]++;
    return s;
}

static kiln_status cu_finish(rt_device *d, rt_runerr *err)
{
    cudev *c = (cudev *)d;
    kiln_status s = current(c);
    s = s ? s : cu_download(d, &c->hctx, c->dctx, sizeof c->hctx);
    if (s != KILN_OK)
        return s;
    for (int k = 0; c->timing && k < c->p->nkernels; k++) {
        float ms = 0;
        if (c->timed[k] && c->cu->event_elapsed_time(&ms, c->ev0[k], c->ev1[k]) == 0)
            c->ns[k] += (uint64_t)((double)ms * 1e6);
    }
    *err = (rt_runerr){c->hctx.err_code, c->hctx.err_kernel, c->hctx.err_axis, c->hctx.err_index,
                       c->hctx.err_size};
    return KILN_OK;
}

static void cu_kernel_time(rt_device *d, int k, uint64_t *calls, uint64_t *ns)
{
    cudev *c = (cudev *)d;
    *calls = c->calls[k];
    *ns = c->ns[k];
}

static const rt_device_ops cu_ops = {"cuda",    cu_destroy,  cu_alloc,      cu_free,
                                     cu_upload, cu_download, cu_copy,       cu_begin,
                                     cu_launch, cu_finish,   cu_kernel_time};

/* The cubin of source for sm_<arch>: from the cache, else NVRTC's (then cached). */
static kiln_status cubin_of(cudev *c, const char *source, int arch, const char *cache_dir,
                            bool *hit, void **cubin, size_t *n)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st)
        return rt_device_fail(&c->base, KILN_ERR_NOMEM, "out of memory");
    int ver = rt_nvrtc_version();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, source, strlen(source) + 1);
    XXH3_64bits_update(st, &arch, sizeof arch);
    XXH3_64bits_update(st, &ver, sizeof ver);
    uint64_t key = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    *cubin = cache_dir ? rt_cache_get(cache_dir, key, "cubin", n) : NULL;
    *hit = *cubin != NULL;
    if (*hit)
        return KILN_OK;
    char *log = NULL;
    kiln_status s = rt_nvrtc_compile(source, "kiln.cu", arch, cubin, n, &log);
    if (s != KILN_OK) {
        rt_device_fail(&c->base, s, "NVRTC could not compile the kernels for sm_%d:\n%.900s", arch,
                       log ? log : "(no log)");
        ir_free(log);
        return s;
    }
    ir_free(log);
    if (cache_dir)
        rt_cache_put(cache_dir, key, "cubin", *cubin, *n);
    return KILN_OK;
}

typedef struct {
    void **slot;
    const char *name;
} lib_sym;

/* A library of the toolkit: the one $env names (trusted: the tests' fake
 * GPU), else the first of names that opens, with every symbol in syms; NULL
 * where none opens or one lacks a symbol (too old). */
static void *open_lib(const char *env, const char *const *names, size_t nnames, lib_sym *syms,
                      size_t nsyms)
{
    const char *lib = getenv(env);
    void *h = lib && *lib ? dlopen(lib, RTLD_NOW | RTLD_LOCAL) : NULL;
    for (size_t i = 0; i < nnames && !h && !(lib && *lib); i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    for (size_t i = 0; h && i < nsyms; i++) {
        void *f = dlsym(h, syms[i].name);
        if (!f) {
            dlclose(h);
            return NULL;
        }
        memcpy(syms[i].slot, &f, sizeof f);
    }
    return h;
}

/* Whether GEMMs go to cuBLAS: installed (opened once per process;
 * $KILN_CUBLAS_LIB names another library) and not turned off (KILN_CUBLAS=0).
 * A cuBLAS too old leaves the matmuls to the generated kernels. Call under
 * proc.mu. */
static bool want_cublas(void)
{
    const char *env = getenv("KILN_CUBLAS");
    if (env && strcmp(env, "0") == 0)
        return false;
    cublas_api *b = &proc.blas;
    if (proc.tried_blas)
        return b->lib != NULL;
    proc.tried_blas = true;
    static const char *const names[] = {"libcublas.so.13", "libcublas.so.12", "libcublas.so",
                                        "/usr/local/cuda/lib64/libcublas.so"};
    lib_sym syms[] = {{(void **)&b->create, "cublasCreate_v2"},
                      {(void **)&b->set_stream, "cublasSetStream_v2"},
                      {(void **)&b->set_math_mode, "cublasSetMathMode"},
                      {(void **)&b->sgemm, "cublasSgemmStridedBatched"},
                      {(void **)&b->dgemm, "cublasDgemmStridedBatched"}};
    b->lib = open_lib("KILN_CUBLAS_LIB", names, sizeof names / sizeof names[0], syms,
                      sizeof syms / sizeof syms[0]);
    if (!b->lib)
        memset(b, 0, sizeof *b);
    return b->lib != NULL;
}

/* Whether cuBLASLt is installed (opened once per process; $KILN_CUBLASLT_LIB
 * names another library), with a handle. Only where cuBLAS is used too (not
 * KILN_CUBLAS=0). Call under proc.mu. */
static bool want_cublaslt(void)
{
    cublaslt_api *l = &proc.lt;
    if (proc.tried_lt)
        return l->lib != NULL;
    proc.tried_lt = true;
    static const char *const names[] = {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so",
                                        "/usr/local/cuda/lib64/libcublasLt.so"};
    lib_sym syms[] = {{(void **)&l->create, "cublasLtCreate"},
                      {(void **)&l->desc_create, "cublasLtMatmulDescCreate"},
                      {(void **)&l->desc_set, "cublasLtMatmulDescSetAttribute"},
                      {(void **)&l->desc_destroy, "cublasLtMatmulDescDestroy"},
                      {(void **)&l->layout_create, "cublasLtMatrixLayoutCreate"},
                      {(void **)&l->layout_set, "cublasLtMatrixLayoutSetAttribute"},
                      {(void **)&l->layout_destroy, "cublasLtMatrixLayoutDestroy"},
                      {(void **)&l->pref_create, "cublasLtMatmulPreferenceCreate"},
                      {(void **)&l->pref_set, "cublasLtMatmulPreferenceSetAttribute"},
                      {(void **)&l->pref_destroy, "cublasLtMatmulPreferenceDestroy"},
                      {(void **)&l->heuristic, "cublasLtMatmulAlgoGetHeuristic"},
                      {(void **)&l->matmul, "cublasLtMatmul"}};
    l->lib = open_lib("KILN_CUBLASLT_LIB", names, sizeof names / sizeof names[0], syms,
                      sizeof syms / sizeof syms[0]);
    if (l->lib && l->create(&l->h) != 0) { /* no GPU for it: cuBLAS and the epilogues do */
        dlclose(l->lib);
        l->lib = NULL;
    }
    if (!l->lib)
        memset(l, 0, sizeof *l);
    return l->lib != NULL;
}

/* Node v of k without float-to-float casts around it. */
static int uncast(const kernel *k, int v)
{
    while (k->x[v].kind == KX_OP && k->x[v].op == IR_CAST && ir_dtype_is_float(k->x[v].dtype) &&
           ir_dtype_is_float(k->x[k->x[v].a[0]].dtype))
        v = k->x[v].a[0];
    return v;
}

bool rt_gemm_epilogue_of(const kprogram *p, const kernel *k, rt_gemm_epi *e)
{
    rt_gemm_plan g;
    if (!rt_gemm_plan_of(p, k, &g) || g.f64 || k->nstores != 1)
        return false;
    const kk_store *st = &k->stores[0];
    const kk_matmul *mm = &k->mm;
    int64_t c[3], c0;
    if (st->accumulate || p->bufs[st->buf].dtype != KILN_F32 ||
        !kk_affine(k, st->index, 3, c, &c0) || (mm->batch > 1 && c[0] != mm->m * mm->n) ||
        c[1] != mm->n || c[2] != 1 || c0 < 0)
        return false;
    *e = (rt_gemm_epi){st->buf, -1, c0, 0};
    int v = uncast(k, st->value);
    if (k->x[v].kind == KX_OP && k->x[v].op == IR_ADD) {
        int s0 = uncast(k, k->x[v].a[0]), s1 = uncast(k, k->x[v].a[1]);
        int acc = k->x[s0].kind == KX_ACC ? s0 : s1, bias = acc == s0 ? s1 : s0;
        const kx_node *b = &k->x[bias];
        if (k->x[acc].kind != KX_ACC || b->kind != KX_LOAD || b->buf < 0 ||
            p->bufs[b->buf].dtype != KILN_F32 || !kk_affine(k, b->a[0], 3, c, &c0) ||
            (mm->batch > 1 && c[0]) || c[1] || c[2] != 1 || c0 < 0)
            return false;
        e->bias = b->buf;
        e->bias_at = c0;
        v = acc;
    }
    /* cuBLASLt's heuristics assume 16-byte aligned pointers: buffers are
     * (cuMemAlloc's and the arena's 64-byte offsets), element offsets must be */
    return k->x[v].kind == KX_ACC && e->out_at % 4 == 0 && e->bias_at % 4 == 0;
}

/* Kernel k's cuBLASLt operation where its epilogue is cuBLASLt's and the
 * heuristics offer an algorithm: x (B^T) and y (A^T) as cuBLAS's GEMM takes
 * them, the output as a column-major n x m per batch. Call under proc.mu. */
static bool lt_plan(cudev *c, int k, bool tf32)
{
    gemm_plan *e = &c->gemm[k];
    cublaslt_api *l = &proc.lt;
    if (!rt_gemm_epilogue_of(c->p, &c->p->kernels[k], &e->e))
        return false;
    const rt_gemm_plan *g = &e->g;
    int epilogue = e->e.bias >= 0 ? RT_LT_EPILOGUE_BIAS : RT_LT_EPILOGUE_DEFAULT;
    /* the alignment the heuristics may assume (default 256 bytes): operands
     * and outputs start buffers (64-byte aligned) or 16-byte steps into them;
     * the bias pointer's value stands for its alignment until the launch */
    uint32_t align[4] = {64, 64, e->e.out_at ? 16 : 64, e->e.out_at ? 16 : 64};
    const void *bias_align = (const void *)(uintptr_t)16;
    int64_t zero = 0, sd = (int64_t)g->m * g->n;
    int r = l->desc_create(&e->desc, tf32 ? RT_LT_COMPUTE_32F_FAST_TF32 : RT_LT_COMPUTE_32F,
                           RT_LT_R_32F);
    r = r ? r : l->desc_set(e->desc, RT_LT_DESC_TRANSA, &g->opx, sizeof g->opx);
    r = r ? r : l->desc_set(e->desc, RT_LT_DESC_TRANSB, &g->opy, sizeof g->opy);
    r = r ? r : l->desc_set(e->desc, RT_LT_DESC_EPILOGUE, &epilogue, sizeof epilogue);
    r = r ? r : l->desc_set(e->desc, RT_LT_DESC_BIAS_BATCH_STRIDE, &zero, sizeof zero);
    if (e->e.bias >= 0)
        r = r ? r : l->desc_set(e->desc, RT_LT_DESC_BIAS_POINTER, &bias_align, sizeof bias_align);
    /* stored shapes: x is n x k (N) or k x n (T); y is k x m (N) or m x k (T) */
    r = r ? r
          : l->layout_create(&e->la, RT_LT_R_32F, (uint64_t)(g->opx ? g->k : g->n),
                             (uint64_t)(g->opx ? g->n : g->k), g->ldx);
    r = r ? r
          : l->layout_create(&e->lb, RT_LT_R_32F, (uint64_t)(g->opy ? g->m : g->k),
                             (uint64_t)(g->opy ? g->k : g->m), g->ldy);
    r = r ? r : l->layout_create(&e->ld, RT_LT_R_32F, (uint64_t)g->n, (uint64_t)g->m, g->n);
    const struct {
        void *layout;
        int64_t stride;
    } batched[] = {{e->la, g->sx}, {e->lb, g->sy}, {e->ld, sd}};
    for (int i = 0; i < 3 && r == 0 && g->batch > 1; i++) {
        r = l->layout_set(batched[i].layout, RT_LT_LAYOUT_BATCH_COUNT, &g->batch, sizeof g->batch);
        r = r ? r
              : l->layout_set(batched[i].layout, RT_LT_LAYOUT_STRIDED_BATCH_OFFSET,
                              &batched[i].stride, sizeof batched[i].stride);
    }
    void *pref = NULL;
    uint64_t ws = RT_LT_WORKSPACE;
    int found = 0;
    r = r ? r : l->pref_create(&pref);
    r = r ? r : l->pref_set(pref, RT_LT_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
    for (int i = 0; i < 4 && r == 0; i++)
        r = l->pref_set(pref, RT_LT_PREF_MIN_ALIGNMENT_A_BYTES + i, &align[i], sizeof align[i]);
    r = r ? r : l->heuristic(l->h, e->desc, e->la, e->lb, e->ld, e->ld, pref, 1, &e->algo, &found);
    if (pref)
        l->pref_destroy(pref);
    return r == 0 && found > 0 && e->algo.state == 0 && e->algo.workspace <= RT_LT_WORKSPACE;
}

/* One operand of the column-major GEMM: element (row, col) of a rows x cols
 * matrix lies at row * rs + col * cs. Op N with ld = cs when rows are
 * contiguous, op T with ld = rs when columns are; false when neither. */
static bool operand(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int *op, int *ld)
{
    if (rows == 1 || rs == 1) { /* column-major already */
        int64_t l = cols == 1 ? rows : cs;
        *op = RT_GEMM_N;
        l = l < rows ? rows : l;
        *ld = (int)(l < 1 ? 1 : l); /* cuBLAS: ld >= max(1, rows) */
        return (cols == 1 || cs >= rows) && l <= INT_MAX;
    }
    if (cols == 1 || cs == 1) { /* the transpose is column-major */
        int64_t l = rows == 1 ? cols : rs;
        *op = RT_GEMM_T;
        l = l < cols ? cols : l;
        *ld = (int)(l < 1 ? 1 : l);
        return (rows == 1 || rs >= cols) && l <= INT_MAX;
    }
    return false;
}

bool rt_gemm_plan_of(const kprogram *p, const kernel *k, rt_gemm_plan *g)
{
    const kk_matmul *mm = &k->mm;
    /* f32 operands accumulate in f32 there (as PyTorch's matmuls do); the
     * kernel's own loop sums them in f64 */
    kiln_dtype dt = p->bufs[mm->a].dtype;
    if (k->kind != KK_MATMUL || !ir_dtype_is_float(k->acc_dtype) ||
        (dt != KILN_F32 && dt != KILN_F64) || p->bufs[mm->b].dtype != dt ||
        mm->batch * mm->m * mm->n == 0 || kk_matmul_has_parts(mm))
        return false; /* cuBLASLt walks no operand axis with parts */
    int64_t lim = INT_MAX;
    if (mm->m > lim || mm->n > lim || mm->k > lim || mm->batch > lim || mm->m * mm->n > lim)
        return false;
    /* x = B^T: n x k, element (j, p) at j * b_stride[2] + p * b_stride[1];
     * y = A^T: k x m, element (p, i) at p * a_stride[2] + i * a_stride[1] */
    if (!operand(mm->n, mm->k, mm->b_stride[2], mm->b_stride[1], &g->opx, &g->ldx) ||
        !operand(mm->k, mm->m, mm->a_stride[2], mm->a_stride[1], &g->opy, &g->ldy))
        return false;
    g->f64 = dt == KILN_F64;
    g->m = (int)mm->m;
    g->n = (int)mm->n;
    g->k = (int)mm->k;
    g->batch = (int)mm->batch;
    g->sx = (long long)mm->b_stride[0];
    g->sy = (long long)mm->a_stride[0];
    return true;
}

const unsigned char *rt_cuda_pick_image(const rt_cuda_images *images, int cc)
{
    const unsigned char *best = NULL;
    int arch = -1;
    for (int i = 0; i < images->n; i++)
        if (images->archs[i] / 10 == cc / 10 && images->archs[i] <= cc && images->archs[i] > arch) {
            arch = images->archs[i];
            best = images->cubins[i];
        }
    return best ? best : images->ptx;
}

/* Context, stream, module, functions and launch tables; false with the error set. */
static kiln_status open_device(cudev *c, const char *source, const rt_cuda_images *images,
                               const char *cache_dir, bool *hit)
{
    const rt_cuda_api *cu = c->cu;
    int major = 0, minor = 0;
    kiln_status s = cu_check(c, cu->device_get(&c->dev, 0), "cuDeviceGet");
    s = s ? s
          : cu_check(c, cu->device_get_attribute(&major, CU_ATTR_CC_MAJOR, c->dev),
                     "cuDeviceGetAttribute");
    s = s ? s
          : cu_check(c, cu->device_get_attribute(&minor, CU_ATTR_CC_MINOR, c->dev),
                     "cuDeviceGetAttribute");
    s = s ? s
          : cu_check(c, cu->device_get_attribute(&c->sms, CU_ATTR_MP_COUNT, c->dev),
                     "cuDeviceGetAttribute");
    pthread_mutex_lock(&proc.mu);
    if (s == KILN_OK && !proc.ctx)
        s = cu_check(c, cu->primary_ctx_retain(&proc.ctx, c->dev), "cuDevicePrimaryCtxRetain");
    c->ctx = proc.ctx;
    c->blas = s == KILN_OK && want_cublas();
    const char *lt_env = getenv("KILN_CUBLASLT");
    bool lt = c->blas && !(lt_env && strcmp(lt_env, "0") == 0) && want_cublaslt();
    pthread_mutex_unlock(&proc.mu);
    const char *tf32 = getenv("KILN_TF32");
    if (s != KILN_OK)
        return s;
    s = current(c);
    s = s ? s : cu_check(c, cu->stream_create(&c->stream, 1 /* non-blocking */), "cuStreamCreate");
    if (s != KILN_OK)
        return s;
    void *cubin = NULL;
    size_t n = 0;
    if (images) {
        s = cu_check(c,
                     cu->module_load_data(&c->mod, rt_cuda_pick_image(images, major * 10 + minor)),
                     "cuModuleLoadData");
    } else {
        if ((s = cubin_of(c, source, major * 10 + minor, cache_dir, hit, &cubin, &n)) != KILN_OK)
            return s;
        s = cu_check(c, cu->module_load_data(&c->mod, cubin), "cuModuleLoadData");
        ir_free(cubin);
    }
    rt_cu_deviceptr q = 0;
    s = s ? s : cu_check(c, cu->mem_alloc(&q, sizeof(dev_ctx)), "cuMemAlloc");
    c->dctx = q;
    int most = 1;
    size_t scratch = 0, workspace = 0;
    for (int k = 0; k < c->p->nkernels && s == KILN_OK; k++) {
        const kernel *kk = &c->p->kernels[k];
        gemm_plan *g = &c->gemm[k];
        if (c->blas && rt_gemm_plan_of(c->p, kk, &g->g)) {
            char name[80];
            snprintf(name, sizeof name, "%s_epi", kk->name);
            s = cu_check(c, cu->module_get_function(&g->epi, c->mod, name), name);
            g->args = ir_alloc(sizeof(int) * (size_t)(c->p->nbufs ? c->p->nbufs : 1));
            if (s == KILN_OK && (!g->args || (g->threads = cgen_cuda_launch(c->p, kk, true, g->args,
                                                                            &g->nargs)) < 0))
                s = rt_device_fail(&c->base, KILN_ERR_NOMEM, "out of memory");
            g->on = s == KILN_OK;
            pthread_mutex_lock(&proc.mu);
            g->lt = g->on && lt && lt_plan(c, k, tf32 && strcmp(tf32, "1") == 0);
            pthread_mutex_unlock(&proc.mu);
            size_t bytes = (size_t)(kk->mm.batch * kk->mm.m * kk->mm.n) * (g->g.f64 ? 8 : 4);
            scratch = bytes > scratch && !g->lt ? bytes : scratch;
            workspace = g->lt && g->algo.workspace > workspace ? g->algo.workspace : workspace;
            most = g->nargs + 2 > most ? g->nargs + 2 : most;
        }
        s = cu_check(c, cu->module_get_function(&c->fns[k], c->mod, kk->name), kk->name);
        c->args[k] = ir_alloc(sizeof(int) * (size_t)(c->p->nbufs ? c->p->nbufs : 1));
        if (s == KILN_OK && !c->args[k])
            s = rt_device_fail(&c->base, KILN_ERR_NOMEM, "out of memory");
        if (s == KILN_OK &&
            (c->threads[k] = cgen_cuda_launch(c->p, kk, false, c->args[k], &c->nargs[k])) < 0)
            s = rt_device_fail(&c->base, KILN_ERR_NOMEM, "out of memory");
        most = c->nargs[k] + 1 > most ? c->nargs[k] + 1 : most;
        if (s == KILN_OK && c->timing) {
            s = cu_check(c, cu->event_create(&c->ev0[k], 0), "cuEventCreate");
            s = s ? s : cu_check(c, cu->event_create(&c->ev1[k], 0), "cuEventCreate");
        }
    }
    if (s == KILN_OK && scratch) {
        s = cu_check(c, cu->mem_alloc(&q, scratch), "cuMemAlloc");
        c->scratch = s == KILN_OK ? q : 0;
    }
    if (s == KILN_OK && workspace) {
        s = cu_check(c, cu->mem_alloc(&q, workspace), "cuMemAlloc");
        c->workspace = s == KILN_OK ? q : 0;
    }
    if (s == KILN_OK) {
        c->vals = ir_alloc(sizeof(rt_dptr) * (size_t)most);
        c->params = ir_alloc(sizeof(void *) * (size_t)most);
        if (!c->vals || !c->params)
            s = rt_device_fail(&c->base, KILN_ERR_NOMEM, "out of memory");
    }
    return s;
}

rt_device *rt_cudev_new(const kprogram *p, const char *source, const rt_cuda_images *images,
                        const char *cache_dir, bool *hit, kiln_status *status, char *why,
                        size_t cap)
{
    const rt_cuda_api *cu = NULL;
    *hit = false;
    if ((*status = rt_cuda_driver(&cu, why, cap)) != KILN_OK)
        return NULL;
    cudev *c = ir_calloc(sizeof *c);
    size_t nk = (size_t)(p->nkernels ? p->nkernels : 1);
    if (c) {
        c->base.ops = &cu_ops;
        c->cu = cu;
        c->p = p;
        c->timing = ir_debug_level() >= 1;
        c->fns = ir_calloc(sizeof *c->fns * nk);
        c->args = ir_calloc(sizeof *c->args * nk);
        c->nargs = ir_calloc(sizeof *c->nargs * nk);
        c->threads = ir_calloc(sizeof *c->threads * nk);
        c->ev0 = ir_calloc(sizeof *c->ev0 * nk);
        c->ev1 = ir_calloc(sizeof *c->ev1 * nk);
        c->timed = ir_calloc(sizeof *c->timed * nk);
        c->calls = ir_calloc(sizeof *c->calls * 2 * nk);
        c->gemm = ir_calloc(sizeof *c->gemm * nk);
    }
    if (!c || !c->fns || !c->args || !c->nargs || !c->threads || !c->ev0 || !c->ev1 || !c->timed ||
        !c->gemm || !c->calls) {
        snprintf(why, cap, "out of memory");
        *status = KILN_ERR_NOMEM;
        if (c)
            cu_destroy(&c->base);
        return NULL;
    }
    c->ns = c->calls + nk;
    if ((*status = open_device(c, source, images, cache_dir, hit)) != KILN_OK) {
        snprintf(why, cap, "%s", c->base.error);
        cu_destroy(&c->base);
        return NULL;
    }
    return &c->base;
}
