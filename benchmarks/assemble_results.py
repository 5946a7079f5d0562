"""Concatenate benchmarks/results/*.md into benchmarks/RESULTS.md (one section per script)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("lmuformer", "kws", "precision", "kws-precision", "ecoformer", "slab", "lighthubert", "profiler", "threads")
HEADER = """# Benchmark results

Each section is what one script under `benchmarks/` printed in one run on the development
machine (2 shared x86-64 cores, no GPU), with the notes written beside it. Read the ratios:
absolute times move with the load of the shared machine. `make benchmarks` re-runs them all;
each section lives in `benchmarks/results/<name>.md`, and this file is rebuilt from them by
`python benchmarks/assemble_results.py`.
"""


def _shift_heading(line: str, shift: int) -> str:
    if not line.startswith("#"):
        return line
    level = len(line) - len(line.lstrip("#"))
    return "#" * max(2, level + shift) + line[level:]


def main() -> None:
    # NAME.notes.md is the hand-written part a script folds into its own NAME.md: not a section.
    files = sorted((p for p in (HERE / "results").glob("*.md") if not p.name.endswith(".notes.md")),
                   key=lambda p: (ORDER.index(p.stem) if p.stem in ORDER else 99, p.stem))
    parts = [HEADER]
    for path in files:
        text = path.read_text().strip()
        # Shift headings so each section's first heading is "##", under the page title.
        lines = text.splitlines()
        first = next((line for line in lines if line.startswith("#")), "##")
        shift = 2 - (len(first) - len(first.lstrip("#")))
        parts.append("\n".join(_shift_heading(line, shift) for line in lines))
    (HERE / "RESULTS.md").write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
