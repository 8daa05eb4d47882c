/*
 * kir_parse.c - reads .kir text (docs/kir.md) back into a graph.
 *
 * Requires NUL-terminated text; accepts any bytes. Produces a verified graph,
 * or NULL and one message "line L, column C: expected <what>, found '<tok>'"
 * naming the first problem. A line-oriented recursive-descent parser over a
 * small lexer; nodes are created with ir_node_new as their lines are read, so
 * an operand can only name a node defined above. Every temporary lives in the
 * parser (freed at the end) or in the graph's arena (freed with the graph).
 */
#include "ir.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_EOF, T_NL, T_WORD, T_NUM, T_STR, T_REF, T_PUNCT, T_BAD } tok_kind;

typedef struct {
    tok_kind kind;
    const char *s; /* the token's bytes in the text */
    size_t len;
    int line, col;
    const char *err; /* T_BAD: what is wrong, at err_col ("unterminated string") */
    int err_col;
} tok;

/* Attributes are ir_attr (ir/ir.h), one bit each in the seen mask; which an
 * op takes is its row of kiln_ops.def. */
typedef struct {
    unsigned seen;
    tok key[IR_A_COUNT];
    int nlist[IR_A_COUNT];
    int64_t list[IR_A_COUNT][KILN_MAX_RANK];
    kiln_init init;
    int64_t fan_in, axis, groups;
    uint32_t stream, axes;
    double value, start, delta;
    bool weak, causal;
} attrs;

typedef struct {
    const char *p, *line_start;
    int line;
    tok t;
    kiln_graph *g;
    bool failed;
    char msg[640];
    /* scratch, grown with ir_realloc */
    kiln_tensor **ins;
    size_t cap_ins;
    unsigned char *data;
    size_t cap_data;
    char *str;
    size_t cap_str;
    int *node_line;
    size_t cap_node_line;
    int *entry_line;
    size_t cap_entry_line;
    kiln_tensor **outs;
    size_t cap_outs;
    char **out_names;
    size_t cap_out_names;
} parser;

/* ---- errors ------------------------------------------------------------------ */

