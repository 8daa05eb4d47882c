/*
 * test_module.c - kiln_compile and the module API on the interpreter target:
 * compile errors, parameter initialisation, runs, assignments, the run
 * counter, set/get/bind/print/source, and every error path's status and message.
 */
#include "ir/ir.h"
#include "runtime/rt.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const kiln_compile_opts interp = {.target = KILN_TARGET_INTERP};

static kiln_module *compile_ok(kiln_graph *g)
{
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &interp, &m);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_compile: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    assert_non_null(m);
    assert_string_equal(kiln_module_error(m), "");
    return m;
}

static void run_ok(kiln_module *m, const char *entry)
{
    kiln_status s = kiln_module_run(m, entry);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_run: %s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

static void get_f32(kiln_module *m, const char *name, float *dst, size_t n)
{
    kiln_status s = kiln_module_get(m, name, dst, n * sizeof(float));
    if (s != KILN_OK)
        fprintf(stderr, "%s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

static double scalar(kiln_module *m, const char *name)
{
    double v = -12345;
    assert_int_equal(kiln_module_get_scalar(m, name, &v), KILN_OK);
    return v;
}

/* Everything f prints, as a malloc'd string. */
static char *file_text(FILE *f)
{
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    return s;
}

static char *graph_text(const kiln_graph *g)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(kiln_graph_print(g, f), KILN_OK);
    char *s = file_text(f);
    fclose(f);
    return s;
}

/* x (3, 2) input, y (2,) input; entry "f" = x + 1, entry "h" = y * 2. */
static kiln_graph *two_entries(void)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3, 2));
    kiln_tensor *y = kiln_input(g, "y", KILN_F32, KILN_SHAPE(2));
    kiln_tensor *f = kiln_add(g, x, kiln_scalar(g, 1));
    kiln_tensor *h = kiln_mul(g, y, kiln_scalar(g, 2));
    assert_int_equal(kiln_entry(g, "f", 1, &f, NULL), KILN_OK);
    assert_int_equal(kiln_entry(g, "h", 1, &h, NULL), KILN_OK);
    return g;
}

/* ---- kiln_compile -------------------------------------------------------------- */

static void test_compile_null_arguments(void **state)
{
    (void)state;
    kiln_module *m = (kiln_module *)&m;
    assert_int_equal(kiln_compile(NULL, &interp, &m), KILN_ERR_INVALID);
    assert_null(m);
    kiln_graph *g = two_entries();
    assert_int_equal(kiln_compile(g, &interp, NULL), KILN_ERR_INVALID);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    kiln_graph_free(g);
}

static void test_compile_graph_in_error(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *a = kiln_input(g, "a", KILN_F32, KILN_SHAPE(2));
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(3));
    assert_null(kiln_add(g, a, b));
    char before[1024];
    snprintf(before, sizeof(before), "%s", kiln_graph_error(g));
    kiln_status want = kiln_graph_status(g);
    assert_int_not_equal(want, KILN_OK);
    kiln_module *m = (kiln_module *)&m;
    assert_int_equal(kiln_compile(g, &interp, &m), want);
    assert_null(m);
    assert_string_equal(kiln_graph_error(g), before); /* the builder's message stays */
    kiln_graph_free(g);
}

static void test_compile_cuda_without_a_gpu(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_module *m = (kiln_module *)&m;
    kiln_compile_opts cuda = {.target = KILN_TARGET_CUDA};
    kiln_status s = kiln_compile(g, &cuda, &m);
    assert_int_equal(s, KILN_ERR_DEVICE);
    assert_null(m);
    assert_graph_error(g, KILN_ERR_DEVICE,
                       "kiln_compile: the CUDA target needs a GPU: the NVIDIA driver is not "
                       "installed (" KU_NO_LIBCUDA ": cannot open shared object file");
    /* the graph stays usable: the interpreter compiles it and the error is gone */
    m = compile_ok(g);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    assert_string_equal(kiln_graph_error(g), "");
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_builders_work_after_a_failed_compile(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_full(g, KILN_F32, KILN_SHAPE(2), 1.5);
    kiln_module *m;
    kiln_compile_opts cuda = {.target = KILN_TARGET_CUDA};
    assert_int_equal(kiln_compile(g, &cuda, &m), KILN_ERR_DEVICE);
    /* a builder clears the compile's message and builds on */
    kiln_tensor *y = kiln_add(g, x, x);
    assert_non_null(y);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    /* a real builder error after a failed compile is sticky as usual */
    assert_int_equal(kiln_compile(g, &cuda, &m), KILN_ERR_DEVICE);
    assert_null(kiln_reshape(g, y, KILN_SHAPE(3)));
    assert_graph_error(g, KILN_ERR_SHAPE, "shape '[3]' is invalid for input of size 2");
    assert_null(kiln_add(g, x, x));
    assert_int_equal(kiln_compile(g, &(kiln_compile_opts){.target = KILN_TARGET_INTERP}, &m),
                     KILN_ERR_SHAPE);
    assert_null(m);
    kiln_graph_free(g);
}

static void test_compile_unknown_target(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_compile_opts bad = {.target = (kiln_target)7};
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &bad, &m), KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_compile: unknown target 7");
    kiln_graph_free(g);
}

