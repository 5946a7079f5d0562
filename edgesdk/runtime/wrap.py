"""``edgesdk wrap``: an ordinary bundle around a stateful .onnx or .tflite that edgesdk did not write.

The user declares the stream contract the file's authors had in mind: which outputs become
which inputs at the next call (state pairs), which input wants the tail of the previous chunk
(context), which inputs are fixed (constants), and what chunk size a push must have. ``wrap``
checks the declarations against the file's own graph, copies the file unchanged (hash-checked),
adds for ONNX a copy that carries the contract in its ``metadata_props``, runs the checks a user
would want and could not easily write, records samples for ``edgesdk validate``, and renames the
finished folder into place (nothing half-written is left behind).

Torch-free: it lives beside the runtime it writes for.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from edgesdk import interrupts
from edgesdk._version import __version__
from edgesdk.errors import BackendUnavailable, UsageError, ValidationError
from edgesdk.folders import check_replaceable, replace_folder
from edgesdk.runtime.compare import elementwise_error
from edgesdk.runtime.contract import ChunkSpec, ConstantSpec, ContextSpec, StreamContract
from edgesdk.runtime.manifest import (DTYPES, MANIFEST_NAME, SCHEMA_VERSION, VALIDATION_NAME, check_manifest, read_npz,
                                      sha256_file)

FORMAT_OF_SUFFIX = {".onnx": "onnx", ".tflite": "tflite"}
CONTRACT_COPY = "model.contract.onnx"
# How many pushes the wrap-time checks and the recorded samples take.
CHECK_STEPS = 4
# Two runs of the same float computation on the same backend agree to far better than this.
REPEAT_ATOL = 1e-6


@dataclass(frozen=True)
class StateDeclaration:
    """``--state IN=OUT[:INIT]``: ``output`` is the next value of ``input``; it starts at ``init``
    (a number, or the path of an .npy file holding the whole initial value)."""

    input: str
    output: str
    init: float | str = 0.0


@dataclass(frozen=True)
class WrapCheck:
    """One wrap-time check: ``passed`` is None when it could not apply to this model."""

    name: str
    passed: bool | None
    detail: str


@dataclass(frozen=True)
class WrapResult:
    path: Path
    manifest: dict[str, Any]
    checks: tuple[WrapCheck, ...]


@dataclass(frozen=True)
class Suggestion:
    """A state pairing guessed from names and shapes; never applied without the user."""

    input: str
    output: str
    reason: str


@dataclass(frozen=True)
class TensorFacts:
    name: str
    shape: tuple[int | str, ...]
    dtype: str


# ---------------------------------------------------------------------- option parsing
def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an integer") from None


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not a number") from None
    if not np.isfinite(value):
        raise UsageError(f"{what}: {text!r} is not a finite number")
    return value


def parse_state(text: str) -> StateDeclaration:
    """``IN=OUT[:INIT]``, INIT a number or an .npy path."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise UsageError(f"--state {text!r} must look like IN=OUT or IN=OUT:INIT")
    output, _, init = rest.partition(":")
    if not output:
        raise UsageError(f"--state {text!r} names no output")
    if not init:
        return StateDeclaration(name, output)
    if init.endswith(".npy"):
        return StateDeclaration(name, output, init)
    return StateDeclaration(name, output, _number(init, f"--state {text!r} INIT"))


