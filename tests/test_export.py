"""Export: Keras vs ONNX vs TFLite parity (float and quantized), self-describing files,
tamper detection, foreign models, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_failure, run_module

import runtime
from runtime.bundle import APP_TFLITE, EXPORT_NAMES, load_images
from runtime.files import sha256
from runtime.metadata import tflite_metadata
from runtime.spec import ModelSpec, QuantParams

FLOAT_ATOL = 1e-4     # float32 files vs Keras, on probabilities
FP16_ATOL = 2e-3      # float16 weights
INT8_MIN_AGREEMENT = 0.98
MAX_DROP_PP = 1.0


@pytest.fixture(scope="module")
def keras_probs(exported_bundle: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import keras

    images, labels = load_images(exported_bundle / "eval.npz")
    model = keras.models.load_model(exported_bundle / "model.keras")
    return images, labels, model.predict(images.astype(np.float32), verbose=0)


def test_every_file_is_placed_with_its_sidecar_and_report(exported_bundle: Path) -> None:
    report = json.loads((exported_bundle / "export_report.json").read_text())
    assert report["all_passed"] and len(report["files"]) == 7  # with model.int8.app.tflite
    chosen = json.loads((exported_bundle / "spec.json").read_text())["min_confidence"]
    assert chosen is not None  # the "not sure" threshold chosen at training...
    for name in [*EXPORT_NAMES.values(), APP_TFLITE]:
        assert (exported_bundle / name).is_file(), name
        sidecar = json.loads((exported_bundle / f"{name}.json").read_text())
        assert sidecar["validation"]["passed"] and sidecar["validation"]["file"] == name
        assert runtime.load(exported_bundle / name).spec.min_confidence == chosen  # ...in each
    leftovers = [p.name for p in exported_bundle.iterdir()
                 if p.name.startswith(".") or p.name.endswith(".rejected")]
    assert leftovers == []


@pytest.mark.parametrize("name", sorted(EXPORT_NAMES.values()))
def test_parity_with_keras(name: str, exported_bundle: Path, keras_probs: tuple) -> None:
    images, labels, reference = keras_probs
    classifier = runtime.load(exported_bundle / name)
    probs = classifier.probabilities(images)
    agreement = (probs.argmax(1) == reference.argmax(1)).mean()
    drop_pp = ((reference.argmax(1) == labels).mean() - (probs.argmax(1) == labels).mean()) * 100
    precision = classifier.spec.precision
    if precision == "float32":
        assert np.abs(probs - reference).max() <= FLOAT_ATOL
    elif precision == "float16":
        assert np.abs(probs - reference).max() <= FP16_ATOL
    else:
        assert agreement >= INT8_MIN_AGREEMENT, agreement
    assert drop_pp <= MAX_DROP_PP


def test_onnx_and_tflite_float_files_agree_with_each_other(exported_bundle: Path,
                                                           keras_probs: tuple) -> None:
    images = keras_probs[0]
    onnx_probs = runtime.load(exported_bundle / "model.onnx").probabilities(images)
    tflite_probs = runtime.load(exported_bundle / "model.tflite").probabilities(images)
    assert np.abs(onnx_probs - tflite_probs).max() <= FLOAT_ATOL


@pytest.mark.parametrize("name", ["model.int8.tflite", "model.int8.onnx"])
def test_lone_quantized_file_carries_labels_and_quantization(name: str, exported_bundle: Path,
                                                             tmp_path: Path) -> None:
    lone = tmp_path / name
    shutil.copyfile(exported_bundle / name, lone)  # no sidecar, no bundle
    data = lone.read_bytes()
    if name.endswith(".tflite"):
        embedded = ModelSpec.from_json(tflite_metadata(data))
    else:
        import onnx

        props = {p.key: p.value for p in onnx.load(str(lone)).metadata_props}
        embedded = ModelSpec.from_json(props["edgecnn.spec"])
    assert embedded.labels == tuple("0123456789") and embedded.precision == "int8"
    assert embedded.input_quant is not None and embedded.output_quant is not None
    assert embedded.input_quant.scale == pytest.approx(1.0)  # raw pixels are the int8 input
    classifier = runtime.load(lone)
    assert classifier.backend.input_dtype in (np.int8, np.uint8)
    assert classifier.input_quant == embedded.input_quant
    images, _ = load_images(exported_bundle / "eval.npz")
    top = classifier.predict(images[0])
    assert top[0].label in embedded.labels and 0 <= top[0].probability <= 1


def tamper_onnx(path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    biggest = max(model.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    weights = numpy_helper.to_array(biggest)
    biggest.CopyFrom(numpy_helper.from_array(-weights, biggest.name))
    onnx.save(model, str(path))


def tamper_tflite(data: bytes) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    biggest = max(tree.buffers, key=lambda b: 0 if b.data is None else len(b.data))
    biggest.data = biggest.data[::-1].copy()  # same size, scrambled weights
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def tampered_copy(model: Path, folder: Path) -> Path:
    """A copy of ``model`` in ``folder`` with its largest weights scrambled, same size."""
    copy = folder / model.name
    shutil.copyfile(model, copy)
    if copy.suffix == ".onnx":
        tamper_onnx(copy)
    else:
        copy.write_bytes(tamper_tflite(copy.read_bytes()))
    return copy


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx", "model.tflite",
                                  "model.int8.tflite"])
def test_validation_fails_when_a_file_is_tampered_with(name: str, exported_bundle: Path,
                                                       keras_probs: tuple,
                                                       tmp_path: Path) -> None:
    from export.validate import Reference, validate

    images, labels, reference = keras_probs
    copy = tampered_copy(exported_bundle / name, tmp_path)
    precision = "int8" if ".int8." in name else "float32"
    fmt = copy.suffix.lstrip(".")
    check = validate(copy, fmt, precision, Reference(reference, labels), images)
    assert not check.passed, check


def test_a_file_failing_validation_is_kept_only_as_rejected(trained_bundle: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    from export import tflite
    from export.__main__ import main

    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    real_save = tflite.save
    monkeypatch.setattr(tflite, "save", lambda data, path: real_save(tamper_tflite(data), path))
    assert main(["--bundle", str(bundle), "--formats", "tflite"]) == 1
    assert not (bundle / "model.tflite").exists()
    assert (bundle / "model.tflite.rejected").is_file()
    report = json.loads((bundle / "export_report.json").read_text())
    result = report["files"][0]
    assert report["all_passed"] is False and result["passed"] is False
    assert result["accuracy_change_pp"] < -MAX_DROP_PP
    assert "model.tflite.rejected" in capsys.readouterr().err
    with pytest.raises(runtime.ModelFileError, match="unknown model type"):
        runtime.load(bundle / "model.tflite.rejected")


def _foreign_digit_model(images: np.ndarray, labels: np.ndarray):
    """Not built by train: batch norm, depthwise conv, global pooling, logits, [0, 1] input."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = layers.Conv2D(16, 3, strides=2, use_bias=False)(inputs)
    x = layers.BatchNormalization(momentum=0.9)(x)  # few steps: let the statistics settle
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.Conv2D(32, 1, activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    model = keras.Model(inputs, layers.Dense(10)(x), name="foreign")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images / 255.0, labels, epochs=6, batch_size=64, verbose=0)
    return model


