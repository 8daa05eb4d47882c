/*
 * render_attn.c - ATTENTION kernels (sdpa) in C: per (batch, row), one pass
 * over the keys with an online softmax (FlashAttention's recurrence: the
 * running maximum m, the running sum l and the weighted values o, rescaled
 * when m grows, once per block of keys), so no score matrix is ever stored;
 * scores and sums in double (a score's dot product as an `omp simd`
 * reduction: a sequential double sum cannot be vectorized, and its 4-cycle
 * adds in a chain were most of the kernel), the weights exp(s - m) of f32
 * operands in f32 through kiln_expf (vectorized, 0.81 ulp), of f64 ones in
 * double; then the kernel's epilogue per output column, KX_ACC = o / l. Rows
 * run in parallel. Its backward (sdpa_stats, sdpa_grad: FlashAttention-2's)
 * runs a row the same way, a block of scores, then their weights, then the
 * sums; CUDA takes the same row body without blocks.
 */
#include "codegen/c/render.h"

enum { ATTN_BLOCK = 64 }; /* keys scored before the running maximum is updated */

/* "Q + i0 * s0 + <row> * s1": the start of a row of operand `which` (KA_Q
 * ... KA_MASK), after its offset; "(i0 / H) * s0 + (i0 % H) * sh" for one
 * whose batch axes need two strides (heads permuted in). CUDA names buffers
 * b<i>. */
static void row_at(cgen_buf *b, const kprogram *p, const kk_attention *at, int which,
                   const char *row, bool cuda)
{
    const int64_t *st = kk_attention_strides(at, which);
    if (cuda)
        cgen_printf(b, "b%d", kk_attention_buf(at, which));
    else
        cgen_buf_name(b, p, kk_attention_buf(at, which));
    if (at->offset[which])
        cgen_printf(b, " + %lld", (long long)at->offset[which]);
    if (at->inner[which] > 1)
        cgen_printf(b, " + i0 / %lld * %lld + i0 %% %lld * %lld", (long long)at->inner[which],
                    (long long)st[0], (long long)at->inner[which], (long long)at->istride[which]);
    else if (st[0])
        cgen_printf(b, " + i0 * %lld", (long long)st[0]);
    if (st[1])
        cgen_printf(b, " + %s * %lld", row, (long long)st[1]);
}

typedef struct {
    cgen_buf *b;
    const kprogram *p;
    const kk_attention *at;
    const char *ty; /* the operands' C type */
    bool cuda;      /* no omp simd; buffers b<i> */
} attn_out;

/* "const T *name = <row of operand which>;" at indentation ind */
static void row_decl(const attn_out *o, int ind, const char *name, int which, const char *row)
{
    cgen_indent(o->b, ind);
    cgen_printf(o->b, "const %s *%s = ",
                which == KA_ST     ? "double"
                : which == KA_MASK ? "bool"
                                   : o->ty,
                name);
    row_at(o->b, o->p, o->at, which, row, o->cuda);
    cgen_puts(o->b, ";\n");
}

/* cgen_printf at indentation ind */
#define out_at(b, ind, ...) (cgen_indent((b), (ind)), cgen_printf((b), __VA_ARGS__))

void cgen_attention_mask_skip(cgen_buf *b, const kprogram *p, const kk_attention *at, int ind,
                              const char *row, const char *key, const char *skip, bool cuda)
{
    if (at->mask < 0)
        return;
    out_at(b, ind, "if (!(");
    row_at(b, p, at, KA_MASK, row, cuda);
    cgen_printf(b, ")[%s * %lld])\n", key, (long long)at->mask_stride[2]);
    out_at(b, ind + 1, "%s\n", skip);
}

static void mask_skip(const attn_out *o, int ind, const char *row, const char *key,
                      const char *skip)
{
    cgen_attention_mask_skip(o->b, o->p, o->at, ind, row, key, skip, o->cuda);
}

/* "double s = a . b * scale;" over n elements with strides sa and sb (C: an
 * omp simd reduction); scale 1 prints none. */
