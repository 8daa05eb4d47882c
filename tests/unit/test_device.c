/*
 * test_device.c - the device executor against the plain C target: a module
 * under test (T) and a C-target reference module (R) of the same graph must
 * give the same numbers (f32 within 1e-5 relative / 1e-6 absolute, random
 * draws and integers exactly), the same errors, checkpoints that load into
 * each other, and leave everything as it was after a failed run.
 *
 * No argument: T is the C device (KILN_TARGET_C with KILN_EXECUTOR=launch at
 * kiln_compile: the C kernels launched one at a time over device memory kept
 * apart from the module's host buffers, so a missing host<->device copy shows
 * up on the CPU). --cuda: T is KILN_TARGET_CUDA; skipped (77) where there is
 * no usable GPU. R is always compiled with KILN_EXECUTOR unset.
 */
#include "runtime/rt.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool cuda;          /* --cuda: T is the CUDA target */
#define dir ku_scratch_dir /* this run's scratch directory (testutil) */
static const char *T_NAME; /* T's executor name */

#define tpath ku_scratch /* a path in this run's scratch directory */

static int make_dir(void **state)
{
    (void)state;
    return ku_scratch_make("device");
}

/* ---- the two modules ---------------------------------------------------------- */

static kiln_module *compile_with(kiln_graph *g, kiln_target target, const char *executor)
{
    if (executor)
        setenv("KILN_EXECUTOR", executor, 1);
    else
        unsetenv("KILN_EXECUTOR");
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &(kiln_compile_opts){.target = target}, &m);
    unsetenv("KILN_EXECUTOR");
    if (s != KILN_OK)
        fprintf(stderr, "kiln_compile: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    return m;
}

/* The module under test. */
static kiln_module *compile_t(kiln_graph *g)
{
    return cuda ? compile_with(g, KILN_TARGET_CUDA, NULL)
                : compile_with(g, KILN_TARGET_C, "launch");
}

/* The reference: the plain C target. */
static kiln_module *compile_r(kiln_graph *g)
{
    return compile_with(g, KILN_TARGET_C, NULL);
}

