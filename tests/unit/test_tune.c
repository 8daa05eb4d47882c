/*
 * test_tune.c - the packed GEMM's schedules: the host model, the bounds every
 * schedule keeps, kernels on other schedules giving the same numbers, and the
 * tuner with its cache (a shape timed once per CPU and thread count), and
 * the loops' vector width and streaming stores decided on the program
 * itself, cached the same way.
 */
#include "codegen/c/cgen.h"
#include "passes/passes.h"
#include "runtime/rt.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool same_sched(const cgen_gemm_sched *a, const cgen_gemm_sched *b)
{
    return a->mr == b->mr && a->nr == b->nr && a->vl == b->vl && a->mb == b->mb && a->nb == b->nb &&
           a->kb == b->kb;
}

/* The model from caches and FMAs in flight: KB = 3/4 of L1 over NR floats
 * (multiples of 16), NB = a quarter of L2 over KB floats (whole NR panels,
 * at least 128 columns), MB 256; 8 x 32 with two FMA units. */
static void test_model(void **state)
{
    (void)state;
    static const struct {
        cgen_host h;
        cgen_gemm_sched want;
    } cases[] = {
        {{CGEN_AVX512F, 48 << 10, 1 << 20, 8, 0}, {8, 32, 16, 256, 224, 288}}, /* Zen 5, SPR */
        {{CGEN_AVX512F, 32 << 10, 1 << 20, 4, 0}, {6, 32, 16, 256, 320, 192}}, /* Zen 4 */
        {{CGEN_AVX512F, 32 << 10, 2 << 20, 8, 0}, {8, 32, 16, 256, 512, 192}}, /* SKX, ICX */
        {{0, 32 << 10, 256 << 10, 0, 0}, {4, 24, 8, 256, 144, 256}},           /* Haswell */
        {{CGEN_AVX512F, 0, 0, 0, 0}, {6, 32, 16, 256, 320, 192}},              /* unknown */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cgen_gemm_sched s = cgen_gemm_model(&cases[i].h);
        if (!same_sched(&s, &cases[i].want))
            fail_msg("case %zu: %dx%d vl %d mb %lld nb %lld kb %lld", i, s.mr, s.nr, s.vl,
                     (long long)s.mb, (long long)s.nb, (long long)s.kb);
        assert_true(cgen_gemm_sched_ok(&s, cases[i].h.features));
    }
}

/* What a schedule may not be (AVX-512 unless said). */
/* The streaming threshold: the OS's last-level cache, at least 32 MiB and at
 * most 128 MiB; 128 MiB when unknown. */
static void test_stream_min(void **state)
{
    (void)state;
    const int64_t mib = 1 << 20;
    const int64_t cases[][2] = {
        {0, 128 * mib}, {16 * mib, 32 * mib}, {64 * mib, 64 * mib}, {384 * mib, 128 * mib}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        cgen_host h = {CGEN_AVX512F, 32 << 10, 1 << 20, 8, cases[i][0]};
        assert_int_equal(cgen_stream_min(&h), cases[i][1]);
    }
}

