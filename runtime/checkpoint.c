/*
 * checkpoint.c - kiln_module_save / kiln_module_load: a module's params as a
 * safetensors file, the format PyTorch users share weights in.
 *
 * File: an 8-byte little-endian header length N, N bytes of JSON header, then
 * the data section. The header maps each tensor name to {"dtype", "shape",
 * "data_offsets": [begin, end]} (offsets relative to the data section) and
 * "__metadata__" to an object of strings.
 *
 * save writes every RT_PARAM buffer (optimizer state and the train step's
 * scalars are params too) under its module name: dtype F32/F64/I32/I64/BOOL,
 * shape the param's dims ([] for rank 0), row-major little-endian data.
 * Tensors are sorted by name in the header and in the data section, and the
 * header is padded with spaces to a multiple of 8 bytes, so one module state
 * gives one byte-identical file. __metadata__ is {"format": "kiln",
 * "kiln.run": "<run counter>"}: restoring the Philox run counter makes random
 * ops resume bit for bit. The file is replaced atomically (fsutil.h): a crash
 * mid-save leaves the old checkpoint whole (and a stray "<path>.tmp.<pid>.*",
 * which the next save removes); only a regular file is replaced, keeping its
 * mode, and only a regular file is loaded.
 *
 * load validates the whole file before it changes anything (all or nothing):
 * the header's size (at most 100000000 bytes, as safetensors), its JSON, each
 * entry's dtype, shape (rank <= KILN_MAX_RANK, no overflow) and offsets
 * (within the data, holding exactly the shape's bytes), that tensors neither
 * overlap nor leave holes (the data section is exactly covered, as
 * safetensors requires), no name twice, and "kiln.run" when present (a
 * decimal uint32). Then every tensor must be a param of the module with its
 * dtype and shape. Params the file lacks keep their values, so a params-only
 * file written by another tool loads into a training module; other metadata
 * is ignored; BOOL bytes other than 0 load as 1.
 *
 * cJSON parses the header. Its allocator hooks are process-wide: the first
 * load points them at Kiln's allocator hook (so out-of-memory tests reach
 * them), for every cJSON user in the process.
 */
#include "rt.h"
#include "runtime/fsutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c copies host-order bytes; safetensors data is little-endian"
#endif

enum { MAX_HEADER = 100000000 }; /* safetensors' own limit */

/* Every safetensors dtype with a whole number of bytes per element; kiln is
 * the Kiln dtype it loads into, or -1 for none. */
typedef struct {
    const char *name;
    uint64_t size;
    int kiln;
} st_dtype;

static const st_dtype st_dtypes[] = {
    {"F32", 4, KILN_F32},   {"F64", 8, KILN_F64}, {"I32", 4, KILN_I32}, {"I64", 8, KILN_I64},
    {"BOOL", 1, KILN_BOOL}, {"F16", 2, -1},       {"BF16", 2, -1},      {"I8", 1, -1},
    {"U8", 1, -1},          {"I16", 2, -1},       {"U16", 2, -1},       {"U32", 4, -1},
    {"U64", 8, -1},         {"F8_E4M3", 1, -1},   {"F8_E5M2", 1, -1},
};

static const st_dtype *find_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (strcmp(st_dtypes[i].name, name) == 0)
            return &st_dtypes[i];
    return NULL;
}

static const char *st_name(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return "F32";
    case KILN_F64: return "F64";
    case KILN_I32: return "I32";
    case KILN_I64: return "I64";
    case KILN_BOOL: return "BOOL";
    }
    return "?";
}

/* ---- save ------------------------------------------------------------------ */

/* A growing header text; oom is sticky. */
typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = ir_realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[128]; /* numbers and dtype names only */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* s as a JSON string: quotes, backslashes and control characters escaped. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)s, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const rt_buf *const *)a)->name, (*(const rt_buf *const *)b)->name);
}

