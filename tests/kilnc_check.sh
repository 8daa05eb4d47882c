#!/usr/bin/env bash
# kilnc's command line: canonical .kir out, -o, stdin, --help, and every error.
# Usage: kilnc_check.sh <kilnc> <source dir>
set -u
kilnc=$1 src=$2
tmp=$(mktemp -d)
# the --target cuda cases fail the same way on a machine with a GPU (a CUDA
# header needs neither; exporting the .so needs NVRTC)
export KILN_LIBCUDA=/nonexistent/kiln-test/libcuda.so.1
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
"$kilnc" "$golden" --emit=cuda >"$tmp/k.cu" 2>"$tmp/err"; check "emit cuda" 0 $? "$tmp/k.cu" 'extern "C" __global__ void k0_'
check "emit cuda context" 0 0 "$tmp/k.cu" "typedef struct kiln_ctx {"
"$kilnc" "$golden" --emit=asm 2>"$tmp/err"; check "emit unknown" 2 $? "$tmp/err" "--emit=asm is unknown (this kilnc emits: ir, c, cuda, dot, h, so)"

# --emit=so / --emit=h: kiln_export from the command line
mkdir -p "$tmp/exp"
cp "$golden" "$tmp/exp/my-model.kir"
(cd "$tmp/exp" && "$kilnc" my-model.kir --emit=so); check "emit so (default name)" 0 $?
for f in my_model.so my_model.h my_model.c my_model.kir my_model.params.bin; do
    [ -f "$tmp/exp/$f" ] || { echo "FAIL emit so wrote no $f"; fails=$((fails + 1)); }
done
nm -D --defined-only "$tmp/exp/my_model.so" >"$tmp/syms"; check "emit so symbols" 0 $? "$tmp/syms" "my_model_create"
check "emit so abi" 0 0 "$tmp/syms" "kiln_abi"
"$kilnc" "$golden" --emit=so -o "$tmp/exp/sub/net.so"; check "emit so -o" 0 $?
[ -f "$tmp/exp/sub/net.so" ] && [ -f "$tmp/exp/sub/net.h" ] || { echo "FAIL emit so -o wrote no net.so/net.h"; fails=$((fails + 1)); }
"$kilnc" "$golden" --emit=h >"$tmp/h.h"; gn=$(basename "$golden" .kir); check "emit h" 0 $? "$tmp/h.h" "typedef struct ${gn}_state ${gn}_state;"
"$kilnc" - --emit=h <"$golden" >"$tmp/h.h"; check "emit h stdin" 0 $? "$tmp/h.h" "typedef struct model_state model_state;"
"$kilnc" "$golden" --emit=h -o "$tmp/exp/sub/other.h"; check "emit h -o" 0 $? "$tmp/exp/sub/other.h" "other_state *other_create(void);"
cmp -s <(sed 's/net/X/g; s/NET/X/g' "$tmp/exp/sub/net.h") <(sed 's/other/X/g; s/OTHER/X/g' "$tmp/exp/sub/other.h") ||
    { echo "FAIL --emit=h differs from the header --emit=so writes"; fails=$((fails + 1)); }
"$kilnc" "$golden" --emit=so -o "$tmp/exp/net.dll" 2>"$tmp/err"; check "emit so bad ext" 2 $? "$tmp/err" "does not end in .so"
"$kilnc" "$golden" --emit=so -o "$tmp/exp/1net.so" 2>"$tmp/err"; check "emit so bad name" 1 $? "$tmp/err" "the name '1net' is not a C identifier"
KILN_CC=false "$kilnc" "$golden" --emit=so -o "$tmp/exp/cc.so" 2>"$tmp/err"; check "emit so compiler fails" 1 $? "$tmp/err" "failed (exit 1)"
"$kilnc" "$golden" --emit=so --target c -o "$tmp/exp/tc.so"; check "emit so --target c" 0 $?
KILN_NVRTC=/nonexistent/kiln-test/libnvrtc.so "$kilnc" "$golden" --emit=so --target cuda -o "$tmp/exp/cu.so" 2>"$tmp/err"; check "emit so --target cuda" 1 $? "$tmp/err" "kiln_export: exporting for the CUDA target needs NVRTC: NVRTC cannot be loaded from \$KILN_NVRTC"
"$kilnc" "$golden" --emit=h --target cuda >"$tmp/cu.h" 2>"$tmp/err"; check "emit h --target cuda" 0 $? "$tmp/cu.h" "driver (libcuda.so.1; cuBLAS too where installed)"
"$kilnc" "$golden" --emit=c --target cuda 2>"$tmp/err"; check "emit c --target cuda" 2 $? "$tmp/err" "--target applies to --emit=h|so"
"$kilnc" "$golden" --target gpu 2>"$tmp/err"; check "bad --target" 2 $? "$tmp/err" "unknown option '--target'"

