"""Report files for a power-sensor measurement: JSON, Markdown, plots, raw trace."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgesdk.devices.sensors.base import Sensor
from edgesdk.profiler import profile_model, write_report


class Board(Sensor):
    """A power sensor reading 3 W idle and 7 W while the fake model computes."""

    name, label, quantity = "ina3221", "measured:ina3221", "power"

    def __init__(self):
        super().__init__("/")
        self.busy = threading.Event()

    def available(self):
        return True, "module input rail VDD_IN"

    def describe(self):
        return {"sensor": self.name, "scope": "module input rail VDD_IN"}

    reads = 0

    def read_power_w(self):
        self.reads += 1  # a micro-watt of dither, as a real monitor's last bit flickers
        return (7.0 if self.busy.is_set() else 3.0) + 1e-6 * (self.reads % 2)


class BusyModel:
    backend = "onnxruntime"
    providers = ["CPUExecutionProvider"]
    state_spec = []
    is_streaming = False
    manifest = {"ops": {"per": "inference", "macs": 1_000_000, "counted": "test"}, "model": {"family": "test", "preset": "busy"}}

    def __init__(self, board):
        self.board = board

    def example_feeds(self, seed=0):
        return {"x": np.zeros((1, 4), np.float32)}

    def run(self, feeds):
        self.board.busy.set()
        time.sleep(0.004)
        self.board.busy.clear()
        return {"y": feeds["x"]}


def test_power_sensor_report(tmp_path):
    board = Board()
    outcome = profile_model(
        BusyModel(board), tmp_path, load_time_s=0.01, runs=20, warmup=2, energy="ina3221",
        sensor=board, energy_windows=5, energy_time_limit_s=1.0, idle_s=0.1, min_active_s=0.1,
    )
    energy = outcome.result["energy"]
    assert energy["provenance"] == "measured:ina3221"
    # Sampled every 10 ms: an edge can charge up to one period of the neighbouring level.
    assert energy["idle_power_w"] == pytest.approx(3.0, rel=0.05)
    # About 4 extra watts for about 4 ms per call (sleep overshoots, so compare with the windows).
    durations = [end - start for start, end in outcome.measurement.inference_windows]
    assert energy["energy_per_inference_j"] == pytest.approx(4.0 * float(np.mean(durations)), rel=0.25)
    assert outcome.result["energy_estimate"]["energy_per_inference_j"] == pytest.approx(1e6 * 4.6e-12)

    written = write_report(outcome.result, tmp_path / "report", outcome.latency_times_s, outcome.measurement)
    assert {"profile_json", "summary_md", "latency_histogram", "power_trace", "power_trace_csv"} <= set(written)
    assert Path(written["power_trace"]).read_bytes()[:4] == b"\x89PNG"
    rows = Path(written["power_trace_csv"]).read_text().splitlines()
    assert rows[0] == "time_s,power_w"
    watts = {round(float(row.split(",")[1]), 3) for row in rows[1:]}
    assert watts == {3.0, 7.0}
    stored = json.loads(Path(written["profile_json"]).read_text())
    assert stored["plots"] == [written["latency_histogram"], written["power_trace"]]
    summary = Path(written["summary_md"]).read_text()
    assert "| net energy per inference |" in summary and "measured:ina3221" in summary
    assert "| idle power (median of " in summary and "| measurement boundary |" in summary
    assert "estimated:ops (lower bound)" in summary  # the estimate is shown apart, labelled


def test_plots_skipped_without_matplotlib_are_said_in_one_sentence(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    board = Board()
    outcome = profile_model(BusyModel(board), tmp_path, load_time_s=0.01, runs=5, warmup=0, energy="estimate")
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    written = write_report(outcome.result, tmp_path / "report", outcome.latency_times_s, outcome.measurement)
    assert not any(path.endswith(".png") for path in written.values())
    assert outcome.result["plots"] == []
    summary = Path(written["summary_md"]).read_text()
    assert "- warning: plots skipped: matplotlib is not installed (pip install 'edgesdk[profile]'), so no PNG was written" in summary
