"""edgesdk map: run a bundle over a folder of WAVs or .npy feeds, one .npy output per input."""
from __future__ import annotations

from pathlib import Path

import click

from edgesdk.cli.common import human


@click.command("map")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("inputs", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the outputs (<input name>.npy); inputs already there are skipped.")
@click.option("--ray", "use_ray", is_flag=True, help="Start a local Ray instance and run on Ray Data.")
@click.option("--ray-address", metavar="ADDR", help="Join this Ray cluster and run on Ray Data.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Inputs per call (stacked where the bundle's batch axis is dynamic).")
@click.option("--threads", type=click.IntRange(min=1), help="Intra-op threads per runtime session (on Ray: CPUs per actor).")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "litert"]), default="auto", show_default=True,
              help="Runtime backend (onnxruntime runs a dynamic-length ONNX file on inputs of any length).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="On Ray: actors, one session each.")
def command(bundle: Path, inputs: Path, output: Path, use_ray: bool, ray_address: str | None, batch: int,
            threads: int | None, backend: str, workers: int) -> None:
    """Run BUNDLE over INPUTS (a folder, or a file listing one path per line) into OUT."""
    from edgesdk.errors import UsageError
    from edgesdk.sweep.corpus import map_corpus

    if use_ray and ray_address:
        raise UsageError("give --ray (start a local Ray) or --ray-address (join a cluster), not both")
    executor = None
    if use_ray or ray_address:
        from edgesdk.executor import RayExecutor

        executor = RayExecutor(ray_address, num_cpus=None if ray_address else workers * (threads or 1))
    try:
        summary = map_corpus(bundle, inputs, output, batch=batch, threads=threads, backend=backend, workers=workers,
                             ray=executor.ray if executor is not None else None)
    finally:
        if executor is not None:
            executor.close()
    for name, error, code in summary.failed:
        human.print(f"✗ {name}: {error} (exit {code})", markup=False)
    click.echo(f"{summary.done} written, {summary.skipped} already in {summary.output}, {len(summary.failed)} failed")
    if summary.failed:
        click.get_current_context().exit(summary.failed[0][2])
