/*
 * args.h - what the samples' command lines share: --target c|interp|cuda.
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

#endif
