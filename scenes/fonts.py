"""Fonts found at run time, and digit glyphs drawn from them as ink coverage.

Nothing is downloaded: the fonts are the TrueType/OpenType files that installed Python
packages ship (matplotlib: DejaVu, STIX, Computer Modern), Pillow's built-in font, and, for
measuring on fonts no training run sees, OpenCV's own fonts and the system's. A font is
kept only if '0'–'9' map to real digit glyphs (symbol fonts and old-style figures are not
the digits a camera meets on a label or a page).

Fonts are grouped into *families* (DejaVu Sans, DejaVu Serif, ...: one design in its
weights and slants) so that data splits can hold whole families out.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import site
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import EdgeCNNError

log = logging.getLogger(__name__)
DIGITS = "0123456789"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
PILLOW_DEFAULT = "pillow:default"  # Pillow's built-in FreeType font (Aileron Regular)
OPENCV_PREFIX = "opencv:"  # OpenCV 5's built-in fonts, drawn by cv2.putText
GLYPH_PX = 96  # glyphs are drawn this tall and then warped: smaller cameras see them blurred
SYSTEM_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts",
                    "~/.local/share/fonts", "/Library/Fonts", "/System/Library/Fonts",
                    "C:/Windows/Fonts")
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_STYLE_WORDS = re.compile(
    r"\b(regular|book|roman|normal|medium|bold|semibold|demibold|extrabold|black|heavy|"
    r"light|extralight|thin|italic|oblique|condensed|cond|narrow|extended|expanded|display)\b",
    re.IGNORECASE)
# Knuth's Computer Modern names every style as its own family (cmr10, cmb10, cmti10 ...):
# the styles of one design are one family here, so a split never puts them on two sides.
_COMPUTER_MODERN = ((re.compile(r"^cm(ss|ssbx|ssi|ssdc)\d*$"), "Computer Modern Sans"),
                    (re.compile(r"^cm(tt|sltt|itt|vtt)\d*$"), "Computer Modern Typewriter"),
                    (re.compile(r"^cm(r|b|bx|bxsl|bxti|ti|sl|u|csc|dunh|fib|ff)\d*$"),
                     "Computer Modern Roman"))


class FontError(EdgeCNNError):
    """No usable font was found, or a font file cannot be drawn from."""


@dataclass(frozen=True)
class Font:
    """One font: where it comes from, its family (for splits) and its style."""

    source: str  # a file path, PILLOW_DEFAULT, or "opencv:<name>:<weight>"
    family: str
    style: str

    @property
    def name(self) -> str:
        return f"{self.family} {self.style}".strip()


def installed_fonts() -> list[Font]:
    """Fonts with real digits in the installed Python packages, plus Pillow's own, sorted."""
    files = sorted({path.resolve() for root in _package_roots() for path in _font_files(root)})
    fonts = [font for font in (_file_font(path) for path in files) if font is not None]
    if _pillow_default_available():
        fonts.append(Font(PILLOW_DEFAULT, "Aileron", "Regular"))
    return sorted(set(fonts), key=lambda f: (f.family, f.style, f.source))


def system_fonts() -> list[Font]:
    """Fonts with real digits in the operating system's font folders (machine-dependent:
    used for measuring, never for training data)."""
    files = sorted({path.resolve() for folder in SYSTEM_FONT_DIRS
                    for path in _font_files(Path(folder).expanduser())})
    return [font for font in (_file_font(path) for path in files) if font is not None]


def opencv_fonts() -> list[Font]:
    """OpenCV 5's built-in fonts (sans at several weights, italic), when this OpenCV has them."""
    if not hasattr(cv2, "FontFace"):
        return []
    fonts = [Font(f"{OPENCV_PREFIX}sans:{weight}", "OpenCV Sans", f"w{weight}")
             for weight in (200, 400, 600, 800)]
    fonts.append(Font(f"{OPENCV_PREFIX}italic:400", "OpenCV Italic", "w400"))
    return fonts


def require_fonts(fonts: list[Font]) -> list[Font]:
    """``fonts``, or one clear line when there are none."""
    if not fonts:
        raise FontError("no TrueType/OpenType font with digits was found in the installed "
                        "packages; install matplotlib (pip install matplotlib), which ships "
                        "DejaVu, STIX and Computer Modern")
    return fonts


def families(fonts: Iterable[Font]) -> list[str]:
    return sorted({font.family for font in fonts})


def glyph(font: Font, digit: str, height: int = GLYPH_PX) -> np.ndarray:
    """Ink coverage (float32, 0–1) of ``digit`` drawn about ``height`` px tall, cropped to
    its ink with a one-pixel margin."""
    if font.source.startswith(OPENCV_PREFIX):
        canvas = _opencv_glyph(font.source, digit, height)
    else:
        canvas = _pillow_glyph(font.source, digit, height)
    coverage = canvas.astype(np.float32) / 255.0
    x, y, w, h = cv2.boundingRect((canvas > 0).astype(np.uint8))
    if w == 0 or h == 0:
        raise FontError(f"{font.name}: the glyph for {digit!r} has no ink")
    return np.pad(coverage[y:y + h, x:x + w], 1)


