"""``load(path) -> Classifier``; ``predict(image)`` returns the top-k labels.

The classifier owns everything between an OpenCV image and a probability: the shared
preprocessing, the file's own input/output quantization, and softmax for logit models.
Callers never see int8.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from runtime.backends import Backend, open_backend
from runtime.errors import ImageError, SpecError
from runtime.framing import check_roi, frame_digit
from runtime.metadata import read_spec
from runtime.preprocess import (
    check_image,
    convert_color,
    prepare,
    prepare_batch,
    to_model_values,
)
from runtime.spec import ModelSpec, QuantParams

if TYPE_CHECKING:
    from runtime.selfcheck import SelfCheckResult

MAX_BATCH = 256  # larger batches are run in chunks: bounded memory on small devices
FRAMED_BORDER = 32  # a model-size image whose border is brighter (90th pct) is not framed


@dataclass(frozen=True)
class Prediction:
    """One of the top-k answers; ``index`` is the class's position in the model's output."""

    label: str
    probability: float
    index: int


@dataclass(frozen=True)
class FrameResult:
    predictions: list[Prediction]  # empty when a digit model saw no ink
    roi: tuple[int, int, int, int]
    ink_found: bool
    preprocess_ms: float
    inference_ms: float           # includes (de)quantization and top-k


class Classifier:
    """A model file plus its spec, ready to classify uint8 images of any size."""

    def __init__(self, backend: Backend, spec: ModelSpec, path: Path) -> None:
        self.backend, self.spec, self.path = backend, spec, path
        expected = spec.input_shape
        if tuple(backend.input_shape[1:]) != expected:
            raise SpecError(f"{path.name}: the spec describes {_shape(expected)} inputs but the "
                            f"model takes {_shape(backend.input_shape[1:])}")
        if backend.output_classes not in (None, spec.num_classes):
            raise SpecError(f"{path.name}: the spec lists {spec.num_classes} labels but the model "
                            f"has {backend.output_classes} outputs")
        self.input_quant = _quant_for(backend.input_dtype, backend.input_quant, spec.input_quant,
                                      path, "input")
        self.output_quant = _quant_for(backend.output_dtype, backend.output_quant,
                                       spec.output_quant, path, "output")
        # encode: uint8 pixels → engine input; decode: engine output → probabilities. Public
        # so benchmarks can time the engine alone on exactly what the classifier feeds it.
        self.encode = _input_encoder(spec, self.input_quant, backend.input_dtype)
        self.decode = _output_decoder(spec, self.output_quant)
        self._input_shape = spec.input_shape

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    def use_framing(self, framing: str) -> str:
        """Frame camera images with ``framing`` from now on, whatever the file's spec says (a
        digit model exported without ``--framing digit``, say); returns the framing it had."""
        before = self.spec.framing
        self.spec = self.spec.replace(framing=framing)  # validated: SpecError if unknown
        return before

    def predict(self, image: np.ndarray, top_k: int = 3, *, framed: bool | None = None,
                roi: Sequence[int] | None = None) -> list[Prediction]:
        """Top-k predictions for one uint8 grayscale, BGR or BGRA image of any size.

        Digit models (``spec.framing == "digit"``) read a photo the way
        ``python -m runtime predict`` and the camera demo do: the digit is cut out and
        centred like MNIST (:meth:`classify_frame`), and blank paper gives ``[]``. An image
        already at the model's input size (28×28) with a black margin is taken as framed
        and used as it is (dark ink on light paper at that size is framed like a photo);
        ``framed=True`` says the same of another size, ``framed=False`` frames any image.
        ``roi`` (x, y, w, h) is where to look in a photo; other models resize the whole image,
        or the ``roi``.
        """
        pixels = self.model_pixels(image, framed=framed, roi=roi)
        return [] if pixels is None else self.top(self.probabilities(pixels[None])[0], top_k)

    def model_pixels(self, image: np.ndarray, *, framed: bool | None = None,
                     roi: Sequence[int] | None = None) -> np.ndarray | None:
        """What the model sees of one image, as :meth:`predict` decides it: (H, W, C) uint8
        model input, or None when a digit model finds no ink. Bulk prediction prepares
        images with this in reader threads and batches the engine calls."""
        check_framed_roi(framed, roi)
        if roi is not None or self._needs_framing(image, framed):
            _, ink_found, cut = self._cut(image, roi)
            return prepare(cut, self.spec) if ink_found else None
        return prepare(image, self.spec)

    def predict_batch(self, images: Sequence[np.ndarray] | np.ndarray, top_k: int = 3, *,
                      framed: bool | None = None) -> list[list[Prediction]]:
        """:meth:`predict` for many images; images needing no framing run as one batch."""
        if any(self._needs_framing(image, framed) for image in images):
            return [self.predict(image, top_k, framed=framed) for image in images]
        return [self.top(row, top_k) for row in self.probabilities(prepare_batch(images,
                                                                                 self.spec))]

    def _needs_framing(self, image: object, framed: bool | None) -> bool:
        if self.spec.framing != "digit" or framed is True:
            return False
        if framed is False or np.shape(image)[:2] != self._input_shape[:2]:
            return True
        return framed is None and _paper_border(image)

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        """Class probabilities for prepared model inputs: (N, H, W, C) uint8 → (N, classes)."""
        if pixels.dtype != np.uint8 or pixels.shape[1:] != self._input_shape:
            raise ImageError(f"model inputs must be uint8 {_shape(self.spec.input_shape)}, got "
                             f"{pixels.dtype} {_shape(pixels.shape[1:])}; use predict() for "
                             "images of other sizes")
        if 0 < len(pixels) <= MAX_BATCH:  # the per-frame path: no chunking, no concatenation
            return self._run(pixels)
        chunks = [self._run(pixels[i:i + MAX_BATCH]) for i in range(0, len(pixels), MAX_BATCH)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.spec.num_classes),
                                                              np.float32)

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        return self.decode(self.backend.run(self.encode(pixels)))

    def classify_frame(self, frame: np.ndarray, roi: Sequence[int] | None = None,
                       top_k: int = 3) -> FrameResult:
        """A camera frame → top-k, timed per stage.

        Digit models (``spec.framing == "digit"``) see the ROI cut and centred like MNIST;
        blank paper gives no predictions. Other models see the ROI (default: whole frame).
        """
        started = time.perf_counter()
        region, ink_found, image = self._cut(frame, roi)
        pixels = prepare(image, self.spec)[None]
        prepared = time.perf_counter()
        predictions = self.top(self.probabilities(pixels)[0], top_k) if ink_found else []
        done = time.perf_counter()
        return FrameResult(predictions, region, ink_found, (prepared - started) * 1e3,
                           (done - prepared) * 1e3)

    def _cut(self, frame: np.ndarray, roi: Sequence[int] | None,
             ) -> tuple[tuple[int, int, int, int], bool, np.ndarray]:
        """(region, ink found?, image to prepare): the digit cut and centred like MNIST for
        digit models, else the ROI (default: the whole frame)."""
        if self.spec.framing == "digit":
            framed = frame_digit(frame, roi)
            return tuple(framed.roi), framed.ink_found, framed.image  # type: ignore[return-value]
        frame = check_image(frame, "frame")
        height, width = frame.shape[:2]
        region = check_roi(tuple(roi) if roi is not None else (0, 0, width, height),
                           height, width)
        x, y, w, h = region
        return region, True, frame[y:y + h, x:x + w]

    def top(self, probs: np.ndarray, top_k: int) -> list[Prediction]:
        """The ``top_k`` most probable classes of one probability row, best first."""
        k = max(1, min(top_k, len(probs)))
        order = np.argsort(-probs, kind="stable")[:k]
        return [Prediction(self.spec.labels[i], float(probs[i]), int(i)) for i in order]

    def self_check(self, fallback: bool = True) -> SelfCheckResult:
        """Run the reference set embedded at export, here (``runtime.selfcheck``). A LiteRT
        file that fails with XNNPACK switches to other kernels when they pass."""
        from runtime.selfcheck import self_check

        return self_check(self, fallback)

    def __repr__(self) -> str:
        return f"Classifier({self.path.name}, {self.backend.name}, {self.spec.precision})"


def load(path: str | os.PathLike[str], threads: int | None = None,
         framing: str | None = None) -> Classifier:
    """Load a ``.onnx`` (onnxruntime) or ``.tflite`` (LiteRT) file and its embedded spec;
    ``framing`` ("digit" or "none") overrides the spec's for this classifier."""
    path = Path(path)
    backend = open_backend(path, threads)
    classifier = Classifier(backend, read_spec(path, backend.embedded_spec), path)
    if framing is not None:
        classifier.use_framing(framing)
    return classifier


