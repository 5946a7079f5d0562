"""onnxruntime backend. Provider fallback is reported, never silent."""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgesdk.errors import BackendUnavailable
from edgesdk.runtime.backends.base import Backend

log = logging.getLogger(__name__)

# Preference when the caller names no providers: accelerators first, CPU last.
DEFAULT_PROVIDER_ORDER = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CoreMLExecutionProvider",
    "CPUExecutionProvider",
)

ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


@functools.lru_cache(maxsize=1)
def _device_profile():
    from edgesdk.devices import detect_device

    return detect_device().profile


def profile_providers(available: Sequence[str]) -> list[str]:
    """The detected device profile's provider order, kept where available (CPU last).

    Where detection fails, accelerators first in DEFAULT_PROVIDER_ORDER; either way the
    providers in use are reported by the session, never assumed.
    """
    from edgesdk.devices import preferred_providers

    try:
        chosen = preferred_providers(_device_profile(), available)
    except (OSError, ValueError) as error:
        log.warning("device detection failed (%s); using the default provider order", error)
        chosen = []
    return chosen or [p for p in DEFAULT_PROVIDER_ORDER if p in available] or list(available)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        providers: Sequence[str] | None = None,
        strict_providers: bool = False,
        num_threads: int | None = None,
        provider_options: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        try:
            import onnxruntime
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed; pip install onnxruntime") from None
        available = onnxruntime.get_available_providers()
        if providers:
            missing = [p for p in providers if p not in available]
            if missing and strict_providers:
                raise BackendUnavailable(
                    f"onnxruntime providers not available here: {', '.join(missing)} "
                    f"(available: {', '.join(available)})"
                )
            requested = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        else:
            requested = profile_providers(available)
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: keep the user's terminal clean
        try:
            options_per_provider = [dict((provider_options or {}).get(p, {})) for p in requested]
            self.session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=requested, provider_options=options_per_provider
            )
        except Exception as error:  # onnxruntime raises its own unrelated types
            raise BackendUnavailable(f"onnxruntime could not load {path}: {error}") from None
        self.providers = list(self.session.get_providers())
        self.requested_providers = list(providers or requested)
        dropped = [p for p in self.requested_providers if p not in self.providers]
        self.fallback = dropped
        if dropped:
            if strict_providers:
                raise BackendUnavailable(
                    f"onnxruntime fell back from {', '.join(dropped)} to {', '.join(self.providers)}"
                )
            log.warning("onnxruntime: %s unavailable, running on %s", ", ".join(dropped), ", ".join(self.providers))
        self.input_shapes = {i.name: graph_dims(i.name, i.shape) for i in self.session.get_inputs()}
        self.input_dtypes = {i.name: ONNX_TYPES.get(i.type, i.type) for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, feeds: Mapping[str, np.ndarray], output_names: Sequence[str]) -> list[np.ndarray]:
        return self.session.run(list(output_names), dict(feeds))


def graph_dims(tensor: str, shape: Sequence[Any]) -> list[int | str]:
    """An ONNX graph shape as edgesdk writes shapes: ints where fixed, a symbol where not.

    onnxruntime reports a dim with no name as None. Each such dim is its own unknown, so it gets a
    symbol of its own (``x.axis1``); one shared "None" would force every unnamed dim of every
    input to the same size.
    """
    return [d if isinstance(d, int) and d >= 0 else (d if isinstance(d, str) and d else f"{tensor}.axis{axis}")
            for axis, d in enumerate(shape)]
