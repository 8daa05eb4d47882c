/*
 * ir.h - the graph IR shared by every part of Kiln (one header of shared types).
 *
 * A graph is an arena of SSA nodes (struct kiln_tensor) in creation order,
 * which is always a topological order: a node's operands have smaller ids.
 * Every node has a static shape and a dtype. Named leaves (inputs, params)
 * and entries (named lists of outputs) live on the graph too.
 *
 * Internal prefixes name the folder: ir_ (here), fe_ (frontend), rt_ (runtime).
 */
#ifndef KILN_IR_H
#define KILN_IR_H

#include "kiln.h"

#include <stdarg.h>

/* ---- op table -------------------------------------------------------------- */

typedef enum {
    IR_CLASS_SOURCE,
    IR_CLASS_UNARY,
    IR_CLASS_BINARY,
    IR_CLASS_TERNARY,
    IR_CLASS_REDUCE,
    IR_CLASS_MOVEMENT,
    IR_CLASS_MATMUL,
    IR_CLASS_CONV,
    IR_CLASS_ATTENTION,
    IR_CLASS_INDEX,
    IR_CLASS_ASSIGN
} ir_class;

enum {
    IR_F_DIFF = 1 << 0,   /* has a VJP rule */
    IR_F_FLOATY = 1 << 1, /* integer operands are computed as float32 */
    IR_F_CMP = 1 << 2,    /* result is bool */
    IR_F_RANDOM = 1 << 3, /* draws from Philox */
    IR_F_LEAF = 1 << 4,   /* a named leaf: input or param */
    IR_F_EFFECT = 1 << 5, /* changes state when its entry runs (assign) */
    IR_F_DATA = 1 << 6    /* carries a block of values (t->data) */
};

/* The attributes a node may carry, in the order the .kir text writes them
 * (docs/kir.md); the last column of kiln_ops.def is a set of these. */
typedef enum {
    IR_A_INIT,     /* init=normal(0, 1): t->init (param) */
    IR_A_FAN_IN,   /* fan_in=N: t->fan_in, optional (param, kaiming) */
    IR_A_STREAM,   /* stream=N: t->stream, optional (param, rand, randn) */
    IR_A_START,    /* start=X: t->value (arange) */
    IR_A_DELTA,    /* step=X: t->value2 (arange) */
    IR_A_AXES,     /* axes=[..]: t->axes (reductions) */
    IR_A_PERM,     /* perm=[..]: t->perm, one per axis */
    IR_A_BEGIN,    /* begin=[..]: t->begin, one per axis (slice) */
    IR_A_STEP,     /* step=[..]: t->step, one per axis (slice) */
    IR_A_BEFORE,   /* before=[..]: t->begin, one per axis (pad) */
    IR_A_AFTER,    /* after=[..]: t->after, one per axis (pad) */
    IR_A_VALUE,    /* value=X: t->value (full, pad) */
    IR_A_WEAK,     /* weak: t->weak, a flag (full) */
    IR_A_AXIS,     /* axis=N: t->axis */
    IR_A_CAUSAL,   /* causal: t->causal, a flag (sdpa) */
    IR_A_STRIDE,   /* stride=[..]: t->step, one per axis (conv) */
    IR_A_DILATION, /* dilation=[..]: t->dilation, one per axis (conv) */
    IR_A_GROUPS,   /* groups=N: t->groups (conv) */
    IR_A_COUNT
} ir_attr;
#define IR_AT(a) (1u << IR_A_##a)

typedef enum {
#define KILN_OP(e, name, arity, cls, flags, attrs) IR_##e,
#include "kiln_ops.def"
#undef KILN_OP
    IR_OP_COUNT
} ir_op;

typedef struct {
    const char *name;
    int arity; /* -1: variadic */
    ir_class cls;
    unsigned flags;
    unsigned attrs; /* IR_AT bits */
} ir_op_info;

extern const ir_op_info ir_ops[IR_OP_COUNT];
ir_op ir_op_from_name(const char *name, size_t len); /* IR_OP_COUNT when unknown */
/* Pure: two nodes with equal op, operands, dtype, shape and attributes have
 * equal values (not random, not a leaf, no effect). */
bool ir_op_pure(ir_op op);

typedef struct {
    const char *name; /* its .kir key */
    bool optional;    /* may be absent from the .kir text (then zero) */
    bool per_axis;    /* a list with one value per axis of the node */
} ir_attr_info;
extern const ir_attr_info ir_attrs[IR_A_COUNT];
/* True when a and b (same op and rank) have equal values of attribute a_. */
bool ir_attr_equal(const kiln_tensor *a, const kiln_tensor *b, ir_attr at);

/* ---- allocation ------------------------------------------------------------ */

/* Every allocation goes through the hook set by kiln_set_allocator. */
void *ir_alloc(size_t size);              /* NULL when out of memory */
void *ir_calloc(size_t size);             /* zeroed; NULL when out of memory */
void *ir_alloc_huge(size_t size);         /* ir_alloc, on huge pages when it can */
void *ir_realloc(void *ptr, size_t size); /* NULL when out of memory; ptr stays valid */
void ir_free(void *ptr);                  /* NULL is a no-op */

