"""Results on stdout, never cut short; progress and warnings on stderr; --json for machines."""
from __future__ import annotations

import io
import json
import re
import sys

from click.testing import CliRunner

from edgesdk.cli import cli
from edgesdk.cli.common import ResultsTable, results


def test_models_piped_into_grep_finds_whole_rows_at_80_columns():
    """`edgesdk models lmuformer | grep spiking`: stdout is not a terminal, one sits around it at 80 columns."""
    ran = CliRunner().invoke(cli, ["models", "lmuformer"], env={"COLUMNS": "80"})
    assert ran.exit_code == 0, ran.output
    assert "model presets" not in ran.stderr and "scv2" not in ran.stderr  # nothing of the table on stderr
    listing = json.loads(CliRunner().invoke(cli, ["models", "lmuformer", "--json"]).stdout)
    lines = ran.stdout.splitlines()
    for preset in listing:
        rows = [line for line in lines if f" {preset['preset']} " in line and preset["family"] in line]
        assert len(rows) == 1, (preset["preset"], ran.stdout)
        row = rows[0]
        assert f"{preset['parameters']:,}" in row
        assert ", ".join(preset["modes"]) in row  # the modes column is filled
        assert preset["description"] in row  # whole, on the same line
    assert len(max(lines, key=len)) > 80  # widened, not cut, in a pipe
    assert "…" not in ran.stdout


def test_inspect_tables_go_to_stdout_whole(stateless_bundle):
    result = CliRunner().invoke(cli, ["inspect", str(stateless_bundle)])
    assert result.exit_code == 0, result.output
    facts = json.loads(CliRunner().invoke(cli, ["inspect", str(stateless_bundle), "--json"]).stdout)
    for name in ("tensors", "artifacts", "[1, 40, frames]", "model.onnx", "model.tflite", f"{facts['model']['parameters']:,}"):
        assert name in result.stdout, name
    for artifact in facts["artifacts"]:
        assert f"ops in {artifact['file']}" in result.stdout
    assert "tensors" not in result.stderr and "model.onnx" not in result.stderr


def test_devices_tables_go_to_stdout_whole():
    result = CliRunner().invoke(cli, ["devices"])
    assert result.exit_code == 0, result.output
    facts = json.loads(CliRunner().invoke(cli, ["devices", "--json"]).stdout)
    assert "power sensors" in result.stdout and "runtimes" in result.stdout
    for sensor in facts["power_sensors"]:
        assert sensor["reason"] in result.stdout, sensor["reason"]  # a long reason is not cut
    assert result.stderr == ""


def test_a_narrow_terminal_folds_cells_and_never_ends_them_in_an_ellipsis(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setenv("COLUMNS", "30")
    table = ResultsTable(title="artifacts")
    for column in ("file", "size", "sha256"):
        table.add_column(column)
    table.add_row("model.int8-dynamic.tflite", "44,398,112", "9f86d081884c7d659a2feaa0c55ad015")
    results.print(table)
    text = re.sub(r"\x1b\[[0-9;]*m", "", terminal.getvalue())  # the colours a terminal gets
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 30  # wrapped to the terminal
    # Each cell, read down its column, is whole: folded onto more lines, not cut.
    body = text.split("━\n", 1)[1].splitlines()
    columns = ["".join(line.split("│")[j].strip() for line in body) for j in range(3)]
    assert columns == ["model.int8-dynamic.tflite", "44,398,112", "9f86d081884c7d659a2feaa0c55ad015"]


def test_help_lists_every_exit_code_of_the_errors():
    import edgesdk.errors as errors

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    codes = {cls.exit_code for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.EdgeSDKError)}
    listed = result.stdout.split("Exit codes:", 1)[1]
    for code in sorted(codes | {0, 130, 143, 129}):
        assert re.search(rf"^\s+(\d+, )*{code}\b", listed, re.MULTILINE), code
    assert "docs/own-model.md" in listed
