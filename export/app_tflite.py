"""The app-ready TFLite file: the validated int8 file, re-wired for app loaders.

MediaPipe Tasks' ``ImageClassifier`` (Android, iOS, web, Python) and the TFLite Task Library
take a batch-1 RGB image as uint8 and want uint8 or float32 scores, with labels in the
standard Model Metadata. Our int8 file takes int8 pixels, in the model's own colour, and
returns int8. Rather than convert the Keras model a second time, new ops go around the int8
graph, so every int8 weight and activation range is the validated file's own:

    uint8 RGB ──QUANTIZE──▶ int8 RGB ──CONV_2D 1x1──▶ the int8 file's input … its int8
    classifier layer, run in float ──SOFTMAX (float)──▶ float32 probabilities

The 1x1 convolution turns RGB into grey for grayscale models and maps pixels into the
model's value range; it is left out when neither is needed. Its grey weights are
65:127:25 / 217 (BT.601's 0.299:0.587:0.114 to within 0.002), chosen because int8 holds
them exactly and they sum to one: a grey pixel in is the same grey pixel out, bit for bit.
The float head is explained at :func:`_output_ops`.
"""

from __future__ import annotations

import numpy as np

from export.errors import UnsupportedModelError
from runtime.spec import ModelSpec, QuantParams

APP_INPUT = QuantParams(1.0, 0, "uint8")  # raw pixels are the uint8 input, exactly
GREY_WEIGHTS = np.array([65, 127, 25], np.float64) / 217  # R, G, B
INPUT_NOTE = "a {width}x{height} RGB image as uint8 pixels 0-255, batch 1{grey}"


def convert(int8_model: bytes, spec: ModelSpec) -> tuple[bytes, ModelSpec]:
    """The int8 flatbuffer (``spec`` is its spec) → the app flatbuffer, its edgecnn spec
    embedded; standard metadata comes after (:mod:`export.tflite_metadata`)."""
    from runtime.metadata import tflite_schema, with_tflite_metadata

    schema = tflite_schema()
    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAs(int8_model, 0))
    if len(tree.subgraphs) != 1 or len(tree.subgraphs[0].inputs) != 1 or \
            len(tree.subgraphs[0].outputs) != 1:
        raise UnsupportedModelError("the app file needs a model with one subgraph, one input "
                                    "and one output")
    graph = _Graph(schema, tree)
    old_in, old_out = int(graph.sub.inputs[0]), int(graph.sub.outputs[0])
    new_in, head = _input_ops(graph, old_in, spec)
    new_out, tail = _output_ops(graph, old_out, spec)
    graph.sub.operators = [*head, *graph.sub.operators, *tail]
    graph.sub.inputs, graph.sub.outputs = [new_in], [new_out]
    for signature in tree.signatureDefs or []:
        for tensor_map, old, new in ((signature.inputs, old_in, new_in),
                                     (signature.outputs, old_out, new_out)):
            for entry in tensor_map or []:
                entry.tensorIndex = new if entry.tensorIndex == old else entry.tensorIndex
    app_spec = spec.replace(color="rgb", value_range=(0.0, 255.0), input_quant=APP_INPUT,
                            output_quant=graph.quant(new_out), output="probabilities")
    return with_tflite_metadata(graph.pack(), app_spec.to_json()), app_spec


def input_note(spec: ModelSpec) -> str:
    """How the file's input is described in its metadata; ``spec`` is the model's own."""
    grey = "; converted to grayscale inside the graph" if spec.color == "grayscale" else ""
    return INPUT_NOTE.format(width=spec.width, height=spec.height, grey=grey)


def app_pixels(pixels: np.ndarray) -> np.ndarray:
    """Model inputs of a grayscale model (N, H, W, 1) as the app file takes them: RGB."""
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels


