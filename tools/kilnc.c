/*
 * kilnc - Kiln's command-line compiler, runner and IR inspector.
 *
 *   kilnc MODEL.kir [--emit=ir|c|cuda|dot|h|so] [-o OUT] [--target c|cuda]
 *             [--print-after-all] [--stats]
 *   kilnc run MODEL.kir --entry NAME [--in NAME=FILE.npy]... [--out NAME=FILE.npy]...
 *             [--print NAME]... [--runs N] [--target c|cuda|interp]
 *
 * Compiling reads and verifies a .kir graph (errors name the line and
 * column), then writes it in canonical .kir form (--emit=ir) or as the C the
 * C target compiles (--emit=c: the pass pipeline and the renderer, no C
 * compiler needed) or Graphviz (--emit=dot), or exports it (kiln_export):
 * --emit=so writes OUT (default <model>.so) with its header and sources
 * beside it, --emit=h only the header. --stats describes the compiled
 * program on stderr; --print-after-all prints the graph after every pass
 * (KILN_DEBUG=2). --emit=cuda prints the CUDA kernels the CUDA target
 * compiles with NVRTC.
 * `run` compiles the graph, sets inputs and params from .npy files, runs an
 * entry and writes or prints named tensors. Exit status: 0 done, 1 the input
 * or a run failed, 2 bad usage.
 */
#include "ir/ir.h"
#include "ir/kernel.h"
#include "runtime/rt.h"

#include <errno.h>
#include <kiln.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: kilnc MODEL.kir [--emit=ir|c|cuda|dot|h|so] [-o OUT] [--target c|cuda]\n"
    "                 [--print-after-all] [--stats]\n"
    "       kilnc run MODEL.kir --entry NAME [--in NAME=FILE.npy]... [--out NAME=FILE.npy]...\n"
    "                 [--print NAME]... [--runs N] [--target c|cuda|interp]\n"
    "       kilnc tune MODEL.kir [--seconds S] [--threads N]\n"
    "\n"
    "Reads a .kir graph ('-' for standard input) and checks it; parse errors name the\n"
    "line and column.\n"
    "  --emit=ir           canonical .kir text (default)\n"
    "  --emit=c            the C source the C target compiles for the graph\n"
    "  --emit=cuda         the CUDA kernels (for NVRTC) of the graph\n"
    "  --emit=dot          Graphviz of the compiled graph, fused kernels as clusters\n"
    "  --emit=so           export: OUT (default MODEL.so in this directory) plus, beside\n"
    "                      it, OUT's .h, .c, .kir and .params.bin; the name of OUT\n"
    "                      without .so names the C API (kiln_export)\n"
    "  --emit=h            only the header --emit=so would write\n"
    "  --target c|cuda     the target --emit=so|h exports (default c)\n"
    "  -o OUT              write to OUT instead of standard output\n"
    "  --print-after-all   print the graph after every pass and the kernel program\n"
    "                      (standard error)\n"
    "  --stats             kernels, fused groups, FLOPs, bytes and the memory plan\n"
    "                      (standard error)\n"
    "run compiles the graph and runs one entry:\n"
    "  --entry NAME        the entry to run (required)\n"
    "  --in NAME=FILE      set input or param NAME from a .npy file (repeatable)\n"
    "  --out NAME=FILE     write tensor NAME to a .npy file after the runs (repeatable)\n"
    "  --print NAME        print tensor NAME as PyTorch does (repeatable)\n"
    "  --runs N            run the entry N times (default 1)\n"
    "  --target T          c (default), cuda or interp (the reference interpreter)\n"
    "tune times GEMM schedules for each matmul shape of the graph on this machine and\n"
    "keeps the fastest in the compile cache, where every later compile on this CPU with\n"
    "the same thread count finds them; it prints each shape's schedule (standard error):\n"
    "  --seconds S         time per new shape (default 3)\n"
    "  --threads N         the thread count to tune for (default: every core)\n"
    "  --help              this text\n";

