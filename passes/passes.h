/*
 * passes.h - the graph passes and the lowering to the kernel IR.
 *
 * pass_pipeline (pipeline.c) reads as the pipeline: decompose -> dce -> cse -> fuse ->
 * lower -> hfuse -> rowfuse -> memplan. Each pass states its contract at the top of its file.
 * Errors are recorded on the graph (ir_fail_status) and returned.
 */
#ifndef KILN_PASSES_H
#define KILN_PASSES_H

#include "ir/ir.h"
#include "ir/kernel.h"

/* g is the module's private clone: passes may rewrite it. On success *out is
 * a kprogram the caller frees with kp_free; on failure *out is NULL. */
kiln_status pass_pipeline(kiln_graph *g, kprogram **out);

/* autodiff.c: kiln_grad's work. Appends the backward graph of y to g (one VJP
 * rule per primitive, written with the builders) and sets grads[i] =
 * d(sum(seed * y)) / d(wrt[i]). For a wrt that y does not depend on through
 * differentiable nodes, grads[i] is zeros, or NULL when !zeros_if_unused
 * (PyTorch's None gradient, which optimizers skip). */
kiln_status ad_grad(kiln_graph *g, kiln_tensor *y, int n, kiln_tensor *const *wrt,
                    kiln_tensor *seed, bool zeros_if_unused, kiln_tensor **grads);

/* optim.c defines kiln_train_step: ad_grad, then the optimizer's update of
 * each param and of its state as ASSIGN nodes of a new entry. */

/* Spells the ops the graph keeps whole (conv) in primitives fusion knows:
 * each conv becomes its implicit GEMM (decompose.c). */
kiln_status pass_decompose(kiln_graph *g);
/* Drops nodes no entry output reaches (named leaves are kept: they are the
 * module's interface) and renumbers ids, keeping the topological order. */
kiln_status pass_dce(kiln_graph *g);
/* Keeps exactly the nodes with keep[id] (every operand of a kept node must be
 * kept) and renumbers them in order. */
kiln_status pass_compact(kiln_graph *g, const bool *keep);
/* Merges identical pure nodes (same op, operands, dtype, shape, attributes). */
kiln_status pass_cse(kiln_graph *g);

/* How an entry gets a node's value (fuse.c states the rule). */
typedef enum {
    FUSE_UNUSED,   /* the entry does not need it */
    FUSE_INLINE,   /* recomputed inside every kernel that reads it */
    FUSE_ROOT,     /* computed by its own kernel into a buffer */
    FUSE_LEAF,     /* an input or param: the module's buffer */
    FUSE_CONSTBUF, /* a CONST embedded as a KB_CONST buffer */
    FUSE_ABSORBED  /* a MATMUL whose accumulator feeds its consumer's kernel (epilogue) */
} fuse_kind;

typedef struct {
    int nnodes, nentries;
    unsigned char *kind; /* [entry * nnodes + id]: fuse_kind */
    int *epilogue;       /* [entry * nnodes + id]: the MATMUL absorbed by root id, or -1 */
    int *uses;           /* [entry * nnodes + id]: operand slots + outputs reading id */
    int *alias;          /* [entry * nnodes + id]: for a root whose only reader is an output
                            that reshapes it, that output: the root stores straight into the
                            output's buffers and the output needs no kernel; else -1 */
} fuse_plan;

kiln_status pass_fuse(kiln_graph *g, fuse_plan **out);
void fuse_plan_free(fuse_plan *p); /* NULL is a no-op */

/* A node read as a strided view of a buffer: element (i0..) of t is
 * base[offset + sum over axes d of the offset of i_d], where axis d's offset
 * is i_d * strides[d], or, for an axis that walks several axes of base no one
 * stride covers (a reshape merged them: a convolution's taps (c, i, j) as one
 * k axis), the sum over its nparts[d] parts (outermost first) of
 * (i_d / inner % psize) * pstride, inner the product of the later parts' sizes. */
typedef struct {
    const kiln_tensor *base;
    int64_t strides[KILN_MAX_RANK];
    int64_t offset;
    int nparts[KILN_MAX_RANK]; /* 0: the axis is plain (strides[d]) */
    int64_t psize[KILN_MAX_RANK][KK_MAX_PARTS], pstride[KILN_MAX_RANK][KK_MAX_PARTS];
} fuse_view;
/* True when t is a chain of permute/expand/slice/reshape/detach over a node
 * that has a buffer in this entry (kind row of the plan), where a stack
 * (concat of size-1 slabs) of such views of one base at evenly spaced offsets
 * is a view too (a convolution's taps); otherwise *bad is the node that must
 * be materialized for t to become such a view. */
bool fuse_strided(const kiln_tensor *t, const unsigned char *kind, fuse_view *v,
                  const kiln_tensor **bad);
/* A MATMUL operand's (batch, row, col) strides from its view, when its batch
 * axes collapse into one stride and its offset is 0; its row and col axes may
 * have parts (parts[0], parts[1]; n 0 when plain) of at most KK_PART_LEN
 * elements in a base of fewer than 2^31 elements. */
bool fuse_matmul_strides(const kiln_tensor *t, const fuse_view *v, int64_t st[3],
                         kk_parts parts[2]);
/* The same for an attention operand (no parts), which may start at an offset (a slice)
 * and whose batch axes may fall into two groups of one stride each (heads
 * permuted in): the inner group's size and stride in *inner and *istride
 * (*inner is 1 when one stride covers them all). */
bool fuse_attention_strides(const kiln_tensor *t, const fuse_view *v, int64_t st[3], int64_t *inner,
                            int64_t *istride);

kiln_status pass_lower(kiln_graph *g, const fuse_plan *plan, kprogram **out);

/* hfuse.c: merges pointwise kernels of an entry over the same domain. */
kiln_status pass_hfuse(kiln_graph *g, kprogram *p);
/* rowfuse.c: merges reductions over the same rows, and the pointwise work over
 * their elements that reads them, into one row kernel. */
kiln_status pass_rowfuse(kiln_graph *g, kprogram *p);
/* Gives every TEMP buffer an arena offset and sets each entry's arena_bytes. */
kiln_status pass_memplan(kiln_graph *g, kprogram *p);
/* inplace.c: after the pipeline, for an executor that lets an assign's output
 * be its param's storage: turns the copies it can into kentry.shares. */
kiln_status pass_inplace(kiln_graph *g, kprogram *p);

#endif /* KILN_PASSES_H */
