#!/bin/sh
# Drives the kd tool as a user would: exit codes and messages for bad input, a train / distill /
# eval / info round trip on the committed Fashion-MNIST subset, and resumes (a run stopped after
# epoch 2, a run killed with SIGKILL) that must end with a model byte-identical to an uninterrupted
# run. Ends with "N passed, N failed".
#
#   run.sh KD_BINARY DATA_DIR
set -u
KD=${1:?usage: run.sh KD_BINARY DATA_DIR}
DATA=${2:?usage: run.sh KD_BINARY DATA_DIR}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kd-cli.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
# The tool may cache in the user's cache directory; never touch the real one.
XDG_CACHE_HOME=$TMP/cache
export XDG_CACHE_HOME
# One BLAS thread: the tests share 2 cores with everything else.
OPENBLAS_NUM_THREADS=1
export OPENBLAS_NUM_THREADS

passed=0
failed=0
skipped=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }
skip() { skipped=$((skipped + 1)); echo "skip - $1"; }

# expect NAME CODE PATTERN CMD...: CMD exits with CODE and its output (stdout + stderr) has PATTERN.
expect() {
    name=$1 code=$2 pattern=$3
    shift 3
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq "$code" ] && printf '%s\n' "$out" | grep -q -e "$pattern"; then
        pass "$name"
    else
        fail "$name: exit $rc (want $code), output:"
        printf '%s\n' "$out" | sed -n '1,15s/^/    /p'
    fi
}

