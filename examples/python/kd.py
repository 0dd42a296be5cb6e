"""A thin ctypes binding of libkd, standard library only.

Every fallible C call returns a kd_status; here a status other than KD_OK raises KdError, which
carries the status and the library's sentence (kd_last_error). Float arrays are passed as
array.array('f') (or anything with a writable float32 buffer, shared with the library); read-only
buffers and lists are copied. Results come back as array.array('f').

    import kd
    teacher = kd.Model("input 784 | dense 1200 | relu | dense 10", seed=1)
    student = kd.Model("input 784 | dense 100 | relu | dense 10", seed=2)
    loss = kd.Loss(temperature=4.0, alpha=0.9)
    opt = kd.Optimizer(student, learning_rate=0.05, momentum=0.9)
    trainer = kd.Trainer(student, loss, opt)
    trainer.add_teacher(teacher)
    value = trainer.step(x, labels, batch)

Data, feature terms (FitNets hints with a regressor, attention, relations) and checkpoints:

    train = kd.Dataset("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    hint = kd.FeatureLoss(kd.FEATURE_HINT)
    trainer.add_feature_loss(hint, student_layer=1, teacher=0, teacher_layer=1,
                             regressor="dense 1200")
    for step, (x, labels) in enumerate(kd.Batcher(train, 128, seed=1)):
        kd.augment_images(x, len(labels), 1, 28, 28, kd.AUGMENT_TRANSLATE, 2, seed=step)
        trainer.step(x, labels, len(labels))
    trainer.save("run.safetensors")

Handles are freed by close() (or a with block, or the garbage collector). An object that borrows a
handle (an optimizer its model, a trainer its student, loss, optimizer and teachers, a batcher its
dataset, a view of a dataset's images, a trainer's regressor) keeps it alive; close() on a handle
still lent out defers the free until the last borrower is gone. Pointers the library lends
(kd_dataset_images, kd_model_feature, kd_trainer_regressor) are never freed from Python.

The library is found through the KD_LIBRARY environment variable (a path to libkd.so), else as the
installed libkd.so.0.
"""
import array
import ctypes
import ctypes.util
import os
import weakref

__all__ = ["KdError", "Tensors", "save_npy", "Model", "Loss", "Optimizer", "Trainer", "FeatureLoss", "Dataset", "Batcher", "Text",
           "perplexity", "bits_per_byte",
           "soft_targets", "soft_targets_from_logits", "topk_from_logits",
           "topk_logits", "topk_soft_targets", "augment_images", "version",
           "version_number", "kernels_name", "lib", "set_limit", "get_limit", "set_allocator",
           "set_threads", "get_threads",
           "OK", "ERR_ARGUMENT", "ERR_SHAPE", "ERR_NOMEM", "ERR_IO", "ERR_FORMAT", "ERR_NUMERIC",
           "ERR_STATE", "ERR_UNSUPPORTED"]

# kd_status
OK, ERR_ARGUMENT, ERR_SHAPE, ERR_NOMEM, ERR_IO, ERR_FORMAT, ERR_NUMERIC, ERR_STATE, \
    ERR_UNSUPPORTED = range(9)
# kd_loss_kind, kd_loss_option, kd_loss_part
LOSS_HINTON, LOSS_LOGIT_MSE, LOSS_DKD, LOSS_DIST = 0, 1, 2, 3
LOSS_REVERSE_KL, LOSS_JSD, LOSS_SKEW_KL, LOSS_SKEW_REVERSE_KL, LOSS_TVD = 10, 11, 12, 13, 14
LOSS_TEMPERATURE, LOSS_ALPHA, LOSS_BETA, LOSS_CE_WEIGHT = 0, 1, 2, 3
LOSS_LOGIT_STANDARDIZE, LOSS_GAMMA, LOSS_HARD_MEAN = 4, 5, 6
LOSS_JSD_BETA, LOSS_SKEW, LOSS_MASK_UNLABELLED = 10, 11, 12
LOSS_PART_TOTAL, LOSS_PART_SOFT, LOSS_PART_HARD = 0, 1, 2
# kd_optimizer_kind, kd_optimizer_option, kd_schedule
OPTIMIZER_SGD, OPTIMIZER_ADAM, OPTIMIZER_ADAMW = 0, 1, 2
OPT_LEARNING_RATE, OPT_MOMENTUM, OPT_WEIGHT_DECAY, OPT_NESTEROV, OPT_SCHEDULE, \
    OPT_TOTAL_STEPS, OPT_MIN_LR, OPT_CURRENT_LR, OPT_STEP, OPT_BETA1, OPT_BETA2, \
    OPT_EPSILON, OPT_STEP_SIZE, OPT_GAMMA, OPT_WARMUP_STEPS, OPT_WARMUP_START, OPT_CLIP_NORM, \
    OPT_GRAD_NORM = range(18)
SCHEDULE_CONSTANT, SCHEDULE_COSINE, SCHEDULE_STEP, SCHEDULE_MULTISTEP = range(4)
MAX_MILESTONES = 64
# kd_feature_loss_kind, kd_feature_loss_option
FEATURE_HINT, FEATURE_ATTENTION, FEATURE_RKD, FEATURE_SIMILARITY, FEATURE_PKT, \
    FEATURE_COSINE = range(6)
FEATURE_ATTENTION_KL = 10
FEATURE_RKD_DISTANCE_WEIGHT, FEATURE_RKD_ANGLE_WEIGHT = 0, 1
# ---- wins (issue 12): CRD
FEATURE_CRD = 20
FEATURE_CRD_TEMPERATURE, FEATURE_CRD_NEGATIVES, FEATURE_CRD_MOMENTUM, FEATURE_CRD_SEED = 10, 11, 12, 13
# kd_trainer_option
TRAINER_HINT_ONLY = 0
TRAINER_SYNC_BATCHNORM = 50
TRAINER_BUCKET_FLOATS = 51
# kd_allreduce_tag: a non-blocking all-reduce's tags
ALLREDUCE_MAX_BUCKETS, ALLREDUCE_TAG_NOW, ALLREDUCE_TAGS = 64, 64, 65
# kd_attention_heads: attention terms in the trainer
ATTENTION_HEADS_MATCHED, ATTENTION_HEADS_MEAN = 0, 1
# kd_topk_tail
TOPK_TAIL_UNIFORM, TOPK_TAIL_NONE = 0, 1
# text: byte-level tokens; kd_text_part
TEXT_VOCAB, TEXT_MAX_BYTES = 256, 1 << 30
TEXT_TRAIN, TEXT_VALIDATION = 0, 1
# kd_dtype: the arrays of a kd_tensors set
DTYPE_F32, DTYPE_I32, DTYPE_I64, DTYPE_I8, DTYPE_U8 = 0, 1, 2, 3, 4
TENSORS_MAX_DIMS = 8
# kd_augment_kind
AUGMENT_TRANSLATE, AUGMENT_CROP, AUGMENT_HFLIP = 0, 1, 2
# kd_pruner_option
PRUNER_BEGIN_STEP, PRUNER_END_STEP, PRUNER_FREQUENCY = 0, 1, 2
# kd_calibration (kd_model_quantize)
CALIBRATION_MINMAX, CALIBRATION_PERCENTILE = 0, 1
# kd_limit
LIMIT_MODEL_VALUES, LIMIT_FILE_BYTES = 0, 1


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
_PI64 = ctypes.POINTER(_I64)
# kd_malloc_fn, kd_calloc_fn, kd_realloc_fn, kd_free_fn
MALLOC_FN = ctypes.CFUNCTYPE(_P, _P, ctypes.c_size_t)
CALLOC_FN = ctypes.CFUNCTYPE(_P, _P, ctypes.c_size_t, ctypes.c_size_t)
REALLOC_FN = ctypes.CFUNCTYPE(_P, _P, _P, ctypes.c_size_t)
FREE_FN = ctypes.CFUNCTYPE(None, _P, _P)
# kd_allreduce_fn: (data, count, user) -> kd_status
ALLREDUCE_FN = ctypes.CFUNCTYPE(ctypes.c_int, _F, _I64, _P)
# kd_allreduce_start_fn: (data, count, tag, user) -> kd_status; kd_allreduce_wait_fn: (tag, user)
ALLREDUCE_START_FN = ctypes.CFUNCTYPE(ctypes.c_int, _F, _I64, ctypes.c_int32, _P)
ALLREDUCE_WAIT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int32, _P)

