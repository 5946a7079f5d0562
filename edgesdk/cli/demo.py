"""edgesdk demo: the main job of `make demo`.

Until the keyword-spotting demo lands, this runs the bring-your-own streaming example from
examples/python/ in a source checkout: export to ONNX and TFLite, validate, stream on both.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

import click

from edgesdk.errors import UsageError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python" / "byo_streaming.py"


@click.command("demo")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("out/byo-streaming"), show_default=True)
def command(output: Path) -> None:
    """Export, validate and stream the bring-your-own example on both backends."""
    if not EXAMPLE.is_file():
        raise UsageError(f"the demo runs from a source checkout; {EXAMPLE} is missing")
    saved = sys.argv
    sys.argv = [str(EXAMPLE), "--output", str(output)]
    try:
        runpy.run_path(str(EXAMPLE), run_name="__main__")
    except SystemExit as done:
        if done.code:
            raise
    finally:
        sys.argv = saved
