"""Pictures people would rather look at than JSON: confusion matrix and training curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers, CI or a Pi over SSH
import matplotlib.pyplot as plt
import numpy as np

from runtime.files import atomic_path


def plot_confusion(matrix: list[list[int]], labels: tuple[str, ...], path: Path,
                   title: str = "Confusion matrix (test split)") -> None:
    cm = np.asarray(matrix)
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted",
           ylabel="true", title=title)
    ax.set_xticklabels(labels, rotation=45 if max(map(len, labels)) > 2 else 0)
    ax.set_yticklabels(labels)
    if len(labels) <= 30:
        threshold = cm.max() / 2 if cm.size else 0
        for (i, j), value in np.ndenumerate(cm):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=8,
                    color="white" if value > threshold else "black")
    fig.tight_layout()
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
    fig.tight_layout()
    _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