# check NAME COMMAND...: a shell condition.
check() {
    name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

TRAIN="$DATA/fmnist-train-2000"
TEST="$DATA/fmnist-test-500"
SETS="--train $TRAIN --test $TEST"

# ---------------------------------------------------------------- usage and messages
expect "kd --help" 0 "usage: kd COMMAND" "$KD" --help
expect "kd --version" 0 "^kd [0-9]" "$KD" --version
expect "a malformed KD_THREADS is refused" 2 "KD_THREADS=2x: expected a number of threads" \
    env KD_THREADS=2x "$KD" --version
expect "kd help distill has examples" 0 "examples:" "$KD" help distill
expect "kd train --help" 0 "usage: kd train" "$KD" train --help
expect "kd help predict" 0 "usage: kd predict" "$KD" help predict
expect "kd help train names the data formats" 0 "FILE.npz" "$KD" help train
expect "kd alone is a usage error" 2 "usage: kd" "$KD"
expect "unknown command" 2 "unknown command 'frobnicate'" "$KD" frobnicate
expect "kd help of an unknown command" 2 "no command 'nope'" "$KD" help nope
expect "unknown option" 2 "unknown option '--bogus'" "$KD" train --bogus
expect "option of another command" 2 "unknown option '--temperature'" "$KD" train --temperature 2
expect "missing value" 2 "--epochs needs a value" "$KD" train --epochs
expect "not a number" 2 "--epochs 'abc' is not a number" "$KD" train --epochs abc
expect "out of range" 2 "--alpha '1.5' is not in" "$KD" distill --alpha 1.5
expect "lr must be positive" 2 "--lr '0' is not in" "$KD" train --lr 0
expect "bad optimizer" 2 "--optimizer 'lbfgs' is not sgd, adam or adamw" "$KD" train --optimizer lbfgs
expect "train needs --model" 2 "--model SPEC is required" "$KD" train --out "$TMP/x.safetensors"
expect "train needs --out" 2 "--out MODEL.safetensors is required" "$KD" train --model 784-10
expect "bad spec" 2 "bad model spec 'input 784 | dense x'" \
    "$KD" train --model "input 784 | dense x" --out "$TMP/x.safetensors"
expect "bad student spec" 2 "bad student spec" "$KD" distill --student "784-frog" --teacher t
expect "--resume needs --checkpoint" 2 "--resume needs --checkpoint" \
    "$KD" train --model 784-10 --out "$TMP/x.safetensors" --resume
expect "eval needs a model" 2 "which model" "$KD" eval
expect "eval of a missing file" 1 "cannot load $TMP/none.safetensors" \
    "$KD" eval "$TMP/none.safetensors"
expect "info of a missing file" 1 "cannot load" "$KD" info "$TMP/none.safetensors"
printf 'not a model' >"$TMP/junk.safetensors"
expect "info of a junk file" 1 "cannot load $TMP/junk.safetensors" "$KD" info "$TMP/junk.safetensors"
mkdir -p "$TMP/empty"
expect "data directory without data" 1 "no training set in $TMP/empty" \
    "$KD" train --data "$TMP/empty" --model 784-10 --out "$TMP/x.safetensors"
expect "missing prefix" 1 "no training set at $TMP/nope" \
    "$KD" train --train "$TMP/nope" --test "$TEST" --model 784-10 --out "$TMP/x.safetensors"
expect "missing teacher" 1 "cannot load the teacher $TMP/none.safetensors" \
    "$KD" distill --teacher "$TMP/none.safetensors" $SETS --out "$TMP/x.safetensors"
expect "wrong input size" 2 "takes 100 inputs" \
    "$KD" train --model 100-10 $SETS --out "$TMP/x.safetensors"
# Without the default data set, one line names the package. A private mount namespace hides it
# from this test alone (needs root; skipped elsewhere).
EMPTY="$TMP/empty"
if unshare -m sh -c "mount --bind '$EMPTY' /usr/share/datasets/fashion-mnist" 2>/dev/null; then
    expect "the default data set is missing" 1 "apt-get install dataset-fashion-mnist" \
        unshare -m sh -c "mount --bind '$EMPTY' /usr/share/datasets/fashion-mnist && '$KD' distill"
else
    skip "the default data set is missing (no private mount namespace here)"
fi
expect "unwritable output" 1 "cannot write $TMP/no/dir/x.safetensors" \
    "$KD" train --model 784-10 $SETS --out "$TMP/no/dir/x.safetensors"

# ---------------------------------------------------------------- a round trip on the subset
T="$TMP/teacher.safetensors"
S="$TMP/student.safetensors"
expect "train a teacher" 0 "saved $T" \
    "$KD" train --model 784-128-10 --epochs 3 $SETS --out "$T" --log "$TMP/train.jsonl"
check "train log has one line per epoch" [ "$(wc -l <"$TMP/train.jsonl")" -eq 3 ]
expect "train with warm-up and clipping" 0 "saved $TMP/warm.safetensors" \
    "$KD" train --model 784-32-10 --epochs 2 --warmup-epochs 1 --clip-norm 1 $SETS \
    --out "$TMP/warm.safetensors"
expect "negative clip norm" 2 "--clip-norm '-1' is not in" "$KD" train --clip-norm -1
check "train log is JSON" grep -q '^{"run":"model","epoch":3,"epochs":3,"loss":' "$TMP/train.jsonl"
expect "plain progress lines when not a terminal" 0 "model  *epoch  2/2" \
    "$KD" train --model 784-16-10 --epochs 2 $SETS --out "$TMP/p.safetensors"
if command -v script >/dev/null 2>&1; then
    # script(1) gives the tool a terminal: the progress bar, with its ETA, replaces the lines.
    expect "a progress bar on a terminal" 0 "ETA" script -qec \
        "'$KD' train --model 784-16-10 --epochs 2 $SETS --out '$TMP/tty.safetensors'" /dev/null
fi
out=$("$KD" train --model 784-16-10 --epochs 2 $SETS --out "$TMP/q.safetensors" --quiet 2>&1)
check "--quiet prints the result line only" [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ]
expect "info lists the layers" 0 "dense  *100,480  *128" "$KD" info "$T"
expect "info shows the metadata" 0 "kd.spec" "$KD" info "$T"
expect "info --json" 0 '^{"file":' "$KD" info "$T" --json
# What a command prints is its result: a standard output it cannot write (closed here; a full disk
# alike) fails the command, exit 1, said on stderr, never exit 0 with half of it.
for args in "info $T" "--help" "eval $T --test $TEST"; do
    # shellcheck disable=SC2086 # the words of args are the command's
    out=$("$KD" $args 2>&1 >&-)
    rc=$?
    if [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -q "cannot write the standard output"; then
        pass "kd $(echo "$args" | cut -d' ' -f1) with a closed standard output fails"
    else
        fail "kd $args with a closed standard output: exit $rc, output: $out"
    fi
done
expect "eval prints a confusion matrix" 0 "confusion matrix" "$KD" eval "$T" --test "$TEST"
expect "eval measures latency" 0 "per image (batch 1, median)" "$KD" eval "$T" --test "$TEST"
expect "eval --json" 0 '"accuracy":' "$KD" eval "$T" --test "$TEST" --json
acc=$("$KD" eval "$T" --test "$TEST" --quiet)
check "the teacher learned ($acc% > 50%; chance is 10%)" awk "BEGIN { exit !($acc > 50) }"

expect "distill with a cache and a report" 0 "distilled student" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 2 $SETS --out "$S" \
    --soft-targets-cache "$TMP/logits.safetensors" --report "$TMP/report" --compare \
    --log "$TMP/distill.jsonl"
check "distill wrote the student" [ -s "$S" ]
check "distill wrote the student alone" [ -s "$TMP/student-alone.safetensors" ]
check "distill log: 2 distilled + 2 alone epochs" [ "$(wc -l <"$TMP/distill.jsonl")" -eq 4 ]
check "the report has SVG plots" grep -q "<svg" "$TMP/report/index.html"
check "the report has the table" grep -q "distilled student" "$TMP/report/index.html"
expect "the logits cache is reused" 0 "teacher logits: reused" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/r.safetensors" \
    --soft-targets-cache "$TMP/logits.safetensors"
acc=$("$KD" eval "$S" --test "$TEST" --quiet)
check "the distilled student learned ($acc% > 50%)" awk "BEGIN { exit !($acc > 50) }"
expect "bad method" 2 "--method 'fitnet' is not kd, mse, dkd, dist, kd-ls, dkd-ls" \
    "$KD" distill --method fitnet
expect "--method dkd" 0 "DKD, T = 4, alpha = 1, beta = 8" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/d.safetensors" \
    --method dkd --lr 0.005
expect "--method mse" 0 "logit MSE, alpha = 1" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/m.safetensors" \
    --method mse --lr 0.01
expect "--method dist" 0 "DIST, T = 4, beta = 2, gamma = 2" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/di.safetensors" \
    --method dist
expect "--method kd-ls" 0 "Hinton's KD with logit standardisation, T = 2, alpha = 0.9" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/ls.safetensors" \
    --method kd-ls
expect "--method dkd-ls" 0 "DKD with logit standardisation, T = 2, alpha = 1, beta = 8" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/dl.safetensors" \
    --method dkd-ls --lr 0.005
# Batches of 16: an epoch needs 64 steps for a collapse verdict (fewer are too short to tell).
expect "a collapsed run stops with exit 3" 3 "distilled run collapsed in epoch 1: .*Try a smaller --lr (it is 5)" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 2 $SETS --out "$TMP/c.safetensors" \
    --compare --lr 5 --batch 16
check "a collapsed run saves nothing" [ ! -e "$TMP/c.safetensors" ]
expect "a slow run on a small set is not called a collapse (15 steps an epoch)" 0 "saved" \
    "$KD" train --model "input 1x28x28 | conv 8 3 pad=1 | relu | maxpool 2 | flatten | dense 10" \
    $SETS --lr 0.001 --epochs 2 --out "$TMP/slow.safetensors"
expect "--keep best keeps the best epoch on validation" 0 "Students kept: the best epoch" \
    "$KD" distill --teacher "$T" --student 784-16-10 --epochs 2 $SETS --out "$TMP/kb.safetensors" \
    --keep best
expect "per-epoch accuracy is on validation" 0 "epoch  1/1 .* val " \
    "$KD" distill --teacher "$T" --student 784-16-10 --epochs 1 $SETS --out "$TMP/kv.safetensors"
expect "--val 0 measures epochs on the test set" 0 "epoch  1/1 .* test " \
    "$KD" distill --teacher "$T" --student 784-16-10 --epochs 1 $SETS --out "$TMP/k0.safetensors" \
    --val 0
expect "--keep best needs a validation split" 2 "--keep best chooses on the validation split" \
    "$KD" distill --teacher "$T" --val 0 --keep best
expect "bad --keep" 2 "--keep 'frog' is not best or last" "$KD" distill --keep frog
expect "--seeds 2 reports mean and deviation" 0 "over 2 seeds distillation" \
    "$KD" distill --teacher "$T" --student 784-16-10 --epochs 1 $SETS --out "$TMP/s2.safetensors" \
    --compare --seeds 2
expect "an ensemble of two teachers" 0 "teacher 2" \
    "$KD" distill --teacher "$T" --teacher "$TMP/p.safetensors" --teacher-weight 0.5 \
    --student 784-32-10 --epochs 1 $SETS --out "$TMP/e.safetensors"

# ---- wins (issue 12): every method from the tool: feature losses by layer index, shapes checked
for m in crd hint rkd sp pkt cosine; do
    expect "--method $m (a feature term)" 0 "feature term: .*student layer 1 (32x1x1) -> teacher layer 1 (128x1x1)" \
        "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/f$m.safetensors" \
        --method $m
done
expect "--method crd: the regressor is the student's head" 0 "through dense 128" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/fc.safetensors" \
    --method crd --student-layer 0 --teacher-layer 1 --feature-weight 0.5
expect "--method attention names both shapes" 2 "student's layer 2 gives 4x14x14 and the teacher's layer 1 gives 128x1x1" \
    "$KD" distill --teacher "$T" --student "input 1x28x28 | conv 4 3 pad=1 | relu | maxpool 2 | flatten | dense 10" \
    --student-layer 2 --teacher-layer 1 --epochs 1 $SETS --out "$TMP/fa.safetensors" --method attention
expect "--student-layer beyond the hidden layers" 2 "the student has layers 0 to 2" \
    "$KD" distill --teacher "$T" --student 784-32-10 --epochs 1 $SETS --out "$TMP/fl.safetensors" \
    --method hint --student-layer 2
expect "--teacher-layer without a feature method" 2 "go with a feature --method" \
    "$KD" distill --teacher "$T" --teacher-layer 1
expect "--method hint with --teacher-logits" 2 "needs --teacher, not --teacher-logits" \
    "$KD" distill --teacher-logits "$TMP/none.npy" --method hint
expect "bad --method lists the feature methods" 2 "pkt, cosine or crd" "$KD" distill --method frog
AUTO="distill --teacher $T --student 784-16-10 --epochs 2 --auto --auto-trials 3 --auto-budget 7 $SETS --quiet"
expect "--auto states its cost, prints the trials and the winner" 0 "3 trials by successive halving.*6 student epochs" \
    "$KD" $AUTO --out "$TMP/au1.safetensors"
"$KD" $AUTO --out "$TMP/au2.safetensors" >"$TMP/au2.txt" 2>&1
check "--auto names a winner" grep -q "^winner: trial" "$TMP/au2.txt"
check "--auto runs the default settings in the final rung" \
    grep -q "^  trial  0   2 epochs  kd .*(the default)" "$TMP/au2.txt"
"$KD" $AUTO --out "$TMP/au3.safetensors" >"$TMP/au3.txt" 2>&1
check "--auto is reproducible" cmp -s "$TMP/au2.safetensors" "$TMP/au3.safetensors"
# 5 trials at 4 epochs: the 4 drawn at 1 epoch, the best 2 at 2, the best 1 and the default at 4
"$KD" distill --teacher "$T" --student 784-16-10 --epochs 4 --auto --auto-trials 5 $SETS --quiet \
    --out "$TMP/au5.safetensors" >"$TMP/au5.txt" 2>&1
check "--auto runs the rungs it plans" [ "$(grep -c "^  trial .*  1 epoch " "$TMP/au5.txt")" -eq 4 ] \
    && [ "$(grep -c "^  trial .*  2 epochs " "$TMP/au5.txt")" -eq 2 ] \
    && [ "$(grep -c "^  trial .*  4 epochs " "$TMP/au5.txt")" -eq 2 ] \
    && grep -q "16 student epochs" "$TMP/au5.txt"
expect "--auto needs the validation split" 2 "needs --val > 0" "$KD" distill --auto --val 0
expect "--auto-budget too small" 2 "over --auto-budget 1" "$KD" $AUTO --auto-budget 1 --out "$TMP/au4.safetensors"
# ---- end wins

# The default pipeline (no --teacher) on the subset: it trains the teacher once, then reuses it.
OWN="distill --teacher-spec 784-64-10 --teacher-epochs 2 --student 784-16-10 --epochs 1 $SETS"
expect "distill trains its own teacher" 0 "teacher: training 784-64-10" "$KD" $OWN --report "$TMP/own"
check "its student is in the cache" [ -s "$XDG_CACHE_HOME/kd/student.safetensors" ]
check "its report plots the teacher too" grep -q ">teacher<" "$TMP/own/index.html"
expect "a second run reuses the teacher" 0 "teacher: reusing" "$KD" $OWN
expect "the comparison table" 0 "student alone  *784-16-10" "$KD" $OWN

# ---------------------------------------------------------------- int8 (issue 14)
Q="$TMP/teacher-int8.safetensors"
expect "kd help quantize" 0 "usage: kd quantize" "$KD" help quantize
expect "quantize without --calib" 2 "--calib DATA" "$KD" quantize "$T" --out "$Q"
expect "quantize: bad --calibration" 2 "expected minmax or percentile" "$KD" quantize "$T" \
    --calib "$TRAIN" --out "$Q" --calibration median
expect "quantize with a comparison" 0 "^int8 .*x" "$KD" quantize "$T" --calib "$TRAIN" --out "$Q" \
    --calib-count 200 --test "$TEST" --seconds 0.05
expect "quantize, percentile" 0 "percentile    99.9" "$KD" quantize "$T" --calib "$TRAIN" \
    --out "$TMP/p8.safetensors" --calibration percentile --percentile 99.9
expect "quantize refuses --percentile without --calibration percentile" 2 \
    "--percentile does not apply without --calibration percentile" "$KD" quantize "$T" \
    --calib "$TRAIN" --out "$TMP/p9.safetensors" --percentile 99
check "a refused quantize writes nothing" [ ! -e "$TMP/p9.safetensors" ]
expect "quantize refuses --seconds without --test" 2 "--seconds does not apply without --test" \
    "$KD" quantize "$T" --calib "$TRAIN" --out "$TMP/p9.safetensors" --seconds 2
expect "eval an int8 model" 0 "qdense 128 relu=1" "$KD" eval "$Q" --test "$TEST"
expect "info lists int8 tensors" 0 "I8" "$KD" info "$Q"
qacc=$("$KD" eval "$Q" --test "$TEST" --quiet)
facc=$("$KD" eval "$T" --test "$TEST" --quiet)
check "int8 accuracy is near the float one ($qacc% vs $facc%)" \
    awk "BEGIN { d = $qacc - $facc; exit !(d < 2 && d > -2) }"
check "the int8 file is at least 3.5x smaller" \
    awk "BEGIN { exit !($(wc -c <"$T") >= 3.5 * $(wc -c <"$Q")) }"
"$KD" train --model "input 784 | dense 16 | gelu | dense 10" --epochs 1 $SETS \
    --out "$TMP/gelu.safetensors" --quiet >/dev/null 2>&1
expect "quantize refuses a gelu" 1 "no int8 form" "$KD" quantize "$TMP/gelu.safetensors" \
    --calib "$TRAIN" --out "$TMP/g8.safetensors"

# ---- qat (issue 14): quantisation-aware distillation
QD="distill --teacher $T --epochs 1 $SETS --quiet"
expect "--quantize takes int8 only" 2 "the format is int8" "$KD" $QD --quantize int4 --out "$TMP/q4.safetensors"
expect "--init without --quantize" 2 "--init does not apply without --quantize int8" \
    "$KD" $QD --init "$T" --out "$TMP/qi.safetensors"
expect "--quantize refuses --compare" 2 "--compare does not apply to --quantize int8" \
    "$KD" $QD --quantize int8 --compare --out "$TMP/qc.safetensors"
expect "--quantize refuses --keep best" 2 "--keep does not apply to --quantize int8" \
    "$KD" $QD --quantize int8 --keep best --out "$TMP/qk.safetensors"
expect "--quantize refuses --checkpoint" 2 "--checkpoint does not apply to --quantize int8" \
    "$KD" $QD --quantize int8 --checkpoint "$TMP/qck" --out "$TMP/qck.safetensors"
expect "--init refuses --student" 2 "--student does not apply with --init" \
    "$KD" $QD --quantize int8 --init "$T" --student 784-16-10 --out "$TMP/qs.safetensors"
expect "--quantize refuses a student without an int8 form" 2 "has no int8 form: layer 1 ('gelu')" \
    "$KD" $QD --quantize int8 --student "input 784 | dense 16 | gelu | dense 10" --out "$TMP/qg.safetensors"
expect "--init of a missing file" 1 "cannot load --init" \
    "$KD" $QD --quantize int8 --init "$TMP/none.safetensors" --out "$TMP/qn.safetensors"
expect "quantisation-aware distillation writes an int8 student" 0 "int8 student (QAT)" \
    "$KD" distill --teacher $T --student 784-32-10 --epochs 1 $SETS --quantize int8 --out "$TMP/qat.safetensors"
expect "its file is int8" 0 "int8 weights, int32 biases" "$KD" info "$TMP/qat.safetensors"
expect "QAT fine-tuning of a float student" 0 "int8 student (QAT)" \
    "$KD" distill --teacher $T --init "$T" --epochs 1 --lr 0.005 $SETS --quantize int8 --out "$TMP/qat2.safetensors"
qacc=$("$KD" eval "$TMP/qat2.safetensors" --test "$TEST" --quiet)
check "the fine-tuned int8 teacher is near the float one ($qacc% vs $facc%)" \
    awk "BEGIN { d = $qacc - $facc; exit !(d < 3 && d > -3) }"
expect "kd eval of several models side by side" 0 "^teacher-int8.safetensors .*int8" \
    "$KD" eval "$T" "$Q" "$TMP/qat.safetensors" --test "$TEST" --seconds 0.05 --report "$TMP/side"
check "its report has the throughput column" grep -q "<th>throughput</th>" "$TMP/side/index.html"
expect "kd eval --json of several models" 0 '^\[{"model":' "$KD" eval "$T" "$Q" --test "$TEST" --json --seconds 0.05
# --json with --report: the standard output stays one JSON document (the report's path on stderr)
if "$KD" eval "$T" --test "$TEST" --json --seconds 0.05 --report "$TMP/evrep" 2>/dev/null |
    python3 -c 'import json, sys; json.load(sys.stdin)' && [ -s "$TMP/evrep/index.html" ]; then
    pass "kd eval --json --report: one JSON document"
else
    fail "kd eval --json --report: the standard output is not one JSON document"
fi
expect "kd eval --report with -q" 2 "which -q leaves out" "$KD" eval "$T" --test "$TEST" -q \
    --report "$TMP/evrep2"
expect "kd eval --report onto a file" 1 "is not a directory" "$KD" eval "$T" --test "$TEST" \
    --report "$T"
expect "--label-column without a .csv is refused" 2 "--label-column does not apply to data without" \
    "$KD" eval "$T" --test "$TEST" --label-column label
expect "--x-name without a .npz is refused" 2 "--x-name does not apply to data without" \
    "$KD" eval "$T" --test "$TEST" --x-name images
# A test set holding only some of the model's classes (labels 0 to 4 of 10) is evaluated; the
# classes it lacks show "-" (it was refused: "its last layer must have 5").
if command -v python3 >/dev/null 2>&1 && python3 - "$TEST" "$TMP/half" <<'PY'
import gzip, sys
src, dst = sys.argv[1], sys.argv[2]
x = gzip.open(src + "-images-idx3-ubyte.gz").read()
y = gzip.open(src + "-labels-idx1-ubyte.gz").read()
keep = [i for i in range(len(y) - 8) if y[8 + i] < 5]
with gzip.open(dst + "-images-idx3-ubyte.gz", "wb") as f:
    f.write(x[:4] + len(keep).to_bytes(4, "big") + x[8:16])
    f.write(b"".join(x[16 + 784 * i:16 + 784 * (i + 1)] for i in keep))
with gzip.open(dst + "-labels-idx1-ubyte.gz", "wb") as f:
    f.write(y[:4] + len(keep).to_bytes(4, "big") + bytes(y[8 + i] for i in keep))
PY
then
    expect "kd eval of a test set with 5 of the model's 10 classes" 0 "^    9  *- *0$" \
        "$KD" eval "$T" --test "$TMP/half" --seconds 0.05
else
    skip "kd eval of a test set with some classes: python3 cannot write it"
fi
expect "kd eval --quiet of several models" 0 "^[0-9.]*$" "$KD" eval "$T" "$Q" --test "$TEST" --quiet
expect "kd info of an int8 model says int8" 0 "int8 weights, int32 biases" "$KD" info "$Q"
# ---- end qat

# ---------------------------------------------------------------- resume
# The same run three ways: uninterrupted; stopped after epoch 2 then resumed; killed then resumed.
RUN="distill --teacher $T --student 784-64-10 --epochs 4 --seed 7 $SETS --quiet"
"$KD" $RUN --out "$TMP/full.safetensors" >/dev/null 2>&1
expect "a run stopped after epoch 2" 0 "" \
    "$KD" $RUN --out "$TMP/part.safetensors" --checkpoint "$TMP/ck" --stop-after-epoch 2
check "a stopped run saves no model" [ ! -e "$TMP/part.safetensors" ]
check "a stopped run leaves a checkpoint" [ -s "$TMP/ck" ]
expect "kd info says a checkpoint is one" 0 "a training checkpoint: the model below, with sgd state after step" \
    "$KD" info "$TMP/ck"
expect "kd eval reads the student out of a checkpoint" 0 "accuracy" "$KD" eval "$TMP/ck" --test "$TEST"
expect "--resume finishes it" 0 "distilled student" \
    "$KD" $RUN --out "$TMP/part.safetensors" --checkpoint "$TMP/ck" --resume
check "resumed model is byte-identical to the uninterrupted one" \
    cmp -s "$TMP/full.safetensors" "$TMP/part.safetensors"
expect "a checkpoint of other options is refused, naming them" 2 "ck is of another run: --lr is 0.1 but was 0.05" \
    "$KD" $RUN --lr 0.1 --out "$TMP/other.safetensors" --checkpoint "$TMP/ck" --resume
expect "a distill checkpoint resumed by kd train names both commands" 2 \
    "ck is of a kd distill run, not of kd train: resume it with the command that wrote it" \
    "$KD" train --model 784-64-10 --epochs 4 --seed 7 $SETS --quiet --out "$TMP/other.safetensors" \
    --checkpoint "$TMP/ck" --resume
# A short run extended with --resume --epochs: the default warm-up (2 epochs, at most half the run)
# is the checkpoint's, not the longer run's (2 epochs then 4 had been refused: "--warmup-epochs is 2
# but was 1").
SHORT="distill --teacher $T --student 784-16-10 --seed 7 $SETS --quiet --no-compare"
"$KD" $SHORT --epochs 2 --out "$TMP/short.safetensors" --checkpoint "$TMP/sck" >/dev/null 2>&1
expect "a 2-epoch distill extends to 4 with --resume" 0 "distilled student" \
    "$KD" $SHORT --epochs 4 --out "$TMP/short4.safetensors" --checkpoint "$TMP/sck" --resume

# ---------------------------------------------------------------- your own data (issue 13)
# The subset again as .npy, .npz, .csv and an ImageFolder, written by make_byod.py (standard
# library only); Kaggle's IDX names through symbolic links.
HERE=$(dirname "$0")
B="$TMP/byod"
if command -v python3 >/dev/null 2>&1 && python3 "$HERE/make_byod.py" "$DATA" "$B" 300 100; then
    SMALL="--model 784-10 --epochs 2 --quiet"
    expect "train on a .npy pair, --normalize" 0 "saved" "$KD" train $SMALL --normalize \
        --train "$B/train_x.npy" --train-y "$B/train_y.npy" --test "$B/test_x.npy" \
        --test-y "$B/test_y.npy" --out "$TMP/npy.safetensors"
    acc=$("$KD" eval "$TMP/npy.safetensors" --test "$B/test_x.npy" --test-y "$B/test_y.npy" --quiet)
    acc2=$("$KD" eval "$TMP/npy.safetensors" --test "$B/test.npz" --x-name images --y-name labels \
        --quiet)
    check "eval applies the stored normalisation, same on .npy and .npz ($acc, $acc2)" \
        [ -n "$acc" ] && [ "$acc" = "$acc2" ]
    expect ".npy without its labels is a usage error" 2 "train-y LABELS.npy" "$KD" train $SMALL \
        --train "$B/train_x.npy" --test "$B/test_x.npy" --out "$TMP/x.safetensors"
    expect "train on a .npz with other array names" 0 "saved" "$KD" train $SMALL \
        --train "$B/train.npz" --test "$B/test.npz" --x-name images --y-name labels \
        --out "$TMP/npz.safetensors"
    expect "a .npz without the named array" 1 "cannot read .*train.npz" "$KD" train $SMALL \
        --train "$B/train.npz" --test "$B/test.npz" --out "$TMP/x.safetensors"
    expect "train on a .csv" 0 "saved" "$KD" train $SMALL --train "$B/train.csv" \
        --test "$B/test.csv" --label-column label --out "$TMP/csv.safetensors"
    expect "a .csv needs --label-column" 2 "label-column NAME" "$KD" train $SMALL \
        --train "$B/train.csv" --test "$B/test.csv" --out "$TMP/x.safetensors"
    expect "a .csv without that column" 1 "cannot read" "$KD" train $SMALL --train "$B/train.csv" \
        --test "$B/test.csv" --label-column species --out "$TMP/x.safetensors"
    expect "train on an ImageFolder" 0 "saved" "$KD" train --model 784-2 --epochs 2 --quiet \
        --channels 1 --normalize --train "$B/train_images" --test "$B/test_images" \
        --out "$TMP/img.safetensors"
    expect "eval on an ImageFolder" 0 "^[0-9.]*$" "$KD" eval "$TMP/img.safetensors" \
        --test "$B/test_images" --channels 1 --quiet
    expect "eval of a model whose outputs are not the data's classes" 2 \
        "the model has 2 outputs but the data has 10 classes" "$KD" eval "$TMP/img.safetensors" \
        --test "$TEST"
    expect "eval names an ImageFolder's classes" 0 "1  trouser" "$KD" eval \
        "$TMP/img.safetensors" --test "$B/test_images" --channels 1
    expect "an RGB ImageFolder does not fit a 784-input model" 2 "channels 1" "$KD" train \
        --model 784-2 --epochs 1 --quiet --train "$B/train_images" --test "$B/test_images" \
        --out "$TMP/x.safetensors"
    expect "training and test data of other sizes" 1 "training images are" "$KD" train $SMALL \
        --train "$HERE/../data/csv/iris.csv" --label-column species --test "$TEST" \
        --out "$TMP/x.safetensors"
    expect "training and test sets naming other classes" 1 "name different classes" "$KD" train \
        $SMALL --train "$B/train.csv" --label-column label --test "$B/test_images" --channels 1 \
        --out "$TMP/x.safetensors"
    expect "--train-y beside a .csv is refused" 2 "train-y does not apply unless --train is a .npy" \
        "$KD" train $SMALL --train "$B/train.csv" --label-column label --train-y "$B/train_y.npy" \
        --test "$B/test.csv" --out "$TMP/x.safetensors"
    # prune and quantize read the same formats (they had read IDX files only, and a prune of a
    # model of other inputs overflowed its batch buffer)
    expect "prune on .csv tables" 0 "saved" "$KD" prune "$TMP/csv.safetensors" --sparsity 0.5 \
        --epochs 1 --train "$B/train.csv" --test "$B/test.csv" --label-column label \
        --out "$TMP/pcsv.safetensors"
    expect "prune on a .npz with other array names" 0 "saved" "$KD" prune "$TMP/npz.safetensors" \
        --sparsity 0.5 --epochs 1 --train "$B/train.npz" --test "$B/test.npz" --x-name images \
        --y-name labels --out "$TMP/pnpz.safetensors"
    expect "prune refuses a model of other inputs" 2 "the model takes 784 inputs" "$KD" prune \
        "$TMP/csv.safetensors" --sparsity 0.5 --epochs 1 --train "$HERE/../data/csv/iris.csv" \
        --test "$HERE/../data/csv/iris.csv" --label-column species --out "$TMP/pbad.safetensors"
    check "a refused prune writes nothing" [ ! -e "$TMP/pbad.safetensors" ]
    expect "prune: --label-column without a .csv" 2 "label-column does not apply" "$KD" prune \
        "$TMP/csv.safetensors" --sparsity 0.5 --label-column label --out "$TMP/pbad.safetensors"
    expect "quantize calibrates and tests on labelled .csv tables" 0 "^int8 .*x" "$KD" quantize \
        "$TMP/csv.safetensors" --calib "$B/train.csv" --label-column label --test "$B/test.csv" \
        --seconds 0.05 --out "$TMP/qcsv.safetensors"
    expect "quantize tests on a .npy pair" 0 "^int8 .*x" "$KD" quantize "$TMP/npy.safetensors" \
        --calib "$B/train_x.npy" --test "$B/test_x.npy" --test-y "$B/test_y.npy" --seconds 0.05 \
        --out "$TMP/qnpy.safetensors"
    expect "quantize refuses a test set of other inputs before writing" 2 "the model takes 784" \
        "$KD" quantize "$TMP/csv.safetensors" --calib "$B/train_x.npy" --test "$B/test_images" \
        --out "$TMP/qbad.safetensors"
    check "a refused quantize writes nothing" [ ! -e "$TMP/qbad.safetensors" ]
    expect "a missing .npy" 1 "cannot read" "$KD" train $SMALL --train "$TMP/none.npy" \
        --train-y "$B/train_y.npy" --test "$TEST" --out "$TMP/x.safetensors"
    mkdir -p "$TMP/kaggle"
    ln -s "$(cd "$DATA" && pwd)/fmnist-train-2000-images-idx3-ubyte.gz" \
        "$TMP/kaggle/train-images.idx3-ubyte.gz"
    ln -s "$(cd "$DATA" && pwd)/fmnist-train-2000-labels-idx1-ubyte.gz" \
        "$TMP/kaggle/train-labels.idx1-ubyte.gz"
    expect "an IDX prefix with Kaggle's names" 0 "saved" "$KD" train --model 784-10 --epochs 1 \
        --quiet --train "$TMP/kaggle/train" --test "$TEST" --out "$TMP/x.safetensors"
    expect "--data DIR with Kaggle's names" 0 "saved" "$KD" train --model 784-10 --epochs 1 \
        --quiet --data "$TMP/kaggle" --test "$TEST" --out "$TMP/x.safetensors"

    # kd predict
    expect "predict needs --input" 2 "input FILE is required" "$KD" predict "$TMP/npy.safetensors"
    expect "predict --out of another extension" 2 "npy or .csv" "$KD" predict \
        "$TMP/npy.safetensors" --input "$B/test_x.npy" --out "$TMP/p.txt"
    expect "predict --output of another kind" 2 "logits, probs or classes" "$KD" predict \
        "$TMP/npy.safetensors" --input "$B/test_x.npy" --output votes
    expect "predict classes as CSV on stdout" 0 "^class$" "$KD" predict "$TMP/npy.safetensors" \
        --input "$B/test_x.npy" --output classes
    check "predict writes a row an example" \
        [ "$("$KD" predict "$TMP/npy.safetensors" --input "$B/test_x.npy" | wc -l)" -eq 101 ]
    expect "predict probabilities to a .npy" 0 "" "$KD" predict "$TMP/csv.safetensors" \
        --input "$B/test.csv" --label-column label --output probs --out "$TMP/p.npy"
    check "the .npy of probabilities is [100, 10] float32" \
        grep -q "'<f4'.*(100, 10)" "$TMP/p.npy"
    expect "predict on an IDX image file" 0 "^logit0," "$KD" predict "$TMP/npy.safetensors" \
        --input "$TEST-images-idx3-ubyte.gz"
    expect "predict on inputs of another size" 2 "takes 784 inputs" "$KD" predict \
        "$TMP/img.safetensors" --input "$HERE/../data/csv/iris.csv" --label-column species
else
    skip "your own data: python3 cannot write the fixtures"
fi

# ---------------------------------------------------------------- --teacher-logits
HERE=$(dirname "$0")
"$KD" train $SETS --model 784-64-10 --epochs 2 --quiet --out "$TMP/lt.safetensors" >/dev/null 2>&1
expect "predict the teacher's logits on an IDX prefix" 0 "" "$KD" predict "$TMP/lt.safetensors" \
    --input "$TRAIN" --out "$TMP/lt.npy"
LRUN="distill $SETS --student 784-10 --epochs 2 --quiet"
expect "distill from a .npy of logits" 0 "distilled from the logits of" "$KD" $LRUN \
    --teacher-logits "$TMP/lt.npy" --out "$TMP/ls1.safetensors"
expect "distill with --teacher, keeping its logits" 0 "saved\|distilled student" "$KD" $LRUN \
    --val 0 --teacher "$TMP/lt.safetensors" --soft-targets-cache "$TMP/lt.cache" \
    --out "$TMP/ls2.safetensors"
expect "distill from those logits (safetensors)" 0 "distilled from the logits" "$KD" $LRUN \
    --teacher-logits "$TMP/lt.cache" --out "$TMP/ls3.safetensors"
check "the same student from the teacher and from its logits" \
    cmp -s "$TMP/ls2.safetensors" "$TMP/ls3.safetensors"
expect "a logits cache of other teachers is recomputed, not reused" 0 "teacher logits: [0-9]" \
    "$KD" distill $SETS --student 784-10 --epochs 1 --val 0 --teacher "$TMP/lt.safetensors" \
    --teacher "$TMP/lt.safetensors" --soft-targets-cache "$TMP/lt.cache" \
    --out "$TMP/ls4.safetensors"
expect "kd info lists a file's tensors and metadata" 0 "kd.spec" "$KD" info "$TMP/lt.safetensors"
expect "logits of another training set" 1 "the training set has 500 examples" "$KD" distill \
    --train "$TEST" --test "$TEST" --student 784-10 --epochs 1 --teacher-logits "$TMP/lt.npy"
expect "a student of another number of classes than the data" 2 "the student has 5 outputs but the data has 10 classes" "$KD" $LRUN \
    --student 784-5 --teacher-logits "$TMP/lt.npy"
expect "a logits file without a tensor logits" 1 "no float32 tensor" "$KD" $LRUN \
    --teacher-logits "$TMP/lt.safetensors"
expect "a missing logits file" 1 "cannot read --teacher-logits" "$KD" $LRUN \
    --teacher-logits "$TMP/none.npy"
expect "--teacher-logits with --val" 2 "no --val split" "$KD" $LRUN --val 0.1 \
    --teacher-logits "$TMP/lt.npy"
expect "--teacher-logits with --teacher" 2 "replaces --teacher" "$KD" $LRUN \
    --teacher "$TMP/lt.safetensors" --teacher-logits "$TMP/lt.npy"

# ---------------------------------------------------------------- --teacher-spec for a state dict
if command -v python3 >/dev/null 2>&1 &&
    python3 "$HERE/strip_metadata.py" "$TMP/lt.safetensors" "$TMP/sd.safetensors"; then
    expect "a state dict without --teacher-spec" 1 "give its architecture with --teacher-spec" \
        "$KD" $LRUN --teacher "$TMP/sd.safetensors"
    expect "a state dict with --teacher-spec" 0 "keeps" "$KD" distill $SETS --student 784-10 \
        --epochs 2 --teacher "$TMP/sd.safetensors" --teacher-spec 784-64-10 \
        --out "$TMP/sd-s.safetensors"
    expect "a state dict of another shape than --teacher-spec" 1 "has shape \[64, 784\]" \
        "$KD" $LRUN --teacher "$TMP/sd.safetensors" --teacher-spec 784-32-10
    expect "--teacher-spec against a file that names another spec" 2 "but --teacher-spec says" \
        "$KD" $LRUN --teacher "$TMP/lt.safetensors" --teacher-spec 784-32-10
else
    skip "--teacher-spec for a state dict: python3 cannot write the fixture"
fi

TRAINRUN="train --model 784-256-10 --epochs 12 --seed 3 $SETS --quiet"
"$KD" $TRAINRUN --out "$TMP/tfull.safetensors" >/dev/null 2>&1
"$KD" $TRAINRUN --out "$TMP/tkill.safetensors" --checkpoint "$TMP/tck" >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -e "$TMP/tck" ] && [ $i -lt 600 ]; do
    sleep 0.05
    i=$((i + 1))
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
# Ctrl-C: exit status 130 (the table's), the checkpoint of the last epoch readable. (A shell
# starts background jobs with SIGINT ignored; env puts back the default a terminal's job has.)
env --default-signal=INT "$KD" $TRAINRUN --out "$TMP/tint.safetensors" --checkpoint "$TMP/tint" >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -e "$TMP/tint" ] && [ $i -lt 600 ]; do
    sleep 0.05
    i=$((i + 1))