static bool fail_at(parser *P, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail_at(parser *P, int line, int col, const char *fmt, ...)
{
    if (P->failed)
        return false;
    P->failed = true;
    int n = snprintf(P->msg, sizeof(P->msg), "line %d, column %d: ", line, col);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(P->msg + n, sizeof(P->msg) - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

/* The token as the error message shows it: quoted, escaped, shortened. */
static const char *tok_desc(const tok *t, char *buf, size_t cap)
{
    if (t->kind == T_EOF)
        return "end of input";
    if (t->kind == T_NL)
        return "end of line";
    size_t n = 0, shown = t->len < 24 ? t->len : 24;
    buf[n++] = '\'';
    for (size_t i = 0; i < shown && n + 8 < cap; i++) {
        unsigned char c = (unsigned char)t->s[i];
        if (c < 0x20 || c >= 0x7f)
            n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", c);
        else
            buf[n++] = (char)c;
    }
    if (shown < t->len && n + 5 < cap) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n++] = '\'';
    buf[n] = 0;
    return buf;
}

static bool expected(parser *P, const char *what)
{
    char buf[128];
    if (P->t.kind == T_BAD && P->t.err)
        return fail_at(P, P->t.line, P->t.err_col, "%s", P->t.err);
    return fail_at(P, P->t.line, P->t.col, "expected %s, found %s", what,
                   tok_desc(&P->t, buf, sizeof(buf)));
}

static bool oom(parser *P)
{
    return fail_at(P, P->t.line, P->t.col, "out of memory");
}

/* Grows a scratch array to hold n elements. */
static bool reserve(parser *P, void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < n)
        ncap *= 2;
    void *p = ir_realloc(*arr, ncap * elem);
    if (!p)
        return oom(P);
    *arr = p;
    *cap = ncap;
    return true;
}

/* ---- lexer ------------------------------------------------------------------- */

static bool is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(int c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static void lex_string(parser *P, tok *t)
{
    const char *p = P->p + 1;
    for (;;) {
        if (*p == 0 || *p == '\n') {
            t->kind = T_BAD;
            t->err = "unterminated string";
            t->err_col = t->col;
            break;
        }
        if (*p == '"') {
            p++;
            break;
        }
        if (*p != '\\') {
            p++;
            continue;
        }
        int ecol = (int)(p - P->line_start) + 1;
        char e = p[1];
        if (e == '"' || e == '\\' || e == 'n' || e == 't' || e == 'r') {
            p += 2;
        } else if (e == 'x' && hex_value(p[2]) >= 0 && hex_value(p[3]) >= 0) {
            if (hex_value(p[2]) == 0 && hex_value(p[3]) == 0) {
                t->kind = T_BAD;
                t->err = "\\x00 is not allowed in a string";
                t->err_col = ecol;
                break;
            }
            p += 4;
        } else if (e == 0 || e == '\n') {
            t->kind = T_BAD;
            t->err = "unterminated string";
            t->err_col = t->col;
            break;
        } else {
            t->kind = T_BAD;
            t->err = "unknown escape in string (use \\\" \\\\ \\n \\t \\r or \\xHH)";
            t->err_col = ecol;
            break;
        }
    }
    t->len = (size_t)(p - P->p);
}

static void lex(parser *P)
{
    const char *p = P->p;
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    if (*p == '#')
        while (*p && *p != '\n')
            p++;
    P->p = p;
    tok t = {T_PUNCT, p, 1, P->line, (int)(p - P->line_start) + 1, NULL, 0};
    char c = *p;
    if (c == 0) {
        t.kind = T_EOF;
        t.len = 0;
    } else if (c == '\n') {
        t.kind = T_NL;
        P->p = p + 1;
        P->line++;
        P->line_start = P->p;
        P->t = t;
        return;
    } else if (is_alpha(c)) {
        const char *q = p + 1;
        while (is_alpha(*q) || is_digit(*q))
            q++;
        t.kind = T_WORD;
        t.len = (size_t)(q - p);
    } else if (is_digit(c) || c == '.' || c == '+' || (c == '-' && p[1] != '>')) {
        /* the widest run a number could be; parse_* decides what it means */
        const char *q = p + 1;
        while (is_alpha(*q) || is_digit(*q) || *q == '.' ||
               ((*q == '+' || *q == '-') && (q[-1] == 'e' || q[-1] == 'E')))
            q++;
        t.kind = T_NUM;
        t.len = (size_t)(q - p);
    } else if (c == '%' && is_digit(p[1])) {
        const char *q = p + 1;
        while (is_digit(*q))
            q++;
        t.kind = T_REF;
        t.len = (size_t)(q - p);
    } else if (c == '"') {
        t.kind = T_STR;
        lex_string(P, &t);
    } else if (c == '-' && p[1] == '>') {
        t.len = 2;
    } else if (strchr("=,:[](){}", c)) {
        t.len = 1;
    } else {
        t.kind = T_BAD;
    }
    P->p = p + t.len;
    P->t = t;
}

static bool is_punct(const parser *P, const char *s)
{
    return P->t.kind == T_PUNCT && P->t.len == strlen(s) && memcmp(P->t.s, s, P->t.len) == 0;
}

static bool is_word(const parser *P, const char *s)
{
    return P->t.kind == T_WORD && P->t.len == strlen(s) && memcmp(P->t.s, s, P->t.len) == 0;
}

static bool expect_punct(parser *P, const char *s)
{
    char what[8];
    if (!is_punct(P, s)) {
        snprintf(what, sizeof(what), "'%s'", s);
        return expected(P, what);
    }
    lex(P);
    return true;
}

static bool expect_word(parser *P, const char *s)
{
    char what[40];
    if (!is_word(P, s)) {
        snprintf(what, sizeof(what), "'%s'", s);
        return expected(P, what);
    }
    lex(P);
    return true;
}

/* ---- numbers and strings ------------------------------------------------------- */

/* Copies the token into buf as a C string; false if it does not fit. */
static bool tok_text(const tok *t, char *buf, size_t cap)
{
    if (t->len >= cap)
        return false;
    memcpy(buf, t->s, t->len);
    buf[t->len] = 0;
    return true;
}

/* Decimal floating point only: no hex, no "infinity", at least one digit. */
static bool plain_decimal(const char *s)
{
    bool digit = false;
    if (*s == '-' || *s == '+')
        s++;
    for (; *s; s++) {
        if (is_digit(*s))
            digit = true;
        else if (!strchr(".eE+-", *s))
            return false;
    }
    return digit;
}

/* A double (f32: a float) in the current token; advances past it. */
static bool parse_real(parser *P, bool f32, double *out, const char *what)
{
    char buf[64];
    if ((P->t.kind != T_NUM && P->t.kind != T_WORD) || !tok_text(&P->t, buf, sizeof(buf)))
        return expected(P, what);
    double v;
    if (strcmp(buf, "inf") == 0) {
        v = (double)INFINITY;
    } else if (strcmp(buf, "-inf") == 0) {
        v = -(double)INFINITY;
    } else if (strcmp(buf, "nan") == 0) {
        v = (double)NAN;
    } else {
        char *end;
        if (!plain_decimal(buf))
            return expected(P, what);
        v = f32 ? (double)strtof(buf, &end) : strtod(buf, &end);
        if (*end || isinf(v)) /* trailing junk or out of range */
            return expected(P, what);
    }
    *out = v;
    lex(P);
    return true;
}

/* An integer in [lo, hi] in the current token; advances past it. */
static bool parse_int(parser *P, int64_t lo, int64_t hi, int64_t *out, const char *what)
{
    char buf[32];
    if (P->t.kind != T_NUM || !tok_text(&P->t, buf, sizeof(buf)))
        return expected(P, what);
    const char *s = buf[0] == '-' ? buf + 1 : buf;
    if (!*s)
        return expected(P, what);
    for (const char *q = s; *q; q++)
        if (!is_digit(*q))
            return expected(P, what);
    errno = 0;
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (errno == ERANGE || *end || v < lo || v > hi)
        return expected(P, what);
    *out = (int64_t)v;
    lex(P);
    return true;
}

static bool parse_u64(parser *P, uint64_t *out, const char *what)
{
    char buf[32];
    if (P->t.kind != T_NUM || !tok_text(&P->t, buf, sizeof(buf)))
        return expected(P, what);
    for (const char *q = buf; *q; q++)
        if (!is_digit(*q))
            return expected(P, what);
    errno = 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno == ERANGE || *end)
        return expected(P, what);
    *out = (uint64_t)v;
    lex(P);
    return true;
}

/* The node number of a %N token (INT_MAX when it does not fit). */
static int ref_id(const tok *t)
{
    int64_t v = 0;
    for (size_t i = 1; i < t->len; i++) {
        v = v * 10 + (t->s[i] - '0');
        if (v > INT32_MAX)
            return INT32_MAX;
    }
    return (int)v;
}

/* Decodes the current string token into the graph's arena; advances past it. */
static bool parse_str(parser *P, char **out, const char *what)
{
    if (P->t.kind != T_STR)
        return expected(P, what);
    if (!reserve(P, (void **)&P->str, &P->cap_str, P->t.len, 1))
        return false;
    size_t n = 0;
    for (size_t i = 1; i + 1 < P->t.len; i++) {
        char c = P->t.s[i];
        if (c == '\\') {
            char e = P->t.s[++i];
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'x':
                c = (char)(hex_value(P->t.s[i + 1]) * 16 + hex_value(P->t.s[i + 2]));
                i += 2;
                break;
            default: /* '"' and '\\' stand for themselves; the lexer allowed no other */
                c = e;
                break;
            }
        }
        P->str[n++] = c;
    }
    P->str[n] = 0;
    *out = ir_arena_strdup(&P->g->arena, P->str);
    if (!*out)
        return oom(P);
    lex(P);
    return true;
}

