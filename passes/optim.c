/*
 * optim.c - kiln_train_step: the optimizer lowered into the graph.
 *
 * Requires: a graph without error; loss a one-element float tensor of it.
 * Produces: the gradient of loss for every float param it depends on through
 * differentiable nodes (autodiff.c; a param it does not reach gets no
 * update, as PyTorch skips a param whose .grad is None), state params, the
 * update of every param and state as ordinary graph nodes, and an entry
 * `name` whose outputs are the loss ("<name>.loss") and one ASSIGN per
 * updated tensor ("<name>.new.<tensor>"). An entry applies its assigns after
 * computing every output, so each update reads the old values.
 *
 * State (params, so checkpoints carry them): "<name>.lr" (f64, a run-time
 * scalar, initially opt.lr), "<name>.step" (f32, updates applied so far, as
 * PyTorch's state['step']), per param "<p>.momentum_buffer" (SGD with
 * momentum) or "<p>.exp_avg" and "<p>.exp_avg_sq" (Adam, AdamW); with
 * opt.accumulate = k > 1 also "<p>.grad" (the gradient summed so far) and
 * "<name>.micro" (i64, runs since the last update): runs 1..k-1 only add to
 * "<p>.grad", run k updates from the sum and clears it.
 *
 * The updates are PyTorch 1.13's single-tensor optimizers, in the same order
 * and dtypes: hyperparameters are Python floats, so every scalar expression
 * of them (1 - beta1, lr / bias_correction1, ...) is computed in double and
 * rounded to the param's dtype when it meets a tensor (a weak scalar here).
 *   SGD:   d = g + wd * p;  buf = step == 0 ? d : momentum * buf + (1 - dampening) * d
 *          d = nesterov ? d + momentum * buf : buf;  p += -lr * d
 *   Adam:  g += wd * p;  m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g * g
 *          t = step + 1;  p += (-lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 *   AdamW: p *= 1 - lr * wd, then Adam's update without the wd term.
 * A param named in opt.no_decay takes wd = 0 (its own param group). With
 * opt.max_grad_norm > 0 the gradients an update reads (the sums, when
 * accumulating) are first scaled as torch.nn.utils.clip_grad_norm_ does:
 *   total = sqrt(sum over params of sum(g * g));  g *= min(max_norm / (total + 1e-6), 1)
 * and total is the entry's output "<name>.grad_norm".
 *
 * opt.data_parallel splits the step (split_backward): "<name>.backward"
 * outputs the loss and the gradients, and the update reads their mean over
 * the ranks from inputs, which kiln_module_run fills in between.
 */
#include "passes.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    kiln_graph *g;
    const char *name;   /* the entry */
    kiln_tensor *doit;  /* bool 0-d: this run updates (accumulate > 1), else NULL */
    kiln_tensor **outs; /* entry outputs: the loss, then the assigns */
    const char **names;
    int n;
} opt_ctx;

