"""Any Keras image classifier → one that takes a fixed-size NHWC image batch.

Exported files take (batch, height, width, 1 or 3) images of one size, because that is what a
camera frame becomes after the shared preprocessing. Models trained elsewhere often take
something close to it, and each close case becomes that input in front of the same weights:

- (batch, H, W): grayscale without a channel axis (the TensorFlow beginner tutorial's
  ``Flatten(input_shape=(28, 28))``) gets a channel axis;
- (batch, H·W·C): flattened pixels (an MLP on MNIST) gets a reshape, at ``--input-size``, or
  at the square size the length implies;
- (batch, None, None, C): any size (global pooling) is fixed at ``--input-size HxW``.

Imports Keras: use only once a model is loaded.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import keras

from export.errors import ExportError, UnsupportedModelError
from export.inference_model import all_layers

log = logging.getLogger(__name__)
IMAGE_CHANNELS = (1, 3)
# TensorFlow's scope and SavedModel argument names: a model, layer or input named otherwise
# ("my input:0", "conv 1": Keras lets the user pick, JAX and PyTorch run them) makes the TFLite
# converter fail with "'NoneType' object is not callable"
TF_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")


def image_model(model: Any, path: Path,
                input_size: tuple[int, int] | None = None) -> tuple[Any, tuple[int, int, int]]:
    """``model`` (or a model around its layers) taking fixed (H, W, C) images, and (H, W, C)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(f"{path.name} has {len(model.inputs)} inputs and "
                                    f"{len(model.outputs)} outputs; export needs one image input "
                                    "and one class output")
    shape = tuple(model.inputs[0].shape)[1:]
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or not out[1]:
        raise UnsupportedModelError(f"{path.name} output shape {out} is not (batch, classes)")
    if len(shape) == 3 and shape[2] in IMAGE_CHANNELS:
        target = (*_size(shape[:2], input_size, path), shape[2])
        if target == shape and TF_NAME.match(model.inputs[0].name) and _float_input(model, path):
            return model, target  # already what export needs: the model itself
        return _rebuilt(model, target, reshape=None), target
    if len(shape) == 2:
        target = (*_size(shape, input_size, path), 1)
        log.info("%s takes %s grayscale images without a channel axis; exported files take "
                 "%s (one channel)", path.name, _shape((None, *shape)), _shape((None, *target)))
        return _rebuilt(model, target, reshape=target[:2]), target
    if len(shape) == 1 and shape[0]:
        target = _flat_size(shape[0], input_size, path)
        return _rebuilt(model, target, reshape=(shape[0],)), target
    raise UnsupportedModelError(f"{path.name} input shape {(None, *shape)} is not an image: "
                                "export needs (batch, height, width, 1 or 3 channels), "
                                "(batch, height, width) or flat pixels (batch, features)")


def _float_input(model: Any, path: Path) -> bool:
    """Whether the model takes float32; one that takes uint8 (or another type) is rebuilt
    behind a float32 input of the same values, which every exported file and the runtime's
    integer input handling expect (a uint8 float file reads as quantized without a scale)."""
    dtype = str(model.inputs[0].dtype)
    if dtype == "float32":
        return True
    log.info("%s takes %s input; exported files take the same values as float32", path.name,
             dtype)
    return False


