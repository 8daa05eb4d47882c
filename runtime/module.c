/*
 * module.c - the module API, for every target: one buffer per name (inputs,
 * params, entry outputs: one namespace) over the module's own graph, params
 * initialised from the graph seed, and run/set/get/bind/print/profile.
 *
 * Everything here is target-independent: an executor (rt.h) only computes an
 * entry's outputs and assignments; compile.c builds the module and attaches
 * it. Every call records "kiln_module_xxx: reason" on the module, where it
 * stays until the next failing call (error.c).
 */
#include "rt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

rt_buf *rt_leaf(kiln_module *m, const kiln_tensor *leaf)
{
    return &m->bufs[m->leaf_buf[leaf->id]];
}

/* ---- compiling ------------------------------------------------------------- */

/* Names of inputs, params and every entry's outputs are one namespace. Reads
 * the user's graph before the verifier, so it tolerates missing names. */
kiln_status rt_check_names(kiln_graph *g, const char *fn)
{
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        if ((ir_ops[g->nodes[i]->op].flags & IR_F_LEAF) && g->nodes[i]->name)
            n++;
    for (int e = 0; e < g->nentries; e++)
        n += g->entries[e].n > 0 ? g->entries[e].n : 0;
    const char **names = ir_alloc(sizeof(*names) * (size_t)(n ? n : 1));
    if (!names)
        return rt_compile_fail(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    int k = 0;
    for (int i = 0; i < g->nnodes; i++)
        if ((ir_ops[g->nodes[i]->op].flags & IR_F_LEAF) && g->nodes[i]->name)
            names[k++] = g->nodes[i]->name;
    for (int e = 0; e < g->nentries; e++)
        for (int j = 0; j < g->entries[e].n; j++)
            names[k++] = g->entries[e].output_names ? g->entries[e].output_names[j] : NULL;
    int *first = ir_alloc(sizeof(int) * (size_t)(k ? k : 1));
    if (!first || !ir_first_equal(names, k, first)) {
        ir_free(first);
        ir_free(names);
        return rt_compile_fail(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    }
    const char *clash = NULL; /* the first name that comes again later */
    int at = k;
    for (int i = 0; i < k; i++)
        if (first[i] >= 0 && first[i] < at)
            at = first[i];
    if (at < k)
        clash = names[at];
    ir_free(first);
    kiln_status s = KILN_OK;
    if (clash)
        s = rt_compile_fail(g, KILN_ERR_INVALID,
                            "%s: the name '%s' is used twice (inputs, params and entry "
                            "outputs share one namespace)",
                            fn, clash);
    ir_free(names);
    return s;
}

static int64_t kaiming_fan_in(const kiln_tensor *p)
{
    if (p->fan_in > 0)
        return p->fan_in;
    if (p->rank == 0)
        return 1;
    if (p->rank == 1)
        return p->dims[0];
    int64_t f = p->dims[1];
    for (int d = 2; d < p->rank; d++)
        f *= p->dims[d];
    return f;
}

/* A standard uniform / normal value of the param's dtype, as a double. */
static double init_rand(const kiln_graph *g, const kiln_tensor *p, int64_t i, bool normal)
{
    uint64_t k = (uint64_t)i;
    if (p->dtype == KILN_F32)
        return normal ? (double)ir_randn_f32(g->seed, p->stream, IR_RUN_INIT, k)
                      : (double)ir_rand_f32(g->seed, p->stream, IR_RUN_INIT, k);
    return normal ? ir_randn_f64(g->seed, p->stream, IR_RUN_INIT, k)
                  : ir_rand_f64(g->seed, p->stream, IR_RUN_INIT, k);
}

/* Fills a param's (uninitialised) buffer from its initialiser: every byte is
 * written. Random inits draw from (graph seed, the param's stream,
 * IR_RUN_INIT); each value is computed in double and rounded once to the
 * dtype. Large params make this most of a cached compile's time. */
static void init_param(const kiln_graph *g, const kiln_tensor *p, void *data)
{
    int64_t n = ir_numel(p);
    size_t nbytes = (size_t)n * kiln_dtype_size(p->dtype);
    double lo = 0, span = 0;
    switch (p->init.kind) {
    case KILN_INIT_ZEROS:
    case KILN_INIT_ONES:
    case KILN_INIT_CONST: {
        double v = p->init.kind == KILN_INIT_ZEROS  ? 0
                   : p->init.kind == KILN_INIT_ONES ? 1
                                                    : p->init.a;
        if (v == 0 && !signbit(v)) {
            memset(data, 0, nbytes);
        } else if (p->dtype == KILN_F32) {
            float *f = data;
            for (int64_t i = 0; i < n; i++)
                f[i] = (float)v;
        } else {
            for (int64_t i = 0; i < n; i++)
                ir_store_f(p->dtype, data, i, v);
        }
        return;
    }
    case KILN_INIT_DATA:
        if (p->data && n)
            memcpy(data, p->data, nbytes);
        else
            memset(data, 0, nbytes);
        return;
    case KILN_INIT_NORMAL:
        for (int64_t i = 0; i < n; i++)
            ir_store_f(p->dtype, data, i, p->init.a + p->init.b * init_rand(g, p, i, true));
        return;
    case KILN_INIT_UNIFORM:
        lo = p->init.a;
        span = p->init.b - p->init.a;
        break;
    case KILN_INIT_KAIMING_UNIFORM: {
        int64_t fan_in = kaiming_fan_in(p);
        double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
        lo = -bound;
        span = 2 * bound;
        break;
    }
    }
    if (p->dtype == KILN_F32) { /* the common case (nn.Linear): a block at a time */
        float *f = data;
        ir_rand_f32_fill(g->seed, p->stream, IR_RUN_INIT, 0, f, n);
        for (int64_t i = 0; i < n; i++)
            f[i] = (float)(lo + span * (double)f[i]);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        ir_store_f(p->dtype, data, i, lo + span * init_rand(g, p, i, false));
}

static void module_destroy(kiln_module *m)
{
    bool ran = false;
    for (int e = 0; m->entry_calls && e < m->g->nentries; e++)
        ran = ran || m->entry_calls[e] > 0;
    if (ran && !m->quiet && ir_debug_level() >= 1) /* DESIGN: the profile at module free */
        kiln_module_profile(m, stderr);
    if (m->exec && m->exec->destroy)
        m->exec->destroy(m);
    for (int i = 0; i < m->nbufs; i++)
        ir_free(m->bufs[i].owned);
    ir_free(m->bufs);
    ir_free(m->leaf_buf);
    ir_free(m->entry_buf);
    ir_free(m->entry_calls);
    rt_dp_free(m);
    ir_free(m->source);
    kiln_graph_free(m->g);
    ir_free(m);
}

/* Adds a buffer, zeroed unless it is a param (init_param writes all of it). */
static bool add_buf(kiln_module *m, const char *name, rt_role role, kiln_tensor *node)
{
    rt_buf *b = &m->bufs[m->nbufs++];
    b->name = name;
    b->role = role;
    b->node = node;
    b->entry = b->index = -1;
    b->shares = -1;
    b->nbytes = (size_t)ir_numel(node) * kiln_dtype_size(node->dtype);
    b->owned = role == RT_PARAM ? ir_alloc_huge(b->nbytes) : ir_calloc(b->nbytes);
    if (!b->owned)
        return false;
    b->data = b->owned;
    return true;
}

/* The buffer table: leaves in id order, then each entry's outputs. */
static bool layout(kiln_module *m)
{
    kiln_graph *g = m->g;
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        n += (ir_ops[g->nodes[i]->op].flags & IR_F_LEAF) != 0;
    for (int e = 0; e < g->nentries; e++)
        n += g->entries[e].n;
    m->bufs = ir_alloc(sizeof(*m->bufs) * (size_t)(n ? n : 1));
    m->leaf_buf = ir_alloc(sizeof(int) * (size_t)(g->nnodes ? g->nnodes : 1));
    m->entry_buf = ir_alloc(sizeof(int) * (size_t)(g->nentries ? g->nentries : 1));
    m->entry_calls = ir_calloc(sizeof(uint64_t) * 2 * (size_t)(g->nentries ? g->nentries : 1));
    if (!m->bufs || !m->leaf_buf || !m->entry_buf || !m->entry_calls)
        return false;
    m->entry_ns = m->entry_calls + (g->nentries ? g->nentries : 1);
    memset(m->bufs, 0, sizeof(*m->bufs) * (size_t)(n ? n : 1));
    for (int i = 0; i < g->nnodes; i++) {
        kiln_tensor *t = g->nodes[i];
        m->leaf_buf[i] = -1;
        if (!(ir_ops[t->op].flags & IR_F_LEAF))
            continue;
        m->leaf_buf[i] = m->nbufs;
        if (!add_buf(m, t->name, t->op == IR_PARAM ? RT_PARAM : RT_INPUT, t))
            return false;
        if (t->op == IR_PARAM)
            init_param(g, t, m->bufs[m->nbufs - 1].data);
    }
    for (int e = 0; e < g->nentries; e++) {
        m->entry_buf[e] = m->nbufs;
        for (int k = 0; k < g->entries[e].n; k++) {
            if (!add_buf(m, g->entries[e].output_names[k], RT_OUTPUT, g->entries[e].outputs[k]))
                return false;
            m->bufs[m->nbufs - 1].entry = e;
            m->bufs[m->nbufs - 1].index = k;
        }
    }
    return true;
}

/* The module around *mg (taken over: *mg is NULL afterwards; freed on
 * failure), a verified graph: laid out, params initialised, no executor yet.
 * Errors go on g, prefixed "fn: ". */
kiln_status rt_module_new(kiln_graph *g, kiln_graph **mg, kiln_target target, const char *fn,
                          kiln_module **out)
{
    *out = NULL;
    kiln_module *m = ir_alloc(sizeof(*m));
    if (!m) {
        kiln_graph_free(*mg);
        *mg = NULL;
        return rt_compile_fail(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    }
    memset(m, 0, sizeof(*m));
    atomic_flag_clear(&m->busy);
    m->target = target;
    m->g = *mg;
    m->seed = m->g->seed;
    m->dp_step = -1;
    *mg = NULL;
    if (!layout(m)) {
        module_destroy(m);
        return rt_compile_fail(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    }
    *out = m;
    return KILN_OK;
}

void rt_module_destroy(kiln_module *m)
{
    if (m)
        module_destroy(m);
}

void kiln_module_free(kiln_module *m)
{
    if (m)
        module_destroy(m);
}

/* ---- running --------------------------------------------------------------- */

static int find_entry(const kiln_graph *g, const char *name)
{
    for (int e = 0; e < g->nentries; e++)
        if (strcmp(g->entries[e].name, name) == 0)
            return e;
    return -1;
}

/* "'train', 'predict'" (cut short past cap), or "no entries". */
static const char *entry_list(const kiln_graph *g, char *out, size_t cap)
{
    size_t at = 0;
    out[0] = 0;
    for (int i = 0; i < g->nentries && at + 1 < cap; i++) {
        int n = snprintf(out + at, cap - at, "%s'%s'", i ? ", " : "", g->entries[i].name);
        at += n > 0 ? (size_t)n : 0;
    }
    return g->nentries ? out : "no entries";
}

/* ---- data-parallel steps (comm.c says how) ----------------------------------- */

/* The buffer of backward entry be's output "<e's name>.update" (a step that
 * accumulates micro-batches: true when this one reduces and updates), or -1. */
static int dp_update_flag(const kiln_module *m, int e, int be)
{
    const char *name = m->g->entries[e].name;
    size_t n = strlen(name);
    const ir_entry *x = &m->g->entries[be];
    for (int k = 0; k < x->n; k++) {
        const char *o = x->output_names[k];
        if (strncmp(o, name, n) == 0 && strcmp(o + n, ".update") == 0)
            return m->entry_buf[be] + k;
    }
    return -1;
}

/* Runs entry e: every input it needs must have been set. */
static kiln_status run_one(kiln_module *m, int e)
{
    const kiln_graph *g = m->g;
    bool *needed = ir_alloc(sizeof(bool) * (size_t)(g->nnodes ? g->nnodes : 1));
    if (!needed)
        return rt_fail(m, KILN_ERR_NOMEM, "kiln_module_run: out of memory");
    memset(needed, 0, sizeof(bool) * (size_t)g->nnodes);
    const ir_entry *x = &g->entries[e];
    for (int k = 0; k < x->n; k++)
        needed[x->outputs[k]->id] = true;
    /* operands have smaller ids: one backward sweep marks every dependency */
    for (int i = g->nnodes - 1; i >= 0; i--)
        if (needed[i])
            for (int k = 0; k < g->nodes[i]->nin; k++)
                needed[g->nodes[i]->in[k]->id] = true;
    kiln_status s = KILN_OK;
    for (int i = 0; i < g->nnodes && s == KILN_OK; i++)
        if (needed[i] && g->nodes[i]->op == IR_INPUT && !rt_leaf(m, g->nodes[i])->set)
            s = rt_fail(m, KILN_ERR_INVALID, "kiln_module_run: input '%s' was never set",
                        g->nodes[i]->name);
    if (s == KILN_OK) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        s = m->exec->run(m, e, needed);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        m->entry_calls[e]++;
        m->entry_ns[e] +=
            (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
    }
    ir_free(needed);
    if (s == KILN_OK)
        m->run++;
    return s;
}

static kiln_status run_body(kiln_module *m, const char *entry)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!entry)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_run: the entry name is NULL");
    int e = find_entry(m->g, entry);
    if (e < 0) {
        char list[512];
        return rt_fail(m, KILN_ERR_NOT_FOUND,
                       "kiln_module_run: no entry named '%s'; the module has %s", entry,
                       entry_list(m->g, list, sizeof list));
    }
    /* a data-parallel step: backward, the mean of the gradients, the update */
    int be = rt_dp_backward(m, e);
    if (be < 0)
        return run_one(m, e);
    int flag = dp_update_flag(m, e, be);
    rt_dp_begin(m);
    if (flag < 0) /* the executor may start gradients' all-reduces (rt_dp_ready) */
        m->dp_step = e;
    kiln_status s = run_one(m, be);
    m->dp_step = -1;
    if (s != KILN_OK) {
        rt_dp_drain(m);
        return s;
    }
    if (flag >= 0) { /* accumulating: the k-th micro-batch reduces and updates */
        s = rt_host_read(m, &m->bufs[flag]);
        if (s != KILN_OK || !*(const bool *)m->bufs[flag].data)
            return s;
    }
    s = rt_dp_reduce(m, e, be);
    return s != KILN_OK ? s : run_one(m, e);
}

kiln_status kiln_module_run(kiln_module *m, const char *entry)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!rt_enter(m))
        return rt_busy(m, "kiln_module_run");
    kiln_status s = run_body(m, entry);
    rt_leave(m);
    return s;
}

/* ---- named tensors ----------------------------------------------------------- */

/* Looks a name up for function fn; records the error and returns NULL when
 * the name is NULL or unknown. */
static rt_buf *lookup(kiln_module *m, const char *fn, const char *name, kiln_status *s)
{
    if (!name) {
        *s = rt_fail(m, KILN_ERR_INVALID, "%s: the name is NULL", fn);
        return NULL;
    }
    rt_buf *b = rt_find(m, name);
    if (!b)
        *s = rt_fail(m, KILN_ERR_NOT_FOUND, "%s: no tensor named '%s'", fn, name);
    return b;
}

static kiln_status check_bytes(kiln_module *m, const char *fn, const rt_buf *b, size_t nbytes)
{
    if (nbytes == b->nbytes)
        return KILN_OK;
    char shape[256];
    ir_shape_str(shape, sizeof(shape), b->node->rank, b->node->dims);
    return rt_fail(m, KILN_ERR_SHAPE, "%s: '%s' is %s%s (%zu bytes), got %zu bytes", fn, b->name,
                   kiln_dtype_name(b->node->dtype), shape, b->nbytes, nbytes);
}

static kiln_status set_body(kiln_module *m, const char *name, const void *src, size_t nbytes)
{
    if (!m)
        return KILN_ERR_INVALID;
    kiln_status s = KILN_OK;
    rt_buf *b = lookup(m, "kiln_module_set", name, &s);
    if (!b)
        return s;
    if ((s = check_bytes(m, "kiln_module_set", b, nbytes)) != KILN_OK)
        return s;
    if (!src && nbytes)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_set: src is NULL");
    if (nbytes && b->data != src)
        memmove(b->data, src, nbytes);
    if (b->node->dtype == KILN_BOOL)
        ir_bool_normalise(b->data, nbytes);
    b->set = true;
    rt_host_wrote(m, b);
    return KILN_OK;
}

kiln_status kiln_module_set(kiln_module *m, const char *name, const void *src, size_t nbytes)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!rt_enter(m))
        return rt_busy(m, "kiln_module_set");
    kiln_status s = set_body(m, name, src, nbytes);
    rt_leave(m);
    return s;
}

