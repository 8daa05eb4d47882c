/*
 * rt.h - the runtime's internal types: a module is a table of named buffers
 * (inputs, params, entry outputs) over a private copy of the graph, plus an
 * executor that runs an entry against that table.
 *
 * compile.c builds a module (kiln_compile's pipeline); module.c owns everything
 * target-independent: the namespace, buffers, parameter initialisation,
 * set/get/bind/print, the run counter and the checks made before a run. An
 * executor (the interpreter in interp.c, compiled C in cexec.c) only computes
 * an entry. cc.c runs the C compiler and keeps the compile cache; error.c
 * keeps the messages.
 */
#ifndef KILN_RT_H
#define KILN_RT_H

#include "codegen/c/cgen.h"
#include "ir/ir.h"
#include "ir/kernel.h"

#include <stdatomic.h>
#include <string.h>

typedef enum { RT_INPUT, RT_PARAM, RT_OUTPUT } rt_role;

/* One named tensor of the module. */
typedef struct {
    const char *name; /* in the graph copy's arena */
    rt_role role;
    kiln_tensor *node; /* the leaf, or the node an output reads */
    int entry, index;  /* outputs: which entry, which output */
    size_t nbytes;
    void *data;  /* the storage: owned, or the user's memory after bind */
    void *owned; /* NULL when bound, or when it shares another's */
    bool set;    /* inputs: a value was set or bound */
    int shares;  /* an assign's output updated in place: the param (module buffer) whose
                    storage it is; else -1 */
} rt_buf;

typedef struct rt_executor rt_executor;
struct kiln_prof; /* ir/abi.h's per-kernel profile counters */
struct kiln_ctx;  /* ir/abi.h: what generated code is handed */

struct kiln_module {
    kiln_graph *g; /* the module's own copy, verified */
    kiln_target target;
    rt_buf *bufs;
    int nbufs;
    int *leaf_buf;  /* node id -> buffer of that input/param, or -1 */
    int *entry_buf; /* entry index -> first of its output buffers (in output order) */
    uint32_t run;   /* the Philox run counter: the number of successful runs */
    uint64_t *entry_calls, *entry_ns; /* per entry: runs started, their time (profile) */
    const rt_executor *exec;
    void *impl;                   /* the executor's state */
    char *source;                 /* kiln_module_source's text, made on first use */
    char error[1024];             /* the most recent failed call's message; "" when none */
    kiln_comm *comm;              /* data-parallel steps average over it (comm.c), or NULL */
    struct rt_bucket *dp_buckets; /* the gradients' all-reduce messages (comm.c) */
    int dp_nbuckets;
    int *dp_bucket_of; /* per buffer: the bucket of a gradient, else -1 */
    int dp_step;       /* the data-parallel step whose backward runs now, or -1 */
    bool dp_failed;    /* a started all-reduce failed: the step fails after the backward */
    uint64_t seed;     /* the Philox key of runs: the graph's, mixed with the rank */
    atomic_flag busy;  /* a call that reads or writes buffers is running (rt_enter) */
    bool quiet;        /* built on a forced GEMM schedule (a tuner's candidate): no
                          KILN_DEBUG line at compile, no profile at free */
    int vector_width;  /* the C build's -mprefer-vector-width (rt_code's), 0: none */
};

/* A target's way of running entries. */
struct rt_executor {
    const char *name;
    /* Runs entry e; needed[id] says which nodes its outputs depend on (every
     * needed input has a value). Computes every output, stores them in the
     * entry's output buffers, then applies the entry's ASSIGN outputs in
     * output order. On failure records the error with rt_fail and changes no
     * buffer. */
    kiln_status (*run)(kiln_module *m, int e, const bool *needed);
    /* The generated code, or NULL for "make it from the graph". */
    const char *(*source)(kiln_module *m);
    /* Writes the per-kernel rows of kiln_module_profile, or NULL: no kernels. */
    void (*profile)(kiln_module *m, FILE *f);
    void (*destroy)(kiln_module *m);
    /* Executors whose buffers live on a device (NULL for the others): the
     * host copy of b brought up to date before the host reads it, and told
     * that the host wrote it. */
    kiln_status (*host_read)(kiln_module *m, rt_buf *b);
    void (*host_wrote)(kiln_module *m, rt_buf *b);
};

extern const rt_executor rt_interp;     /* interp.c: runs the graph itself */
extern const rt_executor rt_cexec;      /* cexec.c: generated C, compiled and loaded */
extern const rt_executor rt_dexec_c;    /* dexec.c over the C device (KILN_EXECUTOR=launch) */
extern const rt_executor rt_dexec_cuda; /* dexec.c over the CUDA device */

/* ---- compile.c: the steps of kiln_compile -------------------------------- */

