/* test_export.c - kiln_export and kiln_module_open: the files, the standalone
 * API against the JIT bit for bit, checkpoints both ways, and every error.
 *
 * --cuda: the CUDA export instead (KILN_TARGET_CUDA), on the GPU the
 * environment gives: ctest runs it on the fake GPU (tests/cuda_emu), so its
 * standalone runtime and kiln_module_open's CUDA path run in the CPU suite;
 * the "GPU" then compares with the CUDA JIT bit for bit (the same kernels on
 * the same device) and with the C target within f32 rounding. */
#include "ir/abi.h"
#include "runtime/cuda_driver.h"
#include "runtime/rt.h"
#include "testutil.h"

#include <dlfcn.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { B = 8, IN = 4, HID = 16, OUT = 3 };

/* A small classifier: train (Adam, cross-entropy) and predict. */
static kiln_graph *mlp_graph(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_graph_seed(g, 7);
    const int64_t xd[] = {B, IN}, yd[] = {B}, w1d[] = {HID, IN}, b1d[] = {HID}, w2d[] = {OUT, HID},
                  b2d[] = {OUT};
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, 2, xd);
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, 1, yd);
    kiln_tensor *w1 = kiln_param(g, "fc1.weight", KILN_F32, 2, w1d, kiln_init_kaiming_uniform());
    kiln_tensor *b1 = kiln_param(g, "fc1.bias", KILN_F32, 1, b1d, kiln_init_kaiming_uniform());
    kiln_tensor *w2 = kiln_param(g, "fc2.weight", KILN_F32, 2, w2d, kiln_init_kaiming_uniform());
    kiln_tensor *b2 = kiln_param(g, "fc2.bias", KILN_F32, 1, b2d, kiln_init_kaiming_uniform());
    kiln_tensor *logits = kiln_linear(g, kiln_relu(g, kiln_linear(g, x, w1, b1)), w2, b2);
    kiln_tensor *loss = kiln_cross_entropy(g, logits, y);
    assert_int_equal(kiln_train_step(g, "train", loss, kiln_adam(1e-2, 0.9, 0.999, 1e-8)), KILN_OK);
    const char *names[] = {"logits"};
    assert_int_equal(kiln_entry(g, "predict", 1, &logits, names), KILN_OK);
    return g;
}

static void batch(float *x, int64_t *y, int step)
{
    for (int i = 0; i < B * IN; i++)
        x[i] = (float)((i * 37 + step * 5) % 11) / 5.0f - 1.0f;
    for (int i = 0; i < B; i++)
        y[i] = (i + step) % OUT;
}

