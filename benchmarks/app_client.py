"""``python -m benchmarks.app_client``: the app-ready TFLite file in a real app client.

MediaPipe Tasks' ``ImageClassifier`` (the Python build of what Android, iOS and web apps
run) loads ``model.int8.app.tflite`` with nothing but its standard metadata, classifies every
eval image, and is scored by category *name* against the labels, next to edgecnn's runtime
on the same file. Needs the mediapipe package (the dev extra).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.errors import BenchmarkError
from runtime.cli import Parser, run_cli
from runtime.optional import require


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.app_client", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", default="artifacts", help="bundle with eval.npz and the app file")
    p.add_argument("--model", default=None, help="app-ready .tflite (default: the bundle's)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("app_client", lambda: _run(args))


def mediapipe_top1(model: Path, images: np.ndarray) -> tuple[list[str], float]:
    """MediaPipe's top category name for each (N, H, W, C) uint8 image, and µs per image.

    Grey images go in as RGB with equal channels, as a phone camera's grey card would."""
    mp = require("mediapipe", "as the app client (MediaPipe Tasks)")
    vision = mp.tasks.vision
    options = vision.ImageClassifierOptions(
        base_options=mp.tasks.BaseOptions(model_asset_path=str(model)), max_results=1)
    names = []
    with vision.ImageClassifier.create_from_options(options) as classifier:
        started = time.perf_counter()
        for image in images:
            rgb = np.ascontiguousarray(np.repeat(image, 3, axis=-1) if image.shape[-1] == 1
                                       else image)
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
            categories = result.classifications[0].categories
            names.append(categories[0].category_name if categories else "")
        elapsed = time.perf_counter() - started
    return names, elapsed / max(1, len(images)) * 1e6


def _run(args: argparse.Namespace) -> int:
    import runtime
    from runtime.bundle import APP_TFLITE, EVAL_SET, load_images, require_bundle
    from runtime.preprocess import prepare_batch

    bundle = require_bundle(args.bundle)
    model = Path(args.model) if args.model else bundle / APP_TFLITE
    if not model.is_file():
        raise BenchmarkError(f"no {model}; make it with `python -m export --bundle {bundle} "
                             "--int8`")
    images, labels = load_images(bundle / EVAL_SET)
    classifier = runtime.load(model)
    truth = [classifier.labels[i] for i in labels]
    ours = [classifier.labels[i] for i in
            classifier.probabilities(prepare_batch(images, classifier.spec)).argmax(1)]
    names, per_image_us = mediapipe_top1(model, images)
    right = sum(a == b for a, b in zip(names, truth, strict=True))
    same = sum(a == b for a, b in zip(names, ours, strict=True))
    ours_right = sum(a == b for a, b in zip(ours, truth, strict=True))
    print(f"MediaPipe ImageClassifier, {model.name}, {len(images)} eval images: "
          f"{right / len(images) * 100:.2f} % right by name ({right}/{len(images)}); "
          f"edgecnn runtime on the same file {ours_right / len(images) * 100:.2f} %; "
          f"same top-1 name {same / len(images) * 100:.2f} %; {per_image_us:.0f} µs per "
          "image in MediaPipe")
    return 0


if __name__ == "__main__":
    sys.exit(main())