static void run_ok(kiln_module *m, const char *entry)
{
    kiln_status s = kiln_module_run(m, entry);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_run(%s): %s\n", entry, kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

static void set_ok(kiln_module *m, const char *name, const void *v, size_t n)
{
    kiln_status s = kiln_module_set(m, name, v, n);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_set(%s): %s\n", name, kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

static void get_ok(kiln_module *m, const char *name, void *v, size_t n)
{
    kiln_status s = kiln_module_get(m, name, v, n);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_get(%s): %s\n", name, kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

static double scalar_of(kiln_module *m, const char *name)
{
    double v = (double)NAN;
    kiln_status s = kiln_module_get_scalar(m, name, &v);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_get_scalar(%s): %s\n", name, kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
    return v;
}

static bool close_enough(double got, double want)
{
    if (isnan(want))
        return isnan(got);
    return fabs(got - want) <= 1e-6 + 1e-5 * fabs(want);
}

static void assert_close_f32(const float *got, const float *want, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (!close_enough((double)got[i], (double)want[i]))
            fail_msg("%s[%d]: %.9g, want %.9g", what, i, (double)got[i], (double)want[i]);
}

/* ---- every tensor of a module, read through the API ----------------------------- */

enum { PARAMS = 1, OUTPUTS = 2 };

static bool wanted(const rt_buf *b, int which)
{
    return ((which & PARAMS) && b->role == RT_PARAM) || ((which & OUTPUTS) && b->role == RT_OUTPUT);
}

static size_t bytes_of(const kiln_module *layout, int which)
{
    size_t n = 0;
    for (int i = 0; i < layout->nbufs; i++)
        if (wanted(&layout->bufs[i], which))
            n += layout->bufs[i].nbytes;
    return n;
}

/* Every param (optimizer state, "<entry>.step" and "<entry>.lr" included)
 * and/or entry output named in layout (a module of the same graph), read from
 * m with kiln_module_get, back to back in layout's order. */
static char *read_all(kiln_module *m, const kiln_module *layout, int which)
{
    char *out = malloc(bytes_of(layout, which) + 1), *at = out;
    assert_non_null(out);
    for (int i = 0; i < layout->nbufs; i++) {
        const rt_buf *b = &layout->bufs[i];
        if (wanted(b, which)) {
            get_ok(m, b->name, at, b->nbytes);
            at += b->nbytes;
        }
    }
    return out;
}

/* got and want (read_all of T and R): integers and bools exactly; floats
 * within 1e-5 relative, and 1e-6 absolute in units of the tensor's largest
 * magnitude, so that small optimizer state (exp_avg_sq is ~1e-8 here) is
 * compared for real and not waved through by a fixed 1e-6. */
static void assert_all_close(const kiln_module *layout, int which, const char *got,
                             const char *want, const char *what)
{
    for (int i = 0; i < layout->nbufs; i++) {
        const rt_buf *b = &layout->bufs[i];
        if (!wanted(b, which))
            continue;
        kiln_dtype dt = kiln_tensor_dtype(b->node);
        bool fp = dt == KILN_F32 || dt == KILN_F64;
        int64_t n = (int64_t)(b->nbytes / kiln_dtype_size(dt));
        double scale = 0;
        for (int64_t j = 0; j < n; j++)
            scale = fmax(scale, fabs(ku_load(dt, want, j)));
        for (int64_t j = 0; j < n; j++) {
            double g = ku_load(dt, got, j), w = ku_load(dt, want, j);
            bool ok =
                fp ? (isnan(w) ? isnan(g) : fabs(g - w) <= 1e-6 * scale + 1e-5 * fabs(w)) : g == w;
            if (!ok)
                fail_msg("%s: %s[%lld]: %s %.9g, C %.9g (largest magnitude %.3g)", what, b->name,
                         (long long)j, T_NAME, g, w, scale);
        }
        got += b->nbytes;
        want += b->nbytes;
    }
}

/* ---- 1. training ------------------------------------------------------------------ */

enum { B = 16, IN = 32, HID = 64, OUT = 10 };
static const int64_t sizes[3] = {IN, HID, OUT};

static void fill(float *out, int n, double a, double b)
{
    for (int i = 0; i < n; i++)
        out[i] = (float)sin(a * i + b);
}

/* Batch k of ku_mlp's inputs "x" and "y". */
static void set_batch(kiln_module *m, int k)
{
    float x[B * IN];
    int64_t y[B];
    fill(x, B * IN, 0.37, 0.9 * k);
    for (int i = 0; i < B; i++)
        y[i] = (3 * i + k) % OUT;
    set_ok(m, "x", x, sizeof x);
    set_ok(m, "y", y, sizeof y);
}

/* ku_mlp's logits for batch k, in double from the params m holds. */
static void host_logits(kiln_module *m, int k, double *out)
{
    static float w0[HID * IN], b0[HID], w1[OUT * HID], b1[OUT], x[B * IN];
    get_ok(m, "w0", w0, sizeof w0);
    get_ok(m, "b0", b0, sizeof b0);
    get_ok(m, "w1", w1, sizeof w1);
    get_ok(m, "b1", b1, sizeof b1);
    fill(x, B * IN, 0.37, 0.9 * k);
    for (int r = 0; r < B; r++) {
        double h[HID];
        for (int j = 0; j < HID; j++) {
            double s = (double)b0[j];
            for (int i = 0; i < IN; i++)
                s += (double)x[r * IN + i] * (double)w0[j * IN + i];
            h[j] = s > 0 ? s : 0;
        }
        for (int o = 0; o < OUT; o++) {
            double s = (double)b1[o];
            for (int j = 0; j < HID; j++)
                s += h[j] * (double)w1[o * HID + j];
            out[r * OUT + o] = s;
        }
    }
}

/* 10 train steps on T and R from the same init: the loss of every step and
 * every param and optimizer state tensor after it agree; then "predict",
 * which shares the params, sees the trained ones. */
static void train_like_c(kiln_optim opt, const char *state)
{
    kiln_graph *g = ku_mlp(B, sizes, 2, opt);
    kiln_module *r = compile_r(g), *t = compile_t(g);
    size_t nbytes = bytes_of(r, PARAMS);
    char *pr = read_all(r, r, PARAMS), *pt = read_all(t, r, PARAMS);
    assert_memory_equal(pt, pr, nbytes); /* the same init, bit for bit */
    char *init = pr;
    for (int step = 0; step < 10; step++) {
        set_batch(t, step);
        set_batch(r, step);
        run_ok(t, "train");
        run_ok(r, "train");
        double lt = scalar_of(t, "train.loss"), lr = scalar_of(r, "train.loss");
        assert_true(lr > 0.1 && lr < 10);
        if (!close_enough(lt, lr))
            fail_msg("step %d: loss %.9g, C %.9g", step, lt, lr);
        if (pr != init)
            free(pr);
        free(pt);
        pr = read_all(r, r, PARAMS);
        pt = read_all(t, r, PARAMS);
        char what[32];
        snprintf(what, sizeof what, "after step %d", step);
        assert_all_close(r, PARAMS, pt, pr, what);
    }
    assert_true(memcmp(pr, init, nbytes) != 0); /* training moved the params */
    assert_true(scalar_of(t, "train.step") == 10);
    float st[HID * IN];
    get_ok(t, state, st, sizeof st);
    bool nonzero = false;
    for (int i = 0; i < HID * IN; i++)
        nonzero |= st[i] != 0;
    assert_true(nonzero);

    float ot[B * OUT], orf[B * OUT];
    double host[B * OUT];
    for (int k = 0; k < 2; k++) { /* twice: the second run reads x set after the first */
        set_batch(t, 10 + k);
        set_batch(r, 10 + k);
        run_ok(t, "predict");
        run_ok(r, "predict");
        get_ok(t, "predict.0", ot, sizeof ot);
        get_ok(r, "predict.0", orf, sizeof orf);
        assert_close_f32(ot, orf, B * OUT, "predict.0");
        host_logits(t, 10 + k, host);
        for (int i = 0; i < B * OUT; i++)
            if (fabs((double)ot[i] - host[i]) > 1e-5 + 1e-5 * fabs(host[i]))
                fail_msg("predict.0[%d]: %.9g, from the trained params %.9g", i, (double)ot[i],
                         host[i]);
    }
    free(init);
    free(pr);
    free(pt);
    kiln_module_free(t);
    kiln_module_free(r);
    kiln_graph_free(g);
}

static void test_adam_trains_like_c(void **state)
{
    (void)state;
    train_like_c(kiln_adam(0.01, 0.9, 0.999, 1e-8), "w0.exp_avg");
}

static void test_sgd_momentum_trains_like_c(void **state)
{
    (void)state;
    train_like_c(kiln_sgd(0.05, 0.9, 0), "w0.momentum_buffer");
}

/* ---- 2. random ops ------------------------------------------------------------------- */

/* rand, randn (f32 and f64), dropout, and a param "bias" (for checkpoints). */
static kiln_graph *random_graph(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_graph_seed(g, 4242);
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(64));
    float bv[5] = {1, 2, 3, 4, 5};
    kiln_tensor *bias = kiln_param(g, "bias", KILN_F32, KILN_SHAPE(5), kiln_init_data(bv));
    kiln_tensor *r = kiln_rand(g, KILN_F32, KILN_SHAPE(3, 5));
    kiln_tensor *outs[] = {r, kiln_randn(g, KILN_F32, KILN_SHAPE(4, 4)),
                           kiln_randn(g, KILN_F64, KILN_SHAPE(7)), kiln_dropout(g, x, 0.5),
                           kiln_add(g, kiln_rand(g, KILN_F32, KILN_SHAPE(3, 5)), bias)};
    assert_int_equal(kiln_entry(g, "draw", 5, outs,
                                (const char *[]){"rand", "randn", "randn64", "drop", "shifted"}),
                     KILN_OK);
    ku_assert_ok(g);
    return g;
}

static void set_x64(kiln_module *m)
{
    float x[64];
    for (int i = 0; i < 64; i++)
        x[i] = (float)(i + 1) / 8;
    set_ok(m, "x", x, sizeof x);
}

static void test_random_bit_identical(void **state)
{
    (void)state;
    kiln_graph *g = random_graph();
    kiln_module *r = compile_r(g), *t = compile_t(g);
    set_x64(t);
    set_x64(r);
    size_t n = bytes_of(r, OUTPUTS);
    char *prev = NULL;
    for (int run = 0; run < 3; run++) {
        run_ok(t, "draw");
        run_ok(r, "draw");
        char *ot = read_all(t, r, OUTPUTS), *orf = read_all(r, r, OUTPUTS);
        assert_memory_equal(ot, orf, n); /* Philox: bit for bit */
        if (prev)
            assert_true(memcmp(prev, orf, n) != 0); /* the run counter advanced */
        free(prev);
        free(ot);
        prev = orf;
        float u[15], d[64];
        get_ok(t, "rand", u, sizeof u);
        for (int i = 0; i < 15; i++)
            assert_true(u[i] >= 0 && u[i] < 1);
        get_ok(t, "drop", d, sizeof d);
        int zeros = 0;
        for (int i = 0; i < 64; i++) {
            float want = (float)(i + 1) / 8 * 2;
            assert_true(d[i] == 0 || d[i] == want);
            zeros += d[i] == 0;
        }
        assert_true(zeros > 8 && zeros < 56);
    }
    free(prev);
    kiln_module_free(t);
    kiln_module_free(r);
    kiln_graph_free(g);
}

/* ---- 3. checkpoints ------------------------------------------------------------------ */

static void save_ok(kiln_module *m, const char *path)
{
    kiln_status s = kiln_module_save(m, path);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_save: %s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

static void load_ok(kiln_module *m, const char *path)
{
    kiln_status s = kiln_module_load(m, path);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_load: %s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *da = ku_read_file(a, &na), *db = ku_read_file(b, &nb);
    assert_non_null(da);
    assert_non_null(db);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na);
    free(da);
    free(db);
}

static void train_steps(kiln_module *m, int from, int n)
{
    for (int k = from; k < from + n; k++) {
        set_batch(m, k);
        run_ok(m, "train");
    }
}

/* T saves, C loads: the same params, and C saves the same bytes. C saves, T
 * loads: T's params are C's, and the next step on each agrees. */
static void test_checkpoints_cross_load(void **state)
{
    (void)state;
    kiln_graph *g = ku_mlp(B, sizes, 2, kiln_adam(0.01, 0.9, 0.999, 1e-8));
    kiln_module *t = compile_t(g), *r = compile_r(g);
    size_t nbytes = bytes_of(r, PARAMS);
    train_steps(t, 0, 3);
    save_ok(t, tpath("t.safetensors"));
    load_ok(r, tpath("t.safetensors"));
    char *pt = read_all(t, r, PARAMS), *pr = read_all(r, r, PARAMS);
    assert_memory_equal(pr, pt, nbytes);
    save_ok(r, tpath("r.safetensors"));
    assert_same_file(tpath("t.safetensors"), tpath("r.safetensors"));
    free(pt);
    free(pr);
    kiln_module_free(t);
    kiln_module_free(r);

    r = compile_r(g);
    t = compile_t(g);
    train_steps(r, 5, 4);
    train_steps(t, 0, 1); /* T's own state, which the load replaces */
    save_ok(r, tpath("c.safetensors"));
    load_ok(t, tpath("c.safetensors"));
    pt = read_all(t, r, PARAMS);
    pr = read_all(r, r, PARAMS);
    assert_memory_equal(pt, pr, nbytes);
    assert_true(t->run == r->run);
    free(pt);
    free(pr);
    train_steps(t, 9, 1); /* the loaded state, not T's own, is what the step reads */
    train_steps(r, 9, 1);
    assert_true(close_enough(scalar_of(t, "train.loss"), scalar_of(r, "train.loss")));
    pt = read_all(t, r, PARAMS | OUTPUTS);
    pr = read_all(r, r, PARAMS | OUTPUTS);
    assert_all_close(r, PARAMS | OUTPUTS, pt, pr, "a step after the load");
    free(pt);
    free(pr);
    kiln_module_free(t);
    kiln_module_free(r);
    kiln_graph_free(g);
}

/* The run counter travels in the checkpoint: T resumes C's random stream. */
static void test_checkpoint_resumes_random_stream(void **state)
{
    (void)state;
    kiln_graph *g = random_graph();
    kiln_module *r = compile_r(g), *t = compile_t(g);
    set_x64(r);
    set_x64(t);
    run_ok(r, "draw");
    run_ok(r, "draw");
    float bias[5] = {-1, -2, -3, -4, -5};
    set_ok(r, "bias", bias, sizeof bias);
    save_ok(r, tpath("rand.safetensors"));
    load_ok(t, tpath("rand.safetensors"));
    float got[5];
    get_ok(t, "bias", got, sizeof got);
    assert_memory_equal(got, bias, sizeof got);
    run_ok(r, "draw");
    run_ok(t, "draw");
    size_t n = bytes_of(r, OUTPUTS);
    char *ot = read_all(t, r, OUTPUTS), *orf = read_all(r, r, OUTPUTS);
    assert_memory_equal(ot, orf, n);
    free(ot);
    free(orf);
    kiln_module_free(t);
    kiln_module_free(r);
    kiln_graph_free(g);
}

/* ---- 4. failed runs ------------------------------------------------------------------- */

/* An embedding (gather) into dropout, a linear layer and cross-entropy,
 * trained with Adam; "look" outputs the gathered rows and a random draw. */
static kiln_graph *gather_graph(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_graph_seed(g, 11);
    kiln_tensor *table = kiln_param(g, "table", KILN_F32, KILN_SHAPE(4, 8), kiln_init_normal(0, 1));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(5, 8), kiln_init_kaiming_uniform());
    kiln_tensor *ids = kiln_input(g, "ids", KILN_I64, KILN_SHAPE(6));
    kiln_tensor *labels = kiln_input(g, "labels", KILN_I64, KILN_SHAPE(6));
    kiln_tensor *rows = kiln_embedding(g, table, ids);
    kiln_tensor *logits = kiln_linear(g, kiln_dropout(g, rows, 0.25), w, NULL);
    kiln_tensor *loss = kiln_cross_entropy(g, logits, labels);
    assert_int_equal(kiln_train_step(g, "train", loss, kiln_adam(0.05, 0.9, 0.999, 1e-8)), KILN_OK);
    kiln_tensor *outs[] = {rows, kiln_rand(g, KILN_F32, KILN_SHAPE(6))};
    assert_int_equal(kiln_entry(g, "look", 2, outs, NULL), KILN_OK);
    ku_assert_ok(g);
    return g;
}

static const int64_t good_ids[6] = {0, 3, 1, 2, 3, 0}, good_labels[6] = {4, 0, 2, 1, 3, 0};

static void set_good(kiln_module *m)
{
    set_ok(m, "ids", good_ids, sizeof good_ids);
    set_ok(m, "labels", good_labels, sizeof good_labels);
}

/* Runs entry on T and R, which must fail alike with want, leaving every
 * param and output as it was. */
static void fails_alike(kiln_module *t, kiln_module *r, const char *entry, const char *want)
{
    size_t n = bytes_of(r, PARAMS | OUTPUTS);
    char *bt = read_all(t, r, PARAMS | OUTPUTS), *br = read_all(r, r, PARAMS | OUTPUTS);
    kiln_status st = kiln_module_run(t, entry), sr = kiln_module_run(r, entry);
    assert_module_error(r, sr, KILN_ERR_INVALID, want);
    assert_module_error(t, st, KILN_ERR_INVALID, want);
    assert_string_equal(kiln_module_error(t), kiln_module_error(r));
    char *at = read_all(t, r, PARAMS | OUTPUTS), *ar = read_all(r, r, PARAMS | OUTPUTS);
    assert_memory_equal(at, bt, n);
    assert_memory_equal(ar, br, n);
    free(bt);
    free(br);
    free(at);
    free(ar);
}

static void test_failed_run_changes_nothing(void **state)
{
    (void)state;
    kiln_graph *g = gather_graph();
    /* n: a module of T's kind that never fails */
    kiln_module *t = compile_t(g), *r = compile_r(g), *n = compile_t(g);
    kiln_module *all[3] = {t, r, n};
    for (int i = 0; i < 3; i++) {
        set_good(all[i]);
        run_ok(all[i], "train");
        run_ok(all[i], "look");
    }
    const int64_t bad_ids[6] = {0, 3, 7, 2, 3, 0}, bad_labels[6] = {4, 0, 2, 5, 3, 0};
    const char *oob_id = "kiln_module_run: index 7 is out of bounds for dimension 0 with size 4";
    const char *oob_label = "kiln_module_run: index 5 is out of bounds for dimension 0 with size 5";
    for (int i = 0; i < 2; i++)
        set_ok(all[i], "ids", bad_ids, sizeof bad_ids);
    fails_alike(t, r, "train", oob_id);
    fails_alike(t, r, "look", oob_id);
    for (int i = 0; i < 2; i++) {
        set_ok(all[i], "ids", good_ids, sizeof good_ids);
        set_ok(all[i], "labels", bad_labels, sizeof bad_labels);
    }
    fails_alike(t, r, "train", oob_label);
    assert_true(t->run == 2 && r->run == 2);
    /* the next runs draw what a module that never failed draws */
    for (int i = 0; i < 3; i++) {
        set_good(all[i]);
        run_ok(all[i], "train");
        run_ok(all[i], "look");
    }
    char *vt = read_all(t, r, PARAMS | OUTPUTS), *vr = read_all(r, r, PARAMS | OUTPUTS),
         *vn = read_all(n, r, PARAMS | OUTPUTS);
    assert_all_close(r, PARAMS | OUTPUTS, vt, vn, "after failures, against one that never failed");
    assert_all_close(r, PARAMS | OUTPUTS, vt, vr, "after failures");
    float dt[6], dn[6];
    get_ok(t, "look.1", dt, sizeof dt);
    get_ok(n, "look.1", dn, sizeof dn);
    assert_memory_equal(dt, dn, sizeof dt);
    free(vt);
    free(vr);
    free(vn);
    for (int i = 0; i < 3; i++)
        kiln_module_free(all[i]);
    kiln_graph_free(g);
}

/* The device itself failing mid-run (the fake GPU's launches, where it is the
 * fake GPU): the run says which device and call failed, and the module then
 * runs on as one that never failed (params current on the device only stay
 * there). */
static void test_device_failure(void **state)
{
    (void)state;
    const char *lib = getenv("KILN_LIBCUDA");
    if (!cuda || !lib || !strstr(lib, "fakegpu")) {
        print_message("only on the fake GPU, which can fail on demand\n");
        return;
    }
    kiln_graph *g = gather_graph();
    kiln_module *t = compile_t(g), *n = compile_t(g);
    kiln_module *both[2] = {t, n};
    for (int i = 0; i < 2; i++) {
        set_good(both[i]);
        run_ok(both[i], "train");
    }
    setenv("KILN_FAKE_GPU_FAIL_LAUNCH", "1", 1);
    kiln_status s = kiln_module_run(t, "train");
    unsetenv("KILN_FAKE_GPU_FAIL_LAUNCH");
    assert_int_equal(s, KILN_ERR_DEVICE);
    const char *e = kiln_module_error(t);
    if (strncmp(e, "kiln_module_run: the cuda device failed: k", 42) != 0 ||
        !strstr(e, " failed: invalid argument (CUDA error 1)"))
        fail_msg("%s", e);
    for (int i = 0; i < 2; i++)
        run_ok(both[i], "train");
    char *vt = read_all(t, t, PARAMS | OUTPUTS), *vn = read_all(n, t, PARAMS | OUTPUTS);
    assert_memory_equal(vt, vn, bytes_of(t, PARAMS | OUTPUTS));
    free(vt);
    free(vn);
    kiln_module_free(t);
    kiln_module_free(n);
    kiln_graph_free(g);
}

/* ---- 5. the module API ------------------------------------------------------------------ */

/* "f": y = x * p + s; "bump": p += x. */
static kiln_graph *small_graph(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 2));
    kiln_tensor *p =
        kiln_param(g, "p", KILN_F32, KILN_SHAPE(2, 2), kiln_init_data((const float[]){1, 2, 3, 4}));
    kiln_tensor *s = kiln_param(g, "s", KILN_F32, 0, NULL, kiln_init_const(0.5));
    kiln_tensor *y = kiln_add(g, kiln_mul(g, x, p), s);
    assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *[]){"y"}), KILN_OK);
    kiln_tensor *pn = kiln_assign(g, p, kiln_add(g, p, x));
    assert_int_equal(kiln_entry(g, "bump", 1, &pn, (const char *[]){"p_new"}), KILN_OK);
    ku_assert_ok(g);
    return g;
}