/* "<a><b><c>" in the graph's arena (NULL when out of memory). */
static const char *cat3(kiln_graph *g, const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = ir_arena_alloc(&g->arena, n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

/* A state param "<owner><suffix>" of the given shape, initially v. */
static kiln_tensor *state(opt_ctx *c, const char *owner, const char *suffix, kiln_dtype dt,
                          int rank, const int64_t *dims, double v)
{
    const char *name = cat3(c->g, owner, suffix, "");
    if (!name) {
        ir_fail(c->g, KILN_ERR_NOMEM, "kiln_train_step: out of memory");
        return NULL;
    }
    return kiln_param(c->g, name, dt, rank, dims, v == 0 ? kiln_init_zeros() : kiln_init_const(v));
}

/* Records target := value on every run. */
static void assign_always(opt_ctx *c, kiln_tensor *target, kiln_tensor *value)
{
    if (!target || !value)
        return;
    kiln_tensor *a = kiln_assign(c->g, target, value);
    const char *name = cat3(c->g, c->name, ".new.", target->name);
    if (!a || !name) {
        if (c->g->status == KILN_OK)
            ir_fail(c->g, KILN_ERR_NOMEM, "kiln_train_step: out of memory");
        return;
    }
    c->outs[c->n] = a;
    c->names[c->n++] = name;
}

/* Records target := value on the runs that update (kept as it was on the
 * others when accumulating). */
static void update(opt_ctx *c, kiln_tensor *target, kiln_tensor *value)
{
    if (c->doit && target && value)
        value = kiln_where(c->g, c->doit, value, target);
    assign_always(c, target, value);
}

static kiln_tensor *scalar(opt_ctx *c, double v)
{
    return kiln_scalar(c->g, v);
}

/* a + s * b: PyTorch's a.add(b, alpha=s). */
static kiln_tensor *add_scaled(opt_ctx *c, kiln_tensor *a, kiln_tensor *s, kiln_tensor *b)
{
    return kiln_add(c->g, a, kiln_mul(c->g, s, b));
}

/* opt.weight_decay, or 0 for a param in opt.no_decay. */
static double decay_of(const kiln_optim *o, const kiln_tensor *p)
{
    for (const char *const *n = o->no_decay; n && *n; n++)
        if (strcmp(*n, p->name) == 0)
            return 0;
    return o->weight_decay;
}

static void sgd(opt_ctx *c, const kiln_optim *o, kiln_tensor *p, kiln_tensor *grad, kiln_tensor *lr,
                kiln_tensor *step)
{
    kiln_graph *g = c->g;
    kiln_tensor *d = grad;
    double wd = decay_of(o, p);
    if (wd != 0)
        d = add_scaled(c, d, scalar(c, wd), p);
    if (o->momentum != 0) {
        kiln_tensor *buf = state(c, p->name, ".momentum_buffer", p->dtype, p->rank, p->dims, 0);
        kiln_tensor *later =
            add_scaled(c, kiln_mul(g, buf, scalar(c, o->momentum)), scalar(c, 1 - o->dampening), d);
        kiln_tensor *nbuf = kiln_where(g, kiln_eq(g, step, scalar(c, 0)), d, later);
        update(c, buf, nbuf);
        d = o->nesterov ? add_scaled(c, d, scalar(c, o->momentum), nbuf) : nbuf;
    }
    update(c, p, add_scaled(c, p, kiln_neg(g, lr), d));
}

static void adam(opt_ctx *c, const kiln_optim *o, kiln_tensor *p, kiln_tensor *grad,
                 kiln_tensor *lr, kiln_tensor *t)
{
    kiln_graph *g = c->g;
    kiln_tensor *base = p;
    double wd = decay_of(o, p);
    if (o->kind == KILN_ADAMW) /* decoupled: p.mul_(1 - lr * weight_decay) */
        base = kiln_mul(g, p, kiln_sub(g, scalar(c, 1), kiln_mul(g, lr, scalar(c, wd))));
    else if (wd != 0)
        grad = add_scaled(c, grad, scalar(c, wd), p);
    kiln_tensor *m = state(c, p->name, ".exp_avg", p->dtype, p->rank, p->dims, 0);
    kiln_tensor *v = state(c, p->name, ".exp_avg_sq", p->dtype, p->rank, p->dims, 0);
    kiln_tensor *nm =
        add_scaled(c, kiln_mul(g, m, scalar(c, o->beta1)), scalar(c, 1 - o->beta1), grad);
    kiln_tensor *nv = kiln_add(g, kiln_mul(g, v, scalar(c, o->beta2)),
                               kiln_mul(g, kiln_mul(g, scalar(c, 1 - o->beta2), grad), grad));
    /* the bias corrections in double, from the f32 step count t (after += 1) */
    kiln_tensor *t64 = kiln_cast(g, t, KILN_F64);
    kiln_tensor *bc1 = kiln_sub(g, scalar(c, 1), kiln_pow(g, scalar(c, o->beta1), t64));
    kiln_tensor *bc2 = kiln_sub(g, scalar(c, 1), kiln_pow(g, scalar(c, o->beta2), t64));
    kiln_tensor *step_size = kiln_div(g, lr, bc1);
    kiln_tensor *denom =
        kiln_add(g, kiln_div(g, kiln_sqrt(g, nv), kiln_sqrt(g, bc2)), scalar(c, o->eps));
    /* addcdiv: p + (value * m) / denom */
    kiln_tensor *np =
        kiln_add(g, base, kiln_div(g, kiln_mul(g, kiln_neg(g, step_size), nm), denom));
    update(c, m, nm);
    update(c, v, nv);
    update(c, p, np);
}

/* PyTorch's constructor checks, in its words. */
/* clip_grad_norm_: the total 2-norm of the gradients (in f64), output as
 * "<name>.grad_norm"; each gradient scaled by min(max / (total + 1e-6), 1). */
static void clip(opt_ctx *c, double max, int n, kiln_tensor **grads)
{
    kiln_graph *g = c->g;
    kiln_tensor *sq = NULL;
    for (int i = 0; i < n; i++)
        if (grads[i]) {
            kiln_tensor *s = kiln_cast(
                g, kiln_sum(g, kiln_mul(g, grads[i], grads[i]), KILN_ALL, false), KILN_F64);
            sq = sq ? kiln_add(g, sq, s) : s;
        }
    kiln_tensor *total = kiln_sqrt(g, sq);
    kiln_tensor *coef = kiln_minimum(
        g, kiln_div(g, scalar(c, max), kiln_add(g, total, scalar(c, 1e-6))), scalar(c, 1));
    for (int i = 0; i < n; i++)
        if (grads[i])
            grads[i] = kiln_mul(g, grads[i], kiln_cast(g, coef, grads[i]->dtype));
    c->outs[c->n] = total;
    c->names[c->n++] = cat3(g, c->name, ".grad_norm", "");
}

static kiln_status check_hyper(kiln_graph *g, const kiln_optim *o)
{
    const char *fn = "kiln_train_step";
    if (o->kind != KILN_SGD && o->kind != KILN_ADAM && o->kind != KILN_ADAMW)
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: unknown optimizer kind %d", fn,
                              (int)o->kind);
    if (!(o->lr >= 0))
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: Invalid learning rate: %g", fn, o->lr);
    if (!(o->weight_decay >= 0))
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: Invalid weight_decay value: %g", fn,
                              o->weight_decay);
    if (o->accumulate < 0)
        return ir_fail_status(g, KILN_ERR_INVALID,
                              "%s: accumulate must be 0 or more micro-batches (got %d)", fn,
                              o->accumulate);
    if (!(o->max_grad_norm >= 0))
        return ir_fail_status(g, KILN_ERR_INVALID,
                              "%s: max_grad_norm must be 0 (no clipping) or more (got %g)", fn,
                              o->max_grad_norm);
    for (const char *const *n = o->no_decay; n && *n; n++) {
        bool found = false;
        for (int i = 0; i < g->nnodes && !found; i++)
            found = g->nodes[i]->op == IR_PARAM && strcmp(g->nodes[i]->name, *n) == 0;
        if (!found)
            return ir_fail_status(g, KILN_ERR_NOT_FOUND,
                                  "%s: no_decay names '%s', which is not a param of the graph", fn,
                                  *n);
    }
    if (o->kind == KILN_SGD) {
        if (!(o->momentum >= 0))
            return ir_fail_status(g, KILN_ERR_INVALID, "%s: Invalid momentum value: %g", fn,
                                  o->momentum);
        if (o->nesterov && (o->momentum <= 0 || o->dampening != 0))
            return ir_fail_status(g, KILN_ERR_INVALID,
                                  "%s: Nesterov momentum requires a momentum and zero dampening",
                                  fn);
        return KILN_OK;
    }
    if (!(o->eps >= 0))
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: Invalid epsilon value: %g", fn, o->eps);
    if (!(o->beta1 >= 0 && o->beta1 < 1))
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: Invalid beta parameter at index 0: %g", fn,
                              o->beta1);
    if (!(o->beta2 >= 0 && o->beta2 < 1))
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: Invalid beta parameter at index 1: %g", fn,
                              o->beta2);
    return KILN_OK;
}

