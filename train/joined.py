"""Sources joined with ``+``: one dataset whose images remember the part they came from.

Parts must agree on what their images are (digits framed like MNIST, or photos) and be of
one kind (in memory, or image folders). Label sets are united by name, so ``0``–``9`` from
MNIST and from printed fonts are the same classes. An image that an earlier part already
holds is dropped from the later one: the two copies could land in different splits, and the
test would then score images the model trained on (``mnist5k+mnist``: Keras's MNIST holds all
of mnist5k's digits).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import cv2
import numpy as np

from train.errors import DataError
from train.sources import ArraySource, FolderSource

log = logging.getLogger(__name__)


def join_sources(parts: list[ArraySource | FolderSource],
                 names: list[str]) -> ArraySource | FolderSource:
    """One source holding every image of ``parts`` (named ``names`` in reports)."""
    framings = {part.framing for part in parts}
    if len(framings) > 1:
        kinds = ", ".join(f"{n} ({p.framing})" for n, p in zip(names, parts, strict=True))
        raise DataError(f"--data {'+'.join(names)}: the parts are different kinds of image "
                        f"({kinds}); join digit sets with digit sets, photos with photos")
    in_memory = [isinstance(part, ArraySource) for part in parts]
    if any(in_memory) and not all(in_memory):
        raise DataError(f"--data {'+'.join(names)}: built-in or .npz sets cannot be joined "
                        "with image folders; export the set to a folder, or join folders")
    if all(in_memory):
        parts = _without_repeats(parts, names)
    label_names = _united_labels(parts)
    labels = np.concatenate([_relabel(part, label_names) for part in parts])
    which = np.concatenate([np.full(len(part.labels), name) for part, name in
                            zip(parts, names, strict=True)])
    name = "+".join(part.name for part in parts)
    if not all(in_memory):
        folders = [p for p in parts if isinstance(p, FolderSource)]
        return FolderSource(name, np.concatenate([p.paths for p in folders]), labels,
                            label_names, framings.pop(),
                            unused=tuple(u for p in folders for u in p.unused), parts=which)
    arrays = [p for p in parts if isinstance(p, ArraySource)]
    groups = None
    if any(p.groups is not None for p in arrays):
        groups = np.concatenate([p.groups.astype(str) if p.groups is not None
                                 else np.full(len(p.labels), "") for p in arrays])
    return ArraySource(name, _stacked([p.images for p in arrays]), labels, label_names,
                       framings.pop(), parts=which, groups=groups)


def image_keys(images: np.ndarray) -> list[bytes]:
    """One short key per image, equal for images of equal shape and pixels."""
    return [hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=16).digest()
            for image in images]


def _without_repeats(parts: list[ArraySource], names: list[str]) -> list[ArraySource]:
    """``parts`` less every image pixel-identical to one of an earlier part (logged)."""
    seen: dict[bytes, str] = {}
    kept = []
    for part, name in zip(parts, names, strict=True):
        keys = image_keys(part.images)
        repeats = np.array([key in seen for key in keys], bool)
        if repeats.any():
            earlier = sorted({seen[key] for key, again in zip(keys, repeats, strict=True)
                              if again})
            if repeats.all():
                raise DataError(f"--data {'+'.join(names)}: every image of {name} is also in "
                                f"{', '.join(earlier)}; join each set once")
            log.info("--data: %d images of %s are also in %s: dropped from %s, so that no "
                     "image is in two splits", repeats.sum(), name, ", ".join(earlier), name)
            keep = ~repeats
            part = dataclasses.replace(
                part, images=part.images[keep], labels=part.labels[keep],
                groups=None if part.groups is None else part.groups[keep])
            keys = [key for key, again in zip(keys, repeats, strict=True) if not again]
        seen.update(dict.fromkeys(keys, name))
        kept.append(part)
    return kept


def _united_labels(parts: list[ArraySource | FolderSource]) -> tuple[str, ...]:
    """Every part's class names, each once, in order of first appearance."""
    names: dict[str, None] = {}
    for part in parts:
        names.update(dict.fromkeys(part.label_names))
    return tuple(names)


def _relabel(part: ArraySource | FolderSource, label_names: tuple[str, ...]) -> np.ndarray:
    index = {name: i for i, name in enumerate(label_names)}
    table = np.array([index[name] for name in part.label_names], np.int64)
    return table[np.asarray(part.labels, np.int64)]


def _stacked(image_sets: list[np.ndarray]) -> np.ndarray:
    """The parts' images in one array; parts of other sizes are resized to the largest
    (bilinear), and grey parts gain channels if another part has them."""
    height = max(s.shape[1] for s in image_sets)
    width = max(s.shape[2] for s in image_sets)
    channels = max(1 if s.ndim == 3 else s.shape[3] for s in image_sets)
    out = []
    for images in image_sets:
        if images.shape[1:3] != (height, width):
            images = np.stack([cv2.resize(image, (width, height),
                                          interpolation=cv2.INTER_LINEAR) for image in images])
        if channels > 1 and (images.ndim == 3 or images.shape[3] == 1):
            images = np.repeat(images.reshape(*images.shape[:3], 1), channels, axis=3)
        out.append(images.reshape(len(images), height, width, *(() if channels == 1
                                                               else (channels,))))
    return np.concatenate(out)
