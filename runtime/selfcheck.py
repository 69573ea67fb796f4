"""The file checks itself where it runs.

Export embeds a reference set in every validated file, under its own metadata key: a few
dozen check inputs (zlib-compressed pixels) with the top-k probabilities the validated file
gave at export. On a device, :func:`self_check` runs those inputs through the file with the
engine, CPU and kernels found there and compares. A different CPU or kernel can turn a
validated file into confident garbage: under XNNPACK on an emulated ARM CPU with SME, the
int8 TFLite file scores 9.9 % (docs/raspberry-pi.md). The check finds that out in
milliseconds, and for LiteRT files tries the engine's other kernels before giving up.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from runtime.backends import LITERT_KERNELS
from runtime.errors import EdgeCNNError, SelfCheckFailed, SpecError
from runtime.spec import ModelSpec

if TYPE_CHECKING:
    from runtime.classifier import Classifier

SELFCHECK_KEY = "edgecnn.selfcheck"  # its own metadata key: the spec JSON stays small
FORMAT_VERSION = 1
TOP_K = 5  # classes kept per input: enough to see a shift, small for 1,000-class models
# Largest |Δp| a device may show on a kept class, by the file's precision. Measured between
# LiteRT's XNNPACK, built-in and reference kernels on the MNIST files: float ≤ 1.3e-6,
# dynamic-range ≤ 1.3e-5, int8 ≤ 0.016 (4 steps of its 1/256 output scale). The margins
# leave room for other CPUs and engine builds (float16 may run in half precision on ARMv8.2)
# and stay far below what a broken kernel does (|Δp| near 1, top-1 changed).
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "dynamic": 2e-2, "int8": 4e-2}
DEFAULT_TOLERANCE = 4e-2
MAX_LISTED = 5  # differences spelled out in a failure report
KERNEL_NAMES = {"xnnpack": "XNNPACK", "builtin": "LiteRT's built-in kernels",
                "reference": "LiteRT's reference kernels"}


def tolerance_for(precision: str) -> float:
    return TOLERANCE.get(precision, DEFAULT_TOLERANCE)


@dataclass(frozen=True)
class ReferenceSet:
    """Check inputs and what the validated file answered at export."""

    stored: np.ndarray         # (N, h, w, C) uint8; h×w may be smaller than the model input
    classes: np.ndarray        # (N, k) int: the top-k classes at export, best first
    probabilities: np.ndarray  # (N, k) float32: their probabilities at export
    tolerance: float

    @property
    def top1(self) -> np.ndarray:
        return self.classes[:, 0]

    def inputs(self, spec: ModelSpec) -> np.ndarray:
        """The model inputs: stored pixels, enlarged bit-exactly when stored smaller."""
        return expand(self.stored, spec)

    @classmethod
    def from_outputs(cls, stored: np.ndarray, probs: np.ndarray, tolerance: float) -> ReferenceSet:
        k = min(TOP_K, probs.shape[1])
        classes = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return cls(stored, classes, np.take_along_axis(probs, classes, 1).astype(np.float32),
                   tolerance)

    def to_json(self) -> str:
        pixels = base64.b85encode(zlib.compress(np.ascontiguousarray(self.stored).tobytes(), 9))
        return json.dumps({
            "version": FORMAT_VERSION, "shape": list(self.stored.shape),
            "pixels": pixels.decode(), "classes": self.classes.tolist(),
            "probabilities": [[round(float(p), 7) for p in row] for row in self.probabilities],
            "tolerance": self.tolerance}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, spec: ModelSpec) -> ReferenceSet:
        """Parse and check against the model; a malformed set is a SpecError."""
        try:
            data = json.loads(text)
            if data["version"] > FORMAT_VERSION:
                raise SpecError(f"the self-check reference is format {data['version']}, newer "
                                f"than this edgecnn reads ({FORMAT_VERSION}); upgrade edgecnn")
            shape = tuple(int(d) for d in data["shape"])
            raw = zlib.decompress(base64.b85decode(data["pixels"]))
            stored = np.frombuffer(raw, np.uint8).reshape(shape)
            classes = np.asarray(data["classes"], np.int64)
            probs = np.asarray(data["probabilities"], np.float32)
            tolerance = float(data["tolerance"])
        except SpecError:
            raise
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise SpecError(f"the embedded self-check reference is unreadable: {exc}") from None
        fits = (stored.ndim == 4 and stored.shape[3] == spec.channels and len(stored) > 0
                and classes.ndim == 2 and classes.shape == probs.shape
                and classes.shape[:1] == stored.shape[:1] and classes.size > 0
                and classes.min() >= 0 and classes.max() < spec.num_classes)
        if not fits:
            raise SpecError(f"the embedded self-check reference ({shape} inputs, classes "
                            f"{classes.shape}) does not fit the model's {spec.input_shape} "
                            f"inputs and {spec.num_classes} labels")
        return cls(stored, classes, probs, tolerance)


@dataclass(frozen=True)
class SelfCheckResult:
    status: str                    # "passed", "failed" or "absent" (nothing embedded)
    engine: str
    kernels: str | None            # LiteRT kernel set of this result; None for onnxruntime
    checked: int = 0
    top1_changed: int = 0
    max_diff: float = 0.0          # inf when the file produced NaN or inf
    tolerance: float = 0.0
    ms: float = 0.0
    differences: tuple[str, ...] = ()
    failed_kernels: tuple[SelfCheckResult, ...] = ()  # other kernel sets tried, which failed

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def summary(self) -> str:
        """One line for a terminal."""
        if self.status == "absent":
            return ("self-check: nothing to check (the file carries no reference set; files "
                    "exported by this edgecnn do)")
        where = self.engine + (f", {KERNEL_NAMES[self.kernels]}" if self.kernels else "")
        if self.status == "failed":
            line = f"self-check FAILED: {self._figures()} ({where})"
            if self.failed_kernels:
                line += "; " + "; ".join(f"{KERNEL_NAMES[r.kernels or '']}: {r._figures()}"
                                         for r in self.failed_kernels)
            return line + ": this file's answers cannot be trusted on this device"
        line = f"self-check passed: {self._figures()} ({where}, {self.ms:.1f} ms)"
        if self.failed_kernels:
            first = self.failed_kernels[0]
            line += (f"; {KERNEL_NAMES[first.kernels or '']} failed it ({first._figures()}), "
                     f"so this run uses {KERNEL_NAMES[self.kernels or '']}")
        return line

    def _figures(self) -> str:
        compare = "≤" if self.max_diff <= self.tolerance else ">"
        return (f"{self.checked - self.top1_changed}/{self.checked} reference inputs keep their "
                f"top-1, max |Δp| {self.max_diff:.2g} {compare} {self.tolerance:g}")

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "engine": self.engine, "kernels": self.kernels,
                "checked": self.checked, "top1_changed": self.top1_changed,
                "max_diff": self.max_diff, "tolerance": self.tolerance, "ms": self.ms,
                "differences": list(self.differences),
                "failed_kernels": [r.to_dict() for r in self.failed_kernels]}


def read_reference(classifier: Classifier) -> ReferenceSet | None:
    """The file's embedded reference set, or None; a damaged one is an error naming the file."""
    try:
        text = classifier.backend.metadata(SELFCHECK_KEY)
        return None if text is None else ReferenceSet.from_json(text, classifier.spec)
    except EdgeCNNError as exc:
        raise type(exc)(f"{classifier.path}: {exc}") from None


