"""The documented CNNs. Pixel scaling is the first layer, so exported files take raw 0–255."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from runtime.errors import EdgeCNNError
from train.config import (
    CONVS_PER_BLOCK,
    FILTERS,
    HIDDEN_UNITS,
    MIN_SIZE,
    ROTATION,
    SHIFT,
    ZOOM,
    min_size,
)
from train.cutout import RandomCutout
from train.elastic import RandomElastic
from train.stroke import RandomStroke


def build_model(arch: str, input_shape: tuple[int, int, int], num_classes: int, *,
                activation: str = "relu", dropout: float = 0.0, conv_dropout: float = 0.0,
                l2: float = 0.0,
                hidden: int = HIDDEN_UNITS, filters: tuple[int, int] = FILTERS,
                batchnorm: bool = False, convs_per_block: int | None = None) -> keras.Model:
    """Build ``arch`` for ``input_shape`` (H, W, C) with a softmax over ``num_classes``.

    ``hidden`` (twoconv only) puts a dense layer of that many units between the convolutions
    and the classifier; 0 with ``convs_per_block`` 1 leaves the design document's model, whose
    classifier alone reads the 1,600 conv features and which underfits handwriting and print
    together. ``filters`` are twoconv's two blocks' widths (dense512's one convolution keeps
    32). ``conv_dropout`` > 0 drops that share of the pooled features after each pooling,
    ``dropout`` of the features before the classifier. ``batchnorm`` normalizes each
    convolution's output before its activation (export folds it away). ``convs_per_block`` 2
    (twoconv's default) stacks two 3×3 convolutions of the same width before each pooling,
    "VGG-style": Conv-Conv-Pool-Conv-Conv-Pool, a 4×4 feature map at 28×28 input instead of
    5×5; the extra layers are named ``conv1b`` and ``conv2b``. None: the architecture's
    default.
    """
    if arch not in MIN_SIZE:
        raise EdgeCNNError(f"--arch {arch!r}: choose from {', '.join(MIN_SIZE)}")
    if convs_per_block is None:
        convs_per_block = CONVS_PER_BLOCK[arch]
    if convs_per_block not in (1, 2) or (convs_per_block == 2 and arch != "twoconv"):
        raise EdgeCNNError(f"--convs-per-block {convs_per_block}: 1, or 2 with twoconv")
    if min(input_shape[:2]) < min_size(arch, convs_per_block):
        raise EdgeCNNError(f"--img-size {input_shape[0]} is too small for {arch}; "
                           f"use at least {min_size(arch, convs_per_block)}")
    reg = keras.regularizers.L2(l2) if l2 > 0 else None

    def conv(filters: int, name: str) -> Callable[[keras.KerasTensor], keras.KerasTensor]:
        if not batchnorm:
            return layers.Conv2D(filters, 3, activation=activation, kernel_regularizer=reg,
                                 name=name)

        def normalized(x: keras.KerasTensor) -> keras.KerasTensor:
            x = layers.Conv2D(filters, 3, use_bias=False, kernel_regularizer=reg, name=name)(x)
            x = layers.BatchNormalization(name=f"{name}_bn")(x)
            return layers.Activation(activation, name=f"{name}_{activation}")(x)

        return normalized

    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    x = conv(filters[0] if arch == "twoconv" else 32, "conv1")(x)
    if convs_per_block == 2:
        x = conv(filters[0], "conv1b")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    if conv_dropout > 0:
        x = layers.Dropout(conv_dropout, name="pool1_dropout")(x)
    if arch == "twoconv":
        x = conv(filters[1], "conv2")(x)
        if convs_per_block == 2:
            x = conv(filters[1], "conv2b")(x)
        x = layers.MaxPooling2D(2, name="pool2")(x)
        if conv_dropout > 0:
            x = layers.Dropout(conv_dropout, name="pool2_dropout")(x)
        x = layers.Flatten(name="flatten")(x)
        if hidden:
            x = layers.Dense(hidden, activation=activation, kernel_regularizer=reg,
                             name="hidden")(x)
    else:
        x = layers.Flatten(name="flatten")(x)
        x = layers.Dense(512, activation=activation, kernel_regularizer=reg, name="dense512")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", kernel_regularizer=reg,
                           name="probabilities")(x)
    return keras.Model(inputs, outputs, name=arch)


def build_augmenter(*, seed: int, flip: bool, fill: str, shift: float = SHIFT,
                    zoom: float = ZOOM, rotation: float = ROTATION,
                    elastic: float = 0.0, cutout: float = 0.0,
                    stroke: float = 0.0) -> keras.Sequential:
    """Random rotation (±``rotation`` degrees), translation (±``shift``) and zoom
    (±``zoom``), the first and the last if above 0; flips on request; first a random pen
    weight up to ``stroke`` and an elastic distortion of strength ``elastic``, each if above
    0 (digits only); last a black square of side ``cutout`` (share of the side) if that is
    above 0.

    Runs in the input pipeline, never in the saved model. ``fill`` is ``constant`` for
    digits (black background) and ``reflect`` for photos.
    """
    steps: list[layers.Layer] = [RandomStroke(stroke, seed=seed + 6)] if stroke > 0 else []
    if elastic > 0:
        steps.append(RandomElastic(elastic, seed=seed + 4))
    if rotation > 0:
        steps.append(layers.RandomRotation(rotation / 360, fill_mode=fill, seed=seed))
    steps.append(layers.RandomTranslation(shift, shift, fill_mode=fill, seed=seed + 1))
    if zoom > 0:
        steps.append(layers.RandomZoom((-zoom, zoom), fill_mode=fill, seed=seed + 2))
    if flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed + 3))
    if cutout > 0:
        steps.append(RandomCutout(cutout, seed=seed + 5))
    return keras.Sequential(steps, name="augment")
