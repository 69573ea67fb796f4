"""Graph clean-up for tf2onnx output, before quantization.

tf2onnx translates an NHWC Keras model op by op. What it leaves costs latency on a tiny model
and adds nodes for the quantizer to wrap (a dynamic ``Flatten`` is handled before conversion,
see :mod:`export.keras_graph`):

* the input scaling (``Rescaling``: Mul, Add) runs as separate ops; it folds into the first
  Conv's weights, since conv(s·x + b) = conv_{s·W}(x) + b·ΣW (b only when unpadded);
* the NCHW→NHWC ``Transpose`` before a flatten exists only to match Keras's row order of
  the Dense weights; permuting those rows instead removes it;
* then nodes and initializers nothing uses any more are dropped.

Every rewrite is exact up to float rounding, and export validates the result against Keras
like any other file, so a rewrite that went wrong cannot reach users.
"""

from __future__ import annotations

import numpy as np

from export.layers import layer_of, node_layer

LAYOUT_OPS = ("Reshape", "Transpose")  # ops that move pixels without changing their values


def simplify(model: object) -> list[str]:
    """Rewrite ``model`` (an onnx.ModelProto) in place; return the names of applied rewrites."""
    graph = _Graph(model)
    applied = [name for name, rewrite in (("fold-input-scaling", _fold_input_scaling),
                                          ("transpose-into-matmul", _transpose_into_matmul))
               if rewrite(graph)]
    graph.prune()
    return applied


