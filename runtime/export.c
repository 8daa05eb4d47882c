/*
 * export.c - kiln_export (a model as a standalone .so + typed .h) and
 * kiln_module_open (such a .so back into the module API).
 *
 * kiln_export(g, opts, dir) writes, for name = opts->name (default "model"):
 *   <name>.kir         the graph (the text the .so embeds)
 *   <name>.params.bin  the initial value of every param, each at a multiple of 64 bytes
 *   <name>.h           the typed C API: state create/free/error, one function
 *                      per entry, save/load of checkpoints, tensor access
 *   <name>.c           the generated kernels and entries (exactly the JIT's
 *                      source for the graph), the metadata, the tables and the
 *                      standalone runtime (runtime/export_rt.inc)
 *   <name>.so          built from <name>.c in dir with the JIT's compiler and
 *                      flags (plus -Wl,-Bsymbolic); the .kir and params are
 *                      assembled in with .incbin, so the .so needs no other file
 * With KILN_TARGET_CUDA (no GPU needed, NVRTC is) <name>.c is instead the
 * host side: the launch tables of the CUDA JIT's kernels, written beside it
 * as <name>.cu, whose images it embeds (<name>.sm_XX.cubin per architecture,
 * <name>.ptx, <name>.consts.bin), and the device runtime
 * (runtime/export_cuda_rt.inc) under the same API and header.
 * Every file is replaced atomically. The module is built from the .kir text
 * (print, then parse), exactly as kiln_module_open rebuilds it, so both see
 * one graph.
 *
 * kiln_module_open(path) loads the .so, checks kiln_abi (KILN_ABI_TAG) and
 * kiln_export_meta, parses the embedded graph, lays the module out with the
 * embedded params, renders the graph again and compares the source's hash
 * with the one the .so was built from (another Kiln version would run
 * different code against this layout), then runs the .so's entries as the C
 * target does (a CUDA export: its image on the GPU, through the device
 * executor). A failure leaves its message for kiln_module_error(NULL).
 */
#include "codegen/c/expr.h"
#include "codegen/cuda/cuda.h"
#include "ir/abi.h"
#include "rt.h"
#include "runtime/cuda_driver.h"
#include "runtime/device.h"
#include "runtime/fsutil.h"
#include "runtime/nvrtc.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

KILN_CTX_DEF
KILN_EXPORT_DEF
KILN_EXPORT_CUDA_DEF

extern const char rt_export_runtime_text[];      /* runtime/export_rt.inc, embedded by CMake */
extern const char rt_export_cuda_runtime_text[]; /* runtime/export_cuda_rt.inc */

enum { NAME_MAX_LEN = 64, MAX_ARCHS = 8 };

/* ---- names ------------------------------------------------------------------ */