static void test_sched_bounds(void **state)
{
    (void)state;
    const unsigned w = CGEN_AVX512F;
    assert_true(cgen_gemm_sched_ok(&(cgen_gemm_sched){6, 32, 16, 256, 256, 192}, w));
    assert_true(cgen_gemm_sched_ok(&(cgen_gemm_sched){14, 32, 16, 28, 256, 192}, w));
    assert_true(cgen_gemm_sched_ok(&(cgen_gemm_sched){6, 16, 8, 96, 128, 128}, 0));
    static const cgen_gemm_sched bad[] = {
        {6, 32, 8, 256, 256, 192},   /* the vector width is not the features' */
        {6, 40, 16, 256, 256, 192},  /* NR not a multiple of VL */
        {16, 32, 16, 256, 256, 192}, /* 32 accumulators + 2 + 1 > 32 registers */
        {0, 32, 16, 256, 256, 192},  /* MR 0 */
        {17, 16, 16, 272, 256, 192}, /* MR > 16 */
        {6, 80, 16, 252, 256, 192},  /* NR > 64 */
        {6, 32, 16, 252, 8, 192},    /* NB < 16 */
        {6, 32, 16, 252, 128, 513},  /* KB > 512: the f32 partial sums\' error */
        {6, 32, 16, 252, 256, 8},    /* KB < 16 */
        {6, 32, 16, 1026, 256, 192}, /* the f64 tile over 1 MiB */
        {6, 32, 16, 252, 1024, 512}, /* packed B over 1 MiB */
        {6, 32, 16, 8196, 16, 16},   /* MB > 4096 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (cgen_gemm_sched_ok(&bad[i], w))
            fail_msg("bad schedule %zu accepted", i);
    assert_false(cgen_gemm_sched_ok(&(cgen_gemm_sched){8, 24, 8, 256, 256, 192}, 0)); /* 16 */
}

/* Matmuls of every packed kind: plain with ragged edges, a transposed weight,
 * batched, a convolution's implicit GEMM (operands with parts). */
static kiln_graph *gemms(kiln_tensor **outs)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(67, 45));
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(45, 83));
    kiln_tensor *w = kiln_input(g, "w", KILN_F32, KILN_SHAPE(83, 45));
    kiln_tensor *p = kiln_input(g, "p", KILN_F32, KILN_SHAPE(3, 20, 33));
    kiln_tensor *q = kiln_input(g, "q", KILN_F32, KILN_SHAPE(3, 33, 17));
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3, 9, 9));
    kiln_tensor *k = kiln_input(g, "k", KILN_F32, KILN_SHAPE(5, 3, 3, 3));
    outs[0] = kiln_matmul(g, a, b);
    outs[1] = kiln_matmul(g, a, kiln_transpose(g, w, 0, 1));
    outs[2] = kiln_matmul(g, p, q);
    outs[3] = kiln_conv2d(g, x, k, NULL, (kiln_conv_opts){.padding = {1, 1}});
    assert_int_equal(kiln_entry(g, "f", 4, outs, NULL), KILN_OK);
    return g;
}

static void set_inputs(kiln_module *m)
{
    static const struct {
        const char *name;
        size_t n;
    } in[] = {{"a", 67 * 45},     {"b", 45 * 83},    {"w", 83 * 45}, {"p", 3 * 20 * 33},
              {"q", 3 * 33 * 17}, {"x", 2 * 3 * 81}, {"k", 5 * 27}};
    for (size_t i = 0; i < sizeof in / sizeof *in; i++) {
        float *v = malloc(sizeof(float) * in[i].n);
        assert_non_null(v);
        for (size_t j = 0; j < in[i].n; j++)
            v[j] = (float)((j * 37 + i * 11) % 19) / 9.0f - 1.0f;
        assert_int_equal(kiln_module_set(m, in[i].name, v, sizeof(float) * in[i].n), KILN_OK);
        free(v);
    }
}

/* Each output of entry f, as floats (ir_alloc'd into got[i]). */
static void outputs(kiln_module *m, kiln_tensor **outs, float **got)
{
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)ir_numel(outs[i]);
        got[i] = malloc(sizeof(float) * n);
        assert_non_null(got[i]);
        ku_get_f32(m, i, got[i], n);
    }
}

/* Every register block and cache block gives the interpreter's numbers (a
 * block of 16 rows or columns makes every edge ragged; KB 16 a long k loop). */
