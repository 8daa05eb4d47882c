/*
 * graph.c - graph lifetime, node creation, sticky errors, cloning.
 *
 * A graph owns one arena; nodes, names and constant data are allocated in it
 * and die with it. The node list and entry list are growable arrays outside
 * the arena (through the allocator hook). The first error recorded is kept:
 * builders check kiln_graph_status before doing anything.
 */
#include "ir.h"

#include <stdlib.h>
#include <string.h>

kiln_graph *kiln_graph_new(void)
{
    kiln_graph *g = ir_alloc(sizeof(*g));
    if (!g)
        return NULL;
    memset(g, 0, sizeof(*g));
    g->status = KILN_OK;
    return g;
}

void kiln_graph_free(kiln_graph *g)
{
    if (!g)
        return;
    ir_free(g->nodes);
    ir_free(g->entries);
    ir_arena_free(&g->arena);
    ir_free(g);
}

kiln_status kiln_graph_status(const kiln_graph *g)
{
    return g ? g->status : KILN_ERR_INVALID;
}

const char *kiln_graph_error(const kiln_graph *g)
{
    return g ? g->error : "kiln_graph_error: graph is NULL";
}

void kiln_graph_seed(kiln_graph *g, uint64_t seed)
{
    if (g)
        g->seed = seed;
}

bool ir_begin(kiln_graph *g)
{
    if (!g)
        return false;
    if (g->compile_error) {
        g->status = KILN_OK;
        g->error[0] = 0;
        g->compile_error = false;
    }
    return g->status == KILN_OK;
}

kiln_tensor *ir_vfail(kiln_graph *g, kiln_status s, const char *fmt, va_list ap)
{
    if (g && g->status == KILN_OK) {
        g->status = s;
        vsnprintf(g->error, sizeof(g->error), fmt, ap);
    }
    return NULL;
}

kiln_tensor *ir_fail(kiln_graph *g, kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ir_vfail(g, s, fmt, ap);
    va_end(ap);
    return NULL;
}

kiln_status ir_fail_status(kiln_graph *g, kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ir_vfail(g, s, fmt, ap);
    va_end(ap);
    return s;
}

static bool grow(void **arr, int *cap, int need, size_t elem)
{
    if (need <= *cap)
        return true;
    int ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *p = ir_realloc(*arr, (size_t)ncap * elem);
    if (!p)
        return false;
    *arr = p;
    *cap = ncap;
    return true;
}

bool ir_shape_fits(char *why, size_t cap, kiln_dtype dt, int rank, const int64_t *dims)
{
    /* a zero-size axis counts as 1: strides and batch counts multiply the
     * other axes, so their product must fit even when the tensor is empty */
    int64_t n = 1, bytes;
    char buf[256];
    for (int i = 0; i < rank; i++)
        if (__builtin_mul_overflow(n, dims[i] > 1 ? dims[i] : 1, &n)) {
            snprintf(why, cap, "the shape %s has more elements than int64 can count",
                     ir_shape_str(buf, sizeof(buf), rank, dims));
            return false;
        }
    if (__builtin_mul_overflow(n, (int64_t)kiln_dtype_size(dt), &bytes)) {
        snprintf(why, cap, "the shape %s of dtype %s has more bytes than int64 can count",
                 ir_shape_str(buf, sizeof(buf), rank, dims), kiln_dtype_name(dt));
        return false;
    }
    return true;
}

