/*
 * test_checkpoint.c - kiln_module_save / kiln_module_load (safetensors):
 * round trips of every dtype between the interpreter and the C target, the
 * exact bytes written, training that resumes bit for bit, a file written by
 * PyTorch, every validation error (status, message, and that the module did
 * not change), a save killed mid-write, and out-of-memory sweeps.
 */
#include "runtime/rt.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FIXTURE KILN_SOURCE_DIR "/tests/data/torch_linear.safetensors"

static const kiln_target targets[2] = {KILN_TARGET_INTERP, KILN_TARGET_C};
#define dir ku_scratch_dir /* this run's scratch directory (testutil) */

/* <dir>/<name>, in one of a few rotating buffers. */
#define tpath ku_scratch /* a path in this run's scratch directory */

static int make_dir(void **state)
{
    (void)state;
    return ku_scratch_make("ckpt");
}

static void run_ok(kiln_module *m, const char *entry)
{
    kiln_status s = kiln_module_run(m, entry);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_run: %s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
}

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

static void set_ok(kiln_module *m, const char *name, const void *v, size_t n)
{
    assert_int_equal(kiln_module_set(m, name, v, n), KILN_OK);
}

static void get_ok(kiln_module *m, const char *name, void *v, size_t n)
{
    assert_int_equal(kiln_module_get(m, name, v, n), KILN_OK);
}

static unsigned char *slurp(const char *path, size_t *len)
{
    unsigned char *p = (unsigned char *)ku_read_file(path, len);
    assert_non_null(p);
    return p;
}

/* ---- round trips ------------------------------------------------------------- */

/* Params of every dtype, rank 0 and an empty one; "f" reads x and one param. */
static kiln_graph *every_dtype_graph(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *f = kiln_param(g, "f32", KILN_F32, KILN_SHAPE(2, 3), kiln_init_zeros());
    kiln_param(g, "f64", KILN_F64, KILN_SHAPE(4), kiln_init_zeros());
    kiln_param(g, "i32", KILN_I32, KILN_SHAPE(2, 2), kiln_init_zeros());
    kiln_param(g, "i64", KILN_I64, 0, NULL, kiln_init_zeros());
    kiln_param(g, "mask", KILN_BOOL, KILN_SHAPE(5), kiln_init_zeros());
    kiln_param(g, "empty", KILN_F32, KILN_SHAPE(0, 3), kiln_init_zeros());
    kiln_param(g, "scalar", KILN_F64, 0, NULL, kiln_init_zeros());
    kiln_tensor *out = kiln_add(g, x, f);
    assert_int_equal(kiln_entry(g, "f", 1, &out, NULL), KILN_OK);
    ku_assert_ok(g);
    return g;
}

static const float F32V[6] = {1.5f, -2.25f, 3.0e-8f, -0.0f, 1e30f, 7.0f};
static const double F64V[4] = {0.1, -1e300, 5e-324, 2.0};
static const int32_t I32V[4] = {INT32_MIN, -1, 0, INT32_MAX};
static const int64_t I64V = INT64_MIN + 3;
static const bool MASKV[5] = {true, false, true, true, false};
static const double SCALARV = -42.125;

static void set_every_dtype(kiln_module *m)
{
    set_ok(m, "f32", F32V, sizeof F32V);
    set_ok(m, "f64", F64V, sizeof F64V);
    set_ok(m, "i32", I32V, sizeof I32V);
    set_ok(m, "i64", &I64V, sizeof I64V);
    set_ok(m, "mask", MASKV, sizeof MASKV);
    set_ok(m, "scalar", &SCALARV, sizeof SCALARV);
}

static void assert_every_dtype(kiln_module *m)
{
    float f[6];
    double d[4], sc;
    int32_t i[4];
    int64_t n;
    bool mask[5];
    get_ok(m, "f32", f, sizeof f);
    get_ok(m, "f64", d, sizeof d);
    get_ok(m, "i32", i, sizeof i);
    get_ok(m, "i64", &n, sizeof n);
    get_ok(m, "mask", mask, sizeof mask);
    get_ok(m, "scalar", &sc, sizeof sc);
    assert_memory_equal(f, F32V, sizeof f); /* bits: -0.0 stays negative */
    assert_memory_equal(d, F64V, sizeof d);
    assert_memory_equal(i, I32V, sizeof i);
    assert_true(n == I64V);
    assert_memory_equal(mask, MASKV, sizeof mask);
    assert_true(sc == SCALARV);
}

/* Saved from either target, loaded into either: the same values and the run
 * counter. */
static void test_round_trip_every_dtype_across_targets(void **state)
{
    (void)state;
    kiln_graph *g = every_dtype_graph();
    for (int from = 0; from < 2; from++)
        for (int to = 0; to < 2; to++) {
            kiln_module *a = ku_compile_for(g, targets[from]);
            set_every_dtype(a);
            const float x[6] = {-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f}; /* v + -0 is v */
            set_ok(a, "x", x, sizeof x);
            run_ok(a, "f");
            run_ok(a, "f");
            const char *path = tpath("every.safetensors");
            save_ok(a, path);
            kiln_module *b = ku_compile_for(g, targets[to]);
            assert_int_equal(b->run, 0);
            load_ok(b, path);
            assert_every_dtype(b);
            assert_int_equal(b->run, 2);
            assert_string_equal(kiln_module_error(b), "");
            /* the loaded params are what the next run computes with */
            set_ok(b, "x", x, sizeof x);
            run_ok(b, "f");
            float out[6];
            get_ok(b, "f.0", out, sizeof out);
            assert_memory_equal(out, F32V, sizeof out);
            kiln_module_free(a);
            kiln_module_free(b);
        }
    kiln_graph_free(g);
}

/* The exact file: length, header (sorted names, shapes, offsets, metadata,
 * space padding to 8 bytes) and little-endian data. */
