/* test_kir.c - the .kir text format: golden files, canonical printing,
 * round trips of builder graphs, and every parse error. */
#include "ir/ir.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GOLDEN_DIR KILN_SOURCE_DIR "/tests/golden"

static char *print_str(const kiln_graph *g)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(kiln_graph_print(g, f), KILN_OK);
    fclose(f);
    return buf;
}

static kiln_graph *parse_ok(const char *text)
{
    char err[512];
    kiln_graph *g = kiln_graph_parse(text, err, sizeof(err));
    if (!g)
        fprintf(stderr, "parse failed: %s\n", err);
    assert_non_null(g);
    assert_string_equal(err, "");
    return g;
}

static bool same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof(a)) == 0;
}

/* Every field of every node and entry, compared by value. */
static void assert_graphs_equal(const kiln_graph *a, const kiln_graph *b)
{
    assert_int_equal(a->seed, b->seed);
    assert_int_equal(a->next_stream, b->next_stream);
    assert_int_equal(a->nnodes, b->nnodes);
    for (int i = 0; i < a->nnodes; i++) {
        const kiln_tensor *x = a->nodes[i], *y = b->nodes[i];
        assert_int_equal(x->id, y->id);
        assert_int_equal(x->op, y->op);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->rank, y->rank);
        assert_memory_equal(x->dims, y->dims, sizeof(x->dims));
        assert_int_equal(x->nin, y->nin);
        for (int k = 0; k < x->nin; k++)
            assert_int_equal(x->in[k]->id, y->in[k]->id);
        assert_int_equal(x->axes, y->axes);
        assert_int_equal(x->axis, y->axis);
        assert_memory_equal(x->perm, y->perm, sizeof(x->perm));
        assert_memory_equal(x->begin, y->begin, sizeof(x->begin));
        assert_memory_equal(x->step, y->step, sizeof(x->step));
        assert_memory_equal(x->after, y->after, sizeof(x->after));
        assert_true(same_double(x->value, y->value));
        assert_true(same_double(x->value2, y->value2));
        assert_int_equal(x->stream, y->stream);
        assert_int_equal(x->weak, y->weak);
        if (x->name || y->name)
            assert_string_equal(x->name, y->name);
        assert_int_equal(x->data != NULL, y->data != NULL);
        if (x->data) {
            size_t n = (size_t)ir_numel(x);
            if (x->dtype == KILN_F32) {
                for (size_t j = 0; j < n; j++) {
                    float u = ((const float *)x->data)[j], v = ((const float *)y->data)[j];
                    assert_true((isnan(u) && isnan(v)) || memcmp(&u, &v, sizeof(u)) == 0);
                }
            } else if (x->dtype == KILN_F64) {
                for (size_t j = 0; j < n; j++)
                    assert_true(
                        same_double(((const double *)x->data)[j], ((const double *)y->data)[j]));
            } else {
                assert_memory_equal(x->data, y->data, n * kiln_dtype_size(x->dtype));
            }
        }
        assert_int_equal(x->init.kind, y->init.kind);
        assert_true(same_double(x->init.a, y->init.a));
        assert_true(same_double(x->init.b, y->init.b));
        assert_int_equal(x->init.data != NULL, y->init.data != NULL);
        assert_int_equal(x->fan_in, y->fan_in);
        assert_ptr_equal(y->graph, b);
    }
    assert_int_equal(a->nentries, b->nentries);
    for (int e = 0; e < a->nentries; e++) {
        const ir_entry *x = &a->entries[e], *y = &b->entries[e];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->n, y->n);
        for (int k = 0; k < x->n; k++) {
            assert_int_equal(x->outputs[k]->id, y->outputs[k]->id);
            assert_string_equal(x->output_names[k], y->output_names[k]);
        }
    }
}

/* print -> parse -> equal graph, and printing the parsed graph gives the same bytes. */
static void assert_round_trip(const kiln_graph *g)
{
    char *p1 = print_str(g);
    kiln_graph *h = parse_ok(p1);
    assert_graphs_equal(g, h);
    char *p2 = print_str(h);
    assert_string_equal(p1, p2);
    free(p1);
    free(p2);
    kiln_graph_free(h);
}

/* ---- golden files ---------------------------------------------------------------- */

