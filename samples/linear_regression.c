/*
 * linear_regression.c - the training pipeline of the PyTorch tutorial, Y = 2X
 * with X = [1, 2, 3, 4], twice:
 *   1. gradient descent by hand: w = 0, the tutorial's loss and gradient
 *      formulas, w updated in place by kiln_assign inside the compiled step;
 *   2. nn.Linear + MSELoss + SGD: kiln_linear, kiln_mse_loss and
 *      kiln_train_step with kiln_sgd(0.01, 0, 0).
 * It prints what the tutorial's code prints, in f32; tests/ref/
 * linear_regression.py makes the expected output with PyTorch, starting
 * nn.Linear from the params Kiln draws here (kaiming uniform, graph seed 0).
 *
 *   linear_regression [--target c|interp] [--print-init]
 */
#include <kiln.h>
#include <stdio.h>
#include <string.h>

static bool ok(kiln_status s, const char *what, kiln_module *m)
{
    if (s != KILN_OK)
        fprintf(stderr, "linear_regression: %s: %s\n", what, kiln_module_error(m));
    return s == KILN_OK;
}

static double scalar(kiln_module *m, const char *name)
{
    double v = 0;
    ok(kiln_module_get_scalar(m, name, &v), name, m);
    return v;
}

/* Part 1: w = w - lr * dw with dw = dot(2x, y_pred - y), as the tutorial. */
static int manual(kiln_compile_opts *o)
{
    static const float xs[4] = {1, 2, 3, 4}, ys[4] = {2, 4, 6, 8};
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(4), xs);
    kiln_tensor *y = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(4), ys);
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, 0, NULL, kiln_init_zeros());
    kiln_tensor *y_pred = kiln_mul(g, w, x);
    kiln_tensor *err = kiln_sub(g, y_pred, y);
    kiln_tensor *loss = kiln_mean(g, kiln_square(g, err), KILN_ALL, false);
    kiln_tensor *dw =
        kiln_sum(g, kiln_mul(g, kiln_mul(g, kiln_scalar(g, 2), x), err), KILN_ALL, false);
    kiln_tensor *step[2] = {
        loss, kiln_assign(g, w, kiln_sub(g, w, kiln_mul(g, kiln_scalar(g, 0.01), dw)))};
    kiln_entry(g, "step", 2, step, (const char *[]){"loss", "w.new"});
    kiln_tensor *f5 = kiln_mul(g, w, kiln_scalar(g, 5));
    kiln_entry(g, "forward5", 1, &f5, (const char *[]){"f5"});
    kiln_module *m = NULL;
    if (kiln_graph_status(g) != KILN_OK || kiln_compile(g, o, &m) != KILN_OK) {
        fprintf(stderr, "linear_regression: %s\n", kiln_graph_error(g));
        return 1;
    }
    int rc = ok(kiln_module_run(m, "forward5"), "forward5", m) ? 0 : 1;
    printf("Prediction before training: f(5) = %.3f\n", scalar(m, "f5"));
    for (int epoch = 0; epoch < 20 && rc == 0; epoch++) {
        rc = ok(kiln_module_run(m, "step"), "step", m) ? 0 : 1;
        if (epoch % 2 == 0)
            printf("Epoch %d: w = %.3f, loss = %.8f\n", epoch + 1, scalar(m, "w"),
                   scalar(m, "loss"));
    }
    rc = rc || !ok(kiln_module_run(m, "forward5"), "forward5", m);
    printf("Prediction after training: f(5) = %.3f\n", scalar(m, "f5"));
    kiln_module_free(m);
    kiln_graph_free(g);
    return rc;
}

/* Part 2: nn.Linear(1, 1), MSELoss, SGD(lr=0.01), 100 epochs. */
static int with_linear(kiln_compile_opts *o, bool print_init)
{
    static const float xs[4] = {1, 2, 3, 4}, ys[4] = {2, 4, 6, 8}, x_test[1] = {5};
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(4, 1), xs);
    kiln_tensor *y = kiln_tensor_from(g, KILN_F32, KILN_SHAPE(4, 1), ys);
    int64_t n_samples = kiln_tensor_dim(x, 0), n_features = kiln_tensor_dim(x, 1);
    printf("Number of samples: %lld, number of features: %lld\n", (long long)n_samples,
           (long long)n_features);
    kiln_tensor *w = kiln_param(g, "weight", KILN_F32, KILN_SHAPE(n_features, n_features),
                                kiln_init_kaiming_uniform());
    kiln_tensor *b =
        kiln_param(g, "bias", KILN_F32, KILN_SHAPE(n_features), kiln_init_kaiming_uniform());
    kiln_tensor *loss = kiln_mse_loss(g, kiln_linear(g, x, w, b), y);
    kiln_train_step(g, "train", loss, kiln_sgd(0.01, 0, 0));
    kiln_tensor *pred = kiln_linear(g, kiln_tensor_from(g, KILN_F32, KILN_SHAPE(1), x_test), w, b);
    kiln_entry(g, "predict", 1, &pred, (const char *[]){"f5"});
    kiln_module *m = NULL;
    if (kiln_graph_status(g) != KILN_OK || kiln_compile(g, o, &m) != KILN_OK) {
        fprintf(stderr, "linear_regression: %s\n", kiln_graph_error(g));
        return 1;
    }
    if (print_init) /* what tests/ref/linear_regression.py starts from */
        printf("init weight %.9g bias %.9g\n", scalar(m, "weight"), scalar(m, "bias"));
    int rc = ok(kiln_module_run(m, "predict"), "predict", m) ? 0 : 1;
    printf("Prediction before training: f(5) = %.3f\n", scalar(m, "f5"));
    for (int epoch = 0; epoch < 100 && rc == 0; epoch++) {
        rc = ok(kiln_module_run(m, "train"), "train", m) ? 0 : 1;
        if (epoch % 10 == 0)
            printf("Epoch %d: w = %.3f, loss = %.8f\n", epoch + 1, scalar(m, "weight"),
                   scalar(m, "train.loss"));
    }
    rc = rc || !ok(kiln_module_run(m, "predict"), "predict", m);
    printf("Prediction after training: f(5) = %.3f\n", scalar(m, "f5"));
    kiln_module_free(m);
    kiln_graph_free(g);
    return rc;
}

int main(int argc, char **argv)
{
    kiln_compile_opts o = {.target = KILN_TARGET_C};
    bool print_init = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--target") == 0 && i + 1 < argc) {
            i++;
            o.target = strcmp(argv[i], "interp") == 0 ? KILN_TARGET_INTERP : KILN_TARGET_C;
        } else if (strcmp(argv[i], "--print-init") == 0) {
            print_init = true;
        } else {
            fprintf(stderr, "usage: linear_regression [--target c|interp] [--print-init]\n");
            return 2;
        }
    }
    if (manual(&o) != 0)
        return 1;
    printf("\n");
    return with_linear(&o, print_init);
}
