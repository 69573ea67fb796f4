"""Recipe knobs: elastic distortion, cutout, the optimizer's weight average, and how the loop
uses it."""

from __future__ import annotations

import numpy as np
import pytest


def _bars(batch: int = 4) -> np.ndarray:
    images = np.zeros((batch, 28, 28, 1), np.float32)
    images[:, 4:24, 12:16] = 255.0
    return images


def test_elastic_moves_strokes_reproducibly_and_only_while_training() -> None:
    from train.elastic import RandomElastic

    images = _bars()
    first = RandomElastic(34.0, seed=3)(images, training=True).numpy()
    again = RandomElastic(34.0, seed=3)(images, training=True).numpy()
    assert first.shape == images.shape and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)  # the seed fixes the field
    assert np.abs(first - images).mean() > 1.0  # strokes moved
    assert not np.array_equal(first[0], first[1])  # a field per image
    assert 0.7 < first.sum() / images.sum() < 1.3  # moved, not erased or smeared
    assert first.min() >= 0.0 and first.max() <= 255.5
    np.testing.assert_array_equal(RandomElastic(34.0, seed=3)(images, training=False), images)


def test_augmenter_has_elastic_only_on_request() -> None:
    from train.models import build_augmenter

    def names(elastic: float) -> list[str]:
        augmenter = build_augmenter(seed=1, flip=False, fill="constant", elastic=elastic)
        return [type(layer).__name__ for layer in augmenter.layers]

    assert names(0.0) == ["RandomRotation", "RandomTranslation", "RandomZoom"]
    unzoomed = build_augmenter(seed=1, flip=False, fill="constant", zoom=0.0)
    assert [type(layer).__name__ for layer in unzoomed.layers] == ["RandomRotation",
                                                                  "RandomTranslation"]
    assert names(34.0)[0] == "RandomElastic"
    unrotated = build_augmenter(seed=1, flip=False, fill="constant", rotation=0.0)
    assert [type(layer).__name__ for layer in unrotated.layers] == ["RandomTranslation",
                                                                   "RandomZoom"]
    wider = build_augmenter(seed=1, flip=False, fill="constant", rotation=15.0)
    assert wider.layers[0].factor == pytest.approx((-15 / 360, 15 / 360))
    cutout = build_augmenter(seed=1, flip=False, fill="constant", cutout=0.25)
    assert type(cutout.layers[-1]).__name__ == "RandomCutout"


