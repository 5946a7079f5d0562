"""LMUFormer streaming benchmark: per-frame latency of the exported step against PyTorch.

One run, one machine, for each preset (default scv2 and scv2-spiking) and each clip length
T in (32, 128, 512) frames:

* the exported one-frame step (``mode="stream"``) on onnxruntime and on LiteRT, through
  ``edgesdk.load(...).stream()`` (state carried by the runtime);
* the same step exported with ``quantize="int8"`` (dynamic-range int8 weights) on LiteRT,
  for the non-spiking presets (spiking ones refuse int8);
* the fp32 floor: numpy matrix-vector products over every weight matrix of the step, once each
  (a step must read all its weights, and at batch 1 that read is the cost);
* the same step in PyTorch eager (``model.forward_step``, no_grad);
* PyTorch recomputing the parallel model over the whole prefix at every frame (what a
  non-streaming deployment does to get a running decision): the cost at frame t is measured at 8
  evenly spaced t and averaged over the clip (trapezoid rule), which is the mean per-frame cost.

Step timings are the median over the T frames of one stream; the three step runners alternate
frame by frame, so machine load hits them alike. Threads: 1 (``--threads``).

    python benchmarks/bench_lmuformer.py [--preset scv2 --preset scv2-spiking] [--threads 1]

Writes the table to benchmarks/results/lmuformer.md (``--output``) and prints it.
"""
from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import edgesdk  # noqa: E402

FRAMES = (32, 128, 512)
BACKENDS = ("onnxruntime", "litert")


def seconds(call) -> float:
    start = time.perf_counter_ns()
    call()
    return (time.perf_counter_ns() - start) * 1e-9


def bench_preset(preset: str, threads: int, workdir: Path) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    model = edgesdk.create_model("lmuformer", preset=preset)
    bundle = workdir / f"{preset}-stream"
    started = time.perf_counter()
    edgesdk.export(model, bundle, formats=("onnx", "tflite"), mode="stream", random_weights=True)
    logging.info("%s: stream export and validation took %.0f s", preset, time.perf_counter() - started)
    runtimes = {name: edgesdk.load(bundle, backend=name, num_threads=threads) for name in BACKENDS}
    if not model.config.spiking:
        int8_bundle = workdir / f"{preset}-stream-int8"
        edgesdk.export(model, int8_bundle, formats=("tflite",), mode="stream", quantize="int8", random_weights=True)
        runtimes["litert-int8"] = edgesdk.load(int8_bundle, backend="litert", num_threads=threads)
    # One matrix per dense layer as the step reads it: conv kernels [out, in, k] as [in * k, out].
    # The LMU's A is a buffer, not a parameter, but the step reads it too (its H is not read).
    matrices = [p for p in model.parameters() if p.dim() >= 2] + [block.attn.lmu.A.float() for block in model.blocks]
    weights = [m.detach().reshape(m.shape[0], -1).T.contiguous().numpy() for m in matrices]
    vectors = [np.ones((1, w.shape[0]), np.float32) for w in weights]

    def floor() -> None:
        for vector, weight in zip(vectors, weights):
            vector @ weight

    rng = np.random.default_rng(0)
    rows = []
    for frames in FRAMES:
        features = rng.standard_normal((1, frames, model.config.mel_bins)).astype(np.float32)
        tensor = torch.from_numpy(features)
        streams = {name: runtime.stream(batch=1) for name, runtime in runtimes.items()}
        state = model.init_state(1)
        times: dict[str, list[float]] = {name: [] for name in (*runtimes, "eager", "floor")}
        with torch.no_grad():
            for t in range(frames):
                feed = {"features": features[:, t: t + 1]}
                for name, stream in streams.items():
                    times[name].append(seconds(lambda: stream.push(feed)))
                start = time.perf_counter_ns()
                _, _, state = model.forward_step(tensor[:, t], state)
                times["eager"].append((time.perf_counter_ns() - start) * 1e-9)
                times["floor"].append(seconds(floor))
            points = np.unique(np.linspace(1, frames, 8).round().astype(int))
            model.forward_prefix(tensor[:, :points[0]])  # warm-up
            costs = [min(seconds(lambda: model.forward_prefix(tensor[:, :t])) for _ in range(2)) for t in points]
        widths = np.diff(points)
        recompute_mean = float(np.sum(widths * (np.add(costs[1:], costs[:-1]) / 2)) / widths.sum())
        # Skip the first frames (allocation, warm caches) in the medians.
        skip = min(4, frames // 4)
        row = {"preset": preset, "frames": frames, "recompute_mean": recompute_mean, "recompute_last": costs[-1]}
        row.update({name: float(np.median(values[skip:])) for name, values in times.items()})
        rows.append(row)
        logging.info("%s T=%d: %s", preset, frames, {k: v for k, v in row.items() if k not in ("preset",)})
    return rows


def table(rows: list[dict], threads: int) -> str:
    us = lambda s: f"{s * 1e6:,.0f}"  # noqa: E731
    lines = [
        "# LMUFormer: per-frame latency of the streaming step",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"{threads} thread(s), Python {platform.python_version()}; seeded weights (dense kernels: latency does not "
        "depend on the weight values); one run of `python benchmarks/bench_lmuformer.py`; "
        f"1-minute load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a shared machine inflates "
        "absolute numbers; the ratios come from interleaved calls).",
        "",
        "Per-frame latency in microseconds (median over the T frames of one stream; recompute: mean over the "
        "clip of running the parallel PyTorch model on the whole prefix at each frame).",
        "",
        "| preset | T | onnxruntime step | LiteRT step | LiteRT int8 step | fp32 floor (numpy GEMVs) "
        "| PyTorch eager step | PyTorch recompute (mean / at frame T) "
        "| eager / ORT | eager / LiteRT | eager / LiteRT int8 | recompute / best fp32 step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = min(r["onnxruntime"], r["litert"])
        int8 = r.get("litert-int8")
        int8_ratio = f"{r['eager'] / int8:.1f}x" if int8 else "-"
        lines.append(
            f"| {r['preset']} | {r['frames']} | {us(r['onnxruntime'])} | {us(r['litert'])} "
            f"| {us(int8) if int8 else 'float only'} | {us(r['floor'])} | {us(r['eager'])} "
            f"| {us(r['recompute_mean'])} / {us(r['recompute_last'])} | {r['eager'] / r['onnxruntime']:.1f}x "
            f"| {r['eager'] / r['litert']:.1f}x | {int8_ratio} "
            f"| {r['recompute_mean'] / best:.0f}x |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", action="append", help="lmuformer preset (repeatable; default scv2, scv2-spiking)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "lmuformer.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("edgesdk", "onnxscript", "torch", "absl"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    presets = args.preset or ["scv2", "scv2-spiking"]
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for preset in presets:
            rows += bench_preset(preset, args.threads, Path(workdir))
    text = table(rows, args.threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
