"""Energy measurement (background sampling minus idle baseline) and the ops estimate."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgesdk.devices import get_profile
from edgesdk.devices.sensors.base import Sensor
from edgesdk.errors import MeasurementUnavailable
from edgesdk.profiler.energy import Trace, estimate_energy, measure_energy

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

    def read_power_w(self):
        return IDLE_W + (BUSY_EXTRA_W if self.board.busy else 0.0)


class CounterSensor(PowerSensor):
    name, label, quantity = "fake-counter", "measured:fake-counter", "energy"

    def read_energy_j(self):
        return self.board.energy_j()


def _expected_net_j(measurement) -> float:
    """Independent reference: the extra power times the measured length of each inference."""
    durations = np.array([end - start for start, end in measurement.inference_windows])
    return BUSY_EXTRA_W * durations.mean()


@pytest.mark.parametrize("sensor_class, tolerance", [(CounterSensor, 0.05), (PowerSensor, 0.2)])
def test_net_energy_per_inference_matches_the_extra_power(sensor_class, tolerance):
    board = Board(inference_s=0.02)
    measurement = measure_energy(
        sensor_class(board), board.infer, repeats=2, idle_s=0.1, min_active_s=0.2, period_s=0.002
    )
    summary = measurement.summary
    assert summary["provenance"] == sensor_class.label
    assert summary["energy_per_inference_j"] == pytest.approx(_expected_net_j(measurement), rel=tolerance)
    assert summary["idle_power_w"] == pytest.approx(IDLE_W, rel=0.05)
    assert IDLE_W < summary["active_power_w"] <= IDLE_W + BUSY_EXTRA_W + 0.1
    assert summary["gross_energy_per_inference_j"] > summary["energy_per_inference_j"]
    assert summary["repeats"] == 2 and len(summary["per_repeat"]) == 2
    # Every repeat does the same work; counts and windows line up.
    assert [row["inferences"] for row in summary["per_repeat"]] == [summary["inferences_per_repeat"]] * 2
    assert len(measurement.inference_windows) == 2 * summary["inferences_per_repeat"]
    assert summary["samples"] > 100 and summary["sampling_rate_hz"] > 50
    assert summary["energy_per_inference_min_j"] <= summary["energy_per_inference_j"] <= summary["energy_per_inference_max_j"]


def test_idle_workload_is_reported_unresolved():
    board = Board()
    measurement = measure_energy(PowerSensor(board), lambda: time.sleep(0.01), repeats=2, idle_s=0.05, min_active_s=0.05, period_s=0.002)
    assert measurement.summary["energy_per_inference_j"] == pytest.approx(0.0, abs=1e-9)
    assert any("not resolved" in w for w in measurement.summary["warnings"])


def test_slow_sensor_is_flagged():
    class Constant(PowerSensor):
        def read_power_w(self):
            return 5.0

    measurement = measure_energy(Constant(Board()), lambda: time.sleep(0.005), repeats=1, idle_s=0.05, min_active_s=0.05, period_s=0.002)
    assert any("distinct values" in w for w in measurement.summary["warnings"])


def test_min_inferences_is_respected():
    board = Board(inference_s=0.001)
    measurement = measure_energy(CounterSensor(board), board.infer, repeats=2, idle_s=0.01, min_active_s=0.0, min_inferences=7, period_s=0.002)
    assert [row["inferences"] for row in measurement.summary["per_repeat"]] == [7, 7]


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
        measure_energy(Flaky(Board()), lambda: time.sleep(0.005), repeats=1, idle_s=0.05, min_active_s=0.05, period_s=0.002)


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
