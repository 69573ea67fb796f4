"""``--calib-data`` layouts: Keras's mnist.npz, images/labels, x/y, (N, H, W) and (N, H, W, C),
float and one-hot arrays, class folders; and one-line errors for files that match none.

The readers need no TensorFlow; the error tests run ``python -m export`` in-process on a tiny
untrained model, which fails on the data before any conversion starts."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from export.calib_data import read_samples
from export.errors import CalibrationError
from runtime.spec import ModelSpec

DIGITS = ModelSpec(labels=tuple(str(i) for i in range(10)), height=28, width=28)


def _digits(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28), dtype=np.uint8), rng.integers(0, 10, count)


def test_keras_mnist_layout_calibrates_on_train_and_checks_on_test(tmp_path: Path) -> None:
    x_train, y_train = _digits(60)
    x_test, y_test = _digits(20, seed=1)
    np.savez(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train.astype(np.uint8),
             x_test=x_test, y_test=y_test.astype(np.uint8))
    samples = read_samples(tmp_path / "mnist.npz", DIGITS)
    pixels = samples.images.images
    assert pixels.shape == (60, 28, 28, 1) and pixels.dtype == np.uint8
    assert np.array_equal(samples.images.images[..., 0], x_train)
    assert np.array_equal(samples.images.labels, y_train)
    assert samples.check is not None and np.array_equal(samples.check.images[..., 0], x_test)
    assert np.array_equal(samples.check.labels, y_test)


@pytest.mark.parametrize("keys", [("images", "labels"), ("x", "y"), ("X", "Y"),
                                  ("arr_0", "arr_1"), ("x_train", "y_train")])
@pytest.mark.parametrize("channel_axis", [False, True])
def test_image_and_label_key_pairs_with_or_without_a_channel_axis(
        keys: tuple[str, str], channel_axis: bool, tmp_path: Path) -> None:
    images, labels = _digits(40)
    stored = images[..., None] if channel_axis else images
    np.savez(tmp_path / "s.npz", **{keys[0]: stored, keys[1]: labels})
    samples = read_samples(tmp_path / "s.npz", DIGITS)
    assert np.array_equal(samples.images.images[..., 0], images)
    assert np.array_equal(samples.images.labels, labels) and samples.check is None


@pytest.mark.parametrize(("scale", "offset", "said"), [(1 / 255, 0.0, "0–1"),
                                                       (1.0, 0.0, "0–255"),
                                                       (1 / 127.5, -1.0, "-1–1")])
def test_float_arrays_are_read_back_as_pixels_and_the_assumption_is_said(
        scale: float, offset: float, said: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    images, labels = _digits(40)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # the full range, as real data has
    np.savez(tmp_path / "f.npz", x=images.astype(np.float32) * scale + offset, y=labels)
    with caplog.at_level(logging.INFO, logger="export"):
        samples = read_samples(tmp_path / "f.npz", DIGITS)
    assert np.abs(samples.images.images[..., 0].astype(int) - images).max() <= 1
    assert said in caplog.text


def test_one_hot_labels_channels_first_and_flat_rows(tmp_path: Path) -> None:
    images, labels = _digits(40)
    one_hot = np.eye(10, dtype=np.float32)[labels]
    np.savez(tmp_path / "nchw.npz", images=images[:, None], labels=one_hot)
    np.savez(tmp_path / "flat.npz", x=images.reshape(40, 784), y=labels[:, None])
    for name in ("nchw.npz", "flat.npz"):
        samples = read_samples(tmp_path / name, DIGITS)
        assert np.array_equal(samples.images.images[..., 0], images), name
        assert np.array_equal(samples.images.labels, labels), name


def test_rgb_arrays_are_read_as_rgb_and_resized_to_the_model(tmp_path: Path) -> None:
    red = np.zeros((40, 56, 56, 3), np.uint8)
    red[..., 0] = 255  # numpy arrays are RGB: channel 0 is red
    np.save(tmp_path / "red.npy", red)
    samples = read_samples(tmp_path / "red.npy", DIGITS)
    assert samples.images.images.shape == (40, 28, 28, 1) and samples.images.labels is None
    assert abs(int(samples.images.images[0, 5, 5, 0]) - 76) <= 1  # 0.299 × 255, red's grey


def test_labels_outside_the_model_mean_agreement_only(tmp_path: Path) -> None:
    images, _ = _digits(40)
    np.savez(tmp_path / "s.npz", images=images, labels=np.arange(40))
    assert read_samples(tmp_path / "s.npz", DIGITS).images.labels is None


def test_class_folders_in_sorted_order_and_a_plain_folder(tmp_path: Path) -> None:
    images, _ = _digits(6)
    for i, name in enumerate(["cat", "ant", "bee"]):
        (tmp_path / "classes" / name).mkdir(parents=True)
        for j in range(2):
            cv2.imwrite(str(tmp_path / "classes" / name / f"{j}.png"), images[2 * i + j])
    (tmp_path / "classes" / "bee" / "broken.png").write_bytes(b"not an image")
    samples = read_samples(tmp_path / "classes", DIGITS)
    assert samples.class_names == ("ant", "bee", "cat")  # as Keras numbers them
    assert sorted(samples.images.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    (tmp_path / "plain").mkdir()
    cv2.imwrite(str(tmp_path / "plain" / "a.png"), images[0])
    plain = read_samples(tmp_path / "plain", DIGITS)
    assert plain.class_names is None and plain.images.labels is None
    # A linked folder is read once, a link back up never: as runtime predict lists it.
    (tmp_path / "more").mkdir()
    cv2.imwrite(str(tmp_path / "more" / "b.png"), images[1])
    (tmp_path / "more" / "b.png").rename(tmp_path / "more" / "b")  # known by content
    (tmp_path / "plain" / "sub").mkdir()  # one subfolder: still a plain folder
    for name, target in (("more", "more"), ("again", "more"), ("up", "")):
        (tmp_path / "plain" / "sub" / name).symlink_to(tmp_path / target)
    assert len(read_samples(tmp_path / "plain", DIGITS).images) == 2


@pytest.mark.parametrize(("arrays", "needles"), [
    ({"a": np.zeros((4, 28, 28)), "b": np.zeros(4)},
     ("found arrays a, b", "images/labels", "x/y", "x_train/y_train")),
    ({"x": np.zeros((40, 28, 28)), "y": np.zeros(39)}, ("40 images", "one label per image")),
    ({"x": np.full((40, 28, 28), 300, np.int32), "y": np.zeros(40)}, ("integers from 300",)),
    ({"x": np.linspace(-3, 3, 40 * 784).reshape(40, 28, 28), "y": np.zeros(40)},
     ("floats from -3 to 3", "uint8")),
    ({"x": np.zeros((40, 5)), "y": np.zeros(40)}, ("shape (40, 5)",)),
    ({"x": np.array(["a"] * 40), "y": np.zeros(40)}, ("not pixels",)),
])
def test_unusable_npz_files_are_one_line_errors(arrays: dict, needles: tuple[str, ...],
                                                tmp_path: Path) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CalibrationError) as error:
        read_samples(tmp_path / "bad.npz", DIGITS)
    message = str(error.value)
    assert "\n" not in message and "bad.npz" in message
    for needle in needles:
        assert needle in message, message


def test_pickled_corrupt_and_missing_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}] * 3, dtype=object), y=np.zeros(3))
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "notes.txt").write_text("hello")
    for name, needle in (("obj.npz", "Python objects"), ("cut.npz", "not a readable .npz"),
                         ("none.npz", "no such file"), ("notes.txt", "expected a folder")):
        with pytest.raises(CalibrationError, match=needle):
            read_samples(tmp_path / name, DIGITS)


@pytest.fixture(scope="module")
def tiny_digit_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, strides=4)(inputs))
    path = tmp_path_factory.mktemp("tiny") / "tiny.keras"
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x)).save(path)
    return path


def test_export_names_the_keys_it_looked_for_in_one_line(tiny_digit_model: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    from export.__main__ import main

    np.savez(tmp_path / "odd.npz", pixels=np.zeros((40, 28, 28), np.uint8), classes=np.zeros(40))
    code = main(["--model", str(tiny_digit_model), "--calib-data", str(tmp_path / "odd.npz"),
                 "--bundle", str(tmp_path / "out")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert "odd.npz" in err[0] and "classes, pixels" in err[0] and "x_train/y_train" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_class_folders_become_the_labels(tiny_digit_model: Path, tmp_path: Path) -> None:
    from export.foreign import ForeignOptions, from_foreign_model

    images, _ = _digits(40)
    names = [f"digit_{i}" for i in range(10)]
    for i, image in enumerate(images):
        folder = tmp_path / "data" / names[i % 10]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), image)
    source = from_foreign_model(tiny_digit_model, tmp_path / "data",
                                ForeignOptions(value_range=(0.0, 255.0)))
    assert source.spec.labels == tuple(sorted(names))
    assert len(source.check) + len(source.calibration) == 40
    with pytest.raises(CalibrationError, match="digit_0"):
        from_foreign_model(tiny_digit_model, tmp_path / "data",
                           ForeignOptions(labels=[str(i) for i in range(10)]))
