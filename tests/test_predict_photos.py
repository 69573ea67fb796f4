"""The obvious call is the right call: ``Classifier.predict(photo)`` on a digit model frames
the photo exactly as ``python -m runtime predict`` does, and pre-framed images skip it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import mnist5k, run_module

import runtime
from runtime.bundle import EVAL_SET, load_images
from runtime.errors import ImageError
from runtime.preprocess import prepare
from scenes import camera

PAPER = 205


def stroke_photo(seed: int = 0) -> np.ndarray:
    """A dark vertical stroke on light, slightly uneven, noisy paper: a camera's "1"."""
    rng = np.random.default_rng(seed)
    xs = np.linspace(-1, 1, 640, dtype=np.float32)[None, :]
    paper = PAPER + 15 * xs + np.zeros((480, 1), np.float32)
    cv2.line(paper, (322, 160), (318, 330), 60.0, 16)
    noisy = paper[:, :, None] + rng.normal(0, 4, (480, 640, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def font_photo(digit: int, font: int = cv2.FONT_HERSHEY_SIMPLEX) -> np.ndarray:
    """A digit in one of OpenCV's Hershey fonts (not ours) on a 640×480 sheet."""
    photo = np.full((480, 640, 3), PAPER, np.uint8)
    cv2.putText(photo, str(digit), (270, 320), font, 6, (40, 40, 40), 14, cv2.LINE_AA)
    return photo


def photos(count: int = 6, digits: tuple[np.ndarray, np.ndarray] | None = None,
           ) -> dict[str, np.ndarray]:
    """Rendered photos: a stroke, Hershey digits and real MNIST digits put on paper."""
    rng = np.random.default_rng(3)
    images, labels = digits or mnist5k()
    found = {"stroke": stroke_photo()}
    for digit in range(count):
        found[f"font{digit}"] = font_photo(digit, (cv2.FONT_HERSHEY_SIMPLEX,
                                                   cv2.FONT_HERSHEY_DUPLEX)[digit % 2])
    for index in rng.choice(len(images), size=count, replace=False):
        found[f"mnist{index}_{labels[index]}"] = camera.photograph(
            camera.mnist_coverage(images[index]), camera.random_shot(rng), rng)
    return found


def cli_labels(model: Path, shots: dict[str, np.ndarray], folder: Path) -> dict[str, str]:
    paths = []
    for name, image in shots.items():
        paths.append(folder / f"{name}.png")
        cv2.imwrite(str(paths[-1]), image)
    result = run_module("runtime", "predict", "--model", str(model), "--json", "--top-k", "1",
                        *map(str, paths))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(r["image"]).stem: (r["predictions"][0]["label"] if r["predictions"] else None)
            for r in records}


def api_labels(classifier: runtime.Classifier, shots: dict[str, np.ndarray]) -> dict[str, str]:
    return {name: (p[0].label if (p := classifier.predict(image, top_k=1)) else None)
            for name, image in shots.items()}


def test_predict_reads_a_photo_as_the_cli_does(tiny_digit_model: Path, tmp_path: Path) -> None:
    classifier = runtime.load(tiny_digit_model)
    shots = photos()
    api = api_labels(classifier, shots)
    assert api == cli_labels(tiny_digit_model, shots, tmp_path)
    for name, image in shots.items():
        framed = classifier.classify_frame(image, top_k=3).predictions
        assert classifier.predict(image) == framed, name
    assert api["stroke"] == "1"


def test_images_at_model_size_or_marked_framed_are_used_as_they_are(
        tiny_digit_model: Path) -> None:
    classifier = runtime.load(tiny_digit_model)
    images, _ = mnist5k()
    digit = images[0]  # 28×28, white on black: already framed
    unframed = classifier.top(classifier.probabilities(prepare(digit, classifier.spec)[None])[0],
                              3)
    assert classifier.predict(digit) == unframed
    big = cv2.resize(digit, (56, 56), interpolation=cv2.INTER_CUBIC)
    resized = classifier.probabilities(prepare(big, classifier.spec)[None])[0]
    assert classifier.predict(big, framed=True) == classifier.top(resized, 3)
    assert classifier.predict(big) == classifier.classify_frame(big).predictions
    assert classifier.predict(digit, framed=False) == \
        classifier.classify_frame(digit).predictions
    # The same digit as dark ink on white paper, at 28×28: a scan or a crop of a photo, not a
    # framed digit. It is framed like a photo: light ink on black, where the digit was.
    paper = 255 - digit
    assert classifier.predict(paper) == classifier.classify_frame(paper).predictions
    seen = classifier.model_pixels(paper)[..., 0].astype(float)
    assert seen[0].mean() < 10 and np.corrcoef(seen.ravel(), digit.ravel())[0, 1] > 0.8
    dim = (100 - digit.astype(np.float32) * (80 / 255)).astype(np.uint8)  # grey paper, dim
    assert classifier.model_pixels(dim)[0].max() < 10  # framed too: a black margin
    assert classifier.predict(paper, framed=True) == classifier.top(
        classifier.probabilities(prepare(paper, classifier.spec)[None])[0], 3)


def test_predict_batch_is_predict_for_each_image(tiny_digit_model: Path) -> None:
    classifier = runtime.load(tiny_digit_model)
    images, _ = mnist5k()
    mixed = [stroke_photo(), images[1], font_photo(7), np.full((300, 300), PAPER, np.uint8)]
    assert classifier.predict_batch(mixed) == [classifier.predict(image) for image in mixed]
    assert classifier.predict_batch(mixed)[3] == []  # blank paper: no digit, no guess
    at_size = images[:5, :, :, None]
    assert classifier.predict_batch(at_size, top_k=1) == \
        [classifier.predict(image, top_k=1) for image in at_size]


def test_roi_and_framed_contradict(tiny_digit_model: Path) -> None:
    classifier = runtime.load(tiny_digit_model)
    with pytest.raises(ImageError, match="roi"):
        classifier.predict(stroke_photo(), roi=(0, 0, 100, 100), framed=True)


@pytest.mark.slow
def test_trained_int8_tflite_reads_photos_as_the_cli_does(exported_bundle: Path,
                                                          tmp_path: Path) -> None:
    """The issue's case: a dark vertical stroke on light paper must not come back as "0"."""
    model = exported_bundle / "model.int8.tflite"
    shots = photos(10, load_images(exported_bundle / EVAL_SET))  # held-out digits
    api = api_labels(runtime.load(model), shots)
    assert api == cli_labels(model, shots, tmp_path)
    assert api["stroke"] == "1"
    rendered = {name: label for name, label in api.items() if name.startswith("mnist")}
    right = sum(label == name.rsplit("_", 1)[1] for name, label in rendered.items())
    assert right >= 8, rendered  # held-out MNIST digits on paper, read through the framing
