"""Profile a bundle on this device: load, time, measure or estimate energy, report what ran.

``profile_bundle`` is what ``edgesdk profile`` calls. The order matters:

1. the energy source is settled first, so ``--energy rapl`` without RAPL fails before any work
   (MeasurementUnavailable, exit 6);
2. the bundle is loaded (load time), the providers actually in use are compared with what the
   device profile prefers (a silent CPU fallback is an error under ``strict_providers``);
3. first inference, warm-up, timed runs (no sampler thread running);
4. the energy phase: idle baseline + back-to-back inferences with the sensor sampled in the
   background; or, without a sensor, the ops-based estimate, labelled ``estimated:ops``.
"""
from __future__ import annotations

import datetime as _datetime
import importlib.metadata
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgesdk.devices.backends import litert_info, onnxruntime_info
from edgesdk.devices.detect import DeviceInfo, detect_device
from edgesdk.devices.profiles import preferred_delegates, preferred_providers
from edgesdk.devices.sensors import SENSORS, Sensor, open_sensor
from edgesdk.errors import BackendUnavailable, MeasurementUnavailable, UsageError
from edgesdk.profiler.energy import EnergyMeasurement, estimate_energy, measure_energy
from edgesdk.profiler.latency import (
    LATENCY_METHOD,
    current_rss_mib,
    latency_label,
    peak_rss_mib,
    summarize_latency,
    time_calls,
    time_once,
)
from edgesdk.profiler.opcount import count_onnx_macs

logger = logging.getLogger(__name__)

ENERGY_CHOICES = ("auto", *SENSORS, "estimate")
BACKEND_CHOICES = ("auto", "onnxruntime", "litert")
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class ProfileOutcome:
    """A finished profile: the JSON-ready result plus the raw data the plots need."""

    result: dict
    latency_times_s: np.ndarray
    measurement: EnergyMeasurement | None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def select_sensor(energy: str, device: DeviceInfo, root: str | os.PathLike, prefer_gpu: bool = False) -> tuple[Sensor | None, dict[str, str]]:
    """The sensor to measure with, and why each sensor tried was not used.

    ``energy`` is a sensor name (must work: MeasurementUnavailable otherwise), ``"auto"`` (the
    device profile's sensors first, then the others; None when none works) or ``"estimate"``.
    """
    tried: dict[str, str] = {}
    if energy == "estimate":
        return None, tried
    options = {"module": device.profile.name}
    if energy != "auto":
        sensor = open_sensor(energy, root, **(options if energy == "ina3221" else {}))
        sensor.require()
        return sensor, tried
    order = list(device.profile.power_sensors) + [name for name in SENSORS if name not in device.profile.power_sensors]
    if prefer_gpu and "nvml" in order:
        # The model runs on an NVIDIA GPU: its board power is what changes, not the CPU's.
        order.remove("nvml")
        order.insert(0, "nvml")
    for name in order:
        sensor = open_sensor(name, root, **(options if name == "ina3221" else {}))
        usable, reason = sensor.available()
        if usable:
            return sensor, tried
        sensor.close()
        tried[name] = reason
    return None, tried


def _state_input_names(model: Any) -> set[str]:
    """Input names of the state pairs (runtime StateInfo objects, or manifest-style dicts)."""
    names = set()
    for state in getattr(model, "state_spec", None) or []:
        names.add(str(state["input"] if isinstance(state, Mapping) else state.input))
    return names


def _feeds(model: Any, streaming: bool) -> dict[str, np.ndarray]:
    """Seeded N(0, 1) inputs of the declared shapes (sample sizes for symbolic dims), no states."""
    feeds = dict(model.example_feeds(seed=0))
    if streaming:
        # The stream carries the state; only the per-step inputs are fed.
        states = _state_input_names(model)
        feeds = {name: value for name, value in feeds.items() if name not in states}
    return feeds


