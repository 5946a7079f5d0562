"""int8 export: dynamic-range TFLite weights, the LMU recurrence kept float, SQNR validation."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import edgesdk
from edgesdk.cli import cli
from edgesdk.errors import UsageError, ValidationError
from edgesdk.exporters.quantize import ops_to_keep_float
from edgesdk.runtime.compare import sqnr_db
from edgesdk.runtime.selftest import selftest


@pytest.fixture(scope="module")
def lmu_model():
    return edgesdk.create_model("lmuformer", preset="tiny")


@pytest.fixture(scope="module")
def int8_stream_bundle(tmp_path_factory, lmu_model):
    path = tmp_path_factory.mktemp("int8") / "tiny-stream"
    edgesdk.export(lmu_model, path, formats=("onnx", "tflite"), mode="stream", quantize="int8", random_weights=True)
    return path


def _tflite_weights(path):
    """dtype of every constant tensor with at least 2 dims, keyed by tensor index."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(path))
    return [t for t in interpreter.get_tensor_details() if len(t["shape"]) >= 2]


def test_sqnr_is_signal_over_noise_in_decibels():
    reference = np.ones(1000)
    assert sqnr_db(reference, reference.copy()) == float("inf")
    assert sqnr_db(reference, reference + 0.1) == pytest.approx(20.0)
    assert sqnr_db(reference, reference + 0.01) == pytest.approx(40.0)


def test_int8_bundle_validates_by_sqnr_and_keeps_onnx_float(int8_stream_bundle):
    manifest = json.loads((int8_stream_bundle / "edgesdk.json").read_text())
    tflite = next(a for a in manifest["artifacts"] if a["format"] == "tflite")
    onnx = next(a for a in manifest["artifacts"] if a["format"] == "onnx")
    assert tflite["precision"] == "int8-dynamic" and onnx["precision"] == "float32"
    assert tflite["size_bytes"] < 0.5 * tflite["float_size_bytes"]
    assert tflite["kept_float"] == ["blocks.0.attn.lmu.A"]
    assert manifest["validation"]["min_sqnr_db"] == 30.0
    report = json.loads((int8_stream_bundle / "validation.json").read_text())
    for case in report["formats"]["tflite"]["cases"]:
        for facts in case["outputs"].values():
            assert 30.0 <= facts["sqnr_db"] < 80.0  # lossy, as int8 must be, and above the floor
            assert "atol" not in facts
    for case in report["formats"]["onnx"]["cases"]:
        assert case["outputs"]["frame_logits"]["max_abs"] <= 1e-4


def test_int8_file_holds_int8_weights_but_the_recurrence_in_float(int8_stream_bundle, lmu_model):
    tensors = _tflite_weights(int8_stream_bundle / "model.tflite")
    assert sum(t["dtype"] == np.int8 for t in tensors) >= 5
    recurrence = lmu_model.blocks[0].attn.lmu.A.float().numpy()
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(str(int8_stream_bundle / "model.tflite"))
    float_matrices = [interpreter.get_tensor(t["index"]) for t in tensors
                      if t["dtype"] == np.float32 and tuple(t["shape"]) == recurrence.shape]
    assert any(np.array_equal(m, recurrence) for m in float_matrices)


def test_recurrence_is_found_by_content_in_the_float_file(tmp_path, lmu_model):
    path = tmp_path / "float"
    edgesdk.export(lmu_model, path, formats=("tflite",), mode="stream", random_weights=True)
    keep = {"A": lmu_model.blocks[0].attn.lmu.A.float().numpy()}
    ops, found = ops_to_keep_float(path / "model.tflite", keep)
    assert found == ["A"] and len(ops) == 1
    ops, found = ops_to_keep_float(path / "model.tflite", {"noise": np.random.default_rng(0).random((4, 4))})
    assert ops == [] and found == []


