"""``python -m benchmarks``: size, accuracy, latency, throughput, cold start and memory of
every model file in a bundle, against the Keras model, measured to survive a noisy machine.

``python -m benchmarks --compare a.json b.json`` sets two runs (two machines) side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.errors import BenchmarkError
from runtime.cli import EXIT_FAILED, EXIT_OK, Parser, run_cli, setup_logging

log = logging.getLogger("benchmarks")
RESULTS = "benchmark.json"
SCHEMA = "edgecnn.benchmark/1"
MAX_DROP_PP = 1.0  # the best file for the pipeline figure may lose at most this much accuracy


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--bundle", default="artifacts", help="bundle with model.keras, eval.npz and exports")
    add("--threads", type=int, default=1, help="engine threads (onnxruntime intra-op, LiteRT, "
        "TensorFlow intra-op); fixed so runs compare")
    add("--quick", action="store_true", help="fewer rounds and calls, one cold start per file")
    add("--out", default=None, help=f"results JSON (default <bundle>/{RESULTS}); the .md and "
        ".png go beside it. With --compare: write the comparison markdown here")
    add("--no-keras", action="store_true", help="skip the Keras reference, as on a device "
        "without TensorFlow")
    add("--rounds", type=int, default=None, help="override the mode's interleaved rounds")
    add("--iterations", type=int, default=None, help="override batch-1 calls per round")
    add("--repeats", type=int, default=None, help="override cold starts per file")
    add("--compare", nargs=2, metavar=("A.json", "B.json"), default=None,
        help="compare two benchmark.json files instead of measuring")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("benchmarks", lambda: _compare(args) if args.compare else _benchmark(args))


def _benchmark(args: argparse.Namespace) -> int:
    setup_logging("benchmarks")
    started = time.perf_counter()
    settings = _settings(args)
    from benchmarks import coldstart, environment, measure, pipeline, report
    from runtime.bundle import EVAL_SET, KERAS_MODEL, load_images, load_spec, require_bundle
    from runtime.files import write_json, write_text

    bundle = require_bundle(args.bundle)
    spec = load_spec(bundle)
    images, labels = load_images(bundle / EVAL_SET)
    files = model_files(bundle)
    keras_path = bundle / KERAS_MODEL
    skipped = _keras_skipped(args.no_keras, keras_path)
    notes = [f"No Keras reference row: {skipped}."] if skipped else []
    models = ([] if skipped else [keras_path]) + files
    env = environment.environment(models, args.threads)
    log.info("benchmarking %d files in %s (%s mode, threads %d)", len(models), bundle,
             "quick" if args.quick else "full", args.threads)

    cold = coldstart.measure(models, images[0], args.threads, settings.repeats)

    candidates = [measure.runtime_candidate(path, args.threads) for path in files]
    keras_threads = keras_call = None
    if not skipped:
        from benchmarks.keras_ref import KerasReference
        from export.source import load_keras
        from train.tf_env import import_tensorflow

        # Only now: the parent stays light while the cold-start children run.
        keras_threads = import_tensorflow(args.threads)
        keras_model = KerasReference(load_keras(keras_path), spec)
        keras_call = keras_model.choose(images[:1])
        candidates.insert(0, measure.keras_candidate(keras_path, keras_model))
        notes.append(f"Keras reference latency uses the {keras_call} call (faster in a "
                     f"trial: {_trial(keras_model.trial_us)}); its input is converted from "
                     "uint8 inside the timed call, like the runtime's.")
        reference = candidates[0]
    else:
        reference = _fallback_reference(candidates)
        notes.append(f"Accuracy is vs the labels only; change, agreement and speed-up are vs "
                     f"{reference.file} ({reference.precision} {reference.backend}) instead.")
    measure.accuracy(candidates, images, labels, reference)
    measure.hot_path(candidates, images, settings)

    rows = [_row(v, reference, cold.get(v.file, {})) for v in candidates]
    best = best_file(rows)
    pipe = None
    if best is not None:
        classifier = next(v.classifier for v in candidates if v.file == best)
        pipe = pipeline.measure(classifier, images, labels, settings.frames, settings.rounds)
    notes += _cold_notes(rows)
    env["load_average_end"] = environment.load_average()
    from runtime.memory import peak_rss_mb

    result = {
        "schema": SCHEMA, "bundle": str(bundle),
        "settings": {"mode": "quick" if args.quick else "full", "threads": args.threads,
                     **dataclasses.asdict(settings), "keras_call": keras_call,
                     "keras_threads": keras_threads},
        "reference": {"file": reference.file, "backend": reference.backend,
                      "keras": not skipped},
        "best": {"file": best, "why": f"fastest batch-1 p50 within {MAX_DROP_PP:g} pp of the "
                 "reference's accuracy"},
        "rows": rows, "pipeline": pipe, "notes": notes,
        "method": method(settings, args.threads, keras_threads, len(images)),
        "environment": env, "seconds": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_mb(),  # this process: every variant, Keras included, loaded
    }
    out = Path(args.out) if args.out else bundle / RESULTS
    write_json(out, result)
    write_text(out.with_suffix(".md"), report.markdown(result))
    png = report.plot(result, out.with_suffix(".png"))
    print(report.text_table(rows))
    if pipe is not None:
        stages = pipe["stages_us"]
        print(f"camera frames ({pipe['frame_size']}, {pipe['file']}), µs per frame (p50): "
              f"decode {stages['decode_us']['p50']:.0f}, framing "
              f"{stages['preprocess_us']['p50']:.0f}, inference "
              f"{stages['inference_us']['p50']:.0f}, other {stages['other_us']['p50']:.0f}; "
              f"framing/inference {pipe['framing_to_inference']:.1f}×")
    for note in notes:
        print(f"note: {note}")
    if result["peak_rss_mb"] is not None:
        print(f"peak memory of this benchmark process: {result['peak_rss_mb']:.0f} MB")
    print(f"wrote {out}, {out.with_suffix('.md').name}"
          + (f", {png.name}" if png else f" ({report.NO_PNG})")
          + f" in {result['seconds']:.0f} s")
    failed = any(r.get("cold_start", {}).get("errors") for r in rows)
    return EXIT_FAILED if failed else EXIT_OK


def model_files(bundle: Path) -> list[Path]:
    """Every .onnx/.tflite in the bundle, the standard names first in export order."""
    from runtime.backends import SUFFIXES
    from runtime.bundle import EXPORT_NAMES

    found = [p for p in bundle.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file()
             and not p.name.startswith(".")]
    order = {name: i for i, name in enumerate(EXPORT_NAMES.values())}
    found.sort(key=lambda p: (order.get(p.name, len(order)), p.name))
    if not found:
        raise BenchmarkError(f"{bundle}/ has no .onnx or .tflite files to benchmark; run "
                             f"`python -m export --bundle {bundle} --int8 --fp16 --dynamic`")
    return found


def best_file(rows: list[dict[str, Any]]) -> str | None:
    """The fastest runtime file that keeps the reference's accuracy (within MAX_DROP_PP)."""
    files = [r for r in rows if r["backend"] != "keras" and r.get("latency_us")]
    good = [r for r in files if (r.get("accuracy_change_pp") or 0.0) >= -MAX_DROP_PP] or files
    return min(good, key=lambda r: r["latency_us"]["p50"])["file"] if good else None


