#!/bin/sh
# Runs the benchmarks under both OpenBLAS settings our machines see: the AVX2 kernels that
# OPENBLAS_CORETYPE=Haswell forces, and whatever OpenBLAS picks on its own (AVX-512 on Zen 5).
# usage: bench/run.sh [BUILD_DIR]
set -eu
build=${1:-build}
for core in Haswell ""; do
    for prog in "$build"/bench/bench_*; do
        [ -x "$prog" ] || continue
        echo "== $(basename "$prog"), OPENBLAS_CORETYPE=${core:-(unset)}"
        if [ -n "$core" ]; then OPENBLAS_CORETYPE=$core "$prog"; else env -u OPENBLAS_CORETYPE "$prog"; fi
    done
done
