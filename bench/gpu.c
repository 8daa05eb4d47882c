/*
 * gpu.c - Kiln's side of the GPU benchmarks (bench/gpu.sh runs it beside its
 * peers, bench/gpu_peers.py). Every graph is compiled for KILN_TARGET_CUDA.
 * Each case prints one line
 *     RESULT <case> <seconds> <rate> <unit>
 * with the best wall-clock time of R runs of kiln_module_run (each run
 * synchronises at its end; warm-up runs first, compile excluded), after a
 * check of a sample of the result against a reference computed here. When Kiln
 * cannot compile, run or get the case right it prints instead
 *     NOTE <case> kiln: <status>: <message>
 * and exits 1, so the driver can put the reason in the table.
 *
 *   bench_gpu compile [M]       kiln_compile of the MLP train step (batch M): cold
 *                               (fresh cache), cached (same process, fresh process)
 *   bench_gpu tutorial N [R]    randn(N, N) * randn(N, N), drawn on the device
 *   bench_gpu chain N [R]       y = tanh(exp(-x) * 2 + 1) * x over N f32 (fused)
 *   bench_gpu sgemm N [R]       C = A @ B, f32, N x N
 *   bench_gpu mlp B [R]         train step: MLP 784-1024-1024-10, batch B, ReLU,
 *                               cross-entropy, Adam
 *
 * BENCH_GPU_TARGET=c runs the same on the C target (a test of the harness where
 * there is no GPU; its figures are not GPU figures).
 */
#include "models.h"

#include <kiln.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WARMUP 3

static const char *case_name; /* for NOTE lines */
/* BENCH_GPU_TARGET=c compiles for the C target instead: a test of the harness on a
 * machine without a GPU, not a benchmark */
static kiln_target target = KILN_TARGET_CUDA;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *status_name(kiln_status s)
{
    switch (s) {
    case KILN_OK: return "KILN_OK";
    case KILN_ERR_INVALID: return "KILN_ERR_INVALID";
    case KILN_ERR_SHAPE: return "KILN_ERR_SHAPE";
    case KILN_ERR_DTYPE: return "KILN_ERR_DTYPE";
    case KILN_ERR_NOMEM: return "KILN_ERR_NOMEM";
    case KILN_ERR_UNSUPPORTED: return "KILN_ERR_UNSUPPORTED";
    case KILN_ERR_COMPILE: return "KILN_ERR_COMPILE";
    case KILN_ERR_LOAD: return "KILN_ERR_LOAD";
    case KILN_ERR_DEVICE: return "KILN_ERR_DEVICE";
    case KILN_ERR_IO: return "KILN_ERR_IO";
    case KILN_ERR_FORMAT: return "KILN_ERR_FORMAT";
    case KILN_ERR_NOT_FOUND: return "KILN_ERR_NOT_FOUND";
    }
    return "unknown status";
}

/* The reason goes on one line: it becomes a table cell. */
static void fail(const char *status, const char *why)
{
    printf("NOTE %s kiln: %s: ", case_name, status);
    for (const char *p = why; *p; p++)
        putchar(*p == '\n' || *p == '|' ? ' ' : *p);
    putchar('\n');
    exit(1);
}

/* A wrong result keeps its timing in the note: a bound that is too tight must not hide it. */
static void wrong(const char *why, double t, double rate, const char *unit)
{
    char msg[320];
    snprintf(msg, sizeof msg, "%s (%.6f s, %.1f %s)", why, t, rate, unit);
    fail("wrong result", msg);
}

static void check(kiln_status s, kiln_module *m)
{
    if (s != KILN_OK)
        fail(status_name(s), kiln_module_error(m));
}

static kiln_module *compile(kiln_graph *g, const char *cache_dir)
{
    kiln_compile_opts opts = {.target = target, .cache_dir = cache_dir};
    kiln_module *m = NULL;
    kiln_status s = kiln_graph_status(g);
    if (s == KILN_OK)
        s = kiln_compile(g, &opts, &m);
    if (s != KILN_OK)
        fail(status_name(s), kiln_graph_error(g));
    return m;
}

/* Best time of `runs` runs of entry, after WARMUP runs. */
static double best_of(kiln_module *m, const char *entry, int runs)
{
    for (int i = 0; i < WARMUP; i++)
        check(kiln_module_run(m, entry), m);
    double best = 1e30;
    for (int i = 0; i < runs; i++) {
        double t = now();
        check(kiln_module_run(m, entry), m);
        t = now() - t;
        best = t < best ? t : best;
    }
    return best;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        fail("host", "out of memory");
    return p;
}

static void fill(float *p, int64_t n, unsigned seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
    }
}