/* A bump arena: everything a graph owns dies with it. */
typedef struct ir_arena_block ir_arena_block;
typedef struct {
    ir_arena_block *head;
} ir_arena;
void *ir_arena_alloc(ir_arena *a, size_t size); /* zeroed; NULL when out of memory */
char *ir_arena_strdup(ir_arena *a, const char *s);
void ir_arena_free(ir_arena *a);

/* ---- dtypes ---------------------------------------------------------------- */

bool ir_dtype_is_float(kiln_dtype dt);
bool ir_dtype_is_int(kiln_dtype dt); /* I32, I64 (not bool) */
bool ir_dtype_valid(int dt);
const char *ir_dtype_kir(kiln_dtype dt);   /* "f32", "f64", "i32", "i64", "bool" */
const char *ir_dtype_torch(kiln_dtype dt); /* "Float", "Double", "Int", "Long", "Bool" */

/* A value of any dtype, read from or written to memory. */
double ir_load_f(kiln_dtype dt, const void *base, int64_t i);    /* as double */
int64_t ir_load_i(kiln_dtype dt, const void *base, int64_t i);   /* as int64 (floats truncate) */
void ir_store_f(kiln_dtype dt, void *base, int64_t i, double v); /* rounds/converts to dt */
/* False when v is NaN or outside the range of integer dtype dt (c10's
 * overflows check); true for float and bool dtypes. A user's value that fails
 * is PyTorch's "value cannot be converted to type int64 without overflow". */
bool ir_value_fits(kiln_dtype dt, double v);
void ir_store_i(kiln_dtype dt, void *base, int64_t i, int64_t v);

/* ---- nodes ----------------------------------------------------------------- */

struct kiln_tensor {
    int id; /* index in graph->nodes; operands have smaller ids */
    ir_op op;
    kiln_dtype dtype;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    int nin;
    kiln_tensor **in;

    /* attributes; which are used depends on op (its ir_attr set in kiln_ops.def) */
    uint32_t axes;                   /* reductions: bit i set = axis i reduced */
    int axis;                        /* concat, gather, scatter_add */
    int perm[KILN_MAX_RANK];         /* permute: out axis i = in axis perm[i] */
    int64_t begin[KILN_MAX_RANK];    /* slice: first index; pad: elements before */
    int64_t step[KILN_MAX_RANK];     /* slice, conv: stride, > 0 */
    int64_t after[KILN_MAX_RANK];    /* pad: elements after */
    int64_t dilation[KILN_MAX_RANK]; /* conv: spacing of the kernel's taps, > 0 */
    int64_t groups;                  /* conv: channel groups, > 0 */
    double value;                    /* full, pad: fill value; arange: start */
    double value2;                   /* arange: step */
    uint32_t stream;                 /* rand, randn, params: Philox stream id */
    bool weak;                       /* a kiln_scalar: takes the other operand's dtype */
    bool causal;                     /* sdpa: attend to j <= i only */
    char *name;                      /* input, param */
    void *data;                      /* const: numel * dtype size bytes; param: init data */
    kiln_init init;                  /* param */
    int64_t fan_in;                  /* param, kaiming init: 0 = from its own shape */

    kiln_graph *graph;
};

typedef struct {
    char *name;
    int n;
    kiln_tensor **outputs;
    char **output_names;
} ir_entry;

struct kiln_graph {
    ir_arena arena;
    kiln_tensor **nodes;
    int nnodes, cap_nodes;
    ir_entry *entries;
    int nentries, cap_entries;
    uint64_t seed;
    uint32_t next_stream;
    kiln_status status;
    char error[1024];
    bool compile_error; /* the error came from a failed kiln_compile; the next one clears it */
    /* Updates applied by every later entry whose outputs depend on their
     * trigger (batch norm's running statistics): pairs trigger, ASSIGN node,
     * in the arena. kiln_entry appends them to the entry's outputs. */
    kiln_tensor **updates;
    int nupdates, cap_updates;
};

/* Records the first error on g (later ones are dropped); returns NULL so
 * builders can `return ir_fail(...)`. fmt is printf-style. */
/* True when g may be built on: no error, or only one left by a failed
 * kiln_compile/kiln_export (DESIGN.md: "the graph stays usable"), which this
 * clears. Every builder and kiln_compile start with it. */