static void test_golden_files(void **state)
{
    (void)state;
    DIR *d = opendir(GOLDEN_DIR);
    assert_non_null(d);
    int files = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 4, ".kir") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", GOLDEN_DIR, de->d_name);
        char *text = ku_read_file(path, NULL);
        assert_non_null(text);
        kiln_graph *g = parse_ok(text);
        char *out = print_str(g);
        if (strcmp(out, text) != 0)
            fprintf(stderr, "%s: printing differs:\n%s", path, out);
        assert_string_equal(out, text);
        assert_round_trip(g);
        free(out);
        free(text);
        kiln_graph_free(g);
        files++;
    }
    closedir(d);
    assert_true(files >= 3);
}

/* The golden files between them use every op of the op table. */
static void test_golden_cover_every_op(void **state)
{
    (void)state;
    bool seen[IR_OP_COUNT] = {0};
    const char *names[] = {"all_ops.kir", "values.kir", "mlp.kir"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", GOLDEN_DIR, names[i]);
        char *text = ku_read_file(path, NULL);
        assert_non_null(text);
        kiln_graph *g = parse_ok(text);
        for (int k = 0; k < g->nnodes; k++)
            seen[g->nodes[k]->op] = true;
        kiln_graph_free(g);
        free(text);
    }
    for (int op = 0; op < IR_OP_COUNT; op++) {
        if (!seen[op])
            fprintf(stderr, "no golden file uses '%s'\n", ir_ops[op].name);
        assert_true(seen[op]);
    }
}

/* Attribute values as parsed from the golden all_ops.kir. */
static void test_parse_values(void **state)
{
    (void)state;
    char *text = ku_read_file(GOLDEN_DIR "/all_ops.kir", NULL);
    assert_non_null(text);
    kiln_graph *g = parse_ok(text);
    free(text);
    assert_int_equal(g->seed, 42);
    assert_int_equal(g->next_stream, 4);
    kiln_tensor **n = g->nodes;
    assert_int_equal(n[0]->op, IR_INPUT);
    assert_string_equal(n[0]->name, "x");
    assert_int_equal(n[0]->rank, 2);
    assert_int_equal(n[0]->dims[1], 3);
    assert_int_equal(n[2]->init.kind, KILN_INIT_KAIMING_UNIFORM);
    assert_int_equal(n[2]->fan_in, 3);
    assert_int_equal(n[2]->stream, 1);
    assert_int_equal(((const int64_t *)n[3]->data)[1], 2);
    assert_true(n[4]->weak);
    assert_true(n[4]->value == 0.5);
    assert_true(n[5]->value == 0 && n[5]->value2 == 0.25);
    assert_int_equal(n[36]->axes, 2);
    assert_int_equal(n[37]->axes, 3);
    assert_int_equal(n[38]->axes, 0);
    assert_int_equal(n[42]->perm[0], 1);
    assert_int_equal(n[42]->perm[1], 0);
    assert_int_equal(n[45]->begin[0], 1);
    assert_int_equal(n[45]->step[0], 2);
    assert_int_equal(n[46]->begin[1], 1);
    assert_int_equal(n[46]->after[0], 1);
    assert_true(isinf(n[46]->value) && n[46]->value < 0);
    assert_int_equal(n[47]->nin, 3);
    assert_int_equal(n[52]->in[0]->id, 1);
    assert_int_equal(n[59]->op, IR_CONV);
    assert_true(n[59]->step[2] == 2 && n[59]->step[3] == 1 && n[59]->step[0] == 1);
    assert_true(n[59]->dilation[2] == 2 && n[59]->dilation[3] == 1);
    assert_int_equal(n[59]->groups, 2);
    assert_int_equal(g->nentries, 2);
    assert_string_equal(g->entries[0].output_names[1], "predict.1");
    assert_int_equal(g->entries[0].outputs[1]->id, 36);
    kiln_graph_free(g);
}

static void test_parse_special_values(void **state)
{
    (void)state;
    char *text = ku_read_file(GOLDEN_DIR "/values.kir", NULL);
    assert_non_null(text);
    kiln_graph *g = parse_ok(text);
    free(text);
    kiln_tensor **n = g->nodes;
    assert_true(g->seed == UINT64_MAX);
    assert_true(g->next_stream == UINT32_MAX);
    assert_string_equal(n[0]->name, "we\"ird\\name\n\t\x01\x7f \xc3\xa9");
    assert_true(n[1]->init.kind == KILN_INIT_CONST && n[1]->init.a == 0.1);
    assert_true(n[2]->init.kind == KILN_INIT_NORMAL && n[2]->init.b == 0.02);
    assert_true(n[4]->init.kind == KILN_INIT_ZEROS && n[4]->init.b == 2);
    const double *d = n[6]->data;
    assert_ptr_equal(n[6]->init.data, n[6]->data);
    assert_true(d[0] == 0.1 && signbit(d[1]) && d[2] == 5e-324);
    assert_int_equal(n[7]->fan_in, 123456789012);
    assert_int_equal(n[7]->stream, 4294967294u);
    const float *f = n[9]->data;
    assert_true(f[0] == 0.1f && isinf(f[1]) && f[2] < 0 && isinf(f[2]) && isnan(f[3]));
    assert_true(f[4] == 1.40129846e-45f && f[5] == 3.40282347e+38f && signbit(f[6]));
    const int64_t *l = n[10]->data;
    assert_true(l[0] == INT64_MIN && l[2] == INT64_MAX);
    const int32_t *i = n[11]->data;
    assert_true(i[0] == INT32_MIN && i[1] == INT32_MAX);
    const bool *b = n[12]->data;
    assert_true(b[0] && !b[1] && !b[2] && b[3]);
    assert_non_null(n[13]->data);
    assert_true(isnan(n[15]->value));
    assert_true(n[16]->value == 1e300);
    assert_true(n[17]->value == 0 && signbit(n[17]->value));
    assert_true(n[19]->value2 == 1.0000000000000002);
    assert_string_equal(g->entries[0].name, "a\"b");
    assert_string_equal(g->entries[0].output_names[0], "out\\0");
    assert_int_equal(g->entries[1].n, 0);
    kiln_graph_free(g);
}

/* Comments, blank lines, spacing, CRLF and any float spelling read fine; the
 * print is canonical. */
static void test_canonical_print(void **state)
{
    (void)state;
    const char *in = "# a comment\r\n"
                     "\n"
                     "  kiln   1 seed=007 streams=2   # trailing comment\r\n"
                     "%0=input \"x\":f32[ 2 ,3 ]\n"
                     "%1 = full value=1e300 weak : f64[]\n"
                     "%2 = full value=-0.0 : f32[]\n"
                     "%3 = const : f32[2] {1.0, 0.100000001}\n"
                     "entry \"e\" (%0->\"o\")\n"
                     "%4 = param \"p\" init=normal(+1.5e0, 2.) stream=1 : f64[1]\n"
                     "%5 = sum %0 axes=[1, 0] : f32[1, 1]";
    const char *want = "kiln 1 seed=7 streams=2\n"
                       "%0 = input \"x\" : f32[2, 3]\n"
                       "%1 = full value=1e+300 weak : f64[]\n"
                       "%2 = full value=-0 : f32[]\n"
                       "%3 = const : f32[2] {1, 0.1}\n"
                       "%4 = param \"p\" init=normal(1.5, 2) stream=1 : f64[1]\n"
                       "%5 = sum %0 axes=[0, 1] : f32[1, 1]\n"
                       "\n"
                       "entry \"e\" (%0 -> \"o\")\n";
    kiln_graph *g = parse_ok(in);
    char *out = print_str(g);
    assert_string_equal(out, want);
    free(out);
    kiln_graph_free(g);
}

static void test_print_errors(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    assert_int_equal(kiln_graph_print(NULL, stdout), KILN_ERR_INVALID);
    assert_int_equal(kiln_graph_print(g, NULL), KILN_ERR_INVALID);
    FILE *f = fopen("/dev/full", "w");
    if (f) { /* every write fails: the status says so */
        setvbuf(f, NULL, _IONBF, 0);
        assert_int_equal(kiln_graph_print(g, f), KILN_ERR_IO);
        fclose(f);
    }
    kiln_graph_free(g);
}

static void test_empty_graph(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    char *out = print_str(g);
    assert_string_equal(out, "kiln 1 seed=0 streams=0\n");
    free(out);
    assert_round_trip(g);
    kiln_graph_free(g);
}

/* ---- builder graphs ----------------------------------------------------------------- */

static void check_builder_graph(kiln_graph *g)
{
    if (kiln_graph_status(g) != KILN_OK)
        fprintf(stderr, "builder error: %s\n", kiln_graph_error(g));
    assert_int_equal(kiln_graph_status(g), KILN_OK);
    assert_int_equal(ir_verify(g), KILN_OK);
    assert_round_trip(g);
}

