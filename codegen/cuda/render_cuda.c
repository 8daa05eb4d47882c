/*
 * render_cuda.c - the CUDA renderer: a kernel-IR program as CUDA C for NVRTC.
 *
 * The kernels, their names and header comments are the C renderer's (same
 * kernel IR, same expression table cgen_c_lang, same helpers: Philox is
 * bit-identical); what differs is the loop structure, printed as
 * `extern "C" __global__` functions:
 *   POINTWISE  a grid-stride loop over the flattened domain, one element
 *              per thread and step;
 *   REDUCE     SUM: one warp per output element, the lanes stride over the
 *              reduced domain and combine with warp shuffles; MAX, MIN and
 *              the arg ops (first extremum wins, NaN beats everything): one
 *              thread per output, the reduced domain in order; a row kernel
 *              (phases, element stores): a warp per row, every phase's
 *              lanes striding over the row;
 *   MATMUL     (where no library GEMM runs it) a block per 64 x 64 tile of
 *              the product, A's and B's blocks staged in shared memory, each
 *              thread 4 x 4 outputs, K summed in order in the accumulator's
 *              dtype, the fused epilogue applied on store;
 * accumulating stores (scatter_add) use atomicAdd. Every kernel takes the
 * device-side kiln_ctx (seed, run counter, the first error) and then its
 * buffers, constants included (the executor uploads them). The host side (launching kernels in
 * schedule order, the arena, cuBLASLt for big matmuls) belongs to the CUDA executor.
 */
#include "codegen/c/cgen.h"
#include "codegen/cuda/cuda.h"
#include "ir/abi.h"

#include <stdint.h>
#include <string.h>

/* A warp per output of a SUM; the launch gives blocks of KILN_CUDA_BLOCK threads. */
enum { WARP = 32 };

/* Per kernel: which nodes a store or the reduce body needs, what each one
 * depends on (loop variables as a bit mask, the accumulator), and which
 * buffers it reads and writes. */
typedef struct {
    const kprogram *p;
    const kernel *k;
    cgen_buf *b;
    cgen_lang lang; /* C's expression table, the device's f32 math */
    cgen_ectx e;
    bool *need, *plain, *post, *red;
    unsigned char *use;               /* per buffer: 1 read, 2 written */
    bool vars[2 * KILN_MAX_RANK + 3]; /* the loop variables the code reads */
    bool rng4;                        /* render_pointwise_rng: random nodes read rng<i>[u] */
} cr;

static void cr_free(cr *r)
{
    ir_free(r->need);
    ir_free(r->plain);
    ir_free(r->post);
    ir_free(r->red);
    ir_free(r->use);
}

static void mark(cr *r, int i)
{
    if (i < 0 || i >= r->k->nx || r->need[i])
        return;
    r->need[i] = true;
    int ops[3];
    int n = cgen_operands(&r->k->x[i], ops);
    for (int j = 0; j < n; j++)
        mark(r, ops[j]);
}

/* epi: the epilogue of a MATMUL (render_epilogue), which reads the product
 * from a buffer instead of its operands. */
static bool cr_init(cr *r, cgen_buf *b, const kprogram *p, const kernel *k, bool epi)
{
    memset(r, 0, sizeof *r);
    r->p = p;
    r->k = k;
    r->b = b;
    size_t nx = (size_t)(k->nx ? k->nx : 1);
    r->need = ir_calloc(nx);
    r->post = ir_calloc(nx);
    r->red = ir_calloc(nx);
    r->use = ir_calloc((size_t)(p->nbufs ? p->nbufs : 1));
    r->plain = cgen_plain_nodes(k);
    if (!r->need || !r->post || !r->red || !r->use || !r->plain)
        return false;
    r->lang = cgen_c_lang;
    r->lang.vprefix = ""; /* the device's expf, logf, tanhf, erff */
    r->e = (cgen_ectx){.lang = &r->lang, .k = k, .plain = r->plain, .acc = "acc"};
    for (int i = 0; i < k->nstores; i++) {
        mark(r, k->stores[i].index);
        mark(r, k->stores[i].value);
        if (k->stores[i].buf >= 0 && k->stores[i].buf < p->nbufs)
            r->use[k->stores[i].buf] |= 2;
    }
    for (int q = 0; k->kind == KK_REDUCE && q <= k->npre; q++)
        mark(r, kk_phase_at(k, q).body);
    for (int i = 0; i < k->nx; i++) /* a bounds check is needed for its error alone */
        if (k->x[i].kind == KX_CHECK)
            mark(r, i);
    if ((k->kind == KK_MATMUL || k->kind == KK_ATTENTION) && !epi) {
        int ops[KK_MAX_OPERANDS], n = kk_operand_bufs(k, ops);
        for (int i = 0; i < n; i++)
            r->use[ops[i]] |= 1;
        r->vars[0] = r->vars[1] = r->vars[2] = true; /* the operands' offsets */
    }
    if (k->kind == KK_REDUCE && (k->rop == IR_ARGMAX || k->rop == IR_ARGMIN))
        for (int j = 0; j < k->rrank; j++) /* the flat index of the extremum */
            r->vars[k->rank + j] = k->rdims[j] != 1;
    for (int i = 0; i < k->nx; i++) {
        const kx_node *n = &k->x[i];
        int ops[3], m = cgen_operands(n, ops);
        r->post[i] = n->kind == KX_ACC;
        r->red[i] = n->kind == KX_VAR && n->var >= k->rank;
        for (int j = 0; j < m; j++) {
            r->post[i] = r->post[i] || r->post[ops[j]];
            r->red[i] = r->red[i] || r->red[ops[j]];
        }
        if (r->need[i] && n->kind == KX_LOAD && n->buf >= 0 && n->buf < p->nbufs)
            r->use[n->buf] |= 1;
        if (r->need[i] && n->kind == KX_VAR && n->var >= 0 && n->var < 2 * KILN_MAX_RANK + 3)
            r->vars[n->var] = true;
    }
    return true;
}

