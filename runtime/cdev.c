/*
 * cdev.c - the C device: the device executor (dexec.c) over the C target's
 * compiled kernels, so the CPU suite runs everything the CUDA target does
 * between a module and its device.
 *
 * Its memory is host memory kept apart from the module's buffers (a missing
 * upload or download gives wrong numbers, as it would on a GPU); a launch
 * calls the kernel's exported kiln_kernel_<id> (cgen_opts.launch) with the
 * buffer table in the kiln_ctx of ir/abi.h, timed; after a kernel fails, the
 * rest of the run's launches do nothing, as CUDA kernels return early once
 * the error record is set.
 */
#include "ir/abi.h"
#include "runtime/device.h"
#include "runtime/rt.h"

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

KILN_CTX_DEF

typedef int (*kernel_fn)(kiln_ctx *);

typedef struct {
    rt_device base;
    void *handle;
    const kprogram *p;
    kernel_fn *fns;  /* per kernel index */
    void **ptrs;     /* the buffer table as pointers, handed to the code */
    kiln_prof *prof; /* per kernel index: launches and ns */
    kiln_ctx ctx;    /* the current run's */
    int threads;
} cdev;

static void c_destroy(rt_device *d)
{
    cdev *c = (cdev *)d;
    if (c->handle)
        dlclose(c->handle);
    ir_free(c->fns);
    ir_free(c->ptrs);
    ir_free(c->prof);
    ir_free(c);
}

static kiln_status c_alloc(rt_device *d, size_t n, rt_dptr *p)
{
    void *mem = ir_calloc(n ? n : 1);
    if (!mem)
        return rt_device_fail(d, KILN_ERR_NOMEM, "out of memory (%zu bytes)", n);
    *p = (rt_dptr)(uintptr_t)mem;
    return KILN_OK;
}

static void c_free(rt_device *d, rt_dptr p)
{
    (void)d;
    ir_free((void *)(uintptr_t)p);
}

static kiln_status c_upload(rt_device *d, rt_dptr dst, const void *src, size_t n)
{
    (void)d;
    memcpy((void *)(uintptr_t)dst, src, n);
    return KILN_OK;
}

static kiln_status c_download(rt_device *d, void *dst, rt_dptr src, size_t n)
{
    (void)d;
    memcpy(dst, (const void *)(uintptr_t)src, n);
    return KILN_OK;
}

static kiln_status c_copy(rt_device *d, rt_dptr dst, rt_dptr src, size_t n)
{
    (void)d;
    memmove((void *)(uintptr_t)dst, (const void *)(uintptr_t)src, n);
    return KILN_OK;
}

static kiln_status c_begin(rt_device *d, uint64_t seed, uint32_t run)
{
    cdev *c = (cdev *)d;
    c->ctx = (kiln_ctx){.bufs = c->ptrs, .seed = seed, .run = run, .threads = c->threads};
    return KILN_OK;
}

static kiln_status c_launch(rt_device *d, int k, const rt_dptr *table)
{
    cdev *c = (cdev *)d;
    if (c->ctx.err_code != 0) /* a kernel failed earlier in this run */
        return KILN_OK;
    for (int i = 0; i < c->p->nbufs; i++)
        c->ptrs[i] = (void *)(uintptr_t)table[i];
    uint64_t t0 = rt_now_ns();
    int rc = c->fns[k](&c->ctx);
    c->prof[k].calls++;
    c->prof[k].ns += rt_now_ns() - t0;
    if (rc != 0) {
        c->ctx.err_code = rc;
        c->ctx.err_kernel = k;
    }
    return KILN_OK;
}

static kiln_status c_finish(rt_device *d, rt_runerr *err)
{
    cdev *c = (cdev *)d;
    *err = (rt_runerr){c->ctx.err_code, c->ctx.err_kernel, c->ctx.err_axis, c->ctx.err_index,
                       c->ctx.err_size};
    return KILN_OK;
}

static void c_kernel_time(rt_device *d, int k, uint64_t *calls, uint64_t *ns)
{
    cdev *c = (cdev *)d;
    *calls = c->prof[k].calls;
    *ns = c->prof[k].ns;
}

static const rt_device_ops c_ops = {"c",    c_destroy, c_alloc,  c_free,   c_upload,     c_download,
                                    c_copy, c_begin,   c_launch, c_finish, c_kernel_time};

rt_device *rt_cdev_new(void *handle, const kprogram *p, int threads, char *why, size_t cap)
{
    cdev *c = ir_calloc(sizeof *c);
    size_t nk = (size_t)(p->nkernels ? p->nkernels : 1);
    if (c) {
        c->base.ops = &c_ops;
        c->handle = handle;
        c->p = p;
        c->threads = threads;
        c->fns = ir_calloc(sizeof *c->fns * nk);
        c->prof = ir_calloc(sizeof *c->prof * nk);
        c->ptrs = ir_calloc(sizeof(void *) * (size_t)(p->nbufs ? p->nbufs : 1));
    }
    if (!c || !c->fns || !c->prof || !c->ptrs) {
        snprintf(why, cap, "out of memory");
        if (c)
            c_destroy(&c->base);
        else
            dlclose(handle);
        return NULL;
    }
    for (int k = 0; k < p->nkernels; k++) {
        char sym[48];
        snprintf(sym, sizeof sym, "kiln_kernel_%d", p->kernels[k].id);
        void *f = dlsym(handle, sym);
        if (!f) {
            snprintf(why, cap, "the compiled code has no %s (not rendered for launches)", sym);
            c_destroy(&c->base);
            return NULL;
        }
        memcpy(&c->fns[k], &f, sizeof f);
    }
    return &c->base;
}
