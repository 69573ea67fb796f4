"""``python -m runtime predict --model FILE PATH...``: classify image files, no TensorFlow.
``python -m runtime check --model FILE``: does the file still give, here, the answers it gave
at export? The first command to run on a new device.

PATHs are image files, folders (searched recursively) and glob patterns; images run in
batches, files that cannot be read are skipped and counted, and ``--out preds.csv`` (or
``.jsonl``) writes one row per file. Digit models (spec framing "digit", or ``--framing
digit``) cut and centre photos of handwritten digits the way MNIST was made, as
``Classifier.predict`` does; images already at the model's input size with a black margin,
or all images with ``--framed``, are used as they are. ``predict`` runs the file's
self-check once before the first image and refuses to go on if it fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator

from runtime.cli import Parser, override_framing, run_cli
from runtime.errors import SelfCheckFailed
from runtime.spec import FRAMINGS


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m runtime", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    predict = commands.add_parser("predict", help="classify image files")
    predict.add_argument("--model", required=True, help=".onnx or .tflite file")
    predict.add_argument("images", nargs="+", metavar="PATH", help="image files, folders "
                         "(recursive) or glob patterns such as 'shots/**/*.jpg'")
    predict.add_argument("--top-k", type=int, default=3)
    predict.add_argument("--json", action="store_true", help="one JSON object per image")
    predict.add_argument("--out", default=None, help="write one row per file to this .csv or "
                         ".jsonl file instead of printing them")
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    predict.add_argument("--batch-size", type=int, default=64, help="images per engine call")
    predict.add_argument("--threads", type=int, default=None)
    where = predict.add_mutually_exclusive_group()  # a framed image is used whole
    where.add_argument("--roi", default=None, help="region x,y,w,h to read (digit models: "
                       "where to look for the digit; default: a centred box)")
    where.add_argument("--framed", action="store_true", help="digit models: the images are "
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
    from runtime import bulk
    from runtime.errors import EdgeCNNError
    from runtime.framing import parse_roi
    from runtime.quiet import opencv_log_level
    from runtime.selfcheck import require_self_check

    # OpenCV logs its own complaint about each corrupt file; the row for it says why already
    opencv_log_level("silent")
    if args.top_k < 1 or args.batch_size < 1:
        raise EdgeCNNError("--top-k and --batch-size must be at least 1")
    roi = parse_roi(args.roi) if args.roi else None
    if args.out:
        bulk.check_output(args.out, args.overwrite)  # before the model loads
    classifier = runtime.load(args.model, threads=args.threads)
    override_framing(classifier, args.framing, announce=not args.json)
    paths = bulk.expand(args.images)  # a typo fails here, before any work
    if not args.skip_self_check:
        result = require_self_check(classifier)
        if result.failed_kernels:  # a note on stderr keeps --json output parseable
            print(f"runtime: {result.summary()}", file=sys.stderr)
    started = time.perf_counter()
    rows = _progress(bulk.predict_files(classifier, paths, args.top_k, roi, args.batch_size,
                                        framed=True if args.framed else None), len(paths))
    skipped = first_skip = 0
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(bulk.open_output(args.out, args.top_k, args.overwrite)) \
            if args.out else None
        for row in rows:
            if row.status.startswith(bulk.SKIPPED):
                skipped += 1
                first_skip = first_skip or row.status
            if out is not None:
                out.write(row)
            elif args.json:
                print(json.dumps(bulk.as_record(row)))
            else:
                shown = ", ".join(f"{p.label} ({p.probability:.3f})" for p in row.predictions)
                print(f"{row.path}: {shown or row.status}")
        if skipped == len(paths):
            raise EdgeCNNError(f"no image could be classified ({first_skip.split(': ', 1)[1]})")
    seconds = time.perf_counter() - started
    summary = (f"{len(paths) - skipped} images classified, {skipped} files skipped, "
               f"in {seconds:.1f} s ({(len(paths) - skipped) / seconds:,.0f} images/s)")
    if out is not None:
        print(f"{summary} → {args.out}")
    elif skipped:
        print(f"runtime: {summary}", file=sys.stderr)
    return 0


def _progress(rows: Iterator, total: int) -> Iterator:
    """A progress bar on a terminal, once a run has taken a second (tqdm comes with the
    runtime's LiteRT; without it, no bar)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return rows
    return iter(tqdm(rows, total=total, unit="img", delay=1.0, leave=False, file=sys.stderr,
                     disable=None, dynamic_ncols=True))


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
