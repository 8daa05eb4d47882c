/*
 * kiln_mpi.h - a kiln_comm over MPI (libkiln_mpi; link -lkiln_mpi -lkiln and
 * your MPI). libkiln itself never links MPI: this library is the bridge.
 *
 *     kiln_comm *c = kiln_mpi_comm(MPI_COMM_WORLD);   // after MPI_Init
 *     kiln_module_set_comm(m, c);
 *     ... kiln_module_run(m, "train") on each rank's shard ...
 *     kiln_module_free(m);
 *     kiln_mpi_comm_free(c);                          // before MPI_Finalize
 *
 * Collectives return MPI's error text instead of aborting (MPI_ERRORS_RETURN
 * on a duplicate of the communicator). A rank that dies makes mpirun end the
 * job; the others never wait forever.
 */
#ifndef KILN_MPI_H
#define KILN_MPI_H

#include <kiln.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A communicator over a duplicate of comm, or NULL (out of memory, or MPI
 * not initialised). */
KILN_API kiln_comm *kiln_mpi_comm(MPI_Comm comm);
KILN_API void kiln_mpi_comm_free(kiln_comm *c); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif

#endif /* KILN_MPI_H */
