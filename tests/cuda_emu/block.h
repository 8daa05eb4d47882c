/*
 * block.h - one CUDA block on the CPU, for kernels compiled as C++ against
 * shim.h: KEMU_THREADS POSIX threads, __syncthreads as a barrier over them
 * and each warp's shuffles as an exchange through a barrier over its 32
 * lanes. Used by the kernel tests (tests/unit/cuda_emu.h) and by the fake GPU
 * (fake_gpu.c). One block runs at a time (the shim's shared memory is static
 * storage): callers serialise. Call kemu_block_init once first.
 */
#ifndef KILN_EMU_BLOCK_H
#define KILN_EMU_BLOCK_H

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

enum { KEMU_THREADS = 256, KEMU_WARPS = KEMU_THREADS / 32, KEMU_ARGS = 512 }; /* shim.h's */

/* What shim.h's kemu_bind takes. */
typedef struct {
    void (*sync)(void);
    unsigned long long (*shfl)(unsigned tid, unsigned long long v, int src);
} kemu_hooks;

/* shim.h's kemu_thread: thread tid of fn(args[0 .. nargs)). */
typedef void (*kemu_thread_fn)(void (*fn)(void), int nargs, void **args, unsigned tid);

static pthread_barrier_t kemu_block_bar, kemu_warp_bar[KEMU_WARPS];
static unsigned long long kemu_slots[KEMU_WARPS][32];

static void kemu_block_sync(void)
{
    pthread_barrier_wait(&kemu_block_bar);
}

static unsigned long long kemu_block_shfl(unsigned tid, unsigned long long v, int src)
{
    unsigned w = tid / 32;
    kemu_slots[w][tid % 32] = v;
    pthread_barrier_wait(&kemu_warp_bar[w]);
    unsigned long long r = kemu_slots[w][src & 31];
    pthread_barrier_wait(&kemu_warp_bar[w]);
    return r;
}

static const kemu_hooks kemu_block_hooks = {kemu_block_sync, kemu_block_shfl};

static int kemu_block_init(void)
{
    if (pthread_barrier_init(&kemu_block_bar, NULL, KEMU_THREADS) != 0)
        return -1;
    for (int w = 0; w < KEMU_WARPS; w++)
        if (pthread_barrier_init(&kemu_warp_bar[w], NULL, 32) != 0)
            return -1;
    return 0;
}

typedef struct {
    kemu_thread_fn run;
    void (*entry)(void);
    int nargs;
    void **args;
    unsigned tid;
} kemu_lane;

static void *kemu_lane_main(void *arg)
{
    kemu_lane *t = arg;
    t->run(t->entry, t->nargs, t->args, t->tid);
    return NULL;
}

/* Runs entry(args[0 .. nargs)), a kernel, as one block. A thread that cannot be
 * started aborts the process: the others would wait at a barrier forever. */
static void kemu_block_run(kemu_thread_fn run, void (*entry)(void), int nargs, void **args)
{
    pthread_t th[KEMU_THREADS];
    kemu_lane t[KEMU_THREADS];
    for (unsigned i = 0; i < KEMU_THREADS; i++) {
        t[i] = (kemu_lane){run, entry, nargs, args, i};
        if (pthread_create(&th[i], NULL, kemu_lane_main, &t[i]) != 0) {
            fprintf(stderr, "kemu: cannot start thread %u of a block\n", i);
            abort();
        }
    }
    for (int i = 0; i < KEMU_THREADS; i++)
        pthread_join(th[i], NULL);
}

#endif /* KILN_EMU_BLOCK_H */
