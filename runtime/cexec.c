/*
 * cexec.c - the executor of compiled kernels: runs an entry of a loaded
 * shared object (generated C) against the module's buffers.
 *
 * Requires the module, its kernel program and C source (compile.c). Per entry
 * it keeps the pointer table handed to the code, the arena of temporaries and,
 * when a kernel can fail, a stash of the outputs a failed run could have
 * written, so it changes nothing. The code's ABI is ir/abi.h's.
 */
#include "ir/abi.h"
#include "rt.h"

#include <dlfcn.h>
#include <string.h>
#include <time.h>

KILN_CTX_DEF

typedef int (*entry_fn)(kiln_ctx *);

typedef struct {
    void *handle;
    kprogram *prog; /* over the module's graph (prog->g == m->g) */
    char *source;
    entry_fn *entries;
    void ***bufs;    /* per entry: the pointer table handed to the code */
    void **arena;    /* per entry: TEMP storage */
    void **stash;    /* per entry that can fail: a copy of its outputs, restored on failure */
    int **stashed;   /* per entry: the outputs stashed (written by a kernel that runs
                        before a failing one can stop the entry), ended by -1 */
    int threads;     /* kiln_compile_opts.threads: 0 = every core */
    kiln_prof *prof; /* per kernel id: calls and ns, kept by the generated code */
    int *modbuf;     /* per program buffer: the module buffer it is (inputs, params,
                        outputs), else -1; looked up once, read on every run */
    int **last;      /* per entry, per program buffer: for the entry's own outputs, the
                        id of the last of its kernels that reads or writes it, else -1 */
} cexec;

/* The context of a data-parallel backward's run: after each kernel, the
 * outputs it finished go to rt_dp_ready (their all-reduce starts), and the
 * started ones progress (rt_dp_poll). */
typedef struct {
    kiln_ctx ctx; /* first: the code's kiln_ctx * is this */
    kiln_module *m;
    const int *last, *modbuf;
    int nbufs;
} dp_ctx;

static void dp_tick(kiln_ctx *ctx, int32_t id)
{
    rt_prof_tick(ctx, id);
    dp_ctx *d = (dp_ctx *)ctx;
    for (int b = 0; b < d->nbufs; b++)
        if (d->last[b] == id)
            rt_dp_ready(d->m, d->modbuf[b]);
    rt_dp_poll(d->m);
}

/* c->last[e]: the last kernel of entry e touching each of its outputs. */
static bool last_uses(cexec *c, int e)
{
    const kprogram *p = c->prog;
    int *last = c->last[e] = ir_alloc(sizeof(int) * (size_t)(p->nbufs ? p->nbufs : 1));
    if (!last)
        return false;
    for (int b = 0; b < p->nbufs; b++)
        last[b] = -1;
    const kentry *x = &p->entries[e];
    for (int i = 0; i < x->nkernels; i++) {
        const kernel *k = &p->kernels[x->kernels[i]];
        for (int j = 0; j < k->nstores; j++)
            last[k->stores[j].buf] = k->id;
        for (int j = 0; j < k->nx; j++)
            if (k->x[j].kind == KX_LOAD)
                last[k->x[j].buf] = k->id;
        int ops[KK_MAX_OPERANDS], nops = kk_operand_bufs(k, ops);
        for (int j = 0; j < nops; j++)
            last[ops[j]] = k->id;
    }
    for (int b = 0; b < p->nbufs; b++)
        if (p->bufs[b].role != KB_OUTPUT || p->bufs[b].entry != e)
            last[b] = -1;
    return true;
}

/* The stash of entry e: the outputs that a kernel writes at or before the
 * entry's last kernel that can fail (a failed run stops there; outputs only
 * written later, as an optimizer's updates after a loss's label check, are
 * never touched by one). No stash when no kernel can fail. */
static bool stash_plan(cexec *c, const kiln_module *m, int e)
{
    const kprogram *p = c->prog;
    const kentry *x = &p->entries[e];
    int lastfail = -1;
    for (int i = 0; i < x->nkernels; i++)
        if (kk_can_fail(&p->kernels[x->kernels[i]]))
            lastfail = i;
    int n = m->g->entries[e].n;
    int *outs = c->stashed[e] = ir_alloc(sizeof(int) * (size_t)(n + 1));
    if (!outs)
        return false;
    int k = 0;
    size_t bytes = 0;
    for (int b = 0; b < p->nbufs && lastfail >= 0; b++) {
        const kbuf *kb = &p->bufs[b];
        if (kb->role != KB_OUTPUT || kb->entry != e)
            continue;
        bool early = false;
        for (int i = 0; i <= lastfail && !early; i++) {
            const kernel *kk = &p->kernels[x->kernels[i]];
            for (int j = 0; j < kk->nstores && !early; j++)
                early = kk->stores[j].buf == b;
        }
        bool seen = false; /* one program buffer per output */
        for (int j = 0; j < k; j++)
            seen = seen || outs[j] == kb->index;
        if (early && !seen) {
            outs[k++] = kb->index;
            bytes += m->bufs[m->entry_buf[e] + kb->index].nbytes;
        }
    }
    outs[k] = -1;
    if (lastfail < 0)
        return true;
    return (c->stash[e] = ir_alloc(bytes ? bytes : 1)) != NULL;
}

