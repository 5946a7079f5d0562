"""Typed sections of the manifest: ``streaming``, ``ops`` and the waveform ``frontend``.

The family recipes build these dataclasses and write ``to_manifest()``; the runtime, the
profiler and the examples read them back with ``from_manifest()``. A missing or ill-typed
field therefore fails here, in one place, with one BundleError naming the field
(``edgesdk.json: streaming.frames_per_step must be an integer, not the string '1'``; exit 2).
The JSON layout is the one bundles have always had: keys a section does not model are kept,
in order, under ``other`` and written back unchanged.

The Kaldi fbank front-end is ``edgesdk.runtime.audio.KaldiFbankFrontend`` (its own
``to_manifest``/``from_manifest``, read with the ``SectionReader`` below).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from edgesdk.errors import BundleError

_REQUIRED = object()


def json_kind(value: Any) -> str:
    """How a JSON value reads in an error message: ``an integer``, ``the string 'x'``, ``null``."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: f"the string {value!r}",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class SectionReader:
    """Reads the fields of one manifest section; every problem is a BundleError naming the field.

    ``source`` names the file (``out/kws/edgesdk.json``); ``name`` the section (``streaming``).
    Each reader method takes the key and, where the field is optional, its default.
    """

    def __init__(self, section: Any, name: str, source: str = "edgesdk.json"):
        self.name = name
        self.source = source
        if not isinstance(section, Mapping):
            self.fail("", f"must be an object, not {json_kind(section)}")
        self.section: Mapping[str, Any] = section

    def fail(self, key: str, problem: str) -> None:
        where = f"{self.name}.{key}" if key else self.name
        raise BundleError(f"{self.source}: {where} {problem}")

    def _get(self, key: str, default: Any) -> tuple[bool, Any]:
        """(present, value); a required key that is absent fails here."""
        if key in self.section and self.section[key] is not None:
            return True, self.section[key]
        if default is _REQUIRED:
            self.fail(key, "is missing" if key not in self.section else "must not be null")
        return False, default

    def integer(self, key: str, default: Any = _REQUIRED, minimum: int | None = None) -> Any:
        present, value = self._get(key, default)
        if not present:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, not {json_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(key, f"must be at least {minimum}, not {value}")
        return value

    def number(self, key: str, default: Any = _REQUIRED, positive: bool = False) -> Any:
        present, value = self._get(key, default)
        if not present:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, f"must be a finite number, not {json_kind(value)}")
        if positive and value <= 0:
            self.fail(key, f"must be positive, not {value}")
        return float(value)

    def text(self, key: str, default: Any = _REQUIRED, choices: Sequence[str] | None = None) -> Any:
        present, value = self._get(key, default)
        if not present:
            return value
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {json_kind(value)}")
        if choices is not None and value not in choices:
            self.fail(key, f"is {value!r}; one of: {', '.join(choices)}")
        return value

    def boolean(self, key: str, default: Any = _REQUIRED) -> Any:
        present, value = self._get(key, default)
        if present and not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {json_kind(value)}")
        return value

    def other(self, known: Sequence[str]) -> dict[str, Any]:
        """The keys this section does not model, in their order (kept for a faithful round trip)."""
        return {key: value for key, value in self.section.items() if key not in known}


def _drop_none(entries: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entries.items() if value is not None}


# ----------------------------------------------------------------------------------------------
# streaming


@dataclass(frozen=True)
class StreamingFacts:
    """The manifest ``streaming`` section of a step-form export.

    Attributes:
        frames_per_step: feature frames one ``push`` consumes (>= 1).
        lookahead_frames: frames the model's output lags its input (delay before the first
            decided frame, >= 0).
        hop_samples: audio samples per feature frame (None where the input is not audio frames).
        frame_rate_hz: feature frames per second of input (None where unknown).
        end_input: the step input that ends a stream (None: the step has none). It is
            [batch, frames_per_step], 0 for input frames and 1, 2, ... for the frames pushed
            after the input ended; ``Stream.push`` feeds 0 and ``Stream.end()`` the count, so
            the last ``lookahead_frames`` outputs equal the full-sequence model's at the end.
        other: keys this dataclass does not model, written back unchanged.
    """

    frames_per_step: int
    lookahead_frames: int
    hop_samples: int | None = None
    frame_rate_hz: float | None = None
    end_input: str | None = None
    other: Mapping[str, Any] = field(default_factory=dict, compare=False)

    FIELDS = ("frames_per_step", "lookahead_frames", "hop_samples", "frame_rate_hz", "end_input")

    @property
    def step_duration_s(self) -> float | None:
        """Seconds of input one step covers (None without a frame rate)."""
        return self.frames_per_step / self.frame_rate_hz if self.frame_rate_hz else None

    @property
    def steps_per_second(self) -> float | None:
        return self.frame_rate_hz / self.frames_per_step if self.frame_rate_hz else None

    def to_manifest(self) -> dict[str, Any]:
        return {**_drop_none({key: getattr(self, key) for key in self.FIELDS}), **self.other}

    @classmethod
    def from_manifest(cls, section: Any, source: str = "edgesdk.json") -> StreamingFacts:
        read = SectionReader(section, "streaming", source)
        return cls(
            frames_per_step=read.integer("frames_per_step", minimum=1),
            lookahead_frames=read.integer("lookahead_frames", minimum=0),
            hop_samples=read.integer("hop_samples", None, minimum=1),
            frame_rate_hz=read.number("frame_rate_hz", None, positive=True),
            end_input=read.text("end_input", None),
            other=read.other(cls.FIELDS),
        )

    @classmethod
    def of(cls, manifest: Mapping[str, Any], source: str = "edgesdk.json") -> StreamingFacts:
        """The ``streaming`` section of a whole manifest; its absence is a BundleError."""
        if "streaming" not in manifest:
            raise BundleError(f"{source}: the manifest has no 'streaming' section; export with mode='stream'")
        return cls.from_manifest(manifest["streaming"], source)


