/*
 * render_gemm.c - MATMUL kernels: a cache-blocked driver over tiles of the
 * accumulator that calls one shared tile function per layout and dtypes
 * (instantiated from gemm.inc), then the fused epilogue per element. Requires
 * a verified kprogram; the epilogue's nodes come from render_c.c's placement.
 */
#include "codegen/c/render.h"

#include <stdio.h>
#include <string.h>

/* The unpacked paths' cache blocks: a MM_MB x MM_NB double tile (64 KiB)
 * stays in L2 while MM_KB rows of B stream through it. The packed f32 path's
 * come from its schedule (cgen_gemm_sched: the host model, codegen/c/schedule.c,
 * or the tuner's): B's packed KB x NB block is reused by all MB rows, and A's
 * packed MB x K row block by all of a thread's tiles in that row (on the stack
 * up to MM_APK_STACK bytes, else on the heap up to MM_APK_MAX; past that each
 * tile packs its own). */
enum { MM_MB = 32, MM_NB = 256, MM_KB = 192 };
enum { MM_APK_STACK = 512 << 10, MM_APK_MAX = 64 << 20 };
/* A GEMM of fewer than MM_SPLITK_TILES tiles and at least as many k blocks
 * splits k into (at most) MM_SPLITK chunks that threads share (split_k). */
enum { MM_SPLITK_TILES = 4, MM_SPLITK = 8 };

/* GEMM tiles go through one shared function per layout and dtypes, not a loop
 * nest per kernel: clang then unrolls and schedules each inner loop once per
 * translation unit (an MLP train step has eleven matmuls), which is most of a
 * cold compile's time. The function adds A[i, k0:k1] @ B[k0:k1, j] into a
 * tile of the accumulator type; its strides are arguments. Layouts:
 *   ROWS     B's rows are contiguous along j: tile rows += a * B row (axpy)
 *   DOT      B is read along k and A's rows are contiguous: dot products
 *   STRIDED  anything else (axpy over a strided B row)
 *   PACKED   f32 operands: both packed into panels, one register-blocked microkernel
 *   GATHER, PGATHER  operands with parts (kk_parts: a convolution's taps read in
 *            place), any dtypes or f32 packed: offsets through per-block tables */
typedef enum { MMV_ROWS, MMV_DOT, MMV_STRIDED, MMV_PACKED, MMV_GATHER, MMV_PGATHER } mm_variant;

static mm_variant mm_variant_of(const kprogram *p, const kernel *k)
{
    const kk_matmul *mm = &k->mm;
    bool f32 = k->acc_dtype == KILN_F64 && p->bufs[mm->a].dtype == KILN_F32 &&
               p->bufs[mm->b].dtype == KILN_F32;
    if (kk_matmul_has_parts(mm))
        return f32 ? MMV_PGATHER : MMV_GATHER;
    if (f32)
        return MMV_PACKED;
    if (mm->b_stride[2] == 1)
        return MMV_ROWS;
    return mm->b_stride[1] == 1 && mm->a_stride[2] == 1 ? MMV_DOT : MMV_STRIDED;
}

/* Packed kernel k's schedule: the caller's pick, else its default (the host
 * model of the features when it has none). Generated code is built with
 * -march=native for the host whose features the caller passed
 * (cgen_host_features); the CPU is in the compile cache's key. */
static cgen_gemm_sched mm_sched(const cgen_opts *o, const kprogram *p, const kernel *k)
{
    cgen_gemm_sched s;
    if (o->pick && o->pick(o->pick_ctx, p, k, &s) && cgen_gemm_sched_ok(&s, o->features))
        return s;
    if (cgen_gemm_sched_ok(&o->gemm, o->features))
        return o->gemm;
    return cgen_gemm_model(&(cgen_host){o->features, 0, 0, 0, 0});
}

/* "kiln_mm_rows_f64_f32_f32": layout, accumulator, A and B dtypes; the
 * packed ones' register block too ("kiln_mm_packed_f64_f32_f32_6x32"). */
