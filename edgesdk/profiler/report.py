"""Write a profile: ``profile.json``, ``summary.md``, PNG plots and the raw power trace.

``profile.json`` keys carry their unit (``p50_ms``, ``energy_per_inference_j``) and every section
that holds figures carries a ``provenance`` string saying how they were obtained
(``measured:perf_counter``, ``measured:rapl``, ``estimated:ops``...). The Markdown summary repeats
the provenance beside each figure, so an estimate never reads like a measurement.

Plots use matplotlib's object-oriented API with the Agg canvas (no pyplot global state, no
display needed); matplotlib is optional and imported lazily: without it the plots are skipped
and the report says so.
"""
from __future__ import annotations

import csv
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgesdk.profiler.energy import EnergyMeasurement

logger = logging.getLogger(__name__)

# Beyond this many inferences, shading each window would paint the whole active span anyway.
_MAX_WINDOWS_DRAWN = 400


def format_joules(value: float) -> str:
    """Joules with an SI prefix, three significant digits: 7.73 µJ."""
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-12:.3g} pJ"


def plot_latency_histogram(times_s: np.ndarray, path: Path, title: str) -> Path:
    """Histogram of per-call latency in milliseconds, with p50/p90/p99 marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ms = np.asarray(times_s) * 1e3
    figure = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bins = min(60, max(10, ms.size // 5))
    lower, upper = float(ms.min()), float(ms.max())
    if lower > 0 and upper / lower > 20:
        # Scheduler stalls (milliseconds against microsecond calls) would squash a linear axis
        # into one bar: log-spaced bins keep both the bulk and the tail visible.
        axes.hist(ms, bins=np.geomspace(lower, upper, bins + 1), color="#4c72b0", alpha=0.85)
        axes.set_xscale("log")
    else:
        axes.hist(ms, bins=bins, color="#4c72b0", alpha=0.85)
    for q, style in ((50, "-"), (90, "--"), (99, ":")):
        value = float(np.percentile(ms, q))
        axes.axvline(value, color="black", linestyle=style, linewidth=1, label=f"p{q} {value:.4g} ms")
    axes.set_xlabel("latency per call (ms)")
    axes.set_ylabel("calls")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_power_trace(measurement: EnergyMeasurement, path: Path, title: str) -> Path:
    """Power over time, idle baselines and inference windows shaded, idle level drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    origin = measurement.origin_s
    recorded, _ = measurement.trace.arrays()
    span = float(recorded[-1] - recorded[0]) if recorded.size > 1 else 0.0
    # Counters are differentiated over >= 20 ms (or 1/300 of the run) so the trace is readable.
    interval = max(0.02, span / 300) if measurement.trace.quantity == "energy" else 0.0
    times, watts = measurement.trace.power_w(interval)
    figure = Figure(figsize=(9, 4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for start, end in measurement.idle_windows:
        axes.axvspan(start - origin, end - origin, color="#bbbbbb", alpha=0.35, linewidth=0)
    windows = measurement.inference_windows
    if len(windows) <= _MAX_WINDOWS_DRAWN:
        for start, end in windows:
            axes.axvspan(start - origin, end - origin, color="#dd8452", alpha=0.25, linewidth=0)
        window_label = "inference windows"
    else:
        for start, end in measurement.active_windows:
            axes.axvspan(start - origin, end - origin, color="#dd8452", alpha=0.25, linewidth=0)
        window_label = f"active windows ({len(windows)} inferences)"
    if measurement.trace.quantity == "energy":
        # A counter's power is an average over the interval ending at each time: draw it so.
        axes.plot(times - origin, watts, color="#1f3b73", linewidth=1, drawstyle="steps-pre")
    else:
        axes.plot(times - origin, watts, color="#1f3b73", linewidth=1, marker=".", markersize=2)
    summary = measurement.summary
    axes.axhline(summary["idle_power_w"], color="#555555", linestyle="--", linewidth=1)
    finite = watts[np.isfinite(watts)]
    if finite.size:
        # From zero, so differences are not exaggerated; headroom above for the legend.
        axes.set_ylim(bottom=min(0.0, float(finite.min())), top=1.35 * max(float(finite.max()), summary["idle_power_w"]))
    axes.set_xlabel("time (s)")
    axes.set_ylabel("power (W)")
    axes.set_title(title)
    axes.legend(
        handles=[
            Patch(color="#bbbbbb", alpha=0.6, label="idle baseline"),
            Patch(color="#dd8452", alpha=0.5, label=window_label),
            axes.lines[0],
            axes.lines[1],
        ],
        labels=[
            "idle baseline",
            window_label,
            f"power ({summary['provenance']}" + (f", mean over >= {interval * 1e3:.0f} ms)" if interval else ")"),
            "mean idle power",
        ],
        loc="upper right",
        fontsize=8,
    )
    figure.tight_layout()
    figure.savefig(path)
    return path


def write_trace_csv(measurement: EnergyMeasurement, path: Path) -> Path:
    """Raw sensor readings: time since start (s) and value (J cumulative or W)."""
    times, values = measurement.trace.arrays()
    unit = "energy_j" if measurement.trace.quantity == "energy" else "power_w"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time_s", unit])
        for time_s, value in zip(times - measurement.origin_s, values):
            writer.writerow([f"{time_s:.6f}", repr(float(value))])
    return path


@dataclass(frozen=True)
class FigureRow:
    """One figure of a profile as every rendering shows it: name, value with unit, provenance."""

    figure: str
    value: str
    provenance: str


def figure_rows(result: Mapping[str, Any]) -> list[FigureRow]:
    """The rows of a profile result (``profile.json``), in the order the table and summary.md show them.

    Every row carries how its figure was obtained (``measured:perf_counter``, ``measured:rapl``,
    ``estimated:ops``...), so an estimate never reads like a measurement.
    """
    latency, memory, energy = result["latency"], result["memory"], result["energy"]
    lp = latency["provenance"]
    rows = [
        FigureRow("load time", f"{latency['load_time_s'] * 1e3:.1f} ms", lp),
        FigureRow("first inference", f"{latency['first_inference_ms']:.3f} ms", lp),
        FigureRow(f"latency p50 / p90 / p99 ({latency['runs']} runs)",
                  f"{latency['p50_ms']:.3f} / {latency['p90_ms']:.3f} / {latency['p99_ms']:.3f} ms", lp),
        FigureRow("latency mean ± std", f"{latency['mean_ms']:.3f} ± {latency['std_ms']:.3f} ms", lp),
        FigureRow("throughput", f"{latency['throughput_per_s']:.1f} /s", lp),
        FigureRow("peak RSS", f"{memory['peak_rss_mib']:.1f} MiB", memory["provenance"]),
    ]
    streaming = result.get("streaming")
    if streaming and streaming.get("real_time_factor") is not None:
        rows.append(FigureRow("real-time factor", f"{streaming['real_time_factor']:.4f}",
                              f"{lp} (step {streaming['step_duration_s'] * 1e3:.1f} ms of audio)"))
    if "threads" in result:
        rows.insert(0, FigureRow("threads", str(result.get("threads") or "backend default"), "option --threads"))
    if energy.get("energy_per_inference_j") is None:
        rows.append(FigureRow("energy", "not available", energy.get("reason", "")))
        return rows + _estimate_rows(result)
    ep = energy["provenance"]
    per = "step" if result["mode"] == "stream" else "inference"
    measured = energy.get("energy_per_inference_ci95_j") is not None
    if measured:
        windows = f"median of {energy['windows']} windows [95% CI]"
        rows.append(FigureRow(f"idle power ({windows})", _with_ci(energy["idle_power_w"], energy["idle_power_ci95_w"], _watts), ep))
        rows.append(FigureRow(f"gross energy per {per}", _with_ci(energy["gross_energy_per_inference_j"],
                                                                   energy["gross_energy_per_inference_ci95_j"]), ep))
        rows.append(FigureRow(f"net energy per {per}", _with_ci(energy["energy_per_inference_j"], energy["energy_per_inference_ci95_j"]), ep))
        if energy.get("energy_per_audio_second_ci95_j") is not None:
            rows.append(FigureRow("net energy per second of audio",
                                  _with_ci(energy["energy_per_audio_second_j"], energy["energy_per_audio_second_ci95_j"]), ep))
            rows.append(FigureRow("gross energy per second of audio",
                                  _with_ci(energy["gross_energy_per_audio_second_j"], energy["gross_energy_per_audio_second_ci95_j"]), ep))
        rule = energy["window_rule"]
        rows.append(FigureRow(
            "windows", f"{energy['windows']} x ({rule['idle_window_s']:.3g} s idle + >= {rule['active_window_min_s']:.3g} s, "
            f"{energy['inferences_per_window']} inferences); {energy['stop_reason']}", ep))
        rows.append(FigureRow(
            "sampling", f"{energy['samples']} samples, period {energy['achieved_sample_period_s'] * 1e3:.2f} ms achieved "
            f"(asked {energy['sample_period_s'] * 1e3:.2f}), sensor updates every "
            f"{rule['sensor_update_interval_s'] * 1e3:.3g} ms; fewest distinct readings in a window "
            f"{energy['distinct_readings_per_window_min']}", ep))
        if energy.get("sampler_overhead_fraction") is not None:
            rows.append(FigureRow(
                "sampler overhead", f"{energy['sampler_overhead_fraction']:+.1%} latency (median {energy['inference_while_sampling_median_ms']:.3f} "
                f"ms sampling vs {energy['inference_without_sampler_median_ms']:.3f} ms not)", "measured:perf_counter"))
        rows.append(FigureRow("measurement boundary", energy.get("boundary", ""), ep))
    else:
        value = format_joules(energy["energy_per_inference_j"])
        rows.append(FigureRow(f"energy per {per}", value, ep))
        if energy.get("energy_per_audio_second_j") is not None:
            rows.append(FigureRow("energy per second of audio", format_joules(energy["energy_per_audio_second_j"]), ep))
    return rows + _estimate_rows(result)


def _watts(value: float) -> str:
    return f"{value:.4g} W"


def _with_ci(value: float, interval: list[float], unit=format_joules) -> str:
    return f"{unit(value)} [{unit(interval[0])}, {unit(interval[1])}]"


def _estimate_rows(result: Mapping[str, Any]) -> list[FigureRow]:
    """Both estimates side by side, and per artifact of the bundle (how precision changes them)."""
    rows = []
    energy = result["energy"]
    per = "step" if result["mode"] == "stream" else "inference"
    estimate, memory = result.get("energy_estimate"), result.get("energy_estimate_memory")
    if estimate and energy.get("provenance") != estimate["provenance"]:
        rows.append(FigureRow(f"estimate per {per}, arithmetic only", format_joules(estimate["energy_per_inference_j"]),
                              f"{estimate['provenance']} (lower bound)"))
    if memory:
        rows.append(FigureRow(
            f"estimate per {per}, with memory", f"{format_joules(memory['energy_per_inference_j'])} "
            f"(weights {memory['weight_bytes'] / 1e6:.3g} MB from {memory['weights_level']['name']}: "
            f"{format_joules(memory['memory']['weights_j'])})", memory["provenance"]))
    by_artifact = result.get("energy_estimates_by_artifact") or []
    if len(by_artifact) > 1:
        for row in by_artifact:
            rows.append(FigureRow(
                f"estimates, {row['file']} ({row['precision']})",
                f"ops {format_joules(row['ops_j'])} at {row['mac_pj']:g} pJ/MAC; ops+memory {format_joules(row['ops_memory_j'])} "
                f"({row['weight_bytes'] / 1e6:.3g} MB from {row['weights_level']})", "estimated:ops / estimated:ops+memory"))
    return rows


def summary_notes(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What a reader must know beside the rows, as (kind, text): ``estimate``, ``sensor`` or ``warning``."""
    energy = result["energy"]
    notes: list[tuple[str, str]] = []
    if energy.get("provenance") == "estimated:ops":
        notes.append(("estimate", energy["scope"]))
    notes += [("sensor", f"{name}: {reason}") for name, reason in (energy.get("sensors_tried") or {}).items()]
    notes += [("warning", warning) for warning in [*energy.get("warnings", []), *result.get("warnings", [])]]
    if result.get("plots_skipped"):
        notes.append(("warning", f"plots skipped: {result['plots_skipped']}"))
    return notes


def markdown_summary(result: dict) -> str:
    """A short human summary of a profile result: ``figure_rows`` as a Markdown table, then the notes."""
    lines = [f"# Profile of `{result['bundle']['path']}`", ""]
    device = result["device"]
    backend = result["backend"]
    artifact = result.get("artifact") or {}
    lines += [
        f"- device: {device['model']} (profile `{device['profile']}`)",
        f"- backend: {backend['name']}, providers in use: {', '.join(backend['providers_in_use']) or '-'}",
        f"- artifact: {artifact.get('file')} ({artifact.get('format')}, {artifact.get('precision')})",
        f"- mode: {result['mode']}",
        "",
        "| figure | value | provenance |",
        "|---|---|---|",
    ]
    lines += [f"| {row.figure} | {row.value} | {row.provenance} |" for row in figure_rows(result)]
    lines.append("")
    for kind, text in summary_notes(result):
        if kind == "estimate":
            lines.append(f"Energy is an estimate, not a measurement: {text}.")
        else:
            lines.append(f"- {kind}: {text}")
    if result.get("plots"):
        lines += ["", *[f"![{Path(p).stem}]({Path(p).name})" for p in result["plots"]]]
    return "\n".join(lines) + "\n"


def write_report(
    result: dict,
    out_dir: str | os.PathLike,
    latency_times_s: np.ndarray | None = None,
    measurement: EnergyMeasurement | None = None,
) -> dict:
    """Write profile.json, summary.md, the plots and power_trace.csv; return their paths.

    ``result`` is updated with ``plots`` (and ``plots_skipped`` when matplotlib is missing).
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    plots: list[str] = []
    title = f"{result['bundle'].get('name') or Path(result['bundle']['path']).name} on {result['device']['profile']} ({result['backend']['name']})"
    try:
        import matplotlib  # noqa: F401 - probe only; plot functions import what they use

        if latency_times_s is not None and np.asarray(latency_times_s).size:
            plots.append(str(plot_latency_histogram(latency_times_s, directory / "latency_histogram.png", title)))
        if measurement is not None:
            plots.append(str(plot_power_trace(measurement, directory / "power_trace.png", title)))
    except ImportError:
        result["plots_skipped"] = "matplotlib is not installed (pip install 'edgesdk[profile]'), so no PNG was written"
    if measurement is not None:
        written["power_trace_csv"] = str(write_trace_csv(measurement, directory / "power_trace.csv"))
    result["plots"] = plots
    json_path = directory / "profile.json"
    json_path.write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    markdown_path = directory / "summary.md"
    markdown_path.write_text(markdown_summary(result), encoding="utf-8")
    written.update({"profile_json": str(json_path), "summary_md": str(markdown_path)})
    for plot in plots:
        written[Path(plot).stem] = plot
    return written


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to profile.json")
