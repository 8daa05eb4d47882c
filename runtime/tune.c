/*
 * tune.c - the schedules of a program's packed f32 GEMMs: tuned on this
 * machine, or the host model's.
 *
 * For each packed GEMM kernel (shape batch x m x n x k), in order:
 *   1. the cache: a schedule tuned earlier for this shape, this CPU (model
 *      name and feature flags) and this thread count, in the compile cache
 *      as <key>.tune (one line of text, sealed as every cache entry is);
 *   2. tuning, when it is on (kiln_compile_opts.tune, else $KILN_TUNE): the
 *      candidates are compiled as a plain matmul of the shape (A [m, k] and
 *      B [k, n], contiguous or transposed as the kernel reads them) and timed, best of a few runs
 * each, by coordinate descent from the model's schedule: the register block, then KB, then MB, then
 * NB, each set to the best seen so far (tinygrad's and TVM's searches time whole candidates the
 * same way; this space is small enough to walk). The budget bounds the time per shape; the winner
 * is cached;
 *   3. otherwise the host model's (cgen_gemm_model of rt_host()).
 * Conv's implicit GEMMs and transposed weights take the schedule of their
 * shape tuned as a plain matmul.
 *
 * Two choices are made for the whole program the same way: the loops'
 * vector width (cgen_opts.vector_width, on AVX-512 hosts, for a program with
 * a pointwise or reduction kernel of WIDTH_WORK elements or more) and
 * streaming stores (cgen_opts.stream_min: pointwise outputs of at least that
 * many bytes go around the caches; for a program with an output of
 * STREAM_MIN or more). The cache's decision for this graph, CPU and thread
 * count; else (tuning on) the program itself compiled each way, every entry
 * run (inputs zero) and timed in two alternating rounds, a challenger taken
 * where it wins both by TUNE_MARGIN, within the same budget as a GEMM shape:
 * first the model's width against the other (512 against 256 bits, or the
 * compiler's own choice against 512 where the model leaves it to the
 * compiler), then, at that width, streamed against not; else the host
 * model's (cgen_vector_width, cgen_stream_min). The GEMM candidates are
 * timed at the model's width: the microkernel's explicit vectors do not
 * depend on it, only its packing of A and its epilogue. Stand-in kernels would
 * mislead: on a 2-core EPYC a plain fill of 512 MiB ran at 55 GB/s through
 * the caches and 40 streamed, while the tutorial's randn * randn (400 MB) ran
 * 14% faster streamed; and the width matters to transcendental chains only
 * (1.9x on tanh(exp(-x) * 2 + 1) * x, nothing on x * 2 + 1).
 */
#include "rt.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

enum { TUNE_DEFAULT_S = 3, TUNE_MAX_S = 600, TUNE_RUNS = 8 };
#define TUNE_MARGIN 0.03

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The FMA probe needs its sixteen chains in registers: an unoptimized
 * build (the sanitizers') keeps them in memory and measures the stores. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__OPTIMIZE__)
#define HAVE_FMA_PROBE 1
typedef float probe_v16 __attribute__((vector_size(64)));

/* n dependent 512-bit FMAs in one chain */
__attribute__((target("avx512f"), noinline)) static float fma_chain1(int64_t n)
{
    probe_v16 a = {0}, x = {0}, y = {0};
    x += 0.999f;
    y += 1e-3f;
    for (int64_t r = 0; r < n; r++)
        a = a * x + y;
    return a[0];
}

/* 16 n of them in sixteen independent chains */
__attribute__((target("avx512f"), noinline)) static float fma_chain16(int64_t n)
{
    probe_v16 a[16], x = {0}, y = {0};
    x += 0.999f;
    y += 1e-3f;
    for (int i = 0; i < 16; i++)
        a[i] = (probe_v16){0} + (float)i;
    for (int64_t r = 0; r < n; r++)
        for (int i = 0; i < 16; i++)
            a[i] = a[i] * x + y;
    float s = 0;
    for (int i = 0; i < 16; i++)
        s += a[i][0];
    return s;
}

/* FMAs in flight (latency x units): one chain takes a latency per FMA,
 * sixteen chains 1 / units per FMA when 16 >= latency x units, so for the
 * same number of FMAs t(one chain) / t(sixteen) is latency x units. Best of
 * three, about a millisecond in all. */
static int fma_inflight(void)
{
    if (!(cgen_host_features() & CGEN_AVX512F))
        return 0;
    volatile int64_t n = 1 << 16; /* not a constant the compiler could fold the chains with */
    volatile float sink = 0;
    double t1 = 1e9, t16 = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double a = now_s();
        sink += fma_chain1(n);
        double b = now_s();
        sink += fma_chain16(n / 16);
        double c = now_s();
        t1 = b - a < t1 ? b - a : t1;
        t16 = c - b < t16 ? c - b : t16;
    }
    (void)sink;
    return t16 > 0 ? (int)lround(t1 / t16) : 0;
}
#else
#define HAVE_FMA_PROBE 0
static int fma_inflight(void)
{
    return 0;
}
#endif

