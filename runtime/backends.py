"""onnxruntime and LiteRT behind one small interface.

A backend runs a batch already in the model's input dtype and returns the raw output; the
:class:`~runtime.classifier.Classifier` does the (de)quantization around it. Engines are
imported only when a file of their kind is loaded, so ``import runtime`` stays light.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from types import ModuleType

import numpy as np

from runtime.errors import MissingPackageError, ModelFileError, first_line
from runtime.metadata import onnx_metadata, tflite_metadata
from runtime.optional import require
from runtime.quiet import native_stderr_silenced
from runtime.spec import QuantParams

SUFFIXES = {".onnx": "onnxruntime", ".tflite": "litert"}
# LiteRT kernel sets, fastest first: the XNNPACK delegate (LiteRT's default), the built-in
# optimized kernels without it, the reference kernels (slowest, simplest). The self-check
# moves down this list when a file misbehaves with one (runtime/selfcheck.py).
LITERT_KERNELS = ("xnnpack", "builtin", "reference")
TFLITE_USE = "to run .tflite models"
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))  # more only stalls: pools are pre-spawned


class Backend(ABC):
    """One loaded model file."""

    name: str
    input_dtype: np.dtype
    output_dtype: np.dtype
    input_shape: tuple[int | None, ...]   # NHWC; None for a dynamic batch
    output_classes: int | None = None     # width of the (batch, classes) output, when static
    input_quant: QuantParams | None = None   # what the file itself says, when it says it
    output_quant: QuantParams | None = None
    embedded_spec: str | None = None
    engine: str = ""                      # the engine package and version that runs the file

    def metadata(self, key: str) -> str | None:
        """Another entry of the file's embedded metadata (the spec is ``embedded_spec``)."""
        return None

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (N, H, W, C) of ``input_dtype``; return the raw (N, classes) output."""


def open_backend(path: str | os.PathLike[str], threads: int | None = None,
                 kernels: str = "xnnpack") -> Backend:
    """Load ``path`` with the engine its suffix names; every failure is a ModelFileError."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in SUFFIXES)
        raise ModelFileError(f"{path} is a folder, not a model file; pass one of its files"
                             f" ({', '.join(found)})" if found else
                             f"{path} is a folder with no .onnx or .tflite file in it; pass a "
                             "model file")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None and not path.exists():
        raise ModelFileError(f"cannot read model {path}: no such file")
    if kind is None:
        raise ModelFileError(f"{path}: unknown model type "
                             f"{repr(path.suffix) if path.suffix else '(no suffix)'}; expected "
                             ".onnx (onnxruntime) or .tflite (LiteRT)")
    if threads is not None and not 1 <= threads <= MAX_THREADS:
        raise ModelFileError(f"threads={threads}: use 1 to {MAX_THREADS}, or leave it out for "
                             "the engine's default")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read model {path}: {exc.strerror or exc}") from None
    if not data:
        raise ModelFileError(f"{path} is empty; export the model again")
    try:
        if kind == "onnxruntime":
            return OnnxBackend(data, threads)
        return LiteRTBackend(data, threads, kernels)
    except MissingPackageError:  # the engine is absent: not the file's fault
        raise
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except Exception as exc:  # engines raise many types for corrupt files; all mean the same
        raise ModelFileError(f"{path} is not a loadable {path.suffix} model (truncated or "
                             f"corrupt?): {first_line(exc)}") from None


_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(float16)": np.float16,
               "tensor(double)": np.float64}


def _onnx_dtype(kind: str, tensor_type: str) -> np.dtype:
    """The numpy type of an image classifier's input or output, or a clear refusal."""
    if tensor_type not in _ONNX_TYPES:
        known = ", ".join(t[7:-1] for t in _ONNX_TYPES)
        raise ModelFileError(f"its {kind} is {tensor_type}; an image classifier's {kind} must "
                             f"be one of {known}")
    return np.dtype(_ONNX_TYPES[tensor_type])


