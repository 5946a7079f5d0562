"""End to end: export a small bundle, profile it in the torch-free runtime, write the report."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgesdk.errors import BackendUnavailable, BundleError, MeasurementUnavailable, UsageError
from edgesdk.profiler import ProfileOptions, profile_bundle, profile_model, write_report

# Keys of numbers that are counts or ratios, not physical quantities (so they carry no unit).
UNITLESS = {
    "runs", "warmup_runs", "repeats", "inferences_per_repeat", "samples", "distinct_readings",
    "windows", "inferences_per_window", "min_distinct_readings", "min_inferences", "distinct_readings_idle",
    "distinct_readings_active", "distinct_readings_per_window_min", "repeated_readings_fraction", "counter_wraps",
    "sampler_overhead_fraction", "weight_bytes", "activation_bytes", "mac_pj_", "threads",
    "inferences", "samples_idle", "samples_active", "real_time_factor", "macs", "accumulates",
    "binary_ops", "nodes_counted", "cpu_count", "process_node_nm", "frames_per_step",
    "lookahead_frames", "max_energy_range_uj",
}
UNIT_SUFFIXES = ("_s", "_ms", "_j", "_w", "_hz", "_mib", "_pj", "_per_s", "_uj", "_nm", "_bits", "_khz", "_c",
                 "_pj_per_byte", "pj_per_byte")


def _numeric_keys(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield key, f"{path}.{key}"
            else:
                yield from _numeric_keys(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _numeric_keys(value, f"{path}[{index}]")


def _assert_units_and_provenance(result):
    for key, where in _numeric_keys(result):
        assert key in UNITLESS or key.endswith(UNIT_SUFFIXES), f"{where} has no unit in its name"
    for section in ("latency", "memory", "energy"):
        assert result[section]["provenance"], section


def test_full_bundle_with_ops_estimate(bundles, tmp_path):
    outcome = profile_bundle(bundles["mlp"], runs=30, warmup=3, energy="estimate")
    result = outcome.result
    assert result["mode"] == "full"
    assert result["backend"]["name"] in {"onnxruntime", "litert"}
    assert result["backend"]["providers_in_use"]
    latency = result["latency"]
    assert latency["runs"] == 30 and latency["provenance"] == "measured:perf_counter"
    assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
    assert latency["load_time_s"] > 0 and latency["first_inference_ms"] > 0
    assert result["memory"]["peak_rss_mib"] > 10
    energy = result["energy"]
    assert energy["provenance"] == "estimated:ops"
    # No ops section in a plain export: MACs are counted from the ONNX graph.
    assert energy["ops_source"] == "counted:onnx-graph"
    assert energy["ops"]["macs"] == bundles["mlp_macs"]
    assert energy["energy_per_inference_j"] == pytest.approx(bundles["mlp_macs"] * 4.6e-12)
    assert outcome.measurement is None
    _assert_units_and_provenance(result)

    written = write_report(result, tmp_path / "report", outcome.latency_times_s, outcome.measurement)
    stored = json.loads(Path(written["profile_json"]).read_text())
    assert stored["energy"]["provenance"] == "estimated:ops"
    summary = Path(written["summary_md"]).read_text()
    assert "estimated:ops" in summary and "not a measurement" in summary
    png = Path(written["latency_histogram"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "power_trace" not in written  # nothing was measured, so no trace is drawn


def test_streaming_bundle_step_by_step(bundles):
    outcome = profile_bundle(bundles["step"], runs=40, warmup=2, stream=True, energy="estimate")
    result = outcome.result
    assert result["mode"] == "stream"
    assert set(result["inputs"]) == {"x"}  # the state is carried by the stream, not fed
    assert result["energy"]["ops"]["macs"] == bundles["step_macs"]
    assert result["latency"]["runs"] == 40


def test_profile_under_emulation_labels_latency_and_warns(bundles, monkeypatch, tmp_path):
    # As in the aarch64 userland under qemu-user: the live host check reports another ISA family.
    import edgesdk.profiler.latency as latency_module
    from edgesdk.devices.detect import IsaCheck, ProcessIsa

    emulated = IsaCheck(
        process=ProcessIsa("aarch64", 64, "aarch64-linux-gnu", "cpython 3.11"),
        kernel_arch="x86_64",
        cpu_family="x86",
        emulated=True,
        disagreements=("/proc/cpuinfo describes an x86 CPU, but this process runs aarch64",),
    )
    monkeypatch.setattr(latency_module, "check_isa", lambda root="/": emulated)
    outcome = profile_bundle(bundles["mlp"], runs=5, warmup=1, energy="estimate")
    result = outcome.result
    assert result["latency"]["provenance"] == "measured:emulated-aarch64"
    assert result["latency"]["emulated"] is True
    assert any(w.startswith("timings under emulation are not device timings") for w in result["warnings"])
    written = write_report(result, tmp_path / "report", outcome.latency_times_s, outcome.measurement)
    summary = Path(written["summary_md"]).read_text()
    assert "| latency p50 / p90 / p99" in summary and "measured:emulated-aarch64" in summary
    assert "measured:perf_counter" not in summary
    assert "- warning: timings under emulation are not device timings" in summary


def test_stream_flag_on_a_full_bundle_is_a_usage_error(bundles):
    with pytest.raises(UsageError, match="not a streaming bundle"):
        profile_bundle(bundles["mlp"], runs=2, warmup=0, stream=True, energy="estimate")


def test_explicit_sensor_missing_fails_before_loading(bundles, tmp_path):
    def loader(*args, **kwargs):
        raise AssertionError("the bundle must not be loaded when the sensor cannot work")

    with pytest.raises(MeasurementUnavailable, match="rapl") as caught:
        profile_bundle(bundles["mlp"], energy="rapl", root=tmp_path, loader=loader)
    assert caught.value.exit_code == 6


def test_bad_arguments(bundles, tmp_path):
    with pytest.raises(UsageError, match="not a bundle"):
        profile_bundle(tmp_path)
    with pytest.raises(UsageError, match="energy"):
        profile_bundle(bundles["mlp"], energy="wattmeter")
    with pytest.raises(UsageError, match="runs"):
        profile_bundle(bundles["mlp"], runs=0)
    with pytest.raises(UsageError, match=r"unknown profile option\(s\) repeats; valid: backend, energy, "):
        profile_bundle(bundles["mlp"], repeats=3)
    with pytest.raises(UsageError, match="not both"):
        profile_bundle(bundles["mlp"], ProfileOptions(runs=2), runs=3)


def test_options_are_one_frozen_value(bundles):
    options = ProfileOptions(runs=7, warmup=1, energy="estimate")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.runs = 8
    outcome = profile_bundle(bundles["mlp"], options)
    assert outcome.result["latency"]["runs"] == 7 and outcome.result["latency"]["warmup_runs"] == 1
    # The same options as keywords give the same kind of profile.
    assert profile_bundle(bundles["mlp"], runs=7, warmup=1, energy="estimate").result["latency"]["runs"] == 7


# The fake kernel's loop: every millisecond, the energy a constant draw has used since it started.
FAKE_RAPL_LOOP = """
import os, sys, time
zone, watts, max_range_uj = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
while True:
    microjoules = int(watts * (time.perf_counter() - start) * 1e6)
    with open(os.path.join(zone, "energy_uj.tmp"), "w") as handle:
        handle.write(f"{microjoules % max_range_uj}\\n")
    os.replace(os.path.join(zone, "energy_uj.tmp"), os.path.join(zone, "energy_uj"))  # old or new, never half
    with open(os.path.join(zone, "wraps.tmp"), "w") as handle:
        handle.write(str(microjoules // max_range_uj))
    os.replace(os.path.join(zone, "wraps.tmp"), os.path.join(zone, "wraps"))
    time.sleep(0.001)
"""


class FakeRaplKernel:
    """Advances a fake package counter at ``watts``, wrapping at ``max_range_uj`` like RAPL.

    It runs in a process of its own, as the kernel does: a thread of the test process would stop
    advancing whenever the profiler holds the interpreter lock, and then jump by more than a whole
    range between two reads, which no real counter does.
    """

    def __init__(self, root: Path, watts: float, max_range_uj: int):
        self.zone = root / "sys/class/powercap/intel-rapl:0"
        self.zone.mkdir(parents=True)
        (self.zone / "name").write_text("package-0\n")
        (self.zone / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
        (self.zone / "energy_uj").write_text("0\n")
        self.arguments = [str(self.zone), str(watts), str(max_range_uj)]
        self._process: subprocess.Popen | None = None

    @property
    def wraps(self) -> int:
        return int((self.zone / "wraps").read_text())

    def start(self) -> None:
        self._process = subprocess.Popen([sys.executable, "-c", FAKE_RAPL_LOOP, *self.arguments])
        deadline = time.monotonic() + 30
        while not (self.zone / "wraps").exists():  # running before the profiler's first read
            assert self._process.poll() is None and time.monotonic() < deadline, "the fake kernel did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)


def test_measured_with_a_fake_rapl_counter_that_wraps(bundles, tmp_path):
    # 10 W into a 3 J counter: it wraps every 0.3 s, several times during the run.
    kernel = FakeRaplKernel(tmp_path, watts=10.0, max_range_uj=3_000_000)
    kernel.start()
    try:
        outcome = profile_bundle(
            bundles["mlp"], runs=10, warmup=1, energy="rapl", root=tmp_path,
            energy_windows=5, energy_time_limit_s=1.0, idle_s=0.1, min_active_s=0.1,
        )
    finally:
        kernel.stop()
    assert kernel.wraps >= 3
    energy = outcome.result["energy"]
    assert energy["provenance"] == "measured:rapl"
    # Constant draw: over the whole trace the counter, unwrapped, gives the 10 W the kernel wrote
    # (a missed or an invented wrap is 3 J, 25 % or more of the trace's energy).
    times, joules = outcome.measurement.trace.arrays()
    assert (joules[-1] - joules[0]) / (times[-1] - times[0]) == pytest.approx(10.0, rel=0.05)
    # Window by window too, within what the fake kernel thread's scheduling jitter allows.
    assert energy["idle_power_w"] == pytest.approx(10.0, rel=0.25)
    assert energy["active_power_w"] == pytest.approx(10.0, rel=0.25)
    assert energy["samples"] > 20
    assert energy["counter_wraps"] >= 3 and any(flag["flag"] == "counter-wrap" for flag in energy["flags"])
    assert outcome.result["energy_estimate"]["provenance"] == "estimated:ops"  # kept apart
    _assert_units_and_provenance(outcome.result)

    written = write_report(outcome.result, tmp_path / "report", outcome.latency_times_s, outcome.measurement)
    assert Path(written["power_trace"]).read_bytes()[:4] == b"\x89PNG"
    rows = Path(written["power_trace_csv"]).read_text().splitlines()
    assert rows[0] == "time_s,energy_j" and len(rows) == energy["samples"] + 1
    summary = Path(written["summary_md"]).read_text()
    assert "measured:rapl" in summary and "estimated:ops (lower bound)" in summary
    assert "estimated:ops+memory" in summary


class FakeStream:
    def __init__(self):
        self.steps = 0

    def push(self, feeds):
        self.steps += 1
        return {"y": feeds["x"] * 2}


class FakeModel:
    """Duck-typed runtime model: what a family bundle with ops and streaming sections looks like."""

    backend = "onnxruntime"
    providers = ["CPUExecutionProvider"]
    state_spec = []
    is_streaming = False

    def __init__(self, manifest):
        self.manifest = manifest

    def example_feeds(self, seed=0):
        return {"x": np.zeros((1, 4), np.float32)}

    def run(self, feeds):
        return {"y": feeds["x"] * 2}


class FakeStreamingModel(FakeModel):
    is_streaming = True

    def __init__(self, manifest):
        super().__init__(manifest)
        self.state_spec = [{"name": "h", "input": "h", "output": "h_next"}]
        self.opened = []

    def example_feeds(self, seed=0):
        return {"x": np.zeros((1, 4), np.float32)}

    def stream(self, batch=1):
        self.opened.append(FakeStream())
        return self.opened[-1]


SPIKING_OPS = {"per": "step", "macs": 200_000, "accumulates": 1_000_000, "binary_ops": 0, "counted": "dense first layer, spike-gated rest"}


def test_manifest_ops_and_streaming_facts(tmp_path):
    manifest = {"ops": SPIKING_OPS, "streaming": {"frames_per_step": 4, "lookahead_frames": 0, "hop_samples": 160, "frame_rate_hz": 100.0}}
    model = FakeStreamingModel(manifest)
    outcome = profile_model(model, tmp_path, load_time_s=0.01, runs=25, warmup=5, stream=True, energy="estimate")
    result = outcome.result
    assert model.opened and model.opened[0].steps == 1 + 5 + 25  # first + warm-up + timed
    energy = result["energy"]
    expected_step_j = 200_000 * 4.6e-12 + 1_000_000 * 0.9e-12
    assert energy["energy_per_inference_j"] == pytest.approx(expected_step_j)
    assert energy["ops_source"] == "bundle manifest" and energy["per"] == "step"
    # 4 frames at 100 Hz: each step is 40 ms of audio.
    assert result["streaming"]["step_duration_s"] == pytest.approx(0.04)
    assert energy["energy_per_audio_second_j"] == pytest.approx(expected_step_j / 0.04)
    assert result["streaming"]["real_time_factor"] == pytest.approx(result["latency"]["mean_ms"] * 1e-3 / 0.04)
    _assert_units_and_provenance(result)


def test_silent_fallback_is_reported_and_strict_makes_it_an_error(tmp_path, monkeypatch):
    import edgesdk.profiler.session as session

    monkeypatch.setattr(
        session, "onnxruntime_info",
        lambda: {"installed": True, "version": "test", "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]},
    )
    model = FakeModel({"ops": {"macs": 10}})
    outcome = profile_model(model, tmp_path, load_time_s=0.01, runs=2, warmup=0, energy="estimate", root=_x86_root(tmp_path))
    backend = outcome.result["backend"]
    assert backend["fallback"] is True
    assert backend["providers_preferred"][0] == "CUDAExecutionProvider"
    assert any("CUDAExecutionProvider" in warning for warning in outcome.result["warnings"])
    with pytest.raises(BackendUnavailable, match="strict-providers") as caught:
        profile_model(model, tmp_path, load_time_s=0.01, runs=2, warmup=0, energy="estimate", strict_providers=True, root=_x86_root(tmp_path))
    assert caught.value.exit_code == 5


def test_ill_typed_manifest_sections_are_named(tmp_path):
    with pytest.raises(BundleError, match="ops.macs must be an integer, not the string 'many'"):
        profile_model(FakeModel({"ops": {"macs": "many"}}), tmp_path, load_time_s=0.01, runs=2, warmup=0, energy="estimate")
    manifest = {"ops": SPIKING_OPS, "streaming": {"frames_per_step": 4}}
    with pytest.raises(BundleError, match="streaming.lookahead_frames is missing"):
        profile_model(FakeStreamingModel(manifest), tmp_path, load_time_s=0.01, runs=2, warmup=0, stream=True, energy="estimate")


def test_no_sensor_and_nothing_to_count(tmp_path):
    outcome = profile_model(FakeModel({}), tmp_path, load_time_s=0.01, runs=2, warmup=0, energy="auto", sensors_tried={"rapl": "absent"})
    energy = outcome.result["energy"]
    assert energy["provenance"] == "unavailable" and energy["energy_per_inference_j"] is None
    assert "no ONNX file" in energy["reason"]
    with pytest.raises(MeasurementUnavailable, match="cannot estimate"):
        profile_model(FakeModel({}), tmp_path, load_time_s=0.01, runs=2, warmup=0, energy="estimate")


def _x86_root(tmp_path):
    root = tmp_path / "x86"
    (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
    (root / "proc/sys/kernel/arch").write_text("x86_64\n")
    return root


def test_family_streaming_bundle_energy_per_audio_second(lmuformer_stream_bundle, tmp_path):
    manifest = json.loads((lmuformer_stream_bundle / "edgesdk.json").read_text())
    outcome = profile_bundle(lmuformer_stream_bundle, runs=50, warmup=5, stream=True, energy="estimate")
    result = outcome.result
    energy, streaming = result["energy"], result["streaming"]
    assert result["mode"] == "stream" and energy["per"] == "step"
    assert energy["ops_source"] == "bundle manifest"
    macs, accumulates = manifest["ops"]["macs"], manifest["ops"].get("accumulates", 0)
    assert energy["energy_per_inference_j"] == pytest.approx(macs * 4.6e-12 + accumulates * 0.9e-12)
    step_s = manifest["streaming"]["frames_per_step"] / manifest["streaming"]["frame_rate_hz"]
    assert streaming["step_duration_s"] == pytest.approx(step_s)
    assert energy["energy_per_audio_second_j"] == pytest.approx(energy["energy_per_inference_j"] / step_s)
    assert 0 < streaming["real_time_factor"]
    _assert_units_and_provenance(result)
    written = write_report(result, tmp_path / "report", outcome.latency_times_s, outcome.measurement)
    assert "energy per second of audio" in Path(written["summary_md"]).read_text()