def parse_axis_size(text: str, option: str) -> tuple[str, int, int]:
    """``INPUT:AXIS:SIZE`` (``--context``, ``--chunk``)."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise UsageError(f"{option} {text!r} must look like INPUT:AXIS:SIZE")
    return parts[0], _integer(parts[1], f"{option} {text!r} AXIS"), _integer(parts[2], f"{option} {text!r} SIZE")


def parse_batch_axis(text: str) -> tuple[str, int]:
    name, sep, axis = text.rpartition(":")
    if not sep or not name:
        raise UsageError(f"--batch-axis {text!r} must look like IN:AXIS")
    return name, _integer(axis, f"--batch-axis {text!r} AXIS")


def parse_constant(text: str) -> tuple[str, float, str | None]:
    """``NAME=VALUE[:DTYPE]``."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise UsageError(f"--const {text!r} must look like NAME=VALUE or NAME=VALUE:DTYPE")
    value, _, dtype = rest.partition(":")
    if dtype and dtype not in DTYPES:
        raise UsageError(f"--const {text!r}: {dtype!r} is not a dtype edgesdk knows ({', '.join(sorted(DTYPES))})")
    return name, _number(value, f"--const {text!r} VALUE"), dtype or None


# ---------------------------------------------------------------------- the file's own graph
def describe_file(path: Path) -> tuple[str, list[TensorFacts], list[TensorFacts]]:
    """(format, inputs, outputs) as the file itself declares them (unnamed dims get their own symbol)."""
    fmt = FORMAT_OF_SUFFIX.get(path.suffix)
    if fmt is None:
        raise UsageError(f"{path}: wrap takes a .onnx or .tflite file")
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise BackendUnavailable("wrapping an ONNX file needs onnxruntime; pip install onnxruntime") from None
        from edgesdk.runtime.backends.onnxruntime import ONNX_TYPES, graph_dims

        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own unrelated types
            raise UsageError(f"{path} is not a loadable ONNX file: {str(error).strip().splitlines()[0]}") from None

        def facts(values: Sequence[Any]) -> list[TensorFacts]:
            return [TensorFacts(v.name, tuple(graph_dims(v.name, v.shape)), ONNX_TYPES.get(v.type, v.type)) for v in values]

        return fmt, facts(session.get_inputs()), facts(session.get_outputs())
    from edgesdk.runtime.model import lone_tflite_manifest

    manifest = lone_tflite_manifest(path)
    return fmt, [TensorFacts(t["name"], tuple(t["shape"]), t["dtype"]) for t in manifest["inputs"]], \
        [TensorFacts(t["name"], tuple(t["shape"]), t["dtype"]) for t in manifest["outputs"]]