def _input_ops(graph: _Graph, old_in: int, spec: ModelSpec) -> tuple[int, list]:
    """uint8 RGB input → whatever the int8 file's input took."""
    s = graph.schema
    source = graph.sub.tensors[old_in]
    rgb = [1, spec.height, spec.width, 3]
    new_in = graph.tensor("image", rgb, s.TensorType.UINT8, APP_INPUT, like=source)
    weights, bias = _pixel_map(spec)
    if source.type == s.TensorType.FLOAT32:
        if weights is None:
            return new_in, [graph.op(s.BuiltinOperator.DEQUANTIZE, [new_in], [old_in])]
        values = graph.tensor("image_values", rgb, s.TensorType.FLOAT32, None, like=source)
        filters = graph.constant("pixel_map_weights", _filters(weights, np.float32),
                                 s.TensorType.FLOAT32)
        offsets = graph.constant("pixel_map_bias", bias.astype(np.float32), s.TensorType.FLOAT32)
        return new_in, [graph.op(s.BuiltinOperator.DEQUANTIZE, [new_in], [values]),
                        graph.conv(values, filters, offsets, old_in)]
    if source.type not in (s.TensorType.INT8, s.TensorType.UINT8):
        raise UnsupportedModelError("the app file needs an int8, uint8 or float32 model input")
    if weights is None:
        return new_in, [graph.op(s.BuiltinOperator.QUANTIZE, [new_in], [old_in])]
    if source.type != s.TensorType.INT8:
        raise UnsupportedModelError("a uint8-input model that needs a colour or value-range "
                                    "conversion cannot be made app-ready")
    pixels = QuantParams(1.0, -128, "int8")
    shifted = graph.tensor("image_int8", rgb, s.TensorType.INT8, pixels, like=source)
    weight_scale = np.abs(weights).max(axis=1) / 127  # symmetric per output channel
    q_weights = np.rint(weights / weight_scale[:, None])
    q_bias = np.rint(bias / (pixels.scale * weight_scale)).astype(np.int32)
    filters = graph.constant("pixel_map_weights", _filters(q_weights, np.int8),
                             s.TensorType.INT8, weight_scale)
    offsets = graph.constant("pixel_map_bias", q_bias, s.TensorType.INT32,
                             pixels.scale * weight_scale)
    return new_in, [graph.op(s.BuiltinOperator.QUANTIZE, [new_in], [shifted]),
                    graph.conv(shifted, filters, offsets, old_in)]


def _output_ops(graph: _Graph, old_out: int, spec: ModelSpec) -> tuple[int, list]:
    """Probabilities out, as float32 where the graph ends in a softmax (or gives logits).

    An int8 softmax answers in steps of 1/256, so near-even images tie and a client's sort
    decides between the tied classes (MediaPipe and numpy's argmax decide differently).
    The app file computes the logits in float from the classifier layer's int8 weights and
    int8 input (:func:`_float_classifier`) and runs the softmax in float: no ties. A logits
    model gets that softmax added; any other int8 output becomes uint8 with the same scale.
    """
    s = graph.schema
    source = graph.sub.tensors[old_out]
    producer = graph.producer(old_out)
    logits, beta = None, 1.0
    if producer is not None and graph.code(producer) == s.BuiltinOperator.SOFTMAX:
        logits, beta = int(producer.inputs[0]), float(producer.builtinOptions.beta)
        graph.sub.operators.remove(producer)
    elif spec.output == "logits":
        logits = old_out
    if logits is not None:
        ops = []
        values = _float_classifier(graph, logits)
        if graph.sub.tensors[values].type != s.TensorType.FLOAT32:
            values = graph.tensor("logits", list(source.shape), s.TensorType.FLOAT32, None,
                                  like=source)
            ops.append(graph.op(s.BuiltinOperator.DEQUANTIZE, [logits], [values]))
        new_out = graph.tensor("probability", list(source.shape), s.TensorType.FLOAT32, None,
                               like=source)
        options = s.SoftmaxOptionsT()
        options.beta = beta
        ops.append(graph.op(s.BuiltinOperator.SOFTMAX, [values], [new_out], version=1,
                            options_type=s.BuiltinOptions.SoftmaxOptions, options=options))
        return new_out, ops
    if source.type in (s.TensorType.UINT8, s.TensorType.FLOAT32):
        return old_out, []
    if source.type != s.TensorType.INT8:
        raise UnsupportedModelError("the app file needs an int8, uint8 or float32 output")
    quant = graph.quant(old_out)
    unsigned = QuantParams(quant.scale, quant.zero_point + 128, "uint8")  # type: ignore[union-attr]
    new_out = graph.tensor("probability", list(source.shape), s.TensorType.UINT8, unsigned,
                           like=source)
    return new_out, [graph.op(s.BuiltinOperator.QUANTIZE, [old_out], [new_out])]


