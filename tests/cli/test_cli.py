"""The CLI verbs of the foundation, through click's CliRunner: exit codes and output."""
from __future__ import annotations

import json
import signal
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgesdk.cli import cli


@pytest.fixture
def runner():
    return CliRunner()


def test_export_custom_stateless_module_then_inspect_run_validate(runner, tmp_path):
    out = tmp_path / "classifier"
    result = runner.invoke(cli, ["export", "examples.python.tiny_models:classifier", "--input", "features=1x40x17",
                                 "--dynamic", "features:2=frames", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert "✓ onnx" in result.stderr and "✓ tflite" in result.stderr
    assert json.loads(result.stdout)["valid"] is True

    inspected = runner.invoke(cli, ["inspect", str(out)])
    assert inspected.exit_code == 0
    assert "[1, 40, frames]" in inspected.stdout and "Conv" in inspected.stdout and "8,524" in inspected.stdout

    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, features=np.ones((1, 40, 33), np.float32))
    ran = runner.invoke(cli, ["run", str(out), "--inputs", str(inputs), "--backend", "onnxruntime", "--json",
                              "-o", str(tmp_path / "outputs.npz")])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["outputs"]["output"]["shape"] == [1, 12]
    assert np.load(tmp_path / "outputs.npz")["output"].shape == (1, 12)

    validated = runner.invoke(cli, ["validate", str(out)])
    assert validated.exit_code == 0
    assert "samples reproduce on onnxruntime (model.onnx, float32), litert (model.tflite, float32)" in validated.stdout


def test_export_custom_streaming_module_and_stream_it(runner, tmp_path):
    out = tmp_path / "streaming"
    result = runner.invoke(cli, ["export", "examples.python.tiny_models:streaming_classifier",
                                 "--input", "features=1x1x40", "--state", "conv_buffer=1x2x40",
                                 "--state", "hidden=1x64", "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "edgesdk.json").read_text())
    assert [s["name"] for s in manifest["state"]] == ["conv_buffer", "hidden"]
    steps = tmp_path / "steps.npz"
    np.savez(steps, features=np.random.default_rng(0).standard_normal((5, 1, 1, 40)).astype(np.float32))
    ran = runner.invoke(cli, ["run", str(out), "--inputs", str(steps), "--stream", "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["outputs"]["output"]["shape"] == [5, 1, 12]


@pytest.mark.parametrize(
    "arguments, code, message",
    [
        (["export", "nosuchfamily", "--preset", "x", "-o", "{tmp}/a"], 2, "unknown model family 'nosuchfamily'"),
        (["export", "examples.python.tiny_models:classifier", "--input", "features=1xAx3", "-o", "{tmp}/b"], 2, "not a shape"),
        (["export", "examples.python.tiny_models:nothing", "--input", "x=1x2", "-o", "{tmp}/c"], 2, "has no attribute 'nothing'"),
        (["export", "examples.python.tiny_models:classifier", "-o", "{tmp}/d"], 2, "needs at least one --input"),
        (["export", "examples.python.tiny_models:classifier", "--input", "features=1x40x5", "--format", "coreml",
          "-o", "{tmp}/e"], 2, "formats must be among onnx, tflite"),
        (["run", "{tmp}", "--inputs", "{tmp}/none.npz"], 2, "does not exist"),
        (["inspect", "{tmp}"], 2, "edgesdk.json is missing"),
        (["inspect", "{tmp}/inputs.npz"], 2, "neither a bundle folder"),
        (["validate", "{tmp}"], 2, "edgesdk.json is missing"),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(runner, tmp_path, arguments, code, message):
    (tmp_path / "inputs.npz").write_bytes(b"")
    result = runner.invoke(cli, [a.replace("{tmp}", str(tmp_path)) for a in arguments])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_existing_output_needs_force(runner, stateless_bundle):
    result = runner.invoke(cli, ["export", "examples.python.tiny_models:classifier", "--input", "features=1x40x5",
                                 "-o", str(stateless_bundle)])
    assert result.exit_code == 2
    assert "already exists" in result.output and "--force" in result.output


def test_validation_failure_exits_4_and_names_the_output(runner, tmp_path):
    result = runner.invoke(cli, ["export", "tests.cli.diverging_model:Diverging", "--input", "x=1x8", "-o", str(tmp_path / "bad")])
    assert result.exit_code == 4, result.output
    assert "✗ onnx" in result.stderr and "validation failed for onnx, tflite" in result.stderr
    assert json.loads((tmp_path / "bad" / "edgesdk.json").read_text())["valid"] is False


def test_tampered_bundle_is_refused_by_run_and_validate(runner, stateless_bundle, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(stateless_bundle, copy)
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes() + b"\0")
    for verb in (["validate", str(copy)], ["run", str(copy), "--inputs", str(copy / "samples" / "inputs.npz")]):
        result = runner.invoke(cli, verb)
        assert result.exit_code == 2 and "sha256 no longer matches" in result.output


def test_wrong_feeds_exit_2(runner, stateless_bundle, tmp_path):
    inputs = tmp_path / "wrong.npz"
    np.savez(inputs, features=np.ones((1, 40, 17), np.float64))
    result = runner.invoke(cli, ["run", str(stateless_bundle), "--inputs", str(inputs)])
    assert result.exit_code == 2 and "float64" in result.output


def test_models_lists_families_as_json(runner):
    result = runner.invoke(cli, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert all({"family", "preset", "parameters"} <= set(row) for row in rows)
    assert all(row["parameters"] > 0 for row in rows)


def test_help_lists_the_verbs(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    for verb in ("export", "run", "validate", "inspect", "models", "demo"):
        assert verb in result.output
    commands = result.output.split("Commands:")[1].split("Exit codes:")[0]
    assert "..." not in commands  # each verb's first sentence whole, not cut to the width
    assert " ".join(commands.split()).count("to a validated bundle.") == 1


def test_inspect_a_lone_onnx_reads_its_metadata(runner, streaming_bundle):
    result = runner.invoke(cli, ["inspect", str(streaming_bundle / "model.onnx"), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert [s["name"] for s in facts["state"]] == ["conv_buffer", "hidden"]
    assert facts["inputs"][0]["name"] == "features"
    assert facts["artifacts"][0]["op_histogram"]["Conv"] == 1


def test_export_without_torch_names_the_extra_and_exits_5(monkeypatch, tmp_path):
    # A runtime-only install (edgesdk[runtime], as on an ARM64 board) has no torch.
    import importlib.util

    from edgesdk.cli import EdgeSDKClickError

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "torch" else real_find_spec(name, *a, **k))
    with pytest.raises(EdgeSDKClickError) as caught:
        cli(["export", "lmuformer", "--preset", "tiny", "-o", str(tmp_path / "b")], standalone_mode=False)
    assert caught.value.exit_code == 5
    assert "pip install 'edgesdk[export]'" in caught.value.message
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupt_while_options_are_parsed_exits_128_plus_signal(monkeypatch, capsys, signum):
    """Outside a verb (option parsing, the group itself) click alone would say 'Aborted!', exit 1."""
    import edgesdk.cli as cli_module
    from edgesdk.interrupts import Interrupted

    def interrupted_while_parsing(*args, **kwargs):
        raise Interrupted(signum)

    monkeypatch.setattr(cli_module.cli, "make_context", interrupted_while_parsing)
    monkeypatch.setattr(sys, "argv", ["edgesdk", "models"])
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    assert exited.value.code == 128 + signum
    assert f"Interrupted by {signal.Signals(signum).name}." in capsys.readouterr().err


@pytest.mark.parametrize("arguments, code", [(["models", "--json"], 0), (["--version"], 0), (["nosuchverb"], 2),
                                             (["export", "nosuch", "--preset", "x", "-o", "/tmp/x"], 2)])
def test_main_keeps_the_exit_codes_of_the_verbs(monkeypatch, capsys, arguments, code):
    import edgesdk.cli as cli_module

    monkeypatch.setattr(sys, "argv", ["edgesdk", *arguments])
    with pytest.raises(SystemExit) as exited:
        cli_module.main()
    assert exited.value.code == code, capsys.readouterr()