/* ---- the executor --------------------------------------------------------------- */

static void cexec_destroy(kiln_module *m)
{
    cexec *c = m->impl;
    if (!c)
        return;
    if (c->prog) {
        for (int e = 0; e < c->prog->nentries; e++) {
            if (c->bufs)
                ir_free(c->bufs[e]);
            if (c->arena)
                ir_free(c->arena[e]);
            if (c->stash)
                ir_free(c->stash[e]);
            if (c->stashed)
                ir_free(c->stashed[e]);
            if (c->last)
                ir_free(c->last[e]);
        }
        kp_free(c->prog);
    }
    ir_free(c->bufs);
    ir_free(c->arena);
    ir_free(c->stash);
    ir_free(c->stashed);
    ir_free(c->last);
    ir_free(c->entries);
    ir_free(c->prof);
    ir_free(c->modbuf);
    ir_free(c->source);
    if (c->handle)
        dlclose(c->handle);
    ir_free(c);
    m->impl = NULL;
}

static rt_buf *named(kiln_module *m, const char *name)
{
    for (int i = 0; i < m->nbufs; i++)
        if (m->bufs[i].role != RT_OUTPUT && strcmp(m->bufs[i].name, name) == 0)
            return &m->bufs[i];
    return NULL;
}

static kiln_status cexec_run(kiln_module *m, int e, const bool *needed)
{
    (void)needed;
    cexec *c = m->impl;
    const kprogram *p = c->prog;
    void **bufs = c->bufs[e];
    /* module storage may move (bind), so the table is refreshed every run */
    for (int i = 0; i < p->nbufs; i++) {
        const kbuf *b = &p->bufs[i];
        switch (b->role) {
        case KB_INPUT:
        case KB_PARAM:
        case KB_OUTPUT: bufs[i] = m->bufs[c->modbuf[i]].data; break;
        case KB_TEMP: bufs[i] = (char *)c->arena[e] + b->offset; break;
        case KB_CONST: memcpy(&bufs[i], &b->data, sizeof(void *)); break; /* read-only */
        }
    }
    /* A failed run changes nothing, as on the interpreter: the entry stops at
     * the first failing kernel and applies no assign (params are untouched),
     * and an entry that can fail has its outputs stashed first. */
    if (c->stash[e]) {
        char *at = c->stash[e];
        for (const int *i = c->stashed[e]; *i >= 0; i++) {
            const rt_buf *b = &m->bufs[m->entry_buf[e] + *i];
            memcpy(at, b->data, b->nbytes);
            at += b->nbytes;
        }
    }
    dp_ctx d = {.ctx = {.bufs = bufs,
                        .prof = c->prof,
                        .tick = rt_dp_overlap(m) ? dp_tick : rt_prof_tick,
                        .tick_ns = rt_now_ns(),
                        .seed = m->seed,
                        .run = m->run,
                        .threads = c->threads},
                .m = m,
                .last = c->last[e],
                .modbuf = c->modbuf,
                .nbufs = p->nbufs};
    int rc = c->entries[e](&d.ctx);
    const kiln_ctx ctx = d.ctx; /* the first error, if any */
    if (rc == KILN_RUNERR_NONE)
        return KILN_OK;
    if (c->stash[e]) {
        const char *at = c->stash[e];
        for (const int *i = c->stashed[e]; *i >= 0; i++) {
            const rt_buf *b = &m->bufs[m->entry_buf[e] + *i];
            memcpy(b->data, at, b->nbytes);
            at += b->nbytes;
        }
    }
    return rt_runerr_fail(m, rc, ctx.err_axis, ctx.err_index, ctx.err_size);
}

static const char *cexec_source(kiln_module *m)
{
    return ((cexec *)m->impl)->source;
}

uint64_t rt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void rt_prof_tick(kiln_ctx *ctx, int32_t id)
{
    uint64_t now = rt_now_ns();
    ctx->prof[id].calls++;
    ctx->prof[id].ns += now - ctx->tick_ns;
    ctx->tick_ns = now;
}

void rt_profile_rows(FILE *f, const kprogram *p, const kiln_prof *prof)
{
    uint64_t total = 0;
    int *order = ir_alloc(sizeof(int) * (size_t)(p->nkernels ? p->nkernels : 1)), n = 0;
    if (!order)
        return;
    for (int k = 0; k < p->nkernels; k++)
        if (prof[k].calls) {
            total += prof[k].ns;
            int at = n++;
            while (at > 0 && prof[order[at - 1]].ns < prof[k].ns) {
                order[at] = order[at - 1];
                at--;
            }
            order[at] = k;
        }
    fprintf(f, "%-32s %10s %12s %12s %7s\n", "kernel", "calls", "total ms", "mean us", "share");
    for (int i = 0; i < n; i++) {
        const kiln_prof *q = &prof[order[i]];
        fprintf(f, "%-32s %10llu %12.3f %12.2f %6.1f%%\n", p->kernels[order[i]].name,
                (unsigned long long)q->calls, (double)q->ns / 1e6,
                (double)q->ns / 1e3 / (double)q->calls,
                total ? 100.0 * (double)q->ns / (double)total : 0.0);
    }
    ir_free(order);
}

