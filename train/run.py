"""A training run from resolved options to a committed bundle."""

from __future__ import annotations

import contextlib
import logging
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from runtime import bundle as names
from runtime.errors import BundleError, EdgeCNNError, first_line
from runtime.files import read_json, write_json
from runtime.quiet import native_stderr_silenced
from train.bundle import StagedBundle, check_target, work_folder
from train.config import TrainConfig
from train.data import PreparedData, calibration_sample, materialize, prepare_data
from train.errors import RunFailed
from train.sources import DataError, load_source

log = logging.getLogger(__name__)


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and write the bundle. Returns metrics (empty on non-chief workers)."""
    started = time.perf_counter()
    out = Path(cfg.out).resolve()  # "." and "artifacts/" alike have a name and a parent
    check_target(out, cfg.overwrite)
    source = load_source(cfg.data)  # fails fast, before TensorFlow is even imported

    # Heavy imports only once the input is known to be good. The strategy must exist before
    # TensorFlow runs its first op (MultiWorkerMirroredStrategy configures collectives at
    # start-up), so it is made while TensorFlow's start-up lines are still silenced.
    with native_stderr_silenced():
        from train import distribute

        strategy = distribute.make_strategy(cfg.strategy)
    from train.tf_env import import_tensorflow

    import_tensorflow()  # the first op (device set-up), still quiet
    import keras
    import tensorflow as tf

    from train import loop, pipeline
    from train.models import build_augmenter, build_model

    chief = distribute.is_chief(strategy)
    data = prepare_data(cfg, source)
    replicas = strategy.num_replicas_in_sync
    _check_batch(cfg, len(data.train), replicas)
    work = work_folder(out)
    checkpoint_dir = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else work / "checkpoints"
    _prepare_resume(cfg, work, checkpoint_dir, chief)
    # Other workers must save too (saving is collective) but into a private throwaway folder,
    # never inside the chief's work folder, which the chief deletes when it is done.
    write_dir = checkpoint_dir if chief else Path(tempfile.mkdtemp(prefix="edgecnn-ckpt-"))
    log.info("data %s: %d train / %d val / %d test images, %d classes, input %s %s",
             source.name, len(data.train), len(data.val), len(data.test), data.spec.num_classes,
             "x".join(map(str, data.spec.input_shape)), data.spec.color)

    keras.utils.set_random_seed(cfg.seed)
    steps = len(data.train) // cfg.batch_size
    shape, classes = data.spec.input_shape, data.spec.num_classes
    with strategy.scope():
        model = build_model(cfg.arch, shape, classes, activation=cfg.activation,
                            dropout=cfg.dropout, l2=cfg.l2)
        optimizer = _optimizer(cfg, steps)
    augmenter = None
    if cfg.augment:
        fill = "constant" if data.spec.framing == "digit" else "reflect"
        augmenter = build_augmenter(seed=cfg.seed, flip=cfg.flip, fill=fill)
    cache = _cache_path(cfg.cache, work, distribute.worker_name(strategy))

    # Built once, so that a --cache filled in the first epoch serves the later ones.
    train_batches = pipeline.training_epochs(data.train, data.spec, data.skipped,
                                             batch_size=cfg.batch_size, seed=cfg.seed * 1000,
                                             augmenter=augmenter, cache=cache)
    val_batches = pipeline.eval_batches(data.val, data.spec, data.skipped, cfg.batch_size)
    try:
        result = loop.fit(model=model, optimizer=optimizer, strategy=strategy,
                          train_batches=train_batches, val_batches=val_batches,
                          epochs=cfg.epochs, steps_per_epoch=steps, global_batch=cfg.batch_size,
                          patience=cfg.patience, checkpoint_dir=checkpoint_dir,
                          checkpoint_write_dir=write_dir, verbose=chief, resume=not cfg.restart)
    except DataError as exc:  # say which files made a split come up empty
        raise DataError(f"{exc}{_skipped_note(data.skipped.as_list())}") from None
    except tf.errors.UnavailableError as exc:  # a peer stopped sending heartbeats
        raise RunFailed(f"lost contact with another worker ({first_line(exc, 120)}); start "
                        "every worker again with the same command to resume from the last "
                        "finished epoch") from None
    finally:
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)
    if not chief:
        return {}
    if result.best_epoch == 0:
        raise RunFailed("the validation loss never became finite: training diverged; lower "
                        "--lr or use --optimizer adam")

    # A plain copy outside the strategy: the saved model is the same whatever trained it.
    final = build_model(cfg.arch, shape, classes, activation=cfg.activation, dropout=cfg.dropout,
                        l2=cfg.l2)
    final.set_weights(model.get_weights())
    test = materialize(data.test, data.spec, data.skipped)  # held once: it becomes eval.npz
    if not len(test):
        raise DataError("the test split has no readable image"
                        f"{_skipped_note(data.skipped.as_list())}")
    # Slices of that array rather than a tf.data copy of it (see docs/distributed.md, memory).
    slices = ((test.images[i:i + 256], test.labels[i:i + 256]) for i in range(0, len(test), 256))
    probs, labels = loop.predict(final, slices)
    metrics = _metrics(cfg, data, test, probs, labels, result, strategy, final, started)
    _write_bundle(cfg, out, work, data, test, final, metrics, result)
    if not cfg.keep_checkpoints:
        remove_checkpoints(checkpoint_dir)
        shutil.rmtree(work, ignore_errors=True)
    return metrics


def remove_checkpoints(folder: Path) -> None:
    """Delete what the CheckpointManager wrote, and the folder only if nothing else is in it:
    ``--checkpoint-dir`` may point at a folder that holds the user's own files."""
    if not folder.is_dir():
        return
    for path in [*folder.glob("ckpt-*"), folder / "checkpoint"]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _skipped_note(skipped: list[dict[str, str]]) -> str:
    if not skipped:
        return ""
    return (f" ({len(skipped)} unreadable file(s) skipped, e.g. {skipped[0]['path']}: "
            f"{skipped[0]['reason']})")


