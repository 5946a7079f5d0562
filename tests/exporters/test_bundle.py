"""export(): the bundle layout, validation (full and streaming), atomic writing, failures."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import edgesdk
from edgesdk.errors import ConversionError, UsageError, ValidationError
from edgesdk.exporters import bundle as bundle_module
from edgesdk.runtime.manifest import SCHEMA_VERSION, sha256_file


def test_stateless_bundle_has_every_file_and_a_complete_manifest(stateless_bundle):
    names = {p.name for p in stateless_bundle.iterdir()}
    assert {"model.onnx", "model.tflite", "edgesdk.json", "validation.json", "export.log", "samples"} <= names
    manifest = json.loads((stateless_bundle / "edgesdk.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["valid"] is True and manifest["mode"] == "full"
    assert manifest["inputs"] == [{"name": "features", "shape": [1, 40, "frames"], "dtype": "float32"}]
    assert manifest["outputs"][0]["name"] == "output" and manifest["outputs"][0]["shape"] == [1, 12]
    assert manifest["state"] == []
    assert manifest["model"]["parameters"] == 40 * 64 * 3 + 64 + 64 * 12 + 12
    for artifact in manifest["artifacts"]:
        assert artifact["sha256"] == sha256_file(stateless_bundle / artifact["file"])
        assert artifact["op_histogram"]
    tflite = next(a for a in manifest["artifacts"] if a["format"] == "tflite")
    assert tflite["inputs"] == {"features": "args_0"} and tflite["outputs"] == {"output": "output_0"}
    assert manifest["provenance"]["torch"].startswith("2.")
    assert "created_utc" in manifest["provenance"]


def test_validation_report_records_error_per_format_and_output(stateless_bundle):
    report = json.loads((stateless_bundle / "validation.json").read_text())
    assert report["passed"] is True
    for fmt in ("onnx", "tflite"):
        case = report["formats"][fmt]["cases"][0]
        facts = case["outputs"]["output"]
        assert 0 <= facts["max_abs"] <= 1e-4 and facts["mean_abs"] <= facts["max_abs"]


def test_onnx_file_describes_itself_in_metadata_props(stateless_bundle):
    model = onnx.load(str(stateless_bundle / "model.onnx"))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["edgesdk.schema_version"]) == SCHEMA_VERSION
    assert json.loads(props["edgesdk.inputs"])[0]["name"] == "features"
    assert json.loads(props["edgesdk.state"]) == []


def test_samples_hold_reference_outputs_that_match_torch(stateless_bundle):
    from examples.python.tiny_models import classifier

    inputs = np.load(stateless_bundle / "samples" / "inputs.npz")
    expected = np.load(stateless_bundle / "samples" / "expected.npz")
    with torch.no_grad():
        reference = classifier()(torch.from_numpy(inputs["features"])).numpy()
    np.testing.assert_allclose(expected["output"], reference, atol=1e-6)


def test_streaming_bundle_declares_state_and_validates_32_steps(streaming_bundle):
    manifest = json.loads((streaming_bundle / "edgesdk.json").read_text())
    assert manifest["mode"] == "stream"
    assert [(s["name"], s["input"], s["output"], s["shape"]) for s in manifest["state"]] == [
        ("conv_buffer", "conv_buffer", "conv_buffer_next", [1, 2, 40]),
        ("hidden", "hidden", "hidden_next", [1, 64]),
    ]
    report = json.loads((streaming_bundle / "validation.json").read_text())
    for fmt in ("onnx", "tflite"):
        logits = report["formats"][fmt]["cases"][0]["outputs"]["logits"]
        assert len(logits["per_step_max_abs"]) == 32
        assert logits["max_abs"] < 1e-4
    inputs = np.load(streaming_bundle / "samples" / "inputs.npz")
    assert inputs["features"].shape == (32, 1, 1, 40)


class Diverging(torch.nn.Module):
    """Computes something else while being exported: validation must catch it."""

    def forward(self, x):
        if torch.compiler.is_exporting():
            return x * 2.0 + 1.0
        return x * 2.0


def test_validation_failure_keeps_files_marks_manifest_invalid_and_raises(tmp_path):
    out = tmp_path / "bad"
    with pytest.raises(ValidationError) as caught:
        edgesdk.export(Diverging(), out, example_inputs={"x": (1, 8)})
    assert caught.value.exit_code == 4
    manifest = json.loads((out / "edgesdk.json").read_text())
    assert manifest["valid"] is False
    assert all(a["valid"] is False for a in manifest["artifacts"])
    report = json.loads((out / "validation.json").read_text())
    assert report["formats"]["onnx"]["cases"][0]["outputs"]["output"]["max_abs"] == pytest.approx(1.0)
    assert any(line.startswith("✗") for line in caught.value.report["lines"])
    # PyTorch's own rounding is tiny here, so the failure is the export's, and the report says so.
    assert report["formats"]["onnx"]["cases"][0]["pytorch_float64_gap"]["output"] < 1e-6
    assert any("PyTorch float32 vs float64 here" in line for line in caught.value.report["lines"])


def test_failure_from_rounding_alone_shows_pytorchs_own_rounding(tmp_path, stateless_bundle):
    """With no tolerance at all, the artifact's float32 error is the size of PyTorch's own."""
    from examples.python.tiny_models import classifier

    with pytest.raises(ValidationError) as caught:
        edgesdk.export(classifier(), tmp_path / "exact", formats=("onnx",), example_inputs={"features": (1, 40, 17)},
                       atol=0.0, rtol=0.0)
    case = caught.value.report["formats"]["onnx"]["cases"][0]
    gap = case["pytorch_float64_gap"]["output"]
    assert 0 < gap < 1e-5
    assert 0 < case["outputs"]["output"]["max_abs"] < 20 * gap


class DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export cannot trace it
            return x
        return -x


def test_conversion_failure_is_exit_3_names_the_reason_and_keeps_only_its_log(tmp_path):
    out = tmp_path / "nope"
    with pytest.raises(ConversionError) as caught:
        edgesdk.export(DataDependent(), out, formats=("onnx",), example_inputs={"x": (1, 4)})
    assert caught.value.exit_code == 3
    message = str(caught.value)
    assert message.startswith("ONNX conversion failed: TorchExportError: GuardOnDataDependentSymNode: Could not guard "
                              "on data-dependent expression")
    # the line of the model's source that torch.export names
    assert f"(at {__file__}:{DataDependent.forward.__code__.co_firstlineno + 1} in forward: if x.sum() > 0:" in message
    assert "\x1b[" not in message and "Next steps" not in message
    log = tmp_path / "nope.export.log"
    assert message.endswith(f"nothing was written to {out}; the converters' output and the full error are in {log}")
    assert [p.name for p in tmp_path.iterdir()] == ["nope.export.log"]  # no bundle, no partial folder
    assert "GuardOnDataDependentSymNode" in log.read_text()
    from examples.python.tiny_models import classifier

    edgesdk.export(classifier(), out, formats=("onnx",), example_inputs={"features": (1, 40, 5)})
    assert not log.exists()  # a later export that succeeds removes the stale log


def test_existing_output_is_refused_unless_forced(stateless_bundle, tmp_path):
    from examples.python.tiny_models import classifier

    out = tmp_path / "again"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(UsageError, match="already exists"):
        edgesdk.export(classifier(), out, formats=("onnx",), example_inputs={"features": (1, 40, 5)})
    with pytest.raises(UsageError, match="not an edgesdk bundle"):
        edgesdk.export(classifier(), out, formats=("onnx",), example_inputs={"features": (1, 40, 5)}, force=True)
    assert (out / "keep.txt").read_text() == "user data"


def test_force_replaces_a_bundle(tmp_path):
    from examples.python.tiny_models import classifier

    out = tmp_path / "replace"
    edgesdk.export(classifier(), out, formats=("onnx",), example_inputs={"features": (1, 40, 5)})
    edgesdk.export(classifier(), out, formats=("tflite",), example_inputs={"features": (1, 40, 5)}, force=True)
    assert sorted(p.name for p in out.glob("model.*")) == ["model.tflite"]
    assert [p.name for p in tmp_path.iterdir()] == ["replace"]


def test_interrupt_during_export_leaves_no_partial_bundle(tmp_path, monkeypatch):
    from examples.python.tiny_models import classifier

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(bundle_module, "export_tflite", interrupted)
    with pytest.raises(KeyboardInterrupt):
        edgesdk.export(classifier(), tmp_path / "out", example_inputs={"features": (1, 40, 5)})
    assert list(tmp_path.iterdir()) == []


def test_sample_inputs_file_adds_a_validation_case(tmp_path):
    from examples.python.tiny_models import classifier

    samples = tmp_path / "samples.npz"
    np.savez(samples, features=np.full((1, 40, 5), 0.5, dtype=np.float32))
    result = edgesdk.export(classifier(), tmp_path / "out", formats=("onnx",),
                            example_inputs={"features": (1, 40, 5)}, sample_inputs=samples)
    cases = [c["name"] for c in result.validation["formats"]["onnx"]["cases"]]
    assert cases == ["random[seed=0]", "sample[0]"]
    with pytest.raises(UsageError, match="model's inputs are features"):
        np.savez(tmp_path / "wrong.npz", x=np.zeros((1, 40, 5), np.float32))
        edgesdk.export(classifier(), tmp_path / "out2", formats=("onnx",),
                       example_inputs={"features": (1, 40, 5)}, sample_inputs=tmp_path / "wrong.npz")


def test_bad_arguments_are_usage_errors(tmp_path):
    from examples.python.tiny_models import classifier, streaming_classifier

    with pytest.raises(UsageError, match="formats"):
        edgesdk.export(classifier(), tmp_path / "a", formats=("coreml",), example_inputs={"features": (1, 40, 5)})
    with pytest.raises(UsageError, match="example_inputs"):
        edgesdk.export(classifier(), tmp_path / "b")
    with pytest.raises(UsageError, match="needs states"):
        edgesdk.export(streaming_classifier(), tmp_path / "c", mode="stream", example_inputs={"features": (1, 1, 40)})
    with pytest.raises(UsageError, match="returned 3 tensors"):
        edgesdk.export(streaming_classifier(), tmp_path / "d", example_inputs={"features": (1, 1, 40)},
                       states={"conv_buffer": (1, 2, 40), "hidden": (1, 64)}, output_names=["a", "b"])
