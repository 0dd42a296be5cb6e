"""Loss and FeatureLoss: distillation losses on logits and on hidden features."""
import ctypes

import numpy as np

from . import arrays as A
from ._handle import Handle
from .capi import (_P, FEATURE_HINT, FEATURE_RKD_ANGLE_WEIGHT, FEATURE_RKD_DISTANCE_WEIGHT,
                   LOSS_ALPHA, LOSS_BETA, LOSS_CE_WEIGHT, LOSS_HINTON, LOSS_JSD_BETA,
                   LOSS_MASK_UNLABELLED, LOSS_PART_TOTAL, LOSS_SKEW, LOSS_TEMPERATURE, lib)

__all__ = ["Loss", "FeatureLoss"]


class _Gradients:
    """Sizes for a loss's backward: a trainer runs the losses it borrows as well, and says what
    it ran (_ran) and what it may have run (_may_run), so backward's buffer is never too small."""

    _grad_shape = (0,)  # the last forward's gradient
    _grad_cap = 0  # the most values any forward so far may have left

    def _may_run(self, n):
        self._grad_cap = max(self._grad_cap, n)

    def _ran(self, shape):
        n = 1
        for d in shape:
            n *= d
        self._may_run(n)
        self._grad_shape = tuple(shape)
        self._grad_n = n

    _grad_n = 0

    def _backward(self, fn, out):
        n = self._grad_n
        if out is not None:
            A.output(out, self._grad_shape)
            if n >= self._grad_cap:
                fn(self._h, A.out_floats(out))
                return out
        grad = np.empty(max(self._grad_cap, 1), np.float32)
        fn(self._h, A.out_floats(grad))
        if out is None:
            return grad[:n].reshape(self._grad_shape)  # a view: no copy
        out[...] = grad[:n].reshape(self._grad_shape)
        return out


class Loss(Handle, _Gradients):
    """A distillation loss on logits [batch, classes]: Hinton's
    alpha T^2 KL(teacher_T || student_T) + (1 - alpha) CE (Hinton et al. 2015) by default, or
    LOSS_LOGIT_MSE, LOSS_DKD, LOSS_DIST, or a token-level divergence (LOSS_REVERSE_KL, LOSS_JSD,
    LOSS_SKEW_KL, LOSS_SKEW_REVERSE_KL, LOSS_TVD). Keyword options set the LOSS_* floats."""

    _destroy = "kd_loss_destroy"

    def __init__(self, kind=LOSS_HINTON, temperature=None, alpha=None, beta=None,
                 ce_weight=None, jsd_beta=None, skew=None, mask_unlabelled=None):
        out = _P()
        lib().kd_loss_create(kind, ctypes.byref(out))
        super().__init__(out.value)
        for key, value in ((LOSS_TEMPERATURE, temperature), (LOSS_ALPHA, alpha),
                           (LOSS_BETA, beta), (LOSS_CE_WEIGHT, ce_weight),
                           (LOSS_JSD_BETA, jsd_beta), (LOSS_SKEW, skew),
                           (LOSS_MASK_UNLABELLED, mask_unlabelled)):
            if value is not None:
                self.set(key, value)

    def set(self, key, value):
        """Sets a LOSS_* option (kd_loss_option)."""
        lib().kd_loss_set_float(self._h, key, value)

    def get(self, key):
        v = ctypes.c_float()
        lib().kd_loss_get_float(self._h, key, ctypes.byref(v))
        return v.value

    @staticmethod
    def _shape(student_logits):
        A.check(student_logits, A.F32, "student_logits")
        if student_logits.ndim != 2:
            raise ValueError("student_logits: expected [batch, classes], got shape %s"
                             % (student_logits.shape,))
        return student_logits.shape

    def forward(self, student_logits, soft_targets, labels=None):
        """The loss (a float, nats) of student_logits float32 [batch, classes] against
        soft_targets (the teachers' probabilities at the temperature, or their logits for
        LOSS_LOGIT_MSE; None when alpha is 0) and int32 labels [batch] (None: no label term)."""
        batch, classes = self._shape(student_logits)
        v = ctypes.c_float()
        lib().kd_loss_forward(self._h, A.floats(student_logits, "student_logits"),
                              A.floats(soft_targets, "soft_targets", batch * classes),
                              A.ints(labels, "labels", batch), batch, classes, ctypes.byref(v))
        self._ran((batch, classes))
        return v.value

    def forward_logits(self, student_logits, teacher_logits, labels=None):
        """The same from the teachers' logits float32 [batch, classes] (needed by
        LOSS_LOGIT_STANDARDIZE, preferred for LOSS_DKD)."""
        batch, classes = self._shape(student_logits)
        v = ctypes.c_float()
        lib().kd_loss_forward_logits(self._h, A.floats(student_logits, "student_logits"),
                                     A.floats(teacher_logits, "teacher_logits", batch * classes),
                                     A.ints(labels, "labels", batch), batch, classes,
                                     ctypes.byref(v))
        self._ran((batch, classes))
        return v.value

    def backward(self, out=None):
        """d loss / d student logits for the last forward, float32 [batch, classes]."""
        return self._backward(lib().kd_loss_backward, out)

    def value(self, part=LOSS_PART_TOTAL):
        """The last forward's total, soft or hard part (LOSS_PART_*)."""
        v = ctypes.c_float()
        lib().kd_loss_value(self._h, part, ctypes.byref(v))
        return v.value


def _chw(x, name):
    """(batch, c, h, w) of a feature array [batch, n] (a dense layer: n x 1 x 1) or
    [batch, c, h, w]."""
    A.check(x, A.F32, name)
    if x.ndim == 2:
        return x.shape[0], x.shape[1], 1, 1
    if x.ndim == 4:
        return x.shape
    raise ValueError("%s: expected [batch, n] or [batch, c, h, w], got shape %s" % (name, x.shape))


class FeatureLoss(Handle, _Gradients):
    """A loss between hidden features: FEATURE_HINT (FitNets), FEATURE_ATTENTION, FEATURE_RKD,
    FEATURE_SIMILARITY, FEATURE_PKT or FEATURE_COSINE (kd.h gives each one's formula)."""

    _destroy = "kd_feature_loss_destroy"

    def __init__(self, kind=FEATURE_HINT, distance_weight=None, angle_weight=None):
        out = _P()
        lib().kd_feature_loss_create(kind, ctypes.byref(out))
        super().__init__(out.value)
        if distance_weight is not None:
            self.set(FEATURE_RKD_DISTANCE_WEIGHT, distance_weight)
        if angle_weight is not None:
            self.set(FEATURE_RKD_ANGLE_WEIGHT, angle_weight)

    def set(self, key, value):
        lib().kd_feature_loss_set_float(self._h, key, value)

    def get(self, key):
        v = ctypes.c_float()
        lib().kd_feature_loss_get_float(self._h, key, ctypes.byref(v))
        return v.value

    def forward(self, student, teacher):
        """The loss between student and teacher features, float32 [batch, n] (a dense layer's
        output) or [batch, c, h, w], of the same batch."""
        b, sc, sh, sw = _chw(student, "student")
        tb, tc, th, tw = _chw(teacher, "teacher")
        v = ctypes.c_float()
        lib().kd_feature_loss_forward(self._h, A.floats(student, "student"), sc, sh, sw,
                                      A.floats(teacher, "teacher", b * tc * th * tw), tc, th, tw,
                                      b, ctypes.byref(v))
        self._ran(student.shape)
        return v.value

    def backward(self, out=None):
        """d loss / d student for the last forward, float32 of the student's shape."""
        return self._backward(lib().kd_feature_loss_backward, out)