def _filters(weights: np.ndarray, dtype: type) -> np.ndarray:
    """(out, in) 1x1 convolution weights in TFLite's filter layout (out, 1, 1, in)."""
    return weights.astype(dtype)[:, None, None, :]


def _float_classifier(graph: _Graph, logits: int) -> int:
    """Run the int8 layer that makes ``logits`` in float instead, if it is a fully connected
    layer with constant weights (the usual classifier head); returns the float logits, or
    ``logits`` itself when the layer is anything else.

    Its int8 output still ties near-even classes (different classes, the same int8 logit);
    the same int8 weights and activations, dequantized and multiplied in float, do not. The
    file keeps the int8 weights, so it grows by a DEQUANTIZE op, not by float weights.
    """
    s = graph.schema
    layer = graph.producer(logits)
    if layer is None or graph.code(layer) != s.BuiltinOperator.FULLY_CONNECTED:
        return logits
    inputs = [int(i) for i in layer.inputs]
    features, weights = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else -1
    tensors = graph.sub.tensors
    if (tensors[features].type != s.TensorType.INT8 or tensors[weights].type != s.TensorType.INT8
            or graph.constant_values(weights) is None
            or (bias >= 0 and graph.constant_values(bias) is None)):
        return logits
    w_scale = np.asarray(tensors[weights].quantization.scale, np.float64)
    features_quant = graph.quant(features)
    float_features = graph.tensor("features", list(tensors[features].shape),
                                  s.TensorType.FLOAT32, None, like=tensors[features])
    float_weights = graph.tensor("classifier_weights", list(tensors[weights].shape),
                                 s.TensorType.FLOAT32, None)
    new_inputs = [float_features, float_weights]
    if bias >= 0:
        float_bias = graph.constant_values(bias).astype(np.float64) * w_scale \
            * features_quant.scale  # type: ignore[union-attr]
        new_inputs.append(graph.constant("classifier_bias", float_bias.astype(np.float32),
                                         s.TensorType.FLOAT32))
    float_logits = graph.tensor("logits", list(tensors[logits].shape), s.TensorType.FLOAT32,
                                None, like=tensors[logits])
    at = graph.sub.operators.index(layer)
    graph.sub.operators[at:at + 1] = [
        # constant input: the interpreter dequantizes the weights once, when it prepares
        graph.op(s.BuiltinOperator.DEQUANTIZE, [weights], [float_weights], version=5),
        graph.op(s.BuiltinOperator.DEQUANTIZE, [features], [float_features]),
        graph.op(s.BuiltinOperator.FULLY_CONNECTED, new_inputs, [float_logits], version=1,
                 options_type=layer.builtinOptionsType, options=layer.builtinOptions)]
    return float_logits


def _pixel_map(spec: ModelSpec) -> tuple[np.ndarray | None, np.ndarray]:
    """The 1x1 convolution from RGB pixels to model input values: (out, 3) weights, bias."""
    low, high = spec.value_range
    step = (high - low) / 255.0
    if spec.color == "grayscale":
        return GREY_WEIGHTS[None, :] * step, np.array([low])
    if (low, high) == (0.0, 255.0):
        return None, np.zeros(3)
    return np.eye(3) * step, np.full(3, low)


