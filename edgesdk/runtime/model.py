"""The runtime's one entry point: ``load(path)`` -> Model; ``Model.run`` and ``Model.stream``.

Numpy dicts in, numpy dicts out, logical names throughout (the manifest maps them to each
backend's own tensor names). A Model can be shared between streams and threads: per-stream
state lives in the Stream object.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgesdk.errors import BackendUnavailable, BundleError, BundleWarning, UsageError
from edgesdk.runtime.backends.base import (
    BACKEND_OF_FORMAT,
    BACKENDS,
    FORMAT_OF_BACKEND,
    Backend,
    available_backends,
    open_backend,
)
from edgesdk.runtime.contract import StreamContract, initial_states
from edgesdk.runtime.manifest import (MANIFEST_NAME, MISSING_KEY, bundle_notes, inside_bundle, manifest_from_onnx_metadata,
                                      read_manifest, read_npz, weights_warning)
from edgesdk.runtime.precision import IoQuantization, select_artifacts
from edgesdk.runtime.sections import StreamingFacts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorInfo:
    """A logical input or output: symbolic dims are strings ("batch", "frames")."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str


@dataclass(frozen=True)
class StateInfo:
    """A state pair: fed as ``input``, returned as ``output``, carried between steps."""

    name: str
    input: str
    output: str
    shape: tuple[int, ...]
    dtype: str
    batch_axis: int
    init: float
    # A whole initial value (from the bundle's init_file), batch axis of size 1 or of the stream's batch.
    init_value: np.ndarray | None = field(default=None, compare=False, repr=False)

    def initial(self, batch: int = 1) -> np.ndarray:
        if self.init_value is not None:
            return initial_states(self.init_value, self.batch_axis, batch, self.name)
        shape = list(self.shape)
        shape[self.batch_axis] = batch
        return np.full(shape, self.init, dtype=self.dtype)


def _tensor_infos(entries: Sequence[Mapping[str, Any]]) -> list[TensorInfo]:
    return [TensorInfo(e["name"], tuple(e["shape"]), e["dtype"]) for e in entries]


def _state_infos(entries: Sequence[Mapping[str, Any]]) -> list[StateInfo]:
    return [
        StateInfo(e["name"], e["input"], e["output"], tuple(e["shape"]), e["dtype"], int(e["batch_axis"]), float(e["init"]))
        for e in entries
    ]


