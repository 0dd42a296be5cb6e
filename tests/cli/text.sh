#!/bin/sh
# The kd tool on text (byte-level language models): train, distill with each token-level loss,
# eval and generate on the committed sample, with exact exit codes for bad input (an empty file, a
# file that is not UTF-8, a prompt longer than the context, a vocabulary or context that does not
# match). Ends with "N passed, N failed".
#
#   text.sh KD_BINARY DATA_DIR
set -u
KD=${1:?usage: text.sh KD_BINARY DATA_DIR}
DATA=${2:?usage: text.sh KD_BINARY DATA_DIR}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kd-cli-text.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
OPENBLAS_NUM_THREADS=1
export OPENBLAS_NUM_THREADS

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

TEXT="$DATA/text/sample.txt"
LM="tokens 256 16 | embed 16 | posembed | residual(layernorm | attention 2 causal) | residual(layernorm | dense 32 | gelu | dense 16) | layernorm | lmhead 256"
SMALL="tokens 256 16 | embed 8 | posembed | residual(layernorm | attention 2 causal) | layernorm | lmhead 256"
T="$TMP/teacher.safetensors"
S="$TMP/student.safetensors"

# ---------------------------------------------------------------- help
expect "kd help generate" 0 "usage: kd generate" "$KD" help generate
expect "kd help train mentions --text" 0 "kd train --text FILE" "$KD" help train
expect "kd distill --text --help" 0 "skew-reverse-kl" "$KD" distill --text x --help

# ---------------------------------------------------------------- bad input
expect "empty text" 1 "is empty" "$KD" train --text "$DATA/text/empty.txt" --out "$T"
expect "text that is not UTF-8" 1 "not UTF-8 text: byte 54" "$KD" train \
    --text "$DATA/text/invalid-utf8.txt" --out "$T"
expect "missing text" 1 "cannot open" "$KD" train --text "$TMP/nope.txt" --out "$T"
expect "eval on an empty text" 1 "is empty" "$KD" eval "$T" --text "$DATA/text/empty.txt"
expect "a bad spec is a usage error" 2 "bad model spec" "$KD" train --text "$TEXT" \
    --spec "tokens 256 | embed 8" --out "$T"
expect "a spec of floats is not a language model" 2 "not a language model" "$KD" train \
    --text "$TEXT" --spec "input 16 | dense 4096" --out "$T"
expect "student vocabulary mismatch" 2 "vocabulary of 128 tokens" "$KD" distill --text "$TEXT" \
    --student "tokens 128 16 | embed 8 | lmhead 128" --out "$S"
expect "unknown loss" 2 "'bogus' is not one of" "$KD" distill --text "$TEXT" --loss bogus --out "$S"
expect "an image option on text" 2 "unknown option '--epochs'" "$KD" train --text "$TEXT" \
    --epochs 3 --out "$T"
expect "--out is required" 2 "--out MODEL.safetensors is required" "$KD" train --text "$TEXT"
expect "bad --steps" 2 "--steps '0' is not" "$KD" train --text "$TEXT" --steps 0 --out "$T"

expect "a context longer than the training part" 2 \
    "context of 2000 bytes needs windows of 2001; the training part of .* holds 1269 bytes" \
    "$KD" train --text "$TEXT" --spec "tokens 256 2000 | embed 8 | lmhead 256" --out "$T"
expect "a context longer than the validation part" 2 \
    "needs windows of 601; the validation part of .* holds 141 bytes" "$KD" train --text "$TEXT" \
    --spec "tokens 256 600 | embed 8 | lmhead 256" --out "$T"
expect "--eval-bytes shorter than a window" 2 "windows of 17; --eval-bytes 10 evaluates fewer" \
    "$KD" distill --text "$TEXT" --student "$SMALL" --teacher-spec "$SMALL" --eval-bytes 10 \
    --out "$S"
if [ ! -e "$T" ] && [ ! -e "$S" ]; then pass "refused runs write no model"; else
    fail "a refused run wrote a model"; fi
