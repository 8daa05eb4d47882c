/*
 * test_npy.c - .npy files: files written by NumPy read back exactly
 * (tests/ref/make_npy_fixtures.py made them), files Kiln writes are
 * byte-identical to NumPy's, module tensors set from and written to .npy on
 * the interpreter and the C target, every header error named, and an
 * out-of-memory sweep.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define FIX(name) KILN_SOURCE_DIR "/tests/data/npy/" name

static char dir[] = "/tmp/kiln-npy-XXXXXX";

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return path;
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = ku_read_file(a, &na), *y = ku_read_file(b, &nb);
    assert_non_null(x);
    assert_non_null(y);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

static void test_reads_numpy_files(void **state)
{
    (void)state;
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    assert_int_equal(kiln_npy_info(FIX("f32_2x3.npy"), &dt, &rank, dims), KILN_OK);
    assert_int_equal(dt, KILN_F32);
    assert_int_equal(rank, 2);
    assert_true(dims[0] == 2 && dims[1] == 3);
    float f[6];
    assert_int_equal(kiln_npy_load(FIX("f32_2x3.npy"), KILN_F32, KILN_SHAPE(2, 3), f), KILN_OK);
    for (int i = 0; i < 6; i++)
        assert_true(f[i] == (float)i / 4);
    assert_string_equal(kiln_npy_error(), "");

    double d;
    assert_int_equal(kiln_npy_load(FIX("f64_scalar.npy"), KILN_F64, 0, NULL, &d), KILN_OK);
    assert_true(d == -2.5);
    int32_t i32[4];
    assert_int_equal(kiln_npy_load(FIX("i32_4.npy"), KILN_I32, KILN_SHAPE(4), i32), KILN_OK);
    assert_true(i32[1] == -2 && i32[3] == 2147483647);
    int64_t i64[4];
    assert_int_equal(kiln_npy_load(FIX("i64_2x2.npy"), KILN_I64, KILN_SHAPE(2, 2), i64), KILN_OK);
    assert_true(i64[1] == (int64_t)1 << 40 && i64[3] == -((int64_t)1 << 62));
    bool b[3];
    assert_int_equal(kiln_npy_load(FIX("bool_3.npy"), KILN_BOOL, KILN_SHAPE(3), b), KILN_OK);
    assert_true(b[0] && !b[1] && b[2]);
    float none[1] = {42};
    assert_int_equal(kiln_npy_load(FIX("f32_0x2.npy"), KILN_F32, KILN_SHAPE(0, 2), none), KILN_OK);
    assert_true(none[0] == 42);
    assert_int_equal(kiln_npy_load(FIX("v2_i64_3.npy"), KILN_I64, KILN_SHAPE(3), i64), KILN_OK);
    assert_true(i64[0] == 7 && i64[2] == 9);
    float two[2];
    assert_int_equal(kiln_npy_load(FIX("spacing_f32_2.npy"), KILN_F32, KILN_SHAPE(2), two),
                     KILN_OK);
    assert_true(two[0] == 1.5f && two[1] == -1.0f);
}

/* What Kiln writes is what numpy.save wrote, byte for byte, and reads back. */
static void test_writes_numpy_bytes(void **state)
{
    (void)state;
    float f[6];
    for (int i = 0; i < 6; i++)
        f[i] = (float)i / 4;
    assert_int_equal(kiln_npy_save(tmp_path("a.npy"), KILN_F32, KILN_SHAPE(2, 3), f), KILN_OK);
    assert_same_file(tmp_path("a.npy"), FIX("f32_2x3.npy"));
    double d = -2.5;
    assert_int_equal(kiln_npy_save(tmp_path("b.npy"), KILN_F64, 0, NULL, &d), KILN_OK);
    assert_same_file(tmp_path("b.npy"), FIX("f64_scalar.npy"));
    const int32_t i32[4] = {1, -2, 3, 2147483647};
    assert_int_equal(kiln_npy_save(tmp_path("c.npy"), KILN_I32, KILN_SHAPE(4), i32), KILN_OK);
    assert_same_file(tmp_path("c.npy"), FIX("i32_4.npy"));
    const int64_t i64[4] = {1, (int64_t)1 << 40, -3, -((int64_t)1 << 62)};
    assert_int_equal(kiln_npy_save(tmp_path("d.npy"), KILN_I64, KILN_SHAPE(2, 2), i64), KILN_OK);
    assert_same_file(tmp_path("d.npy"), FIX("i64_2x2.npy"));
    const bool b[3] = {true, false, true};
    assert_int_equal(kiln_npy_save(tmp_path("e.npy"), KILN_BOOL, KILN_SHAPE(3), b), KILN_OK);
    assert_same_file(tmp_path("e.npy"), FIX("bool_3.npy"));
    assert_int_equal(kiln_npy_save(tmp_path("f.npy"), KILN_F32, KILN_SHAPE(0, 2), NULL), KILN_OK);
    assert_same_file(tmp_path("f.npy"), FIX("f32_0x2.npy"));
    /* rank 8, read back */
    int64_t dims[8] = {1, 2, 1, 2, 1, 2, 1, 2}, got[KILN_MAX_RANK];
    float v[16], w[16];
    for (int i = 0; i < 16; i++)
        v[i] = (float)i - 8;
    assert_int_equal(kiln_npy_save(tmp_path("g.npy"), KILN_F32, 8, dims, v), KILN_OK);
    kiln_dtype dt;
    int rank;
    assert_int_equal(kiln_npy_info(tmp_path("g.npy"), &dt, &rank, got), KILN_OK);
    assert_int_equal(rank, 8);
    assert_memory_equal(got, dims, sizeof dims);
    assert_int_equal(kiln_npy_load(tmp_path("g.npy"), KILN_F32, 8, dims, w), KILN_OK);
    assert_memory_equal(v, w, sizeof v);
}