static void test_file_bytes(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_param(g, "b", KILN_F32, KILN_SHAPE(2), kiln_init_const(1));
    kiln_param(g, "a", KILN_I64, 0, NULL, kiln_init_const(7));
    kiln_param(g, "c", KILN_BOOL, KILN_SHAPE(1, 1), kiln_init_ones());
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    assert_int_equal(kiln_entry(g, "f", 1, &x, NULL), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_INTERP);
    const char *path = tpath("bytes.safetensors");
    save_ok(m, path);
    size_t len = 0;
    unsigned char *p = slurp(path, &len);
    const char *want = "{\"__metadata__\":{\"format\":\"kiln\",\"kiln.run\":\"0\"},"
                       "\"a\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
                       "\"c\":{\"dtype\":\"BOOL\",\"shape\":[1,1],\"data_offsets\":[16,17]}}";
    size_t hlen = strlen(want) + (8 - strlen(want) % 8) % 8;
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(len, 8 + hlen + 17);
    const unsigned char len8[8] = {(unsigned char)hlen, (unsigned char)(hlen >> 8)};
    assert_memory_equal(p, len8, 8);
    assert_memory_equal(p + 8, want, strlen(want));
    for (size_t i = strlen(want); i < hlen; i++)
        assert_int_equal(p[8 + i], ' ');
    const unsigned char data[17] = {7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0x80, 0x3f, 1};
    assert_memory_equal(p + 8 + hlen, data, sizeof data);
    free(p);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* One state, one file: saved twice, and by a module of the other target. */
static void test_same_state_same_bytes(void **state)
{
    (void)state;
    kiln_graph *g = every_dtype_graph();
    kiln_module *a = ku_compile_for(g, KILN_TARGET_INTERP);
    kiln_module *b = ku_compile_for(g, KILN_TARGET_C);
    set_every_dtype(a);
    set_every_dtype(b);
    save_ok(a, tpath("same1.safetensors"));
    save_ok(a, tpath("same2.safetensors"));
    save_ok(b, tpath("same3.safetensors"));
    size_t n1, n2, n3;
    unsigned char *p1 = slurp(tpath("same1.safetensors"), &n1);
    unsigned char *p2 = slurp(tpath("same2.safetensors"), &n2);
    unsigned char *p3 = slurp(tpath("same3.safetensors"), &n3);
    assert_int_equal(n1, n2);
    assert_int_equal(n1, n3);
    assert_memory_equal(p1, p2, n1);
    assert_memory_equal(p1, p3, n1);
    /* a different state is a different file */
    float f[6] = {9, 9, 9, 9, 9, 9};
    set_ok(b, "f32", f, sizeof f);
    save_ok(b, tpath("same3.safetensors"));
    free(p3);
    p3 = slurp(tpath("same3.safetensors"), &n3);
    assert_int_equal(n1, n3);
    assert_memory_not_equal(p1, p3, n1);
    free(p1);
    free(p2);
    free(p3);
    kiln_module_free(a);
    kiln_module_free(b);
    kiln_graph_free(g);
}

/* Names are JSON-escaped on save and unescaped on load; a param bound to the
 * user's memory is saved from and loaded into that memory. */
static void test_escaped_names_and_bound_params(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    const char *odd = "say \"hi\"\\\n\x01 caf\xc3\xa9";
    kiln_param(g, odd, KILN_F32, KILN_SHAPE(2), kiln_init_const(3));
    kiln_param(g, "bound", KILN_F64, KILN_SHAPE(2), kiln_init_const(4));
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    assert_int_equal(kiln_entry(g, "f", 1, &x, NULL), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_INTERP);
    double mine[2] = {-1, -2};
    assert_int_equal(kiln_module_bind(m, "bound", mine), KILN_OK);
    save_ok(m, tpath("odd.safetensors"));
    float f[2] = {0, 0};
    set_ok(m, odd, f, sizeof f);
    mine[0] = mine[1] = 0;
    load_ok(m, tpath("odd.safetensors"));
    get_ok(m, odd, f, sizeof f);
    assert_true(f[0] == 3 && f[1] == 3);
    assert_true(mine[0] == -1 && mine[1] == -2);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* ---- resuming -------------------------------------------------------------- */

/* w <- 0.9 w + U(0,1) noise: every run draws new numbers from the Philox run
 * counter, so only a restored counter resumes the same stream. */
static kiln_graph *noisy_graph(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_graph_seed(g, 77);
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(64), kiln_init_normal(0, 1));
    kiln_tensor *noise = kiln_rand(g, KILN_F32, KILN_SHAPE(64));
    kiln_tensor *upd = kiln_assign(g, w, kiln_add(g, kiln_mul(g, w, kiln_scalar(g, 0.9)), noise));
    kiln_tensor *outs[] = {upd, noise};
    assert_int_equal(kiln_entry(g, "step", 2, outs, NULL), KILN_OK);
    ku_assert_ok(g);
    return g;
}

static void test_training_resumes_bit_for_bit(void **state)
{
    (void)state;
    kiln_graph *g = noisy_graph();
    for (int t = 0; t < 2; t++) {
        kiln_module *a = ku_compile_for(g, targets[t]);
        for (int i = 0; i < 3; i++)
            run_ok(a, "step");
        const char *path = tpath("resume.safetensors");
        save_ok(a, path);
        run_ok(a, "step");
        run_ok(a, "step");
        float want[64], want_noise[64], got[64], got_noise[64];
        get_ok(a, "w", want, sizeof want);
        get_ok(a, "step.1", want_noise, sizeof want_noise);

        kiln_module *b = ku_compile_for(g, targets[t]);
        load_ok(b, path);
        assert_int_equal(b->run, 3);
        run_ok(b, "step");
        run_ok(b, "step");
        get_ok(b, "w", got, sizeof got);
        get_ok(b, "step.1", got_noise, sizeof got_noise);
        assert_memory_equal(got, want, sizeof got);
        assert_memory_equal(got_noise, want_noise, sizeof got_noise);
        kiln_module_free(a);
        kiln_module_free(b);
    }
    kiln_graph_free(g);
}

/* ---- files from other tools ---------------------------------------------------- */

/* nn.Linear(3, 2)'s state_dict under torch.manual_seed(0) and one tensor of
 * each other dtype, as safetensors writes them (tests/ref/
 * make_safetensors_fixture.py). A param the file lacks keeps its value, and
 * with no "kiln.run" the run counter is kept. */
static void test_loads_pytorch_file(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(1, 3));
    kiln_tensor *w = kiln_param(g, "weight", KILN_F32, KILN_SHAPE(2, 3), kiln_init_zeros());
    kiln_tensor *b = kiln_param(g, "bias", KILN_F32, KILN_SHAPE(2), kiln_init_zeros());
    kiln_param(g, "scale", KILN_F64, KILN_SHAPE(3), kiln_init_zeros());
    kiln_param(g, "counts", KILN_I32, KILN_SHAPE(2, 2), kiln_init_zeros());
    kiln_param(g, "step", KILN_I64, 0, NULL, kiln_init_zeros());
    kiln_param(g, "mask", KILN_BOOL, KILN_SHAPE(3), kiln_init_zeros());
    kiln_param(g, "extra", KILN_F32, KILN_SHAPE(2), kiln_init_const(5));
    kiln_tensor *y = kiln_linear(g, x, w, b);
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    for (int t = 0; t < 2; t++) {
        kiln_module *m = ku_compile_for(g, targets[t]);
        const float xv[3] = {1, 2, 3};
        set_ok(m, "x", xv, sizeof xv);
        run_ok(m, "f");
        load_ok(m, FIXTURE);
        const float weight[6] = {-0.00432251766f, 0.309715837f,  -0.475185335f,
                                 -0.424894601f,   -0.222368971f, 0.154820725f};
        const float bias[2] = {-0.0114391446f, 0.457774937f};
        const double scale[3] = {0.5, -1.25, 3.0};
        const int32_t counts[4] = {1, -2, 3, 2147483647};
        const bool mask[3] = {true, false, true};
        const float extra[2] = {5, 5};
        float wv[6], bv[2], ev[2];
        double sv[3];
        int32_t cv[4];
        int64_t step;
        bool mv[3];
        get_ok(m, "weight", wv, sizeof wv);
        get_ok(m, "bias", bv, sizeof bv);
        get_ok(m, "scale", sv, sizeof sv);
        get_ok(m, "counts", cv, sizeof cv);
        get_ok(m, "step", &step, sizeof step);
        get_ok(m, "mask", mv, sizeof mv);
        get_ok(m, "extra", ev, sizeof ev);
        assert_memory_equal(wv, weight, sizeof wv);
        assert_memory_equal(bv, bias, sizeof bv);
        assert_memory_equal(sv, scale, sizeof sv);
        assert_memory_equal(cv, counts, sizeof cv);
        assert_true(step == 9007199254740993LL); /* 2^53 + 1: no trip through a double */
        assert_memory_equal(mv, mask, sizeof mv);
        assert_memory_equal(ev, extra, sizeof ev);
        assert_int_equal(m->run, 1);
        /* and the module computes with them: x @ W^T + b */
        run_ok(m, "f");
        float out[2];
        get_ok(m, "f.0", out, sizeof out);
        for (int i = 0; i < 2; i++) {
            float want =
                weight[3 * i] * 1 + weight[3 * i + 1] * 2 + weight[3 * i + 2] * 3 + bias[i];
            assert_float_equal(out[i], want, 1e-6);
        }
        kiln_module_free(m);
    }
    kiln_graph_free(g);
}

