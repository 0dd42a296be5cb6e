"""Text: a UTF-8 corpus as byte-level tokens for language models, and the usual LM measures."""
import ctypes
import os

import numpy as np

from . import arrays as A
from ._handle import Handle
from .capi import _I64, _P, TEXT_TRAIN, lib

__all__ = ["Text", "perplexity", "bits_per_byte"]


class Text(Handle):
    """A UTF-8 text corpus with byte-level tokens (TEXT_VOCAB = 256 ids), split into a training
    part and a validation part (the last tenth by default). max_bytes is the largest file
    accepted (0: TEXT_MAX_BYTES, 1 GiB): a larger file is refused with FormatError, never
    truncated."""

    _destroy = "kd_text_destroy"

    def __init__(self, path, max_bytes=0):
        out = _P()
        lib().kd_text_open(os.fsencode(path), max_bytes, ctypes.byref(out))
        super().__init__(out.value)

    def __len__(self):
        """Tokens (bytes) in the corpus."""
        v = _I64()
        lib().kd_text_size(self._h, ctypes.byref(v))
        return v.value

    def part_size(self, part=TEXT_TRAIN):
        """Tokens in a part (TEXT_TRAIN or TEXT_VALIDATION)."""
        v = _I64()
        lib().kd_text_part_size(self._h, part, ctypes.byref(v))
        return v.value

    def split(self, validation_fraction):
        """Moves the boundary: the last validation_fraction of the bytes are held out."""
        lib().kd_text_split(self._h, validation_fraction)

    def batch(self, batch, T, seed, part=TEXT_TRAIN):
        """(ids, targets): batch random windows of T tokens from seed, int32 [batch, T] each,
        targets the ids shifted by one (the next token)."""
        ids, targets = np.empty((batch, T), np.int32), np.empty((batch, T), np.int32)
        lib().kd_text_batch(self._h, part, batch, T, seed, A.out_ints(ids), A.out_ints(targets))
        return ids, targets

    def tokens(self, offset, count, part=TEXT_TRAIN):
        """count tokens of a part from offset on, int32 [count]."""
        ids = np.empty(max(count, 1), np.int32)
        lib().kd_text_tokens(self._h, part, offset, count, A.out_ints(ids))
        return ids[:count]


def perplexity(ce):
    """exp(ce), ce a mean cross-entropy in nats per token."""
    v = ctypes.c_float()
    lib().kd_perplexity(ce, ctypes.byref(v))
    return v.value


def bits_per_byte(ce, tokens=1, bytes_=1):
    """ce * tokens / (bytes * ln 2), ce in nats per token; tokens = bytes for byte tokens."""
    v = ctypes.c_float()
    lib().kd_bits_per_byte(ce, tokens, bytes_, ctypes.byref(v))
    return v.value
