"""``python -m export``: convert a bundle's Keras model to ONNX and TFLite, float and
quantized, and prove each file still agrees with the Keras model before naming it final."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from export.repair import REPAIR_MODES
from export.validate import FLOAT_ATOL, MAX_DROP_PP
from runtime.cli import EXIT_FAILED, EXIT_OK, Parser, parse_csv, run_cli, setup_logging
from runtime.errors import EdgeCNNError
from runtime.spec import FRAMINGS


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m export", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--bundle", default="artifacts", help="bundle folder: model, spec, eval and calibration "
        "sets in; exported files out")
    add("--int8", action="store_true", help="add full-integer int8 files (ONNX and TFLite)")
    add("--fp16", action="store_true", help="add a float16-weight TFLite file")
    add("--dynamic", action="store_true", help="add a dynamic-range (int8 weight) TFLite file")
    add("--formats", default="onnx,tflite", help="comma-separated: onnx, tflite")
    add("--calib-samples", type=int, default=500, help="training images used for calibration")
    add("--calib-method", choices=["minmax", "entropy", "percentile"], default="minmax",
        help="ONNX activation-range calibration (TFLite's converter always uses min/max)")
    add("--onnx-activations", choices=["uint8", "int8"], default="uint8",
        help="ONNX activation type; weights are always per-channel int8")
    add("--repair", choices=REPAIR_MODES, default="auto", help="int8 files that fail "
        "validation: auto tries other calibrations, then cross-layer equalization and bias "
        "correction, then float fallback for the most sensitive layers; always runs that "
        "ladder even for passing files; off keeps the plain result")
    add("--qat", type=int, default=0, metavar="EPOCHS", help="last resort for int8 files "
        "that repair cannot save: quantization-aware fine-tuning for EPOCHS epochs on the "
        "calibration images, towards the Keras model's own answers (no labels needed)")
    add("--max-drop", type=float, default=MAX_DROP_PP, help="largest accuracy drop, and "
        "largest top-1 disagreement with Keras, a quantized file may show (percentage points)")
    add("--atol", type=float, default=FLOAT_ATOL,
        help="largest probability difference a float32 file may show")
    add("--model", default=None, help="a Keras model to export instead of the bundle's: "
        ".keras, legacy .h5 or a SavedModel folder; without a bundle it needs --calib-data")
    add("--calib-data", default=None,
        help="foreign models: a folder of images (one subfolder per class, or plain), an .npz "
        "(images/labels, x/y, or Keras's mnist.npz layout: x_test/y_test then check) or an "
        ".npy; otherwise half calibrates, half checks")
    add("--labels", default=None, help="foreign models: class names, comma-separated or a "
        "text file with one per line (default: the class folders, else 0..N-1)")
    add("--value-range", default=None, help="foreign models: what pixel values 0 and 255 "
        "become at the model input, e.g. --value-range=0,1 for pixels/255 outside the model, "
        "-1,1 for MobileNetV2 (default: the scale that reads the labelled samples best)")
    add("--framing", choices=FRAMINGS, default=None, help="how camera frames reach the model: "
        "'digit' cuts and centres digits the way MNIST was made (default: the bundle's spec; "
        "'none' for foreign models)")
    add("--input-size", default=None, metavar="HxW", help="foreign models that take any image "
        "size (or flat pixels): the size to export them at, e.g. 224x224")
    add("--trust-model", action="store_true", help="load Lambda layers (Python code stored in "
        "the model file; Keras's safe_mode=False): only for files you trust")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli("export", lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    setup_logging("export")
    options = _options(args)
    _require_toolchain(options)
    bundle = Path(args.bundle)
    from export.foreign import ForeignOptions, from_foreign_model
    from export.run import check_output_folder, export_all
    from export.source import from_bundle
    from runtime.bundle import EXPORT_REPORT, SPEC, require_bundle

    foreign = args.calib_data is not None or (args.model and not (bundle / SPEC).is_file())
    if foreign:
        if args.model is None:
            raise EdgeCNNError("--calib-data is for foreign models: pass --model FILE.keras too")
        check_output_folder(bundle, Path(args.model))  # before TensorFlow loads the model
        size = _input_size(args.input_size) if args.input_size else None
        value_range = _value_range(args.value_range) if args.value_range else None
        source = from_foreign_model(Path(args.model), _path(args.calib_data), ForeignOptions(
            _labels(args.labels), value_range, args.framing, size, args.trust_model))
    else:
        require_bundle(bundle)
        for flag, value in (("--labels", args.labels), ("--value-range", args.value_range),
                            ("--input-size", args.input_size)):
            if value is not None:
                raise EdgeCNNError(f"{flag} is for foreign models (--model with --calib-data); "
                                   f"the bundle's {bundle / SPEC} already says it")
        source = from_bundle(bundle, _path(args.model), args.trust_model, args.framing)
    report = export_all(source, bundle, options)

    from export.report import table
    from export.validate import Check

    checks = [Check(**c) for c in report["files"]]
    print(table(checks, report["reference"]["size_bytes"], report["reference"]["accuracy"],
                report.get("quantization"), report["reference"]["file"]))
    print(f"report: {bundle / EXPORT_REPORT}")
    if not report["all_passed"]:
        failed = ", ".join(c.file for c in checks if not c.passed)
        print(f"export: failed validation, kept only as {failed} (see the table)"
              f"{_int8_advice(args, checks)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _int8_advice(args: argparse.Namespace, checks: list[Any]) -> str:
    """What is left to try when an int8 file failed, said on the failure's one line."""
    if not any(c.precision == "int8" and not c.passed for c in checks):
        return ""
    if args.repair == "off":
        return "; --repair auto tries other calibrations, equalization and float fallback"
    left = [] if args.qat else ["--qat 4 fine-tunes with fake quantization (the last resort)"]
    left.append("--dynamic (int8 weights, float activations) and --fp16 shrink the model "
                "without quantizing activations")
    return "; int8 repair found no passing variant: " + "; ".join(left)


