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
from train.color import ColorChoice, choose_for_arrays, choose_for_files, log_choice
from train.sources import ArraySource, FolderSource
from train.split import HeldOutGroups, SplitIndices, balanced_sample, split_by_part


@dataclass(frozen=True)
class Split:
    """One split: prepared pixels in memory, or image paths decoded while streaming."""

    labels: np.ndarray
    images: np.ndarray | None = None  # (N, H, W, C) uint8 model inputs
    paths: np.ndarray | None = None
    parts: np.ndarray | None = None   # the source part of each image (joined sources)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def streamed(self) -> bool:
        return self.images is None

    def subset(self, indices: np.ndarray) -> Split:
        return Split(labels=self.labels[indices],
                     images=None if self.images is None else self.images[indices],
                     paths=None if self.paths is None else self.paths[indices],
                     parts=None if self.parts is None else self.parts[indices])


@dataclass
class SkipLog:
    """Files not used, each with its reason: found by the folder scan, or unreadable when
    training decoded them. Listed in metrics.json."""

    entries: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, path: str, reason: str) -> None:
        with self.lock:
            self.entries.setdefault(path, reason)

    def as_list(self) -> list[dict[str, str]]:
        with self.lock:
            return [{"path": p, "reason": r} for p, r in sorted(self.entries.items())]

    def used(self, split: Split) -> int:
        """Images of ``split`` actually used: those that decoded (all, for in-memory splits).

        Exact once every file of the split has been read (training reads the whole training
        and validation splits each epoch; the test split is read whole for the bundle).
        """
        if not split.streamed:
            return len(split)
        with self.lock:
            failed = sum(1 for path in split.paths if str(path) in self.entries)  # type: ignore
        return len(split) - failed


@dataclass(frozen=True)
class DataPlan:
    """What a source becomes, decided before any pixel is prepared: the spec (colour chosen)
    and the split. The memory guard reads it before the images are resized in memory."""

    spec: ModelSpec
    color: ColorChoice
    indices: SplitIndices
    held_out: dict[str, HeldOutGroups] = field(default_factory=dict)  # per grouped part


@dataclass
class PreparedData:
    spec: ModelSpec
    train: Split
    val: Split
    test: Split
    skipped: SkipLog
    color: ColorChoice
    held_out: dict[str, HeldOutGroups] = field(default_factory=dict)
    photographs: int = 0  # camera photographs added to ``train`` while fitting (--photograph)


def plan_data(source: ArraySource | FolderSource, *, arch: str, img_size: int, color: str,
              val_fraction: float, test_fraction: float, seed: int) -> DataPlan:
    """Choose the colour, build the spec and split ``source``'s indices."""
    if isinstance(source, ArraySource):
        choice = choose_for_arrays(color, source.images)
    else:
        choice = choose_for_files(color, source.paths, source.labels, seed)
    log_choice(choice)
    spec = ModelSpec(labels=source.label_names, height=img_size, width=img_size,
                     color=choice.color, framing=source.framing, architecture=arch,
                     dataset={"name": source.name})
    # Each part of a joined source is split on its own; a part with groups (printed
    # digits' font families) holds whole groups out for the test.
    indices, held_out = split_by_part(source.labels, source.parts, source.groups,
                                      val_fraction, test_fraction, seed, source.label_names)
    return DataPlan(spec, choice, indices, held_out)


def prepare_data(source: ArraySource | FolderSource, plan: DataPlan) -> PreparedData:
    """The planned splits: in-memory images prepared once, folder images as paths."""
    skipped = SkipLog()
    if isinstance(source, ArraySource):
        whole = Split(labels=source.labels,
                      images=np.stack([prepare(image, plan.spec) for image in source.images]),
                      parts=source.parts)
    else:
        whole = Split(labels=source.labels, paths=source.paths, parts=source.parts)
        for item in source.unused:
            skipped.add(item.path, item.reason)
    return PreparedData(plan.spec, whole.subset(plan.indices.train),
                        whole.subset(plan.indices.val), whole.subset(plan.indices.test),
                        skipped, plan.color, plan.held_out)


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
    images, kept = [], []
    for i, path in enumerate(split.paths):
        image = load_file(str(path), spec, skipped)
        if image is not None:
            images.append(image)
            kept.append(i)
    empty = np.zeros((0, *spec.input_shape), np.uint8)
    kept_at = np.array(kept, np.int64)
    return Split(labels=split.labels[kept_at].astype(np.int64),
                 images=np.stack(images) if images else empty,
                 parts=None if split.parts is None else split.parts[kept_at])


def calibration_sample(split: Split, size: int, seed: int) -> Split:
    """A class-balanced random sample of training images for post-training quantization."""
    return split.subset(balanced_sample(split.labels, size, seed + 1))
