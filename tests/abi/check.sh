#!/usr/bin/env bash
# The ABI guard: compares a built libkd.so with the committed baseline tests/abi/libkd.abi.
# Fails on an incompatible change (a function removed, a signature, enum value or type changed);
# passes on pure additions, printing them, so new functions can land before the baseline is
# regenerated with tests/abi/update.sh.
#   usage: tests/abi/check.sh [BUILD_DIR]      (default: build)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
lib=$build/libkd.so
baseline=$here/libkd.abi

[ -f "$lib" ] || { echo "abi: $lib not found: build the library first"; exit 1; }
[ -f "$baseline" ] || { echo "abi: no baseline $baseline: run tests/abi/update.sh"; exit 1; }

# Only the types of the public headers count: the handles' struct layouts are private.
status=0
report=$(abidiff --no-show-locs --drop-private-types --exported-interfaces-only \
                 --hd2 "$top/include" --hd2 "$build/include" "$baseline" "$lib" 2>&1) || status=$?

# abidiff's exit status is a bit set: 1 error, 2 usage error, 4 ABI change, 8 incompatible change.
# Bit 8 is set only for removed interfaces; a changed parameter type or enum value sets 4 alone, so
# a 4 passes only when the summaries count nothing removed or changed (harmless changes, such as a
# new enumerator, are filtered out by abidiff itself).
if (( status & 3 )); then
    echo "abi: abidiff failed (status $status):"
    echo "$report"
    exit 1
fi
removed='summary: *[1-9][0-9]* Removed'
changed='summary: *[0-9]+ Removed[^,]*, *[1-9][0-9]* Changed'
breaking=$(echo "$report" | grep -E "$removed|$changed|SONAME changed|architecture changed" || true)
if (( status & 8 )) || [ -n "$breaking" ]; then
    echo "abi: INCOMPATIBLE change against tests/abi/libkd.abi:"
    echo "$report"
    echo "abi: a removed or changed interface breaks programs built against libkd.so.0: add a"
    echo "abi: new function instead (or, deliberately, bump the major version and regenerate"
    echo "abi: the baseline with tests/abi/update.sh)."
    exit 1
elif (( status & 4 )); then
    echo "abi: compatible changes (additions) against the baseline:"
    echo "$report"
    echo "abi: OK; when the additions are final, run tests/abi/update.sh and commit the baseline."
else
    echo "abi: OK, no change against the baseline ($(grep -c '<elf-symbol ' "$baseline") symbols)"
fi
