"""Write a bundle as a whole: stage every file, then swap the folder into place.

A finished bundle therefore never mixes files from two runs, and a crash leaves the
previous bundle (if any) untouched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from runtime.bundle import SPEC
from runtime.errors import BundleError


def work_folder(out: Path) -> Path:
    """Scratch space of a run (checkpoints, staged bundle), beside the bundle."""
    return out.with_name(out.name + ".work")


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse to replace anything the user had unless asked, and never a non-bundle folder."""
    if out.exists() and not out.is_dir():
        raise BundleError(f"--out {out} is a file; choose a folder for the bundle")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / SPEC).is_file():
        raise BundleError(f"--out {out}/ is a non-empty folder that is not an edgecnn bundle; "
                          "choose another --out")
    if not overwrite:
        raise BundleError(f"{out}/ already holds a bundle; pass --overwrite to replace it, "
                          "or choose another --out")


class StagedBundle:
    """Files are written under :attr:`folder` and appear at ``out`` only on :meth:`commit`."""

    def __init__(self, out: Path, work: Path) -> None:
        self.out = out
        self.work = work
        self.folder = work / "bundle"
        shutil.rmtree(self.folder, ignore_errors=True)  # leftovers of a crashed commit
        self.folder.mkdir(parents=True)

    def path(self, name: str) -> Path:
        return self.folder / name

    def commit(self) -> Path:
        replaced = self.work / "replaced"
        shutil.rmtree(replaced, ignore_errors=True)
        if self.out.exists():
            self.out.rename(replaced)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.folder.rename(self.out)
        shutil.rmtree(replaced, ignore_errors=True)
        return self.out
