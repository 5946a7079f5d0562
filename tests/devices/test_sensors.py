"""Each power sensor against fake kernel trees (and a fake pynvml), awkward cases included."""
from __future__ import annotations

import os
import sys
import types

import pytest
import sysfs_trees as trees

from edgesdk.devices.sensors import open_sensor, probe_sensors
from edgesdk.devices.sensors.android import AndroidBatterySensor
from edgesdk.devices.sensors.ina3221 import Ina3221Sensor
from edgesdk.devices.sensors.nvml import NvmlSensor
from edgesdk.devices.sensors.rapl import RaplSensor, unwrap_delta_uj
from edgesdk.errors import MeasurementUnavailable, UsageError

running_as_root = hasattr(os, "geteuid") and os.geteuid() == 0


# ----------------------------------------------------------------------------- RAPL
def _two_socket_server(root):
    trees.rapl_zone(root, "intel-rapl:0", "package-0", 1_000_000)
    trees.rapl_zone(root, "intel-rapl:0:0", "dram", 500_000)
    trees.rapl_zone(root, "intel-rapl:0:1", "core", 700_000)
    trees.rapl_zone(root, "intel-rapl:1", "package-1", 2_000_000)
    # The control type directory itself has no counter and must be skipped.
    (root / "sys/class/powercap/intel-rapl").mkdir(parents=True)


def _set(root, zone, value):
    trees.write(root, f"/sys/class/powercap/{zone}/energy_uj", value)


def test_rapl_sums_packages_and_dram_not_core(tmp_path):
    _two_socket_server(tmp_path)
    sensor = RaplSensor(tmp_path)
    usable, reason = sensor.available()
    assert usable, reason
    assert sensor.read_energy_j() == 0.0  # joules since opened
    _set(tmp_path, "intel-rapl:0", 1_000_000 + 3_000_000)  # +3 J package 0
    _set(tmp_path, "intel-rapl:0:0", 500_000 + 250_000)  # +0.25 J dram
    _set(tmp_path, "intel-rapl:0:1", 700_000 + 9_000_000)  # core: part of the package, not added
    _set(tmp_path, "intel-rapl:1", 2_000_000 + 1_500_000)  # +1.5 J package 1
    assert sensor.read_energy_j() == pytest.approx(4.75)
    domains = sensor.read_domains_j()
    assert domains["intel-rapl:0:0:dram"] == pytest.approx(0.25)
    assert "intel-rapl:0:1:core" not in domains
    assert [d["name"] for d in sensor.describe()["domains"]] == ["package-0", "dram", "package-1"]


def test_rapl_package_only_when_asked(tmp_path):
    _two_socket_server(tmp_path)
    sensor = RaplSensor(tmp_path, domains=("package",))
    sensor.read_energy_j()
    _set(tmp_path, "intel-rapl:0:0", 10_500_000)
    assert sensor.read_energy_j() == 0.0


def test_rapl_counter_wraps_at_max_energy_range(tmp_path):
    max_range = 65_532_610_987  # a real max_energy_range_uj value (2^32 x 15.3 µJ units)
    trees.rapl_zone(tmp_path, "intel-rapl:0", "package-0", max_range - 1_000_000, max_range)
    sensor = RaplSensor(tmp_path)
    sensor.read_energy_j()
    _set(tmp_path, "intel-rapl:0", 2_000_000)  # wrapped: 1 J before the top, 2 J after
    assert sensor.read_energy_j() == pytest.approx(3.0)
    _set(tmp_path, "intel-rapl:0", 2_500_000)
    assert sensor.read_energy_j() == pytest.approx(3.5)
    assert unwrap_delta_uj(10.0, 4.0, 20.0) == 14.0


def test_rapl_missing(tmp_path):
    usable, reason = RaplSensor(tmp_path).available()
    assert not usable
    assert "no powercap interface" in reason
    with pytest.raises(MeasurementUnavailable, match="rapl energy measurement unavailable"):
        RaplSensor(tmp_path).require()


def test_rapl_only_psys_is_not_taken_as_package(tmp_path):
    trees.rapl_zone(tmp_path, "intel-rapl:1", "psys", 5)
    usable, reason = RaplSensor(tmp_path).available()
    assert not usable and "no RAPL zone of kinds" in reason
    assert RaplSensor(tmp_path, domains=("psys",)).available()[0]