static kiln_status get_body(kiln_module *m, const char *name, void *dst, size_t nbytes)
{
    if (!m)
        return KILN_ERR_INVALID;
    kiln_status s = KILN_OK;
    rt_buf *b = lookup(m, "kiln_module_get", name, &s);
    if (!b)
        return s;
    if ((s = check_bytes(m, "kiln_module_get", b, nbytes)) != KILN_OK)
        return s;
    if (!dst && nbytes)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_get: dst is NULL");
    if ((s = rt_host_read(m, b)) != KILN_OK)
        return s;
    if (nbytes && b->data != dst)
        memmove(dst, b->data, nbytes);
    return KILN_OK;
}

kiln_status kiln_module_get(kiln_module *m, const char *name, void *dst, size_t nbytes)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!rt_enter(m))
        return rt_busy(m, "kiln_module_get");
    kiln_status s = get_body(m, name, dst, nbytes);
    rt_leave(m);
    return s;
}

static kiln_status check_scalar(kiln_module *m, const char *fn, const rt_buf *b)
{
    int64_t n = ir_numel(b->node);
    if (n == 1)
        return KILN_OK;
    return rt_fail(m, KILN_ERR_SHAPE,
                   "%s: a Tensor with %lld elements cannot be converted to Scalar", fn,
                   (long long)n);
}

