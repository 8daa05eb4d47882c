/*
 * train.c - the first half of the export sample: train a small regression
 * MLP with Kiln's JIT, then ship it.
 *
 * The model learns y = sin(2 x0) + x1^2 / 2 on a fixed synthetic set (the
 * same 256 points every run), 64-32-1 tanh MLP, Adam, mean squared error.
 * After training it writes into DIR:
 *   model.so, model.h (+ sources)  kiln_export of the graph ("model")
 *   model.safetensors             the trained params (kiln_module_save)
 * and prints the model's predictions on eight test points. predict.c, built
 * with nothing but model.h and model.so, loads the checkpoint and prints the
 * same lines.
 *
 *   export_train DIR [--steps N]
 */
#include <kiln.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 256, HID = 32, TEST = 8 };

static int fail(const char *what, const char *why)
{
    fprintf(stderr, "export_train: %s: %s\n", what, why);
    return 1;
}

/* Point i of the training set (deterministic: no RNG needed). */
static void point(int i, float *x0, float *x1, float *y)
{
    *x0 = -1.5f + 3.0f * (float)((i * 97) % N) / (float)N;
    *x1 = -1.0f + 2.0f * (float)((i * 61 + 13) % N) / (float)N;
    *y = sinf(2 * *x0) + *x1 * *x1 / 2;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: export_train DIR [--steps N]\n");
        return 2;
    }
    const char *dir = argv[1];
    int steps = argc > 3 && strcmp(argv[2], "--steps") == 0 ? atoi(argv[3]) : 1500;

    /* the graph: train on the whole set, predict on a batch of TEST points */
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 1);
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(N, 2));
    kiln_tensor *y = kiln_input(g, "y", KILN_F32, KILN_SHAPE(N, 1));
    kiln_tensor *w1 =
        kiln_param(g, "fc1.weight", KILN_F32, KILN_SHAPE(HID, 2), kiln_init_kaiming_uniform());
    kiln_tensor *b1 =
        kiln_param(g, "fc1.bias", KILN_F32, KILN_SHAPE(HID), kiln_init_kaiming_uniform());
    kiln_tensor *w2 =
        kiln_param(g, "fc2.weight", KILN_F32, KILN_SHAPE(1, HID), kiln_init_kaiming_uniform());
    kiln_tensor *b2 =
        kiln_param(g, "fc2.bias", KILN_F32, KILN_SHAPE(1), kiln_init_kaiming_uniform());
    kiln_tensor *pred = kiln_linear(g, kiln_tanh(g, kiln_linear(g, x, w1, b1)), w2, b2);
    kiln_train_step(g, "train", kiln_mse_loss(g, pred, y), kiln_adam(1e-2, 0.9, 0.999, 1e-8));
    kiln_tensor *q = kiln_input(g, "q", KILN_F32, KILN_SHAPE(TEST, 2));
    kiln_tensor *answer = kiln_linear(g, kiln_tanh(g, kiln_linear(g, q, w1, b1)), w2, b2);
    kiln_entry(g, "predict", 1, &answer, (const char *const[]){"y_hat"});

    kiln_module *m = NULL;
    if (kiln_compile(g, NULL, &m) != KILN_OK)
        return fail("kiln_compile", kiln_graph_error(g));
    static float xs[N * 2], ys[N];
    for (int i = 0; i < N; i++)
        point(i, &xs[2 * i], &xs[2 * i + 1], &ys[i]);
    if (kiln_module_set(m, "x", xs, sizeof xs) != KILN_OK ||
        kiln_module_set(m, "y", ys, sizeof ys) != KILN_OK)
        return fail("kiln_module_set", kiln_module_error(m));
    for (int s = 1; s <= steps; s++) {
        if (kiln_module_run(m, "train") != KILN_OK)
            return fail("train", kiln_module_error(m));
        if (s % 500 == 0) {
            double loss = 0;
            kiln_module_get_scalar(m, "train.loss", &loss);
            printf("step %4d  loss %.6f\n", s, loss);
        }
    }

    /* ship it: the graph as model.so + model.h, the trained params beside it */
    kiln_compile_opts o = {.name = "model"};
    if (kiln_export(g, &o, dir) != KILN_OK)
        return fail("kiln_export", kiln_graph_error(g));
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (kiln_module_save(m, path) != KILN_OK)
        return fail("kiln_module_save", kiln_module_error(m));

    float qs[TEST * 2], out[TEST];
    for (int i = 0; i < TEST; i++) {
        qs[2 * i] = -1.25f + 0.375f * (float)i; /* exact in f32: no rounding to differ */
        qs[2 * i + 1] = 0.75f - 0.25f * (float)i;
    }
    if (kiln_module_set(m, "q", qs, sizeof qs) != KILN_OK || kiln_module_run(m, "predict") ||
        kiln_module_get(m, "y_hat", out, sizeof out) != KILN_OK)
        return fail("predict", kiln_module_error(m));
    printf("predictions (JIT):\n");
    for (int i = 0; i < TEST; i++)
        printf("f(%+.3f, %+.3f) = %+.7f\n", (double)qs[2 * i], (double)qs[2 * i + 1],
               (double)out[i]);
    kiln_module_free(m);
    kiln_graph_free(g);
    return 0;
}
