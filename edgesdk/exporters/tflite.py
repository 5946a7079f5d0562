"""ExportSpec -> model.tflite through litert-torch (no TensorFlow needed).

LiteRT files are exported at the example shapes (static). The signature runner names the
inputs ``args_0, args_1, ...`` and the outputs ``output_0, ...`` in call and return order;
the manifest maps logical names to these.
"""
from __future__ import annotations

import logging
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import torch

from edgesdk.errors import BackendUnavailable
from edgesdk.exporters.capture import ConverterLog
from edgesdk.exporters.onnx import conversion_error
from edgesdk.spec import ExportSpec

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"


def converter_version() -> str:
    try:
        return f"litert-torch {package_metadata.version('litert-torch')}"
    except package_metadata.PackageNotFoundError:
        return "litert-torch (unknown version)"


def export_tflite(spec: ExportSpec, path: Path, converter_log: ConverterLog) -> dict[str, Any]:
    """Write ``path`` and return the manifest facts of this artifact."""
    try:
        with converter_log.capture("import litert_torch"):
            import litert_torch
    except ImportError as error:
        raise BackendUnavailable(
            f"TFLite export needs litert-torch ({error}); pip install 'edgesdk[export]'"
        ) from None

    arguments = spec.example_args()
    try:
        with converter_log.capture("litert_torch.convert"), torch.no_grad():
            edge_model = litert_torch.convert(spec.module, arguments)
            edge_model.export(str(path))
    except Exception as error:  # the converter raises many unrelated types
        raise conversion_error("TFLite", error) from error

    return {
        "format": "tflite",
        "converter": converter_version(),
        "signature": SIGNATURE,
        "batch": int(arguments[0].shape[0]) if arguments[0].dim() else 1,  # static: the runtime pads up to it
        "inputs": {name: f"args_{index}" for index, name in enumerate(spec.input_names)},
        "outputs": {name: f"output_{index}" for index, name in enumerate(spec.all_output_names)},
        "static_shapes": {
            name: list(argument.shape) for name, argument in zip(spec.input_names, arguments)
        },
    }
