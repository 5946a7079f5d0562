"""Chunked inference over long audio: overlapping windows whose centre frames are kept.

numpy only (never imports torch). Works with any runtime ``Model`` that maps a waveform
``[B, samples]`` to frame outputs ``[B, frames, C]`` where frame t is computed from samples
``[hop t, hop t + field)`` of the CNN front end — LightHuBERT bundles describe this in their
manifest (``extra.lighthubert``); other models pass a ``ChunkPlan``.

How the minimum overlap follows from the receptive fields (LightHuBERT numbers):

* CNN: frame t depends on samples [320 t, 320 t + 400) only (layer_norm extractor). A window
  that starts at sample 320 a therefore computes frames a, a+1, ... bit-for-bit as the whole
  utterance does: windows are cut at multiples of the hop, and a window of F frames is
  320 (F - 1) + 400 samples long (consecutive windows share 80 samples beyond the frames
  they share).
* Positional convolution (kernel 128): encoder frame t sees CNN frames t-64 .. t+63. A kept
  frame with at least 64 frames of context on the left and 63 on the right gets exactly the
  whole-utterance positional embedding; with less, it sees the window's zero padding. So
  ``context_frames >= 64`` is the minimum overlap on each side (windows overlap by 2 x 64
  frames = 2.56 s).
* Attention is global in every layer: no finite context is exact. Past the positional-conv
  minimum, more context only shrinks the attention error; the chunking error table in
  docs/lighthubert.md measures how much.

A window of ``window_frames`` keeps its ``centre_frames = window_frames - 2 context_frames``
middle frames and the windows advance by that many frames. At the two ends of the utterance
the first and last windows are pinned to the true edges, so every kept frame has either
``context_frames`` of real context or the real utterance edge (which the whole-utterance run
sees as well).

Normalisation: LightHuBERT checkpoints trained with ``normalize=True`` expect each utterance
scaled to zero mean and unit variance. ``normalization="utterance"`` (default when the
manifest asks for it) normalises the whole signal once, then chunks it: exactly what the
whole-utterance run sees. ``"window"`` normalises every window by its own statistics, for a
device that cannot see the whole recording first (it drifts; see the docs).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgesdk.errors import BundleError, UsageError
from edgesdk.runtime.sections import WaveformFrontend

log = logging.getLogger(__name__)

NORMALIZATIONS = ("utterance", "window", "none")


def normalize_waveform(waveform: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    """Zero mean, unit variance along the last axis (per utterance), float32.

    Matches s3prl's LightHuBERT front end (LayerNorm over samples, no affine, eps 1e-5). An
    all-zero input stays all zeros (the eps keeps the division finite).
    """
    x = np.asarray(waveform, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)
    variance = x.var(axis=-1, keepdims=True)
    return ((x - mean) / np.sqrt(variance + eps)).astype(np.float32)


def speech_window(path: str | Path, samples: int, sample_rate_hz: int = 16000, normalize: bool = False,
                  eps: float = 1e-5) -> np.ndarray:
    """One WAV file as one model window [samples], float32: int16 / 32768, utterance-normalised
    when the front end does it, then centred in the window (zero-padded) or centre-cropped to it.

    For calibration and validation sets of whole-window models (LightHuBERT); a wrong sample
    rate or encoding is a UsageError (``read_wav``).
    """
    from edgesdk.runtime.audio import read_wav

    waveform = read_wav(path, sample_rate_hz).astype(np.float32) / np.float32(32768.0)
    if normalize:
        waveform = normalize_waveform(waveform, eps)
    if len(waveform) >= samples:
        start = (len(waveform) - samples) // 2
        return waveform[start:start + samples]
    left = (samples - len(waveform)) // 2
    return np.pad(waveform, (left, samples - len(waveform) - left)).astype(np.float32)


@dataclass(frozen=True)
class ChunkPlan:
    """How to cut a waveform into windows.

    Attributes:
        field_samples: samples one output frame sees (400 for HuBERT's CNN).
        hop_samples: samples between frames (320: 20 ms at 16 kHz).
        window_frames: frames per window (fixed by a TFLite file's input length).
        context_frames: frames of context kept on each side of the centre (discarded output).
        sample_rate_hz: the rate the model takes.
        normalization: "utterance", "window" or "none" (see the module docstring).
        input_name: the waveform input's logical name.
        fixed_window_samples: the input length of a fixed-shape artifact (TFLite), when it is
            not of the form hop (frames - 1) + field; the trailing samples do not change the
            window's frames (the CNN has no padding).
    """

    field_samples: int
    hop_samples: int
    window_frames: int
    context_frames: int
    sample_rate_hz: int = 16000
    normalization: str = "utterance"
    normalization_eps: float = 1e-5
    input_name: str = "waveform"
    fixed_window_samples: int | None = None

    def __post_init__(self) -> None:
        if self.field_samples < 1 or self.hop_samples < 1:
            raise UsageError("field_samples and hop_samples must be positive")
        if self.context_frames < 0:
            raise UsageError(f"context_frames must be >= 0, not {self.context_frames}")
        if self.centre_frames < 1:
            raise UsageError(
                f"a window of {self.window_frames} frames leaves no centre frames with "
                f"{self.context_frames} context frames on each side: need window_frames > "
                f"{2 * self.context_frames}"
            )
        if self.normalization not in NORMALIZATIONS:
            raise UsageError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, not {self.normalization!r}")

    @property
    def centre_frames(self) -> int:
        return self.window_frames - 2 * self.context_frames

    @property
    def window_samples(self) -> int:
        """Samples per window: hop (window_frames - 1) + field, or the fixed input length."""
        if self.fixed_window_samples is not None:
            return self.fixed_window_samples
        return self.hop_samples * (self.window_frames - 1) + self.field_samples

    def frames_for(self, samples: int) -> int:
        """Output frames of ``samples`` samples (0 if shorter than one receptive field)."""
        if samples < self.field_samples:
            return 0
        return (samples - self.field_samples) // self.hop_samples + 1

    def windows(self, total_frames: int) -> list[tuple[int, int, int]]:
        """(window start frame, first kept frame, end of kept frames) for each window.

        Window k keeps frames [k W, (k+1) W) with W = centre_frames and starts ``context_frames``
        earlier, clamped so the window lies inside the utterance (the ends are pinned to the
        true edges).
        """
        if total_frames <= self.window_frames:
            return [(0, 0, total_frames)]
        W = self.centre_frames
        result = []
        for k in range(math.ceil(total_frames / W)):
            keep_from, keep_to = k * W, min((k + 1) * W, total_frames)
            start = min(max(keep_from - self.context_frames, 0), total_frames - self.window_frames)
            result.append((start, keep_from, keep_to))
        return result


def _lighthubert_facts(manifest: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    extra = manifest.get("extra")
    if not isinstance(extra, Mapping) or "lighthubert" not in extra:
        raise BundleError(
            f"{source}: the manifest has no extra.lighthubert section, so the receptive field is "
            "unknown; pass a ChunkPlan explicitly"
        )
    facts = extra["lighthubert"]
    for key in ("receptive_field", "recommended_chunking", "example_window_samples"):
        if key not in facts:
            raise BundleError(f"{source}: manifest key extra.lighthubert.{key} is missing")
    return facts


def plan_for(
    model: Any,
    context_frames: int | None = None,
    window_frames: int | None = None,
    normalization: str | None = None,
) -> ChunkPlan:
    """A ChunkPlan from a LightHuBERT bundle's manifest.

    ``context_frames`` defaults to the manifest's recommendation (64). ``window_frames``: a
    TFLite artifact has a fixed input, so its window is the exported length and may not be
    changed; an ONNX artifact takes any length, default centre 100 frames + 2 x context.
    ``normalization`` defaults to what the manifest's frontend says.
    """
    manifest = model.manifest
    source = str(getattr(model, "path", "manifest"))
    facts = _lighthubert_facts(manifest, source)
    field = facts["receptive_field"]
    hop, field_samples = int(field["hop_samples"]), int(field["cnn_samples"])
    recommended = facts["recommended_chunking"]
    context = int(recommended["context_frames"] if context_frames is None else context_frames)
    fixed_samples = None
    if getattr(model, "format", None) == "tflite":
        fixed_samples = int(facts["example_window_samples"])
        fixed_frames = (fixed_samples - field_samples) // hop + 1
        if window_frames is not None and window_frames != fixed_frames:
            raise UsageError(
                f"this TFLite file takes windows of {fixed_samples} samples ({fixed_frames} frames) only; "
                f"re-export with another window_seconds to use {window_frames} frames"
            )
        window_frames = fixed_frames
    elif window_frames is None:
        window_frames = int(recommended["centre_frames"]) + 2 * context
    frontend = WaveformFrontend.from_manifest(manifest.get("frontend") or {}, source)
    if normalization is None:
        normalization = "utterance" if frontend.normalizes else "none"
    return ChunkPlan(
        field_samples=field_samples,
        hop_samples=hop,
        window_frames=int(window_frames),
        context_frames=context,
        sample_rate_hz=frontend.sample_rate_hz,
        normalization=normalization,
        normalization_eps=frontend.normalization_eps,
        fixed_window_samples=fixed_samples if getattr(model, "format", None) == "tflite" else None,
    )


def check_waveform(waveform: Any, sample_rate_hz: int, plan: ChunkPlan) -> np.ndarray:
    """Validate audio for the model; returns float32 [B, samples].

    Errors (UsageError): another sample rate, integer PCM, NaN/inf, more than two axes,
    shorter than one frame. Logged warnings, processed anyway: silence (normalisation maps
    it to zeros) and clipping (>= 0.1 % of samples at full scale, or beyond +-1).
    """
    if int(sample_rate_hz) != plan.sample_rate_hz:
        raise UsageError(
            f"audio at {sample_rate_hz} Hz: this model takes {plan.sample_rate_hz} Hz mono audio; resample "
            f"first (e.g. scipy.signal.resample_poly(x, {plan.sample_rate_hz}, {sample_rate_hz}))"
        )
    array = np.asarray(waveform)
    if array.dtype.kind in "iu":
        raise UsageError(
            f"audio is integer PCM ({array.dtype}); convert to float32 in [-1, 1] first "
            "(e.g. x.astype(np.float32) / 32768 for int16)"
        )
    if array.dtype.kind != "f":
        raise UsageError(f"audio must be a float array, not {array.dtype}")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2:
        raise UsageError(f"audio must be [samples] or [batch, samples] mono, not shape {array.shape}")
    if not np.isfinite(array).all():
        raise UsageError("audio holds NaN or infinite values")
    if array.shape[1] < plan.field_samples:
        raise UsageError(
            f"audio of {array.shape[1]} samples is shorter than one frame ({plan.field_samples} samples = "
            f"{plan.field_samples / plan.sample_rate_hz * 1000:.0f} ms)"
        )
    peak = np.abs(array).max(axis=1)
    for row, row_peak in enumerate(peak):
        if row_peak < 1e-6:
            log.warning("audio row %d is silent (peak %.1e); outputs describe silence", row, row_peak)
            continue
        at_peak = np.mean(np.abs(array[row]) >= 0.999 * min(row_peak, 1.0))
        if row_peak > 1.0 or (row_peak >= 0.99 and at_peak >= 1e-3):
            log.warning(
                "audio row %d looks clipped or not scaled to [-1, 1] (peak %.3g, %.2f %% of samples at full scale)",
                row, row_peak, 100 * at_peak,
            )
    return array.astype(np.float32, copy=False)


def run_chunked(
    model: Any,
    waveform: Any,
    sample_rate_hz: int = 16000,
    plan: ChunkPlan | None = None,
    **plan_options: Any,
) -> dict[str, np.ndarray]:
    """Run ``model`` over long audio in overlapping windows; returns name -> [B, frames, C].

    ``waveform``: [samples] or [B, samples] float at ``sample_rate_hz``. ``plan`` (or
    ``context_frames`` / ``window_frames`` / ``normalization`` for ``plan_for``) chooses the
    windows. The result has as many frames as a whole-utterance run. Audio shorter than one
    window runs in one call (ONNX) or zero-padded to the window (TFLite, whose frames past the
    audio are dropped; the padding then takes part in attention).
    """
    if plan is None:
        plan = plan_for(model, **plan_options)
    elif plan_options:
        raise UsageError(f"pass either plan or {', '.join(plan_options)}, not both")
    audio = check_waveform(waveform, sample_rate_hz, plan)
    if plan.normalization == "utterance":
        audio = normalize_waveform(audio, plan.normalization_eps)
    total = plan.frames_for(audio.shape[1])
    fixed_window = getattr(model, "format", None) == "tflite"
    rows = []
    for row in audio:  # one utterance at a time: a TFLite file takes batch 1
        pieces: dict[str, list[np.ndarray]] = {}
        for start, keep_from, keep_to in plan.windows(total):
            begin = start * plan.hop_samples
            if total <= plan.window_frames:
                segment = row if not fixed_window else _pad_to(row, plan.window_samples)
            else:
                # a fixed window may reach up to hop - 1 samples past the audio: zeros there
                # do not touch the window's frames
                segment = _pad_to(row[begin : begin + plan.window_samples], plan.window_samples)
            if plan.normalization == "window":
                segment = normalize_waveform(segment, plan.normalization_eps)
            outputs = model.run({plan.input_name: np.ascontiguousarray(segment[None], dtype=np.float32)})
            for name, value in outputs.items():
                pieces.setdefault(name, []).append(value[0, keep_from - start : keep_to - start])
        rows.append({name: np.concatenate(parts, axis=0) for name, parts in pieces.items()})
    return {name: np.stack([r[name] for r in rows]) for name in rows[0]}


def run_whole(model: Any, waveform: Any, sample_rate_hz: int = 16000, plan: ChunkPlan | None = None, **plan_options: Any) -> dict[str, np.ndarray]:
    """The whole-utterance reference: one call over all the audio (needs a dynamic-length
    artifact, i.e. ONNX), with the same checks and normalisation as ``run_chunked``."""
    if plan is None:
        plan = plan_for(model, **plan_options)
    if getattr(model, "format", None) == "tflite":
        raise UsageError("a TFLite file takes fixed-length windows; run the whole utterance with an ONNX artifact")
    audio = check_waveform(waveform, sample_rate_hz, plan)
    if plan.normalization != "none":
        audio = normalize_waveform(audio, plan.normalization_eps)
    return model.run({plan.input_name: audio})


def _pad_to(row: np.ndarray, samples: int) -> np.ndarray:
    if row.shape[0] >= samples:
        return row[:samples]
    return np.concatenate([row, np.zeros(samples - row.shape[0], dtype=row.dtype)])


def chunking_error(whole: Mapping[str, np.ndarray], chunked: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per output: max abs error, relative RMS error (||d|| / ||whole||), the minimum
    per-frame cosine similarity between chunked and whole-utterance frames, and the relative
    error of the time-averaged vector (what an utterance-level classifier pools)."""
    result = {}
    for name, reference in whole.items():
        candidate = chunked[name]
        if candidate.shape != reference.shape:
            raise UsageError(f"{name}: chunked shape {candidate.shape} != whole {reference.shape}")
        difference = candidate.astype(np.float64) - reference
        dot = (candidate * reference).sum(-1)
        norms = np.linalg.norm(candidate, axis=-1) * np.linalg.norm(reference, axis=-1)
        cosine = dot / np.maximum(norms, 1e-12)
        pooled_reference = reference.mean(axis=-2)
        pooled_error = np.linalg.norm(candidate.mean(axis=-2) - pooled_reference) / max(np.linalg.norm(pooled_reference), 1e-12)
        result[name] = {
            "max_abs": float(np.abs(difference).max()),
            "pooled_relative": float(pooled_error),
            "relative_rms": float(np.linalg.norm(difference) / max(np.linalg.norm(reference), 1e-12)),
            "min_cosine": float(cosine.min()),
        }
    return result
