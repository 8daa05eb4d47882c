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
 * 1 k, 2 v), after its offset; "(i0 / H) * s0 + (i0 % H) * sh" for one whose
 * batch axes need two strides (heads permuted in). */
static void row_at(cgen_buf *b, const kprogram *p, const kk_attention *at, int which,
                   const char *row)
{
    const int buf[3] = {at->q, at->k, at->v};
    const int64_t *st = which == 0 ? at->q_stride : which == 1 ? at->k_stride : at->v_stride;
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

void cgen_render_attention(kr *r)
{
    const kernel *k = r->k;
    const kk_attention *at = &k->at;
    cgen_buf *b = r->b;
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
