"""Test-split metrics for any number of classes: overall figures, a per-class table, and the
confusions as a sparse list (a 1000-class matrix is a million cells, nearly all zero).

Every function takes plain arrays, so it can be called once per data source as well as for
the whole test split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

TOP_K = 5                          # the ranked classes kept per test image ("top-5 accuracy")
CONFUSION_MATRIX_MAX_CLASSES = 100  # dense matrix in metrics.json up to this many classes
SUMMARY_ALL_CLASSES = 20           # the printed summary lists every class up to this many
SUMMARY_EXTREMES = 5               # above that: this many worst and best classes
SUMMARY_PAIRS = 5                  # most-confused pairs printed
NAME_WIDTH = 20                    # characters of a class name in printed tables


def ranked_classes(probs: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """(N, min(k, classes)) class indices, most probable first; column 0 is the argmax."""
    k = min(k, probs.shape[1])
    return np.argsort(-probs, axis=1, kind="stable")[:, :k]


def confusions(labels: np.ndarray, predicted: np.ndarray,
               num_classes: int) -> list[tuple[int, int, int]]:
    """Every (true, predicted, count) with true ≠ predicted, most frequent first."""
    wrong = labels != predicted
    cells, counts = np.unique(labels[wrong].astype(np.int64) * num_classes
                              + predicted[wrong], return_counts=True)
    order = np.lexsort((cells, -counts))
    return [(int(cell // num_classes), int(cell % num_classes), int(count))
            for cell, count in zip(cells[order], counts[order], strict=True)]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Dense counts, rows true and columns predicted (call only for a few hundred classes)."""
    flat = labels.astype(np.int64) * num_classes + predicted
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes,
                                                                          num_classes)


def classification_metrics(labels: np.ndarray, ranked: np.ndarray,
                           label_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, top-k accuracy, per-class precision / recall / F1 and the confusions."""
    n = len(label_names)
    predicted = ranked[:, 0]
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(n)), zero_division=0)
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(label_names, precision, recall, f1, support, strict=True)
    }
    metrics: dict[str, Any] = {
        "accuracy": float((predicted == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(np.mean(f1)),
        "count": len(labels),
        "classes": n,
        "per_class": per_class,
        "confusions": [{"true": label_names[t], "predicted": label_names[p], "count": c}
                       for t, p, c in confusions(labels, predicted, n)],
    }
    if n > TOP_K and len(labels):  # with fewer classes, every image is in its top k
        metrics[f"top{TOP_K}_accuracy"] = float((ranked == labels[:, None]).any(axis=1).mean())
    if n <= CONFUSION_MATRIX_MAX_CLASSES:
        metrics["confusion_matrix"] = confusion_matrix(labels, predicted, n).tolist()
    return metrics


def short(name: str, width: int = NAME_WIDTH) -> str:
    """``name`` cut to ``width`` characters, the cut marked with an ellipsis."""
    return name if len(name) <= width else name[:width - 1] + "…"


def summary_table(metrics: dict[str, Any]) -> str:
    """The end-of-training summary: overall figures, then every class when there are few,
    else the worst and best classes and the most-confused pairs (all in metrics.json)."""
    per_class = metrics["per_class"]
    top = metrics.get(f"top{TOP_K}_accuracy")
    rows = [f"accuracy {metrics['accuracy'] * 100:.2f}% on {metrics['count']} test images"
            + (f", top-{TOP_K} {top * 100:.2f}%" if top is not None else "")
            + f", macro F1 {metrics['macro_f1']:.3f}, {len(per_class)} classes"]
    if len(per_class) <= SUMMARY_ALL_CLASSES:
        rows += _class_rows(list(per_class.items()))
        return "\n".join(rows)
    by_f1 = sorted(per_class.items(), key=lambda item: (item[1]["f1"], -item[1]["support"],
                                                        item[0]))
    rows.append(f"worst {SUMMARY_EXTREMES} classes by F1:")
    rows += _class_rows(by_f1[:SUMMARY_EXTREMES])
    rows.append(f"best {SUMMARY_EXTREMES} classes by F1:")
    rows += _class_rows(sorted(by_f1[-SUMMARY_EXTREMES:], key=lambda item: -item[1]["f1"]))
    pairs = metrics["confusions"][:SUMMARY_PAIRS]
    if pairs:
        rows.append("most confused (true → predicted): " + ", ".join(
            f"{short(p['true'])} → {short(p['predicted'])} ×{p['count']}" for p in pairs))
    rows.append(f"every class's figures: metrics.json (test.per_class, {len(per_class)} rows)")
    return "\n".join(rows)


def _class_rows(items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    rows = [f"{'class':>{NAME_WIDTH}} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}"]
    for name, m in items:
        rows.append(f"{short(name):>{NAME_WIDTH}} {m['precision']:9.3f} {m['recall']:7.3f} "
                    f"{m['f1']:6.3f} {m['support']:7d}")
    return rows
