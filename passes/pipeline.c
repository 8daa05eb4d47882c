/*
 * pipeline.c - the compiler pipeline from a graph to a kernel program.
 *
 * Requires: a verified graph that the caller owns (the module's private clone;
 * passes rewrite it). Produces: a kprogram ready for a renderer. The verifier
 * runs after each graph pass and the kernel-IR verifier at the end, in every
 * build; KILN_DEBUG=2 prints the graph after each graph pass and the kernel
 * program at the end, to stderr.
 */
#include "passes/passes.h"

#include <stdio.h>
#include <stdlib.h>

/* Verifies the graph after a graph pass (always: it is cheap next to the
 * passes) and prints it for KILN_DEBUG=2. */
static kiln_status graph_check(kiln_graph *g, const char *pass, kiln_status s)
{
    if (s != KILN_OK)
        return s;
    int dbg = ir_debug_level();
    if (dbg >= 2) {
        fprintf(stderr, "// ---- graph after %s ----\n", pass);
        ir_print(g, stderr);
    }
    return ir_verify(g);
}

static kiln_status kernel_check(kiln_graph *g, const kprogram *p, kiln_status s)
{
    if (s != KILN_OK)
        return s;
    int dbg = ir_debug_level();
    if (dbg >= 2) {
        fprintf(stderr, "// ---- kernel program after lower, hfuse, rowfuse, memplan ----\n");
        kp_print(p, stderr);
    }
    char msg[256];
    s = kp_verify(p, msg, sizeof msg);
    if (s == KILN_ERR_NOMEM)
        return ir_fail_status(g, s, "kiln_compile: out of memory");
    if (s != KILN_OK)
        return ir_fail_status(g, KILN_ERR_INVALID, "kiln_compile: internal error: %s", msg);
    return KILN_OK;
}

kiln_status pass_pipeline(kiln_graph *g, kprogram **out)
{
    if (out)
        *out = NULL;
    if (!g || !out)
        return KILN_ERR_INVALID;
    fuse_plan *plan = NULL;
    kprogram *p = NULL;
    kiln_status s = KILN_OK;
    s = graph_check(g, "decompose", pass_decompose(g));
    s = s ? s : graph_check(g, "dce", pass_dce(g));
    s = s ? s : graph_check(g, "cse", pass_cse(g));
    s = s ? s : pass_fuse(g, &plan);
    s = s ? s : pass_lower(g, plan, &p);
    s = s ? s : pass_hfuse(g, p);
    s = s ? s : pass_rowfuse(g, p);
    s = s ? s : kernel_check(g, p, pass_memplan(g, p));
    fuse_plan_free(plan);
    if (s != KILN_OK) {
        kp_free(p);
        return s;
    }
    *out = p;
    return KILN_OK;
}
