"""Cross-layer equalization and bias correction on Keras weights (Nagel et al., 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction").

Equalization: for two layers joined only by ops that commute with a positive per-channel
scale (ReLU, LeakyReLU, PReLU, max/average pooling, padding, dropout, flatten, BatchNorm),
dividing channel c of the first layer's output by s_c and multiplying the second layer's
input c by s_c is the same function. Choosing s_c = sqrt(r1_c / r2_c), with r the weight
ranges of channel c in each layer, gives both the same range. An outlier channel (a filter
with a far wider range than the rest, common after folding BatchNorm) then stops stretching
the activation range that every other channel has to share in int8.

Bias correction: int8 weights shift a layer's expected output by (W_q − W)·E[x]; that shift
is subtracted from the bias (or the folded BatchNorm's beta), with E[x] measured on the
calibration images. It changes the float function slightly, so it only ever goes into the
copy that is quantized.

Imports Keras at module level: import this only once a model is being exported.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from export.keras_graph import StaticFlatten

log = logging.getLogger(__name__)
ROUNDS = 20            # equalizing a pair changes its neighbours' ranges: iterate to a fixpoint
TOLERANCE = 1e-3       # stop once no scale moves by more than this (relative)
SCALE_LIMITS = (1e-4, 1e4)  # a near-dead channel must not blow the other layer's range up
INT8_MAX = 127         # converters' weights: per-channel symmetric int8 in [-127, 127]

_COMPUTE = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
_POSITIVE_HOMOGENEOUS = {"linear", "relu", "leaky_relu"}  # f(x/s) = f(x)/s for s > 0
_TRANSPARENT = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
                keras.layers.GlobalMaxPooling2D, keras.layers.GlobalAveragePooling2D,
                keras.layers.ZeroPadding2D, keras.layers.Dropout, keras.layers.SpatialDropout2D,
                keras.layers.Identity, keras.layers.LeakyReLU, keras.layers.PReLU)


@dataclass
class Pair:
    """Two compute layers and what lies between them."""

    first: Any
    second: Any
    between: list[Any] = field(default_factory=list)
    flattened: bool = False  # a Flatten between: the second layer's rows interleave channels

    @property
    def name(self) -> str:
        return f"{self.first.name}/{self.second.name}"


def clone(model: keras.Model) -> keras.Model | None:
    """A copy with its own weights (None for models Keras cannot clone, e.g. subclassed)."""
    try:
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
        copy(np.zeros((1, *model.inputs[0].shape[1:]), np.float32))
    except Exception as exc:
        log.debug("cannot clone %s: %s", model.name, exc)
        return None
    return copy


def find_pairs(model: keras.Model) -> list[Pair]:
    """Every pair of compute layers that equalization may rescale without changing the function."""
    consumers = _consumers(model)
    outputs = {id(t._keras_history.operation) for t in model.outputs}
    pairs = []
    for layer in model.layers:
        if not _can_scale_output(layer):
            continue
        pair, current = Pair(layer, None), layer
        while True:
            users = consumers.get(id(current), [])
            if len(users) != 1 or id(current) in outputs:
                break
            nxt = users[0]
            if _can_scale_input(nxt):
                pair.second = nxt
                if pair.flattened and not isinstance(nxt, keras.layers.Dense):
                    pair.second = None
                break
            if _is_flatten(nxt):
                pair.flattened = True
            elif not (_transparent(nxt) or isinstance(nxt, keras.layers.BatchNormalization)):
                break
            pair.between.append(nxt)
            current = nxt
        if pair.second is not None:
            pairs.append(pair)
    return pairs


def equalize(model: keras.Model) -> list[str]:
    """Equalize ``model`` in place; returns the names of the pairs it rescaled."""
    pairs = find_pairs(model)
    changed: set[str] = set()
    for _ in range(ROUNDS):
        largest = 0.0
        for pair in pairs:
            scale = _pair_scale(pair)
            if scale is None:
                continue
            _apply(pair, scale)
            moved = float(np.abs(np.log(scale)).max())
            if moved > np.log1p(TOLERANCE):
                changed.add(pair.name)
            largest = max(largest, moved)
        if largest <= np.log1p(TOLERANCE):
            break
    return [p.name for p in pairs if p.name in changed]


def correct_bias(model: keras.Model, images: np.ndarray) -> list[str]:
    """Subtract the expected int8-weight error (W_q − W)·E[x] from each layer's bias.

    ``images``: float model inputs. Returns the layers corrected.
    """
    layers = [layer for layer in model.layers if isinstance(layer, _COMPUTE)]
    if not layers:
        return []
    probe = keras.Model(model.inputs, [layer.input for layer in layers])
    with warnings.catch_warnings():  # "the structure of inputs doesn't match": it does
        warnings.simplefilter("ignore")
        means = [np.asarray(m) for m in probe(images, training=False)]  # no retracing
    consumers = _consumers(model)
    corrected = []
    for layer, inputs in zip(layers, means, strict=True):
        batchnorm = _folded_batchnorm(layer, consumers)
        gain = _gain(batchnorm) if batchnorm is not None else 1.0
        kernel = layer.get_weights()[0]
        effective = kernel * _output_shape(layer, gain)
        error = (_int8(effective, layer) - effective) / _output_shape(layer, gain)
        shift = _expected_output(layer, error, np.asarray(inputs, np.float64)) * gain
        if batchnorm is not None and batchnorm.center:
            weights = batchnorm.get_weights()
            index = 1 if batchnorm.scale else 0
            weights[index] = (weights[index] - shift).astype(weights[index].dtype)
            batchnorm.set_weights(weights)
        elif getattr(layer, "use_bias", False):
            weights = layer.get_weights()
            weights[1] = (weights[1] - shift).astype(weights[1].dtype)
            layer.set_weights(weights)
        else:
            continue
        corrected.append(layer.name)
    return corrected


# --- the graph ------------------------------------------------------------------------------

def _consumers(model: keras.Model) -> dict[int, list[Any]]:
    members = {id(layer) for layer in model.layers}
    users: dict[int, list[Any]] = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:  # Keras 3 functional graph; no public equivalent
            for tensor in node.input_tensors:
                producer = tensor._keras_history.operation
                if id(producer) in members and layer not in users.setdefault(id(producer), []):
                    users[id(producer)].append(layer)
    return users


def _activation(layer: Any) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "linear")


def _can_scale_output(layer: Any) -> bool:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return _activation(layer) in _POSITIVE_HOMOGENEOUS
    if isinstance(layer, keras.layers.Conv2D):
        return layer.groups == 1 and _activation(layer) in _POSITIVE_HOMOGENEOUS \
            and layer.data_format == "channels_last"
    return isinstance(layer, keras.layers.Dense) and _activation(layer) in _POSITIVE_HOMOGENEOUS


def _can_scale_input(layer: Any) -> bool:
    if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer,
                                                                 keras.layers.DepthwiseConv2D):
        return layer.groups == 1 and layer.data_format == "channels_last"
    return isinstance(layer, keras.layers.DepthwiseConv2D | keras.layers.Dense)


def _is_flatten(layer: Any) -> bool:
    if isinstance(layer, StaticFlatten):
        return True
    return isinstance(layer, keras.layers.Flatten) and layer.data_format == "channels_last"


def _transparent(layer: Any) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return layer.max_value is None and float(layer.threshold) == 0.0
    if isinstance(layer, keras.layers.Activation):
        return _activation(layer) in _POSITIVE_HOMOGENEOUS
    return isinstance(layer, _TRANSPARENT)


# --- equalization ---------------------------------------------------------------------------

def _gain(batchnorm: Any) -> np.ndarray:
    """The per-channel factor a BatchNorm multiplies its input by."""
    weights = dict(zip([w.path.split("/")[-1] for w in batchnorm.weights],
                       batchnorm.get_weights(), strict=True))
    gamma = weights.get("gamma", 1.0)
    return np.asarray(gamma / np.sqrt(weights["moving_variance"] + batchnorm.epsilon),
                      np.float64)


def _output_ranges(layer: Any) -> np.ndarray:
    kernel = np.abs(layer.get_weights()[0])
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # (kh, kw, cin, mult) → cin·mult
        return kernel.max(axis=(0, 1)).reshape(-1)
    return kernel.reshape(-1, kernel.shape[-1]).max(axis=0)


def _input_ranges(layer: Any, channels: int) -> np.ndarray:
    kernel = np.abs(layer.get_weights()[0])
    if isinstance(layer, keras.layers.Dense):  # rows: channels_last flatten interleaves
        return kernel.reshape(-1, channels, kernel.shape[-1]).max(axis=(0, 2))
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return kernel.max(axis=(0, 1, 3))
    return kernel.max(axis=(0, 1, 3))


def _pair_scale(pair: Pair) -> np.ndarray | None:
    first = _output_ranges(pair.first)
    for layer in pair.between:
        if isinstance(layer, keras.layers.BatchNormalization):
            first = first * np.abs(_gain(layer))
    channels = len(first)
    if isinstance(pair.second, keras.layers.Dense) and \
            pair.second.get_weights()[0].shape[0] % channels:
        return None
    second = _input_ranges(pair.second, channels)
    if len(second) != channels:
        return None
    scale = np.ones(channels)
    valid = (first > 0) & (second > 0)
    scale[valid] = np.sqrt(first[valid] / second[valid])
    return np.clip(scale, *SCALE_LIMITS)


def _apply(pair: Pair, scale: np.ndarray) -> None:
    """Divide the first layer's output channels by ``scale``, multiply the second's inputs."""
    weights = pair.first.get_weights()
    weights[0] = weights[0] / _output_shape(pair.first, scale)
    if len(weights) > 1:
        weights[1] = weights[1] / scale
    pair.first.set_weights([w.astype(np.float32) for w in weights])
    for layer in pair.between:
        if isinstance(layer, keras.layers.BatchNormalization):
            names = [w.path.split("/")[-1] for w in layer.weights]
            values = layer.get_weights()
            for i, name in enumerate(names):
                if name in ("beta", "moving_mean"):
                    values[i] = (values[i] / scale).astype(np.float32)
            layer.set_weights(values)
    weights = pair.second.get_weights()
    kernel = weights[0]
    if isinstance(pair.second, keras.layers.Dense):
        rows = kernel.reshape(-1, len(scale), kernel.shape[-1]) * scale[None, :, None]
        weights[0] = rows.reshape(kernel.shape)
    else:  # Conv2D (kh, kw, cin, cout) and DepthwiseConv2D (kh, kw, cin, mult): axis 2
        weights[0] = kernel * scale[None, None, :, None]
    pair.second.set_weights([w.astype(np.float32) for w in weights])


# --- bias correction ------------------------------------------------------------------------

def _folded_batchnorm(layer: Any, consumers: dict[int, list[Any]]) -> Any | None:
    """The BatchNorm that converters fold into ``layer`` (its only consumer, no activation)."""
    users = consumers.get(id(layer), [])
    if _activation(layer) == "linear" and len(users) == 1 and \
            isinstance(users[0], keras.layers.BatchNormalization):
        return users[0]
    return None


def _output_shape(layer: Any, values: np.ndarray | float) -> np.ndarray | float:
    """``values`` per output channel, shaped to broadcast against the kernel."""
    if np.isscalar(values):
        return values
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel_shape = layer.kernel.shape
        return np.asarray(values).reshape(1, 1, kernel_shape[2], kernel_shape[3])
    return np.asarray(values)


def _int8(kernel: np.ndarray, layer: Any) -> np.ndarray:
    """Per-output-channel symmetric int8, as both converters quantize weights."""
    axes = (0, 1) if isinstance(layer, keras.layers.DepthwiseConv2D) else \
        tuple(range(kernel.ndim - 1))
    scale = np.abs(kernel).max(axis=axes, keepdims=True) / INT8_MAX
    scale = np.where(scale > 0, scale, 1.0)
    return np.clip(np.rint(kernel / scale), -INT8_MAX, INT8_MAX) * scale


def _expected_output(layer: Any, error: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """E[error · x] per output channel, from the per-channel mean of the layer's input."""
    mean = inputs.reshape(-1, inputs.shape[-1]).mean(axis=0)  # over images and positions
    if isinstance(layer, keras.layers.Dense):
        return mean @ error
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return (error.sum(axis=(0, 1)) * mean[:, None]).reshape(-1)
    return np.einsum("hwio,i->o", error, mean)


