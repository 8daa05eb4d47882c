#!/usr/bin/env bash
# gpu.sh - Kiln's CUDA target beside PyTorch eager and torch.compile on one GPU,
# in one run (make bench-gpu).
#
#   bash bench/gpu.sh BENCH_GPU [PYTHON]
#
# Runs the cases of the GPU performance issue (17) in rounds, alternating Kiln
# (bench/gpu.c, a process per case) and its peers (bench/gpu_peers.py, one
# process per peer and round), keeps the best time of each and prints a markdown
# table per case with the issue's target and whether it is met. torch.compile
# runs in the first BENCH_COMPILE_ROUNDS rounds only (default 1: its compiles
# take most of a minute; its timings are best of R runs within the process).
# The D2D copy bandwidth (torch copy_) is measured in the same run: the chain's
# target is a share of it. Whatever fails (Kiln's CUDA compile, no GPU, no torch,
# no torch.compile, a timeout) becomes the row's text and the rest goes on; the
# script exits 0 once it printed the tables. PYTHON: the first of python3 and
# /usr/bin/python3 whose torch sees a GPU, else the first that has torch.
# BENCH_ROUNDS (default 2); BENCH_QUICK=1: one round, tiny sizes, 3 runs (a
# smoke test of the harness, not figures). Progress goes to standard error.
set -u
kiln=$1
here=$(cd "$(dirname "$0")" && pwd)
start=$(date +%s)
rounds=${BENCH_ROUNDS:-2}
compile_rounds=${BENCH_COMPILE_ROUNDS:-1}
tut=10000 chain=100000000 mm=4096 batches="256 4096"
tut_runs=20 chain_runs=50 mm_runs=20 mlp_runs=30
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    rounds=1 compile_rounds=1
    tut=1000 chain=1000000 mm=256 batches="64 256"
    tut_runs=3 chain_runs=3 mm_runs=3 mlp_runs=3
fi
[ -x "$kiln" ] || { echo "gpu.sh: $kiln is not an executable (build bench_gpu first)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A python whose torch sees a GPU, else one with torch, else python3 (its rows say why).
pick_python() {
    local c rc with_torch=""
    for c in "$@"; do
        command -v "$c" >/dev/null || continue
        "$c" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null
        rc=$?
        [ $rc = 0 ] && { echo "$c"; return; }
        [ $rc = 3 ] && [ -z "$with_torch" ] && with_torch=$c
    done
    echo "${with_torch:-python3}"
}
if [ $# -ge 2 ]; then py=$2; else py=$(pick_python python3 /usr/bin/python3); fi

# collect <runner> <limit s> <cases> <cmd...>: runs cmd under a timeout and files
# each RESULT or NOTE line under $tmp/<runner>.<case>; an expected case that got
# no line gets a NOTE saying why: the run's first NOTE (a compile that failed for
# the first case fails them all), else the timeout, the exit status and last
# line of standard error. After a timeout, the runner's later commands are
# skipped: GPU time is scarce and a hung runner would hang again.
collect() {
    local runner=$1 limit=$2 cases=$3 rc c why
    shift 3
    echo "gpu.sh: $runner: ${*##*/}" >&2
    if [ -e "$tmp/$runner.hung" ]; then
        : >"$tmp/err"
        echo "NOTE - skipped: an earlier $runner run timed out" >"$tmp/out"
        rc=0
    else
        timeout -k 5 "$limit" "$@" >"$tmp/out" 2>"$tmp/err"
        rc=$?
        case $rc in 124 | 137) : >"$tmp/$runner.hung" ;; esac
    fi
    if [ -s "$tmp/err" ]; then
        echo "== $runner: ${*##*/} (exit status $rc), the last 40 lines of standard error:"
        tail -n 40 "$tmp/err"
    fi >>"$tmp/stderr.log"
    awk -v r="$runner" -v d="$tmp" '
        ($1 == "RESULT" || $1 == "NOTE") && NF >= 3 { print >> (d "/" r "." $2) }
        $1 == "INFO" { print >> (d "/info") }' "$tmp/out"
    for c in $cases; do
        grep -q "^[A-Z]* $c " "$tmp/out" && continue
        why=$(sed -n 's/^NOTE [^ ]* //p' "$tmp/out" | head -n1)
        if [ -n "$why" ]; then
            :
        elif [ $rc = 124 ] || [ $rc = 137 ]; then
            why="$runner gave no result: timed out after $limit s"
        else
            why="$runner gave no result: exited with status $rc"
            why="$why$(grep -v '^[[:space:]]*$' "$tmp/err" | tail -n1 | cut -c1-200 | sed 's/^/: /')"
        fi
        echo "NOTE $c $why" >>"$tmp/$runner.$c"
    done
}

peer_cases="copy:$chain:$chain_runs tutorial:$tut:$tut_runs chain:$chain:$chain_runs sgemm:$mm:$mm_runs"
compile_cases="tutorial:$tut:$tut_runs chain:$chain:$chain_runs"
for b in $batches; do
    peer_cases="$peer_cases mlp:$b:$mlp_runs"
    compile_cases="$compile_cases mlp:$b:$mlp_runs"
done
# case:N:R -> case_N
names() { for s in "$@"; do echo "${s%:*}" | tr : _; done; }
mkdir -p "$tmp/inductor"
for ((round = 1; round <= rounds; round++)); do
    echo "gpu.sh: round $round of $rounds" >&2
    collect kiln 45 "compile_cold compile_cached compile_cached_fresh" "$kiln" compile 256
    collect kiln 45 "tutorial_$tut" "$kiln" tutorial "$tut" "$tut_runs"
    collect kiln 45 "chain_$chain" "$kiln" chain "$chain" "$chain_runs"
    collect kiln 45 "sgemm_$mm" "$kiln" sgemm "$mm" "$mm_runs"
    for b in $batches; do
        collect kiln 45 "mlp_$b" "$kiln" mlp "$b" "$mlp_runs"
    done
    # shellcheck disable=SC2086
    collect eager 90 "$(names $peer_cases)" "$py" "$here/gpu_peers.py" --peer eager info $peer_cases
    if [ "$round" -le "$compile_rounds" ]; then
        # shellcheck disable=SC2086
        TORCHINDUCTOR_CACHE_DIR=$tmp/inductor TRITON_CACHE_DIR=$tmp/inductor/triton \
            collect compile 180 "$(names $compile_cases)" \
            "$py" "$here/gpu_peers.py" --peer compile $compile_cases
    fi
done

# ---- the report ---------------------------------------------------------------------------

best() { awk '$1 == "RESULT" && ($3 < b || b == "") { b = $3 } END { print b }' "$1" 2>/dev/null; }
rate() { awk -v t="$2" '$1 == "RESULT" && $3 == t { print $4; exit }' "$1"; }
note() { sed -n 's/^NOTE [^ ]* //p' "$1" 2>/dev/null | head -n1; }
f() { echo "$tmp/$1.$2"; }

# row <label> <file> <kiln seconds or ""> [<reference rate>]: time, rate, Kiln's
# speedup over this runner and, given a reference, the rate as a share of it
row() {
    local label=$1 file=$2 kt=$3 ref=${4:-} t v
    t=$(best "$file")
    if [ -z "$t" ]; then
        local why
        why=$(note "$file")
        echo "| $label | ${why:-not run} | | |${ref:+ |}"
        return
    fi
    v=$(rate "$file" "$t")
    awk -v l="$label" -v t="$t" -v v="$v" -v k="$kt" -v r="$ref" 'BEGIN {
        s = k == "" ? "" : sprintf("%.2fx", t / k)
        printf "| %s | %.3f | %.1f | %s |", l, t * 1e3, v, s
        if (r != "") printf " %.0f%% |", 100 * v / r
        printf "\n" }'
}

