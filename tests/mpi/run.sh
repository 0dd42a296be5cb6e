#!/usr/bin/env bash
# Data-parallel training over MPI (issue 15): equivalence with one process for 2 and 3 ranks, then
# a rank killed mid-run: the job must end (non-zero, within a bounded time) with the last
# checkpoint intact; then the kd tool under mpirun. Usage: run.sh TEST_MPI_BINARY KD DATA_DIR
set -u
bin=$1
kd=$2
data=$3

# Root in CI; more ranks than cores on 2-core machines; loopback only, no network discovery.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
    OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_plm_rsh_agent= OPENBLAS_NUM_THREADS=1
fail=0
for np in 2 3; do
    if ! timeout 120 mpirun -np "$np" "$bin"; then
        echo "FAIL: $np ranks" >&2
        fail=1
    fi
done

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
timeout 120 mpirun -np 2 "$bin" kill "$dir" >"$dir/log" 2>&1 &
job=$!
for _ in $(seq 1 200); do
    [ -s "$dir/rank1.pid" ] && [ -s "$dir/checkpoint.safetensors" ] && break
    sleep 0.1
done
sleep 0.5
kill -9 "$(cat "$dir/rank1.pid")"
start=$(date +%s)
wait "$job"
rc=$?
took=$(($(date +%s) - start))
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    echo "FAIL: killing rank 1 ended the job with status $rc (124: still running after 120 s)" >&2
    cat "$dir/log" >&2
    fail=1
else
    echo "killed rank 1: the job ended with status $rc after ${took} s"
fi
if "$bin" load "$dir/checkpoint.safetensors"; then
    echo "the last checkpoint is intact"
else
    echo "FAIL: the checkpoint after the kill does not load" >&2
    fail=1
fi
# The tool: `mpirun -np 2 kd train` trains the model one process trains (the same loss and
# accuracies, up to the order of float sums), rank 0 alone prints and writes; a CNN with batch
# norm (synchronised) and a distillation with 3 ranks.
sets="--train $data/fmnist-train-2000 --test $data/fmnist-test-500"
spec="input 1x28x28 | conv 4 3 pad=1 | bn | relu | maxpool 2 | flatten | dense 10"
one=$("$kd" train $sets --model "$spec" --epochs 2 --seed 3 --out "$dir/one.safetensors" -q 2>&1)
two=$(timeout 120 mpirun -np 2 "$kd" train $sets --model "$spec" --epochs 2 --seed 3 \
    --out "$dir/two.safetensors" -q 2>&1)
acc() { echo "$1" | grep -o 'test accuracy [0-9.]*%'; }
if [ -n "$(acc "$one")" ] && [ "$(acc "$one")" = "$(acc "$two")" ] && [ -s "$dir/two.safetensors" ]; then
    echo "kd train, 1 and 2 ranks: $(acc "$two") both"
else
    printf 'FAIL: kd train under mpirun differs from one process:\n%s\n---\n%s\n' "$one" "$two" >&2
    fail=1
fi
if timeout 120 mpirun -np 3 "$kd" distill $sets --teacher "$dir/one.safetensors" --student 784-32-10 \
    --epochs 1 --val 0 --out "$dir/d.safetensors" -q >"$dir/log" 2>&1 && [ -s "$dir/d.safetensors" ]; then
    echo "kd distill, 3 ranks: ok"
else
    echo "FAIL: kd distill under mpirun -np 3" >&2
    cat "$dir/log" >&2
    fail=1
fi
# Language models: kd train --text with 2 ranks and kd distill --text with 3 (16 windows a batch,
# slices of 6, 5 and 5) give one process's held-out cross-entropy; kd eval --text is refused.
text="--text $data/text/sample.txt"
small="tokens 256 16 | embed 8 | posembed | residual(layernorm | attention 2 causal) | layernorm | lmhead 256"
lm="tokens 256 16 | embed 16 | posembed | residual(layernorm | attention 2 causal) | residual(layernorm | dense 32 | gelu | dense 16) | layernorm | lmhead 256"
val() { echo "$1" | grep -o 'validation [0-9.]* nats/byte'; }
one=$("$kd" train $text --spec "$small" --steps 20 --out "$dir/t1.safetensors" 2>&1)
two=$(timeout 120 mpirun -np 2 "$kd" train $text --spec "$small" --steps 20 \
    --out "$dir/t2.safetensors" 2>&1)