# ----------------------------------------------------------------------------------------------
# ops


OPS_COUNTS = ("macs", "accumulates", "binary_ops")


@dataclass(frozen=True)
class OpsCount:
    """The manifest ``ops`` section: operations of one inference or one streaming step.

    Attributes:
        per: ``"inference"`` or ``"step"`` (what one count covers).
        macs: multiply-accumulates; None when not counted.
        accumulates: accumulate-only ops (spike-gated weights); None when not counted.
        binary_ops: XNOR/popcount-style binary ops; None when not counted.
        counted: one sentence saying what was and was not counted.
        source: where the counts came from, when not the manifest (``counted:onnx-graph``).
        other: family details (per-layer counts, spike rates...), written back unchanged.
    """

    per: str = "inference"
    macs: int | None = None
    accumulates: int | None = None
    binary_ops: int | None = None
    counted: str | None = None
    source: str | None = None
    other: Mapping[str, Any] = field(default_factory=dict, compare=False)

    FIELDS = ("per", *OPS_COUNTS, "counted", "source")

    def __post_init__(self) -> None:
        if self.per not in ("inference", "step"):
            raise BundleError(f"ops.per is {self.per!r}; one of: inference, step")

    @property
    def counts(self) -> dict[str, int]:
        """Every count, absent ones as 0."""
        return {name: int(getattr(self, name) or 0) for name in OPS_COUNTS}

    @property
    def missing_counts(self) -> list[str]:
        return [name for name in OPS_COUNTS if getattr(self, name) is None]

    @property
    def any_counted(self) -> bool:
        return any(self.counts.values())

    def to_manifest(self) -> dict[str, Any]:
        return {**_drop_none({key: getattr(self, key) for key in self.FIELDS}), **self.other}

    @classmethod
    def from_manifest(cls, section: Any, source: str = "edgesdk.json") -> OpsCount:
        read = SectionReader(section, "ops", source)
        return cls(
            per=read.text("per", "inference", choices=("inference", "step")),
            macs=read.integer("macs", None, minimum=0),
            accumulates=read.integer("accumulates", None, minimum=0),
            binary_ops=read.integer("binary_ops", None, minimum=0),
            counted=read.text("counted", None),
            source=read.text("source", None),
            other=read.other(cls.FIELDS),
        )


# ----------------------------------------------------------------------------------------------
# waveform front-end


WAVEFORM_NORMALIZATIONS = ("none", "utterance_zero_mean_unit_variance")


@dataclass(frozen=True)
class WaveformFrontend:
    """The manifest ``frontend`` of a model fed raw audio (``kind: waveform``, LightHuBERT).

    Attributes:
        sample_rate_hz: the rate the model was trained at (no resampling is done).
        channels: audio channels the model takes (1).
        normalization: ``"none"`` or ``"utterance_zero_mean_unit_variance"`` (each utterance
            scaled to zero mean, unit variance before the model).
        normalization_eps: added to the variance before the square root.
    """

    sample_rate_hz: int = 16000
    channels: int = 1
    normalization: str = "none"
    normalization_eps: float = 1e-5

    KIND = "waveform"
    FIELDS = ("sample_rate_hz", "channels", "normalization", "normalization_eps")

    def __post_init__(self) -> None:
        if self.normalization not in WAVEFORM_NORMALIZATIONS:
            raise BundleError(f"frontend.normalization is {self.normalization!r}; one of: {', '.join(WAVEFORM_NORMALIZATIONS)}")

    @property
    def normalizes(self) -> bool:
        return self.normalization != "none"

    def to_manifest(self) -> dict[str, Any]:
        return {"kind": self.KIND, **{key: getattr(self, key) for key in self.FIELDS}}

    @classmethod
    def from_manifest(cls, section: Any, source: str = "edgesdk.json") -> WaveformFrontend:
        """Fields left out take their defaults; ``kind``, when given, must be ``waveform``."""
        read = SectionReader(section, "frontend", source)
        read.text("kind", cls.KIND, choices=(cls.KIND,))
        return cls(
            sample_rate_hz=read.integer("sample_rate_hz", 16000, minimum=1),
            channels=read.integer("channels", 1, minimum=1),
            normalization=read.text("normalization", "none", choices=WAVEFORM_NORMALIZATIONS),
            normalization_eps=read.number("normalization_eps", 1e-5, positive=True),
        )


# ----------------------------------------------------------------------------------------------
# the whole manifest


def check_sections(manifest: Mapping[str, Any], source: str = "edgesdk.json") -> None:
    """Read every typed section a manifest has (BundleError naming the first bad field).

    Called when a bundle is written and when it is loaded, so a bad section fails before a
    device streams a single chunk. Front-ends of kinds the runtime does not read (images) are
    left to the application.
    """
    if manifest.get("streaming") is not None:
        StreamingFacts.from_manifest(manifest["streaming"], source)
    if manifest.get("ops") is not None:
        OpsCount.from_manifest(manifest["ops"], source)
    frontend = manifest.get("frontend")
    if isinstance(frontend, Mapping):
        if frontend.get("type") == "kaldi_fbank":
            from edgesdk.runtime.audio import KaldiFbankFrontend  # audio.py reads its fields with this module

            KaldiFbankFrontend.from_manifest(frontend, source)
        elif frontend.get("kind") == WaveformFrontend.KIND:
            WaveformFrontend.from_manifest(frontend, source)
