"""The memory guard: what a run will hold, estimated before TensorFlow starts, and refused in
one line when it cannot fit; then the peak each step did reach, for metrics.json.

The estimate counts what grows with the options (images held in memory, the model and its
optimizer state, one batch's activations, per-class outputs) plus a fixed allowance for
TensorFlow itself. It is deliberately rough: its job is to stop a run that would be killed
hours later, not to predict the last megabyte.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from runtime.errors import EdgeCNNError
from runtime.memory import available_bytes, peak_rss_mb
from train.config import CONVS_PER_BLOCK, FILTERS, HIDDEN_UNITS

log = logging.getLogger(__name__)
MB = 2**20
TENSORFLOW_BYTES = 700 * MB  # measured: ~650 MiB of every run's peak is TensorFlow itself
USABLE_SHARE = 0.9           # of the memory available at start, the most a run may plan on
MODEL_COPIES = 6             # weights, two Adam moments, gradients, best weights, saved copy
ACTIVATION_COPIES = 4        # forward output, its gradient, augmentation in and out
FLOAT = 4                    # bytes per float32
CONFUSION_CELLS = 1000**2    # the confusion image's cells (train.plots.MAX_CELLS squared)
PER_CLASS_BYTES = 4096       # one class's rows in metrics, plots and the summary


class MemoryBudgetError(EdgeCNNError):
    """The run would need more memory than the machine has."""


@dataclass(frozen=True)
class Need:
    """One item of the estimate: what it is, its bytes, and the option that shrinks it."""

    what: str
    bytes: int
    fix: str


@dataclass(frozen=True)
class Workload:
    """What a run will hold, in the terms the estimate needs."""

    arch: str
    input_shape: tuple[int, int, int]
    classes: int
    train: int
    val: int
    test: int
    calib_size: int
    batch_size: int
    in_memory: bool          # an in-memory source: every image is prepared up front
    cache_in_memory: bool    # --cache memory: decoded training images are kept
    hidden: int = HIDDEN_UNITS  # twoconv's dense layer before the classifier (0: none)
    filters: tuple[int, int] = FILTERS  # twoconv's convolutions (dense512's one has 32)
    convs_per_block: int | None = None  # 3×3 convolutions before each pooling; None: arch's


def parameter_count(arch: str, input_shape: tuple[int, int, int], classes: int,
                    hidden: int = HIDDEN_UNITS, filters: tuple[int, int] = FILTERS,
                    convs_per_block: int | None = None) -> int:
    """Weights of :func:`train.models.build_model`, by arithmetic (no Keras: a model too big
    to build must be refused before it is built). A test keeps the two in step."""
    height, width, channels = input_shape
    first, second = filters if arch == "twoconv" else (32, 0)
    if convs_per_block is None:
        convs_per_block = CONVS_PER_BLOCK[arch]
    conv1 = 9 * channels * first + first
    shrink = 2 * convs_per_block  # each valid 3×3 convolution takes 2 off the side
    if convs_per_block == 2:
        conv1 += 9 * first * first + first
    height, width = (height - shrink) // 2, (width - shrink) // 2
    if arch == "twoconv":
        conv2 = 9 * first * second + second
        if convs_per_block == 2:
            conv2 += 9 * second * second + second
        height, width = (height - shrink) // 2, (width - shrink) // 2
        features = height * width * second
        if hidden:
            return conv1 + conv2 + features * hidden + hidden + hidden * classes + classes
        return conv1 + conv2 + features * classes + classes
    features = height * width * 32
    return conv1 + features * 512 + 512 + 512 * classes + classes


def estimate(work: Workload) -> list[Need]:
    """Every sizeable thing the run holds, largest first."""
    pixels = math.prod(work.input_shape)
    height, width, _ = work.input_shape
    images = work.train + work.val + work.test
    shape = "×".join(map(str, work.input_shape))
    weights = parameter_count(work.arch, work.input_shape, work.classes, work.hidden,
                              work.filters, work.convs_per_block)
    first = work.filters[0] if work.arch == "twoconv" else 32
    needs = [
        Need("TensorFlow itself", TENSORFLOW_BYTES, "nothing to change"),
        Need(f"the model and its optimizer state, {weights:,} weights",
             weights * FLOAT * MODEL_COPIES,
             "lower --img-size: the first dense layer grows with the input area"),
        Need(f"one batch's activations, {work.batch_size} × {height - 2}×{width - 2}×{first} "
             "float32",
             work.batch_size * (height - 2) * (width - 2) * first * FLOAT * ACTIVATION_COPIES,
             "lower --batch-size or --img-size"),
        Need(f"the test split held for eval.npz, {work.test} × {shape}", work.test * pixels,
             "lower --test-fraction or --img-size"),
        Need(f"the calibration sample, {min(work.calib_size, work.train)} × {shape}",
             min(work.calib_size, work.train) * pixels, "lower --calib-size"),
        Need(f"per-class outputs for {work.classes} classes",
             work.classes * PER_CLASS_BYTES + min(work.classes**2, CONFUSION_CELLS) * 8 * 3,
             "use fewer classes"),
    ]
    if work.in_memory:
        needs.append(Need(f"the dataset prepared in memory, {images} × {shape}", images * pixels,
                          "lower --img-size, or train from a folder (streamed from disk)"))
    if work.cache_in_memory:
        needs.append(Need(f"--cache memory, {work.train} decoded images", work.train * pixels,
                          "use --cache (on disk) instead"))
    return sorted(needs, key=lambda need: -need.bytes)


def check(work: Workload, available: int | None = None) -> int:
    """Refuse (one line naming the largest needs and their fixes) a run that cannot fit in
    the memory available now. Returns the estimate in bytes."""
    needs = estimate(work)
    total = sum(need.bytes for need in needs)
    available = available_bytes() if available is None else available
    log.debug("memory estimate %.0f MB, available %s", total / MB,
              "unknown" if available is None else f"{available / MB:.0f} MB")
    if available is not None and total > USABLE_SHARE * available:
        worst = [need for need in needs if need.fix != "nothing to change"][:2]
        detail = "; ".join(f"{need.what}: {_size(need.bytes)} ({need.fix})" for need in worst)
        raise MemoryBudgetError(f"this run would need about {_size(total)} of memory but "
                                f"{_size(available)} is available. Largest: {detail}")
    return total


def _size(count: float) -> str:
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / MB:.0f} MB"


@dataclass
class StepPeaks:
    """The process's peak resident memory at the end of each named step (a running peak,
    so each figure includes the steps before it)."""

    peaks: dict[str, float | None] = field(default_factory=dict)

    def mark(self, step: str) -> None:
        self.peaks[step] = peak_rss_mb()
        if self.peaks[step] is not None:
            log.debug("peak memory after %s: %.0f MB", step, self.peaks[step])

    def report(self, estimate_bytes: int) -> dict[str, object]:
        return {"peak_rss_mb": peak_rss_mb(), "peak_rss_mb_after": dict(self.peaks),
                "estimated_mb": round(estimate_bytes / MB)}
