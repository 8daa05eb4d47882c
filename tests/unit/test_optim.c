/*
 * test_optim.c - kiln_train_step: SGD (momentum, dampening, nesterov, weight
 * decay), Adam and AdamW, gradient accumulation and the run-time learning
 * rate, matched run by run against PyTorch's optimizers, on the interpreter
 * and the C target; and every error of kiln_train_step.
 *
 * The reference is tests/data/optim_table.txt, made by
 * tests/ref/optim_table.py with PyTorch: the same two-layer model, data and
 * initial params (closed forms: sin(a * i + b) / 2 in double, rounded to
 * f32), the loss of every run and every param and optimizer state tensor
 * after the last run.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    kiln_optim opt;
    bool ce; /* cross-entropy, else MSE */
    int runs;
} config;

static kiln_optim with_accumulate(kiln_optim o, int k)
{
    o.accumulate = k;
    return o;
}

static kiln_optim sgd_full(double lr, double momentum, double dampening, double wd, bool nesterov)
{
    kiln_optim o = kiln_sgd(lr, momentum, wd);
    o.dampening = dampening;
    o.nesterov = nesterov;
    return o;
}

/* tests/ref/optim_table.py's CONFIGS, in Kiln */
static config configs(int i)
{
    switch (i) {
    case 0: return (config){"sgd", kiln_sgd(0.1, 0, 0), false, 5};
    case 1: return (config){"sgd_momentum", kiln_sgd(0.1, 0.9, 0), false, 5};
    case 2: return (config){"sgd_dampening_wd", sgd_full(0.05, 0.8, 0.25, 0.01, false), false, 5};
    case 3: return (config){"sgd_nesterov", sgd_full(0.05, 0.9, 0, 0.02, true), true, 5};
    case 4: return (config){"adam", kiln_adam(0.01, 0.9, 0.999, 1e-8), false, 5};
    case 5: {
        kiln_optim o = kiln_adam(0.02, 0.8, 0.99, 1e-6);
        o.weight_decay = 0.1;
        return (config){"adam_wd", o, true, 5};
    }
    case 6: return (config){"adamw", kiln_adamw(0.01, 0.9, 0.999, 1e-8, 0.1), false, 5};
    case 7: return (config){"sgd_accumulate", with_accumulate(kiln_sgd(0.1, 0.9, 0), 2), false, 10};
    case 8:
        return (config){"adam_accumulate", with_accumulate(kiln_adam(0.01, 0.9, 0.999, 1e-8), 3),
                        true, 9};
    case 9: return (config){"adam_lr_change", kiln_adam(0.01, 0.9, 0.999, 1e-8), false, 5};
    case 10: { /* param groups: no decay for the biases; clip_grad_norm_(0.5) */
        static const char *const biases[] = {"b1", "b2", NULL};
        kiln_optim o = kiln_adamw(0.02, 0.9, 0.999, 1e-8, 0.1);
        o.no_decay = biases;
        o.max_grad_norm = 0.5;
        return (config){"adamw_groups_clip", o, true, 5};
    }
    default: {
        kiln_optim o = with_accumulate(kiln_sgd(0.1, 0.9, 0), 2);
        o.max_grad_norm = 0.05; /* the sum of two micro-batches is clipped */
        return (config){"sgd_clip_accumulate", o, false, 10};
    }
    }
}
enum { NCONFIGS = 12 };

static void fill(float *out, int n, double a, double b)
{
    for (int i = 0; i < n; i++)
        out[i] = (float)(sin(a * i + b) / 2);
}

static const struct {
    const char *name;
    int rank;
    int64_t dims[2];
    double a, b;
} params[] = {{"w1", 2, {5, 3}, 0.37, 0.1},
              {"b1", 1, {5, 0}, 0.53, 0.2},
              {"w2", 2, {2, 5}, 0.29, 0.3},
              {"b2", 1, {2, 0}, 0.61, 0.4}};

