"""Simulated power sensors: a device tree whose sensor files follow a power trace you know.

A testing aid. No power sensor exists on a laptop in CI, so the measurement path would only ever
see static files. ``SimulatedDevice`` writes a device tree (the files the real kernel exposes,
with their real names and units) under a folder and starts a *process* of its own that rewrites
the sensor files as the real interface would:

===========  =================================================================================
sensor       what the simulator writes
===========  =================================================================================
rapl         ``intel-rapl:0/energy_uj``: the energy drawn, in steps of the RAPL energy unit
             (2^-16 J = 15.26 µJ), every ``update_s`` (1 ms), wrapping to 0 at
             ``max_energy_range_uj``.
ina3221      hwmon ``in1_input`` (bus mV) and ``curr1_input`` (mA) of rail ``VDD_IN`` on a
             Jetson Orin Nano tree: the power *averaged over each conversion period*
             (``update_s``, also written to ``update_interval`` in ms, as the driver does),
             quantised to the INA3221's LSBs (8 mV bus voltage; 40 µV over a 5 mΩ shunt = 8 mA),
             with one LSB of Gaussian noise before quantisation.
nvml         ``.edgesdk-sim/nvml/energy_mj`` (total-energy counter, mJ) and ``power_mw`` (power
             averaged over each update), every ``update_s`` (100 ms); ``SimulatedNvml`` reads
             them with pynvml's function names, and ``nvml_mode="power"`` makes the counter
             unsupported (as on pre-Volta GPUs), so the sensor samples power.
android      ``power_supply/battery/current_now`` and ``voltage_now`` averaged over each refresh
             (``update_s``, 1 s, as fuel gauges do), either as the kernel ABI says (µA, negative
             while discharging; µV) or as many vendors do (``android_quirks="vendor"``: mA,
             positive while discharging; mV). ``status`` is ``Discharging``.
===========  =================================================================================

The power trace is ``idle_w`` plus ``active_w - idle_w`` exactly while an inference runs. The
simulator learns when inferences run from an *activity file*: when ``edgesdk profile`` is given a
root that holds ``.edgesdk-sim/config.json`` (``--sysfs-root DIR`` or ``EDGESDK_SYSFS_ROOT``), it
wraps each inference so that it records, in ``.edgesdk-sim/activity``, the monotonic clock at
which the inference started and the busy time of all finished inferences; and when the config
asks for ``inference_s``, each inference is padded with a busy-wait to that length, so that the
true net energy per inference is ``(active_w - idle_w) x inference_s``. The simulator reads the
same monotonic clock (``time.monotonic``, shared by all processes), so the energy it integrates
is exact up to one file write; ``SimulatedDevice.true_net_energy_per_inference_j()`` gives the
answer a measurement must recover, from the activity record alone. The profile report says the
tree was simulated.

The simulator is a process, not a thread: a thread of the measuring process would stall whenever
the interpreter lock is held, which no kernel does.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

SIM_DIR = ".edgesdk-sim"
CONFIG_NAME = "config.json"
ACTIVITY_NAME = "activity"
LOG_NAME = "inferences.log"  # one "begin end" line (monotonic seconds) per inference
SENSOR_KINDS = ("rapl", "ina3221", "nvml", "android")
# Each interface's own update interval, seconds (module docstring).
DEFAULT_UPDATE_S = {"rapl": 0.001, "ina3221": 0.008, "nvml": 0.1, "android": 1.0}
RAPL_ENERGY_UNIT_J = 2.0 ** -16  # 15.26 µJ: MSR_RAPL_POWER_UNIT's usual energy status unit
INA3221_BUS_LSB_MV = 8.0
INA3221_CURRENT_LSB_MA = 8.0  # 40 µV shunt-voltage LSB over a 5 mΩ shunt
JETSON_BUS_MV = 5000.0
BATTERY_VOLTS = 3.85


@dataclass(frozen=True)
class SimulationConfig:
    """What the simulated device draws and how its sensor reports it.

    Attributes:
        sensor: ``rapl``, ``ina3221``, ``nvml`` or ``android``.
        idle_w: power while no inference runs, watts.
        active_w: power while an inference runs, watts (> idle_w).
        update_s: the sensor's update interval, seconds (None: the interface's usual one).
        inference_s: pad each inference with a busy-wait to this many seconds (None: no padding).
        max_energy_range_uj: RAPL counter range (wraps to 0 there).
        nvml_mode: ``energy`` (total-energy counter) or ``power`` (power readings only).
        android_quirks: ``abi`` (µA negative while discharging, µV) or ``vendor`` (mA positive, mV).
        usb_online: the Android tree's USB supply reports a cable (flagged by the profiler).
        stuck: the sensor writes its first reading and then never changes (a hung driver).
        seed: noise seed.
    """

    sensor: str
    idle_w: float = 2.0
    active_w: float = 5.0
    update_s: float | None = None
    inference_s: float | None = None
    max_energy_range_uj: int = 262_143_328_850
    nvml_mode: str = "energy"
    android_quirks: str = "abi"
    usb_online: bool = False
    stuck: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sensor not in SENSOR_KINDS:
            raise ValueError(f"sensor must be one of {', '.join(SENSOR_KINDS)}, not {self.sensor!r}")
        if not 0 <= self.idle_w < self.active_w:
            raise ValueError(f"need 0 <= idle_w < active_w, got {self.idle_w} and {self.active_w}")
        if self.nvml_mode not in ("energy", "power"):
            raise ValueError(f"nvml_mode must be energy or power, not {self.nvml_mode!r}")
        if self.android_quirks not in ("abi", "vendor"):
            raise ValueError(f"android_quirks must be abi or vendor, not {self.android_quirks!r}")

    @property
    def period_s(self) -> float:
        return self.update_s if self.update_s is not None else DEFAULT_UPDATE_S[self.sensor]

    @property
    def extra_w(self) -> float:
        return self.active_w - self.idle_w


# ----------------------------------------------------------------------------------------------
# The activity record: written by the measuring process, read by the simulator.


@dataclass(frozen=True)
class Activity:
    """Busy time of finished inferences, when the running one began (None: idle), how many ran,
    and when the last finished one began and ended."""

    busy_s: float
    busy_since: float | None
    count: int
    last_begin: float = -1.0
    last_end: float = -1.0

    def busy_until(self, now: float) -> float:
        """Seconds of inference up to ``now`` (monotonic clock), for ``now`` at or after this record."""
        return self.busy_s + (max(0.0, now - self.busy_since) if self.busy_since is not None else 0.0)

    def busy_until_past(self, then: float) -> float | None:
        """Seconds of inference up to an earlier instant ``then``, where this record still tells
        (``then`` not before the last finished inference began); None otherwise."""
        if self.busy_since is not None and then >= self.busy_since:
            return self.busy_until(then)
        if then >= self.last_end:
            return self.busy_s
        if then >= self.last_begin >= 0:
            return self.busy_s - (self.last_end - then)
        return None


def _replace_text(path: Path, text: str) -> None:
    """Write ``text`` so that a reader sees the old or the new content, never half of it."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="ascii")
    os.replace(temporary, path)


