/*
 * test_toolchain.c - the C target's toolchain and compile cache (runtime/cc.c):
 * miss then hit with no process started, a missing or broken compiler,
 * compiler diagnostics, a corrupted entry rebuilt, two processes at once,
 * KILN_DUMP, cache-directory fallbacks and ownership, leftovers of killed
 * builders, generated source, and run-time errors.
 */
#include "testutil.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

static char dir[256]; /* a fresh temporary directory per test */

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kiln-tc-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    unsetenv("KILN_CC");
    unsetenv("KILN_DUMP");
    unsetenv("KILN_DEBUG");
    setenv("KILN_CACHE_DIR", dir, 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* y = relu(x) * 2 + ids-gathered rows: a small graph with a run-time check. */
static kiln_graph *small_graph(double scale)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *table = kiln_param(g, "table", KILN_F32, KILN_SHAPE(4, 2), kiln_init_const(1));
    kiln_tensor *ids = kiln_input(g, "ids", KILN_I64, KILN_SHAPE(2));
    kiln_tensor *y = kiln_mul(g, kiln_relu(g, x), kiln_scalar(g, scale));
    kiln_tensor *rows = kiln_embedding(g, table, ids);
    kiln_tensor *upd = kiln_assign(g, table, kiln_add(g, table, kiln_scalar(g, 1)));
    kiln_tensor *outs[] = {y, rows, upd};
    assert_int_equal(kiln_entry(g, "f", 3, outs, (const char *[]){"y", "rows", "upd"}), KILN_OK);
    return g;
}

static kiln_module *compile_c(kiln_graph *g)
{
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, NULL, &m);
    if (s != KILN_OK)
        fprintf(stderr, "compile failed: %s\n", kiln_graph_error(g));
    assert_int_equal(s, KILN_OK);
    return m;
}

static void run_and_check(kiln_module *m)
{
    float x[3] = {-1, 2, 3}, y[3];
    int64_t ids[2] = {3, 0};
    assert_int_equal(kiln_module_set(m, "x", x, sizeof x), KILN_OK);
    assert_int_equal(kiln_module_set(m, "ids", ids, sizeof ids), KILN_OK);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "y", y, sizeof y), KILN_OK);
    assert_true(y[0] == 0 && y[1] == 4 && y[2] == 6);
}

/* A wrapper compiler that counts its invocations in <dir>/calls. */
static void make_wrapper(const char *name, const char *body)
{
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\necho x >> '%s/calls'\n%s\n", dir, body);
    fclose(f);
    chmod(path, 0755);
    setenv("KILN_CC", path, 1);
}