# A teacher file of another vocabulary (128 tokens): a safetensors file written here, zeros.
json='{"__metadata__":{"kd.spec":"tokens 128 16 | embed 2 | lmhead 128","format":"pt"},"0.weight":{"dtype":"F32","shape":[128,2],"data_offsets":[0,1024]},"1.weight":{"dtype":"F32","shape":[128,2],"data_offsets":[1024,2048]}}'
len=${#json}
printf "\\$(printf %03o $((len % 256)))\\$(printf %03o $((len / 256)))\\000\\000\\000\\000\\000\\000" \
    > "$TMP/v128.safetensors"
printf '%s' "$json" >> "$TMP/v128.safetensors"
head -c 2048 /dev/zero >> "$TMP/v128.safetensors"
expect "teacher file of another vocabulary" 2 "v128.safetensors has a vocabulary of 128 tokens" \
    "$KD" distill --text "$TEXT" --teacher "$TMP/v128.safetensors" --student "$SMALL" --out "$S"
expect "eval of a model of another vocabulary" 2 "has a vocabulary of 128 tokens" "$KD" eval \
    "$TMP/v128.safetensors" --text "$TEXT"
expect "generate from a model of another vocabulary" 2 "has a vocabulary of 128 tokens" "$KD" \
    generate "$TMP/v128.safetensors" --prompt x

# ---------------------------------------------------------------- train, eval, distill, generate
expect "kd train --text" 0 "saved .*bits per byte" "$KD" train --text "$TEXT" --spec "$LM" \
    --steps 30 --batch 8 --lr 0.01 --log "$TMP/train.jsonl" --out "$T"
expect "the log has JSON lines" 0 '"step": 30' cat "$TMP/train.jsonl"
expect "kd eval --text" 0 "cross-entropy .* nats/byte, perplexity .* bits per byte" "$KD" eval "$T" \
    --text "$TEXT"
expect "kd eval --text --eval-bytes" 0 ", 32 predicted" "$KD" eval "$T" --text "$TEXT" \
    --eval-bytes 40
expect "kd eval --text --json" 0 '"bits_per_byte": ' "$KD" eval "$T" --text "$TEXT" --json
for loss in forward-kl reverse-kl jsd skew-kl skew-reverse-kl tvd; do
    expect "kd distill --text --loss $loss" 0 "saved .* after 5 steps of $loss" "$KD" distill \
        --text "$TEXT" --teacher "$T" --student "$SMALL" --loss "$loss" --steps 5 --batch 4 \
        --quiet --out "$S"
done
expect "kd distill --text trains its teacher, --compare" 0 "student alone" "$KD" distill \
    --text "$TEXT" --teacher-spec "$SMALL" --teacher-steps 5 --student "$SMALL" --steps 5 \
    --batch 4 --compare --method jsd --alpha 0.8 --temperature 2 --out "$S"
expect "kd distill --text --attention-kl" 0 "attention KL" "$KD" distill --text "$TEXT" \
    --teacher "$T" --student "$SMALL" --steps 4 --batch 4 --log-every 2 --attention-kl 0.5 \
    --attention-layers 0:-1 --out "$S"
expect "--attention-layers out of range" 2 "the student has 1 attention layers" "$KD" distill \
    --text "$TEXT" --teacher "$T" --student "$SMALL" --steps 2 --attention-kl 1 \
    --attention-layers 3:0 --out "$S"
expect "--attention-heads matched of other head counts" 2 \
    "matched heads need equal head counts: the student has 4, the teacher 2.*: give --attention-heads mean" \
    "$KD" distill --text "$TEXT" --teacher "$T" --student \
    "tokens 256 16 | embed 8 | posembed | residual(layernorm | attention 4 causal) | lmhead 256" \
    --steps 2 --attention-kl 1 --attention-heads matched --out "$S"
expect "--attention-layers not S:T" 2 "is not S:T" "$KD" distill --text "$TEXT" --teacher "$T" \
    --student "$SMALL" --steps 2 --attention-kl 1 --attention-layers 3 --out "$S"
expect "--attention-heads bogus" 2 "is not mean or matched" "$KD" distill --text "$TEXT" \
    --teacher "$T" --student "$SMALL" --steps 2 --attention-kl 1 --attention-heads x --out "$S"
expect "teacher context mismatch" 2 "context" "$KD" distill --text "$TEXT" --teacher "$T" \
    --student "tokens 256 8 | embed 8 | lmhead 256" --steps 2 --out "$S"
# A run never writes over what it reads (the corpus, the teacher), nor one output over another.
cp "$TEXT" "$TMP/corpus.txt"
cp "$T" "$TMP/tcopy.safetensors"
expect "--out is the teacher" 2 "is a file this run reads" "$KD" distill --text "$TEXT" \
    --teacher "$TMP/tcopy.safetensors" --student "$SMALL" --steps 2 --out "$TMP/tcopy.safetensors"
expect "--log is the corpus" 2 "is a file this run reads" "$KD" train --text "$TMP/corpus.txt" \
    --spec "$SMALL" --steps 2 --out "$TMP/x.safetensors" --log "$TMP/corpus.txt"
expect "--out is the corpus" 2 "is a file this run reads" "$KD" train --text "$TMP/corpus.txt" \
    --spec "$SMALL" --steps 2 --out "$TMP/corpus.txt"
expect "--log is --out" 2 "name the same file" "$KD" train --text "$TEXT" --spec "$SMALL" \
    --steps 2 --out "$TMP/x.safetensors" --log "$TMP/x.safetensors"
# nor over a file of its checkpoint: FILE.run, and distill's FILE.teacher, FILE.alone and theirs
expect "--out is the checkpoint's .run" 2 "--out and --checkpoint (its .run) name the same file" \
    "$KD" train --text "$TEXT" --spec "$SMALL" --steps 2 --checkpoint "$TMP/c.ck" \
    --out "$TMP/c.ck.run"
expect "--log is the checkpoint's .run" 2 "--log and --checkpoint (its .run) name the same file" \
    "$KD" train --text "$TEXT" --spec "$SMALL" --steps 2 --checkpoint "$TMP/c.ck" \
    --out "$TMP/x.safetensors" --log "$TMP/c.ck.run"
expect "distill --out is the teacher's .run" 2 "(its .teacher.run) name the same file" "$KD" \
    distill --text "$TEXT" --teacher-spec "$SMALL" --student "$SMALL" --steps 2 \
    --checkpoint "$TMP/c.ck" --out "$TMP/c.ck.teacher.run"
expect "distill --log is the student alone's .run" 2 "(its .alone.run) name the same file" "$KD" \
    distill --text "$TEXT" --teacher "$T" --student "$SMALL" --steps 2 --compare \
    --checkpoint "$TMP/c.ck" --out "$TMP/x.safetensors" --log "$TMP/c.ck.alone.run"
if cmp -s "$TEXT" "$TMP/corpus.txt" && cmp -s "$T" "$TMP/tcopy.safetensors"; then
    pass "the refused runs left the corpus and the teacher as they were"
else fail "a refused run changed its input"; fi
expect "attention that is not causal is refused" 2 "not causal" "$KD" train --text "$TEXT" \
    --spec "tokens 256 16 | embed 8 | posembed | residual(layernorm | attention 2) | lmhead 256" \
    --steps 2 --out "$TMP/x.safetensors"
expect "predict refuses a language model" 2 "is a language model" "$KD" predict "$T" \
    --input "$TMP/corpus.txt"
expect "an image command names a language model" 2 "is a language model" "$KD" eval "$T"
expect "quantize says a language model has no int8 form" 2 \
    "teacher.safetensors is a language model (token ids in): it has no int8 form" "$KD" quantize \
    "$T" --calib "$DATA/fmnist-train-2000" --out "$TMP/q.safetensors"
expect "prune refuses a language model without offering --text" 2 \
    "teacher.safetensors is a language model (token ids in): kd prune fine-tunes on labelled examples and does not take language models" \
    "$KD" prune "$T" --sparsity 0.5 --train "$DATA/fmnist-train-2000" \
    --test "$DATA/fmnist-test-500" --out "$TMP/p.safetensors"
expect "eval side by side names the language model's file" 2 \
    "the model .*/teacher.safetensors is a language model" "$KD" eval "$T" "$TMP/tcopy.safetensors" \
    --test "$DATA/fmnist-test-500"
expect "--teacher-steps with --teacher" 2 "teacher-steps does not apply with --teacher" "$KD" \
    distill --text "$TEXT" --teacher "$T" --student "$SMALL" --teacher-steps 3 --out "$S"
expect "--attention-heads without --attention-kl" 2 "attention-heads does not apply" "$KD" \
    distill --text "$TEXT" --teacher "$T" --student "$SMALL" --attention-heads mean --out "$S"
expect "--loss and --method together" 2 "given twice" "$KD" distill --text "$TEXT" --teacher "$T" \
    --student "$SMALL" --loss jsd --method tvd --out "$S"
expect "--compare=no" 2 "takes no value" "$KD" distill --text "$TEXT" --teacher "$T" \
    --student "$SMALL" --compare=no --out "$S"
expect "--temperature 0 in distillation" 2 "temperature > 0" "$KD" distill --text "$TEXT" \
    --teacher "$T" --student "$SMALL" --temperature 0 --out "$S"
expect "a diverged run is exit 3 and saves nothing" 3 "diverged: .* nothing saved" "$KD" train \
    --text "$TEXT" --spec "$LM" --steps 40 --batch 8 --lr 10 --out "$TMP/diverged.safetensors"
if [ ! -e "$TMP/diverged.safetensors" ]; then pass "the diverged run wrote no model"; else
    fail "the diverged run wrote a model"; fi
# A tied head starts far above a uniform guess (31 bits a byte here): a short run that lowers it
# learned, though it ends above 16 bits; one that rises past its start diverged.
TIED="tokens 256 16 | embed 32 | posembed | residual(layernorm | attention 2 causal) | layernorm | lmhead 256 tied"
expect "a short run of a tied head is judged against its start" 0 "saved .* after 5 steps" "$KD" \
    train --text "$TEXT" --spec "$TIED" --steps 5 --batch 4 --quiet --out "$TMP/tied.safetensors"
expect "a short distill of tied heads is judged against their start" 0 "saved .* after 3 steps" \
    "$KD" distill --text "$TEXT" --teacher-spec "$TIED" --teacher-steps 3 --student "$TIED" \
    --steps 3 --batch 4 --quiet --out "$TMP/tied.safetensors"
expect "a run that barely moves a tied head did not diverge" 0 "saved .* after 1 steps" "$KD" \
    train --text "$TEXT" --spec "$TIED" --steps 1 --lr 1e-9 --quiet --out "$TMP/tied.safetensors"
expect "a tied head's diverged run is exit 3" 3 "diverged: .* worse than the .* of the untrained" \
    "$KD" train --text "$TEXT" --spec "$TIED" --steps 40 --batch 8 --lr 10 \
    --out "$TMP/tdiverged.safetensors"
expect "--jsd-beta with jsd" 0 "after 2 steps of jsd" "$KD" distill --text "$TEXT" --teacher "$T" \
    --student "$SMALL" --method jsd --jsd-beta 0.9 --steps 2 --batch 4 --quiet --out "$S"
expect "--skew with another method" 2 "skew does not apply" "$KD" distill --text "$TEXT" \
    --teacher "$T" --student "$SMALL" --skew 0.2 --out "$S"
# --checkpoint and --resume: a run stopped at step 8 of 10 and resumed ends with the uninterrupted
# run's model, byte for byte; distill with its own teacher and --compare has three checkpoints.
RUN="--text $TEXT --batch 4 --log-every 4 --quiet"
"$KD" train $RUN --spec "$SMALL" --steps 10 --out "$TMP/full.safetensors" >/dev/null 2>&1
expect "a text run stopped at step 8" 0 "stopped after step 8" "$KD" train $RUN --spec "$SMALL" \
    --steps 10 --out "$TMP/part.safetensors" --checkpoint "$TMP/lmck" --stop-after-step 8 \
    --log "$TMP/lmck.jsonl"
expect "an existing checkpoint without --resume" 2 "lmck exists: continue it with --resume" \
    "$KD" train $RUN --spec "$SMALL" --steps 10 --out "$TMP/part.safetensors" --checkpoint "$TMP/lmck"
expect "a checkpoint of other options names the first" 2 "it was --lr=0.003, this run has --lr=0.01" \
    "$KD" train $RUN --spec "$SMALL" --steps 10 --lr 0.01 --out "$TMP/part.safetensors" \
    --checkpoint "$TMP/lmck" --resume
expect "--resume without a checkpoint yet says it starts afresh" 0 \
    "model: no checkpoint at $TMP/new.ck yet; starting from the beginning" "$KD" train \
    --text "$TEXT" --batch 4 --spec "$SMALL" --steps 2 --out "$TMP/new.safetensors" \
    --checkpoint "$TMP/new.ck" --resume
# A --log whose reader went away (a FIFO read by no one after the open; a full disk alike): the run
# ends, exit 1, saying the log is cut, not exit 0 with a part of it.
mkfifo "$TMP/log.fifo"
(: <"$TMP/log.fifo") &
out=$(trap '' PIPE; "$KD" train --text "$TEXT" --batch 4 --quiet --spec "$SMALL" --steps 40 \
    --log-every 1 --out "$TMP/fifo-log.safetensors" --log "$TMP/log.fifo" 2>&1)
rc=$?
(exec 3<>"$TMP/log.fifo") # a read-write open never blocks: it frees the reader if kd never opened
wait
if [ "$rc" -eq 1 ] && printf '%s\n' "$out" | grep -q "cannot write the log $TMP/log.fifo: Broken pipe"; then
    pass "a --log that cannot be written to the end fails the run, exit 1"
else fail "a --log cut short: exit $rc (want 1), output: $out"; fi
expect "--resume continues it" 0 "saved" "$KD" train $RUN --spec "$SMALL" --steps 10 \
    --out "$TMP/part.safetensors" --checkpoint "$TMP/lmck" --resume --log "$TMP/lmck.jsonl"
if cmp -s "$TMP/full.safetensors" "$TMP/part.safetensors"; then
    pass "the resumed text model is the uninterrupted one, byte for byte"
else fail "the resumed text model differs"; fi
if [ "$(grep -c '"step"' "$TMP/lmck.jsonl")" -eq 3 ]; then pass "the resumed log holds steps 4, 8, 10"
else fail "the resumed log: $(cat "$TMP/lmck.jsonl")"; fi
expect "--stop-after-step off a log point" 2 "a multiple of --log-every" "$KD" train $RUN \
    --spec "$SMALL" --steps 10 --out "$TMP/x.safetensors" --checkpoint "$TMP/x.ck" --stop-after-step 6
expect "the checkpoint records the number of MPI processes" 0 "MPI processes=1" cat "$TMP/lmck.run"
"$KD" distill $RUN --teacher-spec "$SMALL" --teacher-steps 8 --student "$SMALL" --steps 6 --compare \
    --out "$TMP/dfull.safetensors" >/dev/null 2>&1
expect "a distill stopped in its teacher's run" 0 "teacher: stopped after step 4" "$KD" distill \
    $RUN --teacher-spec "$SMALL" --teacher-steps 8 --student "$SMALL" --steps 6 --compare \
    --out "$TMP/dpart.safetensors" --checkpoint "$TMP/dck" --stop-after-step 4
expect "--resume finishes the three runs" 0 "saved" "$KD" distill $RUN --teacher-spec "$SMALL" \
    --teacher-steps 8 --student "$SMALL" --steps 6 --compare --out "$TMP/dpart.safetensors" \
    --checkpoint "$TMP/dck" --resume
if cmp -s "$TMP/dfull.safetensors" "$TMP/dpart.safetensors" && [ -s "$TMP/dck.teacher" ] &&
    [ -s "$TMP/dck.alone" ]; then
    pass "the resumed distilled student is the uninterrupted one, byte for byte"
else fail "the resumed distill differs or lacks a checkpoint"; fi
# ---------------------------------------------------------------- --report, --hidden-cosine
expect "kd train --text --report" 0 "report: $TMP/rt/index.html" "$KD" train --text "$TEXT" \
    --spec "$SMALL" --steps 6 --batch 4 --report "$TMP/rt" --out "$TMP/m.safetensors"
expect "its report has the held-out curve" 0 "Held-out bits per byte" cat "$TMP/rt/index.html"
expect "its report has the table" 0 "generation tokens/s" cat "$TMP/rt/index.html"
expect "its report has a sample" 0 "<pre class='sample'>" cat "$TMP/rt/index.html"
n=$(grep -o "<circle" "$TMP/rt/index.html" | wc -l)
# 7 held-out points (step 0, then every 6 / 10 = 1 steps) and 1 loss point (the last step)
if [ "$n" -eq 8 ]; then pass "train --report: 7 held-out points and 1 loss point"; else
    fail "train --report: $n points, want 8"; fi
expect "kd distill --text --report --compare" 0 "report: $TMP/rd/index.html" "$KD" distill \
    --text "$TEXT" --teacher-spec "$SMALL" --teacher-steps 4 --student "$SMALL" --steps 4 \
    --batch 4 --compare --eval-every 2 --log "$TMP/rd.jsonl" --report "$TMP/rd" --out "$S"
for run in teacher "student alone" "distilled (forward-kl)"; do
    expect "the distill report has $run" 0 ">$run<" cat "$TMP/rd/index.html"
done
expect "the distill report compares with the student alone" 0 "trained alone on the same budget" \
    cat "$TMP/rd/index.html"
expect "--eval-every logs held-out points" 0 '"heldout_bits_per_byte": ' cat "$TMP/rd.jsonl"
expect "--report under a file" 1 "is not a directory" "$KD" train --text "$TEXT" --spec "$SMALL" \
    --steps 2 --report "$TEXT/r" --out "$TMP/m.safetensors"
expect "--report is not for eval" 2 "unknown option '--report'" "$KD" eval "$T" --text "$TEXT" \
    --report "$TMP/re"
expect "kd distill --text --hidden-cosine projects" 0 \
    "layer 2 (residual) gives \[16, 8\] a window, the teacher's layer 3 (residual) \[16, 16\]; the student's projected" \
    "$KD" distill --text "$TEXT" --teacher "$T" --student "$SMALL" --steps 4 --batch 4 \
    --log-every 2 --hidden-cosine 1 --out "$S"
expect "--hidden-cosine logs its value" 0 "hidden cosine [0-9]" "$KD" distill --text "$TEXT" \
    --teacher "$T" --student "$SMALL" --steps 2 --batch 4 --log-every 1 --hidden-cosine 0.5 \
    --hidden-layers 1:1,-2:-2 --attention-kl 0.5 --out "$S"
expect "--hidden-layers out of range" 2 "the student has layers 0..4, the teacher 0..5" "$KD" \
    distill --text "$TEXT" --teacher "$T" --student "$SMALL" --steps 2 --hidden-cosine 1 \
    --hidden-layers 2:9 --out "$S"
expect "--hidden-layers not S:T" 2 "is not S:T\[,S:T...\]" "$KD" distill --text "$TEXT" \
    --teacher "$T" --student "$SMALL" --steps 2 --hidden-cosine 1 --hidden-layers 2-3 --out "$S"
expect "--hidden-layers on a layer that is not hidden states" 2 \
    "layer 2 (dense) gives 7 values a window and the teacher's layer 3 (residual) 256" "$KD" \
    distill --text "$TEXT" --teacher "$T" \
    --student "tokens 256 16 | embed 8 | flatten | dense 7 | dense 4096" --steps 2 \
    --hidden-cosine 1 --hidden-layers 2:3 --out "$S"
expect "--hidden-cosine and a teacher of another context" 2 "its context" "$KD" distill \
    --text "$TEXT" --teacher "$T" --student "tokens 256 8 | embed 8 | lmhead 256" --steps 2 \
    --hidden-cosine 1 --out "$S"

expect "kd generate" 0 "^Hello" "$KD" generate "$S" --prompt "Hello" --tokens 40 --seed 3
expect "kd generate slides past the context" 0 "tokens/s" "$KD" generate "$S" --prompt "ab" \
    --tokens 100 --temperature 0
a=$("$KD" generate "$S" --prompt "The " --tokens 12 --top-k 5 --top-p 0.9 --seed 7 2>/dev/null)
b=$("$KD" generate "$S" --prompt "The " --tokens 12 --top-k 5 --top-p 0.9 --seed 7 2>/dev/null)
if [ -n "$a" ] && [ "$a" = "$b" ]; then pass "generate: the same seed, the same text"; else
    fail "generate: the same seed gave '$a' and '$b'"; fi
# A model whose logits overflow: every embedding value 3e38, squared by the tied head. Generation
# fails (exit 1) rather than printing what infinity samples to; eval names the model.
json='{"__metadata__":{"kd.spec":"tokens 256 4 | embed 1 | lmhead 256 tied","format":"pt"},"0.weight":{"dtype":"F32","shape":[256,1],"data_offsets":[0,1024]}}'
len=${#json}
printf "\\$(printf %03o $((len % 256)))\\$(printf %03o $((len / 256)))\\000\\000\\000\\000\\000\\000" \
    > "$TMP/big.safetensors"
printf '%s' "$json" >> "$TMP/big.safetensors"
i=0
while [ $i -lt 256 ]; do printf '\346\261\141\177'; i=$((i + 1)); done >> "$TMP/big.safetensors"
expect "generate from logits that overflow fails" 1 \
    "generation from .*big.safetensors failed: .* position 0 (token 104) hold NaN or infinity" \
    "$KD" generate "$TMP/big.safetensors" --prompt "The " --temperature 0
expect "generate from logits that overflow fails when sampling" 1 "hold NaN or infinity" "$KD" \
    generate "$TMP/big.safetensors" --prompt "The "
expect "eval of logits that overflow names the model" 1 \
    "cannot evaluate .*big.safetensors on the held-out text: the logits scored hold NaN" \
    "$KD" eval "$TMP/big.safetensors" --text "$TEXT"
expect "a teacher whose logits overflow is named" 1 \
    "cannot evaluate the teacher .*big.safetensors on the held-out text: the logits scored" \
    "$KD" distill --text "$TEXT" --teacher "$TMP/big.safetensors" \
    --student "tokens 256 4 | embed 8 | lmhead 256" --steps 2 --out "$TMP/x.safetensors"
expect "prompt longer than the context" 2 "longer than the model's context of 16" "$KD" generate \
    "$S" --prompt "0123456789abcdefX"
expect "empty prompt" 2 "--prompt is empty" "$KD" generate "$S" --prompt ""
expect "generate without a model" 2 "a model file is required" "$KD" generate --prompt x
expect "generate from a missing file" 1 "cannot load" "$KD" generate "$TMP/none.safetensors"
expect "bad --top-p" 2 "--top-p '2' is not" "$KD" generate "$S" --top-p 2
# A prompt as long as the context: the first byte comes from its last T - 1 = 15 bytes (a full
# prompt had kept only its last T/2), so greedy decoding continues as from those 15 bytes.
full=$("$KD" generate "$S" --prompt "0123456789abcdef" --tokens 1 --temperature 0 2>/dev/null)
last=$("$KD" generate "$S" --prompt "123456789abcdef" --tokens 1 --temperature 0 2>/dev/null)
if [ -n "$full" ] && [ "${full#0}" = "$last" ]; then pass "a full prompt keeps T - 1 bytes"; else
    fail "a full prompt: '$full' against '$last'"; fi
expect "--threads on text" 0 "saved" "$KD" train --text "$TEXT" --spec "$SMALL" --steps 2 \
    --threads 1 --quiet --out "$TMP/th.safetensors"
expect "--validation 0" 2 "hold out a share > 0" "$KD" train --text "$TEXT" --spec "$SMALL" \
    --validation 0 --out "$TMP/v0.safetensors"
expect "--spec and --model together" 2 "--spec/--model is given twice" "$KD" train --text "$TEXT" \
    --spec "$SMALL" --model "$SMALL" --out "$TMP/v0.safetensors"
expect "--log may be an existing writable file anywhere" 0 '"step": 2' "$KD" train --text "$TEXT" \
    --spec "$SMALL" --steps 2 --log-every 1 --quiet --out "$TMP/lg.safetensors" --log /dev/stdout

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
