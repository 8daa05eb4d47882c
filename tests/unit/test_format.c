/* test_format.c - kiln_format against PyTorch's repr (tests/data/print_cases.txt,
 * made by tests/gen_print_table.py), and its snprintf-style contract. */
#include "testutil.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE KILN_SOURCE_DIR "/tests/data/print_cases.txt"

/* ---- the PyTorch table ---------------------------------------------------------- */

typedef struct {
    char label[256];
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    void *data;
    int64_t numel;
    char *want;
} print_case;

/* Returns the rest of the line after "key " (or "key" at end of line), or NULL. */
static char *field(char *line, const char *key)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0)
        return NULL;
    if (line[k] == ' ')
        return line + k + 1;
    return line[k] == '\0' ? line + k : NULL;
}

static bool parse_dtype(const char *s, kiln_dtype *dt)
{
    static const struct {
        const char *name;
        kiln_dtype dt;
    } names[] = {{"f32", KILN_F32},
                 {"f64", KILN_F64},
                 {"i32", KILN_I32},
                 {"i64", KILN_I64},
                 {"bool", KILN_BOOL}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(s, names[i].name) == 0) {
            *dt = names[i].dt;
            return true;
        }
    }
    return false;
}

static bool parse_value(kiln_dtype dt, const char *tok, void *data, int64_t i)
{
    char *end;
    errno = 0;
    switch (dt) {
    case KILN_F32: {
        uint32_t bits = (uint32_t)strtoul(tok, &end, 16);
        memcpy((float *)data + i, &bits, sizeof bits);
        break;
    }
    case KILN_F64: {
        uint64_t bits = strtoull(tok, &end, 16);
        memcpy((double *)data + i, &bits, sizeof bits);
        break;
    }
    case KILN_I32: ((int32_t *)data)[i] = (int32_t)strtol(tok, &end, 10); break;
    case KILN_I64: ((int64_t *)data)[i] = strtoll(tok, &end, 10); break;
    case KILN_BOOL: ((bool *)data)[i] = strtol(tok, &end, 10) != 0; break;
    }
    return errno == 0 && end != tok && *end == '\0';
}

static void unescape(char *s)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 'n' ? '\n' : *r;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* Parses the case whose "case" line is lines[0]; fails the test on a malformed table. */
static void parse_case(char **lines, print_case *c)
{
    char *label = field(lines[0], "case");
    char *dt = field(lines[1], "dtype");
    char *shape = field(lines[2], "shape");
    char *data = field(lines[3], "data");
    char *want = field(lines[4], "repr");
    if (!label || !dt || !shape || !data || !want) {
        fprintf(stderr, "malformed table entry at \"%.60s\"\n", lines[0]);
        fail();
    }
    snprintf(c->label, sizeof c->label, "%s", label);
    assert_true(parse_dtype(dt, &c->dt));
    c->rank = 0;
    c->numel = 1;
    for (char *tok = strtok(shape, " "); tok; tok = strtok(NULL, " ")) {
        assert_true(c->rank < KILN_MAX_RANK);
        c->dims[c->rank] = strtoll(tok, NULL, 10);
        c->numel *= c->dims[c->rank++];
    }
    c->data = calloc((size_t)(c->numel ? c->numel : 1), kiln_dtype_size(c->dt));
    assert_non_null(c->data);
    int64_t n = 0;
    for (char *tok = strtok(data, " "); tok; tok = strtok(NULL, " ")) {
        assert_true(n < c->numel);
        assert_true(parse_value(c->dt, tok, c->data, n++));
    }
    assert_int_equal(n, c->numel);
    unescape(want);
    c->want = want;
}

/* Prints where got and want first differ, with the lines around it. */
static void report_mismatch(const print_case *c, const char *got)
{
    size_t i = 0;
    while (got[i] && got[i] == c->want[i])
        i++;
    fprintf(stderr,
            "MISMATCH case %s (first difference at byte %zu)\n--- want:\n%s\n--- got:\n%s\n",
            c->label, i, c->want, got);
}

static void test_pytorch_table(void **state)
{
    (void)state;
    size_t len;
    char *text = ku_read_file(TABLE, &len);
    if (!text) {
        fprintf(stderr, "cannot read %s\n", TABLE);
        fail();
    }
    size_t nlines = 0, cap = 1024;
    char **lines = malloc(cap * sizeof *lines);
    assert_non_null(lines);
    for (char *p = text; *p;) {
        if (nlines == cap) {
            cap *= 2;
            lines = realloc(lines, cap * sizeof *lines);
            assert_non_null(lines);
        }
        lines[nlines++] = p;
        char *nl = strchr(p, '\n');
        if (!nl)
            break;
        *nl = '\0';
        p = nl + 1;
    }
    assert_true(nlines > 0 && field(lines[0], "torch"));

    int total = 0, failed = 0;
    for (size_t i = 1; i < nlines; i += 5) {
        print_case c;
        assert_true(i + 4 < nlines);
        parse_case(lines + i, &c);
        size_t need = kiln_format(NULL, 0, c.dt, c.rank, c.dims, c.data);
        char *got = malloc(need + 1);
        assert_non_null(got);
        size_t n = kiln_format(got, need + 1, c.dt, c.rank, c.dims, c.data);
        total++;
        if (n != need || strcmp(got, c.want) != 0) {
            if (failed < 5)
                report_mismatch(&c, got);
            failed++;
        }
        free(got);
        free(c.data);
    }
    printf("print table (%s): %d/%d cases match PyTorch\n", lines[0], total - failed, total);
    free(lines);
    free(text);
    assert_true(total >= 500);
    assert_int_equal(failed, 0);
}

