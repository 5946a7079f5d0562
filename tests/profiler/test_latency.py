"""Latency statistics and memory figures."""
from __future__ import annotations

import numpy as np
import pytest

from edgesdk.devices.detect import ProcessIsa, check_isa
from edgesdk.profiler.latency import (
    EMULATION_WARNING,
    current_rss_mib,
    latency_label,
    peak_rss_mib,
    summarize_latency,
    time_calls,
)


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


def _x86_host(root):
    """The two files qemu-user leaves describing the x86-64 host: cpuinfo and the kernel's arch."""
    (root / "proc" / "sys" / "kernel").mkdir(parents=True)
    (root / "proc" / "cpuinfo").write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
    (root / "proc" / "sys" / "kernel" / "arch").write_text("x86_64\n")
    return root


def test_latency_under_emulation_is_labelled_and_warned(tmp_path):
    aarch64 = ProcessIsa("aarch64", 64, "aarch64-linux-gnu", "cpython 3.11")
    label = latency_label(check_isa(_x86_host(tmp_path), aarch64))
    assert label.emulated
    assert label.provenance == "measured:emulated-aarch64"
    assert label.warning.startswith(EMULATION_WARNING) and "x86" in label.warning


def test_native_latency_is_a_plain_measurement(tmp_path):
    x86 = ProcessIsa("x86_64", 64, "x86_64-linux-gnu", "cpython 3.11")
    label = latency_label(check_isa(_x86_host(tmp_path), x86))
    assert (label.provenance, label.emulated, label.warning) == ("measured:perf_counter", False, "")