/* Writes raw bytes to a temp file and returns its path. */
static const char *raw(const char *name, const char *bytes, size_t n)
{
    const char *path = tmp_path(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* A v1.0 file with this header text (padded) and n data bytes. */
static const char *with_header(const char *name, const char *dict, size_t n)
{
    char buf[512];
    size_t hl = strlen(dict);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hl & 0xff);
    buf[9] = (char)(hl >> 8);
    memcpy(buf + 10, dict, hl);
    memset(buf + 10 + hl, 0, n);
    return raw(name, buf, 10 + hl + n);
}

static void expect_error(const char *path, kiln_dtype dt, int rank, const int64_t *dims,
                         kiln_status want, const char *needle)
{
    float dst[8] = {7, 7, 7, 7, 7, 7, 7, 7};
    assert_int_equal(kiln_npy_load(path, dt, rank, dims, dst), want);
    if (!strstr(kiln_npy_error(), needle) || !strstr(kiln_npy_error(), "kiln_npy_load: "))
        fail_msg("'%s' does not contain '%s'", kiln_npy_error(), needle);
    for (int i = 0; i < 8; i++)
        assert_true(dst[i] == 7); /* untouched */
}

static void test_errors(void **state)
{
    (void)state;
    const int64_t d23[2] = {2, 3}, d6[1] = {6}, d2[1] = {2};
    expect_error(FIX("f32_2x3.npy"), KILN_F64, 2, d23, KILN_ERR_DTYPE,
                 "holds float32 [2, 3], not float64 [2, 3]");
    expect_error(FIX("f32_2x3.npy"), KILN_F32, 1, d6, KILN_ERR_SHAPE,
                 "holds float32 [2, 3], not float32 [6]");
    expect_error(FIX("fortran.npy"), KILN_F32, 2, d23, KILN_ERR_UNSUPPORTED,
                 "Fortran-order arrays are not supported");
    expect_error(FIX("bigendian.npy"), KILN_F32, 1, d2, KILN_ERR_UNSUPPORTED,
                 "big-endian data ('>f4') is not supported");
    expect_error(FIX("f16.npy"), KILN_F32, 1, d2, KILN_ERR_UNSUPPORTED,
                 "dtype '<f2' is not supported");
    expect_error(tmp_path("missing.npy"), KILN_F32, 1, d2, KILN_ERR_IO, "cannot read");
    expect_error(raw("short", "\x93NUM", 4), KILN_F32, 1, d2, KILN_ERR_FORMAT,
                 "is not a .npy file");
    expect_error(raw("magic", "\x93NUMPX\x01\x00\x00\x00", 10), KILN_F32, 1, d2, KILN_ERR_FORMAT,
                 "no \\x93NUMPY magic");
    expect_error(raw("version", "\x93NUMPY\x04\x00\x00\x00", 10), KILN_F32, 1, d2,
                 KILN_ERR_UNSUPPORTED, "is .npy format 4.0; Kiln reads 1.0-3.0");
    expect_error(raw("v2short", "\x93NUMPY\x02\x00\x00\x00", 10), KILN_F32, 1, d2, KILN_ERR_FORMAT,
                 "truncated inside its header");
    expect_error(raw("hlen", "\x93NUMPY\x01\x00\xff\x00{}", 12), KILN_F32, 1, d2, KILN_ERR_FORMAT,
                 "the header says it is 255 bytes but only 2 follow");
    static const struct {
        const char *dict;
        size_t data;
        kiln_status st;
        const char *needle;
    } cases[] = {
        {"[]", 0, KILN_ERR_FORMAT, "the header is not a dict"},
        {"{'descr': '<f4', 'fortran_order': False}", 8, KILN_ERR_FORMAT, "no 'shape'"},
        {"{'fortran_order': False, 'shape': (2,)}", 8, KILN_ERR_FORMAT, "no 'descr'"},
        {"{'descr': '<f4', 'shape': (2,)}", 8, KILN_ERR_FORMAT, "no 'fortran_order'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8, KILN_ERR_FORMAT,
         "an unknown key 'x'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8,
         KILN_ERR_FORMAT, "a second key 'descr'"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,)}", 8, KILN_ERR_FORMAT,
         "'fortran_order' is not True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", 8, KILN_ERR_FORMAT,
         "'shape' (n) is not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [2]}", 8, KILN_ERR_FORMAT,
         "'shape' is not a tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", 8, KILN_ERR_FORMAT,
         "other than non-negative integers"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3)}", 8, KILN_ERR_FORMAT,
         "'shape' is malformed"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", 8,
         KILN_ERR_FORMAT, "a dimension of 'shape' is too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4)}", 8,
         KILN_ERR_FORMAT, "the shape's byte count overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 4,
         KILN_ERR_UNSUPPORTED, "more than 8 dimensions"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } x", 8, KILN_ERR_FORMAT,
         "the header has text after its dict"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (2,)}", 8, KILN_ERR_FORMAT,
         "expected ',' or '}'"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", 8, KILN_ERR_FORMAT,
         "expected ':'"},
        {"{descr: '<f4'}", 8, KILN_ERR_FORMAT, "expected a quoted string"},
        {"{'descr': '<f4", 8, KILN_ERR_FORMAT, "an unterminated string"},
        {"{'de\\scr': '<f4'}", 8, KILN_ERR_FORMAT, "a string Kiln cannot read"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 7, KILN_ERR_FORMAT,
         "holds 7 bytes of data but float32 [2] needs 8"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 9, KILN_ERR_FORMAT,
         "holds 9 bytes of data but float32 [2] needs 8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "case%zu.npy", i);
        expect_error(with_header(name, cases[i].dict, cases[i].data), KILN_F32, 1, d2, cases[i].st,
                     cases[i].needle);
    }
    /* arguments and writes */
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    float f[2] = {0, 0};
    assert_int_equal(kiln_npy_info(NULL, &dt, &rank, dims), KILN_ERR_INVALID);
    assert_int_equal(kiln_npy_info(FIX("f32_2x3.npy"), NULL, &rank, dims), KILN_ERR_INVALID);
    assert_int_equal(kiln_npy_load(NULL, KILN_F32, 1, d2, f), KILN_ERR_INVALID);
    assert_int_equal(kiln_npy_load(FIX("f32_2x3.npy"), KILN_F32, 9, dims, f), KILN_ERR_INVALID);
    assert_int_equal(kiln_npy_info(raw("x", "junk", 4), &dt, &rank, dims), KILN_ERR_FORMAT);
    assert_non_null(strstr(kiln_npy_error(), "kiln_npy_info: "));
    assert_int_equal(kiln_npy_save(NULL, KILN_F32, 1, d2, f), KILN_ERR_INVALID);
    assert_int_equal(kiln_npy_save(tmp_path("n.npy"), KILN_F32, 1, d2, NULL), KILN_ERR_INVALID);
    assert_int_equal(kiln_npy_save(tmp_path("n.npy"), (kiln_dtype)9, 1, d2, f), KILN_ERR_INVALID);
    const int64_t neg[1] = {-1};
    assert_int_equal(kiln_npy_save(tmp_path("n.npy"), KILN_F32, 1, neg, f), KILN_ERR_SHAPE);
    assert_non_null(strstr(kiln_npy_error(), "dimension 0 is -1"));
    /* 2^64 bytes wrapped to 0: the save wrote a header its own reader refuses */
    assert_int_equal(kiln_npy_save(tmp_path("n.npy"), KILN_F32, KILN_SHAPE(INT64_C(1) << 62, 4), f),
                     KILN_ERR_SHAPE);
    assert_string_equal(kiln_npy_error(), "kiln_npy_save: the shape [4611686018427387904, 4] of "
                                          "dtype float32 has more bytes than int64 can count");
    assert_int_equal(kiln_npy_save("/nonexistent-dir/kiln/x.npy", KILN_F32, 1, d2, f), KILN_ERR_IO);
    assert_non_null(strstr(kiln_npy_error(), "cannot create '/nonexistent-dir/kiln/x.npy'"));
    assert_int_equal(access(tmp_path("n.npy"), F_OK), -1); /* no failed save left a file */
}