def _deny(module, monkeypatch, file_name):
    """Make reads of ``file_name`` fail as a non-root user's would (tests may run as root)."""
    original = module.read_number

    def read_number(path):
        if path.name == file_name:
            raise PermissionError(13, "Permission denied", str(path))
        return original(path)

    monkeypatch.setattr(module, "read_number", read_number)


def test_rapl_permission_denied_says_why_and_how(tmp_path, monkeypatch):
    import edgesdk.devices.sensors.rapl as rapl_module

    trees.rapl_zone(tmp_path, "intel-rapl:0", "package-0", 123)
    _deny(rapl_module, monkeypatch, "energy_uj")
    usable, reason = RaplSensor(tmp_path).available()
    assert not usable
    assert "permission denied" in reason and "CVE-2020-8694" in reason
    with pytest.raises(MeasurementUnavailable, match="permission denied"):
        RaplSensor(tmp_path).read_energy_j()


@pytest.mark.skipif(running_as_root, reason="root reads files whatever their mode")
def test_rapl_permission_denied_by_file_mode(tmp_path):
    zone = trees.rapl_zone(tmp_path, "intel-rapl:0", "package-0", 123)
    (zone / "energy_uj").chmod(0o200)
    try:
        usable, reason = RaplSensor(tmp_path).available()
    finally:
        (zone / "energy_uj").chmod(0o600)
    assert not usable and "permission denied" in reason


def test_rapl_rejects_unknown_domain():
    with pytest.raises(UsageError, match="unknown RAPL domains"):
        RaplSensor("/", domains=("gpu",))


# ----------------------------------------------------------------------------- INA3221 / INA238
def _orin_nano(root):
    trees.hwmon_ina3221(
        root, 1, "1-0040",
        {1: ("VDD_IN", 5000, 1200), 2: ("VDD_CPU_GPU_CV", 5000, 400), 3: ("VDD_SOC", 5000, 300)},
    )


def test_orin_nano_total_is_vdd_in_from_voltage_times_current(tmp_path):
    _orin_nano(tmp_path)
    sensor = Ina3221Sensor(tmp_path, module="jetson-orin-nano")
    assert sensor.available() == (True, "module input rail VDD_IN")
    # 5000 mV x 1200 mA = 6 W; the CPU/GPU rail (2 W) and SOC rail are parts of it.
    assert sensor.read_power_w() == pytest.approx(6.0)
    rails = sensor.read_rails_w()
    assert set(rails) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}  # curr4 (sum) is not a rail
    assert rails["VDD_CPU_GPU_CV"] == pytest.approx(2.0)
    assert sensor.describe()["rails_monitored"][0]["power_from"] == "voltage x current"


def test_module_is_detected_from_the_tree(tmp_path):
    trees.jetson(tmp_path, "NVIDIA Jetson Orin Nano Developer Kit", ["nvidia,p3767-0005", "nvidia,tegra234"], "# R35 (release), REVISION: 4.1")
    _orin_nano(tmp_path)
    sensor = Ina3221Sensor(tmp_path)
    assert sensor.module == "jetson-orin-nano"
    assert sensor.read_power_w() == pytest.approx(6.0)


def test_agx_orin_sums_its_module_rails_and_skips_nc(tmp_path):
    trees.hwmon_ina3221(
        tmp_path, 1, "1-0040",
        {1: ("VDD_GPU_SOC", 19000, 500), 2: ("VDD_CPU_CV", 19000, 200), 3: ("VIN_SYS_5V0", 5000, 600)},
    )
    trees.hwmon_ina3221(
        tmp_path, 2, "1-0041",
        {1: ("NC", 0, 0), 2: ("VDDQ_VDD2_1V8AO", 5000, 100), 3: ("NC", 0, 0)},
    )
    # Channel 1 is labelled NC; mainline device trees disable unused channels (in3_enable = 0).
    disabled = tmp_path / "sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon2"
    trees.write(disabled, "in3_enable", 0)
    trees.write(disabled, "in3_label", "SPARE")
    sensor = Ina3221Sensor(tmp_path, module="jetson-agx-orin")
    usable, scope = sensor.available()
    assert usable and "no input-rail monitor" in scope
    expected = 19 * 0.5 + 19 * 0.2 + 5 * 0.6 + 5 * 0.1
    assert sensor.read_power_w() == pytest.approx(expected)
    assert set(sensor.read_rails_w()) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    devices = {rail["device"] for rail in sensor.describe()["rails_monitored"]}
    assert devices == {"1-0040", "1-0041"}


