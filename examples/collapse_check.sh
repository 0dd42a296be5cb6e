#!/bin/sh
# collapse_check.sh: issue 12's check that kd distill's defaults do not collapse a CNN student
# without batch norm, and that a run that does collapse is stopped.
#
#   examples/collapse_check.sh [KD] [DIR] [FIRST_SEED] [LAST_SEED]
#
# KD is the kd binary (build/kd), DIR where the teacher and the logs go (collapse_check.out),
# the seeds 1 to 10 by default.
#  1. A ResNet teacher (examples/cnn_distill's architecture) trained with `kd train` for 10
#     epochs, seed 1, on Fashion-MNIST; kept as DIR/teacher.safetensors and reused when present
#     (a teacher copied there skips the training: about 10 minutes of 2 quiet cores, per the
#     README's example timings; hours on a loaded machine).
#  2. For each seed S: kd distill --teacher DIR/teacher.safetensors --student CNN --epochs 5
#     --compare --seed S, every other setting the default; the student alone and distilled test
#     accuracies. A run that exits non-zero, or a distilled student at chance, is a collapse.
#  3. The same with --lr 5, seed 1: it must stop with exit status 3 and the collapse message.
# Prints the table and mean +- sample sd; exits 1 if a seed collapsed or step 3 failed.
# KD_TRAIN and KD_TEST, if set, name other data (kd's --train and --test, e.g. tests/data's
# subsets for a quick trial of the script; too few steps an epoch for the collapse check to mean
# anything).
set -u
KD_DATA=""
EVAL_DATA=""
[ -n "${KD_TRAIN:-}" ] && KD_DATA="--train $KD_TRAIN"
[ -n "${KD_TEST:-}" ] && KD_DATA="$KD_DATA --test $KD_TEST" && EVAL_DATA="--test $KD_TEST"
KD=${1:-build/kd}
DIR=${2:-collapse_check.out}
FIRST=${3:-1}
LAST=${4:-10}
RESNET="input 1x28x28 | conv 32 3 pad=1 bias=0 | bn | relu | maxpool 2 | residual(conv 32 3 pad=1 bias=0 | bn | relu | conv 32 3 pad=1 bias=0 | bn) | relu | residual(conv 64 3 stride=2 pad=1 bias=0 | bn | relu | conv 64 3 pad=1 bias=0 | bn)(conv 64 1 stride=2 bias=0 | bn) | relu | gap | flatten | dense 10"
CNN="input 1x28x28 | conv 16 3 pad=1 | relu | maxpool 2 | conv 32 3 pad=1 | relu | maxpool 2 | flatten | dense 10"
mkdir -p "$DIR" || exit 1
T="$DIR/teacher.safetensors"
if [ ! -f "$T" ]; then
    echo "training the teacher: $KD train --model \"$RESNET\" --epochs 10 --seed 1 --out $T"
    "$KD" train --model "$RESNET" --epochs 10 --seed 1 $KD_DATA --out "$T" >"$DIR/teacher.log" 2>&1 || {
        echo "teacher training failed; see $DIR/teacher.log"
        exit 1
    }
fi
"$KD" eval "$T" $EVAL_DATA 2>&1 | grep -m1 "^accuracy" | sed 's/^accuracy */teacher test accuracy: /'

# acc LOG NAME: the test accuracy, the first percentage on the table line that starts with NAME
# (not on its per-epoch lines, which start with NAME too)
acc() { awk -v name="$2" 'index($0, name) == 1 && !/ epoch / { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+%$/) { sub(/%/, "", $i); print $i; exit } }' "$1"; }

bad=0
rows=""
printf '%-5s %10s %12s %8s\n' seed alone distilled gain
for s in $(seq "$FIRST" "$LAST"); do
    log="$DIR/seed$s.log"
    "$KD" distill --teacher "$T" --student "$CNN" --epochs 5 --compare --seed "$s" \
        $KD_DATA --out "$DIR/student$s.safetensors" >"$log" 2>&1
    rc=$?
    a=$(acc "$log" "student alone")
    d=$(acc "$log" "distilled student")
    if [ $rc -ne 0 ] || [ -z "$d" ] || [ -z "$a" ] ||
        awk -v d="$d" 'BEGIN { exit !(d < 15) }'; then
        printf '%-5s %10s %12s   COLLAPSED (exit %d; see %s)\n' "$s" "${a:--}" "${d:--}" "$rc" "$log"
        bad=1
        continue
    fi
    printf '%-5s %9s%% %11s%% %+8.2f\n' "$s" "$a" "$d" "$(awk -v a="$a" -v d="$d" 'BEGIN { print d - a }')"
    rows="$rows$a $d
"
done
printf '%s' "$rows" | awk 'NF == 2 { n++; a[n] = $1; d[n] = $2; sa += $1; sd += $2; sg += $2 - $1 }
    END { if (n == 0) exit; ma = sa / n; md = sd / n; mg = sg / n
          for (i = 1; i <= n; i++) { va += (a[i] - ma)^2; vd += (d[i] - md)^2; vg += (d[i] - a[i] - mg)^2 }
          k = n > 1 ? n - 1 : 1
          printf "mean  %6.2f +- %.2f %6.2f +- %.2f   gain %+.2f +- %.2f  (%d seeds)\n",
                 ma, sqrt(va / k), md, sqrt(vd / k), mg, sqrt(vg / k), n }'

# a deliberately bad setting must be stopped, not reported
log="$DIR/lr5.log"
"$KD" distill --teacher "$T" --student "$CNN" --epochs 5 --compare --seed 1 --lr 5 \
    $KD_DATA --out "$DIR/lr5.safetensors" >"$log" 2>&1
rc=$?
msg=$(grep -m1 -E "collapsed|diverged" "$log")
echo "--lr 5: exit $rc: $msg"
if [ $rc -ne 3 ] || [ -z "$msg" ]; then
    echo "--lr 5 was not stopped as a collapse (expected exit 3 and the message)"
    bad=1
fi
exit $bad
