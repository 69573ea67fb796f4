"""The webcam demo's outputs (--save, --jsonl) never destroy a file by surprise, and a place
that takes no file is one line before the run, not a traceback after it; the same for every
atomic writer (runtime/files.py). Also: without OpenCV the demo names the package.

Fast tier: a tiny ONNX digit model and clips of a few frames made here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_clean_failure, run_module

from demos.webcam import main as webcam_main
from runtime.errors import EdgeCNNError, OutputError
from runtime.files import check_outputs, place, scratch_path, write_text

PROC = Path("/proc")  # Linux: a folder that exists and takes no new file, even for root
needs_proc = pytest.mark.skipif(not PROC.is_dir(), reason="needs Linux's /proc")


def write_clip(path: Path, frames: int = 3) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (96, 96))
    for i in range(frames):
        frame = np.full((96, 96, 3), 220, np.uint8)
        cv2.putText(frame, str(i), (28, 72), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (20, 20, 20), 7)
        writer.write(frame)
    writer.release()
    assert path.stat().st_size > 0
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "victim.avi")


def refused(capsys: pytest.CaptureFixture[str], model: Path, *args: str) -> str:
    """Run the demo in-process; it must refuse in one stderr line (exit 2) before the model
    loads: nothing on stdout, where the run's first line would appear."""
    code = webcam_main(["--model", str(model), "--headless", "--skip-self-check", *args])
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2 and len(lines) == 1, captured.err
    assert lines[0].startswith("webcam: error: ") and ".tmp" not in lines[0], lines[0]
    assert captured.out == "", captured.out
    return lines[0]


# ---- nothing is destroyed ------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["--save", "--jsonl"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_output_never_replaces_the_source(flag: str, overwrite: bool, clip: Path,
                                             tiny_digit_model: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    before = clip.read_bytes()
    line = refused(capsys, tiny_digit_model, "--source", str(clip), flag, str(clip),
                   *(["--overwrite"] if overwrite else []))
    assert f"{flag} {clip} is the same file as --source" in line
    assert clip.read_bytes() == before


