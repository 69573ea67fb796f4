"""Data sources, the split, and the one preprocessing shared with the runtime."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import write_color_folder

from runtime.preprocess import prepare, read_image
from runtime.spec import ModelSpec
from train.config import TrainConfig
from train.data import calibration_sample, plan_data, prepare_data
from train.sources import DataError, load_npz, load_source, scan_folder
from train.split import stratified_split


def data_fields(cfg: TrainConfig) -> dict:
    """The options plan_data takes, from a config."""
    return {"arch": cfg.arch, "img_size": cfg.img_size, "color": cfg.color,
            "val_fraction": cfg.val_fraction, "test_fraction": cfg.test_fraction,
            "seed": cfg.seed}


def test_mnist5k_is_real_balanced_digits() -> None:
    source = load_source("mnist5k")
    assert source.images.shape == (5000, 28, 28) and source.images.dtype == np.uint8
    assert np.bincount(source.labels).tolist() == [500] * 10
    assert source.framing == "digit" and source.label_names == tuple("0123456789")
    assert source.images.max() == 255 and source.images.min() == 0


def test_sklearn_digits_are_rescaled_to_pixels() -> None:
    source = load_source("digits")
    assert source.images.shape == (1797, 8, 8) and source.images.max() == 255


def test_npz_in_mnist_layout_and_plain_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 12, 12), dtype=np.uint8)
    y = np.arange(30) % 3
    np.savez(tmp_path / "m.npz", x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    np.savez(tmp_path / "p.npz", x=x, y=y + 5)  # labels need not start at 0
    pooled = load_npz(tmp_path / "m.npz")
    assert len(pooled.images) == 30 and pooled.label_names == ("0", "1", "2")
    plain = load_npz(tmp_path / "p.npz")
    assert plain.label_names == ("5", "6", "7") and plain.labels.max() == 2
    np.savez(tmp_path / "bad.npz", pixels=x)
    with pytest.raises(DataError, match="x_train/y_train"):
        load_npz(tmp_path / "bad.npz")


def test_npz_labels_one_hot_or_column_and_channels_first_images(tmp_path: Path) -> None:
    """Keras's to_categorical labels were flattened into two classes, 0.0 and 1.0, and failed
    as "class '0.0' has 1 image(s)"; channels-first colour failed in the preprocessing with a
    message that named no file."""
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    x = rng.integers(0, 256, (30, 3, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "hot.npz", x=x[:, 0], y=np.eye(3)[y])
    np.savez(tmp_path / "column.npz", x=x[:, 0], y=y[:, None])
    for name in ("hot.npz", "column.npz"):
        source = load_npz(tmp_path / name)
        assert source.label_names == ("0", "1", "2") and np.array_equal(source.labels, y), name
    np.savez(tmp_path / "first.npz", x=x, y=y)
    colour = load_npz(tmp_path / "first.npz")
    assert colour.images.shape == (30, 12, 12, 3)
    assert np.array_equal(colour.images[4, ..., 1], x[4, 1])
    for name, labels, images, match in (
            ("soft.npz", np.full((30, 3), 1 / 3), x[:, 0], r"labels of shape \(30, 3\)"),
            ("nan.npz", np.r_[y[:-1], np.nan], x[:, 0], "NaN"),
            ("two.npz", y, x[:, :2].transpose(0, 2, 3, 1), "neither 1, 3 nor 4 channels"),
            ("scalar.npz", y, np.uint8(7), r"must be \(N, H, W\[, C\]\)")):  # was a TypeError
        np.savez(tmp_path / name, x=images, y=labels)
        with pytest.raises(DataError, match=match) as error:
            load_npz(tmp_path / name)
        assert name in str(error.value)


def test_npz_layouts_are_the_ones_export_reads(tmp_path: Path) -> None:
    """train --data read x_train/y_train and x/y only, while export's --calib-data also read
    images/labels and np.savez(f, x, y)'s arr_0/arr_1: one list now serves both."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 12, 12), dtype=np.uint8)
    y = np.arange(30) % 3
    np.savez(tmp_path / "named.npz", Images=x, Labels=y)  # any case
    np.savez(tmp_path / "positional.npz", x, y)
    for name in ("named.npz", "positional.npz"):
        source = load_npz(tmp_path / name)
        assert np.array_equal(source.images, x) and np.array_equal(source.labels, y), name
    np.savez(tmp_path / "unlabelled.npz", images=x)
    np.savez(tmp_path / "mixed.npz", x_train=x[:20], y_train=y[:20],
             x_test=rng.integers(0, 256, (10, 14, 14), dtype=np.uint8), y_test=y[20:])
    for name, match in (("unlabelled.npz", "images/labels"), ("mixed.npz", "differ in shape")):
        with pytest.raises(DataError, match=match) as error:
            load_npz(tmp_path / name)
        assert name in str(error.value)