static kiln_graph *model(const config *c)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *p[4];
    for (int i = 0; i < 4; i++) {
        float init[15];
        fill(init, (int)(params[i].dims[0] * (params[i].rank == 2 ? params[i].dims[1] : 1)),
             params[i].a, params[i].b);
        p[i] = kiln_param(g, params[i].name, KILN_F32, params[i].rank, params[i].dims,
                          kiln_init_data(init));
    }
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(4, 3));
    kiln_tensor *h = kiln_relu(g, kiln_linear(g, x, p[0], p[1]));
    kiln_tensor *out = kiln_linear(g, h, p[2], p[3]);
    kiln_tensor *loss;
    if (c->ce)
        loss = kiln_cross_entropy(g, out, kiln_input(g, "labels", KILN_I64, KILN_SHAPE(4)));
    else
        loss = kiln_mse_loss(g, out, kiln_input(g, "y", KILN_F32, KILN_SHAPE(4, 2)));
    assert_int_equal(kiln_train_step(g, "train", loss, c->opt), KILN_OK);
    ku_assert_ok(g);
    return g;
}

static void set_batch(kiln_module *m, const config *c, int k)
{
    float x[12], y[8];
    int64_t labels[4];
    fill(x, 12, 0.7, 0.3 + k);
    fill(y, 8, 1.1, 0.5 + k);
    for (int i = 0; i < 4; i++)
        labels[i] = (i + k) % 2;
    assert_int_equal(kiln_module_set(m, "x", x, sizeof x), KILN_OK);
    if (c->ce)
        assert_int_equal(kiln_module_set(m, "labels", labels, sizeof labels), KILN_OK);
    else
        assert_int_equal(kiln_module_set(m, "y", y, sizeof y), KILN_OK);
}

static bool close_f32(double got, double want)
{
    return fabs(got - want) <= 2e-5 * fabs(want) + 2e-6;
}

/* The table's line "<config> <key> v0 v1 ..." as floats; n = count. */
static bool table_row(const char *table, const char *cfg, const char *key, double *out, int *n)
{
    char head[128];
    snprintf(head, sizeof head, "\n%s %s ", cfg, key);
    const char *at = strstr(table, head);
    if (!at)
        return false;
    at += strlen(head);
    *n = 0;
    while (*at && *at != '\n') {
        char *end;
        out[(*n)++] = strtod(at, &end);
        if (end == at)
            return false;
        at = end;
    }
    return true;
}

