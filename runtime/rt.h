/*
 * rt.h - the runtime's internal types: a module is a table of named buffers
 * (inputs, params, entry outputs) over a private copy of the graph, plus an
 * executor that runs an entry against that table.
 *
 * module.c owns everything target-independent: compiling the graph copy,
 * the namespace, buffers, parameter initialisation, set/get/bind/print, the
 * run counter and the checks made before a run. An executor (the interpreter
 * in interp.c; the C and CUDA backends later) only computes an entry.
 */
#ifndef KILN_RT_H
#define KILN_RT_H

#include "ir/ir.h"

typedef enum { RT_INPUT, RT_PARAM, RT_OUTPUT } rt_role;

/* One named tensor of the module. */
typedef struct {
    const char *name; /* in the graph copy's arena */
    rt_role role;
    kiln_tensor *node; /* the leaf, or the node an output reads */
    int entry, index;  /* outputs: which entry, which output */
    size_t nbytes;
    void *data;  /* the storage: owned, or the user's memory after bind */
    void *owned; /* NULL when bound */
    bool set;    /* inputs: a value was set or bound */
} rt_buf;

typedef struct rt_executor rt_executor;

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
    void *impl;       /* the executor's state */
    char *source;     /* kiln_module_source's text, made on first use */
    char error[1024]; /* the most recent failed call's message; "" when none */
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
};

extern const rt_executor rt_interp;
extern const rt_executor rt_cexec; /* jit.c: generated C, compiled and loaded */

/* jit.c: lowers m->g, renders C, compiles (or finds in the cache) and loads it
 * as m's executor state. Errors are recorded on the user's graph g. */
kiln_status rt_cexec_build(kiln_module *m, kiln_graph *g, const kiln_compile_opts *opts);

/* Records a message on m ("kiln_module_xxx: reason") and returns s. */
kiln_status rt_fail(kiln_module *m, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The module tensor called name (input, param or output), or NULL. */
rt_buf *rt_find(kiln_module *m, const char *name);

/* The buffer of an input or param node (never NULL for a leaf of m->g). */
rt_buf *rt_leaf(kiln_module *m, const kiln_tensor *leaf);

#endif /* KILN_RT_H */
