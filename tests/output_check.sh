#!/usr/bin/env bash
# output_check.sh EXPECTED PROG [ARGS...]: runs PROG and compares its standard
# output byte for byte with EXPECTED (a diff when not). PROG's exit status 77
# (a skip: e.g. no GPU for --target cuda) is passed on before any comparison.
set -u
expected=$1
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$@" >"$out"
rc=$?
[ $rc = 77 ] && exit 77
if [ $rc != 0 ]; then
    echo "output_check: $* exited with $rc" >&2
    exit 1
fi
if ! cmp -s "$expected" "$out"; then
    diff -u "$expected" "$out" | head -n 40
    echo "output_check: the output of $* differs from $expected" >&2
    exit 1
fi
