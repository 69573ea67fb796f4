"""What an exported file says about itself in the formats' own metadata fields.

The edgecnn spec rides in every file for our runtime; these are the words and numbers other
tools show (Netron, onnxruntime's ``get_modelmeta``, MediaPipe, Android Studio's model
viewer). One description for every format, so the files of one export tell the same story.
"""

from __future__ import annotations

from importlib import metadata

from runtime.spec import ModelSpec

PRODUCER = "edgecnn"
LABELS_KEY = "labels"  # ONNX metadata_props: the class names as a JSON array of strings
VERSION_DIGITS = 12    # hex digits of the Keras file's SHA-256 that name a trained model


def producer_version() -> str:
    """The installed edgecnn's version, or "unknown" when run from a bare checkout."""
    try:
        return metadata.version(PRODUCER)
    except metadata.PackageNotFoundError:
        return "unknown"


def model_version_number(spec: ModelSpec) -> int:
    """``spec.version`` (hex digits) as the integer ONNX's ``model_version`` takes; 0 if none."""
    try:
        return int(spec.version, 16) if spec.version else 0
    except ValueError:
        return 0


def title(spec: ModelSpec) -> str:
    return f"{spec.architecture or 'edgecnn'} image classifier"


def description(spec: ModelSpec, input_note: str) -> str:
    """One paragraph: what goes in (``input_note``: the file's own input tensor), what comes
    out, what the model was trained on, and what a client must do that the graph does not."""
    labels = ", ".join(spec.labels[:12]) + (", …" if spec.num_classes > 12 else "")
    dataset = spec.dataset.get("name")
    parts = [f"{title(spec)} made with edgecnn {producer_version()}"
             + (f", trained on {dataset}" if dataset else "") + ".",
             f"Input: {input_note}.",
             f"Output: probabilities of {spec.num_classes} classes ({labels}).",
             f"Images are resized to {spec.width}x{spec.height} with "
             f"{spec.interpolation} interpolation."]
    if spec.framing == "digit":
        parts.append("It reads one handwritten digit cut and centred the way MNIST was made "
                     "(edgecnn's runtime does this to camera frames); other clients should "
                     "pass such a crop.")
    if spec.version:
        parts.append(f"Version {spec.version}: the first {VERSION_DIGITS} hex digits of the "
                     "trained Keras model's SHA-256.")
    return " ".join(parts)