/* ---- what save replaces and what load reads --------------------------------------- */

/* <dir>/<name> into buf. */
static const char *at(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
    return buf;
}

static void expect_npy_error(kiln_status got, const char *fn, const char *path, const char *tail)
{
    char want[512];
    snprintf(want, sizeof want, "%s: '%s' %s", fn, path, tail);
    assert_int_equal(got, KILN_ERR_IO);
    if (strcmp(kiln_npy_error(), want) != 0)
        fail_msg("'%s' is not '%s'", kiln_npy_error(), want);
}

/* Only a regular file is replaced: a FIFO, a device node (root only: mknod
 * needs CAP_MKNOD) and a symlink stay what they were, and so does the file
 * the symlink points to. get_npy says the same on the module. */
static void test_save_refuses_special_files(void **state)
{
    (void)state;
    const float f[2] = {1, 2}, g[2] = {3, 4};
    char fifo[128], dev[128], real[128], link[128];
    struct stat st;
    at(fifo, sizeof fifo, "fifo.npy");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    expect_npy_error(kiln_npy_save(fifo, KILN_F32, KILN_SHAPE(2), f), "kiln_npy_save", fifo,
                     "is a FIFO, not a regular file");
    assert_true(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));

    at(dev, sizeof dev, "null.npy");
    if (geteuid() == 0 && mknod(dev, S_IFCHR | 0666, makedev(1, 3)) == 0) {
        expect_npy_error(kiln_npy_save(dev, KILN_F32, KILN_SHAPE(2), f), "kiln_npy_save", dev,
                         "is a character device, not a regular file");
        assert_true(lstat(dev, &st) == 0 && S_ISCHR(st.st_mode));
    } else {
        fprintf(stderr, "note: not root, the device-node case is not run\n");
    }

    at(real, sizeof real, "real.npy");
    at(link, sizeof link, "link.npy");
    assert_int_equal(kiln_npy_save(real, KILN_F32, KILN_SHAPE(2), f), KILN_OK);
    assert_int_equal(symlink("real.npy", link), 0);
    expect_npy_error(kiln_npy_save(link, KILN_F32, KILN_SHAPE(2), g), "kiln_npy_save", link,
                     "is a symbolic link: save to the file it points to");
    assert_true(lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    float back[2];
    assert_int_equal(kiln_npy_load(real, KILN_F32, KILN_SHAPE(2), back), KILN_OK);
    assert_true(back[0] == 1 && back[1] == 2);

    kiln_graph *gr = ku_graph_new();
    kiln_tensor *x = kiln_input(gr, "x", KILN_F32, KILN_SHAPE(2));
    assert_int_equal(kiln_entry(gr, "f", 1, &x, (const char *[]){"y"}), KILN_OK);
    kiln_module *m = ku_compile_for(gr, KILN_TARGET_INTERP);
    kiln_status s = kiln_module_get_npy(m, "x", link);
    char want[256];
    snprintf(want, sizeof want,
             "kiln_module_get_npy: '%s' is a symbolic link: save to the file it points to", link);
    assert_module_error(m, s, KILN_ERR_IO, want);
    kiln_module_free(m);
    kiln_graph_free(gr);
}