static void check_against_table(const char *table, const config *c, kiln_target target)
{
    kiln_graph *g = model(c);
    kiln_module *m = NULL;
    kiln_compile_opts o = {.target = target};
    assert_int_equal(kiln_compile(g, &o, &m), KILN_OK);
    double want[32];
    int n = 0;
    assert_true(table_row(table, c->name, "loss", want, &n));
    assert_int_equal(n, c->runs);
    for (int r = 0; r < c->runs; r++) {
        if (strcmp(c->name, "adam_lr_change") == 0 && r == 2)
            assert_int_equal(kiln_module_set_scalar(m, "train.lr", 0.05), KILN_OK);
        set_batch(m, c, r % 3);
        assert_int_equal(kiln_module_run(m, "train"), KILN_OK);
        double loss;
        assert_int_equal(kiln_module_get_scalar(m, "train.loss", &loss), KILN_OK);
        if (!close_f32(loss, want[r]))
            fail_msg("%s run %d: loss %.9g, PyTorch %.9g", c->name, r, loss, want[r]);
    }
    /* every param and state tensor the table has, and no state it lacks */
    static const char *const suffix[] = {"", ".momentum_buffer", ".exp_avg", ".exp_avg_sq"};
    for (int i = 0; i < 4; i++)
        for (int s = 0; s < 4; s++) {
            char key[64];
            snprintf(key, sizeof key, "%s%s", params[i].name, suffix[s]);
            float got[15];
            bool in_table = table_row(table, c->name, key, want, &n);
            kiln_status st = kiln_module_get(m, key, got, sizeof(float) * (size_t)n);
            if (!in_table) {
                assert_int_equal(kiln_module_get(m, key, got, sizeof(float)), KILN_ERR_NOT_FOUND);
                continue;
            }
            assert_int_equal(st, KILN_OK);
            for (int j = 0; j < n; j++)
                if (!close_f32((double)got[j], want[j]))
                    fail_msg("%s: %s[%d] = %.9g, PyTorch %.9g", c->name, key, j, (double)got[j],
                             want[j]);
        }
    double step;
    assert_true(table_row(table, c->name, "train.step", want, &n));
    assert_int_equal(kiln_module_get_scalar(m, "train.step", &step), KILN_OK);
    assert_true(step == want[0]);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static char *load_table(void)
{
    size_t len = 0;
    char *t = ku_read_file(KILN_SOURCE_DIR "/tests/data/optim_table.txt", &len);
    assert_non_null(t);
    return t;
}

static void matches_pytorch(kiln_target target)
{
    char *table = load_table();
    for (int i = 0; i < NCONFIGS; i++) {
        config c = configs(i);
        check_against_table(table, &c, target);
    }
    free(table);
}

static void test_matches_pytorch_interp(void **state)
{
    (void)state;
    matches_pytorch(KILN_TARGET_INTERP);
}

static void test_matches_pytorch_c(void **state)
{
    (void)state;
    matches_pytorch(KILN_TARGET_C);
}

/* Every param and state tensor of the model's module, as bytes. */
static size_t module_state(kiln_module *m, unsigned char *out)
{
    static const char *const suffix[] = {"", ".exp_avg", ".exp_avg_sq"};
    size_t at = 0;
    for (int i = 0; i < 4; i++)
        for (int s = 0; s < 3; s++) {
            char key[64];
            snprintf(key, sizeof key, "%s%s", params[i].name, suffix[s]);
            size_t n = sizeof(float) *
                       (size_t)(params[i].dims[0] * (params[i].rank == 2 ? params[i].dims[1] : 1));
            assert_int_equal(kiln_module_get(m, key, out + at, n), KILN_OK);
            at += n;
        }
    float step;
    assert_int_equal(kiln_module_get(m, "train.step", &step, sizeof step), KILN_OK);
    memcpy(out + at, &step, sizeof step);
    return at + sizeof step;
}

/* Training resumes bit for bit from a checkpoint: 3 Adam steps, save, 2 more;
 * a fresh module (of either target) that loads the checkpoint and runs the
 * same 2 steps ends with identical params, state and step count. */
static void test_resume_from_checkpoint(void **state)
{
    (void)state;
    config c = configs(4); /* adam */
    char path[] = "/tmp/kiln-optim-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    static const kiln_target targets[] = {KILN_TARGET_INTERP, KILN_TARGET_C};
    for (int t = 0; t < 2; t++) {
        kiln_graph *g = model(&c);
        kiln_module *a = ku_compile_for(g, targets[t]);
        for (int r = 0; r < 3; r++) {
            set_batch(a, &c, r);
            assert_int_equal(kiln_module_run(a, "train"), KILN_OK);
        }
        assert_int_equal(kiln_module_save(a, path), KILN_OK);
        for (int r = 3; r < 5; r++) {
            set_batch(a, &c, r % 3);
            assert_int_equal(kiln_module_run(a, "train"), KILN_OK);
        }
        kiln_module *b = ku_compile_for(g, targets[1 - t]);
        kiln_module *b2 = ku_compile_for(g, targets[t]);
        assert_int_equal(kiln_module_load(b2, path), KILN_OK);
        assert_int_equal(kiln_module_load(b, path), KILN_OK);
        for (int r = 3; r < 5; r++) {
            set_batch(b2, &c, r % 3);
            assert_int_equal(kiln_module_run(b2, "train"), KILN_OK);
            set_batch(b, &c, r % 3);
            assert_int_equal(kiln_module_run(b, "train"), KILN_OK);
        }
        static unsigned char sa[4096], sb[4096], sc[4096];
        size_t n = module_state(a, sa);
        assert_int_equal(module_state(b2, sb), n);
        assert_memory_equal(sa, sb, n); /* the same target: bit for bit */
        assert_int_equal(module_state(b, sc), n);
        const float *fa = (const float *)sa, *fc = (const float *)sc;
        for (size_t i = 0; i < n / sizeof(float); i++) /* the other target: within tolerance */
            if (!close_f32((double)fc[i], (double)fa[i]))
                fail_msg("state[%zu]: %.9g after resuming on the other target, %.9g", i,
                         (double)fc[i], (double)fa[i]);
        kiln_module_free(a);
        kiln_module_free(b);
        kiln_module_free(b2);
        kiln_graph_free(g);
    }
    close(fd);
    unlink(path);
}

/* The entry's interface: the loss output, the lr and step scalars, and the
 * module names of DESIGN.md; a frozen (detached) param is not updated. */
static void test_names_and_frozen_params(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2), kiln_init_const(1));
    kiln_tensor *frozen = kiln_param(g, "frozen", KILN_F32, KILN_SHAPE(2), kiln_init_const(3));
    kiln_tensor *unused = kiln_param(g, "unused", KILN_F32, KILN_SHAPE(2), kiln_init_const(5));
    kiln_tensor *count = kiln_param(g, "count", KILN_I64, KILN_SHAPE(2), kiln_init_zeros());
    (void)unused;
    (void)count;
    kiln_tensor *loss = kiln_sum(g, kiln_mul(g, w, kiln_detach(g, frozen)), KILN_ALL, false);
    assert_int_equal(kiln_train_step(g, "fit", loss, kiln_sgd(0.5, 0, 0)), KILN_OK);
    kiln_module *m = NULL;
    assert_int_equal(kiln_compile(g, NULL, &m), KILN_OK);
    double lr, step, l;
    assert_int_equal(kiln_module_get_scalar(m, "fit.lr", &lr), KILN_OK);
    assert_true(lr == 0.5);
    assert_int_equal(kiln_module_run(m, "fit"), KILN_OK);
    assert_int_equal(kiln_module_get_scalar(m, "fit.loss", &l), KILN_OK);
    assert_true(l == 6);
    assert_int_equal(kiln_module_set_scalar(m, "fit.lr", 0.25), KILN_OK);
    assert_int_equal(kiln_module_run(m, "fit"), KILN_OK);
    assert_int_equal(kiln_module_get_scalar(m, "fit.step", &step), KILN_OK);
    assert_true(step == 2);
    float wv[2], fv[2], uv[2];
    assert_int_equal(kiln_module_get(m, "w", wv, sizeof wv), KILN_OK);
    assert_int_equal(kiln_module_get(m, "frozen", fv, sizeof fv), KILN_OK);
    assert_int_equal(kiln_module_get(m, "unused", uv, sizeof uv), KILN_OK);
    assert_true(wv[0] == 1 - 0.5f * 3 - 0.25f * 3 && wv[1] == wv[0]); /* dL/dw = frozen = 3 */
    assert_true(fv[0] == 3 && uv[0] == 5);
    /* no state for plain SGD; the step entry's outputs are readable */
    assert_int_equal(kiln_module_get(m, "w.momentum_buffer", wv, sizeof wv), KILN_ERR_NOT_FOUND);
    assert_int_equal(kiln_module_get(m, "fit.new.w", wv, sizeof wv), KILN_OK);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void expect_error(kiln_optim o, kiln_status want, const char *needle)
{
    kiln_graph *g = ku_graph_new();
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2), kiln_init_const(1));
    kiln_tensor *loss = kiln_sum(g, kiln_square(g, w), KILN_ALL, false);
    assert_int_equal(kiln_train_step(g, "train", loss, o), want);
    assert_graph_error(g, want, needle);
    kiln_graph_free(g);
}