static kiln_graph *build_mlp(kiln_tensor **loss_out)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 1234);
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(8, 4));
    kiln_tensor *y = kiln_input(g, "y", KILN_F32, KILN_SHAPE(8, 2));
    kiln_tensor *w1 = kiln_param(g, "w1", KILN_F32, KILN_SHAPE(16, 4), kiln_init_kaiming_uniform());
    kiln_tensor *b1 = kiln_param(g, "b1", KILN_F32, KILN_SHAPE(16), kiln_init_kaiming_uniform());
    kiln_tensor *w2 = kiln_param(g, "w2", KILN_F32, KILN_SHAPE(2, 16), kiln_init_normal(0, 0.02));
    float b2v[2] = {0.1f, -0.25f};
    kiln_tensor *b2 = kiln_param(g, "b2", KILN_F32, KILN_SHAPE(2), kiln_init_data(b2v));
    kiln_tensor *h = kiln_relu(g, kiln_linear(g, x, w1, b1));
    h = kiln_dropout(g, h, 0.25);
    kiln_tensor *out = kiln_linear(g, h, w2, b2);
    *loss_out = kiln_mse_loss(g, out, y);
    assert_int_equal(kiln_entry(g, "predict", 1, &out, NULL), KILN_OK);
    return g;
}

static void test_builder_mlp(void **state)
{
    (void)state;
    kiln_tensor *loss;
    kiln_graph *g = build_mlp(&loss);
    const char *name = "loss";
    assert_int_equal(kiln_entry(g, "eval", 1, &loss, &name), KILN_OK);
    check_builder_graph(g);
    kiln_graph_free(g);
}

static void test_builder_ops(void **state)
{
    (void)state;
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(3, 5));
    kiln_tensor *ids = kiln_input(g, "ids", KILN_I64, KILN_SHAPE(4));
    kiln_tensor *labels = kiln_input(g, "labels", KILN_I64, KILN_SHAPE(3));
    kiln_tensor *table =
        kiln_param(g, "table", KILN_F32, KILN_SHAPE(10, 5), kiln_init_uniform(-1, 1));
    int64_t idata[2][2] = {{1, 2}, {3, 4}};
    kiln_tensor *c = kiln_tensor_from(g, KILN_I64, KILN_SHAPE(2, 2), idata);
    bool bdata[3] = {true, false, true};
    kiln_tensor *mask = kiln_tensor_from(g, KILN_BOOL, KILN_SHAPE(3, 1), bdata);
    kiln_tensor *outs[24];
    int n = 0;
    outs[n++] = kiln_softmax(g, x, -1);
    outs[n++] = kiln_log_softmax(g, x, 0);
    outs[n++] = kiln_slice(g, x, 1, 1, 5, 2);
    outs[n++] = kiln_select(g, x, 0, -1);
    kiln_tensor *cat[2] = {x, kiln_exp(g, x)};
    outs[n++] = kiln_concat(g, 2, cat, 0);
    outs[n++] = kiln_stack(g, 2, cat, 1);
    int64_t before[2] = {1, 0}, after[2] = {0, 2};
    outs[n++] = kiln_pad(g, x, before, after, -1.5);
    outs[n++] = kiln_transpose(g, x, 0, 1);
    outs[n++] = kiln_flatten(g, kiln_unsqueeze(g, x, 0), 0, -1);
    outs[n++] = kiln_embedding(g, table, ids);
    outs[n++] = kiln_cross_entropy(g, x, labels);
    outs[n++] = kiln_argmax(g, x, 1, false);
    outs[n++] = kiln_argmin(g, x, KILN_ALL, false);
    outs[n++] = kiln_max(g, x, 0, true);
    outs[n++] = kiln_where(g, mask, x, kiln_scalar(g, 0.5));
    outs[n++] = kiln_add(g, kiln_cast(g, c, KILN_F64), kiln_arange(g, KILN_F64, 0, 2, 1));
    outs[n++] = kiln_randn(g, KILN_F64, KILN_SHAPE(2));
    outs[n++] = kiln_layer_norm(g, x, NULL, NULL, 1e-5);
    outs[n++] = kiln_sum_axes(g, kiln_gelu(g, x), 2, (const int[]){0, 1}, false);
    outs[n++] = kiln_pow(g, kiln_sigmoid(g, x), kiln_full(g, KILN_F32, KILN_SHAPE(1), 2));
    outs[n++] = kiln_lt(g, kiln_cast(g, x, KILN_I32), kiln_scalar(g, 2));
    assert_int_equal(kiln_entry(g, "ops", n, outs, NULL), KILN_OK);
    check_builder_graph(g);
    kiln_graph_free(g);
}

