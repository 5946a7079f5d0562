"""The bundle manifest (edgesdk.json): reading, checking, and its schema version.

A bundle is a folder with edgesdk.json beside its artifacts. A lone model.onnx carries the
same facts in its ``edgesdk.*`` metadata_props, so it can be loaded without its folder.
"""
from __future__ import annotations

import hashlib
import json
import math
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Mapping, Sequence

import numpy as np

from edgesdk.errors import BundleError
from edgesdk.runtime.compare import family_check_from_manifest
from edgesdk.runtime.contract import CONTRACT_KEYS, check_contract, constant_names
from edgesdk.runtime.precision import MANIFEST_PRECISIONS
from edgesdk.runtime.sections import check_sections

SCHEMA_VERSION = 1
MANIFEST_NAME = "edgesdk.json"
VALIDATION_NAME = "validation.json"
# A manifest is a few kB; anything near this is not one.
MAX_MANIFEST_BYTES = 16 << 20
REQUIRED_KEYS = ("schema_version", "model", "artifacts", "inputs", "outputs", "state")
# Keys a lone ONNX file carries in metadata_props (as JSON, prefixed with "edgesdk.").
ONNX_METADATA_KEYS = ("schema_version", "model", "mode", "inputs", "outputs", "state", "streaming", "frontend", "ops", "extra")
ONNX_METADATA_KEYS += CONTRACT_KEYS  # the stream contract (runtime/contract.py)


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


# The dtypes a manifest may name: what the backends feed and return.
DTYPES = frozenset({"float32", "float16", "float64", "bfloat16", "int8", "uint8", "int16", "uint16",
                    "int32", "uint32", "int64", "uint64", "bool"})
FORMATS = frozenset({"onnx", "tflite"})
# Sections that are optional, but must be objects when present.
OPTIONAL_SECTIONS = ("streaming", "frontend", "ops", "validation", "provenance", "extra")