static void test_schedules_same_numbers(void **state)
{
    (void)state;
    unsigned f = cgen_host_features();
    bool wide = f & CGEN_AVX512F;
    const cgen_gemm_sched avx512[] = {{8, 32, 16, 32, 64, 16},
                                      {5, 48, 16, 40, 96, 32},
                                      {12, 16, 16, 48, 128, 64},
                                      {1, 16, 16, 16, 16, 16},
                                      {14, 32, 16, 252, 512, 512}};
    const cgen_gemm_sched avx2[] = {{4, 24, 8, 32, 48, 16},
                                    {6, 16, 8, 36, 64, 32},
                                    {1, 8, 8, 16, 16, 16},
                                    {3, 32, 8, 252, 512, 512}};
    const cgen_gemm_sched *scheds = wide ? avx512 : avx2;
    int n = wide ? 5 : 4;
    kiln_tensor *outs[4];
    kiln_graph *g = gemms(outs);
    kiln_module *ref = ku_compile_for(g, KILN_TARGET_INTERP);
    set_inputs(ref);
    float *want[4];
    outputs(ref, outs, want);
    for (int s = 0; s < n; s++) {
        assert_true(cgen_gemm_sched_ok(&scheds[s], f));
        kiln_module *m = NULL;
        assert_int_equal(rt_compile(g, NULL, &scheds[s], &m), KILN_OK);
        char panels[64];
        snprintf(panels, sizeof panels, "kiln_mm_panels_%dx%d(", scheds[s].mr, scheds[s].nr);
        assert_non_null(strstr(kiln_module_source(m), panels));
        set_inputs(m);
        float *got[4];
        outputs(m, outs, got);
        for (int i = 0; i < 4; i++) {
            for (int64_t j = 0; j < ir_numel(outs[i]); j++)
                if (fabsf(got[i][j] - want[i][j]) > 1e-5f * (1 + fabsf(want[i][j])))
                    fail_msg("schedule %d, output %d [%lld]: %g, want %g", s, i, (long long)j,
                             (double)got[i][j], (double)want[i][j]);
            free(got[i]);
        }
        kiln_module_free(m);
    }
    for (int i = 0; i < 4; i++)
        free(want[i]);
    kiln_module_free(ref);
    kiln_graph_free(g);
}

/* Two schedules in one program: each register block's helpers once. */
static bool pick_two(void *ctx, const kprogram *p, const kernel *k, cgen_gemm_sched *s)
{
    const cgen_gemm_sched *two = ctx;
    *s = two[(k - p->kernels) % 2];
    return true;
}

static void count_packed(const kprogram *p, int *n)
{
    *n = 0;
    for (int i = 0; i < p->nkernels; i++)
        *n += cgen_gemm_packed(p, &p->kernels[i]);
}

static int occurrences(const char *s, const char *what)
{
    int n = 0;
    for (const char *at = strstr(s, what); at; at = strstr(at + 1, what))
        n++;
    return n;
}

static void test_two_schedules_one_source(void **state)
{
    (void)state;
    kiln_tensor *outs[4];
    kiln_graph *g = gemms(outs);
    kiln_graph *mg = ir_graph_clone(g);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(mg, &p), KILN_OK);
    int packed;
    count_packed(p, &packed);
    assert_true(packed >= 3);
    static cgen_gemm_sched two[2] = {{8, 32, 16, 32, 64, 16}, {5, 48, 16, 40, 96, 32}};
    cgen_opts o = {.openmp = true, .features = CGEN_AVX512F, .pick = pick_two, .pick_ctx = two};
    char *src = cgen_c(p, &o);
    assert_non_null(src);
    assert_int_equal(occurrences(src, "void kiln_mm_panels_8x32("), 1);
    assert_int_equal(occurrences(src, "void kiln_mm_panels_5x48("), 1);
    assert_int_equal(occurrences(src, "kiln_mm_panels("), 0); /* every name carries its block */
    ir_free(src);
    kp_free(p);
    kiln_graph_free(mg);
    kiln_graph_free(g);
}

/* Removes dir and the files in it (a cache directory of the test's own). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    char path[4400];
    for (struct dirent *e = d ? readdir(d) : NULL; e; e = readdir(d))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* The number of .tune entries in dir. */
static int tune_files(const char *dir, char *last, size_t cap)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e = d ? readdir(d) : NULL; e; e = readdir(d)) {
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".tune") == 0) {
            n++;
            snprintf(last, cap, "%s/%s", dir, e->d_name);
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* Tuning times a shape once: the winner is cached and the next compile (on,
 * or off) takes it from there without timing anything; a damaged entry is
 * ignored (the model's, or tuned again). The results are the interpreter's. */
static void test_tuner_cache(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", ku_scratch("tune-cache"));
    kiln_compile_opts o = {.cache_dir = dir, .tune = 0.2, .threads = 1};
    kiln_graph *g = ku_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(48, 40));
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(40, 56));
    kiln_tensor *c = kiln_matmul(g, a, b);
    assert_int_equal(kiln_entry(g, "f", 1, &c, NULL), KILN_OK);
    long t0 = rt_tune_timed();
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    assert_true(rt_tune_timed() > t0);
    char path[4400];
    assert_int_equal(tune_files(dir, path, sizeof path), 1);
    float av[48 * 40], bv[40 * 56], cv[48 * 56];
    for (int i = 0; i < 48 * 40; i++)
        av[i] = (float)(i % 7) - 3;
    for (int i = 0; i < 40 * 56; i++)
        bv[i] = (float)(i % 5) - 2;
    assert_int_equal(kiln_module_set(m, "a", av, sizeof av), KILN_OK);
    assert_int_equal(kiln_module_set(m, "b", bv, sizeof bv), KILN_OK);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "f.0", cv, sizeof cv), KILN_OK);
    for (int i = 0; i < 48; i++)
        for (int j = 0; j < 56; j++) {
            double s = 0;
            for (int k = 0; k < 40; k++)
                s += (double)av[i * 40 + k] * (double)bv[k * 56 + j];
            assert_true(cv[i * 56 + j] == (float)s); /* small integers: exact */
        }
    kiln_module_free(m);

    long t1 = rt_tune_timed();
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK); /* tuning on: the cache's */
    kiln_module_free(m);
    o.tune = -1;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK); /* off: the cache's too */
    kiln_module_free(m);
    assert_int_equal(rt_tune_timed(), t1);

    FILE *f = fopen(path, "wb"); /* damaged: its seal no longer matches */
    assert_non_null(f);
    fputs("8 32 16 256 256 192 1.0\n", f);
    fclose(f);
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK); /* off: the model's */
    kiln_module_free(m);
    assert_int_equal(rt_tune_timed(), t1);
    o.tune = 0.2;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK); /* on: tuned again */
    kiln_module_free(m);
    assert_true(rt_tune_timed() > t1);
    long t2 = rt_tune_timed();
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    kiln_module_free(m);
    assert_int_equal(rt_tune_timed(), t2);
    kiln_graph_free(g);
    remove_dir(dir);
}

/* How much to tune, and its errors: opts.tune over $KILN_TUNE, < 0 never. */
static void test_tune_settings(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", ku_scratch("tune-settings"));
    kiln_graph *g = ku_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(24, 20));
    kiln_tensor *c = kiln_matmul(g, a, kiln_transpose(g, a, 0, 1));
    assert_int_equal(kiln_entry(g, "f", 1, &c, NULL), KILN_OK);
    kiln_module *m = NULL;
    kiln_compile_opts o = {.cache_dir = dir, .threads = 1};
    static const char *const bad[] = {"fast", "700", "-1", "1s", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("KILN_TUNE", bad[i], 1);
        assert_int_equal(kiln_compile(g, &o, &m), KILN_ERR_INVALID);
        assert_null(m);
        char want[160];
        snprintf(want, sizeof want,
                 "kiln_compile: KILN_TUNE is '%s': expected on, off, or the seconds to tune each "
                 "GEMM shape (0 to 600)",
                 bad[i]);
        assert_string_equal(kiln_graph_error(g), want);
    }
    o.tune = 1000;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_ERR_INVALID);
    assert_string_equal(kiln_graph_error(g),
                        "kiln_compile: tune is 1000 seconds per GEMM shape; at most 600");
    o.tune = (double)NAN;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_ERR_INVALID);
    long t0 = rt_tune_timed();
    setenv("KILN_TUNE", "on", 1);
    o.tune = -1; /* never, whatever the environment says */
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    kiln_module_free(m);
    setenv("KILN_TUNE", "off", 1);
    o.tune = 0;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    kiln_module_free(m);
    assert_int_equal(rt_tune_timed(), t0);
    setenv("KILN_TUNE", "0.1", 1); /* seconds */
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    kiln_module_free(m);
    assert_true(rt_tune_timed() > t0);
    unsetenv("KILN_TUNE");
    kiln_graph_free(g);
    remove_dir(dir);
}

/* The probe: caches a little and FMAs in flight, the same on every call. */
static void test_host_probe(void **state)
{
    (void)state;
    cgen_host h = rt_host(), again = rt_host();
    assert_int_equal(h.features, cgen_host_features());
    assert_true(h.l1d == 0 || (h.l1d >= 4 << 10 && h.l1d <= 4 << 20));
    assert_true(h.l2 == 0 || (h.l2 >= 64 << 10 && h.l2 <= 1 << 30));
    if (rt_host_measures_fma()) /* one to four units of 2..6 cycles */
        assert_true(h.fma_inflight >= 2 && h.fma_inflight <= 24);
    else
        assert_int_equal(h.fma_inflight, 0);
    assert_memory_equal(&h, &again, sizeof h);
    cgen_gemm_sched s = cgen_gemm_model(&h);
    assert_true(cgen_gemm_sched_ok(&s, h.features));
}

