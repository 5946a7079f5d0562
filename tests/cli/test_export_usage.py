"""`edgesdk export` refuses bad outputs and options with exit 2 and a message, before any work."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgesdk.cli import cli

BASE = ["export", "examples.python.tiny_models:classifier", "--input", "features=1x40x5", "--format", "onnx"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-o", "{tmp}/file", "--force"], "is a file, not a bundle folder"),
        (["-o", "{tmp}/file/out"], "cannot create the folder"),
        (["-o", "{tmp}/a", "--atol", "-1"], "atol must be a number >= 0"),
        (["-o", "{tmp}/b", "--opset", "5"], "opset 5 is not supported: the dynamo exporter writes opsets 18 to"),
        (["-o", "{tmp}/c", "--dynamic", "frames:2=frames"], "dynamic axis for unknown tensor 'frames'"),
        (["-o", "{tmp}/d", "--dynamic", "features:7=frames"], "dynamic axis 7 of 'features' is out of range"),
    ],
)
def test_bad_output_or_option_exits_2_with_a_message(tmp_path, extra, message):
    (tmp_path / "file").write_text("user data")
    result = CliRunner().invoke(cli, BASE + [a.replace("{tmp}", str(tmp_path)) for a in extra])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert (tmp_path / "file").read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_permission_denied_output_folder_exits_2(tmp_path, monkeypatch):
    import os

    real_open = os.open

    def denied(path, *args, **kwargs):  # tests run as root, so a chmod would not stop them
        if str(path).startswith(str(tmp_path)):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    result = CliRunner().invoke(cli, BASE + ["-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert f"cannot write into {tmp_path}: Permission denied" in result.output
    assert list(tmp_path.iterdir()) == []


def test_wrong_example_or_state_shape_is_exit_2_with_the_shapes_given(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["export", "examples.python.tiny_models:classifier", "--input", "features=1x41x17",
                                 "-o", str(tmp_path / "wrong")])
    assert result.exit_code == 2, result.output
    assert "cannot run on the example shapes (features [1, 41, 17])" in result.output
    assert "40 channels" in result.output
    result = runner.invoke(cli, ["export", "examples.python.tiny_models:streaming_classifier", "--input",
                                 "features=1x1x40", "--state", "conv_buffer=1x2x40", "--state", "hidden=1x64x1",
                                 "-o", str(tmp_path / "wrong_state")])
    assert result.exit_code == 2, result.output
    assert "state hidden [1, 64, 1]" in result.output
    assert not (tmp_path / "wrong").exists() and not (tmp_path / "wrong_state").exists()
