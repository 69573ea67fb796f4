"""Export's named errors: bad input (exit 2). A file that fails validation is not an error
here; it is a rejected result in the report (exit 1)."""

from runtime.errors import EdgeCNNError


class ExportError(EdgeCNNError):
    """The model, its data or a conversion cannot be exported as asked."""


class UnsupportedModelError(ExportError):
    """The model is not a single-input NHWC image classifier, or uses ops the target lacks."""


class CalibrationError(ExportError):
    """Too few (or unusable) calibration images."""
