"""Writes the NumPy fixtures of tests/test_numpy.c (committed, so CI needs no NumPy).

    cd tests/data/numpy && python3 make_fixtures.py
"""
import io
import zipfile

import numpy as np
from numpy.lib import format as npf


def save(name, a, version=None):
    with open(name, "wb") as f:
        npf.write_array(f, a, version=version, allow_pickle=False)


x = (np.arange(24, dtype=np.float32).reshape(6, 4) - 10) / 4
y = np.array([0, 1, 2, 1, 0, 2], dtype=np.int64)
save("x_f32.npy", x)
save("y_i64.npy", y)
save("y_i32.npy", y.astype(np.int32))
save("y_u8.npy", y.astype(np.uint8))
save("x_f64_v2.npy", x.astype(np.float64), version=(2, 0))
save("x_f32_v3.npy", x, version=(3, 0))
save("x_u8_nchw.npy", np.arange(6 * 2 * 3 * 3, dtype=np.uint8).reshape(6, 2, 3, 3) * 3)
save("x_u8_nhw.npy", np.arange(6 * 2 * 2, dtype=np.uint8).reshape(6, 2, 2))
# malformed or refused
save("fortran.npy", np.asfortranarray(x))
save("bigendian.npy", x.astype(">f4"))
save("int16.npy", x.astype(np.int16))
save("y_float.npy", y.astype(np.float32))
save("y_negative.npy", np.array([0, 1, -1, 1, 0, 2], dtype=np.int64))
save("y_short.npy", y[:5])
with open("x_f32.npy", "rb") as f:
    whole = f.read()
with open("truncated.npy", "wb") as f:
    f.write(whole[:-5])
np.savez("set.npz", x=x, y=y)
np.savez_compressed("set_compressed.npz", x=x.astype(np.float64), y=y.astype(np.int32))
with open("set.npz", "rb") as f:
    whole = f.read()
with open("truncated.npz", "wb") as f:
    f.write(whole[: len(whole) // 2])
