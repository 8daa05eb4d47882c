/*
 * render_gemm.c - MATMUL kernels: a cache-blocked driver over tiles of the
 * accumulator that calls one shared tile function per layout and dtypes
 * (instantiated from gemm.inc), then the fused epilogue per element. Requires
 * a verified kprogram; the epilogue's nodes come from render_c.c's placement.
 */
#include "codegen/c/render.h"

#include <stdio.h>
#include <string.h>

/* GEMM cache blocks: a MM_MB x MM_NB double tile (64 KiB) stays in L2 while
 * MM_KB rows of B stream through it. In the packed path a B micro-panel of
 * MM_KB x NR floats (24 KiB) stays in L1 while A's panels stream past it
 * (192 measured a little better than 128 and 256 on SGEMM and the MLP). */
enum { MM_MB = 32, MM_NB = 256, MM_KB = 192 };
/* The packed f32 path's tiles are taller: B's packed KB x NB block is reused
 * by all MB rows, and A's packed MB x K row block by all of a thread's tiles
 * in that row (on the stack up to MM_APK_STACK bytes, else on the heap up
 * to MM_APK_MAX; past that each tile packs its own). 256 x 256 measured best
 * of 128..384 x 256 for SGEMM 512..4096 on a 2-core Zen 4 (2048: 145 -> 175
 * GFLOP/s from 128 rows); the f64 tile is 512 KiB of the thread's stack. */
enum { MM_PMB = 256, MM_PNB = 256, MM_APK_STACK = 512 << 10, MM_APK_MAX = 64 << 20 };

/* " + i0 * 12 + p" for the nonzero strides */
static void offset_terms(cgen_buf *b, int n, const char *const *vars, const int64_t *strides)
{
    for (int i = 0; i < n; i++) {
        if (strides[i] == 0)
            continue;
        cgen_printf(b, " + %s", vars[i]);
        if (strides[i] != 1)
            cgen_printf(b, " * %lld", (long long)strides[i]);
    }
}

/* GEMM tiles go through one shared function per layout and dtypes, not a loop
 * nest per kernel: clang then unrolls and schedules each inner loop once per
 * translation unit (an MLP train step has eleven matmuls), which is most of a
 * cold compile's time. The function adds A[i, k0:k1] @ B[k0:k1, j] into a
 * tile of the accumulator type; its strides are arguments. Layouts:
 *   ROWS     B's rows are contiguous along j: tile rows += a * B row (axpy)
 *   DOT      B is read along k and A's rows are contiguous: dot products
 *   STRIDED  anything else (axpy over a strided B row) */
typedef enum { MMV_ROWS, MMV_DOT, MMV_STRIDED, MMV_PACKED } mm_variant;

/* The packed microkernel's register block: MR rows x NR columns of f32
 * accumulators in VL-wide vectors (AVX-512: 12 of 32 registers; AVX2: 12 of
 * 16). Generated code is built with -march=native for the host whose
 * features the caller passed (cgen_host_features); the CPU is in the compile
 * cache's key. */
static void mm_block(const cgen_opts *o, int *mr, int *nr, int *vl)
{
    bool wide = o->features & CGEN_AVX512F;
    *mr = wide ? 6 : 4;
    *nr = wide ? 32 : 24;
    *vl = wide ? 16 : 8;
}

static mm_variant mm_variant_of(const kprogram *p, const kernel *k)
{
    const kk_matmul *mm = &k->mm;
    if (k->acc_dtype == KILN_F64 && p->bufs[mm->a].dtype == KILN_F32 &&
        p->bufs[mm->b].dtype == KILN_F32)
        return MMV_PACKED;
    if (mm->b_stride[2] == 1)
        return MMV_ROWS;
    return mm->b_stride[1] == 1 && mm->a_stride[2] == 1 ? MMV_DOT : MMV_STRIDED;
}

/* "kiln_mm_rows_f64_f32_f32": layout, accumulator, A and B dtypes. */
static void mm_fn_name(cgen_buf *b, const kprogram *p, const kernel *k)
{
    static const char *const layout[] = {"rows", "dot", "strided", "packed"};
    const kk_matmul *mm = &k->mm;
    cgen_printf(b, "kiln_mm_%s_%s_%s_%s", layout[mm_variant_of(p, k)],
                ir_dtype_is_float(k->acc_dtype) ? ir_dtype_kir(k->acc_dtype) : "u64",
                ir_dtype_kir(p->bufs[mm->a].dtype), ir_dtype_kir(p->bufs[mm->b].dtype));
}

static bool mm_operands_ok(const kprogram *p, const kernel *k)
{
    return k->mm.a >= 0 && k->mm.a < p->nbufs && k->mm.b >= 0 && k->mm.b < p->nbufs;
}

/* The tile function of kernel k (see mm_variant), and for the packed one the
 * packing routines it calls, from gemm.inc's templates. */