def test_channels_first_is_one_rule_for_train_and_export(tmp_path: Path) -> None:
    """RGBA channels-first (N, 4, H, W) trained but export's calibration refused it."""
    from export.calib_data import read_samples

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (30, 4, 12, 12), dtype=np.uint8)
    np.savez(tmp_path / "rgba.npz", x=x, y=np.arange(30) % 3)
    assert load_npz(tmp_path / "rgba.npz").images.shape == (30, 12, 12, 4)
    spec = ModelSpec(labels=("0", "1", "2"), height=12, width=12, color="rgb")
    assert read_samples(tmp_path / "rgba.npz", spec).images.images.shape == (30, 12, 12, 3)


def test_npz_images_in_the_scales_export_reads(tmp_path: Path) -> None:
    """Float 0–1 (x / 255.0, the usual save), −1–1 and int16 images train as the pixels
    export's --calib-data reads them as; a mean/std normalization or NaN is one line."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 12, 12), dtype=np.uint8)
    y = np.arange(30) % 3
    for name, images in (("unit.npz", x / 255.0), ("signed.npz", x / 127.5 - 1),
                         ("wide.npz", x.astype(np.int16))):
        np.savez(tmp_path / name, x=images, y=y)
        assert np.array_equal(load_npz(tmp_path / name).images, x), name
    np.savez(tmp_path / "binary.npz", x=(x > 127).astype(np.uint8), y=y)  # thresholded 0/1
    assert np.array_equal(load_npz(tmp_path / "binary.npz").images, (x > 127) * 255)
    for name, images, match in (("normal.npz", (x - 128.0) / 40, "mean and std"),
                                ("nan.npz", np.where(x > 250, np.nan, x / 255.0), "NaN"),
                                ("text.npz", x.astype(str), "not pixels")):
        np.savez(tmp_path / name, x=images, y=y)
        with pytest.raises(DataError, match=match) as error:
            load_npz(tmp_path / name)
        assert name in str(error.value)


def test_full_mnist_offline_without_cache_names_both_options(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    monkeypatch.setattr("train.sources.KERAS_MNIST_CACHE", tmp_path / "missing.npz")
    with pytest.raises(DataError) as error:
        load_source("mnist")
    assert "--data path/to/mnist.npz" in str(error.value) and "mnist5k" in str(error.value)


def test_full_mnist_from_keras_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cache = tmp_path / "mnist.npz"
    x = np.zeros((40, 28, 28), np.uint8)
    np.savez(cache, x_train=x[:30], y_train=np.arange(30) % 10, x_test=x[30:],
             y_test=np.arange(10))
    monkeypatch.setattr("train.sources.KERAS_MNIST_CACHE", cache)
    source = load_source("mnist")
    assert source.name == "mnist" and len(source.images) == 40 and source.framing == "digit"


def test_folder_needs_two_classes_and_images(tmp_path: Path) -> None:
    (tmp_path / "one" / "cats").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "one" / "cats" / "a.png"), np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match="at least two"):
        scan_folder(tmp_path / "one")
    (tmp_path / "one" / "dogs").mkdir()
    with pytest.raises(DataError, match="'dogs' has no"):
        scan_folder(tmp_path / "one")
    with pytest.raises(DataError, match="no such folder"):
        load_source(str(tmp_path / "nowhere"))


def test_a_folder_whose_name_holds_a_plus_is_one_source(tmp_path: Path) -> None:
    """`--data cats+dogs` was split into `cats` and `dogs` even when cats+dogs is the folder."""
    for name in ("cats", "dogs"):
        (tmp_path / "cats+dogs" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "cats+dogs" / name / "a.png"), np.zeros((5, 5), np.uint8))
    source = load_source(str(tmp_path / "cats+dogs"))
    assert source.label_names == ("cats", "dogs") and source.parts is None
    with pytest.raises(DataError, match="no such folder"):  # no such folder: still a join
        load_source(str(tmp_path / "cats") + "+mnist5k")


def test_split_is_disjoint_complete_stratified_and_seeded() -> None:
    labels = np.repeat(np.arange(10), 500)
    split = stratified_split(labels, 0.1, 0.15, seed=3)
    parts = [split.train, split.val, split.test]
    everything = np.concatenate(parts)
    assert len(everything) == len(labels) == len(np.unique(everything))  # disjoint and complete
    assert set(split.test).isdisjoint(split.train) and set(split.test).isdisjoint(split.val)
    assert np.bincount(labels[split.test]).tolist() == [75] * 10
    assert np.bincount(labels[split.val]).tolist() == [50] * 10
    again = stratified_split(labels, 0.1, 0.15, seed=3)
    assert np.array_equal(again.test, split.test)
    assert not np.array_equal(stratified_split(labels, 0.1, 0.15, seed=4).test, split.test)


def test_split_rejects_tiny_classes_and_bad_fractions() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        stratified_split(np.array([0, 0, 1, 1, 1]), 0.1, 0.1, seed=0)
    with pytest.raises(ValueError, match="sum to less than 1"):
        stratified_split(np.arange(30) % 3, 0.6, 0.5, seed=0)


def test_calibration_sample_comes_from_training_split_and_covers_classes() -> None:
    cfg = TrainConfig(data="mnist5k")
    source = load_source("mnist5k")
    data = prepare_data(source, plan_data(source, **data_fields(cfg)))
    sample = calibration_sample(data.train, 100, seed=cfg.seed)
    assert len(sample) == 100 and set(sample.labels.tolist()) == set(range(10))
    train_bytes = {image.tobytes() for image in data.train.images}
    assert all(image.tobytes() in train_bytes for image in sample.images)


def test_streamed_folder_skips_and_lists_the_corrupt_file(tmp_path: Path) -> None:
    from train.pipeline import examples

    root = write_color_folder(tmp_path / "shapes", per_class=10)
    source = load_source(str(root))
    data = prepare_data(source, plan_data(source, **data_fields(TrainConfig(data=str(root)))))
    assert data.spec.color == "rgb" and data.spec.input_shape == (28, 28, 3)
    seen = sum(len(list(examples(split, data.spec, data.skipped)))
               for split in (data.train, data.val, data.test))
    assert seen == 30  # 31 files, one corrupt
    skipped = data.skipped.as_list()
    assert [Path(s["path"]).name for s in skipped] == ["broken.png"]


def test_training_pipeline_and_runtime_see_identical_pixels(tmp_path: Path) -> None:
    """The pixels tf.data feeds the model are the ones the runtime computes for that file."""
    from train.data import SkipLog, Split
    from train.pipeline import examples

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (77, 53, 3), dtype=np.uint8)
    path = tmp_path / "odd.png"
    cv2.imwrite(str(path), image)
    for color, size in (("grayscale", 28), ("rgb", 32)):
        spec = ModelSpec(labels=("a", "b"), height=size, width=size, color=color)
        split = Split(labels=np.array([0]), paths=np.array([str(path)]))
        (trained_on, _), = list(examples(split, spec, SkipLog()).as_numpy_iterator())
        at_runtime = prepare(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), spec)
        assert trained_on.dtype == np.uint8 and np.array_equal(trained_on, at_runtime)
        assert np.array_equal(trained_on, prepare(read_image(path), spec))


def test_a_split_smaller_than_the_batch_trains_in_one_batch(caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    """A 40-image folder (30 to train) stopped with "fewer than --batch-size 32"; it now
    trains in batches of what there is, said once, still divisible over the replicas."""
    from runtime.errors import EdgeCNNError
    from train.run import fitted_batch

    assert fitted_batch(32, 1000, 1) == 32
    with caplog.at_level("WARNING", logger="train.run"):
        assert fitted_batch(32, 30, 1) == 30
    assert "30 images, fewer than --batch-size 32" in caplog.text
    assert fitted_batch(32, 31, 2) == 30
    for batch, images, replicas, needle in ((33, 1000, 2, "divide evenly"),
                                            (32, 1, 2, "fewer than the 2 replicas")):
        with pytest.raises(EdgeCNNError, match=needle):
            fitted_batch(batch, images, replicas)


def test_a_split_in_one_batch_trains_on_what_decodes(tmp_path: Path) -> None:
    """A fitted batch holds the whole split; a truncated file in it left no full batch, so
    a 40-image folder with one bad download stopped with "produced no batch"."""
    from train.data import SkipLog, Split
    from train.pipeline import training_epochs

    paths = []
    for n in range(3):
        paths.append(tmp_path / f"{n}.png")
        cv2.imwrite(str(paths[-1]), np.full((9, 9), 40 * n, np.uint8))
    paths[1].write_bytes(paths[1].read_bytes()[:60])  # a header, then nothing
    spec = ModelSpec(labels=("a", "b"), height=12, width=12, color="grayscale")
    split = Split(labels=np.array([0, 1, 0]), paths=np.array([str(p) for p in paths]))

    def batch_sizes(keep_remainder: bool) -> list[int]:
        epochs = training_epochs(split, spec, SkipLog(), batch_size=3, seed=0, augmenter=None,
                                 cache=None, keep_remainder=keep_remainder)
        return [len(labels) for _, labels in epochs(0).as_numpy_iterator()]

    assert batch_sizes(True) == [2]
    assert batch_sizes(False) == []  # a larger split's last, smaller batch: dropped as before
