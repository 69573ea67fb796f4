"""The device runtime never imports TensorFlow: checked without any trained bundle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

HEAVY = ("tensorflow", "keras", "onnx", "tf2onnx", "train", "export", "benchmarks", "demos")


def test_every_runtime_module_and_a_prediction_leave_tensorflow_out(
        tiny_digit_model: Path) -> None:
    """A fresh interpreter imports every module of the runtime package, loads a model and
    classifies a photo and a frame; none of the heavy packages (nor our callers) comes in."""
    code = f"""
import importlib, pkgutil, sys
import numpy as np
import runtime
for module in pkgutil.walk_packages(runtime.__path__, "runtime."):
    if module.name != "runtime.__main__":
        importlib.import_module(module.name)
classifier = runtime.load(r"{tiny_digit_model}")
photo = np.full((480, 640, 3), 200, np.uint8)
photo[150:330, 310:330] = 40
assert classifier.predict(photo)[0].label == "1"
classifier.classify_frame(photo)
print("LOADED", sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout
