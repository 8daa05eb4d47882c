/*
 * cpu.c - Kiln's side of the CPU benchmarks (bench/cpu.sh runs it beside its
 * peers, bench/peers.py). Each case prints one line
 *     RESULT <case> <seconds> <rate> <unit>
 * with the best time of its runs; the rate is GFLOP/s or GB/s.
 *
 *   bench_cpu probe         the machine's FP32 FMA peak (all cores) and triad bandwidth
 *   bench_cpu sgemm N       C = A @ B, f32, N x N
 *   bench_cpu mlp           train step: MLP 784-1024-1024-10, batch 256, ReLU,
 *                           cross-entropy, Adam
 *   bench_cpu cnn           train step of samples/cnn.c: conv3x3(32)-pool-conv3x3(64)-
 *                           pool-linear on 28x28 images, batch 64, Adam
 *   bench_cpu gpt           train step of samples/gpt.c: 2 blocks, d 64, 4 heads,
 *                           T 32, batch 16, AdamW with clipping
 *   bench_cpu gpt128        the same GPT at the CPU issue's size: d 128, T 64
 *   bench_cpu chain         y = exp(x * 0.5 + 1) * x - 2 over 1e8 f32 (fused)
 *   bench_cpu tanh          y = tanh(exp(-x) * 2 + 1) * x over 1e8 f32 (fused)
 *   bench_cpu tutorial [R]  randn(10000, 10000) * randn(10000, 10000), R runs
 *
 * Every run executes every kernel (Kiln never skips a run); random ops draw
 * new numbers each run.
 */
#include "models.h"

#include <kiln.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const char *why)
{
    fprintf(stderr, "bench_cpu: %s: %s\n", what, why);
    exit(1);
}

static kiln_module *compile(kiln_graph *g)
{
    kiln_module *m = NULL;
    if (kiln_graph_status(g) != KILN_OK || kiln_compile(g, NULL, &m) != KILN_OK)
        die("kiln_compile", kiln_graph_error(g));
    return m;
}

/* Best time of `runs` runs of entry (after one warm-up run). */
static double best_of(kiln_module *m, const char *entry, int runs)
{
    if (kiln_module_run(m, entry) != KILN_OK)
        die(entry, kiln_module_error(m));
    double best = 1e30;
    for (int i = 0; i < runs; i++) {
        double t = now();
        if (kiln_module_run(m, entry) != KILN_OK)
            die(entry, kiln_module_error(m));
        t = now() - t;
        best = t < best ? t : best;
    }
    return best;
}

static void fill(float *p, int64_t n, unsigned seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
}

/* ---- the probe: FMA peak and triad bandwidth ------------------------------------------ */

typedef float v16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));

/* 16 independent FMA chains, iters times; returns flops. */
__attribute__((target("avx512f"))) static double fma_avx512(long iters)
{
    v16 a[16], m = {0}, c = {0};
    for (int i = 0; i < 16; i++)
        a[i] = (v16){0} + (float)i * 1e-3f;
    m += 0.999f;
    c += 1e-4f;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 16; i++)
            a[i] = a[i] * m + c; /* contracted to one FMA */
    volatile float sink = 0;
    for (int i = 0; i < 16; i++)
        sink += a[i][0];
    (void)sink;
    return (double)iters * 16 * 16 * 2;
}

__attribute__((target("avx2,fma"))) static double fma_avx2(long iters)
{
    v8 a[12], m = {0}, c = {0};
    for (int i = 0; i < 12; i++)
        a[i] = (v8){0} + (float)i * 1e-3f;
    m += 0.999f;
    c += 1e-4f;
    for (long it = 0; it < iters; it++)
        for (int i = 0; i < 12; i++)
            a[i] = a[i] * m + c;
    volatile float sink = 0;
    for (int i = 0; i < 12; i++)
        sink += a[i][0];
    (void)sink;
    return (double)iters * 12 * 8 * 2;
}

typedef struct {
    long iters;
    double flops;
    float *a, *b, *c;
    int64_t lo, hi;
    int reps;
} job;

static void *fma_thread(void *arg)
{
    job *j = arg;
    j->flops = __builtin_cpu_supports("avx512f") ? fma_avx512(j->iters) : fma_avx2(j->iters);
    return NULL;
}

static void *triad_thread(void *arg)
{
    job *j = arg;
    for (int r = 0; r < j->reps; r++)
        for (int64_t i = j->lo; i < j->hi; i++)
            j->a[i] = j->b[i] + 3.0f * j->c[i];
    return NULL;
}

