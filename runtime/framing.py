"""Camera framing for digit models: one camera frame → one 28×28 MNIST-style digit.

MNIST digits are white ink on black, scaled so their bounding box fits 20×20 with the
aspect ratio kept, then placed in a 28×28 field with their centre of mass at the centre.
A camera sees dark ink on light paper somewhere in a 640×480 frame under uneven light, so
a model with ``spec.framing == "digit"`` only sees familiar pixels if every frame is cut
the same way first: :func:`frame_digit`, then :func:`runtime.preprocess.prepare`.

The steps, each a small function: take a region of interest (ROI), fit the paper's
lighting from the ROI's border and subtract it, decide the ink's polarity, find the ink by
hysteresis thresholding above the sensor noise, and scale and centre it the way MNIST was.

It runs on every camera frame, so it does as little as it can: the ROI is shrunk to the
resolution a 20 px digit needs (the work image), the ink is looked for on that image halved
again and only its box is cut from the work image, per-pixel work is saturating uint8
OpenCV calls, and what depends only on the ROI's size is computed once
(``docs/printed.md``, "Framing cost").
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
MIN_ROI_SIDE = 8  # smaller ROIs, or whole images, cannot hold a paper border and a digit
WORK_MIN = 120  # ROIs are halved while their shorter side stays above this: 6× the 20 px box
RING_SAMPLES = 400  # border pixels the lighting fit reads: plenty for six unknowns and a MAD
SHADOW_SCALE = 44  # work-image px: wider dark regions are shade, narrower ones may be ink
INK_TAIL = 0.004  # share of the ROI the thinnest small digit covers: its strongest pixels
DARK_INK_PRIOR = 1.5  # light ink must stand out this much more than dark ink to win
OFF_RING_FRACTION = 0.02  # more ring pixels off the plain fit than this: fit robustly
MISFIT = 2.0  # ring spread around the fit over the sensor noise above which light is uneven
BORDER_FRACTION = 0.03  # width of the ROI's ring that is assumed to be paper
SEED_SIGMAS = 4.0  # ink seeds stand this many noise sigmas above the paper
GROW_SIGMAS = 3.0  # ink grows from seeds over pixels this many sigmas above the paper
GROW_FRACTION = 0.25  # ... and at least this share of the seed threshold (lighting misfit)
MIN_CONTRAST = 24.0  # grey levels: weaker marks are paper texture or lighting, not ink
SPECK_FRACTION = 0.05  # components smaller than this share of the largest are specks
MIN_SPECK = 0.04  # ... and so are blobs under this share of the ROI side squared (dust, dots)
INK_PERCENTILE = 75.0  # this percentile of the ink becomes 255, like MNIST's solid strokes
EDGE_FRACTION = 0.3  # the box ends where ink falls below this share of its strength
COARSE_ENOUGH = 2 * BOX  # coarse px: a digit this long is cut from the coarse image
SQRT2 = float(np.sqrt(2.0))


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
    ``WHOLE_FRAME_BELOW`` are already crops (a dataset sample, a cut-out file): use them whole
    (:func:`frame_digit` holds them to ``MIN_ROI_SIDE`` as it holds a given ROI).
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
    """Cut the digit in ``roi`` (default: :func:`default_roi`) out of ``frame``, MNIST-style.

    The ink is looked for on a coarse image (the work image halved again: a 288 px ROI
    becomes 72 px, a sixteenth of its pixels). A digit whose longer side spans at least
    ``COARSE_ENOUGH`` coarse pixels (twice the 20 px it is shrunk to) is cut from that
    image's ink map, already made; a smaller one from the finer work image, so that the
    20 px digit keeps its anti-aliased detail either way.

    Raises ImageError for a bad frame or ROI, and for an image used whole (shorter side
    under ``WHOLE_FRAME_BELOW``) narrower or shorter than ``MIN_ROI_SIDE``: too small for a
    digit, as a given ROI would be.
    """
    image = check_image(frame, "frame")
    height, width = image.shape[:2]
    if roi is not None:
        box = check_roi(roi, height, width)
    elif min(height, width) >= MIN_ROI_SIDE:
        box = default_roi(height, width)
    else:  # the whole frame would be the ROI, and check_roi refuses one this small
        raise ImageError(f"the image is {width}x{height} px, too small to hold a digit: width "
                         f"and height must be at least {MIN_ROI_SIDE} px")
    x, y, w, h = box
    gray, factor = work_image(image[y:y + h, x:x + w])
    coarse = _half(gray)
    background, sigma, paper, clean = fit_paper(gray)
    shaded = not clean and min(gray.shape) >= 2 * SHADOW_SCALE
    ink, inverted, background = ink_map(coarse, background, sigma, paper, shaded)
    found = find_ink(ink, sigma)
    if found is not None:
        near, (left, top, right, bottom), low = found
        if max(right - left, bottom - top) - 2 >= COARSE_ENOUGH:  # the box is 1 px wider
            region, scale = ink[top:bottom, left:right], 2
        else:
            region, scale = fine_ink(gray, background, inverted, paper,
                                     (left, top, right, bottom)), 1
        cropped = crop_ink(region, near, low)
        if cropped is not None:
            digit, (bx, by, bw, bh) = cropped
            bx, by, bw, bh = bx * scale + 2 * left, by * scale + 2 * top, bw * scale, bh * scale
            ink_box = (x + bx * factor, y + by * factor, bw * factor, bh * factor)
            return FramedDigit(center_digit(digit), box, True, inverted, ink_box)
    return FramedDigit(np.zeros((FIELD, FIELD), np.uint8), box, False, inverted)


def work_image(region: np.ndarray) -> tuple[np.ndarray, int]:
    """The ROI in grayscale, halved while its shorter side stays at least ``WORK_MIN``.

    The digit ends up 20 px tall: finer detail is only noise and time. Halving by area
    averaging is OpenCV's fast exact path (any other factor takes its slow general one); an
    odd last row or column is dropped first. Returns the image and the factor it shrank by.
    """
    if region.shape[2] == 3:  # the camera's case: one call
        gray = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    else:
        gray = convert_color(region, "grayscale")[:, :, 0]
    factor = 1
    while min(gray.shape) >= 2 * WORK_MIN:
        gray = _half(gray)
        factor *= 2
    return gray, factor


def ink_map(coarse: np.ndarray, background: np.ndarray, sigma: float, paper: float,
            shaded: bool) -> tuple[np.ndarray, bool, np.ndarray]:
    """Coarse grayscale ROI and its fitted paper → (ink as uint8 above the paper, inverted?,
    the paper it was measured against).

    Subtracting the fitted paper removes lighting gradients and vignetting. The ink is
    whichever side of the paper deviates most strongly, which still works when a dim frame
    makes light paper darker than 128 or a shadow leaves lit paper above the fit.
    ``shaded``: the ring saw uneven light and the ROI is wide enough to tell a shadow from
    a stroke, so look for shadows.
    """
    # Ink is the most extreme mark on the page; shading is broad but mild. So the side
    # whose strongest pixels (the top INK_TAIL of them) stand out more is the ink's, with
    # dark ink given the benefit of the doubt: it is what cameras meet on paper. Both
    # sides come from one histogram of (gray - paper) / 2 + 128.
    signed = cv2.addWeighted(coarse, 0.5, background, -0.5, 128.0)
    inverted = _dark_ink_wins(signed) or _dark_ink_by_tails(signed, paper)
    if inverted and shaded:
        # Shadows (a hand, a phone) have edges no quadratic follows: where the paper is
        # locally darker than the fit by more than the noise, its local level is the paper.
        # A shadow across the ROI crosses its border too: a clean ring means none.
        local = shade_paper(coarse, background, max(GROW_SIGMAS * sigma, 6.0))
        if local is not None:
            background = local
    return _ink(coarse, background, inverted, paper), inverted, background


def _dark_ink_by_tails(signed: np.ndarray, paper: float) -> bool:
    """The polarity test: is the ink darker than the paper? ``signed`` is (grey - paper) / 2
    + 128; each side's strength is how far its strongest ``INK_TAIL`` of pixels reach."""
    tail = INK_TAIL * signed.size
    below = cv2.calcHist([signed], [0], None, [256], [0, 256]).cumsum()  # pixels ≤ each bin
    dark_at, light_at = below.searchsorted((tail, signed.size - tail + 1e-3)).tolist()
    darker, lighter = max(128 - dark_at, 0), max(light_at - 128, 0)
    return darker * DARK_INK_PRIOR >= lighter if darker or lighter else paper >= 128


