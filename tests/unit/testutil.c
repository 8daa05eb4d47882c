/* testutil.c - shared helpers for the cmocka unit tests. */
#include "testutil.h"

#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ku_assert_graph_error(const kiln_graph *g, kiln_status s, const char *needle, const char *file,
                           int line)
{
    const char *msg = kiln_graph_error(g);
    if (kiln_graph_status(g) != s || !strstr(msg, needle)) {
        fprintf(stderr, "%s:%d: expected status %s containing \"%s\"; got %s: \"%s\"\n", file, line,
                kiln_status_str(s), needle, kiln_status_str(kiln_graph_status(g)), msg);
        fail();
    }
}

void ku_assert_module_error(const kiln_module *m, kiln_status got, kiln_status want,
                            const char *needle, const char *file, int line)
{
    const char *msg = kiln_module_error(m);
    if (got != want || !strstr(msg, needle)) {
        fprintf(stderr, "%s:%d: expected status %s containing \"%s\"; got %s: \"%s\"\n", file, line,
                kiln_status_str(want), needle, kiln_status_str(got), msg);
        fail();
    }
}

char *ku_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = 0;
        if (len)
            *len = (size_t)n;
    }
    return buf;
}

kiln_graph *ku_graph_new(void)
{
    kiln_graph *g = kiln_graph_new();
    assert_non_null(g);
    return g;
}

kiln_tensor *ku_input(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims)
{
    static int next_name;
    char name[32];
    snprintf(name, sizeof(name), "x%d", next_name++);
    kiln_tensor *t = kiln_input(g, name, dt, rank, dims);
    assert_non_null(t);
    return t;
}

void ku_assert_ok(kiln_graph *g)
{
    if (kiln_graph_status(g) == KILN_OK)
        ir_verify(g);
    if (kiln_graph_status(g) != KILN_OK)
        fprintf(stderr, "unexpected error: %s\n", kiln_graph_error(g));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
}
