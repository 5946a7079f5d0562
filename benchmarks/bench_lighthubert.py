"""LightHuBERT benchmark: subnet sizes, extraction error, real-time factor, chunking error.

One run prints (and writes to benchmarks/results/lighthubert.md):

1. parameters (upstream's count and the standalone model's) and MACs per second of audio for
   the named subnets of both supernets;
2. the extracted-vs-supernet error of every named subnet (full-size, seeded random weights);
3. the real-time factor (wall time / audio time) on 10 s of speech, onnxruntime and LiteRT,
   one thread each, for max (Base), the Base and Small defaults, and min (Small). The ONNX file
   takes the 10 s whole; the TFLite file is exported with a 10 s window. Median of 3 runs
   after one warm-up;
4. the chunked-vs-whole error per layer on the same 10 s for several context sizes (Small
   default subnet, ONNX), and what a downstream linear probe sees.

Weights are random (no checkpoint is available here): timings and counts do not depend on
them; the chunking errors do (trained attention may reach further or less far), so they are
labelled as random-weight figures. Usage: ``python benchmarks/bench_lighthubert.py [--quick]``
(--quick: the tiny test supernet only, to check the script).
"""
from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

import edgesdk
from edgesdk.models import lighthubert as lh
from edgesdk.runtime import chunking

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "lighthubert_speech_10s.flac"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def sizes(presets: list[str]) -> str:
    rows = []
    for preset in presets:
        for row in lh.list_subnets(preset):
            rows.append([
                preset, row["name"], str(row["embed_dim"]), str(row["layer_num"]), str(row["heads_num"]), str(row["ffn_embed"]),
                f"{row['params'] / 1e6:.2f} M", f"{row['standalone_params'] / 1e6:.2f} M", f"{row['macs_per_second'] / 1e9:.2f} G",
            ])
    return table(["supernet", "subnet", "e", "L", "heads", "FFN", "params (upstream count)", "standalone params", "MACs / s audio"], rows)


def extraction_errors(presets: list[str], audio: np.ndarray) -> str:
    x = torch.from_numpy(chunking.normalize_waveform(audio[:16000]))[None]
    rows = []
    for preset in presets:
        model = edgesdk.create_model("lighthubert", preset=preset, seed=0)
        for name in lh.named_subnets(model.config):
            model.set_subnet(name)
            standalone = lh.extract_subnet(model, name)
            with torch.no_grad():
                errors = [(a - b).abs().max().item() for a, b in zip(model(x), standalone(x))]
            rows.append([preset, name, f"{max(errors):.1e}", f"{errors[-1]:.1e}", str(len(errors))])
        del model
    return table(["supernet", "subnet", "max abs error, all hidden states", "last layer", "hidden states"], rows)


def real_time_factors(cases: list[tuple[str, str]], audio: np.ndarray, work: Path, log) -> str:
    seconds = audio.shape[0] / 16000
    x = chunking.normalize_waveform(audio)[None]
    rows = []

    def timed(run) -> float:
        run()  # warm-up
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return statistics.median(times) / seconds

    for preset, name in cases:
        started = time.perf_counter()
        model = edgesdk.create_model("lighthubert", preset=preset, seed=0)
        # ONNX (dynamic length) + TFLite at the default 228-frame chunk window, then a TFLite
        # file with a 10 s window for the whole-utterance comparison
        chunked_bundle, whole_bundle = work / f"{preset}-{name}", work / f"{preset}-{name}-10s"
        edgesdk.export(model, chunked_bundle, formats=("onnx", "tflite"), subnet=name, layers="last", force=True, random_weights=True)
        edgesdk.export(model, whole_bundle, formats=("tflite",), subnet=name, layers="last", window_seconds=seconds, force=True, random_weights=True)
        log(f"exported {preset}/{name} in {time.perf_counter() - started:.0f} s")
        row = lh.subnet_row(model.config, name, lh.resolve_subnet(model.config, name))
        del model
        ort = edgesdk.load(chunked_bundle, backend="onnxruntime", num_threads=1)
        lite_window = edgesdk.load(chunked_bundle, backend="litert", num_threads=1)
        lite_whole = edgesdk.load(whole_bundle, backend="litert", num_threads=1)
        factors = {
            "ort whole": timed(lambda: ort.run({"waveform": x})),
            "litert whole": timed(lambda: lite_whole.run({"waveform": x})),
            "ort chunked": timed(lambda: chunking.run_chunked(ort, audio)),
            "litert chunked": timed(lambda: chunking.run_chunked(lite_window, audio)),
        }
        rows.append([f"{preset} / {name}", f"{row['params'] / 1e6:.1f} M", f"{row['macs_per_second'] / 1e9:.2f} G"]
                    + [f"{factors[key]:.3f}" for key in ("ort whole", "litert whole", "ort chunked", "litert chunked")])
        log(f"{preset}/{name}: " + ", ".join(f"{key} {value:.3f}" for key, value in factors.items()))
    header = ["subnet", "params", "MACs / s audio", "RTF onnxruntime, whole 10 s", "RTF LiteRT, whole 10 s",
              "RTF onnxruntime, chunked", "RTF LiteRT, chunked"]
    return table(header, rows)


