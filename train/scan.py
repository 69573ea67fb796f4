"""Listing a folder of class subfolders: every image once, every other file named with a reason.

A dataset folder is whatever the user has, so the scan is defensive:

- a symbolic link is followed only when it leads outside the dataset (a folder of links to a
  shared image store is common); a link that resolves into the dataset itself or to a folder
  above it (``loop -> .``, ``up -> ..``) is not followed and is listed, since it would count
  images twice and put the same image in training and test;
- a class folder that is (or links into) another class folder is an error naming both;
- one file reached twice (a hard link, two links to one image) is used once;
- a file is an image when OpenCV recognises its content, whatever its suffix; everything
  else is listed as unused, with its reason.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from runtime.preprocess import is_image_file
from train.errors import DataError

log = logging.getLogger(__name__)
SHOWN_UNUSED = 5  # unused files named in the log; metrics.json lists them all


@dataclass(frozen=True)
class Unused:
    """A file or link the scan did not use, and why (listed in metrics.json)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class FolderListing:
    class_names: tuple[str, ...]
    paths: list[str]
    labels: list[int]
    unused: list[Unused]


@dataclass
class _Walk:
    """State shared by the walk of every class folder."""

    root: Path                                   # the dataset folder, resolved
    option: str = "--data"                       # the flag that named it, for messages
    unused: list[Unused] = field(default_factory=list)
    seen_files: dict[tuple[int, int], str] = field(default_factory=dict)  # (dev, inode) → path
    seen_dirs: set[Path] = field(default_factory=set)

    def skip(self, path: Path, reason: str) -> None:
        self.unused.append(Unused(str(path), reason))


def list_class_folders(root: Path, option: str = "--data") -> FolderListing:
    """Images under ``root/<class>/…`` with integer labels in sorted class-name order."""
    walk = _Walk(root.resolve(), option)
    classes = _class_folders(root, walk)
    if len(classes) < 2:
        raise DataError(f"{option} {root}: found {len(classes)} class subfolder(s); an image "
                        "folder needs at least two, one per class (e.g. cats/ and dogs/)")
    walk.seen_dirs.update(real for _, real in classes)  # a nested link to a class: read once
    paths: list[str] = []
    labels: list[int] = []
    for index, (folder, _) in enumerate(classes):
        before = len(walk.unused)
        files = _images_under(folder, walk)
        if not files:
            raise DataError(f"{option} {root}: class folder {folder.name!r} has no image OpenCV "
                            f"can read{_unused_note(walk.unused[before:])}")
        paths.extend(files)
        labels.extend([index] * len(files))
    _log_unused(walk.unused)
    return FolderListing(tuple(folder.name for folder, _ in classes), paths, labels, walk.unused)


def _class_folders(root: Path, walk: _Walk) -> list[tuple[Path, Path]]:
    """The top level: (class folder as named, its resolved path), checked for overlaps."""
    classes: list[tuple[Path, Path]] = []
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            walk.skip(entry, "hidden " + ("folder" if entry.is_dir() else "file"))
            continue
        real = _followable(entry, walk)
        if real is None:
            continue
        if real.is_dir():
            classes.append((entry, real))
        else:
            walk.skip(entry, "a file at the top level, outside any class folder")
    for link, real in classes:  # plain subfolders are siblings: only links can overlap
        if not link.is_symlink():
            continue
        for other, other_real in classes:
            if other != link and (real == other_real or other_real in real.parents
                                  or real in other_real.parents):
                kind = "a link to" if real == other_real else "a link into"
                raise DataError(f"{walk.option} {root}: class folder {link.name!r} is {kind} class "
                                f"folder {other.name!r} ({real}); each class needs its own "
                                "images: remove the link or copy the images you mean")
    return classes


def _followable(entry: Path, walk: _Walk) -> Path | None:
    """The resolved path of ``entry``, or None (and listed) for a link that must not be
    followed: broken, a loop, or resolving into the dataset or above it."""
    if not entry.is_symlink():
        return entry.resolve()
    try:
        target = entry.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop of links
        walk.skip(entry, "broken symbolic link (its target is missing or a loop)")
        return None
    if target == walk.root or walk.root in target.parents:
        if target.is_dir() and _in_class_folder(entry, walk):
            return target  # the class check names both folders
        where = "the dataset folder itself" if target == walk.root else str(target)
        walk.skip(entry, f"symbolic link into the dataset ({where}), not followed: its "
                         "images would count twice")
        log.warning("skipped symbolic link %s -> %s: it points into the dataset", entry, where)
        return None
    if target in walk.root.parents:
        walk.skip(entry, f"symbolic link to {target}, a folder above the dataset, not followed")
        log.warning("skipped symbolic link %s -> %s: it points above the dataset", entry, target)
        return None
    return target


def _in_class_folder(entry: Path, walk: _Walk) -> bool:
    """A top-level link whose target lies inside another top-level (class) folder."""
    if entry.parent.resolve() != walk.root:
        return False
    target = entry.resolve()
    relative = target.relative_to(walk.root)
    return bool(relative.parts) and not relative.parts[0].startswith(".") \
        and (walk.root / relative.parts[0]).is_dir()


def _images_under(folder: Path, walk: _Walk) -> list[str]:
    """Every image file below ``folder`` in sorted order, depth first, each file once."""
    found: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        walk.skip(folder, f"cannot list the folder: {exc.strerror or exc}")
        return found
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            walk.skip(path, "hidden " + ("folder" if entry.is_dir() else "file"))
            continue
        if entry.is_symlink():
            real = _followable(path, walk)
            if real is None:
                continue
        elif entry.is_dir():
            real = path.resolve()
        else:
            real = path
        if real.is_dir():
            if real in walk.seen_dirs:
                walk.skip(path, f"folder already read (as {real})")
                continue
            walk.seen_dirs.add(real)
            found.extend(_images_under(path, walk))
        elif real.is_file():
            _add_file(path, found, walk)
        else:
            walk.skip(path, "not a regular file")
    return found


def _add_file(path: Path, found: list[str], walk: _Walk) -> None:
    try:
        info = path.stat()
    except OSError as exc:
        walk.skip(path, f"cannot read: {exc.strerror or exc}")
        return
    identity = (info.st_dev, info.st_ino)
    first = walk.seen_files.get(identity)
    if first is not None:
        walk.skip(path, f"the same file as {first} (used once)")
        return
    walk.seen_files[identity] = str(path)
    if info.st_size == 0:
        walk.skip(path, "empty file")
        return
    if not is_image_file(path):
        suffix = path.suffix.lower() or "no suffix"
        walk.skip(path, f"not an image format OpenCV reads ({suffix})")
        return
    found.append(str(path))


def _unused_note(unused: list[Unused]) -> str:
    if not unused:
        return ""
    first = unused[0]
    return f" ({len(unused)} file(s) not used, e.g. {Path(first.path).name}: {first.reason})"


def _log_unused(unused: list[Unused]) -> None:
    if not unused:
        return
    reasons = Counter(u.reason.split(" (")[0].split(":")[0] for u in unused)
    summary = ", ".join(f"{count} {reason}" for reason, count in reasons.most_common())
    log.info("%d file(s) not used (listed in metrics.json): %s", len(unused), summary)
    for item in unused[:SHOWN_UNUSED]:
        log.info("  not used: %s: %s", item.path, item.reason)