/* "<name>.grad_norm" is the total 2-norm clip_grad_norm_ returns: for loss
 * sum(w1^2) + sum(w2^2) the gradients are 2 w, so sqrt(4 (|w1|^2 + |w2|^2));
 * after the step each param moved by lr * the clipped gradient. */
static void test_grad_norm_output(void **state)
{
    (void)state;
    kiln_graph *g = ku_graph_new();
    kiln_tensor *w1 = kiln_param(g, "w1", KILN_F32, KILN_SHAPE(2), kiln_init_const(1));
    kiln_tensor *w2 = kiln_param(g, "w2", KILN_F64, KILN_SHAPE(3), kiln_init_const(2));
    kiln_tensor *loss =
        kiln_add(g, kiln_sum(g, kiln_square(g, w1), KILN_ALL, false),
                 kiln_cast(g, kiln_sum(g, kiln_square(g, w2), KILN_ALL, false), KILN_F32));
    kiln_optim o = kiln_sgd(0.5, 0, 0);
    o.max_grad_norm = 1;
    assert_int_equal(kiln_train_step(g, "train", loss, o), KILN_OK);
    kiln_module *m = ku_compile_for(g, KILN_TARGET_C);
    assert_int_equal(kiln_module_run(m, "train"), KILN_OK);
    double norm, total = sqrt(4.0 * (2 * 1 + 3 * 4)); /* 2 |w| over both params */
    assert_int_equal(kiln_module_get_scalar(m, "train.grad_norm", &norm), KILN_OK);
    assert_true(fabs(norm - total) < 1e-12);
    double coef = 1 / (total + 1e-6), w2v[3];
    float w1v[2];
    assert_int_equal(kiln_module_get(m, "w1", w1v, sizeof w1v), KILN_OK);
    assert_int_equal(kiln_module_get(m, "w2", w2v, sizeof w2v), KILN_OK);
    assert_true(fabs((double)w1v[0] - (1 - 0.5 * 2 * coef)) < 1e-6);
    assert_true(fabs(w2v[2] - (2 - 0.5 * 4 * coef)) < 1e-12);
    kiln_module_free(m);
    kiln_graph_free(g);
}

