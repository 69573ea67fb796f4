"""Quantization-aware fine-tuning for Keras 3, the repair ladder's last resort.

TF-MOT does not support Keras 3, so the few fake-quantization layers needed are here. They
mirror what the converters then do: BatchNorm folded into the layer before it, per-channel
symmetric int8 weights in [-127, 127], per-tensor asymmetric 8-bit activations whose range
is an exponential moving average of what training sees. ``keras.quantizers.
fake_quant_with_min_max_vars`` rounds in the forward pass and passes gradients straight
through inside the range (the straight-through estimator).

The loss is cross-entropy against the original model's own probabilities (distillation),
not the labels: the gate asks for agreement with that model, and on the outlier model of
docs/quantization.md a share of label loss kept the fine-tuned files below 99 % agreement.
So no labels are needed; the calibration images are the training set. The learning rate is
small because Adam moves every weight by about the same step, and the weights of an
outlier-scaled model differ by orders of magnitude. Repair starts from the equalized model
when equalization applies (the same function, even ranges). The fine-tuned weights go back
into a plain float copy, which the converters quantize as usual; every file is then
validated against the original model.

Imports Keras at module level: import this only once a model is being exported.
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
from keras import ops

from export.equalize import clone, fold_batchnorm, passes_range_through
from export.errors import UnsupportedModelError
from export.source import ExportSource
from export.validate import keras_reference
from runtime.preprocess import to_model_values

log = logging.getLogger(__name__)
LEARNING_RATE = 1e-4    # fine-tuning: a few epochs must move the weights, not retrain
BATCH_SIZE = 32
RANGE_MOMENTUM = 0.9    # activation ranges: EMA over batches, as TF-MOT's default quantizers


class ActivationQuant(keras.layers.Layer):
    """Per-tensor asymmetric 8-bit fake quantization with an EMA range."""

    def build(self, input_shape: Any) -> None:
        self.low = self.add_weight(shape=(), initializer="zeros", trainable=False, name="low")
        self.high = self.add_weight(shape=(), initializer="zeros", trainable=False, name="high")
        self.seen = self.add_weight(shape=(), initializer="zeros", trainable=False, name="seen")

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        if training:
            low, high = ops.min(inputs), ops.max(inputs)
            momentum = ops.where(self.seen > 0, RANGE_MOMENTUM, 0.0)
            self.low.assign(momentum * self.low + (1 - momentum) * ops.stop_gradient(low))
            self.high.assign(momentum * self.high + (1 - momentum) * ops.stop_gradient(high))
            self.seen.assign(1.0)
        low = ops.minimum(self.low, 0.0)
        high = ops.maximum(ops.maximum(self.high, 0.0), low + 1e-6)
        return keras.quantizers.fake_quant_with_min_max_vars(inputs, low, high, num_bits=8)


def _int8_kernel(kernel: Any, depthwise: bool) -> Any:
    """Per-output-channel symmetric int8 (narrow range, zero exact), as the converters do."""
    shape = ops.shape(kernel)
    flat = ops.reshape(kernel, (shape[0], shape[1], -1)) if depthwise else kernel
    axes = tuple(range(len(flat.shape) - 1))
    bound = ops.stop_gradient(ops.maximum(ops.max(ops.abs(flat), axis=axes), 1e-8))
    quantized = keras.quantizers.fake_quant_with_min_max_vars(flat, -bound, bound, num_bits=8,
                                                              narrow_range=True, axis=-1)
    return ops.reshape(quantized, shape) if depthwise else quantized


class QConv2D(keras.layers.Conv2D):
    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.output_quant = ActivationQuant(name="output_quant")

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        return super().convolution_op(inputs, _int8_kernel(kernel, False))

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        return self.output_quant(super().call(inputs), training=training)


class QDepthwiseConv2D(keras.layers.DepthwiseConv2D):
    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.output_quant = ActivationQuant(name="output_quant")

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outputs = ops.depthwise_conv(inputs, _int8_kernel(self.kernel, True),
                                     strides=self.strides, padding=self.padding,
                                     dilation_rate=self.dilation_rate,
                                     data_format=self.data_format)
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return self.output_quant(outputs, training=training)


class QDense(keras.layers.Dense):
    def build(self, input_shape: Any) -> None:
        super().build(input_shape)
        self.output_quant = ActivationQuant(name="output_quant")

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        outputs = ops.matmul(inputs, _int8_kernel(self.kernel, False))
        if self.use_bias:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return self.output_quant(outputs, training=training)


class OutputQuant(keras.layers.Layer):
    """Any other layer whose output the converters re-quantize (add, average, softmax, …)."""

    def __init__(self, inner: keras.layers.Layer, **kwargs: Any) -> None:
        super().__init__(name=f"{inner.name}_fq", **kwargs)
        self.inner = inner
        self.output_quant = ActivationQuant(name="output_quant")

    def build(self, input_shape: Any) -> None:
        if not self.inner.built:
            self.inner.build(input_shape)
        self.output_quant.build(None)

    def call(self, *args: Any, training: bool | None = None, **kwargs: Any) -> Any:
        return self.output_quant(self.inner(*args, **kwargs), training=training)


_QUANTIZED = ((keras.layers.DepthwiseConv2D, QDepthwiseConv2D),
              (keras.layers.Conv2D, QConv2D), (keras.layers.Dense, QDense))


def fine_tune(source: ExportSource, graph: keras.Model, epochs: int) -> keras.Model:
    """Fine-tune a BatchNorm-folded copy of ``graph`` with fake quantization on the
    calibration images; return the float copy carrying the fine-tuned weights."""
    copy = clone(graph)
    if copy is None:  # never train the caller's model in place
        raise UnsupportedModelError(f"quantization-aware training needs a model Keras can "
                                    f"clone; {graph.name} is not (a subclassed model?)")
    folded = fold_batchnorm(copy)
    model = keras.models.clone_model(folded, clone_function=_quantized_clone)
    model(np.zeros((1, *graph.inputs[0].shape[1:]), np.float32))
    _copy_weights(folded, model, len(folded.weights))
    values = to_model_values(source.calibration.images, source.spec)
    teacher = keras_reference(graph, source.spec, source.calibration.images, None).probs
    logits = source.spec.output == "logits"

    def loss(y_true: Any, y_pred: Any) -> Any:  # cross-entropy against the teacher's answers
        probs = ops.softmax(y_pred) if logits else y_pred
        return -ops.sum(y_true * ops.log(ops.clip(probs, 1e-7, 1.0)), axis=-1)

    model.compile(keras.optimizers.Adam(LEARNING_RATE), loss=loss)
    log.info("      quantization-aware training: %d epochs on %d calibration images", epochs,
             len(values))
    keras.utils.set_random_seed(0)
    model.fit(values, teacher, epochs=epochs, batch_size=BATCH_SIZE, shuffle=True, verbose=0)
    _copy_weights(model, folded, len(folded.weights))
    return folded


def _quantized_clone(layer: keras.layers.Layer) -> keras.layers.Layer:
    config = layer.get_config()
    for plain, quantized in _QUANTIZED:
        if isinstance(layer, plain):
            return quantized.from_config(config)
    copy = layer.__class__.from_config(config)
    if isinstance(layer, keras.layers.InputLayer) or passes_range_through(layer):
        return copy
    return OutputQuant(copy)


def _copy_weights(source: keras.Model, target: keras.Model, expected: int) -> None:
    """Kernel, bias and friends by layer and variable name (fake-quant ranges stay put);
    ``expected`` of them (the plain model's) must be found, or training would start from,
    or hand back, weights that are not the model's."""
    copied = 0
    by_name = {getattr(layer, "inner", layer).name: getattr(layer, "inner", layer)
               for layer in source.layers}
    for layer in target.layers:
        layer = getattr(layer, "inner", layer)
        other = by_name.get(layer.name)
        if other is None:
            continue
        values = {v.path.split("/")[-1]: v for v in other.weights}
        for variable in layer.weights:
            match = values.get(variable.path.split("/")[-1])
            if match is not None and tuple(match.shape) == tuple(variable.shape):
                variable.assign(match)
                copied += 1
    if copied != expected:
        raise UnsupportedModelError(f"quantization-aware training matched {copied} of the "
                                    f"model's {expected} weight tensors; it supports Conv2D, "
                                    "DepthwiseConv2D and Dense models that Keras can clone")
