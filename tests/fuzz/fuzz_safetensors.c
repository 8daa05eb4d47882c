/*
 * fuzz_safetensors.c - libFuzzer harness for kiln_module_load.
 *
 * The input is the checkpoint file (kept in a memfd), loaded into a module
 * whose params (w F32 [2, 3], b F64 [3], n I64 [], mask BOOL [4]) match the
 * seed corpus, so well-formed files get past the format checks. Any input
 * must load or fail with a format or mismatch status and a message, never
 * crash or leak (ASan/UBSan watch), and a failed load must change nothing.
 */
#include "runtime/rt.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static kiln_module *m;
static char path[64];
static int fd = -1;

static void setup(void)
{
    kiln_graph *g = kiln_graph_new();
    kiln_tensor *x = kiln_input(g, "x", KILN_F32, KILN_SHAPE(2, 3));
    kiln_tensor *w = kiln_param(g, "w", KILN_F32, KILN_SHAPE(2, 3), kiln_init_uniform(-1, 1));
    kiln_param(g, "b", KILN_F64, KILN_SHAPE(3), kiln_init_normal(0, 1));
    kiln_param(g, "n", KILN_I64, 0, NULL, kiln_init_const(5));
    kiln_param(g, "mask", KILN_BOOL, KILN_SHAPE(4), kiln_init_ones());
    kiln_tensor *y = kiln_add(g, x, w);
    kiln_compile_opts opts = {.target = KILN_TARGET_INTERP};
    if (kiln_entry(g, "f", 1, &y, NULL) != KILN_OK || kiln_compile(g, &opts, &m) != KILN_OK)
        abort();
    kiln_graph_free(g);
    fd = memfd_create("safetensors", 0);
    if (fd < 0)
        abort();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
}

/* The params' bytes and the run counter, for "a failed load changes nothing". */
static size_t state(unsigned char *out)
{
    size_t n = 0;
    for (int i = 0; i < m->nbufs; i++)
        if (m->bufs[i].role == RT_PARAM) {
            memcpy(out + n, m->bufs[i].data, m->bufs[i].nbytes);
            n += m->bufs[i].nbytes;
        }
    memcpy(out + n, &m->run, sizeof m->run);
    return n + sizeof m->run;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!m)
        setup();
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    unsigned char before[256], after[256];
    size_t n = state(before);
    kiln_status s = kiln_module_load(m, path);
    if (s == KILN_OK)
        return 0;
    if (s != KILN_ERR_FORMAT && s != KILN_ERR_NOT_FOUND && s != KILN_ERR_DTYPE &&
        s != KILN_ERR_SHAPE)
        abort();
    if (strncmp(kiln_module_error(m), "kiln_module_load: ", 18) != 0)
        abort();
    if (state(after) != n || memcmp(before, after, n) != 0)
        abort(); /* a failed load changed the module */
    return 0;
}
