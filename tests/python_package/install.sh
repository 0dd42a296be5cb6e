#!/bin/sh
# cmake --install BUILD into a DESTDIR staging directory (prefix /usr, as a Debian package would),
# then: the package is where Debian's Python looks (lib/python3/dist-packages), imports from
# there, finds the staged library and works. Usage: install.sh BUILD_DIR PYTHON LIBDIR
set -eu
build=$1 python=$2 libdir=$3
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
DESTDIR=$stage "${CMAKE:-cmake}" --install "$build" --prefix /usr >"$stage/install.log"
pydir=$("$python" "$(dirname "$0")/../../cmake/python_install_dir.py" /usr)
test -f "$stage/usr/$pydir/kd/__init__.py" || { echo "no kd package in $stage/usr/$pydir"; exit 1; }
case "$libdir" in /*) lib=$stage$libdir ;; *) lib=$stage/usr/$libdir ;; esac
# Only the staged tree: no source tree on the path, the library by its installed name.
cd "$stage"
env -u PYTHONPATH -u KD_LIBRARY PYTHONPATH="$stage/usr/$pydir" KD_LIBRARY="$lib/libkd.so.0" \
    "$python" - "$stage" "$libdir" <<'PY'
import os
import sys

import numpy as np

import kd
import kd._install

stage, libdir = sys.argv[1], sys.argv[2]
assert kd.__file__.startswith(stage), kd.__file__
assert kd.capi.path().startswith(stage), kd.capi.path()
# the installed package knows the installed library's final place (not the staging one)
expected = libdir if os.path.isabs(libdir) else "/usr/" + libdir
assert kd._install.LIBDIR == expected, (kd._install.LIBDIR, expected)
with kd.Model("input 4 | dense 3", seed=1) as m:
    assert m.predict(np.ones((2, 4), np.float32)).shape == (2, 3)
print("kd", kd.version(), "imported from", os.path.dirname(kd.__file__))
PY
