"""int8 that does not collapse: build, validate, diagnose, and repair when the gate refuses.

A quantized file that fails validation goes up a ladder, cheapest step first, re-validated
after every variant, stopping at the first step where one passes:

1. calibration: other range methods (entropy, percentiles; ONNX), signed int8 activations
   (ONNX: onnxruntime's u8s8 kernels on x86 without VNNI saturate their 16-bit sums, s8s8
   do not) and every calibration image;
2. equalization: cross-layer equalization of the Keras weights, then also bias correction
   (:mod:`export.equalize`); the files stay full-integer;
3. float fallback: the tensors whose own int8 grid loses the most (the diagnosis) stay float,
   with the layers around them, as few as needed (onnxruntime ``nodes_to_exclude``, the TFLite
   converter's own denylist). First the output layer when rounding the model's output to
   its int8 grid alone changes top-1 answers: logits of a many-class model share one coarse
   grid, and two classes rounded to the same value are a tie that argmax breaks by index;
4. quantization-aware training (``--qat EPOCHS``), the last resort (:mod:`export.qat`).

Of the variants of a step that pass, the fastest (measured, batch 1) is kept under the
file's fixed name; the float fallback keeps its first passing variant, the one with the fewest
float layers. The report and the spec inside the file say what was done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from export import onnx as onnx_format
from export import tflite as tflite_format
from export.diagnose import Diagnosis, diagnose_onnx, diagnose_tflite, fake_quant, sample
from export.errors import UnsupportedModelError
from export.layers import layer_of, node_layer
from export.source import ExportSource
from export.validate import Check, Reference, keras_reference, model_outputs, validate
from runtime.errors import first_line
from runtime.preprocess import to_model_values
from runtime.spec import ModelSpec

log = logging.getLogger(__name__)
REPAIR_MODES = ("auto", "off", "always")
PERCENTILES = (99.99, 99.9)     # onnxruntime's default is 99.999: clip a little, then more
MAX_FALLBACK = 8                # float islands tried, one more each time
FUNCTION_ATOL = 1e-4            # an equalized model must give the same probabilities
LATENCY_RUNS = 300              # batch-1 runs timed per passing variant
OUTPUT_FLIPS = 0.001            # output rounding that flips more top-1 answers: keep it float
# Ops that carry a quantized tensor through unchanged in range: keeping a tensor in float
# means keeping float everything from the op that computes it to the ops that use it.
_ONNX_PASS = {"Relu", "Clip", "LeakyRelu", "MaxPool", "Reshape", "Transpose", "Squeeze",
              "Unsqueeze", "Flatten", "Identity", "Dropout", "Pad"}
_TFLITE_PASS = {"RELU", "RELU6", "LEAKY_RELU", "MAX_POOL_2D", "RESHAPE", "SQUEEZE",
                "TRANSPOSE", "PAD", "PADV2"}


@dataclass(frozen=True)
class Recipe:
    """How one int8 variant is built."""

    model: str = "original"        # original | equalized | equalized+bias | qat
    method: str = "minmax"
    percentile: float | None = None
    all_images: bool = False
    activations: str | None = None      # ONNX activation type; None: the job's (--onnx-activations)
    keep_float: tuple[str, ...] = ()   # engine names: ONNX nodes or TFLite op outputs
    float_layers: tuple[str, ...] = ()  # the Keras layers they belong to, for people

    @property
    def calibration(self) -> str:
        method = self.method if self.percentile is None else f"percentile {self.percentile:g}"
        return method + (" on every calibration image" if self.all_images else "") + \
            (f", {self.activations} activations" if self.activations else "")

    def describe(self, notes: dict[str, list[str]]) -> str:
        """What was done, for the report and the spec: "equalized conv1/conv2; dense kept
        float"; "none" for a plain file."""
        parts = []
        if self.model.startswith("equalized") and notes.get("equalized"):
            parts.append("equalized " + ", ".join(notes["equalized"]))
        if self.model == "equalized+bias" and notes.get("bias"):
            parts.append("bias-corrected " + ", ".join(notes["bias"]))
        if self.model == "qat" and notes.get("qat", ["", ""])[1:] == ["equalized"]:
            parts.append("equalized " + ", ".join(notes.get("equalized", [])))
        if self.model == "qat":
            parts.append(f"quantization-aware training, {notes.get('qat', ['?'])[0]} epochs")
        if self.method != "minmax" or self.all_images or self.percentile is not None \
                or self.activations:
            parts.append(f"calibration {self.calibration}")
        if self.keep_float:
            parts.append(", ".join(self.float_layers) + " kept float")
        return "; ".join(parts) or "none"