static void mm_fn_name(cgen_buf *b, const kprogram *p, const kernel *k, const cgen_opts *o)
{
    static const char *const layout[] = {"rows", "dot", "strided", "packed", "gather", "pgather"};
    const kk_matmul *mm = &k->mm;
    cgen_printf(b, "kiln_mm_%s_%s_%s_%s", layout[mm_variant_of(p, k)],
                ir_dtype_is_float(k->acc_dtype) ? ir_dtype_kir(k->acc_dtype) : "u64",
                ir_dtype_kir(p->bufs[mm->a].dtype), ir_dtype_kir(p->bufs[mm->b].dtype));
    if (cgen_gemm_packed(p, k)) {
        cgen_gemm_sched sc = mm_sched(o, p, k);
        cgen_printf(b, "_%dx%d", sc.mr, sc.nr);
    }
}

/* The packed helpers, named per register block (one instance for each in
 * the source): the template's name and the suffixed one. */
static const char *const mm_helpers[] = {"kiln_mm_pack_a_f32", "kiln_mm_pack_bt_f32",
                                         "kiln_mm_pack_a_gather", "kiln_mm_panels"};
enum { MM_NHELPERS = 4, MM_NSUBST = 3 + MM_NHELPERS + 4 /* TT, TA, TB, the tile's name */ };

/* Substitutions for a packed template of schedule sc: KILN_MR, KILN_NR,
 * KILN_VL and the helpers' names; text holds the strings. */
typedef struct {
    char text[3 + MM_NHELPERS][48];
    const char *from[MM_NSUBST], *to[MM_NSUBST];
    int n;
} mm_subst;

static void mm_subst_init(mm_subst *m, const cgen_gemm_sched *sc)
{
    snprintf(m->text[0], sizeof m->text[0], "%d", sc->mr);
    snprintf(m->text[1], sizeof m->text[1], "%d", sc->nr);
    snprintf(m->text[2], sizeof m->text[2], "%d", sc->vl);
    const char *keys[3] = {"KILN_MR", "KILN_NR", "KILN_VL"};
    m->n = 0;
    for (int i = 0; i < 3; i++) {
        m->from[m->n] = keys[i];
        m->to[m->n++] = m->text[i];
    }
    for (int i = 0; i < MM_NHELPERS; i++) {
        snprintf(m->text[3 + i], sizeof m->text[3 + i], "%s_%dx%d", mm_helpers[i], sc->mr, sc->nr);
        m->from[m->n] = mm_helpers[i];
        m->to[m->n++] = m->text[3 + i];
    }
}

static bool mm_operands_ok(const kprogram *p, const kernel *k)
{
    return k->mm.a >= 0 && k->mm.a < p->nbufs && k->mm.b >= 0 && k->mm.b < p->nbufs;
}

/* A matmul kernel with a tile function to call: operands, a k and elements. */
static bool mm_renders(const kprogram *p, const kernel *k)
{
    return k->kind == KK_MATMUL && mm_operands_ok(p, k) && k->mm.k > 0 && !cgen_empty_domain(k);
}

bool cgen_gemm_packed(const kprogram *p, const kernel *k)
{
    if (k->kind != KK_MATMUL || !mm_operands_ok(p, k)) /* its operands before their layout */
        return false;
    mm_variant v = mm_variant_of(p, k);
    return v == MMV_PACKED || v == MMV_PGATHER;
}

/* The tile function of kernel k (see mm_variant), and for the packed one the
 * packing routines it calls, from gemm.inc's templates. */
