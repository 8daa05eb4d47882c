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
    .load = "b$B[$a]",
    .var = "i$V",
    .idiv = "($a / $b)",
    .imod = "($a % $b)",
    .rand = "kiln_rand_$d(ctx->seed, $Su, ctx->run, (uint64_t)$a)",
    .randn = "kiln_randn_$d(ctx->seed, $Su, ctx->run, (uint64_t)$a)",
    .check = "kiln_check(ctx, $K, $X, $Z, $a)",
};

const char *const cgen_helpers[] = {
    "#define KILN_TWO_M24 (1.0 / 16777216.0)\n"
    "#define KILN_TWO_M53 (1.0 / 9007199254740992.0)\n"
    "#define KILN_TWO_PI  6.283185307179586\n"
    "\n"
    "/* Philox-4x32-10 block blk of (seed, stream, run), as ir/philox.c. */\n"
    "KILN_FN void kiln_philox(uint64_t seed, uint32_t stream, uint32_t run, uint64_t blk,\n"
    "                         uint32_t x[4])\n"
    "{\n"
    "    uint32_t c0 = (uint32_t)blk, c1 = (uint32_t)(blk >> 32), c2 = stream, c3 = run;\n"
    "    uint32_t key0 = (uint32_t)seed, key1 = (uint32_t)(seed >> 32);\n"
    "    KILN_UNROLL\n"
    "    for (int r = 0; r < 10; r++) {\n"
    "        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;\n"
    "        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ key0;\n"
    "        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ key1;\n"
    "        c1 = (uint32_t)p1;\n"
    "        c3 = (uint32_t)p0;\n"
    "        c0 = n0;\n"
    "        c2 = n2;\n"
    "        key0 += 0x9E3779B9u;\n"
    "        key1 += 0xBB67AE85u;\n"
    "    }\n"
    "    x[0] = c0;\n"
    "    x[1] = c1;\n"
    "    x[2] = c2;\n"
    "    x[3] = c3;\n"
    "}\n"
    "\n"
    "KILN_FN float kiln_rand_f32(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)\n"
    "{\n"
    "    uint32_t x[4];\n"
    "    kiln_philox(seed, stream, run, i / 4, x);\n"
    "    return (float)((double)(x[i % 4] >> 8) * KILN_TWO_M24);\n"
    "}\n"
    "\n"
    "KILN_FN double kiln_rand_f64(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)\n"
    "{\n"
    "    uint32_t x[4];\n"
    "    kiln_philox(seed, stream, run, i / 2, x);\n"
    "    unsigned w = (unsigned)(i % 2) * 2;\n"
    "    return (double)(((uint64_t)x[w + 1] << 32 | x[w]) >> 11) * KILN_TWO_M53;\n"
    "}\n"
    "\n"
    "KILN_FN double kiln_box_muller(double u1, double u2, uint64_t i) /* f64 */\n"
    "{\n"
    "    double r = sqrt(-2.0 * log(u1));\n"
    "    return (i % 2 == 0) ? r * cos(KILN_TWO_PI * u2) : r * sin(KILN_TWO_PI * u2);\n"
    "}\n"
    "\n"
    "KILN_FN float kiln_randn_f32(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)\n"
    "{\n"
    "    uint32_t x[4];\n"
    "    kiln_philox(seed, stream, run, i / 4, x);\n"
    "    unsigned w = (unsigned)(i % 4) & 2u;\n"
    "    float z0, z1;\n"
    "    kiln_box_mullerf(x[w], x[w + 1], &z0, &z1);\n"
    "    return i % 2 ? z1 : z0;\n"
    "}\n"
    "\n"
    "KILN_FN double kiln_randn_f64(uint64_t seed, uint32_t stream, uint32_t run, uint64_t i)\n"
    "{\n"
    "    uint32_t x[4];\n"
    "    kiln_philox(seed, stream, run, i / 2, x);\n"
    "    double u1 = (double)((((uint64_t)x[1] << 32 | x[0]) >> 11) + 1) * KILN_TWO_M53;\n"
    "    double u2 = (double)(((uint64_t)x[3] << 32 | x[2]) >> 11) * KILN_TWO_M53;\n"
    "    return kiln_box_muller(u1, u2, i);\n"
    "}\n"
    "\n"
    "",
    /* split: C99 promises string literals of 4095 characters only */
    "/* Words 0..3 of Philox blocks b0 .. b0 + nb - 1 into w[q * ld + j]\n"
    " * (structure of arrays, nb rounded up to 16). With AVX-512 sixteen blocks\n"
    " * per vector, each round's 32 x 32 -> 64 products as even and odd\n"
    " * vpmuludq; otherwise a loop the vectorizer takes. The renderer defines\n"
    " * KILN_RNG_INTRINSICS only for programs that draw f32 random numbers: the\n"
    " * intrinsics header alone costs clang 150 ms. */\n"
    "#define KILN_RCHUNK 1024\n"
    "#define KILN_RBLOCKS (KILN_RCHUNK / 4 + 16)\n"
    "#if defined(KILN_RNG_INTRINSICS) && defined(__AVX512F__) && !defined(__CUDACC__)\n"
    "#include <immintrin.h>\n"
    "#define KILN_HILO(m, c, hi, lo)                                                   \\\n"
    "    do {                                                                          \\\n"
    "        __m512i e_ = _mm512_mul_epu32(m, c);                                      \\\n"
    "        __m512i o_ = _mm512_mul_epu32(m, _mm512_srli_epi64(c, 32));               \\\n"
    "        hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e_, 32), o_);      \\\n"
    "        lo = _mm512_mask_blend_epi32(0xAAAA, e_, _mm512_slli_epi64(o_, 32));      \\\n"
    "    } while (0)\n"
    "KILN_FN void kiln_philox_soa(uint64_t seed, uint32_t stream, uint32_t run, uint64_t b0,\n"
    "                             int64_t nb, uint32_t *restrict w, int64_t ld)\n"
    "{\n"
    "    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,\n"
    "                                           14, 15);\n"
    "    const __m512i m0 = _mm512_set1_epi32((int)0xD2511F53u);\n"
    "    const __m512i m1 = _mm512_set1_epi32((int)0xCD9E8D57u);\n"
    "    for (int64_t j = 0; j < nb; j += 16) {\n"
    "        const uint64_t b = b0 + (uint64_t)j;\n"
    "        const __m512i lo = _mm512_set1_epi32((int)(uint32_t)b);\n"
    "        const __m512i hi = _mm512_set1_epi32((int)(uint32_t)(b >> 32));\n"
    "        __m512i c0 = _mm512_add_epi32(lo, lane); /* a carry bumps word 1 */\n"
    "        __m512i c1 = _mm512_mask_add_epi32(hi, _mm512_cmplt_epu32_mask(c0, lo), hi,\n"
    "                                           _mm512_set1_epi32(1));\n"
    "        __m512i c2 = _mm512_set1_epi32((int)stream), c3 = _mm512_set1_epi32((int)run);\n"
    "        uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);\n"
    "        KILN_UNROLL\n"
    "        for (int r = 0; r < 10; r++) {\n"
    "            __m512i hi0, lo0, hi1, lo1;\n"
    "            KILN_HILO(m0, c0, hi0, lo0);\n"
    "            KILN_HILO(m1, c2, hi1, lo1);\n"
    "            c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32((int)k0), 0x96);\n"
    "            c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32((int)k1), 0x96);\n"
    "            c1 = lo1;\n"
    "            c3 = lo0;\n"
    "            k0 += 0x9E3779B9u;\n"
    "            k1 += 0xBB67AE85u;\n"
    "        }\n"
    "        _mm512_storeu_si512(w + j, c0);\n"
    "        _mm512_storeu_si512(w + ld + j, c1);\n"
    "        _mm512_storeu_si512(w + 2 * ld + j, c2);\n"
    "        _mm512_storeu_si512(w + 3 * ld + j, c3);\n"
    "    }\n"
    "}\n"
    "#else\n"
    "KILN_FN void kiln_philox_soa(uint64_t seed, uint32_t stream, uint32_t run, uint64_t b0,\n"
    "                             int64_t nb, uint32_t *restrict w, int64_t ld)\n"
    "{\n"
    "    for (int64_t j = 0; j < nb; j++) {\n"
    "        uint32_t x[4];\n"
    "        kiln_philox(seed, stream, run, b0 + (uint64_t)j, x);\n"
    "        KILN_UNROLL\n"
    "        for (int q = 0; q < 4; q++)\n"
    "            w[q * ld + j] = x[q];\n"
    "    }\n"
    "}\n"
    "#endif\n"
    "\n",
    "/* The Philox words of the blocks that hold elements first .. first + n - 1\n"
    " * into w (4 x KILN_RBLOCKS, structure of arrays); returns how many blocks. */\n"
    "KILN_FN int64_t kiln_rng_words(uint64_t seed, uint32_t stream, uint32_t run, uint64_t first,\n"
    "                               int64_t n, uint32_t *restrict w)\n"
    "{\n"
    "    const uint64_t b0 = first / 4;\n"
    "    const int64_t nb = (int64_t)((first + (uint64_t)n + 3) / 4 - b0);\n"
    "    kiln_philox_soa(seed, stream, run, b0, nb, w, KILN_RBLOCKS);\n"
    "    return nb;\n"
    "}\n"
    "\n"
    "/* Elements first .. first + n - 1 (n <= KILN_RCHUNK) of a rand or randn f32\n"
    " * tensor into buf (KILN_RCHUNK + 8 floats), a whole Philox block per 4\n"
    " * elements, both passes vectorized over blocks. Returns where element\n"
    " * first landed. */\n"
    "KILN_FN const float *kiln_rand_f32_chunk(uint64_t seed, uint32_t stream, uint32_t run,\n"
    "                                         uint64_t first, int64_t n, float *restrict buf)\n"
    "{\n"
    "    uint32_t w[4 * KILN_RBLOCKS];\n"
    "    const int64_t nb = kiln_rng_words(seed, stream, run, first, n, w);\n"
    "    for (int64_t j = 0; j < nb; j++)\n"
    "        KILN_UNROLL\n"
    "        for (int q = 0; q < 4; q++)\n"
    "            buf[4 * j + q] = (float)(w[q * KILN_RBLOCKS + j] >> 8) * 0x1p-24f;\n"
    "    return buf + first % 4;\n"
    "}\n"
    "\n"
    "KILN_FN const float *kiln_randn_f32_chunk(uint64_t seed, uint32_t stream, uint32_t run,\n"
    "                                          uint64_t first, int64_t n, float *restrict buf)\n"
    "{\n"
    "    uint32_t w[4 * KILN_RBLOCKS];\n"
    "    const int64_t nb = kiln_rng_words(seed, stream, run, first, n, w);\n"
    "    /* z[q][j]: element 4 j + q; one pair per loop keeps the registers free */\n"
    "    float z[4][KILN_RBLOCKS];\n"
    "    for (int64_t j = 0; j < nb; j++)\n"
    "        kiln_box_mullerf(w[j], w[KILN_RBLOCKS + j], &z[0][j], &z[1][j]);\n"
    "    for (int64_t j = 0; j < nb; j++)\n"
    "        kiln_box_mullerf(w[2 * KILN_RBLOCKS + j], w[3 * KILN_RBLOCKS + j], &z[2][j], "
    "&z[3][j]);\n"
    "    for (int64_t j = 0; j < nb; j++)\n"
    "        KILN_UNROLL\n"
    "        for (int q = 0; q < 4; q++)\n"
    "            buf[4 * j + q] = z[q][j];\n"
    "    return buf + first % 4;\n"
    "}\n"
    "\n",
    "KILN_FN float kiln_sigmoidf(float x)\n"
    "{\n"
    "    return 1.0f / (1.0f + kiln_expf(-x));\n"
    "}\n"
    "\n"
    "KILN_FN double kiln_sigmoid(double x)\n"
    "{\n"
    "    return 1.0 / (1.0 + exp(-x));\n"
    "}\n"
    "\n"
    "/* maximum/minimum: NaN propagates (the first NaN wins) */\n"
    "KILN_FN float kiln_fmaxf(float a, float b)\n"
    "{\n"
    "    return isnan(a) ? a : isnan(b) ? b : a > b ? a : b;\n"
    "}\n"
    "\n"
    "KILN_FN float kiln_fminf(float a, float b)\n"
    "{\n"
    "    return isnan(a) ? a : isnan(b) ? b : a < b ? a : b;\n"
    "}\n"
    "\n"
    "KILN_FN double kiln_fmax(double a, double b)\n"
    "{\n"
    "    return isnan(a) ? a : isnan(b) ? b : a > b ? a : b;\n"
    "}\n"
    "\n"
    "KILN_FN double kiln_fmin(double a, double b)\n"
    "{\n"
    "    return isnan(a) ? a : isnan(b) ? b : a < b ? a : b;\n"
    "}\n"
    "\n"
    "/* float -> integer conversions saturate; NaN becomes 0 */\n"
    "KILN_FN int64_t kiln_f2i64(double v)\n"
    "{\n"
    "    if (isnan(v))\n"
    "        return 0;\n"
    "    if (v >= 9223372036854775807.0)\n"
    "        return INT64_MAX;\n"
    "    if (v <= -9223372036854775808.0)\n"
    "        return INT64_MIN;\n"
    "    return (int64_t)v;\n"
    "}\n"
    "\n"
    "KILN_FN int32_t kiln_f2i32(double v)\n"
    "{\n"
    "    int64_t w = kiln_f2i64(v);\n"
    "    return w > INT32_MAX ? INT32_MAX : w < INT32_MIN ? INT32_MIN : (int32_t)w;\n"
    "}\n"
    "\n"
    "/* integer division floors (Python's //); INT64_MIN / -1 wraps */\n"
    "KILN_FN int64_t kiln_floordiv(kiln_ctx *ctx, int32_t kernel, int64_t a, int64_t b)\n"
    "{\n"
    "    if (b == 0) {\n"
    "        kiln_fail(ctx, KILN_RUNERR_ZERO_DIV, kernel, 0, 0, 0);\n"
    "        return 0;\n"
    "    }\n"
    "    if (b == -1)\n"
    "        return (int64_t)(0 - (uint64_t)a);\n"
    "    int64_t q = a / b;\n"
    "    if (a % b != 0 && ((a < 0) != (b < 0)))\n"
    "        q--;\n"
    "    return q;\n"
    "}\n"
    "\n"
    "KILN_FN int64_t kiln_ipow(kiln_ctx *ctx, int32_t kernel, int64_t a, int64_t b)\n"
    "{\n"
    "    if (b < 0) {\n"
    "        kiln_fail(ctx, KILN_RUNERR_NEG_POW, kernel, 0, 0, 0);\n"
    "        return 0;\n"
    "    }\n"
    "    uint64_t r = 1, x = (uint64_t)a;\n"
    "    while (b) {\n"
    "        if (b & 1)\n"
    "            r *= x;\n"
    "        x *= x;\n"
    "        b >>= 1;\n"
    "    }\n"
    "    return (int64_t)r;\n"
    "}\n"
    "\n"
    "/* an index into an axis of size `size`; out of range fails (and reads 0) */\n"
    "KILN_FN int64_t kiln_check(kiln_ctx *ctx, int32_t kernel, int32_t axis, int64_t size,\n"
    "                           int64_t i)\n"
    "{\n"
    "    if (i >= 0 && i < size)\n"
    "        return i;\n"
    "    kiln_fail(ctx, KILN_RUNERR_INDEX, kernel, axis, i, size);\n"
    "    return 0;\n"
    "}\n",
    NULL};

