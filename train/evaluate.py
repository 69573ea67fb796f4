"""Test-split metrics: accuracy, per-class precision / recall / F1, confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def classification_metrics(labels: np.ndarray, probs: np.ndarray,
                           label_names: tuple[str, ...]) -> dict[str, Any]:
    predicted = probs.argmax(axis=1)
    classes = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0)
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(label_names, precision, recall, f1, support, strict=True)
    }
    return {
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(np.mean(f1)),
        "count": len(labels),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


def summary_table(metrics: dict[str, Any]) -> str:
    """Per-class table printed at the end of training."""
    rows = [f"{'class':>12} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}"]
    for name, m in metrics["per_class"].items():
        rows.append(f"{name[:12]:>12} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} "
                    f"{m['support']:7d}")
    rows.append(f"{'accuracy':>12} {metrics['accuracy'] * 100:8.2f}% on {metrics['count']} "
                f"test images (macro F1 {metrics['macro_f1']:.3f})")
    return "\n".join(rows)
