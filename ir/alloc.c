/*
 * alloc.c - the one allocator hook every Kiln allocation goes through, and the
 * bump arena that owns a graph's nodes. Tests swap the hook to fail the n-th
 * allocation and check that every builder turns that into KILN_ERR_NOMEM.
 */
#include "ir.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void *default_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    return realloc(ptr, size);
}

static void default_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

static kiln_allocator hook = {default_realloc, default_free, NULL};

void kiln_set_allocator(const kiln_allocator *a)
{
    if (a && a->realloc && a->free)
        hook = *a;
    else
        hook = (kiln_allocator){default_realloc, default_free, NULL};
}

void *ir_alloc(size_t size)
{
    return hook.realloc(hook.ctx, NULL, size ? size : 1);
}

void *ir_calloc(size_t size)
{
    /* the default hook's calloc hands large blocks over as fresh zero pages,
     * which cost nothing until they are written */
    if (hook.realloc == default_realloc)
        return calloc(1, size ? size : 1);
    void *p = ir_alloc(size);
    if (p)
        memset(p, 0, size);
    return p;
}

void *ir_alloc_huge(size_t size)
{
    /* a big tensor about to be written whole: with the default hook, ask for
     * transparent huge pages, one page fault per 2 MiB instead of per 4 KiB */
    enum { HUGE = 2u << 20 };
    if (hook.realloc != default_realloc || size < 2 * HUGE)
        return ir_alloc(size);
    void *p = NULL;
    if (posix_memalign(&p, HUGE, (size + HUGE - 1) / HUGE * HUGE) != 0)
        return NULL;
    madvise(p, (size + HUGE - 1) / HUGE * HUGE, MADV_HUGEPAGE);
    return p;
}

void *ir_realloc(void *ptr, size_t size)
{
    return hook.realloc(hook.ctx, ptr, size ? size : 1);
}

void ir_free(void *ptr)
{
    if (ptr)
        hook.free(hook.ctx, ptr);
}

/* Arena blocks: a header followed by the bytes handed out. Large requests
 * get a block of their own so small ones keep packing. */
struct ir_arena_block {
    ir_arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char bytes[];
};

enum { ARENA_BLOCK = 64 * 1024 };

void *ir_arena_alloc(ir_arena *a, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    ir_arena_block *b = a->head;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > ARENA_BLOCK / 4 ? size : ARENA_BLOCK;
        ir_arena_block *nb = ir_alloc(sizeof(*nb) + cap);
        if (!nb)
            return NULL;
        nb->used = 0;
        nb->cap = cap;
        if (b && size > ARENA_BLOCK / 4) { /* keep the current block open for small ones */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            a->head = nb;
        }
        b = nb;
    }
    void *p = b->bytes + b->used;
    b->used += size;
    memset(p, 0, size);
    return p;
}

char *ir_arena_strdup(ir_arena *a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ir_arena_alloc(a, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

void ir_arena_free(ir_arena *a)
{
    ir_arena_block *b = a->head;
    while (b) {
        ir_arena_block *next = b->next;
        ir_free(b);
        b = next;
    }
    a->head = NULL;
}
