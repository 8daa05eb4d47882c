#!/usr/bin/env bash
# mpi.sh - the data-parallel MLP step (bench/mpi/dp_bench.c) on 2 ranks of one
# thread each, beside 1 rank of 2 threads, in one run (make bench, when
# libkiln_mpi is built). --bind-to none: Open MPI pins each rank to one core
# by default, which would put a rank's threads on one core.
#   bash bench/mpi.sh BENCH_DP
set -u
dp=$1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
OMP_NUM_THREADS=2 mpirun --bind-to none -np 1 "$dp" >"$tmp/one" || exit 1
OMP_NUM_THREADS=1 mpirun --bind-to none --oversubscribe -np 2 "$dp" >"$tmp/two" || exit 1
OMP_NUM_THREADS=1 mpirun --bind-to none --oversubscribe -np 2 "$dp" --no-overlap >"$tmp/after" || exit 1
field() { awk -v c="$2" -v f="$3" '$2 == c { print $f }' "$1"; }
t1=$(field "$tmp/one" mlp_dp1 3)
t2=$(field "$tmp/two" mlp_dp2 3)
r2=$(field "$tmp/two" allreduce2 3)
bw=$(field "$tmp/two" allreduce2 4)
echo "### mlp, data-parallel (MPI)"
echo
ta=$(field "$tmp/after" mlp_dp2_after 3)
echo "| runner | step (s) | GFLOP/s | all-reduce of the gradients (7.5 MB) |"
echo "|---|---|---|---|"
echo "| 1 rank x 2 threads, batch 256 | $t1 | $(field "$tmp/one" mlp_dp1 4) | - |"
awk -v t="$ta" -v r="$r2" -v b="$bw" -v g="$(field "$tmp/after" mlp_dp2_after 4)" 'BEGIN {
    printf "| 2 ranks x 1 thread, 128 rows each, sums after the backward | %s | %s | %.4f s alone (%s GB/s): %.0f%% of this step |\n", t, g, r, b, 100 * r / t }'
awk -v t="$t2" -v ta="$ta" -v r="$r2" -v g="$(field "$tmp/two" mlp_dp2 4)" 'BEGIN {
    h = (ta - t) / r; h = h < 0 ? 0 : h > 1 ? 1 : h
    printf "| 2 ranks x 1 thread, each sum started with its gradient | %s | %s | %.0f%% of the all-reduce hidden by the backward |\n", t, g, 100 * h }'
echo
