"""Jetson on-module power monitors (TI INA3221, INA238) through hwmon or the older iio driver.

Two kernel interfaces exist:

- hwmon (mainline ``ina3221`` driver; Jetson Linux R35+ on Orin, and ``ina238``):
  ``/sys/bus/i2c/drivers/ina3221/<bus>-<addr>/hwmon/hwmonN/`` (also listed in
  ``/sys/class/hwmon``) with ``in[123]_label`` (rail name), ``in[123]_input`` (bus voltage, mV),
  ``curr[123]_input`` (mA). The INA3221 driver has no power file: power is voltage x current.
  ``ina238`` adds ``power1_input`` in microwatts (Documentation/hwmon/ina3221.rst, ina238.rst).
- iio (NVIDIA's ``ina3221x`` driver, Jetson Linux R32 on Nano/TX2/Xavier):
  ``/sys/bus/i2c/drivers/ina3221x/<bus>-<addr>/iio:deviceN/`` with ``rail_name_<k>``,
  ``in_power<k>_input`` (mW), ``in_current<k>_input`` (mA), ``in_voltage<k>_input`` (mV).

Total board power is the module's *input* rail, never a CPU or GPU rail: those are parts of it.
The rail map below says, per module, which rail(s) make up the input. Sources: NVIDIA Jetson
Linux Developer Guide, "Platform Power and Performance" (R32.6 Nano: POM_5V_IN, POM_5V_GPU,
POM_5V_CPU at 6-0040; R35/R36 Orin Nano/NX: VDD_IN, VDD_CPU_GPU_CV, VDD_SOC at 1-0040; AGX Orin:
VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0 at 1-0040 and VDDQ_VDD2_1V8AO at 1-0041). AGX Orin has no
input-rail monitor; its rails branch in parallel from the module input (as on AGX Xavier, whose
design guide draws them so), so their sum is the module's power, without the carrier board.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edgesdk.devices.sensors.base import Sensor, read_number, read_text, sysfs_path, unreadable_reason
from edgesdk.errors import MeasurementUnavailable

logger = logging.getLogger(__name__)

# module profile -> (rails summed for total board power, what that total covers)
INPUT_RAILS: dict[str, tuple[tuple[str, ...], str]] = {
    "jetson-nano": (("POM_5V_IN",), "module input rail POM_5V_IN"),
    "jetson-orin-nano": (("VDD_IN",), "module input rail VDD_IN"),
    "jetson-agx-orin": (
        ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"),
        "sum of the module rails (AGX Orin has no input-rail monitor; carrier board excluded)",
    ),
}
# Input-rail names of other Jetson modules (TX1/TX2/Xavier NX docs), tried when the module is
# not in the map above. CPU/GPU/SOC rails are never taken as a total.
GENERIC_INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "5V_IN", "VIN")

HWMON_CHIPS = ("ina3221", "ina238", "ina219", "ina226", "ina230", "ina231")


@dataclass(frozen=True)
class Rail:
    """One monitored channel: where its readings are and in which units."""

    name: str
    device: str  # "<bus>-<addr>" of the monitor, e.g. "1-0040"
    interface: str  # "hwmon" or "iio"
    voltage_path: Path | None
    current_path: Path | None
    power_path: Path | None
    power_scale_w: float  # watts per unit of power_path

    def power_w(self) -> float:
        """This rail's power: the power file where there is one, else voltage x current."""
        if self.power_path is not None:
            return read_number(self.power_path) * self.power_scale_w
        if self.voltage_path is None or self.current_path is None:
            raise MeasurementUnavailable(f"rail {self.name} has neither power nor voltage and current")
        # mV x mA = µW
        return read_number(self.voltage_path) * read_number(self.current_path) * 1e-6


