"""The rendered-set cache: one ``.npz`` a set, named by a digest of what decides its pixels.

Sets live in ``$EDGECNN_CACHE`` (default ``~/.cache/edgecnn``). Any change to the camera
model, the framing or a library gives new names, so old sets would pile up (3–4 MB each):
reading a set marks it used, and writing one deletes the least recently used sets of its
kind beyond :data:`KEEP`. Only files named as sets (``printed-`` or ``handwritten-`` and
a digest) are ever deleted: the folder may hold anything else.
A damaged set is rendered again, never trusted; a cache that cannot be written (read-only,
full) only costs the rendering again next time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from runtime.errors import OutputError
from runtime.files import atomic_path

log = logging.getLogger(__name__)
CACHE_ENV = "EDGECNN_CACHE"  # where rendered sets are kept (default ~/.cache/edgecnn)
KEEP = 4  # sets of one kind (printed-, handwritten-) kept: seeds and checkouts in use
# The only names pruning deletes: a kind and scenes.printed.digest's 20 hex digits (kept
# there, as editing printed.py renames every set and would render them all again).
SET_NAME = re.compile(r"(printed|handwritten)-[0-9a-f]{20}\.npz")


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or Path(os.environ.get("XDG_CACHE_HOME",
                                                            Path.home() / ".cache")) / "edgecnn"
    return Path(root)


def load_set(path: Path, *keys: str) -> tuple[np.ndarray, ...] | None:
    """The arrays ``keys`` of a cached set, or None when it is missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = tuple(npz[key] for key in keys)
    except FileNotFoundError:  # never written, or just pruned by another run
        return None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring damaged cache %s (%s)", path, exc)
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves
        os.utime(path)  # used now: the last to be pruned
    return arrays


def store_set(path: Path, **arrays: np.ndarray) -> None:
    """Write a set whole (never half), then prune its kind to the :data:`KEEP` newest. A
    cache that cannot be written is one warning: the caller has the arrays."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    except (OutputError, OSError) as exc:
        log.warning("cache %s: the rendered set is not kept (%s)", path.parent, exc)
        return
    prune(path)


def prune(path: Path, keep: int = KEEP) -> list[Path]:
    """Delete the least recently used sets of ``path``'s kind beyond ``keep``; returns them.
    Only regular files named as sets are candidates, and ``path`` is always kept."""
    named = SET_NAME.fullmatch(path.name)
    if named is None:
        return []
    kind = named.group(1)
    sets = []
    for other in path.parent.glob(f"{kind}-*.npz"):
        match = SET_NAME.fullmatch(other.name)
        if other == path or match is None or match.group(1) != kind:
            continue
        try:
            if other.is_file():
                sets.append((other.stat().st_mtime, other))
        except OSError:
            continue  # gone meanwhile (another run pruned it)
    sets.sort(reverse=True)
    removed = []
    for _, old in sets[max(keep - 1, 0):]:  # path itself is one of the kept
        try:
            old.unlink()
        except FileNotFoundError:
            continue  # another run pruned it first
        except OSError as exc:  # another user's set in a shared, sticky folder
            log.warning("cache %s: cannot remove %s (%s)", path.parent, old.name, exc)
            continue
        removed.append(old)
    if removed:
        log.info("cache %s: removed %d unused %s sets", path.parent, len(removed), kind)
    return removed