def _onnx_file(bundle: Path, manifest: Mapping) -> Path | None:
    """The bundle's ONNX artifact, from the manifest's artifact list."""
    for artifact in manifest.get("artifacts") or []:
        if isinstance(artifact, Mapping) and artifact.get("format") == "onnx" and artifact.get("file"):
            path = bundle / artifact["file"]
            return path if path.is_file() else None
    return None


def _ops_section(bundle: Path, manifest: Mapping, feeds: Mapping[str, np.ndarray]) -> tuple[dict | None, str]:
    """The manifest's ops section, else MACs counted from the ONNX graph; (None, why) when neither."""
    ops = manifest.get("ops")
    if isinstance(ops, Mapping) and any(ops.get(key) for key in ("macs", "accumulates", "binary_ops")):
        return {**ops, "source": "bundle manifest"}, ""
    onnx_path = _onnx_file(bundle, manifest)
    if onnx_path is None:
        return None, "the manifest has no ops section and the bundle has no ONNX file to count from"
    try:
        counted = count_onnx_macs(onnx_path, {name: value.shape for name, value in feeds.items()})
    except MeasurementUnavailable as error:
        return None, f"the manifest has no ops section and {error}"
    if counted["macs"] == 0:
        return None, "the manifest has no ops section and the ONNX graph has no countable MatMul/Gemm/Conv"
    return counted, ""


def _backend_report(model: Any, device: DeviceInfo, strict: bool) -> dict:
    """What ran, what the profile preferred, whether it fell back (error under ``strict``)."""
    backend = str(getattr(model, "backend", "unknown"))
    in_use = [str(p) for p in (getattr(model, "providers", None) or [])]
    report: dict[str, Any] = {"name": backend, "providers_in_use": in_use, "fallback": False}
    if backend == "onnxruntime":
        available = onnxruntime_info()["providers"]
        preferred = preferred_providers(device.profile, available)
    elif backend == "litert":
        preferred = preferred_delegates(device.profile, litert_info()["delegates"])
    else:
        preferred = []
    report["providers_preferred"] = preferred
    report["backend_choice"] = getattr(model, "backend_choice", None)
    # LiteRT reports delegates as prose ("XNNPACK (CPU, ai_edge_litert)"): match by name.
    ran_preferred = bool(preferred) and any(preferred[0].lower() in name.lower() for name in in_use)
    if preferred and in_use and not ran_preferred:
        report["fallback"] = True
        message = (
            f"{backend} runs on {', '.join(in_use)} although {preferred[0]} is available and "
            f"preferred on {device.profile.name}"
        )
        if strict:
            raise BackendUnavailable(message + " (--strict-providers)")
        report["fallback_note"] = message
    return report