/* ---- errors ------------------------------------------------------------------ */

/* a F32 [2] = 1, w F32 [2, 3] = 2, n I64 [] = 3, input x; run once. */
static kiln_module *error_module(kiln_graph **gp)
{
    kiln_graph *g = *gp = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    kiln_tensor *a = kiln_param(g, "a", KILN_F32, KILN_SHAPE(2), kiln_init_const(1));
    kiln_param(g, "w", KILN_F32, KILN_SHAPE(2, 3), kiln_init_const(2));
    kiln_param(g, "n", KILN_I64, 0, NULL, kiln_init_const(3));
    kiln_tensor *y = kiln_add(g, x, a);
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_INTERP);
    const float xv[2] = {0, 0};
    set_ok(m, "x", xv, sizeof xv);
    run_ok(m, "f");
    return m;
}

typedef struct {
    float a[2], w[6];
    int64_t n;
    uint32_t run;
} snapshot;

static snapshot snap(kiln_module *m)
{
    snapshot s;
    memset(&s, 0, sizeof s);
    get_ok(m, "a", s.a, sizeof s.a);
    get_ok(m, "w", s.w, sizeof s.w);
    get_ok(m, "n", &s.n, sizeof s.n);
    s.run = m->run;
    return s;
}

static void assert_unchanged(kiln_module *m, const snapshot *before)
{
    snapshot now = snap(m);
    assert_memory_equal(&now, before, sizeof now);
    assert_true(now.a[0] == 1 && now.w[0] == 2 && now.n == 3 && now.run == 1);
}

static void write_raw(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* A safetensors file: the header's length, the header, then ndata bytes of
 * 0x11 (which no param of error_module holds). */
static void write_st(const char *path, const char *header, size_t ndata)
{
    size_t h = strlen(header);
    unsigned char *buf = calloc(1, 8 + h + ndata + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, 0x11, ndata);
    write_raw(path, buf, 8 + h + ndata);
    free(buf);
}

/* a valid entry for "a", listed first: a load that failed later on and still
 * copied it would change the module */
#define A_OK "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}"
#define W(dtype, shape, offs)                                                                      \
    "\"w\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offs "}"

typedef struct {
    const char *header;
    size_t ndata;
    kiln_status status;
    const char *needle;
} bad_file;