/* Runs fn on every core at once; returns the wall time. */
static double on_all_cores(void *(*fn)(void *), job *jobs, int n)
{
    pthread_t t[256];
    double t0 = now();
    for (int i = 0; i < n; i++)
        pthread_create(&t[i], NULL, fn, &jobs[i]);
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    return now() - t0;
}

static void probe(void)
{
    int n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    n = n < 1 ? 1 : n > 256 ? 256 : n;
    job jobs[256];
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        memset(jobs, 0, sizeof jobs);
        for (int i = 0; i < n; i++)
            jobs[i].iters = 20000000;
        double t = on_all_cores(fma_thread, jobs, n), flops = 0;
        for (int i = 0; i < n; i++)
            flops += jobs[i].flops;
        best = flops / t > best ? flops / t : best;
    }
    printf("RESULT fma_peak %.6f %.1f GFLOP/s\n", 0.0, best / 1e9);
    int64_t len = 50 * 1000 * 1000; /* 3 x 200 MB */
    float *a = malloc(sizeof(float) * len), *b = malloc(sizeof(float) * len),
          *c = malloc(sizeof(float) * len);
    if (!a || !b || !c)
        die("probe", "out of memory");
    fill(b, len, 1);
    fill(c, len, 2);
    memset(a, 0, sizeof(float) * len);
    double tbest = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        for (int i = 0; i < n; i++)
            jobs[i] = (job){
                .a = a, .b = b, .c = c, .lo = len * i / n, .hi = len * (i + 1) / n, .reps = 1};
        double t = on_all_cores(triad_thread, jobs, n);
        tbest = t < tbest ? t : tbest;
    }
    /* two reads and one write per element (write-allocate traffic not counted) */
    printf("RESULT triad %.6f %.1f GB/s\n", tbest, 12.0 * (double)len / tbest / 1e9);
    free(a);
    free(b);
    free(c);
}

/* ---- the cases ------------------------------------------------------------------------ */

