/*
 * comm.c - kiln_module_set_comm: a module joins a communicator (kiln_comm,
 * kiln.h) for data-parallel steps.
 *
 * A step built with opt.data_parallel is two entries (passes/optim.c):
 * "<name>.backward" (loss and gradients "<name>.grad.<p>") and "<name>" (the
 * update, reading "<name>.mean_grad.<p>"). kiln_module_run(m, "<name>") runs
 * the first, then rt_dp_reduce: the gradients, in buckets (several in one
 * message, as DistributedDataParallel's), are summed over the ranks
 * (comm->allreduce_sum) and divided by their number into their mean inputs;
 * then the update. Accumulating k micro-batches, the backward sums them
 * locally and says on the k-th ("<name>.update") that the reduce and the
 * update follow (module.c's run_body).
 * Every rank runs the same entries in the same order, so the collective
 * calls match. Without a communicator the mean is the gradient itself.
 *
 * kiln_module_set_comm checks that the ranks' params agree (names, dtypes,
 * shapes: rank 0's list is broadcast and each rank compares; the verdicts
 * are summed, so every rank fails together, naming the first param that
 * differs) and copies rank 0's values to every rank. With the communicator's
 * optional allreduce_start, the C executor reports each gradient complete as
 * soon as the backward's last kernel touching it is done (rt_dp_ready,
 * cexec.c) and a bucket's sum starts with its last gradient, so the sums
 * overlap the rest of the backward. The Philox key of the
 * run becomes seed + rank * 0x9E3779B97F4A7C15: random ops draw a stream per
 * rank (rank 0 keeps the graph's), the same on every run of the job.
 */
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- data-parallel steps ------------------------------------------------------ */

static const char GRAD[] = ".grad.", MEAN[] = ".mean_grad.", BACKWARD[] = ".backward";

int rt_dp_backward(const kiln_module *m, int e)
{
    const char *name = m->g->entries[e].name;
    size_t n = strlen(name);
    for (int b = 0; b < m->g->nentries; b++) {
        const char *bn = m->g->entries[b].name;
        if (b != e && strncmp(bn, name, n) == 0 && strcmp(bn + n, BACKWARD) == 0)
            return b;
    }
    return -1;
}

kiln_status rt_comm_fail(kiln_module *m, const char *fn, const char *what)
{
    const char *why = m->comm->error ? m->comm->error(m->comm) : NULL;
    return rt_fail(m, KILN_ERR_DEVICE, "%s: %s failed: %s", fn, what,
                   why && *why ? why : "the communicator gave no reason");
}

/* Whether module buffer b is a gradient output "<e>.grad.<p>" of backward be. */
static bool is_grad(const kiln_module *m, int e, int b)
{
    const char *name = m->g->entries[e].name;
    size_t n = strlen(name);
    return strncmp(m->bufs[b].name, name, n) == 0 &&
           strncmp(m->bufs[b].name + n, GRAD, sizeof GRAD - 1) == 0;
}

void rt_dp_free(kiln_module *m)
{
    for (int i = 0; i < m->dp_nbuckets; i++) {
        ir_free(m->dp_buckets[i].bufs);
        ir_free(m->dp_buckets[i].stage);
    }
    ir_free(m->dp_buckets);
    ir_free(m->dp_bucket_of);
    m->dp_buckets = NULL;
    m->dp_bucket_of = NULL;
    m->dp_nbuckets = 0;
}

/* Groups each backward's gradients into buckets, as DistributedDataParallel
 * does: in reverse param order (the order a backward completes them), one
 * dtype per bucket, at most c->bucket_bytes (0: 25 MiB; < 0: one gradient
 * each) unless a gradient alone is larger. False when out of memory. */
