"""int8 diagnosis and repair: equalization and BatchNorm folding keep the function, the
int8 ONNX declares only the domains it uses, entropy calibration changes the ranges, and an
outlier-channel model whose plain int8 collapses exports passing full-integer files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.bundle import load_images

RNG = np.random.default_rng(0)  # restarted for every test (tests/conftest.py)


def _small_functional(outlier: bool):
    """Conv → BN → ReLU → depthwise → BN → ReLU → pool → conv → GAP → Dense logits."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(6, 1, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(4)(x))
    for layer in model.layers:  # non-trivial BatchNorm statistics
        if isinstance(layer, layers.BatchNormalization):
            n = len(layer.get_weights()[0])
            scale = np.where(np.arange(n) == 1, 50.0, 1.0) if outlier else np.ones(n)
            layer.set_weights([RNG.uniform(0.5, 2, n) * scale, RNG.normal(0, 0.3, n),
                               RNG.normal(0, 0.3, n), RNG.uniform(0.5, 2, n)])
    return model


def test_equalization_keeps_the_function_and_evens_the_ranges() -> None:
    from export.equalize import _output_ranges, clone, equalize, find_pairs, fold_batchnorm

    model = _small_functional(outlier=True)
    images = RNG.uniform(0, 1, (16, 12, 12, 3)).astype(np.float32)
    copy = clone(model)
    pairs = [p.name for p in find_pairs(copy)]
    assert len(pairs) == 3, pairs  # conv/depthwise, depthwise/conv (BN, pool), conv/dense (GAP)
    assert equalize(copy) == pairs
    np.testing.assert_allclose(copy(images), model(images), rtol=1e-4, atol=1e-5)
    spread = []  # of the per-channel ranges converters see: BatchNorm folded in
    for version in (model, copy):
        folded = fold_batchnorm(version)
        depthwise = next(layer for layer in folded.layers if "depthwise" in layer.name)
        spread.append(np.ptp(np.log(_output_ranges(depthwise))))
    assert spread[1] < spread[0] - np.log(5), spread  # the 50x outlier channel is evened out


def test_batchnorm_folding_keeps_the_function() -> None:
    import keras

    from export.equalize import fold_batchnorm

    model = _small_functional(outlier=False)
    folded = fold_batchnorm(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    images = RNG.uniform(0, 1, (8, 12, 12, 3)).astype(np.float32)
    np.testing.assert_allclose(folded(images), model(images), rtol=1e-4, atol=1e-5)


def test_bias_correction_removes_the_expected_int8_weight_error() -> None:
    from export.equalize import _int8, clone, correct_bias

    model = _small_functional(outlier=False)
    images = RNG.uniform(0, 1, (32, 12, 12, 3)).astype(np.float32)
    corrected = clone(model)
    assert correct_bias(corrected, images)
    quantized = [clone(m) for m in (model, corrected)]
    for copy in quantized:  # int8 weights, float everything else
        for layer in copy.layers:
            if hasattr(layer, "kernel"):
                weights = layer.get_weights()
                weights[0] = _int8(weights[0], layer)
                layer.set_weights(weights)
    reference = np.asarray(model(images))
    bias_before = abs(float(np.mean(np.asarray(quantized[0](images)) - reference)))
    bias_after = abs(float(np.mean(np.asarray(quantized[1](images)) - reference)))
    assert bias_after <= bias_before + 1e-6


def test_sqnr_figures() -> None:
    from export.diagnose import MAX_DB, channel_sqnr_db, fake_quant, sqnr_db

    rng = np.random.default_rng(0)  # its own: a shared generator's state depends on test order
    x = rng.normal(size=(64, 8))
    assert sqnr_db(x, x) == MAX_DB
    assert sqnr_db(x, x * 1.1) == pytest.approx(20.0, abs=0.01)
    # An outlier channel hides the others' noise from the tensor SQNR.
    x[:, 0] *= 300
    noisy = x + np.r_[0.0, [0.5] * 7] * rng.normal(size=x.shape)
    assert sqnr_db(x, noisy) > 40 and channel_sqnr_db(x, noisy, axis=-1) < 10
    # One channel 10,000 times the others (a huge constant activation): its int8 grid rounds
    # every other channel to zero. Those channels once counted as dead (under 1e-6 of the
    # loudest channel's power), so the layer that collapsed scored 99 dB and was never kept
    # float. A nearly dead channel (1e-9 where the others are about 1) is still left out.
    relu = np.abs(rng.normal(size=(64, 8)))
    relu[:, 1] = 1e-9
    assert channel_sqnr_db(relu, fake_quant(relu, relu.max() / 255, -128, "int8"), axis=-1) > 30
    relu[:, 0] = 1e4
    assert channel_sqnr_db(relu, fake_quant(relu, relu.max() / 255, -128, "int8"), axis=-1) < 1
    # Most channels exactly dead (a sparse ReLU layer): the median is of the channels with
    # signal, so a nearly dead one (1e-4 of the others' amplitude) is still left out (the
    # median of all channels, 0, made it count, and a sound layer scored 4.8 dB).
    sparse = np.abs(rng.normal(size=(64, 8)))
    sparse[:, 3:] = 0.0
    sparse[:, 2] *= 1e-4
    quantized = fake_quant(sparse, sparse.max() / 255, -128, "int8")
    assert channel_sqnr_db(sparse, quantized, axis=-1) > 30
    assert channel_sqnr_db(np.zeros((4, 3)), np.zeros((4, 3)), axis=-1) == MAX_DB


def test_int8_onnx_declares_only_used_domains() -> None:
    from onnx import TensorProto, helper

    from export.onnx import declare_used_domains

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    model = helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.training", 1),
        helper.make_opsetid("com.microsoft.nchwc", 1), helper.make_opsetid("org.pytorch.aten", 1)])
    declare_used_domains(model)
    assert [o.domain for o in model.opset_import] == [""]


