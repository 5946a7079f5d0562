"""edgesdk export: a registered family or your own module -> validated bundle."""
from __future__ import annotations

import importlib
import importlib.util
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


def _parse_names(text: str | None) -> list[str] | None:
    """'logits,embedding' -> ['logits', 'embedding'] (None: the default names)."""
    if text is None:
        return None
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise click.BadParameter(f"{text!r} must be names separated by commas (logits,embedding)",
                                 param_hint="--output-names")
    return names


def _parse_options(values: tuple[str, ...]) -> dict[str, str]:
    """('key=value', ...) -> {'key': 'value'}; the family's ExportOptions reads the text."""
    options = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} must look like KEY=VALUE", param_hint="--option")
        options[key.replace("-", "_")] = raw
    return options


# Short flags for family options that the README and users already type. Each passes its text to
# the family's ExportOptions, which checks it like any --option NAME=VALUE; `edgesdk models
# FAMILY` lists every option a family declares.
FAMILY_FLAGS = (
    ("--chunk-frames", "chunk_frames", "lmuformer"),
    ("--subnet", "subnet", "lighthubert"),
    ("--layers", "layers", "lighthubert"),
    ("--window-seconds", "window_seconds", "lighthubert"),
    ("--image-size", "image_size", "ecoformer, slab"),
)


def _family_flags(command: Any) -> Any:
    for flag, name, families in reversed(FAMILY_FLAGS):
        command = click.option(flag, name, metavar="VALUE",
                               help=f"Family option {name} ({families}); same as --option {name}=VALUE.")(command)
    return click.option("--no-fold", "no_fold", is_flag=True,
                        help="Family option fold=false (slab): keep the RepBN norms.")(command)


PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-weight-only", "int8-static")  # exporters/precision


def _parse_precisions(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...] | None:
    """--precision fp32,int8-dynamic (or repeated): each name checked as a click Choice (exit 2)."""
    choice = click.Choice(PRECISIONS)
    names = [part.strip() for value in values for part in value.split(",") if part.strip()]
    return tuple(choice.convert(name, param, ctx) for name in names) or None


