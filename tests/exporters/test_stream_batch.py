"""Streams of batch > 1 through a user's own step: the dynamic batch reaches the ONNX graph,
and each state's batch axis is the one the module uses (an nn.GRU state is [layers, batch, hidden])."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import edgesdk
from edgesdk.cli import cli
from edgesdk.errors import UsageError

STREAMS, STEPS, FEATURES, HIDDEN = 3, 6, 8, 16


class GRUStep(nn.Module):
    """One step: x [batch, 1, 8], h [1, batch, 16] -> (y [batch, 4], h_next [1, batch, 16])."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN, 4)

    def forward(self, x, h):
        y, h_next = self.gru(x, h)
        return self.head(y[:, -1]), h_next


def gru_step() -> nn.Module:
    torch.manual_seed(0)
    return GRUStep().eval()


def _graph_shapes(path) -> dict[str, list]:
    model = onnx.load(str(path))
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(model.graph.input) + list(model.graph.output)}


def test_gru_step_streams_three_at_once_like_three_pytorch_runs(tmp_path):
    module = gru_step()
    result = edgesdk.export(module, tmp_path / "gru", formats=("onnx",), example_inputs={"x": (1, 1, FEATURES)},
                            states={"h": (1, 1, HIDDEN)}, batch_axes={"h": 1}, dynamic_axes={"x": {0: "batch"}},
                            output_names=["y"])
    assert result.manifest["state"][0]["batch_axis"] == 1
    assert result.manifest["outputs"] == [{"name": "y", "shape": ["batch", 4], "dtype": "float32"}]
    shapes = _graph_shapes(tmp_path / "gru" / "model.onnx")
    assert shapes["x"] == ["batch", 1, FEATURES] and shapes["h"] == [1, "batch", HIDDEN]

    # Three different streams (speech-like: each a smooth random walk of its own)
    rng = np.random.default_rng(7)
    steps = np.cumsum(rng.standard_normal((STEPS, STREAMS, 1, FEATURES)), axis=0).astype(np.float32) * 0.3
    model = edgesdk.load(tmp_path / "gru", backend="onnxruntime")
    stream = model.stream(batch=STREAMS)
    batched = np.stack([stream.push(steps[t])["y"] for t in range(STEPS)])  # push(array): the step's one input

    # The independent reference: nn.GRU over each whole sequence, one stream at a time.
    for b in range(STREAMS):
        with torch.no_grad():
            sequence = torch.from_numpy(steps[:, b, 0][None])  # [1, steps, features]
            outputs, _ = module.gru(sequence)
            expected = module.head(outputs[0]).numpy()  # [steps, 4]
        np.testing.assert_allclose(batched[:, b], expected, atol=1e-5)
    assert not np.allclose(batched[:, 0], batched[:, 1])  # the streams really differ


def test_misplaced_state_batch_axis_is_a_usage_error_naming_the_fix(tmp_path):
    with pytest.raises(UsageError, match=r"cannot run at batch 2.*batch_axes=\{name: axis\} \(--batch-axis STATE:AXIS\)"):
        edgesdk.export(gru_step(), tmp_path / "bad", formats=("onnx",), example_inputs={"x": (1, 1, FEATURES)},
                       states={"h": (1, 1, HIDDEN)}, dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(UsageError, match="'nope', which is not a state"):
        edgesdk.export(gru_step(), tmp_path / "bad", formats=("onnx",), example_inputs={"x": (1, 1, FEATURES)},
                       states={"h": (1, 1, HIDDEN)}, batch_axes={"nope": 1})
    with pytest.raises(UsageError, match="batch axis 3 of state 'h' is out of range"):
        edgesdk.export(gru_step(), tmp_path / "bad", formats=("onnx",), example_inputs={"x": (1, 1, FEATURES)},
                       states={"h": (1, 1, HIDDEN)}, batch_axes={"h": 3})
    assert not (tmp_path / "bad").exists()


def test_cli_batch_axis_and_output_names_from_a_file_path(tmp_path, monkeypatch):
    source = tmp_path / "models" / "steps.py"
    source.parent.mkdir()
    source.write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Step(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.gru = nn.GRU(8, 16, batch_first=True)\n"
        "    def forward(self, x, h):\n"
        "        y, h_next = self.gru(x, h)\n"
        "        return y[:, -1], h_next\n\n"
        "def step():\n    torch.manual_seed(0)\n    return Step().eval()\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["export", "models/steps.py:step", "--input", "x=1x1x8", "--state", "h=1x1x16",
                                      "--batch-axis", "h:1", "--dynamic", "x:0=batch", "--output-names", "features",
                                      "--format", "onnx", "-o", "out"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "edgesdk.json").read_text())
    assert [o["name"] for o in manifest["outputs"]] == ["features"]
    assert manifest["state"][0]["batch_axis"] == 1
    assert _graph_shapes(tmp_path / "out" / "model.onnx")["h_next"] == [1, "batch", 16]
    assert manifest["model"]["factory"] == "models/steps.py:step"
