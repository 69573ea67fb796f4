"""Stroke weight: each training digit drawn with a thinner or a bolder pen.

A training-only augmentation layer. Per image a weight ``t`` is drawn from [-w, w]; the
image moves a share ``t`` of the way to its grey-level dilation (3×3 maximum: every stroke a
pixel bolder) when ``t`` > 0, or ``-t`` of the way to its erosion (3×3 minimum: a pixel
thinner) when ``t`` < 0. Handwriting's pens vary from a fine liner to a felt tip, and a
model trained on 3,750 digits has seen few of each.
"""

from __future__ import annotations

import keras
from keras import layers, ops


class RandomStroke(layers.Layer):
    """``--stroke W``: a random pen weight per image, in training only."""

    def __init__(self, weight: float, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.weight, self.seed = weight, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images: keras.KerasTensor, training: bool = True) -> keras.KerasTensor:
        if not training or self.weight <= 0:
            return images
        bolder = ops.max_pool(images, 3, strides=1, padding="same")
        # A stroke two pixels wide erodes away: keep a third of its ink, as the camera
        # model's thinning does, so no digit becomes a blank image with a label.
        thinner = ops.maximum(-ops.max_pool(-images, 3, strides=1, padding="same"),
                              images * 0.35)
        share = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), -self.weight,
                                     self.weight, seed=self.generator)
        share = ops.cast(share, images.dtype)
        return images + ops.relu(share) * (bolder - images) \
            + ops.relu(-share) * (thinner - images)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight, "seed": self.seed}