static bool is_ident(const char *s)
{
    if (!s || !*s || strlen(s) > NAME_MAX_LEN || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* s as a C identifier: other characters become '_', a leading digit gets
 * prefix (or "t"). */
static void to_ident(char *out, size_t cap, const char *s, const char *prefix)
{
    size_t n = 0;
    if (*s >= '0' && *s <= '9')
        n = (size_t)snprintf(out, cap, "%s", prefix ? prefix : "t");
    for (; *s && n + 1 < cap; s++) {
        char c = *s;
        bool ok =
            c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        out[n++] = ok ? c : '_';
    }
    out[n < cap ? n : cap - 1] = 0;
    if (n == 0)
        snprintf(out, cap, "%s", prefix ? prefix : "t");
}

/* Keywords of C and C++ and the macros of the headers an export includes or
 * its users commonly do: no name of the export's API may be one. */
static bool c_word(const char *s)
{
    static const char *const words[] = {"auto",     "bool",         "break",    "case",
                                        "catch",    "char",         "class",    "const",
                                        "continue", "default",      "delete",   "do",
                                        "double",   "else",         "enum",     "explicit",
                                        "extern",   "false",        "float",    "for",
                                        "friend",   "goto",         "if",       "inline",
                                        "int",      "long",         "mutable",  "namespace",
                                        "new",      "operator",     "private",  "protected",
                                        "public",   "register",     "restrict", "return",
                                        "short",    "signed",       "sizeof",   "static",
                                        "struct",   "switch",       "template", "this",
                                        "throw",    "true",         "try",      "typedef",
                                        "typename", "union",        "unsigned", "using",
                                        "virtual",  "void",         "volatile", "while",
                                        "and",      "or",           "not",      "xor",
                                        "nullptr",  "constexpr",    "typeof",   "asm",
                                        "_Bool",    "NULL",         "errno",    "EOF",
                                        "stdin",    "stdout",       "stderr",   "assert",
                                        "offsetof", "alignas",      "alignof",  "static_assert",
                                        "noreturn", "thread_local", "complex",  "imaginary",
                                        "I",        "INFINITY",     "NAN",      "HUGE_VAL"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(s, words[i]) == 0)
            return true;
    return false;
}

/* The export's own symbols: kiln_entry_<i>, kiln_abi, kso_* and their macros. */
static bool own_prefix(const char *s)
{
    static const char *const prefixes[] = {"kiln_", "kso_", "KILN_", "KSO_"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(s, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* Words an argument name must not be: C words and the names the API's
 * functions use for their locals (in, out, s). Such a name gets a '_'
 * appended; one with the export's own prefix gets "arg_" in front. */
static bool reserved(const char *s)
{
    return c_word(s) || strcmp(s, "s") == 0 || strcmp(s, "in") == 0 || strcmp(s, "out") == 0;
}

/* Untrusted text (a tensor or entry name, a path) inside a C comment: it can
 * neither end nor open a comment nor form a trigraph ("*" "/", "/" "*" and
 * "?" "?" get a backslash between them), and control bytes become '?'. */
static void comment_text(cgen_buf *b, const char *s)
{
    char out[2 * 4096 + 8];
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n + 3 < sizeof out; p++) {
        unsigned char prev = p > (const unsigned char *)s ? p[-1] : 0;
        if ((*p == '/' && prev == '*') || (*p == '*' && prev == '/') || (*p == '?' && prev == '?'))
            out[n++] = '\\';
        out[n++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
    }
    out[n] = 0;
    cgen_puts(b, out);
}

/* Untrusted text as a C string literal that means exactly its bytes: '"', '\\'
 * and '?' (trigraphs) are escaped, anything but printable ASCII is an octal
 * escape of three digits (never read together with a following digit). */
static void string_literal(cgen_buf *b, const char *s)
{
    cgen_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\' || *p == '?')
            cgen_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            cgen_printf(b, "\\%03o", *p);
        else
            cgen_printf(b, "%c", *p);
    }
    cgen_puts(b, "\"");
}

/* ---- the export's shape ------------------------------------------------------------ */

typedef struct {
    char arg[NAME_MAX_LEN + 8];
    int tensor; /* module buffer */
} xarg;

typedef struct {
    char fn[2 * NAME_MAX_LEN + 8]; /* "<name>_<entry>" */
    xarg *in, *out;                /* out: outputs that are not assigns */
    int nin, nout;
    bool can_fail;  /* cuda: one of its kernels can fail */
    uint64_t stash; /* cuda: bytes of what it writes (kept while it runs, if it can fail) */
} xentry;

typedef struct {
    kiln_module *m;
    const kprogram *p;
    const char *source; /* the renderer's: what the hash covers */
    const int *modbuf;
    bool cuda;                   /* KILN_TARGET_CUDA: the kernels are the images of source */
    unsigned char *const *touch; /* cuda: per entry, per tensor, 1 read, 2 written */
    uint64_t *const_at;          /* cuda: per program buffer, a constant's offset in the blob */
    uint64_t consts_bytes;
    int archs[MAX_ARCHS], narchs, ptx_arch; /* cuda: the cubins' architectures, the PTX's */
    const char *name;
    xentry *e;
    uint64_t *init; /* per module buffer: offset in the params blob (params) */
    uint64_t params_bytes;
    int *order; /* params sorted by name (the checkpoint order) */
    int nparams;
} xspec;

static void spec_free(xspec *x)
{
    for (int e = 0; x->e && e < x->m->g->nentries; e++) {
        ir_free(x->e[e].in);
        ir_free(x->e[e].out);
    }
    ir_free(x->e);
    ir_free(x->init);
    ir_free(x->order);
    ir_free(x->const_at);
}

static bool arg_taken(const xarg *a, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(a[i].arg, s) == 0)
            return true;
    return false;
}

/* Gives args[n] a unique, non-reserved name from base. */
static void name_arg(xarg *args, int n, const char *base)
{
    char s[NAME_MAX_LEN + 8];
    snprintf(s, sizeof s, "%s%.*s", own_prefix(base) ? "arg_" : "", NAME_MAX_LEN, base);
    while ((reserved(s) || arg_taken(args, n, s)) && strlen(s) + 1 < sizeof s)
        strcat(s, "_");
    snprintf(args[n].arg, sizeof args[n].arg, "%s", s);
}

static int by_param_name(const void *a, const void *b, void *arg)
{
    const kiln_module *m = arg;
    return strcmp(m->bufs[*(const int *)a].name, m->bufs[*(const int *)b].name);
}

/* Function and argument names, per-entry inputs (what the entry reads, in
 * module order), the params blob layout and the checkpoint order. */
static kiln_status make_spec(xspec *x, kiln_graph *g)
{
    kiln_module *m = x->m;
    const kiln_graph *mg = m->g;
    int ne = mg->nentries;
    x->e = ir_calloc(sizeof(*x->e) * (size_t)(ne ? ne : 1));
    x->init = ir_calloc(sizeof(uint64_t) * (size_t)(m->nbufs ? m->nbufs : 1));
    x->order = ir_alloc(sizeof(int) * (size_t)(m->nbufs ? m->nbufs : 1));
    bool *needed = ir_alloc(sizeof(bool) * (size_t)(mg->nnodes ? mg->nnodes : 1));
    if (!x->e || !x->init || !x->order || !needed) {
        ir_free(needed);
        return rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
    }
    for (int i = 0; i < m->nbufs; i++)
        if (m->bufs[i].role == RT_PARAM) {
            x->init[i] = x->params_bytes;
            x->params_bytes += (m->bufs[i].nbytes + 63) / 64 * 64;
            x->order[x->nparams++] = i;
        }
    qsort_r(x->order, (size_t)x->nparams, sizeof(int), by_param_name, m);

    static const char *const api[] = {"create", "free", "error", "save", "load", "tensor"};
    kiln_status s = KILN_OK;
    for (int e = 0; e < ne && s == KILN_OK; e++) {
        const ir_entry *ie = &mg->entries[e];
        xentry *xe = &x->e[e];
        char id[NAME_MAX_LEN + 8];
        to_ident(id, sizeof id, ie->name, "e");
        snprintf(xe->fn, sizeof xe->fn, "%s_%s", x->name, id);
        for (size_t k = 0; k < sizeof api / sizeof api[0]; k++)
            if (strcmp(id, api[k]) == 0)
                s = rt_compile_fail(g, KILN_ERR_INVALID,
                                    "kiln_export: entry '%s' would be %s, which the API already "
                                    "uses for the state; rename the entry",
                                    ie->name, xe->fn);
        for (int k = 0; k < e && s == KILN_OK; k++)
            if (strcmp(x->e[k].fn, xe->fn) == 0)
                s = rt_compile_fail(g, KILN_ERR_INVALID,
                                    "kiln_export: entries '%s' and '%s' both become the C "
                                    "function %s; rename one",
                                    mg->entries[k].name, ie->name, xe->fn);
        memset(needed, 0, sizeof(bool) * (size_t)mg->nnodes);
        for (int k = 0; k < ie->n; k++)
            needed[ie->outputs[k]->id] = true;
        for (int i = mg->nnodes - 1; i >= 0; i--)
            if (needed[i])
                for (int k = 0; k < mg->nodes[i]->nin; k++)
                    needed[mg->nodes[i]->in[k]->id] = true;
        int nin = 0;
        for (int i = 0; i < mg->nnodes; i++)
            nin += needed[i] && mg->nodes[i]->op == IR_INPUT;
        xe->in = ir_alloc(sizeof(xarg) * (size_t)(nin + 1));
        xe->out = ir_alloc(sizeof(xarg) * (size_t)(ie->n + 1));
        if (!xe->in || !xe->out) {
            s = rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
            break;
        }
        for (int i = 0; i < mg->nnodes; i++)
            if (needed[i] && mg->nodes[i]->op == IR_INPUT) {
                char base[NAME_MAX_LEN + 8];
                to_ident(base, sizeof base, mg->nodes[i]->name, "in");
                name_arg(xe->in, xe->nin, base);
                xe->in[xe->nin++].tensor = m->leaf_buf[i];
            }
        for (int k = 0; k < ie->n; k++) {
            if (ie->outputs[k]->op == IR_ASSIGN)
                continue; /* applied to the param; readable with <name>_tensor */
            const char *on = ie->output_names[k];
            size_t pre = strlen(ie->name);
            if (strncmp(on, ie->name, pre) == 0 && on[pre] == '.' && on[pre + 1])
                on += pre + 1; /* "train.loss" -> "loss" */
            char base[NAME_MAX_LEN + 8];
            to_ident(base, sizeof base, on, "out");
            /* unique against the inputs too: both are parameters of one function */
            xarg *tmp = ir_alloc(sizeof(xarg) * (size_t)(xe->nin + xe->nout + 1));
            if (!tmp) {
                s = rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
                break;
            }
            memcpy(tmp, xe->in, sizeof(xarg) * (size_t)xe->nin);
            memcpy(tmp + xe->nin, xe->out, sizeof(xarg) * (size_t)xe->nout);
            name_arg(tmp, xe->nin + xe->nout, base);
            xe->out[xe->nout] = tmp[xe->nin + xe->nout];
            ir_free(tmp);
            xe->out[xe->nout++].tensor = m->entry_buf[e] + k;
        }
    }
    ir_free(needed);
    return s;
}

/* ---- texts --------------------------------------------------------------------- */

static const char *dtype_enum(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return "KSO_F32";
    case KILN_F64: return "KSO_F64";
    case KILN_I32: return "KSO_I32";
    case KILN_I64: return "KSO_I64";
    case KILN_BOOL: return "KSO_BOOL";
    }
    return "?";
}

static const char *role_word(rt_role r)
{
    return r == RT_INPUT ? "input" : r == RT_PARAM ? "param" : "output";
}

static void tensor_type(cgen_buf *b, const rt_buf *t)
{
    char shape[256];
    ir_shape_str(shape, sizeof shape, t->node->rank, t->node->dims);
    cgen_printf(b, "%s%s", ir_dtype_kir(t->node->dtype), shape);
}

/* "int model_train(model_state *s, const float *x, ..., float *loss)" */
static void signature(cgen_buf *b, const xspec *x, const xentry *xe)
{
    cgen_printf(b, "int %s(%s_state *s", xe->fn, x->name);
    for (int i = 0; i < xe->nin; i++)
        cgen_printf(b, ", const %s *%s", cgen_ctype(x->m->bufs[xe->in[i].tensor].node->dtype),
                    xe->in[i].arg);
    for (int i = 0; i < xe->nout; i++)
        cgen_printf(b, ", %s *%s", cgen_ctype(x->m->bufs[xe->out[i].tensor].node->dtype),
                    xe->out[i].arg);
    cgen_puts(b, ")");
}

static char *make_header(const xspec *x, const rt_toolchain *tc)
{
    const kiln_module *m = x->m;
    cgen_buf b = {0};
    char guard[NAME_MAX_LEN + 8];
    size_t n = 0;
    for (const char *c = x->name; *c; c++)
        guard[n++] = (char)(*c >= 'a' && *c <= 'z' ? *c - 'a' + 'A' : *c);
    guard[n] = 0;
    cgen_printf(&b,
                "/*\n * %s.h - the C API of %s.so, exported by Kiln (kiln_export) from the "
                "graph in %s.kir.\n *\n"
                " * A program needs only this header and the .so:\n"
                " *     cc prog.c -I DIR DIR/%s.so -Wl,-rpath,DIR\n"
                " * %s.so needs %s; it was built for the CPU that exported it.\n *\n"
                " * Tensors (row-major, contiguous, native byte order):\n",
                x->name, x->name, x->name, x->name, x->name,
                x->cuda      ? "libc and, from its first run on (on the first GPU), the NVIDIA\n"
                               " * driver (libcuda.so.1; cuBLAS too where installed)"
                : tc->openmp ? "libc, libm and the OpenMP runtime (libomp)"
                             : "libc, libm");
    for (int i = 0; i < m->nbufs; i++) {
        cgen_printf(&b, " *   %-6s ", role_word(m->bufs[i].role));
        size_t at = b.len;
        comment_text(&b, m->bufs[i].name);
        cgen_printf(&b, "%*s ", b.len - at < 28 ? (int)(28 - (b.len - at)) : 0, "");
        tensor_type(&b, &m->bufs[i]);
        cgen_puts(&b, "\n");
    }
    cgen_printf(&b,
                " *\n * Every int function returns 0, or -1 with the reason in %s_error(s).\n"
                " * An entry that fails (an index out of range) changes no param.\n */\n"
                "#ifndef %s_H\n#define %s_H\n\n#include <stdbool.h>\n#include <stddef.h>\n"
                "#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n"
                "typedef struct %s_state %s_state;\n\n"
                "/* A state with every param at its exported initial value; NULL when out of "
                "memory. */\n%s_state *%s_create(void);\n"
                "void %s_free(%s_state *s); /* NULL is a no-op */\n"
                "/* The last failing call's message (\"\" when none). */\n"
                "const char *%s_error(const %s_state *s);\n\n",
                x->name, guard, guard, x->name, x->name, x->name, x->name, x->name, x->name,
                x->name, x->name);
    for (int e = 0; e < m->g->nentries; e++) {
        const xentry *xe = &x->e[e];
        cgen_puts(&b, "/* entry \"");
        comment_text(&b, m->g->entries[e].name);
        cgen_puts(&b, "\":");
        for (int i = 0; i < xe->nin; i++) {
            cgen_printf(&b, "%s%s = '", i ? ", " : " reads ", xe->in[i].arg);
            comment_text(&b, m->bufs[xe->in[i].tensor].name);
            cgen_puts(&b, "' ");
            tensor_type(&b, &m->bufs[xe->in[i].tensor]);
        }
        for (int i = 0; i < xe->nout; i++) {
            cgen_printf(&b, "%s%s = '", i ? ", " : (xe->nin ? ";\n   writes " : " writes "),
                        xe->out[i].arg);
            comment_text(&b, m->bufs[xe->out[i].tensor].name);
            cgen_puts(&b, "' ");
            tensor_type(&b, &m->bufs[xe->out[i].tensor]);
        }
        int assigns = m->g->entries[e].n - xe->nout;
        if (assigns)
            cgen_printf(&b, ";\n   updates %d param%s in place", assigns, assigns == 1 ? "" : "s");
        cgen_puts(&b,
                  xe->nout ? ".\n   An output pointer may be NULL: not copied. */\n" : ". */\n");
        signature(&b, x, xe);
        cgen_puts(&b, ";\n\n");
    }
    cgen_printf(&b,
                "/* Checkpoints: safetensors files of every param (optimizer state included), "
                "the\n   bytes kiln_module_save writes; load checks the whole file before it "
                "changes\n   anything. save replaces the file atomically. */\n"
                "int %s_save(%s_state *s, const char *path);\nint %s_load(%s_state *s, const "
                "char *path);\n\n"
                "/* The storage of a param or output by its Kiln name (\"train.lr\"), or NULL; "
                "*nbytes\n   (may be NULL) gets its size. A param written here is used by the "
                "next run. */\n"
                "void *%s_tensor(%s_state *s, const char *name, size_t *nbytes);\n\n"
                "#ifdef __cplusplus\n}\n#endif\n\n#endif /* %s_H */\n",
                x->name, x->name, x->name, x->name, x->name, x->name, guard);
    if (b.oom) {
        cgen_buf_free(&b);
        return NULL;
    }
    return b.s;
}

/* A global, hidden label over an .incbin'd file in .rodata, 64-byte aligned;
 * nul adds a 0 byte after it. */
static void incbin(cgen_buf *b, const char *label, const char *file, bool nul)
{
    cgen_printf(b,
                "__asm__(\".section .rodata.%s,\\\"a\\\",%%progbits\\n\"\n"
                "        \".balign 64\\n\"\n"
                "        \".globl %s\\n\"\n"
                "        \".hidden %s\\n\"\n"
                "        \"%s:\\n\"\n"
                "        \".incbin \\\"%s\\\"\\n\"\n"
                "%s"
                "        \".previous\\n\");\n"
                "extern const unsigned char %s[];\n",
                label, label, label, label, file, nul ? "        \".byte 0\\n\"\n" : "", label);
}

/* A table of ints: "static const int name[] = {v, ..., -1};". */
static void int_table(cgen_buf *b, const char *name, const int *v, int n)
{
    cgen_printf(b, "static const int %s[] = {", name);
    for (int i = 0; i < n; i++)
        cgen_printf(b, "%d, ", v[i]);
    cgen_puts(b, "-1};\n");
}

/* The CUDA export's launch tables (export_cuda_rt.inc's types): the kernels
 * by name (each kernel k at index k, then the epilogues of the matmuls that
 * map to a cuBLAS GEMM), each entry's launches, copies, the tensors it reads
 * and writes, and the images. */
static void cuda_tables(cgen_buf *b, const xspec *x)
{
    const kprogram *p = x->p;
    const kiln_module *m = x->m;
    size_t nk = (size_t)(p->nkernels + 1);
    int *args = ir_alloc(sizeof(int) * (size_t)(p->nbufs + 1)), nargs = 0, ngemms = 0;
    int *gemm_of = ir_alloc(sizeof(int) * nk), *nargs_of = ir_alloc(sizeof(int) * nk);
    int64_t *threads = ir_alloc(sizeof(int64_t) * nk);
    rt_gemm_plan *plan = ir_alloc(sizeof(rt_gemm_plan) * nk);
    if (!args || !gemm_of || !nargs_of || !threads || !plan) {
        b->oom = true;
        ir_free(args);
        ir_free(gemm_of);
        ir_free(nargs_of);
        ir_free(threads);
        ir_free(plan);
        return;
    }
    for (int k = 0; k < p->nkernels; k++)
        gemm_of[k] = rt_gemm_plan_of(p, &p->kernels[k], &plan[k]) ? ngemms++ : -1;
    /* cuBLASLt's values (device.h; checked against the toolkit's headers) */
    cgen_printf(b,
                "\n/* ---- cuBLASLt's values ---- */\n\nenum {\n    KSO_LT_COMPUTE_32F = %d,\n"
                "    KSO_LT_COMPUTE_32F_FAST_TF32 = %d,\n    KSO_LT_R_32F = %d,\n"
                "    KSO_LT_DESC_TRANSA = %d,\n    KSO_LT_DESC_TRANSB = %d,\n"
                "    KSO_LT_DESC_EPILOGUE = %d,\n    KSO_LT_DESC_BIAS_POINTER = %d,\n"
                "    KSO_LT_DESC_BIAS_BATCH_STRIDE = %d,\n    KSO_LT_LAYOUT_BATCH_COUNT = %d,\n"
                "    KSO_LT_LAYOUT_STRIDED_BATCH_OFFSET = %d,\n"
                "    KSO_LT_PREF_MAX_WORKSPACE_BYTES = %d,\n"
                "    KSO_LT_PREF_MIN_ALIGNMENT_A_BYTES = %d,\n    KSO_LT_EPILOGUE_DEFAULT = %d,\n"
                "    KSO_LT_EPILOGUE_BIAS = %d,\n"
                "    KSO_LT_WORKSPACE = %d\n};\n",
                RT_LT_COMPUTE_32F, RT_LT_COMPUTE_32F_FAST_TF32, RT_LT_R_32F, RT_LT_DESC_TRANSA,
                RT_LT_DESC_TRANSB, RT_LT_DESC_EPILOGUE, RT_LT_DESC_BIAS_POINTER,
                RT_LT_DESC_BIAS_BATCH_STRIDE, RT_LT_LAYOUT_BATCH_COUNT,
                RT_LT_LAYOUT_STRIDED_BATCH_OFFSET, RT_LT_PREF_MAX_WORKSPACE_BYTES,
                RT_LT_PREF_MIN_ALIGNMENT_A_BYTES, RT_LT_EPILOGUE_DEFAULT, RT_LT_EPILOGUE_BIAS,
                RT_LT_WORKSPACE);
    cgen_printf(b,
                "\n/* ---- the CUDA launch tables ---- */\n\n#define KSO_NFNS %d\n"
                "#define KSO_NGEMMS %d\n#define KSO_NCUBINS %d\n\n"
                "typedef struct {\n    int fn;\n    int64_t threads; /* 0: nothing to do */\n"
                "    int nargs;\n    const int *args; /* program buffers */\n"
                "    int gemm;        /* cuBLAS's where installed (kso_gemms), else -1 */\n"
                "} kso_launch;\n\n"
                "typedef struct { /* device.h's rt_gemm_plan, then the epilogue's launch */\n"
                "    int f64, opx, opy, ldx, ldy, m, n, k, batch;\n    long long sx, sy;\n"
                "    int a, b, epi;\n    int64_t epi_threads;\n    int epi_nargs;\n"
                "    const int *epi_args;\n"
                "    int lt, out, bias; /* device.h's rt_gemm_epi where lt */\n"
                "    int64_t out_at, bias_at;\n} kso_gemm;\n\n"
                "typedef struct {\n    const kso_launch *launches;\n    int nlaunches;\n"
                "    const int64_t *copies; /* source, destination, bytes */\n"
                "    int ncopies;\n    const unsigned char *touch; /* per tensor: 1 read, 2 "
                "written */\n    int can_fail;\n    uint64_t arena, stash;\n} kso_cuentry;\n\n"
                "typedef struct {\n    uint64_t at, bytes; /* a constant in kso_consts_begin */\n"
                "} kso_cpbuf;\n\ntypedef struct {\n    int arch;\n"
                "    const unsigned char *image;\n} kso_cubin;\n\n",
                p->nkernels + ngemms, ngemms, x->narchs);
    cgen_puts(b, "static const char *const kso_fn_names[KSO_NFNS + 1] = {\n");
    for (int k = 0; k < p->nkernels; k++)
        cgen_printf(b, "    \"%s\",\n", p->kernels[k].name);
    for (int k = 0; k < p->nkernels; k++)
        if (gemm_of[k] >= 0)
            cgen_printf(b, "    \"%s_epi\",\n", p->kernels[k].name);
    cgen_puts(b, "    NULL};\n\n");
    char name[64];
    for (int k = 0; k < p->nkernels; k++) {
        if ((threads[k] = cgen_cuda_launch(p, &p->kernels[k], false, args, &nargs_of[k])) < 0)
            b->oom = true;
        snprintf(name, sizeof name, "kso_args_%d", k);
        int_table(b, name, args, nargs_of[k]);
    }
    cgen_printf(b, "static const kso_gemm kso_gemms[KSO_NGEMMS + 1] = {\n");
    for (int k = 0; k < p->nkernels; k++) {
        if (gemm_of[k] < 0)
            continue;
        const rt_gemm_plan g = plan[k];
        int64_t epi = cgen_cuda_launch(p, &p->kernels[k], true, args, &nargs);
        b->oom = b->oom || epi < 0;
        rt_gemm_epi lt = {-1, -1, 0, 0};
        bool fused = rt_gemm_epilogue_of(p, &p->kernels[k], &lt);
        cgen_printf(b,
                    "    {%d, %d, %d, %d, %d, %d, %d, %d, %d, %lldLL, %lldLL, %d, %d, %d, %lld, "
                    "%d, (const int[]){",
                    g.f64, g.opx, g.opy, g.ldx, g.ldy, g.m, g.n, g.k, g.batch, g.sx, g.sy,
                    p->kernels[k].mm.a, p->kernels[k].mm.b, p->nkernels + gemm_of[k],
                    (long long)epi, nargs);
        for (int i = 0; i < nargs; i++)
            cgen_printf(b, "%d, ", args[i]);
        cgen_printf(b, "-1}, %d, %d, %d, %lld, %lld},\n", fused, lt.out, lt.bias,
                    (long long)lt.out_at, (long long)lt.bias_at);
    }
    cgen_puts(b, "    {0}};\n\n");
    for (int e = 0; e < p->nentries; e++) {
        const kentry *ke = &p->entries[e];
        cgen_printf(b, "static const kso_launch kso_launches_%d[] = {\n", e);
        bool can_fail = false;
        for (int i = 0; i < ke->nkernels; i++) {
            int k = ke->kernels[i];
            can_fail = can_fail || kk_can_fail(&p->kernels[k]);
            cgen_printf(b, "    {%d, %lld, %d, kso_args_%d, %d},\n", k, (long long)threads[k],
                        nargs_of[k], k, gemm_of[k]);
        }
        cgen_printf(b, "    {0}};\nstatic const int64_t kso_copies_%d[] = {", e);
        for (int c = 0; c < ke->ncopies; c++) {
            const kbuf *dst = &p->bufs[ke->copies[c].dst];
            cgen_printf(b, "%d, %d, %lld, ", ke->copies[c].src, ke->copies[c].dst,
                        (long long)(dst->numel * (int64_t)kiln_dtype_size(dst->dtype)));
        }
        cgen_printf(b, "-1};\nstatic const unsigned char kso_touch_%d[KSO_NTENSORS + 1] = {", e);
        uint64_t stash = 0;
        for (int i = 0; i < m->nbufs; i++) {
            cgen_printf(b, "%d, ", x->touch[e][i]);
            if (x->touch[e][i] & 2)
                stash += (m->bufs[i].nbytes + 255) / 256 * 256;
        }
        cgen_printf(b, "0};\n\n");
        x->e[e].stash = stash;
        x->e[e].can_fail = can_fail;
    }
    cgen_puts(b, "static const kso_cuentry kso_cuentries[KSO_NENTRIES + 1] = {\n");
    for (int e = 0; e < p->nentries; e++)
        cgen_printf(b,
                    "    {kso_launches_%d, %d, kso_copies_%d, %d, kso_touch_%d, %d, %lld, "
                    "%llu},\n",
                    e, p->entries[e].nkernels, e, p->entries[e].ncopies, e, x->e[e].can_fail,
                    (long long)p->entries[e].arena_bytes, (unsigned long long)x->e[e].stash);
    cgen_puts(b, "    {0}};\n\nstatic const kso_cpbuf kso_cpbufs[KSO_NPBUFS + 1] = {\n");
    for (int i = 0; i < p->nbufs; i++)
        cgen_printf(b, "    {%llu, %llu},\n", (unsigned long long)x->const_at[i],
                    p->bufs[i].role == KB_CONST
                        ? (unsigned long long)(p->bufs[i].numel *
                                               (int64_t)kiln_dtype_size(p->bufs[i].dtype))
                        : 0ull);
    cgen_puts(b, "    {0}};\n\n");
    char file[NAME_MAX_LEN + 32];
    snprintf(file, sizeof file, "%s.consts.bin", x->name);
    incbin(b, "kso_consts_begin", file, false);
    for (int i = 0; i < x->narchs; i++) {
        snprintf(file, sizeof file, "%s.sm_%d.cubin", x->name, x->archs[i]);
        snprintf(name, sizeof name, "kso_cubin_%d", x->archs[i]);
        incbin(b, name, file, false);
    }
    snprintf(file, sizeof file, "%s.ptx", x->name);
    incbin(b, "kso_ptx", file, true);
    cgen_puts(b, "static const kso_cubin kso_cubins[KSO_NCUBINS + 1] = {");
    for (int i = 0; i < x->narchs; i++)
        cgen_printf(b, "{%d, kso_cubin_%d}, ", x->archs[i], x->archs[i]);
    cgen_puts(b, "{0, NULL}};\n\n");
    ir_free(threads);
    ir_free(args);
    ir_free(gemm_of);
    ir_free(nargs_of);
    ir_free(plan);
}

static char *make_source(const xspec *x, const char *cmd)
{
    const kiln_module *m = x->m;
    const kprogram *p = x->p;
    const char *split = strstr(rt_export_runtime_text, "/* @tables@ */");
    if (!split)
        return NULL;
    cgen_buf b = {0};
    cgen_printf(&b,
                "/*\n * %s.c - the model \"%s\", exported by Kiln (kiln_export). Built in this "
                "directory with\n *     ",
                x->name, x->name);
    comment_text(&b, cmd);
    if (x->cuda) {
        cgen_printf(&b,
                    "\n * It is the host side of the JIT's CUDA code for %s.kir: the launch "
                    "tables of\n * the kernels of %s.cu, whose images (%s.sm_*.cubin, %s.ptx) "
                    "it embeds, the device\n * runtime, the metadata kiln_module_open reads "
                    "and the standalone API of %s.h.\n */\n",
                    x->name, x->name, x->name, x->name, x->name);
        cgen_printf(&b,
                    "#include <stddef.h>\n#include <stdint.h>\n\n%s\n\n"
                    "#define KILN_EXPORT __attribute__((visibility(\"default\")))\n"
                    "#define KSO_DEVICE 1\n\nKILN_EXPORT const char kiln_abi[] = \"%s\";\n",
                    KILN_CTX_TEXT, KILN_ABI_TAG);
    } else {
        cgen_printf(&b,
                    "\n * It is the JIT's code for %s.kir, the metadata kiln_module_open reads, "
                    "and the\n * standalone API of %s.h.\n */\n",
                    x->name, x->name);
        cgen_puts(&b, x->source);
    }
    cgen_printf(&b,
                "\n/* ==== the export ==== */\n\n#define kso_state %s_state\n#include \"%s.h\"\n\n",
                x->name, x->name);
    cgen_printf(&b, "%.*s", (int)(split - rt_export_runtime_text), rt_export_runtime_text);
    /* the tables */
    cgen_printf(&b,
                "/* ---- this model's tables ---- */\n\n#define KSO_NTENSORS %d\n#define "
                "KSO_NPBUFS %d\n#define KSO_NENTRIES %d\n#define KSO_NPARAMS %d\n"
                "#define KSO_SEED UINT64_C(%llu)\n",
                m->nbufs, p->nbufs, m->g->nentries, x->nparams, (unsigned long long)m->g->seed);
    /* the entries' return codes (ir/abi.h; the kernels print the enum only when they fail) */
    cgen_printf(&b, "#define KSO_RUNERR_INDEX %d\n#define KSO_RUNERR_ZERO_DIV %d\n\n",
                KILN_RUNERR_INDEX, KILN_RUNERR_ZERO_DIV);
    char file[NAME_MAX_LEN + 16];
    snprintf(file, sizeof file, "%s.params.bin", x->name);
    incbin(&b, "kso_params_begin", file, false);
    cgen_puts(&b, "\nstatic const kso_tensor kso_tensors[KSO_NTENSORS + 1] = {\n");
    for (int i = 0; i < m->nbufs; i++) {
        const rt_buf *t = &m->bufs[i];
        cgen_puts(&b, "    {");
        string_literal(&b, t->name);
        cgen_printf(&b, ", %s, %s, %d, {",
                    t->role == RT_INPUT   ? "KSO_INPUT"
                    : t->role == RT_PARAM ? "KSO_PARAM"
                                          : "KSO_OUTPUT",
                    dtype_enum(t->node->dtype), t->node->rank);
        for (int d = 0; d < t->node->rank; d++)
            cgen_printf(&b, "%s%lld", d ? ", " : "", (long long)t->node->dims[d]);
        cgen_printf(&b, "}, %zu, %llu, %d},\n", t->nbytes, (unsigned long long)x->init[i],
                    t->shares);
    }
    cgen_puts(&b, "    {0}};\n\nstatic const kso_pbuf kso_pbufs[KSO_NPBUFS + 1] = {\n");
    for (int i = 0; i < p->nbufs; i++) {
        const kbuf *kb = &p->bufs[i];
        if (kb->role == KB_TEMP)
            cgen_printf(&b, "    {KSO_TEMP, -1, %lld},\n", (long long)kb->offset);
        else if (kb->role == KB_CONST)
            cgen_puts(&b, "    {KSO_CONST, -1, 0},\n");
        else
            cgen_printf(&b, "    {KSO_TENSOR, %d, 0},\n", x->modbuf[i]);
    }
    cgen_puts(&b, "    {0}};\n\n");
    for (int e = 0; e < m->g->nentries; e++) {
        cgen_printf(&b, "static const int kso_in_%d[] = {", e);
        for (int i = 0; i < x->e[e].nin; i++)
            cgen_printf(&b, "%d, ", x->e[e].in[i].tensor);
        cgen_puts(&b, "-1};\n");
    }
    cgen_puts(&b, "static const kso_entry kso_entries[KSO_NENTRIES + 1] = {\n");
    for (int e = 0; e < m->g->nentries; e++) { /* CUDA: the device runs the entries */
        cgen_printf(&b, "    {\"%s\", ", x->e[e].fn);
        cgen_printf(&b, x->cuda ? "NULL, 0, " : "kiln_entry_%d, %lld, ", e,
                    (long long)p->entries[e].arena_bytes);
        cgen_printf(&b, "%d, %d, kso_in_%d, %d},\n", m->entry_buf[e], m->g->entries[e].n, e,
                    x->e[e].nin);
    }
    cgen_puts(&b, "    {0}};\n\nstatic const int kso_param_order[KSO_NPARAMS + 1] = {");
    for (int i = 0; i < x->nparams; i++)
        cgen_printf(&b, "%d, ", x->order[i]);
    cgen_puts(&b, "-1};\n\n");
    cgen_puts(&b, split + strlen("/* @tables@ */"));
    if (x->cuda) {
        cuda_tables(&b, x);
        cgen_puts(&b, rt_export_cuda_runtime_text);
    }
    /* the public API */
    const char *n = x->name;
    cgen_printf(&b,
                "\n/* ---- the API of %s.h ---- */\n\n"
                "KILN_EXPORT %s_state *%s_create(void)\n{\n    return kso_create();\n}\n\n"
                "KILN_EXPORT void %s_free(%s_state *s)\n{\n    kso_destroy(s);\n}\n\n"
                "KILN_EXPORT const char *%s_error(const %s_state *s)\n{\n"
                "    return kso_error(s);\n}\n\n",
                n, n, n, n, n, n, n);
    for (int e = 0; e < m->g->nentries; e++) {
        const xentry *xe = &x->e[e];
        cgen_puts(&b, "KILN_EXPORT ");
        signature(&b, x, xe);
        cgen_puts(&b, "\n{\n    const void *in[] = {");
        for (int i = 0; i < xe->nin; i++)
            cgen_printf(&b, "%s, ", xe->in[i].arg);
        cgen_puts(&b, "NULL};\n    void *out[] = {");
        for (int k = 0, j = 0; k < m->g->entries[e].n; k++)
            if (j < xe->nout && xe->out[j].tensor == m->entry_buf[e] + k)
                cgen_printf(&b, "%s, ", xe->out[j++].arg);
            else
                cgen_puts(&b, "NULL, ");
        cgen_printf(&b, "NULL};\n    return kso_run(s, %d, in, out);\n}\n\n", e);
    }
    cgen_printf(&b,
                "KILN_EXPORT int %s_save(%s_state *s, const char *path)\n{\n"
                "    return kso_save(s, \"%s_save\", path);\n}\n\n"
                "KILN_EXPORT int %s_load(%s_state *s, const char *path)\n{\n"
                "    return kso_load(s, \"%s_load\", path);\n}\n\n"
                "KILN_EXPORT void *%s_tensor(%s_state *s, const char *name, size_t *nbytes)\n{\n"
                "    return kso_tensor_data(s, name, nbytes);\n}\n\n",
                n, n, n, n, n, n, n, n);
    /* what kiln_module_open reads: first, without loading, the section */
    cgen_puts(&b, "/* ---- the metadata of kiln_module_open (ir/abi.h) ---- */\n\n");
    cgen_printf(&b,
                "__attribute__((section(\"%s\"), used)) static const char kso_mark[] =\n"
                "    \"%s%s\";\n",
                RT_EXPORT_SECTION, RT_EXPORT_MARK, KILN_ABI_TAG);
    cgen_puts(&b, KILN_EXPORT_TEXT);
    cgen_puts(&b, "\n\n");
    snprintf(file, sizeof file, "%s.kir", x->name);
    incbin(&b, "kso_kir_begin", file, true);
    cgen_printf(&b,
                "extern const kiln_export_info kiln_export_meta;\n"
                "KILN_EXPORT const kiln_export_info kiln_export_meta = {\n"
                "    %d, \"%s\", (const char *)kso_kir_begin, kso_params_begin, %llu,\n"
                "    UINT64_C(0x%016llx)};\n",
                KILN_EXPORT_VERSION, n, (unsigned long long)x->params_bytes,
                (unsigned long long)XXH3_64bits(x->source, strlen(x->source)));
    if (x->cuda) {
        cgen_printf(&b, "\n%s\n\nstatic const int32_t kso_archs[] = {", KILN_EXPORT_CUDA_TEXT);
        for (int i = 0; i < x->narchs; i++)
            cgen_printf(&b, "%d, ", x->archs[i]);
        cgen_puts(&b, "0};\nstatic const unsigned char *const kso_cubin_list[] = {");
        for (int i = 0; i < x->narchs; i++)
            cgen_printf(&b, "kso_cubin_%d, ", x->archs[i]);
        cgen_printf(&b,
                    "NULL};\nextern const kiln_export_cuda kiln_export_cuda_images;\n"
                    "KILN_EXPORT const kiln_export_cuda kiln_export_cuda_images = {\n"
                    "    %d, kso_archs, kso_cubin_list, kso_ptx};\n",
                    x->narchs);
    }
    if (b.oom) {
        cgen_buf_free(&b);
        return NULL;
    }
    return b.s;
}

/* ---- kiln_export ------------------------------------------------------------------ */

/* The module kiln_module_open will see: built from the graph's .kir text. */
static kiln_status module_from_text(kiln_graph *g, const kiln_compile_opts *opts, kiln_module **m,
                                    char **kir)
{
    kiln_graph *c = ir_graph_clone(g);
    if (!c)
        return rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
    kiln_status s = ir_verify(c);
    if (s != KILN_OK) {
        rt_compile_fail(g, s, "kiln_export: %s", kiln_graph_error(c));
        kiln_graph_free(c);
        return s;
    }
    *kir = rt_graph_text(c);
    kiln_graph_free(c);
    if (!*kir)
        return rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
    char err[512] = "";
    kiln_graph *back = kiln_graph_parse(*kir, err, sizeof err);
    if (!back)
        return rt_compile_fail(g, strstr(err, "out of memory") ? KILN_ERR_NOMEM : KILN_ERR_INVALID,
                               "kiln_export: internal error: the graph's .kir text does not "
                               "parse: %s",
                               err);
    return rt_prepare(g, back, opts, "kiln_export", m);
}

static kiln_status write_file(kiln_graph *g, const char *dir, const char *file, const void *data,
                              size_t n)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (rt_write_atomic(path, data, n))
        return KILN_OK;
    return rt_compile_fail(g, KILN_ERR_IO, "kiln_export: cannot write '%s': %s", path,
                           strerror(errno));
}

/* A CUDA export's other files: <name>.cu (the kernels, to read), the
 * constants, a cubin per architecture and the PTX, compiled by NVRTC. */
static kiln_status write_cuda_files(kiln_graph *g, const xspec *x, const char *dir)
{
    char file[NAME_MAX_LEN + 32];
    snprintf(file, sizeof file, "%s.cu", x->name);
    kiln_status s = write_file(g, dir, file, x->source, strlen(x->source));
    unsigned char *consts = ir_calloc(x->consts_bytes ? x->consts_bytes : 1);
    if (!consts && s == KILN_OK)
        s = rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
    for (int i = 0; i < x->p->nbufs && s == KILN_OK; i++) {
        const kbuf *b = &x->p->bufs[i];
        if (b->role == KB_CONST && b->data)
            memcpy(consts + x->const_at[i], b->data, (size_t)b->numel * kiln_dtype_size(b->dtype));
    }
    snprintf(file, sizeof file, "%s.consts.bin", x->name);
    s = s ? s : write_file(g, dir, file, consts, x->consts_bytes);
    ir_free(consts);
    for (int i = 0; i <= x->narchs && s == KILN_OK; i++) { /* the cubins, then the PTX */
        bool ptx = i == x->narchs;
        int arch = ptx ? x->ptx_arch : x->archs[i];
        void *image = NULL;
        size_t n = 0;
        char *log = NULL;
        s = ptx ? rt_nvrtc_ptx(x->source, "kiln.cu", arch, &image, &n, &log)
                : rt_nvrtc_compile(x->source, "kiln.cu", arch, &image, &n, &log);
        if (s != KILN_OK)
            rt_compile_fail(g, s,
                            "kiln_export: NVRTC could not compile the kernels for %s_%d:\n%.900s",
                            ptx ? "compute" : "sm", arch, log ? log : "(no log)");
        if (s == KILN_OK && ptx)
            n = strnlen(image, n); /* .incbin adds the NUL */
        if (ptx)
            snprintf(file, sizeof file, "%s.ptx", x->name);
        else
            snprintf(file, sizeof file, "%s.sm_%d.cubin", x->name, arch);
        s = s ? s : write_file(g, dir, file, image, n);
        ir_free(image);
        ir_free(log);
    }
    return s;
}

/* Compiles <name>.c into <name>.so in dir (a temporary name, then renamed). */
static kiln_status build_so(kiln_graph *g, const rt_toolchain *tc, const char *dir,
                            const char *name)
{
    char src[NAME_MAX_LEN + 8], tmp[NAME_MAX_LEN + 48], err[4500], from[4500], to[4500];
    char prefix[NAME_MAX_LEN + 8];
    snprintf(prefix, sizeof prefix, "%s.so.", name);
    rt_remove_stale(dir, prefix, 60); /* what exports killed mid-build left */
    static atomic_uint seq;
    unsigned call = atomic_fetch_add(&seq, 1u);
    snprintf(src, sizeof src, "%s.c", name);
    snprintf(tmp, sizeof tmp, "%s.so.tmp.%ld.%u", name, (long)getpid(), call);
    snprintf(err, sizeof err, "%s/%s.so.tmp.%ld.%u.err", dir, name, (long)getpid(), call);
    snprintf(from, sizeof from, "%s/%s", dir, tmp);
    snprintf(to, sizeof to, "%s/%s.so", dir, name);
    int rc = rt_toolchain_run(tc, dir, src, tmp, err);
    if (rc != 0) {
        size_t n = 0;
        char *diag = rt_read_file(err, &n);
        rt_compile_fail(g, KILN_ERR_COMPILE, "kiln_export: %s failed (exit %d) on %s/%s:\n%.700s",
                        tc->cc, rc, dir, src, diag ? diag : "(no diagnostics)");
        ir_free(diag);
        unlink(err);
        unlink(from);
        return KILN_ERR_COMPILE;
    }
    unlink(err);
    if (rename(from, to) != 0) {
        int e = errno;
        unlink(from);
        return rt_compile_fail(g, KILN_ERR_IO, "kiln_export: cannot write '%s': %s", to,
                               strerror(e));
    }
    return KILN_OK;
}

/* The architectures a CUDA export carries cubins for: $KILN_CUDA_ARCHS (a
 * list such as "80,90"), else this machine's GPU's, else 80 and 90; the PTX
 * is for the lowest of them and 75, which every GPU from Turing on loads. */
static kiln_status cuda_archs(kiln_graph *g, xspec *x)
{
    const char *env = getenv("KILN_CUDA_ARCHS");
    int cc = rt_cuda_device_cc();
    x->narchs = 0;
    if (env && *env) {
        const char *c = env;
        while (*c && x->narchs < MAX_ARCHS) {
            char *end;
            long v = strtol(c, &end, 10);
            if (end == c || v < 50 || v > 199 || (*end && (*end != ',' || !end[1])))
                break;
            x->archs[x->narchs++] = (int)v;
            c = *end ? end + 1 : end;
        }
        if (*c || x->narchs == 0)
            return rt_compile_fail(g, KILN_ERR_INVALID,
                                   "kiln_export: KILN_CUDA_ARCHS='%s' is not a list of at most "
                                   "%d compute capabilities such as 80,90",
                                   env, MAX_ARCHS);
    } else if (cc) {
        x->archs[x->narchs++] = cc;
    } else {
        x->archs[x->narchs++] = 80;
        x->archs[x->narchs++] = 90;
    }
    x->ptx_arch = 75;
    for (int i = 0; i < x->narchs; i++)
        x->ptx_arch = x->archs[i] < x->ptx_arch ? x->archs[i] : x->ptx_arch;
    return KILN_OK;
}

/* Per program buffer, a constant's offset in the constants blob (each at a
 * multiple of 64 bytes; *bytes: the blob's size); NULL when out of memory. */
static uint64_t *consts_layout(const kprogram *p, uint64_t *bytes)
{
    uint64_t *at = ir_calloc(sizeof(uint64_t) * (size_t)(p->nbufs + 1));
    *bytes = 0;
    for (int i = 0; at && i < p->nbufs; i++)
        if (p->bufs[i].role == KB_CONST) {
            at[i] = *bytes;
            *bytes +=
                ((uint64_t)p->bufs[i].numel * kiln_dtype_size(p->bufs[i].dtype) + 63) / 64 * 64;
        }
    return at;
}

/* Everything an export needs short of writing files: checks the request,
 * builds the module from the .kir text, lowers and renders it and names the
 * API. On failure the message is on g and x holds nothing to free. */
static kiln_status export_prepare(kiln_graph *g, const kiln_compile_opts *opts, const char *name,
                                  xspec *x, char **kir, rt_toolchain *tc)
{
    *kir = NULL;
    memset(x, 0, sizeof *x);
    x->name = name;
    kiln_target target = opts ? opts->target : KILN_TARGET_C;
    if (target != KILN_TARGET_C && target != KILN_TARGET_CUDA)
        return rt_compile_fail(g, KILN_ERR_INVALID,
                               "kiln_export: only KILN_TARGET_C and KILN_TARGET_CUDA code can be "
                               "exported (the interpreter generates none)");
    x->cuda = target == KILN_TARGET_CUDA;
    kiln_status s = x->cuda ? cuda_archs(g, x) : KILN_OK;
    if (s != KILN_OK)
        return s;
    if (!is_ident(name))
        return rt_compile_fail(g, KILN_ERR_INVALID,
                               "kiln_export: the name '%s' is not a C identifier (letters, "
                               "digits and '_', not starting with a digit, at most %d)",
                               name, NAME_MAX_LEN);
    char prefixed[NAME_MAX_LEN + 8];
    snprintf(prefixed, sizeof prefixed, "%s_", name);
    if (c_word(name) || own_prefix(prefixed))
        return rt_compile_fail(g, KILN_ERR_INVALID,
                               "kiln_export: the name '%s' is a C keyword or macro, or the "
                               "export's own prefix (kiln, kso): choose another",
                               name);
    s = rt_check_names(g, "kiln_export");
    kiln_module *m = NULL;
    if (s == KILN_OK)
        s = module_from_text(g, opts, &m, kir);
    if (s == KILN_OK) {
        x->m = m;
        if (x->cuda)
            rt_dexec_parts(m, &x->p, &x->source, &x->modbuf, &x->touch);
        else
            rt_cexec_parts(m, &x->p, &x->source, &x->modbuf);
        s = make_spec(x, g);
    }
    if (s == KILN_OK && x->cuda && !(x->const_at = consts_layout(x->p, &x->consts_bytes)))
        s = rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
    if (s == KILN_OK)
        s = rt_toolchain_find(g, opts, "kiln_export", tc);
    if (s == KILN_OK && x->cuda)
        tc->openmp = false;       /* the host side has no parallel loops */
    if (s == KILN_OK && !x->cuda) /* built as the JIT builds it: the same vectors, sums */
        tc->vector_width = m->vector_width;
    if (s != KILN_OK) {
        g->compile_error = true; /* the graph stays usable (ir_begin) */
        if (x->m)
            spec_free(x);
        rt_module_destroy(m);
        ir_free(*kir);
        *kir = NULL;
        x->m = NULL;
    }
    return s;
}

static void export_done(xspec *x, char *kir)
{
    kiln_module *m = x->m;
    spec_free(x);
    rt_module_destroy(m);
    ir_free(kir);
}

kiln_status rt_export_header(kiln_graph *g, const kiln_compile_opts *opts, char **header)
{
    *header = NULL;
    if (!ir_begin(g))
        return g->status;
    xspec x;
    char *kir = NULL;
    rt_toolchain tc;
    const char *name = opts && opts->name ? opts->name : "model";
    kiln_status s = export_prepare(g, opts, name, &x, &kir, &tc);
    if (s != KILN_OK)
        return s;
    if (!(*header = make_header(&x, &tc)))
        s = rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
    export_done(&x, kir);
    return s;
}

kiln_status kiln_export(kiln_graph *g, const kiln_compile_opts *opts, const char *dir)
{
    if (!g)
        return KILN_ERR_INVALID;
    if (!ir_begin(g))
        return g->status;
    if (!dir)
        return rt_compile_fail(g, KILN_ERR_INVALID, "kiln_export: the directory is NULL");
    const char *name = opts && opts->name ? opts->name : "model";
    char why[512];
    if (opts && opts->target == KILN_TARGET_CUDA && !rt_nvrtc_available(why, sizeof why))
        return rt_compile_fail(g, KILN_ERR_DEVICE,
                               "kiln_export: exporting for the CUDA target needs NVRTC: %s", why);
    xspec x;
    char *kir = NULL, *header = NULL, *source = NULL;
    rt_toolchain tc;
    kiln_status s = export_prepare(g, opts, name, &x, &kir, &tc);
    if (s != KILN_OK)
        return s;
    /* the compiler runs in dir: every path handed to it is absolute */
    char absdir[4096];
    if (!rt_mkdir_p(dir) || !realpath(dir, absdir))
        s = rt_compile_fail(g, KILN_ERR_IO, "kiln_export: cannot create the directory '%s': %s",
                            dir, strerror(errno));
    else
        dir = absdir;
    kiln_module *m = x.m;
    unsigned char *params = NULL;
    if (s == KILN_OK) {
        params = ir_calloc(x.params_bytes ? x.params_bytes : 1);
        char cmd[5000], so[NAME_MAX_LEN + 8], src[NAME_MAX_LEN + 8];
        snprintf(so, sizeof so, "%s.so", name);
        snprintf(src, sizeof src, "%s.c", name);
        rt_toolchain_command(&tc, src, so, cmd, sizeof cmd);
        header = make_header(&x, &tc);
        source = make_source(&x, cmd);
        if (!params || !header || !source)
            s = rt_compile_fail(g, KILN_ERR_NOMEM, "kiln_export: out of memory");
    }
    if (s == KILN_OK) {
        for (int i = 0; i < m->nbufs; i++)
            if (m->bufs[i].role == RT_PARAM)
                memcpy(params + x.init[i], m->bufs[i].data, m->bufs[i].nbytes);
        const struct {
            const char *ext;
            const void *data;
            size_t n;
        } files[] = {{"kir", kir, strlen(kir)},
                     {"params.bin", params, x.params_bytes},
                     {"h", header, strlen(header)},
                     {"c", source, strlen(source)}};
        for (size_t i = 0; i < sizeof files / sizeof files[0] && s == KILN_OK; i++) {
            char file[NAME_MAX_LEN + 16];
            snprintf(file, sizeof file, "%s.%s", name, files[i].ext);
            s = write_file(g, dir, file, files[i].data, files[i].n);
        }
    }
    if (s == KILN_OK && x.cuda)
        s = write_cuda_files(g, &x, dir);
    if (s == KILN_OK)
        s = build_so(g, &tc, dir, name);
    export_done(&x, kir);
    ir_free(header);
    ir_free(source);
    ir_free(params);
    return s;
}

/* ---- kiln_module_open ------------------------------------------------------------ */

/* Checks that handle is a Kiln export of this ABI; its metadata, or NULL. */
static const kiln_export_info *export_meta(void *handle, const char *path, kiln_status *s)
{
    const char *abi = dlsym(handle, "kiln_abi");
    if (!abi) {
        *s = rt_open_fail(KILN_ERR_LOAD, "'%s' is not a Kiln export (it has no kiln_abi)", path);
        return NULL;
    }
    if (strnlen(abi, 32) == 32 || strcmp(abi, KILN_ABI_TAG) != 0) {
        *s = rt_open_fail(KILN_ERR_LOAD,
                          "'%s' was built for %.31s; this Kiln runs %s code: export the model "
                          "again with this Kiln",
                          path, strnlen(abi, 32) < 32 ? abi : "another ABI", KILN_ABI_TAG);
        return NULL;
    }
    const kiln_export_info *meta = dlsym(handle, "kiln_export_meta");
    if (!meta) {
        *s = rt_open_fail(KILN_ERR_LOAD,
                          "'%s' is Kiln code but not an export (it has no kiln_export_meta); open "
                          "the .so that kiln_export wrote",
                          path);
        return NULL;
    }
    if (meta->version != KILN_EXPORT_VERSION) {
        *s = rt_open_fail(KILN_ERR_LOAD,
                          "'%s' has export metadata version %u; this Kiln reads version %d", path,
                          meta->version, KILN_EXPORT_VERSION);
        return NULL;
    }
    return meta;
}

/* m's device: the first GPU, loading the export's image for its architecture
 * (the driver keeps its own copy: the .so may be closed after). */
static kiln_status open_cuda(kiln_module *m, kiln_graph *pg, const kiln_export_cuda *cuda,
                             const char *path)
{
    const kprogram *p;
    const char *source;
    rt_dexec_parts(m, &p, &source, NULL, NULL);
    rt_cuda_images images = {cuda->ncubins, cuda->archs, cuda->cubins, cuda->ptx};
    char why[1024];
    bool hit = false;
    kiln_status s = KILN_OK;
    rt_device *dev = rt_cudev_new(p, source, &images, NULL, &hit, &s, why, sizeof why);
    if (!dev)
        return rt_compile_fail(pg, s, "kiln_module_open: '%s' is a CUDA export: %s%s", path,
                               s == KILN_ERR_DEVICE ? "the GPU cannot be used: " : "", why);
    return rt_dexec_attach(m, pg, dev, "kiln_module_open");
}

kiln_status kiln_module_open(const char *so_path, kiln_module **out)
{
    rt_open_set("");
    if (out)
        *out = NULL;
    if (!out)
        return rt_open_fail(KILN_ERR_INVALID, "out is NULL");
    if (!so_path)
        return rt_open_fail(KILN_ERR_INVALID, "the path is NULL");
    /* a name without '/' would be searched for in the library path */
    char path[4200];
    snprintf(path, sizeof path, "%s%s", strchr(so_path, '/') ? "" : "./", so_path);
    char why[256];
    kiln_status checked = rt_check_export_file(path, why, sizeof why);
    if (checked == KILN_ERR_NOT_FOUND || checked == KILN_ERR_IO)
        return rt_open_fail(checked, "cannot open '%s': %s", so_path, why);
    if (checked != KILN_OK)
        return rt_open_fail(checked, "'%s': %s; it was not loaded", so_path, why);
    dlerror();
    void *h = rt_load_code(path);
    if (!h) {
        const char *dl = dlerror();
        return rt_open_fail(KILN_ERR_LOAD, "cannot load '%s': %s", so_path,
                            dl ? dl : "unknown error");
    }
    kiln_status s = KILN_OK;
    const kiln_export_info *meta = export_meta(h, so_path, &s);
    if (!meta) {
        dlclose(h);
        return s;
    }
    char err[512] = "";
    kiln_graph *pg = kiln_graph_parse(meta->kir, err, sizeof err);
    if (!pg) {
        dlclose(h);
        return rt_open_fail(strstr(err, "out of memory") ? KILN_ERR_NOMEM : KILN_ERR_FORMAT,
                            "'%s': the embedded graph does not parse: %s", so_path, err);
    }
    /* a CUDA export runs its images on the GPU through the device executor */
    const kiln_export_cuda *cuda = dlsym(h, "kiln_export_cuda_images");
    kiln_module *m = NULL;
    kiln_graph *mg = ir_graph_clone(pg);
    kiln_compile_opts target = {.target = cuda ? KILN_TARGET_CUDA : KILN_TARGET_C};
    s = mg ? rt_prepare(pg, mg, &target, "kiln_module_open", &m)
           : rt_compile_fail(pg, KILN_ERR_NOMEM, "kiln_module_open: out of memory");
    if (s == KILN_OK) {
        uint64_t want = 0;
        for (int i = 0; i < m->nbufs; i++)
            if (m->bufs[i].role == RT_PARAM)
                want += (m->bufs[i].nbytes + 63) / 64 * 64;
        if (want != meta->params_bytes)
            s = rt_compile_fail(pg, KILN_ERR_FORMAT,
                                "kiln_module_open: '%s': the embedded params are %llu bytes; its "
                                "graph's params take %llu",
                                so_path, (unsigned long long)meta->params_bytes,
                                (unsigned long long)want);
        for (int i = 0, at = 0; i < m->nbufs && s == KILN_OK; i++)
            if (m->bufs[i].role == RT_PARAM) {
                memcpy(m->bufs[i].data, meta->params + at, m->bufs[i].nbytes);
                at += (int)((m->bufs[i].nbytes + 63) / 64 * 64);
            }
    }
    if (s == KILN_OK) {
        const kprogram *p;
        const char *source;
        const int *modbuf;
        if (cuda)
            rt_dexec_parts(m, &p, &source, NULL, NULL);
        else
            rt_cexec_parts(m, &p, &source, &modbuf);
        if (XXH3_64bits(source, strlen(source)) != meta->source_hash)
            s = rt_compile_fail(pg, KILN_ERR_LOAD,
                                "kiln_module_open: '%s' was exported by another version of "
                                "Kiln (this one generates other code for its graph): export "
                                "the model again with this Kiln",
                                so_path);
    }
    if (s == KILN_OK && cuda) {
        s = open_cuda(m, pg, cuda, so_path);
    } else if (s == KILN_OK) {
        s = rt_cexec_load(m, pg, h, "kiln_module_open");
        h = NULL; /* the module owns it now */
    }
    if (s != KILN_OK) {
        /* the message on pg already starts "kiln_module_open: " */
        rt_open_set(kiln_graph_error(pg));
        rt_module_destroy(m);
        if (h)
            dlclose(h);
        kiln_graph_free(pg);
        return s;
    }
    if (h) /* a CUDA export: the driver holds its image */
        dlclose(h);
    kiln_graph_free(pg);
    *out = m;
    return KILN_OK;
}
