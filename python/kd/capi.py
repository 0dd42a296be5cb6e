"""The C API of libkd, one to one: every constant and every function of include/kd.h.

This is the low-level layer of the kd package; the classes in kd (Model, Trainer, ...) are built on
it. lib() loads libkd.so and declares each function's argument and result types from the two tables
below, one entry a function; a function returning kd_status raises the KdError subclass of its
status (kd.errors) with the library's sentence, kd_last_error().

    from kd import capi
    out = ctypes.c_void_p()
    capi.lib().kd_model_create(b"input 4 | dense 2", 1, ctypes.byref(out))

Adding a kd.h function: one line in _STATUS (returns kd_status: its argument types) or in _OTHER
(anything else: result type, argument types), and its constants here. The entries use the same
names and layout as examples/python/kd.py, so a line from there is copied as it is (the test
checks that the two tables agree). tests/python_package/test_package.py fails on anything of
kd.h missing here, and on a function no class calls and no test reaches: give it a method, or
list it in LOW_LEVEL_ONLY until it has one.

Where the library comes from: the path given to lib(path), else $KD_LIBRARY (a file, used as it
is), else the first that exists of $KD_LIBRARY_PATH's directories (':'-separated) holding
libkd.so, the build tree beside this package when it runs from the source tree (python/kd ->
build/libkd.so), and the library directory `cmake --install` wrote into _install.py; else the
system's libkd.so.0 (ld.so's search).
"""
import ctypes
import ctypes.util
import os

from .errors import error_for

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
# CRD (contrastive representation distillation) and its options
FEATURE_CRD = 20
FEATURE_CRD_TEMPERATURE, FEATURE_CRD_NEGATIVES, FEATURE_CRD_MOMENTUM, FEATURE_CRD_SEED = 10, 11, 12, 13
FEATURE_RKD_DISTANCE_WEIGHT, FEATURE_RKD_ANGLE_WEIGHT = 0, 1
# kd_trainer_option
TRAINER_HINT_ONLY = 0
# kd_attention_heads: attention terms in the trainer
ATTENTION_HEADS_MATCHED, ATTENTION_HEADS_MEAN = 0, 1
TRAINER_SYNC_BATCHNORM = 50
TRAINER_BUCKET_FLOATS = 51
# kd_allreduce_tag: a non-blocking all-reduce's tags
ALLREDUCE_MAX_BUCKETS, ALLREDUCE_TAG_NOW, ALLREDUCE_TAGS = 64, 64, 65
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
    "kd_dataset_hold_out": (_P, ctypes.c_float, ctypes.c_uint64, ctypes.POINTER(_P)),
    "kd_dataset_split": (_P, ctypes.c_float, ctypes.c_uint64, ctypes.POINTER(_P),
                         ctypes.POINTER(_P)),
    "kd_dataset_shape": (_P, _PI64, _PI64, _PI64),
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

# Functions declared above that no class of the package wraps yet (callable through lib()); the
# completeness test accepts them. Meant to stay empty: a ported kd.h function gets its method.
LOW_LEVEL_ONLY = ()

_lib = None
_HERE = os.path.dirname(os.path.abspath(__file__))


def _raise_on_error(status, func, _args):
    if status != OK:
        raise error_for(status, func.__name__, _lib.kd_last_error().decode(),
                        _lib.kd_strerror(status).decode())
    return status


def candidates():
    """The places lib() tries, in order (see the module's docstring)."""
    found = []
    if os.environ.get("KD_LIBRARY"):
        found.append(os.environ["KD_LIBRARY"])
    for d in os.environ.get("KD_LIBRARY_PATH", "").split(os.pathsep):
        if d:
            found.append(os.path.join(d, "libkd.so"))
    found.append(os.path.normpath(os.path.join(_HERE, "..", "..", "build", "libkd.so")))
    try:
        from . import _install  # written by cmake --install
        found.append(os.path.join(_install.LIBDIR, "libkd.so.%d" % _install.SOVERSION))
    except ImportError:
        pass
    return found


def lib(path=None):
    """The loaded library: loaded on the first call, from path or the first of candidates() that
    exists, else the system's libkd.so.0. Later calls return the same library."""
    global _lib
    if _lib is None:
        if path is None:  # $KD_LIBRARY is taken as it is: a wrong one is an error, not skipped
            path = os.environ.get("KD_LIBRARY") or next(
                (p for p in candidates() if os.path.exists(p)), None)
        if path is None:
            path = ctypes.util.find_library("kd") or "libkd.so.0"
        try:
            loaded = ctypes.CDLL(path)
        except OSError as e:
            raise ImportError("kd: cannot load libkd (%s); set KD_LIBRARY to the path of libkd.so "
                              "or KD_LIBRARY_PATH to its directory" % e) from e
        for name, argtypes in _STATUS.items():
            fn = getattr(loaded, name)
            fn.argtypes, fn.restype, fn.errcheck = argtypes, ctypes.c_int, _raise_on_error
        for name, (restype, argtypes) in _OTHER.items():
            fn = getattr(loaded, name)
            fn.argtypes, fn.restype = argtypes, restype
        _lib = _Library(loaded)
    return _lib


# The integer types of the declarations, with the values they hold.
_RANGES = {
    ctypes.c_uint64: (0, 2**64 - 1),
    ctypes.c_int64: (-2**63, 2**63 - 1),
    ctypes.c_int32: (-2**31, 2**31 - 1),
    ctypes.c_uint32: (0, 2**32 - 1),
    ctypes.c_int: (-2**31, 2**31 - 1),
}


class _Library:
    """The loaded libkd: each call as ctypes makes it, but an argument of the wrong type (a str for
    a seed, say) is a TypeError naming the C function instead of ctypes.ArgumentError."""

    def __init__(self, cdll):
        self._cdll = cdll

    def __getattr__(self, name):
        fn = getattr(self._cdll, name)
        if not name.startswith("kd_"):
            return fn  # the CDLL's own attributes (_name, _handle)

        ranges = [_RANGES.get(t) for t in (fn.argtypes or ())]

        def call(*args):
            # ctypes wraps an int out of an integer type's range (seed=-1 became 2^64 - 1)
            for i, (a, r) in enumerate(zip(args, ranges)):
                if r is not None and isinstance(a, int) and not r[0] <= a <= r[1]:
                    raise ValueError("%s: argument %d is %d, outside [%d, %d]"
                                     % (name, i + 1, a, r[0], r[1]))
            try:
                return fn(*args)
            except ctypes.ArgumentError as e:
                raise TypeError("%s: %s" % (name, e)) from None
        call.__name__ = name
        setattr(self, name, call)  # made once a function
        return call


def path():
    """The file the library was loaded from (loads it if needed)."""
    return lib()._name