bool rt_host_measures_fma(void)
{
    return HAVE_FMA_PROBE && (cgen_host_features() & CGEN_AVX512F);
}

static cgen_host host;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

static void host_probe(void)
{
    host = (cgen_host){cgen_host_features(), 0, 0, fma_inflight(), 0};
#ifdef _SC_LEVEL1_DCACHE_SIZE
    long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    host.l1d = l1 > 0 ? l1 : 0;
    host.l2 = l2 > 0 ? l2 : 0;
    host.llc = l3 > 0 ? l3 : host.l2;
#endif
}

cgen_host rt_host(void)
{
    pthread_once(&host_once, host_probe);
    return host;
}

/* The seconds to tune each new shape: opts.tune, else $KILN_TUNE; 0 = off. */
static kiln_status budget_of(kiln_graph *g, const kiln_compile_opts *opts, const char *fn,
                             double *out)
{
    *out = 0;
    if (opts && opts->tune != 0) {
        if (!(opts->tune <= TUNE_MAX_S)) /* NaN too */
            return rt_compile_fail(g, KILN_ERR_INVALID,
                                   "%s: tune is %g seconds per GEMM shape; at most %d", fn,
                                   opts->tune, TUNE_MAX_S);
        *out = opts->tune > 0 ? opts->tune : 0;
        return KILN_OK;
    }
    const char *e = getenv("KILN_TUNE");
    if (!e || !*e || strcmp(e, "off") == 0 || strcmp(e, "0") == 0)
        return KILN_OK;
    if (strcmp(e, "on") == 0) {
        *out = TUNE_DEFAULT_S;
        return KILN_OK;
    }
    char *end = NULL;
    double v = strtod(e, &end);
    if (end == e || *end || !(v > 0 && v <= TUNE_MAX_S))
        return rt_compile_fail(g, KILN_ERR_INVALID,
                               "%s: KILN_TUNE is '%s': expected on, off, or the seconds to tune "
                               "each GEMM shape (0 to %d)",
                               fn, e, TUNE_MAX_S);
    *out = v;
    return KILN_OK;
}

/* A GEMM as tuned: its sizes, and whether A is read down its columns (k
 * not contiguous) and B across its rows (a transposed weight: k contiguous),
 * which change how the operands are packed. */
typedef struct {
    int64_t batch, m, n, k;
    int64_t at, bt;
} shape;

static shape shape_of(const kernel *k)
{
    const kk_matmul *mm = &k->mm;
    shape sh = {mm->batch, mm->m, mm->n, mm->k, 0, 0};
    sh.at = !kk_matmul_has_parts(mm) && mm->a_stride[2] != 1 && mm->k > 1;
    sh.bt = !kk_matmul_has_parts(mm) && mm->b_stride[1] == 1 && mm->b_stride[2] != 1 && mm->n > 1;
    return sh;
}

static uint64_t shape_key(const shape *sh, int threads)
{
    struct {
        char tag[8];
        uint64_t cpu;
        int64_t batch, m, n, k, at, bt, threads;
    } id = {"ktune1", rt_cpu_identity(), sh->batch, sh->m, sh->n, sh->k, sh->at, sh->bt, threads};
    return XXH3_64bits(&id, sizeof id);
}

