"""--photograph: training digits photographed by the camera model and framed by the runtime."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import EdgeCNNError
from runtime.spec import ModelSpec
from scenes import handwritten
from train.data import Split
from train.photos import with_photographs
from train.sources import load_source

DIGITS = tuple(str(d) for d in range(10))


@functools.cache
def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    source = load_source("mnist5k")
    return source.images, source.labels


def _mnist(count: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _mnist5k()
    return images[:count], labels[:count]


def test_photographs_follow_seed_and_pixels_not_order(tmp_path: Path) -> None:
    digits, _ = _mnist(4)
    photos, shows = handwritten.photographed(digits, 2, seed=7, cache=tmp_path / "a")
    assert photos.shape == (8, 28, 28) and photos.dtype == np.uint8
    assert shows.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert not np.array_equal(photos[0], photos[1])  # two copies are two different shots
    # The same digits in another order, rendered afresh: each digit's photographs are the
    # same ones, whatever the split put before it.
    flipped, flipped_shows = handwritten.photographed(digits[::-1], 2, seed=7,
                                                      cache=tmp_path / "b")
    assert np.array_equal(flipped[flipped_shows == 3], photos[shows == 0])
    other, _ = handwritten.photographed(digits, 2, seed=8, cache=tmp_path / "a")
    assert not np.array_equal(other, photos)
    # A photograph is the framed digit: ink on black, centred like an MNIST digit.
    for photo in photos:
        assert photo.max() > 128 and photo[:, :3].max() < 64 and photo[:, -3:].max() < 64


def test_photographs_are_cached_and_a_damaged_cache_is_rendered_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    digits, _ = _mnist(2)
    first, _ = handwritten.photographed(digits, 1, seed=0, cache=tmp_path)
    [cached] = tmp_path.glob("handwritten-*.npz")
    photograph = handwritten.printed.framed_photo

    def no_rendering(*args: object) -> None:
        raise AssertionError("rendered again instead of read from the cache")

    monkeypatch.setattr(handwritten.printed, "framed_photo", no_rendering)
    again, _ = handwritten.photographed(digits, 1, seed=0, cache=tmp_path)
    assert np.array_equal(first, again)
    monkeypatch.setattr(handwritten.printed, "framed_photo", photograph)
    cached.write_bytes(b"not a zip file")
    mended, _ = handwritten.photographed(digits, 1, seed=0, cache=tmp_path)
    assert np.array_equal(mended, first)


def _joined_split() -> Split:
    digits, labels = _mnist(6)
    images = np.concatenate([digits, 255 - digits])[..., None]  # 6 mnist5k, 6 "printed"
    parts = np.array(["mnist5k"] * 6 + ["printed"] * 6)
    return Split(labels=np.concatenate([labels, labels]), images=images, parts=parts)


def test_photograph_adds_k_copies_of_one_part_only(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("EDGECNN_CACHE", str(tmp_path))
    split = _joined_split()
    spec = ModelSpec(labels=DIGITS, height=28, width=28, color="grayscale", framing="digit")
    assert with_photographs(split, spec, "", 1) is split
    more = with_photographs(split, spec, "mnist5k=2", seed=1)
    assert len(more) == 12 + 12
    assert np.array_equal(more.images[:12], split.images)  # the originals stay, first
    added = slice(12, None)
    assert more.parts[added].tolist() == ["mnist5k"] * 12
    assert more.labels[added].tolist() == np.repeat(split.labels[:6], 2).tolist()
    assert more.images.shape[1:] == (28, 28, 1)
    # A model of another input size gets its photographs at that size.
    wide = ModelSpec(labels=DIGITS, height=32, width=32, color="grayscale", framing="digit")
    resized = Split(labels=split.labels, images=np.pad(split.images, ((0, 0), (2, 2),
                                                                      (2, 2), (0, 0))),
                    parts=split.parts)
    assert with_photographs(resized, wide, "mnist5k=1", 1).images.shape[1:] == (32, 32, 1)
    # Data that is not joined is its own one part.
    alone = Split(labels=split.labels[:6], images=split.images[:6])
    assert len(with_photographs(alone, spec, "mnist5k=1", 1, whole="mnist5k")) == 12


@pytest.mark.parametrize("option,message", [
    ("digits=1", "no part 'digits'"), ("mnist5k=0", "PART=K"), ("mnist5k", "PART=K"),
    ("=1", "PART=K"),
])
def test_photograph_option_errors_name_the_option(option: str, message: str) -> None:
    spec = ModelSpec(labels=DIGITS, height=28, width=28, color="grayscale", framing="digit")
    with pytest.raises(EdgeCNNError, match=f"--photograph '{option}'.*{message}"):
        with_photographs(_joined_split(), spec, option, 1)


def test_only_digit_sets_can_be_photographed() -> None:
    photos = ModelSpec(labels=DIGITS, height=28, width=28, color="grayscale", framing="none")
    with pytest.raises(EdgeCNNError, match="only digit sets"):
        with_photographs(_joined_split(), photos, "mnist5k=1", 1)

