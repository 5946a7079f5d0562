"""edgesdk demo: the main job of `make demo` — a streaming keyword spotter, end to end.

Exports the keyword spotter shipped in examples/kws (an LMUFormer trained on synthetic speech)
to ONNX and TFLite in streaming mode, validates both, then streams each bundled clip through
both backends in 10 ms hops and prints the keyword, when it was decided (seconds into the clip),
the per-frame latency and the energy per second of audio (measured or estimated, always labelled).

The work is done by the example's ``demo.py`` (``run_demo`` and ``render``); this verb finds the
example, parses options and prints. The example (its code, trained model and clips) lives in the
source tree, not in the installed package: the verb looks for ``examples/kws`` beside the
imported package (a checkout or an editable install) and in the current folder, and loads it by
file location under a private module name, never through ``sys.path``. Where there is none it
exits 5 and says where to get it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import click

from edgesdk.cli.common import StepProgress, emit_json, human

EXAMPLE = Path("examples") / "kws"
MODULE_NAME = "_edgesdk_kws_example"


class ExampleMissing(click.ClickException):
    """The demo's example is not on this machine (exit 5: something to run on is unavailable)."""

    exit_code = 5


def example_folder(places: list[Path]) -> Path | None:
    """The first of ``places`` holding the example (its ``demo.py`` and ``__init__.py``)."""
    for place in places:
        folder = place / EXAMPLE
        if (folder / "demo.py").is_file() and (folder / "__init__.py").is_file():
            return folder
    return None


def load_example(folder: Path) -> ModuleType:
    """``folder``'s ``demo`` module, its package registered as MODULE_NAME so that its relative
    imports resolve, without adding anything to ``sys.path``."""
    if MODULE_NAME not in sys.modules:
        spec = importlib.util.spec_from_file_location(MODULE_NAME, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[MODULE_NAME] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{MODULE_NAME}.demo")


def _example_module() -> ModuleType:
    places = [Path(__file__).resolve().parents[2], Path.cwd()]
    folder = example_folder(places)
    if folder is None:
        raise ExampleMissing(
            f"edgesdk demo runs the keyword-spotting example of the edgesdk source tree ({EXAMPLE}: its code, "
            f"trained model and clips), which the installed package does not hold and which is not in "
            f"{' or '.join(str(p) for p in dict.fromkeys(places))}: run it from a clone of the edgesdk repository.")
    return load_example(folder)


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