/* A save keeps the mode of the file it replaces; a new file gets
 * 0666 & ~umask. */
static void test_save_keeps_the_mode(void **state)
{
    (void)state;
    const float f[2] = {1, 2};
    char p[128];
    mode_t old = umask(077);
    assert_int_equal(kiln_npy_save(at(p, sizeof p, "private.npy"), KILN_F32, KILN_SHAPE(2), f),
                     KILN_OK);
    assert_int_equal(ku_mode_of(p), 0600);
    umask(022);
    assert_int_equal(kiln_npy_save(at(p, sizeof p, "shared.npy"), KILN_F32, KILN_SHAPE(2), f),
                     KILN_OK);
    assert_int_equal(ku_mode_of(p), 0644);
    assert_int_equal(chmod(p, 0600), 0);
    assert_int_equal(kiln_npy_save(p, KILN_F32, KILN_SHAPE(2), f), KILN_OK);
    assert_int_equal(ku_mode_of(p), 0600);
    umask(old);
}

/* A killed save's temporary file goes at the next save of its target once
 * its process is gone; one of a live process stays. */
static void test_save_removes_stale_temp_files(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    assert_true(kill(dead, 0) == -1 && errno == ESRCH);
    char name[64], stale[128], live[128], p[128];
    snprintf(name, sizeof name, "t.npy.tmp.%ld.q1W2e3", (long)dead);
    at(stale, sizeof stale, name);
    snprintf(name, sizeof name, "t.npy.tmp.%ld.q1W2e3", (long)getpid());
    at(live, sizeof live, name);
    raw("stale", "x", 1);
    assert_int_equal(rename(tmp_path("stale"), stale), 0);
    raw("live", "x", 1);
    assert_int_equal(rename(tmp_path("live"), live), 0);
    const float f[2] = {1, 2};
    assert_int_equal(kiln_npy_save(at(p, sizeof p, "t.npy"), KILN_F32, KILN_SHAPE(2), f), KILN_OK);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    unlink(live);
}

