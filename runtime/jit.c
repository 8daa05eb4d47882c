/*
 * jit.c - the C target: pass pipeline -> C source -> clang -> .so -> dlopen,
 * with a content-addressed compile cache, and the executor that runs it.
 *
 * Cache: <dir>/<key>.so where key = XXH3-64 of (source, flags, compiler
 * identity, host CPU). The entry is the shared object followed by a 24-byte
 * trailer, "KILNSO1\n" and the XXH3-64 (seeded with the key, 16 hex digits) of
 * the bytes before it; the loader ignores bytes past the ELF contents. The
 * trailer is checked before every load, so a truncated, overwritten or
 * misnamed entry is detected and rebuilt. One file per entry means one rename
 * publishes it: there is no pair of files that concurrent builders (or a
 * compiler that is not bit-reproducible) could leave mismatched. Every file
 * is written under a name unique to the process and call, fsync'd and
 * renamed into place, so concurrent processes never see half a file and two
 * processes building one key both succeed. <key>.c, the source, stays next
 * to the entry for diagnostics. A cached compile starts no process: the
 * compiler identity is its resolved path, size and mtime (read once per
 * process), and the OpenMP probe's answer is cached on disk.
 *
 * KILN_OPENMP=0 compiles without -fopenmp (single-threaded generated code).
 *
 * One threading runtime per process: libkiln links no OpenMP; generated code
 * uses clang's -fopenmp (libomp). If libgomp is already loaded (a host program
 * built with gcc -fopenmp), the code is compiled without -fopenmp instead.
 */
#include "codegen/c/cgen.h"
#include "ir/kernel.h"
#include "passes/passes.h"
#include "rt.h"
#include "runtime/abi.h"
#include "runtime/fsutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

extern char **environ;

KILN_CTX_DEF

typedef int (*entry_fn)(kiln_ctx *);

typedef struct {
    void *handle;
    kiln_graph *pg; /* the pipeline's own copy of the graph (prog->g) */
    kprogram *prog;
    char *source;
    entry_fn *entries;
    void ***bufs;    /* per entry: the pointer table handed to the code */
    void **arena;    /* per entry: TEMP storage */
    void **stash;    /* per entry that can fail: a copy of its outputs, restored on failure */
    int threads;     /* kiln_compile_opts.threads: 0 = every core */
    kiln_prof *prof; /* per kernel id: calls and ns, kept by the generated code */
    int *modbuf;     /* per program buffer: the module buffer it is (inputs, params,
                        outputs), else -1; looked up once, read on every run */
} cexec;

/* ---- small helpers ---------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int debug_level(void)
{
    const char *d = getenv("KILN_DEBUG");
    return d ? atoi(d) : 0;
}

/* A file name suffix unique to this process and call: "<pid>.<n>". Temporary
 * files of concurrent builders (other processes, other threads) never clash. */
static void unique_suffix(char *out, size_t cap)
{
    static atomic_uint seq;
    snprintf(out, cap, "%ld.%u", (long)getpid(), atomic_fetch_add(&seq, 1u));
}

/* ---- the compiler --------------------------------------------------------------- */

typedef struct {
    char path[4096]; /* resolved compiler, "" when none */
    char ident[4200];
    char from[4200]; /* the KILN_CC value this was resolved for */
} compiler;

static bool find_in_path(const char *name, char *out, size_t cap)
{
    if (strchr(name, '/')) {
        snprintf(out, cap, "%s", name);
        return access(out, X_OK) == 0;
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(out, cap, "%.*s/%s", (int)len, len ? path : ".", name);
        if (access(out, X_OK) == 0)
            return true;
        path += len + (end ? 1 : 0);
    }
    return false;
}

static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;

/* The compiler: $KILN_CC, else clang, else cc. Resolved once per process (again
 * only when KILN_CC changes), so a cached compile starts no process. The
 * answer is copied out under a lock: compiles may run on several threads. */