static void test_compile_name_clash(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    /* kiln_entry refuses this; a hand-made entry reaches kiln_compile */
    ir_entry *e = ir_entry_new(g, "bad", 1);
    e->outputs[0] = g->nodes[0];
    e->output_names[0] = ir_arena_strdup(&g->arena, "y");
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &interp, &m), KILN_ERR_INVALID);
    assert_null(m);
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_compile: the name 'y' is used twice");
    kiln_graph_free(g);
}

static void test_compile_verifier_failure(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_tensor *x = g->nodes[0], *y = g->nodes[1];
    kiln_tensor *in[2] = {x, y};
    kiln_tensor *bad = ir_node_new(g, IR_ADD, KILN_F32, KILN_SHAPE(3, 2), 2, in);
    assert_int_equal(kiln_entry(g, "bad", 1, &bad, NULL), KILN_OK);
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &interp, &m), KILN_ERR_INVALID);
    assert_null(m);
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_compile: verify: %");
    kiln_graph_free(g);
}

static void test_compile_leaves_graph_unchanged(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(2), kiln_init_ones());
    kiln_tensor *a = kiln_assign(g, p, kiln_add(g, p, kiln_scalar(g, 1)));
    assert_int_equal(kiln_entry(g, "step", 1, &a, NULL), KILN_OK);
    char *before = graph_text(g);
    int nnodes = g->nnodes;
    kiln_module *m1 = compile_ok(g);
    kiln_module *m2 = compile_ok(g); /* one graph, many modules */
    run_ok(m1, "step");
    assert_int_equal(g->nnodes, nnodes);
    char *after = graph_text(g);
    assert_string_equal(before, after);
    /* modules are independent */
    float s1[2];
    get_f32(m1, "step.0", s1, 2);
    assert_true(s1[0] == 2 && s1[1] == 2);
    float p2[2];
    get_f32(m2, "p", p2, 2);
    assert_true(p2[0] == 1 && p2[1] == 1);
    free(before);
    free(after);
    kiln_module_free(m1);
    kiln_module_free(m2);
    kiln_graph_free(g);
}

/* ---- parameter initialisation --------------------------------------------------- */

