"""Held-out accuracy of the shipped keyword spotter, in PyTorch and through the exported stream.

The test set (``test.npz`` from ``synthesize.py``) is spoken by espeak-ng voice variants that
never occur in training. Three figures:

1. **parallel**: the PyTorch model over each 1 s clip padded to 128 frames (the authors' eval);
2. **stream, full**: the exported ONNX step in the torch-free runtime, fed the WAV in 10 ms hops
   (``spotter.py``) to the end of the 128-frame window;
3. **stream, early exit**: the same with the library's early-exit rule
   (``edgesdk.runtime.decisions``, as the demo's spotter runs it); also how often and how early
   clips were decided, in frames of the window and in seconds of audio (a decision is timed by
   the audio it came from: padding after a clip's end adds no time).

With ``--precisions``, instead: one bundle holding each listed precision (int8-static calibrated
on the bundled clips, which are not in the test set), and figure 2 for every artifact in it, on
both backends, with its agreement with the fp32 artifact of the same backend.

Usage:
    python -m examples.kws.evaluate [--data out/kws-data] [--checkpoint examples/kws/kws_lmuformer.pt]
    python -m examples.kws.evaluate --precisions fp32,int8-dynamic --json out/kws-precision.json
    python -m examples.kws.evaluate --table-from out/kws-precision.json [...] --markdown benchmarks/results/kws-precision.md
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from .common import CHECKPOINT, CLIPS_DIR, DEFAULT_DATA_DIR, LABELS, REPO_ROOT, SAMPLE_RATE_HZ
from .pick_clips import write_wav
from .spotter import EARLY_EXIT_FRAMES, EARLY_EXIT_PROBABILITY, spot_wav

log = logging.getLogger("kws.evaluate")


def parallel_predictions(checkpoint: Path, features: np.ndarray) -> np.ndarray:
    import torch

    from .model import load_kws_model

    model = load_kws_model(checkpoint)
    predictions = []
    with torch.no_grad():
        for start in range(0, len(features), 256):
            predictions.append(model(torch.from_numpy(features[start: start + 256])).argmax(dim=1).numpy())
    return np.concatenate(predictions)


def stream_predictions(bundle: Path, waveforms: np.ndarray, early_exit_frames: int | None,
                       early_exit: float = EARLY_EXIT_PROBABILITY, backend: str = "onnxruntime",
                       precision: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First decision of every clip streamed through the bundle's step: class, window frame, early
    or not, audio time of the decision in seconds.

    ``early_exit_frames=None`` turns early exit off (every window runs to its last frame);
    ``backend`` and ``precision`` pick the artifact (default: the ONNX float one).
    """
    import edgesdk

    model = edgesdk.load(bundle, backend=backend, precision=precision, num_threads=1)
    label_index = {label: i for i, label in enumerate(model.manifest["extra"]["labels"])}
    decided, frames, early, times = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.wav"
        for clip in waveforms:
            write_wav(path, clip)
            detections, _ = spot_wav(model, path, early_exit=early_exit,
                                     early_exit_frames=early_exit_frames or 10 ** 9)
            decided.append(label_index[detections[0].label])
            frames.append(detections[0].window_frame)
            early.append(detections[0].early_exit)
            times.append(detections[0].time_s)
    return np.asarray(decided), np.asarray(frames), np.asarray(early), np.asarray(times)


