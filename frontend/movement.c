/*
 * movement.c - views and data movement: reshape/view, permute/transpose,
 * squeeze/unsqueeze, expand, slice/select, concat/stack, flatten, pad.
 *
 * Requires operands from one graph; produces RESHAPE, PERMUTE, EXPAND, SLICE,
 * PAD and CONCAT nodes (docs/ir.md). Kiln views never fail for
 * non-contiguity, so kiln_view is kiln_reshape. A builder whose result would
 * equal its operand returns the operand. Checks and messages follow PyTorch.
 */
#include "fe.h"

#include <string.h>

static bool check_rank(kiln_graph *g, const char *fn, int rank)
{
    if (rank <= KILN_MAX_RANK)
        return true;
    fe_fail(g, KILN_ERR_UNSUPPORTED, fn,
            "tensors of rank %d are not supported (KILN_MAX_RANK is %d)", rank, KILN_MAX_RANK);
    return false;
}

/* ---- reshape ------------------------------------------------------------------ */

/* PyTorch's infer_size: one -1 is inferred from t's element count. */
static kiln_tensor *reshape(kiln_graph *g, const char *fn, kiln_tensor *t, int rank,
                            const int64_t *dims)
{
    if (!fe_begin(g, 1, &t) || (rank > 0 && !dims))
        return NULL;
    if (rank < 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "rank must be non-negative, but got %d", rank);
    if (!check_rank(g, fn, rank))
        return NULL;
    int64_t out[KILN_MAX_RANK], known = 1, numel = ir_numel(t);
    int infer = -1;
    char buf[256];
    for (int d = 0; d < rank; d++) {
        out[d] = dims[d];
        if (dims[d] == -1) {
            if (infer >= 0)
                return fe_fail(g, KILN_ERR_SHAPE, fn, "only one dimension can be inferred");
            infer = d;
        } else if (dims[d] >= 0) {
            if (__builtin_mul_overflow(known, dims[d], &known))
                known = -1; /* cannot match any element count */
        } else {
            return fe_fail(g, KILN_ERR_SHAPE, fn, "invalid shape dimension %lld",
                           (long long)dims[d]);
        }
    }
    if (numel == known || (infer >= 0 && known > 0 && numel % known == 0)) {
        if (infer >= 0) {
            if (known == 0)
                return fe_fail(g, KILN_ERR_SHAPE, fn,
                               "cannot reshape tensor of 0 elements into shape %s because the "
                               "unspecified dimension size -1 can be any value and is ambiguous",
                               ir_shape_str(buf, sizeof(buf), rank, dims));
            out[infer] = numel / known;
        }
        return fe_check_shape(g, fn, t->dtype, rank, out) ? fe_reshape_raw(g, t, rank, out) : NULL;
    }
    return fe_fail(g, KILN_ERR_SHAPE, fn, "shape '%s' is invalid for input of size %lld",
                   ir_shape_str(buf, sizeof(buf), rank, dims), (long long)numel);
}

kiln_tensor *kiln_reshape(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims)
{
    return reshape(g, __func__, t, rank, dims);
}

kiln_tensor *kiln_view(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims)
{
    return reshape(g, __func__, t, rank, dims);
}

/* ---- permute, transpose ------------------------------------------------------ */

/* perm[] already normalised and checked: out axis i = t's axis perm[i]. */
static kiln_tensor *permute_raw(kiln_graph *g, kiln_tensor *t, const int *perm)
{
    bool identity = true;
    int64_t dims[KILN_MAX_RANK];
    for (int i = 0; i < t->rank; i++) {
        dims[i] = t->dims[perm[i]];
        identity = identity && perm[i] == i;
    }
    if (identity)
        return t;
    kiln_tensor *r = ir_node_new(g, IR_PERMUTE, t->dtype, t->rank, dims, 1, &t);
    if (r)
        memcpy(r->perm, perm, sizeof(*perm) * (size_t)t->rank);
    return r;
}

kiln_tensor *kiln_permute(kiln_graph *g, kiln_tensor *t, const int *perm)
{
    if (!fe_begin(g, 1, &t) || (t->rank > 0 && !perm))
        return NULL;
    int p[KILN_MAX_RANK];
    bool seen[KILN_MAX_RANK] = {false};
    for (int i = 0; i < t->rank; i++) {
        if (!fe_axis(g, __func__, perm[i], t->rank, &p[i]))
            return NULL;
        if (seen[p[i]])
            return fe_fail(g, KILN_ERR_SHAPE, __func__,
                           "permute(): duplicate dims are not allowed.");
        seen[p[i]] = true;
    }
    return permute_raw(g, t, p);
}