def test_nano_old_iio_driver_uses_the_milliwatt_power_file(tmp_path):
    trees.iio_ina3221x(
        tmp_path, "6-0040",
        [("POM_5V_IN", 4072, 808, 5032), ("POM_5V_GPU", 40, 8, 5024), ("POM_5V_CPU", 803, 160, 5016)],
    )
    sensor = Ina3221Sensor(tmp_path, module="jetson-nano")
    assert sensor.available()[0]
    # The power file wins over V x I (4.066 W) where the driver provides it.
    assert sensor.read_power_w() == pytest.approx(4.072)
    assert sensor.describe()["rails_monitored"][0]["interface"] == "iio"


def test_jetson_without_profile_uses_its_input_rail(tmp_path):
    # Xavier NX on Jetson Linux R32: old iio driver, input rail VDD_IN.
    trees.jetson(tmp_path, "NVIDIA Jetson Xavier NX Developer Kit", ["nvidia,p3668-0001", "nvidia,tegra194"], "# R32 (release), REVISION: 7.4")
    trees.iio_ina3221x(tmp_path, "7-0040", [("VDD_IN", 5100, 1020, 5000), ("VDD_CPU_GPU_CV", 1500, 300, 5000), ("VDD_SOC", 1200, 240, 5000)])
    sensor = Ina3221Sensor(tmp_path)
    assert sensor.module == "jetson-generic"
    assert sensor.available() == (True, "input rail VDD_IN")
    assert sensor.read_power_w() == pytest.approx(5.1)


def test_ina238_power_file_in_microwatts(tmp_path):
    directory = tmp_path / "sys/class/hwmon/hwmon3"
    trees.write(directory, "name", "ina238")
    trees.write(directory, "in1_label", "VDD_IN")
    trees.write(directory, "in1_input", 19000)
    trees.write(directory, "curr1_input", 1000)
    trees.write(directory, "power1_input", 18_500_000)
    sensor = Ina3221Sensor(tmp_path, module="unknown-module")
    assert sensor.available() == (True, "input rail VDD_IN")
    assert sensor.read_power_w() == pytest.approx(18.5)


def test_unknown_module_without_input_rail_refuses_cpu_rails(tmp_path):
    trees.hwmon_ina3221(tmp_path, 1, "1-0040", {1: ("VDD_CPU", 5000, 100), 2: ("VDD_GPU", 5000, 100)})
    usable, reason = Ina3221Sensor(tmp_path, module="arm64-linux").available()
    assert not usable
    assert "not board power" in reason and "VDD_CPU" in reason


def test_rails_override_and_missing_rail(tmp_path):
    _orin_nano(tmp_path)
    assert Ina3221Sensor(tmp_path, module="jetson-orin-nano", rails=["VDD_SOC"]).read_power_w() == pytest.approx(1.5)
    usable, reason = Ina3221Sensor(tmp_path, module="jetson-nano").available()
    assert not usable and "POM_5V_IN" in reason  # an Orin tree read with the Nano's rail map


def test_no_monitor(tmp_path):
    usable, reason = Ina3221Sensor(tmp_path, module="jetson-orin-nano").available()
    assert not usable and "no INA3221/INA238 power monitor" in reason


# ----------------------------------------------------------------------------- NVML (fake pynvml)
class _NVMLError(Exception):
    pass


def _fake_pynvml(monkeypatch, *, energy_supported=True, init_fails=False, energy_mj=None, power_mw=None):
    module = types.ModuleType("pynvml")
    module.NVMLError = _NVMLError
    calls = {"shutdown": 0}
    energy = iter(energy_mj or [1_000_000, 1_000_000, 1_004_500])
    power = iter(power_mw or [75_000, 80_000])

    def init():
        if init_fails:
            raise _NVMLError("Driver Not Loaded")

    def total_energy(handle):
        if not energy_supported:
            raise _NVMLError("Not Supported")
        return next(energy)

    module.nvmlInit = init
    module.nvmlShutdown = lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1)
    module.nvmlDeviceGetCount = lambda: 1
    module.nvmlDeviceGetHandleByIndex = lambda index: ("handle", index)
    module.nvmlDeviceGetName = lambda handle: b"NVIDIA H100 80GB HBM3"
    module.nvmlDeviceGetTotalEnergyConsumption = total_energy
    module.nvmlDeviceGetPowerUsage = lambda handle: next(power)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return calls


