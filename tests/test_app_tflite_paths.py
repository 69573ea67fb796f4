"""The app-ready re-wiring on the files other models make: RGB input with a value range that
raw pixels do not hit exactly (MobileNet's -1..1), logits outputs, and float-input files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runtime
from export import app_tflite
from runtime.spec import ModelSpec

pytestmark = pytest.mark.slow  # builds Keras models and converts them


def tiny_model(channels: int, softmax: bool) -> object:
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, channels))
    x = layers.Conv2D(8, 3, activation="relu")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(4, activation="softmax" if softmax else None)
    model = keras.Model(inputs, dense(x))
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 20, bias])  # spread the logits: answers that can differ
    model(np.zeros((1, 16, 16, channels), np.float32))
    return model


def compare(int8: bytes, spec: ModelSpec, tmp_path: Path, pixels: np.ndarray) -> None:
    """The app file through the runtime answers like the int8 file it was made from."""
    app, app_spec = app_tflite.convert(int8, spec)
    (tmp_path / "int8.tflite").write_bytes(int8)
    (tmp_path / "app.tflite").write_bytes(app)
    source, rewired = runtime.load(tmp_path / "int8.tflite"), runtime.load(tmp_path / "app.tflite")
    assert rewired.backend.input_dtype == np.uint8 and rewired.backend.input_shape[1:] == \
        (16, 16, 3)
    assert rewired.backend.output_dtype in (np.uint8, np.float32)
    assert app_spec.output == "probabilities" and app_spec.value_range == (0.0, 255.0)
    expected = source.probabilities(pixels)
    if spec.output == "logits":
        assert source.spec.output == "logits"  # the runtime applied softmax for the int8 file
    got = rewired.probabilities(app_tflite.app_pixels(pixels))
    assert np.allclose(got.sum(1), 1, atol=1e-3)
    assert np.abs(got - expected).max() <= 0.05, np.abs(got - expected).max()
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95


@pytest.mark.parametrize(("channels", "value_range", "softmax"), [
    (3, (-1.0, 1.0), True),    # MobileNet-style RGB: a diagonal 1x1 convolution maps pixels
    (1, (0.0, 1.0), False),    # grey, [0, 1], logits: grey conversion, softmax added
    (3, (0.0, 255.0), True),   # RGB, raw pixels: a QUANTIZE alone
])
def test_converter_int8_files(channels: int, value_range: tuple[float, float], softmax: bool,
                              tmp_path: Path) -> None:
    from export import tflite

    rng = np.random.default_rng(0)
    model = tiny_model(channels, softmax)
    spec = ModelSpec(labels=("a", "b", "c", "d"), height=16, width=16,
                     color="rgb" if channels == 3 else "grayscale", value_range=value_range,
                     output="probabilities" if softmax else "logits")
    calibration = rng.integers(0, 256, (64, 16, 16, channels), dtype=np.uint8)
    int8, int8_spec = tflite.convert(model, spec, "int8", calibration)
    compare(int8, int8_spec, tmp_path, rng.integers(0, 256, (200, 16, 16, channels),
                                                    dtype=np.uint8))


@pytest.mark.parametrize("channels", [1, 3])
def test_float_input_files(channels: int, tmp_path: Path) -> None:
    """A file that takes float32 (dynamic range here; some float-fallback int8 files too):
    DEQUANTIZE turns the uint8 pixels into float values, a float 1x1 convolution maps them."""
    from export import tflite

    rng = np.random.default_rng(0)
    spec = ModelSpec(labels=("a", "b", "c", "d"), height=16, width=16,
                     color="rgb" if channels == 3 else "grayscale", value_range=(-1.0, 1.0))
    dynamic, dynamic_spec = tflite.convert(tiny_model(channels, True), spec, "dynamic")
    (tmp_path / "check.tflite").write_bytes(dynamic)
    assert runtime.load(tmp_path / "check.tflite").backend.input_dtype == np.float32
    compare(dynamic, dynamic_spec, tmp_path, rng.integers(0, 256, (200, 16, 16, channels),
                                                          dtype=np.uint8))