def self_check(classifier: Classifier, fallback: bool = True) -> SelfCheckResult:
    """Run the embedded reference set where the file runs.

    A LiteRT file that fails is tried on the engine's next kernel set (``LITERT_KERNELS``);
    when one passes, the classifier keeps it and the result says so.
    """
    reference = read_reference(classifier)
    backend = classifier.backend
    kernels = getattr(backend, "kernels", None)
    if reference is None:
        return SelfCheckResult("absent", backend.engine, kernels)
    result = compare(classifier, reference)
    if result.passed or not fallback or kernels is None:
        return result
    failed = [result]
    for other in LITERT_KERNELS[LITERT_KERNELS.index(kernels) + 1:]:
        classifier.backend = backend.with_kernels(other)  # type: ignore[attr-defined]
        trial = compare(classifier, reference)
        if trial.passed:
            return replace(trial, failed_kernels=tuple(failed))
        failed.append(trial)
    classifier.backend = backend  # nothing passed: keep the default, and say what was tried
    return replace(result, failed_kernels=tuple(failed[1:]))


def compare(classifier: Classifier, reference: ReferenceSet) -> SelfCheckResult:
    """Run the inputs as one batch (as ``predict_batch`` and evaluation do) and then one at a
    time (as a camera loop does): engines pick other kernels for each, and either can break.
    Measured: under SME, XNNPACK's dynamic-range kernels fail only on batches."""
    started = time.perf_counter()
    inputs = reference.inputs(classifier.spec)
    batch = classifier.probabilities(inputs)
    single = np.concatenate([classifier.probabilities(inputs[i:i + 1])
                             for i in range(len(inputs))])  # last: the engine stays at batch 1
    ms = (time.perf_counter() - started) * 1e3
    changed = np.zeros(len(inputs), bool)
    diff = np.zeros(len(inputs), np.float32)
    differences: list[str] = []
    labels = classifier.spec.labels
    for how, probs in (("as a batch", batch), ("one at a time", single)):
        kept = np.take_along_axis(probs, reference.classes, 1)
        gap = np.nan_to_num(np.abs(kept - reference.probabilities), nan=np.inf).max(1)
        top1 = probs.argmax(1)
        moved = top1 != reference.top1
        for i in np.flatnonzero(moved | (gap > reference.tolerance))[:MAX_LISTED]:
            differences.append(
                f"input {i} {how}: top-1 {labels[reference.top1[i]]!r} "
                f"p={reference.probabilities[i, 0]:.4f} at export, here {labels[top1[i]]!r} "
                f"p={probs[i, top1[i]]:.4f} (max |Δp| {gap[i]:.2g})")
        changed |= moved
        diff = np.maximum(diff, gap)
    backend = classifier.backend
    failed = bool(changed.any() or (diff > reference.tolerance).any())
    return SelfCheckResult(
        "failed" if failed else "passed", backend.engine, getattr(backend, "kernels", None),
        checked=len(inputs), top1_changed=int(changed.sum()), max_diff=float(diff.max()),
        tolerance=reference.tolerance, ms=ms, differences=tuple(differences[:2 * MAX_LISTED]))


def require_self_check(classifier: Classifier) -> SelfCheckResult:
    """What ``runtime predict`` and the demo run before the first image: raise on failure."""
    result = self_check(classifier)
    if not result.passed:
        raise SelfCheckFailed(f"{classifier.path.name}: {result.summary()} (see `python -m "
                              f"runtime check --model {classifier.path}`; --skip-self-check "
                              "runs it anyway)")
    return result


def expand(stored: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Stored inputs → model inputs. INTER_LINEAR_EXACT is OpenCV's bit-exact resize: every
    platform gets the same pixels, so the export-time answers still apply."""
    height, width, channels = spec.input_shape
    if stored.shape[1:3] == (height, width):
        return stored
    return np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR_EXACT)
                     .reshape(height, width, channels) for image in stored])
