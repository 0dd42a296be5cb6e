#!/bin/sh
# Crash safety of `kd train --checkpoint`: KILLS runs are killed with SIGKILL, half at a random
# moment, half as soon as a save's temporary file is seen after a random delay (inside a save); after each, --resume must finish with a model byte-identical to an uninterrupted run and
# leave no temporary file (the library's FILE.tmp.XXXXXX nor the tool's FILE.tmp.PID). Prints how
# many kills left a temporary file behind (kills inside a save).
#   usage: crash_resume.sh KD_BINARY DATA_DIR [KILLS] [SEED]
set -u
KD=${1:?usage: crash_resume.sh KD_BINARY DATA_DIR [KILLS] [SEED]}
DATA=${2:?usage: crash_resume.sh KD_BINARY DATA_DIR [KILLS] [SEED]}
KILLS=${3:-6}
SEED=${4:-16}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kd-crash.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
OPENBLAS_NUM_THREADS=1
export OPENBLAS_NUM_THREADS
RUN="train --model 784-1024-10 --epochs 3 --seed 3 --train $DATA/fmnist-train-2000 --test $DATA/fmnist-test-500 --quiet"

start=$(date +%s.%N)
"$KD" $RUN --out "$TMP/ref.safetensors" >/dev/null 2>&1 || { echo "crash_resume: the reference run failed"; exit 1; }
full=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')

# A reproducible sequence of fractions in [0, 1).
fraction() { awk -v s="$SEED" -v i="$1" 'BEGIN { srand(s * 1000 + i); print rand() }'; }

failed=0 in_save=0 resumed_from_ck=0
for i in $(seq 1 "$KILLS"); do
    rm -f "$TMP"/ck* "$TMP"/out*
    "$KD" $RUN --out "$TMP/out.safetensors" --checkpoint "$TMP/ck" >/dev/null 2>&1 &
    pid=$!
    f=$(fraction "$i")
    if [ $((i % 2)) -eq 1 ]; then
        sleep "$(awk -v f="$f" -v t="$full" 'BEGIN { printf "%.3f", f * t }')"
    else
        # After a random part of the run, the first moment a save's temporary file exists.
        sleep "$(awk -v f="$f" -v t="$full" 'BEGIN { printf "%.3f", f * t * 0.6 }')"
        n=0
        while [ $n -lt 20000 ] && kill -0 "$pid" 2>/dev/null; do
            for e in "$TMP"/ck.tmp.* "$TMP"/ck.run.tmp.*; do [ -e "$e" ] && break 2; done
            n=$((n + 1))
        done
    fi
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if ls "$TMP" | grep -q '\.tmp\.'; then in_save=$((in_save + 1)); fi
    [ -e "$TMP/ck" ] && resumed_from_ck=$((resumed_from_ck + 1))
    if ! "$KD" $RUN --out "$TMP/out.safetensors" --checkpoint "$TMP/ck" --resume >"$TMP/log" 2>&1; then
        echo "FAIL - kill $i: --resume failed:"; sed 's/^/    /' "$TMP/log"; failed=$((failed + 1)); continue
    fi
    if ! cmp -s "$TMP/ref.safetensors" "$TMP/out.safetensors"; then
        echo "FAIL - kill $i: the resumed model differs from the uninterrupted one"; failed=$((failed + 1))
    fi
    left=$(ls "$TMP" | grep '\.tmp\.' || true)
    if [ -n "$left" ]; then
        echo "FAIL - kill $i: temporary files left: $left"; failed=$((failed + 1))
    fi
done
echo "crash_resume: $KILLS kills ($in_save inside a save, $resumed_from_ck resumed from a checkpoint), $failed failures; an uninterrupted run takes ${full}s (timings noisy)"
[ "$failed" -eq 0 ]
