"""MAC counting from an ONNX graph, against hand-computed counts of a graph built here."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edgesdk.errors import MeasurementUnavailable  # noqa: E402
from edgesdk.profiler.opcount import count_onnx_macs  # noqa: E402


def _graph(path):
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "w_matmul"),
        numpy_helper.from_array(rng.standard_normal((6, 7)).astype(np.float32), "w_gemm"),
        numpy_helper.from_array(rng.standard_normal((8, 2, 3, 3)).astype(np.float32), "w_conv"),
    ]
    nodes = [
        # [N, 3, 4] x [4, 5] -> [N, 3, 5]
        helper.make_node("MatMul", ["x", "w_matmul"], ["y"], name="matmul"),
        # A is [K=6, M=8], transposed: [8, 6] x [6, 7] -> [8, 7]
        helper.make_node("Gemm", ["a", "w_gemm"], ["z"], name="gemm", transA=1),
        # [1, 4, 10, 10] * [8, 4/2, 3, 3], groups 2, pad 1 -> [1, 8, 10, 10]
        helper.make_node("Conv", ["image", "w_conv"], ["c"], name="conv", group=2, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "counted",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4]),
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [6, 8]),
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4, 10, 10]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("r", TensorProto.FLOAT, None),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_counts_matmul_gemm_conv_at_the_fed_shapes(tmp_path):
    path = _graph(tmp_path / "model.onnx")
    result = count_onnx_macs(path, {"x": (2, 3, 4)})
    matmul = 2 * 3 * 5 * 4
    gemm = 8 * 7 * 6
    conv = (1 * 8 * 10 * 10) * (2 * 3 * 3)
    assert result["macs"] == matmul + gemm + conv
    assert result["nodes_counted"] == 3
    assert result["nodes_unsized"] == []
    assert result["source"] == "counted:onnx-graph"
    assert "MatMul" in result["counted"] and "not counted" in result["counted"]


def test_symbolic_dimension_left_open_is_reported_not_guessed(tmp_path):
    path = _graph(tmp_path / "model.onnx")
    result = count_onnx_macs(path)
    assert "matmul" in result["nodes_unsized"]
    assert result["macs"] == 8 * 7 * 6 + 800 * 18


def test_unreadable_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(MeasurementUnavailable, match="cannot read"):
        count_onnx_macs(bad)