def test_foreign_keras_model_exports_and_validates(tmp_path: Path) -> None:
    from export.__main__ import main
    from train.sources import load_source

    source = load_source("mnist5k")
    order = np.random.default_rng(0).permutation(5000)
    train, held = order[:3000], order[3000:4000]
    images = source.images[..., None]
    model = _foreign_digit_model(images[train].astype(np.float32), source.labels[train])
    model.save(tmp_path / "foreign.keras")
    np.savez(tmp_path / "samples.npz", images=images[held], labels=source.labels[held])
    out = tmp_path / "out"
    assert main(["--model", str(tmp_path / "foreign.keras"), "--calib-data",
                 str(tmp_path / "samples.npz"), "--value-range", "0,1", "--bundle", str(out),
                 "--int8"]) == 0
    report = json.loads((out / "export_report.json").read_text())
    assert report["all_passed"] and report["spec"]["output"] == "logits"
    assert report["check_images"] == 500 and report["calibration_images"] == 500
    assert report["reference"]["accuracy"] > 0.9  # a real model, so quantization is tested
    onnx_int8 = runtime.load(out / "model.int8.onnx")
    assert onnx_int8.spec.value_range == (0.0, 1.0)
    assert onnx_int8.spec.min_confidence is None  # never chosen: trained elsewhere
    assert onnx_int8.input_quant == QuantParams(1 / 255, 0, "uint8")  # pixels are q exactly
    probs = onnx_int8.probabilities(images[held][:5])
    assert np.allclose(probs.sum(1), 1, atol=1e-3)  # softmax applied to logits


