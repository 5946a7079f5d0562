"""Reduced precision as a property of an artifact: names, file names and the recipe record.

A bundle may hold several precisions of one model side by side (``model.onnx``,
``model.int8-dynamic.onnx``, ``model.tflite``, ``model.fp16.tflite`` ...). Each artifact's
manifest entry records its ``precision`` and a ``recipe`` (:class:`PrecisionRecipe`): the tool
and its version, the scheme, which ops were quantized, which were kept float and why.

The quantizers are the formats' own tools, never hand-written: ``onnxruntime.quantization``
(``precision/onnx.py``) and ai-edge-quantizer (``precision/tflite.py``). Calibration data for
static int8 comes from real files (``precision/calibration.py``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from edgesdk.errors import UsageError

# What a user asks for (CLI and Python), in the order a bundle lists them.
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-weight-only", "int8-static")
# What the manifest records (``float32`` is what float artifacts have always said).
MANIFEST_PRECISION = {"fp32": "float32", "fp16": "float16", "int8-dynamic": "int8-dynamic",
                      "int8-weight-only": "int8-weight-only", "int8-static": "int8-static"}
USER_PRECISION = {value: key for key, value in MANIFEST_PRECISION.items()}
# Precisions each format can write, and why not where it cannot.
SUPPORTED = {
    "onnx": ("fp32", "fp16", "int8-dynamic", "int8-static"),
    "tflite": ("fp32", "fp16", "int8-dynamic", "int8-weight-only", "int8-static"),
}
UNSUPPORTED_REASON = {
    ("onnx", "int8-weight-only"): "onnxruntime has no int8 weight-only path that computes in float "
                                  "(use int8-dynamic for ONNX, or --format tflite)",
}
# int8-static with 16-bit activations: calibrated ranges are widened this much (a clipped value
# costs more than the 6 dB of 16-bit resolution the margin spends). 8-bit keeps the ranges as
# calibrated: there the margin cost as much as it saved (measured on the KWS spotter).
A16_HEADROOM = 2.0


def parse_precisions(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """'fp32,int8-dynamic' or a sequence -> ('fp32', 'int8-dynamic'); unknown names are UsageError."""
    if value is None:
        return ("fp32",)
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v).strip() for v in value]
    names = [USER_PRECISION.get(n, n) for n in names if n]
    unknown = [n for n in names if n not in PRECISIONS]
    if unknown or not names:
        raise UsageError(f"precision must be among {', '.join(PRECISIONS)}; got {', '.join(unknown) or 'none'}")
    return tuple(sorted(dict.fromkeys(names), key=PRECISIONS.index))


def check_supported(precisions: Iterable[str], formats: Iterable[str]) -> list[str]:
    """UsageError for a precision no asked format can write; returns one line per (format,
    precision) pair that is skipped, with the reason (e.g. ONNX int8-weight-only)."""
    formats = list(formats)
    skipped = []
    for precision in precisions:
        able = [fmt for fmt in formats if precision in SUPPORTED[fmt]]
        if not able:
            reasons = "; ".join(UNSUPPORTED_REASON[(fmt, precision)] for fmt in formats)
            raise UsageError(f"{precision} is not available for {' or '.join(formats)}: {reasons}")
        skipped += [f"no {fmt} {precision} artifact: {UNSUPPORTED_REASON[(fmt, precision)]}"
                    for fmt in formats if fmt not in able]
    return skipped


def artifact_file(fmt: str, precision: str) -> str:
    """model.onnx for fp32; model.<precision>.onnx otherwise."""
    extension = {"onnx": "onnx", "tflite": "tflite"}[fmt]
    return f"model.{extension}" if precision == "fp32" else f"model.{precision}.{extension}"


def artifact_label(fmt: str, precision: str) -> str:
    """The key of an artifact in validation.json: 'onnx', or 'onnx/int8-dynamic'."""
    return fmt if precision == "fp32" else f"{fmt}/{precision}"


@dataclass(frozen=True)
class KeptFloat:
    """An op (or a family of ops) left in float, and the reason."""

    ops: tuple[str, ...]
    reason: str

    def to_manifest(self) -> dict[str, Any]:
        return {"ops": list(self.ops), "reason": self.reason}


@dataclass(frozen=True)
class PrecisionRecipe:
    """How a reduced-precision artifact was made; the manifest's ``recipe`` of an artifact.

    Attributes:
        tool: the quantizer and its version, e.g. "onnxruntime.quantization 1.32.0".
        scheme: the quantizer's own recipe name and what it means.
        quantized_ops: op type -> how many ops the tool quantized (counted in the written file).
        kept_float: what stayed float and why (family rules, measurements, --keep-float).
        steps: what ran before the quantizer (e.g. constant folding), in order.
        calibration: for static int8: where the calibration data came from and how much.
        source: the float artifact this one was derived from.
    """

    tool: str
    scheme: str
    quantized_ops: dict[str, int]
    kept_float: tuple[KeptFloat, ...] = ()
    steps: tuple[str, ...] = ()
    calibration: dict[str, Any] | None = None
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_manifest(self) -> dict[str, Any]:
        section: dict[str, Any] = {
            "tool": self.tool,
            "scheme": self.scheme,
            "source": self.source,
            "quantized_ops": dict(self.quantized_ops),
            "kept_float": [k.to_manifest() for k in self.kept_float],
            "steps": list(self.steps),
            "notes": list(self.notes),
        }
        if self.calibration is not None:
            section["calibration"] = dict(self.calibration)
        return section


def compile_patterns(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    """--keep-float patterns (regular expressions, searched in op and tensor names)."""
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as error:
            raise UsageError(f"--keep-float {pattern!r} is not a regular expression: {error}") from None
    return compiled


def unmatched_patterns(patterns: Sequence[str], names: Iterable[str]) -> list[str]:
    """The patterns that match none of ``names`` (a pattern that matches nothing is a mistake)."""
    names = list(names)
    return [p for p, compiled in zip(patterns, compile_patterns(patterns)) if not any(compiled.search(n) for n in names)]