static void find_compiler(compiler *out)
{
    static compiler c;
    static bool done;
    pthread_mutex_lock(&probe_lock);
    const char *env = getenv("KILN_CC");
    if (!done || strcmp(c.from, env ? env : "") != 0) {
        memset(&c, 0, sizeof c);
        snprintf(c.from, sizeof c.from, "%s", env ? env : "");
        done = true;
        bool found = env && *env ? find_in_path(env, c.path, sizeof c.path)
                                 : find_in_path("clang", c.path, sizeof c.path) ||
                                       find_in_path("cc", c.path, sizeof c.path);
        struct stat st;
        char real[4096];
        if (!found || stat(c.path, &st) != 0)
            c.path[0] = 0;
        else
            snprintf(c.ident, sizeof c.ident, "%s:%lld:%lld",
                     realpath(c.path, real) ? real : c.path, (long long)st.st_size,
                     (long long)st.st_mtime);
    }
    *out = c;
    pthread_mutex_unlock(&probe_lock);
}

/* The host CPU's feature flags: -march=native code is only valid on a CPU like
 * the one that built it, so they are part of the cache key. */
static uint64_t cpu_identity(void)
{
    static uint64_t id;
    static bool done;
    pthread_mutex_lock(&probe_lock);
    if (!done) {
        size_t len = 0;
        char *info = rt_read_file("/proc/cpuinfo", &len);
        if (info) {
            const char *flags = strstr(info, "\nflags");
            const char *model = strstr(info, "model name");
            const char *end = flags ? strchr(flags + 1, '\n') : NULL;
            if (flags && end)
                id = XXH3_64bits(flags, (size_t)(end - flags));
            if (model)
                id ^= XXH3_64bits(model, strcspn(model, "\n"));
            ir_free(info);
            done = true; /* an allocation failure is retried next time */
        }
    }
    uint64_t r = id;
    pthread_mutex_unlock(&probe_lock);
    return r;
}

/* Runs argv (in directory cwd, NULL: this one) with stderr captured into
 * errpath; returns the exit status or -1. */
static int run_process(char *const argv[], const char *cwd, const char *errpath)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (cwd)
        posix_spawn_file_actions_addchdir_np(&fa, cwd);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return -1;
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The compiler flags, also hashed into the cache key. -fno-unroll-loops:
 * unrolling every vectorised loop tripled clang's time (loop strength
 * reduction over the copies) and made the step no faster; the GEMM tile
 * functions are where unrolling would pay, and the packed microkernel of the
 * CPU performance work unrolls itself. -fno-math-errno: generated code never
 * reads errno, and without it sqrtf is a call behind a branch that stops the
 * loop vectorizer. */
static const char *const cflags[] = {"-O2",   "-march=native",   "-fno-unroll-loops",
                                     "-fPIC", "-fno-math-errno", "-shared"};
enum { NCFLAGS = sizeof cflags / sizeof cflags[0], MAXARGS = NCFLAGS + 10 };

/* The compiler's argv (NULL-terminated; its strings are the arguments'):
 * cc FLAGS [-fopenmp] [-Wl,-Bsymbolic] -o out src -lm. Exports bind their own
 * symbols (-Bsymbolic): two exported models in one program never call each
 * other's kiln_entry_<i>. */
static int cc_argv(const char *cc, bool openmp, bool exported, const char *out, const char *src,
                   const char *argv[MAXARGS])
{
    int n = 0;
    argv[n++] = cc;
    for (int i = 0; i < NCFLAGS; i++)
        argv[n++] = cflags[i];
    if (openmp)
        argv[n++] = "-fopenmp";
    if (exported)
        argv[n++] = "-Wl,-Bsymbolic";
    argv[n++] = "-o";
    argv[n++] = out;
    argv[n++] = src;
    argv[n++] = "-lm";
    argv[n] = NULL;
    return n;
}

static int compile_c(const char *cc, const char *src, const char *out, bool openmp, bool exported,
                     const char *cwd, const char *errpath)
{
    const char *args[MAXARGS];
    int n = cc_argv(cc, openmp, exported, out, src, args);
    /* posix_spawn takes char *const argv[]: give it mutable copies */
    char store[MAXARGS][4400], *argv[MAXARGS];
    for (int i = 0; i < n; i++) {
        snprintf(store[i], sizeof store[i], "%s", args[i]);
        argv[i] = store[i];
    }
    argv[n] = NULL;
    return run_process(argv, cwd, errpath);
}

/* Whether -fopenmp works with this compiler; the answer is kept in the cache
 * dir (keyed by compiler identity) so later processes need not probe. */
