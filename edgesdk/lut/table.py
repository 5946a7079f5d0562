"""A LightHuBERT block latency table, measured on this device, and its check against whole subnets.

Every subnet of a LightHuBERT supernet is built from a few kinds of blocks (``BLOCK_KINDS``): the
CNN front end (the same in every subnet), the projection to width e, the positional conv with the
encoder LayerNorm at width e, and encoder layers, one per (e, heads, FFN) choice. ``build_table``
exports each block on its own to the chosen format and precision at the chosen input length,
measures it through ``edgesdk.runtime`` (``edgesdk.lut.measure``, sent through the executor) and
writes a ``LatencyTable``. A subnet's latency is predicted from its blocks' medians.

A sum of separately measured blocks misses what the whole graph does differently (fusion across
block edges, cache effects, fixed per-call costs), so ``validate_table`` measures N random whole
subnets end to end (min and max always among them), fits ``measured = scale x sum + offset`` to
them and reports the error by leave-one-out (each subnet predicted by a fit that did not see it).
When the fitted sum is not good enough (fewer than ``GOOD_SHARE`` of subnets within ±10 %) and a
small regression on the subnets' MAC counts does better, the regression becomes the predictor.
The table file records which predictor is in use.
"""
from __future__ import annotations

import datetime as _datetime
import hashlib
import json
import math
import os
import random
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgesdk.errors import EdgeSDKError, UsageError
from edgesdk.lut.measure import EnergyFigure, LatencyFigure, Measurement, MeasureRequest, measure_bundle

SCHEMA_VERSION = 1
BLOCK_KINDS = ("cnn", "projection", "positional", "layer")
FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-weight-only")  # int8-static needs calibration audio
GOOD_SHARE = 0.8  # the fitted sum is "good enough" when this share of subnets is within ±10 %
Say = Callable[[str], None]


def _quiet(message: str) -> None:
    """The default progress callback: says nothing."""


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class BlockKey:
    """One block the search space can produce. Widths are 0 where the kind has none."""

    kind: str
    embed_dim: int = 0
    heads: int = 0
    ffn_embed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in BLOCK_KINDS:
            raise UsageError(f"block kind must be one of {', '.join(BLOCK_KINDS)}, not {self.kind!r}")

    @property
    def name(self) -> str:
        if self.kind == "cnn":
            return "cnn"
        if self.kind == "layer":
            return f"layer-e{self.embed_dim}-h{self.heads}-f{self.ffn_embed}"
        return f"{self.kind}-e{self.embed_dim}"


@dataclass(frozen=True)
class BlockEntry:
    key: BlockKey
    latency: LatencyFigure
    energy: EnergyFigure | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.key.name, "kind": self.key.kind, "embed_dim": self.key.embed_dim,
                "heads": self.key.heads, "ffn_embed": self.key.ffn_embed, "latency": self.latency.to_dict(),
                "energy": self.energy.to_dict() if self.energy else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BlockEntry":
        key = BlockKey(data["kind"], int(data["embed_dim"]), int(data["heads"]), int(data["ffn_embed"]))
        return cls(key, LatencyFigure.from_dict(data["latency"]), EnergyFigure.from_dict(data.get("energy")))


