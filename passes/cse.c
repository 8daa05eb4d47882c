/*
 * cse.c - common subexpression elimination.
 *
 * Requires: a verified graph. Produces: a graph where no two pure nodes have
 * the same op, operands, dtype, shape and attributes: later duplicates are
 * replaced by the first (operands and entry outputs rewritten) and removed.
 * Impure ops (ir_op_pure: leaves, random draws, effects) are never merged:
 * each is its own value or effect. What "same attributes" means comes from
 * the op's attribute set in kiln_ops.def.
 */
#include "passes/passes.h"

#include <string.h>

/* Equal attributes (the op's set in kiln_ops.def) and equal data blocks. */
static bool same_attrs(const kiln_tensor *a, const kiln_tensor *b)
{
    for (int at = 0; at < IR_A_COUNT; at++)
        if ((ir_ops[a->op].attrs & (1u << at)) && !ir_attr_equal(a, b, (ir_attr)at))
            return false;
    if (!(ir_ops[a->op].flags & IR_F_DATA))
        return true;
    size_t nb = (size_t)ir_numel(a) * kiln_dtype_size(a->dtype);
    return nb == 0 || (a->data && b->data && memcmp(a->data, b->data, nb) == 0);
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
        if (!ir_op_pure(t->op))
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