def _shape_text(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _state_entry(declaration: StateDeclaration, inputs: Mapping[str, TensorFacts], outputs: Mapping[str, TensorFacts],
                 batch_axis: int | None) -> dict[str, Any]:
    """A manifest state pair from one declaration, checked against the graph."""
    where = f"--state {declaration.input}={declaration.output}"
    if declaration.input not in inputs:
        raise UsageError(f"{where}: {declaration.input!r} is not an input of the model (inputs: {', '.join(inputs)})")
    if declaration.output not in outputs:
        raise UsageError(f"{where}: {declaration.output!r} is not an output of the model (outputs: {', '.join(outputs)})")
    source, target = inputs[declaration.input], outputs[declaration.output]
    if source.dtype != target.dtype:
        raise UsageError(f"{where}: the input is {source.dtype} and the output {target.dtype}; a state keeps its dtype")
    if source.dtype not in DTYPES:
        raise UsageError(f"{where}: dtype {source.dtype!r} is not one edgesdk can feed")
    if len(source.shape) != len(target.shape) or any(
            isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(source.shape, target.shape)):
        raise UsageError(f"{where}: the input's shape {_shape_text(source.shape)} and the output's "
                         f"{_shape_text(target.shape)} differ; a state keeps its shape")
    symbolic = [axis for axis, dim in enumerate(source.shape) if not isinstance(dim, int)]
    if batch_axis is None:
        if len(symbolic) > 1:
            raise UsageError(f"{where}: the state's shape {_shape_text(source.shape)} has {len(symbolic)} symbolic axes; "
                             f"say which is the batch with --batch-axis {declaration.input}:AXIS")
        batch_axis = symbolic[0] if symbolic else 0
    if not 0 <= batch_axis < len(source.shape):
        raise UsageError(f"--batch-axis {declaration.input}:{batch_axis}: the state has {len(source.shape)} axes")
    others = [axis for axis in symbolic if axis != batch_axis]
    if others:
        raise UsageError(f"{where}: axis {others[0]} of {_shape_text(source.shape)} is symbolic; a state needs a "
                         f"fixed size on every axis but the batch axis ({batch_axis})")
    shape = [1 if axis == batch_axis and not isinstance(dim, int) else int(dim) for axis, dim in enumerate(source.shape)]
    entry: dict[str, Any] = {"name": declaration.input, "input": declaration.input, "output": declaration.output,
                             "shape": shape, "dtype": source.dtype, "batch_axis": batch_axis, "init": 0.0}
    if isinstance(declaration.init, (int, float)):
        entry["init"] = float(declaration.init)
    return entry


def _state_init_file(declaration: StateDeclaration, entry: Mapping[str, Any]) -> np.ndarray:
    """The .npy initial value of a state, checked against its shape and converted to its dtype."""
    where = f"--state {declaration.input}={declaration.output}:{declaration.init}"
    try:
        value = np.load(declaration.init, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UsageError(f"{where}: cannot read the .npy file: {error}") from None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
        raise UsageError(f"{where}: the file holds no numeric array")
    shape, axis = entry["shape"], entry["batch_axis"]
    if value.ndim != len(shape) or any(v != s for i, (v, s) in enumerate(zip(value.shape, shape)) if i != axis):
        raise UsageError(f"{where}: the file holds shape {list(value.shape)}; the state is {shape} "
                         f"(any size on batch axis {axis})")
    converted = value.astype(entry["dtype"])
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise UsageError(f"{where}: the file holds NaN or infinite values")
    if not np.array_equal(converted.astype(value.dtype), value):
        raise UsageError(f"{where}: the file's {value.dtype} values do not fit the state's {entry['dtype']}")
    return converted


def _constant(name: str, value: float, dtype: str | None, inputs: Mapping[str, TensorFacts]) -> ConstantSpec:
    where = f"--const {name}={value:g}"
    if name not in inputs:
        raise UsageError(f"{where}: {name!r} is not an input of the model (inputs: {', '.join(inputs)})")
    tensor = inputs[name]
    if dtype is not None and dtype != tensor.dtype:
        raise UsageError(f"{where}:{dtype}: the model takes {name!r} as {tensor.dtype}, not {dtype}")
    if tensor.dtype not in DTYPES:
        raise UsageError(f"{where}: dtype {tensor.dtype!r} is not one edgesdk can feed")
    if np.dtype(tensor.dtype).kind in "iu" and not float(value).is_integer():
        raise UsageError(f"{where}: {name!r} is {tensor.dtype}; {value:g} is not an integer")
    if tensor.dtype == "bool" and value not in (0.0, 1.0):
        raise UsageError(f"{where}: {name!r} is bool; give 0 or 1")
    # A symbolic dim of a constant is fed with size 1 (a flag or a rate is one value).
    shape = tuple(d if isinstance(d, int) else 1 for d in tensor.shape)
    return ConstantSpec(name, shape, tensor.dtype, float(value))


# ---------------------------------------------------------------------- writing
def wrap(
    source: str | Path,
    output: str | Path,
    *,
    states: Sequence[StateDeclaration | str] | Mapping[str, str] = (),
    batch_axes: Mapping[str, int] | None = None,
    context: Mapping[str, tuple[int, int]] | None = None,
    constants: Mapping[str, float | tuple[float, str]] | None = None,
    chunks: Mapping[str, tuple[int, int]] | None = None,
    force: bool = False,
    check: bool = True,
    seed: int = 0,
    reference: tuple[str | Path, str | Path] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    command_line: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> WrapResult:
    """Write a bundle folder ``output`` around the .onnx or .tflite file ``source``.

    Args:
        states: state pairs: ``StateDeclaration``s, ``"IN=OUT[:INIT]"`` strings, or ``{IN: OUT}``.
        batch_axes: ``{IN: axis}`` for a state whose batch axis is not its one symbolic axis.
        context: ``{INPUT: (axis, size)}``: the stream carries the last ``size`` entries on ``axis``.
        constants: ``{NAME: value}`` or ``{NAME: (value, dtype)}``: fed by the bundle, every call.
        chunks: ``{INPUT: (axis, size)}``: the new entries one push must carry on ``axis``.
        force: replace an existing bundle at ``output``.
        check: run the wrap-time checks and refuse a contract that fails one (UsageError).
        reference: ``(inputs.npz, expected.npz)``, a recording of the authors' own wrapper: each
            input stacked by step (``[steps, *push shape]``) and the outputs it gave. Every step is
            compared (``atol``, ``rtol``), ``validation.json`` is written, and the recording becomes
            the bundle's samples. A mismatch keeps the bundle, marked invalid, and raises
            ValidationError (exit 4).

    Raises UsageError (exit 2) naming each bad declaration or failed check; nothing is written then.
    """
    for name, tolerance in (("atol", atol), ("rtol", rtol)):
        if not tolerance >= 0:
            raise UsageError(f"{name} must be a number >= 0, not {tolerance}")
    recording = (read_npz(reference[0]), read_npz(reference[1])) if reference is not None else None
    source, output = Path(source), Path(output)
    say = progress or (lambda message: None)
    fmt, graph_inputs, graph_outputs = describe_file(source)
    inputs = {t.name: t for t in graph_inputs}
    outputs = {t.name: t for t in graph_outputs}
    declarations = _declarations(states)
    if not declarations and not context:
        raise UsageError("declare at least one --state IN=OUT or --context INPUT:AXIS:SIZE (try --suggest)")
    batch_axes = dict(batch_axes or {})
    unknown = [name for name in batch_axes if name not in {d.input for d in declarations}]
    if unknown:
        raise UsageError(f"--batch-axis names {', '.join(map(repr, unknown))}, which no --state declares")
    state_entries = [_state_entry(d, inputs, outputs, batch_axes.get(d.input)) for d in declarations]
    init_arrays = {d.input: _state_init_file(d, e) for d, e in zip(declarations, state_entries) if isinstance(d.init, str)}
    constant_specs = []
    for name, given in (constants or {}).items():
        value, dtype = given if isinstance(given, tuple) else (given, None)
        constant_specs.append(_constant(name, float(value), dtype, inputs))
    contract = StreamContract(
        context=tuple(ContextSpec(name, int(axis), int(size)) for name, (axis, size) in (context or {}).items()),
        constants=tuple(constant_specs),
        chunks=tuple(ChunkSpec(name, int(axis), int(size)) for name, (axis, size) in (chunks or {}).items()),
    )
    hidden = {e["input"] for e in state_entries} | set(contract.constant_names)
    for kind, names in (("--context", [c.input for c in contract.context]), ("--chunk", [c.input for c in contract.chunks])):
        for name in names:
            if name not in inputs:
                raise UsageError(f"{kind} {name}: {name!r} is not an input of the model (inputs: {', '.join(inputs)})")
            if name in hidden:
                raise UsageError(f"{kind} {name}: {name!r} is already declared a state or a constant")
    check_replaceable(output, force)

    artifact_file = f"model{source.suffix}"
    source_sha256 = sha256_file(source)
    manifest: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": {"family": "foreign", "source": source.name},
        "mode": "stream",
        "inputs": [_tensor(t) for t in graph_inputs if t.name not in hidden],
        "outputs": [_tensor(t) for t in graph_outputs if t.name not in {e["output"] for e in state_entries}],
        "state": state_entries,
        **contract.to_manifest(),
        "artifacts": [{
            "file": artifact_file, "format": fmt, "sha256": source_sha256, "converter": "foreign (wrapped)",
            "size_bytes": source.stat().st_size, "valid": None,
            "inputs": {t.name: t.name for t in graph_inputs}, "outputs": {t.name: t.name for t in graph_outputs},
        }],
        "extra": {"wrap": {"source": source.name, "source_sha256": source_sha256}},
        "provenance": {"edgesdk": __version__, "command_line": command_line or "edgesdk.wrap()"},
    }
    for entry in state_entries:
        if entry["input"] in init_arrays:
            entry["init_file"] = f"init/{_safe_file_name(entry['input'])}.npy"
    check_manifest(manifest, "the wrap declarations")

    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.{os.getpid()}.", suffix=".partial", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    try:
        say(f"copying {source.name}")
        shutil.copyfile(source, staging / artifact_file)
        if sha256_file(staging / artifact_file) != source_sha256:
            raise UsageError(f"{source} changed while it was copied; try again")
        for entry in state_entries:
            if "init_file" in entry:
                (staging / "init").mkdir(exist_ok=True)
                np.save(staging / entry["init_file"], init_arrays[entry["input"]])
        if fmt == "onnx":
            say("writing the copy that carries the contract in metadata_props")
            manifest["extra"]["wrap"]["contract_copy"] = CONTRACT_COPY
            manifest["extra"]["wrap"]["contract_copy_sha256"] = _write_contract_copy(source, staging / CONTRACT_COPY, manifest)
        _write_manifest(staging, manifest)
        say("checking the contract")
        from edgesdk.runtime.model import load

        model = load(staging, backend="onnxruntime" if fmt == "onnx" else "litert")
        checks = run_checks(model, seed=seed) if check else ()
        failed = [c for c in checks if c.passed is False]
        if failed:
            raise UsageError("the declared contract fails its checks (pass check=False / --no-check to write it anyway):\n"
                             + "\n".join(f"  ✗ {c.name}: {c.detail}" for c in failed))
        report = None
        if recording is not None:
            say("comparing every step with the reference recording")
            report = compare_with_reference(model, *recording, atol=atol, rtol=rtol)
            (staging / "samples").mkdir()
            shutil.copyfile(reference[0], staging / "samples" / "inputs.npz")
            shutil.copyfile(reference[1], staging / "samples" / "expected.npz")
            (staging / VALIDATION_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            manifest["artifacts"][0]["valid"] = report["passed"]
            manifest["valid"] = report["passed"]
            manifest["validation"] = {"atol": atol, "rtol": rtol, "report": VALIDATION_NAME}
            manifest["extra"]["wrap"]["samples"] = f"the reference recording {Path(reference[1]).name}"
        else:
            say("recording samples for edgesdk validate")
            _write_samples(model, staging, seed)
            manifest["extra"]["wrap"]["samples"] = (f"inputs seeded N(0, 1) (seed {seed}); expected outputs computed "
                                                    f"by {model.backend} at wrap time")
        manifest["extra"]["wrap"]["checks"] = [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in checks]
        _write_manifest(staging, manifest)
        interrupts.check()
        replace_folder(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if report is not None and not report["passed"]:
        failed = [n for n, o in report["outputs"].items() if not o["passed"]]
        raise ValidationError(f"{', '.join(failed)} differ from the reference recording; the bundle is kept in {output}, "
                              f"marked invalid (details in {output / VALIDATION_NAME})", report)
    return WrapResult(output, manifest, tuple(checks))


def compare_with_reference(model: Any, inputs: Mapping[str, np.ndarray], expected: Mapping[str, np.ndarray],
                           atol: float, rtol: float) -> dict[str, Any]:
    """Stream ``inputs`` (stacked by step) and compare every step of every output with ``expected``."""
    from edgesdk.runtime.model import stream_batch

    wanted = [t.name for t in model.inputs]
    if sorted(inputs) != sorted(wanted):
        raise UsageError(f"the reference inputs hold {', '.join(sorted(inputs)) or 'nothing'}; the stream takes "
                         f"{', '.join(wanted)}")
    unknown = [n for n in expected if n not in {t.name for t in model.outputs}]
    if unknown or not expected:
        raise UsageError(f"the reference outputs hold {', '.join(unknown) or 'nothing'}; the bundle's outputs are "
                         f"{', '.join(t.name for t in model.outputs)}")
    steps = {len(a) for a in inputs.values()} | {len(a) for a in expected.values()}
    if len(steps) != 1 or not next(iter(steps)):
        raise UsageError("the reference inputs and outputs must hold the same number of steps (axis 0), at least one")
    stream = model.stream(batch=stream_batch(model, inputs))
    got = [stream.push({n: inputs[n][i] for n in inputs}) for i in range(next(iter(steps)))]
    outputs: dict[str, Any] = {}
    for name, reference in expected.items():
        per_step, within_all = [], True
        for index, step in enumerate(got):
            if step[name].shape != reference[index].shape:
                outputs[name] = {"passed": False, "error": f"step {index}: shape {step[name].shape} vs the "
                                                           f"reference's {reference[index].shape}"}
                break
            difference, within = elementwise_error(reference[index], step[name], atol, rtol)
            per_step.append(float(difference.max()) if difference.size else 0.0)
            within_all = within_all and bool(within.all())
        else:
            outputs[name] = {"passed": within_all, "max_abs": max(per_step), "atol": atol, "rtol": rtol,
                             "per_step_max_abs": per_step}
    return {"passed": all(o["passed"] for o in outputs.values()), "backend": model.backend,
            "steps": len(got), "outputs": outputs}


def _declarations(states: Sequence[StateDeclaration | str] | Mapping[str, str]) -> list[StateDeclaration]:
    if isinstance(states, Mapping):
        items: list[StateDeclaration] = [StateDeclaration(i, o) for i, o in states.items()]
    else:
        items = [parse_state(s) if isinstance(s, str) else s for s in states]
    seen: set[str] = set()
    for item in items:
        for name in (item.input, item.output):
            if name in seen:
                raise UsageError(f"--state: {name!r} is declared twice")
            seen.add(name)
    return items


def _tensor(tensor: TensorFacts) -> dict[str, Any]:
    return {"name": tensor.name, "shape": list(tensor.shape), "dtype": tensor.dtype}


def _safe_file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _write_contract_copy(source: Path, target: Path, manifest: Mapping[str, Any]) -> str:
    """Save ``source`` with the contract in ``edgesdk.*`` metadata_props; its sha256."""
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("writing the contract into an ONNX copy needs the onnx package; pip install onnx") from None
    from edgesdk.runtime.manifest import ONNX_METADATA_KEYS

    model = onnx.load(str(source))
    kept = [p for p in model.metadata_props if not p.key.startswith("edgesdk.")]
    del model.metadata_props[:]
    for prop in kept:
        model.metadata_props.add(key=prop.key, value=prop.value)
    for key in ONNX_METADATA_KEYS:
        if key in manifest:
            model.metadata_props.add(key=f"edgesdk.{key}", value=json.dumps(manifest[key]))
    onnx.save(model, str(target))
    return sha256_file(target)


# ---------------------------------------------------------------------- checks
def _push_all(stream: Any, steps: Sequence[Mapping[str, np.ndarray]], drop_context: bool = False) -> list[dict[str, np.ndarray]]:
    results = []
    for feeds in steps:
        if drop_context:
            stream.context = {name: None for name in stream.context}
        results.append(stream.push(feeds))
    return results


def _largest_difference(first: Sequence[Mapping[str, np.ndarray]], second: Sequence[Mapping[str, np.ndarray]]) -> float:
    worst = 0.0
    for a, b in zip(first, second):
        for name in a:
            if a[name].shape != b[name].shape:
                return float("inf")
            if a[name].size:
                worst = max(worst, float(np.max(np.abs(a[name].astype(np.float64) - b[name].astype(np.float64)))))
    return worst


def _seeded_steps(model: Any, seed: int, count: int = CHECK_STEPS) -> list[dict[str, np.ndarray]]:
    return [model.example_feeds(seed=seed + step) for step in range(count)]


def run_checks(model: Any, seed: int = 0) -> tuple[WrapCheck, ...]:
    """The wrap-time checks on a loaded wrapped Model; each says what it compared."""
    steps = _seeded_steps(model, seed)
    checks = []
    stream = model.stream()
    initial = {name: value.copy() for name, value in stream.state.items()}
    unchanged = {state.name for state in model.state_spec}
    for feeds in steps:
        stream.push(feeds)
        unchanged -= {name for name in unchanged if not np.array_equal(stream.state[name], initial[name])}
    for state in model.state_spec:
        if state.name in unchanged:
            checks.append(WrapCheck(f"state {state.input} changes", False,
                                    f"{state.output!r} came back equal to the initial {state.input!r} on every one of "
                                    f"{len(steps)} pushes; is it really the next value of {state.input!r}?"))
        else:
            checks.append(WrapCheck(f"state {state.input} changes", True, f"{state.output!r} differs from the initial "
                                                                          f"value within {len(steps)} pushes"))
    first = _push_all(model.stream(), steps)
    stream.reset()
    again = _push_all(stream, steps)
    worst = _largest_difference(first, again)
    checks.append(WrapCheck("reset() is deterministic", worst <= REPEAT_ATOL,
                            f"{len(steps)} pushes after reset() vs a new stream: max abs difference {worst:.1e}"))
    if model.contract.context:
        stream.reset()
        without = _push_all(stream, steps, drop_context=True)
        difference = _largest_difference(first, without)
        names = ", ".join(c.input for c in model.contract.context)
        checks.append(WrapCheck(f"context of {names} matters", difference > REPEAT_ATOL,
                                f"pushes with the carried context vs with zeros in its place: max abs difference "
                                f"{difference:.1e}" + ("" if difference > REPEAT_ATOL else
                                                       "; the declared context changes nothing")))
    checks.append(_doubled_chunk_check(model, steps))
    return tuple(checks)


def _doubled_chunk_check(model: Any, steps: Sequence[Mapping[str, np.ndarray]]) -> WrapCheck:
    """Two pushes of a chunk vs one push of both, where the context axis is free in the model."""
    name = "a chunk pushed in two halves agrees with it pushed whole"
    contract = model.contract
    if len(contract.context) != 1 or contract.chunks or contract.fixed_sizes or len(model.inputs) != 1:
        return WrapCheck(name, None, "not applicable: needs one input with a carried context on a free axis, "
                                     "and no declared chunk size")
    axis = contract.context[0].axis
    input_name = contract.context[0].input
    halves = [dict(steps[0]), dict(steps[1])]
    whole = {input_name: np.concatenate([halves[0][input_name], halves[1][input_name]], axis=axis)}
    split = model.stream()
    parts = [split.push(h) for h in halves]
    joined = model.stream()
    single = joined.push(whole)
    worst = 0.0
    for key, value in single.items():
        a, b = parts[0][key], parts[1][key]
        candidates = [k for k in range(value.ndim) if a.ndim == value.ndim and a.shape[k] + b.shape[k] == value.shape[k]]
        if not candidates:
            return WrapCheck(name, None, f"not applicable: output {key!r} does not grow along an axis with the input")
        together = np.concatenate([a, b], axis=candidates[0])
        worst = max(worst, float(np.max(np.abs(together - value))) if value.size else 0.0)
    for key in split.state:
        worst = max(worst, float(np.max(np.abs(split.state[key] - joined.state[key]))))
    tolerance = 1e-4
    return WrapCheck(name, worst <= tolerance, f"max abs difference {worst:.1e} (tolerance {tolerance:.0e}) over "
                                               f"outputs and states" + ("" if worst <= tolerance else
                                                                        "; is the context size right?"))


def _write_samples(model: Any, folder: Path, seed: int) -> None:
    """samples/inputs.npz and samples/expected.npz: seeded pushes and this backend's outputs, stacked by step."""
    steps = _seeded_steps(model, seed)
    outputs = _push_all(model.stream(), steps)
    (folder / "samples").mkdir(exist_ok=True)
    np.savez(folder / "samples" / "inputs.npz", **{n: np.stack([s[n] for s in steps]) for n in steps[0]})
    np.savez(folder / "samples" / "expected.npz", **{n: np.stack([o[n] for o in outputs]) for n in outputs[0]})


# ---------------------------------------------------------------------- suggestions
_PAIR_RULES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("OUT is IN + '_out' / '_new' / '_next'", lambda i, o: o in (f"{i}_out", f"{i}_new", f"{i}_next", f"{i}out")),
    ("IN ends in 'in' and OUT in 'out'", lambda i, o: bool(re.fullmatch(r"(.*?)[_.]?in", i)) and re.sub(r"in$", "out", i) == o),
    ("'h0'/'hn'-style: IN ends in 0, OUT in n", lambda i, o: i.endswith("0") and o == i[:-1] + "n"),
    ("'past_*'/'present_*'", lambda i, o: i.startswith("past") and o == "present" + i[len("past"):]),
    ("OUT is IN followed by a number", lambda i, o: bool(re.fullmatch(re.escape(i) + r"[_.]?\d+", o))),
    ("OUT is 'next_' + IN / 'new_' + IN", lambda i, o: o in (f"next_{i}", f"new_{i}")),
)


def suggest(source: str | Path) -> list[Suggestion]:
    """State pairings that names and shapes suggest (same dtype, same rank, fixed dims equal)."""
    _, graph_inputs, graph_outputs = describe_file(Path(source))

    def fits(a: TensorFacts, b: TensorFacts) -> bool:
        return a.dtype == b.dtype and len(a.shape) == len(b.shape) and all(
            not (isinstance(x, int) and isinstance(y, int)) or x == y for x, y in zip(a.shape, b.shape))

    suggestions: list[Suggestion] = []
    taken_out: set[str] = set()
    for tensor in graph_inputs:
        for reason, rule in _PAIR_RULES:
            match = next((o for o in graph_outputs if o.name not in taken_out and rule(tensor.name, o.name)
                          and fits(tensor, o)), None)
            if match is not None:
                suggestions.append(Suggestion(tensor.name, match.name, f"names ({reason}), same shape and dtype"))
                taken_out.add(match.name)
                break
    paired_in = {s.input for s in suggestions}
    for tensor in graph_inputs:
        if tensor.name in paired_in or not tensor.shape or not all(isinstance(d, int) for d in tensor.shape[1:]):
            continue
        same = [o for o in graph_outputs if o.name not in taken_out and o.shape == tensor.shape and o.dtype == tensor.dtype]
        twins = [i for i in graph_inputs if i.shape == tensor.shape and i.dtype == tensor.dtype]
        if len(same) == 1 and len(twins) == 1:
            suggestions.append(Suggestion(tensor.name, same[0].name, "the only output with its exact shape and dtype"))
            taken_out.add(same[0].name)
    return suggestions


def suggested_command(source: str | Path, suggestions: Sequence[Suggestion], output: str | Path | None = None) -> str:
    """The ``edgesdk wrap`` command line that would apply ``suggestions``."""
    import shlex

    parts = ["edgesdk", "wrap", shlex.quote(str(source)), "-o", shlex.quote(str(output or Path(source).stem + "_bundle"))]
    for suggestion in suggestions:
        parts += ["--state", shlex.quote(f"{suggestion.input}={suggestion.output}")]
    return " ".join(parts)
