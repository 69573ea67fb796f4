"""Bulk prediction: many image files, one loaded model, batched inference.

``python -m runtime predict`` runs through here for one file or a hundred thousand. Inputs
are files, folders (searched recursively for image suffixes; hidden names skipped) and
glob patterns; ``**`` and folders follow directory symlinks, each real directory once and
never one leading back up to the folder named, so a link loop ends. Reader threads decode
and prepare the next batches while the engine runs the current one (file reads and
OpenCV's decoding release the GIL). A file that cannot be read, decoded or framed (a FIFO,
a corrupt or 1×1 image) is reported and counted, and the run goes on.
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import stat
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from runtime.classifier import Classifier, Prediction, check_framed_roi
from runtime.errors import EdgeCNNError, ImageError, first_line
from runtime.files import atomic_path, check_outputs
from runtime.preprocess import IMAGE_SUFFIXES, read_image
from runtime.walk import glob_files, images_under, is_image_name

BATCH = 64                         # images per engine call
READERS = min(4, os.cpu_count() or 1)  # threads that read, decode and prepare batches
OUT_SUFFIXES = (".csv", ".jsonl")
NO_DIGIT = "no digit found"
SKIPPED = "skipped"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One input file's result: predictions best first, or why there are none."""

    path: str
    predictions: list[Prediction]
    status: str          # "ok", NO_DIGIT, or "skipped: <why>"
    ms: float = 0.0      # this image's share of its batch's engine time


def expand(inputs: Sequence[str]) -> list[str]:
    """Files as given; folders and glob patterns → their image files, sorted, each once.

    An input that names nothing (no such file or folder, a pattern that matches no image)
    is the user's typo: an error before any work.
    """
    found: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            matches = images_under(path)
        elif path.exists() or path.is_symlink():
            matches = [text]
        elif glob.has_magic(text):
            matches = sorted(m for m in glob_files(text)
                             if is_image_name(m) and not Path(m).is_dir())
        else:
            raise ImageError(f"cannot read image {text}: no such file or folder")
        if not matches:
            raise ImageError(f"{text}: no image files ({', '.join(IMAGE_SUFFIXES[:4])}, … by "
                             f"suffix) {'match' if glob.has_magic(text) else 'in it'}")
        found.extend(matches)
    seen: set[str] = set()
    return [p for p in found if not (os.path.realpath(p) in seen
                                     or seen.add(os.path.realpath(p)))]  # type: ignore[func-returns-value]


def predict_files(classifier: Classifier, paths: Sequence[str], top_k: int = 3,
                  roi: Sequence[int] | None = None, batch: int = BATCH,
                  readers: int = READERS, *, framed: bool | None = None) -> Iterator[Row]:
    """A :class:`Row` per path, in order, ``batch`` images per engine call. Each image is
    framed (or not) as :meth:`Classifier.predict` would, with the same ``roi`` and
    ``framed``."""
    check_framed_roi(framed, roi)  # a contradiction in the call, not in one file

    def load(chunk: Sequence[str]) -> list[np.ndarray | str | None]:
        return [_model_pixels(classifier, path, framed, roi) for path in chunk]

    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    ahead = max(1, readers) + 1  # every reader busy while the engine runs a batch
    with ThreadPoolExecutor(max_workers=max(1, readers)) as pool:
        pending: deque[Future] = deque(pool.submit(load, c) for c in chunks[:ahead])
        for index, chunk in enumerate(chunks):
            loaded = pending.popleft().result()
            if index + ahead < len(chunks):
                pending.append(pool.submit(load, chunks[index + ahead]))
            yield from _classify(classifier, chunk, loaded, top_k)


def _model_pixels(classifier: Classifier, path: str, framed: bool | None,
                  roi: Sequence[int] | None) -> np.ndarray | str | None:
    """One file's model input, None when a digit model sees no ink, or why it is skipped.

    What a bad file can raise becomes its row's reason and the run goes on: ImageError
    while reading (``read_image`` turns every read and decode failure into one), ImageError
    (an image too small to frame) and cv2.error while framing. Anything else is a bug and
    stops the run.
    """
    reason = _not_regular(path)
    if reason:
        return reason
    try:
        image = read_image(path)
    except ImageError as exc:
        return str(exc)
    try:
        return classifier.model_pixels(image, framed=framed, roi=roi)
    except ImageError as exc:
        return str(exc)
    except cv2.error as exc:
        log.debug("framing %s failed", path, exc_info=True)
        return f"OpenCV failed on {path}: {first_line(exc)}"


def _not_regular(path: str) -> str | None:
    """Why ``path`` (its target, for a link) is not read, or None for a regular file: a
    FIFO blocks the read until a writer comes, a device never ends."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # read_image says why (missing, a broken link, no permission)
    return None if stat.S_ISREG(mode) else f"{path} is not a regular file"


def _classify(classifier: Classifier, paths: Sequence[str],
              loaded: list[np.ndarray | str | None], top_k: int) -> Iterator[Row]:
    ready = [i for i, item in enumerate(loaded) if isinstance(item, np.ndarray)]
    probs: np.ndarray = np.zeros((0, classifier.spec.num_classes), np.float32)
    ms = 0.0
    if ready:
        started = time.perf_counter()
        probs = classifier.probabilities(np.stack([loaded[i] for i in ready]))  # type: ignore[misc]
        ms = (time.perf_counter() - started) * 1e3 / len(ready)
    rows = dict(zip(ready, probs, strict=True))
    for i, (path, item) in enumerate(zip(paths, loaded, strict=True)):
        if i in rows:
            yield Row(path, classifier.top(rows[i], top_k), "ok", ms)
        elif item is None:
            yield Row(path, [], NO_DIGIT)
        else:
            yield Row(path, [], f"{SKIPPED}: {item}")


class RowWriter:
    """Rows to ``.csv`` (path, label, probability, then label_2, probability_2, … up to the
    top-k, and status) or ``.jsonl`` (one object per file)."""

    def __init__(self, handle: IO[str], kind: str, top_k: int) -> None:
        self.kind, self.top_k = kind, top_k
        self.handle = handle
        if kind == ".csv":
            self.csv = csv.writer(handle)
            extra = [f"{name}_{k}" for k in range(2, top_k + 1)
                     for name in ("label", "probability")]
            self.csv.writerow(["path", "label", "probability", *extra, "status"])

    def write(self, row: Row) -> None:
        if self.kind == ".jsonl":
            self.handle.write(json.dumps(as_record(row)) + "\n")
            return
        cells: list[str] = [row.path]
        for k in range(self.top_k):
            p = row.predictions[k] if k < len(row.predictions) else None
            cells += [p.label, f"{p.probability:.6f}"] if p else ["", ""]
        self.csv.writerow([*cells, row.status])


def as_record(row: Row) -> dict:
    return {"image": row.path, "status": row.status, "ms": round(row.ms, 4),
            "predictions": [{"label": p.label, "probability": round(p.probability, 6)}
                            for p in row.predictions]}


def check_output(path: str, overwrite: bool = False) -> str:
    """Refuse a bad ``--out`` before any work; returns its kind (suffix)."""
    kind = Path(path).suffix.lower()
    if kind not in OUT_SUFFIXES:
        raise EdgeCNNError(f"--out {path}: use a .csv or .jsonl file name")
    check_outputs({"--out": path}, {}, overwrite)
    return kind


@contextmanager
def open_output(path: str, top_k: int, overwrite: bool = False) -> Iterator[RowWriter]:
    """A writer whose file appears under ``path`` only when the run completes."""
    target, kind = Path(path), check_output(path, overwrite)
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        yield RowWriter(handle, kind, top_k)
