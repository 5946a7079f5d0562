"""ExportSpec: everything an exporter needs to know about one module, and nothing about formats.

A family's export recipe (``recipe(model, mode, options) -> ExportSpec``, options typed) fills one in; the
generic path (``edgesdk.export(module, example_inputs=..., states=...)``) builds one from what
the user passes. The exporters, the validator and the bundle writer read only this.

Calling convention of ``module``: positional arguments are the inputs in declared order, then
the states in declared order; the return value is a tensor or a tuple holding the outputs in
declared order, then the new states in the order of ``states``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import torch

from edgesdk.errors import UsageError
from edgesdk.runtime.compare import FamilyCheck

MODES = ("full", "stream")
BATCH = "batch"  # the dynamic-axis symbol the runtime fills with the number of stacked streams

# A family-specific check of one output, as data (``edgesdk.runtime.compare``: e.g. BitAgreement),
# so the manifest can carry it and the on-device self-test applies the rule export applied.
OutputCheck = FamilyCheck


@dataclass(frozen=True)
class StateSpec:
    """One piece of recurrent state carried from step to step.

    ``shape`` is the shape at the example batch size; ``batch_axis`` says where the batch is,
    so a runtime can stack streams. Every state starts at the constant ``init``.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    batch_axis: int = 0
    init: float = 0.0

    @property
    def input_name(self) -> str:
        return self.name

    @property
    def output_name(self) -> str:
        return f"{self.name}_next"

    def initial(self, batch: int = 1) -> np.ndarray:
        shape = list(self.shape)
        shape[self.batch_axis] = batch
        return np.full(shape, self.init, dtype=self.dtype)


@dataclass
class ExportSpec:
    """What to export and how to check it.

    Attributes:
        module: the export-ready module (eval mode), called as described in the module doc.
        example_inputs: ordered name -> example tensor of every non-state input.
        output_names: names of the non-state outputs, in return order.
        states: the state pairs (empty for a stateless module).
        mode: "full" (whole input at once) or "stream" (one step, state in and out).
        dynamic_axes: input or output name -> {axis: symbolic name}, e.g.
            ``{"features": {0: "batch", 1: "frames"}}``. ONNX keeps these dynamic; TFLite is
            exported at the example shapes (LiteRT prefers static shapes).
        atol, rtol: the tolerance every output must meet (``|a-b| <= atol + rtol*|b|``).
        output_tolerances: per-output override, name -> (atol, rtol).
        output_checks: per-output family check replacing the tolerance test (e.g. hash-bit
            agreement); see ``OutputCheck``.
        validation_steps: streaming only: how many consecutive steps validation runs.
        sample_inputs: extra inputs to validate on, besides seeded random ones. "full": a list
            of feed dicts. "stream": a list of sequences, each a dict name -> array whose first
            axis is the step.
        stream_reference: streaming only: given one sequence (name -> [steps, ...] arrays),
            return name -> [steps, ...] arrays of what an *independent* reference (e.g. the
            full-sequence model) says each step must output. Validation records that error too.
        random_input: how to draw a seeded random input for a name and shape (default:
            standard normal float32); families with index or waveform inputs override it.
        metadata: manifest sections the family contributes: "model", "streaming",
            "frontend", "ops", and anything else under "extra".
        keep_float: int8 export only: name -> weight that must stay float32 (e.g. a recurrence
            whose rounding error would accumulate over frames).
        quantization_refused: why this export cannot be int8-quantized (None: it can).
        keep_float_reasons: name in ``keep_float`` -> why it stays float (recorded in the recipe).
        find_keep_float: reduced precision only (never called for a float export): measures the
            model and returns more weights to keep float and why, as (keep_float, reasons).
    """

    module: torch.nn.Module
    example_inputs: dict[str, torch.Tensor]
    output_names: list[str]
    states: list[StateSpec] = field(default_factory=list)
    mode: str = "full"
    dynamic_axes: dict[str, dict[int, str]] = field(default_factory=dict)
    atol: float = 1e-4
    rtol: float = 1e-4
    output_tolerances: dict[str, tuple[float, float]] = field(default_factory=dict)
    output_checks: dict[str, OutputCheck] = field(default_factory=dict)
    validation_steps: int = 32
    sample_inputs: list[dict[str, np.ndarray]] = field(default_factory=list)
    stream_reference: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    random_input: Callable[[str, tuple[int, ...], np.random.Generator], np.ndarray] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    keep_float: dict[str, torch.Tensor] = field(default_factory=dict)
    quantization_refused: str | None = None
    keep_float_reasons: dict[str, str] = field(default_factory=dict)
    find_keep_float: Callable[[], tuple[dict[str, torch.Tensor], dict[str, str]]] | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.mode == "stream" and not self.states:
            raise UsageError("a streaming export needs at least one state")
        if not self.example_inputs:
            raise UsageError("an export needs at least one example input")
        if not self.output_names:
            raise UsageError("an export needs at least one output name")
        names = self.input_names + self.all_output_names
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise UsageError(f"tensor names used twice: {', '.join(duplicates)}")
        if self.validation_steps < 1:
            raise UsageError("validation_steps must be at least 1")

    @property
    def input_names(self) -> list[str]:
        """Every graph input: the inputs, then the states."""
        return list(self.example_inputs) + [s.input_name for s in self.states]

    @property
    def all_output_names(self) -> list[str]:
        """Every graph output: the outputs, then the new states."""
        return list(self.output_names) + [s.output_name for s in self.states]

    def example_args(self) -> tuple[torch.Tensor, ...]:
        """Positional example arguments: inputs, then initial states at the example batch."""
        states = [torch.from_numpy(s.initial(s.shape[s.batch_axis])) for s in self.states]
        return tuple(self.example_inputs.values()) + tuple(states)

    def example_args_at_batch(self, batch: int) -> tuple[torch.Tensor, ...]:
        """The example arguments, each dynamic "batch" axis of size 1 repeated to ``batch``."""
        arguments = []
        for name, tensor in zip(self.input_names, self.example_args()):
            for axis, symbol in self.dynamic_axes.get(name, {}).items():
                if symbol == BATCH and tensor.shape[axis] == 1:
                    tensor = torch.cat([tensor] * batch, dim=axis)
            arguments.append(tensor)
        return tuple(arguments)

    def tolerance(self, output_name: str) -> tuple[float, float]:
        return self.output_tolerances.get(output_name, (self.atol, self.rtol))


def tensor_spec(name: str, array: np.ndarray | torch.Tensor, dynamic: Mapping[int, str] | None = None) -> dict:
    """Manifest entry for a tensor: shape with symbolic dims as strings, and dtype."""
    shape: list[int | str] = list(array.shape)
    for axis, symbol in (dynamic or {}).items():
        shape[axis] = symbol
    dtype = str(array.dtype).replace("torch.", "")
    return {"name": name, "shape": shape, "dtype": dtype}


def as_numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def split_outputs(spec: ExportSpec, result: Any) -> dict[str, np.ndarray]:
    """Name the module's return value by the spec's output and state names."""
    if isinstance(result, (torch.Tensor, np.ndarray)):
        result = (result,)
    names = spec.all_output_names
    if len(result) != len(names):
        raise UsageError(
            f"the module returned {len(result)} tensors but the export declares {len(names)} "
            f"({', '.join(names)})"
        )
    return {name: as_numpy(value) for name, value in zip(names, result)}


def call_module(spec: ExportSpec, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the reference module on named numpy feeds (inputs and states)."""
    args = [torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in spec.input_names]
    with torch.no_grad():
        return split_outputs(spec, spec.module(*args))