def _check_batch(cfg: TrainConfig, n_train: int, replicas: int) -> None:
    if cfg.batch_size % replicas:
        raise EdgeCNNError(f"--batch-size {cfg.batch_size} is global and must divide evenly over "
                           f"{replicas} replicas; use a multiple of {replicas}")
    if n_train < cfg.batch_size:
        raise EdgeCNNError(f"the training split has {n_train} images, fewer than --batch-size "
                           f"{cfg.batch_size}; lower --batch-size or add images")


def _optimizer(cfg: TrainConfig, steps_per_epoch: int) -> Any:
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, cfg.epochs * steps_per_epoch)
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True)
    return keras.optimizers.Adam(schedule)


def _cache_path(cache: str | None, work: Path, worker: str) -> str | None:
    """``--cache``: memory, or decoded images on disk (one file per worker)."""
    if cache in (None, "memory"):
        return cache
    folder = work / "cache" if cache == "disk" else Path(cache)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"train-{worker}*.lockfile"):  # left by a killed run
        stale.unlink()
    return str(folder / f"train-{worker}")


def _prepare_resume(cfg: TrainConfig, work: Path, checkpoint_dir: Path, chief: bool) -> None:
    """Resume only a run started with the same options; ``--restart`` discards it."""
    record = work / "run.json"
    if cfg.restart and chief:
        remove_checkpoints(checkpoint_dir)
        record.unlink(missing_ok=True)
    has_checkpoint = any(checkpoint_dir.glob("ckpt-*.index")) if checkpoint_dir.is_dir() else False
    if has_checkpoint and record.is_file() and not cfg.restart:  # other workers: chief deletes
        before = read_json(record)
        now = cfg.resume_key()
        changed = {k: (before.get(k), v) for k, v in now.items() if before.get(k) != v}
        if changed:
            detail = ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in sorted(changed.items()))
            raise BundleError(f"an interrupted run in {checkpoint_dir} used other options "
                              f"({detail}); rerun with the same options to resume, or add "
                              "--restart to start over")
    if chief:
        write_json(record, cfg.resume_key())


def _metrics(cfg: TrainConfig, data: PreparedData, test: Any, probs: np.ndarray,
             labels: np.ndarray, result: Any, strategy: Any, model: Any,
             started: float) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from train.evaluate import classification_metrics

    skipped = data.skipped.as_list()
    best = result.best_epoch - 1
    return {
        "test": classification_metrics(labels, probs, data.spec.labels),
        "validation": {"loss": result.history["val_loss"][best],
                       "accuracy": result.history["val_accuracy"][best]},
        "training": {
            "epochs_run": len(result.history["loss"]), "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early, "resumed_after_epoch": result.resumed_after,
            "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
            "wall_seconds": time.perf_counter() - started, "history": result.history,
        },
        "dataset": {"name": data.spec.dataset["name"], "source": cfg.data,
                    "train": len(data.train), "val": len(data.val), "test": len(test),
                    "skipped_count": len(skipped), "skipped": skipped},
        "model": {"architecture": cfg.arch, "parameters": int(model.count_params())},
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": keras.__version__, "machine": platform.machine()},
    }


def _write_bundle(cfg: TrainConfig, out: Path, work: Path, data: PreparedData, test: Any,
                  model: Any, metrics: dict[str, Any], result: Any) -> None:
    from runtime.files import atomic_path
    from train.plots import plot_confusion, plot_history

    stage = StagedBundle(out, work)
    dataset = metrics["dataset"]
    spec = data.spec.replace(dataset={key: dataset[key] for key in
                                      ("name", "train", "val", "test", "skipped_count")})
    with atomic_path(stage.path(names.KERAS_MODEL)) as tmp:
        model.save(tmp)
    write_json(stage.path(names.SPEC), spec.to_dict())
    write_json(stage.path(names.METRICS), metrics)
    write_json(stage.path(names.TRAIN_CONFIG), cfg.to_dict())
    names.save_images(stage.path(names.EVAL_SET), test.images, test.labels)
    calib = materialize(calibration_sample(data.train, cfg.calib_size, cfg.seed), data.spec,
                        data.skipped)
    names.save_images(stage.path(names.CALIB_SET), calib.images, calib.labels)
    plot_confusion(metrics["test"]["confusion_matrix"], spec.labels,
                   stage.path(names.CONFUSION_PLOT))
    plot_history(result.history, stage.path(names.HISTORY_PLOT), result.best_epoch)
    stage.commit()