def read_activity(root: str | os.PathLike) -> Activity:
    path = Path(root) / SIM_DIR / ACTIVITY_NAME
    try:
        busy, since, count, last_begin, last_end = path.read_text(encoding="ascii").split()
    except (FileNotFoundError, ValueError):
        return Activity(0.0, None, 0)
    return Activity(float(busy), None if float(since) < 0 else float(since), int(count), float(last_begin), float(last_end))


class ActivityHook:
    """Wraps an inference so that the simulated sensor tree under ``root`` sees it run."""

    def __init__(self, root: str | os.PathLike, config: SimulationConfig):
        self.path = Path(root) / SIM_DIR / ACTIVITY_NAME
        self.config = config
        self.busy_s = 0.0
        self.count = 0
        self.last = "-1 -1"
        _replace_text(self.path, f"0 -1 0 {self.last}")
        self.log = self.path.with_name(LOG_NAME).open("w", encoding="ascii", buffering=1)

    def wrap(self, call: Callable[[], object]) -> Callable[[], object]:
        pad = self.config.inference_s or 0.0

        def recorded():
            begin = time.monotonic()
            _replace_text(self.path, f"{self.busy_s!r} {begin!r} {self.count} {self.last}")
            result = call()
            while time.monotonic() - begin < pad:  # busy-wait: the known duration
                pass
            end = time.monotonic()
            self.busy_s += end - begin
            self.count += 1
            self.last = f"{begin!r} {end!r}"
            _replace_text(self.path, f"{self.busy_s!r} -1 {self.count} {self.last}")
            self.log.write(f"{begin!r} {end!r}\n")
            return result

        return recorded

    def describe(self) -> str:
        padding = f"each inference padded to {self.config.inference_s * 1e3:g} ms by a busy-wait; " if self.config.inference_s else ""
        return (
            f"simulated {self.config.sensor} sensor tree ({padding}{self.config.idle_w:g} W idle, "
            f"{self.config.active_w:g} W while an inference runs): a test of the measurement, not a device figure"
        )