def test_an_output_never_replaces_the_model_or_the_ground_truth(
        clip: Path, tiny_digit_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tiny_digit_model.read_bytes()
    line = refused(capsys, tiny_digit_model, "--source", str(clip), "--jsonl",
                   str(tiny_digit_model), "--overwrite")
    assert "same file as --model" in line
    assert tiny_digit_model.read_bytes() == model
    truth = clip.with_name(clip.name + ".truth.json")  # read by default when it exists
    truth.write_text(json.dumps({"labels": ["0", "1", "2"]}))
    line = refused(capsys, tiny_digit_model, "--source", str(clip), "--save", str(truth),
                   "--overwrite")
    assert "same file as --truth" in line
    assert json.loads(truth.read_text()) == {"labels": ["0", "1", "2"]}


def test_two_outputs_that_are_one_file_are_refused(
        clip: Path, tiny_digit_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    line = refused(capsys, tiny_digit_model, "--source", str(clip), "--save", "run.avi",
                   "--jsonl", "./run.avi", "--overwrite")
    assert "--jsonl ./run.avi and --save run.avi are the same file" in line
    (tmp_path / "log.jsonl").write_text("kept\n")
    os.link(tmp_path / "log.jsonl", tmp_path / "hardlink.avi")  # one inode, two names
    line = refused(capsys, tiny_digit_model, "--source", str(clip), "--save",
                   str(tmp_path / "hardlink.avi"), "--jsonl", str(tmp_path / "log.jsonl"),
                   "--overwrite")
    assert "are the same file" in line
    assert (tmp_path / "log.jsonl").read_text() == "kept\n"


def test_an_existing_file_is_replaced_only_with_overwrite(clip: Path, tiny_digit_model: Path,
                                                          tmp_path: Path) -> None:
    important = tmp_path / "important.txt"
    important.write_text("do not lose me\n")
    args = ("demos.webcam", "--model", str(tiny_digit_model), "--source", str(clip),
            "--headless", "--skip-self-check", "--jsonl", str(important))
    line = assert_clean_failure(run_module(*args), f"--jsonl {important} exists",
                                "pass --overwrite to replace it")
    assert line.startswith("webcam: error: ")
    assert important.read_text() == "do not lose me\n"
    result = run_module(*args, "--overwrite")
    assert result.returncode == 0, result.stderr
    records = [json.loads(row) for row in important.read_text().splitlines()]
    assert [record["frame"] for record in records] == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no scratch


# ---- a place that takes no file: one line, before the run ----------------------------------

def test_a_folder_as_output_is_refused_before_the_camera_opens(
        tiny_digit_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Camera 7 does not exist: had it been opened first, its error would be the line."""
    line = refused(capsys, tiny_digit_model, "--source", "7", "--jsonl", str(tmp_path))
    assert line.endswith(f"--jsonl {tmp_path} is a folder; name a file inside it")
    (tmp_path / "somedir.mp4").mkdir()
    line = refused(capsys, tiny_digit_model, "--source", "7", "--save",
                   str(tmp_path / "somedir.mp4"), "--overwrite")
    assert f"--save {tmp_path / 'somedir.mp4'} is a folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["somedir.mp4"]


@needs_proc
@pytest.mark.parametrize(("flag", "path"), [("--save", "/proc/x.mp4"),
                                            ("--jsonl", "/proc/x.jsonl"),
                                            ("--jsonl", "/proc/no/such/x.jsonl")])
def test_an_unwritable_place_is_refused_before_the_camera_opens(
        flag: str, path: str, tiny_digit_model: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, tiny_digit_model, "--source", "7", flag, path)
    assert f"{flag} {path}: cannot create " in line and "choose a folder" in line


@needs_proc
def test_predict_names_an_unwritable_out_not_its_temporary_file(tiny_digit_model: Path,
                                                                tmp_path: Path) -> None:
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), np.full((40, 40), 255, np.uint8))
    line = assert_clean_failure(run_module("runtime", "predict", "--model",
                                           str(tiny_digit_model), "--skip-self-check",
                                           "--out", "/proc/x.csv", str(image)),
                                "/proc/x.csv: cannot create a file in /proc")
    assert ".tmp" not in line


# ---- runtime/files.py: every atomic writer ------------------------------------------------

def test_writing_over_a_folder_names_the_path_and_leaves_no_scratch(tmp_path: Path) -> None:
    (tmp_path / "report.json").mkdir()
    with pytest.raises(OutputError, match=r"report\.json is a folder; name a file inside it"):
        write_text(tmp_path / "report.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    with scratch_path(tmp_path / "late.jsonl") as tmp:  # the demo's writers: scratch, place
        tmp.write_text("x\n")
        (tmp_path / "late.jsonl").mkdir()  # became a folder while the run went on
        with pytest.raises(OutputError, match=r"late\.jsonl is a folder"):
            place(tmp, tmp_path / "late.jsonl")


@needs_proc
def test_an_unwritable_folder_is_a_one_line_error_naming_the_path() -> None:
    with pytest.raises(OutputError) as error:
        write_text("/proc/edgecnn.json", "{}")
    message = str(error.value)
    assert isinstance(error.value, EdgeCNNError)  # so every run_cli prints it as one line
    assert message.startswith("/proc/edgecnn.json: cannot create a file in /proc (")
    assert ".tmp" not in message and "\n" not in message


def test_check_outputs_skips_outputs_not_asked_for_and_keeps_files(tmp_path: Path) -> None:
    kept = tmp_path / "kept.jsonl"
    kept.write_text("old\n")
    check_outputs({"--save": None, "--jsonl": str(tmp_path / "new.jsonl")}, {"--source": "0"})
    check_outputs({"--jsonl": str(kept)}, {"--source": "0"}, overwrite=True)
    assert kept.read_text() == "old\n"  # checked, not touched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.jsonl"]  # nor new files made
    (tmp_path / "link.jsonl").symlink_to(kept)
    with pytest.raises(OutputError, match="is the same file as --source"):
        check_outputs({"--jsonl": str(tmp_path / "link.jsonl")}, {"--source": str(kept)},
                      overwrite=True)


# ---- without OpenCV -----------------------------------------------------------------------

def test_without_opencv_the_demo_names_the_package(tiny_digit_model: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """In-process: the demo imports OpenCV under run_cli, which names the missing package."""
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` → ModuleNotFoundError
    code = webcam_main(["--model", str(tiny_digit_model), "--headless"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("webcam: error: opencv-python-headless is not installed")
    assert 'pip install "edgecnn[runtime]"' in err[0]


@pytest.mark.parametrize("demo", ["webcam", "make_clip"])
def test_python_m_demos_without_opencv_is_one_line(demo: str, tiny_digit_model: Path,
                                                   tmp_path: Path) -> None:
    """As a user meets it: a fresh interpreter where OpenCV is not installed."""
    args = ["--model", str(tiny_digit_model), "--headless"] if demo == "webcam" else \
        ["--bundle", str(tmp_path), "--out", str(tmp_path / "clip.avi")]
    assert_clean_failure(run_module(f"demos.{demo}", *args, hide=("cv2",)),
                         f"{demo}: error: opencv-python-headless is not installed",
                         'pip install "edgecnn[runtime]"')
    assert list(tmp_path.iterdir()) == []
