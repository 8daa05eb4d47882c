/*
 * fuzz_npy.c - libFuzzer harness for the .npy reader (runtime/npy.c).
 *
 * The input is the file (kept in a memfd). kiln_npy_info must accept it or
 * fail with a status and a message; when it accepts, kiln_npy_load of that
 * dtype and shape into a buffer of exactly the announced size must succeed,
 * and a load asking for another shape must fail without touching the buffer.
 * ASan/UBSan watch for everything else. Seeds: tests/data/npy.
 */
#include <kiln.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("npy", 0);
        if (fd < 0)
            abort();
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
        abort();
    kiln_dtype dt;
    int rank;
    int64_t dims[KILN_MAX_RANK];
    if (kiln_npy_info(path, &dt, &rank, dims) != KILN_OK) {
        if (strncmp(kiln_npy_error(), "kiln_npy_info: ", 15) != 0)
            abort();
        return 0;
    }
    size_t n = kiln_dtype_size(dt);
    for (int d = 0; d < rank; d++)
        n *= (size_t)dims[d];
    if (n > size) /* the data is in the file: never more bytes than it has */
        abort();
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf || kiln_npy_load(path, dt, rank, dims, buf) != KILN_OK)
        abort();
    int64_t other[KILN_MAX_RANK + 1] = {0};
    memcpy(other, dims, sizeof(int64_t) * (size_t)rank);
    other[rank] = 1;
    buf[0] = 0xA5;
    if (rank < KILN_MAX_RANK &&
        (kiln_npy_load(path, dt, rank + 1, other, buf) != KILN_ERR_SHAPE || buf[0] != 0xA5))
        abort();
    free(buf);
    return 0;
}