static char *read_all(FILE *f)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb)
            free(buf);
        buf = nb;
    }
    if (buf)
        buf[n] = 0;
    return buf;
}

/* Reads and parses the .kir file; NULL (with a message) on failure. */
static kiln_graph *load(const char *in)
{
    FILE *f = strcmp(in, "-") == 0 ? stdin : fopen(in, "rb");
    if (!f) {
        fprintf(stderr, "kilnc: cannot open '%s'\n", in);
        return NULL;
    }
    char *text = read_all(f);
    if (f != stdin)
        fclose(f);
    if (!text) {
        fprintf(stderr, "kilnc: out of memory reading '%s'\n", in);
        return NULL;
    }
    char err[512];
    kiln_graph *g = kiln_graph_parse(text, err, sizeof err);
    free(text);
    if (!g)
        fprintf(stderr, "%s:%s\n", in, err);
    return g;
}

/* ---- compile ------------------------------------------------------------------- */

static void print_stats(const kprogram *p, FILE *f)
{
    static const char *const role[] = {"inputs", "params", "outputs", "temps", "constants"};
    kp_stats st;
    kp_stats_of(p, &st);
    fprintf(f, "kernels: %d (%d fused groups: kernels computing more than one graph node)\n",
            st.kernels, st.groups);
    fprintf(f, "flops: %.0f (2 per matmul multiply-add, 1 per scalar op)\n", st.flops);
    int64_t bytes[5] = {0, 0, 0, 0, 0};
    int count[5] = {0, 0, 0, 0, 0};
    for (int i = 0; i < p->nbufs; i++) {
        const kbuf *b = &p->bufs[i];
        bytes[b->role] += b->numel * (int64_t)kiln_dtype_size(b->dtype);
        count[b->role]++;
    }
    fprintf(f, "buffers:");
    for (int r = 0; r < 5; r++)
        fprintf(f, "%s %d %s (%lld bytes)", r ? "," : "", count[r], role[r], (long long)bytes[r]);
    fprintf(f, "\n");
    for (int e = 0; e < p->nentries; e++) {
        const kentry *x = &p->entries[e];
        double ef = 0;
        for (int i = 0; i < x->nkernels; i++)
            ef += kk_flops(&p->kernels[x->kernels[i]]);
        fprintf(f,
                "entry \"%s\": %d kernels, %.0f flops, arena %lld bytes (liveness lower bound "
                "%lld), %d copies, %d in place\n",
                x->name ? x->name : "", x->nkernels, ef, (long long)x->arena_bytes,
                (long long)x->live_bytes, x->ncopies, x->nshares);
    }
    for (int k = 0; k < p->nkernels; k++)
        fprintf(f, "  %-32s %3d graph nodes %14.0f flops\n", p->kernels[k].name,
                p->kernels[k].nnodes, kk_flops(&p->kernels[k]));
}

/* The export name and directory for OUT ("dir/name.so" or "dir/name.h"), or
 * from the input's file name when there is no OUT. */
