"""What a camera loop measures, in memory that stays flat however long it runs.

A demo left on a live stream for days must not keep a list per frame (the old per-frame
lists grew by ~145 bytes a frame: ≈ 0.7 GB a day at 57 fps). Quantiles come from a
log-bucket histogram (the DDSketch idea): every value lands in a bucket whose bounds are
within ``RELATIVE_ACCURACY`` of each other, so a median is exact to ±1 % and the number of
buckets depends only on the range of values seen, never on the number of frames.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from runtime.camera import Frame
from runtime.classifier import FrameResult

RELATIVE_ACCURACY = 0.01  # a quantile is within ±1 % of a value that was really seen
SMALLEST = 1e-6  # values at or below this (ms) count as zero: a timer's resolution, not a time
FPS_WINDOW = 30  # frames the FPS readout averages over


class RunningQuantiles:
    """Count, mean, min, max (exact) and quantiles (±1 %) of a stream of non-negative values."""

    def __init__(self, relative_accuracy: float = RELATIVE_ACCURACY) -> None:
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._log_gamma = math.log(self._gamma)
        self._buckets: dict[int, int] = {}  # bucket k holds values in (gamma^(k-1), gamma^k]
        self._zeros = 0
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if value <= SMALLEST:
            self._zeros += 1
            return
        key = math.ceil(math.log(value) / self._log_gamma)
        self._buckets[key] = self._buckets.get(key, 0) + 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def buckets(self) -> int:
        """How many buckets are in use: the memory this object holds, in entries."""
        return len(self._buckets) + 1

    def quantile(self, q: float) -> float:
        """The value below which a share ``q`` of the stream lies (NaN before any value)."""
        if not self.count:
            return math.nan
        rank = q * (self.count - 1)
        seen = self._zeros
        if rank < seen:
            return max(self.min, 0.0)
        for key in sorted(self._buckets):
            seen += self._buckets[key]
            if rank < seen:  # the bucket's centre, relative-error-wise; clamped to what was seen
                estimate = 2 * self._gamma ** key / (self._gamma + 1)
                return min(max(estimate, self.min), self.max)
        return self.max

    def median(self) -> float:
        return self.quantile(0.5)


@dataclass
class Tally:
    """A run's per-stage times, FPS and accuracy against ground truth, in bounded memory."""

    wait_ms: RunningQuantiles = field(default_factory=RunningQuantiles)
    preprocess_ms: RunningQuantiles = field(default_factory=RunningQuantiles)
    inference_ms: RunningQuantiles = field(default_factory=RunningQuantiles)
    correct: int = 0
    judged: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=FPS_WINDOW))  # frame end times

    def add(self, frame: Frame, result: FrameResult, truth: Sequence[str] | None) -> None:
        self.wait_ms.add(frame.wait_ms)
        self.preprocess_ms.add(result.preprocess_ms)
        self.inference_ms.add(result.inference_ms)
        self.recent.append(time.perf_counter())
        if truth is not None and frame.index < len(truth):
            self.judged += 1
            label = result.predictions[0].label if result.predictions else None
            self.correct += label == truth[frame.index]

    @property
    def frames(self) -> int:
        return self.wait_ms.count

    @property
    def fps(self) -> float:
        if len(self.recent) < 2:
            return 0.0
        return (len(self.recent) - 1) / max(self.recent[-1] - self.recent[0], 1e-9)
