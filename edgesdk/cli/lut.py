"""edgesdk lut build | validate: a LightHuBERT block latency table measured on this device."""
from __future__ import annotations

import time
from pathlib import Path

import click

from edgesdk.cli.common import emit_json, human
from edgesdk.errors import UsageError

FAMILIES = ("lighthubert",)


def _say(message: str) -> None:
    human.print(f"  {message}", markup=False)


def _executor_options(command):
    command = click.option("--ray-address", metavar="ADDR", help="Measure on this Ray cluster's device nodes.")(command)
    return click.option("--ray", "use_ray", is_flag=True, help="Measure through a local Ray instance.")(command)


def _executor(use_ray: bool, ray_address: str | None):
    from edgesdk.devices.detect import detect_device
    from edgesdk.executor import make_executor

    return make_executor(use_ray, ray_address, device=detect_device().profile.name)


def load_supernet(preset: str | None, checkpoint: Path | None):
    import edgesdk

    if preset is None and checkpoint is None:
        raise UsageError("give --preset or --checkpoint (a LightHuBERT supernet checkpoint)")
    return edgesdk.create_model("lighthubert", preset=preset, checkpoint=checkpoint)


@click.group("lut")
def command() -> None:
    """Block latency tables for subnet search (LightHuBERT)."""


@command.command("build")
@click.argument("family", type=click.Choice(FAMILIES))
@click.option("--preset", help="Supernet preset (optional when the checkpoint carries its config).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The authors' supernet checkpoint.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "tflite"]), default="onnx", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8-dynamic", "int8-weight-only"]), default="fp32", show_default=True)
@click.option("--seconds", type=float, default=1.0, show_default=True, help="Input length the blocks are measured at.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help="Runtime threads.")
@click.option("--repeats", type=click.IntRange(min=3), default=20, show_default=True, help="Timed runs per block.")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--rounds", type=click.IntRange(min=1), default=4, show_default=True,
              help="Split the runs into rounds over all blocks, so a passing load falls on all alike.")
@click.option("--energy", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
              help="auto: measure energy per block where a power sensor works (else absent, said in the table).")
@_executor_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="lut.json to write.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON on stdout.")
def build(family, preset, checkpoint, fmt, precision, seconds, threads, repeats, warmup, rounds, energy, use_ray,
          ray_address, output, as_json) -> None:
    """Measure every block FAMILY's search space can produce, on this device."""
    from edgesdk.lut.table import build_table

    started = time.perf_counter()
    supernet = load_supernet(preset, checkpoint)
    human.print(f"→ building the {supernet.config.supernet_type} supernet's table ({fmt} {precision}, {seconds:g} s)", markup=False)
    with _executor(use_ray, ray_address) as executor:
        table = build_table(supernet, format=fmt, precision=precision, seconds=seconds, threads=threads, repeats=repeats,
                            warmup=warmup, energy=energy, preset=preset, checkpoint=checkpoint, executor=executor, say=_say,
                            rounds=rounds)
    table.save(output)
    if as_json:
        emit_json(table.content())
    conditions = table.conditions
    click.echo(f"{len(table.blocks)} blocks measured on {conditions.device_profile} ({conditions.device_model}), "
               f"{conditions.backend} {conditions.threads} thread(s), {conditions.runs} runs each; energy: {conditions.energy}")
    for entry in table.blocks:
        click.echo(f"  {entry.key.name:<24} median {entry.latency.median_ms:9.3f} ms  IQR {entry.latency.spread_ms:7.3f} ms")
    click.echo(f"wrote {output} (sha256 {table.digest()[:16]}) in {time.perf_counter() - started:.0f} s")


@command.command("validate")
@click.argument("table_path", metavar="LUT.json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--subnets", "count", type=click.IntRange(min=3), default=30, show_default=True,
              help="Whole subnets to measure (min and max always among them).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The checkpoint the table was built from (when it was built from one).")
@click.option("--repeats", type=click.IntRange(min=3), help="Timed runs per subnet [default: the table's].")
@_executor_options
@click.option("--json", "as_json", is_flag=True, help="Print the validation as JSON on stdout.")
def validate(table_path, count, seed, checkpoint, repeats, use_ray, ray_address, as_json) -> None:
    """Measure random whole subnets, fit the table to them, choose the predictor; rewrites LUT.json."""
    from edgesdk.lut.table import LatencyTable, validate_table

    started = time.perf_counter()
    table = LatencyTable.load(table_path)
    supernet = load_supernet(table.supernet.preset if checkpoint is None else None, checkpoint)
    if table.supernet.checkpoint_sha256 and checkpoint is None:
        raise UsageError(f"{table_path} was built from a checkpoint: give it with --checkpoint")
    with _executor(use_ray, ray_address) as executor:
        table = validate_table(table, supernet, count=count, seed=seed, executor=executor, repeats=repeats, say=_say)
    table.save(table_path)
    report = table.validation
    if as_json:
        emit_json(report.to_dict())
    click.echo(f"{len(report.rows)} whole subnets: min {report.min_subnet_ms:.2f} ms, max {report.max_subnet_ms:.2f} ms")
    click.echo(f"{'predictor':<16} {'MAPE':>8} {'±10 %':>7} {'±15 %':>7}")
    for name, figures in (("table-sum", report.raw_sum), ("table-sum-fit", report.fitted_sum), ("regression", report.regression)):
        click.echo(f"{name:<16} {figures.mape_percent:7.1f}% {figures.within_10_percent:7.0%} {figures.within_15_percent:7.0%}")
    click.echo("(fitted predictors: leave-one-out)")
    click.echo(f"predictor in use: {report.predictor.kind} — {report.reason}")
    click.echo(f"updated {table_path} in {time.perf_counter() - started:.0f} s")