static void y_is(kiln_module *m, float a, float b, float c, float d)
{
    float y[4];
    get_ok(m, "y", y, sizeof y);
    if (!(y[0] == a && y[1] == b && y[2] == c && y[3] == d))
        fail_msg("y = {%g, %g, %g, %g}, want {%g, %g, %g, %g}", (double)y[0], (double)y[1],
                 (double)y[2], (double)y[3], (double)a, (double)b, (double)c, (double)d);
}

/* What kiln_module_print writes for each name, as one string (freed by the caller). */
/* noinline: see test_dot.c (gcc 12 -Wdangling-pointer) */
__attribute__((noinline)) static char *print_text(kiln_module *m, int n, const char *const *names)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    for (int i = 0; i < n; i++)
        assert_int_equal(kiln_module_print(m, names[i], f), KILN_OK);
    assert_int_equal(fclose(f), 0);
    return text;
}

/* Each set is seen by the next run; values the device computed are what get,
 * get_scalar, print and get_npy return. */
static void test_set_get_print_npy(void **state)
{
    (void)state;
    kiln_graph *g = small_graph();
    kiln_module *mods[2] = {compile_t(g), compile_r(g)};
    char *printed[2];
    for (int i = 0; i < 2; i++) {
        kiln_module *m = mods[i];
        set_ok(m, "x", (const float[]){1, 2, 3, 4}, 16);
        run_ok(m, "f");
        y_is(m, 1.5f, 4.5f, 9.5f, 16.5f);
        set_ok(m, "x", (const float[]){-1, 0, 1, 2}, 16);
        run_ok(m, "f");
        y_is(m, -0.5f, 0.5f, 3.5f, 8.5f);
        set_ok(m, "p", (const float[]){2, 2, 2, 2}, 16);
        run_ok(m, "f");
        y_is(m, -1.5f, 0.5f, 2.5f, 4.5f);
        assert_int_equal(kiln_module_set_scalar(m, "s", 1), KILN_OK);
        assert_true(scalar_of(m, "s") == 1);
        run_ok(m, "f");
        y_is(m, -1, 1, 3, 5);
        run_ok(m, "bump"); /* p = {1, 2, 3, 4}, computed by the executor */
        float p[4];
        get_ok(m, "p", p, sizeof p);
        assert_true(p[0] == 1 && p[1] == 2 && p[2] == 3 && p[3] == 4);
        run_ok(m, "f");
        y_is(m, 0, 1, 4, 9);
        printed[i] = print_text(m, 4, (const char *[]){"p", "y", "s", "p_new"});
        /* npy: written from what the executor computed, read into a param */
        assert_int_equal(kiln_module_get_npy(m, "y", tpath(i ? "y_c.npy" : "y_t.npy")), KILN_OK);
        assert_int_equal(kiln_npy_save(tpath("p_in.npy"), KILN_F32, KILN_SHAPE(2, 2),
                                       (const float[]){10, 20, 30, 40}),
                         KILN_OK);
        assert_int_equal(kiln_module_set_npy(m, "p", tpath("p_in.npy")), KILN_OK);
        run_ok(m, "f");
        y_is(m, -9, 1, 31, 81);
        assert_int_equal(kiln_module_get_npy(m, "p", tpath(i ? "p_c.npy" : "p_t.npy")), KILN_OK);
    }
    assert_string_equal(printed[0], printed[1]);
    assert_string_equal(printed[0], "tensor([[1., 2.],\n        [3., 4.]])\n"
                                    "tensor([[0., 1.],\n        [4., 9.]])\n"
                                    "tensor(1.)\n"
                                    "tensor([[1., 2.],\n        [3., 4.]])\n");
    assert_same_file(tpath("y_t.npy"), tpath("y_c.npy"));
    assert_same_file(tpath("p_t.npy"), tpath("p_in.npy"));
    assert_same_file(tpath("p_c.npy"), tpath("p_in.npy"));
    free(printed[0]);
    free(printed[1]);
    for (int i = 0; i < 2; i++)
        kiln_module_free(mods[i]);
    kiln_graph_free(g);
}