@dataclass(frozen=True)
class SupernetFacts:
    """Which supernet the table is for, and the shape facts the regression predictor needs."""

    supernet_type: str
    preset: str | None
    checkpoint_sha256: str | None
    config_digest: str
    cnn_channels: int
    conv_pos: int
    conv_pos_groups: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SupernetFacts":
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TableConditions:
    """How and where the table was measured; a search refuses a table whose conditions differ."""

    format: str
    precision: str
    seconds: float
    samples: int
    frames: int
    threads: int
    runs: int
    warmup: int
    device_profile: str
    device_model: str
    backend: str
    providers: tuple[str, ...]
    runtime_versions: tuple[tuple[str, str | None], ...]
    load_average: tuple[float, float, float] | None
    energy: str  # "measured:<sensor>" or why energy is absent
    built_utc: str
    rounds: int = 1  # the runs were split into this many rounds over all blocks (``measure_all``)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["providers"] = list(self.providers)
        data["runtime_versions"] = dict(self.runtime_versions)
        data["load_average"] = list(self.load_average) if self.load_average else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TableConditions":
        values = {name: data[name] for name in cls.__dataclass_fields__ if name != "rounds"}
        values["rounds"] = int(data.get("rounds", 1))  # tables written before rounds existed
        values["providers"] = tuple(values["providers"])
        values["runtime_versions"] = tuple(values["runtime_versions"].items())
        values["load_average"] = tuple(values["load_average"]) if values["load_average"] else None
        return cls(**values)

    def check(self, *, device_profile: str, format: str | None = None, precision: str | None = None,
              seconds: float | None = None, table: str = "the table") -> None:
        """UsageError naming every condition that differs from what is asked."""
        differences = []
        if device_profile != self.device_profile:
            differences.append(f"device profile {self.device_profile!r}, this device is {device_profile!r}")
        if format is not None and format != self.format:
            differences.append(f"format {self.format!r}, asked {format!r}")
        if precision is not None and precision != self.precision:
            differences.append(f"precision {self.precision!r}, asked {precision!r}")
        if seconds is not None and round(seconds * 16000) != self.samples:
            differences.append(f"input length {self.seconds:g} s, asked {seconds:g} s")
        if differences:
            raise UsageError(f"{table} was built for another setting: " + "; ".join(differences)
                             + ". Build a table for this one with `edgesdk lut build`.")


PREDICTOR_KINDS = ("table-sum", "table-sum-fit", "regression")
REGRESSION_FEATURES = ("1", "front_macs", "attention_macs", "ffn_macs", "layers")


