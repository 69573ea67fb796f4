"""The device runtime: no TensorFlow, quantized I/O, one preprocessing, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, assert_clean_failure, run_module

import runtime
from runtime.bundle import load_images
from runtime.errors import ImageError, ModelFileError, SpecError
from runtime.preprocess import prepare, to_model_values
from runtime.spec import ModelSpec, QuantParams

SPEC = ModelSpec(labels=("a", "b", "c"), height=28, width=28)


def test_runtime_never_imports_tensorflow(exported_bundle: Path) -> None:
    """A fresh interpreter: import, load both engines, predict; TensorFlow stays out."""
    code = f"""
import sys, numpy as np, runtime
image = np.full((40, 30, 3), 200, np.uint8)
for name in ("model.onnx", "model.int8.onnx", "model.tflite", "model.int8.tflite"):
    runtime.load(r"{exported_bundle}/" + name).predict(image)
heavy = [m for m in ("tensorflow", "keras", "onnx", "tf2onnx") if m in sys.modules]
print("HEAVY", heavy)
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout


def test_float_and_int8_files_give_the_top1_export_reported(exported_bundle: Path,
                                                           tmp_path: Path) -> None:
    """In a fresh interpreter without TensorFlow, each file's top-1 against Keras's (computed
    here, independently) is what export reported, and float32 files never disagree."""
    import keras

    images, _ = load_images(exported_bundle / "eval.npz")
    keras_top1 = keras.models.load_model(exported_bundle / "model.keras").predict(
        images.astype(np.float32), verbose=0).argmax(1)
    np.save(tmp_path / "keras_top1.npy", keras_top1)
    code = f"""
import json, sys, numpy as np, runtime
from runtime.bundle import APP_TFLITE, EXPORT_NAMES, load_images
from runtime.preprocess import prepare_batch
images, labels = load_images(r"{exported_bundle}/eval.npz")
keras_top1 = np.load(r"{tmp_path}/keras_top1.npy")
for name in [*EXPORT_NAMES.values(), APP_TFLITE]:
    classifier = runtime.load(r"{exported_bundle}/" + name)
    top1 = classifier.probabilities(prepare_batch(images, classifier.spec)).argmax(1)
    print(json.dumps({{"file": name, "agreement": float((top1 == keras_top1).mean()),
                      "accuracy": float((top1 == labels).mean())}}))
assert "tensorflow" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    measured = {r["file"]: r for r in map(json.loads, result.stdout.splitlines())}
    report = json.loads((exported_bundle / "export_report.json").read_text())
    for entry in report["files"]:
        assert measured[entry["file"]]["agreement"] == pytest.approx(entry["agreement"])
        assert measured[entry["file"]]["accuracy"] == pytest.approx(entry["accuracy"])
        if entry["precision"] == "float32":
            assert measured[entry["file"]]["agreement"] == 1.0


def test_int8_io_uses_the_files_own_quantization(exported_bundle: Path) -> None:
    tflite = runtime.load(exported_bundle / "model.int8.tflite")
    onnx = runtime.load(exported_bundle / "model.int8.onnx")
    assert tflite.backend.input_dtype == np.int8 and onnx.backend.input_dtype == np.uint8
    assert tflite.input_quant == QuantParams(1.0, -128, "int8")  # raw pixels minus 128: exact
    assert onnx.input_quant == QuantParams(1.0, 0, "uint8")
    images, _ = load_images(exported_bundle / "eval.npz")
    raw = tflite.backend.run(tflite.input_quant.quantize(images[:4].astype(np.float32)))
    assert raw.dtype == np.int8  # the engine really runs int8 ...
    probs = tflite.probabilities(images[:4])
    assert probs.dtype == np.float32  # ... callers never see it
    assert np.allclose(probs.sum(1), 1, atol=0.05)
    assert np.array_equal(probs, tflite.output_quant.dequantize(raw))


def test_quant_params_round_trip_and_saturate() -> None:
    q = QuantParams(0.5, 10, "int8")
    values = np.array([-100.0, -1.0, 0.0, 3.2, 1000.0], np.float32)
    assert q.quantize(values).tolist() == [-128, 8, 10, 16, 127]
    assert q.dequantize(q.quantize(np.array([3.0]))).tolist() == [3.0]
    with pytest.raises(SpecError):
        QuantParams(0.0, 0, "int8")


def test_one_preprocessing_for_any_colour_layout_and_size() -> None:
    gray = np.random.default_rng(0).integers(0, 256, (50, 40), dtype=np.uint8)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)  # fully opaque
    results = [prepare(image, SPEC) for image in (gray, gray[:, :, None], bgr, bgra)]
    assert all(r.shape == (28, 28, 1) and r.dtype == np.uint8 for r in results)
    assert all(np.array_equal(results[0], r) for r in results[1:])
    rgb_spec = SPEC.replace(color="rgb")
    blue = np.zeros((10, 10, 3), np.uint8)
    blue[:, :, 0] = 255  # BGR blue
    assert prepare(blue, rgb_spec)[0, 0].tolist() == [0, 0, 255]  # model sees RGB
    transparent = np.zeros((10, 10, 4), np.uint8)  # alpha 0: composited over white paper
    assert prepare(transparent, SPEC).min() == 255
    assert to_model_values(np.array([0, 255], np.uint8), SPEC.replace(
        value_range=(-1.0, 1.0))).tolist() == [-1.0, 1.0]


def test_phone_photos_are_read_upright_and_other_formats_keep_alpha() -> None:
    """A portrait phone photo is stored sideways with an EXIF orientation tag: it is read
    upright, as every viewer shows it; PNG keeps its alpha channel (composited later)."""
    import io

    from PIL import Image

    from runtime.preprocess import decode_image

    upright = np.zeros((60, 40), np.uint8)  # an "L": tall bar, foot to the right
    upright[5:55, 8:16] = 255
    upright[47:55, 8:34] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    stored = io.BytesIO()
    Image.fromarray(np.rot90(upright)).save(stored, "JPEG", quality=95, exif=exif)
    read = decode_image(stored.getvalue(), "portrait.jpg")
    assert read.shape == (60, 40, 1)
    assert np.abs(read[..., 0].astype(int) - upright).mean() < 8  # JPEG noise only
    rgba = np.zeros((8, 8, 4), np.uint8)
    ok, png = cv2.imencode(".png", rgba)
    assert ok and decode_image(png.tobytes(), "clear.png").shape == (8, 8, 4)
    # Float and 32-bit files (HDR, PFM, TIFF) are read as 0–255 pixels, not refused.
    for suffix, pixels in ((".pfm", upright.astype(np.float32) / 255), (".hdr", np.dstack(
            [upright.astype(np.float32) * 3] * 3)), (".tiff", upright.astype(np.int32) * 1000)):
        ok, data = cv2.imencode(suffix, pixels)
        read = decode_image(data.tobytes(), f"x{suffix}")
        assert ok and read.dtype == np.uint8, suffix
        assert np.abs(read[..., 0].astype(int) - upright).max() <= 8, suffix
    glare = upright.astype(np.float32) / 255
    glare[0, 0] = np.inf  # a saturated pixel is white, not black
    ok, data = cv2.imencode(".pfm", glare)
    assert ok and decode_image(data.tobytes(), "glare.pfm")[0, 0, 0] == 255
    # A header claiming more pixels than OpenCV decodes is an ImageError, not a cv2.error.
    huge = bytearray(cv2.imencode(".png", upright)[1].tobytes())
    huge[16:24] = (70000).to_bytes(4, "big") * 2  # IHDR width and height
    with pytest.raises(ImageError, match=r"cannot decode huge\.png"):
        decode_image(bytes(huge), "huge.png")


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((28, 28), np.float32), "uint8"),
    (np.zeros((28, 28, 2), np.uint8), "shape"),
    (np.zeros((0, 28), np.uint8), "empty"),
    ([[0, 1], [2, 3]], "numpy array"),
])
def test_images_of_unexpected_shape_or_dtype_are_refused(image: object, message: str,
                                                         exported_bundle: Path) -> None:
    classifier = runtime.load(exported_bundle / "model.int8.tflite")
    with pytest.raises(ImageError, match=message):
        classifier.predict(image)  # type: ignore[arg-type]
    with pytest.raises(ImageError, match="model inputs must be uint8"):
        classifier.probabilities(np.zeros((1, 32, 32, 1), np.uint8))


def test_broken_model_files_are_clear_errors_and_never_crash(exported_bundle: Path,
                                                            tmp_path: Path) -> None:
    """Every corruption in a child interpreter: it must survive and report each one."""
    rng = np.random.default_rng(0)
    cases = []
    for name in ("model.int8.onnx", "model.int8.tflite"):
        data = (exported_bundle / name).read_bytes()
        suffix = Path(name).suffix
        variants = {"empty": b"", "truncated": data[: len(data) // 3],
                    "header_only": data[:16], "random": rng.bytes(len(data))}
        for label, content in variants.items():
            path = tmp_path / f"{label}{suffix}"
            path.write_bytes(content)
            cases.append(str(path))
    cases.append(str(tmp_path / "missing.onnx"))
    code = f"""
