/*
 * memplan.c - places each entry's temporaries in its arena.
 *
 * Requires: a lowered kprogram (TEMP buffers carry their entry in kbuf.entry).
 * Produces: kbuf.offset for every TEMP (64-byte aligned) and kentry.arena_bytes.
 * A temp lives from the first to the last kernel of its entry that touches it;
 * blocks whose lifetimes do not overlap share memory (best fit: the smallest
 * gap between live blocks that holds it, else the end of the arena).
 */
#include "passes/passes.h"

#include <string.h>

enum { ALIGN = 64 };

typedef struct {
    int64_t off, size;
    int last;
} block;

static void touch(int *first, int *last, const kprogram *p, int b, int pos)
{
    if (b < 0 || b >= p->nbufs || p->bufs[b].role != KB_TEMP)
        return;
    if (first[b] < 0)
        first[b] = pos;
    last[b] = pos;
}

static int64_t place(block *live, int *nlive, int64_t size, int start)
{
    int n = 0;
    for (int i = 0; i < *nlive; i++)
        if (live[i].last >= start)
            live[n++] = live[i];
    *nlive = n;
    /* live blocks sorted by offset (insertion sort: few blocks) */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && live[j - 1].off > live[j].off; j--) {
            block t = live[j];
            live[j] = live[j - 1];
            live[j - 1] = t;
        }
    int64_t end = 0, best = -1, best_gap = INT64_MAX;
    for (int i = 0; i < n; i++) {
        int64_t gap = live[i].off - end;
        if (gap >= size && gap < best_gap) {
            best = end;
            best_gap = gap;
        }
        if (live[i].off + live[i].size > end)
            end = live[i].off + live[i].size;
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
            if (k->kind == KK_MATMUL) {
                touch(first, last, p, k->mm.a, pos);
                touch(first, last, p, k->mm.b, pos);
            }
        }
        int n = 0;
        for (int b = 0; b < p->nbufs; b++)
            if (p->bufs[b].role == KB_TEMP && p->bufs[b].entry == e && first[b] >= 0)
                order[n++] = b;
        for (int i = 1; i < n; i++) /* by first use, then buffer index: stable */
            for (int j = i; j > 0 && first[order[j - 1]] > first[order[j]]; j--) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        int nlive = 0;
        int64_t arena = 0;
        for (int i = 0; i < n; i++) {
            kbuf *b = &p->bufs[order[i]];
            int64_t size = b->numel * (int64_t)kiln_dtype_size(b->dtype);
            size = (size + ALIGN - 1) / ALIGN * ALIGN;
            b->offset = 0;
            if (size == 0)
                continue;
            b->offset = place(live, &nlive, size, first[order[i]]);
            live[nlive++] = (block){b->offset, size, last[order[i]]};
            if (b->offset + size > arena)
                arena = b->offset + size;
        }
        x->arena_bytes = arena;
    }
    ir_free(first);
    ir_free(last);
    ir_free(order);
    ir_free(live);
    return KILN_OK;
}