kiln_tensor *kiln_transpose(kiln_graph *g, kiln_tensor *t, int d0, int d1)
{
    int a, b;
    if (!fe_begin(g, 1, &t) || !fe_axis(g, __func__, d0, t->rank, &a) ||
        !fe_axis(g, __func__, d1, t->rank, &b))
        return NULL;
    int p[KILN_MAX_RANK];
    for (int i = 0; i < t->rank; i++)
        p[i] = i;
    if (t->rank > 0) {
        p[a] = b;
        p[b] = a;
    }
    return permute_raw(g, t, p);
}

/* ---- squeeze, unsqueeze, flatten ----------------------------------------------- */

kiln_tensor *kiln_squeeze(kiln_graph *g, kiln_tensor *t, int axis)
{
    if (!fe_begin(g, 1, &t))
        return NULL;
    int a = -1;
    if (axis != KILN_ALL && !fe_axis(g, __func__, axis, t->rank, &a))
        return NULL;
    int64_t dims[KILN_MAX_RANK];
    int r = 0;
    for (int d = 0; d < t->rank; d++)
        if (t->dims[d] != 1 || (axis != KILN_ALL && d != a))
            dims[r++] = t->dims[d];
    return fe_reshape_raw(g, t, r, dims);
}

kiln_tensor *kiln_unsqueeze(kiln_graph *g, kiln_tensor *t, int axis)
{
    int a;
    if (!fe_begin(g, 1, &t) || !fe_axis(g, __func__, axis, t->rank + 1, &a) ||
        !check_rank(g, __func__, t->rank + 1))
        return NULL;
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0, s = 0; d <= t->rank; d++)
        dims[d] = d == a ? 1 : t->dims[s++];
    return fe_reshape_raw(g, t, t->rank + 1, dims);
}

kiln_tensor *kiln_flatten(kiln_graph *g, kiln_tensor *t, int start, int end)
{
    int s, e;
    if (!fe_begin(g, 1, &t) || !fe_axis(g, __func__, start, t->rank, &s) ||
        !fe_axis(g, __func__, end, t->rank, &e))
        return NULL;
    if (s > e)
        return fe_fail(g, KILN_ERR_SHAPE, __func__,
                       "flatten() has invalid args: start_dim cannot come after end_dim");
    if (t->rank == 0)
        return fe_reshape_raw(g, t, 1, (const int64_t[]){1});
    int64_t dims[KILN_MAX_RANK];
    int r = 0;
    for (int d = 0; d < s; d++)
        dims[r++] = t->dims[d];
    dims[r++] = ir_shape_numel(e - s + 1, t->dims + s);
    for (int d = e + 1; d < t->rank; d++)
        dims[r++] = t->dims[d];
    return fe_reshape_raw(g, t, r, dims);
}

/* ---- expand ------------------------------------------------------------------------ */

/* PyTorch's infer_expand_geometry, checked from the last axis backwards. */
kiln_tensor *kiln_expand(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims)
{
    const char *fn = __func__;
    if (!fe_begin(g, 1, &t) || (rank > 0 && !dims))
        return NULL;
    if (rank < 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "rank must be non-negative, but got %d", rank);
    if (!check_rank(g, fn, rank))
        return NULL;
    if (rank < t->rank)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "the number of sizes provided (%d) must be greater or equal to the number "
                       "of dimensions in the tensor (%d)",
                       rank, t->rank);
    int64_t out[KILN_MAX_RANK];
    char want[256], have[256];
    for (int i = rank - 1; i >= 0; i--) {
        int d = t->rank - rank + i;
        int64_t size = d >= 0 ? t->dims[d] : 1, target = dims[i];
        if (target == -1) {
            if (d < 0)
                return fe_fail(g, KILN_ERR_SHAPE, fn,
                               "The expanded size of the tensor (-1) isn't allowed in a leading, "
                               "non-existing dimension %d",
                               i);
            target = size;
        }
        if (target < 0)
            return fe_fail(g, KILN_ERR_SHAPE, fn,
                           "Trying to create tensor with negative dimension %lld: %s",
                           (long long)target, ir_shape_str(want, sizeof(want), rank, dims));
        if (size != target && size != 1)
            return fe_fail(g, KILN_ERR_SHAPE, fn,
                           "The expanded size of the tensor (%lld) must match the existing size "
                           "(%lld) at non-singleton dimension %d.  Target sizes: %s.  Tensor "
                           "sizes: %s",
                           (long long)target, (long long)size, i,
                           ir_shape_str(want, sizeof(want), rank, dims),
                           ir_shape_str(have, sizeof(have), t->rank, t->dims));
        out[i] = target;
    }
    if (!fe_check_shape(g, fn, t->dtype, rank, out))
        return NULL;
    return fe_expand_to(g, t, rank, out);
}

/* ---- slice, select ----------------------------------------------------------------- */