/* A fresh directory under the build tree. */
static void temp_dir(char *out, size_t cap)
{
    snprintf(out, cap, "%s/export-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(out));
}

/* The target the tests export for: KILN_TARGET_C, or with --cuda CUDA. */
static kiln_target export_target = KILN_TARGET_C;

static void export_for(kiln_graph *g, const char *dir, const char *name, kiln_target target)
{
    kiln_compile_opts o = {.name = name, .target = target};
    kiln_status s = kiln_export(g, &o, dir);
    if (s != KILN_OK)
        fprintf(stderr, "%s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
}

static void export_to(kiln_graph *g, const char *dir, const char *name)
{
    export_for(g, dir, name, export_target);
}

/* The MLP's graph, exported as name into a fresh directory (dir). */
static kiln_graph *mlp_exported(char *dir, size_t cap, const char *name)
{
    temp_dir(dir, cap);
    kiln_graph *g = mlp_graph();
    export_to(g, dir, name);
    return g;
}

static bool exists(const char *dir, const char *file)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    struct stat st;
    return stat(p, &st) == 0;
}

static void rm_rf(const char *dir)
{
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* The module's params (sorted by name in a checkpoint) as bytes. */
static char *save_bytes(kiln_module *m, const char *dir, size_t *n)
{
    char p[4200];
    snprintf(p, sizeof p, "%s/jit.safetensors", dir);
    assert_int_equal(kiln_module_save(m, p), KILN_OK);
    char *b = ku_read_file(p, n);
    assert_non_null(b);
    return b;
}

static void test_export_writes_the_files(void **state)
{
    (void)state;
    char dir[256];
    kiln_graph *g = mlp_exported(dir, sizeof dir, "mlp");
    const char *files[] = {"mlp.so", "mlp.h", "mlp.c", "mlp.kir", "mlp.params.bin"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        assert_true(exists(dir, files[i]));
    /* an export killed mid-build left its temporaries: the next one removes
     * them (their process is gone), and keeps a live builder's and the user's */
    char stale[400], live[400], mine[400];
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    waitpid(dead, NULL, 0);
    snprintf(stale, sizeof stale, "%s/mlp.so.tmp.%ld.0", dir, (long)dead);
    snprintf(live, sizeof live, "%s/mlp.so.tmp.%ld.0", dir, (long)getpid());
    snprintf(mine, sizeof mine, "%s/notes.tmp.%ld.0", dir, (long)dead);
    const char *planted[] = {stale, live, mine};
    struct timeval old[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(planted[i], "w");
        assert_non_null(f);
        fclose(f);
        assert_int_equal(utimes(planted[i], old), 0);
    }
    export_to(g, dir, "mlp");
    assert_int_not_equal(access(stale, F_OK), 0);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(mine, F_OK), 0); /* not an export's name */
    unlink(live);
    unlink(mine);
    /* nothing else: no temporaries or diagnostics left behind */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 5", dir);
    assert_int_equal(system(cmd), 0);
    /* the header declares the typed API */
    char p[300];
    snprintf(p, sizeof p, "%s/mlp.h", dir);
    char *h = ku_read_file(p, NULL);
    assert_non_null(h);
    assert_non_null(strstr(h, "int mlp_train(mlp_state *s, const float *x, const int64_t *y, "
                              "float *loss);"));
    assert_non_null(strstr(h, "int mlp_predict(mlp_state *s, const float *x, float *logits);"));
    assert_non_null(strstr(h, "mlp_state *mlp_create(void);"));
    assert_non_null(strstr(h, "int mlp_save(mlp_state *s, const char *path);"));
    free(h);
    /* the graph is untouched: it still compiles and exports again; the
     * export was built as the JIT builds it: the same compiler command, the
     * loops' vector width included */
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    snprintf(p, sizeof p, "%s/mlp.c", dir);
    char *c = ku_read_file(p, NULL), flag[64];
    assert_non_null(c);
    snprintf(flag, sizeof flag, " -mprefer-vector-width=%d ", m->vector_width);
    assert_non_null(strstr(c, " -march=native "));
    if (m->vector_width > 0)
        assert_non_null(strstr(c, flag));
    else
        assert_null(strstr(c, "-mprefer-vector-width"));
    free(c);
    kiln_module_free(m);
    export_to(g, dir, "mlp");
    kiln_graph_free(g);
    rm_rf(dir);
}

/* kiln_module_open: the same params and the same numbers as kiln_compile (a
 * CUDA export: its image on the GPU, through the device executor). */
static void test_open_matches_the_jit_bit_for_bit(void **state)
{
    (void)state;
    char dir[256], so[300];
    kiln_graph *g = mlp_exported(dir, sizeof dir, "net");
    snprintf(so, sizeof so, "%s/net.so", dir);
    kiln_module *o = NULL;
    kiln_status s = kiln_module_open(so, &o);
    if (s != KILN_OK)
        fprintf(stderr, "%s\n", kiln_module_error(NULL));
    assert_int_equal(s, KILN_OK);
    assert_string_equal(kiln_module_error(NULL), "");
    kiln_module *j = ku_compile_for(g, export_target);
    assert_string_equal(o->exec->name, j->exec->name);
    assert_string_equal(kiln_module_source(o), kiln_module_source(j));
    size_t n1 = 0, n2 = 0;
    char *a = save_bytes(o, dir, &n1), *b = save_bytes(j, dir, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1); /* initial params, bit for bit */
    free(a);
    free(b);
    float x[B * IN], lo, lj, po[B * OUT], pj[B * OUT];
    int64_t y[B];
    for (int step = 0; step < 4; step++) {
        batch(x, y, step);
        kiln_module *ms[] = {o, j};
        for (int k = 0; k < 2; k++) {
            assert_int_equal(kiln_module_set(ms[k], "x", x, sizeof x), KILN_OK);
            assert_int_equal(kiln_module_set(ms[k], "y", y, sizeof y), KILN_OK);
            assert_int_equal(kiln_module_run(ms[k], "train"), KILN_OK);
        }
        assert_int_equal(kiln_module_get(o, "train.loss", &lo, sizeof lo), KILN_OK);
        assert_int_equal(kiln_module_get(j, "train.loss", &lj, sizeof lj), KILN_OK);
        assert_memory_equal(&lo, &lj, sizeof lo);
    }
    assert_int_equal(kiln_module_run(o, "predict"), KILN_OK);
    assert_int_equal(kiln_module_run(j, "predict"), KILN_OK);
    assert_int_equal(kiln_module_get(o, "logits", po, sizeof po), KILN_OK);
    assert_int_equal(kiln_module_get(j, "logits", pj, sizeof pj), KILN_OK);
    assert_memory_equal(po, pj, sizeof po);
    /* an opened module has the JIT's profile */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_int_equal(kiln_module_profile(o, f), KILN_OK);
    fclose(f);
    assert_non_null(strstr(text, "train"));
    assert_non_null(strstr(text, "mean us"));
    free(text);
    kiln_module_free(o);
    kiln_module_free(j);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* The standalone API, loaded the way a program without libkiln sees it. */
typedef struct {
    void *h;
    void *(*create)(void);
    void (*free_)(void *);
    const char *(*error)(const void *);
    int (*train)(void *, const float *, const int64_t *, float *);
    int (*predict)(void *, const float *, float *);
    int (*save)(void *, const char *);
    int (*load)(void *, const char *);
    void *(*tensor)(void *, const char *, size_t *);
} api;

static void *sym(void *h, const char *name)
{
    void *p = dlsym(h, name);
    assert_non_null(p);
    return p;
}

static api open_api_at(const char *so)
{
    api a;
    a.h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(a.h);
    *(void **)&a.create = sym(a.h, "mlp_create");
    *(void **)&a.free_ = sym(a.h, "mlp_free");
    *(void **)&a.error = sym(a.h, "mlp_error");
    *(void **)&a.train = sym(a.h, "mlp_train");
    *(void **)&a.predict = sym(a.h, "mlp_predict");
    *(void **)&a.save = sym(a.h, "mlp_save");
    *(void **)&a.load = sym(a.h, "mlp_load");
    *(void **)&a.tensor = sym(a.h, "mlp_tensor");
    return a;
}

static api open_api(const char *dir)
{
    char so[300];
    snprintf(so, sizeof so, "%s/mlp.so", dir);
    return open_api_at(so);
}

static void test_standalone_matches_the_jit(void **state)
{
    (void)state;
    char dir[256], path[300];
    kiln_graph *g = mlp_exported(dir, sizeof dir, "mlp");
    api a = open_api(dir);
    void *s = a.create();
    assert_non_null(s);
    assert_string_equal(a.error(s), "");
    kiln_module *j = ku_compile_for(g, KILN_TARGET_C);
    float x[B * IN], ls, lj, ps[B * OUT], pj[B * OUT];
    int64_t y[B];
    for (int step = 0; step < 5; step++) {
        batch(x, y, step);
        assert_int_equal(a.train(s, x, y, &ls), 0);
        assert_int_equal(kiln_module_set(j, "x", x, sizeof x), KILN_OK);
        assert_int_equal(kiln_module_set(j, "y", y, sizeof y), KILN_OK);
        assert_int_equal(kiln_module_run(j, "train"), KILN_OK);
        assert_int_equal(kiln_module_get(j, "train.loss", &lj, sizeof lj), KILN_OK);
        assert_memory_equal(&ls, &lj, sizeof ls);
    }
    assert_int_equal(a.train(s, x, y, NULL), 0); /* outputs may be NULL */
    assert_int_equal(kiln_module_run(j, "train"), KILN_OK);
    assert_int_equal(a.predict(s, x, ps), 0);
    assert_int_equal(kiln_module_run(j, "predict"), KILN_OK);
    assert_int_equal(kiln_module_get(j, "logits", pj, sizeof pj), KILN_OK);
    assert_memory_equal(ps, pj, sizeof ps);
    /* tensors by name: params and outputs, not inputs */
    size_t nb = 0;
    double *lr = a.tensor(s, "train.lr", &nb);
    assert_non_null(lr);
    assert_int_equal(nb, sizeof(double));
    assert_true(*lr == 1e-2);
    float *logits = a.tensor(s, "logits", &nb);
    assert_int_equal(nb, sizeof pj);
    assert_memory_equal(logits, pj, sizeof pj);
    assert_null(a.tensor(s, "x", &nb));
    assert_null(a.tensor(s, "nope", &nb));
    assert_null(a.tensor(s, NULL, &nb));
    /* a checkpoint from the standalone state is the JIT's, byte for byte */
    snprintf(path, sizeof path, "%s/sa.safetensors", dir);
    assert_int_equal(a.save(s, path), 0);
    size_t n1 = 0, n2 = 0;
    char *sa = ku_read_file(path, &n1), *jit = save_bytes(j, dir, &n2);
    assert_non_null(sa);
    assert_int_equal(n1, n2);
    assert_memory_equal(sa, jit, n1);
    free(sa);
    free(jit);
    /* and loads both ways */
    void *s2 = a.create();
    snprintf(path, sizeof path, "%s/jit.safetensors", dir);
    assert_int_equal(a.load(s2, path), 0);
    assert_int_equal(a.predict(s2, x, ps), 0);
    assert_memory_equal(ps, pj, sizeof ps);
    kiln_module *j2 = ku_compile_for(g, KILN_TARGET_C);
    snprintf(path, sizeof path, "%s/sa.safetensors", dir);
    assert_int_equal(kiln_module_load(j2, path), KILN_OK);
    assert_int_equal(kiln_module_set(j2, "x", x, sizeof x), KILN_OK);
    assert_int_equal(kiln_module_run(j2, "predict"), KILN_OK);
    assert_int_equal(kiln_module_get(j2, "logits", pj, sizeof pj), KILN_OK);
    assert_memory_equal(ps, pj, sizeof ps);
    /* the run counter travels too: the next train step is the same on both */
    assert_int_equal(a.train(s2, x, y, &ls), 0);
    assert_int_equal(kiln_module_set(j2, "y", y, sizeof y), KILN_OK);
    assert_int_equal(kiln_module_run(j2, "train"), KILN_OK);
    assert_int_equal(kiln_module_get(j2, "train.loss", &lj, sizeof lj), KILN_OK);
    assert_memory_equal(&ls, &lj, sizeof ls);
    a.free_(s);
    a.free_(s2);
    a.free_(NULL);
    kiln_module_free(j);
    kiln_module_free(j2);
    dlclose(a.h);
    kiln_graph_free(g);
    rm_rf(dir);
}

static void test_standalone_run_errors(void **state)
{
    (void)state;
    char dir[256];
    kiln_graph *g = mlp_exported(dir, sizeof dir, "mlp");
    api a = open_api(dir);
    void *s = a.create();
    float x[B * IN], l;
    int64_t y[B];
    batch(x, y, 0);
    size_t nb = 0;
    float before[HID * IN];
    memcpy(before, a.tensor(s, "fc1.weight", &nb), sizeof before);
    y[3] = OUT; /* a label out of range */
    assert_int_equal(a.train(s, x, y, &l), -1);
    assert_string_equal(a.error(s),
                        "mlp_train: index 3 is out of bounds for dimension 0 with size 3");
    assert_memory_equal(a.tensor(s, "fc1.weight", NULL), before, sizeof before);
    assert_int_equal(a.train(s, NULL, y, &l), -1);
    assert_string_equal(a.error(s), "mlp_train: input 'x' is NULL");
    assert_int_equal(a.train(NULL, x, y, &l), -1);
    assert_string_equal(a.error(NULL), "the state is NULL");
    assert_int_equal(a.save(s, NULL), -1);
    assert_string_equal(a.error(s), "mlp_save: the path is NULL");
    assert_int_equal(a.load(s, NULL), -1);
    assert_string_equal(a.error(s), "mlp_load: the path is NULL");
    assert_int_equal(a.save(s, "/nonexistent-dir/x.safetensors"), -1);
    assert_non_null(strstr(a.error(s), "mlp_save: cannot write '/nonexistent-dir/x.safetensors'"));
    assert_int_equal(a.load(s, "/nonexistent-dir/x.safetensors"), -1);
    assert_non_null(strstr(a.error(s), "mlp_load: cannot read '/nonexistent-dir/x.safetensors': "
                                       "No such file or directory"));
    a.free_(s);
    dlclose(a.h);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* Writes a safetensors file with header text h and n bytes of data. */
static void write_st(const char *path, const char *h, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t len = strlen(h);
    unsigned char l8[8];
    for (int i = 0; i < 8; i++)
        l8[i] = (unsigned char)(len >> (8 * i));
    fwrite(l8, 1, 8, f);
    fwrite(h, 1, len, f);
    for (size_t i = 0; i < n; i++)
        fputc(0x3f, f);
    fclose(f);
}

static void test_standalone_load_validates_everything(void **state)
{
    (void)state;
    char dir[256], path[300];
    kiln_graph *g = mlp_exported(dir, sizeof dir, "mlp");
    api a = open_api(dir);
    void *s = a.create();
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    size_t nb = 0;
    float before[OUT];
    memcpy(before, a.tensor(s, "fc2.bias", &nb), sizeof before);
    static const struct {
        const char *header;
        size_t data;
        const char *why;
    } cases[] = {
        {"", 0, "the header is not a JSON object"},
        {"[]", 0, "the header is not a JSON object"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}", 12,
         "expected '}'"},
        {"{\"fc2.bias\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]}}", 6,
         "tensor 'fc2.bias' is F16 in the file; the model's is F32"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16,
         "tensor 'fc2.bias' has another shape in the file than in the model"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         "data_offsets [0, 8] do not hold its 12 bytes"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[4,16]}}", 16,
         "starts at data byte 4, expected 0"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", 20,
         "the data section is 20 bytes; the tensors cover 12"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
         "\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[12,24]}}",
         24, "tensor 'fc2.bias' appears twice"},
        {"{\"x\":{\"dtype\":\"F32\",\"shape\":[8,4],\"data_offsets\":[0,128]}}", 128,
         "tensor 'x' is not a param of this model"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3]}}", 0,
         "\"dtype\", \"shape\" and \"data_offsets\" are required"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12],\"x\":1}}", 12,
         "an unexpected or repeated key"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3.5],\"data_offsets\":[0,12]}}", 12,
         "expected a whole number"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[-3],\"data_offsets\":[0,12]}}", 12,
         "expected a non-negative integer"},
        {"{\"__metadata__\":{\"kiln.run\":\"-1\"}}", 0, "\"kiln.run\" is \"-1\", not a run count"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" appears twice"},
        {"{\"fc2\\u0000bias\":{}}", 0, "a \\u escape outside ASCII (or NUL)"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}} x", 12,
         "text after the header object"},
        {"{\"fc2.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]", 12,
         "expected '}'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st(path, cases[i].header, cases[i].data);
        assert_int_equal(a.load(s, path), -1);
        if (!strstr(a.error(s), cases[i].why))
            fail_msg("case %zu: '%s' lacks '%s'", i, a.error(s), cases[i].why);
        assert_memory_equal(a.tensor(s, "fc2.bias", NULL), before, sizeof before);
    }
    /* a header length past the end of the file, and a file too short */
    FILE *f = fopen(path, "wb");
    fwrite("\xff\x00\x00\x00\x00\x00\x00\x00{}", 1, 10, f);
    fclose(f);
    assert_int_equal(a.load(s, path), -1);
    assert_non_null(strstr(a.error(s), "the header length 255 exceeds the file (10 bytes)"));
    f = fopen(path, "wb");
    fwrite("abc", 1, 3, f);
    fclose(f);
    assert_int_equal(a.load(s, path), -1);
    assert_non_null(strstr(a.error(s), "the file is 3 bytes; a safetensors file has at least 8"));
    /* a valid partial file loads what it has (escapes decoded), keeps the rest */
    write_st(path,
             "{\"__metadata__\":{\"format\":\"pt\"},\"fc2\\u002ebias\":{\"dtype\":\"F32\","
             "\"shape\":[3],\"data_offsets\":[0,12]}}",
             12);
    assert_int_equal(a.load(s, path), 0);
    const unsigned char *got = a.tensor(s, "fc2.bias", NULL);
    for (int i = 0; i < 12; i++)
        assert_int_equal(got[i], 0x3f);
    a.free_(s);
    dlclose(a.h);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* Replaces the first occurrence of from by to (same length) in a file copy. */
