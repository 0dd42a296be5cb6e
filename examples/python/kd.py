"""A thin ctypes binding of libkd, standard library only.

Every fallible C call returns a kd_status; here a status other than KD_OK raises KdError, which
carries the status and the library's sentence (kd_last_error). Float arrays are passed as
array.array('f') (or anything with a writable float32 buffer); lists are copied.

    import kd
    teacher = kd.Model("input 784 | dense 1200 | relu | dense 10", seed=1)
    student = kd.Model("input 784 | dense 100 | relu | dense 10", seed=2)
    loss = kd.Loss(temperature=4.0, alpha=0.9)
    opt = kd.Optimizer(student, learning_rate=0.05, momentum=0.9)
    trainer = kd.Trainer(student, loss, opt)
    trainer.add_teacher(teacher)
    value = trainer.step(x, labels, batch)

The library is found through the KD_LIBRARY environment variable (a path to libkd.so), else as the
installed libkd.so.0.
"""
import array
import ctypes
import ctypes.util
import os

__all__ = ["KdError", "Model", "Loss", "Optimizer", "Trainer", "soft_targets", "version", "lib",
           "OK", "ERR_ARGUMENT", "ERR_SHAPE", "ERR_NOMEM", "ERR_IO", "ERR_FORMAT", "ERR_NUMERIC",
           "ERR_STATE", "ERR_UNSUPPORTED"]

# kd_status
OK, ERR_ARGUMENT, ERR_SHAPE, ERR_NOMEM, ERR_IO, ERR_FORMAT, ERR_NUMERIC, ERR_STATE, \
    ERR_UNSUPPORTED = range(9)
# kd_loss_kind, kd_loss_option, kd_loss_part
LOSS_HINTON = 0
LOSS_TEMPERATURE, LOSS_ALPHA = 0, 1
LOSS_PART_TOTAL, LOSS_PART_SOFT, LOSS_PART_HARD = 0, 1, 2
# kd_optimizer_kind, kd_optimizer_option, kd_schedule
OPTIMIZER_SGD, OPTIMIZER_ADAM, OPTIMIZER_ADAMW = 0, 1, 2
OPT_LEARNING_RATE, OPT_MOMENTUM, OPT_WEIGHT_DECAY, OPT_NESTEROV, OPT_SCHEDULE, \
    OPT_TOTAL_STEPS, OPT_MIN_LR, OPT_CURRENT_LR, OPT_STEP, OPT_BETA1, OPT_BETA2, \
    OPT_EPSILON, OPT_STEP_SIZE, OPT_GAMMA, OPT_WARMUP_STEPS, OPT_WARMUP_START, OPT_CLIP_NORM, \
    OPT_GRAD_NORM = range(18)
SCHEDULE_CONSTANT, SCHEDULE_COSINE, SCHEDULE_STEP, SCHEDULE_MULTISTEP = range(4)
MAX_MILESTONES = 64


class KdError(Exception):
    """A libkd call failed: status is the kd_status, message the library's sentence."""

    def __init__(self, status, function, message):
        self.status = status
        self.function = function
        self.message = message
        super().__init__("%s: %s: %s" % (function, _lib.kd_strerror(status).decode(), message))


_P = ctypes.c_void_p
_F = ctypes.POINTER(ctypes.c_float)
_I32 = ctypes.POINTER(ctypes.c_int32)
_I64 = ctypes.c_int64
_S = ctypes.c_char_p

