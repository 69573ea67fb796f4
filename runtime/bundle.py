"""Names and readers for the bundle: the folder that carries a model between stages.

train writes it; export, benchmarks and demos read it. Only numpy here, so the device side
can read an eval set without TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.errors import BundleError
from runtime.spec import ModelSpec

KERAS_MODEL = "model.keras"
SPEC = "spec.json"
METRICS = "metrics.json"
TRAIN_CONFIG = "train_config.json"
EVAL_SET = "eval.npz"      # the held-out test split, uint8 model inputs + labels
CALIB_SET = "calib.npz"    # a sample of training images, for quantization calibration only
HISTORY_PLOT = "history.png"
CONFUSION_PLOT = "confusion_matrix.png"
CONFUSED_PAIRS_PLOT = "confused_pairs.png"  # the most-confused (true, predicted) pairs
EXPORT_REPORT = "export_report.json"
QUANT_PLOT = "quant_layers.png"  # int8 error layer by layer, beside the export report

# Exported files, by (format, precision): fixed names so users and tools can find them.
EXPORT_NAMES = {
    ("onnx", "float32"): "model.onnx",
    ("onnx", "int8"): "model.int8.onnx",
    ("tflite", "float32"): "model.tflite",
    ("tflite", "float16"): "model.fp16.tflite",
    ("tflite", "dynamic"): "model.dynamic.tflite",
    ("tflite", "int8"): "model.int8.tflite",
}
# The int8 TFLite file re-wired for app loaders (MediaPipe Tasks): uint8 RGB in, standard
# TFLite Model Metadata with a label file. Made from model.int8.tflite by `export --int8`.
APP_TFLITE = "model.int8.app.tflite"


def require_bundle(folder: str | Path) -> Path:
    """Return the bundle path, or explain what is missing and which command makes it."""
    path = Path(folder)
    if not path.is_dir():
        raise BundleError(f"no bundle at {path}/; create one with `python -m train --out {path}`")
    if not (path / SPEC).is_file():
        raise BundleError(f"{path}/ is not a bundle (no {SPEC}); create one with "
                          f"`python -m train --out {path}`")
    return path


def load_spec(bundle: str | Path) -> ModelSpec:
    path = require_bundle(bundle) / SPEC
    return ModelSpec.from_json(path.read_bytes())


def load_images(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an ``eval.npz``/``calib.npz``: (N, H, W, C) uint8 images and int64 labels."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
    except FileNotFoundError:
        raise BundleError(f"{path} is missing; re-run `python -m train` to rebuild the bundle") \
            from None
    except (OSError, KeyError, ValueError) as exc:
        raise BundleError(f"{path} is not a valid image set (images + labels): {exc}") from None
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
        raise BundleError(f"{path}: expected uint8 images (N, H, W, C) with one label each, got "
                          f"{images.dtype} {images.shape} and {len(labels)} labels")
    return images, labels.astype(np.int64)


def save_images(path: str | Path, images: np.ndarray, labels: np.ndarray,
                sources: np.ndarray | None = None) -> None:
    """Write an image set atomically (uncompressed: fast to load, small at these sizes).

    ``sources`` names each image's data source when the set joins several (``mnist5k``,
    ``printed``), so that later stages can tell them apart.
    """
    from runtime.files import atomic_path

    extra = {} if sources is None else {"sources": np.asarray(sources).astype(str)}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, images=images.astype(np.uint8), labels=labels.astype(np.int64),
                 **extra)


def load_sources(path: str | Path) -> np.ndarray | None:
    """The per-image source names of an image set, or None when it has one source."""
    with np.load(path, allow_pickle=False) as npz:
        return npz["sources"] if "sources" in npz.files else None