/* A kernel program and the source a renderer made of it. */
typedef struct {
    kprogram *prog;   /* over the graph the passes rewrote */
    char *source;     /* ir_alloc'd C (or CUDA) text */
    int vector_width; /* C: built with -mprefer-vector-width=N when N > 0 (cgen_opts) */
} rt_code;
void rt_code_free(rt_code *code); /* cexec.c: frees both, leaves it empty */

/* The passes over mg (a verified graph the caller owns: they rewrite it), then
 * the target's renderer (C with launch: one launch function per kernel, for
 * the C device). With inplace, assigns store into their params where they
 * can (pass_inplace: the executor must honour kentry.shares). Nothing for the
 * interpreter. Errors on g as "fn: ". */
kiln_status rt_render(kiln_graph *g, kiln_graph *mg, const kiln_compile_opts *opts, bool launch,
                      bool inplace, const char *fn, const cgen_gemm_sched *force, rt_code *code);
/* kiln_compile with every packed GEMM on schedule force (NULL: as
 * kiln_compile chooses: tuned, cached or the host model's). */
kiln_status rt_compile(kiln_graph *g, const kiln_compile_opts *opts, const cgen_gemm_sched *force,
                       kiln_module **out);

/* ---- tune.c -------------------------------------------------------------------- */

/* The packed GEMM schedules of one program (cgen_opts.pick reads them). */
typedef struct {
    cgen_gemm_sched model; /* the host model's: kernels without their own */
    cgen_gemm_sched *own;  /* per kernel index */
    bool *has;
    int n;
    bool has_stream;    /* stream_min is the tuned one (cached or tuned now) */
    int64_t stream_min; /* cgen_opts.stream_min (0: no store streams) */
    bool has_width;     /* vector_width is the tuned one */
    int vector_width;   /* cgen_opts.vector_width */
} rt_tuning;
/* Fills t for program p: each packed GEMM's schedule from the cache of
 * tuned schedules for this CPU and thread count, else (tuning on: opts.tune,
 * $KILN_TUNE) the fastest of the candidates timed on its shape now (then
 * cached), else the model's. KILN_DEBUG=1 says what each got and why.
 * Errors (a bad $KILN_TUNE) on g as "fn: ". */
typedef kiln_status (*rt_compile_fn)(kiln_graph *g, const kiln_compile_opts *opts,
                                     const cgen_gemm_sched *force, kiln_module **out);
/* compile builds the candidates (rt_compile, passed in: compile.c calls this). */
kiln_status rt_tune(kiln_graph *g, const kiln_compile_opts *opts, const kprogram *p,
                    unsigned features, const char *fn, rt_compile_fn compile, rt_tuning *t);
void rt_tuning_free(rt_tuning *t);
bool rt_tuning_pick(void *ctx, const kprogram *p, const kernel *k, cgen_gemm_sched *s);
/* The host as the schedule model sees it (features, data caches of a core,
 * FMAs in flight: probed once per process). */
cgen_host rt_host(void);
/* Whether rt_host measures FMAs in flight (an optimized x86-64 build on an
 * AVX-512 CPU); else it says 0, unknown. */
bool rt_host_measures_fma(void);
/* How many GEMM candidates this process has timed (tests: a cached shape is
 * never timed again). */
long rt_tune_timed(void);
/* A whole-program candidate of the tuner's: what it forces on the compile it
 * times (cgen_opts.stream_min and vector_width); -1: the usual choice. */
typedef struct {
    int64_t stream_min;
    int vector_width;
} rt_variant;
/* A program's cache line "<width> <stream_min>\n" (n bytes, not
 * NUL-terminated): the width -1, 0, 256 or 512, streaming -1, 0 or 32 MiB
 * (-1: not tuned) into *w and *sm; false for anything else (the program is
 * then tuned again, or takes the model's). */
bool rt_tune_program_line(const char *line, size_t n, long long *w, long long *sm);
/* The candidate this thread is compiling now, or NULL (not a candidate);
 * forcing one on this thread's compiles (NULL: none). Such compiles are quiet
 * (KILN_DEBUG) and make no program choices of their own. */
const rt_variant *rt_variant_forced(void);
void rt_variant_force(const rt_variant *v);
/* verify -> render -> module -> executor over mg (taken over): everything
 * kiln_compile does short of building and loading code (kiln_export and
 * kiln_module_open take it from there). Errors on g as "fn: ". */
kiln_status rt_prepare(kiln_graph *g, kiln_graph *mg, const kiln_compile_opts *opts, const char *fn,
                       kiln_module **out);

/* ---- a module's tensors (inline: every runtime file reaches them, and
 * module.c, which calls the data-parallel code in comm.c, stays above it) --- */

/* The module tensor called name (input, param or output), or NULL. */
static inline rt_buf *rt_find(kiln_module *m, const char *name)
{
    for (int i = 0; i < m->nbufs; i++)
        if (strcmp(m->bufs[i].name, name) == 0)
            return &m->bufs[i];
    return NULL;
}