/* Manual gradient descent with kiln_assign; the gradient is kiln_grad's when
 * autodiff is in the build, else written out by hand. */
static void test_builder_grad_and_assign(void **state)
{
    (void)state;
    for (int use_grad = 1; use_grad >= 0; use_grad--) {
        kiln_graph *g = kiln_graph_new();
        kiln_tensor *w = kiln_param(g, "w", KILN_F64, KILN_SHAPE(3), kiln_init_const(2));
        kiln_tensor *x = kiln_input(g, "x", KILN_F64, KILN_SHAPE(3));
        kiln_tensor *t = kiln_tanh(g, kiln_mul(g, w, x));
        kiln_tensor *y = kiln_sum(g, kiln_mul(g, t, w), KILN_ALL, false);
        kiln_tensor *dw = NULL;
        if (use_grad && kiln_grad(g, y, 1, &w, NULL, &dw) != KILN_OK) {
            assert_int_equal(kiln_graph_status(g), KILN_ERR_UNSUPPORTED);
            kiln_graph_free(g);
            continue;
        }
        if (!use_grad) { /* d/dw sum(tanh(w x) w) = tanh(w x) + w x (1 - tanh^2(w x)) */
            kiln_tensor *one = kiln_scalar(g, 1);
            dw =
                kiln_add(g, t, kiln_mul(g, kiln_mul(g, w, x), kiln_sub(g, one, kiln_square(g, t))));
        }
        kiln_tensor *upd = kiln_assign(g, w, kiln_sub(g, w, kiln_mul(g, dw, kiln_scalar(g, 0.1))));
        const char *names[2] = {"loss", "w.new"};
        kiln_tensor *outs[2] = {y, upd};
        assert_int_equal(kiln_entry(g, "step", 2, outs, names), KILN_OK);
        check_builder_graph(g);
        kiln_graph_free(g);
    }
}

/* ---- parse errors ------------------------------------------------------------------- */

static void assert_parse_error(const char *text, const char *want)
{
    char err[512];
    memset(err, 'x', sizeof(err));
    kiln_graph *g = kiln_graph_parse(text, err, sizeof(err));
    if (g || strcmp(err, want) != 0)
        fprintf(stderr, "input:\n%s\nwant: %s\ngot:  %s\n", text, want, g ? "(parsed)" : err);
    assert_null(g);
    assert_string_equal(err, want);
}

#define HDR "kiln 1 seed=0 streams=0\n"

static void test_error_header(void **state)
{
    (void)state;
    assert_parse_error("", "line 1, column 1: expected the header 'kiln 1 seed=<n> streams=<n>', "
                           "found end of input");
    assert_parse_error("\n\n%0 = input \"x\" : f32[]",
                       "line 3, column 1: expected the header 'kiln 1 seed=<n> streams=<n>', "
                       "found '%0'");
    assert_parse_error("kiln 2 seed=0 streams=0",
                       "line 1, column 6: expected format version 1, found '2'");
    assert_parse_error("kiln 1 seed=-1 streams=0", "line 1, column 13: expected a seed (0 to "
                                                   "18446744073709551615), found '-1'");
    assert_parse_error("kiln 1 seed=18446744073709551616 streams=0",
                       "line 1, column 13: expected a seed (0 to 18446744073709551615), found "
                       "'18446744073709551616'");
    assert_parse_error("kiln 1 seed=1 streams=4294967296",
                       "line 1, column 23: expected a stream count (0 to 4294967295), found "
                       "'4294967296'");
    assert_parse_error("kiln 1 seed=1",
                       "line 1, column 14: expected 'streams', found end of input");
    assert_parse_error("kiln 1 seed 1", "line 1, column 13: expected '=', found '1'");
    assert_parse_error("kiln 1 seed=0 streams=0 extra",
                       "line 1, column 25: expected end of line, found 'extra'");
}

