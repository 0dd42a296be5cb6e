#!/bin/sh
# cmake --install BUILD into DESTDIR staging directories, for prefix /usr (as a Debian package
# would) and /usr/local (the default): the package lands in a directory on PYTHON's sys.path
# (Debian: /usr/lib/python3/dist-packages, /usr/local/lib/python3.X/dist-packages), imports from
# there, finds the staged library and works. Usage: install.sh BUILD_DIR PYTHON LIBDIR
set -eu
build=$1 python=$2 libdir=$3
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for prefix in /usr /usr/local; do
    root=$stage/root$(echo "$prefix" | tr / _)
    DESTDIR=$root "${CMAKE:-cmake}" --install "$build" --prefix "$prefix" >"$stage/install.log"
    init=$(cd "$root" && find . -path '*/kd/__init__.py' | sed 's|^\.||')
    pydir=${init%/kd/__init__.py}
    echo "prefix $prefix: the package in $pydir"
    test -n "$pydir" || { echo "no kd package under $root"; cat "$stage/install.log"; exit 1; }
    "$python" -c 'import sys; sys.exit(sys.argv[1] not in sys.path)' "$pydir" ||
        { echo "$pydir is not on $python's sys.path"; exit 1; }
    if "$python" -c 'import sysconfig, sys; sys.exit("deb_system" not in sysconfig.get_scheme_names())' &&
        [ "$prefix" = /usr ] && [ "$pydir" != /usr/lib/python3/dist-packages ]; then
        echo "Debian's python: expected /usr/lib/python3/dist-packages"; exit 1
    fi
    case "$libdir" in /*) lib=$root$libdir final=$libdir ;; *) lib=$root$prefix/$libdir final=$prefix/$libdir ;; esac
    # Only the staged tree: no source tree on the path, the library by its installed name.
    (cd "$root" && env -u PYTHONPATH -u KD_LIBRARY PYTHONPATH="$root$pydir" \
        KD_LIBRARY="$lib/libkd.so.0" "$python" - "$root" "$final" <<'PY'
import os
import sys

import numpy as np

import kd
import kd._install

root, final = sys.argv[1], sys.argv[2]
assert kd.__file__.startswith(root), kd.__file__
assert kd.capi.path().startswith(root), kd.capi.path()
# the installed package knows the installed library's final place (not the staging one)
assert kd._install.LIBDIR == final, (kd._install.LIBDIR, final)
with kd.Model("input 4 | dense 3", seed=1) as m:
    assert m.predict(np.ones((2, 4), np.float32)).shape == (2, 3)
print("kd", kd.version(), "imported from", os.path.dirname(kd.__file__))
PY
    )
done
