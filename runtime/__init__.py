"""edgecnn's device runtime: TensorFlow-free inference with onnxruntime or LiteRT.

    >>> import runtime
    >>> classifier = runtime.load("model.int8.tflite")
    >>> classifier.predict(image)   # uint8 grayscale, BGR or BGRA photo, any size
    [Prediction(label='7', probability=0.98, index=7), ...]

Digit models frame a photo first (cut out and centre the digit, as MNIST was made), the
same way ``python -m runtime predict`` and the camera demo do; an image already at the
model's input size with a black margin (light ink on black), or passed with ``framed=True``,
is used as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from runtime.errors import (
    BundleError,
    EdgeCNNError,
    ImageError,
    ModelFileError,
    SourceError,
    SpecError,
)
from runtime.spec import ModelSpec, QuantParams

__all__ = [
    "BundleError",
    "Classifier",
    "EdgeCNNError",
    "ImageError",
    "ModelFileError",
    "ModelSpec",
    "Prediction",
    "QuantParams",
    "SourceError",
    "SpecError",
    "load",
]

if TYPE_CHECKING:
    from runtime.classifier import Classifier, Prediction, load


def __getattr__(name: str) -> Any:
    """The classifier (and with it OpenCV and an inference engine) is imported on first use,
    so that ``python -m runtime`` can name a missing package in one line instead of failing
    while the package itself is imported."""
    if name in ("Classifier", "Prediction", "load"):
        from runtime import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
