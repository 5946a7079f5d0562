"""Energy per inference measured with a power sensor: windows, medians and their intervals.

Measurement
-----------
A background thread reads the sensor every ``period_s`` while the main thread measures
*windows*: an idle baseline (sleeping), then inferences back to back, the same number in every
window. The first ``settle`` seconds of each part (two sensor updates) are skipped, so that a
reading averaged over, or lagging behind, the previous part does not leak in. For each window::

    net energy per inference   = (P_active - P_idle) x T_active / n
    gross energy per inference = P_active x T_active / n

where ``P`` is the mean power over the settled part (a counter's difference, or power readings
integrated with the trapezoid rule, over its length), ``T_active`` the window's length and ``n``
its inferences. Windows are added (at least five) until the 95% bootstrap interval of the median
net energy is within 10% of it, or a time limit. Each window must hold a minimum number of
distinct sensor readings and of inferences (``WINDOW_RULES``): a window asked for that cannot
hold them is refused before anything runs, and a run whose windows did not get them is refused
after (``MeasurementUnavailable``, exit 6), rather than printing a figure the trace contradicts.
What else could bend a figure is flagged: too few samples, a sensor repeating itself, counter
wrap, governor/clock/temperature changes, a USB cable on a phone.

Estimates (no sensor) live in ``edgesdk.profiler.estimate``.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from edgesdk.devices.sensors.base import Sensor
from edgesdk.devices.sensors.conditions import Conditions, condition_flags, read_conditions
from edgesdk.errors import MeasurementUnavailable
from edgesdk.profiler.estimate import OPS_LABEL as ESTIMATE_LABEL  # noqa: F401 - re-exported
from edgesdk.profiler.estimate import OPS_SCOPE as ESTIMATE_SCOPE  # noqa: F401
from edgesdk.profiler.estimate import estimate_energy  # noqa: F401

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]


# Sampling periods per sensor, in seconds: faster than each interface updates is pointless.
# RAPL updates about every 1 ms; INA3221 conversions on Jetson take a few ms per channel; NVML and
# battery fuel gauges update on the order of 100 ms to 1 s.
DEFAULT_PERIOD_S = {"rapl": 0.005, "ina3221": 0.01, "nvml": 0.02, "android": 0.1}
# Default idle and active window lengths per sensor, in seconds: long enough for many distinct
# readings. NVML power on recent GPUs is a 1 s average; fuel gauges refresh every ~1 s or slower.
DEFAULT_WINDOW_S = {"rapl": 1.0, "ina3221": 1.0, "nvml": 3.0, "android": 5.0}



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

    def sample_now(self) -> None:
        """One reading now, from the calling thread (the trace then covers this instant)."""
        self._sample()

    def snapshot(self) -> Trace:
        """A copy of the trace so far."""
        with self._lock:
            return Trace(self.trace.quantity, list(self.trace.times_s), list(self.trace.values))

    def _sample(self) -> None:
        # Under the lock: ``sample_now`` may read from the main thread, and a counter's
        # wrap bookkeeping must see its reads in order.
        with self._lock:
            value = self.sensor.read()
            now = time.perf_counter()
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


# ----------------------------------------------------------------------------------------------
# Windows: how long, how many, and when a figure is worth printing.


@dataclass(frozen=True)
class WindowRule:
    """What each idle or active window must hold for one sensor kind.

    Attributes:
        min_readings: distinct sensor readings inside the measured part of each window.
        min_inferences: inferences in each active window.
        settle_updates: sensor updates skipped at the start of each window, so that a reading
            averaged over (or lagging behind) the previous window does not leak into this one.
    """

    min_readings: int
    min_inferences: int
    settle_updates: float = 2.0


# Per sensor (docs/profiling.md repeats this table). Counters resolve a window with fewer reads
# than averaging power monitors; a fuel gauge updating once a second cannot give many.
WINDOW_RULES = {
    "rapl": WindowRule(min_readings=10, min_inferences=10),
    "ina3221": WindowRule(min_readings=10, min_inferences=10),
    "nvml": WindowRule(min_readings=8, min_inferences=10),
    "android": WindowRule(min_readings=5, min_inferences=10),
}
DEFAULT_RULE = WindowRule(min_readings=10, min_inferences=10)
MIN_WINDOWS = 5
MAX_WINDOWS = 40
# Windows are added until the 95% interval of the median net energy is within this fraction of
# it (each side), or the time limit is reached.
CI_TARGET_FRACTION = 0.10
TIME_LIMIT_S = 120.0
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class WindowPlan:
    """Window lengths and sampling for one sensor, checked against its update interval."""

    sensor: str
    rule: WindowRule
    update_s: float
    period_s: float
    settle_s: float
    required_s: float
    idle_s: float
    active_s: float

    def as_dict(self) -> dict:
        return {
            "min_distinct_readings": self.rule.min_readings,
            "min_inferences": self.rule.min_inferences,
            "sensor_update_interval_s": self.update_s,
            "settle_s": self.settle_s,
            "required_window_s": self.required_s,
            "idle_window_s": self.idle_s,
            "active_window_min_s": self.active_s,
            "sample_period_s": self.period_s,
        }


def plan_windows(sensor: Sensor, idle_s: float | None = None, active_s: float | None = None,
                 period_s: float | None = None) -> WindowPlan:
    """Window lengths for ``sensor``; a window asked for that is too short is refused.

    A window needs ``settle`` (``settle_updates`` sensor updates, at least five sampling periods)
    plus ``min_readings`` readings at the slower of the sensor's update interval and the sampling
    period.

    Raises:
        MeasurementUnavailable: ``idle_s`` or ``active_s`` is shorter than that (exit 6).
    """
    rule = WINDOW_RULES.get(sensor.name, DEFAULT_RULE)
    update = sensor.update_interval_s()
    period = period_s if period_s is not None else min(DEFAULT_PERIOD_S.get(sensor.name, 0.02), max(update / 2, 0.002))
    # At least five sampling periods too: the sampler's reads (and a busy kernel's updates) jitter
    # by a few periods, and a counter read late at a window's edge charges one part to the other.
    settle = max(rule.settle_updates * update, 5 * period)
    required = settle + rule.min_readings * max(update, period)
    for which, value in (("idle", idle_s), ("active", active_s)):
        if value is not None and value < required:
            raise MeasurementUnavailable(
                f"the {which} window of {value * 1e3:g} ms is too short for the {sensor.name} sensor, which "
                f"updates every {update * 1e3:g} ms: a window needs {settle * 1e3:g} ms to settle and then "
                f"{rule.min_readings} distinct readings, at least {required * 1e3:.0f} ms; give a longer window"
            )
    # Default: twice the minimum (sampler stalls eat readings) and never under the usual length.
    default = max(2 * required, DEFAULT_WINDOW_S.get(sensor.name, 1.0))
    return WindowPlan(sensor.name, rule, update, period, settle, required,
                      idle_s if idle_s is not None else default, active_s if active_s is not None else default)


def bootstrap_median_ci(values: Sequence[float], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float, float]:
    """(median, low, high): the median and its 95% percentile-bootstrap interval."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values to bootstrap")
    rng = np.random.default_rng(seed)
    medians = np.median(data[rng.integers(0, data.size, size=(resamples, data.size))], axis=1)
    low, high = np.percentile(medians, [2.5, 97.5])
    return float(np.median(data)), float(low), float(high)


