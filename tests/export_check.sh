#!/usr/bin/env bash
# The export sample (samples/export/):
#   1. export_train trains with the JIT, exports model.so + model.h and saves
#      the trained params; its loss falls;
#   2. predict.c builds with nothing but the exported header and .so (no
#      libkiln, no Kiln header) and prints exactly the JIT's predictions;
#   3. neither predict nor model.so needs libkiln; model.h is valid C11 and C++;
#   4. two exported models live in one program, each running its own code;
#   5. bad arguments and a missing checkpoint are clear errors.
# Usage: export_check.sh <export_train executable> <source dir>
set -u
train=$1
src=$2
cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

"$train" "$tmp/out" >"$tmp/train.txt" 2>&1 || fail "export_train exited $?"
cat "$tmp/train.txt"
first=$(sed -n 's/^step  500  loss \([0-9.]*\)$/\1/p' "$tmp/train.txt")
last=$(sed -n 's/^step 1500  loss \([0-9.]*\)$/\1/p' "$tmp/train.txt")
awk -v a="${first:-1}" -v b="${last:-1}" 'BEGIN { exit !(b < a && b < 0.01) }' ||
    fail "loss did not fall below 0.01 (step 500: ${first:-none}, step 1500: ${last:-none})"
for f in model.so model.h model.c model.kir model.params.bin model.safetensors; do
    [ -f "$tmp/out/$f" ] || fail "export wrote no $f"
done

"$cc" -std=c11 -Wall -Wextra -Werror "$src/samples/export/predict.c" -I "$tmp/out" \
    "$tmp/out/model.so" -Wl,-rpath,"$tmp/out" -o "$tmp/predict" || fail "predict.c does not build"
"$tmp/predict" "$tmp/out" >"$tmp/predict.txt" 2>&1 || fail "predict exited $?"
cat "$tmp/predict.txt"
sed -n '/^predictions/,$p' "$tmp/train.txt" | tail -n +2 >"$tmp/a"
tail -n +2 "$tmp/predict.txt" >"$tmp/b"
[ "$(wc -l <"$tmp/a")" = 8 ] || fail "export_train printed no predictions"
diff "$tmp/a" "$tmp/b" || fail "model.so predicts other numbers than the JIT"

for bin in "$tmp/predict" "$tmp/out/model.so"; do
    if readelf -d "$bin" | grep NEEDED | grep -q kiln; then fail "$bin needs libkiln"; fi
done
cxx=$(command -v clang++ || command -v g++ || true)
"$cc" -std=c11 -pedantic-errors -Wall -Werror -fsyntax-only -x c "$tmp/out/model.h" ||
    fail "model.h is not strict C11"
if [ -n "$cxx" ]; then
    "$cxx" -std=c++11 -pedantic-errors -Wall -Werror -fsyntax-only -x c++ "$tmp/out/model.h" ||
        fail "model.h is not C++"
fi

# two models in one program: a second export of the same graph under another
# name, both linked; each must run its own kiln_entry_<i> (-Bsymbolic)
"$train" "$tmp/two" --steps 10 >/dev/null 2>&1 || fail "second export_train exited $?"
sed 's/\bmodel_/other_/g; s/\bmodel\.so\b/other.so/; s/\bMODEL_H\b/OTHER_H/g' \
    "$tmp/two/model.h" >"$tmp/two/other.h"
sed 's/\bmodel_/other_/g; s/"model\.h"/"other.h"/' "$tmp/two/model.c" >"$tmp/two/other.c"
(cd "$tmp/two" && cp model.kir other.kir && cp model.params.bin other.params.bin &&
    sed -i 's/"model\.kir"/"other.kir"/; s/"model\.params\.bin"/"other.params.bin"/' other.c &&
    $(sed -n 's/^ \*     \(.*\) -o model\.so model\.c -lm$/\1/p' model.c) -o other.so other.c -lm) ||
    fail "the renamed copy does not build"
cat >"$tmp/two.c" <<'C'
#include "model.h"
#include "other.h"
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
    (void)argc;
    char a[4096], b[4096];
    snprintf(a, sizeof a, "%s/out/model.safetensors", argv[1]);
    snprintf(b, sizeof b, "%s/two/model.safetensors", argv[1]);
    model_state *m = model_create();
    other_state *o = other_create();
    float q[16] = {0.5f, -0.25f}, ym[8], yo[8];
    if (model_load(m, a) || other_load(o, b) || model_predict(m, q, ym) || other_predict(o, q, yo))
        return 1;
    printf("%d\n", memcmp(ym, yo, sizeof ym) != 0); /* 10 steps vs 1500: they differ */
    model_free(m);
    other_free(o);
    return 0;
}
C
"$cc" -std=c11 -Wall -Werror "$tmp/two.c" -I "$tmp/out" -I "$tmp/two" "$tmp/out/model.so" \
    "$tmp/two/other.so" -Wl,-rpath,"$tmp/out:$tmp/two" -o "$tmp/two_models" ||
    fail "two models do not link into one program"
[ "$("$tmp/two_models" "$tmp")" = 1 ] || fail "two models in one program share code or state"

# errors
"$train" >/dev/null 2>"$tmp/err" && fail "no DIR accepted"
grep -q "usage: export_train DIR" "$tmp/err" || fail "no usage line"
"$tmp/predict" "$tmp/nowhere" >/dev/null 2>"$tmp/err" && fail "missing checkpoint accepted"
grep -q "predict: model_load: cannot read '$tmp/nowhere/model.safetensors': No such file" \
    "$tmp/err" || fail "missing checkpoint: $(cat "$tmp/err")"

[ "$fails" = 0 ] && echo "export sample: all checks passed"
exit "$fails"
