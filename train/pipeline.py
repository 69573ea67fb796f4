"""tf.data input pipelines: stream, shuffle, batch, augment, prefetch.

Image files are decoded by :func:`train.data.load_file` (the runtime's preprocessing) inside
``tf.numpy_function`` in parallel and never accumulate, so memory does not grow with the images
a folder holds (docs/distributed.md lists the small per-file costs that do).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from runtime.spec import ModelSpec
from train.data import SkipLog, Split, load_file

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER_DECODED = 8192  # images held for shuffling after a cache (bounded memory)


def examples(split: Split, spec: ModelSpec, skipped: SkipLog, *, shuffle_seed: int | None = None,
             cache: str | None = None) -> tf.data.Dataset:
    """A split as a dataset of (uint8 image, int64 label), optionally shuffled and cached."""
    if not split.streamed:
        ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        return ds if shuffle_seed is None else ds.shuffle(len(split), seed=shuffle_seed)
    if cache is not None:
        return _shuffled(decoded_cache(split, spec, skipped, cache), len(split), shuffle_seed)
    ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(split), seed=shuffle_seed)  # shuffling names is cheap
    return _decoded(ds, spec, skipped)


def decoded_cache(split: Split, spec: ModelSpec, skipped: SkipLog, cache: str) -> tf.data.Dataset:
    """A streamed split decoded once, then read from ``cache`` ("memory" or a file prefix).

    An in-memory cache belongs to this dataset object: build it once and reuse it every
    epoch (see :func:`training_epochs`), or each epoch decodes and fills a new one.
    """
    ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    return _decoded(ds, spec, skipped).cache("" if cache == "memory" else cache)


def _decoded(paths: tf.data.Dataset, spec: ModelSpec, skipped: SkipLog) -> tf.data.Dataset:
    def decode(path: np.bytes_) -> tuple[np.ndarray, bool]:
        image = load_file(path.decode(), spec, skipped)
        if image is None:
            return np.zeros(spec.input_shape, np.uint8), False
        return image, True

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        image, ok = tf.numpy_function(decode, [path], [tf.uint8, tf.bool], stateful=False)
        image.set_shape(spec.input_shape)
        ok.set_shape(())
        return image, label, ok

    # Named functions, not two lambdas on one line: AutoGraph cannot tell those apart and
    # prints a page of warnings for each dataset built.
    def decodable(image: tf.Tensor, label: tf.Tensor, ok: tf.Tensor) -> tf.Tensor:
        return ok

    def without_flag(image: tf.Tensor, label: tf.Tensor, ok: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return image, label

    ds = paths.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.filter(decodable).map(without_flag)


def _shuffled(ds: tf.data.Dataset, size: int, seed: int | None) -> tf.data.Dataset:
    if seed is None:
        return ds
    return ds.shuffle(min(size, SHUFFLE_BUFFER_DECODED), seed=seed)


def training_batches(split: Split, spec: ModelSpec, skipped: SkipLog, *, batch_size: int,
                     seed: int, augmenter: object | None, cache: str | None,
                     keep_remainder: bool = False,
                     mixup: Callable | None = None) -> tf.data.Dataset:
    """Shuffled, augmented float32 batches of one epoch; ``seed`` differs per epoch. The
    last, smaller batch is dropped unless ``keep_remainder``. ``mixup`` (see
    :mod:`train.mixup`), if given, blends each augmented batch and turns its labels into
    soft targets."""
    return _batched(examples(split, spec, skipped, shuffle_seed=seed, cache=cache), batch_size,
                    augmenter, keep_remainder, mixup)


def training_epochs(split: Split, spec: ModelSpec, skipped: SkipLog, *, batch_size: int,
                    seed: int, augmenter: object | None, cache: str | None,
                    keep_remainder: bool = False,
                    mixup: Callable | None = None) -> Callable[[int], tf.data.Dataset]:
    """``epoch -> that epoch's batches``, shuffled with seed ``seed + epoch``; the last,
    smaller batch dropped unless ``keep_remainder``.

    A streamed split's cache is built here once, so later epochs read what the first decoded.
    """
    cached = decoded_cache(split, spec, skipped, cache) if split.streamed and cache else None

    def batches(epoch: int) -> tf.data.Dataset:
        if cached is None:
            return training_batches(split, spec, skipped, batch_size=batch_size,
                                    seed=seed + epoch, augmenter=augmenter, cache=None,
                                    keep_remainder=keep_remainder, mixup=mixup)
        return _batched(_shuffled(cached, len(split), seed + epoch), batch_size, augmenter,
                        keep_remainder, mixup)

    return batches


def _batched(ds: tf.data.Dataset, batch_size: int, augmenter: object | None,
             keep_remainder: bool = False, mixup: Callable | None = None) -> tf.data.Dataset:
    ds = ds.batch(batch_size, drop_remainder=not keep_remainder)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if augmenter is not None:
        # One batch at a time: parallel calls would draw from the layers' random state in
        # whatever order threads run, and --seed would no longer reproduce a run. The batch
        # is augmented in one vectorized call, and prefetch overlaps it with the train step.
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y))
    if mixup is not None:  # after the augmentation, one batch at a time for the same reason
        ds = ds.map(mixup)
    return _with_options(ds.prefetch(AUTOTUNE))


def eval_batches(split: Split, spec: ModelSpec, skipped: SkipLog,
                 batch_size: int) -> tf.data.Dataset:
    """Deterministic float32 batches for validation and testing."""
    ds = examples(split, spec, skipped).batch(batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    return _with_options(ds.prefetch(AUTOTUNE))


def _with_options(ds: tf.data.Dataset) -> tf.data.Dataset:
    # Shard by element across workers: works for in-memory arrays and file lists alike.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)