done
kill -INT "$pid" 2>/dev/null
wait "$pid"
rc=$?
check "Ctrl-C ends the run with exit status 130 (got $rc)" [ "$rc" -eq 130 ]
expect "a run stopped by Ctrl-C resumes from its checkpoint" 0 "saved" \
    "$KD" $TRAINRUN --out "$TMP/tint.safetensors" --checkpoint "$TMP/tint" --resume
check "stopped by Ctrl-C and resumed is byte-identical" \
    cmp -s "$TMP/tfull.safetensors" "$TMP/tint.safetensors"
# What a kill during a save leaves: the library's temporary file and the tool's sidecar one (of a
# process that is gone). --resume removes both; a live process's file stays.
dead=$(sh -c 'echo $$')
printf partial >"$TMP/tck.tmp.Ab12Cd"
touch -d '1 hour ago' "$TMP/tck.tmp.Ab12Cd"
printf partial >"$TMP/tck.run.tmp.$dead"
printf partial >"$TMP/tck.run.tmp.1"
expect "--resume after SIGKILL" 0 "saved" \
    "$KD" $TRAINRUN --out "$TMP/tkill.safetensors" --checkpoint "$TMP/tck" --resume
check "killed and resumed model is byte-identical" cmp -s "$TMP/tfull.safetensors" "$TMP/tkill.safetensors"
check "--resume removed the killed save's temporary file" [ ! -e "$TMP/tck.tmp.Ab12Cd" ]
check "--resume removed the killed run's sidecar temporary file" [ ! -e "$TMP/tck.run.tmp.$dead" ]
check "a live process's temporary file stays" [ -e "$TMP/tck.run.tmp.1" ]