/* ---- the cases ------------------------------------------------------------------------ */

/* Compile time in seconds of bench_mlp_graph(batch) with cache_dir; exits on failure. */
static double compile_time(int64_t batch, const char *cache_dir)
{
    kiln_graph *g = bench_mlp_graph(batch);
    double t = now();
    kiln_module *m = compile(g, cache_dir);
    t = now() - t;
    kiln_module_free(m);
    kiln_graph_free(g);
    return t;
}

static void compile_case(int64_t batch, const char *self)
{
    char dir[] = "/tmp/kiln-bench-gpu-XXXXXX";
    if (!mkdtemp(dir))
        fail("host", "mkdtemp failed");
    double cold = compile_time(batch, dir);
    double cached = compile_time(batch, dir);
    /* the same key from a new process, where no library or context is warm yet */
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' --cached-child %lld '%s'", self, (long long)batch, dir);
    FILE *child = popen(cmd, "r");
    double fresh = -1;
    if (!child || fscanf(child, "%lf", &fresh) != 1 || pclose(child) != 0 || fresh < 0)
        fresh = -1;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_gpu: could not remove %s\n", dir);
    printf("RESULT compile_cold %.6f %.1f ms\n", cold, cold * 1e3);
    printf("RESULT compile_cached %.6f %.2f ms\n", cached, cached * 1e3);
    if (fresh >= 0)
        printf("RESULT compile_cached_fresh %.6f %.2f ms\n", fresh, fresh * 1e3);
    else
        printf("NOTE compile_cached_fresh kiln: the cached compile in a child process failed\n");
}