static int calls(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/calls", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static int count_files(const char *suffix)
{
    char cmd[400];
    /* cache entries only: <16 hex digits><suffix> */
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -cE '^[0-9a-f]{16}%s$'", dir, suffix);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

static void test_miss_then_hit_starts_no_process(void **state)
{
    (void)state;
    make_wrapper("cc-count", "exec clang \"$@\"");
    kiln_graph *g = small_graph(2);
    kiln_module *m = compile_c(g);
    int after_first = calls();
    assert_true(after_first >= 1); /* the build (and the OpenMP probe) ran */
    run_and_check(m);
    kiln_module *m2 = compile_c(g);
    assert_int_equal(calls(), after_first); /* a cache hit runs no compiler */
    run_and_check(m2);
    assert_int_equal(count_files(".so"), 1);
    kiln_module_free(m);
    kiln_module_free(m2);
    /* a different graph is a different key */
    kiln_graph *g3 = small_graph(3);
    kiln_module *m3 = compile_c(g3);
    assert_true(calls() > after_first);
    assert_int_equal(count_files(".so"), 2);
    kiln_module_free(m3);
    kiln_graph_free(g3);
    /* KILN_OPENMP=0 (single-threaded code) means other flags: another entry.
     * Toggle relative to the environment (the sanitizer run sets it to 0). */
    const char *omp = getenv("KILN_OPENMP");
    bool was_off = omp && strcmp(omp, "0") == 0;
    setenv("KILN_OPENMP", was_off ? "1" : "0", 1);
    kiln_module *m4 = compile_c(g);
    if (was_off)
        setenv("KILN_OPENMP", "0", 1);
    else
        unsetenv("KILN_OPENMP");
    kiln_module_free(m4);
    assert_int_equal(count_files(".so"), 3);
    kiln_graph_free(g);
}

static void test_no_compiler(void **state)
{
    (void)state;
    setenv("KILN_CC", "/nonexistent/kiln-cc", 1);
    kiln_graph *g = small_graph(2);
    kiln_module *m = (kiln_module *)&m;
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_COMPILE);
    assert_null(m);
    assert_graph_error(g, KILN_ERR_COMPILE,
                       "kiln_compile: KILN_CC is '/nonexistent/kiln-cc', which is not an "
                       "executable file");
    /* a directory is not a compiler (it passes access(X_OK)) */
    setenv("KILN_CC", "/tmp", 1);
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_COMPILE);
    assert_graph_error(g, KILN_ERR_COMPILE, "KILN_CC is '/tmp', which is not an executable file");
    /* none at all */
    unsetenv("KILN_CC");
    const char *path = getenv("PATH");
    char saved[4096];
    snprintf(saved, sizeof saved, "%s", path ? path : "/usr/bin:/bin");
    setenv("PATH", dir, 1);
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_COMPILE);
    assert_graph_error(g, KILN_ERR_COMPILE, "no C compiler found (tried clang, cc)");
    assert_graph_error(g, KILN_ERR_COMPILE, "KILN_TARGET_INTERP needs none");
    setenv("PATH", saved, 1);
    /* the interpreter target still works on the same graph */
    kiln_compile_opts interp = {.target = KILN_TARGET_INTERP};
    assert_int_equal(kiln_compile(g, &interp, &m), KILN_OK);
    run_and_check(m);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_compiler_diagnostics_and_source_path(void **state)
{
    (void)state;
    make_wrapper("cc-broken", "echo 'error: the compiler says boom' >&2\nexit 3");
    kiln_graph *g = small_graph(2);
    kiln_module *m = (kiln_module *)&m;
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_COMPILE);
    assert_null(m);
    assert_graph_error(g, KILN_ERR_COMPILE, "the compiler says boom");
    assert_graph_error(g, KILN_ERR_COMPILE, "(exit 3)");
    assert_graph_error(g, KILN_ERR_COMPILE, dir);          /* the kept source's path */
    assert_non_null(strstr(kiln_graph_error(g), ".c:\n")); /* ... which is a .c file */
    kiln_graph_free(g);
}

static void test_corrupted_entry_is_rebuilt(void **state)
{
    (void)state;
    make_wrapper("cc-count", "exec clang \"$@\"");
    kiln_graph *g = small_graph(2);
    kiln_module_free(compile_c(g));
    int before = calls();
    char cmd[400];
    /* overwrite bytes in the middle of the cached .so */
    snprintf(cmd, sizeof cmd,
             "f=$(ls '%s'/*.so) && printf 'garbage' | dd of=\"$f\" bs=1 seek=2000 conv=notrunc "
             "2>/dev/null",
             dir);
    assert_int_equal(system(cmd), 0);
    kiln_module *m = compile_c(g);
    assert_int_equal(calls(), before + 1); /* detected and rebuilt */
    run_and_check(m);
    kiln_module_free(m);
    /* the rebuilt entry is good again: a hit */
    kiln_module_free(compile_c(g));
    assert_int_equal(calls(), before + 1);
    /* an empty entry, and one that lost its checksum trailer, are rebuilt too */
    snprintf(cmd, sizeof cmd, "f=$(ls '%s'/*.so) && : > \"$f\"", dir);
    assert_int_equal(system(cmd), 0);
    kiln_module_free(compile_c(g));
    assert_int_equal(calls(), before + 2);
    snprintf(cmd, sizeof cmd, "f=$(ls '%s'/*.so) && truncate -s -24 \"$f\"", dir);
    assert_int_equal(system(cmd), 0);
    kiln_module_free(compile_c(g));
    assert_int_equal(calls(), before + 3);
    kiln_module_free(compile_c(g)); /* and it is whole again */
    assert_int_equal(calls(), before + 3);
    kiln_graph_free(g);
}

/* Path of the one cache entry in dir other than `not` ("" for none). */
static void find_entry(char *out, size_t cap, const char * not )
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -E '^[0-9a-f]{16}[.]so$'", dir);
    FILE *p = popen(cmd, "r");
    char name[64];
    out[0] = 0;
    while (fscanf(p, "%63s", name) == 1) {
        snprintf(out, cap, "%s/%s", dir, name);
        if (!not || strcmp(out, not ) != 0)
            break;
        out[0] = 0;
    }
    pclose(p);
}

