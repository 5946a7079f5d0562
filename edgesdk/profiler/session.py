"""Profile a bundle on this device: load, time, measure or estimate energy, report what ran.

``profile_bundle`` is what ``edgesdk profile`` calls. The order matters:

1. the energy source is settled first, so ``--energy rapl`` without RAPL fails before any work
   (MeasurementUnavailable, exit 6);
2. the bundle is loaded (load time), the providers actually in use are compared with what the
   device profile prefers (a silent CPU fallback is an error under ``strict_providers``);
3. first inference, warm-up, timed runs (no sampler thread running);
4. the energy phase: windows of an idle baseline + back-to-back inferences with the sensor
   sampled in the background (``edgesdk.profiler.energy``); beside it, or instead of it without
   a sensor, the estimates ``estimated:ops`` and ``estimated:ops+memory``.

Under a simulated sensor tree (``edgesdk.devices.sensors.simulate``) each inference is wrapped
so that the simulator sees it run, and the report says the tree was simulated.
"""
from __future__ import annotations

import dataclasses
import datetime as _datetime
import importlib.metadata
import json
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
from edgesdk.devices.sensors.simulate import activity_hook
from edgesdk.errors import BackendUnavailable, MeasurementUnavailable, UsageError
from edgesdk.profiler.energy import (
    CI_TARGET_FRACTION,
    MIN_WINDOWS,
    TIME_LIMIT_S,
    EnergyMeasurement,
    measure_energy,
    plan_windows,
)
from edgesdk.profiler.estimate import estimate_energy, estimate_energy_with_memory
from edgesdk.profiler.latency import (
    LATENCY_METHOD,
    current_rss_mib,
    latency_label,
    peak_rss_mib,
    summarize_latency,
    time_calls,
)
from edgesdk.profiler.opcount import count_onnx_macs
from edgesdk.profiler.report import FigureRow, figure_rows
from edgesdk.runtime.sections import OpsCount, StreamingFacts

logger = logging.getLogger(__name__)

