/*
 * args.h - what the samples' command lines share: --target c|interp|cuda, or
 * its PyTorch spelling --device cpu|cuda (cpu: the C target).
 */
#ifndef KILN_SAMPLES_ARGS_H
#define KILN_SAMPLES_ARGS_H

#include <kiln.h>
#include <stdbool.h>
#include <string.h>

/* The target a --target value names; false for any other word. */
static inline bool sample_target(const char *v, kiln_target *t)
{
    static const struct {
        const char *name;
        kiln_target t;
    } names[] = {{"c", KILN_TARGET_C}, {"interp", KILN_TARGET_INTERP}, {"cuda", KILN_TARGET_CUDA}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(v, names[i].name) == 0) {
            *t = names[i].t;
            return true;
        }
    return false;
}

/* Whether option a with value v names a target (--target c|interp|cuda,
 * --device cpu|cuda), into *t. */
static inline bool sample_target_arg(const char *a, const char *v, kiln_target *t)
{
    if (strcmp(a, "--device") == 0 && strcmp(v, "cpu") == 0) {
        *t = KILN_TARGET_C;
        return true;
    }
    if (strcmp(a, "--device") == 0)
        return strcmp(v, "cuda") == 0 && sample_target(v, t);
    return strcmp(a, "--target") == 0 && sample_target(v, t);
}

#endif
