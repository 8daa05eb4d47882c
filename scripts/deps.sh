#!/usr/bin/env bash
# Installs the Debian packages Kiln builds and tests with, when missing
# (dataset-fashion-mnist, 30 MB: the MLP sample's data, for make demo and its test;
# graphviz: the tests render kiln_graph_dot's output with dot; Open MPI:
# libkiln_mpi and the data-parallel tests, run with mpirun -np 2).
# As root it runs apt-get (after apt-get update); otherwise it prints the command.
# Usage: scripts/deps.sh [extra packages...]
set -euo pipefail
pkgs=(cmake make pkg-config clang libomp-14-dev libclang-rt-14-dev libcmocka-dev libcjson-dev
      libxxhash-dev zlib1g-dev clang-format dataset-fashion-mnist graphviz openmpi-bin
      libopenmpi-dev "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "kiln: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "kiln: missing packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