def test_nvml_energy_counter(monkeypatch):
    calls = _fake_pynvml(monkeypatch)
    sensor = NvmlSensor()
    usable, reason = sensor.available()
    assert usable and "total-energy counter" in reason and "H100" in reason
    assert sensor.quantity == "energy"
    assert sensor.read_energy_j() == pytest.approx(0.0)
    assert sensor.read_energy_j() == pytest.approx(4.5)  # 4500 mJ later
    sensor.close()
    assert calls["shutdown"] == 1


def test_nvml_falls_back_to_power_sampling(monkeypatch):
    _fake_pynvml(monkeypatch, energy_supported=False)
    sensor = NvmlSensor()
    assert sensor.available()[0]
    assert sensor.quantity == "power"
    assert sensor.read() == pytest.approx(80.0)  # the first reading went to the availability probe
    assert sensor.describe()["quantity"] == "power"


def test_nvml_without_driver(monkeypatch):
    _fake_pynvml(monkeypatch, init_fails=True)
    usable, reason = NvmlSensor().available()
    assert not usable and "Driver Not Loaded" in reason


def test_nvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    usable, reason = NvmlSensor().available()
    assert not usable and "nvidia-ml-py is not installed" in reason
    with pytest.raises(MeasurementUnavailable):
        NvmlSensor().read_energy_j()


# ----------------------------------------------------------------------------- Android battery
@pytest.mark.parametrize(
    "current_now, voltage_now, watts, sign",
    [
        (-450_000, 3_870_000, 0.45 * 3.87, "negative"),  # Pixel: µA, µV, ABI sign
        (450_000, 3_870_000, 0.45 * 3.87, "positive"),  # many Qualcomm phones: discharge positive
        (450, 3_870_000, 0.45 * 3.87, "positive"),  # Samsung-style milliamps
        (-450_000, 3870, 0.45 * 3.87, "negative"),  # millivolts
    ],
)
def test_android_units_and_signs(tmp_path, current_now, voltage_now, watts, sign):
    trees.android_phone(tmp_path)
    trees.battery(tmp_path, current_now, voltage_now)
    sensor = AndroidBatterySensor(tmp_path)
    assert sensor.available()[0]
    assert sensor.read_power_w() == pytest.approx(watts)
    assert sensor.discharge_sign.startswith(sign)


def test_android_units_can_be_forced(tmp_path):
    trees.battery(tmp_path, 9000, 3_900_000)  # 9 mA would be read as mA by the heuristic
    sensor = AndroidBatterySensor(tmp_path, current_unit="uA")
    assert sensor.read_power_w() == pytest.approx(0.009 * 3.9)
    with pytest.raises(UsageError):
        AndroidBatterySensor(tmp_path, current_unit="A")


@pytest.mark.parametrize("status", ["Charging", "Full", "Not charging"])
def test_android_plugged_in_is_unavailable(tmp_path, status):
    trees.battery(tmp_path, 800_000, 4_200_000, status=status)
    usable, reason = AndroidBatterySensor(tmp_path).available()
    assert not usable and "unplug" in reason


def test_android_picks_the_battery_not_the_charger(tmp_path):
    trees.android_phone(tmp_path)
    trees.battery(tmp_path, -300_000, 4_000_000, name="bms")
    sensor = AndroidBatterySensor(tmp_path)
    assert sensor.describe()["supply"] == "bms"
    assert sensor.read_power_w() == pytest.approx(1.2)


def test_android_permission_denied(tmp_path, monkeypatch):
    import edgesdk.devices.sensors.android as android_module

    trees.battery(tmp_path, -300_000, 4_000_000)
    _deny(android_module, monkeypatch, "current_now")
    usable, reason = AndroidBatterySensor(tmp_path).available()
    assert not usable and "permission denied" in reason and "adb" in reason


