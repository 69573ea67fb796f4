"""The model's self-description: what it expects as input and what its outputs mean.

A spec travels with every model: ``spec.json`` in a bundle, embedded metadata inside each
exported ``.onnx``/``.tflite`` file, and a sidecar ``<file>.json``. Anything that feeds the
model (training, calibration, evaluation, the device runtime) reads its input contract here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.errors import SpecError

SCHEMA_VERSION = 1
METADATA_KEY = "edgecnn.spec"  # key of the embedded spec in ONNX metadata_props and TFLite metadata

COLOR_CHANNELS = {"grayscale": 1, "rgb": 3}
INTERPOLATIONS = ("area", "linear", "nearest", "cubic")
FRAMINGS = ("none", "digit")  # "digit": camera frames are cut and centred the way MNIST was
OUTPUTS = ("probabilities", "logits")


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization of one tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int
    dtype: str  # "int8" or "uint8"

    def __post_init__(self) -> None:
        if self.dtype not in ("int8", "uint8"):
            raise SpecError(f"quantized dtype must be int8 or uint8, got {self.dtype!r}")
        if not self.scale > 0:
            raise SpecError(f"quantization scale must be positive, got {self.scale!r}")

    def quantize(self, real: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        q = np.rint(np.asarray(real, np.float32) / self.scale) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (np.asarray(q, np.float32) - self.zero_point) * np.float32(self.scale)

    def to_dict(self) -> dict[str, Any]:
        return {"scale": float(self.scale), "zero_point": int(self.zero_point), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantParams:
        try:
            return cls(float(data["scale"]), int(data["zero_point"]), str(data["dtype"]))
        except SpecError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SpecError(f"invalid quantization parameters {data!r}: {exc}") from None


@dataclass(frozen=True)
class ModelSpec:
    """Input contract and label map of one classifier."""

    labels: tuple[str, ...]
    height: int
    width: int
    color: str = "grayscale"
    interpolation: str = "area"
    value_range: tuple[float, float] = (0.0, 255.0)  # what pixel 0 and pixel 255 become
    framing: str = "none"
    output: str = "probabilities"
    architecture: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"
    input_quant: QuantParams | None = None
    output_quant: QuantParams | None = None
    quantization: dict[str, Any] = field(default_factory=dict)  # how an int8 file was made
    version: str = ""  # which trained weights: export sets the Keras file's SHA-256 prefix
    # Below this top-1 probability an app should say "not sure": chosen on the validation
    # split when the model was trained (None: never chosen, e.g. a model trained elsewhere).
    min_confidence: float | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if not self.labels or not all(isinstance(label, str) for label in self.labels):
            raise SpecError(f"spec labels must be a non-empty list of strings, got {self.labels!r}")
        for name in ("height", "width"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise SpecError(f"spec {name} must be a positive integer, got {value!r}")
        _check_choice("color", self.color, tuple(COLOR_CHANNELS))
        _check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        _check_choice("framing", self.framing, FRAMINGS)
        _check_choice("output", self.output, OUTPUTS)
        low, high = self.value_range
        if not high > low:
            raise SpecError(f"spec value_range must be (low, high) with high > low, got "
                            f"{self.value_range}")
        if self.min_confidence is not None and (
                isinstance(self.min_confidence, bool)
                or not isinstance(self.min_confidence, int | float)
                or not 0 <= self.min_confidence <= 1):
            raise SpecError(f"spec min_confidence must be a probability from 0 to 1, got "
                            f"{self.min_confidence!r}")
        if self.schema_version > SCHEMA_VERSION:
            raise SpecError(f"spec schema version {self.schema_version} is newer than this edgecnn "
                            f"understands ({SCHEMA_VERSION}); upgrade edgecnn")

    @property
    def channels(self) -> int:
        return COLOR_CHANNELS[self.color]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one model input, height × width × channels (NHWC without the batch)."""
        return (self.height, self.width, self.channels)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def replace(self, **changes: Any) -> ModelSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["labels"] = list(self.labels)
        data["value_range"] = [float(v) for v in self.value_range]
        data["channels"] = self.channels  # redundant with color, but handy for other tools
        data["input_quant"] = self.input_quant.to_dict() if self.input_quant else None
        data["output_quant"] = self.output_quant.to_dict() if self.output_quant else None
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Build and validate a spec; any malformed field is a SpecError, never a TypeError."""
        if not isinstance(data, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(data).__name__}")
        missing = {"labels", "height", "width"} - set(data)
        if missing:
            raise SpecError(f"spec is missing {', '.join(sorted(missing))}")
        try:
            return cls(**_fields(data))
        except SpecError:
            raise
        except (TypeError, ValueError, KeyError) as exc:
            raise SpecError(f"invalid spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelSpec:
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"spec is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    """The constructor's keyword arguments from JSON-shaped data (unknown keys ignored)."""
    known = {f.name for f in dataclasses.fields(ModelSpec)}
    kwargs = {key: value for key, value in data.items() if key in known}
    labels = kwargs["labels"]
    kwargs["labels"] = tuple(labels) if isinstance(labels, list | tuple) else ()
    if "value_range" in kwargs:
        value_range = kwargs["value_range"]
        if not (isinstance(value_range, list | tuple) and len(value_range) == 2
                and all(_is_number(v) for v in value_range)):
            raise SpecError(f"spec value_range must be [low, high], two numbers; got "
                            f"{value_range!r}")
        kwargs["value_range"] = (float(value_range[0]), float(value_range[1]))
    if "schema_version" in kwargs and not (isinstance(kwargs["schema_version"], int)
                                           and not isinstance(kwargs["schema_version"], bool)):
        raise SpecError(f"spec schema_version must be a whole number; got "
                        f"{kwargs['schema_version']!r}")
    for key in ("input_quant", "output_quant"):
        if kwargs.get(key) is not None:
            kwargs[key] = QuantParams.from_dict(kwargs[key])
    if "channels" in data and data.get("color") is None:
        kwargs["color"] = "grayscale" if data["channels"] == 1 else "rgb"
    for key in ("dataset", "quantization"):
        if not isinstance(kwargs.get(key, {}), dict):
            raise SpecError(f"spec {key} must be an object")
    return kwargs


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecError(f"spec {name} must be one of {', '.join(choices)}; got {value!r}")
