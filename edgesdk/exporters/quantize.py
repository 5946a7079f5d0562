"""Dynamic-range int8 quantization of a TFLite artifact (ai-edge-quantizer).

Weights of fully connected, convolution and batch-matmul ops become int8, one scale per output
channel; activations stay float32 in the file and the kernels quantize them on the fly
(XNNPACK's int8 path). At batch 1 a step is bound by reading weights, so a quarter of the bytes
is most of the win. The result is lossy, so validation judges it by signal-to-quantization-noise
ratio (``runtime/compare.py``), not by the float tolerance.

A family can name weights that must stay exact (the LMU recurrence, whose eigenvalues sit next
to 1 and whose error would accumulate frame after frame). litert-torch's tensor names do not say
which module an op came from, so those weights are found by content: an op whose constant
operand equals one of them, or its transpose, is left in float32.
"""
from __future__ import annotations

import re
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edgesdk.errors import BackendUnavailable, ConversionError
from edgesdk.exporters.capture import ConverterLog

QUANTIZATIONS = ("int8",)
PRECISION = {"int8": "int8-dynamic"}
# Ops whose constant weights the int8 recipe quantizes.
WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL", "EMBEDDING_LOOKUP")


def quantizer_version() -> str:
    try:
        return f"ai-edge-quantizer {package_metadata.version('ai-edge-quantizer')}"
    except package_metadata.PackageNotFoundError:
        return "ai-edge-quantizer (unknown version)"


def ops_to_keep_float(path: Path, keep_float: Mapping[str, np.ndarray]) -> tuple[list[tuple[Any, str]], list[str]]:
    """(op name, scope) of every weight op whose constant operand is one of ``keep_float``."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.utils import tfl_flatbuffer_utils as flatbuffer

    if not keep_float:
        return [], []
    model = flatbuffer.read_model(path)
    wanted = {name: np.asarray(array, dtype=np.float32) for name, array in keep_float.items()}
    ops, found = [], set()
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            op_name = flatbuffer.TFL_OP_CODE_TO_NAME.get(model.operatorCodes[op.opcodeIndex].builtinCode)
            if op_name not in WEIGHT_OPS:
                continue
            for index in op.inputs[1:]:
                data = None if index < 0 else flatbuffer.get_tensor_data(subgraph.tensors[index], model.buffers)
                if data is None or data.dtype != np.float32:
                    continue
                matches = [name for name, array in wanted.items() if _same_values(array, data)]
                if matches:
                    found.update(matches)
                    ops.append((qtyping.TFLOperationName(op_name), flatbuffer.get_op_scope(op, subgraph.tensors)))
                    break
    return ops, sorted(found)


def _same_values(weight: np.ndarray, data: np.ndarray) -> bool:
    """Equal up to layout: converters reshape, transpose and move channels last, never change values."""
    return weight.size == data.size and np.array_equal(np.sort(weight, axis=None), np.sort(data, axis=None))


def quantize_tflite(path: Path, keep_float: Mapping[str, np.ndarray], converter_log: ConverterLog) -> dict[str, Any]:
    """Rewrite the float ``path`` in place with int8 weights; return the artifact's new facts."""
    try:
        with converter_log.capture("import ai_edge_quantizer"):
            from ai_edge_quantizer import quantizer, recipe
            from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError as error:
        raise BackendUnavailable(f"int8 quantization needs ai-edge-quantizer ({error}); pip install 'edgesdk[export]'") from None

    keep_ops, kept = ops_to_keep_float(path, keep_float)
    try:
        with converter_log.capture("ai_edge_quantizer dynamic_wi8_afp32"):
            engine = quantizer.Quantizer(str(path))
            engine.load_quantization_recipe(recipe.dynamic_wi8_afp32())
            for op_name, scope in keep_ops:
                # The scope is the op's output tensor names; anchor it so no other op matches.
                engine.update_quantization_recipe(regex=f"^{re.escape(scope)}$", operation_name=op_name,
                                                  algorithm_key=AlgorithmName.NO_QUANTIZE)
            quantized = engine.quantize().quantized_model
    except Exception as error:  # the quantizer raises many unrelated types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(f"int8 quantization of {path.name} failed: {first_line}") from error
    float_bytes = path.stat().st_size
    path.write_bytes(quantized)
    return {
        "precision": PRECISION["int8"],
        "quantizer": f"{quantizer_version()}, dynamic_wi8_afp32 (per-channel int8 weights, float32 activations)",
        "kept_float": kept,
        "float_size_bytes": float_bytes,
    }
