"""The backend interface and the choice between backends."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

# One discovery for every layer: devices/backends.py answers what is installed here.
from edgesdk.devices.backends import available_backends, litert_module
from edgesdk.errors import UsageError

__all__ = ["BACKENDS", "BACKEND_OF_FORMAT", "FORMAT_OF_BACKEND", "Backend", "available_backends",
           "litert_module", "open_backend"]

BACKENDS = ("onnxruntime", "litert")
FORMAT_OF_BACKEND = {"onnxruntime": "onnx", "litert": "tflite"}
BACKEND_OF_FORMAT = {fmt: backend for backend, fmt in FORMAT_OF_BACKEND.items()}


class Backend:
    """One loaded artifact. Names here are the artifact's own tensor names.

    Attributes:
        name: "onnxruntime" or "litert".
        providers: what actually executes (onnxruntime providers, or the LiteRT delegate).
        input_shapes: backend input name -> shape (ints, or str for symbolic dims).
    """

    name = "backend"
    providers: list[str]
    input_shapes: dict[str, list[int | str]]
    input_dtypes: dict[str, str]
    # Ops that keep state inside the engine between calls (empty: every call is independent).
    internal_state: list[str] = []

    def fresh(self) -> "Backend":
        """A new engine of the same artifact (for internal state: at its initial values)."""
        raise NotImplementedError

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        raise NotImplementedError


def open_backend(
    backend: str,
    path: str | Path,
    providers: Sequence[str] | None = None,
    strict_providers: bool = False,
    num_threads: int | None = None,
    provider_options: Mapping[str, Mapping[str, object]] | None = None,
) -> Backend:
    """Open ``path`` with the named backend (``provider_options``: onnxruntime provider -> options)."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; one of: {', '.join(BACKENDS)}")
    if backend == "onnxruntime":
        from edgesdk.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, providers=providers, strict_providers=strict_providers,
                                  num_threads=num_threads, provider_options=provider_options)
    from edgesdk.runtime.backends.litert import LiteRTBackend

    return LiteRTBackend(path, num_threads=num_threads, strict_providers=strict_providers, providers=providers)
