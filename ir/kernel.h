/*
 * kernel.h - the kernel IR: loop-level code, one kernel per fused group.
 *
 * passes/lower.c builds it from a fused graph; codegen/c and codegen/cuda only
 * print it. A kernel is a loop nest over an iteration domain with an
 * expression DAG (kx nodes) that computes the values it stores:
 *
 *   POINTWISE  for (v0 < dims[0]) ... for (vR-1 < dims[R-1]):
 *                  for each store: buf[index] = value   (or += when accumulate)
 *   REDUCE     for (outer v0..vR-1):
 *                  for each earlier phase p (a row kernel, passes/rowfuse.c):
 *                      acc_p = identity(pre[p].rop)
 *                      for (reduced vR..vR+RR-1): acc_p = combine(acc_p, pre[p].body)
 *                  acc = identity(rop)
 *                  for (reduced vR..vR+RR-1): acc = combine(acc, body)
 *                  for each row store: buf[index] = value   (KX_ACC is acc or an acc_p)
 *                  for (reduced vR..vR+RR-1):
 *                      for each element store: buf[index] = value
 *   MATMUL     for (batch b, row i, col j):
 *                  acc = sum_k A[b,i,k] * B[b,k,j]      (strided reads: transposes are free;
 *                                                        an axis may walk several (kk_parts))
 *                  for each store: buf[index] = value   (KX_ACC is acc: the epilogue)
 *   ATTENTION  for (batch b, row i): an online softmax over the keys j (j <= i when causal)
 *                  of scale * Q[b,i,:].K[b,j,:], weighting V[b,j,:], in double
 *                  for (col e): for each store: buf[index] = value  (KX_ACC: out[b,i,e])
 *
 * Loop variables are numbered: 0..rank-1 are the outer (output) axes, then
 * rank..rank+rrank-1 the reduced axes (REDUCE) or 0=b, 1=i, 2=j (MATMUL, ATTENTION: j = e).
 * Index expressions are ordinary kx nodes of dtype I64, so a view (permute,
 * slice, expand, reshape, pad, concat) is index arithmetic, never a copy.
 */
#ifndef KILN_KERNEL_H
#define KILN_KERNEL_H

#include "ir/ir.h"

/* ---- expressions -------------------------------------------------------------- */

typedef enum {
    KX_CONST, /* dtype; value (float, bool) or ivalue (I32, I64) */
    KX_VAR,   /* loop variable `var` (I64) */
    KX_LOAD,  /* buffer `buf` at linear element index a[0] (I64) */
    KX_OP,    /* elementwise graph op `op` (UNARY incl. CAST, BINARY, TERNARY class) on
                 a[0..arity): the same meaning as in docs/ir.md. On I64 index values the
                 frontend ops ADD, SUB, MUL, LT, GE, WHERE, MINIMUM serve as index arithmetic */
    KX_IDIV,  /* a[0] / a[1] on non-negative I64 (C's truncating division) */
    KX_IMOD,  /* a[0] % a[1] on non-negative I64 */
    KX_RAND,  /* uniform [0,1) of dtype: Philox (seed, stream, run, element a[0]) as ir/philox.c */
    KX_RANDN, /* standard normal of dtype, likewise */
    KX_CHECK, /* a[0] (I64) when 0 <= a[0] < size, else the kernel fails with
                 "index %lld is out of bounds for dimension `axis` with size `size`" */
    KX_ACC    /* REDUCE and MATMUL stores: the accumulated value (acc dtype); in a REDUCE,
                 var 0 is the kernel's own reduction, var p + 1 its earlier phase pre[p] */
} kx_kind;

typedef struct {
    kx_kind kind;
    kiln_dtype dtype;
    ir_op op;        /* KX_OP */
    int a[3];        /* operands: indices of earlier nodes of the same kernel */
    int var;         /* KX_VAR */
    int buf;         /* KX_LOAD */
    double value;    /* KX_CONST of a float or bool dtype */
    int64_t ivalue;  /* KX_CONST of I32/I64 */
    uint32_t stream; /* KX_RAND, KX_RANDN */
    int64_t size;    /* KX_CHECK */
    int axis;        /* KX_CHECK */
} kx_node;

/* ---- kernels ----------------------------------------------------------------- */

typedef enum { KK_POINTWISE, KK_REDUCE, KK_MATMUL, KK_ATTENTION } kk_kind;