@dataclass(frozen=True)
class Predictor:
    """How a subnet's latency is predicted from the table.

    ``table-sum``: the sum of the subnet's block medians (before validation).
    ``table-sum-fit``: ``coefficients[0] x sum + coefficients[1]`` ms.
    ``regression``: a linear model over ``REGRESSION_FEATURES`` (MAC counts at the table's input
    length, in G) fitted on whole-subnet measurements; the table's blocks are then not used.
    """

    kind: str = "table-sum"
    coefficients: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in PREDICTOR_KINDS:
            raise UsageError(f"predictor must be one of {', '.join(PREDICTOR_KINDS)}, not {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "coefficients": list(self.coefficients)}
        if self.kind == "regression":
            data["features"] = list(REGRESSION_FEATURES)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Predictor":
        return cls(str(data["kind"]), tuple(float(c) for c in data["coefficients"]))


@dataclass(frozen=True)
class ValidationRow:
    subnet: dict[str, Any]
    measured: LatencyFigure
    table_sum_ms: float
    fitted_ms: float  # leave-one-out prediction of the fitted sum
    regression_ms: float  # leave-one-out prediction of the regression

    def to_dict(self) -> dict[str, Any]:
        return {"subnet": self.subnet, "measured": self.measured.to_dict(), "table_sum_ms": self.table_sum_ms,
                "fitted_ms": self.fitted_ms, "regression_ms": self.regression_ms}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ValidationRow":
        return cls(data["subnet"], LatencyFigure.from_dict(data["measured"]), float(data["table_sum_ms"]),
                   float(data["fitted_ms"]), float(data["regression_ms"]))


@dataclass(frozen=True)
class ErrorFigures:
    """Prediction error over the validation subnets (percent of the measured median)."""

    mape_percent: float
    within_10_percent: float  # share of subnets, 0..1
    within_15_percent: float

    @classmethod
    def of(cls, predicted: Sequence[float], measured: Sequence[float]) -> "ErrorFigures":
        errors = np.abs(np.asarray(predicted) - np.asarray(measured)) / np.asarray(measured)
        return cls(float(errors.mean() * 100), float((errors <= 0.10).mean()), float((errors <= 0.15).mean()))

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ErrorFigures":
        return cls(**{name: float(data[name]) for name in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ValidationReport:
    rows: tuple[ValidationRow, ...]
    raw_sum: ErrorFigures
    fitted_sum: ErrorFigures
    regression: ErrorFigures
    predictor: Predictor
    reason: str
    min_subnet_ms: float
    max_subnet_ms: float
    seed: int
    validated_utc: str

    def to_dict(self) -> dict[str, Any]:
        return {"subnets": len(self.rows), "seed": self.seed, "validated_utc": self.validated_utc,
                "error": {"table-sum": self.raw_sum.to_dict(), "table-sum-fit": self.fitted_sum.to_dict(),
                          "regression": self.regression.to_dict()},
                "error_method": "leave-one-out for the fitted predictors; in percent of the measured median",
                "predictor": self.predictor.to_dict(), "reason": self.reason,
                "min_subnet_ms": self.min_subnet_ms, "max_subnet_ms": self.max_subnet_ms,
                "rows": [row.to_dict() for row in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ValidationReport":
        error = data["error"]
        return cls(tuple(ValidationRow.from_dict(row) for row in data["rows"]),
                   ErrorFigures.from_dict(error["table-sum"]), ErrorFigures.from_dict(error["table-sum-fit"]),
                   ErrorFigures.from_dict(error["regression"]), Predictor.from_dict(data["predictor"]),
                   str(data["reason"]), float(data["min_subnet_ms"]), float(data["max_subnet_ms"]),
                   int(data["seed"]), str(data["validated_utc"]))


@dataclass(frozen=True)
class LatencyTable:
    """A measured block table (``lut.json``), with its validation once ``validate_table`` ran."""

    supernet: SupernetFacts
    conditions: TableConditions
    blocks: tuple[BlockEntry, ...]
    validation: ValidationReport | None = None
    _index: dict = field(default=None, init=False, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {entry.key: entry for entry in self.blocks})

    # -------------------------------------------------------------- prediction
    def block(self, key: BlockKey) -> BlockEntry:
        try:
            return self._index[key]
        except KeyError:
            raise UsageError(f"the table has no block {key.name}: was it built for this supernet's search space?") from None

    def subnet_blocks(self, subnet) -> list[BlockKey]:
        """The blocks a subnet (``SubnetConfig``) runs, in order."""
        e = subnet.embed_dim
        keys = [BlockKey("cnn"), BlockKey("projection", e), BlockKey("positional", e)]
        keys += [BlockKey("layer", e, h, f) for h, f in zip(subnet.heads_num, subnet.ffn_embed)]
        return keys

    def table_sum_ms(self, subnet) -> float:
        return float(sum(self.block(key).latency.median_ms for key in self.subnet_blocks(subnet)))

    def table_spread_ms(self, subnet) -> float:
        """Root-sum-square of the blocks' interquartile ranges (blocks measured independently)."""
        return float(math.sqrt(sum(self.block(key).latency.spread_ms ** 2 for key in self.subnet_blocks(subnet))))

    @property
    def predictor(self) -> Predictor:
        return self.validation.predictor if self.validation else Predictor()

    def predict_ms(self, subnet) -> float:
        """Predicted latency of ``subnet`` by the table's predictor."""
        return predict_with(self.predictor, self.table_sum_ms(subnet), regression_features(self, subnet))

    def energy_mj(self, subnet) -> float | None:
        """Sum of the blocks' measured energy, or None when the table has no energy."""
        figures = [self.block(key).energy for key in self.subnet_blocks(subnet)]
        if any(figure is None for figure in figures):
            return None
        return float(sum(figure.mean_mj for figure in figures))  # type: ignore[union-attr]

    @property
    def has_energy(self) -> bool:
        return bool(self.blocks) and all(entry.energy is not None for entry in self.blocks)

    # -------------------------------------------------------------- files
    def content(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "family": "lighthubert", "supernet": self.supernet.to_dict(),
                "conditions": self.conditions.to_dict(), "blocks": [entry.to_dict() for entry in self.blocks],
                "validation": self.validation.to_dict() if self.validation else None}

    def digest(self) -> str:
        """sha256 of the table's content (canonical JSON): what a subnet.json cites."""
        text = json.dumps(self.content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        """Write atomically (temporary file + rename): a reader never sees half a table."""
        path = Path(path)
        data = self.content()
        data["sha256"] = self.digest()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1)
                out.write("\n")
            os.chmod(temporary, 0o644)  # mkstemp makes it private; a table is for sharing
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"latency table {path} does not exist") from None
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"latency table {path} is not readable JSON: {error}") from None
        if not isinstance(data, dict) or data.get("family") != "lighthubert":
            raise UsageError(f"{path} is not a LightHuBERT latency table (written by `edgesdk lut build`)")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise UsageError(f"{path}: table schema_version {data.get('schema_version')!r}; this edgesdk reads {SCHEMA_VERSION}")
        try:
            table = cls(SupernetFacts.from_dict(data["supernet"]), TableConditions.from_dict(data["conditions"]),
                        tuple(BlockEntry.from_dict(entry) for entry in data["blocks"]),
                        ValidationReport.from_dict(data["validation"]) if data.get("validation") else None)
        except (KeyError, TypeError, ValueError) as error:
            raise UsageError(f"{path}: malformed latency table ({type(error).__name__}: {error})") from None
        if data.get("sha256") != table.digest():
            raise UsageError(f"{path}: content does not match its sha256 (edited by hand?); rebuild or re-validate it")
        return table


def predict_with(predictor: Predictor, table_sum_ms: float, features: np.ndarray) -> float:
    if predictor.kind == "table-sum":
        return table_sum_ms
    if predictor.kind == "table-sum-fit":
        scale, offset = predictor.coefficients
        return scale * table_sum_ms + offset
    return float(np.dot(predictor.coefficients, features))


def regression_features(table: LatencyTable, subnet) -> np.ndarray:
    """MAC counts (in G) of the parts of ``subnet`` at the table's input length."""
    facts, T, e = table.supernet, table.conditions.frames, subnet.embed_dim
    front = T * e * facts.cnn_channels + T * e * (e // facts.conv_pos_groups) * facts.conv_pos
    attention = sum(4 * T * e * a + 2 * T * T * a for a in subnet.atten_dim)
    ffn = sum(2 * T * e * f for f in subnet.ffn_embed)
    return np.array([1.0, front * 1e-9, attention * 1e-9, ffn * 1e-9, float(subnet.layer_num)])


# ----------------------------------------------------------------------------------------------
# Measuring through the executor
# ----------------------------------------------------------------------------------------------


def measure_all(requests: Sequence[MeasureRequest], executor=None, device: str | None = None,
                say: Say = _quiet, rounds: int = 1) -> dict[str, Measurement]:
    """Measure each request through ``executor`` (default: in-process), one at a time per device.

    ``rounds`` > 1 splits each request's runs into that many rounds over all requests (A B C A B
    C ...) and pools each key's calls: a load that comes and goes on the machine then falls on
    every block or subnet alike instead of on the few measured at that moment.
    Any failed measurement is raised (with its exit code): a table with a hole is no table.
    """
    from dataclasses import replace as replaced

    from edgesdk.executor import InProcessExecutor, Task
    from edgesdk.lut.measure import pooled

    own = executor is None
    executor = executor or InProcessExecutor(device=device)
    rounds = max(1, min(rounds, min((r.runs for r in requests), default=1) // 3))  # at least 3 runs a round
    parts: dict[str, list[Measurement]] = {request.key: [] for request in requests}
    try:
        tasks = [Task(f"{request.key}@{round_}", measure_bundle,
                      (replaced(request, runs=request.runs // rounds + (round_ < request.runs % rounds)),),
                      kind="measure", device=device)
                 for round_ in range(rounds) for request in requests]
        for outcome in executor.run(tasks):
            key = outcome.key.rpartition("@")[0]
            if not outcome.ok:
                error = EdgeSDKError(f"measuring {key} failed: {outcome.error}")
                error.exit_code = outcome.exit_code
                raise error
            parts[key].append(outcome.value)
            if len(parts[key]) == rounds:
                figure = pooled(parts[key]).latency
                say(f"{key}: {figure.median_ms:.3f} ms (IQR {figure.spread_ms:.3f}, {figure.runs} runs in {rounds} rounds)")
    finally:
        if own:
            executor.close()
    return {key: pooled(measurements) for key, measurements in parts.items()}


def export_block(module, example, folder: Path, fmt: str, precision: str) -> Path:
    """The default block exporter: a validated edgesdk bundle (input ``x``), what the runtime loads."""
    from edgesdk.exporters.bundle import export

    export(module, folder, formats=(fmt,), example_inputs={"x": example}, precision=precision, force=True)
    return folder


def subnet_export_options(subnet, conditions: "TableConditions") -> dict[str, Any]:
    """The lighthubert recipe options of a whole-subnet measurement: last hidden state, input fixed
    at the table's length (``fixed_shape``). `edgesdk export` with these options ships the very
    graph that was measured; subnet.json records them."""
    return {"subnet": subnet.to_dict(), "layers": "last", "window_seconds": conditions.seconds, "fixed_shape": True}


def export_subnet(supernet, subnet, folder: Path, conditions: "TableConditions") -> Path:
    """The default whole-subnet exporter: the family recipe (validated, as `edgesdk export` writes
    it) with ``subnet_export_options``.

    The fixed shape matters twice: blocks are measured at fixed shapes, and onnxruntime fuses a
    fixed graph differently (MatMul+Add into Gemm, the GELU pattern) than the default
    batch/length-dynamic one; and torch.export traces a fixed graph several times faster
    (a Small subnet: ~15 s against ~2-3 min here)."""
    from edgesdk.exporters.bundle import export
    from edgesdk.models.info import model_info

    # Latency does not depend on the weights: a supernet without a checkpoint is measured as it is,
    # and its bundles (scratch, never shipped) say so in their manifests.
    export(supernet, folder, formats=(conditions.format,), precision=conditions.precision, force=True,
           random_weights=model_info(supernet).random_weights, **subnet_export_options(subnet, conditions))
    return folder


def _request(key: str, folder: Path, input_name: str, shape: tuple[int, ...], fmt: str, precision: str,
             threads: int, runs: int, warmup: int, energy: str, archive: bool) -> MeasureRequest:
    if archive:  # the executor's workers may not share this file system (Ray)
        from edgesdk.folders import pack_bundle

        inner = None if folder.is_dir() else folder.name  # a lone model file: named inside the archive
        packed = pack_bundle(folder if folder.is_dir() else folder.parent)
        return MeasureRequest(key, inner, packed, input_name, shape, fmt, precision, threads, runs, warmup, energy)
    return MeasureRequest(key, str(folder), None, input_name, shape, fmt, precision, threads, runs, warmup, energy)


def _check_settings(fmt: str, precision: str, seconds: float, threads: int, runs: int) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)} for a latency table, not {precision!r}")
    if not seconds > 0:
        raise UsageError(f"--seconds must be positive, not {seconds}")
    if threads < 1 or runs < 3:
        raise UsageError("--threads must be at least 1 and --repeats at least 3")


# ----------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------


def supernet_facts(supernet, preset: str | None, checkpoint: str | Path | None) -> SupernetFacts:
    from dataclasses import asdict

    config = supernet.config
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()[:16]
    checkpoint_sha = None
    if checkpoint is not None:
        sha = hashlib.sha256()
        with open(checkpoint, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
        checkpoint_sha = sha.hexdigest()
    return SupernetFacts(config.supernet_type, preset, checkpoint_sha, digest, config.cnn_channels,
                         config.conv_pos, config.conv_pos_groups)


def table_blocks(config) -> list[BlockKey]:
    """Every block the supernet's search space can produce."""
    space = config.search_space
    keys = [BlockKey("cnn")]
    for e in space.embed_dims:
        keys += [BlockKey("projection", e), BlockKey("positional", e)]
        keys += [BlockKey("layer", e, h, f) for h in space.heads for f in space.allowed_ffn(e)]
    return keys


def _block_modules(supernet, samples: int) -> dict[BlockKey, tuple[Any, Any]]:
    """(module, example input) per block, cut from the supernet by ``extract_subnet``: one
    extraction per width whose layers cover that width's (heads, FFN) choices."""
    import torch
    from torch import nn

    from edgesdk.models.lighthubert import HEAD_DIM, SubnetConfig, extract_subnet, frames_for_samples

    config = supernet.config
    space = config.search_space
    frames = frames_for_samples(samples, config.conv_feature_layers)
    generator = torch.Generator().manual_seed(0)
    modules: dict[BlockKey, tuple[Any, Any]] = {}

    class Front(nn.Module):  # waveform -> CNN features after their LayerNorm
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, waveform):
            return self.model.forward_features(waveform)

    class Positional(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model.forward_positional(x)

    depth = max(space.layer_nums)
    for e in space.embed_dims:
        combos = [(h, f) for h in space.heads for f in space.allowed_ffn(e)]
        chunks = [combos[i:i + depth] for i in range(0, len(combos), depth)]
        for chunk in chunks:
            chunk = chunk + [chunk[0]] * (depth - len(chunk))
            subnet = SubnetConfig(e, depth, tuple(h for h, _ in chunk), tuple(h * HEAD_DIM for h, _ in chunk),
                                  tuple(f for _, f in chunk))
            model = extract_subnet(supernet, subnet)
            if BlockKey("cnn") not in modules:
                modules[BlockKey("cnn")] = (Front(model), torch.randn(1, samples, generator=generator))
            hidden = torch.randn(1, frames, e, generator=generator)
            modules[BlockKey("projection", e)] = (model.feature_projection,
                                                 torch.randn(1, frames, config.cnn_channels, generator=generator))
            modules[BlockKey("positional", e)] = (Positional(model), hidden)
            for block, (h, f) in zip(model.blocks, chunk):
                modules.setdefault(BlockKey("layer", e, h, f), (block, hidden))
    return modules


def build_table(supernet, *, format: str = "onnx", precision: str = "fp32", seconds: float = 1.0,
                threads: int = 1, repeats: int = 20, warmup: int = 3, energy: str = "auto",
                preset: str | None = None, checkpoint: str | Path | None = None, executor=None,
                work_dir: str | Path | None = None, say: Say = _quiet, exporter=export_block,
                rounds: int = 1) -> LatencyTable:
    """Export and measure every block of ``supernet``'s search space; returns the table.

    Exports run here (they need torch); the measurements go through ``executor`` (default:
    in-process, one at a time) after all exports are done, so no export competes with a timing.
    ``exporter(module, example, folder, format, precision) -> path`` writes what the runtime loads
    (default ``export_block``: a validated bundle).
    """
    import torch

    from edgesdk.devices.detect import detect_device
    from edgesdk.executor import RayExecutor
    from edgesdk.models.lighthubert import frames_for_samples

    _check_settings(format, precision, seconds, threads, repeats)
    config = supernet.config
    samples = int(round(seconds * config.sample_rate_hz))
    frames = frames_for_samples(samples, config.conv_feature_layers)
    if frames < 1:
        raise UsageError(f"--seconds {seconds:g} is shorter than one frame's receptive field (400 samples = 25 ms)")
    device = detect_device().profile.name
    archive = isinstance(executor, RayExecutor)
    with tempfile.TemporaryDirectory(prefix="edgesdk-lut-build-", dir=work_dir) as scratch:
        requests = []
        with torch.no_grad():
            modules = _block_modules(supernet, samples)
            keys = table_blocks(config)
            for index, key in enumerate(keys):
                module, example = modules[key]
                folder = Path(scratch) / key.name
                say(f"export {index + 1}/{len(keys)} {key.name}")
                artifact = exporter(module.eval(), example, folder, format, precision)
                requests.append(_request(key.name, artifact, "x", tuple(example.shape), format, precision, threads,
                                         repeats, warmup, energy, archive))
        say(f"measuring {len(requests)} blocks ({repeats} runs each in {rounds} round(s), {threads} thread(s))")
        measured = measure_all(requests, executor, device, say, rounds=rounds)
    first = measured[keys[0].name]
    blocks = tuple(BlockEntry(key, measured[key.name].latency, measured[key.name].energy) for key in keys)
    loads = [m.load_average for m in measured.values() if m.load_average]
    conditions = TableConditions(
        format=format, precision=precision, seconds=float(seconds), samples=samples, frames=frames, threads=threads,
        runs=repeats, warmup=warmup, device_profile=first.device_profile, device_model=first.device_model,
        backend=first.backend, providers=first.providers, runtime_versions=first.runtime_versions,
        load_average=tuple(float(np.mean([load[i] for load in loads])) for i in range(3)) if loads else None,
        energy=first.energy.provenance if first.energy else (first.energy_absent_reason or "absent"),
        built_utc=_now(), rounds=rounds,
    )
    return LatencyTable(supernet_facts(supernet, preset, checkpoint), conditions, blocks)


def _now() -> str:
    return _datetime.datetime.now(_datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ----------------------------------------------------------------------------------------------
# Whole subnets: measured end to end
# ----------------------------------------------------------------------------------------------


def measure_subnets(supernet, subnets: Sequence, table: LatencyTable, *, executor=None, repeats: int | None = None,
                    work_dir: str | Path | None = None, say: Say = _quiet, exporter=export_subnet,
                    rounds: int | None = None) -> list[Measurement]:
    """Export each subnet whole (the family recipe: what `edgesdk export` ships, last hidden state)
    at the table's format, precision and input length, then measure each under the table's settings."""
    from edgesdk.devices.detect import detect_device
    from edgesdk.executor import RayExecutor

    conditions = table.conditions
    device = detect_device().profile.name
    archive = isinstance(executor, RayExecutor)
    with tempfile.TemporaryDirectory(prefix="edgesdk-lut-subnets-", dir=work_dir) as scratch:
        requests = []
        for index, subnet in enumerate(subnets):
            folder = Path(scratch) / f"subnet-{index}"
            say(f"export subnet {index + 1}/{len(subnets)}")
            artifact = exporter(supernet, subnet, folder, conditions)
            requests.append(_request(f"subnet-{index}", artifact, "waveform", (1, conditions.samples), conditions.format,
                                     conditions.precision, conditions.threads, repeats or conditions.runs,
                                     conditions.warmup, "auto" if table.has_energy else "off", archive))
        say(f"measuring {len(requests)} whole subnets")
        measured = measure_all(requests, executor, device, say, rounds=conditions.rounds if rounds is None else rounds)
    return [measured[f"subnet-{index}"] for index in range(len(subnets))]


def validation_subnets(config, count: int, seed: int) -> list:
    """``count`` distinct subnets: min and max first, then random ones (upstream's sampling)."""
    from edgesdk.models.lighthubert import max_subnet, min_subnet, sample_subnet

    if count < 3:
        raise UsageError(f"--subnets must be at least 3 (min, max and one random subnet), not {count}")
    space = config.search_space
    chosen = [min_subnet(space), max_subnet(space)]
    rng = random.Random(seed)
    while len(chosen) < count:
        candidate = sample_subnet(space, rng)
        if candidate not in chosen:
            chosen.append(candidate)
    return chosen


def _least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    coefficients, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coefficients


def _leave_one_out(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    predictions = np.empty_like(y)
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        predictions[i] = x[i] @ _least_squares(x[keep], y[keep])
    return predictions


def fit_predictors(table: LatencyTable, subnets: Sequence, measured: Sequence[LatencyFigure],
                   seed: int = 0) -> ValidationReport:
    """Fit the summed table (and the fallback regression) to whole-subnet medians; choose one."""
    y = np.array([figure.median_ms for figure in measured])
    sums = np.array([table.table_sum_ms(subnet) for subnet in subnets])
    sum_x = np.stack([sums, np.ones_like(sums)], axis=1)
    regression_x = np.stack([regression_features(table, subnet) for subnet in subnets])
    fitted_loo = _leave_one_out(sum_x, y)
    regression_loo = _leave_one_out(regression_x, y) if len(y) > regression_x.shape[1] + 1 else np.full_like(y, np.nan)
    raw, fitted = ErrorFigures.of(sums, y), ErrorFigures.of(fitted_loo, y)
    regression = ErrorFigures.of(regression_loo, y) if np.isfinite(regression_loo).all() else ErrorFigures(math.inf, 0.0, 0.0)
    if fitted.within_10_percent >= GOOD_SHARE:
        predictor = Predictor("table-sum-fit", tuple(float(c) for c in _least_squares(sum_x, y)))
        reason = (f"the fitted table sum is within ±10 % for {fitted.within_10_percent:.0%} of the subnets "
                  f"(leave-one-out), at least {GOOD_SHARE:.0%}")
    elif regression.mape_percent < fitted.mape_percent:
        predictor = Predictor("regression", tuple(float(c) for c in _least_squares(regression_x, y)))
        reason = (f"the fitted table sum is within ±10 % for only {fitted.within_10_percent:.0%} of the subnets "
                  f"(MAPE {fitted.mape_percent:.1f} %); the regression on whole subnets does better "
                  f"(MAPE {regression.mape_percent:.1f} %)")
    else:
        predictor = Predictor("table-sum-fit", tuple(float(c) for c in _least_squares(sum_x, y)))
        reason = (f"the fitted table sum is within ±10 % for only {fitted.within_10_percent:.0%} of the subnets, "
                  f"but the regression does no better (MAPE {regression.mape_percent:.1f} % against "
                  f"{fitted.mape_percent:.1f} %): the sum stays")
    rows = tuple(ValidationRow(subnet.to_dict(), figure, float(s), float(f), float(r))
                 for subnet, figure, s, f, r in zip(subnets, measured, sums, fitted_loo, regression_loo))
    return ValidationReport(rows, raw, fitted, regression, predictor, reason, float(y[0]), float(y[1]), seed, _now())


def validate_table(table: LatencyTable, supernet, *, count: int = 30, seed: int = 0, executor=None,
                   repeats: int | None = None, work_dir: str | Path | None = None, say: Say = _quiet,
                   exporter=export_subnet) -> LatencyTable:
    """Measure ``count`` whole subnets (min, max and random ones), fit, choose the predictor; the
    table comes back with its validation (min and max subnet latencies included)."""
    from edgesdk.devices.detect import detect_device

    check_supernet(table, supernet)
    table.conditions.check(device_profile=detect_device().profile.name)
    subnets = validation_subnets(supernet.config, count, seed)
    measured = measure_subnets(supernet, subnets, table, executor=executor, repeats=repeats, work_dir=work_dir, say=say,
                               exporter=exporter)
    report = fit_predictors(table, subnets, [m.latency for m in measured], seed)
    return replace(table, validation=report)


def check_supernet(table: LatencyTable, supernet, table_name: str = "the table") -> None:
    """UsageError unless the table was built for this supernet's architecture."""
    facts = supernet_facts(supernet, None, None)
    if (table.supernet.supernet_type, table.supernet.config_digest) != (facts.supernet_type, facts.config_digest):
        raise UsageError(f"{table_name} was built for another supernet ({table.supernet.supernet_type}, config "
                         f"{table.supernet.config_digest}); this one is {facts.supernet_type}, config {facts.config_digest}")