class _Graph:
    """Lookup helpers over an onnx GraphProto."""

    def __init__(self, model: object) -> None:
        self.model = model
        self.graph = model.graph  # type: ignore[attr-defined]

    def initializer(self, name: str) -> object | None:
        return next((i for i in self.graph.initializer if i.name == name), None)

    def array(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        init = self.initializer(name)
        return None if init is None else numpy_helper.to_array(init)

    def set_array(self, name: str, value: np.ndarray) -> None:
        from onnx import numpy_helper

        self.initializer(name).CopyFrom(numpy_helper.from_array(value, name))  # type: ignore

    def consumers(self, tensor: str) -> list:
        return [n for n in self.graph.node if tensor in n.input]

    def producer(self, tensor: str) -> object | None:
        return next((n for n in self.graph.node if tensor in n.output), None)

    def only_consumer(self, tensor: str) -> object | None:
        users = self.consumers(tensor)
        is_output = any(o.name == tensor for o in self.graph.output)
        return users[0] if len(users) == 1 and not is_output else None

    def static_shapes(self) -> dict[str, list[int]]:
        from onnx import shape_inference

        inferred = shape_inference.infer_shapes(self.model)
        values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
        return {v.name: [d.dim_value if d.HasField("dim_value") else -1
                         for d in v.type.tensor_type.shape.dim] for v in values}

    def prune(self) -> None:
        """Drop nodes and initializers that no graph output depends on."""
        live = {o.name for o in self.graph.output}
        for node in reversed(list(self.graph.node)):  # nodes are topologically sorted
            if any(out in live for out in node.output):
                live.update(node.input)
            else:
                self.graph.node.remove(node)
        for init in list(self.graph.initializer):
            if init.name not in live:
                self.graph.initializer.remove(init)


def _scalar(graph: _Graph, node: object, other_than: str) -> float | None:
    names = [i for i in node.input if i != other_than]  # type: ignore[attr-defined]
    value = graph.array(names[0]) if len(names) == 1 else None
    return float(value) if value is not None and value.size == 1 else None


def _fold_input_scaling(graph: _Graph) -> bool:
    source = graph.graph.input[0].name
    mul = graph.only_consumer(source)
    if mul is None or mul.op_type != "Mul" or (scale := _scalar(graph, mul, source)) is None:
        return False
    tail, offset = mul.output[0], 0.0
    nxt = graph.only_consumer(tail)
    if nxt is not None and nxt.op_type == "Add":
        if (offset := _scalar(graph, nxt, tail)) is None:
            return False
        tail = nxt.output[0]
    node = graph.only_consumer(tail)
    while node is not None and node.op_type in LAYOUT_OPS:
        node = graph.only_consumer(node.output[0])
    if node is None or node.op_type != "Conv" or len(node.input) < 2:
        return False
    weights = graph.array(node.input[1])
    if weights is None or len(graph.consumers(node.input[1])) != 1:
        return False
    pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
    auto_pad = next((a.s for a in node.attribute if a.name == "auto_pad"), b"NOTSET")
    if offset and (any(pads) or auto_pad not in (b"NOTSET", b"VALID")):
        return False  # zero padding would no longer be zero after the offset moved
    if offset:
        if len(node.input) < 3 or graph.array(node.input[2]) is None \
                or len(graph.consumers(node.input[2])) != 1:  # tf2onnx shares equal constants
            return False
        bias = graph.array(node.input[2]) + offset * weights.sum(axis=(1, 2, 3))
        graph.set_array(node.input[2], bias.astype(np.float32))
    graph.set_array(node.input[1], (weights * scale).astype(np.float32))
    for consumer in graph.consumers(tail):
        consumer.input[list(consumer.input).index(tail)] = source
    return True


def _transpose_into_matmul(graph: _Graph) -> bool:
    changed = False
    shapes = None
    for transpose in [n for n in graph.graph.node if n.op_type == "Transpose"]:
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        reshape = graph.only_consumer(transpose.output[0])
        if perm is None or perm[0] != 0 or reshape is None or reshape.op_type != "Reshape":
            continue
        target = graph.array(reshape.input[1])
        matmul = graph.only_consumer(reshape.output[0])
        if target is None or len(target) != 2 or matmul is None or \
                matmul.op_type not in ("MatMul", "Gemm") or matmul.input[0] != reshape.output[0]:
            continue
        weights = graph.array(matmul.input[1])
        if weights is None or len(graph.consumers(matmul.input[1])) != 1 or \
                any(a.name in ("transA", "transB") and a.i for a in matmul.attribute):
            continue
        shapes = shapes or graph.static_shapes()
        before = shapes.get(transpose.input[0])
        if not before or any(d <= 0 for d in before[1:]):
            continue
        features = int(np.prod(before[1:]))
        if int(target[-1]) != features or weights.shape[0] != features:
            continue  # not a full flatten feeding these weights: leave it alone
        # Row r of the weights belongs to feature r of the transposed flatten; find, for each
        # feature of the untransposed flatten, which row that is.
        transposed = [before[p] for p in perm]
        order = np.arange(int(np.prod(transposed[1:]))).reshape(transposed[1:])
        inverse = np.argsort(perm[1:])
        rows = order.transpose(inverse).reshape(-1)
        graph.set_array(matmul.input[1], weights[rows])
        reshape.input[0] = transpose.input[0]
        changed = True
    return changed


def compact_names(model: object) -> None:
    """Rename internal tensors to short ids (the graph's input/output keep theirs), and nodes
    to ``<keras layer>/<op>_<index>``, so diagnosis and float fallback can name the layer.

    tf2onnx and the quantizer name tensors after the TensorFlow ops they came from
    (``twoconv_1/conv2_1/convolution/ReadVariableOp:0_quantized_scale``); on a model this
    small those names are a tenth of the file.
    """
    graph = model.graph  # type: ignore[attr-defined]
    keep = {v.name for v in (*graph.input, *graph.output)}
    renamed: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return renamed.setdefault(name, f"t{len(renamed)}")

    for index, node in enumerate(graph.node):  # before renaming: scopes name the Keras layer
        layer = node_layer(node.name) or next(
            filter(None, map(layer_of, (*node.input, *node.output))), None)
        node.name = f"{layer}/{node.op_type}_{index}" if layer else f"{node.op_type}_{index}"
    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)
