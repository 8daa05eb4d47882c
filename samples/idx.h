/*
 * idx.h - reads IDX files (the MNIST format), plain or gzip'd, for the
 * samples: images (magic 0x00000803: u8 [n, rows, cols]) as floats scaled to
 * [0, 1], labels (0x00000801: u8 [n]) as int64. Header-only: each sample is
 * one program. Every size is checked against the file: the header's
 * dimensions must be positive and hold exactly the bytes that follow.
 * Errors are written to err ("<path>: what is wrong") and return false.
 * Links with zlib (-lz); gzopen reads uncompressed files as they are.
 */
#ifndef KILN_SAMPLES_IDX_H
#define KILN_SAMPLES_IDX_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <zlib.h>

typedef struct {
    int n, rows, cols;
    float *pixels; /* n * rows * cols, row-major, value / 255 */
} idx_images;

typedef struct {
    int n;
    int64_t *labels;
} idx_labels;

/* Reads the whole (decompressed) file; NULL with err set on failure. */
static inline unsigned char *idx_slurp(const char *path, size_t *len, char *err, size_t errlen)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", path);
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            snprintf(err, errlen, "%s: out of memory", path);
            gzclose(f);
            return NULL;
        }
        int got = gzread(f, buf + n, (unsigned)(cap - n));
        if (got < 0) {
            int code;
            snprintf(err, errlen, "%s: %s", path, gzerror(f, &code));
            free(buf);
            gzclose(f);
            return NULL;
        }
        n += (size_t)got;
        if (got == 0)
            break;
        if (n == cap) {
            unsigned char *more = realloc(buf, cap *= 2);
            if (!more)
                free(buf);
            buf = more;
        }
    }
    gzclose(f);
    *len = n;
    return buf;
}

static inline uint32_t idx_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the header (magic, rank dims, every dim in [1, 2^31)) and that the
 * data is exactly the product of the dims; returns the data. */
static inline const unsigned char *idx_header(const char *path, const unsigned char *buf,
                                              size_t len, uint32_t magic, int rank, int *dims,
                                              char *err, size_t errlen)
{
    size_t head = 4 + 4 * (size_t)rank;
    if (len < head) {
        snprintf(err, errlen, "%s: %zu bytes, shorter than an IDX header (%zu)", path, len, head);
        return NULL;
    }
    if (idx_be32(buf) != magic) {
        snprintf(err, errlen, "%s: magic 0x%08x, expected 0x%08x (u8 data of rank %d)", path,
                 (unsigned)idx_be32(buf), (unsigned)magic, rank);
        return NULL;
    }
    uint64_t want = 1;
    for (int d = 0; d < rank; d++) {
        uint32_t v = idx_be32(buf + 4 + 4 * d);
        if (v == 0 || v > INT32_MAX) {
            snprintf(err, errlen, "%s: dimension %d is %u", path, d, (unsigned)v);
            return NULL;
        }
        dims[d] = (int)v;
        want *= v;
        if (want > ((uint64_t)1 << 40)) {
            snprintf(err, errlen, "%s: the dimensions hold more than 2^40 bytes", path);
            return NULL;
        }
    }
    if (len - head != want) {
        snprintf(err, errlen, "%s: the header says %llu bytes of data but the file has %zu", path,
                 (unsigned long long)want, len - head);
        return NULL;
    }
    return buf + head;
}

static inline bool idx_read_images(const char *path, idx_images *out, char *err, size_t errlen)
{
    size_t len = 0;
    unsigned char *buf = idx_slurp(path, &len, err, errlen);
    if (!buf)
        return false;
    int dims[3];
    const unsigned char *data = idx_header(path, buf, len, 0x00000803u, 3, dims, err, errlen);
    size_t n = data ? (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2] : 0;
    float *px = data ? malloc(sizeof(float) * n) : NULL;
    if (data && !px)
        snprintf(err, errlen, "%s: out of memory", path);
    for (size_t i = 0; px && i < n; i++)
        px[i] = (float)data[i] / 255.0f;
    free(buf);
    if (!px)
        return false;
    *out = (idx_images){.n = dims[0], .rows = dims[1], .cols = dims[2], .pixels = px};
    return true;
}

static inline bool idx_read_labels(const char *path, idx_labels *out, char *err, size_t errlen)
{
    size_t len = 0;
    unsigned char *buf = idx_slurp(path, &len, err, errlen);
    if (!buf)
        return false;
    int n = 0;
    const unsigned char *data = idx_header(path, buf, len, 0x00000801u, 1, &n, err, errlen);
    int64_t *labels = data ? malloc(sizeof(int64_t) * (size_t)n) : NULL;
    if (data && !labels)
        snprintf(err, errlen, "%s: out of memory", path);
    for (int i = 0; labels && i < n; i++)
        labels[i] = data[i];
    free(buf);
    if (!labels)
        return false;
    *out = (idx_labels){.n = n, .labels = labels};
    return true;
}

static inline void idx_free_images(idx_images *x)
{
    free(x->pixels);
    x->pixels = NULL;
}

static inline void idx_free_labels(idx_labels *x)
{
    free(x->labels);
    x->labels = NULL;
}

#endif
