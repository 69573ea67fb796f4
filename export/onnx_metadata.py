"""Standard ONNX metadata: what Netron, onnxruntime's ``get_modelmeta()`` and model hubs
show without edgecnn's spec parser.

``producer_name``/``producer_version``, ``model_version`` (the trained weights' version as
a number), ``doc_string`` on the model and on its input and output, and the class names as
a JSON array under the ``labels`` metadata key, beside the embedded edgecnn spec.
"""

from __future__ import annotations

import json

from export.describe import (
    LABELS_KEY,
    PRODUCER,
    description,
    model_version_number,
    producer_version,
    title,
)
from runtime.spec import ModelSpec


def describe(proto: object, spec: ModelSpec) -> None:
    """Fill the standard fields of a finished graph (``spec`` is the file's own spec)."""
    from onnx import TensorProto

    graph = proto.graph  # type: ignore[attr-defined]
    proto.producer_name = PRODUCER  # type: ignore[attr-defined]
    proto.producer_version = producer_version()  # type: ignore[attr-defined]
    proto.model_version = model_version_number(spec)  # type: ignore[attr-defined]
    source = graph.input[0]
    integer = {TensorProto.UINT8: "uint8", TensorProto.INT8: "int8"}
    note = input_note(spec, integer.get(source.type.tensor_type.elem_type))
    proto.doc_string = description(spec, note)  # type: ignore[attr-defined]
    graph.name = graph.name or title(spec)
    source.doc_string = note
    output = graph.output[0]
    output.doc_string = (f"{_output_kind(spec)} of the {spec.num_classes} classes, in the "
                         f"order of the '{LABELS_KEY}' metadata entry")
    set_property(proto, LABELS_KEY, json.dumps(list(spec.labels), ensure_ascii=False))


def input_note(spec: ModelSpec, integer: str | None) -> str:
    """The input tensor in words; ``integer`` names its dtype when the file takes raw
    integer pixels (the int8 file's first QuantizeLinear removed)."""
    shape = f"NHWC batch x {spec.height} x {spec.width} x {spec.channels} {spec.color}"
    if integer == "uint8":
        return f"{shape} image as uint8 pixels 0-255"
    if integer == "int8":
        return f"{shape} image as int8: pixel - 128"
    low, high = spec.value_range
    if (low, high) == (0.0, 255.0):
        return f"{shape} image as float32 pixels 0-255"
    return f"{shape} image as float32: pixels 0-255 mapped linearly onto {low:g} to {high:g}"


def set_property(proto: object, key: str, value: str) -> None:
    """Set one ``metadata_props`` entry, replacing an earlier one with the same key."""
    props = proto.metadata_props  # type: ignore[attr-defined]
    for entry in list(props):
        if entry.key == key:
            props.remove(entry)
    entry = props.add()
    entry.key, entry.value = key, value


def _output_kind(spec: ModelSpec) -> str:
    quantized = " (quantized: see the edgecnn.spec output_quant)" if spec.output_quant else ""
    return ("Logits" if spec.output == "logits" else "Probabilities") + quantized
