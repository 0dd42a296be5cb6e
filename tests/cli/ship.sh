#!/bin/sh
# kd export and kd prune (issue 14) as a user drives them, on the committed Fashion-MNIST subset:
# exit codes and messages for bad input, an ONNX file written, unstructured pruning reaching its
# sparsity and channel pruning shrinking the spec. Ends with "N passed, N failed".
#
#   ship.sh KD_BINARY DATA_DIR
set -u
KD=${1:?usage: ship.sh KD_BINARY DATA_DIR}
DATA=${2:?usage: ship.sh KD_BINARY DATA_DIR}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kd-ship.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
XDG_CACHE_HOME=$TMP/cache
OPENBLAS_NUM_THREADS=1
export XDG_CACHE_HOME OPENBLAS_NUM_THREADS

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }

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

SETS="--train $DATA/fmnist-train-2000 --test $DATA/fmnist-test-500"
M="$TMP/m.safetensors"
expect "train a model" 0 "saved" "$KD" train --model 784-64-32-10 --epochs 2 $SETS --out "$M"

# ---------------------------------------------------------------- export
expect "export: usage" 2 "usage: kd export" "$KD" export "$M"
expect "export: unknown format" 2 "the formats are onnx" "$KD" export "$M" --format tflite --out "$TMP/m.x"
expect "export: missing model" 1 "cannot load" "$KD" export "$TMP/none.safetensors" --out "$TMP/m.onnx"
expect "export: onnx" 0 "wrote $TMP/m.onnx" "$KD" export "$M" --format onnx --out "$TMP/m.onnx"
expect "export: help" 0 "operator set 17" "$KD" help export

# ---------------------------------------------------------------- prune
expect "prune: usage" 2 "usage: kd prune" "$KD" prune "$M" --out "$TMP/p.safetensors"
expect "prune: sparsity out of range" 2 "--sparsity 1.5" "$KD" prune "$M" --sparsity 1.5 --out "$TMP/p.safetensors"
expect "prune: 80% of the weights" 0 "pruned + fine-tuned .* weights 80.0% zero" \
    "$KD" prune "$M" --sparsity 0.8 --epochs 2 $SETS --out "$TMP/sparse.safetensors"
expect "prune: the file keeps the zeros" 0 "input 784" "$KD" info "$TMP/sparse.safetensors"
expect "prune: channels shrink the spec" 0 "input 784 | dense 32 | relu | dense 16 | relu | dense 10" \
    "$KD" prune "$M" --sparsity 0.5 --structured --epochs 1 --teacher "$M" $SETS \
    --out "$TMP/small.safetensors"
expect "prune: the smaller model loads" 0 "dense 32" "$KD" info "$TMP/small.safetensors"
expect "prune: help" 0 "Zhu and Gupta" "$KD" help prune

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
