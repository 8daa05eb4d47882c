/*
 * kiln.h - the public API of Kiln, an ahead-of-time tensor graph compiler.
 *
 * Read top to bottom, this header is the user manual:
 *   1. status codes, dtypes, shapes, errors
 *   2. graphs and leaves (inputs, params, constants, random sources)
 *   3. movement (views), elementwise math, reductions, linear algebra and nn
 *   4. autodiff and in-place assignment
 *   5. entries, compiling, and the module API that runs them
 *
 * Errors never abort and never print. A builder that fails returns NULL and
 * records the first error on the graph ("sticky"); builders given NULL return
 * NULL quietly, so a whole model can be built and checked once at the end:
 *
 *     kiln_tensor *y = kiln_relu(g, kiln_linear(g, x, w, b));
 *     if (kiln_graph_status(g) != KILN_OK) puts(kiln_graph_error(g));
 *
 * Every other call returns a kiln_status with the details in
 * kiln_graph_error(g) or kiln_module_error(m).
 */
#ifndef KILN_H
#define KILN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define KILN_API
#else
#define KILN_API __attribute__((visibility("default")))
#endif

/* ---- 1. Basics --------------------------------------------------------- */

typedef enum {
    KILN_OK,
    KILN_ERR_INVALID,     /* a bad argument or a call out of order */
    KILN_ERR_SHAPE,       /* shapes do not fit, or a byte count does not match */
    KILN_ERR_DTYPE,       /* a dtype the operation does not accept */
    KILN_ERR_NOMEM,       /* an allocation failed */
    KILN_ERR_UNSUPPORTED, /* valid, but not supported (yet) by this target */
    KILN_ERR_COMPILE,     /* the C or CUDA compiler failed */
    KILN_ERR_LOAD,        /* a compiled module could not be loaded */
    KILN_ERR_DEVICE,      /* no usable GPU, or a CUDA error */
    KILN_ERR_IO,          /* a file could not be read or written */
    KILN_ERR_FORMAT,      /* a file or text is malformed */
    KILN_ERR_NOT_FOUND    /* no tensor, entry or file of that name */
} kiln_status;

typedef enum {
    KILN_F32,
    KILN_F64,
    KILN_I32,
    KILN_I64,
    KILN_BOOL /* later: F16, BF16 */
} kiln_dtype;

/* Reduce over every axis: kiln_sum(g, t, KILN_ALL, false) */
#define KILN_ALL INT_MIN

/* KILN_SHAPE(64, 784) expands to the two arguments `2, (const int64_t[]){64, 784}`.
 * In C++ use an explicit array instead. */
