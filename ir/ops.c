/*
 * ops.c - the op table expanded into data, and dtype helpers.
 */
#include "ir.h"

#include <math.h>
#include <string.h>

const ir_op_info ir_ops[IR_OP_COUNT] = {
#define KILN_OP(e, name, arity, cls, flags, attrs)                                                 \
    [IR_##e] = {name, arity, IR_CLASS_##cls, flags, attrs},
#include "kiln_ops.def"
#undef KILN_OP
};

bool ir_op_pure(ir_op op)
{
    return !(ir_ops[op].flags & (IR_F_RANDOM | IR_F_LEAF | IR_F_EFFECT));
}

const ir_attr_info ir_attrs[IR_A_COUNT] = {
    [IR_A_INIT] = {"init", false, false},        [IR_A_FAN_IN] = {"fan_in", true, false},
    [IR_A_STREAM] = {"stream", true, false},     [IR_A_START] = {"start", false, false},
    [IR_A_DELTA] = {"step", false, false},       [IR_A_AXES] = {"axes", false, false},
    [IR_A_PERM] = {"perm", false, true},         [IR_A_BEGIN] = {"begin", false, true},
    [IR_A_STEP] = {"step", false, true},         [IR_A_BEFORE] = {"before", false, true},
    [IR_A_AFTER] = {"after", false, true},       [IR_A_VALUE] = {"value", false, false},
    [IR_A_WEAK] = {"weak", true, false},         [IR_A_AXIS] = {"axis", false, false},
    [IR_A_CAUSAL] = {"causal", true, false},     [IR_A_STRIDE] = {"stride", false, true},
    [IR_A_DILATION] = {"dilation", false, true}, [IR_A_GROUPS] = {"groups", false, false},
};

static bool same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0; /* bitwise: -0.0 and NaN payloads differ */
}

bool ir_attr_equal(const kiln_tensor *a, const kiln_tensor *b, ir_attr at)
{
    size_t r = (size_t)a->rank;
    switch (at) {
    case IR_A_INIT: return memcmp(&a->init, &b->init, sizeof a->init) == 0;
    case IR_A_FAN_IN: return a->fan_in == b->fan_in;
    case IR_A_STREAM: return a->stream == b->stream;
    case IR_A_START:
    case IR_A_VALUE: return same_double(a->value, b->value);
    case IR_A_DELTA: return same_double(a->value2, b->value2);
    case IR_A_AXES: return a->axes == b->axes;
    case IR_A_PERM: return memcmp(a->perm, b->perm, sizeof(int) * r) == 0;
    case IR_A_BEGIN:
    case IR_A_BEFORE: return memcmp(a->begin, b->begin, sizeof(int64_t) * r) == 0;
    case IR_A_STEP:
    case IR_A_STRIDE: return memcmp(a->step, b->step, sizeof(int64_t) * r) == 0;
    case IR_A_DILATION: return memcmp(a->dilation, b->dilation, sizeof(int64_t) * r) == 0;
    case IR_A_GROUPS: return a->groups == b->groups;
    case IR_A_AFTER: return memcmp(a->after, b->after, sizeof(int64_t) * r) == 0;
    case IR_A_WEAK: return a->weak == b->weak;
    case IR_A_CAUSAL: return a->causal == b->causal;
    case IR_A_AXIS: return a->axis == b->axis;
    case IR_A_COUNT: break;
    }
    return false;
}

ir_op ir_op_from_name(const char *name, size_t len)
{
    for (int op = 0; op < IR_OP_COUNT; op++)
        if (strlen(ir_ops[op].name) == len && memcmp(ir_ops[op].name, name, len) == 0)
            return (ir_op)op;
    return IR_OP_COUNT;
}

const char *kiln_status_str(kiln_status s)
{
    switch (s) {
    case KILN_OK: return "ok";
    case KILN_ERR_INVALID: return "invalid argument";
    case KILN_ERR_SHAPE: return "shape mismatch";
    case KILN_ERR_DTYPE: return "dtype mismatch";
    case KILN_ERR_NOMEM: return "out of memory";
    case KILN_ERR_UNSUPPORTED: return "unsupported";
    case KILN_ERR_COMPILE: return "compile error";
    case KILN_ERR_LOAD: return "load error";
    case KILN_ERR_DEVICE: return "device error";
    case KILN_ERR_IO: return "i/o error";
    case KILN_ERR_FORMAT: return "format error";
    case KILN_ERR_NOT_FOUND: return "not found";
    }
    return "unknown status";
}

