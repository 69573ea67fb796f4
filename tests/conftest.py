"""Shared fixtures: one small model trained per session, exported once, plus helpers for
running the command-line tools as users do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """twoconv on mnist5k for a few epochs: the subject of export, runtime and benchmark tests."""
    from train.__main__ import main

    out = tmp_path_factory.mktemp("train") / "bundle"
    assert main(["--out", str(out), "--epochs", "4", "--seed", "7"]) == 0
    return out


@pytest.fixture(scope="session")
def exported_bundle(trained_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained bundle with every export: float, int8, float16 and dynamic-range."""
    from export.__main__ import main

    copy = tmp_path_factory.mktemp("export") / "bundle"
    shutil.copytree(trained_bundle, copy)
    assert main(["--bundle", str(copy), "--int8", "--fp16", "--dynamic"]) == 0
    return copy


def run_module(*args: str, timeout: float = 300, env: dict | None = None,
               cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``python -m <args>`` in a fresh interpreter, as a user would."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def assert_clean_failure(result: subprocess.CompletedProcess, *needles: str,
                         code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one line on stderr that mentions ``needles``."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def write_color_folder(root: Path, per_class: int = 40, seed: int = 0) -> Path:
    """Three classes of coloured shapes in RGB images of mixed sizes, plus one corrupt file."""
    rng = np.random.default_rng(seed)
    colors = {"red": (40, 40, 220), "green": (40, 200, 40), "blue": (220, 60, 40)}  # BGR
    for name, color in colors.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            h, w = (int(v) for v in rng.integers(24, 96, size=2))
            image = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
            centre = (int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4)))
            cv2.circle(image, centre, max(4, min(h, w) // 4), color, -1)
            suffix = (".png", ".jpg", ".bmp")[i % 3]
            cv2.imwrite(str(folder / f"{name}_{i:03d}{suffix}"), image)
    (root / "green" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root
