/*
 * cuda_emu.h - the CUDA renderer's kernels on the CPU (test_cuda_emu.c,
 * test_sweep.c --emu): the source cgen_cuda prints is compiled as C++
 * against tests/cuda_emu/shim.h, each kernel runs as one block of 256 POSIX
 * threads (tests/cuda_emu/block.h), and every
 * buffer of every entry is compared with the kernel-IR evaluator
 * (kp_eval.h) on the same inputs. Call emu_setup once first.
 */
#ifndef KILN_CUDA_EMU_H
#define KILN_CUDA_EMU_H

#include "../cuda_emu/block.h"
#include "codegen/cuda/cuda.h"
#include "kp_eval.h"
#include "passes/passes.h"
#include "testutil.h"

#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- building and running a program's CUDA source ---- */

typedef struct {
    char dir[64];
    void *so;
    kemu_thread_fn run;
} emu_build;

static void emu_compile(emu_build *B, const kprogram *p)
{
    char *src = cgen_cuda(p);
    assert_non_null(src);
    strcpy(B->dir, "/tmp/kiln_cuemu_XXXXXX");
    assert_non_null(mkdtemp(B->dir));
    char cu[128], so[128], log[128], cmd[1024];
    snprintf(cu, sizeof cu, "%s/k.cu", B->dir);
    snprintf(so, sizeof so, "%s/k.so", B->dir);
    snprintf(log, sizeof log, "%s/log", B->dir);
    FILE *f = fopen(cu, "w");
    assert_non_null(f);
    fputs(src, f);
    fclose(f);
    ir_free(src);
    snprintf(cmd, sizeof cmd,
             "clang++ -std=c++17 -O1 -w -fPIC -shared -include %s/tests/cuda_emu/shim.h -x c++ "
             "%s -o %s > %s 2>&1",
             KILN_SOURCE_DIR, cu, so, log);
    if (system(cmd) != 0) {
        char *msg = ku_read_file(log, NULL);
        fail_msg("the CUDA source does not compile against the shim (%s):\n%.3000s", cu,
                 msg ? msg : "");
    }
    B->so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(B->so);
    void (*bind)(const kemu_hooks *) = NULL;
    void *sym = dlsym(B->so, "kemu_bind");
    assert_non_null(sym);
    memcpy(&bind, &sym, sizeof bind);
    bind(&kemu_block_hooks);
    sym = dlsym(B->so, "kemu_thread");
    assert_non_null(sym);
    memcpy(&B->run, &sym, sizeof B->run);
}

static void emu_free(emu_build *B)
{
    dlclose(B->so);
    const char *files[] = {"k.cu", "k.so", "log"};
    char path[160];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", B->dir, files[i]);
        unlink(path);
    }
    rmdir(B->dir);
}

/* The device-side context (render_cuda.c's kiln_ctx). */
typedef struct {
    uint64_t seed;
    uint32_t run;
    int32_t err_code, err_kernel, err_axis;
    int64_t err_index, err_size;
} emu_ctx;

/* Kernel k as one block (KEMU_THREADS threads) over the buffers. */
static void emu_launch(const emu_build *B, const kprogram *p, const kernel *k, emu_ctx *ctx,
                       void *const *bufs)
{
    int *args = malloc(sizeof(int) * (size_t)(p->nbufs + 1)), nargs = 0;
    assert_non_null(args);
    int64_t n = cgen_cuda_launch(p, k, false, args, &nargs);
    assert_true(n >= 0);
    if (n == 0) {
        free(args);
        return;
    }
    if (nargs + 1 > KEMU_ARGS)
        fail_msg("%s takes %d buffers: more than the shim's kemu_thread calls with", k->name,
                 nargs);
    void *argv[KEMU_ARGS];
    argv[0] = ctx;
    for (int i = 0; i < nargs; i++)
        argv[i + 1] = bufs[args[i]];
    free(args);
    void *sym = dlsym(B->so, k->name);
    if (!sym)
        fail_msg("no kernel %s in the CUDA source", k->name);
    void (*fn)(void) = NULL;
    memcpy(&fn, &sym, sizeof fn);
    kemu_block_run(B->run, fn, nargs + 1, argv);
}

/* ---- the comparison ---- */

static size_t bytes_of(const kbuf *b)
{
    return (size_t)b->numel * kiln_dtype_size(b->dtype);
}

