"""TFLite: float32, float16, dynamic-range and full-integer int8, builtin ops only.

The LiteRT pip runtime cannot run Flex (Select TF) ops, so conversions allow only builtin
ops and every file is scanned for custom ops before it is accepted.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np

from export.errors import UnsupportedModelError
from runtime.backends import LiteRTBackend
from runtime.errors import first_line
from runtime.files import write_bytes
from runtime.metadata import tflite_schema, with_tflite_metadata
from runtime.preprocess import to_model_values
from runtime.quiet import native_stderr_silenced
from runtime.spec import ModelSpec

log = logging.getLogger(__name__)


def convert(model: object, spec: ModelSpec, precision: str,
            calibration: np.ndarray | None = None) -> tuple[bytes, ModelSpec]:
    """Keras → TFLite flatbuffer bytes with the spec embedded; ``calibration`` for int8."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        if calibration is None:
            raise ValueError("int8 conversion needs calibration images")
        values = to_model_values(calibration, spec)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([values[i:i + 1]] for i in range(len(values)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    elif precision != "float32":
        raise ValueError(f"unknown TFLite precision {precision!r}")
    try:
        # The converter prints its temporary SavedModel's signature listing (not for users)
        # and the C++ side prints "fully_quantize: …" on stderr; errors still raise.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                native_stderr_silenced():
            warnings.simplefilter("ignore")
            flatbuffer = converter.convert()
    except Exception as exc:  # ConverterError and friends: the model needs ops LiteRT lacks
        raise UnsupportedModelError(f"TFLite {precision} conversion failed (an op without a "
                                    f"builtin TFLite kernel?): {first_line(exc)}") from None
    _reject_custom_ops(flatbuffer, precision)
    file_spec = spec.replace(precision=precision, input_quant=None, output_quant=None)
    if precision == "int8":
        engine = LiteRTBackend(flatbuffer, threads=None)  # the scale and zero point it chose
        file_spec = file_spec.replace(input_quant=engine.input_quant,
                                      output_quant=engine.output_quant)
    return with_tflite_metadata(flatbuffer, file_spec.to_json()), file_spec


def selective_int8(model: object, spec: ModelSpec, calibration: np.ndarray,
                   keep_float: list[str]) -> tuple[bytes, ModelSpec]:
    """int8 with the ops whose output tensors are named in ``keep_float`` left in float: the
    converter's own selective quantization (its quantization debugger's denylist), so every
    other op gets exactly the plain int8 file's ranges and kernels. The file takes and
    returns float tensors (the converter keeps a denylisted model's ends float).

    ai-edge-quantizer's selective quantization was tried first: on the colour-digit model of
    benchmarks/int8_models.py its file agreed less with Keras than the converter's plain
    int8 file even with nothing kept float, so the converter's denylist is the one used.
    """
    import tensorflow as tf

    values = to_model_values(calibration, spec)

    def dataset() -> object:
        return ([values[i:i + 1]] for i in range(len(values)))

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(keep_float))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()), native_stderr_silenced():
            warnings.simplefilter("ignore")
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=dataset, debug_options=options)
            flatbuffer = bytes(debugger.get_nondebug_quantized_model())
    except Exception as exc:
        if "debug mode" in str(exc):  # the debugger's words when nothing is left to quantize
            raise UnsupportedModelError("TFLite selective int8: with these layers kept float, "
                                        "none is left in int8; use the float file or "
                                        "--fp16") from None
        raise UnsupportedModelError(f"TFLite selective int8 conversion failed: "
                                    f"{first_line(exc)}") from None
    _reject_custom_ops(flatbuffer, "int8")
    engine = LiteRTBackend(flatbuffer, threads=None)
    file_spec = spec.replace(precision="int8", input_quant=engine.input_quant,
                             output_quant=engine.output_quant)
    return with_tflite_metadata(flatbuffer, file_spec.to_json()), file_spec


def save(flatbuffer: bytes, path: object) -> None:
    write_bytes(path, flatbuffer)  # type: ignore[arg-type]


def _reject_custom_ops(flatbuffer: bytes, precision: str) -> None:
    schema = tflite_schema()
    model = schema.Model.GetRootAs(flatbuffer, 0)
    custom = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom.append((code.CustomCode() or b"?").decode())
    if custom:
        raise UnsupportedModelError(f"TFLite {precision} file needs custom/Flex ops "
                                    f"{', '.join(custom)}, which the LiteRT pip runtime cannot "
                                    "run; replace those layers with builtin-friendly ones")

