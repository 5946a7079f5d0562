"""Bring your own module: export a streaming step to ONNX and TFLite, validate, stream it.

    python examples/python/byo_streaming.py [--output out/byo-streaming]

Prints the validation lines, then streams 100 frames through each backend without torch
(edgesdk.load) and reports the per-step latency and how far the two backends agree.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

import edgesdk  # noqa: E402
from examples.python.tiny_models import streaming_classifier  # noqa: E402

FEATURES, KERNEL, HIDDEN = 40, 3, 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("out/byo-streaming"))
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args(argv)

    print(f"1. export a streaming step ({FEATURES} features/frame, conv ring buffer + recurrent state)")
    result = edgesdk.export(
        streaming_classifier(),
        args.output,
        formats=("onnx", "tflite"),
        example_inputs={"features": (1, 1, FEATURES)},
        states={"conv_buffer": (1, KERNEL - 1, FEATURES), "hidden": (1, HIDDEN)},
        output_names=["logits"],
        force=True,
    )
    for line in result.validation["lines"]:
        print("   " + line)

    print(f"2. stream {args.frames} frames through each backend (no torch)")
    frames = np.random.default_rng(1).standard_normal((args.frames, 1, 1, FEATURES)).astype(np.float32)
    finals = {}
    for backend in ("onnxruntime", "litert"):
        model = edgesdk.load(args.output, backend=backend)
        stream = model.stream()
        latencies = []
        for frame in frames:
            start = time.perf_counter()
            out = stream.push({"features": frame})
            latencies.append(time.perf_counter() - start)
        finals[backend] = out["logits"]
        print(f"   {backend:11s} ({', '.join(model.providers)}): median {np.median(latencies) * 1e6:.0f} µs/step, "
              f"p90 {np.percentile(latencies, 90) * 1e6:.0f} µs; final top class {int(out['logits'].argmax())}")
    gap = float(np.abs(finals["onnxruntime"] - finals["litert"]).max())
    print(f"3. after {args.frames} steps the two backends differ by at most {gap:.1e} in the logits")
    print(f"   bundle: {args.output} (try: edgesdk inspect {args.output})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
