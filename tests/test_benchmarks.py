"""Benchmarks: the statistics on known inputs, the CPU record on x86 and ARM text, the
result schema of a real (tiny) run with and without TensorFlow, ``--compare``, and bad input.

Nothing here asserts on a measured time: timings depend on the machine and its neighbours.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import assert_clean_failure, run_module

from benchmarks import report
from benchmarks.__main__ import SCHEMA, best_file, main
from benchmarks.coldstart import parse_child_output, summarize
from benchmarks.environment import parse_cpuinfo, simd
from benchmarks.measure import time_paired
from benchmarks.pipeline import render_frames
from benchmarks.stats import (
    median,
    median_of_rounds,
    percentiles,
    ratio,
    rss_megabytes,
    schedule,
    speedup,
    spread,
    throughput,
)
from runtime.bundle import APP_TFLITE, EXPORT_NAMES
from runtime.spec import ModelSpec

TINY = ["--quick", "--rounds", "1", "--iterations", "5", "--repeats", "1"]
X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse4_2 avx avx2 fma avx512f

processor\t: 1
model name\t: AMD EPYC 7B13
"""
PI4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd08

Hardware\t: BCM2835
Revision\t: c03111
Model\t\t: Raspberry Pi 4 Model B Rev 1.1
"""
# ---- statistics ------------------------------------------------------------------------

def test_percentiles_of_a_known_sample() -> None:
    assert percentiles(range(1, 101)) == pytest.approx({"p50": 50.5, "p90": 90.1, "p99": 99.01})
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0}
    assert percentiles([1, 2, 3, 4], (50,)) == {"p50": 2.5}
    with pytest.raises(ValueError):
        percentiles([])


def test_median_of_rounds_ignores_one_disturbed_round() -> None:
    rounds = [{"p50": 10.0, "p99": 20.0}, {"p50": 11.0, "p99": 900.0}, {"p50": 12.0, "p99": 22.0}]
    assert median_of_rounds(rounds) == {"p50": 11.0, "p99": 22.0}
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert spread([9.0, 10.0, 12.0]) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        median_of_rounds([])


@pytest.mark.parametrize("variants,rounds", [(7, 7), (3, 5), (1, 3), (4, 2)])
def test_schedule_visits_each_variant_once_per_round_in_rotating_order(variants: int,
                                                                       rounds: int) -> None:
    plan = schedule(variants, rounds)
    assert len(plan) == rounds
    for r, order in enumerate(plan):
        assert sorted(order) == list(range(variants))
        assert order[0] == r % variants
        assert order == [(order[0] + i) % variants for i in range(variants)]
    if rounds >= variants:  # every variant takes every position: none is always first
        for position in range(variants):
            assert {order[position] for order in plan[:variants]} == set(range(variants))
    assert schedule(0, 3) == [[], [], []]


def test_speedup_ratio_and_throughput_math() -> None:
    assert speedup(700.0, 70.0) == pytest.approx(10.0)
    assert speedup(70.0, 700.0) == pytest.approx(0.1)
    assert speedup(None, 5.0) is None and speedup(5.0, 0.0) is None
    assert ratio(100.0, 50.0) == pytest.approx(0.5)
    assert ratio(0.0, 1.0) is None and ratio(1.0, None) is None
    assert throughput(64, 0.004) == pytest.approx(16_000)
    assert throughput(64, 0.0) is None


def test_paired_timing_alternates_calls_and_primes_each_once() -> None:
    seen: list[str] = []
    a_us, b_us = time_paired([(lambda x: seen.append(f"a{x}"), [0, 1]),
                              (lambda x: seen.append(f"b{x}"), [7])], 3)
    assert seen == ["a0", "b7", "a0", "b7", "a1", "b7", "a0", "b7"]  # untimed pair first
    assert a_us.shape == b_us.shape == (3,)


def test_peak_rss_units_linux_kilobytes_macos_bytes() -> None:
    assert rss_megabytes(2048, "linux") == 2.0
    assert rss_megabytes(2 * 2**20, "darwin") == 2.0


# ---- environment and child records ------------------------------------------------------

def test_cpuinfo_on_x86_and_on_a_raspberry_pi() -> None:
    x86 = parse_cpuinfo(X86_CPUINFO)
    assert x86["model"] == "AMD EPYC 7B13" and x86["core"] is None
    assert simd(x86["flags"]) == ["sse4_2", "avx", "avx2", "fma", "avx512f"]
    pi = parse_cpuinfo(PI4_CPUINFO)
    assert pi["model"] == "Raspberry Pi 4 Model B Rev 1.1"
    assert pi["core"] == "Cortex-A72" and pi["cpu_part"] == "0xd08"
    assert simd(pi["flags"]) == ["asimd"]
    empty = parse_cpuinfo("")
    assert empty["model"] is None and empty["flags"] == []


def test_child_output_and_cold_start_summary() -> None:
    record = parse_child_output('noise from a library\n{"total_ms": 5.0}\n')
    assert record == {"total_ms": 5.0}
    assert parse_child_output("Traceback ...\n") is None
    runs = [{"total_ms": 3.0, "peak_rss_mb": 60.0, "tensorflow_imported": False},
            {"total_ms": 5.0, "peak_rss_mb": 70.0, "tensorflow_imported": False},
            {"error": "exit code 1"}]
    summary = summarize(runs)
    assert summary["total_ms"] == 4.0 and summary["peak_rss_mb"] == 65.0
    assert summary["repeats"] == 3 and summary["ok"] == 2
    assert summary["errors"] == ["exit code 1"] and summary["tensorflow_imported"] is False


def test_best_file_is_the_fastest_that_keeps_accuracy() -> None:
    rows = [{"file": "model.keras", "backend": "keras", "latency_us": {"p50": 500.0},
             "accuracy_change_pp": None},
            {"file": "a", "backend": "litert", "latency_us": {"p50": 10.0},
             "accuracy_change_pp": -3.0},
            {"file": "b", "backend": "litert", "latency_us": {"p50": 30.0},
             "accuracy_change_pp": -0.4},
            {"file": "c", "backend": "onnxruntime", "latency_us": {"p50": 40.0},
             "accuracy_change_pp": 0.0}]
    assert best_file(rows) == "b"


# ---- end to end on a real bundle ---------------------------------------------------------

@pytest.fixture(scope="module")
def runs(exported_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny run with Keras (in process) and one without TensorFlow (fresh process)."""
    bundle = tmp_path_factory.mktemp("bench") / "bundle"
    shutil.copytree(exported_bundle, bundle)
    assert main(["--bundle", str(bundle), *TINY]) == 0
    without = bundle.parent / "device" / "results.json"
    done = run_module("benchmarks", "--bundle", str(bundle), "--out", str(without), *TINY,
                      hide=("tensorflow", "keras"))  # a device with the runtime extra only
    assert done.returncode == 0, done.stderr[-2000:]
    return {"bundle": bundle, "keras": bundle / "benchmark.json", "device": without,
            "device_stdout": done.stdout}


