"""Devices: who am I running on, what can measure power here, what should the runtime prefer.

Never imports torch (import-linter contract). ``describe_system()`` is what ``edgesdk devices``
prints.
"""
from __future__ import annotations

import os

from edgesdk.devices.backends import available_backends, litert_info, onnxruntime_info
from edgesdk.devices.detect import DeviceInfo, detect_device
from edgesdk.devices.profiles import (
    PROFILES,
    DeviceProfile,
    EnergyPerOperation,
    get_profile,
    preferred_backends,
    preferred_delegates,
    preferred_providers,
)
from edgesdk.devices.sensors import SENSORS, Sensor, open_sensor, probe_sensors


def describe_system(root: str | os.PathLike = "/") -> dict:
    """The detected device, every power sensor (usable or why not) and the runtimes available."""
    device = detect_device(root)
    profile = device.profile
    ort = onnxruntime_info()
    litert = litert_info()
    ort["preferred_order"] = preferred_providers(profile, ort["providers"])
    litert["preferred_order"] = preferred_delegates(profile, litert["delegates"])
    return {
        "device": device.as_dict(),
        "profile": profile.as_dict(),
        "power_sensors": probe_sensors(root, module=profile.name),
        "onnxruntime": ort,
        "litert": litert,
        "preferred_backends": preferred_backends(profile, available_backends()),
    }


__all__ = [
    "PROFILES",
    "SENSORS",
    "DeviceInfo",
    "DeviceProfile",
    "EnergyPerOperation",
    "Sensor",
    "available_backends",
    "describe_system",
    "detect_device",
    "get_profile",
    "litert_info",
    "onnxruntime_info",
    "open_sensor",
    "preferred_backends",
    "preferred_delegates",
    "preferred_providers",
    "probe_sensors",
]