static void test_error_node_syntax(void **state)
{
    (void)state;
    assert_parse_error(HDR "%0 = addd %1 : f32[]", "line 2, column 6: unknown op 'addd'");
    assert_parse_error(HDR "%0 = 5 : f32[]", "line 2, column 6: expected an op name, found '5'");
    assert_parse_error(HDR "%1 = input \"x\" : f32[]", "line 2, column 1: expected %0, found '%1'");
    assert_parse_error(HDR "%0 input \"x\" : f32[]",
                       "line 2, column 4: expected '=', found 'input'");
    assert_parse_error(HDR "%0 = input x : f32[]",
                       "line 2, column 12: expected a quoted name, found 'x'");
    assert_parse_error(HDR "%0 = input \"x : f32[]", "line 2, column 12: unterminated string");
    assert_parse_error(HDR "%0 = input \"x\\", "line 2, column 12: unterminated string");
    assert_parse_error(HDR "%0 = input \"a\\qb\" : f32[]",
                       "line 2, column 14: unknown escape in string (use \\\" \\\\ \\n \\t \\r or "
                       "\\xHH)");
    assert_parse_error(HDR "%0 = input \"a\\x00\" : f32[]",
                       "line 2, column 14: \\x00 is not allowed in a string");
    assert_parse_error(HDR "%0 = input \"x\" : f16[2]",
                       "line 2, column 18: expected a dtype (f32, f64, i32, i64, bool), found "
                       "'f16'");
    assert_parse_error(HDR "%0 = input \"x\" f32[2]",
                       "line 2, column 16: expected ':', found 'f32'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2, -1]",
                       "line 2, column 25: expected a size (an integer >= 0), found '-1'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2 3]",
                       "line 2, column 24: expected ']', found '3'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[1, 1, 1, 1, 1, 1, 1, 1, 1]",
                       "line 2, column 46: expected ']' (the rank is at most 8), found '1'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[1048576, 1048576, 1048576, 1048576]",
                       "line 2, column 40: the shape has more than 1152921504606846975 elements");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2] junk",
                       "line 2, column 25: expected end of line, found 'junk'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = neg %0 : f32[2] %0",
                       "line 3, column 22: expected end of line, found '%0'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2] $",
                       "line 2, column 25: expected end of line, found '$'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2] \x01",
                       "line 2, column 25: expected end of line, found '\\x01'");
    assert_parse_error(HDR "foo", "line 2, column 1: expected a node ('%N = ...') or an entry "
                                  "('entry \"name\" (...)'), found 'foo'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2, 3]\n"
                           "%1 = reshape %0 : f32[6] aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                       "line 3, column 26: expected end of line, found "
                       "'aaaaaaaaaaaaaaaaaaaaaaaa...'");
}

static void test_error_operands(void **state)
{
    (void)state;
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = add %0, %1 : f32[2]",
                       "line 3, column 14: expected a node defined above, found '%1'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = add %0, %7 : f32[2]",
                       "line 3, column 14: expected a node defined above, found '%7'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = add %0, : f32[2]",
                       "line 3, column 14: expected a node defined above, found ':'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = add %0 : f32[2]",
                       "line 3, column 6: 'add' takes 2 operands, found 1");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = neg %0, %0 : f32[2]",
                       "line 3, column 6: 'neg' takes 1 operand, found 2");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = concat axis=0 : f32[2]",
                       "line 3, column 6: 'concat' takes at least 1 operand, found 0");
    assert_parse_error(HDR "%0 = full %0 value=1 : f32[2]",
                       "line 2, column 11: expected a node defined above, found '%0'");
}

