#!/usr/bin/env bash
# samples/gpt.c (ctest sample_gpt):
#   1. the losses of its first 20 steps match PyTorch's from the same initial
#      weights within 1e-5 relative (tests/data/gpt_losses.txt, made by
#      tests/ref/gpt_ref.py), and training goes on to lower losses;
#   2. it generates the asked number of characters after the prompt;
#   3. bad arguments and a missing text are clear errors.
# Skipped (77) without /usr/share/common-licenses/GPL-3 (Debian's base-files).
# Usage: gpt_check.sh <gpt executable> <source dir>
set -u
gpt=$1
src=$2
[ -f /usr/share/common-licenses/GPL-3 ] || { echo "no /usr/share/common-licenses/GPL-3"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

"$gpt" --steps 100 --every 100 --generate 40 >"$tmp/out.txt" 2>&1 || fail "the run exited $?"
cat "$tmp/out.txt"
grep '^step [0-9]*: loss' "$tmp/out.txt" | head -n 20 | sed 's/.*loss //' >"$tmp/losses.txt"
grep -v '^#' "$src/tests/data/gpt_losses.txt" >"$tmp/want.txt"
[ "$(wc -l <"$tmp/losses.txt")" = 20 ] || fail "expected 20 loss lines"
paste "$tmp/losses.txt" "$tmp/want.txt" | awk '
    { d = $1 - $2; if (d < 0) d = -d; if (!(d <= 1e-5 * $2)) { print "step " NR ": " $1 ", PyTorch " $2; bad = 1 } }
    END { exit bad }' || fail "losses differ from PyTorch's"
last=$(grep '^step 100:' "$tmp/out.txt" | sed 's/.*loss //')
awk -v l="${last:-9}" -v f="$(head -n1 "$tmp/want.txt")" 'BEGIN { exit !(l < f - 1) }' ||
    fail "step 100's loss ${last:-none} is not well below step 1's"
gen=$(sed -n 's/^generated: "\(.*\)"$/\1/p' "$tmp/out.txt")
[ "${#gen}" = 72 ] || fail "expected 32 + 40 generated characters, got ${#gen}"

"$gpt" --steps >"$tmp/err.txt" 2>&1
[ $? = 2 ] && grep -q "usage: gpt" "$tmp/err.txt" || fail "bad arguments: $(cat "$tmp/err.txt")"
"$gpt" --data "$tmp/nowhere" >"$tmp/err.txt" 2>&1
[ $? = 1 ] && grep -q "nowhere" "$tmp/err.txt" || fail "missing text: $(cat "$tmp/err.txt")"

[ $fails = 0 ] && echo "gpt_check: all passed"
exit $((fails > 0))