# name: (argument types); every one of these returns kd_status
_STATUS = {
    "kd_model_create": (_S, ctypes.c_uint64, ctypes.POINTER(_P)),
    "kd_model_load": (_S, ctypes.POINTER(_P)),
    "kd_model_save": (_P, _S),
    "kd_model_input_size": (_P, ctypes.POINTER(_I64)),
    "kd_model_output_size": (_P, ctypes.POINTER(_I64)),
    "kd_model_param_count": (_P, ctypes.POINTER(_I64)),
    "kd_model_predict": (_P, _F, _I64, _F),
    "kd_model_forward": (_P, _F, _I64, _F),
    "kd_teacher_soft_targets": (ctypes.POINTER(_P), _F, ctypes.c_int32, _F, _I64, ctypes.c_float,
                                _F),
    "kd_loss_create": (ctypes.c_int, ctypes.POINTER(_P)),
    "kd_loss_set_float": (_P, ctypes.c_int, ctypes.c_float),
    "kd_loss_get_float": (_P, ctypes.c_int, _F),
    "kd_loss_value": (_P, ctypes.c_int, _F),
    "kd_optimizer_create": (ctypes.c_int, _P, ctypes.POINTER(_P)),
    "kd_optimizer_set_float": (_P, ctypes.c_int, ctypes.c_float),
    "kd_optimizer_get_float": (_P, ctypes.c_int, _F),
    "kd_optimizer_set_int": (_P, ctypes.c_int, _I64),
    "kd_optimizer_get_int": (_P, ctypes.c_int, ctypes.POINTER(_I64)),
    "kd_optimizer_set_milestones": (_P, ctypes.POINTER(_I64), _I64),
    "kd_optimizer_get_milestones": (_P, ctypes.POINTER(_I64), _I64, ctypes.POINTER(_I64)),
    "kd_trainer_create": (_P, _P, _P, ctypes.POINTER(_P)),
    "kd_trainer_add_teacher": (_P, _P, ctypes.c_float),
    "kd_trainer_step": (_P, _F, _I32, _F, _I64, _F),
}
# name: (result type, argument types)
_OTHER = {
    "kd_strerror": (_S, (ctypes.c_int,)),
    "kd_last_error": (_S, ()),
    "kd_version": (_S, ()),
    "kd_version_number": (ctypes.c_int32, ()),
    "kd_kernels_name": (_S, ()),
    "kd_model_spec": (_S, (_P,)),
    "kd_model_destroy": (None, (_P,)),
    "kd_loss_destroy": (None, (_P,)),
    "kd_optimizer_destroy": (None, (_P,)),
    "kd_trainer_destroy": (None, (_P,)),
}

_lib = None


def _raise_on_error(status, func, _args):
    if status != OK:
        raise KdError(status, func.__name__, _lib.kd_last_error().decode())
    return status


def lib(path=None):
    """The loaded library (loaded on first use, from path, $KD_LIBRARY or libkd.so.0)."""
    global _lib
    if _lib is None:
        path = (path or os.environ.get("KD_LIBRARY") or ctypes.util.find_library("kd")
                or "libkd.so.0")
        loaded = ctypes.CDLL(path)
        for name, argtypes in _STATUS.items():
            fn = getattr(loaded, name)
            fn.argtypes, fn.restype, fn.errcheck = argtypes, ctypes.c_int, _raise_on_error
        for name, (restype, argtypes) in _OTHER.items():
            fn = getattr(loaded, name)
            fn.argtypes, fn.restype = argtypes, restype
        _lib = loaded
    return _lib


def version():
    """The version of the loaded library, "MAJOR.MINOR.PATCH"."""
    return lib().kd_version().decode()