static void test_error_attributes(void **state)
{
    (void)state;
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = neg %0 axes=[0] : f32[2]",
                       "line 3, column 13: expected ':', found 'axes'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = slice %0 axes=[0] : f32[2]",
                       "line 3, column 15: 'slice' has no attribute 'axes'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = sum %0 colour=[0] : f32[1]",
                       "line 3, column 13: 'sum' has no attribute 'colour'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = sum %0 : f32[1]",
                       "line 3, column 13: expected attribute 'axes', found ':'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = sum %0 axes=[0] axes=[0] : f32[1]",
                       "line 3, column 22: attribute 'axes' appears twice");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = sum %0 axes=[0, 0] : f32[1]",
                       "line 3, column 18: axis 0 appears twice in 'axes'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = sum %0 axes=[8] : f32[1]",
                       "line 3, column 19: expected an axis (0 to 7), found '8'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = sum %0 axes 0 : f32[1]",
                       "line 3, column 18: expected '=', found '0'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = sum %0 axes=0 : f32[1]",
                       "line 3, column 18: expected '[', found '0'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n"
                           "%1 = slice %0 begin=[0, 0, 0, 0, 0, 0, 0, 0, 0] step=[1] : f32[2]",
                       "line 3, column 46: expected ']' (a list has at most 8 values), found '0'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2, 3]\n%1 = permute %0 perm=[0] : f32[2, 3]",
                       "line 3, column 17: 'perm' has 1 value but the rank is 2");
    assert_parse_error(HDR "%0 = full value=abc : f32[]",
                       "line 2, column 17: expected a number, found 'abc'");
    assert_parse_error(HDR "%0 = full value=1.2.3 : f32[]",
                       "line 2, column 17: expected a number, found '1.2.3'");
    assert_parse_error(HDR "%0 = full value=0x10 : f32[]",
                       "line 2, column 17: expected a number, found '0x10'");
    assert_parse_error(HDR "%0 = full value=1e999 : f32[]",
                       "line 2, column 17: expected a number, found '1e999'");
    assert_parse_error(HDR "%0 = full value=infinity : f32[]",
                       "line 2, column 17: expected a number, found 'infinity'");
    assert_parse_error(HDR "%0 = full value=1 strong : f32[]",
                       "line 2, column 19: 'full' has no attribute 'strong'");
    assert_parse_error(HDR "%0 = param \"p\" init=xavier : f32[2]",
                       "line 2, column 21: expected an init kind (zeros, ones, const, normal, "
                       "uniform, kaiming_uniform, data), found 'xavier'");
    assert_parse_error(HDR "%0 = param \"p\" init=normal(0, 1 : f32[2]",
                       "line 2, column 33: expected ')', found ':'");
    assert_parse_error(HDR "%0 = param \"p\" stream=-1 init=zeros : f32[2]",
                       "line 2, column 23: expected a stream id (0 to 4294967295), found '-1'");
    assert_parse_error(HDR "%0 = param \"p\" init=zeros fan_in=-3 : f32[2]",
                       "line 2, column 34: expected a fan_in (an integer >= 0), found '-3'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = concat %0 axis=99999999999 : f32[2]",
                       "line 3, column 21: expected an axis (an integer), found '99999999999'");
}

static void test_error_data(void **state)
{
    (void)state;
    assert_parse_error(HDR "%0 = const : f32[2]",
                       "line 2, column 20: expected '{', found end of input");
    assert_parse_error(HDR "%0 = const : f32[2] {1}",
                       "line 2, column 23: expected 2 values, found 1");
    assert_parse_error(HDR "%0 = const : f32[2] {1, 2, 3}",
                       "line 2, column 28: expected '}' after 2 values, found '3'");
    assert_parse_error(HDR "%0 = const : f32[2] {1 2}",
                       "line 2, column 24: expected '}', found '2'");
    assert_parse_error(HDR "%0 = const : f32[1] {1e39}",
                       "line 2, column 22: expected an f32 value, found '1e39'");
    assert_parse_error(HDR "%0 = const : i32[1] {2147483648}",
                       "line 2, column 22: expected an i32 value, found '2147483648'");
    assert_parse_error(HDR "%0 = const : i32[1] {1.5}",
                       "line 2, column 22: expected an i32 value, found '1.5'");
    assert_parse_error(HDR "%0 = const : i64[1] {9223372036854775808}",
                       "line 2, column 22: expected an i64 value, found '9223372036854775808'");
    assert_parse_error(HDR "%0 = const : bool[1] {1}",
                       "line 2, column 23: expected true or false, found '1'");
    assert_parse_error(HDR "%0 = param \"p\" init=zeros : f32[1] {1}",
                       "line 2, column 36: expected end of line, found '{'");
    assert_parse_error(HDR "%0 = param \"p\" init=data : f32[1]",
                       "line 2, column 34: expected '{', found end of input");
}

