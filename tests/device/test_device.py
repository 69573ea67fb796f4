"""The runtime where it will run: every exported file loads, predicts from an image file,
scores what export measured, passes its self-check without falling back, and TensorFlow
never loads.

``make test`` runs this here on the session's exported bundle; ``make test-aarch64`` runs it
under emulated Debian 12 arm64 on a bundle from ``make demo`` (tests/device/emulate.py), with
no TensorFlow installed. Nothing here starts a subprocess (under qemu-user a child would
run on the host).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import cv2
import pytest
from probe import FILES, measure

from runtime.__main__ import main as runtime_main
from runtime.bundle import load_images
from runtime.files import read_json

BUNDLE_ENV = "EDGECNN_DEVICE_BUNDLE"    # set by tests/device/emulate.py
FILES_ENV = "EDGECNN_DEVICE_FILES"      # the files this device can run (default: all)
RESULTS_ENV = "EDGECNN_DEVICE_RESULTS"  # where to write what was measured (JSON lines)
MAX_DROP_PP = 1.0  # the accuracy a file may lose here against export's figure, as export allows
ON_DEVICE = BUNDLE_ENV in os.environ
DEVICE_FILES = os.environ[FILES_ENV].split(",") if FILES_ENV in os.environ else FILES
# Here the bundle comes from the session's training and export: the slow tier.
pytestmark = [] if ON_DEVICE else [pytest.mark.slow]


@pytest.fixture(scope="module")
def bundle(request: pytest.FixtureRequest) -> Path:
    if ON_DEVICE:
        return Path(os.environ[BUNDLE_ENV])
    return request.getfixturevalue("exported_bundle")


@pytest.mark.parametrize("name", DEVICE_FILES)
def test_file_scores_what_export_measured_and_passes_its_self_check(name: str,
                                                                    bundle: Path) -> None:
    exported = {f["file"]: f for f in read_json(bundle / "export_report.json")["files"]}
    measured = measure(bundle, name)
    if RESULTS_ENV in os.environ:
        with open(os.environ[RESULTS_ENV], "a", encoding="utf-8") as out:
            out.write(json.dumps(measured) + "\n")
    accuracy = next(iter(measured["accuracy"].values()))
    assert abs(accuracy - exported[name]["accuracy"]) * 100 <= MAX_DROP_PP, measured
    check = measured["self_check"]
    assert check["status"] == "passed" and check["checked"] >= 8, check
    assert measured["kernels"] in (None, "xnnpack")  # no fallback needed on this CPU


@pytest.mark.parametrize("name", DEVICE_FILES)
def test_check_and_predict_commands(name: str, bundle: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    model = str(bundle / name)
    assert runtime_main(["check", "--model", model, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "passed"
    images, labels = load_images(bundle / "eval.npz")
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], images[i])
    assert runtime_main(["predict", "--model", model, *paths, "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["predictions"][0]["label"] for r in records] == [str(v) for v in labels[:3]]


def test_tensorflow_is_absent_on_the_device() -> None:
    if not ON_DEVICE:
        pytest.skip("this process trained the fixtures; test_runtime checks a fresh interpreter")
    assert "tensorflow" not in sys.modules
    assert importlib.util.find_spec("tensorflow") is None  # the runtime extra never brings it
