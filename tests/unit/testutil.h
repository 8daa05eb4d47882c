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

#include "ir/kernel.h"
#include "kiln.h"

#include <stdint.h>

/* Every unit test links with -Wl,--wrap=kiln_compile: each graph the suite
 * compiles successfully must also print as .kir, parse back and print again
 * to the same text, so the text format covers every graph the tests build. */
kiln_status __real_kiln_compile(kiln_graph *g, const kiln_compile_opts *opts, kiln_module **out);
kiln_status __wrap_kiln_compile(kiln_graph *g, const kiln_compile_opts *opts, kiln_module **out);

/* A case that cannot run here: prints why and skips it. cmocka's skip()
 * counts as a pass in the group's exit status, so a test's main returns
 * ku_exit(failed), which is 77 (ctest's SKIP_RETURN_CODE) when a case skipped
 * and none failed. */
extern const char *ku_skipped;
#define ku_skip(why)                                                                               \
    do {                                                                                           \
        ku_skipped = (why);                                                                        \
        print_message("skipped: %s\n", ku_skipped);                                                \
        skip();                                                                                    \
    } while (0)
int ku_exit(int failed);

/* Runs fn(arg) in a child that has 5 seconds and ku_capped_allocator: a call
 * that blocks (a FIFO) or reads without end (/dev/zero) fails the test
 * instead of hanging it. fn returns 0 when its checks held; what names the
 * call in the failure. */
void ku_in_child(const char *what, int (*fn)(void *), void *arg);

/* The permission bits of the file at path (07777 mask). */
unsigned ku_mode_of(const char *path);

/* A $KILN_LIBCUDA that does not exist: tests that set it before the driver is
 * first probed (once per process) see "no driver" on a machine with a GPU too. */
#define KU_NO_LIBCUDA "/nonexistent/kiln-test/libcuda.so.1"

/* An allocator that refuses single allocations over 64 MB, so a reader that
 * reads without bound (/dev/zero) fails fast instead of filling the machine. */
extern const kiln_allocator ku_capped_allocator;

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
/* A fresh graph (asserted non-NULL). */
kiln_graph *ku_graph_new(void);
/* One entry, "main", running every kernel of the hand-built program p. */
void ku_entry_all(kprogram *p);
/* testutil.c: an MLP train step and predict entry (see there). */
kiln_graph *ku_mlp(int64_t batch, const int64_t *sizes, int layers, kiln_optim opt);
/* Softmax, log-softmax, layer-norm and cross-entropy of a [rows, cols] param
 * x (with w, b, labels), summed into a loss: entry "step" returns the loss and
 * its gradients with respect to x, w and b (the row kernels' graph). */
kiln_graph *ku_row_ops(int64_t rows, int64_t cols);
/* A fresh input "x<N>" of the given dtype and shape (asserted non-NULL). */
kiln_tensor *ku_input(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims);
/* No error on g, and every node built so far passes the IR verifier. */
void ku_assert_ok(kiln_graph *g);

/* Makes outs the outputs of entry "f", compiles g for the interpreter and runs
 * it once (asserting success); the caller frees the module. */
kiln_module *ku_run_entry(kiln_graph *g, int n, kiln_tensor *const *outs);
/* Compiles g for target t (asserting success, printing the graph's error
 * first when it fails); the caller frees the module. */
kiln_module *ku_compile_for(kiln_graph *g, kiln_target t);
/* Reads output i of entry "f" ("f.<i>"): nbytes bytes, or n floats. */
void ku_get_bytes(kiln_module *m, int i, void *dst, size_t nbytes);
void ku_get_f32(kiln_module *m, int i, float *dst, size_t n);

/* An allocator that fails once ku_fail_after more allocations have succeeded
 * (-1: never fails); for out-of-memory sweeps. */
extern int ku_fail_after;
extern const kiln_allocator ku_failing_allocator;
/* ku_failing_allocator that also counts in ku_live the allocations not yet
 * freed: a failed call that frees what it took leaves ku_live where it was. */
extern long ku_live;
extern const kiln_allocator ku_counting_allocator;

/* t is non-NULL with exactly these dims (rank 0: use assert_scalar_shape). */
#define assert_shape(t, ...)                                                                       \
    do {                                                                                           \
        const int64_t want_[] = {__VA_ARGS__};                                                     \
        int n_ = (int)(sizeof(want_) / sizeof(want_[0]));                                          \
        assert_non_null(t);                                                                        \
        assert_int_equal(kiln_tensor_rank(t), n_);                                                 \
        for (int i_ = 0; i_ < n_; i_++)                                                            \
            assert_int_equal(kiln_tensor_dim(t, i_), want_[i_]);                                   \
    } while (0)

#define assert_scalar_shape(t)                                                                     \
    do {                                                                                           \
        assert_non_null(t);                                                                        \
        assert_int_equal(kiln_tensor_rank(t), 0);                                                  \
    } while (0)

/* Element i of an array of dtype dt, stored from / read as a double. */
void ku_store(kiln_dtype dt, void *base, int64_t i, double v);
double ku_load(kiln_dtype dt, const void *base, int64_t i);

/* Reads a whole file into a NUL-terminated malloc'd buffer (NULL on failure). */
char *ku_read_file(const char *path, size_t *len);

/* What kiln_module_profile writes, as a malloc'd string; and the count in its
 * row that starts with name (-1 when there is none). */
char *ku_profile_text(kiln_module *m);
long long ku_profile_calls(const char *text, const char *name);
/* The name of the next kernel a C source defines after at ("static int k..."
 * for one that can fail, "static void k..." for one that cannot), or NULL. */
const char *ku_next_kernel(const char *at);

/* A test program's scratch directory: ku_scratch_make(tag) creates
 * $TMPDIR/kiln-<tag>-XXXXXX (a cmocka group setup: 0 or -1), ku_scratch(name)
 * is a path in it (one of four rotating buffers), ku_scratch_remove empties
 * and removes it (its files only: no subdirectories). */
extern char ku_scratch_dir[256];
int ku_scratch_make(const char *tag);
const char *ku_scratch(const char *name);
int ku_scratch_remove(void);
/* ku_scratch_remove as a cmocka group teardown. */
int ku_scratch_teardown(void **state);

#endif
