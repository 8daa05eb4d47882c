/*
 * memplan.c - places each entry's temporaries in its arena.
 *
 * Requires: a lowered kprogram (TEMP buffers carry their entry in kbuf.entry).
 * Produces: kbuf.offset for every TEMP (64-byte aligned), kentry.arena_bytes
 * and kentry.live_bytes, the liveness lower bound (the most bytes of temps
 * live during one kernel): arena_bytes / live_bytes measures the plan.
 * A temp lives from the first to the last kernel of its entry that touches it;
 * temps whose lifetimes do not overlap share memory. Placement is greedy by
 * size (largest first), each temp at the best fit (the smallest gap that
 * holds it) among the placed temps it overlaps in time.
 */
#include "passes/passes.h"

#include <string.h>

enum { ALIGN = 64 };

typedef struct {
    int64_t off, size;
} block;

static int64_t temp_bytes(const kbuf *b)
{
    return (b->numel * (int64_t)kiln_dtype_size(b->dtype) + ALIGN - 1) / ALIGN * ALIGN;
}

static void touch(int *first, int *last, const kprogram *p, int b, int pos)
{
    if (b < 0 || b >= p->nbufs || p->bufs[b].role != KB_TEMP)
        return;
    if (first[b] < 0)
        first[b] = pos;
    last[b] = pos;
}

/* The offset for a block of `size` among the placed blocks whose lifetimes
 * overlap it (`busy`, n of them): the smallest gap that holds it, else the
 * end of the highest. */
static int64_t best_fit(block *busy, int n, int64_t size)
{
    for (int i = 1; i < n; i++) /* by offset (insertion sort: few blocks) */
        for (int j = i; j > 0 && busy[j - 1].off > busy[j].off; j--) {
            block t = busy[j];
            busy[j] = busy[j - 1];
            busy[j - 1] = t;
        }
    int64_t end = 0, best = -1, best_gap = INT64_MAX;
    for (int i = 0; i < n; i++) {
        int64_t gap = busy[i].off - end;
        if (gap >= size && gap < best_gap) {
            best = end;
            best_gap = gap;
        }
        if (busy[i].off + busy[i].size > end)
            end = busy[i].off + busy[i].size;
    }
    return best >= 0 ? best : end;
}

kiln_status pass_memplan(kiln_graph *g, kprogram *p)
{
    if (!g || !p)
        return KILN_ERR_INVALID;
    size_t nb = (size_t)p->nbufs + 1;
    int *first = ir_alloc(sizeof(int) * nb), *last = ir_alloc(sizeof(int) * nb);
    int *order = ir_alloc(sizeof(int) * nb);
    block *live = ir_alloc(sizeof(block) * nb);
    if (!first || !last || !order || !live) {
        ir_free(first);
        ir_free(last);
        ir_free(order);
        ir_free(live);
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
    }
    for (int e = 0; e < p->nentries; e++) {
        kentry *x = &p->entries[e];
        for (int b = 0; b < p->nbufs; b++)
            first[b] = last[b] = -1;
        for (int pos = 0; pos < x->nkernels; pos++) {
            const kernel *k = &p->kernels[x->kernels[pos]];
            for (int i = 0; i < k->nx; i++)
                if (k->x[i].kind == KX_LOAD)
                    touch(first, last, p, k->x[i].buf, pos);
            for (int i = 0; i < k->nstores; i++)
                touch(first, last, p, k->stores[i].buf, pos);
            int ops[KK_MAX_OPERANDS], nops = kk_operand_bufs(k, ops);
            for (int i = 0; i < nops; i++)
                touch(first, last, p, ops[i], pos);
        }
        int n = 0;
        for (int b = 0; b < p->nbufs; b++)
            if (p->bufs[b].role == KB_TEMP && p->bufs[b].entry == e && first[b] >= 0)
                order[n++] = b;
        /* greedy by size: the largest temps first, each at the best fit among
         * the already placed temps it is live together with (ties: first use,
         * then buffer index, so plans are stable) */
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0; j--) {
                const kbuf *a = &p->bufs[order[j - 1]], *b = &p->bufs[order[j]];
                int64_t sa = temp_bytes(a), sb = temp_bytes(b);
                if (sa > sb || (sa == sb && first[order[j - 1]] <= first[order[j]]))
                    break;
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        int64_t arena = 0;
        for (int i = 0; i < n; i++) {
            kbuf *b = &p->bufs[order[i]];
            int64_t size = temp_bytes(b);
            b->offset = 0;
            if (size == 0)
                continue;
            int nbusy = 0;
            for (int k = 0; k < i; k++) {
                int o = order[k];
                if (first[o] <= last[order[i]] && first[order[i]] <= last[o] &&
                    temp_bytes(&p->bufs[o]) > 0)
                    live[nbusy++] = (block){p->bufs[o].offset, temp_bytes(&p->bufs[o])};
            }
            b->offset = best_fit(live, nbusy, size);
            if (b->offset + size > arena)
                arena = b->offset + size;
        }
        x->arena_bytes = arena;
        x->live_bytes = 0;
        for (int pos = 0; pos < x->nkernels; pos++) {
            int64_t at = 0;
            for (int i = 0; i < n; i++)
                if (first[order[i]] <= pos && pos <= last[order[i]])
                    at += (p->bufs[order[i]].numel *
                               (int64_t)kiln_dtype_size(p->bufs[order[i]].dtype) +
                           ALIGN - 1) /
                          ALIGN * ALIGN;
            if (at > x->live_bytes)
                x->live_bytes = at;
        }
    }
    ir_free(first);
    ir_free(last);
    ir_free(order);
    ir_free(live);
    return KILN_OK;
}