def test_entropy_calibration_changes_the_ranges(tmp_path: Path) -> None:
    """onnxruntime's own entropy calibrator (128/128 bins) returned the min/max range."""
    import onnx
    from onnx import TensorProto, helper

    from export.onnx import calibrated_ranges

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                          ["n", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 64])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                ir_version=8), str(tmp_path / "relu.onnx"))
    values = RNG.standard_t(3, size=(200, 64)).astype(np.float32)  # heavy tails
    ranges = calibrated_ranges(tmp_path / "relu.onnx", "x", values)
    high = float(ranges["y"][0]["rmax"])
    assert 0 < high < 0.5 * values.max()


def _outlier_bundle(trained_bundle: Path, folder: Path, factor: float | None = None) -> Path:
    """The trained model with outlier first-conv filters (×1000, or ``factor`` at most),
    exactly the same function."""
    import keras

    from benchmarks.int8_models import OUTLIER_CHANNELS, add_outlier_channels

    bundle = folder / "outlier"
    shutil.copytree(trained_bundle, bundle)
    model = keras.models.load_model(bundle / "model.keras")
    images, _ = load_images(bundle / "eval.npz")
    before = model.predict(images.astype(np.float32), verbose=0)
    top = max(OUTLIER_CHANNELS.values())
    add_outlier_channels(model, channels={c: f * (factor or top) / top  # ReLU, max-pool commute
                                          for c, f in OUTLIER_CHANNELS.items()})
    after = model.predict(images.astype(np.float32), verbose=0)
    assert np.abs(after - before).max() < 1e-4
    model.save(bundle / "model.keras")
    return bundle


