"""The statistics behind every figure: small pure functions, so they are tested, not trusted.

On a shared machine a neighbour's burst can land on any one measurement. Each variant is
therefore measured in several rounds, interleaved round-robin with the others so a burst
hits all of them alike; a round is summarized by its own percentiles and the rounds by
their median, which one disturbed round cannot move.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from runtime.memory import rss_megabytes as rss_megabytes  # its home is runtime; kept here too

PERCENTILES = (50, 90, 99)


def percentiles(samples: Sequence[float] | np.ndarray,
                qs: Sequence[int] = PERCENTILES) -> dict[str, float]:
    """``{"p50": …, "p90": …, "p99": …}`` of one round (linear interpolation, numpy's default)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        raise ValueError("percentiles of an empty sample")
    return {f"p{q}": float(v) for q, v in zip(qs, np.percentile(values, qs), strict=True)}


def median(values: Sequence[float]) -> float:
    if len(values) == 0:
        raise ValueError("median of no values")
    return float(np.median(np.asarray(values, dtype=np.float64)))


def median_of_rounds(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per key, the median over rounds: e.g. the median of the rounds' p99s."""
    if not rounds:
        raise ValueError("no rounds to summarize")
    return {key: median([r[key] for r in rounds]) for key in rounds[0]}


def spread(values: Sequence[float]) -> float | None:
    """(max − min) / median across rounds: how much the machine moved under the figure."""
    centre = median(values)
    return None if centre == 0 else float((max(values) - min(values)) / centre)


def schedule(variants: int, rounds: int) -> list[list[int]]:
    """Round r visits every variant once, starting one later than round r − 1.

    Rotating the start means no variant is always first after a pause (cold caches, a CPU
    clocking up) or always last (when a neighbour tends to wake up).
    """
    if variants < 0 or rounds < 0:
        raise ValueError("variants and rounds must not be negative")
    return [[(r + i) % variants for i in range(variants)] for r in range(rounds)]


def speedup(reference: float | None, value: float | None) -> float | None:
    """How many times faster ``value`` is than ``reference`` (both are times; > 1 is faster)."""
    if reference is None or value is None or value <= 0 or reference <= 0:
        return None
    return reference / value


def ratio(before: float | None, after: float | None) -> float | None:
    """``after / before`` for the side-by-side comparison (None when either is missing)."""
    if before is None or after is None or before == 0:
        return None
    return after / before


def throughput(batch: int, seconds: float) -> float | None:
    """Images per second of a batch that took ``seconds``."""
    return None if seconds <= 0 else batch / seconds




def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ``ys`` over ``xs``: e.g. bytes gained per frame."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.size < 2 or x.size != y.size or np.ptp(x) == 0:
        raise ValueError("a line needs two or more points at different x")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)
