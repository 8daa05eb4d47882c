/*
 * models.h - the models the benchmarks share (bench/cpu.c, bench/gpu.c), so
 * the CPU and GPU tables time the same graph; the CNN and the GPT are the
 * samples' own (samples/cnn_model.h, samples/gpt_model.h).
 */
#ifndef KILN_BENCH_MODELS_H
#define KILN_BENCH_MODELS_H

#include "../samples/cnn_model.h"
#include "../samples/gpt_model.h"

#include <kiln.h>
#include <stdio.h>

/* MLP 784-1024-1024-10 (params w0..w2, b0..b2) with a train step "train"
 * of opt over inputs x [batch, 784] and y [batch] (cross-entropy). */
static inline kiln_graph *bench_mlp_graph_with(int64_t batch, kiln_optim opt)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(batch, 784));
    kiln_tensor *y = kiln_input(g, "y", KILN_I64, KILN_SHAPE(batch));
    const int64_t sizes[] = {784, 1024, 1024, 10};
    kiln_tensor *h = x;
    for (int l = 0; l < 3; l++) {
        char wn[16], bn[16];
        snprintf(wn, sizeof wn, "w%d", l);
        snprintf(bn, sizeof bn, "b%d", l);
        kiln_tensor *w = kiln_param(g, wn, KILN_F32, KILN_SHAPE(sizes[l + 1], sizes[l]),
                                    kiln_init_kaiming_uniform());
        kiln_tensor *b =
            kiln_param(g, bn, KILN_F32, KILN_SHAPE(sizes[l + 1]), kiln_init_kaiming_uniform());
        h = kiln_linear(g, h, w, b);
        if (l < 2)
            h = kiln_relu(g, h);
    }
    kiln_train_step(g, "train", kiln_cross_entropy(g, h, y), opt);
    return g;
}

/* The same with Adam (lr 1e-3). */
static inline kiln_graph *bench_mlp_graph(int64_t batch)
{
    return bench_mlp_graph_with(batch, kiln_adam(1e-3, 0.9, 0.999, 1e-8));
}

#endif
