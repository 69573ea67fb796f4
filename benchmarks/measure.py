"""The warm hot path: accuracy, batch-1 latency (Classifier and raw engine), batch throughput.

Batch-1 latency times what a caller pays per image holding prepared uint8 pixels,
``Classifier.probabilities(pixels[None])``; the raw engine call (``backend.run`` on an input
already quantized and cast) alternates with it call for call, so the runtime's own overhead
shows as a paired difference. Each
round times every candidate once, in a rotating order; a round yields its percentiles and the
report gives the median over rounds.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import runtime
from benchmarks.stats import median_of_rounds, percentiles, schedule, spread, throughput
from runtime.classifier import Classifier
from runtime.preprocess import prepare_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    rounds: int          # interleaved rounds; figures are medians over rounds
    iterations: int      # batch-1 calls per candidate per round (Classifier and engine each)
    batches: int         # batch calls per candidate per round, for throughput
    warmup: int          # untimed batch-1 calls per candidate before the first round
    repeats: int         # fresh processes per model for cold start and peak memory
    frames: int          # 640×480 frames per round for the pipeline figure
    batch: int = 64      # throughput batch size
    inputs: int = 64     # distinct eval images cycled through by the batch-1 loops


MODES = {
    "full": Settings(rounds=7, iterations=2000, batches=30, warmup=300, repeats=5, frames=60),
    "quick": Settings(rounds=3, iterations=200, batches=5, warmup=50, repeats=1, frames=15),
}


@dataclass
class Candidate:
    """One thing to measure: an exported file through the runtime, or the Keras reference."""

    file: str
    backend: str
    precision: str
    path: Path
    probabilities: Callable[[np.ndarray], np.ndarray]   # the caller's path: uint8 → probs
    engine: Callable[[np.ndarray], Any]                 # the bare engine call
    engine_input: Callable[[np.ndarray], np.ndarray]    # uint8 → what ``engine`` takes
    classifier: Classifier | None = None
    results: dict[str, Any] = field(default_factory=dict)
    # eval pixels → this file's model input, outside the timed calls: grey for an RGB-input
    # file (model.int8.app.tflite) the way the runtime's preprocessing converts it
    own_pixels: Callable[[np.ndarray], np.ndarray] = lambda pixels: pixels

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def runtime_candidate(path: Path, threads: int | None) -> Candidate:
    classifier = runtime.load(path, threads=threads)
    return Candidate(path.name, classifier.backend.name, classifier.spec.precision, path,
                     classifier.probabilities, classifier.backend.run,
                     lambda pixels: model_input(classifier, pixels), classifier,
                     own_pixels=lambda pixels: prepare_batch(pixels, classifier.spec))


def keras_candidate(path: Path, reference: Any) -> Candidate:
    return Candidate(path.name, "keras", "float32", path, reference.probabilities,
                     reference.engine, reference.engine_input)


def model_input(classifier: Classifier, pixels: np.ndarray) -> np.ndarray:
    """Exactly what the classifier hands its engine for ``pixels``."""
    return np.ascontiguousarray(classifier.encode(pixels))


def predict_all(candidate: Candidate, images: np.ndarray, chunk: int = 256) -> np.ndarray:
    return np.concatenate([candidate.probabilities(images[i:i + chunk])
                           for i in range(0, len(images), chunk)])


@contextmanager
def gc_paused() -> Iterator[None]:
    """No garbage collection inside timed loops (as ``timeit`` does): a collection is the
    interpreter's cost, not the model's, and lands on whichever call happens to trigger it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def time_calls(call: Callable[[np.ndarray], Any], inputs: Sequence[np.ndarray],
               iterations: int) -> np.ndarray:
    """Per-call wall time in µs of ``iterations`` calls cycling through ``inputs``."""
    return time_paired([(call, inputs)], iterations)[0]