/* A node defined above: %N with N < the number of nodes so far. */
static bool parse_operand(parser *P, kiln_tensor **out)
{
    if (P->t.kind != T_REF || ref_id(&P->t) >= P->g->nnodes)
        return expected(P, "a node defined above");
    *out = P->g->nodes[ref_id(&P->t)];
    lex(P);
    return true;
}

/* ---- attributes ------------------------------------------------------------------ */

/* [v, v, ...] with at most KILN_MAX_RANK integers in [lo, hi]. */
static bool parse_list(parser *P, attrs *A, int which, int64_t lo, int64_t hi, const char *what)
{
    if (!expect_punct(P, "["))
        return false;
    int n = 0;
    if (!is_punct(P, "]")) {
        for (;;) {
            if (n == KILN_MAX_RANK)
                return expected(P, "']' (a list has at most 8 values)");
            if (!parse_int(P, lo, hi, &A->list[which][n], what))
                return false;
            n++;
            if (!is_punct(P, ","))
                break;
            lex(P);
        }
    }
    A->nlist[which] = n;
    return expect_punct(P, "]");
}

static bool parse_axes(parser *P, attrs *A)
{
    tok at = P->t;
    if (!parse_list(P, A, IR_A_AXES, 0, KILN_MAX_RANK - 1, "an axis (0 to 7)"))
        return false;
    A->axes = 0;
    for (int i = 0; i < A->nlist[IR_A_AXES]; i++) {
        unsigned bit = 1u << A->list[IR_A_AXES][i];
        if (A->axes & bit)
            return fail_at(P, at.line, at.col, "axis %lld appears twice in 'axes'",
                           (long long)A->list[IR_A_AXES][i]);
        A->axes |= bit;
    }
    return true;
}