static void render_mm_fn(cgen_buf *b, const kprogram *p, const kernel *k, const cgen_opts *o)
{
    static const char *const tmpl[] = {"kiln_mm_rows",   "kiln_mm_dot",    "kiln_mm_strided",
                                       "kiln_mm_packed", "kiln_mm_gather", "kiln_mm_pgather"};
    const kk_matmul *mm = &k->mm;
    bool fl = ir_dtype_is_float(k->acc_dtype);
    cgen_gemm_sched sc = mm_sched(o, p, k);
    mm_subst m;
    mm_subst_init(&m, &sc);
    cgen_buf name = {0};
    mm_fn_name(&name, p, k, o);
    mm_variant v = mm_variant_of(p, k);
    const char *from[] = {"TT", "TA", "TB", tmpl[v]};
    const char *to[] = {fl ? cgen_ctype(k->acc_dtype) : "uint64_t",
                        cgen_ctype(p->bufs[mm->a].dtype), cgen_ctype(p->bufs[mm->b].dtype),
                        name.s ? name.s : ""};
    for (int i = 0; i < 4; i++) {
        m.from[m.n] = from[i];
        m.to[m.n++] = to[i];
    }
    if (name.oom || !cgen_template(b, cgen_gemm_text, tmpl[v], m.n, m.from, m.to))
        b->oom = true;
    cgen_buf_free(&name);
}

/* The packed variants' shared routines (before the tile functions that call
 * them): the microkernel and the packing each uses, once per register block
 * in use. */
static void render_mm_shared(cgen_buf *b, const kprogram *p, const cgen_opts *o)
{
    for (int i = 0; i < p->nkernels; i++) {
        const kernel *k = &p->kernels[i];
        if (!mm_renders(p, k) || !cgen_gemm_packed(p, k))
            continue;
        cgen_gemm_sched sc = mm_sched(o, p, k);
        bool used[2] = {false, false}; /* packed, pgather */
        bool seen = false;             /* an earlier kernel's block */
        for (int j = 0; j < p->nkernels; j++) {
            const kernel *q = &p->kernels[j];
            if (!mm_renders(p, q) || !cgen_gemm_packed(p, q))
                continue;
            cgen_gemm_sched sq = mm_sched(o, p, q);
            if (sq.mr != sc.mr || sq.nr != sc.nr)
                continue;
            seen = seen || j < i;
            used[mm_variant_of(p, q) == MMV_PGATHER] = true;
        }
        if (seen)
            continue;
        mm_subst m;
        mm_subst_init(&m, &sc);
        const bool want[MM_NHELPERS] = {used[0], used[0], used[1], true};
        for (int h = 0; h < MM_NHELPERS; h++)
            if (want[h] && !cgen_template(b, cgen_gemm_text, mm_helpers[h], m.n, m.from, m.to))
                b->oom = true;
    }
}

