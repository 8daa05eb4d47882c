/*
 * cnn.c - trains a small CNN on Fashion-MNIST: PyTorch's
 *   nn.Conv2d(1, C, 3, padding=1) -> ReLU -> MaxPool2d(2) ->
 *   nn.Conv2d(C, 2C, 3, padding=1) -> ReLU -> MaxPool2d(2) -> Flatten ->
 *   nn.Linear(2C * 7 * 7, 10), CrossEntropyLoss, Adam
 * as one compiled Kiln step.
 *
 *   cnn [--epochs N] [--channels C] [--batch B] [--lr LR] [--gamma G] [--data DIR]
 *       [--checkpoint FILE] [--resume] [--limit N] [--threads T]
 *       [--target c|interp|cuda | --device cpu|cuda]
 *
 * The network and its train step are samples/cnn_model.h's (bench/ times the
 * same step); the loop, data, checkpoints and --resume are samples/fmnist.h's,
 * shared with samples/mlp.c. `make demo-cnn` runs it.
 */
#include "cnn_model.h"
#include "fmnist.h"

/* "train" runs one Adam step on a batch, "eval" counts correct predictions
 * on FM_EVAL_BATCH test images with the same params. */
static kiln_graph *build(const fm_options *o)
{
    kiln_graph *g = kiln_graph_new();
    kiln_graph_seed(g, 42);
    kiln_tensor *p[CNN_NPARAMS];
    cnn_train_step(g, p, o->width, o->batch, o->lr, o->data_parallel);

    kiln_tensor *xt = kiln_input(g, "test_x", KILN_F32, KILN_SHAPE(FM_EVAL_BATCH, 1, 28, 28));
    kiln_tensor *yt = kiln_input(g, "test_y", KILN_I64, KILN_SHAPE(FM_EVAL_BATCH));
    kiln_tensor *pred = kiln_argmax(g, cnn_forward(g, xt, p, FM_EVAL_BATCH), 1, false);
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
