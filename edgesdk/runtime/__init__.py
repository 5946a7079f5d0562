"""The torch-free runtime: load a bundle (or a lone .onnx/.tflite) and run or stream it.

Depends on numpy plus onnxruntime and/or a LiteRT interpreter; never imports torch.
"""
from __future__ import annotations

from edgesdk.runtime.model import Model, StateInfo, Stream, TensorInfo, load

__all__ = ["Model", "StateInfo", "Stream", "TensorInfo", "load"]
