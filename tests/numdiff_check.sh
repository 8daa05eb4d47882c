#!/usr/bin/env bash
# numdiff's rules: last-digit differences pass, anything else fails.
# Usage: numdiff_check.sh <numdiff>
set -u
nd=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
expect() { # want-exit, expected text, actual text
    printf '%b' "$2" >"$tmp/e"; printf '%b' "$3" >"$tmp/a"
    "$nd" "$tmp/e" "$tmp/a" 2>"$tmp/err"; rc=$?
    [ $rc = "$1" ] || { echo "FAIL: '$2' vs '$3': exit $rc, want $1"; fails=$((fails + 1)); }
}
expect 0 "loss = 0.61619216\n" "loss = 0.61619216\n"
expect 0 "loss = 0.61619216\n" "loss = 0.61619222\n"
expect 0 "Epoch 11: w = 1.941, loss = 0.04569255\n" "Epoch 11: w = 1.941, loss = 0.04569257\n"
expect 0 "tensor([-1.5000e+00, 2.0000e-07])\n" "tensor([-1.5000e+00, 2.0001e-07])\n"
expect 1 "loss = 0.61619216\n" "loss = 0.61629216\n"      # beyond 1e-6 relative
expect 1 "w = 1.941\n" "w = 1.942\n"
expect 1 "Epoch 11: w\n" "Epoch 12: w\n"                  # integers are numbers too
expect 1 "loss = 0.616\n" "loss = 0.6160\n"               # printed differently
expect 1 "loss = 1.0\n" "loss = -1.0\n"
expect 1 "Prediction after\n" "Prediction before\n"
expect 1 "a\nb\n" "a\n"

"$nd" "$tmp/none" "$tmp/e" 2>"$tmp/err"; [ $? = 2 ] && grep -q "cannot read" "$tmp/err" ||
    { echo "FAIL: missing file"; fails=$((fails + 1)); }
"$nd" 2>"$tmp/err"; [ $? = 2 ] && grep -q "usage: numdiff" "$tmp/err" ||
    { echo "FAIL: usage"; fails=$((fails + 1)); }
[ $fails = 0 ] && echo "numdiff_check: all passed"
exit $((fails > 0))
