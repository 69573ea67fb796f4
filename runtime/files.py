"""Atomic file writes: an artifact is either complete under its final name or absent.

Every stage writes through these helpers, so a crash or Ctrl-C never leaves a half-written
model, report or plot where a user (or the next stage) would load it. A place that takes no
file (a folder, ``/proc``, a read-only disk) is an :class:`OutputError` naming the path the
user gave, never the hidden temporary file; :func:`check_outputs` finds it, and any output
that would destroy an input or an existing file, before a command does any work.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from runtime.errors import OutputError


@contextlib.contextmanager
def scratch_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``, removed on exit unless moved away.

    It keeps the final suffix, so writers that pick a format from the extension
    (matplotlib, numpy, Keras, the runtime's backend choice) still work.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(path, f"cannot create the folder {final.parent}", exc) from None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}",
                                        dir=final.parent)
    except OSError as exc:
        raise _unwritable(path, f"cannot create a file in {_folder(final)}", exc) from None
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
        place(tmp, path)


def place(tmp: Path, path: str | os.PathLike[str]) -> None:
    """Rename a finished scratch file (from :func:`scratch_path`) over ``path``."""
    _fsync(tmp)  # the rename must not reach the disk before the data (power loss on a Pi)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise _unwritable(path, "cannot put the finished file there", exc) from None


def check_outputs(outputs: Mapping[str, str | None], inputs: Mapping[str, str | None],
                  overwrite: bool = False) -> None:
    """Before any work, refuse each output (``{flag: path}``; None: not asked for) that is an
    input or another output (even with ``overwrite``), a folder, an existing file without
    ``overwrite``, or in a place that takes no new file (a missing folder is made, as the
    writers would make it). The message names the flag and the path the user gave."""
    checked: dict[str, str] = {}
    for flag, path in outputs.items():
        if not path:
            continue
        for source_flag, source in inputs.items():
            if source and same_file(path, source):
                raise OutputError(f"{flag} {path} is the same file as {source_flag} {source}; "
                                  "name another file (--overwrite never replaces an input)")
        for other_flag, other in checked.items():
            if same_file(path, other):
                raise OutputError(f"{flag} {path} and {other_flag} {other} are the same file; "
                                  "give each output its own name")
        checked[flag] = path
        if Path(path).is_dir():
            raise OutputError(f"{flag} {path} is a folder; name a file inside it")
        if os.path.lexists(path) and not overwrite:
            raise OutputError(f"{flag} {path} exists; pass --overwrite to replace it")
        try:
            with scratch_path(path):  # the one way to know that the folder takes a new file
                pass
        except OutputError as exc:
            raise OutputError(f"{flag} {exc}") from None


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file: the same inode when both exist (hard and symbolic
    links, ``./x`` and ``x``), else the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def _unwritable(path: str | os.PathLike[str], what: str, exc: OSError) -> OutputError:
    """One line about the user's ``path``: the OSError names our hidden temporary file."""
    if Path(path).is_dir():
        return OutputError(f"{path} is a folder; name a file inside it")
    return OutputError(f"{path}: {what} ({exc.strerror or type(exc).__name__}); choose a "
                       "folder you can write to")


def _folder(final: Path) -> str:
    return "the current folder" if str(final.parent) == "." else str(final.parent)


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