def _floats(x, n=None):
    """A float* over x: shared with x when it is a writable float32 buffer, else a copy."""
    if x is None:
        return None
    try:
        view = memoryview(x)
        if view.format == "f" and not view.readonly:
            data = (ctypes.c_float * (view.nbytes // 4)).from_buffer(x)
        else:
            raise TypeError
    except TypeError:
        data = (ctypes.c_float * len(x))(*x)
    if n is not None and len(data) < n:
        raise ValueError("expected at least %d floats, got %d" % (n, len(data)))
    return ctypes.cast(data, _F)


def _labels(labels, n):
    if labels is None:
        return None
    if len(labels) < n:
        raise ValueError("expected at least %d labels, got %d" % (n, len(labels)))
    return ctypes.cast((ctypes.c_int32 * len(labels))(*labels), _I32)


def _out(n):
    return array.array("f", bytes(4 * n))


class _Handle:
    _destroy = None
    _h = None  # so that close() holds when a constructor raised

    def __init__(self, handle):
        self._h = handle

    def close(self):
        if self._h:
            getattr(lib(), self._destroy)(self._h)
            self._h = None

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def handle(self):
        return self._h


class Model(_Handle):
    """A network built from a spec string ("input 4 | dense 8 | relu | dense 3")."""

    _destroy = "kd_model_destroy"

    def __init__(self, spec, seed=0):
        out = _P()
        lib().kd_model_create(spec.encode() if spec is not None else None, seed, ctypes.byref(out))
        super().__init__(out.value)

    @classmethod
    def load(cls, path):
        out = _P()
        lib().kd_model_load(os.fsencode(path), ctypes.byref(out))
        m = cls.__new__(cls)
        _Handle.__init__(m, out.value)
        return m

    def save(self, path):
        lib().kd_model_save(self._h, os.fsencode(path))

    def _size(self, fn):
        v = _I64()
        fn(self._h, ctypes.byref(v))
        return v.value

    @property
    def spec(self):
        return lib().kd_model_spec(self._h).decode()

    @property
    def input_size(self):
        return self._size(lib().kd_model_input_size)

    @property
    def output_size(self):
        return self._size(lib().kd_model_output_size)

    @property
    def param_count(self):
        return self._size(lib().kd_model_param_count)

    def predict(self, x, batch):
        """Logits [batch, output] in eval mode, as an array('f')."""
        logits = _out(batch * self.output_size)
        lib().kd_model_predict(self._h, _floats(x, batch * self.input_size), batch, _floats(logits))
        return logits


def soft_targets(teachers, x, batch, temperature, weights=None):
    """The teachers' (weighted) probabilities at temperature, [batch, classes]."""
    handles = (_P * len(teachers))(*[t.handle for t in teachers])
    probs = _out(batch * teachers[0].output_size) if teachers else _out(0)
    lib().kd_teacher_soft_targets(handles, _floats(weights), len(teachers), _floats(x), batch,
                                  temperature, _floats(probs))
    return probs


class Loss(_Handle):
    """The Hinton distillation loss: alpha T^2 KL(teacher_T || student_T) + (1 - alpha) CE."""

    _destroy = "kd_loss_destroy"

    def __init__(self, kind=LOSS_HINTON, temperature=None, alpha=None):
        out = _P()
        lib().kd_loss_create(kind, ctypes.byref(out))
        super().__init__(out.value)
        if temperature is not None:
            self.set(LOSS_TEMPERATURE, temperature)
        if alpha is not None:
            self.set(LOSS_ALPHA, alpha)

    def set(self, key, value):
        lib().kd_loss_set_float(self._h, key, value)

    def get(self, key):
        v = ctypes.c_float()
        lib().kd_loss_get_float(self._h, key, ctypes.byref(v))
        return v.value

    def value(self, part=LOSS_PART_TOTAL):
        v = ctypes.c_float()
        lib().kd_loss_value(self._h, part, ctypes.byref(v))
        return v.value


class Optimizer(_Handle):
    """SGD, Adam or AdamW over a model's parameters; the model is kept alive with the optimizer."""

    _destroy = "kd_optimizer_destroy"

    def __init__(self, model, kind=OPTIMIZER_SGD, learning_rate=None, momentum=None):
        out = _P()
        lib().kd_optimizer_create(kind, model.handle, ctypes.byref(out))
        super().__init__(out.value)
        self._model = model
        if learning_rate is not None:
            self.set_float(OPT_LEARNING_RATE, learning_rate)
        if momentum is not None:
            self.set_float(OPT_MOMENTUM, momentum)

    def set_float(self, key, value):
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
        """The MULTISTEP schedule's milestones, increasing optimizer step numbers."""
        arr = (_I64 * max(len(steps), 1))(*steps)
        lib().kd_optimizer_set_milestones(self._h, arr, len(steps))

    def get_milestones(self):
        arr, count = (_I64 * MAX_MILESTONES)(), _I64()
        lib().kd_optimizer_get_milestones(self._h, arr, MAX_MILESTONES, ctypes.byref(count))
        return list(arr[:count.value])


class Trainer(_Handle):
    """Distillation steps of a student; keeps its borrowed student, loss, optimizer and teachers."""

    _destroy = "kd_trainer_destroy"

    def __init__(self, student, loss, optimizer):
        out = _P()
        lib().kd_trainer_create(student.handle, loss.handle, optimizer.handle, ctypes.byref(out))
        super().__init__(out.value)
        self._keep = [student, loss, optimizer]
        self._inputs = student.input_size

    def add_teacher(self, teacher, weight=1.0):
        lib().kd_trainer_add_teacher(self._h, teacher.handle, weight)
        self._keep.append(teacher)

    def step(self, x, labels, batch, teacher_logits=None):
        """One distillation step on a batch; returns the total loss."""
        v = ctypes.c_float()
        lib().kd_trainer_step(self._h, _floats(x, batch * self._inputs), _labels(labels, batch),
                              _floats(teacher_logits), batch, ctypes.byref(v))
        return v.value

    def close(self):
        super().close()
        self._keep = []
