/* testutil.c - shared helpers for the cmocka unit tests. */
#include "testutil.h"

#include "ir/ir.h"
#include "runtime/rt.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void ku_assert_graph_error(const kiln_graph *g, kiln_status s, const char *needle, const char *file,
                           int line)
{
    const char *msg = kiln_graph_error(g);
    if (kiln_graph_status(g) != s || !strstr(msg, needle)) {
        fprintf(stderr, "%s:%d: expected status %s containing \"%s\"; got %s: \"%s\"\n", file, line,
                kiln_status_str(s), needle, kiln_status_str(kiln_graph_status(g)), msg);
        fail();
    }
}

void ku_assert_module_error(const kiln_module *m, kiln_status got, kiln_status want,
                            const char *needle, const char *file, int line)
{
    const char *msg = kiln_module_error(m);
    if (got != want || !strstr(msg, needle)) {
        fprintf(stderr, "%s:%d: expected status %s containing \"%s\"; got %s: \"%s\"\n", file, line,
                kiln_status_str(want), needle, kiln_status_str(got), msg);
        fail();
    }
}

char *ku_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

kiln_graph *ku_graph_new(void)
{
    kiln_graph *g = kiln_graph_new();
    assert_non_null(g);
    return g;
}

kiln_tensor *ku_input(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
    static int next_name;
    char name[32];
    snprintf(name, sizeof(name), "x%d", next_name++);
    kiln_tensor *t = kiln_input(g, name, dt, rank, dims);
    assert_non_null(t);
    return t;
}

void ku_assert_ok(kiln_graph *g)
{
    if (kiln_graph_status(g) == KILN_OK)
        ir_verify(g);
    if (kiln_graph_status(g) != KILN_OK)
        fprintf(stderr, "unexpected error: %s\n", kiln_graph_error(g));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
}

kiln_module *ku_run_entry(kiln_graph *g, int n, kiln_tensor *const *outs)
{
    ku_assert_ok(g);
    assert_int_equal(kiln_entry(g, "f", n, outs, NULL), KILN_OK);
    kiln_compile_opts opts = {.target = KILN_TARGET_INTERP};
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &opts, &m);
    if (s != KILN_OK)
        fprintf(stderr, "kiln_compile: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    s = kiln_module_run(m, "f");
    if (s != KILN_OK)
        fprintf(stderr, "kiln_module_run: %s\n", kiln_module_error(m));
    assert_int_equal(s, KILN_OK);
    return m;
}

void ku_get_bytes(kiln_module *m, int i, void *dst, size_t nbytes)
{
    char name[16];
    snprintf(name, sizeof(name), "f.%d", i);
    assert_int_equal(kiln_module_get(m, name, dst, nbytes), KILN_OK);
}

void ku_get_f32(kiln_module *m, int i, float *dst, size_t n)
{
    ku_get_bytes(m, i, dst, n * sizeof(float));
}

int ku_fail_after = -1;

static void *failing_realloc(void *ctx, void *ptr, size_t size)
{
    (void)ctx;
    if (ku_fail_after == 0)
        return NULL;
    if (ku_fail_after > 0)
        ku_fail_after--;
    return realloc(ptr, size);
}

static void failing_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

const kiln_allocator ku_failing_allocator = {failing_realloc, failing_free, NULL};

long ku_live;

static void *counting_realloc(void *ctx, void *ptr, size_t size)
{
    void *p = failing_realloc(ctx, ptr, size);
    if (p && !ptr)
        ku_live++;
    return p;
}

static void counting_free(void *ctx, void *ptr)
{
    if (ptr)
        ku_live--;
    failing_free(ctx, ptr);
}

const kiln_allocator ku_counting_allocator = {counting_realloc, counting_free, NULL};

kiln_module *ku_compile_for(kiln_graph *g, kiln_target t)
{
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &(kiln_compile_opts){.target = t}, &m);
    if (s != KILN_OK)
        fprintf(stderr, "compile failed: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    return m;
}

