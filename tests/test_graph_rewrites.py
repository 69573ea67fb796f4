"""Export's graph rewrites are exact, and leave alone what they cannot rewrite exactly."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.onnx_graph import compact_names, simplify

RNG = np.random.default_rng(0)  # restarted for every test (tests/conftest.py)


def _model(nodes: list, inits: dict[str, np.ndarray], out_shape: list) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6, 6, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(v.dtype), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def _scaled_convs(shared_bias: bool, pads: list[int]) -> onnx.ModelProto:
    """x*s + b → NHWC→NCHW → Conv → Conv, the shape tf2onnx gives Rescaling + Conv2D."""
    inits = {"s": np.array(1 / 127.5, np.float32), "b": np.array(-1.0, np.float32),
             "w1": RNG.normal(size=(4, 3, 3, 3)).astype(np.float32),
             "w2": RNG.normal(size=(4, 4, 3, 3)).astype(np.float32),
             "b1": np.full(4, 0.5, np.float32)}
    if not shared_bias:
        inits["b2"] = np.full(4, 0.5, np.float32)
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Transpose", ["a"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w1", "b1"], ["c1"], pads=pads),
             helper.make_node("Conv", ["c1", "w2", "b1" if shared_bias else "b2"], ["y"])]
    return _model(nodes, inits, ["n", 4, None, None])


@pytest.mark.parametrize(("shared_bias", "pads", "folds"), [
    (False, [0, 0, 0, 0], True),    # offset folds into the unpadded conv's bias
    (True, [0, 0, 0, 0], False),    # the bias is shared with the second conv: hands off
    (False, [1, 1, 1, 1], False),   # padding would see the offset: hands off
])
def test_input_scaling_folds_only_when_exact(shared_bias: bool, pads: list[int],
                                             folds: bool) -> None:
    model = _scaled_convs(shared_bias, pads)
    x = RNG.integers(0, 256, (2, 6, 6, 3)).astype(np.float32)
    before = _run(model, x)
    applied = simplify(model)
    assert ("fold-input-scaling" in applied) is folds
    assert [n.op_type for n in model.graph.node][:1] == (["Transpose"] if folds else ["Mul"])
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-4)


def test_transpose_before_flatten_moves_into_the_dense_weights() -> None:
    inits = {"shape": np.array([-1, 108], np.int64),
             "w": RNG.normal(size=(108, 5)).astype(np.float32)}
    nodes = [helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Relu", ["nchw"], ["r"]),
             helper.make_node("Transpose", ["r"], ["nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["nhwc", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    model = _model(nodes, inits, ["n", 5])
    x = RNG.normal(size=(3, 6, 6, 3)).astype(np.float32)
    before = _run(model, x)
    assert simplify(model) == ["transpose-into-matmul"]
    assert [n.op_type for n in model.graph.node] == ["Transpose", "Relu", "Reshape", "MatMul"]
    np.testing.assert_allclose(_run(model, x), before, rtol=1e-5, atol=1e-5)


def test_partial_reshape_is_left_alone() -> None:
    """reshape(x, (-1, C)) is not a flatten of the whole feature map: no rewrite."""
    inits = {"shape": np.array([-1, 3], np.int64), "w": RNG.normal(size=(3, 2)).astype(np.float32)}
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Transpose", ["t"], ["u"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["u", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    model = _model(nodes, inits, [None, 2])
    x = RNG.normal(size=(2, 6, 6, 3)).astype(np.float32)
    before = _run(model, x)
    assert simplify(model) == []
    np.testing.assert_allclose(_run(model, x), before)


def test_compact_names_keep_the_interface() -> None:
    model = _scaled_convs(False, [0, 0, 0, 0])
    x = RNG.integers(0, 256, (1, 6, 6, 3)).astype(np.float32)
    before = _run(model, x)
    compact_names(model)
    assert model.graph.input[0].name == "x" and model.graph.output[0].name == "y"
    assert all(len(i.name) <= 4 for i in model.graph.initializer)
    np.testing.assert_array_equal(_run(model, x), before)


def test_flatten_copy_is_the_same_function_and_skips_channels_first() -> None:
    import keras

    from export.keras_graph import StaticFlatten, export_graph

    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    last = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(last))
    copy = export_graph(model)
    assert any(isinstance(layer, StaticFlatten) for layer in copy.layers)
    images = RNG.normal(size=(4, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(images, verbose=0), model.predict(images, verbose=0),
                               atol=1e-6)
    first = keras.layers.Flatten(data_format="channels_first")(x)
    other = keras.Model(inputs, keras.layers.Dense(3)(first))
    assert export_graph(other) is other  # a transpose-then-flatten is not a plain reshape
