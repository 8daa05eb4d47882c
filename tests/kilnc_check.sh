#!/usr/bin/env bash
# kilnc's command line: canonical .kir out, -o, stdin, --help, and every error.
# Usage: kilnc_check.sh <kilnc> <source dir>
set -u
kilnc=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passes=0
check() { # name, expected exit code, actual exit code, [file that must contain text, text]
    if [ "$2" != "$3" ]; then
        echo "FAIL $1: exit $3, expected $2"; fails=$((fails + 1)); return
    fi
    if [ $# -ge 5 ] && ! grep -qF -- "$5" "$4"; then
        echo "FAIL $1: '$5' not in output:"; cat "$4"; fails=$((fails + 1)); return
    fi
    passes=$((passes + 1))
}

for f in "$src"/tests/golden/*.kir; do
    "$kilnc" "$f" >"$tmp/out.kir" 2>"$tmp/err"; rc=$?
    check "canonical $(basename "$f")" 0 $rc
    cmp -s "$f" "$tmp/out.kir" || { echo "FAIL $(basename "$f") not reproduced"; fails=$((fails + 1)); }
done
golden=$(ls "$src"/tests/golden/*.kir | head -n1)
"$kilnc" "$golden" --emit=ir -o "$tmp/o.kir"; check "-o" 0 $?
cmp -s "$golden" "$tmp/o.kir" || { echo "FAIL -o output differs"; fails=$((fails + 1)); }
"$kilnc" - <"$golden" >"$tmp/stdin.kir"; check "stdin" 0 $?
cmp -s "$golden" "$tmp/stdin.kir" || { echo "FAIL stdin output differs"; fails=$((fails + 1)); }
"$kilnc" --help >"$tmp/help"; check "--help" 0 $? "$tmp/help" "usage: kilnc"

printf 'kiln 1 seed=0 streams=0\n%%0 = addd : f32[2]\n' >"$tmp/bad.kir"
"$kilnc" "$tmp/bad.kir" 2>"$tmp/err"; check "parse error" 1 $? "$tmp/err" "line 2, column"
"$kilnc" "$tmp/missing.kir" 2>"$tmp/err"; check "missing file" 1 $? "$tmp/err" "cannot open"
"$kilnc" 2>"$tmp/err"; check "no input" 2 $? "$tmp/err" "usage: kilnc"
"$kilnc" --bogus "$golden" 2>"$tmp/err"; check "unknown option" 2 $? "$tmp/err" "unknown option '--bogus'"
"$kilnc" "$golden" "$golden" 2>"$tmp/err"; check "two inputs" 2 $? "$tmp/err" "more than one input"
"$kilnc" "$golden" --emit=c 2>"$tmp/err"; check "emit c" 2 $? "$tmp/err" "--emit=c is not available yet"
"$kilnc" "$golden" -o "$tmp/no/such/dir/x" 2>"$tmp/err"; check "unwritable -o" 1 $? "$tmp/err" "cannot write"

echo "kilnc: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
