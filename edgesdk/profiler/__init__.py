"""Profiler: latency, memory and energy of a bundle on the device it runs on.

Never imports torch (import-linter contract). ``profile_bundle`` runs a profile;
``write_report`` writes profile.json, summary.md and the plots. Every figure carries its
provenance: ``measured:...``, ``estimated:ops`` or ``estimated:ops+memory``.
"""
from __future__ import annotations

from edgesdk.profiler.energy import (
    WINDOW_RULES,
    EnergyMeasurement,
    Sampler,
    Trace,
    WindowPlan,
    bootstrap_median_ci,
    measure_energy,
    plan_windows,
)
from edgesdk.profiler.estimate import estimate_energy, estimate_energy_with_memory
from edgesdk.profiler.latency import peak_rss_mib, summarize_latency, time_calls
from edgesdk.profiler.opcount import count_onnx_macs
from edgesdk.profiler.report import FigureRow, figure_rows, markdown_summary, summary_notes, write_report
from edgesdk.profiler.session import (
    BACKEND_CHOICES,
    ENERGY_CHOICES,
    ProfileOptions,
    ProfileResult,
    profile_bundle,
    profile_model,
    select_sensor,
)

__all__ = [
    "BACKEND_CHOICES",
    "ENERGY_CHOICES",
    "EnergyMeasurement",
    "WINDOW_RULES",
    "WindowPlan",
    "bootstrap_median_ci",
    "estimate_energy_with_memory",
    "plan_windows",
    "FigureRow",
    "ProfileOptions",
    "ProfileResult",
    "Sampler",
    "Trace",
    "count_onnx_macs",
    "estimate_energy",
    "figure_rows",
    "markdown_summary",
    "measure_energy",
    "peak_rss_mib",
    "profile_bundle",
    "profile_model",
    "select_sensor",
    "summarize_latency",
    "summary_notes",
    "time_calls",
    "write_report",
]