static const bad_file bad_files[] = {
    {"{" A_OK ",\"w\":{", 8, KILN_ERR_FORMAT,
     "not a safetensors file: the header is not valid JSON"},
    {"[1, 2]", 0, KILN_ERR_FORMAT, "the header is not a JSON object"},
    {"\"a\"", 0, KILN_ERR_FORMAT, "the header is not a JSON object"},
    {"{" A_OK "} x", 8, KILN_ERR_FORMAT, "the header has bytes after its JSON value (at byte"},
    {"{" A_OK ",\"w\":5}", 8, KILN_ERR_FORMAT, "tensor 'w': the entry is not a JSON object"},
    {"{" A_OK "," W("F33", "[2,3]", "[8,32]") "}", 32, KILN_ERR_FORMAT,
     "tensor 'w': unknown dtype \"F33\""},
    {"{" A_OK ",\"w\":{\"shape\":[2,3],\"data_offsets\":[8,32]}}", 32, KILN_ERR_FORMAT,
     "tensor 'w': \"dtype\" is missing or not a string"},
    {"{" A_OK ",\"w\":{\"dtype\":4,\"shape\":[2,3],\"data_offsets\":[8,32]}}", 32, KILN_ERR_FORMAT,
     "tensor 'w': \"dtype\" is missing or not a string"},
    {"{" A_OK "," W("F32", "6", "[8,32]") "}", 32, KILN_ERR_FORMAT,
     "tensor 'w': \"shape\" is missing or not an array"},
    {"{" A_OK "," W("F32", "[2,-3]", "[8,32]") "}", 32, KILN_ERR_FORMAT,
     "tensor 'w': shape entry 1 is not a non-negative integer"},
    {"{" A_OK "," W("F32", "[2,1.5]", "[8,32]") "}", 32, KILN_ERR_FORMAT,
     "tensor 'w': shape entry 1 is not a non-negative integer"},
    {"{" A_OK "," W("F32", "[\"2\",3]", "[8,32]") "}", 32, KILN_ERR_FORMAT,
     "tensor 'w': shape entry 0 is not a non-negative integer"},
    {"{" A_OK "," W("F32", "[1,1,1,1,1,1,1,1,1]", "[8,12]") "}", 12, KILN_ERR_FORMAT,
     "tensor 'w': the shape has 9 dimensions; Kiln allows at most 8"},
    {"{" A_OK "," W("F32", "[4294967296,4294967296,4294967296]", "[8,12]") "}", 12, KILN_ERR_FORMAT,
     "tensor 'w': F32 [4294967296, 4294967296, 4294967296] is too large (its byte count "
     "overflows)"},
    {"{" A_OK "," W("F32", "[2,3]", "[8]") "}", 24, KILN_ERR_FORMAT,
     "tensor 'w': \"data_offsets\" is missing or not [begin, end]"},
    {"{" A_OK ",\"w\":{\"dtype\":\"F32\",\"shape\":[2,3]}}", 24, KILN_ERR_FORMAT,
     "tensor 'w': \"data_offsets\" is missing or not [begin, end]"},
    {"{" A_OK "," W("F32", "[2,3]", "[8,-32]") "}", 24, KILN_ERR_FORMAT,
     "tensor 'w': \"data_offsets\" is missing or not [begin, end]"},
    {"{" A_OK "," W("F32", "[2,3]", "[32,8]") "}", 24, KILN_ERR_FORMAT,
     "tensor 'w': data_offsets [32, 8] end before they begin"},
    {"{" A_OK "," W("F32", "[2,3]", "[8,40]") "}", 32, KILN_ERR_FORMAT,
     "tensor 'w': data_offsets [8, 40] run past the end of the data (32 bytes)"},
    {"{" A_OK "," W("F32", "[2,3]", "[8,20]") "}", 20, KILN_ERR_FORMAT,
     "tensor 'w': data_offsets [8, 20] hold 12 bytes but F32 [2, 3] needs 24"},
    {"{" A_OK "," W("F32", "[2,3]", "[4,28]") "}", 28, KILN_ERR_FORMAT,
     "tensors 'a' [0, 8] and 'w' [4, 28] overlap"},
    {"{" W("F32", "[2,3]", "[0,24]") "," A_OK "}", 24, KILN_ERR_FORMAT,
     "tensors 'a' [0, 8] and 'w' [0, 24] overlap"},
    {"{" A_OK "," W("F32", "[2,3]", "[16,40]") "}", 40, KILN_ERR_FORMAT,
     "bytes [8, 16) of the data belong to no tensor (safetensors allows no holes)"},
    {"{" A_OK "}", 16, KILN_ERR_FORMAT, "bytes [8, 16) of the data belong to no tensor"},
    {"{" A_OK ",\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
     KILN_ERR_FORMAT, "tensor 'a' appears twice in the header"},
    {"{" A_OK ",\"w\\u0000\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
     KILN_ERR_FORMAT, "the header holds a NUL character"},
    {"{\"__metadata__\":5," A_OK "}", 8, KILN_ERR_FORMAT, "__metadata__ is not a JSON object"},
    {"{\"__metadata__\":{\"kiln.run\":5}," A_OK "}", 8, KILN_ERR_FORMAT,
     "__metadata__ 'kiln.run' is not a string"},
    {"{\"__metadata__\":{},\"__metadata__\":{}," A_OK "}", 8, KILN_ERR_FORMAT,
     "__metadata__ appears twice in the header"},
    {"{\"__metadata__\":{\"kiln.run\":\"-1\"}," A_OK "}", 8, KILN_ERR_FORMAT,
     "__metadata__ 'kiln.run' is \"-1\", not a decimal run counter (0 to 4294967295)"},
    {"{\"__metadata__\":{\"kiln.run\":\"12a\"}," A_OK "}", 8, KILN_ERR_FORMAT,
     "'kiln.run' is \"12a\", not a decimal run counter"},
    {"{\"__metadata__\":{\"kiln.run\":\"4294967296\"}," A_OK "}", 8, KILN_ERR_FORMAT,
     "'kiln.run' is \"4294967296\", not a decimal run counter"},
    {"{\"__metadata__\":{\"kiln.run\":\"\"}," A_OK "}", 8, KILN_ERR_FORMAT,
     "'kiln.run' is \"\", not a decimal run counter"},
    {"{" A_OK ",\"zz\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
     KILN_ERR_NOT_FOUND, "has tensor 'zz' which is not a param of this module"},
    {"{" A_OK ",\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
     KILN_ERR_NOT_FOUND, "has tensor 'x' which is not a param of this module"},
    {"{" A_OK ",\"f.0\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16,
     KILN_ERR_NOT_FOUND, "has tensor 'f.0' which is not a param of this module"},
    {"{" A_OK "," W("F64", "[2,3]", "[8,56]") "}", 56, KILN_ERR_DTYPE,
     "dtype mismatch for w: copying a param with dtype F64 from checkpoint, the dtype in "
     "current model is F32 (float32)."},
    {"{" A_OK "," W("F16", "[2,3]", "[8,20]") "}", 20, KILN_ERR_DTYPE,
     "dtype mismatch for w: copying a param with dtype F16 from checkpoint"},
    {"{" A_OK "," W("F32", "[3,2]", "[8,32]") "}", 32, KILN_ERR_SHAPE,
     "size mismatch for w: copying a param with shape [3, 2] from checkpoint, the shape in "
     "current model is [2, 3]."},
    {"{" A_OK ",\"n\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]}}", 16,
     KILN_ERR_SHAPE,
     "size mismatch for n: copying a param with shape [1] from checkpoint, the shape in current "
     "model is []."},
};

