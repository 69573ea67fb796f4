"""``python -m benchmarks.train_memory``: does training memory grow with the number of images?

Generates class folders of small PNGs (once, into ``--data-dir``), then runs
``python -m train`` on each size in a fresh interpreter and reports its peak resident memory:

- **whole run**: ``ru_maxrss`` of the child (from ``wait4``), covering start-up, training, the
  test-split evaluation and writing ``eval.npz`` / ``calib.npz``;
- **per phase**: ``VmRSS`` sampled every ``--interval`` seconds and split by the child's own
  log lines: *setup* (until ``epoch 1/N``), *training* (until the last epoch's summary line,
  which includes validation) and *bundle* (test split evaluated and saved).

Streaming keeps the training phase flat; what remains proportional to the images is listed in
docs/distributed.md with these figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path.home() / ".cache" / "edgecnn" / "train_memory"
CLASSES = 10
PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,40000", help="images per folder, comma-separated")
    p.add_argument("--side", type=int, default=32, help="generated PNGs are side x side RGB")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                   help="where the generated folders are kept between runs")
    p.add_argument("--interval", type=float, default=0.05, help="RSS sampling period (s)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="after --: extra `python -m train` options (default: --epochs 1)")
    return p


def generated_once(folder: Path, params: dict[str, Any],
                   write: Callable[[Path], None]) -> Path:
    """``folder`` as ``write`` fills it, reused when an earlier run finished writing it with
    the same ``params``: a marker holding them is written last, so a run killed halfway
    leaves no folder that looks complete."""
    marker = folder / ".complete"
    if marker.is_file() and json.loads(marker.read_text()) == params:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write(folder)
    marker.write_text(json.dumps(params))
    return folder


def wait_with_usage(child: subprocess.Popen) -> resource.struct_rusage:
    """Wait for ``child`` (setting its returncode) and return its resource usage, whose
    ``ru_maxrss`` is its own peak RSS; the child is killed if the wait is interrupted."""
    try:
        _, status, usage = os.wait4(child.pid, 0)
    except BaseException:
        child.kill()
        child.wait()
        raise
    child.returncode = os.waitstatus_to_exitcode(status)
    return usage


def make_folder(root: Path, count: int, side: int, seed: int = 0) -> Path:
    """``count`` PNGs in ``CLASSES`` subfolders: a coloured disc or square on noise per class."""
    return generated_once(root / f"images-{count}-{side}px",
                          {"count": count, "side": side, "seed": seed},
                          lambda folder: _write_images(folder, count, side, seed))


def _write_images(folder: Path, count: int, side: int, seed: int) -> None:
    import cv2

    rng = np.random.default_rng(seed)
    for c in range(CLASSES):
        (folder / f"class{c}").mkdir()
    for i in range(count):
        c = i % CLASSES
        image = rng.integers(0, 70, size=(side, side, 3), dtype=np.uint8)
        centre = rng.integers(side // 3, 2 * side // 3, size=2)
        radius = int(rng.integers(side // 6, side // 3))
        color = tuple(int(v) for v in PALETTE[c][::-1])  # BGR for OpenCV
        if c % 2:
            cv2.rectangle(image, tuple(int(v) for v in centre - radius),
                          tuple(int(v) for v in centre + radius), color, -1)
        else:
            cv2.circle(image, tuple(int(v) for v in centre), radius, color, -1)
        cv2.imwrite(str(folder / f"class{c}" / f"{i:06d}.png"), image)


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def measure(folder: Path, train_args: list[str], interval: float) -> dict[str, Any]:
    """One ``python -m train`` run in a fresh interpreter: its peak RSS, whole and by phase."""
    out = Path(tempfile.mkdtemp(prefix="edgecnn-train-memory-"))
    command = [sys.executable, "-m", "train", "--data", str(folder), "--out", str(out / "bundle"),
               "--strategy", "single", "--batch-size", "64", *train_args]  # as in the docs
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CONFIG": ""}
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    samples: list[tuple[float, int]] = []
    marks: dict[str, float] = {}
    lines: list[str] = []
    errors: list[str] = []

    def read_stdout() -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            now = time.perf_counter()
            lines.append(line)
            if line.startswith("epoch ") and "training" not in marks:
                marks["training"] = now
            if "val_loss" in line:  # an epoch's summary: the last one ends the training phase
                marks["bundle"] = now

    done = threading.Event()  # not child.poll(): that could reap the child before wait4 does

    def sample() -> None:
        while not done.is_set():
            value = rss_kib(child.pid)
            if value is not None:
                samples.append((time.perf_counter(), value))
            time.sleep(interval)

    def read_stderr() -> None:
        errors.append(child.stderr.read())  # type: ignore[union-attr]

    threads = [threading.Thread(target=target, daemon=True)
               for target in (read_stdout, sample, read_stderr)]
    for thread in threads:
        thread.start()
    try:
        usage = wait_with_usage(child)
    finally:
        done.set()
        shutil.rmtree(out, ignore_errors=True)
    for thread in threads:
        thread.join(timeout=10)
    if child.returncode != 0:
        raise SystemExit(f"train failed on {folder} (exit {child.returncode}):\n"
                         f"{''.join(errors)[-2000:]}")
    result = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    phases = {"setup": (started, marks.get("training", np.inf)),
              "training": (marks.get("training", np.inf), marks.get("bundle", np.inf)),
              "bundle": (marks.get("bundle", np.inf), np.inf)}
    peak = {name: max((kib for t, kib in samples if lo <= t < hi), default=0) / 1024
            for name, (lo, hi) in phases.items()}
    return {"peak_rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
            "phase_peak_rss_mib": peak, "wall_seconds": time.perf_counter() - started,
            "test_accuracy": result["test_accuracy"], "samples": len(samples)}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in text.splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        total = None
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(total, 1) if total else None,
            "os": platform.platform(), "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    train_args = [a for a in args.train_args if a != "--"] or ["--epochs", "1"]
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"machine: {json.dumps(machine())}")
    print(f"train options: {' '.join(train_args)}")
    results = []
    for size in sizes:
        began = time.perf_counter()
        folder = make_folder(args.data_dir, size, args.side)
        print(f"{size} images in {folder} ({time.perf_counter() - began:.1f} s to prepare)",
              flush=True)
        results.append({"images": size, **measure(folder, train_args, args.interval)})
    print(f"\n{'images':>8} {'peak RSS':>9} {'setup':>7} {'training':>9} {'bundle':>7} "
          f"{'wall':>6} {'test acc':>8}   (MiB; seconds)")
    for r in results:
        p = r["phase_peak_rss_mib"]
        print(f"{r['images']:>8} {r['peak_rss_mib']:>9.0f} {p['setup']:>7.0f} "
              f"{p['training']:>9.0f} {p['bundle']:>7.0f} {r['wall_seconds']:>6.1f} "
              f"{r['test_accuracy']:>8.3f}")
    if len(results) > 1:
        first, last = results[0], results[-1]
        ratio = last["images"] / first["images"]
        for key, get in (("whole run", lambda r: r["peak_rss_mib"]),
                         ("training", lambda r: r["phase_peak_rss_mib"]["training"])):
            grew = get(last) - get(first)
            print(f"{key}: {ratio:.0f}x the images -> {get(last) / get(first):.2f}x the peak RSS "
                  f"(+{grew:.0f} MiB, {grew * 2**20 / (last['images'] - first['images']):.0f} "
                  "bytes per extra image)")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "train_args": train_args,
                                         "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