static void dot(const attn_out *o, int ind, const char *s, const char *a, int64_t sa, const char *x,
                int64_t sx, int64_t n, double scale)
{
    cgen_buf *b = o->b;
    cgen_indent(b, ind);
    cgen_printf(b, "double %s = 0;\n", s);
    if (!o->cuda) {
        cgen_indent(b, ind);
        cgen_printf(b, "#pragma omp simd reduction(+ : %s)\n", s);
    }
    cgen_indent(b, ind);
    cgen_printf(b, "for (int64_t d = 0; d < %lld; d++)\n", (long long)n);
    cgen_indent(b, ind + 1);
    cgen_printf(b, "%s += (double)%s[d * %lld] * (double)%s[d * %lld];\n", s, a, (long long)sa, x,
                (long long)sx);
    if (scale != 1) {
        cgen_indent(b, ind);
        cgen_printf(b, "%s *= %.17g;\n", s, scale);
    }
}

/* "a;\n" at indentation ind, for each line a of text */
static void lines(cgen_buf *b, int ind, const char *const *text)
{
    for (; *text; text++) {
        cgen_indent(b, ind);
        cgen_printf(b, "%s\n", *text);
    }
}

/* "kiln_expf((float)(x))" for f32 operands (as the forward), else "exp(x)";
 * with a mask, 0 for a masked score sb[i] (-inf; so is the logsumexp of a
 * row that attends to nothing, where exp(s - lse) would be NaN) */
static void weight(char *w, size_t n, bool f32, bool mask, const char *i, const char *x)
{
    int at = mask ? snprintf(w, n, "sb[%s] == -(double)INFINITY ? 0 : ", i) : 0;
    if (f32)
        snprintf(w + at, n - (size_t)at, "kiln_expf((float)(%s))", x);
    else
        snprintf(w + at, n - (size_t)at, "exp(%s)", x);
}

/* The C kernels' row body: the scores of ATTN_BLOCK keys (or queries) at a
 * time, then their weights exp(s - lse) in one vectorizable loop (kiln_expf
 * in f32 for f32 operands, as the forward), then the sums: the exponentials,
 * not the products, are most of the work. */
