"""edgesdk sweep: a matrix of models x formats x precisions x devices -> one table of results."""
from __future__ import annotations

from pathlib import Path

import click

from edgesdk.cli.common import human


@click.command("sweep")
@click.argument("matrix_file", metavar="MATRIX.yaml", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for results.jsonl/.parquet, report.md, bundles and the cache.")
@click.option("--ray", "use_ray", is_flag=True, help="Start a local Ray instance (never joins an inherited RAY_ADDRESS).")
@click.option("--ray-address", metavar="ADDR", help="Join this Ray cluster (HOST:PORT or ray://HOST:PORT).")
@click.option("--workers", type=click.IntRange(min=1), help="In-process: export processes [default: up to 2]; "
              "--ray: CPUs of the local instance.")
def command(matrix_file: Path, output: Path, use_ray: bool, ray_address: str | None, workers: int | None) -> None:
    """Export, validate and profile every cell of MATRIX.yaml; re-running computes only new or changed cells.

    A failed cell records its error and exit code and the others go on. Exit status: 0 when no
    cell failed (skipped cells, e.g. ONNX int8, do not count), else the exit code of the first
    failed cell in the matrix's order (3 conversion, 4 validation, 5 device unavailable, ...);
    every finished row is kept either way.
    """
    from edgesdk.devices.detect import detect_device
    from edgesdk.executor import make_executor
    from edgesdk.sweep.matrix import load_matrix
    from edgesdk.sweep.runner import run_sweep

    matrix = load_matrix(matrix_file)
    local_profile = detect_device().profile.name
    executor = make_executor(use_ray, ray_address, cpu_workers=workers, device=local_profile, num_cpus=workers)
    human.print(f"sweep {matrix.name}: {len(matrix.cells())} cells on {executor.name}", markup=False)

    def say(row) -> None:
        if row.status == "ok":
            figure = f"p50 {row.p50_ms:.3f} ms ({row.latency_provenance})" + (" cached" if row.cached else "")
            if row.task_value is not None:
                figure += f"; {row.task_figure}"
        elif row.status == "failed":
            figure = f"FAILED at {row.stage} (exit {row.exit_code}): {row.error}"
        else:
            figure = f"skipped: {row.error}"
        human.print(f"  {row.cell}: {figure}", markup=False)

    with executor:
        summary = run_sweep(matrix, output, executor, local_profile=local_profile,
                            shared_filesystem=executor.name == "in-process", say=say)
    click.echo(f"{len(summary.rows)} cells: {summary.computed} computed, {summary.cached} cached, "
               f"{summary.failed} failed, {summary.skipped} skipped")
    for path in summary.files:
        click.echo(f"wrote {path}")
    order = {cell.cell_id: index for index, cell in enumerate(matrix.cells())}
    failed = sorted((row for row in summary.rows if row.status == "failed"), key=lambda row: order.get(row.cell, len(order)))
    if failed:
        human.print(f"{len(failed)} cells failed; exit {failed[0].exit_code or 1}, that of {failed[0].cell}", markup=False)
        click.get_current_context().exit(failed[0].exit_code or 1)
