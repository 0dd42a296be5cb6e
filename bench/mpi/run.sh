#!/usr/bin/env bash
# One distillation epoch with 1 and 2 MPI ranks of one thread each (issue 15), and the speed-up;
# then the ceiling a second rank can reach on this machine: one lone rank stepping on half of
# each batch (the work of one of two ranks, without their all-reduce). Strong scaling: the same
# global batches of 128 (the 1-process training, to rounding). Then weak scaling: 128 images a
# rank (global batches of 256 with 2 ranks, half the steps), as DistributedDataParallel is mostly
# run; it trains differently, so it is a throughput figure, not the equivalence of tests/mpi.
# usage: bench/mpi/run.sh [BUILD_DIR] [IDX_PREFIX]
# Open MPI's shared-memory transport copies through its own buffers here
# (btl_vader_single_copy_mechanism=none): on the 2-core host of bench/RESULTS.md its default
# single copy (Linux CMA) measured slower for the gradients' 1 MB buckets (1.1 ms against 0.65 ms
# for an all-reduce of the MLP student's 5.1 MB in buckets).
set -eu
build=${1:-build}
prefix=${2:-/usr/share/datasets/fashion-mnist/train}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
    OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none} \
    OPENBLAS_NUM_THREADS=1 KD_THREADS=1
echo "# $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
out1=$(mpirun -np 1 --bind-to core "$build/bench/bench_mpi" "$prefix")
out2=$(mpirun -np 2 --bind-to core "$build/bench/bench_mpi" "$prefix")
half=$(mpirun -np 1 --bind-to core "$build/bench/bench_mpi" "$prefix" all 262144 2)
weak=$(mpirun -np 2 --bind-to core "$build/bench/bench_mpi" "$prefix" all -1 1 weak)
printf '%s\n%s\n' "$out1" "$out2"
secs() { sed 's/.*: *\([0-9.]*\) s an epoch.*/\1/'; }
paste <(echo "$out1" | secs) <(echo "$out2" | secs) <(echo "$half" | secs) |
    awk '{ printf "speed-up of 2 ranks over 1: %.2fx (ceiling without all-reduce or contention: %.2fx, one rank on half batches)\n", $1 / $2, $1 / $3 }'
echo "$weak"
paste <(echo "$out1" | secs) <(echo "$weak" | secs) |
    awk '{ printf "weak scaling, 2 ranks of 128 images a step over 1 rank of 128: %.2fx\n", $1 / $2 }'