class Model:
    """A loaded artifact with the manifest that describes it.

    Attributes:
        inputs, outputs: the non-state tensors (TensorInfo).
        state_spec: the state pairs (StateInfo); empty for a stateless model.
        backend: "onnxruntime" or "litert", the one that runs.
        providers: what executes inside the backend (providers or delegate), as reported by it.
        backend_choice: one sentence on why this backend was chosen.
        manifest: the bundle manifest (dict).
    """

    def __init__(self, manifest: dict[str, Any], engine: Backend, artifact: Mapping[str, Any], path: Path, backend_choice: str):
        self.manifest = manifest
        self.path = path
        self._engine = engine
        self._input_map: dict[str, str] = dict(artifact["inputs"])
        self._output_map: dict[str, str] = dict(artifact["outputs"])
        self.artifact = dict(artifact)
        self._io_quantization = IoQuantization.from_manifest(artifact.get("io_quantization"))
        self.inputs = _tensor_infos(manifest["inputs"])
        self.outputs = _tensor_infos(manifest["outputs"])
        self.state_spec = _state_infos(manifest["state"])
        init_values = StreamContract.init_values(manifest, path)
        if init_values:
            self.state_spec = [dataclasses.replace(s, init_value=init_values[s.name]) if s.name in init_values else s
                               for s in self.state_spec]
        self.backend = engine.name
        # State kept inside the engine (TFLite resource variables): each stream gets an engine of its own.
        self.internal_state = list(getattr(engine, "internal_state", []))
        self.providers = list(engine.providers)
        self.provider_fallback = list(getattr(engine, "fallback", []))
        self.backend_choice = backend_choice
        self._output_names = [t.name for t in self.outputs] + [s.output for s in self.state_spec]
        self._backend_output_names = [self._output_map[n] for n in self._output_names]
        self._input_infos = {t.name: t for t in self.inputs}
        self._state_inputs = {s.input for s in self.state_spec}
        self._expected = dict(self._input_infos)
        for state in self.state_spec:
            self._expected[state.input] = TensorInfo(state.input, self._state_shape(state), state.dtype)
        # Context carried into the next chunk, constant inputs, chunk sizes (runtime/contract.py).
        contract = StreamContract.from_manifest(manifest)
        self.contract = contract.with_fixed_sizes({c.input: self.static_shape(c.input) for c in contract.context})
        self._constant_feeds = self.contract.constant_feeds()
        for constant in self.contract.constants:
            self._expected[constant.name] = TensorInfo(constant.name, constant.shape, constant.dtype)
        # The step input that ends a stream (streaming.end_input): fed by the stream, not the user.
        self.streaming = StreamingFacts.from_manifest(manifest["streaming"], str(path)) if "streaming" in manifest else None
        self.end_input = self._input_infos.pop(self.streaming.end_input, None) if self.streaming and self.streaming.end_input else None
        if self.end_input is not None:
            self.inputs = [t for t in self.inputs if t.name != self.end_input.name]

    # ------------------------------------------------------------------ facts
    @property
    def valid(self) -> bool | None:
        """Whether this artifact passed validation at export (None: the file does not say)."""
        value = self.artifact.get("valid", self.manifest.get("valid"))
        return value if isinstance(value, bool) else None

    @property
    def weights(self) -> str | None:
        """Where the weights came from: "checkpoint", "seeded-random", "random" (None: not recorded)."""
        model = self.manifest.get("model")
        return model.get("weights") if isinstance(model, Mapping) else None

    @property
    def weights_warning(self) -> str | None:
        """One sentence when the bundle was exported without a checkpoint, else None."""
        return weights_warning(self.manifest, self.path)

    @property
    def missing_artifacts(self) -> list[str]:
        """Files the manifest lists that the bundle folder does not hold (loaded without them)."""
        return list(self.manifest.get(MISSING_KEY) or [])

    @property
    def notes(self) -> list[str]:
        """The lines a report gives first: random weights, missing artifacts."""
        return bundle_notes(self.manifest, self.path)

    @property
    def artifact_label(self) -> str:
        """What runs, e.g. ``model.int8-dynamic.tflite (tflite, int8-dynamic) on litert``."""
        return f"{self.artifact.get('file')} ({self.format}, {self.precision}) on {self.backend}"

    @property
    def is_streaming(self) -> bool:
        return bool(self.state_spec) or bool(self.contract.context) or bool(self.internal_state)

    @property
    def format(self) -> str:
        return self.artifact["format"]

    @property
    def precision(self) -> str:
        """float32, float16, int8-dynamic, int8-weight-only or int8-static."""
        return self.artifact.get("precision", "float32")

    def _state_shape(self, state: StateInfo) -> tuple[int | str, ...]:
        shape: list[int | str] = list(state.shape)
        backend_shape = self._engine.input_shapes.get(self._input_map[state.input], [])
        # The batch axis is free where the artifact leaves it symbolic.
        if len(backend_shape) == len(shape) and isinstance(backend_shape[state.batch_axis], str):
            shape[state.batch_axis] = "batch"
        return tuple(shape)

    def static_shape(self, name: str) -> list[int | str]:
        """The artifact's own shape for input or state ``name`` (ints where fixed, str where symbolic)."""
        return self._engine.input_shapes.get(self._input_map[name], [])

    def example_feeds(self, seed: int = 0, batch: int | None = None) -> dict[str, np.ndarray]:
        """Seeded N(0, 1) feeds for the non-state inputs, at the artifact's shapes.

        Symbolic dims take the size of the bundle's first sample when there is one, else the
        ``batch`` (for "batch") or 1.
        """
        rng = np.random.default_rng(seed)
        sample_sizes = self._sample_sizes()
        feeds = {}
        for info in self.inputs:
            static = self.static_shape(info.name)
            shape = []
            for axis, dim in enumerate(info.shape):
                backend_dim = static[axis] if axis < len(static) else dim
                if isinstance(backend_dim, int) and backend_dim > 0:
                    shape.append(backend_dim)
                elif isinstance(dim, str) and dim == "batch" and batch is not None:
                    shape.append(batch)
                else:
                    shape.append(sample_sizes.get((info.name, axis), 1))
            if self.is_streaming:
                shape = self.contract.push_shape(info.name, shape, sample_sizes)
            feeds[info.name] = rng.standard_normal(shape).astype(info.dtype)
        return feeds

    def _sample_sizes(self) -> dict[tuple[str, int], int]:
        if not self.path.is_dir():
            return {}
        path = inside_bundle(self.path, "samples/inputs.npz", f"{self.path}: samples")
        if not path.exists():
            return {}
        samples = read_npz(path)
        sizes = {}
        for info in self.inputs:
            if info.name in samples:
                array = samples[info.name]
                if self.is_streaming and array.ndim:
                    array = array[0]  # stream samples are stacked by step
                for axis, size in enumerate(array.shape):
                    sizes[(info.name, axis)] = int(size)
        return sizes

    # ------------------------------------------------------------------ running
    def _check(self, feeds: Mapping[str, np.ndarray], expected: Mapping[str, TensorInfo],
               symbols: dict[str, int] | None = None) -> None:
        unknown = [n for n in feeds if n not in expected]
        missing = [n for n in expected if n not in feeds]
        if unknown or missing:
            parts = []
            if unknown:
                parts.append(f"unknown feed(s) {', '.join(map(repr, unknown))}")
            if missing:
                parts.append(f"missing feed(s) {', '.join(map(repr, missing))}")
            raise UsageError("; ".join(parts) + f"; the model takes: {', '.join(expected)}")
        symbols = dict(symbols or {})
        for name, info in expected.items():
            value = feeds[name]
            if not isinstance(value, np.ndarray):
                raise UsageError(f"feed {name!r} must be a numpy array, not {type(value).__name__}")
            if value.dtype != np.dtype(info.dtype):
                raise UsageError(
                    f"feed {name!r} is {value.dtype}, the model takes {info.dtype} "
                    f"(convert with .astype(np.{info.dtype}))"
                )
            static = self.static_shape(name)
            if value.ndim != len(info.shape):
                raise UsageError(f"feed {name!r} has shape {value.shape}; the model takes {_shape_text(info.shape)}")
            for axis, (size, dim) in enumerate(zip(value.shape, info.shape)):
                backend_dim = static[axis] if axis < len(static) else dim
                fixed = backend_dim if isinstance(backend_dim, int) and backend_dim > 0 else None
                if isinstance(dim, int) and fixed is None:
                    fixed = dim
                if fixed is not None and size != fixed:
                    expected_shape = [s if isinstance(s, int) and s > 0 else d for s, d in zip(static, info.shape)] if static else list(info.shape)
                    note = " (this TFLite file has static shapes)" if self.format == "tflite" and isinstance(dim, str) else ""
                    raise UsageError(
                        f"feed {name!r} has shape {value.shape}; the model takes {_shape_text(expected_shape)}{note}"
                    )
                if fixed is None and isinstance(dim, str):
                    if symbols.setdefault(dim, size) != size:
                        raise UsageError(f"feed {name!r}: axis {axis} ({dim}) is {size} but another feed set {dim} = {symbols[dim]}")
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise UsageError(f"feed {name!r} holds NaN or infinite values")

    def _run_backend(self, feeds: Mapping[str, np.ndarray], engine: Backend | None = None) -> dict[str, np.ndarray]:
        if self._io_quantization is not None:  # a full-integer file: float in, float out
            feeds = self._io_quantization.quantize_feeds(feeds)
        backend_feeds = {self._input_map[n]: np.ascontiguousarray(v) for n, v in feeds.items()}
        try:
            results = (engine or self._engine).run(backend_feeds, self._backend_output_names)
        except Exception as error:  # backends raise their own unrelated types
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"{self.backend} rejected the feeds: {first_line}") from None
        if self._io_quantization is not None:
            return self._io_quantization.dequantize_results(dict(zip(self._output_names, results)))
        return dict(zip(self._output_names, results))

    def named_feeds(self, feeds: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """``feeds`` as a dict: a lone array is the model's one input (UsageError where it has several)."""
        if isinstance(feeds, Mapping):
            return dict(feeds)
        if not isinstance(feeds, np.ndarray):
            raise UsageError(f"feeds must be a dict of numpy arrays (or one numpy array), not {type(feeds).__name__}")
        constants = {c.name for c in self.contract.constants}
        names = [t.name for t in self.inputs if t.name not in constants]
        if len(names) != 1:
            raise UsageError(f"one array given, but the model takes {len(names)} inputs ({', '.join(names)}); "
                             "pass a dict name -> array")
        return {names[0]: feeds}

    def run(self, feeds: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run once on ``feeds`` (a dict name -> array, or one array for a one-input model).
        For a streaming model, states may be omitted (they start at their init)
        and the new states are returned under their output names. Constant inputs are fed by
        the bundle; an input with a declared context takes its whole window here (a stream
        prepends the carried entries itself)."""
        if self.internal_state:
            raise UsageError(
                f"{self.path} keeps its state inside the interpreter ({', '.join(self.internal_state)}), so one "
                "call is not independent of the last; use stream(), whose reset() starts that state again")
        feeds = self.named_feeds(feeds)
        self.contract.refuse_constants(feeds)
        feeds.update(self._constant_feeds)
        for state in self.state_spec:
            if state.input not in feeds:
                batch = _batch_of(feeds, self.inputs)
                feeds[state.input] = state.initial(batch)
        if self.end_input is not None and self.end_input.name not in feeds:
            feeds[self.end_input.name] = self._end_feed(_batch_of(feeds, self.inputs), 0)
        self._check(feeds, self._expected)
        return self._run_backend(feeds)

    def _end_feed(self, batch: int, first: int) -> np.ndarray:
        """The end input for one step: 0 while the input lasts (``first`` = 0), else the count
        of frames past the end, ``first``, ``first`` + 1, ... along the step's frames."""
        info = self.end_input
        shape = [batch if axis == 0 else (d if isinstance(d, int) else 1) for axis, d in enumerate(info.shape)]
        if first == 0:
            return np.zeros(shape, dtype=info.dtype)
        counts = first + np.arange(shape[-1], dtype=info.dtype)
        return np.broadcast_to(counts, shape).astype(info.dtype)

    def refusal(self, feeds: Mapping[str, np.ndarray]) -> str | None:
        """Why this artifact cannot take ``feeds`` (one step's, for a stream), or None if it can."""
        try:
            if self.is_streaming:
                if self.contract:
                    self.contract.refuse_constants(feeds)
                    self.contract.check_chunks(feeds)
                    feeds = self.contract.prepend_context(feeds, {})[0]
                self._check(feeds, self._input_infos)
            else:
                self._check(feeds, self._expected)
        except UsageError as error:
            return str(error)
        return None

    def stream(self, batch: int = 1) -> "Stream":
        """A new stream with zeroed state (the manifest's init), ``batch`` streams stacked."""
        if not self.is_streaming:
            raise UsageError(f"{self.path} is not a streaming bundle (it has no state); use run()")
        if batch < 1:
            raise UsageError("batch must be at least 1")
        for state in self.state_spec:
            size = self.static_shape(state.input)
            if size and isinstance(size[state.batch_axis], int) and size[state.batch_axis] > 0 and size[state.batch_axis] != batch:
                raise UsageError(
                    f"this {self.format} file was exported for batch {size[state.batch_axis]}; "
                    f"a stream of batch {batch} needs an artifact with a dynamic batch axis"
                )
        return Stream(self, batch)

    def __repr__(self) -> str:
        return f"Model({str(self.path)!r}, backend={self.backend!r}, providers={self.providers})"


class Stream:
    """One stream of steps through a streaming Model; the state lives here."""

    def __init__(self, model: Model, batch: int):
        self.model = model
        self.batch = batch
        self.steps = 0
        self.state: dict[str, np.ndarray] = {}
        self.context: dict[str, np.ndarray | None] = {}
        self._engine: Backend | None = None  # this stream's own engine, where the state is inside it
        self.reset()

    def reset(self) -> None:
        """Back to the initial state, as if no step had been pushed.

        State kept inside the interpreter (TFLite resource variables) starts again in a new
        interpreter of the same file: LiteRT's ``reset_all_variables`` resets variable tensors
        only, not resource variables."""
        if self.model.internal_state:
            self._engine = self.model._engine.fresh()
        self.state = {s.name: s.initial(self.batch) for s in self.model.state_spec}
        self.context = {c.input: None for c in self.model.contract.context}  # zeros at the next push
        self.steps = 0

    def end(self) -> dict[str, np.ndarray]:
        """End the stream: the outputs still owed for the look-ahead frames, then ``reset()``.

        A step that answers ``lookahead_frames`` behind its input owes that many answers when
        the input ends. With the bundle's end input (``streaming.end_input``) the stream pushes
        whole steps past the end, each convolution padding its own input with zeros as the
        full-sequence model does, and returns each output's first ``lookahead_frames`` entries
        on its frame axis (axis 1): exactly the full-sequence model's last frames. A stream
        with no look-ahead (any contract stream without a ``streaming`` section) owes nothing:
        ``{}``. Either way the stream is then reset, ready for the next input.
        """
        model = self.model
        owed = model.streaming.lookahead_frames if model.streaming else 0
        if owed == 0 or self.steps == 0:  # no look-ahead, or nothing pushed: nothing is owed
            self.reset()
            return {}
        if model.end_input is None:
            raise UsageError(
                f"{model.path}: the step answers {owed} frames behind its input but has no end input "
                "(streaming.end_input), so the last frames cannot be computed; re-export the bundle")
        chunk = model.streaming.frames_per_step
        pieces: list[dict[str, np.ndarray]] = []
        for first in range(1, owed + 1, chunk):
            feeds = {t.name: np.zeros([self.batch if a == 0 else d for a, d in enumerate(_push_shape(model, t))],
                                      dtype=t.dtype) for t in model.inputs}
            pieces.append(self._step(feeds, model._end_feed(self.batch, first)))
        self.reset()
        return {name: np.concatenate([p[name] for p in pieces], axis=1)[:, :owed] for name in pieces[0]}

    def push(self, feeds: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run one step on ``feeds`` (the non-state inputs: a dict name -> array, or one array
        where the step has one input); returns the non-state outputs by name."""
        return self._step(self.model.named_feeds(feeds), None)

    def _step(self, feeds: Mapping[str, np.ndarray], end_feed: np.ndarray | None) -> dict[str, np.ndarray]:
        model = self.model
        if model.end_input is not None and model.end_input.name in feeds:
            # A recorded step sequence (a bundle's samples) may carry the end input: use it as given.
            feeds = dict(feeds)
            end_feed = feeds.pop(model.end_input.name)
            model._check({model.end_input.name: end_feed}, {model.end_input.name: model.end_input},
                         symbols={"batch": self.batch})
        carried = [name for name in feeds if name in model._state_inputs]
        if carried:
            raise UsageError(f"{', '.join(map(repr, carried))}: state carried by the stream; do not feed it")
        contract = model.contract
        if contract:
            contract.refuse_constants(feeds)
            contract.check_chunks(feeds)
            feeds, next_context = contract.prepend_context(feeds, self.context)
        # Only the caller's feeds are checked: the state comes from the artifact's own outputs.
        model._check(feeds, model._input_infos, symbols={"batch": self.batch})
        full = dict(feeds)
        full.update(model._constant_feeds)
        if model.end_input is not None:
            full[model.end_input.name] = end_feed if end_feed is not None else model._end_feed(self.batch, 0)
        for state in model.state_spec:
            full[state.input] = self.state[state.name]
        results = model._run_backend(full, self._engine)
        for state in model.state_spec:
            self.state[state.name] = results.pop(state.output)
        if contract.context:
            self.context.update(next_context)
        self.steps += 1
        return results


def _push_shape(model: Model, info: TensorInfo) -> list[int]:
    """The shape of one push of input ``info`` (batch axis left as is): fixed dims from the artifact."""
    static = model.static_shape(info.name)
    return [s if isinstance(s, int) and s > 0 else (d if isinstance(d, int) else 1)
            for s, d in zip(static or info.shape, info.shape)]


def stream_batch(model: Model, sequence: Mapping[str, np.ndarray]) -> int:
    """The batch of a step sequence (inputs stacked by step on axis 0)."""
    first_step = {name: array[0] for name, array in sequence.items()}
    if not model.state_spec:
        return _batch_of(first_step, model.inputs)
    state = model.state_spec[0]
    return _batch_of(first_step, model.inputs, default=int(state.shape[state.batch_axis]))


def _batch_of(feeds: Mapping[str, np.ndarray], inputs: Sequence[TensorInfo], default: int = 1) -> int:
    """The size of the first input whose axis 0 is the symbolic batch, else ``default``."""
    for info in inputs:
        if info.name in feeds and info.shape and info.shape[0] == "batch":
            return int(np.shape(feeds[info.name])[0])
    return default


def _shape_text(shape: Sequence[int | str]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ---------------------------------------------------------------------- loading
def _choose_backend(manifest: Mapping[str, Any], backend: str, source: Path, providers_asked: bool = False) -> list[str]:
    """Candidate backends, in order, for the artifacts the manifest lists (and the folder holds).

    Execution providers (and their options) are onnxruntime's: asking for them rules LiteRT out
    of ``auto``, rather than letting a faster LiteRT file quietly ignore the request.
    """
    formats = [a["format"] for a in manifest["artifacts"]]
    missing = manifest.get(MISSING_KEY) or []
    installed = available_backends()
    if backend != "auto":
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r}; one of: auto, {', '.join(BACKENDS)}")
        if FORMAT_OF_BACKEND[backend] not in formats:
            lacking = f" ({', '.join(missing)} is not in the folder)" if missing else ""
            raise BackendUnavailable(f"{source} has no {FORMAT_OF_BACKEND[backend]} artifact for {backend}{lacking}")
        if backend not in installed:
            raise BackendUnavailable(f"{backend} is not installed here")
        return [backend]
    candidates = [BACKEND_OF_FORMAT[f] for f in formats if BACKEND_OF_FORMAT.get(f) in installed]
    if providers_asked:
        if "onnxruntime" not in candidates:
            raise BackendUnavailable(f"execution providers were asked for, which are onnxruntime's, but {source} "
                                     f"has no ONNX artifact that onnxruntime here can run (artifacts: {', '.join(formats)})")
        candidates = ["onnxruntime"]
    if not candidates:
        raise BackendUnavailable(
            f"no installed backend can run {source} (artifacts: {', '.join(formats)}; "
            f"installed: {', '.join(installed) or 'none'})"
        )
    return candidates


def _time_one_call(model: Model, repeats: int = 5) -> float:
    feeds = model.example_feeds(seed=0)
    runner = model.stream().push if model.is_streaming else model.run
    runner(feeds)  # warm-up: first calls allocate
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner(feeds)
        timings.append(time.perf_counter() - start)
    return float(np.median(timings))


def load(
    path: str | Path,
    backend: str = "auto",
    providers: Sequence[str] | None = None,
    strict_providers: bool = False,
    num_threads: int | None = None,
    verify_hashes: bool = True,
    provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    feeds: Mapping[str, np.ndarray] | None = None,
    precision: str | None = None,
) -> Model:
    """Load a bundle folder, or a lone .onnx / .tflite file.

    Args:
        backend: "onnxruntime", "litert", or "auto". Auto measures each installed backend for
            a few calls and keeps the fastest (the faster one differs by device); the reason is
            in ``Model.backend_choice``.
        providers: onnxruntime execution providers in order of preference (e.g. from the
            device profile). Providers that are not available fall back with a warning, or
            raise BackendUnavailable with ``strict_providers``.
        num_threads: intra-op threads (None: the backend's default).
        verify_hashes: check each artifact's sha256 against the manifest.
        provider_options: onnxruntime provider name -> its options, e.g.
            ``{"TensorrtExecutionProvider": {"trt_engine_cache_enable": True}}``.
        feeds: inputs the caller is about to run (one step's, for a streaming bundle). With
            auto, only artifacts that accept their shapes and dtypes are candidates (a
            static-shape TFLite file cannot take what a dynamic ONNX file can); the choice says so.
        precision: of a bundle holding several: "fp32" (or "float32"), "fp16", "int8-dynamic",
            "int8-weight-only" or "int8-static". None: float32 where the bundle has it.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist")
    if path.is_dir():
        manifest = read_manifest(path, verify_hashes=verify_hashes)
        bundle_dir = path
    elif path.suffix == ".onnx":
        manifest = lone_onnx_manifest(path)
        bundle_dir = path.parent
    elif path.suffix == ".tflite":
        manifest = lone_tflite_manifest(path)
        bundle_dir = path.parent
    else:
        raise UsageError(f"{path} is neither a bundle folder (with {MANIFEST_NAME}) nor a .onnx or .tflite file")
    manifest = select_artifacts(manifest, precision, path)

    providers_asked = bool(providers) or bool(provider_options)
    candidates = _choose_backend(manifest, backend, path, providers_asked)
    artifacts = {a["format"]: a for a in manifest["artifacts"]}
    models = []
    for name in candidates:
        artifact = artifacts[FORMAT_OF_BACKEND[name]]
        file = inside_bundle(bundle_dir, artifact["file"], f"{path}: artifact") if path.is_dir() else path
        engine = open_backend(name, file, providers=providers, strict_providers=strict_providers,
                              num_threads=num_threads, provider_options=provider_options)
        models.append(Model(manifest, engine, artifact, bundle_dir if path.is_dir() else path, ""))
    refused = ""
    if feeds is not None and backend == "auto":
        reasons = {m.backend: m.refusal(feeds) for m in models}
        if all(reasons.values()):
            raise UsageError(next(iter(reasons.values())))
        refused = "; ".join(f"{name} refused these feeds ({why})" for name, why in reasons.items() if why)
        models = [m for m in models if not reasons[m.backend]]
    if len(models) == 1:
        chosen = models[0]
        if refused:
            chosen.backend_choice = f"{chosen.backend}: the only artifact that takes these feeds ({refused})"
            return _warn_if_invalid(chosen)
        if backend != "auto":
            chosen.backend_choice = f"{chosen.backend}: asked for"
        elif providers_asked:
            chosen.backend_choice = f"{chosen.backend}: execution providers were asked for (onnxruntime's)"
        else:
            chosen.backend_choice = f"{chosen.backend}: the only one of this bundle's artifacts a backend installed here can run"
        return _warn_if_invalid(chosen)
    timings = {m.backend: _time_one_call(m) for m in models}
    chosen = min(models, key=lambda m: timings[m.backend])
    chosen.backend_choice = f"{chosen.backend}: fastest here (" + ", ".join(
        f"{name} {seconds * 1e6:.0f} µs" for name, seconds in timings.items()
    ) + " per call, median of 5)"
    log.info("backend auto: %s", chosen.backend_choice)
    return _warn_if_invalid(chosen)


def _warn_if_invalid(model: Model) -> Model:
    """Say what the caller should know before trusting the outputs (a warning each, on stderr)."""
    for note in model.notes:
        warnings.warn(note, BundleWarning, stacklevel=3)
    if model.valid is False:
        log.warning("%s: the %s artifact %s FAILED validation at export; its outputs may be wrong "
                    "(see validation.json)", model.path, model.format, model.artifact.get("file"))
    return model


def lone_onnx_manifest(path: Path) -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailable("onnxruntime is not installed; pip install onnxruntime") from None
    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own unrelated types
        raise BundleError(f"{path} is not a loadable ONNX file: {error}") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    if any(key.startswith("edgesdk.") for key in metadata):
        return manifest_from_onnx_metadata(metadata, path)
    # A foreign ONNX file: describe it from its own graph, stateless.
    from edgesdk.runtime.backends.onnxruntime import ONNX_TYPES, graph_dims

    def describe(values: Sequence[Any]) -> list[dict[str, Any]]:
        return [{"name": v.name, "shape": graph_dims(v.name, v.shape), "dtype": ONNX_TYPES.get(v.type, v.type)}
                for v in values]

    return _foreign_manifest(path, "onnx", describe(session.get_inputs()), describe(session.get_outputs()))


def lone_tflite_manifest(path: Path) -> dict[str, Any]:
    from edgesdk.runtime.backends.litert import LiteRTBackend

    engine = LiteRTBackend(path)
    inputs = [{"name": n, "shape": s, "dtype": engine.input_dtypes[n]} for n, s in engine.input_shapes.items()]
    if engine.runner is not None:
        details = engine.runner.get_output_details()
        outputs = [{"name": n, "shape": [int(x) for x in details[n]["shape"]], "dtype": np.dtype(details[n]["dtype"]).name} for n in engine.output_names]
    else:
        outputs = [{"name": n, "shape": [], "dtype": "float32"} for n in engine.output_names]
    return _foreign_manifest(path, "tflite", inputs, outputs)


def _foreign_manifest(path: Path, fmt: str, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A stateless manifest for a file edgesdk did not write, named by the file's own tensors."""
    from edgesdk.runtime.manifest import SCHEMA_VERSION, sha256_file

    return {
        "schema_version": SCHEMA_VERSION,
        "model": {"family": "foreign", "source": path.name},
        "inputs": inputs,
        "outputs": outputs,
        "state": [],
        "artifacts": [
            {
                "file": path.name,
                "format": fmt,
                "sha256": sha256_file(path),
                "inputs": {t["name"]: t["name"] for t in inputs},
                "outputs": {t["name"]: t["name"] for t in outputs},
            }
        ],
    }
