"""Layer-by-layer quantization error of an int8 file: where does int8 lose the signal?

Each engine is asked with its own tool: onnxruntime's ``qdq_loss_debug`` (every tensor of
the QDQ graph beside the float graph's), and for TFLite the interpreter's intermediate
tensors (``experimental_preserve_all_tensors``) of the int8 and float files, matched by
tensor name. Per quantized tensor two figures, as SQNR in dB (higher is better):

* ``sqnr_db``: the int8 file's tensor against the float file's, i.e. all error so far;
* ``local_sqnr_db``: the float tensor against itself rounded to this tensor's own int8 grid,
  i.e. the error this tensor's scale and zero point add on their own, averaged over channels
  (each channel's noise relative to its own signal): an outlier channel that stretches the
  range drowns the others while the whole tensor's SQNR still looks fine. A low figure here
  names the layer at fault.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.layers import layer_of, node_layer
from runtime.quiet import native_stderr_silenced

MAX_DB = 99.0          # an exact tensor (pixels, a max-pool of exact values) has no noise
DEAD_CHANNEL = 1e-6    # a channel with this share of the median channel's power carries nothing
DIAGNOSIS_IMAGES = 32  # × thousands of activations each: stable figures, a fraction of a second


@dataclass
class LayerError:
    layer: str                 # the Keras layer, or the engine's tensor name when unknown
    op: str                    # the engine's op that produced the tensor
    tensor: str
    sqnr_db: float
    local_sqnr_db: float
    nodes: list[str] = field(default_factory=list)  # what float fallback would exclude

    @property
    def label(self) -> str:
        return f"{self.layer} ({self.op})"


@dataclass
class Diagnosis:
    file: str
    engine: str
    images: int
    layers: list[LayerError]
    error: str | None = None  # why the engine could not be asked, when it could not

    def worst(self, count: int = 3) -> list[LayerError]:
        """The layers whose own quantization loses the most, worst first."""
        return sorted(self.layers, key=lambda e: e.local_sqnr_db)[:count]

    def summary(self, count: int = 3) -> str:
        return ", ".join(f"{e.layer} {e.local_sqnr_db:.1f} dB" for e in self.worst(count))

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "engine": self.engine, "images": self.images,
                "metric": "SQNR dB (int8 vs float; local: this tensor's own rounding)",
                "layers": [asdict(e) for e in self.layers], "error": self.error}


def sqnr_db(reference: np.ndarray, approximation: np.ndarray) -> float:
    """20·log10(‖x‖ / ‖x − x̂‖), capped at :data:`MAX_DB` (onnxruntime's definition)."""
    reference = np.asarray(reference, np.float64).ravel()
    noise = float(np.linalg.norm(reference - np.asarray(approximation, np.float64).ravel()))
    signal = float(np.linalg.norm(reference))
    if noise <= signal * 10 ** (-MAX_DB / 20):
        return MAX_DB
    return round(20 * np.log10(max(signal, 1e-30) / noise), 2)


def channel_sqnr_db(reference: np.ndarray, approximation: np.ndarray, axis: int) -> float:
    """SQNR with every channel weighted alike: −10·log10(mean over channels of noise/signal).

    A channel's ratio is capped at 1 (it cannot lose more than all of itself), and channels
    with almost no signal (dead ReLUs) are left out: "almost none" is measured against the
    median channel that has any signal, not the loudest, which may be the very outlier (a
    thousand times the others' amplitude) that rounds every other channel to zero.
    """
    reference = np.asarray(reference, np.float64)
    if reference.ndim < 2:
        return sqnr_db(reference, approximation)
    reference = np.moveaxis(reference, axis, -1).reshape(-1, reference.shape[axis])
    noise = np.moveaxis(np.asarray(approximation, np.float64), axis, -1).reshape(
        reference.shape) - reference
    signal = (reference ** 2).mean(0)
    if not (signal > 0).any():
        return MAX_DB
    # The median of the channels with any signal: a ReLU layer with most channels exactly
    # dead has a median of 0, which once counted every nearly dead channel as alive.
    typical = float(np.median(signal[signal > 0]))
    alive = signal > max(typical * DEAD_CHANNEL, float(signal.max()) * 1e-12)  # the loudest
    ratio = np.minimum((noise[:, alive] ** 2).mean(0) / signal[alive], 1.0).mean()
    return MAX_DB if ratio <= 10 ** (-MAX_DB / 10) else round(float(-10 * np.log10(ratio)), 2)


def fake_quant(values: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    info = np.iinfo(dtype)
    q = np.clip(np.rint(values / scale) + zero_point, info.min, info.max)
    return (q - zero_point) * scale


def sample(images: np.ndarray, count: int = DIAGNOSIS_IMAGES) -> np.ndarray:
    step = max(1, len(images) // count)
    return images[::step][:count]


def diagnose_onnx(name: str, float_path: Path, qdq_path: Path, values: np.ndarray) -> Diagnosis:
    """``float_path``/``qdq_path``: the graphs :func:`export.onnx.export_int8` leaves in its
    workdir; ``values``: float model inputs."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import qdq_loss_debug as debug

    graph = onnx.load(str(float_path)).graph
    qdq = onnx.load(str(qdq_path)).graph
    input_name = graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        activations = []
        for model in (float_path, qdq_path):
            augmented = Path(tmp) / f"{model.stem}.augmented.onnx"
            debug.modify_model_output_intermediate_tensors(str(model), str(augmented))
            activations.append(debug.collect_activations(str(augmented),
                                                         [{input_name: values}]))
    matched = debug.create_activation_matching(activations[1], activations[0])
    constants = {i.name: numpy_helper.to_array(i) for i in qdq.initializer}
    grids = {}  # tensor → (scale, zero point, dtype) of the QuantizeLinear that rounds it
    for node in qdq.node:
        if node.op_type == "QuantizeLinear" and node.input[1] in constants \
                and len(node.input) > 2 and node.input[2] in constants:
            zero = constants[node.input[2]]
            grids[node.input[0]] = (float(constants[node.input[1]]), int(zero), zero.dtype.name)
    shapes = _onnx_shapes(graph)
    producers = {out: node for node in graph.node for out in node.output}
    order = {out: i for i, node in enumerate(graph.node) for out in node.output}
    errors = []
    for tensor in sorted(matched, key=lambda t: order.get(t, -1)):
        match = matched[tensor]
        if "float" not in match or tensor not in grids:
            continue
        reference = match["float"][0]
        shape = shapes.get(tensor)
        if shape is not None and int(np.prod(shape)) * len(values) == reference.size:
            reference = reference.reshape(len(values), *shape)
        producer = producers.get(tensor)
        consumers = [n.name for n in graph.node if tensor in n.input]
        layer = (node_layer(producer.name) if producer is not None else None) or \
            next(filter(None, map(node_layer, consumers)), None) or tensor
        own = fake_quant(reference, *grids[tensor])
        errors.append(LayerError(
            layer=layer, op=producer.op_type if producer is not None else "input",
            tensor=tensor, sqnr_db=sqnr_db(reference, match["post_qdq"][0]),
            local_sqnr_db=channel_sqnr_db(reference, own, axis=1),  # NCHW, or (N, features)
            nodes=([producer.name] if producer is not None else []) + consumers))
    return Diagnosis(name, "onnxruntime", len(values), errors)


def _onnx_shapes(graph: Any) -> dict[str, tuple[int, ...]]:
    """Static per-image shapes (batch left out) from the pre-processed graph's shape info."""
    shapes = {}
    for info in (*graph.value_info, *graph.input, *graph.output):
        dims = [d.dim_value for d in info.type.tensor_type.shape.dim]
        if len(dims) > 1 and all(d > 0 for d in dims[1:]):
            shapes[info.name] = tuple(dims[1:])
    return shapes


def diagnose_tflite(name: str, float_model: bytes, int8_model: bytes, values: np.ndarray,
                    known_layers: Iterable[str] | None = None) -> Diagnosis:
    """Run both files with every intermediate tensor kept, and compare them tensor by tensor."""
    known = list(known_layers) if known_layers is not None else None
    floats = {t["name"]: t for t in _tflite_tensors(float_model, values)}
    errors = []
    for tensor in _tflite_tensors(int8_model, values):
        scale, zero_point = tensor["quantization"]
        reference = floats.get(tensor["name"])
        if reference is None or not scale or tensor["value"].dtype not in (np.int8, np.uint8):
            continue
        quantized = (tensor["value"].astype(np.float64) - zero_point) * scale
        own = fake_quant(reference["value"], scale, zero_point, tensor["value"].dtype.name)
        # The converter names the graph's output tensor after no layer
        # ("StatefulPartitionedCall_1:0"): it is the last layer's.
        last = known[-1] if known and tensor["output"] else None
        errors.append(LayerError(
            layer=layer_of(tensor["name"], known) or layer_of(tensor["name"]) or last
            or tensor["name"],
            op=tensor["op"], tensor=tensor["name"],
            sqnr_db=sqnr_db(reference["value"], quantized),
            local_sqnr_db=channel_sqnr_db(reference["value"], own, axis=-1),  # NHWC
            nodes=[tensor["name"]]))
    return Diagnosis(name, "litert", len(values), errors)


def _tflite_tensors(model: bytes, values: np.ndarray) -> list[dict[str, Any]]:
    """Every op's output on ``values`` (float inputs; quantized here for an integer input)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings(), native_stderr_silenced(), \
            contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": it is
        interpreter = Interpreter(  # no delegate: XNNPACK would keep its tensors to itself
            model_content=model, experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [len(values), *values.shape[1:]])
    interpreter.allocate_tensors()
    batch = values
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]) != np.float32 and scale:
        batch = np.asarray(fake_quant(values, scale, zero_point, np.dtype(detail["dtype"]).name)
                           / scale + zero_point).round()
    interpreter.set_tensor(detail["index"], batch.astype(detail["dtype"]))
    interpreter.invoke()
    outputs = {detail["index"] for detail in interpreter.get_output_details()}
    tensors = []
    for op in interpreter._get_ops_details():  # the public API has no per-op listing
        for index in op["outputs"]:
            if index < 0:
                continue
            info = interpreter._get_tensor_details(index, 0)
            tensors.append({"name": info["name"], "op": op["op_name"],
                            "output": int(index) in outputs,
                            "quantization": info["quantization"],
                            "value": interpreter.get_tensor(index)})
    return tensors
