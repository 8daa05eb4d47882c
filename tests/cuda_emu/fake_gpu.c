/*
 * fake_gpu.c - a GPU on the CPU for the CPU suite: libcuda, libnvrtc and
 * libcublas(Lt) in one shared object ($KILN_LIBCUDA, $KILN_NVRTC,
 * $KILN_CUBLAS_LIB and $KILN_CUBLASLT_LIB name it), so that the CUDA executor (runtime/cudev.c),
 * the device executor above it and the CUDA export's runtime run end to end on a machine without a
 * GPU. What it cannot show: the GPU's memory model, its timing, real cuBLAS and the real driver's
 * checks.
 *
 * NVRTC: a compile is clang++ of the source against shim.h into a shared
 * object; the "cubin" (and the "PTX") is that object's bytes behind a header
 * giving each kernel's parameter count (the driver needs it to read
 * cuLaunchKernel's argument list).
 *
 * Driver: device memory is host memory, filled with 0xff bytes when
 * allocated (NaN as f32: nothing may rely on cuMemAlloc zeroing), and every
 * copy, memset, launch argument and GEMM operand is checked against the live
 * allocations (an address outside them fails the call, like a memcheck). A
 * module is the object dlopen'd; a launch checks its shape (blocks of 256
 * threads, a 1-D grid, no dynamic shared memory) and runs the kernel at once
 * as one block (tests/cuda_emu/block.h): the stream is in order, so
 * synchronising is a no-op. Events read the clock.
 *
 * cuBLAS: cublas[SD]gemmStridedBatched as plain loops. cuBLASLt: the f32
 * matmul with its bias and ReLU (max(x, 0)) epilogues, likewise, with its
 * descriptors checked (attribute ids and sizes, layouts that agree) and its
 * pointers as aligned as the heuristics were told (256 bytes unless set).
 * A cubin loads only on a device of its major version and at least its minor,
 * PTX on its architecture and later, as the driver's.
 *
 * $KILN_FAKE_GPU_CC: the compute capability reported (major * 10 + minor;
 * default 90). $KILN_FAKE_GPU_MEM: the most bytes that may be allocated at
 * once (default: no limit). $KILN_FAKE_GPU_LOG: a file each driver call that
 * moves memory or launches appends a line to ("launch k0_add", "htod 12").
 * $KILN_FAKE_GPU_FAIL_LAUNCH=1: every launch fails (invalid argument).
 */
#include "block.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

