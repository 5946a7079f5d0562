"""export(): module -> ExportSpec -> artifacts -> validation -> bundle folder, written atomically.

Everything is written into a hidden temporary folder beside the destination and renamed into
place at the end, so an interrupted or failed export (Ctrl-C included) leaves no partial
bundle. A bundle whose validation fails is still written (files kept, manifest ``valid:
false``) and then ValidationError is raised.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import glob
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from edgesdk import interrupts
from edgesdk._version import __version__
from edgesdk.errors import ConversionError, NoSpaceError, UsageError, ValidationError
from edgesdk.folders import check_replaceable, replace_folder
from edgesdk.exporters.capture import ConverterLog
from edgesdk.exporters.onnx import DEFAULT_OPSET, export_onnx
from edgesdk.exporters.precision.plan import make_plan, validation_summary
from edgesdk.exporters.quantize import QUANTIZATIONS, quantize_tflite
from edgesdk.exporters.tflite import export_tflite
from edgesdk.exporters.validate import rules_of, validate
from edgesdk.models.info import model_info
from edgesdk.models.options import ExportOptions
from edgesdk.models.registry import get_family
from edgesdk.runtime.compare import MIN_SQNR_DB
from edgesdk.runtime.introspect import op_histogram
from edgesdk.runtime.manifest import MANIFEST_NAME, SCHEMA_VERSION, VALIDATION_NAME, sha256_file
from edgesdk.runtime.sections import check_sections
from edgesdk.spec import BATCH, ExportSpec, StateSpec, as_numpy, call_module, split_outputs, tensor_spec

log = logging.getLogger(__name__)

FORMATS = ("onnx", "tflite")
ARTIFACT_FILES = {"onnx": "model.onnx", "tflite": "model.tflite"}
MIN_OPSET = 18  # the dynamo exporter writes opset 18 or newer; it turns a lower request into 18
SPACE_PER_FORMAT = 3  # estimate: free bytes needed per format, as a multiple of the weights' bytes


@dataclass
class ExportResult:
    """What export() wrote: the bundle folder, its manifest and its validation report."""

    path: Path
    manifest: dict[str, Any]
    validation: dict[str, Any]

    @property
    def valid(self) -> bool:
        return bool(self.manifest["valid"])


def _tensor(value: Any, name: str) -> torch.Tensor:
    """An example input from a tensor, an array, or a shape (seeded N(0, 1) float32)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, (tuple, list)) and all(isinstance(d, int) and d > 0 for d in value):
        generator = torch.Generator().manual_seed(0)
        return torch.randn(*value, generator=generator)
    raise UsageError(f"example input {name!r} must be a tensor, an array or a shape of positive ints, not {value!r}")


def _states(states: Any) -> list[StateSpec]:
    if not states:
        return []
    if isinstance(states, Mapping):
        return [s if isinstance(s, StateSpec) else StateSpec(name, tuple(_tensor(s, name).shape)) for name, s in states.items()]
    if all(isinstance(s, StateSpec) for s in states):
        return list(states)
    raise UsageError("states must be a mapping name -> shape (or tensor), or a list of StateSpec")


def _stream_batch(states: list[StateSpec], batch_axes: Mapping[str, int] | None,
                  dynamic_axes: Mapping[str, Mapping[int, str]], inputs: Mapping[str, torch.Tensor],
                  ) -> tuple[list[StateSpec], dict[str, dict[int, str]]]:
    """Each state's batch axis, and a dynamic batch that reaches every state of the graph.

    A state's batch axis is ``batch_axes[name]`` if given, else the axis ``dynamic_axes`` names
    "batch" for it, else 0 (an ``nn.GRU`` state ``[layers, batch, hidden]`` needs 1). When an input
    has a dynamic "batch" axis, every state's batch axis becomes dynamic too: otherwise the
    exporter ties the batch to the example's, and the graph stays at batch 1 whatever the
    manifest says.
    """
    axes = {name: dict(value) for name, value in dynamic_axes.items()}
    batch_axes = dict(batch_axes or {})
    unknown = sorted(set(batch_axes) - {s.name for s in states})
    if unknown:
        raise UsageError(f"batch axis given for {', '.join(map(repr, unknown))}, which is not a state; "
                         f"the states are {', '.join(s.name for s in states) or 'none'}")
    placed = []
    for state in states:
        declared = [axis for axis, symbol in axes.get(state.input_name, {}).items() if symbol == BATCH]
        axis = batch_axes.get(state.name, declared[0] if declared else state.batch_axis)
        if not isinstance(axis, int) or not 0 <= axis < len(state.shape):
            raise UsageError(f"batch axis {axis!r} of state {state.name!r} is out of range: its shape "
                             f"{list(state.shape)} has {len(state.shape)} axes")
        if declared and declared != [axis]:
            raise UsageError(f"state {state.name!r}: batch axis {axis}, but the dynamic axes name axis "
                             f"{declared[0]} {BATCH!r}")
        placed.append(dataclasses.replace(state, batch_axis=axis))
    batched_inputs = [name for name in inputs if BATCH in axes.get(name, {}).values()]
    if batched_inputs:
        for state in placed:
            symbols = axes.setdefault(state.input_name, {})
            if symbols.get(state.batch_axis, BATCH) != BATCH:
                raise UsageError(f"state {state.name!r}: its batch axis {state.batch_axis} is dynamic as "
                                 f"{symbols[state.batch_axis]!r}, but {batched_inputs[0]!r} calls the batch {BATCH!r}")
            symbols[state.batch_axis] = BATCH
    return placed, axes


