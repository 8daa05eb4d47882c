/*
 * test_cuda_driver.c - the CUDA driver loader (runtime/cuda_driver.c) on a
 * machine without a GPU: every way the driver can be unusable gives its own
 * message, and kiln_compile / KILN_TARGET_CUDA reports it as KILN_ERR_DEVICE.
 *
 * The driver is opened once per process, so each case runs in a forked child
 * with its own $KILN_LIBCUDA: the toolkit's stub, a missing file, or a fake
 * libcuda this test compiles (cc -shared) with chosen symbols and answers.
 */
#include "passes/passes.h"
#include "runtime/cuda_driver.h"
#include "runtime/device.h"
#include "testutil.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STUB "/usr/local/cuda/lib64/stubs/libcuda.so"

/* What a child saw: the loader's answer and a CUDA compile's. */
typedef struct {
    kiln_status driver, compile;
    int devices; /* -1: no api */
    char why[512], compile_error[512];
} outcome;

static kiln_graph *small_graph(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = ku_input(g, KILN_F32, 1, (int64_t[]){3});
    kiln_tensor *y = kiln_add(g, x, x);
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    return g;
}

/* In the child: no cmocka asserts, only values for the parent to check. */
static void probe(const char *lib, outcome *o)
{
    setenv("KILN_LIBCUDA", lib, 1);
    const rt_cuda_api *api = NULL;
    o->driver = rt_cuda_driver(&api, o->why, sizeof o->why);
    o->devices = api ? api->devices : -1;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *y = kiln_add(g, x, x);
    kiln_entry(g, "f", 1, &y, NULL);
    kiln_module *m = NULL;
    o->compile = kiln_compile(g, &(kiln_compile_opts){.target = KILN_TARGET_CUDA}, &m);
    snprintf(o->compile_error, sizeof o->compile_error, "%s", kiln_graph_error(g));
    kiln_module_free(m);
    kiln_graph_free(g);
}

static outcome in_child(const char *lib)
{
    outcome o;
    memset(&o, 0, sizeof o);
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fd[0]);
        probe(lib, &o);
        _exit(write(fd[1], &o, sizeof o) == (ssize_t)sizeof o ? 0 : 1);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got < sizeof o && (r = read(fd[0], (char *)&o + got, sizeof o - got)) > 0)
        got += (size_t)r;
    close(fd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(got, sizeof o);
    return o;
}

static void assert_contains(const char *s, const char *needle)
{
    if (!strstr(s, needle))
        fail_msg("'%s' does not contain '%s'", s, needle);
}

/* ---- fake drivers ---------------------------------------------------------- */

/* The driver API as the executor will call it, written out here rather than
 * taken from the loader: a symbol the loader starts to ask for must be added. */
static const char *const symbols[] = {
    "cuGetErrorString",
    "cuInit",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxSetCurrent",
    "cuModuleLoadData",
    "cuModuleUnload",
    "cuModuleGetFunction",
    "cuLaunchKernel",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemcpyDtoDAsync_v2",
    "cuMemsetD8Async",
    "cuStreamCreate",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventElapsedTime",
    "cuEventDestroy_v2",
};

static char dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kiln-cudadrv-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Builds dir/<name>.so: every symbol but omit, cuInit returning init_ret,
 * cuDeviceGetCount reporting count devices, cuGetErrorString knowing error 3.
 * False (the case skips) when there is no C compiler. */
