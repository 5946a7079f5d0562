"""Small helpers shared by the verbs: output streams, JSON, shapes, progress."""
from __future__ import annotations

import json
import sys
import time
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

# Progress, warnings and converter chatter go to stderr; results (tables, the lines a user
# greps) go to stdout through `results`; --json goes to stdout through emit_json.
human = Console(stderr=True, highlight=False, soft_wrap=True)

# A pipe or a file has no width: results there are as wide as their longest row, never cut.
PIPE_WIDTH = 10_000


class ResultsConsole:
    """Prints results on stdout: wrapped to the terminal at a TTY, unwrapped in a pipe or file.

    The console is made at each print, so a swapped ``sys.stdout`` (click's CliRunner, a
    redirect inside a program) is the one written to and measured.
    """

    def print(self, *objects: Any, **options: Any) -> None:
        self.console().print(*objects, **options)

    @staticmethod
    def console() -> Console:
        if sys.stdout.isatty():
            return Console(file=sys.stdout, highlight=False)
        return Console(file=sys.stdout, highlight=False, width=PIPE_WIDTH, soft_wrap=True)


results = ResultsConsole()


class ResultsTable(Table):
    """A rich table whose cells fold onto more lines rather than end in "…": no number or name is cut."""

    def __init__(self, *headers: Any, **options: Any) -> None:
        options.setdefault("show_edge", False)
        super().__init__(*headers, **options)

    def add_column(self, *args: Any, **options: Any) -> None:
        options.setdefault("overflow", "fold")
        super().add_column(*args, **options)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=_default))


def _default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def split_commas(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """A repeatable option that also takes a comma list: ``--provider A,B`` = ``--provider A --provider B``."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def parse_shape(text: str) -> tuple[int, ...]:
    """'1x128x16' -> (1, 128, 16)."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a shape like 1x128x16") from None
    if not shape or any(d <= 0 for d in shape):
        raise click.BadParameter(f"{text!r}: every dimension must be a positive integer")
    return shape


def parse_named_shapes(values: tuple[str, ...], option: str) -> dict[str, tuple[int, ...]]:
    """('x=1x128x16', ...) -> {'x': (1, 128, 16)}, in the order given."""
    named = {}
    for value in values:
        name, sep, shape = value.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{value!r} must look like NAME=1x128x16", param_hint=option)
        if name in named:
            raise click.BadParameter(f"{name!r} given twice", param_hint=option)
        named[name] = parse_shape(shape)
    return named


class StepProgress:
    """One line per long step, with the time the previous one took."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.current: str | None = None

    def __call__(self, message: str) -> None:
        self.finish()
        human.print(f"→ {message} …", style="bold", markup=False)
        self.current, self.started = message, time.perf_counter()

    def finish(self) -> None:
        if self.current is not None and self.started is not None:
            human.print(f"  done in {time.perf_counter() - self.started:.1f} s")
        self.current = None


def print_bundle_notes(bundle: Any) -> None:
    """The first lines of every verb that reads a bundle: random weights, artifacts not copied along.

    A bundle that cannot be read prints nothing here: the verb itself reports why, next.
    """
    from pathlib import Path

    from edgesdk.errors import EdgeSDKError
    from edgesdk.runtime.manifest import MANIFEST_NAME, bundle_notes, read_manifest

    bundle = Path(bundle)
    try:
        if bundle.is_dir() and (bundle / MANIFEST_NAME).is_file():
            manifest = read_manifest(bundle, verify_hashes=False)
        elif bundle.suffix == ".onnx" and bundle.is_file():
            from edgesdk.runtime.model import lone_onnx_manifest

            manifest = lone_onnx_manifest(bundle)
        else:
            return
    except EdgeSDKError:
        return
    for note in bundle_notes(manifest, bundle):
        human.print(note, style="yellow", markup=False)


def summarize_array(array: np.ndarray) -> dict[str, Any]:
    facts: dict[str, Any] = {"shape": list(array.shape), "dtype": str(array.dtype)}
    if array.size and array.dtype.kind in "fiu":
        facts.update(min=float(array.min()), max=float(array.max()), mean=float(array.mean()))
    if array.size <= 64:
        facts["values"] = array.tolist()
    return facts


def flush() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
