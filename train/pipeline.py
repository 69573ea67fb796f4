"""tf.data input pipelines: stream, shuffle, batch, augment, prefetch.

Image files are decoded by :func:`train.data.load_file` (the runtime's preprocessing) inside
``tf.numpy_function`` in parallel, so memory stays flat however many images a folder holds.
"""

from __future__ import annotations

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

    ds = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    if shuffle_seed is not None and cache is None:
        ds = ds.shuffle(len(split), seed=shuffle_seed)  # shuffling names is cheap

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

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.filter(lambda image, label, ok: ok).map(lambda image, label, ok: (image, label))
    if cache is not None:
        ds = ds.cache("" if cache == "memory" else cache)
        if shuffle_seed is not None:
            ds = ds.shuffle(min(len(split), SHUFFLE_BUFFER_DECODED), seed=shuffle_seed)
    return ds


def training_batches(split: Split, spec: ModelSpec, skipped: SkipLog, *, batch_size: int,
                     seed: int, augmenter: object | None, cache: str | None) -> tf.data.Dataset:
    """Shuffled, augmented float32 batches of one epoch; ``seed`` differs per epoch."""
    ds = examples(split, spec, skipped, shuffle_seed=seed, cache=cache)
    ds = ds.batch(batch_size, drop_remainder=True)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if augmenter is not None:
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=AUTOTUNE)
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
