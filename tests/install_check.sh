#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds samples/quickstart.c
# three ways a user would: the README's cc line against build/, pkg-config, and
# find_package(Kiln). Each program must print the same thing.
# Usage: install_check.sh <source dir> <build dir>
set -euo pipefail
src=$1 build=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
cc=${CC:-cc}

"$cc" "$src/samples/quickstart.c" -I "$src/include" -L "$build" -lkiln -Wl,-rpath,"$build" \
    -o "$tmp/readme"
"$tmp/readme" >"$tmp/readme.out"

libdir=$(ls -d "$tmp"/prefix/lib*/pkgconfig | head -n1)
PKG_CONFIG_PATH=$libdir "$cc" "$src/samples/quickstart.c" \
    $(PKG_CONFIG_PATH=$libdir pkg-config --cflags --libs kiln) \
    -Wl,-rpath,"$(dirname "$libdir")" -o "$tmp/pc"
"$tmp/pc" >"$tmp/pc.out"

cmake -S "$src/tests/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" \
    -DSRC="$src/samples/quickstart.c" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$tmp/consumer/consumer" >"$tmp/cmake.out"

cmp "$tmp/readme.out" "$src/tests/expected/quickstart.txt"
cmp "$tmp/pc.out" "$tmp/readme.out"
cmp "$tmp/cmake.out" "$tmp/readme.out"
echo "install_check: README cc line, pkg-config and find_package(Kiln) all build and agree"