bool ir_begin(kiln_graph *g);
kiln_tensor *ir_fail(kiln_graph *g, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
kiln_tensor *ir_vfail(kiln_graph *g, kiln_status s, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Records an error as ir_fail does and returns the status. */
kiln_status ir_fail_status(kiln_graph *g, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* True when a tensor of dtype dt and this shape (dims >= 0) has an element
 * count and byte size that fit int64; else writes the reason ("the shape
 * [...] has more elements than int64 can count") to why. */
bool ir_shape_fits(char *why, size_t cap, kiln_dtype dt, int rank, const int64_t *dims);
/* Creates a node with the given operands, dtype and shape; attributes zeroed.
 * Records KILN_ERR_NOMEM and returns NULL when out of memory, KILN_ERR_SHAPE
 * when the shape fails ir_shape_fits. */
kiln_tensor *ir_node_new(kiln_graph *g, ir_op op, kiln_dtype dt, int rank, const int64_t *dims,
                         int nin, kiln_tensor *const *in);
int64_t ir_numel(const kiln_tensor *t);
int64_t ir_shape_numel(int rank, const int64_t *dims);
bool ir_same_shape(const kiln_tensor *a, const kiln_tensor *b);
/* Row-major strides of a shape, in elements. */
void ir_strides(int rank, const int64_t *dims, int64_t *strides);
/* Stores each of n bool bytes as 0 or 1 (any other byte reads as true): the
 * generated C and the interpreter assume 0/1, so every way in passes this. */
void ir_bool_normalise(void *p, size_t n);
/* "[3, 4]" into buf (PyTorch's list form); returns buf. */
char *ir_shape_str(char *buf, size_t cap, int rank, const int64_t *dims);

/* The operands an attention op (sdpa, sdpa_stats, sdpa_grad) takes before its
 * optional mask: 3, 4 or 5; its bool mask (..., T, S), or NULL. */
int ir_attention_arity(ir_op op);
kiln_tensor *ir_attention_mask(const kiln_tensor *t);
/* sdpa's backward op (sdpa_stats, or sdpa_grad of operand axis) over
 * in = (q, k, v, g[, stats]) and mask (NULL: none), with its shape and dtype
 * and the given scale and causal flag; NULL when an operand is NULL or out of
 * memory (recorded, as ir_node_new). */
kiln_tensor *ir_sdpa_backward_new(kiln_graph *g, ir_op op, int axis, kiln_tensor *const *in,
                                  kiln_tensor *mask, double scale, bool causal);

/* conv's result shape for x [N, C, H, W] and w [O, C/groups, kH, kW] with the
 * given stride and dilation over H and W, into out; false (and why, with the
 * shapes) when they do not fit: ranks, channels, groups, a non-positive
 * stride, dilation or groups, or a kernel wider than the input. */
bool ir_conv_shape(const kiln_tensor *x, const kiln_tensor *w, const int64_t stride[2],
                   const int64_t dilation[2], int64_t groups, int64_t out[4], char *why,
                   size_t cap);
/* A conv node of x and w (its shape from ir_conv_shape, which the caller has
 * checked); NULL when an operand is NULL or out of memory (recorded). */
kiln_tensor *ir_conv_new(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, const int64_t stride[2],
                         const int64_t dilation[2], int64_t groups);

kiln_tensor *ir_find_leaf(const kiln_graph *g, const char *name); /* input or param */
/* first[i] = the smallest j < i with s[j] equal to s[i], else -1 (NULL
 * strings equal nothing), in O(n log n); false when out of memory. */
bool ir_first_equal(const char *const *s, int n, int *first);
ir_entry *ir_find_entry(const kiln_graph *g, const char *name);
/* KILN_OK when name can name a new entry; else records why (as fn) and fails. */
kiln_status ir_check_entry_name(kiln_graph *g, const char *fn, const char *name);
ir_entry *ir_entry_new(kiln_graph *g, const char *name, int n); /* outputs left NULL */

/* $KILN_DEBUG as a number (0 when unset): 1 = a line per compile and the
 * profile at module free, 2 = also the IR after each pass. */
int ir_debug_level(void);

/* A deep copy of g (nodes, data, entries); NULL when out of memory. */
kiln_graph *ir_graph_clone(const kiln_graph *g);

/* Checks every structural invariant (operand order, arity, shapes of each op
 * class, dtypes, names). Returns KILN_OK or records the problem on g. */
kiln_status ir_verify(kiln_graph *g);
/* ir_verify that also says where the problem is: *node = the offending node's
 * id or -1, *entry = the offending entry's index or -1 (the .kir parser turns
 * them into line numbers). */
kiln_status ir_verify_where(kiln_graph *g, int *node, int *entry);

/* .kir text (kir_print.c, kir_parse.c). */
kiln_status ir_print(const kiln_graph *g, FILE *f);

/* ---- Philox-4x32-10 (ir/philox.c) ------------------------------------------ */

void ir_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);
/* The i-th value of a random tensor; see philox.c for the exact spec. */
float ir_rand_f32(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i);
double ir_rand_f64(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i);
/* out[i] = ir_rand_f32(seed, stream, run, first + i) for i < n, sixteen
 * blocks at a time (AVX-512 when the CPU has it). */
void ir_rand_f32_fill(uint64_t seed, uint32_t stream, uint32_t run, uint64_t first, float *out,
                      int64_t n);
float ir_randn_f32(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i);
double ir_randn_f64(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i);
/* The run slot reserved for parameter initialisation. */
#define IR_RUN_INIT 0xffffffffu

#endif /* KILN_IR_H */