enum {
    CU_OK = 0,
    CU_INVALID_VALUE = 1,
    CU_OUT_OF_MEMORY = 2,
    CU_INVALID_IMAGE = 200,
    CU_NO_BINARY_FOR_GPU = 209,
    CU_INVALID_HANDLE = 400,
    CU_NOT_FOUND = 500,
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...)
{
    const char *path = getenv("KILN_FAKE_GPU_LOG");
    FILE *f = path && *path ? fopen(path, "a") : NULL;
    if (!f)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

/* ---- memory ------------------------------------------------------------------ */

typedef struct {
    unsigned char *base;
    size_t size;
} block;

static block *blocks;
static size_t nblocks, capblocks, in_use;

/* Whether [p, p + n) lies in one live allocation (an empty range may sit at
 * its end). Call under mu. */
static bool inside(uint64_t p, size_t n)
{
    for (size_t i = 0; i < nblocks; i++) {
        uint64_t b = (uint64_t)(uintptr_t)blocks[i].base;
        if (p >= b && p <= b + blocks[i].size && n <= b + blocks[i].size - p)
            return true;
    }
    return false;
}

static int checked(uint64_t p, size_t n, const char *what)
{
    if (inside(p, n))
        return CU_OK;
    fprintf(stderr, "fake GPU: %s of %zu bytes at 0x%llx is outside every allocation\n", what, n,
            (unsigned long long)p);
    return CU_INVALID_VALUE;
}

EXPORT int cuMemAlloc_v2(uint64_t *p, size_t n)
{
    if (!p || n == 0)
        return CU_INVALID_VALUE;
    const char *lim = getenv("KILN_FAKE_GPU_MEM");
    pthread_mutex_lock(&mu);
    int r = CU_OK;
    if (lim && *lim && in_use + n > strtoull(lim, NULL, 10))
        r = CU_OUT_OF_MEMORY;
    if (r == CU_OK && nblocks == capblocks) {
        size_t cap = capblocks ? 2 * capblocks : 64;
        block *nb = realloc(blocks, cap * sizeof *nb);
        if (nb) {
            blocks = nb;
            capblocks = cap;
        } else {
            r = CU_OUT_OF_MEMORY;
        }
    }
    unsigned char *m = r == CU_OK ? aligned_alloc(256, (n + 255) / 256 * 256) : NULL;
    if (r == CU_OK && !m)
        r = CU_OUT_OF_MEMORY;
    if (r == CU_OK) {
        memset(m, 0xff, n);
        blocks[nblocks++] = (block){m, n};
        in_use += n;
        *p = (uint64_t)(uintptr_t)m;
    }
    pthread_mutex_unlock(&mu);
    return r;
}

EXPORT int cuMemFree_v2(uint64_t p)
{
    pthread_mutex_lock(&mu);
    int r = CU_INVALID_VALUE;
    for (size_t i = 0; i < nblocks; i++)
        if ((uint64_t)(uintptr_t)blocks[i].base == p) {
            free(blocks[i].base);
            in_use -= blocks[i].size;
            blocks[i] = blocks[--nblocks];
            r = CU_OK;
            break;
        }
    pthread_mutex_unlock(&mu);
    return r;
}

EXPORT int cuMemcpyHtoDAsync_v2(uint64_t dst, const void *src, size_t n, void *stream)
{
    (void)stream;
    pthread_mutex_lock(&mu);
    int r = checked(dst, n, "cuMemcpyHtoDAsync's destination");
    if (r == CU_OK && n)
        memcpy((void *)(uintptr_t)dst, src, n);
    pthread_mutex_unlock(&mu);
    trace("htod %zu", n);
    return r;
}

EXPORT int cuMemcpyDtoHAsync_v2(void *dst, uint64_t src, size_t n, void *stream)
{
    (void)stream;
    pthread_mutex_lock(&mu);
    int r = checked(src, n, "cuMemcpyDtoHAsync's source");
    if (r == CU_OK && n)
        memcpy(dst, (const void *)(uintptr_t)src, n);
    pthread_mutex_unlock(&mu);
    trace("dtoh %zu", n);
    return r;
}

EXPORT int cuMemcpyDtoDAsync_v2(uint64_t dst, uint64_t src, size_t n, void *stream)
{
    (void)stream;
    pthread_mutex_lock(&mu);
    int r = checked(dst, n, "cuMemcpyDtoDAsync's destination");
    r = r ? r : checked(src, n, "cuMemcpyDtoDAsync's source");
    if (r == CU_OK && n)
        memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    pthread_mutex_unlock(&mu);
    trace("dtod %zu", n);
    return r;
}

EXPORT int cuMemsetD8Async(uint64_t dst, unsigned char v, size_t n, void *stream)
{
    (void)stream;
    pthread_mutex_lock(&mu);
    int r = checked(dst, n, "cuMemsetD8Async's destination");
    if (r == CU_OK && n)
        memset((void *)(uintptr_t)dst, v, n);
    pthread_mutex_unlock(&mu);
    return r;
}

/* ---- the device, its context, streams and events --------------------------------- */

EXPORT int cuGetErrorString(int e, const char **s)
{
    switch (e) {
    case CU_OK: *s = "no error"; return CU_OK;
    case CU_INVALID_VALUE: *s = "invalid argument"; return CU_OK;
    case CU_OUT_OF_MEMORY: *s = "out of memory"; return CU_OK;
    case CU_INVALID_IMAGE: *s = "device kernel image is invalid"; return CU_OK;
    case CU_NO_BINARY_FOR_GPU:
        *s = "no kernel image is available for execution on the device";
        return CU_OK;
    case CU_INVALID_HANDLE: *s = "invalid resource handle"; return CU_OK;
    case CU_NOT_FOUND: *s = "named symbol not found"; return CU_OK;
    }
    return CU_INVALID_VALUE;
}

static int ctx_token, stream_token;

EXPORT int cuInit(unsigned flags)
{
    return flags == 0 ? CU_OK : CU_INVALID_VALUE;
}

EXPORT int cuDeviceGetCount(int *n)
{
    *n = 1;
    return CU_OK;
}

EXPORT int cuDeviceGet(int *d, int ordinal)
{
    *d = ordinal;
    return ordinal == 0 ? CU_OK : CU_INVALID_VALUE;
}

EXPORT int cuDeviceGetName(char *name, int len, int d)
{
    (void)d;
    snprintf(name, (size_t)len, "Kiln fake GPU (the CPU)");
    return CU_OK;
}

EXPORT int cuDeviceGetAttribute(int *v, int attr, int d)
{
    (void)d;
    const char *env = getenv("KILN_FAKE_GPU_CC");
    int cc = env && *env ? atoi(env) : 90;
    *v = attr == 75 ? cc / 10 : attr == 76 ? cc % 10 : attr == 16 ? 4 : 0;
    return CU_OK;
}

EXPORT int cuDevicePrimaryCtxRetain(void **ctx, int d)
{
    (void)d;
    *ctx = &ctx_token;
    return CU_OK;
}

EXPORT int cuDevicePrimaryCtxRelease_v2(int d)
{
    (void)d;
    return CU_OK;
}

EXPORT int cuCtxSetCurrent(void *ctx)
{
    return ctx == &ctx_token ? CU_OK : CU_INVALID_HANDLE;
}

EXPORT int cuStreamCreate(void **s, unsigned flags)
{
    (void)flags;
    *s = &stream_token;
    return CU_OK;
}

EXPORT int cuStreamDestroy_v2(void *s)
{
    return s == &stream_token ? CU_OK : CU_INVALID_HANDLE;
}

EXPORT int cuStreamSynchronize(void *s)
{
    return s == &stream_token ? CU_OK : CU_INVALID_HANDLE;
}

EXPORT int cuEventCreate(double **e, unsigned flags)
{
    (void)flags;
    *e = calloc(1, sizeof **e);
    return *e ? CU_OK : CU_OUT_OF_MEMORY;
}

EXPORT int cuEventRecord(double *e, void *s)
{
    (void)s;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    *e = (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
    return CU_OK;
}

EXPORT int cuEventElapsedTime(float *ms, double *a, double *b)
{
    *ms = (float)((*b - *a) * 1e3);
    return CU_OK;
}

EXPORT int cuEventDestroy_v2(double *e)
{
    free(e);
    return CU_OK;
}

/* ---- modules: the image NVRTC "compiles" --------------------------------------- */

static const char MAGIC[8] = "KEMUIMG1";
/* The "PTX": text, as PTX is ("KEMUPTX\n", the image in hex, a NUL). */
static const char PTX_MAGIC[] = "KEMUPTX\n";

typedef struct fmodule fmodule;
typedef struct {
    fmodule *mod;
    void (*fn)(void);
    int nargs;
    char name[128];
} ffunc;

struct fmodule {
    void *so;
    kemu_thread_fn run;
    ffunc *fns;
    int nfns;
};

static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static int load_image(fmodule **out, const unsigned char *p, bool ptx);

/* A cubin, or PTX text (the driver compiles it: here, decodes it). */
EXPORT int cuModuleLoadData(fmodule **out, const void *image)
{
    const char *text = image;
    if (strncmp(text, PTX_MAGIC, strlen(PTX_MAGIC)) != 0)
        return load_image(out, image, false);
    text += strlen(PTX_MAGIC);
    size_t n = strlen(text) / 2;
    unsigned char *bytes = malloc(n ? n : 1);
    if (!bytes)
        return CU_OUT_OF_MEMORY;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        if (sscanf(text + 2 * i, "%2x", &v) != 1) {
            free(bytes);
            return CU_INVALID_IMAGE;
        }
        bytes[i] = (unsigned char)v;
    }
    trace("ptx %zu", n);
    int r = load_image(out, bytes, true);
    free(bytes);
    return r;
}

static int load_image(fmodule **out, const unsigned char *p, bool ptx)
{
    if (memcmp(p, MAGIC, sizeof MAGIC) != 0)
        return CU_INVALID_IMAGE;
    p += sizeof MAGIC;
    /* a cubin runs on its major version from its minor on; PTX on its
     * architecture and later (the driver compiles it) */
    int arch = (int)get32(p), cc = 0;
    p += 4;
    cuDeviceGetAttribute(&cc, 75, 0);
    cc *= 10;
    int minor = 0;
    cuDeviceGetAttribute(&minor, 76, 0);
    cc += minor;
    if (ptx ? arch > cc : arch / 10 != cc / 10 || arch > cc)
        return CU_NO_BINARY_FOR_GPU;
    fmodule *m = calloc(1, sizeof *m);
    uint32_t n = get32(p);
    p += 4;
    m->fns = calloc(n ? n : 1, sizeof *m->fns);
    for (uint32_t i = 0; i < n; i++) {
        m->fns[i].mod = m;
        m->fns[i].nargs = (int)get32(p);
        uint32_t len = get32(p + 4);
        memcpy(m->fns[i].name, p + 8, len < 127 ? len : 127);
        p += 8 + len;
    }
    m->nfns = (int)n;
    uint64_t size;
    memcpy(&size, p, 8);
    p += 8;
    char path[] = "/tmp/kiln_fakegpu_mod_XXXXXX";
    int fd = mkstemp(path);
    bool ok = fd >= 0 && write(fd, p, size) == (ssize_t)size;
    if (fd >= 0)
        close(fd);
    m->so = ok ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    unlink(path);
    void *bind = m->so ? dlsym(m->so, "kemu_bind") : NULL;
    void *run = m->so ? dlsym(m->so, "kemu_thread") : NULL;
    if (!bind || !run) {
        if (m->so)
            dlclose(m->so);
        free(m->fns);
        free(m);
        return CU_INVALID_IMAGE;
    }
    void (*bind_fn)(const kemu_hooks *);
    memcpy(&bind_fn, &bind, sizeof bind);
    bind_fn(&kemu_block_hooks);
    memcpy(&m->run, &run, sizeof run);
    *out = m;
    return CU_OK;
}

EXPORT int cuModuleUnload(fmodule *m)
{
    if (!m)
        return CU_INVALID_HANDLE;
    dlclose(m->so);
    free(m->fns);
    free(m);
    return CU_OK;
}

EXPORT int cuModuleGetFunction(ffunc **f, fmodule *m, const char *name)
{
    for (int i = 0; i < m->nfns; i++)
        if (strcmp(m->fns[i].name, name) == 0) {
            void *sym = dlsym(m->so, name);
            if (!sym)
                return CU_NOT_FOUND;
            memcpy(&m->fns[i].fn, &sym, sizeof sym);
            *f = &m->fns[i];
            return CU_OK;
        }
    return CU_NOT_FOUND;
}

static bool kemu_ready;

EXPORT int cuLaunchKernel(ffunc *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                          unsigned bz, unsigned shared, void *stream, void **params, void **extra)
{
    (void)stream;
    if (!f || !f->fn)
        return CU_INVALID_HANDLE;
    const char *fail = getenv("KILN_FAKE_GPU_FAIL_LAUNCH");
    if (fail && strcmp(fail, "1") == 0) /* a device that fails: the tests' failure paths */
        return CU_INVALID_VALUE;
    if (bx != KEMU_THREADS || by != 1 || bz != 1 || gx < 1 || gy != 1 || gz != 1 || shared ||
        extra || f->nargs > KEMU_ARGS) {
        fprintf(stderr, "fake GPU: %s launched with grid %ux%ux%u, block %ux%ux%u, %u shared\n",
                f->name, gx, gy, gz, bx, by, bz, shared);
        return CU_INVALID_VALUE;
    }
    void *args[KEMU_ARGS];
    pthread_mutex_lock(&mu);
    int r = CU_OK;
    for (int i = 0; i < f->nargs && r == CU_OK; i++) {
        memcpy(&args[i], params[i], sizeof args[i]);
        if (!inside((uint64_t)(uintptr_t)args[i], 0)) {
            fprintf(stderr, "fake GPU: argument %d of %s (%p) is not device memory\n", i, f->name,
                    args[i]);
            r = CU_INVALID_VALUE;
        }
    }
    if (r == CU_OK && !kemu_ready && kemu_block_init() != 0)
        r = CU_OUT_OF_MEMORY;
    kemu_ready = kemu_ready || r == CU_OK;
    if (r == CU_OK)
        kemu_block_run(f->mod->run, f->fn, f->nargs, args);
    pthread_mutex_unlock(&mu);
    trace("launch %s %u", f->name, gx);
    return r;
}

/* ---- NVRTC ------------------------------------------------------------------------ */

typedef struct {
    char *src, *log;
    int arch; /* the compile's: sm_XX (a cubin) or compute_XX (PTX) */
    unsigned char *image;
    size_t nimage;
} fprog;

EXPORT const char *nvrtcGetErrorString(int r)
{
    return r == 0 ? "NVRTC_SUCCESS" : r == 6 ? "NVRTC_ERROR_COMPILATION" : "NVRTC_ERROR";
}

EXPORT int nvrtcVersion(int *major, int *minor)
{
    *major = 0; /* never a real NVRTC's: cached images stay apart */
    *minor = 2; /* the image format's version */
    return 0;
}

EXPORT int nvrtcCreateProgram(fprog **out, const char *src, const char *name, int nh,
                              const char *const *h, const char *const *names)
{
    (void)name, (void)nh, (void)h, (void)names;
    fprog *p = calloc(1, sizeof *p);
    if (!p || !(p->src = strdup(src))) {
        free(p);
        return 1;
    }
    *out = p;
    return 0;
}

EXPORT int nvrtcDestroyProgram(fprog **p)
{
    if (*p) {
        free((*p)->src);
        free((*p)->log);
        free((*p)->image);
        free(*p);
        *p = NULL;
    }
    return 0;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)len + 1);
    if (s && fread(s, 1, (size_t)len, f) != (size_t)len) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) {
        s[len] = 0;
        *n = (size_t)len;
    }
    return s;
}