def _dark_ink_wins(signed: np.ndarray) -> bool:
    """True when :func:`_dark_ink_by_tails` surely says so (else it must be asked): the
    light tail reaches no further than the brightest pixel, so dark ink wins once its tail
    of pixels lies that far (over the prior) below the paper. Two cheap calls instead of a
    histogram, for the usual frame: dark ink on light paper."""
    lighter_at_most = int(cv2.minMaxLoc(signed)[1]) - 128
    if lighter_at_most < 1:
        return False  # nothing above the paper: the test's rules for ties decide
    darker_at_least = int(np.ceil(lighter_at_most / DARK_INK_PRIOR))
    # Pixels at or below 128 - darker_at_least (cv2.threshold on uint8: src > floor(t)).
    at_or_below = signed.size - cv2.countNonZero(
        cv2.threshold(signed, 128 - darker_at_least, 255, cv2.THRESH_BINARY)[1])
    return at_or_below >= INK_TAIL * signed.size


def _ink(gray: np.ndarray, background: np.ndarray, inverted: bool, paper: float) -> np.ndarray:
    """How far each pixel stands out from the paper on the ink's side, in saturating uint8.

    Dark ink is divided by the paper's light (scaled to the ring's paper level), so that
    ink is as dark in the shade; paper darker than a quarter of that level is taken as that.
    """
    if not inverted:
        return cv2.subtract(gray, background)
    floor = min(max(paper / 4, 1.0), 255.0)
    return cv2.divide(cv2.subtract(background, gray), cv2.max(background, floor),
                      scale=max(paper, 0.0))