/* Declares the needed nodes selected by want (post: reads the accumulator;
 * red: varies over the reduced loops). */
static bool is_rng(const kx_node *n)
{
    return n->kind == KX_RAND || n->kind == KX_RANDN;
}

static void emit_nodes(cr *r, int ind, bool post, bool red)
{
    for (int i = 0; i < r->k->nx; i++)
        if (r->need[i] && !cgen_inline(&r->k->x[i]) && r->post[i] == post && r->red[i] == red) {
            cgen_indent(r->b, ind);
            if (r->rng4 && is_rng(&r->k->x[i]))
                cgen_printf(r->b, "const float v%d = rng%d[u];", i, i);
            else
                cgen_decl(r->b, &r->e, i);
            cgen_puts(r->b, "\n");
        }
}

static void emit_stores(cr *r, int ind)
{
    for (int i = 0; i < r->k->nstores; i++)
        cgen_store(r->b, &r->e, r->p, &r->k->stores[i], ind, true);
}

/* const int64_t i<first..first+n-1> from the flat index `flat` (row-major),
 * for the variables the kernel reads (r->vars). */
static void unflatten(cr *r, int ind, const char *flat, int first, int n, const int64_t *dims)
{
    bool any = false;
    for (int d = 0; d < n; d++)
        any = any || r->vars[first + d];
    if (!any)
        return;
    /* 64-bit division is a long software sequence on a GPU: under 2^32
     * elements the divisions are 32-bit */
    bool narrow = ir_shape_numel(n, dims) <= (int64_t)UINT32_MAX;
    const char *u = narrow ? "u" : "";
    cgen_indent(r->b, ind);
    if (narrow)
        cgen_printf(r->b, "uint32_t rest = (uint32_t)%s;\n", flat);
    else
        cgen_printf(r->b, "int64_t rest = %s;\n", flat);
    for (int d = n - 1; d >= 0; d--) {
        bool later = false; /* a variable before this one is still to come */
        for (int e = 0; e < d; e++)
            later = later || r->vars[first + e];
        if (r->vars[first + d]) {
            cgen_indent(r->b, ind);
            if (d == 0)
                cgen_printf(r->b, "const int64_t i%d = rest;\n", first);
            else
                cgen_printf(r->b, "const int64_t i%d = rest %% %lld%s;\n", first + d,
                            (long long)dims[d], u);
        }
        if (later) {
            cgen_indent(r->b, ind);
            cgen_printf(r->b, "rest /= %lld%s;\n", (long long)dims[d], u);
        }
    }
}

/* for (t = this thread's (or warp's, per = 32) first element; t < n; t += all of them) */
static void grid_loop(cgen_buf *b, int64_t n, int per)
{
    const char *div = per == 1 ? "" : " / 32";
    cgen_printf(b,
                "    const int64_t n = %lld, step = (int64_t)gridDim.x * blockDim.x%s;\n"
                "    for (int64_t t = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x)%s; t < n; "
                "t += step) {\n",
                (long long)n, div, div);
}

/* Four elements a trip, each a block of its own: nothing orders one element's
 * loads after another's stores (the buffers are __restrict__), so the four
 * loads are in flight together, which a memory-bound kernel needs to come
 * near the copy bandwidth; then the rest one at a time. The launch gives a
 * thread per four elements (cgen_cuda_launch). */
/* Whether a pointwise kernel's random draws can come four at a time: every
 * one is f32 (rand or randn) of the element the kernel computes (its index is
 * the domain's row-major flat index), so the four elements of a Philox block
 * are one thread's. */
static bool rng_blocked(const cr *r)
{
    const kernel *k = r->k;
    int64_t numel = ir_shape_numel(k->rank, k->dims), coef[KILN_MAX_RANK], c0 = 0;
    bool any = false;
    for (int i = 0; i < k->nx; i++) {
        const kx_node *n = &k->x[i];
        if (!r->need[i] || !is_rng(n))
            continue;
        if (n->dtype != KILN_F32 || !kk_affine(k, n->a[0], k->rank, coef, &c0) || c0 != 0)
            return false;
        for (int d = k->rank - 1, stride = 1; d >= 0; stride *= (int)k->dims[d], d--)
            if (coef[d] != stride && k->dims[d] != 1)
                return false;
        any = true;
    }
    return any && numel >= 4 && numel <= INT32_MAX;
}

/* A pointwise kernel whose random draws are rng_blocked: a thread per block of
 * four elements (kiln_rand4_f32, kiln_randn4_f32: one Philox block for all
 * four, and one Box-Muller pair per two), then the rest an element a thread. */
