/*
 * nvrtc.h - CUDA C -> cubin through NVRTC, loaded with dlopen (nvrtc.c).
 */
#ifndef KILN_NVRTC_H
#define KILN_NVRTC_H

#include "ir/ir.h"

/* Whether NVRTC could be loaded; why (may be NULL) says what is missing. */
bool rt_nvrtc_available(char *why, size_t cap);

/* Compiles src (named name in messages) for sm_<sm>. On KILN_OK *cubin (if
 * cubin and n are not NULL) holds the image; *log holds NVRTC's log when it
 * said anything, warnings included (ir_alloc'd, or NULL). KILN_ERR_COMPILE:
 * the log has the errors; KILN_ERR_DEVICE: NVRTC is not installed (the log
 * says so). */
kiln_status rt_nvrtc_compile(const char *src, const char *name, int sm, void **cubin, size_t *n,
                             char **log);
/* The same for the virtual architecture compute_<sm>: *ptx is PTX text, its
 * NUL included in *n (the driver compiles it for the GPU it runs on). */
kiln_status rt_nvrtc_ptx(const char *src, const char *name, int sm, void **ptx, size_t *n,
                         char **log);

/* NVRTC's version as major * 1000 + minor * 10 (12080: 12.8); 0 without NVRTC. */
int rt_nvrtc_version(void);

#endif /* KILN_NVRTC_H */
