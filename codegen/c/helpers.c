/*
 * helpers.c - cuts the .inc files' helper C at their marker lines, so that a
 * generated source carries only the helpers it uses (see expr.h), and
 * instantiates gemm.inc's tile templates. A marker is a line of its own:
 * a comment whose text starts with "@helper " and lists the section's names.
 */
#include "codegen/c/expr.h"
#include "ir/abi.h"

#include <string.h>

static const char MARK[] = "/* @helper ";

static bool ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* The next marker line at or after s (a line start), or NULL. */
static const char *next_marker(const char *s)
{
    for (; *s; s++) {
        if (strncmp(s, MARK, sizeof MARK - 1) == 0)
            return s;
        s = strchr(s, '\n');
        if (!s)
            return NULL;
    }
    return NULL;
}

bool cgen_helpers_init(cgen_helpers *h, const char *const *texts, int n)
{
    memset(h, 0, sizeof(*h));
    for (int t = 0; t < n; t++)
        for (const char *m = next_marker(texts[t]); m; h->n++) {
            if (h->n == CGEN_MAX_SECTIONS)
                return false;
            cgen_section *s = &h->s[h->n];
            const char *eol = strchr(m, '\n');
            s->names = m + sizeof MARK - 1;
            s->names_end = eol ? eol : m + strlen(m);
            s->text = eol ? eol + 1 : s->names_end;
            m = next_marker(s->text);
            s->end = m ? m : s->text + strlen(s->text);
        }
    return true;
}

/* True when the marker of s lists the identifier id (len characters). */
static bool names(const cgen_section *s, const char *id, size_t len)
{
    for (const char *p = s->names; p + len <= s->names_end; p++)
        if (strncmp(p, id, len) == 0 && (p == s->names || p[-1] == ' ') && !ident_char(p[len]))
            return true;
    return false;
}

/* The names that can select a section: Kiln's own (kiln_, KILN_) and the C
 * library functions whose headers the prelude includes only when used. */
static bool helper_name(const char *id, size_t len)
{
    static const char *const libc[] = {"memcpy", "memset", "malloc", "free", "omp_get_max_threads"};
    if (len > 5 && (strncmp(id, "kiln_", 5) == 0 || strncmp(id, "KILN_", 5) == 0))
        return true;
    for (size_t i = 0; i < sizeof libc / sizeof libc[0]; i++)
        if (strlen(libc[i]) == len && strncmp(id, libc[i], len) == 0)
            return true;
    return false;
}

static void use_range(cgen_helpers *h, const char *at, const char *end)
{
    while (at < end) {
        if (!ident_char(*at)) {
            at++;
            continue;
        }
        const char *id = at;
        while (at < end && ident_char(*at))
            at++;
        size_t len = (size_t)(at - id);
        if (!helper_name(id, len))
            continue;
        for (int i = 0; i < h->n; i++)
            if (!h->s[i].need && names(&h->s[i], id, len)) {
                h->s[i].need = true;
                use_range(h, h->s[i].text, h->s[i].end);
            }
    }
}

void cgen_helpers_use(cgen_helpers *h, const char *text)
{
    use_range(h, text, text + strlen(text));
}

/* The end of the comment that fills the line at `at` (from its first
 * non-blank character to the end of a line), or NULL when the line holds code. */
static const char *comment_line_end(const char *at, const char *end)
{
    while (at < end && (*at == ' ' || *at == '\t'))
        at++;
    if (end - at < 2 || strncmp(at, "/*", 2) != 0)
        return NULL;
    for (const char *c = at + 2; c + 1 < end; c++)
        if (c[0] == '*' && c[1] == '/') {
            const char *e = c + 2;
            while (e < end && (*e == ' ' || *e == '\t'))
                e++;
            return e == end || *e == '\n' ? e : NULL;
        }
    return NULL;
}

/* Appends s's text without its whole-line comments (the .inc files explain
 * the helpers; a generated source is for reading its kernels) and trailing
 * blank lines, then one blank line. */