class _Checker:
    """Checks one manifest and raises BundleError naming the field: ``artifacts[0].file: ...``."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, field: str, problem: str) -> None:
        raise BundleError(f"{self.source}: {field} {problem}")

    def object(self, value: Any, field: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(field, f"must be an object, not {_json_kind(value)}")
        return value

    def array(self, value: Any, field: str) -> Sequence[Any]:
        if not isinstance(value, list):
            self.fail(field, f"must be a list, not {_json_kind(value)}")
        return value

    def text(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or not value:
            self.fail(field, f"must be a non-empty string, not {_json_kind(value)}")
        return value

    def integer(self, value: Any, field: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, not {_json_kind(value)}")
        if minimum is not None and value < minimum:
            self.fail(field, f"must be at least {minimum}, not {value}")
        return value

    def dtype(self, value: Any, field: str) -> str:
        if not isinstance(value, str) or value not in DTYPES:
            self.fail(field, f"is {value!r}, not a known dtype ({', '.join(sorted(DTYPES))})")
        return value

    def keys(self, entry: Mapping[str, Any], field: str, names: Sequence[str]) -> None:
        for name in names:
            if name not in entry:
                self.fail(field, f"has no {name!r} key")

    def shape(self, value: Any, field: str, symbolic: bool) -> None:
        for axis, dim in enumerate(self.array(value, field)):
            if symbolic and isinstance(dim, str) and dim:
                continue
            self.integer(dim, f"{field}[{axis}]", minimum=0)

    def tensors(self, value: Any, field: str) -> None:
        for index, entry in enumerate(self.array(value, field)):
            where = f"{field}[{index}]"
            entry = self.object(entry, where)
            self.keys(entry, where, ("name", "shape", "dtype"))
            self.text(entry["name"], f"{where}.name")
            self.shape(entry["shape"], f"{where}.shape", symbolic=True)
            self.dtype(entry["dtype"], f"{where}.dtype")

    def state(self, value: Any, field: str) -> None:
        for index, entry in enumerate(self.array(value, field)):
            where = f"{field}[{index}]"
            entry = self.object(entry, where)
            self.keys(entry, where, ("name", "input", "output", "shape", "dtype", "batch_axis", "init"))
            for key in ("name", "input", "output"):
                self.text(entry[key], f"{where}.{key}")
            self.shape(entry["shape"], f"{where}.shape", symbolic=False)
            self.dtype(entry["dtype"], f"{where}.dtype")
            rank = len(entry["shape"])
            axis = self.integer(entry["batch_axis"], f"{where}.batch_axis", minimum=0)
            if axis >= rank:
                self.fail(f"{where}.batch_axis", f"is {axis}, but the state has only {rank} axes")
            init = entry["init"]
            if isinstance(init, bool) or not isinstance(init, (int, float)) or not math.isfinite(init):
                self.fail(f"{where}.init", f"must be a finite number, not {init!r}")

    def artifacts(self, value: Any, field: str) -> None:
        if not self.array(value, field):
            self.fail(field, "is empty: the bundle lists no artifact")
        for index, entry in enumerate(value):
            where = f"{field}[{index}]"
            entry = self.object(entry, where)
            self.keys(entry, where, ("file", "format", "sha256", "inputs", "outputs"))
            check_relative_path(self.text(entry["file"], f"{where}.file"), f"{self.source}: {where}.file")
            if not isinstance(entry["format"], str) or entry["format"] not in FORMATS:
                self.fail(f"{where}.format", f"is {entry['format']!r}; edgesdk knows {', '.join(sorted(FORMATS))}")
            digest = self.text(entry["sha256"], f"{where}.sha256")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                self.fail(f"{where}.sha256", "must be 64 lowercase hex digits")
            self.optional(entry, where, ARTIFACT_OPTIONAL)
            self.precision(entry, where)
            for key in ("inputs", "outputs"):
                names = self.object(entry[key], f"{where}.{key}")
                for logical, own in names.items():
                    self.text(own, f"{where}.{key}.{logical}")


    def precision(self, entry: Mapping[str, Any], where: str) -> None:
        """A reduced-precision artifact: a known precision, and integer I/O with its scale and zero point."""
        if "precision" in entry and entry["precision"] not in MANIFEST_PRECISIONS:
            self.fail(f"{where}.precision", f"is {entry['precision']!r}; edgesdk knows {', '.join(sorted(MANIFEST_PRECISIONS))}")
        section = entry.get("io_quantization")
        if section is None:
            return
        for side in ("inputs", "outputs"):
            for name, params in self.object(section.get(side, {}), f"{where}.io_quantization.{side}").items():
                field = f"{where}.io_quantization.{side}.{name}"
                params = self.object(params, field)
                self.keys(params, field, ("dtype", "scale", "zero_point"))
                if params["dtype"] not in ("int8", "uint8", "int16"):
                    self.fail(f"{field}.dtype", f"is {params['dtype']!r}, not int8, uint8 or int16")
                if self.number(params["scale"], f"{field}.scale") == 0:
                    self.fail(f"{field}.scale", "must be > 0")
                self.integer(params["zero_point"], f"{field}.zero_point")

    def number(self, value: Any, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            self.fail(field, f"must be a finite number >= 0, not {_json_kind(value)}")
        return float(value)

    def validation(self, section: Mapping[str, Any], field: str) -> None:
        """The tolerances the on-device self-test judges by."""
        for key in ("atol", "rtol"):
            if key in section:
                self.number(section[key], f"{field}.{key}")
        if section.get("min_sqnr_db") is not None:
            self.number(section["min_sqnr_db"], f"{field}.min_sqnr_db")
        for name, pair in self.object(section.get("output_tolerances", {}), f"{field}.output_tolerances").items():
            where = f"{field}.output_tolerances.{name}"
            if not isinstance(pair, list) or len(pair) != 2:
                self.fail(where, f"must be [atol, rtol], not {_json_kind(pair)}")
            for value in pair:
                self.number(value, where)
        for index, name in enumerate(self.array(section.get("family_checked_outputs", []),
                                                f"{field}.family_checked_outputs")):
            self.text(name, f"{field}.family_checked_outputs[{index}]")
        for name, check in self.object(section.get("output_checks", {}), f"{field}.output_checks").items():
            try:
                family_check_from_manifest(check)
            except ValueError as error:
                self.fail(f"{field}.output_checks.{name}", str(error))

    def optional(self, entry: Mapping[str, Any], where: str, kinds: Mapping[str, tuple[type, ...]]) -> None:
        """Fields that may be absent, but have the given JSON kind when present."""
        for key, allowed in kinds.items():
            if key in entry:
                value = entry[key]
                if isinstance(value, bool) and bool not in allowed:
                    self.fail(f"{where}.{key}", f"must not be {_json_kind(value)}")
                if not isinstance(value, allowed):
                    self.fail(f"{where}.{key}", f"must be {' or '.join(KIND_NAMES[k] for k in allowed)}, "
                                                f"not {_json_kind(value)}")
        histogram = entry.get("op_histogram")
        if isinstance(histogram, Mapping):
            for op, count in histogram.items():
                self.integer(count, f"{where}.op_histogram.{op}", minimum=0)


KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", dict: "an object",
              list: "a list", type(None): "null"}
# An artifact's optional fields and their JSON kinds (what inspect, validate and profile read).
ARTIFACT_OPTIONAL: dict[str, tuple[type, ...]] = {
    "converter": (str,), "opset": (int, type(None)), "size_bytes": (int,), "precision": (str,),
    "valid": (bool, type(None)), "op_histogram": (dict,), "recipe": (dict, type(None)),
    "io_quantization": (dict, type(None)), "validation": (dict,), "float_size_bytes": (int,),
    "kept_float": (list,), "quantizer": (str,), "speed_vs_float32": (int, float, type(None)),
    "batch": (str, int),  # "dynamic", or the fixed batch of a static graph
}

# The model section's fields, all optional (a foreign file knows none of them).
MODEL_OPTIONAL: dict[str, tuple[type, ...]] = {
    "family": (str,), "preset": (str, type(None)), "parameters": (int, type(None)),
    "checkpoint": (str, type(None)), "checkpoint_sha256": (str, type(None)), "class": (str, type(None)),
    "source": (str,), "weights": (str,),
}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: f"the string {value!r}",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def check_relative_path(relative: str, field: str) -> None:
    """Refuse a path that could leave its bundle: absolute, or with a ``..`` part."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(relative).drive or ".." in pure.parts:
        raise BundleError(f"{field} is {relative!r}: a bundle's files must lie inside its folder (no '..', no absolute path)")