def shade_paper(gray: np.ndarray, fitted: np.ndarray, margin: float) -> np.ndarray | None:
    """``fitted`` with the paper's local level wherever that is more than ``margin`` below
    it (a shadow), or None when nowhere is. ``gray`` is the coarse ROI, ``fitted`` its paper.

    The local level comes from the ROI at half of ``gray``'s size (a quarter of the work
    image's) closed with a disc ``SHADOW_SCALE`` work pixels wide: closing removes dark
    marks narrower than the disc, a marker's stroke included, and keeps what is wider, a
    shadow or a desk edge. Its last step reaches one pixel further and it is shifted by its
    median offset from the ring's paper, so that it errs dark: next to a shadow's edge and
    in noise, paper must not read as ink.
    """
    quarter = _half(gray)
    side = 2 * round(SHADOW_SCALE / 8) + 1  # the disc at a quarter of the work size, odd
    local = cv2.erode(cv2.dilate(quarter, _disc(side), borderType=cv2.BORDER_REPLICATE),
                      _disc(side + 2), borderType=cv2.BORDER_REPLICATE)
    ring = _ring_index(*quarter.shape)
    local = cv2.subtract(local, _median(np.subtract(local.take(ring), quarter.take(ring),
                                                    dtype=np.int16)))
    # cv2.threshold below compares uint8 with floor(margin): so does this.
    if cv2.minMaxLoc(cv2.subtract(_half(fitted), local))[1] <= np.floor(margin):
        return None  # no shadow: the quadratic fit stands (the common case, and cheap)
    local = cv2.resize(local, gray.shape[::-1], interpolation=cv2.INTER_LINEAR)
    shade = cv2.threshold(cv2.subtract(fitted, local), margin, 255, cv2.THRESH_BINARY)[1]
    return cv2.copyTo(local, shade, fitted.copy())


