"""A training run from resolved options to a committed bundle, as a sequence of named steps.

:func:`run` reads as the recipe: check the target, load and split the data, check the memory
budget, start TensorFlow, fit, evaluate, write the bundle. Each step takes the fields it
needs rather than the whole configuration, so it can be reused (once per data source, say)
and tested on its own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime import bundle as names
from runtime.errors import BundleError, EdgeCNNError, first_line
from runtime.files import atomic_path, read_json, write_json
from runtime.quiet import native_stderr_silenced
from train import budget
from train.config import ROTATION, ZOOM, TrainConfig
from train.data import (
    DataPlan,
    PreparedData,
    Split,
    calibration_sample,
    materialize,
    plan_data,
    prepare_data,
)
from train.errors import DataError, RunFailed
from train.evaluate import classification_metrics, ranked_classes
from train.photos import repeated, with_photographs
from train.sources import ArraySource, load_source
from train.staging import StagedBundle, check_target, work_folder

log = logging.getLogger(__name__)
PREDICT_BATCH = 256  # test images per forward pass when evaluating
CONFIDENCE_LEVELS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # tabulated on validation
# What withholding a wrong answer gains, in right answers withheld: 1 is Chow's reject rule
# with a "?" costing half an error (calibrated probabilities are withheld below 0.5). 2 (a
# "?" a third of an error, withheld below 2/3) was tried: camera frames are less sure than
# the validation images, and on make demo's clip it withheld 7 of 480 frames, all right.
WRONG_COST = 1.0
# Options added after runs were recorded, whose default is what those runs did: a record
# without them resumes. (Not convs_per_block: its default changed from what old runs used.)
ADDED_OFF = {"cutout": 0.0, "stroke": 0.0, "photograph": "", "conv_dropout": 0.0,
             "weight_decay": 0.0, "zoom": 0.1, "mixup": 0.0,
             "rotation": 10.0}


@dataclass(frozen=True)
class Checkpoints:
    """Where a run resumes from and where this process writes its per-epoch checkpoints.

    Other workers must save too (saving is collective) but into a private throwaway folder,
    never inside the chief's work folder, which the chief deletes when it is done.
    """

    folder: Path
    write_folder: Path

    @classmethod
    def for_run(cls, work: Path, checkpoint_dir: str | None, chief: bool) -> Checkpoints:
        folder = Path(checkpoint_dir) if checkpoint_dir else work / "checkpoints"
        write = folder if chief else Path(tempfile.mkdtemp(prefix="edgecnn-ckpt-"))
        return cls(folder, write)

    def discard_private(self) -> None:
        if self.write_folder != self.folder:
            shutil.rmtree(self.write_folder, ignore_errors=True)


def run(cfg: TrainConfig) -> dict[str, Any]:
    """Train, evaluate and write the bundle. Returns metrics (empty on non-chief workers)."""
    started = time.perf_counter()
    peaks = budget.StepPeaks()
    out = Path(cfg.out).resolve()  # "." and "artifacts/" alike have a name and a parent
    check_target(out, cfg.overwrite)
    source = load_source(cfg.data)  # fails fast, before TensorFlow is even imported
    assert cfg.img_size is not None
    plan = plan_data(source, arch=cfg.arch, img_size=cfg.img_size, color=cfg.color,
                     val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
                     seed=cfg.seed)
    estimate = check_memory(plan, arch=cfg.arch, hidden=cfg.hidden, filters=cfg.conv_filters,
                            convs_per_block=cfg.convs_per_block,
                            calib_size=cfg.calib_size,
                            batch_size=cfg.batch_size, in_memory=isinstance(source, ArraySource),
                            cache=cfg.cache)
    work = work_folder(out)
    if not cfg.restart:  # a resume with other options is refused before TensorFlow starts
        refuse_other_options(cfg.resume_key(), record=work / "run.json",
                             checkpoint_dir=Checkpoints.for_run(
                                 work, cfg.checkpoint_dir, chief=True).folder)
    data = prepare_data(source, plan)
    peaks.mark("data")

    strategy = start_tensorflow(cfg.strategy)
    from train import distribute

    chief = distribute.is_chief(strategy)
    # The option stays as given (the resume key, train_config.json); a small split trains in
    # one batch of what it has.
    batch_size = fitted_batch(cfg.batch_size, len(data.train), strategy.num_replicas_in_sync)
    checkpoints = Checkpoints.for_run(work, cfg.checkpoint_dir, chief)
    prepare_resume(cfg.resume_key(), restart=cfg.restart, record=work / "run.json",
                   checkpoint_dir=checkpoints.folder, chief=chief)
    log_data(data)

    from train.models import build_model

    make_model = functools.partial(build_model, cfg.arch, data.spec.input_shape,
                                   data.spec.num_classes, activation=cfg.activation,
                                   dropout=cfg.dropout, conv_dropout=cfg.conv_dropout,
                                   l2=cfg.l2, hidden=cfg.hidden,
                                   filters=cfg.conv_filters, batchnorm=cfg.batchnorm,
                                   convs_per_block=cfg.convs_per_block)
    try:
        model, result = fit(data, strategy, make_model,
                            optimizer=cfg.optimizer, lr=cfg.lr, epochs=cfg.epochs,
                            weight_decay=cfg.weight_decay,
                            ema=cfg.ema, label_smoothing=cfg.label_smoothing, keep=cfg.keep,
                            mixup=cfg.mixup,
                            repeat=cfg.repeat, photograph=cfg.photograph,
                            batch_size=batch_size, patience=cfg.patience,
                            augmenter=make_augmenter(cfg.augment, cfg.flip, cfg.seed,
                                                     data.spec.framing, cfg.shift,
                                                     cfg.elastic, cfg.cutout, cfg.stroke,
                                                     zoom=cfg.zoom, rotation=cfg.rotation),
                            seed=cfg.seed, cache=cache_path(cfg.cache, work,
                                                            distribute.worker_name(strategy)),
                            checkpoints=checkpoints, verbose=chief, resume=not cfg.restart)
    finally:
        if not chief:
            checkpoints.discard_private()
    if not chief:
        return {}
    peaks.mark("training")

    # A plain copy outside the strategy: the saved model is the same whatever trained it.
    final = make_model()
    final.set_weights(model.get_weights())
    test, ranked = evaluate_test_split(final, data)
    confidence, val_by_source = confidence_on_validation(final, data)
    peaks.mark("evaluation")
    metrics = collect_metrics(data, test, ranked, result, strategy, final, source=cfg.data,
                              started=started)
    metrics["validation"].update(confidence=confidence, by_source=val_by_source,
                                 min_confidence=choose_min_confidence(confidence))
    write_bundle(out, work, data, test, ranked[:, 0], final, metrics, result,
                 config=cfg.to_dict(),
                 calib_size=cfg.calib_size, seed=cfg.seed, peaks=peaks, estimate=estimate)
    if not cfg.keep_checkpoints:
        remove_checkpoints(checkpoints.folder)
        shutil.rmtree(work, ignore_errors=True)
    return metrics


def check_memory(plan: DataPlan, *, arch: str, hidden: int, filters: tuple[int, int],
                 calib_size: int, batch_size: int, in_memory: bool, cache: str | None,
                 convs_per_block: int | None = None) -> int:
    """The up-front memory guard (see :mod:`train.budget`); returns the estimate in bytes."""
    return budget.check(budget.Workload(
        arch=arch, input_shape=plan.spec.input_shape, classes=plan.spec.num_classes,
        train=len(plan.indices.train), val=len(plan.indices.val), test=len(plan.indices.test),
        calib_size=calib_size,
        batch_size=batch_size, in_memory=in_memory, cache_in_memory=cache == "memory",
        hidden=hidden, filters=filters, convs_per_block=convs_per_block))


def start_tensorflow(strategy_name: str) -> Any:
    """Import TensorFlow quietly and create the tf.distribute strategy.

    The strategy must exist before TensorFlow runs its first op (MultiWorkerMirroredStrategy
    configures collectives at start-up), so it is made while TensorFlow's start-up lines are
    still silenced.
    """
    with native_stderr_silenced():
        from train import distribute

        strategy = distribute.make_strategy(strategy_name)
    from train.tf_env import import_tensorflow

    import_tensorflow()  # the first op (device set-up), still quiet
    return strategy


def log_data(data: PreparedData) -> None:
    log.info("data %s: %d train / %d val / %d test images, %d classes, input %s %s",
             data.spec.dataset["name"], len(data.train), len(data.val), len(data.test),
             data.spec.num_classes, "x".join(map(str, data.spec.input_shape)), data.spec.color)


def make_augmenter(augment: bool, flip: bool, seed: int, framing: str, shift: float,
                   elastic: float, cutout: float = 0.0, stroke: float = 0.0,
                   zoom: float = ZOOM, rotation: float = ROTATION) -> Any:
    """The training-only augmentation, or None; digits are padded black, photos reflected."""
    if not augment:
        return None
    from train.models import build_augmenter

    return build_augmenter(seed=seed, flip=flip, shift=shift, elastic=elastic, cutout=cutout,
                           stroke=stroke, zoom=zoom, rotation=rotation,
                           fill="constant" if framing == "digit" else "reflect")


def make_mixup(alpha: float, num_classes: int, seed: int) -> Any:
    """``--mixup``'s batch blender, or None when ``alpha`` is 0."""
    if alpha <= 0:
        return None
    from train.mixup import Mixup

    return Mixup(alpha, num_classes, seed=seed + 7)