def read_config(root: str | os.PathLike) -> SimulationConfig | None:
    """The simulation config of a simulated tree, None for any other root."""
    path = Path(root) / SIM_DIR / CONFIG_NAME
    if not path.is_file():
        return None
    return SimulationConfig(**json.loads(path.read_text(encoding="utf-8")))


def activity_hook(root: str | os.PathLike) -> ActivityHook | None:
    """The hook ``edgesdk profile`` wraps inferences with under a simulated root; None elsewhere."""
    config = read_config(root)
    return ActivityHook(root, config) if config is not None else None


# ----------------------------------------------------------------------------------------------
# The device tree.


def _write(root: Path, relative: str, text: str | int | float) -> Path:
    path = root / relative.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n", encoding="utf-8")
    return path


_ARM_CPUINFO = "processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n"
_X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Simulated RAPL CPU\n"


def write_tree(root: Path, config: SimulationConfig) -> None:
    """The static files of a device with ``config.sensor`` (sensor files start at idle)."""
    if config.sensor in ("rapl", "nvml"):
        _write(root, "/proc/cpuinfo", _X86_CPUINFO)
        _write(root, "/proc/sys/kernel/arch", "x86_64")
    else:
        _write(root, "/proc/cpuinfo", _ARM_CPUINFO)
        _write(root, "/proc/sys/kernel/arch", "aarch64")
    if config.sensor == "rapl":
        zone = root / "sys/class/powercap/intel-rapl:0"
        _write(zone, "name", "package-0")
        _write(zone, "max_energy_range_uj", config.max_energy_range_uj)
        _write(zone, "energy_uj", 0)
    elif config.sensor == "ina3221":
        model = "NVIDIA Jetson Orin Nano Developer Kit (simulated)"
        (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
        (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
        (root / "proc/device-tree/compatible").write_bytes(b"nvidia,p3767-0005\x00nvidia,tegra234\x00")
        _write(root, "/etc/nv_tegra_release", "# R36 (release), REVISION: 3.0 (simulated)")
        hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
        _write(hwmon, "name", "ina3221")
        for channel, label in ((1, "VDD_IN"), (2, "VDD_CPU_GPU_CV"), (3, "VDD_SOC")):
            _write(hwmon, f"in{channel}_label", label)
            _write(hwmon, f"in{channel}_input", int(JETSON_BUS_MV))
            _write(hwmon, f"curr{channel}_input", 0)
            _write(hwmon, f"shunt{channel}_resistor", 5000)
        _write(hwmon, "update_interval", max(1, round(config.period_s * 1e3)))
        link = root / "sys/class/hwmon/hwmon1"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(hwmon, link)
        _write(root, "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", "schedutil")
    elif config.sensor == "nvml":
        _write(root, f"/{SIM_DIR}/nvml/energy_mj", 0)
        _write(root, f"/{SIM_DIR}/nvml/power_mw", round(config.idle_w * 1e3))
    else:
        _write(root, "/system/build.prop", "ro.build.version.release=14\nro.product.manufacturer=Simulated\n"
               "ro.product.model=Phone\nro.product.cpu.abi=arm64-v8a")
        battery = root / "sys/class/power_supply/battery"
        _write(battery, "type", "Battery")
        _write(battery, "status", "Discharging")
        _write(battery, "current_now", 0)
        _write(battery, "voltage_now", 0)
        _write(root, "/sys/class/power_supply/usb/type", "USB")
        _write(root, "/sys/class/power_supply/usb/online", int(config.usb_online))
    _write(root, f"/{SIM_DIR}/{CONFIG_NAME}", json.dumps(asdict(config)))


# ----------------------------------------------------------------------------------------------
# The simulator process.


class _Simulator:
    """Rewrites one sensor's files every ``config.period_s`` from the energy the trace has drawn."""

    def __init__(self, root: Path, config: SimulationConfig):
        import random

        self.root, self.config = root, config
        self.random = random.Random(config.seed)
        self.start = time.monotonic()
        self.last_time, self.last_energy = self.start, 0.0
        self.counter_j = 0.0  # what counters show: never decreasing

    def _energy_j(self, at: float, busy_s: float) -> float:
        return self.config.idle_w * (at - self.start) + self.config.extra_w * busy_s

    def tick(self) -> None:
        now = time.monotonic()
        activity = read_activity(self.root)
        # An inference's end is written a moment after its clock was read, so the previous tick
        # may have counted it as running a little too long: recount the previous instant with what
        # is known now (power readings), and never let a counter run backwards (RAPL would read a
        # drop as a wrap).
        energy = self._energy_j(now, activity.busy_until(now))
        busy_then = activity.busy_until_past(self.last_time)
        previous = self._energy_j(self.last_time, busy_then) if busy_then is not None else self.last_energy
        average_w = max(0.0, energy - previous) / max(now - self.last_time, 1e-9)
        self.counter_j = max(self.counter_j, energy)
        self.last_time, self.last_energy = now, energy
        getattr(self, f"_write_{self.config.sensor}")(self.counter_j, average_w)

    def _quantise(self, value: float, lsb: float) -> float:
        return round((value + self.random.gauss(0.0, lsb)) / lsb) * lsb

    def _write_rapl(self, energy_j: float, average_w: float) -> None:
        units = math.floor(energy_j / RAPL_ENERGY_UNIT_J)
        microjoules = int(units * RAPL_ENERGY_UNIT_J * 1e6)
        _replace_text(self.root / "sys/class/powercap/intel-rapl:0/energy_uj",
                      f"{microjoules % self.config.max_energy_range_uj}\n")

    def _write_ina3221(self, energy_j: float, average_w: float) -> None:
        hwmon = self.root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
        millivolts = self._quantise(JETSON_BUS_MV, INA3221_BUS_LSB_MV)
        milliamps = self._quantise(average_w / (millivolts * 1e-3) * 1e3, INA3221_CURRENT_LSB_MA)
        _replace_text(hwmon / "curr1_input", f"{int(milliamps)}\n")
        _replace_text(hwmon / "in1_input", f"{int(millivolts)}\n")

    def _write_nvml(self, energy_j: float, average_w: float) -> None:
        folder = self.root / SIM_DIR / "nvml"
        _replace_text(folder / "energy_mj", f"{int(energy_j * 1e3)}\n")
        _replace_text(folder / "power_mw", f"{round(self._quantise(average_w * 1e3, 1.0))}\n")

    def _write_android(self, energy_j: float, average_w: float) -> None:
        battery = self.root / "sys/class/power_supply/battery"
        volts = BATTERY_VOLTS + self.random.gauss(0.0, 0.002)
        amps = average_w / volts + self.random.gauss(0.0, 0.002)  # fuel gauges are noisy to a few mA
        if self.config.android_quirks == "abi":
            current, voltage = -round(amps * 1e6), round(volts * 1e6)  # µA, negative: discharging
        else:
            current, voltage = round(amps * 1e3), round(volts * 1e3)  # mA positive, mV
        _replace_text(battery / "current_now", f"{current}\n")
        _replace_text(battery / "voltage_now", f"{voltage}\n")

    def run(self) -> None:
        due = time.monotonic()
        ready = self.root / SIM_DIR / "running"
        while True:
            if not (self.config.stuck and ready.exists()):
                self.tick()
            if not ready.exists():
                ready.write_text(str(os.getpid()), encoding="ascii")
            due += self.config.period_s
            time.sleep(max(0.0, due - time.monotonic()))
            due = max(due, time.monotonic() - self.config.period_s)  # after a stall, do not burst


class SimulatedNvml:
    """Stands in for the ``pynvml`` module, reading a simulated tree's NVML files.

    Tests put it where ``edgesdk.devices.sensors.nvml`` imports pynvml from (the module
    boundary: ``_import_pynvml``), since NVML is a library, not a file tree.
    """

    class NVMLError(Exception):
        pass

    def __init__(self, root: str | os.PathLike):
        self.folder = Path(root) / SIM_DIR / "nvml"
        self.mode = (read_config(root) or SimulationConfig("nvml")).nvml_mode

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        if not self.folder.is_dir():
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        return index

    def nvmlDeviceGetName(self, handle: int) -> str:  # noqa: N802
        return "Simulated GPU"

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:  # noqa: N802
        if self.mode != "energy":
            raise self.NVMLError("Not Supported")
        return int((self.folder / "energy_mj").read_text())

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:  # noqa: N802
        return int((self.folder / "power_mw").read_text())


class SimulatedDevice:
    """A simulated device tree under ``root`` and the process that drives its sensor.

    Use as a context manager: the simulator runs inside the ``with`` block.
    """

    def __init__(self, root: str | os.PathLike, config: SimulationConfig):
        self.root = Path(root)
        self.config = config
        self._process: subprocess.Popen | None = None
        write_tree(self.root, config)

    def start(self) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", "edgesdk.devices.sensors.simulate", str(self.root)],
                                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        deadline = time.monotonic() + 30
        while not (self.root / SIM_DIR / "running").exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.config.sensor} simulator did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def __enter__(self) -> SimulatedDevice:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def activity(self) -> Activity:
        return read_activity(self.root)

    def inference_durations_s(self) -> list[float]:
        """How long each inference ran, in order, from the hook's log."""
        path = self.root / SIM_DIR / LOG_NAME
        lines = path.read_text(encoding="ascii").split("\n") if path.is_file() else []
        return [float(end) - float(begin) for begin, end in (line.split() for line in lines if line.strip())]

    def true_net_energy_per_window_j(self, windows: int, inferences_per_window: int) -> list[float]:
        """The true net energy per inference of each of the last ``windows`` windows of
        ``inferences_per_window`` inferences (a profile's ``windows`` and ``inferences_per_window``)."""
        durations = self.inference_durations_s()[-windows * inferences_per_window:]
        if len(durations) < windows * inferences_per_window:
            raise RuntimeError(f"only {len(durations)} inferences ran, not {windows} x {inferences_per_window}")
        return [self.config.extra_w * sum(durations[i:i + inferences_per_window]) / inferences_per_window
                for i in range(0, len(durations), inferences_per_window)]

    def true_net_energy_per_inference_j(self, last: int | None = None) -> float:
        """(active_w - idle_w) x mean duration of the inferences (the ``last`` ones, e.g. those of
        the energy windows), from the hook's log: the answer a measurement must recover."""
        durations = self.inference_durations_s()
        durations = durations[-last:] if last else durations
        if not durations:
            raise RuntimeError("no inference ran under the simulation")
        return self.config.extra_w * sum(durations) / len(durations)


def main(argv: list[str] | None = None) -> None:
    arguments = sys.argv[1:] if argv is None else argv
    root = Path(arguments[0])
    config = read_config(root)
    if config is None:
        raise SystemExit(f"{root} is not a simulated tree (no {SIM_DIR}/{CONFIG_NAME})")
    _Simulator(root, config).run()


if __name__ == "__main__":
    main()