/* The module API's errors: the same status and message on T as on C. */
static void test_errors_same_as_c(void **state)
{
    (void)state;
    kiln_graph *g = small_graph();
    enum { N = 7 };
    kiln_status st[2][N];
    char msg[2][N][256];
    for (int i = 0; i < 2; i++) {
        kiln_module *m = i ? compile_r(g) : compile_t(g);
        float buf[4] = {0};
        double v;
        int k = 0;
#define RECORD(call)                                                                               \
    do {                                                                                           \
        st[i][k] = (call);                                                                         \
        snprintf(msg[i][k], sizeof msg[i][k], "%s", kiln_module_error(m));                         \
        k++;                                                                                       \
    } while (0)
        RECORD(kiln_module_run(m, "f")); /* x was never set */
        RECORD(kiln_module_run(m, "nope"));
        RECORD(kiln_module_set(m, "x", buf, 8));
        RECORD(kiln_module_get(m, "p", buf, 4));
        RECORD(kiln_module_get(m, "nope", buf, sizeof buf));
        RECORD(kiln_module_get_scalar(m, "p", &v));
        RECORD(kiln_module_set_scalar(m, "nope", 1));
#undef RECORD
        assert_int_equal(k, N);
        kiln_module_free(m);
    }
    const kiln_status want[N] = {KILN_ERR_INVALID,  KILN_ERR_NOT_FOUND, KILN_ERR_SHAPE,
                                 KILN_ERR_SHAPE,    KILN_ERR_NOT_FOUND, KILN_ERR_SHAPE,
                                 KILN_ERR_NOT_FOUND};
    for (int k = 0; k < N; k++) {
        if (st[0][k] != want[k] || st[1][k] != want[k])
            fail_msg("call %d: %s %s, C %s, want %s (%s)", k, T_NAME, kiln_status_str(st[0][k]),
                     kiln_status_str(st[1][k]), kiln_status_str(want[k]), msg[1][k]);
        assert_string_equal(msg[0][k], msg[1][k]);
        assert_true(strlen(msg[1][k]) > 10);
    }
    assert_non_null(strstr(msg[0][0], "'x'"));
    kiln_graph_free(g);
}