def precision_rows(bundle: Path, waveforms: np.ndarray, labels: np.ndarray, precisions: str,
                   activation_bits: int = 8) -> list[dict]:
    """Export ``precisions`` into ``bundle`` and stream the test set through every artifact in it.

    Per artifact: backend, precision, whether it passed validation, whole-window stream accuracy,
    and agreement of its decisions with the fp32 artifact of the same backend (when exported).
    """
    import edgesdk
    from edgesdk.errors import ValidationError
    from edgesdk.runtime.manifest import read_manifest

    from .demo import bundled_clips, clip_features
    from .model import load_kws_model

    clips = bundled_clips()
    options = {"calibration_data": CLIPS_DIR} if "int8-static" in precisions else {}
    if activation_bits != 8:
        options["activation_bits"] = activation_bits
    try:
        edgesdk.export(load_kws_model(CHECKPOINT), bundle, formats=("onnx", "tflite"), mode="stream", force=True,
                       precision=precisions, sample_features=clip_features([clips[0], clips[-1]]), **options)
    except ValidationError as error:  # the bundle is kept; each artifact's verdict is in its manifest entry
        log.warning("%s", error)
    rows, decisions = [], {}
    for artifact in read_manifest(bundle)["artifacts"]:
        backend = {"onnx": "onnxruntime", "tflite": "litert"}[artifact["format"]]
        precision = artifact.get("precision", "float32")
        begin = time.perf_counter()
        decided, _, _, _ = stream_predictions(bundle, waveforms, None, backend=backend, precision=precision)
        decisions[(backend, precision)] = decided
        rows.append({"backend": backend, "precision": precision, "activation_bits": activation_bits
                     if precision == "int8-static" else None, "valid": artifact.get("valid"),
                     "accuracy": float((decided == labels).mean()), "clips": int(len(labels))})
        log.info("%s %s: %.2f %% of %d held-out clips (%.0f s)", backend, precision, 100 * rows[-1]["accuracy"],
                 len(labels), time.perf_counter() - begin)
    for row in rows:
        reference = decisions.get((row["backend"], "float32"))
        if reference is not None:
            row["agrees_with_fp32"] = float((decisions[(row["backend"], row["precision"])] == reference).mean())
    return rows


def precision_table(rows: list[dict], fp32_accuracy: dict[str, float] | None = None) -> str:
    """Markdown: one line per artifact, accuracy and its difference from fp32 on the same backend."""
    fp32 = dict(fp32_accuracy or {})
    fp32.update({r["backend"]: r["accuracy"] for r in rows if r["precision"] == "float32"})
    lines = ["| backend | precision | held-out accuracy | vs fp32 (pp) | decisions equal to fp32 | passed validation |",
             "|---|---|---:|---:|---:|---|"]
    for row in rows:
        name = row["precision"] + (f" (a{row['activation_bits']})" if row.get("activation_bits") not in (None, 8) else "")
        correct = round(row["accuracy"] * row["clips"])
        delta = "" if row["backend"] not in fp32 else f"{100 * (row['accuracy'] - fp32[row['backend']]):+.2f}"
        agrees = "" if "agrees_with_fp32" not in row else f"{100 * row['agrees_with_fp32']:.1f}%"
        lines.append(f"| {row['backend']} | {name} | {100 * row['accuracy']:.2f}% ({correct}/{row['clips']}) | {delta} "
                     f"| {agrees} | {row['valid']} |")
    return "\n".join(lines) + "\n"


