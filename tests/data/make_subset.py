#!/usr/bin/env python3
"""Writes the small Fashion-MNIST subset the tests use: the first N training and M test images
with their labels, as gzip IDX files, from Debian's dataset-fashion-mnist package.

    python3 tests/data/make_subset.py [/usr/share/datasets/fashion-mnist] [2000] [500]
"""
import gzip
import os
import struct
import sys


def subset(src, dst, count):
    with gzip.open(src, "rb") as f:
        data = f.read()
    magic, ndim = data[:4], data[3]
    dims = list(struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim]))
    per = 1
    for d in dims[1:]:
        per *= d
    body = data[4 + 4 * ndim:4 + 4 * ndim + count * per]
    dims[0] = count
    # mtime=0 keeps the files byte-identical from run to run
    with gzip.GzipFile(dst, "wb", mtime=0) as f:
        f.write(magic + struct.pack(">" + "I" * ndim, *dims) + body)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    ntrain = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    ntest = int(sys.argv[3]) if len(sys.argv) > 3 else 500
    here = os.path.dirname(os.path.abspath(__file__))
    for split, name, count in (("train", "train", ntrain), ("t10k", "test", ntest)):
        for kind, idx in (("images", "idx3"), ("labels", "idx1")):
            src = os.path.join(root, f"{split}-{kind}-{idx}-ubyte.gz")
            dst = os.path.join(here, f"fmnist-{name}-{count}-{kind}-{idx}-ubyte.gz")
            subset(src, dst, count)


if __name__ == "__main__":
    main()