static bool parse_init(parser *P, kiln_init *init)
{
    static const struct {
        const char *name;
        kiln_init_kind kind;
    } kinds[] = {
        {"zeros", KILN_INIT_ZEROS},     {"ones", KILN_INIT_ONES},
        {"const", KILN_INIT_CONST},     {"normal", KILN_INIT_NORMAL},
        {"uniform", KILN_INIT_UNIFORM}, {"kaiming_uniform", KILN_INIT_KAIMING_UNIFORM},
        {"data", KILN_INIT_DATA},
    };
    const char *what = "an init kind (zeros, ones, const, normal, uniform, kaiming_uniform, data)";
    size_t k = 0;
    while (k < sizeof(kinds) / sizeof(kinds[0]) && !is_word(P, kinds[k].name))
        k++;
    if (k == sizeof(kinds) / sizeof(kinds[0]))
        return expected(P, what);
    *init = (kiln_init){kinds[k].kind, 0, 0, NULL};
    lex(P);
    if (!is_punct(P, "("))
        return true;
    lex(P);
    if (!parse_real(P, false, &init->a, "a number"))
        return false;
    if (is_punct(P, ",")) {
        lex(P);
        if (!parse_real(P, false, &init->b, "a number"))
            return false;
    }
    return expect_punct(P, ")");
}

static bool parse_attr_value(parser *P, attrs *A, ir_attr which)
{
    int64_t v;
    switch (which) {
    case IR_A_INIT: return parse_init(P, &A->init);
    case IR_A_FAN_IN: return parse_int(P, 0, INT64_MAX, &A->fan_in, "a fan_in (an integer >= 0)");
    case IR_A_STREAM:
        if (!parse_int(P, 0, UINT32_MAX, &v, "a stream id (0 to 4294967295)"))
            return false;
        A->stream = (uint32_t)v;
        return true;
    case IR_A_VALUE: return parse_real(P, false, &A->value, "a number");
    case IR_A_START: return parse_real(P, false, &A->start, "a number");
    case IR_A_DELTA: return parse_real(P, false, &A->delta, "a number");
    case IR_A_AXES: return parse_axes(P, A);
    case IR_A_PERM: return parse_list(P, A, which, 0, KILN_MAX_RANK - 1, "an axis (0 to 7)");
    case IR_A_BEGIN:
    case IR_A_STEP:
    case IR_A_BEFORE:
    case IR_A_AFTER:
    case IR_A_STRIDE:
    case IR_A_DILATION: return parse_list(P, A, which, INT64_MIN, INT64_MAX, "an integer");
    case IR_A_GROUPS: return parse_int(P, INT64_MIN, INT64_MAX, &A->groups, "an integer");
    case IR_A_AXIS: return parse_int(P, INT32_MIN, INT32_MAX, &A->axis, "an axis (an integer)");
    case IR_A_WEAK: /* flags: no value */
    case IR_A_CAUSAL:
    case IR_A_COUNT: break;
    }
    return true;
}

