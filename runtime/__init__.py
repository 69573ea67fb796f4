"""edgecnn's device runtime: TensorFlow-free inference with onnxruntime or LiteRT.

    >>> import runtime
    >>> classifier = runtime.load("model.int8.tflite")
    >>> classifier.predict(image)   # uint8 grayscale, BGR or BGRA photo, any size
    [Prediction(label='7', probability=0.98, index=7), ...]

Digit models frame a photo first (cut out and centre the digit, as MNIST was made), the
same way ``python -m runtime predict`` and the camera demo do; an image already at the
model's input size, or passed with ``framed=True``, is used as it is.
"""

from runtime.classifier import Classifier, Prediction, load
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
