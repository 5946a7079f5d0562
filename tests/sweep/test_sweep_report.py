"""The sweep report: the task figure column and the latency-vs-task-figure plot with its Pareto front."""
from __future__ import annotations

from edgesdk.sweep.report import pareto_front, write_report
from edgesdk.sweep.runner import CellRow


def _row(model: str, fmt: str, p50_ms: float, value: float | None, figure: str) -> CellRow:
    return CellRow(cell=f"{model}/{fmt}/fp32/local", model=model, family="lmuformer", preset="kws", format=fmt,
                   precision="fp32", device="local", status="ok", size_bytes=1000, p50_ms=p50_ms,
                   latency_provenance="measured:perf_counter", task_value=value, task_figure=figure)


def test_faster_and_at_least_as_accurate_cells_make_the_front():
    # (latency, -accuracy): lower is better on both
    points = [(1.0, -0.90), (2.0, -0.95), (2.5, -0.80), (1.0, -0.85)]
    assert pareto_front(points) == [0, 1]  # 2 is slower and worse than 0; 3 ties 0's latency but is worse


def test_the_report_shows_each_cells_task_figure_and_plots_latency_against_it(tmp_path):
    rows = [_row("kws", "onnx", 1.3, 0.75, "KWS accuracy 9/12 clips of examples/kws/clips"),
            _row("kws", "tflite", 0.8, 0.75, "KWS accuracy 9/12 clips of examples/kws/clips"),
            _row("hubert", "onnx", 9.0, None, "none")]
    files = write_report(rows, tmp_path, "t")
    report = (tmp_path / "report.md").read_text()
    assert report.count("| KWS accuracy 9/12 clips of examples/kws/clips |") == 2
    assert "| none |" in report
    assert str(tmp_path / "latency_vs_task.png") in files and (tmp_path / "latency_vs_task.png").stat().st_size > 0
    assert "(latency_vs_task.png)" in report
