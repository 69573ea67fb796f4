"""``python -m benchmarks.bulk``: bulk prediction's images/s next to the engine's.

Writes ``--images`` small PNG files (the bundle's eval images, repeated) into a scratch
folder, then measures in interleaved rounds: ``runtime.bulk.predict_files`` over the folder
writing CSV rows (what ``python -m runtime predict FOLDER --out preds.csv`` does after
start-up: read, decode, prepare, infer, write), and the engine alone on prepared batches
of 64. Once more, the command as a user types it, start-up included. Medians over rounds,
per wall-clock second and per CPU-second: on a shared machine the second is the steadier.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.measure import time_calls
from runtime.classifier import Classifier
from runtime.cli import Parser, run_cli, setup_logging

log = logging.getLogger("benchmarks")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.bulk", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", default="artifacts", help="bundle with eval.npz and exports")
    p.add_argument("--model", default=None, help="model file (default: the bundle's "
                   "model.int8.tflite)")
    p.add_argument("--images", type=int, default=10_000, help="image files to classify")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--threads", type=int, default=1, help="engine threads")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("benchmarks.bulk", lambda: _run(args))


def write_images(images: np.ndarray, labels: np.ndarray, count: int, folder: Path) -> None:
    """``count`` PNG files, one folder per label, cycling through the eval images."""
    for i in range(count):
        target = folder / str(labels[i % len(images)])
        target.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target / f"{i:06d}.png"), images[i % len(images)])


def _run(args: argparse.Namespace) -> int:
    setup_logging("benchmarks")
    import runtime
    from runtime import bulk
    from runtime.bundle import EVAL_SET, load_images, require_bundle
    from runtime.errors import EdgeCNNError
    from runtime.preprocess import prepare_batch

    if args.images < 64 or args.rounds < 1:
        raise EdgeCNNError("--images must be at least 64 and --rounds at least 1")
    bundle = require_bundle(args.bundle)
    model = Path(args.model) if args.model else bundle / "model.int8.tflite"
    classifier = runtime.load(model, threads=args.threads)
    images, labels = load_images(bundle / EVAL_SET)
    batch = prepare_batch(np.resize(images, (64, *images.shape[1:])), classifier.spec)
    calls = args.images // 64
    with tempfile.TemporaryDirectory(prefix="edgecnn-bulk-") as tmp:
        folder = Path(tmp) / "images"
        log.info("writing %d PNG files …", args.images)
        write_images(images, labels, args.images, folder)
        paths = bulk.expand([str(folder)])
        rates: dict[str, list[tuple[float, float]]] = {"bulk": [], "engine": []}
        for r in range(args.rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            with bulk.open_output(str(Path(tmp) / "preds.csv"), 3, overwrite=True) as out:
                for row in bulk.predict_files(classifier, paths):
                    out.write(row)
            rates["bulk"].append(_rates(len(paths), wall, cpu))
            wall, cpu = time.perf_counter(), time.process_time()
            time_calls(classifier.probabilities, [batch], calls)
            rates["engine"].append(_rates(calls * 64, wall, cpu))
            log.info("round %d/%d: bulk %.0f images/s, engine batch-64 %.0f images/s", r + 1,
                     args.rounds, rates["bulk"][-1][0], rates["engine"][-1][0])
        stages = _stages(classifier, paths)
        started = time.perf_counter()
        command = [sys.executable, "-m", "runtime", "predict", "--model", str(model),
                   "--threads", str(args.threads), str(folder), "--out",
                   str(Path(tmp) / "cli.csv")]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        cli_seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise EdgeCNNError(f"runtime predict failed: {done.stderr.strip()}")
    (bulk_wall, bulk_cpu), (engine_wall, engine_cpu) = (
        np.median(np.array(rates[kind]), axis=0) for kind in ("bulk", "engine"))
    print(f"{model.name}, {args.images:,} PNG files of {images.shape[1]}x{images.shape[2]}, "
          f"engine threads {args.threads}, {len(paths)} files found, median of {args.rounds} "
          f"rounds, load average {_load()}:")
    print(f"  {'':<52} {'images/s':>10} {'images/CPU-s':>13}")
    print(f"  {'bulk predict (read, decode, prepare, infer, CSV)':<52} {bulk_wall:>10,.0f} "
          f"{bulk_cpu:>13,.0f}")
    print(f"  {'engine alone, prepared batches of 64':<52} {engine_wall:>10,.0f} "
          f"{engine_cpu:>13,.0f}")
    print(f"  bulk / engine: {bulk_wall / engine_wall:.2f} (wall), "
          f"{bulk_cpu / engine_cpu:.2f} (CPU)")
    print(f"  CPU µs per image, one thread: read {stages['read']:.1f}, decode and prepare "
          f"{stages['decode']:.1f}; engine {1e6 / engine_cpu:.1f}")
    print(f"  `python -m runtime predict FOLDER --out preds.csv`, start-up included: "
          f"{cli_seconds:.1f} s ({args.images / cli_seconds:,.0f} images/s)")
    return 0


def _stages(classifier: Classifier, paths: list[str]) -> dict[str, float]:
    """CPU µs per image of reading the files and of decoding and preparing them."""
    from runtime.preprocess import decode_image

    cpu = time.process_time()
    data = [Path(p).read_bytes() for p in paths]
    read = time.process_time() - cpu
    cpu = time.process_time()
    for item in data:
        classifier.model_pixels(decode_image(item))
    decode = time.process_time() - cpu
    return {"read": read / len(paths) * 1e6, "decode": decode / len(paths) * 1e6}


def _rates(images: int, wall_start: float, cpu_start: float) -> tuple[float, float]:
    """Images per wall-clock second and per CPU-second (all threads) since the starts."""
    wall = time.perf_counter() - wall_start
    cpu = max(time.process_time() - cpu_start, 1e-9)
    return images / wall, images / cpu


def _load() -> str:
    from benchmarks.environment import load_average

    loads = load_average()
    return "n/a" if not loads else f"{loads[0]:.1f}"


if __name__ == "__main__":
    sys.exit(main())