def test_small_mobilenetv2_exports_within_float_tolerance(tmp_path: Path) -> None:
    import cv2
    import keras

    from export.__main__ import main

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                           classes=4)
    model.save(tmp_path / "mobilenet.keras")
    rng = np.random.default_rng(0)
    samples = tmp_path / "samples"
    samples.mkdir()
    for i in range(40):
        cv2.imwrite(str(samples / f"{i}.png"), rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    out = tmp_path / "out"
    assert main(["--model", str(tmp_path / "mobilenet.keras"), "--calib-data", str(samples),
                 "--value-range=-1,1", "--bundle", str(out)]) == 0
    report = json.loads((out / "export_report.json").read_text())
    assert [f["precision"] for f in report["files"]] == ["float32", "float32"]
    assert all(f["max_abs_diff"] <= FLOAT_ATOL for f in report["files"])
    assert report["files"][0]["accuracy"] is None  # unlabelled samples: agreement only


def test_missing_and_corrupt_bundles_fail_cleanly(trained_bundle: Path, tmp_path: Path) -> None:
    assert_clean_failure(run_module("export", "--bundle", str(tmp_path / "none")),
                         "no bundle", "python -m train")
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    (bundle / "model.keras").write_bytes(np.random.default_rng(0).bytes(5000))
    assert_clean_failure(run_module("export", "--bundle", str(bundle)), "not a .keras file")
    assert sorted(p.name for p in bundle.iterdir()) == sorted(p.name for p in
                                                              trained_bundle.iterdir())


def test_too_few_calibration_images_leave_existing_files_untouched(exported_bundle: Path,
                                                                    tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(exported_bundle, bundle)
    before = {p.name: sha256(p) for p in bundle.iterdir()}
    result = run_module("export", "--bundle", str(bundle), "--int8", "--calib-samples", "5")
    assert_clean_failure(result, "--calib-samples 5")
    assert {p.name: sha256(p) for p in bundle.iterdir()} == before


def test_model_whose_input_is_not_an_image_is_refused(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((20,))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs)).save(
        tmp_path / "tabular.keras")
    np.savez(tmp_path / "s.npz", images=np.zeros((40, 8, 8, 1), np.uint8), labels=np.zeros(40))
    result = run_module("export", "--model", str(tmp_path / "tabular.keras"), "--calib-data",
                        str(tmp_path / "s.npz"), "--bundle", str(tmp_path / "out"))
    assert_clean_failure(result, "tabular.keras", "not an image", "--input-size")


def test_foreign_model_without_sample_images_says_what_it_needs(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inputs)
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat)).save(
        tmp_path / "tiny.keras")
    result = run_module("export", "--model", str(tmp_path / "tiny.keras"), "--bundle",
                        str(tmp_path / "out"))
    assert_clean_failure(result, "--calib-data")


@pytest.mark.parametrize("formats", ["onnx", "tflite"])
def test_unsupported_op_is_a_clear_error_with_nothing_left(formats: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    import keras
    import tensorflow as tf

    from export.__main__ import main

    @keras.saving.register_keras_serializable(package="tests")
    class Erfinv(keras.layers.Layer):  # no builtin TFLite kernel, no standard ONNX op
        def call(self, x):
            return tf.math.erfinv(tf.clip_by_value(x / 300.0, -0.9, 0.9))

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(Erfinv()(inputs))
    keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x)).save(
        tmp_path / "odd.keras")
    np.savez(tmp_path / "s.npz", images=np.zeros((40, 8, 8, 1), np.uint8), labels=np.zeros(40))
    out = tmp_path / "out"
    code = main(["--model", str(tmp_path / "odd.keras"), "--calib-data", str(tmp_path / "s.npz"),
                 "--bundle", str(out), "--formats", formats])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and ("Erfinv" in err[0] or "builtin" in err[0]), err
    assert not out.exists()  # export made it, and took it away again, empty


def test_foreign_model_never_writes_into_a_trained_bundle(trained_bundle: Path,
                                                          tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    (tmp_path / "other.keras").write_bytes((trained_bundle / "model.keras").read_bytes())
    result = run_module("export", "--model", str(tmp_path / "other.keras"), "--calib-data",
                        str(bundle / "eval.npz"), "--bundle", str(bundle))
    assert_clean_failure(result, "holds a trained bundle")


def test_int8_onnx_is_not_built_from_a_rejected_float_file(trained_bundle: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from export import onnx as onnx_format
    from export.__main__ import main

    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    real = onnx_format.export_float

    def tampered(model, spec, path):
        result = real(model, spec, path)
        tamper_onnx(path)
        return result

    monkeypatch.setattr(onnx_format, "export_float", tampered)
    assert main(["--bundle", str(bundle), "--formats", "onnx", "--int8"]) == 1
    report = json.loads((bundle / "export_report.json").read_text())
    assert [(f["file"], f["passed"]) for f in report["files"]] == [
        ("model.onnx.rejected", False), ("model.int8.onnx.rejected", False)]
    assert report["files"][1]["detail"].startswith("not built")
    assert not any(p.name in ("model.onnx", "model.int8.onnx") for p in bundle.iterdir())


def test_an_export_that_stops_midway_changes_nothing(exported_bundle: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    from export import tflite
    from export.__main__ import main
    from export.errors import UnsupportedModelError

    bundle = tmp_path / "bundle"
    shutil.copytree(exported_bundle, bundle)
    before = {p.name: sha256(p) for p in bundle.iterdir()}

    def fail(*args, **kwargs):
        raise UnsupportedModelError("TFLite conversion failed (simulated)")

    monkeypatch.setattr(tflite, "convert", fail)
    assert main(["--bundle", str(bundle), "--int8"]) == 2  # ONNX files were built first
    assert "simulated" in capsys.readouterr().err
    assert {p.name: sha256(p) for p in bundle.iterdir()} == before


def test_exported_files_are_readable_by_others(exported_bundle: Path) -> None:
    """Atomic writes start from 0600 temporary files; the results follow the umask."""
    for name in ("model.int8.tflite", "model.int8.onnx", "spec.json", "eval.npz"):
        assert (exported_bundle / name).stat().st_mode & 0o044, name
