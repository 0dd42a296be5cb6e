#!/usr/bin/env python3
"""Writes the committed Fashion-MNIST subset in the other formats kd reads (standard library only,
so the CLI test needs no NumPy): .npy pairs, a .npz, a .csv and an ImageFolder of PNGs, from the
first N training and M test images.

    make_byod.py DATA_DIR OUT_DIR [N_TRAIN N_TEST]
"""
import gzip
import os
import struct
import sys
import zipfile
import zlib


def idx(path, skip):
    with gzip.open(path, "rb") as f:
        return f.read()[skip:]


def npy(dtype, shape, data):
    head = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join("%d, " % d for d in shape) if len(shape) == 1 else ", ".join(map(str, shape)))
    pad = 64 - (10 + len(head) + 1) % 64
    head = head + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode() + data


def png(width, height, gray):
    raw = b"".join(b"\x00" + gray[r * width:(r + 1) * width] for r in range(height))

    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body +
                struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    data, out = sys.argv[1], sys.argv[2]
    counts = {"train": int(sys.argv[3]) if len(sys.argv) > 3 else 300,
              "test": int(sys.argv[4]) if len(sys.argv) > 4 else 100}
    src = {"train": "fmnist-train-2000", "test": "fmnist-test-500"}
    os.makedirs(out, exist_ok=True)
    for split, n in counts.items():
        x = idx(os.path.join(data, src[split] + "-images-idx3-ubyte.gz"), 16)[:n * 784]
        y = idx(os.path.join(data, src[split] + "-labels-idx1-ubyte.gz"), 8)[:n]
        xb, yb = npy("|u1", (n, 28, 28), x), npy("<i8", (n,), b"".join(struct.pack("<q", v) for v in y))
        with open(os.path.join(out, split + "_x.npy"), "wb") as f:
            f.write(xb)
        with open(os.path.join(out, split + "_y.npy"), "wb") as f:
            f.write(yb)
        with zipfile.ZipFile(os.path.join(out, split + ".npz"), "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("images.npy", xb)
            z.writestr("labels.npy", yb)
        with open(os.path.join(out, split + ".csv"), "w") as f:
            f.write(",".join("p%d" % i for i in range(784)) + ",label\n")
            for i in range(n):
                f.write(",".join(str(v / 255) for v in x[i * 784:(i + 1) * 784]))
                f.write(",%s\n" % ("abcdefghij"[y[i]]))
        # An ImageFolder of two classes (trouser 1, bag 8): the first images of each.
        for i in range(n):
            if y[i] in (1, 8) and i < n:
                d = os.path.join(out, split + "_images", "trouser" if y[i] == 1 else "bag")
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "%04d.png" % i), "wb") as f:
                    f.write(png(28, 28, x[i * 784:(i + 1) * 784]))


if __name__ == "__main__":
    main()
