#!/usr/bin/env bash
# Run here, where apt works, before a session on a lent GPU machine: downloads
# the .deb files of the libraries Kiln's build and tests need into .gpu/debs/
# (ignored by git, copied to that machine with the working tree), because that
# machine has CMake, gcc and the CUDA toolkit but no package registry.
# scripts/gpu.sh unpacks them there into .gpu/prefix. Idempotent: a package
# already downloaded is kept; rm -rf .gpu/debs to fetch fresh versions.
# Usage: scripts/gpu-prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# Each -dev package (headers, the .so link, the .pc file) with the runtime
# package that holds the library itself, which the -dev package's .so points at.
pkgs=(
  libcjson-dev libcjson1      # CMakeLists.txt: cJSON parses safetensors headers
  libxxhash-dev libxxhash0    # CMakeLists.txt: xxHash hashes compile-cache keys
  zlib1g-dev zlib1g           # CMakeLists.txt find_package(ZLIB): samples and test_idx read gzip
  libcmocka-dev libcmocka0    # tests/CMakeLists.txt: every unit test is a cmocka program
  pkgconf pkgconf-bin libpkgconf3 # tests/CMakeLists.txt find_package(PkgConfig REQUIRED), for
                                  # a machine without pkg-config (pkgconf's pkg-config link)
)
# Not shipped (scripts/deps.sh has them): cmake, make and a C compiler are on
# that machine; clang/libomp are optional there (Kiln falls back to cc and
# libgomp); clang-format is for format-check only; graphviz and
# dataset-fashion-mnist are large and only kilnc_cli and sample_mlp use them, so
# scripts/gpu.sh leaves those two tests out where dot or the dataset is missing.
dir=.gpu/debs
mkdir -p "$dir"
updated=0
for p in "${pkgs[@]}"; do
  if compgen -G "$dir/${p}_*.deb" >/dev/null; then
    continue
  fi
  # apt-get download as root would warn that _apt cannot write here; a private
  # temporary folder owned by _apt is not worth it: download then move.
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download -qq "$p" 2>/dev/null); then
    if [ "$updated" = 0 ] && [ "$(id -u)" -eq 0 ]; then
      echo "gpu-prepare: $p not downloadable; running apt-get update" >&2
      apt-get update -qq
      updated=1
    fi
    (cd "$tmp" && apt-get download -qq "$p") || {
      rm -rf "$tmp"
      echo "gpu-prepare: cannot download $p (as root: apt-get update)" >&2
      exit 1
    }
  fi
  mv "$tmp"/*.deb "$dir"/
  rmdir "$tmp"
done
# Fashion-MNIST (30 MiB, from dataset-fashion-mnist) for the GPU run of
# samples/mlp.c (ctest sample_mlp_cuda): carry .gpu/data too.
mnist=/usr/share/datasets/fashion-mnist
if [ -f "$mnist/train-images-idx3-ubyte.gz" ]; then
  mkdir -p .gpu/data/fashion-mnist
  cp -u "$mnist"/*.gz .gpu/data/fashion-mnist/
  echo "gpu-prepare: Fashion-MNIST in .gpu/data/fashion-mnist"
else
  echo "gpu-prepare: no $mnist (apt-get install dataset-fashion-mnist): sample_mlp_cuda will skip" >&2
fi
echo "gpu-prepare: $(ls "$dir"/*.deb | wc -l) packages in $dir:"
ls -1 "$dir"
total=$(du -cb "$dir"/*.deb | tail -n1 | cut -f1)
echo "gpu-prepare: total $((total / 1024)) KiB (the working tree travels with a 64 MiB limit)"
if [ "$total" -gt $((48 * 1024 * 1024)) ]; then
  echo "gpu-prepare: over 48 MiB, too close to the 64 MiB limit" >&2
  exit 1
fi
echo "gpu-prepare: now run there: bash scripts/gpu.sh (with carry: .gpu/debs .gpu/data)"
