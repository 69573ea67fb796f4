"""One training loop for every tf.distribute strategy, with per-epoch checkpoints.

Keras 3's ``model.fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), so
training runs a custom step through ``strategy.run``. The same code serves a laptop (the
default strategy), several GPUs and several machines, so the runs cannot drift apart.

Everything needed to continue after a crash (weights, optimizer, epoch, early-stopping
state, best weights, history) is one ``tf.train.Checkpoint``, saved after every epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from runtime.errors import BundleError
from train.errors import DataError, RunFailed

log = logging.getLogger(__name__)
SUM = tf.distribute.ReduceOp.SUM
DIVERGED_OVER_CHANCE = 1000.0  # a mean loss this many times ln(classes) means diverged
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


@dataclass
class FitResult:
    history: dict[str, list[float]]
    best_epoch: int          # 1-based epoch whose weights were kept
    resumed_after: int       # epochs finished before this process started (0: fresh run)
    stopped_early: bool


class _State:
    """Loop state that must survive a crash, as variables a checkpoint can hold."""

    def __init__(self, model: keras.Model) -> None:
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # finished epochs
        self.best_loss = tf.Variable(math.inf, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.stopped = tf.Variable(False, trainable=False)
        self.history = tf.Variable(json.dumps({k: [] for k in HISTORY_KEYS}), trainable=False)
        self.best_weights = [tf.Variable(w.numpy(), trainable=False) for w in model.weights]

    def trackables(self) -> dict[str, object]:
        return {"epoch": self.epoch, "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "wait": self.wait, "stopped": self.stopped, "history": self.history,
                "best_weights": self.best_weights}


def fit(*, model: keras.Model, optimizer: keras.optimizers.Optimizer,
        strategy: tf.distribute.Strategy, train_batches: Callable[[int], tf.data.Dataset],
        val_batches: tf.data.Dataset, epochs: int, steps_per_epoch: int, global_batch: int,
        patience: int, checkpoint_dir: Path, checkpoint_write_dir: Path,
        verbose: bool, resume: bool = True, label_smoothing: float = 0.0,
        keep: str = "best") -> FitResult:
    """Train until ``epochs`` or early stopping; resume from ``checkpoint_dir`` if it holds one
    (and ``resume`` is true).

    ``train_batches(epoch)`` returns that epoch's shuffled batches (seeded per epoch, so a
    resumed run sees the same order it would have). Every worker must call this; only the
    chief's ``checkpoint_write_dir`` equals ``checkpoint_dir``.

    An optimizer with ``use_ema`` trains the raw weights but validates (and so keeps as the
    best) its moving average of them. ``label_smoothing`` softens the training targets only
    (soft targets, a batch's second element of two dimensions from ``--mixup``, as well);
    the validation loss that early stopping reads is the plain cross-entropy. ``keep``:
    ``best`` returns the weights of the lowest validation loss, ``last`` the final epoch's.
    """
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    # Plain (not mirrored) variables: every worker updates them identically from all-reduced
    # figures, and MultiWorkerMirroredStrategy cannot broadcast the string-valued history.
    state = _State(model)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, **state.trackables())
    manager = tf.train.CheckpointManager(checkpoint, str(checkpoint_write_dir), max_to_keep=1)
    latest = tf.train.latest_checkpoint(str(checkpoint_dir)) if resume else None
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    resumed_after = int(state.epoch.numpy())
    _check_workers_agree(strategy, resumed_after, checkpoint_dir)
    if resumed_after and verbose:
        log.info("resuming from %s: %d epoch(s) already finished", latest, resumed_after)

    train_step, eval_step = _make_steps(model, optimizer, strategy, global_batch,
                                        label_smoothing)
    history = json.loads(state.history.numpy().decode())
    while int(state.epoch.numpy()) < epochs and not bool(state.stopped.numpy()):
        epoch = int(state.epoch.numpy())
        started = time.perf_counter()
        progress = keras.utils.Progbar(steps_per_epoch, verbose=_progress_mode(verbose),
                                       stateful_metrics=["loss", "accuracy"], unit_name="step")
        if verbose:
            log.info("epoch %d/%d", epoch + 1, epochs)
        totals = np.zeros(3)
        dataset = strategy.experimental_distribute_dataset(train_batches(epoch))
        for step, batch in enumerate(dataset, start=1):
            totals += np.array([float(v) for v in train_step(batch)])
            progress.update(step, [("loss", totals[0] / totals[2]),
                                   ("accuracy", totals[1] / totals[2])], finalize=False)
        if totals[2] == 0:
            raise DataError("the training split produced no batch: it has fewer readable "
                            "images than --batch-size")
        if _diverged(totals[0] / totals[2], model):
            raise RunFailed(f"training diverged in epoch {epoch + 1} (loss "
                            f"{totals[0] / totals[2]:.3g}); lower --lr or use --optimizer adam")
        with _averaged_weights(model, optimizer):
            val_loss, val_accuracy = _evaluate(eval_step, strategy, val_batches)
            _early_stopping(state, model, val_loss, epoch + 1, patience, keep == "last")
        record = {"loss": totals[0] / totals[2], "accuracy": totals[1] / totals[2],
                  "val_loss": val_loss, "val_accuracy": val_accuracy,
                  "lr": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
                  "seconds": time.perf_counter() - started}
        for key in HISTORY_KEYS:
            history[key].append(record[key])
        progress.update(steps_per_epoch, [("loss", record["loss"]),
                                          ("accuracy", record["accuracy"]),
                                          ("val_loss", val_loss), ("val_accuracy", val_accuracy)],
                        finalize=True)
        state.epoch.assign(epoch + 1)
        state.history.assign(json.dumps(history))
        manager.save(checkpoint_number=epoch + 1)
        if checkpoint_write_dir != checkpoint_dir:  # non-chief workers save to a throwaway dir
            shutil.rmtree(checkpoint_write_dir, ignore_errors=True)
        if bool(state.stopped.numpy()) and verbose:
            log.info("early stopping: val_loss has not improved for %d epochs", patience)

    for variable, best in zip(model.weights, state.best_weights, strict=True):
        variable.assign(best)
    return FitResult(history=history, best_epoch=int(state.best_epoch.numpy()),
                     resumed_after=resumed_after, stopped_early=bool(state.stopped.numpy()))


def _check_workers_agree(strategy: tf.distribute.Strategy, epoch: int,
                         checkpoint_dir: Path) -> None:
    """Every worker must resume from the same epoch, or their collectives would not line up.

    A worker that cannot read the chief's checkpoints (``--checkpoint-dir`` not on shared
    storage) would otherwise start from scratch beside resumed peers. The sum and the sum of
    squares of the epoch over all replicas equal ``n·e`` and ``n·e²`` only if all agree.
    """
    if strategy.num_replicas_in_sync == 1:
        return
    value = tf.constant([epoch, epoch * epoch], tf.float64)

    @tf.function
    def summed() -> tf.Tensor:
        return strategy.reduce(SUM, strategy.run(tf.identity, args=(value,)), axis=None)

    total = summed().numpy()
    n = strategy.num_replicas_in_sync
    if total[0] != n * epoch or total[1] != n * epoch * epoch:
        raise BundleError(f"this worker resumes after epoch {epoch} from {checkpoint_dir}, but "
                          "other workers found different checkpoints; put --checkpoint-dir on "
                          "storage every worker can read, or add --restart")


def _diverged(loss: float, model: keras.Model) -> bool:
    """A loss that is not finite, or orders of magnitude above a uniform guess's (ln K).

    The second catches what the first misses: a learning rate so large that the weights
    explode yet the float32 sums stay finite (1e9 with SGD gives a loss of ~1e31).
    """
    classes = max(int(model.output_shape[-1] or 2), 2)
    return not np.isfinite(loss) or loss > DIVERGED_OVER_CHANCE * math.log(classes)


@contextlib.contextmanager
def _averaged_weights(model: keras.Model, optimizer: keras.optimizers.Optimizer
                      ) -> Iterator[None]:
    """The optimizer's moving average in place of the trainable weights, if it keeps one."""
    if not optimizer.use_ema:
        yield
        return
    raw = [variable.numpy() for variable in model.trainable_variables]
    optimizer._overwrite_model_variables_with_average_value(model.trainable_variables)
    try:
        yield
    finally:
        for variable, value in zip(model.trainable_variables, raw, strict=True):
            variable.assign(value)


