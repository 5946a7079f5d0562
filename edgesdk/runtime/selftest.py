"""On-device self-test: re-run a bundle's samples on every backend installed here.

The bundle's ``samples/inputs.npz`` holds the inputs of the first validation case and
``samples/expected.npz`` the PyTorch reference outputs for them (stacked by step for a
streaming bundle). This compares each installed backend with them without torch, by the rules
the manifest's ``validation`` section carries and with the engine export validation used
(``edgesdk.runtime.compare``): the element-wise tolerance for float artifacts, SQNR for int8
ones, the family's own check (e.g. hash-bit agreement) where it has one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgesdk.errors import BackendUnavailable, BundleError, UsageError
from edgesdk.runtime.backends.base import BACKEND_OF_FORMAT, available_backends
from edgesdk.runtime.compare import (OutputResult, OutputRule, Rules, compare_output, compare_steps,
                                     line_prefix, tick_line)
from edgesdk.runtime.manifest import inside_bundle, read_manifest, read_npz
from edgesdk.runtime.model import load, stream_batch


def _load_npz(bundle: Path, relative: str) -> dict[str, np.ndarray]:
    path = inside_bundle(bundle, relative, f"{bundle}: samples")
    if not path.is_file():
        raise BundleError(f"{path} is missing; the bundle has no samples to re-validate")
    return read_npz(path)


def selftest(bundle: str | Path, backends: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the samples on each backend (default: every installed one with an artifact).

    Returns ``{"passed": bool, "backends": {name: {"passed", "providers", "outputs": {...}}},
    "lines": [...]}``: the outputs' facts as validation.json records them, and one tick line
    per backend and output (the renderer export validation uses).
    """
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise UsageError(f"{bundle} is not a bundle folder")
    manifest = read_manifest(bundle)
    inputs = _load_npz(bundle, "samples/inputs.npz")
    expected = _load_npz(bundle, "samples/expected.npz")
    rules = Rules.from_manifest(manifest.get("validation", {}))
    # Every artifact is tested with its own rule: a bundle may hold one per format and precision.
    artifacts = [(BACKEND_OF_FORMAT[a["format"]], a.get("precision", "float32"))
                 for a in manifest["artifacts"] if a["format"] in BACKEND_OF_FORMAT]
    if backends:
        have = sorted({backend for backend, _ in artifacts})
        unknown = [b for b in backends if b not in have]
        if unknown:
            formats = ", ".join(a["format"] for a in manifest["artifacts"])
            raise UsageError(f"{bundle} has no artifact for {', '.join(unknown)} (it has {formats})")
        artifacts = [(backend, precision) for backend, precision in artifacts if backend in backends]
    installed = set(available_backends())
    report: dict[str, Any] = {"bundle": str(bundle), "backends": {}}
    lines: list[str] = []
    per_backend = {backend: sum(1 for b, _ in artifacts if b == backend) for backend, _ in artifacts}
    # A backend's only artifact, or its float one, is reported under the backend's own name (as
    # before bundles held several precisions); the others as backend/precision.
    labels = [name if per_backend[name] == 1 or precision == "float32" else f"{name}/{precision}"
              for name, precision in artifacts]
    width = max([12, *map(len, labels)])
    for (name, precision), label in zip(artifacts, labels):
        if name not in installed:
            report["backends"][label] = {"passed": None, "skipped": f"{name} is not installed here"}
            lines.append(f"{line_prefix(None, [(label, width)])} skipped: {name} is not installed here")
            continue
        model = load(bundle, backend=name, verify_hashes=False, precision=precision)
        if model.is_streaming:
            stream = model.stream(batch=stream_batch(model, inputs))
            steps = len(next(iter(inputs.values())))
            got_steps = [stream.push({n: inputs[n][i] for n in inputs}) for i in range(steps)]
            got = {n: np.stack([step[n] for step in got_steps]) for n in expected}
        else:
            got = model.run(inputs)
        unlisted = [n for n in expected if n not in got]
        if unlisted:
            raise BundleError(f"{bundle}: samples/expected.npz holds {', '.join(map(repr, unlisted))}, "
                              f"which the manifest does not list as outputs")
        reduced = precision != "float32"
        results = [_compare(out_name, reference, got[out_name], rules.rule(out_name, reduced), model.is_streaming)
                   for out_name, reference in expected.items()]
        outputs = {result.name: result.to_dict() for result in results}
        lines += [tick_line(result, [(label, width)]) for result in results]
        report["backends"][label] = {
            "passed": all(o["passed"] for o in outputs.values()),
            "precision": precision,
            "artifact": model.artifact["file"],
            "format": model.format,
            "providers": model.providers,
            "outputs": outputs,
        }
    ran = [b for b in report["backends"].values() if b["passed"] is not None]
    if not ran:
        needed = ", ".join(sorted({backend for backend, _ in artifacts}))
        raise BackendUnavailable(f"no backend that can run {bundle} is installed here ({needed} needed)")
    report["passed"] = bool(ran) and all(b["passed"] for b in ran)
    report["lines"] = lines
    return report


def _compare(name: str, reference: np.ndarray, candidate: np.ndarray, rule: OutputRule, streaming: bool) -> OutputResult:
    """A streaming bundle's samples are stacked by step: judge them step by step, as export did."""
    if streaming and reference.shape == candidate.shape and reference.ndim:
        return compare_steps(name, list(reference), list(candidate), rule)
    return compare_output(name, reference, candidate, rule)
