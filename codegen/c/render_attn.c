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
 * run in parallel.
 */
#include "codegen/c/render.h"

enum { ATTN_BLOCK = 64 }; /* keys scored before the running maximum is updated */

/* "Q + i0 * s0 + <row> * s1": the start of a row of operand `which` (0 q,
 * 1 k, 2 v, 3 g, 4 stats), after its offset; "(i0 / H) * s0 + (i0 % H) * sh"
 * for one whose batch axes need two strides (heads permuted in). */
static void row_at(cgen_buf *b, const kprogram *p, const kk_attention *at, int which,
                   const char *row)
{
    const int buf[KK_MAX_OPERANDS] = {at->q, at->k, at->v, at->g, at->st};
    const int64_t *st = kk_attention_strides(at, which);
    cgen_buf_name(b, p, buf[which]);
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

/* "const T *name = <row of operand which>;" at indentation ind */
static void row_decl(kr *r, int ind, const char *ty, const char *name, int which, const char *row)
{
    cgen_indent(r->b, ind);
    cgen_printf(r->b, "const %s *%s = ", ty, name);
    row_at(r->b, r->p, &r->k->at, which, row);
    cgen_puts(r->b, ";\n");
}

/* "double s = a . b * scale;" over n elements with strides sa and sb, as an
 * omp simd reduction; scale 1 prints none. */
static void dot(cgen_buf *b, int ind, const char *s, const char *a, int64_t sa, const char *x,
                int64_t sx, int64_t n, double scale)
{
    cgen_indent(b, ind);
    cgen_printf(b, "double %s = 0;\n", s);
    cgen_indent(b, ind);
    cgen_printf(b, "#pragma omp simd reduction(+ : %s)\n", s);
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

/* sdpa's backward (docs/kernel-ir.md), a (batch, row) at a time in double:
 * KA_STATS a query row's (logsumexp, D = rowsum(g * y)) by an online
 * softmax and a second pass; KA_DQ a query row's gradient over its keys,
 * KA_DK and KA_DV a key row's over the queries that see it, from the stats.
 * Then the epilogue per column, KX_ACC = o[col]. */
static void render_backward(kr *r)
{
    const kernel *k = r->k;
    const kk_attention *at = &k->at;
    cgen_buf *b = r->b;
    const char *ty = cgen_ctype(r->p->bufs[at->q].dtype);
    const int64_t rows = k->dims[1], cols = k->dims[2];
    const int64_t *sq = at->q_stride, *sk = at->k_stride, *sv = at->v_stride, *sg = at->g_stride,
                  *ss = at->st_stride;
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
    cgen_printf(b, "            double o[%lld] = {0};\n", (long long)(cols ? cols : 1));
    if (at->mode == KA_STATS || at->mode == KA_DQ) { /* a query row i1 over its keys */
        row_decl(r, 3, ty, "qr", 0, "i1");
        row_decl(r, 3, ty, "gr", 3, "i1");
        if (at->causal)
            cgen_printf(b, "            const int64_t keys = i1 < %lld ? i1 + 1 : %lld;\n",
                        (long long)at->s, (long long)at->s);
        else
            cgen_printf(b, "            const int64_t keys = %lld;\n", (long long)at->s);
    }
    if (at->mode == KA_STATS) {
        cgen_puts(b, "            double m = -(double)INFINITY, l = 0, dsum = 0;\n"
                     "            for (int64_t j = 0; j < keys; j++) {\n");
        row_decl(r, 4, ty, "kr", 1, "j");
        dot(b, 4, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        cgen_puts(b, "                if (s > m) {\n"
                     "                    l *= exp(m - s);\n"
                     "                    m = s;\n"
                     "                }\n"
                     "                l += exp(s - m);\n"
                     "            }\n"
                     "            const double lse = keys ? m + log(l) : -(double)INFINITY;\n"
                     "            for (int64_t j = 0; j < keys; j++) {\n");
        row_decl(r, 4, ty, "kr", 1, "j");
        row_decl(r, 4, ty, "vr", 2, "j");
        dot(b, 4, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        dot(b, 4, "dp", "gr", sg[2], "vr", sv[2], at->dv, 1);
        cgen_puts(b, "                dsum += exp(s - lse) * dp;\n"
                     "            }\n"
                     "            o[0] = lse;\n"
                     "            o[1] = dsum;\n");
    } else if (at->mode == KA_DQ) {
        cgen_puts(b, "            const double *sr = ");
        row_at(b, r->p, at, 4, "i1");
        cgen_printf(b, ";\n            const double lse = sr[0], dd = sr[%lld];\n",
                    (long long)ss[2]);
        cgen_puts(b, "            for (int64_t j = 0; j < keys; j++) {\n");
        row_decl(r, 4, ty, "kr", 1, "j");
        row_decl(r, 4, ty, "vr", 2, "j");
        dot(b, 4, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        dot(b, 4, "dp", "gr", sg[2], "vr", sv[2], at->dv, 1);
        cgen_printf(b,
                    "                const double ds = exp(s - lse) * (dp - dd) * %.17g;\n"
                    "                for (int64_t e = 0; e < %lld; e++)\n"
                    "                    o[e] += ds * (double)kr[e * %lld];\n"
                    "            }\n",
                    at->scale, (long long)cols, (long long)sk[2]);
    } else { /* KA_DK, KA_DV: key row i1 over the queries that see it */
        row_decl(r, 3, ty, "kr", 1, "i1");
        if (at->mode == KA_DK)
            row_decl(r, 3, ty, "vr", 2, "i1");
        cgen_printf(b, "            for (int64_t i = %s; i < %lld; i++) {\n",
                    at->causal ? "i1" : "0", (long long)at->t);
        row_decl(r, 4, ty, "qr", 0, "i");
        row_decl(r, 4, ty, "gr", 3, "i");
        cgen_puts(b, "                const double *sr = ");
        row_at(b, r->p, at, 4, "i");
        cgen_puts(b, ";\n");
        dot(b, 4, "s", "qr", sq[2], "kr", sk[2], at->d, at->scale);
        cgen_puts(b, "                const double p = exp(s - sr[0]);\n");
        if (at->mode == KA_DV) {
            cgen_printf(b,
                        "                for (int64_t e = 0; e < %lld; e++)\n"
                        "                    o[e] += p * (double)gr[e * %lld];\n",
                        (long long)cols, (long long)sg[2]);
        } else {
            dot(b, 4, "dp", "gr", sg[2], "vr", sv[2], at->dv, 1);
            cgen_printf(b,
                        "                const double ds = p * (dp - sr[%lld]) * %.17g;\n"
                        "                for (int64_t e = 0; e < %lld; e++)\n"
                        "                    o[e] += ds * (double)qr[e * %lld];\n",
                        (long long)ss[2], at->scale, (long long)cols, (long long)sq[2]);
        }
        cgen_puts(b, "            }\n");
    }
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
    int64_t rows = at->batch * at->t;
    bool par = r->o.openmp && rows >= 2 && rows * at->s * (at->d + at->dv) >= PAR_WORK;
    cgen_emit_at(r, 0, false, 1);
    if (par)
        cgen_pragma_for(r, 1, at->batch > 1 && at->t > 1 ? 2 : 0, "");
    cgen_printf(b, "    for (int64_t i0 = 0; i0 < %lld; i0++) {\n", (long long)at->batch);
    cgen_printf(b, "        for (int64_t i1 = 0; i1 < %lld; i1++) {\n", (long long)at->t);
    cgen_emit_at(r, 1, false, 3);
    cgen_printf(b, "            const %s *qr = ", ty);
    row_at(b, r->p, at, 0, "i1");
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
                "                for (int64_t jj = 0; jj < n; jj++) {\n"
                "                    const %s *kr = ",
                ATTN_BLOCK, ATTN_BLOCK, ATTN_BLOCK, ATTN_BLOCK, f32 ? "float" : "double",
                ATTN_BLOCK, ty);
    row_at(b, r->p, at, 1, "(jb + jj)");
    cgen_printf(b,
                ";\n"
                "                    double s = 0;\n"
                "                    #pragma omp simd reduction(+ : s)\n"
                "                    for (int64_t d = 0; d < %lld; d++)\n"
                "                        s += (double)qr[d * %lld] * (double)kr[d * %lld];\n"
                "                    sb[jj] = s * %.17g;\n"
                "                    mb = sb[jj] > mb ? sb[jj] : mb;\n"
                "                }\n"
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
                (long long)at->d, (long long)at->q_stride[2], (long long)at->k_stride[2], at->scale,
                (long long)at->dv, f32 ? "kiln_expf((float)(sb[jj] - m))" : "exp(sb[jj] - m)", ty);
    row_at(b, r->p, at, 2, "(jb + jj)");
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
