"""Chunked inference, checked against a numpy stand-in whose receptive field is known exactly.

The stand-in model mimics LightHuBERT's locality without torch: frame t is a projection of
samples [320 t, 320 t + 400) (the CNN), then a "same" convolution over 128 frames padded 64
left / 63 right (the positional conv). With >= 64 frames of context the chunked output must
therefore equal the whole-utterance output; with less it must not. Global attention (the part
no context makes exact) is measured on the real model in tests/models/test_lighthubert.py.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from edgesdk.errors import BundleError, UsageError
from edgesdk.runtime import chunking
from edgesdk.runtime.chunking import ChunkPlan

FIELD, HOP, KERNEL = 400, 320, 128


class LocalModel:
    """waveform [B, N] -> {"features": [B, T, 4]}: frame projection, then a 128-tap conv."""

    def __init__(self, fmt: str = "onnx", window_samples: int | None = None, normalize: bool = False, mixing: bool = True):
        rng = np.random.default_rng(0)
        self.projection = rng.standard_normal((FIELD, 4)) / 20
        self.taps = rng.standard_normal((KERNEL, 4)) / 10 * mixing
        self.format = fmt
        self.window_samples = window_samples
        self.calls: list[tuple[int, ...]] = []
        self.manifest = {
            "frontend": {"sample_rate_hz": 16000, "normalization": "utterance_zero_mean_unit_variance" if normalize else "none"},
            "extra": {
                "lighthubert": {
                    "receptive_field": {"cnn_samples": FIELD, "hop_samples": HOP},
                    "recommended_chunking": {"context_frames": 64, "centre_frames": 100},
                    "example_window_samples": window_samples or 16000,
                }
            },
        }

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["waveform"]
        self.calls.append(x.shape)
        if self.format == "tflite" and x.shape[1] != self.window_samples:
            raise AssertionError(f"fixed-shape model fed {x.shape}")
        T = (x.shape[1] - FIELD) // HOP + 1
        frames = np.stack([x[:, HOP * t : HOP * t + FIELD] @ self.projection for t in range(T)], axis=1)
        padded = np.pad(frames, ((0, 0), (KERNEL // 2, KERNEL // 2 - 1), (0, 0)))
        mixed = np.stack([(padded[:, t : t + KERNEL] * self.taps).sum(1) for t in range(T)], axis=1)
        return {"features": frames + np.tanh(mixed)}


def speech_like(seconds: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)  # syllable-rate amplitude modulation
    return (0.3 * envelope * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("total", [1, 5, 228, 229, 331, 499, 1000])
@pytest.mark.parametrize("window,context", [(228, 64), (49, 16), (30, 0)])
def test_windows_keep_every_frame_once_with_full_context(total, window, context):
    plan = ChunkPlan(FIELD, HOP, window_frames=window, context_frames=context)
    kept = []
    for start, keep_from, keep_to in plan.windows(total):
        assert 0 <= start and start + min(window, total) <= total
        assert start <= keep_from < keep_to <= start + window
        # every kept frame has `context` frames of real context, or the utterance edge
        assert keep_from - start >= context or start == 0
        assert start + window - keep_to >= context or start + window >= total
        kept.extend(range(keep_from, keep_to))
    assert kept == list(range(total))


def test_context_covering_the_positional_conv_is_exact_and_less_is_not():
    model = LocalModel()
    audio = speech_like(6.2)
    whole = chunking.run_whole(model, audio)
    exact = chunking.run_chunked(model, audio, context_frames=64)
    short = chunking.run_chunked(model, audio, context_frames=20)
    assert exact["features"].shape == whole["features"].shape == (1, 309, 4)
    assert len(model.calls) == 1 + 4 + 4  # one whole run, then ceil(309 / 100) windows each
    np.testing.assert_allclose(exact["features"], whole["features"], atol=1e-10)
    assert np.abs(short["features"] - whole["features"]).max() > 1e-3
    errors = chunking.chunking_error(whole, short)["features"]
    assert errors["relative_rms"] > 0 and errors["min_cosine"] < 1


def test_fixed_window_model_gets_only_its_window_length():
    # 1 s window: 16000 samples give 49 frames from 15760 samples; the spare 240 are padding
    # without the frame-mixing conv every frame is CNN-local, so any window must line up exactly
    model = LocalModel("tflite", window_samples=16000, mixing=False)
    audio = speech_like(4.0)
    plan = chunking.plan_for(model, context_frames=12)
    assert (plan.window_frames, plan.centre_frames, plan.window_samples) == (49, 25, 16000)
    result = chunking.run_chunked(model, audio, plan=plan)
    assert {shape for shape in model.calls} == {(1, 16000)}
    whole = LocalModel(mixing=False).run({"waveform": audio[None]})
    assert result["features"].shape == whole["features"].shape == (1, 199, 4)
    np.testing.assert_allclose(result["features"], whole["features"], atol=1e-10)
    with pytest.raises(UsageError, match="takes windows of 16000 samples"):
        chunking.plan_for(model, window_frames=60)


def test_audio_shorter_than_a_window_runs_once():
    model = LocalModel()
    audio = speech_like(0.5)
    result = chunking.run_chunked(model, audio)
    np.testing.assert_allclose(result["features"], model.run({"waveform": audio[None]})["features"])
    fixed = LocalModel("tflite", window_samples=16000)
    padded = chunking.run_chunked(fixed, audio, context_frames=8)
    assert padded["features"].shape == (1, 24, 4)


def test_utterance_normalisation_matches_whole_run_and_window_normalisation_drifts():
    model = LocalModel(normalize=True)
    audio = speech_like(6.0) * np.linspace(0.2, 1.0, 96000, dtype=np.float32)  # loudness changes
    whole = chunking.run_whole(model, audio)
    utterance = chunking.run_chunked(model, audio)
    window = chunking.run_chunked(model, audio, normalization="window")
    np.testing.assert_allclose(utterance["features"], whole["features"], atol=1e-6)
    assert np.abs(window["features"] - whole["features"]).max() > 1e-3


def test_normalize_waveform_independent_formula():
    x = speech_like(1.0) * 7 + 0.5
    y = chunking.normalize_waveform(x)
    expected = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    assert np.all(chunking.normalize_waveform(np.zeros(800, np.float32)) == 0)


def test_batch_rows_are_independent():
    model = LocalModel()
    audio = np.stack([speech_like(3.0, seed=1), speech_like(3.0, seed=2)])
    both = chunking.run_chunked(model, audio, context_frames=64)
    first = chunking.run_chunked(model, audio[0], context_frames=64)
    np.testing.assert_array_equal(both["features"][0], first["features"][0])


def test_bad_audio_errors_say_what_to_do():
    model = LocalModel()
    with pytest.raises(UsageError, match="8000 Hz.*16000 Hz.*resample"):
        chunking.run_chunked(model, speech_like(2.0)[::2], sample_rate_hz=8000)
    with pytest.raises(UsageError, match="integer PCM"):
        chunking.run_chunked(model, (speech_like(2.0) * 32767).astype(np.int16))
    with pytest.raises(UsageError, match="NaN"):
        chunking.run_chunked(model, np.full(8000, np.nan, np.float32))
    with pytest.raises(UsageError, match="shorter than one frame"):
        chunking.run_chunked(model, np.zeros(300, np.float32))
    with pytest.raises(UsageError, match="mono"):
        chunking.run_chunked(model, np.zeros((1, 2, 8000), np.float32))
    with pytest.raises(UsageError, match="no centre frames"):
        chunking.run_chunked(model, speech_like(2.0), context_frames=64, window_frames=100)


def test_silence_and_clipping_are_processed_with_a_warning(caplog):
    model = LocalModel(normalize=True)
    with caplog.at_level(logging.WARNING, logger="edgesdk.runtime.chunking"):
        silent = chunking.run_chunked(model, np.zeros(32000, np.float32))
    assert "silent" in caplog.text
    assert np.isfinite(silent["features"]).all()
    caplog.clear()
    clipped = np.clip(speech_like(3.0) * 20, -1, 1)
    with caplog.at_level(logging.WARNING, logger="edgesdk.runtime.chunking"):
        result = chunking.run_chunked(model, clipped)
    assert "clipped" in caplog.text
    assert np.isfinite(result["features"]).all()


def test_model_without_chunking_facts_is_named():
    model = LocalModel()
    model.manifest = {"frontend": {}}
    with pytest.raises(BundleError, match="extra.lighthubert"):
        chunking.run_chunked(model, speech_like(2.0))
    # ... and works with an explicit plan
    plan = ChunkPlan(FIELD, HOP, window_frames=228, context_frames=64, normalization="none")
    assert chunking.run_chunked(model, speech_like(2.0), plan=plan)["features"].shape == (1, 99, 4)
