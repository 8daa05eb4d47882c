/*
 * dexec.c - the device executor: runs an entry's kernels one launch at a
 * time on a device that holds its own memory (device.h: the CUDA GPU, or the
 * C device that the CPU suite tests this file through).
 *
 * Every module buffer (input, param, output) has a device copy next to its
 * host copy, and two flags say which copy is current. A run uploads the
 * buffers its kernels touch whose device copy is stale, launches every
 * kernel in schedule order, applies the entry's buffer copies and waits once;
 * then what it wrote is current on the device only. The host copy is brought
 * back when the host reads it (get, print, save: rt_host_read) and a host
 * write (set, load) makes the device copy stale (rt_host_wrote). Params and
 * optimizer state thus stay on the device across training steps.
 *
 * A failed run changes nothing, as on the C target: a kernel after a failing
 * one does nothing, and an entry that can fail has every buffer it writes
 * stashed on the device first and put back after a failure. Temporaries live
 * in one arena per entry (the memory plan's offsets); constants are uploaded
 * once.
 */
#include "ir/abi.h"
#include "rt.h"
#include "runtime/device.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

KILN_CTX_DEF

typedef struct {
    rt_device *dev; /* NULL until rt_dexec_attach */
    kprogram *prog; /* over the module's graph */
    char *source;
    int *modbuf;           /* per program buffer: the module buffer it is, else -1 */
    rt_dptr *mdev;         /* per module buffer: its device copy */
    bool *host_ok;         /* per module buffer: the host copy is current */
    bool *dev_ok;          /* per module buffer: the device copy is current */
    rt_dptr *consts;       /* per program buffer: a constant's device copy */
    rt_dptr *arena;        /* per entry: its temporaries */
    rt_dptr *stash;        /* per entry that can fail: room for what it writes, else 0 */
    rt_dptr **table;       /* per entry: the device address of every program buffer */
    unsigned char **touch; /* per entry, per module buffer: 1 read, 2 written */
} dexec;

kiln_status rt_device_fail(rt_device *d, kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
    return s;
}

static void dexec_destroy(kiln_module *m)
{
    dexec *x = m->impl;
    if (!x)
        return;
    int ne = x->prog ? x->prog->nentries : 0;
    if (x->dev) {
        for (int i = 0; x->mdev && i < m->nbufs; i++)
            if (x->mdev[i])
                x->dev->ops->free(x->dev, x->mdev[i]);
        for (int i = 0; x->consts && i < x->prog->nbufs; i++)
            if (x->consts[i])
                x->dev->ops->free(x->dev, x->consts[i]);
        for (int e = 0; e < ne; e++) {
            if (x->arena && x->arena[e])
                x->dev->ops->free(x->dev, x->arena[e]);
            if (x->stash && x->stash[e])
                x->dev->ops->free(x->dev, x->stash[e]);
        }
        x->dev->ops->destroy(x->dev);
    }
    for (int e = 0; e < ne; e++) {
        if (x->table)
            ir_free(x->table[e]);
        if (x->touch)
            ir_free(x->touch[e]);
    }
    ir_free(x->table);
    ir_free(x->touch);
    ir_free(x->arena);
    ir_free(x->stash);
    ir_free(x->consts);
    ir_free(x->mdev);
    ir_free(x->host_ok);
    ir_free(x->dev_ok);
    ir_free(x->modbuf);
    ir_free(x->source);
    kp_free(x->prog);
    ir_free(x);
    m->impl = NULL;
}

/* Marks in t (per module buffer) what kernel k reads (1) and writes (2). */
static void kernel_touch(const dexec *x, const kernel *k, unsigned char *t)
{
    for (int i = 0; i < k->nx; i++)
        if (k->x[i].kind == KX_LOAD && k->x[i].buf >= 0 && x->modbuf[k->x[i].buf] >= 0)
            t[x->modbuf[k->x[i].buf]] |= 1;
    int ops[KK_MAX_OPERANDS], nops = kk_operand_bufs(k, ops);
    for (int i = 0; i < nops; i++)
        if (x->modbuf[ops[i]] >= 0)
            t[x->modbuf[ops[i]]] |= 1;
    for (int i = 0; i < k->nstores; i++) {
        const kk_store *s = &k->stores[i];
        if (s->buf >= 0 && x->modbuf[s->buf] >= 0)
            t[x->modbuf[s->buf]] |= s->accumulate ? 3 : 2;
    }
}

/* Brings the device copy of module buffer i up to date. */
static kiln_status to_device(kiln_module *m, dexec *x, int i)
{
    if (x->dev_ok[i])
        return KILN_OK;
    const rt_buf *b = &m->bufs[i];
    kiln_status s =
        b->nbytes ? x->dev->ops->upload(x->dev, x->mdev[i], b->data, b->nbytes) : KILN_OK;
    x->dev_ok[i] = s == KILN_OK;
    return s;
}

static kiln_status device_error(kiln_module *m, dexec *x, const char *fn)
{
    return rt_fail(m, KILN_ERR_DEVICE, "%s: the %s device failed: %s", fn, x->dev->ops->name,
                   x->dev->error);
}

