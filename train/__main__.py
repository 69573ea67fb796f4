"""``python -m train``: fit a CNN on a dataset and write a bundle. ``--help`` lists options."""

from __future__ import annotations

import argparse
import json
import sys

from runtime.cli import Parser, run_cli, setup_logging
from runtime.errors import EdgeCNNError
from train.config import (
    ARCHITECTURES,
    REPEAT_LEAST,
    STRATEGIES,
    TrainConfig,
    min_size,
    parse_filters,
    parse_part,
)
from train.errors import RunFailed

DEFAULTS = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m train", description=__doc__,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = p.add_argument
    add("--arch", choices=list(ARCHITECTURES), default=DEFAULTS.arch,
        help="; ".join(f"{k}: {v[1]}" for k, v in ARCHITECTURES.items()))
    add("--data", default=DEFAULTS.data, help="mnist5k | mnist-extra | mnist | digits | printed "
        "| file.npz | folder with one subfolder of images per class; join several with +")
    add("--out", default=DEFAULTS.out, help="bundle folder to write")
    add("--overwrite", action="store_true", help="replace an existing bundle at --out")
    add("--epochs", type=int, default=DEFAULTS.epochs, help="maximum epochs (early stopping)")
    add("--batch-size", type=int, default=DEFAULTS.batch_size,
        help="global batch size, summed over all workers and devices")
    add("--lr", type=float, default=DEFAULTS.lr, help="initial learning rate (cosine decay)")
    add("--optimizer", choices=["adam", "sgd"], default=DEFAULTS.optimizer)
    add("--activation", choices=["relu", "tanh", "sigmoid"], default=DEFAULTS.activation)
    add("--dropout", type=float, default=DEFAULTS.dropout, help="dropout before the classifier")
    add("--conv-dropout", type=float, default=DEFAULTS.conv_dropout,
        help="dropout after each pooling of the convolutions (0: off)")
    add("--hidden", type=int, default=DEFAULTS.hidden,
        help="twoconv: units of a dense layer between the convolutions and the classifier "
        "(0: none; with --convs-per-block 1, the design document's model as first built)")
    add("--filters", default=DEFAULTS.filters, metavar="A,B",
        help="twoconv: filters of the first and the second block's convolutions (the "
        "design document's: 32,64)")
    add("--convs-per-block", type=int, default=None,
        help="twoconv: 3×3 convolutions of the same width before each pooling (2, VGG-style "
        "Conv-Conv-Pool-Conv-Conv-Pool, or 1, the design document's Conv-Pool-Conv-Pool; "
        "None: 2 for twoconv, 1 for dense512)")
    add("--l2", type=float, default=DEFAULTS.l2, help="L2 weight penalty")
    add("--weight-decay", type=float, default=DEFAULTS.weight_decay,
        help="decoupled weight decay: each step shrinks every weight by this share of the "
        "learning rate (AdamW-style, e.g. 0.05; 0: off)")
    add("--label-smoothing", type=float, default=DEFAULTS.label_smoothing,
        help="training targets: this share spread evenly over all classes")
    add("--ema", type=float, default=DEFAULTS.ema,
        help="momentum of an exponential moving average of the weights, which is what is "
        "validated and kept (e.g. 0.999); 0: the raw weights")
    add("--batchnorm", action=argparse.BooleanOptionalAction, default=DEFAULTS.batchnorm,
        help="batch normalization after each convolution (folded away on export)")
    add("--shift", type=float, default=DEFAULTS.shift,
        help="augmentation: largest random translation, as a share of the image side")
    add("--zoom", type=float, default=DEFAULTS.zoom,
        help="augmentation: largest random zoom in or out, as a share of the side (0: none)")
    add("--rotation", type=float, default=DEFAULTS.rotation, metavar="DEG",
        help="augmentation: largest random rotation either way, in degrees (0: none)")
    add("--repeat", default=DEFAULTS.repeat, metavar="PART=K",
        help="each training image of a part of joined data K times an epoch (mnist5k=2); "
        "K=0: that part is only validated and tested, never trained on")
    add("--photograph", default=DEFAULTS.photograph, metavar="PART=K",
        help="add K photographs of each training digit of a part (e.g. mnist5k=1): put on "
        "paper by the clip's camera model and cut out by the runtime's framing; cached")
    add("--elastic", type=float, default=DEFAULTS.elastic,
        help="augmentation: elastic distortion of strength alpha (pixels per unit of the "
        "smoothed random field, sigma 4; e.g. 34); 0: none")
    add("--stroke", type=float, default=DEFAULTS.stroke,
        help="augmentation: a random pen weight per training digit, up to this share of a "
        "one-pixel dilation (bolder) or erosion (thinner); e.g. 0.5; 0: none")
    add("--cutout", type=float, default=DEFAULTS.cutout,
        help="augmentation: black out one random square per training image, of this side "
        "as a share of the image side (e.g. 0.25); 0: none")
    add("--mixup", type=float, default=DEFAULTS.mixup, metavar="ALPHA",
        help="mixup: train on blends of two training images of a batch, their one-hot "
        "targets blended alike, with a weight from Beta(ALPHA, ALPHA) per image (e.g. 0.2); "
        "0: none")
    add("--img-size", type=int, default=None,
        help="square input side (default: 28 for twoconv, 32 for dense512)")
    add("--color", choices=["auto", "grayscale", "rgb"], default=DEFAULTS.color,
        help="model input colour; auto: grayscale when every image is single-channel or grey "
        "in all channels (a sample of a folder's images is read), else rgb")
    add("--augment", action=argparse.BooleanOptionalAction, default=DEFAULTS.augment,
        help="random rotation, translation and zoom of training images")
    add("--flip", action="store_true", help="also flip training images horizontally")
    add("--seed", type=int, default=DEFAULTS.seed)
    add("--patience", type=int, default=DEFAULTS.patience,
        help="epochs without validation-loss improvement before stopping")
    add("--keep", choices=["best", "last"], default=DEFAULTS.keep,
        help="weights to keep: best (lowest validation loss) or last (the final epoch's)")
    add("--val-fraction", type=float, default=DEFAULTS.val_fraction)
    add("--test-fraction", type=float, default=DEFAULTS.test_fraction)
    add("--calib-size", type=int, default=DEFAULTS.calib_size,
        help="training images kept in the bundle for quantization calibration")
    add("--strategy", choices=list(STRATEGIES), default=DEFAULTS.strategy,
        help="tf.distribute strategy; multiworker reads the cluster from TF_CONFIG")
    add("--checkpoint-dir", default=None, help="per-epoch checkpoints (default: <out>.work/)")
    add("--cache", nargs="?", const="disk", default=None, metavar="memory|disk|DIR",
        help="image folders: keep decoded images for later epochs (bare --cache: on disk)")
    add("--restart", action="store_true", help="discard an interrupted run instead of resuming")
    add("--keep-checkpoints", action="store_true", help="keep <out>.work/ after success")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    checks = [
        (cfg.epochs >= 1, f"--epochs {cfg.epochs} must be at least 1"),
        (cfg.batch_size >= 1, f"--batch-size {cfg.batch_size} must be at least 1"),
        (cfg.lr > 0, f"--lr {cfg.lr} must be positive"),
        (0 <= cfg.dropout < 1, f"--dropout {cfg.dropout} must be in [0, 1)"),
        (cfg.l2 >= 0, f"--l2 {cfg.l2} must be zero or positive"),
        (0 <= cfg.conv_dropout < 1, f"--conv-dropout {cfg.conv_dropout} must be in [0, 1)"),
        (0 <= cfg.weight_decay < 1, f"--weight-decay {cfg.weight_decay} must be in [0, 1)"),
        (0 <= cfg.label_smoothing < 1,
         f"--label-smoothing {cfg.label_smoothing} must be in [0, 1)"),
        (0 <= cfg.ema < 1, f"--ema {cfg.ema} must be in [0, 1)"),
        (0 <= cfg.shift < 1, f"--shift {cfg.shift} must be in [0, 1)"),
        (0 <= cfg.zoom < 1, f"--zoom {cfg.zoom} must be in [0, 1)"),
        (0 <= cfg.rotation <= 180, f"--rotation {cfg.rotation} must be in [0, 180] degrees"),
        (cfg.elastic >= 0, f"--elastic {cfg.elastic} must be zero or positive"),
        (0 <= cfg.cutout < 1, f"--cutout {cfg.cutout} must be in [0, 1)"),
        (0 <= cfg.stroke <= 1, f"--stroke {cfg.stroke} must be in [0, 1]"),
        (cfg.mixup >= 0, f"--mixup {cfg.mixup} must be zero or positive"),
        (cfg.convs_per_block in (1, 2) and (cfg.convs_per_block == 1 or cfg.arch == "twoconv"),
         f"--convs-per-block {cfg.convs_per_block} must be 1, or 2 with --arch twoconv"),
        (cfg.convs_per_block == 1 or (cfg.img_size or 0) >= min_size(cfg.arch, 2),
         f"--img-size {cfg.img_size} is too small for two convolutions a block; use at least "
         f"{min_size(cfg.arch, 2)}, or --convs-per-block 1"),
        (cfg.hidden >= 0, f"--hidden {cfg.hidden} must be zero or positive"),
        (cfg.patience >= 1, f"--patience {cfg.patience} must be at least 1"),
        (cfg.calib_size >= 1, f"--calib-size {cfg.calib_size} must be at least 1"),
        (cfg.img_size is not None and 4 <= cfg.img_size <= 1024,
         f"--img-size {cfg.img_size} must be between 4 and 1024"),
    ]
    for ok, message in checks:
        if not ok:
            raise EdgeCNNError(message)
    for flag, option, least in (("--repeat", cfg.repeat, REPEAT_LEAST),
                                ("--photograph", cfg.photograph, 1)):
        if option:
            parse_part(option, flag, least)
    cfg.filters = ",".join(map(str, parse_filters(cfg.filters)))  # "48, 96" resumes "48,96"
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def go() -> int:
        setup_logging("train", "scenes")
        cfg = config_from_args(args)
        from train.evaluate import summary_table
        from train.run import run

        metrics = run(cfg)
        if metrics:
            print(summary_table(metrics["test"]))
            for line in source_lines(metrics):
                print(line)
            training = metrics["training"]
            print(json.dumps({"bundle": cfg.out, "test_accuracy": metrics["test"]["accuracy"],
                              "epochs": training["epochs_run"],
                              "best_epoch": training["best_epoch"],
                              "skipped_files": metrics["dataset"]["skipped_count"],
                              "wall_seconds": round(training["wall_seconds"], 1),
                              "peak_rss_mb": _rounded(metrics["resources"]["peak_rss_mb"])}))
        return 0

    return run_cli("train", go, failures=(RunFailed,))


def source_lines(metrics: dict) -> list[str]:
    """One line per part of a joined source: its own test accuracy, and for printed digits
    the font families that no training or validation image used."""
    lines = []
    for name, part in metrics.get("by_source", {}).items():
        line = f"{name:>12} {part['accuracy'] * 100:8.2f}% on {part['count']} test images"
        held = metrics["dataset"].get("sources", {}).get(name, {}).get("test_families")
        if held:
            line += f" in font families never trained on: {', '.join(held)}"
        lines.append(line)
    return lines


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value)


if __name__ == "__main__":
    sys.exit(main())
