"""``python -m benchmarks.variants``: the options the field tries, measured side by side.

Each variant is a way to run this bundle's model — an engine setting or a different export
of the same weights — timed as a bare engine call at batch 1 on one thread, interleaved
round-robin with the others, medians of rounds. ``docs/performance.md`` explains which ones
edgecnn keeps and why; this program reproduces its table.

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

from benchmarks.errors import BenchmarkError
from benchmarks.measure import time_calls
from benchmarks.stats import median_of_rounds, percentiles, schedule
from runtime.cli import Parser, run_cli, setup_logging

log = logging.getLogger(__name__)


@dataclass
class Variant:
    name: str
    what: str
    run: Callable[[], Any]   # one batch-1 engine call on a ready input
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
    from runtime.bundle import CALIB_SET, EVAL_SET, load_images, require_bundle
    from runtime.files import write_json, write_text

    if args.rounds < 1 or args.iterations < 1 or args.threads < 1:
        raise BenchmarkError("--rounds, --iterations and --threads must be positive")
    bundle = require_bundle(args.bundle)
    pixels = load_images(bundle / EVAL_SET)[0][:1]
    calibration = load_images(bundle / CALIB_SET)[0][::2]
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        variants = [*_onnx_variants(bundle, Path(scratch), pixels, calibration, args.threads,
                                    notes),
                    *_tflite_variants(bundle, pixels, args.threads)]
        if not variants:
            raise BenchmarkError(f"{bundle}/ has no model.onnx or model.tflite; run "
                                 "`python -m export --int8` first")
        results = _measure(variants, args.rounds, args.iterations)
    rows = [{"variant": v.name, "what": v.what, "load_ms": v.load_ms, **results[v.name]}
            for v in variants]
    report = {"bundle": str(bundle), "threads": args.threads, "rounds": args.rounds,
              "iterations": args.iterations, "rows": rows, "notes": notes}
    write_json(bundle / "variants.json", report)
    text = markdown(rows, notes)
    write_text(bundle / "variants.md", text)
    print(text)
    return 0


def _onnx_variants(bundle: Path, scratch: Path, pixels: np.ndarray, calibration: np.ndarray,
                   threads: int, notes: list[str]) -> list[Variant]:
    import onnxruntime as ort

    levels = ort.GraphOptimizationLevel
    found: list[Variant] = []
    float_path, int8_path = bundle / "model.onnx", bundle / "model.int8.onnx"
    if float_path.is_file():
        x = pixels.astype(np.float32)
        for level, label in ((levels.ORT_ENABLE_ALL, "all"), (levels.ORT_ENABLE_EXTENDED,
                                                               "extended"),
                             (levels.ORT_ENABLE_BASIC, "basic")):
            found.append(_ort(f"model.onnx opt={label}", "graph optimization level", float_path,
                              x, threads, level))
        saved = scratch / "model.optimized.onnx"
        _ort_session(float_path, threads, levels.ORT_ENABLE_ALL, optimized_to=saved)
        found.append(_ort("model.onnx saved-optimized", "optimized once, saved, loaded with "
                          "optimizations off (x86-specific layout)", saved, x, threads,
                          levels.ORT_DISABLE_ALL))
        found.append(_iobinding(float_path, x, threads))
        raw = _raw_tf2onnx(bundle, scratch, notes)
        if raw is not None:
            found.append(_ort("tf2onnx as exported", "before edgecnn's graph clean-up "
                              "(Mul/Add scaling, dynamic flatten, NHWC transpose)", raw, x,
                              threads, levels.ORT_ENABLE_ALL))
    if int8_path.is_file():
        found.append(_ort("model.int8.onnx (QDQ, u8 act)", "edgecnn's int8 ONNX", int8_path,
                          pixels, threads, levels.ORT_ENABLE_ALL))
    if float_path.is_file():
        for path, what in _other_quantizations(float_path, scratch, calibration, notes):
            found.append(_ort(path.stem, what, path, pixels.astype(np.float32), threads,
                              levels.ORT_ENABLE_ALL))
    return found


def _tflite_variants(bundle: Path, pixels: np.ndarray, threads: int) -> list[Variant]:
    from ai_edge_litert.interpreter import OpResolverType

    found = []
    for name in ("model.tflite", "model.int8.tflite"):
        if (bundle / name).is_file():
            found.append(_litert(bundle / name, pixels, threads, OpResolverType.AUTO,
                                 f"{name} xnnpack", "LiteRT with its default XNNPACK delegate"))
            found.append(_litert(bundle / name, pixels, threads,
                                 OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                                 f"{name} builtin", "LiteRT reference kernels, no XNNPACK"))
            found.append(_litert(bundle / name, pixels, threads, OpResolverType.AUTO,
                                 f"{name} xnnpack-latest", "XNNPACK with its latest "
                                 "(experimental) operator features", latest=True))
    return found


def _ort_session(path: Path, threads: int, level: Any, optimized_to: Path | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = level
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort(name: str, what: str, path: Path, x: np.ndarray, threads: int, level: Any) -> Variant:
    started = time.perf_counter()
    session = _ort_session(path, threads, level)
    load_ms = (time.perf_counter() - started) * 1e3
    feed = {session.get_inputs()[0].name: x.astype(_onnx_dtype(session))}
    return Variant(name, what, lambda: session.run(None, feed), load_ms)


def _iobinding(path: Path, x: np.ndarray, threads: int) -> Variant:
    """Buffers bound once; each call copies a new frame in and the result out, as a caller
    with new data must (binding the same input again and again would flatter it)."""
    import onnxruntime as ort

    started = time.perf_counter()
    session = _ort_session(path, threads, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
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

    return Variant("model.onnx io-binding", "buffers bound once, input copied in and output "
                   "out per call", run, load_ms)


def _litert(path: Path, pixels: np.ndarray, threads: int, resolver: Any, name: str,
            what: str, latest: bool = False) -> Variant:
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
    x = (pixels ^ np.uint8(0x80)).view(np.int8) if detail["dtype"] == np.int8 else \
        pixels.astype(np.float32)

    def run() -> Any:
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return Variant(name, what, run, load_ms)


def _onnx_dtype(session: Any) -> type:
    kind = session.get_inputs()[0].type
    return {"tensor(uint8)": np.uint8, "tensor(int8)": np.int8}.get(kind, np.float32)


def _raw_tf2onnx(bundle: Path, scratch: Path, notes: list[str]) -> Path | None:
    """The bundle's Keras model through Keras's ONNX export, with none of edgecnn's passes."""
    try:
        from train.tf_env import import_tensorflow

        import_tensorflow()
        import keras
    except ImportError:
        notes.append("tf2onnx as exported: skipped (TensorFlow is not installed)")
        return None
    model = keras.models.load_model(bundle / "model.keras", compile=False)
    model(np.zeros((1, *model.inputs[0].shape[1:]), np.float32))
    path = scratch / "raw.onnx"
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        model.export(str(path), format="onnx", verbose=False, opset_version=17)
    return path


