/*
 * cnn.c - trains a small CNN on Fashion-MNIST: PyTorch's
 *   nn.Conv2d(1, C, 3, padding=1) -> ReLU -> MaxPool2d(2) ->
 *   nn.Conv2d(C, 2C, 3, padding=1) -> ReLU -> MaxPool2d(2) -> Flatten ->
 *   nn.Linear(2C * 7 * 7, 10), CrossEntropyLoss, Adam
 * as one compiled Kiln step.
 *
 *   cnn [--epochs N] [--channels C] [--batch B] [--lr LR] [--gamma G] [--data DIR]
 *       [--checkpoint FILE] [--resume] [--limit N] [--threads T]
 *       [--target c|interp|cuda]
 *
 * The loop, data, checkpoints and --resume are samples/fmnist.h's, shared
 * with samples/mlp.c; this file is the model. `make demo-cnn` runs it.
 */
#include "fmnist.h"

/* The network over images x [n, 1, 28, 28] with the given params. */
static kiln_tensor *forward(kiln_graph *g, kiln_tensor *x, kiln_tensor *const *p, int64_t n)
{
    kiln_conv_opts same = {.padding = {1, 1}}; /* 3x3, padding 1: the size stays */
    kiln_tensor *h = kiln_relu(g, kiln_conv2d(g, x, p[0], p[1], same));
    h = kiln_max_pool2d(g, h, 2, 0, 0); /* 28 -> 14 */
    h = kiln_relu(g, kiln_conv2d(g, h, p[2], p[3], same));
    h = kiln_max_pool2d(g, h, 2, 0, 0); /* 14 -> 7 */
    h = kiln_reshape(g, h, 2, (const int64_t[]){n, kiln_tensor_dim(p[4], 1)});
    return kiln_linear(g, h, p[4], p[5]);
}

/* "train" runs one Adam step on a batch, "eval" counts correct predictions
 * on FM_EVAL_BATCH test images with the same params. */
static kiln_graph *build(const fm_options *o)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 42);
    int64_t c = o->width;
    kiln_init k = kiln_init_kaiming_uniform(); /* nn.Conv2d's and nn.Linear's */
    kiln_tensor *p[6] = {
        kiln_param(g, "conv1.weight", KILN_F32, KILN_SHAPE(c, 1, 3, 3), k),
        kiln_param(g, "conv1.bias", KILN_F32, KILN_SHAPE(c), k),
        kiln_param(g, "conv2.weight", KILN_F32, KILN_SHAPE(2 * c, c, 3, 3), k),
        kiln_param(g, "conv2.bias", KILN_F32, KILN_SHAPE(2 * c), k),
        kiln_param(g, "fc.weight", KILN_F32, KILN_SHAPE(FM_CLASSES, 2 * c * 7 * 7), k),
        kiln_param(g, "fc.bias", KILN_F32, KILN_SHAPE(FM_CLASSES), k),
    };
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(o->batch, 1, 28, 28));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(o->batch));
    kiln_tensor *loss = kiln_cross_entropy(g, forward(g, x, p, o->batch), y);
    kiln_train_step(g, "train", loss, kiln_adam(o->lr, 0.9, 0.999, 1e-8));

    kiln_tensor *xt = kiln_input(g, "test_x", KILN_F32, KILN_SHAPE(FM_EVAL_BATCH, 1, 28, 28));
    kiln_tensor *yt = kiln_input(g, "test_y", KILN_I64, KILN_SHAPE(FM_EVAL_BATCH));
    kiln_tensor *pred = kiln_argmax(g, forward(g, xt, p, FM_EVAL_BATCH), 1, false);
    kiln_tensor *correct = kiln_sum(g, kiln_eq(g, pred, yt), KILN_ALL, false);
    kiln_entry(g, "eval", 1, &correct, (const char *[]){"eval.correct"});
    return g;
}

static void describe(const fm_options *o, char *out, size_t cap)
{
    snprintf(out, cap, "CNN conv3x3(%d)-pool-conv3x3(%d)-pool-linear, ReLU", o->width,
             2 * o->width);
}

int main(int argc, char **argv)
{
    static const char *const params[] = {
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc.weight", "fc.bias", NULL};
    const fm_model model = {.prog = "cnn",
                            .width_flag = "--channels",
                            .defaults = {.epochs = 4,
                                         .width = 32,
                                         .batch = 64,
                                         .lr = 2e-3,
                                         .gamma = 0.7,
                                         .data = "/usr/share/datasets/fashion-mnist",
                                         .checkpoint = "cnn.safetensors",
                                         .target = KILN_TARGET_C},
                            .build = build,
                            .describe = describe,
                            .params = params};
    return fm_main(argc, argv, &model);
}
