/*
 * cse.c - common subexpression elimination.
 *
 * Requires: a verified graph. Produces: a graph where no two pure nodes have
 * the same op, operands, dtype, shape and attributes: later duplicates are
 * replaced by the first (operands and entry outputs rewritten) and removed.
 * INPUT, PARAM, RAND, RANDN and ASSIGN are never merged (each is its own
 * value or effect).
 */
#include "passes/passes.h"

#include <string.h>

static bool mergeable(const kiln_tensor *t)
{
    switch (t->op) {
    case IR_INPUT:
    case IR_PARAM:
    case IR_RAND:
    case IR_RANDN:
    case IR_ASSIGN: return false;
    case IR_CONST:
    case IR_FULL:
    case IR_ARANGE:
    case IR_NEG:
    case IR_ABS:
    case IR_EXP:
    case IR_LOG:
    case IR_SQRT:
    case IR_RSQRT:
    case IR_SIN:
    case IR_COS:
    case IR_TANH:
    case IR_ERF:
    case IR_SIGMOID:
    case IR_RELU:
    case IR_DETACH:
    case IR_CAST:
    case IR_ADD:
    case IR_SUB:
    case IR_MUL:
    case IR_DIV:
    case IR_POW:
    case IR_MAXIMUM:
    case IR_MINIMUM:
    case IR_EQ:
    case IR_NE:
    case IR_LT:
    case IR_LE:
    case IR_GT:
    case IR_GE:
    case IR_WHERE:
    case IR_SUM:
    case IR_MAX:
    case IR_MIN:
    case IR_ARGMAX:
    case IR_ARGMIN:
    case IR_RESHAPE:
    case IR_PERMUTE:
    case IR_EXPAND:
    case IR_SLICE:
    case IR_PAD:
    case IR_CONCAT:
    case IR_MATMUL:
    case IR_GATHER:
    case IR_SCATTER_ADD: return true;
    case IR_OP_COUNT: return false;
    }
    return false;
}

static bool same_doubles(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static bool same_attrs(const kiln_tensor *a, const kiln_tensor *b)
{
    size_t r = (size_t)a->rank;
    switch (a->op) {
    case IR_CONST: {
        size_t nb = (size_t)ir_numel(a) * kiln_dtype_size(a->dtype);
        return nb == 0 || (a->data && b->data && memcmp(a->data, b->data, nb) == 0);
    }
    case IR_FULL: return same_doubles(a->value, b->value) && a->weak == b->weak;
    case IR_ARANGE: return same_doubles(a->value, b->value) && same_doubles(a->value2, b->value2);
    case IR_SUM:
    case IR_MAX:
    case IR_MIN:
    case IR_ARGMAX:
    case IR_ARGMIN: return a->axes == b->axes;
    case IR_PERMUTE: return memcmp(a->perm, b->perm, sizeof(int) * r) == 0;
    case IR_SLICE:
        return memcmp(a->begin, b->begin, sizeof(int64_t) * r) == 0 &&
               memcmp(a->step, b->step, sizeof(int64_t) * r) == 0;
    case IR_PAD:
        return memcmp(a->begin, b->begin, sizeof(int64_t) * r) == 0 &&
               memcmp(a->after, b->after, sizeof(int64_t) * r) == 0 &&
               same_doubles(a->value, b->value);
    case IR_CONCAT:
    case IR_GATHER:
    case IR_SCATTER_ADD: return a->axis == b->axis;
    case IR_INPUT:
    case IR_PARAM:
    case IR_RAND:
    case IR_RANDN:
    case IR_ASSIGN: return false;
    case IR_NEG:
    case IR_ABS:
    case IR_EXP:
    case IR_LOG:
    case IR_SQRT:
    case IR_RSQRT:
    case IR_SIN:
    case IR_COS:
    case IR_TANH:
    case IR_ERF:
    case IR_SIGMOID:
    case IR_RELU:
    case IR_DETACH:
    case IR_CAST:
    case IR_ADD:
    case IR_SUB:
    case IR_MUL:
    case IR_DIV:
    case IR_POW:
    case IR_MAXIMUM:
    case IR_MINIMUM:
    case IR_EQ:
    case IR_NE:
    case IR_LT:
    case IR_LE:
    case IR_GT:
    case IR_GE:
    case IR_WHERE:
    case IR_RESHAPE:
    case IR_EXPAND:
    case IR_MATMUL: return true;
    case IR_OP_COUNT: return false;
    }
    return false;
}

static bool same_node(const kiln_tensor *a, const kiln_tensor *b)
{
    if (a->op != b->op || a->dtype != b->dtype || a->nin != b->nin || !ir_same_shape(a, b))
        return false;
    for (int k = 0; k < a->nin; k++)
        if (a->in[k] != b->in[k])
            return false;
    return same_attrs(a, b);
}

static uint64_t hash_node(const kiln_tensor *t)
{
    uint64_t h = 1469598103934665603ull;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ull)
    MIX(t->op);
    MIX(t->dtype);
    MIX(t->rank);
    for (int d = 0; d < t->rank; d++)
        MIX(t->dims[d]);
    for (int k = 0; k < t->nin; k++)
        MIX(t->in[k]->id);
#undef MIX
    return h;
}

kiln_status pass_cse(kiln_graph *g)
{
    if (!g)
        return KILN_ERR_INVALID;
    size_t cap = 16;
    while (cap < (size_t)g->nnodes * 2)
        cap *= 2;
    kiln_tensor **table = ir_alloc(sizeof(kiln_tensor *) * cap);
    kiln_tensor **rep = ir_alloc(sizeof(kiln_tensor *) * (size_t)(g->nnodes ? g->nnodes : 1));
    bool *keep = ir_alloc(sizeof(bool) * (size_t)(g->nnodes ? g->nnodes : 1));
    if (!table || !rep || !keep) {
        ir_free(table);
        ir_free(rep);
        ir_free(keep);
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
    }
    memset(table, 0, sizeof(kiln_tensor *) * cap);
    for (int i = 0; i < g->nnodes; i++) {
        kiln_tensor *t = g->nodes[i];
        for (int k = 0; k < t->nin; k++)
            t->in[k] = rep[t->in[k]->id];
        rep[i] = t;
        keep[i] = true;
        if (!mergeable(t))
            continue;
        size_t h = (size_t)hash_node(t) & (cap - 1);
        while (table[h] && !same_node(table[h], t))
            h = (h + 1) & (cap - 1);
        if (table[h]) {
            rep[i] = table[h];
            keep[i] = false;
        } else {
            table[h] = t;
        }
    }
    for (int e = 0; e < g->nentries; e++)
        for (int k = 0; k < g->entries[e].n; k++)
            g->entries[e].outputs[k] = rep[g->entries[e].outputs[k]->id];
    kiln_status s = pass_compact(g, keep);
    ir_free(table);
    ir_free(rep);
    ir_free(keep);
    return s;
}
