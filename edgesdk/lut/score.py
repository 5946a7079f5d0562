"""A label-free score of a subnet: how close its hidden states stay to the largest subnet's on the
user's own audio.

LightHuBERT's supernet was trained by distillation: every sampled subnet learns to reproduce a
teacher's hidden states. A subnet that keeps close to the largest subnet (the best-trained member
of the supernet) on the user's audio is the better one to ship, and no labels are needed. The
released checkpoints drop the distillation prediction heads that mapped each width to the
teacher's, so the closeness here is width-free: linear CKA (centred kernel alignment, Kornblith et
al. 2019) between the subnet's last hidden state [frames, e] and the largest subnet's [frames, E]
on each clip; 1 means the same representation up to rotation and scale. The score is the mean over
clips, its spread the standard deviation over clips.

With random weights (no trained checkpoint) the score is only a number: it says nothing about a
subnet's quality. The search machinery is tested on constructed scores whose best answer is known.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgesdk.errors import UsageError

AUDIO_SUFFIXES = (".wav", ".flac")
MIN_CLIP_SAMPLES = 400  # one frame's receptive field


@dataclass(frozen=True)
class Score:
    """A subnet's score: mean over clips (higher is better) and the standard deviation over clips."""

    mean: float
    spread: float
    clips: int
    metric: str = "linear CKA of the last hidden state to the largest subnet's"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "spread_over_clips": self.spread, "clips": self.clips, "metric": self.metric}


@dataclass(frozen=True)
class AudioClips:
    """Mono float32 clips at ``sample_rate_hz``; ``names`` say which file (and piece) each is."""

    names: tuple[str, ...]
    waveforms: tuple[np.ndarray, ...]
    sample_rate_hz: int


def load_audio_folder(folder: str | Path, sample_rate_hz: int = 16000, max_clip_seconds: float = 4.0) -> AudioClips:
    """Every .wav/.flac in ``folder`` (not recursive); files longer than ``max_clip_seconds`` are cut
    into consecutive pieces of that length (a last piece under one second is dropped).

    Raises UsageError for a missing or empty folder, a file at another sample rate (naming the
    file, its rate and how to resample), or a file shorter than one frame (25 ms).
    """
    try:
        import soundfile
    except ImportError:
        raise UsageError("reading audio needs soundfile: pip install 'edgesdk[audio]'") from None
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"audio folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise UsageError(f"audio folder {folder} holds no {' or '.join(AUDIO_SUFFIXES)} files")
    names, waveforms = [], []
    piece = int(max_clip_seconds * sample_rate_hz)
    for path in files:
        try:
            data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except RuntimeError as error:  # soundfile's error for unreadable files
            raise UsageError(f"{path} is not readable audio: {error}") from None
        if rate != sample_rate_hz:
            raise UsageError(f"{path} is sampled at {rate} Hz; LightHuBERT takes {sample_rate_hz} Hz audio "
                             f"(resample it, e.g. `sox {path.name} -r {sample_rate_hz} out.wav`)")
        mono = data.mean(axis=1)
        if mono.size < MIN_CLIP_SAMPLES:
            raise UsageError(f"{path} has {mono.size} samples, fewer than one frame ({MIN_CLIP_SAMPLES})")
        starts = range(0, mono.size, piece) if mono.size > piece else [0]
        for index, start in enumerate(starts):
            chunk = mono[start:start + piece]
            if index and chunk.size < sample_rate_hz:
                continue
            names.append(path.name if mono.size <= piece else f"{path.name}[{index}]")
            waveforms.append(np.ascontiguousarray(chunk))
    return AudioClips(tuple(names), tuple(waveforms), sample_rate_hz)


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA between [n, a] and [n, b] (rows: the same frames): ||Yc^T Xc||_F^2 /
    (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred Xc, Yc. In [0, 1]; 1 for x = y R s."""
    return cka_of_grams(centred_gram(x), centred_gram(y))


def centred_gram(x: np.ndarray) -> np.ndarray:
    """Xc Xc^T [n, n]: CKA in its kernel form (<Kx, Ky> = ||Yc^T Xc||^2), cheaper than the feature
    form while frames n < widths a + b, and the teacher's is computed once."""
    centred = x - x.mean(axis=0, keepdims=True)
    return centred @ centred.T


def cka_of_grams(kx: np.ndarray, ky: np.ndarray) -> float:
    denominator = np.linalg.norm(kx) * np.linalg.norm(ky)
    return float(np.vdot(kx, ky) / denominator) if denominator > 0 else 0.0


class DistillationScorer:
    """Scores subnets of ``supernet`` on ``clips``. The CNN (shared by all subnets) and the largest
    subnet's hidden states are computed once per clip; clips of one length run as one batch (the
    encoder has no padding mask, so only equal lengths batch)."""

    def __init__(self, supernet, clips: AudioClips):
        import torch

        from edgesdk.models.lighthubert import LAYER_NORM_EPS, max_subnet

        if clips.sample_rate_hz != supernet.config.sample_rate_hz:
            raise UsageError(f"the clips are at {clips.sample_rate_hz} Hz; the supernet takes {supernet.config.sample_rate_hz} Hz")
        self.supernet = supernet.eval()
        self.clips = clips
        self._torch = torch
        by_length: dict[int, list[int]] = {}
        for index, waveform in enumerate(clips.waveforms):
            by_length.setdefault(waveform.size, []).append(index)
        self._batches: list[tuple[list[int], Any]] = []  # (clip indices, CNN features [n, frames, C])
        with torch.no_grad():
            for indices in by_length.values():
                waveforms = []
                for index in indices:
                    waveform = clips.waveforms[index]
                    if supernet.config.normalize:  # the checkpoint's task setting: per utterance
                        waveform = (waveform - waveform.mean()) / np.sqrt(waveform.var() + LAYER_NORM_EPS)
                    waveforms.append(np.asarray(waveform, dtype=np.float32))
                self._batches.append((indices, supernet.forward_features(torch.from_numpy(np.stack(waveforms)))))
        self.teacher_subnet = max_subnet(supernet.config.search_space)
        self._teacher = [centred_gram(hidden) for hidden in self._last_hidden(self.teacher_subnet)]

    def _last_hidden(self, subnet) -> list[np.ndarray]:
        """The subnet's last hidden state [frames, e] per clip, in the clips' order."""
        previous = self.supernet.subnet
        hidden: list[Any] = [None] * len(self.clips.waveforms)
        try:
            self.supernet.set_subnet(subnet)
            with self._torch.no_grad():
                for indices, features in self._batches:
                    last = self.supernet.forward_encoder(features)[-1].double().numpy()
                    for row, index in enumerate(indices):
                        hidden[index] = last[row]
            return hidden
        finally:
            self.supernet.subnet = previous

    def __call__(self, subnet) -> Score:
        hidden = self._last_hidden(subnet)
        values = np.array([cka_of_grams(centred_gram(h), t) for h, t in zip(hidden, self._teacher)])
        return Score(float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0, int(values.size))


def per_clip_names(clips: AudioClips) -> Sequence[str]:
    return clips.names
