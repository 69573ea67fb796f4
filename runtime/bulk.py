"""Bulk prediction: many image files, one loaded model, batched inference.

``python -m runtime predict`` runs through here for one file or a hundred thousand. Inputs
are files, folders (searched recursively for image suffixes; hidden names skipped) and
glob patterns. Reader threads decode and prepare the next batches while the engine runs
the current one (file reads and OpenCV's decoding release the GIL). A file that cannot be read or
decoded is reported and counted, and the run goes on.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from runtime.classifier import Classifier, Prediction, check_framed_roi
from runtime.errors import EdgeCNNError, ImageError
from runtime.files import atomic_path
from runtime.preprocess import IMAGE_SUFFIXES, read_image

BATCH = 64                         # images per engine call
READERS = min(4, os.cpu_count() or 1)  # threads that read, decode and prepare batches
OUT_SUFFIXES = (".csv", ".jsonl")
NO_DIGIT = "no digit found"
SKIPPED = "skipped"


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
            matches = _images_under(path)
        elif path.exists() or path.is_symlink():
            matches = [text]
        elif glob.has_magic(text):
            matches = sorted(m for m in glob.glob(text, recursive=True)
                             if _is_image_name(m) and not Path(m).is_dir())
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
        loaded: list[np.ndarray | str | None] = []
        for path in chunk:
            try:
                loaded.append(classifier.model_pixels(read_image(path), framed=framed, roi=roi))
            except ImageError as exc:
                loaded.append(str(exc))  # unreadable: reported in its row, the run goes on
        return loaded

    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    ahead = max(1, readers) + 1  # every reader busy while the engine runs a batch
    with ThreadPoolExecutor(max_workers=max(1, readers)) as pool:
        pending: deque[Future] = deque(pool.submit(load, c) for c in chunks[:ahead])
        for index, chunk in enumerate(chunks):
            loaded = pending.popleft().result()
            if index + ahead < len(chunks):
                pending.append(pool.submit(load, chunks[index + ahead]))
            yield from _classify(classifier, chunk, loaded, top_k)


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


@contextmanager
def open_output(path: str, top_k: int, overwrite: bool = False) -> Iterator[RowWriter]:
    """A writer whose file appears under ``path`` only when the run completes."""
    target = Path(path)
    kind = target.suffix.lower()
    if kind not in OUT_SUFFIXES:
        raise EdgeCNNError(f"--out {path}: use a .csv or .jsonl file name")
    if target.exists() and not overwrite:
        raise EdgeCNNError(f"--out {path} exists; pass --overwrite to replace it")
    if target.is_dir():
        raise EdgeCNNError(f"--out {path} is a folder; name a .csv or .jsonl file")
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        yield RowWriter(handle, kind, top_k)


def _images_under(folder: Path) -> list[str]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, f) for f in sorted(files)
                  if not f.startswith(".") and _is_image_name(f)]
    return found


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