kiln_tensor *ir_node_new(kiln_graph *g, ir_op op, kiln_dtype dt, int rank, const int64_t *dims,
                         int nin, kiln_tensor *const *in)
{
    char why[400];
    /* the builders refuse such shapes naming themselves; this catches the rest */
    if (!ir_shape_fits(why, sizeof(why), dt, rank, dims))
        return ir_fail(g, KILN_ERR_SHAPE, "%s node: %s", ir_ops[op].name, why);
    if (!grow((void **)&g->nodes, &g->cap_nodes, g->nnodes + 1, sizeof(*g->nodes)))
        return ir_fail(g, KILN_ERR_NOMEM, "out of memory");
    kiln_tensor *t = ir_arena_alloc(&g->arena, sizeof(*t));
    kiln_tensor **ins = nin ? ir_arena_alloc(&g->arena, sizeof(*ins) * (size_t)nin) : NULL;
    if (!t || (nin && !ins))
        return ir_fail(g, KILN_ERR_NOMEM, "out of memory");
    t->id = g->nnodes;
    t->op = op;
    t->dtype = dt;
    t->rank = rank;
    for (int i = 0; i < rank; i++)
        t->dims[i] = dims[i];
    t->nin = nin;
    t->in = ins;
    for (int i = 0; i < nin; i++)
        ins[i] = in[i];
    for (int i = 0; i < KILN_MAX_RANK; i++)
        t->perm[i] = i;
    t->graph = g;
    g->nodes[g->nnodes++] = t;
    return t;
}

int64_t ir_shape_numel(int rank, const int64_t *dims)
{
    /* nodes pass ir_shape_fits, so only a shape from elsewhere can overflow:
     * it saturates (0 if an axis is empty) rather than wrap */
    int64_t n = 1;
    bool over = false;
    for (int i = 0; i < rank; i++) {
        if (dims[i] == 0)
            return 0;
        over = over || __builtin_mul_overflow(n, dims[i], &n);
    }
    return over ? INT64_MAX : n;
}

void ir_bool_normalise(void *p, size_t n)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = b[i] != 0;
}

int64_t ir_numel(const kiln_tensor *t)
{
    return ir_shape_numel(t->rank, t->dims);
}

int ir_attention_arity(ir_op op)
{
    return op == IR_SDPA ? 3 : op == IR_SDPA_STATS ? 4 : 5;
}

kiln_tensor *ir_attention_mask(const kiln_tensor *t)
{
    return t->nin > ir_attention_arity(t->op) ? t->in[t->nin - 1] : NULL;
}

kiln_tensor *ir_sdpa_backward_new(kiln_graph *g, ir_op op, int axis, kiln_tensor *const *in,
                                  kiln_tensor *mask, double scale, bool causal)
{
    int n = ir_attention_arity(op);
    kiln_tensor *ops[6]; /* sdpa_grad: q, k, v, g, stats, mask */
    for (int i = 0; i < n; i++)
        if (!(ops[i] = in[i]))
            return NULL;
    if (mask)
        ops[n++] = mask;
    const kiln_tensor *like = op == IR_SDPA_STATS ? in[3] : in[axis];
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, like->dims, sizeof(int64_t) * (size_t)like->rank);
    if (op == IR_SDPA_STATS)
        dims[like->rank - 1] = 2;
    kiln_tensor *r =
        ir_node_new(g, op, op == IR_SDPA_STATS ? KILN_F64 : in[0]->dtype, like->rank, dims, n, ops);
    if (r) {
        r->value = scale;
        r->causal = causal;
        r->axis = axis;
    }
    return r;
}