@dataclass
class Variant:
    step: str
    recipe: Recipe
    path: Path
    check: Check
    spec: ModelSpec
    workdir: Path
    latency_ms: float | None = None
    diagnosis: Diagnosis | None = None
    diagnosis_seconds: float = 0.0

    def summary(self, notes: dict[str, list[str]]) -> dict[str, Any]:
        return {"step": self.step, "variant": self.recipe.describe(notes),
                "passed": self.check.passed, "accuracy_change_pp": self.check.accuracy_change_pp,
                "agreement": self.check.agreement, "latency_ms": self.latency_ms}


@dataclass
class Int8Job:
    """Everything both int8 formats share: built once per export."""

    source: ExportSource
    graph: Any                       # the converter-friendly Keras model
    reference: Reference
    calibration: np.ndarray          # the --calib-samples images
    scratch: Path
    atol: float
    max_drop: float
    method: str = "minmax"
    activations: str = "uint8"
    repair: str = "auto"
    qat_epochs: int = 0
    float_onnx: Path | None = None
    float_tflite: bytes | None = None
    models: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    counter: int = 0

    def check_values(self) -> np.ndarray:
        return to_model_values(sample(self.source.check.images), self.source.spec)


@dataclass
class Outcome:
    """The int8 file kept, its check and diagnosis, and what the ladder did."""

    variant: Variant
    record: dict[str, Any]


def build_int8(job: Int8Job, fmt: str, name: str) -> Outcome:
    """Build ``name`` plainly; repair it if it fails (or always, on request)."""
    started = time.perf_counter()
    plain = _build(job, fmt, "plain", Recipe(method=_method(job, fmt)))
    _diagnose(job, fmt, plain)
    record: dict[str, Any] = {"repair": job.repair, "before": plain.summary(job.notes),
                              "diagnosis": plain.diagnosis.to_dict(),  # type: ignore[union-attr]
                              "diagnosis_seconds": round(plain.diagnosis_seconds, 3),
                              "build_seconds": round(time.perf_counter() - started, 3)}
    if not plain.check.passed or job.repair == "always":
        record["output_rounding_agreement"] = output_rounding(job, plain)
    if (job.repair == "off" and not job.qat_epochs) or \
            (plain.check.passed and job.repair != "always"):
        record.update(applied="none", steps=[])
        return Outcome(plain, record)
    log.info("      repairing %s: worst layers %s%s", name,
             plain.diagnosis.summary(), "" if record["output_rounding_agreement"] is None  # type: ignore[union-attr]
             else f"; rounding the output alone keeps {record['output_rounding_agreement']:.2%} "
             "of top-1 answers")
    tried: list[Variant] = [plain]
    kept = None
    for step, variants in _ladder(job, fmt, tried):
        passing = []
        for variant in variants:
            tried.append(variant)
            mark = "[✓]" if variant.check.passed else "[x]"
            log.info("      %s %s: %s: %s", mark, step, variant.recipe.describe(job.notes),
                     variant.check.detail)
            if variant.check.passed:
                passing.append(variant)
                if step == "float fallback":  # as few float layers as pass, not the fastest
                    break
        if passing:
            kept = _fastest(passing + ([plain] if plain.check.passed else []))
            break
    kept = kept or _best(tried)
    if kept is not plain:
        _diagnose(job, fmt, kept)
    record["diagnosis_seconds"] = round(sum(v.diagnosis_seconds for v in tried), 3)
    record["build_seconds"] = round(time.perf_counter() - started, 3)
    record.update(applied=kept.recipe.describe(job.notes) if kept is not plain else "none",
                  steps=[v.summary(job.notes) for v in tried[1:]],
                  diagnosis=kept.diagnosis.to_dict())  # type: ignore[union-attr]
    if kept is not plain:
        record["diagnosis_before"] = plain.diagnosis.to_dict()  # type: ignore[union-attr]
    return Outcome(kept, record)


