"""Power sensors: one module per kernel interface, one common interface (``base.Sensor``).

``open_sensor(name)`` builds one by its ``--energy`` name; ``probe_sensors()`` tries them all and
says, for each, whether it can be read here and why not.
"""
from __future__ import annotations

import os

from edgesdk.devices.sensors.android import AndroidBatterySensor
from edgesdk.devices.sensors.base import Sensor
from edgesdk.devices.sensors.ina3221 import Ina3221Sensor
from edgesdk.devices.sensors.nvml import NvmlSensor
from edgesdk.devices.sensors.rapl import RaplSensor
from edgesdk.errors import UsageError

SENSORS: dict[str, type[Sensor]] = {
    "rapl": RaplSensor,
    "ina3221": Ina3221Sensor,
    "nvml": NvmlSensor,
    "android": AndroidBatterySensor,
}


def open_sensor(name: str, root: str | os.PathLike = "/", **options) -> Sensor:
    """The sensor called ``name`` (``rapl``, ``ina3221``, ``nvml``, ``android``), not yet checked."""
    try:
        cls = SENSORS[name]
    except KeyError:
        raise UsageError(f"unknown power sensor {name!r}; known sensors: {', '.join(SENSORS)}") from None
    return cls(root, **options)


def probe_sensors(root: str | os.PathLike = "/", module: str | None = None) -> list[dict]:
    """Every sensor kind with ``available`` (bool), ``reason`` and ``details``, in SENSORS order."""
    results = []
    for name in SENSORS:
        options = {"module": module} if name == "ina3221" and module else {}
        sensor = open_sensor(name, root, **options)
        try:
            usable, reason = sensor.available()
            details = sensor.describe() if usable else {}
        finally:
            sensor.close()
        results.append({"name": name, "label": sensor.label, "available": usable, "reason": reason, "details": details})
    return results


__all__ = [
    "AndroidBatterySensor",
    "Ina3221Sensor",
    "NvmlSensor",
    "RaplSensor",
    "SENSORS",
    "Sensor",
    "open_sensor",
    "probe_sensors",
]
