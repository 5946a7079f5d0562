"""Audio front-ends in numpy: WAV reading, Kaldi fbank, normalisation, streaming, ``stream_wav``.

No torch and no torchaudio: a device goes from raw 16 kHz PCM to model input with numpy alone.

The offline front-end reproduces the LMUFormer loader (upstream ``src/dataloader.py``): int16 / 32768,
subtract the clip mean, ``torchaudio.compliance.kaldi.fbank(htk_compat=True, use_energy=False,
window_type='hanning', num_mel_bins=128, dither=0, frame_shift=10)`` with every other setting at its
default, zero-pad or cut to 128 frames, then ``(x - mean) / (2 std)``. The fixtures in
``tests/fixtures/kaldi_fbank`` hold torchaudio's own output; this implementation (float64 inside)
matches it within 2e-3 on the log-mel and 2e-4 on the model input.

Streaming: a stream cannot subtract the mean of a clip it has not heard yet. It does not need to:
Kaldi removes each frame's own mean before anything else (``remove_dc_offset``), and a constant
offset removed from the clip cancels exactly inside every frame. The streaming front-end therefore
skips the clip mean; the only difference is float rounding (measured in the tests and in
docs/lmuformer.md).

WAV input policy (``read_wav``): 16-bit signed PCM, mono, at the front-end's rate (16 kHz). Any
other rate, channel count, sample width or float encoding is refused with a UsageError saying how
to convert (the model was trained on exactly this format, and a silent resampler would change its
features); an empty file or a clip shorter than one 25 ms analysis window is refused too.
"""
from __future__ import annotations

import logging
import stat
import struct
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgesdk.errors import BundleError, UsageError
from edgesdk.runtime.decisions import EarlyExit, EarlyExitRule
from edgesdk.runtime.sections import SectionReader, StreamingFacts

log = logging.getLogger(__name__)

# Kaldi's log floor: float32 machine epsilon.
LOG_FLOOR = float(np.finfo(np.float32).eps)
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


# ----------------------------------------------------------------------------------------------
# WAV reading


# The most read_wav takes into memory at once: 256 MiB of 16-bit PCM, ~140 min at 16 kHz.
# ``stream_wav`` has no such limit: it reads ``WAV_BLOCK_SECONDS`` at a time.
MAX_WAV_BYTES = 256 << 20
WAV_BLOCK_SECONDS = 1.0


