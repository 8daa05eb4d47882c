#!/usr/bin/env bash
# scripts/gpu.sh's unpack and configure steps, run here on a CPU machine so no
# GPU minute goes to a build that does not configure: the .deb files of
# .gpu/debs (scripts/gpu-prepare.sh) are unpacked into a temporary prefix, and
# CMake configures with the system's -dev packages hidden (pkg-config sees only
# the prefix, find_* ignore /usr) and with gcc, as on a GPU machine without
# clang. Every library the build found must lie inside the prefix; then
# libkiln.so (xxHash, cJSON) and test_idx (cmocka, zlib) are built and must load
# those libraries from the prefix through their rpath alone, and test_idx must pass.
# Exits 77 (skipped) when .gpu/debs is absent.
# Usage: gpu_prefix_check.sh [source dir]
set -uo pipefail
src=$(cd "${1:-$(dirname "$0")/..}" && pwd)
if ! compgen -G "$src/.gpu/debs/*.deb" >/dev/null; then
    echo "gpu_prefix_check: skipped: no .deb files in $src/.gpu/debs (run bash scripts/gpu-prepare.sh)"
    exit 77
fi
t0=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
# shellcheck source=../scripts/gpu.sh
. "$src/scripts/gpu.sh"
GPU_ROOT=$src

# The prefix's own pkgconf, as on a machine without pkg-config.
KILN_GPU_PKG_CONFIG=prefix gpu_unpack "$src/.gpu/debs" "$tmp/prefix" >"$tmp/unpack.log" 2>&1 || {
    cat "$tmp/unpack.log"
    echo "FAIL unpack"
    exit 1
}
tri=$(basename "$GPU_LIBDIR")
hide="/usr;/usr/local;/"
hidedirs="/usr/include;/usr/lib;/usr/lib/$tri;/lib;/lib/$tri;/usr/local/include;/usr/local/lib"
CC=$(command -v gcc || gpu_cc) gpu_configure "$tmp/build" "$tmp/prefix" -DCMAKE_IGNORE_PREFIX_PATH="$hide" \
    -DCMAKE_SYSTEM_IGNORE_PREFIX_PATH="$hide" -DCMAKE_SYSTEM_IGNORE_PATH="$hidedirs" \
    >"$tmp/configure.log" 2>&1 || {
    cat "$tmp/configure.log"
    echo "FAIL configure against the prefix alone"
    exit 1
}

# What CMake found for each library (the cache) must lie in the prefix.
for var in XXHASH_INCLUDE_DIR XXHASH_LIBRARY CJSON_INCLUDE_DIR CJSON_LIBRARY ZLIB_INCLUDE_DIR \
    'ZLIB_LIBRARY(_RELEASE)?' pkgcfg_lib_CMOCKA_cmocka CMOCKA_INCLUDE_DIRS PKG_CONFIG_EXECUTABLE; do
    val=$(sed -n -E "s/^$var:[A-Z]+=//p" "$tmp/build/CMakeCache.txt" | head -n1)
    case $val in
    "$tmp/prefix/"*) echo "ok   $var = ${val#"$tmp/"}" ;;
    *) fail "$var is '$val', not inside the prefix" ;;
    esac
done

cmake --build "$tmp/build" --target test_idx kiln -j "$(nproc)" >"$tmp/build.log" 2>&1 || {
    tail -n 30 "$tmp/build.log"
    fail "build test_idx and libkiln.so"
}
# Each library is loaded through the rpath CMake set from the paths it found,
# not through the environment; $1: the binary, then the libraries it must load.
loads_from_prefix() {
    local bin=$1 deps lib path
    shift
    deps=$(env -u LD_LIBRARY_PATH ldd "$bin")
    for lib in "$@"; do
        path=$(awk -v l="$lib" '$1 == l { print $3 }' <<<"$deps")
        case $path in
        "$tmp/prefix/"*) echo "ok   ${bin##*/} loads $lib from the prefix" ;;
        *) fail "${bin##*/} loads $lib from '$path', not the prefix" ;;
        esac
    done
}
[ -f "$tmp/build/libkiln.so" ] && loads_from_prefix "$tmp/build/libkiln.so" libxxhash.so.0 libcjson.so.1
if [ -x "$tmp/build/tests/test_idx" ]; then
    loads_from_prefix "$tmp/build/tests/test_idx" libcmocka.so.0 libz.so.1
    (cd "$tmp/build" && env -u LD_LIBRARY_PATH ctest -R '^test_idx$' --output-on-failure) \
        >"$tmp/ctest.log" 2>&1 || {
        cat "$tmp/ctest.log"
        fail "test_idx against the prefix's libraries"
    }
    grep -q "1 tests passed\|100% tests passed" "$tmp/ctest.log" && echo "ok   test_idx passes"
fi
echo "gpu_prefix_check: $([ $fails = 0 ] && echo "all passed" || echo "$fails failed") in $(($(date +%s) - t0))s"
exit $((fails > 0))
