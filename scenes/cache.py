"""The rendered-set cache: one ``.npz`` a set, named by a digest of what decides its pixels.

Sets live in ``$EDGECNN_CACHE`` (default ``~/.cache/edgecnn``). Any change to the camera
model, the framing or a library gives new names, so old sets would pile up (3–4 MB each):
reading a set marks it used, and writing one deletes the least recently used sets of its
kind beyond :data:`KEEP`. A damaged set is rendered again, never trusted.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import numpy as np

from runtime.files import atomic_path

log = logging.getLogger(__name__)
CACHE_ENV = "EDGECNN_CACHE"  # where rendered sets are kept (default ~/.cache/edgecnn)
KEEP = 4  # sets of one kind (printed-, handwritten-) kept: seeds and checkouts in use


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME",
                                                            Path.home() / ".cache")) / "edgecnn"
    return Path(root)


def load_set(path: Path, *keys: str) -> tuple[np.ndarray, ...] | None:
    """The arrays ``keys`` of a cached set, or None when it is missing or damaged."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = tuple(npz[key] for key in keys)
    except (OSError, KeyError, ValueError, EOFError) as exc:
        log.warning("ignoring damaged cache %s (%s)", path, exc)
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)  # used now: the last to be pruned
    return arrays


def store_set(path: Path, **arrays: np.ndarray) -> None:
    """Write a set whole (never half), then prune its kind to the :data:`KEEP` newest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    prune(path)


def prune(path: Path, keep: int = KEEP) -> list[Path]:
    """Delete the least recently used sets of ``path``'s kind beyond ``keep``; returns them."""
    kind = path.name.split("-", 1)[0] + "-"
    sets = []
    for other in path.parent.glob(f"{kind}*.npz"):
        try:
            sets.append((other.stat().st_mtime, other))
        except OSError:
            continue  # gone meanwhile (another run pruned it)
    sets.sort(reverse=True)
    removed = []
    for _, old in sets[keep:]:
        if old != path:
            old.unlink(missing_ok=True)
            removed.append(old)
    if removed:
        log.info("cache %s: removed %d unused %s sets", path.parent, len(removed), kind[:-1])
    return removed