# ---------------------------------------------------------------- the tool behaves (issue 13, section 5)
# Every output is checked before any data is read: one line, exit 1, no epoch trained.
QUICK="train --model 784-16-10 --epochs 1 $SETS"
# refused CODE PATTERN ARGS...: exit CODE, the message, and no epoch trained.
refused() {
    name=$1 code=$2 pattern=$3
    shift 3
    out=$("$@" 2>&1)
    rc=$?
    if [ "$rc" -eq "$code" ] && printf '%s\n' "$out" | grep -q -e "$pattern" &&
        ! printf '%s\n' "$out" | grep -q "epoch  *1/"; then
        pass "$name"
    else
        fail "$name: exit $rc (want $code, nothing trained), output:"
        printf '%s\n' "$out" | sed -n '1,15s/^/    /p'
    fi
}
refused "--out a directory" 1 "cannot write $TMP: it is a directory" "$KD" $QUICK --out "$TMP"
# none PATH...: true when no PATH exists (an unmatched glob stays as written, and does not).
none() {
    for f in "$@"; do [ -e "$f" ] && return 1; done
    return 0
}
# A save renames a temporary file over its path: a pipe (or a link to one) there would be replaced
# by a regular file. Refused before any work (exit 2), the pipe left as it was; a link to a regular
# file is replaced as before.
mkfifo "$TMP/fifo.st" "$TMP/fifo.npy" "$TMP/fifock.run" && ln -s fifo.st "$TMP/to-fifo.st"
refused "--out a FIFO" 2 "cannot write $TMP/fifo.st: it is a pipe (FIFO), not a regular file" \
    "$KD" $QUICK --out "$TMP/fifo.st"
