"""edgesdk.runtime.introspect on lone files: control-flow subgraphs counted, file size shown."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
from click.testing import CliRunner
from onnx import TensorProto, helper

from edgesdk.cli import cli
from edgesdk.runtime.introspect import describe, onnx_op_histogram


def control_flow_model(path):
    """y = x run through a Loop of 3 trips whose body holds an If (then: x + 1; else: x * 2, Relu).

    Top graph: Constant (trips), Constant (cond), Loop = 3 nodes; the Loop body: Less, Identity
    (cond out), If = 3 nodes; the If branches: Add + Constant, Mul + Relu + Constant.
    """
    then_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["one"], value=helper.make_tensor("c1", TensorProto.FLOAT, [], [1.0])),
         helper.make_node("Add", ["x_in", "one"], ["then_out"])],
        "then", [], [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, [2])])
    else_branch = helper.make_graph(
        [helper.make_node("Constant", [], ["two"], value=helper.make_tensor("c2", TensorProto.FLOAT, [], [2.0])),
         helper.make_node("Mul", ["x_in", "two"], ["doubled"]),
         helper.make_node("Relu", ["doubled"], ["else_out"])],
        "else", [], [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, [2])])
    body = helper.make_graph(
        [helper.make_node("Less", ["i", "limit"], ["first"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("If", ["first"], ["x_out"], then_branch=then_branch, else_branch=else_branch)],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [2])],
        initializer=[helper.make_tensor("limit", TensorProto.INT64, [], [1])])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["trips"], value=helper.make_tensor("t", TensorProto.INT64, [], [3])),
         helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("b", TensorProto.BOOL, [], [True])),
         helper.make_node("Loop", ["trips", "cond", "x"], ["y"], body=body)],
        "control_flow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def test_control_flow_subgraph_nodes_are_counted(tmp_path):
    path = control_flow_model(tmp_path / "loop.onnx")
    # The file computes what its docstring says: trip 0 adds 1, trips 1 and 2 double.
    y = onnxruntime.InferenceSession(str(path)).run(None, {"x": np.array([1.0, -3.0], np.float32)})[0]
    np.testing.assert_array_equal(y, [8.0, 0.0])
    histogram = onnx_op_histogram(path)
    assert histogram == {"Constant": 4, "Add": 1, "Identity": 1, "If": 1, "Less": 1, "Loop": 1, "Mul": 1, "Relu": 1}
    assert sum(histogram.values()) == 11  # the top graph alone has 3


def test_inspect_lone_file_shows_nodes_inside_control_flow_and_the_file_size(tmp_path):
    path = control_flow_model(tmp_path / "loop.onnx")
    facts = describe(path)
    assert facts["artifacts"][0]["size_bytes"] == path.stat().st_size
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "ops in loop.onnx (11 nodes)" in result.output
    size = path.stat().st_size
    assert 100 < size < 1000 and f"{size} B" in result.output