static bool fake(const char *name, const char *omit, int init_ret, int count, char *so, size_t cap)
{
    char src[300];
    snprintf(src, sizeof src, "%s/%s.c", dir, name);
    snprintf(so, cap, "%s/%s.so", dir, name);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        const char *s = symbols[i];
        if (omit && strcmp(s, omit) == 0)
            continue;
        if (strcmp(s, "cuInit") == 0)
            fprintf(f, "int cuInit(unsigned flags) { (void)flags; return %d; }\n", init_ret);
        else if (strcmp(s, "cuDeviceGetCount") == 0)
            fprintf(f, "int cuDeviceGetCount(int *n) { *n = %d; return 0; }\n", count);
        else if (strcmp(s, "cuGetErrorString") == 0)
            fprintf(f, "int cuGetErrorString(int e, const char **s) {\n"
                       "    if (e != 3) return 1;\n"
                       "    *s = \"initialization error\";\n"
                       "    return 0;\n"
                       "}\n");
        else /* the loader only resolves these */
            fprintf(f, "int %s(void) { return 999; }\n", s);
    }
    fclose(f);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cc -shared -fPIC -o '%s' '%s' 2>/dev/null", so, src);
    if (system(cmd) != 0) {
        ku_skip("no C compiler (cc) to build a fake libcuda");
        return false;
    }
    return true;
}

/* ---- the failure paths ----------------------------------------------------- */

static void test_no_driver(void **state)
{
    (void)state;
    outcome o = in_child(KU_NO_LIBCUDA);
    assert_int_equal(o.driver, KILN_ERR_DEVICE);
    assert_int_equal(o.devices, -1);
    assert_string_equal(o.why, "the NVIDIA driver is not installed (" KU_NO_LIBCUDA
                               ": cannot open shared object file: No such file or directory)");
    assert_int_equal(o.compile, KILN_ERR_DEVICE);
    assert_string_equal(o.compile_error, "kiln_compile: the CUDA target needs a GPU: the NVIDIA "
                                         "driver is not installed (" KU_NO_LIBCUDA
                                         ": cannot open shared object file: No such file or "
                                         "directory)");
}

static void test_stub_library(void **state)
{
    (void)state;
    if (access(STUB, R_OK) != 0) {
        ku_skip("no CUDA toolkit stub library at " STUB);
        return;
    }
    outcome o = in_child(STUB);
    assert_int_equal(o.driver, KILN_ERR_DEVICE);
    assert_int_equal(o.devices, -1);
    assert_string_equal(
        o.why, "cuInit failed (CUDA_ERROR_STUB_LIBRARY: CUDA driver is a stub library): " STUB
               " is the CUDA stub library or a driver without a device");
    assert_int_equal(o.compile, KILN_ERR_DEVICE);
    assert_contains(o.compile_error, "kiln_compile: the CUDA target needs a GPU: cuInit failed");
}

static void test_missing_symbol(void **state)
{
    (void)state;
    char so[300];
    if (!fake("old", "cuLaunchKernel", 0, 1, so, sizeof so))
        return;
    outcome o = in_child(so);
    assert_int_equal(o.driver, KILN_ERR_DEVICE);
    assert_int_equal(o.devices, -1);
    char want[700];
    snprintf(want, sizeof want, "the NVIDIA driver is too old: %s is missing symbol cuLaunchKernel",
             so);
    assert_string_equal(o.why, want);
    assert_int_equal(o.compile, KILN_ERR_DEVICE);
    assert_contains(o.compile_error, "kiln_compile: the CUDA target needs a GPU: the NVIDIA driver "
                                     "is too old");
}

/* cuInit's error is told in the driver's own words (cuGetErrorString). */
static void test_init_fails(void **state)
{
    (void)state;
    char so[300];
    if (!fake("noinit", NULL, 3, 1, so, sizeof so))
        return;
    outcome o = in_child(so);
    assert_int_equal(o.driver, KILN_ERR_DEVICE);
    char want[700];
    snprintf(want, sizeof want,
             "cuInit failed (initialization error): %s is the CUDA stub library or a driver "
             "without a device",
             so);
    assert_string_equal(o.why, want);
    assert_int_equal(o.compile, KILN_ERR_DEVICE);
}

static void test_no_device(void **state)
{
    (void)state;
    char so[300];
    if (!fake("nodev", NULL, 0, 0, so, sizeof so))
        return;
    outcome o = in_child(so);
    assert_int_equal(o.driver, KILN_ERR_DEVICE);
    assert_int_equal(o.devices, -1);
    char want[700];
    snprintf(want, sizeof want, "no CUDA device: the driver (%s) found none", so);
    assert_string_equal(o.why, want);
    assert_int_equal(o.compile, KILN_ERR_DEVICE);
    snprintf(want, sizeof want,
             "kiln_compile: the CUDA target needs a GPU: no CUDA device: the driver (%s) found "
             "none",
             so);
    assert_string_equal(o.compile_error, want);
}

