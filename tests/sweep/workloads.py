"""What the sweep tests share: task functions for workers (importable by reference, as tasks must be)
and the small matrix the in-process and Ray sweeps run."""
from __future__ import annotations

import json
import os
import time

from edgesdk.errors import ConversionError


def square(value: int) -> int:
    return value * value


def fail_conversion(name: str) -> None:
    raise ConversionError(f"cannot convert {name}")


def crash(value: int) -> int:
    os._exit(3)  # a worker dying in native code looks like this to its parent


def hold(seconds: float) -> tuple[float, float]:
    """Start and end times of a busy wait (to see whether two measurements overlap)."""
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


HELD_FOLDER = "EDGESDK_TEST_HELD_FOLDER"  # set before the Ray cluster starts, so its workers see it


def held_classifier():
    """A sweep model whose export waits: each attempt writes ``attempt-<pid>`` into the folder
    named by $EDGESDK_TEST_HELD_FOLDER, then waits (up to 2 minutes) for a ``release`` file there,
    so a test can kill the worker mid-export by pid."""
    from pathlib import Path

    from examples.python.tiny_models import classifier

    folder = Path(os.environ[HELD_FOLDER])
    (folder / f"attempt-{os.getpid()}").write_text("")
    deadline = time.time() + 120
    while not (folder / "release").exists() and time.time() < deadline:
        time.sleep(0.05)
    return classifier()


MATRIX = """\
name: tiny
models:
  - factory: examples.python.tiny_models:classifier
    name: classifier
    inputs: {features: 1x40x17}
  - factory: tests.sweep.workloads:missing_model
    name: broken
    inputs: {x: 1x4}
formats: [onnx]
precisions: [fp32, int8-weight-only]   # ONNX has no weight-only int8: skipped cells
devices: [local, fake-board]
profile: {runs: 5, warmup: 1, energy: auto}
"""


def read_rows(folder) -> dict:
    """results.jsonl of a sweep folder, by cell."""
    return {row["cell"]: row for row in map(json.loads, (folder / "results.jsonl").read_text().splitlines())}