static void test_misnamed_and_unloadable_entries_are_rebuilt(void **state)
{
    (void)state;
    make_wrapper("cc-count", "exec clang \"$@\"");
    kiln_graph *g = small_graph(2), *g3 = small_graph(3);
    kiln_module_free(compile_c(g));
    char a[400], b[400], cmd[900];
    find_entry(a, sizeof a, NULL);
    kiln_module_free(compile_c(g3));
    find_entry(b, sizeof b, a);
    assert_true(a[0] && b[0]);
    int before = calls();
    /* another key's whole entry under this key's name: the trailer is seeded
     * with the key, so it does not verify */
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", b, a);
    assert_int_equal(system(cmd), 0);
    kiln_module *m = compile_c(g);
    assert_int_equal(calls(), before + 1);
    run_and_check(m); /* scale 2, not 3 */
    kiln_module_free(m);
    /* bytes with a valid trailer that dlopen refuses: rebuilt as well */
    const char junk[] = "this is not a shared object";
    unsigned long long key = strtoull(strrchr(a, '/') + 1, NULL, 16);
    FILE *f = fopen(a, "wb");
    assert_non_null(f);
    fprintf(f, "%sKILNSO1\n%016llx", junk,
            (unsigned long long)XXH3_64bits_withSeed(junk, strlen(junk), key));
    fclose(f);
    m = compile_c(g);
    assert_int_equal(calls(), before + 2);
    run_and_check(m);
    kiln_module_free(m);
    kiln_module_free(compile_c(g));
    assert_int_equal(calls(), before + 2);
    kiln_graph_free(g);
    kiln_graph_free(g3);
}

/* Several threads of one process compiling one graph at once. */
static void *compile_thread(void *arg)
{
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(arg, NULL, &m);
    if (s == KILN_OK) {
        float x[3] = {-1, 2, 3}, y[3] = {0};
        int64_t ids[2] = {0, 3};
        kiln_module_set(m, "x", x, sizeof x);
        kiln_module_set(m, "ids", ids, sizeof ids);
        if (kiln_module_run(m, "f") != KILN_OK || kiln_module_get(m, "y", y, sizeof y) || y[2] != 6)
            s = KILN_ERR_INVALID;
    }
    kiln_module_free(m);
    return (void *)(intptr_t)s;
}

static void test_threads_compiling_at_once(void **state)
{
    (void)state;
    kiln_graph *gs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        gs[i] = small_graph(2); /* one graph per thread: builders are not thread-safe */
        assert_int_equal(pthread_create(&th[i], NULL, compile_thread, gs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        void *r;
        assert_int_equal(pthread_join(th[i], &r), 0);
        assert_int_equal((int)(intptr_t)r, KILN_OK);
        kiln_graph_free(gs[i]);
    }
    assert_int_equal(count_files(".so"), 1);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q -e tmp -e err", dir);
    assert_int_not_equal(system(cmd), 0); /* no temporary file left behind */
}

/* One threading runtime per process: with libgomp already loaded, the code is
 * built without -fopenmp, i.e. it is the KILN_OPENMP=0 entry. */
static void test_libgomp_host_gets_serial_code(void **state)
{
    (void)state;
    if (dlopen("libgomp.so.1", RTLD_NOW | RTLD_NOLOAD))
        ku_skip("libgomp is already loaded in this process: nothing to compare");
    kiln_graph *g = small_graph(2);
    const char *omp = getenv("KILN_OPENMP"); /* restored below (the sanitizer run sets 0) */
    bool was_off = omp && strcmp(omp, "0") == 0;
    setenv("KILN_OPENMP", "0", 1);
    kiln_module_free(compile_c(g));
    assert_int_equal(count_files(".so"), 1);
    pid_t kid = fork();
    assert_true(kid >= 0);
    if (kid == 0) {
        unsetenv("KILN_OPENMP"); /* OpenMP wanted: only libgomp's presence turns it off */
        if (!dlopen("libgomp.so.1", RTLD_NOW | RTLD_GLOBAL))
            _exit(77);
        kiln_module *m = NULL;
        if (kiln_compile(g, NULL, &m) != KILN_OK)
            _exit(1);
        kiln_module_free(m);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    if (!was_off)
        unsetenv("KILN_OPENMP");
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) == 77) {
        kiln_graph_free(g);
        ku_skip("no libgomp.so.1 on this machine");
    }
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(count_files(".so"), 1); /* the serial entry was reused */
    kiln_graph_free(g);
}

