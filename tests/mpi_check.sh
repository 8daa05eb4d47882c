#!/usr/bin/env bash
# Data-parallel training across MPI ranks (tests/mpi/dp_check.c, ctest
# mpi_data_parallel, label mpi):
#   1. 2 ranks with 64 rows each end with the params of 1 rank with all 128,
#      after 10 steps of SGD (momentum) and of Adam, within 1e-6 relative;
#   2. a run repeats bit for bit, and so does one that sums the gradients
#      after the backward instead of overlapping the sums with it, and one
#      that sends every gradient alone instead of in one bucket (and both);
#   2b. 2 ranks accumulating 2 micro-batches of 32 rows per step end with the
#      params of 1 rank accumulating 2 of 64 (one all-reduce per step);
#   3. a checkpoint written by rank 0 at step 5 and loaded by both ranks of a
#      new job continues to the same params as the run without a stop;
#   4. ranks whose graphs differ fail together, naming the param;
#   5. a rank that exits mid-run ends the job with an error, no hang;
#   6. samples/mlp.c --data-parallel on 2 ranks prints the loss and accuracy
#      of the single-process run (when the Fashion-MNIST package is there).
# Usage: mpi_check.sh <dp_check executable> [<mlp sample>]
set -u
dp=$1
mlp=${2:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Under the sanitizers (CI's ASan suite): Open MPI is not instrumented and
# keeps allocations to its exit, which LeakSanitizer reads as leaks; Kiln's
# own memory errors are still caught.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
# one thread per rank: two ranks share this machine's cores
run() { OMP_NUM_THREADS=1 timeout 300 mpirun --oversubscribe -np "$@"; }

for opt in sgd adam; do
    run 1 "$dp" train $opt 10 "$tmp/one_$opt.st" >"$tmp/out" 2>&1 || fail "1 rank ($opt): $(cat "$tmp/out")"
    run 2 "$dp" train $opt 10 "$tmp/two_$opt.st" >"$tmp/out" 2>&1 || fail "2 ranks ($opt): $(cat "$tmp/out")"
    cat "$tmp/out"
    "$dp" compare "$tmp/one_$opt.st" "$tmp/two_$opt.st" || fail "2 ranks differ from 1 ($opt)"
done
run 2 "$dp" train adam 10 "$tmp/again.st" >"$tmp/out" 2>&1 || fail "rerun: $(cat "$tmp/out")"
"$dp" compare "$tmp/two_adam.st" "$tmp/again.st" --exact || fail "a rerun differs"
run 2 "$dp" train adam 10 "$tmp/after.st" --no-overlap >"$tmp/out" 2>&1 || fail "no overlap: $(cat "$tmp/out")"
"$dp" compare "$tmp/two_adam.st" "$tmp/after.st" --exact || fail "overlapped sums differ from sums after"

run 2 "$dp" train adam 10 "$tmp/alone.st" --buckets -1 >"$tmp/out" 2>&1 || fail "buckets: $(cat "$tmp/out")"
"$dp" compare "$tmp/two_adam.st" "$tmp/alone.st" --exact || fail "one bucket differs from one per gradient"
run 2 "$dp" train adam 10 "$tmp/alone_after.st" --buckets -1 --no-overlap >"$tmp/out" 2>&1 ||
    fail "buckets, no overlap: $(cat "$tmp/out")"
"$dp" compare "$tmp/two_adam.st" "$tmp/alone_after.st" --exact ||
    fail "one overlapped bucket differs from one sum per gradient after the backward"
run 1 "$dp" train adam 10 "$tmp/acc_one.st" --accumulate 2 >"$tmp/out" 2>&1 || fail "accumulate, 1 rank: $(cat "$tmp/out")"
run 2 "$dp" train adam 10 "$tmp/acc_two.st" --accumulate 2 >"$tmp/out" 2>&1 || fail "accumulate, 2 ranks: $(cat "$tmp/out")"
"$dp" compare "$tmp/acc_one.st" "$tmp/acc_two.st" || fail "accumulating on 2 ranks differs from 1"

run 2 "$dp" train adam 5 "$tmp/half.st" >"$tmp/out" 2>&1 || fail "first half: $(cat "$tmp/out")"
run 2 "$dp" train adam 5 "$tmp/resumed.st" --resume "$tmp/half.st" >"$tmp/out" 2>&1 ||
    fail "resume: $(cat "$tmp/out")"
"$dp" compare "$tmp/two_adam.st" "$tmp/resumed.st" --exact || fail "the resumed run differs"

run 2 "$dp" mismatch >"$tmp/out" 2>&1 && fail "graphs that differ were accepted"
[ "$(grep -c "the ranks' graphs differ: rank 1's param 0 is not rank 0's 'w0 f32\[32, 12\]'" "$tmp/out")" = 2 ] ||
    fail "a mismatch not reported on both ranks: $(cat "$tmp/out")"

run 2 "$dp" die >"$tmp/out" 2>&1
rc=$?
[ $rc != 0 ] && [ $rc != 124 ] || fail "a dying rank: mpirun exited $rc (124: it hung)"
grep -q "rank 1 exits" "$tmp/out" || fail "the dying rank said nothing: $(cat "$tmp/out")"

if [ -n "$mlp" ] && [ -d /usr/share/datasets/fashion-mnist ]; then
    args=(--epochs 1 --limit 8192 --threads 1)
    run 2 "$mlp" --data-parallel "${args[@]}" --checkpoint "$tmp/dp.st" >"$tmp/dp.txt" 2>&1 ||
        fail "mlp --data-parallel: $(cat "$tmp/dp.txt")"
    "$mlp" "${args[@]}" --checkpoint "$tmp/sp.st" >"$tmp/sp.txt" 2>&1 || fail "mlp: $(cat "$tmp/sp.txt")"
    cat "$tmp/dp.txt"
    line() { sed -n 's/^epoch 1\/1: loss \([0-9.]*\), test accuracy \([0-9.]*\)%.*/\1 \2/p' "$1"; }
    read -r dl da <<<"$(line "$tmp/dp.txt")"
    read -r sl sa <<<"$(line "$tmp/sp.txt")"
    [ -n "${dl:-}" ] && [ "$dl" = "${sl:-}" ] || fail "mlp loss ${dl:-none} on 2 ranks, ${sl:-none} on 1"
    awk -v a="${da:-0}" -v b="${sa:-100}" 'BEGIN { d = a - b; exit !(d <= 0.05 && d >= -0.05) }' ||
        fail "mlp accuracy ${da:-none}% on 2 ranks, ${sa:-none}% on 1"
fi

[ $fails = 0 ] && echo "mpi_check: all passed"
exit $((fails > 0))
