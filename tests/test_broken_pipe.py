"""A reader that leaves early (`python -m runtime predict … | head -1`) ends the command
quietly: no traceback on stderr, the shell's SIGPIPE exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from conftest import ROOT


def test_predict_into_a_closed_pipe_stops_quietly(tiny_digit_model: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(300):  # more lines than the pipe buffer holds once the reader has gone
        cv2.imwrite(str(images / f"{i:03d}.png"), np.full((28, 28), i % 256, np.uint8))
    command = (f"{sys.executable} -m runtime predict --model {tiny_digit_model} "
               f"--skip-self-check --json --batch-size 1 {images} | head -1")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.count("\n") == 1, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.returncode in (0, 141), result.returncode