static bool openmp_works(const compiler *cc, const char *dir)
{
    const char *env = getenv("KILN_OPENMP");
    if (env && strcmp(env, "0") == 0) /* asked for single-threaded code */
        return false;
    void *gomp = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (gomp) { /* the host already runs libgomp: do not bring libomp in too */
        dlclose(gomp);
        return false;
    }
    char path[4300];
    snprintf(path, sizeof path, "%s/openmp-%016llx", dir,
             (unsigned long long)XXH3_64bits(cc->ident, strlen(cc->ident)));
    size_t len = 0;
    char *ans = rt_read_file(path, &len);
    if (ans) {
        bool yes = ans[0] == '1';
        ir_free(ans);
        return yes;
    }
    /* names of this process and call: a concurrent prober must not delete the
     * source this one is compiling (that would cache a wrong "no") */
    char src[4400], so[4400], err[4400], uniq[48];
    unique_suffix(uniq, sizeof uniq);
    snprintf(src, sizeof src, "%s.%s.c", path, uniq);
    snprintf(so, sizeof so, "%s.%s.so", path, uniq);
    snprintf(err, sizeof err, "%s.%s.err", path, uniq);
    static const char probe[] =
        "#include <omp.h>\nint kiln_probe(void) { int n = 0;\n"
        "#pragma omp parallel reduction(+:n)\n n += omp_get_num_threads() > 0;"
        "\nreturn n; }\n";
    bool yes = rt_write_atomic(src, probe, sizeof probe - 1) &&
               compile_c(cc->path, src, so, true, false, NULL, err) == 0;
    if (yes) { /* it must also load */
        void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        yes = h != NULL;
        if (h)
            dlclose(h);
    }
    unlink(so);
    unlink(err);
    unlink(src);
    rt_write_atomic(path, yes ? "1" : "0", 1);
    return yes;
}

static bool cache_dir(const kiln_compile_opts *opts, char *out, size_t cap)
{
    const char *d = opts && opts->cache_dir ? opts->cache_dir : getenv("KILN_CACHE_DIR");
    if (d && *d)
        snprintf(out, cap, "%s", d);
    else if ((d = getenv("XDG_CACHE_HOME")) && *d)
        snprintf(out, cap, "%s/kiln", d);
    else if ((d = getenv("HOME")) && *d)
        snprintf(out, cap, "%s/.cache/kiln", d);
    else
        snprintf(out, cap, "/tmp/kiln-cache-%ld", (long)getuid());
    return rt_mkdir_p(out);
}

#define TRAILER_MAGIC "KILNSO1\n"
enum { TRAILER_BYTES = 24 }; /* magic (8) + 16 hex digits */

/* The trailer of an entry whose shared object is bytes[0, n) under key. */
static void make_trailer(char out[TRAILER_BYTES + 1], const void *bytes, size_t n, uint64_t key)
{
    snprintf(out, TRAILER_BYTES + 1, "%s%016llx", TRAILER_MAGIC,
             (unsigned long long)XXH3_64bits_withSeed(bytes, n, key));
}

/* Loads the entry <so> when its trailer matches its bytes and key; NULL when
 * it is absent, corrupt or does not load (the caller rebuilds it). */
static void *load_checked(const char *so, uint64_t key)
{
    size_t n = 0;
    char *bytes = rt_read_file(so, &n);
    bool ok = false;
    if (bytes && n > TRAILER_BYTES) {
        char want[TRAILER_BYTES + 1];
        make_trailer(want, bytes, n - TRAILER_BYTES, key);
        ok = memcmp(bytes + n - TRAILER_BYTES, want, TRAILER_BYTES) == 0;
    }
    ir_free(bytes);
    return ok ? dlopen(so, RTLD_NOW | RTLD_LOCAL) : NULL;
}

/* Appends the entry trailer to the freshly built shared object at tmp. */
static bool seal_entry(const char *tmp, uint64_t key)
{
    size_t n = 0;
    char *bytes = rt_read_file(tmp, &n);
    if (!bytes)
        return false;
    char trailer[TRAILER_BYTES + 1];
    make_trailer(trailer, bytes, n, key);
    ir_free(bytes);
    int fd = open(tmp, O_WRONLY | O_APPEND);
    if (fd < 0)
        return false;
    bool ok = write(fd, trailer, TRAILER_BYTES) == TRAILER_BYTES;
    ok = fsync(fd) == 0 && ok;
    return close(fd) == 0 && ok;
}

