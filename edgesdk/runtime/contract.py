"""The stream contract beyond state pairs: carried input context, constant inputs, chunk sizes.

A bundle's ``state`` pairs say which outputs become which inputs at the next step. Three
optional manifest sections complete the contract for models edgesdk did not write:

``context``   ``[{"input", "axis", "size"}]``: the model wants, on ``axis`` of ``input``, the
              last ``size`` entries of what was fed before, followed by the new ones. The stream
              keeps them and prepends them (zeros at the start and after ``reset()``), so the
              user pushes only new entries.
``constants`` ``[{"name", "shape", "dtype", "value"}]``: an input fed ``value`` (filled to
              ``shape``) on every call; it is not one of the user's feeds.
``chunks``    ``[{"input", "axis", "size"}]``: a push must carry exactly ``size`` new entries
              on ``axis`` of ``input`` (before any context is prepended).

Torch-free; manifest.py calls ``check_contract`` so every field is checked in one place.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgesdk.errors import UsageError

CONTRACT_KEYS = ("context", "constants", "chunks")


@dataclass(frozen=True)
class ContextSpec:
    """Carry the last ``size`` entries of ``input`` along ``axis`` into the next push."""

    input: str
    axis: int
    size: int

    def to_manifest(self) -> dict[str, Any]:
        return {"input": self.input, "axis": self.axis, "size": self.size}


@dataclass(frozen=True)
class ConstantSpec:
    """An input fed the same value every call, hidden from the user's feeds."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    value: float

    def array(self) -> np.ndarray:
        return np.full(self.shape, self.value, dtype=self.dtype)

    def to_manifest(self) -> dict[str, Any]:
        value: Any = int(self.value) if float(self.value).is_integer() and np.dtype(self.dtype).kind in "iub" else self.value
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype, "value": value}


@dataclass(frozen=True)
class ChunkSpec:
    """A push must carry exactly ``size`` new entries on ``axis`` of ``input``."""

    input: str
    axis: int
    size: int

    def to_manifest(self) -> dict[str, Any]:
        return {"input": self.input, "axis": self.axis, "size": self.size}