typedef struct {
    int buf;
    int index;       /* kx node: linear element index into buf (I64) */
    int value;       /* kx node: the value, of buf's dtype */
    bool accumulate; /* += instead of = (scatter_add); such kernels run serially */
    bool element;    /* REDUCE: stored for each element of the row (its index and value may
                        read the reduced variables), after every phase's reduction */
} kk_store;

/* A REDUCE kernel's reduction that runs before its own over the same rows:
 * a one-pass row kernel's max before its sum of exp (passes/rowfuse.c). */
typedef struct {
    ir_op rop;            /* SUM MAX MIN */
    kiln_dtype acc_dtype; /* a float dtype */
    int body;             /* kx node; reads only the accumulators of earlier phases */
} kk_phase;

enum { KK_MAX_PHASES = 8 }; /* the most reductions one row kernel runs (its own included) */

/* The most parts a matmul operand's axis has, and the longest such axis. */
enum { KK_MAX_PARTS = 4, KK_PART_LEN = 1 << 20 };

/* A matmul operand's row or col axis that walks several axes of its buffer
 * (a convolution's taps (c, i, j) as one k axis, or (image, y, x) as one
 * axis): element e is at sum over the n parts p (outermost first) of
 * (e / inner_p % size[p]) * stride[p], inner_p the product of the later
 * parts' sizes. n 0: the axis is plain (its operand's stride). */
typedef struct {
    int n;
    int64_t size[KK_MAX_PARTS], stride[KK_MAX_PARTS];
} kk_parts;

typedef struct {
    int a, b; /* buffers */
    int64_t batch, m, n, k;
    int64_t a_stride[3];             /* elements between consecutive (batch, row i, col k) of A */
    int64_t b_stride[3];             /* (batch, row k, col j) of B */
    kk_parts a_parts[2], b_parts[2]; /* A's (row i, col k) and B's (row k, col j) parts */
} kk_matmul;

/* What an ATTENTION kernel computes per (batch, row): sdpa's output row, or
 * its backward (docs/kernel-ir.md): a query row's (logsumexp, rowsum(g * y))
 * or gradient, a key row's gradient of k or of v. */
typedef enum { KA_FORWARD, KA_STATS, KA_DQ, KA_DK, KA_DV } ka_mode;

/* An ATTENTION kernel's operands, in the order of its per-operand arrays
 * (kk_attention_strides, offset, inner, istride); KK_MAX_OPERANDS: the most
 * operand buffers a kernel reads besides its loads (ATTENTION's backward:
 * q, k, v, g, stats, mask). */
enum { KA_Q, KA_K, KA_V, KA_G, KA_ST, KA_MASK, KK_MAX_OPERANDS };

typedef struct {
    ka_mode mode;
    int q, k, v, g, st;         /* buffers; g and st (the stats) for the backward only, else -1 */
    int mask;                   /* bool (t x s): key j is attended to from row i; -1: all */
    int64_t batch, t, s, d, dv; /* q (t x d), k (s x d), v (s x dv) per batch */
    int64_t q_stride[3], k_stride[3], v_stride[3]; /* (batch, row, col), as kk_matmul's */
    int64_t g_stride[3], st_stride[3];             /* g (t x dv), stats (t x 2, f64) */
    int64_t mask_stride[3];                        /* mask (t x s) */
    /* operands (q, k, v, g, st) start at element offset (a slice of one q|k|v
     * projection), and those whose batch axes need two strides (heads permuted in:
     * [B, T, H, D] read as [B, H, T, D]) have batch b at (b / inner) * stride[0] +
     * (b % inner) * istride; inner 0 or 1: at b * stride[0] */
    int64_t offset[KK_MAX_OPERANDS], inner[KK_MAX_OPERANDS], istride[KK_MAX_OPERANDS];
    double scale; /* rounded to the operands' dtype */
    bool causal;  /* keys j <= row i only */
} kk_attention;

typedef struct {
    kk_kind kind;
    int id;
    char name[64]; /* k<id>_<ops>: "k3_add_mul_exp"; nothing else in the source matches k<N>_ */
    int rank;
    int64_t dims[KILN_MAX_RANK]; /* outer domain; MATMUL: rank 3 = (batch, m, n) */
    int rrank;
    int64_t rdims[KILN_MAX_RANK];    /* REDUCE: the reduced axes' sizes */
    ir_op rop;                       /* REDUCE: SUM MAX MIN ARGMAX ARGMIN */
    kiln_dtype acc_dtype;            /* REDUCE, MATMUL: the accumulator's dtype */
    int body;                        /* REDUCE: kx node over all loop variables */
    kk_phase pre[KK_MAX_PHASES - 1]; /* REDUCE: reductions that run before this one */
    int npre;
    kk_matmul mm;    /* MATMUL */
    kk_attention at; /* ATTENTION */
    bool serial;     /* no parallel loop (accumulating stores) */
    kx_node *x;
    int nx, capx;
    int *xmap; /* kk_expr's hash of x[0..nxmap): slot = index + 1, 0 empty */
    int capxmap, nxmap;
    kk_store *stores;
    int nstores, capstores;
    int *nodes; /* graph node ids this kernel computes (its fusion report) */
    int nnodes, capnodes;
} kernel;

