/*
 * hfuse.c - horizontal fusion: pointwise kernels of one entry over the same
 * domain become one loop nest.
 *
 * Requires: a lowered kprogram, before pass_memplan. Produces: the same
 * program with fewer kernels (renumbered, names k<id>_...), each entry's
 * list in an order that keeps every dependence.
 *
 * A pointwise kernel B merges into an earlier pointwise kernel A of its entry
 * (at most WINDOW kernels back) over the same domain when
 *   - B can move up to A: no kernel in between writes a buffer B touches or
 *     reads a buffer B writes;
 *   - within the merged loop nothing crosses iterations: a buffer A writes is
 *     read by B only at the element A wrote in that iteration (that load
 *     becomes A's value: no reload), a buffer B writes is read by A only at
 *     that element, and no buffer is written by both;
 *   - neither kernel can fail at run time (an index check or integer
 *     division), so a failing entry stops where it stopped before.
 * The merged kernel shares equal subexpressions (kk_expr hash-conses), so an
 * optimizer's moment update written once for the state and once more inside
 * the parameter update is computed once. Stores to temporaries that no kernel
 * reads any more are dropped, and so are those temporaries.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <string.h>

enum { WINDOW = 8 };

static bool mergeable(const kernel *k)
{
    if (k->kind != KK_POINTWISE || k->serial || kk_can_fail(k))
        return false;
    for (int i = 0; i < k->nstores; i++)
        if (k->stores[i].accumulate)
            return false;
    return true;
}

/* Builds A + B into m (a copy of A). Returns 1 merged, 0 not legal, -1 out
 * of memory. */
static int merge(kernel *m, const kernel *a, const kernel *b)
{
    if (!kk_copy(m, a))
        return -1;
    int *map = ir_alloc(sizeof(int) * (size_t)(b->nx ? b->nx : 1));
    int rc = map ? 1 : -1;
    for (int i = 0; i < b->nx && rc == 1; i++) {
        kx_node n = b->x[i];
        int ops[3], ar = kx_operands(&n, ops);
        for (int j = 0; j < ar; j++)
            n.a[j] = ops[j] >= 0 && ops[j] < i ? map[ops[j]] : -1;
        int s = n.kind == KX_LOAD ? kk_store_of(a, n.buf) : -1;
        if (s >= 0) { /* A's value of that element, when it is that element */
            map[i] = m->stores[s].index == n.a[0] ? m->stores[s].value : -1;
            rc = map[i] >= 0 ? 1 : 0;
        } else {
            map[i] = kk_expr(m, n);
            rc = map[i] >= 0 ? 1 : -1;
        }
    }
    for (int i = 0; i < b->nstores && rc == 1; i++) {
        kk_store s = b->stores[i];
        s.index = map[s.index];
        s.value = map[s.value];
        if (kk_store_of(a, s.buf) >= 0) {
            rc = 0;
            break;
        }
        /* A may read what B writes only at the element B writes */
        for (int j = 0; j < a->nx && rc == 1; j++)
            if (a->x[j].kind == KX_LOAD && a->x[j].buf == s.buf && a->x[j].a[0] != s.index)
                rc = 0;
        if (rc == 1 && kk_store_add(m, s) < 0)
            rc = -1;
    }
    for (int i = 0; i < b->nnodes && rc == 1; i++)
        if (kk_note_node(m, b->nodes[i]) < 0)
            rc = -1;
    ir_free(map);
    if (rc != 1) {
        kk_release(m);
        return rc;
    }
    kk_merged_name(m, a, b);
    return 1;
}

/* Moves scalar pointwise kernels (an optimizer's bias corrections) as early
 * as their dependences allow, so they do not sit between kernels that could
 * merge. */
static void hoist_scalars(kprogram *p, kentry *x)
{
    for (int pos = 1; pos < x->nkernels; pos++) {
        const kernel *c = &p->kernels[x->kernels[pos]];
        if (c->kind != KK_POINTWISE || c->rank != 0)
            continue;
        int at = pos;
        while (at > 0 && !kk_blocks(&p->kernels[x->kernels[at - 1]], c)) {
            x->kernels[at] = x->kernels[at - 1];
            at--;
        }
        x->kernels[at] = c->id;
    }
}

kiln_status pass_hfuse(kiln_graph *g, kprogram *p)
{
    if (!g || !p)
        return KILN_ERR_INVALID;
    bool *dead = ir_calloc((size_t)p->nkernels + 1);
    if (!dead)
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
    kiln_status s = KILN_OK;
    for (int e = 0; e < p->nentries && s == KILN_OK; e++) {
        kentry *x = &p->entries[e];
        hoist_scalars(p, x);
        for (int bpos = 1; bpos < x->nkernels && s == KILN_OK; bpos++) {
            kernel *b = &p->kernels[x->kernels[bpos]];
            if (!mergeable(b))
                continue;
            for (int apos = bpos - 1; apos >= 0 && apos >= bpos - WINDOW; apos--) {
                kernel *a = &p->kernels[x->kernels[apos]];
                if (mergeable(a) && a->rank == b->rank &&
                    memcmp(a->dims, b->dims, sizeof(int64_t) * (size_t)a->rank) == 0) {
                    kernel m;
                    int rc = merge(&m, a, b);
                    if (rc < 0) {
                        s = KILN_ERR_NOMEM;
                        break;
                    }
                    if (rc == 1) {
                        kk_release(a);
                        *a = m;
                        dead[b->id] = true;
                        memmove(&x->kernels[bpos], &x->kernels[bpos + 1],
                                sizeof(int) * (size_t)(x->nkernels - bpos - 1));
                        x->nkernels--;
                        bpos--;
                        break;
                    }
                }
                if (kk_blocks(a, b))
                    break;
            }
        }
    }
    s = kp_finish_merges(p, dead, s);
    return s == KILN_OK ? KILN_OK : ir_fail_status(g, s, "kiln_compile: out of memory");
}
