"""Known answers: `edgesdk profile --energy SENSOR --sysfs-root SIMDIR` on simulated sensors.

Each sensor is simulated in a process of its own (edgesdk.devices.sensors.simulate): 2 W idle,
5 W exactly while an inference runs (each padded by a busy-wait to a known length), with the
interface's own units, update interval, quantisation and quirks. The true net energy per
inference of a window is 3 W times the mean duration of its inferences, taken from the simulation
hook's own log, not from the profiler; the profile's median over windows is compared with the
median of the windows' true values (inference durations vary from window to window on a busy
machine, so the mean over all inferences is not what a median estimates).

Stated errors (median net energy per inference vs the truth, on a loaded 2-core CI machine, with
the short windows these tests use): RAPL 15%, INA3221 15%, NVML 20%, Android battery 25%.
"""
from __future__ import annotations

import json
import statistics

import pytest
from click.testing import CliRunner

from edgesdk.cli import cli
from edgesdk.devices.sensors.simulate import SimulatedDevice, SimulatedNvml, SimulationConfig

SHORT_S, LONG_S = 0.002, 0.02

# id: sensor, simulation options, window length (s, about twice what the sensor needs), stated
# relative error, inference length. Simulated NVML and fuel gauge update faster than real ones
# (25 and 50 ms, not 100 ms and 1 s) to keep the suite short; the profiler measures the update
# interval, so the windows it demands scale with it.
CASES = {
    "rapl-short": ("rapl", {"max_energy_range_uj": 2_000_000}, 0.3, 0.15, SHORT_S),  # wraps every ~0.5 s
    "rapl-long": ("rapl", {"max_energy_range_uj": 2_000_000}, 0.3, 0.15, LONG_S),
    "ina3221-short": ("ina3221", {}, 0.3, 0.15, SHORT_S),
    "ina3221-long": ("ina3221", {}, 0.3, 0.15, LONG_S),
    "nvml-short": ("nvml", {"update_s": 0.025}, 0.5, 0.20, SHORT_S),
    "nvml-long": ("nvml", {"update_s": 0.025}, 0.5, 0.20, LONG_S),
    "nvml-power-only": ("nvml", {"update_s": 0.025, "nvml_mode": "power"}, 0.5, 0.20, LONG_S),
    "android-short-vendor-units-usb": ("android", {"update_s": 0.05, "android_quirks": "vendor", "usb_online": True}, 0.6, 0.25, SHORT_S),
    "android-long": ("android", {"update_s": 0.05}, 0.6, 0.25, LONG_S),
}


def _profile(bundle, root, sensor, window_s, *extra):
    return CliRunner().invoke(cli, [
        "profile", str(bundle), "--backend", "onnxruntime", "--runs", "5", "--warmup", "1", "--json",
        "--energy", sensor, "--sysfs-root", str(root), "--idle-seconds", str(window_s),
        "--energy-seconds", str(window_s), "--energy-time-limit", "1", *extra,
    ])


def _simulate(tmp_path, monkeypatch, sensor, inference_s, **options):
    config = SimulationConfig(sensor=sensor, idle_w=2.0, active_w=5.0, inference_s=inference_s, **options)
    if sensor == "nvml":  # NVML is a library: faked where the sensor imports it
        monkeypatch.setattr("edgesdk.devices.sensors.nvml._import_pynvml", lambda: SimulatedNvml(tmp_path))
    return SimulatedDevice(tmp_path, config)