/* Runs info, load and set_npy on path in a child with 5 seconds: a reader
 * that blocks (a FIFO) or reads without end (/dev/zero) fails the test
 * instead of hanging it. Each must refuse with KILN_ERR_IO and the tail. */
typedef struct {
    kiln_module *m;
    const char *path, *tail;
} read_case;

static int reads_refused(void *arg)
{
    const read_case *c = arg;
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    float v[2];
    char want[3][256];
    snprintf(want[0], sizeof want[0], "kiln_npy_info: '%s' %s", c->path, c->tail);
    snprintf(want[1], sizeof want[1], "kiln_npy_load: '%s' %s", c->path, c->tail);
    snprintf(want[2], sizeof want[2], "kiln_module_set_npy: '%s' %s (for 'x')", c->path, c->tail);
    kiln_status s[3];
    const char *msg[3];
    s[0] = kiln_npy_info(c->path, &dt, &rank, dims);
    msg[0] = strdup(kiln_npy_error());
    s[1] = kiln_npy_load(c->path, KILN_F32, KILN_SHAPE(2), v);
    msg[1] = strdup(kiln_npy_error());
    s[2] = kiln_module_set_npy(c->m, "x", c->path);
    msg[2] = kiln_module_error(c->m);
    int bad = 0;
    for (int i = 0; i < 3; i++)
        if (s[i] != KILN_ERR_IO || strcmp(msg[i], want[i]) != 0) {
            fprintf(stderr, "status %d, '%s', not '%s'\n", s[i], msg[i], want[i]);
            bad = 1;
        }
    return bad;
}

static void read_in_child(kiln_module *m, const char *path, const char *tail)
{
    read_case c = {m, path, tail};
    char what[600];
    snprintf(what, sizeof what, "reading '%s'", path);
    ku_in_child(what, reads_refused, &c);
}

/* The readers read only regular files (a symlink to one is fine). */
static void test_read_refuses_special_files(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2));
    assert_int_equal(kiln_entry(g, "f", 1, &x, (const char *[]){"y"}), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_INTERP);
    char fifo[128], link[128];
    at(fifo, sizeof fifo, "read.fifo");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    read_in_child(m, fifo, "is a FIFO, not a regular file");
    read_in_child(m, "/dev/zero", "is a character device, not a regular file");
    unlink(fifo);
    at(link, sizeof link, "to-f32.npy");
    assert_int_equal(symlink(FIX("f32_2x3.npy"), link), 0);
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    assert_int_equal(kiln_npy_info(link, &dt, &rank, dims), KILN_OK);
    assert_true(dt == KILN_F32 && rank == 2 && dims[0] == 2 && dims[1] == 3);
    kiln_module_free(m);
    kiln_graph_free(g);
}

