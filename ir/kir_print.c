/*
 * kir_print.c - the canonical .kir text of a graph (docs/kir.md).
 *
 * Requires a well-formed graph (ops, dtypes, ranks in range). Produces one
 * header line, one line per node in id order, and one line per entry. The
 * text is canonical: every value is printed in one way only (floats as the
 * shortest decimal that reads back to the same bits), so printing the graph
 * that kir_parse.c reads back gives the same bytes.
 */
#include "ir.h"

#include <math.h>
#include <stdlib.h>

/* The shortest "%.*g" text of v that strtod reads back exactly. */
static const char *fmt_f64(char *buf, size_t cap, double v)
{
    if (isnan(v))
        return "nan";
    if (isinf(v))
        return v < 0 ? "-inf" : "inf";
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
}

static const char *fmt_f32(char *buf, size_t cap, float v)
{
    if (isnan(v))
        return "nan";
    if (isinf(v))
        return v < 0 ? "-inf" : "inf";
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    return buf;
}

/* A quoted string: \" \\ \n \t \r and \xHH for other control bytes; bytes
 * >= 0x80 are written as they are (UTF-8 names stay readable). */
static void print_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\x%02x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void print_list(FILE *f, const char *key, int n, const int64_t *v)
{
    fprintf(f, " %s=[", key);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%lld", i ? ", " : "", (long long)v[i]);
    fputc(']', f);
}

static void print_f64_attr(FILE *f, const char *key, double v)
{
    char buf[40];
    fprintf(f, " %s=%s", key, fmt_f64(buf, sizeof(buf), v));
}

static const char *init_name(kiln_init_kind k)
{
    switch (k) {
    case KILN_INIT_ZEROS: return "zeros";
    case KILN_INIT_ONES: return "ones";
    case KILN_INIT_CONST: return "const";
    case KILN_INIT_NORMAL: return "normal";
    case KILN_INIT_UNIFORM: return "uniform";
    case KILN_INIT_KAIMING_UNIFORM: return "kaiming_uniform";
    case KILN_INIT_DATA: return "data";
    }
    return "?";
}

/* init=<kind>[(a[, b])]: as many numbers as the kind uses, more only when
 * a or b is set where the kind does not use it (so nothing is lost). */
static void print_init(FILE *f, const kiln_init *in)
{
    int uses = in->kind == KILN_INIT_CONST                                     ? 1
               : in->kind == KILN_INIT_NORMAL || in->kind == KILN_INIT_UNIFORM ? 2
                                                                               : 0;
    int set = in->b != 0 ? 2 : in->a != 0 ? 1 : 0;
    int n = uses > set ? uses : set;
    char buf[40];
    fprintf(f, " init=%s", init_name(in->kind));
    if (n >= 1)
        fprintf(f, "(%s", fmt_f64(buf, sizeof(buf), in->a));
    if (n >= 2)
        fprintf(f, ", %s", fmt_f64(buf, sizeof(buf), in->b));
    if (n >= 1)
        fputc(')', f);
}

static void print_data(FILE *f, const kiln_tensor *t)
{
    char buf[40];
    int64_t n = ir_numel(t);
    fputs(" {", f);
    for (int64_t i = 0; i < n; i++) {
        if (i)
            fputs(", ", f);
        switch (t->dtype) {
        case KILN_F32: fputs(fmt_f32(buf, sizeof(buf), ((const float *)t->data)[i]), f); break;
        case KILN_F64: fputs(fmt_f64(buf, sizeof(buf), ((const double *)t->data)[i]), f); break;
        case KILN_I32: fprintf(f, "%d", (int)((const int32_t *)t->data)[i]); break;
        case KILN_I64: fprintf(f, "%lld", (long long)((const int64_t *)t->data)[i]); break;
        case KILN_BOOL: fputs(((const unsigned char *)t->data)[i] ? "true" : "false", f); break;
        }
    }
    fputc('}', f);
}

/* One attribute of t, as " key=value" (weak: " weak"; an optional one that is
 * zero: nothing). */