@dataclass(frozen=True)
class Window:
    """One idle baseline and the active window after it (perf_counter instants)."""

    idle: tuple[float, float]
    active: tuple[float, float]
    inferences: int


def _distinct_readings(trace: Trace, start: float, end: float) -> int:
    """Readings inside [start, end] that differ from the one before them (+1 for the first)."""
    times, values = trace.arrays()
    inside = values[(times >= start) & (times <= end)]
    return int(inside.size and 1 + np.count_nonzero(np.diff(inside)))


def _window_figures(trace: Trace, window: Window, settle_s: float) -> dict:
    """Power and energy figures of one window; the first ``settle_s`` of each part is skipped."""
    (idle_start, idle_end), (start, end) = window.idle, window.active
    idle_from, active_from = min(idle_start + settle_s, idle_end), min(start + settle_s, end)
    idle_power = trace.energy_between_j(idle_from, idle_end) / max(idle_end - idle_from, 1e-12)
    active_power = trace.energy_between_j(active_from, end) / max(end - active_from, 1e-12)
    duration = end - start
    return {
        "idle_power_w": idle_power,
        "active_power_w": active_power,
        "active_duration_s": duration,
        "inferences": window.inferences,
        # Steady-state power over the settled part of the window, times the window's time per inference.
        "gross_energy_per_inference_j": active_power * duration / window.inferences,
        "energy_per_inference_j": (active_power - idle_power) * duration / window.inferences,
        "distinct_readings_idle": _distinct_readings(trace, idle_from, idle_end),
        "distinct_readings_active": _distinct_readings(trace, active_from, end),
        "samples_idle": trace.samples_between(idle_from, idle_end),
        "samples_active": trace.samples_between(active_from, end),
    }