/* Copies every buffer entry e writes to or from its stash. */
static kiln_status stash(kiln_module *m, dexec *x, int e, bool back)
{
    rt_dptr at = x->stash[e];
    for (int i = 0; i < m->nbufs; i++) {
        size_t n = m->bufs[i].nbytes;
        if (!(x->touch[e][i] & 2) || !n)
            continue;
        kiln_status s = back ? x->dev->ops->copy(x->dev, x->mdev[i], at, n)
                             : x->dev->ops->copy(x->dev, at, x->mdev[i], n);
        if (s != KILN_OK)
            return s;
        at += (n + 255) & ~(size_t)255;
    }
    return KILN_OK;
}

static kiln_status dexec_run(kiln_module *m, int e, const bool *needed)
{
    (void)needed;
    dexec *x = m->impl;
    const kprogram *p = x->prog;
    const kentry *ke = &p->entries[e];
    rt_device *d = x->dev;
    kiln_status s = KILN_OK;
    for (int i = 0; i < m->nbufs && s == KILN_OK; i++)
        if (x->touch[e][i])
            s = to_device(m, x, i);
    if (s == KILN_OK && x->stash[e])
        s = stash(m, x, e, false);
    s = s ? s : d->ops->begin(d, m->seed, m->run);
    for (int k = 0; k < ke->nkernels && s == KILN_OK; k++)
        s = d->ops->launch(d, ke->kernels[k], x->table[e]);
    for (int c = 0; c < ke->ncopies && s == KILN_OK; c++) {
        int src = ke->copies[c].src, dst = ke->copies[c].dst;
        size_t n = (size_t)p->bufs[dst].numel * kiln_dtype_size(p->bufs[dst].dtype);
        if (n)
            s = d->ops->copy(d, x->table[e][dst], x->table[e][src], n);
    }
    rt_runerr err = {0};
    s = s ? s : d->ops->finish(d, &err);
    if (s != KILN_OK) { /* the device itself failed mid-run: what the run wrote there is not
                           to be trusted where a current host copy can be sent again */
        for (int i = 0; i < m->nbufs; i++)
            if ((x->touch[e][i] & 2) && x->host_ok[i])
                x->dev_ok[i] = false;
        return device_error(m, x, "kiln_module_run");
    }
    if (err.code != KILN_RUNERR_NONE) {
        if (x->stash[e] && (stash(m, x, e, true) != KILN_OK || d->ops->finish(d, &err) != KILN_OK))
            return device_error(m, x, "kiln_module_run");
        return rt_runerr_fail(m, err.code, err.axis, err.index, err.size);
    }
    for (int i = 0; i < m->nbufs; i++)
        if (x->touch[e][i] & 2) {
            x->dev_ok[i] = true;
            x->host_ok[i] = false;
        }
    return KILN_OK;
}

static kiln_status dexec_host_read(kiln_module *m, rt_buf *b)
{
    dexec *x = m->impl;
    int i = (int)(b - m->bufs);
    if (x->host_ok[i] || !b->nbytes)
        return KILN_OK;
    if (x->dev->ops->download(x->dev, b->data, x->mdev[i], b->nbytes) != KILN_OK)
        return device_error(m, x, "kiln_module");
    x->host_ok[i] = true;
    return KILN_OK;
}

static void dexec_host_wrote(kiln_module *m, rt_buf *b)
{
    dexec *x = m->impl;
    int i = (int)(b - m->bufs);
    x->host_ok[i] = true;
    x->dev_ok[i] = false;
}

static const char *dexec_source(kiln_module *m)
{
    return ((dexec *)m->impl)->source;
}

static void dexec_profile(kiln_module *m, FILE *f)
{
    dexec *x = m->impl;
    const kprogram *p = x->prog;
    kiln_prof *prof = ir_calloc(sizeof *prof * (size_t)(p->nkernels ? p->nkernels : 1));
    if (!prof)
        return;
    for (int k = 0; k < p->nkernels && x->dev; k++)
        x->dev->ops->kernel_time(x->dev, k, &prof[k].calls, &prof[k].ns);
    rt_profile_rows(f, p, prof);
    ir_free(prof);
}

const rt_executor rt_dexec_c = {"device:c",    dexec_run,       dexec_source,    dexec_profile,
                                dexec_destroy, dexec_host_read, dexec_host_wrote};
const rt_executor rt_dexec_cuda = {"device:cuda", dexec_run,       dexec_source,    dexec_profile,
                                   dexec_destroy, dexec_host_read, dexec_host_wrote};

