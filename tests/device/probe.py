"""What each exported file does on this machine: accuracy on the bundle's eval set, its
self-check without and with the LiteRT kernel fallback, and how long loading and checking
take. It runs where the files run, emulated ARM included, and starts no subprocess: under
qemu-user a child process would run on the host.

``python -m tests.device.probe --bundle artifacts`` prints one JSON object per file.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import runtime
from runtime.bundle import EXPORT_NAMES, load_images

FILES = sorted(EXPORT_NAMES.values())


def measure(bundle: Path, name: str) -> dict[str, Any]:
    """Load, self-check as the CLI does (fallback last), and score the kernels it settles on."""
    images, labels = load_images(bundle / "eval.npz")
    started = time.perf_counter()
    classifier = runtime.load(bundle / name)
    load_ms = (time.perf_counter() - started) * 1e3
    first_kernels = getattr(classifier.backend, "kernels", None)
    first_accuracy = _accuracy(classifier, images, labels)
    strict = classifier.self_check(fallback=False)
    settled = strict if strict.passed else classifier.self_check()
    kernels = getattr(classifier.backend, "kernels", None)
    return {
        "file": name, "machine": platform.machine(), "engine": classifier.backend.engine,
        "load_ms": round(load_ms, 1), "accuracy": {first_kernels or "default": first_accuracy},
        "self_check": strict.to_dict(), "settled": settled.to_dict(), "kernels": kernels,
        **({"accuracy_settled": _accuracy(classifier, images, labels)}
           if kernels != first_kernels else {}),
    }


def _accuracy(classifier: runtime.Classifier, images: np.ndarray, labels: np.ndarray) -> float:
    return float((classifier.probabilities(images).argmax(1) == labels).mean())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.device.probe", description=__doc__)
    p.add_argument("--bundle", required=True)
    p.add_argument("--files", nargs="+", default=FILES)
    args = p.parse_args(argv)
    for name in args.files:
        print(json.dumps(measure(Path(args.bundle), name)), flush=True)
    assert "tensorflow" not in sys.modules
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
