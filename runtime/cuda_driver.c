/*
 * cuda_driver.c - the CUDA driver, opened with dlopen (never linked: Kiln
 * builds and runs its CPU targets on machines without a GPU or a driver).
 *
 * Opened once per process: the library, every entry point the executor
 * needs, cuInit(0), then the device count. Each way this can fail leaves one
 * message naming what is missing, which kiln_compile reports for the CUDA
 * target. $KILN_LIBCUDA names another library instead (the tests point it at
 * the toolkit's stub and at fakes); like $KILN_CC it is trusted.
 */
#include "runtime/cuda_driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static rt_cuda_api api;
static bool loaded;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The driver's text for r. The stub library's cuGetErrorString fails too, so
 * the codes cuInit gives without a driver have their cuda.h text here. */
static const char *error_text(rt_cu_result r)
{
    static char unknown[32];
    const char *s = NULL;
    if (api.get_error_string && api.get_error_string(r, &s) == 0 && s)
        return s;
    if (r == 34)
        return "CUDA_ERROR_STUB_LIBRARY: CUDA driver is a stub library";
    if (r == 100)
        return "CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected";
    snprintf(unknown, sizeof unknown, "CUDA error %d", r);
    return unknown;
}

/* Every entry point; alt is an older name taken when the first is absent
 * (cuEventElapsedTime_v2 is new in CUDA 12.8; the original is still
 * exported with the same signature). */
static bool resolve(void *h, const char *lib)
{
    struct {
        void **slot;
        const char *name, *alt;
    } syms[] = {
        {(void **)&api.get_error_string, "cuGetErrorString", NULL},
        {(void **)&api.init, "cuInit", NULL},
        {(void **)&api.device_get_count, "cuDeviceGetCount", NULL},
        {(void **)&api.device_get, "cuDeviceGet", NULL},
        {(void **)&api.device_get_name, "cuDeviceGetName", NULL},
        {(void **)&api.device_get_attribute, "cuDeviceGetAttribute", NULL},
        {(void **)&api.primary_ctx_retain, "cuDevicePrimaryCtxRetain", NULL},
        {(void **)&api.primary_ctx_release, "cuDevicePrimaryCtxRelease_v2", NULL},
        {(void **)&api.ctx_set_current, "cuCtxSetCurrent", NULL},
        {(void **)&api.module_load_data, "cuModuleLoadData", NULL},
        {(void **)&api.module_unload, "cuModuleUnload", NULL},
        {(void **)&api.module_get_function, "cuModuleGetFunction", NULL},
        {(void **)&api.launch_kernel, "cuLaunchKernel", NULL},
        {(void **)&api.mem_alloc, "cuMemAlloc_v2", NULL},
        {(void **)&api.mem_free, "cuMemFree_v2", NULL},
        {(void **)&api.memcpy_htod_async, "cuMemcpyHtoDAsync_v2", NULL},
        {(void **)&api.memcpy_dtoh_async, "cuMemcpyDtoHAsync_v2", NULL},
        {(void **)&api.memcpy_dtod_async, "cuMemcpyDtoDAsync_v2", NULL},
        {(void **)&api.memset_d8_async, "cuMemsetD8Async", NULL},
        {(void **)&api.stream_create, "cuStreamCreate", NULL},
        {(void **)&api.stream_destroy, "cuStreamDestroy_v2", NULL},
        {(void **)&api.stream_synchronize, "cuStreamSynchronize", NULL},
        {(void **)&api.event_create, "cuEventCreate", NULL},
        {(void **)&api.event_record, "cuEventRecord", NULL},
        {(void **)&api.event_elapsed_time, "cuEventElapsedTime_v2", "cuEventElapsedTime"},
        {(void **)&api.event_destroy, "cuEventDestroy_v2", NULL},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        void *f = dlsym(h, syms[i].name);
        if (!f && syms[i].alt)
            f = dlsym(h, syms[i].alt);
        if (!f) {
            snprintf(load_error, sizeof load_error,
                     "the NVIDIA driver is too old: %s is missing symbol %s", lib, syms[i].name);
            return false;
        }
        memcpy(syms[i].slot, &f, sizeof f);
    }
    return true;
}

static void load(void)
{
    const char *env = getenv("KILN_LIBCUDA");
    const char *lib = env && *env ? env : "libcuda.so.1";
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(load_error, sizeof load_error, "the NVIDIA driver is not installed (%s)",
                 e ? e : lib);
        return;
    }
    rt_cu_result r;
    int n = 0;
    if (!resolve(h, lib)) {
        /* load_error is set */
    } else if ((r = api.init(0)) != 0) {
        snprintf(load_error, sizeof load_error,
                 "cuInit failed (%s): %s is the CUDA stub library or a driver without "
                 "a device",
                 error_text(r), lib);
    } else if ((r = api.device_get_count(&n)) != 0) {
        snprintf(load_error, sizeof load_error, "cuDeviceGetCount failed (%s)", error_text(r));
    } else if (n < 1) {
        snprintf(load_error, sizeof load_error, "no CUDA device: the driver (%s) found none", lib);
    } else {
        api.devices = n;
        loaded = true;
        return;
    }
    memset(&api, 0, sizeof api);
    dlclose(h);
}

int rt_cuda_device_cc(void)
{
    const rt_cuda_api *cu = NULL;
    int dev = 0, major = 0, minor = 0;
    if (rt_cuda_driver(&cu, NULL, 0) != KILN_OK || cu->device_get(&dev, 0) != 0 ||
        cu->device_get_attribute(&major, 75, dev) != 0 ||
        cu->device_get_attribute(&minor, 76, dev) != 0)
        return 0;
    return major * 10 + minor;
}

kiln_status rt_cuda_driver(const rt_cuda_api **out, char *why, size_t cap)
{
    pthread_once(&once, load);
    if (out)
        *out = loaded ? &api : NULL;
    if (!loaded && why && cap)
        snprintf(why, cap, "%s", load_error);
    return loaded ? KILN_OK : KILN_ERR_DEVICE;
}