def test_int8_samples_reproduce_on_device_by_sqnr(int8_stream_bundle):
    report = selftest(int8_stream_bundle)
    litert = report["backends"]["litert"]
    assert report["passed"] and litert["passed"]
    assert all(o["sqnr_db"] >= 30.0 for o in litert["outputs"].values())
    assert all("atol" in o for o in report["backends"]["onnxruntime"]["outputs"].values())


def test_sqnr_floor_is_enforced(tmp_path, lmu_model):
    path = tmp_path / "strict"
    with pytest.raises(ValidationError) as caught:
        edgesdk.export(lmu_model, path, formats=("tflite",), mode="stream", quantize="int8", min_sqnr_db=90.0, random_weights=True)
    assert "tflite" in str(caught.value)
    manifest = json.loads((path / "edgesdk.json").read_text())
    assert manifest["valid"] is False and manifest["validation"]["min_sqnr_db"] == 90.0


def test_int8_full_mode_keeps_the_memory_kernel_float(tmp_path, lmu_model):
    result = edgesdk.export(lmu_model, tmp_path / "full", formats=("tflite",), mode="full", quantize="int8", random_weights=True)
    tflite = result.manifest["artifacts"][0]
    assert tflite["precision"] == "int8-dynamic" and tflite["kept_float"] == ["memory_kernel0"]


@pytest.mark.parametrize("arguments, message", [
    (dict(formats=("onnx",), quantize="int8"), "TFLite"),
    (dict(formats=("tflite",), quantize="int4"), "must be one of int8"),
])
def test_bad_quantize_arguments_are_usage_errors(tmp_path, lmu_model, arguments, message):
    with pytest.raises(UsageError, match=message):
        edgesdk.export(lmu_model, tmp_path / "x", mode="stream", **arguments, random_weights=True)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("family, preset, mode, message", [
    ("lmuformer", "tiny-spiking", "stream", "flip spikes"),
])
def test_families_that_cannot_be_int8_say_why(tmp_path, family, preset, mode, message):
    model = edgesdk.create_model(family, preset=preset)
    with pytest.raises(UsageError, match=message):
        edgesdk.export(model, tmp_path / "x", formats=("tflite",), mode=mode, quantize="int8", random_weights=True)
    assert not list(tmp_path.iterdir())


def test_cli_quantize_and_min_sqnr(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(cli, ["export", "lmuformer", "--preset", "tiny", "--random-weights", "--stream", "--format", "tflite",
                                  "--quantize", "int8", "--min-sqnr", "25", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "SQNR" in result.output and "needs 25" in result.output
    inspected = runner.invoke(cli, ["inspect", str(out), "--json"])
    facts = json.loads(inspected.output[inspected.output.index("{"):])
    assert [a["precision"] for a in facts["artifacts"]] == ["int8-dynamic"]
    shown = runner.invoke(cli, ["inspect", str(out)]).output
    assert "int8" in shown and "W_h[m]" in shown  # manifest keys are not read as rich markup
    result = runner.invoke(cli, ["export", "lmuformer", "--preset", "tiny", "--min-sqnr", "25", "-o", str(tmp_path / "y")])
    assert result.exit_code == 2 and "--quantize int8" in result.output


def test_int8_step_tracks_the_float_model_over_a_long_stream(int8_stream_bundle, lmu_model):
    """500 frames, far past validation's 40: the kept-float recurrence does not drift."""
    stream = edgesdk.load(int8_stream_bundle, backend="litert").stream()
    features = np.random.default_rng(3).standard_normal((500, 1, 1, lmu_model.config.mel_bins)).astype(np.float32)
    state = lmu_model.init_state(1)
    got, want = [], []
    with torch.no_grad():
        for frame in features:
            got.append(stream.push({"features": frame})["mean_logits"][0, 0])
            _, mean, state = lmu_model.forward_step(torch.from_numpy(frame[:, 0]), state)
            want.append(mean[0].numpy())
    got, want = np.stack(got), np.stack(want)
    assert sqnr_db(want[-100:], got[-100:]) >= 30.0
