"""``python -m benchmarks.seeds``: the training recipe over several seeds, per data source.

Runs ``python -m train`` once per seed (each in its own process, as a user would) with any
extra training options after ``--``, and tabulates for every part of the data its
validation accuracy (what the recipe is chosen on) and its test accuracy (reported, never
tuned on), with the epochs, the wall time and the load average. Results go to a JSON file
so runs of different recipes can be set side by side.

    python -m benchmarks.seeds                      # the default recipe, seeds 1 2 3 42
    python -m benchmarks.seeds --seeds 1 2 -- --epochs 60
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.errors import BenchmarkError
from runtime.cli import Parser, run_cli, setup_logging
from runtime.files import write_json

log = logging.getLogger("benchmarks.seeds")
SEEDS = (1, 2, 3, 42)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m benchmarks.seeds", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--out", default=None, help="results JSON (default: print only)")
    p.add_argument("train_args", nargs="*", help="options passed to python -m train (after --)")
    return p


def train_once(seed: int, train_args: list[str], folder: Path) -> dict[str, Any]:
    """One ``python -m train`` run; its figures per source, epochs and wall time."""
    out = folder / f"seed{seed}"
    command = [sys.executable, "-m", "train", "--seed", str(seed), "--out", str(out),
               "--overwrite", *train_args]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchmarkError(f"seed {seed}: python -m train failed: "
                             f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    metrics = json.loads((out / "metrics.json").read_text())
    training = metrics["training"]
    return {
        "seed": seed, "wall_seconds": round(wall, 1),
        "train_seconds": round(training["wall_seconds"], 1),
        "epochs": training["epochs_run"], "best_epoch": training["best_epoch"],
        "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
        "val": metrics["validation"].get("by_source") or
        {"all": metrics["validation"]["accuracy"]},
        "test": {name: part["accuracy"] for name, part in metrics["by_source"].items()} or
        {"all": metrics["test"]["accuracy"]},
        "val_history": {key: [round(v, 4) for v in training["history"][key]]
                        for key in ("val_loss", "val_accuracy")},
    }


def table(runs: list[dict[str, Any]]) -> list[str]:
    """A markdown table: one row per seed and one for the mean."""
    parts = list(runs[0]["test"])
    head = ["seed", *[f"val {p}" for p in parts], *[f"test {p}" for p in parts],
            "epochs", "train s", "load"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]

    def row(first: str, values: list[float], rest: list[str]) -> str:
        return "| " + " | ".join([first, *[f"{v * 100:.2f} %" for v in values], *rest]) + " |"

    for r in runs:
        lines.append(row(str(r["seed"]), [r["val"][p] for p in parts] +
                         [r["test"][p] for p in parts],
                         [f"{r['epochs']} (best {r['best_epoch']})", f"{r['train_seconds']:.0f}",
                          f"{r['load_before']:.1f}–{r['load_after']:.1f}"]))
    mean = [sum(r[k][p] for r in runs) / len(runs) for k in ("val", "test") for p in parts]
    lines.append(row("mean", mean, ["", f"{sum(r['train_seconds'] for r in runs) / len(runs):.0f}",
                                    ""]))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        setup_logging("benchmarks")
        runs = []
        with tempfile.TemporaryDirectory(prefix="edgecnn-seeds-") as tmp:
            for seed in args.seeds:
                log.info("seed %d: python -m train %s", seed, " ".join(args.train_args))
                runs.append(train_once(seed, args.train_args, Path(tmp)))
                log.info("seed %d: %s", seed, json.dumps(runs[-1]))
        print("\n".join(table(runs)))
        if args.out:
            write_json(Path(args.out), {"train_args": args.train_args, "runs": runs})
        return 0

    return run_cli("benchmarks.seeds", go, failures=(BenchmarkError,))


if __name__ == "__main__":
    sys.exit(main())
