"""Optimizer and Trainer: parameter updates and whole distillation steps."""
import ctypes
import os


from . import arrays as A
from ._handle import Handle
from .capi import (_I64, _P, ALLREDUCE_FN, ALLREDUCE_START_FN, ALLREDUCE_WAIT_FN, ATTENTION_HEADS_MEAN, MAX_MILESTONES, OPT_LEARNING_RATE, OPT_MOMENTUM,
                   OPTIMIZER_SGD, TRAINER_HINT_ONLY, lib)
from .model import Model

__all__ = ["Optimizer", "Trainer"]


class Optimizer(Handle):
    """SGD, Adam or AdamW (OPTIMIZER_*) over a model's parameters, with an optional learning-rate
    schedule (OPT_SCHEDULE) and gradient clipping; keeps the model alive."""

    _destroy = "kd_optimizer_destroy"

    def __init__(self, model, kind=OPTIMIZER_SGD, learning_rate=None, momentum=None):
        out = _P()
        lib().kd_optimizer_create(kind, model._h, ctypes.byref(out))
        super().__init__(out.value)
        self._borrow(model)
        if learning_rate is not None:
            self.set_float(OPT_LEARNING_RATE, learning_rate)
        if momentum is not None:
            self.set_float(OPT_MOMENTUM, momentum)

    def set_float(self, key, value):
        """Sets an OPT_* float option (the learning rate is per step, unitless)."""
        lib().kd_optimizer_set_float(self._h, key, value)

    def get_float(self, key):
        v = ctypes.c_float()
        lib().kd_optimizer_get_float(self._h, key, ctypes.byref(v))
        return v.value

    def set_int(self, key, value):
        lib().kd_optimizer_set_int(self._h, key, value)

    def get_int(self, key):
        v = _I64()
        lib().kd_optimizer_get_int(self._h, key, ctypes.byref(v))
        return v.value

    def set_milestones(self, steps):
        """The MULTISTEP schedule's milestones: increasing optimizer step numbers (a sequence)."""
        arr = (_I64 * max(len(steps), 1))(*steps)
        lib().kd_optimizer_set_milestones(self._h, arr, len(steps))

    def get_milestones(self):
        arr, count = (_I64 * MAX_MILESTONES)(), _I64()
        lib().kd_optimizer_get_milestones(self._h, arr, MAX_MILESTONES, ctypes.byref(count))
        return list(arr[:count.value])

    def step(self):
        """Applies the model's gradients, advances the schedule and clears the gradients."""
        lib().kd_optimizer_step(self._h)


