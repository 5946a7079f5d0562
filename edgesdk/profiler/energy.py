"""Energy per inference: measured with a power sensor where one works, else estimated from ops.

Measurement
-----------
A background thread reads the sensor every ``period_s`` while the main thread alternates, for
each repeat, an idle window (sleeping: the baseline, measured just before) and an active window
(inferences back to back, each one's start and end recorded). For each repeat::

    net energy per inference = (E_active - P_idle x T_active) / n

where ``E_active`` is the energy over the active window (a counter's difference, or power
integrated with the trapezoid rule) and ``P_idle`` the mean power of the idle window before it.
The figure reported is the mean over repeats, with their standard deviation, min and max, the
sample count, the achieved sampling rate and how many distinct values the sensor returned (a
sensor that updates slower than the sampler repeats itself; that is reported, not hidden).

Estimate
--------
Without a usable sensor: the bundle manifest's ``ops`` section (MACs, accumulate-only and binary
operations) times the device profile's energy per operation, labelled ``estimated:ops`` — an
arithmetic-only lower bound (see ``edgesdk.devices.profiles``). Never reported as measured.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from edgesdk.devices.profiles import DeviceProfile
from edgesdk.devices.sensors.base import Sensor
from edgesdk.errors import MeasurementUnavailable
from edgesdk.runtime.sections import OpsCount

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]


# Sampling periods per sensor, in seconds: faster than each interface updates is pointless.
# RAPL updates about every 1 ms; INA3221 conversions on Jetson take a few ms per channel; NVML and
# battery fuel gauges update on the order of 100 ms to 1 s.
DEFAULT_PERIOD_S = {"rapl": 0.005, "ina3221": 0.01, "nvml": 0.02, "android": 0.1}
# Default idle and active window lengths per sensor, in seconds: long enough for many distinct
# readings. NVML power on recent GPUs is a 1 s average; fuel gauges refresh every ~1 s or slower.
DEFAULT_WINDOW_S = {"rapl": 1.0, "ina3221": 1.0, "nvml": 3.0, "android": 5.0}

ESTIMATE_LABEL = "estimated:ops"
ESTIMATE_SCOPE = (
    "arithmetic only (MACs, accumulates, binary ops x energy per op): excludes memory traffic, "
    "static and idle power, so it is a lower bound on what the device draws"
)


@dataclass
class Trace:
    """Sensor readings over time. ``times_s`` are ``time.perf_counter()`` values."""

    quantity: str  # "energy" (cumulative joules) or "power" (watts)
    times_s: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.times_s, dtype=np.float64), np.asarray(self.values, dtype=np.float64)

    def power_w(self, min_interval_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(times, watts), each value holding over the interval that ends at its time.

        A power sensor's readings are returned as they are. A counter is differentiated: the
        power over ``(t[i-1], t[i]]`` is reported at ``t[i]``; ``min_interval_s`` averages over
        intervals at least that long, since a counter read microseconds after it ticked would
        otherwise show a meaningless spike.
        """
        times, values = self.arrays()
        if self.quantity == "power":
            return times, values
        if min_interval_s > 0 and times.size > 2:
            keep = [0]
            for index in range(1, times.size):
                if times[index] - times[keep[-1]] >= min_interval_s:
                    keep.append(index)
            times, values = times[keep], values[keep]
        if times.size < 2:
            return times[:0], values[:0]
        dt = np.diff(times)
        return times[1:], np.diff(values) / np.where(dt > 0, dt, np.nan)

    def energy_between_j(self, start_s: float, end_s: float) -> float:
        """Joules between two instants inside the trace.

        Counters: the difference, interpolated linearly at both ends. Power readings: the
        trapezoid rule over the readings, interpolated at both ends; a step in power is thus
        smeared over one sampling period, half on each side (the report gives the period).
        """
        times, values = self.arrays()
        if times.size == 0 or start_s < times[0] - 1e-9 or end_s > times[-1] + 1e-9:
            raise MeasurementUnavailable("the sensor trace does not cover the measured window")
        if self.quantity == "energy":
            return float(np.interp(end_s, times, values) - np.interp(start_s, times, values))
        inside = (times > start_s) & (times < end_s)
        grid = np.concatenate(([start_s], times[inside], [end_s]))
        watts = np.interp(grid, times, values)
        # Trapezoids, written out: np.trapz became np.trapezoid in numpy 2 (we allow numpy 1.23).
        return float(np.sum((watts[1:] + watts[:-1]) * np.diff(grid)) / 2)

    def samples_between(self, start_s: float, end_s: float) -> int:
        times, _ = self.arrays()
        return int(((times >= start_s) & (times <= end_s)).sum())


