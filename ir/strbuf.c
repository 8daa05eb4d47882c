/*
 * strbuf.c - a growing NUL-terminated string (see strbuf.h), for the
 * renderers and the exporter that print C source.
 */
#include "ir/strbuf.h"

#include "ir/ir.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static bool reserve(cgen_buf *b, size_t extra)
{
    if (b->oom)
        return false;
    if (b->len + extra + 1 <= b->cap)
        return true;
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + extra + 1)
        nc *= 2;
    char *s = ir_realloc(b->s, nc);
    if (!s) {
        b->oom = true;
        return false;
    }
    b->s = s;
    b->cap = nc;
    return true;
}

void cgen_puts(cgen_buf *b, const char *s)
{
    size_t n = strlen(s);
    if (!reserve(b, n))
        return;
    memcpy(b->s + b->len, s, n + 1);
    b->len += n;
}

void cgen_printf(cgen_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if ((size_t)n < sizeof small) {
        cgen_puts(b, small);
        return;
    }
    if (!reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void cgen_indent(cgen_buf *b, int depth)
{
    for (int i = 0; i < depth; i++)
        cgen_puts(b, "    ");
}

void cgen_buf_free(cgen_buf *b)
{
    ir_free(b->s);
    b->s = NULL;
    b->len = b->cap = 0;
}
