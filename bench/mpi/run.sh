#!/usr/bin/env bash
# One distillation epoch with 1 and 2 MPI ranks of one thread each (issue 15), and the speed-up.
# usage: bench/mpi/run.sh [BUILD_DIR] [IDX_PREFIX]
set -eu
build=${1:-build}
prefix=${2:-/usr/share/datasets/fashion-mnist/train}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
    OPENBLAS_NUM_THREADS=1 KD_THREADS=1
echo "# $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
out1=$(mpirun -np 1 --bind-to core "$build/bench/bench_mpi" "$prefix")
out2=$(mpirun -np 2 --bind-to core "$build/bench/bench_mpi" "$prefix")
printf '%s\n%s\n' "$out1" "$out2"
paste <(echo "$out1" | sed 's/.*: *\([0-9.]*\) s an epoch.*/\1/') \
      <(echo "$out2" | sed 's/.*: *\([0-9.]*\) s an epoch.*/\1/') |
    awk '{ printf "speed-up of 2 ranks over 1: %.2fx\n", $1 / $2 }'
