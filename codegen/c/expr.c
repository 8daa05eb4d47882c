/*
 * expr.c - the shared expression table and printer (see expr.h).
 *
 * Requires a kernel whose operands precede their users (kp_verify). Produces
 * C expressions with the interpreter's meaning (runtime/interp.c): floats in
 * their own dtype (+ - * / sqrt round exactly as the interpreter's double
 * rounded once), integers wrapping as two's complement, bool as 0/1.
 */
#include "codegen/c/expr.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- the table -------------------------------------------------------------- */

#define WRAP2(o) "(int64_t)((uint64_t)$a " o " (uint64_t)$b)"

const cgen_lang cgen_c_lang = {
    .op =
        {
            [IR_NEG] =
                {.f = "(-$a)", .i = "(int64_t)(0 - (uint64_t)$a)", .plain = "(-$a)", .b = "$a"},
            [IR_ABS] = {.f = "fabs$f($a)",
                        .i = "($a < 0 ? (int64_t)(0 - (uint64_t)$a) : (int64_t)$a)",
                        .b = "$a"},
            [IR_EXP] = {.f = "$vexp$f($a)"},
            [IR_LOG] = {.f = "$vlog$f($a)"},
            [IR_LOG1P] = {.f = "log1p$f($a)"},
            [IR_SQRT] = {.f = "sqrt$f($a)"},
            [IR_RSQRT] = {.f = "(1.0$f / sqrt$f($a))"},
            [IR_SIN] = {.f = "sin$f($a)"},
            [IR_COS] = {.f = "cos$f($a)"},
            [IR_TANH] = {.f = "$vtanh$f($a)"},
            [IR_ERF] = {.f = "$verf$f($a)"},
            [IR_SIGMOID] = {.f = "kiln_sigmoid$f($a)"},
            [IR_RELU] = {.f = "($a < 0 ? ($t)0 : $a)",
                         .i = "($a < 0 ? 0 : (int64_t)$a)",
                         .b = "$a"},
            [IR_DETACH] = {.any = "$a"},
            [IR_ADD] = {.f = "($a + $b)", .i = WRAP2("+"), .plain = "($a + $b)", .b = "($a | $b)"},
            [IR_SUB] = {.f = "($a - $b)", .i = WRAP2("-"), .plain = "($a - $b)", .b = "($a != $b)"},
            [IR_MUL] = {.f = "($a * $b)", .i = WRAP2("*"), .plain = "($a * $b)", .b = "($a & $b)"},
            [IR_DIV] = {.f = "($a / $b)", .i = "kiln_floordiv(ctx, $K, $a, $b)", .i_fails = true},
            [IR_POW] = {.f = "pow$f($a, $b)", .i = "kiln_ipow(ctx, $K, $a, $b)", .i_fails = true},
            [IR_MAXIMUM] = {.f = "kiln_fmax$f($a, $b)",
                            .i = "($a > $b ? (int64_t)$a : (int64_t)$b)",
                            .plain = "($a > $b ? $a : $b)",
                            .b = "($a | $b)"},
            [IR_MINIMUM] = {.f = "kiln_fmin$f($a, $b)",
                            .i = "($a < $b ? (int64_t)$a : (int64_t)$b)",
                            .plain = "($a < $b ? $a : $b)",
                            .b = "($a & $b)"},
            [IR_EQ] = {.any = "($a == $b)"},
            [IR_NE] = {.any = "($a != $b)"},
            [IR_LT] = {.any = "($a < $b)"},
            [IR_LE] = {.any = "($a <= $b)"},
            [IR_GT] = {.any = "($a > $b)"},
            [IR_GE] = {.any = "($a >= $b)"},
            [IR_WHERE] = {.any = "($a ? $b : $c)"},
        },
    .load = "$B[$a]",
    .var = "i$V",
    .idiv = "($a / $b)",
    .imod = "($a % $b)",
    .rand = "kiln_rand_$d(ctx->seed, $Su, ctx->run, (uint64_t)$a)",
    .randn = "kiln_randn_$d(ctx->seed, $Su, ctx->run, (uint64_t)$a)",
    .check = "kiln_check(ctx, $K, $X, $Z, $a)",
    .vprefix = "kiln_",
};

/* ---- printing ---------------------------------------------------------------- */

/* The graph's name for buffer i: its tensor's (an input or param) or its
 * output's; NULL for a temporary or a constant. */