/* The attribute of op whose key is the current word, or IR_A_COUNT. Keys are
 * unique within an op (arange's number "step" and slice's list "step" are
 * different attributes). */
static ir_attr attr_of(const parser *P, ir_op op)
{
    for (int at = 0; at < IR_A_COUNT; at++)
        if ((ir_ops[op].attrs & (1u << at)) && is_word(P, ir_attrs[at].name))
            return (ir_attr)at;
    return IR_A_COUNT;
}

/* key=value ... up to the ':' that starts the type. */
static bool parse_attrs(parser *P, ir_op op, const tok *op_tok, attrs *A)
{
    unsigned allowed = ir_ops[op].attrs;
    while (P->t.kind == T_WORD) {
        if (!allowed)
            break; /* "expected ':'" says it best */
        ir_attr which = attr_of(P, op);
        char buf[128];
        if (which == IR_A_COUNT)
            return fail_at(P, P->t.line, P->t.col, "'%.*s' has no attribute %s", (int)op_tok->len,
                           op_tok->s, tok_desc(&P->t, buf, sizeof(buf)));
        if (A->seen >> which & 1u)
            return fail_at(P, P->t.line, P->t.col, "attribute '%s' appears twice",
                           ir_attrs[which].name);
        A->seen |= 1u << which;
        A->key[which] = P->t;
        lex(P);
        if (which == IR_A_WEAK || which == IR_A_CAUSAL) {
            *(which == IR_A_WEAK ? &A->weak : &A->causal) = true;
            continue;
        }
        if (!expect_punct(P, "=") || !parse_attr_value(P, A, which))
            return false;
    }
    for (int at = 0; at < IR_A_COUNT; at++)
        if ((allowed >> at & 1u) && !ir_attrs[at].optional && !(A->seen >> at & 1u)) {
            char what[40];
            snprintf(what, sizeof(what), "attribute '%s'", ir_attrs[at].name);
            return expected(P, what);
        }
    return true;
}

/* perm, begin, step, before, after: one value per axis. */
static bool check_list_lengths(parser *P, const attrs *A, int rank)
{
    for (int at = 0; at < IR_A_COUNT; at++)
        if (ir_attrs[at].per_axis && (A->seen >> at & 1u) && A->nlist[at] != rank)
            return fail_at(P, A->key[at].line, A->key[at].col,
                           "'%s' has %d value%s but the rank is %d", ir_attrs[at].name,
                           A->nlist[at], A->nlist[at] == 1 ? "" : "s", rank);
    return true;
}

/* ---- types and data --------------------------------------------------------------- */

static bool parse_dtype(parser *P, kiln_dtype *out)
{
    static const kiln_dtype all[] = {KILN_F32, KILN_F64, KILN_I32, KILN_I64, KILN_BOOL};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (is_word(P, ir_dtype_kir(all[i]))) {
            *out = all[i];
            lex(P);
            return true;
        }
    return expected(P, "a dtype (f32, f64, i32, i64, bool)");
}

/* [d0, d1, ...]: at most 8 sizes >= 0 whose bytes fit in int64. */
static bool parse_shape(parser *P, int *rank, int64_t *dims)
{
    if (!expect_punct(P, "["))
        return false;
    int n = 0;
    int64_t numel = 1;
    if (!is_punct(P, "]")) {
        for (;;) {
            if (n == KILN_MAX_RANK)
                return expected(P, "']' (the rank is at most 8)");
            tok at = P->t;
            if (!parse_int(P, 0, INT64_MAX, &dims[n], "a size (an integer >= 0)"))
                return false;
            if (dims[n] > 0 && numel > INT64_MAX / 8 / dims[n])
                return fail_at(P, at.line, at.col, "the shape has more than %lld elements",
                               (long long)(INT64_MAX / 8));
            if (dims[n] > 0)
                numel *= dims[n];
            n++;
            if (!is_punct(P, ","))
                break;
            lex(P);
        }
    }
    *rank = n;
    return expect_punct(P, "]");
}