import runtime
for path in {cases!r}:
    try:
        runtime.load(path)
        print("LOADED", path)
    except runtime.ModelFileError as exc:
        print("CLEAR", str(exc).splitlines()[0][:80])
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr  # no segfault, no uncaught exception
    assert result.stdout.count("CLEAR") == len(cases), result.stdout


def test_wrong_suffix_and_spec_fallbacks(exported_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="unknown model type"):
        runtime.load(exported_bundle / "spec.json")
    import onnx

    bare = onnx.load(str(exported_bundle / "model.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(SpecError, match="no sidecar"):
        runtime.load(tmp_path / "bare.onnx")
    shutil.copyfile(exported_bundle / "model.onnx.json", tmp_path / "bare.onnx.json")
    assert runtime.load(tmp_path / "bare.onnx").labels == tuple("0123456789")
    wrong = json.loads((exported_bundle / "model.onnx.json").read_text()) | {"height": 32}
    (tmp_path / "bare.onnx.json").write_text(json.dumps(wrong))
    with pytest.raises(SpecError, match="spec describes 32x28x1"):
        runtime.load(tmp_path / "bare.onnx")


def test_frames_of_non_digit_models_use_the_roi_or_whole_frame(tmp_path: Path) -> None:
    import keras

    from export.tflite import convert

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(inputs)))
    spec = ModelSpec(labels=("x", "y", "z"), height=16, width=16, color="rgb")
    data, _ = convert(model, spec, "float32")
    (tmp_path / "m.tflite").write_bytes(data)
    classifier = runtime.load(tmp_path / "m.tflite")
    frame = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    whole = classifier.classify_frame(frame)
    assert whole.roi == (0, 0, 160, 120) and len(whole.predictions) == 3
    part = classifier.classify_frame(frame, roi=(10, 20, 40, 30))
    expected = classifier.predict(frame[20:50, 10:50])
    assert [p.label for p in part.predictions] == [p.label for p in expected]
    with pytest.raises(ImageError, match="does not lie inside"):
        classifier.classify_frame(frame, roi=(150, 0, 40, 40))


