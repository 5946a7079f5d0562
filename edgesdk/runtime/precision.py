"""Precision in the runtime (torch-free): picking an artifact by precision, and float in, float
out for a full-integer artifact.

A bundle may hold one artifact per format and precision. ``select_artifacts`` keeps, per
format, the one asked for (default: float32 where there is one, so a bundle's behaviour does
not change when reduced-precision files are added beside it).

A static int8 (or int16-activation) TFLite file takes and returns integers. Its manifest entry
records, per logical input and output, ``{dtype, scale, zero_point}`` (``io_quantization``);
the runtime quantizes float feeds with them and dequantizes the outputs, so ``Model.run`` and
``Stream.push`` take and return float32 as for every other artifact. State round-trips through
float: the quantizer gives a state's input and output the same parameters, so the step is exact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from edgesdk.errors import UsageError

# User names of precisions and the names manifests record.
PRECISION_NAMES = {"fp32": "float32", "fp16": "float16"}
MANIFEST_PRECISIONS = frozenset({"float32", "float16", "int8-dynamic", "int8-weight-only", "int8-static"})


def manifest_precision(name: str) -> str:
    """'fp32' -> 'float32'; other names as they are."""
    return PRECISION_NAMES.get(name, name)


@dataclass(frozen=True)
class QuantizationParameters:
    """real = scale * (integer - zero_point)."""

    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def from_manifest(cls, entry: Mapping[str, Any]) -> "QuantizationParameters":
        return cls(str(entry["dtype"]), float(entry["scale"]), int(entry["zero_point"]))

    def quantize(self, values: np.ndarray) -> np.ndarray:
        info = np.iinfo(self.dtype)
        scaled = np.round(values.astype(np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(scaled, info.min, info.max).astype(self.dtype)

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        return ((values.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)).astype(np.float32)


@dataclass(frozen=True)
class IoQuantization:
    """Logical input/output name -> its parameters (only the integer ones)."""

    inputs: dict[str, QuantizationParameters]
    outputs: dict[str, QuantizationParameters]

    @classmethod
    def from_manifest(cls, section: Mapping[str, Any] | None) -> "IoQuantization | None":
        if not section:
            return None
        return cls({n: QuantizationParameters.from_manifest(e) for n, e in section.get("inputs", {}).items()},
                   {n: QuantizationParameters.from_manifest(e) for n, e in section.get("outputs", {}).items()})

    def quantize_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: self.inputs[n].quantize(v) if n in self.inputs else v for n, v in feeds.items()}

    def dequantize_results(self, results: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: self.outputs[n].dequantize(v) if n in self.outputs else v for n, v in results.items()}


def select_artifacts(manifest: Mapping[str, Any], precision: str | None, source: Any) -> dict[str, Any]:
    """A copy of ``manifest`` listing one artifact per format: of ``precision``, or the default.

    Raises UsageError when no artifact has the asked precision (naming those there are).
    """
    artifacts = list(manifest["artifacts"])
    present = sorted({a.get("precision", "float32") for a in artifacts})
    if precision is not None:
        wanted = manifest_precision(precision)
        chosen = [a for a in artifacts if a.get("precision", "float32") == wanted]
        if not chosen:
            raise UsageError(f"{source} has no {precision} artifact (it has: {', '.join(present)})")
    else:
        chosen = []
        for fmt in dict.fromkeys(a["format"] for a in artifacts):
            of_format = [a for a in artifacts if a["format"] == fmt]
            floats = [a for a in of_format if a.get("precision", "float32") == "float32"]
            chosen.append((floats or of_format)[0])
    picked: dict[str, dict[str, Any]] = {}
    for artifact in chosen:
        picked.setdefault(artifact["format"], artifact)
    selected = dict(manifest)
    selected["artifacts"] = list(picked.values())
    return selected
