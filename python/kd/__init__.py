"""libkd from Python: knowledge distillation with NumPy arrays.

    import numpy as np
    import kd

    train = kd.Dataset.load_idx_prefix("/usr/share/datasets/fashion-mnist/train")  # or any format
    teacher = kd.Model("input 784 | dense 1200 | relu | dense 10", seed=1)
    student = kd.Model("input 784 | dense 100 | relu | dense 10", seed=2)
    with kd.Trainer(student, kd.Loss(temperature=4.0, alpha=0.9),
                    kd.Optimizer(student, learning_rate=0.05, momentum=0.9)) as trainer:
        trainer.add_teacher(teacher)
        for x, labels in kd.Batcher(train, 128, seed=1):     # float32 [128, 1, 28, 28], int32 [128]
            loss = trainer.step(x, labels)
    logits = student.predict(train.images[:10])              # float32 [10, 10]
    student.save("student.safetensors")                      # loads in PyTorch as a state dict

Arrays: float32 values and int32 labels, C-contiguous, passed to the library as their own memory
and never converted silently (kd.as_float32 / kd.as_int32 convert on purpose); see kd.arrays.
Errors: a failed call raises a KdError subclass (kd.errors) carrying kd_last_error()'s sentence.
Handles: close() or a with block frees them (kd._handle). The C API, one to one: kd.capi; its
constants are here too, without the KD_ prefix (kd.LOSS_HINTON).
"""
from . import capi
from .arrays import as_float32, as_int32
from .data import Batcher, Dataset, augment_images
from .errors import (ArgumentError, FormatError, KdError, KdIOError, NoMemoryError,
                     NumericError, ShapeError, StateError, UnsupportedError)
from .library import (get_limit, get_threads, kernels_name, last_error, set_allocator,
                      set_limit, set_threads, strerror, version, version_number)
from .losses import FeatureLoss, Loss
from .model import Model
from .pruning import Pruner
from .targets import (soft_targets, soft_targets_from_logits, topk_from_logits, topk_logits,
                      topk_soft_targets)
from .tensors import Tensors, save_npy
from .text import Text, bits_per_byte, perplexity
from .training import Optimizer, Trainer

# kd.h's constants, KD_ removed (capi holds them; kd.LOSS_HINTON == capi.LOSS_HINTON)
globals().update({k: v for k, v in vars(capi).items() if k.isupper() and isinstance(v, int)})



def __getattr__(name):
    """kd.__version__: the loaded library's version (loading it only when asked)."""
    if name == "__version__":
        return version()
    raise AttributeError("module 'kd' has no attribute %r" % name)


__all__ = ["capi", "as_float32", "as_int32", "Batcher", "Dataset", "augment_images",
           "ArgumentError", "FormatError", "KdError", "KdIOError", "NoMemoryError",
           "NumericError", "ShapeError", "StateError", "UnsupportedError", "get_limit",
           "kernels_name", "last_error", "set_allocator", "set_limit", "set_threads", "get_threads", "strerror", "version",
           "version_number", "FeatureLoss", "Loss", "Model", "Pruner", "soft_targets",
           "soft_targets_from_logits", "topk_from_logits", "topk_logits", "topk_soft_targets",
           "Tensors", "save_npy", "Text", "bits_per_byte", "perplexity", "Optimizer", "Trainer"]
