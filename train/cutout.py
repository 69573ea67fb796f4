"""Cutout (DeVries & Taylor, 2017): a random square of each training image is blacked out.

A training-only augmentation layer: per image, a square of side ``size`` (a share of the
image's height) centred on a uniformly random pixel, clipped where it leaves the image, is
set to 0, the digits' black background, so the model cannot lean on any one stroke.
"""

from __future__ import annotations

import keras
from keras import layers, ops


class RandomCutout(layers.Layer):
    """``--cutout SIZE``: one black square per image, in training only."""

    def __init__(self, size: float, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.size, self.seed = size, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images: keras.KerasTensor, training: bool = True) -> keras.KerasTensor:
        if not training or self.size <= 0:
            return images
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        side = ops.maximum(ops.round(self.size * ops.cast(height, "float32")), 1.0)
        centre = keras.random.uniform((batch, 2), 0.0, 1.0, seed=self.generator)
        top = ops.floor(centre[:, 0] * ops.cast(height, "float32")) - ops.floor(side / 2)
        left = ops.floor(centre[:, 1] * ops.cast(width, "float32")) - ops.floor(side / 2)
        rows = ops.cast(ops.reshape(ops.arange(height), (1, -1, 1)), "float32")
        cols = ops.cast(ops.reshape(ops.arange(width), (1, 1, -1)), "float32")
        top, left = ops.reshape(top, (-1, 1, 1)), ops.reshape(left, (-1, 1, 1))
        inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        keep = 1.0 - ops.cast(ops.expand_dims(inside, -1), images.dtype)
        return images * keep

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size, "seed": self.seed}