/* "mr nr vl mb nb kb gflops\n" */
static bool parse_sched(const char *text, size_t n, cgen_gemm_sched *s, double *gflops)
{
    char line[128];
    if (n == 0 || n >= sizeof line)
        return false;
    memcpy(line, text, n);
    line[n] = '\0';
    long long mb, nb, kb;
    int used = 0;
    if (sscanf(line, "%d %d %d %lld %lld %lld %lf\n%n", &s->mr, &s->nr, &s->vl, &mb, &nb, &kb,
               gflops, &used) != 7 ||
        (size_t)used != n)
        return false;
    s->mb = mb;
    s->nb = nb;
    s->kb = kb;
    return true;
}

static _Atomic long timed; /* candidates timed by this process (rt_tune_timed) */

long rt_tune_timed(void)
{
    return timed;
}

/* A matmul of shape sh on schedule s, compiled and timed: the best of a few
 * runs (seconds), or -1 when it could not be built or run. */
static double time_candidate(const shape *sh, const cgen_gemm_sched *s,
                             const kiln_compile_opts *opts, rt_compile_fn compile, double budget)
{
    kiln_graph *g = kiln_graph_new();
    if (!g)
        return -1;
    timed++;
    int64_t ad[3] = {sh->batch, sh->at ? sh->k : sh->m, sh->at ? sh->m : sh->k};
    int64_t bd[3] = {sh->batch, sh->bt ? sh->n : sh->k, sh->bt ? sh->k : sh->n};
    int r = sh->batch > 1 ? 3 : 2, o = r == 3 ? 0 : 1;
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, r, ad + o);
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, r, bd + o);
    if (sh->at)
        a = kiln_transpose(g, a, -2, -1);
    if (sh->bt)
        b = kiln_transpose(g, b, -2, -1);
    kiln_tensor *c = kiln_matmul(g, a, b);
    kiln_module *m = NULL;
    kiln_compile_opts co = opts ? *opts : (kiln_compile_opts){0};
    co.target = KILN_TARGET_C;
    co.tune = -1;
    double best = -1;
    size_t na = (size_t)(sh->batch * sh->m * sh->k), nb = (size_t)(sh->batch * sh->k * sh->n);
    float *data = malloc(sizeof(float) * (na > nb ? na : nb));
    if (data && kiln_entry(g, "f", 1, &c, NULL) == KILN_OK && compile(g, &co, s, &m) == KILN_OK) {
        for (size_t i = 0; i < (na > nb ? na : nb); i++)
            data[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
        bool ok = kiln_module_set(m, "a", data, sizeof(float) * na) == KILN_OK &&
                  kiln_module_set(m, "b", data, sizeof(float) * nb) == KILN_OK &&
                  kiln_module_run(m, "f") == KILN_OK; /* warm: pages, caches, threads */
        double spent = 0;
        for (int i = 0; ok && i < TUNE_RUNS && (i < 2 || spent < budget); i++) {
            double t0 = now_s();
            ok = kiln_module_run(m, "f") == KILN_OK;
            double t = now_s() - t0;
            spent += t;
            if (ok && (best < 0 || t < best))
                best = t;
        }
        if (!ok)
            best = -1;
    }
    free(data);
    kiln_module_free(m);
    kiln_graph_free(g);
    return best;
}

/* ---- the whole program's variants, timed on the program itself ---- */

enum { STREAM_MIN = 32 << 20, WIDTH_WORK = 1 << 16 };

static _Thread_local rt_variant forced_variant;
static _Thread_local bool forcing;

const rt_variant *rt_variant_forced(void)
{
    return forcing ? &forced_variant : NULL;
}

void rt_variant_force(const rt_variant *v)
{
    forcing = v != NULL;
    if (v)
        forced_variant = *v;
}

/* Seconds for one run of every entry of g compiled as variant v: the best of
 * a few after a warm run; -1 when it could not be built or run. */
