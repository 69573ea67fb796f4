"""The self-check inside every exported file: what export embeds, what the device runs, the
LiteRT kernel fallback, start-up refusal, files from before it existed, and a missing engine."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_failure, run_module
from test_export import tampered_copy

import runtime
from export.selfcheck import MAX_STORED_VALUES, REFERENCE_INPUTS, SAFE_MARGIN, choose, shrink
from runtime.__main__ import main as runtime_main
from runtime.backends import LiteRTBackend
from runtime.bundle import APP_TFLITE, EXPORT_NAMES, load_images
from runtime.errors import MissingPackageError, ModelFileError, SpecError
from runtime.metadata import tflite_metadata
from runtime.selfcheck import SELFCHECK_KEY, ReferenceSet, expand, read_reference
from runtime.spec import ModelSpec

FILES = sorted([*EXPORT_NAMES.values(), APP_TFLITE])


def without_reference(source: Path, target: Path) -> Path:
    """A copy of ``source`` as exported before self-checks: spec, no reference set."""
    if source.suffix == ".onnx":
        import onnx

        proto = onnx.load(str(source))
        kept = [p for p in proto.metadata_props if p.key != SELFCHECK_KEY]
        del proto.metadata_props[:]
        proto.metadata_props.extend(kept)
        onnx.save(proto, str(target))
    else:
        import flatbuffers
        from ai_edge_litert import schema_py_generated as schema

        data = source.read_bytes()
        tree = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
        tree.metadata = [m for m in tree.metadata if m.name != SELFCHECK_KEY.encode()]
        builder = flatbuffers.Builder(len(data))
        builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
        target.write_bytes(bytes(builder.Output()))
    return target


def broken_xnnpack(monkeypatch: pytest.MonkeyPatch, kernels: tuple[str, ...] = ("xnnpack",)
                   ) -> None:
    """Make LiteRT's named kernel sets answer like a broken kernel: every class shifted."""
    run = LiteRTBackend.run

    def shifted(self: LiteRTBackend, batch: np.ndarray) -> np.ndarray:
        out = run(self, batch)
        return np.roll(out, 1, axis=1) if self.kernels in kernels else out

    monkeypatch.setattr(LiteRTBackend, "run", shifted)


@pytest.mark.parametrize("name", FILES)
def test_every_exported_file_carries_a_reference_that_passes_here(name: str,
                                                                  exported_bundle: Path) -> None:
    classifier = runtime.load(exported_bundle / name)
    reference = read_reference(classifier)
    assert reference is not None and len(reference.stored) == REFERENCE_INPUTS
    sidecar = (exported_bundle / f"{name}.json").read_text()
    assert "pixels" not in sidecar and SELFCHECK_KEY not in sidecar  # the spec stays small
    result = classifier.self_check()
    assert result.status == "passed" and result.checked == REFERENCE_INPUTS, result.summary()
    assert result.max_diff <= result.tolerance and not result.failed_kernels
    # every stored top-1 leads its runner-up safely: within tolerance, no top-1 can change
    assert (reference.probabilities[:, 0] - reference.probabilities[:, 1]
            > SAFE_MARGIN * reference.tolerance).all()
    assert runtime_main(["check", "--model", str(exported_bundle / name)]) == 0


def test_reference_is_compact_and_in_its_own_metadata_entry(exported_bundle: Path) -> None:
    data = (exported_bundle / "model.int8.tflite").read_bytes()
    spec_text, reference_text = tflite_metadata(data), tflite_metadata(data, SELFCHECK_KEY)
    assert SELFCHECK_KEY not in spec_text and "pixels" not in spec_text
    assert len(reference_text) < 12 * 1024  # 32 digits, 28×28, zlib + base85
    spec = ModelSpec.from_json(spec_text)
    reference = ReferenceSet.from_json(reference_text, spec)
    again = ReferenceSet.from_json(reference.to_json(), spec)
    assert np.array_equal(again.stored, reference.stored)
    assert np.array_equal(again.classes, reference.classes)
    assert np.allclose(again.probabilities, reference.probabilities, atol=1e-7)
    # the inputs are real held-out images, spread over the predicted classes
    images, _ = load_images(exported_bundle / "eval.npz")
    flat = images.reshape(len(images), -1)
    assert all((flat == row.reshape(-1)).all(1).any() for row in reference.stored)
    assert len(np.unique(reference.top1)) == 10


