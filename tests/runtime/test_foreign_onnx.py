"""A foreign ONNX file (one edgesdk did not write) loads and runs from its own graph."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from edgesdk.errors import UsageError  # noqa: E402
from edgesdk.runtime import load  # noqa: E402


def _write_model(path, input_shapes: dict[str, list], output_shape: list) -> None:
    """y = reduce_sum(a, axis 1, keepdims) + reduce_sum(b, axis 1, keepdims): a known answer."""
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in input_shapes.items()]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("ReduceSum", [name, "axes"], [f"{name}_sum"], keepdims=1) for name in input_shapes]
    nodes.append(helper.make_node("Add", [f"{name}_sum" for name in input_shapes], ["y"]))
    graph = helper.make_graph(nodes, "foreign", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))


def test_unnamed_dims_are_each_their_own_unknown(tmp_path):
    # [None, None] inputs, as many exporters write them: a and b may differ in every unnamed dim.
    path = tmp_path / "foreign.onnx"
    _write_model(path, {"a": [None, None], "b": [None, None]}, [None, 1])
    model = load(path)
    a = np.arange(576, dtype=np.float32).reshape(1, 576)
    b = np.ones((1, 7), dtype=np.float32)
    y = model.run({"a": a, "b": b})["y"]
    assert y.shape == (1, 1) and y[0, 0] == pytest.approx(float(a.sum()) + 7.0)


def test_a_named_dim_shared_by_two_inputs_must_agree(tmp_path):
    path = tmp_path / "named.onnx"
    _write_model(path, {"a": ["batch", None], "b": ["batch", None]}, ["batch", 1])
    model = load(path)
    y = model.run({"a": np.ones((2, 3), np.float32), "b": np.ones((2, 5), np.float32)})["y"]
    assert np.array_equal(y, np.full((2, 1), 8.0, np.float32))
    with pytest.raises(UsageError, match=r"axis 0 \(batch\) is 3 but another feed set batch = 2"):
        model.run({"a": np.ones((2, 3), np.float32), "b": np.ones((3, 5), np.float32)})