static double time_program(kiln_graph *g, rt_variant v, const kiln_compile_opts *opts,
                           rt_compile_fn compile, double budget)
{
    kiln_compile_opts co = opts ? *opts : (kiln_compile_opts){0};
    co.target = KILN_TARGET_C;
    co.tune = -1;
    kiln_module *m = NULL;
    timed++;
    rt_variant_force(&v);
    kiln_status s = compile(g, &co, NULL, &m);
    rt_variant_force(NULL);
    for (int i = 0; s == KILN_OK && i < m->nbufs; i++) /* inputs: zeros */
        if (m->bufs[i].role == RT_INPUT) {
            void *zero = calloc(1, m->bufs[i].nbytes ? m->bufs[i].nbytes : 1);
            s = zero ? kiln_module_set(m, m->bufs[i].name, zero, m->bufs[i].nbytes)
                     : KILN_ERR_NOMEM;
            free(zero);
        }
    double best = -1, spent = 0;
    for (int r = 0; s == KILN_OK && r <= TUNE_RUNS && (r < 2 || spent < budget); r++) {
        double t0 = now_s();
        for (int e = 0; e < m->g->nentries && s == KILN_OK; e++)
            s = kiln_module_run(m, m->g->entries[e].name);
        double t = now_s() - t0;
        if (r > 0) { /* the first warms pages, caches and threads */
            spent += t;
            best = best < 0 || t < best ? t : best;
        }
    }
    kiln_module_free(m);
    return s == KILN_OK ? best : -1;
}

static const char *variant_text(rt_variant v, char *out, size_t cap)
{
    snprintf(out, cap, "%s, %s",
             v.stream_min > 0    ? "streamed"
             : v.stream_min == 0 ? "stored through the caches"
                                 : "the model's stores",
             v.vector_width == 512   ? "512-bit vectors"
             : v.vector_width == 256 ? "256-bit vectors"
                                     : "the compiler's vectors");
    return out;
}

/* Whether variant b of program c (the caller's copy of its graph: the
 * candidates' errors stay there) beats variant a by TUNE_MARGIN in two
 * alternating rounds; false in *ok when either could not be timed. */
static bool beats(kiln_graph *c, rt_variant a, rt_variant b, const kiln_compile_opts *opts,
                  rt_compile_fn compile, double budget, bool *ok)
{
    bool wins = true;
    *ok = true;
    for (int round = 0; round < 2 && wins && *ok; round++) {
        double ta = time_program(c, a, opts, compile, budget / 4);
        double tb = time_program(c, b, opts, compile, budget / 4);
        *ok = ta > 0 && tb > 0;
        wins = tb < ta * (1 - TUNE_MARGIN);
        char sa[96], sb[96];
        if (*ok && ir_debug_level() >= 2)
            fprintf(stderr, "kiln: the program's runs: %.3f ms %s, %.3f ms %s\n", ta * 1e3,
                    variant_text(a, sa, sizeof sa), tb * 1e3, variant_text(b, sb, sizeof sb));
    }
    return wins && *ok;
}

/* The candidates' values of each coordinate (register blocks per vector width). */
static const int blocks512[][2] = {{6, 32}, {8, 32}, {4, 48}, {12, 16}, {14, 32}, {5, 48}};
static const int blocks256[][2] = {{4, 24}, {6, 16}, {3, 32}, {8, 8}, {5, 16}};
static const int64_t kbs[] = {128, 192, 256, 384, 512};
static const int64_t mbs[] = {96, 192, 256, 384, 512};
static const int64_t nbs[] = {128, 192, 256, 320, 512};

/* Keeps the model's schedule unless the winner beats it by TUNE_MARGIN when
 * both are timed again, in turn (timings on a shared host move by several
 * percent: a winner by noise alone would be a change for nothing). */
static bool confirm(const shape *sh, const cgen_gemm_sched *model, const kiln_compile_opts *opts,
                    rt_compile_fn compile, double budget, cgen_gemm_sched *best, double *t)
{
    if (*t <= 0 || memcmp(best, model, sizeof *best) == 0)
        return *t > 0;
    double tm = -1, tb = *t;
    for (int i = 0; i < 2; i++) {
        double a = time_candidate(sh, model, opts, compile, budget / 16);
        double b = time_candidate(sh, best, opts, compile, budget / 16);
        tm = a > 0 && (tm < 0 || a < tm) ? a : tm;
        tb = b > 0 && b < tb ? b : tb;
    }
    if (tm > 0 && tb > tm * (1 - TUNE_MARGIN)) {
        *best = *model;
        *t = tm;
    }
    return *t > 0;
}

/* Coordinate descent from the model's schedule within budget seconds; the
 * best schedule into *best (its time in *t); false when none ran. */
