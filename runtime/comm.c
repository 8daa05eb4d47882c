/*
 * comm.c - kiln_module_set_comm: a module joins a communicator (kiln_comm,
 * kiln.h) for data-parallel steps.
 *
 * A step built with opt.data_parallel is two entries (passes/optim.c):
 * "<name>.backward" (loss and gradients "<name>.grad.<p>") and "<name>" (the
 * update, reading "<name>.mean_grad.<p>"). kiln_module_run(m, "<name>") runs
 * the first, then rt_dp_reduce: each gradient is summed over the ranks in
 * place (comm->allreduce_sum) and divided by their number, as
 * DistributedDataParallel averages, into its mean input; then the update.
 * Every rank runs the same entries in the same order, so the collective
 * calls match. Without a communicator the mean is the gradient itself.
 *
 * kiln_module_set_comm checks that the ranks' params agree (names, dtypes,
 * shapes: rank 0's list is broadcast and each rank compares; the verdicts
 * are summed, so every rank fails together, naming the first param that
 * differs) and copies rank 0's values to every rank. With the communicator's
 * optional allreduce_start, the C executor starts each gradient's sum as
 * soon as the backward's last kernel touching it is done (rt_dp_ready,
 * cexec.c), so the sums overlap the rest of the backward. The Philox key of the
 * run becomes seed + rank * 0x9E3779B97F4A7C15: random ops draw a stream per
 * rank (rank 0 keeps the graph's), the same on every run of the job.
 */
#include "rt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    ir_free(m->dp_pending);
    m->dp_pending = NULL;
    if (s == KILN_OK && c->allreduce_start && c->allreduce_wait &&
        !(m->dp_pending = ir_calloc(sizeof(void *) * (size_t)(m->nbufs ? m->nbufs : 1))))
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
        ir_free(m->dp_pending);
        m->dp_pending = NULL;
        m->seed = m->g->seed;
    }
    rt_leave(m);
    return s;
}
