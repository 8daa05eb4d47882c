#!/usr/bin/env bash
# samples/mlp.c on the GPU (ctest sample_mlp_cuda, label gpu):
#   1. the default run with --target cuda reaches >= 87% test accuracy, as on C;
#   2. a short run (2 epochs, 6000 images) on CUDA ends each epoch with the C
#      target's loss within 1e-3 relative and its test accuracy within 0.5 points.
# Skipped (77) without a usable GPU or without the dataset ($KILN_MNIST_DIR,
# else /usr/share/datasets/fashion-mnist; scripts/gpu-prepare.sh copies it
# into .gpu/data for the GPU machine, which has no package registry).
# Usage: mlp_cuda_check.sh <mlp executable>
set -u
mlp=$1
data=${KILN_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
[ -f "$data/train-images-idx3-ubyte.gz" ] || { echo "no Fashion-MNIST in $data"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

"$mlp" --target cuda --data "$data" --checkpoint "$tmp/full.st" >"$tmp/full.txt" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q "needs a GPU" "$tmp/full.txt"; then
    cat "$tmp/full.txt"
    exit 77
fi
cat "$tmp/full.txt"
[ $rc = 0 ] || fail "default run on cuda exited $rc"
acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$tmp/full.txt" | tail -n1)
awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 87) }' || fail "final test accuracy ${acc:-none}%, want >= 87%"

small=(--data "$data" --limit 6000 --epochs 2)
"$mlp" "${small[@]}" --target c --checkpoint "$tmp/c.st" >"$tmp/c.txt" 2>&1 || fail "C run exited $?"
"$mlp" "${small[@]}" --target cuda --checkpoint "$tmp/g.st" >"$tmp/g.txt" 2>&1 || fail "cuda run exited $?"
for e in 1 2; do
    c=$(grep "^epoch $e/2" "$tmp/c.txt" | sed 's/.*loss \([0-9.]*\), test accuracy \([0-9.]*\)%.*/\1 \2/')
    g=$(grep "^epoch $e/2" "$tmp/g.txt" | sed 's/.*loss \([0-9.]*\), test accuracy \([0-9.]*\)%.*/\1 \2/')
    echo "epoch $e: C (loss, accuracy) $c; CUDA $g"
    awk -v c="$c" -v g="$g" 'BEGIN { split(c, x, " "); split(g, y, " ");
        d = x[1] - y[1]; if (d < 0) d = -d; a = x[2] - y[2]; if (a < 0) a = -a;
        exit !(x[1] > 0 && d <= 1e-3 * x[1] && a <= 0.5) }' ||
        fail "epoch $e: CUDA ($g) differs from C ($c)"
done
[ $fails = 0 ] && echo "mlp_cuda_check: all passed"
exit $((fails > 0))