static void cexec_profile(kiln_module *m, FILE *f)
{
    const cexec *c = m->impl;
    rt_profile_rows(f, c->prog, c->prof);
}

const rt_executor rt_cexec = {"c",           cexec_run, cexec_source, cexec_profile,
                              cexec_destroy, NULL,      NULL};

void rt_code_free(rt_code *code)
{
    kp_free(code->prog);
    ir_free(code->source);
    *code = (rt_code){NULL, NULL, 0};
}

kiln_status rt_cexec_new(kiln_module *m, kiln_graph *g, rt_code *code, int threads, const char *fn)
{
    cexec *c = ir_alloc(sizeof *c);
    if (!c) {
        rt_code_free(code);
        return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    }
    memset(c, 0, sizeof *c);
    m->impl = c;
    m->exec = &rt_cexec;
    c->threads = threads > 0 ? threads : 0;
    c->prog = code->prog;
    c->source = code->source;
    *code = (rt_code){NULL, NULL, 0};
    const kprogram *p = c->prog;
    int ne = p->nentries ? p->nentries : 1;
    c->entries = ir_alloc(sizeof(*c->entries) * (size_t)ne);
    /* zeroed: cexec_destroy frees their entries after a partial failure */
    c->bufs = ir_calloc(sizeof(*c->bufs) * (size_t)ne);
    c->arena = ir_calloc(sizeof(*c->arena) * (size_t)ne);
    c->stash = ir_calloc(sizeof(*c->stash) * (size_t)ne);
    c->stashed = ir_calloc(sizeof(*c->stashed) * (size_t)ne);
    c->last = ir_calloc(sizeof(*c->last) * (size_t)ne);
    c->prof = ir_calloc(sizeof(*c->prof) * (size_t)(p->nkernels ? p->nkernels : 1));
    c->modbuf = ir_alloc(sizeof(int) * (size_t)(p->nbufs ? p->nbufs : 1));
    if (!c->entries || !c->bufs || !c->arena || !c->stash || !c->stashed || !c->last || !c->prof ||
        !c->modbuf)
        return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    for (int i = 0; i < p->nbufs; i++) {
        const kbuf *b = &p->bufs[i];
        c->modbuf[i] = b->role == KB_OUTPUT ? m->entry_buf[b->entry] + b->index : -1;
        if (b->role == KB_INPUT || b->role == KB_PARAM) {
            const rt_buf *mb = named(m, p->g->nodes[b->node]->name);
            if (!mb)
                return ir_fail_status(g, KILN_ERR_INVALID,
                                      "%s: internal error: the program reads '%s', which the "
                                      "module does not have",
                                      fn, p->g->nodes[b->node]->name);
            c->modbuf[i] = (int)(mb - m->bufs);
        }
    }
    /* an assign done in place: its output is its param's storage */
    for (int e = 0; e < p->nentries; e++)
        for (int i = 0; i < p->entries[e].nshares; i++) {
            rt_buf *o = &m->bufs[c->modbuf[p->entries[e].shares[i].src]];
            int param = c->modbuf[p->entries[e].shares[i].dst];
            ir_free(o->owned);
            o->owned = NULL;
            o->data = m->bufs[param].data;
            o->shares = param;
        }
    for (int e = 0; e < p->nentries; e++) {
        c->bufs[e] = ir_alloc(sizeof(void *) * (size_t)(p->nbufs ? p->nbufs : 1));
        c->arena[e] = ir_alloc((size_t)(p->entries[e].arena_bytes ? p->entries[e].arena_bytes : 1));
        if (!c->bufs[e] || !c->arena[e] || !last_uses(c, e) || !stash_plan(c, m, e))
            return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    }
    return KILN_OK;
}

void rt_cexec_parts(const kiln_module *m, const kprogram **p, const char **source,
                    const int **modbuf)
{
    const cexec *c = m->impl;
    *p = c->prog;
    *source = c->source;
    *modbuf = c->modbuf;
}

/* Takes the loaded code: its ABI tag and one kiln_entry_<i> per entry. */
kiln_status rt_cexec_load(kiln_module *m, kiln_graph *g, void *handle, const char *fn)
{
    cexec *c = m->impl;
    c->handle = handle;
    const char *abi = dlsym(c->handle, "kiln_abi");
    if (!abi || strcmp(abi, KILN_ABI_TAG) != 0)
        return ir_fail_status(g, KILN_ERR_LOAD, "%s: the compiled code is not %s", fn,
                              KILN_ABI_TAG);
    for (int e = 0; e < c->prog->nentries; e++) {
        char sym[32];
        snprintf(sym, sizeof sym, "kiln_entry_%d", e);
        void *fp = dlsym(c->handle, sym);
        if (!fp)
            return ir_fail_status(g, KILN_ERR_LOAD, "%s: %s is missing", fn, sym);
        memcpy(&c->entries[e], &fp, sizeof fp);
    }
    return KILN_OK;
}