def fit(data: PreparedData, strategy: Any, make_model: Callable[[], Any], *, optimizer: str,
        lr: float, epochs: int, batch_size: int, patience: int, augmenter: Any, seed: int,
        cache: str | None, checkpoints: Checkpoints, verbose: bool,
        resume: bool, ema: float = 0.0, label_smoothing: float = 0.0,
        keep: str = "best", repeat: str = "", photograph: str = "",
        weight_decay: float = 0.0, mixup: float = 0.0) -> tuple[Any, Any]:
    """Build the model under ``strategy`` and train it; returns (model, loop.FitResult).

    ``mixup`` > 0 blends the training batches (:mod:`train.mixup`), never validation's."""
    import keras
    import tensorflow as tf

    from train import loop, pipeline

    keras.utils.set_random_seed(seed)
    # Photographs join the training images here only: the reported counts, the split and
    # the calibration sample stay the user's own images.
    name = data.spec.dataset["name"]
    train = with_photographs(data.train, data.spec, photograph, seed, name)
    data.photographs = len(train) - len(data.train)
    train = repeated(train, repeat, name)
    steps = len(train) // batch_size
    with strategy.scope():
        model = make_model()
        opt = make_optimizer(optimizer, lr, epochs * steps, ema=ema, weight_decay=weight_decay)
    # Built once, so that a --cache filled in the first epoch serves the later ones.
    # One batch that holds the whole split (a small folder, see fitted_batch) trains on what
    # decodes: dropping it as a remainder left no batch at all when one file was truncated.
    train_batches = pipeline.training_epochs(train, data.spec, data.skipped,
                                             batch_size=batch_size, seed=seed * 1000,
                                             augmenter=augmenter, cache=cache,
                                             keep_remainder=len(train) <= batch_size,
                                             mixup=make_mixup(mixup, data.spec.num_classes,
                                                              seed))
    val_batches = pipeline.eval_batches(data.val, data.spec, data.skipped, batch_size)
    try:
        result = loop.fit(model=model, optimizer=opt, strategy=strategy,
                          train_batches=train_batches, val_batches=val_batches,
                          epochs=epochs, steps_per_epoch=steps, global_batch=batch_size,
                          patience=patience, checkpoint_dir=checkpoints.folder,
                          checkpoint_write_dir=checkpoints.write_folder, verbose=verbose,
                          resume=resume, label_smoothing=label_smoothing, keep=keep)
    except DataError as exc:  # say which files made a split come up empty
        raise DataError(f"{exc}{_skipped_note(data.skipped.as_list())}") from None
    except tf.errors.UnavailableError as exc:  # a peer stopped sending heartbeats
        raise RunFailed(f"lost contact with another worker ({first_line(exc, 120)}); start "
                        "every worker again with the same command to resume from the last "
                        "finished epoch") from None
    if result.best_epoch == 0:
        raise RunFailed("the validation loss never became finite: training diverged; lower "
                        "--lr or use --optimizer adam")
    return model, result


