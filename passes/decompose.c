/*
 * decompose.c - ops the graph keeps whole, spelled in the primitives that
 * fusion and lowering know.
 *
 * A conv node stays whole while the graph is built and differentiated (its
 * VJP is a conv again, the interpreter runs it directly); here it becomes its
 * implicit GEMM (fe_conv_gemm: the input's taps as views the GEMM reads in
 * place, one batched matmul).
 *
 * Requires: a verified graph. Produces: the same values with no conv node.
 * Each conv becomes an identity reshape of its GEMM, so its uses, the entry
 * outputs and the updates need no rewiring; the GEMM's nodes are appended, so
 * the nodes are then reordered, operands first (the old order kept
 * otherwise: each new node goes just before its first reader), and ids
 * renumbered. The conv's operands it no longer reads are left to DCE.
 */
#include "frontend/fe.h"
#include "passes/passes.h"

#include <string.h>

/* Reorders g->nodes so every operand comes before its readers: a depth-first
 * walk from each node in the current order, emitting operands first. */
static kiln_status reorder(kiln_graph *g)
{
    int n = g->nnodes;
    kiln_tensor **order = ir_alloc(sizeof(kiln_tensor *) * (size_t)(n ? n : 1));
    kiln_tensor **stack = ir_alloc(sizeof(kiln_tensor *) * (size_t)(n ? n : 1));
    int *next = ir_calloc(sizeof(int) * (size_t)(n ? n : 1)); /* operand to visit; -1: emitted */
    if (!order || !stack || !next) {
        ir_free(order);
        ir_free(stack);
        ir_free(next);
        return ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (next[g->nodes[i]->id] < 0)
            continue;
        int top = 0;
        stack[top++] = g->nodes[i];
        while (top) {
            kiln_tensor *t = stack[top - 1];
            int *k = &next[t->id];
            while (*k < t->nin && next[t->in[*k]->id] < 0)
                (*k)++;
            if (*k < t->nin) { /* an operand not yet emitted (never on the stack: acyclic) */
                stack[top++] = t->in[(*k)++];
                continue;
            }
            *k = -1;
            order[m++] = t;
            top--;
        }
    }
    for (int i = 0; i < n; i++) {
        g->nodes[i] = order[i];
        g->nodes[i]->id = i;
    }
    ir_free(order);
    ir_free(stack);
    ir_free(next);
    return KILN_OK;
}

kiln_status pass_decompose(kiln_graph *g)
{
    if (!g)
        return KILN_ERR_INVALID;
    int n = g->nnodes, convs = 0;
    for (int i = 0; i < n; i++) {
        kiln_tensor *t = g->nodes[i];
        if (t->op != IR_CONV)
            continue;
        kiln_tensor *y = fe_conv_gemm(g, t);
        if (!y)
            return g->status ? g->status
                             : ir_fail_status(g, KILN_ERR_NOMEM, "kiln_compile: out of memory");
        t->op = IR_RESHAPE;
        t->nin = 1;
        t->in[0] = y;
        memset(t->step, 0, sizeof t->step);
        memset(t->dilation, 0, sizeof t->dilation);
        t->groups = 0;
        convs++;
    }
    return convs ? reorder(g) : KILN_OK;
}
