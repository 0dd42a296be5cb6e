"""Soft targets: the teachers' probabilities, from models or from cached (top-k) logits."""
import numpy as np

from . import arrays as A
from .capi import _P, TOPK_TAIL_UNIFORM, lib

__all__ = ["soft_targets", "soft_targets_from_logits", "topk_from_logits", "topk_logits",
           "topk_soft_targets"]


def soft_targets(teachers, x, temperature, weights=None, out=None):
    """The teachers' weighted mean probabilities softmax(z / T) on x float32 [batch, input_size]
    (Hinton et al. 2015, eq. 1): float32 [batch, classes]. weights: one per teacher (a sequence,
    normalised by the library; ValueError for any other count), None for equal."""
    if not teachers:
        raise ValueError("teachers: expected at least one Model")
    batch = A.batch_of(x, "x", teachers[0].input_size)
    handles = (_P * len(teachers))(*[t._h for t in teachers])
    probs = A.output(out, (batch, teachers[0].output_size))
    w = A.param(weights, "weights (one a teacher)", len(teachers)) if weights is not None else None
    lib().kd_teacher_soft_targets(handles, A.out_floats(w) if w is not None else None,
                                  len(teachers), A.floats(x, "x"), batch, temperature,
                                  A.out_floats(probs))
    return probs


def soft_targets_from_logits(logits, temperature, weights=None, out=None):
    """The same from cached logits float32 [teachers, batch, classes] (or [batch, classes] for
    one teacher): float32 [batch, classes]."""
    A.check(logits, A.F32, "logits")
    if logits.ndim == 2:
        n, (batch, classes) = 1, logits.shape
    elif logits.ndim == 3:
        n, batch, classes = logits.shape
    else:
        raise ValueError("logits: expected [teachers, batch, classes], got shape %s"
                         % (logits.shape,))
    probs = A.output(out, (batch, classes))
    w = A.param(weights, "weights (one a teacher)", n) if weights is not None else None
    lib().kd_soft_targets_from_logits(A.floats(logits, "logits"),
                                      A.out_floats(w) if w is not None else None, n, batch,
                                      classes, temperature, A.out_floats(probs))
    return probs


def _rows(logits):
    A.check(logits, A.F32, "logits")
    if logits.ndim != 2:
        raise ValueError("logits: expected [rows, classes], got shape %s" % (logits.shape,))
    return logits.shape


def topk_from_logits(logits, k):
    """A sparse cache of teacher logits float32 [rows, classes]: (indices, values, rest), the
    classes of each row's k largest logits (int32 [rows, k], largest first), those logits
    (float32 [rows, k]) and the log-sum-exp of the others (float32 [rows])."""
    rows, classes = _rows(logits)
    indices = np.empty((rows, k), np.int32)
    values, rest = np.empty((rows, k), np.float32), np.empty(rows, np.float32)
    lib().kd_topk_from_logits(A.floats(logits, "logits"), rows, classes, k, A.out_ints(indices),
                              A.out_floats(values), A.out_floats(rest))
    return indices, values, rest


def _cache(indices, values, rest):
    A.check(indices, A.I32, "indices")
    if indices.ndim != 2:
        raise ValueError("indices: expected [rows, k], got shape %s" % (indices.shape,))
    rows, k = indices.shape
    return (rows, k, A.ints(indices, "indices"), A.floats(values, "values", rows * k),
            A.floats(rest, "rest", rows))


def topk_logits(indices, values, rest, classes, out=None):
    """Dense teacher logits float32 [rows, classes] from a top-k cache, the tail's mass spread
    evenly (usable as a trainer's teacher_logits)."""
    rows, k, i, v, r = _cache(indices, values, rest)
    logits = A.output(out, (rows, classes))
    lib().kd_topk_logits(i, v, r, rows, classes, k, A.out_floats(logits))
    return logits


def topk_soft_targets(indices, values, rest, classes, temperature, tail=TOPK_TAIL_UNIFORM,
                      out=None):
    """Dense soft targets float32 [rows, classes] at temperature from a top-k cache; rest may be
    None with TOPK_TAIL_NONE (the top k renormalised)."""
    rows, k, i, v, r = _cache(indices, values, rest)
    probs = A.output(out, (rows, classes))
    lib().kd_topk_soft_targets(i, v, r, rows, classes, k, temperature, tail, A.out_floats(probs))
    return probs