static bool tune_shape(const shape *sh, const cgen_gemm_sched *model, const kiln_compile_opts *opts,
                       rt_compile_fn compile, unsigned features, double budget,
                       cgen_gemm_sched *best, double *t, int *tried)
{
    double start = now_s();
    *best = *model;
    *t = time_candidate(sh, model, opts, compile, budget / 16);
    *tried = 1;
    bool wide = features & CGEN_AVX512F;
    int nblocks = wide ? (int)(sizeof blocks512 / sizeof *blocks512)
                       : (int)(sizeof blocks256 / sizeof *blocks256);
    for (int coord = 0; coord < 4; coord++) {
        int nv = coord == 0 ? nblocks : 5;
        cgen_gemm_sched base = *best;
        for (int v = 0; v < nv; v++) {
            if (now_s() - start > budget)
                return *t > 0;
            cgen_gemm_sched c = base;
            if (coord == 0) {
                c.mr = wide ? blocks512[v][0] : blocks256[v][0];
                c.nr = wide ? blocks512[v][1] : blocks256[v][1];
                c.mb = c.mb / c.mr * c.mr;
            } else if (coord == 1) {
                c.kb = kbs[v];
            } else if (coord == 2) {
                c.mb = mbs[v] / c.mr * c.mr;
            } else {
                c.nb = nbs[v];
            }
            if (memcmp(&c, &base, sizeof c) == 0 || !cgen_gemm_sched_ok(&c, features))
                continue;
            double tc = time_candidate(sh, &c, opts, compile, budget / 16);
            ++*tried;
            if (tc > 0 && (*t < 0 || tc < *t)) {
                *t = tc;
                *best = c;
            }
        }
    }
    return confirm(sh, model, opts, compile, budget, best, t);
}

static void debug_sched(const shape *sh, const cgen_gemm_sched *s, const char *why)
{
    fprintf(stderr, "kiln: gemm %lldx%lldx%lld%s%s", (long long)sh->m, (long long)sh->n,
            (long long)sh->k, sh->at ? " A^T" : "", sh->bt ? " B^T" : "");
    if (sh->batch > 1)
        fprintf(stderr, " (batch %lld)", (long long)sh->batch);
    fprintf(stderr, ": register block %dx%d, blocks mb %lld nb %lld kb %lld (%s)\n", s->mr, s->nr,
            (long long)s->mb, (long long)s->nb, (long long)s->kb, why);
}

/* What rt_tune needs to choose one shape's schedule. */
typedef struct {
    const kiln_compile_opts *opts;
    rt_compile_fn compile;
    unsigned features;
    cgen_host host;
    cgen_gemm_sched model;
    double budget;   /* seconds per new shape; 0: no tuning */
    const char *dir; /* the compile cache, or NULL */
    int threads;
    bool debug;
} tune_ctx;

/* Shape sh's schedule into *out: the cache's, else (tuning on) the tuned
 * one, then cached; false: the model's. */
static bool choose(const tune_ctx *c, const shape *sh, cgen_gemm_sched *out)
{
    uint64_t key = shape_key(sh, c->threads);
    size_t n = 0;
    char *text = c->dir ? rt_cache_get(c->dir, key, "tune", &n) : NULL;
    double gflops = 0;
    bool cached =
        text && parse_sched(text, n, out, &gflops) && cgen_gemm_sched_ok(out, c->features);
    ir_free(text);
    char why[200];
    if (cached) {
        if (c->debug)
            debug_sched(sh, out, "tuned earlier, from the cache");
        return true;
    }
    double secs = 0, t0 = now_s();
    int tried = 0;
    if (c->budget > 0 && tune_shape(sh, &c->model, c->opts, c->compile, c->features, c->budget, out,
                                    &secs, &tried)) {
        double gf = 2.0 * (double)(sh->batch * sh->m * sh->n) * (double)sh->k / secs / 1e9;
        char line[128];
        int len = snprintf(line, sizeof line, "%d %d %d %lld %lld %lld %.1f\n", out->mr, out->nr,
                           out->vl, (long long)out->mb, (long long)out->nb, (long long)out->kb, gf);
        if (c->dir)
            rt_cache_put(c->dir, key, "tune", line, (size_t)len);
        snprintf(why, sizeof why, "tuned now: %d candidates in %.1f s, %.1f GFLOP/s", tried,
                 now_s() - t0, gf);
        if (c->debug)
            debug_sched(sh, out, why);
        return true;
    }
    snprintf(why, sizeof why,
             "host model: L1d %lld KiB, L2 %lld KiB, %d FMAs in flight; KILN_TUNE=on tunes it",
             (long long)(c->host.l1d >> 10), (long long)(c->host.l2 >> 10), c->host.fma_inflight);
    if (c->debug)
        debug_sched(sh, &c->model, why);
    return false;
}