/* "train.lr" set with set_scalar is the rate of the next step: 0 leaves every
 * param as it was; another value agrees with C. */
static void test_lr_set_scalar(void **state)
{
    (void)state;
    kiln_graph *g = ku_mlp(B, sizes, 2, kiln_sgd(0.05, 0.9, 0));
    kiln_module *t = compile_t(g), *r = compile_r(g);
    train_steps(t, 0, 2);
    train_steps(r, 0, 2);
    assert_true(scalar_of(t, "train.lr") == 0.05);
    float before[HID * IN], after[HID * IN], ref[HID * IN];
    get_ok(t, "w0", before, sizeof before);
    assert_int_equal(kiln_module_set_scalar(t, "train.lr", 0), KILN_OK);
    assert_int_equal(kiln_module_set_scalar(r, "train.lr", 0), KILN_OK);
    train_steps(t, 2, 1);
    train_steps(r, 2, 1);
    get_ok(t, "w0", after, sizeof after);
    assert_memory_equal(after, before, sizeof after);
    assert_int_equal(kiln_module_set_scalar(t, "train.lr", 0.2), KILN_OK);
    assert_int_equal(kiln_module_set_scalar(r, "train.lr", 0.2), KILN_OK);
    assert_true(scalar_of(t, "train.lr") == 0.2);
    train_steps(t, 3, 1);
    train_steps(r, 3, 1);
    get_ok(t, "w0", after, sizeof after);
    get_ok(r, "w0", ref, sizeof ref);
    assert_true(memcmp(after, before, sizeof after) != 0);
    assert_close_f32(after, ref, HID * IN, "w0 after a step at lr 0.2");
    char *pt = read_all(t, r, PARAMS), *pr = read_all(r, r, PARAMS);
    assert_all_close(r, PARAMS, pt, pr, "after the lr changes");
    free(pt);
    free(pr);
    kiln_module_free(t);
    kiln_module_free(r);
    kiln_graph_free(g);
}