static void export_target(const char *in, const char *out, const char *ext, char *dir, char *name,
                          size_t cap)
{
    const char *path = out ? out : in;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (out && slash)
        snprintf(dir, cap, "%.*s", slash == out ? 1 : (int)(slash - out), out);
    else
        snprintf(dir, cap, ".");
    size_t n = strlen(base);
    const char *strip = out ? ext : ".kir";
    if (n > strlen(strip) && strcmp(base + n - strlen(strip), strip) == 0)
        n -= strlen(strip);
    if (!out && strcmp(in, "-") == 0) {
        snprintf(name, cap, "model");
        return;
    }
    snprintf(name, cap, "%.*s", (int)n, base);
    if (!out) /* a file name need not be an identifier: make it one */
        for (char *p = name; *p; p++)
            if (!(*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9' && p != name)))
                *p = '_';
}

/* --emit=so: kiln_export into OUT's directory; --emit=h: the header to OUT or
 * standard output. */
static int export_mode(kiln_graph *g, const char *in, const char *out, bool so, kiln_target target)
{
    char dir[4096], name[4096];
    export_target(in, out, so ? ".so" : ".h", dir, name, sizeof dir);
    if (so) {
        if (out && (strlen(out) < 4 || strcmp(out + strlen(out) - 3, ".so") != 0)) {
            fprintf(stderr, "kilnc: --emit=so writes a .so: '%s' does not end in .so\n", out);
            return 2;
        }
        kiln_compile_opts o = {.target = target, .name = name};
        if (kiln_export(g, &o, dir) != KILN_OK) {
            fprintf(stderr, "kilnc: %s: %s\n", in, kiln_graph_error(g));
            return 1;
        }
        return 0;
    }
    char *header = NULL;
    kiln_compile_opts o = {.target = target, .name = name};
    if (rt_export_header(g, &o, &header) != KILN_OK) {
        fprintf(stderr, "kilnc: %s: %s\n", in, kiln_graph_error(g));
        return 1;
    }
    FILE *f = out ? fopen(out, "wb") : stdout;
    bool ok = f && fputs(header, f) >= 0;
    if (f && f != stdout)
        ok = fclose(f) == 0 && ok;
    ir_free(header);
    if (!ok) {
        fprintf(stderr, "kilnc: cannot write '%s'\n", out ? out : "standard output");
        return 1;
    }
    return 0;
}

/* An argument that is not a known option: the input (*in, the first one),
 * else an unknown option or a second input (`more` says so): 2. */
static int positional(const char *arg, const char **in, const char *more)
{
    if (arg[0] == '-' && arg[1]) {
        fprintf(stderr, "kilnc: unknown option '%s'\n%s", arg, usage);
        return 2;
    }
    if (!*in) {
        *in = arg;
        return 0;
    }
    fprintf(stderr, "kilnc: %s ('%s' and '%s')\n", more, *in, arg);
    return 2;
}

static int compile_mode(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *emit = "ir";
    bool stats = false, after_all = false;
    kiln_target target = KILN_TARGET_C;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strncmp(argv[i], "--emit=", 7) == 0) {
            emit = argv[i] + 7;
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strcmp(argv[i], "--target") == 0 && i + 1 < argc &&
                   (strcmp(argv[i + 1], "c") == 0 || strcmp(argv[i + 1], "cuda") == 0)) {
            target = strcmp(argv[++i], "c") == 0 ? KILN_TARGET_C : KILN_TARGET_CUDA;
        } else if (strcmp(argv[i], "--stats") == 0) {
            stats = true;
        } else if (strcmp(argv[i], "--print-after-all") == 0) {
            after_all = true;
        } else if (positional(argv[i], &in, "more than one input file") != 0) {
            return 2;
        }
    }
    if (!in) {
        fputs(usage, stderr);
        return 2;
    }
    bool ir = strcmp(emit, "ir") == 0, c = strcmp(emit, "c") == 0, dot = strcmp(emit, "dot") == 0;
    bool h = strcmp(emit, "h") == 0, so = strcmp(emit, "so") == 0;
    bool cuda = strcmp(emit, "cuda") == 0;
    if (!ir && !c && !dot && !h && !so && !cuda) {
        fprintf(stderr, "kilnc: --emit=%s is unknown (this kilnc emits: ir, c, cuda, dot, h, so)\n",
                emit);
        return 2;
    }
    kiln_graph *g = load(in);
    if (!g)
        return 1;
    if (target == KILN_TARGET_CUDA && (c || cuda)) {
        fprintf(stderr, "kilnc: --target applies to --emit=h|so; --emit=%s names its target\n",
                emit);
        kiln_graph_free(g);
        return 2;
    }
    if (h || so) {
        int r = export_mode(g, in, out, so, target);
        kiln_graph_free(g);
        return r;
    }
    char *source = NULL;
    int rc = 0;
    if (c || cuda || stats || after_all) { /* the compiler's render step, on a clone */
        if (after_all)
            setenv("KILN_DEBUG", "2", 1);
        kiln_graph *clone = ir_graph_clone(g);
        rt_code code = {NULL, NULL, 0};
        kiln_compile_opts ro = {.target = cuda ? KILN_TARGET_CUDA : KILN_TARGET_C};
        kiln_status s = clone ? rt_render(g, clone, &ro, false, !cuda, "kiln_compile", NULL, &code)
                              : KILN_ERR_NOMEM;
        if (s != KILN_OK) {
            fprintf(stderr, "kilnc: %s: %s\n", in,
                    clone ? kiln_graph_error(g) : kiln_status_str(s));
            rc = 1;
        } else {
            if (stats)
                print_stats(code.prog, stderr);
            source = code.source;
            code.source = NULL;
        }
        rt_code_free(&code);
        kiln_graph_free(clone);
    }
    if (rc == 0) {
        FILE *o = out ? fopen(out, "wb") : stdout;
        if (!o) {
            fprintf(stderr, "kilnc: cannot write '%s'\n", out);
            rc = 1;
        } else {
            kiln_status s = c || cuda ? (fputs(source, o) < 0 ? KILN_ERR_IO : KILN_OK)
                            : dot     ? kiln_graph_dot(g, o)
                                      : kiln_graph_print(g, o);
            if ((o != stdout && fclose(o) != 0) || s != KILN_OK) {
                fprintf(stderr, "kilnc: cannot write '%s'\n", out ? out : "standard output");
                rc = 1;
            }
        }
    }
    ir_free(source);
    kiln_graph_free(g);
    return rc;
}