static void fill(const kbuf *b, int which, void *data)
{
    if (b->role == KB_CONST) {
        memcpy(data, b->data, bytes_of(b));
        return;
    }
    for (int64_t i = 0; i < b->numel; i++) {
        if (ir_dtype_is_float(b->dtype))
            ir_store_f(b->dtype, data, i, 1.5 * sin(0.37 * (double)i + which) + 0.1);
        else
            ir_store_i(b->dtype, data, i, (i * 7 + which) % 3);
    }
}

static bool close_enough(kiln_dtype dt, const void *got, const void *want, int64_t i)
{
    if (!ir_dtype_is_float(dt))
        return ir_load_i(dt, got, i) == ir_load_i(dt, want, i);
    double x = ir_load_f(dt, got, i), y = ir_load_f(dt, want, i);
    if (x == y)
        return true;
    if (isnan(x) || isnan(y))
        return isnan(x) && isnan(y);
    return fabs(x - y) <= 1e-5 + 1e-4 * fabs(y);
}

/* Fills program buffer b (an input, param or constant) for both sides;
 * false: the default fill. */
typedef bool (*emu_filler)(const kprogram *p, int b, void *data);

/* Runs every entry of g's program on both sides and compares every buffer an
 * entry can write or read (all but temporaries). Returns how many row kernels
 * and matmuls ran, so the callers can assert what they covered. */
static void check_graph(kiln_graph *g0, emu_filler filler, int *rows, int *matmuls)
{
    kiln_graph *g = ir_graph_clone(g0);
    assert_non_null(g);
    kprogram *p = NULL;
    if (pass_pipeline(g, &p) != KILN_OK)
        fail_msg("pipeline: %s", kiln_graph_error(g));
    emu_build B;
    emu_compile(&B, p);
    void **want = calloc((size_t)p->nbufs, sizeof(void *));
    void **got = calloc((size_t)p->nbufs, sizeof(void *));
    assert_true(want && got);
    for (int b = 0; b < p->nbufs; b++) {
        want[b] = calloc(bytes_of(&p->bufs[b]) + 64, 1);
        got[b] = calloc(bytes_of(&p->bufs[b]) + 64, 1);
        assert_true(want[b] && got[b]);
        if (p->bufs[b].role == KB_INPUT || p->bufs[b].role == KB_PARAM ||
            p->bufs[b].role == KB_CONST) {
            if (!filler || !filler(p, b, want[b]))
                fill(&p->bufs[b], b, want[b]);
            memcpy(got[b], want[b], bytes_of(&p->bufs[b]));
        }
    }
    for (int e = 0; e < p->nentries; e++) {
        char msg[256] = "";
        if (!kpe_run(p, e, want, 7, 1, msg, sizeof msg))
            fail_msg("evaluator: %s", msg);
        emu_ctx ctx = {.seed = 7, .run = 1};
        const kentry *x = &p->entries[e];
        for (int i = 0; i < x->nkernels; i++) {
            const kernel *k = &p->kernels[x->kernels[i]];
            emu_launch(&B, p, k, &ctx, got);
            *rows += k->kind == KK_REDUCE && (k->npre > 0 || kk_has_element_stores(k));
            *matmuls += k->kind == KK_MATMUL;
        }
        assert_int_equal(ctx.err_code, 0);
        for (int c = 0; c < x->ncopies; c++)
            memcpy(got[x->copies[c].dst], got[x->copies[c].src],
                   bytes_of(&p->bufs[x->copies[c].dst]));
        for (int b = 0; b < p->nbufs; b++) {
            const kbuf *kb = &p->bufs[b];
            if (kb->role == KB_TEMP)
                continue;
            const kiln_tensor *t = kb->role == KB_OUTPUT
                                       ? p->g->entries[kb->entry].outputs[kb->index]
                                   : kb->node >= 0 ? p->g->nodes[kb->node]
                                                   : NULL;
            for (int64_t i = 0; i < kb->numel; i++)
                if (!close_enough(kb->dtype, got[b], want[b], i))
                    fail_msg("entry %s, buffer %d (%s %%%d) element %lld: CUDA %.9g, evaluator "
                             "%.9g",
                             x->name, b, t ? ir_ops[t->op].name : "?", t ? t->id : -1, (long long)i,
                             ir_load_f(kb->dtype, got[b], i), ir_load_f(kb->dtype, want[b], i));
        }
    }
    for (int b = 0; b < p->nbufs; b++) {
        free(want[b]);
        free(got[b]);
    }
    free(want);
    free(got);
    emu_free(&B);
    kp_free(p);
    kiln_graph_free(g);
}

static int emu_setup(void)
{
    return kemu_block_init();
}

#endif /* KILN_CUDA_EMU_H */