static bool parse_value(parser *P, kiln_dtype dt, void *dst)
{
    double d;
    int64_t i;
    switch (dt) {
    case KILN_F32:
        if (!parse_real(P, true, &d, "an f32 value"))
            return false;
        *(float *)dst = (float)d;
        return true;
    case KILN_F64: return parse_real(P, false, (double *)dst, "an f64 value");
    case KILN_I32:
        if (!parse_int(P, INT32_MIN, INT32_MAX, &i, "an i32 value"))
            return false;
        *(int32_t *)dst = (int32_t)i;
        return true;
    case KILN_I64: return parse_int(P, INT64_MIN, INT64_MAX, (int64_t *)dst, "an i64 value");
    case KILN_BOOL:
        if (!is_word(P, "true") && !is_word(P, "false"))
            return expected(P, "true or false");
        *(bool *)dst = is_word(P, "true");
        lex(P);
        return true;
    }
    return false;
}

/* {v, v, ...}: exactly numel values of dt, into P->data; *bytes = their size. */
static bool parse_data(parser *P, kiln_dtype dt, int64_t numel, size_t *bytes)
{
    size_t size = kiln_dtype_size(dt);
    int64_t n = 0;
    if (!expect_punct(P, "{"))
        return false;
    if (!is_punct(P, "}")) {
        for (;;) {
            if (n == numel) {
                char what[64];
                snprintf(what, sizeof(what), "'}' after %lld value%s", (long long)numel,
                         numel == 1 ? "" : "s");
                return expected(P, what);
            }
            if (!reserve(P, (void **)&P->data, &P->cap_data, (size_t)(n + 1) * size, 1))
                return false;
            if (!parse_value(P, dt, P->data + (size_t)n * size))
                return false;
            n++;
            if (!is_punct(P, ","))
                break;
            lex(P);
        }
    }
    if (is_punct(P, "}") && n < numel) {
        char what[64];
        snprintf(what, sizeof(what), "%lld values, found %lld", (long long)numel, (long long)n);
        return fail_at(P, P->t.line, P->t.col, "expected %s", what);
    }
    *bytes = (size_t)n * size;
    return expect_punct(P, "}");
}

/* ---- lines ---------------------------------------------------------------------- */

static bool record_line(parser *P, int **lines, size_t *cap, int index, int line)
{
    if (!reserve(P, (void **)lines, cap, (size_t)index + 1, sizeof(int)))
        return false;
    (*lines)[index] = line;
    return true;
}

static void set_attrs(kiln_tensor *t, const attrs *A)
{
    t->init = A->init;
    t->fan_in = A->fan_in;
    t->stream = A->stream;
    t->weak = A->weak;
    t->causal = A->causal;
    t->axes = A->axes;
    t->axis = (int)A->axis;
    t->value = (A->seen & IR_AT(START)) ? A->start : A->value;
    t->value2 = A->delta;
    for (int d = 0; d < A->nlist[IR_A_PERM]; d++)
        t->perm[d] = (int)A->list[IR_A_PERM][d];
    for (int d = 0; d < A->nlist[IR_A_BEGIN]; d++)
        t->begin[d] = A->list[IR_A_BEGIN][d];
    for (int d = 0; d < A->nlist[IR_A_STEP]; d++)
        t->step[d] = A->list[IR_A_STEP][d];
    for (int d = 0; d < A->nlist[IR_A_BEFORE]; d++)
        t->begin[d] = A->list[IR_A_BEFORE][d];
    for (int d = 0; d < A->nlist[IR_A_AFTER]; d++)
        t->after[d] = A->list[IR_A_AFTER][d];
    for (int d = 0; d < A->nlist[IR_A_STRIDE]; d++)
        t->step[d] = A->list[IR_A_STRIDE][d];
    for (int d = 0; d < A->nlist[IR_A_DILATION]; d++)
        t->dilation[d] = A->list[IR_A_DILATION][d];
    t->groups = A->groups;
}