static void render_pointwise_rng(cr *r)
{
    const kernel *k = r->k;
    int64_t numel = ir_shape_numel(k->rank, k->dims);
    cgen_printf(r->b,
                "    const int64_t n = %lld, blocks = n / 4, step = (int64_t)gridDim.x * "
                "blockDim.x;\n"
                "    for (int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; b < blocks; "
                "b += step) {\n",
                (long long)numel);
    for (int i = 0; i < k->nx; i++)
        if (r->need[i] && is_rng(&k->x[i]))
            cgen_printf(r->b,
                        "        float rng%d[4];\n"
                        "        kiln_rand%s4_f32(ctx->seed, %uu, ctx->run, (uint64_t)b, rng%d);\n",
                        i, k->x[i].kind == KX_RANDN ? "n" : "", (unsigned)k->x[i].stream, i);
    cgen_puts(r->b, "#pragma unroll\n        for (int u = 0; u < 4; u++) {\n"
                    "            const int64_t te = 4 * b + u;\n");
    r->rng4 = true;
    unflatten(r, 3, "te", 0, k->rank, k->dims);
    emit_nodes(r, 3, false, false);
    emit_stores(r, 3);
    r->rng4 = false;
    cgen_puts(r->b, "        }\n    }\n"
                    "    for (int64_t t = 4 * blocks + (int64_t)blockIdx.x * blockDim.x + "
                    "threadIdx.x; t < n; t += step) {\n");
    unflatten(r, 2, "t", 0, k->rank, k->dims);
    emit_nodes(r, 2, false, false);
    emit_stores(r, 2);
    cgen_puts(r->b, "    }\n");
}

static void render_pointwise(cr *r)
{
    const kernel *k = r->k;
    if (rng_blocked(r)) {
        render_pointwise_rng(r);
        return;
    }
    cgen_printf(r->b,
                "    const int64_t n = %lld, step = (int64_t)gridDim.x * blockDim.x;\n"
                "    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;\n"
                "    for (; t + 3 * step < n; t += 4 * step) {\n"
                "#pragma unroll\n"
                "        for (int u = 0; u < 4; u++) {\n",
                (long long)ir_shape_numel(k->rank, k->dims));
    bool any = false; /* a loop variable is read (else nothing needs the index) */
    for (int d = 0; d < k->rank; d++)
        any = any || r->vars[d];
    cgen_puts(r->b, any ? "            const int64_t te = t + u * step;\n"
                        : "            (void)u; /* every element alike */\n");
    unflatten(r, 3, "te", 0, k->rank, k->dims);
    emit_nodes(r, 3, false, false);
    emit_stores(r, 3);
    cgen_puts(r->b, "        }\n    }\n    for (; t < n; t += step) {\n");
    unflatten(r, 2, "t", 0, k->rank, k->dims);
    emit_nodes(r, 2, false, false);
    emit_stores(r, 2);
    cgen_puts(r->b, "    }\n");
}

/* The accumulator's declaration (and best's for the arg ops), as the C renderer. */
static void reduce_decl(cr *r, int ind)
{
    const kernel *k = r->k;
    cgen_buf *b = r->b;
    bool isum = k->rop == IR_SUM && !ir_dtype_is_float(k->acc_dtype);
    bool arg = k->rop == IR_ARGMAX || k->rop == IR_ARGMIN;
    cgen_indent(b, ind);
    if (isum) {
        cgen_puts(b, "uint64_t acc = 0;\n");
        r->e.acc = k->acc_dtype == KILN_I64   ? "(int64_t)acc"
                   : k->acc_dtype == KILN_I32 ? "(int32_t)acc"
                                              : "(acc != 0)";
    } else {
        cgen_printf(b, "%s acc = ", cgen_ctype(k->acc_dtype));
        if (k->rop == IR_SUM || arg)
            cgen_puts(b, "0");
        else
            cgen_reduce_init(b, k->rop, k->acc_dtype);
        cgen_puts(b, ";\n");
    }
    if (arg) {
        cgen_indent(b, ind);
        cgen_printf(b, "%s best = ", cgen_ctype(k->x[k->body].dtype));
        cgen_reduce_init(b, k->rop, k->x[k->body].dtype);
        cgen_puts(b, ";\n");
    }
}

static void render_reduce(cr *r)
{
    const kernel *k = r->k;
    cgen_buf *b = r->b;
    int64_t red = ir_shape_numel(k->rrank, k->rdims);
    bool warp = k->rop == IR_SUM;
    grid_loop(b, ir_shape_numel(k->rank, k->dims), warp ? WARP : 1);
    unflatten(r, 2, "t", 0, k->rank, k->dims);
    emit_nodes(r, 2, false, false);
    reduce_decl(r, 2);
    if (red > 0) { /* else the accumulator keeps its initial value */
        cgen_printf(b, "        for (int64_t q = %s; q < %lld; q += %d) {\n",
                    warp ? "threadIdx.x % 32" : "0", (long long)red, warp ? WARP : 1);
        unflatten(r, 3, "q", k->rank, k->rrank, k->rdims);
        emit_nodes(r, 3, false, true);
        cgen_reduce_combine(b, &r->e, 3);
        cgen_puts(b, "        }\n");
    }
    if (warp) { /* lane 0 ends with the warp's sum; the order is a tree (DESIGN: sums reassociate)
                 */
        const char *t = ir_dtype_is_float(k->acc_dtype) ? cgen_ctype(k->acc_dtype) : "uint64_t";
        cgen_printf(b,
                    "        for (int o = 16; o > 0; o /= 2)\n"
                    "            acc += (%s)__shfl_down_sync(0xffffffffu, acc, o);\n"
                    "        if (threadIdx.x %% 32 != 0)\n"
                    "            continue;\n",
                    t);
    }
    emit_nodes(r, 2, true, false);
    emit_stores(r, 2);
    cgen_puts(b, "    }\n");
}