ENERGY_CHOICES = ("auto", *SENSORS, "estimate")
BACKEND_CHOICES = ("auto", "onnxruntime", "litert")
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ProfileOptions:
    """What to profile and how; checked once, here (UsageError, exit 2).

    Attributes:
        backend: ``auto``, ``onnxruntime`` or ``litert`` (``profile_bundle`` only: the model it loads).
        runs: timed runs (calls or streaming steps), >= 1.
        warmup: untimed runs before timing, >= 0.
        stream: profile step by step (streaming bundles).
        energy: ``auto`` (measure with the first usable sensor, else estimate), a sensor name
            (``rapl``, ``ina3221``, ``nvml``, ``android``: must work) or ``estimate``.
        strict_providers: a fallback away from the preferred provider is an error.
        root: file-system root for device detection and sysfs sensors (a copied or simulated
            tree: ``edgesdk profile --sysfs-root``).
        energy_windows: at least this many idle+active windows (>= 1; 5 by default).
        energy_time_limit_s: stop adding windows after this long, seconds.
        energy_ci: stop adding windows once the 95% interval of the median net energy is
            within this fraction of it.
        idle_s, min_active_s: window lengths, seconds (None: suited to the sensor; too short
            for the sensor is refused, exit 6).
        threads: intra-op threads of the backend (None: its default); recorded in the report.
        shapes: ``(input name, dims)`` pairs: the shapes to feed, for dynamic axes.
        precision: which artifact of a bundle holding several precisions (None: float32).
    """

    backend: str = "auto"
    runs: int = 100
    warmup: int = 10
    stream: bool = False
    energy: str = "auto"
    strict_providers: bool = False
    root: str | os.PathLike = "/"
    energy_windows: int = MIN_WINDOWS
    energy_time_limit_s: float = TIME_LIMIT_S
    energy_ci: float = CI_TARGET_FRACTION
    idle_s: float | None = None
    min_active_s: float | None = None
    threads: int | None = None
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    precision: str | None = None

    def __post_init__(self) -> None:
        if self.runs < 1:
            raise UsageError(f"runs must be at least 1, got {self.runs}")
        if self.warmup < 0:
            raise UsageError(f"warmup cannot be negative, got {self.warmup}")
        if self.energy_windows < 1:
            raise UsageError(f"energy_windows must be at least 1, got {self.energy_windows}")
        if self.energy_time_limit_s <= 0 or self.energy_ci <= 0:
            raise UsageError("energy_time_limit_s and energy_ci must be positive")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"threads must be at least 1, got {self.threads}")
        for name, dims in self.shapes:
            if not dims or any(int(d) < 1 for d in dims):
                raise UsageError(f"shape of {name!r} must be positive sizes, got {dims}")
        if self.energy not in ENERGY_CHOICES:
            raise UsageError(f"unknown energy source {self.energy!r}; choose from {', '.join(ENERGY_CHOICES)}")
        if self.backend not in BACKEND_CHOICES:
            raise UsageError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKEND_CHOICES)}")

    @classmethod
    def build(cls, options: ProfileOptions | None, fields: Mapping[str, Any]) -> ProfileOptions:
        """``options``, or one made from keyword ``fields`` (not both); unknown names are a UsageError."""
        if options is not None and fields:
            raise UsageError(f"give ProfileOptions or keyword options, not both ({', '.join(fields)})")
        if options is not None:
            return options
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise UsageError(f"unknown profile option(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**fields)


@dataclass(frozen=True)
class ProfileResult:
    """A finished profile.

    Attributes:
        result: profile.json's content (JSON-ready; every figure section has a ``provenance``).
        latency_times_s: each timed call's duration, for the histogram.
        measurement: the power measurement (trace and windows), None when energy was estimated.
    """

    result: dict
    latency_times_s: np.ndarray
    measurement: EnergyMeasurement | None

    def rows(self) -> list[FigureRow]:
        """(figure, value, provenance) rows: what the terminal table and summary.md show."""
        return figure_rows(self.result)


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """``"features=1x100x80"`` -> ``("features", (1, 100, 80))``; UsageError otherwise."""
    name, _, dims = text.partition("=")
    try:
        sizes = tuple(int(d) for d in dims.lower().split("x"))
    except ValueError:
        sizes = ()
    if not name or not sizes or any(d < 1 for d in sizes):
        raise UsageError(f"--shape takes NAME=DIMxDIM..., e.g. features=1x100x80; got {text!r}")
    return name.strip(), sizes


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


def _feeds(model: Any, streaming: bool, shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()) -> dict[str, np.ndarray]:
    """Seeded N(0, 1) inputs of the declared shapes (sample sizes for symbolic dims, or
    ``shapes`` where given), no states."""
    feeds = dict(model.example_feeds(seed=0))
    if streaming:
        # The stream carries the state; only the per-step inputs are fed.
        states = _state_input_names(model)
        feeds = {name: value for name, value in feeds.items() if name not in states}
    rng = np.random.default_rng(1)
    for name, dims in shapes:
        if name not in feeds:
            raise UsageError(f"--shape names {name!r}, which is not an input fed here; inputs: {', '.join(feeds)}")
        if len(dims) != feeds[name].ndim:
            raise UsageError(f"--shape {name} has {len(dims)} dims; the input has {feeds[name].ndim} "
                             f"(e.g. {'x'.join(str(d) for d in feeds[name].shape)})")
        feeds[name] = rng.standard_normal(dims).astype(feeds[name].dtype)
    return feeds


def _activation_bytes(manifest: Mapping, feeds: Mapping[str, np.ndarray], outputs: Any, streaming: bool) -> int:
    """Bytes of the inputs, outputs and (streaming) the state read and written by one call."""
    total = sum(int(value.nbytes) for value in feeds.values())
    if isinstance(outputs, Mapping):
        total += sum(int(np.asarray(value).nbytes) for value in outputs.values())
    if streaming:
        for state in manifest.get("state") or []:
            dims = [d if isinstance(d, int) else 1 for d in state.get("shape", [])]
            itemsize = np.dtype(state.get("dtype", "float32")).itemsize
            total += 2 * int(np.prod(dims)) * itemsize  # read this step, written for the next
    return total


def _estimates_by_artifact(bundle: Path, manifest: Mapping, ops: OpsCount, profile: Any, activation_bytes: int) -> list[dict]:
    """Both estimates for every artifact of the bundle present on disk (how precision changes them)."""
    rows = []
    for artifact in manifest.get("artifacts") or []:
        path = bundle / str(artifact.get("file", ""))
        if not artifact.get("file") or not path.is_file():
            continue
        precision = str(artifact.get("precision") or "fp32")
        ops_only = estimate_energy(ops, profile, precision)
        with_memory = estimate_energy_with_memory(ops, profile, weight_bytes=path.stat().st_size,
                                                  activation_bytes=activation_bytes, precision=precision)
        rows.append({
            "file": artifact["file"],
            "format": artifact.get("format"),
            "precision": precision,
            "weight_bytes": with_memory["weight_bytes"],
            "ops_j": ops_only["energy_per_inference_j"],
            "ops_memory_j": with_memory["energy_per_inference_j"],
            "mac_pj": ops_only["constants"]["mac_pj"],
            "weights_level": with_memory["weights_level"]["name"],
        })
    return rows


def _onnx_file(bundle: Path, manifest: Mapping) -> Path | None:
    """The bundle's ONNX artifact, from the manifest's artifact list."""
    for artifact in manifest.get("artifacts") or []:
        if isinstance(artifact, Mapping) and artifact.get("format") == "onnx" and artifact.get("file"):
            path = bundle / artifact["file"]
            return path if path.is_file() else None
    return None


def _ops_section(bundle: Path, manifest: Mapping, feeds: Mapping[str, np.ndarray]) -> tuple[OpsCount | None, str]:
    """The manifest's ops section, else MACs counted from the ONNX graph; (None, why) when neither."""
    if manifest.get("ops") is not None:
        ops = OpsCount.from_manifest(manifest["ops"], f"{bundle}/edgesdk.json")
        if ops.any_counted:
            return dataclasses.replace(ops, source="bundle manifest"), ""
    onnx_path = _onnx_file(bundle, manifest)
    if onnx_path is None:
        return None, "the manifest has no ops section and the bundle has no ONNX file to count from"
    try:
        counted = count_onnx_macs(onnx_path, {name: value.shape for name, value in feeds.items()})
    except MeasurementUnavailable as error:
        return None, f"the manifest has no ops section and {error}"
    if counted["macs"] == 0:
        return None, "the manifest has no ops section and the ONNX graph has no countable MatMul/Gemm/Conv"
    return OpsCount.from_manifest(counted, str(onnx_path)), ""


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
    options: ProfileOptions | None = None,
    *,
    load_time_s: float,
    rss_before_load_mib: float | None = None,
    sensor: Sensor | None = None,
    sensors_tried: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
    **option_fields: Any,
) -> ProfileResult:
    """Profile an already loaded runtime model.

    ``options`` (or its fields as keywords: ``runs=50, stream=True``) say what to measure;
    ``sensor`` is the opened power sensor (None: estimate), ``sensors_tried`` why others were
    not used. See ``profile_bundle`` for the errors.
    """
    options = ProfileOptions.build(options, option_fields)
    stream, energy = options.stream, options.energy
    bundle_path = Path(bundle)
    device = detect_device(options.root)
    manifest = dict(getattr(model, "manifest", None) or {})
    streaming_bundle = bool(getattr(model, "is_streaming", False))
    if stream and not streaming_bundle:
        raise UsageError(f"{bundle_path} is not a streaming bundle: profile it without --stream")
    warnings: list[str] = []
    if streaming_bundle and not stream:
        warnings.append("the bundle is a streaming export: profiled one step at a time")
    streaming = streaming_bundle
    backend = _backend_report(model, device, options.strict_providers)
    if backend.get("fallback_note"):
        warnings.append(backend["fallback_note"])

    feeds = _feeds(model, streaming, options.shapes)
    if streaming:
        session = model.stream(batch=1)
        call = lambda: session.push(feeds)  # noqa: E731 - the call being timed
    else:
        call = lambda: model.run(feeds)  # noqa: E731
    simulation = activity_hook(options.root)
    if simulation is not None:
        call = simulation.wrap(call)
        warnings.append(simulation.describe())
    first_start = time.perf_counter()
    first_outputs = call()
    first_s = time.perf_counter() - first_start
    times = time_calls(call, runs=options.runs, warmup=options.warmup, progress=progress)
    label = latency_label()  # the live process, whatever tree ``root`` presents
    if label.warning:
        warnings.append(label.warning)
    latency = {
        "provenance": label.provenance,
        "emulated": label.emulated,
        "method": LATENCY_METHOD,
        "load_time_s": load_time_s,
        "load_time_backend": str(getattr(model, "backend", "unknown")),
        "first_inference_ms": first_s * 1e3,
        "warmup_runs": options.warmup,
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
        # A generic stateful export may have no streaming section: its figures are then unknown.
        facts = None
        if manifest.get("streaming") is not None:
            facts = StreamingFacts.from_manifest(manifest["streaming"], f"{bundle_path}/edgesdk.json")
        step_s = facts.step_duration_s if facts else None
        streaming_section = {
            "provenance": "bundle manifest streaming section; real-time factor from measured latency",
            "frames_per_step": facts.frames_per_step if facts else None,
            "frame_rate_hz": facts.frame_rate_hz if facts else None,
            "lookahead_frames": facts.lookahead_frames if facts else None,
            "step_duration_s": step_s,
            "real_time_factor": (latency["mean_ms"] * 1e-3 / step_s) if step_s else None,
        }

    artifact = dict(getattr(model, "artifact", None) or {})
    precision = str(artifact.get("precision") or "fp32")
    ops, ops_problem = _ops_section(bundle_path, manifest, feeds)
    estimate = memory_estimate = None
    estimates_by_artifact: list[dict] = []
    if ops is not None:
        estimate = estimate_energy(ops, device.profile, precision)
        activation_bytes = _activation_bytes(manifest, feeds, first_outputs, streaming)
        artifact_path = bundle_path / str(artifact.get("file", ""))
        if artifact.get("file") and artifact_path.is_file():
            memory_estimate = estimate_energy_with_memory(
                ops, device.profile, weight_bytes=artifact_path.stat().st_size,
                activation_bytes=activation_bytes, precision=precision)
        # Every artifact of the bundle, not only the precision loaded (the runtime's manifest is filtered).
        manifest_path = bundle_path / "edgesdk.json"
        whole = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else manifest
        estimates_by_artifact = _estimates_by_artifact(bundle_path, whole, ops, device.profile, activation_bytes)

    measurement = None
    measurement_problem = ""
    if sensor is not None:
        try:
            measurement = measure_energy(
                sensor,
                call,
                plan=plan_windows(sensor, options.idle_s, options.min_active_s),
                min_windows=options.energy_windows,
                time_limit_s=options.energy_time_limit_s,
                ci_target=options.energy_ci,
                baseline_latency_s=float(np.median(times)),
                progress=progress,
            )
        except MeasurementUnavailable as error:
            if energy != "auto":
                raise
            measurement_problem = str(error)
        sensor.close()
    if measurement is not None:
        energy_section = dict(measurement.summary)
    elif estimate is not None:
        energy_section = dict(estimate)
        if energy == "auto":
            energy_section["warnings"] = [measurement_problem or "no power sensor usable here: energy is estimated, not measured"]
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
    step_s = streaming_section["step_duration_s"] if streaming_section else None
    if step_s and energy_section.get("energy_per_inference_j") is not None:
        # Per second of audio: the per-step figures (and their intervals) over the step's length.
        for key in ("energy_per_inference", "gross_energy_per_inference"):
            if energy_section.get(f"{key}_j") is not None:
                energy_section[f"{key.replace('inference', 'audio_second')}_j"] = energy_section[f"{key}_j"] / step_s
            if energy_section.get(f"{key}_ci95_j") is not None:
                energy_section[f"{key.replace('inference', 'audio_second')}_ci95_j"] = [v / step_s for v in energy_section[f"{key}_ci95_j"]]

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
        "artifact": {"file": artifact.get("file"), "format": artifact.get("format"), "precision": precision},
        "threads": options.threads,
        "inputs": {name: {"shape": list(value.shape), "dtype": str(value.dtype)} for name, value in feeds.items()},
        "latency": latency,
        "memory": memory,
        "streaming": streaming_section,
        "energy": energy_section,
        "energy_estimate": estimate,
        "energy_estimate_memory": memory_estimate,
        "energy_estimates_by_artifact": estimates_by_artifact,
        "simulated": simulation is not None,
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
    return ProfileResult(result=result, latency_times_s=times, measurement=measurement)


def profile_bundle(
    bundle: str | os.PathLike,
    options: ProfileOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
    loader: Callable[..., Any] | None = None,
    **option_fields: Any,
) -> ProfileResult:
    """Profile the bundle at ``bundle`` (a folder with edgesdk.json) on this device.

    Args:
        options: what to measure (``ProfileOptions``); or give its fields as keywords
            (``profile_bundle(path, stream=True, runs=500)``).
        progress: ``progress(phase, done, total)`` callback.
        loader: ``load(path, backend=..., providers=..., strict_providers=...)``; default
            ``edgesdk.runtime.load``.

    Raises:
        UsageError: bad options or a non-streaming bundle with ``stream``.
        MeasurementUnavailable: an explicitly requested sensor (or estimate) cannot be made.
        BackendUnavailable: the backend is missing, or a fallback under ``strict_providers``.
    """
    options = ProfileOptions.build(options, option_fields)
    bundle_path = Path(bundle)
    if not (bundle_path / "edgesdk.json").is_file():
        raise UsageError(f"{bundle_path} is not a bundle: edgesdk.json is missing")
    device = detect_device(options.root)
    # Settle the energy source before any work, so an impossible request fails fast (exit 6).
    sensor, tried = select_sensor(options.energy, device, options.root)
    if sensor is not None:
        try:
            plan_windows(sensor, options.idle_s, options.min_active_s)  # a window too short: exit 6 now
        except MeasurementUnavailable:
            sensor.close()
            raise
    if loader is None:
        from edgesdk.runtime import load as loader  # torch-free
    providers = None
    if options.backend == "onnxruntime":
        providers = preferred_providers(device.profile, onnxruntime_info()["providers"]) or None
    rss_before = current_rss_mib()
    load_options: dict[str, Any] = {}
    if options.threads is not None:
        load_options["num_threads"] = options.threads
    if options.precision is not None:
        load_options["precision"] = options.precision
    try:
        start = time.perf_counter()
        model = loader(bundle_path, backend=options.backend, providers=providers,
                       strict_providers=options.strict_providers, **load_options)
        load_time = time.perf_counter() - start
        selection_time = None
        if options.backend == "auto" and len(getattr(model, "backend_choice", "") or "") and "fastest here" in model.backend_choice:
            # Auto opened and timed every backend: load the chosen one again, alone, for its load time.
            selection_time = load_time
            start = time.perf_counter()
            model = loader(bundle_path, backend=model.backend, providers=providers,
                           strict_providers=options.strict_providers, **load_options)
            load_time = time.perf_counter() - start
            model.backend_choice = f"auto chose {model.backend}: " + model.backend_choice.split(": ", 1)[-1]
        in_use = [str(p) for p in (getattr(model, "providers", None) or [])]
        if options.energy == "auto" and sensor is not None and sensor.name != "nvml" and any(
            p in in_use for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
        ):
            # The model runs on an NVIDIA GPU: measure its board with NVML if that works.
            gpu_sensor, _ = select_sensor("auto", device, options.root, prefer_gpu=True)
            if gpu_sensor is not None and gpu_sensor.name == "nvml":
                sensor.close()
                sensor = gpu_sensor
        outcome = profile_model(model, bundle_path, options, load_time_s=load_time, rss_before_load_mib=rss_before,
                                sensor=sensor, sensors_tried=tried, progress=progress)
        outcome.result["latency"]["backend_selection_s"] = selection_time
        return outcome
    finally:
        if sensor is not None:
            sensor.close()
