"""``python -m benchmarks.variants``: the options the field tries, measured side by side.

Each variant is a way to run this bundle's model — an engine setting or a different export
of the same weights — timed as a bare engine call at batch 1 on one thread, interleaved
round-robin with the others, medians of rounds. Sessions, conversions and inputs come from
the runtime and export themselves (``onnx_session``, ``keras_to_onnx``, ``export_int8``,
``Classifier.encode``), so a variant differs from what edgecnn ships only where it says.
``docs/performance.md`` explains which ones edgecnn keeps and why; this program reproduces
its table.

Variants that need the export toolchain (the raw tf2onnx graph needs TensorFlow; other
quantization formats need ``onnxruntime.quantization`` with ``onnx``) are skipped with a note
when it is not installed.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import runtime
from benchmarks.errors import BenchmarkError
from benchmarks.measure import model_input, time_calls
from benchmarks.stats import median_of_rounds, percentiles, schedule
from runtime.backends import onnx_session
from runtime.bundle import EXPORT_NAMES, KERAS_MODEL
from runtime.cli import Parser, run_cli, setup_logging
from runtime.preprocess import to_model_values
from runtime.spec import ModelSpec

log = logging.getLogger(__name__)
RESULTS, TABLE = "variants.json", "variants.md"
FLOAT_ONNX, INT8_ONNX = EXPORT_NAMES[("onnx", "float32")], EXPORT_NAMES[("onnx", "int8")]
TFLITE_FILES = (EXPORT_NAMES[("tflite", "float32")], EXPORT_NAMES[("tflite", "int8")])
WARMUP_CALLS = 300  # first calls allocate buffers and pack weights


@dataclass
class EngineCall:
    """One way to run the model: a bare batch-1 engine call on a ready input."""

    name: str
    what: str
    run: Callable[[], Any]
    load_ms: float


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.variants", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", default="artifacts")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--iterations", type=int, default=2000, help="calls per variant per round")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("variants", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    setup_logging("benchmarks", "export")
    from runtime.bundle import CALIB_SET, EVAL_SET, load_images, load_spec, require_bundle
    from runtime.files import write_json, write_text

    if args.rounds < 1 or args.iterations < 1 or args.threads < 1:
        raise BenchmarkError("--rounds, --iterations and --threads must be positive")
    bundle = require_bundle(args.bundle)
    spec = load_spec(bundle)
    pixels = load_images(bundle / EVAL_SET)[0][:1]
    calibration = load_images(bundle / CALIB_SET)[0][::2]
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        calls = [*_onnx_calls(bundle, Path(scratch), spec, pixels, calibration, args.threads,
                              notes),
                 *_tflite_calls(bundle, pixels, args.threads)]
        if not calls:
            raise BenchmarkError(f"{bundle}/ has no {FLOAT_ONNX} or {TFLITE_FILES[0]}; run "
                                 "`python -m export --int8` first")
        results = _measure(calls, args.rounds, args.iterations)
    rows = [{"variant": c.name, "what": c.what, "load_ms": c.load_ms, **results[c.name]}
            for c in calls]
    report = {"bundle": str(bundle), "threads": args.threads, "rounds": args.rounds,
              "iterations": args.iterations, "rows": rows, "notes": notes}
    write_json(bundle / RESULTS, report)
    text = markdown(rows, notes)
    write_text(bundle / TABLE, text)
    print(text)
    return 0


def _onnx_calls(bundle: Path, scratch: Path, spec: ModelSpec, pixels: np.ndarray,
                calibration: np.ndarray, threads: int, notes: list[str]) -> list[EngineCall]:
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel
    found: list[EngineCall] = []
    float_path, int8_path = bundle / FLOAT_ONNX, bundle / INT8_ONNX
    if float_path.is_file():
        x = model_input(runtime.load(float_path), pixels)  # what the runtime feeds the file
        for level, label in ((levels.ORT_ENABLE_ALL, "all"), (levels.ORT_ENABLE_EXTENDED,
                                                               "extended"),
                             (levels.ORT_ENABLE_BASIC, "basic")):
            found.append(_ort(f"{FLOAT_ONNX} opt={label}", "graph optimization level",
                              float_path, x, threads, level))
        saved = scratch / "optimized.onnx"
        onnx_session(float_path, threads, levels.ORT_ENABLE_ALL, optimized_to=saved)
        found.append(_ort(f"{FLOAT_ONNX} saved-optimized", "optimized once, saved, loaded with "
                          "optimizations off (x86-specific layout)", saved, x, threads,
                          levels.ORT_DISABLE_ALL))
        found.append(_iobinding(float_path, x, threads))
        raw = _raw_tf2onnx(bundle, scratch, notes)
        if raw is not None:
            found.append(_ort("tf2onnx as exported", "before edgecnn's graph clean-up "
                              "(Mul/Add scaling, dynamic flatten, NHWC transpose)", raw, x,
                              threads))
    if int8_path.is_file():
        found.append(_ort(f"{INT8_ONNX} (QDQ, u8 act)", "edgecnn's int8 ONNX", int8_path,
                          model_input(runtime.load(int8_path), pixels), threads))
    if float_path.is_file():
        found += _other_quantizations(float_path, scratch, spec, pixels, calibration, threads,
                                      notes)
    return found


def _tflite_calls(bundle: Path, pixels: np.ndarray, threads: int) -> list[EngineCall]:
    from ai_edge_litert.interpreter import OpResolverType

    found = []
    for name in TFLITE_FILES:
        if (bundle / name).is_file():
            x = model_input(runtime.load(bundle / name), pixels)
            found.append(_litert(bundle / name, x, threads, OpResolverType.AUTO,
                                 f"{name} xnnpack", "LiteRT with its default XNNPACK delegate"))
            found.append(_litert(bundle / name, x, threads,
                                 OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                                 f"{name} builtin", "LiteRT reference kernels, no XNNPACK"))
            found.append(_litert(bundle / name, x, threads, OpResolverType.AUTO,
                                 f"{name} xnnpack-latest", "XNNPACK with its latest "
                                 "(experimental) operator features", latest=True))
    return found


def _ort(name: str, what: str, path: Path, x: np.ndarray, threads: int,
         level: Any = None) -> EngineCall:
    started = time.perf_counter()
    session: Any = onnx_session(path, threads, level)
    load_ms = (time.perf_counter() - started) * 1e3
    feed = {session.get_inputs()[0].name: x}
    return EngineCall(name, what, lambda: session.run(None, feed), load_ms)


def _iobinding(path: Path, x: np.ndarray, threads: int) -> EngineCall:
    """Buffers bound once; each call copies a new frame in and the result out, as a caller
    with new data must (binding the same input again and again would flatter it)."""
    import onnxruntime as ort

    started = time.perf_counter()
    session: Any = onnx_session(path, threads)
    binding = session.io_binding()
    bound_in = ort.OrtValue.ortvalue_from_numpy(np.zeros_like(x))
    bound_out = ort.OrtValue.ortvalue_from_shape_and_type(
        [len(x), *session.get_outputs()[0].shape[1:]], np.float32)
    binding.bind_ortvalue_input(session.get_inputs()[0].name, bound_in)
    binding.bind_ortvalue_output(session.get_outputs()[0].name, bound_out)
    view = bound_in.numpy()  # shares the bound buffer
    load_ms = (time.perf_counter() - started) * 1e3

    def run() -> Any:
        np.copyto(view, x)
        session.run_with_iobinding(binding)
        return bound_out.numpy().copy()

    return EngineCall(f"{FLOAT_ONNX} io-binding", "buffers bound once, input copied in and "
                      "output out per call", run, load_ms)


def _litert(path: Path, x: np.ndarray, threads: int, resolver: Any, name: str,
            what: str, latest: bool = False) -> EngineCall:
    from ai_edge_litert.interpreter import Interpreter

    from runtime.quiet import native_stderr_silenced

    started = time.perf_counter()
    with native_stderr_silenced():
        interpreter = Interpreter(model_path=str(path), num_threads=threads,
                                  experimental_op_resolver_type=resolver,
                                  experimental_default_delegate_latest_features=latest)
        interpreter.allocate_tensors()
    load_ms = (time.perf_counter() - started) * 1e3
    detail = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]["index"]

    def run() -> Any:
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return EngineCall(name, what, run, load_ms)


def _raw_tf2onnx(bundle: Path, scratch: Path, notes: list[str]) -> Path | None:
    """The bundle's Keras model through Keras's ONNX export, with none of edgecnn's passes."""
    from benchmarks.keras_ref import tensorflow_available

    if not tensorflow_available():
        notes.append("tf2onnx as exported: skipped (TensorFlow is not installed)")
        return None
    from export.onnx import keras_to_onnx
    from export.source import load_keras

    path = scratch / "raw.onnx"
    keras_to_onnx(load_keras(bundle / KERAS_MODEL), path)
    return path


