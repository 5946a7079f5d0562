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


def _recording(tmp_path, shift_step=None):
    """Inputs stacked by step and the window sums they must give, computed here by numpy."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 2, 24)).astype(np.float32)
    padded = np.concatenate([np.zeros((1, 2, 4), np.float32), x], axis=2)
    steps = np.stack([x[:, :, s:s + 6] for s in range(0, 24, 6)])
    sums = np.stack([padded[:, :, s:s + 10].sum(axis=2, keepdims=True) for s in range(0, 24, 6)])
    if shift_step is not None:
        sums[shift_step] += 1.0
    np.savez(tmp_path / "inputs.npz", x=steps)
    np.savez(tmp_path / "expected.npz", y=sums)
    return tmp_path / "inputs.npz", tmp_path / "expected.npz"


def test_a_reference_recording_is_compared_step_by_step(tmp_path):
    from click.testing import CliRunner

    from edgesdk.cli import cli

    source = _window_sum(tmp_path / "sum.onnx", 10)
    inputs, expected = _recording(tmp_path)
    result = CliRunner().invoke(cli, ["wrap", str(source), "-o", str(tmp_path / "ok"), "--context", "x:2:4",
                                      "--reference", str(inputs), str(expected)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ok" / "validation.json").read_text())
    assert report["passed"] and report["steps"] == 4 and report["outputs"]["y"]["max_abs"] < 1e-5
    assert CliRunner().invoke(cli, ["validate", str(tmp_path / "ok")]).exit_code == 0

    inputs, expected = _recording(tmp_path, shift_step=2)
    result = CliRunner().invoke(cli, ["wrap", str(source), "-o", str(tmp_path / "bad"), "--context", "x:2:4",
                                      "--reference", str(inputs), str(expected)])
    assert result.exit_code == 4, result.output
    report = json.loads((tmp_path / "bad" / "validation.json").read_text())
    per_step = report["outputs"]["y"]["per_step_max_abs"]
    assert not report["passed"] and per_step[2] == pytest.approx(1.0, abs=1e-5) and max(per_step[:2]) < 1e-5
    assert json.loads((tmp_path / "bad" / "edgesdk.json").read_text())["artifacts"][0]["valid"] is False


def test_wrap_runs_with_torch_unimportable(tmp_path):
    import subprocess
    import sys

    source = _window_sum(tmp_path / "sum.onnx", 10)
    program = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np, edgesdk\n"
        f"edgesdk.wrap({str(source)!r}, {str(tmp_path / 'sum')!r}, context={{'x': (2, 4)}})\n"
        f"y = edgesdk.load({str(tmp_path / 'sum')!r}).stream().push({{'x': np.ones((1, 2, 6), np.float32)}})['y']\n"
        "assert y.ravel().tolist() == [6.0, 6.0], y\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
