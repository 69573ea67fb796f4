"""Files other tools accept: the app-ready TFLite file read by MediaPipe Tasks (a real
client), its standard TFLite Model Metadata, and the standard ONNX metadata fields."""

from __future__ import annotations

import io
import json
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.bundle import APP_TFLITE, load_images
from runtime.metadata import associated_files, tflite_metadata, with_tflite_metadata
from runtime.spec import ModelSpec


@pytest.fixture(scope="module")
def app_file(exported_bundle: Path) -> Path:
    path = exported_bundle / APP_TFLITE
    assert path.is_file(), "export --int8 wrote no app file (is mediapipe installed?)"
    return path


def metadata_of(model: bytes) -> object:
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    buffer = _buffer(model, "TFLITE_METADATA")
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    return schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAs(buffer, 0))


def _buffer(model: bytes, key: str) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    root = schema.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        if root.Metadata(i).Name() == key.encode():
            return root.Buffers(root.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    raise AssertionError(f"no {key} metadata")


def test_app_file_is_validated_and_reported(exported_bundle: Path, app_file: Path) -> None:
    report = json.loads((exported_bundle / "export_report.json").read_text())
    entry = next(f for f in report["files"] if f["file"] == APP_TFLITE)
    assert entry["passed"] and entry["backend"] == "litert" and entry["precision"] == "int8"
    assert entry["accuracy_change_pp"] >= -1.0 and entry["agreement"] >= 0.99
    sidecar = json.loads((exported_bundle / f"{APP_TFLITE}.json").read_text())
    assert sidecar["validation"]["passed"]


def test_app_file_takes_uint8_rgb_batch_one_and_returns_float(app_file: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=app_file.read_bytes())
    interpreter.allocate_tensors()
    (source,), (result,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert source["dtype"] == np.uint8 and list(source["shape"]) == [1, 28, 28, 3]
    assert result["dtype"] == np.float32 and list(result["shape"]) == [1, 10]


def test_app_file_metadata_is_the_standard_schema(exported_bundle: Path,
                                                  app_file: Path) -> None:
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    data = app_file.read_bytes()
    spec = ModelSpec.from_json(tflite_metadata(data))
    meta = metadata_of(data)
    assert meta.name.decode() == "twoconv image classifier"
    assert b"trained on mnist5k" in meta.description and b"converted to grayscale" in \
        meta.description
    assert meta.version.decode() == spec.version and len(spec.version) == 12
    (subgraph,) = meta.subgraphMetadata
    (image,), (probability,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    assert image.content.contentPropertiesType == schema.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == schema.ColorSpaceType.RGB
    (unit,) = image.processUnits
    assert unit.optionsType == schema.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [0.0] and list(unit.options.std) == [1.0]
    (labels,) = probability.associatedFiles
    assert labels.type == schema.AssociatedFileType.TENSOR_AXIS_LABELS
    packed = associated_files(data)
    assert packed[labels.name.decode()].decode().splitlines() == list("0123456789")
    # the label file is a plain zip appended to the model, as the metadata spec asks
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["labels.txt"]


def test_app_file_answers_like_the_int8_file_through_the_runtime(exported_bundle: Path,
                                                                 app_file: Path) -> None:
    """The runtime converts a grey image to RGB for the app file, the graph converts it
    back: the answers match the int8 file's (ties in its int8 softmax aside)."""
    images, labels = load_images(exported_bundle / "eval.npz")
    app = runtime.load(app_file)
    int8 = runtime.load(exported_bundle / "model.int8.tflite")
    assert app.spec.color == "rgb" and app.spec.input_quant.dtype == "uint8"
    app_top = np.array([app.predict(image)[0].index for image in images[:300]])
    int8_top = np.array([int8.predict(image)[0].index for image in images[:300]])
    assert (app_top == int8_top).mean() >= 0.99
    assert (app_top == labels[:300]).mean() >= (int8_top == labels[:300]).mean() - 0.01


def test_mediapipe_image_classifier_names_eval_images(exported_bundle: Path,
                                                      app_file: Path) -> None:
    """MediaPipe Tasks loads the file with nothing but its metadata and names the digits as
    our runtime does. (The fixture's model trains for 4 epochs; on the default bundle,
    ``python -m benchmarks.app_client`` measures the issue's ≥ 98 % by name.)"""
    from benchmarks.app_client import mediapipe_top1

    images, labels = load_images(exported_bundle / "eval.npz")
    classifier = runtime.load(app_file)
    ours = classifier.probabilities(np.repeat(images, 3, axis=-1)).argmax(1)
    names, _ = mediapipe_top1(app_file, images)
    assert set(names) <= set(classifier.labels)
    same = np.mean([name == classifier.labels[i] for name, i in zip(names, ours, strict=True)])
    right = np.mean([name == classifier.labels[i] for name, i in zip(names, labels,
                                                                      strict=True)])
    keras = json.loads((exported_bundle / "export_report.json").read_text())["reference"]
    assert same >= 0.99, same
    assert right >= keras["accuracy"] - 0.01, (right, keras["accuracy"])


def test_app_file_carries_its_own_self_check_on_rgb_inputs(exported_bundle: Path,
                                                            app_file: Path) -> None:
    """Its reference inputs are held-out images as the app file takes them (RGB), not the
    int8 file's; the file passes it here, and its label file survived the embedding."""
    from export.app_tflite import app_pixels
    from runtime.__main__ import main as runtime_main
    from runtime.selfcheck import read_reference

    app = runtime.load(app_file)
    reference = read_reference(app)
    assert reference is not None and reference.stored.shape[1:] == app.spec.input_shape
    images, _ = load_images(exported_bundle / "eval.npz")
    rgb = app_pixels(images).reshape(len(images), -1)
    assert all((rgb == row.reshape(-1)).all(1).any() for row in reference.stored)
    assert app.self_check().status == "passed"
    assert runtime_main(["check", "--model", str(app_file)]) == 0
    assert list(associated_files(app_file.read_bytes())) == ["labels.txt"]


def test_adding_metadata_keeps_the_packed_label_file(app_file: Path, tmp_path: Path) -> None:
    data = with_tflite_metadata(app_file.read_bytes(), "a note", "other.key")
    assert tflite_metadata(data, "other.key") == "a note"
    assert associated_files(data) == associated_files(app_file.read_bytes())
    copy = tmp_path / APP_TFLITE
    copy.write_bytes(data)
    assert runtime.load(copy).spec == runtime.load(app_file).spec


def test_grey_weights_are_exact_in_int8() -> None:
    """Grey pixels in, the same grey pixels out: the int8 weights sum to the scale."""
    from export.app_tflite import GREY_WEIGHTS

    scale = GREY_WEIGHTS.max() / 127
    quantized = np.rint(GREY_WEIGHTS / scale)
    assert quantized.tolist() == [65, 127, 25]
    assert quantized.sum() * scale == pytest.approx(1.0, abs=1e-12)
    assert np.abs(GREY_WEIGHTS - [0.299, 0.587, 0.114]).max() < 0.002


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_onnx_standard_metadata_without_our_parser(name: str, exported_bundle: Path,
                                                   tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    lone = tmp_path / name
    shutil.copyfile(exported_bundle / name, lone)
    proto = onnx.load(str(lone))
    spec = ModelSpec.from_json({p.key: p.value for p in proto.metadata_props}["edgecnn.spec"])
    assert proto.producer_name == "edgecnn" and proto.producer_version not in ("", "unknown")
    assert proto.model_version == int(spec.version, 16) > 0
    assert "twoconv image classifier" in proto.doc_string and "0, 1, 2" in proto.doc_string
    assert "28 x 28 x 1 grayscale" in proto.graph.input[0].doc_string
    assert "labels" in proto.graph.output[0].doc_string
    meta = ort.InferenceSession(str(lone), providers=["CPUExecutionProvider"]).get_modelmeta()
    assert json.loads(meta.custom_metadata_map["labels"]) == list("0123456789")
    assert meta.producer_name == "edgecnn" and meta.version == proto.model_version
    assert meta.description == proto.doc_string


def test_missing_mediapipe_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from export.tflite_metadata import metadata_schema
    from runtime.errors import MissingPackageError

    for module in ("mediapipe", "mediapipe.tasks", "mediapipe.tasks.metadata",
                   "mediapipe.tasks.metadata.metadata_schema_py_generated"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingPackageError, match="pip install mediapipe"):
        metadata_schema()


@pytest.mark.slow
def test_export_without_mediapipe_skips_only_the_app_file(trained_bundle: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    from export import run
    from export.__main__ import main
    from runtime.errors import MissingPackageError

    def missing() -> None:
        raise MissingPackageError("… mediapipe package, which is not installed: pip install "
                                  "mediapipe")

    monkeypatch.setattr(run, "metadata_schema", missing)
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    assert main(["--bundle", str(bundle), "--formats", "tflite", "--int8"]) == 0
    assert (bundle / "model.int8.tflite").is_file() and not (bundle / APP_TFLITE).exists()
    assert f"{APP_TFLITE} not written" in capsys.readouterr().out
    report = json.loads((bundle / "export_report.json").read_text())
    assert [f["file"] for f in report["files"]] == ["model.tflite", "model.int8.tflite"]
