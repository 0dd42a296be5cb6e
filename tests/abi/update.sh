#!/usr/bin/env bash
# Regenerates the ABI baseline tests/abi/libkd.abi from a fresh build of libkd.so. Run it when the
# public API changed on purpose and commit the baseline in the same commit as the header.
#   usage: tests/abi/update.sh [BUILD_DIR]      (default: build; configured if it is not yet)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:-$top/build}

[ -f "$build/CMakeCache.txt" ] || cmake -S "$top" -B "$build"
cmake --build "$build" --target kd -j2
build=$(cd "$build" && pwd)

# Only the exported kd_ interfaces and the types of the public headers, without locations or build
# paths (the source paths that name each translation unit are made relative to the checkout), so
# the baseline does not depend on where it was built.
abidw --no-corpus-path --no-show-locs --no-comp-dir-path \
      --drop-private-types --exported-interfaces-only --hd "$top/include" --hd "$build/include" --out-file "$here/libkd.abi.tmp" "$build/libkd.so"
sed -i "s|path='$top/|path='|" "$here/libkd.abi.tmp"
mv "$here/libkd.abi.tmp" "$here/libkd.abi"
echo "abi: wrote tests/abi/libkd.abi ($(grep -c '<elf-symbol ' "$here/libkd.abi") symbols)"