# missing <kiln file> <peer file> <peer name>: which figures a verdict lacks
missing() {
    local m=""
    [ -n "$(best "$1")" ] || m="no Kiln figure"
    [ -n "$(best "$2")" ] || m="${m:+$m, }no $3 figure"
    echo "$m"
}

# verdict <target text> <ratio> <threshold> <what is missing> [strict]: met when
# the ratio is at least the threshold (above it, when strict)
verdict() {
    if [ -z "$2" ]; then
        echo "target: $1: not measured ($4)"
    else
        awk -v txt="$1" -v r="$2" -v th="$3" -v strict="${5:-}" 'BEGIN {
            ok = strict ? r > th : r >= th
            v = index(txt, "%") ? sprintf("%.0f%%", 100 * r) : sprintf("%.2fx", r)
            printf "target: %s: %s (%s)\n", txt, ok ? "met" : "not met", v }'
    fi
    echo
}

# ratio <numerator seconds> <denominator seconds>: empty when either is missing
ratio() { [ -n "$1" ] && [ -n "$2" ] && awk -v a="$1" -v b="$2" 'BEGIN { print a / b }'; }

gpu=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n1)
if [ -n "$gpu" ]; then
    gpu="${gpu%%,*} (driver${gpu##*,})"
else
    gpu=$(sed -n 's/^INFO gpu //p' "$tmp/info" 2>/dev/null | head -n1)
    why=$(note "$(f eager "copy_$chain")")
    gpu=${gpu:-"none found (nvidia-smi is missing or failed; torch: ${why:-no CUDA device})"}
fi
torch=$(sed -n 's/^INFO torch //p' "$tmp/info" 2>/dev/null | head -n1)
echo "# Kiln GPU benchmarks, $(date -u +%Y-%m-%d)"
echo
echo "GPU: $gpu"
echo
echo "host: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1), $(nproc) cores;" \
    "Kiln $(git -C "$here" rev-parse --short HEAD 2>/dev/null); PyTorch ${torch:-none usable} ($py);" \
    "rounds: $rounds (torch.compile: $compile_rounds), best of each; TF32 off; times are wall clock" \
    "per run, each run synchronised"