/* opt.data_parallel: the entry "<name>.backward" outputs the loss and each
 * gradient ("<name>.grad.<p>"), and the update reads the inputs
 * "<name>.mean_grad.<p>" instead (grads[i] is replaced by that input). The
 * runtime runs both as the step and averages the gradients over the ranks in
 * between (runtime/module.c). */
/* The data-parallel split: "<name>.backward" outputs the loss and each
 * gradient ("<name>.grad.<p>"); the update reads the mean over the ranks from
 * the input "<name>.mean_grad.<p>" (grads[i] becomes it). With k > 1
 * micro-batches per update the backward accumulates locally, so the ranks
 * talk once per update: it outputs the sums so far ("<p>.grad" + gradient,
 * kept in that state) and "<name>.update" (true on the k-th micro-batch:
 * kiln_module_run then reduces and updates); the update clears the sums and
 * "<name>.micro". */
static kiln_status split_backward(opt_ctx *c, kiln_tensor *loss, int np, kiln_tensor **params,
                                  kiln_tensor **grads, int k)
{
    kiln_graph *g = c->g;
    const char *name = c->name;
    int cap = 2 * np + 3;
    kiln_tensor **outs = ir_alloc(sizeof(*outs) * (size_t)cap);
    const char **names = ir_alloc(sizeof(*names) * (size_t)cap);
    kiln_status s = KILN_OK;
    if (!outs || !names) {
        s = ir_fail_status(g, KILN_ERR_NOMEM, "kiln_train_step: out of memory");
        goto done;
    }
    const char *entry = cat3(g, name, ".backward", "");
    int n = 0;
    outs[n] = loss;
    names[n++] = cat3(g, name, ".loss", "");
    if (k > 1) { /* the micro-batch count: kept by the backward, cleared by the update */
        kiln_tensor *micro = state(c, name, ".micro", KILN_I64, 0, NULL, 0);
        kiln_tensor *next = micro ? kiln_add(g, micro, kiln_scalar(g, 1)) : NULL;
        outs[n] = next ? kiln_ge(g, next, kiln_scalar(g, k)) : NULL;
        names[n++] = cat3(g, name, ".update", "");
        outs[n] = next ? kiln_assign(g, micro, next) : NULL;
        names[n++] = micro ? cat3(g, entry, ".new.", micro->name) : NULL;
        assign_always(c, micro, micro ? kiln_zeros_like(g, micro) : NULL);
    }
    for (int i = 0; i < np && g->status == KILN_OK; i++) {
        if (!grads[i])
            continue;
        const kiln_tensor *p = params[i];
        kiln_tensor *grad = grads[i];
        if (k > 1) { /* "<p>.grad" += gradient, here; cleared by the update */
            kiln_tensor *acc = state(c, p->name, ".grad", p->dtype, p->rank, p->dims, 0);
            grad = acc ? kiln_add(g, acc, grad) : NULL;
            outs[n] = grad ? kiln_assign(g, acc, grad) : NULL;
            names[n++] = acc ? cat3(g, entry, ".new.", acc->name) : NULL;
            assign_always(c, acc, acc ? kiln_zeros_like(g, acc) : NULL);
        }
        outs[n] = grad;
        names[n++] = cat3(g, name, ".grad.", p->name);
        const char *mean = cat3(g, name, ".mean_grad.", p->name);
        grads[i] = mean ? kiln_input(g, mean, p->dtype, p->rank, p->dims) : NULL;
        if (!mean || !names[n - 1])
            s = ir_fail_status(g, KILN_ERR_NOMEM, "kiln_train_step: out of memory");
    }
    for (int i = 0; i < n && s == KILN_OK && g->status == KILN_OK; i++)
        if (!outs[i] || !names[i])
            s = ir_fail_status(g, KILN_ERR_NOMEM, "kiln_train_step: out of memory");
    if (s == KILN_OK && g->status == KILN_OK)
        s = entry ? kiln_entry(g, entry, n, outs, (const char *const *)names)
                  : ir_fail_status(g, KILN_ERR_NOMEM, "kiln_train_step: out of memory");
    s = s != KILN_OK ? s : g->status;
done:
    ir_free(outs);
    ir_free(names);
    return s;
}

