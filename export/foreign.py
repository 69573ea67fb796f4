"""A Keras model trained elsewhere: its spec inferred, and every assumption said out loud.

A bundle's spec was written by training. A model from a tutorial brings only its weights, so
what its files need to say is worked out here, each step one line in the log:

- input size and colour from the model's input (:mod:`export.model_input`), the graph as it
  runs at inference (:mod:`export.inference_model`), checked against the model itself;
- labels from ``--labels``, else the class folders of ``--calib-data``, else 0..N-1;
- the pixel scale: ``--value-range``, else the one of 0–255, 0–1 and -1–1 under which the model
  reads the labelled sample images best (a model trained on pixels/255 outside the model
  takes 0–1; one with a ``Rescaling`` layer inside takes 0–255);
- probabilities or logits from what the model outputs on the samples;
- framing from ``--framing``, with a hint when the model looks like an MNIST digit model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from export.calib_data import ImageSet, Samples, capped, read_samples
from export.errors import CalibrationError, ExportError
from export.model_file import load_model
from export.source import ExportSource, split_halves
from export.validate import keras_reference
from runtime.preprocess import to_model_values
from runtime.spec import ModelSpec

log = logging.getLogger(__name__)
VALUE_RANGES = ((0.0, 255.0), (0.0, 1.0), (-1.0, 1.0))  # raw pixels, /255, /127.5 - 1
SCALE_PROBE = 512  # labelled images each pixel scale is tried on
LOSS_RATIO = 0.7  # another scale replaces 0–255 only when its log loss is this much lower
DIGIT_INPUT, DIGIT_CLASSES = (28, 28, 1), 10  # what an MNIST model looks like
PROBABILITY_TOLERANCE = 1e-3  # softmax rows sum to 1 within float error
FUNCTION_ATOL = 1e-5  # a rebuilt graph (channel axis, fixed size, no augmentation) vs the model


@dataclass(frozen=True)
class ForeignOptions:
    """What the user said about a model trained elsewhere; None: work it out and say so."""

    labels: list[str] | None = None
    value_range: tuple[float, float] | None = None
    framing: str | None = None
    input_size: tuple[int, int] | None = None
    trust: bool = False


def from_foreign_model(model_path: Path, data: Path | None,
                       options: ForeignOptions) -> ExportSource:
    """Any Keras image classifier: spec inferred, images from ``--calib-data``."""
    if data is None:  # said before TensorFlow takes its seconds to start
        raise CalibrationError(f"{model_path.name} is not from a bundle, so it needs sample "
                               "images for calibration and checking: pass --calib-data FOLDER "
                               "(one subfolder per class, or plain images) or --calib-data "
                               "FILE.npz (images/labels, x/y or Keras's mnist.npz layout)")
    loaded = load_model(model_path, options.trust)  # starts TensorFlow, quietly
    from export.inference_model import in_float32, two_classes, without_augmentation
    from export.model_input import image_model

    inference = without_augmentation(loaded, model_path)
    base = in_float32(inference, model_path)
    model, (height, width, channels) = image_model(base, model_path, options.input_size)
    units = int(model.outputs[0].shape[-1])
    classes = max(units, 2)  # one sigmoid unit is two classes
    if options.labels is not None and len(options.labels) != classes:
        raise ExportError(f"--labels gives {len(options.labels)} names but {model_path.name} "
                          f"has {classes} outputs")
    spec = ModelSpec(labels=tuple(options.labels or (str(i) for i in range(classes))),
                     height=height, width=width, color="grayscale" if channels == 1 else "rgb",
                     architecture=loaded.name or model_path.stem,
                     dataset={"name": "foreign", "source": str(data)})
    samples = read_samples(data, spec)
    labels, images = class_labels(samples, spec, options.labels is not None, data)
    spec = spec.replace(labels=labels)
    if samples.check is not None:
        calibration, check = images, samples.check
    else:
        calibration, check = split_halves(images, f"--calib-data {data}")
        check = capped(check, name=str(data))
    model(np.zeros((1, height, width, channels), np.float32))  # converters need a called model
    probe = to_model_values(check.images[:SCALE_PROBE], spec)
    if base is not inference:  # float32 for float16: close, not equal; say how close
        float32_change(inference, base, probe, model_path)
    same_function(loaded if base is inference else base, model, probe, model_path)
    if units == 1:
        model = two_classes(model, probe, model_path)
    spec = spec.replace(output=output_kind(model, check, spec),
                        framing=framing(options.framing, spec, model_path))
    if options.value_range is None and str(loaded.inputs[0].dtype).startswith(("int", "uint")):
        log.info("value range: 0,255 for %s, which takes %s pixels", model_path.name,
                 loaded.inputs[0].dtype)
        spec = spec.replace(value_range=VALUE_RANGES[0])
    else:
        spec = spec.replace(value_range=pixel_scale(model, check, options.value_range, spec,
                                                    model_path))
    return ExportSource(model, model_path, spec, check, calibration)


def same_function(original: Any, rebuilt: Any, values: np.ndarray, path: Path) -> None:
    """The model export converts must compute what the user's model computes, to float error."""
    if rebuilt is original:
        return
    shape = tuple(original.inputs[0].shape[1:])
    inputs = values.reshape(len(values), *shape) if None not in shape else values
    expected = np.asarray(original.predict(inputs, batch_size=256, verbose=0))
    got = np.asarray(rebuilt.predict(values, batch_size=256, verbose=0))
    scale = max(1.0, float(np.abs(expected).max()))
    if expected.shape != got.shape or np.abs(expected - got).max() > FUNCTION_ATOL * scale:
        raise ExportError(f"{path.name}: the graph rebuilt for export does not compute what the "
                          "model does; export it with its input at a fixed image size instead")