refused "--out a link to a FIFO" 2 "it is a pipe (FIFO), not a regular file" \
    "$KD" $QUICK --out "$TMP/to-fifo.st"
refused "--checkpoint whose .run is a FIFO" 2 "cannot write $TMP/fifock.run: it is a pipe" \
    "$KD" $QUICK --out "$TMP/o.safetensors" --checkpoint "$TMP/fifock"
expect "export --out a FIFO" 2 "it is a pipe (FIFO)" "$KD" export "$T" --out "$TMP/fifo.st"
expect "predict --out a .npy FIFO" 2 "it is a pipe (FIFO)" "$KD" predict "$T" --input "$TEST" \
    --out "$TMP/fifo.npy"
if [ -p "$TMP/fifo.st" ] && [ -p "$TMP/fifo.npy" ] && [ -p "$TMP/fifock.run" ] &&
    [ -L "$TMP/to-fifo.st" ] && [ -p "$TMP/to-fifo.st" ] && none "$TMP"/*fifo*.tmp.*; then
    pass "the FIFOs and the link to one are left as they were, no temporary file beside"
else
    fail "a refused save replaced a FIFO or left a temporary file"
fi
printf x >"$TMP/regular.st" && ln -s regular.st "$TMP/to-regular.st"
expect "export --out a link to a regular file" 0 "wrote" "$KD" export "$T" --out "$TMP/to-regular.st"
refused "--out in a missing directory" 1 "cannot write $TMP/none/m.safetensors: $TMP/none: No such file" \
    "$KD" $QUICK --out "$TMP/none/m.safetensors"
printf x >"$TMP/afile"
refused "--report under a file" 1 "cannot write the report $TMP/afile/r: $TMP/afile is not a directory" \
    "$KD" $QUICK --out "$TMP/o.safetensors" --report "$TMP/afile/r"
refused "--checkpoint in a missing directory" 1 "cannot write $TMP/none/ck" \
    "$KD" $QUICK --out "$TMP/o.safetensors" --checkpoint "$TMP/none/ck"
refused "--log in a missing directory" 1 "cannot write $TMP/none/l.jsonl" \
    "$KD" $QUICK --out "$TMP/o.safetensors" --log "$TMP/none/l.jsonl"
printf 'an old line\n' >"$TMP/keep.jsonl"
refused "a run refused for its data" 1 "no training set" "$KD" train --model 784-16-10 \
    --train "$TMP/none" --test "$TEST" --epochs 1 --out "$TMP/o.safetensors" --log "$TMP/keep.jsonl"
if [ "$(cat "$TMP/keep.jsonl")" = "an old line" ]; then
    pass "a refused run leaves the old --log as it was"
else
    fail "a refused run emptied the old --log"
fi
refused "distill --out a directory" 1 "it is a directory" "$KD" distill --teacher "$T" \
    --student 784-16-10 --epochs 1 $SETS --out "$TMP"
# An output that is an input, or another output, would destroy it: refused (exit 2).
cp "$T" "$TMP/teacher-copy.safetensors"
refused "--out is the --teacher" 2 "is a file this run reads" "$KD" distill \
    --teacher "$TMP/teacher-copy.safetensors" --student 784-16-10 --epochs 1 $SETS \
    --out "$TMP/teacher-copy.safetensors"
refused "--out is the training data" 2 "is a file this run reads" "$KD" $QUICK \
    --out "$TRAIN-images-idx3-ubyte.gz"
refused "--temperature with a feature method and no --alpha" 2 \
    "temperature does not apply to --method hint without --alpha > 0" "$KD" distill --teacher "$T" \
    --student 784-16-10 --epochs 1 $SETS --method hint --temperature 3 --out "$TMP/fm.safetensors"
refused "--beta with a feature method names it" 2 "beta does not apply to --method crd" "$KD" \
    distill --teacher "$T" --student 784-16-10 --epochs 1 $SETS --method crd --beta 2 \
    --out "$TMP/fm.safetensors"
refused "--soft-targets-cache is the teacher" 2 "soft-targets-cache .* is a file this run reads" \
    "$KD" distill --teacher "$T" --student 784-16-10 --epochs 1 $SETS --quiet \
    --soft-targets-cache "$T" --out "$TMP/stc.safetensors"
echo "not a cache" > "$TMP/notes.txt"
refused "--soft-targets-cache on a file that is no cache" 2 "is not a teachers' logits cache" \
    "$KD" distill --teacher "$T" --student 784-16-10 --epochs 1 $SETS --quiet \
    --soft-targets-cache "$TMP/notes.txt" --out "$TMP/stc.safetensors"
check "the file named as a cache is intact" grep -q "not a cache" "$TMP/notes.txt"
refused "--out is the --checkpoint" 2 "--out and --checkpoint name the same file" "$KD" $QUICK \
    --out "$TMP/same.st" --checkpoint "$TMP/./same.st"
refused "--out is the --log" 2 "--out and --log name the same file" "$KD" $QUICK \
    --out "$TMP/same.st" --log "$TMP/same.st"
# nor over a file of the checkpoint: FILE.run, and distill's FILE.teacher, FILE.alone and theirs
refused "--out is the checkpoint's .run" 2 "--out and --checkpoint (its .run) name the same file" \
    "$KD" $QUICK --checkpoint "$TMP/b.ck" --out "$TMP/b.ck.run"
refused "--log is the checkpoint's .run" 2 "--log and --checkpoint (its .run) name the same file" \
    "$KD" $QUICK --checkpoint "$TMP/b.ck" --out "$TMP/o.safetensors" --log "$TMP/./b.ck.run"
refused "distill --out is the student alone's checkpoint" 2 \
    "--out and --checkpoint (its .alone) name the same file" "$KD" distill --teacher "$T" \
    --student 784-16-10 --epochs 1 $SETS --compare --checkpoint "$TMP/b.ck" --out "$TMP/b.ck.alone"
refused "distill --log is the student alone's model" 2 \
    "--log and --out (its student alone) name the same file" "$KD" distill --teacher "$T" \
    --student 784-16-10 --epochs 1 $SETS --compare --out "$TMP/sa.safetensors" \
    --log "$TMP/sa-alone.safetensors"
cp "$T" "$TMP/tc-alone.safetensors"
refused "distill --teacher is the student alone's model" 2 "is a file this run reads" "$KD" \
    distill --teacher "$TMP/tc-alone.safetensors" --student 784-16-10 --epochs 1 $SETS \
    --compare --out "$TMP/tc.safetensors"
check "the teacher named as the student alone's model is intact" cmp -s "$T" "$TMP/tc-alone.safetensors"
refused "distill --log is the trained teacher's .run" 2 \
    "--log and --checkpoint (its .teacher.run) name the same file" "$KD" distill \
    --teacher-spec 784-16-10 --student 784-16-10 --epochs 1 $SETS --checkpoint "$TMP/b.ck" \
    --out "$TMP/o.safetensors" --log "$TMP/b.ck.teacher.run"
# The same for the commands with options of their own (they had overwritten their inputs), and
# prune checks --out before its fine-tuning.
cp "$T" "$TMP/own.safetensors"
refused "export --out is the model" 2 "is a file this run reads" "$KD" export \
    "$TMP/own.safetensors" --out "$TMP/own.safetensors"
refused "quantize --out is the model" 2 "is a file this run reads" "$KD" quantize \
    "$TMP/own.safetensors" --calib "$TRAIN" --out "$TMP/./own.safetensors"
refused "quantize --out is the calibration data" 2 "is a file this run reads" "$KD" quantize \
    "$TMP/own.safetensors" --calib "$TRAIN" --out "$TRAIN-images-idx3-ubyte.gz"
refused "prune --out is the model" 2 "is a file this run reads" "$KD" prune \
    "$TMP/own.safetensors" --sparsity 0.5 --out "$TMP/own.safetensors"
refused "prune --out in a missing directory" 1 "cannot write $TMP/none/p.safetensors" "$KD" prune \
    "$TMP/own.safetensors" --sparsity 0.5 --epochs 1 --data "$TRAIN" --out "$TMP/none/p.safetensors"
cp "$T" "$TMP/own.npy"
refused "predict --out is the model" 2 "is a file this run reads" "$KD" predict \
    "$TMP/own.npy" --input "$TRAIN" --out "$TMP/own.npy"
if cmp -s "$T" "$TMP/own.safetensors" && cmp -s "$T" "$TMP/own.npy"; then
    pass "the refused commands left their input as it was"
else
    fail "a refused command changed its input model"
fi
# --auto chooses the method and T, alpha, lr: a choice given beside it is refused, not dropped.
expect "--auto with --method" 2 "--method does not apply to --auto" "$KD" distill --auto \
    --method dkd --teacher "$T" $SETS --out "$TMP/a.st"
expect "--auto with --temperature" 2 "--temperature does not apply to --auto" "$KD" distill \
    --auto --temperature 2 --teacher "$T" $SETS --out "$TMP/a.st"
expect "--auto-budget without --auto" 2 "go with --auto" "$KD" distill --auto-budget 3 \
    --teacher "$T" $SETS --out "$TMP/a.st"
if [ "$(id -u)" -ne 0 ]; then
    mkdir -p "$TMP/ro" && chmod 555 "$TMP/ro"
    refused "--out in an unwritable directory" 1 "$TMP/ro: Permission denied" \
        "$KD" $QUICK --out "$TMP/ro/m.safetensors"
else
    skip "--out in an unwritable directory (root writes anywhere)"
fi

# A --log that cannot be written to the end (a file size limit here, which binds root too; a full
# disk alike): the run goes on and saves its model, then fails, exit 1, saying the log is cut.
IRIS="--train $HERE/../data/csv/iris.csv --test $HERE/../data/csv/iris.csv --label-column species"
# shellcheck disable=SC2086
out=$(trap '' XFSZ; ulimit -f 2; "$KD" train --model 3-3 --epochs 40 $IRIS --quiet \
    --out "$TMP/iris.safetensors" --log "$TMP/iris.jsonl" 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -q "cannot write the log $TMP/iris.jsonl: File too large" &&
    [ -s "$TMP/iris.safetensors" ]; then
    pass "a --log cut short by a file size limit fails the run, exit 1"
else
    fail "a --log cut short: exit $rc (want 1), output: $out"
fi

# A first checkpoint that cannot be saved (the limit again: its small .run sidecar fits, the
# checkpoint does not) leaves no .run behind, nor a temporary file.
out=$(trap '' XFSZ; ulimit -f 2; "$KD" $QUICK --quiet --out "$TMP/lim.safetensors" \
    --checkpoint "$TMP/lim.ck" 2>&1)
rc=$?
if [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -q "cannot write the checkpoint $TMP/lim.ck" &&
    none "$TMP"/lim.ck*; then
    pass "a first checkpoint that cannot be saved leaves no sidecar"
else
    fail "a failed first checkpoint: exit $rc (want 1), left: $(echo "$TMP"/lim.ck*), output: $out"
fi

# A closed standard output's descriptor is not handed to the next file opened: what the run prints
# does not land in its log or its model.
"$KD" $QUICK --out "$TMP/closed.safetensors" --log "$TMP/closed.jsonl" >&- 2>/dev/null
rc=$?
if [ "$rc" -eq 1 ] && [ "$(grep -c -v '^{"run":' "$TMP/closed.jsonl")" -eq 0 ] &&
    "$KD" info "$TMP/closed.safetensors" >/dev/null 2>&1; then
    pass "a closed standard output writes nothing into the log or the model"
else
    fail "a closed standard output: exit $rc (want 1), log: $(cat "$TMP/closed.jsonl")"
fi

# A diverging run stops at once, exit 3, nothing saved; a collapse keeps the last good checkpoint.
expect "an exploding loss stops the run, exit 3" 3 "model run diverged in epoch 1: the loss exploded" \
    "$KD" $QUICK --lr 1000 --out "$TMP/boom.safetensors"
check "a diverged run saves no model" [ ! -e "$TMP/boom.safetensors" ]
out=$("$KD" train --model 784-32-10 $SETS --epochs 6 --warmup-epochs 6 --lr 10 --schedule constant \
    --batch 16 --out "$TMP/lr10.safetensors" --checkpoint "$TMP/lr10.ck" 2>&1)
rc=$?
bad=$(printf '%s\n' "$out" | sed -n 's/.* run \(diverged\|collapsed\) in epoch \([0-9]*\).*/\2/p')
kept=$(grep -c '^epoch ' "$TMP/lr10.ck.run" 2>/dev/null)
check "lr 10 stops with exit 3 and keeps the checkpoint of the epoch before (exit $rc, bad epoch $bad, kept ${kept:-0})" \
    [ "$rc" -eq 3 ] && [ -n "$bad" ] && [ "${kept:-0}" -eq $((bad - 1)) ]