def _device_name(path: Path) -> str:
    """``<bus>-<addr>`` of a hwmon or iio directory (its parent device)."""
    resolved = path.resolve()
    for part in reversed(resolved.parts):
        if re.fullmatch(r"\d+-00[0-9a-fA-F]{2}", part):
            return part
    device = path / "device"
    if device.exists():
        return device.resolve().name
    return resolved.name


def _hwmon_rails(root: Path) -> list[Rail]:
    rails: list[Rail] = []
    seen: set[Path] = set()
    candidates = list(sysfs_path(root, "/sys/class/hwmon").glob("hwmon*"))
    for driver in ("ina3221", "ina238"):
        candidates += list(sysfs_path(root, f"/sys/bus/i2c/drivers/{driver}").glob("*/hwmon/hwmon*"))
    for directory in sorted(candidates):
        resolved = directory.resolve()
        if resolved in seen or not (directory / "name").exists():
            continue
        seen.add(resolved)
        try:
            chip = read_text(directory / "name")
        except OSError:
            continue
        if chip not in HWMON_CHIPS:
            continue
        device = _device_name(directory)
        channels = sorted(
            {int(m.group(1)) for p in directory.iterdir() if (m := re.fullmatch(r"curr(\d+)_input", p.name))}
        )
        for channel in channels:
            if chip == "ina3221" and channel > 3:
                # curr4_input is the sum of the three channels (newer kernels), not a rail.
                continue
            label_path = directory / f"in{channel}_label"
            label = read_text(label_path) if label_path.exists() else f"{chip}:{device}:{channel}"
            enable_path = directory / f"in{channel}_enable"
            disabled = enable_path.exists() and read_text(enable_path) == "0"
            # AGX Orin's second monitor has channels marked NC or disabled (empty label).
            if not label or label.upper() == "NC" or disabled:
                continue
            power = directory / f"power{channel}_input"
            rails.append(
                Rail(
                    name=label,
                    device=device,
                    interface="hwmon",
                    voltage_path=directory / f"in{channel}_input",
                    current_path=directory / f"curr{channel}_input",
                    power_path=power if power.exists() else None,
                    power_scale_w=1e-6,  # hwmon power is in microwatts
                )
            )
    return rails


def _iio_rails(root: Path) -> list[Rail]:
    rails: list[Rail] = []
    base = sysfs_path(root, "/sys/bus/i2c/drivers/ina3221x")
    for directory in sorted(base.glob("*/iio:device*")):
        device = _device_name(directory.parent)
        for name_file in sorted(directory.glob("rail_name_*")):
            index = name_file.name.rsplit("_", 1)[1]
            try:
                label = read_text(name_file)
            except OSError:
                continue
            if label.upper() == "NC":
                continue
            power = directory / f"in_power{index}_input"
            rails.append(
                Rail(
                    name=label,
                    device=device,
                    interface="iio",
                    voltage_path=directory / f"in_voltage{index}_input",
                    current_path=directory / f"in_current{index}_input",
                    power_path=power if power.exists() else None,
                    power_scale_w=1e-3,  # the iio driver reports milliwatts
                )
            )
    return rails


def discover_rails(root: str | os.PathLike = "/") -> list[Rail]:
    """Every power-monitor channel under ``root``: hwmon first, then the old iio driver."""
    base = Path(root)
    return _hwmon_rails(base) + _iio_rails(base)


