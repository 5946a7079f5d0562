"""The sweep matrix: models x formats x precisions x devices, read from YAML, and its cells.

    name: kws-small
    models:
      - family: lmuformer              # a registered family and preset ...
        preset: tiny
        options: {}                    # recipe options, as `edgesdk export --option`
      - factory: examples.python.tiny_models:classifier   # ... or your own module
        name: classifier
        inputs: {features: 1x40x17}
    formats: [onnx, tflite]
    precisions: [fp32, int8-dynamic]   # as `edgesdk export --precision` (int8 = int8-dynamic)
    devices: [local]                   # device profiles; `local` is this machine's own
    export: {atol: 1.0e-4}             # options for every export
    profile: {runs: 50, warmup: 5, energy: auto}

Every value that decides a result goes into the cell's cache keys (``export_key``,
``measure_key``): the model entry with the bytes of its source and checkpoint, the format,
precision and options, the installed converter and runtime versions, the device and the
profile settings. A cell whose keys are in the cache is not computed again.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgesdk._version import __version__
from edgesdk.errors import UsageError

FORMATS = ("onnx", "tflite")
# `edgesdk export --precision` names; int8-static is left out (it needs calibration data per model).
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-weight-only")
# Older matrices said int8 for TFLite dynamic-range weights, which is int8-dynamic.
PRECISION_ALIASES = {"int8": "int8-dynamic"}
ENERGY_SOURCES = ("auto", "estimate", "rapl", "ina3221", "nvml", "android")
LOCAL_DEVICE = "local"
EXPORT_PACKAGES = ("torch", "onnx", "onnxscript", "litert-torch", "ai-edge-quantizer")
RUNTIME_PACKAGES = ("onnxruntime", "ai-edge-litert", "numpy")
_EDGESDK_ROOT = Path(__file__).resolve().parents[1]


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Installed versions (None where absent), read from metadata without importing anything."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _shape(text: Any, where: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in str(text).lower().split("x"))
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a shape like 1x40x17") from None
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"{where}: every dimension of {text!r} must be a positive integer")
    return shape


def _freeze(value: Any) -> Any:
    """JSON-like value -> hashable, order-independent form (for frozen dataclasses)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class ModelEntry:
    """One model of the matrix: a registered family and preset, or a user factory.

    Attributes:
        name: its label in the results (default: family-preset, or the factory's name).
        family, preset, checkpoint: a registered family (``edgesdk models``).
        random_weights: a family without a checkpoint, asked for on purpose (``random_weights: true``).
        factory: ``package.module:function`` returning an nn.Module (with ``inputs``).
        inputs, states: factory only: name -> example shape.
        mode: ``full`` or ``stream``.
        options: recipe options as ``(key, value)`` pairs, sorted.
        source_sha256: the bytes that define the model (the family's or factory's source file,
            and the checkpoint), so an edit invalidates the cache.
    """

    name: str
    family: str | None = None
    preset: str | None = None
    checkpoint: str | None = None
    random_weights: bool = False
    factory: str | None = None
    inputs: tuple[tuple[str, tuple[int, ...]], ...] = ()
    states: tuple[tuple[str, tuple[int, ...]], ...] = ()
    mode: str = "full"
    options: tuple[tuple[str, Any], ...] = ()
    source_sha256: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProfileSettings:
    """How each cell is measured (``edgesdk profile`` options)."""

    runs: int = 50
    warmup: int = 5
    energy: str = "auto"


@dataclass(frozen=True)
class Cell:
    """One (model, format, precision, device) of the matrix."""

    model: ModelEntry
    format: str
    precision: str
    device: str

    @property
    def cell_id(self) -> str:
        return f"{self.model.name}/{self.format}/{self.precision}/{self.device}"

    @property
    def unsupported(self) -> str | None:
        """Why this combination cannot be exported today (None: it can)."""
        from edgesdk.exporters.precision import SUPPORTED, UNSUPPORTED_REASON

        if self.precision not in SUPPORTED[self.format]:
            return UNSUPPORTED_REASON.get((self.format, self.precision),
                                          f"{self.format} has no {self.precision} export")
        return None