/* A driver with a device (a fake here; it exports only the pre-12.8
 * cuEventElapsedTime) loads; its device then fails (every call but cuInit
 * answers error 999), and the compile says which call failed, with nothing
 * left half made. */
static void test_failing_device_is_reported(void **state)
{
    (void)state;
    char so[300];
    if (!fake("ok", NULL, 0, 2, so, sizeof so))
        return;
    outcome o = in_child(so);
    assert_int_equal(o.driver, KILN_OK);
    assert_int_equal(o.devices, 2);
    assert_string_equal(o.why, "");
    assert_string_equal(o.compile_error,
                        "kiln_compile: the GPU cannot be used: cuDeviceGet failed: "
                        "unknown error (CUDA error 999)");
    assert_int_equal(o.compile, KILN_ERR_DEVICE);
}

/* This machine's own driver, in this process: without libcuda.so.1 the
 * compile fails with the reason, and the graph then compiles for the CPU. */
static void test_compile_on_this_machine(void **state)
{
    (void)state;
    unsetenv("KILN_LIBCUDA");
    kiln_graph *g = small_graph();
    kiln_module *m = (kiln_module *)&m;
    kiln_status s = kiln_compile(g, &(kiln_compile_opts){.target = KILN_TARGET_CUDA}, &m);
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        assert_null(m);
        assert_int_equal(s, KILN_ERR_DEVICE);
        assert_graph_error(g, KILN_ERR_DEVICE,
                           "kiln_compile: the CUDA target needs a GPU: the NVIDIA driver is not "
                           "installed (libcuda.so.1: cannot open shared object file");
    } else { /* a driver: usable (a module) or not (the compile says why) */
        dlclose(h);
        assert_true(s == KILN_ERR_DEVICE || s == KILN_OK);
        if (s == KILN_OK) {
            assert_non_null(m);
            kiln_module_free(m);
        } else {
            assert_null(m);
            assert_graph_error(g, s, "kiln_compile: the ");
        }
    }
    m = ku_compile_for(g, KILN_TARGET_C);
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    assert_string_equal(kiln_graph_error(g), "");
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* ---- cuBLASLt's epilogues (runtime/cudev.c) ------------------------------------------ */

typedef enum { PLAIN, BIAS, BIAS_RELU, RELU, GELU, SIGMOID, ROW_BIAS, BATCHED, F64 } mm_case;

/* A graph with one matmul kernel of the case's epilogue. */
static kiln_graph *mm_graph(mm_case c)
{
    kiln_graph *g = ku_graph_new();
    kiln_dtype dt = c == F64 ? KILN_F64 : KILN_F32;
    kiln_tensor *x = c == BATCHED ? kiln_input(g, "x", dt, KILN_SHAPE(3, 8, 4))
                                  : kiln_input(g, "x", dt, KILN_SHAPE(8, 4));
    kiln_tensor *w = kiln_param(g, "w", dt, KILN_SHAPE(4, 16), kiln_init_normal(0, 1));
    kiln_tensor *b = kiln_param(g, "b", dt, KILN_SHAPE(16), kiln_init_normal(0, 1));
    kiln_tensor *col = kiln_param(g, "c", dt, KILN_SHAPE(8, 1), kiln_init_normal(0, 1));
    kiln_tensor *y = kiln_matmul(g, x, w);
    if (c == BIAS || c == BIAS_RELU || c == GELU || c == SIGMOID || c == BATCHED || c == F64)
        y = kiln_add(g, y, b);
    y = c == BIAS_RELU || c == RELU ? kiln_relu(g, y)
        : c == GELU                 ? kiln_gelu(g, y)
        : c == SIGMOID              ? kiln_sigmoid(g, y)
        : c == ROW_BIAS             ? kiln_add(g, y, col)
                                    : y;
    assert_int_equal(kiln_entry(g, "f", 1, &y, NULL), KILN_OK);
    return g;
}

