"""``--calib-data``: sample images in the layouts people already have them in.

- Keras's ``mnist.npz`` layout: ``x_train``/``y_train`` calibrate and ``x_test``/``y_test``,
  when present, are the check images;
- an ``.npz`` with ``images``/``labels`` or ``x``/``y`` (or ``np.savez(f, x, y)``'s
  ``arr_0``/``arr_1``), or an ``.npy`` of images alone;
- a folder with one subfolder per class (``image_dataset_from_directory``'s layout, classes
  in sorted order), or of plain images.

Arrays may be (N, H, W), (N, H, W, C), channels-first (N, C, H, W) or flat (N, H·W·C);
uint8, or float in 0–1, -1–1 or 0–255 (what was assumed is said); labels integers or
one-hot. Colour arrays are RGB, the numpy convention. Every image goes through the runtime's
one preprocessing, so calibration sees exactly what a device feeds the model.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.errors import CalibrationError
from runtime.errors import EdgeCNNError, ImageError
from runtime.preprocess import (
    NPZ_LAYOUTS,
    array_pixels,
    channels_last,
    is_image_file,
    npz_layout,
    prepare,
    read_image,
)
from runtime.spec import ModelSpec
from runtime.walk import images_under

log = logging.getLogger(__name__)
TEST_KEYS = ("x_test", "y_test")  # Keras's mnist.npz: the check images
MAX_CHECK = 10_000  # more check images only slow validation: 0.01 pp is resolution enough
LISTED = 5  # unreadable files named in the log before "and N more"


@dataclass
class ImageSet:
    images: np.ndarray               # (N, H, W, C) uint8 model inputs
    labels: np.ndarray | None        # None when the true classes are unknown

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class Samples:
    """What ``--calib-data`` holds: images for calibration, and maybe a separate check set."""

    images: ImageSet
    check: ImageSet | None = None    # x_test/y_test: never used for calibration
    class_names: tuple[str, ...] | None = None  # class subfolders, in label-index order


def read_samples(data: Path, spec: ModelSpec) -> Samples:
    """Read ``data`` as the model's input pixels (size and colour from ``spec``)."""
    suffix = data.suffix.lower()
    if suffix in (".npz", ".npy") and data.is_file():
        return _from_npz(data, spec) if suffix == ".npz" else _from_npy(data, spec)
    if data.is_dir():
        return _from_folder(data, spec)
    if not data.exists():
        raise CalibrationError(f"--calib-data {data}: no such file or folder")
    raise CalibrationError(f"--calib-data {data}: expected a folder of images (one subfolder "
                           "per class, or plain images), an .npz or an .npy file")