def method(settings: Any, threads: int, keras_threads: str | None, images: int) -> list[str]:
    return [
        f"Accuracy and top-1 agreement on all {images} images of eval.npz (held-out test split).",
        f"Warm-up: {settings.warmup} untimed batch-1 calls per candidate (and a few batches).",
        f"Interleaved: {settings.rounds} rounds, each timing every candidate once, starting one "
        "candidate later each round; figures are medians over rounds of each round's "
        "percentiles.",
        f"Batch-1 latency: Classifier.probabilities(pixels[None]) on prepared uint8 eval images "
        f"({settings.inputs} distinct, cycled), {settings.iterations} calls per round, "
        "time.perf_counter_ns per call, garbage collection paused.",
        "Engine p50: backend.run on an input already converted and quantized (Keras: the chosen "
        "call on float values), alternating call for call with the Classifier call; overhead "
        "is the median of those paired differences.",
        f"Throughput: Classifier.probabilities on a batch of {settings.batch}, "
        f"{settings.batches} calls per round, median call time.",
        f"Threads: onnxruntime intra-op {threads}, inter-op 1, spinning off; LiteRT "
        f"num_threads {threads}; TensorFlow {keras_threads or 'not loaded'}.",
        f"Cold start: a fresh `python -m benchmarks._child` per file, {settings.repeats} "
        "repeats round-robin, medians; from spawn: interpreter start-up, import (runtime and "
        "its engine, or TensorFlow and Keras), load, first prediction (Classifier.predict of "
        "one eval image; Keras: an eager call); peak memory is the child's ru_maxrss.",
        "Peak memory of the benchmark process itself (every variant loaded, Keras included): "
        "its ru_maxrss at the end, `peak_rss_mb` in the JSON.",
        "Speed-up: the reference's batch-1 p50 over the file's.",
        f"Pipeline: the best file's Classifier.classify_frame on {settings.frames} rendered "
        f"640×480 JPEG frames per round, {settings.rounds} rounds; JPEG decoding timed apart; "
        "stages as FrameResult reports them; OpenCV threads left at their default.",
    ]


