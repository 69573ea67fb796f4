"""Give each validated file its self-check: a reference set the device runs (runtime.selfcheck).

The inputs come from the held-out check set. Only inputs whose top-1 leads the runner-up by
more than three times the tolerance are kept, so a device within tolerance cannot change a
top-1 and the two pass criteria never disagree. Among those, the closest calls of each
predicted class go first, round-robin over classes: they are the first to move when kernels
drift.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np

import runtime
from export import onnx as onnx_format
from export.errors import ExportError
from runtime.files import write_bytes
from runtime.metadata import with_tflite_metadata
from runtime.selfcheck import SELFCHECK_KEY, ReferenceSet, expand, self_check, tolerance_for

log = logging.getLogger(__name__)
REFERENCE_INPUTS = 32       # "a few dozen": about 1 ms to run, 6.6 KB for 28×28 digits
MAX_STORED_VALUES = 4096    # per input; larger inputs are stored smaller and enlarged exactly
SAFE_MARGIN = 3.0           # top-1 lead over the runner-up, in tolerances


def embed_reference(path: Path, images: np.ndarray) -> None:
    """Add the reference set to the validated file at ``path``; prove it passes there."""
    classifier = runtime.load(path)
    tolerance = tolerance_for(classifier.spec.precision)
    stored = shrink(images)
    chosen = choose(classifier.probabilities(expand(stored, classifier.spec)), tolerance,
                    REFERENCE_INPUTS)
    if not len(chosen):
        log.warning("      no check image has a top-1 lead of %g over the runner-up: %s gets "
                    "no self-check", SAFE_MARGIN * tolerance, path.name)
        return
    inputs = expand(stored[chosen], classifier.spec)
    probs = np.concatenate([classifier.probabilities(inputs[i:i + 1])  # batch 1, as checked
                            for i in range(len(inputs))])
    text = ReferenceSet.from_outputs(stored[chosen], probs, tolerance).to_json()
    if path.suffix == ".onnx":
        onnx_format.set_metadata(path, SELFCHECK_KEY, text)
    else:
        write_bytes(path, with_tflite_metadata(path.read_bytes(), text, SELFCHECK_KEY))
    result = self_check(runtime.load(path), fallback=False)
    if result.status != "passed":  # only a metadata write stands between the two runs
        raise ExportError(f"{path.name}: embedding the self-check changed the file: "
                          f"{result.summary()}")
    log.info("      self-check: %d reference inputs embedded (%.1f KB), %s", len(chosen),
             len(text) / 1024, result.summary().removeprefix("self-check "))


def choose(probs: np.ndarray, tolerance: float, count: int) -> np.ndarray:
    """Indices of up to ``count`` inputs with a safe top-1 lead, spread over classes."""
    if probs.shape[1] == 1:
        lead = np.ones(len(probs))
    else:
        top2 = np.sort(probs, axis=1)[:, -2:]
        lead = top2[:, 1] - top2[:, 0]
    top1 = probs.argmax(1)
    queues = []
    for label in np.unique(top1):
        members = np.flatnonzero((top1 == label) & (lead > SAFE_MARGIN * tolerance))
        queues.append(list(members[np.argsort(lead[members], kind="stable")]))
    chosen: list[int] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(int(queue.pop(0)))
    return np.array(sorted(chosen), dtype=np.int64)


def shrink(images: np.ndarray) -> np.ndarray:
    """Inputs as stored: at most ``MAX_STORED_VALUES`` values each, so a 224×224 colour
    model's reference stays tens of KB; ``runtime.selfcheck.expand`` restores the size."""
    height, width, channels = images.shape[1:]
    factor = math.sqrt(height * width * channels / MAX_STORED_VALUES)
    if factor <= 1:
        return images
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA)
                     .reshape(size[1], size[0], channels) for image in images])
