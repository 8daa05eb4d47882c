#!/usr/bin/env bash
# cpu.sh - Kiln beside its peers on this machine, in one run (make bench).
#
#   bash bench/cpu.sh BENCH_CPU [PYTHON]
#
# Measures the machine's own FP32 FMA peak and triad bandwidth first (the
# hosts differ from day to day, so targets are ratios), then runs each case
# in rounds, alternating Kiln and its peers (PyTorch eager at 1 and 2
# threads: torch1, torch2 from Debian, eager2x the PyTorch 2.x of bench/.venv
# at 2; numpy/OpenBLAS with its SkylakeX kernels for SGEMM; torch.compile from
# the PyTorch 2.x in bench/.venv, which it installs when missing), keeps the
# best time of each and prints a markdown table per case with the issue's
# targets. BENCH_QUICK=1: one
# round, small sizes (a smoke test of the harness, not figures).
set -u
kiln=$1
py=${2:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
rounds=${BENCH_ROUNDS:-2}
sizes="512 1024 2048 4096"
tut_runs=3
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    rounds=1
    sizes=512
    tut_runs=1
fi
# The peers: Debian's python3-torch and python3-numpy, which use the reference
# BLAS unless OpenBLAS is installed (matmuls 40x slower): install what is missing.
pkgs=""
"$py" -c 'import torch' 2>/dev/null || pkgs="$pkgs python3-torch"
"$py" -c 'import numpy' 2>/dev/null || pkgs="$pkgs python3-numpy"
ls /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 >/dev/null 2>&1 || pkgs="$pkgs libopenblas0-pthread"
if [ -n "$pkgs" ]; then
    # shellcheck disable=SC2086
    (apt-get install -y $pkgs || (apt-get update && apt-get install -y $pkgs)) >/dev/null 2>&1 ||
        echo "bench: could not install$pkgs; those peers are missing or slow" >&2
fi
# torch.compile's peer: a PyTorch 2.x from PyPI in bench/.venv (Debian's is
# 1.13), made here when missing: about 5.4 GB (PyPI's wheel brings the CUDA
# libraries along; only PyPI is reachable). BENCH_NO_TORCH2=1 skips it, and
# the tables then have no torch.compile row.
if [ ! -x "$here/.venv/bin/python" ] && [ "${BENCH_NO_TORCH2:-0}" != 1 ]; then
    echo "bench: creating bench/.venv with PyTorch 2.x from PyPI (about 5.4 GB; BENCH_NO_TORCH2=1 skips it)" >&2
    "$py" -c 'import ensurepip' 2>/dev/null ||
        (apt-get install -y python3-venv || (apt-get update && apt-get install -y python3-venv)) >/dev/null 2>&1
    if ! ("$py" -m venv "$here/.venv" && "$here/.venv/bin/pip" install --quiet torch numpy) >&2; then
        echo "bench: could not install PyTorch 2.x in bench/.venv; no torch.compile peer" >&2
        rm -rf "$here/.venv"
    fi
fi
compile_py=$py
[ -x "$here/.venv/bin/python" ] && [ "${BENCH_NO_TORCH2:-0}" != 1 ] && compile_py=$here/.venv/bin/python
"$compile_py" -c 'import torch, sys; sys.exit(int(torch.__version__.split(".")[0]) < 2)' 2>/dev/null ||
    compile_py=""
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# best <file>: the smallest seconds column of RESULT lines
best() { awk '$1 == "RESULT" && ($3 < b || b == "") { b = $3 } END { print b }' "$1"; }
rate() { awk -v t="$2" '$1 == "RESULT" && $3 == t { print $4; exit }' "$1"; }

echo "# Kiln CPU benchmarks, $(date -u +%Y-%m-%d)"
echo
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -n1), $(nproc) cores; $("$py" -c 'import torch; print("PyTorch", torch.__version__)' 2>/dev/null), $("$py" -c 'import numpy; print("numpy", numpy.__version__)' 2>/dev/null)"
"$kiln" probe >"$tmp/probe" || exit 1
peak=$(awk '$2 == "fma_peak" { print $4 }' "$tmp/probe")
triad=$(awk '$2 == "triad" { print $4 }' "$tmp/probe")
echo "probe: FP32 FMA peak $peak GFLOP/s (all cores), triad $triad GB/s"
echo

# Kiln's rows run on the host model's GEMM schedules (a cache of their own, so
# no schedule a user tuned earlier counts); the "tuned" rows on schedules tuned
# here first (KILN_TUNE=on, 3 s per GEMM shape), the model's distance from them
# in the speedup column.
mkdir -p "$tmp/model" "$tmp/tuned"
for n in $sizes; do
    KILN_CACHE_DIR="$tmp/tuned" KILN_TUNE=on "$kiln" sgemm "$n" >/dev/null 2>&1