def _ladder(job: Int8Job, fmt: str, tried: list[Variant]) -> Iterator[tuple[str, Iterator]]:
    """(step, variants) in cost order; variants are built lazily, as the loop asks.
    ``--repair off`` leaves post-training repair out; ``--qat`` still runs."""
    if job.repair == "off":
        yield "qat", (_build(job, fmt, "qat", Recipe(model="qat", method=_method(job, fmt)))
                      for _ in range(1))
        return
    yield "calibration", (_build(job, fmt, "calibration", r) for r in _calibrations(job, fmt))
    yield "equalization", (_build(job, fmt, "equalization",
                                  Recipe(model=m, method=_method(job, fmt),
                                         activations=_best(tried).recipe.activations))
                           for m in ("equalized", "equalized+bias") if _model(job, m) is not None)
    yield "float fallback", _fallbacks(job, fmt, tried)
    if job.qat_epochs > 0:
        yield "qat", (_build(job, fmt, "qat", Recipe(model="qat", method=_method(job, fmt)))
                      for _ in range(1) if _model(job, "qat") is not None)


def _method(job: Int8Job, fmt: str) -> str:
    """The calibration method a file is built with: ``--calib-method`` for ONNX; the TFLite
    converter calibrates by min/max whatever was asked."""
    return job.method if fmt == "onnx" else "minmax"


def _best(tried: list[Variant]) -> Variant:
    """The variant closest to passing: highest agreement, then accuracy."""
    return max(tried, key=lambda v: (v.check.agreement, v.check.accuracy or 0))


def _calibrations(job: Int8Job, fmt: str) -> list[Recipe]:
    more = len(job.source.calibration) > len(job.calibration)
    recipes = []
    if fmt == "onnx":
        recipes += [Recipe(method="entropy")] * (job.method != "entropy")
        recipes += [Recipe(method="percentile", percentile=p) for p in PERCENTILES]
        if job.activations == "uint8":
            recipes.append(Recipe(method=job.method, activations="int8"))
    if more:
        recipes.append(Recipe(method=_method(job, fmt), all_images=True))
    return recipes


def _fallbacks(job: Int8Job, fmt: str, tried: list[Variant]) -> Iterator[Variant]:
    """Keep the worst tensors' islands float, one more each time, on the best variant so far
    whose float function is the model's (:func:`fallback_base`)."""
    base = fallback_base(tried)
    diagnosis = _diagnose(job, fmt, base)
    graph = _onnx_nodes(base.workdir / "pre.onnx") if fmt == "onnx" else \
        _tflite_nodes(_float_tflite(job, base.recipe.model))
    passthrough = _ONNX_PASS if fmt == "onnx" else _TFLITE_PASS
    known = [layer.name for layer in job.graph.layers]
    keep: list[str] = []
    tries = 0
    tensors = [error.tensor for error in diagnosis.worst(len(diagnosis.layers))]
    ends = set(_graph_outputs(graph))  # the converters name the output tensor after no layer
    rounding = output_rounding(job, base)
    if rounding is not None and rounding < 1 - OUTPUT_FLIPS:
        tensors = _graph_outputs(graph) + tensors
    for tensor in tensors:
        if tries >= MAX_FALLBACK:
            return
        island = _island(graph, tensor, passthrough)
        new = [n for n in island if n not in keep]
        if not new:
            continue
        keep += new
        tries += 1
        layers = [(node_layer(n) if fmt == "onnx" else layer_of(n, known))
                  or (job.graph.layers[-1].name if n in ends else n) for n in keep]
        recipe = replace(base.recipe, keep_float=tuple(keep),
                         float_layers=tuple(dict.fromkeys(layers)))
        try:
            yield _build(job, fmt, "float fallback", recipe)
        except UnsupportedModelError as exc:  # e.g. nothing left for the converter to quantize
            log.info("      [x] float fallback: %s: %s", recipe.describe(job.notes), exc)
            return


