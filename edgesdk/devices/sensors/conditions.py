"""What else can move an energy figure: clocks, governors, temperature, a charging cable.

``read_conditions(root)`` takes a snapshot of what the device exposes (each item only where its
file exists); ``condition_flags(snapshots)`` compares the snapshots taken during a measurement
and says, in sentences, what moved. Sources:

- CPU frequency governor and current clock: ``/sys/devices/system/cpu/cpu*/cpufreq/``
  (``scaling_governor``, ``scaling_cur_freq`` in kHz);
- temperatures: ``/sys/class/thermal/thermal_zone*/temp`` (millidegrees C) and ``type``;
- Jetson power mode: ``/var/lib/nvpmodel/status`` (``pmode:NNNN``, what ``nvpmodel -q`` reads);
  ``jetson_clocks`` pins the clocks' minimum to their maximum, which shows as
  ``scaling_min_freq == scaling_max_freq``;
- Android: a USB supply that is ``online`` (a cable in) while the battery is measured.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgesdk.devices.sensors.base import read_number, read_text, sysfs_path

# A clock that moves by more than this fraction, or a temperature that rises by more than this
# many degrees, during a measurement is flagged.
CLOCK_CHANGE_FRACTION = 0.10
TEMPERATURE_RISE_C = 5.0


@dataclass(frozen=True)
class Conditions:
    """One snapshot: per-CPU governor and clock (kHz), per-zone temperature (°C), power mode, USB."""

    governors: dict[str, str] = field(default_factory=dict)
    clocks_khz: dict[str, float] = field(default_factory=dict)
    clocks_pinned: bool | None = None
    temperatures_c: dict[str, float] = field(default_factory=dict)
    power_mode: str | None = None
    usb_online: bool | None = None

    def as_dict(self) -> dict:
        return {
            "governors": dict(self.governors),
            "clocks_khz": dict(self.clocks_khz),
            "clocks_pinned": self.clocks_pinned,
            "temperatures_c": dict(self.temperatures_c),
            "power_mode": self.power_mode,
            "usb_online": self.usb_online,
        }


def _optional_text(path: Path) -> str | None:
    try:
        return read_text(path)
    except OSError:
        return None


def _optional_number(path: Path) -> float | None:
    try:
        return read_number(path)
    except (OSError, ValueError):
        return None


def read_conditions(root: str | os.PathLike = "/") -> Conditions:
    """What the device under ``root`` exposes now (missing files are simply left out)."""
    base = Path(root)
    governors: dict[str, str] = {}
    clocks: dict[str, float] = {}
    pinned = []
    for cpufreq in sorted(sysfs_path(base, "/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        cpu = cpufreq.parent.name
        governor = _optional_text(cpufreq / "scaling_governor")
        if governor is not None:
            governors[cpu] = governor
        clock = _optional_number(cpufreq / "scaling_cur_freq")
        if clock is not None:
            clocks[cpu] = clock
        low, high = _optional_number(cpufreq / "scaling_min_freq"), _optional_number(cpufreq / "scaling_max_freq")
        if low is not None and high is not None:
            pinned.append(low == high)
    temperatures: dict[str, float] = {}
    for zone in sorted(sysfs_path(base, "/sys/class/thermal").glob("thermal_zone*")):
        millidegrees = _optional_number(zone / "temp")
        if millidegrees is not None:
            temperatures[_optional_text(zone / "type") or zone.name] = millidegrees / 1000
    mode = _optional_text(sysfs_path(base, "/var/lib/nvpmodel/status"))
    usb = None
    for supply in sorted(sysfs_path(base, "/sys/class/power_supply").glob("*")):
        if (_optional_text(supply / "type") or "").startswith("USB"):
            online = _optional_number(supply / "online")
            if online is not None:
                usb = bool(usb) or online > 0
    return Conditions(governors, clocks, (all(pinned) if pinned else None), temperatures, mode, usb)


def condition_flags(snapshots: list[Conditions]) -> list[tuple[str, str]]:
    """(flag, sentence) for what moved between ``snapshots`` (taken in order during a measurement)."""
    if not snapshots:
        return []
    flags: list[tuple[str, str]] = []
    first, last = snapshots[0], snapshots[-1]
    if first.governors != last.governors:
        flags.append(("governor-changed", f"CPU frequency governor changed during the run: {first.governors} -> {last.governors}"))
    if first.power_mode != last.power_mode:
        flags.append(("power-mode-changed", f"Jetson power mode changed during the run: {first.power_mode} -> {last.power_mode}"))
    if first.clocks_pinned != last.clocks_pinned:
        flags.append(("clocks-pinning-changed", "jetson_clocks-style pinning (min = max clock) changed during the run"))
    for cpu in first.clocks_khz:
        values = [s.clocks_khz[cpu] for s in snapshots if cpu in s.clocks_khz]
        if values and max(values) > (1 + CLOCK_CHANGE_FRACTION) * min(values):
            flags.append(("clocks-moved", f"{cpu} clock moved between {min(values) / 1e3:.0f} and {max(values) / 1e3:.0f} MHz "
                                          "during the run (pin the clocks for steadier figures)"))
            break
    for zone in first.temperatures_c:
        values = [s.temperatures_c[zone] for s in snapshots if zone in s.temperatures_c]
        if values and values[-1] - values[0] > TEMPERATURE_RISE_C:
            flags.append(("temperature-rose", f"{zone} rose from {values[0]:.1f} to {values[-1]:.1f} °C during the run"))
    if any(s.usb_online for s in snapshots):
        flags.append(("usb-charging", "a USB supply is online: a cable may feed the phone, so battery current "
                                      "understates its power; unplug it"))
    return flags