@dataclass(frozen=True)
class Matrix:
    """A parsed matrix file."""

    name: str
    models: tuple[ModelEntry, ...]
    formats: tuple[str, ...]
    precisions: tuple[str, ...]
    devices: tuple[str, ...]
    export_options: tuple[tuple[str, Any], ...]
    profile: ProfileSettings
    base_dir: Path

    def cells(self) -> list[Cell]:
        return [Cell(model, fmt, precision, device)
                for model in self.models for fmt in self.formats
                for precision in self.precisions for device in self.devices]

    def export_key(self, cell: Cell) -> str:
        """Hash of what decides the bundle: model, options, format, precision, converter versions."""
        return _digest({
            "edgesdk": __version__, "model": cell.model.to_dict(), "format": cell.format,
            "precision": cell.precision, "export_options": self.export_options,
            "versions": package_versions(EXPORT_PACKAGES),
        })

    def measure_key(self, cell: Cell, device_profile: str) -> str:
        """Hash of what decides the measurement: the bundle, the device, settings, runtime versions."""
        return _digest({
            "export": self.export_key(cell), "device": device_profile, "profile": asdict(self.profile),
            "versions": package_versions(RUNTIME_PACKAGES),
        })


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _source_hashes(family: str | None, factory: str | None, checkpoint: Path | None) -> tuple[tuple[str, str], ...]:
    hashes: list[tuple[str, str]] = []
    if family is not None:
        source = _EDGESDK_ROOT / "models" / f"{family}.py"
        if source.is_file():
            hashes.append((str(source.name), _sha256_file(source)))
    if factory is not None:
        module_name = factory.rpartition(":")[0]
        if module_name.endswith(".py"):  # path/to/mods.py:factory
            if Path(module_name).is_file():
                hashes.append((module_name, _sha256_file(Path(module_name))))
        else:
            try:
                spec = importlib.util.find_spec(module_name)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and Path(spec.origin).is_file():
                hashes.append((module_name, _sha256_file(Path(spec.origin))))
    if checkpoint is not None:
        hashes.append((checkpoint.name, _sha256_file(checkpoint)))
    return tuple(hashes)


def _precision_names(raw: Any) -> Any:
    values = [raw] if isinstance(raw, str) else raw
    return [PRECISION_ALIASES.get(value, value) for value in values] if isinstance(values, list) else raw


