"""Compare the aarch64 outputs with the x86-64 ones, per bundle and backend.

Fails (exit 1) when an output breaks the rule its bundle's manifest carries, applied by
edgesdk's comparison engine with the x86-64 output as the reference: the element-wise tolerance
(atol + rtol*|x86 value|, per output as the manifest says), or the family's own check where it
has one (e.g. EcoFormer's hash codes by bit agreement). Prints one tick line per output.
Usage: python compare.py BUNDLES_DIR X86_DIR ARM64_DIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edgesdk.runtime.compare import Rules, compare_output, tick_line


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
