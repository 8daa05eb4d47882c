/* testutil.h - shared helpers for the cmocka unit tests. */
#ifndef KILN_TESTUTIL_H
#define KILN_TESTUTIL_H

/* cmocka needs these three first; clang-format would sort it ahead of them */
// clang-format off
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
// clang-format on

#include "kiln.h"

#include <stdint.h>

/* Asserts that g holds an error with status s whose message contains needle. */
#define assert_graph_error(g, s, needle)                                                           \
    ku_assert_graph_error((g), (s), (needle), __FILE__, __LINE__)
void ku_assert_graph_error(const kiln_graph *g, kiln_status s, const char *needle, const char *file,
                           int line);
/* Asserts the module's last error has status s and contains needle. */
#define assert_module_error(m, st, want, needle)                                                   \
    ku_assert_module_error((m), (st), (want), (needle), __FILE__, __LINE__)
void ku_assert_module_error(const kiln_module *m, kiln_status got, kiln_status want,
                            const char *needle, const char *file, int line);
/* Reads a whole file into a NUL-terminated malloc'd buffer (NULL on failure). */
char *ku_read_file(const char *path, size_t *len);

#endif