bool ir_conv_shape(const kiln_tensor *x, const kiln_tensor *w, const int64_t stride[2],
                   const int64_t dilation[2], int64_t groups, int64_t out[4], char *why, size_t cap)
{
    char a[160], b[160];
    ir_shape_str(a, sizeof a, x->rank, x->dims);
    ir_shape_str(b, sizeof b, w->rank, w->dims);
    if (x->rank != 4 || w->rank != 4) {
        snprintf(why, cap, "input %s and weight %s are not both 4-D (NCHW, OIHW)", a, b);
        return false;
    }
    if (stride[0] < 1 || stride[1] < 1 || dilation[0] < 1 || dilation[1] < 1 || groups < 1) {
        snprintf(why, cap, "stride (%lld, %lld), dilation (%lld, %lld) and groups %lld must be > 0",
                 (long long)stride[0], (long long)stride[1], (long long)dilation[0],
                 (long long)dilation[1], (long long)groups);
        return false;
    }
    if (w->dims[0] % groups != 0 || x->dims[1] % groups != 0 || w->dims[1] != x->dims[1] / groups) {
        snprintf(why, cap, "weight %s over %lld groups does not fit input %s's channels", b,
                 (long long)groups, a);
        return false;
    }
    out[0] = x->dims[0];
    out[1] = w->dims[0];
    for (int d = 0; d < 2; d++) {
        int64_t k = w->dims[2 + d], h = x->dims[2 + d];
        /* span = dilation (k - 1) + 1 <= h, without overflowing */
        if (k < 1 || (k > 1 && dilation[d] > (h - 1) / (k - 1)) || h < 1) {
            snprintf(why, cap, "weight %s with dilation %lld does not fit input %s", b,
                     (long long)dilation[d], a);
            return false;
        }
        out[2 + d] = (h - (dilation[d] * (k - 1) + 1)) / stride[d] + 1;
    }
    return true;
}

kiln_tensor *ir_conv_new(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, const int64_t stride[2],
                         const int64_t dilation[2], int64_t groups)
{
    if (!x || !w)
        return NULL;
    int64_t dims[4];
    char why[400];
    if (!ir_conv_shape(x, w, stride, dilation, groups, dims, why, sizeof why))
        return ir_fail(g, KILN_ERR_SHAPE, "conv: %s", why);
    kiln_tensor *in[2] = {x, w};
    kiln_tensor *r = ir_node_new(g, IR_CONV, x->dtype, 4, dims, 2, in);
    if (r) {
        for (int d = 0; d < 4; d++) {
            r->step[d] = d < 2 ? 1 : stride[d - 2];
            r->dilation[d] = d < 2 ? 1 : dilation[d - 2];
        }
        r->groups = groups;
    }
    return r;
}

bool ir_same_shape(const kiln_tensor *a, const kiln_tensor *b)
{
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i])
            return false;
    return true;
}

void ir_strides(int rank, const int64_t *dims, int64_t *strides)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i];
    }
}

char *ir_shape_str(char *buf, size_t cap, int rank, const int64_t *dims)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (n < cap)
        snprintf(buf + n, cap - n, "]");
    return buf;
}

int kiln_tensor_rank(const kiln_tensor *t)
{
    return t ? t->rank : -1;
}

int64_t kiln_tensor_dim(const kiln_tensor *t, int axis)
{
    if (!t)
        return -1;
    if (axis < 0)
        axis += t->rank;
    if (axis < 0 || axis >= t->rank)
        return -1;
    return t->dims[axis];
}

kiln_dtype kiln_tensor_dtype(const kiln_tensor *t)
{
    return t ? t->dtype : KILN_F32;
}

int64_t kiln_tensor_numel(const kiln_tensor *t)
{
    return t ? ir_numel(t) : -1;
}

kiln_tensor *ir_find_leaf(const kiln_graph *g, const char *name)
{
    for (int i = 0; i < g->nnodes; i++) {
        kiln_tensor *t = g->nodes[i];
        if ((ir_ops[t->op].flags & IR_F_LEAF) && strcmp(t->name, name) == 0)
            return t;
    }
    return NULL;
}

ir_entry *ir_find_entry(const kiln_graph *g, const char *name)
{
    for (int i = 0; i < g->nentries; i++)
        if (strcmp(g->entries[i].name, name) == 0)
            return &g->entries[i];
    return NULL;
}

kiln_status ir_check_entry_name(kiln_graph *g, const char *fn, const char *name)
{
    if (!name || !name[0])
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: the entry name must be a non-empty string",
                              fn);
    if (ir_find_entry(g, name))
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: an entry named '%s' already exists", fn,
                              name);
    return KILN_OK;
}

