/*
 * kernel_edit.c - rewriting kernel programs: what the kernel passes
 * (passes/hfuse.c, passes/rowfuse.c) share to copy and free kernels, drop
 * dead stores and temporaries, and renumber what is left.
 */
#include "ir/kernel.h"

#include <stdio.h>
#include <string.h>

void kk_release(kernel *k)
{
    ir_free(k->xmap);
    k->xmap = NULL;
    ir_free(k->x);
    ir_free(k->stores);
    ir_free(k->nodes);
    k->x = NULL;
    k->stores = NULL;
    k->nodes = NULL;
}

bool kk_copy(kernel *dst, const kernel *k)
{
    *dst = *k;
    dst->xmap = NULL; /* kk_expr makes its own */
    dst->capxmap = dst->nxmap = 0;
    dst->x = ir_alloc(sizeof(kx_node) * (size_t)(k->capx ? k->capx : 1));
    dst->stores = ir_alloc(sizeof(kk_store) * (size_t)(k->capstores ? k->capstores : 1));
    dst->nodes = ir_alloc(sizeof(int) * (size_t)(k->capnodes ? k->capnodes : 1));
    if (!dst->x || !dst->stores || !dst->nodes) {
        kk_release(dst);
        return false;
    }
    if (k->nx > 0)
        memcpy(dst->x, k->x, sizeof(kx_node) * (size_t)k->nx);
    if (k->nstores > 0)
        memcpy(dst->stores, k->stores, sizeof(kk_store) * (size_t)k->nstores);
    if (k->nnodes > 0)
        memcpy(dst->nodes, k->nodes, sizeof(int) * (size_t)k->nnodes);
    return true;
}

/* Drops the stores to temporaries of entry e that no kernel reads. */
void kp_drop_dead_stores(kprogram *p, const kentry *x)
{
    for (int pos = 0; pos < x->nkernels; pos++) {
        kernel *k = &p->kernels[x->kernels[pos]];
        for (int i = 0; i < k->nstores;) {
            int buf = k->stores[i].buf;
            bool read = false;
            for (int q = 0; q < x->nkernels && !read; q++)
                read = kk_reads(&p->kernels[x->kernels[q]], buf);
            for (int c = 0; c < x->ncopies && !read; c++)
                read = x->copies[c].src == buf;
            if (p->bufs[buf].role == KB_TEMP && !read && k->nstores > 1) {
                memmove(&k->stores[i], &k->stores[i + 1],
                        sizeof(kk_store) * (size_t)(k->nstores - i - 1));
                k->nstores--;
            } else {
                i++;
            }
        }
    }
}

/* Removes the kernels marked dead and renumbers the rest in execution order
 * (entry by entry), so the source lists them as they run: ids, names, entry
 * lists. */
kiln_status kp_compact(kprogram *p, const bool *dead)
{
    size_t nk = (size_t)(p->nkernels ? p->nkernels : 1);
    int *newid = ir_alloc(sizeof(int) * nk);
    kernel *ks = ir_alloc(sizeof(kernel) * nk);
    if (!newid || !ks) {
        ir_free(newid);
        ir_free(ks);
        return KILN_ERR_NOMEM;
    }
    int n = 0;
    for (int i = 0; i < p->nkernels; i++)
        newid[i] = -1;
    for (int e = 0; e < p->nentries; e++)
        for (int i = 0; i < p->entries[e].nkernels; i++) {
            int old = p->entries[e].kernels[i];
            if (!dead[old] && newid[old] < 0)
                newid[old] = n++;
        }
    for (int i = 0; i < p->nkernels; i++) /* in no entry: kept, after the rest */
        if (!dead[i] && newid[i] < 0)
            newid[i] = n++;
    for (int i = 0; i < p->nkernels; i++) {
        kernel *k = &p->kernels[i];
        if (dead[i]) {
            kk_release(k);
            continue;
        }
        const char *ops = strchr(k->name, '_');
        char name[sizeof k->name];
        snprintf(name, sizeof name, "k%d%s", newid[i], ops ? ops : "");
        memcpy(k->name, name, sizeof name);
        k->id = newid[i];
        ks[newid[i]] = *k;
    }
    if (n > 0)
        memcpy(p->kernels, ks, sizeof(kernel) * (size_t)n);
    p->nkernels = n;
    for (int e = 0; e < p->nentries; e++) {
        kentry *x = &p->entries[e];
        int m = 0;
        for (int i = 0; i < x->nkernels; i++)
            if (newid[x->kernels[i]] >= 0)
                x->kernels[m++] = newid[x->kernels[i]];
        x->nkernels = m;
    }
    ir_free(newid);
    ir_free(ks);
    return KILN_OK;
}

static void renumber(int *buf, const int *newbuf)
{
    if (*buf >= 0)
        *buf = newbuf[*buf];
}

/* Removes the temporaries no kernel touches any more (their stores were
 * dropped), renumbering the other buffers everywhere they are named. */
