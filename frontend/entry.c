/*
 * entry.c - what turns a graph into callable functions: detach, in-place
 * assignment of params, named entries and optimizer settings. kiln_grad and
 * kiln_train_step live beside their passes (passes/autodiff.c, optim.c),
 * which build on these builders.
 *
 * Requires tensors of one graph; produces DETACH and ASSIGN nodes and
 * ir_entry records whose output names are unique across the graph's
 * namespace (inputs, params and every entry's outputs).
 */
#include "fe.h"

#include <string.h>

kiln_tensor *kiln_detach(kiln_graph *g, kiln_tensor *t)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    return ir_node_new(g, IR_DETACH, t->dtype, t->rank, t->dims, 1, &t);
}

/* Like param.copy_(value): value is converted to the param's dtype and must
 * broadcast to the param's shape. */
kiln_tensor *kiln_assign(kiln_graph *g, kiln_tensor *param, kiln_tensor *value)
{
    const char *fn = __func__;
    if (!ir_begin(g) || !param || !value)
        return NULL;
    if (param->graph != g || param->op != IR_PARAM)
        return fe_fail(g, KILN_ERR_INVALID, fn, "the target must be a param");
    kiln_tensor *ts[2] = {param, value};
    if (!fe_begin(g, 2, ts))
        return NULL;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    if (!fe_broadcast(g, fn, 2, ts, &rank, dims))
        return NULL;
    char have[256], want[256];
    if (rank != param->rank || memcmp(dims, param->dims, sizeof(*dims) * (size_t)rank) != 0)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "output with shape %s doesn't match the broadcast shape %s",
                       ir_shape_str(have, sizeof(have), param->rank, param->dims),
                       ir_shape_str(want, sizeof(want), rank, dims));
    kiln_tensor *v = fe_convert(g, value, param->dtype);
    v = v ? fe_expand_to(g, v, param->rank, param->dims) : NULL;
    if (!v)
        return NULL;
    kiln_tensor *ops[2] = {param, v};
    return ir_node_new(g, IR_ASSIGN, param->dtype, param->rank, param->dims, 2, ops);
}

/* ---- entries ----------------------------------------------------------------- */

/* Who already holds `name`: a leaf, an output of an existing entry, or an
 * earlier output of the entry being made. Writes a description into buf. */
static bool name_taken(const kiln_graph *g, const char *name, char *const *mine, int nmine,
                       char *buf, size_t cap)
{
    const kiln_tensor *leaf = ir_find_leaf(g, name);
    if (leaf) {
        snprintf(buf, cap, "%s", leaf->op == IR_PARAM ? "a param" : "an input");
        return true;
    }
    for (int i = 0; i < g->nentries; i++)
        for (int k = 0; k < g->entries[i].n; k++)
            if (strcmp(g->entries[i].output_names[k], name) == 0) {
                snprintf(buf, cap, "output %d of entry '%s'", k, g->entries[i].name);
                return true;
            }
    for (int k = 0; k < nmine; k++)
        if (strcmp(mine[k], name) == 0) {
            snprintf(buf, cap, "output %d of this entry", k);
            return true;
        }
    return false;
}

/* "<entry>.<i>" in the graph's arena. */
static char *default_name(kiln_graph *g, const char *entry, int i)
{
    int n = snprintf(NULL, 0, "%s.%d", entry, i);
    char *s = ir_arena_alloc(&g->arena, (size_t)n + 1);
    if (s)
        snprintf(s, (size_t)n + 1, "%s.%d", entry, i);
    return s;
}

/* Checks everything before the entry is recorded, so a failed call leaves
 * the graph's entries as they were. An output name that is NULL (or
 * output_names NULL) gets the default "<entry>.<i>". */
bool fe_add_update(kiln_graph *g, kiln_tensor *trigger, kiln_tensor *assign)
{
    if (g->nupdates == g->cap_updates) {
        int cap = g->cap_updates ? 2 * g->cap_updates : 4;
        kiln_tensor **u = ir_arena_alloc(&g->arena, sizeof *u * 2 * (size_t)cap);
        if (!u)
            return ir_fail(g, KILN_ERR_NOMEM, "out of memory"), false;
        if (g->nupdates)
            memcpy(u, g->updates, sizeof *u * 2 * (size_t)g->nupdates);
        g->updates = u;
        g->cap_updates = cap;
    }
    g->updates[2 * g->nupdates] = trigger;
    g->updates[2 * g->nupdates + 1] = assign;
    g->nupdates++;
    return true;
}

/* The registered updates (fe_add_update) whose trigger the outputs depend
 * on, appended to them with names "<entry>.new.<param>": *outs and *names
 * (arena) hold the n outputs and then the updates; *total counts them. */