/* The header for params (sorted), padded so the data starts 8-byte aligned. */
static void make_header(sbuf *h, const kiln_module *m, const rt_buf *const *params, int n)
{
    sb_printf(h, "{\"__metadata__\":{\"format\":\"kiln\",\"kiln.run\":\"%" PRIu32 "\"}", m->run);
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const kiln_tensor *t = params[i]->node;
        sb_put(h, ",", 1);
        sb_json_str(h, params[i]->name);
        sb_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", st_name(t->dtype));
        for (int d = 0; d < t->rank; d++)
            sb_printf(h, "%s%" PRId64, d ? "," : "", t->dims[d]);
        sb_printf(h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", at,
                  at + (uint64_t)params[i]->nbytes);
        at += params[i]->nbytes;
    }
    sb_put(h, "}", 1);
    while (!h->oom && h->len % 8 != 0)
        sb_put(h, " ", 1);
}

static kiln_status write_file(kiln_module *m, const char *path, const sbuf *h,
                              const rt_buf *const *params, int n)
{
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
    rt_atomic_file f;
    bool ok = rt_atomic_begin(&f, path);
    if (ok) {
        ok = rt_atomic_write(&f, len8, sizeof len8) && rt_atomic_write(&f, h->p, h->len);
        for (int i = 0; i < n && ok; i++)
            ok = rt_atomic_write(&f, params[i]->data, params[i]->nbytes);
        if (ok)
            ok = rt_atomic_commit(&f);
        else
            rt_atomic_abort(&f);
    }
    if (!ok && f.refused)
        return rt_fail(m, KILN_ERR_IO, "kiln_module_save: '%s' %s", path, f.refused);
    if (!ok)
        return rt_fail(m, KILN_ERR_IO, "kiln_module_save: cannot write '%s': %s", path,
                       strerror(errno));
    return KILN_OK;
}

static kiln_status save_body(kiln_module *m, const char *path)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!path)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_save: the path is NULL");
    int n = 0;
    for (int i = 0; i < m->nbufs; i++)
        n += m->bufs[i].role == RT_PARAM;
    const rt_buf **params = ir_alloc(sizeof(*params) * (size_t)(n ? n : 1));
    if (!params)
        return rt_fail(m, KILN_ERR_NOMEM, "kiln_module_save: out of memory");
    n = 0;
    kiln_status s = KILN_OK;
    for (int i = 0; i < m->nbufs && s == KILN_OK; i++)
        if (m->bufs[i].role == RT_PARAM) {
            params[n++] = &m->bufs[i];
            s = rt_host_read(m, &m->bufs[i]); /* a device's value */
        }
    if (s != KILN_OK) {
        ir_free(params);
        return s;
    }
    qsort(params, (size_t)n, sizeof(*params), by_name);
    sbuf h = {0};
    make_header(&h, m, params, n);
    s = h.oom ? rt_fail(m, KILN_ERR_NOMEM, "kiln_module_save: out of memory")
              : write_file(m, path, &h, params, n);
    ir_free(h.p);
    ir_free(params);
    return s;
}

kiln_status kiln_module_save(kiln_module *m, const char *path)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (m->comm && m->comm->rank != 0)
        return KILN_OK; /* data-parallel: rank 0 writes, every rank loads */
    if (!rt_enter(m))
        return rt_busy(m, "kiln_module_save");
    kiln_status s = save_body(m, path);
    rt_leave(m);
    return s;
}

/* ---- load ------------------------------------------------------------------ */

/* cJSON allocates through Kiln's hook; a failed allocation is remembered so a
 * NULL parse can be told apart from bad JSON. */
static _Thread_local bool json_oom;

static void *json_malloc(size_t n)
{
    void *p = ir_alloc(n);
    if (!p)
        json_oom = true;
    return p;
}

static void json_free(void *p)
{
    ir_free(p);
}

static pthread_once_t json_once = PTHREAD_ONCE_INIT;

