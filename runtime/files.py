"""Atomic file writes: an artifact is either complete under its final name or absent.

Every stage writes through these helpers, so a crash or Ctrl-C never leaves a half-written
model, report or plot where a user (or the next stage) would load it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def scratch_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``, removed on exit unless moved away.

    It keeps the final suffix, so writers that pick a format from the extension
    (matplotlib, numpy, Keras, the runtime's backend choice) still work.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}",
                                    dir=final.parent)
    with contextlib.suppress(OSError):  # mkstemp makes 0600; artifacts are shared files
        os.fchmod(fd, FILE_MODE)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path; it is renamed over ``path`` only if the block succeeds."""
    with scratch_path(path) as tmp:
        yield tmp
        _fsync(tmp)  # the rename must not reach the disk before the data (power loss on a Pi)
        os.replace(tmp, path)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError), open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _default_file_mode()  # what open() would give a new file under this umask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256(path: str | os.PathLike[str]) -> str:
    """A file's SHA-256; for a folder (a SavedModel), of its files' names and contents."""
    digest = hashlib.sha256()
    if Path(path).is_dir():
        for item in _files(Path(path)):
            digest.update(f"{item.relative_to(path).as_posix()}\0{sha256(item)}\n".encode())
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def size_bytes(path: str | os.PathLike[str]) -> int:
    """A file's size; for a folder, the total of its files."""
    path = Path(path)
    return sum(item.stat().st_size for item in _files(path)) if path.is_dir() else \
        path.stat().st_size


def _files(folder: Path) -> list[Path]:
    return sorted(item for item in folder.rglob("*") if item.is_file())


def _json_default(value: Any) -> Any:
    """Let numpy scalars and arrays, and paths, appear in reports without manual casting."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
