"""``python -m runtime predict --model FILE IMAGE...``: classify image files, no TensorFlow.
``python -m runtime check --model FILE``: does the file still give, here, the answers it gave
at export? The first command to run on a new device.

Digit models (spec framing "digit") cut and centre photos of handwritten digits the way
MNIST was made, as ``Classifier.predict`` does; images already at the model's input size,
or all images with ``--framed``, are used as they are. ``predict`` runs the file's self-check
once before the first image and refuses to go on if it fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from runtime.cli import Parser, override_framing, run_cli
from runtime.errors import SelfCheckFailed
from runtime.spec import FRAMINGS


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m runtime", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("--model", required=True, help=".onnx or .tflite file")
    predict.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="one JSON object per image")
    predict.add_argument("--threads", type=int, default=None)
    predict.add_argument("--roi", default=None, help="region x,y,w,h to read (digit models: "
                         "where to look for the digit; default: a centred box)")
    predict.add_argument("--framed", action="store_true", help="digit models: the images are "
                         "already cut and centred like MNIST, so use them as they are")
    predict.add_argument("--framing", choices=FRAMINGS, default=None, help="override the "
                         "file's spec for this run: 'digit' cuts and centres a digit the way "
                         "MNIST was made, 'none' feeds the image as it is")
    predict.add_argument("--skip-self-check", action="store_true",
                         help="run even if the file fails its embedded self-check")
    check = commands.add_parser("check", help="run the file's embedded self-check here; "
                                "exit 1 if it fails")
    check.add_argument("--model", required=True, help=".onnx or .tflite file")
    check.add_argument("--threads", type=int, default=None)
    check.add_argument("--no-fallback", action="store_true", help="LiteRT files: report "
                       "XNNPACK's result without trying LiteRT's other kernels")
    check.add_argument("--json", action="store_true", help="the result as one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("runtime", lambda: COMMANDS[args.command](args),
                   failures=(SelfCheckFailed,))


def predict(args: argparse.Namespace) -> int:
    import runtime
    from runtime.errors import EdgeCNNError
    from runtime.framing import parse_roi
    from runtime.preprocess import read_image
    from runtime.selfcheck import require_self_check

    if args.top_k < 1:
        raise EdgeCNNError(f"--top-k {args.top_k} must be at least 1")
    roi = parse_roi(args.roi) if args.roi else None
    classifier = runtime.load(args.model, threads=args.threads)
    override_framing(classifier, args.framing, announce=not args.json)
    images = [(path, read_image(path)) for path in args.images]  # fail before printing anything
    if not args.skip_self_check:
        result = require_self_check(classifier)
        if result.failed_kernels:  # a note on stderr keeps --json output parseable
            print(f"runtime: {result.summary()}", file=sys.stderr)
    for path, image in images:
        started = time.perf_counter()
        predictions = classifier.predict(image, args.top_k, roi=roi,
                                         framed=True if args.framed else None)
        ms = (time.perf_counter() - started) * 1e3
        if args.json:
            print(json.dumps({"image": path, "ms": round(ms, 3), "predictions": [
                {"label": p.label, "probability": round(p.probability, 6)} for p in predictions]}))
        else:
            shown = ", ".join(f"{p.label} ({p.probability:.3f})" for p in predictions) or \
                "no digit found"
            print(f"{path}: {shown}")
    return 0


def check(args: argparse.Namespace) -> int:
    import runtime
    from runtime.cli import EXIT_FAILED, EXIT_OK

    classifier = runtime.load(args.model, threads=args.threads)
    result = classifier.self_check(fallback=not args.no_fallback)
    if args.json:
        print(json.dumps({"model": args.model, "precision": classifier.spec.precision,
                          **result.to_dict()}))
    else:
        print(f"{args.model}: {result.summary()}")
        for line in result.differences:
            print(f"  {line}")
    return EXIT_OK if result.passed else EXIT_FAILED


COMMANDS = {"predict": predict, "check": check}


if __name__ == "__main__":
    sys.exit(main())