kiln_status kiln_module_set_scalar(kiln_module *m, const char *name, double v)
{
    if (!m)
        return KILN_ERR_INVALID;
    kiln_status s = KILN_OK;
    rt_buf *b = lookup(m, __func__, name, &s);
    if (!b)
        return s;
    if ((s = check_scalar(m, __func__, b)) != KILN_OK)
        return s;
    if (!ir_value_fits(b->node->dtype, v))
        return rt_fail(m, KILN_ERR_INVALID,
                       "kiln_module_set_scalar: value cannot be converted to type %s without "
                       "overflow",
                       kiln_dtype_name(b->node->dtype));
    ir_store_f(b->node->dtype, b->data, 0, v);
    b->set = true;
    rt_host_wrote(m, b);
    return KILN_OK;
}

kiln_status kiln_module_get_scalar(kiln_module *m, const char *name, double *v)
{
    if (!m)
        return KILN_ERR_INVALID;
    kiln_status s = KILN_OK;
    rt_buf *b = lookup(m, __func__, name, &s);
    if (!b)
        return s;
    if (!v)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_get_scalar: v is NULL");
    if ((s = check_scalar(m, __func__, b)) != KILN_OK)
        return s;
    if ((s = rt_host_read(m, b)) != KILN_OK)
        return s;
    *v = ir_load_f(b->node->dtype, b->data, 0);
    return KILN_OK;
}