def time_paired(calls: Sequence[tuple[Callable[[np.ndarray], Any], Sequence[np.ndarray]]],
                iterations: int) -> list[np.ndarray]:
    """Per-call µs of several calls made in turn (a, b, a, b, …), ``iterations`` each.

    Alternating call by call is a paired measurement: a neighbour's burst lands on the
    Classifier call and the engine call alike, so their difference (the runtime's
    overhead) survives it. One untimed call each first: LiteRT reallocates its tensors
    when the batch size changes (batch 1 ↔ 64 between blocks), a one-off cost.
    """
    elapsed = np.empty((len(calls), iterations), dtype=np.int64)
    clock = time.perf_counter_ns
    for call, inputs in calls:
        call(inputs[0])
    with gc_paused():
        for i in range(iterations):
            for k, (call, inputs) in enumerate(calls):
                x = inputs[i % len(inputs)]
                start = clock()
                call(x)
                elapsed[k, i] = clock() - start
    return list(elapsed / 1e3)


def batch_of(images: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` images, tiled if the eval set is smaller."""
    reps = -(-size // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:size])


def hot_path(candidates: Sequence[Candidate], images: np.ndarray, settings: Settings,
             progress: Callable[[str], None] = log.info) -> None:
    """Warm up, then interleaved rounds; fills ``candidate.results`` with medians of rounds."""
    count = min(settings.inputs, len(images))
    own = {v.file: v.own_pixels(images[:max(count, settings.batch)]) for v in candidates}
    singles = {f: [pixels[i][None] for i in range(count)] for f, pixels in own.items()}
    batches = {f: batch_of(pixels, settings.batch) for f, pixels in own.items()}
    prepared = {v.file: ([v.engine_input(x) for x in singles[v.file]],
                         v.engine_input(batches[v.file])) for v in candidates}
    progress(f"warm-up: {settings.warmup} calls per candidate, then {settings.rounds} rounds of "
             f"{settings.iterations} batch-1 calls (Classifier and engine) and "
             f"{settings.batches} batches of {settings.batch}")
    for v in candidates:
        time_paired([(v.probabilities, singles[v.file]), (v.engine, prepared[v.file][0])],
                    settings.warmup)
        time_calls(v.probabilities, [batches[v.file]], max(2, settings.batches // 5))
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {
        v.file: {"classifier": [], "engine": [], "overhead": [], "batch": []} for v in candidates}
    for r, order in enumerate(schedule(len(candidates), settings.rounds)):
        started = time.perf_counter()
        for i in order:
            v = candidates[i]
            own = rounds[v.file]
            classifier_us, engine_us = time_paired(
                [(v.probabilities, singles[v.file]), (v.engine, prepared[v.file][0])],
                settings.iterations)
            own["classifier"].append(percentiles(classifier_us))
            own["engine"].append(percentiles(engine_us))
            own["overhead"].append({"p50": float(np.median(classifier_us - engine_us))})
            batch_us = time_calls(v.probabilities, [batches[v.file]], settings.batches)
            own["batch"].append({"p50": float(np.median(batch_us))})
        progress(f"round {r + 1}/{settings.rounds}: {len(candidates)} candidates in "
                 f"{time.perf_counter() - started:.1f} s")
    for v in candidates:
        own = rounds[v.file]
        batch_p50 = median_of_rounds(own["batch"])["p50"]
        v.results.update({
            "latency_us": median_of_rounds(own["classifier"]),
            "latency_round_spread": spread([r["p50"] for r in own["classifier"]]),
            "engine_latency_us": median_of_rounds(own["engine"]),
            "batch_latency_us": batch_p50,
            "throughput_ips": throughput(settings.batch, batch_p50 / 1e6),
            # the median of paired per-call differences, not a difference of medians
            "overhead_us": median_of_rounds(own["overhead"])["p50"],
            "rounds": {kind: [r["p50"] for r in values] for kind, values in own.items()},
        })


def accuracy(candidates: Sequence[Candidate], images: np.ndarray, labels: np.ndarray,
             reference: Candidate) -> None:
    """Accuracy vs labels, and change / top-1 agreement vs the reference candidate."""
    predicted = {v.file: predict_all(v, v.own_pixels(images)).argmax(1) for v in candidates}
    ref_top1 = predicted[reference.file]
    ref_acc = float((ref_top1 == labels).mean())
    for v in candidates:
        acc = float((predicted[v.file] == labels).mean())
        v.results.update({"accuracy": acc, "accuracy_change_pp": (acc - ref_acc) * 100,
                          "agreement": float((predicted[v.file] == ref_top1).mean())})
