"""The stream contract sections (context, constants, chunks) on hand-built ONNX files: known answers."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from edgesdk.errors import BundleError, UsageError  # noqa: E402
from edgesdk.runtime import load  # noqa: E402
from edgesdk.runtime.manifest import check_manifest  # noqa: E402
from edgesdk.runtime.wrap import wrap  # noqa: E402


def _window_sum(path, frames):
    """y[b, c, 0] = the sum of x[b, c, :] over a window of ``frames`` (an int: static; a str: free)."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [2])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)], "window_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, frames])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 1])], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_a_static_window_takes_the_carried_context_and_new_frames(tmp_path):
    wrap(_window_sum(tmp_path / "sum.onnx", 10), tmp_path / "sum", context={"x": (2, 4)})
    stream = load(tmp_path / "sum").stream()
    signal = np.arange(1, 25, dtype=np.float32)  # 24 frames, pushed 6 at a time
    x = np.stack([signal, -signal])[None]        # [1, 2, 24]
    for start in range(0, 24, 6):
        got = stream.push({"x": x[:, :, start:start + 6]})["y"]
        expected = signal[max(0, start - 4):start + 6].sum()  # zeros before the first frame
        np.testing.assert_array_equal(got[0, :, 0], [expected, -expected])
    with pytest.raises(UsageError, match=r"the model takes 10 there, of which the stream carries 4 .* push 6 new"):
        stream.push({"x": x[:, :, :7]})
    stream.reset()
    np.testing.assert_array_equal(stream.push({"x": x[:, :, :6]})["y"][0, :, 0], [21.0, -21.0])


def test_load_with_feeds_judges_a_push_not_a_window(tmp_path):
    wrap(_window_sum(tmp_path / "sum.onnx", 10), tmp_path / "sum", context={"x": (2, 4)})
    assert load(tmp_path / "sum", feeds={"x": np.zeros((1, 2, 6), np.float32)}).backend == "onnxruntime"
    with pytest.raises(UsageError, match="push 6 new"):
        load(tmp_path / "sum", feeds={"x": np.zeros((1, 2, 10), np.float32)})


def _manifest(tmp_path):
    wrap(_window_sum(tmp_path / "sum.onnx", "frames"), tmp_path / "sum", context={"x": (2, 4)})
    return json.loads((tmp_path / "sum" / "edgesdk.json").read_text())


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["context"][0].update(axis=3), r"context\[0\].axis is 3, but 'x' has only 3 axes"),
    (lambda m: m["context"][0].update(input="nope"), r"context\[0\].input is 'nope', not one of the inputs"),
    (lambda m: m["context"][0].update(size=0), r"context\[0\].size must be at least 1"),
    (lambda m: m.update(context={}), r"context must be a list"),
    (lambda m: m.update(chunks=[{"input": "x", "axis": 1, "size": 2}]), r"chunks\[0\].axis is 1, but the context"),
    (lambda m: m.update(constants=[{"name": "x", "shape": [1], "dtype": "float32", "value": 1}]),
     r"constants\[0\].name is 'x', which is already an input"),
    (lambda m: m.update(constants=[{"name": "k", "shape": [1], "dtype": "float99", "value": 1}]),
     r"constants\[0\].dtype is 'float99'"),
    (lambda m: m.update(constants=[{"name": "k", "shape": [1], "dtype": "float32", "value": "1"}]),
     r"constants\[0\].value must be a finite number"),
])
def test_every_contract_field_is_checked_by_name(tmp_path, change, message):
    manifest = copy.deepcopy(_manifest(tmp_path))
    change(manifest)
    with pytest.raises(BundleError, match=message):
        check_manifest(manifest, "edgesdk.json")


def test_a_chunk_that_cannot_fit_a_static_window_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"chunks\[0\].size is 5, but the model takes 10 entries .* \(4 of them carried"):
        wrap(_window_sum(tmp_path / "sum.onnx", 10), tmp_path / "sum", context={"x": (2, 4)}, chunks={"x": (2, 5)})
    assert not (tmp_path / "sum").exists()