/* Another bound tensor whose memory overlaps b->nbytes at p, or NULL. Kernels
 * assume distinct buffers: an output written over an input it still reads
 * gives wrong results, so no two bound tensors may share a byte. */
static const rt_buf *bound_overlap(const kiln_module *m, const rt_buf *b, const void *p)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + b->nbytes;
    for (int i = 0; i < m->nbufs; i++) {
        const rt_buf *o = &m->bufs[i];
        if (o == b || o->owned || o->shares >= 0 || !o->nbytes || !b->nbytes)
            continue;
        uintptr_t olo = (uintptr_t)o->data, ohi = olo + o->nbytes;
        if (lo < ohi && olo < hi)
            return o;
    }
    return NULL;
}

/* The outputs that share b's storage move with it. */
static void follow(kiln_module *m, const rt_buf *b)
{
    for (int i = 0; i < m->nbufs; i++)
        if (m->bufs[i].shares == (int)(b - m->bufs))
            m->bufs[i].data = b->data;
}

/* host_ptr becomes the tensor's storage: the module reads its current
 * contents as the value (an input counts as set) and writes results into it.
 * NULL gives the module its own storage back, keeping the current value. */
static kiln_status bind_body(kiln_module *m, const char *name, void *host_ptr)
{
    if (!m)
        return KILN_ERR_INVALID;
    kiln_status s = KILN_OK;
    rt_buf *b = lookup(m, "kiln_module_bind", name, &s);
    if (!b)
        return s;
    if (b->shares >= 0)
        return rt_fail(m, KILN_ERR_INVALID,
                       "kiln_module_bind: '%s' is '%s' updated in place (the same storage): "
                       "bind '%s'",
                       b->name, m->bufs[b->shares].name, m->bufs[b->shares].name);
    if (host_ptr && m->exec && m->exec->host_read)
        return rt_fail(m, KILN_ERR_INVALID,
                       "kiln_module_bind: '%s' lives on the %s device: host memory cannot be "
                       "bound to it; use kiln_module_set and kiln_module_get",
                       b->name, m->exec->name + strlen("device:"));
    if (host_ptr) {
        const rt_buf *o = bound_overlap(m, b, host_ptr);
        if (o)
            return rt_fail(m, KILN_ERR_INVALID,
                           "kiln_module_bind: the memory for '%s' (%zu bytes) overlaps the memory "
                           "bound to '%s' (%zu bytes); bound tensors must not share memory",
                           b->name, b->nbytes, o->name, o->nbytes);
        ir_free(b->owned);
        b->owned = NULL;
        b->data = host_ptr;
        b->set = true;
        follow(m, b);
        return KILN_OK;
    }
    if (b->owned)
        return KILN_OK;
    void *p = ir_alloc(b->nbytes ? b->nbytes : 1);
    if (!p)
        return rt_fail(m, KILN_ERR_NOMEM, "kiln_module_bind: out of memory");
    memcpy(p, b->data, b->nbytes);
    b->owned = b->data = p;
    follow(m, b);
    return KILN_OK;
}