# --emit=c, --stats, --print-after-all on a small model
cat >"$tmp/m.kir" <<'KIR'
kiln 1 seed=0 streams=0
%0 = input "x" : f32[2, 3]
%1 = full value=2 weak : f32[]
%2 = reshape %1 : f32[1, 1]
%3 = expand %2 : f32[2, 3]
%4 = mul %0, %3 : f32[2, 3]
%5 = exp %4 : f32[2, 3]

entry "f" (%4 -> "y", %5 -> "z")
KIR
"$kilnc" "$tmp/m.kir" --emit=c -o "$tmp/m.c"; check "emit c" 0 $? "$tmp/m.c" "KILN_EXPORT int kiln_entry_0(kiln_ctx *ctx)"
check "emit c kernel" 0 0 "$tmp/m.c" "static void k0_mul_exp(" # y and z: one loop (hfuse)
# generated code for people: the first graph of fuse/elementwise.kir (rand, exp,
# where, cast) carries only the helpers it calls, without their comments (126
# lines on 2026-12-06: exp as kiln_expf_parts + its scaling)
awk '/^\/\/ expect:/ { exit } { print }' "$src/tests/golden/fuse/elementwise.kir" >"$tmp/ew.kir"
"$kilnc" "$tmp/ew.kir" --emit=c -o "$tmp/ew.c"; check "emit c elementwise" 0 $? "$tmp/ew.c" "kiln_rand_f32("
lines=$(wc -l <"$tmp/ew.c")
[ "$lines" -lt 130 ] || { echo "FAIL elementwise.kir renders $lines lines of C (< 130)"; fails=$((fails + 1)); }
"$kilnc" "$tmp/m.kir" --emit=dot >"$tmp/m.dot"; check "emit dot" 0 $? "$tmp/m.dot" "subgraph cluster_k0 {"
check "emit dot entry" 0 0 "$tmp/m.dot" 'label="entry f: y"'
if command -v dot >/dev/null; then
    dot -Tsvg "$tmp/m.dot" >"$tmp/m.svg"; check "dot renders" 0 $? "$tmp/m.svg" "<svg"
else
    echo "FAIL dot (graphviz) is not installed: run scripts/deps.sh"; fails=$((fails + 1))
fi
"$kilnc" "$tmp/m.kir" --stats >/dev/null 2>"$tmp/err"; check "stats" 0 $? "$tmp/err" "kernels: 1 (1 fused groups"
check "stats flops" 0 0 "$tmp/err" "flops: 24"
check "stats entry" 0 0 "$tmp/err" 'entry "f": 1 kernels, 24 flops, arena 0 bytes'
"$kilnc" "$tmp/m.kir" --print-after-all >/dev/null 2>"$tmp/err"; check "print-after-all" 0 $? "$tmp/err" "// ---- graph after cse ----"
check "print-after-all kernels" 0 0 "$tmp/err" "kernel program after lower, hfuse, rowfuse, memplan"

# kilnc run: .npy in, print and .npy out, on both targets; the output reads back
npy=$(dirname "$golden")/../data/npy
for target in c interp; do
    "$kilnc" run "$tmp/m.kir" --entry f --in "x=$npy/f32_2x3.npy" --out "y=$tmp/y.npy" --print y \
        --target $target >"$tmp/out" 2>"$tmp/err"
    check "run $target" 0 $? "$tmp/out" "tensor([[0.0000, 0.5000, 1.0000],"
    "$kilnc" run "$tmp/m.kir" --entry f --in "x=$tmp/y.npy" --print x --runs 2 \
        --target $target >"$tmp/out" 2>"$tmp/err"
    check "run reads its output ($target)" 0 $? "$tmp/out" "[1.5000, 2.0000, 2.5000]])"
done
"$kilnc" run "$tmp/m.kir" --in "x=$npy/f32_2x3.npy" 2>"$tmp/err"; check "run no entry" 2 $? "$tmp/err" "--entry NAME is required"
"$kilnc" run --entry f 2>"$tmp/err"; check "run no model" 2 $? "$tmp/err" "no MODEL.kir given"
for bad in 0 -3 99999999999999999999 1000000001 5x ""; do
    "$kilnc" run "$tmp/m.kir" --entry f --runs "$bad" 2>"$tmp/err"; check "run runs '$bad'" 2 $? "$tmp/err" "--runs needs a count of 1 to 1000000000"
