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