static void test_init_simple(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_param(g, "z", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_param(g, "o", KILN_I64, KILN_SHAPE(2), kiln_init_ones());
    kiln_param(g, "c", KILN_F64, KILN_SHAPE(2), kiln_init_const(-2.5));
    kiln_param(g, "ci", KILN_I32, 0, NULL, kiln_init_const(7));
    const float data[3] = {1, 2, 3};
    kiln_param(g, "d", KILN_F32, KILN_SHAPE(3), kiln_init_data(data));
    kiln_param(g, "b", KILN_BOOL, KILN_SHAPE(2), kiln_init_ones());
    kiln_module *m = compile_ok(g);
    float z[2], d[3];
    get_f32(m, "z", z, 2);
    assert_true(z[0] == 0 && z[1] == 0);
    int64_t o[2];
    assert_int_equal(kiln_module_get(m, "o", o, sizeof(o)), KILN_OK);
    assert_true(o[0] == 1 && o[1] == 1);
    double c[2];
    assert_int_equal(kiln_module_get(m, "c", c, sizeof(c)), KILN_OK);
    assert_true(c[0] == -2.5 && c[1] == -2.5);
    assert_true(scalar(m, "ci") == 7);
    get_f32(m, "d", d, 3);
    assert_memory_equal(d, data, sizeof(d));
    bool b[2];
    assert_int_equal(kiln_module_get(m, "b", b, sizeof(b)), KILN_OK);
    assert_true(b[0] && b[1]);
    kiln_module_free(m);
    kiln_graph_free(g);
}

enum { NBIG = 20000 };

static void test_init_random(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 99);
    kiln_tensor *n = kiln_param(g, "n", KILN_F32, KILN_SHAPE(NBIG), kiln_init_normal(2, 0.5));
    kiln_tensor *u = kiln_param(g, "u", KILN_F64, KILN_SHAPE(NBIG), kiln_init_uniform(-1, 3));
    kiln_param(g, "u2", KILN_F64, KILN_SHAPE(NBIG), kiln_init_uniform(-1, 3));
    kiln_module *m = compile_ok(g);
    float *nv = malloc(sizeof(float) * NBIG);
    double *uv = malloc(sizeof(double) * NBIG), *u2 = malloc(sizeof(double) * NBIG);
    get_f32(m, "n", nv, NBIG);
    assert_int_equal(kiln_module_get(m, "u", uv, sizeof(double) * NBIG), KILN_OK);
    assert_int_equal(kiln_module_get(m, "u2", u2, sizeof(double) * NBIG), KILN_OK);
    double s = 0, q = 0, su = 0;
    int same = 0;
    for (int i = 0; i < NBIG; i++) {
        s += (double)nv[i];
        q += (double)nv[i] * (double)nv[i];
        assert_true(uv[i] >= -1 && uv[i] < 3);
        su += uv[i];
        same += uv[i] == u2[i];
    }
    double mean = s / NBIG, var = q / NBIG - mean * mean;
    assert_true(fabs(mean - 2) < 0.02 && fabs(sqrt(var) - 0.5) < 0.02);
    assert_true(fabs(su / NBIG - 1) < 0.05);
    assert_true(same < 3); /* each param has its own stream */
    /* exactly the spec: mean + std * randn(seed, stream, IR_RUN_INIT), rounded once */
    for (int i = 0; i < 8; i++) {
        float z = ir_randn_f32(99, n->stream, IR_RUN_INIT, (uint64_t)i);
        assert_true(nv[i] == (float)(2 + 0.5 * (double)z));
        assert_true(uv[i] == -1 + 4 * ir_rand_f64(99, u->stream, IR_RUN_INIT, (uint64_t)i));
    }
    /* deterministic: a second compile gives the same bytes; another seed does not */
    kiln_module *m2 = compile_ok(g);
    double *again = malloc(sizeof(double) * NBIG);
    assert_int_equal(kiln_module_get(m2, "u", again, sizeof(double) * NBIG), KILN_OK);
    assert_memory_equal(again, uv, sizeof(double) * NBIG);
    kiln_module_free(m2);
    kiln_graph_seed(g, 100);
    m2 = compile_ok(g);
    assert_int_equal(kiln_module_get(m2, "u", again, sizeof(double) * NBIG), KILN_OK);
    assert_true(again[0] != uv[0] && again[1] != uv[1]);
    kiln_module_free(m2);
    free(nv);
    free(uv);
    free(u2);
    free(again);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* Largest |value| of a param, checking every value is within bound. */
static double kaiming_max(kiln_module *m, const char *name, size_t n, double bound)
{
    float *v = malloc(sizeof(float) * n);
    get_f32(m, name, v, n);
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(fabs((double)v[i]) <= bound);
        mx = fabs((double)v[i]) > mx ? fabs((double)v[i]) : mx;
    }
    free(v);
    return mx;
}

