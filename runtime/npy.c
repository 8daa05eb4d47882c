/*
 * npy.c - NumPy .npy files: feeding data into modules and dumping results.
 *
 * Format (numpy.lib.format): "\x93NUMPY", version (1.0 written; 1.0, 2.0 and
 * 3.0 read), the header length (u16 for 1.0, u32 after), a Python dict
 * literal {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded
 * with spaces and a newline so the data starts at a multiple of 64, then the
 * data in C order. Kiln's dtypes are '<f4' '<f8' '<i4' '<i8' '|b1'; files are
 * written exactly as numpy.save writes them (tests compare bytes).
 *
 * The header is untrusted input: its length must lie inside the file, the
 * dict is parsed strictly (keys in any order, any spacing, the three keys
 * exactly once, nothing after the closing brace but padding), every dim is a
 * non-negative integer whose product fits, and the data must be exactly the
 * bytes the shape needs. Errors of the file functions go to kiln_npy_error()
 * (per thread), those of the module helpers to kiln_module_error(m).
 */
#include "fsutil.h"
#include "rt.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char npy_error[768];

const char *kiln_npy_error(void)
{
    return npy_error;
}

static kiln_status npy_fail(kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static kiln_status npy_fail(kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(npy_error, sizeof npy_error, fmt, ap);
    va_end(ap);
    return s;
}

static const struct {
    const char *descr;
    kiln_dtype dt;
} descrs[] = {
    {"<f4", KILN_F32}, {"<f8", KILN_F64}, {"<i4", KILN_I32}, {"<i8", KILN_I64}, {"|b1", KILN_BOOL}};
enum { NDESCRS = sizeof descrs / sizeof descrs[0] };

static const char *descr_of(kiln_dtype dt)
{
    for (int i = 0; i < NDESCRS; i++)
        if (descrs[i].dt == dt)
            return descrs[i].descr;
    return NULL;
}

/* ---- the header ------------------------------------------------------------------ */

typedef struct {
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    size_t nbytes; /* of the data the shape needs */
} npy_head;

typedef struct {
    const char *s, *end, *path, *fn;
    kiln_status st; /* KILN_OK until the first error */
} parser;

static bool bad(parser *p, kiln_status s, const char *what)
{
    if (p->st == KILN_OK)
        p->st = npy_fail(s, "%s: '%s': %s", p->fn, p->path, what);
    return false;
}

static void skip(parser *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t'))
        p->s++;
}

static bool eat(parser *p, char c)
{
    skip(p);
    if (p->s < p->end && *p->s == c) {
        p->s++;
        return true;
    }
    return false;
}

/* A quoted Python string ('...' or "...") without escapes, into out. */
static bool quoted(parser *p, char *out, size_t cap)
{
    skip(p);
    if (p->s >= p->end || (*p->s != '\'' && *p->s != '"'))
        return bad(p, KILN_ERR_FORMAT, "the header dict is malformed (expected a quoted string)");
    char q = *p->s++;
    size_t n = 0;
    while (p->s < p->end && *p->s != q) {
        if (*p->s == '\\' || n + 1 >= cap)
            return bad(p, KILN_ERR_FORMAT, "the header dict has a string Kiln cannot read");
        out[n++] = *p->s++;
    }
    if (p->s >= p->end)
        return bad(p, KILN_ERR_FORMAT, "the header dict has an unterminated string");
    p->s++;
    out[n] = 0;
    return true;
}

static bool parse_shape(parser *p, npy_head *h)
{
    if (!eat(p, '('))
        return bad(p, KILN_ERR_FORMAT, "'shape' is not a tuple");
    h->rank = 0;
    for (;;) {
        skip(p);
        if (eat(p, ')'))
            return true;
        if (p->s >= p->end || !isdigit((unsigned char)*p->s))
            return bad(p, KILN_ERR_FORMAT,
                       "'shape' holds something other than non-negative "
                       "integers");
        int64_t v = 0;
        while (p->s < p->end && isdigit((unsigned char)*p->s)) {
            if (v > (INT64_MAX - 9) / 10)
                return bad(p, KILN_ERR_FORMAT, "a dimension of 'shape' is too large");
            v = v * 10 + (*p->s++ - '0');
        }
        if (h->rank == KILN_MAX_RANK)
            return bad(p, KILN_ERR_UNSUPPORTED, "the array has more than 8 dimensions");
        h->dims[h->rank++] = v;
        if (!eat(p, ',')) {
            if (eat(p, ')'))
                return h->rank != 1 ? true : bad(p, KILN_ERR_FORMAT, "'shape' (n) is not a tuple");
            return bad(p, KILN_ERR_FORMAT, "'shape' is malformed");
        }
    }
}

/* Parses the dict text [s, end) into h. */
static bool parse_dict(parser *p, npy_head *h)
{
    bool seen[3] = {false, false, false};
    if (!eat(p, '{'))
        return bad(p, KILN_ERR_FORMAT, "the header is not a dict");
    while (!eat(p, '}')) {
        char key[32], text[32];
        if (!quoted(p, key, sizeof key))
            return false;
        if (!eat(p, ':'))
            return bad(p, KILN_ERR_FORMAT, "the header dict is malformed (expected ':')");
        int k = strcmp(key, "descr") == 0           ? 0
                : strcmp(key, "fortran_order") == 0 ? 1
                : strcmp(key, "shape") == 0         ? 2
                                                    : -1;
        if (k < 0 || seen[k]) {
            char msg[96];
            snprintf(msg, sizeof msg, "the header has %s key '%s'",
                     k < 0 ? "an unknown" : "a second", key);
            return bad(p, KILN_ERR_FORMAT, msg);
        }
        seen[k] = true;
        if (k == 0) {
            if (!quoted(p, text, sizeof text))
                return false;
            int i = 0;
            while (i < NDESCRS && strcmp(descrs[i].descr, text) != 0)
                i++;
            if (i == NDESCRS) {
                char msg[160];
                snprintf(msg, sizeof msg,
                         text[0] == '>' ? "big-endian data ('%s') is not supported"
                                        : "dtype '%s' is not supported ('<f4' '<f8' '<i4' '<i8' "
                                          "'|b1' are)",
                         text);
                return bad(p, KILN_ERR_UNSUPPORTED, msg);
            }
            h->dt = descrs[i].dt;
        } else if (k == 1) {
            skip(p);
            if (p->end - p->s >= 5 && memcmp(p->s, "False", 5) == 0)
                p->s += 5;
            else if (p->end - p->s >= 4 && memcmp(p->s, "True", 4) == 0)
                return bad(p, KILN_ERR_UNSUPPORTED, "Fortran-order arrays are not supported");
            else
                return bad(p, KILN_ERR_FORMAT, "'fortran_order' is not True or False");
        } else if (!parse_shape(p, h)) {
            return false;
        }
        if (!eat(p, ',')) {
            if (eat(p, '}'))
                break;
            return bad(p, KILN_ERR_FORMAT, "the header dict is malformed (expected ',' or '}')");
        }
    }
    if (!seen[0] || !seen[1] || !seen[2])
        return bad(p, KILN_ERR_FORMAT,
                   !seen[0]   ? "the header has no 'descr'"
                   : !seen[1] ? "the header has no 'fortran_order'"
                              : "the header has no 'shape'");
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\n' || *p->s == '\r' || *p->s == '\t'))
        p->s++;
    if (p->s != p->end)
        return bad(p, KILN_ERR_FORMAT, "the header has text after its dict");
    uint64_t n = kiln_dtype_size(h->dt);
    for (int d = 0; d < h->rank; d++) {
        if (h->dims[d] != 0 && n > (uint64_t)INT64_MAX / (uint64_t)h->dims[d])
            return bad(p, KILN_ERR_FORMAT, "the shape's byte count overflows");
        n *= (uint64_t)h->dims[d];
    }
    h->nbytes = (size_t)n;
    return true;
}

/* Checks the file bytes and fills h; *data is where the array starts. */
static kiln_status read_head(const char *fn, const char *path, const unsigned char *b, size_t len,
                             npy_head *h, const unsigned char **data)
{
    if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
        return npy_fail(KILN_ERR_FORMAT, "%s: '%s' is not a .npy file (no \\x93NUMPY magic)", fn,
                        path);
    unsigned major = b[6];
    if (major < 1 || major > 3)
        return npy_fail(KILN_ERR_UNSUPPORTED, "%s: '%s' is .npy format %u.%u; Kiln reads 1.0-3.0",
                        fn, path, major, (unsigned)b[7]);
    size_t start = major == 1 ? 10 : 12;
    if (len < start)
        return npy_fail(KILN_ERR_FORMAT, "%s: '%s' is truncated inside its header", fn, path);
    size_t hlen =
        major == 1 ? (size_t)(b[8] | b[9] << 8)
                   : (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
    if (hlen > len - start)
        return npy_fail(KILN_ERR_FORMAT,
                        "%s: '%s': the header says it is %zu bytes but only %zu follow", fn, path,
                        hlen, len - start);
    parser p = {(const char *)b + start, (const char *)b + start + hlen, path, fn, KILN_OK};
    memset(h, 0, sizeof *h);
    if (!parse_dict(&p, h))
        return p.st;
    size_t have = len - start - hlen;
    if (have != h->nbytes) {
        char shape[256];
        ir_shape_str(shape, sizeof shape, h->rank, h->dims);
        return npy_fail(KILN_ERR_FORMAT, "%s: '%s' holds %zu bytes of data but %s %s needs %zu", fn,
                        path, have, kiln_dtype_name(h->dt), shape, h->nbytes);
    }
    *data = b + start + hlen;
    return KILN_OK;
}

/* Reads path and its header; the caller frees *file with ir_free. */
static kiln_status load_file(const char *fn, const char *path, npy_head *h, char **file,
                             const unsigned char **data)
{
    size_t len = 0;
    const char *refused;
    *file = rt_read_regular(path, &len, &refused);
    if (!*file && refused)
        return npy_fail(KILN_ERR_IO, "%s: '%s' %s", fn, path, refused);
    if (!*file)
        return errno == ENOMEM
                   ? npy_fail(KILN_ERR_NOMEM, "%s: out of memory", fn)
                   : npy_fail(KILN_ERR_IO, "%s: cannot read '%s': %s", fn, path, strerror(errno));
    kiln_status s = read_head(fn, path, (const unsigned char *)*file, len, h, data);
    if (s != KILN_OK) {
        ir_free(*file);
        *file = NULL;
    }
    return s;
}

/* ---- the file functions ------------------------------------------------------------- */

kiln_status kiln_npy_info(const char *path, kiln_dtype *dt, int *rank, int64_t *dims)
{
    npy_error[0] = 0;
    if (!path || !dt || !rank || !dims)
        return npy_fail(KILN_ERR_INVALID, "kiln_npy_info: NULL argument");
    npy_head h;
    char *file;
    const unsigned char *data;
    kiln_status s = load_file("kiln_npy_info", path, &h, &file, &data);
    if (s != KILN_OK)
        return s;
    ir_free(file);
    *dt = h.dt;
    *rank = h.rank;
    memcpy(dims, h.dims, sizeof(*dims) * (size_t)h.rank);
    return KILN_OK;
}

kiln_status kiln_npy_load(const char *path, kiln_dtype dt, int rank, const int64_t *dims, void *dst)
{
    npy_error[0] = 0;
    if (!path || (rank > 0 && !dims) || !dst || rank < 0 || rank > KILN_MAX_RANK)
        return npy_fail(KILN_ERR_INVALID, "kiln_npy_load: NULL argument or bad rank");
    npy_head h;
    char *file;
    const unsigned char *data;
    kiln_status s = load_file("kiln_npy_load", path, &h, &file, &data);
    if (s != KILN_OK)
        return s;
    bool same_shape =
        h.rank == rank && (rank == 0 || memcmp(h.dims, dims, sizeof(*dims) * (size_t)rank) == 0);
    if (h.dt != dt || !same_shape) {
        char have[256], want[256];
        ir_shape_str(have, sizeof have, h.rank, h.dims);
        ir_shape_str(want, sizeof want, rank, dims);
        s = npy_fail(h.dt != dt ? KILN_ERR_DTYPE : KILN_ERR_SHAPE,
                     "kiln_npy_load: '%s' holds %s %s, not %s %s", path, kiln_dtype_name(h.dt),
                     have, kiln_dtype_name(dt), want);
    } else if (h.nbytes) {
        memcpy(dst, data, h.nbytes);
        if (dt == KILN_BOOL)
            ir_bool_normalise(dst, h.nbytes);
    }
    ir_free(file);
    return s;
}

kiln_status kiln_npy_save(const char *path, kiln_dtype dt, int rank, const int64_t *dims,
                          const void *data)
{
    npy_error[0] = 0;
    const char *descr = descr_of(dt);
    if (!path || (rank > 0 && !dims) || rank < 0 || rank > KILN_MAX_RANK || !descr)
        return npy_fail(KILN_ERR_INVALID, "kiln_npy_save: NULL argument, bad rank or dtype");
    uint64_t n = kiln_dtype_size(dt);
    for (int d = 0; d < rank; d++) {
        if (dims[d] < 0)
            return npy_fail(KILN_ERR_SHAPE, "kiln_npy_save: dimension %d is %lld", d,
                            (long long)dims[d]);
    }
    /* the reader's rule (parse_dict), so that what is saved loads back */
    for (int d = 0; d < rank; d++) {
        if (dims[d] != 0 && n > (uint64_t)INT64_MAX / (uint64_t)dims[d]) {
            char buf[256];
            return npy_fail(KILN_ERR_SHAPE,
                            "kiln_npy_save: the shape %s of dtype %s has more bytes than int64 "
                            "can count",
                            ir_shape_str(buf, sizeof(buf), rank, dims), kiln_dtype_name(dt));
        }
        n *= (uint64_t)dims[d];
    }
    if (n && !data)
        return npy_fail(KILN_ERR_INVALID, "kiln_npy_save: data is NULL");
    char head[512];
    int len = snprintf(head, sizeof head,
                       "\x93NUMPY\x01%c%c%c{'descr': '%s', 'fortran_order': "
                       "False, 'shape': (",
                       0, 0, 0, descr);
    for (int d = 0; d < rank; d++)
        len += snprintf(head + len, sizeof head - (size_t)len, "%s%lld", d ? ", " : "",
                        (long long)dims[d]);
    len += snprintf(head + len, sizeof head - (size_t)len, "%s), }", rank == 1 ? "," : "");
    int total = (len + 1 + 63) / 64 * 64; /* the newline ends the header */
    memset(head + len, ' ', (size_t)(total - len - 1));
    head[total - 1] = '\n';
    head[8] = (char)((total - 10) & 0xff);
    head[9] = (char)((total - 10) >> 8);
    rt_atomic_file f;
    if (!rt_atomic_begin(&f, path))
        return f.refused ? npy_fail(KILN_ERR_IO, "kiln_npy_save: '%s' %s", path, f.refused)
                         : npy_fail(KILN_ERR_IO, "kiln_npy_save: cannot create '%s': %s", path,
                                    strerror(errno));
    if (!rt_atomic_write(&f, head, (size_t)total) || (n && !rt_atomic_write(&f, data, n))) {
        int e = errno;
        rt_atomic_abort(&f);
        return npy_fail(KILN_ERR_IO, "kiln_npy_save: cannot write '%s': %s", path, strerror(e));
    }
    if (!rt_atomic_commit(&f))
        return npy_fail(KILN_ERR_IO, "kiln_npy_save: cannot write '%s': %s", path, strerror(errno));
    return KILN_OK;
}

/* ---- module helpers ---------------------------------------------------------------- */

/* The module tensor `name` (recording why not on m). */
static const rt_buf *named(kiln_module *m, const char *fn, const char *name, kiln_status *s)
{
    const rt_buf *b = name ? rt_find(m, name) : NULL;
    *s = b      ? KILN_OK
         : name ? rt_fail(m, KILN_ERR_NOT_FOUND, "%s: no tensor named '%s'", fn, name)
                : rt_fail(m, KILN_ERR_INVALID, "%s: the name is NULL", fn);
    return b;
}

kiln_status kiln_module_set_npy(kiln_module *m, const char *name, const char *path)
{
    if (!m)
        return KILN_ERR_INVALID;
    kiln_status s;
    const rt_buf *b = named(m, "kiln_module_set_npy", name, &s);
    if (!b)
        return s;
    if (!path)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_set_npy: the path is NULL");
    void *tmp = ir_alloc(b->nbytes ? b->nbytes : 1);
    if (!tmp)
        return rt_fail(m, KILN_ERR_NOMEM, "kiln_module_set_npy: out of memory");
    s = kiln_npy_load(path, b->node->dtype, b->node->rank, b->node->dims, tmp);
    if (s != KILN_OK)
        rt_fail(m, s, "kiln_module_set_npy: %s (for '%s')", npy_error + strlen("kiln_npy_load: "),
                name);
    else
        s = kiln_module_set(m, name, tmp, b->nbytes);
    ir_free(tmp);
    return s;
}

kiln_status kiln_module_get_npy(kiln_module *m, const char *name, const char *path)
{
    if (!m)
        return KILN_ERR_INVALID;
    kiln_status s;
    const rt_buf *b = named(m, "kiln_module_get_npy", name, &s);
    if (!b)
        return s;
    if (!path)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_get_npy: the path is NULL");
    void *tmp = ir_alloc(b->nbytes ? b->nbytes : 1);
    if (!tmp)
        return rt_fail(m, KILN_ERR_NOMEM, "kiln_module_get_npy: out of memory");
    s = kiln_module_get(m, name, tmp, b->nbytes);
    if (s == KILN_OK) {
        s = kiln_npy_save(path, b->node->dtype, b->node->rank, b->node->dims, tmp);
        if (s != KILN_OK)
            rt_fail(m, s, "kiln_module_get_npy: %s", npy_error + strlen("kiln_npy_save: "));
    }
    ir_free(tmp);
    return s;
}