/* Whether a pointwise kernel of p writes an f32 output of STREAM_MIN or more. */
static bool big_pointwise(const kprogram *p)
{
    for (int i = 0; i < p->nkernels; i++)
        for (int s = 0; p->kernels[i].kind == KK_POINTWISE && s < p->kernels[i].nstores; s++) {
            const kbuf *b = &p->bufs[p->kernels[i].stores[s].buf];
            if (b->dtype == KILN_F32 && b->numel * 4 >= STREAM_MIN)
                return true;
        }
    return false;
}

/* Whether p has loops the vectorizer's width can matter to: an AVX-512 host
 * (256 or 512 bits) and a pointwise or reduction kernel of WIDTH_WORK
 * elements or more. */
static bool width_matters(const kprogram *p, unsigned features)
{
    for (int i = 0; (features & CGEN_AVX512F) && i < p->nkernels; i++) {
        const kernel *k = &p->kernels[i];
        int64_t n = ir_shape_numel(k->rank, k->dims);
        if (k->kind == KK_REDUCE)
            n *= ir_shape_numel(k->rrank, k->rdims);
        if ((k->kind == KK_POINTWISE || k->kind == KK_REDUCE) && n >= WIDTH_WORK)
            return true;
    }
    return false;
}

bool rt_tune_program_line(const char *line, size_t n, long long *w, long long *sm)
{
    char buf[64], *end;
    if (n == 0 || n >= sizeof buf || line[n - 1] != '\n')
        return false;
    memcpy(buf, line, n - 1);
    buf[n - 1] = 0;
    const char *second = strchr(buf, ' ');
    if (!second || !(buf[0] == '-' || (buf[0] >= '0' && buf[0] <= '9')) ||
        !(second[1] == '-' || (second[1] >= '0' && second[1] <= '9')))
        return false; /* strtoll would skip spaces */
    errno = 0;
    *w = strtoll(buf, &end, 10);
    if (errno || end == buf || *end != ' ')
        return false;
    second = end + 1;
    *sm = strtoll(second, &end, 10);
    if (errno || end == second || *end)
        return false;
    return (*w == -1 || *w == 0 || *w == 256 || *w == 512) &&
           (*sm == -1 || *sm == 0 || *sm == STREAM_MIN);
}

/* Program p's (of graph g) vector width and streaming into t: the cache's
 * decision for this graph, CPU and thread count, else (tuning on) timed
 * now, the width first (the model's against the other), then streaming (none
 * against outputs of STREAM_MIN or more streamed) at that width, and cached;
 * else t keeps none (the model's). A cache line is "<width> <stream_min>",
 * -1 where that was not tuned. */
