"""The Jetson sample app's CPU path: a bundle, a WAV, detections, providers, INA3221 power log.

The power monitors are a fake hwmon tree (an Orin Nano's INA3221 as the mainline driver shows
it), since this machine has none; on a machine without any, the app must say why and go on.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

APP = REPO / "examples" / "jetson" / "kws_jetson.py"
CLIPS = REPO / "examples" / "kws" / "clips"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The shipped keyword spotter as a streaming ONNX bundle (what a Jetson would be given)."""
    import edgesdk
    from examples.kws.common import CHECKPOINT
    from examples.kws.model import load_kws_model

    out = tmp_path_factory.mktemp("bundle") / "kws"
    edgesdk.export(load_kws_model(CHECKPOINT), out, formats=("onnx", "tflite"), mode="stream")  # as `edgesdk demo`
    return out


def run_app(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(APP), *args], capture_output=True, text=True, timeout=300)


def fake_orin_nano_ina3221(root: Path) -> None:
    """/sys/class/hwmon/hwmon3: ina3221 with VDD_IN 5.0 V x 1.2 A, VDD_CPU_GPU_CV, VDD_SOC."""
    hwmon = root / "sys" / "class" / "hwmon" / "hwmon3"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("ina3221\n")
    rails = {1: ("VDD_IN", 5000, 1200), 2: ("VDD_CPU_GPU_CV", 5000, 300), 3: ("VDD_SOC", 5000, 400)}
    for channel, (label, millivolts, milliamps) in rails.items():
        (hwmon / f"in{channel}_label").write_text(label + "\n")
        (hwmon / f"in{channel}_input").write_text(f"{millivolts}\n")
        (hwmon / f"curr{channel}_input").write_text(f"{milliamps}\n")


def test_provider_preference_is_tensorrt_then_cuda_then_cpu():
    spec = importlib.util.spec_from_file_location("kws_jetson", APP)
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    every = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider", "AzureExecutionProvider"]
    assert app.choose_providers(every) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert app.choose_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert app.choose_providers(["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_cpu_path_spots_the_keyword_and_logs_ina3221_power(bundle, tmp_path):
    root = tmp_path / "root"
    fake_orin_nano_ina3221(root)
    power_csv = tmp_path / "power.csv"
    done = run_app(str(bundle), "--wav", str(CLIPS / "stop.wav"), "--json", "--sysfs-root", str(root),
                   "--power-log", str(power_csv), "--realtime")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["keywords"] == ["stop"]
    assert summary["providers"] == ["CPUExecutionProvider"]  # onnxruntime here has no GPU providers
    assert "providers in use:    CPUExecutionProvider" in done.stderr
    assert summary["frames"] == 98 and summary["steps"] >= 98
    assert summary["latency_us_per_frame"]["median"] > 0
    power = summary["power"]
    assert power["provenance"] == "measured:ina3221"
    assert power["mean_power_w"] == pytest.approx(6.0)  # VDD_IN only: 5.0 V x 1.2 A, not the sum of rails
    assert power["samples"] >= 10  # ~1 s of real-time audio sampled every 10 ms
    # Paced in real time, the energy per second of audio is the mean power times about 1 s.
    assert power["energy_per_audio_second_j"] == pytest.approx(6.0, rel=0.5)
    with open(power_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert rows and set(rows[0]) == {"time_s", "total_w", "VDD_CPU_GPU_CV_w", "VDD_IN_w", "VDD_SOC_w"}
    assert float(rows[0]["VDD_SOC_w"]) == pytest.approx(2.0)


def test_silence_gives_no_keyword_and_missing_monitors_are_explained(bundle, tmp_path):
    done = run_app(str(bundle), "--wav", str(CLIPS / "silence.wav"), "--json", "--sysfs-root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    assert summary["keywords"] == []
    assert [d["label"] for d in summary["decisions"]] == ["_silence_"]
    assert summary["power"]["provenance"] == "unavailable"
    assert "power: not logged (no INA3221/INA238 power monitor" in done.stderr


def test_wrong_wav_format_is_a_usage_error(bundle, tmp_path):
    import wave

    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes(b"\0\0" * 2 * 1600)
    done = run_app(str(bundle), "--wav", str(path))
    assert done.returncode == 2
    assert "has 2 channels" in done.stderr


def test_the_app_runs_from_its_own_folder_with_the_two_files_its_readme_says_to_copy(bundle, tmp_path):
    """What examples/jetson/README.md tells a user to copy: this script, edgesdk.json and model.onnx.

    Only the edgesdk package is importable (as after `pip install edgesdk[runtime]`): no checkout,
    no `examples` package.
    """
    device = tmp_path / "jetson"
    (device / "kws").mkdir(parents=True)
    shutil.copy(APP, device / "kws_jetson.py")
    for name in ("edgesdk.json", "model.onnx"):
        shutil.copy(bundle / name, device / "kws" / name)
    site = tmp_path / "site"
    site.mkdir()
    (site / "edgesdk").symlink_to(REPO / "edgesdk", target_is_directory=True)
    environment = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "kws_jetson.py", "kws", "--wav", str(CLIPS / "stop.wav"), "--json",
                           "--providers", "CPUExecutionProvider,", "--sysfs-root", str(tmp_path / "none")],
                          cwd=device, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout[done.stdout.index("{"):])["keywords"] == ["stop"]
    assert "requested providers: CPUExecutionProvider\n" in done.stderr  # the comma list, read as a list
    # The manifest also lists model.tflite (and the samples), which were not copied: said, not fatal.
    assert done.stderr.splitlines()[0] == "note: kws lacks model.tflite (listed in its manifest); using what is there: model.onnx"
    checked = subprocess.run([sys.executable, "-c", "import sys; from edgesdk.cli import main; sys.argv[0] = 'edgesdk'; main()",
                              "run", "kws", "--wav", str(CLIPS / "stop.wav")],
                             cwd=device, env=environment, capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stderr
    assert "stop.wav: stop" in checked.stdout
    shutil.copytree(bundle / "samples", device / "kws" / "samples")  # what `edgesdk validate` re-runs
    validated = subprocess.run([sys.executable, "-c", "from edgesdk.cli import main; main()", "validate", "kws"],
                               cwd=device, env=environment, capture_output=True, text=True, timeout=300)
    assert validated.returncode == 0, validated.stderr
    assert "✓ kws: samples reproduce on onnxruntime (model.onnx, float32)" in validated.stdout
