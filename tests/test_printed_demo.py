"""``make_clip --printed`` and the demo's "not sure" answer (``--min-confidence``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_failure, run_module

from demos.overlay import draw
from demos.webcam import answer
from runtime.classifier import FrameResult, Prediction


@pytest.fixture(scope="module")
def printed_clip(exported_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("printed") / "clip.avi"
    result = run_module("demos.make_clip", "--bundle", str(exported_bundle), "--out", str(out),
                        "--digits", "10", "--hold", "2", "--seed", "1", "--printed", "0.6")
    assert result.returncode == 0, result.stderr
    assert "6 printed" in result.stdout
    return out


def test_printed_clip_has_ground_truth_for_every_frame(printed_clip: Path,
                                                      exported_bundle: Path) -> None:
    truth = json.loads(printed_clip.with_name("clip.avi.truth.json").read_text())
    assert truth["frames"] == len(truth["labels"]) == 20
    kinds = [d["source"] for d in truth["digits"]]
    assert kinds.count("printed") == 6 and kinds.count("eval.npz") == 4
    # Printed in the families the session model's training held out, and only those.
    sources = json.loads((exported_bundle / "metrics.json").read_text()
                         )["dataset"]["sources"]["printed"]
    assert truth["printed_families"]
    assert set(truth["printed_families"]) <= set(sources["test_families"])
    assert all(d["font"] for d in truth["digits"] if d["source"] == "printed")


def _run(clip: Path, tmp_path: Path, *extra: str) -> tuple[str, list[dict]]:
    log = tmp_path / "frames.jsonl"
    result = run_module("demos.webcam", "--model",
                        str(clip.parent.parent / "model.int8.tflite"), "--source", str(clip),
                        "--headless", "--jsonl", str(log), "--overwrite", *extra)  # reused
    assert result.returncode == 0, result.stderr
    return result.stdout, [json.loads(line) for line in log.read_text().splitlines()]


def test_min_confidence_says_not_sure(printed_clip: Path, exported_bundle: Path,
                                      tmp_path: Path) -> None:
    (printed_clip.parent.parent / "model.int8.tflite").write_bytes(
        (exported_bundle / "model.int8.tflite").read_bytes())
    _, always = _run(printed_clip, tmp_path, "--min-confidence", "0")
    assert all(r["label"] is not None and not r["unsure"] for r in always if r["top"])
    stdout, never = _run(printed_clip, tmp_path, "--min-confidence", "1")
    found = [r for r in never if r["top"]]
    assert found and all(r["label"] is None and r["unsure"] for r in found)
    assert all(r["probability"] == a["probability"] for r, a in zip(never, always, strict=True))
    assert f"{len(found)} frames said '?'" in stdout
    assert "frame accuracy 0.00%" in stdout  # "?" is never counted as right


def test_bad_min_confidence_is_one_line(printed_clip: Path, exported_bundle: Path) -> None:
    result = run_module("demos.webcam", "--model", str(exported_bundle / "model.int8.tflite"),
                        "--source", str(printed_clip), "--headless", "--min-confidence", "1.5")
    assert_clean_failure(result, "--min-confidence 1.5")
    result = run_module("demos.make_clip", "--bundle", str(exported_bundle), "--out",
                        str(printed_clip.with_name("x.avi")), "--printed", "2")
    assert_clean_failure(result, "--printed 2")


def _frame_result(probability: float | None) -> FrameResult:
    predictions = [] if probability is None else [Prediction("7", probability, 7),
                                                  Prediction("1", 1 - probability, 1)]
    return FrameResult(predictions, (40, 60, 80, 80), probability is not None, 1.0, 0.1)


def test_answer_and_overlay_for_sure_unsure_and_blank() -> None:
    sure, unsure, blank = _frame_result(0.9), _frame_result(0.4), _frame_result(None)
    assert answer(sure, 0.5) == "7" and answer(unsure, 0.5) is None
    assert answer(blank, 0.0) is None  # blank paper stays "no digit", whatever the threshold
    frame = np.full((240, 200, 3), 200, np.uint8)
    drawn = {name: draw(frame, result, 10.0, 1.0, answer(result, 0.5))
             for name, result in [("sure", sure), ("unsure", unsure), ("blank", blank)]}
    assert not np.array_equal(drawn["sure"], drawn["unsure"])
    edge = (140, 80)  # the ROI's bottom edge: amber when not sure
    assert tuple(drawn["unsure"][edge]) == (0, 170, 255)
    assert tuple(drawn["sure"][edge]) != (0, 170, 255) != tuple(drawn["blank"][edge])
