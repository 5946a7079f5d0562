"""edgesdk: efficient transformers from research checkpoints to edge devices.

    import edgesdk
    model = edgesdk.create_model("lmuformer", preset="scv2", checkpoint="best.pth")
    edgesdk.export(model, "out/kws", formats=("onnx", "tflite"), mode="stream")
    m = edgesdk.load("out/kws")

Importing edgesdk imports no torch: ``create_model`` and ``export`` import it when called.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgesdk._version import __version__

__all__ = ["create_model", "export", "load", "wrap", "__version__"]

if TYPE_CHECKING:
    from edgesdk.runtime import Model


def create_model(name: str, preset: str | None = None, checkpoint: Any = None, seed: int | None = 0) -> Any:
    """Build a registered model (torch nn.Module in eval mode); see edgesdk.models.registry."""
    from edgesdk.models.registry import create_model as _create_model

    return _create_model(name, preset=preset, checkpoint=checkpoint, seed=seed)


def export(model: Any, output: Any, formats: Any = ("onnx", "tflite"), mode: str = "full", **options: Any) -> Any:
    """Export a module to a validated bundle folder; see edgesdk.exporters.bundle.export."""
    from edgesdk.exporters.bundle import export as _export

    return _export(model, output, formats=formats, mode=mode, **options)


def load(path: Any, backend: str = "auto", **options: Any) -> "Model":
    """Load a bundle or a lone .onnx/.tflite in the torch-free runtime; see edgesdk.runtime.load."""
    from edgesdk.runtime import load as _load

    return _load(path, backend=backend, **options)


def wrap(path: Any, output: Any, **contract: Any) -> Any:
    """A bundle around a stateful .onnx/.tflite edgesdk did not write; see edgesdk.runtime.wrap.wrap."""
    from edgesdk.runtime.wrap import wrap as _wrap

    return _wrap(path, output, **contract)