def _load_npz(data: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(data, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise CalibrationError(f"--calib-data {data} holds Python objects (pickled arrays); "
                                   "save plain numeric arrays with np.savez") from None
        raise CalibrationError(f"--calib-data {data} is not a readable .npz file: {exc}") \
            from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CalibrationError(f"--calib-data {data} is not a readable .npz file "
                               f"(truncated or corrupt?): {exc}") from None


def _from_npz(data: Path, spec: ModelSpec) -> Samples:
    arrays = _load_npz(data)
    by_lower = {key.lower(): key for key in arrays}
    layout = npz_layout(arrays)
    if layout is None:
        looked = ", ".join(f"{x}/{y}" for x, y in NPZ_LAYOUTS)
        raise CalibrationError(f"--calib-data {data}: found arrays "
                               f"{', '.join(sorted(arrays)) or '(none)'}; expected images and "
                               f"labels under one of {looked} (x_train/y_train is Keras's "
                               "mnist.npz layout)")
    image_key, label_key = layout
    name = f"{data.name}[{by_lower[image_key]}]"
    labels = arrays.get(by_lower.get(label_key, ""))
    if labels is None:
        log.info("--calib-data %s: no %r labels beside %r: checking agreement with Keras only",
                 data.name, label_key, image_key)
    images = _image_set(arrays[by_lower[image_key]], labels, spec, name)
    check = None
    if image_key == "x_train" and TEST_KEYS[0] in by_lower:
        test_labels = arrays.get(by_lower.get(TEST_KEYS[1], ""))
        check = _image_set(arrays[by_lower[TEST_KEYS[0]]], test_labels, spec,
                           f"{data.name}[{by_lower[TEST_KEYS[0]]}]")
        check = capped(check, name=f"{data.name}[x_test]")
        log.info("--calib-data %s: %d x_train images calibrate, %d x_test images check",
                 data.name, len(images), len(check))
    return Samples(images, check)


def _from_npy(data: Path, spec: ModelSpec) -> Samples:
    try:
        array = np.load(data, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise CalibrationError(f"--calib-data {data} is not a readable .npy file: {exc}") \
            from None
    log.info("--calib-data %s: images without labels: checking agreement with Keras only",
             data.name)
    return Samples(_image_set(array, None, spec, data.name))


def _image_set(images: np.ndarray, labels: np.ndarray | None, spec: ModelSpec,
               name: str) -> ImageSet:
    pixels = model_pixels(images, spec, name)
    return ImageSet(pixels, None if labels is None else class_indices(labels, len(pixels),
                                                                        spec, name))


def model_pixels(array: np.ndarray, spec: ModelSpec, name: str) -> np.ndarray:
    """An image array in any of the supported layouts → (N, H, W, C) uint8 model inputs."""
    images = _nhwc(array, spec, name)
    images = _read_as(array_pixels, images, name)  # pixels 0–255 whatever their scale
    if images.shape[1:] == spec.input_shape:
        return np.ascontiguousarray(images)
    if images.shape[-1] >= 3:  # numpy arrays are RGB(A); the preprocessing reads OpenCV's BGR
        images = np.concatenate([images[..., 2::-1], images[..., 3:]], axis=-1)
    log.info("--calib-data %s: %s images prepared to the model's %s input", name,
             "x".join(map(str, images.shape[1:])), "x".join(map(str, spec.input_shape)))
    try:
        return np.stack([prepare(image, spec) for image in images])
    except EdgeCNNError as exc:
        raise CalibrationError(f"--calib-data {name}: {exc}") from None


def _nhwc(array: np.ndarray, spec: ModelSpec, name: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise CalibrationError(f"--calib-data {name} holds {array.dtype} values, not pixels")
    if array.ndim == 2 and array.shape[1] == int(np.prod(spec.input_shape)):
        log.info("--calib-data %s: flat rows of %d values read as %s images", name,
                 array.shape[1], "x".join(map(str, spec.input_shape)))
        return array.reshape(len(array), *spec.input_shape)
    if array.ndim == 3:
        return array[..., None]
    if array.ndim == 4:
        return _read_as(channels_last, array, name)
    raise CalibrationError(f"--calib-data {name} has shape {tuple(array.shape)}; expected images "
                           "(N, H, W) or (N, H, W, C) with C 1, 3 or 4")


def _read_as(reader: Callable[[np.ndarray], tuple[np.ndarray, str | None]],
             images: np.ndarray, name: str) -> np.ndarray:
    """``reader``'s array (a runtime.preprocess reading shared with train), saying how it read
    ``images``; its error as a CalibrationError naming the file."""
    try:
        read, how = reader(images)
    except ImageError as exc:
        raise CalibrationError(f"--calib-data {name} {exc}") from None
    if how is not None:
        log.info("--calib-data %s: %s", name, how)
    return read


def class_indices(labels: np.ndarray, count: int, spec: ModelSpec, name: str) -> np.ndarray | None:
    """Integer class indices for ``count`` images, or None when they cannot be the model's."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 2 and labels.shape[0] == count and labels.shape[1] > 1:
        log.info("--calib-data %s: one-hot labels %s read as class indices", name,
                 tuple(labels.shape))
        labels = labels.argmax(axis=1)
    if labels.ndim != 1 or len(labels) != count:
        raise CalibrationError(f"--calib-data {name}: {count} images but labels of shape "
                               f"{tuple(labels.shape)}; expected one label per image")
    if labels.dtype.kind in "US":  # class names: the model's labels, by name
        index = {label: i for i, label in enumerate(spec.labels)}
        names = labels.astype(str)
        if all(label in index for label in names):
            return np.array([index[label] for label in names], np.int64)
        log.info("--calib-data %s: label names are not the model's labels (--labels): checking "
                 "agreement with Keras only", name)
        return None
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise CalibrationError(f"--calib-data {name}: labels are fractional; expected class "
                               "indices or one-hot rows")
    labels = labels.astype(np.int64)
    if count and (labels.min() < 0 or labels.max() >= spec.num_classes):
        log.info("--calib-data %s: labels run from %d to %d but the model has %d outputs: "
                 "checking agreement with Keras only", name, labels.min(), labels.max(),
                 spec.num_classes)
        return None
    return labels


def capped(images: ImageSet, name: str) -> ImageSet:
    if len(images) <= MAX_CHECK:
        return images
    log.info("--calib-data %s: checking on %d of its %d images", name, MAX_CHECK, len(images))
    keep = np.sort(np.random.default_rng(0).choice(len(images), MAX_CHECK, replace=False))
    return ImageSet(images.images[keep], None if images.labels is None else images.labels[keep])


def _from_folder(data: Path, spec: ModelSpec) -> Samples:
    """Class subfolders (listed as training lists them: sorted, symlink-safe, each file once)
    or a folder of plain images."""
    subfolders = [p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")]
    names: tuple[str, ...] | None = None
    if len(subfolders) >= 2:
        from train.scan import list_class_folders

        listing = list_class_folders(data, option="--calib-data")
        files, labels, names = listing.paths, listing.labels, listing.class_names
    else:
        files = _plain_images(data)
        labels = [-1] * len(files)
    images, known, skipped = [], [], []
    for path, label in zip(files, labels, strict=True):
        try:
            images.append(prepare(read_image(path), spec))
        except EdgeCNNError:
            skipped.append(os.path.relpath(path, data))
            continue
        known.append(label)
    if skipped:
        listed = ", ".join(skipped[:LISTED]) + (f" and {len(skipped) - LISTED} more"
                                                if len(skipped) > LISTED else "")
        log.info("--calib-data %s: skipped %d unreadable image(s): %s", data, len(skipped),
                 listed)
    if not images:
        raise CalibrationError(f"--calib-data {data}: no image OpenCV can read in it")
    return Samples(ImageSet(np.stack(images), np.array(known, np.int64) if names else None),
                   class_names=names)


def _plain_images(folder: Path) -> list[str]:
    """Images under ``folder``, known by content, listed as ``runtime predict`` lists a
    folder (:func:`runtime.walk.images_under`: linked folders once, never back up)."""
    return images_under(folder, is_image_file)
