"""ONNX: float32 through Keras's exporter (tf2onnx underneath), int8 through onnxruntime.

int8 is static QDQ quantization with per-channel int8 weights, calibrated on training images.
Where the spec's pixel encoding allows it exactly, the graph's first QuantizeLinear and last
DequantizeLinear are removed, so the file takes raw uint8 pixels and returns quantized
probabilities, like the int8 TFLite file: no float tensor at either end.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np

from export.errors import ExportError, UnsupportedModelError
from export.onnx_graph import LAYOUT_OPS, compact_names, simplify
from export.onnx_metadata import describe, set_property
from runtime.errors import first_line
from runtime.files import atomic_path
from runtime.preprocess import to_model_values
from runtime.spec import METADATA_KEY, ModelSpec, QuantParams

log = logging.getLogger(__name__)
OPSET = 17
MAX_IR_VERSION = 10  # onnxruntime >= 1.16 reads IR 10; newer onnx helpers default higher
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_PERCENTILE = 99.999  # onnxruntime's own default
# Entropy calibration: onnxruntime's KL search is a Python loop over candidate thresholds ×
# quantized bins; 1024 bins and 256 levels keep it to seconds while leaving 384 candidates.
ENTROPY_BINS, ENTROPY_LEVELS = 1024, 256


def export_float(model: object, spec: ModelSpec, path: Path) -> ModelSpec:
    """Keras → float32 ONNX at ``path`` with the spec embedded."""
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        keras_to_onnx(model, raw)
        proto = onnx.load(str(raw))
    _name_batch_dimension(proto)
    rewrites = simplify(proto)
    log.debug("graph rewrites: %s", ", ".join(rewrites) or "none")
    file_spec = spec.replace(precision="float32", input_quant=None, output_quant=None)
    save(proto, file_spec, path)
    return file_spec


def keras_to_onnx(model: object, path: Path) -> None:
    """Keras's own ONNX export (tf2onnx underneath) at ``OPSET``, before any of our passes."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            model.export(str(path), format="onnx", verbose=False,  # type: ignore[attr-defined]
                         opset_version=OPSET)
    except Exception as exc:
        raise UnsupportedModelError(f"ONNX conversion failed (unsupported op?): "
                                    f"{first_line(exc)}") from None


def export_int8(float_path: Path, spec: ModelSpec, path: Path, calibration: np.ndarray,
                method: str = "minmax", activations: str = "uint8", *,
                percentile: float | None = None, exclude: tuple[str, ...] = (),
                workdir: Path | None = None) -> ModelSpec:
    """Static QDQ int8 from the float32 file; calibration images are uint8 model inputs.

    ``exclude`` names nodes of the float file to keep in float (fallback for sensitive layers).
    With ``workdir``, the pre-processed float graph and the QDQ graph before its ends were
    stripped stay there as ``pre.onnx`` and ``qdq.onnx``, for layer-by-layer diagnosis.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    activation_type = QuantType.QUInt8 if activations == "uint8" else QuantType.QInt8
    float_model = onnx.load(str(float_path))
    input_name = float_model.graph.input[0].name
    values = to_model_values(calibration, spec)
    input_quant = exact_pixel_quant(spec, activations)
    overrides: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        pre, quantized = folder / "pre.onnx", folder / "qdq.onnx"
        quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=True)
        if method == "entropy":  # ranges from our own calibrator; see calibrated_ranges
            overrides.update(calibrated_ranges(pre, input_name, values))
        if input_quant is not None:  # wherever the quantizer puts the input's Q, it gets this
            pixels = {"scale": np.array(input_quant.scale, dtype=np.float32),
                      "zero_point": np.array(input_quant.zero_point, dtype=activations)}
            overrides.update({name: [dict(pixels)] for name in pixel_tensors(float_model)})
        options = {"TensorQuantOverrides": overrides, "ActivationSymmetric": False,
                   "WeightSymmetric": True}
        calibrate = CalibrationMethod.MinMax
        if method == "percentile":
            calibrate = CalibrationMethod.Percentile
            options.update(CalibPercentile=percentile or DEFAULT_PERCENTILE,
                           CalibTensorRangeSymmetric=False)
        with contextlib.redirect_stdout(io.StringIO()):  # calibrators print their progress
            quantize_static(
                str(pre), str(quantized), calibration_reader(input_name, values),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=activation_type,
                weight_type=QuantType.QInt8, calibrate_method=calibrate,
                nodes_to_exclude=list(exclude), extra_options=options)
        proto = onnx.load(str(quantized))
    file_spec = spec.replace(precision="int8", input_quant=None, output_quant=None)
    if input_quant is not None and _strip_input_quantize(proto, input_quant):
        file_spec = file_spec.replace(input_quant=input_quant)
    output_quant = _strip_output_dequantize(proto)
    if output_quant is not None:
        file_spec = file_spec.replace(output_quant=output_quant)
    save(proto, file_spec, path)
    return file_spec


def calibrated_ranges(model_path: Path, input_name: str,
                      values: np.ndarray) -> dict[str, list[dict]]:
    """Entropy (KL) activation ranges, as ``TensorQuantOverrides`` for ``quantize_static``.

    ``quantize_static`` builds its entropy calibrator with 128 histogram bins and 128
    quantized bins: that leaves one candidate threshold, the full range, so "entropy" gave
    exactly minmax's ranges. This calibrator gets a histogram fine enough for the search.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        calibrator = create_calibrator(
            str(model_path), [], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.Entropy,
            extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_LEVELS})
        calibrator.collect_data(calibration_reader(input_name, values))
        ranges = calibrator.compute_data()
    overrides = {}
    for name, data in ranges.data.items():
        low, high = (float(v) for v in np.asarray(data.range_value, np.float64).ravel()[:2])
        if high > low:
            overrides[name] = [{"rmin": np.float32(min(low, 0.0)),
                                "rmax": np.float32(max(high, 0.0))}]
    return overrides


