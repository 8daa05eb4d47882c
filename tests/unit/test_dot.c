/*
 * test_dot.c - kiln_graph_dot: one cluster per fused kernel holding the nodes
 * it computes, every node and entry output drawn, names escaped, the text
 * rendered by Graphviz's dot (installed by scripts/deps.sh), and its errors.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* x -> exp -> add(b) -> sum; x @ w + b2 -> relu: two entries. */
static kiln_graph *model(void)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x \"in\\put\"", KILN_F32, KILN_SHAPE(4, 3));
    kiln_tensor *b = kiln_input(g, "b", KILN_F32, KILN_SHAPE(3));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3, 5), kiln_init_ones());
    kiln_tensor *b2 = kiln_param(g, "b2", KILN_F32, KILN_SHAPE(5), kiln_init_zeros());
    kiln_tensor *s = kiln_sum(g, kiln_add(g, kiln_exp(g, x), b), 1, false);
    kiln_tensor *h = kiln_relu(g, kiln_add(g, kiln_matmul(g, x, w), b2));
    assert_int_equal(kiln_entry(g, "f", 1, &s, (const char *[]){"total"}), KILN_OK);
    assert_int_equal(kiln_entry(g, "g", 1, &h, NULL), KILN_OK);
    ku_assert_ok(g);
    return g;
}

/* noinline: gcc 12 mistakes the buffer open_memstream filled for the local that
 * held its address (-Wdangling-pointer) once this is inlined */
__attribute__((noinline)) static char *dot_text(const kiln_graph *g)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    assert_int_equal(kiln_graph_dot(g, f), KILN_OK);
    assert_int_equal(fclose(f), 0);
    return text;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *at = strstr(s, needle); at; at = strstr(at + 1, needle))
        n++;
    return n;
}

static void test_clusters_and_nodes(void **state)
{
    (void)state;
    kiln_graph *g = model();
    char *text = dot_text(g);
    assert_true(strncmp(text, "digraph kiln {\n", 15) == 0);
    assert_int_equal(count(text, "{"), count(text, "}"));
    /* the kernels of the compiled program, each a labelled cluster */
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    const char *src = kiln_module_source(m);
    int kernels = 0;
    for (const char *at = ku_next_kernel(src); at; at = ku_next_kernel(at)) {
        char name[64], label[96];
        assert_int_equal(sscanf(at, "%63[a-z0-9_]", name), 1);
        snprintf(label, sizeof label, "label=\"%s (", name);
        if (!strstr(text, label))
            fail_msg("no cluster labelled %s", name);
        kernels++;
    }
    assert_true(kernels >= 2);
    assert_int_equal(count(text, "subgraph cluster_k"), kernels);
    /* the fused matmul + bias + relu kernel holds its relu node */
    const char *mm = strstr(text, "_matmul");
    assert_non_null(mm);
    const char *end = strstr(mm, "    }\n");
    const char *relu = strstr(mm, " relu\\n");
    assert_true(relu && end && relu < end);
    /* names escaped, entries drawn, leaves styled */
    assert_non_null(strstr(text, "input \\\"x \\\"in\\\\put\\\"\\\""));
    assert_non_null(strstr(text, "label=\"entry f: total\""));
    assert_non_null(strstr(text, "label=\"entry g: g.0\""));
    assert_non_null(strstr(text, "param \\\"w\\\"\\nf32[3, 5]\", shape=box, style=filled"));
    free(text);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* Graphviz accepts the text (scripts/deps.sh installs it for the suite). */
static void test_dot_renders(void **state)
{
    (void)state;
    if (system("command -v dot >/dev/null 2>&1") != 0)
        fail_msg("Graphviz's dot is not installed: run scripts/deps.sh");
    kiln_graph *g = model();
    char in[] = "/tmp/kiln-dot-XXXXXX";
    int fd = mkstemp(in);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    assert_int_equal(kiln_graph_dot(g, f), KILN_OK);
    assert_int_equal(fclose(f), 0);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "dot -Tsvg '%s' 2>&1", in);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char buf[4096], rest[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    while (fread(rest, 1, sizeof rest, p) > 0) /* read it all: dot must not get SIGPIPE */
        ;
    assert_int_equal(pclose(p), 0);
    assert_non_null(strstr(buf, "<svg"));
    unlink(in);
    kiln_graph_free(g);
}

static void test_errors(void **state)
{
    (void)state;
    kiln_graph *g = model();
    assert_int_equal(kiln_graph_dot(NULL, stdout), KILN_ERR_INVALID);
    assert_int_equal(kiln_graph_dot(g, NULL), KILN_ERR_INVALID);
    FILE *ro = fopen("/dev/null", "r");
    assert_non_null(ro);
    assert_int_equal(kiln_graph_dot(g, ro), KILN_ERR_IO);
    fclose(ro);
    assert_null(kiln_reshape(g, kiln_input(g, "z", KILN_F32, KILN_SHAPE(2)), KILN_SHAPE(3)));
    assert_int_equal(kiln_graph_dot(g, stdout), KILN_ERR_SHAPE); /* the graph's error */
    kiln_graph_free(g);
    /* every allocation failure is KILN_ERR_NOMEM */
    g = model();
    for (int fail = 0;; fail++) {
        FILE *f = fopen("/dev/null", "w");
        assert_non_null(f);
        kiln_set_allocator(&ku_failing_allocator);
        ku_fail_after = fail;
        kiln_status s = kiln_graph_dot(g, f);
        ku_fail_after = -1;
        kiln_set_allocator(NULL);
        fclose(f);
        if (s == KILN_OK) {
            assert_true(fail > 3);
            break;
        }
        assert_int_equal(s, KILN_ERR_NOMEM);
    }
    kiln_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clusters_and_nodes),
        cmocka_unit_test(test_dot_renders),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