/* Appends n bytes to the image. */
static void put(fprog *p, size_t *cap, const void *data, size_t n)
{
    if (!p->image && *cap)
        return;
    if (p->nimage + n > *cap) {
        size_t c = *cap ? *cap : 4096;
        while (c < p->nimage + n)
            c *= 2;
        unsigned char *img = realloc(p->image, c);
        if (!img) {
            free(p->image);
            p->image = NULL;
            *cap = 1;
            return;
        }
        p->image = img;
        *cap = c;
    }
    memcpy(p->image + p->nimage, data, n);
    p->nimage += n;
}

/* The header: every `extern "C" __global__ void name(params)` and its
 * parameter count (the kernels' parameters hold no commas of their own). */
static void kernel_table(fprog *p, size_t *cap)
{
    static const char mark[] = "extern \"C\" __global__ void ";
    uint32_t n = 0;
    for (const char *s = strstr(p->src, mark); s; s = strstr(s + 1, mark))
        n++;
    put(p, cap, MAGIC, sizeof MAGIC);
    put(p, cap, &p->arch, 4);
    put(p, cap, &n, 4);
    for (const char *s = strstr(p->src, mark); s; s = strstr(s + 1, mark)) {
        const char *name = s + strlen(mark), *open = strchr(name, '(');
        uint32_t len = (uint32_t)(open - name), nargs = 1;
        int depth = 0;
        for (const char *c = open + 1; *c && (*c != ')' || depth); c++) {
            depth += (*c == '(') - (*c == ')');
            nargs += *c == ',' && depth == 0;
        }
        put(p, cap, &nargs, 4);
        put(p, cap, &len, 4);
        put(p, cap, name, len);
    }
}