# name: (argument types); every one of these returns kd_status
_STATUS = {
    "kd_set_allocator": (MALLOC_FN, CALLOC_FN, REALLOC_FN, FREE_FN, _P),
    "kd_set_limit": (ctypes.c_int, _I64),
    "kd_get_limit": (ctypes.c_int, _PI64),
    "kd_set_threads": (ctypes.c_int32,),
    "kd_get_threads": (_I32,),
    "kd_model_create": (_S, ctypes.c_uint64, ctypes.POINTER(_P)),
    "kd_model_clone": (_P, ctypes.POINTER(_P)),
    "kd_model_load": (_S, ctypes.POINTER(_P)),
    "kd_model_save": (_P, _S),
    "kd_model_export_onnx": (_P, _S),
    "kd_pruner_create": (_P, ctypes.c_float, ctypes.POINTER(_P)),
    "kd_pruner_set_int": (_P, ctypes.c_int, _I64),
    "kd_pruner_step": (_P, _I64),
    "kd_pruner_sparsity": (_P, _F),
    "kd_model_sparsity": (_P, _F),
    "kd_model_prune_channels": (_P, ctypes.c_float, ctypes.POINTER(_P)),
    "kd_model_load_weights": (_P, _S),
    "kd_model_input_size": (_P, _PI64),
    "kd_model_output_size": (_P, _PI64),
    "kd_model_param_count": (_P, _PI64),
    "kd_model_layer_count": (_P, ctypes.POINTER(ctypes.c_int32)),
    "kd_model_layer_info": (_P, ctypes.c_int32, ctypes.POINTER(_S), _PI64, _PI64),
    "kd_model_predict": (_P, _F, _I64, _F),
    "kd_model_forward": (_P, _F, _I64, _F),
    "kd_model_backward": (_P, _F),
    "kd_model_zero_grad": (_P,),
    "kd_model_evaluate": (_P, _F, _I32, _I64, _I64, _PI64, _PI64),
    "kd_model_feature": (_P, ctypes.c_int32, ctypes.POINTER(_F), _PI64, _PI64, _PI64, _PI64),
    "kd_model_feature_backward": (_P, ctypes.c_int32, _F),
    "kd_model_predict_tokens": (_P, _I32, _I64, _F),
    "kd_model_forward_tokens": (_P, _I32, _I64, _F),
    "kd_model_tokens": (_P, _PI64, _PI64),
    "kd_model_output_rows": (_P, _PI64, _PI64),
    "kd_model_attention_count": (_P, ctypes.POINTER(ctypes.c_int32)),
    "kd_model_attention": (_P, ctypes.c_int32, ctypes.POINTER(_F), _PI64, _PI64, _PI64),
    "kd_model_attention_backward": (_P, ctypes.c_int32, _F),
    "kd_model_decode_step": (_P, ctypes.c_int32, _I64, _F),
    "kd_model_generate": (_P, _I32, _I64, _I64, ctypes.c_float, ctypes.c_int32, ctypes.c_float,
                          ctypes.c_uint64, _I32),
    "kd_model_adjust_output_bias": (_P, ctypes.c_int32, ctypes.c_float),
    "kd_teacher_soft_targets": (ctypes.POINTER(_P), _F, ctypes.c_int32, _F, _I64, ctypes.c_float,
                                _F),
    "kd_soft_targets_from_logits": (_F, _F, ctypes.c_int32, _I64, _I64, ctypes.c_float, _F),
    "kd_topk_from_logits": (_F, _I64, _I64, ctypes.c_int32, _I32, _F, _F),
    "kd_topk_logits": (_I32, _F, _F, _I64, _I64, ctypes.c_int32, _F),
    "kd_topk_soft_targets": (_I32, _F, _F, _I64, _I64, ctypes.c_int32, ctypes.c_float,
                             ctypes.c_int, _F),
    "kd_loss_create": (ctypes.c_int, ctypes.POINTER(_P)),
    "kd_loss_set_float": (_P, ctypes.c_int, ctypes.c_float),
    "kd_loss_get_float": (_P, ctypes.c_int, _F),
    "kd_loss_forward": (_P, _F, _F, _I32, _I64, _I64, _F),
    "kd_loss_forward_logits": (_P, _F, _F, _I32, _I64, _I64, _F),
    "kd_loss_backward": (_P, _F),
    "kd_loss_value": (_P, ctypes.c_int, _F),
    "kd_optimizer_create": (ctypes.c_int, _P, ctypes.POINTER(_P)),
    "kd_optimizer_set_float": (_P, ctypes.c_int, ctypes.c_float),
    "kd_optimizer_get_float": (_P, ctypes.c_int, _F),
    "kd_optimizer_set_int": (_P, ctypes.c_int, _I64),
    "kd_optimizer_get_int": (_P, ctypes.c_int, _PI64),
    "kd_optimizer_set_milestones": (_P, _PI64, _I64),
    "kd_optimizer_get_milestones": (_P, _PI64, _I64, _PI64),
    "kd_optimizer_step": (_P,),
    "kd_trainer_create": (_P, _P, _P, ctypes.POINTER(_P)),
    "kd_trainer_add_teacher": (_P, _P, ctypes.c_float),
    "kd_trainer_step": (_P, _F, _I32, _F, _I64, _F),
    "kd_trainer_save": (_P, _S),
    "kd_trainer_load": (_P, _S),
    "kd_trainer_add_feature_loss": (_P, _P, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32, _S,
                                    ctypes.c_float),
    "kd_trainer_feature_value": (_P, ctypes.c_int32, _F),
    "kd_trainer_add_attention_loss": (_P, _P, ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
                                      ctypes.c_int, ctypes.c_float),
    "kd_trainer_regressor": (_P, ctypes.c_int32, ctypes.POINTER(_P)),
    "kd_trainer_set_int": (_P, ctypes.c_int, _I64),
    "kd_trainer_get_int": (_P, ctypes.c_int, _PI64),
    "kd_trainer_set_allreduce": (_P, ALLREDUCE_FN, _P, ctypes.c_int32, ctypes.c_int32),
    "kd_trainer_set_allreduce_async": (_P, ALLREDUCE_START_FN, ALLREDUCE_WAIT_FN, _P, ctypes.c_int32,
                                       ctypes.c_int32),
    "kd_trainer_broadcast": (_P,),
    "kd_feature_loss_create": (ctypes.c_int, ctypes.POINTER(_P)),
    "kd_feature_loss_set_float": (_P, ctypes.c_int, ctypes.c_float),
    "kd_feature_loss_get_float": (_P, ctypes.c_int, _F),
    "kd_feature_loss_forward": (_P, _F, _I64, _I64, _I64, _F, _I64, _I64, _I64, _I64, _F),
    "kd_feature_loss_backward": (_P, _F),
    "kd_dataset_load_idx": (_S, _S, ctypes.POINTER(_P)),
    "kd_dataset_load_idx_prefix": (_S, ctypes.POINTER(_P)),
    "kd_dataset_load_npy": (_S, _S, ctypes.POINTER(_P)),
    "kd_dataset_load_csv": (_S, _S, ctypes.POINTER(_P)),
    "kd_npy_save": (_S, ctypes.c_int, ctypes.c_int32, _PI64, _P),
    "kd_dataset_load_image_folder": (_S, _I64, _I64, _I64, ctypes.POINTER(_P)),
    "kd_dataset_channel_stats": (_P, _F, _F),
    "kd_model_set_normalization": (_P, _F, _F, _I64),
    "kd_model_get_normalization": (_P, _F, _F, _PI64),
    "kd_dataset_load_npz": (_S, _S, _S, ctypes.POINTER(_P)),
    "kd_dataset_class_count": (_P, ctypes.POINTER(ctypes.c_int32)),
    "kd_dataset_class_name": (_P, ctypes.c_int32, ctypes.POINTER(_S)),
    "kd_dataset_size": (_P, _PI64),
    "kd_dataset_split": (_P, ctypes.c_float, ctypes.c_uint64, ctypes.POINTER(_P),
                         ctypes.POINTER(_P)),
    "kd_dataset_shape": (_P, _PI64, _PI64, _PI64),
    "kd_dataset_hold_out": (_P, ctypes.c_float, ctypes.c_uint64, ctypes.POINTER(_P)),
    "kd_batcher_create": (_P, _I64, ctypes.c_uint64, ctypes.POINTER(_P)),
    "kd_batcher_next": (_P, _F, _I32, _PI64),
    "kd_batcher_indices": (_P, ctypes.POINTER(_PI64), _PI64),
    "kd_text_open": (_S, _I64, ctypes.POINTER(_P)),
    "kd_text_size": (_P, _PI64),
    "kd_text_part_size": (_P, ctypes.c_int, _PI64),
    "kd_text_split": (_P, ctypes.c_float),
    "kd_text_batch": (_P, ctypes.c_int, _I64, _I64, ctypes.c_uint64, _I32, _I32),
    "kd_text_tokens": (_P, ctypes.c_int, _I64, _I64, _I32),
    "kd_perplexity": (ctypes.c_float, _F),
    "kd_bits_per_byte": (ctypes.c_float, _I64, _I64, _F),
    "kd_tensors_create": (ctypes.POINTER(_P),),
    "kd_tensors_set": (_P, _S, ctypes.c_int, ctypes.c_int32, _PI64, _P),
    "kd_tensors_remove": (_P, _S),
    "kd_tensors_count": (_P, ctypes.POINTER(ctypes.c_int32)),
    "kd_tensors_name": (_P, ctypes.c_int32, ctypes.POINTER(_S)),
    "kd_tensors_has": (_P, _S, ctypes.POINTER(ctypes.c_int32)),
    "kd_tensors_info": (_P, _S, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int32),
                        _PI64),
    "kd_tensors_data": (_P, _S, ctypes.POINTER(_P), _PI64),
    "kd_tensors_set_meta": (_P, _S, _S),
    "kd_tensors_remove_meta": (_P, _S),
    "kd_tensors_get_meta": (_P, _S, ctypes.POINTER(_S)),
    "kd_tensors_meta_count": (_P, ctypes.POINTER(ctypes.c_int32)),
    "kd_tensors_meta_key": (_P, ctypes.c_int32, ctypes.POINTER(_S)),
    "kd_tensors_save": (_P, _S),
    "kd_tensors_load": (_S, ctypes.POINTER(_P)),
    "kd_augment_images": (_F, _I64, _I64, _I64, _I64, ctypes.c_int, ctypes.c_int32,
                          ctypes.c_uint64),
    "kd_model_quantize": (_P, _F, _I64, ctypes.c_int, ctypes.c_float, ctypes.POINTER(_P)),
    "kd_model_is_quantized": (_P, ctypes.POINTER(ctypes.c_int32)),
    # qat (issue 14): quantisation-aware training
    "kd_model_set_fake_quant": (_P, ctypes.c_int32),
    "kd_model_fake_quant": (_P, ctypes.POINTER(ctypes.c_int32)),
    "kd_model_quantize_trained": (_P, ctypes.POINTER(_P)),
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
    "kd_feature_loss_destroy": (None, (_P,)),
    "kd_dataset_destroy": (None, (_P,)),
    "kd_dataset_images": (_F, (_P,)),
    "kd_dataset_labels": (_I32, (_P,)),
    "kd_batcher_destroy": (None, (_P,)),
    "kd_text_destroy": (None, (_P,)),
    "kd_tensors_destroy": (None, (_P,)),
    "kd_pruner_destroy": (None, (_P,)),
}