def spec_for_module(
    module: torch.nn.Module,
    example_inputs: Mapping[str, Any] | None,
    states: Any = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    batch_axes: Mapping[str, int] | None = None,
) -> ExportSpec:
    """An ExportSpec for a user's own module (the bring-your-own path)."""
    if not example_inputs:
        raise UsageError("exporting your own module needs example_inputs, e.g. {'x': (1, 128, 16)}")
    inputs = {name: _tensor(value, name) for name, value in example_inputs.items()}
    state_specs, dynamic_axes = _stream_batch(_states(states), batch_axes, dynamic_axes or {}, inputs)
    module.eval()
    arguments = list(inputs.values()) + [torch.from_numpy(s.initial(s.shape[s.batch_axis])) for s in state_specs]
    result = _trial_call(module, arguments, inputs, state_specs)
    if output_names is None:
        count = 1 if isinstance(result, torch.Tensor) else len(result)
        count -= len(state_specs)
        if count < 1:
            raise UsageError(
                f"the module returned {count + len(state_specs)} tensors for {len(state_specs)} states; "
                "a streaming module returns (outputs..., new_states...)"
            )
        output_names = ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    _check_state_shapes(result, state_specs)
    _check_dynamic_axes(dynamic_axes or {}, inputs, state_specs, output_names)
    spec = ExportSpec(
        module=module,
        example_inputs=inputs,
        output_names=list(output_names),
        states=state_specs,
        mode="stream" if state_specs else "full",
        dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
        atol=atol,
        rtol=rtol,
    )
    if any(BATCH in axes.values() for axes in spec.dynamic_axes.values()):
        at_one, at_two = split_outputs(spec, result), _trial_batch(spec)
        for name in spec.output_names:  # an output axis that follows the batch is the batch
            if name not in spec.dynamic_axes:
                axes = {axis: BATCH for axis, (one, two) in enumerate(zip(at_one[name].shape, at_two[name].shape))
                        if (one, two) == (1, 2)}
                if axes:
                    spec.dynamic_axes[name] = axes
    return spec


def _trial_batch(spec: ExportSpec) -> dict[str, np.ndarray]:
    """One forward at batch 2 (the batch ONNX export traces at): a state whose batch axis is
    misplaced fails here with a sentence, not deep inside torch.export."""
    arguments = spec.example_args_at_batch(2)
    try:
        with torch.no_grad():
            return split_outputs(spec, spec.module(*arguments))
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        given = ", ".join(f"{name} {list(t.shape)}" for name, t in zip(spec.input_names, arguments))
        axes = ", ".join(f"{s.name}:{s.batch_axis}" for s in spec.states)
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        hint = (f" Each state's batch axis is {axes}; declare where the batch is with batch_axes={{name: axis}} "
                "(--batch-axis STATE:AXIS)." if spec.states else "")
        raise UsageError(f"the module cannot run at batch 2 ({given}), which a dynamic 'batch' axis "
                         f"promises: {first_line}.{hint}") from None


