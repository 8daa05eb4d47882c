#!/usr/bin/env bash
# samples/gpt.c (ctest sample_gpt):
#   1. the losses of its first 20 steps match PyTorch's from the same initial
#      weights within 1e-5 relative (tests/data/gpt_losses.txt, made by
#      tests/ref/gpt_ref.py), and training goes on to lower losses;
#   2. it generates the asked number of characters after the prompt, with a
#      KV cache ("generated:") the same characters as a window per token
#      ("windows:") while the text fits in one window (8 + 25 characters);
#   3. the exported decoder (--export) and samples/gpt_generate.c, built with
#      its header and .so alone (no libkiln), print the same "generated:" line;
#   4. bad arguments and a missing text are clear errors.
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

"$gpt" --steps 100 --every 100 --generate 40 --export "$tmp/x" >"$tmp/out.txt" 2>&1 ||
    fail "the run exited $?"
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
win=$(sed -n 's/^windows:   "\(.*\)"$/\1/p' "$tmp/out.txt")
[ "${#gen}" = 48 ] || fail "expected 8 + 40 generated characters, got ${#gen}"
[ "${#win}" = 48 ] || fail "expected 8 + 40 characters by windows, got ${#win}"
[ "${gen:0:33}" = "${win:0:33}" ] || fail "the KV cache generated '${gen:0:33}', windows '${win:0:33}'"
grep -q "missing keys (kept): 'h.0.attn.k_cache'" "$tmp/out.txt" ||
    fail "the decoder's load reported no missing caches"

cc=${CC:-cc}
"$cc" -std=c11 -Wall -Wextra -Werror "$src/samples/export/gpt_generate.c" -I "$tmp/x" -I "$src/samples" \
    "$tmp/x/gpt.so" -Wl,-rpath,"$tmp/x" -o "$tmp/gen" || fail "gpt_generate.c does not build"
"$tmp/gen" "$tmp/x" /usr/share/common-licenses/GPL-3 40 >"$tmp/gen.txt" 2>&1 ||
    fail "gpt_generate exited $?: $(cat "$tmp/gen.txt")"
grep '^generated:' "$tmp/out.txt" | cmp -s - "$tmp/gen.txt" ||
    fail "gpt.so generated '$(cat "$tmp/gen.txt")'"
for bin in "$tmp/gen" "$tmp/x/gpt.so"; do
    if readelf -d "$bin" | grep NEEDED | grep -q kiln; then fail "$bin needs libkiln"; fi
done
"$tmp/gen" "$tmp/nowhere" >"$tmp/err.txt" 2>&1
[ $? = 1 ] && grep -q "gpt.safetensors" "$tmp/err.txt" || fail "missing params: $(cat "$tmp/err.txt")"

"$gpt" --steps >"$tmp/err.txt" 2>&1
[ $? = 2 ] && grep -q "usage: gpt" "$tmp/err.txt" || fail "bad arguments: $(cat "$tmp/err.txt")"
"$gpt" --data "$tmp/nowhere" >"$tmp/err.txt" 2>&1
[ $? = 1 ] && grep -q "nowhere" "$tmp/err.txt" || fail "missing text: $(cat "$tmp/err.txt")"

[ $fails = 0 ] && echo "gpt_check: all passed"
exit $((fails > 0))
