"""edgesdk run: run a bundle on inputs from an .npz, or stream a WAV through it."""
from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from edgesdk.cli.common import emit_json, human, print_bundle_notes, split_commas, summarize_array
from edgesdk.errors import UsageError, ValidationError


def _read_inputs(path: Path) -> dict[str, np.ndarray]:
    from edgesdk.runtime.manifest import read_npz

    feeds = read_npz(path)
    if not feeds:
        raise UsageError(f"{path} holds no arrays; it needs one array per model input, named as the model names them")
    return feeds


def _npz_path(output: Path) -> Path:
    """numpy.savez adds .npz to a name without it: say the name it will really write."""
    return output if output.suffix == ".npz" else output.with_name(output.name + ".npz")


@click.command("run")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option("--inputs", "inputs_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An .npz of named inputs (with --stream: stacked by step on axis 0).")
@click.option("--wav", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A 16-bit PCM WAV to stream through the bundle's audio front-end (streaming bundles).")
@click.option("--stream", is_flag=True, help="Push the inputs step by step with state carried.")
@click.option("--backend", type=click.Choice(["auto", "onnxruntime", "litert"]), default="auto", show_default=True)
@click.option("--provider", "providers", multiple=True, callback=split_commas, metavar="NAME[,NAME...]",
              help="onnxruntime execution providers, in order of preference (repeat, or a comma list); "
                   "with --backend auto they choose onnxruntime.")
@click.option("--strict-providers", is_flag=True, help="Fail (exit 5) instead of falling back to another provider.")
@click.option("--early-exit", type=float, help="--wav: stop once the top class holds probability >= P ...")
@click.option("--early-exit-frames", type=int, default=10, show_default=True, help="... for this many frames.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Save the outputs to this .npz (with --wav: per-frame top class, probability, latency).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--require-valid", is_flag=True, help="Refuse (exit 4) an artifact that failed validation at export.")
def command(bundle, inputs_path, wav, stream, backend, providers, strict_providers, early_exit, early_exit_frames,
            output, as_json, require_valid) -> None:
    """Run BUNDLE (a folder, .onnx or .tflite) without torch."""
    from edgesdk.runtime import load
    from edgesdk.runtime.model import stream_batch

    if (inputs_path is None) == (wav is None):
        raise UsageError("give exactly one of --inputs F.npz or --wav F.wav")
    for option, given in (("--inputs", inputs_path), ("--wav", wav)):
        if given is not None and not given.is_file():
            raise UsageError(f"{option} {given} is not a regular file (a device, pipe or folder)")
    if output is not None and not output.absolute().parent.is_dir():
        raise UsageError(f"-o {output}: the folder {output.absolute().parent} does not exist")
    print_bundle_notes(bundle)
    feeds = _read_inputs(inputs_path) if inputs_path is not None else None
    first_step = {name: array[0] for name, array in feeds.items() if array.ndim and len(array)} if feeds and stream else feeds
    model = load(bundle, backend=backend, providers=providers or None, strict_providers=strict_providers,
                 feeds=first_step or None)
    human.print(f"running {model.artifact_label} ({', '.join(model.providers)}); {model.backend_choice}", markup=False)
    if model.valid is False:
        message = (f"{model.artifact.get('file')} failed validation at export (see {bundle}/validation.json); "
                   "its outputs may be wrong")
        if require_valid:
            raise ValidationError(message)
        human.print(f"warning: {message}", markup=False)
    if wav is not None:
        _run_wav(model, wav, early_exit, early_exit_frames, as_json, output)
        return
    if stream:
        if not model.is_streaming:
            raise UsageError(f"{bundle} is not a streaming bundle; drop --stream")
        lengths = {name: len(array) for name, array in feeds.items()}
        if len(set(lengths.values())) != 1:
            raise UsageError(f"with --stream every input is stacked by step; step counts differ: {lengths}")
        steps = next(iter(lengths.values()))
        if steps == 0:
            raise UsageError(f"{inputs_path}: with --stream the inputs hold zero steps; stack at least one on axis 0")
        session = model.stream(batch=stream_batch(model, feeds))
        results = [session.push({name: array[i] for name, array in feeds.items()}) for i in range(steps)]
        outputs = {name: np.stack([r[name] for r in results]) for name in results[0]}
    else:
        outputs = model.run(feeds)
    if output is not None:
        output = _npz_path(output)
        np.savez(output, **outputs)
        human.print(f"wrote {output}", markup=False)
    summary = {"backend": model.backend, "providers": model.providers,
               "outputs": {name: summarize_array(array) for name, array in outputs.items()}}
    if as_json:
        emit_json(summary)
        return
    for name, facts in summary["outputs"].items():
        text = f"{name}: shape {facts['shape']} {facts['dtype']}"
        if "min" in facts:
            text += f"  min {facts['min']:.4g}  max {facts['max']:.4g}  mean {facts['mean']:.4g}"
        click.echo(text)  # a result: stdout


def _run_wav(model, wav: Path, early_exit, early_exit_frames: int, as_json: bool, output: Path | None) -> None:
    from edgesdk.runtime.audio import stream_wav

    result = stream_wav(model, wav, early_exit=early_exit, early_exit_frames=early_exit_frames)
    if output is not None:
        output = _npz_path(output)
        np.savez(output, frame_top=np.asarray(result.frame_top, dtype=np.int64),
                 frame_probability=np.asarray(result.frame_probability, dtype=np.float32),
                 latency_ms=np.asarray(result.latency_ms, dtype=np.float64),
                 decided_class=np.int64(result.decided_class))
        human.print(f"wrote {output}", markup=False)
    if as_json:
        emit_json(result.as_dict())
        return
    labels = result.labels
    name = (lambda index: labels[index] if index < len(labels) else str(index))
    # The top class over time, one line per change, so a long clip stays readable.
    previous = None
    for frame, (top, probability) in enumerate(zip(result.frame_top, result.frame_probability)):
        if top != previous:
            click.echo(f"  frame {frame:4d} ({frame * 10:5d} ms): {name(top):12s} p={probability:.2f}")
            previous = top
    latency = np.asarray(result.latency_ms)
    how = "early exit" if result.early_exit else "end of clip"
    click.echo(f"{wav.name}: {result.decided_label} (p={result.decided_probability:.2f}) decided after "
               f"{result.frames_used} frames ({how}); per-step latency median {np.median(latency):.3f} ms, "
               f"p90 {np.percentile(latency, 90):.3f} ms on {result.backend or model.backend}")