def _other_quantizations(float_path: Path, scratch: Path, calibration: np.ndarray,
                         notes: list[str]) -> list[tuple[Path, str]]:
    """The same weights quantized the other ways: QOperator, and int8 activations."""
    try:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        from export.onnx import calibration_reader
    except ImportError:
        notes.append("other quantization formats: skipped (needs the export extra)")
        return []
    pre = scratch / "pre.onnx"
    quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
    import onnx

    name = onnx.load(str(pre)).graph.input[0].name
    values = calibration.astype(np.float32)
    made = []
    for fmt, act, label in ((QuantFormat.QDQ, QuantType.QInt8, "qdq-s8"),
                            (QuantFormat.QOperator, QuantType.QUInt8, "qoperator-u8"),
                            (QuantFormat.QOperator, QuantType.QInt8, "qoperator-s8")):
        path = scratch / f"int8.{label}.onnx"
        logging.disable(logging.WARNING)  # "use QDQ for int8 activations on x64": measured here
        try:
                quantize_static(str(pre), str(path), calibration_reader(name, values),
                            quant_format=fmt, per_channel=True, activation_type=act,
                            weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
        made.append((path, f"int8 {label.replace('-', ', ')} activations, float I/O"))
    return made


def _measure(variants: list[Variant], rounds: int, iterations: int) -> dict[str, dict]:
    for variant in variants:  # warm-up: first calls allocate and pack weights
        for _ in range(min(300, iterations)):
            variant.run()
    per_round: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    for number, order in enumerate(schedule(len(variants), rounds), start=1):
        for index in order:
            variant = variants[index]
            samples = time_calls(lambda _, run=variant.run: run(), [None], iterations)
            per_round[variant.name].append(percentiles(samples))
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
