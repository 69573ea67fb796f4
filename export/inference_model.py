"""The function a model computes at inference, in layers every converter takes.

Models trained elsewhere carry things that only matter while training or that the runtime
does not expect:

- augmentation layers inside the model (TensorFlow's image classification tutorial puts
  ``RandomFlip``/``RandomRotation``/``RandomZoom`` first): identity at inference, yet traced
  with their random ops, which neither ONNX nor TFLite has. They are replaced by ``Identity``;
- one sigmoid unit for two classes (cats vs dogs): it becomes two columns, ``[1 - p, p]``,
  or ``[0, z]`` for a logit ``z`` (whose softmax is ``[1 - σ(z), σ(z)]``), so the runtime's
  one probability path serves it.

Imports Keras: use only once TensorFlow has started.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np

from export.errors import ExportError

log = logging.getLogger(__name__)
AUGMENTATION_PREFIX = "Random"  # RandomFlip, RandomRotation, RandomZoom, RandomContrast, …
AUGMENTATION_CLASSES = ("AugMix", "CutMix", "MixUp", "RandAugment", "Solarization",
                        "GaussianNoise", "GaussianDropout", "AlphaDropout")


def without_augmentation(model: Any, path: Path) -> Any:
    """``model`` with its training-only augmentation layers as ``Identity`` (weights shared)."""
    found = [layer.name for layer in all_layers(model) if _training_only(layer)]
    if not found:
        return model

    def clone(layer: Any) -> Any:
        if _training_only(layer):
            return keras.layers.Identity(name=layer.name)
        if isinstance(layer, keras.Model) and any(_training_only(inner)
                                                  for inner in all_layers(layer)):
            return keras.models.clone_model(layer, clone_function=clone)
        return layer  # the same layer object: its weights are shared, not copied

    copy = keras.models.clone_model(model, clone_function=clone)
    log.info("%s: %s act only while training (identity at inference); exported without them",
             path.name, ", ".join(found))
    return copy


def in_float32(model: Any, path: Path) -> Any:
    """``model`` computing in float32 throughout (weights shared in value): a mixed-precision
    model (``mixed_float16``/``mixed_bfloat16``) casts to 16 bits inside, which the TFLite
    converter cannot lower ("Could not translate MLIR to FlatBuffer") and int8 would quantize
    from rounded values anyway."""
    mixed = sorted({layer.dtype_policy.name for layer in all_layers(model)
                    if getattr(layer, "dtype_policy", None) is not None
                    and layer.dtype_policy.compute_dtype in ("float16", "bfloat16")})
    if not mixed:
        return model

    def clone(layer: Any) -> Any:
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=clone)
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    log.info("%s computes in %s: exported as float32 (the same weights)", path.name,
             ", ".join(mixed))
    return copy


def all_layers(model: Any) -> list[Any]:
    """Every layer, nested models' included."""
    found = []
    for layer in getattr(model, "layers", []):
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(all_layers(layer))
    return found


def _training_only(layer: Any) -> bool:
    """An augmentation layer that, run at inference, returns its input unchanged."""
    name = type(layer).__name__
    if not (name.startswith(AUGMENTATION_PREFIX) or name in AUGMENTATION_CLASSES):
        return False
    try:
        shape = tuple(2 if d is None else d for d in layer.input.shape)
        probe = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
        return bool(np.array_equal(np.asarray(layer(probe, training=False)), probe))
    except Exception:  # no known input shape, or it fails on its own: leave it in place
        return False


class TwoClass(keras.layers.Layer):
    """(batch, 1) → (batch, 2): ``[1 - p, p]`` for a sigmoid, ``[0, z]`` for a logit."""

    def __init__(self, from_sigmoid: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.from_sigmoid = from_sigmoid

    def call(self, x: Any) -> Any:
        other = 1.0 - x if self.from_sigmoid else keras.ops.zeros_like(x)
        return keras.ops.concatenate([other, x], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], 2)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "from_sigmoid": self.from_sigmoid}


def _softmax_output(model: Any) -> bool:
    """Whether the model's last layer (a nested model's last, too) is a softmax."""
    last = model
    while isinstance(last, keras.Model) and last.layers:
        last = last.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return True
    return getattr(getattr(last, "activation", None), "__name__", "") == "softmax"


def two_classes(model: Any, values: np.ndarray, path: Path) -> Any:
    """A one-unit binary classifier as a two-class one; sigmoid or logit read from outputs."""
    raw = np.asarray(model.predict(values, batch_size=256, verbose=0))
    # Dense(1, activation="softmax") is always 1.0; a sigmoid may saturate on every sample
    # (a folder of one class) and still tell the classes apart, so it is judged by its layer.
    if len(raw) > 1 and np.ptp(raw) == 0 and _softmax_output(model):
        raise ExportError(f"{path.name} has one output unit and it gives {float(raw.flat[0]):g} "
                          f"for every one of {len(raw)} sample images, so it cannot tell two "
                          "classes apart (a softmax over one unit is always 1): train it with "
                          "a sigmoid on one unit or a softmax on two")
    from_sigmoid = bool(raw.min() >= 0.0 and raw.max() <= 1.0)
    log.info("%s has one output unit: read as %s for class 1 of two (class 0 is its "
             "complement)", path.name, "a sigmoid probability" if from_sigmoid else "a logit")
    head = TwoClass(from_sigmoid, name="two_classes")
    try:  # on the model's own graph: one flat model, as converters like it
        return keras.Model(model.inputs[0], head(model.outputs[0]), name=model.name)
    except Exception:
        image = keras.Input(tuple(model.inputs[0].shape[1:]), name="image")
        return keras.Model(image, head(model(image)), name=model.name)
