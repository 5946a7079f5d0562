"""A TFLite file whose state lives in resource variables (VAR_HANDLE / READ_VARIABLE /
ASSIGN_VARIABLE), as TensorFlow's converter writes stateful models: no state input or output
shows it. Built here with the TFLite flatbuffer schema that ai-edge-litert ships (no TensorFlow
is installed, and litert-torch writes state as explicit inputs and outputs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

schema = pytest.importorskip("ai_edge_litert.schema_py_generated", reason="ai-edge-litert is the runtime extra")

import edgesdk  # noqa: E402
from edgesdk.cli import cli  # noqa: E402
from edgesdk.errors import UsageError  # noqa: E402
from edgesdk.runtime.introspect import describe  # noqa: E402


def running_sum_tflite(path: Path) -> Path:
    """y = x + (the sum of every x fed before): one resource variable, zeros at the start.

    Main graph: CALL_ONCE(init), VAR_HANDLE -> READ_VARIABLE -> ADD(x) -> ASSIGN_VARIABLE; the
    init graph assigns zeros, as the converter's session initializer does.
    """
    from ai_edge_litert.tools.flatbuffer_utils import convert_object_to_bytearray

    s = schema

    def tensor(name, shape, kind, buffer=0):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), kind, buffer
        return t

    def operator(code, inputs, outputs, options_type=0, options=None):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code, inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        return o

    def handle():
        options = s.VarHandleOptionsT()
        options.container, options.sharedName = "", "running_sum"
        return options

    codes = []
    for builtin in (s.BuiltinOperator.CALL_ONCE, s.BuiltinOperator.VAR_HANDLE, s.BuiltinOperator.READ_VARIABLE,
                    s.BuiltinOperator.ADD, s.BuiltinOperator.ASSIGN_VARIABLE):
        code = s.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
        codes.append(code)
    call_once, var_handle, read, add, assign = range(5)
    f32, resource = s.TensorType.FLOAT32, s.TensorType.RESOURCE

    main = s.SubGraphT()
    main.name = "main"
    main.tensors = [tensor("x", [1, 4], f32), tensor("handle", [], resource), tensor("previous", [1, 4], f32),
                    tensor("y", [1, 4], f32)]
    main.inputs, main.outputs = [0], [3]
    once = s.CallOnceOptionsT()
    once.initSubgraphIndex = 1
    main.operators = [operator(call_once, [], [], s.BuiltinOptions.CallOnceOptions, once),
                      operator(var_handle, [], [1], s.BuiltinOptions.VarHandleOptions, handle()),
                      operator(read, [1], [2]),
                      operator(add, [2, 0], [3], s.BuiltinOptions.AddOptions, s.AddOptionsT()),
                      operator(assign, [1, 3], [])]
    init = s.SubGraphT()
    init.name = "init"
    init.tensors = [tensor("handle", [], resource), tensor("zeros", [1, 4], f32, buffer=1)]
    init.inputs, init.outputs = [], []
    init.operators = [operator(var_handle, [], [0], s.BuiltinOptions.VarHandleOptions, handle()),
                      operator(assign, [0, 1], [])]
    zeros = s.BufferT()
    zeros.data = np.zeros(4, np.float32).tobytes()
    signature = s.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs, signature.outputs = [s.TensorMapT()], [s.TensorMapT()]
    signature.inputs[0].name, signature.inputs[0].tensorIndex = "x", 0
    signature.outputs[0].name, signature.outputs[0].tensorIndex = "y", 3
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, codes, [main, init]
    model.buffers, model.signatureDefs = [s.BufferT(), zeros], [signature]
    path.write_bytes(bytes(convert_object_to_bytearray(model)))
    return path


X = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)


def test_reset_all_variables_does_not_reset_resource_variables(tmp_path):
    # Why the runtime starts a new interpreter instead: LiteRT's variable reset leaves them.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(running_sum_tflite(tmp_path / "sum.tflite")))
    runner = interpreter.get_signature_runner("serving_default")
    np.testing.assert_array_equal(runner(x=X)["y"], X)
    np.testing.assert_array_equal(runner(x=X)["y"], 2 * X)
    interpreter.reset_all_variables()
    np.testing.assert_array_equal(runner(x=X)["y"], 3 * X)


def test_a_stream_over_internal_state_resets_and_streams_are_independent(tmp_path):
    model = edgesdk.load(running_sum_tflite(tmp_path / "sum.tflite"))
    assert model.internal_state == ["VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"] and model.is_streaming
    first, second = model.stream(), model.stream()
    np.testing.assert_array_equal(first.push({"x": X})["y"], X)
    np.testing.assert_array_equal(first.push({"x": X})["y"], 2 * X)
    np.testing.assert_array_equal(second.push({"x": 10 * X})["y"], 10 * X)  # its own interpreter
    np.testing.assert_array_equal(first.push({"x": X})["y"], 3 * X)
    first.reset()
    np.testing.assert_array_equal(first.push({"x": X})["y"], X)
    assert first.end() == {}  # no look-ahead: nothing owed; end() resets
    np.testing.assert_array_equal(first.push({"x": X})["y"], X)
    np.testing.assert_array_equal(second.push({"x": X})["y"], 11 * X)
    with pytest.raises(UsageError, match="inside the interpreter"):
        model.run({"x": X})


def test_inspect_says_the_state_is_internal(tmp_path):
    path = running_sum_tflite(tmp_path / "sum.tflite")
    facts = describe(path)
    assert facts["artifacts"][0]["internal_state"] == ["VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE"]
    assert facts["state"] == []
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "internal" in result.output and "inside the interpreter" in result.output
