/*
 * render.h - what the C renderer's files share (loops.c: node placement and
 * loop nests; render_c.c: pointwise and reduce kernels, entries;
 * render_gemm.c: matmul kernels; render_rows.c: row kernels; render_attn.c: attention): the state
 * of one kernel being rendered and the pieces of loop nests they all print.
 */
#ifndef KILN_CGEN_RENDER_H
#define KILN_CGEN_RENDER_H

#include "codegen/c/cgen.h"
#include "codegen/c/expr.h"

/* Below this many loop iterations a kernel runs on one thread. */
enum { PAR_WORK = 1 << 15 };
/* Rows of f32 rand/randn shorter than this draw element by element: 64
 * elements are 16 Philox blocks, one AVX-512 vector of them. */
enum { CGEN_RCHUNK_MIN = 64 };
/* A reduction of at most this many elements per output (a pooling window) is
 * unrolled whole: its index arithmetic folds, and a max or argmax becomes
 * selects instead of a branch per element. */
enum { CGEN_SHORT_REDUCE = 16 };

typedef struct {
    cgen_buf *b;
    const kprogram *p;
    const kernel *k;
    cgen_opts o;
    bool *need;         /* the node reaches a store or the reduce body */
    bool *post;         /* REDUCE: the node reads the accumulator */
    bool *done;         /* already declared in an enclosing scope */
    int *lev;           /* the loop depth it can be computed at (0 = before every loop) */
    unsigned char *use; /* per buffer: 1 read, 2 written */
    bool *plain;        /* cgen_plain_nodes */
    bool *chunk;        /* POINTWISE: an f32 rand/randn filled a chunk at a time */
    bool *defer;        /* REDUCE by columns: the node needs the last kept variable */
    bool inner;         /* REDUCE by columns: emitting inside the innermost loop */
    bool fails, rng;
    cgen_ectx e;
} kr;

/* ---- loops.c ---- */

/* Which nodes the kernel needs (r->need), then the loop depth of each (r->lev). */
void cgen_mark_needs(kr *r);
void cgen_place_nodes(kr *r);
/* An f32 rand/randn node filled a chunk at a time: the node its index adds to
 * the innermost variable, -1 when the index is that variable, -2 when it is
 * not such a node. */
int cgen_rng_chunk_base(const kr *r, int i);
/* How many outer loops to collapse under one parallel for over `work`
 * iterations (0: serial), and opening them. */
int cgen_outer_collapse(const kr *r, int64_t work);
void cgen_open_outer(kr *r, int col, int n, bool simd);
/* "#pragma omp parallel for [collapse(c)] schedule(static)<extra> num_threads(...)" */
void cgen_pragma_for(kr *r, int ind, int collapse, const char *extra);
/* Closes the blocks at indentation from down to to + 1. */
void cgen_close_to(kr *r, int from, int to);
/* Declares every needed node of the phase computable at loop depth `depth`. */
void cgen_emit_at(kr *r, int depth, bool post, int ind);
/* Nodes the kernel needs after its loops but cannot have there: #error. */
void cgen_emit_leftovers(kr *r, int ind);
void cgen_emit_stores(kr *r, int ind);
/* True when the kernel may not run its loops in parallel. */
bool cgen_serial(const kernel *k);
bool cgen_empty_domain(const kernel *k);

/* render_gemm.c: the tile functions the program's matmuls use, each once, and
 * one MATMUL kernel's body. */
void cgen_render_mm_fns(cgen_buf *b, const kprogram *p, const cgen_opts *o);
void cgen_render_matmul(kr *r);
/* render_rows.c: one row kernel's body (a REDUCE with earlier phases or
 * element stores). */
void cgen_render_rows(kr *r);
/* render_attn.c: one ATTENTION kernel's body. */
void cgen_render_attention(kr *r);

#endif /* KILN_CGEN_RENDER_H */
