/*
 * inplace.c - assigns done in place: the kernel that computes a param's new
 * value stores it straight into the param's buffer, not into the entry's
 * output and then a copy after the last kernel (an optimizer step moved its
 * params and state twice: 22 MB a step of the MLP's Adam).
 *
 * Requires: a finished kprogram (after pass_memplan), for an executor that
 * gives each such output its param's storage (kentry.shares; the C target's
 * whole-entry executor: compile.c asks for it only there). Produces: the same
 * program with those copies turned into shares.
 *
 * An assign's copy (output O -> param P) of an entry becomes a share when
 *   - one kernel W of the entry stores O, a pointwise one, and it stores
 *     nothing else into P nor reads O;
 *   - W reads P only at the element it stores (the same index node): each
 *     element is read before it is overwritten, and by no other iteration;
 *   - no kernel after W reads or writes P or O, and none from W on can fail
 *     (a failed run must leave P as it was; the copies of a failed run are
 *     never applied, but a store in place would already be done).
 */
#include "passes/passes.h"

#include <string.h>

static bool loads_at(const kernel *k, int buf, int index, bool *other)
{
    bool any = false;
    for (int i = 0; i < k->nx; i++)
        if (k->x[i].kind == KX_LOAD && k->x[i].buf == buf) {
            any = true;
            *other = *other || k->x[i].a[0] != index;
        }
    return any;
}

/* The position in x of the kernel that computes copy c in place, or -1. */
static int writer(const kprogram *p, const kentry *x, const kcopy *c)
{
    int w = -1;
    for (int i = 0; i < x->nkernels; i++) {
        const kernel *k = &p->kernels[x->kernels[i]];
        for (int j = 0; j < k->nstores; j++)
            if (k->stores[j].buf == c->src) {
                if (w >= 0 && w != i)
                    return -1; /* stored by two kernels */
                w = i;
            }
    }
    if (w < 0)
        return -1;
    const kernel *k = &p->kernels[x->kernels[w]];
    if (k->kind != KK_POINTWISE || kk_can_fail(k))
        return -1;
    int index = -1;
    for (int j = 0; j < k->nstores; j++) {
        const kk_store *s = &k->stores[j];
        if (s->buf == c->dst || (s->buf == c->src && (s->accumulate || index >= 0)))
            return -1;
        if (s->buf == c->src)
            index = s->index;
    }
    bool other = false;
    loads_at(k, c->dst, index, &other);
    if (other || loads_at(k, c->src, -1, &other))
        return -1;
    for (int i = w + 1; i < x->nkernels; i++) {
        const kernel *later = &p->kernels[x->kernels[i]];
        if (kk_reads(later, c->dst) || kk_writes(later, c->dst) || kk_reads(later, c->src) ||
            kk_writes(later, c->src) || kk_can_fail(later))
            return -1;
    }
    return w;
}

kiln_status pass_inplace(kiln_graph *g, kprogram *p)
{
    if (!g || !p)
        return KILN_ERR_INVALID;
    for (int e = 0; e < p->nentries; e++) {
        kentry *x = &p->entries[e];
        if (!x->ncopies)
            continue;
        x->shares = ir_alloc(sizeof(kcopy) * (size_t)x->ncopies);
        if (!x->shares)
            return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
        int kept = 0;
        for (int c = 0; c < x->ncopies; c++) {
            kcopy cp = x->copies[c];
            bool twice = false; /* an output or a param in two copies stays a copy */
            for (int d = 0; d < x->ncopies; d++)
                twice =
                    twice || (d != c && (x->copies[d].src == cp.src || x->copies[d].dst == cp.dst));
            int w = twice || p->bufs[cp.src].role != KB_OUTPUT || p->bufs[cp.dst].role != KB_PARAM
                        ? -1
                        : writer(p, x, &cp);
            if (w < 0) {
                x->copies[kept++] = cp;
                continue;
            }
            kernel *k = &p->kernels[x->kernels[w]];
            for (int j = 0; j < k->nstores; j++)
                if (k->stores[j].buf == cp.src)
                    k->stores[j].buf = cp.dst;
            x->shares[x->nshares++] = cp;
        }
        x->ncopies = kept;
    }
    return KILN_OK;
}
