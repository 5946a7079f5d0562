"""The Android app's plain-Java core, compiled with the JDK here and checked against edgesdk.

* front-end: the Java Kaldi fbank against torchaudio's output in tests/fixtures/kaldi_fbank (an
  independent reference), and the Java streaming front-end against the Python runtime's;
* streaming state: the Java StreamingSession replays a recording of the Python runtime's stream
  (every feed and output of every step), so each state it feeds must be exactly the state output
  the previous step returned, by the manifest's names and order;
* decisions: the Java KeywordDecider decides each clip where and as the Python spotter
  (examples/kws/spotter.py, the demo's rule) does.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

JAVA_SOURCES = REPO / "examples" / "android" / "app" / "src"
FIXTURES = REPO / "tests" / "fixtures" / "kaldi_fbank"
CLIPS = ("yes", "no", "stop", "go", "tone_440_1000", "noise_white")

pytestmark = pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None,
                                reason="javac/java (JDK 17) not on PATH")


@pytest.fixture(scope="module")
def classes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("java-classes")
    sources = sorted(str(p) for p in JAVA_SOURCES.rglob("*.java"))
    assert any("core/KaldiFbank.java" in s for s in sources)
    # The core must stay free of Android imports, or the app's logic could not be tested here.
    for source in sources:
        assert "import android" not in Path(source).read_text(), source
    subprocess.run(["javac", "-Xlint:all", "-Werror", "-d", str(out), *sources], check=True,
                   capture_output=True, text=True)
    return out


def java(classes: Path, main: str, *args: str) -> str:
    done = subprocess.run(["java", "-cp", str(classes), f"dev.edgesdk.kws.core.{main}", *args],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def java_fbank(classes: Path, tmp_path: Path, pcm: np.ndarray, mode: str, option: str) -> np.ndarray:
    pcm_path, out_path = tmp_path / "in.pcm", tmp_path / "out.f32"
    pcm.astype("<i2").tofile(pcm_path)
    java(classes, "FrontendCli", mode, str(pcm_path), str(out_path), option)
    return np.fromfile(out_path, dtype="<f4").reshape(-1, 128)


def test_java_fbank_matches_torchaudio_fixtures(classes, tmp_path):
    worst_raw = worst_input = 0.0
    for clip in CLIPS:
        with np.load(FIXTURES / f"{clip}.npz") as data:
            pcm, raw, model_input = data["waveform_int16"], data["fbank_raw"], data["fbank_model_input"]
        ours_raw = java_fbank(classes, tmp_path, pcm, "clip", "raw")
        ours_input = java_fbank(classes, tmp_path, pcm, "clip", "normalised")
        assert ours_raw.shape == raw.shape, clip
        frames = min(len(raw), 128)
        worst_raw = max(worst_raw, float(np.abs(ours_raw - raw).max()))
        worst_input = max(worst_input, float(np.abs(ours_input[:frames] - model_input[:frames]).max()))
    # The fixtures' README: an independent implementation should pass 2e-3 / 2e-4.
    assert worst_raw <= 2e-3, f"Java fbank vs torchaudio: max abs {worst_raw:.2e} on the log-mel"
    assert worst_input <= 2e-4, f"Java fbank vs torchaudio: max abs {worst_input:.2e} on the model input"


def test_java_streaming_frontend_matches_python_runtime(classes, tmp_path):
    from edgesdk.runtime.audio import KaldiFbankFrontend, StreamingFbank

    for clip in ("yes", "stop"):
        with np.load(FIXTURES / f"{clip}.npz") as data:
            pcm = data["waveform_int16"]
        python = StreamingFbank(KaldiFbankFrontend())
        expected = np.concatenate([python.push(pcm[i: i + 160]) for i in range(0, pcm.size, 160)])
        # Odd chunk sizes flush out buffering bugs in the Java ring of samples.
        for chunk in ("160", "37", "1000"):
            ours = java_fbank(classes, tmp_path, pcm, "stream", chunk)
            assert ours.shape == expected.shape, (clip, chunk)
            # Both compute in float64 and round once to float32: measured 6e-8 (one ulp near 1).
            assert np.abs(ours - expected).max() <= 1e-6, (clip, chunk)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The shipped keyword spotter, exported as a streaming ONNX bundle."""
    import edgesdk
    from examples.kws.common import CHECKPOINT
    from examples.kws.model import load_kws_model

    out = tmp_path_factory.mktemp("bundle") / "kws"
    edgesdk.export(load_kws_model(CHECKPOINT), out, formats=("onnx",), mode="stream")
    return out


def record_python_stream(bundle: Path, pcm: np.ndarray, folder: Path) -> dict:
    """Run edgesdk's Python stream over the clip, writing every step's feeds and outputs."""
    import edgesdk
    from edgesdk.runtime.audio import KaldiFbankFrontend, StreamingFbank

    model = edgesdk.load(bundle, backend="onnxruntime")
    stream = model.stream()
    fbank = StreamingFbank(KaldiFbankFrontend.from_manifest(model.manifest["frontend"]))
    step = 0
    last = None
    for start in range(0, pcm.size, 160):
        for frame in fbank.push(pcm[start: start + 160]):
            feeds = {"features": frame[None, None, :]}
            if model.end_input is not None:  # what Stream.push feeds while the input lasts
                feeds[model.end_input.name] = np.zeros((1, 1), dtype=np.float32)
            feeds.update({s.input: stream.state[s.name].copy() for s in model.state_spec})
            outputs = stream.push({"features": frame[None, None, :]})
            outputs.update({s.output: stream.state[s.name] for s in model.state_spec})
            for kind, tensors in (("in", feeds), ("out", outputs)):
                (folder / f"step_{step}" / kind).mkdir(parents=True, exist_ok=True)
                for name, value in tensors.items():
                    np.asarray(value, dtype="<f4").tofile(folder / f"step_{step}" / kind / f"{name}.f32")
            last = outputs["mean_logits"][0, -1]
            step += 1
    return {"steps": step, "last_mean_logits": last, "model": model}