static void test_init_kaiming_bounds(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_param(g, "w", KILN_F32, KILN_SHAPE(64, 16), kiln_init_kaiming_uniform());
    kiln_param(g, "w3", KILN_F32, KILN_SHAPE(50, 4, 25), kiln_init_kaiming_uniform());
    kiln_param(g, "b", KILN_F32, KILN_SHAPE(400), kiln_init_kaiming_uniform());
    kiln_tensor *bl = kiln_param(g, "bl", KILN_F32, KILN_SHAPE(400), kiln_init_kaiming_uniform());
    bl->fan_in = 4; /* as kiln_linear sets it on a bias */
    kiln_param(g, "s", KILN_F32, 0, NULL, kiln_init_kaiming_uniform());
    kiln_module *m = compile_ok(g);
    assert_true(kaiming_max(m, "w", 64 * 16, 0.25) > 0.24);      /* 1/sqrt(16) */
    assert_true(kaiming_max(m, "w3", 50 * 4 * 25, 0.1) > 0.099); /* 1/sqrt(4*25) */
    assert_true(kaiming_max(m, "b", 400, 0.05) > 0.048);         /* 1/sqrt(400) */
    assert_true(kaiming_max(m, "bl", 400, 0.5) > 0.48);          /* 1/sqrt(4) */
    kaiming_max(m, "s", 1, 1.0);                                 /* fan_in 1 */
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* ---- running ----------------------------------------------------------------------- */

static void test_run_errors(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_module *m = compile_ok(g);
    kiln_status s = kiln_module_run(m, "nope");
    assert_module_error(m, s, KILN_ERR_NOT_FOUND,
                        "kiln_module_run: no entry named 'nope'; the module has 'f', 'h'");
    s = kiln_module_run(m, NULL);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_run: the entry name is NULL");
    s = kiln_module_run(m, "f");
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_run: input 'x' was never set");
    assert_int_equal(kiln_module_run(NULL, "f"), KILN_ERR_INVALID);
    /* "h" reads only y: x never being set is fine */
    assert_int_equal(kiln_module_set(m, "y", (const float[]){1, 2}, 8), KILN_OK);
    run_ok(m, "h");
    float h[2];
    get_f32(m, "h.0", h, 2);
    assert_true(h[0] == 2 && h[1] == 4);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_outputs_keep_values(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_module *m = compile_ok(g);
    float x[6] = {1, 2, 3, 4, 5, 6}, f[6];
    assert_int_equal(kiln_module_set(m, "x", x, sizeof(x)), KILN_OK);
    assert_int_equal(kiln_module_set(m, "y", (const float[]){1, 2}, 8), KILN_OK);
    run_ok(m, "f");
    x[0] = 100;
    assert_int_equal(kiln_module_set(m, "x", x, sizeof(x)), KILN_OK);
    run_ok(m, "h"); /* another entry: f.0 keeps its value */
    get_f32(m, "f.0", f, 6);
    assert_true(f[0] == 2 && f[5] == 7);
    run_ok(m, "f");
    get_f32(m, "f.0", f, 6);
    assert_true(f[0] == 101);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* An entry that outputs a param and its assignment sees the old value in the
 * first and the new in the second; the param changes after the outputs. */
static void test_assign_order_and_persistence(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(2), kiln_init_ones());
    kiln_tensor *q = kiln_param(g, "q", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_tensor *a = kiln_assign(g, p, kiln_add(g, p, kiln_scalar(g, 1)));
    kiln_tensor *b = kiln_assign(g, q, p); /* q takes p's old value */
    kiln_tensor *outs[] = {p, a, b, kiln_mul(g, p, kiln_scalar(g, 10))};
    const char *names[] = {"old", "new", "q_new", "ten_p"};
    assert_int_equal(kiln_entry(g, "step", 4, outs, names), KILN_OK);
    kiln_tensor *peek = kiln_mul(g, p, q);
    assert_int_equal(kiln_entry(g, "peek", 1, &peek, NULL), KILN_OK);
    kiln_module *m = compile_ok(g);
    for (int r = 1; r <= 3; r++) {
        run_ok(m, "step");
        float old[2], nw[2], pv[2], qv[2], ten[2];
        get_f32(m, "old", old, 2);
        get_f32(m, "new", nw, 2);
        get_f32(m, "ten_p", ten, 2);
        get_f32(m, "p", pv, 2);
        get_f32(m, "q", qv, 2);
        assert_true(old[0] == (float)r && old[1] == (float)r);
        assert_true(ten[0] == (float)(10 * r));
        assert_true(nw[0] == (float)(r + 1) && pv[0] == (float)(r + 1) && pv[1] == (float)(r + 1));
        assert_true(qv[0] == (float)r);
    }
    run_ok(m, "peek"); /* params persist across entries */
    float pk[2];
    get_f32(m, "peek.0", pk, 2);
    assert_true(pk[0] == 4 * 3);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* A run that fails changes no output, no param and not the run counter. */
static void failed_run_changes_nothing(kiln_target target)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 5);
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(2), kiln_init_ones());
    kiln_tensor *table = kiln_param(g, "table", KILN_F32, KILN_SHAPE(3, 2), kiln_init_zeros());
    kiln_tensor *ids = kiln_input(g, "ids", KILN_I64, KILN_SHAPE(1));
    kiln_tensor *r = kiln_rand(g, KILN_F32, KILN_SHAPE(4));
    kiln_tensor *outs[] = {kiln_assign(g, p, kiln_add(g, p, kiln_scalar(g, 1))),
                           kiln_embedding(g, table, ids), r};
    assert_int_equal(kiln_entry(g, "step", 3, outs, NULL), KILN_OK);
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &(kiln_compile_opts){.target = target}, &m), KILN_OK);
    assert_int_equal(kiln_module_set(m, "ids", (const int64_t[]){2}, 8), KILN_OK);
    run_ok(m, "step");
    float r0[4], p0[2], after[4], pa[2];
    get_f32(m, "step.2", r0, 4);
    get_f32(m, "p", p0, 2);
    assert_true(p0[0] == 2);
    assert_int_equal(kiln_module_set(m, "ids", (const int64_t[]){3}, 8), KILN_OK);
    kiln_status s = kiln_module_run(m, "step");
    assert_module_error(m, s, KILN_ERR_INVALID,
                        "kiln_module_run: index 3 is out of bounds for dimension 0 with size 3");
    get_f32(m, "step.2", after, 4);
    get_f32(m, "p", pa, 2);
    assert_memory_equal(after, r0, sizeof(r0));
    assert_true(pa[0] == 2 && pa[1] == 2);
    /* the next good run is run 1 */
    assert_int_equal(kiln_module_set(m, "ids", (const int64_t[]){0}, 8), KILN_OK);
    run_ok(m, "step");
    get_f32(m, "step.2", after, 4);
    for (int i = 0; i < 4; i++) {
        assert_true(r0[i] == ir_rand_f32(5, r->stream, 0, (uint64_t)i));
        assert_true(after[i] == ir_rand_f32(5, r->stream, 1, (uint64_t)i));
    }
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* The same guarantee on the interpreter and on generated C. */
static void test_failed_run_changes_nothing(void **state)
{
    (void)state;
    failed_run_changes_nothing(KILN_TARGET_INTERP);
}