/* Which epilogues go to cuBLASLt: the product, plus a bias by column, into a
 * contiguous output; not ReLU (NaN: cuBLASLt's is max(x, 0)), GELU (another
 * formula), other functions, a bias by row, f64 or an output elsewhere. */
static void test_lt_epilogues(void **state)
{
    (void)state;
    const struct {
        mm_case c;
        bool fused, bias;
    } cases[] = {{PLAIN, true, false},     {BIAS, true, true},    {BIAS_RELU, false, false},
                 {RELU, false, false},     {GELU, false, false},  {SIGMOID, false, false},
                 {ROW_BIAS, false, false}, {BATCHED, true, true}, {F64, false, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kiln_graph *g = mm_graph(cases[i].c);
        kprogram *p = NULL;
        if (pass_pipeline(g, &p) != KILN_OK)
            fail_msg("pipeline: %s", kiln_graph_error(g));
        int matmuls = 0;
        for (int k = 0; k < p->nkernels; k++) {
            const kernel *kk = &p->kernels[k];
            if (kk->kind != KK_MATMUL)
                continue;
            matmuls++;
            rt_gemm_epi e = {-1, -1, -1, -1};
            bool fused = rt_gemm_epilogue_of(p, kk, &e);
            if (fused != cases[i].fused)
                fail_msg("case %zu (%s): fused %d, want %d", i, kk->name, fused, cases[i].fused);
            if (!fused)
                continue;
            assert_int_equal(e.bias >= 0, cases[i].bias);
            assert_int_equal(e.out_at, 0);
            assert_int_equal(p->bufs[e.out].role, KB_OUTPUT);
            if (e.bias >= 0) {
                assert_int_equal(e.bias_at, 0);
                assert_int_equal(p->bufs[e.bias].numel, 16);
            }
        }
        assert_int_equal(matmuls, 1);
        kp_free(p);
        kiln_graph_free(g);
    }
    /* the store's index decides: contiguous rows at an aligned offset, not rows
     * 17 apart */
    kiln_graph *g = mm_graph(PLAIN);
    kprogram *p = NULL;
    assert_int_equal(pass_pipeline(g, &p), KILN_OK);
    kernel *k = &p->kernels[0];
    assert_int_equal(k->kind, KK_MATMUL);
    rt_gemm_epi e;
    int row = kk_expr(k, (kx_node){.kind = KX_OP,
                                   .dtype = KILN_I64,
                                   .op = IR_MUL,
                                   .a = {kk_var(k, 1), kk_const_i(k, KILN_I64, 17)}});
    k->stores[0].index = kk_expr(
        k, (kx_node){.kind = KX_OP, .dtype = KILN_I64, .op = IR_ADD, .a = {row, kk_var(k, 2)}});
    assert_false(rt_gemm_epilogue_of(p, k, &e));
    row = kk_expr(k, (kx_node){.kind = KX_OP,
                               .dtype = KILN_I64,
                               .op = IR_MUL,
                               .a = {kk_var(k, 1), kk_const_i(k, KILN_I64, 16)}});
    int at = kk_expr(k, (kx_node){.kind = KX_OP,
                                  .dtype = KILN_I64,
                                  .op = IR_ADD,
                                  .a = {kk_var(k, 2), kk_const_i(k, KILN_I64, 5)}});
    k->stores[0].index =
        kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_I64, .op = IR_ADD, .a = {row, at}});
    assert_false(rt_gemm_epilogue_of(p, k, &e)); /* not 16-byte aligned */
    at = kk_expr(k, (kx_node){.kind = KX_OP,
                              .dtype = KILN_I64,
                              .op = IR_ADD,
                              .a = {kk_var(k, 2), kk_const_i(k, KILN_I64, 8)}});
    k->stores[0].index =
        kk_expr(k, (kx_node){.kind = KX_OP, .dtype = KILN_I64, .op = IR_ADD, .a = {row, at}});
    assert_true(rt_gemm_epilogue_of(p, k, &e));
    assert_int_equal(e.out_at, 8);
    k->stores[0].accumulate = true; /* += is not cuBLASLt's */
    assert_false(rt_gemm_epilogue_of(p, k, &e));
    kp_free(p);
    kiln_graph_free(g);
}