static void patch_copy(const char *src, const char *dst, const char *from, const char *to)
{
    size_t n = 0;
    char *b = ku_read_file(src, &n);
    assert_non_null(b);
    size_t k = strlen(from);
    assert_int_equal(k, strlen(to));
    char *at = NULL;
    for (size_t i = 0; i + k <= n && !at; i++)
        if (memcmp(b + i, from, k) == 0)
            at = b + i;
    assert_non_null(at);
    memcpy(at, to, k);
    FILE *f = fopen(dst, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
    free(b);
}

static void assert_open_fails(const char *path, kiln_status want, const char *needle)
{
    kiln_module *m = (kiln_module *)&m; /* must come back NULL */
    assert_int_equal(kiln_module_open(path, &m), want);
    assert_null(m);
    if (!strstr(kiln_module_error(NULL), needle))
        fail_msg("'%s' lacks '%s'", kiln_module_error(NULL), needle);
}

static void test_open_refuses_what_is_not_a_kiln_export(void **state)
{
    (void)state;
    char dir[256], so[300], p[2048], cmd0[8192];
    kiln_graph *g = mlp_exported(dir, sizeof dir, "mlp");
    snprintf(so, sizeof so, "%s/mlp.so", dir);

    kiln_module *m = NULL;
    assert_int_equal(kiln_module_open(so, NULL), KILN_ERR_INVALID);
    assert_string_equal(kiln_module_error(NULL), "kiln_module_open: out is NULL");
    assert_int_equal(kiln_module_open(NULL, &m), KILN_ERR_INVALID);
    assert_string_equal(kiln_module_error(NULL), "kiln_module_open: the path is NULL");
    snprintf(p, sizeof p, "%s/missing.so", dir);
    assert_open_fails(p, KILN_ERR_NOT_FOUND, "No such file or directory");
    snprintf(p, sizeof p, "%s/mlp.h", dir);
    assert_open_fails(p, KILN_ERR_LOAD,
                      "it is not a shared object (no ELF header); it was not "
                      "loaded");
    assert_open_fails(dir, KILN_ERR_LOAD, "it is not a regular file");
    /* a shared object that is not Kiln's is refused before dlopen runs its
     * constructors: this one would create a file */
    snprintf(p, sizeof p,
             "printf '__attribute__((constructor)) static void c(void) { "
             "__builtin_fclose(__builtin_fopen(\"%s/ran\", \"w\")); }\\n' > '%s/ctor.c' && "
             "cc -shared -fPIC -o '%s/ctor.so' '%s/ctor.c'",
             dir, dir, dir, dir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/ctor.so", dir);
    assert_open_fails(p, KILN_ERR_LOAD, "it is not a Kiln export (it has no .kiln_export section)");
    snprintf(p, sizeof p, "%s/ran", dir);
    assert_int_not_equal(access(p, F_OK), 0);
    assert_open_fails("/lib/x86_64-linux-gnu/libm.so.6", KILN_ERR_LOAD,
                      "'/lib/x86_64-linux-gnu/libm.so.6': it is not a Kiln export (it has no "
                      ".kiln_export section); it was not loaded");
    /* an ELF shared object for another machine (e_machine patched to ARM) */
    snprintf(p, sizeof p, "%s/arm.so", dir);
    snprintf(cmd0, sizeof cmd0,
             "cp '%s' '%s' && printf '\\050' | dd of='%s' bs=1 seek=18 conv=notrunc 2>/dev/null",
             so, p, p);
    assert_int_equal(system(cmd0), 0);
    assert_open_fails(p, KILN_ERR_LOAD, "it is not a shared object for this machine");
    /* a truncated export: refused by its headers, never mapped (SIGBUS) */
    char cmd[4096];
    snprintf(p, sizeof p, "%s/cut.so", dir);
    snprintf(cmd, sizeof cmd, "head -c $(($(stat -c %%s '%s') / 2)) '%s' > '%s'", so, so, p);
    assert_int_equal(system(cmd), 0);
    assert_open_fails(p, KILN_ERR_LOAD, "it is truncated or damaged");
    snprintf(cmd, sizeof cmd, "head -c 100 '%s' > '%s'", so, p);
    assert_int_equal(system(cmd), 0);
    assert_open_fails(p, KILN_ERR_LOAD, "it is truncated or damaged");
    /* the section but no metadata: refused after loading, by its symbols */
    snprintf(p, sizeof p, "%s/nometa.so", dir);
    patch_copy(so, p, "kiln_export_meta", "kiln_export_metx");
    assert_open_fails(p, KILN_ERR_LOAD,
                      "is Kiln code but not an export (it has no "
                      "kiln_export_meta)");
    /* another ABI version */
    snprintf(p, sizeof p, "%s/old.so", dir);
    patch_copy(so, p, KILN_ABI_TAG, "kiln-abi-1");
    assert_open_fails(p, KILN_ERR_LOAD,
                      "was built for kiln-abi-1; this Kiln runs " KILN_ABI_TAG " code");
    /* a graph whose code is not what this Kiln generates (another version) */
    snprintf(p, sizeof p, "%s/other.so", dir);
    patch_copy(so, p, "= relu ", "= tanh ");
    assert_open_fails(p, KILN_ERR_LOAD, "was exported by another version of Kiln");
    /* an embedded graph that does not parse */
    snprintf(p, sizeof p, "%s/garbled.so", dir);
    patch_copy(so, p, "= relu ", "= relx ");
    assert_open_fails(p, KILN_ERR_FORMAT, "the embedded graph does not parse");
    /* a relative name is a file in this directory, not a library search; a
     * relative export directory is one under this directory */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    assert_int_equal(kiln_module_open("mlp.so", &m), KILN_OK);
    kiln_module_free(m);
    export_to(g, "rel/sub", "mlp");
    assert_int_equal(kiln_module_open("rel/sub/mlp.so", &m), KILN_OK);
    kiln_module_free(m);
    assert_int_equal(chdir(cwd), 0);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* A compile-cache entry is Kiln code but no export. */
static void test_open_refuses_a_cache_entry(void **state)
{
    (void)state;
    char dir[256], cmd[700];
    temp_dir(dir, sizeof dir);
    kiln_graph *g = mlp_graph();
    kiln_compile_opts o = {.cache_dir = dir};
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    kiln_module_free(m);
    snprintf(cmd, sizeof cmd, "cp \"$(ls %s/*.so | head -1)\" %s/entry.so", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/entry.so", dir);
    assert_open_fails(cmd, KILN_ERR_LOAD,
                      "it is not a Kiln export (it has no .kiln_export section)");
    kiln_graph_free(g);
    rm_rf(dir);
}

static void test_export_errors(void **state)
{
    (void)state;
    char dir[256], p[300];
    temp_dir(dir, sizeof dir);
    kiln_graph *g = mlp_graph();
    assert_int_equal(kiln_export(NULL, NULL, dir), KILN_ERR_INVALID);
    assert_int_equal(kiln_export(g, NULL, NULL), KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID, "kiln_export: the directory is NULL");
    char long_name[66];
    memset(long_name, 'a', 65);
    long_name[65] = 0; /* one past the limit */
    const char *bad[] = {"1model", "my-model", "", long_name};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kiln_compile_opts o = {.name = bad[i]};
        assert_int_equal(kiln_export(g, &o, dir), KILN_ERR_INVALID);
        assert_graph_error(g, KILN_ERR_INVALID, "is not a C identifier");
    }
    kiln_compile_opts cuda = {.target = KILN_TARGET_CUDA};
    assert_int_equal(kiln_export(g, &cuda, dir), KILN_ERR_DEVICE); /* main: no NVRTC */
    assert_graph_error(g, KILN_ERR_DEVICE,
                       "kiln_export: exporting for the CUDA target needs NVRTC: NVRTC cannot be "
                       "loaded from $KILN_NVRTC (" KU_NO_LIBCUDA ": cannot open");
    kiln_compile_opts interp = {.target = KILN_TARGET_INTERP};
    assert_int_equal(kiln_export(g, &interp, dir), KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID,
                       "only KILN_TARGET_C and KILN_TARGET_CUDA code can be exported");
    /* a directory that cannot be made */
    snprintf(p, sizeof p, "%s/file", dir);
    FILE *f = fopen(p, "w");
    fclose(f);
    snprintf(p, sizeof p, "%s/file/sub", dir);
    assert_int_equal(kiln_export(g, NULL, p), KILN_ERR_IO);
    assert_graph_error(g, KILN_ERR_IO, "cannot create the directory");
    /* the compiler fails */
    setenv("KILN_CC", "false", 1);
    assert_int_equal(kiln_export(g, NULL, dir), KILN_ERR_COMPILE);
    assert_graph_error(g, KILN_ERR_COMPILE, "failed (exit 1) on");
    unsetenv("KILN_CC");
    assert_false(exists(dir, "model.so"));
    kiln_graph_free(g);

    /* entry names that do not make distinct C functions */
    g = ku_graph_new();
    const int64_t d[] = {2};
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, 1, d);
    kiln_tensor *y = kiln_exp(g, x);
    const char *n1[] = {"a"}, *n2[] = {"b"};
    assert_int_equal(kiln_entry(g, "save", 1, &y, n1), KILN_OK);
    assert_int_equal(kiln_export(g, NULL, dir), KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID, "entry 'save' would be model_save");
    kiln_graph_free(g);
    g = ku_graph_new();
    x = kiln_input(g, "x", KILN_F32, 1, d);
    y = kiln_exp(g, x);
    assert_int_equal(kiln_entry(g, "f.g", 1, &y, n1), KILN_OK);
    assert_int_equal(kiln_entry(g, "f_g", 1, &y, n2), KILN_OK);
    assert_int_equal(kiln_export(g, NULL, dir), KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID, "entries 'f.g' and 'f_g' both become the C function");
    kiln_graph_free(g);
    rm_rf(dir);
}

/* Names that are not C identifiers or are keywords still make a valid API. */
static void test_export_argument_names(void **state)
{
    (void)state;
    char dir[256], p[300];
    temp_dir(dir, sizeof dir);
    kiln_graph *g = ku_graph_new();
    const int64_t d[] = {3};
    kiln_tensor *a = kiln_input(g, "int", KILN_F32, 1, d);
    kiln_tensor *b = kiln_input(g, "s", KILN_F32, 1, d);
    kiln_tensor *c = kiln_input(g, "my input", KILN_F32, 1, d);
    kiln_tensor *outs[] = {kiln_add(g, kiln_add(g, a, b), c), kiln_mul(g, a, b)};
    const char *names[] = {"run.0", "int_"};
    assert_int_equal(kiln_entry(g, "run", 2, outs, names), KILN_OK);
    export_to(g, dir, "m");
    snprintf(p, sizeof p, "%s/m.h", dir);
    char *h = ku_read_file(p, NULL);
    assert_non_null(h);
    assert_non_null(strstr(h, "int m_run(m_state *s, const float *int_, const float *s_, const "
                              "float *my_input, float *out0, float *int__);"));
    free(h);
    snprintf(p, sizeof p, "%s/m.so", dir);
    void *so = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(so);
    void *(*create)(void);
    void (*destroy)(void *);
    int (*run)(void *, const float *, const float *, const float *, float *, float *);
    *(void **)&create = sym(so, "m_create");
    *(void **)&destroy = sym(so, "m_free");
    *(void **)&run = sym(so, "m_run");
    void *s = create();
    const float x1[] = {1, 2, 3}, x2[] = {10, 20, 30}, x3[] = {100, 200, 300};
    float sum[3], prod[3];
    assert_int_equal(run(s, x1, x2, x3, sum, prod), 0);
    const float want_sum[] = {111, 222, 333}, want_prod[] = {10, 40, 90};
    assert_memory_equal(sum, want_sum, sizeof sum);
    assert_memory_equal(prod, want_prod, sizeof prod);
    destroy(s);
    dlclose(so);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* The C text of src without its comments (string literals kept as they are). */
static char *strip_comments(const char *src)
{
    char *out = malloc(strlen(src) + 1), *o = out;
    assert_non_null(out);
    for (const char *p = src; *p;) {
        if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            p = end ? end + 2 : p + strlen(p);
            *o++ = ' ';
        } else if (*p == '"') {
            *o++ = *p++;
            while (*p && *p != '"') {
                if (*p == '\\' && p[1])
                    *o++ = *p++;
                *o++ = *p++;
            }
            if (*p)
                *o++ = *p++;
        } else {
            *o++ = *p++;
        }
    }
    *o = 0;
    return out;
}

/* Names are untrusted: quotes, backslashes, trigraphs, comment ends, newlines
 * and bytes >= 0x80 reach the exported .c (a string literal) and .h (comments)
 * as text that means exactly the name and nothing else. */
static void test_export_hostile_names(void **state)
{
    (void)state;
    char dir[256], p[2048];
    temp_dir(dir, sizeof dir);
    const char *wild = "a\"); system(\"touch pwned\"); (\" \\ ?\?/ */ int evil; /*\n\xc3\xa9";
    kiln_graph *g = ku_graph_new();
    const int64_t d[] = {3};
    kiln_tensor *x = kiln_input(g, wild, KILN_F32, 1, d);
    kiln_tensor *w = kiln_param(g, "w*/ int evil2; /*", KILN_F32, 1, d, kiln_init_const(2));
    kiln_tensor *y = kiln_mul(g, x, w);
    const char *names[] = {"y\"*/"};
    assert_int_equal(kiln_entry(g, "run*/ int evil3; /*", 1, &y, names), KILN_OK);
    export_to(g, dir, "m");
    /* the header: every comment it opens closes once, at its own end */
    snprintf(p, sizeof p, "%s/m.h", dir);
    char *h = ku_read_file(p, NULL);
    assert_non_null(h);
    char *code = strip_comments(h);
    assert_null(strstr(code, "int evil"));
    assert_non_null(strstr(code, "int m_run___int_evil3____(m_state *s"));
    free(code);
    free(h);
    /* a strict C11 program that includes it compiles without a warning */
    snprintf(p, sizeof p,
             "printf '#include \"m.h\"\\nint main(void) { m_free(m_create()); return 0; }\\n' > "
             "'%s/use.c' && cd '%s' && cc -std=c11 -pedantic -Wall -Wextra -Wtrigraphs -Werror "
             "-fsyntax-only -I . use.c",
             dir, dir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/pwned", dir);
    assert_int_not_equal(access(p, F_OK), 0);
    /* the .so finds the tensor by the very bytes of its name */
    snprintf(p, sizeof p, "%s/m.so", dir);
    void *so = dlopen(p, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(so);
    void *(*create)(void);
    void (*destroy)(void *);
    void *(*tensor)(void *, const char *, size_t *);
    *(void **)&create = sym(so, "m_create");
    *(void **)&destroy = sym(so, "m_free");
    *(void **)&tensor = sym(so, "m_tensor");
    void *st = create();
    size_t nbytes = 0;
    float *wv = tensor(st, "w*/ int evil2; /*", &nbytes);
    assert_non_null(wv);
    assert_int_equal(nbytes, 3 * sizeof(float));
    assert_true(wv[0] == 2.0f && wv[2] == 2.0f);
    assert_non_null(tensor(st, "y\"*/", NULL));
    destroy(st);
    dlclose(so);
    /* kiln_module_open reads the names back as they were */
    kiln_module *m = NULL;
    assert_int_equal(kiln_module_open(p, &m), KILN_OK);
    const float xv[] = {1, 2, 3};
    assert_int_equal(kiln_module_set(m, wild, xv, sizeof xv), KILN_OK);
    assert_int_equal(kiln_module_run(m, "run*/ int evil3; /*"), KILN_OK);
    float yv[3];
    assert_int_equal(kiln_module_get(m, "y\"*/", yv, sizeof yv), KILN_OK);
    assert_true(yv[0] == 2.0f && yv[1] == 4.0f && yv[2] == 6.0f);
    kiln_module_free(m);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* The export's name is the prefix of every symbol it defines: a C word or the
 * export's own prefix is refused; argument names that are macros or the
 * API's own locals are renamed. */
static void test_export_reserved_names(void **state)
{
    (void)state;
    char dir[256], p[300];
    temp_dir(dir, sizeof dir);
    kiln_graph *g = ku_graph_new();
    const int64_t d[] = {2};
    kiln_tensor *ins[] = {
        kiln_input(g, "in", KILN_F32, 1, d), kiln_input(g, "NULL", KILN_F32, 1, d),
        kiln_input(g, "errno", KILN_F32, 1, d), kiln_input(g, "kso_state", KILN_F32, 1, d)};
    kiln_tensor *y = kiln_add(g, kiln_add(g, ins[0], ins[1]), kiln_add(g, ins[2], ins[3]));
    const char *names[] = {"out"};
    assert_int_equal(kiln_entry(g, "f", 1, &y, names), KILN_OK);
    const char *bad[] = {"NULL", "int", "errno", "kiln", "kso", "kiln_model", "EOF"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        kiln_compile_opts o = {.name = bad[i]};
        assert_int_equal(kiln_export(g, &o, dir), KILN_ERR_INVALID);
        assert_graph_error(g, KILN_ERR_INVALID,
                           "is a C keyword or macro, or the export's own prefix");
    }
    export_to(g, dir, "m");
    snprintf(p, sizeof p, "%s/m.h", dir);
    char *h = ku_read_file(p, NULL);
    assert_non_null(h);
    assert_non_null(strstr(h, "int m_f(m_state *s, const float *in_, const float *NULL_, const "
                              "float *errno_, const float *arg_kso_state, float *out_);"));
    free(h);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* A full disk during an export: KILN_ERR_IO naming the file and the reason,
 * no temporary file left, the .so exported before still opens, and the graph
 * stays usable. Needs a small tmpfs (root, in a private mount namespace). */
static void test_export_disk_full(void **state)
{
    (void)state;
    char dir[256], full[300], so[400];
    temp_dir(dir, sizeof dir);
    snprintf(full, sizeof full, "%s/full", dir);
    assert_int_equal(mkdir(full, 0755), 0);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", full, "tmpfs", 0, "size=256k") != 0) {
        rm_rf(dir);
        ku_skip("cannot mount a small tmpfs (not root, or no CAP_SYS_ADMIN)");
    }
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(4), kiln_init_const(2));
    kiln_tensor *y = kiln_mul(g, x, w);
    assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *[]){"y"}), KILN_OK);
    export_to(g, full, "m");
    /* the same name again, with 512 KB of params: more than the disk has */
    kiln_graph *big = ku_graph_new();
    kiln_tensor *bx = kiln_input(big, "x", KILN_F32, KILN_SHAPE(131072));
    kiln_tensor *bw = kiln_param(big, "w", KILN_F32, KILN_SHAPE(131072), kiln_init_const(2));
    kiln_tensor *by = kiln_mul(big, bx, bw);
    assert_int_equal(kiln_entry(big, "f", 1, &by, (const char *[]){"y"}), KILN_OK);
    kiln_compile_opts o = {.name = "m"};
    assert_int_equal(kiln_export(big, &o, full), KILN_ERR_IO);
    assert_graph_error(big, KILN_ERR_IO, "kiln_export: cannot write '");
    assert_graph_error(big, KILN_ERR_IO, "No space left on device");
    char cmd[800];
    snprintf(cmd, sizeof cmd,
             "test -z \"$(ls '%s' | grep -v -e '^m\\.\\(so\\|h\\|c\\|kir\\|params\\.bin\\)$')\"",
             full);
    assert_int_equal(system(cmd), 0); /* no temporaries */
    snprintf(so, sizeof so, "%s/m.so", full);
    kiln_module *m = NULL;
    assert_int_equal(kiln_module_open(so, &m), KILN_OK);
    float xv[4] = {1, 2, 3, 4}, yv[4];
    assert_int_equal(kiln_module_set(m, "x", xv, sizeof xv), KILN_OK);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "y", yv, sizeof yv), KILN_OK);
    assert_true(yv[0] == 2 && yv[3] == 8);
    kiln_module_free(m);
    /* the graph that failed still compiles */
    kiln_module_free(ku_compile_for(big, KILN_TARGET_INTERP));
    assert_int_equal(umount(full), 0);
    kiln_graph_free(big);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* ---- out of memory ------------------------------------------------------------------ */

