"""Run every bundle's samples/inputs.npz on each backend, torch-free; write OUT/<bundle>.<backend>.npz.

The same script runs on the x86-64 host and in the aarch64 userland; compare.py diffs the two.
Usage: python run_samples.py BUNDLES_DIR OUT_DIR
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np

from edgesdk.runtime import load

BACKENDS = {"onnx": "onnxruntime", "tflite": "litert"}


def run_bundle(bundle: Path, backend: str) -> dict[str, np.ndarray]:
    inputs = dict(np.load(bundle / "samples" / "inputs.npz"))
    model = load(bundle, backend=backend)
    if not model.is_streaming:
        return model.run(inputs)
    from edgesdk.runtime.model import stream_batch

    stream = model.stream(batch=stream_batch(model, inputs))
    steps = len(next(iter(inputs.values())))
    results = [stream.push({name: array[i] for name, array in inputs.items()}) for i in range(steps)]
    return {name: np.stack([r[name] for r in results]) for name in results[0]}


def bundle_backends(bundle: Path) -> list[str]:
    """The backends that run this bundle's artifacts (an int8 bundle has a TFLite file only)."""
    manifest = json.loads((bundle / "edgesdk.json").read_text())
    return [BACKENDS[a["format"]] for a in manifest["artifacts"] if a["format"] in BACKENDS]


def main(bundles: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for bundle in sorted(p for p in bundles.iterdir() if (p / "edgesdk.json").is_file()):
        for backend in bundle_backends(bundle):
            outputs = run_bundle(bundle, backend)
            np.savez(out / f"{bundle.name}.{backend}.npz", **outputs)
            print(f"{platform.machine()}: ran {bundle.name} on {backend}", flush=True)
    assert "torch" not in sys.modules, "running the runtime imported torch"


if __name__ == "__main__":
    if sys.argv[1] == "--backends":  # for the shell: which backends to validate a bundle on
        print(" ".join(bundle_backends(Path(sys.argv[2]))))
    else:
        main(Path(sys.argv[1]), Path(sys.argv[2]))