class Sampler:
    """Reads a sensor every ``period_s`` seconds on a daemon thread until stopped.

    The first and last readings are taken synchronously by ``start()`` and ``stop()``, so the
    trace always covers everything that happened between the two calls.
    """

    def __init__(self, sensor: Sensor, period_s: float):
        if period_s <= 0:
            raise ValueError(f"period_s must be positive, got {period_s}")
        self.sensor = sensor
        self.period_s = period_s
        self.trace = Trace(quantity=sensor.quantity)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.error: Exception | None = None

    def _sample(self) -> None:
        value = self.sensor.read()
        now = time.perf_counter()
        with self._lock:
            self.trace.times_s.append(now)
            self.trace.values.append(value)

    def _loop(self) -> None:
        next_due = time.perf_counter() + self.period_s
        while not self._stop.wait(max(0.0, next_due - time.perf_counter())):
            try:
                self._sample()
            except (OSError, ValueError, MeasurementUnavailable) as error:
                self.error = error
                return
            next_due += self.period_s
            # After a stall (e.g. a slow read) skip missed slots instead of bursting.
            next_due = max(next_due, time.perf_counter())

    def start(self) -> None:
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="edgesdk-power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> Trace:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is None:
            try:
                self._sample()
            except (OSError, ValueError, MeasurementUnavailable) as error:
                self.error = error
        if self.error is not None:
            raise MeasurementUnavailable(f"{self.sensor.name} sensor failed while sampling: {self.error}")
        return self.trace


@dataclass
class EnergyMeasurement:
    """Everything one measured energy run produced: the summary and the raw trace for plots."""

    summary: dict
    trace: Trace
    idle_windows: list[tuple[float, float]]
    active_windows: list[tuple[float, float]]
    inference_windows: list[tuple[float, float]]
    origin_s: float


def _run_active(
    call: Callable[[], object], count: int | None, min_duration_s: float, windows: list[tuple[float, float]]
) -> tuple[float, float, int]:
    """Call back to back: ``count`` times, or (count None) until ``min_duration_s`` has passed."""
    start = time.perf_counter()
    done = 0
    while True:
        begin = time.perf_counter()
        call()
        end = time.perf_counter()
        windows.append((begin, end))
        done += 1
        if count is not None and done >= count:
            break
        if count is None and end - start >= min_duration_s:
            break
    return start, time.perf_counter(), done


