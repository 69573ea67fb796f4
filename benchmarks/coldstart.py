"""Cold start and peak memory: one fresh process per measurement (``benchmarks._child``).

A warm process hides what a device pays when a service (re)starts: the interpreter, the
engine's import, the model load, the first (slowest) inference, and the memory all of that
keeps. Children run one at a time, in the same rotating order as the hot-path rounds.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import median, rss_megabytes, schedule

log = logging.getLogger(__name__)
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # so `-m benchmarks._child` resolves
CHILD_TIMEOUT = 180.0  # seconds; TensorFlow's import alone can take 20 s on a Pi
PHASES = ("startup_ms", "import_ms", "import_runtime_ms", "import_engine_ms", "load_ms",
          "first_ms", "total_ms", "peak_rss_mb")


def run_child(model: Path, image_file: Path, threads: int | None) -> dict[str, Any]:
    """One fresh process: its phase times and peak RSS, or ``{"error": …}``."""
    env = child_env()
    command = [sys.executable, "-m", "benchmarks._child", "--model", str(model),
               "--image", str(image_file)]
    if threads is not None:
        command += ["--threads", str(threads)]
    spawned = time.time_ns()
    try:
        done = subprocess.run([*command, "--spawned-ns", str(spawned)], capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"no first prediction within {CHILD_TIMEOUT:.0f} s"}
    record = parse_child_output(done.stdout)
    if record is None:
        lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
        return {"error": lines[-1][:300]}
    if done.returncode != 0:
        record["error"] = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    if record.get("maxrss") is not None:
        record["peak_rss_mb"] = rss_megabytes(record["maxrss"], record.get("platform", ""))
    return record


def child_env(**extra: str) -> dict[str, str]:
    """This environment, with our packages importable by ``python -m`` from any folder."""
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def parse_child_output(stdout: str) -> dict[str, Any] | None:
    """The child's JSON line (the last line that parses; libraries may print before it)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            return record
    return None


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats that worked; errors and TensorFlow sightings are kept."""
    good = [r for r in runs if "error" not in r]
    summary: dict[str, Any] = {"repeats": len(runs), "ok": len(good)}
    for phase in PHASES:
        values = [r[phase] for r in good if r.get(phase) is not None]
        summary[phase] = median(values) if values else None
    summary["tensorflow_imported"] = any(r.get("tensorflow_imported") for r in runs)
    errors = sorted({r["error"] for r in runs if "error" in r})
    if errors:
        summary["errors"] = errors
    return summary


def measure(models: Sequence[Path], image: np.ndarray, threads: int | None, repeats: int,
            progress: Callable[[str], None] = log.info) -> dict[str, dict[str, Any]]:
    """``repeats`` cold starts of every model, round-robin; the median phases per model."""
    runs: dict[str, list[dict[str, Any]]] = {m.name: [] for m in models}
    with tempfile.TemporaryDirectory(prefix="edgecnn-bench-") as folder:
        image_file = Path(folder) / "image.npy"
        np.save(image_file, image)
        for r, order in enumerate(schedule(len(models), repeats)):
            for i in order:
                record = run_child(models[i], image_file, threads)
                runs[models[i].name].append(record)
                shown = record.get("error") or f"{record.get('total_ms', 0):.0f} ms, " \
                    f"{record.get('peak_rss_mb') or 0:.0f} MB"
                progress(f"cold start {r + 1}/{repeats}: {models[i].name:<22} {shown}")
    return {name: summarize(records) for name, records in runs.items()}