void cgen_render_mm_fns(cgen_buf *b, const kprogram *p, const cgen_opts *o)
{
    render_mm_shared(b, p, o);
    for (int i = 0; i < p->nkernels; i++) {
        const kernel *k = &p->kernels[i];
        if (!mm_renders(p, k))
            continue;
        cgen_buf mine = {0}, other = {0};
        mm_fn_name(&mine, p, k, o);
        bool seen = false;
        for (int j = 0; j < i && !seen && !mine.oom; j++) {
            const kernel *q = &p->kernels[j];
            if (!mm_renders(p, q))
                continue;
            other.len = 0;
            mm_fn_name(&other, p, q, o);
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

/* One blocked axis of the GEMM driver: `v` runs over [0, n) in steps of
 * `step`. A single block needs no loop (v is 0 and folds away); lengths and
 * ends that are the same for every block are printed as constants. */
typedef struct {
    const char *v, *end; /* "ib"; the local holding a ragged block's end: "ie" */
    int64_t n, step;
} mm_axis;

static bool one_block(const mm_axis *a)
{
    return a->n <= a->step;
}

static bool ragged(const mm_axis *a)
{
    return !one_block(a) && a->n % a->step != 0;
}

/* Opens a's loop at indentation ind; false (nothing printed) for one block. */
static bool open_block(cgen_buf *b, const mm_axis *a, int ind)
{
    if (one_block(a))
        return false;
    cgen_indent(b, ind);
    cgen_printf(b, "for (int64_t %s = 0; %s < %lld; %s", a->v, a->v, (long long)a->n, a->v);
    if (a->step == 1)
        cgen_puts(b, "++) {\n");
    else
        cgen_printf(b, " += %lld) {\n", (long long)a->step);
    if (ragged(a)) {
        cgen_indent(b, ind + 1);
        cgen_printf(b, "const int64_t %s = %s + %lld < %lld ? %s + %lld : %lld;\n", a->end, a->v,
                    (long long)a->step, (long long)a->n, a->v, (long long)a->step, (long long)a->n);
    }
    return true;
}

static void block_start(cgen_buf *b, const mm_axis *a)
{
    cgen_puts(b, one_block(a) ? "0" : a->v);
}

static void block_end(cgen_buf *b, const mm_axis *a)
{
    if (one_block(a))
        cgen_printf(b, "%lld", (long long)a->n);
    else if (ragged(a))
        cgen_puts(b, a->end);
    else
        cgen_printf(b, "%s + %lld", a->v, (long long)a->step);
}

static void block_len(cgen_buf *b, const mm_axis *a)
{
    if (ragged(a))
        cgen_printf(b, "%s - %s", a->end, a->v);
    else
        cgen_printf(b, "%lld", (long long)(one_block(a) ? a->n : a->step));
}

/* "x - ib" or "x" when the block starts at 0 */
static void minus_start(cgen_buf *b, const char *x, const mm_axis *a)
{
    cgen_puts(b, x);
    if (!one_block(a))
        cgen_printf(b, " - %s", a->v);
}

/* ", " or, past column 76, ",\n" and a continuation line at ind + 1 */
static void arg_sep(cgen_buf *b, int ind)
{
    size_t col = b->len;
    while (col > 0 && b->s[col - 1] != '\n')
        col--;
    if (b->len - col <= 76) {
        cgen_puts(b, ", ");
        return;
    }
    cgen_puts(b, ",\n");
    cgen_indent(b, ind + 1);
}

/* "b0_x + i0 * 12 + ib * 4": an operand's block, for the blocks that move */
static void operand_at(cgen_buf *b, const kprogram *p, int buf, const mm_axis *const ax[2],
                       const int64_t strides[2])
{
    cgen_buf_name(b, p, buf);
    for (int i = 0; i < 2; i++) {
        if (strides[i] == 0 || one_block(ax[i]))
            continue;
        cgen_printf(b, " + %s", ax[i]->v);
        if (strides[i] != 1)
            cgen_printf(b, " * %lld", (long long)strides[i]);
    }
}

/* Packs A's row block (i0, ib) for the whole k range into apk. */
static void pack_a(kr *r, const mm_axis *bat, const mm_axis *ax, const mm_axis *kx, int64_t mpad,
                   int ind)
{
    cgen_buf *b = r->b;
    const kk_matmul *mm = &r->k->mm;
    const mm_axis *av[2] = {bat, ax};
    bool gather = kk_matmul_has_parts(mm); /* rows through the table, not the pointer */
    const int64_t as[2] = {mm->a_stride[0], gather ? 0 : mm->a_stride[1]};
    bool loop = open_block(b, kx, ind);
    cgen_indent(b, ind + loop);
    cgen_gemm_sched sc = mm_sched(&r->o, r->p, r->k);
    cgen_printf(b, "%s_%dx%d(apk", gather ? "kiln_mm_pack_a_gather" : "kiln_mm_pack_a_f32", sc.mr,
                sc.nr);
    if (loop)
        cgen_printf(b, " + %lld * kb", (long long)mpad);
    cgen_puts(b, ", ");
    block_len(b, ax);
    cgen_puts(b, ", ");
    block_start(b, kx);
    cgen_puts(b, ", ");
    block_end(b, kx);
    arg_sep(b, ind + loop);
    operand_at(b, r->p, mm->a, av, as);
    if (gather) {
        cgen_puts(b, ", ");
        block_start(b, ax);
        cgen_puts(b, ", &ai, &ak);\n");
    } else {
        cgen_printf(b, ", %lld, %lld);\n", (long long)mm->a_stride[1], (long long)mm->a_stride[2]);
    }
    if (loop)
        cgen_close_to(r, ind, ind - 1);
}

/* "static const kiln_parts bk = {3, {32, 3, 3}, {256, 16, 1}};": an operand
 * axis' parts, or its one plain part of len elements */
static void parts_decl(cgen_buf *b, const char *name, const kk_parts *pp, int64_t len,
                       int64_t stride)
{
    kk_parts one = {1, {len}, {stride}};
    const kk_parts *q = pp->n ? pp : &one;
    cgen_printf(b, "    static const kiln_parts %s = {%d, {", name, q->n);
    for (int i = 0; i < q->n; i++)
        cgen_printf(b, "%s%lld", i ? ", " : "", (long long)q->size[i]);
    cgen_puts(b, "}, {");
    for (int i = 0; i < q->n; i++)
        cgen_printf(b, "%s%lld", i ? ", " : "", (long long)q->stride[i]);
    cgen_puts(b, "}};\n");
}

/* ", b0 + i0 * 12 + ib * 4, 4, 1": an operand's arguments of a tile call, its
 * block and strides (st[1], st[2]), or with parts (moving: the axis whose
 * block start goes with the tables) its batch start, block start and tables */
static void operand_args(kr *r, int buf, const mm_axis *const ax[2], const int64_t at[2],
                         const int64_t st[3], const mm_axis *moving, const char *tables, int in)
{
    cgen_buf *b = r->b;
    arg_sep(b, in);
    operand_at(b, r->p, buf, ax, at);
    if (moving) {
        cgen_puts(b, ", ");
        block_start(b, moving);
        cgen_printf(b, ", %s", tables);
    } else {
        cgen_printf(b, ", %lld, %lld", (long long)st[1], (long long)st[2]);
    }
}

/* "kiln_mm_packed_f64_f32_f32(tile, ldt, ib..., k0, k1, A at its block, B
 * at its block[, apk]);": one call of the tile function on tile's block of
 * the k range [k0, k1) (apk: NULL for none; "" when the variant takes none) */
static void tile_call(kr *r, const char *tile, const mm_axis *bat, const mm_axis *ax,
                      const mm_axis *bx, int64_t ldt, const char *k0, const char *k1,
                      const char *apk, int in)
{
    cgen_buf *b = r->b;
    const kk_matmul *mm = &r->k->mm;
    const int64_t *sa = mm->a_stride, *sb = mm->b_stride;
    bool gather = kk_matmul_has_parts(mm); /* blocks move through the tables */
    const mm_axis *av[2] = {bat, ax}, *bv[2] = {bat, bx};
    const int64_t as[2] = {sa[0], gather ? 0 : sa[1]}, bs[2] = {sb[0], gather ? 0 : sb[2]};
    cgen_indent(b, in);
    mm_fn_name(b, r->p, r->k, &r->o);
    cgen_printf(b, "(%s, %lld, ", tile, (long long)ldt);
    block_len(b, ax);
    cgen_puts(b, ", ");
    block_len(b, bx);
    cgen_printf(b, ", %s, %s", k0, k1);
    operand_args(r, mm->a, av, as, sa, gather ? ax : NULL, "&ai, &ak", in);
    operand_args(r, mm->b, bv, bs, sb, gather ? bx : NULL, "&bk, &bj", in);
    if (apk && *apk) {
        arg_sep(b, in);
        cgen_puts(b, apk);
    }
    cgen_puts(b, ");\n");
}

/* Split-k for a GEMM of too few tiles to share (a weight gradient summed
 * over a batch folded into k): the k range in MM_SPLITK chunks of whole
 * k blocks, each chunk's sum into its own tile (threads share the chunks),
 * then the chunks added in order, so the result does not depend on the
 * thread count. Without the chunks' memory, the plain k loop. */
static void split_k(kr *r, const char *tt, int64_t mb, int64_t nb, const mm_axis *bat,
                    const mm_axis *ax, const mm_axis *bx, int64_t kb, int ind)
{
    cgen_buf *b = r->b;
    const kk_matmul *mm = &r->k->mm;
    int64_t blocks = (mm->k + kb - 1) / kb, chunks = blocks < MM_SPLITK ? blocks : MM_SPLITK;
    int64_t chunk = (blocks + chunks - 1) / chunks * kb; /* k per chunk */
    chunks = (mm->k + chunk - 1) / chunk;
    bool packed =
        mm_variant_of(r->p, r->k) >= MMV_PACKED && mm_variant_of(r->p, r->k) != MMV_GATHER;
    const char *apk = packed ? "NULL" : "";
    cgen_indent(b, ind);
    cgen_printf(b, "%s (*part)[%lld][%lld] = malloc(sizeof *part * %lld);\n", tt, (long long)mb,
                (long long)nb, (long long)chunks);
    cgen_indent(b, ind);
    cgen_puts(b, "if (part) {\n");
    cgen_indent(b, ind + 1);
    cgen_puts(b, "#pragma omp parallel for num_threads(kiln_threads(ctx)) schedule(static)\n");
    cgen_indent(b, ind + 1);
    cgen_printf(b, "for (int64_t c = 0; c < %lld; c++) {\n", (long long)chunks);
    cgen_indent(b, ind + 2);
    cgen_puts(b, "memset(part[c], 0, sizeof part[c]);\n");
    cgen_indent(b, ind + 2);
    cgen_printf(b, "const int64_t c1 = c * %lld + %lld < %lld ? c * %lld + %lld : %lld;\n",
                (long long)chunk, (long long)chunk, (long long)mm->k, (long long)chunk,
                (long long)chunk, (long long)mm->k);
    cgen_indent(b, ind + 2);
    cgen_printf(b, "for (int64_t kb = c * %lld; kb < c1; kb += %lld) {\n", (long long)chunk,
                (long long)kb);
    cgen_indent(b, ind + 3);
    cgen_printf(b, "const int64_t ke = kb + %lld < c1 ? kb + %lld : c1;\n", (long long)kb,
                (long long)kb);
    tile_call(r, "&part[c][0][0]", bat, ax, bx, nb, "kb", "ke", apk, ind + 3);
    cgen_indent(b, ind + 2);
    cgen_puts(b, "}\n");
    cgen_indent(b, ind + 1);
    cgen_puts(b, "}\n");
    cgen_indent(b, ind + 1);
    cgen_printf(b, "for (int64_t c = 0; c < %lld; c++)\n", (long long)chunks);
    cgen_indent(b, ind + 2);
    cgen_puts(b, "for (int64_t i = 0; i < ");
    block_len(b, ax);
    cgen_puts(b, "; i++)\n");
    cgen_indent(b, ind + 3);
    cgen_puts(b, "for (int64_t j = 0; j < ");
    block_len(b, bx);
    cgen_puts(b, "; j++)\n");
    cgen_indent(b, ind + 4);
    cgen_puts(b, "tile[i][j] += part[c][i][j];\n");
    cgen_indent(b, ind + 1);
    cgen_puts(b, "free(part);\n");
    cgen_indent(b, ind);
    cgen_puts(b, "} else {\n");
    cgen_indent(b, ind + 1);
    cgen_printf(b, "for (int64_t kb = 0; kb < %lld; kb += %lld) {\n", (long long)mm->k,
                (long long)kb);
    cgen_indent(b, ind + 2);
    cgen_printf(b, "const int64_t ke = kb + %lld < %lld ? kb + %lld : %lld;\n", (long long)kb,
                (long long)mm->k, (long long)kb, (long long)mm->k);
    tile_call(r, "&tile[0][0]", bat, ax, bx, nb, "kb", "ke", apk, ind + 2);
    cgen_indent(b, ind + 1);
    cgen_puts(b, "}\n");
    cgen_indent(b, ind);
    cgen_puts(b, "}\n");
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
    mm_variant variant = mm_variant_of(r->p, k);
    bool packed = variant == MMV_PACKED || variant == MMV_PGATHER;
    cgen_gemm_sched sc = mm_sched(&r->o, r->p, k);
    /* fewer than two row blocks of MB: half-height ones, one per thread */
    int64_t bm = packed ? (mm->m >= 2 * sc.mb ? sc.mb : sc.mb / 2) : MM_MB;
    int64_t bn = packed ? sc.nb : MM_NB, bk = packed ? sc.kb : MM_KB;
    int64_t mb = mm->m < bm ? mm->m : bm, nb = mm->n < bn ? mm->n : bn;
    int64_t kb = mm->k < bk ? mm->k : bk;
    const int64_t *sa = mm->a_stride, *sb = mm->b_stride;
    /* threads split tiles: one tile alone would only pay the team's start */
    int64_t tiles =
        mm->batch * ((mm->m + mb - 1) / (mb ? mb : 1)) * ((mm->n + nb - 1) / (nb ? nb : 1));
    bool work = r->o.openmp && !cgen_serial(k) &&
                mm->batch * mm->m * mm->n * (mm->k ? mm->k : 1) >= PAR_WORK;
    /* too few tiles for the threads and many k blocks: the threads split k */
    bool splitk = work && tiles < MM_SPLITK_TILES && mm->k >= MM_SPLITK_TILES * bk;
    bool par = work && tiles >= 2 && !splitk;
    const mm_axis bat = {"i0", "", mm->batch, 1}, ax = {"ib", "ie", mm->m, mb ? mb : 1},
                  bx = {"jb", "je", mm->n, nb ? nb : 1}, kx = {"kb", "ke", mm->k, kb ? kb : 1};
    int loops = !one_block(&bat) + !one_block(&ax) + !one_block(&bx);
    bool need_i0 = false; /* the epilogue reads the batch index */
    for (int i = 0; i < k->nx; i++)
        need_i0 = need_i0 || (r->need[i] && k->x[i].kind == KX_VAR && k->x[i].var == 0);
    if (need_i0 && one_block(&bat))
        cgen_puts(b, "    const int64_t i0 = 0;\n");
    bool gather = kk_matmul_has_parts(mm);
    if (gather && mm->k > 0) {
        parts_decl(b, "ai", &mm->a_parts[0], mm->m, sa[1]);
        parts_decl(b, "ak", &mm->a_parts[1], mm->k, sa[2]);
        parts_decl(b, "bk", &mm->b_parts[0], mm->k, sb[1]);
        parts_decl(b, "bj", &mm->b_parts[1], mm->n, sb[2]);
    }
    cgen_emit_at(r, 0, false, 1);
    /* The packed path packs A's row block for the whole k range once per
     * thread and row block (consecutive tiles of a thread share ib), not once
     * per tile: mpad x K floats on the thread's stack, or its heap when big
     * (malloc failing falls back to packing per tile). */
    int64_t mpad = (mb + sc.mr - 1) / sc.mr * sc.mr, apk_bytes = mpad * mm->k * 4;
    bool apk = packed && mm->k > 0 && apk_bytes <= MM_APK_MAX && !splitk;
    bool apk_heap = apk_bytes > MM_APK_STACK;
    int ind = 1;
    if (apk) {
        if (par) /* a packed block per thread */
            cgen_puts(b, "    #pragma omp parallel num_threads(kiln_threads(ctx))\n    {\n");
        ind = par ? 2 : 1;
        cgen_indent(b, ind);
        if (apk_heap)
            cgen_printf(b, "float *apk = malloc(%lld);\n", (long long)apk_bytes);
        else
            cgen_printf(b, "float apk_buf[%lld];\n", (long long)(mpad * mm->k + 16));
        if (!apk_heap) {
            cgen_indent(b, ind);
            cgen_puts(b, "float *apk = (float *)(((uintptr_t)apk_buf + 63) & ~(uintptr_t)63);\n");
        }
        if (par) {
            cgen_indent(b, ind);
            cgen_puts(b, "int64_t apk_at = -1; /* the (i0, ib) packed in apk */\n");
            cgen_indent(b, ind);
            cgen_puts(b, "#pragma omp for");
            if (loops > 1)
                cgen_printf(b, " collapse(%d)", loops);
            cgen_puts(b, " schedule(static)\n");
        }
    } else if (par) {
        cgen_pragma_for(r, 1, loops, "");
    }
    int ind0 = ind;
    ind += open_block(b, &bat, ind);
    ind += open_block(b, &ax, ind);
    /* one thread runs the tiles of a row block in turn: pack A there */
    if (apk && !par) {
        if (apk_heap) {
            cgen_indent(b, ind);
            cgen_puts(b, "if (apk)\n");
        }
        pack_a(r, &bat, &ax, &kx, mpad, ind + apk_heap);
    }
    ind += open_block(b, &bx, ind);
    cgen_indent(b, ind);
    cgen_printf(b, "%s tile[%lld][%lld];\n", tt, (long long)mb, (long long)nb);
    cgen_indent(b, ind);
    cgen_puts(b, "memset(tile, 0, sizeof tile);\n");
    if (mm->k > 0) {
        if (apk && par) {
            cgen_indent(b, ind);
            cgen_printf(b, "if (%sapk_at != ", apk_heap ? "apk && " : "");
            if (!one_block(&bat) && sa[0]) /* a broadcast A packs once for all batches */
                cgen_printf(b, "i0 * %lld + ", (long long)mm->m);
            block_start(b, &ax);
            cgen_puts(b, ") {\n");
            pack_a(r, &bat, &ax, &kx, mpad, ind + 1);
            cgen_indent(b, ind + 1);
            cgen_puts(b, "apk_at = ");
            if (!one_block(&bat) && sa[0])
                cgen_printf(b, "i0 * %lld + ", (long long)mm->m);
            block_start(b, &ax);
            cgen_puts(b, ";\n");
            cgen_indent(b, ind);
            cgen_puts(b, "}\n");
        }
        if (splitk) {
            split_k(r, tt, mb, nb, &bat, &ax, &bx, kb, ind);
        } else {
            bool kloop = open_block(b, &kx, ind);
            cgen_buf k0 = {0}, k1 = {0}, ap = {0};
            block_start(&k0, &kx);
            block_end(&k1, &kx);
            if (apk) {
                cgen_puts(&ap, apk_heap ? "apk ? apk" : "apk");
                if (kloop)
                    cgen_printf(&ap, " + %lld * kb", (long long)mpad);
                cgen_puts(&ap, apk_heap ? " : NULL" : "");
            } else if (packed) {
                cgen_puts(&ap, "NULL");
            }
            if (k0.oom || k1.oom || ap.oom)
                b->oom = true;
            else
                tile_call(r, "&tile[0][0]", &bat, &ax, &bx, nb, k0.s, k1.s, ap.s ? ap.s : "",
                          ind + kloop);
            cgen_buf_free(&k0);
            cgen_buf_free(&k1);
            cgen_buf_free(&ap);
            if (kloop)
                cgen_close_to(r, ind, ind - 1);
        }
    }
    /* the epilogue: KX_ACC is the finished sum of (i0, i1, i2) */
    cgen_indent(b, ind);
    cgen_puts(b, "for (int64_t i1 = ");
    block_start(b, &ax);
    cgen_puts(b, "; i1 < ");
    block_end(b, &ax);
    cgen_puts(b, "; i1++) {\n");
    cgen_emit_at(r, 1, false, ind + 1);
    cgen_indent(b, ind + 1);
    cgen_puts(b, "for (int64_t i2 = ");
    block_start(b, &bx);
    cgen_puts(b, "; i2 < ");
    block_end(b, &bx);
    cgen_puts(b, "; i2++) {\n");
    cgen_indent(b, ind + 2);
    cgen_printf(b, "const %s acc = ", cgen_ctype(k->acc_dtype));
    if (!fl)
        cgen_printf(b, "(%s)", cgen_ctype(k->acc_dtype));
    cgen_puts(b, "tile[");
    minus_start(b, "i1", &ax);
    cgen_puts(b, "][");
    minus_start(b, "i2", &bx);
    cgen_puts(b, "];\n");
    r->e.acc = "acc";
    cgen_emit_at(r, 2, false, ind + 2);
    cgen_emit_leftovers(r, ind + 2);
    cgen_emit_stores(r, ind + 2);
    cgen_close_to(r, ind + 1, ind0 - 1);
    if (apk && apk_heap) {
        cgen_indent(b, ind0);
        cgen_puts(b, "free(apk);\n");
    }
    if (apk && par)
        cgen_puts(b, "    }\n");
}
