/*
 * nvrtc.c - CUDA C to a cubin with NVRTC, opened with dlopen (never linked:
 * Kiln builds and runs its CPU targets on machines without the CUDA toolkit).
 *
 * NVRTC needs no GPU, so the CPU test suite compiles every generated CUDA
 * source through it. A compile that logs anything (a warning included) is
 * reported with the log: generated code should compile silently.
 * $KILN_NVRTC names another library instead (the tests point it at a fake
 * GPU, tests/cuda_emu/fake_gpu.c); like $KILN_CC it is trusted.
 */
#include "runtime/nvrtc.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct nvrtc_prog *nvrtc_prog;
typedef struct {
    const char *(*error_string)(int);
    int (*create)(nvrtc_prog *, const char *, const char *, int, const char *const *,
                  const char *const *);
    int (*compile)(nvrtc_prog, int, const char *const *);
    int (*log_size)(nvrtc_prog, size_t *);
    int (*log)(nvrtc_prog, char *);
    int (*cubin_size)(nvrtc_prog, size_t *);
    int (*cubin)(nvrtc_prog, char *);
    int (*ptx_size)(nvrtc_prog, size_t *);
    int (*ptx)(nvrtc_prog, char *);
    int (*destroy)(nvrtc_prog *);
    int (*version)(int *, int *);
} nvrtc_api;

static nvrtc_api api;
static bool loaded;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    static const char *const names[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12",
                                        "/usr/local/cuda/lib64/libnvrtc.so"};
    const char *env = getenv("KILN_NVRTC");
    void *h = env && *env ? dlopen(env, RTLD_NOW | RTLD_LOCAL) : NULL;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !h && !(env && *env); i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h && env && *env) {
        const char *e = dlerror();
        snprintf(load_error, sizeof load_error, "NVRTC cannot be loaded from $KILN_NVRTC (%s)",
                 e ? e : env);
        return;
    }
    if (!h) {
        snprintf(load_error, sizeof load_error,
                 "NVRTC (libnvrtc.so) is not installed: the CUDA toolkit provides it");
        return;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {{(void **)&api.error_string, "nvrtcGetErrorString"},
                {(void **)&api.create, "nvrtcCreateProgram"},
                {(void **)&api.compile, "nvrtcCompileProgram"},
                {(void **)&api.log_size, "nvrtcGetProgramLogSize"},
                {(void **)&api.log, "nvrtcGetProgramLog"},
                {(void **)&api.cubin_size, "nvrtcGetCUBINSize"},
                {(void **)&api.cubin, "nvrtcGetCUBIN"},
                {(void **)&api.ptx_size, "nvrtcGetPTXSize"},
                {(void **)&api.ptx, "nvrtcGetPTX"},
                {(void **)&api.destroy, "nvrtcDestroyProgram"},
                {(void **)&api.version, "nvrtcVersion"}};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *f = dlsym(h, syms[i].name);
        if (!f) {
            snprintf(load_error, sizeof load_error, "NVRTC lacks %s (too old a toolkit)",
                     syms[i].name);
            dlclose(h);
            return;
        }
        memcpy(syms[i].slot, &f, sizeof f);
    }
    loaded = true;
}

bool rt_nvrtc_available(char *why, size_t cap)
{
    pthread_once(&once, load);
    if (!loaded && why)
        snprintf(why, cap, "%s", load_error);
    return loaded;
}

/* src for sm_<sm> (a cubin) or compute_<sm> (ptx: PTX text). */
static kiln_status compile(const char *src, const char *name, int sm, bool ptx, void **cubin,
                           size_t *n, char **log)
{
    *log = NULL;
    if (cubin)
        *cubin = NULL;
    if (n)
        *n = 0;
    char why[512];
    if (!rt_nvrtc_available(why, sizeof why)) {
        *log = ir_alloc(strlen(why) + 1);
        if (*log)
            memcpy(*log, why, strlen(why) + 1);
        return KILN_ERR_DEVICE;
    }
    nvrtc_prog prog = NULL;
    int rc = api.create(&prog, src, name, 0, NULL, NULL);
    if (rc != 0) {
        const char *msg = api.error_string(rc);
        *log = ir_alloc(strlen(msg) + 1);
        if (*log)
            memcpy(*log, msg, strlen(msg) + 1);
        return KILN_ERR_NOMEM;
    }
    char arch[48];
    snprintf(arch, sizeof arch, "--gpu-architecture=%s_%d", ptx ? "compute" : "sm", sm);
    const char *opts[] = {arch, "--std=c++17", "--fmad=true"};
    int crc = api.compile(prog, (int)(sizeof opts / sizeof opts[0]), opts);
    size_t len = 0;
    api.log_size(prog, &len);
    kiln_status s = KILN_OK;
    if (len > 1) { /* the size counts the NUL */
        *log = ir_alloc(len);
        if (*log)
            api.log(prog, *log);
    }
    if (crc != 0) {
        s = KILN_ERR_COMPILE;
    } else if (cubin && n) {
        (ptx ? api.ptx_size : api.cubin_size)(prog, n);
        *cubin = ir_alloc(*n ? *n : 1);
        if (!*cubin || (ptx ? api.ptx : api.cubin)(prog, *cubin) != 0)
            s = KILN_ERR_NOMEM;
    }
    api.destroy(&prog);
    return s;
}

kiln_status rt_nvrtc_compile(const char *src, const char *name, int sm, void **cubin, size_t *n,
                             char **log)
{
    return compile(src, name, sm, false, cubin, n, log);
}

kiln_status rt_nvrtc_ptx(const char *src, const char *name, int sm, void **ptx, size_t *n,
                         char **log)
{
    return compile(src, name, sm, true, ptx, n, log);
}

int rt_nvrtc_version(void)
{
    int major = 0, minor = 0;
    if (!rt_nvrtc_available(NULL, 0) || api.version(&major, &minor) != 0)
        return 0;
    return major * 1000 + minor * 10;
}
