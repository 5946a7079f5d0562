"""Latency and memory: wall-clock timing of repeated calls, percentiles, throughput, peak RSS.

Timing uses ``time.perf_counter_ns`` around each call, one call at a time; nothing else runs in
the process while timing (the energy sampler only runs in the separate energy phase).

Under emulation (an aarch64 interpreter run by qemu-user on an x86-64 host) the clock still
measures something, but not a device's speed: ``latency_label`` then names the emulated ISA in the
provenance (``measured:emulated-aarch64``) and carries a warning, so such a figure is never
presented as a device timing.
"""
from __future__ import annotations

import os
import resource
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edgesdk.devices.detect import IsaCheck, check_isa

ProgressCallback = Callable[[str, int, int], None]

LATENCY_PROVENANCE = "measured:perf_counter"
LATENCY_METHOD = "wall clock (time.perf_counter_ns) around each call, one call at a time, after warm-up"
EMULATION_WARNING = "timings under emulation are not device timings"


@dataclass(frozen=True)
class LatencyLabel:
    """How this process's timings may be presented.

    Attributes:
        provenance: ``measured:perf_counter`` natively, ``measured:emulated-<isa>`` under emulation.
        emulated: the process runs another ISA family than the host CPU (e.g. under qemu-user).
        warning: the line to print beside the figures (``""`` when native).
    """

    provenance: str
    emulated: bool
    warning: str = ""


def latency_label(isa: IsaCheck | None = None) -> LatencyLabel:
    """The label for timings taken in this process (``isa``: the live ``check_isa()`` unless given)."""
    isa = isa if isa is not None else check_isa("/")
    if not isa.emulated:
        return LatencyLabel(LATENCY_PROVENANCE, False)
    reason = "; ".join(isa.disagreements) or "the process's ISA is not the host CPU's"
    return LatencyLabel(
        f"measured:emulated-{isa.process.isa}",
        True,
        f"{EMULATION_WARNING} ({reason})",
    )


def time_once(call: Callable[[], object]) -> float:
    """Seconds one call takes."""
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) * 1e-9


def time_calls(
    call: Callable[[], object],
    runs: int,
    warmup: int = 0,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Run ``warmup`` untimed calls, then ``runs`` timed ones; return their durations in seconds.

    ``progress(phase, done, total)`` is called after each call, phase ``"warmup"`` or ``"latency"``.
    """
    # Report progress about 100 times per phase, not after every (microsecond-long) call.
    for index in range(warmup):
        call()
        if progress and ((index + 1) % max(1, warmup // 100) == 0 or index + 1 == warmup):
            progress("warmup", index + 1, warmup)
    times = np.empty(runs, dtype=np.float64)
    for index in range(runs):
        times[index] = time_once(call)
        if progress and ((index + 1) % max(1, runs // 100) == 0 or index + 1 == runs):
            progress("latency", index + 1, runs)
    return times


def summarize_latency(times_s: np.ndarray) -> dict:
    """Percentiles, mean, spread (milliseconds) and throughput (calls per second) of durations."""
    if times_s.size == 0:
        return {}
    ms = times_s * 1e3
    return {
        "runs": int(times_s.size),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "std_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        # One call at a time, back to back: calls per second of busy time.
        "throughput_per_s": float(times_s.size / times_s.sum()) if times_s.sum() > 0 else float("inf"),
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (getrusage ``ru_maxrss``).

    It includes the Python interpreter and every imported library, not the model alone.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    scale = 1.0 / (1024 * 1024) if sys.platform == "darwin" else 1.0 / 1024
    return float(peak) * scale


def current_rss_mib() -> float | None:
    """Current resident set size in MiB (psutil when installed, else /proc/self/statm)."""
    try:
        import psutil  # optional: lazily imported, only for this figure

        return psutil.Process(os.getpid()).memory_info().rss / (1024 * 1024)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return None
