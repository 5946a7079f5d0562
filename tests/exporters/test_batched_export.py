"""Batched exports: the ONNX files of SLAB, EcoFormer and whole-utterance LMUFormer take any batch.

Three crops of a real photograph (Grace Hopper, US Navy, public domain; matplotlib's sample
image, shipped as examples/images/grace_hopper.jpg) run as one batch of 3 in the runtime must
equal three single runs and the PyTorch model; the manifest records the ONNX artifact's batch as
"dynamic".
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import edgesdk
from edgesdk.models.registry import create_model
from edgesdk.sweep.figures import PHOTO_CROPS, photo_crops, top1_agreement


@pytest.mark.parametrize("family, preset, options", [("slab", "tiny", {}), ("ecoformer", "tiny", {})])
def test_a_batch_of_three_photos_equals_three_single_runs_and_pytorch(family, preset, options, tmp_path):
    model = create_model(family, preset=preset)
    result = edgesdk.export(model, tmp_path / family, formats=("onnx",), mode="full", random_weights=True, **options)
    assert result.valid
    artifact = result.manifest["artifacts"][0]
    assert artifact["batch"] == "dynamic"
    assert result.manifest["inputs"][0]["shape"][0] == "batch"
    side = result.manifest["inputs"][0]["shape"][-1]
    images = photo_crops(side, PHOTO_CROPS[:3])

    runtime = edgesdk.load(tmp_path / family, backend="onnxruntime")
    assert runtime.static_shape("image")[0] == "batch"  # the graph's own axis, named as the recipe names it
    batched = runtime.run({"image": images})
    singles = [runtime.run({"image": images[i:i + 1]}) for i in range(3)]
    with torch.no_grad():
        reference = model(torch.from_numpy(images))
    reference = (reference[0] if isinstance(reference, tuple) else reference).numpy()

    logits = batched["logits"]
    assert logits.shape[0] == 3
    np.testing.assert_allclose(logits, np.concatenate([s["logits"] for s in singles]), rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits, reference, rtol=1e-4, atol=1e-4)
    assert (logits.argmax(1) == reference.argmax(1)).all()
    codes = [name for name in batched if name != "logits"]
    assert len(codes) == (3 if family == "ecoformer" else 0)
    for name in codes:  # EcoFormer's hash codes: signs, the same bits per image, batch or not
        value = batched[name]
        np.testing.assert_array_equal(value, np.concatenate([s[name] for s in singles]), err_msg=name)
    assert not np.allclose(logits[0], logits[1])  # three different photos, not one repeated
    # The sweep's task figure for this cell: the float32 ONNX file picks PyTorch's class on every crop.
    figure = top1_agreement(model, tmp_path / family, "onnxruntime")
    assert (figure.value, figure.text) == (1.0, f"top-1 agreement with PyTorch {len(PHOTO_CROPS)}/{len(PHOTO_CROPS)} photo crops")


def test_the_kws_figure_is_the_accuracy_pytorch_gets_on_the_twelve_clips(tmp_path):
    """The shipped spotter, exported whole-utterance: the sweep's figure equals an independent count in PyTorch."""
    import json

    from edgesdk.runtime.audio import KaldiFbankFrontend, read_wav
    from edgesdk.sweep.figures import KWS_CLIPS, kws_accuracy
    from examples.kws.model import load_kws_model

    model = load_kws_model(KWS_CLIPS.parent / "kws_lmuformer.pt")
    result = edgesdk.export(model, tmp_path / "kws", formats=("onnx",), mode="full")
    figure = kws_accuracy(tmp_path / "kws", "onnxruntime")

    clips = json.loads((KWS_CLIPS / "clips.json").read_text())
    frontend = KaldiFbankFrontend.from_manifest(result.manifest["frontend"])
    labels = result.manifest["extra"]["labels"]
    features = np.stack([frontend.model_input(read_wav(KWS_CLIPS / c["file"], frontend.sample_rate_hz)) for c in clips])
    with torch.no_grad():
        predicted = model(torch.from_numpy(features)).argmax(dim=1).numpy()
    right = sum(labels[p] == c["label"] for p, c in zip(predicted, clips))
    assert right >= 9  # a trained spotter: most of the clips, so the figure is not chance
    assert (figure.value, figure.text) == (right / 12, f"KWS accuracy {right}/12 clips of examples/kws/clips")


def test_the_kws_whole_utterance_file_takes_a_batch_of_clips_and_says_so(tmp_path):
    """LMUFormer's whole-utterance export: logits carry the batch axis in the manifest too."""
    import json

    from edgesdk.runtime.audio import KaldiFbankFrontend, read_wav
    from edgesdk.sweep.figures import KWS_CLIPS
    from examples.kws.model import load_kws_model

    model = load_kws_model(KWS_CLIPS.parent / "kws_lmuformer.pt")
    result = edgesdk.export(model, tmp_path / "kws", formats=("onnx",), mode="full")
    assert result.manifest["outputs"][0]["name"] == "logits"
    assert result.manifest["outputs"][0]["shape"][0] == "batch"
    frontend = KaldiFbankFrontend.from_manifest(result.manifest["frontend"])
    clips = json.loads((KWS_CLIPS / "clips.json").read_text())[:4]
    features = np.stack([frontend.model_input(read_wav(KWS_CLIPS / c["file"], frontend.sample_rate_hz)) for c in clips])
    runtime = edgesdk.load(tmp_path / "kws", backend="onnxruntime")
    batched = runtime.run({"features": features})["logits"]
    with torch.no_grad():
        reference = model(torch.from_numpy(features)).numpy()
    assert batched.shape == reference.shape == (4, len(result.manifest["extra"]["labels"]))
    np.testing.assert_allclose(batched, reference, rtol=1e-4, atol=1e-4)
