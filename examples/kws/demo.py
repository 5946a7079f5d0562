"""The keyword-spotting demo behind ``edgesdk demo`` / ``make demo``.

1. Load the shipped checkpoint (``kws_lmuformer.pt``) into edgesdk's LMUFormer.
2. Export it in streaming mode (one 10 ms fbank frame per step, explicit state) to ONNX and
   TFLite, replacing the output bundle; validation runs on seeded features and on the features
   of the bundled clips, step by step against the PyTorch model.
3. For each backend (onnxruntime, LiteRT) and each bundled clip: stream the WAV in 10 ms hops, as
   a microphone delivers it, through the torch-free runtime (``spotter.py``: the runtime's
   streaming fbank and Stream), with the keyword early-exit rule; record the keyword, the frame at which it was decided, the latency
   of every step, and the energy per second of audio (from ``edgesdk.profiler``: measured where a
   power sensor works, else ``estimated:ops``; always labelled).

``run_demo`` returns plain data; ``render`` prints it. The CLI verb (``edgesdk/cli/demo.py``) is
a thin wrapper around the two.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgesdk.errors import UsageError
from edgesdk.runtime.sections import OpsCount, StreamingFacts

from .common import CHECKPOINT, CLIPS_DIR, REPO_ROOT
from .spotter import EARLY_EXIT_FRAMES, EARLY_EXIT_PROBABILITY, spot_wav

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = REPO_ROOT / "out" / "kws-demo"
BACKENDS = ("onnxruntime", "litert")


def bundled_clips(clips_dir: Path = CLIPS_DIR) -> list[dict[str, Any]]:
    """The held-out clips shipped with the demo: ``clips.json`` lists file, label and how each was made."""
    index = clips_dir / "clips.json"
    if not index.is_file():
        from edgesdk.errors import UsageError

        raise UsageError(f"{index} is missing; the demo needs the clips shipped in examples/kws/clips")
    clips = json.loads(index.read_text())
    for clip in clips:
        clip["path"] = str(clips_dir / clip["file"])
    return clips


def clip_features(clips: list[dict[str, Any]]) -> list[np.ndarray]:
    """Model input [128, 128] of each clip, through the runtime's own front-end."""
    from edgesdk.runtime.audio import KaldiFbankFrontend, read_wav

    frontend = KaldiFbankFrontend()
    return [frontend.model_input(read_wav(clip["path"])) for clip in clips]


def export_bundle(output: Path, checkpoint: Path = CHECKPOINT, clips: list[dict[str, Any]] | None = None,
                  progress: Callable[[str], None] | None = None) -> Any:
    """Export the shipped model (stream mode, ONNX + TFLite) to ``output``, replacing it."""
    import edgesdk

    from .model import load_kws_model

    model = load_kws_model(checkpoint)
    options: dict[str, Any] = {}
    if clips:
        # Two real clips (a keyword and silence) besides the seeded features: every validation
        # sequence is 128 steps per format, so all twelve would triple the export time.
        options["sample_features"] = clip_features([clips[0], clips[-1]])
    return edgesdk.export(model, output, formats=("onnx", "tflite"), mode="stream", force=True,
                          progress=progress, command_line="edgesdk demo", **options)


def energy_per_audio_second(model: Any, bundle: Path) -> dict[str, Any]:
    """Energy of one streaming step and per second of audio, with its provenance label.

    Uses ``edgesdk.profiler`` (a power sensor where one is usable, else the bundle's op counts
    times the device profile's energy per operation). Where the profiler is not installed, the
    same op-count estimate is made here and labelled ``estimated:ops`` as well.
    """
    manifest = model.manifest
    source = str(getattr(model, "path", bundle))
    steps_per_second = StreamingFacts.of(manifest, source).steps_per_second
    if steps_per_second is None:
        raise UsageError(f"{source}: streaming.frame_rate_hz is missing, so energy per second of audio is unknown")
    try:
        from edgesdk.profiler.session import profile_model
    except ImportError:
        profile_model = None
    if profile_model is not None:
        outcome = profile_model(model, bundle, load_time_s=0.0, runs=50, warmup=5, stream=True, energy="auto")
        energy = outcome.result["energy"]
        per_step = energy.get("energy_per_inference_j")
        return {
            "provenance": energy.get("provenance", "unavailable"),
            "energy_per_step_j": per_step,
            "energy_per_audio_second_j": None if per_step is None else per_step * steps_per_second,
            "source": "edgesdk.profiler",
            "device": outcome.result["device"]["profile"],
            "scope": energy.get("scope"),
            "warnings": energy.get("warnings", []),
        }
    from edgesdk.devices.detect import detect_device

    device = detect_device("/")
    constants = device.profile.energy_per_op
    if "ops" not in manifest:
        raise UsageError(f"{source} has no 'ops' section to estimate energy from")
    counts = OpsCount.from_manifest(manifest["ops"], source).counts
    per_step = (counts["macs"] * constants.mac_pj + counts["accumulates"] * constants.accumulate_pj) * 1e-12
    return {
        "provenance": "estimated:ops",
        "energy_per_step_j": per_step,
        "energy_per_audio_second_j": per_step * steps_per_second,
        "source": "manifest ops x device profile energy per op (edgesdk.profiler not installed)",
        "scope": "arithmetic only: memory traffic, static and idle power excluded (a lower bound)",
        "device": device.profile.name,
        "warnings": [],
    }