def inside_bundle(bundle: str | Path, relative: str, field: str) -> Path:
    """``bundle/relative``, refused when it (or a symlink on the way) resolves outside ``bundle``."""
    check_relative_path(relative, field)
    root = Path(bundle).resolve()
    path = Path(bundle) / relative
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise BundleError(f"{field} {relative!r} resolves to {resolved}, outside the bundle {root} (a symlink?)")
    return path


def check_manifest(manifest: Any, source: str) -> None:
    """Check every field the runtime reads; raise BundleError naming the first bad one."""
    checker = _Checker(source)
    manifest = checker.object(manifest, "the manifest")
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise BundleError(f"{source}: manifest has no {key!r} key")
    version = checker.integer(manifest["schema_version"], "schema_version")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{source}: manifest schema {version} is newer than this edgesdk understands "
            f"({SCHEMA_VERSION}); upgrade edgesdk to load it"
        )
    checker.optional(checker.object(manifest["model"], "model"), "model", MODEL_OPTIONAL)
    checker.artifacts(manifest["artifacts"], "artifacts")
    checker.tensors(manifest["inputs"], "inputs")
    checker.tensors(manifest["outputs"], "outputs")
    checker.state(manifest["state"], "state")
    check_contract(manifest, checker)
    for key in OPTIONAL_SECTIONS:
        if key in manifest:
            checker.object(manifest[key], key)
    if "validation" in manifest:
        checker.validation(manifest["validation"], "validation")
    check_sections(manifest, source)
    _check_names_are_mapped(manifest, source)


def _check_names_are_mapped(manifest: Mapping[str, Any], source: str) -> None:
    """Every logical input, output and state name has a tensor in every artifact, and no name is used twice."""
    inputs = [t["name"] for t in manifest["inputs"]] + [s["input"] for s in manifest["state"]]
    inputs += constant_names(manifest)
    outputs = [t["name"] for t in manifest["outputs"]] + [s["output"] for s in manifest["state"]]
    for kind, names in (("input", inputs), ("output", outputs)):
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise BundleError(f"{source}: {kind} name(s) {', '.join(map(repr, repeated))} listed twice")
    for index, artifact in enumerate(manifest["artifacts"]):
        for key, names in (("inputs", inputs), ("outputs", outputs)):
            missing = [n for n in names if n not in artifact[key]]
            if missing:
                raise BundleError(f"{source}: artifacts[{index}].{key} has no tensor for {', '.join(map(repr, missing))}")