def _trial_call(module: torch.nn.Module, arguments: Sequence[torch.Tensor], inputs: Mapping[str, torch.Tensor],
                states: Sequence[StateSpec]) -> Any:
    """One forward on the example inputs: a shape the module cannot take is the user's mistake (exit 2)."""
    try:
        with torch.no_grad():
            return module(*arguments)
    except (RuntimeError, ValueError, TypeError, IndexError) as error:
        given = ", ".join([f"{name} {list(t.shape)}" for name, t in inputs.items()]
                          + [f"state {s.name} {list(s.shape)}" for s in states])
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UsageError(f"the module cannot run on the example shapes ({given}): {first_line}") from None


def _check_state_shapes(result: Any, states: Sequence[StateSpec]) -> None:
    """A state keeps its shape from step to step: the module's new state names the shape it expects."""
    returned = [result] if isinstance(result, torch.Tensor) else list(result)
    for state, new in zip(states, returned[len(returned) - len(states):]):
        if isinstance(new, torch.Tensor) and tuple(new.shape) != tuple(state.shape):
            given, expected = "x".join(map(str, state.shape)), "x".join(map(str, new.shape))
            raise UsageError(f"state {state.name!r} was given as {given}, but the module returns it as {expected}: "
                             f"the module expects {state.name}={expected} (--state {state.name}={expected})")


def _check_dynamic_axes(dynamic_axes: Mapping[str, Mapping[int, str]], inputs: Mapping[str, torch.Tensor],
                        states: Sequence[StateSpec], output_names: Sequence[str]) -> None:
    """Every dynamic axis names a known tensor and, where its rank is known, an axis it has."""
    ranks: dict[str, int | None] = {name: tensor.dim() for name, tensor in inputs.items()}
    for state in states:
        for name in (state.name, state.input_name, state.output_name):
            ranks[name] = len(state.shape)
    for name in output_names:
        ranks.setdefault(name, None)
    for name, axes in dynamic_axes.items():
        if name not in ranks:
            raise UsageError(f"dynamic axis for unknown tensor {name!r}; the inputs are {', '.join(inputs)}")
        rank = ranks[name]
        for axis in axes:
            if rank is not None and not 0 <= axis < rank:
                raise UsageError(f"dynamic axis {axis} of {name!r} is out of range: {name!r} has {rank} axes")


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"edgesdk": __version__, "python": sys.version.split()[0]}
    for package in ("torch", "onnx", "onnxscript", "onnxruntime", "litert-torch", "ai-edge-litert", "numpy"):
        try:
            versions[package] = package_metadata.version(package)
        except package_metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _model_section(module: torch.nn.Module, spec: ExportSpec, factory: str | None) -> dict[str, Any]:
    info = model_info(module)
    if info is not None:
        section = info.to_manifest()
    else:  # a user's own module
        section = {"family": "custom", "preset": None, "parameters": sum(p.numel() for p in module.parameters()),
                   "checkpoint": None, "checkpoint_sha256": None}
    section["class"] = f"{type(module).__module__}.{type(module).__qualname__}"
    if factory:
        section["factory"] = factory
    section.update(spec.metadata.get("model", {}))
    return section


def _load_sample_inputs(path: str | Path, spec: ExportSpec) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"sample inputs file {path} does not exist")
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError) as error:
        raise UsageError(f"{path} is not a readable .npz file: {error}") from None
    wanted = list(spec.example_inputs)
    if sorted(arrays) != sorted(wanted):
        raise UsageError(f"{path} holds {', '.join(sorted(arrays)) or 'nothing'}; the model's inputs are {', '.join(wanted)}")
    for name, array in arrays.items():
        example = spec.example_inputs[name]
        rank = example.dim() + (1 if spec.mode == "stream" else 0)
        if array.ndim != rank:
            what = "[steps, *step shape]" if spec.mode == "stream" else "the input's shape"
            raise UsageError(f"{path}: {name!r} has shape {array.shape}; expected rank {rank} ({what})")
        arrays[name] = array.astype(as_numpy(example).dtype, copy=False)
    return arrays


