"""Prints where a pure-Python package goes for PREFIX (argv[1]): relative to PREFIX when under it.

Debian's interpreter has the deb_system scheme (PREFIX/lib/python3/dist-packages, for /usr) and
posix_local (/usr/local/lib/python3.X/dist-packages); elsewhere posix_prefix."""
import os
import sys
import sysconfig

prefix = os.path.normpath(sys.argv[1])
schemes = sysconfig.get_scheme_names()
if prefix == "/usr/local" and "posix_local" in schemes:
    path = sysconfig.get_path("purelib", "posix_local", vars={"base": "/usr", "platbase": "/usr"})
else:
    scheme = "deb_system" if "deb_system" in schemes else "posix_prefix"
    path = sysconfig.get_path("purelib", scheme, vars={"base": prefix, "platbase": prefix})
print(os.path.relpath(path, prefix) if path.startswith(prefix + os.sep) else path)