# --drop-last, and batch norm never sees a lone example.
BN="input 784 | dense 32 | bn | relu | dense 10"
expect "a last batch of one with batch norm is left out, and said" 0 "single example, which batch norm" \
    "$KD" train --model "$BN" --batch 1999 --epochs 1 $SETS --out "$TMP/bn.safetensors"
out=$("$KD" train --model 784-16-10 --batch 1999 --epochs 1 $SETS --out "$TMP/nobn.safetensors" 2>&1)
check "without batch norm the lone example is trained" [ $? -eq 0 ] && \
    ! printf '%s\n' "$out" | grep -q "single example"
expect "--drop-last" 0 "saved" "$KD" train --model 784-16-10 --batch 1500 --epochs 1 --drop-last \
    $SETS --out "$TMP/dl.safetensors" --log "$TMP/dl.jsonl"
expect "--drop-last with a batch larger than the set" 2 "leaves no batch of the 2000" \
    "$KD" train --model 784-16-10 --batch 3000 --drop-last --epochs 1 $SETS --out "$TMP/x.safetensors"

# A model that does not fit the data is exit 2 in every command.
refused "outputs that are not the data's classes" 2 "the model has 32 outputs but the data has 10 classes" \
    "$KD" train --model 784-32 --epochs 1 $SETS --out "$TMP/x.safetensors"