def export(
    model: torch.nn.Module,
    output: str | Path,
    formats: Sequence[str] = FORMATS,
    mode: str | None = None,
    *,
    example_inputs: Mapping[str, Any] | None = None,
    states: Any = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    batch_axes: Mapping[str, int] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    force: bool = False,
    opset: int = DEFAULT_OPSET,
    sample_inputs: str | Path | None = None,
    verbose: bool = False,
    progress: Callable[[str], None] | None = None,
    factory: str | None = None,
    command_line: str | None = None,
    quantize: str | None = None,
    min_sqnr_db: float = MIN_SQNR_DB,
    export_options: ExportOptions | None = None,
    precision: str | Sequence[str] | None = None,
    calibration_data: str | Path | None = None,
    keep_float: Sequence[str] = (),
    activation_bits: int = 8,
    random_weights: bool = False,
    **recipe_options: Any,
) -> ExportResult:
    """Export ``model`` to a validated bundle folder ``output``.

    A registered model (from ``create_model``) is prepared by its family's recipe for
    ``mode`` ("full" or "stream"); its options come typed as ``export_options`` (the family's
    ExportOptions) or as keywords ``recipe_options``, parsed by the registry (an unknown or
    ill-typed one is a UsageError listing the valid ones). Any other module
    needs ``example_inputs`` (name -> tensor, array or shape) and, when it streams, ``states``
    (name -> shape); it then takes ``(inputs..., states...)`` and returns
    ``(outputs..., new_states...)``.

    ``quantize="int8"`` writes the TFLite artifact with dynamic-range int8 weights (ONNX
    artifacts stay float32); it is validated by SQNR, at least ``min_sqnr_db`` on every output.

    ``precision`` ("fp32", "fp16", "int8-dynamic", "int8-weight-only", "int8-static", or several,
    comma-separated) writes one artifact per format and precision (``model.onnx``,
    ``model.int8-dynamic.onnx`` ...; see ``exporters/precision``). int8-static needs
    ``calibration_data`` (a folder of WAVs or images; a disjoint part of it also validates);
    ``keep_float`` adds op patterns to keep float; ``activation_bits=16`` gives TFLite
    int8-static 16-bit activations.

    Raises UsageError (bad arguments, existing output without ``force``), ConversionError
    (a converter failed), ValidationError (an artifact disagrees; the bundle is kept and
    marked invalid).
    """
    formats = _check_formats(formats)
    _check_quantize(quantize, formats)
    _check_opset(opset)
    for name, tolerance in (("atol", atol), ("rtol", rtol)):
        if tolerance is not None and not tolerance >= 0:
            raise UsageError(f"{name} must be a number >= 0, not {tolerance}")
    output = Path(output)
    check_replaceable(output, force)
    say = progress or (lambda message: log.info(message))

    info = model_info(model)
    check_weights_asked_for(info, random_weights)
    if info is not None and example_inputs is None:
        if states or batch_axes or output_names or dynamic_axes:
            raise UsageError("states, batch_axes, output_names and dynamic_axes describe your own module; "
                             f"a registered {info.family} model knows its own")
        mode = mode or "full"
        family = get_family(info.family)
        if mode not in family.modes:
            raise UsageError(f"{family.name} exports in mode(s) {', '.join(family.modes)}, not {mode!r}")
        if export_options is not None and recipe_options:
            raise UsageError("give export options either as export_options or as keywords, not both")
        options = family.parse_options(mode, export_options if export_options is not None else recipe_options)
        say(f"preparing {family.name} ({info.preset or 'config from ' + str(info.checkpoint)}) for {mode} export")
        spec = family.recipe(model, mode, options)
    else:
        if recipe_options or export_options is not None:
            given = list(recipe_options) or [type(export_options).__name__]
            raise UsageError(f"unknown export option(s) for a custom module: {', '.join(given)}")
        if mode == "stream" and not states:
            raise UsageError("a streaming export of a custom module needs states (name -> shape)")
        if mode == "full" and states:
            raise UsageError("mode='full' exports the whole input at once, without state; give mode='stream' "
                             "(or leave mode out) to export a step with states")
        if mode is not None and mode not in ("full", "stream"):
            raise UsageError(f"mode must be 'full' or 'stream', not {mode!r}")
        spec = spec_for_module(model, example_inputs, states, output_names, dynamic_axes, batch_axes=batch_axes)
    if quantize and spec.quantization_refused:
        raise UsageError(f"cannot quantize this export to {quantize}: {spec.quantization_refused}")
    if quantize and precision is not None:
        raise UsageError("--quantize int8 is the older spelling of --precision int8-dynamic (TFLite); give one of them")
    plan = make_plan(spec, formats, precision, calibration_data, keep_float, activation_bits)
    if plan is not None and plan.calibration is not None:
        spec.sample_inputs = list(spec.sample_inputs) + plan.calibration.validation
    if atol is not None:
        spec.atol = atol
    if rtol is not None:
        spec.rtol = rtol
    if sample_inputs is not None:
        spec.sample_inputs = list(spec.sample_inputs) + [_load_sample_inputs(sample_inputs, spec)]

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create the folder {output.parent} for {output}: {error.strerror}") from None
    needed = SPACE_PER_FORMAT * len(formats) * _weight_bytes(spec.module)
    with export_lock(output):
        sweep_stale_partials(output)
        _check_free_space(output, needed)
        try:
            staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.{os.getpid()}.", suffix=".partial",
                                            dir=output.parent))
        except OSError as error:
            raise UsageError(f"cannot write into {output.parent}: {error.strerror}") from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; a bundle is an ordinary folder
        converter_log = ConverterLog(echo=verbose)
        try:
            manifest, report = _write_bundle(spec, model, staging, formats, opset, converter_log, say, factory,
                                             command_line, quantize, min_sqnr_db, plan)
            interrupts.check()
            replace_folder(staging, output)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            if _is_no_space(error):
                raise NoSpaceError(f"no space left on {_device(output.parent)} while writing {output} "
                                   f"(needs ~{_megabytes(needed)} MB); nothing was written") from None
            if isinstance(error, ConversionError):
                raise _keep_failed_log(error, output, converter_log) from error
            raise
        failed_log_path(output).unlink(missing_ok=True)  # an earlier failure's log is out of date
    result = ExportResult(output, manifest, report)
    if not result.valid:
        failed = [fmt for fmt, facts in report["formats"].items() if not facts["passed"]]
        figures = "; ".join(f"{fmt}: {_failure_figures(report['formats'][fmt])}" for fmt in failed)
        raise ValidationError(
            f"validation failed for {', '.join(failed)}; files kept in {output}, manifest marked invalid "
            f"(details in {output / VALIDATION_NAME}){' (' + figures + ')' if figures else ''}",
            report,
        )
    return result


