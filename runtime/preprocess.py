"""The one preprocessing: decoded image → the exact pixels a model was trained on.

Training, calibration, evaluation and the device runtime all call :func:`prepare`, so a
model never sees pixels at inference that differ from the ones it learned from. Images are
OpenCV-style uint8 arrays: ``(H, W)`` or ``(H, W, 1)`` grayscale, ``(H, W, 3)`` BGR,
``(H, W, 4)`` BGRA. Pixel scaling lives inside the model graph, so inputs stay raw 0–255.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import ImageError
from runtime.spec import ModelSpec

# Suffixes of the still-image formats OpenCV's imgcodecs decodes (builds may lack a few:
# AVIF, JPEG 2000 and GIF arrived in later releases). Folder scans that must not miss a file
# ask OpenCV by content instead: see :func:`is_image_file`.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".dib", ".webp", ".gif", ".tif",
                  ".tiff", ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".sr", ".ras", ".jp2",
                  ".avif", ".hdr", ".pic", ".pfm", ".exr")

_INTERPOLATION = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
}


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether OpenCV recognises the file's content as an image it can decode (any suffix)."""
    try:
        return bool(cv2.haveImageReader(os.fspath(path)))
    except cv2.error:  # a path OpenCV cannot open (e.g. unencodable characters)
        return Path(path).suffix.lower() in IMAGE_SUFFIXES


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode image bytes (any format OpenCV reads) into a uint8 grayscale, BGR or BGRA array."""
    if not data:
        raise ImageError(f"cannot decode {name}: the file is empty")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), _decode_flags(data))
    except cv2.error as exc:  # e.g. a header claiming more pixels than OpenCV allows
        raise ImageError(f"cannot decode {name}: OpenCV refused it "
                         f"({str(exc).strip().splitlines()[-1]})") from None
    if image is None or image.size == 0:
        raise ImageError(f"cannot decode {name}: not an image OpenCV can read "
                         "(PNG, JPEG, WebP, GIF, BMP, TIFF, …), or truncated")
    if image.dtype == np.uint16:  # 16-bit PNG: keep the most significant byte
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:  # float (HDR, PFM, TIFF) or 32-bit integer pixels
        image = _scaled_to_bytes(image)
    return check_image(image, name)


def _scaled_to_bytes(image: np.ndarray) -> np.ndarray:
    """Pixels of another type as 0–255: floats in [0, 1] as they are, anything brighter
    (HDR radiance, integer counts) relative to the image's brightest pixel."""
    values = image.astype(np.float64)
    finite = np.isfinite(values)
    top = float(values[finite].max(initial=0.0))
    values = np.where(np.isposinf(values), max(top, 1.0), np.where(finite, values, 0.0))
    unit = 1.0 if np.issubdtype(image.dtype, np.floating) and top <= 1.0 else max(top, 1.0)
    return np.clip(values * (255.0 / unit) + 0.5, 0, 255).astype(np.uint8)


def _decode_flags(data: bytes) -> int:
    """A JPEG (a phone's photo) is turned upright as its EXIF orientation says, as every
    viewer shows it: OpenCV applies that tag under any flags but IMREAD_UNCHANGED, which the
    other formats keep for their alpha channel (a JPEG has none)."""
    if data[:3] == b"\xff\xd8\xff":
        return cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR
    return cv2.IMREAD_UNCHANGED


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read and decode one image file (unicode paths work, unlike ``cv2.imread``)."""
    try:
        data = Path(path).read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a name with a NUL byte
        raise ImageError(f"cannot read image {path}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from None
    return decode_image(data, str(path))


def check_image(image: object, name: str = "image") -> np.ndarray:
    """Return ``image`` as (H, W, C) uint8 with C in 1, 3, 4, or raise a clear ImageError."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ImageError(f"{name} must be uint8 (0-255 pixels), got dtype {image.dtype}; "
                         "scale it to 0-255 and use .astype(np.uint8)")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ImageError(f"{name} must be (H, W), (H, W, 1), (H, W, 3) BGR or (H, W, 4) BGRA; "
                         f"got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"{name} is empty: shape {image.shape}")
    return image


def convert_color(image: np.ndarray, color: str) -> np.ndarray:
    """Grayscale/BGR/BGRA (H, W, C) → (H, W, 1) grayscale or (H, W, 3) RGB."""
    channels = image.shape[2]
    if channels == 4:  # composite over white, the way a viewer shows a transparent image
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3] * alpha + 255.0 * (1.0 - alpha) + 0.5).astype(np.uint8)
        channels = 3
    if color == "grayscale":
        if channels == 1:
            return image
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None]
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def prepare(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """One image → the model's input pixels: (H, W, C) uint8 in the spec's size and colour."""
    image = convert_color(check_image(image), spec.color)
    height, width, channels = spec.input_shape
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=_INTERPOLATION[spec.interpolation])
    return np.ascontiguousarray(image.reshape(height, width, channels))


