"""Model: a network built from a spec string, its files, and its forward and backward passes."""
import ctypes
import os

import numpy as np

from . import arrays as A
from ._handle import Handle
from .capi import _F, _I64, _P, _S, CALIBRATION_MINMAX, lib
from .errors import KdError

__all__ = ["Model"]


class Model(Handle):
    """A network built from a spec string ("input 784 | dense 256 | relu | dense 10"), with
    seeded initial weights. Inputs are float32 [batch, input_size] (or [batch, c, h, w] for an
    image model: any shape whose rows hold input_size values); outputs are logits, float32
    [batch, output_size], or [batch, T, V] for a token model ("tokens V T | ...")."""

    _destroy = "kd_model_destroy"

    def __init__(self, spec, seed=0):
        out = _P()
        lib().kd_model_create(spec.encode() if spec is not None else None, seed, ctypes.byref(out))
        super().__init__(out.value)

    @classmethod
    def load(cls, path):
        """A model saved by save() (safetensors with its spec in the metadata)."""
        out = _P()
        lib().kd_model_load(os.fsencode(path), ctypes.byref(out))
        return cls._wrap(out.value)

    def clone(self):
        """A deep copy (weights, buffers, spec); gradients and activations start empty."""
        out = _P()
        lib().kd_model_clone(self._h, ctypes.byref(out))
        return Model._wrap(out.value)

    def save(self, path):
        """Writes weights, spec and normalisation as safetensors (atomically); the tensor names
        are PyTorch's state-dict names for the same network (0.weight, 0.bias, ...)."""
        lib().kd_model_save(self._h, os.fsencode(path))

    def export_onnx(self, path):
        """Writes the model as ONNX (IR version 8, opset 17; ONNX Runtime >= 1.12), atomically:
        one float input "input" ([N, C, H, W], [N, F], [N, T, D], or [N, T] token ids as floats)
        and one output "logits" ([N, classes] or [N, T, V]), N symbolic, computing what predict()
        does. An int8 model (quantize()) exports to integer operators with the same numbers."""
        lib().kd_model_export_onnx(self._h, os.fsencode(path))

    def quantize(self, calibration_x, method=CALIBRATION_MINMAX, percentile=99.99):
        """A new int8 model (post-training quantisation; Jacob et al. 2018): int8 weights per
        output channel, uint8 activations per tensor, int32 accumulation. calibration_x, float32
        [n, input_size] (read in place, a few hundred examples of the transfer set), sets each
        activation's range, by CALIBRATION_MINMAX or CALIBRATION_PERCENTILE (percentile in
        (50, 100], e.g. 99.99, ignored by MINMAX). The new model predicts, evaluates, saves and
        exports, but cannot be trained; this one is unchanged. Layers without an int8 form
        (anything but dense, conv, bn, relu, maxpool, flatten, dropout) raise UnsupportedError."""
        n = A.batch_of(calibration_x, "calibration_x", self.input_size)
        out = _P()
        lib().kd_model_quantize(self._h, A.floats(calibration_x, "calibration_x"), n, method,
                                percentile, ctypes.byref(out))
        return Model._wrap(out.value)

    @property
    def is_quantized(self):
        """True when the model computes with int8 layers (made by quantize() or loaded so)."""
        v = ctypes.c_int32()
        lib().kd_model_is_quantized(self._h, ctypes.byref(v))
        return bool(v.value)

    @property
    def fake_quant(self):
        """True while the model is fake-quantised for quantisation-aware training (Jacob et al.
        2018): every forward rounds the dense and conv weights to int8 steps per output channel
        and the input and block outputs to uint8 steps, with ranges tracked by a moving average
        of the training batches' min and max; backward passes gradients straight through inside
        the clip range and stops them outside. Set it to True before training, False to drop it
        (and the tracked ranges). Layers without an int8 form raise UnsupportedError."""
        v = ctypes.c_int32()
        lib().kd_model_fake_quant(self._h, ctypes.byref(v))
        return bool(v.value)

    @fake_quant.setter
    def fake_quant(self, on):
        lib().kd_model_set_fake_quant(self._h, 1 if on else 0)

    def quantize_trained(self):
        """The int8 model of a model trained with fake_quant on: as quantize(), with the ranges
        its training tracked instead of calibrated ones; its predictions equal this model's
        within one quantisation step. StateError before any training step with fake_quant."""
        out = _P()
        lib().kd_model_quantize_trained(self._h, ctypes.byref(out))
        return Model._wrap(out.value)

    def prune_channels(self, fraction):
        """A new, smaller model (structured pruning; Li et al. 2017): round(fraction * n) of the
        n output neurons of every dense layer and channels of every conv layer removed, those of
        smallest L1 weight norm, at least one kept; the layers reading them shrink to match. The
        last layer, and layers before a residual block or layernorm, keep their sizes; this model
        is unchanged. fraction in [0, 1). UnsupportedError for an int8 model: prune the float
        model, then quantize the pruned one."""
        out = _P()
        lib().kd_model_prune_channels(self._h, fraction, ctypes.byref(out))
        return Model._wrap(out.value)

    @property
    def sparsity(self):
        """The fraction (0..1) of zeros among the weights a Pruner would mask (dense and conv
        weights, attention projections, embeddings); 0 when there are none."""
        v = ctypes.c_float()
        lib().kd_model_sparsity(self._h, ctypes.byref(v))
        return v.value

    def load_weights(self, path):
        """Copies every tensor of a safetensors file into the model; names and shapes must match
        (a PyTorch state dict saved with safetensors.torch.save_file, for instance)."""
        lib().kd_model_load_weights(self._h, os.fsencode(path))

    def set_normalization(self, mean, std):
        """Per-channel x' = (x - mean[c]) / std[c] before the first layer, saved with the model;
        mean and std of 1 or C values (empty ones remove it)."""
        mean, std = A.param(mean, "mean"), A.param(std, "std")
        if mean.size != std.size:
            raise ValueError("mean and std need as many values, got %d and %d"
                             % (mean.size, std.size))
        lib().kd_model_set_normalization(self._h, A.out_floats(mean) if mean.size else None,
                                         A.out_floats(std) if std.size else None, mean.size)

    @property
    def normalization(self):
        """(mean, std), float32 [C] each, empty when the model has none."""
        n = _I64()
        lib().kd_model_get_normalization(self._h, None, None, ctypes.byref(n))
        mean, std = np.empty(n.value, np.float32), np.empty(n.value, np.float32)
        if n.value:
            lib().kd_model_get_normalization(self._h, A.out_floats(mean), A.out_floats(std),
                                             ctypes.byref(n))
        return mean, std

    def _size(self, fn):
        v = _I64()
        fn(self._h, ctypes.byref(v))
        return v.value

    @property
    def spec(self):
        """The spec string, normalised ("input 4 | dense 8 | ...")."""
        return lib().kd_model_spec(self._h).decode()

    @property
    def input_size(self):
        """Values in one example's input (c*h*w, or T token ids)."""
        return self._size(lib().kd_model_input_size)

    @property
    def output_size(self):
        """Values in one example's output (classes, or T*V)."""
        return self._size(lib().kd_model_output_size)

    @property
    def param_count(self):
        """Trainable parameters."""
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
        """layer_info of every layer."""
        return [self.layer_info(i) for i in range(self.layer_count)]

    def _out_shape(self, batch):
        rows, classes = self.output_rows
        return (batch, rows, classes) if self.tokens[1] else (batch, self.output_size)

    def _run(self, fn, x, out):
        batch = A.batch_of(x, "x", self.input_size)
        logits = A.output(out, self._out_shape(batch))
        fn(self._h, A.floats(x, "x"), batch, A.out_floats(logits))
        return logits

    def predict(self, x, out=None):
        """Logits of x [batch, input_size] in eval mode: float32 [batch, output_size]."""
        return self._run(lib().kd_model_predict, x, out)

    def forward(self, x, out=None):
        """Logits in training mode (dropout on, batch statistics), keeping the activations for
        backward: float32 [batch, output_size]."""
        return self._run(lib().kd_model_forward, x, out)

    def _feature_size(self, layer):
        """batch * c*h*w of layer's output from the last forward, or None before any."""
        try:
            _, (batch, c, h, w) = self._feature(layer)
        except KdError:
            return None  # the call itself will say what is wrong
        return batch * c * h * w

    def backward(self, grad_logits):
        """Accumulates parameter gradients for the last forward; grad_logits is d loss / d logits,
        float32 of the logits' shape."""
        n = self._feature_size(self.layer_count - 1)
        lib().kd_model_backward(self._h, A.floats(grad_logits, "grad_logits", n))

    def zero_grad(self):
        lib().kd_model_zero_grad(self._h)

    def evaluate(self, x, labels, batch=256, confusion=False):
        """Correct top-1 predictions on x [n, input_size] with int32 labels [n], in eval mode,
        batch examples at a time; with confusion=True, (correct, matrix) where matrix[label]
        [prediction] counts examples (int64 [classes, classes])."""
        n = A.batch_of(x, "x", self.input_size)
        classes = self.output_size
        correct = _I64()
        matrix = np.zeros((classes, classes), np.int64) if confusion else None
        lib().kd_model_evaluate(self._h, A.floats(x, "x"), A.ints(labels, "labels", n), n, batch,
                                ctypes.byref(correct),
                                matrix.ctypes.data_as(ctypes.POINTER(_I64)) if confusion else None)
        return (correct.value, matrix) if confusion else correct.value

    def _feature(self, layer):
        data, batch, c, h, w = _F(), _I64(), _I64(), _I64(), _I64()
        lib().kd_model_feature(self._h, layer, ctypes.byref(data), ctypes.byref(batch),
                               ctypes.byref(c), ctypes.byref(h), ctypes.byref(w))
        return data, (batch.value, c.value, h.value, w.value)

    def _codes(self, layer):
        """True when layer of an int8 model outputs uint8 codes, not floats: the int8 layers
        (quantize, qconv, ...) but dequantize and a layer with dequant=1 (float logits)."""
        if not self.is_quantized:
            return False
        words = self.spec.split(" | ")[layer + 1].split()
        return words[0] in ("quantize", "qconv", "qdense", "qmaxpool", "qflatten") \
            and "dequant=1" not in words

    def feature(self, layer):
        """Layer's output from the last forward or predict, float32 [batch, c, h, w]: a copy,
        since the library reuses that memory on the next pass. On an int8 model (quantize()),
        the int8 layers' outputs are their uint8 activation codes q (real = s * (q - z)), one
        byte a value: uint8 [batch, c, h, w] too (the library keeps images' codes channels-last,
        [batch, h, w, c]; the copy is put in the float layout)."""
        data, shape = self._feature(layer)
        if not self._codes(layer):
            return A.copy_from(ctypes.cast(data, _P).value, shape, A.F32)
        b, c, h, w = shape
        if c > 1 and h * w > 1:  # channels-last, as lib/nn/layers/int8.c stores them
            nhwc = A.copy_from(ctypes.cast(data, _P).value, (b, h, w, c), np.dtype(np.uint8))
            return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
        return A.copy_from(ctypes.cast(data, _P).value, shape, np.dtype(np.uint8))

    def feature_backward(self, layer, grad):
        """Adds grad (float32 [batch, c, h, w] of layer's output) to the gradient there, for the
        next backward."""
        lib().kd_model_feature_backward(self._h, layer,
                                        A.floats(grad, "grad", self._feature_size(layer)))

    @property
    def tokens(self):
        """(vocabulary V, sequence length T) of a token model; (0, 0) for any other."""
        v, t = _I64(), _I64()
        lib().kd_model_tokens(self._h, ctypes.byref(v), ctypes.byref(t))
        return v.value, t.value

    @property
    def output_rows(self):
        """(rows, classes) of one example's output as the losses see it: (T, V) for a language
        model, (1, output_size) otherwise."""
        r, c = _I64(), _I64()
        lib().kd_model_output_rows(self._h, ctypes.byref(r), ctypes.byref(c))
        return r.value, c.value

    def _run_tokens(self, fn, ids, out):
        batch = A.batch_of(ids, "ids", self.input_size)
        logits = A.output(out, self._out_shape(batch))
        fn(self._h, A.ints(ids, "ids"), batch, A.out_floats(logits))
        return logits

    def predict_tokens(self, ids, out=None):
        """Logits float32 [batch, T, V] in eval mode from int32 token ids [batch, T]."""
        return self._run_tokens(lib().kd_model_predict_tokens, ids, out)

    def forward_tokens(self, ids, out=None):
        """Logits float32 [batch, T, V] in training mode from int32 ids [batch, T], for backward."""
        return self._run_tokens(lib().kd_model_forward_tokens, ids, out)

    def decode_step(self, token, pos, out=None):
        """Logits float32 [V] of position pos after token, reusing the key/value cache of
        positions 0..pos-1 (filled by the previous calls, pos counting from 0)."""
        logits = A.output(out, (self.tokens[0],))
        lib().kd_model_decode_step(self._h, token, pos, A.out_floats(logits))
        return logits

    def generate(self, prompt, count, temperature=1.0, top_k=0, top_p=1.0, seed=0):
        """count token ids sampled after prompt (int32 [n]) at temperature, from the top_k
        tokens (0: all) within top_p of probability, seeded: int32 [count]."""
        A.check(prompt, A.I32, "prompt")
        out = np.empty(count, np.int32)
        lib().kd_model_generate(self._h, A.ints(prompt, "prompt"), prompt.size, count,
                                temperature, top_k, top_p, seed, A.out_ints(out))
        return out

    @property
    def attention_count(self):
        """Attention layers, numbered from 0 in the order of the spec."""
        v = ctypes.c_int32()
        lib().kd_model_attention_count(self._h, ctypes.byref(v))
        return v.value

    def _attention(self, k):
        data, batch, heads, t = _F(), _I64(), _I64(), _I64()
        lib().kd_model_attention(self._h, k, ctypes.byref(data), ctypes.byref(batch),
                                 ctypes.byref(heads), ctypes.byref(t))
        return data, (batch.value, heads.value, t.value, t.value)

    def attention(self, k):
        """Attention layer k's probabilities from the last pass, float32 [batch, heads, T, T]
        (rows sum to 1): a copy, the library reuses that memory."""
        data, shape = self._attention(k)
        return A.copy_from(ctypes.cast(data, _P).value, shape, A.F32)

    def attention_backward(self, k, grad):
        """Adds grad (float32 [batch, heads, T, T]) on attention layer k's probabilities."""
        try:
            _, (b, h, t, _) = self._attention(k)
            n = b * h * t * t
        except KdError:
            n = None  # the call itself will say what is wrong
        lib().kd_model_attention_backward(self._h, k, A.floats(grad, "grad", n))

    def adjust_output_bias(self, cls, delta):
        """Adds delta (in logits) to the bias of output class cls; the last layer must be dense."""
        lib().kd_model_adjust_output_bias(self._h, cls, delta)