# Set by read_manifest: the files the manifest lists that the folder does not hold.
MISSING_KEY = "missing_artifacts"
RANDOM_WEIGHTS = ("seeded-random", "random")


def weights_warning(manifest: Mapping[str, Any], source: Any) -> str | None:
    """One sentence when the bundle's weights came from no checkpoint (``--random-weights``)."""
    model = manifest.get("model")
    weights = model.get("weights") if isinstance(model, Mapping) else None
    if weights not in RANDOM_WEIGHTS:
        return None
    return (f"warning: {source} holds {weights} weights (exported with --random-weights, no checkpoint): "
            "its outputs mean nothing")


def bundle_notes(manifest: Mapping[str, Any], source: Any) -> list[str]:
    """What every verb that reads a bundle says first: random weights, artifacts not copied along."""
    notes = [weights_warning(manifest, source)]
    missing = manifest.get(MISSING_KEY) or []
    if missing:
        present = ", ".join(a["file"] for a in manifest["artifacts"])
        notes.append(f"note: {source} lacks {', '.join(missing)} (listed in its manifest); using what is there: {present}")
    return [note for note in notes if note]


def read_manifest(bundle: str | Path, verify_hashes: bool = True) -> dict[str, Any]:
    """Read and check ``bundle/edgesdk.json``; with ``verify_hashes``, check every artifact present.

    A bundle may be copied without some of its artifacts (only ``model.onnx`` to a Jetson, say):
    the artifacts that are there are kept (their hashes still checked), the missing ones are
    dropped from ``artifacts`` and named under ``missing_artifacts``. BundleError when none is left.
    """
    bundle = Path(bundle)
    path = bundle / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle} is not an edgesdk bundle: {MANIFEST_NAME} is missing")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is {path.stat().st_size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as error:
        raise BundleError(f"{path} is not UTF-8 text: {error}") from None
    except (json.JSONDecodeError, RecursionError) as error:
        raise BundleError(f"{path} is not valid JSON: {error}") from None
    check_manifest(manifest, str(path))
    present, missing = [], []
    for index, artifact in enumerate(manifest["artifacts"]):
        field = f"{path}: artifacts[{index}].file"
        file = inside_bundle(bundle, artifact["file"], field)
        if not file.is_file():
            missing.append(artifact["file"])
            continue
        if verify_hashes and sha256_file(file) != artifact["sha256"]:
            raise BundleError(
                f"{file}: sha256 no longer matches the manifest; the file was changed after export"
            )
        present.append(artifact)
    if not present:
        raise BundleError(f"{bundle}: none of its artifacts is there ({', '.join(missing)} missing); "
                          "copy at least one of them beside edgesdk.json")
    if missing:
        manifest["artifacts"] = present
        manifest[MISSING_KEY] = missing
    return manifest


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read now; a damaged or non-npz file is a BundleError."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path} is not a regular file")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.ndarray):
            raise BundleError(f"{path} holds one array (.npy); an .npz archive of named arrays is needed")
        with data:
            return {name: data[name] for name in data.files}
    except BundleError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise BundleError(f"{path} is not a readable .npz archive: {error}") from None


def manifest_from_onnx_metadata(metadata: Mapping[str, str], path: str | Path) -> dict[str, Any]:
    """Rebuild a manifest from a lone ONNX file's ``edgesdk.*`` metadata_props."""
    facts: dict[str, Any] = {}
    for key in ONNX_METADATA_KEYS:
        raw = metadata.get(f"edgesdk.{key}")
        if raw is None:
            continue
        try:
            facts[key] = json.loads(raw)
        except json.JSONDecodeError:
            facts[key] = raw
    for key in ("schema_version", "inputs", "outputs", "state"):
        if key not in facts:
            raise BundleError(f"{path}: metadata_props has no 'edgesdk.{key}' entry")
    path = Path(path)
    names = [t["name"] for t in facts["inputs"]] + [s["input"] for s in facts["state"]]
    names += constant_names(facts)
    output_names = [t["name"] for t in facts["outputs"]] + [s["output"] for s in facts["state"]]
    facts.setdefault("model", {})
    facts["artifacts"] = [
        {
            "file": path.name,
            "format": "onnx",
            "sha256": sha256_file(path),
            "inputs": {n: n for n in names},
            "outputs": {n: n for n in output_names},
        }
    ]
    check_manifest(facts, str(path))
    return facts