_lib = None


def _raise_on_error(status, func, _args):
    if status != OK:
        raise KdError(status, func.__name__, _lib.kd_last_error().decode())
    return status


# The integer types of the declarations, with the values they hold: ctypes would wrap an int out
# of range (seed=-1 becoming 2^64 - 1) without a word.
_RANGES = {ctypes.c_uint64: (0, 2**64 - 1), ctypes.c_int64: (-2**63, 2**63 - 1),
           ctypes.c_int32: (-2**31, 2**31 - 1), ctypes.c_int: (-2**31, 2**31 - 1)}


def _ranged(fn, name, argtypes):
    ranges = [_RANGES.get(t) for t in argtypes]
    if not any(ranges):
        return fn

    def call(*args):
        for i, (a, r) in enumerate(zip(args, ranges)):
            if r is not None and isinstance(a, int) and not r[0] <= a <= r[1]:
                raise ValueError("%s: argument %d is %d, outside [%d, %d]"
                                 % (name, i + 1, a, r[0], r[1]))
        return fn(*args)
    call.__name__ = name
    return call


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
            setattr(loaded, name, _ranged(fn, name, argtypes))
        for name, (restype, argtypes) in _OTHER.items():
            fn = getattr(loaded, name)
            fn.argtypes, fn.restype = argtypes, restype
            setattr(loaded, name, _ranged(fn, name, argtypes))
        _lib = loaded
    return _lib


def version():
    """The version of the loaded library, "MAJOR.MINOR.PATCH"."""
    return lib().kd_version().decode()


def version_number():
    """MAJOR * 10000 + MINOR * 100 + PATCH of the loaded library."""
    return lib().kd_version_number()


def kernels_name():
    """The kernel variant in use: "ref", "avx2" or "avx512"."""
    return lib().kd_kernels_name().decode()


def set_limit(key, value):
    """Sets a process-wide budget (LIMIT_MODEL_VALUES, LIMIT_FILE_BYTES); see kd.h."""
    lib().kd_set_limit(key, value)


def get_limit(key):
    """The current value of a budget."""
    value = _I64()
    lib().kd_get_limit(key, ctypes.byref(value))
    return value.value


def set_threads(n):
    """Sets libkd's (and OpenBLAS's) thread count, process-wide; 0: every core. See kd.h."""
    lib().kd_set_threads(n)


def get_threads():
    """The threads libkd uses now (>= 1)."""
    n = ctypes.c_int32()
    lib().kd_get_threads(ctypes.byref(n))
    return n.value


_allocator = None  # the ctypes callbacks in use, kept alive while the library may call them


def set_allocator(malloc_fn=None, calloc_fn=None, realloc_fn=None, free_fn=None):
    """Routes every libkd allocation through four Python callables (MALLOC_FN... signatures, the
    first argument the user pointer), or back to libc's with no arguments. Call it before creating
    anything (see kd.h). KdError (ERR_ARGUMENT) when only some of the four are given."""
    global _allocator
    given = (malloc_fn, calloc_fn, realloc_fn, free_fn)
    if all(f is None for f in given):
        lib().kd_set_allocator(MALLOC_FN(), CALLOC_FN(), REALLOC_FN(), FREE_FN(), None)
        _allocator = None
        return
    missing = [n for n, f in zip(("malloc_fn", "calloc_fn", "realloc_fn", "free_fn"), given)
               if f is None]
    if missing:  # kd.h's KD_ERR_ARGUMENT, said before ctypes fails to wrap None as a function
        lib()
        raise KdError(ERR_ARGUMENT, "kd_set_allocator", "give all four functions, or none for "
                      "libc's; %s missing" % ", ".join(missing))
    fns = (MALLOC_FN(malloc_fn), CALLOC_FN(calloc_fn), REALLOC_FN(realloc_fn), FREE_FN(free_fn))
    lib().kd_set_allocator(*fns, None)
    _allocator = fns


def _buffer(x, fmt):
    """A contiguous memoryview of x with items of format fmt (4 bytes), or None."""
    try:
        view = memoryview(x)
    except TypeError:
        return None
    if view.format.lstrip("<=@") != fmt or view.itemsize != 4 or not view.c_contiguous:
        return None
    return view