static void test_hyperparameter_errors(void **state)
{
    (void)state;
    expect_error(kiln_sgd(-0.1, 0, 0), KILN_ERR_INVALID,
                 "kiln_train_step: Invalid learning rate: -0.1");
    expect_error(kiln_sgd((double)NAN, 0, 0), KILN_ERR_INVALID, "Invalid learning rate: nan");
    expect_error(kiln_sgd(0.1, -1, 0), KILN_ERR_INVALID, "Invalid momentum value: -1");
    expect_error(kiln_sgd(0.1, 0, -0.5), KILN_ERR_INVALID, "Invalid weight_decay value: -0.5");
    expect_error(sgd_full(0.1, 0, 0, 0, true), KILN_ERR_INVALID,
                 "Nesterov momentum requires a momentum and zero dampening");
    expect_error(sgd_full(0.1, 0.9, 0.1, 0, true), KILN_ERR_INVALID,
                 "Nesterov momentum requires a momentum and zero dampening");
    expect_error(kiln_adam(0.1, 1.0, 0.999, 1e-8), KILN_ERR_INVALID,
                 "Invalid beta parameter at index 0: 1");
    expect_error(kiln_adam(0.1, 0.9, -0.1, 1e-8), KILN_ERR_INVALID,
                 "Invalid beta parameter at index 1: -0.1");
    expect_error(kiln_adamw(0.1, 0.9, 0.999, -1e-8, 0), KILN_ERR_INVALID,
                 "Invalid epsilon value: -1e-08");
    expect_error(kiln_adamw(0.1, 0.9, 0.999, 1e-8, -1), KILN_ERR_INVALID,
                 "Invalid weight_decay value: -1");
    expect_error(with_accumulate(kiln_sgd(0.1, 0, 0), -2), KILN_ERR_INVALID,
                 "accumulate must be 0 or more micro-batches (got -2)");
    kiln_optim clip = kiln_sgd(0.1, 0, 0);
    clip.max_grad_norm = -1;
    expect_error(clip, KILN_ERR_INVALID,
                 "kiln_train_step: max_grad_norm must be 0 (no clipping) or more (got -1)");
    static const char *const typo[] = {"w", "bais", NULL};
    kiln_optim groups = kiln_adamw(0.1, 0.9, 0.999, 1e-8, 0.1);
    groups.no_decay = typo;
    expect_error(groups, KILN_ERR_NOT_FOUND,
                 "kiln_train_step: no_decay names 'bais', which is not a param of the graph");
    kiln_optim bad = kiln_sgd(0.1, 0, 0);
    bad.kind = (kiln_optim_kind)7;
    expect_error(bad, KILN_ERR_INVALID, "unknown optimizer kind 7");
}

/* A graph with param w (2) and the tensors the error cases pass as the loss. */
typedef struct {
    kiln_graph *g;
    kiln_tensor *loss, *sq, *ints, *constant;
} small;

static small small_graph(void)
{
    small s = {.g = ku_graph_new()};
    kiln_tensor *w = kiln_param(s.g, "w", KILN_F32, KILN_SHAPE(2), kiln_init_const(1));
    s.sq = kiln_square(s.g, w);
    s.loss = kiln_sum(s.g, s.sq, KILN_ALL, false);
    s.ints = kiln_sum(s.g, kiln_cast(s.g, w, KILN_I64), KILN_ALL, false);
    s.constant = kiln_sum(s.g, kiln_detach(s.g, s.sq), KILN_ALL, false);
    ku_assert_ok(s.g);
    return s;
}