static void test_threads_option(void **state)
{
    (void)state;
    kiln_graph *g = small_graph(2);
    for (int t = 1; t <= 3; t += 2) {
        kiln_compile_opts o = {.threads = t};
        kiln_module *m = NULL;
        assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
        run_and_check(m);
        kiln_module_free(m);
    }
    assert_int_equal(count_files(".so"), 1); /* the thread count is a run-time value */
    kiln_graph_free(g);
}

static void test_two_processes_at_once(void **state)
{
    (void)state;
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        assert_true(kids[k] >= 0);
        if (kids[k] == 0) {
            kiln_graph *g = small_graph(2);
            kiln_module *m = NULL;
            if (kiln_compile(g, NULL, &m) != KILN_OK)
                _exit(1);
            float x[3] = {-1, 2, 3}, y[3];
            int64_t ids[2] = {1, 2};
            kiln_module_set(m, "x", x, sizeof x);
            kiln_module_set(m, "ids", ids, sizeof ids);
            if (kiln_module_run(m, "f") != KILN_OK || kiln_module_get(m, "y", y, sizeof y))
                _exit(2);
            _exit(y[2] == 6 ? 0 : 3);
        }
    }
    for (int k = 0; k < 2; k++) {
        int st;
        assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
        assert_true(WIFEXITED(st));
        assert_int_equal(WEXITSTATUS(st), 0);
    }
    assert_int_equal(count_files(".so"), 1);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q -e tmp -e err", dir);
    assert_int_not_equal(system(cmd), 0); /* no half-written files left */
}

static void test_dump_debug_and_source(void **state)
{
    (void)state;
    char dump[300], log[300];
    snprintf(dump, sizeof dump, "%s/dump", dir);
    snprintf(log, sizeof log, "%s/stderr", dir);
    setenv("KILN_DUMP", dump, 1);
    setenv("KILN_DEBUG", "1", 1);
    fflush(stderr);
    int saved = dup(2);
    FILE *f = freopen(log, "w", stderr);
    assert_non_null(f);
    kiln_graph *g = small_graph(2);
    kiln_module *m = compile_c(g);
    kiln_module *m2 = compile_c(g);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    unsetenv("KILN_DEBUG");
    unsetenv("KILN_DUMP");
    char *text = ku_read_file(log, NULL);
    assert_non_null(text);
    /* one line per compile, in order: the first builds, the second hits */
    char *miss = strstr(text, "kiln: compiled ");
    assert_non_null(miss);
    int kernels = 0, groups = -1;
    long long bytes = -1, bound = -1;
    double ms = -1;
    char what[8] = "", exec[16] = "";
    assert_int_equal(sscanf(miss,
                            "kiln: compiled %d kernels (%d fused groups) for %15s %lld bytes arena "
                            "(liveness lower bound %lld), %lf ms, cache %7s",
                            &kernels, &groups, exec, &bytes, &bound, &ms, what),
                     7);
    assert_string_equal(exec, "c,");
    assert_true(kernels >= 2 && groups >= 1 && groups <= kernels && ms > 0);
    assert_true(bound >= 0 && bytes >= bound);
    assert_string_equal(what, "miss");
    char *hit = strstr(miss + 1, "kiln: compiled ");
    assert_non_null(hit);
    assert_non_null(strstr(hit, "cache hit\n"));
    assert_null(strstr(hit + 1, "kiln: compiled ")); /* exactly two lines */
    free(text);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls '%s'/*.c >/dev/null 2>&1", dump);
    assert_int_equal(system(cmd), 0);
    /* the generated source, also from a cache hit */
    const char *src = kiln_module_source(m2);
    assert_non_null(strstr(src, "kiln_entry_0"));
    assert_non_null(strstr(src, "_relu"));
    assert_string_equal(src, kiln_module_source(m));
    kiln_module_free(m);
    kiln_module_free(m2);
    kiln_graph_free(g);
}