/* ---- programs ---------------------------------------------------------------- */

typedef enum {
    KB_INPUT,  /* the module's input buffer of `node` */
    KB_PARAM,  /* the module's param buffer of `node` */
    KB_OUTPUT, /* the module's buffer of output `index` of entry `entry` */
    KB_TEMP,   /* in the entry's arena at `offset` bytes */
    KB_CONST   /* constant data embedded in the program: `data` (numel x dtype, row-major) */
} kb_role;

typedef struct {
    kb_role role;
    kiln_dtype dtype;
    int64_t numel;
    int node;         /* graph node it holds (TEMP, INPUT, PARAM), or -1 */
    int entry, index; /* KB_OUTPUT */
    int64_t offset;   /* KB_TEMP: bytes into the arena, aligned to 64 */
    const void *data; /* KB_CONST: the graph's CONST data (owned by the graph) */
} kbuf;

typedef struct {
    int src, dst; /* buffers: dst = src after every kernel of the entry (ASSIGN) */
} kcopy;

typedef struct {
    const char *name;
    int *kernels; /* in execution order */
    int nkernels;
    kcopy *copies; /* applied in order after the last kernel */
    int ncopies;
    kcopy *shares; /* outputs that are their param's storage: the kernel computing the
                      assign stores into the param (passes/inplace.c); src = the output */
    int nshares;
    int64_t arena_bytes; /* bytes of TEMP storage this entry needs */
    int64_t live_bytes;  /* the most TEMP bytes live at once: no plan needs less */
} kentry;

typedef struct {
    const kiln_graph *g; /* the (fused) graph it was lowered from */
    kbuf *bufs;
    int nbufs, capbufs;
    kernel *kernels;
    int nkernels, capkernels;
    kentry *entries; /* one per graph entry, same order */
    int nentries;
} kprogram;

/* Building (ir/kernel.c): every function returns -1 / NULL when out of memory. */
/* REDUCE phase q of k in the order they run (0..npre: pre[0..npre), then the
 * kernel's own), and the phase a KX_ACC node's var names. */
kk_phase kk_phase_at(const kernel *k, int q);
int kk_acc_phase(const kernel *k, int var);
/* Whether k stores anything per element of its rows (a REDUCE row kernel). */
bool kk_has_element_stores(const kernel *k);
/* Operands of node n (its `a` slots in use); returns how many. */
int kx_operands(const kx_node *n, int ops[3]);
/* Whether kernel k can stop a run: a bounds check, or integer division or
 * power (division by zero, negative exponents). */
bool kk_can_fail(const kernel *k);
/* Whether row kernel k (a REDUCE with phases) may have nodes that fail: only
 * a whole tensor's reduction (rank 0, no element stores: passes/rowfuse.c's
 * small ones), whose checks run in its scalar loops, and whose checks that
 * nothing reads (their errors alone) read no accumulator or no reduced
 * variable (codegen/c/expr.c's cgen_row_section runs them with the last
 * phase or with the row stores). False when out of memory. */
bool kk_row_may_fail(const kernel *k);
/* Per node of k into f (nx bytes): KK_READ when a phase body or a store reads
 * it, KK_READS_ACC when it reads an accumulator, KK_READS_ROW a reduced
 * variable (REDUCE), each through its operands. */
enum { KK_READ = 1, KK_READS_ACC = 2, KK_READS_ROW = 4 };
void kk_node_reads(const kernel *k, unsigned char *f);
/* The buffers a MATMUL (a, b) or ATTENTION (q, k, v[, g, stats][, mask])
 * kernel reads besides its expression's loads: pointers to its fields in
 * refs; returns how many. */