kiln_status rt_dexec_new(kiln_module *m, kiln_graph *g, rt_code *code, const char *fn)
{
    dexec *x = ir_calloc(sizeof *x);
    if (!x) {
        rt_code_free(code);
        return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    }
    m->impl = x;
    m->exec = m->target == KILN_TARGET_CUDA ? &rt_dexec_cuda : &rt_dexec_c;
    x->prog = code->prog;
    x->source = code->source;
    *code = (rt_code){NULL, NULL, 0};
    const kprogram *p = x->prog;
    size_t ne = (size_t)(p->nentries ? p->nentries : 1), nb = (size_t)(p->nbufs ? p->nbufs : 1),
           nm = (size_t)(m->nbufs ? m->nbufs : 1);
    x->modbuf = ir_alloc(sizeof(int) * nb);
    x->mdev = ir_calloc(sizeof(rt_dptr) * nm);
    x->host_ok = ir_alloc(sizeof(bool) * nm);
    x->dev_ok = ir_calloc(sizeof(bool) * nm);
    x->consts = ir_calloc(sizeof(rt_dptr) * nb);
    x->arena = ir_calloc(sizeof(rt_dptr) * ne);
    x->stash = ir_calloc(sizeof(rt_dptr) * ne);
    x->table = ir_calloc(sizeof(rt_dptr *) * ne);
    x->touch = ir_calloc(sizeof(unsigned char *) * ne);
    if (!x->modbuf || !x->mdev || !x->host_ok || !x->dev_ok || !x->consts || !x->arena ||
        !x->stash || !x->table || !x->touch)
        return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    for (int i = 0; i < m->nbufs; i++)
        x->host_ok[i] = true;
    for (int i = 0; i < p->nbufs; i++) {
        const kbuf *b = &p->bufs[i];
        x->modbuf[i] = -1;
        if (b->role == KB_OUTPUT)
            x->modbuf[i] = m->entry_buf[b->entry] + b->index;
        else if (b->role == KB_INPUT || b->role == KB_PARAM)
            x->modbuf[i] = (int)(rt_leaf(m, p->g->nodes[b->node]) - m->bufs);
    }
    for (int e = 0; e < p->nentries; e++) {
        x->table[e] = ir_calloc(sizeof(rt_dptr) * nb);
        x->touch[e] = ir_calloc(nm);
        if (!x->table[e] || !x->touch[e])
            return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
        const kentry *ke = &p->entries[e];
        for (int k = 0; k < ke->nkernels; k++)
            kernel_touch(x, &p->kernels[ke->kernels[k]], x->touch[e]);
        for (int c = 0; c < ke->ncopies; c++) {
            int src = x->modbuf[ke->copies[c].src], dst = x->modbuf[ke->copies[c].dst];
            if (src >= 0)
                x->touch[e][src] |= 1;
            if (dst >= 0)
                x->touch[e][dst] |= 2;
        }
    }
    return KILN_OK;
}

/* Device memory for everything, constants uploaded, the tables filled. */
static kiln_status lay_out(kiln_module *m, dexec *x)
{
    rt_device *d = x->dev;
    const kprogram *p = x->prog;
    kiln_status s = KILN_OK;
    for (int i = 0; i < m->nbufs && s == KILN_OK; i++)
        s = d->ops->alloc(d, m->bufs[i].nbytes, &x->mdev[i]);
    for (int i = 0; i < p->nbufs && s == KILN_OK; i++) {
        const kbuf *b = &p->bufs[i];
        size_t n = (size_t)b->numel * kiln_dtype_size(b->dtype);
        if (b->role != KB_CONST)
            continue;
        s = d->ops->alloc(d, n, &x->consts[i]);
        if (s == KILN_OK && n && b->data)
            s = d->ops->upload(d, x->consts[i], b->data, n);
    }
    for (int e = 0; e < p->nentries && s == KILN_OK; e++) {
        s = d->ops->alloc(d, (size_t)p->entries[e].arena_bytes, &x->arena[e]);
        bool can_fail = false;
        for (int k = 0; k < p->entries[e].nkernels; k++)
            can_fail = can_fail || kk_can_fail(&p->kernels[p->entries[e].kernels[k]]);
        size_t bytes = 0;
        for (int i = 0; i < m->nbufs; i++)
            if (x->touch[e][i] & 2)
                bytes += (m->bufs[i].nbytes + 255) & ~(size_t)255;
        if (s == KILN_OK && can_fail)
            s = d->ops->alloc(d, bytes, &x->stash[e]);
        for (int i = 0; i < p->nbufs && s == KILN_OK; i++) {
            const kbuf *b = &p->bufs[i];
            x->table[e][i] = x->modbuf[i] >= 0    ? x->mdev[x->modbuf[i]]
                             : b->role == KB_TEMP ? x->arena[e] + (rt_dptr)b->offset
                                                  : x->consts[i];
        }
    }
    return s;
}

kiln_status rt_dexec_attach(kiln_module *m, kiln_graph *g, rt_device *dev, const char *fn)
{
    dexec *x = m->impl;
    x->dev = dev;
    if (lay_out(m, x) != KILN_OK)
        return rt_compile_fail(g, KILN_ERR_DEVICE, "%s: the %s device failed: %s", fn,
                               dev->ops->name, dev->error);
    return KILN_OK;
}

void rt_dexec_parts(const kiln_module *m, const kprogram **p, const char **source,
                    const int **modbuf, unsigned char *const **touch)
{
    const dexec *x = m->impl;
    *p = x->prog;
    *source = x->source;
    if (modbuf)
        *modbuf = x->modbuf;
    if (touch)
        *touch = x->touch;
}