static void test_error_entries(void **state)
{
    (void)state;
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\nentry \"e\" (%1 -> \"o\")",
                       "line 3, column 12: expected a node defined above, found '%1'");
    assert_parse_error(HDR "entry \"e\" (%0 -> \"o\")",
                       "line 2, column 12: expected a node defined above, found '%0'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\nentry e (%0 -> \"o\")",
                       "line 3, column 7: expected a quoted entry name, found 'e'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\nentry \"e\" (%0 \"o\")",
                       "line 3, column 15: expected '->', found '\"o\"'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\nentry \"e\" (%0 -> o)",
                       "line 3, column 18: expected a quoted output name, found 'o'");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\nentry \"e\" (%0 -> \"o\"",
                       "line 3, column 21: expected ')', found end of input");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\nentry \"e\" (%0 -> \"o\") x",
                       "line 3, column 23: expected end of line, found 'x'");
}

/* A verifier failure is a parse error on the line of the offending node or entry. */
static void test_error_verifier(void **state)
{
    (void)state;
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = input \"y\" : f32[3]\n"
                           "# a comment line\n%2 = add %0, %1 : f32[2]",
                       "line 5, column 1: verify: %2 (add): operand 1 has shape [3] but the "
                       "result is [2]");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\n%1 = input \"x\" : f32[3]",
                       "line 3, column 1: verify: %1 (input): name \"x\" is already used by %0 "
                       "(input)");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2]\nentry \"e\" (%0 -> \"x\")",
                       "line 3, column 1: verify: entry \"e\": output name \"x\" is already the "
                       "name of %0 (input)");
    assert_parse_error(HDR "%0 = input \"x\" : f32[2, 3]\n%1 = permute %0 perm=[0, 0] : f32[2, 3]",
                       "line 3, column 1: verify: %1 (permute): perm is not a permutation of 0..1");
}

/* err may be NULL or short; a short buffer gets a truncated, terminated message. */
static void test_error_buffer(void **state)
{
    (void)state;
    assert_null(kiln_graph_parse("junk", NULL, 0));
    char err[16];
    memset(err, 'x', sizeof(err));
    assert_null(kiln_graph_parse("junk", err, 0));
    assert_int_equal(err[0], 'x');
    assert_null(kiln_graph_parse("junk", err, sizeof(err)));
    assert_string_equal(err, "line 1, column ");
    char big[128];
    assert_null(kiln_graph_parse(NULL, big, sizeof(big)));
    assert_string_equal(big, "kiln_graph_parse: text is NULL");
}

/* ---- out of memory: every allocation failure is an error, nothing leaks ------------ */

typedef struct {
    long live, count, fail_at;
} counting;

static void *count_realloc(void *ctx, void *ptr, size_t size)
{
    counting *c = ctx;
    if (c->count++ == c->fail_at)
        return NULL;
    void *p = realloc(ptr, size);
    if (p && !ptr)
        c->live++;
    return p;
}

static void count_free(void *ctx, void *ptr)
{
    counting *c = ctx;
    c->live--;
    free(ptr);
}

static void test_parse_out_of_memory(void **state)
{
    (void)state;
    char *text = ku_read_file(GOLDEN_DIR "/values.kir", NULL);
    assert_non_null(text);
    int failures = 0;
    for (long n = 0;; n++) {
        counting c = {0, 0, n};
        kiln_allocator a = {count_realloc, count_free, &c};
        kiln_set_allocator(&a);
        char err[256];
        kiln_graph *g = kiln_graph_parse(text, err, sizeof(err));
        bool done = g != NULL;
        kiln_graph_free(g);
        kiln_set_allocator(NULL);
        assert_int_equal(c.live, 0);
        if (done)
            break;
        assert_non_null(strstr(err, "out of memory"));
        failures++;
    }
    assert_true(failures > 3);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_files),        cmocka_unit_test(test_golden_cover_every_op),
        cmocka_unit_test(test_parse_values),        cmocka_unit_test(test_parse_special_values),
        cmocka_unit_test(test_canonical_print),     cmocka_unit_test(test_print_errors),
        cmocka_unit_test(test_empty_graph),         cmocka_unit_test(test_builder_mlp),
        cmocka_unit_test(test_builder_ops),         cmocka_unit_test(test_builder_grad_and_assign),
        cmocka_unit_test(test_error_header),        cmocka_unit_test(test_error_node_syntax),
        cmocka_unit_test(test_error_operands),      cmocka_unit_test(test_error_attributes),
        cmocka_unit_test(test_error_data),          cmocka_unit_test(test_error_entries),
        cmocka_unit_test(test_error_verifier),      cmocka_unit_test(test_error_buffer),
        cmocka_unit_test(test_parse_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
