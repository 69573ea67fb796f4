"""Stratified, seeded train / validation / test split by index.

Splitting indices (not images) keeps it identical for in-memory arrays and file lists, and
lets a test prove that no test index ever reaches training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import EdgeCNNError


@dataclass(frozen=True)
class SplitIndices:
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def stratified_split(labels: np.ndarray, val_fraction: float, test_fraction: float,
                     seed: int) -> SplitIndices:
    """Hold out ``val_fraction`` and ``test_fraction`` of every class (at least one image each)."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise EdgeCNNError(f"--val-fraction {val_fraction} and --test-fraction {test_fraction} "
                           "must be in (0, 1) and sum to less than 1")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        if len(members) < 3:
            raise EdgeCNNError(f"class {cls} has {len(members)} image(s); each class needs at "
                               "least 3 (one each for training, validation and test)")
        n_test = max(1, round(len(members) * test_fraction))
        n_val = max(1, round(len(members) * val_fraction))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test:n_test + n_val])
        parts["train"].append(members[n_test + n_val:])
    # Shuffle across classes so that any prefix of a split is class-balanced.
    return SplitIndices(**{name: rng.permutation(np.concatenate(idx))
                           for name, idx in parts.items()})