def prepare_batch(images: Sequence[np.ndarray] | np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Many images → (N, H, W, C) uint8."""
    if (isinstance(images, np.ndarray) and images.dtype == np.uint8
            and images.shape[1:] == spec.input_shape):
        return images  # already model input: skip a copy of the whole eval set
    if len(images) == 0:
        raise ImageError("no images to prepare: the batch is empty")
    return np.stack([prepare(image, spec) for image in images])


def to_model_values(pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """uint8 pixels → float32 values in the spec's value range (identity for 0–255 models)."""
    low, high = spec.value_range
    values = pixels.astype(np.float32)
    if (low, high) != (0.0, 255.0):
        values = values * np.float32((high - low) / 255.0) + np.float32(low)
    return values


# The names under which .npz files usually hold images and their labels, in the order looked
# for: Keras's mnist.npz, then common plain layouts and np.savez(f, x, y)'s positional names.
# Read by ``train --data x.npz`` and ``export --calib-data x.npz``.
NPZ_LAYOUTS = (("x_train", "y_train"), ("images", "labels"), ("x", "y"), ("x_test", "y_test"),
               ("arr_0", "arr_1"))
ARRAY_CHANNELS = (1, 3, 4)  # grey, RGB, RGBA: the channel counts an image array may have


def npz_layout(keys: Iterable[str]) -> tuple[str, str] | None:
    """The first of NPZ_LAYOUTS whose image array is among ``keys`` (any case), or None."""
    lower = {key.lower() for key in keys}
    return next(((x, y) for x, y in NPZ_LAYOUTS if x in lower), None)


def channels_last(images: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A 4-d image array as (N, H, W, C), and how it was read (None when it already was).

    Channels-first (N, C, H, W), PyTorch's layout, is recognised when the last axis cannot
    be channels and the second can. Arrays of any other rank pass through for the caller to
    judge. One rule for ``train --data`` and ``export --calib-data``."""
    if images.ndim != 4 or images.shape[-1] in ARRAY_CHANNELS:
        return images, None
    if images.shape[1] not in ARRAY_CHANNELS:
        raise ImageError(f"of shape {tuple(images.shape)} has neither 1, 3 nor 4 channels, "
                         "last (N, H, W, C) or first (N, C, H, W)")
    return (np.ascontiguousarray(images.transpose(0, 2, 3, 1)),
            f"{tuple(images.shape)} read as channels-first (N, C, H, W)")


def array_pixels(images: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An image array saved in any usual scale → uint8 0–255, and how it was read (None for
    uint8). Floats in 0–1 are pixel/255, in −1–1 pixel/127.5 − 1, in 0–255 pixels; booleans
    and integers that are all 0 or 1 are black or white. Anything else (a mean/std
    normalization, NaN) is an ImageError: a guess there would train or calibrate on the
    wrong pixels. Shared by ``train --data x.npz`` and ``export --calib-data x.npz``, which
    each name the file."""
    if images.dtype.kind not in "biuf":
        raise ImageError(f"holds {images.dtype} values, not pixels")
    if images.size == 0:
        raise ImageError("holds no images")
    if images.dtype.kind in "biu" and images.min() >= 0 and images.max() <= 1:
        # A binarized set (MNIST thresholded and saved as 0/1): read as pixels it would be
        # black on black, and no real photo set tops out at grey level 1.
        return images.astype(np.uint8) * np.uint8(255), "0/1 values: read as black and white"
    if images.dtype == np.uint8:
        return images, None
    low, high = float(images.min()), float(images.max())
    if images.dtype.kind in "iu":
        if low < 0 or high > 255:
            raise ImageError(f"holds integers from {low:g} to {high:g}; expected pixels 0–255")
        return images.astype(np.uint8), f"{images.dtype} 0–255: read as pixels"
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ImageError("holds NaN or infinite values")
    if low >= 0 and high <= 1:
        scale, offset, what = 255.0, 0.0, "0–1: read as pixel/255"
    elif low >= -1 and high <= 1:
        scale, offset, what = 127.5, 1.0, "-1–1: read as pixel/127.5 - 1"
    elif low >= 0 and high <= 255:
        scale, offset, what = 1.0, 0.0, "0–255: read as pixels"
    else:
        raise ImageError(f"holds floats from {low:g} to {high:g}, not pixels in 0–1 or 0–255 "
                         "(normalized by a mean and std?); save the images as uint8 0–255")
    pixels = (images.astype(np.float32) + np.float32(offset)) * np.float32(scale)
    return (np.clip(np.rint(pixels), 0, 255).astype(np.uint8),
            f"float values from {low:g} to {high:g}, taken as {what}")
