"""python -m train: the bundle it writes, bad input, and an image-folder run with dense512."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_clean_failure, run_module, write_color_folder

from runtime.bundle import load_images, load_sources, load_spec

BUNDLE_FILES = {"model.keras", "spec.json", "metrics.json", "train_config.json", "eval.npz",
                "calib.npz", "history.png", "confusion_matrix.png"}


def test_bundle_holds_model_spec_metrics_plots_and_sets(trained_bundle: Path) -> None:
    assert {p.name for p in trained_bundle.iterdir()} >= BUNDLE_FILES
    assert not any(p.name.startswith(".") for p in trained_bundle.iterdir())  # no temp files
    assert not (trained_bundle.parent / "bundle.work").exists()  # work folder cleaned up
    spec = load_spec(trained_bundle)
    assert spec.input_shape == (28, 28, 1) and spec.labels == tuple("0123456789")
    assert spec.value_range == (0.0, 255.0) and spec.interpolation == "area"
    assert spec.framing == "digit" and spec.architecture == "twoconv"
    metrics = json.loads((trained_bundle / "metrics.json").read_text())
    sources = metrics["dataset"]["sources"]  # the default data: mnist5k+printed+mnist-extra
    assert sources["mnist5k"] == {"train": 3750, "val": 500, "test": 750}
    assert sum(sources["mnist-extra"].values()) == 5000
    assert spec.dataset == {"name": "mnist5k+printed+mnist-extra", "skipped_count": 0,
                            **{split: sum(s[split] for s in sources.values())
                               for split in ("train", "val", "test")}}
    test = metrics["test"]
    assert test["count"] == spec.dataset["test"] and len(test["per_class"]) == 10
    assert np.array(test["confusion_matrix"]).sum() == test["count"]
    assert test["accuracy"] > 0.9  # four epochs only
    assert set(test["per_class"]["3"]) == {"precision", "recall", "f1", "support"}
    config = json.loads((trained_bundle / "train_config.json").read_text())
    assert config["arch"] == "twoconv" and config["epochs"] == 4 and config["img_size"] == 28
    assert config["filters"] == "32,64" and config["hidden"] == 256
    assert config["convs_per_block"] == 2
    for png in ("history.png", "confusion_matrix.png"):
        assert (trained_bundle / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_set_is_the_test_split_and_never_seen_in_calibration(trained_bundle: Path) -> None:
    images, labels = load_images(trained_bundle / "eval.npz")
    calib, _ = load_images(trained_bundle / "calib.npz")
    sources = load_sources(trained_bundle / "eval.npz")
    handwritten = labels[sources == "mnist5k"]
    assert len(handwritten) == 750 and np.bincount(handwritten).tolist() == [75] * 10
    assert set(sources) == {"mnist5k", "printed", "mnist-extra"}
    assert images.shape[1:] == (28, 28, 1)
    assert calib.shape == (1000, 28, 28, 1)
    assert not {i.tobytes() for i in images} & {c.tobytes() for c in calib}


def test_saved_model_reproduces_reported_accuracy(trained_bundle: Path) -> None:
    import keras

    model = keras.models.load_model(trained_bundle / "model.keras")
    images, labels = load_images(trained_bundle / "eval.npz")
    probs = model.predict(images.astype(np.float32), verbose=0)  # raw pixels: scaling is inside
    metrics = json.loads((trained_bundle / "metrics.json").read_text())
    assert float((probs.argmax(1) == labels).mean()) == pytest.approx(metrics["test"]["accuracy"])
    assert model.layers[1].name == "rescale"


@pytest.mark.parametrize(("args", "needles"), [
    (["--data", "/no/such/dir"], ["/no/such/dir", "mnist5k"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--arch", "vgg16"], ["--arch", "twoconv"]),
    (["--img-size", "2"], ["--img-size"]),
    (["--dropout", "1.5"], ["--dropout"]),
    (["--conv-dropout", "1"], ["--conv-dropout"]),
    (["--weight-decay", "-0.1"], ["--weight-decay"]),
    (["--hidden", "-1"], ["--hidden"]),
    (["--filters", "48"], ["--filters", "two positive"]),
    (["--filters", "0,64"], ["--filters", "two positive"]),
    (["--filters", "²,3"], ["--filters", "two positive"]),  # a digit, but not a decimal one
    (["--ema", "1"], ["--ema"]),
    (["--label-smoothing", "-0.1"], ["--label-smoothing"]),
    (["--shift", "1.5"], ["--shift"]),
    (["--zoom", "-0.1"], ["--zoom"]),
    (["--rotation", "-5"], ["--rotation"]),
    (["--elastic", "-1"], ["--elastic"]),
    (["--cutout", "1"], ["--cutout"]),
    (["--stroke", "1.5"], ["--stroke"]),
    (["--mixup", "-0.2"], ["--mixup"]),
    (["--photograph", "mnist5k"], ["--photograph", "PART=K"]),
    (["--repeat", "mnist5k=-1"], ["--repeat", "PART=K"]),
    (["--photograph", "mnist5k=0"], ["--photograph", "at least 1"]),
    (["--convs-per-block", "3"], ["--convs-per-block"]),
    (["--arch", "dense512", "--convs-per-block", "2"], ["--convs-per-block", "twoconv"]),
    (["--convs-per-block", "2", "--img-size", "12"], ["--img-size", "16"]),
    (["--lr", "abc"], ["--lr"]),
    (["--data", "mnist"], ["mnist.npz", "mnist5k"]),
])
def test_bad_options_fail_in_one_line(args: list[str], needles: list[str], tmp_path: Path) -> None:
    result = run_module("train", "--out", str(tmp_path / "b"), *args,
                        env={"HOME": str(tmp_path)})  # no ~/.keras cache for --data mnist
    assert_clean_failure(result, *needles)
    assert not (tmp_path / "b").exists()


def test_refuses_to_replace_a_bundle_or_a_foreign_folder(trained_bundle: Path,
                                                         tmp_path: Path) -> None:
    before = (trained_bundle / "model.keras").stat().st_mtime_ns
    assert_clean_failure(run_module("train", "--out", str(trained_bundle)), "--overwrite")
    assert (trained_bundle / "model.keras").stat().st_mtime_ns == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert_clean_failure(run_module("train", "--out", str(tmp_path / "mine"), "--overwrite"),
                         "not an edgecnn bundle")


def test_empty_class_folder_is_a_clear_error(tmp_path: Path) -> None:
    root = write_color_folder(tmp_path / "shapes", per_class=4)
    for file in (root / "blue").iterdir():
        file.unlink()
    assert_clean_failure(run_module("train", "--data", str(root), "--out", str(tmp_path / "b")),
                         "'blue' has no")


def test_dense512_on_rgb_folder_of_mixed_sizes_reports_the_corrupt_file(tmp_path: Path) -> None:
    from train.__main__ import main

    root = write_color_folder(tmp_path / "shapes", per_class=40)
    out = tmp_path / "bundle"
    code = main(["--arch", "dense512", "--data", str(root), "--out", str(out), "--epochs", "10",
                 "--batch-size", "16", "--seed", "1"])
    assert code == 0
    spec = load_spec(out)
    assert spec.input_shape == (32, 32, 3) and spec.color == "rgb"
    assert spec.labels == ("blue", "green", "red") and spec.framing == "none"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"]["skipped_count"] == 1
    assert metrics["dataset"]["skipped"][0]["path"].endswith("broken.png")
    assert metrics["test"]["accuracy"] >= 0.9  # colour is easy: a sensible model gets it
    assert metrics["model"]["architecture"] == "dense512"


def test_same_seed_same_model_other_seed_other_model(tmp_path: Path) -> None:
    """--seed fixes split, initial weights, shuffling and augmentation."""
    from train.__main__ import main

    def train(seed: str, name: str) -> dict:
        out = tmp_path / name
        assert main(["--data", "digits", "--epochs", "2", "--seed", seed, "--out", str(out),
                     "--calib-size", "50"]) == 0
        return json.loads((out / "metrics.json").read_text())

    first, again, other = train("5", "a"), train("5", "b"), train("6", "c")
    assert first["training"]["history"]["loss"] == again["training"]["history"]["loss"]
    assert first["test"]["confusion_matrix"] == again["test"]["confusion_matrix"]
    assert (tmp_path / "a" / "eval.npz").read_bytes() == (tmp_path / "b" / "eval.npz").read_bytes()
    assert first["training"]["history"]["loss"] != other["training"]["history"]["loss"]


def test_checkpoint_dir_keeps_files_that_are_not_checkpoints(tmp_path: Path) -> None:
    from train.__main__ import main

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert main(["--data", "digits", "--epochs", "1", "--calib-size", "20", "--out",
                 str(tmp_path / "b"), "--checkpoint-dir", str(folder)]) == 0
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]  # only our checkpoints went


@pytest.mark.slow  # trains until the loss blows up, in a subprocess the hook cannot see into
def test_diverging_training_fails_in_one_line(tmp_path: Path) -> None:
    result = run_module("train", "--data", "digits", "--epochs", "2", "--lr", "1e9",
                        "--optimizer", "sgd", "--out", str(tmp_path / "b"))
    assert_clean_failure(result, "diverged", "--lr", code=1)
    assert not (tmp_path / "b").exists()


@pytest.mark.slow  # starts a training run in a subprocess
def test_folder_of_unreadable_images_fails_in_one_line(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / "junk" / name).mkdir(parents=True)
        for i in range(6):
            (tmp_path / "junk" / name / f"{i}.png").write_bytes(b"not an image")
    result = run_module("train", "--data", str(tmp_path / "junk"), "--epochs", "1",
                        "--batch-size", "1", "--out", str(tmp_path / "b"))
    assert_clean_failure(result, "'a' has no image OpenCV can read", "0.png",
                         "not an image format")