static void render_mm_fn(cgen_buf *b, const kprogram *p, const kernel *k, const cgen_opts *o)
{
    static const char *const tmpl[] = {"kiln_mm_rows", "kiln_mm_dot", "kiln_mm_strided",
                                       "kiln_mm_packed"};
    const kk_matmul *mm = &k->mm;
    bool fl = ir_dtype_is_float(k->acc_dtype);
    int mr, nr, vl;
    mm_block(o, &mr, &nr, &vl);
    char smr[16], snr[16], svl[16];
    snprintf(smr, sizeof smr, "%d", mr);
    snprintf(snr, sizeof snr, "%d", nr);
    snprintf(svl, sizeof svl, "%d", vl);
    cgen_buf name = {0};
    mm_fn_name(&name, p, k);
    mm_variant v = mm_variant_of(p, k);
    const char *from[] = {"TT", "TA", "TB", "KILN_MR", "KILN_NR", "KILN_VL", tmpl[v]};
    const char *to[] = {fl ? cgen_ctype(k->acc_dtype) : "uint64_t",
                        cgen_ctype(p->bufs[mm->a].dtype),
                        cgen_ctype(p->bufs[mm->b].dtype),
                        smr,
                        snr,
                        svl,
                        name.s ? name.s : ""};
    if (v == MMV_PACKED) {
        cgen_template(b, cgen_gemm_text, "kiln_mm_pack_a_f32", 6, from, to);
        cgen_template(b, cgen_gemm_text, "kiln_mm_pack_bt_f32", 6, from, to);
    }
    if (name.oom || !cgen_template(b, cgen_gemm_text, tmpl[v], 7, from, to))
        b->oom = true;
    cgen_buf_free(&name);
}

void cgen_render_mm_fns(cgen_buf *b, const kprogram *p, const cgen_opts *o)
{
    for (int i = 0; i < p->nkernels; i++) {
        const kernel *k = &p->kernels[i];
        if (k->kind != KK_MATMUL || !mm_operands_ok(p, k) || k->mm.k == 0 || cgen_empty_domain(k))
            continue;
        cgen_buf mine = {0}, other = {0};
        mm_fn_name(&mine, p, k);
        bool seen = false;
        for (int j = 0; j < i && !seen && !mine.oom; j++) {
            const kernel *q = &p->kernels[j];
            if (q->kind != KK_MATMUL || !mm_operands_ok(p, q) || q->mm.k == 0 ||
                cgen_empty_domain(q))
                continue;
            other.len = 0;
            mm_fn_name(&other, p, q);
            seen = !other.oom && strcmp(mine.s, other.s) == 0;
        }
        if (mine.oom || other.oom)
            b->oom = true;
        else if (!seen)
            render_mm_fn(b, p, k, o);
        cgen_buf_free(&mine);
        cgen_buf_free(&other);
    }
}

void cgen_render_matmul(kr *r)
{
    const kernel *k = r->k;
    const kk_matmul *mm = &k->mm;
    cgen_buf *b = r->b;
    if (!mm_operands_ok(r->p, k)) {
        cgen_puts(b, "#error \"kernel IR: matmul operands\"\n");
        return;
    }
    bool fl = ir_dtype_is_float(k->acc_dtype);
    const char *tt = fl ? cgen_ctype(k->acc_dtype) : "uint64_t";
    bool packed = mm_variant_of(r->p, k) == MMV_PACKED;
    /* fewer than two row blocks of MM_PMB: half-height ones, one per thread */
    int64_t bm = packed ? (mm->m >= 2 * MM_PMB ? MM_PMB : MM_PMB / 2) : MM_MB;
    int64_t bn = packed ? MM_PNB : MM_NB;
    int64_t mb = mm->m < bm ? mm->m : bm, nb = mm->n < bn ? mm->n : bn;
    int64_t kb = mm->k < MM_KB ? mm->k : MM_KB;
    const int64_t *sa = mm->a_stride, *sb = mm->b_stride;
    /* threads split tiles: one tile alone would only pay the team's start */
    int64_t tiles =
        mm->batch * ((mm->m + mb - 1) / (mb ? mb : 1)) * ((mm->n + nb - 1) / (nb ? nb : 1));
    bool par = r->o.openmp && !cgen_serial(k) && tiles >= 2 &&
               mm->batch * mm->m * mm->n * (mm->k ? mm->k : 1) >= PAR_WORK;
    cgen_emit_at(r, 0, false, 1);
    /* The packed path packs A's row block for the whole k range once per
     * thread and row block (consecutive tiles of a thread share ib), not once
     * per tile: mpad x K floats on the thread's stack, or its heap when big
     * (malloc failing falls back to packing per tile). */
    int mr, nr, vl;
    mm_block(&r->o, &mr, &nr, &vl);
    int64_t mpad = (mb + mr - 1) / mr * mr, apk_bytes = mpad * mm->k * 4;
    bool apk = packed && mm->k > 0 && apk_bytes <= MM_APK_MAX;
    bool apk_heap = apk_bytes > MM_APK_STACK;
    if (apk) {
        if (par)
            cgen_puts(b, "#pragma omp parallel num_threads(kiln_threads(ctx))\n");
        if (apk_heap)
            cgen_printf(b, "    {\n    float *apk = malloc(%lld);\n", (long long)apk_bytes);
        else
            cgen_printf(b,
                        "    {\n    float apk_buf[%lld];\n"
                        "    float *apk = (float *)(((uintptr_t)apk_buf + 63) & ~(uintptr_t)63);\n",
                        (long long)(mpad * mm->k + 16));
        cgen_puts(b, "    int64_t apk_at = -1; /* the (i0, ib) packed in apk */\n");
        if (par)
            cgen_puts(b, "#pragma omp for collapse(3) schedule(static)\n");
    } else if (par) {
        cgen_pragma_for(r, 1, 3, "");
    }
    cgen_printf(b, "    for (int64_t i0 = 0; i0 < %lld; i0++) {\n", (long long)mm->batch);
    cgen_printf(b, "        for (int64_t ib = 0; ib < %lld; ib += %lld) {\n", (long long)mm->m,
                (long long)mb);
    cgen_printf(b, "            for (int64_t jb = 0; jb < %lld; jb += %lld) {\n", (long long)mm->n,
                (long long)nb);
    cgen_printf(b, "                const int64_t ie = ib + %lld < %lld ? ib + %lld : %lld;\n",
                (long long)mb, (long long)mm->m, (long long)mb, (long long)mm->m);
    cgen_printf(b,
                "                const int64_t jn = (jb + %lld < %lld ? jb + %lld : %lld) - jb;\n",
                (long long)nb, (long long)mm->n, (long long)nb, (long long)mm->n);
    cgen_printf(b, "                %s tile[%lld][%lld];\n", tt, (long long)mb, (long long)nb);
    cgen_puts(b, "                memset(tile, 0, sizeof tile);\n");
    if (mm->k > 0) {
        const char *av[2] = {"i0", "ib"}, *bv[2] = {"i0", "jb"};
        const int64_t as[2] = {sa[0], sa[1]}, bs[2] = {sb[0], sb[2]};
        if (apk) {
            cgen_printf(b, "                if (apk && apk_at != i0 * %lld + ib) {\n",
                        (long long)mm->m);
            cgen_printf(b, "                    for (int64_t kb = 0; kb < %lld; kb += %lld)\n",
                        (long long)mm->k, (long long)kb);
            cgen_printf(
                b, "                        kiln_mm_pack_a_f32(apk + %lld * kb, ie - ib, kb,\n",
                (long long)mpad);
            cgen_printf(b, "                            kb + %lld < %lld ? kb + %lld : %lld, ",
                        (long long)kb, (long long)mm->k, (long long)kb, (long long)mm->k);
            cgen_buf_name(b, r->p, mm->a);
            offset_terms(b, 2, av, as);
            cgen_printf(b, ", %lld, %lld);\n", (long long)sa[1], (long long)sa[2]);
            cgen_printf(b, "                    apk_at = i0 * %lld + ib;\n                }\n",
                        (long long)mm->m);
        }
        cgen_printf(b, "                for (int64_t kb = 0; kb < %lld; kb += %lld)\n",
                    (long long)mm->k, (long long)kb);
        cgen_puts(b, "                    ");
        mm_fn_name(b, r->p, k);
        cgen_printf(b, "(&tile[0][0], %lld, ie - ib, jn, kb,\n", (long long)nb);
        cgen_printf(b, "                        kb + %lld < %lld ? kb + %lld : %lld, ",
                    (long long)kb, (long long)mm->k, (long long)kb, (long long)mm->k);
        cgen_buf_name(b, r->p, mm->a);
        offset_terms(b, 2, av, as);
        cgen_printf(b, ", %lld, %lld,\n                        ", (long long)sa[1],
                    (long long)sa[2]);
        cgen_buf_name(b, r->p, mm->b);
        offset_terms(b, 2, bv, bs);
        cgen_printf(b, ", %lld, %lld", (long long)sb[1], (long long)sb[2]);
        if (apk)
            cgen_printf(b, ", apk ? apk + %lld * kb : NULL", (long long)mpad);
        else if (packed)
            cgen_puts(b, ", NULL");
        cgen_puts(b, ");\n");
    }
    /* the epilogue: KX_ACC is the finished sum of (i0, i1, i2) */
    cgen_puts(b, "                for (int64_t i1 = ib; i1 < ie; i1++) {\n");
    cgen_emit_at(r, 1, false, 5);
    cgen_puts(b, "                    for (int64_t i2 = jb; i2 < jb + jn; i2++) {\n");
    cgen_printf(b, "                        const %s acc = ", cgen_ctype(k->acc_dtype));
    if (!fl)
        cgen_printf(b, "(%s)", cgen_ctype(k->acc_dtype));
    cgen_puts(b, "tile[i1 - ib][i2 - jb];\n");
    r->e.acc = "acc";
    cgen_emit_at(r, 2, false, 6);
    cgen_emit_leftovers(r, 6);
    cgen_emit_stores(r, 6);
    cgen_close_to(r, 5, 0);
    if (apk)
        cgen_puts(b, apk_heap ? "    free(apk);\n    }\n" : "    }\n");
}
