"""`edgesdk demo` finds the example of a source tree without sys.path, and explains itself without one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code_or_args: list[str], pythonpath: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, *code_or_args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_without_a_source_tree_the_demo_exits_5_with_one_sentence(tmp_path):
    """As from an installed wheel: the package alone, no examples/ beside it or in the current folder."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "edgesdk", site / "edgesdk", ignore=shutil.ignore_patterns("__pycache__"))
    here = tmp_path / "elsewhere"
    here.mkdir()
    ran = _python(["-c", "from edgesdk.cli import main; main()", "demo", "-o", str(tmp_path / "out")], site, here)
    assert ran.returncode == 5, ran.stderr
    assert "runs the keyword-spotting example of the edgesdk source tree" in ran.stderr
    assert "run it from a clone of the edgesdk repository" in ran.stderr
    assert not (tmp_path / "out").exists()


def test_the_example_loads_by_file_location_not_through_sys_path(tmp_path):
    code = (
        "import sys; before = list(sys.path)\n"
        "from edgesdk.cli.demo import _example_module\n"
        "demo = _example_module()\n"
        "assert sys.path == before, 'sys.path changed'\n"
        "assert not [m for m in sys.modules if m == 'examples' or m.startswith('examples.')], 'examples imported'\n"
        "sys.stdout.write(demo.__file__)\n"
    )
    ran = _python(["-c", code], ROOT, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert Path(ran.stdout) == ROOT / "examples" / "kws" / "demo.py"
