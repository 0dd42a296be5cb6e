#!/bin/sh
# The ONNX files of kd_model_export_onnx, checked by real readers:
#   runtime  ONNX Runtime (npm onnxruntime-node, CPU library inside the package) runs each test
#            model of onnx_cases and its outputs equal libkd's within 1e-5 (check.js);
#   checker  Debian's python3-onnx: onnx.checker with shape inference accepts each file (check.py).
# Exit 77 (ctest: skipped) with the reason when node or python3-onnx is missing; .ci/run installs
# both, so CI runs them.
# usage: run.sh runtime|checker ONNX_CASES WORKDIR
set -eu
what=$1 cases=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
# 1.20.1: its Linux x64 CPU library ships in the package (--ignore-scripts skips only the CUDA
# download) and it runs on Node 18 (Debian 12) and 20.
ort_version=1.20.1

mkdir -p "$work"
out=$(mktemp -d "$work/cases.XXXXXX")
trap 'rm -rf "$out"' EXIT

case $what in
runtime)
    if ! command -v node >/dev/null 2>&1; then
        echo "SKIP: node is not installed, so ONNX Runtime (npm onnxruntime-node) cannot run the" \
            "exported models; on Debian: apt-get install nodejs npm"
        exit 77
    fi
    if [ ! -d "$work/node_modules/onnxruntime-node" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            echo "SKIP: npm is not installed (needed once for onnxruntime-node); on Debian: apt-get install npm"
            exit 77
        fi
        echo "+ npm install --ignore-scripts onnxruntime-node@$ort_version (into $work)"
        npm install --prefix "$work" --ignore-scripts --no-audit --no-fund --loglevel=error \
            "onnxruntime-node@$ort_version" >&2
    fi
    "$cases" "$out"
    NODE_PATH="$work/node_modules" node "$here/check.js" "$out"
    ;;
checker)
    # Debian's python3-onnx belongs to Debian's python3 (another python3 may come first on PATH).
    py=/usr/bin/python3
    [ -x "$py" ] || py=python3
    if ! "$py" -c 'import onnx' >/dev/null 2>&1; then
        echo "SKIP: $py cannot import onnx; on Debian: apt-get install python3-onnx"
        exit 77
    fi
    "$cases" "$out"
    "$py" "$here/check.py" "$out"
    ;;
*)
    echo "usage: run.sh runtime|checker ONNX_CASES WORKDIR" >&2
    exit 2
    ;;
esac