/* ---- printing ---------------------------------------------------------------- */

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
    case KX_ACC: cgen_puts(b, e->acc ? e->acc : "kiln_no_acc"); return;
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
        case 'v': cgen_puts(b, fdt == KILN_F32 ? "kiln_" : ""); break;
        case 'd': cgen_puts(b, ir_dtype_kir(n->dtype)); break;
        case 'K': cgen_printf(b, "%d", e->k->id); break;
        case 'B': cgen_printf(b, "%d", n->buf); break;
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

/* The body's value, converted to dt when it has another dtype. */
void cgen_body_as(cgen_buf *b, const cgen_ectx *e, kiln_dtype dt)
{
    const kernel *k = e->k;
    if (k->x[k->body].dtype != dt)
        cgen_printf(b, "(%s)", cgen_ctype(dt));
    cgen_operand(b, e, k->body);
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
            cgen_printf(b, "b%d[", s->buf);
            cgen_operand(b, e, s->index);
            cgen_puts(b, "] = true;\n");
            return;
        }
        if (dt == KILN_I64)
            cgen_printf(b, "atomicAdd((unsigned long long *)&b%d[", s->buf);
        else
            cgen_printf(b, "atomicAdd(&b%d[", s->buf);
        cgen_operand(b, e, s->index);
        cgen_puts(b, dt == KILN_I64 ? "], (unsigned long long)" : "], ");
        cgen_operand(b, e, s->value);
        cgen_puts(b, ");\n");
        return;
    }
    cgen_printf(b, "b%d[", s->buf);
    cgen_operand(b, e, s->index);
    cgen_puts(b, "]");
    if (s->accumulate && dt != KILN_F32 && dt != KILN_F64) {
        const char *u = dt == KILN_I32 ? "uint32_t" : "uint64_t";
        cgen_printf(b, " = (%s)(", dt == KILN_BOOL ? "bool" : cgen_ctype(dt));
        if (dt != KILN_BOOL)
            cgen_printf(b, "(%s)", u);
        cgen_printf(b, "b%d[", s->buf);
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