static void test_cache_dir_fallbacks(void **state)
{
    (void)state;
    char xdg[300], home[300], opt[300], cmd[400];
    snprintf(xdg, sizeof xdg, "%s/xdg", dir);
    snprintf(home, sizeof home, "%s/home", dir);
    snprintf(opt, sizeof opt, "%s/opt/nested", dir);
    const char *old_home = getenv("HOME");
    char saved_home[300];
    snprintf(saved_home, sizeof saved_home, "%s", old_home ? old_home : "/");
    unsetenv("KILN_CACHE_DIR");
    setenv("XDG_CACHE_HOME", xdg, 1);
    kiln_graph *g = small_graph(2);
    kiln_module_free(compile_c(g));
    snprintf(cmd, sizeof cmd, "ls '%s'/kiln/*.so >/dev/null 2>&1", xdg);
    assert_int_equal(system(cmd), 0);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", home, 1);
    kiln_module_free(compile_c(g));
    snprintf(cmd, sizeof cmd, "ls '%s'/.cache/kiln/*.so >/dev/null 2>&1", home);
    assert_int_equal(system(cmd), 0);
    kiln_compile_opts o = {.cache_dir = opt}; /* opts->cache_dir wins over everything */
    setenv("KILN_CACHE_DIR", dir, 1);
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    kiln_module_free(m);
    snprintf(cmd, sizeof cmd, "ls '%s'/*.so >/dev/null 2>&1", opt);
    assert_int_equal(system(cmd), 0);
    /* an unusable cache directory is an I/O error naming it */
    kiln_compile_opts bad = {.cache_dir = "/proc/kiln-cannot-create"};
    assert_int_equal(kiln_compile(g, &bad, &m), KILN_ERR_IO);
    assert_graph_error(g, KILN_ERR_IO, "cannot create the cache directory '/proc/kiln-cannot");
    setenv("HOME", saved_home, 1);
    kiln_graph_free(g);
}

/* A compiler that exits 0 but writes no shared object (or an empty one) is
 * an error naming it, and nothing is sealed into the cache: the next compile
 * with a working compiler succeeds. */
static void test_compiler_that_writes_nothing(void **state)
{
    (void)state;
    kiln_graph *g = small_graph(2);
    kiln_module *m = NULL;
    setenv("KILN_CC", "/bin/true", 1);
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_COMPILE);
    assert_graph_error(g, KILN_ERR_COMPILE, "the compiler '/bin/true' exited 0 on");
    assert_graph_error(g, KILN_ERR_COMPILE, "but wrote no shared object");
    make_wrapper("cc-empty",
                 "while [ $# -gt 0 ]; do\n  if [ \"$1\" = -o ]; then : > \"$2\"; fi\n  shift\n"
                 "done\nexit 0");
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_COMPILE);
    assert_graph_error(g, KILN_ERR_COMPILE, "but wrote no shared object");
    assert_int_equal(count_files(".so"), 0);
    /* a compiler that cannot be executed (no #! line, not ELF), one killed by a signal */
    char path[300];
    snprintf(path, sizeof path, "%s/cc-text", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not a program\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0755), 0);
    setenv("KILN_CC", path, 1);
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_COMPILE);
    assert_graph_error(g, KILN_ERR_COMPILE, "cannot run the compiler '");
    assert_graph_error(g, KILN_ERR_COMPILE, "Exec format error");
    make_wrapper("cc-killed", "kill -9 $$");
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_COMPILE);
    assert_graph_error(g, KILN_ERR_COMPILE, "failed (killed by signal or -1) on");
    unsetenv("KILN_CC");
    m = compile_c(g);
    run_and_check(m);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* Kiln runs the code it finds in its cache: the directory must be this
 * user's and writable by no one else (as ssh demands of ~/.ssh); Kiln makes
 * it 0700; a path starting with '-' never reaches the compiler as an option. */
