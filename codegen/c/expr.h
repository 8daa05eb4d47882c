/*
 * expr.h - the expression printer shared by the C and CUDA renderers.
 *
 * tinygrad style: a table (cgen_lang) maps every elementwise op and every
 * kernel-IR node kind to a format string; codegen/c prints with cgen_c_lang,
 * codegen/cuda copies it and overrides a few entries. The printer turns one
 * kx node into an expression over its operands: kx nodes are locals v<N>,
 * loop variables i<N>, constants literals. Integer arithmetic never reaches
 * C's undefined behaviour (it wraps through uint64_t) except plain index
 * arithmetic, which is bounded by the loop domain.
 *
 * Format strings: $a $b $c operands; $t the result's C type; $f "f" for f32
 * and "" for f64 (libm suffix and literal suffix); $v "kiln_" for f32 and ""
 * for f64 (f32 exp/log/tanh/erf are ir/vmath.inc's vectorizable
 * versions, within 2 ulp; f64 stays libm); $d the dtype ("f32");
 * $K the kernel id; $B buffer; $V loop variable; $S stream; $X axis; $Z size.
 */
#ifndef KILN_CGEN_EXPR_H
#define KILN_CGEN_EXPR_H

#include "ir/kernel.h"
#include "ir/strbuf.h"

/* ---- the table -------------------------------------------------------------- */

typedef struct {
    const char *f;     /* F32/F64 results */
    const char *i;     /* I32/I64/bool results: an int64_t expression, converted to the dtype
                          after; NULL: computed in double and converted (FLOATY ops) */
    const char *any;   /* any dtype, printed as is (comparisons, where, detach) */
    const char *plain; /* I64 index arithmetic whose operands are bounded: plain C */
    const char *b;     /* bool results of bool operands, when simpler than .i */
    bool i_fails;      /* the integer form can fail (kiln_fail) */
} cgen_opfmt;

typedef struct {
    cgen_opfmt op[IR_OP_COUNT]; /* CAST is printed by cgen_expr itself */
    const char *load, *var, *idiv, *imod, *rand, *randn, *check;
} cgen_lang;

extern const cgen_lang cgen_c_lang;

/* Static helper functions every source needs (Philox, rand/randn, sigmoid,
 * NaN-propagating max/min, saturating float->int, floor division, integer
 * power, index checks). The renderer defines first: KILN_FN (the function
 * qualifiers), kiln_ctx, the KILN_RUNERR_* codes and
 *     void kiln_fail(kiln_ctx *ctx, int32_t code, int32_t kernel, int32_t axis,
 *                    int64_t index, int64_t size);   (records the first error) */
extern const char *const cgen_helpers[]; /* NULL-terminated pieces */
/* ir/vmath.inc (embedded by CMake): kiln_expf, kiln_logf, kiln_tanhf,
 * kiln_erff; printed before cgen_helpers (which use kiln_expf). */
extern const char cgen_vmath_text[];

/* ---- printing ---------------------------------------------------------------- */

typedef struct {
    const cgen_lang *lang;
    const kernel *k;
    const bool *plain; /* per node: bounded I64 index arithmetic (cgen_plain_nodes) */
    const char *acc;   /* how KX_ACC reads */
} cgen_ectx;

const char *cgen_ctype(kiln_dtype dt); /* "float", "double", "int32_t", "int64_t", "bool" */
/* Operands of node n (its `a` slots in use); returns how many. */
int cgen_operands(const kx_node *n, int ops[3]);
/* Per node of k: true for I64 index arithmetic on loop variables, constants
 * and checked indices (ir_alloc'd; NULL when out of memory). */
bool *cgen_plain_nodes(const kernel *k);
/* True when node n can make the kernel fail at run time. */
bool cgen_node_fails(const cgen_lang *l, const kernel *k, int i);
/* True when node i is printed inline (constants, loop variables, acc) rather
 * than as a local. */
bool cgen_inline(const kx_node *n);
void cgen_literal(cgen_buf *b, const kx_node *n); /* a constant as a C literal */
void cgen_operand(cgen_buf *b, const cgen_ectx *e, int i);
void cgen_expr(cgen_buf *b, const cgen_ectx *e, int i); /* node i's value */
/* "const <type> v<i> = <expr>;" without the indentation or newline. */
void cgen_decl(cgen_buf *b, const cgen_ectx *e, int i);

/* ---- pieces of kernels ------------------------------------------------------- */

/* The reduce body's value (e->k->body) converted to dt. */
void cgen_body_as(cgen_buf *b, const cgen_ectx *e, kiln_dtype dt);
/* The identity of reduction rop in dtype dt (for MAX, MIN and the arg ops). */
void cgen_reduce_init(cgen_buf *b, ir_op rop, kiln_dtype dt);
/* One step of e->k's reduction at indentation ind: acc (SUM: acc +=; MAX/MIN:
 * NaN wins, then the first extremum) or, for ARGMAX/ARGMIN, best and acc = the
 * flat index over the reduced loop variables. */
void cgen_reduce_combine(cgen_buf *b, const cgen_ectx *e, int ind);
/* Store s of e->k: "b<buf>[index] = value;"; an accumulating store adds
 * (integers wrap, bools or), with atomicAdd when atomic (CUDA). */
void cgen_store(cgen_buf *b, const cgen_ectx *e, const kprogram *p, const kk_store *s, int ind,
                bool atomic);

#endif /* KILN_CGEN_EXPR_H */