/* A disk that fills mid-save (a 64 KB tmpfs in a mount namespace of this
 * process; needs root): KILN_ERR_IO naming the file and ENOSPC, the old file
 * intact, no temporary file. */
static void test_save_disk_full(void **state)
{
    (void)state;
    char full[128], p[160];
    at(full, sizeof full, "full");
    assert_int_equal(mkdir(full, 0755), 0);
    if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", full, "tmpfs", 0, "size=64k") != 0) {
        rmdir(full);
        ku_skip("cannot mount a small tmpfs (not root, or no CAP_SYS_ADMIN)");
    }
    snprintf(p, sizeof p, "%s/a.npy", full);
    const float small[2] = {1, 2};
    assert_int_equal(kiln_npy_save(p, KILN_F32, KILN_SHAPE(2), small), KILN_OK);
    float *big = calloc(32768, sizeof(float)); /* 128 KB */
    assert_non_null(big);
    assert_int_equal(kiln_npy_save(p, KILN_F32, KILN_SHAPE(32768), big), KILN_ERR_IO);
    char want[256];
    snprintf(want, sizeof want, "kiln_npy_save: cannot write '%s': No space left on device", p);
    assert_string_equal(kiln_npy_error(), want);
    free(big);
    float back[2];
    assert_int_equal(kiln_npy_load(p, KILN_F32, KILN_SHAPE(2), back), KILN_OK);
    assert_true(back[0] == 1 && back[1] == 2);
    DIR *d = opendir(full);
    assert_non_null(d);
    struct dirent *e;
    int others = 0;
    while ((e = readdir(d)))
        others += e->d_name[0] != '.' && strcmp(e->d_name, "a.npy") != 0;
    closedir(d);
    assert_int_equal(others, 0);
    assert_int_equal(umount(full), 0);
    assert_int_equal(rmdir(full), 0);
}

/* set_npy / get_npy on a module of each target. */
static void test_module_helpers(void **state)
{
    (void)state;
    static const kiln_target targets[] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
        kiln_tensor *y = kiln_mul(g, x, kiln_scalar(g, 2));
        assert_int_equal(kiln_entry(g, "f", 1, &y, (const char *[]){"y"}), KILN_OK);
        kiln_module *m = ku_compile_for(g, targets[t]);
        assert_int_equal(kiln_module_set_npy(m, "x", FIX("f32_2x3.npy")), KILN_OK);
        assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
        assert_int_equal(kiln_module_get_npy(m, "y", tmp_path("y.npy")), KILN_OK);
        float got[6];
        assert_int_equal(kiln_npy_load(tmp_path("y.npy"), KILN_F32, KILN_SHAPE(2, 3), got),
                         KILN_OK);
        for (int i = 0; i < 6; i++)
            assert_true(got[i] == (float)i / 2);
        kiln_status s = kiln_module_set_npy(m, "x", FIX("i32_4.npy"));
        assert_module_error(m, s, KILN_ERR_DTYPE, "kiln_module_set_npy: ");
        assert_module_error(m, s, KILN_ERR_DTYPE, "holds int32 [4], not float32 [2, 3] (for 'x')");
        s = kiln_module_set_npy(m, "nope", FIX("f32_2x3.npy"));
        assert_module_error(m, s, KILN_ERR_NOT_FOUND, "no tensor named 'nope'");
        s = kiln_module_set_npy(m, NULL, FIX("f32_2x3.npy"));
        assert_module_error(m, s, KILN_ERR_INVALID, "the name is NULL");
        s = kiln_module_set_npy(m, "x", NULL);
        assert_module_error(m, s, KILN_ERR_INVALID, "the path is NULL");
        s = kiln_module_get_npy(m, "y", NULL);
        assert_module_error(m, s, KILN_ERR_INVALID, "the path is NULL");
        s = kiln_module_get_npy(m, "y", "/nonexistent-dir/y.npy");
        assert_module_error(m, s, KILN_ERR_IO, "kiln_module_get_npy: cannot create");
        assert_int_equal(kiln_module_set_npy(NULL, "x", "p"), KILN_ERR_INVALID);
        assert_int_equal(kiln_module_get_npy(NULL, "x", "p"), KILN_ERR_INVALID);
        kiln_module_free(m);
        kiln_graph_free(g);
    }
}

