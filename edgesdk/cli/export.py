"""edgesdk export: a registered family or your own module -> validated bundle."""
from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import click

from edgesdk.cli.common import StepProgress, emit_json, human, parse_named_shapes
from edgesdk.errors import BackendUnavailable, UsageError, ValidationError


def _parse_dynamic(values: tuple[str, ...]) -> dict[str, dict[int, str]]:
    """('x:2=frames', ...) -> {'x': {2: 'frames'}}."""
    axes: dict[str, dict[int, str]] = {}
    for value in values:
        target, sep, symbol = value.partition("=")
        name, colon, axis = target.partition(":")
        if not (sep and colon and symbol and axis.isdigit()):
            raise click.BadParameter(f"{value!r} must look like NAME:AXIS=SYMBOL (x:2=frames)", param_hint="--dynamic")
        axes.setdefault(name, {})[int(axis)] = symbol
    return axes


def _parse_options(values: tuple[str, ...]) -> dict[str, Any]:
    """('key=value', ...) -> {'key': value}, values read as JSON where they parse."""
    options = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} must look like KEY=VALUE", param_hint="--option")
        try:
            options[key.replace("-", "_")] = json.loads(raw)
        except json.JSONDecodeError:
            options[key.replace("-", "_")] = raw
    return options


PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-weight-only", "int8-static")  # exporters/precision


def _parse_precisions(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...] | None:
    """--precision fp32,int8-dynamic (or repeated): each name checked as a click Choice (exit 2)."""
    choice = click.Choice(PRECISIONS)
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return tuple(choice.convert(name, param, ctx) for name in names) or None