/* Every malformed or mismatched file: the status, the message (which names
 * the file), and a module that did not change, also after valid entries. */
/* load_state_dict(strict=False): an inference module (the weights only)
 * loads a training checkpoint (weights and Adam state): the weights arrive,
 * the optimizer state is reported skipped and a param the file lacks kept;
 * strict load refuses the same file; a tensor of a param's name that does not
 * match it is still an error, which changes nothing. */
static void test_nonstrict_load(void **state)
{
    (void)state;
    kiln_graph *tg = ku_graph_new();
    kiln_tensor *w = kiln_param(tg, "w", KILN_F32, KILN_SHAPE(3), kiln_init_uniform(-1, 1));
    kiln_tensor *x = kiln_input(tg, "x", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *loss = kiln_sum(tg, kiln_mul(tg, kiln_mul(tg, w, x), w), KILN_ALL, false);
    assert_int_equal(kiln_train_step(tg, "train", loss, kiln_adam(0.1, 0.9, 0.999, 1e-8)), KILN_OK);
    kiln_module *train = ku_compile_for(tg, KILN_TARGET_C);
    const float xv[3] = {1, -2, 0.5f};
    set_ok(train, "x", xv, sizeof xv);
    run_ok(train, "train");
    save_ok(train, tpath("train.safetensors"));
    float want[3];
    get_ok(train, "w", want, sizeof want);

    kiln_graph *ig = ku_graph_new(); /* inference: w, and a param of its own */
    kiln_tensor *iw = kiln_param(ig, "w", KILN_F32, KILN_SHAPE(3), kiln_init_zeros());
    kiln_tensor *scale = kiln_param(ig, "scale", KILN_F32, KILN_SHAPE(1), kiln_init_ones());
    kiln_tensor *y = kiln_mul(ig, iw, scale);
    assert_int_equal(kiln_entry(ig, "predict", 1, &y, (const char *[]){"y"}), KILN_OK);
    kiln_module *inf = ku_compile_for(ig, KILN_TARGET_C);
    kiln_status s = kiln_module_load(inf, tpath("train.safetensors"));
    assert_module_error(inf, s, KILN_ERR_NOT_FOUND, "which is not a param of this module");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(kiln_module_load_nonstrict(inf, tpath("train.safetensors"), f), KILN_OK);
    fclose(f);
    assert_string_equal(text, "unexpected keys (skipped): 'train.lr', 'train.step', 'w.exp_avg', "
                              "'w.exp_avg_sq'\nmissing keys (kept): 'scale'\n");
    free(text);
    float got[3], one;
    get_ok(inf, "w", got, sizeof got);
    assert_memory_equal(got, want, sizeof want);
    get_ok(inf, "scale", &one, sizeof one);
    assert_true(one == 1.0f);
    assert_int_equal(kiln_module_load_nonstrict(inf, tpath("train.safetensors"), NULL), KILN_OK);

    /* a param of that name with another shape: an error, and nothing changes */
    kiln_graph *bg = ku_graph_new();
    kiln_tensor *bw = kiln_param(bg, "w", KILN_F32, KILN_SHAPE(4), kiln_init_zeros());
    kiln_tensor *other = kiln_param(bg, "other", KILN_F32, KILN_SHAPE(1), kiln_init_ones());
    kiln_tensor *z = kiln_add(bg, kiln_sum(bg, bw, KILN_ALL, false), other);
    assert_int_equal(kiln_entry(bg, "f", 1, &z, (const char *[]){"z"}), KILN_OK);
    kiln_module *bad = ku_compile_for(bg, KILN_TARGET_C);
    s = kiln_module_load_nonstrict(bad, tpath("train.safetensors"), NULL);
    assert_module_error(bad, s, KILN_ERR_SHAPE,
                        "size mismatch for w: copying a param with shape [3] from checkpoint, the "
                        "shape in current model is [4].");
    float four[4];
    get_ok(bad, "w", four, sizeof four);
    for (int i = 0; i < 4; i++)
        assert_true(four[i] == 0.0f);
    kiln_module_free(bad);
    kiln_module_free(inf);
    kiln_module_free(train);
    kiln_graph_free(bg);
    kiln_graph_free(ig);
    kiln_graph_free(tg);
}

static void test_load_errors_change_nothing(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_module *m = error_module(&g);
    const snapshot before = snap(m);
    const char *path = tpath("bad.safetensors");
    char prefix[600];
    snprintf(prefix, sizeof prefix, "kiln_module_load: '%s'", path);
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++) {
        const bad_file *b = &bad_files[i];
        write_st(path, b->header, b->ndata);
        kiln_status s = kiln_module_load(m, path);
        if (s != b->status || !strstr(kiln_module_error(m), b->needle))
            fprintf(stderr, "case %zu: %s\n", i, b->header);
        assert_module_error(m, s, b->status, b->needle);
        assert_module_error(m, s, b->status, prefix);
        assert_unchanged(m, &before);
    }
    /* the same entries, well formed, do load */
    write_st(path, "{" A_OK "," W("F32", "[2,3]", "[8,32]") "}", 32);
    load_ok(m, path);
    unsigned char a[8], ones[8];
    memset(ones, 0x11, sizeof ones);
    get_ok(m, "a", a, sizeof a);
    assert_memory_equal(a, ones, sizeof a);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* Files too short for their own header length, and files that are not there. */
static void test_load_bad_sizes_and_io(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_module *m = error_module(&g);
    const snapshot before = snap(m);
    const char *path = tpath("short.safetensors");
    kiln_status s;

    write_raw(path, "", 0);
    s = kiln_module_load(m, path);
    assert_module_error(m, s, KILN_ERR_FORMAT,
                        "short.safetensors': not a safetensors file: the file is 0 bytes, too "
                        "short for the 8-byte header length");
    write_raw(path, "\x02\0\0\0\0", 5);
    s = kiln_module_load(m, path);
    assert_module_error(m, s, KILN_ERR_FORMAT, "the file is 5 bytes, too short");
    assert_unchanged(m, &before);

    const unsigned char past[18] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    write_raw(path, past, sizeof past);
    s = kiln_module_load(m, path);
    assert_module_error(m, s, KILN_ERR_FORMAT,
                        "the header length 100 runs past the end of the file (18 bytes)");
    const unsigned char huge[10] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    write_raw(path, huge, sizeof huge);
    s = kiln_module_load(m, path);
    assert_module_error(m, s, KILN_ERR_FORMAT,
                        "the header length 9223372036854775808 is over the limit of 100000000");
    const unsigned char nul[12] = {4, 0, 0, 0, 0, 0, 0, 0, '{', 0, '}', ' '};
    write_raw(path, nul, sizeof nul);
    s = kiln_module_load(m, path);
    assert_module_error(m, s, KILN_ERR_FORMAT, "the header holds a NUL character");
    assert_unchanged(m, &before);

    const char *missing = tpath("no-such-file.safetensors");
    s = kiln_module_load(m, missing);
    assert_module_error(m, s, KILN_ERR_IO, "kiln_module_load: cannot read '");
    assert_module_error(m, s, KILN_ERR_IO, "no-such-file.safetensors': No such file or directory");
    s = kiln_module_load(m, dir);
    assert_module_error(m, s, KILN_ERR_IO, "Is a directory");
    assert_unchanged(m, &before);

    assert_int_equal(kiln_module_load(NULL, path), KILN_ERR_INVALID);
    s = kiln_module_load(m, NULL);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_load: the path is NULL");
    assert_unchanged(m, &before);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static int count_temp_files(const char *base)
{
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    int n = 0;
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void remove_temp_files(const char *base)
{
    char prefix[300];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            char p[600];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
}

/* A save that cannot happen says why, naming the path, and leaves no
 * temporary file and the old checkpoint as it was. */
static void test_save_errors(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_module *m = error_module(&g);
    kiln_status s = kiln_module_save(m, tpath("no-dir/x.safetensors"));
    assert_module_error(m, s, KILN_ERR_IO, "kiln_module_save: cannot write '");
    assert_module_error(m, s, KILN_ERR_IO, "no-dir/x.safetensors': No such file or directory");

    /* the target is a directory: the rename fails after the data was written */
    const char *sub = tpath("adir");
    assert_int_equal(mkdir(sub, 0755), 0);
    s = kiln_module_save(m, sub);
    assert_module_error(m, s, KILN_ERR_IO, "adir': Is a directory");
    assert_int_equal(count_temp_files("adir"), 0);
    assert_int_equal(rmdir(sub), 0);

    assert_int_equal(kiln_module_save(NULL, sub), KILN_ERR_INVALID);
    s = kiln_module_save(m, NULL);
    assert_module_error(m, s, KILN_ERR_INVALID, "kiln_module_save: the path is NULL");
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* ---- what save replaces and what load reads --------------------------------------- */

/* A save refuses to replace anything but a regular file: a FIFO, a device
 * node (root only: mknod needs CAP_MKNOD), a symlink (dangling or not). The
 * thing stays as it was, the file a symlink points to too, and no temporary
 * file is left. */
static void test_save_refuses_special_files(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_module *m = error_module(&g);
    struct stat st;
    char want[700];

    const char *fifo = tpath("fifo.safetensors");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    kiln_status s = kiln_module_save(m, fifo);
    snprintf(want, sizeof want, "kiln_module_save: '%s' is a FIFO, not a regular file", fifo);
    assert_module_error(m, s, KILN_ERR_IO, want);
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_int_equal(count_temp_files("fifo.safetensors"), 0);

    const char *dev = tpath("null.safetensors");
    if (geteuid() == 0 && mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0) {
        s = kiln_module_save(m, dev);
        snprintf(want, sizeof want,
                 "kiln_module_save: '%s' is a character device, not a regular file", dev);
        assert_module_error(m, s, KILN_ERR_IO, want);
        assert_int_equal(lstat(dev, &st), 0);
        assert_true(S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3));
    } else {
        fprintf(stderr, "note: not root, the device-node case is not run\n");
    }

    const char *real = tpath("real.safetensors"), *link = tpath("link.safetensors");
    save_ok(m, real);
    size_t n0, n1;
    unsigned char *before = slurp(real, &n0);
    float a[2] = {5, 6};
    set_ok(m, "a", a, sizeof a);
    assert_int_equal(symlink("real.safetensors", link), 0);
    s = kiln_module_save(m, link);
    snprintf(want, sizeof want,
             "kiln_module_save: '%s' is a symbolic link: save to the file it points to", link);
    assert_module_error(m, s, KILN_ERR_IO, want);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    unsigned char *after = slurp(real, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
    assert_int_equal(count_temp_files("link.safetensors"), 0);

    const char *dangling = tpath("dangling.safetensors");
    assert_int_equal(symlink("nowhere.safetensors", dangling), 0);
    s = kiln_module_save(m, dangling);
    assert_module_error(m, s, KILN_ERR_IO, "is a symbolic link: save to the file it points to");
    assert_int_equal(lstat(dangling, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(access(tpath("nowhere.safetensors"), F_OK), -1);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* A save keeps the mode of the file it replaces, and a new file gets
 * 0666 & ~umask, as open(2) would give it: a 0600 checkpoint stays private. */
static void test_save_keeps_the_mode(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_module *m = error_module(&g);
    mode_t old = umask(077);
    save_ok(m, tpath("private.safetensors"));
    assert_int_equal(ku_mode_of(tpath("private.safetensors")), 0600);
    umask(022);
    save_ok(m, tpath("shared.safetensors"));
    assert_int_equal(ku_mode_of(tpath("shared.safetensors")), 0644);
    assert_int_equal(chmod(tpath("shared.safetensors"), 0600), 0);
    save_ok(m, tpath("shared.safetensors"));
    assert_int_equal(ku_mode_of(tpath("shared.safetensors")), 0600);
    assert_int_equal(chmod(tpath("shared.safetensors"), 0640), 0);
    save_ok(m, tpath("shared.safetensors"));
    assert_int_equal(ku_mode_of(tpath("shared.safetensors")), 0640);
    umask(old);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void touch(const char *path)
{
    write_raw(path, "x", 1);
}

/* The temporary files of saves killed midway ("<target>.tmp.<pid>.<6>") are
 * removed by the next save of that target once their process is gone; those
 * of a live process and of other targets stay. */
static void test_save_removes_stale_temp_files(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_module *m = error_module(&g);
    fflush(NULL);
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    assert_true(kill(dead, 0) == -1 && errno == ESRCH);
    char stale[64], live[64], other[64], odd[64];
    snprintf(stale, sizeof stale, "st.safetensors.tmp.%ld.AbC123", (long)dead);
    snprintf(live, sizeof live, "st.safetensors.tmp.%ld.XyZ789", (long)getpid());
    snprintf(other, sizeof other, "other.safetensors.tmp.%ld.AbC123", (long)dead);
    snprintf(odd, sizeof odd, "st.safetensors.tmp.%ld.AbC123.keep", (long)dead);
    touch(tpath(stale));
    touch(tpath(live));
    touch(tpath(other));
    touch(tpath(odd));
    save_ok(m, tpath("st.safetensors"));
    assert_int_equal(access(tpath(stale), F_OK), -1);
    assert_int_equal(access(tpath(live), F_OK), 0);
    assert_int_equal(access(tpath(other), F_OK), 0);
    assert_int_equal(access(tpath(odd), F_OK), 0);
    unlink(tpath(live));
    unlink(tpath(other));
    unlink(tpath(odd));
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* Loads path in a child that has 5 seconds: a load that blocks (a FIFO) or
 * reads without end (/dev/zero) fails the test instead of hanging it. */
typedef struct {
    kiln_module *m;
    const char *path, *needle;
} load_case;

static int load_refused(void *arg)
{
    const load_case *c = arg;
    kiln_status s = kiln_module_load(c->m, c->path);
    const char *msg = kiln_module_error(c->m);
    bool ok = s == KILN_ERR_IO && strstr(msg, c->needle) && strstr(msg, "kiln_module_load: '") &&
              c->m->run == 1;
    if (!ok)
        fprintf(stderr, "loading '%s': status %d, '%s'\n", c->path, s, msg);
    return ok ? 0 : 1;
}

static void load_in_child(kiln_module *m, const char *path, const char *needle)
{
    load_case c = {m, path, needle};
    char what[600];
    snprintf(what, sizeof what, "loading '%s'", path);
    ku_in_child(what, load_refused, &c);
}

/* A load reads only regular files: a FIFO would block it for ever, a device
 * like /dev/zero would feed it without end. A symlink to a checkpoint loads. */
static void test_load_refuses_special_files(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_module *m = error_module(&g);
    const snapshot before = snap(m);
    const char *fifo = tpath("load.fifo");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    load_in_child(m, fifo, "load.fifo' is a FIFO, not a regular file");
    load_in_child(m, "/dev/zero", "'/dev/zero' is a character device, not a regular file");
    assert_int_equal(unlink(fifo), 0);

    save_ok(m, tpath("target.safetensors"));
    assert_int_equal(symlink("target.safetensors", tpath("via-link.safetensors")), 0);
    load_ok(m, tpath("via-link.safetensors"));
    assert_unchanged(m, &before);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* A disk that fills mid-save (a 64 KB tmpfs, mounted in a mount namespace of
 * this process so nothing outlives it; needs root): KILN_ERR_IO naming the
 * file and ENOSPC, the old checkpoint intact, no temporary file. */
static void test_save_disk_full(void **state)
{
    (void)state;
    const char *full = tpath("full");
    assert_int_equal(mkdir(full, 0755), 0);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", full, "tmpfs", 0, "size=64k") != 0) {
        rmdir(full);
        ku_skip("cannot mount a small tmpfs (not root, or no CAP_SYS_ADMIN)");
    }
    kiln_graph *g;
    kiln_module *small = error_module(&g);
    const char *path = tpath("full/ck.safetensors");
    save_ok(small, path);
    size_t n0, n1;
    unsigned char *before = slurp(path, &n0);

    kiln_graph *bg = ku_graph_new();
    kiln_param(bg, "a", KILN_F32, KILN_SHAPE(32768), kiln_init_const(1)); /* 128 KB */
    kiln_tensor *x = kiln_input(bg, "x", KILN_F32, KILN_SHAPE(1));
    assert_int_equal(kiln_entry(bg, "f", 1, &x, NULL), KILN_OK);
    kiln_module *big = ku_compile_for(bg, KILN_TARGET_INTERP);
    kiln_status s = kiln_module_save(big, path);
    char want[700];
    snprintf(want, sizeof want, "kiln_module_save: cannot write '%s': No space left on device",
             path);
    assert_module_error(big, s, KILN_ERR_IO, want);
    unsigned char *after = slurp(path, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
    load_ok(small, path);

    DIR *d = opendir(full);
    assert_non_null(d);
    struct dirent *e;
    int others = 0;
    while ((e = readdir(d)))
        others += e->d_name[0] != '.' && strcmp(e->d_name, "ck.safetensors") != 0;
    closedir(d);
    assert_int_equal(others, 0);
    assert_int_equal(umount(full), 0);
    assert_int_equal(rmdir(full), 0);
    kiln_module_free(big);
    kiln_graph_free(bg);
    kiln_module_free(small);
    kiln_graph_free(g);
}

/* ---- crash safety ---------------------------------------------------------------- */

enum { BIG = 16 * 1024 * 1024 }; /* 64 MB of I32 */

static int32_t state_value(int which, int64_t i)
{
    return which == 0 ? (int32_t)i : (int32_t)~i;
}

static void set_state(kiln_module *m, int32_t *scratch, int which)
{
    for (int64_t i = 0; i < BIG; i++)
        scratch[i] = state_value(which, i);
    int64_t tag = which + 1;
    set_ok(m, "big", scratch, (size_t)BIG * sizeof(int32_t));
    set_ok(m, "tag", &tag, sizeof tag);
}

/* The child saves two states in turn until it is killed. */
static void saver(kiln_module *m, int32_t *scratch, const char *path)
{
    for (int which = 1;; which ^= 1) {
        int64_t tag = which + 1;
        for (int64_t i = 0; i < BIG; i++)
            scratch[i] = state_value(which, i);
        if (kiln_module_set(m, "big", scratch, (size_t)BIG * sizeof(int32_t)) != KILN_OK ||
            kiln_module_set(m, "tag", &tag, sizeof tag) != KILN_OK ||
            kiln_module_save(m, path) != KILN_OK)
            _exit(3);
    }
}

/* A process SIGKILLed at a random point of a save loop leaves a checkpoint
 * that loads and is exactly one of the two states. Repeated until a kill
 * provably landed mid-write (a temporary file was left behind). */
static void test_killed_save_leaves_a_whole_checkpoint(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_param(g, "big", KILN_I32, KILN_SHAPE(BIG), kiln_init_zeros());
    kiln_param(g, "tag", KILN_I64, 0, NULL, kiln_init_zeros());
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(1));
    assert_int_equal(kiln_entry(g, "f", 1, &x, NULL), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_INTERP);
    kiln_module *back = ku_compile_for(g, KILN_TARGET_INTERP);
    int32_t *scratch = malloc((size_t)BIG * sizeof(int32_t));
    assert_non_null(scratch);
    const char *path = tpath("crash.safetensors");
    set_state(m, scratch, 0);
    save_ok(m, path);

    /* how long one save takes, to spread the kills over a few of them */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    save_ok(m, path);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long save_us = (t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000;
    if (save_us < 1000)
        save_us = 1000;

    srand(20240611);
    int trials = 0, mid_write = 0, seen[2] = {0, 0};
    while (trials < 40 && (trials < 6 || mid_write == 0)) {
        trials++;
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
            saver(m, scratch, path);
        usleep((useconds_t)(save_us / 2 + rand() % (3 * save_us)));
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL); /* not a failed save */
        if (count_temp_files("crash.safetensors") > 0)
            mid_write++;
        remove_temp_files("crash.safetensors");

        load_ok(back, path);
        int64_t tag = 0;
        get_ok(back, "tag", &tag, sizeof tag);
        assert_true(tag == 1 || tag == 2);
        int which = (int)tag - 1;
        seen[which]++;
        get_ok(back, "big", scratch, (size_t)BIG * sizeof(int32_t));
        for (int64_t i = 0; i < BIG; i++)
            if (scratch[i] != state_value(which, i))
                fail_msg("trial %d: element %lld is %d, not state %d's", trials, (long long)i,
                         scratch[i], which);
    }
    assert_true(mid_write > 0);
    free(scratch);
    kiln_module_free(m);
    kiln_module_free(back);
    kiln_graph_free(g);
}

/* ---- out of memory -------------------------------------------------------------- */

/* Every allocation of save and load (cJSON's included) may fail: each failure
 * is KILN_ERR_NOMEM with a message, frees what it took, leaves no temporary
 * file and changes nothing. */
static void test_out_of_memory(void **state)
{
    (void)state;
    kiln_graph *g;
    kiln_module *m = error_module(&g);
    const snapshot before = snap(m);
    const char *good = tpath("oom-good.safetensors");
    write_st(good,
             "{\"__metadata__\":{\"format\":\"pt\",\"kiln.run\":\"9\"}," A_OK
             "," W("F32", "[2,3]", "[8,32]") ",\"n\":{\"dtype\":\"I64\",\"shape\":[],"
                                             "\"data_offsets\":[32,40]}}",
             40);
    const char *path = tpath("oom.safetensors");
    kiln_set_allocator(&ku_counting_allocator);
    int n;
    kiln_status s = KILN_ERR_NOMEM;
    for (n = 0; s != KILN_OK; n++) {
        ku_fail_after = n;
        ku_live = 0;
        s = kiln_module_save(m, path);
        ku_fail_after = -1;
        assert_int_equal(ku_live, 0);
        if (s != KILN_OK)
            assert_module_error(m, s, KILN_ERR_NOMEM, "kiln_module_save: out of memory");
        assert_int_equal(count_temp_files("oom.safetensors"), 0);
    }
    assert_true(n > 2);
    s = KILN_ERR_NOMEM;
    for (n = 0; s != KILN_OK; n++) {
        ku_fail_after = n;
        ku_live = 0;
        s = kiln_module_load(m, good);
        ku_fail_after = -1;
        assert_int_equal(ku_live, 0);
        if (s != KILN_OK) {
            assert_module_error(m, s, KILN_ERR_NOMEM, "kiln_module_load: out of memory");
            assert_unchanged(m, &before);
        }
    }
    assert_true(n > 10); /* the file buffer, the tensor table and cJSON's nodes */
    kiln_set_allocator(NULL);
    assert_int_equal(m->run, 9);
    int64_t nv;
    get_ok(m, "n", &nv, sizeof nv);
    assert_true(nv == 0x1111111111111111LL);
    /* what the sweep saved is the module as it was */
    load_ok(m, path);
    assert_unchanged(m, &before);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_dtype_across_targets),
        cmocka_unit_test(test_file_bytes),
        cmocka_unit_test(test_same_state_same_bytes),
        cmocka_unit_test(test_escaped_names_and_bound_params),
        cmocka_unit_test(test_training_resumes_bit_for_bit),
        cmocka_unit_test(test_loads_pytorch_file),
        cmocka_unit_test(test_load_errors_change_nothing),
        cmocka_unit_test(test_load_bad_sizes_and_io),
        cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_save_refuses_special_files),
        cmocka_unit_test(test_save_keeps_the_mode),
        cmocka_unit_test(test_save_removes_stale_temp_files),
        cmocka_unit_test(test_load_refuses_special_files),
        cmocka_unit_test(test_save_disk_full),
        cmocka_unit_test(test_killed_save_leaves_a_whole_checkpoint),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_nonstrict_load),
    };
    return ku_exit(cmocka_run_group_tests(tests, make_dir, ku_scratch_teardown));
}
