"""The sweep's report: results.parquet (pyarrow), report.md and plots (matplotlib): latency against
artifact size, and latency against the task figure where cells have one.

Every figure keeps the provenance the profiler gave it (``measured:perf_counter``,
``measured:rapl``, ``estimated:ops``...): an estimate is never shown as a measurement.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgesdk.sweep.runner import CellRow

logger = logging.getLogger(__name__)


def _joules(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-12:.3g} pJ"


def _size(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f} KiB"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (lower is better on each)."""
    front = []
    for i, (x, y) in enumerate(points):
        if not any((ox <= x and oy <= y) and (ox < x or oy < y) for j, (ox, oy) in enumerate(points) if j != i):
            front.append(i)
    return front


def markdown(rows: Sequence["CellRow"], title: str, plot: str | None, task_plot: str | None = None) -> str:
    lines = [f"# Sweep {title}", ""]
    ok = sum(r.status == "ok" for r in rows)
    failed = sum(r.status == "failed" for r in rows)
    skipped = sum(r.status == "skipped" for r in rows)
    cached = sum(r.cached for r in rows)
    lines.append(f"{len(rows)} cells: {ok} ok ({cached} from the cache), {failed} failed, {skipped} skipped.")
    lines.append("")
    lines.append("| model | format | precision | device | status | size | max abs err / SQNR | task figure | p50 latency "
                 "| latency provenance | energy / inference | energy provenance | backend | node |")
    lines.append("|" + "---|" * 14)
    for r in rows:
        if r.status == "ok":
            status = "ok (cached)" if r.cached else "ok"
        elif r.status == "failed":
            status = f"failed at {r.stage} (exit {r.exit_code}): {r.error}"
        else:
            status = f"skipped: {r.error}"
        accuracy = "-"
        if r.min_sqnr_db is not None:
            accuracy = f"SQNR {r.min_sqnr_db:.1f} dB"
        elif r.max_abs_error is not None:
            accuracy = f"{r.max_abs_error:.1e}"
        if r.valid is False:
            accuracy += " (invalid)"
        latency = "-" if r.p50_ms is None else f"{r.p50_ms:.3f} ms"
        node = (r.measure_node or r.export_node or "-")[:12]
        status = status.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.model} | {r.format} | {r.precision} | {r.device} | {status} | {_size(r.size_bytes)} | "
                     f"{accuracy} | {r.task_figure or '-'} | {latency} | {r.latency_provenance or '-'} | {_joules(r.energy_per_inference_j)} | "
                     f"{r.energy_provenance or '-'} | {r.backend or '-'} | {node} |")
    lines.append("")
    if plot:
        lines += [f"![p50 latency against artifact size, per device; the Pareto front circled]({plot})", ""]
    else:
        lines += ["(No plot: matplotlib is not installed, or no cell was measured.)", ""]
    if task_plot:
        lines += [f"![p50 latency against the task figure, per device; the Pareto front circled]({task_plot})", ""]
    lines.append("Energy figures labelled `estimated:ops` are op counts times energy per op, not measurements.")
    return "\n".join(lines) + "\n"


def plot_latency_vs_size(rows: Sequence["CellRow"], path: Path) -> Path | None:
    """p50 latency against artifact size, one series per device, the Pareto front circled."""
    measured = [r for r in rows if r.status == "ok" and r.p50_ms is not None and r.size_bytes]
    return _scatter_per_device(
        measured, path, point=lambda r: (r.size_bytes / 1024, r.p50_ms),
        better=lambda x, y: (x, y),  # smaller and faster
        labels=("artifact size (KiB)", "p50 latency (ms)", "latency vs size per device (circled: Pareto front)"))


def plot_latency_vs_task(rows: Sequence["CellRow"], path: Path) -> Path | None:
    """p50 latency against the task figure (accuracy, top-1 agreement), per device, the Pareto
    front (faster and at least as accurate) circled; cells without a task figure are left out."""
    measured = [r for r in rows if r.status == "ok" and r.p50_ms is not None and r.task_value is not None]
    return _scatter_per_device(
        measured, path, point=lambda r: (r.p50_ms, r.task_value * 100),
        better=lambda x, y: (x, -y),  # lower latency, higher figure
        labels=("p50 latency (ms)", "task figure (%): KWS accuracy / top-1 agreement",
                "latency vs task figure per device (circled: Pareto front)"),
        y_limits=(0, 105))


def _scatter_per_device(measured: Sequence["CellRow"], path: Path, point, better, labels: tuple[str, str, str],
                        y_limits: tuple[float, float] | None = None) -> Path | None:
    """One labelled series per device, its Pareto front (by ``better``: smaller is better) circled."""
    if not measured:
        return None
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        logger.info("matplotlib is not installed: no sweep plot")
        return None
    # Cells sit close together (one model at several precisions), so points carry a number and
    # the key beside the axes names each cell: full labels on the points overlapped.
    figure = Figure(figsize=(10, 4.8), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.08, 0.11, 0.55, 0.8))
    key: list[str] = []
    for device in sorted({r.device for r in measured}):
        series = [r for r in measured if r.device == device]
        points = [point(r) for r in series]
        axes.scatter([p[0] for p in points], [p[1] for p in points], label=device)
        for r, (x, y) in zip(series, points):
            key.append(f"{len(key) + 1}  {r.model} {r.format} {r.precision} ({device})")
            axes.annotate(str(len(key)), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = pareto_front([better(x, y) for x, y in points])
        axes.scatter([points[i][0] for i in front], [points[i][1] for i in front], s=160, facecolors="none",
                     edgecolors="black", linewidths=1)
    x_label, y_label, title = labels
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    if y_limits:
        axes.set_ylim(*y_limits)
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.text(0.66, 0.91, "\n".join(key), fontsize=7, va="top", family="monospace")
    figure.savefig(path)
    return path


def write_parquet(rows: Sequence["CellRow"], path: Path) -> Path | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    pq.write_table(pa.Table.from_pylist([r.to_dict() for r in rows]), path)
    return path


def write_report(rows: Sequence["CellRow"], output: Path, title: str) -> list[str]:
    """results.parquet (if pyarrow), latency_vs_size.png (if matplotlib), report.md; their paths."""
    written = [str(output / "results.jsonl")]
    parquet = write_parquet(rows, output / "results.parquet") if rows else None
    if parquet:
        written.append(str(parquet))
    plot = plot_latency_vs_size(rows, output / "latency_vs_size.png")
    if plot:
        written.append(str(plot))
    task_plot = plot_latency_vs_task(rows, output / "latency_vs_task.png")
    if task_plot:
        written.append(str(task_plot))
    (output / "report.md").write_text(markdown(rows, title, plot.name if plot else None,
                                               task_plot.name if task_plot else None))
    written.append(str(output / "report.md"))
    return written
