"""edgesdk demo: the main job of `make demo` — a streaming keyword spotter, end to end.

Exports the keyword spotter shipped in examples/kws (an LMUFormer trained on synthetic speech)
to ONNX and TFLite in streaming mode, validates both, then streams each bundled clip through
both backends in 10 ms hops and prints the keyword, the frame that decided it, the per-frame
latency and the energy per second of audio (measured or estimated, always labelled).

The work is done by ``examples/kws/demo.py`` (``run_demo`` and ``render``); this verb parses
options and prints. The example lives in the source checkout, not in the installed package.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from edgesdk.cli.common import StepProgress, emit_json, human
from edgesdk.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "examples" / "kws" / "demo.py"


def _example_module():
    if not EXAMPLE.is_file():
        raise UsageError(f"the demo runs from a source checkout; {EXAMPLE} is missing")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))  # so that `examples.kws` imports as a package
    return importlib.import_module("examples.kws.demo")


@click.command("demo")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("out/kws-demo"), show_default=True,
              help="Bundle folder to (re)write; an existing bundle there is replaced.")
@click.option("--early-exit", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.98, show_default=True,
              help="Decide once the running probability of one keyword stays at or above this.")
@click.option("--early-exit-frames", type=click.IntRange(min=1), default=30, show_default=True,
              help="... for this many consecutive 10 ms frames.")
@click.option("--backend", "backends", type=click.Choice(["onnxruntime", "litert"]), multiple=True,
              help="Backend(s) to stream on (default: both).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
def command(output: Path, early_exit: float, early_exit_frames: int, backends: tuple[str, ...], as_json: bool) -> None:
    """Export, validate and stream the keyword spotter on ONNX Runtime and LiteRT."""
    demo = _example_module()
    progress = StepProgress()
    result = demo.run_demo(output, early_exit=early_exit, early_exit_frames=early_exit_frames,
                           backends=backends or demo.BACKENDS, progress=progress)
    progress.finish()
    if as_json:
        emit_json(result)
    else:
        demo.render(result, human)
    if not result["all_correct"]:
        raise click.ClickException("some bundled clips were not detected correctly (see the table)")