static void test_failed_run_changes_nothing_c(void **state)
{
    (void)state;
    failed_run_changes_nothing(KILN_TARGET_C);
}

static void test_rng_runs(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 77);
    kiln_tensor *r = kiln_randn(g, KILN_F32, KILN_SHAPE(8));
    assert_int_equal(kiln_entry(g, "draw", 1, &r, NULL), KILN_OK);
    kiln_module *m1 = compile_ok(g), *m2 = compile_ok(g);
    float a[3][8], b[8];
    for (int k = 0; k < 3; k++) {
        run_ok(m1, "draw");
        get_f32(m1, "draw.0", a[k], 8);
    }
    assert_true(memcmp(a[0], a[1], sizeof(a[0])) != 0); /* new numbers every run */
    assert_true(memcmp(a[1], a[2], sizeof(a[0])) != 0);
    for (int k = 0; k < 3; k++) { /* the same (seed, run) in a fresh module: the same numbers */
        run_ok(m2, "draw");
        get_f32(m2, "draw.0", b, 8);
        assert_memory_equal(a[k], b, sizeof(b));
    }
    kiln_module_free(m1);
    kiln_module_free(m2);
    kiln_graph_free(g);
}

/* ---- set / get / scalars / bind ---------------------------------------------------- */

static void test_set_get_errors(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_module *m = compile_ok(g);
    float buf[6] = {0};
    kiln_status s = kiln_module_get(m, "foo", buf, 4);
    assert_module_error(m, s, KILN_ERR_NOT_FOUND, "kiln_module_get: no tensor named 'foo'");
    s = kiln_module_set(m, "foo", buf, 4);
    assert_module_error(m, s, KILN_ERR_NOT_FOUND, "kiln_module_set: no tensor named 'foo'");
    s = kiln_module_set(m, "x", buf, 20);
    assert_module_error(m, s, KILN_ERR_SHAPE,
                        "kiln_module_set: 'x' is float32[3, 2] (24 bytes), got 20 bytes");
    s = kiln_module_get(m, "f.0", buf, 28);
    assert_module_error(m, s, KILN_ERR_SHAPE,
                        "kiln_module_get: 'f.0' is float32[3, 2] (24 bytes), got 28 bytes");
    s = kiln_module_set(m, NULL, buf, 4);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_set: the name is NULL");
    s = kiln_module_set(m, "x", NULL, 24);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_set: src is NULL");
    s = kiln_module_get(m, "x", NULL, 24);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_get: dst is NULL");
    assert_int_equal(kiln_module_set(NULL, "x", buf, 24), KILN_ERR_INVALID);
    assert_int_equal(kiln_module_get(NULL, "x", buf, 24), KILN_ERR_INVALID);
    /* a failed set leaves x unset */
    s = kiln_module_run(m, "f");
    assert_module_error(m, s, KILN_ERR_INVALID, "input 'x' was never set");
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_set_get_every_name(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_tensor *y = kiln_add(g, x, p);
    assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *const[]){"y"}), KILN_OK);
    kiln_module *m = compile_ok(g);
    float v[2];
    assert_int_equal(kiln_module_set(m, "p", (const float[]){10, 20}, 8), KILN_OK);
    assert_int_equal(kiln_module_set(m, "y", (const float[]){-1, -2}, 8), KILN_OK);
    get_f32(m, "y", v, 2); /* an output can be set; its entry overwrites it */
    assert_true(v[0] == -1 && v[1] == -2);
    assert_int_equal(kiln_module_set(m, "x", (const float[]){1, 2}, 8), KILN_OK);
    run_ok(m, "f");
    get_f32(m, "y", v, 2);
    assert_true(v[0] == 11 && v[1] == 22);
    get_f32(m, "x", v, 2);
    assert_true(v[0] == 1 && v[1] == 2);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_scalars(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_input(g, "x", KILN_F32, KILN_SHAPE(3, 2));
    kiln_param(g, "k", KILN_I64, KILN_SHAPE(1, 1), kiln_init_const(41));
    kiln_param(g, "i", KILN_I32, 0, NULL, kiln_init_zeros());
    kiln_param(g, "b", KILN_BOOL, KILN_SHAPE(1), kiln_init_zeros());
    kiln_param(g, "d", KILN_F64, 0, NULL, kiln_init_const(0.1));
    kiln_module *m = compile_ok(g);
    assert_true(scalar(m, "k") == 41); /* any rank with one element */
    assert_true(scalar(m, "d") == 0.1);
    kiln_status s0;
    assert_int_equal(kiln_module_set_scalar(m, "i", 2.7), KILN_OK); /* converted */
    assert_true(scalar(m, "i") == 2);
    assert_int_equal(kiln_module_set_scalar(m, "i", -2.7), KILN_OK);
    assert_true(scalar(m, "i") == -2);
    assert_int_equal(kiln_module_set_scalar(m, "b", 0.5), KILN_OK);
    assert_true(scalar(m, "b") == 1);
    assert_int_equal(kiln_module_set_scalar(m, "k", 1e15), KILN_OK);
    int64_t k;
    assert_int_equal(kiln_module_get(m, "k", &k, 8), KILN_OK);
    assert_true(k == 1000000000000000);
    /* NaN and values past the range are errors, as in PyTorch; nothing changes */
    s0 = kiln_module_set_scalar(m, "k", 1e20);
    assert_module_error(m, s0, KILN_ERR_INVALID,
                        "kiln_module_set_scalar: value cannot be converted to type int64 without "
                        "overflow");
    s0 = kiln_module_set_scalar(m, "i", (double)NAN);
    assert_module_error(m, s0, KILN_ERR_INVALID,
                        "kiln_module_set_scalar: value cannot be converted to type int32 without "
                        "overflow");
    s0 = kiln_module_set_scalar(m, "i", 2147483648.0);
    assert_module_error(m, s0, KILN_ERR_INVALID, "to type int32 without overflow");
    assert_true(scalar(m, "k") == 1e15 && scalar(m, "i") == -2);
    assert_int_equal(kiln_module_set_scalar(m, "i", -2147483648.0), KILN_OK);
    assert_true(scalar(m, "i") == -2147483648.0);
    double v;
    kiln_status s = kiln_module_get_scalar(m, "x", &v);
    assert_module_error(m, s, KILN_ERR_SHAPE,
                        "kiln_module_get_scalar: a Tensor with 6 elements cannot be converted to "
                        "Scalar");
    s = kiln_module_set_scalar(m, "x", 1);
    assert_module_error(m, s, KILN_ERR_SHAPE,
                        "kiln_module_set_scalar: a Tensor with 6 elements cannot be converted to "
                        "Scalar");
    s = kiln_module_get_scalar(m, "zz", &v);
    assert_module_error(m, s, KILN_ERR_NOT_FOUND, "kiln_module_get_scalar: no tensor named 'zz'");
    s = kiln_module_set_scalar(m, "zz", 1);
    assert_module_error(m, s, KILN_ERR_NOT_FOUND, "kiln_module_set_scalar: no tensor named 'zz'");
    s = kiln_module_get_scalar(m, "d", NULL);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_get_scalar: v is NULL");
    assert_int_equal(kiln_module_get_scalar(NULL, "d", &v), KILN_ERR_INVALID);
    assert_int_equal(kiln_module_set_scalar(NULL, "d", 1), KILN_ERR_INVALID);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_bind(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_tensor *a = kiln_assign(g, p, kiln_add(g, p, x));
    assert_int_equal(kiln_entry(g, "f", 1, &a, (const char *const[]){"y"}), KILN_OK);
    kiln_module *m = compile_ok(g);
    float xs[2] = {1, 2}, ps[2] = {100, 200}, ys[2] = {0, 0};
    assert_int_equal(kiln_module_bind(m, "x", xs), KILN_OK); /* counts as set */
    assert_int_equal(kiln_module_bind(m, "p", ps), KILN_OK); /* its contents are the value */
    assert_int_equal(kiln_module_bind(m, "y", ys), KILN_OK);
    run_ok(m, "f");
    assert_true(ys[0] == 101 && ys[1] == 202); /* results land in the user's memory */
    assert_true(ps[0] == 101 && ps[1] == 202);
    xs[0] = 5; /* zero-copy: the next run reads the new value */
    run_ok(m, "f");
    assert_true(ps[0] == 106 && ys[0] == 106);
    /* NULL unbinds, keeping the current value */
    assert_int_equal(kiln_module_bind(m, "p", NULL), KILN_OK);
    ps[0] = -1;
    float pv[2];
    get_f32(m, "p", pv, 2);
    assert_true(pv[0] == 106 && pv[1] == 204);
    kiln_status s = kiln_module_bind(m, "nope", xs);
    assert_module_error(m, s, KILN_ERR_NOT_FOUND, "kiln_module_bind: no tensor named 'nope'");
    assert_int_equal(kiln_module_bind(NULL, "x", xs), KILN_ERR_INVALID);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* Bound tensors that share memory gave wrong results silently (an output
 * written over an input it still reads): bind refuses any overlap. */
static void test_bind_overlap(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4));
    kiln_tensor *y = kiln_mul(g, x, kiln_scalar(g, 2));
    assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *const[]){"y"}), KILN_OK);
    kiln_module *m = compile_ok(g);
    float buf[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(kiln_module_bind(m, "x", buf), KILN_OK);
    assert_int_equal(kiln_module_bind(m, "x", buf), KILN_OK); /* rebinding itself is fine */
    kiln_status s = kiln_module_bind(m, "y", buf + 3);
    assert_module_error(m, s, KILN_ERR_INVALID,
                        "kiln_module_bind: the memory for 'y' (16 bytes) overlaps the memory "
                        "bound to 'x' (16 bytes); bound tensors must not share memory");
    s = kiln_module_bind(m, "y", buf);
    assert_module_error(m, s, KILN_ERR_INVALID, "overlaps the memory bound to 'x'");
    /* adjacent is not overlapping */
    assert_int_equal(kiln_module_bind(m, "y", buf + 4), KILN_OK);
    run_ok(m, "f");
    for (int i = 0; i < 4; i++)
        assert_true(buf[4 + i] == 2 * (float)(i + 1));
    /* once x is unbound its old memory is free to bind */
    assert_int_equal(kiln_module_bind(m, "x", NULL), KILN_OK);
    s = kiln_module_bind(m, "x", buf + 5);
    assert_module_error(m, s, KILN_ERR_INVALID,
                        "the memory for 'x' (16 bytes) overlaps the "
                        "memory bound to 'y' (16 bytes)");
    assert_int_equal(kiln_module_bind(m, "y", NULL), KILN_OK);
    assert_int_equal(kiln_module_bind(m, "x", buf + 5), KILN_OK);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* ---- print, source, free, later issues --------------------------------------------- */

static void test_print(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    const float data[4] = {1, 2, 3, 4};
    kiln_param(g, "w", KILN_F32, KILN_SHAPE(2, 2), kiln_init_data(data));
    kiln_module *m = compile_ok(g);
    FILE *f = tmpfile();
    assert_int_equal(kiln_module_print(m, "w", f), KILN_OK);
    char *got = file_text(f);
    fclose(f);
    char want[256];
    size_t n = kiln_format(want, sizeof(want) - 1, KILN_F32, KILN_SHAPE(2, 2), data);
    assert_true(n + 1 < sizeof(want));
    strcat(want, "\n");
    assert_string_equal(got, want);
    free(got);
    kiln_status s = kiln_module_print(m, "nope", stdout);
    assert_module_error(m, s, KILN_ERR_NOT_FOUND, "kiln_module_print: no tensor named 'nope'");
    s = kiln_module_print(m, "w", NULL);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_print: the FILE is NULL");
    assert_int_equal(kiln_module_print(NULL, "w", stdout), KILN_ERR_INVALID);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_source_is_the_graph(void **state)
{
    (void)state;
    kiln_graph *g = two_entries();
    kiln_module *m = compile_ok(g);
    char *want = graph_text(g);
    const char *src = kiln_module_source(m);
    assert_string_equal(src, want);
    assert_ptr_equal(kiln_module_source(m), src); /* made once */
    assert_string_equal(kiln_module_source(NULL), "");
    free(want);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_free_and_error_basics(void **state)
{
    (void)state;
    kiln_module_free(NULL);
    /* NULL: this thread's last failed kiln_module_open (none yet) */
    assert_string_equal(kiln_module_error(NULL), "");
}

/* ---- out of memory ------------------------------------------------------------------ */

static long allocs_left; /* < 0: unlimited */

static void *failing_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (allocs_left == 0)
        return NULL;
    if (allocs_left > 0)
        allocs_left--;
    return realloc(ptr, size);
}

static void plain_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

/* Every allocation of kiln_compile and kiln_module_run may fail: each
 * failure is KILN_ERR_NOMEM with a message, never a crash or a leak. */
/* A module is used by one thread at a time: while one thread runs an entry,
 * another's run, set, get, bind, save or load is refused with a message (not
 * a race); once the first returns, the module works as before. */
typedef struct {
    kiln_module *m;
    atomic_int started;
    kiln_status s;
} runner;

static void *run_long(void *arg)
{
    runner *r = arg;
    atomic_store(&r->started, 1);
    r->s = kiln_module_run(r->m, "f");
    return NULL;
}

static void test_one_thread_at_a_time(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *a = kiln_param(g, "a", KILN_F64, KILN_SHAPE(600, 600), kiln_init_const(1));
    kiln_tensor *y = kiln_sum(g, kiln_matmul(g, a, kiln_matmul(g, a, a)), KILN_ALL, false);
    assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *[]){"y"}), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_INTERP); /* 432M multiply-adds: long */
    /* another thread inside, exactly: the calls are refused and change nothing */
    assert_true(rt_enter(m));
    assert_int_equal(kiln_module_run(m, "f"), KILN_ERR_INVALID);
    assert_non_null(strstr(kiln_module_error(m), "kiln_module_run: the module is in use by another "
                                                 "thread; a module is not thread-safe"));
    rt_leave(m);
    /* and for real: a second thread's calls while the first runs */
    runner r = {m, 0, KILN_ERR_INVALID};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_long, &r), 0);
    while (!atomic_load(&r.started))
        ;
    usleep(5000);
    double v = 0, buf[1];
    assert_int_equal(kiln_module_run(m, "f"), KILN_ERR_INVALID);
    assert_non_null(strstr(kiln_module_error(m), "kiln_module_run: the module is in use by another "
                                                 "thread; a module is not thread-safe"));
    assert_int_equal(kiln_module_get(m, "y", buf, sizeof buf), KILN_ERR_INVALID);
    assert_non_null(strstr(kiln_module_error(m), "kiln_module_get: the module is in use"));
    assert_int_equal(kiln_module_set(m, "a", NULL, 0), KILN_ERR_INVALID);
    assert_int_equal(kiln_module_bind(m, "a", NULL), KILN_ERR_INVALID);
    assert_int_equal(kiln_module_save(m, "/nonexistent/x"), KILN_ERR_INVALID);
    assert_non_null(strstr(kiln_module_error(m), "kiln_module_save: the module is in use"));
    assert_int_equal(kiln_module_load(m, "/nonexistent/x"), KILN_ERR_INVALID);
    pthread_join(t, NULL);
    assert_int_equal(r.s, KILN_OK);
    assert_int_equal(kiln_module_get_scalar(m, "y", &v), KILN_OK);
    assert_true(v == 600.0 * 600 * 600 * 600); /* every entry of a @ a @ a is 600^2 */
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    const kiln_allocator hook = {failing_realloc, plain_free, NULL};
    kiln_set_allocator(&hook);
    allocs_left = -1;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4, 4));
    kiln_tensor *p = kiln_param(g, "p", KILN_F32, KILN_SHAPE(4, 4), kiln_init_uniform(0, 1));
    kiln_tensor *y = kiln_sum(g, kiln_matmul(g, x, p), KILN_ALL, false);
    kiln_tensor *outs[] = {y, kiln_assign(g, p, kiln_mul(g, p, kiln_scalar(g, 0.5)))};
    assert_int_equal(kiln_entry(g, "f", 2, outs, NULL), KILN_OK);
    bool compiled = false, ran = false;
    for (long n = 0; n < 1000 && !ran; n++) {
        allocs_left = n;
        kiln_module *m = NULL;
        kiln_status s = kiln_compile(g, &interp, &m);
        if (s != KILN_OK) {
            assert_int_equal(s, KILN_ERR_NOMEM);
            assert_null(m);
            assert_graph_error(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
            continue;
        }
        compiled = true;
        float xv[16] = {0};
        s = kiln_module_set(m, "x", xv, sizeof(xv));
        assert_int_equal(s, KILN_OK);
        s = kiln_module_run(m, "f");
        if (s == KILN_OK)
            ran = true;
        else
            assert_module_error(m, s, KILN_ERR_NOMEM, "kiln_module_run: out of memory");
        allocs_left = -1;
        kiln_module_free(m);
    }
    allocs_left = -1;
    assert_true(compiled && ran);
    kiln_graph_free(g);
    kiln_set_allocator(NULL);
}