def stream_clips(model: Any, clips: list[dict[str, Any]], early_exit: float, early_exit_frames: int) -> list[dict[str, Any]]:
    """Stream every clip through ``model`` in 10 ms hops; one row of facts per clip.

    A clip is shorter than one decision window, so its first decision is the clip's answer.
    """
    rows = []
    for clip in clips:
        detections, spotter = spot_wav(model, clip["path"], early_exit, early_exit_frames, hop_ms=10.0)
        first = detections[0]
        latency_us = 1e6 * np.asarray(spotter.latency_s)
        rows.append({
            "clip": clip["file"],
            "expected": clip["label"],
            "detected": first.label,
            "correct": first.label == clip["label"],
            "probability": first.probability,
            "early_exit": first.early_exit,
            "decided_at_frame": first.window_frame,
            # audio time, not frames pushed: padding after the clip's end adds no time
            "decided_at_ms": 1000.0 * first.time_s,
            "audio_frames": spotter.frames_total,
            "audio_ms": 10.0 * (spotter.frames_total - 1) + 25.0,
            "steps": first.window_frame,
            "latency_us_per_frame_median": float(np.median(latency_us)),
            "latency_us_per_frame_p90": float(np.percentile(latency_us, 90)),
        })
    return rows


def validation_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Per format: passed, how many sequences and steps, and each output's facts in its worst
    sequence (the largest max abs error; passed only if every sequence passed)."""
    formats = {}
    for fmt, facts in report["formats"].items():
        worst: dict[str, dict[str, Any]] = {}
        for case in facts["cases"]:
            for name, output in case["outputs"].items():
                held = worst.get(name)
                passed = bool(output["passed"] and (held is None or held["passed"]))
                if held is None or output.get("max_abs", 0.0) > held.get("max_abs", 0.0):
                    held = {k: v for k, v in output.items() if k != "per_step_max_abs"}
                worst[name] = {**held, "passed": passed}
        formats[fmt] = {"passed": facts["passed"], "backend": facts["backend"],
                        "sequences": [case["name"] for case in facts["cases"]],
                        "steps": sum(int(case.get("steps", 1)) for case in facts["cases"]), "outputs": worst}
    return {"passed": report["passed"], "formats": formats}


def validation_lines(summary: dict[str, Any]) -> list[str]:
    """The validation part of the report: edgesdk's tick lines, one per format and output."""
    from edgesdk.runtime.compare import OutputResult, tick_line

    lines = []
    for fmt, facts in summary["formats"].items():
        where = [(fmt, 6), (f"{len(facts['sequences'])} sequences, {facts['steps']} steps", 22)]
        lines += [tick_line(OutputResult.from_dict(name, output), where) for name, output in facts["outputs"].items()]
    return lines