/* Declares the nodes of section `in` (cgen_row_section) not yet declared
 * that vary over the reduced loops (red) or not. */
static void emit_section(cr *r, const bool *in, bool *done, bool red, int ind)
{
    for (int i = 0; i < r->k->nx; i++)
        if (in[i] && r->need[i] && !done[i] && r->red[i] == red) {
            done[i] = true;
            if (cgen_inline(&r->k->x[i]))
                continue;
            cgen_indent(r->b, ind);
            cgen_decl(r->b, &r->e, i);
            cgen_puts(r->b, "\n");
        }
}

/* A row kernel (a REDUCE with earlier phases or element stores): a warp per
 * row. Each phase's lanes stride over the row and combine with butterfly
 * shuffles, so every lane ends with the row's value (the order is a tree:
 * sums reassociate, and max/min are exact); then lane 0 stores the row's
 * values and every lane its share of the row's elements. */
static void render_rows(cr *r)
{
    const kernel *k = r->k;
    cgen_buf *b = r->b;
    int64_t red = ir_shape_numel(k->rrank, k->rdims);
    bool *in = ir_calloc(2 * ((size_t)k->nx + 1)), *done = ir_calloc((size_t)k->nx + 1);
    if (!in || !done) {
        b->oom = true;
        ir_free(in);
        ir_free(done);
        return;
    }
    grid_loop(b, ir_shape_numel(k->rank, k->dims), WARP);
    unflatten(r, 2, "t", 0, k->rank, k->dims);
    for (int q = 0; q <= k->npre; q++) {
        kk_phase ph = kk_phase_at(k, q);
        const char *t = cgen_ctype(ph.acc_dtype);
        char acc[16];
        snprintf(acc, sizeof acc, q < k->npre ? "acc%d" : "acc", q + 1);
        cgen_row_section(k, q, in);
        emit_section(r, in, done, false, 2);
        cgen_printf(b, "        %s %s = ", t, acc);
        if (ph.rop == IR_SUM)
            cgen_puts(b, "0");
        else
            cgen_reduce_init(b, ph.rop, ph.acc_dtype);
        cgen_printf(b, ";\n        for (int64_t q = threadIdx.x %% 32; q < %lld; q += 32) {\n",
                    (long long)red);
        unflatten(r, 3, "q", k->rank, k->rrank, k->rdims);
        emit_section(r, in, done, true, 3);
        cgen_buf v = {0};
        cgen_node_as(&v, &r->e, ph.body, ph.acc_dtype);
        cgen_combine_float(b, ph.rop, acc, v.s ? v.s : "0", 3);
        b->oom = b->oom || v.oom;
        cgen_buf_free(&v);
        cgen_printf(b,
                    "        }\n        for (int o = 16; o > 0; o /= 2) {\n"
                    "            const %s w = __shfl_xor_sync(0xffffffffu, %s, o);\n",
                    t, acc);
        cgen_combine_float(b, ph.rop, acc, "w", 3);
        /* lane 0's value for all: lanes may differ where max meets -0 and +0 */
        cgen_printf(b, "        }\n        %s = __shfl_sync(0xffffffffu, %s, 0);\n", acc, acc);
        for (int i = 0; i < k->nx; i++) /* out of scope with the loop */
            done[i] = done[i] && !r->red[i];
    }
    cgen_row_section(k, k->npre + 1, in);
    emit_section(r, in, done, false, 2);
    cgen_puts(b, "        if (threadIdx.x % 32 == 0) {\n");
    for (int i = 0; i < k->nstores; i++)
        if (!k->stores[i].element)
            cgen_store(b, &r->e, r->p, &k->stores[i], 3, true);
    cgen_puts(b, "        }\n");
    if (kk_has_element_stores(k)) {
        cgen_row_section(k, k->npre + 2, in);
        emit_section(r, in, done, false, 2);
        cgen_printf(b, "        for (int64_t q = threadIdx.x %% 32; q < %lld; q += 32) {\n",
                    (long long)red);
        unflatten(r, 3, "q", k->rank, k->rrank, k->rdims);
        emit_section(r, in, done, true, 3);
        for (int i = 0; i < k->nstores; i++)
            if (k->stores[i].element)
                cgen_store(b, &r->e, r->p, &k->stores[i], 3, true);
        cgen_puts(b, "        }\n");
    }
    cgen_puts(b, "    }\n");
    ir_free(in);
    ir_free(done);
}