/* Streaming stores, decided on the program itself: timed once per graph,
 * CPU and thread count where an output is big enough (streamed from 32 MiB
 * on, or not at all), then the cache's without timing, tuning on or off;
 * the source streams accordingly; a program without such an output times
 * nothing. */
static void test_stream_tuning(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", ku_scratch("tune-stream"));
    kiln_compile_opts o = {.cache_dir = dir, .tune = 0.3, .threads = 1};
    kiln_graph *g = ku_graph_new();
    /* 256 MiB: the host model streams it (its threshold is at most 128 MiB) */
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(16384, 4096));
    kiln_tensor *y = kiln_add(g, kiln_mul(g, x, kiln_scalar(g, 2)), kiln_scalar(g, 1));
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    kiln_graph *c = ir_graph_clone(g);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(c, &p), KILN_OK);
    rt_tuning tn;
    long t0 = rt_tune_timed();
    assert_int_equal(rt_tune(g, &o, p, cgen_host_features(), "t", rt_compile, &tn), KILN_OK);
    assert_true(rt_tune_timed() >= t0 + 2); /* both ways (a second round where it wins) */
    assert_true(tn.has_stream);
    int64_t v = tn.stream_min;
    assert_true(v == 0 || v == 32ll << 20);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    rt_tuning_free(&tn);
    long t1 = rt_tune_timed();
    assert_int_equal(rt_tune(g, &o, p, cgen_host_features(), "t", rt_compile, &tn), KILN_OK);
    assert_int_equal(rt_tune_timed(), t1); /* the cache's */
    assert_true(tn.has_stream && tn.stream_min == v);
    rt_tuning_free(&tn);
    o.tune = -1; /* tuning off: still the cache's */
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    assert_int_equal(rt_tune_timed(), t1);
    assert_int_equal(strstr(kiln_module_source(m), "kiln_stream_f32(") != NULL, v > 0);
    kiln_module_free(m);
    kp_free(p);
    kiln_graph_free(c);
    kiln_graph_free(g);
    /* small outputs: nothing timed, the host model's */
    g = ku_graph_new();
    x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(64, 64));
    y = kiln_exp(g, x);
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    c = ir_graph_clone(g);
    assert_int_equal(pass_pipeline(c, &p), KILN_OK);
    o.tune = 0.3;
    assert_int_equal(rt_tune(g, &o, p, cgen_host_features(), "t", rt_compile, &tn), KILN_OK);
    assert_false(tn.has_stream);
    assert_int_equal(rt_tune_timed(), t1);
    rt_tuning_free(&tn);
    kp_free(p);
    kiln_graph_free(c);
    kiln_graph_free(g);
    remove_dir(dir);
}

/* A tanh chain over x [rows, 256] and, with w, x @ w: loops the vector width
 * matters to and a packed GEMM. */
static kiln_graph *width_graph(int64_t rows, bool gemm, kiln_tensor **outs)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(rows, 256));
    kiln_tensor *e = kiln_mul(g, kiln_exp(g, kiln_neg(g, x)), kiln_scalar(g, 2));
    outs[0] = kiln_mul(g, kiln_tanh(g, kiln_add(g, e, kiln_scalar(g, 1))), x);
    if (gemm) {
        kiln_tensor *w = kiln_input(g, "w", KILN_F32, KILN_SHAPE(256, 64));
        outs[1] = kiln_matmul(g, x, w);
        outs[2] = kiln_softmax(g, x, 1);
    }
    assert_int_equal(kiln_entry(g, "f", gemm ? 3 : 1, outs, NULL), KILN_OK);
    return g;
}

/* The model's width (512 with two AVX-512 FMA units, else the compiler's);
 * a program built for 256- and for 512-bit loops: the source and the
 * compiler's command say so, and the values are the same (elementwise and
 * the GEMM bit for bit: the GEMM's own vectors are explicit; sums within
 * rounding: their order may follow the width). */
