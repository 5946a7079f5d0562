"""On-device self-test: re-run a bundle's samples on every backend installed here.

The bundle's ``samples/inputs.npz`` holds the inputs of the first validation case and
``samples/expected.npz`` the PyTorch reference outputs for them (stacked by step for a
streaming bundle). This compares each installed backend with them, using the manifest's
tolerances, without torch: the element-wise rule for float artifacts, SQNR for int8 ones.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgesdk.errors import BackendUnavailable, BundleError, UsageError
from edgesdk.runtime.backends.base import BACKEND_OF_FORMAT, available_backends
from edgesdk.runtime.compare import MIN_SQNR_DB, elementwise_error, sqnr_db
from edgesdk.runtime.manifest import inside_bundle, read_manifest, read_npz
from edgesdk.runtime.model import load, stream_batch

# Outputs that the family checks with its own rule at export (e.g. binary hash codes, where a
# sign flip near zero is expected) are compared here by the share of elements in tolerance.
MIN_AGREEMENT = 0.999


def _load_npz(bundle: Path, relative: str) -> dict[str, np.ndarray]:
    path = inside_bundle(bundle, relative, f"{bundle}: samples")
    if not path.is_file():
        raise BundleError(f"{path} is missing; the bundle has no samples to re-validate")
    return read_npz(path)


def selftest(bundle: str | Path, backends: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the samples on each backend (default: every installed one with an artifact).

    Returns ``{"passed": bool, "backends": {name: {"passed", "providers", "outputs": {...}}}}``.
    """
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise UsageError(f"{bundle} is not a bundle folder")
    manifest = read_manifest(bundle)
    inputs = _load_npz(bundle, "samples/inputs.npz")
    expected = _load_npz(bundle, "samples/expected.npz")
    settings = manifest.get("validation", {})
    atol, rtol = float(settings.get("atol", 1e-4)), float(settings.get("rtol", 1e-4))
    per_output = {k: tuple(v) for k, v in settings.get("output_tolerances", {}).items()}
    family_checked = set(settings.get("family_checked_outputs", []))
    min_sqnr = float(settings.get("min_sqnr_db") or MIN_SQNR_DB)
    precision = {BACKEND_OF_FORMAT.get(a["format"]): a.get("precision", "float32") for a in manifest["artifacts"]}
    formats = [a["format"] for a in manifest["artifacts"]]
    candidates = [BACKEND_OF_FORMAT[f] for f in formats if f in BACKEND_OF_FORMAT]
    if backends:
        unknown = [b for b in backends if b not in candidates]
        if unknown:
            raise UsageError(f"{bundle} has no artifact for {', '.join(unknown)} (it has {', '.join(formats)})")
        candidates = list(backends)
    installed = set(available_backends())
    report: dict[str, Any] = {"bundle": str(bundle), "backends": {}}
    for name in candidates:
        if name not in installed:
            report["backends"][name] = {"passed": None, "skipped": f"{name} is not installed here"}
            continue
        model = load(bundle, backend=name, verify_hashes=False)
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
        outputs = {}
        for out_name, reference in expected.items():
            tol_abs, tol_rel = per_output.get(out_name, (atol, rtol))
            candidate = got[out_name]
            if candidate.shape != reference.shape:
                outputs[out_name] = {"passed": False, "error": f"shape {candidate.shape} vs expected {reference.shape}"}
                continue
            difference, within = elementwise_error(reference, candidate, tol_abs, tol_rel)
            facts: dict[str, Any] = {"max_abs": float(difference.max()) if difference.size else 0.0,
                                     "mean_abs": float(difference.mean()) if difference.size else 0.0,
                                     "atol": tol_abs, "rtol": tol_rel}
            if precision.get(name, "float32") != "float32":
                facts = {key: facts[key] for key in ("max_abs", "mean_abs")}
                facts.update(sqnr_db=sqnr_db(reference, candidate), min_sqnr_db=min_sqnr)
                facts["passed"] = facts["sqnr_db"] >= min_sqnr
            elif out_name in family_checked:
                facts["agreement"] = float(within.mean()) if within.size else 1.0
                facts["passed"] = facts["agreement"] >= MIN_AGREEMENT
            else:
                facts["passed"] = bool(within.all())
            outputs[out_name] = facts
        report["backends"][name] = {
            "passed": all(o["passed"] for o in outputs.values()),
            "providers": model.providers,
            "outputs": outputs,
        }
    ran = [b for b in report["backends"].values() if b["passed"] is not None]
    if not ran:
        raise BackendUnavailable(f"no backend that can run {bundle} is installed here ({', '.join(candidates)} needed)")
    report["passed"] = bool(ran) and all(b["passed"] for b in ran)
    return report