/* Compiles (or finds in the cache) and loads the source. Errors go on g. */
static void *build(kiln_graph *g, const kiln_compile_opts *opts, const char *source, bool *hit)
{
    compiler cstore;
    find_compiler(&cstore);
    const compiler *cc = &cstore;
    if (!cc->path[0]) {
        ir_fail(g, KILN_ERR_COMPILE,
                "kiln_compile: no C compiler found (tried %s); KILN_TARGET_INTERP needs none",
                getenv("KILN_CC") && *getenv("KILN_CC") ? "$KILN_CC" : "clang, cc");
        return NULL;
    }
    char dir[4096];
    if (!cache_dir(opts, dir, sizeof dir)) {
        ir_fail(g, KILN_ERR_IO, "kiln_compile: cannot create the cache directory '%s': %s", dir,
                strerror(errno));
        return NULL;
    }
    bool omp = openmp_works(cc, dir);
    XXH3_state_t *st = XXH3_createState();
    if (!st) {
        ir_fail(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
        return NULL;
    }
    uint64_t cpu = cpu_identity();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, source, strlen(source) + 1);
    for (int i = 0; i < NCFLAGS; i++)
        XXH3_64bits_update(st, cflags[i], strlen(cflags[i]) + 1);
    XXH3_64bits_update(st, &omp, sizeof omp);
    XXH3_64bits_update(st, cc->ident, strlen(cc->ident) + 1);
    XXH3_64bits_update(st, &cpu, sizeof cpu);
    uint64_t key = XXH3_64bits_digest(st);
    XXH3_freeState(st);

    char so[4400], src[4400], tmp[4500], err[4500];
    snprintf(so, sizeof so, "%s/%016llx.so", dir, (unsigned long long)key);
    snprintf(src, sizeof src, "%s/%016llx.c", dir, (unsigned long long)key);
    const char *dump = getenv("KILN_DUMP");
    if (dump && *dump && rt_mkdir_p(dump)) {
        char dpath[4400];
        snprintf(dpath, sizeof dpath, "%s/%016llx.c", dump, (unsigned long long)key);
        rt_write_atomic(dpath, source, strlen(source));
    }
    void *h = load_checked(so, key);
    *hit = h != NULL;
    if (h)
        return h;

    /* miss (or a corrupt entry): build into a unique name, then publish */
    if (!rt_write_atomic(src, source, strlen(source))) {
        ir_fail(g, KILN_ERR_IO, "kiln_compile: cannot write '%s': %s", src, strerror(errno));
        return NULL;
    }
    char uniq[48];
    unique_suffix(uniq, sizeof uniq);
    snprintf(tmp, sizeof tmp, "%s.%s.tmp", so, uniq);
    snprintf(err, sizeof err, "%s.%s.err", so, uniq);
    int rc = compile_c(cc->path, src, tmp, omp, false, NULL, err);
    if (rc != 0) {
        size_t n = 0;
        char *diag = rt_read_file(err, &n);
        ir_fail(g, KILN_ERR_COMPILE, "kiln_compile: %s failed (exit %d) on %s:\n%.700s", cc->path,
                rc, src, diag ? diag : "(no diagnostics)");
        ir_free(diag);
        unlink(err);
        unlink(tmp);
        return NULL;
    }
    unlink(err);
    if (!seal_entry(tmp, key) || rename(tmp, so) != 0) {
        ir_fail(g, KILN_ERR_IO, "kiln_compile: cannot write the cache entry '%s': %s", so,
                strerror(errno));
        unlink(tmp);
        return NULL;
    }
    /* A concurrent builder may have renamed its own (whole, sealed) entry over
     * ours meanwhile: either one loads. A failure here is the loader's. */
    h = load_checked(so, key);
    if (!h) {
        const char *why = dlerror();
        ir_fail(g, KILN_ERR_LOAD, "kiln_compile: cannot load '%s': %s", so,
                why ? why : "the entry changed while it was loaded");
    }
    return h;
}

/* ---- the executor --------------------------------------------------------------- */

