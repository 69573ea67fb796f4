"""Mixup (Zhang et al., 2018): train on blends of two digits, with targets blended alike.

Training batches only. Each image of a batch is paired with another of the same batch (a
random permutation), and both the images and their one-hot targets are mixed with a weight
``lam`` drawn per image from Beta(alpha, alpha): ``lam·x_i + (1 - lam)·x_j`` and
``lam·y_i + (1 - lam)·y_j``. A small alpha (0.2) keeps most blends near one digit. The
targets become soft rows that sum to 1; the loop reads a two-dimensional target as such
(label smoothing still applies on top).
"""

from __future__ import annotations

import keras
from keras import ops


class Mixup:
    """``--mixup ALPHA``: ``(images, labels) -> (blended images, blended one-hot targets)``."""

    def __init__(self, alpha: float, num_classes: int, seed: int | None = None) -> None:
        self.alpha, self.num_classes, self.seed = alpha, num_classes, seed
        self.generator = keras.random.SeedGenerator(seed)

    def __call__(self, images: keras.KerasTensor, labels: keras.KerasTensor,
                 ) -> tuple[keras.KerasTensor, keras.KerasTensor]:
        targets = ops.one_hot(ops.cast(labels, "int32"), self.num_classes, dtype="float32")
        batch = ops.shape(images)[0]
        lam = keras.random.beta((batch,), self.alpha, self.alpha, seed=self.generator,
                                dtype="float32")
        other = keras.random.shuffle(ops.arange(batch), seed=self.generator)
        mixed = ops.take(images, other, axis=0)
        mixed_targets = ops.take(targets, other, axis=0)
        weight = ops.reshape(lam, (-1, 1, 1, 1))
        images = weight * images + (1.0 - weight) * mixed
        targets = ops.reshape(lam, (-1, 1)) * targets + ops.reshape(1.0 - lam, (-1, 1)) \
            * mixed_targets
        return images, targets