def _failure_figures(format_report: Mapping[str, Any], most: int = 4) -> str:
    """The worst figure of each failed output over the cases ("hash_codes_s1b0 bit_agreement 0.9974
    needs 0.999"): SQNR below its floor, or a family check's agreement below what it requires."""
    worst: dict[tuple[str, str], tuple[str, float, float]] = {}
    for case in format_report.get("cases", []):
        for name, facts in (case.get("outputs") or {}).items():
            if facts.get("passed", True):
                continue
            check = facts.get("check") or {}
            figures = [(k, v, check.get("required")) for k, v in check.items() if k.endswith("agreement")
                       and not check.get("passed", True)]
            # (binary codes are judged by their bit agreement alone: a failed check is the figure)
            if not figures and isinstance(facts.get("sqnr_db"), (int, float)) and facts["sqnr_db"] < (facts.get("min_sqnr_db") or 0):
                figures.append(("SQNR dB", facts["sqnr_db"], facts["min_sqnr_db"]))
            for key, value, required in figures:
                if isinstance(value, (int, float)) and isinstance(required, (int, float)):
                    if (name, key) not in worst or value < worst[(name, key)][1]:
                        worst[(name, key)] = (key, value, required)
    shown = [f"{name} {key} {value:.4g} needs {required:.4g}" for (name, _), (key, value, required) in worst.items()]
    return ", ".join(shown[:most]) + (f" and {len(shown) - most} more" if len(shown) > most else "")


def failed_log_path(output: Path) -> Path:
    """Where a failed export keeps its converter log: beside the bundle it did not write."""
    return output.parent / f"{output.name}.export.log"


def _keep_failed_log(error: ConversionError, output: Path, converter_log: ConverterLog) -> ConversionError:
    """Write what the converters printed and the whole error chain beside ``output``; say where."""
    path = failed_log_path(output)
    chain = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        path.write_text(converter_log.text() + "===== the error, with the converter's own\n" + chain)
    except OSError as problem:
        return ConversionError(f"{error}; its log could not be kept ({path}: {problem.strerror})")
    return ConversionError(f"{error}; nothing was written to {output}; the converters' output and the full "
                           f"error are in {path}")