/* Before the host reads b's data (get, print, save): the current value there;
 * a device executor copies it back. Errors are recorded on m. */
static inline kiln_status rt_host_read(kiln_module *m, rt_buf *b)
{
    return m->exec && m->exec->host_read ? m->exec->host_read(m, b) : KILN_OK;
}

/* After the host wrote b's data (set, load): a device copy is stale. */
static inline void rt_host_wrote(kiln_module *m, rt_buf *b)
{
    if (m->exec && m->exec->host_wrote)
        m->exec->host_wrote(m, b);
}

/* ---- module.c --------------------------------------------------------------- */

/* The module around *mg, a verified graph (taken over: *mg becomes NULL; freed
 * on failure): laid out, params initialised; the caller attaches the
 * executor. Errors go on g as "fn: reason". */
kiln_status rt_module_new(kiln_graph *g, kiln_graph **mg, kiln_target target, const char *fn,
                          kiln_module **out);
void rt_module_destroy(kiln_module *m); /* NULL is a no-op */
/* The namespace check of kiln_compile (inputs, params, outputs: no name twice). */
kiln_status rt_check_names(kiln_graph *g, const char *fn);
/* The .kir text of g (ir_alloc'd), or NULL when out of memory. */
char *rt_graph_text(const kiln_graph *g);
/* The buffer of an input or param node (never NULL for a leaf of m->g). */
rt_buf *rt_leaf(kiln_module *m, const kiln_tensor *leaf);

/* ---- cexec.c: the executor of compiled C ------------------------------------ */

/* The executor of code (taken over, also on failure) for m, with its run-time
 * tables; threads as kiln_compile_opts.threads. The code is loaded later. */
kiln_status rt_cexec_new(kiln_module *m, kiln_graph *g, rt_code *code, int threads, const char *fn);
/* Takes a loaded shared object of the code (ownership passes to m): its ABI
 * tag and one kiln_entry_<i> per entry. */
kiln_status rt_cexec_load(kiln_module *m, kiln_graph *g, void *handle, const char *fn);
/* The program, its C source and, per program buffer, the module buffer it is
 * (inputs, params, outputs) or -1. */
void rt_cexec_parts(const kiln_module *m, const kprogram **p, const char **source,
                    const int **modbuf);

/* The kernel rows of kiln_module_profile: one per kernel that ran (prof[k]
 * of kernel k), the most time first. */
void rt_profile_rows(FILE *f, const kprogram *p, const struct kiln_prof *prof);
/* Data-parallel steps (comm.c): the entry "<name of e>.backward", or -1; the
 * mean over the ranks of its gradients into e's "<name>.mean_grad.*"; before
 * a backward, and after one that failed (finishes what it started); the
 * buckets' memory (module free, detach). */
typedef struct rt_bucket {
    int be;        /* the backward entry whose gradients it carries */
    int *bufs, n;  /* their module buffers, in the order they fill the message */
    kiln_dtype dt; /* theirs */
    int64_t numel; /* their elements, all together */
    void *stage;   /* n > 1: the message (the gradients back to back); else NULL: the gradient */
    int ready;     /* gradients complete in the running backward */
    void *pending; /* its all-reduce started during the backward, or NULL */
} rt_bucket;
int rt_dp_backward(const kiln_module *m, int e);
kiln_status rt_dp_reduce(kiln_module *m, int e, int be);
void rt_dp_begin(kiln_module *m);
void rt_dp_drain(kiln_module *m);
void rt_dp_free(kiln_module *m);
/* Executors call these between the kernels of a data-parallel backward (when
 * rt_dp_overlap): module buffer b (an output of the running entry) is
 * complete and nothing later reads it, so its all-reduce may start; and the
 * started ones may progress. */
bool rt_dp_overlap(const kiln_module *m);
void rt_dp_ready(kiln_module *m, int b);
void rt_dp_poll(kiln_module *m);
/* Records "<fn>: <what> failed: <m->comm's reason>" (KILN_ERR_DEVICE). */
kiln_status rt_comm_fail(kiln_module *m, const char *fn, const char *what);
/* The monotonic clock in nanoseconds, and the kiln_ctx tick that charges the
 * time since ctx->tick_ns to ctx->prof[id], kernel id's counters (ir/abi.h). */
uint64_t rt_now_ns(void);
void rt_prof_tick(struct kiln_ctx *ctx, int32_t id);

/* ---- dexec.c: the device executor (device.h) ----------------------------------- */

typedef struct rt_device rt_device;
/* The executor of code (taken over) for m; the device comes later. */
kiln_status rt_dexec_new(kiln_module *m, kiln_graph *g, rt_code *code, const char *fn);
/* Gives the executor its device (taken over): memory for every buffer. */
kiln_status rt_dexec_attach(kiln_module *m, kiln_graph *g, rt_device *dev, const char *fn);
/* modbuf (may be NULL): per program buffer, the module buffer it is, else -1;
 * touch (may be NULL): per entry, per module buffer, 1 read and 2 written. */