/* The cuBLASLt and CUDA enum values Kiln passes (device.h) are the toolkit
 * headers' where they are installed. */
static void test_lt_values_match_the_headers(void **state)
{
    (void)state;
    if (access("/usr/local/cuda/include/cublasLt.h", R_OK) != 0) {
        ku_skip("no CUDA toolkit headers at /usr/local/cuda/include");
        return;
    }
    char src[300], cmd[1200];
    snprintf(src, sizeof src, "%s/lt_values.c", dir);
    FILE *f = fopen(src, "w");
    assert_non_null(f);
    fputs("#include \"runtime/device.h\"\n#include <cublasLt.h>\n", f);
    const char *pairs[][2] = {
        {"RT_LT_COMPUTE_32F", "CUBLAS_COMPUTE_32F"},
        {"RT_LT_COMPUTE_32F_FAST_TF32", "CUBLAS_COMPUTE_32F_FAST_TF32"},
        {"RT_LT_R_32F", "CUDA_R_32F"},
        {"RT_LT_DESC_TRANSA", "CUBLASLT_MATMUL_DESC_TRANSA"},
        {"RT_LT_DESC_TRANSB", "CUBLASLT_MATMUL_DESC_TRANSB"},
        {"RT_LT_DESC_EPILOGUE", "CUBLASLT_MATMUL_DESC_EPILOGUE"},
        {"RT_LT_DESC_BIAS_POINTER", "CUBLASLT_MATMUL_DESC_BIAS_POINTER"},
        {"RT_LT_DESC_BIAS_BATCH_STRIDE", "CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE"},
        {"RT_LT_LAYOUT_BATCH_COUNT", "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT"},
        {"RT_LT_LAYOUT_STRIDED_BATCH_OFFSET", "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET"},
        {"RT_LT_PREF_MAX_WORKSPACE_BYTES", "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES"},
        {"RT_LT_EPILOGUE_DEFAULT", "CUBLASLT_EPILOGUE_DEFAULT"},
        {"RT_LT_PREF_MIN_ALIGNMENT_A_BYTES", "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES"},
        {"RT_LT_PREF_MIN_ALIGNMENT_A_BYTES + 3", "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES"},
        {"RT_LT_EPILOGUE_BIAS", "CUBLASLT_EPILOGUE_BIAS"},
        {"RT_GEMM_N", "CUBLAS_OP_N"},
        {"RT_GEMM_T", "CUBLAS_OP_T"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++)
        fprintf(f, "_Static_assert((int)%s == (int)%s, \"%s\");\n", pairs[i][0], pairs[i][1],
                pairs[i][0]);
    fputs("_Static_assert(sizeof(cublasLtMatmulHeuristicResult_t) == 96, \"result\");\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "cc -fsyntax-only -I'%s' -I'%s/include' -I/usr/local/cuda/include '%s' > "
             "'%s/lt.log' 2>&1",
             KILN_SOURCE_DIR, KILN_SOURCE_DIR, src, dir);
    if (system(cmd) != 0) {
        snprintf(src, sizeof src, "%s/lt.log", dir);
        char *log = ku_read_file(src, NULL);
        fail_msg("Kiln's cuBLASLt values differ from the headers':\n%.3000s", log ? log : "");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_epilogues),
        cmocka_unit_test_setup_teardown(test_lt_values_match_the_headers, setup, teardown),
        cmocka_unit_test(test_no_driver),
        cmocka_unit_test(test_stub_library),
        cmocka_unit_test_setup_teardown(test_missing_symbol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_device_is_reported, setup, teardown),
        cmocka_unit_test(test_compile_on_this_machine),
    };
    return ku_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
