"""What a worker does for one cell: export (with validation), then measure.

Both are top-level functions taking and returning frozen dataclasses, so the executor can send
them to a process pool or a Ray node. When workers do not share the driver's file system (Ray),
an export comes back as a tar archive of its bundle and a measurement unpacks it on its node.
"""
from __future__ import annotations

import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgesdk.errors import BundleError, BundleWarning
from edgesdk.folders import pack_bundle, unpack_bundle
from edgesdk.sweep.matrix import RUNTIME_PACKAGES, ModelEntry, package_versions

BACKEND_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}


@dataclass(frozen=True)
class ExportRequest:
    model: ModelEntry
    format: str
    precision: str
    export_options: tuple[tuple[str, Any], ...]
    output: str | None  # where to write the bundle; None: a temporary folder, returned as an archive
    search_path: tuple[str, ...] = ()  # folders a factory's module is imported from


@dataclass(frozen=True)
class ExportSummary:
    artifact: str
    size_bytes: int
    valid: bool
    max_abs_error: float | None
    min_sqnr_db: float | None
    export_s: float
    archive: bytes | None = None
    task_value: float | None = None  # the family's task figure (edgesdk.sweep.figures), in [0, 1]
    task_figure: str = "none"         # what it is, in words ("KWS accuracy 9/12 clips ...")


@dataclass(frozen=True)
class MeasureRequest:
    bundle: str | None
    archive: bytes | None
    format: str
    runs: int
    warmup: int
    energy: str
    stream: bool


@dataclass(frozen=True)
class MeasureSummary:
    p50_ms: float
    p90_ms: float
    mean_ms: float
    latency_provenance: str
    energy_per_inference_j: float | None
    energy_provenance: str | None
    device_model: str
    device_profile: str
    backend: str
    peak_rss_mib: float | None
    runtime_versions: tuple[tuple[str, str | None], ...]


def _errors(validation: dict, fmt: str) -> tuple[float | None, float | None]:
    """Worst max abs error and lowest SQNR over every case and output of one format."""
    max_abs: list[float] = []
    sqnr: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "max_abs" and isinstance(value, (int, float)):
                    max_abs.append(float(value))
                elif key == "sqnr_db" and isinstance(value, (int, float)):
                    sqnr.append(float(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    # A reduced-precision artifact is validated under "format/precision" ("onnx/int8-dynamic").
    for label, report in validation.get("formats", {}).items():
        if label == fmt or label.startswith(f"{fmt}/"):
            walk(report)
    return (max(max_abs) if max_abs else None), (min(sqnr) if sqnr else None)


def export_cell(request: ExportRequest) -> ExportSummary:
    """Build the model and export one format at one precision; validation runs inside export."""
    from edgesdk.exporters.bundle import export
    from edgesdk.models.registry import create_model

    for folder in request.search_path:
        if folder not in sys.path:
            sys.path.insert(0, folder)
    entry = request.model
    started = time.perf_counter()
    options: dict[str, Any] = dict(request.export_options)
    options.update(dict(entry.options))
    if request.precision != "fp32":
        options["precision"] = request.precision  # the bundle holds this one artifact
    with tempfile.TemporaryDirectory(prefix="edgesdk-sweep-") as scratch:
        output = Path(request.output) if request.output else Path(scratch) / "bundle"
        if entry.factory is not None:
            from edgesdk.exporters.factory import load_factory

            model = load_factory(entry.factory)
            options.update(example_inputs=dict(entry.inputs), states=dict(entry.states) or None, factory=entry.factory)
        else:
            model = create_model(entry.family, preset=entry.preset, checkpoint=entry.checkpoint)
            options["random_weights"] = entry.random_weights
        result = export(model, output, formats=(request.format,), mode=entry.mode, force=True, **options)
        artifact = result.manifest["artifacts"][0]["file"]
        max_abs, sqnr = _errors(result.validation, request.format)
        from edgesdk.sweep.figures import task_figure

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BundleWarning)  # random weights were asked for in the matrix
            figure = task_figure(entry.family, entry.mode, model, output, BACKEND_OF_FORMAT[request.format])
        return ExportSummary(
            artifact=artifact, size_bytes=(output / artifact).stat().st_size, valid=result.valid,
            max_abs_error=max_abs, min_sqnr_db=sqnr, export_s=time.perf_counter() - started,
            archive=None if request.output else pack_bundle(output),
            task_value=figure.value, task_figure=figure.text,
        )


def measure_cell(request: MeasureRequest) -> MeasureSummary:
    """Profile one bundle on this node with the backend of its format."""
    from edgesdk.profiler import profile_bundle

    with tempfile.TemporaryDirectory(prefix="edgesdk-measure-") as scratch:
        if request.archive is not None:
            bundle = unpack_bundle(request.archive, Path(scratch) / "bundle")
        elif request.bundle is not None:
            bundle = Path(request.bundle)
        else:
            raise BundleError("a measurement needs a bundle folder or its archive")
        with warnings.catch_warnings():
            # A matrix entry holds random weights only when it says random_weights: true; the
            # warning would repeat at every load of every cell.
            warnings.simplefilter("ignore", BundleWarning)
            outcome = profile_bundle(bundle, backend=BACKEND_OF_FORMAT[request.format], runs=request.runs,
                                     warmup=request.warmup, stream=request.stream, energy=request.energy)
    result = outcome.result
    latency, energy = result["latency"], result["energy"]
    return MeasureSummary(
        p50_ms=float(latency["p50_ms"]), p90_ms=float(latency["p90_ms"]), mean_ms=float(latency["mean_ms"]),
        latency_provenance=str(latency["provenance"]),
        energy_per_inference_j=energy.get("energy_per_inference_j"),
        energy_provenance=energy.get("provenance") if energy.get("energy_per_inference_j") is not None else None,
        device_model=str(result["device"]["model"]), device_profile=str(result["device"]["profile"]),
        backend=str(result["backend"]["name"]), peak_rss_mib=result.get("memory", {}).get("peak_rss_mib"),
        runtime_versions=tuple(package_versions(RUNTIME_PACKAGES).items()),
    )