def _choices(raw: Any, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    values = [raw] if isinstance(raw, str) else raw
    if not isinstance(values, list) or not values:
        raise UsageError(f"matrix {what}: give a non-empty list from {', '.join(allowed)}")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise UsageError(f"matrix {what}: unknown {', '.join(map(str, unknown))}; choose from {', '.join(allowed)}")
    return tuple(dict.fromkeys(values))


def _model_entry(raw: Any, index: int, base_dir: Path) -> ModelEntry:
    where = f"matrix models[{index}]"
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where} must be a mapping with family/preset or factory")
    known = {"name", "family", "preset", "checkpoint", "random_weights", "factory", "inputs", "states", "mode", "options"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UsageError(f"{where}: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    family, factory = raw.get("family"), raw.get("factory")
    if (family is None) == (factory is None):
        raise UsageError(f"{where}: give exactly one of family (with preset) or factory (package.module:function)")
    if factory is not None and (":" not in str(factory) or not raw.get("inputs")):
        raise UsageError(f"{where}: a factory looks like package.module:function (or path/to/mods.py:function) and needs inputs: {{name: 1x40x17}}")
    if family is not None and (raw.get("inputs") or raw.get("states")):
        raise UsageError(f"{where}: inputs and states describe a factory's module; a family knows its own")
    mode = raw.get("mode", "full")
    if mode not in ("full", "stream"):
        raise UsageError(f"{where}: mode must be full or stream, not {mode!r}")
    options = raw.get("options") or {}
    if not isinstance(options, Mapping):
        raise UsageError(f"{where}: options must be a mapping")
    checkpoint = None
    if raw.get("checkpoint") is not None:
        checkpoint = (base_dir / str(raw["checkpoint"])).resolve()
        if not checkpoint.is_file():
            raise UsageError(f"{where}: checkpoint {checkpoint} does not exist")
    random_weights = raw.get("random_weights", False)
    if not isinstance(random_weights, bool):
        raise UsageError(f"{where}: random_weights must be true or false, not {random_weights!r}")
    if family is not None and (checkpoint is None) != random_weights:
        raise UsageError(f"{where}: give {family} a checkpoint: FILE, or random_weights: true to export seeded "
                         "random weights on purpose (not both)")
    if factory is not None and random_weights:
        raise UsageError(f"{where}: random_weights applies to a family without a checkpoint, not to a factory")
    inputs = tuple((str(k), _shape(v, where)) for k, v in (raw.get("inputs") or {}).items())
    states = tuple((str(k), _shape(v, where)) for k, v in (raw.get("states") or {}).items())
    if states and mode != "stream":
        mode = "stream"
    name = raw.get("name") or (f"{family}-{raw.get('preset')}" if family else str(factory).rpartition(":")[2])
    return ModelEntry(
        name=str(name), family=family, preset=raw.get("preset"), checkpoint=str(checkpoint) if checkpoint else None,
        random_weights=random_weights,
        factory=factory, inputs=inputs, states=states, mode=mode, options=_freeze(dict(options)),
        source_sha256=_source_hashes(family, factory, checkpoint),
    )


def parse_matrix(data: Any, base_dir: Path = Path(".")) -> Matrix:
    """A matrix from its parsed YAML (a mapping); UsageError naming the bad key otherwise."""
    if not isinstance(data, Mapping):
        raise UsageError("a sweep matrix must be a mapping with models, formats, precisions, devices")
    known = {"name", "models", "formats", "precisions", "devices", "export", "profile"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"matrix: unknown keys {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    raw_models = data.get("models")
    if not isinstance(raw_models, list) or not raw_models:
        raise UsageError("matrix models: give a non-empty list")
    models = tuple(_model_entry(raw, i, base_dir) for i, raw in enumerate(raw_models))
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"matrix models: names must differ (give each a name:); repeated: {', '.join(duplicates)}")
    devices = data.get("devices", [LOCAL_DEVICE])
    devices = [devices] if isinstance(devices, str) else devices
    if not isinstance(devices, list) or not devices or not all(isinstance(d, str) and d for d in devices):
        raise UsageError("matrix devices: give a list of device profile names (local: this machine)")
    export_options = data.get("export") or {}
    if not isinstance(export_options, Mapping):
        raise UsageError("matrix export: must be a mapping of export options (atol, rtol, opset, min_sqnr_db)")
    allowed_export = {"atol", "rtol", "opset", "min_sqnr_db"}
    if set(export_options) - allowed_export:
        raise UsageError(f"matrix export: unknown {', '.join(sorted(set(export_options) - allowed_export))}; "
                         f"known: {', '.join(sorted(allowed_export))} (recipe options go under each model's options)")
    raw_profile = data.get("profile") or {}
    if not isinstance(raw_profile, Mapping) or set(raw_profile) - {"runs", "warmup", "energy"}:
        raise UsageError("matrix profile: a mapping of runs, warmup, energy")
    profile = ProfileSettings(**raw_profile)
    if not (isinstance(profile.runs, int) and profile.runs >= 1 and isinstance(profile.warmup, int) and profile.warmup >= 0):
        raise UsageError("matrix profile: runs must be an integer >= 1 and warmup >= 0")
    if profile.energy not in ENERGY_SOURCES:
        raise UsageError(f"matrix profile energy: choose from {', '.join(ENERGY_SOURCES)}")
    return Matrix(
        name=str(data.get("name") or "sweep"), models=models,
        formats=_choices(data.get("formats", list(FORMATS)), FORMATS, "formats"),
        precisions=_choices(_precision_names(data.get("precisions", ["fp32"])), PRECISIONS, "precisions"),
        devices=tuple(dict.fromkeys(devices)), export_options=_freeze(dict(export_options)),
        profile=profile, base_dir=base_dir,
    )


def load_matrix(path: str | Path) -> Matrix:
    """Read a matrix file (YAML, or JSON, which YAML reads too)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise UsageError(f"cannot read the matrix {path}: {error.strerror}") from None
    try:
        import yaml
    except ImportError:
        if path.suffix != ".json":
            raise UsageError("reading a YAML matrix needs PyYAML: pip install 'edgesdk[export]' (or give JSON)") from None
        data = json.loads(text)
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UsageError(f"{path} is not valid YAML: {error}") from None
    return parse_matrix(data, path.resolve().parent)