class Ina3221Sensor(Sensor):
    """Total board power of a Jetson from its INA3221/INA238 monitors, in watts.

    Args:
        root: file-system root.
        module: device profile name (``jetson-nano``, ``jetson-orin-nano``, ``jetson-agx-orin``);
            detected from ``root`` when None.
        rails: rail names to sum instead of the module's input rail(s).
    """

    name = "ina3221"
    label = "measured:ina3221"
    quantity = "power"
    # Conversion time x averaged samples x channels; the hwmon driver's update_interval says it.
    nominal_update_s = 0.01

    @property
    def boundary(self) -> str:  # type: ignore[override]
        _, scope, problem = self._selection()
        return (f"{scope or problem}: the Jetson module (SoC, its DRAM and on-module power stages), "
                "not the carrier board, USB devices, fan or display")

    def update_interval_s(self) -> float:
        """``update_interval`` (ms) of the hwmon monitor of the first chosen rail, else nominal."""
        chosen, _, _ = self._selection()
        for rail in chosen:
            if rail.interface == "hwmon" and rail.current_path is not None:
                path = rail.current_path.parent / "update_interval"
                try:
                    return read_number(path) * 1e-3
                except (OSError, ValueError):
                    break
        return self.nominal_update_s

    def __init__(
        self,
        root: str | os.PathLike = "/",
        module: str | None = None,
        rails: Sequence[str] | None = None,
    ):
        super().__init__(root)
        if module is None:
            from edgesdk.devices.detect import detect_device

            module = detect_device(self.root).profile.name
        self.module = module
        self.requested_rails = tuple(rails) if rails else None
        self._all: list[Rail] | None = None

    def all_rails(self) -> list[Rail]:
        if self._all is None:
            self._all = discover_rails(self.root)
        return self._all

    def _selection(self) -> tuple[list[Rail], str, str]:
        """(chosen rails, scope sentence, problem) for this module."""
        rails = self.all_rails()
        if not rails:
            return [], "", (
                "no INA3221/INA238 power monitor under /sys/class/hwmon or "
                "/sys/bus/i2c/drivers/ina3221x (not a Jetson, or a module without monitors "
                "such as the Jetson Nano 2GB)"
            )
        by_name = {rail.name: rail for rail in rails}
        if self.requested_rails:
            wanted, scope = self.requested_rails, "rails chosen by the caller: " + " + ".join(self.requested_rails)
        elif self.module in INPUT_RAILS:
            wanted, scope = INPUT_RAILS[self.module]
        else:
            present = [name for name in GENERIC_INPUT_RAILS if name in by_name]
            if not present:
                return [], "", (
                    f"no input rail among the monitored rails {sorted(by_name)} and no rail map "
                    f"for module {self.module!r}; a CPU or GPU rail is not board power"
                )
            wanted, scope = (present[0],), f"input rail {present[0]}"
        missing = [name for name in wanted if name not in by_name]
        if missing:
            return [], "", f"rails {missing} not found; the monitors list {sorted(by_name)}"
        return [by_name[name] for name in wanted], scope, ""

    def available(self) -> tuple[bool, str]:
        chosen, scope, problem = self._selection()
        if problem:
            return False, problem
        for rail in chosen:
            try:
                rail.power_w()
            except OSError as error:
                path = rail.power_path or rail.current_path or Path("?")
                return False, unreadable_reason(path, error)
            except (ValueError, MeasurementUnavailable) as error:
                return False, str(error)
        return True, scope

    def describe(self) -> dict:
        chosen, scope, problem = self._selection()
        return {
            "sensor": self.name,
            "label": self.label,
            "quantity": "power",
            "module": self.module,
            "scope": scope or problem,
            "rails_summed": [rail.name for rail in chosen],
            "rails_monitored": [
                {
                    "name": rail.name,
                    "device": rail.device,
                    "interface": rail.interface,
                    "power_from": "power file" if rail.power_path else "voltage x current",
                }
                for rail in self.all_rails()
            ],
        }

    def read_rails_w(self) -> dict[str, float]:
        """Power of every monitored rail that can be read now, in watts."""
        powers = {}
        for rail in self.all_rails():
            try:
                powers[rail.name] = rail.power_w()
            except (OSError, ValueError, MeasurementUnavailable) as error:
                logger.debug("rail %s unreadable: %s", rail.name, error)
        return powers

    def read_power_w(self) -> float:
        chosen, _, problem = self._selection()
        if problem:
            raise MeasurementUnavailable(f"ina3221 energy measurement unavailable: {problem}")
        return sum(rail.power_w() for rail in chosen)
