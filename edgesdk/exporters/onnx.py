"""ExportSpec -> model.onnx through the dynamo exporter (``torch.onnx.export(..., dynamo=True)``).

Symbolic axes stay dynamic; the key manifest facts go into ``metadata_props`` under
``edgesdk.*`` so a lone model.onnx still describes itself.
"""
from __future__ import annotations

import json
import logging
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
    torch.export specializes sizes 0 and 1 ("Invalid ranges [2:1]"), and a batch-2 example would
    also fix the TFLite file (exported at the example shapes) to 2. ``_name_dynamic_axes`` names
    them after the spec afterwards. Specs with a longer symbolic axis (frames, samples) keep
    named Dims throughout: mixing the two broke LightHuBERT's ``samples`` constraints.
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


def conversion_error(fmt: str, error: BaseException) -> ConversionError:
    """A one-paragraph error naming the op or module the converter choked on."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    culprit = next((line for line in lines if "aten." in line or "aten::" in line), None)
    headline = lines[0] if lines else type(error).__name__
    message = f"{fmt} conversion failed: {type(error).__name__}: {headline}"
    if culprit and culprit != headline:
        message += f" (at {culprit[:200]})"
    return ConversionError(message)


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