static void test_vector_widths(void **state)
{
    (void)state;
    assert_int_equal(cgen_vector_width(&(cgen_host){CGEN_AVX512F, 48 << 10, 1 << 20, 8, 0}), 512);
    assert_int_equal(cgen_vector_width(&(cgen_host){CGEN_AVX512F, 32 << 10, 1 << 20, 4, 0}), 0);
    assert_int_equal(cgen_vector_width(&(cgen_host){0, 32 << 10, 1 << 20, 8, 0}), 0);
    rt_toolchain tc = {"cc", false, 512};
    char cmd[512];
    rt_toolchain_command(&tc, "m.c", "m.so", cmd, sizeof cmd);
    assert_non_null(strstr(cmd, " -mprefer-vector-width=512 "));
    tc.vector_width = 256;
    rt_toolchain_command(&tc, "m.c", "m.so", cmd, sizeof cmd);
    assert_non_null(strstr(cmd, " -mprefer-vector-width=256 "));
    tc.vector_width = 0;
    rt_toolchain_command(&tc, "m.c", "m.so", cmd, sizeof cmd);
    assert_null(strstr(cmd, "prefer-vector-width"));
#if defined(__x86_64__)
    enum { ROWS = 300 };
    kiln_tensor *outs[3];
    kiln_graph *g = width_graph(ROWS, true, outs);
    float *x = malloc(sizeof(float) * ROWS * 256), *w = malloc(sizeof(float) * 256 * 64);
    assert_true(x && w);
    for (int i = 0; i < ROWS * 256; i++)
        x[i] = (float)((i * 37) % 1001) / 125.0f - 4.0f;
    for (int i = 0; i < 256 * 64; i++)
        w[i] = (float)((i * 11) % 17) / 8.0f - 1.0f;
    const size_t n[3] = {ROWS * 256, ROWS * 64, ROWS * 256};
    float *got[3][3]; /* the interpreter's, then 256 and 512 bits */
    for (int v = 0; v < 3; v++) {
        rt_variant var = {-1, v == 2 ? 512 : 256};
        kiln_module *m = NULL;
        if (v == 0) {
            m = ku_compile_for(g, KILN_TARGET_INTERP);
        } else {
            rt_variant_force(&var);
            kiln_status s = kiln_compile(g, NULL, &m);
            rt_variant_force(NULL);
            assert_int_equal(s, KILN_OK);
            assert_int_equal(m->vector_width, var.vector_width);
            char line[96];
            snprintf(line, sizeof line,
                     "\n/* Built with -mprefer-vector-width=%d: ", var.vector_width);
            assert_non_null(strstr(kiln_module_source(m), line));
        }
        assert_int_equal(kiln_module_set(m, "x", x, sizeof(float) * ROWS * 256), KILN_OK);
        assert_int_equal(kiln_module_set(m, "w", w, sizeof(float) * 256 * 64), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        for (int o = 0; o < 3; o++) {
            got[v][o] = malloc(sizeof(float) * n[o]);
            assert_non_null(got[v][o]);
            ku_get_f32(m, o, got[v][o], n[o]);
        }
        kiln_module_free(m);
    }
    for (int o = 0; o < 3; o++) {
        for (size_t i = 0; i < n[o]; i++) {
            float r = got[0][o][i], a = got[1][o][i], b = got[2][o][i];
            if (o < 2 ? memcmp(&a, &b, sizeof a) != 0 : fabsf(a - b) > 1e-6f * (1 + fabsf(b)))
                fail_msg("output %d [%zu]: %.9g at 256 bits, %.9g at 512", o, i, (double)a,
                         (double)b);
            /* and the interpreter's (libm's tanhf and expf: within 1e-6) */
            if (fabsf(r - b) > (o == 0 ? 1e-6f : 1e-5f) * (1 + fabsf(r)))
                fail_msg("output %d [%zu]: %.9g, the interpreter's %.9g", o, i, (double)b,
                         (double)r);
        }
        for (int v = 0; v < 3; v++)
            free(got[v][o]);
    }
    free(x);
    free(w);
    kiln_graph_free(g);
#endif
}

/* The width tuned on the program (AVX-512 hosts: the model's against the
 * other, timed), cached for the graph, CPU and thread count, and built with
 * it; elsewhere nothing is timed. */
static void test_width_tuning(void **state)
{
    (void)state;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", ku_scratch("tune-width"));
    kiln_compile_opts o = {.cache_dir = dir, .tune = 0.3, .threads = 1};
    kiln_tensor *outs[1];
    kiln_graph *g = width_graph(512, false, outs);
    kiln_graph *c = ir_graph_clone(g);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(c, &p), KILN_OK);
    unsigned f = cgen_host_features();
    int model = cgen_vector_width(&(cgen_host){f, 0, 0, rt_host().fma_inflight, 0});
    rt_tuning tn;
    long t0 = rt_tune_timed();
    assert_int_equal(rt_tune(g, &o, p, f, "t", rt_compile, &tn), KILN_OK);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    assert_false(tn.has_stream); /* 512 KiB: nothing to stream */
    if (!(f & CGEN_AVX512F)) {
        assert_false(tn.has_width);
        assert_int_equal(rt_tune_timed(), t0);
        rt_tuning_free(&tn);
        kp_free(p);
        kiln_graph_free(c);
        kiln_graph_free(g);
        remove_dir(dir);
        return;
    }
    assert_true(rt_tune_timed() >= t0 + 2); /* both widths */
    assert_true(tn.has_width);
    int w = tn.vector_width;
    assert_true(w == model || w == (model == 512 ? 256 : 512));
    rt_tuning_free(&tn);
    long t1 = rt_tune_timed();
    assert_int_equal(rt_tune(g, &o, p, f, "t", rt_compile, &tn), KILN_OK);
    assert_int_equal(rt_tune_timed(), t1); /* the cache's */
    assert_true(tn.has_width && tn.vector_width == w);
    rt_tuning_free(&tn);
    o.tune = -1; /* tuning off: still the cache's */
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    assert_int_equal(rt_tune_timed(), t1);
    assert_int_equal(m->vector_width, w);
    assert_int_equal(strstr(kiln_module_source(m), "-mprefer-vector-width=") != NULL, w > 0);
    kiln_module_free(m);
    kp_free(p);
    kiln_graph_free(c);
    kiln_graph_free(g);
    remove_dir(dir);
}