kiln_status kiln_module_bind(kiln_module *m, const char *name, void *host_ptr)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!rt_enter(m))
        return rt_busy(m, "kiln_module_bind");
    kiln_status s = bind_body(m, name, host_ptr);
    rt_leave(m);
    return s;
}

kiln_status kiln_module_print(kiln_module *m, const char *name, FILE *f)
{
    if (!m)
        return KILN_ERR_INVALID;
    kiln_status s = KILN_OK;
    rt_buf *b = lookup(m, __func__, name, &s);
    if (!b)
        return s;
    if (!f)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_print: the FILE is NULL");
    if ((s = rt_host_read(m, b)) != KILN_OK)
        return s;
    const kiln_tensor *t = b->node;
    size_t len = kiln_format(NULL, 0, t->dtype, t->rank, t->dims, b->data);
    char *text = ir_alloc(len + 1);
    if (!text)
        return rt_fail(m, KILN_ERR_NOMEM, "kiln_module_print: out of memory");
    kiln_format(text, len + 1, t->dtype, t->rank, t->dims, b->data);
    bool ok = fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF;
    ir_free(text);
    if (!ok)
        return rt_fail(m, KILN_ERR_IO, "kiln_module_print: writing '%s' failed", name);
    return KILN_OK;
}

/* The .kir text of a graph (ir_alloc'd), or NULL when out of memory. */
char *rt_graph_text(const kiln_graph *g)
{
    char *mem = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&mem, &len);
    if (!f)
        return NULL;
    kiln_status s = ir_print(g, f);
    bool ok = fclose(f) == 0 && s == KILN_OK;
    char *text = ok ? ir_alloc(len + 1) : NULL;
    if (text) {
        memcpy(text, mem, len);
        text[len] = 0;
    }
    free(mem); /* open_memstream's buffer comes from malloc, not the hook */
    return text;
}