kiln_status kp_drop_unused_temps(kprogram *p)
{
    int *newbuf = ir_alloc(sizeof(int) * (size_t)(p->nbufs ? p->nbufs : 1));
    if (!newbuf)
        return KILN_ERR_NOMEM;
    for (int b = 0; b < p->nbufs; b++)
        newbuf[b] = p->bufs[b].role == KB_TEMP ? -1 : b;
    for (int i = 0; i < p->nkernels; i++) {
        const kernel *k = &p->kernels[i];
        for (int j = 0; j < k->nx; j++)
            if (k->x[j].kind == KX_LOAD && k->x[j].buf >= 0 && k->x[j].buf < p->nbufs)
                newbuf[k->x[j].buf] = k->x[j].buf;
        for (int j = 0; j < k->nstores; j++)
            if (k->stores[j].buf >= 0 && k->stores[j].buf < p->nbufs)
                newbuf[k->stores[j].buf] = k->stores[j].buf;
        int ops[KK_MAX_OPERANDS], nops = kk_operand_bufs(k, ops);
        for (int j = 0; j < nops; j++)
            if (ops[j] >= 0 && ops[j] < p->nbufs)
                newbuf[ops[j]] = ops[j];
    }
    for (int e = 0; e < p->nentries; e++)
        for (int c = 0; c < p->entries[e].ncopies; c++) {
            newbuf[p->entries[e].copies[c].src] = p->entries[e].copies[c].src;
            newbuf[p->entries[e].copies[c].dst] = p->entries[e].copies[c].dst;
        }
    int n = 0;
    for (int b = 0; b < p->nbufs; b++)
        if (newbuf[b] >= 0) {
            p->bufs[n] = p->bufs[b];
            newbuf[b] = n++;
        }
    p->nbufs = n;
    for (int i = 0; i < p->nkernels; i++) {
        kernel *k = &p->kernels[i];
        for (int j = 0; j < k->nx; j++)
            if (k->x[j].kind == KX_LOAD)
                renumber(&k->x[j].buf, newbuf);
        for (int j = 0; j < k->nstores; j++)
            renumber(&k->stores[j].buf, newbuf);
        int *refs[KK_MAX_OPERANDS], nrefs = kk_operand_refs(k, refs);
        for (int j = 0; j < nrefs; j++)
            renumber(refs[j], newbuf);
    }
    for (int e = 0; e < p->nentries; e++)
        for (int c = 0; c < p->entries[e].ncopies; c++) {
            renumber(&p->entries[e].copies[c].src, newbuf);
            renumber(&p->entries[e].copies[c].dst, newbuf);
        }
    ir_free(newbuf);
    return KILN_OK;
}

bool kk_blocks(const kernel *c, const kernel *k)
{
    for (int i = 0; i < k->nx; i++)
        if (k->x[i].kind == KX_LOAD && kk_writes(c, k->x[i].buf))
            return true;
    for (int i = 0; i < k->nstores; i++)
        if (kk_reads(c, k->stores[i].buf) || kk_writes(c, k->stores[i].buf))
            return true;
    return false;
}

int kk_store_of(const kernel *k, int buf)
{
    for (int i = 0; i < k->nstores; i++)
        if (k->stores[i].buf == buf)
            return i;
    return -1;
}

void kk_merged_name(kernel *m, const kernel *a, const kernel *b)
{
    const char *bops = strchr(b->name, '_');
    char name[sizeof m->name];
    snprintf(name, sizeof name, "%s%s", a->name, bops ? bops : "");
    memcpy(m->name, name, sizeof name);
}

bool kk_unit_stride(const kernel *k, int idx, int v)
{
    if (idx < 0 || idx >= k->nx)
        return false;
    const kx_node *n = &k->x[idx];
    if (n->kind == KX_VAR)
        return n->var == v;
    if (n->kind != KX_OP || n->op != IR_ADD)
        return false;
    for (int s = 0; s < 2; s++)
        if (n->a[s] >= 0 && n->a[s] < idx && k->x[n->a[s]].kind == KX_VAR && k->x[n->a[s]].var == v)
            return true;
    return false;
}

bool kk_affine(const kernel *k, int idx, int nvars, int64_t *coef, int64_t *c0)
{
    enum { MAXV = 2 * KILN_MAX_RANK + 3 };
    if (idx < 0 || idx >= k->nx || nvars > MAXV)
        return false;
    const kx_node *n = &k->x[idx];
    memset(coef, 0, sizeof(int64_t) * (size_t)nvars);
    *c0 = 0;
    if (n->kind == KX_CONST && (n->dtype == KILN_I64 || n->dtype == KILN_I32)) {
        *c0 = n->ivalue;
        return true;
    }
    if (n->kind == KX_VAR && n->var >= 0 && n->var < nvars) {
        coef[n->var] = 1;
        return true;
    }
    int64_t a[MAXV], b[MAXV], ca, cb;
    if (n->kind != KX_OP || (n->op != IR_ADD && n->op != IR_MUL) || n->a[0] >= idx ||
        n->a[1] >= idx || !kk_affine(k, n->a[0], nvars, a, &ca) ||
        !kk_affine(k, n->a[1], nvars, b, &cb))
        return false;
    bool a_const = true, b_const = true;
    for (int v = 0; v < nvars; v++) {
        a_const = a_const && !a[v];
        b_const = b_const && !b[v];
    }
    if (n->op == IR_MUL && !a_const && !b_const)
        return false;
    for (int v = 0; v < nvars; v++)
        coef[v] = n->op == IR_ADD ? a[v] + b[v] : a[v] * cb + b[v] * ca;
    *c0 = n->op == IR_ADD ? ca + cb : ca * cb;
    return true;
}

kiln_status kp_finish_merges(kprogram *p, bool *dead, kiln_status s)
{
    for (int e = 0; e < p->nentries && s == KILN_OK; e++)
        kp_drop_dead_stores(p, &p->entries[e]);
    s = s == KILN_OK ? kp_compact(p, dead) : s;
    s = s == KILN_OK ? kp_drop_unused_temps(p) : s;
    ir_free(dead);
    return s;
}
