/* format.c - PLACEHOLDER, replaced by the PyTorch-format printer (owner: format helper). */
#include "ir/ir.h"

size_t kiln_format(char *buf, size_t cap, kiln_dtype dt, int rank, const int64_t *dims,
                   const void *data)
{
    (void)dt, (void)rank, (void)dims, (void)data;
    return (size_t)snprintf(buf, cap, "tensor(?)");
}
