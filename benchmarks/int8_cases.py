"""``python -m benchmarks.int8_cases``: the int8 cases of docs/quantization.md, reproduced.

Each case runs ``python -m export`` in a fresh interpreter as a user would, plain int8
(``--repair off``) first, then the repaired or fine-tuned export, and reads the figures
from ``export_report.json``:

- ``default``: the default model (``python -m train``), exported with ``--int8``: whether a
  repair step ran, and the diagnosis's share of the export's wall time;
- ``outlier``: the same model with outlier first-conv filters (×1000, function unchanged);
- ``functional``: a functional classifier (BatchNorm, depthwise, logits, RGB) trained on
  colour digits, exported from a folder of PNGs with ``--model``/``--calib-data``;
- ``qat``: the default model with milder outlier filters (``--qat-factor``), where plain
  int8 drops more than the gate allows: ``--repair off --qat EPOCHS``.

Results go to ``--out`` (JSON) and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CASES = ("default", "outlier", "functional", "qat")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.int8_cases", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    p.add_argument("--bundle", type=Path, default=None, help="a trained default bundle to start "
                   "from (default: train one, 4 epochs, seed 7)")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: temporary)")
    p.add_argument("--functional-epochs", type=int, default=12)
    p.add_argument("--qat-factor", type=float, default=300.0,
                   help="outlier scale of the QAT case's first-conv filters")
    p.add_argument("--qat-epochs", type=int, default=4)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    return p


def run(args: list[str], log: Path) -> tuple[int, float]:
    """``python -m ARGS`` in a fresh interpreter; (exit code, wall seconds)."""
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call([sys.executable, "-m", *args], cwd=ROOT, stdout=out,
                               stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    return code, round(time.perf_counter() - started, 1)


def int8_figures(folder: Path) -> dict[str, Any]:
    """Per int8 file: accuracy change, agreement, passed, what repair did, diagnosis seconds."""
    report = json.loads((folder / "export_report.json").read_text())
    files = {f["file"]: f for f in report["files"]}
    figures = {}
    for name, record in report.get("quantization", {}).items():
        check = files.get(name) or files.get(name + ".rejected") or {}
        figures[name] = {"accuracy_change_pp": check.get("accuracy_change_pp"),
                         "agreement": check.get("agreement"), "passed": check.get("passed"),
                         "size_bytes": check.get("size_bytes"), "applied": record["applied"],
                         "repair_steps": len(record["steps"]),
                         "diagnosis_seconds": record.get("diagnosis_seconds"),
                         "build_seconds": record.get("build_seconds")}
    return {"reference_accuracy": report["reference"]["accuracy"], "files": figures}


def export_runs(name: str, base_args: list[str], folder: Path,
                runs: dict[str, list[str]], work: Path) -> dict[str, Any]:
    """Plain int8 (--repair off), then one export per entry of ``runs`` (label → options)."""
    result: dict[str, Any] = {}
    for label, extra in {"plain": ["--repair", "off"], **runs}.items():
        code, seconds = run(["export", *base_args, "--int8", *extra],
                            work / f"{name}-{label}.log")
        result[label] = {"exit": code, "seconds": seconds, **int8_figures(folder)}
        print(f"{name} {label}: exit {code} in {seconds:.0f} s", file=sys.stderr)
    return result


def outlier_bundle(bundle: Path, target: Path, factor: float | None) -> Path:
    import keras
    import numpy as np

    from benchmarks.int8_models import OUTLIER_CHANNELS, add_outlier_channels
    from runtime.bundle import load_images

    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(bundle, target, ignore=shutil.ignore_patterns("model.*.onnx*", "*.tflite*"))
    model = keras.models.load_model(target / "model.keras")
    images, _ = load_images(target / "eval.npz")
    before = model.predict(images.astype(np.float32), verbose=0)
    channels = OUTLIER_CHANNELS if factor is None else \
        {c: factor * f / max(OUTLIER_CHANNELS.values()) for c, f in OUTLIER_CHANNELS.items()}
    add_outlier_channels(model, channels=channels)
    change = float(np.abs(model.predict(images.astype(np.float32), verbose=0) - before).max())
    model.save(target / "model.keras")
    print(f"{target.name}: outlier filters {channels}, max |Δp| {change:.1e}", file=sys.stderr)
    return target


def functional_case(work: Path, epochs: int, qat_epochs: int) -> dict[str, Any]:
    from benchmarks.int8_models import colour_digits, train_functional, write_class_folder

    images, labels = colour_digits()
    half = len(images) // 2  # trained on one half; the folder users export with is the other
    folder = write_class_folder(images[half:], labels[half:], work / "colour_digits")
    started = time.perf_counter()
    model = train_functional(images[:half], labels[:half], epochs)
    model.save(work / "colour_digits.keras")
    out = work / "functional"
    base = ["--model", str(work / "colour_digits.keras"), "--calib-data", str(folder),
            "--bundle", str(out)]
    result = export_runs("functional", base, out, {"repaired": [],
                                                       "qat": ["--repair", "off", "--qat",
                                                               str(qat_epochs)]}, work)
    result["train_seconds"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        print(f"int8_cases: unknown case(s) {', '.join(unknown)}; choose from "
              f"{', '.join(CASES)}", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="int8-cases-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    bundle = args.bundle
    if bundle is None and set(cases) & {"default", "outlier", "qat"}:
        bundle = work / "bundle"
        code, seconds = run(["train", "--out", str(bundle), "--epochs", "4", "--seed", "7",
                             "--overwrite"], work / "train.log")
        if code:
            print(f"int8_cases: training failed (see {work / 'train.log'})", file=sys.stderr)
            return 1
    if "default" in cases:
        folder = work / "default"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(bundle, folder)  # type: ignore[arg-type]
        code, seconds = run(["export", "--bundle", str(folder), "--int8"],
                            work / "default.log")
        figures = int8_figures(folder)
        diagnosis = sum(f["diagnosis_seconds"] or 0 for f in figures["files"].values())
        results["default"] = {"exit": code, "seconds": seconds, **figures,
                              "diagnosis_seconds": round(diagnosis, 2),
                              "diagnosis_share": round(diagnosis / seconds, 4)}
    if "outlier" in cases:
        folder = outlier_bundle(bundle, work / "outlier", None)  # type: ignore[arg-type]
        results["outlier"] = export_runs("outlier", ["--bundle", str(folder)], folder,
                                         {"repaired": []}, work)
    if "functional" in cases:
        results["functional"] = functional_case(work, args.functional_epochs,
                                                args.qat_epochs)
    if "qat" in cases:
        folder = outlier_bundle(bundle, work / "qat", args.qat_factor)  # type: ignore[arg-type]
        results["qat"] = export_runs("qat", ["--bundle", str(folder)], folder,
                                     {"qat": ["--repair", "off", "--qat", str(args.qat_epochs)],
                                      "repaired": []}, work)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = ["| case | export | file | Δ accuracy pp | agreement | passed | what was done |",
             "|---|---|---|---|---|---|---|"]
    for case, result in results.items():
        runs = {"default": result} if case == "default" else \
            {k: v for k, v in result.items() if isinstance(v, dict) and "files" in v}
        for label, run_result in runs.items():
            for name, f in run_result["files"].items():
                change = f["accuracy_change_pp"]
                lines.append(f"| {case} | {label} (exit {run_result['exit']}) | {name} | "
                             f"{'' if change is None else f'{change:+.2f}'} | "
                             f"{(f['agreement'] or 0) * 100:.2f} % | {f['passed']} | "
                             f"{f['applied']} |")
    if "default" in results:
        d = results["default"]
        lines.append(f"\ndefault export: {d['seconds']:.1f} s wall, diagnosis "
                     f"{d['diagnosis_seconds']:.2f} s ({d['diagnosis_share'] * 100:.1f} %)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