static void sgemm(int64_t n)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(n, n));
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(n, n));
    kiln_tensor *c = kiln_matmul(g, a, b);
    kiln_entry(g, "mm", 1, &c, NULL);
    kiln_module *m = compile(g);
    float *d = malloc(sizeof(float) * (size_t)(n * n));
    fill(d, n * n, 3);
    kiln_module_set(m, "a", d, sizeof(float) * (size_t)(n * n));
    fill(d, n * n, 4);
    kiln_module_set(m, "b", d, sizeof(float) * (size_t)(n * n));
    double t = best_of(m, "mm", n >= 4096 ? 3 : n >= 2048 ? 5 : 20);
    printf("RESULT sgemm_%lld %.6f %.1f GFLOP/s\n", (long long)n, t,
           2.0 * (double)n * (double)n * (double)n / t / 1e9);
    free(d);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void mlp(void)
{
    enum { B = 256 };
    kiln_graph *g = bench_mlp_graph(B);
    kiln_module *m = compile(g);
    float *xs = malloc(sizeof(float) * B * 784);
    int64_t ys[B];
    fill(xs, B * 784, 5);
    for (int i = 0; i < B; i++)
        ys[i] = i % 10;
    kiln_module_set(m, "x", xs, sizeof(float) * B * 784);
    kiln_module_set(m, "y", ys, sizeof ys);
    double t = best_of(m, "train", 20);
    double flops = 3.0 * 2.0 * (784.0 * 1024 + 1024.0 * 1024 + 1024.0 * 10) * B;
    printf("RESULT mlp %.6f %.1f GFLOP/s\n", t, flops / t / 1e9);
    free(xs);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* The CNN step's FLOPs: 2 per multiply-add of the convolutions and the
 * linear layer, forward and twice that backward. */
static void cnn(void)
{
    enum { B = 64, C = 32 };
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 42);
    kiln_tensor *p[CNN_NPARAMS];
    cnn_train_step(g, p, C, B, 2e-3, false);
    kiln_module *m = compile(g);
    float *xs = malloc(sizeof(float) * B * 784);
    int64_t ys[B];
    fill(xs, B * 784, 6);
    for (int i = 0; i < B; i++)
        ys[i] = i % CNN_CLASSES;
    kiln_module_set(m, "x", xs, sizeof(float) * B * 784);
    kiln_module_set(m, "y", ys, sizeof ys);
    double t = best_of(m, "train", 20);
    double fwd = 2.0 * B * (28 * 28 * C * 9.0 + 14 * 14 * 2 * C * C * 9.0 + 2 * C * 49.0 * 10);
    printf("RESULT cnn %.6f %.1f GFLOP/s\n", t, 3 * fwd / t / 1e9);
    free(xs);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* The GPT step (samples/gpt_model.h) of embedding d, context t, batch 16,
 * 4 heads; its FLOPs: 6 per param per token for the matmuls, plus the
 * attention's two batched matmuls (6 x 2 x T^2 x d per layer and sequence). */
static void gpt(const char *name, int64_t d, int64_t t)
{
    enum { VOCAB = 76 }; /* GPL-3's bytes */
    static gpt_model md;
    const int64_t batch = GPT_BATCH;
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 1337);
    gpt_params_sized(g, &md, VOCAB, d, GPT_HEADS, t, batch);
    gpt_train_step_of(g, &md, VOCAB);
    kiln_module *m = compile(g);
    int64_t *x = malloc(sizeof(int64_t) * (size_t)(batch * t));
    int64_t *y = malloc(sizeof(int64_t) * (size_t)(batch * t));
    for (int64_t i = 0; i < batch * t; i++) {
        x[i] = (i * 37) % VOCAB;
        y[i] = (i * 37 + 11) % VOCAB;
    }
    kiln_module_set(m, "x", x, sizeof(int64_t) * (size_t)(batch * t));
    kiln_module_set(m, "y", y, sizeof(int64_t) * (size_t)(batch * t));
    double secs = best_of(m, "train", 20);
    const double tokens = (double)(batch * t);
    double weights = GPT_LAYERS * 12.0 * (double)(d * d) + VOCAB * (double)d;
    double flops = 6 * weights * tokens + GPT_LAYERS * 6 * 2.0 * (double)(t * t * d * batch);
    printf("RESULT %s %.6f %.1f GFLOP/s\n", name, secs, flops / secs / 1e9);
    free(x);
    free(y);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* chain: exp(x * 0.5 + 1) * x - 2; tanh: the CPU issue's tanh(exp(-x) * 2 + 1) * x */
static void chain(bool tanh_chain)
{
    const int64_t n = 100 * 1000 * 1000;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(n));
    kiln_tensor *y;
    if (tanh_chain) {
        kiln_tensor *e = kiln_mul(g, kiln_exp(g, kiln_neg(g, x)), kiln_scalar(g, 2));
        y = kiln_mul(g, kiln_tanh(g, kiln_add(g, e, kiln_scalar(g, 1))), x);
    } else {
        kiln_tensor *e =
            kiln_exp(g, kiln_add(g, kiln_mul(g, x, kiln_scalar(g, 0.5)), kiln_scalar(g, 1)));
        y = kiln_sub(g, kiln_mul(g, e, x), kiln_scalar(g, 2));
    }
    kiln_entry(g, "f", 1, &y, NULL);
    kiln_module *m = compile(g);
    float *d = malloc(sizeof(float) * (size_t)n);
    fill(d, n, 6);
    kiln_module_set(m, "x", d, sizeof(float) * (size_t)n);
    double t = best_of(m, "f", 10);
    printf("RESULT %s %.6f %.1f GB/s\n", tanh_chain ? "tanh" : "chain", t,
           8.0 * (double)n / t / 1e9);
    free(d);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void tutorial(int runs)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *z = kiln_mul(g, kiln_randn(g, KILN_F32, KILN_SHAPE(10000, 10000)),
                              kiln_randn(g, KILN_F32, KILN_SHAPE(10000, 10000)));
    kiln_entry(g, "z", 1, &z, NULL);
    kiln_module *m = compile(g);
    double t = best_of(m, "z", runs);
    printf("RESULT tutorial %.6f %.1f GB/s\n", t, 4e8 / t / 1e9);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (strcmp(c, "probe") == 0)
        probe();
    else if (strcmp(c, "sgemm") == 0 && argc > 2)
        sgemm(atoll(argv[2]));
    else if (strcmp(c, "mlp") == 0)
        mlp();
    else if (strcmp(c, "cnn") == 0)
        cnn();
    else if (strcmp(c, "gpt") == 0)
        gpt("gpt", GPT_EMBED, GPT_BLOCK);
    else if (strcmp(c, "gpt128") == 0)
        gpt("gpt128", 128, 64);
    else if (strcmp(c, "chain") == 0 || strcmp(c, "tanh") == 0)
        chain(strcmp(c, "tanh") == 0);
    else if (strcmp(c, "tutorial") == 0)
        tutorial(argc > 2 ? atoi(argv[2]) : 3);
    else {
        fprintf(
            stderr,
            "usage: bench_cpu probe | sgemm N | mlp | cnn | gpt | gpt128 | chain | tanh | tutorial "
            "[RUNS]\n");
        return 2;
    }
    return 0;
}
