/*
 * compile.c - kiln_compile: the whole compiler, one step per line.
 *
 *   check names -> clone once -> verify -> passes + render -> module (buffers,
 *   params) -> executor -> build (clang, or the compile cache) -> load
 *
 * The clone is the module's graph from then on: the passes rewrite it (DCE
 * renumbers, CSE merges) before the module lays out its buffers, so the
 * kernel program and the module read the same nodes. kiln_export and
 * kiln_module_open (export.c) and kilnc share the steps through rt_prepare
 * and rt_render. Errors are recorded on the user's graph, which stays usable.
 */
#include "codegen/c/cgen.h"
#include "codegen/cuda/cuda.h"
#include "passes/passes.h"
#include "rt.h"
#include "runtime/cuda_driver.h"
#include "runtime/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static kiln_status clone(kiln_graph *g, const char *fn, kiln_graph **mg)
{
    *mg = ir_graph_clone(g);
    return *mg ? KILN_OK : rt_compile_fail(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
}

static kiln_status verify(kiln_graph *g, kiln_graph *mg, const char *fn)
{
    kiln_status s = ir_verify(mg);
    return s == KILN_OK ? s : rt_compile_fail(g, s, "%s: %s", fn, kiln_graph_error(mg));
}

kiln_status rt_render(kiln_graph *g, kiln_graph *mg, const kiln_compile_opts *opts, bool launch,
                      bool inplace, const char *fn, const cgen_gemm_sched *force, rt_code *code)
{
    *code = (rt_code){NULL, NULL, 0};
    kiln_target target = opts ? opts->target : KILN_TARGET_C;
    if (target == KILN_TARGET_INTERP) /* it runs the graph itself */
        return KILN_OK;
    kiln_status s = pass_pipeline(mg, &code->prog);
    if (s == KILN_OK && inplace)
        s = pass_inplace(mg, code->prog);
    if (s != KILN_OK)
        return rt_compile_fail(g, s, "%s: %s", fn, kiln_graph_error(mg));
    cgen_host host = rt_host();
    cgen_opts co = {.openmp = true,
                    .features = cgen_host_features(),
                    .launch = launch,
                    .stream_min = cgen_stream_min(&host)};
    rt_tuning tn = {0};
    if (target == KILN_TARGET_C && force) {
        co.gemm = *force;
    } else if (target == KILN_TARGET_C) { /* tuned, cached or the host model's schedules */
        s = rt_tune(g, opts, code->prog, co.features, fn, rt_compile, &tn);
        co.gemm = tn.model;
        co.pick = rt_tuning_pick;
        co.pick_ctx = &tn;
    }
    co.vector_width = cgen_vector_width(&host);
    if (tn.has_stream) /* tuned on this CPU, now or earlier */
        co.stream_min = tn.stream_min;
    if (tn.has_width)
        co.vector_width = tn.vector_width;
    const rt_variant *forced = rt_variant_forced(); /* a candidate of the tuner's */
    if (forced && forced->stream_min >= 0)
        co.stream_min = forced->stream_min;
    if (forced && forced->vector_width >= 0)
        co.vector_width = forced->vector_width;
    code->vector_width = target == KILN_TARGET_C ? co.vector_width : 0;
    if (s == KILN_OK)
        code->source = target == KILN_TARGET_CUDA ? cgen_cuda(code->prog) : cgen_c(code->prog, &co);
    if (s == KILN_OK && code->source && ir_debug_level() >= 1 && !forced &&
        strstr(code->source, "kiln_stream_f32("))
        fprintf(stderr,
                "kiln: %s: pointwise outputs of %lld MiB or more go around the caches "
                "(non-temporal stores; %s; the last-level cache: %lld MiB)\n",
                fn, (long long)(co.stream_min >> 20),
                tn.has_stream ? "tuned on this program and CPU" : "the host model",
                (long long)(host.llc >> 20));
    rt_tuning_free(&tn);
    if (s != KILN_OK) {
        rt_code_free(code);
        return s;
    }
    if (!code->source) {
        rt_code_free(code);
        return rt_compile_fail(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
    }
    return KILN_OK;
}

bool rt_launch_wanted(void)
{
    const char *e = getenv("KILN_EXECUTOR");
    return e && strcmp(e, "launch") == 0;
}

/* The executor: the interpreter runs the graph; compiled C runs whole
 * entries; CUDA (and C under KILN_EXECUTOR=launch) goes through the device
 * executor. */
static kiln_status attach(kiln_module *m, kiln_graph *g, rt_code *code,
                          const kiln_compile_opts *opts, bool launch, const char *fn)
{
    m->vector_width = code->vector_width;
    if (m->target == KILN_TARGET_INTERP) {
        m->exec = &rt_interp;
        return KILN_OK;
    }
    if (m->target == KILN_TARGET_CUDA || launch)
        return rt_dexec_new(m, g, code, fn);
    return rt_cexec_new(m, g, code, opts ? opts->threads : 0, fn);
}

kiln_status rt_prepare(kiln_graph *g, kiln_graph *mg, const kiln_compile_opts *opts, const char *fn,
                       kiln_module **out)
{
    kiln_target target = opts ? opts->target : KILN_TARGET_C;
    rt_code code = {NULL, NULL, 0};
    kiln_module *m = NULL;
    kiln_status s = verify(g, mg, fn);
    s = s ? s : rt_render(g, mg, opts, false, target == KILN_TARGET_C, fn, NULL, &code);
    s = s ? s : rt_module_new(g, &mg, target, fn, &m);
    s = s ? s : attach(m, g, &code, opts, false, fn);
    kiln_graph_free(mg);
    rt_code_free(&code);
    if (s != KILN_OK)
        rt_module_destroy(m);
    *out = s == KILN_OK ? m : NULL;
    return s;
}

/* The module's kernel program and source (compiled targets). */
static void parts(const kiln_module *m, const kprogram **p, const char **source)
{
    const int *modbuf;
    if (m->exec == &rt_cexec)
        rt_cexec_parts(m, p, source, &modbuf);
    else
        rt_dexec_parts(m, p, source, NULL, NULL);
}

/* The code compiled (clang or NVRTC, or found in the cache) and loaded; the
 * device executor gets its device. */
static kiln_status build(kiln_module *m, kiln_graph *g, const kiln_compile_opts *opts, bool *hit)
{
    const char *fn = "kiln_compile";
    if (m->target == KILN_TARGET_INTERP)
        return KILN_OK;
    const kprogram *p;
    const char *source;
    parts(m, &p, &source);
    char why[1024];
    rt_device *dev = NULL;
    if (m->target == KILN_TARGET_CUDA) {
        char dir[4096];
        kiln_status s = rt_cache_dir(g, opts, fn, dir, sizeof dir);
        if (s != KILN_OK)
            return s;
        dev = rt_cudev_new(p, source, NULL, dir, hit, &s, why, sizeof why);
        if (!dev)
            return rt_compile_fail(g, s, "%s: %s%s", fn,
                                   s == KILN_ERR_DEVICE ? "the GPU cannot be used: " : "", why);
        return rt_dexec_attach(m, g, dev, fn);
    }
    void *so = rt_cc_build(g, opts, source, m->vector_width, hit);
    if (!so)
        return g->status;
    if (m->exec == &rt_cexec)
        return rt_cexec_load(m, g, so, fn);
    if (!(dev = rt_cdev_new(so, p, opts ? opts->threads : 0, why, sizeof why)))
        return rt_compile_fail(g, KILN_ERR_LOAD, "%s: %s", fn, why);
    return rt_dexec_attach(m, g, dev, fn);
}

/* KILN_DEBUG=1: one line per compile. */
static void debug_line(const kiln_module *m, double t0, bool hit)
{
    const kprogram *p;
    const char *source;
    parts(m, &p, &source);
    kp_stats st;
    kp_stats_of(p, &st);
    fprintf(stderr,
            "kiln: compiled %d kernels (%d fused groups) for %s, %lld bytes arena (liveness "
            "lower bound %lld), %.1f ms, cache %s\n",
            st.kernels, st.groups, m->exec->name, (long long)st.arena_bytes,
            (long long)st.live_bytes, now_ms() - t0, hit ? "hit" : "miss");
}

kiln_status kiln_compile(kiln_graph *g, const kiln_compile_opts *opts, kiln_module **out)
{
    return rt_compile(g, opts, NULL, out);
}

kiln_status rt_compile(kiln_graph *g, const kiln_compile_opts *opts, const cgen_gemm_sched *force,
                       kiln_module **out)
{
    const char *fn = "kiln_compile";
    if (out)
        *out = NULL;
    if (!g || !out)
        return KILN_ERR_INVALID;
    if (!ir_begin(g)) /* an error left by an earlier failed compile does not count */
        return g->status;
    kiln_target target = opts ? opts->target : KILN_TARGET_C;
    char why[512];
    if (target == KILN_TARGET_CUDA && rt_cuda_driver(NULL, why, sizeof why) != KILN_OK)
        return rt_compile_fail(g, KILN_ERR_DEVICE, "%s: the CUDA target needs a GPU: %s", fn, why);
    if (target != KILN_TARGET_C && target != KILN_TARGET_CUDA && target != KILN_TARGET_INTERP)
        return rt_compile_fail(g, KILN_ERR_INVALID, "%s: unknown target %d", fn, (int)target);

    double t0 = now_ms();
    kiln_graph *mg = NULL;
    rt_code code = {NULL, NULL, 0};
    kiln_module *m = NULL;
    bool hit = false;
    kiln_status s = rt_check_names(g, fn); /* one namespace */
    s = s ? s : clone(g, fn, &mg);         /* the module's own graph */
    s = s ? s : verify(g, mg, fn);         /* every invariant of docs/ir.md */
    bool launch = target == KILN_TARGET_C && rt_launch_wanted();
    /* only the C executor of whole entries gives outputs their params' storage */
    bool inplace = target == KILN_TARGET_C && !launch;
    s = s ? s : rt_render(g, mg, opts, launch, inplace, fn, force, &code); /* passes, C/CUDA */
    s = s ? s : rt_module_new(g, &mg, target, fn, &m); /* buffers, params initialised */
    s = s ? s : attach(m, g, &code, opts, launch, fn); /* the executor */
    s = s ? s : build(m, g, opts, &hit);               /* compiled or cached, loaded */
    kiln_graph_free(mg);
    rt_code_free(&code);
    if (s != KILN_OK) {
        g->compile_error = true; /* the graph stays usable (ir_begin) */
        rt_module_destroy(m);
        return s;
    }
    m->quiet = force != NULL || rt_variant_forced(); /* the tuner's candidates say nothing */
    if (target != KILN_TARGET_INTERP && !m->quiet && ir_debug_level() >= 1)
        debug_line(m, t0, hit);
    *out = m;
    return KILN_OK;
}