/* %N = op ["name"] [%a, %b, ...] [key=value ...] : dtype[dims] [{data}] */
static bool parse_node(parser *P)
{
    kiln_graph *g = P->g;
    int line = P->t.line;
    if (ref_id(&P->t) != g->nnodes) {
        char what[24];
        snprintf(what, sizeof(what), "%%%d", g->nnodes);
        return expected(P, what);
    }
    lex(P);
    if (!expect_punct(P, "="))
        return false;
    tok op_tok = P->t;
    if (P->t.kind != T_WORD)
        return expected(P, "an op name");
    ir_op op = ir_op_from_name(P->t.s, P->t.len);
    if (op == IR_OP_COUNT)
        return fail_at(P, P->t.line, P->t.col, "unknown op '%.*s'", (int)P->t.len, P->t.s);
    lex(P);

    char *name = NULL;
    if ((ir_ops[op].flags & IR_F_LEAF) && !parse_str(P, &name, "a quoted name"))
        return false;

    size_t nin = 0;
    if (P->t.kind == T_REF) {
        for (;;) {
            if (!reserve(P, (void **)&P->ins, &P->cap_ins, nin + 1, sizeof(*P->ins)) ||
                !parse_operand(P, &P->ins[nin]))
                return false;
            nin++;
            if (!is_punct(P, ","))
                break;
            lex(P);
        }
    }
    int arity = ir_ops[op].arity;
    if (arity < 0 && nin < 1)
        return fail_at(P, op_tok.line, op_tok.col, "'%s' takes at least 1 operand, found 0",
                       ir_ops[op].name);
    if (arity >= 0 && nin != (size_t)arity)
        return fail_at(P, op_tok.line, op_tok.col, "'%s' takes %d operand%s, found %zu",
                       ir_ops[op].name, arity, arity == 1 ? "" : "s", nin);

    attrs A;
    memset(&A, 0, sizeof(A));
    if (!parse_attrs(P, op, &op_tok, &A) || !expect_punct(P, ":"))
        return false;
    kiln_dtype dt = KILN_F32;
    int rank = 0;
    int64_t dims[KILN_MAX_RANK];
    if (!parse_dtype(P, &dt) || !parse_shape(P, &rank, dims) || !check_list_lengths(P, &A, rank))
        return false;
    size_t bytes = 0;
    bool data = (ir_ops[op].flags & IR_F_DATA) &&
                (!(ir_ops[op].attrs & IR_AT(INIT)) || A.init.kind == KILN_INIT_DATA);
    if (data && !parse_data(P, dt, ir_shape_numel(rank, dims), &bytes))
        return false;
    if (P->t.kind != T_NL && P->t.kind != T_EOF)
        return expected(P, "end of line");

    kiln_tensor *t = ir_node_new(g, op, dt, rank, dims, (int)nin, P->ins);
    if (!t)
        return oom(P);
    set_attrs(t, &A);
    t->name = name;
    if (data) {
        t->data = ir_arena_alloc(&g->arena, bytes);
        if (!t->data)
            return oom(P);
        if (bytes)
            memcpy(t->data, P->data, bytes);
        if (op == IR_PARAM)
            t->init.data = t->data;
    }
    return record_line(P, &P->node_line, &P->cap_node_line, t->id, line);
}