/* One SLICE node over every axis; only `axis` is narrowed. */
static kiln_tensor *slice_raw(kiln_graph *g, kiln_tensor *t, int axis, int64_t begin, int64_t len,
                              int64_t step)
{
    if (begin == 0 && len == t->dims[axis] && step == 1)
        return t;
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, t->dims, sizeof(dims));
    dims[axis] = len;
    kiln_tensor *r = ir_node_new(g, IR_SLICE, t->dtype, t->rank, dims, 1, &t);
    if (!r)
        return NULL;
    for (int d = 0; d < t->rank; d++)
        r->step[d] = 1;
    r->begin[axis] = len ? begin : 0;
    r->step[axis] = step;
    return r;
}

/* Python's slicing rules: negative bounds count from the end, then both are
 * clamped to [0, size]; an end before the start gives an empty slice. */
kiln_tensor *kiln_slice(kiln_graph *g, kiln_tensor *t, int axis, int64_t start, int64_t end,
                        int64_t step)
{
    const char *fn = __func__;
    if (!fe_begin(g, 1, &t))
        return NULL;
    if (t->rank == 0)
        return fe_fail(g, KILN_ERR_SHAPE, fn, "slice() cannot be applied to a 0-dim tensor.");
    int a;
    if (!fe_axis(g, fn, axis, t->rank, &a))
        return NULL;
    if (step <= 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "slice step must be positive");
    int64_t size = t->dims[a];
    if (start < 0)
        start += size;
    if (end < 0)
        end += size;
    start = start < 0 ? 0 : start > size ? size : start;
    end = end < start ? start : end > size ? size : end;
    int64_t len = end - start;
    return slice_raw(g, t, a, start, len ? (len - 1) / step + 1 : 0, step);
}

kiln_tensor *kiln_select(kiln_graph *g, kiln_tensor *t, int axis, int64_t index)
{
    const char *fn = __func__;
    if (!fe_begin(g, 1, &t))
        return NULL;
    if (t->rank == 0)
        return fe_fail(g, KILN_ERR_SHAPE, fn, "select() cannot be applied to a 0-dim tensor.");
    int a;
    if (!fe_axis(g, fn, axis, t->rank, &a))
        return NULL;
    int64_t size = t->dims[a];
    if (index < -size || index >= size)
        return fe_fail(g, KILN_ERR_SHAPE, fn,
                       "index %lld is out of bounds for dimension %d with size %lld",
                       (long long)index, a, (long long)size);
    kiln_tensor *s = slice_raw(g, t, a, index < 0 ? index + size : index, 1, 1);
    if (!s)
        return NULL;
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0, r = 0; d < t->rank; d++)
        if (d != a)
            dims[r++] = t->dims[d];
    return fe_reshape_raw(g, s, t->rank - 1, dims);
}

/* ---- concat, stack ----------------------------------------------------------------- */

/* ts already checked: same rank, equal sizes off `axis`. Converts each to the
 * promoted dtype and joins them in one CONCAT node. */
static kiln_tensor *concat_raw(kiln_graph *g, const char *fn, int n, kiln_tensor *const *ts,
                               int axis)
{
    kiln_dtype dt = fe_result_type(n, ts);
    if (n == 1)
        return fe_convert(g, ts[0], dt);
    kiln_tensor **ops = ir_alloc(sizeof(*ops) * (size_t)n);
    if (!ops)
        return fe_fail(g, KILN_ERR_NOMEM, fn, "out of memory");
    int64_t dims[KILN_MAX_RANK];
    memcpy(dims, ts[0]->dims, sizeof(dims));
    dims[axis] = 0;
    kiln_tensor *r = NULL;
    for (int i = 0; i < n; i++) {
        ops[i] = fe_convert(g, ts[i], dt);
        if (!ops[i])
            goto out;
        dims[axis] += ts[i]->dims[axis];
    }
    if (!fe_check_shape(g, fn, dt, ts[0]->rank, dims))
        goto out;
    r = ir_node_new(g, IR_CONCAT, dt, ts[0]->rank, dims, n, ops);
    if (r)
        r->axis = axis;
out:
    ir_free(ops);
    return r;
}