def test_java_state_feeding_follows_the_manifest(classes, bundle, tmp_path):
    with np.load(FIXTURES / "yes.npz") as data:
        pcm = data["waveform_int16"]
    recorded = record_python_stream(bundle, pcm, tmp_path / "replay")
    pcm.astype("<i2").tofile(tmp_path / "yes.pcm")
    report = json.loads(java(classes, "ReplayCli", str(bundle / "edgesdk.json"), str(tmp_path / "replay"),
                             str(tmp_path / "yes.pcm")))
    manifest = json.loads((bundle / "edgesdk.json").read_text())
    states = manifest["state"]
    assert report["problems"] == []
    assert report["steps"] == recorded["steps"] == 98
    # Same order as the manifest: the inputs, then each state's input name.
    assert report["feed_order"] == [t["name"] for t in manifest["inputs"]] + [s["input"] for s in states]
    assert report["state_pairs"] == [f"{s['output']}->{s['input']}" for s in states]
    # Every state fed at every step is bit-identical to what the Python stream fed.
    assert set(report["state_max_abs_diff"]) == {s["input"] for s in states}
    assert all(diff == 0.0 for diff in report["state_max_abs_diff"].values()), report["state_max_abs_diff"]
    # Features: Java's front-end against the Python runtime's, frame by frame in the loop.
    assert report["feature_max_abs_diff"] <= 1e-6
    assert manifest["streaming"]["end_input"] == "end_frames" and report["end_input_max_abs_diff"] == 0.0
    onnx = next(a for a in manifest["artifacts"] if a["format"] == "onnx")
    assert report["backend_input_names"] == [f"onnx:{n}={onnx['inputs'][n]}" for n in report["feed_order"]]
    np.testing.assert_array_equal(np.asarray(report["last_mean_logits"], dtype=np.float32),
                                  recorded["last_mean_logits"])


def record_first_decision(bundle: Path, pcm: np.ndarray, folder: Path) -> object:
    """Run edgesdk's Python spotter over the clip as spot_wav does, writing the feeds and outputs
    of every step up to its first decision (the end-of-window steps of Stream.end() included);
    returns that decision."""
    import edgesdk
    from edgesdk.runtime.spotter import EARLY_EXIT_FRAMES, EARLY_EXIT_PROBABILITY, Spotter

    model = edgesdk.load(bundle, backend="onnxruntime")
    calls: list[tuple[dict, dict]] = []
    run_backend = model._run_backend

    def recording(feeds, engine=None):
        results = run_backend(feeds, engine)
        calls.append(({k: np.array(v) for k, v in feeds.items()}, {k: np.array(v) for k, v in results.items()}))
        return results

    model._run_backend = recording
    spotter = Spotter(model, EARLY_EXIT_PROBABILITY, EARLY_EXIT_FRAMES)
    detections = []
    for start in range(0, pcm.size, 160):
        detections = spotter.push_audio(pcm[start: start + 160])
        if detections:
            break
    detections = detections or spotter.finish()
    for step, (feeds, outputs) in enumerate(calls):
        for kind, tensors in (("in", feeds), ("out", outputs)):
            (folder / f"step_{step}" / kind).mkdir(parents=True, exist_ok=True)
            for name, value in tensors.items():
                value.astype("<f4").tofile(folder / f"step_{step}" / kind / f"{name}.f32")
    return detections[0]


def test_java_decider_decides_as_the_python_spotter(classes, bundle, tmp_path):
    from edgesdk.runtime.audio import read_wav

    from examples.kws.common import CLIPS_DIR
    from examples.kws.spotter import EARLY_EXIT_FRAMES, EARLY_EXIT_PROBABILITY

    window, lookahead = 128, 5
    early = ended = 0
    for clip in json.loads((CLIPS_DIR / "clips.json").read_text()):
        wav = CLIPS_DIR / clip["file"]
        pcm = read_wav(wav)
        folder = tmp_path / clip["file"]
        python = record_first_decision(bundle, pcm, folder / "replay")
        pcm.astype("<i2").tofile(folder / "in.pcm")
        report = json.loads(java(classes, "ReplayCli", str(bundle / "edgesdk.json"), str(folder / "replay"),
                                 str(folder / "in.pcm"), str(EARLY_EXIT_PROBABILITY), str(EARLY_EXIT_FRAMES)))
        # Java fed every step what Python fed (features, padding, the end input, state) ...
        assert report["problems"] == [], (clip["file"], report["problems"])
        assert report["feature_max_abs_diff"] <= 1e-6 and report["end_input_max_abs_diff"] == 0.0, clip["file"]
        assert all(diff == 0.0 for diff in report["state_max_abs_diff"].values()), clip["file"]
        # ... and decided the same, early or at the window's end.
        decision = report["decision"]
        assert (decision["label"], decision["window_frame"], decision["early_exit"]) == \
            (python.label, python.window_frame, python.early_exit), clip["file"]
        assert abs(decision["probability"] - python.probability) <= 1e-6, clip["file"]
        if python.early_exit:
            early += 1
        else:
            # The window closed at its 128th frame; Stream.end() took 5 more steps, no more audio.
            assert python.window_frame == window and report["steps"] == window + lookahead, clip["file"]
            ended += 1
    assert early >= 3 and ended >= 2, f"{early} early and {ended} ended windows among the bundled clips"