/* entry "name" (%a -> "out", ...) */
static bool parse_entry(parser *P)
{
    kiln_graph *g = P->g;
    int line = P->t.line;
    char *name;
    lex(P);
    if (!parse_str(P, &name, "a quoted entry name") || !expect_punct(P, "("))
        return false;
    size_t n = 0;
    if (!is_punct(P, ")")) {
        for (;;) {
            if (!reserve(P, (void **)&P->outs, &P->cap_outs, n + 1, sizeof(*P->outs)) ||
                !reserve(P, (void **)&P->out_names, &P->cap_out_names, n + 1,
                         sizeof(*P->out_names)))
                return false;
            if (!parse_operand(P, &P->outs[n]) || !expect_punct(P, "->") ||
                !parse_str(P, &P->out_names[n], "a quoted output name"))
                return false;
            n++;
            if (!is_punct(P, ","))
                break;
            lex(P);
        }
    }
    if (!expect_punct(P, ")"))
        return false;
    if (P->t.kind != T_NL && P->t.kind != T_EOF)
        return expected(P, "end of line");
    if (n > INT32_MAX / 2)
        return oom(P);
    ir_entry *e = ir_entry_new(g, name, (int)n);
    if (!e)
        return oom(P);
    for (size_t k = 0; k < n; k++) {
        e->outputs[k] = P->outs[k];
        e->output_names[k] = P->out_names[k];
    }
    return record_line(P, &P->entry_line, &P->cap_entry_line, g->nentries - 1, line);
}

static void skip_blank_lines(parser *P)
{
    while (P->t.kind == T_NL)
        lex(P);
}

/* kiln 1 seed=N streams=N */
static bool parse_header(parser *P)
{
    int64_t version = 0, streams = 0;
    uint64_t seed = 0;
    skip_blank_lines(P);
    if (!is_word(P, "kiln"))
        return expected(P, "the header 'kiln 1 seed=<n> streams=<n>'");
    lex(P);
    if (!parse_int(P, 1, 1, &version, "format version 1") || !expect_word(P, "seed") ||
        !expect_punct(P, "=") || !parse_u64(P, &seed, "a seed (0 to 18446744073709551615)") ||
        !expect_word(P, "streams") || !expect_punct(P, "=") ||
        !parse_int(P, 0, UINT32_MAX, &streams, "a stream count (0 to 4294967295)"))
        return false;
    if (P->t.kind != T_NL && P->t.kind != T_EOF)
        return expected(P, "end of line");
    P->g->seed = seed;
    P->g->next_stream = (uint32_t)streams;
    return true;
}

static bool parse_graph(parser *P)
{
    if (!parse_header(P))
        return false;
    for (;;) {
        skip_blank_lines(P);
        if (P->t.kind == T_EOF)
            break;
        bool ok;
        if (P->t.kind == T_REF)
            ok = parse_node(P);
        else if (is_word(P, "entry"))
            ok = parse_entry(P);
        else
            ok = expected(P, "a node ('%N = ...') or an entry ('entry \"name\" (...)')");
        if (!ok)
            return false;
    }
    int node, entry;
    if (ir_verify_where(P->g, &node, &entry) != KILN_OK) {
        int line = node >= 0 && node < P->g->nnodes       ? P->node_line[node]
                   : entry >= 0 && entry < P->g->nentries ? P->entry_line[entry]
                                                          : P->line;
        return fail_at(P, line, 1, "%s", P->g->error);
    }
    return true;
}

kiln_graph *kiln_graph_parse(const char *kir_text, char *err, size_t errlen)
{
    parser P;
    memset(&P, 0, sizeof(P));
    bool ok = false;
    if (!kir_text) {
        snprintf(P.msg, sizeof(P.msg), "kiln_graph_parse: text is NULL");
    } else if (!(P.g = kiln_graph_new())) {
        snprintf(P.msg, sizeof(P.msg), "line 1, column 1: out of memory");
    } else {
        P.p = P.line_start = kir_text;
        P.line = 1;
        lex(&P);
        ok = parse_graph(&P);
    }
    ir_free(P.ins);
    ir_free(P.data);
    ir_free(P.str);
    ir_free(P.node_line);
    ir_free(P.entry_line);
    ir_free(P.outs);
    ir_free(P.out_names);
    if (err && errlen)
        snprintf(err, errlen, "%s", ok ? "" : P.msg);
    if (!ok) {
        kiln_graph_free(P.g);
        return NULL;
    }
    return P.g;
}