class WavFile:
    """A 16-bit PCM mono WAV opened for reading, its header checked, its samples not yet read.

    Only the RIFF chunk headers are read on open (the ``data`` chunk is skipped by seeking), so a
    recording of any length can be streamed block by block in constant memory (``blocks``).
    Raises UsageError, with the reason and a fix, for: a missing or non-RIFF file, a float or
    compressed encoding, a sample width other than 16 bits, more than one channel, another sample
    rate, no samples at all, or a path that is not a regular file (``/dev/zero``, a pipe).
    Use it as a context manager.
    """

    def __init__(self, path: str | Path, sample_rate_hz: int = 16000):
        self.path = Path(path)
        try:
            status = self.path.stat()
        except OSError as error:
            raise UsageError(f"cannot read {self.path}: {error.strerror}") from None
        if not stat.S_ISREG(status.st_mode):
            raise UsageError(f"{self.path} is not a regular file (a device, pipe or folder); give a WAV file")
        self.size_bytes = status.st_size
        try:
            self._handle = open(self.path, "rb")
        except OSError as error:
            raise UsageError(f"cannot read {self.path}: {error.strerror}") from None
        try:
            self.data_offset, self.num_samples = self._read_header(sample_rate_hz)
        except BaseException:
            self._handle.close()
            raise
        self.sample_rate_hz = sample_rate_hz

    def _read_header(self, sample_rate_hz: int) -> tuple[int, int]:
        path, handle = self.path, self._handle
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise UsageError(f"{path} is not a RIFF/WAVE file")
        fmt: tuple[int, int, int, int] | None = None
        data: tuple[int, int] | None = None
        offset = 12
        while offset + 8 <= self.size_bytes and (fmt is None or data is None):
            handle.seek(offset)
            chunk_id, size = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"fmt ":
                body = handle.read(min(size, 64))
                if len(body) < 16:
                    raise UsageError(f"{path}: truncated fmt chunk")
                tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                    tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the sub-format GUID
                fmt = (tag, channels, rate, bits)
            elif chunk_id == b"data":
                # A recorder that could not seek back writes 0xFFFFFFFF or 0: trust the file's size.
                available = self.size_bytes - (offset + 8)
                data = (offset + 8, available if size in (0, 0xFFFFFFFF) else min(size, available))
            offset += 8 + size + (size & 1)  # chunks are padded to even sizes
        if fmt is None or data is None:
            raise UsageError(f"{path}: no {'fmt' if fmt is None else 'data'} chunk")
        tag, channels, rate, bits = fmt
        convert = f"convert it first, e.g. `sox {path.name} -r {sample_rate_hz} -b 16 -c 1 -e signed-integer out.wav`"
        if tag == _WAVE_FORMAT_IEEE_FLOAT:
            raise UsageError(f"{path} holds {bits}-bit float samples; edgesdk reads 16-bit PCM only: {convert}")
        if tag != _WAVE_FORMAT_PCM:
            raise UsageError(f"{path} uses WAV encoding 0x{tag:04x}; edgesdk reads 16-bit PCM only: {convert}")
        if bits != 16:
            raise UsageError(f"{path} holds {bits}-bit samples; edgesdk reads 16-bit PCM only: {convert}")
        if channels != 1:
            raise UsageError(f"{path} has {channels} channels; the model takes mono audio: {convert}")
        if rate != sample_rate_hz:
            raise UsageError(
                f"{path} is sampled at {rate} Hz; the model's front-end needs {sample_rate_hz} Hz and edgesdk "
                f"does not resample (a resampler changes the features the model was trained on): {convert}")
        data_offset, data_bytes = data
        if data_bytes < 2:
            raise UsageError(f"{path} holds no audio samples")
        return data_offset, data_bytes // 2

    def read(self, start_sample: int, count: int) -> np.ndarray:
        """int16 samples [start_sample, start_sample + count), clipped to the file's end."""
        count = max(0, min(count, self.num_samples - start_sample))
        self._handle.seek(self.data_offset + 2 * start_sample)
        raw = self._handle.read(2 * count)
        if len(raw) != 2 * count:
            raise UsageError(f"{self.path}: the file ended while reading (was it truncated while open?)")
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)

    def blocks(self, block_samples: int) -> Iterator[np.ndarray]:
        """The samples in order, ``block_samples`` at a time (the last block may be shorter)."""
        for start in range(0, self.num_samples, block_samples):
            yield self.read(start, block_samples)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "WavFile":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_wav(path: str | Path, sample_rate_hz: int = 16000) -> np.ndarray:
    """Read a whole 16-bit PCM mono WAV at ``sample_rate_hz`` into memory; returns int16 samples [n].

    Refuses what ``WavFile`` refuses, and a file larger than ``MAX_WAV_BYTES`` (to stream a long
    recording, use ``WavFile.blocks`` or ``stream_wav``, which read it block by block).
    """
    path = Path(path)
    with WavFile(path, sample_rate_hz) as wav:
        if wav.size_bytes > MAX_WAV_BYTES:
            raise UsageError(
                f"{path} is {wav.size_bytes / 2**20:.0f} MiB; read_wav takes WAV files of at most "
                f"{MAX_WAV_BYTES >> 20} MiB (about {MAX_WAV_BYTES // 32000 // 60} minutes of 16 kHz audio) "
                f"into memory at once: stream it (`edgesdk run BUNDLE --wav {path.name}` reads any length "
                f"block by block) or split it, e.g. `sox {path.name} part.wav trim 0 600 : newfile : restart`")
        return wav.read(0, wav.num_samples)


# ----------------------------------------------------------------------------------------------
# Kaldi fbank