static void json_init(void)
{
    cJSON_Hooks hooks = {json_malloc, json_free};
    cJSON_InitHooks(&hooks);
}

/* One tensor of the file, validated against the format. */
typedef struct {
    const char *name; /* in the cJSON tree */
    const st_dtype *dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    uint64_t begin, end;
    rt_buf *buf; /* the param it loads into */
} st_tensor;

typedef struct {
    kiln_module *m;
    const char *path;
    char *file;
    size_t size;
    uint64_t data_len;
    const unsigned char *data;
    cJSON *root;
    st_tensor *t;
    int n;
    bool has_run;
    uint32_t run;
    bool lenient; /* kiln_module_load_nonstrict: tensors that are no param are skipped */
} loader;

static kiln_status load_fail(loader *L, kiln_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static kiln_status load_fail(loader *L, kiln_status s, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return rt_fail(L->m, s, "kiln_module_load: '%s': %s", L->path, msg);
}

/* A JSON number that is a whole number in [0, 2^53] (exact in a double). */
static bool json_uint(const cJSON *j, uint64_t *v)
{
    if (!cJSON_IsNumber(j))
        return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0))
        return false;
    *v = (uint64_t)d;
    return (double)*v == d;
}

/* A NUL byte or a \u0000 escape: a name holding NUL would be cut short. */
static bool has_nul(const char *h, size_t n)
{
    if (memchr(h, 0, n))
        return true;
    for (size_t i = 0; i + 1 < n; i++) {
        if (h[i] != '\\')
            continue;
        if (h[i + 1] == 'u' && i + 6 <= n && memcmp(h + i + 2, "0000", 4) == 0)
            return true;
        i++; /* the escaped character */
    }
    return false;
}

static kiln_status parse_entry(loader *L, const cJSON *c, st_tensor *t)
{
    const char *name = t->name = c->string;
    if (!cJSON_IsObject(c))
        return load_fail(L, KILN_ERR_FORMAT, "tensor '%s': the entry is not a JSON object", name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(c, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(c, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(c, "data_offsets");
    if (!cJSON_IsString(dt))
        return load_fail(L, KILN_ERR_FORMAT, "tensor '%s': \"dtype\" is missing or not a string",
                         name);
    if (!(t->dt = find_dtype(dt->valuestring)))
        return load_fail(L, KILN_ERR_FORMAT, "tensor '%s': unknown dtype \"%.40s\"", name,
                         dt->valuestring);
    if (!cJSON_IsArray(shape))
        return load_fail(L, KILN_ERR_FORMAT, "tensor '%s': \"shape\" is missing or not an array",
                         name);
    int rank = cJSON_GetArraySize(shape);
    if (rank > KILN_MAX_RANK)
        return load_fail(L, KILN_ERR_FORMAT,
                         "tensor '%s': the shape has %d dimensions; Kiln allows at most %d", name,
                         rank, KILN_MAX_RANK);
    t->rank = rank;
    uint64_t nbytes = t->dt->size, v = 0;
    bool overflow = false;
    for (int d = 0; d < rank; d++) {
        if (!json_uint(cJSON_GetArrayItem(shape, d), &v))
            return load_fail(L, KILN_ERR_FORMAT,
                             "tensor '%s': shape entry %d is not a non-negative integer", name, d);
        t->dims[d] = (int64_t)v;
        overflow = overflow || __builtin_mul_overflow(nbytes, v, &nbytes);
    }
    char sh[256];
    ir_shape_str(sh, sizeof sh, rank, t->dims);
    if (overflow)
        return load_fail(L, KILN_ERR_FORMAT,
                         "tensor '%s': %s %s is too large (its byte count "
                         "overflows)",
                         name, t->dt->name, sh);
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(cJSON_GetArrayItem(offs, 0), &t->begin) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &t->end))
        return load_fail(L, KILN_ERR_FORMAT,
                         "tensor '%s': \"data_offsets\" is missing or not [begin, end] "
                         "(non-negative integers)",
                         name);
    if (t->begin > t->end)
        return load_fail(L, KILN_ERR_FORMAT,
                         "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                         "] end before they begin",
                         name, t->begin, t->end);
    if (t->end > L->data_len)
        return load_fail(L, KILN_ERR_FORMAT,
                         "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                         "] run past the end of the data (%" PRIu64 " bytes)",
                         name, t->begin, t->end, L->data_len);
    if (t->end - t->begin != nbytes)
        return load_fail(L, KILN_ERR_FORMAT,
                         "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                         " bytes but %s %s needs %" PRIu64,
                         name, t->begin, t->end, t->end - t->begin, t->dt->name, sh, nbytes);
    return KILN_OK;
}