/* Every allocation failure is KILN_ERR_NOMEM and nothing leaks (ASan). */
static void test_out_of_memory(void **state)
{
    (void)state;
    float f[6];
    for (int fail = 0;; fail++) {
        kiln_set_allocator(&ku_failing_allocator);
        ku_fail_after = fail;
        kiln_status a = kiln_npy_load(FIX("f32_2x3.npy"), KILN_F32, KILN_SHAPE(2, 3), f);
        ku_fail_after = fail;
        kiln_status b = kiln_npy_save(tmp_path("oom.npy"), KILN_F32, KILN_SHAPE(2, 3), f);
        ku_fail_after = -1;
        kiln_set_allocator(NULL);
        assert_true(a == KILN_OK || a == KILN_ERR_NOMEM);
        assert_true(b == KILN_OK || b == KILN_ERR_IO || b == KILN_ERR_NOMEM);
        if (a == KILN_OK && b == KILN_OK)
            break;
        assert_true(fail < 50);
    }
}

/* A bool byte other than 0 or 1 reads as true and is stored as 1 on every way
 * in (npy load, kiln_module_set, kiln_tensor_from): a raw 255 or 2 made
 * casts give 255 and 2, and eq(b, True) differ between the C target and the
 * interpreter. */
static void test_bool_bytes_are_normalised(void **state)
{
    (void)state;
    static const char odd[4] = {(char)255, 2, 0, 1};
    char file[128] = "\x93NUMPY\x01\x00";
    const char *dict = "{'descr': '|b1', 'fortran_order': False, 'shape': (4,), }\n";
    size_t hl = strlen(dict);
    file[8] = (char)hl;
    memcpy(file + 10, dict, hl);
    memcpy(file + 10 + hl, odd, 4);
    const char *path = raw("odd_bool.npy", file, 10 + hl + 4);
    unsigned char got[4];
    assert_int_equal(kiln_npy_load(path, KILN_BOOL, KILN_SHAPE(4), got), KILN_OK);
    assert_memory_equal(got, ((const unsigned char[]){1, 1, 0, 1}), 4);

    static const kiln_target targets[] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *b = kiln_input(g, "b", KILN_BOOL, KILN_SHAPE(4));
        kiln_tensor *c = kiln_tensor_from(g, KILN_BOOL, KILN_SHAPE(4), odd);
        kiln_tensor *outs[3] = {kiln_cast(g, b, KILN_I32), kiln_eq(g, b, kiln_scalar(g, 1)),
                                kiln_cast(g, c, KILN_I32)};
        assert_int_equal(kiln_entry(g, "f", 3, outs, (const char *[]){"i", "e", "k"}), KILN_OK);
        kiln_module *m = ku_compile_for(g, targets[t]);
        for (int way = 0; way < 2; way++) {
            if (way == 0)
                assert_int_equal(kiln_module_set_npy(m, "b", path), KILN_OK);
            else
                assert_int_equal(kiln_module_set(m, "b", odd, 4), KILN_OK);
            assert_int_equal(kiln_module_get(m, "b", got, 4), KILN_OK);
            assert_memory_equal(got, ((const unsigned char[]){1, 1, 0, 1}), 4);
            assert_int_equal(kiln_module_run(m, "f"), KILN_OK);
            int32_t i[4], k[4];
            assert_int_equal(kiln_module_get(m, "i", i, sizeof i), KILN_OK);
            assert_int_equal(kiln_module_get(m, "k", k, sizeof k), KILN_OK);
            assert_int_equal(kiln_module_get(m, "e", got, 4), KILN_OK);
            for (int j = 0; j < 4; j++) {
                assert_int_equal(i[j], j == 2 ? 0 : 1);
                assert_int_equal(k[j], j == 2 ? 0 : 1);
                assert_int_equal(got[j], j == 2 ? 0 : 1);
            }
        }
        kiln_module_free(m);
        kiln_graph_free(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_numpy_files),
        cmocka_unit_test(test_writes_numpy_bytes),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_module_helpers),
        cmocka_unit_test(test_bool_bytes_are_normalised),
        cmocka_unit_test(test_save_refuses_special_files),
        cmocka_unit_test(test_save_keeps_the_mode),
        cmocka_unit_test(test_save_removes_stale_temp_files),
        cmocka_unit_test(test_read_refuses_special_files),
        cmocka_unit_test(test_save_disk_full),
        cmocka_unit_test(test_out_of_memory),
    };
    return ku_exit(cmocka_run_group_tests(tests, setup, teardown));
}
