"""Stratified, seeded train / validation / test split by index, and class-balanced samples.

Splitting indices (not images) keeps it identical for in-memory arrays and file lists, and
lets a test prove that no test index ever reaches training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import EdgeCNNError
from train.errors import DataError

MIN_PER_CLASS = 3  # one image each for training, validation and test


@dataclass(frozen=True)
class SplitIndices:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int, label_names: tuple[str, ...] | None = None) -> SplitIndices:
    """Hold out ``val_fraction`` and ``test_fraction`` of every class (at least one image each).

    ``label_names`` only serve the error message for a class that is too small.
    """
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise EdgeCNNError(f"--val-fraction {val_fraction} and --test-fraction {test_fraction} "
                           "must be in (0, 1) and sum to less than 1")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls, members in class_members(labels):
        members = rng.permutation(members)
        if len(members) < MIN_PER_CLASS:
            name = f"class {label_names[cls]!r}" if label_names else f"class {cls}"
            raise DataError(f"{name} has {len(members)} image(s); each class needs at least "
                            f"{MIN_PER_CLASS} (one each for training, validation and test)")
        n_test = max(1, round(len(members) * test_fraction))
        n_val = max(1, round(len(members) * val_fraction))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    # Shuffle across classes so that any prefix of a split is class-balanced.
    return SplitIndices(**{name: rng.permutation(np.concatenate(idx))
                           for name, idx in parts.items()})


def class_members(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class, its indices in ascending order) for every class present: one sort, not one
    scan of all labels per class (1000 classes would make that quadratic)."""
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    return [(int(c), members) for c, members in zip(classes, np.split(order, starts[1:]),
                                                    strict=True)]


def balanced_sample(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``min(size, len(labels))`` items spread evenly over the classes.

    Items are taken round-robin: every class's first random item, then every class's second,
    and so on, the classes of an unfinished round in random order. A class with fewer items
    than the rounds simply runs out, so small classes are all in and large ones share the
    rest, and a sample smaller than the number of classes holds ``size`` different classes.
    """
    labels = np.asarray(labels)
    if len(labels) <= size:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    shuffled = labels[order]
    rank = np.empty(len(labels), np.int64)  # position of each item within its class
    for _, members in class_members(shuffled):
        rank[members] = np.arange(len(members))
    classes = np.unique(labels)
    priority = np.empty(int(classes.max()) + 1, np.int64)
    priority[classes] = rng.permutation(len(classes))
    chosen = order[np.lexsort((priority[shuffled], rank))[:size]]
    return np.sort(chosen)