void ku_store(kiln_dtype dt, void *base, int64_t i, double v)
{
    switch (dt) {
    case KILN_F32: ((float *)base)[i] = (float)v; break;
    case KILN_F64: ((double *)base)[i] = v; break;
    case KILN_I32: ((int32_t *)base)[i] = (int32_t)v; break;
    case KILN_I64: ((int64_t *)base)[i] = (int64_t)v; break;
    case KILN_BOOL: ((bool *)base)[i] = v != 0; break;
    }
}

double ku_load(kiln_dtype dt, const void *base, int64_t i)
{
    switch (dt) {
    case KILN_F32: return (double)((const float *)base)[i];
    case KILN_F64: return ((const double *)base)[i];
    case KILN_I32: return (double)((const int32_t *)base)[i];
    case KILN_I64: return (double)((const int64_t *)base)[i];
    case KILN_BOOL: return ((const bool *)base)[i] ? 1 : 0;
    }
    return 0;
}

/* An MLP sizes[0] -> ... -> sizes[layers] (ReLU between, params "w<l>" and
 * "b<l>", kaiming init), cross-entropy on labels "y": entries "train" (a
 * train step with opt) and "predict" (the logits). */
kiln_graph *ku_mlp(int64_t batch, const int64_t *sizes, int layers, kiln_optim opt)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *h = kiln_input(g, "x", KILN_F32, KILN_SHAPE(batch, sizes[0]));
    for (int l = 0; l < layers; l++) {
        char wn[16], bn[16];
        snprintf(wn, sizeof wn, "w%d", l);
        snprintf(bn, sizeof bn, "b%d", l);
        kiln_tensor *w = kiln_param(g, wn, KILN_F32, KILN_SHAPE(sizes[l + 1], sizes[l]),
                                    kiln_init_kaiming_uniform());
        kiln_tensor *b =
            kiln_param(g, bn, KILN_F32, KILN_SHAPE(sizes[l + 1]), kiln_init_kaiming_uniform());
        h = kiln_linear(g, h, w, b);
        if (l + 1 < layers)
            h = kiln_relu(g, h);
    }
    kiln_tensor *loss = kiln_cross_entropy(g, h, kiln_input(g, "y", KILN_I64, KILN_SHAPE(batch)));
    assert_int_equal(kiln_train_step(g, "train", loss, opt), KILN_OK);
    assert_int_equal(kiln_entry(g, "predict", 1, &h, NULL), KILN_OK);
    ku_assert_ok(g);
    return g;
}

/* One entry, "main", running every kernel of p in order. */
void ku_entry_all(kprogram *p)
{
    p->entries = ir_alloc(sizeof(kentry));
    assert_non_null(p->entries);
    memset(p->entries, 0, sizeof(kentry));
    p->nentries = 1;
    p->entries[0].name = "main";
    p->entries[0].kernels = ir_alloc(sizeof(int) * (size_t)(p->nkernels + 1));
    assert_non_null(p->entries[0].kernels);
    for (int i = 0; i < p->nkernels; i++)
        p->entries[0].kernels[i] = i;
    p->entries[0].nkernels = p->nkernels;
}

/* The .kir round trip of every compiled graph (testutil.h). Running out of
 * memory (the allocation-failure tests) proves nothing either way. */
kiln_status __wrap_kiln_compile(kiln_graph *g, const kiln_compile_opts *opts, kiln_module **out)
{
    /* KILN_TEST_TARGET=cuda: what a test compiles for the C target runs on
     * the GPU (ctest's *_cuda tests, label gpu); without one the whole test
     * program is a skip. */
    const char *tt = getenv("KILN_TEST_TARGET");
    kiln_compile_opts moved;
    bool cuda = tt && strcmp(tt, "cuda") == 0 && (!opts || opts->target == KILN_TARGET_C);
    if (cuda) {
        moved = opts ? *opts : (kiln_compile_opts){0};
        moved.target = KILN_TARGET_CUDA;
        opts = &moved;
    }
    kiln_status s = __real_kiln_compile(g, opts, out);
    if (cuda && s == KILN_ERR_DEVICE && strstr(kiln_graph_error(g), "needs a GPU")) {
        printf("KILN_TEST_TARGET=cuda: %s\n", kiln_graph_error(g));
        exit(77);
    }
    if (s != KILN_OK)
        return s;
    char err[256] = "";
    char *first = rt_graph_text(g);
    kiln_graph *back = first ? kiln_graph_parse(first, err, sizeof err) : NULL;
    char *second = back ? rt_graph_text(back) : NULL;
    bool oom = !first || (!back && strstr(err, "out of memory")) || (back && !second);
    if (!oom && !back)
        fail_msg(".kir round trip: the printed graph does not parse: %s\n%s", err, first);
    if (!oom && strcmp(first, second) != 0)
        fail_msg(".kir round trip: print -> parse -> print differs:\n%s\n----\n%s", first, second);
    ir_free(first);
    ir_free(second);
    kiln_graph_free(back);
    return s;
}

