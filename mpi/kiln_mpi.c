/*
 * kiln_mpi.c - libkiln_mpi: kiln_comm (kiln.h) over MPI.
 *
 * allreduce_sum is MPI_Allreduce(MPI_IN_PLACE, MPI_SUM), allreduce_start the
 * same as MPI_Iallreduce (the step's overlap with the backward; test is
 * MPI_Test, which also lets it progress, wait MPI_Wait). Open MPI chooses its
 * algorithms from the communicator's size and the message's size alone, so
 * the order in which ranks' values are added is the same on every run of the
 * same job: a run repeats bit for bit. Messages over INT_MAX elements go in
 * pieces (MPI counts are int; such a one is summed at once, not overlapped).
 */
#include "kiln_mpi.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    kiln_comm base; /* first: a kiln_comm * is a mpi_comm * */
    MPI_Comm comm;
    char error[MPI_MAX_ERROR_STRING + 64];
} mpi_comm;

static int fail(mpi_comm *c, const char *what, int rc)
{
    char text[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, text, &n) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", rc);
    snprintf(c->error, sizeof c->error, "%s: %s", what, text);
    return -1;
}

static int allreduce_sum(kiln_comm *base, void *buf, int64_t n, kiln_dtype dt)
{
    mpi_comm *c = (mpi_comm *)base;
    if (dt != KILN_F32 && dt != KILN_F64) {
        snprintf(c->error, sizeof c->error, "MPI_Allreduce: %s is no float dtype",
                 kiln_dtype_name(dt));
        return -1;
    }
    MPI_Datatype type = dt == KILN_F32 ? MPI_FLOAT : MPI_DOUBLE;
    size_t size = dt == KILN_F32 ? 4 : 8;
    for (int64_t at = 0; at < n; at += INT_MAX) {
        int count = n - at < INT_MAX ? (int)(n - at) : INT_MAX;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + (size_t)at * size, count, type, MPI_SUM,
                               c->comm);
        if (rc != MPI_SUCCESS)
            return fail(c, "MPI_Allreduce", rc);
    }
    return 0;
}

static int broadcast(kiln_comm *base, void *buf, size_t bytes, int root)
{
    mpi_comm *c = (mpi_comm *)base;
    for (size_t at = 0; at < bytes; at += INT_MAX) {
        int count = bytes - at < INT_MAX ? (int)(bytes - at) : INT_MAX;
        int rc = MPI_Bcast((char *)buf + at, count, MPI_BYTE, root, c->comm);
        if (rc != MPI_SUCCESS)
            return fail(c, "MPI_Bcast", rc);
    }
    return 0;
}

static int allreduce_start(kiln_comm *base, void *buf, int64_t n, kiln_dtype dt, void **handle)
{
    mpi_comm *c = (mpi_comm *)base;
    MPI_Request *req = malloc(sizeof *req);
    *handle = req;
    if (!req) {
        snprintf(c->error, sizeof c->error, "MPI_Iallreduce: out of memory");
        return -1;
    }
    *req = MPI_REQUEST_NULL;
    if (n > INT_MAX || (dt != KILN_F32 && dt != KILN_F64))
        return allreduce_sum(base, buf, n, dt); /* done: waiting on it returns at once */
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, dt == KILN_F32 ? MPI_FLOAT : MPI_DOUBLE,
                            MPI_SUM, c->comm, req);
    return rc == MPI_SUCCESS ? 0 : fail(c, "MPI_Iallreduce", rc);
}

static int allreduce_test(kiln_comm *base, void *handle)
{
    int done = 0, rc = MPI_Test((MPI_Request *)handle, &done, MPI_STATUS_IGNORE);
    return rc == MPI_SUCCESS ? done : fail((mpi_comm *)base, "MPI_Test", rc);
}

static int allreduce_wait(kiln_comm *base, void *handle)
{
    int rc = MPI_Wait((MPI_Request *)handle, MPI_STATUS_IGNORE);
    free(handle);
    return rc == MPI_SUCCESS ? 0 : fail((mpi_comm *)base, "MPI_Wait", rc);
}

static const char *error(kiln_comm *base)
{
    return ((mpi_comm *)base)->error;
}

kiln_comm *kiln_mpi_comm(MPI_Comm comm)
{
    int ready = 0;
    if (MPI_Initialized(&ready) != MPI_SUCCESS || !ready)
        return NULL;
    mpi_comm *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (MPI_Comm_dup(comm, &c->comm) != MPI_SUCCESS) {
        free(c);
        return NULL;
    }
    MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(c->comm, &c->base.rank);
    MPI_Comm_size(c->comm, &c->base.size);
    c->base.allreduce_sum = allreduce_sum;
    c->base.broadcast = broadcast;
    c->base.error = error;
    c->base.allreduce_start = allreduce_start;
    c->base.allreduce_test = allreduce_test;
    c->base.allreduce_wait = allreduce_wait;
    return &c->base;
}

void kiln_mpi_comm_free(kiln_comm *base)
{
    if (!base)
        return;
    mpi_comm *c = (mpi_comm *)base;
    MPI_Comm_free(&c->comm);
    free(c);
}