def test_results_schema_one_row_per_file_plus_keras(runs: dict[str, Any]) -> None:
    bundle = runs["bundle"]
    result = json.loads(runs["keras"].read_text())
    assert result["schema"] == SCHEMA
    for key in ("bundle", "settings", "reference", "best", "rows", "pipeline", "notes",
                "method", "environment"):
        assert key in result, key
    files = sorted([*EXPORT_NAMES.values(), APP_TFLITE])  # the app file is measured too
    assert result["rows"][0]["file"] == "model.keras"
    assert sorted(r["file"] for r in result["rows"][1:]) == files
    assert result["reference"] == {"file": "model.keras", "backend": "keras", "keras": True}
    assert result["settings"]["keras_call"] in ("eager", "tf.function")
    for row in result["rows"]:
        for key in ("backend", "precision", "size_bytes", "accuracy", "agreement", "speedup",
                    "throughput_ips", "overhead_us"):
            assert key in row, (row["file"], key)
        assert set(row["latency_us"]) == {"p50", "p90", "p99"}
        assert set(row["engine_latency_us"]) == {"p50", "p90", "p99"}
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["agreement"] <= 1.0
        cold = row["cold_start"]
        assert cold["ok"] == 1 and "errors" not in cold, cold
        for phase in ("startup_ms", "import_ms", "load_ms", "first_ms", "total_ms",
                      "peak_rss_mb"):
            assert cold[phase] is not None, (row["file"], phase)
        assert cold["tensorflow_imported"] is (row["backend"] == "keras"), row["file"]
    keras_row = result["rows"][0]
    assert keras_row["reference"] and keras_row["speedup"] == pytest.approx(1.0)
    models = result["environment"]["models"]
    assert sorted(models) == sorted([*files, "model.keras"])
    assert all(len(m["sha256"]) == 64 for m in models.values())
    for key in ("cpu", "packages", "threads", "python", "load_average_start"):
        assert key in result["environment"], key
    pipe = result["pipeline"]
    assert pipe["file"] == result["best"]["file"] and pipe["frame_size"] == "640x480"
    assert set(pipe["stages_us"]) == {"decode_us", "preprocess_us", "inference_us",
                                      "other_us", "runtime_us"}
    md = (bundle / "benchmark.md").read_text()
    assert "| model.int8.tflite |" in md and "engine p50" in md and "sha256" in md
    assert (bundle / "benchmark.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p.name for p in bundle.iterdir() if p.name.startswith(".")]  # atomic writes


def test_without_tensorflow_the_float_onnx_file_is_the_reference(runs: dict[str, Any]) -> None:
    result = json.loads(runs["device"].read_text())
    assert [r["file"] for r in result["rows"]] == [*EXPORT_NAMES.values(), APP_TFLITE]
    assert result["reference"] == {"file": "model.onnx", "backend": "onnxruntime",
                                   "keras": False}
    notes = " ".join(result["notes"])
    assert "No Keras reference row: TensorFlow is not installed" in notes
    assert "vs model.onnx" in notes
    assert all(not r["cold_start"]["tensorflow_imported"] for r in result["rows"])
    assert runs["device"].with_suffix(".md").is_file()
    assert "note: No Keras reference row" in runs["device_stdout"]


def test_compare_two_runs(runs: dict[str, Any], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "compare.md"
    assert main(["--compare", str(runs["keras"]), str(runs["device"]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == out.read_text().strip()
    assert "B/A" in printed and "## A:" in printed and "## B:" in printed
    keras_line = next(line for line in printed.splitlines() if line.startswith("| model.keras"))
    assert keras_line.count(" - ") >= 3  # B has no Keras row


def test_compare_ratios_on_known_results() -> None:
    def run(p50: float, ips: float, cold: float) -> dict:
        return {"rows": [{"file": "m.tflite", "latency_us": {"p50": p50},
                          "throughput_ips": ips, "cold_start": {"total_ms": cold}}],
                "environment": {}, "settings": {}}

    text = report.compare(run(100.0, 1000.0, 200.0), run(50.0, 3000.0, 300.0), ("a", "b"))
    row = next(line for line in text.splitlines() if line.startswith("| m.tflite"))
    assert [c.strip() for c in row.strip("|").split("|")] == [
        "m.tflite", "100", "50.0", "0.50×", "1,000", "3,000", "3.00×", "200", "300", "1.50×"]


# ---- bad input ----------------------------------------------------------------------------

def _one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("benchmarks: error:")
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_bundle_is_one_line_exit_2(tmp_path: Path) -> None:
    assert_clean_failure(run_module("benchmarks", "--bundle", str(tmp_path / "nowhere")),
                         "no bundle")


def test_bundle_without_model_files(exported_bundle: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("spec.json", "eval.npz", "model.keras"):
        shutil.copy(exported_bundle / name, tmp_path / name)
    assert main(["--bundle", str(tmp_path), "--quick"]) == 2
    _one_error_line(capsys, "no .onnx or .tflite", "python -m export")


@pytest.mark.parametrize("content,needle", [(None, "no such file"), ("{not json", "not a JSON"),
                                            ('{"rows": []}', "not a benchmark result"),
                                            ("[1, 2]", "not a benchmark result"),
                                            (json.dumps({"schema": SCHEMA, "rows": [3]}),
                                             "malformed")])
def test_bad_compare_file(content: str | None, needle: str, runs: dict[str, Any],
                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    assert main(["--compare", str(runs["keras"]), str(bad)]) == 2
    _one_error_line(capsys, needle, "bad.json")


@pytest.mark.parametrize("args,needle", [(["--threads", "0"], "--threads 0"),
                                         (["--rounds", "0"], "--rounds 0")])
def test_bad_settings(args: list[str], needle: str, tmp_path: Path,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--bundle", str(tmp_path), *args]) == 2
    _one_error_line(capsys, needle)



@pytest.mark.parametrize("color,framing", [("grayscale", "digit"), ("rgb", "none")])
def test_pipeline_frames_are_640x480_jpegs(color: str, framing: str) -> None:
    channels = 3 if color == "rgb" else 1
    spec = ModelSpec(labels=("a", "b"), height=28, width=28, color=color, framing=framing)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 28, 28, channels), dtype=np.uint8)
    frames, labels = render_frames(images, np.array([0, 1, 0, 1]), spec, 6)
    assert len(frames) == 6 and len(labels) == 6
    decoded = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (480, 640, 3)


def test_variants_measure_every_option_and_write_their_table(exported_bundle: Path,
                                                             tmp_path: Path) -> None:
    """The schema of ``python -m benchmarks.variants`` (one tiny round; no timing checked)."""
    from benchmarks.variants import main as variants_main

    bundle = tmp_path / "bundle"
    shutil.copytree(exported_bundle, bundle)
    assert variants_main(["--bundle", str(bundle), "--rounds", "1", "--iterations", "3"]) == 0
    result = json.loads((bundle / "variants.json").read_text())
    names = {row["variant"] for row in result["rows"]}
    assert {"model.onnx opt=all", "model.onnx io-binding", "tf2onnx as exported",
            "int8.qoperator-s8", "model.int8.tflite xnnpack",
            "model.int8.tflite builtin"} <= names
    assert all(row["p50"] > 0 and row["p90"] >= row["p50"] for row in result["rows"])
    assert (bundle / "variants.md").read_text().startswith("| variant |")