if [ -n "$(val "$one")" ] && [ "$(val "$one")" = "$(val "$two")" ] && [ -s "$dir/t2.safetensors" ]; then
    echo "kd train --text, 1 and 2 ranks: $(val "$two") both"
else
    printf 'FAIL: kd train --text under mpirun differs from one process:\n%s\n---\n%s\n' "$one" "$two" >&2
    fail=1
fi
one=$("$kd" distill $text --teacher-spec "$lm" --student "$small" --teacher-steps 20 --steps 20 \
    --out "$dir/d1.safetensors" 2>&1)
three=$(timeout 120 mpirun -np 3 "$kd" distill $text --teacher-spec "$lm" --student "$small" \
    --teacher-steps 20 --steps 20 --out "$dir/d3.safetensors" 2>&1)
if [ -n "$(val "$one")" ] && [ "$(val "$one")" = "$(val "$three")" ]; then
    echo "kd distill --text, 1 and 3 ranks: $(val "$three") both"
else
    printf 'FAIL: kd distill --text under mpirun -np 3 differs:\n%s\n---\n%s\n' "$one" "$three" >&2
    fail=1
fi
# A batch smaller than the job leaves a rank without a row: refused before any training (it used
# to drop every batch and report a diverged run).
if ! timeout 60 mpirun -np 3 "$kd" distill $sets --teacher "$dir/one.safetensors" --student 784-32-10 \
    --epochs 1 --val 0 --batch 2 --out "$dir/b.safetensors" -q >"$dir/log" 2>&1 &&
    grep -q "smaller than the job's 3 processes" "$dir/log" && [ ! -e "$dir/b.safetensors" ]; then
    echo "kd distill --batch 2 under mpirun -np 3: refused"
else
    echo "FAIL: kd distill --batch 2 under mpirun -np 3 was not refused" >&2
    cat "$dir/log" >&2
    fail=1
fi
if ! timeout 60 mpirun -np 2 "$kd" eval "$dir/t1.safetensors" $text >"$dir/log" 2>&1 &&
    grep -q "runs in one process" "$dir/log"; then
    echo "kd eval --text under mpirun: refused"
else
    echo "FAIL: kd eval --text under mpirun was not refused" >&2
    cat "$dir/log" >&2
    fail=1
fi
# A checkpoint of one process is not resumed by two (nor the other way), and the message says why.
"$kd" train $sets --model 784-16-10 --epochs 2 --stop-after-epoch 1 --checkpoint "$dir/c.safetensors" \
    --out "$dir/c.out.safetensors" -q >/dev/null 2>&1
timeout 120 mpirun -np 2 "$kd" train $sets --model 784-16-10 --epochs 2 --resume \
    --checkpoint "$dir/c.safetensors" --out "$dir/c.out.safetensors" -q >"$dir/log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "MPI processes is 2 but was 1" "$dir/log"; then
    echo "resume with another number of ranks: refused, named"
else
    echo "FAIL: resuming one process's checkpoint with 2 ranks (status $rc):" >&2
    cat "$dir/log" >&2
    fail=1
fi
# Ranks that read different checkpoints (a host without the file) all stop, naming it, instead of
# training from other epochs and hanging at the end.
timeout 120 mpirun -np 2 "$kd" train $sets --model 784-16-10 --epochs 2 --stop-after-epoch 1 \
    --checkpoint "$dir/s.safetensors" --out "$dir/s.out.safetensors" -q >/dev/null 2>&1
mkdir -p "$dir/h1"
A="train $sets --model 784-16-10 --epochs 2 --resume --out $dir/s.out.safetensors -q"
timeout 120 mpirun -np 1 "$kd" $A --checkpoint "$dir/s.safetensors" : \
    -np 1 "$kd" $A --checkpoint "$dir/h1/s.safetensors" >"$dir/log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "did not resume alike" "$dir/log"; then
    echo "ranks that read different checkpoints: stopped, named"
else
    echo "FAIL: ranks with different checkpoints (status $rc):" >&2
    cat "$dir/log" >&2
    fail=1
fi
exit $fail