static void *capped_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    return n > ((size_t)64 << 20) ? NULL : realloc(p, n);
}

static void capped_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

const kiln_allocator ku_capped_allocator = {capped_realloc, capped_free, NULL};

const char *ku_skipped;

int ku_exit(int failed)
{
    return failed ? failed : ku_skipped ? 77 : 0;
}

unsigned ku_mode_of(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 07777);
}

void ku_in_child(const char *what, int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm(5);
        kiln_set_allocator(&ku_capped_allocator);
        _exit(fn(arg));
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        fail_msg("%s did not return within 5 seconds", what);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

char ku_scratch_dir[256];

int ku_scratch_make(const char *tag)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(ku_scratch_dir, sizeof ku_scratch_dir, "%s/kiln-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp",
             tag);
    return mkdtemp(ku_scratch_dir) ? 0 : -1;
}

const char *ku_scratch(const char *name)
{
    static char bufs[4][512];
    static int next;
    char *p = bufs[next++ % 4];
    snprintf(p, sizeof bufs[0], "%s/%s", ku_scratch_dir, name);
    return p;
}

int ku_scratch_remove(void)
{
    DIR *d = opendir(ku_scratch_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            unlink(ku_scratch(e->d_name));
    if (d)
        closedir(d);
    rmdir(ku_scratch_dir);
    return 0;
}

/* noinline: see test_dot.c (gcc 12 -Wdangling-pointer) */
__attribute__((noinline)) char *ku_profile_text(kiln_module *m)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(kiln_module_profile(m, f), KILN_OK);
    assert_int_equal(fclose(f), 0);
    return text;
}

long long ku_profile_calls(const char *text, const char *name)
{
    char head[80];
    snprintf(head, sizeof head, "\n%s ", name);
    const char *row = strstr(text, head);
    return row ? strtoll(row + strlen(head), NULL, 10) : -1;
}

int ku_scratch_teardown(void **state)
{
    (void)state;
    return ku_scratch_remove();
}

const char *ku_next_kernel(const char *at)
{
    const char *i = strstr(at + 1, "\nstatic int k"), *v = strstr(at + 1, "\nstatic void k");
    if (!i && !v)
        return NULL;
    return i && (!v || i < v) ? i + strlen("\nstatic int ") : v + strlen("\nstatic void ");
}

kiln_graph *ku_row_ops(int64_t rows, int64_t cols)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_param(g, "x", KILN_F32, KILN_SHAPE(rows, cols), kiln_init_zeros());
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(cols), kiln_init_ones());
    kiln_tensor *b = kiln_param(g, "b", KILN_F32, KILN_SHAPE(cols), kiln_init_zeros());
    kiln_tensor *lab = kiln_input(g, "labels", KILN_I64, KILN_SHAPE(rows));
    kiln_tensor *y = kiln_add(g, kiln_softmax(g, x, -1), kiln_log_softmax(g, x, -1));
    y = kiln_add(g, y, kiln_layer_norm(g, x, w, b, 1e-5));
    kiln_tensor *loss =
        kiln_add(g, kiln_sum(g, kiln_mul(g, y, y), KILN_ALL, false), kiln_cross_entropy(g, x, lab));
    kiln_tensor *wrt[3] = {x, w, b}, *grads[3];
    assert_int_equal(kiln_grad(g, loss, 3, wrt, NULL, grads), KILN_OK);
    kiln_tensor *outs[4] = {loss, grads[0], grads[1], grads[2]};
    assert_int_equal(kiln_entry(g, "step", 4, outs, NULL), KILN_OK);
    return g;
}
