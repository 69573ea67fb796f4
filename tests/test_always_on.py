"""A camera that runs for days: bounded statistics, native chatter in the log, clear errors.

Everything here runs on a tiny ONNX digit model built in milliseconds, so it is fast-tier.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_clean_failure, run_module

from benchmarks.mjpeg import MjpegServer
from benchmarks.stats import fit_line
from demos.tally import RunningQuantiles
from runtime.bundle import EVAL_SET, SPEC, save_images
from runtime.cli import setup_logging
from runtime.quiet import native_stderr_logged


def camera_jpegs(count: int = 8) -> list[bytes]:
    frames = []
    for i in range(count):
        frame = np.full((240, 320, 3), 200, np.uint8)
        cv2.putText(frame, str(i % 10), (120, 170), cv2.FONT_HERSHEY_SIMPLEX, 4, (20, 20, 20), 12)
        frames.append(cv2.imencode(".jpg", frame)[1].tobytes())
    return frames


# ---- bounded statistics --------------------------------------------------------------------

@pytest.mark.parametrize("q", [0.01, 0.25, 0.5, 0.9, 0.99])
def test_running_quantiles_are_within_one_percent(q: float) -> None:
    values = np.random.default_rng(0).lognormal(mean=0.5, sigma=1.0, size=20_000)
    running = RunningQuantiles()
    for value in values:
        running.add(float(value))
    exact = float(np.quantile(values, q, method="lower"))
    assert running.quantile(q) == pytest.approx(exact, rel=0.011)
    assert running.count == len(values) and running.mean == pytest.approx(values.mean())
    assert (running.min, running.max) == (values.min(), values.max())


def test_running_quantiles_keep_the_same_memory_for_ten_times_the_frames() -> None:
    """Memory depends on the range of values (stage times: 0.5 to 50 ms), not on their count."""
    rng = np.random.default_rng(1)
    running = RunningQuantiles()
    for value in rng.uniform(0.5, 50.0, size=10_000):
        running.add(float(value))
    after_10k = running.buckets
    for value in rng.uniform(0.5, 50.0, size=100_000):
        running.add(float(value))
    bound = math.log(50 / 0.5) / math.log(1.01 / 0.99) + 3  # buckets that span the range
    assert after_10k <= running.buckets <= bound


def test_running_quantiles_of_zeros_and_of_nothing() -> None:
    running = RunningQuantiles()
    assert math.isnan(running.median()) and math.isnan(running.mean)
    for value in (0.0, 0.0, 0.0, 2.0):
        running.add(value)
    assert running.median() == 0.0 and running.quantile(1.0) == pytest.approx(2.0, rel=0.01)


def test_fit_of_a_known_line() -> None:
    frames = np.arange(0, 20_000, 50)
    assert fit_line(frames, 145.0 * frames + 80e6) == pytest.approx((145.0, 80e6))
    with pytest.raises(ValueError):
        fit_line([1.0], [2.0])


# ---- native chatter goes to the log ---------------------------------------------------------

def test_native_stderr_lines_become_log_records(capfd: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="runtime.native"), native_stderr_logged():
        os.write(2, b"[http @ 0x1] Stream ends prematurely at 100\n")
        print("a Python error message", file=sys.stderr)
    logged = [r.getMessage() for r in caplog.records]
    assert logged == ["[http @ 0x1] Stream ends prematurely at 100"]
    err = capfd.readouterr().err
    assert "Stream ends" not in err and "a Python error message" in err
    os.write(2, b"after the block\n")
    assert "after the block" in capfd.readouterr().err


def test_logging_set_up_by_an_in_process_main_outlives_its_stdout(
        capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A main() called in process (a notebook, a test) set logging up on the stdout of the
    moment; once that stream was closed, every later record printed "--- Logging error ---"
    with its text on stderr."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # put back after the test
    monkeypatch.setattr(root, "level", root.level)
    stdout, swapped = sys.stdout, io.StringIO()
    sys.stdout = swapped
    try:
        setup_logging("train")
        logging.getLogger("train").info("while swapped")
    finally:
        sys.stdout = stdout
    swapped.close()
    logging.getLogger("runtime.native").info("after it closed")
    out, err = capfd.readouterr()
    assert "after it closed" in out and "Logging error" not in err


def test_flaky_ip_camera_chatter_stays_off_stderr(tiny_digit_model: Path) -> None:
    """FFmpeg's complaints about a camera that hangs up mid-frame reach stdout as log lines;
    the demo reconnects, finishes, and stderr stays empty."""
    with MjpegServer(camera_jpegs(), fps=200, frames_per_connection=15) as camera:
        result = run_module("demos.webcam", "--model", str(tiny_digit_model), "--source",
                            camera.url, "--headless", "--max-frames", "40", timeout=120)
        reconnects = camera.connections - 1
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert reconnects >= 1
    assert "Stream ends prematurely" in result.stdout or "[mjpeg @" in result.stdout
    assert "40 frames from" in result.stdout


def test_demo_summary_after_many_frames(tiny_digit_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, jpeg in enumerate(camera_jpegs(5)):
        (folder / f"{i}.jpg").write_bytes(jpeg)
    result = run_module("demos.webcam", "--model", str(tiny_digit_model), "--source",
                        str(folder), "--headless")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "5 frames from" in result.stdout and "median ms: wait" in result.stdout


# ---- errors that name what the user named --------------------------------------------------

def test_a_folder_given_as_model_is_named_as_a_folder(tiny_digit_model: Path,
                                                      tmp_path: Path) -> None:
    line = assert_clean_failure(run_module("runtime", "predict", "--model",
                                           str(tiny_digit_model.parent), "x.png"), "is a folder")
    assert tiny_digit_model.name in line  # the files it could have meant
    line = assert_clean_failure(run_module("demos.webcam", "--model", str(tmp_path),
                                           "--source", "0", "--headless"), "is a folder")
    assert "no .onnx or .tflite" in line
    assert_clean_failure(run_module("runtime", "predict", "--model", str(tmp_path / "model"),
                                    "x.png"), "no such file")


def test_a_missing_source_names_the_flag(tiny_digit_model: Path, tmp_path: Path) -> None:
    line = assert_clean_failure(run_module("demos.webcam", "--model", str(tiny_digit_model),
                                           "--source", str(tmp_path / "none.avi"), "--headless"),
                                "--source", "none.avi")
    assert "pick another source" in line


# ---- the soak program ----------------------------------------------------------------------

def test_soak_reports_memory_at_warmup_and_end(tiny_digit_model: Path, tmp_path: Path) -> None:
    """The soak's schema on a short run; the memory figures themselves are the benchmark's."""
    import runtime

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = runtime.load(tiny_digit_model).spec
    (bundle / SPEC).write_text(spec.to_json())
    images = np.zeros((4, 28, 28, 1), np.uint8)
    images[:, 6:22, 12:16] = 255  # a "1" each
    save_images(bundle / EVAL_SET, images, np.ones(4))
    out = tmp_path / "soak.json"
    result = run_module("benchmarks.soak", "--bundle", str(bundle), "--model",
                        str(tiny_digit_model), "--frames", "200", "--warmup", "50",
                        "--budget-mb", "1000", "--out", str(out), timeout=180)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["schema"] == "edgecnn.soak/1" and report["frames"] == 200
    assert report["frame_at_warmup"] == 50 and report["frame_at_end"] == 150
    assert [f for f, _ in report["samples"]] == [0, 50, 100, 150]
    assert all(rss > 0 for _, rss in report["samples"])
    for key in ("rss_mb_at_warmup", "rss_mb_end", "growth_mb", "slope_bytes_per_frame",
                "fit_intercept_bytes"):
        assert isinstance(report[key], float)
    assert report["stderr_lines"] == [] and report["passed"] is True
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "soak: 200 frames" in result.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["--frames", "100", "--warmup", "100"], "--warmup 100"),
    (["--budget-mb", "0"], "--budget-mb"),
])
def test_soak_bad_settings(args: list[str], needle: str, tmp_path: Path) -> None:
    assert_clean_failure(run_module("benchmarks.soak", "--bundle", str(tmp_path), *args), needle)
