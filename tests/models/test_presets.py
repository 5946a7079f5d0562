"""The generic test every family passes, over every small registered preset.

Forward without NaN; a strict checkpoint round trip; export to both formats; reload in the
torch-free runtime and match the PyTorch outputs the bundle recorded.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edgesdk
from edgesdk.errors import CheckpointError
from edgesdk.spec import call_module
from edgesdk.models.registry import available_families, model_info

SMALL = [
    (family.name, preset.name, mode)
    for family in available_families().values()
    for preset in family.presets.values()
    if preset.small
    for mode in family.modes
]


def _example_feeds(spec):
    feeds = {name: tensor.numpy() for name, tensor in spec.example_inputs.items()}
    feeds.update({s.input_name: s.initial(s.shape[s.batch_axis]) for s in spec.states})
    return feeds


@pytest.mark.parametrize("family, preset", sorted({(f, p) for f, p, _ in SMALL}))
def test_forward_is_finite_and_checkpoint_round_trip_is_exact(family, preset, tmp_path):
    model = edgesdk.create_model(family, preset=preset, seed=1)
    spec = edgesdk_family_spec(model, "full" if "full" in _modes(family) else _modes(family)[0])
    outputs = call_module(spec, _example_feeds(spec))
    assert all(np.isfinite(value).all() for value in outputs.values())

    checkpoint = tmp_path / "weights.pth"
    torch.save(model.state_dict(), checkpoint)
    reloaded = edgesdk.create_model(family, preset=preset, checkpoint=checkpoint, seed=2)
    again = call_module(edgesdk_family_spec(reloaded, spec.mode), _example_feeds(spec))
    for name in spec.output_names:
        np.testing.assert_array_equal(again[name], outputs[name])
    assert model_info(reloaded).checkpoint_sha256

    state = model.state_dict()
    state.pop(next(iter(state)))
    torch.save(state, checkpoint)
    with pytest.raises(CheckpointError, match="missing"):
        edgesdk.create_model(family, preset=preset, checkpoint=checkpoint)


@pytest.mark.parametrize("family, preset, mode", SMALL)
def test_export_both_formats_reload_and_match(family, preset, mode, tmp_path):
    model = edgesdk.create_model(family, preset=preset, seed=1)
    result = edgesdk.export(model, tmp_path / "bundle", formats=("onnx", "tflite"), mode=mode, random_weights=True)
    assert result.valid
    inputs = dict(np.load(tmp_path / "bundle" / "samples" / "inputs.npz"))
    expected = dict(np.load(tmp_path / "bundle" / "samples" / "expected.npz"))
    tolerances = result.manifest["validation"]
    for backend in ("onnxruntime", "litert"):
        runtime_model = edgesdk.load(tmp_path / "bundle", backend=backend)
        if runtime_model.is_streaming:
            stream = runtime_model.stream()
            steps = len(next(iter(inputs.values())))
            results = [stream.push({n: inputs[n][i] for n in inputs}) for i in range(steps)]
            got = {n: np.stack([r[n] for r in results]) for n in expected}
        else:
            got = runtime_model.run(inputs)
        for name, reference in expected.items():
            if name in tolerances["family_checked_outputs"]:
                continue  # e.g. binary codes: the family's own check ran at export
            atol, rtol = tolerances["output_tolerances"].get(name, (tolerances["atol"], tolerances["rtol"]))
            np.testing.assert_allclose(got[name], reference, atol=atol, rtol=rtol, err_msg=f"{backend} {name}")


def _modes(family):
    return available_families()[family].modes


def edgesdk_family_spec(model, mode):
    from edgesdk.models.registry import get_family

    return get_family(model_info(model).family).export_spec(model, mode)