done
"$kilnc" run "$tmp/m.kir" --entry f --in x 2>"$tmp/err"; check "run bad spec" 2 $? "$tmp/err" "'x' is not NAME=FILE.npy"
"$kilnc" run "$tmp/m.kir" --entry 2>"$tmp/err"; check "run option without value" 2 $? "$tmp/err" "bad option '--entry' (it needs a value)"
"$kilnc" run "$tmp/m.kir" "$tmp/m.kir" --entry f 2>"$tmp/err"; check "run two models" 2 $? "$tmp/err" "more than one input file"
"$kilnc" run "$tmp/m.kir" --entry g --in "x=$npy/f32_2x3.npy" 2>"$tmp/err"; check "run unknown entry" 1 $? "$tmp/err" "no entry named 'g'"
"$kilnc" run "$tmp/m.kir" --entry f 2>"$tmp/err"; check "run unset input" 1 $? "$tmp/err" "input 'x' was never set"
"$kilnc" run "$tmp/m.kir" --entry f --in "x=$npy/i32_4.npy" 2>"$tmp/err"; check "run wrong npy" 1 $? "$tmp/err" "holds int32 [4], not float32 [2, 3] (for 'x')"
"$kilnc" run "$tmp/m.kir" --entry f --in "w=$npy/f32_2x3.npy" 2>"$tmp/err"; check "run unknown name" 1 $? "$tmp/err" "no tensor named 'w'"
"$kilnc" run "$tmp/m.kir" --entry f --in "x=$npy/f32_2x3.npy" --out "y=$tmp/no/dir/y.npy" 2>"$tmp/err"; check "run unwritable out" 1 $? "$tmp/err" "cannot create"
"$kilnc" run "$tmp/m.kir" --entry f --in "x=$npy/f32_2x3.npy" --print nope 2>"$tmp/err"; check "run print unknown" 1 $? "$tmp/err" "nope"
"$kilnc" run "$tmp/bad.kir" --entry f 2>"$tmp/err"; check "run parse error" 1 $? "$tmp/err" "line 2, column"
"$kilnc" run "$tmp/m.kir" --entry f --in "x=$npy/f32_2x3.npy" --target cuda 2>"$tmp/err"; check "run --target cuda" 1 $? "$tmp/err" "kiln_compile: the CUDA target needs a GPU: the NVIDIA driver is not installed"
"$kilnc" "$golden" -o "$tmp/no/such/dir/x" 2>"$tmp/err"; check "unwritable -o" 1 $? "$tmp/err" "cannot write"

# kilnc tune: times the MLP's GEMM shapes into a cache of its own, then finds them there
mlp="$src/tests/golden/mlp.kir"
KILN_CACHE_DIR="$tmp/tcache" "$kilnc" tune "$mlp" --seconds 0.2 --threads 1 2>"$tmp/err"
check "tune" 0 $? "$tmp/err" "(tuned now:"
ls "$tmp/tcache"/*.tune >/dev/null 2>&1; check "tune cached" 0 $?
# the candidates say nothing of their own under KILN_DEBUG: one compile line, no profile
n=$(grep -c "kiln: compiled" "$tmp/err"); check "tune: one compile line" 1 "$n"
if grep -q "k0_matmul" "$tmp/err"; then echo "FAIL tune: a candidate's profile printed"; fails=$((fails + 1)); fi
KILN_CACHE_DIR="$tmp/tcache" "$kilnc" tune "$mlp" --seconds 0.2 --threads 1 2>"$tmp/err"
check "tune again: from the cache" 0 $? "$tmp/err" "tuned earlier, from the cache"
if grep -qF "(tuned now:" "$tmp/err"; then echo "FAIL tune again: timed again"; fails=$((fails + 1)); fi
"$kilnc" tune 2>"$tmp/err"; check "tune no model" 2 $? "$tmp/err" "tune needs a MODEL.kir"
"$kilnc" tune "$mlp" --seconds 0 2>"$tmp/err"; check "tune seconds 0" 2 $? "$tmp/err" "--seconds needs a positive number, not '0'"
"$kilnc" tune "$mlp" --threads x 2>"$tmp/err"; check "tune threads" 2 $? "$tmp/err" "--threads needs a count from 1 to 4096, not 'x'"
"$kilnc" tune "$mlp" --fast 2>"$tmp/err"; check "tune unknown option" 2 $? "$tmp/err" "unknown option '--fast'"
"$kilnc" tune "$mlp" "$mlp" 2>"$tmp/err"; check "tune two models" 2 $? "$tmp/err" "tune takes one MODEL.kir"
"$kilnc" tune "$tmp/bad.kir" 2>"$tmp/err"; check "tune parse error" 1 $? "$tmp/err" "line 2, column"

echo "kilnc: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