/* A program's cache line is read strictly: anything but two allowed numbers
 * and a newline is refused (then tuned again). */
static void test_program_line(void **state)
{
    (void)state;
    long long w, sm;
    static const struct {
        const char *line;
        bool ok;
        long long w, sm;
    } cases[] = {
        {"512 0\n", true, 512, 0},  {"256 33554432\n", true, 256, 32 << 20},
        {"0 -1\n", true, 0, -1},    {"-1 0\n", true, -1, 0},
        {"512 0", false, 0, 0},     {"512\n", false, 0, 0},
        {"128 0\n", false, 0, 0},   {"512 1\n", false, 0, 0},
        {"512  0\n", false, 0, 0},  {"512 0 \n", false, 0, 0},
        {"x 0\n", false, 0, 0},     {"99999999999999999999 0\n", false, 0, 0},
        {"512 0\n\n", false, 0, 0}, {" 512 0\n", false, 0, 0},
        {"512 -\n", false, 0, 0},   {"", false, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool ok = rt_tune_program_line(cases[i].line, strlen(cases[i].line), &w, &sm);
        if (ok != cases[i].ok || (ok && (w != cases[i].w || sm != cases[i].sm)))
            fail_msg("'%s': %s", cases[i].line, ok ? "taken" : "refused");
    }
    char long_line[100];
    memset(long_line, '1', sizeof long_line);
    assert_false(rt_tune_program_line(long_line, sizeof long_line, &w, &sm));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_stream_min),
        cmocka_unit_test(test_sched_bounds),
        cmocka_unit_test(test_host_probe),
        cmocka_unit_test(test_schedules_same_numbers),
        cmocka_unit_test(test_two_schedules_one_source),
        cmocka_unit_test(test_tuner_cache),
        cmocka_unit_test(test_tune_settings),
        cmocka_unit_test(test_stream_tuning),
        cmocka_unit_test(test_vector_widths),
        cmocka_unit_test(test_width_tuning),
        cmocka_unit_test(test_program_line),
    };
    if (ku_scratch_make("tune") != 0)
        return 1;
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    ku_scratch_remove();
    return ku_exit(failed);
}
