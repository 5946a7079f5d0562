"""edgesdk wrap: an ordinary bundle around a stateful .onnx or .tflite that edgesdk did not write."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from edgesdk.cli.common import StepProgress, emit_json


@click.command("wrap")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="The bundle folder to write.")
@click.option("--state", "states", multiple=True, metavar="IN=OUT[:INIT]",
              help="A state: input IN takes output OUT of the previous call; INIT is a number or an .npy file (zeros by default).")
@click.option("--batch-axis", "batch_axes", multiple=True, metavar="IN:AXIS",
              help="The batch axis of state IN, when it is not the state's one symbolic axis.")
@click.option("--context", "contexts", multiple=True, metavar="INPUT:AXIS:SIZE",
              help="Carry the last SIZE entries of INPUT along AXIS into the next push (zeros at the start and after reset).")
@click.option("--const", "constants", multiple=True, metavar="NAME=VALUE[:DTYPE]",
              help="Feed input NAME with VALUE on every call; it is not one of the user's feeds.")
@click.option("--chunk", "chunks", multiple=True, metavar="INPUT:AXIS:SIZE",
              help="A push must carry exactly SIZE new entries of INPUT along AXIS.")
@click.option("--reference", nargs=2, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              metavar="INPUTS.npz EXPECTED.npz",
              help="A recording (inputs and outputs stacked by step) to compare every step with; writes validation.json.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Absolute tolerance for --reference.")
@click.option("--rtol", type=float, default=1e-4, show_default=True, help="Relative tolerance for --reference.")
@click.option("--suggest", is_flag=True, help="Only propose state pairings from names and shapes, and print the command.")
@click.option("--force", is_flag=True, help="Replace an existing bundle at --output.")
@click.option("--no-check", "skip_checks", is_flag=True, help="Write the bundle even if a wrap-time check fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def command(file: Path, output: Path | None, states: tuple[str, ...], batch_axes: tuple[str, ...],
            contexts: tuple[str, ...], constants: tuple[str, ...], chunks: tuple[str, ...],
            reference: tuple[Path, Path] | None, atol: float, rtol: float, suggest: bool,
            force: bool, skip_checks: bool, as_json: bool) -> None:
    """Write a bundle around FILE (.onnx or .tflite) with a declared stream contract."""
    from edgesdk.errors import UsageError
    from edgesdk.runtime import wrap as wrapping

    if suggest:
        suggestions = wrapping.suggest(file)
        if as_json:
            emit_json({"suggestions": [s.__dict__ for s in suggestions],
                       "command": wrapping.suggested_command(file, suggestions, output) if suggestions else None})
            return
        if not suggestions:
            click.echo(f"no state pairing suggests itself in {file}; declare them with --state IN=OUT")
            return
        for suggestion in suggestions:
            click.echo(f"{suggestion.input} = {suggestion.output}    ({suggestion.reason})")
        click.echo("check these guesses, then run:")
        click.echo("  " + wrapping.suggested_command(file, suggestions, output))
        return
    if output is None:
        raise click.UsageError("-o/--output is required (or ask for --suggest)")
    context = {}
    for text in contexts:
        name, axis, size = wrapping.parse_axis_size(text, "--context")
        context[name] = (axis, size)
    chunk = {}
    for text in chunks:
        name, axis, size = wrapping.parse_axis_size(text, "--chunk")
        chunk[name] = (axis, size)
    fixed = {}
    for text in constants:
        name, value, dtype = wrapping.parse_constant(text)
        if name in fixed:
            raise UsageError(f"--const {name!r} given twice")
        fixed[name] = (value, dtype)
    axes = dict(wrapping.parse_batch_axis(text) for text in batch_axes)
    progress = StepProgress()
    result = wrapping.wrap(file, output, states=list(states), batch_axes=axes, context=context, constants=fixed,
                           chunks=chunk, force=force, check=not skip_checks, progress=progress,
                           reference=reference or None, atol=atol, rtol=rtol,
                           command_line=" ".join(shlex.quote(a) for a in ["edgesdk", *sys.argv[2:]]))
    progress.finish()
    if as_json:
        emit_json({"bundle": str(result.path), "checks": [c.__dict__ for c in result.checks]})
        return
    for check in result.checks:
        mark = {True: "✓", False: "✗", None: "-"}[check.passed]
        click.echo(f"{mark} {check.name}: {check.detail}")
    click.echo(f"wrote {result.path}")