static void backward_row_blocked(const attn_out *o, const kernel *k, int ind)
{
    cgen_buf *b = o->b;
    const kk_attention *at = &k->at;
    const int64_t cols = k->dims[2];
    const int64_t *sq = at->q_stride, *sk = at->k_stride, *sv = at->v_stride, *sg = at->g_stride,
                  *ss = at->st_stride;
    bool f32 = o->p->bufs[at->q].dtype == KILN_F32, mask = at->mask >= 0;
    const char *wt = f32 ? "float" : "double";
    char wexp[128];
    out_at(b, ind, "double o[%lld] = {0};\n", (long long)(cols ? cols : 1));
    if (at->mode == KA_STATS || at->mode == KA_DQ) { /* a query row i1 over its keys */
        row_decl(o, ind, "qr", 0, "i1");
        row_decl(o, ind, "gr", 3, "i1");
        if (at->causal)
            out_at(b, ind, "const int64_t keys = i1 < %lld ? i1 + 1 : %lld;\n", (long long)at->s,
                   (long long)at->s);
        else
            out_at(b, ind, "const int64_t keys = %lld;\n", (long long)at->s);
    }
    /* a block's n keys jb + jj (or queries ib + ii) */
    const char *idx = at->mode == KA_DK || at->mode == KA_DV ? "ii" : "jj";
    if (at->mode == KA_STATS) {
        weight(wexp, sizeof wexp, f32, false, "jj", "sb[jj] - m");
        out_at(b, ind, "double m = -(double)INFINITY, l = 0, dsum = 0;\n");
        out_at(b, ind, "for (int64_t jb = 0; jb < keys; jb += %d) {\n", ATTN_BLOCK);
        out_at(b, ind + 1, "const int64_t n = keys - jb < %d ? keys - jb : %d;\n", ATTN_BLOCK,
               ATTN_BLOCK);
        out_at(b, ind + 1, "double sb[%d], mb = -(double)INFINITY;\n", ATTN_BLOCK);
        out_at(b, ind + 1, "%s wb[%d];\n", wt, ATTN_BLOCK);
        out_at(b, ind + 1, "for (int64_t jj = 0; jj < n; jj++) {\n");
        mask_skip(o, ind + 2, "i1", "(jb + jj)", "{ sb[jj] = -(double)INFINITY; continue; }");
        row_decl(o, ind + 2, "kr", 1, "(jb + jj)");
        dot(o, ind + 2, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        out_at(b, ind + 2, "sb[jj] = s;\n");
        out_at(b, ind + 2, "mb = s > mb ? s : mb;\n");
        out_at(b, ind + 1, "}\n");
        if (mask) { /* every key of the block masked: nothing to add */
            out_at(b, ind + 1, "if (mb == -(double)INFINITY)\n");
            out_at(b, ind + 2, "continue;\n");
        }
        out_at(b, ind + 1, "if (mb > m) {\n");
        out_at(b, ind + 2, "l *= exp(m - mb);\n");
        out_at(b, ind + 2, "m = mb;\n");
        out_at(b, ind + 1, "}\n");
        out_at(b, ind + 1, "for (int64_t jj = 0; jj < n; jj++)\n");
        out_at(b, ind + 2, "wb[jj] = %s;\n", wexp);
        out_at(b, ind + 1, "for (int64_t jj = 0; jj < n; jj++)\n");
        out_at(b, ind + 2, "l += wb[jj];\n");
        out_at(b, ind, "}\n");
        out_at(b, ind, "const double lse = l > 0 ? m + log(l) : -(double)INFINITY;\n");
    } else if (at->mode == KA_DQ) {
        row_decl(o, ind, "sr", 4, "i1");
        out_at(b, ind, "const double lse = sr[0], dd = sr[%lld];\n", (long long)ss[2]);
    } else {
        row_decl(o, ind, "kr", 1, "i1");
        if (at->mode == KA_DK)
            row_decl(o, ind, "vr", 2, "i1");
    }
    /* the pass that sums: scores (and dp) of a block, weights, then the sums */
    weight(wexp, sizeof wexp, f32, mask, idx,
           at->mode == KA_DK || at->mode == KA_DV ? "sb[ii]" : "sb[jj] - lse");
    if (at->mode == KA_DK || at->mode == KA_DV)
        out_at(b, ind, "for (int64_t ib = %s; ib < %lld; ib += %d) {\n", at->causal ? "i1" : "0",
               (long long)at->t, ATTN_BLOCK);
    else
        out_at(b, ind, "for (int64_t jb = 0; jb < keys; jb += %d) {\n", ATTN_BLOCK);
    if (at->mode == KA_DK || at->mode == KA_DV)
        out_at(b, ind + 1, "const int64_t n = %lld - ib < %d ? %lld - ib : %d;\n", (long long)at->t,
               ATTN_BLOCK, (long long)at->t, ATTN_BLOCK);
    else
        out_at(b, ind + 1, "const int64_t n = keys - jb < %d ? keys - jb : %d;\n", ATTN_BLOCK,
               ATTN_BLOCK);
    out_at(b, ind + 1, "double sb[%d], db[%d];\n", ATTN_BLOCK, ATTN_BLOCK);
    out_at(b, ind + 1, "%s wb[%d];\n", wt, ATTN_BLOCK);
    out_at(b, ind + 1, "for (int64_t %s = 0; %s < n; %s++) {\n", idx, idx, idx);
    if (at->mode == KA_DK || at->mode == KA_DV) {
        mask_skip(o, ind + 2, "(ib + ii)", "i1",
                  "{ sb[ii] = -(double)INFINITY; db[ii] = 0; continue; }");
        row_decl(o, ind + 2, "qr", 0, "(ib + ii)");
        row_decl(o, ind + 2, "sr", 4, "(ib + ii)");
        dot(o, ind + 2, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        out_at(b, ind + 2, "sb[ii] = s - sr[0];\n");
        if (at->mode == KA_DK) {
            row_decl(o, ind + 2, "gr", 3, "(ib + ii)");
            dot(o, ind + 2, "dp", "gr", sg[2], "vr", sv[2], at->dv, 1);
            out_at(b, ind + 2, "db[ii] = dp - sr[%lld];\n", (long long)ss[2]);
        }
    } else {
        mask_skip(o, ind + 2, "i1", "(jb + jj)",
                  "{ sb[jj] = -(double)INFINITY; db[jj] = 0; continue; }");
        row_decl(o, ind + 2, "kr", 1, "(jb + jj)");
        row_decl(o, ind + 2, "vr", 2, "(jb + jj)");
        dot(o, ind + 2, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        dot(o, ind + 2, "dp", "gr", sg[2], "vr", sv[2], at->dv, 1);
        out_at(b, ind + 2, "sb[jj] = s;\n");
        out_at(b, ind + 2, "db[jj] = dp;\n");
    }
    out_at(b, ind + 1, "}\n");
    out_at(b, ind + 1, "for (int64_t %s = 0; %s < n; %s++)\n", idx, idx, idx);
    out_at(b, ind + 2, "wb[%s] = %s;\n", idx, wexp);
    if (at->mode == KA_STATS) {
        out_at(b, ind + 1, "for (int64_t jj = 0; jj < n; jj++)\n");
        out_at(b, ind + 2, "dsum += (double)wb[jj] * db[jj];\n");
    } else {
        out_at(b, ind + 1, "for (int64_t %s = 0; %s < n; %s++) {\n", idx, idx, idx);
        if (at->mode == KA_DQ) {
            row_decl(o, ind + 2, "kr", 1, "(jb + jj)");
            out_at(b, ind + 2, "const double ds = (double)wb[jj] * (db[jj] - dd) * %.17g;\n",
                   at->scale);
            out_at(b, ind + 2, "for (int64_t e = 0; e < %lld; e++)\n", (long long)cols);
            out_at(b, ind + 3, "o[e] += ds * (double)kr[e * %lld];\n", (long long)sk[2]);
        } else if (at->mode == KA_DK) {
            row_decl(o, ind + 2, "qr", 0, "(ib + ii)");
            out_at(b, ind + 2, "const double ds = (double)wb[ii] * db[ii] * %.17g;\n", at->scale);
            out_at(b, ind + 2, "for (int64_t e = 0; e < %lld; e++)\n", (long long)cols);
            out_at(b, ind + 3, "o[e] += ds * (double)qr[e * %lld];\n", (long long)sq[2]);
        } else {
            row_decl(o, ind + 2, "gr", 3, "(ib + ii)");
            out_at(b, ind + 2, "const double w = wb[ii];\n");
            out_at(b, ind + 2, "for (int64_t e = 0; e < %lld; e++)\n", (long long)cols);
            out_at(b, ind + 3, "o[e] += w * (double)gr[e * %lld];\n", (long long)sg[2]);
        }
        out_at(b, ind + 1, "}\n");
    }
    out_at(b, ind, "}\n");
    if (at->mode == KA_STATS) {
        out_at(b, ind, "o[0] = lse;\n");
        out_at(b, ind, "o[1] = dsum;\n");
    }
}

void cgen_attention_backward_row(cgen_buf *b, const kprogram *p, const kernel *k, int ind,
                                 bool cuda)
{
    const kk_attention *at = &k->at;
    attn_out o = {b, p, at, cgen_ctype(p->bufs[at->q].dtype), cuda};
    if (!cuda) {
        backward_row_blocked(&o, k, ind);
        return;
    }
    const int64_t cols = k->dims[2];
    const int64_t *sq = at->q_stride, *sk = at->k_stride, *sv = at->v_stride, *sg = at->g_stride,
                  *ss = at->st_stride;
    cgen_indent(b, ind);
    cgen_printf(b, "double o[%lld] = {0};\n", (long long)(cols ? cols : 1));
    if (at->mode == KA_STATS || at->mode == KA_DQ) { /* a query row i1 over its keys */
        row_decl(&o, ind, "qr", 0, "i1");
        row_decl(&o, ind, "gr", 3, "i1");
        cgen_indent(b, ind);
        if (at->causal)
            cgen_printf(b, "const int64_t keys = i1 < %lld ? i1 + 1 : %lld;\n", (long long)at->s,
                        (long long)at->s);
        else
            cgen_printf(b, "const int64_t keys = %lld;\n", (long long)at->s);
    }
    if (at->mode == KA_STATS) {
        static const char *const online[] = {"    if (s > m) {",
                                             "        l *= exp(m - s);",
                                             "        m = s;",
                                             "    }",
                                             "    l += exp(s - m);",
                                             "}",
                                             NULL};
        static const char *const lse[] = {
            "const double lse = l > 0 ? m + log(l) : -(double)INFINITY;",
            "for (int64_t j = 0; j < keys; j++) {", NULL};
        static const char *const end[] = {"    dsum += exp(s - lse) * dp;", "}", "o[0] = lse;",
                                          "o[1] = dsum;", NULL};
        cgen_indent(b, ind);
        cgen_puts(b, "double m = -(double)INFINITY, l = 0, dsum = 0;\n");
        cgen_indent(b, ind);
        cgen_puts(b, "for (int64_t j = 0; j < keys; j++) {\n");
        mask_skip(&o, ind + 1, "i1", "j", "continue;");
        row_decl(&o, ind + 1, "kr", 1, "j");
        dot(&o, ind + 1, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        lines(b, ind, online);
        lines(b, ind, lse);
        mask_skip(&o, ind + 1, "i1", "j", "continue;");
        row_decl(&o, ind + 1, "kr", 1, "j");
        row_decl(&o, ind + 1, "vr", 2, "j");
        dot(&o, ind + 1, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        dot(&o, ind + 1, "dp", "gr", sg[2], "vr", sv[2], at->dv, 1);
        lines(b, ind, end);
    } else if (at->mode == KA_DQ) {
        row_decl(&o, ind, "sr", 4, "i1");
        cgen_indent(b, ind);
        cgen_printf(b, "const double lse = sr[0], dd = sr[%lld];\n", (long long)ss[2]);
        cgen_indent(b, ind);
        cgen_puts(b, "for (int64_t j = 0; j < keys; j++) {\n");
        mask_skip(&o, ind + 1, "i1", "j", "continue;");
        row_decl(&o, ind + 1, "kr", 1, "j");
        row_decl(&o, ind + 1, "vr", 2, "j");
        dot(&o, ind + 1, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        dot(&o, ind + 1, "dp", "gr", sg[2], "vr", sv[2], at->dv, 1);
        cgen_indent(b, ind + 1);
        cgen_printf(b, "const double ds = exp(s - lse) * (dp - dd) * %.17g;\n", at->scale);
        cgen_indent(b, ind + 1);
        cgen_printf(b, "for (int64_t e = 0; e < %lld; e++)\n", (long long)cols);
        cgen_indent(b, ind + 2);
        cgen_printf(b, "o[e] += ds * (double)kr[e * %lld];\n", (long long)sk[2]);
        cgen_indent(b, ind);
        cgen_puts(b, "}\n");
    } else { /* KA_DK, KA_DV: key row i1 over the queries that see it */
        row_decl(&o, ind, "kr", 1, "i1");
        if (at->mode == KA_DK)
            row_decl(&o, ind, "vr", 2, "i1");
        cgen_indent(b, ind);
        cgen_printf(b, "for (int64_t i = %s; i < %lld; i++) {\n", at->causal ? "i1" : "0",
                    (long long)at->t);
        mask_skip(&o, ind + 1, "i", "i1", "continue;");
        row_decl(&o, ind + 1, "qr", 0, "i");
        row_decl(&o, ind + 1, "gr", 3, "i");
        row_decl(&o, ind + 1, "sr", 4, "i");
        dot(&o, ind + 1, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        cgen_indent(b, ind + 1);
        cgen_puts(b, "const double p = exp(s - sr[0]);\n");
        if (at->mode == KA_DK) {
            dot(&o, ind + 1, "dp", "gr", sg[2], "vr", sv[2], at->dv, 1);
            cgen_indent(b, ind + 1);
            cgen_printf(b, "const double ds = p * (dp - sr[%lld]) * %.17g;\n", (long long)ss[2],
                        at->scale);
        }
        cgen_indent(b, ind + 1);
        cgen_printf(b, "for (int64_t e = 0; e < %lld; e++)\n", (long long)cols);
        cgen_indent(b, ind + 2);
        if (at->mode == KA_DV)
            cgen_printf(b, "o[e] += p * (double)gr[e * %lld];\n", (long long)sg[2]);
        else
            cgen_printf(b, "o[e] += ds * (double)qr[e * %lld];\n", (long long)sq[2]);
        cgen_indent(b, ind);
        cgen_puts(b, "}\n");
    }
}

/* sdpa's backward (docs/kernel-ir.md), a (batch, row) at a time in double
 * (cgen_attention_backward_row), rows in parallel; then the epilogue per
 * column, KX_ACC = o[col]. */
static void render_backward(kr *r)
{
    const kernel *k = r->k;
    const kk_attention *at = &k->at;
    cgen_buf *b = r->b;
    const int64_t rows = k->dims[1], cols = k->dims[2];
    bool par = r->o.openmp && at->batch * rows >= 2 &&
               at->batch * rows * (at->mode == KA_DK || at->mode == KA_DV ? at->t : at->s) *
                       (at->d + at->dv) >=
                   PAR_WORK;
    cgen_emit_at(r, 0, false, 1);
    if (par)
        cgen_pragma_for(r, 1, at->batch > 1 && rows > 1 ? 2 : 0, "");
    cgen_printf(b, "    for (int64_t i0 = 0; i0 < %lld; i0++) {\n", (long long)at->batch);
    cgen_printf(b, "        for (int64_t i1 = 0; i1 < %lld; i1++) {\n", (long long)rows);
    cgen_emit_at(r, 1, false, 3);
    cgen_attention_backward_row(b, r->p, k, 3, false);
    cgen_printf(b, "            for (int64_t i2 = 0; i2 < %lld; i2++) {\n", (long long)cols);
    cgen_puts(b, "                const double acc = o[i2];\n");
    r->e.acc = "acc";
    cgen_emit_at(r, 2, false, 4);
    cgen_emit_leftovers(r, 4);
    cgen_emit_stores(r, 4);
    cgen_close_to(r, 3, 0);
}

void cgen_render_attention(kr *r)
{
    const kernel *k = r->k;
    const kk_attention *at = &k->at;
    cgen_buf *b = r->b;
    if (at->mode != KA_FORWARD) {
        render_backward(r);
        return;
    }
    const char *ty = cgen_ctype(r->p->bufs[at->q].dtype);
    bool f32 = r->p->bufs[at->q].dtype == KILN_F32; /* f64: the weights in double too */
    attn_out o = {b, r->p, at, ty, false};
    int64_t rows = at->batch * at->t;
    bool par = r->o.openmp && rows >= 2 && rows * at->s * (at->d + at->dv) >= PAR_WORK;
    cgen_emit_at(r, 0, false, 1);
    if (par)
        cgen_pragma_for(r, 1, at->batch > 1 && at->t > 1 ? 2 : 0, "");
    cgen_printf(b, "    for (int64_t i0 = 0; i0 < %lld; i0++) {\n", (long long)at->batch);
    cgen_printf(b, "        for (int64_t i1 = 0; i1 < %lld; i1++) {\n", (long long)at->t);
    cgen_emit_at(r, 1, false, 3);
    cgen_printf(b, "            const %s *qr = ", ty);
    row_at(b, r->p, at, 0, "i1", false);
    cgen_printf(b, ";\n            double m = -(double)INFINITY, l = 0, o[%lld] = {0};\n",
                (long long)(at->dv ? at->dv : 1));
    if (at->causal) /* keys 0..i1 */
        cgen_printf(b, "            const int64_t keys = i1 < %lld ? i1 + 1 : %lld;\n",
                    (long long)at->s, (long long)at->s);
    else
        cgen_printf(b, "            const int64_t keys = %lld;\n", (long long)at->s);
    /* keys in blocks of ATTN_BLOCK: their scores, the block's maximum (one
     * rescale per block), the weights through the vectorizable kiln_expf */
    cgen_printf(b,
                "            for (int64_t jb = 0; jb < keys; jb += %d) {\n"
                "                const int64_t n = keys - jb < %d ? keys - jb : %d;\n"
                "                double sb[%d], mb = -(double)INFINITY;\n"
                "                %s wb[%d];\n"
                "                for (int64_t jj = 0; jj < n; jj++) {\n",
                ATTN_BLOCK, ATTN_BLOCK, ATTN_BLOCK, ATTN_BLOCK, f32 ? "float" : "double",
                ATTN_BLOCK);
    mask_skip(&o, 5, "i1", "(jb + jj)", "{ sb[jj] = -(double)INFINITY; continue; }");
    cgen_printf(b, "                    const %s *kr = ", ty);
    row_at(b, r->p, at, 1, "(jb + jj)", false);
    cgen_printf(b,
                ";\n"
                "                    double s = 0;\n"
                "                    #pragma omp simd reduction(+ : s)\n"
                "                    for (int64_t d = 0; d < %lld; d++)\n"
                "                        s += (double)qr[d * %lld] * (double)kr[d * %lld];\n"
                "                    sb[jj] = s * %.17g;\n"
                "                    mb = sb[jj] > mb ? sb[jj] : mb;\n"
                "                }\n",
                (long long)at->d, (long long)at->q_stride[2], (long long)at->k_stride[2],
                at->scale);
    if (at->mask >= 0) /* every key of the block masked: nothing to add */
        cgen_puts(b, "                if (mb == -(double)INFINITY)\n"
                     "                    continue;\n");
    cgen_printf(b,
                "                if (mb > m) { /* a new maximum: rescale what was summed */\n"
                "                    const double c = exp(m - mb);\n"
                "                    l *= c;\n"
                "                    for (int64_t e = 0; e < %lld; e++)\n"
                "                        o[e] *= c;\n"
                "                    m = mb;\n"
                "                }\n"
                "                for (int64_t jj = 0; jj < n; jj++)\n"
                "                    wb[jj] = %s;\n"
                "                for (int64_t jj = 0; jj < n; jj++) {\n"
                "                    const %s *vr = ",
                (long long)at->dv, f32 ? "kiln_expf((float)(sb[jj] - m))" : "exp(sb[jj] - m)", ty);
    row_at(b, r->p, at, 2, "(jb + jj)", false);
    cgen_printf(b,
                ";\n"
                "                    l += wb[jj];\n"
                "                    for (int64_t e = 0; e < %lld; e++)\n"
                "                        o[e] += (double)wb[jj] * (double)vr[e * %lld];\n"
                "                }\n"
                "            }\n",
                (long long)at->dv, (long long)at->v_stride[2]);
    cgen_printf(b, "            for (int64_t i2 = 0; i2 < %lld; i2++) {\n", (long long)at->dv);
    cgen_puts(b, "                const double acc = l > 0 ? o[i2] / l : 0;\n");
    r->e.acc = "acc";
    cgen_emit_at(r, 2, false, 4);
    cgen_emit_leftovers(r, 4);
    cgen_emit_stores(r, 4);
    cgen_close_to(r, 3, 0);
}