def fallback_base(tried: list[Variant]) -> Variant:
    """The variant float islands are cut from: the best one tried, but never a bias-corrected
    one. Bias correction shifts each layer's bias by its int8 weights' expected error; a layer
    kept float has no such error, so there the shift is pure error (a model with one huge
    activation lost 5 pp with every layer float)."""
    return _best([v for v in tried if v.recipe.model != "equalized+bias"] or tried)


def output_rounding(job: Int8Job, variant: Variant) -> float | None:
    """Top-1 agreement of the model's own output with that output rounded to the file's
    int8 output grid, on the check images: what the output's resolution alone costs.
    None when the file's output is float."""
    quant = variant.spec.output_quant
    if quant is None:
        return None
    model = _model(job, variant.recipe.model)
    raw = model_outputs(model, to_model_values(job.source.check.images, job.source.spec))
    rounded = fake_quant(raw, quant.scale, quant.zero_point, quant.dtype)
    return float((rounded.argmax(1) == raw.argmax(1)).mean())


def _graph_outputs(nodes: list[_Node]) -> list[str]:
    used = {name for node in nodes for name in node.inputs}
    return [name for node in nodes for name in node.outputs if name not in used]


def _build(job: Int8Job, fmt: str, step: str, recipe: Recipe) -> Variant:
    job.counter += 1
    workdir = job.scratch / f"int8-{fmt}-{job.counter}"
    workdir.mkdir(parents=True)
    name = "model.int8.onnx" if fmt == "onnx" else "model.int8.tflite"
    path = workdir / name
    source = job.source
    images = source.calibration.images if recipe.all_images else job.calibration
    model = _model(job, recipe.model)  # first: building it records what was done (notes)
    spec = source.spec.replace(quantization={"calibration": recipe.calibration,
                                             "repair": recipe.describe(job.notes)})
    if fmt == "onnx":
        float_path = job.float_onnx if recipe.model == "original" else \
            _float_onnx(job, recipe.model)
        file_spec = onnx_format.export_int8(
            float_path, spec, path, images, recipe.method,  # type: ignore[arg-type]
            recipe.activations or job.activations,
            percentile=recipe.percentile, exclude=recipe.keep_float, workdir=workdir)
    elif recipe.keep_float:
        data, file_spec = tflite_format.selective_int8(model, spec, images,
                                                       list(recipe.keep_float))
        tflite_format.save(data, path)
    else:
        data, file_spec = tflite_format.convert(model, spec, "int8", images)
        tflite_format.save(data, path)
    check = validate(path, fmt, "int8", job.reference, source.check.images, atol=job.atol,
                     max_drop=job.max_drop)
    return Variant(step, recipe, path, check, file_spec, workdir)


def _diagnose(job: Int8Job, fmt: str, variant: Variant) -> Diagnosis:
    if variant.diagnosis is not None:
        return variant.diagnosis
    started = time.perf_counter()
    try:
        values = job.check_values()
        if fmt == "onnx":
            variant.diagnosis = diagnose_onnx(variant.path.name, variant.workdir / "pre.onnx",
                                              variant.workdir / "qdq.onnx", values)
        else:
            variant.diagnosis = diagnose_tflite(
                variant.path.name, _float_tflite(job, variant.recipe.model),
                variant.path.read_bytes(), values, [layer.name for layer in job.graph.layers])
    except Exception as exc:  # a diagnosis must never cost the user the file itself
        log.warning("      could not diagnose %s: %s", variant.path.name, first_line(exc))
        variant.diagnosis = Diagnosis(variant.path.name, fmt, 0, [], error=first_line(exc))
    variant.diagnosis_seconds = time.perf_counter() - started
    return variant.diagnosis


def _model(job: Int8Job, kind: str) -> Any | None:
    """The Keras model a recipe quantizes; None when that kind changes nothing here."""
    if kind == "original":
        return job.graph
    if kind not in job.models:
        job.models[kind] = _make_model(job, kind)
    return job.models[kind]