const char *kiln_module_source(kiln_module *m)
{
    if (!m)
        return "";
    if (m->exec->source)
        return m->exec->source(m);
    if (!m->source)
        m->source = rt_graph_text(m->g);
    return m->source ? m->source : "";
}

/* ---- profile ----------------------------------------------------------------- */

/* Entries (runs, time), then the executor's kernels: the C target times
 * every kernel call in the generated code (ctx->prof); the interpreter has
 * no kernels and says so. */
kiln_status kiln_module_profile(kiln_module *m, FILE *f)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!f)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_profile: the FILE is NULL");
    fprintf(f, "kiln profile (%s target)\n", m->exec->name);
    fprintf(f, "%-32s %10s %12s %12s\n", "entry", "runs", "total ms", "mean ms");
    for (int e = 0; e < m->g->nentries; e++)
        fprintf(f, "%-32s %10llu %12.3f %12.3f\n", m->g->entries[e].name,
                (unsigned long long)m->entry_calls[e], (double)m->entry_ns[e] / 1e6,
                m->entry_calls[e] ? (double)m->entry_ns[e] / 1e6 / (double)m->entry_calls[e] : 0.0);
    if (m->exec->profile)
        m->exec->profile(m, f);
    else
        fprintf(f,
                "(the %s runs graph nodes, not kernels: compile for KILN_TARGET_C for "
                "per-kernel times)\n",
                m->exec->name);
    return ferror(f) ? rt_fail(m, KILN_ERR_IO, "kiln_module_profile: cannot write the profile")
                     : KILN_OK;
}