/* ---- run ----------------------------------------------------------------------- */

/* "NAME=FILE" split at the first '='; false when there is none. */
static bool split(char *spec, char **name, char **file)
{
    char *eq = strchr(spec, '=');
    if (!eq || eq == spec || !eq[1])
        return false;
    *eq = 0;
    *name = spec;
    *file = eq + 1;
    return true;
}

/* A decimal count in [1, 1e9], or 0 for anything else (a sign, trailing
 * text, a value strtol would saturate). */
static long count_arg(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || *s == '+' || *s == '-' || v < 1 || v > 1000000000L)
        return 0;
    return v;
}

static int run_mode(int argc, char **argv)
{
    const char *in = NULL, *entry = NULL;
    kiln_compile_opts opts = {.target = KILN_TARGET_C};
    long runs = 1;
    int nin = 0, nout = 0, nprint = 0;
    char **ins = calloc((size_t)argc, sizeof(char *)),
         **outs = calloc((size_t)argc, sizeof(char *));
    char **prints = calloc((size_t)argc, sizeof(char *));
    int rc = 0;
    if (!ins || !outs || !prints) {
        fprintf(stderr, "kilnc: out of memory\n");
        rc = 1;
    }
    for (int i = 2; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (strcmp(a, "--entry") == 0 && more)
            entry = argv[++i];
        else if (strcmp(a, "--in") == 0 && more)
            ins[nin++] = argv[++i];
        else if (strcmp(a, "--out") == 0 && more)
            outs[nout++] = argv[++i];
        else if (strcmp(a, "--print") == 0 && more)
            prints[nprint++] = argv[++i];
        else if (strcmp(a, "--runs") == 0 && more)
            runs = count_arg(argv[++i]);
        else if (strcmp(a, "--target") == 0 && more && strcmp(argv[i + 1], "c") == 0)
            opts.target = KILN_TARGET_C, i++;
        else if (strcmp(a, "--target") == 0 && more && strcmp(argv[i + 1], "interp") == 0)
            opts.target = KILN_TARGET_INTERP, i++;
        else if (strcmp(a, "--target") == 0 && more && strcmp(argv[i + 1], "cuda") == 0)
            opts.target = KILN_TARGET_CUDA, i++;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "kilnc run: bad option '%s'%s\n%s", a,
                    more ? "" : " (it needs a value)", usage);
            rc = 2;
        } else if (!in) {
            in = a;
        } else {
            fprintf(stderr, "kilnc run: more than one input file ('%s' and '%s')\n", in, a);
            rc = 2;
        }
    }
    if (rc == 0 && (!in || !entry || runs < 1)) {
        fprintf(stderr, "kilnc run: %s\n%s",
                !in      ? "no MODEL.kir given"
                : !entry ? "--entry NAME is required"
                         : "--runs needs a count of 1 to 1000000000",
                usage);
        rc = 2;
    }
    char *name, *file;
    for (int i = 0; rc == 0 && i < nin + nout; i++)
        if (!split(i < nin ? ins[i] : outs[i - nin], &name, &file)) {
            fprintf(stderr, "kilnc run: '%s' is not NAME=FILE.npy\n",
                    i < nin ? ins[i] : outs[i - nin]);
            rc = 2;
        }
    kiln_graph *g = rc == 0 ? load(in) : NULL;
    kiln_module *m = NULL;
    if (rc == 0 && !g)
        rc = 1;
    if (rc == 0 && kiln_compile(g, &opts, &m) != KILN_OK) {
        fprintf(stderr, "kilnc run: %s: %s\n", in, kiln_graph_error(g));
        rc = 1;
    }
    for (int i = 0; rc == 0 && i < nin; i++) {
        name = ins[i];
        file = name + strlen(name) + 1; /* split() cut it at the '=' */
        if (kiln_module_set_npy(m, name, file) != KILN_OK) {
            fprintf(stderr, "kilnc run: %s\n", kiln_module_error(m));
            rc = 1;
        }
    }
    for (long r = 0; rc == 0 && r < runs; r++)
        if (kiln_module_run(m, entry) != KILN_OK) {
            fprintf(stderr, "kilnc run: %s\n", kiln_module_error(m));
            rc = 1;
        }
    for (int i = 0; rc == 0 && i < nout; i++) {
        name = outs[i];
        file = name + strlen(name) + 1;
        if (kiln_module_get_npy(m, name, file) != KILN_OK) {
            fprintf(stderr, "kilnc run: %s\n", kiln_module_error(m));
            rc = 1;
        }
    }
    for (int i = 0; rc == 0 && i < nprint; i++)
        if (kiln_module_print(m, prints[i], stdout) != KILN_OK) {
            fprintf(stderr, "kilnc run: %s\n", kiln_module_error(m));
            rc = 1;
        }
    kiln_module_free(m);
    kiln_graph_free(g);
    free(ins);
    free(outs);
    free(prints);
    return rc;
}