static void cexec_destroy(kiln_module *m)
{
    cexec *c = m->impl;
    if (!c)
        return;
    if (c->prog) {
        for (int e = 0; e < c->prog->nentries; e++) {
            if (c->bufs)
                ir_free(c->bufs[e]);
            if (c->arena)
                ir_free(c->arena[e]);
            if (c->stash)
                ir_free(c->stash[e]);
        }
        kp_free(c->prog);
    }
    kiln_graph_free(c->pg);
    ir_free(c->bufs);
    ir_free(c->arena);
    ir_free(c->stash);
    ir_free(c->entries);
    ir_free(c->prof);
    ir_free(c->modbuf);
    ir_free(c->source);
    if (c->handle)
        dlclose(c->handle);
    ir_free(c);
    m->impl = NULL;
}

static rt_buf *named(kiln_module *m, const char *name)
{
    for (int i = 0; i < m->nbufs; i++)
        if (m->bufs[i].role != RT_OUTPUT && strcmp(m->bufs[i].name, name) == 0)
            return &m->bufs[i];
    return NULL;
}

static kiln_status cexec_run(kiln_module *m, int e, const bool *needed)
{
    (void)needed;
    cexec *c = m->impl;
    const kprogram *p = c->prog;
    void **bufs = c->bufs[e];
    /* module storage may move (bind), so the table is refreshed every run */
    for (int i = 0; i < p->nbufs; i++) {
        const kbuf *b = &p->bufs[i];
        switch (b->role) {
        case KB_INPUT:
        case KB_PARAM:
        case KB_OUTPUT: bufs[i] = m->bufs[c->modbuf[i]].data; break;
        case KB_TEMP: bufs[i] = (char *)c->arena[e] + b->offset; break;
        case KB_CONST: memcpy(&bufs[i], &b->data, sizeof(void *)); break; /* read-only */
        }
    }
    /* A failed run changes nothing, as on the interpreter: the entry stops at
     * the first failing kernel and applies no assign (params are untouched),
     * and an entry that can fail has its outputs stashed first. */
    const ir_entry *x = &m->g->entries[e];
    if (c->stash[e]) {
        char *at = c->stash[e];
        for (int i = 0; i < x->n; i++) {
            const rt_buf *b = &m->bufs[m->entry_buf[e] + i];
            memcpy(at, b->data, b->nbytes);
            at += b->nbytes;
        }
    }
    kiln_ctx ctx = {
        .bufs = bufs, .prof = c->prof, .seed = m->g->seed, .run = m->run, .threads = c->threads};
    int rc = c->entries[e](&ctx);
    if (rc == KILN_RUNERR_NONE)
        return KILN_OK;
    if (c->stash[e]) {
        const char *at = c->stash[e];
        for (int i = 0; i < x->n; i++) {
            const rt_buf *b = &m->bufs[m->entry_buf[e] + i];
            memcpy(b->data, at, b->nbytes);
            at += b->nbytes;
        }
    }
    if (rc == KILN_RUNERR_INDEX)
        return rt_fail(m, KILN_ERR_INVALID,
                       "kiln_module_run: index %lld is out of bounds for dimension %d with size "
                       "%lld",
                       (long long)ctx.err_index, ctx.err_axis, (long long)ctx.err_size);
    if (rc == KILN_RUNERR_ZERO_DIV)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_run: ZeroDivisionError");
    return rt_fail(m, KILN_ERR_INVALID,
                   "kiln_module_run: Integers to negative integer powers are not allowed.");
}

static const char *cexec_source(kiln_module *m)
{
    return ((cexec *)m->impl)->source;
}