refused "distill refuses such a student before training a teacher" 2 "the student has 32 outputs" \
    "$KD" distill --teacher-spec 784-16-10 --student 784-32 --epochs 1 $SETS --out "$TMP/x.safetensors"
expect "eval of a model of another input size" 2 "takes 784 inputs" "$KD" eval "$T" \
    --test "$HERE/../data/csv/iris.csv" --label-column species

# Options that do not apply are refused by name.
expect "--temperature with --method mse" 2 "--temperature does not apply to --method mse" \
    "$KD" distill --method mse --temperature 2
expect "--beta with --method kd" 2 "--beta does not apply to --method kd" "$KD" distill --method kd --beta 3
expect "--gamma with --method dkd" 2 "--gamma does not apply to --method dkd" \
    "$KD" distill --method dkd --gamma 3
expect "--alpha with --method dist" 2 "--alpha does not apply to --method dist" \
    "$KD" distill --method dist --alpha 0.5
expect "--momentum with adam" 2 "--momentum does not apply to --optimizer adam" \
    "$KD" train --optimizer adam --momentum 0.5
expect "--min-lr with a constant schedule" 2 "--min-lr does not apply to --schedule constant" \
    "$KD" train --schedule constant --min-lr 0.001
expect "--teacher-epochs with --teacher" 2 "--teacher-epochs does not apply when the teacher is given" \
    "$KD" distill --teacher "$T" --teacher-epochs 3

