"""Intel/AMD RAPL energy counters through the Linux powercap interface.

Kernel interface (Documentation/power/powercap/powercap.rst): each zone is a directory
``/sys/class/powercap/intel-rapl:N`` (package ``N``) with sub-zones ``intel-rapl:N:M`` (``core``,
``uncore``, ``dram``), each holding

- ``name``: ``package-0``, ``core``, ``uncore``, ``dram``, ``psys``;
- ``energy_uj``: a cumulative counter in microjoules that wraps to zero after
  ``max_energy_range_uj``;
- ``max_energy_range_uj``: the counter's range.

AMD Zen CPUs expose their package domain through the same driver (Linux >= 5.8). Since Linux
5.10, ``energy_uj`` is readable by root only (CVE-2020-8694, the "PLATYPUS" side channel), so
permission denied is the common case for ordinary users.

Which domains are summed: every ``package-*`` zone, plus ``dram`` zones where the platform
exposes them (servers). ``core`` and ``uncore`` are parts of the package and would be counted
twice; ``psys`` (whole SoC on some laptops) overlaps the package and is left out unless asked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edgesdk.devices.sensors.base import Sensor, read_number, read_text, sysfs_path, unreadable_reason
from edgesdk.errors import MeasurementUnavailable, UsageError

POWERCAP = "/sys/class/powercap"
DOMAIN_KINDS = ("package", "dram", "psys", "core", "uncore")


@dataclass
class _Zone:
    """One RAPL zone and the state needed to undo its counter's wrap-around."""

    path: Path
    name: str
    max_range_uj: float
    last_raw_uj: float | None = None
    accumulated_uj: float = 0.0

    @property
    def kind(self) -> str:
        return "package" if self.name.startswith("package") else self.name


def unwrap_delta_uj(previous_uj: float, current_uj: float, max_range_uj: float) -> float:
    """Microjoules between two readings of a counter that wraps after ``max_range_uj``.

    Assumes at most one wrap between readings (at 100 W a 2^32-µJ-class range takes minutes to
    wrap; the sampler reads far more often than that).
    """
    delta = current_uj - previous_uj
    if delta < 0:
        delta += max_range_uj
    return delta


class RaplSensor(Sensor):
    """RAPL package (+ DRAM) energy, in joules since the sensor was opened.

    Args:
        root: file-system root (tests pass a fake tree).
        domains: which zone kinds to sum, from ``package``, ``dram``, ``psys``, ``core``,
            ``uncore``. Default: package and dram.
    """

    name = "rapl"
    label = "measured:rapl"
    quantity = "energy"
    nominal_update_s = 0.001  # the counters advance about every millisecond

    @property
    def boundary(self) -> str:  # type: ignore[override]
        zones = self._discover()
        dram = any(z.kind == "dram" for z in zones)
        return ("the CPU package (cores, caches, uncore, integrated GPU)" + (" and DRAM" if dram else ", not DRAM")
                + "; not the rest of the board, discrete GPUs, fans or the power supply")

    def __init__(self, root: str | os.PathLike = "/", domains: Sequence[str] = ("package", "dram")):
        super().__init__(root)
        unknown = sorted(set(domains) - set(DOMAIN_KINDS))
        if unknown:
            raise UsageError(f"unknown RAPL domains {unknown}; choose from {list(DOMAIN_KINDS)}")
        self.domains = tuple(domains)
        self._zones: list[_Zone] | None = None
        self._problem = ""
        self.wraps = 0

    def _discover(self) -> list[_Zone]:
        """Zones of the chosen kinds; records why there are none in ``self._problem``."""
        if self._zones is not None:
            return self._zones
        base = sysfs_path(self.root, POWERCAP)
        zones: list[_Zone] = []
        if not base.is_dir():
            self._problem = (
                f"no powercap interface at {base} (not an Intel/AMD CPU, a virtual machine, "
                "or the intel_rapl driver is not loaded)"
            )
            self._zones = zones
            return zones
        # intel-rapl:N and intel-rapl:N:M; "intel-rapl" itself is the control type, and the
        # intel-rapl-mmio zones repeat the package domain through another interface.
        candidates = sorted(p for p in base.iterdir() if p.name.startswith("intel-rapl:"))
        for path in candidates:
            try:
                name = read_text(path / "name")
                max_range = read_number(path / "max_energy_range_uj")
            except (OSError, ValueError) as error:
                self._problem = f"unreadable RAPL zone {path}: {error}"
                continue
            zone = _Zone(path=path, name=name, max_range_uj=max_range)
            if zone.kind in self.domains:
                zones.append(zone)
        if not zones and not self._problem:
            self._problem = f"no RAPL zone of kinds {list(self.domains)} under {base}"
        self._zones = zones
        return zones

    def available(self) -> tuple[bool, str]:
        zones = self._discover()
        if not zones:
            return False, self._problem
        for zone in zones:
            counter = zone.path / "energy_uj"
            try:
                read_number(counter)
            except OSError as error:
                reason = unreadable_reason(counter, error)
                if isinstance(error, PermissionError):
                    reason += (
                        " (root-only since Linux 5.10, CVE-2020-8694: run as root or "
                        f"`sudo chmod a+r {Path(POWERCAP) / zone.path.name / 'energy_uj'}`)"
                    )
                return False, reason
            except ValueError as error:
                return False, str(error)
        names = ", ".join(f"{zone.path.name} ({zone.name})" for zone in zones)
        return True, f"RAPL zones {names}"

    def describe(self) -> dict:
        zones = self._discover()
        return {
            "sensor": self.name,
            "label": self.label,
            "quantity": "energy counter",
            "domains": [
                {"zone": zone.path.name, "name": zone.name, "max_energy_range_uj": zone.max_range_uj}
                for zone in zones
            ],
            "scope": "CPU package(s)" + (" + DRAM" if any(z.kind == "dram" for z in zones) else ""),
            "path": str(sysfs_path(self.root, POWERCAP)),
        }

    def read_domains_j(self) -> dict[str, float]:
        """Joules per zone since the first reading, wrap-around undone."""
        zones = self._discover()
        if not zones:
            raise MeasurementUnavailable(f"rapl energy measurement unavailable: {self._problem}")
        result = {}
        for zone in zones:
            try:
                raw = read_number(zone.path / "energy_uj")
            except OSError as error:
                raise MeasurementUnavailable(
                    f"rapl energy measurement unavailable: {unreadable_reason(zone.path / 'energy_uj', error)}"
                ) from None
            if zone.last_raw_uj is not None:
                self.wraps += raw < zone.last_raw_uj
                zone.accumulated_uj += unwrap_delta_uj(zone.last_raw_uj, raw, zone.max_range_uj)
            zone.last_raw_uj = raw
            result[f"{zone.path.name}:{zone.name}"] = zone.accumulated_uj * 1e-6
        return result

    def read_energy_j(self) -> float:
        return sum(self.read_domains_j().values())

    def counter_wraps(self) -> int:
        return self.wraps