int kk_operand_refs(kernel *k, int *refs[KK_MAX_OPERANDS]);
/* The same buffers' numbers. */
int kk_operand_bufs(const kernel *k, int bufs[KK_MAX_OPERANDS]);
/* Whether kernel k reads buf (a load, or a MATMUL/ATTENTION operand), or stores to it. */
bool kk_reads(const kernel *k, int buf);
bool kk_writes(const kernel *k, int buf);
/* Where batch b of ATTENTION operand `which` (KA_Q ... KA_MASK) starts (element
 * index), that operand's (batch, row, col) strides, and its buffer (-1: none). */
const int64_t *kk_attention_strides(const kk_attention *at, int which);
int kk_attention_buf(const kk_attention *at, int which);
int64_t kk_attention_batch(const kk_attention *at, int which, int64_t b);
/* Whether a MATMUL operand axis has parts; the offset of its element e (plain:
 * e * stride). */
bool kk_matmul_has_parts(const kk_matmul *mm);
int64_t kk_parts_at(const kk_parts *pp, int64_t stride, int64_t e);
int kk_expr(kernel *k, kx_node n); /* appends (hash-consed: equal nodes are shared) */
int kk_const_f(kernel *k, kiln_dtype dt, double v);
int kk_const_i(kernel *k, kiln_dtype dt, int64_t v);
int kk_var(kernel *k, int var);
int kk_store_add(kernel *k, kk_store s);
int kk_note_node(kernel *k, int node_id);
kernel *kp_kernel_new(kprogram *p, kk_kind kind);
int kp_buf_add(kprogram *p, kbuf b);
void kp_free(kprogram *p); /* NULL is a no-op */

/* Rewriting (the kernel passes: passes/hfuse.c, passes/rowfuse.c). */
/* A deep copy of k into dst (its own arrays); false when out of memory. */
bool kk_copy(kernel *dst, const kernel *k);
/* Frees k's arrays (the kernel struct itself lives in its program). */
void kk_release(kernel *k);
/* Removes the kernels marked dead and renumbers the rest in execution order
 * (entry by entry): ids, names k<id>_..., entry lists. */
kiln_status kp_compact(kprogram *p, const bool *dead);
/* Drops the stores to temporaries of entry x that no kernel or copy reads
 * (a kernel keeps at least one store). */
void kp_drop_dead_stores(kprogram *p, const kentry *x);
/* Removes the temporaries no kernel touches any more, renumbering the other
 * buffers everywhere they are named. */
kiln_status kp_drop_unused_temps(kprogram *p);
/* The end of a pass that merged kernels (marked dead[id]) when s is
 * KILN_OK: each entry's dead stores dropped, the program compacted, unused
 * temporaries removed. Frees dead; returns s or the first failure. */
kiln_status kp_finish_merges(kprogram *p, bool *dead, kiln_status s);
/* Whether kernel c, run between two kernels, keeps k from moving past it: c
 * writes a buffer k reads, or reads or writes one k writes. */
bool kk_blocks(const kernel *c, const kernel *k);
/* k's store to buf, or -1. */
int kk_store_of(const kernel *k, int buf);
/* m's name for A and B merged: "k<id>_<A's ops>_<B's ops>", cut to fit. */
void kk_merged_name(kernel *m, const kernel *a, const kernel *b);
/* Whether index node idx is `v` or `v + something`: loads through it walk
 * memory contiguously as loop variable v runs. */
bool kk_unit_stride(const kernel *k, int idx, int v);
/* Whether index node idx is c0 + sum of coef[v] * var v over the loop
 * variables v < nvars, with integer constants (sums and constant multiples),
 * and those constants. */
bool kk_affine(const kernel *k, int idx, int nvars, int64_t *coef, int64_t *c0);

/* The text form used by KILN_DEBUG=2 and the golden fusion tests. */
kiln_status kp_print(const kprogram *p, FILE *f);
/* Structural checks (operands before users, buffers and variables in range,
 * index nodes I64, a REDUCE's phases). KILN_OK, or KILN_ERR_INVALID with a
 * message in msg (KILN_ERR_NOMEM when out of memory). */
kiln_status kp_verify(const kprogram *p, char *msg, size_t cap);

/* FLOPs of one call of k: 2 per matmul multiply-add, 1 per scalar op per
 * loop iteration. */
double kk_flops(const kernel *k);
/* What kilnc --stats and KILN_DEBUG=1 say about a program. */
typedef struct {
    int kernels, groups; /* groups: kernels that compute more than one graph node */
    double flops;
    int64_t arena_bytes, live_bytes; /* summed over entries */
} kp_stats;
void kp_stats_of(const kprogram *p, kp_stats *st);

#endif /* KILN_KERNEL_H */