void rt_dexec_parts(const kiln_module *m, const kprogram **p, const char **source,
                    const int **modbuf, unsigned char *const **touch);
/* Whether the C target runs through the device executor's C device
 * ($KILN_EXECUTOR=launch, read at compile time: a testing knob). */
bool rt_launch_wanted(void);

/* ---- cc.c: the C toolchain and the compile cache ------------------------------ */

/* Compiles source (or finds it in the cache) and dlopens it; NULL with the
 * error on g. *hit: it came from the cache. */
void *rt_cc_build(kiln_graph *g, const kiln_compile_opts *opts, const char *source,
                  int vector_width, bool *hit);
/* A hash of this CPU's model name and feature flags (part of cache keys). */
uint64_t rt_cpu_identity(void);

/* dlopens compiled code (RTLD_NOW | RTLD_LOCAL; NULL with dlerror set) and
 * keeps the OpenMP runtime it brought in (libgomp for gcc's code, libomp for
 * clang's) loaded for good: its worker threads outlive the module, and
 * unloading it under them crashed when the module was freed. */
void *rt_load_code(const char *path);

/* The C toolchain kiln_export builds with: the JIT's compiler and flags. */
typedef struct {
    char cc[4096];
    bool openmp;
    int vector_width; /* -mprefer-vector-width=N when N > 0 (rt_code.vector_width) */
} rt_toolchain;
kiln_status rt_toolchain_find(kiln_graph *g, const kiln_compile_opts *opts, const char *fn,
                              rt_toolchain *tc);
/* The command line that builds so from src (both relative to the directory it
 * runs in), as text, and running it in dir with stderr to errpath: the exit
 * status, or -1. Exports add -Wl,-Bsymbolic to the JIT's flags. */
void rt_toolchain_command(const rt_toolchain *tc, const char *src, const char *so, char *out,
                          size_t cap);
int rt_toolchain_run(const rt_toolchain *tc, const char *dir, const char *src, const char *so,
                     const char *errpath);

/* The compile cache directory (kiln_compile_opts.cache_dir and its
 * defaults), checked as rt_cc_build checks it; errors on g as "fn: ". */
kiln_status rt_cache_dir(kiln_graph *g, const kiln_compile_opts *opts, const char *fn, char *out,
                         size_t cap);

/* A cache entry other than compiled C: dir/<key>.<ext>, its bytes sealed by
 * the same trailer as a shared object's. get: the bytes (ir_alloc'd, *n of
 * them) when the entry is whole, else NULL; put: written atomically. */
void *rt_cache_get(const char *dir, uint64_t key, const char *ext, size_t *n);
bool rt_cache_put(const char *dir, uint64_t key, const char *ext, const void *bytes, size_t n);

/* ---- export.c ------------------------------------------------------------------ */

/* The header kiln_export(g, opts, ...) would write (ir_alloc'd into *header),
 * without building anything; errors on g. */
kiln_status rt_export_header(kiln_graph *g, const kiln_compile_opts *opts, char **header);

/* ---- elf.c -------------------------------------------------------------------------- */

/* The section kiln_export puts into every export, and how it starts. */
#define RT_EXPORT_SECTION ".kiln_export"
#define RT_EXPORT_MARK    "KILN-EXPORT "
/* KILN_OK when path is, by its bytes alone (nothing is loaded), a shared
 * object for this machine whose segments lie inside the file and which
 * carries the export section; else a status and the reason in why. */
kiln_status rt_check_export_file(const char *path, char *why, size_t cap);

/* ---- error.c -------------------------------------------------------------------- */

/* Records a message on m ("kiln_module_xxx: reason") and returns s. */
kiln_status rt_fail(kiln_module *m, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records a compile-time error on g (first one wins; the graph stays usable). */
kiln_status rt_compile_fail(kiln_graph *g, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The message of this thread's failed kiln_module_open: "kiln_module_open: "
 * + fmt, or msg as it is. */
kiln_status rt_open_fail(kiln_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rt_open_set(const char *msg);
/* A module is used by one thread at a time: run, set, get, bind, save and
 * load enter it (false: another thread is inside) and leave it; rt_busy is
 * the refusal's message. */
bool rt_enter(kiln_module *m);
void rt_leave(kiln_module *m);
kiln_status rt_busy(kiln_module *m, const char *fn);
/* A run's error KILN_RUNERR_* (ir/abi.h) as kiln_module_run's message. */
kiln_status rt_runerr_fail(kiln_module *m, int code, int axis, int64_t index, int64_t size);

#endif /* KILN_RT_H */