static void put_section(cgen_buf *b, const cgen_section *s)
{
    const char *end = s->end;
    while (end > s->text && end[-1] == '\n')
        end--;
    for (const char *at = s->text; at < end;) {
        const char *skip = comment_line_end(at, end);
        if (skip) {
            at = skip < end ? skip + 1 : end;
            continue;
        }
        const char *eol = memchr(at, '\n', (size_t)(end - at));
        eol = eol ? eol + 1 : end;
        cgen_printf(b, "%.*s", (int)(eol - at), at);
        at = eol;
    }
    while (!b->oom && b->len > 0 && b->s[b->len - 1] == '\n') /* a comment ended it */
        b->s[--b->len] = '\0';
    cgen_puts(b, "\n\n");
}

bool cgen_helpers_needed(const cgen_helpers *h, const char *text)
{
    size_t len = strlen(text);
    for (int i = 0; i < h->n; i++)
        if (h->s[i].need && h->s[i].text >= text && h->s[i].text <= text + len)
            return true;
    return false;
}

void cgen_helpers_print(cgen_buf *b, const cgen_helpers *h, const char *text)
{
    size_t len = strlen(text);
    for (int i = 0; i < h->n; i++)
        if (h->s[i].need && h->s[i].text >= text && h->s[i].text <= text + len)
            put_section(b, &h->s[i]);
}

/* Prints [at, end) with each whole identifier from[i] replaced by to[i],
 * leaving out "// clang-format" lines (they keep the templates' signatures
 * one parameter list per line, however long the names they get). */
static void substitute(cgen_buf *b, const char *at, const char *end, int n, const char *const *from,
                       const char *const *to)
{
    static const char skip[] = "// clang-format ";
    bool bol = true;
    while (at < end) {
        if (bol && strncmp(at, skip, sizeof skip - 1) == 0) {
            const char *eol = memchr(at, '\n', (size_t)(end - at));
            at = eol ? eol + 1 : end;
            continue;
        }
        const char *id = at;
        while (at < end && ident_char(*at))
            at++;
        bol = false;
        if (at == id) {
            bol = *at == '\n';
            cgen_printf(b, "%c", *at++);
            continue;
        }
        size_t len = (size_t)(at - id);
        int j = 0;
        while (j < n && !(strlen(from[j]) == len && strncmp(from[j], id, len) == 0))
            j++;
        if (j < n)
            cgen_puts(b, to[j]);
        else
            cgen_printf(b, "%.*s", (int)len, id);
    }
}

bool cgen_template(cgen_buf *b, const char *text, const char *name, int n, const char *const *from,
                   const char *const *to)
{
    cgen_helpers h;
    const char *texts[1] = {text};
    if (!cgen_helpers_init(&h, texts, 1))
        return false;
    for (int i = 0; i < h.n; i++) {
        const cgen_section *s = &h.s[i];
        if (!names(s, name, strlen(name)))
            continue;
        const char *end = s->end;
        while (end > s->text && end[-1] == '\n')
            end--;
        substitute(b, s->text, end, n, from, to);
        cgen_puts(b, "\n\n");
        return true;
    }
    return false;
}

void cgen_runerr_enum(cgen_buf *b, const cgen_helpers *h, const char *body)
{
    static const char codes[] = "KILN_RUNERR_";
    bool used = strstr(body, codes) != NULL;
    for (int i = 0; i < h->n && !used; i++)
        for (const char *at = h->s[i].text; h->s[i].need && at + sizeof codes - 1 <= h->s[i].end;
             at++)
            if (strncmp(at, codes, sizeof codes - 1) == 0) {
                used = true;
                break;
            }
    if (!used)
        return;
    cgen_printf(b,
                "enum {\n    KILN_RUNERR_NONE = %d,\n    KILN_RUNERR_INDEX = %d,\n"
                "    KILN_RUNERR_ZERO_DIV = %d,\n    KILN_RUNERR_NEG_POW = %d\n};\n\n",
                KILN_RUNERR_NONE, KILN_RUNERR_INDEX, KILN_RUNERR_ZERO_DIV, KILN_RUNERR_NEG_POW);
}