@dataclass(frozen=True)
class StreamContract:
    """The context, constants and chunk sizes of one bundle (all empty for an edgesdk export)."""

    context: tuple[ContextSpec, ...] = ()
    constants: tuple[ConstantSpec, ...] = ()
    chunks: tuple[ChunkSpec, ...] = ()
    # The artifact's own fixed size on each context axis, where it has one (filled by the Model).
    fixed_sizes: Mapping[str, int] = field(default_factory=dict, compare=False)

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any]) -> "StreamContract":
        """The sections of a manifest that ``check_contract`` has passed."""
        return cls(
            context=tuple(ContextSpec(e["input"], int(e["axis"]), int(e["size"])) for e in manifest.get("context", [])),
            constants=tuple(ConstantSpec(e["name"], tuple(int(d) for d in e["shape"]), e["dtype"], float(e["value"]))
                            for e in manifest.get("constants", [])),
            chunks=tuple(ChunkSpec(e["input"], int(e["axis"]), int(e["size"])) for e in manifest.get("chunks", [])),
        )

    def with_fixed_sizes(self, shapes: Mapping[str, Sequence[int | str]]) -> "StreamContract":
        """This contract, knowing the artifact's own shape of each context input (ints where fixed)."""
        sizes = {}
        for context in self.context:
            shape = list(shapes.get(context.input) or [])
            if context.axis < len(shape) and isinstance(shape[context.axis], int) and shape[context.axis] > 0:
                sizes[context.input] = int(shape[context.axis])
        return dataclasses.replace(self, fixed_sizes=sizes)

    def push_shape(self, name: str, shape: Sequence[int], sample_sizes: Mapping[tuple[str, int], int]) -> list[int]:
        """What one push of input ``name`` looks like, given the shape the model takes in one call."""
        shape = list(shape)
        for chunk in self.chunks:
            if chunk.input == name:
                shape[chunk.axis] = chunk.size
                return shape
        for context in self.context:
            if context.input == name:
                fixed = self.fixed_sizes.get(name)
                shape[context.axis] = fixed - context.size if fixed else sample_sizes.get((name, context.axis), context.size)
        return shape

    @staticmethod
    def init_values(manifest: Mapping[str, Any], folder: str | Path) -> dict[str, np.ndarray]:
        """State name -> its whole initial value, for the state pairs that give an ``init_file``."""
        from edgesdk.errors import BundleError
        from edgesdk.runtime.manifest import inside_bundle

        values = {}
        for index, state in enumerate(manifest["state"]):
            if "init_file" not in state:
                continue
            field_name = f"state[{index}].init_file"
            if not Path(folder).is_dir():
                raise BundleError(f"{folder}: {field_name} names a file, but this model was loaded without its bundle folder")
            path = inside_bundle(folder, state["init_file"], f"{folder}: {field_name}")
            try:
                value = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise BundleError(f"{folder}: {field_name} {state['init_file']!r} is not a readable .npy file: {error}") from None
            shape = list(state["shape"])
            if (value.ndim != len(shape) or value.dtype != np.dtype(state["dtype"])
                    or any(v != s for axis, (v, s) in enumerate(zip(value.shape, shape)) if axis != state["batch_axis"])):
                raise BundleError(f"{folder}: {field_name} holds {value.dtype} {list(value.shape)}; the state is "
                                  f"{state['dtype']} {shape}")
            values[state["name"]] = value
        return values

    def to_manifest(self) -> dict[str, list[dict[str, Any]]]:
        """The non-empty sections, ready to merge into a manifest."""
        sections = {"context": [c.to_manifest() for c in self.context],
                    "constants": [c.to_manifest() for c in self.constants],
                    "chunks": [c.to_manifest() for c in self.chunks]}
        return {key: value for key, value in sections.items() if value}

    def __bool__(self) -> bool:
        return bool(self.context or self.constants or self.chunks)

    @property
    def constant_names(self) -> list[str]:
        return [c.name for c in self.constants]

    def constant_feeds(self) -> dict[str, np.ndarray]:
        return {c.name: c.array() for c in self.constants}

    def refuse_constants(self, feeds: Mapping[str, Any]) -> None:
        """A user feed for a constant input is a mistake worth naming."""
        given = [c.name for c in self.constants if c.name in feeds]
        if given:
            raise UsageError(f"{', '.join(map(repr, given))}: fed by the bundle's contract as a constant; "
                             f"do not feed it")

    def check_chunks(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Each declared chunk size, on the user's own feeds (before context is prepended)."""
        for chunk in self.chunks:
            value = feeds.get(chunk.input)
            if not isinstance(value, np.ndarray):
                continue  # missing or ill-typed feeds are named by the Model's own check
            if value.ndim <= chunk.axis or value.shape[chunk.axis] != chunk.size:
                got = value.shape[chunk.axis] if value.ndim > chunk.axis else f"no axis {chunk.axis} (shape {value.shape})"
                raise UsageError(f"feed {chunk.input!r}: a push carries {chunk.size} new entries on axis {chunk.axis} "
                                 f"(the bundle's declared chunk), not {got}")

    def prepend_context(self, feeds: Mapping[str, np.ndarray], carried: Mapping[str, np.ndarray | None]
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``feeds`` with each context input's carried entries in front, and the entries to carry next.

        ``carried[input]`` is None at the start of a stream (and after reset): zeros then.
        """
        full = dict(feeds)
        kept: dict[str, np.ndarray] = {}
        for context in self.context:
            value = feeds.get(context.input)
            if not isinstance(value, np.ndarray):
                continue
            if value.ndim <= context.axis:
                raise UsageError(f"feed {context.input!r} has shape {value.shape}; its context axis {context.axis} "
                                 f"is missing")
            fixed = self.fixed_sizes.get(context.input)
            if fixed is not None and value.shape[context.axis] + context.size != fixed:
                raise UsageError(
                    f"feed {context.input!r} has {value.shape[context.axis]} entries on axis {context.axis}; the model "
                    f"takes {fixed} there, of which the stream carries {context.size} from before, so push "
                    f"{fixed - context.size} new entries")
            previous = carried.get(context.input)
            shape = list(value.shape)
            shape[context.axis] = context.size
            if previous is None:
                previous = np.zeros(shape, dtype=value.dtype)
            elif list(previous.shape) != shape or previous.dtype != value.dtype:
                raise UsageError(
                    f"feed {context.input!r} is {value.dtype} {value.shape}; earlier pushes of this stream were "
                    f"{previous.dtype} with shape {tuple(np.delete(np.array(previous.shape), context.axis))} off axis "
                    f"{context.axis}: reset() before changing it")
            joined = np.concatenate([previous, value], axis=context.axis)
            full[context.input] = joined
            length = joined.shape[context.axis]
            kept[context.input] = np.take(joined, np.arange(length - context.size, length), axis=context.axis)
        return full, kept


def check_contract(manifest: Mapping[str, Any], checker: Any) -> None:
    """Check the contract sections of ``manifest`` with manifest.py's checker (it names the field)."""
    inputs = {t["name"]: t["shape"] for t in manifest["inputs"]}
    taken = set(inputs) | {s["input"] for s in manifest["state"]}
    for key in ("context", "chunks"):
        seen: set[str] = set()
        for index, entry in enumerate(checker.array(manifest.get(key, []), key)):
            where = f"{key}[{index}]"
            entry = checker.object(entry, where)
            checker.keys(entry, where, ("input", "axis", "size"))
            name = checker.text(entry["input"], f"{where}.input")
            if name not in inputs:
                checker.fail(f"{where}.input", f"is {name!r}, not one of the inputs ({', '.join(inputs) or 'none'})")
            if name in seen:
                checker.fail(f"{where}.input", f"names {name!r} a second time")
            seen.add(name)
            axis = checker.integer(entry["axis"], f"{where}.axis", minimum=0)
            rank = len(inputs[name])
            if axis >= rank:
                checker.fail(f"{where}.axis", f"is {axis}, but {name!r} has only {rank} axes")
            checker.integer(entry["size"], f"{where}.size", minimum=1)
    context = {e["input"]: e for e in manifest.get("context", [])}
    for index, entry in enumerate(manifest.get("chunks", [])):
        carried = context.get(entry["input"])
        if carried is not None and carried["axis"] != entry["axis"]:
            checker.fail(f"chunks[{index}].axis", f"is {entry['axis']}, but the context of {entry['input']!r} is on "
                                                  f"axis {carried['axis']}")
        dim = inputs[entry["input"]][entry["axis"]]
        total = entry["size"] + (carried["size"] if carried is not None else 0)
        if isinstance(dim, int) and dim != total:
            checker.fail(f"chunks[{index}].size", f"is {entry['size']}, but the model takes {dim} entries on axis "
                                                  f"{entry['axis']} of {entry['input']!r}"
                                                  + (f" ({carried['size']} of them carried context)" if carried else ""))
    for index, entry in enumerate(manifest.get("context", [])):
        dim = inputs[entry["input"]][entry["axis"]]
        if isinstance(dim, int) and dim <= entry["size"]:
            checker.fail(f"context[{index}].size", f"is {entry['size']}, but the model takes only {dim} entries on "
                                                   f"axis {entry['axis']} of {entry['input']!r}: nothing new would fit")
    for index, entry in enumerate(manifest["state"]):
        if "init_file" in entry:
            checker.text(entry["init_file"], f"state[{index}].init_file")
    for index, entry in enumerate(checker.array(manifest.get("constants", []), "constants")):
        where = f"constants[{index}]"
        entry = checker.object(entry, where)
        checker.keys(entry, where, ("name", "shape", "dtype", "value"))
        name = checker.text(entry["name"], f"{where}.name")
        if name in taken:
            checker.fail(f"{where}.name", f"is {name!r}, which is already an input or a state")
        taken.add(name)
        checker.shape(entry["shape"], f"{where}.shape", symbolic=False)
        checker.dtype(entry["dtype"], f"{where}.dtype")
        value = entry["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            checker.fail(f"{where}.value", f"must be a finite number, not {value!r}")


def initial_states(value: np.ndarray, batch_axis: int, batch: int, name: str) -> np.ndarray:
    """A state's whole initial value for ``batch`` streams: one value is repeated along the batch axis."""
    size = value.shape[batch_axis]
    if size == batch:
        return value.copy()
    if size == 1:
        return np.repeat(value, batch, axis=batch_axis)
    raise UsageError(f"state {name!r} starts from a value for batch {size}; a stream of batch {batch} cannot use it")


def constant_names(manifest: Mapping[str, Any]) -> list[str]:
    """The constant inputs' names of a (raw) manifest; [] when it declares none."""
    entries = manifest.get("constants", [])
    return [e["name"] for e in entries if isinstance(e, Mapping) and "name" in e] if isinstance(entries, Sequence) else []