def test_predict_cli_text_json_and_errors(exported_bundle: Path, tmp_path: Path) -> None:
    images, _ = load_images(exported_bundle / "eval.npz")
    digit = tmp_path / "digit.png"
    cv2.imwrite(str(digit), images[0])
    model = str(exported_bundle / "model.int8.tflite")
    text = run_module("runtime", "predict", "--model", model, str(digit), "--top-k", "2")
    assert text.returncode == 0 and text.stdout.startswith(f"{digit}: ")
    as_json = run_module("runtime", "predict", "--model", model, str(digit), "--json")
    record = json.loads(as_json.stdout)
    assert len(record["predictions"]) == 3 and record["image"] == str(digit)
    assert_clean_failure(run_module("runtime", "predict", "--model", model,
                                    str(tmp_path / "none.png")), "cannot read image")
    assert_clean_failure(run_module("runtime", "predict", "--model", str(tmp_path / "x.onnx"),
                                    str(digit)), "cannot read model")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert_clean_failure(run_module("runtime", "predict", "--model", model,
                                    str(tmp_path / "bad.png")), "cannot decode")
    assert_clean_failure(run_module("runtime", "predict", "--model", model, str(digit),
                                    "--roi", "1,2,3"), "--roi")


@pytest.mark.parametrize(("change", "message"), [
    ({"labels": ["a", "b", "c"]}, "3 labels but the model has 10 outputs"),
    ({"output_quant": {"scale": 0.004, "zero_point": 0, "dtype": "int8"}}, "output as int8"),
    ({"value_range": 5}, r"m\.onnx\.json: spec value_range must be \[low, high\]"),
    ({"value_range": [0]}, "value_range must be"),
    ({"schema_version": "2"}, "schema_version must be a whole number"),
    ({"height": "28"}, "height must be a positive integer"),
    ({"min_confidence": 1.5}, "min_confidence must be a probability"),
    ({"min_confidence": "0.4"}, "min_confidence must be a probability"),
])
def test_a_spec_that_does_not_fit_the_file_is_a_spec_error(change: dict, message: str,
                                                          exported_bundle: Path,
                                                          tmp_path: Path) -> None:
    import onnx

    bare = onnx.load(str(exported_bundle / "model.int8.onnx"))
    del bare.metadata_props[:]  # only the (edited) sidecar describes it
    onnx.save(bare, str(tmp_path / "m.onnx"))
    sidecar = json.loads((exported_bundle / "model.int8.onnx.json").read_text()) | change
    (tmp_path / "m.onnx.json").write_text(json.dumps(sidecar))
    with pytest.raises(SpecError, match=message):
        runtime.load(tmp_path / "m.onnx")