done
for c in mlp cnn gpt gpt128 chain tanh; do
    KILN_CACHE_DIR="$tmp/tuned" KILN_TUNE=on "$kiln" "$c" >/dev/null 2>&1
done

# run <name> <cmd...>: appends the command's RESULT lines to $tmp/<name>
run() {
    local name=$1
    shift
    "$@" >>"$tmp/$name" 2>>"$tmp/$name.err" || echo "(failed: $*: $(tail -n1 "$tmp/$name.err"))" >&2
}

# table <case> <unit> <target text> <peers...>: one row per runner
table() {
    local c=$1 unit=$2 target=$3
    shift 3
    local kt
    kt=$(best "$tmp/kiln.$c")
    echo "### $c"
    echo
    echo "| runner | time (s) | $unit | Kiln speedup | of machine peak |"
    echo "|---|---|---|---|---|"
    for r in kiln "$@"; do
        [ -s "$tmp/$r.$c" ] || continue
        if grep -q '^NOTE' "$tmp/$r.$c"; then
            echo "| $r | $(sed -n 's/^NOTE //p' "$tmp/$r.$c" | head -n1) | | | |"
            continue
        fi
        local t v ref
        t=$(best "$tmp/$r.$c")
        [ -n "$t" ] || continue
        v=$(rate "$tmp/$r.$c" "$t")
        ref=$([ "$unit" = "GB/s" ] && echo "$triad" || echo "$peak")
        awk -v r="$r" -v t="$t" -v v="$v" -v k="$kt" -v p="$ref" 'BEGIN {
            printf "| %s | %.4f | %.1f | %s | %.0f%% |\n", r, t, v,
                   r == "kiln" ? "" : sprintf("%.2fx", t / k), 100 * v / p }'
    done
    echo
    echo "target: $target"
    echo
}

peers="torch1 torch2 eager2x compile"
for ((round = 0; round < rounds; round++)); do
    for n in $sizes; do
        run kiln.sgemm_$n env KILN_CACHE_DIR="$tmp/model" "$kiln" sgemm "$n"
        run tuned.sgemm_$n env KILN_CACHE_DIR="$tmp/tuned" "$kiln" sgemm "$n"
        run torch1.sgemm_$n "$py" "$here/peers.py" sgemm "$n" --threads 1
        run torch2.sgemm_$n "$py" "$here/peers.py" sgemm "$n" --threads 2
        run openblas.sgemm_$n env OPENBLAS_CORETYPE=SkylakeX "$py" "$here/peers.py" sgemm "$n" --peer numpy
    done
    for c in mlp cnn gpt gpt128 chain tanh; do
        run kiln.$c env KILN_CACHE_DIR="$tmp/model" "$kiln" "$c"
        run tuned.$c env KILN_CACHE_DIR="$tmp/tuned" "$kiln" "$c"
        run torch1.$c "$py" "$here/peers.py" "$c" --threads 1
        run torch2.$c "$py" "$here/peers.py" "$c" --threads 2
        if [ -n "$compile_py" ]; then
            run compile.$c "$compile_py" "$here/peers.py" "$c" --peer compile
            case $c in chain | tanh) ;; *) run eager2x.$c "$compile_py" "$here/peers.py" "$c" --threads 2 ;; esac
        fi
    done
    run kiln.tutorial "$kiln" tutorial "$tut_runs"
    run torch1.tutorial "$py" "$here/peers.py" tutorial "$tut_runs" --threads 1
    run torch2.tutorial "$py" "$here/peers.py" tutorial "$tut_runs" --threads 2
    [ -z "$compile_py" ] || run eager2x.tutorial "$compile_py" "$here/peers.py" tutorial "$tut_runs" --threads 2
done

for n in $sizes; do
    table "sgemm_$n" "GFLOP/s" ">= 75% of the FMA peak and >= 0.9x the best peer; the model within 15% of tuned" \
        tuned torch1 torch2 openblas
done
table mlp "GFLOP/s" ">= 1.3x PyTorch eager at its best thread count, faster than torch.compile" tuned $peers
table cnn "GFLOP/s" "faster than torch.compile (samples/cnn.c's step: conv3x3(32)-pool-conv3x3(64)-pool-linear, batch 64, Adam)" tuned $peers
table gpt "GFLOP/s" "faster than torch.compile (samples/gpt.c's step: 2 blocks, d 64, T 32, batch 16, AdamW + clipping)" tuned $peers
table gpt128 "GFLOP/s" "faster than torch.compile (the same GPT at the CPU issue's size: d 128, T 64, batch 16, 4 heads)" tuned $peers
table chain "GB/s" ">= 85% of triad bandwidth" tuned $peers
table tanh "GB/s" ">= 85% of triad bandwidth (the CPU issue's tanh(exp(-x) * 2 + 1) * x)" tuned $peers
table tutorial "GB/s" ">= 15x PyTorch eager (GB/s: the 400 MB written)" torch1 torch2 eager2x