static bool make_buckets(kiln_module *m, const kiln_comm *c)
{
    int64_t cap = c->bucket_bytes > 0 ? c->bucket_bytes : c->bucket_bytes < 0 ? 1 : 25 << 20;
    m->dp_bucket_of = ir_alloc(sizeof(int) * (size_t)(m->nbufs + 1));
    m->dp_buckets = ir_calloc(sizeof(rt_bucket) * (size_t)(m->nbufs + 1));
    if (!m->dp_bucket_of || !m->dp_buckets)
        return false;
    for (int b = 0; b < m->nbufs; b++)
        m->dp_bucket_of[b] = -1;
    for (int e = 0; e < m->g->nentries; e++) {
        int be = rt_dp_backward(m, e);
        if (be < 0)
            continue;
        rt_bucket *open = NULL;
        for (int k = m->g->entries[be].n - 1; k >= 0; k--) {
            int b = m->entry_buf[be] + k;
            if (!is_grad(m, e, b))
                continue;
            kiln_dtype dt = m->bufs[b].node->dtype;
            int64_t numel = ir_numel(m->bufs[b].node);
            if (!open || open->dt != dt ||
                (open->numel + numel) * (int64_t)kiln_dtype_size(dt) > cap) {
                open = &m->dp_buckets[m->dp_nbuckets++];
                *open = (rt_bucket){.be = be, .dt = dt};
                if (!(open->bufs = ir_alloc(sizeof(int) * (size_t)m->g->entries[be].n)))
                    return false;
            }
            m->dp_bucket_of[b] = (int)(open - m->dp_buckets);
            open->bufs[open->n++] = b;
            open->numel += numel;
        }
    }
    for (int i = 0; i < m->dp_nbuckets; i++) {
        rt_bucket *k = &m->dp_buckets[i];
        if (k->n > 1 && !(k->stage = ir_alloc((size_t)k->numel * kiln_dtype_size(k->dt))))
            return false;
    }
    return true;
}

/* Bucket k's message: its stage, or its one gradient. */
static void *message(kiln_module *m, const rt_bucket *k)
{
    return k->stage ? k->stage : m->bufs[k->bufs[0]].data;
}

/* Copies bucket k's gradients into its stage (host copies: current). */
static void fill(kiln_module *m, const rt_bucket *k)
{
    char *at = k->stage;
    for (int i = 0; at && i < k->n; i++) {
        const rt_buf *g = &m->bufs[k->bufs[i]];
        memcpy(at, g->data, g->nbytes);
        at += g->nbytes;
    }
}

bool rt_dp_overlap(const kiln_module *m)
{
    return m->dp_step >= 0 && m->dp_buckets && m->comm && m->comm->allreduce_start &&
           m->comm->allreduce_wait;
}

void rt_dp_begin(kiln_module *m)
{
    for (int i = 0; i < m->dp_nbuckets; i++)
        m->dp_buckets[i].ready = 0;
    m->dp_failed = false;
}

/* Gradient b is complete: when its bucket is, the bucket's sum starts. */
void rt_dp_ready(kiln_module *m, int b)
{
    if (!rt_dp_overlap(m) || m->dp_failed || m->dp_bucket_of[b] < 0)
        return;
    rt_bucket *k = &m->dp_buckets[m->dp_bucket_of[b]];
    if (k->pending || ++k->ready < k->n)
        return;
    fill(m, k);
    kiln_comm *c = m->comm;
    if (c->allreduce_start(c, message(m, k), k->numel, k->dt, &k->pending) != 0) {
        k->pending = NULL;
        m->dp_failed = true;
    }
}

void rt_dp_poll(kiln_module *m)
{
    if (!rt_dp_overlap(m) || !m->comm->allreduce_test)
        return;
    for (int i = 0; i < m->dp_nbuckets; i++)
        if (m->dp_buckets[i].pending &&
            m->comm->allreduce_test(m->comm, m->dp_buckets[i].pending) < 0)
            m->dp_failed = true;
}

void rt_dp_drain(kiln_module *m)
{
    for (int i = 0; i < m->dp_nbuckets; i++)
        if (m->dp_buckets[i].pending) {
            m->comm->allreduce_wait(m->comm, m->dp_buckets[i].pending);
            m->dp_buckets[i].pending = NULL;
        }
    m->dp_failed = false;
}

/* The mean input of gradient buffer b ("<e>.mean_grad.<p>"), or NULL. */
static rt_buf *mean_of(kiln_module *m, int e, int b)
{
    char name[1024];
    size_t n = strlen(m->g->entries[e].name);
    snprintf(name, sizeof name, "%s%s%s", m->g->entries[e].name, MEAN,
             m->bufs[b].name + n + sizeof GRAD - 1);
    rt_buf *mean = rt_find(m, name);
    return mean && mean->nbytes == m->bufs[b].nbytes ? mean : NULL;
}

/* The sum of each bucket of backward be over the ranks (waiting for those
 * started during it, else now), divided by their number into e's mean
 * inputs. Without a communicator the mean is the gradient. */