def test_sidecar_errors_name_the_sidecar_and_odd_onnx_types(exported_bundle: Path,
                                                            tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    bare = onnx.load(str(exported_bundle / "model.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "m.onnx"))
    (tmp_path / "m.onnx.json").write_text('{"labels": ["0"],')
    with pytest.raises(SpecError, match=r"m\.onnx\.json: spec is not valid JSON"):
        runtime.load(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").unlink()
    (tmp_path / "m.onnx.json").mkdir()
    with pytest.raises(SpecError, match=r"cannot read the spec .*m\.onnx\.json"):
        runtime.load(tmp_path / "m.onnx")
    # A foreign model taking float64 pixels runs; one taking int64 is refused by name.
    spec = json.loads((exported_bundle / "model.onnx.json").read_text())
    for elem, name in ((TensorProto.DOUBLE, "f64"), (TensorProto.INT64, "i64")):
        graph = helper.make_graph(
            [helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["f"], ["flat"]),
             helper.make_node("Slice", ["flat", "start", "end", "axis"], ["y"])],
            name, [helper.make_tensor_value_info("x", elem, [1, 28, 28, 1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
            [helper.make_tensor("start", TensorProto.INT64, [1], [0]),
             helper.make_tensor("end", TensorProto.INT64, [1], [10]),
             helper.make_tensor("axis", TensorProto.INT64, [1], [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                  ir_version=8)
        onnx.save(model, str(tmp_path / f"{name}.onnx"))
        (tmp_path / f"{name}.onnx.json").write_text(json.dumps(spec | {"output": "logits"}))
    image = np.zeros((28, 28), np.uint8)
    image[0, :10] = np.arange(10) * 20  # the first ten pixels are the "logits"
    assert runtime.load(tmp_path / "f64.onnx").predict(image, framed=True)[0].label == "9"
    with pytest.raises(ModelFileError, match=r"i64\.onnx: its input is tensor\(int64\)"):
        runtime.load(tmp_path / "i64.onnx")
