"""What an export starts from: a Keras model, its spec, a check set and calibration images.

From a bundle all four are already there. A foreign Keras model brings only itself
(:mod:`export.foreign` infers its spec, :mod:`export.calib_data` reads ``--calib-data``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.calib_data import ImageSet
from export.errors import CalibrationError, ExportError
from export.model_file import load_model
from runtime import bundle as names
from runtime.errors import BundleError
from runtime.spec import ModelSpec

log = logging.getLogger(__name__)
MIN_CALIBRATION = 16  # fewer images give unstable activation ranges


@dataclass
class ExportSource:
    model: Any                       # a built, called keras.Model
    model_path: Path
    spec: ModelSpec
    check: ImageSet                  # never used for calibration
    calibration: ImageSet            # never the test split


def from_bundle(bundle: Path, model_path: Path | None, trust: bool = False,
                framing: str | None = None) -> ExportSource:
    """The bundle's own model (or ``model_path`` trained for the same spec) and data."""
    spec = names.load_spec(bundle)
    if framing is not None and framing != spec.framing:
        log.info("framing: %s (--framing; the bundle's spec says %s)", framing, spec.framing)
        spec = spec.replace(framing=framing)
    model_path = model_path or bundle / names.KERAS_MODEL
    model = matching_model(load_keras(model_path, trust), spec, model_path)
    check = ImageSet(*names.load_images(bundle / names.EVAL_SET))
    calibration = ImageSet(*names.load_images(bundle / names.CALIB_SET))
    for name, images in ((names.EVAL_SET, check), (names.CALIB_SET, calibration)):
        if images.images.shape[1:] != spec.input_shape:
            raise BundleError(f"{bundle / name} holds {images.images.shape[1:]} images but the "
                              f"spec says {spec.input_shape}; re-run `python -m train`")
    return ExportSource(model, model_path, spec, check, calibration)


def load_keras(path: Path, trust: bool = False) -> Any:
    """The Keras model at ``path`` (.keras, .h5 or SavedModel folder), called once when its
    input size is fixed: converters and ``model.export`` need a called model."""
    model = load_model(path, trust)
    shape = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else (None,)
    if None not in shape:
        model(np.zeros((1, *shape), np.float32))
    return model


def matching_model(model: Any, spec: ModelSpec, path: Path) -> Any:
    """``model`` as an image model of the spec's input size and classes, or a clear error."""
    from export.model_input import image_model

    model, shape = image_model(model, path)
    classes = int(model.outputs[0].shape[-1])
    if shape != spec.input_shape or classes != spec.num_classes:
        raise ExportError(f"{path.name} takes {shape} and predicts {classes} classes, but the "
                          f"bundle's spec says {spec.input_shape} and {spec.num_classes}")
    model(np.zeros((1, *shape), np.float32))  # a rebuilt model is called once too
    return model


def split_halves(images: ImageSet, name: str = "--calib-data") -> tuple[ImageSet, ImageSet]:
    """Calibrate on one half, check on the other, so validation never sees its calibration."""
    if len(images) < 2 * MIN_CALIBRATION:
        raise CalibrationError(f"{name} has {len(images)} images; need at least "
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
                               f"{MIN_CALIBRATION} (train with a larger --calib-size, or give "
                               "--calib-data more images)")
    if available < samples:
        log.info("using all %d calibration images (fewer than --calib-samples %d)", available,
                 samples)
    step = max(1, available // samples)  # spread over the (class-balanced) sample
    return source.calibration.images[::step][:samples]