# One exit-code table: kd --help, every command's help and the man page say the same.
codes=$("$KD" --help | sed -n '/^exit codes/,$p')
check "kd --help has the exit-code table" [ "$(printf '%s\n' "$codes" | grep -c '^  [0-3]  ')" -eq 4 ]
for c in train distill eval predict info; do
    check "kd help $c has the same table" \
        [ "$("$KD" help "$c" | sed -n '/^exit codes/,$p')" = "$codes" ]
done
MAN="$HERE/../../docs/kd.1"
for n in 0 1 2 3 130; do
    title=$(printf '%s\n' "$codes" | sed -n "s/^  $n  \([^:(]*\).*/\1/p" | sed 's/ *$//')
    check "kd.1's EXIT STATUS says $n is '$title'" \
        sh -c "sed -n '/^\.SH EXIT STATUS/,/^\.SH /p' '$MAN' | grep -A1 '^\.B $n\$' | grep -q '^$title'"
done

# --threads
expect "--threads 2" 0 "saved" "$KD" $QUICK --threads 2 --out "$TMP/t2.safetensors"
expect "--threads -1" 2 "--threads '-1' is not in \[0, 1024\]" "$KD" $QUICK --threads -1 --out "$TMP/x.safetensors"

# --config FILE: INI, keys the long options; the command line overrides it.
cat >"$TMP/kd.ini" <<INI
; shared by train and distill: temperature is distill's, train ignores it
temperature = 2
epochs = 1
[train]
model = input 784 | dense 16 | relu | dense 10
lr = 0.1
quiet = false
INI
expect "--config sets the options" 0 "epoch  1/1" "$KD" train --config "$TMP/kd.ini" $SETS \
    --out "$TMP/cfg.safetensors"
expect "the command line overrides --config" 0 "epoch  2/2" "$KD" train --config "$TMP/kd.ini" \
    $SETS --epochs 2 --out "$TMP/cfg.safetensors"
printf '[train]\nfrobs = 1\n' >"$TMP/bad.ini"
expect "--config with an unknown key" 2 "unknown key 'frobs'" "$KD" train --config "$TMP/bad.ini"
printf 'epochs = many\n' >"$TMP/bad.ini"
expect "--config with a bad value names the file" 2 "--epochs 'many' is not a number (in $TMP/bad.ini)" \
    "$KD" train --config "$TMP/bad.ini"
printf '[train]\ntemperature = 2\n' >"$TMP/bad.ini"
expect "--config: a [train] key train does not take" 2 "kd train takes no option --temperature" \
    "$KD" train --config "$TMP/bad.ini"
printf 'this is not ini\n' >"$TMP/bad.ini"
expect "--config that is not INI" 2 "line 1 is not INI" "$KD" train --config "$TMP/bad.ini"
expect "--config that cannot be opened" 1 "cannot read --config $TMP/none.ini: No such file" \
    "$KD" train --config "$TMP/none.ini"

# Checkpoints: never overwritten by accident; --resume may extend the run.
CK="train --model 784-16-10 $SETS --quiet --out $TMP/ck.safetensors --checkpoint $TMP/ck2"
"$KD" $CK --epochs 2 >/dev/null 2>&1
refused "an existing checkpoint without --resume or --force" 2 "ck2 exists: continue it with --resume" \
    "$KD" $CK --epochs 2
expect "--force starts again over it" 0 "saved" "$KD" $CK --epochs 2 --force
expect "--force with --resume" 2 "--force does not apply with --resume" "$KD" $CK --force --resume
expect "--resume with more --epochs extends the run" 0 "extending the run from 2 to 3 epochs" \
    "$KD" train --model 784-16-10 $SETS --out "$TMP/ck.safetensors" --checkpoint "$TMP/ck2" \
    --epochs 3 --resume
expect "--resume names the option that differs" 2 "--batch is 64 but was 128" \
    "$KD" $CK --epochs 3 --resume --batch 64

# The progress line fits the terminal and redraws in place.
if command -v script >/dev/null 2>&1; then
    script -qec "stty cols 50; LC_ALL=C '$KD' train --model 784-16-10 --epochs 2 $SETS \
        --out '$TMP/tty.safetensors'" /dev/null >"$TMP/tty.out" 2>&1
    widest=$(sed 's/\x1b\[K//g' "$TMP/tty.out" | tr '\r' '\n' | grep "ETA" |
        awk '{ if (length($0) > w) w = length($0) } END { print w + 0 }')
    check "the progress bar fits a 50-column terminal (widest $widest)" \
        [ "$widest" -gt 0 ] && [ "$widest" -lt 50 ]
    # A terminal that does not give its width: $COLUMNS does.
    script -qec "stty cols 0; COLUMNS=40 LC_ALL=C '$KD' train --model 784-16-10 --epochs 1 $SETS \
        --out '$TMP/tty.safetensors'" /dev/null >"$TMP/tty40.out" 2>&1
    widest=$(sed 's/\x1b\[K//g' "$TMP/tty40.out" | tr '\r' '\n' | grep "ETA" |
        awk '{ if (length($0) > w) w = length($0) } END { print w + 0 }')
    check "without a terminal width the line fits \$COLUMNS (widest $widest of 40)" \
        [ "$widest" -gt 0 ] && [ "$widest" -lt 40 ]
    check "the loss column has 4 significant digits" \
        grep -q "loss [0-9]\.[0-9][0-9][0-9] " "$TMP/tty.out"
fi

# --augment: the library's shifts, crops and flips.
expect "--augment crop=2,hflip" 0 "saved" "$KD" $QUICK --augment crop=2,hflip \
    --out "$TMP/aug.safetensors"
expect "distill --augment runs the teacher on each batch" 0 "distilled student" "$KD" distill \
    --teacher "$T" --student 784-16-10 --epochs 1 $SETS --augment translate=1 \
    --out "$TMP/daug.safetensors"
expect "--soft-targets-cache with --augment" 2 "--soft-targets-cache does not apply with --augment" \
    "$KD" distill --teacher "$T" --augment hflip --soft-targets-cache "$TMP/x.cache"
expect "a bad --augment" 2 "--augment 'rotate=3' is not a list of" "$KD" train --augment rotate=3
expect "--augment on tabular data" 2 "--augment shifts, crops and flips images" "$KD" train \
    --model 3-8-3 --epochs 1 --train "$HERE/../data/csv/iris.csv" --test "$HERE/../data/csv/iris.csv" \
    --label-column species --augment hflip --out "$TMP/x.safetensors"

# Files: the system's reason, and what a file is not.
expect "a missing model gives the system's reason" 1 "cannot open $TMP/none.safetensors: No such file" \
    "$KD" eval "$TMP/none.safetensors"
printf 'not a model at all' >"$TMP/junk.bin"
expect "a file that is not safetensors says so" 1 "is not a safetensors file" "$KD" info "$TMP/junk.bin"
cp "$TMP/junk.bin" "$TMP/junk.npy"
expect "a file that is not NumPy says so" 1 "is not a .npy file" "$KD" train --model 784-10 \
    --train "$TMP/junk.npy" --train-y "$TMP/junk.npy" --test "$TEST" --out "$TMP/x.safetensors"
ln -s "$TMP/junk.bin" "$TMP/junk-images-idx3-ubyte"
ln -s "$TMP/junk.bin" "$TMP/junk-labels-idx1-ubyte"
expect "a file that is not IDX says so" 1 "is not an IDX file" "$KD" train --model 784-10 \
    --train "$TMP/junk" --test "$TEST" --out "$TMP/x.safetensors"

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
