/*
 * fuzz_kir_parse.c - libFuzzer harness for the .kir parser.
 *
 * Any input: the parser must return a graph or an error, never crash or leak
 * (ASan/UBSan watch). A graph it accepts must print canonically: print, parse
 * the print, print again, and the two prints must be byte-identical.
 */
#include "ir/ir.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *print_graph(const kiln_graph *g, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    if (!f)
        abort();
    if (kiln_graph_print(g, f) != KILN_OK)
        abort();
    fclose(f);
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = 0;
    char err[256];
    kiln_graph *g = kiln_graph_parse(text, err, sizeof(err));
    free(text);
    if (!g) {
        if (strncmp(err, "line ", 5) != 0) /* every failure names its place */
            abort();
        return 0;
    }
    size_t n1, n2;
    char *p1 = print_graph(g, &n1);
    kiln_graph *g2 = kiln_graph_parse(p1, err, sizeof(err));
    if (!g2) {
        fprintf(stderr, "the printed graph does not parse: %s\n%s", err, p1);
        abort();
    }
    char *p2 = print_graph(g2, &n2);
    if (n1 != n2 || memcmp(p1, p2, n1) != 0) {
        fprintf(stderr, "printing is not canonical:\n%s---\n%s", p1, p2);
        abort();
    }
    free(p1);
    free(p2);
    kiln_graph_free(g);
    kiln_graph_free(g2);
    return 0;
}
