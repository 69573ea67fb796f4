"""Pictures people would rather look at than JSON: confusion matrix, the most-confused pairs
and training curves. Every figure has a fixed maximum size, whatever the number of classes.

Each function takes plain arrays, so it can be called once per data source.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers, CI or a Pi over SSH
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import PowerNorm

from runtime.files import atomic_path
from train.evaluate import confusions, short

DPI = 110
MAX_INCHES = 12.0           # no side of a figure exceeds this: 1320 px, for 10 or 10,000 classes
CELL_TEXT_MAX_CLASSES = 30  # counts are written in the cells up to this many classes
TICK_MAX_CLASSES = 60       # class names label the axes up to this many
MAX_CELLS = 1000            # above this many classes, neighbouring classes share a cell
PAIRS_SHOWN = 25            # bars in the most-confused-pairs chart
PAIR_NAME_WIDTH = 24        # characters of each class name in that chart
MISSING_GLYPH = r"Glyph \d+ .* missing from font"


def plot_confusion(labels: np.ndarray, predicted: np.ndarray, label_names: tuple[str, ...],
                   path: Path, title: str = "Confusion matrix (test split)") -> None:
    """Counts with names for a few classes; above CELL_TEXT_MAX_CLASSES, an image of the
    row-normalised matrix (the share of each true class predicted as each class)."""
    n = len(label_names)
    group = math.ceil(n / MAX_CELLS)  # classes per cell: memory stays ≤ MAX_CELLS² cells
    cells = math.ceil(n / group)
    matrix = np.zeros((cells, cells))
    np.add.at(matrix, (labels // group, predicted // group), 1)
    side = min(MAX_INCHES, max(4.0, 0.45 * n + 2))
    fig, ax = plt.subplots(figsize=(side, side))
    if n <= CELL_TEXT_MAX_CLASSES:
        ax.imshow(matrix, cmap="Blues")
        threshold = matrix.max() / 2 if matrix.size else 0
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if value > threshold else "black")
    else:
        totals = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        image = ax.imshow(shares, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1),
                          interpolation="nearest" if cells <= 200 else "antialiased")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= TICK_MAX_CLASSES:
        names = [short(name, 12) for name in label_names]
        ax.set(xticks=range(n), yticks=range(n))
        ax.set_xticklabels(names, rotation=45 if max(map(len, names)) > 2 else 0,
                           ha="right" if max(map(len, names)) > 2 else "center",
                           fontsize=8 if n > CELL_TEXT_MAX_CLASSES else None)
        ax.set_yticklabels(names, fontsize=8 if n > CELL_TEXT_MAX_CLASSES else None)
        ax.set(xlabel="predicted", ylabel="true")
    else:
        per = f" ({group} classes per cell)" if group > 1 else ""
        ax.set(xlabel=f"predicted class index{per}", ylabel=f"true class index{per}")
        ticks = ax.get_xticks()
        ax.set_xticks(ticks[(ticks >= 0) & (ticks < cells)])
        ax.set_yticks(ticks[(ticks >= 0) & (ticks < cells)])
        ax.set_xticklabels([f"{int(t * group)}" for t in ax.get_xticks()])
        ax.set_yticklabels([f"{int(t * group)}" for t in ax.get_yticks()])
    ax.set_title(title if n <= CELL_TEXT_MAX_CLASSES else
                 f"{title}: {n} classes; names in confused_pairs.png and metrics.json")
    _save(fig, path)


def plot_confused_pairs(labels: np.ndarray, predicted: np.ndarray,
                        label_names: tuple[str, ...], path: Path,
                        title: str = "Most-confused pairs (test split)") -> None:
    """A bar per (true → predicted) pair, most frequent first: at many classes this says more
    than the matrix does."""
    pairs = confusions(labels, predicted, len(label_names))[:PAIRS_SHOWN]
    fig, ax = plt.subplots(figsize=(9, min(MAX_INCHES, 1.5 + 0.3 * max(len(pairs), 3))))
    if pairs:
        names = [f"{short(label_names[t], PAIR_NAME_WIDTH)} → "
                 f"{short(label_names[p], PAIR_NAME_WIDTH)}" for t, p, _ in pairs]
        counts = [count for _, _, count in pairs]
        rows = np.arange(len(pairs))
        ax.barh(rows, counts, color="tab:blue")
        ax.set_yticks(rows, names, fontsize=8)
        ax.invert_yaxis()
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(xlabel="test images (true → predicted)")
        wrong = int((labels != predicted).sum())
        shown = sum(counts)
        ax.set_title(f"{title}: {shown} of {wrong} errors")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no test image was misclassified", ha="center", va="center")
        ax.set_title(title)
    _save(fig, path)


def plot_history(history: dict[str, list[float]], path: Path, best_epoch: int) -> None:
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((loss_ax, "loss", "loss"), (acc_ax, "accuracy", "accuracy")):
        ax.plot(epochs, history[key], label=f"train {label}")
        ax.plot(epochs, history[f"val_{key}"], label=f"validation {label}")
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept (epoch {best_epoch})")
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Training curves (train split is augmented)")
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    """Lay out and write ``fig``. A class name in a script the installed fonts lack (狗 with
    DejaVu Sans only) is drawn as boxes, without matplotlib's warning per glyph and call on
    stderr, which is kept for errors."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=MISSING_GLYPH, category=UserWarning)
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI)  # no bbox="tight": the pixel size is the figure size
    plt.close(fig)