def profile_model(
    model: Any,
    bundle: str | os.PathLike,
    *,
    load_time_s: float,
    rss_before_load_mib: float | None = None,
    runs: int = 100,
    warmup: int = 10,
    stream: bool = False,
    energy: str = "auto",
    strict_providers: bool = False,
    root: str | os.PathLike = "/",
    energy_repeats: int = 3,
    idle_s: float | None = None,
    min_active_s: float | None = None,
    sensor: Sensor | None = None,
    sensors_tried: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> ProfileOutcome:
    """Profile an already loaded runtime model (see ``profile_bundle`` for the arguments)."""
    bundle_path = Path(bundle)
    device = detect_device(root)
    manifest = dict(getattr(model, "manifest", None) or {})
    streaming_bundle = bool(getattr(model, "is_streaming", False))
    if stream and not streaming_bundle:
        raise UsageError(f"{bundle_path} is not a streaming bundle: profile it without --stream")
    warnings: list[str] = []
    if streaming_bundle and not stream:
        warnings.append("the bundle is a streaming export: profiled one step at a time")
    streaming = streaming_bundle
    backend = _backend_report(model, device, strict_providers)
    if backend.get("fallback_note"):
        warnings.append(backend["fallback_note"])

    feeds = _feeds(model, streaming)
    if streaming:
        session = model.stream(batch=1)
        call = lambda: session.push(feeds)  # noqa: E731 - the call being timed
    else:
        call = lambda: model.run(feeds)  # noqa: E731
    first_s = time_once(call)
    times = time_calls(call, runs=runs, warmup=warmup, progress=progress)
    label = latency_label()  # the live process, whatever tree ``root`` presents
    if label.warning:
        warnings.append(label.warning)
    latency = {
        "provenance": label.provenance,
        "emulated": label.emulated,
        "method": LATENCY_METHOD,
        "load_time_s": load_time_s,
        "first_inference_ms": first_s * 1e3,
        "warmup_runs": warmup,
        **summarize_latency(times),
    }
    rss_now = current_rss_mib()
    memory = {
        "provenance": "measured:getrusage",
        "method": "ru_maxrss of the whole process: interpreter, runtime and model",
        "peak_rss_mib": peak_rss_mib(),
        "rss_before_load_mib": rss_before_load_mib,
        "rss_after_runs_mib": rss_now,
    }

    streaming_section = None
    if streaming:
        facts = manifest.get("streaming") or {}
        step_s = None
        if facts.get("frames_per_step") and facts.get("frame_rate_hz"):
            step_s = float(facts["frames_per_step"]) / float(facts["frame_rate_hz"])
        streaming_section = {
            "provenance": "bundle manifest streaming section; real-time factor from measured latency",
            "frames_per_step": facts.get("frames_per_step"),
            "frame_rate_hz": facts.get("frame_rate_hz"),
            "lookahead_frames": facts.get("lookahead_frames"),
            "step_duration_s": step_s,
            "real_time_factor": (latency["mean_ms"] * 1e-3 / step_s) if step_s else None,
        }

    ops, ops_problem = _ops_section(bundle_path, manifest, feeds)
    estimate = None
    if ops is not None:
        estimate = estimate_energy(ops, device.profile)

    measurement = None
    if sensor is not None:
        measurement = measure_energy(
            sensor,
            call,
            repeats=energy_repeats,
            idle_s=idle_s,
            min_active_s=min_active_s,
            progress=progress,
        )
        energy_section = dict(measurement.summary)
        sensor.close()
    elif estimate is not None:
        energy_section = dict(estimate)
        if energy == "auto":
            energy_section["warnings"] = ["no power sensor usable here: energy is estimated, not measured"]
    else:
        if energy == "estimate":
            raise MeasurementUnavailable(f"cannot estimate energy: {ops_problem}")
        energy_section = {
            "provenance": "unavailable",
            "energy_per_inference_j": None,
            "reason": f"no power sensor usable and {ops_problem}",
        }
    energy_section["requested"] = energy
    energy_section["sensors_tried"] = sensors_tried or {}
    if streaming_section and streaming_section["step_duration_s"] and energy_section.get("energy_per_inference_j") is not None:
        energy_section["energy_per_audio_second_j"] = energy_section["energy_per_inference_j"] / streaming_section["step_duration_s"]

    model_facts = manifest.get("model") or {}
    result = {
        "schema": "edgesdk.profile/1",
        "bundle": {
            "path": str(bundle_path),
            "name": model_facts.get("preset") or model_facts.get("family") or bundle_path.name,
            "family": model_facts.get("family"),
            "preset": model_facts.get("preset"),
        },
        "mode": "stream" if streaming else "full",
        "device": device.as_dict(),
        "backend": backend,
        "inputs": {name: {"shape": list(value.shape), "dtype": str(value.dtype)} for name, value in feeds.items()},
        "latency": latency,
        "memory": memory,
        "streaming": streaming_section,
        "energy": energy_section,
        "energy_estimate": estimate,
        "warnings": warnings,
        "provenance": {
            "edgesdk_version": _version("edgesdk"),
            "numpy_version": np.__version__,
            "onnxruntime_version": _version("onnxruntime"),
            "ai_edge_litert_version": _version("ai-edge-litert"),
            "python_version": platform.python_version(),
            "command": " ".join(sys.argv),
            "utc_time": _datetime.datetime.now(_datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    if estimate is None and ops_problem:
        result["energy_estimate_unavailable"] = ops_problem
    return ProfileOutcome(result=result, latency_times_s=times, measurement=measurement)


def profile_bundle(
    bundle: str | os.PathLike,
    *,
    backend: str = "auto",
    runs: int = 100,
    warmup: int = 10,
    stream: bool = False,
    energy: str = "auto",
    strict_providers: bool = False,
    root: str | os.PathLike = "/",
    energy_repeats: int = 3,
    idle_s: float | None = None,
    min_active_s: float | None = None,
    progress: ProgressCallback | None = None,
    loader: Callable[..., Any] | None = None,
) -> ProfileOutcome:
    """Profile the bundle at ``bundle`` on this device.

    Args:
        bundle: bundle directory (with edgesdk.json).
        backend: ``auto``, ``onnxruntime`` or ``litert``.
        runs: timed runs (calls or streaming steps), >= 1.
        warmup: untimed runs before timing, >= 0.
        stream: profile step by step (streaming bundles).
        energy: ``auto`` (measure with the first usable sensor, else estimate), a sensor name
            (``rapl``, ``ina3221``, ``nvml``, ``android``: must work) or ``estimate``.
        strict_providers: a fallback away from the preferred provider is an error.
        root: file-system root for device detection and sysfs sensors.
        energy_repeats, idle_s, min_active_s: the energy phase (see ``measure_energy``; None
            picks a window suited to the sensor).
        progress: ``progress(phase, done, total)`` callback.
        loader: ``load(path, backend=..., providers=..., strict_providers=...)``; default
            ``edgesdk.runtime.load``.

    Raises:
        UsageError: bad arguments or a non-streaming bundle with ``stream``.
        MeasurementUnavailable: an explicitly requested sensor (or estimate) cannot be made.
        BackendUnavailable: the backend is missing, or a fallback under ``strict_providers``.
    """
    if runs < 1:
        raise UsageError(f"runs must be at least 1, got {runs}")
    if warmup < 0:
        raise UsageError(f"warmup cannot be negative, got {warmup}")
    if energy not in ENERGY_CHOICES:
        raise UsageError(f"unknown energy source {energy!r}; choose from {', '.join(ENERGY_CHOICES)}")
    if backend not in BACKEND_CHOICES:
        raise UsageError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_CHOICES)}")
    bundle_path = Path(bundle)
    if not (bundle_path / "edgesdk.json").is_file():
        raise UsageError(f"{bundle_path} is not a bundle: edgesdk.json is missing")
    device = detect_device(root)
    # Settle the energy source before any work, so an impossible request fails fast (exit 6).
    sensor, tried = select_sensor(energy, device, root)
    if loader is None:
        from edgesdk.runtime import load as loader  # torch-free
    providers = None
    if backend == "onnxruntime":
        providers = preferred_providers(device.profile, onnxruntime_info()["providers"]) or None
    rss_before = current_rss_mib()
    try:
        start = time.perf_counter()
        model = loader(bundle_path, backend=backend, providers=providers, strict_providers=strict_providers)
        load_time = time.perf_counter() - start
        in_use = [str(p) for p in (getattr(model, "providers", None) or [])]
        if energy == "auto" and sensor is not None and sensor.name != "nvml" and any(
            p in in_use for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        ):
            # The model runs on an NVIDIA GPU: measure its board with NVML if that works.
            gpu_sensor, _ = select_sensor("auto", device, root, prefer_gpu=True)
            if gpu_sensor is not None and gpu_sensor.name == "nvml":
                sensor.close()
                sensor = gpu_sensor
        return profile_model(
            model,
            bundle_path,
            load_time_s=load_time,
            rss_before_load_mib=rss_before,
            runs=runs,
            warmup=warmup,
            stream=stream,
            energy=energy,
            strict_providers=strict_providers,
            root=root,
            energy_repeats=energy_repeats,
            idle_s=idle_s,
            min_active_s=min_active_s,
            sensor=sensor,
            sensors_tried=tried,
            progress=progress,
        )
    finally:
        if sensor is not None:
            sensor.close()