static const char *buf_tensor_name(const kprogram *p, int i)
{
    if (!p || !p->g || i < 0 || i >= p->nbufs)
        return NULL;
    const kbuf *kb = &p->bufs[i];
    const kiln_graph *g = p->g;
    if (kb->role == KB_OUTPUT && kb->entry >= 0 && kb->entry < g->nentries && kb->index >= 0 &&
        kb->index < g->entries[kb->entry].n && g->entries[kb->entry].output_names)
        return g->entries[kb->entry].output_names[kb->index];
    if ((kb->role == KB_INPUT || kb->role == KB_PARAM) && kb->node >= 0 && kb->node < g->nnodes)
        return g->nodes[kb->node]->name;
    return NULL;
}

void cgen_buf_name(cgen_buf *b, const kprogram *p, int i)
{
    enum { MAXLEN = 24 };
    const char *name = buf_tensor_name(p, i);
    char s[MAXLEN + 1];
    size_t n = 0;
    for (; name && name[n] && n < MAXLEN; n++) {
        char c = name[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        s[n] = ok ? c : '_';
    }
    s[n] = 0;
    /* k<digits>_ is reserved for kernel names */
    for (size_t j = 0; j < n; j++) {
        size_t d = j + 1;
        while (d < n && s[d] >= '0' && s[d] <= '9')
            d++;
        if (s[j] == 'k' && d > j + 1 && d < n && s[d] == '_')
            s[j] = 'K';
    }
    cgen_printf(b, n ? "b%d_%s" : "b%d", i, s);
}

const char *cgen_ctype(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return "float";
    case KILN_F64: return "double";
    case KILN_I32: return "int32_t";
    case KILN_I64: return "int64_t";
    case KILN_BOOL: return "bool";
    }
    return "void";
}

int cgen_operands(const kx_node *n, int ops[3])
{
    return kx_operands(n, ops);
}

static bool valid_op(const kx_node *n)
{
    return n->kind == KX_OP && n->op >= 0 && n->op < IR_OP_COUNT;
}

bool *cgen_plain_nodes(const kernel *k)
{
    bool *plain = ir_alloc(sizeof(bool) * (size_t)(k->nx + 1));
    if (!plain)
        return NULL;
    for (int i = 0; i < k->nx; i++) {
        const kx_node *n = &k->x[i];
        int ops[3], ar = cgen_operands(n, ops);
        bool all = true;
        for (int j = 0; j < ar; j++)
            all = all && ops[j] >= 0 && ops[j] < i && plain[ops[j]];
        plain[i] = false;
        if (n->dtype != KILN_I64)
            continue;
        switch (n->kind) {
        case KX_CONST:
        case KX_VAR:
        case KX_CHECK: plain[i] = true; break;
        case KX_IDIV:
        case KX_IMOD: plain[i] = all; break;
        case KX_OP:
            if (valid_op(n) && n->op == IR_WHERE)
                plain[i] = ops[1] < i && ops[2] < i && plain[ops[1]] && plain[ops[2]];
            else
                plain[i] = all && valid_op(n) && cgen_c_lang.op[n->op].plain;
            break;
        case KX_LOAD:
        case KX_RAND:
        case KX_RANDN:
        case KX_ACC: break;
        }
    }
    return plain;
}

bool cgen_node_fails(const cgen_lang *l, const kernel *k, int i)
{
    const kx_node *n = &k->x[i];
    if (n->kind == KX_CHECK)
        return true;
    return valid_op(n) && !ir_dtype_is_float(n->dtype) && l->op[n->op].i_fails && !l->op[n->op].any;
}

bool cgen_inline(const kx_node *n)
{
    return n->kind == KX_CONST || n->kind == KX_VAR || n->kind == KX_ACC;
}

static void float_literal(cgen_buf *b, double v, bool f32)
{
    if (isnan(v)) {
        cgen_puts(b, f32 ? "NAN" : "(double)NAN");
        return;
    }
    if (isinf(v)) {
        cgen_puts(b, v < 0 ? (f32 ? "(-INFINITY)" : "(-(double)INFINITY)")
                           : (f32 ? "INFINITY" : "(double)INFINITY"));
        return;
    }
    char s[48];
    snprintf(s, sizeof s, f32 ? "%.9g" : "%.17g", v);
    bool dot = strpbrk(s, ".e") != NULL;
    cgen_printf(b, "%s%s%s%s%s", v < 0 || (v == 0 && signbit(v)) ? "(" : "", s, dot ? "" : ".0",
                f32 ? "f" : "", v < 0 || (v == 0 && signbit(v)) ? ")" : "");
}

