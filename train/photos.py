"""Options that act on one part of the training split, named ``PART=K``: ``--repeat`` (each
image K times an epoch) and ``--photograph`` (K camera photographs of each handwritten digit,
see :mod:`scenes.handwritten`). Validation and test splits are never touched."""

from __future__ import annotations

import logging

import numpy as np

from runtime.errors import EdgeCNNError
from runtime.preprocess import prepare_batch
from runtime.spec import ModelSpec
from train.config import REPEAT_LEAST, parse_part
from train.data import Split

log = logging.getLogger(__name__)


def part_option(option: str, flag: str, split: Split, whole: str,
                least: int = 1) -> tuple[np.ndarray, int]:
    """``PART=K`` → (which training images belong to PART, K ≥ ``least``). ``whole`` names the
    data when it is not joined (its one part)."""
    part, times = parse_part(option, flag, least)
    names = {whole} if split.parts is None else set(split.parts.tolist())
    if part not in names:
        raise EdgeCNNError(f"{flag} {option!r}: the data has no part {part!r} (it has "
                           f"{', '.join(sorted(names))})")
    inside = np.ones(len(split), bool) if split.parts is None else split.parts == part
    return inside, times


def repeated(split: Split, repeat: str, whole: str = "") -> Split:
    """``--repeat PART=K``: every training image of that part K times an epoch, so that part
    weighs K times as much in the loss; K = 0 trains on none of it, so its validation and
    test splits measure a model that never saw the part (an outside check)."""
    if not repeat:
        return split
    inside, times = part_option(repeat, "--repeat", split, whole, least=REPEAT_LEAST)
    return split.subset(np.repeat(np.arange(len(split)), np.where(inside, times, 1)))


def with_photographs(split: Split, spec: ModelSpec, option: str, seed: int,
                     whole: str = "") -> Split:
    """``--photograph PART=K``: ``split`` plus K framed camera photographs of each of PART's
    digits, labelled and parted like the digit they show."""
    if not option:
        return split
    inside, copies = part_option(option, "--photograph", split, whole)
    if split.images is None or spec.framing != "digit":
        raise EdgeCNNError(f"--photograph {option!r}: only digit sets held in memory (MNIST-"
                           "like ink on black, e.g. mnist5k) can be photographed")
    from scenes.handwritten import photographed

    chosen = np.flatnonzero(inside)
    photos, shows = photographed(split.images[chosen, :, :, 0], copies, seed)
    log.info("--photograph %s: %d photographs added to %d training images", option,
             len(photos), len(split))
    shown = split.subset(chosen[shows])  # the digit each photograph shows: label and part
    return Split(labels=np.concatenate([split.labels, shown.labels]),
                 images=np.concatenate([split.images, prepare_batch(photos, spec)]),
                 parts=None if split.parts is None else np.concatenate([split.parts,
                                                                        shown.parts]))
