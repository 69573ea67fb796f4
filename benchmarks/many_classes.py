"""``python -m benchmarks.many_classes``: the whole path with 1000 classes, in bounded memory.

Generates a folder of ``--classes`` classes with ``--per-class`` single-channel PNGs each
(``--side``×``--side``; once, into ``--data-dir``), then runs every stage as a user would, each
in a fresh interpreter, and reports its exit code, wall time and peak resident memory
(``ru_maxrss`` from ``wait4``):

1. ``python -m train --arch dense512 --epochs 8`` (plus any options after ``--``);
2. ``python -m export --int8`` (every file validated against Keras);
3. ``python -m runtime predict --top-k 5`` on a few test images (class names checked);
4. ``python -m demos.webcam --headless`` on a folder of those images (the overlay, with long
   class names, saved as a video);
5. ``python -m benchmarks --quick``.

Each class is a random 5×5 pattern of dark and light cells (patterns differ in at least
``MIN_DISTANCE`` cells), drawn with a random one-pixel shift, levels, blur and noise per
image. Every tenth class has a long name, so plots, summaries and the overlay must cut it.
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

import numpy as np

from benchmarks.train_memory import generated_once, machine, wait_with_usage

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path.home() / ".cache" / "edgecnn" / "many_classes"
GRID = 5              # pattern cells per side
MIN_DISTANCE = 4      # cells in which any two class patterns differ, at least
LONG_NAME_EVERY = 10  # every n-th class gets a long name
PREDICTED_IMAGES = 8  # test images given to `runtime predict` and to the demo


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.many_classes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=8, help="images per class")
    p.add_argument("--side", type=int, default=32, help="images are side × side pixels")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="where the generated folder is kept between runs")
    p.add_argument("--out", type=Path, default=None,
                   help="bundle folder (default: a temporary folder, removed at the end)")
    p.add_argument("--skip", default="", help="comma-separated stages not to run: "
                   "export,predict,demo,benchmark")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="after --: `python -m train` options replacing the default "
                   "--arch dense512 --epochs 8")
    return p


def class_names(classes: int) -> list[str]:
    """Sortable names; every LONG_NAME_EVERY-th is long, as real label sets have."""
    return [f"c{i:04d}" + ("_a_rather_long_class_name_from_a_real_taxonomy_of_things"
                          if i % LONG_NAME_EVERY == 0 else "") for i in range(classes)]


def class_patterns(classes: int, seed: int) -> np.ndarray:
    """(classes, GRID, GRID) boolean patterns, pairwise at least MIN_DISTANCE cells apart."""
    rng = np.random.default_rng(seed)
    chosen = np.zeros((0, GRID * GRID), bool)
    while len(chosen) < classes:
        candidates = rng.integers(0, 2, (4 * classes, GRID * GRID)).astype(bool)
        for candidate in candidates:
            if len(chosen) == classes:
                break
            if not len(chosen) or (chosen != candidate).sum(axis=1).min() >= MIN_DISTANCE:
                chosen = np.vstack([chosen, candidate])
    return chosen.reshape(classes, GRID, GRID)


def make_folder(root: Path, classes: int, per_class: int, side: int, seed: int = 0) -> Path:
    """The generated dataset, reused when a previous run finished writing it."""
    return generated_once(root / f"classes-{classes}x{per_class}-{side}px",
                          {"classes": classes, "per_class": per_class, "side": side,
                           "seed": seed},
                          lambda folder: _write_images(folder, classes, per_class, side, seed))


def _write_images(folder: Path, classes: int, per_class: int, side: int, seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    patterns = class_patterns(classes, seed)
    margin = side // 8
    for name, pattern in zip(class_names(classes), patterns, strict=True):
        (folder / name).mkdir()
        big = cv2.resize(pattern.astype(np.uint8), (side - 2 * margin, side - 2 * margin),
                         interpolation=cv2.INTER_NEAREST)
        for i in range(per_class):
            dark, light = rng.integers(0, 50), rng.integers(190, 256)
            canvas = np.full((side, side), dark, np.float32)
            dy, dx = rng.integers(-1, 2, 2)
            canvas[margin + dy:side - margin + dy, margin + dx:side - margin + dx] = \
                np.where(big, light, dark)
            canvas = cv2.GaussianBlur(canvas, (3, 3), float(rng.uniform(0.3, 0.8)))
            canvas += rng.normal(0, 6, canvas.shape)
            image = np.clip(canvas, 0, 255).astype(np.uint8)  # (H, W): a 1-channel PNG
            cv2.imwrite(str(folder / name / f"{i:02d}.png"), image)


def run_measured(args: list[str], log: Path) -> dict[str, Any]:
    """``python -m <args>`` in a fresh interpreter: exit code, wall time, peak RSS (MiB)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CONFIG": ""}
    started = time.perf_counter()
    with open(log, "w") as output:
        child = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env,
                                 stdout=output, stderr=subprocess.STDOUT)
        usage = wait_with_usage(child)
    return {"command": "python -m " + " ".join(args), "exit": child.returncode,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
            "log": str(log)}


def sample_images(bundle: Path, folder: Path, count: int) -> list[tuple[Path, str]]:
    """``count`` images of different classes, with the class each belongs to."""
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    picked = np.linspace(0, len(names) - 1, count).astype(int)
    return [(folder / names[i] / "00.png", names[i]) for i in picked]


