"""`edgesdk map` throughput: in-process against a local Ray (Ray Data) with 1 and 2 workers.

One run, one machine: LightHuBERT ``small`` (the Small supernet's named subnet, 26.9 M
parameters, seeded random weights: throughput does not depend on the weights' values; ONNX,
last layer's hidden states) over a corpus of real speech made from the bundled recordings:
tests/fixtures/lighthubert_speech_10s.flac (10 s of espeak-ng speech) followed by the twelve
1-second keyword clips of examples/kws/clips, concatenated into one 22 s track and tiled; each
file is a ``--file-seconds`` slice of the tiled track starting at a different offset, so files
differ. Every configuration runs the same files with 1 intra-op thread per runtime session:

* in-process: one session, inputs in order (what ``edgesdk map`` does without ``--ray``);
* Ray 1 worker / 2 workers: ``--ray --workers N --threads 1``, a local Ray instance of N CPUs
  started before the clock starts (its start-up time is printed apart).

Ray's overhead per item is (Ray 1 worker - in-process) / files; scaling is the 2-worker
throughput over the 1-worker one. The machine's load average is printed beside each run (the
development machine is shared; read the ratios).

    python benchmarks/bench_map.py [--minutes 10] [--file-seconds 10]

Writes benchmarks/results/map.md (``--output``) and prints it.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE_RATE_HZ = 16000
SPEECH = ROOT / "tests" / "fixtures" / "lighthubert_speech_10s.flac"
CLIPS = ROOT / "examples" / "kws" / "clips"


def speech_track() -> np.ndarray:
    """The 10 s recording, then the twelve keyword clips: one float32 track at 16 kHz."""
    import soundfile

    parts = []
    for path in [SPEECH, *sorted(CLIPS.glob("*.wav"))]:
        audio, rate = soundfile.read(path, dtype="float32")
        if rate != SAMPLE_RATE_HZ or audio.ndim != 1:
            raise SystemExit(f"{path}: expected 16 kHz mono, got {rate} Hz, shape {audio.shape}")
        parts.append(audio)
    return np.concatenate(parts)


def write_corpus(folder: Path, minutes: float, file_seconds: float) -> tuple[int, float]:
    """16-bit WAV slices of the tiled track; (files, seconds of audio in all)."""
    import soundfile

    track = speech_track()
    per_file = int(file_seconds * SAMPLE_RATE_HZ)
    count = max(1, int(round(minutes * 60 / file_seconds)))
    tiled = np.tile(track, int(np.ceil((count * per_file + len(track)) / len(track))))
    stride = len(track) // max(count, 1) + per_file  # each file starts elsewhere in the track
    folder.mkdir(parents=True)
    for index in range(count):
        start = (index * stride) % len(track)
        soundfile.write(folder / f"speech{index:03d}.wav", tiled[start:start + per_file], SAMPLE_RATE_HZ, subtype="PCM_16")
    return count, count * per_file / SAMPLE_RATE_HZ


def export_small(folder: Path) -> Path:
    import edgesdk

    model = edgesdk.create_model("lighthubert", preset="small-supernet", seed=0)
    return Path(edgesdk.export(model, folder / "small", formats=("onnx",), subnet="small", layers="last",
                                     random_weights=True).path)


def load_average() -> str:
    return "{:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of audio in the corpus")
    parser.add_argument("--file-seconds", type=float, default=10.0, help="length of each file")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "map.md")
    args = parser.parse_args()

    from edgesdk.executor import RayExecutor
    from edgesdk.sweep.corpus import map_corpus

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    os.environ.pop("RAY_ADDRESS", None)
    work = Path(tempfile.mkdtemp(prefix="bench-map-"))
    try:
        files, audio_seconds = write_corpus(work / "corpus", args.minutes, args.file_seconds)
        started = time.perf_counter()
        bundle = export_small(work)
        log(f"{files} files, {audio_seconds:.0f} s of audio; exported small in {time.perf_counter() - started:.0f} s")

        rows = []
        timings: dict[str, float] = {}
        for label, workers in (("in-process", 0), ("Ray, 1 worker", 1), ("Ray, 2 workers", 2)):
            before = load_average()
            executor, startup = None, None
            if workers:
                began = time.perf_counter()
                executor = RayExecutor(None, num_cpus=workers)
                startup = time.perf_counter() - began
            out = work / f"out-{workers}"
            try:
                began = time.perf_counter()
                summary = map_corpus(bundle, work / "corpus", out, threads=1, backend="onnxruntime",
                                     ray=executor.ray if executor else None, workers=max(workers, 1))
                elapsed = time.perf_counter() - began
            finally:
                if executor is not None:
                    executor.close()
            if summary.done != files or summary.failed:
                raise SystemExit(f"{label}: {summary.done} of {files} written, failures {summary.failed[:2]}")
            timings[label] = elapsed
            rows.append([label, f"{elapsed:.1f}", f"{audio_seconds / elapsed:.2f}", f"{files / elapsed:.3f}",
                         "-" if startup is None else f"{startup:.1f}", before, load_average()])
            log(f"{label}: {elapsed:.1f} s ({audio_seconds / elapsed:.2f} s of audio per s)")

        # Same outputs whatever ran them: a check that the three runs did the same work.
        reference = sorted((work / "out-0").glob("*.npy"))
        for workers in (1, 2):
            for path in reference:
                np.testing.assert_allclose(np.load(work / f"out-{workers}" / path.name), np.load(path), rtol=0, atol=1e-5)

        overhead = (timings["Ray, 1 worker"] - timings["in-process"]) / files
        scaling = timings["Ray, 1 worker"] / timings["Ray, 2 workers"]
        header = ["run", "wall s", "audio s / s", "files / s", "Ray start-up s (not in wall)",
                  "load avg before (1/5/15 min)", "load avg after"]
        lines = [
            "# edgesdk map: in-process vs Ray Data",
            "",
            f"LightHuBERT small-supernet / small (26.9 M parameters, seeded random weights), ONNX, last layer's "
            f"hidden states, onnxruntime with 1 intra-op thread per session, {files} files x {args.file_seconds:.0f} s "
            f"= {audio_seconds / 60:.1f} min of real speech (tests/fixtures/lighthubert_speech_10s.flac followed by "
            "the 12 clips of examples/kws/clips, concatenated and tiled, each file a slice at another offset). "
            f"Machine: {os.cpu_count()} cores shared with other work (load averages beside each run).",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows),
            "",
            f"- Ray overhead per item (1 worker vs in-process): {overhead * 1000:+.0f} ms per "
            f"{args.file_seconds:.0f} s file ({overhead / (timings['in-process'] / files) * 100:+.0f} % of an item's "
            "in-process time).",
            f"- Scaling from 1 to 2 Ray workers: {scaling:.2f}x throughput (2 would be perfect; this machine has "
            f"{os.cpu_count()} cores, shared).",
            "- Outputs of the three runs agree (max abs difference below 1e-5 per file).",
        ]
        text = "\n".join(lines) + "\n"
        args.output.parent.mkdir(parents=True, exist_ok=True)
        notes = args.output.with_suffix(".notes.md")  # hand-written reading of the run, kept across runs
        text += "\n" + notes.read_text() if notes.exists() else ""
        args.output.write_text(text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
