"""Energy measurement (background sampling minus idle baseline) and the ops estimate."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgesdk.devices import get_profile
from edgesdk.devices.sensors.base import Sensor
from edgesdk.errors import MeasurementUnavailable
from edgesdk.profiler.energy import Trace, bootstrap_median_ci, estimate_energy, measure_energy, plan_windows

IDLE_W, BUSY_EXTRA_W = 2.0, 3.0


class Board:
    """A pretend board: draws IDLE_W, plus BUSY_EXTRA_W while an inference runs."""

    def __init__(self, inference_s: float = 0.02):
        self.inference_s = inference_s
        self.busy = False
        self.lock = threading.Lock()
        self.start = time.perf_counter()
        self.busy_total_s = 0.0
        self.busy_since: float | None = None

    def infer(self) -> None:
        with self.lock:
            self.busy, self.busy_since = True, time.perf_counter()
        time.sleep(self.inference_s)
        with self.lock:
            self.busy_total_s += time.perf_counter() - self.busy_since
            self.busy, self.busy_since = False, None

    def energy_j(self) -> float:
        """Exact energy drawn since start (what a perfect counter would show)."""
        with self.lock:
            now = time.perf_counter()
            busy = self.busy_total_s + (now - self.busy_since if self.busy_since else 0.0)
            return IDLE_W * (now - self.start) + BUSY_EXTRA_W * busy


class PowerSensor(Sensor):
    name, label, quantity = "fake-power", "measured:fake-power", "power"

    def __init__(self, board):
        super().__init__("/")
        self.board = board

    def available(self):
        return True, "fake"

    def describe(self):
        return {"sensor": self.name}

    reads = 0

    def read_power_w(self):
        # A real monitor's last bit flickers: a micro-watt of dither makes successive readings distinct.
        self.reads += 1
        return IDLE_W + (BUSY_EXTRA_W if self.board.busy else 0.0) + 1e-6 * (self.reads % 2)


class CounterSensor(PowerSensor):
    name, label, quantity = "fake-counter", "measured:fake-counter", "energy"

    def read_energy_j(self):
        return self.board.energy_j()


def _expected_net_j(measurement) -> float:
    """Independent reference: the extra power times the measured length of each inference."""
    durations = np.array([end - start for start, end in measurement.inference_windows])
    return BUSY_EXTRA_W * durations.mean()


def _measure(sensor, call, *, idle_s, active_s, period_s=0.002, windows=5, time_limit_s=1.0, **kwargs):
    plan = plan_windows(sensor, idle_s, active_s, period_s)
    return measure_energy(sensor, call, plan=plan, min_windows=windows, time_limit_s=time_limit_s, **kwargs)


@pytest.mark.parametrize("sensor_class, tolerance", [(CounterSensor, 0.05), (PowerSensor, 0.2)])
def test_net_energy_per_inference_matches_the_extra_power(sensor_class, tolerance):
    board = Board(inference_s=0.02)
    measurement = _measure(sensor_class(board), board.infer, idle_s=0.05, active_s=0.2, baseline_latency_s=0.02)
    summary = measurement.summary
    assert summary["provenance"] == sensor_class.label
    assert summary["energy_per_inference_j"] == pytest.approx(_expected_net_j(measurement), rel=tolerance)
    low, high = summary["energy_per_inference_ci95_j"]
    assert low <= summary["energy_per_inference_j"] <= high
    assert summary["idle_power_w"] == pytest.approx(IDLE_W, rel=0.05)
    assert IDLE_W < summary["active_power_w"] <= IDLE_W + BUSY_EXTRA_W + 0.1
    assert summary["gross_energy_per_inference_j"] > summary["energy_per_inference_j"]
    assert summary["windows"] >= 5 and len(summary["per_window"]) == summary["windows"]
    # Every window does the same work; counts and windows line up.
    assert [row["inferences"] for row in summary["per_window"]] == [summary["inferences_per_window"]] * summary["windows"]
    assert len(measurement.inference_windows) == summary["windows"] * summary["inferences_per_window"]
    assert summary["inferences_per_window"] >= 10  # the window rule's minimum
    # 3 W over a steady 2 W baseline is resolved.
    assert all(flag["flag"] != "not-resolved" for flag in summary["flags"])
    assert summary["achieved_sample_period_s"] < 0.02
    assert summary["sampler_overhead_fraction"] is not None


def test_idle_workload_is_reported_unresolved():
    board = Board()
    measurement = _measure(PowerSensor(board), lambda: time.sleep(0.002), idle_s=0.05, active_s=0.05)
    # Nothing but the sensor's 1 µW dither over a 50 ms window can show up as net energy.
    assert measurement.summary["energy_per_inference_j"] == pytest.approx(0.0, abs=1e-6 * 0.05)
    assert any(flag["flag"] == "not-resolved" for flag in measurement.summary["flags"])


def test_an_extra_power_of_one_sensor_step_is_not_resolved():
    """A difference the size of the sensor's last bit, in step with the windows: every window's
    net energy is positive and the idle power does not spread at all, so neither the interval nor
    the spread rule catches it (the idle test above failed this way under CI's load)."""
    class OneStep(PowerSensor):
        def read_power_w(self):  # the same 1 µW dither as PowerSensor, and one step more while busy
            self.reads += 1
            return IDLE_W + (1e-6 if self.board.busy else 0.0) + 1e-6 * (self.reads % 2)

    board = Board()
    measurement = _measure(OneStep(board), board.infer, idle_s=0.05, active_s=0.1)
    summary = measurement.summary
    reasons = [flag["message"] for flag in summary["flags"] if flag["flag"] == "not-resolved"]
    assert reasons  # whichever rule sees it first
    low, _ = summary["energy_per_inference_ci95_j"]
    if low > 0 and "spread" not in reasons[0]:  # the usual case here: steady, positive, no idle spread
        assert "resolution" in reasons[0]


def test_stuck_sensor_is_refused_not_printed():
    class Constant(PowerSensor):
        def read_power_w(self):
            return 5.0

    with pytest.raises(MeasurementUnavailable, match="distinct readings per window"):
        _measure(Constant(Board()), lambda: time.sleep(0.001), idle_s=0.05, active_s=0.05)


def test_window_shorter_than_the_sensor_can_resolve_is_refused():
    class Slow(PowerSensor):
        nominal_update_s = 0.1

    with pytest.raises(MeasurementUnavailable, match=r"too short for the fake-power sensor, which updates every 100 ms") as caught:
        plan_windows(Slow(Board()), idle_s=0.5, active_s=0.5)
    assert caught.value.exit_code == 6
    plan = plan_windows(Slow(Board()))  # the default is long enough
    assert plan.idle_s >= plan.required_s == pytest.approx(0.2 + 10 * 0.1)


def test_windows_are_added_until_the_interval_is_tight():
    board = Board(inference_s=0.002)
    measurement = _measure(CounterSensor(board), board.infer, idle_s=0.06, active_s=0.06, windows=5, time_limit_s=30,
                           ci_target=0.5)
    summary = measurement.summary
    median, (low, high) = summary["energy_per_inference_j"], summary["energy_per_inference_ci95_j"]
    assert "interval within 50%" in summary["stop_reason"]
    assert max(median - low, high - median) <= 0.5 * median


def test_bootstrap_interval_of_the_median():
    assert bootstrap_median_ci([2.0] * 7) == (2.0, 2.0, 2.0)
    median, low, high = bootstrap_median_ci([1.0, 2.0, 3.0, 4.0, 100.0])
    assert median == 3.0 and 1.0 <= low <= 3.0 <= high <= 100.0
    # The median of resamples of five values can only be one of them.
    assert low in {1.0, 2.0, 3.0} and high in {3.0, 4.0, 100.0}


def test_min_inferences_is_respected():
    board = Board(inference_s=0.001)
    measurement = _measure(CounterSensor(board), board.infer, idle_s=0.06, active_s=0.06)
    assert all(row["inferences"] >= 10 for row in measurement.summary["per_window"])


def test_unavailable_sensor_raises_before_running():
    class Missing(PowerSensor):
        def available(self):
            return False, "no such thing"

    ran = []
    with pytest.raises(MeasurementUnavailable, match="no such thing"):
        measure_energy(Missing(Board()), lambda: ran.append(1))
    assert not ran


def test_sensor_failure_mid_run_is_reported():
    class Flaky(PowerSensor):
        calls = 0

        def read_power_w(self):
            Flaky.calls += 1
            if Flaky.calls > 5:
                raise OSError("device went away")
            return 1.0

    with pytest.raises(MeasurementUnavailable, match="device went away"):
        _measure(Flaky(Board()), lambda: time.sleep(0.005), idle_s=0.05, active_s=0.05)


def test_trace_integration():
    power = Trace("power", [0.0, 1.0, 2.0], [1.0, 3.0, 3.0])
    assert power.energy_between_j(0.0, 2.0) == pytest.approx(2.0 + 3.0)  # trapezoids
    # Interpolated ends: 2 W at 0.5 s, 3 W at 1.5 s.
    assert power.energy_between_j(0.5, 1.5) == pytest.approx(0.5 * (2.0 + 3.0) / 2 + 0.5 * 3.0)
    counter = Trace("energy", [0.0, 1.0, 2.0], [10.0, 12.0, 16.0])
    assert counter.energy_between_j(0.5, 2.0) == pytest.approx(16.0 - 11.0)
    times, watts = counter.power_w()
    assert list(times) == [1.0, 2.0] and list(watts) == [2.0, 4.0]
    times, watts = counter.power_w(min_interval_s=1.5)
    assert list(times) == [2.0] and list(watts) == [3.0]
    with pytest.raises(MeasurementUnavailable):
        counter.energy_between_j(-1.0, 1.0)


def test_estimate_from_ops_uses_the_profile_constants():
    ops = {"per": "step", "macs": 1_000_000, "accumulates": 2_000_000, "binary_ops": 1_000_000, "counted": "test"}
    estimate = estimate_energy(ops, get_profile("jetson-orin-nano"))
    # Horowitz 45 nm: 4.6 pJ per MAC, 0.9 pJ per accumulate, 0.03 pJ per binary op.
    expected = 1e6 * 4.6e-12 + 2e6 * 0.9e-12 + 1e6 * 0.03e-12
    assert estimate["energy_per_inference_j"] == pytest.approx(expected)
    assert estimate["provenance"] == "estimated:ops"
    assert estimate["per"] == "step"
    assert "lower bound" in estimate["scope"]
    assert estimate["breakdown_j"]["accumulates"] == pytest.approx(1.8e-6)


def test_estimate_needs_counts():
    with pytest.raises(MeasurementUnavailable):
        estimate_energy({"per": "inference"}, get_profile("x86-64"))
    partial = estimate_energy({"macs": 10}, get_profile("x86-64"))
    assert partial["missing_counts"] == ["accumulates", "binary_ops"]