def run_demo(output: Path = DEFAULT_OUTPUT, checkpoint: Path = CHECKPOINT, clips_dir: Path = CLIPS_DIR,
             early_exit: float = EARLY_EXIT_PROBABILITY, early_exit_frames: int = EARLY_EXIT_FRAMES,
             backends: tuple[str, ...] = BACKENDS, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Export, validate, stream every clip on every backend; returns what happened as plain data."""
    import edgesdk

    say = progress or (lambda message: log.info(message))
    clips = bundled_clips(clips_dir)
    start = time.perf_counter()
    exported = export_bundle(Path(output), checkpoint, clips, progress=say)
    export_s = time.perf_counter() - start
    report = exported.validation
    result: dict[str, Any] = {
        "bundle": str(exported.path),
        "export_s": export_s,
        "model": exported.manifest["model"],
        "labels": exported.manifest.get("extra", {}).get("labels", []),
        "validation": validation_summary(report),
        "early_exit": {"probability": early_exit, "frames": early_exit_frames},
        "backends": {},
    }
    for backend in backends:
        say(f"streaming {len(clips)} clips through {backend} in 10 ms hops")
        model = edgesdk.load(exported.path, backend=backend, num_threads=1)
        rows = stream_clips(model, clips, early_exit, early_exit_frames)
        energy = energy_per_audio_second(model, exported.path)
        for row in rows:
            if energy["energy_per_step_j"] is not None:
                row["energy_to_decision_j"] = energy["energy_per_step_j"] * row["steps"]
        result["backends"][backend] = {
            "providers": model.providers,
            "energy": energy,
            "clips": rows,
            "correct": sum(row["correct"] for row in rows),
        }
    result["all_correct"] = all(
        facts["correct"] == len(facts["clips"]) for facts in result["backends"].values())
    return result


def _joules(value: float | None) -> str:
    if value is None:
        return "n/a"
    for unit, scale in (("J", 1.0), ("mJ", 1e-3), ("µJ", 1e-6), ("nJ", 1e-9)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e12:.3g} pJ"


def _short(label: str) -> str:
    return label.strip("_")


def render(result: dict[str, Any], console: Any) -> None:
    """Print the demo's result on ``console`` (a rich Console): validation, then one table per backend."""
    from rich.table import Table

    model = result["model"]
    console.print(f"[bold]Keyword spotter[/bold]: LMUFormer ({model.get('preset')}, {model.get('parameters'):,} parameters, "
                  f"{len(result['labels'])} classes), streaming bundle {result['bundle']} "
                  f"(exported and validated in {result['export_s']:.0f} s)")
    console.print("Validation against PyTorch (each output in its worst sequence):")
    for line in validation_lines(result["validation"]):
        console.print(f"  {line}", markup=False)
    rule = result["early_exit"]
    console.print(f"Each clip is streamed in 10 ms hops. Early exit: a keyword at probability ≥ {rule['probability']} "
                  f"for {rule['frames']} frames decides; else the last frame of the 128-frame window does "
                  f"(silence and unknown never exit early). The stream answers 5 frames (50 ms) behind its input.")
    for backend, facts in result["backends"].items():
        energy = facts["energy"]
        title = (f"{backend} on {', '.join(facts['providers'])}: energy {_joules(energy['energy_per_audio_second_j'])} "
                 f"per second of audio [{energy['provenance']}]")
        table = Table(title=title, title_justify="left")
        table.add_column("clip")
        table.add_column("detected")
        table.add_column("p", justify="right")
        table.add_column("decided at / audio", justify="right")
        table.add_column("early", justify="center")
        table.add_column("µs/frame", justify="right")
        table.add_column("energy", justify="right")
        for row in facts["clips"]:
            mark = "[green]✓[/green]" if row["correct"] else f"[red]✗ (expected {_short(row['expected'])})[/red]"
            table.add_row(
                row["clip"].removesuffix(".wav"), f"{_short(row['detected'])} {mark}", f"{row['probability']:.2f}",
                f"{row['decided_at_ms'] / 1000:.2f} s / {row['audio_ms'] / 1000:.2f}",
                "yes" if row["early_exit"] else "no",
                f"{row['latency_us_per_frame_median']:.0f}",
                _joules(row.get("energy_to_decision_j")),
            )
        console.print(table)
        console.print(f"  µs/frame: median wall time of one step; energy: to the decision, {energy['provenance']}"
                      + (f" ({energy['device']})" if energy.get("device") else ""))
        for warning in energy.get("warnings", []):
            console.print(f"  note: {warning}")
        if energy.get("scope") and energy["provenance"] == "estimated:ops":
            console.print(f"  the estimate counts {energy['scope']}")
        console.print(f"  {facts['correct']} of {len(facts['clips'])} clips detected correctly on {backend}")
    verdict = ("every clip detected correctly on every backend" if result["all_correct"]
               else "[red]some clips were misdetected[/red]")
    console.print(f"[bold]{verdict}[/bold]")


def main() -> None:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(description="Export, validate and stream the keyword spotter on both backends.")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--early-exit", type=float, default=EARLY_EXIT_PROBABILITY)
    parser.add_argument("--early-exit-frames", type=int, default=EARLY_EXIT_FRAMES)
    args = parser.parse_args()
    console = Console()
    result = run_demo(args.output, early_exit=args.early_exit, early_exit_frames=args.early_exit_frames,
                      progress=lambda message: console.print(f"→ {message}"))
    render(result, console)
    raise SystemExit(0 if result["all_correct"] else 1)


if __name__ == "__main__":
    main()