/* "i1 * 12", or for an axis with parts "(p / 9 % 32) * 256 + (p / 3 % 3) * 16 + (p % 3) * 1" */
static void axis_at(cgen_buf *b, const char *v, const kk_parts *pp, int64_t stride)
{
    if (!pp->n) {
        cgen_printf(b, "%s * %lld", v, (long long)stride);
        return;
    }
    int64_t inner = 1;
    for (int j = pp->n - 1; j >= 0; j--)
        inner *= pp->size[j];
    for (int j = 0; j < pp->n; j++) {
        inner /= pp->size[j];
        cgen_printf(b, "%s(%s", j ? " + " : "", v);
        if (inner > 1)
            cgen_printf(b, " / %lld", (long long)inner);
        if (j > 0)
            cgen_printf(b, " %% %lld", (long long)pp->size[j]);
        cgen_printf(b, ") * %lld", (long long)pp->stride[j]);
    }
}

/* A MATMUL where no library GEMM runs it (no cuBLAS, an integer product,
 * operands with parts): a block of KILN_CUDA_BLOCK threads per TILE x TILE
 * tile of the product (a grid-stride loop over batch x row tiles x column
 * tiles). Per step of TK along k the block stages A's TILE x TK and B's
 * TK x TILE blocks in shared memory, converted to the accumulator's type,
 * and each thread adds into its MICRO x MICRO outputs, rows and columns
 * TILE / MICRO apart (neighbouring threads: neighbouring columns). k is
 * summed in order, as a thread per output would: the same bits (nothing is
 * added past k). Then each output's epilogue and stores. */
enum { TILE = 64, TK = 16, MICRO = 4, TSTEP = TILE / MICRO };
_Static_assert(TSTEP *TSTEP == KILN_CUDA_BLOCK, "a thread per TSTEP x TSTEP position");

static void render_matmul(cr *r)
{
    const kernel *k = r->k;
    const kk_matmul *mm = &k->mm;
    cgen_buf *b = r->b;
    bool fl = ir_dtype_is_float(k->acc_dtype);
    const char *tt = fl ? cgen_ctype(k->acc_dtype) : "uint64_t";
    long long tm = (long long)((mm->m + TILE - 1) / TILE),
              tn = (long long)((mm->n + TILE - 1) / TILE);
    cgen_printf(b,
                "    __shared__ %s as[%d][%d], bs[%d][%d];\n"
                "    const int tx = threadIdx.x %% %d, ty = threadIdx.x / %d;\n"
                "    for (int64_t t = blockIdx.x; t < %lld; t += gridDim.x) {\n"
                "        const int64_t i0 = t / %lld, r0 = t / %lld %% %lld * %d, "
                "c0 = t %% %lld * %d;\n"
                "        %s sum[%d][%d];\n"
                "        for (int u = 0; u < %d; u++)\n"
                "            for (int v = 0; v < %d; v++)\n"
                "                sum[u][v] = 0;\n"
                "        for (int64_t p0 = 0; p0 < %lld; p0 += %d) {\n",
                tt, TK, TILE + 1, TK, TILE, TSTEP, TSTEP, (long long)mm->batch * tm * tn, tm * tn,
                tn, tm, TILE, tn, TILE, tt, MICRO, MICRO, MICRO, MICRO, (long long)mm->k, TK);
    /* A's rows r0.. and B's columns c0.., zero past the edges */
    cgen_printf(b,
                "            for (int l = threadIdx.x; l < %d; l += blockDim.x) {\n"
                "                const int q = l %% %d, w = l / %d;\n"
                "                const int64_t i1 = r0 + w, p = p0 + q;\n"
                "                as[q][w] = i1 < %lld && p < %lld ? (%s)b%d[i0 * %lld + ",
                TILE * TK, TK, TK, (long long)mm->m, (long long)mm->k, tt, mm->a,
                (long long)mm->a_stride[0]);
    axis_at(b, "i1", &mm->a_parts[0], mm->a_stride[1]);
    cgen_puts(b, " + ");
    axis_at(b, "p", &mm->a_parts[1], mm->a_stride[2]);
    cgen_printf(
        b,
        "] : 0;\n"
        "                const int64_t i2 = c0 + l %% %d, pb = p0 + l / %d;\n"
        "                bs[l / %d][l %% %d] = pb < %lld && i2 < %lld ? (%s)b%d[i0 * %lld + ",
        TILE, TILE, TILE, TILE, (long long)mm->k, (long long)mm->n, tt, mm->b,
        (long long)mm->b_stride[0]);
    axis_at(b, "pb", &mm->b_parts[0], mm->b_stride[1]);
    cgen_puts(b, " + ");
    axis_at(b, "i2", &mm->b_parts[1], mm->b_stride[2]);
    cgen_printf(
        b,
        "] : 0;\n"
        "            }\n"
        "            __syncthreads();\n"
        "            const int qn = %lld - p0 < %d ? (int)(%lld - p0) : %d;\n"
        "            for (int q = 0; q < qn; q++) /* no 0 * 0 past k: a -0 sum stays -0 */\n"
        "#pragma unroll\n"
        "                for (int u = 0; u < %d; u++)\n"
        "#pragma unroll\n"
        "                    for (int v = 0; v < %d; v++)\n"
        "                        sum[u][v] += as[q][ty + u * %d] * bs[q][tx + v * %d];\n"
        "            __syncthreads();\n"
        "        }\n"
        "        for (int u = 0; u < %d; u++)\n"
        "            for (int v = 0; v < %d; v++) {\n"
        "                const int64_t i1 = r0 + ty + u * %d, i2 = c0 + tx + v * %d;\n"
        "                if (i1 >= %lld || i2 >= %lld)\n"
        "                    continue;\n"
        "                const %s acc = (%s)sum[u][v];\n",
        (long long)mm->k, TK, (long long)mm->k, TK, MICRO, MICRO, TSTEP, TSTEP, MICRO, MICRO, TSTEP,
        TSTEP, (long long)mm->m, (long long)mm->n, cgen_ctype(k->acc_dtype),
        cgen_ctype(k->acc_dtype));
    emit_nodes(r, 4, false, false);
    emit_nodes(r, 4, true, false);
    emit_stores(r, 4);
    cgen_puts(b, "            }\n    }\n");
}