# Helpers give ctypes arrays, which ctypes passes as pointers; not ctypes.cast, whose result holds a
# reference cycle that would keep the caller's array exported (not resizable) until a collection.
def _floats(x, n=None):
    """A float* over x: shared with x when it is a writable float32 buffer, else a copy."""
    if x is None:
        return None
    view = _buffer(x, "f")
    if view is not None and not view.readonly:
        data = (ctypes.c_float * (view.nbytes // 4)).from_buffer(x)
    elif view is not None:
        data = (ctypes.c_float * (view.nbytes // 4)).from_buffer_copy(view)
    else:
        data = (ctypes.c_float * len(x))(*x)
    if n is not None and len(data) < n:
        raise ValueError("expected at least %d floats, got %d" % (n, len(data)))
    return data


def _inplace(x, n):
    """A float* sharing x's memory, which must be a writable float32 buffer of n floats or more."""
    view = _buffer(x, "f")
    if view is None or view.readonly:
        raise TypeError("expected a writable float32 buffer such as array.array('f')")
    if view.nbytes // 4 < n:
        raise ValueError("expected at least %d floats, got %d" % (n, view.nbytes // 4))
    return (ctypes.c_float * (view.nbytes // 4)).from_buffer(x)


def _labels(labels, n):
    if labels is None:
        return None
    if len(labels) < n:
        raise ValueError("expected at least %d labels, got %d" % (n, len(labels)))
    view = _buffer(labels, "i")
    if view is not None:
        return (ctypes.c_int32 * len(view)).from_buffer_copy(view)
    return (ctypes.c_int32 * len(labels))(*labels)


def _out(n):
    return array.array("f", bytes(4 * n))


def _shape(shape):
    """(c, h, w) from a tuple or a size (a dense layer's output is size x 1 x 1)."""
    if isinstance(shape, int):
        return shape, 1, 1
    c, h, w = shape
    return c, h, w


class _Handle:
    _destroy = None
    _h = None  # so that close() holds when a constructor raised
    _owned = True  # False for a handle the library lends (a trainer's regressor)
    _lenders = ()  # the objects whose handles this one borrows, kept alive while it is open
    _borrowers = ()  # weak references to the objects that borrow this handle
    _closing = False  # close() was called while the handle was lent out

    def __init__(self, handle):
        self._h = handle

    @classmethod
    def _lent(cls, handle, owner):
        """A wrapper of a handle the library lends: keeps owner open, never frees the handle."""
        obj = cls.__new__(cls)
        _Handle.__init__(obj, handle)
        obj._owned = False
        obj._borrow(owner)
        return obj

    def _borrow(self, lender):
        """Keeps lender alive, and its handle open, while this handle is open."""
        self._lenders = list(self._lenders) + [lender]
        lender._lend(self)

    def _lend(self, borrower):
        """Defers close() while borrower (which keeps self alive) is alive and open."""
        owner = weakref.ref(self)  # not self: the callback must not keep it alive

        def returned(_ref):
            o = owner()
            if o is not None and o._closing:
                o.close()

        self._borrowers = [r for r in self._borrowers if r() is not None]
        self._borrowers.append(weakref.ref(borrower, returned))

    def _lent_out(self):
        for ref in self._borrowers:
            b = ref()
            if b is not None and getattr(b, "_h", True):  # an open handle, or a view
                return True
        return False

    def close(self):
        """Frees the handle, now, or when the last object that borrows it is closed or gone."""
        if not self._h:
            return
        if self._lent_out():
            self._closing = True
            return
        if self._owned:
            getattr(lib(), self._destroy)(self._h)
        self._h = None
        lenders, self._lenders = self._lenders, ()
        for lender in lenders:
            if lender._closing:
                lender.close()

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
    def _wrap(cls, handle):
        m = cls.__new__(cls)
        _Handle.__init__(m, handle)
        return m

    @classmethod
    def load(cls, path):
        out = _P()
        lib().kd_model_load(os.fsencode(path), ctypes.byref(out))
        return cls._wrap(out.value)

    def clone(self):
        """A deep copy (weights, buffers, spec); gradients and activations start empty."""
        out = _P()
        lib().kd_model_clone(self._h, ctypes.byref(out))
        return Model._wrap(out.value)

    def save(self, path):
        lib().kd_model_save(self._h, os.fsencode(path))

    def export_onnx(self, path):
        """Writes the model as ONNX (opset 17) for ONNX Runtime and other readers."""
        lib().kd_model_export_onnx(self._h, os.fsencode(path))

    def sparsity(self):
        """The fraction of zeros among the weight matrices and kernels."""
        v = ctypes.c_float()
        lib().kd_model_sparsity(self._h, ctypes.byref(v))
        return v.value

    def prune_channels(self, fraction):
        """A new, smaller model without the fraction of neurons/channels of smallest L1 norm."""
        out = _P()
        lib().kd_model_prune_channels(self._h, fraction, ctypes.byref(out))
        return Model._wrap(out.value)

    def quantize(self, x, n, method=CALIBRATION_MINMAX, percentile=99.99):
        """A new int8 model calibrated on x [n, input] (post-training quantisation)."""
        out = _P()
        lib().kd_model_quantize(self._h, _floats(x, n * self.input_size), n, method, percentile,
                                ctypes.byref(out))
        return Model._wrap(out.value)

    @property
    def quantized(self):
        """True when the model computes with int8 layers."""
        v = ctypes.c_int32()
        lib().kd_model_is_quantized(self._h, ctypes.byref(v))
        return bool(v.value)

    @property
    def fake_quant(self):
        """True while the model trains and predicts with fake int8 quantisation."""
        v = ctypes.c_int32()
        lib().kd_model_fake_quant(self._h, ctypes.byref(v))
        return bool(v.value)

    @fake_quant.setter
    def fake_quant(self, on):
        lib().kd_model_set_fake_quant(self._h, 1 if on else 0)

    def quantize_trained(self):
        """The int8 model of a model trained with fake_quant on, from its tracked ranges."""
        out = _P()
        lib().kd_model_quantize_trained(self._h, ctypes.byref(out))
        return Model._wrap(out.value)

    def load_weights(self, path):
        """Copies every tensor of a safetensors file into the model; names and shapes must match."""
        lib().kd_model_load_weights(self._h, os.fsencode(path))

    def set_normalization(self, mean, std):
        """Per-channel x' = (x - mean[c]) / std[c] before the first layer, saved with the model;
        mean and std of 1 or C values (empty lists remove it)."""
        if len(mean) != len(std):
            raise ValueError("mean and std need as many values")
        lib().kd_model_set_normalization(self._h, _floats(mean) if len(mean) else None,
                                         _floats(std) if len(std) else None, len(mean))

    @property
    def normalization(self):
        """(mean, std) as array.array('f'), empty when the model has none."""
        n = _I64()
        lib().kd_model_get_normalization(self._h, None, None, ctypes.byref(n))
        mean, std = _out(n.value), _out(n.value)
        if n.value:
            lib().kd_model_get_normalization(self._h, _floats(mean), _floats(std), ctypes.byref(n))
        return mean, std

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

    @property
    def layer_count(self):
        v = ctypes.c_int32()
        lib().kd_model_layer_count(self._h, ctypes.byref(v))
        return v.value

    def layer_info(self, i):
        """(kind, trainable parameters, output size) of layer i, counted after "input"."""
        kind, params, size = _S(), _I64(), _I64()
        lib().kd_model_layer_info(self._h, i, ctypes.byref(kind), ctypes.byref(params),
                                  ctypes.byref(size))
        return kind.value.decode(), params.value, size.value

    @property
    def layers(self):
        return [self.layer_info(i) for i in range(self.layer_count)]

    def predict(self, x, batch):
        """Logits [batch, output] in eval mode, as an array('f')."""
        logits = _out(batch * self.output_size)
        lib().kd_model_predict(self._h, _floats(x, batch * self.input_size), batch, _floats(logits))
        return logits

    def forward(self, x, batch):
        """Logits [batch, output] in training mode, keeping the activations for backward."""
        logits = _out(batch * self.output_size)
        lib().kd_model_forward(self._h, _floats(x, batch * self.input_size), batch, _floats(logits))
        return logits

    def _feature_size(self, layer):
        """batch * c*h*w of layer's output from the last forward, or None before any."""
        try:
            _, (batch, c, h, w) = self._feature(layer)
        except KdError:
            return None  # the call itself will say what is wrong
        return batch * c * h * w

    def backward(self, grad_logits):
        """Accumulates gradients for the last forward; grad_logits is [batch, output]."""
        n = self._feature_size(self.layer_count - 1)
        lib().kd_model_backward(self._h, _floats(grad_logits, n))

    def zero_grad(self):
        lib().kd_model_zero_grad(self._h)

    def evaluate(self, x, labels, n, batch=256, confusion=False):
        """Correct top-1 predictions of n examples in eval mode; with confusion=True,
        (correct, rows) where rows[label][prediction] counts examples."""
        classes = self.output_size
        correct = _I64()
        counts = (_I64 * (classes * classes))() if confusion else None
        lib().kd_model_evaluate(self._h, _floats(x, n * self.input_size), _labels(labels, n), n,
                                batch, ctypes.byref(correct), counts)
        if not confusion:
            return correct.value
        return correct.value, [list(counts[r * classes:(r + 1) * classes]) for r in range(classes)]

    def _feature(self, layer):
        data, batch, c, h, w = _F(), _I64(), _I64(), _I64(), _I64()
        lib().kd_model_feature(self._h, layer, ctypes.byref(data), ctypes.byref(batch),
                               ctypes.byref(c), ctypes.byref(h), ctypes.byref(w))
        return data, (batch.value, c.value, h.value, w.value)

    def feature(self, layer):
        """(data, (batch, c, h, w)): a copy of layer's output from the last forward or predict."""
        data, shape = self._feature(layer)
        n = shape[0] * shape[1] * shape[2] * shape[3]
        copy = _out(n)
        ctypes.memmove(_floats(copy), data, 4 * n)  # the library's pointer is borrowed: copied
        return copy, shape

    def feature_backward(self, layer, grad):
        """Adds grad [batch, c*h*w] to the gradient at layer's output, for the next backward."""
        lib().kd_model_feature_backward(self._h, layer, _floats(grad, self._feature_size(layer)))

    @property
    def tokens(self):
        """(vocabulary V, sequence length T) of a token model ("tokens V T | ..."); (0, 0) else."""
        v, t = _I64(), _I64()
        lib().kd_model_tokens(self._h, ctypes.byref(v), ctypes.byref(t))
        return v.value, t.value

    @property
    def output_rows(self):
        """(rows, classes) of one example's output as the losses see it: (T, V) for a language
        model, (1, output_size) for a model whose output is not a sequence."""
        r, c = _I64(), _I64()
        lib().kd_model_output_rows(self._h, ctypes.byref(r), ctypes.byref(c))
        return r.value, c.value

    def predict_tokens(self, ids, batch):
        """Logits [batch, T, out] in eval mode from token ids [batch, T], as an array('f')."""
        logits = _out(batch * self.output_size)
        lib().kd_model_predict_tokens(self._h, _labels(ids, batch * self.input_size), batch,
                                      _floats(logits))
        return logits

    def forward_tokens(self, ids, batch):
        """Logits [batch, T, out] in training mode from token ids [batch, T], for backward."""
        logits = _out(batch * self.output_size)
        lib().kd_model_forward_tokens(self._h, _labels(ids, batch * self.input_size), batch,
                                      _floats(logits))
        return logits

    def decode_step(self, token, pos):
        """Logits [out] of position pos after token, reusing the cache of positions 0..pos-1."""
        logits = _out(self.output_size // max(self.tokens[1], 1))
        lib().kd_model_decode_step(self._h, token, pos, _floats(logits))
        return logits

    def generate(self, prompt, count, temperature=1.0, top_k=0, top_p=1.0, seed=0):
        """count tokens sampled after prompt (a list of ids), as a list."""
        out = (ctypes.c_int32 * max(count, 1))()
        lib().kd_model_generate(self._h, _labels(prompt, len(prompt)), len(prompt), count,
                                temperature, top_k, top_p, seed, out)
        return list(out[:count])

    @property
    def attention_count(self):
        v = ctypes.c_int32()
        lib().kd_model_attention_count(self._h, ctypes.byref(v))
        return v.value

    def _attention(self, k):
        data, batch, heads, t = _F(), _I64(), _I64(), _I64()
        lib().kd_model_attention(self._h, k, ctypes.byref(data), ctypes.byref(batch),
                                 ctypes.byref(heads), ctypes.byref(t))
        return data, (batch.value, heads.value, t.value, t.value)

    def attention(self, k):
        """(probs, (batch, heads, T, T)): a copy of attention layer k's probabilities."""
        data, shape = self._attention(k)
        n = shape[0] * shape[1] * shape[2] * shape[3]
        copy = _out(n)
        ctypes.memmove(_floats(copy), data, 4 * n)  # borrowed by the library: copied
        return copy, shape

    def attention_backward(self, k, grad):
        """Adds grad [batch, heads, T, T] on attention layer k's probabilities, for backward."""
        try:
            _, (b, h, t, _) = self._attention(k)
            n = b * h * t * t
        except KdError:
            n = None  # the call itself will say what is wrong
        lib().kd_model_attention_backward(self._h, k, _floats(grad, n))

    def adjust_output_bias(self, cls, delta):
        """Adds delta to the bias of output class cls (the last layer must be dense)."""
        lib().kd_model_adjust_output_bias(self._h, cls, delta)


def soft_targets(teachers, x, batch, temperature, weights=None):
    """The teachers' (weighted) probabilities at temperature, [batch, classes]."""
    handles = (_P * len(teachers))(*[t.handle for t in teachers])
    probs = _out(batch * teachers[0].output_size) if teachers else _out(0)
    # The library reads batch examples of x and a weight a teacher: short buffers are refused
    # here, or it would read past them (no teachers: the call itself says what is wrong).
    inputs = batch * teachers[0].input_size if teachers else None
    lib().kd_teacher_soft_targets(handles, _floats(weights, len(teachers)), len(teachers),
                                  _floats(x, inputs), batch, temperature, _floats(probs))
    return probs


def soft_targets_from_logits(logits, n, batch, classes, temperature, weights=None):
    """The same from cached logits [n][batch][classes], teacher-major: [batch, classes]."""
    probs = _out(max(batch * classes, 1))
    lib().kd_soft_targets_from_logits(_floats(logits, n * batch * classes),
                                      _floats(weights, n), n, batch, classes, temperature,
                                      _floats(probs))
    return probs[:batch * classes]


def topk_from_logits(logits, rows, classes, k):
    """A sparse cache of teacher logits [rows, classes]: (indices, values, rest), the classes of
    each row's k largest logits (array('i'), largest first), those logits, and the log-sum-exp of
    the others per row."""
    indices = array.array("i", bytes(4 * rows * k))
    values, rest = _out(max(rows * k, 1)), _out(max(rows, 1))
    idx = (ctypes.c_int32 * len(indices)).from_buffer(indices)
    lib().kd_topk_from_logits(_floats(logits, rows * classes), rows, classes, k, idx,
                              _floats(values), _floats(rest))
    return indices, values[:rows * k], rest[:rows]


def topk_logits(indices, values, rest, rows, classes, k):
    """Dense teacher logits [rows, classes] from a top-k cache, the tail spread evenly (usable
    as a trainer's teacher_logits)."""
    logits = _out(max(rows * classes, 1))
    lib().kd_topk_logits(_labels(indices, rows * k), _floats(values, rows * k),
                         _floats(rest, rows), rows, classes, k, _floats(logits))
    return logits[:rows * classes]


def topk_soft_targets(indices, values, rest, rows, classes, k, temperature,
                      tail=TOPK_TAIL_UNIFORM):
    """Dense soft targets [rows, classes] at temperature from a top-k cache; rest may be None
    with TOPK_TAIL_NONE."""
    probs = _out(max(rows * classes, 1))
    lib().kd_topk_soft_targets(_labels(indices, rows * k), _floats(values, rows * k),
                               _floats(rest, rows), rows, classes, k, temperature, tail,
                               _floats(probs))
    return probs[:rows * classes]


def augment_images(x, batch, c, h, w, kind, amount=0, seed=0):
    """Transforms images x [batch, c, h, w] in place (a writable float32 buffer); returns x."""
    lib().kd_augment_images(_inplace(x, batch * c * h * w), batch, c, h, w, kind, amount, seed)
    return x


class _Gradients:
    """Sizes for a loss's backward: a trainer runs the losses it borrows as well, and says what
    it ran (_ran) and what it may have run (_may_run), so backward's buffer is never too small."""

    _grad_size = 0  # values in the last forward's gradient
    _grad_cap = 0  # the most values any forward so far may have left

    def _may_run(self, n):
        self._grad_cap = max(self._grad_cap, n)

    def _ran(self, n):
        self._may_run(n)
        self._grad_size = n

    def _backward(self, fn):
        grad = _out(max(self._grad_cap, 1))
        fn(self._h, _floats(grad))
        return grad[:self._grad_size]


class Loss(_Handle, _Gradients):
    """A distillation loss: Hinton's alpha T^2 KL(teacher_T || student_T) + (1 - alpha) CE by
    default, or LOSS_LOGIT_MSE, LOSS_DKD, LOSS_DIST, or a token-level divergence (LOSS_REVERSE_KL,
    LOSS_JSD, LOSS_SKEW_KL, LOSS_SKEW_REVERSE_KL, LOSS_TVD) with jsd_beta, skew and
    mask_unlabelled."""

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
        lib().kd_loss_set_float(self._h, key, value)

    def get(self, key):
        v = ctypes.c_float()
        lib().kd_loss_get_float(self._h, key, ctypes.byref(v))
        return v.value

    def forward(self, student_logits, soft_targets, labels, batch, classes):
        """The loss of student_logits [batch, classes] against soft_targets (the teachers'
        probabilities, or logits for LOSS_LOGIT_MSE; may be None when alpha is 0) and labels
        (or None when the label term is off)."""
        n, v = batch * classes, ctypes.c_float()
        lib().kd_loss_forward(self._h, _floats(student_logits, n), _floats(soft_targets, n),
                              _labels(labels, batch), batch, classes, ctypes.byref(v))
        self._ran(n)
        return v.value

    def forward_logits(self, student_logits, teacher_logits, labels, batch, classes):
        """The same from the teachers' logits [batch, classes] (needed by
        LOSS_LOGIT_STANDARDIZE, preferred for LOSS_DKD)."""
        n, v = batch * classes, ctypes.c_float()
        lib().kd_loss_forward_logits(self._h, _floats(student_logits, n),
                                     _floats(teacher_logits, n), _labels(labels, batch), batch,
                                     classes, ctypes.byref(v))
        self._ran(n)
        return v.value

    def backward(self):
        """d loss / d student logits for the last forward, [batch, classes]."""
        return self._backward(lib().kd_loss_backward)

    def value(self, part=LOSS_PART_TOTAL):
        v = ctypes.c_float()
        lib().kd_loss_value(self._h, part, ctypes.byref(v))
        return v.value


class FeatureLoss(_Handle, _Gradients):
    """A loss between hidden features: FEATURE_HINT (FitNets), FEATURE_ATTENTION, FEATURE_RKD,
    FEATURE_SIMILARITY, FEATURE_PKT or FEATURE_COSINE. Shapes are (c, h, w), or a size for a
    dense layer's output."""

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

    def forward(self, student, student_shape, teacher, teacher_shape, batch):
        """The loss between student [batch, sc*sh*sw] and teacher [batch, tc*th*tw] features."""
        sc, sh, sw = _shape(student_shape)
        tc, th, tw = _shape(teacher_shape)
        n, v = batch * sc * sh * sw, ctypes.c_float()
        lib().kd_feature_loss_forward(self._h, _floats(student, n), sc, sh, sw,
                                      _floats(teacher, batch * tc * th * tw), tc, th, tw, batch,
                                      ctypes.byref(v))
        self._ran(n)
        return v.value

    def backward(self):
        """d loss / d student for the last forward, [batch, sc*sh*sw]."""
        return self._backward(lib().kd_feature_loss_backward)


class Optimizer(_Handle):
    """SGD, Adam or AdamW over a model's parameters; the model is kept alive with the optimizer."""

    _destroy = "kd_optimizer_destroy"

    def __init__(self, model, kind=OPTIMIZER_SGD, learning_rate=None, momentum=None):
        out = _P()
        lib().kd_optimizer_create(kind, model.handle, ctypes.byref(out))
        super().__init__(out.value)
        self._borrow(model)
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

    def step(self):
        """Applies the model's gradients, advances the schedule and clears the gradients."""
        lib().kd_optimizer_step(self._h)


class Pruner(_Handle):
    """Magnitude pruning of a model's weights to a sparsity, on a schedule; keeps the model alive."""

    _destroy = "kd_pruner_destroy"

    def __init__(self, model, sparsity, begin=0, end=0, frequency=1):
        out = _P()
        lib().kd_pruner_create(model.handle, sparsity, ctypes.byref(out))
        super().__init__(out.value)
        self._borrow(model)
        lib().kd_pruner_set_int(self._h, PRUNER_BEGIN_STEP, begin)
        lib().kd_pruner_set_int(self._h, PRUNER_END_STEP, end)
        lib().kd_pruner_set_int(self._h, PRUNER_FREQUENCY, frequency)

    def step(self, step):
        """Updates the masks as the schedule says at step, then zeroes the masked weights."""
        lib().kd_pruner_step(self._h, step)

    def sparsity(self):
        v = ctypes.c_float()
        lib().kd_pruner_sparsity(self._h, ctypes.byref(v))
        return v.value


class Trainer(_Handle):
    """Distillation steps of a student; keeps its borrowed student, loss, optimizer, teachers and
    feature losses."""

    _destroy = "kd_trainer_destroy"

    def __init__(self, student, loss, optimizer):
        out = _P()
        lib().kd_trainer_create(student.handle, loss.handle, optimizer.handle, ctypes.byref(out))
        super().__init__(out.value)
        for obj in (student, loss, optimizer):
            self._borrow(obj)
        self._student, self._loss = student, loss
        self._inputs, self._classes = student.input_size, student.output_size
        self._rows = student.output_rows[0]  # labels a step: batch * rows
        self._terms = []  # (feature loss, values per example it compares of the student)
        self._teachers = 0

    def add_teacher(self, teacher, weight=1.0):
        lib().kd_trainer_add_teacher(self._h, teacher.handle, weight)
        self._borrow(teacher)
        self._teachers += 1

    def add_feature_loss(self, loss, student_layer, teacher, teacher_layer, regressor=None,
                         weight=1.0):
        """Adds weight * loss(regressor(student layer), teacher `teacher`'s layer) to every step;
        regressor is a spec ("dense 1200", "conv 64 1") or None. Returns the term's number."""
        lib().kd_trainer_add_feature_loss(self._h, loss.handle, student_layer, teacher,
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
        """Adds weight * loss(student attention layer's probabilities, teacher `teacher`'s) to
        every step (MiniLM with FEATURE_ATTENTION_KL); heads ATTENTION_HEADS_MATCHED or
        ATTENTION_HEADS_MEAN. Returns the term's number (shared with the feature terms)."""
        lib().kd_trainer_add_attention_loss(self._h, loss.handle, student_attention, teacher,
                                            teacher_attention, heads, weight)
        self._borrow(loss)
        k = len(self._terms)
        # The map's size an example is known once a forward ran (heads * T * T, or T * T for the
        # mean); before, bound it by the widest layer times T (heads <= width).
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
        """Data-parallel training: fn(data, count) sums count floats (a ctypes float pointer) in
        place over the world processes (mpi4py's Allreduce, say) and returns 0; None with world 1
        makes the trainer lone again. See kd_trainer_set_allreduce."""
        if fn is None:
            self._allreduce = ALLREDUCE_FN()
        else:
            def call(data, count, user):
                try:
                    return int(fn(data, count) or 0)
                except Exception:  # an exception cannot cross the C frames
                    return 4  # KD_ERR_IO
            self._allreduce = ALLREDUCE_FN(call)  # kept alive as long as the trainer
        lib().kd_trainer_set_allreduce(self._h, self._allreduce, None, rank, world)

    def set_allreduce_async(self, start, wait, rank, world):
        """Data-parallel training with a non-blocking all-reduce: start(data, count, tag) begins
        summing count floats in place, wait(tag) completes it; both return 0. None, None with
        world 1: lone again. See kd_trainer_set_allreduce_async."""
        def guard(fn):
            def call(*args):
                try:
                    return int(fn(*args[:-1]) or 0)
                except Exception:  # an exception cannot cross the C frames
                    return 4  # KD_ERR_IO
            return call
        if start is None:
            self._allreduce = (ALLREDUCE_START_FN(), ALLREDUCE_WAIT_FN())
        else:
            self._allreduce = (ALLREDUCE_START_FN(guard(start)), ALLREDUCE_WAIT_FN(guard(wait)))
        lib().kd_trainer_set_allreduce_async(self._h, self._allreduce[0], self._allreduce[1], None,
                                             rank, world)

    def broadcast(self):
        """Process 0's student, regressors and optimizer state to every process."""
        lib().kd_trainer_broadcast(self._h)

    def set_int(self, key, value):
        lib().kd_trainer_set_int(self._h, key, value)

    def get_int(self, key):
        v = _I64()
        lib().kd_trainer_get_int(self._h, key, ctypes.byref(v))
        return v.value

    def step(self, x, labels, batch, teacher_logits=None):
        """One distillation step on a batch; returns the total loss. labels are [batch], or
        [batch * T] for a language model (output_rows); teacher_logits are cached logits
        [teachers (1 when none was added)][batch][output_size], or None."""
        v, cached = ctypes.c_float(), max(self._teachers, 1) * batch * self._classes
        # The step runs the borrowed losses: their backward must know the sizes, even on failure.
        self._loss._may_run(batch * self._classes)
        for loss, size in self._terms:
            loss._may_run(batch * self._term_size(size, False))
        lib().kd_trainer_step(self._h, _floats(x, batch * self._inputs), _labels(labels, batch * self._rows),
                              _floats(teacher_logits, cached), batch, ctypes.byref(v))
        if not self.get_int(TRAINER_HINT_ONLY):
            self._loss._ran(batch * self._classes)
        for loss, size in self._terms:  # in order: a loss serving several terms ends on the last
            loss._ran(batch * self._term_size(size, True))
        return v.value

    def save(self, path):
        """A checkpoint: student, optimizer state, random streams, regressors (not teachers)."""
        lib().kd_trainer_save(self._h, os.fsencode(path))

    def load(self, path):
        """Continues from a checkpoint of a trainer built the same way."""
        lib().kd_trainer_load(self._h, os.fsencode(path))


class Text(_Handle):
    """A UTF-8 text corpus with byte-level tokens (TEXT_VOCAB = 256), split into a training part
    and a validation part (the last tenth by default)."""

    _destroy = "kd_text_destroy"

    def __init__(self, path, max_bytes=0):
        out = _P()
        lib().kd_text_open(os.fsencode(path), max_bytes, ctypes.byref(out))
        super().__init__(out.value)

    def __len__(self):
        v = _I64()
        lib().kd_text_size(self._h, ctypes.byref(v))
        return v.value

    def part_size(self, part=TEXT_TRAIN):
        v = _I64()
        lib().kd_text_part_size(self._h, part, ctypes.byref(v))
        return v.value

    def split(self, validation_fraction):
        lib().kd_text_split(self._h, validation_fraction)

    def batch(self, batch, T, seed, part=TEXT_TRAIN):
        """(ids, targets): batch random windows from seed, as array('i') of batch * T tokens,
        targets the ids shifted by one."""
        ids = array.array("i", bytes(4 * batch * T))
        targets = array.array("i", bytes(4 * batch * T))
        lib().kd_text_batch(self._h, part, batch, T, seed,
                            (ctypes.c_int32 * len(ids)).from_buffer(ids),
                            (ctypes.c_int32 * len(targets)).from_buffer(targets))
        return ids, targets

    def tokens(self, offset, count, part=TEXT_TRAIN):
        """count tokens of a part from offset on, as array('i')."""
        ids = array.array("i", bytes(4 * max(count, 1)))
        lib().kd_text_tokens(self._h, part, offset, count,
                             (ctypes.c_int32 * len(ids)).from_buffer(ids))
        return ids[:count]


def perplexity(ce):
    """exp(ce), ce a mean cross-entropy in nats per token."""
    v = ctypes.c_float()
    lib().kd_perplexity(ce, ctypes.byref(v))
    return v.value


def bits_per_byte(ce, tokens=1, bytes_=1):
    """ce * tokens / (bytes * ln 2); tokens = bytes for byte-level tokens."""
    v = ctypes.c_float()
    lib().kd_bits_per_byte(ce, tokens, bytes_, ctypes.byref(v))
    return v.value


class Tensors(_Handle):
    """Named arrays (float32, int32, int64) with string metadata, saved as safetensors.

        t = kd.Tensors()
        t["logits"] = (array.array("f", values), (rows, classes))
        t.meta["kd.kind"] = "logits"
        t.save("cache.safetensors")
        values, shape = kd.Tensors.load("cache.safetensors")["logits"]
    """

    _destroy = "kd_tensors_destroy"
    _CODES = {DTYPE_F32: ("f", ctypes.c_float), DTYPE_I32: ("i", ctypes.c_int32),
              DTYPE_I64: ("q", ctypes.c_int64), DTYPE_I8: ("b", ctypes.c_int8),
              DTYPE_U8: ("B", ctypes.c_uint8)}

    def __init__(self, handle=None):
        if handle is None:
            out = _P()
            lib().kd_tensors_create(ctypes.byref(out))
            handle = out.value
        super().__init__(handle)
        self.meta = _TensorsMeta(self)

    @classmethod
    def load(cls, path):
        out = _P()
        lib().kd_tensors_load(os.fsencode(path), ctypes.byref(out))
        return cls(out.value)

    def save(self, path):
        lib().kd_tensors_save(self._h, os.fsencode(path))

    def __len__(self):
        n = ctypes.c_int32()
        lib().kd_tensors_count(self._h, ctypes.byref(n))
        return n.value

    def keys(self):
        names = []
        for i in range(len(self)):
            name = _S()
            lib().kd_tensors_name(self._h, i, ctypes.byref(name))
            names.append(name.value.decode())
        return names

    def __contains__(self, name):
        found = ctypes.c_int32()
        lib().kd_tensors_has(self._h, name.encode(), ctypes.byref(found))
        return bool(found.value)

    def __setitem__(self, name, value):
        """value: (array.array of typecode 'f', 'i', 'q', 'b' or 'B', shape); ValueError when
        len(array) is not the product of shape."""
        data, shape = value
        dtype = {"f": DTYPE_F32, "i": DTYPE_I32, "q": DTYPE_I64, "b": DTYPE_I8,
                 "B": DTYPE_U8}[data.typecode]
        _check_count(data, shape)
        dims = (_I64 * max(1, len(shape)))(*shape)
        address = data.buffer_info()[0] if len(data) else None
        lib().kd_tensors_set(self._h, name.encode(), dtype, len(shape), dims, address)

    def __getitem__(self, name):
        """(a copy as array.array, shape)."""
        dtype, ndim = ctypes.c_int(), ctypes.c_int32()
        dims = (_I64 * TENSORS_MAX_DIMS)()
        lib().kd_tensors_info(self._h, name.encode(), ctypes.byref(dtype), ctypes.byref(ndim), dims)
        data, nbytes = _P(), _I64()
        lib().kd_tensors_data(self._h, name.encode(), ctypes.byref(data), ctypes.byref(nbytes))
        code, ctype = self._CODES[dtype.value]
        out = array.array(code)
        if nbytes.value:
            out.frombytes(ctypes.string_at(data.value, nbytes.value))
        return out, tuple(dims[:ndim.value])

    def __delitem__(self, name):
        lib().kd_tensors_remove(self._h, name.encode())


def _check_count(data, shape):
    """data holds exactly the values shape says (libkd reads that many from its address)."""
    count = 1
    for d in shape:
        if d < 0:
            raise ValueError("shape %r has a negative dimension" % (tuple(shape),))
        count *= d
    if len(data) != count:
        raise ValueError("shape %r takes %d values, the data has %d"
                         % (tuple(shape), count, len(data)))


def save_npy(path, data, shape):
    """Writes array.array data (typecode 'f', 'i' or 'q') of shape as a NumPy .npy file.
    ValueError when len(data) is not the product of shape."""
    dtype = {"f": DTYPE_F32, "i": DTYPE_I32, "q": DTYPE_I64}[data.typecode]
    _check_count(data, shape)
    dims = (_I64 * max(1, len(shape)))(*shape)
    lib().kd_npy_save(os.fsencode(path), dtype, len(shape), dims,
                      data.buffer_info()[0] if len(data) else None)


class _TensorsMeta:
    """The string metadata of a Tensors set, as a small mapping."""

    def __init__(self, owner):
        self._owner = owner

    def __getitem__(self, key):
        value = _S()
        lib().kd_tensors_get_meta(self._owner._h, key.encode(), ctypes.byref(value))
        if value.value is None:
            raise KeyError(key)
        return value.value.decode()

    def __setitem__(self, key, value):
        lib().kd_tensors_set_meta(self._owner._h, key.encode(), value.encode())

    def __delitem__(self, key):
        if key not in self.keys():
            raise KeyError(key)
        lib().kd_tensors_remove_meta(self._owner._h, key.encode())

    def keys(self):
        n = ctypes.c_int32()
        lib().kd_tensors_meta_count(self._owner._h, ctypes.byref(n))
        out = []
        for i in range(n.value):
            key = _S()
            lib().kd_tensors_meta_key(self._owner._h, i, ctypes.byref(key))
            out.append(key.value.decode())
        return out


class Dataset(_Handle):
    """Images and labels from IDX files (plain or gzip), pixels as floats in [0, 1]."""

    _destroy = "kd_dataset_destroy"

    def __init__(self, images_path, labels_path=None):
        out = _P()
        lib().kd_dataset_load_idx(os.fsencode(images_path),
                                  os.fsencode(labels_path) if labels_path is not None else None,
                                  ctypes.byref(out))
        super().__init__(out.value)

    @classmethod
    def load_idx(cls, images_path, labels_path=None):
        return cls(images_path, labels_path)

    def split(self, fraction, seed):
        """(rest, held_out): new datasets, held_out with round(fraction * n) examples drawn by
        a seeded shuffle (a validation split)."""
        a, b = _P(), _P()
        lib().kd_dataset_split(self._h, fraction, seed, ctypes.byref(a), ctypes.byref(b))
        rest, held = Dataset.__new__(Dataset), Dataset.__new__(Dataset)
        _Handle.__init__(rest, a.value)
        _Handle.__init__(held, b.value)
        return rest, held

    def hold_out(self, fraction, seed):
        """Moves the examples split(fraction, seed) holds out into a new dataset and returns it;
        this one keeps the rest (no copy of it)."""
        b = _P()
        lib().kd_dataset_hold_out(self._h, fraction, seed, ctypes.byref(b))
        held = Dataset.__new__(Dataset)
        _Handle.__init__(held, b.value)
        return held

    @classmethod
    def _from(cls, handle):
        obj = cls.__new__(cls)
        _Handle.__init__(obj, handle)
        return obj

    @classmethod
    def load_idx_prefix(cls, prefix):
        """PREFIX-images-idx3-ubyte(.gz) and PREFIX-labels-idx1-ubyte(.gz), or Kaggle's
        PREFIX-images.idx3-ubyte and PREFIX-labels.idx1-ubyte."""
        out = _P()
        lib().kd_dataset_load_idx_prefix(os.fsencode(prefix), ctypes.byref(out))
        return cls._from(out.value)

    @classmethod
    def load_npy(cls, x_path, y_path=None):
        """Examples [n, ...] (float32, float64 or uint8) and integer labels [n] from .npy files."""
        out = _P()
        lib().kd_dataset_load_npy(os.fsencode(x_path),
                                  os.fsencode(y_path) if y_path is not None else None,
                                  ctypes.byref(out))
        return cls._from(out.value)

    @classmethod
    def load_npz(cls, path, x_name="x", y_name="y"):
        """Arrays x_name and y_name (None: unlabelled) of a numpy.savez archive."""
        out = _P()
        lib().kd_dataset_load_npz(os.fsencode(path), x_name.encode(),
                                  y_name.encode() if y_name is not None else None,
                                  ctypes.byref(out))
        return cls._from(out.value)

    @classmethod
    def load_csv(cls, path, label_column=None):
        """A CSV table with a header row: numeric feature columns and the named label column."""
        out = _P()
        lib().kd_dataset_load_csv(os.fsencode(path),
                                  label_column.encode() if label_column is not None else None,
                                  ctypes.byref(out))
        return cls._from(out.value)

    @classmethod
    def load_image_folder(cls, root, channels=3, height=0, width=0):
        """root/CLASS/IMAGE.png|jpg (torchvision's ImageFolder layout), all of one size."""
        out = _P()
        lib().kd_dataset_load_image_folder(os.fsencode(root), channels, height, width,
                                           ctypes.byref(out))
        return cls._from(out.value)

    def channel_stats(self):
        """(mean, std) per channel, as array.array('f'), for Model.set_normalization."""
        c = self.shape[0]
        mean, std = _out(c), _out(c)
        lib().kd_dataset_channel_stats(self._h, _floats(mean), _floats(std))
        return mean, std

    @property
    def classes(self):
        """The class names of labels 0..K-1 when they were read as text (CSV), else []."""
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
        c, h, w = self.shape
        return c * h * w

    def _view(self, pointer, ctype, fmt, n):
        # The library's memory, lent: the array keeps the dataset alive and is never freed.
        address = ctypes.cast(pointer, _P).value
        if not address or n == 0:
            return memoryview(b"").cast(fmt)
        data = (ctype * n).from_address(address)
        data._owner = self
        self._lend(data)
        return memoryview(data).cast("B").cast(fmt).toreadonly()

    @property
    def images(self):
        """A read-only float32 memoryview of all the images, [n, c*h*w] flat, without a copy."""
        return self._view(lib().kd_dataset_images(self._h), ctypes.c_float, "f",
                          self.size * self.example_size)

    @property
    def labels(self):
        """A read-only int32 memoryview of the labels [n], or None for an unlabelled set."""
        pointer = lib().kd_dataset_labels(self._h)
        return self._view(pointer, ctypes.c_int32, "i", self.size) if pointer else None


class Batcher(_Handle):
    """Shuffled mini-batches of a dataset, from a seed; iterating gives one epoch of (x, labels),
    x an array('f') [rows, c*h*w] and labels an array('i') [rows] (-1 when unlabelled)."""

    _destroy = "kd_batcher_destroy"

    def __init__(self, dataset, batch, seed=0):
        out = _P()
        lib().kd_batcher_create(dataset.handle, batch, seed, ctypes.byref(out))
        super().__init__(out.value)
        self._batch, self._size = batch, dataset.example_size
        self._borrow(dataset)

    def next(self):
        """The next batch as (x, labels); both empty at the end of an epoch, after which the next
        call starts a new epoch in a new order."""
        x = _out(self._batch * self._size)
        labels = array.array("i", bytes(4 * self._batch))
        rows, out = _I64(), (ctypes.c_int32 * self._batch).from_buffer(labels)
        lib().kd_batcher_next(self._h, _floats(x), out, ctypes.byref(rows))
        del out  # the arrays cannot shrink while ctypes shares their memory
        del x[rows.value * self._size:], labels[rows.value:]
        return x, labels

    def __iter__(self):
        while True:
            x, labels = self.next()
            if not labels:
                return
            yield x, labels

    def indices(self):
        """The dataset indices of the last batch (a copy), as a list."""
        data, rows = _PI64(), _I64()
        lib().kd_batcher_indices(self._h, ctypes.byref(data), ctypes.byref(rows))
        return data[:rows.value]