def evaluate_test_split(model: Any, data: PreparedData) -> tuple[Split, np.ndarray]:
    """The test split decoded once (it becomes eval.npz) and its ranked top-k classes.

    Predicted from slices of that array rather than a tf.data copy of it (see
    docs/distributed.md, memory); only the top-k indices of each batch are kept, so memory
    does not grow with images × classes.
    """
    from train import loop

    test = materialize(data.test, data.spec, data.skipped)
    if not len(test):
        raise DataError("the test split has no readable image"
                        f"{_skipped_note(data.skipped.as_list())}")
    assert test.images is not None
    slices = ((test.images[i:i + PREDICT_BATCH], test.labels[i:i + PREDICT_BATCH])
              for i in range(0, len(test), PREDICT_BATCH))
    ranked, labels = loop.predict(model, slices, keep=ranked_classes)
    assert np.array_equal(labels, test.labels)
    return test, ranked


def confidence_on_validation(model: Any, data: PreparedData,
                             ) -> tuple[list[dict[str, float]], dict[str, float]]:
    """How often the model answers, and how often rightly, when it answers only at or above
    each top-1 probability: the table the demo's ``--min-confidence`` default comes from.

    Also the validation accuracy of each part of a joined source: the figures the training
    recipe is chosen on (``benchmarks.seeds``), so that choosing it needs no test figure."""
    from train import loop

    val = materialize(data.val, data.spec, data.skipped)
    assert val.images is not None
    slices = ((val.images[i:i + PREDICT_BATCH], val.labels[i:i + PREDICT_BATCH])
              for i in range(0, len(val), PREDICT_BATCH))
    best, labels = loop.predict(model, slices,
                                keep=lambda p: np.stack([p.argmax(1), p.max(1)], axis=1))
    right, confidence = best[:, 0] == labels, best[:, 1]
    table = []
    for level in CONFIDENCE_LEVELS:
        answered = confidence >= level
        table.append({"min_confidence": level, "answered": float(answered.mean()),
                      "accuracy_answered": float(right[answered].mean()) if answered.any()
                      else None,
                      "withheld_wrong": int(np.count_nonzero(~answered & ~right)),
                      "withheld_right": int(np.count_nonzero(~answered & right))})
    parts = {} if val.parts is None else {
        str(part): float(right[val.parts == part].mean())
        for part in dict.fromkeys(val.parts.tolist())}
    return table, parts