@functools.lru_cache(maxsize=4)
def _disc(side: int) -> np.ndarray:
    """A round window: a square one reaches 1.4× as far along diagonals and closes over
    oblique shadow bands."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def fit_paper(gray: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """Fit a quadratic lighting surface to the work image's border ring: (the surface as
    uint8 at the coarse size of ``_half(gray)``, noise sigma, paper level, whether the ring
    was all paper).

    The user aims the digit inside the box, so the border is paper; fitting only there keeps
    the ink out of the lighting estimate. A quadratic covers a gradient and vignetting. When
    the plain fit leaves no ring pixel far off, it stands; otherwise the fit starts flat at
    the ring's median and is refitted on the pixels that look like paper, so a desk edge, a
    shadow or a stroke crossing the ring does not bend it. The spread (MAD) of the paper
    around the fit is the sensor noise that must not become ink.
    """
    pairs, design, inverse, rows, columns = _lighting_terms(*gray.shape)
    samples = gray.take(pairs)  # ring pixels, then each one's neighbour
    values = samples[0]
    coef = inverse @ values  # the plain fit: right when the ring is all paper, as it mostly is
    predicted = design @ coef
    # The fit explains the ring when what is left is sensor noise: as large as the step
    # from a ring pixel to its neighbour (/√2), which no smooth shading changes. The steps
    # stay integers: their median costs half the fit's.
    misses = np.abs(values - predicted)
    spread = _median(misses)
    noise = _median(np.abs(values.astype(np.int16) - samples[1])) / SQRT2
    clean = spread <= MISFIT * max(noise, 0.5)
    band = _paper_band(spread)
    paper = misses <= band
    off = values.size - np.count_nonzero(paper)
    if off > int(OFF_RING_FRACTION * values.size):  # a share of the ring is off the fit
        clean = False
        coef, spread = _robust_fit(values, design, inverse)
    elif off:  # a few stray pixels (noise tails, a speck): refit without them
        coef = _refit(inverse, values, predicted, paper)
    # Where the light is uneven the spread around the fit is misfit, not noise: thresholds
    # built on it would hide faint ink. The neighbour steps still measure the noise.
    sigma = 1.4826 * (spread if clean else min(spread, max(noise, 0.5)))
    # A quadratic is smooth: at the coarse size it misses the fine grid by far less than a
    # grey level once enlarged bilinearly. An over-exposed sensor clips the paper at 255 and
    # a fit above that would make paper ink; a wild fit below 0 is no paper either:
    # saturate to 0-255 (the abs never sees < 0; +0.5 then rounds up, as it always has).
    c0, c1, c2, c3, c4, c5 = coef.tolist()
    surface = cv2.max(rows @ np.array([[c0, c1, c3], [c2, c5, 0.0], [c4, 0.0, 0.0]]) @ columns,
                      0.0)
    return cv2.convertScaleAbs(surface, beta=0.5), sigma, coef[0].item(), clean


def _robust_fit(values: np.ndarray, design: np.ndarray,
                inverse: np.ndarray) -> tuple[np.ndarray, float]:
    """Something else crosses the ring (a desk edge, a shadow, a stroke) and pulls the plain
    fit: start flat at the ring's median instead, and refit on what looks like paper until
    that stops changing. Returns the fit and the paper's spread around it."""
    coef = np.array([_median(values), 0, 0, 0, 0, 0], np.float64)
    paper = None  # all of the ring
    for _ in range(3):
        predicted = design @ coef
        deviation = np.abs(values - predicted)
        looks_paper = deviation <= _paper_band(
            _median(deviation if paper is None else deviation[paper]))
        if np.count_nonzero(looks_paper) < 2 * design.shape[1]:
            break  # too little paper to fit a surface: keep the last one
        if paper is not None and np.array_equal(paper, looks_paper):
            break  # the same pixels give the same fit
        paper = looks_paper
        coef = _refit(inverse, values, predicted, paper)
    deviation = np.abs(values - design @ coef)
    return coef, _median(deviation if paper is None else deviation[paper])