def float32_change(mixed: Any, base: Any, values: np.ndarray, path: Path) -> None:
    """What computing in float32 changes, on the samples: the model exported and validated
    against is the float32 one."""
    shape = tuple(mixed.inputs[0].shape[1:])
    inputs = values.reshape(len(values), *shape) if None not in shape else values
    before = np.asarray(mixed.predict(inputs, batch_size=256, verbose=0), np.float64)
    after = np.asarray(base.predict(inputs, batch_size=256, verbose=0), np.float64)
    log.info("%s in float32 against its own mixed precision, on %d sample images: top-1 "
             "agreement %.2f %%, max |Δ| %.1e; files are validated against the float32 model",
             path.name, len(values), (before.argmax(1) == after.argmax(1)).mean() * 100,
             float(np.abs(before - after).max()))


def class_labels(samples: Samples, spec: ModelSpec, named: bool,
                 data: Path) -> tuple[tuple[str, ...], ImageSet]:
    """The label names, and class indices in the model's order, for class-folder samples."""
    names, images = samples.class_names, samples.images
    if names is None or images.labels is None:
        return spec.labels, images
    if named:  # --labels given: folders are matched by name
        index = {label: i for i, label in enumerate(spec.labels)}
        unknown = [name for name in names if name not in index]
        if unknown:
            raise CalibrationError(f"--calib-data {data}: class folder(s) "
                                   f"{', '.join(unknown)} are not among --labels "
                                   f"({', '.join(spec.labels)})")
        order = np.array([index[name] for name in names])
        return spec.labels, ImageSet(images.images, order[images.labels])
    if len(names) == spec.num_classes:
        log.info("labels: the class folders of %s in sorted order, as Keras numbers them (%s); "
                 "pass --labels to name them otherwise", data, ", ".join(names))
        return names, images
    if all(name.isdigit() and int(name) < spec.num_classes for name in names):
        order = np.array([int(name) for name in names])
        return spec.labels, ImageSet(images.images, order[images.labels])
    log.info("--calib-data %s has %d class folders but the model has %d outputs: checking "
             "agreement with Keras only (pass --labels to match folders by name)", data,
             len(names), spec.num_classes)
    return spec.labels, ImageSet(images.images, None)


