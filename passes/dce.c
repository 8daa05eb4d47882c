/*
 * dce.c - dead code elimination.
 *
 * Requires: a verified graph. Produces: the same graph without nodes that no
 * entry output reaches (inputs and params are kept: they are the module's
 * interface), ids renumbered 0..n-1 in the old (topological) order; entries
 * still point at the same node objects.
 */
#include "passes/passes.h"

#include <string.h>

kiln_status pass_compact(kiln_graph *g, const bool *keep)
{
    if (!g || !keep)
        return KILN_ERR_INVALID;
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        if (keep[i]) {
            g->nodes[n] = g->nodes[i];
            g->nodes[n]->id = n;
            n++;
        }
    g->nnodes = n;
    return KILN_OK;
}

kiln_status pass_dce(kiln_graph *g)
{
    if (!g)
        return KILN_ERR_INVALID;
    bool *live = ir_alloc(sizeof(bool) * (size_t)(g->nnodes ? g->nnodes : 1));
    if (!live)
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
    memset(live, 0, sizeof(bool) * (size_t)g->nnodes);
    for (int e = 0; e < g->nentries; e++)
        for (int k = 0; k < g->entries[e].n; k++)
            live[g->entries[e].outputs[k]->id] = true;
    for (int i = g->nnodes - 1; i >= 0; i--) {
        const kiln_tensor *t = g->nodes[i];
        if (t->op == IR_INPUT || t->op == IR_PARAM)
            live[i] = true;
        if (live[i])
            for (int k = 0; k < t->nin; k++)
                live[t->in[k]->id] = true;
    }
    kiln_status s = pass_compact(g, live);
    ir_free(live);
    return s;
}