@functools.lru_cache(maxsize=8)
def _ring_index(height: int, width: int) -> np.ndarray:
    """Flat indices of up to ``RING_SAMPLES`` pixels of an image's border ring.

    Cached, like everything that depends only on the ROI's size: a camera's ROI keeps its
    size from frame to frame.
    """
    ring = max(1, min(round(min(height, width) * BORDER_FRACTION), min(height, width) // 4))
    on_ring = np.zeros((height, width), bool)
    on_ring[:ring] = on_ring[-ring:] = True
    on_ring[:, :ring] = on_ring[:, -ring:] = True
    index = np.flatnonzero(on_ring)
    index = index[:: max(1, len(index) // RING_SAMPLES)]
    index.flags.writeable = False
    return index


@functools.lru_cache(maxsize=8)
def _edge_mask(height: int, width: int) -> np.ndarray:
    """A mask of an image's outermost rows and columns: components there are cut by the
    ROI's edge."""
    on_edge = np.zeros((height, width), np.uint8)
    on_edge[[0, -1]] = 1
    on_edge[:, [0, -1]] = 1
    on_edge.flags.writeable = False
    return on_edge


@functools.lru_cache(maxsize=8)
def _lighting_terms(height: int, width: int) -> tuple[np.ndarray, ...]:
    """For a work image of this size: the ring samples' flat indices with each one's
    right-hand neighbour (left-hand on the last column), their quadratic terms and those
    terms' least-squares fit; and (1, y, y²) of the coarse image's rows and (1, x, x²) of its
    columns, in the work image's [-1, 1] coordinates (a coarse pixel i covers work pixels 2i
    and 2i + 1): the surface is rows @ C @ columns, a 3 × 3 matrix C of the six coefficients
    between them, without a 6 × pixels basis to read for every frame."""
    index = _ring_index(height, width)
    neighbour = np.where(index % width == width - 1, index - 1, index + 1)
    by = np.linspace(-1.0, 1.0, height)[index // width]
    bx = np.linspace(-1.0, 1.0, width)[index % width]
    design = np.stack([np.ones_like(bx), bx, by, bx * bx, by * by, bx * by], axis=1)
    inverse = np.linalg.solve(_ridged(design.T @ design), design.T)  # the all-paper fit
    ys, xs = _coarse_axis(height), _coarse_axis(width)
    rows = np.stack([np.ones_like(ys), ys, ys * ys], axis=1)
    columns = np.stack([np.ones_like(xs), xs, xs * xs])
    arrays = (np.stack([index, neighbour]), design, inverse, rows, columns)
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _coarse_axis(side: int) -> np.ndarray:
    """Where the pixels of ``_half`` of a work image sit on its [-1, 1] axis: coarse pixel
    i averages work pixels 2i and 2i + 1, so its centre is at 2i + ½."""
    position = np.arange(side // 2) * 2.0 + 0.5
    return position / max(side - 1, 1) * 2.0 - 1.0


def _refit(inverse: np.ndarray, values: np.ndarray, predicted: np.ndarray,
           paper: np.ndarray) -> np.ndarray:
    """Least squares on the paper alone, by imputation: what is not paper takes the current
    fit's value, so the ring's precomputed fit applies (one EM step for missing data)."""
    return inverse @ np.where(paper, values, predicted)


def _ridged(gram: np.ndarray) -> np.ndarray:
    gram.flat[:: gram.shape[0] + 1] += 1e-9 * np.trace(gram) + 1e-12
    return gram


def _paper_band(spread: float) -> float:
    """Paper lies within 3 robust sigmas (1.4826 × the median deviation) of the fit, or
    within 2 grey levels."""
    return max(3.0 * 1.4826 * spread, 2.0)


def _median(values: np.ndarray) -> float:
    """The upper median of all of ``values``: np.median's own overhead is several times
    this partition's."""
    middle = values.size // 2
    return float(np.partition(values, middle, axis=None)[middle])


def find_ink(ink: np.ndarray, sigma: float) -> tuple[np.ndarray, Roi, float] | None:
    """The digit's ink on the coarse image: a mask of it and its next pixels (non-zero)
    over the box that holds them, that box as (left, top, right, bottom), and the threshold
    that work-image ink must pass; None on blank paper.

    Hysteresis: Otsu (never below the noise) picks the seeds, and each seed's connected
    region above a lower threshold keeps the grey anti-aliased edge of its strokes. Isolated
    noise and specks have no seed or are tiny; components cut by the ROI's edge are clutter
    (a paper edge, a neighbour) unless they are all there is. The thresholds are the work
    image's: a coarse pixel that a stroke's edge only partly covers falls below them, and
    the mask's one-pixel margin takes it back.
    """
    otsu, _ = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    high = max(float(otsu), SEED_SIGMAS * sigma, MIN_CONTRAST)
    low = max(GROW_SIGMAS * sigma, GROW_FRACTION * high)
    # On uint8, cv2.threshold compares with floor(t): the same as ink > t for integer ink.
    grown = cv2.threshold(ink, low, 255, cv2.THRESH_BINARY)[1]
    # 16-bit labels histogram directly; a long, thin custom ROI over speckled paper can hold
    # more components than 16 bits count (in 8-connectivity, one per 2×2 block at most).
    height, width = grown.shape
    wide = ((height + 1) // 2) * ((width + 1) // 2) >= 65535
    count, labels = cv2.connectedComponentsWithAlgorithm(
        grown, 8, cv2.CV_32S if wide else cv2.CV_16U, cv2.CCL_BBDT)
    if count < 2:
        return None
    if count == 2:  # one component, three frames in four: its figures need no labels
        area, seeded, on_edge = _one_component_counts(grown, ink, high)
    else:
        area, seeded, on_edge = _component_counts(labels, count, ink, high)
    area = [a if s else 0.0 for a, s in zip(area, seeded, strict=True)]
    biggest = max(area)
    least = max(2.0, (MIN_SPECK * min(height, width)) ** 2, SPECK_FRACTION * biggest)
    big = [i for i, a in enumerate(area) if a >= least]
    if not big:
        return None
    whole = [i for i in big if not on_edge[i]]
    kept = _select(labels, whole or big, count, grown)
    # The box, one pixel wider on each side: the work image's ink at a stroke's edge may lie
    # in a coarse pixel just outside its component.
    x, y, w, h = cv2.boundingRect(kept)
    left, top, right, bottom = max(x - 1, 0), max(y - 1, 0), min(x + w + 1, width), min(
        y + h + 1, height)
    near = cv2.dilate(kept[top:bottom, left:right], None)  # 3×3
    return near, (left, top, right, bottom), low


def _component_counts(labels: np.ndarray, count: int, ink: np.ndarray,
                      high: float) -> tuple[list[float], ...]:
    """Per component: its area, its seed pixels (ink above ``high``) and its pixels on the
    image's edge, each one histogram of the labels (OpenCV's own per-component statistics
    cost several times the labelling on an image this small). Seeds lie in grown
    components, so label 0 (the paper) has none."""
    if labels.dtype == np.int32:
        labels = labels.astype(np.float32)  # calcHist takes 8U, 16U or 32F
    bins, span = [count], [0, count]
    seeds = cv2.threshold(ink, high, 255, cv2.THRESH_BINARY)[1]
    return tuple(cv2.calcHist([labels], [0], mask, bins, span).ravel().tolist()
                 for mask in (None, seeds, _edge_mask(*labels.shape)))


def _one_component_counts(grown: np.ndarray, ink: np.ndarray,
                          high: float) -> tuple[list[float], ...]:
    """:func:`_component_counts` when ``grown`` (0/255) is one component: seeds lie in it
    (``high`` is above the grow threshold), so it has one if any ink passes ``high``."""
    on_edge = cv2.countNonZero(grown & _edge_mask(*grown.shape))
    seeded = cv2.minMaxLoc(ink)[1] > np.floor(high)  # cv2.threshold's test on uint8
    return [0.0, float(cv2.countNonZero(grown))], [0.0, float(seeded)], [0.0, float(on_edge)]


def _select(labels: np.ndarray, chosen: list[int], count: int,
            grown: np.ndarray) -> np.ndarray:
    """A mask (non-zero where kept) of the pixels whose label (of ``count``) is in
    ``chosen``, mostly one: the digit. Every component chosen (one, three frames in four)
    is ``grown`` itself, the 0/255 image they were labelled on."""
    if len(chosen) == count - 1:
        return grown
    if len(chosen) == 1:
        return cv2.compare(labels, chosen[0], cv2.CMP_EQ) & 1
    table = np.zeros(count, np.uint8)
    table[chosen] = 1
    return table.take(labels.astype(np.intp, copy=False))


def fine_ink(gray: np.ndarray, background: np.ndarray, inverted: bool, paper: float,
             box: Roi) -> np.ndarray:
    """The work image's ink over a coarse box (left, top, right, bottom): the paper there is
    the coarse one enlarged bilinearly, from one coarse pixel around the box so that its
    edges are interpolated as the whole image's would be."""
    left, top, right, bottom = box
    height, width = background.shape
    x0, y0 = max(left - 1, 0), max(top - 1, 0)
    x1, y1 = min(right + 1, width), min(bottom + 1, height)
    paper_around = cv2.resize(background[y0:y1, x0:x1], (2 * (x1 - x0), 2 * (y1 - y0)),
                              interpolation=cv2.INTER_LINEAR)
    dx, dy, w, h = 2 * (left - x0), 2 * (top - y0), 2 * (right - left), 2 * (bottom - top)
    return _ink(gray[2 * top:2 * bottom, 2 * left:2 * right],
                paper_around[dy:dy + h, dx:dx + w], inverted, paper)


def _half(image: np.ndarray) -> np.ndarray:
    """Half size by 2×2 area averaging (OpenCV's fast exact path); an odd last row or
    column is left out."""
    h, w = image.shape[0] // 2, image.shape[1] // 2
    return cv2.resize(image[:2 * h, :2 * w], (w, h), interpolation=cv2.INTER_AREA)


def crop_ink(region: np.ndarray, near: np.ndarray, low: float,
             ) -> tuple[np.ndarray, Roi] | None:
    """Crop the ink of ``region`` (the work image's, or the coarse one's for a big digit) to
    its bounding box and stretch it to 0–255 (uint8, white on black), or None if none of it
    passes ``low``. ``near``: the coarse mask of the kept ink (:func:`find_ink`; 1 or 255
    where kept) over the same box.

    The box ends where the ink falls below ``EDGE_FRACTION`` of its strength: MNIST's 20 px
    box holds every pixel the pen partly covered, but not the faint halo a camera's blur
    spreads around a stroke (else the digit's scale would follow the camera's focus). Solid
    strokes become 255 and paper and noise 0, while edge pixels stay grey (MNIST is
    anti-aliased); pixels outside the kept ink (specks, other marks in the box) are cleared.
    """
    mask = cv2.threshold(region, low, 1, cv2.THRESH_BINARY)[1]
    if near.shape != region.shape:  # the work image's region: twice the coarse mask's side
        near = cv2.resize(near, region.shape[::-1], interpolation=cv2.INTER_NEAREST)
    mask &= near  # 0/1
    # The percentile from the ink's histogram: cheaper than gathering and partitioning it.
    below = cv2.calcHist([region], [0], mask, [256], [0, 256]).cumsum()  # pixels at or below
    strokes = below[-1]
    if not strokes:
        return None
    rank = round((strokes - 1) * INK_PERCENTILE / 100)
    level = max(float(below.searchsorted(rank, side="right")), low + 1.0)
    solid = cv2.threshold(region, np.ceil(EDGE_FRACTION * level) - 1, 1, cv2.THRESH_BINARY)[1]
    x, y, w, h = cv2.boundingRect(solid & mask)
    # (ink - low) stretched, saturating at 255; what is at or below low is outside the mask.
    gain = 255.0 / (level - low)
    scaled = cv2.convertScaleAbs(region[y:y + h, x:x + w], alpha=gain, beta=-low * gain)
    return scaled * mask[y:y + h, x:x + w], (x, y, w, h)


def center_digit(digit: np.ndarray) -> np.ndarray:
    """MNIST's procedure: longer side to 20 px (aspect kept), centre of mass at (14, 14).

    ``digit`` is white-on-black ink cropped to its bounding box (uint8 or float32 in
    0–255). MNIST shifted by whole
    pixels (its centres of mass sit within ±0.5 px of (14, 14)), so this does too.
    """
    h, w = digit.shape
    scale = BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    small = cv2.resize(digit, size, interpolation=shrink)
    if small.dtype != np.uint8:  # area and linear resizing never leave 0-255: this only rounds
        small = cv2.convertScaleAbs(small)
    # uint8: cv2.moments reads only float or int32 N×2 arrays as contours, not images.
    moments = cv2.moments(small)
    if moments["m00"] > 0:
        cx, cy = moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]
    else:
        cx, cy = (size[0] - 1) / 2, (size[1] - 1) / 2
    field = np.zeros((FIELD, FIELD), np.uint8)
    dx, dy = int(np.floor(FIELD / 2 - cx + 0.5)), int(np.floor(FIELD / 2 - cy + 0.5))
    # The shifted digit's overlap with the field (a lopsided digit may stick out).
    fx0, fy0 = max(dx, 0), max(dy, 0)
    fx1, fy1 = min(dx + size[0], FIELD), min(dy + size[1], FIELD)
    if fx1 > fx0 and fy1 > fy0:
        field[fy0:fy1, fx0:fx1] = small[fy0 - dy:fy1 - dy, fx0 - dx:fx1 - dx]
    return field
