"""Task functions the executor tests send to workers (importable by reference, as tasks must be)."""
from __future__ import annotations

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