/* sdpa's backward: a thread per (batch, row), the C kernel's loops
 * (cgen_attention_backward_row, without omp simd) in double, then the
 * epilogue per column. */
static void render_attention_backward(cr *r)
{
    const kernel *k = r->k;
    const kk_attention *at = &k->at;
    cgen_buf *b = r->b;
    const int64_t rows = k->dims[1], cols = k->dims[2];
    grid_loop(b, at->batch * rows, 1);
    const int64_t dims[2] = {at->batch, rows};
    r->vars[0] = r->vars[1] = true; /* the operands' rows need both, */
    unflatten(r, 2, "t", 0, 2, dims);
    cgen_puts(b, "        (void)i0;\n        (void)i1;\n"); /* but a size-1 axis has stride 0 */
    cgen_attention_backward_row(b, r->p, k, 2, true);
    cgen_printf(b,
                "        for (int64_t i2 = 0; i2 < %lld; i2++) {\n"
                "            const double acc = o[i2];\n",
                (long long)cols);
    emit_nodes(r, 3, false, false);
    emit_nodes(r, 3, true, false);
    emit_stores(r, 3);
    cgen_puts(b, "        }\n    }\n");
}

/* ATTENTION: a thread per (batch, row), an online softmax over the keys in
 * double (the C kernel's recurrence, one key at a time), then the epilogue
 * per output column. */
static void render_attention(cr *r)
{
    const kernel *k = r->k;
    const kk_attention *at = &k->at;
    cgen_buf *b = r->b;
    if (at->mode != KA_FORWARD) {
        render_attention_backward(r);
        return;
    }
    const char *ty = cgen_ctype(r->p->bufs[at->q].dtype);
    char keys[96]; /* keys 0..i1 when causal */
    if (at->causal)
        snprintf(keys, sizeof keys, "i1 + 1 < %lld ? i1 + 1 : %lld", (long long)at->s,
                 (long long)at->s);
    else
        snprintf(keys, sizeof keys, "%lld", (long long)at->s);
    grid_loop(b, at->batch * at->t, 1);
    const int64_t dims[2] = {at->batch, at->t};
    unflatten(r, 2, "t", 0, 2, dims);
    /* where batch i0 starts in q, k, v (two strides when heads are permuted in) */
    const int64_t *st[3] = {at->q_stride, at->k_stride, at->v_stride};
    const char *base[3] = {"qb", "kb", "vb"};
    for (int w = 0; w < 3; w++) {
        cgen_printf(b, "        const int64_t %s = %lld + ", base[w], (long long)at->offset[w]);
        if (at->inner[w] > 1)
            cgen_printf(b, "i0 / %lld * %lld + i0 %% %lld * %lld;\n", (long long)at->inner[w],
                        (long long)st[w][0], (long long)at->inner[w], (long long)at->istride[w]);
        else
            cgen_printf(b, "i0 * %lld;\n", (long long)st[w][0]);
    }
    cgen_printf(b,
                "        const %s *qr = b%d + qb + i1 * %lld;\n"
                "        double m = -(double)INFINITY, l = 0, o[%lld];\n"
                "        for (int64_t e = 0; e < %lld; e++)\n"
                "            o[e] = 0;\n"
                "        const int64_t keys = %s;\n"
                "        for (int64_t j = 0; j < keys; j++) {\n",
                ty, at->q, (long long)at->q_stride[1], (long long)(at->dv ? at->dv : 1),
                (long long)at->dv, keys);
    cgen_attention_mask_skip(b, r->p, at, 3, "i1", "j", "continue;", true);
    cgen_printf(b,
                "            const %s *kr = b%d + kb + j * %lld;\n"
                "            const %s *vr = b%d + vb + j * %lld;\n"
                "            double s = 0;\n"
                "            for (int64_t d = 0; d < %lld; d++)\n"
                "                s += (double)qr[d * %lld] * (double)kr[d * %lld];\n"
                "            s *= %.17g;\n"
                "            if (s > m) {\n"
                "                const double c = exp(m - s);\n"
                "                l *= c;\n"
                "                for (int64_t e = 0; e < %lld; e++)\n"
                "                    o[e] *= c;\n"
                "                m = s;\n"
                "            }\n"
                "            const double w = exp(s - m);\n"
                "            l += w;\n"
                "            for (int64_t e = 0; e < %lld; e++)\n"
                "                o[e] += w * (double)vr[e * %lld];\n"
                "        }\n"
                "        for (int64_t i2 = 0; i2 < %lld; i2++) {\n"
                "            const double acc = l > 0 ? o[i2] / l : 0;\n",
                ty, at->k, (long long)at->k_stride[1], ty, at->v, (long long)at->v_stride[1],
                (long long)at->d, (long long)at->q_stride[2], (long long)at->k_stride[2], at->scale,
                (long long)at->dv, (long long)at->dv, (long long)at->v_stride[2],
                (long long)at->dv);
    emit_nodes(r, 3, false, false);
    emit_nodes(r, 3, true, false);
    emit_stores(r, 3);
    cgen_puts(b, "        }\n    }\n");
}

