"""Elastic distortion (Simard et al., 2003): each pixel moves by a smooth random field.

A training-only augmentation layer: uniform noise in [-1, 1] per pixel and axis, blurred by
a Gaussian of ``sigma`` pixels and scaled by ``alpha``, displaces where each output pixel is
sampled from (bilinear; outside the image reads 0, the digits' black background).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


class RandomElastic(layers.Layer):
    """``--elastic ALPHA``: a smooth random displacement per image, in training only."""

    def __init__(self, alpha: float, sigma: float = 4.0, seed: int | None = None,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.alpha, self.sigma, self.seed = alpha, sigma, seed
        self.generator = keras.random.SeedGenerator(seed)
        offsets = np.arange(-int(2 * sigma), int(2 * sigma) + 1, dtype=np.float32)
        gauss = np.exp(-offsets ** 2 / (2 * sigma ** 2))
        gauss /= gauss.sum()
        # Depthwise kernels (height, width, 2 channels, 1): one Gaussian pass per axis.
        self._rows = np.tile(gauss[:, None, None, None], (1, 1, 2, 1))
        self._cols = np.tile(gauss[None, :, None, None], (1, 1, 2, 1))

    def call(self, images: keras.KerasTensor, training: bool = True) -> keras.KerasTensor:
        if not training or self.alpha <= 0:
            return images
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        field = keras.random.uniform((batch, height, width, 2), -1.0, 1.0, seed=self.generator)
        field = ops.depthwise_conv(field, ops.convert_to_tensor(self._rows), padding="same")
        field = ops.depthwise_conv(field, ops.convert_to_tensor(self._cols), padding="same")
        field = field * self.alpha
        rows = ops.cast(ops.reshape(ops.arange(height), (1, -1, 1)), "float32") + field[..., 0]
        cols = ops.cast(ops.reshape(ops.arange(width), (1, 1, -1)), "float32") + field[..., 1]
        return _bilinear(images, rows, cols)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma,
                "seed": self.seed}


def _bilinear(images: keras.KerasTensor, rows: keras.KerasTensor,
              cols: keras.KerasTensor) -> keras.KerasTensor:
    """``images`` (B, H, W, C) sampled at (rows, cols) (B, H, W); 0 outside the image."""
    shape = ops.shape(images)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    flat = ops.reshape(images, (-1, channels))
    base = ops.reshape(ops.arange(batch) * height * width, (-1, 1, 1))
    top, left = ops.floor(rows), ops.floor(cols)
    out = 0.0
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        r, c = top + dr, left + dc
        weight = (1 - ops.abs(rows - r)) * (1 - ops.abs(cols - c))
        inside = (r >= 0) & (r <= ops.cast(height - 1, "float32")) & \
            (c >= 0) & (c <= ops.cast(width - 1, "float32"))
        ri = ops.cast(ops.clip(r, 0, ops.cast(height - 1, "float32")), "int32")
        ci = ops.cast(ops.clip(c, 0, ops.cast(width - 1, "float32")), "int32")
        values = ops.take(flat, base + ri * width + ci, axis=0)  # (B, H, W, C)
        out = out + values * ops.expand_dims(weight * ops.cast(inside, "float32"), -1)
    return out
