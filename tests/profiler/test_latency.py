"""Latency statistics and memory figures."""
from __future__ import annotations

import numpy as np
import pytest

from edgesdk.profiler.latency import current_rss_mib, peak_rss_mib, summarize_latency, time_calls


def test_summary_of_known_durations():
    times = np.arange(1, 101) * 1e-3  # 1, 2, ..., 100 ms
    summary = summarize_latency(times)
    assert summary["runs"] == 100
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p90_ms"] == pytest.approx(90.1)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["mean_ms"] == pytest.approx(50.5)
    assert summary["min_ms"] == pytest.approx(1.0) and summary["max_ms"] == pytest.approx(100.0)
    assert summary["throughput_per_s"] == pytest.approx(100 / 5.05)


def test_time_calls_counts_warmup_and_runs():
    calls = []
    seen = []
    times = time_calls(lambda: calls.append(1), runs=5, warmup=3, progress=lambda phase, done, total: seen.append((phase, done, total)))
    assert len(calls) == 8 and times.shape == (5,) and (times >= 0).all()
    assert seen[0] == ("warmup", 1, 3) and seen[-1] == ("latency", 5, 5)


def test_memory_figures_are_plausible():
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB touched
    current = current_rss_mib()
    assert current is not None and current > 64
    assert peak_rss_mib() >= current - 1
    del block
