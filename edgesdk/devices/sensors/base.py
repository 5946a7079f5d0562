"""What every power sensor offers, and small helpers for reading sysfs.

A sensor reads one kernel interface and reports one quantity:

- ``"energy"``: a cumulative counter, read with ``read_energy_j()`` (joules since the sensor was
  opened, wrap-around already undone), e.g. RAPL, NVML's total-energy counter;
- ``"power"``: an instantaneous reading, ``read_power_w()`` (watts), e.g. INA3221, a battery.

``read()`` returns whichever the sensor has. ``available()`` says whether it can be read here and,
when not, why (missing, no permission, plugged in...), in a sentence a user can act on.
``label`` is the provenance string every figure measured with it carries, e.g. ``measured:rapl``.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path

from edgesdk.errors import MeasurementUnavailable


class Sensor(ABC):
    """Base class of the power sensors.

    Subclasses set ``name`` (the ``--energy`` choice), ``label`` and ``quantity``, and implement
    ``available``, ``describe`` and one of ``read_energy_j`` / ``read_power_w``.
    """

    name: str = ""
    label: str = ""
    quantity: str = "power"
    # How often the interface itself updates, seconds (its datasheet or driver figure): windows
    # shorter than a few updates cannot resolve anything. ``update_interval_s`` may read better.
    nominal_update_s: float = 0.001
    # What the figure covers, in a sentence (the measurement boundary).
    boundary: str = ""

    def __init__(self, root: str | os.PathLike = "/"):
        self.root = Path(root)

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """``(True, what will be read)`` or ``(False, why not)``."""

    @abstractmethod
    def describe(self) -> dict:
        """Facts about what is read (paths, domains or rails, units), for reports."""

    def read_energy_j(self) -> float:
        """Joules accumulated since the sensor was opened (energy sensors only)."""
        raise MeasurementUnavailable(f"sensor {self.name} reports power, not an energy counter")

    def read_power_w(self) -> float:
        """Instantaneous power in watts (power sensors only)."""
        raise MeasurementUnavailable(f"sensor {self.name} reports an energy counter, not power")

    def update_interval_s(self) -> float:
        """The sensor's own update interval, seconds (the driver's figure where it exposes one)."""
        return self.nominal_update_s

    def probe_update_interval_s(self, limit_s: float, poll_s: float = 0.005, changes: int = 3) -> float | None:
        """The interval between changes of the reading, watched for at most ``limit_s``.

        None when the reading changed fewer than twice (too slow, or a stuck sensor).
        """
        import time

        seen: list[float] = []
        last = self.read()
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline and len(seen) < changes + 1:
            time.sleep(poll_s)
            value = self.read()
            if value != last:
                seen.append(time.monotonic())
                last = value
        if len(seen) < 2:
            return None
        gaps = sorted(b - a for a, b in zip(seen, seen[1:]))
        return gaps[len(gaps) // 2]

    def counter_wraps(self) -> int:
        """How many times an energy counter wrapped (undone) since the sensor was opened."""
        return 0

    def read(self) -> float:
        """The sensor's quantity: joules (energy counters) or watts (power sensors)."""
        return self.read_energy_j() if self.quantity == "energy" else self.read_power_w()

    def require(self) -> None:
        """Raise MeasurementUnavailable with the reason when the sensor cannot be read."""
        usable, reason = self.available()
        if not usable:
            raise MeasurementUnavailable(f"{self.name} energy measurement unavailable: {reason}")

    def close(self) -> None:
        """Release what the sensor holds (nothing, for sysfs sensors)."""


def sysfs_path(root: Path, absolute: str) -> Path:
    """``absolute`` (a path such as ``/sys/class/powercap``) placed under ``root``."""
    return root / absolute.lstrip("/")


def read_text(path: Path) -> str:
    """A sysfs attribute's text, stripped. OSError (incl. PermissionError) propagates."""
    return path.read_text(encoding="utf-8", errors="replace").strip()


def read_number(path: Path) -> float:
    """A sysfs attribute holding one number. ValueError names the file when it holds something else."""
    text = read_text(path)
    try:
        return float(int(text))
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{path} holds {text!r}, not a number") from None


def unreadable_reason(path: Path, error: OSError) -> str:
    """A sentence for an OSError met reading ``path``."""
    if isinstance(error, PermissionError):
        return f"permission denied reading {path}"
    if isinstance(error, FileNotFoundError):
        return f"{path} does not exist"
    return f"cannot read {path}: {error.strerror or error}"
