"""The sample clip and the webcam demo, headless, on generated media."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_clean_failure, read_frames, run_module

import runtime
from runtime.bundle import load_images


@pytest.fixture(scope="module")
def clip(exported_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    shutil.copyfile(exported_bundle / "model.int8.tflite", folder / "model.int8.tflite")
    result = run_module("demos.make_clip", "--bundle", str(exported_bundle), "--out",
                        str(folder / "clip.avi"), "--digits", "12", "--hold", "4", "--seed", "3")
    assert result.returncode == 0, result.stderr
    return folder / "clip.avi"


def test_clip_renders_held_out_digits_with_ground_truth(clip: Path,
                                                        exported_bundle: Path) -> None:
    truth = json.loads(clip.with_name("clip.avi.truth.json").read_text())
    frames = read_frames(clip)
    assert len(frames) == truth["frames"] == 48 and frames[0].shape == (480, 640, 3)
    _, labels = load_images(exported_bundle / "eval.npz")
    expected = [str(labels[i]) for i in truth["eval_indices"] for _ in range(4)]
    assert truth["labels"] == expected
    paper = np.median(frames[0])
    assert paper > 120  # light paper, dark ink: the camera case, not MNIST's polarity
    assert not np.array_equal(frames[0], frames[1])  # noise and hand shake between frames


def test_webcam_demo_headless_on_the_clip(clip: Path, tmp_path: Path) -> None:
    model = clip.with_name("model.int8.tflite")
    # Every answer counted (--min-confidence 0): the session model trained four epochs and is
    # unsure of more frames than a full run; the "?" has its own tests (test_printed_demo.py).
    result = run_module("demos.webcam", "--model", str(model), "--source", str(clip),
                        "--headless", "--save", str(tmp_path / "out.mp4"), "--jsonl",
                        str(tmp_path / "frames.jsonl"), "--min-confidence", "0")
    assert result.returncode == 0, result.stderr
    assert "frame accuracy" in result.stdout
    accuracy = float(result.stdout.split("frame accuracy ")[1].split("%")[0])
    assert accuracy >= 80.0, result.stdout  # 48 frames: six digits, eight frames each
    records = [json.loads(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(48))
    assert set(records[0]["ms"]) == {"wait", "preprocess", "inference"}
    capture = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 48
    capture.release()


def test_max_frames_and_folder_source(clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    capture = cv2.VideoCapture(str(clip))
    for i in range(5):
        ok, frame = capture.read()
        assert ok
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    capture.release()
    result = run_module("demos.webcam", "--model", str(clip.with_name("model.int8.tflite")),
                        "--source", str(folder), "--headless", "--max-frames", "3")
    assert result.returncode == 0, result.stderr
    summary = [line for line in result.stdout.splitlines() if " frames from " in line]
    assert len(summary) == 1 and summary[0].startswith("3 frames from"), result.stdout
    # No --min-confidence: the threshold chosen on validation, which the file carries.
    chosen = runtime.load(clip.with_name("model.int8.tflite")).spec.min_confidence
    assert chosen is not None
    assert (f"not sure below {chosen:.2f} top-1 probability (chosen on validation when the "
            "model was trained)") in result.stdout


def test_missing_camera_fails_fast_in_one_line(clip: Path, tmp_path: Path) -> None:
    result = run_module("demos.webcam", "--model", str(clip.with_name("model.int8.tflite")),
                        "--source", "7", "--headless", "--jsonl", str(tmp_path / "x.jsonl"),
                        timeout=30)
    line = assert_clean_failure(result, "camera 7", "--source")
    assert "failed" in line
    assert not (tmp_path / "x.jsonl").exists()  # nothing half-written


def test_bad_model_and_bad_source_paths(clip: Path, tmp_path: Path) -> None:
    model = str(clip.with_name("model.int8.tflite"))
    assert_clean_failure(run_module("demos.webcam", "--model", str(tmp_path / "no.tflite"),
                                    "--source", str(clip), "--headless"), "cannot read model")
    assert_clean_failure(run_module("demos.webcam", "--model", model, "--source",
                                    str(tmp_path / "none.avi"), "--headless"), "--source")
    assert_clean_failure(run_module("demos.make_clip", "--bundle", str(tmp_path / "nope")),
                         "no bundle")
