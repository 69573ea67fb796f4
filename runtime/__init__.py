"""edgecnn's device runtime: TensorFlow-free inference with onnxruntime or LiteRT.

    >>> import runtime
    >>> classifier = runtime.load("model.int8.tflite")
    >>> classifier.predict(image)   # uint8 grayscale or BGR, any size
    [Prediction(label='7', probability=0.98, index=7), ...]
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