def per_class(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {LABELS[c]: float((predictions[labels == c] == c).mean()) for c in range(len(LABELS))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--bundle", type=Path, default=REPO_ROOT / "out" / "kws-eval")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--early-exit", type=float, default=EARLY_EXIT_PROBABILITY)
    parser.add_argument("--early-exit-frames", type=int, default=EARLY_EXIT_FRAMES)
    parser.add_argument("--early-exit-only", action="store_true",
                        help="skip the parallel and whole-window figures (bundle already exported)")
    parser.add_argument("--precisions", help="instead: held-out accuracy of each precision, e.g. fp32,int8-dynamic")
    parser.add_argument("--activation-bits", type=int, default=8, help="int8-static activations (8 or 16)")
    parser.add_argument("--table-from", type=Path, nargs="+", metavar="JSON",
                        help="instead: one table from the --json files of earlier --precisions runs")
    parser.add_argument("--markdown", type=Path, help="with --table-from: also write the table as a results section")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.table_from:
        rows = [row for path in args.table_from for row in json.loads(path.read_text())["rows"]]
        table = precision_table(rows)
        print(table, end="")
        if args.markdown:
            args.markdown.write_text(
                "# KWS spotter: held-out accuracy of every precision\n\n"
                f"`python -m examples.kws.evaluate --precisions ...`, {len(args.table_from)} run(s); the "
                f"{rows[0]['clips']}-clip synthesized test set (unseen voices), each clip streamed in 10 ms hops "
                "through the bundle's step in the torch-free runtime to the end of its window (one thread). "
                "int8-static is calibrated on the 12 bundled clips (not in the test set). \"vs fp32\": "
                "percentage points against the fp32 artifact of the same backend; \"decisions equal\": "
                "clips given the same class as that artifact.\n\n" + table)
        return
    if args.precisions:
        data = np.load(args.data / "test.npz")
        rows = precision_rows(args.bundle, data["waveforms"], data["labels"], args.precisions, args.activation_bits)
        print(precision_table(rows), end="")
        if args.json:
            args.json.write_text(json.dumps({"test_clips": int(len(data["labels"])), "rows": rows}, indent=2) + "\n")
        return

    from .train import load_features

    features, labels = load_features(args.data, "test")
    waveforms = np.load(args.data / "test.npz")["waveforms"]
    figures: dict = {"test_clips": int(len(labels)), "checkpoint": str(args.checkpoint)}

    parallel = parallel_predictions(args.checkpoint, features)
    figures["parallel_accuracy"] = float((parallel == labels).mean())
    figures["parallel_per_class"] = per_class(parallel, labels)
    log.info("parallel (PyTorch, 128-frame window): %.2f %% of %d held-out clips",
             100 * figures["parallel_accuracy"], len(labels))

    if not args.early_exit_only:
        from .demo import export_bundle

        export_bundle(args.bundle, args.checkpoint)
        begin = time.perf_counter()
        full, _, _, full_times = stream_predictions(args.bundle, waveforms, early_exit_frames=None)
        figures["stream_accuracy"] = float((full == labels).mean())
        figures["stream_median_decision_s"] = float(np.median(full_times))
        figures["stream_agrees_with_parallel"] = float((full == parallel).mean())
        log.info("stream (ONNX step, 10 ms hops, whole window): %.2f %% (agrees with parallel on %.2f %%; %.0f s)",
                 100 * figures["stream_accuracy"], 100 * figures["stream_agrees_with_parallel"],
                 time.perf_counter() - begin)
    early, frames, exited, times = stream_predictions(args.bundle, waveforms, early_exit_frames=args.early_exit_frames,
                                                      early_exit=args.early_exit)
    figures["early_exit"] = {"probability": args.early_exit, "frames": args.early_exit_frames}
    figures["early_exit_accuracy"] = float((early == labels).mean())
    figures["early_exit_per_class"] = per_class(early, labels)
    keyword_clips = labels < len(LABELS) - 2   # the ten keywords; fillers never exit early
    figures["early_exit_keyword_clips_exited"] = float(exited[keyword_clips].mean())
    figures["early_exit_keyword_clips_mean_frames"] = float(frames[keyword_clips].mean())
    figures["early_exit_keyword_clips_median_frames"] = float(np.median(frames[keyword_clips]))
    figures["false_early_exits_on_fillers"] = int(exited[~keyword_clips].sum())
    figures["early_exit_median_decision_s"] = float(np.median(times))
    figures["early_exit_keyword_clips_median_decision_s"] = float(np.median(times[keyword_clips]))
    figures["early_exit_exited_median_decision_s"] = float(np.median(times[exited])) if exited.any() else None
    figures["clip_audio_s"] = len(waveforms[0]) / SAMPLE_RATE_HZ  # every clip is 1 s
    log.info("stream with early exit (a keyword at p >= %.2f for %d frames): %.2f %%; keyword clips exited early "
             "in %.0f %% of cases, deciding after %.1f frames on average (median %.0f, look-ahead included) instead "
             "of 128; filler clips that exited early on a keyword: %d",
             args.early_exit, args.early_exit_frames, 100 * figures["early_exit_accuracy"],
             100 * figures["early_exit_keyword_clips_exited"], figures["early_exit_keyword_clips_mean_frames"],
             figures["early_exit_keyword_clips_median_frames"], figures["false_early_exits_on_fillers"])
    log.info("median decision time (audio seconds, clips of %.2f s): early exit %.3f s (keyword clips %.3f s, "
             "clips that exited %s s)%s", figures["clip_audio_s"], figures["early_exit_median_decision_s"],
             figures["early_exit_keyword_clips_median_decision_s"],
             f"{figures['early_exit_exited_median_decision_s']:.3f}" if exited.any() else "n/a",
             f"; whole window {figures['stream_median_decision_s']:.3f} s" if "stream_median_decision_s" in figures else "")
    for name, value in figures["parallel_per_class"].items():
        log.info("  %-10s parallel %.2f  early exit %.2f", name, value, figures["early_exit_per_class"][name])
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