static kiln_status parse_metadata(loader *L, const cJSON *meta)
{
    if (!cJSON_IsObject(meta))
        return load_fail(L, KILN_ERR_FORMAT, "__metadata__ is not a JSON object");
    const cJSON *c;
    cJSON_ArrayForEach(c, meta)
    {
        if (!cJSON_IsString(c))
            return load_fail(L, KILN_ERR_FORMAT, "__metadata__ '%s' is not a string", c->string);
    }
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(meta, "kiln.run");
    if (!run)
        return KILN_OK;
    const char *s = run->valuestring;
    size_t len = strlen(s);
    uint64_t v = 0;
    bool ok = len >= 1 && len <= 10;
    for (size_t i = 0; i < len && ok; i++) {
        ok = s[i] >= '0' && s[i] <= '9';
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (!ok || v > UINT32_MAX)
        return load_fail(L, KILN_ERR_FORMAT,
                         "__metadata__ 'kiln.run' is \"%.40s\", not a decimal run counter (0 to "
                         "4294967295)",
                         s);
    L->has_run = true;
    L->run = (uint32_t)v;
    return KILN_OK;
}

static int by_tensor_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int by_offset(const void *a, const void *b)
{
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* No name twice; the non-empty tensors tile the data section exactly. */
static kiln_status check_layout(loader *L)
{
    qsort(L->t, (size_t)L->n, sizeof *L->t, by_tensor_name);
    for (int i = 1; i < L->n; i++)
        if (strcmp(L->t[i - 1].name, L->t[i].name) == 0)
            return load_fail(L, KILN_ERR_FORMAT, "tensor '%s' appears twice in the header",
                             L->t[i].name);
    qsort(L->t, (size_t)L->n, sizeof *L->t, by_offset);
    uint64_t at = 0, hole_end = L->data_len;
    const st_tensor *prev = NULL;
    for (int i = 0; i < L->n; i++) {
        const st_tensor *t = &L->t[i];
        if (t->begin == t->end)
            continue;
        if (t->begin < at)
            return load_fail(L, KILN_ERR_FORMAT,
                             "tensors '%s' [%" PRIu64 ", %" PRIu64 "] and '%s' [%" PRIu64
                             ", %" PRIu64 "] overlap",
                             prev->name, prev->begin, prev->end, t->name, t->begin, t->end);
        if (t->begin > at) {
            hole_end = t->begin;
            break;
        }
        at = t->end;
        prev = t;
    }
    if (at < L->data_len)
        return load_fail(L, KILN_ERR_FORMAT,
                         "bytes [%" PRIu64 ", %" PRIu64
                         ") of the data belong to no tensor (safetensors allows no holes)",
                         at, hole_end);
    return KILN_OK;
}

/* A file whose first bytes are no safetensors header at all: say so first. */
#define NOT_ST "not a safetensors file: "

/* The header: size, JSON, every entry, the layout. */
static kiln_status parse_header(loader *L)
{
    if (L->size < 8)
        return load_fail(L, KILN_ERR_FORMAT,
                         NOT_ST "the file is %zu bytes, too short for the 8-byte header length",
                         L->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | (unsigned char)L->file[i];
    if (hlen > MAX_HEADER)
        return load_fail(L, KILN_ERR_FORMAT,
                         NOT_ST "the header length %" PRIu64 " is over the limit of %d bytes", hlen,
                         MAX_HEADER);
    if (hlen > L->size - 8)
        return load_fail(L, KILN_ERR_FORMAT,
                         NOT_ST "the header length %" PRIu64
                                " runs past the end of the file (%zu bytes)",
                         hlen, L->size);
    const char *h = L->file + 8;
    L->data = (const unsigned char *)h + hlen;
    L->data_len = L->size - 8 - hlen;
    if (has_nul(h, (size_t)hlen))
        return load_fail(L, KILN_ERR_FORMAT, NOT_ST "the header holds a NUL character");
    const char *end = NULL;
    json_oom = false;
    L->root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, false);
    if (!L->root && json_oom)
        return rt_fail(L->m, KILN_ERR_NOMEM, "kiln_module_load: out of memory");
    if (!L->root)
        return load_fail(L, KILN_ERR_FORMAT,
                         NOT_ST "the header is not valid JSON (at byte %td of it)",
                         end ? end - h : (ptrdiff_t)0);
    for (; end < h + hlen; end++)
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n')
            return load_fail(L, KILN_ERR_FORMAT,
                             "the header has bytes after its JSON value (at byte %td of it)",
                             end - h);
    if (!cJSON_IsObject(L->root))
        return load_fail(L, KILN_ERR_FORMAT, NOT_ST "the header is not a JSON object");
    int n = cJSON_GetArraySize(L->root);
    L->t = ir_alloc(sizeof(*L->t) * (size_t)(n ? n : 1));
    if (!L->t)
        return rt_fail(L->m, KILN_ERR_NOMEM, "kiln_module_load: out of memory");
    const cJSON *c, *meta = NULL;
    kiln_status s = KILN_OK;
    cJSON_ArrayForEach(c, L->root)
    {
        if (strcmp(c->string, "__metadata__") != 0) {
            memset(&L->t[L->n], 0, sizeof L->t[L->n]);
            if ((s = parse_entry(L, c, &L->t[L->n++])) != KILN_OK)
                return s;
        } else if (meta) {
            return load_fail(L, KILN_ERR_FORMAT, "__metadata__ appears twice in the header");
        } else if ((s = parse_metadata(L, meta = c)) != KILN_OK) {
            return s;
        }
    }
    return check_layout(L);
}

static rt_buf *find_param(kiln_module *m, const char *name)
{
    for (int i = 0; i < m->nbufs; i++)
        if (m->bufs[i].role == RT_PARAM && strcmp(m->bufs[i].name, name) == 0)
            return &m->bufs[i];
    return NULL;
}

/* Every tensor of the file is a param of m with its dtype and shape. */
static kiln_status match(loader *L)
{
    for (int i = 0; i < L->n; i++) {
        st_tensor *t = &L->t[i];
        rt_buf *b = t->buf = find_param(L->m, t->name);
        if (!b && L->lenient)
            continue;
        if (!b)
            return rt_fail(L->m, KILN_ERR_NOT_FOUND,
                           "kiln_module_load: '%s' has tensor '%s' which is not a param of this "
                           "module",
                           L->path, t->name);
        const kiln_tensor *p = b->node;
        if (t->dt->kiln != (int)p->dtype)
            return load_fail(L, KILN_ERR_DTYPE,
                             "dtype mismatch for %s: copying a param with dtype %s from "
                             "checkpoint, the dtype in current model is %s (%s).",
                             t->name, t->dt->name, st_name(p->dtype), kiln_dtype_name(p->dtype));
        bool same = t->rank == p->rank;
        for (int d = 0; d < t->rank && same; d++)
            same = t->dims[d] == p->dims[d];
        if (!same) {
            char file_shape[256], model_shape[256];
            ir_shape_str(file_shape, sizeof file_shape, t->rank, t->dims);
            ir_shape_str(model_shape, sizeof model_shape, p->rank, p->dims);
            return load_fail(L, KILN_ERR_SHAPE,
                             "size mismatch for %s: copying a param with shape %s from "
                             "checkpoint, the shape in current model is %s.",
                             t->name, file_shape, model_shape);
        }
    }
    return KILN_OK;
}

/* Nothing before this point changed the module. */
static void apply(loader *L)
{
    for (int i = 0; i < L->n; i++) {
        const st_tensor *t = &L->t[i];
        if (!t->buf) /* skipped (non-strict) */
            continue;
        const unsigned char *src = L->data + t->begin;
        size_t n = (size_t)(t->end - t->begin);
        if (t->dt->kiln == KILN_BOOL) {
            unsigned char *dst = t->buf->data;
            for (size_t k = 0; k < n; k++)
                dst[k] = src[k] != 0;
        } else if (n) {
            memcpy(t->buf->data, src, n);
        }
        rt_host_wrote(L->m, t->buf);
    }
    if (L->has_run)
        L->m->run = L->run;
}

/* PyTorch's load_state_dict(strict=False) report: the file's tensors that are
 * no param of m (skipped), then m's params the file lacks (kept). */
static void report_keys(const loader *L, FILE *f)
{
    fprintf(f, "unexpected keys (skipped):");
    int n = 0;
    for (int i = 0; i < L->n; i++)
        if (!L->t[i].buf)
            fprintf(f, "%s '%s'", n++ ? "," : "", L->t[i].name);
    fprintf(f, "%s\nmissing keys (kept):", n ? "" : " none");
    n = 0;
    for (int i = 0; i < L->m->nbufs; i++) {
        const rt_buf *b = &L->m->bufs[i];
        bool found = false;
        for (int j = 0; j < L->n && !found; j++)
            found = L->t[j].buf == b;
        if (b->role == RT_PARAM && !found)
            fprintf(f, "%s '%s'", n++ ? "," : "", b->name);
    }
    fprintf(f, "%s\n", n ? "" : " none");
}

static kiln_status load_body(kiln_module *m, const char *path, bool lenient, FILE *report)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!path)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_load: the path is NULL");
    pthread_once(&json_once, json_init);
    loader L = {.m = m, .path = path, .lenient = lenient};
    const char *refused;
    L.file = rt_read_regular(path, &L.size, &refused);
    kiln_status s = KILN_OK;
    if (!L.file && refused)
        s = rt_fail(m, KILN_ERR_IO, "kiln_module_load: '%s' %s", path, refused);
    else if (!L.file)
        s = errno == ENOMEM ? rt_fail(m, KILN_ERR_NOMEM, "kiln_module_load: out of memory")
                            : rt_fail(m, KILN_ERR_IO, "kiln_module_load: cannot read '%s': %s",
                                      path, strerror(errno));
    if (s == KILN_OK)
        s = parse_header(&L);
    if (s == KILN_OK)
        s = match(&L);
    if (s == KILN_OK)
        apply(&L);
    if (s == KILN_OK && report)
        report_keys(&L, report);
    cJSON_Delete(L.root);
    ir_free(L.t);
    ir_free(L.file);
    return s;
}

kiln_status kiln_module_load(kiln_module *m, const char *path)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!rt_enter(m))
        return rt_busy(m, "kiln_module_load");
    kiln_status s = load_body(m, path, false, NULL);
    rt_leave(m);
    return s;
}

kiln_status kiln_module_load_nonstrict(kiln_module *m, const char *path, FILE *report)
{
    if (!m)
        return KILN_ERR_INVALID;
    if (!rt_enter(m))
        return rt_busy(m, "kiln_module_load");
    kiln_status s = load_body(m, path, true, report);
    rt_leave(m);
    return s;
}
