"""Bulk prediction: folders, globs, batches, unreadable files, CSV and JSON-lines rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_clean_failure, run_module

import runtime
from runtime import bulk
from runtime.bundle import load_images
from runtime.errors import ImageError
from runtime.preprocess import read_image


def test_expand_folders_globs_and_files(tmp_path: Path) -> None:
    for name in ("a/1.png", "a/b/2.JPG", "a/b/3.bmp", "a/notes.txt", "a/.hidden.png",
                 ".cache/4.png", "a/.git/5.png", "top.jpeg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    root = str(tmp_path)
    assert bulk.expand([f"{root}/a"]) == [f"{root}/a/1.png", f"{root}/a/b/2.JPG",
                                          f"{root}/a/b/3.bmp"]
    assert bulk.expand([f"{root}/**/*.png"]) == [f"{root}/a/1.png"]  # glob skips dot names
    assert bulk.expand([f"{root}/a/notes.txt", f"{root}/top.jpeg", f"{root}/a/1.png",
                        f"{root}/a"])[:3] == [f"{root}/a/notes.txt", f"{root}/top.jpeg",
                                              f"{root}/a/1.png"]  # files as given, each once
    assert len(bulk.expand([f"{root}/a", f"{root}/a/1.png"])) == 3
    with pytest.raises(ImageError, match="no such file or folder"):
        bulk.expand([f"{root}/missing.png"])
    with pytest.raises(ImageError, match="match"):
        bulk.expand([f"{root}/*.gif"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageError, match="in it"):
        bulk.expand([f"{root}/empty"])


@pytest.fixture(scope="module")
def folder(exported_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 eval images as PNG and JPEG in class folders, one corrupt file, one text file."""
    root = tmp_path_factory.mktemp("bulk") / "images"
    images, labels = load_images(exported_bundle / "eval.npz")
    for i in range(120):
        target = root / str(labels[i])
        target.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target / f"{i:03d}{'.png' if i % 3 else '.jpg'}"), images[i])
    (root / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "README.txt").write_text("not an image")
    return root


def test_batched_rows_match_one_image_at_a_time(exported_bundle: Path, folder: Path) -> None:
    """The library's one-image API, batch 1, against the bulk path's batches of 64."""
    for name in ("model.int8.tflite", "model.onnx"):
        classifier = runtime.load(exported_bundle / name)
        paths = bulk.expand([str(folder)])
        rows = list(bulk.predict_files(classifier, paths, top_k=2, batch=64, readers=2))
        assert [row.path for row in rows] == paths and len(rows) == 121
        for row in rows:
            if row.path.endswith("broken.png"):
                assert row.status.startswith("skipped: cannot decode") and not row.predictions
                continue
            one = classifier.predict(read_image(row.path), top_k=2)
            assert row.status == "ok" and [p.label for p in row.predictions] == \
                [p.label for p in one]
            assert row.predictions[0].probability == pytest.approx(one[0].probability,
                                                                   abs=1e-5)


def test_digit_photos_are_framed_like_predict(exported_bundle: Path, tmp_path: Path) -> None:
    """A camera-sized photo of a digit model's subject is cut and centred first."""
    classifier = runtime.load(exported_bundle / "model.int8.tflite")
    images, _ = load_images(exported_bundle / "eval.npz")
    photo = np.full((240, 320, 3), 235, np.uint8)
    digit = cv2.resize(255 - images[5][:, :, 0], (112, 112), interpolation=cv2.INTER_LINEAR)
    photo[64:176, 104:216] = np.minimum(photo[64:176, 104:216], digit[:, :, None])
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((240, 320, 3), 235, np.uint8))
    rows = {Path(r.path).name: r for r in bulk.predict_files(
        classifier, bulk.expand([str(tmp_path)]))}
    expected = classifier.classify_frame(photo).predictions
    assert [p.label for p in rows["photo.png"].predictions] == [p.label for p in expected]
    assert rows["blank.png"].status == bulk.NO_DIGIT and not rows["blank.png"].predictions


@pytest.mark.slow
def test_folder_to_csv_gives_the_labels_predict_gives(exported_bundle: Path, folder: Path,
                                                      tmp_path: Path) -> None:
    """The acceptance test: CSV from a folder vs `predict` on the files one by one."""
    model = str(exported_bundle / "model.int8.tflite")
    out = tmp_path / "preds.csv"
    result = run_module("runtime", "predict", "--model", model, str(folder), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "120 images classified, 1 files skipped" in result.stdout
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "probability", "label_2", "probability_2",
                             "label_3", "probability_3", "status"]
    assert len(rows) == 121 and not any(r["path"].endswith(".txt") for r in rows)
    skipped = [r for r in rows if r["status"].startswith("skipped")]
    assert len(skipped) == 1 and skipped[0]["path"].endswith("broken.png")
    files = [r["path"] for r in rows if r["status"] == "ok"]
    single = run_module("runtime", "predict", "--model", model, "--json", "--batch-size", "1",
                        *files)
    assert single.returncode == 0, single.stderr
    one_by_one = {r["image"]: r["predictions"][0]["label"]
                  for r in map(json.loads, single.stdout.splitlines())}
    assert {r["path"]: r["label"] for r in rows if r["status"] == "ok"} == one_by_one
    truth = {r["path"]: Path(r["path"]).parent.name for r in rows if r["status"] == "ok"}
    assert np.mean([one_by_one[p] == truth[p] for p in truth]) >= 0.85  # a real model


@pytest.mark.slow
def test_jsonl_out_and_clean_failures(exported_bundle: Path, folder: Path,
                                      tmp_path: Path) -> None:
    model = str(exported_bundle / "model.int8.onnx")
    out = tmp_path / "preds.jsonl"
    done = run_module("runtime", "predict", "--model", model, f"{folder}/1/*.png", "--out",
                      str(out), "--top-k", "2")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records and all(r["status"] == "ok" and len(r["predictions"]) == 2 for r in records)
    assert_clean_failure(run_module("runtime", "predict", "--model", model, str(folder),
                                    "--out", str(out)), "exists; pass --overwrite")
    assert_clean_failure(run_module("runtime", "predict", "--model", model, str(folder),
                                    "--out", str(tmp_path / "preds.xlsx")), ".csv or .jsonl")
    assert_clean_failure(run_module("runtime", "predict", "--model", model,
                                    str(folder / "3" / "broken.png")),
                         "no image could be classified")
    assert_clean_failure(run_module("runtime", "predict", "--model", model,
                                    f"{folder}/*.gif"), "match")
    assert not (tmp_path / "preds.xlsx").exists()


@pytest.mark.slow
def test_bulk_benchmark_program_runs(exported_bundle: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    from benchmarks.bulk import main

    assert main(["--bundle", str(exported_bundle), "--images", "128", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "128 files found" in out and "bulk / engine:" in out and "start-up included" in out