/* kiln_train_step(g, name, loss) fails with want and a message containing
 * needle (errors are sticky: one fresh graph per case). */
#define EXPECT_STEP_ERROR(name, which, want, needle)                                               \
    do {                                                                                           \
        small s_ = small_graph();                                                                  \
        assert_int_equal(kiln_train_step(s_.g, (name), (which), kiln_sgd(0.1, 0, 0)), (want));     \
        assert_graph_error(s_.g, (want), (needle));                                                \
        kiln_graph_free(s_.g);                                                                     \
    } while (0)

static void test_graph_errors(void **state)
{
    (void)state;
    assert_int_equal(kiln_train_step(NULL, "t", NULL, kiln_sgd(0.1, 0, 0)), KILN_ERR_INVALID);
    EXPECT_STEP_ERROR("", s_.loss, KILN_ERR_INVALID, "the entry name must be a non-empty string");
    EXPECT_STEP_ERROR(NULL, s_.loss, KILN_ERR_INVALID, "the entry name must be a non-empty string");
    EXPECT_STEP_ERROR("t", NULL, KILN_ERR_INVALID, "loss must be a tensor of this graph");
    kiln_graph *other = ku_graph_new();
    EXPECT_STEP_ERROR("t", kiln_scalar(other, 1), KILN_ERR_INVALID,
                      "loss must be a tensor of this graph");
    kiln_graph_free(other);
    EXPECT_STEP_ERROR("t", s_.sq, KILN_ERR_SHAPE,
                      "kiln_train_step: grad can be implicitly created only for scalar outputs");
    EXPECT_STEP_ERROR("t", s_.ints, KILN_ERR_DTYPE,
                      "kiln_train_step: only Tensors of floating point dtype can require "
                      "gradients");
    EXPECT_STEP_ERROR("t", s_.constant, KILN_ERR_INVALID,
                      "kiln_train_step: the loss depends on no param: optimizer got an empty "
                      "parameter list");
    /* the entry name, and a second step's state names, are taken */
    small s = small_graph();
    assert_int_equal(kiln_train_step(s.g, "t", s.loss, kiln_sgd(0.1, 0.9, 0)), KILN_OK);
    assert_int_equal(kiln_train_step(s.g, "t", s.loss, kiln_sgd(0.1, 0, 0)), KILN_ERR_INVALID);
    assert_graph_error(s.g, KILN_ERR_INVALID, "an entry named 't' already exists");
    kiln_graph_free(s.g);
    s = small_graph();
    assert_int_equal(kiln_train_step(s.g, "t", s.loss, kiln_sgd(0.1, 0.9, 0)), KILN_OK);
    assert_int_equal(kiln_train_step(s.g, "u", s.loss, kiln_sgd(0.1, 0.9, 0)), KILN_ERR_INVALID);
    assert_graph_error(s.g, KILN_ERR_INVALID, "'w.momentum_buffer' is already used");
    kiln_graph_free(s.g);
}

/* Every allocation failure inside kiln_train_step is KILN_ERR_NOMEM. */
static void test_out_of_memory(void **state)
{
    (void)state;
    for (int fail = 0;; fail++) {
        kiln_graph *g = ku_graph_new();
        kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(3), kiln_init_const(1));
        kiln_tensor *loss = kiln_sum(g, kiln_square(g, w), KILN_ALL, false);
        kiln_set_allocator(&ku_failing_allocator);
        ku_fail_after = fail;
        kiln_status s =
            kiln_train_step(g, "t", loss, with_accumulate(kiln_adam(0.1, 0.9, 0.99, 1e-8), 2));
        ku_fail_after = -1;
        kiln_set_allocator(NULL);
        if (s == KILN_OK) {
            kiln_graph_free(g);
            assert_true(fail > 5);
            break;
        }
        assert_int_equal(s, KILN_ERR_NOMEM);
        kiln_graph_free(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_pytorch_interp),
        cmocka_unit_test(test_matches_pytorch_c),
        cmocka_unit_test(test_resume_from_checkpoint),
        cmocka_unit_test(test_names_and_frozen_params),
        cmocka_unit_test(test_grad_norm_output),
        cmocka_unit_test(test_hyperparameter_errors),
        cmocka_unit_test(test_graph_errors),
        cmocka_unit_test(test_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
