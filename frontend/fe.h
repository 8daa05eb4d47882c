/*
 * fe.h - helpers shared by the builder API (frontend/).
 *
 * Every public builder follows one pattern:
 *
 *     kiln_tensor *kiln_exp(kiln_graph *g, kiln_tensor *a)
 *     {
 *         if (!fe_begin(g, 1, &a))      // NULL anywhere or a sticky error: quiet NULL
 *             return NULL;
 *         ...checks that call fe_fail(g, KILN_ERR_SHAPE, __func__, "...") ...
 *         return fe_unary(g, __func__, IR_EXP, a);
 *     }
 *
 * Messages are "<kiln function>: <reason in PyTorch's words>".
 */
#ifndef KILN_FE_H
#define KILN_FE_H

#include "ir/ir.h"

/* False (quietly) when g or any operand is NULL or g already holds an error;
 * records an error when an operand belongs to another graph. */
bool fe_begin(kiln_graph *g, int n, kiln_tensor *const *ts);
/* Records "<fn>: <message>" and returns NULL. */
kiln_tensor *fe_fail(kiln_graph *g, kiln_status s, const char *fn, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Normalises a possibly negative axis against rank (rank 0 accepts -1 and 0,
 * as PyTorch does); on failure records PyTorch's "Dimension out of range" error. */
bool fe_axis(kiln_graph *g, const char *fn, int axis, int rank, int *out);

/* A shape given by the user or made by a builder: 0 <= rank <= KILN_MAX_RANK,
 * dims >= 0, element count and byte size of dtype dt fit int64 (ir_shape_fits;
 * frontend/fe_core.c). Records the error naming fn and returns false. */
bool fe_check_shape(kiln_graph *g, const char *fn, kiln_dtype dt, int rank, const int64_t *dims);

/* PyTorch's result_type: dimensioned tensors outrank 0-d tensors, which outrank
 * weak scalars, unless a lower tier has a higher category (bool < int < float). */
kiln_dtype fe_result_type(int n, kiln_tensor *const *ts);
kiln_dtype fe_promote(kiln_dtype a, kiln_dtype b); /* torch.promote_types */

/* The broadcast shape of n operands, or PyTorch's size-mismatch error. */
bool fe_broadcast(kiln_graph *g, const char *fn, int n, kiln_tensor *const *ts, int *rank,
                  int64_t *dims);

/* Raw node makers: no checks beyond memory. */
kiln_tensor *fe_reshape_raw(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims);
kiln_tensor *fe_expand_raw(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims);
kiln_tensor *fe_full_raw(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims, double v);
/* t as dtype dt: itself, a cast, or (for a weak scalar) a new 0-d constant. */
kiln_tensor *fe_convert(kiln_graph *g, kiln_tensor *t, kiln_dtype dt);
/* t broadcast to (rank, dims), which must be a valid broadcast target. */
kiln_tensor *fe_expand_to(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims);

/* Elementwise ops with broadcasting and promotion. compute: the dtype the op
 * runs in (operands are converted to it); the result is bool for IR_F_CMP ops. */
kiln_tensor *fe_elementwise(kiln_graph *g, const char *fn, ir_op op, int n, kiln_tensor *const *ts,
                            kiln_dtype compute);
/* Unary op; IR_F_FLOATY ops compute integer and bool operands in float32. */
kiln_tensor *fe_unary(kiln_graph *g, const char *fn, ir_op op, kiln_tensor *a);
/* Binary op in the promoted dtype of a and b. */
kiln_tensor *fe_binary(kiln_graph *g, const char *fn, ir_op op, kiln_tensor *a, kiln_tensor *b);

/* Reduction primitive over an axis mask; keepdim=false drops the reduced axes. */
kiln_tensor *fe_reduce(kiln_graph *g, ir_op op, kiln_tensor *t, uint32_t axes, bool keepdim,
                       kiln_dtype out);

/* Registers assign (an ASSIGN node) as an update that every later entry
 * whose outputs depend on trigger applies after its outputs (kiln_entry). */
/* A conv node's implicit GEMM (frontend/conv.c): xp's columns [N, groups,
 * C/g * kH * kW, oh * ow] for conv's kernel, stride and dilation (xp: conv's
 * input or one of its shape; the taps are strided slices, stacked: views a
 * matmul reads in place); and conv's value as the batched matmul of its
 * weight [groups, O/g, C/g * kH * kW] with its input's columns. */
kiln_tensor *fe_conv_columns(kiln_graph *g, kiln_tensor *xp, const kiln_tensor *conv);
kiln_tensor *fe_conv_gemm(kiln_graph *g, const kiln_tensor *conv);

bool fe_add_update(kiln_graph *g, kiln_tensor *trigger, kiln_tensor *assign);

#endif /* KILN_FE_H */