EXPORT int nvrtcCompileProgram(fprog *p, int nopts, const char *const *opts)
{
    p->arch = 0;
    for (int i = 0; i < nopts; i++) /* --gpu-architecture=sm_90 or compute_75 */
        if (strncmp(opts[i], "--gpu-architecture=", 19) == 0 && strchr(opts[i], '_'))
            p->arch = atoi(strchr(opts[i], '_') + 1);
    if (p->arch < 50)
        return 7; /* NVRTC_ERROR_INVALID_OPTION */
    char dir[] = "/tmp/kiln_fakegpu_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char cu[64], so[64], log[64], cmd[1024];
    snprintf(cu, sizeof cu, "%s/k.cu", dir);
    snprintf(so, sizeof so, "%s/k.so", dir);
    snprintf(log, sizeof log, "%s/log", dir);
    FILE *f = fopen(cu, "w");
    if (f) {
        fputs(p->src, f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd,
             "clang++ -std=c++17 -O1 -g -w -fPIC -shared -include %s/tests/cuda_emu/shim.h -x c++ "
             "%s -o %s > %s 2>&1",
             KILN_SOURCE_DIR, cu, so, log);
    int rc = f ? system(cmd) : -1;
    size_t n = 0;
    free(p->log);
    p->log = rc != 0 ? slurp(log, &n) : NULL;
    char *bytes = rc == 0 ? slurp(so, &n) : NULL;
    unlink(cu);
    unlink(so);
    unlink(log);
    rmdir(dir);
    if (rc != 0 || !bytes) {
        free(bytes);
        return 6;
    }
    size_t cap = 0;
    uint64_t size = n;
    kernel_table(p, &cap);
    put(p, &cap, &size, 8);
    put(p, &cap, bytes, n);
    free(bytes);
    return p->image ? 0 : 1;
}

EXPORT int nvrtcGetProgramLogSize(fprog *p, size_t *n)
{
    *n = (p->log ? strlen(p->log) : 0) + 1;
    return 0;
}

EXPORT int nvrtcGetProgramLog(fprog *p, char *out)
{
    strcpy(out, p->log ? p->log : "");
    return 0;
}

EXPORT int nvrtcGetCUBINSize(fprog *p, size_t *n)
{
    *n = p->nimage;
    return p->image ? 0 : 1;
}

EXPORT int nvrtcGetCUBIN(fprog *p, char *out)
{
    memcpy(out, p->image, p->nimage);
    return 0;
}

EXPORT int nvrtcGetPTXSize(fprog *p, size_t *n)
{
    *n = strlen(PTX_MAGIC) + 2 * p->nimage + 1;
    return p->image ? 0 : 1;
}

EXPORT int nvrtcGetPTX(fprog *p, char *out)
{
    strcpy(out, PTX_MAGIC);
    char *o = out + strlen(PTX_MAGIC);
    for (size_t i = 0; i < p->nimage; i++, o += 2)
        snprintf(o, 3, "%02x", p->image[i]);
    return 0;
}

/* ---- cuBLAS ------------------------------------------------------------------------ */

static int handle_token;

EXPORT int cublasCreate_v2(void **h)
{
    *h = &handle_token;
    return 0;
}

EXPORT int cublasDestroy_v2(void *h)
{
    return h == &handle_token ? 0 : 1;
}

EXPORT int cublasSetStream_v2(void *h, void *s)
{
    return h == &handle_token && s == &stream_token ? 0 : 7;
}

EXPORT int cublasSetMathMode(void *h, int mode)
{
    (void)mode;
    return h == &handle_token ? 0 : 7;
}

/* Whether a column-major operand (rows x cols at ld, batch of them stride
 * apart) lies in device memory. */
static bool operand_ok(const void *a, int rows, int cols, int ld, long long stride, int batch,
                       size_t elem)
{
    size_t last =
        (size_t)(batch - 1) * (size_t)stride + (size_t)(cols - 1) * (size_t)ld + (size_t)rows;
    pthread_mutex_lock(&mu);
    bool ok = ld >= rows && inside((uint64_t)(uintptr_t)a, last * elem);
    pthread_mutex_unlock(&mu);
    return ok;
}

/* C = alpha op(A) op(B) + beta C, column-major, per batch: T is float or double. */
#define GEMM(NAME, T)                                                                              \
    EXPORT int NAME(void *h, int ta, int tb, int m, int n, int k, const T *alpha, const T *A,      \
                    int lda, long long sa, const T *B, int ldb, long long sb, const T *beta, T *C, \
                    int ldc, long long sc, int batch)                                              \
    {                                                                                              \
        if (h != &handle_token || m < 1 || n < 1 || k < 1 || batch < 1 ||                          \
            !operand_ok(A, ta ? k : m, ta ? m : k, lda, sa, batch, sizeof(T)) ||                   \
            !operand_ok(B, tb ? n : k, tb ? k : n, ldb, sb, batch, sizeof(T)) ||                   \
            !operand_ok(C, m, n, ldc, sc, batch, sizeof(T))) {                                     \
            fprintf(stderr, "fake GPU: " #NAME " of %dx%dx%d (batch %d) is out of bounds\n", m, n, \
                    k, batch);                                                                     \
            return 7;                                                                              \
        }                                                                                          \
        for (int b = 0; b < batch; b++)                                                            \
            for (int j = 0; j < n; j++)                                                            \
                for (int i = 0; i < m; i++) {                                                      \
                    T acc = 0;                                                                     \
                    for (int p = 0; p < k; p++)                                                    \
                        acc +=                                                                     \
                            A[b * sa + (ta ? p + (long long)i * lda : i + (long long)p * lda)] *   \
                            B[b * sb + (tb ? j + (long long)p * ldb : p + (long long)j * ldb)];    \
                    T *c = &C[b * sc + i + (long long)j * ldc];                                    \
                    *c = *alpha * acc + (*beta == 0 ? 0 : *beta * *c);                             \
                }                                                                                  \
        trace("gemm %dx%dx%d", m, n, k);                                                           \
        return 0;                                                                                  \
    }
GEMM(cublasSgemmStridedBatched, float)
GEMM(cublasDgemmStridedBatched, double)

/* ---- cuBLASLt ---------------------------------------------------------------------- */

typedef struct {
    int compute, transa, transb, epilogue;
    void *bias;
    int64_t bias_stride;
} lt_desc;

typedef struct {
    int type, batch;
    uint64_t rows, cols;
    int64_t ld, stride;
} lt_layout;

typedef struct {
    uint64_t algo[8];
    size_t workspace;
    int state;
    float waves;
    int reserved[4];
} lt_result;

static int lt_token;

EXPORT int cublasLtCreate(void **h)
{
    *h = &lt_token;
    return 0;
}

EXPORT int cublasLtDestroy(void *h)
{
    return h == &lt_token ? 0 : 1;
}

EXPORT int cublasLtMatmulDescCreate(lt_desc **d, int compute, int scale)
{
    if ((compute != 68 && compute != 77) || scale != 0) /* 32F (TF32 allowed), R_32F */
        return 7;
    *d = calloc(1, sizeof **d);
    (*d)->compute = compute;
    (*d)->epilogue = 1;
    return *d ? 0 : 3;
}

EXPORT int cublasLtMatmulDescDestroy(lt_desc *d)
{
    free(d);
    return 0;
}

/* Attribute attr of size n from buf into the field it names; 7 for others. */
EXPORT int cublasLtMatmulDescSetAttribute(lt_desc *d, int attr, const void *buf, size_t n)
{
    switch (attr) {
    case 3: return n == 4 ? (memcpy(&d->transa, buf, 4), 0) : 7;
    case 4: return n == 4 ? (memcpy(&d->transb, buf, 4), 0) : 7;
    case 7: return n == 4 ? (memcpy(&d->epilogue, buf, 4), 0) : 7;
    case 8: return n == 8 ? (memcpy(&d->bias, buf, 8), 0) : 7;
    case 10: return n == 8 ? (memcpy(&d->bias_stride, buf, 8), 0) : 7;
    }
    return 7;
}

EXPORT int cublasLtMatrixLayoutCreate(lt_layout **l, int type, uint64_t rows, uint64_t cols,
                                      int64_t ld)
{
    if (type != 0 || ld < (int64_t)rows)
        return 7;
    *l = calloc(1, sizeof **l);
    **l = (lt_layout){type, 1, rows, cols, ld, 0};
    return 0;
}

EXPORT int cublasLtMatrixLayoutDestroy(lt_layout *l)
{
    free(l);
    return 0;
}

EXPORT int cublasLtMatrixLayoutSetAttribute(lt_layout *l, int attr, const void *buf, size_t n)
{
    if (attr == 5 && n == 4)
        memcpy(&l->batch, buf, 4);
    else if (attr == 6 && n == 8)
        memcpy(&l->stride, buf, 8);
    else
        return 7;
    return 0;
}

/* A preference: the workspace and the alignments (A, B, C, D) an algorithm
 * may assume, 256 bytes unless set, as cuBLASLt's. */
typedef struct {
    uint64_t workspace;
    uint32_t align[4];
} lt_pref;

EXPORT int cublasLtMatmulPreferenceCreate(lt_pref **p)
{
    *p = calloc(1, sizeof **p);
    if (!*p)
        return 3;
    for (int i = 0; i < 4; i++)
        (*p)->align[i] = 256;
    return 0;
}

EXPORT int cublasLtMatmulPreferenceDestroy(lt_pref *p)
{
    free(p);
    return 0;
}

EXPORT int cublasLtMatmulPreferenceSetAttribute(lt_pref *p, int attr, const void *buf, size_t n)
{
    if (attr == 1 && n == 8)
        memcpy(&p->workspace, buf, 8);
    else if (attr >= 5 && attr <= 8 && n == 4)
        memcpy(&p->align[attr - 5], buf, 4);
    else
        return 7;
    return 0;
}

/* The alignment of pointer v: its lowest set bit, at most 256 (NULL: 256). */
static uint64_t alignment(const void *v)
{
    uint64_t a = (uint64_t)(uintptr_t)v;
    return a == 0 || (a & 255) == 0 ? 256 : a & (~a + 1);
}

/* op(A) (M x K) times op(B) (K x N) into D (M x N): whether the layouts agree. */
static bool lt_shapes(const lt_desc *d, const lt_layout *a, const lt_layout *b, const lt_layout *c)
{
    uint64_t am = d->transa ? a->cols : a->rows, ak = d->transa ? a->rows : a->cols;
    uint64_t bk = d->transb ? b->cols : b->rows, bn = d->transb ? b->rows : b->cols;
    return am == c->rows && bn == c->cols && ak == bk && a->batch == c->batch &&
           b->batch == c->batch;
}

/* One algorithm that wants 4 KiB of workspace (so the caller's is exercised)
 * and pointers as aligned as the preference allows (the bias: as its pointer's
 * value is now), recorded in the algorithm and checked by the matmul. */
EXPORT int cublasLtMatmulAlgoGetHeuristic(void *h, lt_desc *d, lt_layout *a, lt_layout *b,
                                          lt_layout *c, lt_layout *dd, lt_pref *pref, int want,
                                          lt_result *out, int *found)
{
    if (h != &lt_token || want < 1 || c != dd || !lt_shapes(d, a, b, c))
        return 7;
    memset(out, 0, sizeof *out);
    out->workspace = pref->workspace >= 4096 ? 4096 : 0;
    for (int i = 0; i < 4; i++)
        out->algo[i] = pref->align[i];
    out->algo[4] = d->epilogue & 4 ? alignment(d->bias) : 1;
    *found = 1;
    return 0;
}

EXPORT int cublasLtMatmul(void *h, lt_desc *d, const float *alpha, const float *A, lt_layout *la,
                          const float *B, lt_layout *lb, const float *beta, const float *C,
                          lt_layout *lc, float *D, lt_layout *ld, const uint64_t *algo, void *ws,
                          size_t wsbytes, void *stream)
{
    (void)stream;
    int relu = d->epilogue & 2, bias = d->epilogue & 4;
    if (h != &lt_token || !lt_shapes(d, la, lb, ld) || C != D || lc != ld || *beta != 0 ||
        (d->epilogue & ~6) > 1 || (bias && !d->bias) || (wsbytes && !ws)) {
        fprintf(stderr, "fake GPU: cublasLtMatmul's arguments disagree\n");
        return 7;
    }
    const void *ptrs[5] = {A, B, C, D, d->bias};
    for (int i = 0; i < 5; i++)
        if (algo[i] > 1 && (uint64_t)(uintptr_t)ptrs[i] % algo[i] != 0) {
            fprintf(stderr, "fake GPU: cublasLtMatmul's operand %d (%p) is not %llu-byte aligned\n",
                    i, ptrs[i], (unsigned long long)algo[i]);
            return 15; /* CUBLAS_STATUS_NOT_SUPPORTED */
        }
    int M = (int)ld->rows, N = (int)ld->cols, K = (int)(d->transa ? la->rows : la->cols);
    if (!operand_ok(A, (int)la->rows, (int)la->cols, (int)la->ld, la->stride, la->batch, 4) ||
        !operand_ok(B, (int)lb->rows, (int)lb->cols, (int)lb->ld, lb->stride, lb->batch, 4) ||
        !operand_ok(D, M, N, (int)ld->ld, ld->stride, ld->batch, 4) ||
        (bias && !operand_ok(d->bias, M, 1, M, 0, 1, 4)) ||
        (wsbytes && !operand_ok(ws, (int)wsbytes, 1, (int)wsbytes, 0, 1, 1))) {
        fprintf(stderr, "fake GPU: cublasLtMatmul of %dx%dx%d is out of bounds\n", M, N, K);
        return 7;
    }
    for (int q = 0; q < ld->batch; q++)
        for (int j = 0; j < N; j++)
            for (int i = 0; i < M; i++) {
                float acc = 0;
                for (int p = 0; p < K; p++)
                    acc += A[q * la->stride +
                             (d->transa ? p + (int64_t)i * la->ld : i + (int64_t)p * la->ld)] *
                           B[q * lb->stride +
                             (d->transb ? j + (int64_t)p * lb->ld : p + (int64_t)j * lb->ld)];
                float v = *alpha * acc + (bias ? ((const float *)d->bias)[i] : 0.0f);
                D[q * ld->stride + i + (int64_t)j * ld->ld] = relu ? fmaxf(v, 0.0f) : v;
            }
    trace("ltmatmul %dx%dx%d epilogue %d", M, N, K, d->epilogue);
    return 0;
}