def test_cutout_blacks_out_one_square_per_image_and_only_while_training() -> None:
    from train.cutout import RandomCutout

    images = np.full((64, 28, 28, 1), 255.0, np.float32)
    first = RandomCutout(0.25, seed=3)(images, training=True).numpy()
    np.testing.assert_array_equal(first, RandomCutout(0.25, seed=3)(images, training=True))
    assert set(np.unique(first)) == {0.0, 255.0}  # erased or untouched, nothing in between
    erased = (first == 0).reshape(64, -1).sum(1)
    assert erased.max() == 49 and 0 < erased.min() < 49  # 7×7, clipped at the border
    for image in first[..., 0] == 0:  # one square: its rows and columns are contiguous
        rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
        assert image.sum() == len(rows) * len(cols) == (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    assert len({tuple(np.argwhere(image)[0]) for image in first[..., 0] == 0}) > 20
    np.testing.assert_array_equal(RandomCutout(0.25, seed=3)(images, training=False), images)


def test_stroke_makes_pens_bolder_or_thinner_and_only_while_training() -> None:
    from train.models import build_augmenter
    from train.stroke import RandomStroke

    images = _bars(256)  # a bar 4 pixels wide: 80 ink pixels a row span
    first = RandomStroke(1.0, seed=3)(images, training=True).numpy()
    np.testing.assert_array_equal(first, RandomStroke(1.0, seed=3)(images, training=True))
    ink = first.sum(axis=(1, 2, 3)) / images[0].sum()
    # Full weight: from the erosion (2 of 4 columns, 18 of 20 rows) to the dilation (6 × 22).
    assert ink.min() >= 2 * 18 / 80 - 1e-6 and ink.max() <= 6 * 22 / 80 + 1e-6
    assert (ink < 0.8).any() and (ink > 1.2).any()  # some thinner, some bolder
    assert first.min() >= 0.0 and first.max() <= 255.0
    # The bar stays where it was: the pen changes, not the digit.
    assert (first[:, :, :10] == 0).all() and (first[:, :, 18:] == 0).all()
    np.testing.assert_array_equal(RandomStroke(1.0, seed=3)(images, training=False), images)
    thin = np.zeros((64, 28, 28, 1), np.float32)
    thin[:, 4:24, 13:15] = 255.0  # a fine liner's 2-pixel stroke: thinned, never erased
    assert (RandomStroke(1.0, seed=3)(thin, training=True).numpy().reshape(64, -1).max(1)
            >= 0.35 * 255 - 1e-3).all()
    stroke = build_augmenter(seed=1, flip=False, fill="constant", stroke=0.5)
    assert type(stroke.layers[0]).__name__ == "RandomStroke"


def test_mixup_blends_targets_only_on_request() -> None:
    """--mixup: each target a blend of two one-hot rows (sums to 1, mostly not one-hot),
    the images blended alike, reproducible by seed; off by default."""
    import tensorflow as tf

    from train import pipeline
    from train.config import TrainConfig
    from train.mixup import Mixup
    from train.run import make_mixup

    assert TrainConfig().mixup == 0.0 and make_mixup(0.0, 10, seed=1) is None
    images = np.repeat(np.arange(32, dtype=np.float32), 28 * 28).reshape(32, 28, 28, 1)
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(32) % 10))

    def blended() -> list[tuple[np.ndarray, np.ndarray]]:
        mixup = Mixup(0.4, 10, seed=3)
        return [(x.numpy(), y.numpy()) for x, y in pipeline._batched(ds, 16, None,
                                                                     mixup=mixup)]

    first = blended()
    for (x, y), (x2, y2) in zip(first, blended(), strict=True):
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(x, x2)
    x, y = first[0]
    assert y.shape == (16, 10)
    np.testing.assert_allclose(y.sum(1), 1.0, rtol=1e-6)
    assert (y.max(1) < 0.999).sum() >= 8  # blends, not one-hot rows
    assert ((y > 1e-6).sum(1) <= 2).all()  # of two digits at most
    assert not np.array_equal(first[0][1], first[1][1])  # a fresh draw per batch
    plain = [y for _, y in pipeline._batched(ds, 16, None)]
    assert plain[0].shape == (16,)  # off: the labels as they were


@pytest.mark.parametrize(("ema", "steps", "momentum"), [
    (0.999, 100_000, 0.999),
    (0.999, 50, 0.9),  # a short run averages over at most a fifth of its steps
])
def test_weight_average_momentum(ema: float, steps: int, momentum: float) -> None:
    from train.run import make_optimizer

    optimizer = make_optimizer("adam", 1e-3, steps, ema=ema)
    assert optimizer.use_ema and optimizer.ema_momentum == pytest.approx(momentum)
    assert not make_optimizer("sgd", 1e-3, steps).use_ema


def test_weight_decay_shrinks_weights_apart_from_the_gradient() -> None:
    """Decoupled: with a zero gradient Adam moves nothing, so all the change is the decay,
    a share ``weight_decay`` of the current rate each step."""
    import keras

    from train.run import make_optimizer

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    kernel = model.trainable_variables[0]
    kernel.assign(np.ones(kernel.shape, np.float32))
    optimizer = make_optimizer("adam", 0.1, 10_000, weight_decay=0.5)
    zeros = [np.zeros(v.shape, np.float32) for v in model.trainable_variables]
    optimizer.apply_gradients(zip(zeros, model.trainable_variables, strict=True))
    np.testing.assert_allclose(kernel.numpy(), 1 - 0.1 * 0.5, rtol=1e-5)
    assert make_optimizer("adam", 0.1, 10_000).weight_decay is None