/* One row per kernel that ran, the most time first. */
static void cexec_profile(kiln_module *m, FILE *f)
{
    const cexec *c = m->impl;
    const kprogram *p = c->prog;
    uint64_t total = 0;
    int *order = ir_alloc(sizeof(int) * (size_t)(p->nkernels ? p->nkernels : 1)), n = 0;
    if (!order)
        return;
    for (int k = 0; k < p->nkernels; k++)
        if (c->prof[k].calls) {
            total += c->prof[k].ns;
            int at = n++;
            while (at > 0 && c->prof[order[at - 1]].ns < c->prof[k].ns) {
                order[at] = order[at - 1];
                at--;
            }
            order[at] = k;
        }
    fprintf(f, "%-32s %10s %12s %12s %7s\n", "kernel", "calls", "total ms", "mean us", "share");
    for (int i = 0; i < n; i++) {
        const kiln_prof *q = &c->prof[order[i]];
        fprintf(f, "%-32s %10llu %12.3f %12.2f %6.1f%%\n", p->kernels[order[i]].name,
                (unsigned long long)q->calls, (double)q->ns / 1e6,
                (double)q->ns / 1e3 / (double)q->calls,
                total ? 100.0 * (double)q->ns / (double)total : 0.0);
    }
    ir_free(order);
}

const rt_executor rt_cexec = {"c", cexec_run, cexec_source, cexec_profile, cexec_destroy};

/* Lowers m's graph, renders it and allocates the run-time tables. */
kiln_status rt_cexec_prepare(kiln_module *m, kiln_graph *g, const kiln_compile_opts *opts,
                             const char *fn)
{
    cexec *c = ir_alloc(sizeof *c);
    if (!c)
        return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    memset(c, 0, sizeof *c);
    m->impl = c;
    m->exec = &rt_cexec;
    c->threads = opts && opts->threads > 0 ? opts->threads : 0;
    /* the pipeline rewrites its graph (DCE renumbers): give it its own copy so
     * the module's layout keeps the user's node ids */
    kiln_graph *pg = c->pg = ir_graph_clone(m->g);
    if (!pg)
        return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    kiln_status s = pass_pipeline(pg, &c->prog);
    if (s != KILN_OK) {
        ir_fail(g, s, "%s: %s", fn, kiln_graph_error(pg));
        return s;
    }
    const kprogram *p = c->prog;
    cgen_opts co = {.openmp = true, .features = cgen_host_features()};
    c->source = cgen_c(p, &co);
    int ne = p->nentries ? p->nentries : 1;
    c->entries = ir_alloc(sizeof(*c->entries) * (size_t)ne);
    /* zeroed: cexec_destroy frees their entries after a partial failure */
    c->bufs = ir_calloc(sizeof(*c->bufs) * (size_t)ne);
    c->arena = ir_calloc(sizeof(*c->arena) * (size_t)ne);
    c->stash = ir_calloc(sizeof(*c->stash) * (size_t)ne);
    c->prof = ir_calloc(sizeof(*c->prof) * (size_t)(p->nkernels ? p->nkernels : 1));
    c->modbuf = ir_alloc(sizeof(int) * (size_t)(p->nbufs ? p->nbufs : 1));
    if (!c->source || !c->entries || !c->bufs || !c->arena || !c->stash || !c->prof || !c->modbuf)
        return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    for (int i = 0; i < p->nbufs; i++) {
        const kbuf *b = &p->bufs[i];
        c->modbuf[i] = b->role == KB_OUTPUT ? m->entry_buf[b->entry] + b->index : -1;
        if (b->role == KB_INPUT || b->role == KB_PARAM) {
            const rt_buf *mb = named(m, p->g->nodes[b->node]->name);
            if (!mb)
                return ir_fail_status(g, KILN_ERR_INVALID,
                                      "%s: internal error: the program reads '%s', which the "
                                      "module does not have",
                                      fn, p->g->nodes[b->node]->name);
            c->modbuf[i] = (int)(mb - m->bufs);
        }
    }
    for (int e = 0; e < p->nentries; e++) {
        c->bufs[e] = ir_alloc(sizeof(void *) * (size_t)(p->nbufs ? p->nbufs : 1));
        c->arena[e] = ir_alloc((size_t)(p->entries[e].arena_bytes ? p->entries[e].arena_bytes : 1));
        if (!c->bufs[e] || !c->arena[e])
            return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
        bool can_fail = false;
        for (int k = 0; k < p->entries[e].nkernels; k++)
            can_fail = can_fail || kk_can_fail(&p->kernels[p->entries[e].kernels[k]]);
        if (can_fail) {
            size_t bytes = 0;
            for (int i = 0; i < m->g->entries[e].n; i++)
                bytes += m->bufs[m->entry_buf[e] + i].nbytes;
            if (!(c->stash[e] = ir_alloc(bytes ? bytes : 1)))
                return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
        }
    }
    return KILN_OK;
}

