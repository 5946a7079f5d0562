"""Typed manifest sections: one reader per section, one message naming a bad field, old bundles still read."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgesdk.errors import BundleError
from edgesdk.runtime import chunking
from edgesdk.runtime.audio import KaldiFbankFrontend, stream_wav
from edgesdk.runtime.manifest import check_manifest
from edgesdk.runtime.sections import OpsCount, StreamingFacts, WaveformFrontend, check_sections

# edgesdk.json files exported by the code of the first round (before these dataclasses existed):
# LMUFormer tiny in stream mode, LightHuBERT tiny-supernet in full mode.
MANIFESTS = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"


def _fixture(name: str) -> dict:
    return json.loads((MANIFESTS / name).read_text())


def test_sections_round_trip_through_the_manifest():
    facts = StreamingFacts(frames_per_step=4, lookahead_frames=5, hop_samples=160, frame_rate_hz=100.0,
                           other={"note": "kept"})
    assert facts.to_manifest() == {"frames_per_step": 4, "lookahead_frames": 5, "hop_samples": 160,
                                   "frame_rate_hz": 100.0, "note": "kept"}
    assert StreamingFacts.from_manifest(facts.to_manifest()) == facts
    assert facts.step_duration_s == pytest.approx(0.04) and facts.steps_per_second == pytest.approx(25.0)
    assert StreamingFacts(frames_per_step=1, lookahead_frames=0).step_duration_s is None

    ops = OpsCount(per="step", macs=10, accumulates=5, counted="test", other={"layers": {"a": {"macs": 10}}})
    section = ops.to_manifest()
    assert section == {"per": "step", "macs": 10, "accumulates": 5, "counted": "test", "layers": {"a": {"macs": 10}}}
    again = OpsCount.from_manifest(section)
    assert again == ops and again.other == ops.other
    assert again.counts == {"macs": 10, "accumulates": 5, "binary_ops": 0}
    assert again.missing_counts == ["binary_ops"]

    waveform = WaveformFrontend(normalization="utterance_zero_mean_unit_variance", normalization_eps=1e-5)
    assert WaveformFrontend.from_manifest(waveform.to_manifest()) == waveform and waveform.normalizes

    fbank = KaldiFbankFrontend(num_mel_bins=64, clip_frames=100)
    assert KaldiFbankFrontend.from_manifest(fbank.to_manifest()) == fbank


@pytest.mark.parametrize(
    "section, read, message",
    [
        ({"frames_per_step": "1", "lookahead_frames": 5}, StreamingFacts.from_manifest,
         "streaming.frames_per_step must be an integer, not the string '1'"),
        ({"frames_per_step": 1}, StreamingFacts.from_manifest, "streaming.lookahead_frames is missing"),
        ({"frames_per_step": 0, "lookahead_frames": 0}, StreamingFacts.from_manifest,
         "streaming.frames_per_step must be at least 1, not 0"),
        ({"frames_per_step": 1, "lookahead_frames": 0, "frame_rate_hz": -100}, StreamingFacts.from_manifest,
         "streaming.frame_rate_hz must be positive"),
        ([1, 2], StreamingFacts.from_manifest, "streaming must be an object, not a list"),
        ({"macs": 1.5}, OpsCount.from_manifest, "ops.macs must be an integer, not a number"),
        ({"macs": -3}, OpsCount.from_manifest, "ops.macs must be at least 0"),
        ({"per": "frame", "macs": 3}, OpsCount.from_manifest, "ops.per is 'frame'; one of: inference, step"),
        ({"kind": "waveform", "normalization": "loudness"}, WaveformFrontend.from_manifest,
         "frontend.normalization is 'loudness'"),
        ({"kind": "waveform", "sample_rate_hz": "16k"}, WaveformFrontend.from_manifest,
         "frontend.sample_rate_hz must be an integer, not the string '16k'"),
        ({**KaldiFbankFrontend().to_manifest(), "num_mel_bins": "128"}, KaldiFbankFrontend.from_manifest,
         "frontend.num_mel_bins must be an integer"),
        ({**KaldiFbankFrontend().to_manifest(), "normalize_std": None}, KaldiFbankFrontend.from_manifest,
         "frontend.normalize_std must not be null"),
        ({**KaldiFbankFrontend().to_manifest(), "hop_samples": 0}, KaldiFbankFrontend.from_manifest,
         "hop_samples must be positive"),
        ({**KaldiFbankFrontend().to_manifest(), "type": "mfcc"}, KaldiFbankFrontend.from_manifest,
         "frontend.type is 'mfcc'"),
    ],
)
def test_a_bad_field_fails_in_one_place_naming_it(section, read, message):
    with pytest.raises(BundleError) as caught:
        read(section, "out/b/edgesdk.json")
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith("out/b/edgesdk.json: ")
    assert message in str(caught.value)


@pytest.mark.parametrize("name", ["lmuformer-tiny-stream.json", "lighthubert-tiny-supernet.json"])
def test_manifests_written_before_still_read(name):
    manifest = _fixture(name)
    check_manifest(manifest, name)  # every section, typed ones included
    for key, section_type in (("streaming", StreamingFacts), ("ops", OpsCount)):
        if key in manifest:
            # Reading and writing back gives the very section the old writer made.
            assert section_type.from_manifest(manifest[key], name).to_manifest() == manifest[key]
    frontend = manifest["frontend"]
    frontend_type = KaldiFbankFrontend if frontend.get("type") == "kaldi_fbank" else WaveformFrontend
    assert frontend_type.from_manifest(frontend, name).to_manifest() == frontend


def test_old_lmuformer_manifest_gives_the_facts_it_declared():
    manifest = _fixture("lmuformer-tiny-stream.json")
    facts = StreamingFacts.of(manifest)
    assert (facts.frames_per_step, facts.lookahead_frames, facts.hop_samples) == (1, 5, 160)
    assert facts.step_duration_s == pytest.approx(0.01)
    frontend = KaldiFbankFrontend.from_manifest(manifest["frontend"])
    assert frontend.num_mel_bins == manifest["inputs"][0]["shape"][-1] == 128
    assert OpsCount.from_manifest(manifest["ops"]).per == "step"


def test_old_lighthubert_manifest_plans_its_chunks():
    manifest = _fixture("lighthubert-tiny-supernet.json")

    class Loaded:
        format = "onnx"
        path = "lighthubert-tiny-supernet"

    Loaded.manifest = manifest
    plan = chunking.plan_for(Loaded())
    frontend = WaveformFrontend.from_manifest(manifest["frontend"])
    assert plan.sample_rate_hz == frontend.sample_rate_hz == 16000
    assert plan.normalization == ("utterance" if frontend.normalizes else "none")


def test_a_bad_section_is_refused_when_the_manifest_is_checked():
    manifest = _fixture("lmuformer-tiny-stream.json")
    manifest["streaming"]["lookahead_frames"] = "5"
    with pytest.raises(BundleError, match="streaming.lookahead_frames must be an integer"):
        check_manifest(manifest, "edgesdk.json")
    manifest = _fixture("lighthubert-tiny-supernet.json")
    manifest["frontend"]["normalization_eps"] = "tiny"
    with pytest.raises(BundleError, match="frontend.normalization_eps must be a finite number"):
        check_sections(manifest)


def test_runtime_readers_name_the_field():
    class Streaming:
        path = None
        manifest = {"frontend": KaldiFbankFrontend().to_manifest(), "streaming": {"frames_per_step": 1}}

    with pytest.raises(BundleError, match="streaming.lookahead_frames is missing"):
        stream_wav(Streaming(), "never-read.wav")

    class Chunked:
        format = "onnx"
        manifest = {"frontend": {"kind": "waveform", "sample_rate_hz": 16000.5},
                    "extra": {"lighthubert": {"receptive_field": {"cnn_samples": 400, "hop_samples": 320},
                                              "recommended_chunking": {"context_frames": 64, "centre_frames": 100},
                                              "example_window_samples": 16000}}}

    with pytest.raises(BundleError, match="frontend.sample_rate_hz must be an integer"):
        chunking.plan_for(Chunked())
    with pytest.raises(BundleError, match="frontend.sample_rate_hz"):
        chunking.run_chunked(Chunked(), np.zeros(16000, np.float32))
