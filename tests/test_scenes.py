"""The camera model and font discovery behind the printed source and the sample clip."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.framing import frame_digit
from scenes import camera, fonts


@pytest.fixture(scope="module")
def installed() -> list[fonts.Font]:
    return fonts.require_fonts(fonts.installed_fonts())


def test_installed_fonts_are_real_digit_fonts_grouped_by_family(
        installed: list[fonts.Font]) -> None:
    names = {f.family for f in installed}
    # matplotlib ships these; symbol and old-style-figure fonts are left out.
    assert {"DejaVu Sans", "DejaVu Serif", "STIXGeneral", "Computer Modern Roman"} <= names
    sources = " ".join(f.source for f in installed)
    assert "cmsy10" not in sources and "cmmi10" not in sources and "LastResort" not in sources
    # Styles of one design share a family: a split by family keeps them together.
    assert len({f.family for f in installed if "DejaVuSans-" in f.source}) == 1
    assert {f.family for f in installed if "/cm" in f.source} <= {
        "Computer Modern Roman", "Computer Modern Sans", "Computer Modern Typewriter"}


@pytest.mark.parametrize("family,expected", [
    ("DejaVu Sans Condensed", "DejaVu Sans"), ("Lato Black", "Lato"), ("cmb10",
     "Computer Modern Roman"), ("cmtt12", "Computer Modern Typewriter"), ("Bold", "Bold")])
def test_normalize_family(family: str, expected: str) -> None:
    assert fonts.normalize_family(family) == expected


def test_glyphs_are_cropped_ink(installed: list[fonts.Font]) -> None:
    for font in [installed[0], installed[-1], *fonts.opencv_fonts()[:1]]:
        one, eight = fonts.glyph(font, "1"), fonts.glyph(font, "8")
        for g in (one, eight):
            assert g.dtype == np.float32 and 0.99 <= g.max() <= 1.0 and g.min() == 0.0
            assert g[0].max() == 0 and g[:, 0].max() == 0  # the one-pixel margin
        assert eight.sum() > one.sum()  # an 8 has more ink than a 1


def test_no_fonts_is_one_clear_error() -> None:
    with pytest.raises(fonts.FontError, match="pip install matplotlib"):
        fonts.require_fonts([])


def test_renderer_is_deterministic_by_seed(installed: list[fonts.Font]) -> None:
    glyph = fonts.glyph(installed[0], "4")

    def shoot(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return camera.photograph(glyph, camera.random_shot(rng), rng)

    first, again, other = shoot(3), shoot(3), shoot(4)
    assert first.shape == (camera.HEIGHT, camera.WIDTH, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_shots_cover_the_camera_ranges() -> None:
    rng = np.random.default_rng(0)
    shots = [camera.random_shot(rng) for _ in range(400)]
    heights = [s.height for s in shots]
    assert min(heights) >= 1 / 6 and max(heights) <= 1 / 2 and np.ptp(heights) > 0.3
    assert {s.paper for s in shots} and len({round(s.ink[0], -1) for s in shots}) > 3
    assert max(abs(s.tilt[0]) for s in shots) > 20 and max(s.defocus for s in shots) > 2
    assert any(s.motion[0] >= 5 for s in shots) and any(s.shadows for s in shots)
    assert min(s.jpeg for s in shots if s.jpeg) < 45 and any(s.grain for s in shots)
    assert min(s.weight for s in shots) < -0.02 and max(s.weight for s in shots) > 0.04


def test_photographed_digit_is_found_where_it_was_placed(installed: list[fonts.Font]) -> None:
    rng = np.random.default_rng(1)
    shot = camera.random_shot(rng)
    shot = camera.Shot(**{**shot.__dict__, "shadows": (), "tilt": (0.0, 0.0), "angle": 0.0,
                          "exposure": 220.0, "opacity": 0.95, "grain": 0.0})
    framed = frame_digit(camera.photograph(fonts.glyph(installed[0], "7"), shot, rng))
    assert framed.ink_found and framed.inverted and framed.ink_box is not None
    x, y, w, h = framed.ink_box
    assert abs(x + w / 2 - shot.centre[0]) < 0.25 * h
    assert abs(y + h / 2 - shot.centre[1]) < 0.25 * h
    assert abs(h - shot.height * camera.HEIGHT) < 0.2 * h


def test_mnist_coverage_crops_to_the_strokes() -> None:
    digit = np.zeros((28, 28), np.uint8)
    digit[5:23, 12:16] = 255
    coverage = camera.mnist_coverage(digit)
    assert coverage.shape == (18 + 2, 4 + 2) and coverage.max() == 1.0
