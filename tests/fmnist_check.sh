#!/usr/bin/env bash
# A Fashion-MNIST sample (samples/mlp.c, samples/cnn.c; Debian's dataset-fashion-mnist):
#   1. a run with the given arguments (none: the default run, what `make demo`
#      runs for mlp) prints the given number of epoch lines and reaches at
#      least the given test accuracy;
#   2. 1 epoch, then --resume for a 2nd, ends with exactly the params of a
#      straight 2-epoch run (same checksum), one thread so sums are ordered;
#   3. a missing dataset and bad arguments are clear errors.
# Usage: fmnist_check.sh <executable> <min accuracy %> <epochs> [run arguments...]
set -u
prog=$1
want_acc=$2
want_epochs=$3
shift 3
name=$(basename "$prog")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

"$prog" "$@" --checkpoint "$tmp/full.safetensors" >"$tmp/full.txt" 2>&1 || fail "the run exited $?"
cat "$tmp/full.txt"
acc=$(sed -n 's/.*test accuracy \([0-9.]*\)%.*/\1/p' "$tmp/full.txt" | tail -n1)
awk -v a="${acc:-0}" -v w="$want_acc" 'BEGIN { exit !(a >= w) }' ||
    fail "final test accuracy ${acc:-none}%, want >= $want_acc%"
[ "$(grep -c "^epoch " "$tmp/full.txt")" = "$want_epochs" ] || fail "expected $want_epochs epoch lines"

small=(--limit 6000 --threads 1)
"$prog" "${small[@]}" --epochs 2 --checkpoint "$tmp/straight.st" >"$tmp/straight.txt" 2>&1 ||
    fail "straight run exited $?"
"$prog" "${small[@]}" --epochs 1 --checkpoint "$tmp/resumed.st" >"$tmp/first.txt" 2>&1 ||
    fail "first half exited $?"
"$prog" "${small[@]}" --epochs 2 --checkpoint "$tmp/resumed.st" --resume >"$tmp/second.txt" 2>&1 ||
    fail "--resume exited $?"
grep -q "resumed from $tmp/resumed.st after epoch 1" "$tmp/second.txt" || fail "no resume line"
a=$(grep '^params checksum' "$tmp/straight.txt")
b=$(grep '^params checksum' "$tmp/second.txt")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "resumed params differ: '$a' vs '$b'"
[ "$(grep '^epoch 2/2' "$tmp/straight.txt" | cut -d, -f1-2)" = \
  "$(grep '^epoch 2/2' "$tmp/second.txt" | cut -d, -f1-2)" ] || fail "epoch 2 loss/accuracy differ"

"$prog" --data "$tmp/nowhere" >"$tmp/err.txt" 2>&1
[ $? = 1 ] && grep -q "nowhere" "$tmp/err.txt" && grep -q "dataset-fashion-mnist" "$tmp/err.txt" ||
    fail "missing dataset: $(cat "$tmp/err.txt")"
"$prog" --epochs >"$tmp/err.txt" 2>&1
[ $? = 2 ] && grep -q "usage: $name" "$tmp/err.txt" || fail "bad arguments: $(cat "$tmp/err.txt")"
"$prog" --resume --checkpoint "$tmp/absent.st" >"$tmp/err.txt" 2>&1
[ $? = 1 ] && grep -q "absent.st" "$tmp/err.txt" || fail "resume without a checkpoint: $(cat "$tmp/err.txt")"

[ $fails = 0 ] && echo "fmnist_check ($name): all passed"
exit $((fails > 0))