def test_choose_keeps_only_safe_leads_and_spreads_over_classes() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    chosen = choose(probs, 0.04, 12)
    top2 = np.sort(probs[chosen], 1)[:, -2:]
    assert len(chosen) == 12 and (top2[:, 1] - top2[:, 0] > SAFE_MARGIN * 0.04).all()
    assert sorted(np.bincount(probs[chosen].argmax(1), minlength=4)) == [3, 3, 3, 3]
    assert len(choose(np.full((5, 3), 1 / 3), 0.04, 12)) == 0  # no safe lead: nothing
    assert len(choose(np.ones((5, 1)), 0.04, 3)) == 3          # one class: always safe


def test_large_inputs_are_stored_small_and_enlarged_the_same_way_everywhere() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    stored = shrink(images)
    assert stored.shape[1] * stored.shape[2] * 3 <= MAX_STORED_VALUES * 1.05
    spec = ModelSpec(labels=("a", "b"), height=224, width=224, color="rgb")
    enlarged = expand(stored, spec)
    assert enlarged.shape == images.shape and enlarged.dtype == np.uint8
    assert np.array_equal(enlarged, expand(stored.copy(), spec))
    small = images[:, :20, :20]
    assert shrink(small) is small  # small inputs are stored as they are


def test_xnnpack_failure_falls_back_to_builtin_kernels_and_says_so(
        exported_bundle: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    broken_xnnpack(monkeypatch)
    path = str(exported_bundle / "model.int8.tflite")
    assert runtime_main(["check", "--model", path, "--no-fallback"]) == 1
    out = capsys.readouterr().out
    assert "self-check FAILED: 0/32" in out and "XNNPACK" in out and "input 0 as a batch" in out
    assert runtime_main(["check", "--model", path]) == 0
    out = capsys.readouterr().out
    assert "XNNPACK failed it" in out and "uses LiteRT's built-in kernels" in out
    classifier = runtime.load(path)
    result = classifier.self_check()
    assert classifier.backend.kernels == "builtin" and result.failed_kernels[0].kernels == "xnnpack"
    images, labels = load_images(exported_bundle / "eval.npz")
    accuracy = (classifier.probabilities(images).argmax(1) == labels).mean()
    assert accuracy > 0.9  # the classifier now runs on the kernels that passed


def test_predict_and_demo_refuse_a_failing_file_unless_told(
        exported_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    import cv2

    from demos.webcam import main as webcam_main

    images, labels = load_images(exported_bundle / "eval.npz")
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), images[0])
    model = str(exported_bundle / "model.int8.tflite")
    broken_xnnpack(monkeypatch, ("xnnpack", "builtin"))  # the fallback still finds a good set
    assert runtime_main(["predict", "--model", model, str(image), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["predictions"][0]["label"] == str(labels[0])
    assert "reference kernels" in captured.err
    broken_xnnpack(monkeypatch, ("xnnpack", "builtin", "reference"))
    assert runtime_main(["predict", "--model", model, str(image)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "self-check FAILED" in captured.err
    assert "--skip-self-check" in captured.err and len(captured.err.splitlines()) == 1
    assert runtime_main(["predict", "--model", model, str(image), "--skip-self-check"]) == 0
    assert webcam_main(["--model", model, "--source", str(tmp_path), "--headless"]) == 1
    assert "self-check FAILED" in capsys.readouterr().err
    assert webcam_main(["--model", model, "--source", str(tmp_path), "--headless",
                        "--skip-self-check"]) == 0


@pytest.mark.parametrize("name", ["model.int8.onnx", "model.int8.tflite"])
def test_a_tampered_file_fails_its_own_self_check(name: str, exported_bundle: Path,
                                                  tmp_path: Path) -> None:
    copy = tampered_copy(exported_bundle / name, tmp_path)
    result = run_module("runtime", "check", "--model", str(copy))
    assert result.returncode == 1 and "self-check FAILED" in result.stdout, result.stdout
    assert "input " in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.tflite"])
def test_files_exported_before_self_checks_load_run_and_have_nothing_to_check(
        name: str, exported_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    old = without_reference(exported_bundle / name, tmp_path / name)
    classifier = runtime.load(old)
    assert read_reference(classifier) is None
    assert classifier.self_check().status == "absent"
    assert runtime_main(["check", "--model", str(old)]) == 0
    assert "nothing to check" in capsys.readouterr().out
    images, _ = load_images(exported_bundle / "eval.npz")
    assert classifier.predict(images[0])[0].label == runtime.load(
        exported_bundle / name).predict(images[0])[0].label


def test_a_corrupt_reference_is_a_clear_error(exported_bundle: Path, tmp_path: Path) -> None:
    from runtime.metadata import with_tflite_metadata

    spec = runtime.load(exported_bundle / "model.tflite").spec
    for text, needle in (("{", "unreadable"), ('{"version": 1}', "unreadable"),
                         ('{"version": 99}', "newer")):
        with pytest.raises(SpecError, match=needle):
            ReferenceSet.from_json(text, spec)
    good = json.loads(tflite_metadata((exported_bundle / "model.tflite").read_bytes(),
                                      SELFCHECK_KEY))
    bad = tmp_path / "model.tflite"
    bad.write_bytes(with_tflite_metadata((exported_bundle / "model.tflite").read_bytes(),
                                         json.dumps({**good, "classes": [[99]] * 32}),
                                         SELFCHECK_KEY))
    assert_clean_failure(run_module("runtime", "check", "--model", str(bad)),
                         "does not fit the model")


def test_tflite_metadata_reader_matches_the_schema_and_survives_corruption(
        exported_bundle: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    data = (exported_bundle / "model.int8.tflite").read_bytes()
    root = schema.Model.GetRootAs(data, 0)
    entries = {root.Metadata(i).Name().decode(): root.Buffers(root.Metadata(i).Buffer())
               .DataAsNumpy().tobytes() for i in range(root.MetadataLength())}
    for key in ("edgecnn.spec", SELFCHECK_KEY, "min_runtime_version"):
        assert tflite_metadata(data, key) == entries[key].decode()
    assert tflite_metadata(data, "absent") is None
    rng = np.random.default_rng(0)
    for _ in range(200):  # flipped bytes and truncations: a value or a ModelFileError, no crash
        corrupt = bytearray(data[:int(rng.integers(8, len(data) + 1))])
        for at in rng.integers(8, len(corrupt), size=4):
            corrupt[at] = int(rng.integers(0, 256))
        with contextlib.suppress(ModelFileError):
            tflite_metadata(bytes(corrupt))


@pytest.mark.parametrize(("name", "blocked", "message"), [
    ("model.tflite", ("ai_edge_litert", "tflite_runtime"),
     "ai-edge-litert is not installed; it is needed to run .tflite models .on 32-bit ARM, "
     "tflite-runtime does instead."),
    ("model.onnx", ("onnxruntime",), "onnxruntime is not installed"),
])
def test_a_missing_engine_is_named_as_missing(name: str, blocked: tuple[str, ...], message: str,
                                              exported_bundle: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for module in blocked:
        for loaded in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    with pytest.raises(MissingPackageError, match=message):
        runtime.load(exported_bundle / name)


def test_a_damaged_reference_set_is_an_error_naming_the_file(tiny_digit_model: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             ) -> None:
    classifier = runtime.load(tiny_digit_model)

    def damaged(key: str) -> str:
        raise ModelFileError("corrupt TFLite model: cannot read its metadata (bad byte)")

    monkeypatch.setattr(classifier.backend, "metadata", damaged)
    with pytest.raises(ModelFileError, match=f"^{tiny_digit_model}: corrupt TFLite model"):
        read_reference(classifier)
