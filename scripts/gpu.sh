#!/usr/bin/env bash
# The one command to run on a lent GPU machine (CUDA toolkit, CMake and gcc, but
# no package registry). It unpacks the .deb files scripts/gpu-prepare.sh
# downloaded into .gpu/debs to a prefix, .gpu/prefix (never into /), configures
# a fresh build-gpu/ against that prefix, builds with every core, runs the
# gpu-labelled tests, compute-sanitizer's memcheck on the device tests, `make
# bench-gpu`, then the CPU suite as a sanity check when time is left. Every log lands in .gpu/out/ (and in
# $OUT when set, which the GPU tool copies back); a one-screen summary ends it.
# Exits non-zero when any step fails. tests/gpu_prefix_check.sh runs the unpack
# and configure steps on a CPU machine, so no GPU minute goes to finding out
# that the build does not configure.
# Usage: bash scripts/gpu.sh
set -uo pipefail

# Unpacks every .deb of $1 into the fresh prefix $2 and makes the prefix stand on
# its own: /lib merged into /usr/lib (zlib1g puts libz.so.1 there), absolute
# symlinks (zlib1g-dev's libz.so -> /lib/...) pointed inside it, and the .pc
# files' /usr paths rewritten to it. Sets GPU_LIBDIR (the prefix's usr/lib/<triplet>)
# and GPU_PKG_CONFIG (the system's pkg-config, else a wrapper around the prefix's
# pkgconf; KILN_GPU_PKG_CONFIG=prefix forces the latter).
gpu_unpack() {
    local debs=$1 prefix=$2 d l t
    case $prefix in *[[:space:]\|]*)
        echo "gpu.sh: the prefix path '$prefix' has a space or '|'" >&2
        return 1 ;;
    esac
    compgen -G "$debs/*.deb" >/dev/null || {
        echo "gpu.sh: no .deb files in $debs: run bash scripts/gpu-prepare.sh where apt works" \
             "and carry .gpu/debs" >&2
        return 1
    }
    rm -rf "$prefix" && mkdir -p "$prefix" || return 1
    for d in "$debs"/*.deb; do
        if command -v dpkg-deb >/dev/null; then
            dpkg-deb -x "$d" "$prefix"
        else
            deb_extract_ar "$d" "$prefix"
        fi || { echo "gpu.sh: cannot unpack $d" >&2; return 1; }
    done
    if [ -d "$prefix/lib" ] && [ ! -L "$prefix/lib" ]; then
        mkdir -p "$prefix/usr/lib" && cp -a "$prefix/lib/." "$prefix/usr/lib/" &&
            rm -rf "$prefix/lib" && ln -s usr/lib "$prefix/lib" || return 1
    fi
    while IFS= read -r l; do
        t=$(readlink "$l")
        case $t in /*) ln -sfn "$prefix$t" "$l" || return 1 ;; esac
    done < <(find "$prefix" -type l)
    while IFS= read -r d; do
        sed -i -E "s|(=\|-L\|-I)/usr|\1$prefix/usr|g" "$d" || return 1
    done < <(find "$prefix" -name '*.pc')
    GPU_LIBDIR=$(dirname "$(ls "$prefix"/usr/lib/*/libcjson.so | head -n1)")
    [ -d "$GPU_LIBDIR" ] || { echo "gpu.sh: no usr/lib/<triplet>/libcjson.so in $prefix" >&2; return 1; }
    if [ "${KILN_GPU_PKG_CONFIG:-}" != prefix ] && command -v pkg-config >/dev/null; then
        GPU_PKG_CONFIG=$(command -v pkg-config)
    else
        mkdir -p "$prefix/bin"
        GPU_PKG_CONFIG=$prefix/bin/pkg-config
        printf '#!/bin/sh\nLD_LIBRARY_PATH=%s${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} exec %s "$@"\n' \
            "$GPU_LIBDIR" "$prefix/usr/bin/pkgconf" >"$GPU_PKG_CONFIG" && chmod +x "$GPU_PKG_CONFIG"
    fi
    # pkg-config sees the prefix's .pc files only (the build finds no other).
    export PKG_CONFIG_LIBDIR=$GPU_LIBDIR/pkgconfig:$prefix/usr/share/pkgconfig
    export PKG_CONFIG_PATH=
}

