"""Listing image files: a folder searched recursively, or a glob pattern.

Directory symlinks are followed, each real directory once and never one leading back up
to the folder named, so a link loop ends and nothing outside what the user named is read.
Hidden names are left out. One listing for ``python -m runtime predict``, the camera
demo's folder source and ``export --calib-data`` on a plain folder.
"""

from __future__ import annotations

import fnmatch
import glob
import os
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from runtime.preprocess import IMAGE_SUFFIXES


def images_under(folder: Path | str,
                 is_image: Callable[[str], bool] | None = None) -> list[str]:
    """The image files anywhere under ``folder``, hidden names left out, each real
    directory's files sorted. ``is_image`` tells an image (default: by its suffix)."""
    is_image = is_image or is_image_name
    return [path for path in walk_files(str(folder))
            if not os.path.basename(path).startswith(".") and is_image(path)]


def walk_files(folder: str, hidden: bool = False) -> Iterator[str]:
    """Every file under ``folder`` (as a path through it), hidden folders left out unless
    ``hidden``.

    Directory symlinks are followed (a dataset assembled from links is scanned), but never
    one to ``folder`` itself or a folder above it (``up -> ..`` or a link to ``/`` would
    scan what the user did not name), and each real directory, known by (device, inode), is
    entered once: a folder linked twice is listed once and no loop nests forever. Links are
    entered after the real tree, so a folder inside it keeps its own path: the real tree's
    files come first, sorted, then each link's.
    """
    entered: set[tuple[int, int]] = set()
    tops = deque([folder])
    home = os.path.realpath(folder)
    while tops:
        for root, dirs, files in os.walk(tops.popleft()):  # links are listed, not entered
            try:
                info = os.stat(root)
            except OSError:
                dirs[:] = []
                continue
            if (info.st_dev, info.st_ino) in entered:
                dirs[:] = []
                continue
            entered.add((info.st_dev, info.st_ino))
            dirs[:] = sorted(d for d in dirs if hidden or not d.startswith("."))
            paths = [os.path.join(root, d) for d in dirs]
            tops.extend(path for path in paths if os.path.islink(path)
                        and not _encloses(os.path.realpath(path), home))
            yield from (os.path.join(root, f) for f in sorted(files))


def _encloses(outer: str, inner: str) -> bool:
    """Whether real path ``outer`` is ``inner`` or one of its parents."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def glob_files(pattern: str) -> list[str]:
    """``glob.glob(pattern, recursive=True)``'s files, with each ``**`` walked by
    :func:`walk_files`: glob's own follows directory symlinks without end. The part before the
    first ``**`` is globbed as it is; the rest is matched a name at a time, hidden names
    only by a pattern that starts with a dot, as glob does."""
    parts = pattern.split(os.sep)
    if "**" not in parts:
        return glob.glob(pattern)  # as deep as the pattern: no loop
    cut = parts.index("**")
    head, rest = os.sep.join(parts[:cut]), parts[cut:]
    bases = glob.glob(head) if glob.has_magic(head) else [head or (os.sep if cut else "")]
    hidden = any(part.startswith(".") for part in rest)  # e.g. **/.thumbnails/*.png
    found = []
    for base in bases:
        if base and not os.path.isdir(base):
            continue
        for path in walk_files(base or os.curdir, hidden):
            relative = os.path.relpath(path, base or os.curdir)
            if _matches(relative.split(os.sep), rest):
                found.append(path if base else relative)
    return found


def _matches(names: list[str], parts: list[str]) -> bool:
    """Whether a relative path's names match pattern parts, ``**`` standing for any number
    of names that are not hidden."""
    if not parts:
        return not names
    if parts[0] == "**":
        shown = next((i for i, name in enumerate(names) if name.startswith(".")), len(names))
        return any(_matches(names[i:], parts[1:]) for i in range(shown + 1))
    return bool(names) and _name_matches(names[0], parts[0]) and _matches(names[1:], parts[1:])


def _name_matches(name: str, part: str) -> bool:
    return fnmatch.fnmatchcase(name, part) and (part.startswith(".") or
                                                  not name.startswith("."))


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
