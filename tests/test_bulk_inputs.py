"""Bulk prediction's inputs as a new user's disk holds them: directory symlinks (loops
included), FIFOs, and images too small or too odd to frame among good ones. Each bad file
is a skipped row with its reason; the run goes on, and nothing hangs."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_clean_failure, run_module

import runtime
from runtime import bulk
from runtime.walk import is_image_name

PAPER = 210
HANG_GUARD = 120  # seconds: a regression (an endless walk, a blocked read) fails, not hangs


def digit_photo(digit: int) -> np.ndarray:
    """A dark Hershey digit on light 320×240 paper."""
    photo = np.full((240, 320, 3), PAPER, np.uint8)
    cv2.putText(photo, str(digit), (125, 170), cv2.FONT_HERSHEY_SIMPLEX, 4, (30, 30, 30), 10,
                cv2.LINE_AA)
    return photo


def write(path: Path, image: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return str(path)


def statuses(rows: list[bulk.Row]) -> dict[str, str]:
    return {Path(row.path).name: row.status for row in rows}


# Too small to frame: shorter side under framing.MIN_ROI_SIDE (8 px), any content.
TINY = {"one_px.png": np.full((1, 1), 255, np.uint8),
        "column.png": np.full((500, 1), 255, np.uint8),
        "row.png": np.full((1, 500), 255, np.uint8),
        "thin28.png": np.full((28, 1), 255, np.uint8),
        "two_grey.png": np.array([[200, 90], [30, 250]], np.uint8),
        "white2x500.png": np.full((2, 500), 255, np.uint8)}


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    """Good digit photos, images too small to frame, blank paper and a corrupt file."""
    folder = tmp_path / "mixed"
    for digit in (1, 4, 7):
        write(folder / f"photo{digit}.png", digit_photo(digit))
    for name, image in TINY.items():
        write(folder / name, image)
    write(folder / "blank.png", np.full((240, 320, 3), PAPER, np.uint8))
    write(folder / "blank_thin.png", np.full((8, 300), 255, np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def test_bad_images_are_skipped_rows_and_the_run_goes_on(tiny_digit_model: Path,
                                                         mixed: Path) -> None:
    classifier = runtime.load(tiny_digit_model)
    paths = bulk.expand([str(mixed)])
    rows = list(bulk.predict_files(classifier, paths, batch=4, readers=2))
    assert [row.path for row in rows] == paths  # every file has its row, in order
    found = statuses(rows)
    for digit in (1, 4, 7):
        row = next(r for r in rows if r.path.endswith(f"photo{digit}.png"))
        assert row.status == "ok"
        expected = classifier.predict(digit_photo(digit))
        assert [p.label for p in row.predictions] == [p.label for p in expected]
    for name, image in TINY.items():
        height, width = image.shape
        assert found[name] == (f"{bulk.SKIPPED}: the image is {width}x{height} px, too small "
                               "to hold a digit: width and height must be at least 8 px")
    assert found["blank.png"] == found["blank_thin.png"] == bulk.NO_DIGIT
    assert found["broken.png"].startswith(f"{bulk.SKIPPED}: cannot decode")
    assert all(not row.predictions for row in rows if row.status != "ok")


def test_opencv_errors_are_skipped_rows_but_bugs_stop_the_run(
        tiny_digit_model: Path, mixed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cv2.error on one image (what a bad image can raise) is that image's row; any other
    exception is a bug in our code and must not be turned into a row."""
    classifier = runtime.load(tiny_digit_model)
    paths = [str(mixed / "photo1.png"), str(mixed / "photo4.png")]
    real = classifier.model_pixels

    def opencv_fails_on_four(image: np.ndarray, **kwargs: object) -> np.ndarray | None:
        if np.array_equal(image, cv2.imread(paths[1], cv2.IMREAD_UNCHANGED)):
            raise cv2.error("OpenCV(5.1.0) resize.cpp:3587: error: (-215:Assertion failed)\n"
                            "!ssize.empty() in function 'resize'\n")
        return real(image, **kwargs)

    monkeypatch.setattr(classifier, "model_pixels", opencv_fails_on_four)
    rows = list(bulk.predict_files(classifier, paths))
    assert rows[0].status == "ok"
    assert rows[1].status == (f"{bulk.SKIPPED}: OpenCV failed on {paths[1]}: "
                              "OpenCV(5.1.0) resize.cpp:3587: error: (-215:Assertion failed)")

    def bug(image: np.ndarray, **kwargs: object) -> None:
        raise TypeError("a bug, not a bad image")

    monkeypatch.setattr(classifier, "model_pixels", bug)
    with pytest.raises(TypeError, match="a bug"):
        list(bulk.predict_files(classifier, paths))


def test_cli_folder_with_a_one_pixel_image(tiny_digit_model: Path, mixed: Path) -> None:
    result = run_module("runtime", "predict", "--model", str(tiny_digit_model), str(mixed))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert len(lines) == 12
    assert lines[str(mixed / "one_px.png")].startswith("skipped: the image is 1x1 px, too small")
    assert lines[str(mixed / "blank.png")] == bulk.NO_DIGIT
    assert lines[str(mixed / "photo7.png")][0].isdigit()
    assert "5 images classified, 7 files skipped" in result.stderr


