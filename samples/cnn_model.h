/*
 * cnn_model.h - the CNN of samples/cnn.c and its Adam train step; bench/
 * times the same step (bench/models.h). PyTorch's
 *   nn.Conv2d(1, C, 3, padding=1) -> ReLU -> MaxPool2d(2) ->
 *   nn.Conv2d(C, 2C, 3, padding=1) -> ReLU -> MaxPool2d(2) -> Flatten ->
 *   nn.Linear(2C * 7 * 7, 10)
 * over 28 x 28 grey images.
 */
#ifndef CNN_MODEL_H
#define CNN_MODEL_H

#include <kiln.h>

enum { CNN_NPARAMS = 6, CNN_CLASSES = 10 };

/* The network over images x [n, 1, 28, 28] with the given params. */
static inline kiln_tensor *cnn_forward(kiln_graph *g, kiln_tensor *x, kiln_tensor *const *p,
                                       int64_t n)
{
    kiln_conv_opts same = {.padding = {1, 1}}; /* 3x3, padding 1: the size stays */
    kiln_tensor *h = kiln_relu(g, kiln_conv2d(g, x, p[0], p[1], same));
    h = kiln_max_pool2d(g, h, 2, 0, 0); /* 28 -> 14 */
    h = kiln_relu(g, kiln_conv2d(g, h, p[2], p[3], same));
    h = kiln_max_pool2d(g, h, 2, 0, 0); /* 14 -> 7 */
    h = kiln_reshape(g, h, 2, (const int64_t[]){n, kiln_tensor_dim(p[4], 1)});
    return kiln_linear(g, h, p[4], p[5]);
}

/* The params (nn.Conv2d's and nn.Linear's names and init) into p, inputs
 * "x" [batch, 1, 28, 28] and "y" [batch], and the entry "train": one Adam
 * step of the cross-entropy (averaged over the ranks when data_parallel). */
static inline void cnn_train_step(kiln_graph *g, kiln_tensor *p[CNN_NPARAMS], int64_t c,
                                  int64_t batch, double lr, bool data_parallel)
{
    kiln_init k = kiln_init_kaiming_uniform();
    p[0] = kiln_param(g, "conv1.weight", KILN_F32, KILN_SHAPE(c, 1, 3, 3), k);
    p[1] = kiln_param(g, "conv1.bias", KILN_F32, KILN_SHAPE(c), k);
    p[2] = kiln_param(g, "conv2.weight", KILN_F32, KILN_SHAPE(2 * c, c, 3, 3), k);
    p[3] = kiln_param(g, "conv2.bias", KILN_F32, KILN_SHAPE(2 * c), k);
    p[4] = kiln_param(g, "fc.weight", KILN_F32, KILN_SHAPE(CNN_CLASSES, 2 * c * 7 * 7), k);
    p[5] = kiln_param(g, "fc.bias", KILN_F32, KILN_SHAPE(CNN_CLASSES), k);
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(batch, 1, 28, 28));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(batch));
    kiln_tensor *loss = kiln_cross_entropy(g, cnn_forward(g, x, p, batch), y);
    kiln_optim adam = kiln_adam(lr, 0.9, 0.999, 1e-8);
    adam.data_parallel = data_parallel; /* samples/fmnist.h's --data-parallel */
    kiln_train_step(g, "train", loss, adam);
}

#endif /* CNN_MODEL_H */
