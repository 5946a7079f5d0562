"""Whole-phone power from the Android battery fuel gauge (``/sys/class/power_supply``).

The kernel ABI (Documentation/ABI/testing/sysfs-class-power) says ``current_now`` is in
microamps, positive when current enters the battery, and ``voltage_now`` in microvolts. Phones
disagree in practice:

- sign: Pixel phones follow the ABI (negative while discharging); many Qualcomm- and
  Samsung-based phones report discharge as positive. The sign is therefore not trusted: the
  supply's ``status`` decides whether the phone runs on battery, and the magnitude is used.
- units: some vendors report milliamps and millivolts. A running phone draws more than 10 mA
  (the screen alone draws more), so ``|current_now| < 10000`` can only be milliamps; a Li-ion
  cell sits between 3 and 4.5 V, so ``voltage_now < 100000`` can only be millivolts. The units
  are decided on the first reading and reported; callers may force them.

While the phone is plugged in (``Charging``, ``Full``, ``Not charging``) the battery current is
the charger's business, not the phone's power draw: the sensor is then unavailable.
"""
from __future__ import annotations

import os
from pathlib import Path

from edgesdk.devices.sensors.base import Sensor, read_number, read_text, sysfs_path, unreadable_reason
from edgesdk.errors import MeasurementUnavailable, UsageError

POWER_SUPPLY = "/sys/class/power_supply"
_CURRENT_SCALES = {"uA": 1e-6, "mA": 1e-3}
_VOLTAGE_SCALES = {"uV": 1e-6, "mV": 1e-3}
# Below this magnitude a current reading must be in mA (see the module docstring).
_MILLIAMP_CEILING = 10_000
_MILLIVOLT_CEILING = 100_000


def guess_current_unit(raw: float) -> str:
    """``"mA"`` when ``|raw|`` is too small to be microamps of a running phone, else ``"uA"``."""
    return "mA" if abs(raw) < _MILLIAMP_CEILING else "uA"


def guess_voltage_unit(raw: float) -> str:
    """``"mV"`` when ``raw`` is too small to be microvolts of a Li-ion cell, else ``"uV"``."""
    return "mV" if abs(raw) < _MILLIVOLT_CEILING else "uV"


class AndroidBatterySensor(Sensor):
    """Phone power in watts: ``|current_now| x voltage_now`` of the battery, while discharging.

    Args:
        root: file-system root.
        supply: power-supply name (default: the first of type ``Battery``, ``battery`` first).
        current_unit, voltage_unit: force ``"uA"``/``"mA"`` and ``"uV"``/``"mV"`` instead of
            deciding from the first reading.
    """

    name = "android"
    label = "measured:android-battery"
    quantity = "power"
    nominal_update_s = 1.0  # fuel gauges refresh current_now about once a second, some slower
    boundary = "the whole phone from its battery: SoC, DRAM, screen, radios and everything else that is on"

    def __init__(
        self,
        root: str | os.PathLike = "/",
        supply: str | None = None,
        current_unit: str | None = None,
        voltage_unit: str | None = None,
    ):
        super().__init__(root)
        self._update_s: float | None = None
        if current_unit is not None and current_unit not in _CURRENT_SCALES:
            raise UsageError(f"current_unit must be one of {sorted(_CURRENT_SCALES)}, not {current_unit!r}")
        if voltage_unit is not None and voltage_unit not in _VOLTAGE_SCALES:
            raise UsageError(f"voltage_unit must be one of {sorted(_VOLTAGE_SCALES)}, not {voltage_unit!r}")
        self.supply = supply
        self.current_unit = current_unit
        self.voltage_unit = voltage_unit
        self.discharge_sign: str = "unknown"

    def _battery_dir(self) -> Path | None:
        base = sysfs_path(self.root, POWER_SUPPLY)
        if self.supply:
            path = base / self.supply
            return path if path.is_dir() else None
        if not base.is_dir():
            return None
        batteries = []
        for path in sorted(base.iterdir()):
            try:
                if read_text(path / "type") == "Battery":
                    batteries.append(path)
            except OSError:
                continue
        batteries.sort(key=lambda p: p.name != "battery")
        return batteries[0] if batteries else None

    def available(self) -> tuple[bool, str]:
        battery = self._battery_dir()
        if battery is None:
            where = sysfs_path(self.root, POWER_SUPPLY)
            return False, f"no battery power supply under {where}"
        for attribute in ("current_now", "voltage_now"):
            path = battery / attribute
            try:
                read_number(path)
            except OSError as error:
                reason = unreadable_reason(path, error)
                if isinstance(error, PermissionError):
                    reason += " (apps may be denied by SELinux; run through adb shell)"
                return False, reason
            except ValueError as error:
                return False, str(error)
        status = self._status(battery)
        if status in ("Charging", "Full", "Not charging"):
            return False, (
                f"battery status is {status!r}: plugged in, so battery current is not the "
                "phone's power draw; unplug the phone"
            )
        return True, f"battery {battery.name} (status {status or 'unknown'})"

    @staticmethod
    def _status(battery: Path) -> str:
        try:
            return read_text(battery / "status")
        except OSError:
            return ""

    def update_interval_s(self) -> float:
        """Measured once (how often the reading changes, watched for up to 4.0 s): devices differ
        widely; ``nominal_update_s`` when it did not change twice."""
        if self._update_s is None:
            self._update_s = self.probe_update_interval_s(4.0, poll_s=0.01) or self.nominal_update_s
        return self._update_s

    def describe(self) -> dict:
        battery = self._battery_dir()
        return {
            "sensor": self.name,
            "label": self.label,
            "quantity": "power",
            "supply": battery.name if battery else None,
            "status": self._status(battery) if battery else None,
            "current_unit": self.current_unit or "decided on first reading",
            "voltage_unit": self.voltage_unit or "decided on first reading",
            "discharge_sign": self.discharge_sign,
            "scope": "whole phone, from the battery (screen and radios included)",
        }

    def read_power_w(self) -> float:
        battery = self._battery_dir()
        if battery is None:
            raise MeasurementUnavailable("android energy measurement unavailable: no battery supply")
        try:
            current = read_number(battery / "current_now")
            voltage = read_number(battery / "voltage_now")
        except OSError as error:
            raise MeasurementUnavailable(f"android energy measurement unavailable: {error}") from None
        if self.current_unit is None:
            self.current_unit = guess_current_unit(current)
        if self.voltage_unit is None:
            self.voltage_unit = guess_voltage_unit(voltage)
        if current != 0 and self._status(battery) == "Discharging":
            self.discharge_sign = "negative (kernel ABI)" if current < 0 else "positive (vendor convention)"
        amps = abs(current) * _CURRENT_SCALES[self.current_unit]
        volts = voltage * _VOLTAGE_SCALES[self.voltage_unit]
        return amps * volts