def check_weights_asked_for(info: Any, random_weights: bool) -> None:
    """Random weights are shipped only when asked for: a bundle of them computes nothing useful."""
    if info is None:  # a user's own module: its weights are whatever the user loaded
        if random_weights:
            raise UsageError("random_weights applies to a registered family built without a checkpoint, "
                             "not to your own module")
        return
    if info.random_weights and not random_weights:
        raise UsageError(
            f"{info.family}{' ' + info.preset if info.preset else ''} has no checkpoint loaded, so its weights are "
            f"{info.weights}: the bundle would compute nothing useful. Give the authors' checkpoint "
            f"(--checkpoint FILE, or create_model(..., checkpoint=FILE); docs/{info.family}.md says where to "
            "get one), or ask for random weights explicitly (--random-weights, or export(..., random_weights=True))"
        )
    if random_weights and not info.random_weights:
        raise UsageError(f"random weights asked for, but the model holds the checkpoint {info.checkpoint}; "
                         "drop --random-weights (random_weights=True) or the checkpoint")


def _check_opset(opset: int) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise UsageError(f"opset {opset} is not supported: the dynamo exporter writes opsets {MIN_OPSET} to {newest}")


def _weight_bytes(module: torch.nn.Module) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _megabytes(size: int) -> int:
    return max(1, -(-size // 1_000_000))


def _device(path: Path) -> str:
    """The mount point that holds ``path``: what a user frees space on."""
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return str(path)


def _check_free_space(output: Path, needed: int) -> None:
    """Refuse early when the estimate (SPACE_PER_FORMAT x weight bytes per format) does not fit."""
    free = shutil.disk_usage(output.parent).free
    if free < needed:
        raise NoSpaceError(f"no space left on {_device(output.parent)} for {output} "
                           f"(needs ~{_megabytes(needed)} MB, {free // 1_000_000} MB free)")


def _is_no_space(error: BaseException | None) -> bool:
    """Whether ``error`` or an error it was raised from is ENOSPC (converters wrap OSError)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


@contextlib.contextmanager
def export_lock(output: str | Path):
    """Hold ``.NAME.lock`` beside ``output`` (flock) for one export; a second writer gets UsageError."""
    output = Path(output)
    lock_path = output.parent / f".{output.name}.lock"
    while True:
        try:
            descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise UsageError(f"cannot write into {output.parent}: {error.strerror}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(descriptor)
            raise UsageError(f"another export is writing {output} (pid {owner}); wait for it or choose another output") from None
        try:
            same_file = os.fstat(descriptor).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(descriptor)  # the holder removed the file while we waited for it: lock the new one
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(descriptor)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_stale_partials(output: str | Path) -> list[Path]:
    """Clean up what exports into ``output`` that did not finish left beside it.

    ``.NAME.<pid>.*.partial`` folders (a half-written bundle) are removed. ``.NAME.<pid>.*.old``
    folders (an old bundle moved aside by a ``--force`` swap) are removed too, except that when
    ``output`` itself is missing, the old bundle is moved back into place: the swap was killed
    between its two renames, and the previous bundle is the one the user had. Folders whose
    process is alive are left alone. Call it while holding ``export_lock(output)``. A folder
    without a pid in its name (written before pids were recorded) is stale.
    """
    output = Path(output)
    pattern = re.compile(r"(?:(\d+)\.)?[^.]+\.(partial|old)")
    removed = []
    prefix = f".{output.name}."
    candidates = sorted(output.parent.glob(f".{glob.escape(output.name)}.*.partial")) + \
        sorted(output.parent.glob(f".{glob.escape(output.name)}.*.old"))
    for candidate in candidates:
        match = pattern.fullmatch(candidate.name[len(prefix):])
        if not match or not candidate.is_dir():
            continue
        if match.group(1) and _process_alive(int(match.group(1))):
            continue
        previous = candidate / "old"
        if match.group(2) == "old" and not output.exists() and previous.is_dir():
            os.replace(previous, output)
            log.warning("put back %s, which an interrupted --force export had moved aside", output)
        shutil.rmtree(candidate, ignore_errors=True)
        log.info("removed %s, left by an export that did not finish", candidate)
        removed.append(candidate)
    return removed


def _check_formats(formats: Sequence[str]) -> list[str]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"formats must be among {', '.join(FORMATS)}; got {', '.join(formats) or 'none'}")
    return list(dict.fromkeys(formats))


def _check_quantize(quantize: str | None, formats: Sequence[str]) -> None:
    if quantize is None:
        return
    if quantize not in QUANTIZATIONS:
        raise UsageError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, not {quantize!r}")
    if "tflite" not in formats:
        raise UsageError(f"{quantize} quantization applies to the TFLite artifact; add tflite to the formats")


def _write_bundle(spec, model, folder: Path, formats, opset, converter_log, say, factory, command_line, quantize, min_sqnr_db,
                  plan=None):
    reference = call_module(spec, {n: as_numpy(v) for n, v in zip(spec.input_names, spec.example_args())})
    inputs = [tensor_spec(n, t, spec.dynamic_axes.get(n)) for n, t in spec.example_inputs.items()]
    outputs = [tensor_spec(n, reference[n], spec.dynamic_axes.get(n)) for n in spec.output_names]
    state = [
        {
            "name": s.name,
            "input": s.input_name,
            "output": s.output_name,
            "shape": list(s.shape),
            "dtype": s.dtype,
            "batch_axis": s.batch_axis,
            "init": s.init,
        }
        for s in spec.states
    ]
    model_section = _model_section(model, spec, factory)
    described = {
        "schema_version": SCHEMA_VERSION,
        "model": model_section,
        "mode": spec.mode,
        "inputs": inputs,
        "outputs": outputs,
        "state": state,
    }
    for section in ("streaming", "frontend", "ops", "extra"):
        if section in spec.metadata:
            described[section] = spec.metadata[section]
    check_sections(described, "the export recipe's metadata")  # what the device will read back

    artifact_facts: dict[str, dict[str, Any]] = {}
    files = {fmt: ARTIFACT_FILES[fmt] for fmt in formats}  # validation label -> file name
    for fmt in formats:
        path = folder / ARTIFACT_FILES[fmt]
        if fmt == "onnx":
            say("exporting ONNX (torch.onnx dynamo)")
            artifact_facts[fmt] = export_onnx(spec, path, described, converter_log, opset=opset)
            interrupts.check()  # converters may catch KeyboardInterrupt and carry on
        else:
            say("converting to TFLite (litert-torch)")
            artifact_facts[fmt] = export_tflite(spec, path, converter_log)
            interrupts.check()
        artifact_facts[fmt]["precision"] = "float32"
        if quantize and fmt == "tflite":
            say(f"quantizing TFLite weights to {quantize} (ai-edge-quantizer)")
            keep = {name: as_numpy(weight) for name, weight in spec.keep_float.items()}
            artifact_facts[fmt].update(quantize_tflite(path, keep, converter_log))
            interrupts.check()
    if plan is not None:
        plan.derive(spec, folder, formats, artifact_facts, files, converter_log, say, min_sqnr_db)
        interrupts.check()

    say("validating " + " and ".join(formats) + (f" over {spec.validation_steps} steps" if spec.mode == "stream" else ""))
    with converter_log.capture("validation (backend logs)"):
        report, sample_inputs, sample_outputs = validate(
            spec, {label: (folder / files[label], facts) for label, facts in artifact_facts.items()}, min_sqnr_db
        )
    for line in report["lines"]:
        log.info(line)

    samples = folder / "samples"
    samples.mkdir()
    np.savez(samples / "inputs.npz", **sample_inputs)
    np.savez(samples / "expected.npz", **sample_outputs)

    artifacts = []
    for fmt, facts in artifact_facts.items():
        path = folder / files[fmt]
        if plan is not None:
            facts = {**facts, "validation": {"key": fmt, **validation_summary(report["formats"][fmt])}}
        artifacts.append(
            {
                "file": path.name,
                "sha256": sha256_file(path),
                "size_bytes": path.stat().st_size,
                **facts,
                "op_histogram": op_histogram(path),
                "valid": report["formats"][fmt]["passed"],
            }
        )
    manifest = {
        **described,
        "valid": report["passed"],
        "artifacts": artifacts,
        "validation": {
            "passed": report["passed"],
            **rules_of(spec, min_sqnr_db).to_manifest(),  # the rules `edgesdk validate` applies on a device
            "min_sqnr_db": min_sqnr_db if quantize or (plan is not None and plan.reduced) else None,
            "steps": spec.validation_steps if spec.mode == "stream" else None,
            "report": VALIDATION_NAME,
        },
        "provenance": {
            **_versions(),
            "command_line": command_line or " ".join(sys.argv),
            "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    (folder / VALIDATION_NAME).write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    (folder / MANIFEST_NAME).write_text(json.dumps(_jsonable(manifest), indent=2) + "\n")
    (folder / "export.log").write_text(converter_log.text())
    return manifest, report


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value