/* Every allocation of kiln_export and kiln_module_open may fail: each failure
 * is KILN_ERR_NOMEM with a message and frees what it took; the graph stays
 * usable. Allocation n for every n up to 400, then every 53rd (the pipeline
 * makes thousands; each failure point costs a pipeline run). */
static void test_out_of_memory(void **state)
{
    (void)state;
    char dir[256], so[300];
    temp_dir(dir, sizeof dir);
    kiln_graph *g = mlp_graph();
    kiln_compile_opts o = {.name = "mlp"};
    kiln_set_allocator(&ku_counting_allocator);
    kiln_status s = KILN_ERR_NOMEM;
    int n, tried = 0;
    for (n = 0; s != KILN_OK && n < 1000000; n += n < 400 ? 1 : 53, tried++) {
        ku_fail_after = n;
        ku_live = 0;
        s = kiln_export(g, &o, dir);
        ku_fail_after = -1;
        if (s != KILN_OK) {
            assert_graph_error(g, KILN_ERR_NOMEM, "out of memory");
            assert_int_equal(ku_live, 0);
        }
    }
    assert_int_equal(s, KILN_OK);
    assert_true(tried > 100);
    snprintf(so, sizeof so, "%s/mlp.so", dir);
    s = KILN_ERR_NOMEM;
    for (n = 0, tried = 0; s != KILN_OK && n < 1000000; n += n < 400 ? 1 : 53, tried++) {
        kiln_module *m = (kiln_module *)&m;
        ku_fail_after = n;
        ku_live = 0;
        s = kiln_module_open(so, &m);
        ku_fail_after = -1;
        if (s != KILN_OK) {
            assert_null(m);
            assert_int_equal(s, KILN_ERR_NOMEM);
            assert_non_null(strstr(kiln_module_error(NULL), "out of memory"));
            assert_int_equal(ku_live, 0);
        } else {
            kiln_module_free(m);
        }
    }
    assert_int_equal(s, KILN_OK);
    assert_true(tried > 100);
    kiln_set_allocator(NULL);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* ---- the CUDA export (--cuda) ---------------------------------------------------- */

/* Text from the first "#ifndef" on: a header's declarations. */
static const char *declarations(const char *h)
{
    const char *d = strstr(h, "#ifndef");
    assert_non_null(d);
    return d;
}

/* The files; the header declares what the C export's does; the .cu is the
 * CUDA JIT's source; KILN_CUDA_ARCHS picks the cubins. */
static void test_cuda_export_files(void **state)
{
    (void)state;
    char dir[256], cdir[256], p[300];
    temp_dir(dir, sizeof dir);
    temp_dir(cdir, sizeof cdir);
    kiln_graph *g = mlp_graph();
    export_to(g, dir, "mlp");
    export_for(g, cdir, "mlp", KILN_TARGET_C);
    char cubin[64]; /* this machine's GPU's (the fake GPU is an sm_90) */
    snprintf(cubin, sizeof cubin, "mlp.sm_%d.cubin", rt_cuda_device_cc());
    const char *files[] = {"mlp.so", "mlp.h",   "mlp.c",          "mlp.kir", "mlp.params.bin",
                           "mlp.cu", "mlp.ptx", "mlp.consts.bin", cubin};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!exists(dir, files[i]))
            fail_msg("no %s", files[i]);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls '%s' | wc -l) -eq 9", dir);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/mlp.h", dir);
    char *h = ku_read_file(p, NULL);
    snprintf(p, sizeof p, "%s/mlp.h", cdir);
    char *ch = ku_read_file(p, NULL);
    assert_true(h && ch);
    assert_string_equal(declarations(h), declarations(ch));
    assert_non_null(strstr(h, "the NVIDIA\n * driver (libcuda.so.1"));
    snprintf(p, sizeof p, "%s/mlp.cu", dir);
    char *cu = ku_read_file(p, NULL);
    kiln_module *j = ku_compile_for(g, KILN_TARGET_CUDA);
    assert_non_null(cu);
    assert_string_equal(cu, kiln_module_source(j));
    /* chosen architectures; a list that is not one is refused */
    setenv("KILN_CUDA_ARCHS", "75,86", 1);
    rm_rf(dir);
    export_to(g, dir, "mlp");
    assert_true(exists(dir, "mlp.sm_75.cubin") && exists(dir, "mlp.sm_86.cubin"));
    snprintf(cmd, sizeof cmd, "test $(ls '%s'/*.cubin | wc -l) -eq 2", dir);
    assert_int_equal(system(cmd), 0);
    const char *bad[] = {"80,", "sm_80", "80;90", "9000", "1,2,3"};
    kiln_compile_opts o = {.target = KILN_TARGET_CUDA};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("KILN_CUDA_ARCHS", bad[i], 1);
        assert_int_equal(kiln_export(g, &o, dir), KILN_ERR_INVALID);
        assert_graph_error(g, KILN_ERR_INVALID, "is not a list of at most 8 compute capabilities");
    }
    unsetenv("KILN_CUDA_ARCHS");
    free(h);
    free(ch);
    free(cu);
    kiln_module_free(j);
    kiln_graph_free(g);
    rm_rf(dir);
    rm_rf(cdir);
}

