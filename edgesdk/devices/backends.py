"""Which runtimes, onnxruntime execution providers and LiteRT delegates are usable here.

Answers come from the installed packages themselves (``onnxruntime.get_available_providers()``;
for LiteRT, whether an interpreter module imports and whether each delegate's shared library
loads), never from the device profile: the profile says what to prefer, this says what exists.
"""
from __future__ import annotations

import ctypes
import importlib
import logging

logger = logging.getLogger(__name__)

# Interpreter modules in the order the runtime tries them (DESIGN.md).
LITERT_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")
# Delegate name -> shared libraries that provide it. XNNPACK is built into the interpreter.
DELEGATE_LIBRARIES = {
    "gpu": ("libtensorflowlite_gpu_delegate.so", "libLiteRtGpuAccelerator.so"),
    "nnapi": ("libnnapi_delegate.so", "libneuralnetworks.so"),
    "edgetpu": ("libedgetpu.so.1",),
    "hexagon": ("libhexagon_delegate.so",),
}


def onnxruntime_info() -> dict:
    """``{"installed", "version", "providers"}`` for onnxruntime."""
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as error:
        return {"installed": False, "version": None, "providers": [], "reason": str(error)}
    return {
        "installed": True,
        "version": getattr(ort, "__version__", "unknown"),
        "providers": list(ort.get_available_providers()),
    }


def _loadable(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def litert_module() -> str | None:
    """The first LiteRT interpreter module that imports here, in order of preference; else None."""
    for name in LITERT_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return name
    return None


def litert_info() -> dict:
    """``{"installed", "module", "version", "delegates"}`` for LiteRT (or tflite-runtime)."""
    name = litert_module()
    if name is not None:
        package = importlib.import_module(name.split(".")[0])
        # XNNPACK is the interpreter's built-in CPU delegate in every LiteRT/TF Lite >= 2.x build.
        delegates = ["xnnpack"]
        delegates += [
            delegate
            for delegate, libraries in DELEGATE_LIBRARIES.items()
            if any(_loadable(library) for library in libraries)
        ]
        return {
            "installed": True,
            "module": name,
            "version": getattr(package, "__version__", "unknown"),
            "delegates": delegates,
        }
    return {"installed": False, "module": None, "version": None, "delegates": [], "reason": "no LiteRT interpreter module imports"}


def onnxruntime_installed() -> bool:
    """Whether onnxruntime imports here."""
    try:
        importlib.import_module("onnxruntime")
    except ImportError:
        return False
    return True


def available_backends() -> list[str]:
    """Backends that can run here, in the order ``"onnxruntime"``, ``"litert"``.

    The one discovery every layer uses (the runtime's loader and self-test, ``edgesdk devices``):
    a backend counts when its package imports, not merely when it is on the path.
    """
    found = []
    if onnxruntime_installed():
        found.append("onnxruntime")
    if litert_module() is not None:
        found.append("litert")
    return found
