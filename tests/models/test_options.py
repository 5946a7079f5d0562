"""Typed seams of the registry: ModelInfo, per-family ExportOptions, LMUFormer's StateLayout."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import edgesdk
from edgesdk.errors import UsageError
from edgesdk.models import ecoformer, lighthubert, lmuformer, slab
from edgesdk.models.info import ModelInfo, attach_model_info
from edgesdk.models.registry import available_families, get_family, model_info


# ---------------------------------------------------------------------- ModelInfo


def test_create_model_attaches_one_frozen_model_info():
    model = edgesdk.create_model("lmuformer", preset="tiny", seed=3)
    info = model_info(model)
    assert isinstance(info, ModelInfo)
    assert (info.family, info.preset, info.checkpoint, info.checkpoint_sha256) == ("lmuformer", "tiny", None, None)
    assert info.config == lmuformer.PRESETS["tiny"].config
    assert info.parameters == sum(p.numel() for p in model.parameters())
    assert (info.random_weights, info.seed, info.weights) == (True, 3, "seeded-random")
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.preset = "other"
    assert model_info(torch.nn.Linear(2, 2)) is None


def test_model_info_from_a_checkpoint_and_for_an_extracted_subnet(tmp_path):
    supernet = edgesdk.create_model("lighthubert", preset="tiny-supernet")
    path = tmp_path / "weights.pth"
    torch.save(supernet.state_dict(), path)
    loaded = edgesdk.create_model("lighthubert", preset="tiny-supernet", checkpoint=path)
    info = model_info(loaded)
    assert (info.random_weights, info.seed, info.weights, info.checkpoint) == (False, None, "checkpoint", str(path))
    assert len(info.checkpoint_sha256) == 64
    standalone = lighthubert.extract_subnet(loaded, "min")
    sub = model_info(standalone)
    assert sub.parameters == sum(p.numel() for p in standalone.parameters()) < info.parameters
    assert (sub.family, sub.preset, sub.checkpoint_sha256) == ("lighthubert", "tiny-supernet", info.checkpoint_sha256)


def test_attach_model_info_takes_only_a_model_info():
    with pytest.raises(TypeError, match="ModelInfo"):
        attach_model_info(torch.nn.Linear(2, 2), {"family": "lmuformer"})


# ---------------------------------------------------------------------- ExportOptions


def test_every_family_declares_typed_options_with_help():
    families = available_families()
    assert set(families) == {"lmuformer", "ecoformer", "slab", "lighthubert"}
    for family in families.values():
        declared = family.export_options.declared()
        assert declared, family.name
        for row in declared:
            assert row.help and row.type.name, (family.name, row.name)
            assert row.modes is None or set(row.modes) <= set(family.modes), (family.name, row.name)


def test_unknown_option_is_one_usage_error_listing_the_valid_ones():
    family = get_family("lmuformer")
    with pytest.raises(UsageError) as caught:
        family.parse_options("stream", {"chunk_frame": 2})
    message = str(caught.value)
    assert message.startswith("unknown lmuformer export options: chunk_frame; valid options: ")
    for expected in ("frames (int >= 1, mode full)", "chunk_frames (int >= 1, mode stream)",
                     "validation_steps (int >= 1, mode stream)", "sample_features ("):
        assert expected in message


@pytest.mark.parametrize(
    "family, mode, values, message",
    [
        ("lmuformer", "stream", {"chunk_frames": "two"}, "lmuformer export option chunk_frames must be int >= 1, not 'two'"),
        ("lmuformer", "stream", {"chunk_frames": 0}, "chunk_frames must be int >= 1, not 0"),
        ("lmuformer", "stream", {"chunk_frames": True}, "chunk_frames must be int >= 1, not True"),
        ("lmuformer", "full", {"chunk_frames": 2}, "chunk_frames applies to mode stream, not 'full'"),
        ("lmuformer", "stream", {"sample_features": "clip.npy"}, "sample_features takes a sequence of [frames, mel] arrays (Python only)"),
        ("slab", "full", {"fold": "maybe"}, "slab export option fold must be bool, not 'maybe'"),
        ("ecoformer", "full", {"image_size": "48y80"}, "image_size must be int or HxW pixels, not '48y80'"),
        ("ecoformer", "full", {"logits_atol": "-1"}, "logits_atol must be float >= 0, not '-1'"),
        ("lighthubert", "full", {"layers": "first"}, "layers must be last, all or i,j, not 'first'"),
        ("lighthubert", "full", {"window_seconds": 0}, "window_seconds must be float > 0, not 0"),
    ],
)
def test_ill_typed_option_names_the_option_its_type_and_the_valid_ones(family, mode, values, message):
    with pytest.raises(UsageError) as caught:
        get_family(family).parse_options(mode, values)
    assert message in str(caught.value)
    if "applies to mode" not in message:
        assert "valid options: " in str(caught.value)


def test_command_line_text_and_python_values_parse_alike():
    eco = get_family("ecoformer")
    from_text = eco.parse_options("full", {"image-size": "48x80", "hash_outputs": "false", "batch": "2", "logits_atol": "1e-2"})
    from_python = eco.parse_options("full", {"image_size": (48, 80), "hash_outputs": False, "batch": 2, "logits_atol": 0.01})
    assert from_text == from_python == ecoformer.EcoFormerExportOptions(image_size=(48, 80), hash_outputs=False,
                                                                        batch=2, logits_atol=0.01)
    assert eco.parse_options("full", {"image_size": "[48, 80]"}).image_size == (48, 80)
    assert eco.parse_options("full", {"image_size": 64}).image_size == (64, 64)
    assert get_family("slab").parse_options("full", {"fold": "no"}) == slab.SlabExportOptions(fold=False)
    hubert = get_family("lighthubert").parse_options("full", {"layers": "0,4,last", "window_seconds": "1.5"})
    assert (hubert.layers, hubert.window_seconds, hubert.subnet) == ("0,4,last", 1.5, None)
    assert get_family("lighthubert").parse_options("full", {"layers": [0, 3]}).layers == (0, 3)


def test_defaults_and_typed_objects_pass_through():
    family = get_family("lmuformer")
    assert family.parse_options("stream", None) == lmuformer.LMUFormerExportOptions()
    typed = lmuformer.LMUFormerExportOptions(chunk_frames=3)
    assert family.parse_options("stream", typed) is typed
    with pytest.raises(UsageError, match="chunk_frames applies to mode stream"):
        family.parse_options("full", typed)
    with pytest.raises(UsageError, match="lmuformer takes LMUFormerExportOptions, not SlabExportOptions"):
        family.parse_options("full", slab.SlabExportOptions())
    with pytest.raises(UsageError, match="chunk_frames must be int >= 1"):
        lmuformer.LMUFormerExportOptions(chunk_frames=-1)  # direct construction is checked too
    features = lmuformer.LMUFormerExportOptions(sample_features=[np.zeros((4, 128))]).sample_features
    assert isinstance(features, tuple) and features[0].dtype == np.float32


def test_recipe_receives_the_typed_options():
    model = edgesdk.create_model("lmuformer", preset="tiny")
    spec = get_family("lmuformer").export_spec(model, "stream", {"chunk_frames": "2", "validation_steps": "8"})
    assert tuple(spec.example_inputs["features"].shape) == (1, 2, 128)
    assert spec.validation_steps == 8
    assert spec.metadata["streaming"]["frames_per_step"] == 2


# ---------------------------------------------------------------------- the manifest


def test_model_info_reaches_the_manifest_and_a_custom_module_needs_none(tmp_path):
    model = edgesdk.create_model("lmuformer", preset="tiny", seed=5)
    result = edgesdk.export(model, tmp_path / "kws", formats=("onnx",), mode="full", frames=16, random_weights=True)
    section = result.manifest["model"]
    info = model_info(model)
    assert {key: section[key] for key in info.to_manifest()} == info.to_manifest()
    assert (section["family"], section["preset"], section["weights"]) == ("lmuformer", "tiny", "seeded-random")
    assert section["parameters"] == info.parameters

    custom = torch.nn.Sequential(torch.nn.Linear(6, 3))
    plain = edgesdk.export(custom, tmp_path / "custom", formats=("onnx",), example_inputs={"x": (1, 6)})
    assert (plain.manifest["model"]["family"], plain.manifest["model"]["parameters"]) == ("custom", 21)
    assert "weights" not in plain.manifest["model"]
    with pytest.raises(UsageError, match="unknown export option.*custom module: frames"):
        edgesdk.export(custom, tmp_path / "custom2", formats=("onnx",), example_inputs={"x": (1, 6)}, frames=3)


def test_export_takes_typed_options_or_keywords_not_both(tmp_path):
    model = edgesdk.create_model("lmuformer", preset="tiny")
    with pytest.raises(UsageError, match="not both"):
        edgesdk.export(model, tmp_path / "b", formats=("onnx",), mode="stream",
                       export_options=lmuformer.LMUFormerExportOptions(chunk_frames=2), validation_steps=4, random_weights=True)
    with pytest.raises(UsageError, match="unknown lmuformer export options: subnet"):
        edgesdk.export(model, tmp_path / "c", formats=("onnx",), subnet="min", random_weights=True)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


# ---------------------------------------------------------------------- LMUFormer state layout


@pytest.mark.parametrize("preset", ["tiny", "tiny-spiking"])
def test_state_layout_names_every_state_once_and_round_trips(preset):
    model = edgesdk.create_model("lmuformer", preset=preset)
    layout = model.state_layout()
    shapes = layout.shapes()
    assert shapes == model.state_shapes()
    assert list(shapes)[0] == "frames_seen" and list(shapes)[-1] == "head_sum"
    assert shapes["block0_attn_lmu_memory"] == (model.config.memory_order,)
    assert ("block0_mlp_v1" in shapes) == model.config.spiking
    state = {name: torch.full((2, *shape), float(i)) for i, (name, shape) in enumerate(shapes.items())}
    tree = layout.nest(state)
    assert tree["block0"]["attn"]["lmu"]["memory"] is state["block0_attn_lmu_memory"]
    assert tree["pe"]["buffer_rpe"] is state["pe_buffer_rpe"]
    assert list(layout.flatten(tree)) == list(shapes)
    assert all(layout.flatten(tree)[name] is state[name] for name in shapes)
    del state["block0_attn_lmu_memory"]
    with pytest.raises(UsageError, match="no 'block0_attn_lmu_memory'"):
        layout.nest(state)


def test_step_returns_the_state_in_layout_order():
    model = edgesdk.create_model("lmuformer", preset="tiny-spiking")
    state = model.init_state(1)
    with torch.no_grad():
        _, _, new = model.forward_step(torch.randn(1, model.config.mel_bins), state)
    assert list(new) == list(model.state_shapes())
    assert all(new[name].shape == state[name].shape for name in state)
    assert float(new["frames_seen"]) == 1.0
