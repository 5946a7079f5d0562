"""The keyword-spotting demo: the shipped model and clips, `edgesdk demo` end to end, the recipe."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.kws.common import CHECKPOINT, CLIPS_DIR, LABELS  # noqa: E402


def shipped_clips() -> list[dict]:
    return json.loads((CLIPS_DIR / "clips.json").read_text())


def test_shipped_checkpoint_and_clips_are_small_and_cover_every_class():
    assert CHECKPOINT.stat().st_size <= 3 * 1024 * 1024
    clips = shipped_clips()
    assert sorted(c["label"] for c in clips) == sorted(LABELS)
    for clip in clips:
        path = CLIPS_DIR / clip["file"]
        assert path.stat().st_size <= 64 * 1024
    # Held out: spoken by voice variants the training set never used.
    train_variants = {"+" + v for v in json.loads((REPO / "examples" / "kws" / "synthesis.json").read_text())["train_variants"]}
    for clip in clips:
        if clip["voice"]:
            assert not any(clip["voice"].endswith(v) for v in train_variants), clip


def test_pytorch_model_classifies_every_bundled_clip():
    """The independent reference for the demo: the PyTorch parallel model on the whole clip."""
    import torch

    from edgesdk.runtime.audio import KaldiFbankFrontend, read_wav
    from examples.kws.model import load_kws_model

    model = load_kws_model(CHECKPOINT)
    frontend = KaldiFbankFrontend()
    clips = shipped_clips()
    features = np.stack([frontend.model_input(read_wav(CLIPS_DIR / c["file"])) for c in clips])
    with torch.no_grad():
        predicted = model(torch.from_numpy(features)).argmax(dim=1).tolist()
    assert [LABELS[i] for i in predicted] == [c["label"] for c in clips]


def test_demo_detects_every_bundled_clip_on_both_backends(tmp_path):
    from edgesdk.cli import cli

    output = tmp_path / "kws-demo"
    result = CliRunner().invoke(cli, ["demo", "-o", str(output), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["validation"]["passed"]
    assert set(report["validation"]["formats"]) == {"onnx", "tflite"}
    for fmt, facts in report["validation"]["formats"].items():
        assert facts["passed"] and facts["steps"] >= 40 + 2 * 128, fmt  # seeded + two real clips
    from examples.kws.demo import validation_lines

    # the report's validation part is edgesdk's own tick lines, one per format and output
    lines = validation_lines(report["validation"])
    assert len(lines) == 2 * len(report["validation"]["formats"]["onnx"]["outputs"])
    for line in lines:
        assert line.startswith(("✓ onnx   3 sequences, ", "✓ tflite 3 sequences, ")) and " max abs " in line, line
    assert set(report["backends"]) == {"onnxruntime", "litert"}
    expected = {c["file"]: c["label"] for c in shipped_clips()}
    for backend, facts in report["backends"].items():
        assert facts["providers"], backend
        detected = {row["clip"]: row["detected"] for row in facts["clips"]}
        assert detected == expected, backend
        energy = facts["energy"]
        assert energy["provenance"] == "estimated:ops" or energy["provenance"].startswith("measured:")
        assert energy["energy_per_audio_second_j"] > 0
        for row in facts["clips"]:
            assert row["latency_us_per_frame_median"] > 0
            # Decided within the 128-frame window (its last 5 answers come from Stream.end()),
            # and never later than the audio it came from: padding adds frames, not time.
            assert 5 < row["decided_at_frame"] <= 128
            assert row["decided_at_ms"] <= row["audio_ms"]
            if row["early_exit"]:
                assert row["probability"] >= 0.98
    assert report["all_correct"]
    # The bundle stays, valid, for `edgesdk inspect` / the sample apps.
    manifest = json.loads((output / "edgesdk.json").read_text())
    assert manifest["valid"] and manifest["mode"] == "stream"
    assert manifest["extra"]["labels"] == list(LABELS)


def test_spotter_decisions_are_timed_by_audio_and_whole_windows_equal_the_parallel_model(tmp_path):
    """Regression: the demo printed "decided at 1.34 s" for 0.99 s clips (frames pushed, padding
    and look-ahead included, were counted as audio). A whole-window decision now ends the stream
    at the window's 128th frame, so its answer is the parallel model's on the padded clip."""
    import torch

    import edgesdk
    from examples.kws.demo import bundled_clips, clip_features
    from examples.kws.model import load_kws_model
    from examples.kws.spotter import spot_wav

    clips = bundled_clips()
    torch_model = load_kws_model(CHECKPOINT)
    exported = edgesdk.export(torch_model, tmp_path / "kws", formats=("onnx",), mode="stream", validation_steps=8)
    model = edgesdk.load(exported.path, backend="onnxruntime")
    features = np.stack(clip_features(clips))
    with torch.no_grad():
        parallel = torch_model(torch.from_numpy(features)).numpy()  # mean logits over the 128-frame window
    early_seen = 0
    for clip, logits in zip(clips, parallel):
        for early_exit_frames in (30, 10 ** 9):  # the demo's rule, and whole windows only
            detections, spotter = spot_wav(model, clip["path"], 0.98, early_exit_frames)
            first = detections[0]
            audio_end_s = spotter.audio_time_s(spotter.frames_total)
            assert spotter.frames_total == 98 and abs(audio_end_s - 0.995) < 1e-9
            assert first.time_s <= audio_end_s, (clip["file"], first)
            if first.early_exit:
                early_seen += 1
                # at the end of the frame that made it decide, or at the audio's end if that
                # frame was padding (pushed at once when the audio ended)
                assert first.time_s == spotter.audio_time_s(min(first.window_frame, 98)) <= audio_end_s
            else:
                assert first.window_frame == 128 and first.time_s == audio_end_s
                top = int(np.argmax(logits))
                assert first.label == LABELS[top], clip["file"]
                assert abs(first.probability - 1.0 / (1.0 + np.exp(-logits[top]))) <= 1e-5, clip["file"]
    assert early_seen >= 3


def test_int8_spotter_still_detects_every_bundled_clip(tmp_path):
    """The trained model with int8 TFLite weights, judged by what matters: the detections."""
    import edgesdk
    from examples.kws.demo import bundled_clips, clip_features, stream_clips
    from examples.kws.model import load_kws_model

    clips = bundled_clips()
    exported = edgesdk.export(load_kws_model(CHECKPOINT), tmp_path / "int8", formats=("tflite",), mode="stream",
                              quantize="int8", sample_features=clip_features([clips[0], clips[-1]]))
    assert exported.manifest["artifacts"][0]["precision"] == "int8-dynamic"
    rows = stream_clips(edgesdk.load(exported.path, backend="litert"), clips, early_exit=0.98, early_exit_frames=30)
    assert {row["clip"]: row["detected"] for row in rows} == {c["file"]: c["label"] for c in shipped_clips()}


def test_demo_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path):
    from edgesdk.cli import cli

    output = tmp_path / "precious"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["demo", "-o", str(output)])
    assert result.exit_code == 2
    assert "not an edgesdk bundle" in result.output
    assert (output / "notes.txt").read_text() == "keep me"


def test_a_checkpoint_without_the_kws_config_is_refused(tmp_path):
    import torch

    from edgesdk.errors import CheckpointError
    from examples.kws.model import load_kws_model

    path = tmp_path / "plain.pt"
    torch.save({"model": {"head.weight": torch.zeros(12, 64)}}, path)
    with pytest.raises(CheckpointError, match="no 'config' entry"):
        load_kws_model(path)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (the recipe needs it, the demo does not)")
def test_recipe_synthesizes_trains_and_writes_a_loadable_checkpoint(tmp_path):
    data = tmp_path / "data"
    env_python = sys.executable
    subprocess.run([env_python, "-m", "examples.kws.synthesize", "--out", str(data), "--train-per-word", "2",
                    "--test-per-word", "1"], cwd=REPO, check=True, capture_output=True, timeout=300)
    train = np.load(data / "train.npz")
    test = np.load(data / "test.npz")
    assert train["waveforms"].dtype == np.int16 and train["waveforms"].shape[1] == 16000
    assert set(np.unique(train["labels"])) == set(range(len(LABELS)))
    facts = json.loads((data / "synthesis.json").read_text())
    assert not set(facts["train_variants"]) & set(facts["test_variants"])
    test_variants = {v.split("+")[1] for v in test["voices"] if v}
    assert test_variants <= set(facts["test_variants"])
    checkpoint = tmp_path / "tiny.pt"
    subprocess.run([env_python, "-m", "examples.kws.train", "--data", str(data), "--out", str(checkpoint),
                    "--epochs", "1", "--embed-dim", "8", "--batch", "8"],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    from examples.kws.model import load_kws_model

    model = load_kws_model(checkpoint)
    assert model.config.embed_dim == 8 and model.config.labels == LABELS
