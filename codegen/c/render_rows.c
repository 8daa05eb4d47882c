/*
 * render_rows.c - the C renderer's row kernels: a REDUCE with earlier phases
 * or element stores (passes/rowfuse.c), one pass over each row per phase
 * while the row is in cache:
 *
 *   parallel for (rows i0..iR-1):               what depends on the row alone
 *       acc1 = identity; for (row elements): acc1 = combine(acc1, pre[0].body)
 *       ...                                      (each phase reads the ones before)
 *       acc = identity;  for (row elements): acc = combine(acc, body)
 *       row stores
 *       for (row elements): element stores
 *
 * Each section declares what it reads at the outermost loop it can, once per
 * row for what depends on the row alone (after the phase whose accumulator it
 * reads), once per element loop for the rest.
 */
#include "codegen/c/render.h"

#include <stdio.h>
#include <string.h>

/* Declares the nodes of section `in` not yet declared whose loop depth is at
 * least lo and at most hi, at indentation ind. */
static void emit_section(kr *r, const bool *in, int lo, int hi, int ind)
{
    const kernel *k = r->k;
    for (int i = 0; i < k->nx; i++) {
        if (!in[i] || r->done[i] || r->lev[i] < lo || r->lev[i] > hi)
            continue;
        r->done[i] = true;
        if (cgen_inline(&k->x[i]))
            continue;
        cgen_indent(r->b, ind);
        cgen_decl(r->b, &r->e, i);
        cgen_puts(r->b, "\n");
    }
}

/* Opens the loops over a row's elements (a simd loop innermost when asked),
 * declaring section `in`'s nodes at each depth; returns the indentation of
 * the innermost body. */
static int open_row(kr *r, const bool *in, bool simd, const char *reduction)
{
    const kernel *k = r->k;
    int64_t red = ir_shape_numel(k->rrank, k->rdims);
    for (int j = 0; j < k->rrank; j++) {
        int d = k->rank + j;
        if (j == k->rrank - 1 && simd) {
            cgen_indent(r->b, d + 1);
            cgen_printf(r->b, "#pragma omp simd%s\n", reduction);
        } else if (red <= CGEN_SHORT_REDUCE) {
            cgen_indent(r->b, d + 1);
            cgen_puts(r->b, "KILN_UNROLL\n");
        }
        cgen_indent(r->b, d + 1);
        cgen_printf(r->b, "for (int64_t i%d = 0; i%d < %lld; i%d++) {\n", d, d,
                    (long long)k->rdims[j], d);
        emit_section(r, in, d + 1, d + 1, d + 2);
    }
    return k->rank + k->rrank + 1;
}

/* Closes them; what they declared is out of scope again. */
static void close_row(kr *r)
{
    const kernel *k = r->k;
    cgen_close_to(r, k->rank + k->rrank, k->rank);
    for (int i = 0; i < k->nx; i++)
        if (r->lev[i] > k->rank)
            r->done[i] = false;
}

void cgen_render_rows(kr *r)
{
    const kernel *k = r->k;
    cgen_buf *b = r->b;
    bool *in = ir_alloc(2 * ((size_t)k->nx + 1)); /* cgen_row_section's */
    if (!in) {
        b->oom = true;
        return;
    }
    int64_t outer = ir_shape_numel(k->rank, k->dims), red = ir_shape_numel(k->rrank, k->rdims);
    r->e.acc = "acc";
    cgen_open_outer(r, cgen_outer_collapse(r, outer * red), k->rank, false);
    int ind = k->rank + 1;
    bool simd = r->o.openmp && !r->fails;
    for (int q = 0; q <= k->npre; q++) {
        kk_phase ph = kk_phase_at(k, q);
        char acc[16];
        snprintf(acc, sizeof acc, q < k->npre ? "acc%d" : "acc", q + 1);
        cgen_row_section(k, q, in);
        emit_section(r, in, 0, k->rank, ind); /* after the phases it reads */
        const char *t = cgen_ctype(ph.acc_dtype);
        char reduction[96];
        cgen_buf v = {0};
        cgen_node_as(&v, &r->e, ph.body, ph.acc_dtype);
        const char *vs = v.s ? v.s : "0";
        cgen_indent(b, ind);
        if (ph.rop == IR_SUM) { /* sums may be reassociated (DESIGN.md) */
            cgen_printf(b, "%s %s = 0;\n", t, acc);
            snprintf(reduction, sizeof reduction, " reduction(+ : %s)", acc);
            int in_ind = open_row(r, in, simd, reduction);
            cgen_combine_float(b, ph.rop, acc, vs, in_ind);
        } else { /* the extremum and whether any element is NaN (which wins), both vectorized */
            bool mx = ph.rop == IR_MAX;
            cgen_printf(b, "%s %sm = %sINFINITY;\n", t, acc, mx ? "-" : "");
            cgen_indent(b, ind);
            cgen_printf(b, "int %sn = 0;\n", acc);
            snprintf(reduction, sizeof reduction, " reduction(%s : %sm) reduction(| : %sn)",
                     mx ? "max" : "min", acc, acc);
            int in_ind = open_row(r, in, simd, reduction);
            cgen_indent(b, in_ind);
            cgen_printf(b, "%sm = %s %s %sm ? %s : %sm;\n", acc, vs, mx ? ">" : "<", acc, vs, acc);
            cgen_indent(b, in_ind);
            cgen_printf(b, "%sn |= %s != %s;\n", acc, vs, vs);
        }
        b->oom = b->oom || v.oom;
        cgen_buf_free(&v);
        close_row(r);
        if (ph.rop != IR_SUM) {
            cgen_indent(b, ind);
            cgen_printf(b, "const %s %s = %sn ? (%s)NAN : %sm;\n", t, acc, acc, t, acc);
        }
    }
    cgen_row_section(k, k->npre + 1, in);
    emit_section(r, in, 0, k->rank, ind);
    for (int i = 0; i < k->nstores; i++)
        if (!k->stores[i].element)
            cgen_store(b, &r->e, r->p, &k->stores[i], ind, false);
    if (kk_has_element_stores(k)) {
        cgen_row_section(k, k->npre + 2, in);
        emit_section(r, in, 0, k->rank, ind);
        int in_ind = open_row(r, in, simd, "");
        for (int i = 0; i < k->nstores; i++)
            if (k->stores[i].element)
                cgen_store(b, &r->e, r->p, &k->stores[i], in_ind, false);
        close_row(r);
    }
    cgen_close_to(r, k->rank, 0);
    ir_free(in);
}