ir_entry *ir_entry_new(kiln_graph *g, const char *name, int n)
{
    if (!grow((void **)&g->entries, &g->cap_entries, g->nentries + 1, sizeof(*g->entries))) {
        ir_fail(g, KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ir_entry e = {0};
    e.name = ir_arena_strdup(&g->arena, name);
    e.n = n;
    e.outputs = ir_arena_alloc(&g->arena, sizeof(*e.outputs) * (size_t)(n ? n : 1));
    e.output_names = ir_arena_alloc(&g->arena, sizeof(*e.output_names) * (size_t)(n ? n : 1));
    if (!e.name || !e.outputs || !e.output_names) {
        ir_fail(g, KILN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    g->entries[g->nentries] = e;
    return &g->entries[g->nentries++];
}

static void *arena_copy(ir_arena *a, const void *src, size_t n)
{
    void *p = ir_arena_alloc(a, n);
    if (p && n)
        memcpy(p, src, n);
    return p;
}

kiln_graph *ir_graph_clone(const kiln_graph *g)
{
    kiln_graph *c = kiln_graph_new();
    if (!c)
        return NULL;
    c->seed = g->seed;
    c->next_stream = g->next_stream;
    for (int i = 0; i < g->nnodes; i++) {
        const kiln_tensor *s = g->nodes[i];
        kiln_tensor *ins[64];
        kiln_tensor **inp = s->nin <= 64 ? ins : ir_alloc(sizeof(*inp) * (size_t)s->nin);
        if (!inp)
            goto oom;
        for (int k = 0; k < s->nin; k++)
            inp[k] = c->nodes[s->in[k]->id];
        kiln_tensor *t = ir_node_new(c, s->op, s->dtype, s->rank, s->dims, s->nin, inp);
        if (inp != ins)
            ir_free(inp);
        if (!t)
            goto oom;
        kiln_tensor **keep_in = t->in;
        *t = *s;
        t->in = keep_in;
        t->graph = c;
        t->name = s->name ? ir_arena_strdup(&c->arena, s->name) : NULL;
        if (s->name && !t->name)
            goto oom;
        if (s->data) {
            size_t n = (size_t)ir_numel(s) * kiln_dtype_size(s->dtype);
            t->data = arena_copy(&c->arena, s->data, n);
            if (!t->data)
                goto oom;
            if (s->op == IR_PARAM)
                t->init.data = t->data;
        }
    }
    for (int i = 0; i < g->nentries; i++) {
        const ir_entry *s = &g->entries[i];
        ir_entry *e = ir_entry_new(c, s->name, s->n);
        if (!e)
            goto oom;
        for (int k = 0; k < s->n; k++) {
            e->outputs[k] = c->nodes[s->outputs[k]->id];
            e->output_names[k] = ir_arena_strdup(&c->arena, s->output_names[k]);
            if (!e->output_names[k])
                goto oom;
        }
    }
    return c;
oom:
    kiln_graph_free(c);
    return NULL;
}

int ir_debug_level(void)
{
    const char *s = getenv("KILN_DEBUG");
    return s && *s ? atoi(s) : 0;
}

static int by_name_then_index(const void *a, const void *b, void *arg)
{
    const char *const *s = arg;
    int i = *(const int *)a, j = *(const int *)b;
    int c = strcmp(s[i], s[j]);
    return c ? c : (i > j) - (i < j);
}

bool ir_first_equal(const char *const *s, int n, int *first)
{
    int *order = ir_alloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!order)
        return false;
    int m = 0;
    for (int i = 0; i < n; i++) {
        first[i] = -1;
        if (s[i])
            order[m++] = i;
    }
    union {
        const char *const *in;
        void *arg;
    } u = {s}; /* qsort_r's argument is not const; by_name_then_index reads it only */
    qsort_r(order, (size_t)m, sizeof(int), by_name_then_index, u.arg);
    for (int r = 1; r < m; r++)
        if (strcmp(s[order[r]], s[order[r - 1]]) == 0)
            first[order[r]] = first[order[r - 1]] >= 0 ? first[order[r - 1]] : order[r - 1];
    ir_free(order);
    return true;
}
