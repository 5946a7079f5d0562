"""The torch-free runtime: load, run, stream, feeds checking, bundle integrity, providers."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import edgesdk
from edgesdk.errors import BackendUnavailable, BundleError, UsageError
from edgesdk.runtime import load
from edgesdk.runtime.selftest import selftest

BACKENDS = ("onnxruntime", "litert")


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_reproduces_the_reference_samples(stateless_bundle, backend):
    model = load(stateless_bundle, backend=backend)
    assert model.backend == backend and model.providers
    inputs = dict(np.load(stateless_bundle / "samples" / "inputs.npz"))
    expected = np.load(stateless_bundle / "samples" / "expected.npz")["output"]
    np.testing.assert_allclose(model.run(inputs)["output"], expected, atol=1e-4)


def test_onnx_keeps_the_dynamic_axis_and_tflite_refuses_other_shapes(stateless_bundle):
    onnx_model = load(stateless_bundle, backend="onnxruntime")
    for frames in (17, 33, 1):
        features = np.random.default_rng(frames).standard_normal((1, 40, frames)).astype(np.float32)
        assert onnx_model.run({"features": features})["output"].shape == (1, 12)
    tflite_model = load(stateless_bundle, backend="litert")
    with pytest.raises(UsageError, match=r"takes \[1, 40, 17\].*static shapes"):
        tflite_model.run({"features": np.zeros((1, 40, 33), np.float32)})


def test_auto_backend_measures_and_says_why(stateless_bundle):
    model = load(stateless_bundle)
    assert model.backend in BACKENDS
    assert "fastest here" in model.backend_choice and "onnxruntime" in model.backend_choice


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_carries_state_like_the_reference(streaming_bundle, backend):
    model = load(streaming_bundle, backend=backend)
    sequence = np.load(streaming_bundle / "samples" / "inputs.npz")["features"]
    expected = np.load(streaming_bundle / "samples" / "expected.npz")["logits"]
    stream = model.stream()
    got = np.stack([stream.push({"features": frame})["logits"] for frame in sequence])
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert stream.steps == len(sequence)
    stream.reset()
    assert stream.steps == 0 and all(not value.any() for value in stream.state.values())
    np.testing.assert_allclose(stream.push({"features": sequence[0]})["logits"], expected[0], atol=1e-4)


def test_batched_stream_stacks_state_along_the_batch_axis(streaming_bundle):
    model = load(streaming_bundle, backend="onnxruntime")
    sequence = np.load(streaming_bundle / "samples" / "inputs.npz")["features"][:8]
    single = model.stream()
    batched = model.stream(batch=2)
    assert batched.state["hidden"].shape == (2, 64)
    for frame in sequence:
        alone = single.push({"features": frame})["logits"]
        together = batched.push({"features": np.concatenate([frame, np.zeros_like(frame)])})["logits"]
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)
    with pytest.raises(UsageError, match="exported for batch 1"):
        load(streaming_bundle, backend="litert").stream(batch=2)


def test_streams_are_independent(streaming_bundle):
    model = load(streaming_bundle, backend="onnxruntime")
    first, second = model.stream(), model.stream()
    frame = np.ones((1, 1, 40), np.float32)
    fresh = first.push({"features": frame})["logits"]
    assert first.state["hidden"].any()  # the push moved the first stream's state...
    assert not second.state["hidden"].any()  # ...and not the second's
    # The second stream's first step answers as a fresh stream does, not as the first's second step.
    again = first.push({"features": frame})["logits"]
    assert np.abs(again - fresh).max() > 1e-6
    np.testing.assert_array_equal(second.push({"features": frame})["logits"], fresh)


def test_bad_feeds_get_clear_errors(stateless_bundle, streaming_bundle):
    model = load(stateless_bundle, backend="onnxruntime")
    good = np.zeros((1, 40, 17), np.float32)
    with pytest.raises(UsageError, match="unknown feed.*'x'.*missing feed.*'features'"):
        model.run({"x": good})
    with pytest.raises(UsageError, match="float64.*float32"):
        model.run({"features": good.astype(np.float64)})
    with pytest.raises(UsageError, match=r"shape \(40, 17\); the model takes \[1, 40, frames\]"):
        model.run({"features": good[0]})
    with pytest.raises(UsageError, match=r"shape \(1, 39, 17\)"):
        model.run({"features": good[:, :39]})
    bad = good.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        model.run({"features": bad})
    stream = load(streaming_bundle, backend="litert").stream()
    with pytest.raises(UsageError, match="carried by the stream"):
        stream.push({"features": np.zeros((1, 1, 40), np.float32), "hidden": np.zeros((1, 64), np.float32)})
    with pytest.raises(UsageError, match=r"shape \(1, 2, 40\)"):
        stream.push({"features": np.zeros((1, 2, 40), np.float32)})
    with pytest.raises(UsageError, match="not a streaming bundle"):
        model.stream()


def _copy(bundle, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def test_changed_artifact_is_refused(stateless_bundle, tmp_path):
    bundle = _copy(stateless_bundle, tmp_path)
    with open(bundle / "model.tflite", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="sha256 no longer matches"):
        load(bundle, backend="litert")


def test_newer_schema_and_missing_keys_are_refused(stateless_bundle, tmp_path):
    bundle = _copy(stateless_bundle, tmp_path)
    manifest = json.loads((bundle / "edgesdk.json").read_text())
    (bundle / "edgesdk.json").write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema 99 is newer"):
        load(bundle)
    del manifest["inputs"]
    (bundle / "edgesdk.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="no 'inputs' key"):
        load(bundle)
    (bundle / "edgesdk.json").unlink()
    with pytest.raises(BundleError, match="edgesdk.json is missing"):
        load(bundle)


def test_lone_onnx_describes_itself_and_lone_tflite_loads(streaming_bundle):
    model = load(streaming_bundle / "model.onnx")
    assert [s.name for s in model.state_spec] == ["conv_buffer", "hidden"]
    assert model.stream().push({"features": np.zeros((1, 1, 40), np.float32)})["logits"].shape == (1, 12)
    lone = load(streaming_bundle / "model.tflite")
    assert [i.name for i in lone.inputs] == ["args_0", "args_1", "args_2"]


def test_strict_providers_refuse_a_silent_fallback(stateless_bundle, caplog):
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        load(stateless_bundle, backend="onnxruntime", providers=["CUDAExecutionProvider"], strict_providers=True)
    model = load(stateless_bundle, backend="onnxruntime", providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert model.providers == ["CPUExecutionProvider"]
    assert model.provider_fallback == ["CUDAExecutionProvider"]
    assert "unavailable" in caplog.text


def test_unknown_backend_and_missing_artifact(stateless_bundle, tmp_path):
    with pytest.raises(UsageError, match="unknown backend"):
        load(stateless_bundle, backend="tensorrt")
    bundle = _copy(stateless_bundle, tmp_path)
    manifest = json.loads((bundle / "edgesdk.json").read_text())
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["format"] == "onnx"]
    (bundle / "edgesdk.json").write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailable, match="no tflite artifact"):
        load(bundle, backend="litert")


def test_selftest_reproduces_samples_on_both_backends(streaming_bundle):
    report = selftest(streaming_bundle)
    assert report["passed"] is True
    assert set(report["backends"]) == set(BACKENDS)
    for facts in report["backends"].values():
        assert facts["outputs"]["logits"]["max_abs"] < 1e-4


def test_selftest_fails_when_expected_outputs_disagree(stateless_bundle, tmp_path):
    bundle = _copy(stateless_bundle, tmp_path)
    expected = dict(np.load(bundle / "samples" / "expected.npz"))
    expected["output"] = expected["output"] + 0.01
    np.savez(bundle / "samples" / "expected.npz", **expected)
    report = selftest(bundle)
    assert report["passed"] is False
    assert report["backends"]["onnxruntime"]["outputs"]["output"]["max_abs"] == pytest.approx(0.01, rel=1e-3)


def test_public_api_reexports(stateless_bundle):
    assert edgesdk.load(stateless_bundle, backend="litert").backend == "litert"
