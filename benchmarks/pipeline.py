"""Per-frame cost on 640×480 camera frames: decode, then ``Classifier.classify_frame``.

The model is a small part of a camera loop; framing the digit and resizing it can cost
more than the inference. Frames are rendered the way ``demos.make_clip`` renders its clip
(held-out digits photographed by the camera model of :mod:`scenes.camera`) and kept as
JPEG, so decoding, which a camera or an MJPG stream costs too, is timed apart from the
runtime's own stages.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from benchmarks.measure import gc_paused, time_calls
from benchmarks.stats import median_of_rounds, percentiles
from runtime.classifier import Classifier
from runtime.preprocess import prepare_batch
from runtime.spec import ModelSpec

log = logging.getLogger(__name__)
WIDTH, HEIGHT = 640, 480
JPEG_QUALITY = 90
STAGES = ("decode_us", "preprocess_us", "inference_us", "other_us", "runtime_us")


def render_frames(images: np.ndarray, labels: np.ndarray, spec: ModelSpec, count: int,
                  seed: int = 0) -> tuple[list[bytes], np.ndarray]:
    """``count`` JPEG-encoded 640×480 BGR frames of eval images, and their labels."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(images), size=count, replace=count > len(images))
    frames = []
    for index in picks:
        image = images[index]
        if spec.framing == "digit":
            from scenes import camera

            frame = camera.photograph(camera.mnist_coverage(image), camera.random_shot(rng), rng)
        else:  # any other model: its own image, enlarged to camera size, with sensor noise
            bgr = np.ascontiguousarray(image[:, :, ::-1]) if image.shape[2] == 3 \
                else np.repeat(image, 3, axis=2)
            big = cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
            frame = np.clip(big + rng.normal(0, 3, big.shape), 0, 255).astype(np.uint8)
        ok, encoded = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("OpenCV cannot encode JPEG here")
        frames.append(encoded.tobytes())
    return frames, labels[picks]


def one_round(classifier: Classifier, frames: list[bytes], order: list[int]) -> dict[str, Any]:
    """Each frame once: the stages ``classify_frame`` reports, plus decode and the wall time."""
    times: dict[str, list[float]] = {stage: [] for stage in STAGES}
    tops: dict[int, int | None] = {}
    clock = time.perf_counter_ns
    with gc_paused():
        for i in order:
            start = clock()
            frame = cv2.imdecode(np.frombuffer(frames[i], np.uint8), cv2.IMREAD_COLOR)
            decoded = clock()
            result = classifier.classify_frame(frame)
            done = clock()
            runtime_us = (done - decoded) / 1e3
            pre, inf = result.preprocess_ms * 1e3, result.inference_ms * 1e3
            times["decode_us"].append((decoded - start) / 1e3)
            times["preprocess_us"].append(pre)
            times["inference_us"].append(inf)
            times["other_us"].append(max(0.0, runtime_us - pre - inf))
            times["runtime_us"].append(runtime_us)
            tops[i] = result.predictions[0].index if result.predictions else None
    summary = {stage: percentiles(values, (50, 90)) for stage, values in times.items()}
    return {"summary": summary, "tops": tops}


def measure(classifier: Classifier, images: np.ndarray, labels: np.ndarray, frames: int,
            rounds: int, progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Median over rounds of each stage's per-frame p50 and p90, for one classifier."""
    encoded, truth = render_frames(images, labels, classifier.spec, frames)
    one_round(classifier, encoded, list(range(min(5, len(encoded)))))  # warm-up
    per_round: dict[str, list[dict[str, float]]] = {stage: [] for stage in STAGES}
    tops: dict[int, int | None] = {}
    for r in range(rounds):
        order = list(range(len(encoded)))
        order = order[r % len(order):] + order[:r % len(order)]  # rotate the start, as above
        result = one_round(classifier, encoded, order)
        tops = result["tops"]
        for stage in STAGES:
            per_round[stage].append(result["summary"][stage])
        progress(f"pipeline round {r + 1}/{rounds}: {len(encoded)} frames")
    stages = {stage: median_of_rounds(values) for stage, values in per_round.items()}
    probs = classifier.probabilities(prepare_batch(images[:1], classifier.spec))[0]
    topk_us = time_calls(lambda p: classifier.top(p, 3), [probs], 500)
    found = [i for i, top in tops.items() if top is not None]
    runtime_p50 = stages["runtime_us"]["p50"]
    return {
        "file": classifier.path.name,
        "frame_size": f"{WIDTH}x{HEIGHT}",
        "frames": len(encoded),
        "rounds": rounds,
        "source": f"eval.npz photographed by scenes.camera, JPEG quality {JPEG_QUALITY}",
        "stages_us": stages,
        "topk_us": percentiles(topk_us, (50, 90)),
        # Framing (and resizing) per frame over the model's own inference, medians of the
        # same run: how much of the runtime's work is not the network.
        "framing_to_inference": (stages["preprocess_us"]["p50"] / stages["inference_us"]["p50"]
                                 if stages["inference_us"]["p50"] else None),
        "fps_runtime": 1e6 / runtime_p50 if runtime_p50 else None,
        "fps_with_decode": 1e6 / (runtime_p50 + stages["decode_us"]["p50"]),
        "ink_found": len(found),
        "frame_accuracy": float(np.mean([tops[i] == truth[i] for i in tops])) if tops else None,
    }