def test_fifo_is_skipped_not_read(tiny_digit_model: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO named like an image (listed by a folder scan or given by name) would block the
    read until a writer comes: it is a skipped row, and the files around it are read."""
    good = write(tmp_path / "in" / "a.png", digit_photo(7))
    pipe = tmp_path / "in" / "pipe.png"
    os.mkfifo(pipe)
    link = tmp_path / "in" / "to_pipe.png"
    link.symlink_to(pipe)  # a link is judged by its target
    paths = bulk.expand([str(tmp_path / "in")])
    assert paths == [good, str(pipe)]  # the link is the same file as the pipe: listed once
    real_read = bulk.read_image

    def never_the_pipe(path: str) -> np.ndarray:  # reading it would block: fail instead
        assert os.path.realpath(path) != os.path.realpath(pipe), f"{path} was read"
        return real_read(path)

    monkeypatch.setattr(bulk, "read_image", never_the_pipe)
    classifier = runtime.load(tiny_digit_model)
    found = statuses(list(bulk.predict_files(classifier, [*paths, str(link)])))
    assert found == {"a.png": "ok", "pipe.png": f"{bulk.SKIPPED}: {pipe} is not a regular file",
                     "to_pipe.png": f"{bulk.SKIPPED}: {link} is not a regular file"}


def loop_tree(root: Path) -> Path:
    """root/sub/d.png with two links back to root (sub/up, sub/up2): a walk that follows
    links without remembering where it has been never ends."""
    write(root / "top.png", digit_photo(1))
    write(root / "sub" / "d.png", digit_photo(2))
    (root / "sub" / "up").symlink_to("..")
    (root / "sub" / "up2").symlink_to("..")
    return root


@pytest.mark.timeout(HANG_GUARD)
def test_link_loops_end_and_each_file_is_listed_once(tmp_path: Path) -> None:
    root = loop_tree(tmp_path / "x")
    expected = [f"{root}/sub/d.png", f"{root}/top.png"]
    assert sorted(bulk.expand([str(root)])) == expected
    assert bulk.expand([f"{root}/**/*.png"]) == expected
    # A link up (sub/up -> ..) leads out of the folder named: never followed.
    assert bulk.expand([f"{root}/sub/**/*.png"]) == [f"{root}/sub/d.png"]
    assert bulk.expand([f"{root}/**/d.png", f"{root}/sub"]) == [f"{root}/sub/d.png"]
    (root / "sub" / "everything").symlink_to("/")
    assert bulk.expand([str(root / "sub")]) == [f"{root}/sub/d.png"]


def test_folders_reached_through_links_are_scanned(tmp_path: Path) -> None:
    real = write(tmp_path / "realdir" / "e.png", digit_photo(3))
    (tmp_path / "linkdir").mkdir()
    (tmp_path / "linkdir" / "photos").symlink_to("../realdir")
    (tmp_path / "alias").symlink_to("realdir")
    linked = str(tmp_path / "linkdir" / "photos" / "e.png")
    assert bulk.expand([str(tmp_path / "linkdir")]) == [linked]
    assert bulk.expand([f"{tmp_path}/linkdir/**/*.png"]) == [linked]
    assert bulk.expand([str(tmp_path / "alias")]) == [str(tmp_path / "alias" / "e.png")]
    # Reached both ways from one folder, it is listed once, under its own path.
    assert bulk.expand([str(tmp_path)]) == [real]
    assert bulk.expand([f"{tmp_path}/**/*.png"]) == [real]


@pytest.mark.parametrize("pattern", ["**/*.png", "**", "a/**", "a/**/*.png", "*/**/*.png",
                                     "**/b/*.png", "a/**/b/**/*.png", "**/.*.png",
                                     ".hid/**/*.png", "**/.h2/*", "**/c/*", "[a.]*/**/*.jpg",
                                     "a/*.png", "*.png"])
def test_globs_match_what_glob_matches_without_links(
        pattern: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a tree without links, ``**`` matches what glob.glob(recursive=True) does: hidden
    names only where the pattern names them, relative patterns give relative paths."""
    for name in ("7.png", "a/1.png", "a/b/2.png", "a/b/9.jpg", "a/b/c/3.png", "a/.6.png",
                 "a/.h2/5.png", ".hid/x/4.png", "d/8.jpg", "a/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    for text in (pattern, f"{tmp_path}/{pattern}"):
        expected = sorted({m for m in glob.glob(text, recursive=True)
                           if os.path.isfile(m) and is_image_name(m)})
        assert expected and bulk.expand([text]) == expected


def test_a_bad_out_fails_before_the_model_is_even_read(tmp_path: Path) -> None:
    (tmp_path / "preds.csv").write_text("yesterday's results")
    result = run_module("runtime", "predict", "--model", str(tmp_path / "missing.onnx"),
                        str(tmp_path), "--out", str(tmp_path / "preds.csv"))
    assert_clean_failure(result, "--out", "preds.csv exists", "--overwrite")
    assert (tmp_path / "preds.csv").read_text() == "yesterday's results"