class Trainer(Handle):
    """Distillation steps of a student: teachers' forward (or cached teacher logits), the loss,
    feature terms, backward and the optimizer's step. Keeps its student, loss, optimizer,
    teachers and feature losses alive.

        with kd.Trainer(student, kd.Loss(temperature=4.0, alpha=0.9),
                        kd.Optimizer(student, learning_rate=0.05, momentum=0.9)) as trainer:
            trainer.add_teacher(teacher)
            for x, labels in kd.Batcher(train, 128, seed=1):
                loss = trainer.step(x, labels)
    """

    _destroy = "kd_trainer_destroy"

    def __init__(self, student, loss, optimizer):
        out = _P()
        lib().kd_trainer_create(student._h, loss._h, optimizer._h, ctypes.byref(out))
        super().__init__(out.value)
        for obj in (student, loss, optimizer):
            self._borrow(obj)
        self._student, self._loss = student, loss
        self._inputs, self._classes = student.input_size, student.output_size
        self._rows, self._row_classes = student.output_rows  # labels a step: batch * rows
        self._terms = []  # (feature loss, the student feature's shape of one example)
        self._teachers = 0
        self._hint_only = 0  # TRAINER_HINT_ONLY, kept here: step needs it and it is set here

    def add_teacher(self, teacher, weight=1.0):
        """Adds a teacher model; teachers' probabilities are averaged with these weights."""
        lib().kd_trainer_add_teacher(self._h, teacher._h, weight)
        self._borrow(teacher)
        self._teachers += 1

    def add_feature_loss(self, loss, student_layer, teacher, teacher_layer, regressor=None,
                         weight=1.0):
        """Adds weight * loss(regressor(student layer), teacher `teacher`'s layer) to every step;
        regressor is a spec ("dense 1200", "conv 64 1") or None. Returns the term's number."""
        lib().kd_trainer_add_feature_loss(self._h, loss._h, student_layer, teacher,
                                          teacher_layer,
                                          regressor.encode() if regressor is not None else None,
                                          weight)
        self._borrow(loss)
        k = len(self._terms)
        reg = self.regressor(k)
        size = reg.output_size if reg else self._student.layer_info(student_layer)[2]
        self._terms.append((loss, size))
        return k

    def add_attention_loss(self, loss, student_attention, teacher, teacher_attention,
                           heads=ATTENTION_HEADS_MEAN, weight=1.0):
        """Adds weight * loss(student attention layer student_attention's probabilities,
        teacher `teacher`'s layer teacher_attention's) to every step: MiniLM's attention
        transfer with a FeatureLoss(FEATURE_ATTENTION_KL). heads: ATTENTION_HEADS_MATCHED (head
        h against head h) or ATTENTION_HEADS_MEAN (each side's mean over its heads). Returns the
        term's number, shared with the feature terms."""
        lib().kd_trainer_add_attention_loss(self._h, loss._h, student_attention, teacher,
                                            teacher_attention, heads, weight)
        self._borrow(loss)
        k = len(self._terms)
        # A map's size an example is known after a forward (heads * T * T, or T * T for the mean);
        # before, it is bounded by the widest layer times T (heads <= width).
        t = self._student.tokens[1]
        bound = t * max(size for _, _, size in self._student.layers)
        self._terms.append((loss, (student_attention, heads == ATTENTION_HEADS_MEAN, bound)))
        return k

    def _term_size(self, size, ran):
        if isinstance(size, int):
            return size
        k, mean, bound = size
        if not ran:
            return bound
        _, (_, h, t, _) = self._student._attention(k)
        return t * t if mean else h * t * t

    def feature_value(self, k=-1):
        """weight * loss of feature term k in the last step, or with k == -1 their sum."""
        v = ctypes.c_float()
        lib().kd_trainer_feature_value(self._h, k, ctypes.byref(v))
        return v.value

    def regressor(self, k):
        """Term k's regressor, a Model lent by the trainer (never freed from Python), or None."""
        out = _P()
        lib().kd_trainer_regressor(self._h, k, ctypes.byref(out))
        return Model._lent(out.value, self) if out.value else None

    def set_allreduce(self, fn, rank, world):
        """Makes the trainer process rank of a data-parallel job of world processes.
        fn(data, count) must sum count floats (a ctypes float pointer; numpy.ctypeslib.as_array
        views it) in place over the processes -- mpi4py's comm.Allreduce(MPI.IN_PLACE, ...) --
        and return 0. None with world 1: a lone trainer again. See kd_trainer_set_allreduce."""
        if fn is None:
            callback = ALLREDUCE_FN()
        else:
            def call(data, count, user):
                try:
                    return int(fn(data, count) or 0)
                except Exception:  # an exception cannot cross the C frames: fail the step
                    return 4  # KD_ERR_IO
            callback = ALLREDUCE_FN(call)
        lib().kd_trainer_set_allreduce(self._h, callback, None, rank, world)
        self._allreduce = callback  # alive as long as the trainer may call it

    def set_allreduce_async(self, start, wait, rank, world):
        """Data-parallel training with a non-blocking all-reduce (mpi4py's Iallreduce and Wait):
        start(data, count, tag) begins summing count floats in place over the processes, wait(tag)
        returns once that sum is done; both return 0. The gradients are then summed in buckets
        (TRAINER_BUCKET_FLOATS) while the backward pass goes on. None, None with world 1: a lone
        trainer again. See kd_trainer_set_allreduce_async."""
        def guard(fn):
            def call(*args):
                try:
                    return int(fn(*args[:-1]) or 0)
                except Exception:  # an exception cannot cross the C frames: fail the step
                    return 4  # KD_ERR_IO
            return call
        if start is None:
            callbacks = (ALLREDUCE_START_FN(), ALLREDUCE_WAIT_FN())
        else:
            callbacks = (ALLREDUCE_START_FN(guard(start)), ALLREDUCE_WAIT_FN(guard(wait)))
        lib().kd_trainer_set_allreduce_async(self._h, callbacks[0], callbacks[1], None, rank, world)
        self._allreduce = callbacks  # alive as long as the trainer may call them

    def broadcast(self):
        """Process 0's student, regressors and optimizer state to every process of the job."""
        lib().kd_trainer_broadcast(self._h)

    def set_int(self, key, value):
        """Sets a TRAINER_* option (kd_trainer_option)."""
        lib().kd_trainer_set_int(self._h, key, value)
        if key == TRAINER_HINT_ONLY:
            self._hint_only = value

    def get_int(self, key):
        v = _I64()
        lib().kd_trainer_get_int(self._h, key, ctypes.byref(v))
        return v.value

    def step(self, x, labels, teacher_logits=None):
        """One distillation step on x float32 [batch, input_size]; returns the total loss.
        labels: int32 [batch], or [batch, T] for a language model (-1 for none). teacher_logits:
        cached float32 logits [teachers, batch, classes] ([batch, classes] for one), used
        instead of running the teachers; None to run them."""
        batch = A.batch_of(x, "x", self._inputs)
        v, cached = ctypes.c_float(), max(self._teachers, 1) * batch * self._classes
        grad = (batch * self._rows, self._row_classes) if self._rows > 1 else (batch,
                                                                              self._classes)
        # The step runs the borrowed losses: their backward must know the sizes, even on failure.
        self._loss._may_run(batch * self._classes)
        for loss, size in self._terms:
            loss._may_run(batch * self._term_size(size, False))
        lib().kd_trainer_step(self._h, A.floats(x, "x"),
                              A.ints(labels, "labels", batch * self._rows),
                              A.floats(teacher_logits, "teacher_logits", cached), batch,
                              ctypes.byref(v))
        if not self._hint_only:
            self._loss._ran(grad)
        for loss, size in self._terms:  # in order: a loss serving several terms ends on the last
            loss._ran((batch, self._term_size(size, True)))
        return v.value

    def save(self, path):
        """A checkpoint: student, optimizer state, random streams, regressors (not teachers)."""
        lib().kd_trainer_save(self._h, os.fsencode(path))

    def load(self, path):
        """Continues from a checkpoint of a trainer built the same way."""
        lib().kd_trainer_load(self._h, os.fsencode(path))
        self._hint_only = self.get_int(TRAINER_HINT_ONLY)