static void int_literal(cgen_buf *b, int64_t v, kiln_dtype dt)
{
    if (v == INT64_MIN)
        cgen_puts(b, "INT64_MIN");
    else if (dt == KILN_I32 && v == INT32_MIN)
        cgen_puts(b, "INT32_MIN");
    else if (v < 0)
        cgen_printf(b, "(%lld)", (long long)v);
    else
        cgen_printf(b, "%lld", (long long)v);
}

void cgen_literal(cgen_buf *b, const kx_node *n)
{
    switch (n->dtype) {
    case KILN_F32: float_literal(b, n->value, true); return;
    case KILN_F64: float_literal(b, n->value, false); return;
    case KILN_I32:
    case KILN_I64: int_literal(b, n->ivalue, n->dtype); return;
    case KILN_BOOL: cgen_puts(b, n->value != 0 ? "true" : "false"); return;
    }
}

void cgen_operand(cgen_buf *b, const cgen_ectx *e, int i)
{
    if (i < 0 || i >= e->k->nx) {
        cgen_puts(b, "kiln_bad_operand");
        return;
    }
    const kx_node *n = &e->k->x[i];
    switch (n->kind) {
    case KX_CONST: cgen_literal(b, n); return;
    case KX_VAR: cgen_printf(b, "i%d", n->var); return;
    case KX_ACC:
        if (n->var > 0) /* an earlier phase's (a row kernel) */
            cgen_printf(b, "acc%d", n->var);
        else
            cgen_puts(b, e->acc ? e->acc : "kiln_no_acc");
        return;
    case KX_LOAD:
    case KX_OP:
    case KX_IDIV:
    case KX_IMOD:
    case KX_RAND:
    case KX_RANDN:
    case KX_CHECK: cgen_printf(b, "v%d", i); return;
    }
}

/* Expands template t for node n. fdt decides $t and $f; cast, when set, is
 * applied to every operand ("double": integers computed in double). */
static void expand(cgen_buf *b, const char *t, const cgen_ectx *e, const kx_node *n, kiln_dtype fdt,
                   const char *cast)
{
    for (const char *s = t; *s; s++) {
        if (*s != '$' || !s[1]) {
            char c[2] = {*s, 0};
            cgen_puts(b, c);
            continue;
        }
        switch (*++s) {
        case 'a':
        case 'b':
        case 'c':
            if (cast)
                cgen_printf(b, "((%s)", cast);
            cgen_operand(b, e, n->a[*s - 'a']);
            if (cast)
                cgen_puts(b, ")");
            break;
        case 't': cgen_puts(b, cgen_ctype(fdt)); break;
        case 'f': cgen_puts(b, fdt == KILN_F32 ? "f" : ""); break;
        case 'v': cgen_puts(b, fdt == KILN_F32 ? e->lang->vprefix : ""); break;
        case 'd': cgen_puts(b, ir_dtype_kir(n->dtype)); break;
        case 'K': cgen_printf(b, "%d", e->k->id); break;
        case 'B': cgen_buf_name(b, e->p, n->buf); break;
        case 'V': cgen_printf(b, "%d", n->var); break;
        case 'S': cgen_printf(b, "%u", (unsigned)n->stream); break;
        case 'X': cgen_printf(b, "%d", n->axis); break;
        case 'Z': cgen_printf(b, "%lld", (long long)n->size); break;
        default: {
            char c[3] = {'$', *s, 0};
            cgen_puts(b, c);
        }
        }
    }
}

static void cast_expr(cgen_buf *b, const cgen_ectx *e, const kx_node *n)
{
    int a = n->a[0];
    kiln_dtype src = a >= 0 && a < e->k->nx ? e->k->x[a].dtype : n->dtype, dst = n->dtype;
    if (src == dst) {
        cgen_operand(b, e, a);
    } else if (dst == KILN_BOOL) {
        cgen_puts(b, "(");
        cgen_operand(b, e, a);
        cgen_puts(b, " != 0)");
    } else if (ir_dtype_is_float(src) && !ir_dtype_is_float(dst)) {
        cgen_puts(b, dst == KILN_I32 ? "kiln_f2i32(" : "kiln_f2i64(");
        cgen_operand(b, e, a);
        cgen_puts(b, ")");
    } else {
        cgen_printf(b, "(%s)", cgen_ctype(dst));
        cgen_operand(b, e, a);
    }
}