def chunking_table(preset: str, name: str, audio: np.ndarray, work: Path, contexts: list[int], log) -> str:
    output = work / f"chunk-{preset}-{name}"
    model = edgesdk.create_model("lighthubert", preset=preset, seed=0)
    edgesdk.export(model, output, formats=("onnx",), subnet=name, layers="all", force=True, random_weights=True)
    del model
    runtime = edgesdk.load(output, backend="onnxruntime")
    whole = chunking.run_whole(runtime, audio)
    names = list(whole)
    probe = np.random.default_rng(0).standard_normal((whole[names[-1]].shape[-1], 10))
    label = lambda out: (out[names[-1]][0] @ probe).argmax(-1)  # noqa: E731
    rows = []
    variants = [(c, "utterance") for c in contexts] + [(lh.DEFAULT_CONTEXT_FRAMES, "window")]
    for context, normalization in variants:
        chunked = chunking.run_chunked(runtime, audio, context_frames=context, normalization=normalization)
        errors = chunking.chunking_error(whole, chunked)
        agree = float(np.mean(label(chunked) == label(whole)))
        plan = chunking.plan_for(runtime, context_frames=context)
        tag = f"{context} ({context * 20 / 1000:.2f} s)" + (" window-norm" if normalization == "window" else "")
        rows.append(
            [tag, str(plan.window_frames)]
            + [f"{errors[n]['relative_rms']:.1e}" for n in names]
            + [f"{errors[names[-1]]['max_abs']:.2e}", f"{errors[names[-1]]['min_cosine']:.4f}",
               f"{errors[names[-1]]['pooled_relative']:.1e}", f"{100 * agree:.1f} %"]
        )
        log(f"context {context} {normalization}: last-layer relative RMS {errors[names[-1]]['relative_rms']:.2e}")
    header = ["context frames each side", "window frames"] + [f"h{i}" for i in range(len(names))]
    header += ["last: max abs", "last: min cosine", "last: pooled rel. error", "frame probe agreement"]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny test supernet only")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "lighthubert.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    audio, rate = soundfile.read(FIXTURE, dtype="float32")
    assert rate == 16000
    if args.quick:
        presets, rtf_cases, chunk_case = ["tiny-supernet"], [("tiny-supernet", "max"), ("tiny-supernet", "min")], ("tiny-supernet", "tiny")
    else:
        presets = ["base-supernet", "small-supernet"]
        rtf_cases = [("base-supernet", "max"), ("base-supernet", "base"), ("small-supernet", "small"), ("small-supernet", "min")]
        chunk_case = ("small-supernet", "small")
    sections = [
        "# LightHuBERT benchmark",
        "",
        f"`python benchmarks/bench_lighthubert.py{' --quick' if args.quick else ''}` — one run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.machine()} CPU ({platform.processor() or 'unknown'}), a 2-core machine shared with other jobs; "
        f"torch {torch.__version__}; seeded random weights (no checkpoint).",
        "",
        "## Subnet sizes",
        "",
        "Upstream counts the training-only mask embedding at full width (768); the standalone model has none. "
        "MACs for one second of audio (49 frames): convolutions, linear layers, the two attention matmuls.",
        "",
        sizes(presets),
    ]
    log("sizes done")
    sections += ["", "## Extracted subnet vs supernet (1 s of speech, fp32)", "", extraction_errors(presets, audio)]
    log("extraction errors done")
    with tempfile.TemporaryDirectory(prefix="bench_lighthubert_") as folder:
        work = Path(folder)
        sections += [
            "", "## Real-time factor, 10 s of speech (wall time / 10 s; lower is faster)", "",
            "Whole: the 10 s utterance in one call (ONNX with a dynamic length; TFLite exported at a 10 s window). "
            "Chunked: `run_chunked` with the default windows (64 context frames each side, 100 centre frames, "
            "228-frame = 4.565 s windows; the TFLite file exported at that window), which computes 2.28x the frames. "
            "Median of 3 runs after one warm-up, one intra-op thread.",
            "", real_time_factors(rtf_cases, audio, work, log),
        ]
        contexts = [0, 16, 32, 64, 128]
        sections += [
            "", f"## Chunked vs whole utterance, 10 s of speech ({chunk_case[0]} / {chunk_case[1]}, ONNX)", "",
            "Relative RMS error ||chunked - whole|| / ||whole|| per hidden state (h0 = projected CNN features); "
            "windows keep 100 centre frames plus the context on each side. Pooled rel. error: error of the time-averaged "
            "last-layer vector (what an utterance-level classifier sees). Frame probe agreement: frames where a fixed "
            "random 10-class linear probe on the last layer picks the same class. Random weights: a trained "
            "model's attention decides the real figure.",
            "", chunking_table(*chunk_case, audio, work, contexts, log),
        ]
    text = "\n".join(sections) + "\n"
    print(text)
    if not args.quick:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