def _mel(frequency_hz: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + np.asarray(frequency_hz, dtype=np.float64) / 700.0)


def mel_filterbank(num_bins: int, fft_size: int, sample_rate_hz: float, low_hz: float, high_hz: float) -> np.ndarray:
    """Kaldi's triangular mel filters, float64 [num_bins, fft_size // 2 + 1] (Nyquist weight 0).

    Filters are equally spaced on ``1127 ln(1 + f / 700)`` between ``low_hz`` and ``high_hz``
    (<= 0 means Nyquist minus its magnitude); each weight is the triangle evaluated at the FFT
    bin's mel value, as ``kaldi::MelBanks`` does (not interpolated in Hz).
    """
    nyquist = 0.5 * sample_rate_hz
    if high_hz <= 0.0:
        high_hz += nyquist
    if not 0.0 <= low_hz < high_hz <= nyquist:
        raise UsageError(f"mel range must satisfy 0 <= low < high <= {nyquist} Hz, got {low_hz}..{high_hz}")
    half = fft_size // 2
    mel_low, mel_high = _mel(low_hz), _mel(high_hz)
    delta = (mel_high - mel_low) / (num_bins + 1)
    bin_mel = _mel(np.arange(half) * sample_rate_hz / fft_size)
    index = np.arange(num_bins)[:, None]
    left = mel_low + index * delta
    center = left + delta
    right = center + delta
    up = (bin_mel - left) / (center - left)
    down = (right - bin_mel) / (right - center)
    banks = np.maximum(0.0, np.minimum(up, down))
    return np.concatenate([banks, np.zeros((num_bins, fft_size // 2 + 1 - half))], axis=1)


@dataclass(frozen=True)
class KaldiFbankFrontend:
    """Kaldi-compatible log-mel fbank plus LMUFormer's normalisation and fixed clip length.

    Attributes (units in names): ``sample_rate_hz``; ``frame_length_samples`` (25 ms) and
    ``hop_samples`` (10 ms); ``num_mel_bins``; ``low_freq_hz`` and ``high_freq_hz`` (<= 0:
    offset from Nyquist); ``preemphasis``; ``subtract_clip_mean`` (offline only, see the module
    doc); ``normalize_mean`` and ``normalize_std`` (model input = (fbank - mean) / (2 std));
    ``clip_frames`` (offline pad/cut length; 0 keeps every frame).
    """

    sample_rate_hz: int = 16000
    frame_length_samples: int = 400
    hop_samples: int = 160
    num_mel_bins: int = 128
    low_freq_hz: float = 20.0
    high_freq_hz: float = 0.0
    preemphasis: float = 0.97
    subtract_clip_mean: bool = True
    normalize_mean: float = -6.845978
    normalize_std: float = 5.5654526
    clip_frames: int = 128
    _banks: np.ndarray = field(init=False, repr=False, compare=False)
    _window: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("sample_rate_hz", "frame_length_samples", "hop_samples", "num_mel_bins"):
            if getattr(self, name) < 1:
                raise UsageError(f"frontend {name} must be positive, not {getattr(self, name)}")
        if self.normalize_std <= 0 or self.clip_frames < 0:
            raise UsageError("frontend normalize_std must be positive and clip_frames non-negative")
        n = self.frame_length_samples
        # Kaldi "hanning": symmetric Hann, 0.5 - 0.5 cos(2 pi i / (N - 1)).
        window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / (n - 1))
        banks = mel_filterbank(self.num_mel_bins, self.fft_size, self.sample_rate_hz, self.low_freq_hz, self.high_freq_hz)
        object.__setattr__(self, "_window", window)
        object.__setattr__(self, "_banks", banks)

    @property
    def fft_size(self) -> int:
        """Frame length rounded up to a power of two (Kaldi's round_to_power_of_two)."""
        return 1 << (self.frame_length_samples - 1).bit_length()

    @property
    def pad_value(self) -> float:
        """Model-input value of a padded (all-zero fbank) frame: (0 - mean) / (2 std)."""
        return float(self.normalize(np.zeros((1, 1), dtype=np.float32))[0, 0])

    def num_frames(self, samples: int) -> int:
        """Frames Kaldi makes from ``samples`` with snip_edges: 1 + (n - length) // hop, or 0."""
        if samples < self.frame_length_samples:
            return 0
        return 1 + (samples - self.frame_length_samples) // self.hop_samples

    def scale(self, waveform: np.ndarray) -> np.ndarray:
        """int16 PCM -> float32 in [-1, 1) (divide by 32768, as torchaudio.load does)."""
        waveform = np.asarray(waveform)
        if waveform.dtype != np.int16:
            raise UsageError(f"PCM samples must be int16, not {waveform.dtype}")
        return waveform.astype(np.float32) / np.float32(32768.0)

    def frames_fbank(self, frames: np.ndarray) -> np.ndarray:
        """Analysis frames [n, frame_length] (float) -> log-mel energies float32 [n, mel]."""
        x = np.asarray(frames, dtype=np.float64)
        x = x - x.mean(axis=1, keepdims=True)  # remove_dc_offset
        shifted = np.concatenate([x[:, :1], x[:, :-1]], axis=1)
        x = x - self.preemphasis * shifted
        x = x * self._window
        power = np.abs(np.fft.rfft(x, n=self.fft_size, axis=1)) ** 2
        energies = power @ self._banks.T
        return np.log(np.maximum(energies, LOG_FLOOR)).astype(np.float32)

    def fbank(self, waveform: np.ndarray) -> np.ndarray:
        """int16 PCM [n] -> Kaldi log-mel fbank float32 [frames, mel] (``fbank_raw``)."""
        signal = self.scale(waveform)
        if self.subtract_clip_mean:
            signal = signal - signal.mean(dtype=np.float32)
        count = self.num_frames(signal.size)
        if count == 0:
            raise UsageError(
                f"{1000.0 * signal.size / self.sample_rate_hz:.1f} ms of audio is shorter than one "
                f"{1000.0 * self.frame_length_samples / self.sample_rate_hz:.0f} ms analysis window")
        starts = np.arange(count) * self.hop_samples
        frames = signal[starts[:, None] + np.arange(self.frame_length_samples)]
        return self.frames_fbank(frames)

    def normalize(self, fbank: np.ndarray) -> np.ndarray:
        """(fbank - mean) / (2 std) in float32, as the authors' loader computes it."""
        fbank = np.asarray(fbank, dtype=np.float32)
        check_finite(fbank, "fbank features")
        divisor = np.float32(self.normalize_std * 2.0)  # formed in double, then float32 (torch does too)
        return (fbank - np.float32(self.normalize_mean)) / divisor

    def model_input(self, waveform: np.ndarray) -> np.ndarray:
        """int16 PCM -> model input float32 [clip_frames, mel]: pad with 0 (raw) or cut, normalise."""
        fbank = self.fbank(waveform)
        if self.clip_frames:
            if fbank.shape[0] < self.clip_frames:
                pad = np.zeros((self.clip_frames - fbank.shape[0], fbank.shape[1]), dtype=np.float32)
                fbank = np.concatenate([fbank, pad])
            fbank = fbank[: self.clip_frames]
        return self.normalize(fbank)

    def to_manifest(self) -> dict[str, Any]:
        """The manifest ``frontend`` section (a plain dict; ``from_manifest`` inverts it)."""
        section = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        section.update(type="kaldi_fbank", window="hanning", dither=0.0, snip_edges=True,
                       remove_dc_offset=True, use_energy=False, log_floor=LOG_FLOOR,
                       fft_size=self.fft_size, input_scale="int16 / 32768",
                       normalization="(fbank - normalize_mean) / (2 * normalize_std)",
                       pad_value=self.pad_value)
        return section


    @classmethod
    def from_manifest(cls, section: Any, source: str = "edgesdk.json") -> KaldiFbankFrontend:
        """Rebuild the front-end from a manifest ``frontend`` section; unknown or bad keys are errors."""
        read = SectionReader(section, "frontend", source)
        kind = read.text("type", None)
        if kind != "kaldi_fbank":
            read.fail("type", f"is {kind!r}: not supported (only 'kaldi_fbank')")
        unknown = sorted(set(section) - set(_FBANK_FIELDS) - _DERIVED_KEYS)
        if unknown:
            read.fail("", f"has unknown keys: {', '.join(unknown)}")
        for key, value in _FIXED_FBANK.items():
            if key in section and section[key] != value:
                read.fail(key, f"is {section[key]!r}: not supported (only {value!r})")
        values = {}
        for key, kind_of in _FBANK_FIELDS.items():
            if key in section:
                reader = {int: read.integer, float: read.number, bool: read.boolean}[kind_of]
                values[key] = reader(key)
        try:
            return cls(**values)
        except UsageError as error:
            raise BundleError(f"{source}: frontend {error}") from None


# The fields of KaldiFbankFrontend and their JSON kinds; the derived keys to_manifest adds; and
# the Kaldi settings this implementation fixes.
_FBANK_FIELDS = {"sample_rate_hz": int, "frame_length_samples": int, "hop_samples": int, "num_mel_bins": int,
                 "low_freq_hz": float, "high_freq_hz": float, "preemphasis": float, "subtract_clip_mean": bool,
                 "normalize_mean": float, "normalize_std": float, "clip_frames": int}
_DERIVED_KEYS = {"type", "window", "dither", "snip_edges", "remove_dc_offset", "use_energy", "log_floor",
                 "fft_size", "input_scale", "normalization", "pad_value"}
_FIXED_FBANK = {"window": "hanning", "dither": 0.0, "snip_edges": True, "remove_dc_offset": True, "use_energy": False}


def check_finite(features: np.ndarray, what: str = "features") -> None:
    """UsageError naming where the first NaN or infinity sits."""
    bad = ~np.isfinite(features)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UsageError(f"{what} contain {int(bad.sum())} NaN or infinite values (first at index {where})")


class StreamingFbank:
    """Raw PCM in, normalised model-input frames out, as audio arrives (any chunk size).

    Keeps the samples of the frame not yet complete (at most 400); emits frame i once samples
    ``i * hop .. i * hop + 400`` are in. No clip mean is subtracted (see the module doc).
    """

    def __init__(self, frontend: KaldiFbankFrontend):
        self.frontend = frontend
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0
        self.samples_seen = 0

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)
        self.frames_emitted = 0
        self.samples_seen = 0

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """int16 samples [n] -> new model-input frames float32 [k, mel] (k may be 0)."""
        signal = np.concatenate([self._pending, self.frontend.scale(np.asarray(pcm).reshape(-1))])
        self.samples_seen += int(np.asarray(pcm).size)
        length, hop = self.frontend.frame_length_samples, self.frontend.hop_samples
        count = self.frontend.num_frames(signal.size)
        if count == 0:
            self._pending = signal
            return np.zeros((0, self.frontend.num_mel_bins), dtype=np.float32)
        starts = np.arange(count) * hop
        frames = signal[starts[:, None] + np.arange(length)]
        self._pending = signal[count * hop:]
        self.frames_emitted += count
        return self.frontend.normalize(self.frontend.frames_fbank(frames))


# ----------------------------------------------------------------------------------------------
# Streaming a WAV through an exported step


@dataclass
class StreamResult:
    """What ``stream_wav`` found.

    Attributes:
        labels: class names in index order (may be empty).
        frame_top: per decided frame, the index of the top class of the running-mean logits.
        frame_probability: per decided frame, sigmoid of that class's running-mean logit (the
            authors train with per-class sigmoid / BCE, so this is their score).
        decided_class, decided_label, decided_probability: the final decision.
        frames_used: frames the decision rests on (the running mean's length).
        audio_frames: fbank frames the whole clip gives.
        padding_frames: pad-value frames pushed after the audio ended.
        early_exit: whether the decision came from the early-exit rule.
        latency_ms: wall time of each ``push`` of the model stream, in milliseconds.
        backend: which backend ran the step.
    """

    labels: list[str]
    frame_top: list[int]
    frame_probability: list[float]
    decided_class: int
    decided_label: str
    decided_probability: float
    frames_used: int
    audio_frames: int
    padding_frames: int
    early_exit: bool
    latency_ms: list[float]
    backend: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _manifest_source(model: Any) -> str:
    """How errors name a loaded model's manifest: ``out/kws/edgesdk.json`` when the path is known."""
    path = getattr(model, "path", None)
    if path is None:
        return "the bundle's edgesdk.json"
    return str(Path(path) / "edgesdk.json") if Path(path).is_dir() else str(path)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# What --wav needs from a manifest, and how a user adds it to a bundle of their own module.
AUDIO_SECTIONS = {"frontend": "how audio becomes the model's input: Kaldi fbank parameters and normalisation",
                  "streaming": "frames per step and look-ahead"}
AUDIO_SECTION_HOWTO = {"frontend": "a 'frontend' section (edgesdk.runtime.audio.KaldiFbankFrontend(...).to_manifest() "
                                   "writes one)",
                       "streaming": "a 'streaming' section (edgesdk.runtime.sections.StreamingFacts(...).to_manifest())"}


def stream_wav(model: Any, wav_path: str | Path, *, early_exit: float | None = None,
               early_exit_frames: int = 10, hop_ms: float = 10.0) -> StreamResult:
    """Feed a WAV to a streaming bundle in ``hop_ms`` pieces, as a microphone would.

    ``model`` is an ``edgesdk.runtime.Model`` of a stream export whose manifest has ``frontend``
    and ``streaming`` sections. Audio goes through ``StreamingFbank``; frames are pushed
    ``frames_per_step`` at a time. After the audio ends, pad frames (the value a silent padded
    frame has in training) are pushed until every audio frame is decided and, for clips shorter
    than the training length, until that length is reached, as the authors' loader pads.

    ``early_exit=P`` stops once the running top class has kept a probability >= P for
    ``early_exit_frames`` consecutive decided frames; only keyword classes (labels without a
    leading underscore) may exit early: ``edgesdk.runtime.decisions``, the one rule.
    """
    manifest = model.manifest
    source = _manifest_source(model)
    missing = [key for key in ("frontend", "streaming") if key not in manifest]
    if missing:
        raise BundleError(f"{source} cannot take audio: its manifest has no {' and no '.join(map(repr, missing))} "
                          f"section ({'; '.join(AUDIO_SECTIONS[key] for key in missing)}). Feed the model's own "
                          f"input instead (edgesdk run --inputs F.npz), or add to edgesdk.json "
                          + " and ".join(AUDIO_SECTION_HOWTO[key] for key in missing))
    frontend = KaldiFbankFrontend.from_manifest(manifest["frontend"], source)
    streaming = StreamingFacts.from_manifest(manifest["streaming"], source)
    chunk, lookahead = streaming.frames_per_step, streaming.lookahead_frames
    if early_exit is not None and not 0.0 < early_exit <= 1.0:
        raise UsageError(f"early_exit must be a probability in (0, 1], not {early_exit}")
    if early_exit_frames < 1:
        raise UsageError(f"early_exit_frames must be at least 1, not {early_exit_frames}")
    hop_samples = int(round(hop_ms * frontend.sample_rate_hz / 1000.0))
    if hop_samples < 1:
        raise UsageError(f"hop_ms={hop_ms} is less than one sample")
    labels = list(manifest.get("extra", {}).get("labels", []))

    rule = EarlyExitRule.for_labels(labels, early_exit, early_exit_frames) if early_exit is not None else None
    with WavFile(wav_path, frontend.sample_rate_hz) as wav:
        return _stream_wav_file(model, wav, frontend, chunk, lookahead, labels, hop_samples, rule)


def _stream_wav_file(model: Any, wav: "WavFile", frontend: "KaldiFbankFrontend", chunk: int, lookahead: int,
                     labels: list[str], hop_samples: int, rule: EarlyExitRule | None) -> StreamResult:
    """``stream_wav`` once the WAV is open: reads it a block at a time, so any length fits in memory."""
    wav_path = wav.path
    audio_frames = frontend.num_frames(wav.num_samples)
    if audio_frames == 0:
        raise UsageError(
            f"{wav_path}: {1000.0 * wav.num_samples / frontend.sample_rate_hz:.1f} ms of audio is shorter than "
            f"one {1000.0 * frontend.frame_length_samples / frontend.sample_rate_hz:.0f} ms analysis window")
    target_decided = max(audio_frames, frontend.clip_frames)

    stream = model.stream(batch=1)
    fbank = StreamingFbank(frontend)
    pending = np.zeros((0, frontend.num_mel_bins), dtype=np.float32)
    tops: list[int] = []
    probabilities: list[float] = []
    latency: list[float] = []
    consumed = 0  # frames pushed into the model
    early = EarlyExit(rule) if rule is not None else None
    exited = False

    def push(frames: np.ndarray) -> bool:
        """Push whole chunks; True once the early-exit rule fires."""
        nonlocal consumed
        for start in range(0, frames.shape[0], chunk):
            piece = frames[start: start + chunk]
            check_finite(piece, "features")
            begin = time.perf_counter()
            out = stream.push({"features": piece[None]})
            latency.append(1000.0 * (time.perf_counter() - begin))
            means = np.asarray(out["mean_logits"])[0]
            for k in range(piece.shape[0]):
                consumed += 1
                if consumed <= lookahead:
                    continue  # still filling the look-ahead: no frame decided yet
                if take(means[k]):
                    return True
                if len(tops) >= target_decided:
                    return False
        return False

    def take(mean: np.ndarray) -> bool:
        """One decided frame's running mean; True once the early-exit rule fires."""
        top = int(np.argmax(mean))
        tops.append(top)
        probabilities.append(float(_sigmoid(mean[top])))
        return early is not None and early.update(mean)

    # Whole hops per block, so the hops fed to the front-end are the same as from one array.
    block_samples = hop_samples * max(1, round(WAV_BLOCK_SECONDS * frontend.sample_rate_hz / hop_samples))
    finished = False
    for block in wav.blocks(block_samples):
        for start in range(0, block.size, hop_samples):
            pending = np.concatenate([pending, fbank.push(block[start: start + hop_samples])])
            whole = (pending.shape[0] // chunk) * chunk
            if whole:
                exited = push(pending[:whole])
                pending = pending[whole:]
                if exited or len(tops) >= target_decided:
                    finished = True
                    break
        if finished:
            break
    padding = 0
    # A step with an end input answers the last look-ahead frames through Stream.end(), as the
    # full-sequence model does at the end of the clip; without one, pad frames stand in for them.
    ends = getattr(model, "end_input", None) is not None
    if not exited and len(tops) < target_decided:
        missing = target_decided + (0 if ends else lookahead) - consumed - pending.shape[0]
        padding = max(0, missing)
        padding += (-(pending.shape[0] + padding)) % chunk  # whole chunks only
        pad = np.full((padding, frontend.num_mel_bins), frontend.pad_value, dtype=np.float32)
        exited = push(np.concatenate([pending, pad]))
    if ends and not exited and len(tops) < target_decided:
        for mean in np.asarray(stream.end().get("mean_logits", np.zeros((1, 0, 0))))[0]:
            exited = take(mean)
            if exited or len(tops) >= target_decided:
                break
    if not tops:
        raise UsageError(f"{wav_path}: too short for the model to decide any frame")
    decided = tops[-1]
    return StreamResult(
        labels=labels, frame_top=tops, frame_probability=probabilities, decided_class=decided,
        decided_label=labels[decided] if decided < len(labels) else str(decided),
        decided_probability=probabilities[-1], frames_used=len(tops), audio_frames=audio_frames,
        padding_frames=padding, early_exit=exited, latency_ms=latency,
        backend=str(getattr(model, "backend", "")))
