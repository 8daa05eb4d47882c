/*
 * numdiff.c - compares a program's output with output recorded from PyTorch,
 * allowing numbers to differ in their last printed digits.
 *
 *   numdiff EXPECTED ACTUAL
 *
 * The texts must be identical except inside numbers: a number (a maximal run
 * of digits with an optional sign, point and exponent) must be printed with
 * the same characters except digits, and its value must be within 1e-6
 * relative or 1e-7 absolute of the expected one. Kiln sums f32 values in
 * double where PyTorch sums in f32, so a loss printed to 8 decimals can differ
 * in the last one or two. Exit 0 when they match, 1 with the first mismatch
 * on stderr, 2 on a usage or I/O error.
 */
#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t got;
    while (s && (got = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *more = realloc(s, cap *= 2);
            if (!more)
                free(s);
            s = more;
        }
    }
    fclose(f);
    if (s)
        s[n] = 0;
    return s;
}

/* The length of the number starting at s (0 if none): [-+]digits[.digits][e[-+]digits]. */
static size_t number_len(const char *s)
{
    size_t i = (*s == '-' || *s == '+') ? 1 : 0, digits = 0;
    while (isdigit((unsigned char)s[i]))
        i++, digits++;
    if (s[i] == '.')
        for (i++; isdigit((unsigned char)s[i]); i++)
            digits++;
    if (digits == 0)
        return 0;
    if ((s[i] == 'e' || s[i] == 'E') &&
        (isdigit((unsigned char)s[i + 1]) ||
         ((s[i + 1] == '-' || s[i + 1] == '+') && isdigit((unsigned char)s[i + 2])))) {
        i += 2;
        while (isdigit((unsigned char)s[i]))
            i++;
    }
    return i;
}

static int line_of(const char *start, const char *at)
{
    int line = 1;
    for (; start < at; start++)
        line += *start == '\n';
    return line;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: numdiff EXPECTED ACTUAL\n");
        return 2;
    }
    char *want = slurp(argv[1]), *got = slurp(argv[2]);
    int rc = 0;
    if (!want || !got) {
        fprintf(stderr, "numdiff: cannot read %s\n", want ? argv[2] : argv[1]);
        rc = 2;
    }
    const char *a = want, *b = got;
    while (rc == 0 && (*a || *b)) {
        /* a sign belongs to a number only where a number may start */
        bool starts = a == want || !isalnum((unsigned char)a[-1]);
        size_t na = starts ? number_len(a) : 0, nb = starts ? number_len(b) : 0;
        if (na && nb) {
            bool same_shape = na == nb;
            for (size_t i = 0; same_shape && i < na; i++)
                same_shape =
                    isdigit((unsigned char)a[i]) ? isdigit((unsigned char)b[i]) != 0 : a[i] == b[i];
            double x = strtod(a, NULL), y = strtod(b, NULL);
            if (!same_shape || fabs(x - y) > 1e-6 * fmax(fabs(x), fabs(y)) + 1e-7) {
                fprintf(stderr, "numdiff: line %d: expected %.*s, got %.*s\n", line_of(want, a),
                        (int)na, a, (int)nb, b);
                rc = 1;
                break;
            }
            a += na;
            b += nb;
            continue;
        }
        if (*a != *b) {
            fprintf(stderr, "numdiff: line %d differs:\n  expected: %.*s\n  got:      %.*s\n",
                    line_of(want, a), (int)strcspn(a, "\n"), a, (int)strcspn(b, "\n"), b);
            rc = 1;
            break;
        }
        a++;
        b++;
    }
    free(want);
    free(got);
    return rc;
}
