/*
 * cuda_driver.h - the CUDA driver API, opened with dlopen once per process
 * (cuda_driver.c). The types are the driver's own, declared here so Kiln
 * builds without the CUDA toolkit's headers.
 */
#ifndef KILN_CUDA_DRIVER_H
#define KILN_CUDA_DRIVER_H

#include "kiln.h"

#include <stddef.h>

typedef int rt_cu_result; /* CUresult: 0 is CUDA_SUCCESS */
typedef int rt_cu_device;
typedef unsigned long long rt_cu_deviceptr;
typedef struct rt_cu_ctx *rt_cu_context;
typedef struct rt_cu_mod *rt_cu_module;
typedef struct rt_cu_func *rt_cu_function;
typedef struct rt_cu_stream *rt_cu_stream;
typedef struct rt_cu_event *rt_cu_event;

/* The entry points a CUDA executor needs; each field is the driver function
 * its name spells (cuda_driver.c's table maps them, _v2 where exported). */
typedef struct {
    rt_cu_result (*init)(unsigned);
    rt_cu_result (*get_error_string)(rt_cu_result, const char **);
    rt_cu_result (*device_get_count)(int *);
    rt_cu_result (*device_get)(rt_cu_device *, int);
    rt_cu_result (*device_get_name)(char *, int, rt_cu_device);
    rt_cu_result (*device_get_attribute)(int *, int, rt_cu_device); /* compute capability */
    rt_cu_result (*primary_ctx_retain)(rt_cu_context *, rt_cu_device);
    rt_cu_result (*primary_ctx_release)(rt_cu_device);
    rt_cu_result (*ctx_set_current)(rt_cu_context);
    rt_cu_result (*module_load_data)(rt_cu_module *, const void *);
    rt_cu_result (*module_unload)(rt_cu_module);
    rt_cu_result (*module_get_function)(rt_cu_function *, rt_cu_module, const char *);
    rt_cu_result (*launch_kernel)(rt_cu_function, unsigned, unsigned, unsigned, unsigned, unsigned,
                                  unsigned, unsigned, rt_cu_stream, void **, void **);
    rt_cu_result (*mem_alloc)(rt_cu_deviceptr *, size_t);
    rt_cu_result (*mem_free)(rt_cu_deviceptr);
    rt_cu_result (*memcpy_htod_async)(rt_cu_deviceptr, const void *, size_t, rt_cu_stream);
    rt_cu_result (*memcpy_dtoh_async)(void *, rt_cu_deviceptr, size_t, rt_cu_stream);
    rt_cu_result (*memcpy_dtod_async)(rt_cu_deviceptr, rt_cu_deviceptr, size_t, rt_cu_stream);
    rt_cu_result (*memset_d8_async)(rt_cu_deviceptr, unsigned char, size_t, rt_cu_stream);
    rt_cu_result (*stream_create)(rt_cu_stream *, unsigned);
    rt_cu_result (*stream_destroy)(rt_cu_stream);
    rt_cu_result (*stream_synchronize)(rt_cu_stream);
    rt_cu_result (*event_create)(rt_cu_event *, unsigned);
    rt_cu_result (*event_record)(rt_cu_event, rt_cu_stream);
    rt_cu_result (*event_elapsed_time)(float *, rt_cu_event, rt_cu_event);
    rt_cu_result (*event_destroy)(rt_cu_event);
    int devices; /* cuDeviceGetCount's answer, at least 1 */
} rt_cuda_api;

/* Opens the driver ($KILN_LIBCUDA, else libcuda.so.1) and initialises it, once
 * per process. KILN_OK: *api (when api is not NULL) holds every entry point
 * and at least one device. KILN_ERR_DEVICE: why (when not NULL) says what is
 * missing: the driver, a symbol (too old a driver), a working cuInit (the
 * toolkit's stub library), or a device. */
kiln_status rt_cuda_driver(const rt_cuda_api **api, char *why, size_t cap);

/* The first device's compute capability (major * 10 + minor), or 0 where
 * there is no usable driver or device. */
int rt_cuda_device_cc(void);

#endif /* KILN_CUDA_DRIVER_H */