def check_predictions(log: Path, expected: list[tuple[Path, str]],
                      labels: list[str]) -> dict[str, Any]:
    """`runtime predict --json` printed one object per image: are the names real class
    names, and how often is the true class first?"""
    records = [json.loads(line) for line in log.read_text().splitlines()
               if line.startswith("{")]
    known = set(labels)
    names_ok = all(p["label"] in known for r in records for p in r["predictions"])
    top1 = sum(r["predictions"][0]["label"] == truth for r, (_, truth) in
               zip(records, expected, strict=False))
    return {"images": len(records), "labels_are_class_names": names_ok,
            "top1_correct": top1, "example": records[0] if records else None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    train_args = [a for a in args.train_args if a != "--"] or ["--arch", "dense512",
                                                                "--epochs", "8"]
    print(f"machine: {json.dumps(machine())}")
    began = time.perf_counter()
    folder = make_folder(args.data_dir, args.classes, args.per_class, args.side)
    print(f"{args.classes} classes × {args.per_class} images in {folder} "
          f"({time.perf_counter() - began:.1f} s to prepare)", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="edgecnn-many-classes-"))
    bundle = args.out or scratch / "bundle"
    steps: dict[str, dict[str, Any]] = {}
    try:
        steps["train"] = run_measured(["train", "--data", str(folder), "--out", str(bundle),
                                       "--overwrite", *train_args], scratch / "train.log")
        print(_line("train", steps["train"]), flush=True)
        if steps["train"]["exit"] != 0:
            print((scratch / "train.log").read_text()[-3000:])
            return 1
        metrics = json.loads((bundle / "metrics.json").read_text())
        spec = json.loads((bundle / "spec.json").read_text())
        images = sample_images(bundle, folder, PREDICTED_IMAGES)
        stages = {
            "export": ["export", "--bundle", str(bundle), "--int8"],
            "predict": ["runtime", "predict", "--model", str(bundle / "model.int8.tflite"),
                        "--top-k", "5", "--json", *(str(p) for p, _ in images)],
            "demo": ["demos.webcam", "--model", str(bundle / "model.int8.tflite"), "--source",
                     str(_demo_folder(scratch, images)), "--headless", "--save",
                     str(scratch / "demo.avi")],
            "benchmark": ["benchmarks", "--bundle", str(bundle), "--quick"],
        }
        for name, command in stages.items():
            if name in skip:
                continue
            steps[name] = run_measured(command, scratch / f"{name}.log")
            print(_line(name, steps[name]), flush=True)
        result = {
            "machine": machine(), "classes": args.classes, "per_class": args.per_class,
            "side": args.side, "train_args": train_args, "steps": steps,
            "spec": {"channels": spec["channels"], "labels": len(spec["labels"])},
            "train_metrics": {"test_accuracy": metrics["test"]["accuracy"],
                              "validation_accuracy": metrics["validation"]["accuracy"],
                              "resources": metrics["resources"],
                              "color": metrics["dataset"]["color"]},
        }
        if "predict" in steps and steps["predict"]["exit"] == 0:
            result["predict"] = check_predictions(scratch / "predict.log", images,
                                                  spec["labels"])
        if "export" in steps:
            report = json.loads((bundle / "export_report.json").read_text())
            result["export"] = [{k: f[k] for k in ("file", "passed", "agreement", "detail")}
                                for f in report["files"]]
        _print_summary(result)
        if args.out is not None:
            print(f"logs of every stage: {scratch}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if all(step["exit"] == 0 for step in steps.values()) else 1
    finally:
        if args.out is None:
            shutil.rmtree(scratch, ignore_errors=True)


def _demo_folder(scratch: Path, images: list[tuple[Path, str]]) -> Path:
    """The sample images enlarged to 320×320 frames, as a folder source for the demo."""
    import cv2

    folder = scratch / "frames"
    folder.mkdir(exist_ok=True)
    for i, (path, _) in enumerate(images):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(folder / f"{i:02d}.png"),
                    cv2.resize(image, (320, 320), interpolation=cv2.INTER_NEAREST))
    return folder


def _line(name: str, step: dict[str, Any]) -> str:
    return (f"{name:>9}: exit {step['exit']}, {step['wall_seconds']:7.1f} s, peak RSS "
            f"{step['peak_rss_mib']:7.0f} MiB")


def _print_summary(result: dict[str, Any]) -> None:
    print(f"\nspec: {result['spec']['channels']} channel(s), {result['spec']['labels']} labels; "
          f"colour {result['train_metrics']['color']['color']} "
          f"({result['train_metrics']['color']['reason']})")
    print(f"train: test accuracy {result['train_metrics']['test_accuracy'] * 100:.1f} %, "
          f"validation {result['train_metrics']['validation_accuracy'] * 100:.1f} %; "
          f"metrics.json resources {json.dumps(result['train_metrics']['resources'])}")
    for row in result.get("export", []):
        print(f"export: {row['file']}: {'passed' if row['passed'] else 'FAILED'} ({row['detail']})")
    if "predict" in result:
        p = result["predict"]
        print(f"predict: {p['images']} images, labels are class names: "
              f"{p['labels_are_class_names']}, true class first for {p['top1_correct']}")


if __name__ == "__main__":
    raise SystemExit(main())
