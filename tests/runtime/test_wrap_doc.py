"""Every python and bash block of docs/wrap.md runs, in order, in one fresh folder."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

pytest.importorskip("onnx")
from click.testing import CliRunner  # noqa: E402

from edgesdk.cli import cli  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "wrap.md"
BLOCK = re.compile(r"```(python|bash)\n(.*?)```", re.S)


def test_the_wrap_page_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert [kind for kind, _ in blocks] == ["python", "bash", "python"]
    for kind, code in blocks:
        if kind == "python":
            exec(compile(code, str(DOC), "exec"), {"__name__": "docs_wrap"})
            continue
        for line in code.strip().splitlines():
            words = shlex.split(line)
            assert words[0] == "edgesdk", line
            result = CliRunner().invoke(cli, words[1:])
            assert result.exit_code == 0, f"{line}\n{result.output}"
    assert (tmp_path / "running_sum" / "edgesdk.json").is_file()
    assert (tmp_path / "running_sum_py" / "model.contract.onnx").is_file()
