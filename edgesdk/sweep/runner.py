"""Run a sweep: every cell export -> validate -> profile, through one executor, with a cache.

Layout of the output folder:

    DIR/results.jsonl         one row per cell (rewritten at the start, appended as cells finish)
    DIR/results.parquet       the same rows in the matrix's order, when pyarrow is installed
    DIR/report.md             a table in the matrix's order (and DIR/latency_vs_size.png with matplotlib)
    DIR/bundles/<export_key>/ every bundle
    DIR/cache/export-<key>.json, DIR/cache/measure-<key>.json   finished work, by content hash

A cell is computed again only when one of its keys changed (see ``edgesdk.sweep.matrix``) or
its earlier attempt failed. A failed cell records its error and exit code and the others go on;
an interrupt leaves the rows already finished in results.jsonl and report.md.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from edgesdk.executor import Executor, Task, TaskOutcome
from edgesdk.folders import pack_bundle, unpack_bundle
from edgesdk.sweep.matrix import LOCAL_DEVICE, Cell, Matrix
from edgesdk.sweep.tasks import ExportRequest, ExportSummary, MeasureRequest, MeasureSummary, export_cell, measure_cell

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellRow:
    """One row of the results: the cell, what happened, and its figures with their provenance."""

    cell: str
    model: str
    family: str | None
    preset: str | None
    format: str
    precision: str
    device: str
    status: str  # ok | failed | skipped
    stage: str | None = None  # export | measure: where a failed cell stopped
    error: str | None = None
    exit_code: int = 0
    cached: bool = False
    export_key: str | None = None
    measure_key: str | None = None
    bundle: str | None = None
    artifact: str | None = None
    size_bytes: int | None = None
    valid: bool | None = None
    max_abs_error: float | None = None
    min_sqnr_db: float | None = None
    export_s: float | None = None
    task_value: float | None = None
    task_figure: str | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    mean_ms: float | None = None
    latency_provenance: str | None = None
    energy_per_inference_j: float | None = None
    energy_provenance: str | None = None
    device_model: str | None = None
    measured_profile: str | None = None
    backend: str | None = None
    export_node: str | None = None
    measure_node: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CellRow":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class SweepSummary:
    rows: tuple[CellRow, ...]
    computed: int
    cached: int
    failed: int
    skipped: int
    files: tuple[str, ...]


def _base_row(cell: Cell, **facts: Any) -> CellRow:
    return CellRow(cell=cell.cell_id, model=cell.model.name, family=cell.model.family, preset=cell.model.preset,
                   format=cell.format, precision=cell.precision, device=cell.device, **facts)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, sort_keys=True))
    os.replace(temporary, path)


class _Results:
    """results.jsonl, appended row by row and flushed, so an interrupt keeps what finished."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: list[CellRow] = []
        self._handle = open(path, "w")

    def add(self, row: CellRow) -> None:
        self.rows.append(row)
        self._handle.write(json.dumps(row.to_dict(), sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def run_sweep(matrix: Matrix, output: str | Path, executor: Executor, *, local_profile: str,
              shared_filesystem: bool = True, say: Callable[[CellRow], None] | None = None) -> SweepSummary:
    """Run every cell of ``matrix`` into ``output`` with ``executor``.

    ``local_profile`` is the profile of this machine (what the device ``local`` means).
    ``shared_filesystem``: workers write bundles straight into ``output`` (in-process); when
    False (Ray), bundles travel as archives. ``say(row)`` is called as each row is written.
    """
    output = Path(output)
    (output / "cache").mkdir(parents=True, exist_ok=True)
    (output / "bundles").mkdir(exist_ok=True)
    results = _Results(output / "results.jsonl")
    counts = {"computed": 0, "cached": 0}

    def emit(row: CellRow) -> None:
        results.add(row)
        if say is not None:
            say(row)

    def device_of(cell: Cell) -> str:
        return local_profile if cell.device == LOCAL_DEVICE else cell.device

    def bundle_dir(export_key: str) -> Path:
        return output / "bundles" / export_key

    def cached_export(export_key: str) -> ExportSummary | None:
        path = output / "cache" / f"export-{export_key}.json"
        if not (path.is_file() and (bundle_dir(export_key) / "edgesdk.json").is_file()):
            return None
        try:
            return ExportSummary(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            return None

    def measure_request(cell: Cell, export_key: str) -> MeasureRequest:
        folder = bundle_dir(export_key)
        return MeasureRequest(bundle=str(folder) if shared_filesystem else None,
                              archive=None if shared_filesystem else pack_bundle(folder),
                              format=cell.format, runs=matrix.profile.runs, warmup=matrix.profile.warmup,
                              energy=matrix.profile.energy, stream=cell.model.mode == "stream")

    waiting: dict[str, list[Cell]] = {}  # export key -> cells whose measurement waits on it
    exports: dict[str, ExportSummary] = {}
    export_nodes: dict[str, str | None] = {}
    cells_by_measure: dict[str, Cell] = {}
    tasks: list[Task] = []
    search_path = tuple(dict.fromkeys([str(matrix.base_dir), os.getcwd()]))
    try:
        for cell in matrix.cells():
            if cell.unsupported:
                emit(_base_row(cell, status="skipped", error=cell.unsupported))
                continue
            export_key = matrix.export_key(cell)
            measure_key = matrix.measure_key(cell, device_of(cell))
            done = output / "cache" / f"measure-{measure_key}.json"
            if done.is_file() and (bundle_dir(export_key) / "edgesdk.json").is_file():
                counts["cached"] += 1
                emit(replace(CellRow.from_dict(json.loads(done.read_text())), cached=True))
                continue
            cells_by_measure[measure_key] = cell
            summary = cached_export(export_key)
            if summary is not None:
                exports[export_key] = summary
                tasks.append(Task(f"measure:{measure_key}", measure_cell, (measure_request(cell, export_key),),
                                  kind="measure", device=device_of(cell)))
                continue
            if export_key not in waiting:
                waiting[export_key] = []
                request = ExportRequest(cell.model, cell.format, cell.precision, matrix.export_options,
                                        output=str(bundle_dir(export_key)) if shared_filesystem else None,
                                        search_path=search_path)
                tasks.append(Task(f"export:{export_key}", export_cell, (request,)))
            waiting[export_key].append(cell)

        def row_for(cell: Cell, **facts: Any) -> CellRow:
            export_key = matrix.export_key(cell)
            summary = exports.get(export_key)
            known: dict[str, Any] = {"export_key": export_key, "measure_key": matrix.measure_key(cell, device_of(cell)),
                                     "export_node": export_nodes.get(export_key)}
            if summary is not None:
                known.update(bundle=str(bundle_dir(export_key)), artifact=summary.artifact,
                             size_bytes=summary.size_bytes, valid=summary.valid, max_abs_error=summary.max_abs_error,
                             min_sqnr_db=summary.min_sqnr_db, export_s=summary.export_s,
                             task_value=summary.task_value, task_figure=summary.task_figure)
            known.update(facts)
            return _base_row(cell, **known)

        def follow(outcome: TaskOutcome) -> list[Task]:
            kind, _, key = outcome.key.partition(":")
            if kind == "export":
                export_nodes[key] = outcome.node
                cells = waiting.pop(key, [])
                if not outcome.ok:
                    for cell in cells:
                        emit(row_for(cell, status="failed", stage="export", error=outcome.error,
                                     exit_code=outcome.exit_code))
                    return []
                summary: ExportSummary = outcome.value
                if summary.archive is not None:
                    target = bundle_dir(key)
                    if target.exists():
                        shutil.rmtree(target)
                    unpack_bundle(summary.archive, target)
                    summary = replace(summary, archive=None)
                exports[key] = summary
                _write_json(output / "cache" / f"export-{key}.json", asdict(summary))
                return [Task(f"measure:{matrix.measure_key(cell, device_of(cell))}", measure_cell,
                             (measure_request(cell, key),), kind="measure", device=device_of(cell)) for cell in cells]
            cell = cells_by_measure[key]
            if not outcome.ok:
                emit(row_for(cell, status="failed", stage="measure", error=outcome.error, exit_code=outcome.exit_code,
                             measure_node=outcome.node))
                return []
            measured: MeasureSummary = outcome.value
            row = row_for(cell, status="ok", p50_ms=measured.p50_ms, p90_ms=measured.p90_ms, mean_ms=measured.mean_ms,
                          latency_provenance=measured.latency_provenance,
                          energy_per_inference_j=measured.energy_per_inference_j,
                          energy_provenance=measured.energy_provenance, device_model=measured.device_model,
                          measured_profile=measured.device_profile, backend=measured.backend,
                          measure_node=outcome.node)
            _write_json(output / "cache" / f"measure-{key}.json", row.to_dict())
            counts["computed"] += 1
            emit(row)
            return []

        for _ in executor.run(tasks, follow=follow):
            pass  # rows are written by follow() as each task finishes
    finally:
        results.close()
        from edgesdk.sweep.report import write_report

        order = {cell.cell_id: index for index, cell in enumerate(matrix.cells())}
        files = write_report(sorted(results.rows, key=lambda row: order.get(row.cell, len(order))), output, matrix.name)
    rows = tuple(results.rows)
    return SweepSummary(rows=rows, computed=counts["computed"], cached=counts["cached"],
                        failed=sum(r.status == "failed" for r in rows), skipped=sum(r.status == "skipped" for r in rows),
                        files=tuple(files))
