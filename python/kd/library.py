"""The library itself: its version, kernels, process-wide limits and allocator."""
import ctypes

from .capi import _I64, CALLOC_FN, ERR_ARGUMENT, FREE_FN, MALLOC_FN, REALLOC_FN, lib
from .errors import error_for

__all__ = ["version", "version_number", "kernels_name", "set_limit", "get_limit", "set_threads",
           "get_threads",
           "set_allocator", "last_error", "strerror"]


def last_error():
    """The calling thread's last error sentence (kd_last_error), "" when none."""
    return (lib().kd_last_error() or b"").decode()


def strerror(status):
    """The name of a kd_status ("KD_ERR_SHAPE: sizes do not match")."""
    return lib().kd_strerror(status).decode()


def version():
    """The version of the loaded library, "MAJOR.MINOR.PATCH"."""
    return lib().kd_version().decode()


def version_number():
    """MAJOR * 10000 + MINOR * 100 + PATCH of the loaded library."""
    return lib().kd_version_number()


def kernels_name():
    """The kernel variant in use: "ref", "avx2" or "avx512"."""
    return lib().kd_kernels_name().decode()


def set_limit(key, value):
    """Sets a process-wide budget (LIMIT_MODEL_VALUES, LIMIT_FILE_BYTES); see kd.h."""
    lib().kd_set_limit(key, value)


def get_limit(key):
    """The current value of a budget."""
    value = _I64()
    lib().kd_get_limit(key, ctypes.byref(value))
    return value.value


def set_threads(n):
    """Sets libkd's thread count (its OpenMP loops and OpenBLAS's), process-wide; 0: every core.
    The default is KD_THREADS from the environment, else 1. See kd_set_threads in kd.h."""
    lib().kd_set_threads(n)


def get_threads():
    """The number of threads libkd uses now (>= 1)."""
    n = ctypes.c_int32()
    lib().kd_get_threads(ctypes.byref(n))
    return n.value


_allocator = None  # the ctypes callbacks in use, kept alive while the library may call them


def set_allocator(malloc_fn=None, calloc_fn=None, realloc_fn=None, free_fn=None):
    """Routes every libkd allocation through four Python callables (MALLOC_FN... signatures, the
    first argument the user pointer), or back to libc's with no arguments. Call it before creating
    anything (see kd.h). ArgumentError when only some of the four are given."""
    global _allocator
    given = (malloc_fn, calloc_fn, realloc_fn, free_fn)
    if all(f is None for f in given):
        lib().kd_set_allocator(MALLOC_FN(), CALLOC_FN(), REALLOC_FN(), FREE_FN(), None)
        _allocator = None
        return
    missing = [n for n, f in zip(("malloc_fn", "calloc_fn", "realloc_fn", "free_fn"), given)
               if f is None]
    if missing:  # kd.h's KD_ERR_ARGUMENT, said before ctypes fails to wrap None as a function
        raise error_for(ERR_ARGUMENT, "kd_set_allocator",
                        "give all four functions, or none for libc's; %s missing"
                        % ", ".join(missing), strerror(ERR_ARGUMENT))
    fns = (MALLOC_FN(malloc_fn), CALLOC_FN(calloc_fn), REALLOC_FN(realloc_fn), FREE_FN(free_fn))
    lib().kd_set_allocator(*fns, None)
    _allocator = fns
