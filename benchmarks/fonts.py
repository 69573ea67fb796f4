"""``python -m benchmarks.fonts``: how a model file reads printed digits in fonts it never saw.

Digits in each font group are photographed by the camera model and framed by the runtime
(the printed source's renderer, with a seed of its own, so none of these images is one
training made), then classified by the bundle's model file:

- ``held-out``: installed font families the bundle's training and validation never used
  (all of them for a model trained on no printed digits);
- ``opencv``: OpenCV's own fonts, drawn by ``cv2.putText`` (another rasterizer too);
- ``system``: the operating system's fonts, when there are any (machine-dependent).

Writes ``fonts_eval.json`` into the bundle: accuracy per group and per family, and the
confusion matrix per group.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from runtime.cli import Parser, run_cli, setup_logging

log = logging.getLogger(__name__)
RESULTS = "fonts_eval.json"
SEED = 12_345  # not a seed any training run uses by default: these are new photographs


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.fonts", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", default="artifacts")
    p.add_argument("--model", default=None, help="model file (default: the bundle's "
                   "model.int8.tflite, else its model.onnx)")
    p.add_argument("--per-digit", type=int, default=20, help="photographs per digit per font")
    p.add_argument("--seed", type=int, default=SEED)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("fonts", lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    setup_logging("benchmarks", "scenes")
    import runtime
    from benchmarks.errors import BenchmarkError
    from demos.make_clip import held_out_fonts
    from runtime.bundle import require_bundle
    from runtime.files import write_json
    from scenes import fonts, printed

    bundle = require_bundle(args.bundle)
    if args.per_digit < 1:
        raise BenchmarkError(f"--per-digit {args.per_digit} must be at least 1")
    model = Path(args.model) if args.model else next(
        (bundle / n for n in ("model.int8.tflite", "model.onnx") if (bundle / n).is_file()),
        bundle / "model.int8.tflite")
    classifier = runtime.load(model)
    if tuple(classifier.labels) != tuple(fonts.DIGITS):
        raise BenchmarkError(f"{model.name} does not classify the digits 0-9")
    unseen, why = held_out_fonts(bundle)
    groups = {"held-out": unseen, "opencv": fonts.opencv_fonts(), "system": fonts.system_fonts()}
    result: dict[str, Any] = {"model": model.name, "per_digit": args.per_digit,
                              "seed": args.seed, "held_out_because": why, "groups": {}}
    for name, group in groups.items():
        if not group:
            log.info("%s: no fonts here, skipped", name)
            continue
        data = printed.printed_set(group, args.per_digit, args.seed)
        predicted = classifier.probabilities(data.images[..., None]).argmax(axis=1)
        result["groups"][name] = group_metrics(data, predicted)
        log.info("%s: %.2f%% of %d digits in %s", name,
                 100 * result["groups"][name]["accuracy"], len(data),
                 ", ".join(fonts.families(group)))
    write_json(bundle / RESULTS, result)
    for name, metrics in result["groups"].items():
        per_family = ", ".join(f"{family} {100 * acc:.1f}%"
                               for family, acc in metrics["per_family"].items())
        print(f"{name:9s} {100 * metrics['accuracy']:6.2f}% of {metrics['count']} ({per_family})")
    print(f"wrote {bundle / RESULTS}")
    return 0


def group_metrics(data: Any, predicted: np.ndarray) -> dict[str, Any]:
    right = predicted == data.labels
    confusion = np.zeros((10, 10), np.int64)
    np.add.at(confusion, (data.labels, predicted), 1)
    return {
        "accuracy": float(right.mean()), "count": len(right),
        "per_family": {str(f): float(right[data.families == f].mean())
                       for f in sorted(set(data.families.tolist()))},
        "per_font": {str(f): float(right[data.fonts == f].mean())
                     for f in sorted(set(data.fonts.tolist()))},
        "confusion_matrix": confusion.tolist(),
    }


if __name__ == "__main__":
    sys.exit(main())
