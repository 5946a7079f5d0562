"""The numpy audio front-end: fixtures from torchaudio, WAV policy, streaming, manifest round trip,
and ``stream_wav`` through an exported LMUFormer step."""
from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from edgesdk.errors import BundleError, UsageError
from edgesdk.runtime.audio import (
    KaldiFbankFrontend,
    StreamingFbank,
    check_finite,
    read_wav,
    stream_wav,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kaldi_fbank"
CLIPS = ["yes", "no", "stop", "go", "tone_440_1000", "noise_white"]


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(np.asarray(samples).tobytes())
    return path


def write_float_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    data = np.asarray(samples, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize("clip", CLIPS)
def test_fbank_matches_torchaudio_fixture(clip):
    fixture = np.load(FIXTURES / f"{clip}.npz")
    waveform = read_wav(FIXTURES / f"{clip}.wav")
    assert np.array_equal(waveform, fixture["waveform_int16"])
    frontend = KaldiFbankFrontend()
    raw = frontend.fbank(waveform)
    model_input = frontend.model_input(waveform)
    assert raw.shape == fixture["fbank_raw"].shape
    raw_error = np.abs(raw - fixture["fbank_raw"]).max()
    input_error = np.abs(model_input - fixture["fbank_model_input"]).max()
    assert raw_error <= 2e-3, f"{clip}: fbank_raw max abs {raw_error:.2e}"
    assert input_error <= 2e-4, f"{clip}: fbank_model_input max abs {input_error:.2e}"


def test_fixture_facts():
    frontend = KaldiFbankFrontend()
    raw = frontend.fbank(read_wav(FIXTURES / "stop.wav"))
    assert np.all(raw[:, 3] == np.float32(np.log(np.finfo(np.float32).eps)))  # mel filter 3 is empty
    assert frontend.pad_value == pytest.approx(0.6150423, abs=1e-6)
    assert frontend.num_frames(16000) == 98 and frontend.num_frames(399) == 0


@pytest.mark.parametrize("clip", CLIPS)
def test_streaming_frontend_agrees_with_offline(clip):
    """The stream skips the clip mean (it cannot know it); per-frame DC removal makes that exact up to rounding."""
    waveform = read_wav(FIXTURES / f"{clip}.wav")
    frontend = KaldiFbankFrontend()
    offline = frontend.normalize(frontend.fbank(waveform))
    for hop in (160, 37):  # 10 ms hops, and an odd size that splits frames
        streaming = StreamingFbank(frontend)
        frames = np.concatenate([streaming.push(waveform[i: i + hop]) for i in range(0, waveform.size, hop)])
        assert frames.shape == offline.shape
        error = np.abs(frames - offline).max()
        assert error <= 2e-5, f"{clip} hop {hop}: streaming vs offline model input max abs {error:.2e}"
    fixture = np.load(FIXTURES / f"{clip}.npz")["fbank_model_input"]
    rows = min(frames.shape[0], 128)
    assert np.abs(frames[:rows] - fixture[:rows]).max() <= 2e-4


def test_frontend_manifest_round_trip():
    frontend = KaldiFbankFrontend(num_mel_bins=64, clip_frames=100)
    section = frontend.to_manifest()
    assert section["type"] == "kaldi_fbank" and section["pad_value"] == frontend.pad_value
    assert KaldiFbankFrontend.from_manifest(section) == frontend
    with pytest.raises(BundleError, match="wobble"):
        KaldiFbankFrontend.from_manifest({**section, "wobble": 1})
    with pytest.raises(BundleError, match="mfcc"):
        KaldiFbankFrontend.from_manifest({**section, "type": "mfcc"})
    with pytest.raises(BundleError, match="window"):
        KaldiFbankFrontend.from_manifest({**section, "window": "povey"})


def test_wav_policy(tmp_path):
    tone = (3000 * np.sin(np.arange(16000) / 10)).astype(np.int16)
    assert read_wav(write_wav(tmp_path / "ok.wav", tone)).size == 16000
    with pytest.raises(UsageError, match="44100 Hz.*does not resample"):
        read_wav(write_wav(tmp_path / "rate.wav", tone, rate=44100))
    with pytest.raises(UsageError, match="2 channels"):
        read_wav(write_wav(tmp_path / "stereo.wav", np.repeat(tone, 2), channels=2))
    with pytest.raises(UsageError, match="8-bit"):
        read_wav(write_wav(tmp_path / "8bit.wav", (tone // 256 + 128).astype(np.uint8), width=1))
    with pytest.raises(UsageError, match="float"):
        read_wav(write_float_wav(tmp_path / "float.wav", tone / 32768.0))
    with pytest.raises(UsageError, match="no audio"):
        read_wav(write_wav(tmp_path / "empty.wav", np.zeros(0, np.int16)))
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(UsageError, match="not a RIFF"):
        read_wav(tmp_path / "text.wav")
    short = read_wav(write_wav(tmp_path / "5ms.wav", tone[:80]))
    with pytest.raises(UsageError, match="5.0 ms of audio is shorter than one 25 ms"):
        KaldiFbankFrontend().fbank(short)


def test_nan_features_are_refused():
    features = np.zeros((3, 128), np.float32)
    features[1, 7] = np.nan
    with pytest.raises(UsageError, match=r"NaN.*\(1, 7\)"):
        check_finite(features)
    with pytest.raises(UsageError, match="NaN"):
        KaldiFbankFrontend().normalize(features)


# ----------------------------------------------------------------------------------------------
# stream_wav through an exported step (export needs torch; the runtime path does not)


@pytest.fixture(scope="module")
def stream_bundle(tmp_path_factory):
    torch = pytest.importorskip("torch")
    import edgesdk

    model = edgesdk.create_model("lmuformer", preset="tiny")
    generator = torch.Generator().manual_seed(21)
    with torch.no_grad():  # a larger head, so that classes separate and sigmoid scores move
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=generator) * 0.5)
    out = tmp_path_factory.mktemp("audio") / "tiny-stream"
    edgesdk.export(model, out, formats=("onnx",), mode="stream", random_weights=True)
    return model, out


def test_stream_wav_matches_offline_pipeline(stream_bundle):
    import torch

    import edgesdk

    model, out = stream_bundle
    runtime = edgesdk.load(out)
    result = stream_wav(runtime, FIXTURES / "yes.wav")
    assert result.audio_frames == 98
    assert result.frames_used == 128  # short clips are padded to the training length, as upstream
    # padded to the training length; Stream.end() answers the last 5 frames, no pad frame stands in
    assert result.padding_frames == 128 - 98 and not result.early_exit
    assert len(result.latency_ms) == 128 and all(ms > 0 for ms in result.latency_ms)
    assert result.decided_label == result.labels[result.decided_class]
    # Offline: the authors' padded 128-frame input through the PyTorch parallel model.
    frontend = KaldiFbankFrontend()
    offline = frontend.model_input(read_wav(FIXTURES / "yes.wav"))
    with torch.no_grad():
        prefix = model.forward_prefix(torch.from_numpy(offline)[None])[0].numpy()
    probability = 1 / (1 + np.exp(-prefix))
    # Every frame, the last 5 included (the stream's end pads each conv as the parallel model does).
    usable = 128
    assert result.frame_top[:usable] == [int(i) for i in prefix[:usable].argmax(axis=1)]
    got = np.array(result.frame_probability[:usable])
    expected = probability[np.arange(usable), prefix[:usable].argmax(axis=1)]
    assert np.abs(got - expected).max() <= 1e-5


def test_stream_wav_early_exit_and_long_clip(stream_bundle, tmp_path):
    import edgesdk

    _, out = stream_bundle
    runtime = edgesdk.load(out)
    result = stream_wav(runtime, FIXTURES / "stop.wav", early_exit=1e-6, early_exit_frames=7)
    assert result.early_exit and result.frames_used >= 7 and len(set(result.frame_top[-7:])) == 1
    assert result.padding_frames == 0 and result.frames_used < 128
    full = stream_wav(runtime, FIXTURES / "stop.wav", hop_ms=25)
    assert full.audio_frames == 148 and full.frames_used == 148 and full.padding_frames == 0
    with pytest.raises(UsageError, match="probability"):
        stream_wav(runtime, FIXTURES / "stop.wav", early_exit=1.5)
    short = write_wav(tmp_path / "short.wav", np.zeros(80, np.int16))
    with pytest.raises(UsageError, match="shorter than one 25 ms"):
        stream_wav(runtime, short)
    with pytest.raises(UsageError, match="22050 Hz"):
        stream_wav(runtime, write_wav(tmp_path / "r.wav", np.zeros(22050, np.int16), rate=22050))


def test_stream_wav_with_chunked_step_decides_like_single_frames(stream_bundle, tmp_path):
    import edgesdk

    model, out = stream_bundle
    chunked = tmp_path / "chunk3"
    edgesdk.export(model, chunked, formats=("onnx",), mode="stream", chunk_frames=3, validation_steps=12, random_weights=True)
    single = stream_wav(edgesdk.load(out), FIXTURES / "no.wav")
    triple = stream_wav(edgesdk.load(chunked), FIXTURES / "no.wav")
    assert triple.frames_used == single.frames_used == 128
    assert triple.frame_top == single.frame_top
    difference = np.abs(np.subtract(triple.frame_probability, single.frame_probability))
    assert difference[:-5].max() <= 1e-5
    # A 3-frame step can end the stream only after whole steps: 129 frames (one more pad frame)
    # against 128, so the last 5 answers see that frame where the single-frame stream sees the end.
    assert triple.audio_frames + triple.padding_frames == 129 and difference[-5:].max() <= 1e-3
    assert (triple.audio_frames + triple.padding_frames) % 3 == 0 and len(triple.latency_ms) * 3 >= 128


def test_stream_wav_streams_a_file_larger_than_read_wav_takes(stream_bundle, tmp_path, monkeypatch):
    """A long recording is read block by block: never more than a block in memory, and the
    decisions on its first clip are PyTorch's (the same known answer as the offline test)."""
    import torch

    import edgesdk
    from edgesdk.runtime import audio

    model, out = stream_bundle
    clips = [read_wav(FIXTURES / f"{name}.wav") for name in ("yes", "no", "stop", "go")]
    long_wav = write_wav(tmp_path / "long.wav", np.concatenate(clips * 3))  # ~12 s, ~390 kB
    monkeypatch.setattr(audio, "MAX_WAV_BYTES", 64 << 10)
    monkeypatch.setattr(audio, "WAV_BLOCK_SECONDS", 0.37)  # not a whole number of hops: rounded to 37
    with pytest.raises(UsageError, match="at most 0 MiB"):
        read_wav(long_wav)  # the in-memory reader keeps its limit
    largest_read = []
    original_read = audio.WavFile.read

    def recording_read(self, start_sample, count):
        largest_read.append(count)
        return original_read(self, start_sample, count)

    monkeypatch.setattr(audio.WavFile, "read", recording_read)
    result = stream_wav(edgesdk.load(out), long_wav)
    total_samples = sum(clip.size for clip in clips) * 3
    assert result.audio_frames == KaldiFbankFrontend().num_frames(total_samples)
    assert result.frames_used == result.audio_frames and not result.early_exit
    assert max(largest_read) == 37 * 160 and len(largest_read) == -(-total_samples // (37 * 160))
    # The first clip ("yes", 98 frames) decides as PyTorch does on it, up to the look-ahead.
    offline = KaldiFbankFrontend().model_input(clips[0])
    with torch.no_grad():
        prefix = model.forward_prefix(torch.from_numpy(offline)[None])[0].numpy()
    usable = 98 - 5
    assert result.frame_top[:usable] == [int(i) for i in prefix[:usable].argmax(axis=1)]


def test_wav_with_an_unknown_data_size_reads_to_the_end_of_the_file(tmp_path):
    """Recorders writing to a pipe leave the data size at 0xFFFFFFFF: the file's length decides."""
    from edgesdk.runtime.audio import WavFile

    tone = (1000 * np.sin(np.arange(4000) / 5.0)).astype(np.int16)
    path = write_wav(tmp_path / "piped.wav", tone)
    raw = bytearray(path.read_bytes())
    data_at = raw.index(b"data")
    raw[data_at + 4: data_at + 8] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(raw))
    with WavFile(path) as wav:
        assert wav.num_samples == 4000
        assert np.array_equal(np.concatenate(list(wav.blocks(1500))), tone)