/* The epilogue of a MATMUL whose product a library GEMM wrote to mmacc
 * (row-major batch x m x n): the same stores, one thread per element. */
static bool render_epilogue(cgen_buf *b, const kprogram *p, const kernel *k)
{
    cr r;
    bool ok = cr_init(&r, b, p, k, true);
    if (ok) {
        const kk_matmul *mm = &k->mm;
        const char *acc = cgen_ctype(k->acc_dtype);
        /* the product has the operands' dtype (an f32 GEMM for f32 operands) */
        kiln_dtype pd = p->bufs[mm->a].dtype;
        const char *prod = cgen_ctype(ir_dtype_is_float(pd) ? pd : k->acc_dtype);
        cgen_printf(b, "/* %s after a library GEMM: its fused epilogue */\n", k->name);
        cgen_printf(b, "extern \"C\" __global__ void %s_epi(kiln_ctx *ctx", k->name);
        for (int i = 0; i < p->nbufs; i++)
            if (r.use[i])
                cgen_printf(b, ",\n    %s%s *__restrict__ b%d", r.use[i] & 2 ? "" : "const ",
                            cgen_ctype(p->bufs[i].dtype), i);
        cgen_printf(b, ",\n    const %s *__restrict__ mmacc)\n{\n", prod);
        cgen_puts(b, "    if (ctx->err_code != 0)\n        return;\n");
        grid_loop(b, mm->batch * mm->m * mm->n, 1);
        const int64_t dims[3] = {mm->batch, mm->m, mm->n};
        unflatten(&r, 2, "t", 0, 3, dims);
        cgen_printf(b, "        const %s acc = (%s)mmacc[t];\n", acc, acc);
        emit_nodes(&r, 2, false, false);
        emit_nodes(&r, 2, true, false);
        emit_stores(&r, 2);
        cgen_puts(b, "    }\n}\n\n");
    }
    cr_free(&r);
    return ok;
}

/* Whether the kernel's output domain is empty (nothing to compute). */
static bool empty_domain(const kernel *k)
{
    if (k->kind == KK_MATMUL)
        return k->mm.batch * k->mm.m * k->mm.n == 0;
    if (k->kind == KK_ATTENTION)
        return ir_shape_numel(3, k->dims) == 0; /* (batch, rows, cols) */
    return ir_shape_numel(k->rank, k->dims) == 0;
}

static bool render_kernel(cgen_buf *b, const kprogram *p, const kernel *k)
{
    cr r;
    bool ok = cr_init(&r, b, p, k, false);
    if (ok) {
        cgen_kernel_comment(b, p, k);
        cgen_printf(b, "extern \"C\" __global__ void %s(kiln_ctx *ctx", k->name);
        for (int i = 0; i < p->nbufs; i++)
            if (r.use[i])
                cgen_printf(b, ",\n    %s%s *__restrict__ b%d", r.use[i] & 2 ? "" : "const ",
                            cgen_ctype(p->bufs[i].dtype), i);
        /* A kernel after a failed one computes nothing (the C target stops
         * there). The flag can change while the kernel starts (its own
         * threads may fail), so threads that work together read it once: a
         * matmul's block (its threads synchronize), a reduction's warp (its
         * lanes shuffle); a pointwise thread reads it alone. */
        cgen_puts(b, ")\n{\n");
        if (k->kind == KK_MATMUL)
            cgen_puts(b, "    __shared__ int kiln_stop;\n    if (threadIdx.x == 0)\n"
                         "        kiln_stop = ctx->err_code;\n    __syncthreads();\n"
                         "    if (kiln_stop != 0)\n        return;\n");
        else if (k->kind == KK_REDUCE && !empty_domain(k))
            cgen_puts(
                b, "    if (__shfl_sync(0xffffffffu, ctx->err_code, 0) != 0)\n        return;\n");
        else
            cgen_puts(b, "    if (ctx->err_code != 0)\n        return;\n");
        if (empty_domain(k))
            cgen_puts(b, "    /* an empty domain: nothing to compute */\n");
        else if (k->kind == KK_POINTWISE)
            render_pointwise(&r);
        else if (k->kind == KK_REDUCE && (k->npre > 0 || kk_has_element_stores(k)))
            render_rows(&r);
        else if (k->kind == KK_REDUCE)
            render_reduce(&r);
        else if (k->kind == KK_ATTENTION)
            render_attention(&r);
        else
            render_matmul(&r);
        cgen_puts(b, "}\n\n");
    }
    cr_free(&r);
    return ok;
}

