#!/usr/bin/env bash
# scale_check.sh KILNC - a graph of 100k nodes (50k named inputs, a chain of
# 50k adds) parses, prints back byte for byte and renders as C (verify, every
# pass, the renderer) within ctest's TIMEOUT for this test: the name checks,
# the parser and the kernel-IR builder are O(n log n), not quadratic.
set -euo pipefail
kilnc=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=50000
awk -v n=$n 'BEGIN {
    print "kiln 1 seed=0 streams=0"
    for (i = 0; i < n; i++) printf "%%%d = input \"x%d\" : f32[2]\n", i, i
    prev = 0
    for (i = 1; i < n; i++) { printf "%%%d = add %%%d, %%%d : f32[2]\n", n + i - 1, prev, i; prev = n + i - 1 }
    print ""
    printf "entry \"f\" (%%%d -> \"y\")\n", prev
}' >"$tmp/big.kir"
"$kilnc" "$tmp/big.kir" --emit=ir -o "$tmp/back.kir"
cmp "$tmp/big.kir" "$tmp/back.kir"
"$kilnc" "$tmp/big.kir" --emit=c -o "$tmp/big.c"
grep -q "KILN_EXPORT int kiln_entry_0(kiln_ctx \*ctx)" "$tmp/big.c"
adds=$(grep -c " + " "$tmp/big.c")
if [ "$adds" -lt $((n - 1)) ]; then
    echo "scale: the kernel has $adds additions, want $((n - 1))"
    exit 1
fi
echo "scale: $((2 * n - 1)) nodes parsed, printed back and rendered ($adds additions)"
