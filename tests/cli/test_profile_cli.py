"""`edgesdk profile`: figures with provenance, report files, exit codes 5 and 6."""
from __future__ import annotations

import json
import sys

import pytest
from click.testing import CliRunner

from edgesdk.cli import cli
from edgesdk.profiler import figure_rows


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    torch = pytest.importorskip("torch")
    import edgesdk

    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.ReLU(), torch.nn.Linear(24, 4)).eval()
    path = tmp_path_factory.mktemp("cli") / "mlp"
    edgesdk.export(module, path, formats=("onnx",), example_inputs={"x": torch.randn(1, 12)})
    return path


@pytest.fixture
def no_sensors(tmp_path, monkeypatch):
    """Every sensor looks at an empty tree, and NVML is not installed: nothing can measure."""
    import edgesdk.profiler.session as session

    real_open = session.open_sensor
    monkeypatch.setattr(session, "open_sensor", lambda name, root="/", **kw: real_open(name, tmp_path, **kw))
    monkeypatch.setitem(sys.modules, "pynvml", None)


def test_json_and_report(bundle, tmp_path, no_sensors):
    report = tmp_path / "report"
    result = CliRunner().invoke(
        cli, ["profile", str(bundle), "--runs", "20", "--warmup", "2", "--json", "-o", str(report)],
        env={"COLUMNS": "200"},  # wide enough that no table cell wraps
    )
    assert result.exit_code == 0, result.output
    profile = json.loads(result.stdout)
    assert profile["latency"]["runs"] == 20
    assert profile["backend"]["name"] == "onnxruntime"
    energy = profile["energy"]
    assert energy["provenance"] == "estimated:ops"
    assert energy["ops"]["macs"] == 12 * 24 + 24 * 4
    assert set(energy["sensors_tried"]) == {"rapl", "ina3221", "nvml", "android"}
    # The human summary (stderr) says it is an estimate, and why no sensor was used.
    assert "estimate, not a measurement" in result.stderr
    assert "sensor rapl:" in result.stderr
    for name in ("profile.json", "summary.md", "latency_histogram.png"):
        assert (report / name).is_file(), name
    assert json.loads((report / "profile.json").read_text())["energy"]["provenance"] == "estimated:ops"
    # One set of rows: the terminal table and summary.md show the same figures, values and labels.
    rows = figure_rows(profile)
    assert [row.figure for row in rows][:4] == ["threads", "load time", "first inference", "latency p50 / p90 / p99 (20 runs)"]
    assert [(row.figure, row.provenance) for row in rows[-2:]] == [
        ("energy per inference", "estimated:ops"), ("estimate per inference, with memory", "estimated:ops+memory")]
    summary = (report / "summary.md").read_text()
    for row in rows:
        assert f"| {row.figure} | {row.value} | {row.provenance} |" in summary
        line = next(line for line in result.stderr.splitlines() if line.strip().startswith(row.figure))
        assert row.value in line and row.provenance in line


def test_explicit_rapl_without_rapl_exits_6(bundle, monkeypatch, tmp_path):
    import edgesdk.devices.sensors.rapl as rapl

    monkeypatch.setattr(rapl, "POWERCAP", str(tmp_path / "no-powercap"))
    result = CliRunner().invoke(cli, ["profile", str(bundle), "--energy", "rapl"])
    assert result.exit_code == 6, result.output
    assert "rapl energy measurement unavailable" in result.output


def test_strict_providers_fallback_exits_5(bundle, monkeypatch):
    import edgesdk.profiler.session as session

    # Pretend this onnxruntime build offers CUDA: the x86-64 profile then prefers it, and a run
    # that ends on the CPU is a fallback.
    monkeypatch.setattr(
        session, "onnxruntime_info",
        lambda: {"installed": True, "version": "test", "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]},
    )
    result = CliRunner().invoke(
        cli, ["profile", str(bundle), "--backend", "onnxruntime", "--strict-providers", "--energy", "estimate", "--runs", "2"]
    )
    assert result.exit_code == 5, result.output
    assert "CUDAExecutionProvider" in result.output


def test_stream_on_full_bundle_exits_2(bundle):
    result = CliRunner().invoke(cli, ["profile", str(bundle), "--stream", "--energy", "estimate"])
    assert result.exit_code == 2
    assert "not a streaming bundle" in result.output


def test_bad_option_values(bundle):
    result = CliRunner().invoke(cli, ["profile", str(bundle), "--energy", "wattmeter"])
    assert result.exit_code == 2
    result = CliRunner().invoke(cli, ["profile", str(bundle), "--runs", "0"])
    assert result.exit_code == 2


def test_the_figures_go_to_stdout_whole_and_the_notes_to_stderr(bundle, no_sensors):
    result = CliRunner().invoke(cli, ["profile", str(bundle), "--runs", "10", "--warmup", "1"],
                                env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    # A pipe is as wide as the longest row: every figure's whole line is on stdout.
    for label in ("latency p50 / p90 / p99 (10 runs)", "estimated:ops+memory", "measured:perf_counter"):
        assert label in result.stdout, label
    assert "…" not in result.stdout
    assert "estimate, not a measurement" in result.stderr and "estimate, not a measurement" not in result.stdout