void rt_cexec_parts(const kiln_module *m, const kprogram **p, const char **source,
                    const int **modbuf)
{
    const cexec *c = m->impl;
    *p = c->prog;
    *source = c->source;
    *modbuf = c->modbuf;
}

/* Takes the loaded code: its ABI tag and one kiln_entry_<i> per entry. */
kiln_status rt_cexec_attach(kiln_module *m, kiln_graph *g, void *handle, const char *fn)
{
    cexec *c = m->impl;
    c->handle = handle;
    const char *abi = dlsym(c->handle, "kiln_abi");
    if (!abi || strcmp(abi, KILN_ABI_TAG) != 0)
        return ir_fail_status(g, KILN_ERR_LOAD, "%s: the compiled code is not %s", fn,
                              KILN_ABI_TAG);
    for (int e = 0; e < c->prog->nentries; e++) {
        char sym[32];
        snprintf(sym, sizeof sym, "kiln_entry_%d", e);
        void *fp = dlsym(c->handle, sym);
        if (!fp)
            return ir_fail_status(g, KILN_ERR_LOAD, "%s: %s is missing", fn, sym);
        memcpy(&c->entries[e], &fp, sizeof fp);
    }
    return KILN_OK;
}

/* Lowers m's graph, renders, compiles (or finds in the cache) and loads it.
 * Errors go on the user's g. */
kiln_status rt_cexec_build(kiln_module *m, kiln_graph *g, const kiln_compile_opts *opts)
{
    double t0 = now_ms();
    kiln_status s = rt_cexec_prepare(m, g, opts, "kiln_compile");
    if (s != KILN_OK)
        return s;
    cexec *c = m->impl;
    bool hit = false;
    void *handle = build(g, opts, c->source, &hit);
    if (!handle)
        return g->status;
    if ((s = rt_cexec_attach(m, g, handle, "kiln_compile")) != KILN_OK)
        return s;
    if (debug_level() >= 1) {
        const kprogram *p = c->prog;
        int groups = 0; /* kernels that compute more than one graph node */
        int64_t arena_bytes = 0, live_bytes = 0;
        for (int k = 0; k < p->nkernels; k++)
            groups += p->kernels[k].nnodes > 1;
        for (int e = 0; e < p->nentries; e++) {
            arena_bytes += p->entries[e].arena_bytes;
            live_bytes += p->entries[e].live_bytes;
        }
        fprintf(stderr,
                "kiln: compiled %d kernels (%d fused groups), %lld bytes arena (liveness lower "
                "bound %lld), %.1f ms, cache %s\n",
                p->nkernels, groups, (long long)arena_bytes, (long long)live_bytes, now_ms() - t0,
                hit ? "hit" : "miss");
    }
    return KILN_OK;
}

/* ---- the export toolchain ------------------------------------------------------ */

kiln_status rt_toolchain_find(kiln_graph *g, const kiln_compile_opts *opts, const char *fn,
                              rt_toolchain *tc)
{
    compiler cc;
    find_compiler(&cc);
    if (!cc.path[0])
        return rt_compile_fail(g, KILN_ERR_COMPILE, "%s: no C compiler found (tried %s)", fn,
                               getenv("KILN_CC") && *getenv("KILN_CC") ? "$KILN_CC" : "clang, cc");
    char dir[4096];
    if (!cache_dir(opts, dir, sizeof dir))
        return rt_compile_fail(g, KILN_ERR_IO, "%s: cannot create the cache directory '%s': %s", fn,
                               dir, strerror(errno));
    snprintf(tc->cc, sizeof tc->cc, "%s", cc.path);
    tc->openmp = openmp_works(&cc, dir);
    return KILN_OK;
}

void rt_toolchain_command(const rt_toolchain *tc, const char *src, const char *so, char *out,
                          size_t cap)
{
    const char *argv[MAXARGS];
    int n = cc_argv(tc->cc, tc->openmp, true, so, src, argv);
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", argv[i]);
}

int rt_toolchain_run(const rt_toolchain *tc, const char *dir, const char *src, const char *so,
                     const char *errpath)
{
    return compile_c(tc->cc, src, so, tc->openmp, true, dir, errpath);
}
