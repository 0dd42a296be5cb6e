#!/bin/sh
# Thread scaling (issue 11): bench_conv and bench_distill_step on 1 and on 2 threads (KD_THREADS,
# which sets OpenBLAS's count too), under both OpenBLAS settings. Run on a quiet machine; prints
# the load before each run, as timings mean little on a busy one.
# usage: bench/threads.sh [BUILD_DIR] [THREADS...]     (default: build, 1 2)
set -eu
build=${1:-build}
[ $# -gt 0 ] && shift
threads=${*:-1 2}
for core in Haswell ""; do
    for prog in bench_conv bench_distill_step; do
        for n in $threads; do
            echo "== $prog, KD_THREADS=$n, OPENBLAS_CORETYPE=${core:-(unset)}; $(uptime | sed 's/.*load/load/')"
            if [ -n "$core" ]; then
                KD_THREADS=$n OPENBLAS_CORETYPE=$core "$build/bench/$prog"
            else
                KD_THREADS=$n env -u OPENBLAS_CORETYPE "$build/bench/$prog"
            fi
        done
    done
done
