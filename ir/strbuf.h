/*
 * strbuf.h - a growing string for printing source text (generated C, CUDA,
 * exported headers). Appends after an allocation failure are dropped and
 * remembered in `oom`, so a printer checks once at the end.
 */
#ifndef KILN_STRBUF_H
#define KILN_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *s; /* NUL-terminated, ir_alloc'd */
    size_t len, cap;
    bool oom; /* set once an allocation failed; later appends are dropped */
} cgen_buf;

void cgen_puts(cgen_buf *b, const char *s);
void cgen_printf(cgen_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cgen_indent(cgen_buf *b, int depth); /* 4 spaces per level */
void cgen_buf_free(cgen_buf *b);

#endif /* KILN_STRBUF_H */