/* kilnc tune MODEL.kir [--seconds S] [--threads N] */
static int tune_mode(int argc, char **argv)
{
    const char *in = NULL;
    kiln_compile_opts opts = {.tune = 3};
    for (int i = 2; i < argc; i++) {
        char *end = NULL;
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            opts.tune = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(opts.tune > 0)) {
                fprintf(stderr, "kilnc: --seconds needs a positive number, not '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end || v < 1 || v > 4096) {
                fprintf(stderr, "kilnc: --threads needs a count from 1 to 4096, not '%s'\n",
                        argv[i]);
                return 2;
            }
            opts.threads = (int)v;
        } else if (positional(argv[i], &in, "tune takes one MODEL.kir") != 0) {
            return 2;
        }
    }
    if (!in) {
        fprintf(stderr, "kilnc: tune needs a MODEL.kir\n%s", usage);
        return 2;
    }
    kiln_graph *g = load(in);
    if (!g)
        return 1;
    setenv("KILN_DEBUG", "1", 1); /* each shape's schedule and why */
    kiln_module *m = NULL;
    kiln_status s = kiln_compile(g, &opts, &m);
    if (s != KILN_OK)
        fprintf(stderr, "kilnc: %s: %s\n", in, kiln_graph_error(g));
    kiln_module_free(m);
    kiln_graph_free(g);
    return s == KILN_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "run") == 0)
        return run_mode(argc, argv);
    if (argc > 1 && strcmp(argv[1], "tune") == 0)
        return tune_mode(argc, argv);
    return compile_mode(argc, argv);
}