def calibration_reader(input_name: str, values: np.ndarray) -> object:
    """Feed calibration values one image at a time, as onnxruntime's calibrators expect."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(values[i:i + 1] for i in range(len(values)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.batches, None)
            return None if batch is None else {input_name: batch}

    return Reader()


def exact_pixel_quant(spec: ModelSpec, dtype: str) -> QuantParams | None:
    """Quantization under which raw pixels *are* the quantized input, if one exists.

    real = low + pixel * (high - low) / 255 must equal scale * (q - zero_point) with q = pixel
    (uint8) or pixel - 128 (int8): true when -low/scale is a whole number.
    """
    low, high = spec.value_range
    scale = (high - low) / 255.0
    zero_point = -low / scale - (128 if dtype == "int8" else 0)
    if abs(zero_point - round(zero_point)) > 1e-6:
        return None
    info = np.iinfo(dtype)
    if not info.min <= round(zero_point) <= info.max:
        return None
    return QuantParams(scale, round(zero_point), dtype)


def save(proto: object, spec: ModelSpec, path: Path) -> None:
    """Embed the spec, check the graph, cap the IR version, write atomically."""
    import onnx

    missing = sorted({f"{n.op_type} ({n.name})" for n in proto.graph.node  # type: ignore[attr-defined]
                      if not onnx.defs.has(n.op_type, n.domain)})
    if missing:
        raise UnsupportedModelError(f"no standard ONNX op for {', '.join(missing)[:200]}: "
                                    "tf2onnx could not convert it; replace that layer")
    compact_names(proto)
    del proto.metadata_props[:]  # type: ignore[attr-defined]
    entry = proto.metadata_props.add()  # type: ignore[attr-defined]
    entry.key, entry.value = METADATA_KEY, spec.to_json()
    describe(proto, spec)  # the standard fields other tools read
    proto.ir_version = min(proto.ir_version, MAX_IR_VERSION)  # type: ignore[attr-defined]
    declare_used_domains(proto)
    proto.producer_name = "edgecnn"  # type: ignore[attr-defined]
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the ONNX graph fails onnx.checker: {first_line(exc)}") from None
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def set_metadata(path: Path, key: str, value: str) -> None:
    """Add or replace one metadata entry of a saved file; the graph stays as it is."""
    import onnx

    proto = onnx.load(str(path))
    set_property(proto, key, value)
    with atomic_path(path) as tmp:
        onnx.save(proto, str(tmp))


def declare_used_domains(proto: object) -> None:
    """Keep only the opset imports the graph's nodes use (plus the default domain).

    The quantizer declares every domain onnxruntime knows (``ai.onnx.training``,
    ``com.microsoft.nchwc``, ``org.pytorch.aten``, …); strict consumers refuse unknown ones.
    """
    used = {n.domain or "" for n in proto.graph.node} | {""}  # type: ignore[attr-defined]
    keep = [o for o in proto.opset_import if (o.domain or "") in used]  # type: ignore[attr-defined]
    del proto.opset_import[:]  # type: ignore[attr-defined]
    proto.opset_import.extend(keep)  # type: ignore[attr-defined]


def _name_batch_dimension(proto: object) -> None:
    for value in (*proto.graph.input, *proto.graph.output):  # type: ignore[attr-defined]
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.dim_value:
            dim.dim_param = "batch"


def pixel_tensors(proto: object) -> list[str]:
    """The graph input and the tensors that only re-lay it out (Reshape/Transpose) before
    the first compute op: all of them hold raw pixels, so all may be uint8."""
    graph = proto.graph  # type: ignore[attr-defined]
    chain = [graph.input[0].name]
    while True:
        users = [n for n in graph.node if chain[-1] in n.input]
        if len(users) != 1 or users[0].op_type not in LAYOUT_OPS or users[0].input[0] != chain[-1]:
            return chain
        chain.append(users[0].output[0])


def _strip_input_quantize(proto: object, quant: QuantParams) -> bool:
    """Feed raw integer pixels past the first QuantizeLinear, which they already satisfy."""
    from onnx import TensorProto, numpy_helper

    graph = proto.graph  # type: ignore[attr-defined]
    chain = pixel_tensors(proto)
    last = chain[-1]
    users = [n for n in graph.node if last in n.input]
    if len(users) != 1 or users[0].op_type != "QuantizeLinear":
        return False
    node = users[0]
    inits = {i.name: i for i in graph.initializer}
    scale = float(numpy_helper.to_array(inits[node.input[1]]))
    zero = int(numpy_helper.to_array(inits[node.input[2]]))
    if not np.isclose(scale, quant.scale, rtol=1e-6) or zero != quant.zero_point:
        log.warning("input quantization is not the raw pixel encoding; keeping float input")
        return False
    for other in graph.node:
        for i, name in enumerate(other.input):
            if name == node.output[0]:
                other.input[i] = last
    graph.node.remove(node)
    integer = TensorProto.UINT8 if quant.dtype == "uint8" else TensorProto.INT8
    graph.input[0].type.tensor_type.elem_type = integer
    for info in list(graph.value_info):  # intermediate layout tensors are integer now too
        if info.name in chain:
            graph.value_info.remove(info)
    return True


def _strip_output_dequantize(proto: object) -> QuantParams | None:
    """Return quantized probabilities; the runtime dequantizes with the embedded parameters."""
    from onnx import TensorProto, numpy_helper

    graph = proto.graph  # type: ignore[attr-defined]
    output = graph.output[0]
    producers = [n for n in graph.node if output.name in n.output]
    if len(producers) != 1 or producers[0].op_type != "DequantizeLinear":
        return None
    node = producers[0]
    inits = {i.name: i for i in graph.initializer}
    shared = any(node.input[0] in n.input for n in graph.node if n is not node)
    if shared or node.input[1] not in inits or len(node.input) < 3 or node.input[2] not in inits:
        return None
    zero = numpy_helper.to_array(inits[node.input[2]])
    params = QuantParams(float(numpy_helper.to_array(inits[node.input[1]])), int(zero),
                         str(zero.dtype))
    for other in graph.node:  # whoever produced the quantized tensor now produces the output
        for i, name in enumerate(other.output):
            if name == node.input[0]:
                other.output[i] = output.name
    graph.node.remove(node)
    output.type.tensor_type.elem_type = TensorProto.UINT8 if params.dtype == "uint8" \
        else TensorProto.INT8
    return params

