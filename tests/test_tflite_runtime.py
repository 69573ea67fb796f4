"""32-bit Raspberry Pi OS: no numpy, OpenCV, onnxruntime or ai-edge-litert wheels, only
``tflite-runtime`` 2.14 (built for numpy 1.x). The runtime falls back to it when
``ai_edge_litert`` is missing; this runs that path in its own virtualenv with what a Pi on
Bookworm has: tflite-runtime 2.14, numpy 1.24 and OpenCV 4.6 (the OS's versions).

The virtualenv is cached in ``.venv/`` (untracked) and rebuilt only when the package list
changes; on a clean clone it costs one pip install from the registry (seconds from pip's
cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from conftest import ROOT, assert_clean_failure, exclusive

from runtime.bundle import load_images

pytestmark = pytest.mark.slow
PACKAGES = ["tflite-runtime==2.14.*", "numpy==1.24.*", "opencv-python-headless==4.6.*"]
VENV = ROOT / ".venv" / "tflite-runtime-2.14"
LITERT_FILES = ["model.tflite", "model.fp16.tflite", "model.int8.tflite",
                "model.int8.app.tflite"]


@pytest.fixture(scope="module")
def tflite_python() -> Path:
    python, stamp = VENV / "bin" / "python", VENV / ".installed"
    wanted = "\n".join(PACKAGES)
    with exclusive(VENV.parent / "tflite-runtime.lock"):  # both xdist workers may ask at once
        if not (python.exists() and stamp.is_file() and stamp.read_text() == wanted):
            shutil.rmtree(VENV, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(VENV)],
                           check=True)
            subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                            "--quiet", "--disable-pip-version-check", *PACKAGES], check=True)
            stamp.write_text(wanted)
    return python


def run_in(python: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([str(python), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def test_the_virtualenv_is_a_32_bit_pi_without_the_usual_engines(tflite_python: Path) -> None:
    result = run_in(tflite_python, "-c", "import importlib.util as u, numpy, cv2; print(*[m for "
                    "m in ('ai_edge_litert', 'onnxruntime', 'tensorflow') if u.find_spec(m)], "
                    "numpy.__version__, cv2.__version__)")
    assert result.returncode == 0, result.stderr
    numpy_version, cv2_version = result.stdout.split()  # and no engine but tflite_runtime
    assert numpy_version.startswith("1.24.") and cv2_version.startswith("4.6.")


@pytest.mark.parametrize("name", LITERT_FILES)
def test_litert_files_pass_their_self_check_on_tflite_runtime(name: str, tflite_python: Path,
                                                              exported_bundle: Path) -> None:
    result = run_in(tflite_python, "-m", "runtime", "check", "--model",
                    str(exported_bundle / name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "self-check passed" in result.stdout and "tflite_runtime 2.14" in result.stdout


def test_predict_and_demo_run_on_tflite_runtime(tflite_python: Path, exported_bundle: Path,
                                                tmp_path: Path) -> None:
    images, labels = load_images(exported_bundle / "eval.npz")
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), images[i])
    model = str(exported_bundle / "model.int8.tflite")
    result = run_in(tflite_python, "-m", "runtime", "predict", "--model", model,
                    *(str(tmp_path / f"{i}.png") for i in range(3)))
    assert result.returncode == 0, result.stderr
    assert [line.split(": ")[1].split(" ")[0] for line in result.stdout.splitlines()] == \
        [str(v) for v in labels[:3]]
    demo = run_in(tflite_python, "-m", "demos.webcam", "--model", model, "--source",
                  str(tmp_path), "--headless")
    assert demo.returncode == 0, demo.stderr
    assert "self-check passed" in demo.stdout and "3 frames" in demo.stdout


def test_what_tflite_runtime_cannot_run_is_named(tflite_python: Path,
                                                 exported_bundle: Path) -> None:
    assert_clean_failure(run_in(tflite_python, "-m", "runtime", "check", "--model",
                                str(exported_bundle / "model.onnx")),
                         "onnxruntime is not installed")
    # TF 2.21's dynamic-range kernels are newer than tflite-runtime 2.14's
    assert_clean_failure(run_in(tflite_python, "-m", "runtime", "check", "--model",
                                str(exported_bundle / "model.dynamic.tflite")),
                         "needs a newer LiteRT than tflite_runtime 2.14.0")