/* An integer-form expression (an int64_t) converted to dt. */
static void int_expr(cgen_buf *b, const cgen_ectx *e, const kx_node *n, const char *t)
{
    /* bool operands are widened first: `x < 0` on a bool is a tautology warning */
    int a0 = n->a[0];
    const char *w = a0 >= 0 && a0 < e->k->nx && e->k->x[a0].dtype == KILN_BOOL ? "int64_t" : NULL;
    switch (n->dtype) {
    case KILN_I64: expand(b, t, e, n, KILN_F64, w); return;
    case KILN_I32:
        cgen_puts(b, "(int32_t)");
        expand(b, t, e, n, KILN_F64, w);
        return;
    case KILN_BOOL:
        cgen_puts(b, "(");
        expand(b, t, e, n, KILN_F64, w);
        cgen_puts(b, " != 0)");
        return;
    case KILN_F32:
    case KILN_F64: expand(b, t, e, n, n->dtype, NULL); return;
    }
}

static void op_expr(cgen_buf *b, const cgen_ectx *e, const kx_node *n, int i)
{
    if (!valid_op(n)) {
        cgen_puts(b, "kiln_bad_node");
        return;
    }
    if (n->op == IR_CAST) {
        cast_expr(b, e, n);
        return;
    }
    const cgen_opfmt *f = &e->lang->op[n->op];
    if (f->any) {
        expand(b, f->any, e, n, n->dtype, NULL);
    } else if (e->plain && e->plain[i] && f->plain) {
        expand(b, f->plain, e, n, n->dtype, NULL);
    } else if (ir_dtype_is_float(n->dtype)) {
        if (f->f)
            expand(b, f->f, e, n, n->dtype, NULL);
        else
            cgen_puts(b, "kiln_bad_node");
    } else if (n->dtype == KILN_BOOL && f->b) {
        expand(b, f->b, e, n, n->dtype, NULL);
    } else if (f->i) {
        int_expr(b, e, n, f->i);
    } else if (f->f) {
        /* a float-only op on integers: computed in double, converted as ir_store_f */
        cgen_puts(b, n->dtype == KILN_I32   ? "kiln_f2i32("
                     : n->dtype == KILN_I64 ? "kiln_f2i64("
                                            : "(");
        expand(b, f->f, e, n, KILN_F64, "double");
        cgen_puts(b, n->dtype == KILN_BOOL ? " != 0)" : ")");
    } else {
        cgen_puts(b, "kiln_bad_node");
    }
}

void cgen_expr(cgen_buf *b, const cgen_ectx *e, int i)
{
    if (i < 0 || i >= e->k->nx) {
        cgen_puts(b, "kiln_bad_operand");
        return;
    }
    const kx_node *n = &e->k->x[i];
    const cgen_lang *l = e->lang;
    switch (n->kind) {
    case KX_CONST:
    case KX_VAR:
    case KX_ACC: cgen_operand(b, e, i); return;
    case KX_LOAD: expand(b, l->load, e, n, n->dtype, NULL); return;
    case KX_OP: op_expr(b, e, n, i); return;
    case KX_IDIV: expand(b, l->idiv, e, n, n->dtype, NULL); return;
    case KX_IMOD: expand(b, l->imod, e, n, n->dtype, NULL); return;
    case KX_RAND: expand(b, l->rand, e, n, n->dtype, NULL); return;
    case KX_RANDN: expand(b, l->randn, e, n, n->dtype, NULL); return;
    case KX_CHECK: expand(b, l->check, e, n, n->dtype, NULL); return;
    }
}

/* True when s is one parenthesised group: "(a + b)" but not "(a) + (b)". */
static bool wrapped(const char *s, size_t len)
{
    if (len < 2 || s[0] != '(' || s[len - 1] != ')')
        return false;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        depth += s[i] == '(' ? 1 : s[i] == ')' ? -1 : 0;
        if (depth == 0 && i + 1 < len)
            return false;
    }
    return true;
}