int main(void)
{
    /* the CUDA cases fail the same way on a machine with a GPU (read once) */
    setenv("KILN_LIBCUDA", KU_NO_LIBCUDA, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_null_arguments),
        cmocka_unit_test(test_compile_graph_in_error),
        cmocka_unit_test(test_compile_cuda_without_a_gpu),
        cmocka_unit_test(test_builders_work_after_a_failed_compile),
        cmocka_unit_test(test_compile_unknown_target),
        cmocka_unit_test(test_compile_name_clash),
        cmocka_unit_test(test_compile_verifier_failure),
        cmocka_unit_test(test_compile_leaves_graph_unchanged),
        cmocka_unit_test(test_init_simple),
        cmocka_unit_test(test_init_random),
        cmocka_unit_test(test_init_kaiming_bounds),
        cmocka_unit_test(test_run_errors),
        cmocka_unit_test(test_outputs_keep_values),
        cmocka_unit_test(test_assign_order_and_persistence),
        cmocka_unit_test(test_failed_run_changes_nothing),
        cmocka_unit_test(test_failed_run_changes_nothing_c),
        cmocka_unit_test(test_rng_runs),
        cmocka_unit_test(test_set_get_errors),
        cmocka_unit_test(test_set_get_every_name),
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_bind_overlap),
        cmocka_unit_test(test_one_thread_at_a_time),
        cmocka_unit_test(test_print),
        cmocka_unit_test(test_source_is_the_graph),
        cmocka_unit_test(test_free_and_error_basics),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
