"""SLAB benchmark: RepBN folded vs unfolded, and simplified linear vs softmax attention.

One run, one machine, ratios measured side by side:

1. A SLAB preset (default swin-t, 224x224) exported twice, with every RepBN folded into its
   neighbouring layer (the default) and with the norms kept (``fold=False``); both bundles
   validated, then timed on onnxruntime and LiteRT. Calls of the two bundles alternate, so
   drifting machine load hits both alike. ONNX node counts come from the exported files.
2. One attention layer at the same size (tokens, channels, heads), simplified linear
   attention (SLA: ReLU kernel, Q (K^T V), depthwise conv on V) against softmax attention with
   the same projections, exported and timed the same way.

    python benchmarks/bench_slab.py [--preset swin-t --preset deit-t] [--runs 30] [--threads 1]

Writes the table to benchmarks/results/slab.md (``--output``) and prints it.
"""
from __future__ import annotations

import argparse
import collections
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
from edgesdk.profiler.latency import time_once  # noqa: E402

BACKENDS = ("onnxruntime", "litert")
# (label, tokens per side, channels, heads): Swin-T stages 1 and 2 (global SLA there), DeiT-T.
ATTENTION_SIZES = (("Swin-T stage 1", 56, 96, 3), ("Swin-T stage 2", 28, 192, 6), ("DeiT-T", 14, 192, 3))


def interleaved_medians(calls: dict[str, callable], runs: int, warmup: int) -> dict[str, float]:
    """Median seconds per call of each callable, timed in alternating rounds."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times = {name: [] for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            times[name].append(time_once(call))
    return {name: float(np.median(values)) for name, values in times.items()}


def onnx_ops(bundle: Path) -> collections.Counter:
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(str(bundle / "model.onnx")).graph.node)


def bench_fold(preset: str, work: Path, runs: int, warmup: int, threads: int) -> tuple[list[str], dict]:
    model = edgesdk.create_model("slab", preset=preset)
    bundles, facts = {}, {}
    for label, fold in (("folded", True), ("unfolded", False)):
        start = time.perf_counter()
        result = edgesdk.export(model, work / f"{preset}-{label}", formats=("onnx", "tflite"), fold=fold, random_weights=True)
        bundles[label] = result.path
        facts[label] = {"export_s": time.perf_counter() - start, "manifest": result.manifest,
                        "ops": onnx_ops(bundles[label])}
    from edgesdk.models.slab import sample_images

    image = sample_images(model.config, count=1)[0]
    medians = {}
    for backend in BACKENDS:
        runtimes = {label: edgesdk.load(path, backend=backend, num_threads=threads) for label, path in bundles.items()}
        calls = {label: (lambda m=runtime: m.run({"image": image})) for label, runtime in runtimes.items()}
        medians[backend] = interleaved_medians(calls, runs, warmup)
    slab_facts = facts["folded"]["manifest"]["extra"]["slab"]
    ops_folded, ops_unfolded = facts["folded"]["ops"], facts["unfolded"]["ops"]
    lines = [
        f"### RepBN folded vs unfolded: `{preset}` ({model.config.image_size}x{model.config.image_size}, batch 1, "
        f"{threads} thread{'s' if threads > 1 else ''})",
        "",
        f"{slab_facts['norms']} RepBN norms; fold error vs the unfolded PyTorch model (random + 2 sample images): "
        f"max abs {slab_facts['fold_error']['max_abs']:.2e}, max relative {slab_facts['fold_error']['max_relative']:.2e}. "
        f"MACs per image {facts['folded']['manifest']['ops']['macs'] / 1e9:.3f} G.",
        "",
        "| ONNX graph | nodes | BatchNormalization | Transpose | Mul | Add |",
        "|---|---|---|---|---|---|",
    ]
    for label, ops in (("unfolded", ops_unfolded), ("folded", ops_folded)):
        lines.append(f"| {label} | {sum(ops.values())} | {ops['BatchNormalization']} | {ops['Transpose']} | "
                     f"{ops['Mul']} | {ops['Add']} |")
    lines += ["", "| backend | unfolded ms | folded ms | unfolded / folded |", "|---|---|---|---|"]
    for backend, values in medians.items():
        lines.append(f"| {backend} | {values['unfolded'] * 1e3:.2f} | {values['folded'] * 1e3:.2f} | "
                     f"{values['unfolded'] / values['folded']:.3f} |")
    return lines, {"medians": medians, "ops": (ops_unfolded, ops_folded)}


def bench_attention(work: Path, runs: int, warmup: int, threads: int) -> list[str]:
    import torch

    from edgesdk.models.slab import PRESETS, SimplifiedLinearAttention, SoftmaxAttention

    config = PRESETS["swin-t"].config
    lines = [
        f"### One attention layer: SLA vs softmax at the same size (batch 1, {threads} thread"
        f"{'s' if threads > 1 else ''})",
        "",
        "| size | tokens | channels / heads | backend | softmax ms | SLA ms | softmax / SLA |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, side, dim, heads in ATTENTION_SIZES:
        torch.manual_seed(0)
        modules = {"SLA": SimplifiedLinearAttention(dim, heads, (side, side), config).eval(),
                   "softmax": SoftmaxAttention(dim, heads, config).eval()}
        bundles = {}
        for name, module in modules.items():
            path = work / f"attention-{side}-{dim}-{name}"
            edgesdk.export(module, path, formats=("onnx", "tflite"), example_inputs={"tokens": (1, side * side, dim)},
                           output_names=["attended"])
            bundles[name] = path
        tokens = np.random.default_rng(0).standard_normal((1, side * side, dim)).astype(np.float32)
        for backend in BACKENDS:
            runtimes = {name: edgesdk.load(path, backend=backend, num_threads=threads) for name, path in bundles.items()}
            calls = {name: (lambda m=runtime: m.run({"tokens": tokens})) for name, runtime in runtimes.items()}
            medians = interleaved_medians(calls, runs, warmup)
            lines.append(f"| {label} | {side * side} | {dim} / {heads} | {backend} | {medians['softmax'] * 1e3:.3f} | "
                         f"{medians['SLA'] * 1e3:.3f} | {medians['softmax'] / medians['SLA']:.2f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", dest="presets", action="append",
                        help="SLAB preset for the fold comparison (repeatable; default swin-t and deit-t)")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls per variant first")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of each backend")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "slab.md")
    arguments = parser.parse_args()
    presets = arguments.presets or ["swin-t", "deit-t"]
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench-slab-") as folder:
        work = Path(folder)
        fold_lines = []
        for preset in presets:
            fold_lines += bench_fold(preset, work, arguments.runs, arguments.warmup, arguments.threads)[0] + [""]
        attention_lines = bench_attention(work, arguments.runs, arguments.warmup, arguments.threads)
    header = [
        "## SLAB",
        "",
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"{platform.processor() or platform.platform()} ({os.cpu_count()} CPUs, load average {load_before:.1f} at the start "
        f"and {os.getloadavg()[0]:.1f} at the end: a shared machine, so absolute times are noisy and only the "
        f"side-by-side ratios are meant to be read), by `python benchmarks/bench_slab.py "
        + " ".join(f"--preset {preset}" for preset in presets)
        + f" --runs {arguments.runs} --threads {arguments.threads}`. Latency: median wall clock of {arguments.runs} "
        "calls per variant after warm-up, variants alternating call by call (measured:perf_counter). Seeded "
        "stand-in weights (no released checkpoint is available here); latency does not depend on the values.",
        "",
    ]
    text = "\n".join(header + fold_lines + attention_lines) + "\n"
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