static void print_attr(FILE *f, const kiln_tensor *t, ir_attr at)
{
    const char *key = ir_attrs[at].name;
    int64_t list[KILN_MAX_RANK];
    int n = 0;
    switch (at) {
    case IR_A_INIT: print_init(f, &t->init); return;
    case IR_A_FAN_IN:
        if (t->fan_in)
            fprintf(f, " %s=%lld", key, (long long)t->fan_in);
        return;
    case IR_A_STREAM: fprintf(f, " %s=%u", key, (unsigned)t->stream); return;
    case IR_A_START:
    case IR_A_VALUE: print_f64_attr(f, key, t->value); return;
    case IR_A_DELTA: print_f64_attr(f, key, t->value2); return;
    case IR_A_AXES:
        for (int d = 0; d < KILN_MAX_RANK; d++)
            if ((t->axes >> d) & 1u)
                list[n++] = d;
        print_list(f, key, n, list);
        return;
    case IR_A_PERM:
        for (int d = 0; d < t->rank; d++)
            list[d] = t->perm[d];
        print_list(f, key, t->rank, list);
        return;
    case IR_A_BEGIN:
    case IR_A_BEFORE: print_list(f, key, t->rank, t->begin); return;
    case IR_A_STEP:
    case IR_A_STRIDE: print_list(f, key, t->rank, t->step); return;
    case IR_A_DILATION: print_list(f, key, t->rank, t->dilation); return;
    case IR_A_GROUPS: fprintf(f, " %s=%lld", key, (long long)t->groups); return;
    case IR_A_AFTER: print_list(f, key, t->rank, t->after); return;
    case IR_A_WEAK:
    case IR_A_CAUSAL:
        if (at == IR_A_WEAK ? t->weak : t->causal)
            fprintf(f, " %s", key);
        return;
    case IR_A_AXIS: fprintf(f, " %s=%d", key, t->axis); return;
    case IR_A_COUNT: return;
    }
}

/* The attributes of t's op (its row of kiln_ops.def), in canonical order. */
static void print_attrs(FILE *f, const kiln_tensor *t)
{
    for (int at = 0; at < IR_A_COUNT; at++)
        if (ir_ops[t->op].attrs & (1u << at))
            print_attr(f, t, (ir_attr)at);
}

static bool has_data(const kiln_tensor *t)
{
    unsigned flags = ir_ops[t->op].flags, attrs = ir_ops[t->op].attrs;
    return t->data && (flags & IR_F_DATA) &&
           (!(attrs & IR_AT(INIT)) || t->init.kind == KILN_INIT_DATA);
}

static void print_node(FILE *f, const kiln_tensor *t)
{
    fprintf(f, "%%%d = %s", t->id, ir_ops[t->op].name);
    if (ir_ops[t->op].flags & IR_F_LEAF) {
        fputc(' ', f);
        print_str(f, t->name);
    }
    for (int k = 0; k < t->nin; k++)
        fprintf(f, "%s%%%d", k ? ", " : " ", t->in[k]->id);
    print_attrs(f, t);
    fprintf(f, " : %s[", ir_dtype_kir(t->dtype));
    for (int d = 0; d < t->rank; d++)
        fprintf(f, "%s%lld", d ? ", " : "", (long long)t->dims[d]);
    fputc(']', f);
    if (has_data(t))
        print_data(f, t);
    fputc('\n', f);
}

kiln_status ir_print(const kiln_graph *g, FILE *f)
{
    if (!g || !f)
        return KILN_ERR_INVALID;
    fprintf(f, "kiln 1 seed=%llu streams=%u\n", (unsigned long long)g->seed,
            (unsigned)g->next_stream);
    for (int i = 0; i < g->nnodes; i++)
        print_node(f, g->nodes[i]);
    if (g->nentries)
        fputc('\n', f);
    for (int e = 0; e < g->nentries; e++) {
        const ir_entry *x = &g->entries[e];
        fputs("entry ", f);
        print_str(f, x->name);
        fputs(" (", f);
        for (int k = 0; k < x->n; k++) {
            fprintf(f, "%s%%%d -> ", k ? ", " : "", x->outputs[k]->id);
            print_str(f, x->output_names[k]);
        }
        fputs(")\n", f);
    }
    return ferror(f) ? KILN_ERR_IO : KILN_OK;
}

kiln_status kiln_graph_print(const kiln_graph *g, FILE *f)
{
    return ir_print(g, f);
}
