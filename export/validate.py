"""Validation is part of export: every file is run by the device runtime on the held-out
check set and compared with the Keras model before it may take its final name.

Float32 files must match Keras probabilities within ``atol``. Reduced-precision files must
neither lose more than ``max_drop`` percentage points of accuracy nor disagree with Keras's
top-1 on more than ``max_drop`` percent of the images: a file can keep the accuracy while
answering differently (errors that cancel out), and users must be able to trust each answer.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import runtime
from runtime.classifier import softmax
from runtime.preprocess import to_model_values
from runtime.spec import ModelSpec

FLOAT_ATOL = 1e-4
MAX_DROP_PP = 1.0


@dataclass(frozen=True)
class Reference:
    """The Keras model's answers on the check set: what every file is compared with."""

    probs: np.ndarray
    labels: np.ndarray | None

    @property
    def accuracy(self) -> float | None:
        return None if self.labels is None else float((self.probs.argmax(1) == self.labels).mean())


@dataclass
class Check:
    file: str
    format: str
    precision: str
    backend: str
    size_bytes: int
    accuracy: float | None
    accuracy_change_pp: float | None
    agreement: float
    max_abs_diff: float | None   # None when the file produced NaN or inf
    mean_abs_diff: float | None
    criterion: str
    passed: bool
    detail: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def not_built(cls, file: str, fmt: str, precision: str, reason: str) -> Check:
        return cls(file=file, format=fmt, precision=precision, backend="-", size_bytes=0,
                   accuracy=None, accuracy_change_pp=None, agreement=0.0, max_abs_diff=None,
                   mean_abs_diff=None, criterion="built", passed=False,
                   detail=f"not built: {reason}", seconds=0.0)


def model_outputs(model: Any, values: np.ndarray, batch: int = 256) -> np.ndarray:
    """The Keras model's raw outputs for model values, in batches. Direct calls, not
    ``predict``, which retraces for every new model."""
    return np.concatenate([np.asarray(model(values[i:i + batch], training=False))
                           for i in range(0, len(values), batch)])


def keras_reference(model: Any, spec: ModelSpec, images: np.ndarray,
                    labels: np.ndarray | None) -> Reference:
    probs = model_outputs(model, to_model_values(images, spec))
    if spec.output == "logits":
        probs = softmax(probs)
    return Reference(probs.astype(np.float32), labels)


def validate(path: Path, fmt: str, precision: str, reference: Reference, images: np.ndarray,
             atol: float = FLOAT_ATOL, max_drop: float = MAX_DROP_PP) -> Check:
    """Load ``path`` with the runtime users will run and measure how far it is from Keras."""
    started = time.perf_counter()
    classifier = runtime.load(path, threads=1)
    probs = classifier.probabilities(images)
    diff = np.abs(probs - reference.probs)
    agreement = float((probs.argmax(1) == reference.probs.argmax(1)).mean())
    accuracy = change = None
    if reference.labels is not None:
        accuracy = float((probs.argmax(1) == reference.labels).mean())
        change = (accuracy - reference.accuracy) * 100  # type: ignore[operator]
    finite = bool(np.isfinite(probs).all())
    if not finite:
        criterion = "finite outputs"
        passed, detail = False, "the file produces NaN or inf probabilities"
    elif precision == "float32":
        criterion = f"max |Δp| ≤ {atol:g}"
        passed = float(diff.max()) <= atol
        detail = "all probabilities within tolerance" if passed else \
            f"max |Δp| {diff.max():.2e} exceeds {atol:g}"
    elif change is not None:
        disagreement = (1 - agreement) * 100
        criterion = f"accuracy drop, disagreement ≤ {max_drop:g} pp"
        passed = -change <= max_drop and disagreement <= max_drop
        detail = f"accuracy {change:+.2f} pp vs Keras, top-1 agreement {agreement * 100:.2f} %"
    else:
        criterion = f"disagreement ≤ {max_drop:g} pp (no labels)"
        passed = (1 - agreement) * 100 <= max_drop
        detail = f"top-1 agreement {agreement * 100:.2f} %"
    return Check(file=path.name, format=fmt, precision=precision, backend=classifier.backend.name,
                 size_bytes=path.stat().st_size, accuracy=accuracy, accuracy_change_pp=change,
                 agreement=agreement, max_abs_diff=float(diff.max()) if finite else None,
                 mean_abs_diff=float(diff.mean()) if finite else None, criterion=criterion,
                 passed=passed,
                 detail=detail, seconds=time.perf_counter() - started)