echo

echo "### compile time: MLP 784-1024-1024-10 Adam train step, batch 256"
echo
echo "| runner | time (ms) |"
echo "|---|---|"
# crow <label> <file> [<file with the reason when there is no figure>]
crow() {
    local t why
    t=$(best "$2")
    if [ -n "$t" ]; then
        awk -v l="$1" -v t="$t" 'BEGIN { printf "| %s | %.1f |\n", l, t * 1e3 }'
    else
        why=$(note "$2")
        [ -n "$why" ] || why=$(note "${3:-/dev/null}")
        echo "| $1 | ${why:-not run} |"
    fi
}
crow "kiln, cold (fresh cache: passes, CUDA C, NVRTC, load)" "$(f kiln compile_cold)"
crow "kiln, cached (same process)" "$(f kiln compile_cached)"
crow "kiln, cached (fresh process)" "$(f kiln compile_cached_fresh)"
for b in $batches; do
    crow "torch.compile, first step at batch $b (compile and run)" "$(f compile "first_mlp_$b")" \
        "$(f compile "mlp_$b")"
done
echo

kt=$(best "$(f kiln "tutorial_$tut")")
echo "### tutorial: randn($tut, $tut) * randn($tut, $tut) on the device"
echo
echo "| runner | time (ms) | GB/s (the output written) | Kiln speedup |"
echo "|---|---|---|---|"
row kiln "$(f kiln "tutorial_$tut")" ""
row "PyTorch eager" "$(f eager "tutorial_$tut")" "$kt"
row "torch.compile" "$(f compile "tutorial_$tut")" "$kt"
echo
verdict ">= 2x PyTorch eager" "$(ratio "$(best "$(f eager "tutorial_$tut")")" "$kt")" 2 \
    "$(missing "$(f kiln "tutorial_$tut")" "$(f eager "tutorial_$tut")" "PyTorch eager")"

kt=$(best "$(f kiln "chain_$chain")")
cbest=$(best "$(f eager "copy_$chain")")
copy=$([ -n "$cbest" ] && rate "$(f eager "copy_$chain")" "$cbest")
echo "### chain: y = tanh(exp(-x) * 2 + 1) * x over $chain f32"
echo
echo "| runner | time (ms) | GB/s (x read, y written) | Kiln speedup | of copy bandwidth |"
echo "|---|---|---|---|---|"
row kiln "$(f kiln "chain_$chain")" "" "${copy:-}"
row "PyTorch eager" "$(f eager "chain_$chain")" "$kt" "${copy:-}"
row "torch.compile" "$(f compile "chain_$chain")" "$kt" "${copy:-}"
row "copy bandwidth (torch copy_, D2D)" "$(f eager "copy_$chain")" "" "${copy:-}"
echo
kr=$([ -n "$kt" ] && rate "$(f kiln "chain_$chain")" "$kt")
verdict ">= 80% of the copy bandwidth" \
    "$([ -n "${copy:-}" ] && [ -n "$kr" ] && awk -v a="$kr" -v b="$copy" 'BEGIN { print a / b }')" \
    0.8 "$(missing "$(f kiln "chain_$chain")" "$(f eager "copy_$chain")" "copy bandwidth")"

kt=$(best "$(f kiln "sgemm_$mm")")
echo "### sgemm_$mm: C = A @ B, f32"
echo
echo "| runner | time (ms) | GFLOP/s | Kiln speedup |"
echo "|---|---|---|---|"
row kiln "$(f kiln "sgemm_$mm")" ""
row "torch.mm (cuBLAS)" "$(f eager "sgemm_$mm")" "$kt"
echo
verdict ">= 90% of cuBLAS" "$(ratio "$(best "$(f eager "sgemm_$mm")")" "$kt")" 0.9 \
    "$(missing "$(f kiln "sgemm_$mm")" "$(f eager "sgemm_$mm")" cuBLAS)"

for b in $batches; do
    kt=$(best "$(f kiln "mlp_$b")")
    echo "### mlp_$b: Adam train step, MLP 784-1024-1024-10, batch $b"
    echo
    echo "| runner | time per step (ms) | samples/s | Kiln speedup |"
    echo "|---|---|---|---|"
    row kiln "$(f kiln "mlp_$b")" ""
    row "PyTorch eager" "$(f eager "mlp_$b")" "$kt"
    row "torch.compile" "$(f compile "mlp_$b")" "$kt"
    echo
    verdict "faster than torch.compile" "$(ratio "$(best "$(f compile "mlp_$b")")" "$kt")" 1 \
        "$(missing "$(f kiln "mlp_$b")" "$(f compile "mlp_$b")" torch.compile)" strict
done
echo "total: $(($(date +%s) - start)) s"
[ -s "$tmp/stderr.log" ] && cat "$tmp/stderr.log" >&2
exit 0