# --- BatchNorm folding (for quantization-aware training) ------------------------------------

class FoldedAway(keras.layers.Layer):
    """Where a folded BatchNorm was: passes its input on (and takes BatchNorm's arguments)."""

    def call(self, inputs: Any, mask: Any = None, training: Any = None) -> Any:
        return inputs

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape


_RANGE_PRESERVING = (keras.layers.MaxPooling2D, keras.layers.GlobalMaxPooling2D,
                     keras.layers.Flatten, StaticFlatten, keras.layers.Reshape,
                     keras.layers.Dropout, keras.layers.SpatialDropout2D, keras.layers.Identity,
                     keras.layers.ZeroPadding2D, FoldedAway)


def passes_range_through(layer: Any) -> bool:
    """Ops whose int8 output reuses their input's scale and zero point in both converters."""
    return isinstance(layer, _RANGE_PRESERVING)


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """A copy where each BatchNorm that directly follows a linear Conv/Dense is folded into
    it (W·γ/σ, (b − μ)·γ/σ + β) and replaced by Identity: what the converters do."""
    consumers = _consumers(model)
    folds = {}
    for layer in model.layers:
        if isinstance(layer, _COMPUTE):
            batchnorm = _folded_batchnorm(layer, consumers)
            if batchnorm is not None:
                folds[layer.name] = batchnorm
    if not folds:
        return model
    folded_names = {bn.name for bn in folds.values()}

    def rebuild(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in folded_names:
            return FoldedAway(name=layer.name)
        config = layer.get_config()
        if layer.name in folds:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=rebuild)
    copy(np.zeros((1, *model.inputs[0].shape[1:]), np.float32))
    for layer in model.layers:
        if layer.name in folded_names or not layer.get_weights():
            continue
        target = copy.get_layer(layer.name)
        if layer.name not in folds:
            target.set_weights(layer.get_weights())
            continue
        batchnorm = folds[layer.name]
        named = dict(zip([w.path.split("/")[-1] for w in batchnorm.weights],
                         batchnorm.get_weights(), strict=True))
        gain = _gain(batchnorm)
        weights = layer.get_weights()
        bias = weights[1] if len(weights) > 1 else 0.0
        folded_bias = (bias - named["moving_mean"]) * gain + named.get("beta", 0.0)
        target.set_weights([(weights[0] * _output_shape(layer, gain)).astype(np.float32),
                            np.asarray(folded_bias, np.float32)])
    return copy
