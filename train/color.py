"""``--color auto``: grayscale when every image is grey, RGB otherwise, and why.

An image is grey when it has one channel, or when its colour channels agree everywhere
(a grey picture saved as RGB). The choice and its reason are logged and kept in metrics.json.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from runtime.errors import ImageError
from runtime.preprocess import read_image
from train.split import balanced_sample

log = logging.getLogger(__name__)
GREY_TOLERANCE = 6     # max channel spread still called grey: JPEG chroma rounding, not colour
FOLDER_SAMPLE = 1000   # files read to decide for a folder, spread over the classes
CHUNK = 4096           # in-memory images checked per step (bounded temporary memory)


@dataclass(frozen=True)
class ColorChoice:
    color: str       # grayscale | rgb
    requested: str   # auto | grayscale | rgb
    reason: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def is_grey(image: np.ndarray) -> bool:
    """One channel, or colour channels (alpha ignored) within GREY_TOLERANCE of each other."""
    if image.ndim == 2 or image.shape[-1] == 1:
        return True
    colour = image[..., :3].astype(np.int16)
    return int((colour.max(axis=-1) - colour.min(axis=-1)).max()) <= GREY_TOLERANCE


def choose_for_arrays(requested: str, images: np.ndarray) -> ColorChoice:
    """In-memory images, (N, H, W) or (N, H, W, C): every image is checked."""
    if requested != "auto":
        return ColorChoice(requested, requested, "--color " + requested)
    if images.ndim == 3 or images.shape[-1] == 1:
        return ColorChoice("grayscale", requested, "auto: the images have a single channel")
    for start in range(0, len(images), CHUNK):
        chunk = images[start:start + CHUNK]
        for offset, image in enumerate(chunk):
            if not is_grey(image):
                return ColorChoice("rgb", requested, f"auto: image {start + offset} is in colour")
    return ColorChoice("grayscale", requested,
                       f"auto: all {len(images)} images are grey in every channel")


def choose_for_files(requested: str, paths: np.ndarray, labels: np.ndarray,
                     seed: int) -> ColorChoice:
    """Image files: a class-balanced sample of up to FOLDER_SAMPLE is decoded and checked."""
    if requested != "auto":
        return ColorChoice(requested, requested, "--color " + requested)
    picked = balanced_sample(labels, FOLDER_SAMPLE, seed)
    single = grey = 0
    for index in picked:
        try:
            image = read_image(str(paths[index]))
        except ImageError:
            continue  # listed as skipped when training reads it
        if image.shape[2] == 1:  # read_image gives (H, W, C)
            single += 1
        elif is_grey(image):
            grey += 1
        else:
            return ColorChoice("rgb", requested, f"auto: {paths[index]} is in colour")
    if single + grey == 0:
        return ColorChoice("rgb", requested, "auto: no sampled image could be read")
    sampled = f"{single + grey} of {len(paths)} images read"
    if grey == 0:
        return ColorChoice("grayscale", requested, f"auto: single-channel images ({sampled})")
    return ColorChoice("grayscale", requested, f"auto: {single} single-channel and {grey} "
                       f"grey colour images, no colour ({sampled})")


def log_choice(choice: ColorChoice) -> None:
    log.info("colour: %s (%s)", choice.color, choice.reason)
