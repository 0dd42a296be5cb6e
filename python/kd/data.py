"""Dataset, Batcher and image augmentation: examples as float32 [n, c, h, w] in [0, 1] (after
the file's own scaling), labels as int32 [n]."""
import ctypes
import os

import numpy as np

from . import arrays as A
from ._handle import Handle
from .capi import _I64, _P, _PI64, _S, lib

__all__ = ["Dataset", "Batcher", "augment_images"]


class Dataset(Handle):
    """Examples and labels in the library's memory; images and labels are NumPy views of it
    (no copy). Dataset(images, labels) reads IDX files (plain or gzip); the load_* class methods
    read the other formats."""

    _destroy = "kd_dataset_destroy"

    def __init__(self, images_path, labels_path=None):
        out = _P()
        lib().kd_dataset_load_idx(os.fsencode(images_path),
                                  os.fsencode(labels_path) if labels_path is not None else None,
                                  ctypes.byref(out))
        super().__init__(out.value)

    @classmethod
    def load_idx(cls, images_path, labels_path=None):
        """IDX images (bytes scaled to [0, 1]) and labels; labels_path None: unlabelled."""
        return cls(images_path, labels_path)

    @classmethod
    def load_idx_prefix(cls, prefix):
        """PREFIX-images-idx3-ubyte(.gz) and PREFIX-labels-idx1-ubyte(.gz), or Kaggle's
        PREFIX-images.idx3-ubyte and PREFIX-labels.idx1-ubyte."""
        out = _P()
        lib().kd_dataset_load_idx_prefix(os.fsencode(prefix), ctypes.byref(out))
        return cls._wrap(out.value)

    @classmethod
    def load_npy(cls, x_path, y_path=None):
        """Examples [n, ...] (float32, float64 as is; uint8 scaled to [0, 1]) and integer labels
        [n] from .npy files (numpy.save)."""
        out = _P()
        lib().kd_dataset_load_npy(os.fsencode(x_path),
                                  os.fsencode(y_path) if y_path is not None else None,
                                  ctypes.byref(out))
        return cls._wrap(out.value)

    @classmethod
    def load_npz(cls, path, x_name="x", y_name="y"):
        """Arrays x_name and y_name (None: unlabelled) of a numpy.savez archive."""
        out = _P()
        lib().kd_dataset_load_npz(os.fsencode(path), x_name.encode(),
                                  y_name.encode() if y_name is not None else None,
                                  ctypes.byref(out))
        return cls._wrap(out.value)

    @classmethod
    def load_csv(cls, path, label_column=None):
        """A CSV table with a header row: numeric feature columns and the named label column."""
        out = _P()
        lib().kd_dataset_load_csv(os.fsencode(path),
                                  label_column.encode() if label_column is not None else None,
                                  ctypes.byref(out))
        return cls._wrap(out.value)

    @classmethod
    def load_image_folder(cls, root, channels=3, height=0, width=0):
        """root/CLASS/IMAGE.png|jpg (torchvision's ImageFolder layout), pixels in [0, 1], all of
        one size (or resized to height x width when given)."""
        out = _P()
        lib().kd_dataset_load_image_folder(os.fsencode(root), channels, height, width,
                                           ctypes.byref(out))
        return cls._wrap(out.value)

    def split(self, fraction, seed):
        """(rest, held_out): new datasets, held_out with round(fraction * n) examples drawn by
        a seeded shuffle (a validation split)."""
        a, b = _P(), _P()
        lib().kd_dataset_split(self._h, fraction, seed, ctypes.byref(a), ctypes.byref(b))
        return Dataset._wrap(a.value), Dataset._wrap(b.value)

    def hold_out(self, fraction, seed):
        """Moves the examples split(fraction, seed) would hold out into a new dataset and returns
        it; this one keeps the rest, compacted in place (no second copy). Views taken of images
        or labels before the call still cover the old size: take them again. A Batcher in the
        middle of an epoch over this set cannot go on (StateError): hold out before batching."""
        b = _P()
        lib().kd_dataset_hold_out(self._h, fraction, seed, ctypes.byref(b))
        return Dataset._wrap(b.value)

    def channel_stats(self):
        """(mean, std) per channel over the whole set, float32 [c] each, for
        Model.set_normalization."""
        c = self.shape[0]
        mean, std = np.empty(c, np.float32), np.empty(c, np.float32)
        lib().kd_dataset_channel_stats(self._h, A.out_floats(mean), A.out_floats(std))
        return mean, std

    @property
    def classes(self):
        """The class names of labels 0..K-1 when the file named them (CSV, image folders), else
        []."""
        n = ctypes.c_int32()
        lib().kd_dataset_class_count(self._h, ctypes.byref(n))
        names = []
        for i in range(n.value):
            name = _S()
            lib().kd_dataset_class_name(self._h, i, ctypes.byref(name))
            names.append(name.value.decode())
        return names

    @property
    def size(self):
        """Examples in the set."""
        v = _I64()
        lib().kd_dataset_size(self._h, ctypes.byref(v))
        return v.value

    def __len__(self):
        return self.size

    @property
    def shape(self):
        """(c, h, w) of one example."""
        c, h, w = _I64(), _I64(), _I64()
        lib().kd_dataset_shape(self._h, ctypes.byref(c), ctypes.byref(h), ctypes.byref(w))
        return c.value, h.value, w.value

    @property
    def example_size(self):
        """c * h * w: the input_size of a model for this set."""
        c, h, w = self.shape
        return c * h * w

    @property
    def images(self):
        """Every example, a read-only float32 view [n, c, h, w] of the library's memory (no
        copy); it keeps the dataset alive."""
        address = ctypes.cast(lib().kd_dataset_images(self._h), _P).value
        return A.view(address, (self.size,) + self.shape, A.F32, self)

    @property
    def labels(self):
        """The labels, a read-only int32 view [n] (no copy), or None for an unlabelled set."""
        address = ctypes.cast(lib().kd_dataset_labels(self._h), _P).value
        return A.view(address, (self.size,), A.I32, self) if address else None