def _other_quantizations(float_path: Path, scratch: Path, spec: ModelSpec, pixels: np.ndarray,
                         calibration: np.ndarray, threads: int,
                         notes: list[str]) -> list[EngineCall]:
    """The same weights quantized the other ways: int8 activations (export's
    ``--onnx-activations int8``), and the QOperator format, which export does not write."""
    try:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from export.onnx import calibration_reader, export_int8
    except ImportError:
        notes.append("other quantization formats: skipped (needs the export extra)")
        return []
    qdq_s8 = scratch / "int8.qdq-s8.onnx"
    export_int8(float_path, spec, qdq_s8, calibration, activations="int8")
    found = [_ort("int8.qdq-s8", "export's int8 ONNX with --onnx-activations int8", qdq_s8,
                  model_input(runtime.load(qdq_s8), pixels), threads)]
    pre = scratch / "pre.onnx"
    quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
    values = to_model_values(calibration, spec)
    float_model = runtime.load(float_path)
    x = model_input(float_model, pixels)  # QOperator files keep the float file's I/O
    for act, label in ((QuantType.QUInt8, "qoperator-u8"), (QuantType.QInt8, "qoperator-s8")):
        path = scratch / f"int8.{label}.onnx"
        reader = calibration_reader(float_model.backend.input_name, values)  # type: ignore
        logging.disable(logging.WARNING)  # "use QDQ for int8 activations on x64": measured here
        try:
            quantize_static(str(pre), str(path), reader, quant_format=QuantFormat.QOperator,
                            per_channel=True, activation_type=act, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        found.append(_ort(f"int8.{label}", f"int8 {label.split('-')[0]}, "
                          f"{label.split('-')[1]} activations, float I/O", path, x, threads))
    return found


def _measure(calls: list[EngineCall], rounds: int, iterations: int) -> dict[str, dict]:
    for call in calls:
        for _ in range(min(WARMUP_CALLS, iterations)):
            call.run()
    per_round: dict[str, list[dict[str, float]]] = {c.name: [] for c in calls}
    for number, order in enumerate(schedule(len(calls), rounds), start=1):
        for index in order:
            call = calls[index]
            samples = time_calls(lambda _, run=call.run: run(), [None], iterations)
            per_round[call.name].append(percentiles(samples))
        log.info("round %d/%d", number, rounds)
    return {name: median_of_rounds(values) for name, values in per_round.items()}


def markdown(rows: list[dict[str, Any]], notes: list[str]) -> str:
    lines = ["| variant | p50 µs | p90 µs | load ms | what |", "|---|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['variant']} | {row['p50']:.1f} | {row['p90']:.1f} | "
                     f"{row['load_ms']:.1f} | {row['what']} |")
    return "\n".join(lines + [f"\n{note}" for note in notes]) + "\n"


if __name__ == "__main__":
    sys.exit(main())