int64_t cgen_cuda_launch(const kprogram *p, const kernel *k, bool epi, int *args, int *nargs)
{
    cr r;
    cgen_buf unused = {0};
    *nargs = 0;
    if (!cr_init(&r, &unused, p, k, epi)) {
        cr_free(&r);
        return -1;
    }
    for (int i = 0; i < p->nbufs; i++)
        if (r.use[i])
            args[(*nargs)++] = i;
    cr_free(&r);
    if (empty_domain(k))
        return 0;
    if (k->kind == KK_MATMUL && epi)
        return k->mm.batch * k->mm.m * k->mm.n;
    if (k->kind == KK_MATMUL) /* render_matmul: a block per tile */
        return k->mm.batch * ((k->mm.m + TILE - 1) / TILE) * ((k->mm.n + TILE - 1) / TILE) *
               KILN_CUDA_BLOCK;
    if (k->kind == KK_ATTENTION) /* render_attention: a row a thread */
        return k->at.batch * (k->at.mode == KA_FORWARD ? k->at.t : k->dims[1]);
    int64_t n = ir_shape_numel(k->rank, k->dims);
    if (k->kind == KK_POINTWISE)
        return (n + 3) / 4; /* render_pointwise: four elements a thread */
    bool rows = k->npre > 0 || kk_has_element_stores(k); /* render_rows: a warp a row */
    return k->kind == KK_REDUCE && (k->rop == IR_SUM || rows) ? n * WARP : n;
}

/* NVRTC has no C library headers: the few types and limits the shared
 * helpers use, and the device-side context. */
static const char prelude[] =
    "typedef signed char int8_t;\n"
    "typedef int int32_t;\n"
    "typedef unsigned int uint32_t;\n"
    "typedef long long int64_t;\n"
    "typedef unsigned long long uint64_t;\n"
    "typedef unsigned long long uintptr_t;\n"
    "#define INT32_MIN (-2147483647 - 1)\n"
    "#define INT32_MAX 2147483647\n"
    "#define INT64_MIN (-9223372036854775807LL - 1)\n"
    "#define INT64_MAX 9223372036854775807LL\n"
    "#define INFINITY __int_as_float(0x7f800000)\n"
    "#define NAN __int_as_float(0x7fffffff)\n"
    "#define KILN_UNUSED\n"
    "#define KILN_UNROLL _Pragma(\"unroll\")\n"
    "#define restrict __restrict__\n"
    "#define KILN_FN __device__ __forceinline__ /* not static: unused ones are silent */\n"
    "\n"
    "/* the device-side context: the Philox key and counter, the first error */\n"
    "typedef struct kiln_ctx {\n"
    "    uint64_t seed;\n"
    "    uint32_t run;\n"
    "    int32_t err_code, err_kernel, err_axis;\n"
    "    int64_t err_index, err_size;\n"
    "} kiln_ctx;\n"
    "\n";

static const char fail_fn[] =
    "/* Records the first run-time error of the launch sequence. */\n"
    "KILN_FN void kiln_fail(kiln_ctx *ctx, int32_t code, int32_t kernel, int32_t axis,\n"
    "                       int64_t index, int64_t size)\n"
    "{\n"
    "    if (atomicCAS(&ctx->err_code, 0, code) == 0) {\n"
    "        ctx->err_kernel = kernel;\n"
    "        ctx->err_axis = axis;\n"
    "        ctx->err_index = index;\n"
    "        ctx->err_size = size;\n"
    "    }\n"
    "}\n"
    "\n";

char *cgen_cuda(const kprogram *p)
{
    if (!p)
        return NULL;
    /* the kernels first: the helpers before them are only those they use */
    cgen_buf body = {0}, b = {0};
    bool ok = true;
    for (int i = 0; i < p->nkernels && ok; i++) {
        const kernel *k = &p->kernels[i];
        ok = render_kernel(&body, p, k);
        if (ok && k->kind == KK_MATMUL && !empty_domain(k) && ir_dtype_is_float(k->acc_dtype))
            ok = render_epilogue(&body, p, k);
    }
    const char *const texts[] = {cgen_vmath_text, cgen_helpers_text};
    cgen_helpers h;
    ok = ok && !body.oom && cgen_helpers_init(&h, texts, 2);
    if (ok) {
        cgen_helpers_use(&h, body.s);
        cgen_printf(&b,
                    "/*\n * Generated by Kiln's CUDA renderer (codegen/cuda): %d kernels, %d "
                    "entries.\n * Each kernel is named after the ops it computes and lists the "
                    "graph nodes it\n * covers; the CUDA executor launches them in schedule "
                    "order.\n */\n",
                    p->nkernels, p->nentries);
        cgen_puts(&b, prelude);
        cgen_runerr_enum(&b, &h, body.s);
        cgen_puts(&b, fail_fn);
        cgen_helpers_print(&b, &h, cgen_vmath_text);
        cgen_helpers_print(&b, &h, cgen_helpers_text);
        cgen_puts(&b, body.s);
    }
    cgen_buf_free(&body);
    if (!ok || b.oom) {
        cgen_buf_free(&b);
        return NULL;
    }
    return b.s;
}