def _paper_border(image: object) -> bool:
    """Whether a model-size image is not a framed digit: framed digits (MNIST's and the
    framing's) have a black margin, so any brighter border (a crop of paper, even grey paper
    in dim light) means the image must be framed like a photo."""
    gray = convert_color(check_image(image), "grayscale")[:, :, 0]
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return float(np.percentile(border, 90)) > FRAMED_BORDER


def check_framed_roi(framed: bool | None, roi: Sequence[int] | None) -> None:
    """A framed image is used whole, so it cannot also have a region to look in."""
    if roi is not None and framed:
        raise ImageError("roi selects where to look in a photo; a framed image is used "
                         "whole: pass one or the other")


def _input_encoder(spec: ModelSpec, quant: QuantParams | None,
                   dtype: np.dtype) -> Callable[[np.ndarray], np.ndarray]:
    """uint8 pixels → what the engine takes. Exact shortcuts where pixels already are it."""
    raw_pixels = tuple(spec.value_range) == (0.0, 255.0)
    if quant is not None and raw_pixels and quant.scale == 1.0:
        if quant.dtype == "uint8" and quant.zero_point == 0:
            return lambda pixels: pixels
        if quant.dtype == "int8" and quant.zero_point == -128:
            return lambda pixels: (pixels ^ np.uint8(0x80)).view(np.int8)  # pixel - 128, exact
    if quant is not None:
        return lambda pixels: quant.quantize(to_model_values(pixels, spec))
    if raw_pixels:
        return lambda pixels: pixels.astype(dtype)
    return lambda pixels: to_model_values(pixels, spec).astype(dtype, copy=False)


