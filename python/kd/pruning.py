"""Pruner: magnitude pruning of a model's weights to a target sparsity, on a schedule."""
import ctypes

from ._handle import Handle
from .capi import _P, PRUNER_BEGIN_STEP, PRUNER_END_STEP, PRUNER_FREQUENCY, lib

__all__ = ["Pruner"]


class Pruner(Handle):
    """Masks the smallest |w| of every weight tensor with two or more dims (dense and conv
    weights, attention projections, embeddings; biases and norms' scales kept), each tensor to
    the same sparsity (Han et al. 2015). The sparsity at step t rises from 0 at begin to the
    target (a fraction in [0, 1)) at end as s (1 - (1 - (t - begin) / (end - begin))^3) (Zhu and
    Gupta 2017, eq. 1); the masks change every frequency steps. The defaults (0, 0, 1) prune to
    the target at the first step (one-shot). Keeps the model alive; a step allocates nothing.

        with kd.Pruner(student, 0.8, begin=0, end=1000, frequency=100) as pruner:
            for step, (x, labels) in enumerate(batches):
                trainer.step(x, labels)
                pruner.step(step)          # the masked weights back to zero
    """

    _destroy = "kd_pruner_destroy"

    def __init__(self, model, sparsity, begin=0, end=0, frequency=1):
        out = _P()
        lib().kd_pruner_create(model._h, sparsity, ctypes.byref(out))
        super().__init__(out.value)
        self._borrow(model)
        for key, value in ((PRUNER_BEGIN_STEP, begin), (PRUNER_END_STEP, end),
                           (PRUNER_FREQUENCY, frequency)):
            lib().kd_pruner_set_int(self._h, key, value)

    def step(self, step):
        """Updates the masks if the schedule says so at step (>= 0, counted by the caller, as
        optimizer steps), then zeroes the masked weights: call it after each training step."""
        lib().kd_pruner_step(self._h, step)

    @property
    def sparsity(self):
        """The sparsity (0..1) the masks were last set to; 0 before any step."""
        v = ctypes.c_float()
        lib().kd_pruner_sparsity(self._h, ctypes.byref(v))
        return v.value