def test_android_no_battery(tmp_path):
    usable, reason = AndroidBatterySensor(tmp_path).available()
    assert not usable and "no battery" in reason


# ----------------------------------------------------------------------------- registry
def test_probe_lists_every_sensor_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    trees.rapl_zone(tmp_path, "intel-rapl:0", "package-0", 1)
    found = {entry["name"]: entry for entry in probe_sensors(tmp_path)}
    assert list(found) == ["rapl", "ina3221", "nvml", "android"]
    assert found["rapl"]["available"] and found["rapl"]["details"]["domains"]
    assert not found["android"]["available"] and found["android"]["reason"]
    assert found["nvml"]["label"] == "measured:nvml"


def test_open_sensor_unknown_name():
    with pytest.raises(UsageError, match="rapl"):
        open_sensor("powermeter")


# ----------------------------------------------------------------------------------------------
# Simulated sensors (edgesdk.devices.sensors.simulate) and what else can move a figure.

def test_simulated_rapl_counter_advances_at_the_idle_power_and_wraps(tmp_path):
    import time

    from edgesdk.devices.sensors.simulate import SimulatedDevice, SimulationConfig

    with SimulatedDevice(tmp_path, SimulationConfig("rapl", idle_w=10.0, active_w=20.0, max_energy_range_uj=1_000_000)):
        sensor = RaplSensor(tmp_path)
        start_j, start = sensor.read_energy_j(), time.monotonic()
        while time.monotonic() - start < 0.35:
            sensor.read_energy_j()
            time.sleep(0.005)
        watts = (sensor.read_energy_j() - start_j) / (time.monotonic() - start)
    assert watts == pytest.approx(10.0, rel=0.2)  # 1 J range at 10 W: three wraps in 0.35 s, all undone
    assert sensor.counter_wraps() >= 2


def test_simulated_ina3221_files_are_quantised_like_the_chip(tmp_path):
    from edgesdk.devices.sensors.simulate import SimulatedDevice, SimulationConfig

    with SimulatedDevice(tmp_path, SimulationConfig("ina3221", idle_w=3.0, active_w=6.0)):
        sensor = Ina3221Sensor(tmp_path)
        hwmon = tmp_path / "sys/class/hwmon/hwmon1"
        readings = [(int((hwmon / "in1_input").read_text()), int((hwmon / "curr1_input").read_text())) for _ in range(50)]
        assert sensor.update_interval_s() == pytest.approx(0.008)  # from the driver's update_interval (ms)
        assert sensor.read_power_w() == pytest.approx(3.0, abs=0.1)
    assert all(mv % 8 == 0 and ma % 8 == 0 for mv, ma in readings)  # 8 mV bus and 8 mA current LSBs
    assert sensor.describe()["module"] == "jetson-orin-nano" and "carrier board" in sensor.boundary


def test_conditions_that_moved_are_flagged(tmp_path):
    from edgesdk.devices.sensors.conditions import condition_flags, read_conditions

    cpufreq = tmp_path / "sys/devices/system/cpu/cpu0/cpufreq"
    trees.write(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "schedutil")
    trees.write(tmp_path, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", 1_500_000)
    trees.write(tmp_path, "/sys/class/thermal/thermal_zone0/type", "cpu-thermal")
    trees.write(tmp_path, "/sys/class/thermal/thermal_zone0/temp", 45_000)
    trees.write(tmp_path, "/var/lib/nvpmodel/status", "pmode:0000")
    before = read_conditions(tmp_path)
    assert condition_flags([before, read_conditions(tmp_path)]) == []
    (cpufreq / "scaling_governor").write_text("performance\n")
    (cpufreq / "scaling_cur_freq").write_text("2200000\n")
    trees.write(tmp_path, "/sys/class/thermal/thermal_zone0/temp", 52_500)
    trees.write(tmp_path, "/var/lib/nvpmodel/status", "pmode:0001")
    trees.write(tmp_path, "/sys/class/power_supply/usb/type", "USB")
    trees.write(tmp_path, "/sys/class/power_supply/usb/online", 1)
    flags = dict(condition_flags([before, read_conditions(tmp_path)]))
    assert set(flags) == {"governor-changed", "clocks-moved", "temperature-rose", "power-mode-changed", "usb-charging"}
    assert "cpu-thermal rose from 45.0 to 52.5" in flags["temperature-rose"]