def pixel_scale(model: Any, check: ImageSet, given: tuple[float, float] | None,
                spec: ModelSpec, path: Path) -> tuple[float, float]:
    """``--value-range`` or, unsaid, the scale under which the model reads the samples best.

    "Best" is the lowest log loss, not the highest accuracy: a ReLU network fed pixels 255
    times too large keeps most of its answers but becomes certain of every one of them, so
    only the confidence on the true class tells the scales apart.
    """
    if check.labels is None:
        if given is None:
            log.warning("hint: no labelled sample images to check the pixel scale on; assuming "
                        "%s takes 0-255 pixels (pass --value-range=0,1 if it was trained on "
                        "pixels/255 outside the model)", path.name)
        return given or VALUE_RANGES[0]
    probe = ImageSet(check.images[:SCALE_PROBE], check.labels[:SCALE_PROBE])
    candidates = VALUE_RANGES if given is None or given in VALUE_RANGES else (*VALUE_RANGES,
                                                                              given)
    scores = {scale: _scores(model, probe, spec.replace(value_range=scale))
              for scale in candidates}
    chosen = given or VALUE_RANGES[0]
    best = min(candidates, key=lambda scale: scores[scale][1])
    better = scores[best][1] <= LOSS_RATIO * scores[chosen][1]
    summary = "; ".join(f"{_range(s)}: {scores[s][0] * 100:.0f} % right, log loss "
                        f"{scores[s][1]:.2f}" for s in candidates)
    if given is not None:
        if better:
            log.warning("hint: %s reads %d labelled sample images better at --value-range=%s "
                        "than at --value-range=%s as given (%s)", path.name, len(probe),
                        _range(best), _range(given), summary)
        return given
    if better:
        chosen = best
    log.info("value range: %s assumed for %s, the pixel scale under which it reads %d labelled "
             "sample images best (%s); pass --value-range to set it", _range(chosen), path.name,
             len(probe), summary)
    return chosen


def _scores(model: Any, images: ImageSet, spec: ModelSpec) -> tuple[float, float]:
    """Accuracy and mean log loss (cross-entropy) of the model on labelled images."""
    reference = keras_reference(model, spec, images.images, images.labels)
    truth = reference.probs[np.arange(len(images)), images.labels]
    return reference.accuracy or 0.0, float(-np.log(np.clip(truth, 1e-7, 1.0)).mean())


def output_kind(model: Any, check: ImageSet, spec: ModelSpec) -> str:
    """``probabilities`` when the outputs on the samples are softmax rows, else ``logits``."""
    raw = np.asarray(model.predict(to_model_values(check.images[:SCALE_PROBE], spec),
                                   batch_size=256, verbose=0), np.float64)
    rows = raw.sum(axis=1)
    if raw.min() >= -PROBABILITY_TOLERANCE and np.allclose(rows, 1.0,
                                                           atol=PROBABILITY_TOLERANCE):
        return "probabilities"
    log.info("outputs: logits (rows do not sum to 1); the runtime applies softmax")
    return "logits"


def framing(given: str | None, spec: ModelSpec, path: Path) -> str:
    """``--framing``; unsaid, ``none``, with a hint when the model looks like an MNIST model."""
    if given is not None:
        return given
    if spec.input_shape == DIGIT_INPUT and spec.num_classes == DIGIT_CLASSES:
        log.warning("hint: %s looks like an MNIST digit model (28x28x1 input, 10 outputs); if it "
                    "reads handwritten digits, pass --framing digit so cameras cut digits out the "
                    "way MNIST was made (exporting with framing none)", path.name)
    return "none"


def _range(value_range: tuple[float, float]) -> str:
    return ",".join(f"{v:g}" for v in value_range)