def _make_model(job: Int8Job, kind: str) -> Any | None:
    from export.equalize import clone, correct_bias, equalize

    if kind == "qat":
        from export.qat import fine_tune

        start = _model(job, "equalized")  # the same function with even ranges: a better start
        model = fine_tune(job.source, start or job.graph, job.qat_epochs)
        job.notes["qat"] = [str(job.qat_epochs), "equalized" if start is not None else "original"]
        return model
    base = (_model(job, "equalized") or job.graph) if kind == "equalized+bias" else job.graph
    copy = clone(base)
    if copy is None:
        return None
    if kind == "equalized":
        pairs = equalize(copy)
        if not pairs:
            return None
        probs = keras_reference(copy, job.source.spec, job.source.check.images, None).probs
        if float(np.abs(probs - job.reference.probs).max()) > FUNCTION_ATOL:
            log.warning("equalization changed the model's answers; not using it")
            return None
        job.notes["equalized"] = pairs  # only once it is used: the report says so
        return copy
    corrected = correct_bias(copy, to_model_values(sample(job.calibration, 256), job.source.spec))
    job.notes["bias"] = corrected
    return copy if corrected else None


def _float_onnx(job: Int8Job, kind: str) -> Path:
    path = job.scratch / f"float-{kind}.onnx"
    if not path.exists():
        onnx_format.export_float(_model(job, kind), job.source.spec, path)
    return path


def _float_tflite(job: Int8Job, kind: str) -> bytes:
    if kind == "original" and job.float_tflite is not None:
        return job.float_tflite
    key = f"tflite:{kind}"
    if key not in job.models:
        job.models[key] = tflite_format.convert(_model(job, kind), job.source.spec, "float32")[0]
    return job.models[key]


def _fastest(variants: list[Variant]) -> Variant:
    if len(variants) == 1:
        return variants[0]
    for variant in variants:
        variant.latency_ms = measure_latency(variant.path)
    return min(variants, key=lambda v: v.latency_ms or 0.0)


def measure_latency(path: Path, runs: int = LATENCY_RUNS) -> float:
    """Median batch-1 engine time in ms, one thread: the user's per-frame cost."""
    import runtime

    classifier = runtime.load(path, threads=1)
    pixels = np.zeros((1, *classifier.spec.input_shape), np.uint8)
    batch = classifier.encode(pixels)
    for _ in range(10):
        classifier.backend.run(batch)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        classifier.backend.run(batch)
        times.append(time.perf_counter() - started)
    return round(float(np.median(times)) * 1e3, 4)


# --- float islands --------------------------------------------------------------------------

@dataclass(frozen=True)
class _Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def _onnx_nodes(path: Path) -> list[_Node]:
    import onnx

    graph = onnx.load(str(path)).graph
    return [_Node(n.name, n.op_type, tuple(n.input), tuple(n.output)) for n in graph.node]


def _tflite_nodes(model: bytes) -> list[_Node]:
    """TFLite ops named by their first output tensor (what ai-edge-quantizer matches)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()

    def names(indices: Any) -> tuple[str, ...]:
        return tuple(interpreter._get_tensor_details(int(i), 0)["name"] for i in indices if i >= 0)

    nodes = []
    for op in interpreter._get_ops_details():
        outputs = names(op["outputs"])
        nodes.append(_Node(outputs[0] if outputs else op["op_name"], op["op_name"],
                           names(op["inputs"]), outputs))
    return nodes


def _island(nodes: list[_Node], tensor: str, passthrough: set[str]) -> list[str]:
    """The nodes that must run in float for ``tensor`` to stay float: back through
    pass-through ops to the op that computes it, forward to the ops that compute with it."""
    producers = {out: node for node in nodes for out in node.outputs}
    island: list[str] = []
    current = producers.get(tensor)
    while current is not None:
        island.insert(0, current.name)
        if current.op not in passthrough or not current.inputs:
            break
        current = producers.get(current.inputs[0])
    frontier = [tensor]
    while frontier:
        name = frontier.pop()
        for node in nodes:
            if name in node.inputs and node.name not in island:
                island.append(node.name)
                if node.op in passthrough:
                    frontier.extend(node.outputs)
    return island

