"""`edgesdk profile` options a user reaches for: threads, input shapes, per-backend load time, sysfs root."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgesdk.cli import cli


def _profile(bundle, *options):
    return CliRunner().invoke(cli, ["profile", str(bundle), "--runs", "3", "--warmup", "0", "--energy", "estimate",
                                    "--json", *options])


@pytest.fixture(scope="module")
def dynamic_bundle(tmp_path_factory):
    """An MLP whose batch axis is dynamic (ONNX only)."""
    torch = pytest.importorskip("torch")
    import edgesdk

    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    path = tmp_path_factory.mktemp("dynamic") / "mlp"
    edgesdk.export(mlp, path, formats=("onnx",), example_inputs={"x": torch.randn(2, 16)},
                   dynamic_axes={"x": {0: "batch"}})
    return path


def test_threads_and_shapes_are_used_and_recorded(dynamic_bundle):
    result = _profile(dynamic_bundle, "--backend", "onnxruntime", "--threads", "1", "--shape", "x=3x16")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["threads"] == 1
    assert report["inputs"]["x"]["shape"] == [3, 16]
    assert report["artifact"] == {"file": "model.onnx", "format": "onnx", "precision": "float32"}
    # Three rows: three times the MACs of one row (16x32 + 32x4), counted from the graph at that shape.
    assert report["energy"]["ops"]["macs"] == 3 * (16 * 32 + 32 * 4)
    assert "threads 1" in result.output


def test_bad_shapes_are_usage_errors(bundles):
    result = _profile(bundles["mlp"], "--backend", "onnxruntime", "--shape", "y=3x16")
    assert result.exit_code == 2 and "--shape names 'y', which is not an input fed here; inputs: x" in result.output
    result = _profile(bundles["mlp"], "--backend", "onnxruntime", "--shape", "x=3")
    assert result.exit_code == 2 and "--shape x has 1 dims; the input has 2" in result.output
    result = _profile(bundles["mlp"], "--shape", "x:3")
    assert result.exit_code == 2 and "--shape takes NAME=DIMxDIM" in result.output


def test_load_time_is_the_chosen_backends_own(bundles):
    # The bundle holds ONNX and TFLite: auto opens and times both, then the chosen one is loaded alone.
    result = _profile(bundles["mlp"], "--backend", "auto")
    assert result.exit_code == 0, result.output
    latency = json.loads(result.stdout)["latency"]
    report = json.loads(result.stdout)
    assert latency["load_time_backend"] == report["backend"]["name"]
    assert latency["backend_selection_s"] is not None
    assert latency["load_time_s"] < latency["backend_selection_s"]


def test_both_estimates_are_shown_side_by_side(bundles):
    result = _profile(bundles["mlp"], "--backend", "onnxruntime")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    memory = report["energy_estimate_memory"]
    assert memory["provenance"] == "estimated:ops+memory"
    assert memory["energy_per_inference_j"] > report["energy"]["energy_per_inference_j"]
    assert memory["weight_bytes"] == (bundles["mlp"] / "model.onnx").stat().st_size
    assert "estimated:ops+memory" in result.output
    assert {row["file"] for row in report["energy_estimates_by_artifact"]} == {"model.onnx", "model.tflite"}
