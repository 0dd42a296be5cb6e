"""NumPy arrays in and out of libkd without copies.

An array given to the library is passed as its own memory (ndarray.ctypes): it must be a NumPy
array of the exact dtype (float32 for values, int32 for labels and token ids), C-contiguous and
aligned, or the call raises TypeError saying so; nothing is ever converted behind your back, so
the library reads (and, for in-place calls, writes) the very buffer you hold. To convert, say so:

    x = kd.as_float32(x)      # np.ascontiguousarray(x, np.float32), aligned: copied if needed
    y = kd.as_int32(labels)

Results are new arrays the library writes into directly; most calls also take out=, an array of
the result's shape and dtype, written in place and returned. Small parameter vectors (teacher
weights, milestones, normalisation mean/std) are the exception: any sequence, converted.
"""
import ctypes

import numpy as np

__all__ = ["as_float32", "as_int32"]

F32 = np.dtype(np.float32)
I32 = np.dtype(np.int32)
_PF = ctypes.POINTER(ctypes.c_float)
_PI = ctypes.POINTER(ctypes.c_int32)


def _aligned(a):
    # numpy.ascontiguousarray returns an unaligned C-contiguous array as it is
    return a if a.flags.aligned else a.copy()


def as_float32(x):
    """x as a C-contiguous aligned float32 array: x itself when it already is one, else a copy."""
    return _aligned(np.ascontiguousarray(x, dtype=np.float32))


def as_int32(x):
    """x as a C-contiguous aligned int32 array: x itself when it already is one, else a copy."""
    return _aligned(np.ascontiguousarray(x, dtype=np.int32))


def check(x, dtype, name, size=None, writable=False):
    """Raises TypeError unless x is a C-contiguous aligned array of dtype (writable if asked),
    and ValueError unless it holds size values (when size is given)."""
    if not isinstance(x, np.ndarray):
        raise TypeError("%s: expected a numpy.ndarray of %s, got %s (convert explicitly with "
                        "kd.as_%s)" % (name, dtype, type(x).__name__, dtype))
    if x.dtype != dtype:
        raise TypeError("%s: expected dtype %s, got %s (convert explicitly with kd.as_%s)"
                        % (name, dtype, x.dtype, dtype))
    if not x.flags.c_contiguous:
        raise TypeError("%s: expected a C-contiguous array, got strides %s (make one with "
                        "numpy.ascontiguousarray)" % (name, x.strides))
    if not x.flags.aligned:
        raise TypeError("%s: the array is not aligned (its data at %#x is not on a %d-byte "
                        "boundary, as a view of a byte buffer at an odd offset); make an aligned "
                        "copy with x.copy() or kd.as_%s (numpy.ascontiguousarray returns it "
                        "unchanged)" % (name, x.ctypes.data, x.dtype.alignment, dtype))
    if writable and not x.flags.writeable:
        raise TypeError("%s: expected a writable array" % name)
    if size is not None and x.size != size:
        raise ValueError("%s: expected %d values, got %d (shape %s)" % (name, size, x.size,
                                                                       x.shape))
    return x


def _pointer(x, ctype, pointer):
    """A ctype* into x's memory (x checked). A writable array is shared through the buffer
    protocol, the cheapest way ctypes has; a read-only one through its address."""
    if x.flags.writeable and x.size:
        return (ctype * x.size).from_buffer(x)
    return ctypes.cast(x.ctypes.data, pointer)


def floats(x, name, size=None, writable=False):
    """A float* into x (float32, checked), or None for None."""
    if x is None:
        return None
    return _pointer(check(x, F32, name, size, writable), ctypes.c_float, _PF)


def ints(x, name, size=None):
    """An int32_t* into x (int32, checked), or None for None."""
    if x is None:
        return None
    return _pointer(check(x, I32, name, size), ctypes.c_int32, _PI)


def output(out, shape, dtype=F32, name="out"):
    """out checked against shape and dtype, or a new array of them."""
    if out is None:
        return np.empty(shape, dtype)
    check(out, dtype, name, int(np.prod(shape)), writable=True)
    if out.shape != tuple(shape):
        raise ValueError("%s: expected shape %s, got %s" % (name, tuple(shape), out.shape))
    return out


def out_floats(a):
    """A float* into a (float32, C-contiguous: made or checked by output)."""
    return _pointer(a, ctypes.c_float, _PF)


def out_ints(a):
    return _pointer(a, ctypes.c_int32, _PI)


def param(values, name, size=None):
    """A small parameter vector (any sequence) as a float32 array; ValueError unless it holds
    size values (when size is given: the library reads exactly that many)."""
    a = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if size is not None and a.size != size:
        raise ValueError("%s: expected %d values, got %d" % (name, size, a.size))
    return a


def batch_of(x, name, per_example):
    """The batch size of x [batch, ...] whose examples hold per_example values."""
    if not isinstance(x, np.ndarray):
        raise TypeError("%s: expected a numpy.ndarray [batch, ...], got %s (convert explicitly "
                        "with kd.as_float32 or kd.as_int32)" % (name, type(x).__name__))
    if x.ndim < 1:
        raise ValueError("%s: expected an array [batch, ...], got a scalar" % name)
    batch = x.shape[0]
    if x.ndim == 1 and per_example != 1:
        raise ValueError("%s: expected [batch, %d] (one example a row), got shape %s"
                         % (name, per_example, x.shape))
    if batch * per_example != x.size:
        raise ValueError("%s: expected [batch, %d values an example], got shape %s"
                         % (name, per_example, x.shape))
    return batch


def view(address, shape, dtype, owner):
    """A read-only array over memory the library lends (no copy); keeps owner alive."""
    n = int(np.prod(shape))
    if not address or n == 0:
        a = np.empty(shape, dtype)
        a.flags.writeable = False
        return a
    ctype = ctypes.c_float if dtype == F32 else ctypes.c_int32
    data = (ctype * n).from_address(address)
    data._owner = owner
    owner._lend(data)
    a = np.ctypeslib.as_array(data).reshape(shape)
    a.flags.writeable = False
    return a


def copy_from(address, shape, dtype):
    """A new array holding a copy of n values at address (memory the library may reuse)."""
    a = np.empty(shape, dtype)
    if a.size:
        ctypes.memmove(a.ctypes.data, address, a.nbytes)
    return a