@pytest.mark.slow
def test_outlier_channels_collapse_plain_int8_and_repair_restores_it(trained_bundle: Path,
                                                                     tmp_path: Path) -> None:
    import onnx

    from export.__main__ import main

    bundle = _outlier_bundle(trained_bundle, tmp_path)
    assert main(["--bundle", str(bundle), "--int8", "--repair", "off"]) == 1
    plain = json.loads((bundle / "export_report.json").read_text())
    drops = {f["file"]: f["accuracy_change_pp"] for f in plain["files"]  # the app file: not built
             if f["file"].startswith(("model.int8.onnx", "model.int8.tflite"))}
    assert len(drops) == 2 and all(d <= -20 for d in drops.values()), drops
    for record in plain["quantization"].values():  # the diagnosis names the first conv
        layers = record["diagnosis"]["layers"]
        worst = min(layers, key=lambda e: e["local_sqnr_db"])
        # conv1's outlier range, or with one convolution a block its max-pool's, which
        # passes it on at the same scale (48 filters: pool1 lowest by 0.1 dB).
        first = {"conv1", "pool1"}
        assert worst["layer"] in first, worst
        assert min(e["local_sqnr_db"] for e in layers if e["layer"] == "conv1") < 10, layers
        assert all(e["local_sqnr_db"] > 20 for e in layers if e["layer"] not in first), layers

    assert main(["--bundle", str(bundle), "--int8"]) == 0
    report = json.loads((bundle / "export_report.json").read_text())
    assert report["all_passed"] and (bundle / "quant_layers.png").is_file()
    images, _ = load_images(bundle / "eval.npz")
    for name in ("model.int8.onnx", "model.int8.tflite"):
        check = next(f for f in report["files"] if f["file"] == name)
        assert check["accuracy_change_pp"] >= -1 and check["agreement"] >= 0.99, check
        record = report["quantization"][name]
        assert "equalized conv1/conv1b" in record["applied"], record["applied"]
        assert "kept float" not in record["applied"]
        assert record["diagnosis"]["layers"] and record["diagnosis_before"]["layers"]
        classifier = runtime.load(bundle / name)
        assert classifier.backend.input_dtype in (np.int8, np.uint8)  # full integer
        assert classifier.backend.output_dtype in (np.int8, np.uint8)
        assert "equalized" in classifier.spec.quantization["repair"]
        assert classifier.predict(images[0])[0].label in classifier.labels
    model = onnx.load(str(bundle / "model.int8.onnx"))
    assert {o.domain for o in model.opset_import} == {n.domain for n in model.graph.node} | {""}


def test_default_model_needs_no_repair(exported_bundle: Path) -> None:
    report = json.loads((exported_bundle / "export_report.json").read_text())
    records = report["quantization"]
    assert set(records) == {"model.int8.onnx", "model.int8.tflite"}
    for record in records.values():
        assert record["applied"] == "none" and record["steps"] == []
        assert len(record["diagnosis"]["layers"]) >= 5  # every quantized layer measured
        assert all(e["sqnr_db"] > 10 for e in record["diagnosis"]["layers"])
    assert (exported_bundle / "quant_layers.png").is_file()
    spec = runtime.load(exported_bundle / "model.int8.tflite").spec
    assert spec.quantization == {"calibration": "minmax", "repair": "none"}


@pytest.mark.slow
def test_qat_recovers_a_failing_model_and_reports_before_and_after(trained_bundle: Path,
                                                                   tmp_path: Path) -> None:
    """The outlier filters (×1000): plain int8 drops ≥ 2 pp (by tens of points);
    ``--repair off --qat 4`` fine-tunes (from the equalized weights) back within the accuracy
    gate, and the report gives the plain and the fine-tuned figures. Milder filters (×300)
    drop ≥ 2 pp on some trained models and under 1 pp on others, so the test does not rely on
    them. Agreement with Keras after QAT lands at 98.8–99.2 % from run to run (TensorFlow's
    threaded reductions), so passing the whole gate is not asserted; docs/quantization.md
    gives the figures."""
    from export.__main__ import main

    bundle = _outlier_bundle(trained_bundle, tmp_path)
    code = main(["--bundle", str(bundle), "--int8", "--repair", "off", "--qat", "4",
                 "--formats", "onnx"])
    report = json.loads((bundle / "export_report.json").read_text())
    name = next(n for n in report["quantization"] if n.startswith("model.int8.onnx"))
    record = report["quantization"][name]
    assert record["before"]["accuracy_change_pp"] <= -2, record["before"]
    assert [s["step"] for s in record["steps"]] == ["qat"]
    after = record["steps"][0]
    assert "quantization-aware training, 4 epochs" in after["variant"]
    assert after["accuracy_change_pp"] >= -1, after
    assert after["agreement"] >= record["before"]["agreement"] + 0.05, after
    assert record["applied"] == after["variant"] and record["diagnosis_before"]["layers"]
    check = next(f for f in report["files"] if f["file"] == name)
    assert check["agreement"] == after["agreement"]
    assert code == (0 if check["passed"] else 1) and name.endswith(
        "" if check["passed"] else ".rejected")
    # The file says what was done to it, as the report does (QAT from the equalized weights).
    import onnx

    embedded = {p.key: p.value for p in onnx.load(str(bundle / name)).metadata_props}
    spec = json.loads(next(v for k, v in embedded.items() if "spec" in k))
    assert spec["quantization"]["repair"] == record["applied"], spec["quantization"]
    assert record["applied"].startswith("equalized "), record["applied"]


