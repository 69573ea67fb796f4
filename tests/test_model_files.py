"""Every model Keras can load (issue 11): legacy .h5, SavedModel folders, Lambda layers behind
--trust-model, inputs of any size or without a channel axis; and one-line messages that name
the file the user named, never cut off mid-sentence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_module

import runtime
from runtime.bundle import load_images
from runtime.errors import first_line


def _export(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, list[str]]:
    from export.__main__ import main

    capsys.readouterr()  # what building the test's model printed (Keras's .h5 warning) is not ours
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def _samples(path: Path, shape: tuple[int, ...] = (28, 28), count: int = 40) -> Path:
    rng = np.random.default_rng(0)
    np.savez(path, images=rng.integers(0, 256, (count, *shape), dtype=np.uint8),
             labels=rng.integers(0, 3, count))
    return path


def _small(inputs, *hidden):
    import keras

    x = inputs
    for layer in hidden:
        x = layer(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


@pytest.mark.slow
def test_legacy_h5_exports_int8(trained_bundle: Path, tmp_path: Path) -> None:
    """The issue's command, on an .h5 that Keras itself saved, with a Keras-layout .npz."""
    import keras

    keras.models.load_model(trained_bundle / "model.keras").save(tmp_path / "legacy.h5")
    train_x, train_y = load_images(trained_bundle / "calib.npz")
    test_x, test_y = load_images(trained_bundle / "eval.npz")
    np.savez(tmp_path / "mnist.npz", x_train=train_x[..., 0], y_train=train_y.astype(np.uint8),
             x_test=test_x[..., 0], y_test=test_y.astype(np.uint8))
    out = tmp_path / "out"
    result = run_module("export", "--model", str(tmp_path / "legacy.h5"), "--calib-data",
                        str(tmp_path / "mnist.npz"), "--int8", "--formats", "tflite",
                        "--bundle", str(out))  # what follows loading is ONNX's as TFLite's
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads((out / "export_report.json").read_text())
    assert report["all_passed"] and [f["file"] for f in report["files"]] == [
        "model.tflite", "model.int8.tflite",
        "model.int8.app.tflite"]  # the app file too: a model brought from elsewhere gets one
    assert report["check_images"] == len(test_x)  # x_test checks, x_train calibrates
    assert report["spec"]["value_range"] == [0.0, 255.0]  # its Rescaling layer, found
    assert "value range: 0,255 assumed" in result.stdout
    classifier = runtime.load(out / "model.int8.tflite")
    assert (classifier.probabilities(test_x).argmax(1) == test_y).mean() > 0.8