// clang-format off
#define KILN_SHAPE(...) \
    (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (const int64_t[]){__VA_ARGS__}
// clang-format on

/* The highest rank a tensor may have. */
#define KILN_MAX_RANK 8

typedef struct kiln_graph kiln_graph;
typedef struct kiln_tensor kiln_tensor; /* a value in a graph, owned by it */
typedef struct kiln_module kiln_module;

KILN_API const char *kiln_status_str(kiln_status s);
KILN_API const char *kiln_dtype_name(kiln_dtype dt); /* "float32", "int64", ... */
KILN_API size_t kiln_dtype_size(kiln_dtype dt);      /* bytes per element */

/* The allocator hook: every allocation Kiln makes goes through it. Set it once,
 * before any other call; NULL restores malloc/realloc/free. realloc is called
 * with ptr == NULL to allocate and with size == 0 never. */
typedef struct {
    void *(*realloc)(void *ctx, void *ptr, size_t size);
    void (*free)(void *ctx, void *ptr);
    void *ctx;
} kiln_allocator;
KILN_API void kiln_set_allocator(const kiln_allocator *a);

/* ---- 2. Graphs and leaves ---------------------------------------------- */

KILN_API kiln_graph *kiln_graph_new(void);    /* NULL only when out of memory */
KILN_API void kiln_graph_free(kiln_graph *g); /* NULL is a no-op */
KILN_API kiln_status kiln_graph_status(const kiln_graph *g);
KILN_API const char *kiln_graph_error(const kiln_graph *g);          /* "" when none */
KILN_API void kiln_graph_seed(kiln_graph *g, uint64_t seed);         /* like torch.manual_seed */
KILN_API kiln_status kiln_graph_print(const kiln_graph *g, FILE *f); /* .kir text */
/* Parses .kir text; on failure returns NULL and writes "line L, column C: ..." to err. */
KILN_API kiln_graph *kiln_graph_parse(const char *kir_text, char *err, size_t errlen);

KILN_API int kiln_tensor_rank(const kiln_tensor *t);
KILN_API int64_t kiln_tensor_dim(const kiln_tensor *t, int axis); /* negative axes allowed */
KILN_API kiln_dtype kiln_tensor_dtype(const kiln_tensor *t);
KILN_API int64_t kiln_tensor_numel(const kiln_tensor *t);

/* Parameter initialisers, passed by value to kiln_param. */
typedef enum {
    KILN_INIT_ZEROS,
    KILN_INIT_ONES,
    KILN_INIT_CONST,
    KILN_INIT_NORMAL,
    KILN_INIT_UNIFORM,
    KILN_INIT_KAIMING_UNIFORM,
    KILN_INIT_DATA
} kiln_init_kind;
typedef struct {
    kiln_init_kind kind;
    double a, b;      /* const: a; normal: mean a, std b; uniform: [a, b) */
    const void *data; /* KILN_INIT_DATA: copied when the param is created */
} kiln_init;
KILN_API kiln_init kiln_init_zeros(void);
KILN_API kiln_init kiln_init_ones(void);
KILN_API kiln_init kiln_init_const(double v);
KILN_API kiln_init kiln_init_normal(double mean, double std);
KILN_API kiln_init kiln_init_uniform(double lo, double hi);
KILN_API kiln_init kiln_init_kaiming_uniform(void); /* nn.Linear's */
KILN_API kiln_init kiln_init_data(const void *ptr); /* the param's dtype, row-major */

/* Named leaves: set before a run (inputs) or persistent across runs (params). */
KILN_API kiln_tensor *kiln_input(kiln_graph *g, const char *name, kiln_dtype dt, int rank,
                                 const int64_t *dims);
/* The input or param called name, NULL when there is none: a second entry (say
 * batch-1 inference beside training) reuses the weights by name. */
KILN_API kiln_tensor *kiln_graph_find(kiln_graph *g, const char *name);
KILN_API kiln_tensor *kiln_param(kiln_graph *g, const char *name, kiln_dtype dt, int rank,
                                 const int64_t *dims, kiln_init init);
/* Constants: data is copied (row-major, dt's C type: float, double, int32_t, int64_t, bool). */
KILN_API kiln_tensor *kiln_tensor_from(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims,
                                       const void *data);
/* A Python number: weak, it takes the other operand's dtype. C cannot tell 2
 * from 2.0, so an integral value acts like a Python int (int_tensor * 2 stays
 * integer) and any other value like a Python float (int_tensor * 2.5 is float32). */
KILN_API kiln_tensor *kiln_scalar(kiln_graph *g, double v);
KILN_API kiln_tensor *kiln_full(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims,
                                double v);
KILN_API kiln_tensor *kiln_zeros(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims);
KILN_API kiln_tensor *kiln_ones(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims);
KILN_API kiln_tensor *kiln_zeros_like(kiln_graph *g, kiln_tensor *t);
KILN_API kiln_tensor *kiln_ones_like(kiln_graph *g, kiln_tensor *t);
KILN_API kiln_tensor *kiln_full_like(kiln_graph *g, kiln_tensor *t, double v);
KILN_API kiln_tensor *kiln_arange(kiln_graph *g, kiln_dtype dt, double start, double end,
                                  double step);
KILN_API kiln_tensor *kiln_linspace(kiln_graph *g, kiln_dtype dt, double start, double end,
                                    int64_t steps);
/* Random sources: Philox-4x32-10 from the graph seed; every run draws new numbers. */
KILN_API kiln_tensor *kiln_rand(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims);
KILN_API kiln_tensor *kiln_randn(kiln_graph *g, kiln_dtype dt, int rank, const int64_t *dims);
KILN_API kiln_tensor *kiln_rand_like(kiln_graph *g, kiln_tensor *t);
KILN_API kiln_tensor *kiln_randn_like(kiln_graph *g, kiln_tensor *t);

/* ---- 3. Operations ------------------------------------------------------- */

/* Movement: views, no copy unless a kernel needs one. */
KILN_API kiln_tensor *kiln_reshape(kiln_graph *g, kiln_tensor *t, int rank,
                                   const int64_t *dims); /* one -1 infers */
KILN_API kiln_tensor *kiln_view(kiln_graph *g, kiln_tensor *t, int rank, const int64_t *dims);
KILN_API kiln_tensor *kiln_permute(kiln_graph *g, kiln_tensor *t, const int *perm);
KILN_API kiln_tensor *kiln_transpose(kiln_graph *g, kiln_tensor *t, int d0, int d1);
KILN_API kiln_tensor *kiln_squeeze(kiln_graph *g, kiln_tensor *t,
                                   int axis); /* KILN_ALL: every size-1 axis */
KILN_API kiln_tensor *kiln_unsqueeze(kiln_graph *g, kiln_tensor *t, int axis);
KILN_API kiln_tensor *kiln_expand(kiln_graph *g, kiln_tensor *t, int rank,
                                  const int64_t *dims); /* -1 keeps a size */
KILN_API kiln_tensor *kiln_slice(kiln_graph *g, kiln_tensor *t, int axis, int64_t start,
                                 int64_t end, int64_t step); /* Python's clamping rules */
KILN_API kiln_tensor *kiln_select(kiln_graph *g, kiln_tensor *t, int axis,
                                  int64_t index); /* drops the axis */
KILN_API kiln_tensor *kiln_concat(kiln_graph *g, int n, kiln_tensor *const *ts, int axis);
KILN_API kiln_tensor *kiln_stack(kiln_graph *g, int n, kiln_tensor *const *ts, int axis);
KILN_API kiln_tensor *kiln_flatten(kiln_graph *g, kiln_tensor *t, int start, int end);
KILN_API kiln_tensor *kiln_pad(kiln_graph *g, kiln_tensor *t, const int64_t *before,
                               const int64_t *after, double value); /* per axis, constant */

/* Elementwise, with NumPy broadcasting and PyTorch's type promotion. */
KILN_API kiln_tensor *kiln_add(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_sub(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_mul(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_div(kiln_graph *g, kiln_tensor *a, kiln_tensor *b); /* true division */
KILN_API kiln_tensor *kiln_pow(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_maximum(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_minimum(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_eq(kiln_graph *g, kiln_tensor *a, kiln_tensor *b); /* -> bool */
KILN_API kiln_tensor *kiln_ne(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_lt(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_le(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_gt(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_ge(kiln_graph *g, kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_where(kiln_graph *g, kiln_tensor *cond, kiln_tensor *a, kiln_tensor *b);
/* Convolution and pooling, NCHW (a 3-D input is one unbatched image), as
 * F.conv2d, F.max_pool2d, F.avg_pool2d (count_include_pad) and
 * F.adaptive_avg_pool2d, with PyTorch's error texts. */
typedef struct {
    int64_t stride[2], padding[2], dilation[2], groups;
} kiln_conv_opts; /* zero fields = PyTorch's defaults: stride 1, padding 0, dilation 1, groups 1 */
KILN_API kiln_tensor *kiln_conv2d(kiln_graph *g, kiln_tensor *x, kiln_tensor *w,
                                  kiln_tensor *b /* NULL: none */,
                                  kiln_conv_opts o); /* x [N,C,H,W], w [O,C/groups,kH,kW] */
/* F.conv1d: x [N,C,L] (or [C,L]), w [O,C/groups,K]; o's first entries. */
KILN_API kiln_tensor *kiln_conv1d(kiln_graph *g, kiln_tensor *x, kiln_tensor *w,
                                  kiln_tensor *b /* NULL: none */, kiln_conv_opts o);
KILN_API kiln_tensor *kiln_max_pool2d(kiln_graph *g, kiln_tensor *x, int64_t kernel,
                                      int64_t stride /* 0 = kernel */, int64_t padding);
KILN_API kiln_tensor *kiln_avg_pool2d(kiln_graph *g, kiln_tensor *x, int64_t kernel,
                                      int64_t stride /* 0 = kernel */, int64_t padding);
KILN_API kiln_tensor *kiln_adaptive_avg_pool2d(kiln_graph *g, kiln_tensor *x, int64_t out_h,
                                               int64_t out_w);
/* F.batch_norm: statistics over every axis but the channels (axis 1). In
 * training it normalizes with the batch's (biased) variance and registers the
 * update of the running statistics (params, or both NULL) with nn.BatchNorm's
 * momentum and unbiased variance; every entry made afterwards whose outputs
 * depend on the result applies that update after its outputs, like an assign
 * (its outputs "<entry>.new.<param>"). Not training: the running statistics. */
KILN_API kiln_tensor *kiln_batch_norm(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                                      kiln_tensor *running_mean, kiln_tensor *running_var,
                                      bool training, double momentum, double eps);
/* F.group_norm(x, groups, w, b, eps): statistics per sample over each group
 * of channels; w, b ([C]) may be NULL. */
KILN_API kiln_tensor *kiln_group_norm(kiln_graph *g, kiln_tensor *x, int64_t groups, kiln_tensor *w,
                                      kiln_tensor *b, double eps);
/* F.scaled_dot_product_attention: softmax(q k^T * scale + mask) v over the
 * last two axes (leading axes broadcast as batches); mask: NULL or bool
 * (true: attend), broadcast to (..., T, S); a row that attends to no key
 * gives 0 (as PyTorch 2.5+); causal: attend to j <= i (no mask with it);
 * scale 0 = 1/sqrt(head dim). */
KILN_API kiln_tensor *kiln_scaled_dot_product_attention(kiln_graph *g, kiln_tensor *q,
                                                        kiln_tensor *k, kiln_tensor *v,
                                                        kiln_tensor *mask, bool causal,
                                                        double scale);
/* torch.tril / torch.triu over the last two axes: elements with j - i <= diagonal
 * (tril) or >= diagonal (triu) are kept, the others are zero (false). */
KILN_API kiln_tensor *kiln_tril(kiln_graph *g, kiln_tensor *t, int64_t diagonal);
KILN_API kiln_tensor *kiln_triu(kiln_graph *g, kiln_tensor *t, int64_t diagonal);
/* torch.masked_fill: value (converted to t's dtype) where the bool mask is true;
 * t and mask broadcast. */
KILN_API kiln_tensor *kiln_masked_fill(kiln_graph *g, kiln_tensor *t, kiln_tensor *mask,
                                       double value);
KILN_API kiln_tensor *kiln_neg(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_abs(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_exp(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_log(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_log1p(kiln_graph *g, kiln_tensor *a); /* log(1 + a), exact near 0 */
KILN_API kiln_tensor *kiln_sqrt(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_rsqrt(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_sin(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_cos(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_tanh(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_erf(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_sigmoid(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_relu(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_gelu(kiln_graph *g, kiln_tensor *a); /* exact (erf) form */
KILN_API kiln_tensor *kiln_silu(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_square(kiln_graph *g, kiln_tensor *a);
KILN_API kiln_tensor *kiln_cast(kiln_graph *g, kiln_tensor *t, kiln_dtype dt);

/* Reductions over one axis (or KILN_ALL); argmax/argmin give KILN_I64, a flat
 * index for KILN_ALL. mean of an integer tensor is an error, as in PyTorch. */
KILN_API kiln_tensor *kiln_sum(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim);
KILN_API kiln_tensor *kiln_mean(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim);
KILN_API kiln_tensor *kiln_max(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim);
KILN_API kiln_tensor *kiln_min(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim);
KILN_API kiln_tensor *kiln_argmax(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim);
KILN_API kiln_tensor *kiln_argmin(kiln_graph *g, kiln_tensor *t, int axis, bool keepdim);
KILN_API kiln_tensor *kiln_sum_axes(kiln_graph *g, kiln_tensor *t, int n, const int *axes,
                                    bool keepdim);
KILN_API kiln_tensor *kiln_mean_axes(kiln_graph *g, kiln_tensor *t, int n, const int *axes,
                                     bool keepdim);

/* Linear algebra and nn. */
KILN_API kiln_tensor *kiln_matmul(kiln_graph *g, kiln_tensor *a,
                                  kiln_tensor *b); /* NumPy rules, batched */
KILN_API kiln_tensor *kiln_linear(kiln_graph *g, kiln_tensor *x, kiln_tensor *w,
                                  kiln_tensor *b); /* x @ w^T + b; b may be NULL */
KILN_API kiln_tensor *kiln_softmax(kiln_graph *g, kiln_tensor *t, int axis);
KILN_API kiln_tensor *kiln_log_softmax(kiln_graph *g, kiln_tensor *t, int axis);
KILN_API kiln_tensor *kiln_layer_norm(kiln_graph *g, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                                      double eps); /* over the last axis */
KILN_API kiln_tensor *kiln_embedding(kiln_graph *g, kiln_tensor *table, kiln_tensor *ids);
KILN_API kiln_tensor *kiln_dropout(kiln_graph *g, kiln_tensor *t, double p);
KILN_API kiln_tensor *kiln_mse_loss(kiln_graph *g, kiln_tensor *pred,
                                    kiln_tensor *target); /* mean */
/* nn.CrossEntropyLoss(): the mean over the labels that are not -100 (PyTorch's
 * default ignore_index: such a label adds nothing and does not count; nan when
 * every label is -100); any other label outside [0, C) is a run-time error. */
KILN_API kiln_tensor *kiln_cross_entropy(kiln_graph *g, kiln_tensor *logits,
                                         kiln_tensor *labels); /* int64 labels */
/* F.cross_entropy(logits, labels, ignore_index=, label_smoothing=): labels equal
 * to ignore_index count nowhere; label_smoothing in [0, 1] mixes the uniform
 * target in: (1 - e) nll + e * mean over classes of -log p. */
KILN_API kiln_tensor *kiln_cross_entropy_ex(kiln_graph *g, kiln_tensor *logits, kiln_tensor *labels,
                                            int64_t ignore_index, double label_smoothing);

/* ---- 4. Autodiff and assignment ------------------------------------------ */

/* grads[i] = d(sum(seed * y)) / d(wrt[i]), appended to g as ordinary nodes (so
 * they can be differentiated again). seed NULL: y must have one element. A wrt
 * that y does not depend on gets zeros. Only float tensors have gradients;
 * ties follow PyTorch: relu'(0) = abs'(0) = 0, max/min and maximum/minimum split
 * the gradient evenly between tied elements. */
KILN_API kiln_status kiln_grad(kiln_graph *g, kiln_tensor *y, int n, kiln_tensor *const *wrt,
                               kiln_tensor *seed, kiln_tensor **grads);
KILN_API kiln_tensor *kiln_detach(kiln_graph *g, kiln_tensor *t);
/* In-place update of a param when the entry that outputs the returned value
 * runs, applied after every output of that entry is computed. An entry may
 * assign a param at most once (kiln_entry refuses two assigns to one param).
 * The C target stores the value straight into the param when nothing after it
 * in the entry reads the param; the output is then the param's storage. */
KILN_API kiln_tensor *kiln_assign(kiln_graph *g, kiln_tensor *param, kiln_tensor *value);

/* ---- 5. Entries, compiling and running ------------------------------------ */

/* One module holds several functions sharing parameters. Outputs are read by
 * name; output_names may be NULL: "<entry>.0", "<entry>.1", ... */
KILN_API kiln_status kiln_entry(kiln_graph *g, const char *name, int n, kiln_tensor *const *outputs,
                                const char *const *output_names);

typedef enum { KILN_SGD, KILN_ADAM, KILN_ADAMW } kiln_optim_kind;
typedef struct { /* made by kiln_sgd/adam/adamw() with PyTorch's defaults */
    kiln_optim_kind kind;
    double lr, momentum, dampening, weight_decay, beta1, beta2, eps;
    bool nesterov;
    int accumulate;       /* micro-batches per update; 0 or 1 = update every run */
    double max_grad_norm; /* > 0: torch.nn.utils.clip_grad_norm_(params, max_grad_norm) before
                             each update (the total norm is the output "<name>.grad_norm") */
    const char *const *no_decay; /* NULL, or a NULL-terminated list of params that take no
                                    weight decay (a param group with weight_decay 0) */
    bool data_parallel;          /* the step averages its gradients over the module's communicator
                                    (kiln_module_set_comm) before the update; see below */
} kiln_optim;
KILN_API kiln_optim kiln_sgd(double lr, double momentum, double weight_decay);
KILN_API kiln_optim kiln_adam(double lr, double beta1, double beta2, double eps);
KILN_API kiln_optim kiln_adamw(double lr, double beta1, double beta2, double eps,
                               double weight_decay);
/* Registers entry `name`: one run computes the loss ("<name>.loss"), its
 * gradient for every float param it depends on (a param reached only through
 * kiln_detach, or not at all, is left alone, as PyTorch skips params whose
 * .grad is None) and updates those params in place with PyTorch's update
 * formulas. Gradients are fresh each run; with opt.accumulate = k > 1 runs
 * 1..k-1 only sum them ("<param>.grad") and run k updates from the sum.
 * Module names: "<name>.lr" (f64, initially opt.lr, settable any time),
 * "<name>.step" (f32, updates so far), "<param>.momentum_buffer",
 * "<param>.exp_avg", "<param>.exp_avg_sq"; the updated values are also
 * outputs "<name>.new.<tensor>" (on the C target, where the update is done in
 * place, that output is the tensor's own storage: kiln_module_bind binds the
 * tensor, not it). Bad hyperparameters give PyTorch's errors
 * ("Invalid learning rate: -0.1"). */
KILN_API kiln_status kiln_train_step(kiln_graph *g, const char *name, kiln_tensor *loss,
                                     kiln_optim opt);
/* With opt.data_parallel the step is two entries that kiln_module_run(m, name)
 * runs as one (DistributedDataParallel's order): "<name>.backward" computes
 * "<name>.loss" and each gradient "<name>.grad.<param>"; the gradients are
 * summed over the communicator's ranks and divided by their number into the
 * inputs "<name>.mean_grad.<param>"; then "<name>" updates (clipping,
 * accumulation and decay as above). Without a communicator the mean is the
 * gradient itself, and the step is the plain one. */

typedef enum { KILN_TARGET_C, KILN_TARGET_CUDA, KILN_TARGET_INTERP } kiln_target;
typedef struct {
    kiln_target target;    /* 0 = KILN_TARGET_C */
    int opt_level;         /* 0 = default */
    const char *cache_dir; /* NULL: $KILN_CACHE_DIR, then $XDG_CACHE_HOME/kiln, then
                              ~/.cache/kiln, else /tmp/kiln-cache-<uid>; Kiln runs the code it
                              finds there, so it must be the user's own and writable by no one
                              else (Kiln creates it 0700; anything else is refused) */
    int threads;           /* 0 = every available core */
    const char *name;      /* export name; NULL = "model" */
    double tune;           /* seconds to time GEMM schedules per new matmul shape (the winners
                              are kept in the cache per CPU and used by every later compile);
                              0 = $KILN_TUNE ("on": 3 s, "off", or seconds; unset: off, the
                              host model's schedule); < 0 = never tune */
} kiln_compile_opts;       /* NULL opts = all defaults */

KILN_API kiln_status kiln_compile(kiln_graph *g, const kiln_compile_opts *opts, kiln_module **out);
/* Loads a .so written by kiln_export as a C-target module (its params at the
 * exported values). The file is checked before it is loaded (an ELF shared
 * object for this machine, whole, with the section every export carries): a
 * .so that is not a Kiln export is refused without running any of its code;
 * one built for another ABI or by another Kiln version is refused after
 * loading (KILN_ERR_LOAD). An export is code: open only exports you trust.
 * The reason of a failed open is kiln_module_error(NULL) (per thread). */
KILN_API kiln_status kiln_module_open(const char *so_path, kiln_module **out);
/* The last failed call's message, "" when none; m == NULL: the calling
 * thread's last failed kiln_module_open. */
KILN_API const char *kiln_module_error(const kiln_module *m);
/* A module is used by one thread at a time: a run, set, get, bind, save or
 * load made while another thread is inside one of them is refused
 * (KILN_ERR_INVALID, "... the module is in use by another thread"). Give each
 * thread its own module, or hold a lock around the calls. */
KILN_API kiln_status kiln_module_run(kiln_module *m, const char *entry);
KILN_API kiln_status kiln_module_set(kiln_module *m, const char *name, const void *src,
                                     size_t nbytes);
KILN_API kiln_status kiln_module_get(kiln_module *m, const char *name, void *dst, size_t nbytes);
KILN_API kiln_status kiln_module_set_scalar(kiln_module *m, const char *name, double v);
KILN_API kiln_status kiln_module_get_scalar(kiln_module *m, const char *name,
                                            double *v); /* like .item() */
/* Bool data is one byte per element; a byte other than 0 or 1 is read as true
 * and stored as 1 by set, set_npy, load, kiln_npy_load, kiln_tensor_from and
 * kiln_init_data. bind is zero-copy, so bound bool memory must hold only 0
 * and 1 whenever the module runs (other bytes give unspecified results).
 * No two bound tensors may share memory: a bind whose memory overlaps another
 * bound tensor's is refused (KILN_ERR_INVALID). */
KILN_API kiln_status kiln_module_bind(kiln_module *m, const char *name,
                                      void *host_ptr); /* zero-copy, C target */
KILN_API kiln_status kiln_module_print(kiln_module *m, const char *name,
                                       FILE *f); /* PyTorch's format + "\n" */
/* Checkpoints are safetensors files. save writes every param (optimizer state
 * and the train step's "<name>.step"/"<name>.lr" included) under its name,
 * sorted by name (one state, one byte-identical file), with __metadata__
 * {"format": "kiln", "kiln.run": "<run counter>"}; it replaces path
 * atomically (temp file, fsync, rename): a crash leaves the old file whole,
 * and the next save of path removes the "<path>.tmp.<pid>.*" file of a save
 * whose process is gone. The new file keeps the mode of the one it replaces
 * (a 0600 checkpoint stays private); a new file gets 0666 & ~umask. Only a
 * regular file is replaced: a FIFO or a device node is refused (KILN_ERR_IO),
 * and so is a symbolic link ("... is a symbolic link: save to the file it
 * points to"), since replacing it would cut the link and leave its target
 * stale. load reads only regular files (a symlink to one is fine), refusing
 * FIFOs and devices before it opens them; it checks the whole file first and
 * changes nothing on any error (KILN_ERR_IO, _FORMAT, or _NOT_FOUND / _DTYPE
 * / _SHAPE for a tensor that is not a param of m or does not match it);
 * params the file lacks keep their values, so files from other tools load
 * too; kiln.run, when present, restores the run counter, so random ops
 * resume bit for bit. */
KILN_API kiln_status kiln_module_save(kiln_module *m, const char *path); /* safetensors, atomic */
KILN_API kiln_status kiln_module_load(kiln_module *m, const char *path);
/* load_state_dict(strict=False): as kiln_module_load, but the file's tensors
 * that are no param of m are skipped (an inference module loads a training
 * checkpoint and leaves its optimizer state), and report (NULL: none) gets
 * two lines: "unexpected keys (skipped): 'a', 'b'" and "missing keys (kept):
 * ..." ("none" when empty). A tensor of a param's name must still match it. */
KILN_API kiln_status kiln_module_load_nonstrict(kiln_module *m, const char *path, FILE *report);

/* .npy files (NumPy's format; the numpy bridge of the tutorials): C order,
 * little-endian '<f4' '<f8' '<i4' '<i8' '|b1'. Written as numpy.save writes
 * them (format 1.0, atomically, replacing only regular files and keeping
 * their mode, as kiln_module_save); formats 1.0 to 3.0 are read, from
 * regular files only. Every header field and size is checked: KILN_ERR_IO
 * (the file), _FORMAT (malformed), _UNSUPPORTED (Fortran order, big-endian,
 * other dtypes), _DTYPE / _SHAPE (not what was asked for). The file
 * functions leave their message in kiln_npy_error() (per thread); the module
 * helpers in kiln_module_error(m). */
KILN_API kiln_status kiln_npy_save(const char *path, kiln_dtype dt, int rank, const int64_t *dims,
                                   const void *data);
/* The dtype, rank and dims (room for KILN_MAX_RANK) of a .npy file. */
KILN_API kiln_status kiln_npy_info(const char *path, kiln_dtype *dt, int *rank, int64_t *dims);
/* Reads a .npy that holds exactly dtype dt and these dims into dst. */
KILN_API kiln_status kiln_npy_load(const char *path, kiln_dtype dt, int rank, const int64_t *dims,
                                   void *dst);
KILN_API const char *kiln_npy_error(void); /* "" when the last call succeeded */
/* Sets module tensor `name` from a .npy of its dtype and shape; writes one. */
KILN_API kiln_status kiln_module_set_npy(kiln_module *m, const char *name, const char *path);
KILN_API kiln_status kiln_module_get_npy(kiln_module *m, const char *name, const char *path);
KILN_API const char *kiln_module_source(kiln_module *m); /* the generated code */
KILN_API kiln_status kiln_graph_dot(const kiln_graph *g, FILE *f);
KILN_API kiln_status kiln_module_profile(kiln_module *m, FILE *f);
/* Writes <dir>/<name>.so and <name>.h (name = opts->name, default "model", a C
 * identifier) plus the sources <name>.c, <name>.kir and <name>.params.bin:
 * a standalone library with a typed C API (<name>_create, one function per
 * entry, <name>_save/_load, <name>_tensor) that needs no libkiln. C target only. */
KILN_API kiln_status kiln_export(kiln_graph *g, const kiln_compile_opts *opts, const char *dir);
KILN_API void kiln_module_free(kiln_module *m); /* NULL is a no-op */

/* A communicator for data-parallel training: the ranks of one job, each
 * running the same graph on its shard of the batch. Kiln calls these; each
 * returns 0, or -1 with the reason in error(c). libkiln_mpi makes one over MPI
 * (kiln_mpi.h); libkiln itself never links MPI. */
typedef struct kiln_comm {
    int rank, size;
    /* buf (n elements of dt, a float dtype) := its sum over the ranks, the
     * same on every rank; every rank passes the same n and dt */
    int (*allreduce_sum)(struct kiln_comm *c, void *buf, int64_t n, kiln_dtype dt);
    /* buf (bytes) := rank root's buf */
    int (*broadcast)(struct kiln_comm *c, void *buf, size_t bytes, int root);
    const char *(*error)(struct kiln_comm *c);
    /* Optional (NULL: each gradient is summed after the whole backward): the
     * same sum started in the background as soon as a gradient is complete,
     * so it overlaps the rest of the backward (*handle: what to finish);
     * test lets it progress (1 done, 0 not yet, -1 failed; Kiln calls it
     * between kernels); wait finishes it (0 or -1) and frees the handle. */
    int (*allreduce_start)(struct kiln_comm *c, void *buf, int64_t n, kiln_dtype dt, void **handle);
    int (*allreduce_test)(struct kiln_comm *c, void *handle);
    int (*allreduce_wait)(struct kiln_comm *c, void *handle);
    /* Gradients travel in buckets of at most this many bytes, several small
     * ones in one message (a larger one alone), in the order the backward
     * completes them, as DistributedDataParallel's bucket_cap_mb: 0 = 25 MiB,
     * negative = every gradient alone. */
    int64_t bucket_bytes;
} kiln_comm;
/* Attaches c to m (NULL detaches). Every rank calls it with a module of the
 * same graph: the params' names, dtypes and shapes are checked against rank
 * 0's (a mismatch fails on every rank, naming the param), then every param is
 * set to rank 0's values, so the ranks start identical whatever their seeds.
 * After it, data-parallel steps average their gradients over the ranks, and
 * kiln_module_save writes on rank 0 only (the others return KILN_OK). c must
 * outlive m or the next kiln_module_set_comm. */
KILN_API kiln_status kiln_module_set_comm(kiln_module *m, kiln_comm *c);

/* Formats a host buffer exactly as PyTorch prints a tensor of that dtype and
 * shape (no trailing newline). Returns the number of characters the full text
 * needs, like snprintf; buf may be NULL when cap is 0. */
KILN_API size_t kiln_format(char *buf, size_t cap, kiln_dtype dt, int rank, const int64_t *dims,
                            const void *data);

#ifdef __cplusplus
}
#endif

#endif /* KILN_H */