# dpkg-deb -x $1 $2 without dpkg: a .deb is an ar archive whose data.tar.*
# holds the files (binutils' ar comes with gcc; tar reads the compression).
deb_extract_ar() {
    local deb=$1 dest=$2 member tmp rc
    member=$(ar t "$deb" | grep -m1 '^data\.tar') || return 1
    tmp=$(mktemp) || return 1
    ar p "$deb" "$member" >"$tmp" && tar -xf "$tmp" -C "$dest"
    rc=$?
    rm -f "$tmp"
    return $rc
}

# The compiler: $CC, else clang, else gcc.
gpu_cc() {
    if [ -n "${CC:-}" ]; then echo "$CC"
    elif command -v clang >/dev/null; then command -v clang
    else command -v gcc
    fi
}

# Configures the fresh build dir $1 against the prefix $2 (after gpu_unpack);
# further arguments go to cmake.
gpu_configure() {
    local build=$1 prefix=$2
    shift 2
    rm -rf "$build"
    cmake -S "$GPU_ROOT" -B "$build" -DCMAKE_C_COMPILER="$(gpu_cc)" \
        -DCMAKE_PREFIX_PATH="$prefix/usr" -DPKG_CONFIG_EXECUTABLE="$GPU_PKG_CONFIG" "$@"
}

# Runs $2... in the directory $1 (ctest --test-dir needs CMake 3.20; Kiln asks for 3.18).
in_dir() { (cd "$1" && shift && "$@"); }

