/*
 * mlp.c - trains an MLP on Fashion-MNIST: the PyTorch training loop
 * (nn.Linear + ReLU + CrossEntropyLoss + Adam) as one compiled Kiln step.
 *
 *   mlp [--epochs N] [--hidden H] [--batch B] [--lr LR] [--gamma G] [--data DIR]
 *       [--checkpoint FILE] [--resume] [--limit N] [--threads T]
 *       [--target c|interp|cuda | --device cpu|cuda]
 *
 * The loop, data, checkpoints and --resume are samples/fmnist.h's, shared
 * with samples/cnn.c; this file is the model.
 */
#include "fmnist.h"

/* Two nn.Linear layers with ReLU, cross-entropy, Adam; "train" runs one step
 * on a batch, "eval" counts correct predictions on FM_EVAL_BATCH test images
 * with the same params. */
static kiln_graph *build(const fm_options *o)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 42);
    kiln_tensor *w1 = kiln_param(g, "fc1.weight", KILN_F32, KILN_SHAPE(o->width, FM_PIXELS),
                                 kiln_init_kaiming_uniform());
    kiln_tensor *b1 =
        kiln_param(g, "fc1.bias", KILN_F32, KILN_SHAPE(o->width), kiln_init_kaiming_uniform());
    kiln_tensor *w2 = kiln_param(g, "fc2.weight", KILN_F32, KILN_SHAPE(FM_CLASSES, o->width),
                                 kiln_init_kaiming_uniform());
    kiln_tensor *b2 =
        kiln_param(g, "fc2.bias", KILN_F32, KILN_SHAPE(FM_CLASSES), kiln_init_kaiming_uniform());

    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(o->batch, FM_PIXELS));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(o->batch));
    kiln_tensor *h = kiln_relu(g, kiln_linear(g, x, w1, b1));
    kiln_tensor *loss = kiln_cross_entropy(g, kiln_linear(g, h, w2, b2), y);
    kiln_optim adam = kiln_adam(o->lr, 0.9, 0.999, 1e-8);
    adam.data_parallel = o->data_parallel;
    kiln_train_step(g, "train", loss, adam);

    kiln_tensor *xt = kiln_input(g, "test_x", KILN_F32, KILN_SHAPE(FM_EVAL_BATCH, FM_PIXELS));
    kiln_tensor *yt = kiln_input(g, "test_y", KILN_I64, KILN_SHAPE(FM_EVAL_BATCH));
    kiln_tensor *ht = kiln_relu(g, kiln_linear(g, xt, w1, b1));
    kiln_tensor *pred = kiln_argmax(g, kiln_linear(g, ht, w2, b2), 1, false);
    kiln_tensor *correct = kiln_sum(g, kiln_eq(g, pred, yt), KILN_ALL, false);
    kiln_entry(g, "eval", 1, &correct, (const char *[]){"eval.correct"});
    return g;
}

static void describe(const fm_options *o, char *out, size_t cap)
{
    snprintf(out, cap, "MLP 784-%d-10, ReLU", o->width);
}

int main(int argc, char **argv)
{
    static const char *const params[] = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", NULL};
    const fm_model model = {.prog = "mlp",
                            .width_flag = "--hidden",
                            .defaults = {.epochs = 8,
                                         .width = 256,
                                         .batch = 128,
                                         .lr = 2e-3,
                                         .gamma = 0.8,
                                         .data = "/usr/share/datasets/fashion-mnist",
                                         .checkpoint = "mlp.safetensors",
                                         .target = KILN_TARGET_C},
                            .build = build,
                            .describe = describe,
                            .params = params};
    return fm_main(argc, argv, &model);
}