class _Graph:
    """Appends tensors, constants and ops to subgraph 0 of a flatbuffer object tree."""

    def __init__(self, schema: object, tree: object) -> None:
        self.schema, self.tree = schema, tree
        self.sub = tree.subgraphs[0]  # type: ignore[attr-defined]
        self.sub.operators = list(self.sub.operators or [])
        self.sub.tensors = list(self.sub.tensors or [])

    def tensor(self, name: str, shape: list[int], dtype: int, quant: QuantParams | None,
               like: object | None = None, buffer: int = 0,
               scales: np.ndarray | None = None) -> int:
        s = self.schema
        tensor = s.TensorT()  # type: ignore[attr-defined]
        tensor.name, tensor.type, tensor.buffer = name, dtype, buffer
        tensor.shape = np.array(shape, np.int32)
        signature = getattr(like, "shapeSignature", None)
        if signature is not None and len(signature) and signature[0] == -1:
            tensor.shapeSignature = np.array([-1, *shape[1:]], np.int32)  # batch stays dynamic
        if quant is not None or scales is not None:
            params = s.QuantizationParametersT()  # type: ignore[attr-defined]
            if scales is not None:  # per output channel, symmetric
                params.scale = np.asarray(scales, np.float32)
                params.zeroPoint = np.zeros(len(scales), np.int64)
            else:
                params.scale = np.array([quant.scale], np.float32)  # type: ignore[union-attr]
                params.zeroPoint = np.array([quant.zero_point], np.int64)  # type: ignore[union-attr]
            tensor.quantization = params
        self.sub.tensors.append(tensor)
        return len(self.sub.tensors) - 1

    def quant(self, index: int) -> QuantParams | None:
        """A uint8/int8 tensor's (per-tensor) quantization; None for other types."""
        tensor, types = self.sub.tensors[index], self.schema.TensorType  # type: ignore[attr-defined]
        dtype = {types.UINT8: "uint8", types.INT8: "int8"}.get(tensor.type)
        q = tensor.quantization
        if dtype is None or q is None or q.scale is None or not len(q.scale):
            return None
        return QuantParams(float(q.scale[0]), int(q.zeroPoint[0]), dtype)

    def constant_values(self, index: int) -> np.ndarray | None:
        """A constant tensor's values in its own dtype and shape; None if not constant."""
        tensor = self.sub.tensors[index]
        data = self.tree.buffers[tensor.buffer].data  # type: ignore[attr-defined]
        if data is None or not len(data):
            return None
        types = self.schema.TensorType  # type: ignore[attr-defined]
        dtype = {types.INT8: np.int8, types.UINT8: np.uint8, types.INT32: np.int32,
                 types.FLOAT32: np.float32}[tensor.type]
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(tensor.shape)

    def producer(self, index: int) -> object | None:
        return next((op for op in self.sub.operators if index in list(op.outputs)), None)

    def code(self, op: object) -> int:
        entry = self.tree.operatorCodes[op.opcodeIndex]  # type: ignore[attr-defined]
        return max(entry.builtinCode, entry.deprecatedBuiltinCode)

    def constant(self, name: str, values: np.ndarray, dtype: int,
                 scales: np.ndarray | None = None) -> int:
        buffer = self.schema.BufferT()  # type: ignore[attr-defined]
        buffer.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8)
        self.tree.buffers.append(buffer)  # type: ignore[attr-defined]
        return self.tensor(name, list(values.shape), dtype, None,
                           buffer=len(self.tree.buffers) - 1, scales=scales)

    def op(self, code: int, inputs: list[int], outputs: list[int], version: int = 2,
           options_type: int = 0, options: object = None) -> object:
        op = self.schema.OperatorT()  # type: ignore[attr-defined]
        op.opcodeIndex = self._opcode(code, version)
        op.inputs, op.outputs = np.array(inputs, np.int32), np.array(outputs, np.int32)
        op.builtinOptionsType, op.builtinOptions = options_type, options
        return op

    def conv(self, source: int, filters: int, bias: int, target: int) -> object:
        s = self.schema
        options = s.Conv2DOptionsT()  # type: ignore[attr-defined]
        options.padding = s.Padding.VALID  # type: ignore[attr-defined]
        options.strideW = options.strideH = 1
        options.dilationWFactor = options.dilationHFactor = 1
        options.fusedActivationFunction = s.ActivationFunctionType.NONE  # type: ignore[attr-defined]
        return self.op(s.BuiltinOperator.CONV_2D, [source, filters, bias], [target], version=3,  # type: ignore[attr-defined]
                       options_type=s.BuiltinOptions.Conv2DOptions, options=options)  # type: ignore[attr-defined]

    def _opcode(self, code: int, version: int) -> int:
        codes = self.tree.operatorCodes  # type: ignore[attr-defined]
        for index, existing in enumerate(codes):
            if max(existing.builtinCode, existing.deprecatedBuiltinCode) == code and \
                    existing.version >= version:
                return index
        entry = self.schema.OperatorCodeT()  # type: ignore[attr-defined]
        entry.builtinCode, entry.deprecatedBuiltinCode = code, min(code, 127)
        entry.version = version
        codes.append(entry)
        return len(codes) - 1

    def pack(self) -> bytes:
        import flatbuffers

        from runtime.metadata import TFLITE_IDENTIFIER

        builder = flatbuffers.Builder(1 << 16)
        builder.Finish(self.tree.Pack(builder), file_identifier=TFLITE_IDENTIFIER)  # type: ignore[attr-defined]
        return bytes(builder.Output())
