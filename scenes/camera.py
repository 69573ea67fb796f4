"""A camera model: ink on a sheet of paper, photographed the way a webcam or a Pi camera does.

One renderer for everything that makes pictures of digits: the ``printed`` training source,
``demos.make_clip`` and the benchmarks. A :class:`Shot` holds every setting of one
photograph, drawn by :func:`random_shot` from ranges that cover what a camera meets:

- the sheet: perspective tilt and a small rotation, paper that is white, cream or grey;
- the ink: black, blue, red or pencil grey, a stroke from a thin pen to a marker;
- the digit: 1/6 to 1/2 of the frame's height, slanted, narrowed or widened a little;
- the light: a gradient, vignetting and shadow bands, under- or over-exposure;
- the lens: defocus and motion blur;
- the sensor: noise, a colour cast, JPEG compression.

:func:`photograph` turns ink coverage (0–1, any size: a font glyph or an MNIST digit) into
a BGR frame. Everything random comes from the generator passed in, so a seed reproduces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from runtime.framing import default_roi

WIDTH, HEIGHT = 640, 480  # the demo's camera frame
PAPERS = {  # BGR reflectance of the sheet under white light
    "white": (238.0, 240.0, 242.0),
    "cream": (200.0, 228.0, 240.0),
    "grey": (190.0, 192.0, 192.0),
}
INKS = {  # BGR reflectance of the ink, and how much of the paper it covers
    "black": ((32.0, 30.0, 30.0), 1.0),
    "blue": ((140.0, 60.0, 30.0), 0.95),
    "red": ((40.0, 40.0, 180.0), 0.95),
    "pencil": ((105.0, 105.0, 110.0), 0.75),
}
FOCAL = 1.1  # focal length in frame widths: a webcam's ~50° horizontal field of view


@dataclass(frozen=True)
class Shot:
    """Every setting of one photograph of one digit."""

    height: float                  # the digit's ink height, as a fraction of the frame height
    centre: tuple[float, float]    # the digit's centre, in frame pixels
    angle: float                   # rotation of the sheet, degrees
    slant: float                   # shear of the glyph, degrees (italic-like)
    stretch: float                 # width / height scale of the glyph (condensed < 1)
    tilt: tuple[float, float]      # sheet tilt about the frame's x and y axes, degrees
    weight: float                  # stroke growth (+) or thinning (-), fraction of the height
    paper: tuple[float, float, float]
    ink: tuple[float, float, float]
    opacity: float                 # share of the paper's light the ink absorbs
    grain: float                   # pencil graphite: share of the ink that flecks away
    exposure: float                # paper brightness at the centre, 0-255 (above 255 clips)
    gradient: tuple[float, float]  # light falloff across the frame, fraction (x, y)
    vignette: float                # light lost at the frame's corners, fraction
    shadows: tuple[tuple[float, float, float, float, float], ...]  # angle, offset, width,
    #                                darkness, softness: each a band of shade across the frame
    cast: tuple[float, float, float]  # white balance gains (B, G, R)
    defocus: float                 # Gaussian blur sigma, pixels
    motion: tuple[float, float]    # motion blur length (px) and direction (degrees)
    noise: float                   # sensor noise sigma at mid grey, grey levels
    jpeg: int                      # JPEG quality, 0 = not compressed

    def shaken(self, rng: np.random.Generator, pixels: float = 2.0) -> Shot:
        """The same shot a frame later: the hand moved the camera a little."""
        dx, dy = rng.normal(0.0, pixels, 2)
        return replace(self, centre=(self.centre[0] + dx, self.centre[1] + dy))


def random_shot(rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT) -> Shot:
    """A shot drawn from the ranges a user's camera meets, aimed into the demo's ROI."""
    roi_x, roi_y, side, _ = default_roi(height, width)
    digit = rng.uniform(1 / 6, 1 / 2)  # of the frame height
    # The digit sits inside the aim box with a margin of paper: the framing fits the
    # lighting on the box's border, so ink there is clutter to it.
    room = max(0.0, side * 0.92 - digit * height) / 2
    centre = (roi_x + side / 2 + rng.uniform(-room, room) * 0.7,
              roi_y + side / 2 + rng.uniform(-room, room) * 0.7)
    paper = PAPERS[rng.choice(list(PAPERS), p=[0.55, 0.25, 0.2])]
    ink_name = rng.choice(list(INKS), p=[0.5, 0.25, 0.1, 0.15])
    ink, opacity = INKS[ink_name]
    # Shade from a hand, a phone or a lamp's arm: broad and mostly soft-edged in room light.
    shadows = tuple((rng.uniform(0, 180), rng.uniform(-0.5, 0.5), rng.uniform(0.15, 0.6),
                     rng.uniform(0.1, 0.35), float(np.exp(rng.uniform(np.log(0.02), np.log(0.2)))))
                    for _ in range(rng.choice(3, p=[0.65, 0.3, 0.05])))
    motion = rng.uniform(0, 7) if rng.random() < 0.4 else 0.0
    return Shot(
        height=digit, centre=centre, angle=rng.normal(0, 4), slant=rng.uniform(-12, 12),
        stretch=float(np.exp(rng.uniform(np.log(0.75), np.log(1.3)))),
        tilt=(rng.uniform(-25, 25), rng.uniform(-25, 25)),
        weight=rng.uniform(-0.025, 0.05) if ink_name != "pencil" else rng.uniform(-0.02, 0.01),
        paper=tuple(c * rng.uniform(0.95, 1.03) for c in paper),  # type: ignore[arg-type]
        ink=tuple(c * rng.uniform(0.8, 1.2) for c in ink),  # type: ignore[arg-type]
        opacity=opacity * rng.uniform(0.7, 1.0),
        grain=rng.uniform(0.15, 0.4) if ink_name == "pencil" else 0.0,
        # Auto exposure puts the paper between mid grey and white (and past it, clipping).
        exposure=rng.uniform(0.6, 1.15) * 255, gradient=tuple(rng.uniform(-0.4, 0.4, 2)),
        vignette=rng.uniform(0, 0.4), shadows=shadows,
        cast=tuple(rng.uniform(0.94, 1.06, 3)),  # type: ignore[arg-type]
        defocus=rng.uniform(0, 2.2) if rng.random() < 0.7 else 0.0,
        motion=(motion, rng.uniform(0, 180)), noise=rng.uniform(1, 8),
        jpeg=int(rng.integers(35, 96)) if rng.random() < 0.85 else 0,
    )


def plain_shot(rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT) -> Shot:
    """A shot in kind conditions, as the sample clip was before the camera model: the sheet
    square to the camera and in focus, a digit 1/5 to 1/3 of the frame high turned by up to
    8°, black ink on white paper under a gentle gradient, a little noise, no shadows or JPEG.
    For comparing models on easy frames."""
    shot = random_shot(rng, width, height)
    roi_x, roi_y, side, _ = default_roi(height, width)
    digit = rng.uniform(0.2, 0.36)
    room = max(0.0, side * 0.92 - digit * height) / 2
    centre = (roi_x + side / 2 + rng.uniform(-room, room) * 0.7,
              roi_y + side / 2 + rng.uniform(-room, room) * 0.7)
    return replace(shot, height=digit, centre=centre, angle=rng.uniform(-8, 8),
                   tilt=(0.0, 0.0), slant=0.0, stretch=1.0, weight=0.0,
                   paper=PAPERS["white"], ink=INKS["black"][0],
                   opacity=rng.uniform(0.55, 0.9), grain=0.0,
                   exposure=rng.uniform(0.65, 0.98) * 255,
                   gradient=tuple(rng.uniform(-0.2, 0.2, 2)),
                   vignette=0.0, shadows=(), cast=(1.0, 1.0, 1.0), defocus=0.0,
                   motion=(0.0, 0.0), noise=rng.uniform(2, 7), jpeg=0)


def photograph(coverage: np.ndarray, shot: Shot, rng: np.random.Generator,
               width: int = WIDTH, height: int = HEIGHT,
               view: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``coverage`` (float32 0–1 ink, cropped to the digit) photographed as ``shot``: a BGR
    ``width``×``height`` frame, or only its window ``view`` (x, y, w, h): the same pixels,
    bar JPEG block edges, at a fraction of the cost (training renders the ROI alone)."""
    x0, y0, w, h = view or (0, 0, width, height)
    if shot.weight:  # on the glyph before it is warped: a small window, the same strokes
        coverage = thicken(coverage, shot.weight * (coverage.shape[0] - 2))
    ink = place(coverage, shot, width, height, (x0, y0, w, h))
    if shot.grain:
        ink *= 1.0 - np.float32(shot.grain) * rng.random(ink.shape, dtype=np.float32)
    absorbed = ink * np.float32(shot.opacity)
    light = illumination(shot, width, height, (x0, y0, w, h))
    cast = np.asarray(shot.cast, np.float32)
    paper = np.asarray(shot.paper, np.float32) * cast / np.float32(255.0)
    pigment = np.asarray(shot.ink, np.float32) * cast / np.float32(255.0)
    frame = (paper - absorbed[:, :, None] * (paper - pigment)) * light[:, :, None]
    frame = blur(frame, shot)
    # Shot noise grows with the light (sigma is the noise at mid grey); numpy's generator,
    # not OpenCV's, so that the seed decides it. Mostly luminance noise, as after a
    # camera's demosaicing and denoising: one draw for the three channels.
    noise = rng.standard_normal((h, w), dtype=np.float32)
    noise *= np.float32(shot.noise) * np.sqrt(np.maximum(light, 1.0) / np.float32(128.0))
    frame += noise[:, :, None]
    image = cv2.convertScaleAbs(frame)  # rounds and saturates (values are never negative
    #                                     enough for the absolute value to matter)
    if shot.jpeg:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, shot.jpeg])
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else image
    return image


def place(coverage: np.ndarray, shot: Shot, width: int, height: int,
          view: tuple[int, int, int, int]) -> np.ndarray:
    """The digit's ink on the frame's window ``view``: scaled, slanted, rotated and seen on
    a tilted sheet."""
    gh, gw = coverage.shape
    scale = shot.height * height / max(gh - 2, 1)  # glyphs carry a one-pixel margin
    centre_glyph = np.array([[1, 0, -gw / 2], [0, 1, -gh / 2], [0, 0, 1]])
    shape = np.diag([scale * shot.stretch, scale, 1.0])
    shape[0, 1] = -math.tan(math.radians(shot.slant)) * scale  # top leans right
    angle = math.radians(shot.angle)
    rotate = np.array([[math.cos(angle), -math.sin(angle), 0],
                       [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    move = np.array([[1, 0, shot.centre[0]], [0, 1, shot.centre[1]], [0, 0, 1]])
    crop = np.array([[1, 0, -view[0]], [0, 1, -view[1]], [0, 0, 1]])
    matrix = crop @ tilt_homography(shot.tilt, width, height) @ move @ rotate @ shape \
        @ centre_glyph
    return cv2.warpPerspective(coverage, matrix, view[2:], flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def tilt_homography(tilt: tuple[float, float], width: int, height: int) -> np.ndarray:
    """Frame → frame map of a sheet turned by ``tilt`` degrees about axes through the point
    the camera looks at (the frame's centre), seen by a pinhole camera.

    Untilted, the sheet lies at distance f (the focal length) so one sheet unit is one
    pixel; tilted, the sheet point (X, Y) is at R·(X, Y, 0) + (0, 0, f) and is seen at
    f·P/P_z. The frame's centre stays put; the far side shrinks, the near side grows.
    """
    ax, ay = (math.radians(t) for t in tilt)
    focal = FOCAL * width
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rotation = rx @ ry
    k = np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]])
    plane = np.column_stack([rotation[:, 0], rotation[:, 1], [0, 0, focal]])
    to_sheet = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
    matrix = k @ plane @ to_sheet
    return matrix / matrix[2, 2]


def thicken(ink: np.ndarray, radius: float) -> np.ndarray:
    """Grow (radius > 0) or thin (< 0) the strokes by about ``radius`` pixels, never thinning
    a stroke away."""
    size = round(abs(radius) * 2)
    if size < 1:
        return ink
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size + 1, size + 1))
    if radius > 0:
        return cv2.dilate(ink, kernel)
    thinner = cv2.erode(ink, kernel)
    # A glyph's thinnest stroke may vanish: keep at least a faint trace of the original.
    return np.maximum(thinner, ink * np.float32(0.35))


