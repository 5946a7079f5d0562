"""ExportSpec -> model.onnx through the dynamo exporter (``torch.onnx.export(..., dynamo=True)``).

Symbolic axes stay dynamic; the key manifest facts go into ``metadata_props`` under
``edgesdk.*`` so a lone model.onnx still describes itself.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from edgesdk.errors import ConversionError
from edgesdk.exporters.capture import ConverterLog
from edgesdk.spec import ExportSpec

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18


def _dynamic_shapes(spec: ExportSpec) -> tuple[dict[int, Any] | None, ...] | None:
    """torch.export Dims per positional argument; one Dim per symbolic name, shared.

    When every symbolic axis has an example size of 1 (a batch axis alone, as in the image
    classifiers), the axes get ``Dim.DYNAMIC``: a named Dim cannot start from 1 there, since
    torch.export specializes sizes 0 and 1 ("Invalid ranges [2:1]"). ``export_onnx`` also traces
    the "batch" axes at size 2 (only the ONNX trace: TFLite keeps the example shapes), and
    ``_name_dynamic_axes`` names the axes after the spec afterwards. Specs with a longer symbolic
    axis (frames, samples) keep named Dims throughout: mixing the two broke LightHuBERT's
    ``samples`` constraints.
    """
    if not spec.dynamic_axes:
        return None
    arguments = dict(zip(spec.input_names, spec.example_args()))
    declared = [(name, axis) for name in spec.input_names for axis in spec.dynamic_axes.get(name, {})]
    only_ones = bool(declared) and all(arguments[name].shape[axis] == 1 for name, axis in declared)
    dims: dict[str, Any] = {}
    per_argument = []
    for name in spec.input_names:
        axes = spec.dynamic_axes.get(name)
        if not axes:
            per_argument.append(None)
            continue
        per_argument.append({axis: torch.export.Dim.DYNAMIC if only_ones else dims.setdefault(symbol, torch.export.Dim(symbol))
                             for axis, symbol in axes.items()})
    return tuple(per_argument)


def _name_dynamic_axes(model: Any, spec: ExportSpec) -> None:
    """Rename the exporter's symbols (``s40``) to the spec's names ("batch") throughout the graph."""
    renames: dict[str, str] = {}
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for axis, symbol in spec.dynamic_axes.get(value.name, {}).items():
            if axis < len(dims) and dims[axis].HasField("dim_param"):
                renames.setdefault(dims[axis].dim_param, symbol)
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# torch.export's own summary of what failed: "<class 'pkg.SomeError'>: what", and where in the user's code.
EXCEPTION_CLASS = re.compile(r"^<class '(?:[\w.]+\.)?(\w+)'>:\s*")
RAISING_CALL = re.compile(r'^File "([^"]+)", line (\d+), in (\S+)$')


def conversion_error(fmt: str, error: BaseException) -> ConversionError:
    """A one-paragraph error naming why the converter stopped: the underlying exception, the op,
    and the line of the model's source that torch.export names, when it names one."""
    text = ANSI_ESCAPE.sub("", str(error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    headline = lines[0] if lines else type(error).__name__
    reason = _underlying_reason(lines, error)
    message = f"{fmt} conversion failed: {type(error).__name__}: {reason or headline}"
    source = _raising_source_line(lines)
    if source:
        message += f" (at {source})"
    culprit = next((line for line in lines if "aten." in line or "aten::" in line), None)
    if culprit and culprit not in (headline, reason):
        message += f" (op: {culprit[:200]})"
    return ConversionError(message)


def _underlying_reason(lines: list[str], error: BaseException) -> str | None:
    """torch.export's "Exception summary" line, else the innermost cause of ``error``, else None."""
    for index, line in enumerate(lines):
        if line.startswith("## Exception summary") and index + 1 < len(lines):
            return EXCEPTION_CLASS.sub(lambda match: f"{match.group(1)}: ", lines[index + 1])[:400]
    cause, seen = error.__cause__, 0
    while cause is not None and cause.__cause__ is not None and seen < 10:
        cause, seen = cause.__cause__, seen + 1
    if cause is not None and str(cause).strip():
        first = ANSI_ESCAPE.sub("", str(cause)).strip().splitlines()[0]
        return f"{type(cause).__name__}: {first[:400]}"
    return None


def _raising_source_line(lines: list[str]) -> str | None:
    """'model.py:4 in forward: if x.sum() > 0:' from torch.export's "The following call raised this error"."""
    for index, line in enumerate(lines):
        match = RAISING_CALL.match(line)
        if match and index > 0 and "raised this error" in lines[index - 1]:
            code = lines[index + 1] if index + 1 < len(lines) else ""
            return f"{match.group(1)}:{match.group(2)} in {match.group(3)}: {code}".rstrip(": ")
    return None


def export_onnx(
    spec: ExportSpec,
    path: Path,
    metadata: dict[str, Any],
    converter_log: ConverterLog,
    opset: int = DEFAULT_OPSET,
) -> dict[str, Any]:
    """Write ``path`` and return the manifest facts of this artifact."""
    import onnx

    # torch.export specializes a size-1 dimension (0/1 specialization): traced at batch 1, the
    # graph would take batch 1 only, whatever the manifest says. So trace at batch 2.
    arguments = spec.example_args_at_batch(2)
    try:
        with converter_log.capture("torch.onnx.export (dynamo)"), torch.no_grad():
            program = torch.onnx.export(
                spec.module,
                arguments,
                input_names=spec.input_names,
                output_names=spec.all_output_names,
                dynamic_shapes=_dynamic_shapes(spec),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
            program.save(str(path), external_data=False)
    except Exception as error:  # the exporter raises many unrelated types
        raise conversion_error("ONNX", error) from error

    model = onnx.load(str(path))
    _name_dynamic_axes(model, spec)
    graph_inputs = [value.name for value in model.graph.input]
    graph_outputs = [value.name for value in model.graph.output]
    if graph_inputs != spec.input_names or graph_outputs != spec.all_output_names:
        # The exporter drops inputs the graph never reads (e.g. an unused state).
        raise ConversionError(
            "ONNX export changed the graph interface: expected inputs "
            f"{spec.input_names} and outputs {spec.all_output_names}, got {graph_inputs} and "
            f"{graph_outputs}. An input the module never reads is dropped by the exporter."
        )
    frozen = _frozen_axes(model, spec)
    if frozen:
        raise ConversionError(
            f"ONNX export fixed axes declared dynamic: {'; '.join(frozen)}. The module ties them to a "
            "fixed size (e.g. a reshape to the example's shape, or a state whose batch axis is not "
            "declared: --batch-axis STATE:AXIS)"
        )
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key = f"edgesdk.{key}"
        entry.value = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    onnx.save(model, str(path))
    opset_version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    first = model.graph.input[0].type.tensor_type.shape.dim
    return {
        # What batches the runtime may feed: any size, or the fixed one it must pad up to.
        "batch": "dynamic" if first and first[0].HasField("dim_param") else (first[0].dim_value if first else 1),
        "format": "onnx",
        "opset": opset_version,
        "converter": f"torch.onnx (dynamo) {torch.__version__}",
        "inputs": {name: name for name in spec.input_names},
        "outputs": {name: name for name in spec.all_output_names},
    }


def _frozen_axes(model: Any, spec: ExportSpec) -> list[str]:
    """Declared dynamic input axes that the written graph holds at a fixed size."""
    frozen = []
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for axis, symbol in spec.dynamic_axes.get(value.name, {}).items():
            if axis < len(dims) and not dims[axis].dim_param:
                frozen.append(f"{value.name} axis {axis} ({symbol}) = {dims[axis].dim_value}")
    return frozen
