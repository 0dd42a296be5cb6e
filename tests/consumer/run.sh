#!/usr/bin/env bash
# The ctest test `consumer`: installs the build into a temporary prefix, then builds main.c against
# it with find_package(kd) (shared and static) and with pkg-config, and runs each program.
#   usage: tests/consumer/run.sh BUILD_DIR [LIBDIR]    (LIBDIR as CMAKE_INSTALL_LIBDIR, default lib)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$1" && pwd)
libdir=${2:-lib}
cmake=${CMAKE:-cmake}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

prefix=$tmp/prefix
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log"
for f in include/kd.h include/kd_export.h include/kd_version.h "$libdir/libkd.so.0" \
         "$libdir/libkd.a" "$libdir/pkgconfig/kd.pc" "$libdir/cmake/kd/kdConfig.cmake" bin/kd; do
    if [ ! -e "$prefix/$f" ]; then
        echo "consumer: the install lacks $f"
        cat "$tmp/install.log"
        exit 1
    fi
done
export LD_LIBRARY_PATH=$prefix/$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

echo "== find_package(kd): kd::kd, then kd::kd_static"
"$cmake" -S "$here" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release \
         ${CC:+-DCMAKE_C_COMPILER="$CC"} >"$tmp/configure.log" ||
    { cat "$tmp/configure.log"; exit 1; }
"$cmake" --build "$tmp/cmake" >"$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
"$tmp/cmake/consumer"
"$tmp/cmake/consumer_static"
if [ -x "$tmp/cmake/consumer_mpi" ]; then "$tmp/cmake/consumer_mpi"; fi
if ldd "$tmp/cmake/consumer_static" | grep -q 'libkd\.so'; then
    echo "consumer: consumer_static links libkd.so, not libkd.a"; exit 1
fi

echo "== pkg-config kd"
PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig make -s -f "$here/Makefile" OUT="$tmp/consumer_pc"
"$tmp/consumer_pc"

echo "== README.md's first program, through pkg-config"
readme=$here/../../README.md
awk '/tests\/consumer\/run.sh builds and runs/ { armed = 1; next }
     armed && /^```c$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$readme" >"$tmp/readme.c"
[ -s "$tmp/readme.c" ] || { echo "consumer: no tested C block found in README.md"; exit 1; }
# shellcheck disable=SC2046 # the flags are meant to split into words
"${CC:-cc}" -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$tmp/readme" "$tmp/readme.c" \
    $(PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig pkg-config --cflags --libs kd)
"$tmp/readme"

echo "== the installed kd tool (found through its RPATH)"
env -u LD_LIBRARY_PATH "$prefix/bin/kd" --version
echo "consumer: OK"
