"""Compare the aarch64 outputs with the x86-64 ones, per bundle and backend.

Fails (exit 1) when an output breaks the rule its bundle's manifest carries, applied by
edgesdk's comparison engine with the x86-64 output as the reference: the element-wise tolerance
(atol + rtol*|x86 value|, per output as the manifest says), or the family's own check where it
has one (e.g. EcoFormer's hash codes by bit agreement). Prints one tick line per output.
Reduced-precision artifacts (int8) are held to the bundle's SQNR floor instead: their SQNR
against the float reference (samples/expected.npz) on each machine, and aarch64's against x86-64.
Usage: python compare.py BUNDLES_DIR X86_DIR ARM64_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgesdk.runtime.compare import MIN_SQNR_DB, Rules, compare_output, sqnr_db, tick_line

FORMAT_OF_BACKEND = {"onnxruntime": "onnx", "litert": "tflite"}


def compare_reduced(bundle: Path, host: dict, got: dict, floor: float) -> tuple[bool, str]:
    """SQNR of both machines' outputs against the float reference, and aarch64's against x86-64."""
    expected = dict(np.load(bundle / "samples" / "expected.npz"))
    ok, parts = True, []
    for name, reference in expected.items():
        if name not in host or name not in got or got[name].shape != host[name].shape:
            return False, f"{name}: missing or shape differs"
        x86_db, arm_db = sqnr_db(reference, host[name]), sqnr_db(reference, got[name])
        between_db = sqnr_db(host[name], got[name])
        worst = float(np.abs(got[name].astype(np.float64) - host[name].astype(np.float64)).max())
        ok &= min(x86_db, arm_db, between_db) >= floor
        parts.append(f"{name}: SQNR vs float reference x86-64 {x86_db:.1f} dB, aarch64 {arm_db:.1f} dB; "
                     f"aarch64 vs x86-64 {between_db:.1f} dB, max abs diff {worst:.1e}")
    return ok, f"floor {floor:.0f} dB: " + "; ".join(parts)


def main(bundles: Path, x86: Path, arm: Path) -> int:
    failed = []
    rows = 0
    for host_file in sorted(x86.glob("*.npz")):
        bundle_name, backend = host_file.stem.rsplit(".", 1)
        settings = json.loads((bundles / bundle_name / "edgesdk.json").read_text()).get("validation", {})
        rules = Rules.from_manifest(settings)
        arm_file = arm / host_file.name
        if not arm_file.is_file():
            failed.append(f"{host_file.name}: no aarch64 outputs")
            continue
        host, got = dict(np.load(host_file)), dict(np.load(arm_file))
        manifest = json.loads((bundles / bundle_name / "edgesdk.json").read_text())
        precision = {a["format"]: a.get("precision", "float32") for a in manifest["artifacts"]}
        reduced = precision.get(FORMAT_OF_BACKEND[backend], "float32")
        if reduced != "float32":
            floor = float(settings.get("min_sqnr_db") or MIN_SQNR_DB)
            ok, detail = compare_reduced(bundles / bundle_name, host, got, floor)
            print(f"{'ok  ' if ok else 'FAIL'} {bundle_name:18s} {backend:12s} {reduced}  {detail}")
            rows += 1
            if not ok:
                failed.append(f"{bundle_name} on {backend} ({reduced})")
            continue
        ok = True
        for name, reference in host.items():
            candidate = got.get(name)
            if candidate is None:
                print(f"✗ {bundle_name:18s} {backend:12s} {name:24s} no aarch64 output")
                ok = False
                continue
            result = compare_output(name, reference, candidate, rules.rule(name))
            print(tick_line(result, [(bundle_name, 18), (backend, 12)]) + "  (aarch64 vs x86-64)")
            ok &= result.passed
        rows += 1
        if not ok:
            failed.append(f"{bundle_name} on {backend}")
    if not rows:
        failed.append("no outputs to compare")
    for line in failed:
        print(f"test-arm64: FAIL {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
