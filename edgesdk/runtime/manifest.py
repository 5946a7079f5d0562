"""The bundle manifest (edgesdk.json): reading, checking, and its schema version.

A bundle is a folder with edgesdk.json beside its artifacts. A lone model.onnx carries the
same facts in its ``edgesdk.*`` metadata_props, so it can be loaded without its folder.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from edgesdk.errors import BundleError

SCHEMA_VERSION = 1
MANIFEST_NAME = "edgesdk.json"
VALIDATION_NAME = "validation.json"
REQUIRED_KEYS = ("schema_version", "model", "artifacts", "inputs", "outputs", "state")
# Keys a lone ONNX file carries in metadata_props (as JSON, prefixed with "edgesdk.").
ONNX_METADATA_KEYS = ("schema_version", "model", "mode", "inputs", "outputs", "state", "streaming", "frontend", "ops", "extra")


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def check_manifest(manifest: Mapping[str, Any], source: str) -> None:
    """Raise BundleError naming the first problem: a missing key or a newer schema."""
    for key in REQUIRED_KEYS:
        if key not in manifest:
            raise BundleError(f"{source}: manifest has no {key!r} key")
    version = manifest["schema_version"]
    if not isinstance(version, int):
        raise BundleError(f"{source}: schema_version must be an integer, not {version!r}")
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{source}: manifest schema {version} is newer than this edgesdk understands "
            f"({SCHEMA_VERSION}); upgrade edgesdk to load it"
        )
    for index, artifact in enumerate(manifest["artifacts"]):
        for key in ("file", "format", "sha256", "inputs", "outputs"):
            if key not in artifact:
                raise BundleError(f"{source}: artifacts[{index}] has no {key!r} key")
    for index, state in enumerate(manifest["state"]):
        for key in ("name", "input", "output", "shape", "dtype", "batch_axis", "init"):
            if key not in state:
                raise BundleError(f"{source}: state[{index}] has no {key!r} key")


def read_manifest(bundle: str | Path, verify_hashes: bool = True) -> dict[str, Any]:
    """Read and check ``bundle/edgesdk.json``; with ``verify_hashes``, check every artifact."""
    bundle = Path(bundle)
    path = bundle / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{bundle} is not an edgesdk bundle: {MANIFEST_NAME} is missing")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BundleError(f"{path} is not valid JSON: {error}") from None
    check_manifest(manifest, str(path))
    if verify_hashes:
        for artifact in manifest["artifacts"]:
            file = bundle / artifact["file"]
            if not file.is_file():
                raise BundleError(f"{bundle}: artifact {artifact['file']} is missing")
            if sha256_file(file) != artifact["sha256"]:
                raise BundleError(
                    f"{file}: sha256 no longer matches the manifest; the file was changed after export"
                )
    return manifest


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