void cgen_decl(cgen_buf *b, const cgen_ectx *e, int i)
{
    cgen_buf x = {0};
    cgen_expr(&x, e, i);
    if (x.oom) {
        b->oom = true;
        cgen_buf_free(&x);
        return;
    }
    const char *s = x.s ? x.s : "";
    size_t len = x.len;
    bool strip = wrapped(s, len);
    cgen_printf(b, "const %s v%d = %.*s;", cgen_ctype(e->k->x[i].dtype), i,
                (int)(strip ? len - 2 : len), strip ? s + 1 : s);
    cgen_buf_free(&x);
}

/* ---- pieces of kernels both renderers print ------------------------------------------- */

void cgen_reduce_init(cgen_buf *b, ir_op rop, kiln_dtype dt)
{
    bool mx = rop == IR_MAX || rop == IR_ARGMAX;
    switch (dt) {
    case KILN_F32:
    case KILN_F64: cgen_puts(b, mx ? "-INFINITY" : "INFINITY"); return;
    case KILN_I32: cgen_puts(b, mx ? "INT32_MIN" : "INT32_MAX"); return;
    case KILN_I64: cgen_puts(b, mx ? "INT64_MIN" : "INT64_MAX"); return;
    case KILN_BOOL: cgen_puts(b, mx ? "false" : "true"); return;
    }
}

void cgen_node_as(cgen_buf *b, const cgen_ectx *e, int i, kiln_dtype dt)
{
    if (e->k->x[i].dtype != dt)
        cgen_printf(b, "(%s)", cgen_ctype(dt));
    cgen_operand(b, e, i);
}

/* The body's value, converted to dt when it has another dtype. */
void cgen_body_as(cgen_buf *b, const cgen_ectx *e, kiln_dtype dt)
{
    cgen_node_as(b, e, e->k->body, dt);
}

void cgen_row_section(const kernel *k, int s, bool *in)
{
    memset(in, 0, (size_t)k->nx + 1);
    if (s <= k->npre) {
        int body = kk_phase_at(k, s).body;
        if (body >= 0 && body < k->nx)
            in[body] = true;
    }
    for (int i = 0; i < k->nstores && s > k->npre; i++) {
        const kk_store *st = &k->stores[i];
        if (st->element != (s == k->npre + 2) || st->index < 0 || st->index >= k->nx ||
            st->value < 0 || st->value >= k->nx)
            continue;
        in[st->index] = in[st->value] = true;
    }
    if ((s == k->npre || s == k->npre + 1) && kk_can_fail(k)) {
        /* checks no section reads run for their errors alone (a gather from
         * a table of equal values reads only its check): with the last phase,
         * or with the row stores when they read an accumulator (ir/kernel.c's
         * kk_row_may_fail allows no other place) */
        unsigned char *f = (unsigned char *)(in + k->nx + 1);
        kk_node_reads(k, f);
        for (int i = 0; i < k->nx; i++)
            if (k->x[i].kind == KX_CHECK && !(f[i] & KK_READ) &&
                !!(f[i] & KK_READS_ACC) == (s == k->npre + 1))
                in[i] = true;
    }
    for (int i = k->nx - 1; i >= 0; i--) {
        int ops[3], ar = cgen_operands(&k->x[i], ops);
        for (int j = 0; j < ar && in[i]; j++)
            if (ops[j] >= 0 && ops[j] < i)
                in[ops[j]] = true;
    }
}

void cgen_combine_float(cgen_buf *b, ir_op rop, const char *acc, const char *v, int ind)
{
    cgen_indent(b, ind);
    if (rop == IR_SUM)
        cgen_printf(b, "%s += %s;\n", acc, v);
    else
        cgen_printf(b, "if (!isnan(%s) && (isnan(%s) || %s %s %s))\n", acc, v, v,
                    rop == IR_MAX ? ">" : "<", acc);
    if (rop != IR_SUM) {
        cgen_indent(b, ind + 1);
        cgen_printf(b, "%s = %s;\n", acc, v);
    }
}

/* acc = combine(acc, body) at indentation ind; NaN beats everything and the
 * first extremum wins, as the interpreter's reduce(). */