static kiln_status with_updates(kiln_graph *g, const char *name, int n, kiln_tensor *const *outputs,
                                const char *const *output_names, kiln_tensor *const **outs,
                                const char *const **names, int *total)
{
    *outs = outputs;
    *names = output_names;
    *total = n;
    if (!g->nupdates)
        return KILN_OK;
    bool *need = ir_calloc(sizeof(bool) * (size_t)(g->nnodes ? g->nnodes : 1));
    if (!need)
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_entry: out of memory");
    for (int i = 0; i < n; i++)
        need[outputs[i]->id] = true;
    for (int i = g->nnodes - 1; i >= 0; i--) /* operands have smaller ids */
        if (need[i])
            for (int k = 0; k < g->nodes[i]->nin; k++)
                need[g->nodes[i]->in[k]->id] = true;
    int extra = 0;
    for (int u = 0; u < g->nupdates; u++)
        extra += need[g->updates[2 * u]->id];
    kiln_tensor **o = extra ? ir_arena_alloc(&g->arena, sizeof *o * (size_t)(n + extra)) : NULL;
    const char **nm = extra ? ir_arena_alloc(&g->arena, sizeof *nm * (size_t)(n + extra)) : NULL;
    if (extra && (!o || !nm)) {
        ir_free(need);
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_entry: out of memory");
    }
    if (extra) {
        memcpy(o, outputs, sizeof *o * (size_t)n);
        for (int i = 0; i < n; i++)
            nm[i] = output_names ? output_names[i] : NULL;
        int at = n;
        for (int u = 0; u < g->nupdates; u++) {
            if (!need[g->updates[2 * u]->id])
                continue;
            kiln_tensor *a = g->updates[2 * u + 1];
            size_t len = strlen(name) + strlen(a->in[0]->name) + 6;
            char *s = ir_arena_alloc(&g->arena, len);
            if (!s) {
                ir_free(need);
                return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_entry: out of memory");
            }
            snprintf(s, len, "%s.new.%s", name, a->in[0]->name);
            o[at] = a;
            nm[at++] = s;
        }
        *outs = o;
        *names = output_names || extra ? nm : NULL;
        *total = n + extra;
    }
    ir_free(need);
    return KILN_OK;
}

kiln_status kiln_entry(kiln_graph *g, const char *name, int n, kiln_tensor *const *outputs,
                       const char *const *output_names)
{
    const char *fn = __func__;
    if (!g)
        return KILN_ERR_INVALID;
    if (!ir_begin(g))
        return g->status;
    kiln_status named = ir_check_entry_name(g, fn, name);
    if (named != KILN_OK)
        return named;
    if (n < 1 || !outputs)
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: entry '%s' needs at least one output", fn,
                              name);
    for (int i = 0; i < n; i++) {
        if (!outputs[i])
            return ir_fail_status(g, KILN_ERR_INVALID, "%s: output %d of entry '%s' is NULL", fn, i,
                                  name);
        if (outputs[i]->graph != g)
            return ir_fail_status(g, KILN_ERR_INVALID,
                                  "%s: output %d of entry '%s' belongs to another graph", fn, i,
                                  name);
    }
    /* the running statistics of a batch norm the outputs depend on */
    kiln_tensor *const *all;
    const char *const *all_names;
    kiln_status us = with_updates(g, name, n, outputs, output_names, &all, &all_names, &n);
    if (us != KILN_OK)
        return us;
    outputs = all;
    output_names = all_names;
    /* the entry commits its assigns in output order: a second one to the same
     * param would silently overwrite the first */
    for (int j = 1; j < n; j++)
        for (int i = 0; i < j; i++)
            if (outputs[i]->op == IR_ASSIGN && outputs[j]->op == IR_ASSIGN &&
                outputs[i] != outputs[j] && outputs[i]->in[0] == outputs[j]->in[0])
                return ir_fail_status(g, KILN_ERR_INVALID,
                                      "%s: outputs %d and %d of entry '%s' both assign param "
                                      "'%s'; an entry may assign a param at most once",
                                      fn, i, j, name, outputs[i]->in[0]->name);
    char **names = ir_arena_alloc(&g->arena, sizeof(*names) * (size_t)n);
    if (!names)
        return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    for (int i = 0; i < n; i++) {
        const char *want = output_names ? output_names[i] : NULL;
        if (want && !want[0])
            return ir_fail_status(g, KILN_ERR_INVALID,
                                  "%s: the name of output %d of entry '%s' is empty", fn, i, name);
        names[i] = want ? ir_arena_strdup(&g->arena, want) : default_name(g, name, i);
        if (!names[i])
            return ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
        char who[300];
        if (name_taken(g, names[i], names, i, who, sizeof(who)))
            return ir_fail_status(g, KILN_ERR_INVALID,
                                  "%s: the output name '%s' is already used by %s", fn, names[i],
                                  who);
    }
    ir_entry *e = ir_entry_new(g, name, n);
    if (!e)
        return g->status;
    for (int i = 0; i < n; i++) {
        e->outputs[i] = outputs[i];
        e->output_names[i] = names[i];
    }
    return KILN_OK;
}

/* ---- optimizers ------------------------------------------------------------------ */

/* torch.optim.SGD(params, lr, momentum, weight_decay=...): dampening 0, nesterov off. */
kiln_optim kiln_sgd(double lr, double momentum, double weight_decay)
{
    return (kiln_optim){.kind = KILN_SGD,
                        .lr = lr,
                        .momentum = momentum,
                        .dampening = 0,
                        .weight_decay = weight_decay,
                        .nesterov = false};
}

/* torch.optim.Adam(params, lr, betas=(beta1, beta2), eps): weight_decay 0. */
kiln_optim kiln_adam(double lr, double beta1, double beta2, double eps)
{
    return (kiln_optim){
        .kind = KILN_ADAM, .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps, .weight_decay = 0};
}

/* torch.optim.AdamW(params, lr, betas=(beta1, beta2), eps, weight_decay). */
kiln_optim kiln_adamw(double lr, double beta1, double beta2, double eps, double weight_decay)
{
    return (kiln_optim){.kind = KILN_ADAMW,
                        .lr = lr,
                        .beta1 = beta1,
                        .beta2 = beta2,
                        .eps = eps,
                        .weight_decay = weight_decay};
}

/* ---- autodiff ------------------------------------------------------------------------ */
