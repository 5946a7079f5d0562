"""NVIDIA GPU energy through NVML (the ``pynvml`` module of the nvidia-ml-py package).

Preferred: ``nvmlDeviceGetTotalEnergyConsumption`` — millijoules since the driver was loaded,
Volta and newer — read as an energy counter. Where the GPU does not support it
(``NVML_ERROR_NOT_SUPPORTED``), ``nvmlDeviceGetPowerUsage`` (milliwatts) is sampled instead. On
recent drivers and Ampere or newer GPUs that power figure is itself a one-second average, so a
counter is much better for short runs; ``describe()`` says which one is in use.

NVML covers the GPU board only, not the CPU or the rest of the system. It does not exist on
Jetson (integrated GPU): use the INA3221 sensor there.
"""
from __future__ import annotations

import importlib
import logging
import os
from typing import Any

from edgesdk.devices.sensors.base import Sensor
from edgesdk.errors import MeasurementUnavailable

logger = logging.getLogger(__name__)


def _import_pynvml() -> Any | None:
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        return None


class NvmlSensor(Sensor):
    """Energy (or power) of one NVIDIA GPU.

    Args:
        root: unused (NVML is a library, not a file tree); kept for a uniform constructor.
        index: NVML device index.
    """

    name = "nvml"
    label = "measured:nvml"
    # The energy counter and power readings advance about every 100 ms (the power reading of
    # recent GPUs is moreover a 1 s average).
    nominal_update_s = 0.1
    boundary = "the GPU board only (GPU, its memory and power stages), not the CPU, host DRAM or system"

    def __init__(self, root: str | os.PathLike = "/", index: int = 0):
        super().__init__(root)
        self._update_s: float | None = None
        self.index = index
        self._nvml: Any | None = None
        self._handle: Any = None
        self._problem = ""
        self._device_name = ""
        self._first_mj: float | None = None
        self.quantity = "energy"
        self._opened = False

    def _open(self) -> bool:
        if self._opened:
            return self._handle is not None
        self._opened = True
        nvml = _import_pynvml()
        if nvml is None:
            self._problem = "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
            return False
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as error:
            self._problem = f"NVML could not start ({error}): no NVIDIA driver or GPU here"
            return False
        self._nvml = nvml
        try:
            count = nvml.nvmlDeviceGetCount()
            if self.index >= count:
                self._problem = f"NVML lists {count} GPU(s); index {self.index} does not exist"
                return False
            handle = nvml.nvmlDeviceGetHandleByIndex(self.index)
            name = nvml.nvmlDeviceGetName(handle)
            self._device_name = name.decode() if isinstance(name, bytes) else str(name)
        except nvml.NVMLError as error:
            self._problem = f"NVML query failed: {error}"
            return False
        try:
            self._first_mj = float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except nvml.NVMLError as error:
            # Pre-Volta GPUs: no counter, fall back to power sampling.
            logger.debug("NVML energy counter unsupported (%s); sampling power", error)
            self.quantity = "power"
            try:
                nvml.nvmlDeviceGetPowerUsage(handle)
            except nvml.NVMLError as power_error:
                self._problem = f"GPU {self._device_name} reports neither energy nor power: {power_error}"
                return False
        self._handle = handle
        return True

    def available(self) -> tuple[bool, str]:
        if not self._open():
            return False, self._problem
        what = "total-energy counter" if self.quantity == "energy" else "power readings (1 s average on recent GPUs)"
        return True, f"GPU {self.index} ({self._device_name}) {what}"

    def update_interval_s(self) -> float:
        """Measured once (how often the reading changes, watched for up to 1.0 s): devices differ
        widely; ``nominal_update_s`` when it did not change twice."""
        if self._update_s is None:
            self._update_s = self.probe_update_interval_s(1.0, poll_s=0.005) or self.nominal_update_s
        return self._update_s

    def describe(self) -> dict:
        usable = self._open()
        return {
            "sensor": self.name,
            "label": self.label,
            "quantity": ("energy counter" if self.quantity == "energy" else "power") if usable else "none",
            "gpu_index": self.index,
            "gpu_name": self._device_name,
            "scope": "GPU board only (not CPU or system)",
            "problem": self._problem,
        }

    def _require_handle(self) -> Any:
        if not self._open():
            raise MeasurementUnavailable(f"nvml energy measurement unavailable: {self._problem}")
        return self._handle

    def read_energy_j(self) -> float:
        handle = self._require_handle()
        if self.quantity != "energy":
            return super().read_energy_j()
        try:
            millijoules = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except self._nvml.NVMLError as error:
            raise MeasurementUnavailable(f"NVML energy read failed: {error}") from None
        return (millijoules - (self._first_mj or 0.0)) * 1e-3

    def read_power_w(self) -> float:
        handle = self._require_handle()
        try:
            return float(self._nvml.nvmlDeviceGetPowerUsage(handle)) * 1e-3
        except self._nvml.NVMLError as error:
            raise MeasurementUnavailable(f"NVML power read failed: {error}") from None

    def close(self) -> None:
        if self._nvml is not None and self._handle is not None:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as error:
                logger.debug("nvmlShutdown failed: %s", error)
        self._handle = None