/* Floats within f32 rounding of a sum's order (the C target against the GPU's). */
static void assert_close(const float *a, const float *b, int n)
{
    for (int i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-5f + 1e-5f * fabsf(b[i])))
            fail_msg("element %d: %.9g vs %.9g", i, (double)a[i], (double)b[i]);
}

/* The standalone CUDA export against the CUDA JIT (bit for bit) and the C
 * target; state read and written by name; checkpoints both ways. */
static void test_cuda_standalone_matches_the_jit(void **state)
{
    (void)state;
    char dir[256], path[300];
    kiln_graph *g = mlp_exported(dir, sizeof dir, "mlp");
    api a = open_api(dir);
    void *s = a.create();
    assert_non_null(s);
    kiln_module *j = ku_compile_for(g, KILN_TARGET_CUDA), *c = ku_compile_for(g, KILN_TARGET_C);
    float x[B * IN], ls, lj, lc, ps[B * OUT], pj[B * OUT], pc[B * OUT];
    int64_t y[B];
    for (int step = 0; step < 5; step++) {
        batch(x, y, step);
        assert_int_equal(a.train(s, x, y, &ls), 0);
        kiln_module *ms[] = {j, c};
        for (int k = 0; k < 2; k++) {
            assert_int_equal(kiln_module_set(ms[k], "x", x, sizeof x), KILN_OK);
            assert_int_equal(kiln_module_set(ms[k], "y", y, sizeof y), KILN_OK);
            assert_int_equal(kiln_module_run(ms[k], "train"), KILN_OK);
        }
        assert_int_equal(kiln_module_get(j, "train.loss", &lj, sizeof lj), KILN_OK);
        assert_int_equal(kiln_module_get(c, "train.loss", &lc, sizeof lc), KILN_OK);
        assert_memory_equal(&ls, &lj, sizeof ls);
        assert_close(&ls, &lc, 1);
    }
    /* a param written through mlp_tensor is what the next run reads */
    size_t nb = 0;
    double *lr = a.tensor(s, "train.lr", &nb);
    assert_true(lr && nb == sizeof(double) && *lr == 1e-2);
    *lr = 0.5;
    double half = 0.5;
    assert_int_equal(kiln_module_set(j, "train.lr", &half, sizeof half), KILN_OK);
    assert_int_equal(a.train(s, x, y, NULL), 0);
    assert_int_equal(kiln_module_run(j, "train"), KILN_OK);
    assert_int_equal(a.predict(s, x, ps), 0);
    assert_int_equal(kiln_module_run(j, "predict"), KILN_OK);
    assert_int_equal(kiln_module_get(j, "logits", pj, sizeof pj), KILN_OK);
    assert_memory_equal(ps, pj, sizeof ps);
    float *logits = a.tensor(s, "logits", &nb); /* brought back from the device */
    assert_true(logits && nb == sizeof pj);
    assert_memory_equal(logits, pj, sizeof pj);
    /* checkpoints: the CUDA JIT's bytes; they load into the C target and back */
    snprintf(path, sizeof path, "%s/sa.safetensors", dir);
    assert_int_equal(a.save(s, path), 0);
    size_t n1 = 0, n2 = 0;
    char *sa = ku_read_file(path, &n1), *jit = save_bytes(j, dir, &n2);
    assert_true(sa && n1 == n2);
    assert_memory_equal(sa, jit, n1);
    free(sa);
    free(jit);
    assert_int_equal(kiln_module_load(c, path), KILN_OK);
    assert_int_equal(kiln_module_set(c, "x", x, sizeof x), KILN_OK);
    assert_int_equal(kiln_module_run(c, "predict"), KILN_OK);
    assert_int_equal(kiln_module_get(c, "logits", pc, sizeof pc), KILN_OK);
    assert_close(pc, ps, B * OUT);
    void *s2 = a.create();
    assert_int_equal(a.load(s2, path), 0); /* before its first run: host copies only */
    assert_int_equal(a.predict(s2, x, pc), 0);
    assert_memory_equal(pc, ps, sizeof ps);
    assert_int_equal(a.train(s2, x, y, &ls), 0); /* the run counter came with the file */
    assert_int_equal(a.load(s2, path), 0);       /* after: the device copies go stale */
    assert_int_equal(a.train(s2, x, y, &lc), 0);
    assert_memory_equal(&ls, &lc, sizeof ls);
    a.free_(s);
    a.free_(s2);
    kiln_module_free(j);
    kiln_module_free(c);
    dlclose(a.h);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* A failing run changes nothing on the GPU: the next run is the one a state
 * that never failed makes; without a GPU a state is made, read and saved, its
 * first run says why (test_standalone_run_errors: the messages), and so does
 * kiln_module_open. */
static void test_cuda_standalone_errors(void **state)
{
    (void)state;
    char dir[256];
    kiln_graph *g = mlp_exported(dir, sizeof dir, "mlp");
    api a = open_api(dir);
    void *s = a.create(), *never = a.create();
    float x[B * IN], l, ln;
    int64_t y[B];
    batch(x, y, 0);
    assert_int_equal(a.train(s, x, y, &l), 0);
    assert_int_equal(a.train(never, x, y, &ln), 0);
    size_t nb = 0;
    float before[HID * IN];
    memcpy(before, a.tensor(s, "fc1.weight", &nb), sizeof before);
    int64_t bad[B];
    memcpy(bad, y, sizeof bad);
    bad[3] = OUT; /* a label out of range (its message: test_standalone_run_errors) */
    assert_int_equal(a.train(s, x, bad, &l), -1);
    assert_memory_equal(a.tensor(s, "fc1.weight", NULL), before, sizeof before);
    /* and the next run is the one a state that never failed makes */
    batch(x, y, 1);
    assert_int_equal(a.train(s, x, y, &l), 0);
    assert_int_equal(a.train(never, x, y, &ln), 0);
    assert_memory_equal(&l, &ln, sizeof l);
    /* the GPU itself failing (the fake's launches, where it is the fake): the
     * run says which call failed and how, and the state runs on after it */
    if (getenv("KILN_LIBCUDA") && strstr(getenv("KILN_LIBCUDA"), "fakegpu")) {
        setenv("KILN_FAKE_GPU_FAIL_LAUNCH", "1", 1);
        assert_int_equal(a.train(s, x, y, &l), -1);
        unsetenv("KILN_FAKE_GPU_FAIL_LAUNCH");
        const char *e = a.error(s);
        if (strncmp(e, "mlp_train: the GPU failed: k", 28) != 0 ||
            !strstr(e, " failed: invalid argument (CUDA error 1)"))
            fail_msg("%s", e);
        assert_memory_equal(a.tensor(s, "fc1.weight", NULL), a.tensor(never, "fc1.weight", NULL),
                            sizeof before);
        assert_int_equal(a.train(s, x, y, &l), 0);
        assert_int_equal(a.train(never, x, y, &ln), 0);
        assert_memory_equal(&l, &ln, sizeof l);
    }
    a.free_(s);
    a.free_(never);
    dlclose(a.h);
    /* no GPU: a state is made, read, saved and loaded; its first run says why
     * (a copy of the .so: the driver is opened once per loaded export) */
    char cmd[700], so[300], path[300];
    snprintf(cmd, sizeof cmd, "cp '%s/mlp.so' '%s/other.so'", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(so, sizeof so, "%s/other.so", dir);
    const char *fake = getenv("KILN_LIBCUDA");
    char keep[300];
    snprintf(keep, sizeof keep, "%s", fake ? fake : "");
    setenv("KILN_LIBCUDA", KU_NO_LIBCUDA, 1);
    api b = open_api_at(so);
    s = b.create();
    assert_non_null(s);
    assert_non_null(b.tensor(s, "fc1.weight", &nb));
    snprintf(path, sizeof path, "%s/nogpu.safetensors", dir);
    assert_int_equal(b.save(s, path), 0);
    assert_int_equal(b.train(s, x, y, &l), -1);
    assert_string_equal(b.error(s), "mlp_train: the CUDA export needs a GPU: the NVIDIA driver "
                                    "is not installed (" KU_NO_LIBCUDA
                                    ": cannot open shared object file: No such file or "
                                    "directory)");
    b.free_(s);
    dlclose(b.h);
    /* kiln_module_open without a GPU: in a fresh process of this program (this
     * one's driver is open for good), which prints what it got */
    snprintf(cmd, sizeof cmd, "KILN_LIBCUDA=%s /proc/%ld/exe --open '%s/mlp.so' > '%s/open.txt'",
             KU_NO_LIBCUDA, (long)getpid(), dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof path, "%s/open.txt", dir);
    char *got = ku_read_file(path, NULL);
    assert_non_null(got);
    char want[1200];
    snprintf(want, sizeof want,
             "%d kiln_module_open: '%s/mlp.so' is a CUDA export: the GPU cannot be used: the "
             "NVIDIA driver is not installed (" KU_NO_LIBCUDA
             ": cannot open shared object file: No such file or directory)\n",
             (int)KILN_ERR_DEVICE, dir);
    assert_string_equal(got, want);
    free(got);
    setenv("KILN_LIBCUDA", keep, 1);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* A GPU whose architecture has no cubin in the export loads its PTX (the
 * fake GPU logs it; a real one only gives the same numbers). */
static void test_cuda_standalone_ptx(void **state)
{
    (void)state;
    char dir[256], log[300];
    temp_dir(dir, sizeof dir);
    kiln_graph *g = mlp_graph();
    /* cubins of another major version than this GPU's only */
    setenv("KILN_CUDA_ARCHS", rt_cuda_device_cc() / 10 == 7 ? "86" : "75", 1);
    export_to(g, dir, "mlp");
    unsetenv("KILN_CUDA_ARCHS");
    snprintf(log, sizeof log, "%s/gpu.log", dir);
    setenv("KILN_FAKE_GPU_LOG", log, 1);
    api a = open_api(dir);
    void *s = a.create();
    float x[B * IN], l, lj;
    int64_t y[B];
    batch(x, y, 0);
    assert_int_equal(a.train(s, x, y, &l), 0);
    unsetenv("KILN_FAKE_GPU_LOG");
    char *text = ku_read_file(log, NULL);
    if (text && !strstr(text, "ptx "))
        fail_msg("the GPU did not load the PTX:\n%.2000s", text);
    kiln_module *j = ku_compile_for(g, KILN_TARGET_CUDA);
    assert_int_equal(kiln_module_set(j, "x", x, sizeof x), KILN_OK);
    assert_int_equal(kiln_module_set(j, "y", y, sizeof y), KILN_OK);
    assert_int_equal(kiln_module_run(j, "train"), KILN_OK);
    assert_int_equal(kiln_module_get(j, "train.loss", &lj, sizeof lj), KILN_OK);
    assert_memory_equal(&l, &lj, sizeof l);
    free(text);
    a.free_(s);
    dlclose(a.h);
    kiln_module_free(j);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* Constant tensors travel with the export (C: in the code; CUDA: the
 * constants blob) and give the JIT's numbers; an entry without inputs. */
static void test_export_constants(void **state)
{
    (void)state;
    char dir[256], so[300];
    temp_dir(dir, sizeof dir);
    kiln_graph *g = ku_graph_new();
    const float cv[6] = {1.5f, -2, 3.25f, 4, -5.5f, 6};
    const int64_t iv[3] = {2, 0, 1};
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *c = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(2, 3), cv);
    kiln_tensor *idx = kiln_tensor_from(g, KILN_I64, KILN_SHAPE(3), iv);
    kiln_tensor *y = kiln_mul(g, x, c);
    kiln_tensor *table = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(3, 2), cv);
    kiln_tensor *z = kiln_embedding(g, table, idx); /* rows 2, 0, 1 */
    assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *[]){"y"}), KILN_OK);
    assert_int_equal(kiln_entry(g, "g", 1, &z, (const char *[]){"z"}), KILN_OK);
    export_to(g, dir, "mlp");
    if (export_target == KILN_TARGET_CUDA) { /* both tables, each at a multiple of 64 bytes */
        struct stat st;
        snprintf(so, sizeof so, "%s/mlp.consts.bin", dir);
        assert_int_equal(stat(so, &st), 0);
        assert_int_equal(st.st_size, 64 + 64 + 64);
    }
    snprintf(so, sizeof so, "%s/mlp.so", dir);
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(h);
    void *(*create)(void) = NULL;
    int (*f)(void *, const float *, float *) = NULL, (*gz)(void *, float *) = NULL;
    *(void **)&create = sym(h, "mlp_create");
    *(void **)&f = sym(h, "mlp_f");
    *(void **)&gz = sym(h, "mlp_g");
    void (*free_)(void *) = NULL;
    *(void **)&free_ = sym(h, "mlp_free");
    void *s = create();
    const float xv[6] = {1, 2, 3, 4, 5, 6};
    float ys[6], zs[6], yj[6], zj[6];
    assert_int_equal(f(s, xv, ys), 0);
    assert_int_equal(gz(s, zs), 0);
    kiln_module *j = ku_compile_for(g, export_target);
    assert_int_equal(kiln_module_set(j, "x", xv, sizeof xv), KILN_OK);
    assert_int_equal(kiln_module_run(j, "f"), KILN_OK);
    assert_int_equal(kiln_module_run(j, "g"), KILN_OK);
    assert_int_equal(kiln_module_get(j, "y", yj, sizeof yj), KILN_OK);
    assert_int_equal(kiln_module_get(j, "z", zj, sizeof zj), KILN_OK);
    assert_memory_equal(ys, yj, sizeof ys);
    assert_memory_equal(zs, zj, sizeof zs);
    for (int i = 0; i < 6; i++) {
        assert_true(ys[i] == xv[i] * cv[i]);
        assert_true(zs[i] == cv[iv[i / 2] * 2 + i % 2]);
    }
    free_(s);
    dlclose(h);
    kiln_module_free(j);
    kiln_graph_free(g);
    rm_rf(dir);
}