def test_tflite_fallback_keeps_the_named_op_float() -> None:
    """The converter's denylist: the logits layer of a functional model stays float, every
    other op keeps its int8 kernels; the model's output is then float, not a coarse grid."""
    from export.repair import _graph_outputs, _tflite_nodes
    from export.tflite import convert, selective_int8
    from runtime.spec import ModelSpec

    model = _small_functional(outlier=False)
    spec = ModelSpec(labels=("a", "b", "c", "d"), height=12, width=12, color="rgb",
                     output="logits", value_range=(0.0, 1.0))
    images = RNG.integers(0, 256, (32, 12, 12, 3)).astype(np.uint8)
    nodes = _tflite_nodes(convert(model, spec, "float32")[0])
    output = _graph_outputs(nodes)
    assert len(output) == 1 and nodes[-1].op == "FULLY_CONNECTED"
    data, file_spec = selective_int8(model, spec, images, output)
    ops = {n.op: n for n in _tflite_nodes(data)}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(ops)
    assert file_spec.output_quant is None  # float logits out

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()
    types = {d["name"]: d["dtype"] for d in interpreter.get_tensor_details()}
    convs = [n for n in _tflite_nodes(data) if n.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert all(types[n.outputs[0]] == np.int8 for n in convs)  # still quantized
    assert types[ops["FULLY_CONNECTED"].outputs[0]] == np.float32  # kept float


def test_onnx_ladder_tries_signed_activations() -> None:
    """u8s8 kernels saturate on x86 without VNNI: the calibration step tries s8s8."""
    from types import SimpleNamespace

    from export.repair import Recipe, _calibrations

    job = SimpleNamespace(activations="uint8", method="minmax", calibration=np.zeros(10),
                          source=SimpleNamespace(calibration=np.zeros(10)))
    recipes = _calibrations(job, "onnx")  # type: ignore[arg-type]
    assert Recipe(activations="int8") in recipes
    assert "int8 activations" in Recipe(activations="int8").describe({})
    job.activations = "int8"
    assert all(r.activations is None for r in _calibrations(job, "onnx"))  # type: ignore


def test_float_fallback_never_starts_from_bias_corrected_weights() -> None:
    """Bias correction offsets each layer's int8 weight error; a layer then kept float has
    none, so the offset is pure error: a one-sigmoid model's ONNX file with every layer float
    lost 1 pp, a model with one huge activation's TFLite file 5 pp. Float islands are cut
    from the best variant whose float function is the model's."""
    from types import SimpleNamespace

    from export.repair import Recipe, fallback_base

    def variant(model: str, agreement: float):
        return SimpleNamespace(recipe=Recipe(model=model),
                               check=SimpleNamespace(agreement=agreement, accuracy=0.5))

    plain, equalized = variant("original", 0.09), variant("equalized", 0.10)
    corrected = variant("equalized+bias", 0.13)
    assert fallback_base([plain, equalized, corrected]) is equalized
    assert fallback_base([plain, corrected]) is plain


def test_tflite_diagnosis_names_the_output_after_the_last_layer() -> None:
    """The converter names a softmax output "StatefulPartitionedCall_1:0", which the worst
    layers line showed as if it were a layer."""
    import keras

    from export.diagnose import diagnose_tflite
    from export.tflite import convert
    from runtime.preprocess import to_model_values
    from runtime.spec import ModelSpec

    keras.utils.set_random_seed(4)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="classes")(x))
    spec = ModelSpec(labels=("a", "b", "c"), height=8, width=8, color="grayscale",
                     value_range=(0.0, 1.0))
    images = RNG.integers(0, 256, (32, 8, 8, 1)).astype(np.uint8)
    names = [layer.name for layer in model.layers]
    diagnosis = diagnose_tflite("m.int8.tflite", convert(model, spec, "float32")[0],
                                convert(model, spec, "int8", images)[0],
                                to_model_values(images, spec), names)
    layers = [e.layer for e in diagnosis.layers]
    assert layers[-1] == "classes" and not any("StatefulPartitionedCall" in n for n in layers), \
        layers
