"""What an export starts from: a Keras model, its spec, a check set and calibration images.

From a bundle all four are already there. A foreign Keras model brings only itself: its spec
is inferred from its input and output, and images come from ``--calib-data``.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.errors import CalibrationError, ExportError, UnsupportedModelError
from runtime import bundle as names
from runtime.errors import BundleError, EdgeCNNError, first_line
from runtime.preprocess import IMAGE_SUFFIXES, prepare, read_image
from runtime.spec import ModelSpec

log = logging.getLogger(__name__)
MIN_CALIBRATION = 16  # fewer images give unstable activation ranges


@dataclass
class ImageSet:
    images: np.ndarray               # (N, H, W, C) uint8 model inputs
    labels: np.ndarray | None        # None when the true classes are unknown

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class ExportSource:
    model: Any                       # a built, called keras.Model
    model_path: Path
    spec: ModelSpec
    check: ImageSet                  # never used for calibration
    calibration: ImageSet            # never the test split


def from_bundle(bundle: Path, model_path: Path | None) -> ExportSource:
    """The bundle's own model (or ``model_path`` trained for the same spec) and data."""
    spec = names.load_spec(bundle)
    model_path = model_path or bundle / names.KERAS_MODEL
    model = load_keras(model_path)
    check_model_matches(model, spec, model_path)
    check = ImageSet(*names.load_images(bundle / names.EVAL_SET))
    calibration = ImageSet(*names.load_images(bundle / names.CALIB_SET))
    for name, images in ((names.EVAL_SET, check), (names.CALIB_SET, calibration)):
        if images.images.shape[1:] != spec.input_shape:
            raise BundleError(f"{bundle / name} holds {images.images.shape[1:]} images but the "
                              f"spec says {spec.input_shape}; re-run `python -m train`")
    return ExportSource(model, model_path, spec, check, calibration)


def from_foreign_model(model_path: Path, data: Path | None, labels: list[str] | None,
                       value_range: tuple[float, float]) -> ExportSource:
    """Any Keras image classifier: spec inferred, images from a folder or an ``.npz``."""
    model = load_keras(model_path)
    height, width, channels = image_input_shape(model, model_path)
    classes = int(model.outputs[0].shape[-1])
    if labels is not None and len(labels) != classes:
        raise ExportError(f"--labels gives {len(labels)} names but the model has {classes} outputs")
    spec = ModelSpec(labels=tuple(labels or (str(i) for i in range(classes))), height=height,
                     width=width, color="grayscale" if channels == 1 else "rgb",
                     value_range=value_range, output=output_kind(model),
                     architecture=model.name or model_path.stem,
                     dataset={"name": "foreign", "source": str(data)})
    if data is None:
        raise CalibrationError(f"{model_path.name} is not from a bundle, so it needs sample "
                               "images for calibration and checking: pass --calib-data FOLDER "
                               "(one subfolder per class, or plain images) or --calib-data "
                               "eval.npz")
    images = load_image_set(data, spec)
    calibration, check = split_halves(images)
    return ExportSource(model, model_path, spec, check, calibration)


def load_keras(path: Path) -> Any:
    if not path.is_file():
        raise ExportError(f"no Keras model at {path}; train one with `python -m train` or pass "
                          "--model path/to/model.keras")
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{path} is not a .keras file (not a zip archive); it may be "
                          "truncated or corrupt")
    from train.tf_env import import_tensorflow

    import_tensorflow()
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise ExportError(f"cannot load Keras model {path} (corrupt or not a .keras file?): "
                          f"{first_line(exc)}") from None
    shape = image_input_shape(model, path)
    model(np.zeros((1, *shape), np.float32))  # a loaded model must be called before export
    return model


def image_input_shape(model: Any, path: Path) -> tuple[int, int, int]:
    """(H, W, C) of a single NHWC image input with 1 or 3 channels, or a clear error."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModelError(f"{path.name} has {len(model.inputs)} inputs and "
                                    f"{len(model.outputs)} outputs; export needs one image input "
                                    "and one class output")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3):
        raise UnsupportedModelError(f"{path.name} input shape {shape} is not an NHWC image "
                                    "(batch, height, width, 1 or 3 channels)")
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or not out[1] or out[1] < 2:
        raise UnsupportedModelError(f"{path.name} output shape {out} is not (batch, classes)")
    return int(shape[1]), int(shape[2]), int(shape[3])


def check_model_matches(model: Any, spec: ModelSpec, path: Path) -> None:
    shape = image_input_shape(model, path)
    classes = int(model.outputs[0].shape[-1])
    if shape != spec.input_shape or classes != spec.num_classes:
        raise ExportError(f"{path.name} takes {shape} and predicts {classes} classes, but the "
                          f"bundle's spec says {spec.input_shape} and {spec.num_classes}")


def output_kind(model: Any) -> str:
    """``probabilities`` when the last layer ends in softmax, else ``logits``."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return "probabilities"
    activation = getattr(last, "activation", None)
    return "probabilities" if getattr(activation, "__name__", "") == "softmax" else "logits"


def load_image_set(data: Path, spec: ModelSpec) -> ImageSet:
    """``--calib-data``: an ``.npz`` (images, labels) or a folder of images or class folders."""
    if data.suffix == ".npz":
        try:
            images, labels = names.load_images(data)
        except EdgeCNNError as exc:
            raise CalibrationError(str(exc)) from None
        prepared = images if images.shape[1:] == spec.input_shape else \
            np.stack([prepare(image, spec) for image in images])
        known = labels if labels.max(initial=0) < spec.num_classes else None
        return ImageSet(prepared, known)
    if not data.is_dir():
        raise CalibrationError(f"--calib-data {data}: no such folder or .npz file")
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    images, labels, skipped = [], [], 0
    label_index = {name: i for i, name in enumerate(spec.labels)}
    for path in files:
        try:
            images.append(prepare(read_image(path), spec))
        except EdgeCNNError:
            skipped += 1
            continue
        labels.append(label_index.get(path.parent.name, -1))
    if skipped:
        log.info("--calib-data: skipped %d unreadable image(s)", skipped)
    if not images:
        raise CalibrationError(f"--calib-data {data}: no image OpenCV can read")
    known = np.array(labels) if labels and min(labels) >= 0 else None
    return ImageSet(np.stack(images), known)


def split_halves(images: ImageSet) -> tuple[ImageSet, ImageSet]:
    """Calibrate on one half, check on the other, so validation never sees its calibration."""
    if len(images) < 2 * MIN_CALIBRATION:
        raise CalibrationError(f"--calib-data has {len(images)} images; need at least "
                               f"{2 * MIN_CALIBRATION} (half calibrate, half check)")
    order = np.random.default_rng(0).permutation(len(images))
    halves = order[: len(order) // 2], order[len(order) // 2:]
    return tuple(  # type: ignore[return-value]
        ImageSet(images.images[h], None if images.labels is None else images.labels[h])
        for h in halves)


def calibration_images(source: ExportSource, samples: int) -> np.ndarray:
    if samples < MIN_CALIBRATION:
        raise CalibrationError(f"--calib-samples {samples} is too few; use at least "
                               f"{MIN_CALIBRATION}")
    available = len(source.calibration)
    if available < MIN_CALIBRATION:
        raise CalibrationError(f"only {available} calibration image(s) available; need at least "
                               f"{MIN_CALIBRATION} (train with a larger --calib-size)")
    if available < samples:
        log.info("using all %d calibration images (fewer than --calib-samples %d)", available,
                 samples)
    step = max(1, available // samples)  # spread over the (class-balanced) sample
    return source.calibration.images[::step][:samples]
