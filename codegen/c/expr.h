/*
 * expr.h - the expression printer shared by the C and CUDA renderers.
 *
 * tinygrad style: a table (cgen_lang) maps every elementwise op and every
 * kernel-IR node kind to a format string, cgen_c_lang; codegen/c and
 * codegen/cuda both print with it (every entry is also valid CUDA C, the
 * helpers it names exist in both). The printer turns one
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
    /* $v: the prefix of f32 exp/log/tanh/erf. C: "kiln_" (ir/vmath.inc's,
     * vectorizable and bit-identical to the interpreter); CUDA: "" (the
     * device's own expf..., within 2 ULP and much faster there). */
    const char *vprefix;
} cgen_lang;

extern const cgen_lang cgen_c_lang;

/* ---- helpers ------------------------------------------------------------------ */

/* The helper C sources carry lives in .inc files embedded by CMake, cut into
 * sections at marker lines `@helper NAME...` (in a comment of its own): a
 * section runs from its marker to the next one, and a source carries it when
 * the source's text, or a section it carries, uses one of its NAMEs as a whole
 * identifier (every helper name starts with kiln_ or KILN_). What comes
 * before a file's first marker is its header comment, never printed.
 *   ir/vmath.inc                 kiln_expf, kiln_logf, kiln_tanhf, kiln_erff,
 *                                kiln_box_mullerf (C and CUDA)
 *   codegen/c/helpers.inc        Philox, rand/randn, sigmoid, NaN-propagating
 *                                max/min, float->int, floor division, ipow,
 *                                index checks (C and CUDA; they call kiln_fail)
 *   codegen/c/prelude.inc        C: includes and portability macros
 *   codegen/c/runtime.inc        C: kiln_fail, kiln_threads, copies, profile
 *   codegen/c/gemm.inc           C: GEMM tile templates (cgen_template) */
extern const char cgen_vmath_text[], cgen_helpers_text[], cgen_prelude_text[], cgen_runtime_text[],
    cgen_gemm_text[];

enum { CGEN_MAX_SECTIONS = 96 };

typedef struct {
    const char *text, *end;        /* the section, after its marker line */
    const char *names, *names_end; /* the marker's names */
    bool need;
} cgen_section;

typedef struct {
    cgen_section s[CGEN_MAX_SECTIONS];
    int n;
} cgen_helpers;

/* Cuts texts[0..n) into sections; false when they have too many. */
bool cgen_helpers_init(cgen_helpers *h, const char *const *texts, int n);
/* Marks the sections text uses, and the sections those use, and so on. */
void cgen_helpers_use(cgen_helpers *h, const char *text);
/* Prints, in order, the needed sections cut from text (one of init's texts). */
void cgen_helpers_print(cgen_buf *b, const cgen_helpers *h, const char *text);
/* True when a section cut from text is needed. */
bool cgen_helpers_needed(const cgen_helpers *h, const char *text);
/* The run-time error codes (ir/abi.h) as the enum both renderers print, when
 * body or a needed helper section names one. */
void cgen_runerr_enum(cgen_buf *b, const cgen_helpers *h, const char *body);
/* Prints the section of text that lists name with each whole identifier
 * from[i] replaced by to[i]; false when text has no such section. */
bool cgen_template(cgen_buf *b, const char *text, const char *name, int n, const char *const *from,
                   const char *const *to);

/* ---- printing ---------------------------------------------------------------- */

typedef struct {
    const cgen_lang *lang;
    const kernel *k;
    const kprogram *p; /* for buffer names; NULL: b<N> */
    const bool *plain; /* per node: bounded I64 index arithmetic (cgen_plain_nodes) */
    const char *acc;   /* how KX_ACC reads */
} cgen_ectx;

/* Buffer i's C name: b<i>_<its tensor's name> (as a C identifier, at most 24
 * characters, never k<digits>_), or b<i> for temporaries and constants. */
void cgen_buf_name(cgen_buf *b, const kprogram *p, int i);
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

/* Node i's value converted to dt (a cast when it has another dtype). */
void cgen_node_as(cgen_buf *b, const cgen_ectx *e, int i, kiln_dtype dt);
/* A row kernel (a REDUCE with earlier phases or element stores) runs in
 * sections: 0..npre its phases in order, npre + 1 its row stores, npre + 2
 * its element stores. in[0..nx): the nodes section s reads; checks that no
 * section reads (their errors alone) go with the last phase, or with the row
 * stores when they read an accumulator. in holds 2 (nx + 1) bools: the rest
 * is scratch. */
void cgen_row_section(const kernel *k, int s, bool *in);
/* acc = combine(acc, v) for a float SUM, MAX or MIN (NaN beats everything,
 * as the interpreter), v a C expression of acc's type, at indentation ind. */
void cgen_combine_float(cgen_buf *b, ir_op rop, const char *acc, const char *v, int ind);
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