def choose_min_confidence(table: list[dict[str, Any]]) -> float:
    """The "not sure" threshold that the model's files carry: of the tabulated levels, the
    one whose "?"s withhold the most wrong answers (each worth ``WRONG_COST``) net of the
    right ones they also withhold (the lowest such level on a tie; 0, always answer, when
    no level gains)."""
    best = max(table, key=lambda row: (WRONG_COST * row["withheld_wrong"]
                                       - row["withheld_right"], -row["min_confidence"]))
    return float(best["min_confidence"])


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


def fitted_batch(batch_size: int, n_train: int, replicas: int) -> int:
    """``batch_size``, or all the training images in one batch when there are fewer (a
    small folder still trains, said in one line); it must divide over the replicas."""
    if batch_size % replicas:
        raise EdgeCNNError(f"--batch-size {batch_size} is global and must divide evenly over "
                           f"{replicas} replicas; use a multiple of {replicas}")
    if n_train >= batch_size:
        return batch_size
    fitted = n_train - n_train % replicas
    if fitted == 0:
        raise EdgeCNNError(f"the training split has {n_train} images, fewer than the "
                           f"{replicas} replicas; add images")
    log.warning("the training split has %d images, fewer than --batch-size %d: training in "
                "batches of %d; more images would train better", n_train, batch_size, fitted)
    return fitted


