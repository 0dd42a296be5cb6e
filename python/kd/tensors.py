"""Tensors: named arrays with string metadata, as safetensors files (PyTorch's and NumPy's
exchange format); save_npy writes one array as .npy."""
import ctypes
import os

import numpy as np

from . import arrays as A
from ._handle import Handle
from .capi import (_I64, _P, _S, DTYPE_F32, DTYPE_I8, DTYPE_I32, DTYPE_I64, DTYPE_U8,
                   TENSORS_MAX_DIMS, lib)

__all__ = ["Tensors", "save_npy"]

_DTYPES = {np.dtype(np.float32): DTYPE_F32, np.dtype(np.int32): DTYPE_I32,
           np.dtype(np.int64): DTYPE_I64, np.dtype(np.int8): DTYPE_I8,
           np.dtype(np.uint8): DTYPE_U8}
_NUMPY = {v: k for k, v in _DTYPES.items()}
_NPY_DTYPES = {k: v for k, v in _DTYPES.items() if v in (DTYPE_F32, DTYPE_I32, DTYPE_I64)}


def _dtype_code(a, name, dtypes=None):
    dtypes = dtypes or _DTYPES
    if not isinstance(a, np.ndarray) or a.dtype not in dtypes:
        raise TypeError("%s: expected a numpy.ndarray of %s, got %s"
                        % (name, ", ".join(str(d) for d in dtypes),
                           getattr(a, "dtype", type(a).__name__)))
    A.check(a, a.dtype, name)  # C-contiguous: the library reads its memory
    return dtypes[a.dtype]


class Tensors(Handle):
    """Named arrays (float32, int32, int64, int8, uint8; up to TENSORS_MAX_DIMS dimensions) and
    string metadata, saved atomically as safetensors. Setting an array copies it into the set (the
    library reads the NumPy buffer itself); reading one gives a new array (a copy of the set's).

        t = kd.Tensors()
        t["logits"] = logits                   # float32 [n, classes]
        t.meta["kd.kind"] = "logits"
        t.save("cache.safetensors")
        logits = kd.Tensors.load("cache.safetensors")["logits"]
    """

    _destroy = "kd_tensors_destroy"

    def __init__(self, arrays=None, meta=None):
        out = _P()
        lib().kd_tensors_create(ctypes.byref(out))
        super().__init__(out.value)
        self.meta = _Meta(self)
        for name, a in (arrays or {}).items():
            self[name] = a
        for key, value in (meta or {}).items():
            self.meta[key] = value

    @classmethod
    def load(cls, path):
        """A safetensors file (any writer's), checked before it is trusted."""
        out = _P()
        lib().kd_tensors_load(os.fsencode(path), ctypes.byref(out))
        obj = cls._wrap(out.value)
        obj.meta = _Meta(obj)
        return obj

    def save(self, path):
        lib().kd_tensors_save(self._h, os.fsencode(path))

    def __len__(self):
        n = ctypes.c_int32()
        lib().kd_tensors_count(self._h, ctypes.byref(n))
        return n.value

    def keys(self):
        """The array names, in order."""
        names = []
        for i in range(len(self)):
            name = _S()
            lib().kd_tensors_name(self._h, i, ctypes.byref(name))
            names.append(name.value.decode())
        return names

    def __iter__(self):
        return iter(self.keys())

    def items(self):
        return [(k, self[k]) for k in self.keys()]

    def __contains__(self, name):
        found = ctypes.c_int32()
        lib().kd_tensors_has(self._h, name.encode(), ctypes.byref(found))
        return bool(found.value)

    def __setitem__(self, name, a):
        """a: a C-contiguous float32, int32, int64, int8 or uint8 array (any shape; float32
        finite), read in place and copied into the set."""
        dtype = _dtype_code(a, name)
        dims = (_I64 * max(1, a.ndim))(*a.shape)
        lib().kd_tensors_set(self._h, name.encode(), dtype, a.ndim, dims,
                             a.ctypes.data if a.size else None)

    def __getitem__(self, name):
        """A new array with array name's dtype, shape and values; KeyError if there is none."""
        if name not in self:
            raise KeyError(name)
        dtype, ndim = ctypes.c_int(), ctypes.c_int32()
        dims = (_I64 * TENSORS_MAX_DIMS)()
        lib().kd_tensors_info(self._h, name.encode(), ctypes.byref(dtype), ctypes.byref(ndim),
                              dims)
        data, nbytes = _P(), _I64()
        lib().kd_tensors_data(self._h, name.encode(), ctypes.byref(data), ctypes.byref(nbytes))
        return A.copy_from(data.value, tuple(dims[:ndim.value]), _NUMPY[dtype.value])

    def __delitem__(self, name):
        if name not in self:
            raise KeyError(name)
        lib().kd_tensors_remove(self._h, name.encode())


class _Meta:
    """The string metadata of a Tensors set, as a small mapping."""

    def __init__(self, owner):
        self._owner = owner

    def __getitem__(self, key):
        value = _S()
        lib().kd_tensors_get_meta(self._owner._h, key.encode(), ctypes.byref(value))
        if value.value is None:
            raise KeyError(key)
        return value.value.decode()

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key, value):
        lib().kd_tensors_set_meta(self._owner._h, key.encode(), value.encode())

    def __delitem__(self, key):
        if key not in self.keys():
            raise KeyError(key)
        lib().kd_tensors_remove_meta(self._owner._h, key.encode())

    def keys(self):
        n = ctypes.c_int32()
        lib().kd_tensors_meta_count(self._owner._h, ctypes.byref(n))
        out = []
        for i in range(n.value):
            key = _S()
            lib().kd_tensors_meta_key(self._owner._h, i, ctypes.byref(key))
            out.append(key.value.decode())
        return out


def save_npy(path, a):
    """Writes a (a C-contiguous float32, int32 or int64 array: kd_npy_save has no 8-bit dtypes)
    as a NumPy .npy file, atomically."""
    dtype = _dtype_code(a, "a", _NPY_DTYPES)
    dims = (_I64 * max(1, a.ndim))(*a.shape)
    lib().kd_npy_save(os.fsencode(path), dtype, a.ndim, dims, a.ctypes.data if a.size else None)