def _progress_mode(verbose: bool) -> int:
    """A live bar on a terminal; one line per epoch in logs and CI (no carriage returns)."""
    if not verbose:
        return 0
    return 1 if sys.stdout.isatty() else 2


def _early_stopping(state: _State, model: keras.Model, val_loss: float, epoch: int,
                    patience: int, keep_last: bool = False) -> None:
    if keep_last or val_loss < float(state.best_loss.numpy()):
        state.best_loss.assign(val_loss)
        state.best_epoch.assign(epoch)
        state.wait.assign(0)
        for best, variable in zip(state.best_weights, model.weights, strict=True):
            best.assign(variable)
    else:
        state.wait.assign_add(1)
        if int(state.wait.numpy()) >= patience:
            state.stopped.assign(True)


def _make_steps(model: keras.Model, optimizer: keras.optimizers.Optimizer,
                strategy: tf.distribute.Strategy, global_batch: int,
                label_smoothing: float = 0.0) -> tuple[Callable, Callable]:
    """Compiled distributed steps returning (summed loss, correct, count) over all replicas."""

    def sums(labels: tf.Tensor, probs: tf.Tensor, smoothing: float = 0.0,
             ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        if labels.shape.rank == 2:  # --mixup's soft targets; accuracy: the larger share
            per_example = keras.losses.categorical_crossentropy(
                labels, probs, label_smoothing=smoothing)
            labels = tf.argmax(labels, axis=-1)
        elif smoothing:
            targets = tf.one_hot(tf.cast(labels, tf.int32), tf.shape(probs)[-1])
            per_example = keras.losses.categorical_crossentropy(
                targets, probs, label_smoothing=smoothing)
        else:
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probs)
        hits = tf.equal(tf.argmax(probs, axis=-1), tf.cast(labels, tf.int64))
        return per_example, tf.reduce_sum(tf.cast(hits, tf.float32)), \
            tf.cast(tf.size(labels), tf.float32)

    def replica_train(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example, correct, count = sums(labels, probs, label_smoothing)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return tf.reduce_sum(per_example), correct, count

    def replica_eval(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        per_example, correct, count = sums(labels, model(images, training=False))
        return tf.reduce_sum(per_example), correct, count

    @tf.function
    def train_step(batch: tuple[tf.Tensor, tf.Tensor]) -> list[tf.Tensor]:
        results = strategy.run(replica_train, args=batch)
        return [strategy.reduce(SUM, value, axis=None) for value in results]

    @tf.function
    def eval_step(batch: tuple[tf.Tensor, tf.Tensor]) -> list[tf.Tensor]:
        results = strategy.run(replica_eval, args=batch)
        return [strategy.reduce(SUM, value, axis=None) for value in results]

    return train_step, eval_step


def _evaluate(eval_step: Callable, strategy: tf.distribute.Strategy,
              batches: tf.data.Dataset) -> tuple[float, float]:
    totals = np.zeros(3)
    for batch in strategy.experimental_distribute_dataset(batches):
        totals += np.array([float(v) for v in eval_step(batch)])
    if totals[2] == 0:
        raise DataError("the validation split has no readable image")
    return totals[0] / totals[2], totals[1] / totals[2]


def predict(model: keras.Model, batches: Iterable[tuple[object, object]],
            keep: Callable[[np.ndarray], np.ndarray] | None = None,
            ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels for every (images, labels) batch (one process, no strategy).

    Batches may be tensors or numpy slices; images of any dtype are cast to float32 here.
    ``keep`` reduces each batch's probabilities (to top-k indices, say) before they are
    collected, so memory need not grow with images × classes.
    """
    forward = tf.function(lambda x: model(tf.cast(x, tf.float32), training=False))
    kept, labels = [], []
    for images, batch_labels in batches:
        probs = forward(images).numpy()
        kept.append(probs if keep is None else keep(probs))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(kept), np.concatenate(labels)