void cgen_reduce_combine(cgen_buf *b, const cgen_ectx *e, int ind)
{
    const kernel *k = e->k;
    kiln_dtype bdt = k->x[k->body].dtype;
    bool arg = k->rop == IR_ARGMAX || k->rop == IR_ARGMIN;
    bool mx = k->rop == IR_MAX || k->rop == IR_ARGMAX;
    const char *cur = arg ? "best" : "acc";
    kiln_dtype cdt = arg ? bdt : k->acc_dtype;
    cgen_indent(b, ind);
    if (k->rop == IR_SUM) {
        if (ir_dtype_is_float(k->acc_dtype)) {
            cgen_puts(b, "acc += ");
            cgen_body_as(b, e, k->acc_dtype);
        } else {
            cgen_puts(b, "acc += (uint64_t)");
            cgen_operand(b, e, k->body);
        }
        cgen_puts(b, ";\n");
        return;
    }
    if (ir_dtype_is_float(cdt)) {
        cgen_printf(b, "if (!isnan(%s) && (isnan(", cur);
        cgen_body_as(b, e, cdt);
        cgen_puts(b, ") || ");
        cgen_body_as(b, e, cdt);
        cgen_printf(b, " %s %s))", mx ? ">" : "<", cur);
    } else {
        cgen_puts(b, "if (");
        cgen_body_as(b, e, cdt);
        cgen_printf(b, " %s %s)", mx ? ">" : "<", cur);
    }
    cgen_puts(b, arg ? " {\n" : "\n");
    cgen_indent(b, ind + 1);
    cgen_printf(b, "%s = ", cur);
    cgen_body_as(b, e, cdt);
    cgen_puts(b, ";\n");
    if (!arg)
        return;
    /* the flat row-major index over the reduced axes */
    cgen_indent(b, ind + 1);
    cgen_puts(b, "acc = ");
    int64_t stride = 1;
    int terms = 0;
    for (int j = k->rrank - 1; j >= 0; j--) {
        if (k->rdims[j] != 1) {
            cgen_printf(b, "%si%d", terms++ ? " + " : "", k->rank + j);
            if (stride != 1)
                cgen_printf(b, " * %lld", (long long)stride);
        }
        stride *= k->rdims[j];
    }
    cgen_puts(b, terms ? ";\n" : "0;\n");
    cgen_indent(b, ind);
    cgen_puts(b, "}\n");
}

void cgen_store(cgen_buf *b, const cgen_ectx *e, const kprogram *p, const kk_store *s, int ind,
                bool atomic)
{
    kiln_dtype dt = s->buf >= 0 && s->buf < p->nbufs ? p->bufs[s->buf].dtype : KILN_F32;
    cgen_indent(b, ind);
    if (atomic && s->accumulate) { /* concurrent threads: one read-modify-write */
        if (dt == KILN_BOOL) {     /* or: only a true changes anything */
            cgen_puts(b, "if (");
            cgen_operand(b, e, s->value);
            cgen_printf(b, ")\n");
            cgen_indent(b, ind + 1);
            cgen_buf_name(b, e->p, s->buf);
            cgen_puts(b, "[");
            cgen_operand(b, e, s->index);
            cgen_puts(b, "] = true;\n");
            return;
        }
        if (dt == KILN_I64) {
            cgen_puts(b, "atomicAdd((unsigned long long *)&");
            cgen_buf_name(b, e->p, s->buf);
            cgen_puts(b, "[");
        } else {
            cgen_puts(b, "atomicAdd(&");
            cgen_buf_name(b, e->p, s->buf);
            cgen_puts(b, "[");
        }
        cgen_operand(b, e, s->index);
        cgen_puts(b, dt == KILN_I64 ? "], (unsigned long long)" : "], ");
        cgen_operand(b, e, s->value);
        cgen_puts(b, ");\n");
        return;
    }
    cgen_buf_name(b, e->p, s->buf);
    cgen_puts(b, "[");
    cgen_operand(b, e, s->index);
    cgen_puts(b, "]");
    if (s->accumulate && dt != KILN_F32 && dt != KILN_F64) {
        const char *u = dt == KILN_I32 ? "uint32_t" : "uint64_t";
        cgen_printf(b, " = (%s)(", dt == KILN_BOOL ? "bool" : cgen_ctype(dt));
        if (dt != KILN_BOOL)
            cgen_printf(b, "(%s)", u);
        cgen_buf_name(b, e->p, s->buf);
        cgen_puts(b, "[");
        cgen_operand(b, e, s->index);
        cgen_puts(b, dt == KILN_BOOL ? "] | " : "] + ");
        if (dt != KILN_BOOL)
            cgen_printf(b, "(%s)", u);
        cgen_operand(b, e, s->value);
        cgen_puts(b, ");\n");
        return;
    }
    cgen_puts(b, s->accumulate ? " += " : " = ");
    cgen_operand(b, e, s->value);
    cgen_puts(b, ";\n");
}