/* ---- the snprintf contract -------------------------------------------------------- */

static void test_snprintf_semantics(void **state)
{
    (void)state;
    const float x[4] = {1, 2, 3, 4};
    const char *want = "tensor([[1., 2.],\n        [3., 4.]])";
    size_t wlen = strlen(want);

    assert_int_equal(kiln_format(NULL, 0, KILN_F32, KILN_SHAPE(2, 2), x), wlen);

    char buf[64];
    memset(buf, 'X', sizeof buf);
    assert_int_equal(kiln_format(buf, sizeof buf, KILN_F32, KILN_SHAPE(2, 2), x), wlen);
    assert_string_equal(buf, want);

    /* exactly fits, and one byte short */
    memset(buf, 'X', sizeof buf);
    assert_int_equal(kiln_format(buf, wlen + 1, KILN_F32, KILN_SHAPE(2, 2), x), wlen);
    assert_string_equal(buf, want);
    memset(buf, 'X', sizeof buf);
    assert_int_equal(kiln_format(buf, wlen, KILN_F32, KILN_SHAPE(2, 2), x), wlen);
    assert_int_equal(strlen(buf), wlen - 1);
    assert_memory_equal(buf, want, wlen - 1);

    /* truncation always terminates and never writes past cap */
    for (size_t cap = 1; cap < 12; cap++) {
        memset(buf, 'X', sizeof buf);
        assert_int_equal(kiln_format(buf, cap, KILN_F32, KILN_SHAPE(2, 2), x), wlen);
        assert_int_equal(strlen(buf), cap - 1);
        assert_memory_equal(buf, want, cap - 1);
        assert_int_equal(buf[cap], 'X');
    }

    /* cap 0 leaves buf untouched */
    memset(buf, 'X', sizeof buf);
    assert_int_equal(kiln_format(buf, 0, KILN_F32, KILN_SHAPE(2, 2), x), wlen);
    assert_int_equal(buf[0], 'X');
}

static void test_scalars_and_suffixes(void **state)
{
    (void)state;
    char buf[128];
    const int64_t i = 4;
    const double d = 4.5;
    const bool b = true;
    const int32_t i32[3] = {1, 2, 3};
    kiln_format(buf, sizeof buf, KILN_I64, 0, NULL, &i);
    assert_string_equal(buf, "tensor(4)");
    kiln_format(buf, sizeof buf, KILN_F64, 0, NULL, &d);
    assert_string_equal(buf, "tensor(4.5000, dtype=torch.float64)");
    kiln_format(buf, sizeof buf, KILN_BOOL, 0, NULL, &b);
    assert_string_equal(buf, "tensor(True)");
    kiln_format(buf, sizeof buf, KILN_I32, KILN_SHAPE(3), i32);
    assert_string_equal(buf, "tensor([1, 2, 3], dtype=torch.int32)");
    kiln_format(buf, sizeof buf, KILN_F32, KILN_SHAPE(0, 3), NULL);
    assert_string_equal(buf, "tensor([], size=(0, 3))");
    kiln_format(buf, sizeof buf, KILN_I64, KILN_SHAPE(0), NULL);
    assert_string_equal(buf, "tensor([], dtype=torch.int64)");
    const float nz[2] = {-0.0f, NAN};
    kiln_format(buf, sizeof buf, KILN_F32, KILN_SHAPE(2), nz);
    assert_string_equal(buf, "tensor([-0., nan])");
}

/* Bad arguments give the empty string and 0, never a crash. */
static void test_bad_arguments(void **state)
{
    (void)state;
    char buf[32] = "junk";
    const float x = 1;
    assert_int_equal(kiln_format(buf, sizeof buf, (kiln_dtype)99, 0, NULL, &x), 0);
    assert_string_equal(buf, "");
    strcpy(buf, "junk");
    assert_int_equal(kiln_format(buf, sizeof buf, KILN_F32, -1, NULL, &x), 0);
    assert_string_equal(buf, "");
    assert_int_equal(kiln_format(buf, sizeof buf, KILN_F32, KILN_MAX_RANK + 1, NULL, &x), 0);
    assert_int_equal(kiln_format(buf, sizeof buf, KILN_F32, 1, NULL, &x), 0);
    assert_int_equal(kiln_format(buf, sizeof buf, KILN_F32, KILN_SHAPE(-2), &x), 0);
    assert_int_equal(kiln_format(buf, sizeof buf, KILN_F32, KILN_SHAPE(2), NULL), 0);
    assert_string_equal(buf, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pytorch_table),
        cmocka_unit_test(test_snprintf_semantics),
        cmocka_unit_test(test_scalars_and_suffixes),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