class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model: bytes, threads: int | None) -> None:
        self.session = onnx_session(model, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(f"expected one input and one output, found {len(inputs)} "
                                 f"and {len(outputs)}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_dtype = _onnx_dtype("input", inputs[0].type)
        self.output_dtype = _onnx_dtype("output", outputs[0].type)
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        width = outputs[0].shape[-1] if outputs[0].shape else None
        self.output_classes = width if isinstance(width, int) else None
        self.embedded_spec = onnx_metadata(self.session)
        self.engine = f"onnxruntime {_version('onnxruntime')}"

    def metadata(self, key: str) -> str | None:
        return onnx_metadata(self.session, key)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]


def onnx_session(model: bytes | str | os.PathLike[str], threads: int | None,
                 level: object = None, optimized_to: Path | None = None) -> object:
    """An onnxruntime CPU session set up as edgecnn runs every ONNX file: graph optimization
    ``level`` (default: all), ``threads`` intra-op threads, one inter-op thread, no spinning.
    ``optimized_to`` also saves the optimized graph there, to measure loading it."""
    ort = require("onnxruntime", "to run .onnx models")
    options = ort.SessionOptions()
    options.graph_optimization_level = level if level is not None else \
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors surface as exceptions, not console noise
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    # Spinning threads burn a core between frames, and a camera loop has gaps.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if optimized_to is not None:
        options.optimized_model_filepath = str(optimized_to)
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class LiteRTBackend(Backend):
    name = "litert"

    def __init__(self, model: bytes, threads: int | None, kernels: str = "xnnpack") -> None:
        if kernels not in LITERT_KERNELS:
            raise ModelFileError(f"kernels {kernels!r}: choose from {', '.join(LITERT_KERNELS)}")
        engine = litert_engine()
        self.embedded_spec = tflite_metadata(model)  # also rejects non-TFLite bytes early
        self._model, self._threads, self.kernels = model, threads, kernels
        self.engine = f"{engine.__name__.split('.')[0]} {_version(engine.__name__)}"
        resolver = {"xnnpack": "AUTO", "builtin": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
                    "reference": "BUILTIN_REF"}[kernels]
        try:
            with native_stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate" each load
                self.interpreter = engine.Interpreter(
                    model_content=model, num_threads=threads,
                    experimental_op_resolver_type=getattr(engine.OpResolverType, resolver))
                self.interpreter.allocate_tensors()
        except ValueError as exc:
            if "Didn't find op" not in str(exc):  # not an old engine: a corrupt file
                raise
            wanted = (tflite_metadata(model, "min_runtime_version") or "?").strip("\0 ")
            raise ModelFileError(f"needs a newer LiteRT than {self.engine} (the file asks for "
                                 f"{wanted}): {first_line(exc)}") from None
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelFileError(f"expected one input and one output, found {len(inputs)} "
                                 f"and {len(outputs)}")
        self._input, self._output = inputs[0], outputs[0]
        self.input_dtype = np.dtype(self._input["dtype"])
        self.output_dtype = np.dtype(self._output["dtype"])
        self.input_shape = (None, *map(int, self._input["shape"][1:]))
        self.output_classes = int(self._output["shape"][-1])
        self.input_quant = _tflite_quant(self._input)
        self.output_quant = _tflite_quant(self._output)
        self._batch = int(self._input["shape"][0])

    def metadata(self, key: str) -> str | None:
        return tflite_metadata(self._model, key)

    def with_kernels(self, kernels: str) -> LiteRTBackend:
        """The same file on another kernel set (see ``LITERT_KERNELS``)."""
        return LiteRTBackend(self._model, self._threads, kernels)

    def run(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) != self._batch:  # the interpreter has a fixed batch; resize on change
            self.interpreter.resize_tensor_input(self._input["index"], list(batch.shape))
            self.interpreter.allocate_tensors()
            self._batch = len(batch)
        self.interpreter.set_tensor(self._input["index"], batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output["index"])


def litert_engine() -> ModuleType:
    """LiteRT's interpreter module: ai-edge-litert, else tflite-runtime (the only LiteRT
    wheel for 32-bit ARM; same Interpreter API, TFLite files only)."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter  # type: ignore[no-redef]
        except ImportError:  # neither: name the usual one, and why it failed
            return require("ai_edge_litert.interpreter", f"{TFLITE_USE} (on 32-bit ARM, "
                           "tflite-runtime does instead)")
    return interpreter


def _version(module: str) -> str:
    return getattr(sys.modules.get(module.split(".")[0]), "__version__", "?")


def _tflite_quant(detail: dict) -> QuantParams | None:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    dtype = np.dtype(detail["dtype"])
    if dtype not in (np.int8, np.uint8) or not scale:
        return None
    return QuantParams(float(scale), int(zero_point), dtype.name)
