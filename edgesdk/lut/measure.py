"""One measurement on this node: load an exported bundle with edgesdk.runtime, time it, and say where.

``measure_bundle`` is the task the executor sends to a device (in-process: one worker, one
measurement at a time; on Ray: the node advertising ``edgesdk.device.<profile>``). It imports no
torch: a device node needs only ``edgesdk[runtime]``. The input is seeded noise of the table's
fixed shape: a dense float graph takes the same time whatever the values.
"""
from __future__ import annotations

import importlib.metadata
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgesdk.errors import BundleError, BundleWarning

BACKEND_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}
RUNTIME_DISTRIBUTIONS = ("onnxruntime", "ai-edge-litert", "tflite-runtime", "numpy")


@dataclass(frozen=True)
class LatencyFigure:
    """Wall-clock latency of one call, from ``runs`` timed calls after ``warmup`` untimed ones.

    ``spread_ms`` is the interquartile range (p75 - p25): robust to the odd call that another
    process on the machine delayed.
    """

    median_ms: float
    spread_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    warmup: int
    provenance: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> "LatencyFigure":
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class EnergyFigure:
    """Energy of one call from a power sensor (never an estimate): mean and standard deviation
    over the idle/active repeats of ``edgesdk.profiler.energy.measure_energy``."""

    mean_mj: float
    spread_mj: float
    provenance: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict | None) -> "EnergyFigure | None":
        return None if data is None else cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class MeasureRequest:
    """What to measure: a bundle (a folder the node can read, or its tar archive) fed ``shape``.

    ``energy``: "auto" measures energy when this node has a working power sensor, "off" never.
    """

    key: str
    bundle: str | None
    archive: bytes | None
    input_name: str
    shape: tuple[int, ...]
    format: str
    precision: str
    threads: int
    runs: int
    warmup: int
    energy: str = "auto"


@dataclass(frozen=True)
class Measurement:
    """A measurement and the node it was made on."""

    key: str
    latency: LatencyFigure
    energy: EnergyFigure | None
    energy_absent_reason: str
    device_profile: str
    device_model: str
    backend: str
    providers: tuple[str, ...]
    runtime_versions: tuple[tuple[str, str | None], ...]
    load_average: tuple[float, float, float] | None
    times_ms: tuple[float, ...] = ()  # every timed call, so rounds of one key can be pooled


def latency_of(times_ms, warmup: int) -> LatencyFigure:
    """Median, IQR and p10/p90 of timed calls."""
    from edgesdk.profiler.latency import latency_label

    times = np.asarray(times_ms, dtype=float)
    p10, p25, p50, p75, p90 = np.percentile(times, [10, 25, 50, 75, 90])
    return LatencyFigure(float(p50), float(p75 - p25), float(p10), float(p90), int(times.size), warmup,
                         latency_label().provenance)


def pooled(rounds: "list[Measurement]") -> "Measurement":
    """One measurement from rounds of the same key: the latency of all their calls together."""
    from dataclasses import replace

    first = rounds[0]
    times = tuple(t for measurement in rounds for t in measurement.times_ms)
    loads = [m.load_average for m in rounds if m.load_average]
    load = tuple(float(np.mean([l[i] for l in loads])) for i in range(3)) if loads else None
    return replace(first, latency=latency_of(times, first.latency.warmup), times_ms=times, load_average=load)


def runtime_versions() -> tuple[tuple[str, str | None], ...]:
    versions = []
    for name in RUNTIME_DISTRIBUTIONS:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, None))
    return tuple(versions)


def _load_average() -> tuple[float, float, float] | None:
    try:
        return tuple(float(value) for value in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return None


def measure_bundle(request: MeasureRequest) -> Measurement:
    """Load the bundle with the format's backend and ``threads`` threads, time ``runs`` calls."""
    if request.bundle is None and request.archive is None:
        raise BundleError("a measurement needs a bundle folder or its archive")
    with tempfile.TemporaryDirectory(prefix="edgesdk-lut-") as scratch:
        bundle = Path(request.bundle) if request.bundle is not None else Path(scratch)
        if request.archive is not None:  # sent by value (Ray), packed by table.py with pack_bundle
            from edgesdk.folders import unpack_bundle  # tarfile's data filter: no links, no paths out

            bundle = unpack_bundle(request.archive, Path(scratch) / "bundle")
            if request.bundle is not None:  # a lone model file inside the archive
                bundle = bundle / request.bundle
        return _measure_folder(request, bundle)


def _measure_folder(request: MeasureRequest, bundle: Path) -> Measurement:
    from edgesdk.devices.detect import detect_device
    from edgesdk.profiler.latency import time_calls
    from edgesdk.profiler.session import select_sensor
    from edgesdk.runtime import load

    with warnings.catch_warnings():
        # Blocks and subnets of a supernet without checkpoint hold random weights on purpose:
        # latency does not depend on them, and the table records the supernet's checkpoint.
        warnings.simplefilter("ignore", BundleWarning)
        model = load(bundle, backend=BACKEND_OF_FORMAT[request.format], num_threads=request.threads,
                     precision=request.precision)
    feeds = {request.input_name: np.random.default_rng(0).standard_normal(request.shape).astype(np.float32)}
    call = lambda: model.run(feeds)  # noqa: E731 - the call being timed
    load_average = _load_average()
    times_ms = time_calls(call, runs=request.runs, warmup=request.warmup) * 1e3
    latency = latency_of(times_ms, request.warmup)
    device = detect_device()
    energy, absent = None, "energy not asked for (--energy off)"
    if request.energy != "off":
        sensor, tried = select_sensor("auto", device, "/")
        if sensor is None:
            absent = "no power sensor on this device (" + "; ".join(f"{k}: {v}" for k, v in tried.items()) + ")"
        else:
            energy = _measure_energy(sensor, call)
            absent = ""
    return Measurement(
        key=request.key, latency=latency, energy=energy, energy_absent_reason=absent,
        device_profile=device.profile.name, device_model=device.model, backend=model.backend,
        providers=tuple(str(p) for p in model.providers), runtime_versions=runtime_versions(),
        load_average=load_average, times_ms=tuple(float(t) for t in times_ms),
    )


def _measure_energy(sensor, call) -> EnergyFigure:
    from edgesdk.profiler.energy import measure_energy

    measured = measure_energy(sensor, call, repeats=3)
    summary = measured.summary
    per_call = summary.get("energy_per_inference_j")
    spread = summary.get("energy_per_inference_std_j") or 0.0
    return EnergyFigure(float(per_call) * 1e3, float(spread) * 1e3, str(summary.get("provenance", f"measured:{sensor.name}")))