class ExportCommand(click.Command):
    """``edgesdk export FAMILY --help`` adds the options FAMILY declares to the help text."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if any(arg in ("--help", "-h") for arg in args):
            ctx.meta["edgesdk.export.help_for"] = [arg for arg in args if not arg.startswith("-")]
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_epilog(ctx, formatter)
        candidates = ctx.meta.get("edgesdk.export.help_for") or []
        try:
            from edgesdk.models.registry import FAMILY_MODULES, get_family
        except ImportError:  # a runtime-only install: nothing to export, nothing to list
            return
        family = next((name for name in candidates if name in FAMILY_MODULES), None)
        if family is None:
            formatter.write_paragraph()
            formatter.write_text("Family options: `edgesdk export FAMILY --help` or `edgesdk models FAMILY` lists them.")
            return
        declared = get_family(family).export_options.declared()
        with formatter.section(f"{family} options (--option NAME=VALUE, or the short flags above)"):
            formatter.write_dl([(row.name, f"{row.type.name}; default {row.shown_default()}"
                                 + (f"; mode {'/'.join(row.modes)}" if row.modes else "")
                                 + ("; Python only" if not row.type.command_line else "") + f". {row.help}")
                                for row in declared] or [("(none)", "")])


@click.command("export", cls=ExportCommand)
@click.argument("target")
@click.option("--preset", help="Preset of a registered family (see `edgesdk models`); optional when the checkpoint carries its whole config.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="The authors' checkpoint file, as released.")
@click.option("--random-weights", is_flag=True,
              help="No checkpoint: export the preset with seeded random weights (for trying the tool chain; "
                   "the bundle computes nothing useful, and says so).")
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
@click.option("--dynamic", multiple=True, metavar="NAME:AXIS=SYMBOL", help="Custom module: a dynamic axis, e.g. x:2=frames (ONNX only); "
              "x:0=batch makes every state's batch axis dynamic too, for streams of any batch.")
@click.option("--batch-axis", "batch_axes", multiple=True, metavar="STATE:AXIS",
              help="Custom module: the batch axis of a state, where it is not 0 (an nn.GRU state [layers, batch, hidden]: h:1).")
@click.option("--output-names", metavar="NAME[,NAME...]",
              help="Custom module: names of the outputs (not the states), in return order (default: output, or output_0, output_1, ...).")
@_family_flags
@click.option("--option", "extra_options", multiple=True, metavar="KEY=VALUE",
              help="A family export option; `edgesdk models FAMILY` lists them with types and defaults.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("-v", "--verbose", "show_converter", is_flag=True, help="Show converter output (always kept in DIR/export.log).")
@click.pass_context
def command(ctx: click.Context, target: str, preset, checkpoint, random_weights, stream, formats, output, force, atol, rtol, quantize,
            precisions, calibration_data, keep_float, activation_bits, min_sqnr, opset,
            sample_inputs, inputs, states, dynamic, batch_axes, output_names, extra_options, as_json, show_converter,
            **family_flags) -> None:
    """Export TARGET (a family name, package.module:factory or path/to/mods.py:factory) to a validated bundle."""
    if importlib.util.find_spec("torch") is None:  # a runtime-only install (edgesdk[runtime])
        raise BackendUnavailable("edgesdk export needs PyTorch and the converters, not installed here: "
                                 "pip install 'edgesdk[export]'")
    import edgesdk

    verbose = show_converter or bool(ctx.obj and ctx.obj.get("verbose"))
    progress = StepProgress()
    recipe_options: dict[str, Any] = _parse_options(extra_options)
    if family_flags.pop("no_fold"):
        recipe_options["fold"] = False
    recipe_options.update({name: value for name, value in family_flags.items() if value is not None})
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
        if preset or checkpoint or random_weights:
            raise UsageError("--preset, --checkpoint and --random-weights apply to registered families, "
                             "not to package.module:factory")
        if not inputs:
            raise UsageError("a custom module needs at least one --input NAME=SHAPE")
        progress(f"building {target}")
        from edgesdk.exporters.factory import load_factory

        model = load_factory(target)
        from edgesdk.runtime.wrap import parse_batch_axis

        arguments = dict(example_inputs=parse_named_shapes(inputs, "--input"),
                         states=parse_named_shapes(states, "--state") or None,
                         dynamic_axes=_parse_dynamic(dynamic) or None, factory=target,
                         batch_axes=dict(parse_batch_axis(text) for text in batch_axes) or None,
                         output_names=_parse_names(output_names))
    else:
        if inputs or states or dynamic or batch_axes or output_names:
            raise UsageError("--input, --state, --dynamic, --batch-axis and --output-names describe a custom module; "
                             "a registered family knows its own")
        from edgesdk.models.registry import get_family

        # Options are checked before the (slow) model build: a typo costs nothing.
        arguments = {"export_options": get_family(target).parse_options(mode, recipe_options)}
        if checkpoint is None and not random_weights:
            raise UsageError(f"no --checkpoint: give the authors' checkpoint of {target} (docs/{target}.md says where "
                             "to get one), or add --random-weights to export seeded random weights on purpose")
        if checkpoint is not None and random_weights:
            raise UsageError("--random-weights and --checkpoint contradict each other; give one of them")
        recipe_options = {}
        progress(f"building {target}" + (f" ({preset})" if preset else "") + (f" from {checkpoint}" if checkpoint else ""))
        model = edgesdk.create_model(target, preset=preset, checkpoint=checkpoint)
    try:
        result = edgesdk.export(model, output, formats=formats, mode=mode, atol=atol, rtol=rtol, force=force,
                                opset=opset, sample_inputs=sample_inputs, verbose=verbose, progress=progress,
                                command_line=" ".join(["edgesdk"] + sys.argv[1:]), random_weights=random_weights,
                                **quantization, **arguments,
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
