/*
 * cc.c - the C toolchain: finding the compiler, running it as a process (no
 * shell), and the content-addressed compile cache that keeps what it built.
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
#include "rt.h"
#include "runtime/fsutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

extern char **environ;

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

/* A regular file this user may execute (a directory passes access(X_OK)). */
static bool executable(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static bool find_in_path(const char *name, char *out, size_t cap)
{
    if (strchr(name, '/')) {
        snprintf(out, cap, "%s", name);
        return executable(out);
    }
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        snprintf(out, cap, "%.*s/%s", (int)len, len ? path : ".", name);
        if (executable(out))
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
uint64_t rt_cpu_identity(void)
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

/* Runs argv (in directory cwd, NULL: this one) with stdout to /dev/null and
 * stderr captured into errpath; returns the exit status, or -1 with errno
 * set when it could not be started. No shell: argv[0] is executed as it is.
 * The compiler dies with the thread that waits for it (PR_SET_PDEATHSIG):
 * a caller killed mid-compile leaves no compiler running. Between fork and
 * exec the child makes system calls only. */
static int run_process(char *const argv[], const char *cwd, const char *errpath)
{
    int err = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    int sync[2] = {-1, -1}; /* the child's exec errno, or EOF when exec worked */
    if (err < 0 || null < 0 || pipe2(sync, O_CLOEXEC) != 0) {
        int e = errno;
        close(err);
        close(null);
        errno = e;
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        close(sync[0]);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(127); /* the caller is already gone */
        if ((cwd && chdir(cwd) != 0) || dup2(null, 1) < 0 || dup2(err, 2) < 0)
            _exit(127);
        execve(argv[0], argv, environ);
        int e = errno;
        ssize_t w = write(sync[1], &e, sizeof e);
        (void)w;
        _exit(127);
    }
    close(sync[1]);
    close(err);
    close(null);
    if (pid < 0) {
        int e = errno;
        close(sync[0]);
        errno = e;
        return -1;
    }
    int child_errno = 0;
    ssize_t got;
    while ((got = read(sync[0], &child_errno, sizeof child_errno)) < 0 && errno == EINTR)
        ;
    close(sync[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (got == (ssize_t)sizeof child_errno) {
        errno = child_errno;
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The compiler flags, also hashed into the cache key. -fno-unroll-loops:
 * unrolling every vectorised loop tripled clang's time (loop strength
 * reduction over the copies) and made the step no faster; the GEMM tile
 * functions are where unrolling would pay, and the packed microkernel of the
 * CPU performance work unrolls itself. -fno-math-errno: generated code never
 * reads errno, and without it sqrtf is a call behind a branch that stops the
 * loop vectorizer. -ffp-contract=off: gcc contracts a * b + c across
 * statements by default and clang does not, so the same training run gave
 * different params with each; off in both, with the GEMM tiles opting back in
 * (KILN_FMA_FN, prelude.inc), they round alike and keep their FMAs. */
static const char *const cflags[] = {
    "-O2",    "-march=native", "-ffp-contract=off", "-fno-unroll-loops", "-fPIC", "-fno-math-errno",
    "-shared"};
enum { NCFLAGS = sizeof cflags / sizeof cflags[0], MAXARGS = NCFLAGS + 10 };

/* The flag a source's vector width asks for (cgen_opts.vector_width), or
 * NULL: the compiler's own choice. */
static const char *width_flag(int vector_width)
{
    return vector_width == 512   ? "-mprefer-vector-width=512"
           : vector_width == 256 ? "-mprefer-vector-width=256"
                                 : NULL;
}

/* The compiler's argv (NULL-terminated; its strings are the arguments'):
 * cc FLAGS [-mprefer-vector-width=N] [-fopenmp] [-Wl,-Bsymbolic] -o out src
 * -lm. Exports bind their own symbols (-Bsymbolic): two exported models in
 * one program never call each other's kiln_entry_<i>. */
static int cc_argv(const char *cc, bool openmp, bool exported, int vector_width, const char *out,
                   const char *src, const char *argv[MAXARGS])
{
    int n = 0;
    argv[n++] = cc;
    for (int i = 0; i < NCFLAGS; i++)
        argv[n++] = cflags[i];
    if (width_flag(vector_width))
        argv[n++] = width_flag(vector_width);
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
                     int vector_width, const char *cwd, const char *errpath)
{
    const char *args[MAXARGS];
    int n = cc_argv(cc, openmp, exported, vector_width, out, src, args);
    /* execve takes char *const argv[]: give it mutable copies */
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
    if (ans && len == 1 && (ans[0] == '0' || ans[0] == '1')) {
        bool yes = ans[0] == '1';
        ir_free(ans);
        return yes;
    }
    ir_free(ans); /* absent, or not an answer this code wrote: probe again */
    /* names of this process and call: a concurrent prober must not delete the
     * source this one is compiling (that would cache a wrong "no") */
    char src[4400], so[4400], err[4400], uniq[48];
    unique_suffix(uniq, sizeof uniq);
    snprintf(src, sizeof src, "%s.tmp.%s.c", path, uniq);
    snprintf(so, sizeof so, "%s.tmp.%s.so", path, uniq);
    snprintf(err, sizeof err, "%s.tmp.%s.err", path, uniq);
    static const char probe[] =
        "#include <omp.h>\nint kiln_probe(void) { int n = 0;\n"
        "#pragma omp parallel reduction(+:n)\n n += omp_get_num_threads() > 0;"
        "\nreturn n; }\n";
    bool yes = rt_write_atomic(src, probe, sizeof probe - 1) &&
               compile_c(cc->path, src, so, true, false, 0, NULL, err) == 0;
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

/* The compile cache directory, as an absolute path (no part of it can reach
 * the compiler as an option): opts->cache_dir, $KILN_CACHE_DIR,
 * $XDG_CACHE_HOME/kiln, ~/.cache/kiln, else /tmp/kiln-cache-<uid>. Kiln loads
 * and runs code from it, so, as ssh does with ~/.ssh, it must belong to this
 * user and be writable by no one else; Kiln creates it 0700. On failure the
 * reason is on g as "fn: ...". */
static kiln_status cache_dir(kiln_graph *g, const kiln_compile_opts *opts, const char *fn,
                             char *out, size_t cap)
{
    char want[4096];
    const char *d = opts && opts->cache_dir ? opts->cache_dir : getenv("KILN_CACHE_DIR");
    if (d && *d)
        snprintf(want, sizeof want, "%s", d);
    else if ((d = getenv("XDG_CACHE_HOME")) && *d)
        snprintf(want, sizeof want, "%s/kiln", d);
    else if ((d = getenv("HOME")) && *d)
        snprintf(want, sizeof want, "%s/.cache/kiln", d);
    else
        snprintf(want, sizeof want, "/tmp/kiln-cache-%ld", (long)getuid());
    struct stat st;
    if (stat(want, &st) != 0 && errno == ENOENT) {
        char parent[4096];
        snprintf(parent, sizeof parent, "%s", want);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent) {
            *slash = 0;
            rt_mkdir_p(parent);
        }
        if (mkdir(want, 0700) != 0 && errno != EEXIST)
            return rt_compile_fail(g, KILN_ERR_IO, "%s: cannot create the cache directory '%s': %s",
                                   fn, want, strerror(errno));
    }
    if (!realpath(want, out) || stat(out, &st) != 0)
        return rt_compile_fail(g, KILN_ERR_IO, "%s: cannot create the cache directory '%s': %s", fn,
                               want, strerror(errno));
    (void)cap;
    if (!S_ISDIR(st.st_mode))
        return rt_compile_fail(g, KILN_ERR_IO, "%s: the cache directory '%s' is not a directory",
                               fn, want);
    if (st.st_uid != geteuid())
        return rt_compile_fail(g, KILN_ERR_INVALID,
                               "%s: the cache directory '%s' belongs to another user (uid %ld): "
                               "Kiln runs the code it finds there, so it must be yours; set "
                               "KILN_CACHE_DIR to a directory of your own",
                               fn, want, (long)st.st_uid);
    if (st.st_mode & (S_IWGRP | S_IWOTH))
        return rt_compile_fail(g, KILN_ERR_INVALID,
                               "%s: the cache directory '%s' may be written by others (mode "
                               "%03o): Kiln runs the code it finds there; chmod go-w it",
                               fn, want, (unsigned)(st.st_mode & 0777));
    return KILN_OK;
}

#define TRAILER_MAGIC "KILNSO1\n"
enum { TRAILER_BYTES = 24 }; /* magic (8) + 16 hex digits */

/* The trailer of an entry whose shared object is bytes[0, n) under key. */
static void make_trailer(char out[TRAILER_BYTES + 1], const void *bytes, size_t n, uint64_t key)
{
    snprintf(out, TRAILER_BYTES + 1, "%s%016llx", TRAILER_MAGIC,
             (unsigned long long)XXH3_64bits_withSeed(bytes, n, key));
}

void *rt_load_code(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    static const char *const runtimes[] = {"libgomp.so.1", "libomp.so.5", "libomp.so"};
    for (size_t i = 0; h && i < sizeof runtimes / sizeof runtimes[0]; i++) {
        void *rt = dlopen(runtimes[i], RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
        if (rt)
            dlclose(rt); /* the reference goes; RTLD_NODELETE stays */
    }
    return h;
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
    return ok ? rt_load_code(so) : NULL;
}

kiln_status rt_cache_dir(kiln_graph *g, const kiln_compile_opts *opts, const char *fn, char *out,
                         size_t cap)
{
    return cache_dir(g, opts, fn, out, cap);
}

void *rt_cache_get(const char *dir, uint64_t key, const char *ext, size_t *n)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%016llx.%s", dir, (unsigned long long)key, ext);
    size_t len = 0;
    char *bytes = rt_read_file(path, &len);
    if (bytes && len > TRAILER_BYTES) {
        char want[TRAILER_BYTES + 1];
        make_trailer(want, bytes, len - TRAILER_BYTES, key);
        if (memcmp(bytes + len - TRAILER_BYTES, want, TRAILER_BYTES) == 0) {
            *n = len - TRAILER_BYTES;
            return bytes;
        }
    }
    ir_free(bytes);
    return NULL;
}

bool rt_cache_put(const char *dir, uint64_t key, const char *ext, const void *bytes, size_t n)
{
    char path[4400], trailer[TRAILER_BYTES + 1];
    snprintf(path, sizeof path, "%s/%016llx.%s", dir, (unsigned long long)key, ext);
    make_trailer(trailer, bytes, n, key);
    rt_atomic_file f;
    if (!rt_atomic_begin(&f, path))
        return false;
    if (rt_atomic_write(&f, bytes, n) && rt_atomic_write(&f, trailer, TRAILER_BYTES))
        return rt_atomic_commit(&f);
    rt_atomic_abort(&f);
    return false;
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

/* Why no compiler was found, on g as "fn: ...". */
static kiln_status no_compiler(kiln_graph *g, const char *fn)
{
    const char *env = getenv("KILN_CC");
    if (env && *env)
        return rt_compile_fail(g, KILN_ERR_COMPILE,
                               "%s: KILN_CC is '%s', which is not an executable file%s", fn, env,
                               strchr(env, '/') ? "" : " on the PATH");
    return rt_compile_fail(g, KILN_ERR_COMPILE,
                           "%s: no C compiler found (tried clang, cc); KILN_TARGET_INTERP needs "
                           "none",
                           fn);
}

/* True when the file at path starts as an ELF shared object does. */
static bool looks_like_so(const char *path)
{
    unsigned char head[18] = {0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, head, sizeof head);
    close(fd);
    return n == (ssize_t)sizeof head && memcmp(head, "\177ELF", 4) == 0 &&
           head[16] == 3 /* ET_DYN */;
}

/* Why the compiler run failed: its exit status and diagnostics, or why it
 * could not be started, or that it wrote nothing loadable. */
static void compile_failed(kiln_graph *g, const char *cc, int rc, int spawn_errno, const char *src,
                           const char *errpath)
{
    if (rc < 0 && spawn_errno) {
        rt_compile_fail(g, KILN_ERR_COMPILE, "kiln_compile: cannot run the compiler '%s': %s", cc,
                        strerror(spawn_errno));
        return;
    }
    size_t n = 0;
    char *diag = rt_read_file(errpath, &n);
    if (rc == 0)
        rt_compile_fail(g, KILN_ERR_COMPILE,
                        "kiln_compile: the compiler '%s' exited 0 on %s but wrote no shared "
                        "object:\n%.700s",
                        cc, src, diag && *diag ? diag : "(no diagnostics)");
    else
        rt_compile_fail(g, KILN_ERR_COMPILE, "kiln_compile: %s failed (%s %d) on %s:\n%.700s", cc,
                        rc < 0 ? "killed by signal or" : "exit", rc, src,
                        diag ? diag : "(no diagnostics)");
    ir_free(diag);
}

/* Compiles (or finds in the cache) and loads the source. Errors go on g. */
void *rt_cc_build(kiln_graph *g, const kiln_compile_opts *opts, const char *source,
                  int vector_width, bool *hit)
{
    compiler cstore;
    find_compiler(&cstore);
    const compiler *cc = &cstore;
    if (!cc->path[0]) {
        no_compiler(g, "kiln_compile");
        return NULL;
    }
    char dir[4096];
    if (cache_dir(g, opts, "kiln_compile", dir, sizeof dir) != KILN_OK)
        return NULL;
    bool omp = openmp_works(cc, dir);
    XXH3_state_t *st = XXH3_createState();
    if (!st) {
        ir_fail(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
        return NULL;
    }
    uint64_t cpu = rt_cpu_identity();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, source, strlen(source) + 1);
    for (int i = 0; i < NCFLAGS; i++)
        XXH3_64bits_update(st, cflags[i], strlen(cflags[i]) + 1);
    const char *wf = width_flag(vector_width);
    XXH3_64bits_update(st, wf ? wf : "", wf ? strlen(wf) + 1 : 1);
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
    rt_remove_stale(dir, "", 60);
    struct stat est;
    if (lstat(so, &est) == 0 && !S_ISREG(est.st_mode) && rmdir(so) != 0 && unlink(so) != 0) {
        ir_fail(g, KILN_ERR_IO,
                "kiln_compile: the cache entry '%s' is not a file and cannot be removed: %s", so,
                strerror(errno));
        return NULL;
    }
    if (!rt_write_atomic(src, source, strlen(source))) {
        ir_fail(g, KILN_ERR_IO, "kiln_compile: cannot write '%s': %s", src, strerror(errno));
        return NULL;
    }
    char uniq[48];
    unique_suffix(uniq, sizeof uniq);
    snprintf(tmp, sizeof tmp, "%s.tmp.%s", so, uniq);
    snprintf(err, sizeof err, "%s.tmp.%s.err", so, uniq);
    errno = 0;
    int rc = compile_c(cc->path, src, tmp, omp, false, vector_width, NULL, err);
    int spawn_errno = rc < 0 ? errno : 0;
    if (rc != 0 || !looks_like_so(tmp)) {
        compile_failed(g, cc->path, rc, spawn_errno, src, err);
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

/* ---- the export toolchain ------------------------------------------------------ */

kiln_status rt_toolchain_find(kiln_graph *g, const kiln_compile_opts *opts, const char *fn,
                              rt_toolchain *tc)
{
    compiler cc;
    find_compiler(&cc);
    if (!cc.path[0])
        return no_compiler(g, fn);
    char dir[4096];
    kiln_status s = cache_dir(g, opts, fn, dir, sizeof dir);
    if (s != KILN_OK)
        return s;
    snprintf(tc->cc, sizeof tc->cc, "%s", cc.path);
    tc->openmp = openmp_works(&cc, dir);
    tc->vector_width = 0; /* the caller's, from its rt_code */
    return KILN_OK;
}

void rt_toolchain_command(const rt_toolchain *tc, const char *src, const char *so, char *out,
                          size_t cap)
{
    const char *argv[MAXARGS];
    int n = cc_argv(tc->cc, tc->openmp, true, tc->vector_width, so, src, argv);
    size_t len = 0;
    out[0] = 0;
    for (int i = 0; i < n && len < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? " " : "", argv[i]);
}

int rt_toolchain_run(const rt_toolchain *tc, const char *dir, const char *src, const char *so,
                     const char *errpath)
{
    return compile_c(tc->cc, src, so, tc->openmp, true, tc->vector_width, dir, errpath);
}