kiln_tensor *kiln_concat(kiln_graph *g, int n, kiln_tensor *const *ts, int axis)
{
    const char *fn = __func__;
    if (!ir_begin(g) || (n > 0 && !ts))
        return NULL;
    if (n <= 0)
        return fe_fail(g, KILN_ERR_INVALID, fn,
                       "torch.cat(): expected a non-empty list of Tensors");
    if (!fe_begin(g, n, ts))
        return NULL;
    int a;
    if (!fe_axis(g, fn, axis, ts[0]->rank, &a))
        return NULL;
    for (int i = 0; i < n; i++)
        if (ts[i]->rank == 0)
            return fe_fail(g, KILN_ERR_SHAPE, fn,
                           "zero-dimensional tensor (at position %d) cannot be concatenated", i);
    for (int i = 1; i < n; i++) {
        if (ts[i]->rank != ts[0]->rank)
            return fe_fail(g, KILN_ERR_SHAPE, fn,
                           "Tensors must have same number of dimensions: got %d and %d",
                           ts[0]->rank, ts[i]->rank);
        for (int d = 0; d < ts[0]->rank; d++)
            if (d != a && ts[i]->dims[d] != ts[0]->dims[d])
                return fe_fail(g, KILN_ERR_SHAPE, fn,
                               "Sizes of tensors must match except in dimension %d. Expected size "
                               "%lld but got size %lld for tensor number %d in the list.",
                               a, (long long)ts[0]->dims[d], (long long)ts[i]->dims[d], i);
    }
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        if (__builtin_add_overflow(total, ts[i]->dims[a], &total))
            return fe_fail(g, KILN_ERR_SHAPE, fn, "the concatenated size overflows int64");
    return concat_raw(g, fn, n, ts, a);
}

kiln_tensor *kiln_stack(kiln_graph *g, int n, kiln_tensor *const *ts, int axis)
{
    const char *fn = __func__;
    if (!ir_begin(g) || (n > 0 && !ts))
        return NULL;
    if (n <= 0)
        return fe_fail(g, KILN_ERR_INVALID, fn, "stack expects a non-empty TensorList");
    if (!fe_begin(g, n, ts))
        return NULL;
    int rank = ts[0]->rank, a;
    if (!fe_axis(g, fn, axis, rank + 1, &a) || !check_rank(g, fn, rank + 1))
        return NULL;
    char b0[256], bi[256];
    for (int i = 1; i < n; i++)
        if (!ir_same_shape(ts[i], ts[0]))
            return fe_fail(g, KILN_ERR_SHAPE, fn,
                           "stack expects each tensor to be equal size, but got %s at entry 0 and "
                           "%s at entry %d",
                           ir_shape_str(b0, sizeof(b0), rank, ts[0]->dims),
                           ir_shape_str(bi, sizeof(bi), ts[i]->rank, ts[i]->dims), i);
    if ((int64_t)n > INT64_MAX / (ir_numel(ts[0]) > 0 ? ir_numel(ts[0]) : 1))
        return fe_fail(g, KILN_ERR_SHAPE, fn, "the stacked size overflows int64");
    int64_t dims[KILN_MAX_RANK];
    for (int d = 0, s = 0; d <= rank; d++)
        dims[d] = d == a ? 1 : ts[0]->dims[s++];
    kiln_tensor **us = ir_alloc(sizeof(*us) * (size_t)n);
    if (!us)
        return fe_fail(g, KILN_ERR_NOMEM, fn, "out of memory");
    kiln_tensor *r = NULL;
    for (int i = 0; i < n; i++) {
        us[i] = ir_node_new(g, IR_RESHAPE, ts[i]->dtype, rank + 1, dims, 1, &ts[i]);
        if (!us[i])
            goto out;
    }
    r = concat_raw(g, fn, n, us, a);
out:
    ir_free(us);
    return r;
}

/* ---- pad ------------------------------------------------------------------------------ */

kiln_tensor *kiln_pad(kiln_graph *g, kiln_tensor *t, const int64_t *before, const int64_t *after,
                      double value)
{
    const char *fn = __func__;
    if (!fe_begin(g, 1, &t) || (t->rank > 0 && (!before || !after)))
        return NULL;
    int64_t dims[KILN_MAX_RANK];
    bool none = true;
    for (int d = 0; d < t->rank; d++) {
        if (before[d] < 0 || after[d] < 0)
            return fe_fail(g, KILN_ERR_INVALID, fn,
                           "padding must be non-negative, but got %lld before and %lld after axis "
                           "%d",
                           (long long)before[d], (long long)after[d], d);
        if (__builtin_add_overflow(t->dims[d], before[d], &dims[d]) ||
            __builtin_add_overflow(dims[d], after[d], &dims[d]))
            return fe_fail(g, KILN_ERR_SHAPE, fn, "the padded size of axis %d overflows int64", d);
        none = none && before[d] == 0 && after[d] == 0;
    }
    if (none)
        return t;
    if (!fe_check_shape(g, fn, t->dtype, t->rank, dims))
        return NULL;
    kiln_tensor *r = ir_node_new(g, IR_PAD, t->dtype, t->rank, dims, 1, &t);
    if (!r)
        return NULL;
    memcpy(r->begin, before, sizeof(*before) * (size_t)t->rank);
    memcpy(r->after, after, sizeof(*after) * (size_t)t->rank);
    r->value = value;
    return r;
}
