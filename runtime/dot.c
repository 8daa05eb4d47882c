/*
 * dot.c - kiln_graph_dot: the graph as Graphviz, fused kernels as clusters.
 *
 * The graph drawn is what the compiler compiles: a private clone after the
 * pass pipeline (DCE and CSE have run, so ids are the clone's, as in
 * KILN_DEBUG=2 output). One DOT node per graph node ("%id op", dtype and
 * shape, the name of an input or param); leaves are boxes, params filled;
 * edges run operand -> user; each entry output is a double octagon fed by
 * the node it reads. Each kernel is a cluster labelled with its name and
 * kind holding the nodes it computes. A node several kernels compute (an
 * elementwise producer recomputed inside each consumer) is drawn in the
 * first one; the others list it in their label ("also %id"). Nodes no kernel
 * computes (views, leaves) stand outside every cluster.
 */
#include "ir/kernel.h"
#include "passes/passes.h"
#include "rt.h"

#include <string.h>

/* A DOT string body: quotes, backslashes and control characters escaped. */
static void escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\\\x%02x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
}

static void node(FILE *f, const kiln_tensor *t)
{
    char shape[256];
    ir_shape_str(shape, sizeof shape, t->rank, t->dims);
    fprintf(f, "    n%d [label=\"%%%d %s", t->id, t->id, ir_ops[t->op].name);
    if (t->name) {
        fputs(" \\\"", f);
        escaped(f, t->name);
        fputs("\\\"", f);
    }
    fprintf(f, "\\n%s%s\"", ir_dtype_kir(t->dtype), shape);
    if (t->op == IR_PARAM)
        fputs(", shape=box, style=filled, fillcolor=lightyellow", f);
    else if (t->op == IR_INPUT)
        fputs(", shape=box", f);
    fputs("];\n", f);
}

static const char *kind_name(kk_kind k)
{
    return k == KK_POINTWISE ? "pointwise" : k == KK_REDUCE ? "reduce" : "matmul";
}

static kiln_status draw(const kiln_graph *c, const kprogram *p, FILE *f)
{
    int *home = ir_alloc(sizeof(int) * (size_t)(c->nnodes ? c->nnodes : 1));
    if (!home)
        return KILN_ERR_NOMEM;
    for (int i = 0; i < c->nnodes; i++)
        home[i] = -1;
    for (int k = 0; k < p->nkernels; k++)
        for (int j = 0; j < p->kernels[k].nnodes; j++) {
            int id = p->kernels[k].nodes[j];
            if (id >= 0 && id < c->nnodes && home[id] < 0)
                home[id] = k;
        }
    fputs("digraph kiln {\n    rankdir=TB;\n    node [fontname=\"monospace\", fontsize=10];\n", f);
    for (int k = 0; k < p->nkernels; k++) {
        const kernel *kk = &p->kernels[k];
        fprintf(f, "    subgraph cluster_k%d {\n        label=\"", k);
        escaped(f, kk->name);
        fprintf(f, " (%s", kind_name(kk->kind));
        for (int j = 0; j < kk->nnodes; j++) {
            int id = kk->nodes[j];
            if (id >= 0 && id < c->nnodes && home[id] != k)
                fprintf(f, ", also %%%d", id);
        }
        fputs(")\";\n        style=rounded;\n        color=steelblue;\n", f);
        for (int j = 0; j < kk->nnodes; j++) {
            int id = kk->nodes[j];
            if (id >= 0 && id < c->nnodes && home[id] == k) {
                fputs("    ", f);
                node(f, c->nodes[id]);
            }
        }
        fputs("    }\n", f);
    }
    for (int i = 0; i < c->nnodes; i++)
        if (home[i] < 0)
            node(f, c->nodes[i]);
    for (int i = 0; i < c->nnodes; i++)
        for (int k = 0; k < c->nodes[i]->nin; k++)
            fprintf(f, "    n%d -> n%d;\n", c->nodes[i]->in[k]->id, i);
    for (int e = 0; e < c->nentries; e++)
        for (int k = 0; k < c->entries[e].n; k++) {
            fprintf(f, "    e%d_%d [shape=doubleoctagon, label=\"entry ", e, k);
            escaped(f, c->entries[e].name);
            fputs(": ", f);
            escaped(f, c->entries[e].output_names[k]);
            fprintf(f, "\"];\n    n%d -> e%d_%d;\n", c->entries[e].outputs[k]->id, e, k);
        }
    fputs("}\n", f);
    ir_free(home);
    return ferror(f) ? KILN_ERR_IO : KILN_OK;
}

kiln_status kiln_graph_dot(const kiln_graph *g, FILE *f)
{
    if (!g || !f)
        return KILN_ERR_INVALID;
    if (g->status != KILN_OK)
        return g->status;
    kiln_graph *c = ir_graph_clone(g);
    if (!c)
        return KILN_ERR_NOMEM;
    kprogram *p = NULL;
    kiln_status s = pass_pipeline(c, &p);
    if (s == KILN_OK)
        s = draw(c, p, f);
    kp_free(p);
    kiln_graph_free(c);
    return s;
}
