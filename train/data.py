"""One code path from any source to prepared train / validation / test splits.

In-memory sources are prepared once with the runtime's preprocessing; folder sources keep
file paths and are decoded on the fly (see :mod:`train.pipeline`) with the same function.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from runtime.preprocess import prepare, read_image
from runtime.spec import ModelSpec
from train.config import TrainConfig
from train.sources import ArraySource, FolderSource
from train.split import stratified_split


@dataclass(frozen=True)
class Split:
    """One split: prepared pixels in memory, or image paths decoded while streaming."""

    labels: np.ndarray
    images: np.ndarray | None = None  # (N, H, W, C) uint8 model inputs
    paths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def streamed(self) -> bool:
        return self.images is None


@dataclass
class SkipLog:
    """Files that could not be decoded: skipped, counted and listed in the report."""

    entries: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, path: str, reason: str) -> None:
        with self.lock:
            self.entries.setdefault(path, reason)

    def as_list(self) -> list[dict[str, str]]:
        with self.lock:
            return [{"path": p, "reason": r} for p, r in sorted(self.entries.items())]


@dataclass
class PreparedData:
    spec: ModelSpec
    train: Split
    val: Split
    test: Split
    skipped: SkipLog


def resolve_color(requested: str, source: ArraySource | FolderSource) -> str:
    """``auto``: grayscale for in-memory (digit) sets, RGB for image folders."""
    if requested != "auto":
        return requested
    return "rgb" if isinstance(source, FolderSource) else "grayscale"


def prepare_data(cfg: TrainConfig, source: ArraySource | FolderSource) -> PreparedData:
    assert cfg.img_size is not None
    spec = ModelSpec(labels=source.label_names, height=cfg.img_size, width=cfg.img_size,
                     color=resolve_color(cfg.color, source), framing=source.framing,
                     architecture=cfg.arch, dataset={"name": source.name})
    indices = stratified_split(source.labels, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    if isinstance(source, ArraySource):
        pixels = np.stack([prepare(image, spec) for image in source.images])

        def make(idx: np.ndarray) -> Split:
            return Split(labels=source.labels[idx], images=pixels[idx])
    else:
        def make(idx: np.ndarray) -> Split:
            return Split(labels=source.labels[idx], paths=source.paths[idx])
    return PreparedData(spec, make(indices.train), make(indices.val), make(indices.test), SkipLog())


def load_file(path: str, spec: ModelSpec, skipped: SkipLog) -> np.ndarray | None:
    """Decode and prepare one image file; a corrupt file is logged and yields None."""
    try:
        return prepare(read_image(path), spec)
    except ValueError as exc:
        skipped.add(path, str(exc).split(": ", 1)[-1])  # the message minus "cannot … <path>"
        return None


def materialize(split: Split, spec: ModelSpec, skipped: SkipLog) -> Split:
    """Decode a streamed split into memory (used for the small sets saved in the bundle)."""
    if not split.streamed:
        return split
    assert split.paths is not None
    images, labels = [], []
    for path, label in zip(split.paths, split.labels, strict=True):
        image = load_file(str(path), spec, skipped)
        if image is not None:
            images.append(image)
            labels.append(label)
    empty = np.zeros((0, *spec.input_shape), np.uint8)
    return Split(labels=np.array(labels, np.int64), images=np.stack(images) if images else empty)


def calibration_sample(split: Split, size: int, seed: int) -> Split:
    """A class-balanced random sample of training images for post-training quantization."""
    rng = np.random.default_rng(seed + 1)
    if len(split) <= size:
        return split
    order = rng.permutation(len(split))
    # Round-robin over classes so a small sample still covers every class.
    by_class = [order[split.labels[order] == c] for c in np.unique(split.labels)]
    picked = [idx for group in zip(*by_class, strict=False) for idx in group][:size]
    if len(picked) < size:
        rest = np.setdiff1d(order, picked, assume_unique=True)
        picked.extend(rest[: size - len(picked)].tolist())
    chosen = np.array(sorted(picked))
    return Split(labels=split.labels[chosen],
                 images=None if split.images is None else split.images[chosen],
                 paths=None if split.paths is None else split.paths[chosen])