def measure_energy(
    sensor: Sensor,
    call: Callable[[], object],
    *,
    repeats: int = 3,
    idle_s: float | None = None,
    min_active_s: float | None = None,
    min_inferences: int = 1,
    period_s: float | None = None,
    progress: ProgressCallback | None = None,
) -> EnergyMeasurement:
    """Measure net energy per call of ``call`` with ``sensor`` (see the module docstring).

    Args:
        sensor: an available sensor (``sensor.require()`` is called first).
        call: one inference.
        repeats: idle+active pairs; their spread is reported.
        idle_s: length of each idle baseline window, seconds (None: DEFAULT_WINDOW_S of the sensor).
        min_active_s: each active window lasts at least this long, seconds (None: the same
            default; the number of inferences of
            the first window is reused by the others, so every repeat does the same work).
        min_inferences: at least this many inferences per active window.
        period_s: sampling period, seconds (default per sensor, DEFAULT_PERIOD_S).

    Raises:
        MeasurementUnavailable: the sensor cannot be read, or fails during the run.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sensor.require()
    period = period_s if period_s is not None else DEFAULT_PERIOD_S.get(sensor.name, 0.02)
    window = DEFAULT_WINDOW_S.get(sensor.name, 1.0)
    idle_s = window if idle_s is None else idle_s
    min_active_s = window if min_active_s is None else min_active_s
    sampler = Sampler(sensor, period)
    idle_windows: list[tuple[float, float]] = []
    active_windows: list[tuple[float, float]] = []
    inference_windows: list[tuple[float, float]] = []
    counts: list[int] = []
    # A garbage collection holds the interpreter lock for as long as the heap takes to walk
    # (hundreds of ms once torch, onnx and a converter are loaded), and the sampler thread misses
    # its reads meanwhile: none runs while the windows are measured (as timeit does).
    collecting = gc.isenabled()
    gc.disable()
    sampler.start()
    origin = sampler.trace.times_s[0]
    try:
        per_repeat: int | None = None
        for repeat in range(repeats):
            idle_start = time.perf_counter()
            time.sleep(idle_s)
            idle_windows.append((idle_start, time.perf_counter()))
            start, end, done = _run_active(call, per_repeat, min_active_s, inference_windows)
            if per_repeat is None:
                # Top up to min_inferences once, so later repeats copy a count that satisfies it.
                if done < min_inferences:
                    _, end, extra = _run_active(call, min_inferences - done, 0.0, inference_windows)
                    done += extra
                per_repeat = done
            active_windows.append((start, end))
            counts.append(done)
            if progress:
                progress("energy", repeat + 1, repeats)
    finally:
        if collecting:
            gc.enable()
        trace = sampler.stop()

    rows = []
    for (idle_start, idle_end), (start, end), count in zip(idle_windows, active_windows, counts):
        idle_power = trace.energy_between_j(idle_start, idle_end) / (idle_end - idle_start)
        active_energy = trace.energy_between_j(start, end)
        duration = end - start
        rows.append(
            {
                "idle_power_w": idle_power,
                "active_power_w": active_energy / duration,
                "active_duration_s": duration,
                "inferences": count,
                "gross_energy_per_inference_j": active_energy / count,
                "energy_per_inference_j": (active_energy - idle_power * duration) / count,
                "samples_idle": trace.samples_between(idle_start, idle_end),
                "samples_active": trace.samples_between(start, end),
            }
        )
    net = np.array([row["energy_per_inference_j"] for row in rows])
    times, values = trace.arrays()
    span = float(times[-1] - times[0]) if times.size > 1 else 0.0
    mean_net = float(net.mean())
    summary = {
        "provenance": sensor.label,
        "sensor": sensor.describe(),
        "method": (
            "background sampling during back-to-back inferences, minus the mean power of an idle "
            "window measured just before each repeat"
        ),
        "energy_per_inference_j": mean_net,
        "energy_per_inference_std_j": float(net.std(ddof=1)) if net.size > 1 else 0.0,
        "energy_per_inference_min_j": float(net.min()),
        "energy_per_inference_max_j": float(net.max()),
        "gross_energy_per_inference_j": float(np.mean([r["gross_energy_per_inference_j"] for r in rows])),
        "idle_power_w": float(np.mean([r["idle_power_w"] for r in rows])),
        "active_power_w": float(np.mean([r["active_power_w"] for r in rows])),
        "repeats": repeats,
        "inferences_per_repeat": counts[0],
        "idle_window_s": idle_s,
        "active_window_min_s": min_active_s,
        "samples": int(times.size),
        "sample_period_s": period,
        "sampling_rate_hz": float((times.size - 1) / span) if span > 0 else 0.0,
        "distinct_readings": int(np.unique(values).size),
        # Compare with the latency phase: a large gap means the sampler thread perturbed the runs.
        "inference_while_sampling_mean_ms": float(
            np.mean([end - start for start, end in inference_windows]) * 1e3
        ),
        "per_repeat": rows,
        "warnings": [],
    }
    warnings = summary["warnings"]
    if any(row["samples_active"] < 3 for row in rows):
        warnings.append(
            "fewer than 3 sensor samples in an active window: lengthen min_active_s for a "
            "resolved figure"
        )
    if summary["distinct_readings"] < max(3, times.size // 20):
        warnings.append(
            f"the sensor returned only {summary['distinct_readings']} distinct values in "
            f"{times.size} samples: it updates slower than the sampling period"
        )
    if mean_net <= 0:
        warnings.append("active power did not exceed the idle baseline: net energy is not resolved")
    elif net.size > 1 and summary["energy_per_inference_std_j"] > 0.5 * abs(mean_net):
        warnings.append("repeats disagree by more than 50%: the figure is noisy")
    return EnergyMeasurement(
        summary=summary,
        trace=trace,
        idle_windows=idle_windows,
        active_windows=active_windows,
        inference_windows=inference_windows,
        origin_s=origin,
    )


def estimate_energy(ops: OpsCount | Mapping[str, Any], profile: DeviceProfile) -> dict:
    """Energy of one inference (or step, per ``ops.per``) from op counts, ``estimated:ops``.

    Args:
        ops: the op counts (an ``OpsCount``, or a manifest ``ops`` section, read by
            ``OpsCount.from_manifest``); missing counts are taken as zero and listed under
            ``missing_counts``.
        profile: the device profile whose energy-per-operation constants apply.
    """
    if not isinstance(ops, OpsCount):
        ops = OpsCount.from_manifest(ops, "ops counts")
    constants = profile.energy_per_op
    counts = ops.counts
    if not ops.any_counted:
        raise MeasurementUnavailable("no operations counted: nothing to estimate energy from")
    breakdown_pj = {
        "macs": counts["macs"] * constants.mac_pj,
        "accumulates": counts["accumulates"] * constants.accumulate_pj,
        "binary_ops": counts["binary_ops"] * constants.binary_pj,
    }
    return {
        "provenance": ESTIMATE_LABEL,
        "energy_per_inference_j": sum(breakdown_pj.values()) * 1e-12,
        "breakdown_j": {name: value * 1e-12 for name, value in breakdown_pj.items()},
        "per": ops.per,
        "ops": counts,
        "ops_counted": ops.counted or "",
        "ops_source": ops.source or "bundle manifest",
        "missing_counts": ops.missing_counts,
        "constants": constants.as_dict(),
        "device_profile": profile.name,
        "scope": ESTIMATE_SCOPE,
    }