@dataclass
class EnergyMeasurement:
    """Everything one measured energy run produced: the summary and the raw trace for plots."""

    summary: dict
    trace: Trace
    idle_windows: list[tuple[float, float]]
    active_windows: list[tuple[float, float]]
    inference_windows: list[tuple[float, float]]
    origin_s: float
    settle_s: float = 0.0


def _run_active(
    call: Callable[[], object], count: int | None, min_duration_s: float, min_count: int,
    windows: list[tuple[float, float]],
) -> tuple[float, float, int]:
    """Call back to back: ``count`` times, or (count None) until both ``min_duration_s`` and ``min_count``."""
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
        if count is None and end - start >= min_duration_s and done >= min_count:
            break
    return start, time.perf_counter(), done


def measure_energy(
    sensor: Sensor,
    call: Callable[[], object],
    *,
    plan: WindowPlan | None = None,
    min_windows: int = MIN_WINDOWS,
    max_windows: int = MAX_WINDOWS,
    ci_target: float = CI_TARGET_FRACTION,
    time_limit_s: float = TIME_LIMIT_S,
    baseline_latency_s: float | None = None,
    progress: ProgressCallback | None = None,
) -> EnergyMeasurement:
    """Measure idle power and gross and net energy per call of ``call`` with ``sensor``.

    Windows (an idle baseline, then inferences back to back, the same count in every window)
    are measured until at least ``min_windows`` are done and the 95% bootstrap interval of the
    median net energy is within ``ci_target`` of it, or ``time_limit_s`` or ``max_windows`` is
    reached. Figures are medians over windows with their 95% bootstrap intervals.

    Args:
        sensor: an available sensor (``sensor.require()`` is called first).
        call: one inference.
        plan: window lengths (``plan_windows``; default: the sensor's).
        baseline_latency_s: median latency measured without the sampler, for its overhead.

    Raises:
        MeasurementUnavailable: the sensor cannot be read, fails during the run, or gives fewer
            distinct readings per window than its rule needs (the figure would be wrong).
    """
    if min_windows < 1 or max_windows < min_windows:
        raise ValueError(f"need 1 <= min_windows <= max_windows, got {min_windows} and {max_windows}")
    sensor.require()
    plan = plan or plan_windows(sensor)
    sampler = Sampler(sensor, plan.period_s)
    windows: list[Window] = []
    inference_windows: list[tuple[float, float]] = []
    snapshots = [read_conditions(sensor.root)]
    stop_reason = f"{max_windows} windows (the most allowed)"
    # A garbage collection holds the interpreter lock for as long as the heap takes to walk
    # (hundreds of ms once torch, onnx and a converter are loaded), and the sampler thread misses
    # its reads meanwhile: none runs while the windows are measured (as timeit does).
    collecting = gc.isenabled()
    gc.disable()
    sampler.start()
    origin = sampler.trace.times_s[0]
    began = time.perf_counter()
    try:
        per_window: int | None = None
        while len(windows) < max_windows:
            idle_start = time.perf_counter()
            time.sleep(plan.idle_s)
            idle = (idle_start, time.perf_counter())
            start, end, done = _run_active(call, per_window, plan.active_s, plan.rule.min_inferences, inference_windows)
            per_window = per_window or done
            sampler.sample_now()  # the trace covers the window's end before it is evaluated
            windows.append(Window(idle, (start, end), done))
            snapshots.append(read_conditions(sensor.root))
            if progress:
                progress("energy", len(windows), max(min_windows, len(windows)))
            if len(windows) < min_windows:
                continue
            nets = [_window_figures(sampler.snapshot(), w, plan.settle_s)["energy_per_inference_j"] for w in windows]
            median, low, high = bootstrap_median_ci(nets)
            if median > 0 and max(median - low, high - median) <= ci_target * median:
                stop_reason = f"95% interval within {ci_target:.0%} of the median"
                break
            if time.perf_counter() - began >= time_limit_s:
                stop_reason = f"time limit of {time_limit_s:g} s"
                break
    finally:
        if collecting:
            gc.enable()
        trace = sampler.stop()
    return EnergyMeasurement(
        summary=_summarize(sensor, plan, trace, windows, inference_windows, snapshots, stop_reason,
                           baseline_latency_s, ci_target),
        trace=trace,
        idle_windows=[w.idle for w in windows],
        active_windows=[w.active for w in windows],
        inference_windows=inference_windows,
        origin_s=origin,
        settle_s=plan.settle_s,
    )


