#!/bin/sh
# The hardening jobs of CI, run by .ci/run after README's test command (which built ./build):
#   1. the whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (clang), leaks included,
#      built without MPI (the build without kd_mpi passes the whole suite);
#   2. every libFuzzer target for a bounded time from its seeds (tests/fuzz/run.sh), from the same
#      build (-DKD_FUZZ=ON);
#   3. two trainers on two threads under ThreadSanitizer (tests/test_threads.c), then libkd's
#      OpenMP loops under ThreadSanitizer with libomp's Archer (tests/test_thread_count.c);
#   4. SIGKILL of `kd train --checkpoint` and --resume (tests/ci/crash_resume.sh), on ./build's kd.
# Bounded: about 8 minutes on 2 cores. KD_FUZZ_SECONDS (default 15, per target) and KD_KILLS
# (default 6) adjust the two open-ended jobs.
#   usage: tests/ci/hardening.sh   (from anywhere; builds under ./build-asan, ./build-tsan and
#                                   ./build-tsan-omp)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
export OPENBLAS_NUM_THREADS=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
step() { echo; echo "=== hardening: $* ($(date -u +%H:%M:%S))"; }

step "ASan + UBSan build (with the fuzz targets), without MPI"
# Without MPI: Open MPI's own allocations would trip LeakSanitizer, and this is the build that
# shows libkd passing the whole suite with no MPI (./build has it: the mpi test runs there).
# And without OpenMP: LeakSanitizer's tracer crashes (signal 11) beside libomp's worker threads
# (seen on the norm suite); the loops' bodies are the same code on one thread.
CC=clang CXX=clang++ cmake -S . -B build-asan -DKD_SANITIZE=address,undefined -DKD_FUZZ=ON -DKD_MPI=OFF -DKD_OPENMP=OFF \
    -DKD_BUILD_EXAMPLES=OFF -DKD_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-asan -j2 >/dev/null
step "the suite under ASan + UBSan"
# Not here: python, python_* (a sanitized library in an unsanitized interpreter), abi (the normal
# build's job) and consumer (links an unsanitized program against the sanitized library).
ctest --test-dir build-asan -j2 --output-on-failure -E '^(python.*|abi|consumer)$'

step "fuzzing, ${KD_FUZZ_SECONDS:-15} s a target"
tests/fuzz/run.sh build-asan "${KD_FUZZ_SECONDS:-15}"

step "ThreadSanitizer: two trainers on two threads"
# KD_OPENMP=OFF: the OpenMP runtime is not instrumented, so ThreadSanitizer would misread its
# barriers as races; the two trainers exercise the handles, not libkd's inner loops.
CC=clang CXX=clang++ cmake -S . -B build-tsan -DKD_SANITIZE=thread -DKD_OPENMP=OFF -DKD_MPI=OFF -DKD_BUILD_EXAMPLES=OFF \
    -DKD_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-tsan -j2 --target test_threads >/dev/null
build-tsan/tests/test_threads

step "ThreadSanitizer with OpenMP: libkd's parallel loops, split GEMMs and work stealing"
# clang's libomp with its Archer tool (libomp-dev), which tells ThreadSanitizer about OpenMP's
# barriers; thread_count runs every parallel layer, kdi_gemm's slices and KDI_FOR's stealing on 2
# threads. ignore_noninstrumented_modules: OpenBLAS and libomp are not instrumented;
# die_after_fork=0: a test forks a child that predicts once.
archer=$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | head -n 1 || true)
if [ -z "$archer" ]; then
    echo "no libarcher.so: install libomp-dev (README's install line has it)" >&2
    exit 1
fi
CC=clang CXX=clang++ cmake -S . -B build-tsan-omp -DKD_SANITIZE=thread -DKD_OPENMP=ON -DKD_MPI=OFF \
    -DKD_BUILD_EXAMPLES=OFF -DKD_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
grep -q '^OpenMP_C_FLAGS:STRING=-fopenmp' build-tsan-omp/CMakeCache.txt ||
    { echo "clang found no OpenMP (libomp-dev)" >&2; exit 1; }
cmake --build build-tsan-omp -j2 --target test_thread_count test_threads >/dev/null
for t in test_thread_count test_threads; do
    OMP_TOOL_LIBRARIES="$archer" KD_THREADS=2 \
        TSAN_OPTIONS="$TSAN_OPTIONS:ignore_noninstrumented_modules=1:die_after_fork=0" \
        build-tsan-omp/tests/$t
done

step "crash safety: SIGKILL and --resume"
tests/ci/crash_resume.sh "$top/build/kd" "$top/tests/data" "${KD_KILLS:-6}"
step "done"
