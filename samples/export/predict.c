/*
 * predict.c - the second half of the export sample: a program that knows
 * nothing of Kiln. It is built with only the exported header and library,
 *
 *     cc predict.c -I DIR DIR/model.so -Wl,-rpath,DIR -o predict
 *
 * loads the checkpoint train.c saved and prints the predictions train.c
 * printed, to the last digit.
 *
 *   predict DIR
 */
#include "model.h"

#include <stdio.h>

enum { TEST = 8 };

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: predict DIR\n");
        return 2;
    }
    model_state *s = model_create();
    if (!s) {
        fprintf(stderr, "predict: out of memory\n");
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
    float q[TEST * 2], y[TEST];
    for (int i = 0; i < TEST; i++) {
        q[2 * i] = -1.25f + 0.375f * (float)i; /* exact in f32: no rounding to differ */
        q[2 * i + 1] = 0.75f - 0.25f * (float)i;
    }
    if (model_load(s, path) != 0 || model_predict(s, q, y) != 0) {
        fprintf(stderr, "predict: %s\n", model_error(s));
        model_free(s);
        return 1;
    }
    printf("predictions (model.so):\n");
    for (int i = 0; i < TEST; i++)
        printf("f(%+.3f, %+.3f) = %+.7f\n", (double)q[2 * i], (double)q[2 * i + 1], (double)y[i]);
    model_free(s);
    return 0;
}
