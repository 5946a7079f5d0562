"""What a new user meets first: random weights only when asked for, and every verb that reads a
bundle saying first what to know about it (random weights, artifacts not copied along)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgesdk.cli import cli
from edgesdk.errors import UsageError


def test_export_without_a_checkpoint_is_refused_unless_random_weights_are_asked_for(tmp_path):
    runner = CliRunner()
    refused = runner.invoke(cli, ["export", "lmuformer", "--preset", "tiny", "--stream", "-o", str(tmp_path / "kws")])
    assert refused.exit_code == 2, refused.output
    text = " ".join(refused.output.split())
    assert "no --checkpoint" in text and "docs/lmuformer.md" in text and "--random-weights" in text
    assert "building" not in refused.output  # refused before the model was built
    assert not (tmp_path / "kws").exists()
    both = runner.invoke(cli, ["export", "lmuformer", "--preset", "tiny", "--random-weights", "--checkpoint",
                               __file__, "-o", str(tmp_path / "b")])
    assert both.exit_code == 2 and "contradict" in both.output
    custom = runner.invoke(cli, ["export", "examples.python.tiny_models:classifier", "--input", "features=1x40x5",
                                 "--random-weights", "-o", str(tmp_path / "c")])
    assert custom.exit_code == 2 and "apply to registered families" in custom.output


def test_the_python_api_asks_for_random_weights_by_name(tmp_path):
    pytest.importorskip("torch")
    import edgesdk
    from examples.kws.common import CHECKPOINT
    from examples.kws.model import load_kws_model
    from examples.python.tiny_models import classifier

    seeded = edgesdk.create_model("lmuformer", preset="tiny")
    with pytest.raises(UsageError, match=r"lmuformer tiny has no checkpoint loaded.*random_weights=True"):
        edgesdk.export(seeded, tmp_path / "a", formats=("onnx",), mode="stream")
    with pytest.raises(UsageError, match="holds the checkpoint"):
        edgesdk.export(load_kws_model(CHECKPOINT), tmp_path / "b", formats=("onnx",), mode="stream", random_weights=True)
    with pytest.raises(UsageError, match="not to your own module"):
        edgesdk.export(classifier(), tmp_path / "c", example_inputs={"features": (1, 40, 5)}, random_weights=True)
    assert not any(tmp_path.iterdir())  # refused before anything was written


@pytest.fixture
def random_bundle(stateless_bundle, tmp_path):
    """The classifier bundle as --random-weights records it (the manifest's model.weights)."""
    bundle = tmp_path / "random"
    shutil.copytree(stateless_bundle, bundle)
    manifest = json.loads((bundle / "edgesdk.json").read_text())
    manifest["model"]["weights"] = "seeded-random"
    (bundle / "edgesdk.json").write_text(json.dumps(manifest))
    np.savez(tmp_path / "x.npz", features=np.ones((1, 40, 17), np.float32))
    return bundle


@pytest.mark.parametrize("verb", [
    ["inspect"],
    ["validate"],
    ["run", "--inputs", "{x}"],
    ["profile", "--runs", "2", "--warmup", "0", "--energy", "estimate"],
])
def test_every_verb_says_first_that_the_weights_are_random(random_bundle, verb):
    arguments = [word.replace("{x}", str(random_bundle.parent / "x.npz")) for word in verb]
    result = CliRunner().invoke(cli, [arguments[0], str(random_bundle), *arguments[1:]], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"warning: {random_bundle} holds seeded-random weights"), result.stderr


def test_run_names_the_artifact_and_providers_choose_onnxruntime_as_a_comma_list(stateless_bundle, tmp_path):
    np.savez(tmp_path / "x.npz", features=np.ones((1, 40, 17), np.float32))
    result = CliRunner().invoke(cli, ["run", str(stateless_bundle), "--inputs", str(tmp_path / "x.npz"),
                                      "--provider", "CPUExecutionProvider,", "--strict-providers", "--json"])
    assert result.exit_code == 0, result.output  # "CPUExecutionProvider," as one name would not exist: exit 5
    assert json.loads(result.stdout)["backend"] == "onnxruntime"  # providers are onnxruntime's: auto keeps to it
    assert "running model.onnx (onnx, float32) on onnxruntime (CPUExecutionProvider); onnxruntime: execution " \
           "providers were asked for" in result.stderr


def test_a_state_shape_the_module_does_not_keep_is_exit_2_naming_the_expected_shape(tmp_path):
    pytest.importorskip("torch")
    result = CliRunner().invoke(cli, ["export", "tests.cli.projected_state:ProjectedState", "--input", "x=1x8", "--state", "h=1x1",
                                      "--format", "onnx", "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "state 'h' was given as 1x1, but the module returns it as 1x16: the module expects h=1x16 " \
           "(--state h=1x16)" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_wav_on_a_bundle_without_a_front_end_says_what_is_missing_and_how_to_add_it(stateless_bundle):
    clip = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples" / "kws" / "clips" / "stop.wav"
    result = CliRunner().invoke(cli, ["run", str(stateless_bundle), "--wav", str(clip), "--backend", "onnxruntime"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "cannot take audio: its manifest has no 'frontend' and no 'streaming' section" in text
    assert "KaldiFbankFrontend(...).to_manifest()" in text and "--inputs F.npz" in text
    assert "mode='stream'" not in text


def test_verbose_is_edgesdk_info_and_library_debug_needs_edgesdk_debug():
    import os
    import subprocess
    import sys

    probe = ("import logging; from edgesdk.cli import cli; cli(['-v', 'devices', '--json'], standalone_mode=False); "
             "print(logging.getLogger().level, logging.getLogger('edgesdk').getEffectiveLevel(), "
             "logging.getLogger('torch').getEffectiveLevel())")
    environment = {key: value for key, value in os.environ.items() if key != "EDGESDK_DEBUG"}
    levels = {}
    for debug in ("", "1"):
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                              env={**environment, **({"EDGESDK_DEBUG": debug} if debug else {})})
        assert done.returncode == 0, done.stderr
        levels[debug] = [int(word) for word in done.stdout.split()[-3:]]
    assert levels[""] == [logging_level("WARNING"), logging_level("INFO"), logging_level("WARNING")]
    assert levels["1"] == [logging_level("DEBUG")] * 3


def logging_level(name: str) -> int:
    import logging

    return logging.getLevelName(name)
