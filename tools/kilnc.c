/*
 * kilnc - Kiln's command-line compiler and IR inspector.
 *
 * This first version reads a .kir file, verifies it and prints it back in
 * canonical form (--emit=ir, the default). Code generation modes (c, cuda,
 * h, dot, so), `kilnc run` and --stats arrive with the C backend and export.
 */
#include <kiln.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: kilnc MODEL.kir [--emit=ir] [-o OUT]\n"
    "\n"
    "Reads a .kir graph, checks it, and writes it back in canonical .kir form.\n"
    "  --emit=ir   canonical .kir text (default)\n"
    "  -o OUT      write to OUT instead of standard output\n"
    "  --help      this text\n";

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

int main(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *emit = "ir";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strncmp(argv[i], "--emit=", 7) == 0) {
            emit = argv[i] + 7;
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "kilnc: unknown option '%s'\n%s", argv[i], usage);
            return 2;
        } else if (!in) {
            in = argv[i];
        } else {
            fprintf(stderr, "kilnc: more than one input file ('%s' and '%s')\n", in, argv[i]);
            return 2;
        }
    }
    if (!in) {
        fputs(usage, stderr);
        return 2;
    }
    if (strcmp(emit, "ir") != 0) {
        fprintf(stderr, "kilnc: --emit=%s is not available yet (this kilnc emits: ir)\n", emit);
        return 2;
    }
    FILE *f = strcmp(in, "-") == 0 ? stdin : fopen(in, "rb");
    if (!f) {
        fprintf(stderr, "kilnc: cannot open '%s'\n", in);
        return 1;
    }
    char *text = read_all(f);
    if (f != stdin)
        fclose(f);
    if (!text) {
        fprintf(stderr, "kilnc: out of memory reading '%s'\n", in);
        return 1;
    }
    char err[512];
    kiln_graph *g = kiln_graph_parse(text, err, sizeof err);
    free(text);
    if (!g) {
        fprintf(stderr, "%s:%s\n", in, err);
        return 1;
    }
    FILE *o = out ? fopen(out, "wb") : stdout;
    if (!o) {
        fprintf(stderr, "kilnc: cannot write '%s'\n", out);
        kiln_graph_free(g);
        return 1;
    }
    kiln_status s = kiln_graph_print(g, o);
    if (o != stdout && fclose(o) != 0)
        s = KILN_ERR_IO;
    kiln_graph_free(g);
    if (s != KILN_OK) {
        fprintf(stderr, "kilnc: %s\n", kiln_status_str(s));
        return 1;
    }
    return 0;
}