static void test_cache_dir_must_be_ours(void **state)
{
    (void)state;
    char sub[300], cmd[700];
    kiln_graph *g = small_graph(2);
    kiln_module *m = NULL;
    /* made by Kiln: 0700 */
    snprintf(sub, sizeof sub, "%s/fresh", dir);
    kiln_compile_opts o = {.cache_dir = sub};
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    kiln_module_free(m);
    struct stat st;
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* writable by others */
    snprintf(sub, sizeof sub, "%s/open", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(chmod(sub, 0777), 0);
    assert_int_equal(kiln_compile(g, &o, &m), KILN_ERR_INVALID);
    assert_null(m);
    assert_graph_error(g, KILN_ERR_INVALID, "may be written by others (mode 777)");
    assert_int_equal(chmod(sub, 0770), 0);
    assert_int_equal(kiln_compile(g, &o, &m), KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID, "may be written by others (mode 770)");
    /* someone else's (as root: give it away; otherwise /tmp's sticky root dir is not ours) */
    if (geteuid() == 0) {
        snprintf(sub, sizeof sub, "%s/theirs", dir);
        assert_int_equal(mkdir(sub, 0700), 0);
        assert_int_equal(chown(sub, 65534, 65534), 0);
    } else {
        snprintf(sub, sizeof sub, "/");
    }
    assert_int_equal(kiln_compile(g, &o, &m), KILN_ERR_INVALID);
    assert_graph_error(g, KILN_ERR_INVALID, "belongs to another user");
    /* a file where the directory should be */
    snprintf(sub, sizeof sub, "%s/afile", dir);
    FILE *f = fopen(sub, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(kiln_compile(g, &o, &m), KILN_ERR_IO);
    assert_graph_error(g, KILN_ERR_IO, "/afile' is not a directory");
    /* a relative path that looks like an option */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(dir), 0);
    kiln_compile_opts dash = {.cache_dir = "-Bdash"};
    assert_int_equal(kiln_compile(g, &dash, &m), KILN_OK);
    run_and_check(m);
    kiln_module_free(m);
    assert_int_equal(chdir(cwd), 0);
    snprintf(cmd, sizeof cmd, "ls '%s'/-Bdash/*.so >/dev/null 2>&1", dir);
    assert_int_equal(system(cmd), 0);
    kiln_graph_free(g);
}

/* What killed builders leave (temporaries of processes that are gone) is
 * removed by the next build in the directory; a live builder's are kept. A
 * cache entry that is a directory, or a probe answer that is garbage, is
 * rebuilt rather than trusted. */
static void test_leftovers_are_cleaned(void **state)
{
    (void)state;
    char dead[400], live[400], young[400];
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    assert_true(pid > 0);
    waitpid(pid, NULL, 0);
    snprintf(dead, sizeof dead, "%s/0123456789abcdef.so.tmp.%ld.7", dir, (long)pid);
    snprintf(young, sizeof young, "%s/0123456789abcdef.so.tmp.%ld.8.err", dir, (long)pid);
    snprintf(live, sizeof live, "%s/0123456789abcdef.so.tmp.%ld.9", dir, (long)getpid());
    const char *files[] = {dead, young, live};
    for (int i = 0; i < 3; i++) {
        FILE *f = fopen(files[i], "w");
        assert_non_null(f);
        fclose(f);
    }
    struct timeval old[2] = {{time(NULL) - 3600, 0}, {time(NULL) - 3600, 0}};
    assert_int_equal(utimes(dead, old), 0);
    assert_int_equal(utimes(live, old), 0);
    kiln_graph *g = small_graph(3);
    kiln_module_free(compile_c(g));
    assert_int_not_equal(access(dead, F_OK), 0); /* gone */
    assert_int_equal(access(young, F_OK), 0);    /* too recent to judge */
    assert_int_equal(access(live, F_OK), 0);     /* its builder runs */
    kiln_graph_free(g);

    /* a directory where the entry should be */
    g = small_graph(2);
    kiln_module_free(compile_c(g));
    char cmd[700];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && for f in [0-9a-f]*.so; do rm \"$f\" && mkdir \"$f\"; done", dir);
    assert_int_equal(system(cmd), 0);
    kiln_module *m = compile_c(g);
    run_and_check(m);
    kiln_module_free(m);
    /* ... and one that cannot be removed (not empty) is an error naming it */
    snprintf(cmd, sizeof cmd,
             "cd '%s' && for f in [0-9a-f]*.so; do rm -r \"$f\" && mkdir \"$f\" && touch \"$f/x\"; "
             "done",
             dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_ERR_IO);
    assert_graph_error(g, KILN_ERR_IO, "is not a file and cannot be removed");
    snprintf(cmd, sizeof cmd, "cd '%s' && rm -r [0-9a-f]*.so", dir);
    assert_int_equal(system(cmd), 0);
    kiln_graph_free(g);

    /* a garbage OpenMP probe answer is probed again, not read as "no" */
    if (!getenv("KILN_OPENMP")) {
        snprintf(cmd, sizeof cmd, "cd '%s' && for f in openmp-*; do printf 'x' > \"$f\"; done",
                 dir);
        assert_int_equal(system(cmd), 0);
        g = small_graph(5);
        kiln_module_free(compile_c(g));
        snprintf(cmd, sizeof cmd, "cd '%s' && test \"$(cat openmp-*)\" = 1", dir);
        assert_int_equal(system(cmd), 0);
        kiln_graph_free(g);
    }
}

