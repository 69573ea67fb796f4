"""Camera framing for digit models: one camera frame → one 28×28 MNIST-style digit.

MNIST digits are white ink on black, scaled so their bounding box fits 20×20 with the
aspect ratio kept, then placed in a 28×28 field with their centre of mass at the centre.
A camera sees dark ink on light paper somewhere in a 640×480 frame under uneven light, so
a model with ``spec.framing == "digit"`` only sees familiar pixels if every frame is cut
the same way first: :func:`frame_digit`, then :func:`runtime.preprocess.prepare`.

The steps, each a small function: take a region of interest (ROI), fit the paper's
lighting from the ROI's border and subtract it, decide the ink's polarity, find the ink by
hysteresis thresholding above the sensor noise, and scale and centre it the way MNIST was.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from runtime.errors import ImageError
from runtime.preprocess import check_image, convert_color

Roi = tuple[int, int, int, int]  # x, y, width, height in frame pixels

FIELD = 28  # MNIST image side
BOX = 20  # longer side of the digit's bounding box inside the field
ROI_FRACTION = 0.6  # default box side / the frame's shorter side (288 px on 640×480)
WHOLE_FRAME_BELOW = 64  # shorter frame side under which the frame is already a crop
MIN_ROI_SIDE = 8  # smaller boxes cannot hold a paper border and a digit
WORK_SIDE = 160  # larger ROIs are area-averaged down to this: 8× the 20 px box, half the noise
BORDER_FRACTION = 0.03  # width of the ROI's ring that is assumed to be paper
SEED_SIGMAS = 4.0  # ink seeds stand this many noise sigmas above the paper
GROW_SIGMAS = 3.0  # ink grows from seeds over pixels this many sigmas above the paper
GROW_FRACTION = 0.25  # ... and at least this share of the seed threshold (lighting misfit)
MIN_CONTRAST = 24.0  # grey levels: weaker marks are paper texture or lighting, not ink
SPECK_FRACTION = 0.05  # components smaller than this share of the largest are specks
MIN_SPECK = 0.04  # ... and so are blobs under this share of the ROI side squared (dust, dots)
INK_PERCENTILE = 75.0  # this percentile of the ink becomes 255, like MNIST's solid strokes
EDGE_FRACTION = 0.3  # the box ends where ink falls below this share of its strength


@dataclass(frozen=True, eq=False)
class FramedDigit:
    """A framed digit and what the framing saw, so a demo can draw it or say "no digit"."""

    image: np.ndarray  # (28, 28) uint8, white ink on black; all zeros when no ink was found
    roi: Roi  # the region searched, in frame pixels
    ink_found: bool  # False on blank paper: show "no digit" rather than a guess
    inverted: bool  # True when the ink was darker than the paper (the usual camera case)
    ink_box: Roi | None = None  # the ink's bounding box in frame pixels


def default_roi(height: int, width: int) -> Roi:
    """A centred square, 60 % of the shorter side: the box the demo asks users to aim into.

    On 640×480 that is 288 px: room for a digit written on paper at arm's length with a
    margin of paper around it (the lighting is fitted on that margin), while the frame's
    edges, where the desk, hands and vignetting show, stay out. Frames smaller than
    ``WHOLE_FRAME_BELOW`` are already crops (a dataset sample, a cut-out file): use them whole.
    """
    if min(height, width) < WHOLE_FRAME_BELOW:
        return (0, 0, int(width), int(height))
    side = round(min(height, width) * ROI_FRACTION)
    return ((width - side) // 2, (height - side) // 2, side, side)


def parse_roi(text: str) -> Roi:
    """Parse the CLI form ``"x,y,w,h"`` (pixels); it is checked against each frame later.

    Raises ImageError (not argparse's ``type=``, which would hide the message): call it
    after parsing so ``__main__`` prints the message as its one stderr line.
    """
    parts = [part.strip() for part in str(text).split(",")]
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 4:
        raise ImageError(f"--roi must be four integers x,y,w,h in pixels, e.g. 176,96,288,288; "
                         f"got {text!r}")
    return values  # type: ignore[return-value]


def check_roi(roi: Sequence[int], height: int, width: int) -> Roi:
    """Return ``roi`` as a tuple of ints, or raise ImageError naming the ROI and the frame."""
    values = tuple(roi) if isinstance(roi, Sequence | np.ndarray) else ()
    if len(values) != 4 or not all(isinstance(v, int | np.integer) and not isinstance(v, bool)
                                   for v in values):
        raise ImageError(f"roi must be four integers (x, y, w, h) in pixels, got {roi!r}")
    x, y, w, h = (int(v) for v in values)
    if w < MIN_ROI_SIDE or h < MIN_ROI_SIDE:
        raise ImageError(f"roi {(x, y, w, h)} is too small: width and height must be at least "
                         f"{MIN_ROI_SIDE} px to hold a digit")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ImageError(f"roi {(x, y, w, h)} does not lie inside the {width}x{height} frame; "
                         f"keep 0 <= x, x + w <= {width}, 0 <= y, y + h <= {height}")
    return (x, y, w, h)


def frame_digit(frame: np.ndarray, roi: Sequence[int] | None = None) -> FramedDigit:
    """Cut the digit in ``roi`` (default: :func:`default_roi`) out of ``frame``, MNIST-style."""
    image = check_image(frame, "frame")
    height, width = image.shape[:2]
    box = default_roi(height, width) if roi is None else check_roi(roi, height, width)
    x, y, w, h = box
    gray = np.ascontiguousarray(convert_color(image[y:y + h, x:x + w], "grayscale")[:, :, 0])
    scale = WORK_SIDE / min(w, h)
    if scale < 1.0:  # the digit ends up 20 px tall: finer detail is only noise and time
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    ink, inverted, sigma = ink_map(gray)
    found = find_ink(ink, sigma)
    if found is None:
        return FramedDigit(np.zeros((FIELD, FIELD), np.uint8), box, False, inverted)
    digit, (bx, by, bw, bh) = crop_ink(ink, *found)
    sx, sy = w / gray.shape[1], h / gray.shape[0]
    ink_box = (x + round(bx * sx), y + round(by * sy), round(bw * sx), round(bh * sy))
    return FramedDigit(center_digit(digit), box, True, inverted, ink_box)


def ink_map(gray: np.ndarray) -> tuple[np.ndarray, bool, float]:
    """Grayscale ROI → (ink as uint8 above the paper, inverted?, noise sigma).

    Subtracting the fitted paper removes lighting gradients and vignetting. The ink is
    whichever side of the paper has more strongly deviating pixels, which still works when a
    dim frame makes light paper darker than 128; blank paper falls back to its brightness.
    """
    background, sigma, paper = fit_paper(gray)
    residual = gray.astype(np.float32) - background
    strong = max(SEED_SIGMAS * sigma, MIN_CONTRAST)
    darker = np.count_nonzero(residual < -strong)
    lighter = np.count_nonzero(residual > strong)
    inverted = darker > lighter if darker != lighter else paper >= 128
    if inverted:  # paper reflects the light: divide it out so ink is as dark in the shade
        residual *= np.float32(-paper) / np.maximum(background, np.float32(max(paper / 4, 1.0)))
    ink = np.clip(residual, 0, 255, out=residual).astype(np.uint8)
    return ink, bool(inverted), sigma


def fit_paper(gray: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Fit a quadratic lighting surface to the ROI's border ring: (surface, noise sigma, level).

    The user aims the digit inside the box, so the border is paper; fitting only there keeps
    the ink out of the lighting estimate. A quadratic covers a gradient and vignetting. The
    fit starts flat at the ring's median and is refitted on the pixels that look like paper,
    so a desk edge, a shadow or a stroke crossing the ring does not bend it; the spread (MAD)
    of the paper around it is the sensor noise that must not become ink.
    """
    index, design, ys, xs = _ring(*gray.shape)
    values = gray.ravel()[index].astype(np.float64)
    coef = np.array([np.median(values), 0, 0, 0, 0, 0], np.float64)
    paper = np.ones(values.shape, bool)
    for _ in range(3):
        deviation = np.abs(values - design @ coef)
        looks_paper = deviation <= max(3.0 * 1.4826 * float(np.median(deviation[paper])), 2.0)
        if looks_paper.sum() < 2 * design.shape[1]:
            break  # too little paper to fit a surface: keep the last one
        paper = looks_paper
        coef = _least_squares(design[paper], values[paper])
    sigma = 1.4826 * float(np.median(np.abs(values - design @ coef)[paper]))
    c0, cx, cy, cxx, cyy, cxy = (np.float32(c) for c in coef)
    surface = (c0 + cy * ys + cyy * ys * ys)[:, None] + (cx * xs + cxx * xs * xs)[None, :]
    surface += cxy * np.outer(ys, xs)
    # An over-exposed sensor clips the paper at 255; a fit above that would make paper ink.
    return np.minimum(surface, 255, out=surface), sigma, float(c0)


@functools.lru_cache(maxsize=8)
def _ring(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flat indices of the border ring, their quadratic terms, and the y and x axes in [-1, 1].

    Cached: a camera's ROI keeps its size from frame to frame. Every other ring pixel is
    plenty for six unknowns.
    """
    ring = max(1, min(round(min(height, width) * BORDER_FRACTION), min(height, width) // 4))
    on_ring = np.zeros((height, width), bool)
    on_ring[:ring] = on_ring[-ring:] = True
    on_ring[:, :ring] = on_ring[:, -ring:] = True
    index = np.flatnonzero(on_ring)[:: 2 if min(height, width) > 64 else 1]
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    by, bx = ys[index // width].astype(np.float64), xs[index % width].astype(np.float64)
    design = np.stack([np.ones_like(bx), bx, by, bx * bx, by * by, bx * by], axis=1)
    for array in (index, design, ys, xs):
        array.flags.writeable = False
    return index, design, ys, xs


def _least_squares(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    # Normal equations: 6 unknowns over a few thousand border pixels; lstsq guards the
    # degenerate case (a ring one pixel wide cannot pin the curvature down).
    coef, *_ = np.linalg.lstsq(design.T @ design, design.T @ values, rcond=None)
    return coef


def find_ink(ink: np.ndarray, sigma: float) -> tuple[np.ndarray, float] | None:
    """The digit's ink as a 0/1 mask and the threshold it was grown to; None on blank paper.

    Hysteresis: Otsu (never below the noise) picks the seeds, and each seed's connected
    region above a lower threshold keeps the grey anti-aliased edge of its strokes. Isolated
    noise and specks have no seed or are tiny; components cut by the ROI's edge are clutter
    (a paper edge, a neighbour) unless they are all there is.
    """
    otsu, _ = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    high = max(float(otsu), SEED_SIGMAS * sigma, MIN_CONTRAST)
    low = max(GROW_SIGMAS * sigma, GROW_FRACTION * high)
    grown = (ink > low).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    seeded = np.zeros(count, bool)
    seeded[labels[ink > high]] = True
    seeded[0] = False  # label 0 is the paper
    areas = stats[:, cv2.CC_STAT_AREA]
    if not seeded.any():
        return None
    min_area = max(2.0, (MIN_SPECK * min(ink.shape)) ** 2, SPECK_FRACTION * areas[seeded].max())
    keep = seeded & (areas >= min_area)
    x0, y0 = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    x1, y1 = x0 + stats[:, cv2.CC_STAT_WIDTH], y0 + stats[:, cv2.CC_STAT_HEIGHT]
    inside = (x0 > 0) & (y0 > 0) & (x1 < ink.shape[1]) & (y1 < ink.shape[0])
    if (keep & inside).any():
        keep &= inside
    if not keep.any():
        return None
    return keep.astype(np.uint8)[labels], low


def crop_ink(ink: np.ndarray, mask: np.ndarray, low: float) -> tuple[np.ndarray, Roi]:
    """Crop to the ink's bounding box and stretch it to 0–255 float32 (white on black).

    The box ends where the ink falls below ``EDGE_FRACTION`` of its strength: MNIST's 20 px
    box holds every pixel the pen partly covered, but not the faint halo a camera's blur
    spreads around a stroke (else the digit's scale would follow the camera's focus). Solid
    strokes become 255 and paper and noise 0, while edge pixels stay grey (MNIST is
    anti-aliased); pixels outside ``mask`` (specks, other marks in the box) are cleared.
    """
    level = max(float(np.percentile(ink[mask > 0], INK_PERCENTILE)), low + 1.0)
    solid = ((ink >= EDGE_FRACTION * level) & (mask > 0)).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(solid)
    values = ink[y:y + h, x:x + w].astype(np.float32)
    scaled = (values - np.float32(low)) * np.float32(255.0 / (level - low))
    np.clip(scaled, 0, 255, out=scaled)
    return scaled * mask[y:y + h, x:x + w], (x, y, w, h)


def center_digit(digit: np.ndarray) -> np.ndarray:
    """MNIST's procedure: longer side to 20 px (aspect kept), centre of mass at (14, 14).

    ``digit`` is white-on-black ink cropped to its bounding box. MNIST shifted by whole
    pixels (its centres of mass sit within ±0.5 px of (14, 14)), so this does too.
    """
    h, w = digit.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(digit.astype(np.float32), size, interpolation=shrink)
    # Not cv2.moments: it reads an N×2 array (a digit "1" two pixels wide) as a contour.
    total = float(small.sum())
    if total > 0:
        cx = float(small.sum(axis=0) @ np.arange(size[0])) / total
        cy = float(small.sum(axis=1) @ np.arange(size[1])) / total
    else:
        cx, cy = (size[0] - 1) / 2, (size[1] - 1) / 2
    shift = np.float32([[1, 0, np.floor(FIELD / 2 - cx + 0.5)],
                        [0, 1, np.floor(FIELD / 2 - cy + 0.5)]])
    field = cv2.warpAffine(small, shift, (FIELD, FIELD), flags=cv2.INTER_NEAREST,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return (np.clip(field, 0, 255) + 0.5).astype(np.uint8)