/* ---- 6. the executor ---------------------------------------------------------------------- */

static void test_executor_names(void **state)
{
    (void)state;
    kiln_graph *g = small_graph();
    kiln_module *t = compile_t(g), *r = compile_r(g);
    assert_string_equal(r->exec->name, "c");
    assert_string_equal(t->exec->name, T_NAME);
    kiln_module_free(t);
    kiln_module_free(r);
    kiln_graph_free(g);
}

/* Host memory cannot be bound to device memory: bind is refused for inputs,
 * params and outputs alike, and the module goes on reading what set gave it. */
static void test_bind_refused(void **state)
{
    (void)state;
    kiln_graph *g = small_graph();
    kiln_module *t = compile_t(g);
    float mem[4] = {100, 100, 100, 100};
    const char *names[] = {"x", "p", "y"};
    for (int i = 0; i < 3; i++) {
        kiln_status s = kiln_module_bind(t, names[i], mem);
        assert_module_error(t, s, KILN_ERR_INVALID, "host memory cannot be bound");
    }
    set_ok(t, "x", (const float[]){1, 2, 3, 4}, 16);
    run_ok(t, "f");
    y_is(t, 1.5f, 4.5f, 9.5f, 16.5f);
    assert_true(mem[0] == 100 && mem[3] == 100);
    kiln_module_free(t);
    kiln_graph_free(g);
}

