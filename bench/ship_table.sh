#!/bin/sh
# The table of issue 14's closing note: on Fashion-MNIST, for the MLP student 784-256-10 and the
# small CNN, float (distilled) vs post-training int8 vs quantisation-aware int8, 80% unstructured
# sparsity after distillation fine-tuning, and (CNN) 50% structured channel pruning: test accuracy
# over seeds (mean +- sample sd), file size, batch-1 latency and throughput (kd eval, side by side).
#
#   bench/ship_table.sh KD_BINARY WORK_DIR [SEEDS]        e.g. build/kd /tmp/ship "1 2 3"
#
# Every file it makes stays in WORK_DIR and is reused when the script runs again (delete WORK_DIR
# to start over), so a re-run after an interruption only does what is missing; the final table is
# WORK_DIR/table.md. Accuracies are reproducible seed by seed; timings depend on the machine's load
# (the script prints uptime beside them). Environment: KD_DATA (Fashion-MNIST's IDX directory),
# EPOCHS_MLP (5), EPOCHS_CNN (3), FT_MLP (2) and FT_CNN (1) fine-tuning epochs, SECONDS_EVAL (2).
set -eu
KD=${1:?usage: ship_table.sh KD_BINARY WORK_DIR [SEEDS]}
W=${2:?usage: ship_table.sh KD_BINARY WORK_DIR [SEEDS]}
SEEDS=${3:-"1 2 3"}
D=${KD_DATA:-/usr/share/datasets/fashion-mnist}
EPOCHS_MLP=${EPOCHS_MLP:-5}
EPOCHS_CNN=${EPOCHS_CNN:-3}
FT_MLP=${FT_MLP:-2}
FT_CNN=${FT_CNN:-1}
SECONDS_EVAL=${SECONDS_EVAL:-2}
SETS="--train $D/train --test $D/t10k"
MLP="784-256-10"
CNN="input 1x28x28 | conv 16 3 pad=1 | relu | maxpool 2 | conv 32 3 pad=1 | relu | maxpool 2 | flatten | dense 10"
mkdir -p "$W"
XDG_CACHE_HOME=$W/cache
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export XDG_CACHE_HOME OPENBLAS_NUM_THREADS
LOG=$W/log.txt
say() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$LOG"; }
# run FILE CMD...: CMD makes FILE unless FILE exists; its output goes to the log.
run() {
    target=$1
    shift
    [ -s "$target" ] && return 0
    say "$(basename "$target"): $*"
    "$@" >>"$LOG" 2>&1
}

T=$W/teacher.safetensors
run "$T" "$KD" train --model 784-1200-1200-10 --epochs 5 --seed 1 $SETS --out "$T" --quiet

for net in mlp cnn; do
    if [ $net = mlp ]; then spec=$MLP e=$EPOCHS_MLP ft=$FT_MLP; else spec=$CNN e=$EPOCHS_CNN ft=$FT_CNN; fi
    for s in $SEEDS; do
        f=$W/$net-float-$s.safetensors
        run "$f" "$KD" distill --teacher "$T" --student "$spec" --epochs $e --seed $s $SETS --out "$f" --quiet
        run "$W/$net-ptq-$s.safetensors" "$KD" quantize "$f" --calib "$D/train" --out "$W/$net-ptq-$s.safetensors"
        run "$W/$net-qat-$s.safetensors" "$KD" distill --teacher "$T" --init "$f" --quantize int8 \
            --epochs $ft --lr 0.005 --warmup-epochs 0 --seed $s $SETS --out "$W/$net-qat-$s.safetensors" --quiet
        run "$W/$net-sparse80-$s.safetensors" "$KD" prune "$f" --sparsity 0.8 --teacher "$T" --epochs $ft \
            --prune-epochs 0 --seed $s $SETS --out "$W/$net-sparse80-$s.safetensors"
        if [ $net = cnn ]; then
            run "$W/$net-channels50-$s.safetensors" "$KD" prune "$f" --sparsity 0.5 --structured --teacher "$T" \
                --epochs $ft --seed $s $SETS --out "$W/$net-channels50-$s.safetensors"
        fi
    done
done

# Accuracy of every file (kd eval --quiet prints it alone).
ACC=$W/accuracy.tsv
: >"$ACC"
for f in "$W"/mlp-*.safetensors "$W"/cnn-*.safetensors; do
    b=$(basename "$f" .safetensors)
    printf '%s\t%s\n' "${b%-*}" "$("$KD" eval "$f" --test "$D/t10k" --quiet)" >>"$ACC"
done

# Sizes and speed, seed 1's files side by side (one kd eval: the same minute for each model).
first=$(echo $SEEDS | cut -d' ' -f1)
say "load before timing: $(uptime)"
for net in mlp cnn; do
    set -- "$W/$net-float-$first.safetensors" "$W/$net-ptq-$first.safetensors" \
        "$W/$net-qat-$first.safetensors" "$W/$net-sparse80-$first.safetensors"
    [ $net = cnn ] && set -- "$@" "$W/$net-channels50-$first.safetensors"
    "$KD" eval "$@" --test "$D/t10k" --seconds "$SECONDS_EVAL" >"$W/$net-eval.txt" 2>&1
done
say "load after timing: $(uptime)"

# The table: accuracy mean +- sd over seeds, then seed 1's size, latency and throughput.
{
    echo "Fashion-MNIST test set (10,000 images); seeds: $SEEDS; teacher 784-1200-1200-10 (5 epochs)."
    echo "Students distilled (Hinton KD, T 4, alpha 0.9) for $EPOCHS_MLP (MLP) / $EPOCHS_CNN (CNN) epochs;"
    echo "QAT, pruning: $FT_MLP / $FT_CNN epochs of distillation fine-tuning from the float student."
    echo
    echo "| model | accuracy (mean +- sd) | vs float |"
    echo "|---|---|---|"
    awk -F'\t' '{ n[$1]++; s[$1] += $2; q[$1] += $2 * $2; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
        END {
            for (i = 1; i <= k; i++) {
                v = order[i]; m = s[v] / n[v]; sd = n[v] > 1 ? sqrt((q[v] - n[v] * m * m) / (n[v] - 1)) : 0
                split(v, p, "-"); f = p[1] "-float"; mf = s[f] / n[f]
                printf "| %s | %.2f%% +- %.2f (n=%d) | %+.2f |\n", v, m, sd, n[v], m - mf
            }
        }' "$ACC"
    echo
    for net in mlp cnn; do
        echo "$net, seed $first (kd eval side by side):"
        echo '```'
        cat "$W/$net-eval.txt"
        echo '```'
    done
    echo
    grep "load" "$LOG" | tail -2
} >"$W/table.md"
cat "$W/table.md"
