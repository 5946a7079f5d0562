"""The fenced blocks of a markdown page, and how the docs tests run them.

A page's blocks run in order in one folder, like a reader typing them: ``bash``/``sh`` blocks as
one bash script each (``set -e``), ``console`` blocks as their ``$ `` lines, ``python`` blocks as
a script. A block that cannot run here says so right before it, with a reason:
``<!-- not-run: needs a Jetson -->``; a slow one is marked ``<!-- slow -->`` and runs only with
``-m fullsize``. Every fence carries a language (``text`` for output), so a command cannot hide
in an unlabelled block.
"""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNABLE = frozenset({"bash", "sh", "console", "python"})
FENCE = re.compile(r"^(\s*)```(.*)$")
MARKER = re.compile(r"^\s*<!--\s*(not-run|slow)\s*(?::\s*(.*?))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its language, its text, and how it is marked."""

    page: Path
    line: int
    language: str
    code: str
    not_run: str | None = None  # the reason, when marked not-run
    slow: bool = False

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name
        return f"{page}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.language in RUNNABLE and self.not_run is None


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the markers on the lines right before it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, language = opening.group(1), opening.group(2).strip()
        markers: dict[str, str] = {}
        before = index - 1
        while before >= 0 and (MARKER.match(lines[before]) or not lines[before].strip()):
            marker = MARKER.match(lines[before])
            if marker:
                markers[marker.group(1)] = marker.group(2) or ""
            before -= 1
        end = index + 1
        while end < len(lines) and not re.match(rf"^{re.escape(indent)}```\s*$", lines[end]):
            end += 1
        code = "\n".join(line[len(indent):] if line.startswith(indent) else line for line in lines[index + 1:end])
        found.append(Block(page, index + 1, language, code + "\n", markers.get("not-run"), "slow" in markers))
        index = end + 1
    return found


def prepare_folder(folder: Path) -> dict[str, str]:
    """A folder where the repository's examples are at hand (as in a checkout) and the
    environment of a reader: ``edgesdk``, ``python`` and ``python3`` run this checkout's code."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("examples", "benchmarks"):
        link = folder / name
        if not link.exists():
            link.symlink_to(ROOT / name, target_is_directory=True)
    shims = folder / ".bin"
    shims.mkdir(exist_ok=True)
    commands = {
        "edgesdk": f'exec "{sys.executable}" -c "import sys; sys.argv[0] = \'edgesdk\'; '
                   f'from edgesdk.cli import main; main()" "$@"',
        "python": f'exec "{sys.executable}" "$@"',
        "python3": f'exec "{sys.executable}" "$@"',
    }
    for name, body in commands.items():
        path = shims / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    environment = {key: value for key, value in os.environ.items() if key != "EDGESDK_DEBUG"}
    environment.update(PATH=f"{shims}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(ROOT),
                       COLUMNS="200", PYTHONUNBUFFERED="1")
    return environment


def run(block: Block, folder: Path, environment: dict[str, str], timeout_s: float = 900) -> subprocess.CompletedProcess:
    """Run one block in ``folder``; the result carries its exit code and output."""
    if block.language == "python":
        script = folder / f".block_{block.line}.py"
        script.write_text(block.code)
        command = [sys.executable, str(script)]
    else:
        code = block.code
        if block.language == "console":
            code = "\n".join(line[2:] for line in code.splitlines() if line.startswith("$ ")) + "\n"
        command = ["bash", "-e", "-o", "pipefail", "-c", code]
    return subprocess.run(command, cwd=folder, env=environment, capture_output=True, text=True, timeout=timeout_s)