/* ---- 7. profile ---------------------------------------------------------------------------- */

typedef struct {
    char name[64];
    long long calls;
} kernel_row;

static int by_name(const void *a, const void *b)
{
    return strcmp(((const kernel_row *)a)->name, ((const kernel_row *)b)->name);
}

/* The rows after the "kernel" header, sorted by name; returns how many. */
static int kernel_rows(const char *text, kernel_row *rows, int cap)
{
    const char *at = strstr(text, "\nkernel ");
    if (!at)
        fail_msg("no kernel table in the profile:\n%s", text);
    at = strchr(at + 1, '\n');
    int n = 0;
    while (at && at[1] && n < cap) {
        assert_int_equal(sscanf(at + 1, "%63s %lld", rows[n].name, &rows[n].calls), 2);
        n++;
        at = strchr(at + 1, '\n');
    }
    qsort(rows, (size_t)n, sizeof *rows, by_name);
    return n;
}

static void test_profile_kernel_rows(void **state)
{
    (void)state;
    kiln_graph *g = ku_mlp(B, sizes, 2, kiln_adam(0.01, 0.9, 0.999, 1e-8));
    kiln_module *t = compile_t(g), *r = compile_r(g);
    kiln_module *mods[2] = {t, r};
    char *text[2];
    kernel_row rows[2][128];
    int n[2];
    for (int i = 0; i < 2; i++) {
        train_steps(mods[i], 0, 3);
        run_ok(mods[i], "predict");
        run_ok(mods[i], "predict");
        text[i] = ku_profile_text(mods[i]);
        assert_int_equal(ku_profile_calls(text[i], "train"), 3);
        assert_int_equal(ku_profile_calls(text[i], "predict"), 2);
        n[i] = kernel_rows(text[i], rows[i], 128);
        assert_true(n[i] >= 2 && n[i] < 128);
        for (int k = 0; k < n[i]; k++) {
            assert_true(rows[i][k].name[0] == 'k' && rows[i][k].calls >= 1);
        }
    }
    if (!cuda) { /* the C device launches the C target's kernels: the same rows */
        assert_int_equal(n[0], n[1]);
        for (int k = 0; k < n[0]; k++) {
            assert_string_equal(rows[0][k].name, rows[1][k].name);
            assert_int_equal(rows[0][k].calls, rows[1][k].calls);
        }
    }
    free(text[0]);
    free(text[1]);
    kiln_module_free(t);
    kiln_module_free(r);
    kiln_graph_free(g);
}