def _options(args: argparse.Namespace):
    from export.run import ExportOptions

    if args.calib_samples < 1:
        raise EdgeCNNError(f"--calib-samples {args.calib_samples} must be positive")
    if args.max_drop < 0 or args.atol <= 0:
        raise EdgeCNNError("--max-drop must be ≥ 0 and --atol > 0")
    if args.qat < 0:
        raise EdgeCNNError(f"--qat {args.qat}: give a number of epochs (1 or more)")
    precisions = ["float32"] + [name for flag, name in ((args.int8, "int8"), (args.fp16, "float16"),
                                                        (args.dynamic, "dynamic")) if flag]
    return ExportOptions(formats=parse_csv(args.formats, ["onnx", "tflite"], "--formats"),
                         precisions=precisions, calib_samples=args.calib_samples,
                         calib_method=args.calib_method, onnx_activations=args.onnx_activations,
                         atol=args.atol, max_drop=args.max_drop, repair=args.repair,
                         qat_epochs=args.qat)


def _require_toolchain(options: Any) -> None:
    """Name a missing converter before any work starts, not as a failed conversion later."""
    from runtime.optional import require_installed

    require_installed("tensorflow", "to load the Keras model")
    if "onnx" in options.formats:
        for package in ("onnx", "tf2onnx"):
            require_installed(package, "for ONNX export (--formats onnx)")
        if "int8" in options.precisions:
            require_installed("sympy", "for int8 ONNX export (onnxruntime's pre-processing)")


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _labels(value: str | None) -> list[str] | None:
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        labels = [item.strip() for item in value.split(",") if item.strip()]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:  # two outputs of one name: no reader could tell them apart
        raise EdgeCNNError(f"--labels names {', '.join(repr(t) for t in twice)} more than once; "
                           "each class needs its own name")
    return labels


def _value_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise EdgeCNNError(f"--value-range {text!r}: expected two numbers, e.g. 0,255 or -1,1") \
            from None
    if not high > low:
        raise EdgeCNNError(f"--value-range {text!r}: the second number must be larger")
    return low, high


def _input_size(text: str) -> tuple[int, int]:
    """``--input-size`` as ``HxW`` (or one number for a square)."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise EdgeCNNError(f"--input-size {text!r}: expected HEIGHTxWIDTH in pixels, e.g. 224x224")
    return size  # type: ignore[return-value]


if __name__ == "__main__":
    sys.exit(main())