static void choose_program(const tune_ctx *c, const kiln_graph *g, const kprogram *p, rt_tuning *t)
{
    bool width = width_matters(p, c->features), stream = big_pointwise(p);
    if (!width && !stream)
        return;
    char *text = rt_graph_text(p->g);
    if (!text)
        return;
    struct {
        char tag[8];
        uint64_t cpu, graph;
        int64_t threads;
    } id = {"kprog2", rt_cpu_identity(), XXH3_64bits(text, strlen(text)), c->threads};
    ir_free(text);
    uint64_t key = XXH3_64bits(&id, sizeof id);
    size_t n = 0;
    char *line = c->dir ? rt_cache_get(c->dir, key, "tune", &n) : NULL;
    long long w = -2, sm = -2;
    if (line && !rt_tune_program_line(line, n, &w, &sm))
        w = sm = -2;
    ir_free(line);
    const char *why = "tuned earlier, from the cache";
    if (w == -2 && c->budget > 0) {
        int model = cgen_vector_width(&c->host);
        rt_variant best = {-1, width ? model : -1}; /* streaming: the model's */
        kiln_graph *copy = ir_graph_clone(g);
        bool ok = copy != NULL;
        double each = width && stream ? c->budget / 2 : c->budget; /* the budget, shared */
        if (ok && width) {
            rt_variant other = {-1, model == 512 ? 256 : 512};
            if (beats(copy, best, other, c->opts, c->compile, each, &ok))
                best = other;
        }
        sm = -1;
        if (ok && stream) {
            rt_variant off = {0, best.vector_width}, on = {STREAM_MIN, best.vector_width};
            sm = beats(copy, off, on, c->opts, c->compile, each, &ok) ? STREAM_MIN : 0;
        }
        kiln_graph_free(copy);
        if (ok) {
            w = best.vector_width;
            char out[64];
            int len = snprintf(out, sizeof out, "%lld %lld\n", w, sm);
            if (c->dir)
                rt_cache_put(c->dir, key, "tune", out, (size_t)len);
            why = "tuned now on this program";
        }
    }
    if (w == -2)
        return;
    t->has_width = w >= 0;
    t->vector_width = w >= 0 ? (int)w : 0;
    t->has_stream = sm >= 0;
    t->stream_min = sm >= 0 ? sm : 0;
    if (c->debug && t->has_width)
        fprintf(stderr, "kiln: loops vectorize %s (%s)\n",
                w == 512   ? "at 512 bits"
                : w == 256 ? "at 256 bits"
                           : "as the compiler prefers",
                why);
    if (c->debug && t->has_stream)
        fprintf(stderr, "kiln: pointwise outputs of %d MiB or more %s (%s)\n", STREAM_MIN >> 20,
                sm ? "stream" : "stay in the caches", why);
}

kiln_status rt_tune(kiln_graph *g, const kiln_compile_opts *opts, const kprogram *p,
                    unsigned features, const char *fn, rt_compile_fn compile, rt_tuning *t)
{
    *t = (rt_tuning){0};
    tune_ctx c = {opts, compile, features, rt_host(), {0}, 0, NULL, 0, ir_debug_level() >= 1};
    c.host.features = features;
    c.model = t->model = cgen_gemm_model(&c.host);
    kiln_status s = budget_of(g, opts, fn, &c.budget);
    if (s != KILN_OK)
        return s;
    t->n = p->nkernels;
    t->own = calloc((size_t)(t->n ? t->n : 1), sizeof *t->own);
    t->has = calloc((size_t)(t->n ? t->n : 1), sizeof *t->has);
    if (!t->own || !t->has) {
        rt_tuning_free(t);
        return rt_compile_fail(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    }
    char dir[4096];
    if (rt_cache_dir(g, opts, fn, dir, sizeof dir) == KILN_OK)
        c.dir = dir;
    else /* the build reports it; the schedules need no cache */
        ir_begin(g);
    c.threads = opts && opts->threads > 0 ? opts->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < p->nkernels; i++) {
        const kernel *k = &p->kernels[i];
        if (!cgen_gemm_packed(p, k) || k->mm.k == 0 || k->mm.m == 0 || k->mm.n == 0)
            continue;
        shape sh = shape_of(k);
        int same = -1; /* an earlier kernel of this shape: its choice */
        for (int j = 0; j < i && same < 0; j++)
            if (cgen_gemm_packed(p, &p->kernels[j])) {
                shape sq = shape_of(&p->kernels[j]);
                same = memcmp(&sq, &sh, sizeof sh) == 0 ? j : -1;
            }
        if (same >= 0) {
            t->own[i] = t->own[same];
            t->has[i] = t->has[same];
        } else {
            t->has[i] = choose(&c, &sh, &t->own[i]);
        }
    }
    if (!rt_variant_forced()) /* not a candidate's compile */
        choose_program(&c, g, p, t);
    return KILN_OK;
}

void rt_tuning_free(rt_tuning *t)
{
    free(t->own);
    free(t->has);
    *t = (rt_tuning){0};
}

bool rt_tuning_pick(void *ctx, const kprogram *p, const kernel *k, cgen_gemm_sched *s)
{
    const rt_tuning *t = ctx;
    int i = (int)(k - p->kernels);
    if (!t || i < 0 || i >= t->n || !t->has[i])
        return false;
    *s = t->own[i];
    return true;
}
