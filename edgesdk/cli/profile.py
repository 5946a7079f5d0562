"""edgesdk profile: latency, memory and energy of a bundle on this device, with provenance."""
from __future__ import annotations

from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from edgesdk.cli.common import ResultsTable, emit_json, human, print_bundle_notes, results
from edgesdk.profiler.report import figure_rows, summary_notes
from edgesdk.profiler.session import BACKEND_CHOICES, ENERGY_CHOICES, ProfileOptions, parse_shape

_PHASES = {"warmup": "warm-up", "latency": "timed runs", "energy": "energy windows"}


def _print_summary(result: dict, written: dict[str, str], as_json: bool) -> None:
    """The figures are the result (stdout); notes, warnings and file paths go to stderr.

    With --json, stdout holds the JSON alone, so the figures go to stderr too."""
    out = human if as_json else results
    backend = result["backend"]
    artifact = result.get("artifact") or {}
    threads = result.get("threads")
    out.print(
        f"[bold]{result['bundle']['path']}[/bold] on {result['device']['model']} "
        f"(profile {result['device']['profile']}), {backend['name']} "
        f"[{', '.join(backend['providers_in_use'])}], artifact {artifact.get('file')} "
        f"({artifact.get('format')}, {artifact.get('precision')}), "
        f"threads {threads if threads else 'backend default'}, mode {result['mode']}"
    )
    table = ResultsTable()
    for column in ("figure", "value", "provenance"):
        table.add_column(column)
    for row in figure_rows(result):
        table.add_row(row.figure, row.value, row.provenance)
    out.print(table)
    for kind, text in summary_notes(result):
        if kind == "estimate":
            human.print(f"[yellow]energy is an estimate, not a measurement[/yellow]: {text}")
        elif kind == "sensor":
            human.print(f"  sensor {text}")
        else:
            human.print(f"[yellow]warning[/yellow]: {text}")
    if result.get("plots_skipped"):
        human.print(f"[yellow]plots skipped[/yellow]: {result['plots_skipped']}")
    for kind, path in written.items():
        human.print(f"wrote {kind}: {path}")


@click.command("profile")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--backend", type=click.Choice(BACKEND_CHOICES), default="auto", show_default=True,
              help="Runtime backend; auto picks what is fastest here.")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True, help="Timed runs (steps with --stream).")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Untimed runs before timing.")
@click.option("--stream", is_flag=True, help="Profile a streaming bundle step by step.")
@click.option("--energy", type=click.Choice(ENERGY_CHOICES), default="auto", show_default=True,
              help="Power sensor to measure with; auto falls back to an ops estimate and says so.")
@click.option("--strict-providers", is_flag=True, help="Fail (exit 5) if the runtime falls back from the preferred provider.")
@click.option("--energy-windows", type=click.IntRange(min=1), default=5, show_default=True,
              help="At least this many idle+active windows; more are added until the 95% interval is tight.")
@click.option("--energy-time-limit", type=click.FloatRange(min=0.1), default=120.0, show_default=True,
              help="Stop adding energy windows after this many seconds.")
@click.option("--energy-ci", type=click.FloatRange(min=0.001), default=0.10, show_default=True,
              help="Stop adding windows once the 95% interval of the median net energy is within this fraction of it.")
@click.option("--idle-seconds", type=click.FloatRange(min=0.001), default=None,
              help="Length of each idle baseline window [default: per sensor, from its update interval; "
              "shorter than the sensor can resolve: exit 6].")
@click.option("--energy-seconds", type=click.FloatRange(min=0.001), default=None,
              help="Minimum length of each measured active window [default: as --idle-seconds].")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads of the backend [default: the backend's own]; recorded in the report.")
@click.option("--shape", "shapes", multiple=True, metavar="NAME=DIMxDIM...",
              help="Shape to feed an input with dynamic axes, e.g. --shape features=1x100x80 (repeatable).")
@click.option("--precision", default=None,
              help="Artifact precision to profile in a bundle holding several (fp32, fp16, int8-dynamic, "
              "int8-weight-only, int8-static) [default: float32].")
@click.option("--sysfs-root", "root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("/"), envvar="EDGESDK_SYSFS_ROOT",
              help="Read the device and its sensors under this folder instead of / (a testing aid: a tree "
              "copied from a board, or a simulated one, see docs/profiling.md; also EDGESDK_SYSFS_ROOT).")
@click.option("--json", "as_json", is_flag=True, help="Print profile.json on stdout.")
@click.option("-o", "--output", "report_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write profile.json, summary.md and PNG plots to this folder.")
def command(
    bundle: Path,
    backend: str,
    runs: int,
    warmup: int,
    stream: bool,
    energy: str,
    strict_providers: bool,
    energy_windows: int,
    energy_time_limit: float,
    energy_ci: float,
    idle_seconds: float | None,
    energy_seconds: float | None,
    threads: int | None,
    shapes: tuple[str, ...],
    precision: str | None,
    root: Path,
    as_json: bool,
    report_dir: Path | None,
) -> None:
    """Measure load time, latency, memory and energy per inference of BUNDLE on this device."""
    from edgesdk.profiler import profile_bundle, write_report

    print_bundle_notes(bundle)  # random weights, missing artifacts: said first
    options = ProfileOptions(backend=backend, runs=runs, warmup=warmup, stream=stream, energy=energy,
                             strict_providers=strict_providers, root=root, energy_windows=energy_windows,
                             energy_time_limit_s=energy_time_limit, energy_ci=energy_ci,
                             idle_s=idle_seconds, min_active_s=energy_seconds, threads=threads,
                             shapes=tuple(parse_shape(text) for text in shapes), precision=precision)

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=human,
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(_PHASES.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done)

        outcome = profile_bundle(bundle, options, progress=progress)
    written: dict[str, str] = {}
    if report_dir is not None:
        written = write_report(outcome.result, report_dir, outcome.latency_times_s, outcome.measurement)
    if as_json:
        emit_json(outcome.result)
    _print_summary(outcome.result, written, as_json)
