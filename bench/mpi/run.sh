#!/usr/bin/env bash
# One distillation epoch with 1 and 2 MPI ranks of one thread each (issue 15), and the speed-up;
# then the ceiling a second rank can reach on this machine: one lone rank stepping on half of
# each batch (the work of one of two ranks, without their all-reduce); and the ceiling of the
# machine's shared caches and memory: two such lone ranks at once, one a core, still without any
# all-reduce (the slower of the two). Strong scaling: the same
# global batches of 128 (the 1-process training, to rounding). Then weak scaling: 128 images a
# rank (global batches of 256 with 2 ranks, half the steps), as DistributedDataParallel is mostly
# run; it trains differently, so it is a throughput figure, not the equivalence of tests/mpi.
# usage: bench/mpi/run.sh [BUILD_DIR] [IDX_PREFIX]   (ROUNDS=3 by default)
# The four runs go in ROUNDS interleaved rounds, each round's speed-ups printed, then the
# speed-ups of the medians: the benchmark host's speed drifts by 20-30% within minutes, so one run
# of each is no measurement. Every rank prints its time inside the all-reduce to stderr (the one
# on a slower core makes the other wait there).
# Open MPI's shared-memory transport copies through its own buffers here
# (btl_vader_single_copy_mechanism=none): on the 2-core host of bench/RESULTS.md its default
# single copy (Linux CMA) measured slower for the gradients' 1 MB buckets (1.1 ms against 0.65 ms
# for an all-reduce of the MLP student's 5.1 MB in buckets).
set -eu
build=${1:-build}
prefix=${2:-/usr/share/datasets/fashion-mnist/train}
rounds=${ROUNDS:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
    OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none} \
    OPENBLAS_NUM_THREADS=1 KD_THREADS=1
echo "# $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg); OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; $rounds rounds"
secs() { sed -n 's/\(^[^:]*\) ranks.*: *\([0-9.]*\) s an epoch.*/\2/p'; }
table=$(mktemp)
pairs=$(mktemp)
trap 'rm -f "$table" "$pairs" "$pairs.0" "$pairs.1"' EXIT
for r in $(seq "$rounds"); do
    out1=$(mpirun -np 1 --bind-to core "$build/bench/bench_mpi" "$prefix")
    out2=$(mpirun -np 2 --bind-to core "$build/bench/bench_mpi" "$prefix")
    half=$(mpirun -np 1 --bind-to core "$build/bench/bench_mpi" "$prefix" all 262144 2)
    weak=$(mpirun -np 2 --bind-to core "$build/bench/bench_mpi" "$prefix" all -1 1 weak)
    # two lone ranks on half batches at once, each pinned to its own core by taskset (two mpiruns
    # binding by themselves would both take core 0)
    for c in 0 1; do
        taskset -c "$c" mpirun -np 1 --bind-to none "$build/bench/bench_mpi" "$prefix" all 262144 2 \
            >"$pairs.$c" &
    done
    wait
    pair=$(paste -d' ' <(secs <"$pairs.0") <(secs <"$pairs.1") | awk '{ print ($1 > $2 ? $1 : $2) }')
    echo "## round $r"
    printf '%s\n%s\n%s\n' "$out1" "$out2" "$weak"
    # a line a workload: name, 1 rank, 2 ranks, half batches, weak, pair (seconds an epoch)
    paste -d'|' <(echo "$out1" | sed 's/ *ranks.*//') <(echo "$out1" | secs) <(echo "$out2" | secs) \
        <(echo "$half" | secs) <(echo "$weak" | secs) <(echo "$pair") | tee -a "$table" |
        awk -F'|' '{ printf "  %s: strong %.2fx (ceilings %.2fx one rank on half batches, %.2fx two at once), weak %.2fx\n", $1, $2 / $3, $2 / $4, $2 / $6, $2 / $5 }'
done
echo "## medians of $rounds rounds (seconds an epoch: 1 rank, 2 ranks, half batches, 2 ranks weak, two half-batch ranks at once)"
awk -F'|' '{ n[$1]++; for (k = 2; k <= 6; k++) v[$1, k, n[$1]] = $k }
    function med(name, k,   m, i, j, a, t) {
        m = n[name]
        for (i = 1; i <= m; i++) a[i] = v[name, k, i]
        for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    END { for (name in n) {
        s1 = med(name, 2); s2 = med(name, 3); sh = med(name, 4); sw = med(name, 5); sp = med(name, 6)
        printf "%s: %.2f / %.2f / %.2f / %.2f / %.2f s; strong scaling %.2fx (ceilings %.2fx alone, %.2fx two at once), weak scaling %.2fx\n", name, s1, s2, sh, sw, sp, s1 / s2, s1 / sh, s1 / sp, s1 / sw } }' "$table"