kiln_status rt_dp_reduce(kiln_module *m, int e, int be)
{
    const ir_entry *x = &m->g->entries[be];
    kiln_status s = KILN_OK;
    for (int k = 0; k < x->n && s == KILN_OK; k++) { /* every gradient has its mean input */
        int b = m->entry_buf[be] + k;
        if (is_grad(m, e, b) && !mean_of(m, e, b))
            s = rt_fail(m, KILN_ERR_INVALID, "kiln_module_run: '%s' has no input '%s%s%s'",
                        m->bufs[b].name, m->g->entries[e].name, MEAN,
                        m->bufs[b].name + strlen(m->g->entries[e].name) + sizeof GRAD - 1);
        else if (is_grad(m, e, b))
            s = rt_host_read(m, &m->bufs[b]);
    }
    kiln_comm *c = m->comm;
    int size = c ? c->size : 1;
    for (int k = 0; !c && k < x->n && s == KILN_OK; k++) { /* alone: the mean is the gradient */
        int b = m->entry_buf[be] + k;
        rt_buf *mean = is_grad(m, e, b) ? mean_of(m, e, b) : NULL;
        if (mean) {
            memcpy(mean->data, m->bufs[b].data, mean->nbytes);
            mean->set = true;
            rt_host_wrote(m, mean);
        }
    }
    for (int i = 0; c && i < m->dp_nbuckets && s == KILN_OK; i++) {
        rt_bucket *k = &m->dp_buckets[i];
        if (k->be != be)
            continue;
        char what[1100];
        int at = snprintf(what, sizeof what, "the all-reduce of '%s'", m->bufs[k->bufs[0]].name);
        if (k->n > 1)
            snprintf(what + at, sizeof what - (size_t)at, " and %d more gradient%s", k->n - 1,
                     k->n > 2 ? "s" : "");
        if (k->pending) { /* started during the backward */
            void *pending = k->pending;
            k->pending = NULL;
            if (c->allreduce_wait(c, pending) != 0)
                s = rt_comm_fail(m, "kiln_module_run", what);
        } else {
            fill(m, k);
            if (size > 1 && c->allreduce_sum(c, message(m, k), k->numel, k->dt) != 0)
                s = rt_comm_fail(m, "kiln_module_run", what);
        }
        const char *from = message(m, k);
        for (int j = 0; j < k->n && s == KILN_OK; j++) { /* the means, from the message */
            const rt_buf *grad = &m->bufs[k->bufs[j]];
            rt_buf *mean = mean_of(m, e, k->bufs[j]);
            int64_t numel = ir_numel(grad->node);
            if (k->dt == KILN_F32)
                for (int64_t t = 0; t < numel; t++)
                    ((float *)mean->data)[t] = ((const float *)from)[t] / (float)size;
            else
                for (int64_t t = 0; t < numel; t++)
                    ((double *)mean->data)[t] = ((const double *)from)[t] / (double)size;
            from += grad->nbytes;
            mean->set = true;
            rt_host_wrote(m, mean);
        }
    }
    if (s == KILN_OK && m->dp_failed)
        s = rt_comm_fail(m, "kiln_module_run", "an all-reduce started during the backward");
    rt_dp_drain(m);
    return s;
}

/* "name dtype[shape]\n" per param, in module order (malloc'd). */
static char *param_list(const kiln_module *m, size_t *len)
{
    size_t cap = 64, at = 0;
    char *s = calloc(1, cap); /* "" when the module has no params */
    for (int i = 0; s && i < m->nbufs; i++) {
        const rt_buf *b = &m->bufs[i];
        if (b->role != RT_PARAM)
            continue;
        char shape[256];
        ir_shape_str(shape, sizeof shape, b->node->rank, b->node->dims);
        size_t need = strlen(b->name) + strlen(shape) + 16;
        if (at + need >= cap) {
            char *t = realloc(s, cap = 2 * (at + need));
            if (!t) {
                free(s);
                return NULL;
            }
            s = t;
        }
        at += (size_t)snprintf(s + at, cap - at, "%s %s%s\n", b->name, ir_dtype_kir(b->node->dtype),
                               shape);
    }
    if (s)
        *len = at;
    return s;
}

/* The first line where mine and rank 0's lists differ (0-based), or -1. */
static int first_difference(const char *mine, const char *theirs)
{
    int line = 0;
    for (const char *a = mine, *b = theirs;; line++) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        if (!ea && !eb)
            return -1;
        if (!ea || !eb || ea - a != eb - b || strncmp(a, b, (size_t)(ea - a)) != 0)
            return line;
        a = ea + 1;
        b = eb + 1;
    }
}