def make_optimizer(name: str, lr: float, total_steps: int, ema: float = 0.0,
                   weight_decay: float = 0.0) -> Any:
    """Adam (default) or Nesterov SGD, with the learning rate cosine-decayed to 0.

    ``weight_decay`` > 0 shrinks every weight by that share of the current rate each step,
    apart from the gradient (decoupled, as AdamW; Keras 3 optimizers all take it).

    ``ema`` > 0 keeps a moving average of the weights with that momentum (the loop validates
    and keeps the average, see :func:`train.loop.fit`), lowered for short runs so that the
    average spans at most a fifth of the steps rather than mostly the untrained start."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(lr, total_steps)
    momentum = min(ema, max(0.0, 1 - 5 / max(total_steps, 1)))
    options = {"use_ema": ema > 0, "ema_momentum": momentum,
               "weight_decay": weight_decay or None}
    if name == "sgd":
        return keras.optimizers.SGD(schedule, momentum=0.9, nesterov=True, **options)
    return keras.optimizers.Adam(schedule, **options)


def cache_path(cache: str | None, work: Path, worker: str) -> str | None:
    """``--cache``: memory, or decoded images on disk (one file per worker)."""
    if cache in (None, "memory"):
        return cache
    folder = work / "cache" if cache == "disk" else Path(cache)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f"train-{worker}*.lockfile"):  # left by a killed run
        stale.unlink()
    return str(folder / f"train-{worker}")


def prepare_resume(key: dict[str, Any], *, restart: bool, record: Path, checkpoint_dir: Path,
                   chief: bool) -> None:
    """``--restart`` discards an interrupted run; the chief records this run's options
    (``key``). A resume with other options was refused before (:func:`refuse_other_options`)."""
    if restart and chief:
        remove_checkpoints(checkpoint_dir)
        record.unlink(missing_ok=True)
    if chief:
        write_json(record, key)


def refuse_other_options(key: dict[str, Any], *, record: Path, checkpoint_dir: Path) -> None:
    """An interrupted run in ``checkpoint_dir`` whose options differ from ``key`` is a
    one-line error: resuming it would mix two runs in one model. Reads only, so ``run``
    asks, in every worker, before it starts TensorFlow."""
    has_checkpoint = any(checkpoint_dir.glob("ckpt-*.index")) if checkpoint_dir.is_dir() else False
    if not (has_checkpoint and record.is_file()):
        return
    before = {**ADDED_OFF, **read_json(record)}  # recorded before an option existed
    changed = {k: (before.get(k), v) for k, v in key.items() if before.get(k) != v}
    if changed:
        detail = ", ".join(f"{k} {a!r} → {b!r}" for k, (a, b) in sorted(changed.items()))
        raise BundleError(f"an interrupted run in {checkpoint_dir} used other options "
                          f"({detail}); rerun with the same options to resume, or add "
                          "--restart to start over")


def collect_metrics(data: PreparedData, test: Split, ranked: np.ndarray, result: Any,
                    strategy: Any, model: Any, *, source: str,
                    started: float) -> dict[str, Any]:
    """metrics.json: test figures, training history, the data actually used, environment."""
    import keras
    import tensorflow as tf

    skipped = data.skipped.as_list()
    best = result.best_epoch - 1
    return {
        "test": classification_metrics(test.labels, ranked, data.spec.labels),
        "by_source": metrics_by_source(test, ranked, data.spec.labels),
        "validation": {"loss": result.history["val_loss"][best],
                       "accuracy": result.history["val_accuracy"][best]},
        "training": {
            "epochs_run": len(result.history["loss"]), "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early, "resumed_after_epoch": result.resumed_after,
            "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
            "wall_seconds": time.perf_counter() - started, "history": result.history,
        },
        "dataset": {"name": data.spec.dataset["name"], "source": source,
                    "train": data.skipped.used(data.train), "val": data.skipped.used(data.val),
                    "test": len(test), "color": data.color.to_dict(),
                    "skipped_count": len(skipped), "skipped": skipped,
                    "photographs": data.photographs, "sources": sources_report(data)},
        "model": {"architecture": data.spec.architecture,
                  "parameters": int(model.count_params())},
        "environment": {"python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": keras.__version__, "machine": platform.machine()},
    }


def metrics_by_source(test: Split, ranked: np.ndarray,
                      label_names: tuple[str, ...]) -> dict[str, Any]:
    """The test figures (confusion matrix included) of each part of a joined source."""
    if test.parts is None:
        return {}
    return {str(part): classification_metrics(test.labels[test.parts == part],
                                              ranked[test.parts == part], label_names)
            for part in dict.fromkeys(test.parts.tolist())}


def sources_report(data: PreparedData) -> dict[str, Any]:
    """Images per split of each part and, for parts split by group (printed digits' font
    families), which groups trained, validated and were held out for the test."""
    if data.train.parts is None:
        return {}
    report: dict[str, Any] = {}
    for part in dict.fromkeys(data.train.parts.tolist()):
        entry: dict[str, Any] = {name: int(np.count_nonzero(split.parts == part))
                                 for name, split in (("train", data.train), ("val", data.val),
                                                     ("test", data.test))}
        held = data.held_out.get(part)
        if held is not None:
            entry.update(train_families=list(held.train), val_families=list(held.val),
                         test_families=list(held.test))
        report[str(part)] = entry
    return report


def write_bundle(out: Path, work: Path, data: PreparedData, test: Split, predicted: np.ndarray,
                 model: Any, metrics: dict[str, Any], result: Any, *, config: dict[str, Any],
                 calib_size: int, seed: int, peaks: budget.StepPeaks, estimate: int) -> None:
    """Stage every file, metrics.json last (it records the peak memory), then commit."""
    from train.plots import plot_confused_pairs, plot_confusion, plot_history

    stage = StagedBundle(out, work)
    dataset = metrics["dataset"]
    spec = data.spec.replace(dataset={key: dataset[key] for key in
                                      ("name", "train", "val", "test", "skipped_count")},
                             min_confidence=metrics["validation"]["min_confidence"])
    with atomic_path(stage.path(names.KERAS_MODEL)) as tmp:
        model.save(tmp)
    write_json(stage.path(names.SPEC), spec.to_dict())
    write_json(stage.path(names.TRAIN_CONFIG), config)
    assert test.images is not None
    names.save_images(stage.path(names.EVAL_SET), test.images, test.labels, test.parts)
    calib = materialize(calibration_sample(data.train, calib_size, seed), data.spec,
                        data.skipped)
    assert calib.images is not None
    names.save_images(stage.path(names.CALIB_SET), calib.images, calib.labels)
    plot_confusion(test.labels, predicted, spec.labels, stage.path(names.CONFUSION_PLOT))
    plot_confused_pairs(test.labels, predicted, spec.labels,
                        stage.path(names.CONFUSED_PAIRS_PLOT))
    plot_history(result.history, stage.path(names.HISTORY_PLOT), result.best_epoch)
    peaks.mark("bundle")
    metrics["resources"] = peaks.report(estimate)
    write_json(stage.path(names.METRICS), metrics)
    stage.commit()