def _output_decoder(spec: ModelSpec,
                    quant: QuantParams | None) -> Callable[[np.ndarray], np.ndarray]:
    """Engine output → probabilities. Integer outputs go through a 256-entry table: one
    indexing op instead of a cast, a subtraction and a multiplication per frame."""
    if quant is not None:
        codes = np.arange(256, dtype=np.uint8).view(quant.dtype)
        table = quant.dequantize(codes)

        def dequantize(raw: np.ndarray) -> np.ndarray:
            return table[raw.view(np.uint8)]
    else:
        def dequantize(raw: np.ndarray) -> np.ndarray:
            return raw.astype(np.float32, copy=False)
    if spec.output == "logits":
        return lambda raw: softmax(dequantize(raw))
    return dequantize


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _quant_for(dtype: np.dtype, from_file: QuantParams | None, from_spec: QuantParams | None,
               path: Path, which: str) -> QuantParams | None:
    """Integer tensors need a scale and zero point: the file's own first, else the spec's."""
    if dtype not in (np.int8, np.uint8):
        return None
    params = from_file or from_spec
    if params is None:
        raise SpecError(f"{path.name}: the model's {which} is {dtype.name} but neither the file "
                        "nor its spec gives a scale and zero point")
    if params.dtype != dtype.name:
        raise SpecError(f"{path.name}: the spec quantizes the {which} as {params.dtype} but the "
                        f"model's {which} is {dtype.name}")
    return params


def _shape(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)