class Batcher(Handle):
    """Shuffled mini-batches of a dataset, from a seed; iterating gives one epoch of
    (x float32 [rows, c, h, w], labels int32 [rows]) (-1 labels when unlabelled), the last batch
    possibly smaller. Keeps the dataset alive."""

    _destroy = "kd_batcher_destroy"

    def __init__(self, dataset, batch, seed=0):
        out = _P()
        lib().kd_batcher_create(dataset._h, batch, seed, ctypes.byref(out))
        super().__init__(out.value)
        self._batch, self._shape = batch, dataset.shape
        self._borrow(dataset)

    def next(self):
        """The next batch as (x, labels), new arrays the library filled; both empty at the end
        of an epoch, after which the next call starts a new epoch in a new order. StateError
        when the dataset shrank (hold_out) during the epoch: make a new Batcher."""
        x = np.empty((self._batch,) + self._shape, np.float32)
        labels = np.empty(self._batch, np.int32)
        rows = _I64()
        lib().kd_batcher_next(self._h, A.out_floats(x), A.out_ints(labels), ctypes.byref(rows))
        return x[:rows.value], labels[:rows.value]

    def __iter__(self):
        while True:
            x, labels = self.next()
            if not len(labels):
                return
            yield x, labels

    def indices(self):
        """The dataset indices of the last batch, int64 [rows] (a copy)."""
        data, rows = _PI64(), _I64()
        lib().kd_batcher_indices(self._h, ctypes.byref(data), ctypes.byref(rows))
        return np.array(data[:rows.value], np.int64)


def augment_images(x, kind, amount=0, seed=0):
    """Transforms the images x (float32 [batch, c, h, w], writable) in place, each from the
    seeded stream: AUGMENT_TRANSLATE (a shift of up to amount pixels, zeros in), AUGMENT_CROP
    (a random crop of the image padded by amount), AUGMENT_HFLIP (half are mirrored). Returns x."""
    A.check(x, A.F32, "x", writable=True)
    if x.ndim != 4:
        raise ValueError("x: expected [batch, c, h, w], got shape %s" % (x.shape,))
    b, c, h, w = x.shape
    lib().kd_augment_images(A.floats(x, "x", writable=True), b, c, h, w, kind, amount, seed)
    return x