def tf_safe_names(model: Any, path: Path) -> Any:
    """``model`` with itself and its layers (nested ones too) renamed where TensorFlow refuses
    the name; what was renamed is said in one line.

    Renaming in place keeps every weight; the input tensor's own name cannot change, so
    :func:`image_model` rebuilds a model whose input is so named behind an ``image`` input.
    """
    layers = [model, *all_layers(model)]
    taken = {layer.name for layer in layers}
    renamed = []
    for layer in layers:
        if TF_NAME.match(layer.name):
            continue
        base = re.sub(r"[^A-Za-z0-9_.>-]", "_", layer.name)
        base = base if TF_NAME.match(base) else f"layer{base}"
        safe, number = base, 1
        while safe in taken:  # 'conv 1' beside a 'conv_1': two scopes of one name fail alike
            number += 1
            safe = f"{base}_{number}"
        taken.add(safe)
        if not isinstance(layer, keras.layers.InputLayer):  # said below, as the input
            renamed.append(f"{layer.name!r} as {safe!r}")
        layer.name = safe
    try:
        inputs = list(model.inputs or [])
    except (AttributeError, ValueError):  # a subclassed model never built: no input tensors
        inputs = []
    if len(inputs) == 1 and not TF_NAME.match(inputs[0].name):
        renamed.append(f"input {inputs[0].name!r} as 'image'")
    if renamed:
        log.info("%s: names TensorFlow's converters refuse, exported as: %s", path.name,
                 ", ".join(renamed))
    return model


def _size(spatial: tuple, input_size: tuple[int, int] | None, path: Path) -> tuple[int, int]:
    """The fixed (H, W): the model's own, or ``--input-size`` where the model takes any size."""
    if None not in spatial:
        fixed = (int(spatial[0]), int(spatial[1]))
        if input_size is not None and input_size != fixed:
            raise ExportError(f"--input-size {_hw(input_size)}: {path.name} takes "
                              f"{_hw(fixed)} images only; leave --input-size out")
        return fixed
    if input_size is None:
        raise UnsupportedModelError(f"{path.name} takes images of any size (input "
                                    f"{_shape((None, *spatial))}); pass --input-size HxW, the "
                                    "size to export it at, e.g. the size it was trained on")
    for have, want in zip(spatial, input_size, strict=True):
        if have is not None and have != want:
            raise ExportError(f"--input-size {_hw(input_size)} does not fit {path.name}'s input "
                              f"{_shape((None, *spatial))}")
    log.info("%s takes images of any size; exporting it at %s (--input-size)", path.name,
             _hw(input_size))
    return input_size


def _flat_size(features: int, input_size: tuple[int, int] | None,
               path: Path) -> tuple[int, int, int]:
    """The image a flat input of ``features`` values was flattened from."""
    if input_size is not None:
        height, width = input_size
        for channels in IMAGE_CHANNELS:
            if height * width * channels == features:
                log.info("%s takes %d flat pixels; exported files take %dx%dx%d images "
                         "(--input-size)", path.name, features, height, width, channels)
                return height, width, channels
        raise ExportError(f"--input-size {_hw(input_size)}: {path.name} takes {features} flat "
                          f"values, which is neither {height}x{width} nor {height}x{width}x3")
    side = math.isqrt(features)
    if side * side != features or side < 2:
        raise UnsupportedModelError(f"{path.name} takes {features} flat values, not an image "
                                    "size we can guess; if they are pixels, pass --input-size "
                                    "HxW")
    log.info("%s takes %d flat values: read as %dx%d grayscale pixels (pass --input-size to "
             "say otherwise)", path.name, features, side, side)
    return side, side, 1


def _rebuilt(model: Any, target: tuple[int, int, int], reshape: tuple | None) -> Any:
    """The same layers and weights behind a fixed ``target`` input (plus a reshape if asked).

    Sequential models are rebuilt layer by layer and functional ones cloned onto the new
    input (sharing their layers), so the graph stays flat for export's graph rewrites;
    anything else is called as one nested layer.
    """
    image = keras.Input(target, name="image")
    x = keras.layers.Reshape(reshape, name="to_model_input")(image) if reshape else image
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            x = layer(x)
        return keras.Model(image, x, name=model.name)
    if reshape is None:
        try:
            return keras.models.clone_model(model, input_tensors=image,
                                            clone_function=lambda layer: layer)
        except Exception:  # subclassed models and the like: nested below
            pass
    return keras.Model(image, model(x), name=model.name)


def _hw(size: tuple) -> str:
    return f"{size[0]}x{size[1]}"


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
