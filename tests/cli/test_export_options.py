"""Family export options on the command line: checked once, before any work; listed by `models`."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgesdk.cli import cli


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["lmuformer", "--preset", "tiny", "--stream", "--option", "chunk_frame=2"],
         "unknown lmuformer export options: chunk_frame; valid options: frames (int >= 1, mode full), "
         "chunk_frames (int >= 1, mode stream), validation_steps (int >= 1, mode stream)"),
        (["lmuformer", "--preset", "tiny", "--stream", "--chunk-frames", "two"],
         "lmuformer export option chunk_frames must be int >= 1, not 'two'; valid options: frames (int >= 1"),
        (["lmuformer", "--preset", "tiny", "--chunk-frames", "2"],
         "lmuformer export option chunk_frames applies to mode stream, not 'full'"),
        (["slab", "--preset", "tiny", "--chunk-frames", "2"],
         "unknown slab export options: chunk_frames; valid options: fold (bool), image_size (int >= 1)"),
        (["slab", "--preset", "tiny", "--option", "fold=perhaps"],
         "slab export option fold must be bool, not 'perhaps'"),
        (["ecoformer", "--preset", "tiny", "--image-size", "big"],
         "ecoformer export option image_size must be int or HxW pixels, not 'big'"),
        (["lighthubert", "--preset", "tiny-supernet", "--layers", "first"],
         "lighthubert export option layers must be last, all or i,j, not 'first'; valid options: subnet (name or JSON"),
        (["lighthubert", "--preset", "tiny-supernet", "--no-fold"],
         "unknown lighthubert export options: fold; valid options: subnet"),
        (["lmuformer", "--preset", "tiny", "--stream", "--option", "sample_features=clips.npy"],
         "sample_features takes a sequence of [frames, mel] arrays (Python only), not text"),
    ],
)
def test_unknown_or_ill_typed_option_exits_2_listing_the_valid_ones(tmp_path, arguments, message):
    result = CliRunner().invoke(cli, ["export", *arguments, "--format", "onnx", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert "building" not in result.output  # refused before the model was built
    assert list(tmp_path.iterdir()) == []


def test_models_family_lists_its_options_with_type_default_and_help():
    result = CliRunner().invoke(cli, ["models", "lighthubert"])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "lighthubert export options" in text
    for name, type_name, default in (("subnet", "name or JSON", "the supernet's default"),
                                     ("layers", "last, all or i,j", "last"),
                                     ("window_seconds", "float > 0", "the chunk window"),
                                     ("context_frames", "int >= 0", "64")):
        row = next(line for line in text.splitlines() if line.startswith(f"  {name}  ("))
        assert type_name in row and default in row, row
    assert "hidden states to output: last, all, or indices i,j" in text
    assert "--option NAME=VALUE" in text and "--window-seconds" in text


def test_models_json_carries_each_familys_options():
    result = CliRunner().invoke(cli, ["models", "slab", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows and all(row["family"] == "slab" for row in rows)
    options = {option["name"]: option for option in rows[0]["export_options"]}
    assert set(options) == {"fold", "image_size"}
    assert (options["fold"]["type"], options["fold"]["default"], options["fold"]["modes"]) == ("bool", "True", ["full"])


def test_export_family_help_shows_that_familys_options():
    result = CliRunner().invoke(cli, ["export", "lmuformer", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "lmuformer options (--option NAME=VALUE" in text
    assert "chunk_frames int >= 1; default 1; mode stream." in text
    assert "sample_features" in text and "Python only" in text
    generic = CliRunner().invoke(cli, ["export", "--help"])
    assert generic.exit_code == 0 and "edgesdk models FAMILY" in generic.output
    assert "chunk_frames int >= 1" not in " ".join(generic.output.split())


def _tiny_lighthubert_checkpoint(path):
    """A tiny supernet saved with a fairseq-style cfg that describes it completely."""
    import torch

    import edgesdk
    from edgesdk.models import lighthubert

    config = lighthubert.PRESETS["tiny-supernet"].config
    model = edgesdk.create_model("lighthubert", preset="tiny-supernet", seed=4)
    layers = " + ".join(f"[({c},{k},{s})]" for c, k, s in config.conv_feature_layers)
    cfg = {"model": {"_name": "hubert_pruner", "encoder_embed_dim": 128, "encoder_ffn_embed_dim": 512,
                     "encoder_attention_heads": 2, "encoder_layers": 12, "extractor_mode": config.extractor_mode,
                     "conv_feature_layers": layers, "conv_pos": config.conv_pos,
                     "conv_pos_groups": config.conv_pos_groups, "supernet_type": "tiny"},
           "task": {"normalize": config.normalize}}
    torch.save({"model": model.state_dict(), "cfg": cfg}, path)
    return model


def test_a_checkpoint_carrying_its_config_needs_no_preset_and_a_disagreeing_preset_exits_2(tmp_path):
    import numpy as np

    import edgesdk
    from edgesdk.models.registry import model_info

    reference = _tiny_lighthubert_checkpoint(tmp_path / "tiny.pt")
    runner = CliRunner()
    refused = runner.invoke(cli, ["export", "lighthubert", "--preset", "base-supernet", "--checkpoint",
                                  str(tmp_path / "tiny.pt"), "--format", "onnx", "-o", str(tmp_path / "no")])
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert f"--preset base-supernet and the config in {tmp_path / 'tiny.pt'} disagree (supernet_type 'base' vs 'tiny'" in text
    assert "use --preset tiny-supernet or leave --preset out" in text
    assert not (tmp_path / "no").exists()

    loaded = edgesdk.create_model("lighthubert", checkpoint=tmp_path / "tiny.pt")
    assert model_info(loaded).preset == "tiny-supernet" and model_info(loaded).config == model_info(reference).config

    result = runner.invoke(cli, ["export", "lighthubert", "--checkpoint", str(tmp_path / "tiny.pt"), "--subnet", "min",
                                 "--window-seconds", "0.5", "--format", "onnx", "-o", str(tmp_path / "bundle"), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout[result.stdout.index("{"):])
    assert (manifest["model"]["preset"], manifest["model"]["weights"]) == ("tiny-supernet", "checkpoint")
    assert manifest["extra"]["lighthubert"]["subnet"]["layer_num"] == 10
    # the bundle computes what the checkpoint's own weights compute (an independent PyTorch run)
    import torch

    from edgesdk.models import lighthubert

    inputs = dict(np.load(tmp_path / "bundle" / "samples" / "inputs.npz"))
    got = edgesdk.load(tmp_path / "bundle", backend="onnxruntime").run(inputs)
    with torch.no_grad():
        hidden = lighthubert.extract_subnet(reference, "min")(torch.from_numpy(inputs["waveform"]))
    np.testing.assert_allclose(got["hidden_state_10"], hidden[10].numpy(), atol=1e-3, rtol=1e-3)
