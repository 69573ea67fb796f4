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


@dataclass(frozen=True)
class HeldOutGroups:
    """Which groups (font families) of a part went to which split."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def grouped_split(labels: np.ndarray, groups: np.ndarray, val_fraction: float,
                  test_fraction: float, seed: int) -> tuple[SplitIndices, HeldOutGroups]:
    """Test on whole groups no training or validation image shares; validate on a stratified
    ``val_fraction`` of every class of the remaining groups.

    At least ``test_fraction`` of the groups (one or more, rounded up) are held out, and at
    least one is left to train on: a test on unseen fonts, never on unseen photos of seen ones.
    """
    groups = np.asarray(groups).astype(str)
    names = sorted(set(groups.tolist()))
    if len(names) < 2:
        raise DataError(f"a held-out split needs at least two groups; found {names}")
    rng = np.random.default_rng(seed)
    n_test = min(len(names) - 1, max(1, int(np.ceil(len(names) * test_fraction - 1e-9))))
    test_names = sorted(rng.choice(names, size=n_test, replace=False).tolist())
    is_test = np.isin(groups, test_names)
    rest = np.flatnonzero(~is_test)
    val_parts, train_parts = [], []
    for _, members in class_members(np.asarray(labels)[rest]):
        members = rest[rng.permutation(members)]
        n_val = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        val_parts.append(members[:n_val])
        train_parts.append(members[n_val:])
    train, val = np.concatenate(train_parts), np.concatenate(val_parts)
    indices = SplitIndices(train=rng.permutation(train), val=rng.permutation(val),
                           test=rng.permutation(np.flatnonzero(is_test)))
    train_names = tuple(sorted(set(groups[train].tolist())))
    return indices, HeldOutGroups(train_names, tuple(sorted(set(groups[val].tolist()))),
                                  tuple(test_names))


def split_by_part(labels: np.ndarray, parts: np.ndarray | None, groups: np.ndarray | None,
                  val_fraction: float, test_fraction: float, seed: int,
                  label_names: tuple[str, ...] | None = None,
                  ) -> tuple[SplitIndices, dict[str, HeldOutGroups]]:
    """Split each part of a joined source on its own (stratified, or by held-out group where
    the part has groups), then merge the splits, shuffled across parts.

    Returns the indices and, for each grouped part, which groups went where.
    """
    labels = np.asarray(labels)
    if parts is None and groups is None:
        return stratified_split(labels, val_fraction, test_fraction, seed, label_names), {}
    parts = np.full(len(labels), "") if parts is None else np.asarray(parts).astype(str)
    grouped = np.zeros(len(labels), bool) if groups is None else np.asarray(groups) != ""
    pieces: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    held_out: dict[str, HeldOutGroups] = {}
    for number, part in enumerate(dict.fromkeys(parts.tolist())):
        members = np.flatnonzero(parts == part)
        if grouped[members].all():
            assert groups is not None
            local, held = grouped_split(labels[members], np.asarray(groups)[members],
                                        val_fraction, test_fraction, seed + number)
            held_out[part] = held
        else:
            local = stratified_split(labels[members], val_fraction, test_fraction,
                                     seed + number, label_names)
        for name in pieces:
            pieces[name].append(members[getattr(local, name)])
    rng = np.random.default_rng(seed)
    return SplitIndices(**{name: rng.permutation(np.concatenate(idx))
                           for name, idx in pieces.items()}), held_out