/* Exits 77 (skipped) where a CUDA compile says there is no usable GPU. */
static void need_gpu(void)
{
    kiln_graph *g = mlp_graph();
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &(kiln_compile_opts){.target = KILN_TARGET_CUDA}, &m);
    if (s == KILN_ERR_DEVICE) {
        printf("skipped: %s\n", kiln_graph_error(g));
        exit(77);
    }
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--open") == 0) { /* test_cuda_standalone_errors' child */
        kiln_module *m = NULL;
        kiln_status s = kiln_module_open(argv[2], &m);
        printf("%d %s\n", (int)s, kiln_module_error(NULL));
        kiln_module_free(m);
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--cuda") == 0) {
        need_gpu();
        export_target = KILN_TARGET_CUDA;
        const struct CMUnitTest cuda[] = {
            /* the standalone API's own tests, then the GPU's */
            cmocka_unit_test(test_standalone_run_errors),
            cmocka_unit_test(test_standalone_load_validates_everything),
            cmocka_unit_test(test_open_matches_the_jit_bit_for_bit),
            cmocka_unit_test(test_export_constants),
            cmocka_unit_test(test_cuda_export_files),
            cmocka_unit_test(test_cuda_standalone_matches_the_jit),
            cmocka_unit_test(test_cuda_standalone_errors),
            cmocka_unit_test(test_cuda_standalone_ptx),
        };
        return ku_exit(cmocka_run_group_tests(cuda, NULL, NULL));
    }
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--cuda]\n", argv[0]);
        return 2;
    }
    /* the CUDA cases fail the same way on a machine with a GPU (read once) */
    setenv("KILN_LIBCUDA", KU_NO_LIBCUDA, 1);
    setenv("KILN_NVRTC", KU_NO_LIBCUDA, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_writes_the_files),
        cmocka_unit_test(test_open_matches_the_jit_bit_for_bit),
        cmocka_unit_test(test_standalone_matches_the_jit),
        cmocka_unit_test(test_standalone_run_errors),
        cmocka_unit_test(test_standalone_load_validates_everything),
        cmocka_unit_test(test_open_refuses_what_is_not_a_kiln_export),
        cmocka_unit_test(test_open_refuses_a_cache_entry),
        cmocka_unit_test(test_export_errors),
        cmocka_unit_test(test_export_argument_names),
        cmocka_unit_test(test_export_hostile_names),
        cmocka_unit_test(test_export_reserved_names),
        cmocka_unit_test(test_export_disk_full),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_export_constants),
    };
    return ku_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