@pytest.mark.parametrize("case", list(CASES))
def test_profile_recovers_the_known_net_energy(bundles, tmp_path, monkeypatch, case):
    sensor, options, window_s, tolerance, inference_s = CASES[case]
    with _simulate(tmp_path, monkeypatch, sensor, inference_s, **options) as device:
        result = _profile(bundles["mlp"], tmp_path, sensor, window_s)
    assert result.exit_code == 0, result.output
    energy = json.loads(result.stdout)["energy"]
    truth = statistics.median(device.true_net_energy_per_window_j(energy["windows"], energy["inferences_per_window"]))
    assert truth >= 3.0 * inference_s  # the busy-wait made each inference at least this long
    assert energy["energy_per_inference_j"] == pytest.approx(truth, rel=tolerance)
    assert energy["idle_power_w"] == pytest.approx(2.0, rel=0.05)
    assert energy["windows"] >= 5 and energy["inferences_per_window"] >= 10
    low, high = energy["energy_per_inference_ci95_j"]
    assert low <= energy["energy_per_inference_j"] <= high
    assert energy["provenance"] == {"android": "measured:android-battery"}.get(sensor, f"measured:{sensor}")
    assert energy["boundary"]
    flags = {flag["flag"] for flag in energy["flags"]}
    if sensor == "rapl":
        assert energy["counter_wraps"] >= 1 and "counter-wrap" in flags
    if case == "nvml-power-only":
        assert energy["sensor"]["quantity"] == "power"
    if case.startswith("android-short"):
        assert energy["sensor"]["current_unit"] == "mA" and energy["sensor"]["voltage_unit"] == "mV"
        assert energy["sensor"]["discharge_sign"].startswith("positive")
        assert "usb-charging" in flags
    elif sensor == "android":
        assert energy["sensor"]["current_unit"] == "uA" and energy["sensor"]["discharge_sign"].startswith("negative")
        assert "usb-charging" not in flags


def test_window_too_short_for_the_sensor_is_refused_before_any_work(bundles, tmp_path, monkeypatch):
    with _simulate(tmp_path, monkeypatch, "ina3221", SHORT_S):
        # The root given by the environment this time, as `edgesdk devices` reads it.
        monkeypatch.setenv("EDGESDK_SYSFS_ROOT", str(tmp_path))
        result = CliRunner().invoke(cli, ["profile", str(bundles["mlp"]), "--energy", "ina3221",
                                          "--idle-seconds", "0.02", "--energy-seconds", "0.02"])
    assert result.exit_code == 6
    assert "the idle window of 20 ms is too short for the ina3221 sensor, which updates every 8 ms" in result.output
    assert "Simulated" not in result.stdout  # nothing was profiled, nothing printed as a result


def test_stuck_sensor_gives_no_figure(bundles, tmp_path, monkeypatch):
    with _simulate(tmp_path, monkeypatch, "ina3221", SHORT_S, stuck=True):
        result = _profile(bundles["mlp"], tmp_path, "ina3221", 0.2)
    assert result.exit_code == 6
    assert "distinct readings per window, fewer than the 10 a figure needs" in result.output


# The interfaces' real update intervals (NVML 100 ms, a fuel gauge 1 s) and default windows: minutes.
REAL_RATE_CASES = {
    "nvml-100ms": ("nvml", {}, 0.20),
    "android-1s": ("android", {}, 0.25),
}


@pytest.mark.fullsize
@pytest.mark.parametrize("case", list(REAL_RATE_CASES))
def test_profile_recovers_the_known_net_energy_at_real_update_rates(bundles, tmp_path, monkeypatch, case):
    sensor, options, tolerance = REAL_RATE_CASES[case]
    with _simulate(tmp_path, monkeypatch, sensor, LONG_S, **options) as device:
        result = CliRunner().invoke(cli, [
            "profile", str(bundles["mlp"]), "--backend", "onnxruntime", "--runs", "5", "--warmup", "1", "--json",
            "--energy", sensor, "--sysfs-root", str(tmp_path), "--energy-time-limit", "60"])
    assert result.exit_code == 0, result.output
    energy = json.loads(result.stdout)["energy"]
    truth = statistics.median(device.true_net_energy_per_window_j(energy["windows"], energy["inferences_per_window"]))
    assert energy["energy_per_inference_j"] == pytest.approx(truth, rel=tolerance)
    assert energy["window_rule"]["sensor_update_interval_s"] == pytest.approx(device.config.period_s, rel=0.3)
