"""Class folders as users have them: symbolic links, odd formats, duplicates, unused files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_clean_failure, run_module

from runtime.bundle import load_spec
from train.data import plan_data, prepare_data
from train.sources import DataError, scan_folder


def write_classes(root: Path, names: tuple[str, ...] = ("cats", "dogs", "owls"),
                  per_class: int = 6, suffix: str = ".png") -> Path:
    """``per_class`` small grey images per class, each class a different brightness."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = np.full((12, 12), 40 + 80 * c, np.uint8)
            image[rng.integers(0, 12), :] = 255
            cv2.imwrite(str(root / name / f"{name}{i}{suffix}"), image)
    return root


def split(root: Path) -> object:
    source = scan_folder(root)
    return prepare_data(source, plan_data(source, arch="twoconv", img_size=28, color="auto",
                                          val_fraction=0.2, test_fraction=0.2, seed=1))


def reasons(source: object) -> dict[str, str]:
    return {Path(u.path).name: u.reason for u in source.unused}  # type: ignore[attr-defined]


def test_loop_link_at_the_top_is_skipped_and_no_file_reaches_two_splits(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "data")
    (root / "loop").symlink_to(".")
    source = scan_folder(root)
    assert source.label_names == ("cats", "dogs", "owls")  # no fourth class
    assert "into the dataset" in reasons(source)["loop"]
    data = split(root)
    files = [os.path.realpath(p) for s in (data.train, data.val, data.test) for p in s.paths]
    assert len(files) == len(set(files)) == 18  # every image once, in one split only
    assert {"path": str(root / "loop"), "reason": reasons(source)["loop"]} in \
        data.skipped.as_list()


def test_links_above_the_dataset_and_back_into_it_are_not_followed(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "data")
    (root / "cats" / "up").symlink_to("../..")              # above the dataset
    (root / "cats" / "again").symlink_to("../dogs")        # into another class
    (root / "cats" / "dog0.png").symlink_to("../dogs/dogs0.png")  # one file, twice
    (root / "cats" / "gone.png").symlink_to("nowhere.png")  # broken
    source = scan_folder(root)
    why = reasons(source)
    assert "above the dataset" in why["up"]
    assert "into the dataset" in why["again"] and "into the dataset" in why["dog0.png"]
    assert "broken" in why["gone.png"]
    assert np.bincount(source.labels).tolist() == [6, 6, 6]


def test_links_out_of_the_dataset_are_followed_once(tmp_path: Path) -> None:
    store = write_classes(tmp_path / "store", names=("foxes",))
    root = write_classes(tmp_path / "data", names=("cats", "dogs"))
    (root / "foxes").symlink_to(store / "foxes")           # a class kept elsewhere
    (root / "cats" / "more").symlink_to(store / "foxes")   # the same folder again
    os.link(root / "dogs" / "dogs0.png", root / "dogs" / "hardlink.png")
    source = scan_folder(root)
    assert source.label_names == ("cats", "dogs", "foxes")
    assert np.bincount(source.labels).tolist() == [6, 6, 6]
    why = reasons(source)
    assert "already read" in why["more"] and "same file as" in why["hardlink.png"]
    real = [os.stat(p).st_ino for p in source.paths]
    assert len(real) == len(set(real))


def test_class_folder_linking_to_another_class_is_an_error_naming_both(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "data")
    (root / "kittens").symlink_to("cats")
    with pytest.raises(DataError, match="'kittens' is a link to class folder 'cats'"):
        scan_folder(root)
    result = run_module("train", "--data", str(root), "--out", str(tmp_path / "b"))
    assert_clean_failure(result, "'kittens'", "'cats'")


def test_every_format_opencv_reads_is_used_and_the_rest_listed(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "data", names=("cats", "dogs"), per_class=3)
    image = np.full((12, 12, 3), 90, np.uint8)
    for suffix in (".webp", ".gif", ".tiff", ".ppm"):
        assert cv2.imwrite(str(root / "cats" / f"extra{suffix}"), image), suffix
    png = (root / "dogs" / "dogs0.png").read_bytes()
    (root / "dogs" / "no_suffix").write_bytes(png)          # an image, whatever its name
    (root / "dogs" / "notes.txt").write_text("not an image")
    (root / "dogs" / ".DS_Store").write_bytes(b"\0\0")
    (root / "README.md").write_text("top-level file")
    source = scan_folder(root)
    used = {Path(p).name for p in source.paths}
    assert {"extra.webp", "extra.gif", "extra.tiff", "extra.ppm", "no_suffix"} <= used
    why = reasons(source)
    assert "not an image format OpenCV reads (.txt)" in why["notes.txt"]
    assert "hidden" in why[".DS_Store"] and "outside any class folder" in why["README.md"]
    assert len(source.paths) == 11 and len(source.unused) == 3


def test_too_few_images_names_the_class_folder(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "data")
    for extra in sorted((root / "owls").iterdir())[2:]:
        extra.unlink()
    result = run_module("train", "--data", str(root), "--out", str(tmp_path / "b"))
    assert_clean_failure(result, "class 'owls' has 2 image(s)", "at least 3")


def test_class_with_only_unreadable_files_is_named_with_the_reason(tmp_path: Path) -> None:
    root = write_classes(tmp_path / "data")
    for file in (root / "owls").iterdir():
        file.unlink()
    (root / "owls" / "a.txt").write_text("text")
    result = run_module("train", "--data", str(root), "--out", str(tmp_path / "b"))
    assert_clean_failure(result, "'owls' has no image OpenCV can read", "a.txt")


@pytest.mark.slow
def test_split_sizes_count_only_the_images_used(tmp_path: Path) -> None:
    """An empty file and a non-image are listed, and no split size counts them."""
    from train.__main__ import main

    root = write_classes(tmp_path / "data", per_class=10)
    (root / "cats" / "empty.png").write_bytes(b"")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "owls" / "list.csv").write_text("a,b\n")
    (root / "loop").symlink_to(".")
    out = tmp_path / "bundle"
    assert main(["--data", str(root), "--out", str(out), "--epochs", "1", "--batch-size", "4",
                 "--calib-size", "10", "--val-fraction", "0.2", "--test-fraction", "0.2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    dataset = metrics["dataset"]
    assert dataset["train"] + dataset["val"] + dataset["test"] == 30  # 32 image files, 2 bad
    listed = {Path(s["path"]).name: s["reason"] for s in dataset["skipped"]}
    assert set(listed) == {"empty.png", "broken.png", "list.csv", "loop"}
    assert "empty" in listed["empty.png"] and dataset["skipped_count"] == 4
    spec = load_spec(out)
    assert {k: spec.dataset[k] for k in ("train", "val", "test")} == \
        {k: dataset[k] for k in ("train", "val", "test")}
    assert metrics["test"]["count"] == dataset["test"]