bool ir_dtype_valid(int dt)
{
    return dt >= KILN_F32 && dt <= KILN_BOOL;
}

bool ir_dtype_is_float(kiln_dtype dt)
{
    return dt == KILN_F32 || dt == KILN_F64;
}

bool ir_dtype_is_int(kiln_dtype dt)
{
    return dt == KILN_I32 || dt == KILN_I64;
}

size_t kiln_dtype_size(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return 4;
    case KILN_F64: return 8;
    case KILN_I32: return 4;
    case KILN_I64: return 8;
    case KILN_BOOL: return 1;
    }
    return 0;
}

const char *kiln_dtype_name(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return "float32";
    case KILN_F64: return "float64";
    case KILN_I32: return "int32";
    case KILN_I64: return "int64";
    case KILN_BOOL: return "bool";
    }
    return "?";
}

const char *ir_dtype_kir(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return "f32";
    case KILN_F64: return "f64";
    case KILN_I32: return "i32";
    case KILN_I64: return "i64";
    case KILN_BOOL: return "bool";
    }
    return "?";
}

const char *ir_dtype_torch(kiln_dtype dt)
{
    switch (dt) {
    case KILN_F32: return "Float";
    case KILN_F64: return "Double";
    case KILN_I32: return "Int";
    case KILN_I64: return "Long";
    case KILN_BOOL: return "Bool";
    }
    return "?";
}

double ir_load_f(kiln_dtype dt, const void *base, int64_t i)
{
    switch (dt) {
    case KILN_F32: return (double)((const float *)base)[i];
    case KILN_F64: return ((const double *)base)[i];
    case KILN_I32: return (double)((const int32_t *)base)[i];
    case KILN_I64: return (double)((const int64_t *)base)[i];
    case KILN_BOOL: return ((const bool *)base)[i] ? 1.0 : 0.0;
    }
    return 0;
}

int64_t ir_load_i(kiln_dtype dt, const void *base, int64_t i)
{
    switch (dt) {
    case KILN_F32: return (int64_t)((const float *)base)[i];
    case KILN_F64: return (int64_t)((const double *)base)[i];
    case KILN_I32: return ((const int32_t *)base)[i];
    case KILN_I64: return ((const int64_t *)base)[i];
    case KILN_BOOL: return ((const bool *)base)[i] ? 1 : 0;
    }
    return 0;
}

/* float -> int conversions saturate instead of invoking undefined behaviour. */
static int64_t f_to_i64(double v)
{
    if (isnan(v))
        return 0;
    if (v >= 9223372036854775807.0)
        return INT64_MAX;
    if (v <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)v;
}

static int32_t f_to_i32(double v)
{
    int64_t w = f_to_i64(v);
    return w > INT32_MAX ? INT32_MAX : w < INT32_MIN ? INT32_MIN : (int32_t)w;
}

bool ir_value_fits(kiln_dtype dt, double v)
{
    switch (dt) {
    case KILN_I32: return v >= -2147483648.0 && v <= 2147483647.0;
    case KILN_I64: return v >= -9223372036854775808.0 && v < 9223372036854775808.0;
    case KILN_F32:
    case KILN_F64:
    case KILN_BOOL: return true;
    }
    return true;
}

void ir_store_f(kiln_dtype dt, void *base, int64_t i, double v)
{
    switch (dt) {
    case KILN_F32: ((float *)base)[i] = (float)v; return;
    case KILN_F64: ((double *)base)[i] = v; return;
    case KILN_I32: ((int32_t *)base)[i] = f_to_i32(v); return;
    case KILN_I64: ((int64_t *)base)[i] = f_to_i64(v); return;
    case KILN_BOOL: ((bool *)base)[i] = v != 0; return;
    }
}

void ir_store_i(kiln_dtype dt, void *base, int64_t i, int64_t v)
{
    switch (dt) {
    case KILN_F32: ((float *)base)[i] = (float)v; return;
    case KILN_F64: ((double *)base)[i] = (double)v; return;
    case KILN_I32: ((int32_t *)base)[i] = (int32_t)v; return;
    case KILN_I64: ((int64_t *)base)[i] = v; return;
    case KILN_BOOL: ((bool *)base)[i] = v != 0; return;
    }
}