def test_conv_dropout_follows_each_pooling_and_only_while_training() -> None:
    from train.models import build_model

    model = build_model("twoconv", (28, 28, 1), 10, conv_dropout=0.5)
    names = [layer.name for layer in model.layers]
    assert names.index("pool1_dropout") == names.index("pool1") + 1
    assert names.index("pool2_dropout") == names.index("pool2") + 1
    plain = build_model("twoconv", (28, 28, 1), 10)
    assert not any(layer.name == "pool1_dropout" for layer in plain.layers)
    assert plain.count_params() == model.count_params()  # no weights of its own
    images = np.random.default_rng(0).uniform(0, 255, (2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_array_equal(model(images, training=False), plain_like(model, images))
    assert not np.array_equal(model(images, training=True), model(images, training=False))


def plain_like(model, images: np.ndarray) -> np.ndarray:
    """The model's inference output with its dropout layers taken out: what it must equal."""
    import keras

    x = inputs = keras.Input(model.input_shape[1:])
    for layer in model.layers[1:]:
        if not layer.name.endswith("dropout"):
            x = layer(x)
    return keras.Model(inputs, x)(images).numpy()


def test_validation_sees_the_average_and_training_resumes_from_the_raw_weights() -> None:
    import keras

    from train.loop import _averaged_weights
    from train.run import make_optimizer

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = make_optimizer("adam", 0.1, 10_000, ema=0.999)
    optimizer.build(model.trainable_variables)
    for _ in range(3):
        grads = [np.ones(v.shape, np.float32) for v in model.trainable_variables]
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    raw = [v.numpy() for v in model.trainable_variables]
    average = [v.numpy() for v in optimizer._model_variables_moving_average]
    assert not np.allclose(raw[0], average[0])
    with _averaged_weights(model, optimizer):
        for variable, value in zip(model.trainable_variables, average, strict=True):
            np.testing.assert_array_equal(variable.numpy(), value)
    for variable, value in zip(model.trainable_variables, raw, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_repeat_weighs_one_part_of_joined_data_more() -> None:
    from runtime.errors import EdgeCNNError
    from train.data import Split
    from train.photos import repeated

    split = Split(labels=np.arange(5), images=np.zeros((5, 2, 2, 1), np.uint8),
                  parts=np.array(["mnist5k", "printed", "mnist5k", "printed", "printed"]))
    assert repeated(split, "") is split
    twice = repeated(split, "mnist5k=2")
    assert twice.labels.tolist() == [0, 0, 1, 2, 2, 3, 4]
    assert twice.parts.tolist().count("mnist5k") == 4
    none = repeated(split, "mnist5k=0")  # validated and tested only, never trained on
    assert none.labels.tolist() == [1, 3, 4] and set(none.parts) == {"printed"}
    for bad in ("digits=2", "mnist5k=-1", "mnist5k=x"):
        with pytest.raises(EdgeCNNError, match="--repeat"):
            repeated(split, bad)


def test_a_run_recorded_before_an_option_existed_resumes(tmp_path) -> None:
    """A record without an option added later (whose default is what the run did) resumes;
    a real difference is still refused."""
    from runtime.errors import BundleError
    from runtime.files import write_json
    from train.config import TrainConfig
    from train.run import refuse_other_options

    key = TrainConfig().resume_key()
    old = {k: v for k, v in key.items() if k not in ("stroke", "photograph", "cutout")}
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "ckpt-3.index").write_text("")
    write_json(tmp_path / "run.json", old)
    refuse_other_options(key, record=tmp_path / "run.json", checkpoint_dir=checkpoints)
    with pytest.raises(BundleError, match=r"stroke 0\.0 → 0\.5"):
        refuse_other_options(key | {"stroke": 0.5}, record=tmp_path / "run.json",
                             checkpoint_dir=checkpoints)
