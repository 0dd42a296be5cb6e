#!/bin/sh
# Runs every libFuzzer target of a -DKD_FUZZ=ON build for a bounded time from its committed seeds,
# with memory limits low enough that an input making the library allocate far more than it holds
# (issue 16's fault 2) is a failure. New inputs go to a scratch corpus, never into the repository;
# a crash, leak or OOM leaves its input in ARTIFACTS (default: a temporary directory, printed) --
# commit it under corpus/TARGET/ as a regression input once fixed.
#   usage: tests/fuzz/run.sh BUILD_DIR [SECONDS_EACH]
set -eu
build=${1:?usage: run.sh BUILD_DIR [SECONDS_EACH]}
seconds=${2:-15}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/kd-fuzz.XXXXXX")
artifacts=${ARTIFACTS:-$work/artifacts}
mkdir -p "$artifacts"
status=0
# The readers of users' data (text, NumPy, CSV, images, named tensors) get two thirds of the time.
short=$((seconds * 2 / 3))
[ "$short" -ge 1 ] || short=1
for target in safetensors idx spec model_load checkpoint options text tensors npy npz csv images; do
    time=$seconds
    rss=512
    malloc=64
    dict=
    case $target in
    spec) dict=spec.dict ;;
    idx) dict=idx.dict ;;
    options) dict=options.dict ;;
    safetensors | model_load | checkpoint | tensors) dict=safetensors.dict ;;
    esac
    case $target in
    text | tensors | npy | npz | csv) time=$short ;;
    # libpng and libjpeg allocate outside the library's allocator, and a decoded image may take
    # up to 2^24 pixels: more room, as the target's header says.
    images) time=$short rss=2048 malloc=2048 ;;
    esac
    mkdir -p "$work/$target"
    cp "$here/corpus/$target"/* "$work/$target/"
    echo "== fuzz_$target: $time s"
    if ! "$build/tests/fuzz/fuzz_$target" -max_total_time="$time" -rss_limit_mb="$rss" \
        -malloc_limit_mb="$malloc" -max_len=16384 -timeout=10 -print_final_stats=1 \
        ${dict:+-dict="$here/$dict"} -artifact_prefix="$artifacts/$target-" "$work/$target" \
        "$here/corpus/$target" >"$work/$target.log" 2>&1; then
        status=1
        echo "fuzz_$target FAILED; its input is in $artifacts:"
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$work/$target.log" | head -20
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)|cov: ' "$work/$target.log" | tail -3
done
if [ $status -eq 0 ]; then rm -rf "$work"; fi
exit $status