GPU_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ---- the command ------------------------------------------------------------------
gpu_main() {
    local out=$GPU_ROOT/.gpu/out prefix=$GPU_ROOT/.gpu/prefix build=$GPU_ROOT/build-gpu
    local jobs start status=0 r
    jobs=$(nproc)
    rm -rf "$out" && mkdir -p "$out"
    summary=()
    # Runs step $1 (a name) as the command $3..., its output in $out/$2; notes status and time.
    step() {
        local name=$1 log=$out/$2 t0 rc
        shift 2
        t0=$(date +%s)
        echo "== gpu.sh: $name (log: .gpu/out/${log##*/})"
        "$@" >"$log" 2>&1
        rc=$?
        summary+=("$(printf '%-22s %-6s %4ss  .gpu/out/%s' "$name" \
            "$([ $rc = 0 ] && echo ok || echo FAIL:$rc)" $(($(date +%s) - t0)) "${log##*/}")")
        [ $rc = 0 ] || { status=1; tail -n 20 "$log"; }
        return $rc
    }
    finish() {
        {
            echo "==== gpu.sh summary ($(date -u +%FT%TZ), $(hostname), $jobs cores)"
            printf '%s\n' "${summary[@]}"
            for f in "$out"/ctest-*.log; do
                [ -f "$f" ] || continue
                r=$(grep -E '^[0-9]+% tests passed' "$f" | tail -n1)
                echo "${f##*/}: ${r:-0 tests (none matched)}"
                sed -n '/^The following tests FAILED/,$p' "$f" | head -n 15
                grep -E '\*\*\*Skipped|Not Run' "$f" | head -n 8 | sed 's/^/  /'
            done
            [ -n "${excluded:-}" ] && echo "left out of the CPU suite: $excluded"
            echo "status: $([ $status = 0 ] && echo ALL OK || echo FAILED)"
        } | tee "$out/summary.txt"
        # The GPU tool brings back at most 8 files: the set-up logs as one.
        if [ -n "${OUT:-}" ] && [ "$OUT" != "$out" ]; then
            mkdir -p "$OUT" && cat "$out"/machine.log "$out"/unpack.log "$out"/configure.log \
                >"$OUT"/setup.log 2>/dev/null
            for f in summary.txt build.log ctest-gpu.log sanitizer.log bench-gpu.log ctest-cpu.log; do
                [ -f "$out/$f" ] && cp "$out/$f" "$OUT/"
            done
        fi
    }
    start=$(date +%s)

    {
        uname -a; echo "cores: $jobs"; cmake --version | head -n1; "$(gpu_cc)" --version | head -n1
        command -v nvcc >/dev/null && nvcc --version | tail -n2
        command -v nvidia-smi >/dev/null && nvidia-smi
    } >"$out/machine.log" 2>&1

    step unpack unpack.log gpu_unpack "$GPU_ROOT/.gpu/debs" "$prefix" &&
    step configure configure.log gpu_configure "$build" "$prefix" &&
    step build build.log cmake --build "$build" -j "$jobs"
    if [ $status != 0 ]; then finish; return 1; fi

    # At test time only (cmake and the compilers keep the system's libraries):
    # programs the tests link against an installed libkiln (install_consumer)
    # find the prefix's libxxhash/libcjson through these.
    export LD_LIBRARY_PATH=$GPU_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export LIBRARY_PATH=$GPU_LIBDIR${LIBRARY_PATH:+:$LIBRARY_PATH}
    export PATH=$PATH:$prefix/bin
    # NVRTC opens its builtins library by name: the toolkit's lib64 must be on the path.
    local cu
    for cu in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -d "$cu" ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$cu
    done
    # samples/mlp.c's data (scripts/gpu-prepare.sh copied it; the machine has no registry)
    [ -d "$GPU_ROOT/.gpu/data/fashion-mnist" ] && export KILN_MNIST_DIR=$GPU_ROOT/.gpu/data/fashion-mnist
    # The GPU tests one at a time: they share one device.
    step "ctest -L gpu" ctest-gpu.log in_dir "$build" ctest -L gpu --no-tests=ignore \
        --output-on-failure --timeout 240
    if command -v compute-sanitizer >/dev/null; then
        step "compute-sanitizer" sanitizer.log compute-sanitizer --tool memcheck \
            --leak-check no --error-exitcode 9 "$build/tests/test_device" --cuda
    else
        summary+=("$(printf '%-22s %-6s' compute-sanitizer skip) (not installed)")
    fi
    if grep -qE '^bench-gpu:' "$GPU_ROOT/Makefile"; then
        step "make bench-gpu" bench-gpu.log make -C "$GPU_ROOT" bench-gpu BUILD=build-gpu
    else
        summary+=("$(printf '%-22s %-6s' "make bench-gpu" skip) (no bench-gpu target in the Makefile)")
    fi
    # What this machine lacks and only one test needs (scripts/gpu-prepare.sh
    # says why they are not shipped): those tests are left out, named in the summary.
    excluded=""
    command -v dot >/dev/null || excluded="kilnc_cli"
    [ -d /usr/share/datasets/fashion-mnist ] || excluded="$excluded${excluded:+|}sample_mlp|sample_cnn"
    local ex=()
    [ -n "$excluded" ] && ex=(-E "^($excluded)\$")
    # Last, and only with time left (GPU_BUDGET seconds for the whole command,
    # default 330): a sanity check that the CPU suite passes there too.
    if [ $(($(date +%s) - start)) -lt $((${GPU_BUDGET:-330} - 120)) ]; then
        step "ctest (CPU suite)" ctest-cpu.log in_dir "$build" ctest "${ex[@]}" -LE gpu \
            --output-on-failure -j "$jobs" --timeout 120
    else
        summary+=("$(printf '%-22s %-6s' "ctest (CPU suite)" skip) (no time left in GPU_BUDGET)")
    fi
    summary+=("$(printf '%-22s %-6s %4ss' total "" $(($(date +%s) - start)))")
    finish
    return $status
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    gpu_main
    exit $?
fi