def _summarize(sensor: Sensor, plan: WindowPlan, trace: Trace, windows: list[Window],
               inference_windows: list[tuple[float, float]], snapshots: list[Conditions], stop_reason: str,
               baseline_latency_s: float | None, ci_target: float) -> dict:
    rows = [_window_figures(trace, window, plan.settle_s) for window in windows]
    idle = bootstrap_median_ci([r["idle_power_w"] for r in rows])
    active = bootstrap_median_ci([r["active_power_w"] for r in rows])
    gross = bootstrap_median_ci([r["gross_energy_per_inference_j"] for r in rows])
    net = bootstrap_median_ci([r["energy_per_inference_j"] for r in rows])
    times, values = trace.arrays()
    gaps = np.diff(times)
    distinct = [min(r["distinct_readings_idle"], r["distinct_readings_active"]) for r in rows]
    settled_s = sum((w.idle[1] - w.idle[0]) + (w.active[1] - w.active[0]) - 2 * plan.settle_s for w in windows)
    changes = sum(r["distinct_readings_idle"] + r["distinct_readings_active"] for r in rows)
    observed_update = settled_s / changes if changes else float("inf")
    # Polled every p, a sensor updating every u repeats about 1 - p/u of its readings; more than
    # that means it is slower than it says, or stuck.
    achieved = float(np.median(gaps)) if gaps.size else plan.period_s
    repeated = float(np.mean(np.diff(values) == 0)) if values.size > 1 else 1.0
    expected_repeats = max(0.0, 1.0 - achieved / plan.update_s)
    with_sampler = float(np.median([end - start for start, end in inference_windows]))
    flags: list[tuple[str, str]] = []
    few = sum(d < plan.rule.min_readings for d in distinct)
    if few:
        flags.append(("too-few-samples", f"{few} of {len(rows)} windows had fewer than {plan.rule.min_readings} distinct "
                                         f"{sensor.name} readings after settling (fewest {min(distinct)})"))
    if repeated > expected_repeats + 0.3:
        flags.append(("sensor-repeating", f"{repeated:.0%} of readings repeated the one before (expected about "
                                          f"{expected_repeats:.0%} for updates every {plan.update_s * 1e3:g} ms polled every "
                                          f"{achieved * 1e3:.3g} ms): the sensor updates slower than it says, or is stuck"))
    wraps = sensor.counter_wraps()
    if wraps:
        flags.append(("counter-wrap", f"the energy counter wrapped {wraps} time(s) during the run (undone; reads were "
                                      f"at most {gaps.max() * 1e3:.0f} ms apart, far less than one wrap)"))
    flags += condition_flags(snapshots)
    # With few windows the interval can miss zero by chance (five windows all a hair positive), so
    # the extra power must also stand above the idle baseline's own spread from window to window.
    # Nor can it be a step or two of the sensor's own resolution: a power monitor's last bit
    # flickering in step with the windows gives a steady, narrow, meaningless difference.
    extra_power_w = float(np.median([r["active_power_w"] - r["idle_power_w"] for r in rows]))
    idle_spread_w = idle[2] - idle[1]
    steps = np.abs(np.diff(values)) if sensor.quantity == "power" and values.size > 1 else np.zeros(0)
    resolution_w = float(steps[steps > 0].min()) if np.any(steps > 0) else 0.0
    if net[1] <= 0:
        flags.append(("not-resolved", "the 95% interval of the net energy reaches zero: active power is not resolved "
                                      "from the idle baseline"))
    elif extra_power_w <= idle_spread_w:
        flags.append(("not-resolved", f"the active power exceeds idle by {extra_power_w:.3g} W, no more than the idle "
                                      f"power's own spread across windows ({idle_spread_w:.3g} W): active power is not "
                                      "resolved from the idle baseline"))
    elif extra_power_w <= 2 * resolution_w:
        flags.append(("not-resolved", f"the active power exceeds idle by {extra_power_w:.3g} W, within two steps of the "
                                      f"{sensor.name} readings' resolution ({resolution_w:.3g} W): active power is not "
                                      "resolved from the idle baseline"))
    elif max(net[0] - net[1], net[2] - net[0]) > ci_target * net[0]:
        flags.append(("wide-interval", f"the 95% interval of the net energy is wider than ±{ci_target:.0%} of its median "
                                       f"after {len(rows)} windows ({stop_reason})"))
    summary = {
        "provenance": sensor.label,
        "sensor": sensor.describe(),
        "boundary": sensor.boundary or sensor.describe().get("scope", ""),
        "method": (
            "windows of an idle baseline then inferences back to back (same count in each); per window, "
            "net energy per inference = (settled active power - settled idle power) x window time / inferences; "
            "median over windows with a 95% bootstrap interval"
        ),
        "windows": len(rows),
        "stop_reason": stop_reason,
        "window_rule": plan.as_dict(),
        "inferences_per_window": windows[0].inferences,
        "idle_power_w": idle[0],
        "idle_power_ci95_w": [idle[1], idle[2]],
        "active_power_w": active[0],
        "active_power_ci95_w": [active[1], active[2]],
        "gross_energy_per_inference_j": gross[0],
        "gross_energy_per_inference_ci95_j": [gross[1], gross[2]],
        "energy_per_inference_j": net[0],
        "energy_per_inference_ci95_j": [net[1], net[2]],
        "samples": int(times.size),
        "sample_period_s": plan.period_s,
        "achieved_sample_period_s": float(np.median(gaps)) if gaps.size else None,
        "max_sample_gap_s": float(gaps.max()) if gaps.size else None,
        "distinct_readings": int(np.unique(values).size),
        "distinct_readings_per_window_min": min(distinct),
        "repeated_readings_fraction": repeated,
        "observed_update_interval_s": observed_update if np.isfinite(observed_update) else None,
        "counter_wraps": wraps,
        "inference_while_sampling_median_ms": with_sampler * 1e3,
        "inference_without_sampler_median_ms": baseline_latency_s * 1e3 if baseline_latency_s else None,
        "sampler_overhead_fraction": (with_sampler / baseline_latency_s - 1) if baseline_latency_s else None,
        "conditions": {"start": snapshots[0].as_dict(), "end": snapshots[-1].as_dict()},
        "per_window": rows,
        "flags": [{"flag": code, "message": message} for code, message in flags],
        "warnings": [message for _, message in flags],
    }
    if sum(d >= plan.rule.min_readings for d in distinct) < len(rows) / 2:
        raise MeasurementUnavailable(
            f"the {sensor.name} sensor gave a median of {int(np.median(distinct))} distinct readings per window, fewer "
            f"than the {plan.rule.min_readings} a figure needs (it updates every {observed_update * 1e3:.0f} ms here): "
            "lengthen --idle-seconds and --energy-seconds"
        )
    return summary