static void tutorial(int64_t n, int runs)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *z = kiln_mul(g, kiln_randn(g, KILN_F32, KILN_SHAPE(n, n)),
                              kiln_randn(g, KILN_F32, KILN_SHAPE(n, n)));
    kiln_entry(g, "z", 1, &z, (const char *[]){"z"});
    kiln_module *m = compile(g, NULL);
    double t = best_of(m, "z", runs);
    /* the product of two independent standard normals has mean 0 and variance 1 */
    size_t bytes = sizeof(float) * (size_t)(n * n);
    float *d = xmalloc(bytes);
    check(kiln_module_get(m, "z", d, bytes), m);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n * n; i++) {
        double v = (double)d[i];
        s += v;
        s2 += v * v;
    }
    double mean = s / (double)(n * n), var = s2 / (double)(n * n) - mean * mean;
    char why[128];
    snprintf(why, sizeof why, "mean %.4f, variance %.4f, expected 0 and 1", mean, var);
    if (fabs(mean) > 0.01 || fabs(var - 1) > 0.05)
        wrong(why, t, (double)bytes / t / 1e9, "GB/s");
    printf("RESULT tutorial_%lld %.6f %.1f GB/s\n", (long long)n, t, (double)bytes / t / 1e9);
    free(d);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void chain(int64_t n, int runs)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(n));
    kiln_tensor *e = kiln_mul(g, kiln_exp(g, kiln_neg(g, x)), kiln_scalar(g, 2));
    kiln_tensor *y = kiln_mul(g, kiln_tanh(g, kiln_add(g, e, kiln_scalar(g, 1))), x);
    kiln_entry(g, "f", 1, &y, (const char *[]){"y"});
    kiln_module *m = compile(g, NULL);
    size_t bytes = sizeof(float) * (size_t)n;
    float *d = xmalloc(bytes), *out = xmalloc(bytes);
    fill(d, n, 6);
    check(kiln_module_set(m, "x", d, bytes), m);
    double t = best_of(m, "f", runs);
    check(kiln_module_get(m, "y", out, bytes), m);
    for (int64_t i = 0; i < n; i += n / 4096 + 1) {
        double xi = (double)d[i], ref = tanh(exp(-xi) * 2 + 1) * xi;
        if (fabs((double)out[i] - ref) > 1e-5 * fabs(ref) + 1e-6) {
            char why[160];
            snprintf(why, sizeof why, "y[%lld] = %.8g, expected %.8g", (long long)i, (double)out[i],
                     ref);
            wrong(why, t, 2.0 * (double)bytes / t / 1e9, "GB/s");
        }
    }
    /* one read of x and one write of y per element */
    printf("RESULT chain_%lld %.6f %.1f GB/s\n", (long long)n, t, 2.0 * (double)bytes / t / 1e9);
    free(d);
    free(out);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void sgemm(int64_t n, int runs)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(n, n));
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(n, n));
    kiln_tensor *c = kiln_matmul(g, a, b);
    kiln_entry(g, "mm", 1, &c, (const char *[]){"c"});
    kiln_module *m = compile(g, NULL);
    size_t bytes = sizeof(float) * (size_t)(n * n);
    float *ha = xmalloc(bytes), *hb = xmalloc(bytes), *hc = xmalloc(bytes);
    fill(ha, n * n, 3);
    fill(hb, n * n, 4);
    check(kiln_module_set(m, "a", ha, bytes), m);
    check(kiln_module_set(m, "b", hb, bytes), m);
    double t = best_of(m, "mm", runs);
    check(kiln_module_get(m, "c", hc, bytes), m);
    /* 64 entries against a double dot product. f32 sums err by about 1e-7 of the sum of
     * |a_il b_lj| here, TF32 inputs (10-bit mantissa) by about 1e-5: the bound parts them. */
    double gflops = 2.0 * (double)n * (double)n * (double)n / t / 1e9;
    for (int k = 0; k < 64; k++) {
        int64_t i = (k * 7919) % n, j = (k * 104729 + 13) % n;
        double ref = 0, mag = 0;
        for (int64_t l = 0; l < n; l++) {
            double p = (double)ha[i * n + l] * (double)hb[l * n + j];
            ref += p;
            mag += fabs(p);
        }
        if (fabs((double)hc[i * n + j] - ref) > 2e-6 * mag + 1e-6) {
            char why[200];
            snprintf(why, sizeof why,
                     "c[%lld,%lld] = %.8g, expected %.8g (off by more than f32 rounding: TF32?)",
                     (long long)i, (long long)j, (double)hc[i * n + j], ref);
            wrong(why, t, gflops, "GFLOP/s");
        }
    }
    printf("RESULT sgemm_%lld %.6f %.1f GFLOP/s\n", (long long)n, t, gflops);
    free(ha);
    free(hb);
    free(hc);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void mlp(int64_t batch, int runs)
{
    kiln_graph *g = bench_mlp_graph(batch);
    kiln_module *m = compile(g, NULL);
    float *xs = xmalloc(sizeof(float) * (size_t)batch * 784);
    int64_t *ys = xmalloc(sizeof(int64_t) * (size_t)batch);
    fill(xs, batch * 784, 5);
    for (int64_t i = 0; i < batch; i++)
        ys[i] = i % 10;
    check(kiln_module_set(m, "x", xs, sizeof(float) * (size_t)batch * 784), m);
    check(kiln_module_set(m, "y", ys, sizeof(int64_t) * (size_t)batch), m);
    double first, last;
    check(kiln_module_run(m, "train"), m);
    check(kiln_module_get_scalar(m, "train.loss", &first), m);
    double t = best_of(m, "train", runs);
    check(kiln_module_get_scalar(m, "train.loss", &last), m);
    /* Adam on one fixed batch: the loss must fall, from about ln(10) */
    if (!(last < first) || !(fabs(first - log(10.0)) < 1.0)) {
        char why[128];
        snprintf(why, sizeof why, "loss %.4f after the first step, %.4f after %d more", first, last,
                 WARMUP + runs);
        wrong(why, t, (double)batch / t, "samples/s");
    }
    printf("RESULT mlp_%lld %.6f %.0f samples/s\n", (long long)batch, t, (double)batch / t);
    free(xs);
    free(ys);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    int64_t n = argc > 2 ? atoll(argv[2]) : 0;
    int runs = argc > 3 ? atoi(argv[3]) : 20;
    char name[64];
    snprintf(name, sizeof name, "%s_%lld", c, (long long)n);
    case_name = name;
    runs = runs < 1 ? 1 : runs;
    const char *t = getenv("BENCH_GPU_TARGET");
    if (t && strcmp(t, "c") == 0)
        target = KILN_TARGET_C;
    if (strcmp(c, "--cached-child") == 0 && argc == 4) {
        case_name = "compile_cached_fresh";
        printf("%.6f\n", compile_time(n, argv[3]));
    } else if (strcmp(c, "compile") == 0) {
        case_name = "compile_cold";
        compile_case(n > 0 ? n : 256, argv[0]);
    } else if (strcmp(c, "tutorial") == 0 && n > 0)
        tutorial(n, runs);
    else if (strcmp(c, "chain") == 0 && n > 0)
        chain(n, runs);
    else if (strcmp(c, "sgemm") == 0 && n > 0)
        sgemm(n, runs);
    else if (strcmp(c, "mlp") == 0 && n > 0)
        mlp(n, runs);
    else {
        fprintf(stderr, "usage: bench_gpu compile [BATCH] | tutorial N [RUNS] | chain N [RUNS] |"
                        " sgemm N [RUNS] | mlp BATCH [RUNS]\n");
        return 2;
    }
    return 0;
}
