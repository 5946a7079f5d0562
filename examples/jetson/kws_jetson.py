#!/usr/bin/env python3
"""Keyword spotting on an NVIDIA Jetson: an edgesdk streaming bundle, a WAV or a live microphone.

    python3 kws_jetson.py BUNDLE --wav clip.wav [--power-log power.csv]
    python3 kws_jetson.py BUNDLE --mic [--device 0] [--seconds 60]

What it does:

* loads the bundle's ONNX step with onnxruntime, asking for TensorRT, then CUDA, then CPU
  (only those this onnxruntime build has), and prints the providers onnxruntime actually uses;
* reads 16 kHz mono PCM in 10 ms hops, from a WAV file or a microphone (through ``sounddevice``
  when it is installed), computes the bundle's Kaldi fbank front-end frame by frame and pushes
  each frame through the stream, state carried inside it;
* decides in windows of the model's training length (128 frames, 1.28 s): a keyword whose
  running probability stays >= ``--early-exit`` (0.98) for ``--early-exit-frames`` (30) frames decides at
  once, otherwise the window's last frame decides (``edgesdk.runtime.spotter``, the rule of
  ``edgesdk demo``); keywords are printed, then the stream is reset;
* logs power from the Jetson's INA3221 / INA238 monitors (``edgesdk.devices.sensors``: the module
  input rail as total, every rail in the CSV) in a background thread, and prints the mean board
  power and the energy per second of audio — labelled ``measured:ina3221``. Where no monitor
  can be read (not a Jetson, no permission) it says why and runs without.

Needs only numpy, onnxruntime (the Jetson build, see README.md) and edgesdk's runtime
(``pip install edgesdk[runtime]``): no torch, no checkout. Copy this file and the bundle (even
just its edgesdk.json and model.onnx) to the device.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import queue
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

import edgesdk
from edgesdk.errors import BundleWarning, EdgeSDKError, UsageError
from edgesdk.runtime.audio import read_wav

# The decision rule is shared with `edgesdk demo` (torch-free, in the runtime).
from edgesdk.runtime.spotter import EARLY_EXIT_FRAMES, EARLY_EXIT_PROBABILITY, Detection, Spotter, is_filler

log = logging.getLogger("kws_jetson")

PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: list[str]) -> list[str]:
    """TensorRT, then CUDA, then CPU: the ones this onnxruntime build offers, in that order."""
    chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    return chosen or ["CPUExecutionProvider"]


# ---------------------------------------------------------------------------------- audio input


def wav_hops(path: Path, hop_samples: int, sample_rate_hz: int, realtime: bool) -> Iterator[np.ndarray]:
    """A WAV file in hops of ``hop_samples`` int16 samples (paced like a microphone if ``realtime``)."""
    samples = read_wav(path, sample_rate_hz)
    start_time = time.perf_counter()
    for index, start in enumerate(range(0, samples.size, hop_samples)):
        if realtime:
            delay = start_time + index * hop_samples / sample_rate_hz - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        yield samples[start: start + hop_samples]


def microphone_hops(hop_samples: int, sample_rate_hz: int, device: int | None, seconds: float | None) -> Iterator[np.ndarray]:
    """Live 16-bit mono audio from ``sounddevice`` in hops of ``hop_samples`` samples."""
    try:
        import sounddevice
    except ImportError:
        raise UsageError("--mic needs the sounddevice package (pip install sounddevice; "
                         "apt install libportaudio2)") from None
    hops: queue.Queue[np.ndarray] = queue.Queue()

    def callback(data: np.ndarray, frames: int, timing: object, status: object) -> None:
        if status:
            log.warning("audio input: %s", status)  # an overflow means hops were lost
        hops.put(data[:, 0].copy())

    with sounddevice.InputStream(samplerate=sample_rate_hz, channels=1, dtype="int16",
                                 blocksize=hop_samples, device=device, callback=callback):
        end = None if seconds is None else time.monotonic() + seconds
        while end is None or time.monotonic() < end:
            try:
                yield hops.get(timeout=1.0)
            except queue.Empty:
                raise UsageError("the microphone delivered nothing for 1 s; check --device") from None


# ---------------------------------------------------------------------------------- power


class PowerLogger:
    """Samples the INA3221 rails in a background thread; writes a CSV when asked."""

    def __init__(self, root: str, period_s: float, csv_path: Path | None):
        from edgesdk.devices.sensors.ina3221 import Ina3221Sensor

        self.sensor = Ina3221Sensor(root)
        self.usable, self.reason = self.sensor.available()
        self.period_s = period_s
        self.csv_path = csv_path
        self.rows: list[tuple[float, float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        if self.usable:
            self._thread.start()

    def _loop(self) -> None:
        origin = time.perf_counter()
        while not self._stop.is_set():
            try:
                rails = self.sensor.read_rails_w()
                total = self.sensor.read_power_w()
            except (OSError, EdgeSDKError) as error:
                self.reason = f"reading stopped: {error}"
                return
            self.rows.append((time.perf_counter() - origin, total, rails))
            self._stop.wait(self.period_s)

    def stop(self) -> dict:
        """Stop sampling; returns the summary (mean power, samples) with its label."""
        if not self.usable:
            return {"provenance": "unavailable", "reason": self.reason}
        self._stop.set()
        self._thread.join()
        if self.csv_path is not None and self.rows:
            names = sorted(self.rows[0][2])
            with open(self.csv_path, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["time_s", "total_w"] + [f"{name}_w" for name in names])
                for t, total, rails in self.rows:
                    writer.writerow([f"{t:.4f}", f"{total:.4f}"] + [f"{rails.get(name, float('nan')):.4f}" for name in names])
        if not self.rows:
            return {"provenance": "unavailable", "reason": self.reason or "no samples taken"}
        totals = np.array([row[1] for row in self.rows])
        return {
            "provenance": self.sensor.label,
            "scope": self.sensor.describe()["scope"],
            "mean_power_w": float(totals.mean()),
            "samples": int(totals.size),
            "csv": str(self.csv_path) if self.csv_path else None,
        }


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Keyword spotting with an edgesdk bundle on a Jetson.")
    parser.add_argument("bundle", type=Path, help="streaming bundle folder (edgesdk demo writes out/kws-demo)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, help="16 kHz mono 16-bit WAV to stream")
    source.add_argument("--mic", action="store_true", help="listen to a microphone (needs sounddevice)")
    parser.add_argument("--device", type=int, default=None, help="sounddevice input device index")
    parser.add_argument("--seconds", type=float, default=None, help="stop listening after this long")
    parser.add_argument("--realtime", action="store_true", help="pace a WAV like a microphone")
    parser.add_argument("--providers", default=None,
                        help="comma-separated onnxruntime providers (default: TensorRT, CUDA, CPU as available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of onnxruntime")
    parser.add_argument("--early-exit", type=float, default=EARLY_EXIT_PROBABILITY)
    parser.add_argument("--early-exit-frames", type=int, default=EARLY_EXIT_FRAMES)
    parser.add_argument("--power-log", type=Path, default=None, help="CSV of every rail's power over time")
    parser.add_argument("--power-period-ms", type=float, default=10.0)
    parser.add_argument("--sysfs-root", default="/", help="file-system root of the power monitors (tests)")
    parser.add_argument("--json", action="store_true", help="print one JSON summary on stdout at the end")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    try:
        import onnxruntime
    except ImportError:
        print("error: onnxruntime is not installed (see README.md for the JetPack wheel)", file=sys.stderr)
        return 5
    available = onnxruntime.get_available_providers()
    requested = [p.strip() for p in args.providers.split(",") if p.strip()] if args.providers else choose_providers(available)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BundleWarning)  # printed below as plain lines
            model = edgesdk.load(args.bundle, backend="onnxruntime", providers=requested, num_threads=args.threads)
        spotter = Spotter(model, args.early_exit, args.early_exit_frames)
    except EdgeSDKError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    for note in model.notes:  # random weights; artifacts not copied along (only model.onnx is needed)
        print(note, file=sys.stderr)
    print(f"onnxruntime {onnxruntime.__version__}: available {', '.join(available)}", file=sys.stderr)
    print(f"requested providers: {', '.join(requested)}", file=sys.stderr)
    print(f"providers in use:    {', '.join(model.providers)}", file=sys.stderr)

    power = PowerLogger(args.sysfs_root, args.power_period_ms / 1000.0, args.power_log)
    if not power.usable:
        print(f"power: not logged ({power.reason})", file=sys.stderr)
    hop = spotter.frontend.hop_samples
    rate = spotter.frontend.sample_rate_hz
    hops = (wav_hops(args.wav, hop, rate, args.realtime) if args.wav
            else microphone_hops(hop, rate, args.device, args.seconds))
    detections: list[Detection] = []

    def report(found: list[Detection]) -> None:
        for d in found:
            detections.append(d)
            if is_filler(d.label):
                continue
            how = "early exit" if d.early_exit else "end of window"
            print(f"[{d.time_s:7.2f} s] {d.label:<8} p={d.probability:.2f}  "
                  f"(frame {d.window_frame} of its window, {how})", flush=True)

    power.start()
    started = time.perf_counter()
    try:
        for pcm in hops:
            report(spotter.push_audio(pcm))
        report(spotter.finish())
    except KeyboardInterrupt:
        pass
    except EdgeSDKError as error:
        power.stop()
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    wall_s = time.perf_counter() - started
    energy = power.stop()
    audio_s = spotter.frames_total / 100.0
    latency_us = 1e6 * np.asarray(spotter.latency_s)
    summary = {
        "providers": model.providers,
        "audio_s": audio_s,
        "wall_s": wall_s,
        "frames": spotter.frames_total,
        "steps": int(latency_us.size),
        "latency_us_per_frame": {"median": float(np.median(latency_us)), "p90": float(np.percentile(latency_us, 90)),
                                  "provenance": "measured:wall-clock around each step"} if latency_us.size else None,
        "keywords": [d.label for d in detections if not is_filler(d.label)],
        "decisions": [d.__dict__ for d in detections],
        "power": energy,
    }
    if energy.get("mean_power_w") is not None and audio_s > 0:
        # Board power while streaming (gross: includes idle), times the wall time per audio second.
        summary["power"]["energy_per_audio_second_j"] = energy["mean_power_w"] * wall_s / audio_s
    if latency_us.size:
        print(f"{audio_s:.2f} s of audio, {latency_us.size} steps: median {np.median(latency_us):.0f} µs, "
              f"p90 {np.percentile(latency_us, 90):.0f} µs per frame on {model.providers[0]}", file=sys.stderr)
    if energy.get("mean_power_w") is not None:
        print(f"power ({energy['provenance']}, {energy['scope']}): mean {energy['mean_power_w']:.2f} W over "
              f"{energy['samples']} samples; {summary['power']['energy_per_audio_second_j']:.3f} J per second of audio "
              f"(gross board energy, idle included)", file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
