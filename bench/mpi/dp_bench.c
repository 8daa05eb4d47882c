/*
 * dp_bench.c - the MLP step (784-1024-1024-10, Adam, bench/models.h) trained
 * data-parallel: run under mpirun -np N, each rank takes 256 / N rows of the
 * batch of 256 with its own threads (bench/mpi.sh runs N = 2, one thread
 * each, beside one process with two threads). Prints, from rank 0,
 *     RESULT mlp_dp<N> <seconds per step> <rate> GFLOP/s
 *     RESULT allreduce<N> <seconds> <bandwidth> GB/s
 * the second the all-reduce of the step's gradient bytes alone (the share of
 * the step it would take unoverlapped). Each gradient's sum starts as soon as
 * the backward has finished it; with --no-overlap (RESULT mlp_dp<N>_after)
 * all of them run after the backward, for comparison.
 */
#include "../models.h"

#include <kiln_mpi.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 256, RUNS = 20 };

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    kiln_comm *c = kiln_mpi_comm(MPI_COMM_WORLD);
    if (!c)
        return 1;
    bool after = argc > 1 && strcmp(argv[1], "--no-overlap") == 0;
    if (after)
        c->allreduce_start = NULL;
    int64_t rows = BATCH / c->size;
    kiln_optim adam = kiln_adam(1e-3, 0.9, 0.999, 1e-8);
    adam.data_parallel = true;
    kiln_graph *g = bench_mlp_graph_with(rows, adam);
    const int64_t nparams = 1024 * (784 + 1) + 1024 * (1024 + 1) + 10 * (1024 + 1);
    kiln_module *m = NULL;
    if (kiln_graph_status(g) != KILN_OK || kiln_compile(g, NULL, &m) != KILN_OK ||
        kiln_module_set_comm(m, c) != KILN_OK) {
        fprintf(stderr, "dp_bench: %s %s\n", kiln_graph_error(g), m ? kiln_module_error(m) : "");
        return 1;
    }
    float *xs = calloc((size_t)rows * 784, sizeof(float));
    int64_t *ys = calloc((size_t)rows, sizeof(int64_t));
    for (int64_t i = 0; i < rows * 784; i++)
        xs[i] = (float)((i * 7919 + c->rank) % 1000) / 1000.0f - 0.5f;
    for (int64_t i = 0; i < rows; i++)
        ys[i] = i % 10;
    kiln_module_set(m, "x", xs, sizeof(float) * (size_t)(rows * 784));
    kiln_module_set(m, "y", ys, sizeof(int64_t) * (size_t)rows);
    double best = 1e30, reduce = 1e30;
    float *grads = calloc((size_t)nparams, sizeof(float));
    for (int r = 0; r <= RUNS; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t = MPI_Wtime();
        if (kiln_module_run(m, "train") != KILN_OK) {
            fprintf(stderr, "dp_bench: %s\n", kiln_module_error(m));
            return 1;
        }
        MPI_Barrier(MPI_COMM_WORLD);
        t = MPI_Wtime() - t;
        double u = MPI_Wtime();
        c->allreduce_sum(c, grads, nparams, KILN_F32);
        MPI_Barrier(MPI_COMM_WORLD);
        u = MPI_Wtime() - u;
        if (r > 0) { /* after a warm-up run */
            best = t < best ? t : best;
            reduce = u < reduce ? u : reduce;
        }
    }
    double flops = 3.0 * 2.0 * (784.0 * 1024 + 1024.0 * 1024 + 1024.0 * 10) * BATCH;
    if (c->rank == 0) {
        printf("RESULT mlp_dp%d%s %.6f %.1f GFLOP/s\n", c->size, after ? "_after" : "", best,
               flops / best / 1e9);
        printf("RESULT allreduce%d %.6f %.2f GB/s\n", c->size, reduce,
               4.0 * (double)nparams / reduce / 1e9);
    }
    kiln_module_free(m);
    kiln_graph_free(g);
    free(xs);
    free(ys);
    free(grads);
    kiln_mpi_comm_free(c);
    MPI_Finalize();
    return 0;
}
