#!/bin/sh
# libkd against PyTorch, side by side (bench/compare.py says what and how).
# usage: bench/compare.sh [BUILD_DIR] [quick|full|memory]
# PyTorch is Debian's python3-torch, installed for /usr/bin/python3 only.
set -eu
build=${1:-build}
mode=${2:-quick}
[ -x "$build/bench/bench_compare" ] || { echo "build $build first (cmake --build $build)" >&2; exit 1; }
exec /usr/bin/python3 "$(dirname "$0")/compare.py" "$build" "$mode"