static kiln_status attach(kiln_module *m, kiln_comm *c)
{
    const char *fn = "kiln_module_set_comm";
    if (c->size < 1 || c->rank < 0 || c->rank >= c->size || !c->allreduce_sum || !c->broadcast)
        return rt_fail(m, KILN_ERR_INVALID,
                       "%s: the communicator is not valid (rank %d of %d, or a NULL function)", fn,
                       c->rank, c->size);
    m->comm = c; /* for comm_fail */
    size_t len = 0;
    char *mine = param_list(m, &len), *theirs = NULL;
    uint64_t len0 = len;
    kiln_status s = mine ? KILN_OK : rt_fail(m, KILN_ERR_NOMEM, "%s: out of memory", fn);
    if (s == KILN_OK && c->broadcast(c, &len0, sizeof len0, 0) != 0)
        s = rt_comm_fail(m, fn, "broadcasting the param list's size");
    if (s == KILN_OK && !(theirs = calloc(1, (size_t)len0 + 1)))
        s = rt_fail(m, KILN_ERR_NOMEM, "%s: out of memory", fn);
    if (s == KILN_OK && c->rank == 0)
        memcpy(theirs, mine, len);
    if (s == KILN_OK && c->broadcast(c, theirs, (size_t)len0, 0) != 0)
        s = rt_comm_fail(m, fn, "broadcasting the param list");
    /* every rank learns every rank's verdict: slot r = 1 + first differing line */
    double *verdict = s == KILN_OK ? calloc((size_t)c->size, sizeof *verdict) : NULL;
    if (s == KILN_OK && !verdict)
        s = rt_fail(m, KILN_ERR_NOMEM, "%s: out of memory", fn);
    if (s == KILN_OK) {
        verdict[c->rank] = 1.0 + first_difference(mine, theirs);
        if (c->allreduce_sum(c, verdict, c->size, KILN_F64) != 0)
            s = rt_comm_fail(m, fn, "summing the ranks' verdicts on the params");
    }
    for (int r = 0; s == KILN_OK && r < c->size; r++) {
        if (verdict[r] == 0)
            continue;
        int line = (int)verdict[r] - 1;
        const char *at = theirs;
        for (int i = 0; i < line && at; i++)
            at = strchr(at, '\n') ? strchr(at, '\n') + 1 : NULL;
        size_t n = at && strchr(at, '\n') ? (size_t)(strchr(at, '\n') - at) : 0;
        s = n ? rt_fail(m, KILN_ERR_SHAPE,
                        "%s: the ranks' graphs differ: rank %d's param %d is not rank 0's "
                        "'%.*s'",
                        fn, r, line, (int)n, at)
              : rt_fail(m, KILN_ERR_SHAPE,
                        "%s: the ranks' graphs differ: rank %d has more params than rank 0's %d",
                        fn, r, line);
    }
    free(verdict);
    free(mine);
    free(theirs);
    for (int i = 0; s == KILN_OK && i < m->nbufs; i++) {
        rt_buf *b = &m->bufs[i];
        if (b->role != RT_PARAM)
            continue;
        s = rt_host_read(m, b);
        char what[1100];
        snprintf(what, sizeof what, "broadcasting param '%s'", b->name);
        if (s == KILN_OK && c->broadcast(c, b->data, b->nbytes, 0) != 0)
            s = rt_comm_fail(m, fn, what);
        if (s == KILN_OK)
            rt_host_wrote(m, b);
    }
    rt_dp_free(m);
    if (s == KILN_OK && !make_buckets(m, c))
        s = rt_fail(m, KILN_ERR_NOMEM, "%s: out of memory", fn);
    if (s != KILN_OK) {
        m->comm = NULL;
        return s;
    }
    m->seed = m->g->seed + (uint64_t)c->rank * 0x9E3779B97F4A7C15ull;
    return KILN_OK;
}

kiln_status kiln_module_set_comm(kiln_module *m, kiln_comm *c)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!rt_enter(m))
        return rt_busy(m, "kiln_module_set_comm");
    kiln_status s = KILN_OK;
    if (c) {
        s = attach(m, c);
    } else {
        m->comm = NULL;
        rt_dp_free(m);
        m->seed = m->g->seed;
    }
    rt_leave(m);
    return s;
}