def illumination(shot: Shot, width: int, height: int,
                 view: tuple[int, int, int, int]) -> np.ndarray:
    """Light reaching the sheet in the window ``view`` (grey levels on white paper):
    exposure, gradient, vignette and soft shadow bands, in frame coordinates (-½ to ½)."""
    x0, y0, w, h = view
    xs = ((np.arange(x0, x0 + w, dtype=np.float32) + 0.5) / width - 0.5)[None, :]
    ys = ((np.arange(y0, y0 + h, dtype=np.float32) + 0.5) / height - 0.5)[:, None]
    light = np.float32(shot.exposure) * (1 + np.float32(shot.gradient[0]) * xs
                                         + np.float32(shot.gradient[1]) * ys)
    light *= 1 - np.float32(shot.vignette) * 2 * (xs * xs + ys * ys)
    for angle, offset, band, darkness, softness in shot.shadows:
        a = math.radians(angle)
        across = np.float32(math.cos(a)) * xs + np.float32(math.sin(a)) * ys - np.float32(offset)
        edge = (np.float32(band / 2) - np.abs(across)) / np.float32(softness)
        light *= 1 - np.float32(darkness) * np.clip(0.5 + edge, 0, 1)
    return np.maximum(light, 0)


def blur(frame: np.ndarray, shot: Shot) -> np.ndarray:
    """Defocus (Gaussian) and motion (a line kernel) blur."""
    if shot.defocus > 0.3:
        frame = cv2.GaussianBlur(frame, (0, 0), shot.defocus)
    length, direction = shot.motion
    if length >= 2:
        size = math.ceil(length) | 1
        kernel = np.zeros((size, size), np.float32)
        c = size // 2
        dx, dy = math.cos(math.radians(direction)), math.sin(math.radians(direction))
        cv2.line(kernel, (round(c - dx * length / 2), round(c - dy * length / 2)),
                 (round(c + dx * length / 2), round(c + dy * length / 2)), 1.0, 1, cv2.LINE_AA)
        frame = cv2.filter2D(frame, -1, kernel / kernel.sum())
    return frame


def mnist_coverage(digit: np.ndarray) -> np.ndarray:
    """A 28×28 MNIST-style digit (white ink on black, uint8) as ink coverage cropped to its
    strokes with a one-pixel margin, like a font glyph."""
    coverage = digit.reshape(digit.shape[0], digit.shape[1]).astype(np.float32) / 255.0
    x, y, w, h = cv2.boundingRect((coverage > 0.05).astype(np.uint8))
    if w == 0 or h == 0:
        return np.pad(coverage, 1)
    return np.pad(coverage[y:y + h, x:x + w], 1)
