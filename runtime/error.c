/*
 * error.c - where the runtime's messages are kept.
 *
 * A module keeps the message of its most recent failed call; a failed
 * kiln_compile or kiln_export records its message on the user's graph (the
 * graph stays usable: the next compile clears it); a failed kiln_module_open
 * has no module yet, so its message is kept per thread.
 */
#include "ir/abi.h"
#include "rt.h"

#include <stdio.h>

kiln_status rt_fail(kiln_module *m, kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof(m->error), fmt, ap);
    va_end(ap);
    return s;
}

kiln_status rt_compile_fail(kiln_graph *g, kiln_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (g->status == KILN_OK) {
        ir_vfail(g, s, fmt, ap);
        g->compile_error = true;
    }
    va_end(ap);
    return s;
}

static _Thread_local char open_error[1024];

kiln_status rt_open_fail(kiln_status s, const char *fmt, ...)
{
    int n = snprintf(open_error, sizeof open_error, "kiln_module_open: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(open_error + n, sizeof open_error - (size_t)n, fmt, ap);
    va_end(ap);
    return s;
}

void rt_open_set(const char *msg)
{
    snprintf(open_error, sizeof open_error, "%s", msg);
}

const char *kiln_module_error(const kiln_module *m)
{
    return m ? m->error : open_error;
}

bool rt_enter(kiln_module *m)
{
    return !atomic_flag_test_and_set_explicit(&m->busy, memory_order_acquire);
}

void rt_leave(kiln_module *m)
{
    atomic_flag_clear_explicit(&m->busy, memory_order_release);
}

kiln_status rt_busy(kiln_module *m, const char *fn)
{
    return rt_fail(m, KILN_ERR_INVALID,
                   "%s: the module is in use by another thread; a module is not thread-safe: give "
                   "each thread its own, or hold a lock around its calls",
                   fn);
}

kiln_status rt_runerr_fail(kiln_module *m, int code, int axis, int64_t index, int64_t size)
{
    if (code == KILN_RUNERR_INDEX)
        return rt_fail(m, KILN_ERR_INVALID,
                       "kiln_module_run: index %lld is out of bounds for dimension %d with size "
                       "%lld",
                       (long long)index, axis, (long long)size);
    if (code == KILN_RUNERR_ZERO_DIV)
        return rt_fail(m, KILN_ERR_INVALID, "kiln_module_run: ZeroDivisionError");
    return rt_fail(m, KILN_ERR_INVALID,
                   "kiln_module_run: Integers to negative integer powers are not allowed.");
}