/* A caller killed mid-compile leaves no compiler running (PR_SET_PDEATHSIG). */
static void test_killed_caller_kills_the_compiler(void **state)
{
    (void)state;
    char pidfile[300], body[600];
    snprintf(pidfile, sizeof pidfile, "%s/cc.pid", dir);
    snprintf(body, sizeof body, "echo $$ > '%s'\nexec sleep 30", pidfile);
    make_wrapper("cc-slow", body);
    pid_t child = fork();
    if (child == 0) {
        kiln_graph *g = small_graph(6);
        kiln_module *m = NULL;
        kiln_compile(g, NULL, &m);
        _exit(0);
    }
    assert_true(child > 0);
    long cc = 0;
    for (int i = 0; i < 200 && cc <= 0; i++) { /* up to 10 s for it to start */
        usleep(50000);
        FILE *f = fopen(pidfile, "r");
        if (f) {
            if (fscanf(f, "%ld", &cc) != 1)
                cc = 0;
            fclose(f);
        }
    }
    assert_true(cc > 0);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) { /* up to 5 s */
        char stat[64], state_ = 0;
        snprintf(stat, sizeof stat, "/proc/%ld/stat", cc);
        FILE *f = fopen(stat, "r");
        if (!f) {
            gone = true;
            break;
        }
        gone = fscanf(f, "%*d %*s %c", &state_) == 1 && state_ == 'Z';
        fclose(f);
        if (!gone)
            usleep(50000);
    }
    if (!gone)
        kill((pid_t)cc, SIGKILL);
    assert_true(gone);
    unsetenv("KILN_CC");
}

static void test_run_time_errors_leave_params(void **state)
{
    (void)state;
    kiln_graph *g = small_graph(2);
    kiln_module *m = compile_c(g);
    float x[3] = {1, 2, 3}, table[8];
    int64_t ids[2] = {1, 7};
    kiln_module_set(m, "x", x, sizeof x);
    kiln_module_set(m, "ids", ids, sizeof ids);
    kiln_status s = kiln_module_run(m, "f");
    assert_module_error(m, s, KILN_ERR_INVALID,
                        "index 7 is out of bounds for dimension 0 with size 4");
    assert_int_equal(kiln_module_get(m, "table", table, sizeof table), KILN_OK);
    for (int i = 0; i < 8; i++)
        assert_true(table[i] == 1); /* the assign was not applied */
    ids[1] = 2;
    kiln_module_set(m, "ids", ids, sizeof ids);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    assert_int_equal(kiln_module_get(m, "table", table, sizeof table), KILN_OK);
    assert_true(table[0] == 2 && table[7] == 2);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_bind_is_zero_copy(void **state)
{
    (void)state;
    kiln_graph *g = small_graph(2);
    kiln_module *m = compile_c(g);
    float x[3] = {1, -2, 3}, y[3] = {0};
    int64_t ids[2] = {0, 1};
    assert_int_equal(kiln_module_bind(m, "x", x), KILN_OK);
    assert_int_equal(kiln_module_bind(m, "y", y), KILN_OK);
    kiln_module_set(m, "ids", ids, sizeof ids);
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    assert_true(y[0] == 2 && y[1] == 0 && y[2] == 6);
    x[0] = 5; /* the module reads the user's memory on every run */
    assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
    assert_true(y[0] == 10);
    kiln_module_free(m);
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_miss_then_hit_starts_no_process, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_compiler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compiler_diagnostics_and_source_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupted_entry_is_rebuilt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_misnamed_and_unloadable_entries_are_rebuilt, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_two_processes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_compiling_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_option, setup, teardown),
        cmocka_unit_test_setup_teardown(test_libgomp_host_gets_serial_code, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump_debug_and_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_dir_fallbacks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compiler_that_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_dir_must_be_ours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leftovers_are_cleaned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_killed_caller_kills_the_compiler, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_time_errors_leave_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_is_zero_copy, setup, teardown),
    };
    return ku_exit(cmocka_run_group_tests(tests, NULL, NULL));
}