def _load_factory(target: str) -> Any:
    """'package.module:factory' -> the nn.Module the factory returns."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"{target!r} must look like package.module:factory")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # so a module beside the user imports, as with python -m
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UsageError(f"cannot import {module_name!r}: {error}") from None
    factory = getattr(module, attribute, None)
    if factory is None:
        raise UsageError(f"{module_name!r} has no attribute {attribute!r}")
    model = factory() if callable(factory) else factory
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{target} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


@click.command("export")
@click.argument("target")
@click.option("--preset", help="Preset of a registered family (see `edgesdk models`).")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The authors' checkpoint file, as released.")
@click.option("--stream", is_flag=True, help="Export the streaming step form (state in, state out).")
@click.option("--format", "formats", default="onnx,tflite", show_default=True, help="Comma-separated: onnx, tflite.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Bundle folder to write.")
@click.option("--force", is_flag=True, help="Replace an existing bundle folder.")
@click.option("--atol", type=float, help="Absolute tolerance of validation (default: the recipe's).")
@click.option("--rtol", type=float, help="Relative tolerance of validation (default: the recipe's).")
@click.option("--quantize", type=click.Choice(["int8"]), help="TFLite weights to int8 (dynamic range); validated by SQNR.")
@click.option("--precision", "precisions", multiple=True, callback=_parse_precisions, metavar="[" + "|".join(PRECISIONS) + "],...",
              help="Precisions to write, comma-separated; one artifact per format and precision.")
@click.option("--calibration-data", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="int8-static: a folder of WAVs (audio models) or images (vision models); part of it validates.")
@click.option("--keep-float", multiple=True, metavar="PATTERN", help="Reduced precision: also keep ops matching this regex float.")
@click.option("--activation-bits", type=click.Choice(["8", "16"]), default="8", show_default=True,
              help="int8-static TFLite: 8- or 16-bit activations.")
@click.option("--min-sqnr", type=float, help="SQNR in dB an int8 artifact must reach (default 30).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset.")
@click.option("--sample-inputs", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="An .npz of extra validation inputs (stream: stacked by step).")
@click.option("--input", "inputs", multiple=True, metavar="NAME=SHAPE", help="Custom module: an input and its example shape, e.g. x=1x128x16.")
@click.option("--state", "states", multiple=True, metavar="NAME=SHAPE", help="Custom module: a state and its shape, e.g. h=1x32.")
@click.option("--dynamic", multiple=True, metavar="NAME:AXIS=SYMBOL", help="Custom module: a dynamic axis, e.g. x:2=frames (ONNX only).")
@click.option("--chunk-frames", type=int, help="Stream export: frames per step.")
@click.option("--no-fold", is_flag=True, help="SLAB: keep the RepBN norms (for comparison).")
@click.option("--subnet", help="LightHuBERT: subnet name or JSON config.")
@click.option("--layers", help="LightHuBERT: hidden states to output: last, all, or i,j.")
@click.option("--window-seconds", type=float, help="LightHuBERT: TFLite window length in seconds.")
@click.option("--image-size", type=int, help="Vision families: input image size in pixels.")
@click.option("--option", "extra_options", multiple=True, metavar="KEY=VALUE", help="Any other recipe option.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("-v", "--verbose", "show_converter", is_flag=True, help="Show converter output (always kept in DIR/export.log).")
@click.pass_context
def command(ctx: click.Context, target: str, preset, checkpoint, stream, formats, output, force, atol, rtol, quantize,
            precisions, calibration_data, keep_float, activation_bits, min_sqnr, opset,
            sample_inputs, inputs, states, dynamic, chunk_frames, no_fold, subnet, layers, window_seconds, image_size,
            extra_options, as_json, show_converter) -> None:
    """Export TARGET (a family name, or package.module:factory) to a validated bundle."""
    if importlib.util.find_spec("torch") is None:  # a runtime-only install (edgesdk[runtime])
        raise BackendUnavailable("edgesdk export needs PyTorch and the converters, not installed here: "
                                 "pip install 'edgesdk[export]'")
    import edgesdk

    verbose = show_converter or bool(ctx.obj and ctx.obj.get("verbose"))
    progress = StepProgress()
    recipe_options = _parse_options(extra_options)
    for key, value in (("chunk_frames", chunk_frames), ("subnet", subnet), ("layers", layers),
                       ("window_seconds", window_seconds), ("image_size", image_size)):
        if value is not None:
            recipe_options[key] = value
    if no_fold:
        recipe_options["fold"] = False
    reduced = bool(precisions and set(precisions) - {"fp32"})
    if min_sqnr is not None and not (quantize or reduced):
        raise UsageError("--min-sqnr applies to a reduced-precision export; add --quantize int8 or --precision")
    quantization: dict[str, Any] = {"quantize": quantize} if quantize else {}
    if precisions:
        quantization.update(precision=precisions, calibration_data=calibration_data, keep_float=keep_float,
                            activation_bits=int(activation_bits))
    elif calibration_data is not None or keep_float:
        raise UsageError("--calibration-data and --keep-float apply to a reduced precision; add --precision")
    if min_sqnr is not None:
        quantization["min_sqnr_db"] = min_sqnr
    mode = "stream" if stream or states else "full"
    custom = ":" in target
    if custom:
        if preset or checkpoint:
            raise UsageError("--preset and --checkpoint apply to registered families, not to package.module:factory")
        if not inputs:
            raise UsageError("a custom module needs at least one --input NAME=SHAPE")
        progress(f"building {target}")
        model = _load_factory(target)
        arguments = dict(example_inputs=parse_named_shapes(inputs, "--input"),
                         states=parse_named_shapes(states, "--state") or None,
                         dynamic_axes=_parse_dynamic(dynamic) or None, factory=target)
    else:
        if inputs or states or dynamic:
            raise UsageError("--input, --state and --dynamic describe a custom module; a registered family knows its own")
        progress(f"building {target}" + (f" ({preset})" if preset else "") + (f" from {checkpoint}" if checkpoint else ""))
        model = edgesdk.create_model(target, preset=preset, checkpoint=checkpoint)
        arguments = {}
    try:
        result = edgesdk.export(model, output, formats=formats, mode=mode, atol=atol, rtol=rtol, force=force,
                                opset=opset, sample_inputs=sample_inputs, verbose=verbose, progress=progress,
                                command_line=" ".join(["edgesdk"] + sys.argv[1:]), **quantization, **arguments,
                                **recipe_options)
    except ValidationError as error:
        progress.finish()
        for line in error.report.get("lines", []):
            human.print(line, style="red" if line.startswith("✗") else None, markup=False)
        raise
    progress.finish()
    for line in result.validation["lines"]:
        human.print(line, markup=False)
    files = ", ".join(a["file"] for a in result.manifest["artifacts"])
    human.print(f"✓ wrote {output} ({files}); validation passed", markup=False)
    if as_json:
        emit_json(result.manifest)