def _row(v: Any, reference: Any, cold: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.stats import speedup

    ref_p50 = reference.results["latency_us"]["p50"]
    return {"file": v.file, "backend": v.backend, "precision": v.precision,
            "size_bytes": v.size_bytes, "reference": v is reference, **v.results,
            "speedup": speedup(ref_p50, v.results["latency_us"]["p50"]), "cold_start": cold}


def _keras_skipped(no_keras: bool, keras_path: Path) -> str | None:
    """Why there is no Keras reference row, or None when there is one."""
    from benchmarks.keras_ref import tensorflow_available

    if no_keras:
        return "--no-keras"
    if not keras_path.is_file():
        return f"no {keras_path.name} in the bundle"
    if not tensorflow_available():
        return "TensorFlow is not installed (runtime extra only)"
    return None


def _fallback_reference(candidates: list[Any]) -> Any:
    """Without Keras: the float32 ONNX file, else any float32 file, else the first."""
    from runtime.bundle import EXPORT_NAMES

    float_onnx = EXPORT_NAMES[("onnx", "float32")]
    return next((v for v in candidates if v.file == float_onnx), None) or \
        next((v for v in candidates if v.precision == "float32"), candidates[0])


def _cold_notes(rows: list[dict[str, Any]]) -> list[str]:
    notes = []
    for r in rows:
        cold = r.get("cold_start") or {}
        if r["backend"] != "keras" and cold.get("tensorflow_imported"):
            notes.append(f"{r['file']}: the runtime child imported TensorFlow; the runtime "
                         "must stay TensorFlow-free (cold start not valid).")
        for error in cold.get("errors", []):
            notes.append(f"{r['file']}: cold start failed: {error}")
    if rows and not any(r["backend"] != "keras" and (r.get("cold_start") or {})
                        .get("tensorflow_imported") for r in rows):
        notes.append("No runtime cold-start process imported TensorFlow (checked in each).")
    return notes


def _trial(trial_us: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.0f} µs" for name, value in trial_us.items())


def _settings(args: argparse.Namespace) -> Any:
    from benchmarks.measure import MODES

    if args.threads < 1:
        raise BenchmarkError(f"--threads {args.threads}: use 1 or more")
    overrides = {k: getattr(args, k) for k in ("rounds", "iterations", "repeats")
                 if getattr(args, k) is not None}
    bad = [f"--{k} {v}" for k, v in overrides.items() if v < 1]
    if bad:
        raise BenchmarkError(f"{', '.join(bad)}: must be at least 1")
    return dataclasses.replace(MODES["quick" if args.quick else "full"], **overrides)


def _compare(args: argparse.Namespace) -> int:
    from benchmarks.report import compare
    from runtime.files import write_text

    a, b = (load_run(Path(p)) for p in args.compare)
    try:
        text = compare(a, b, (args.compare[0], args.compare[1]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a hand-edited result
        raise BenchmarkError(f"--compare: a result has a malformed field ({exc!r}); compare "
                             "files written by `python -m benchmarks`") from None
    print(text)
    if args.out:
        write_text(args.out, text)
    return EXIT_OK


def load_run(path: Path) -> dict[str, Any]:
    """A benchmark.json, or a BenchmarkError naming what is wrong with it."""
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchmarkError(f"--compare {path}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BenchmarkError(f"--compare {path}: not a JSON file ({exc})") from None
    if not isinstance(run, dict) or run.get("schema") != SCHEMA:
        raise BenchmarkError(f"--compare {path}: not a benchmark result (schema {SCHEMA}); "
                             "make one with `python -m benchmarks`")
    rows = run.get("rows")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "file" in r for r in rows):
        raise BenchmarkError(f"--compare {path}: its rows are missing or malformed")
    return run


if __name__ == "__main__":
    sys.exit(main())