def marked_zero(glyph: np.ndarray, mark: str) -> np.ndarray:
    """A zero's coverage with a dot or a slash inside its counter, as wide as its strokes.

    The counter is the background no path from the glyph's edge reaches; the stroke width
    is twice the deepest point of the ink's distance transform.
    """
    ink = (glyph > 0.5).astype(np.uint8)
    outside = np.pad(1 - ink, 1, constant_values=1)
    cv2.floodFill(outside, None, (0, 0), 2)
    hole = (outside[1:-1, 1:-1] == 1).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(hole)
    if w < 3 or h < 3:
        return glyph  # no counter to mark (a zero drawn as a spiral, say)
    stroke = 2 * float(cv2.distanceTransform(ink, cv2.DIST_L2, 3).max())
    marked = np.zeros(glyph.shape, np.uint8)
    if mark == "dot":
        axes = (max(1, round(min(stroke * 0.6, w / 3))), max(1, round(min(stroke * 0.8, h / 4))))
        cv2.ellipse(marked, (x + w // 2, y + h // 2), axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    else:
        cv2.line(marked, (x + w, y), (x, y + h), 255, max(1, round(stroke * 0.7)), cv2.LINE_AA)
        marked &= ((hole | ink) * 255).astype(np.uint8)  # a slash stays inside the zero
    return np.maximum(glyph, marked.astype(np.float32) / 255.0)


@functools.lru_cache(maxsize=64)
def _pillow_font(source: str, size: int) -> object:
    from PIL import ImageFont

    if source == PILLOW_DEFAULT:
        return ImageFont.load_default(size=size)
    try:
        return ImageFont.truetype(source, size=size)
    except OSError as exc:
        raise FontError(f"cannot draw from font {source}: {exc}") from None


def _pillow_glyph(source: str, digit: str, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    font = _pillow_font(source, height)
    left, top, right, bottom = font.getbbox(digit)  # type: ignore[attr-defined]
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), digit, font=font, fill=255)
    return np.asarray(canvas)


def _opencv_glyph(source: str, digit: str, height: int) -> np.ndarray:
    _, name, weight = source.split(":")
    canvas = np.zeros((height * 2, height * 2), np.uint8)
    cv2.putText(canvas, digit, (height // 2, height * 3 // 2), 255, cv2.FontFace(name), height,
                int(weight))
    return canvas


def _pillow_default_available() -> bool:
    try:
        from PIL import ImageFont

        return isinstance(ImageFont.load_default(size=GLYPH_PX), ImageFont.FreeTypeFont)
    except (ImportError, OSError, TypeError):  # an old Pillow, or one built without FreeType
        return False


def _package_roots() -> list[Path]:
    """Where installed packages live: this interpreter's site-packages folders."""
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    roots.update(getattr(site, "getsitepackages", list)())
    if site.ENABLE_USER_SITE:
        roots.add(site.getusersitepackages())
    roots.update(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
    return [Path(r) for r in sorted(roots) if Path(r).is_dir()]


def _font_files(root: Path) -> Iterable[Path]:
    if not root.is_dir():
        return []
    found = []
    for folder, _, names in os.walk(root, followlinks=False):
        found.extend(Path(folder) / n for n in names if n.lower().endswith(FONT_SUFFIXES))
    return found


@functools.lru_cache(maxsize=512)
def _file_font(path: Path) -> Font | None:
    """A Font for ``path`` if its '0'–'9' are real (lining) digits, else None."""
    try:
        from fontTools.ttLib import TTFont

        ttf = TTFont(str(path), lazy=True, fontNumber=0)
        cmap = ttf.getBestCmap() or {}
        names = [cmap.get(ord(d)) for d in DIGITS]
        if not all(names) or not all(_is_digit_glyph(n, i) for i, n in enumerate(names)):
            return None
        family = _name(ttf, 16) or _name(ttf, 1) or path.stem
        style = _name(ttf, 17) or _name(ttf, 2) or ""
    except Exception as exc:  # a broken or exotic file: skip it, as a font viewer would
        log.debug("skipping font %s: %s", path, exc)
        return None
    return Font(str(path), normalize_family(family), style)


def _is_digit_glyph(name: str, index: int) -> bool:
    """'zero', 'zero.slash', 'uni0030', or an anonymous glyph id; not 'prime' or
    'zerooldstyle'."""
    word = _DIGIT_NAMES[index]
    return (name == word or name.startswith(word + ".") or name.lower() in
            (f"uni{ord(DIGITS[index]):04x}", f"u{ord(DIGITS[index]):04x}")
            or re.fullmatch(r"(glyph|cid|gid)\d+", name) is not None)


def _name(ttf: object, name_id: int) -> str | None:
    record = ttf["name"].getName(name_id, 3, 1) or ttf["name"].getName(name_id, 1, 0)  # type: ignore[index]
    return str(record).strip() if record else None


def normalize_family(family: str) -> str:
    """A family's name without weight, width or slant words: 'DejaVu Sans Condensed' and
    'DejaVu Sans' are one family, and so are Computer Modern's styles."""
    bare = re.sub(r"\s+", " ", _STYLE_WORDS.sub(" ", family)).strip() or family.strip()
    for pattern, name in _COMPUTER_MODERN:
        if pattern.match(bare.lower()):
            return name
    return bare