static kiln_status train_step(kiln_graph *g, const char *name, kiln_tensor *loss,
                              const kiln_optim *opt)
{
    const char *fn = "kiln_train_step";
    kiln_status named = ir_check_entry_name(g, fn, name);
    if (named != KILN_OK)
        return named;
    if (!loss || loss->graph != g)
        return ir_fail_status(g, KILN_ERR_INVALID, "%s: loss must be a tensor of this graph", fn);
    /* loss.backward()'s checks, before anything is built */
    if (!ir_dtype_is_float(loss->dtype))
        return ir_fail_status(g, KILN_ERR_DTYPE,
                              "%s: only Tensors of floating point dtype can require gradients "
                              "(the loss is %s)",
                              fn, kiln_dtype_name(loss->dtype));
    if (ir_numel(loss) != 1)
        return ir_fail_status(g, KILN_ERR_SHAPE,
                              "%s: grad can be implicitly created only for scalar outputs", fn);
    kiln_status s = check_hyper(g, opt);
    if (s != KILN_OK)
        return s;

    /* every float param so far; ad_grad leaves NULL where loss does not reach */
    int np = 0, count = g->nnodes;
    for (int i = 0; i < count; i++)
        np += g->nodes[i]->op == IR_PARAM && ir_dtype_is_float(g->nodes[i]->dtype);
    int cap = 4 + 4 * np;
    kiln_tensor **params = ir_alloc(sizeof(*params) * (size_t)(np ? np : 1));
    kiln_tensor **grads = ir_alloc(sizeof(*grads) * (size_t)(np ? np : 1));
    opt_ctx c = {.g = g,
                 .name = name,
                 .outs = ir_alloc(sizeof(*c.outs) * (size_t)cap),
                 .names = ir_alloc(sizeof(*c.names) * (size_t)cap)};
    if (!params || !grads || !c.outs || !c.names) {
        s = ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
        goto done;
    }
    np = 0;
    for (int i = 0; i < count; i++)
        if (g->nodes[i]->op == IR_PARAM && ir_dtype_is_float(g->nodes[i]->dtype))
            params[np++] = g->nodes[i];
    s = ad_grad(g, loss, np, params, NULL, false, grads);
    if (s != KILN_OK)
        goto done;
    int used = 0;
    for (int i = 0; i < np; i++)
        used += grads[i] != NULL;
    if (used == 0) {
        s = ir_fail_status(g, KILN_ERR_INVALID,
                           "%s: the loss depends on no param: optimizer got an empty parameter "
                           "list",
                           fn);
        goto done;
    }

    int k = opt->accumulate > 1 ? opt->accumulate : 1;
    if (opt->data_parallel) {
        s = split_backward(&c, loss, np, params, grads, k);
        if (s != KILN_OK)
            goto done;
        k = 1; /* the backward accumulated; the update applies whenever it runs */
    } else {
        c.outs[0] = loss;
        c.names[c.n++] = cat3(g, name, ".loss", "");
    }
    kiln_tensor *lr = state(&c, name, ".lr", KILN_F64, 0, NULL, opt->lr);
    kiln_tensor *step = state(&c, name, ".step", KILN_F32, 0, NULL, 0);
    kiln_tensor *micro = NULL;
    if (k > 1) {
        micro = state(&c, name, ".micro", KILN_I64, 0, NULL, 0);
        kiln_tensor *next = kiln_add(g, micro, scalar(&c, 1));
        c.doit = kiln_eq(g, next, scalar(&c, k));
        /* counts 1..k-1, then 0 on the run that updates */
        assign_always(&c, micro, kiln_where(g, c.doit, scalar(&c, 0), next));
    }
    kiln_tensor *t = kiln_add(g, step, scalar(&c, 1));
    for (int i = 0; i < np && g->status == KILN_OK && k > 1; i++) {
        kiln_tensor *p = params[i];
        if (!grads[i])
            continue;
        /* "<p>.grad" += grad; the update reads the sum, then it clears */
        kiln_tensor *acc = state(&c, p->name, ".grad", p->dtype, p->rank, p->dims, 0);
        kiln_tensor *sum = kiln_add(g, acc, grads[i]);
        assign_always(&c, acc, kiln_where(g, c.doit, scalar(&c, 0), sum));
        grads[i] = sum;
    }
    if (opt->max_grad_norm > 0 && g->status == KILN_OK)
        clip(&c, opt->max_grad_norm, np, grads);
    for (int i = 0; i < np && g->status == KILN_OK; i++) {
        kiln_tensor *p = params[i], *grad = grads[i];
        if (!grad)
            continue;
        if (opt->kind == KILN_SGD)
            sgd(&c, opt, p, grad, lr, step);
        else
            adam(&c, opt, p, grad, lr, t);
    }
    update(&c, step, t);
    if (g->status != KILN_OK) {
        s = g->status;
        goto done;
    }
    for (int i = 0; i < c.n; i++)
        if (!c.names[i]) {
            s = ir_fail_status(g, KILN_ERR_NOMEM, "%s: out of memory", fn);
            goto done;
        }
    s = kiln_entry(g, name, c.n, c.outs, c.names);
done:
    ir_free(params);
    ir_free(grads);
    ir_free(c.outs);
    ir_free(c.names);
    return s;
}

kiln_status kiln_train_step(kiln_graph *g, const char *name, kiln_tensor *loss, kiln_optim opt)
{
    if (!g)
        return KILN_ERR_INVALID;
    if (!ir_begin(g))
        return g->status;
    return train_step(g, name, loss, &opt);
}
