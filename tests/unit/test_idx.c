/*
 * test_idx.c - samples/idx.h, the IDX (MNIST format) reader of the samples:
 * values of plain and gzip'd files, and every error it names.
 */
#include "samples/idx.h"
#include "testutil.h"

#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char dir[] = "/tmp/kiln-idx-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Writes bytes to dir/name, gzip'd when the name ends in .gz; returns the path. */
static const char *put(const char *name, const void *bytes, size_t n)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (strstr(name, ".gz")) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, bytes, (unsigned)n), (int)n);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(bytes, 1, n, f), n);
        assert_int_equal(fclose(f), 0);
    }
    return path;
}

/* An image file header: magic 0x803, then n, rows, cols big-endian. */
static size_t images_file(unsigned char *buf, uint32_t magic, uint32_t n, uint32_t r, uint32_t c,
                          size_t data)
{
    const uint32_t words[4] = {magic, n, r, c};
    for (int w = 0; w < 4; w++)
        for (int b = 0; b < 4; b++)
            buf[4 * w + b] = (unsigned char)(words[w] >> (24 - 8 * b));
    for (size_t i = 0; i < data; i++)
        buf[16 + i] = (unsigned char)(i * 51);
    return 16 + data;
}

static void test_images_plain_and_gzip(void **state)
{
    (void)state;
    unsigned char buf[64];
    size_t n = images_file(buf, 0x803, 2, 2, 3, 12);
    for (int gz = 0; gz < 2; gz++) {
        idx_images im = {0};
        char err[256] = "";
        assert_true(idx_read_images(put(gz ? "im.gz" : "im", buf, n), &im, err, sizeof err));
        assert_int_equal(im.n, 2);
        assert_int_equal(im.rows, 2);
        assert_int_equal(im.cols, 3);
        for (int i = 0; i < 12; i++)
            assert_true(im.pixels[i] == (float)((i * 51) & 255) / 255.0f);
        assert_true(im.pixels[5] == 1.0f); /* 255 */
        idx_free_images(&im);
        assert_null(im.pixels);
    }
}

static void test_labels(void **state)
{
    (void)state;
    const unsigned char buf[] = {0, 0, 8, 1, 0, 0, 0, 4, 9, 0, 3, 255};
    idx_labels lab = {0};
    char err[256] = "";
    assert_true(idx_read_labels(put("lab.gz", buf, sizeof buf), &lab, err, sizeof err));
    assert_int_equal(lab.n, 4);
    assert_int_equal(lab.labels[0], 9);
    assert_int_equal(lab.labels[1], 0);
    assert_int_equal(lab.labels[2], 3);
    assert_int_equal(lab.labels[3], 255);
    idx_free_labels(&lab);
}

static void expect_images_error(const char *name, const void *bytes, size_t n, const char *needle)
{
    idx_images im = {0};
    char err[256] = "";
    const char *path = put(name, bytes, n);
    assert_false(idx_read_images(path, &im, err, sizeof err));
    assert_null(im.pixels);
    if (!strstr(err, needle) || !strstr(err, path))
        fail_msg("'%s' does not name '%s' and the path", err, needle);
}

static void test_errors(void **state)
{
    (void)state;
    unsigned char buf[64];
    size_t n = images_file(buf, 0x803, 2, 2, 3, 12);
    expect_images_error("short", buf, 10, "10 bytes, shorter than an IDX header (16)");
    expect_images_error("truncated.gz", buf, n - 1,
                        "the header says 12 bytes of data but the file has 11");
    expect_images_error("long", buf, n + 1, "the header says 12 bytes of data but the file has 13");
    images_file(buf, 0x801, 2, 2, 3, 12);
    expect_images_error("labels-as-images", buf, n, "magic 0x00000801, expected 0x00000803");
    images_file(buf, 0x803, 2, 0, 3, 12);
    expect_images_error("zero-dim", buf, n, "dimension 1 is 0");
    images_file(buf, 0x803, 0x80000000u, 1, 1, 0);
    expect_images_error("huge-dim", buf, 16, "dimension 0 is 2147483648");
    images_file(buf, 0x803, 0x7fffffffu, 0x7fffffffu, 0x7fffffffu, 0);
    expect_images_error("huge-total", buf, 16, "more than 2^40 bytes");

    idx_images im = {0};
    char err[256] = "";
    assert_false(idx_read_images("/nonexistent/kiln/idx", &im, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/kiln/idx: cannot open"));
    idx_labels lab = {0};
    const unsigned char short_labels[] = {0, 0, 8, 1, 0, 0, 0, 4, 9};
    assert_false(idx_read_labels(put("lab-short", short_labels, sizeof short_labels), &lab, err,
                                 sizeof err));
    assert_non_null(strstr(err, "the header says 4 bytes of data but the file has 1"));
    assert_null(lab.labels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_images_plain_and_gzip),
        cmocka_unit_test(test_labels),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