def test_lambda_layers_need_trust_and_the_message_names_them(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    import keras

    inputs = keras.Input((28, 28, 1))
    model = _small(inputs, keras.layers.Lambda(lambda t: t / 255.0, name="scale_pixels"),
                   keras.layers.Flatten())
    model.save(tmp_path / "lam.keras")
    model.save(tmp_path / "lam.h5")
    samples = _samples(tmp_path / "s.npz")
    for name in ("lam.keras", "lam.h5"):
        code, _, err = _export(["--model", str(tmp_path / name), "--calib-data", str(samples),
                                "--bundle", str(tmp_path / f"out_{name}")], capsys)
        assert code == 2 and len(err) == 1, err
        assert name in err[0] and "'scale_pixels'" in err[0] and err[0].endswith("--trust-model")
    code, _, err = _export(["--model", str(tmp_path / "lam.keras"), "--calib-data", str(samples),
                            "--trust-model", "--formats", "tflite", "--bundle",
                            str(tmp_path / "trusted")], capsys)
    assert code == 0, err
    assert runtime.load(tmp_path / "trusted" / "model.tflite").spec.input_shape == (28, 28, 1)


@pytest.mark.parametrize("how", ["model.export", "tf.saved_model.save"])
def test_savedmodel_folders_export(how: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = _small(keras.Input((12, 12, 1)), keras.layers.Rescaling(1 / 255),
                   keras.layers.Conv2D(4, 3), keras.layers.Flatten())
    folder = tmp_path / "saved"
    if how == "model.export":
        model.export(str(folder), verbose=False)
    else:
        tf.saved_model.save(model, str(folder))
    out = tmp_path / "out"
    code, _, err = _export(["--model", str(folder), "--calib-data",
                            str(_samples(tmp_path / "s.npz", (12, 12))), "--bundle", str(out)],
                           capsys)
    assert code == 0, err
    report = json.loads((out / "export_report.json").read_text())
    assert report["all_passed"] and report["spec"]["height"] == 12
    assert report["source_sha256"] and report["reference"]["size_bytes"] > 0
    images = np.load(tmp_path / "s.npz")["images"][..., None]
    probs = runtime.load(out / "model.onnx").probabilities(images[:8])
    keras_probs = model.predict(images[:8].astype(np.float32), verbose=0)
    assert np.abs(probs - keras_probs).max() < 1e-4


def test_any_size_input_is_exported_at_the_size_given(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    import keras

    model = _small(keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3),
                   keras.layers.GlobalAveragePooling2D())
    model.save(tmp_path / "any.keras")
    samples = str(_samples(tmp_path / "s.npz", (20, 24, 3)))
    code, _, err = _export(["--model", str(tmp_path / "any.keras"), "--calib-data", samples,
                            "--bundle", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err) == 1 and "any.keras" in err[0], err
    assert "any size" in err[0] and "--input-size HxW" in err[0]
    for bad, needle in (("big", "HEIGHTxWIDTH"), ("0x4", "HEIGHTxWIDTH")):
        code, _, err = _export(["--model", str(tmp_path / "any.keras"), "--calib-data", samples,
                                "--input-size", bad, "--bundle", str(tmp_path / "o")], capsys)
        assert code == 2 and len(err) == 1 and needle in err[0], err
    code, _, err = _export(["--model", str(tmp_path / "any.keras"), "--calib-data", samples,
                            "--input-size", "20x24", "--formats", "tflite", "--bundle",
                            str(tmp_path / "out")], capsys)
    assert code == 0, err
    spec = runtime.load(tmp_path / "out" / "model.tflite").spec
    assert (spec.height, spec.width, spec.color) == (20, 24, "rgb")


def test_inputs_without_a_channel_axis_or_flattened_become_images(tmp_path: Path) -> None:
    import keras

    from export.foreign import ForeignOptions, from_foreign_model

    samples = _samples(tmp_path / "s.npz")
    quickstart = _small(keras.Input((28, 28)), keras.layers.Flatten())  # TF's beginner tutorial
    mlp = _small(keras.Input((784,)), keras.layers.Dense(8))
    images = np.load(samples)["images"][:4]
    for name, model in (("quick.keras", quickstart), ("mlp.keras", mlp)):
        model.save(tmp_path / name)
        source = from_foreign_model(tmp_path / name, samples, ForeignOptions(
            value_range=(0.0, 255.0)))
        assert source.spec.input_shape == (28, 28, 1), name
        expected = model.predict(images.reshape(4, *model.inputs[0].shape[1:]).astype(np.float32),
                                 verbose=0)
        got = source.model.predict(images[..., None].astype(np.float32), verbose=0)
        assert np.allclose(got, expected, atol=1e-6), name
    with pytest.raises(runtime.EdgeCNNError, match="--input-size HxW"):
        _small(keras.Input((50,)), keras.layers.Dense(8)).save(tmp_path / "odd.keras")
        from_foreign_model(tmp_path / "odd.keras", samples, ForeignOptions())


def test_messages_name_the_model_the_user_named(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    import keras

    @keras.saving.register_keras_serializable(package="tests_byom")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    _small(keras.Input((8, 8, 1)), Doubler(), keras.layers.Flatten()).save(tmp_path / "c.keras")
    keras.saving.get_custom_objects().pop("tests_byom>Doubler")
    (tmp_path / "folder").mkdir()
    (tmp_path / "cut.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    (tmp_path / "noise.keras").write_bytes(np.random.default_rng(0).bytes(500))
    (tmp_path / "m.tflite").write_bytes(b"x")
    samples = str(_samples(tmp_path / "s.npz", (8, 8)))
    for name, needle in (("c.keras", "custom class 'Doubler'"),
                         ("folder", "not a TensorFlow SavedModel"),
                         ("cut.h5", "truncated or corrupt"),
                         ("noise.keras", "not a .keras file"),
                         ("m.tflite", "already an exported .tflite"),
                         ("missing.keras", "no Keras model")):
        code, _, err = _export(["--model", str(tmp_path / name), "--calib-data", samples,
                                "--bundle", str(tmp_path / f"out_{name}")], capsys)
        assert code == 2 and len(err) == 1, (name, err)
        assert name in err[0] and needle in err[0], err[0]


def test_labels_named_twice_are_refused_before_any_work(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    code, _, err = _export(["--model", str(tmp_path / "none.keras"), "--calib-data",
                            str(tmp_path), "--labels", "a,a,b, c ,c", "--bundle",
                            str(tmp_path / "out")], capsys)  # not ./artifacts, wherever run
    assert code == 2 and err == ["export: error: --labels names 'a', 'c' more than once; each "
                                 "class needs its own name"], err


def test_bundle_exports_refuse_flags_for_foreign_models(trained_bundle: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    code, _, err = _export(["--bundle", str(bundle), "--value-range=0,1"], capsys)
    assert code == 2 and len(err) == 1 and "--value-range" in err[0], err


def test_first_line_keeps_whole_sentences() -> None:
    keras_message = ("Requested the deserialization of a `Lambda` layer whose `function` is a "
                     "Python lambda. This carries a potential risk of arbitrary code execution "
                     "and thus it is disallowed by default. If you trust the source of the "
                     "artifact, you can override this error by passing `safe_mode=False`.")
    line = first_line(ValueError(keras_message))
    assert line.endswith(".") and line in keras_message and len(line) <= 200
    assert first_line(ValueError("short\nsecond line")) == "short"
    assert first_line(ValueError("word " * 100)).endswith("…")


def test_augmentation_layers_inside_the_model_are_left_out(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """TensorFlow's image classification tutorial: augmentation first, Rescaling, logits."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    augment = keras.Sequential([layers.RandomFlip("horizontal", name="flip"),
                                layers.RandomRotation(0.1, name="rotate"),
                                layers.RandomZoom(0.1, name="zoom")], name="data_augmentation")
    model = keras.Sequential([keras.Input((16, 16, 3)), augment, layers.Rescaling(1 / 255),
                              layers.Conv2D(4, 3, activation="relu"), layers.Flatten(),
                              layers.Dense(3)])
    model.save(tmp_path / "flowers.keras")
    out = tmp_path / "out"
    code, stdout, err = _export(["--model", str(tmp_path / "flowers.keras"), "--calib-data",
                                 str(_samples(tmp_path / "s.npz", (16, 16, 3))), "--bundle",
                                 str(out)], capsys)
    assert code == 0, err
    assert "flip, rotate, zoom act only while training" in stdout
    images = np.load(tmp_path / "s.npz")["images"][:8]
    keras_probs = keras.ops.softmax(model(images.astype(np.float32), training=False)).numpy()
    for name in ("model.onnx", "model.tflite"):
        probs = runtime.load(out / name).probabilities(images)
        assert np.abs(probs - keras_probs).max() < 1e-4, name


@pytest.mark.parametrize("activation", [None, "sigmoid", "softmax"])
def test_one_unit_binary_classifiers_become_two_classes(activation: str | None, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(
        keras.layers.Rescaling(1 / 255)(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(1, activation=activation)(x))
    model.save(tmp_path / "binary.keras")
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(20):
            cv2.imwrite(str(tmp_path / "data" / name / f"{i}.png"),
                        rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
    out = tmp_path / "out"
    code, stdout, err = _export(["--model", str(tmp_path / "binary.keras"), "--calib-data",
                                 str(tmp_path / "data"), "--formats", "tflite", "--bundle",
                                 str(out)], capsys)
    if activation == "softmax":  # always 1.0: an always-"dogs" file would pass every gate
        assert code != 0 and len(err) == 1 and not out.exists()
        assert "softmax over one unit" in err[0] and "binary.keras" in err[0]
        return
    assert code == 0, err
    assert "one output unit" in stdout
    classifier = runtime.load(out / "model.tflite")
    assert classifier.labels == ("cats", "dogs")
    images = rng.integers(0, 256, (6, 10, 10, 3), dtype=np.uint8)
    unit = model.predict(images.astype(np.float32), verbose=0)[:, 0]
    p = unit if activation else 1 / (1 + np.exp(-unit))
    assert np.allclose(classifier.probabilities(images), np.stack([1 - p, p], 1), atol=1e-5)


def test_names_tensorflow_refuses_are_renamed_and_the_tflite_file_is_made(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Keras takes any name; TensorFlow's scopes and signatures do not ("my input:0", "conv 1"),
    and TFLite's converter then failed with "'NoneType' object is not callable"."""
    import keras

    keras.utils.set_random_seed(2)
    image = keras.Input((12, 12, 1), name="my input:0")
    inner = keras.Sequential([keras.layers.Conv2D(2, 3, name="conv 1")], name="inner block")
    # A layer already named as 'scale 1' would be renamed: two scopes of one name failed alike.
    x = keras.layers.Flatten(name="scale_1")(
        inner(keras.layers.Rescaling(1 / 255, name="scale 1")(image)))
    model = keras.Model(image, keras.layers.Dense(3, activation="softmax", name="classes (3)")(x),
                        name="My Net")
    model.save(tmp_path / "odd.keras")
    out = tmp_path / "out"
    code, stdout, err = _export(["--model", str(tmp_path / "odd.keras"), "--calib-data",
                                 str(_samples(tmp_path / "s.npz", (12, 12))), "--formats",
                                 "tflite", "--bundle", str(out)], capsys)
    assert code == 0, err
    assert all(said in stdout for said in ("'conv 1' as 'conv_1'", "'scale 1' as 'scale_1_2'",
                                           "input 'my input:0' as 'image'",
                                           "'My Net' as 'My_Net'")), stdout
    assert any(line.startswith("odd.keras ") and line.endswith("reference")
               for line in stdout.splitlines()), stdout  # the table names the user's file
    images = np.load(tmp_path / "s.npz")["images"][:6]
    weights = model.get_weights()  # the same weights under names TensorFlow takes
    same = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])
    same.set_weights(weights)
    expected = same.predict(images[..., None].astype(np.float32), verbose=0)
    probs = runtime.load(out / "model.tflite").probabilities(images[..., None])
    assert np.abs(probs - expected).max() < 1e-5


@pytest.mark.parametrize("kind", ["uint8", "mixed_float16"])
def test_uint8_input_and_mixed_precision_models_export(kind: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """A model taking uint8 pixels made a float ONNX file with a uint8 input, which the
    runtime refused ("uint8 but neither the file nor its spec gives a scale"); a
    mixed_float16 model failed TFLite conversion ("Could not translate MLIR to FlatBuffer")."""
    import keras

    keras.utils.set_random_seed(3)
    policy = kind if kind == "mixed_float16" else None  # per layer: no global policy to undo
    image = keras.Input((10, 10, 3), dtype="uint8" if kind == "uint8" else "float32")
    x = keras.layers.Rescaling(1 / 255, dtype=policy)(image)
    x = keras.layers.Conv2D(4, 3, activation="relu", dtype=policy)(x)
    x = keras.layers.GlobalAveragePooling2D(dtype=policy)(x)
    model = keras.Model(image, keras.layers.Dense(3, activation="softmax", dtype="float32")(x))
    model.save(tmp_path / "m.keras")
    out = tmp_path / "out"
    code, stdout, err = _export(["--model", str(tmp_path / "m.keras"), "--calib-data",
                                 str(_samples(tmp_path / "s.npz", (10, 10, 3))), "--bundle",
                                 str(out)], capsys)
    assert code == 0, err
    said = {"uint8": "value range: 0,255 for m.keras, which takes uint8 pixels",
            "mixed_float16": "computes in mixed_float16: exported as float32"}[kind]
    assert said in stdout, stdout
    images = np.load(tmp_path / "s.npz")["images"][:8]
    expected = model.predict(images if kind == "uint8" else images.astype(np.float32), verbose=0)
    for name in ("model.onnx", "model.tflite"):
        probs = runtime.load(out / name).probabilities(images)
        assert np.abs(probs - expected).max() < (1e-5 if kind == "uint8" else 1e-2), name


def test_a_failed_export_into_a_new_folder_leaves_no_folder(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """Discretization is TensorFlow's Bucketize, which has no ONNX op: one line, and the
    folder export made for its files is gone again (it was left empty)."""
    import keras

    image = keras.Input((10, 10, 3))
    x = keras.layers.Discretization(bin_boundaries=[50.0, 100.0])(
        keras.layers.GlobalAveragePooling2D()(image))
    keras.Model(image, keras.layers.Dense(3, activation="softmax")(x)).save(tmp_path / "b.keras")
    out = tmp_path / "new" / "out"
    code, _, err = _export(["--model", str(tmp_path / "b.keras"), "--calib-data",
                            str(_samples(tmp_path / "s.npz", (10, 10, 3))), "--bundle", str(out)],
                           capsys)
    assert code == 2 and len(err) == 1 and "Bucketize" in err[0], err
    assert not (tmp_path / "new").exists()


def test_a_failed_int8_file_says_what_is_left_to_try() -> None:
    from types import SimpleNamespace

    from export.__main__ import _int8_advice, build_parser

    int8 = SimpleNamespace(precision="int8", passed=False)
    floats = SimpleNamespace(precision="float32", passed=False)
    args = build_parser().parse_args(["--int8"])
    assert "--qat 4" in _int8_advice(args, [int8]) and "--dynamic" in _int8_advice(args, [int8])
    assert "--qat" not in _int8_advice(build_parser().parse_args(["--qat", "4"]), [int8])
    assert "--repair auto" in _int8_advice(build_parser().parse_args(["--repair", "off"]), [int8])
    assert _int8_advice(args, [floats]) == ""


def test_a_sigmoid_saturated_on_every_sample_still_exports(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    """Only a softmax over one unit is always 1 and refused: a sigmoid that gives 0 (or 1)
    on every sample of a one-class folder (dark frames) still tells dark from bright."""
    import keras

    image = keras.Input((10, 10, 3))
    unit = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(image, unit(keras.layers.GlobalAveragePooling2D()(image)))
    unit.set_weights([np.full((3, 1), -100.0, np.float32), np.array([30.0], np.float32)])
    model.save(tmp_path / "night.keras")
    (tmp_path / "dark").mkdir()
    rng = np.random.default_rng(0)
    for n in range(40):
        cv2.imwrite(str(tmp_path / "dark" / f"{n}.png"),
                    rng.integers(0, 3, (10, 10, 3), dtype=np.uint8))
    out = tmp_path / "out"
    code, stdout, err = _export(["--model", str(tmp_path / "night.keras"), "--calib-data",
                                 str(tmp_path / "dark"), "--formats", "tflite", "--bundle",
                                 str(out)], capsys)
    assert code == 0, err
    assert "one output unit" in stdout
    classifier = runtime.load(out / "model.tflite")
    bright = np.full((1, 10, 10, 3), 255, np.uint8)
    dark = np.zeros((1, 10, 10, 3), np.uint8)
    assert classifier.probabilities(bright).argmax() != classifier.probabilities(dark).argmax()
