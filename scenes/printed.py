"""Printed digits as training data: 0–9 in every found font, photographed by the camera
model, then cut out by the runtime's own framing, so training sees what inference sees.

Each image has its own seed (from the set's seed, the font and the digit), so a set is the
same whoever renders it and in whatever order. Rendering costs a few milliseconds an image:
sets are cached on disk under a key made of everything that decides their pixels (fonts,
counts, seed, the code of the camera model and the framing, and the versions of the
libraries that draw them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.framing import default_roi, frame_digit
from scenes import camera, fonts
from scenes.cache import cache_dir, load_set, store_set

log = logging.getLogger(__name__)
PER_DIGIT = 16  # photographs of each digit in each font (default)
# The printed source's photographs do not change with --seed (which still picks the split,
# the order and the weights): one cached set serves every run.
RENDER_SEED = 0
RETAKES = 5  # photographs of one digit tried until the framing finds its ink
VERSION = 1  # bump when the rendering changes in a way the code hash below cannot see


@dataclass(frozen=True)
class PrintedSet:
    """Framed 28×28 digits (white ink on black, uint8), their labels and their fonts."""

    images: np.ndarray    # (N, 28, 28) uint8
    labels: np.ndarray    # (N,) int64, the digit
    families: np.ndarray  # (N,) str, the font family (the unit of a held-out split)
    fonts: np.ndarray     # (N,) str, the font's name

    def __len__(self) -> int:
        return len(self.labels)


def printed_set(font_list: list[fonts.Font], per_digit: int = PER_DIGIT, seed: int = 0,
                cache: Path | None = None) -> PrintedSet:
    """Every digit of every font, ``per_digit`` times, photographed and framed; cached."""
    fonts.require_fonts(font_list)
    folder = cache_dir() if cache is None else cache
    path = folder / f"printed-{cache_key(font_list, per_digit, seed)}.npz"
    cached = load_set(path, "images", "labels", "families", "fonts")
    if cached is not None:
        return PrintedSet(*cached)
    jobs = [(font, digit, per_digit, seed) for font in font_list for digit in range(10)]
    log.info("rendering %d printed digits (%d fonts x 10 digits x %d photographs) into %s",
             len(jobs) * per_digit, len(font_list), per_digit, path)
    started, results = time.perf_counter(), []
    for n, job in enumerate(jobs, start=1):  # OpenCV spreads each photograph over the cores
        results.append(render_digit(*job))
        if n % 50 == 0 or n == len(jobs):
            log.info("printed digits: %d/%d rendered (%.0f s)", n * per_digit,
                     len(jobs) * per_digit, time.perf_counter() - started)
    images = np.concatenate(results)
    counts = [len(result) for result in results]  # a shot the framing cannot read is retaken
    labels = np.repeat([digit for _, digit, _, _ in jobs], counts).astype(np.int64)
    families = np.repeat([font.family for font, _, _, _ in jobs], counts)
    names = np.repeat([font.name for font, _, _, _ in jobs], counts)
    result = PrintedSet(images, labels, families.astype(str), names.astype(str))
    store_set(path, images=result.images, labels=result.labels, families=result.families,
              fonts=result.fonts)
    return result


def render_digit(font: fonts.Font, digit: int, count: int, seed: int) -> np.ndarray:
    """``count`` framed photographs of one font's ``digit``: (count, 28, 28) uint8.

    Only the demo's ROI is rendered (the framing looks nowhere else), and framed whole. A
    photograph in which the framing finds no ink (the demo would say "no digit") is retaken,
    up to ``RETAKES`` times, and left out after that: a blank image labelled as a digit
    teaches nothing, and its copies would be the same image in several splits.
    """
    glyph = fonts.glyph(font, str(digit))
    roi = default_roi(camera.HEIGHT, camera.WIDTH)
    rng = np.random.default_rng([seed, _stable_hash(_identity(font)), digit])
    zeros = (glyph, fonts.marked_zero(glyph, "dot"), fonts.marked_zero(glyph, "slash")) \
        if digit == 0 else (glyph,)
    out = np.zeros((count, 28, 28), np.uint8)
    kept = 0
    for i in range(count):
        # Monospace and UI fonts often mark their zero (DejaVu Sans Mono's dot, a slash in
        # OpenCV's and many terminal fonts): every third zero of every font is drawn so.
        framed = framed_photo(zeros[i % len(zeros)], rng, roi)
        if framed is not None:
            out[kept] = framed
            kept += 1
    return out[:kept]


def framed_photo(coverage: np.ndarray, rng: np.random.Generator,
                 roi: tuple[int, int, int, int]) -> np.ndarray | None:
    """Ink ``coverage`` photographed by a random shot into the demo's ``roi`` and framed as
    the runtime frames it: 28×28 uint8, or None when ``RETAKES`` shots all read "no digit"."""
    for _ in range(RETAKES):
        frame = camera.photograph(coverage, camera.random_shot(rng), rng, view=roi)
        framed = frame_digit(frame, roi=(0, 0, roi[2], roi[3]))
        if framed.ink_found:  # else the demo says "no digit": no picture to learn from
            return framed.image
    return None


def cache_key(font_list: list[fonts.Font], per_digit: int, seed: int) -> str:
    """A digest of everything that decides the pixels of a set."""
    from PIL import __version__ as pillow

    parts = {
        "version": VERSION, "per_digit": per_digit, "seed": seed,
        "fonts": [[f.source, f.family, f.style, *_file_stamp(f.source)] for f in font_list],
        "code": code_digests("fonts.py"), "libraries": [pillow],
    }
    return digest(parts)


def code_digests(*extra: str) -> list[str]:
    """Digests of the code that decides a photograph's pixels (the camera model, the framing,
    this module and ``extra`` modules of this package), with the drawing libraries' versions."""
    here = Path(__file__).resolve().parent
    code = [here / "camera.py", here / "printed.py", *(here / name for name in extra),
            here.parent / "runtime" / "framing.py", here.parent / "runtime" / "preprocess.py"]
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in code] + [cv2.__version__,
                                                                         np.__version__]


def digest(parts: dict) -> str:
    """A short stable name for a cache entry made of ``parts`` (JSON-able)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _file_stamp(source: str) -> list[int]:
    try:
        stat = os.stat(source)
    except OSError:  # a built-in font: its library's version stands for it
        return []
    return [stat.st_size, int(stat.st_mtime)]


def _identity(font: fonts.Font) -> str:
    """What names a font wherever it is installed: its family, style and file name, not
    the folder (a clone or a virtualenv elsewhere must render the same photographs)."""
    name = font.source if font.source.startswith(fonts.OPENCV_PREFIX) \
        or font.source == fonts.PILLOW_DEFAULT else Path(font.source).name
    return f"{font.family}|{font.style}|{name}"


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