/* Exits 77 (skipped) when a trivial graph cannot be compiled for CUDA because
 * there is no usable GPU or driver here. */
static int cuda_available(void)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *y = kiln_add(g, x, x);
    kiln_entry(g, "f", 1, &y, NULL);
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &(kiln_compile_opts){.target = KILN_TARGET_CUDA}, &m);
    if (s == KILN_ERR_DEVICE)
        printf("skipped: no CUDA device: %s\n", kiln_graph_error(g));
    kiln_module_free(m);
    kiln_graph_free(g);
    return s != KILN_ERR_DEVICE;
}

int main(int argc, char **argv)
{
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "--cuda") != 0)) {
        fprintf(stderr, "usage: %s [--cuda]\n", argv[0]);
        return 2;
    }
    cuda = argc == 2;
    T_NAME = cuda ? "device:cuda" : "device:c";
    if (cuda && !cuda_available())
        return 77;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adam_trains_like_c),
        cmocka_unit_test(test_sgd_momentum_trains_like_c),
        cmocka_unit_test(test_random_bit_identical),
        cmocka_unit_test(test_checkpoints_cross_load),
        cmocka_unit_test(test_checkpoint_resumes_random_stream),
        cmocka_unit_test(test_failed_run_changes_nothing),
        cmocka_unit_test(test_device_failure),
        cmocka_unit_test(test_set_get_print_npy),
        cmocka_unit_test(test_errors_same_as_c),
        cmocka_unit_test(test_lr_set_scalar),
        cmocka_unit_test(test_executor_names),
        cmocka_unit_test(test_bind_refused),
        cmocka_unit_test(test_profile_kernel_rows),
    };
    return ku_exit(cmocka_run_group_tests(tests, make_dir, ku_scratch_teardown));
}
