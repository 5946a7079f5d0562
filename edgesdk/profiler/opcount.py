"""Count multiply-accumulates in an ONNX graph, for bundles whose manifest has no ``ops`` section.

Only MatMul, Gemm, Conv and ConvTranspose are counted (they hold nearly all the arithmetic of a
transformer); elementwise ops, normalisation, softmax and activations are not. The result says so
in its ``counted`` sentence, and lists the nodes it could not size. Shapes come from ONNX shape
inference with the graph inputs pinned to the sizes actually fed.

``onnx`` is an export dependency, not a runtime one: it is imported lazily, and when it is
missing ``count_onnx_macs`` raises MeasurementUnavailable with that reason, so a caller can
degrade to "no estimate" instead of failing.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Mapping, Sequence

from edgesdk.errors import MeasurementUnavailable

logger = logging.getLogger(__name__)

COUNTED_OPS = ("MatMul", "Gemm", "Conv", "ConvTranspose")
COUNTED_SENTENCE = (
    "multiply-accumulates of MatMul, Gemm, Conv and ConvTranspose nodes in the ONNX graph, at the "
    "profiled input shapes; elementwise ops, normalisation, softmax and activations not counted"
)


def _shape_map(model) -> dict[str, list[int | None]]:
    """Tensor name -> shape (None for unknown dims) from inputs, outputs, value_info, initializers."""
    shapes: dict[str, list[int | None]] = {}
    graph = model.graph
    for info in list(graph.input) + list(graph.output) + list(graph.value_info):
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        shapes[info.name] = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor_type.shape.dim]
    for initializer in graph.initializer:
        shapes[initializer.name] = list(initializer.dims)
    return shapes


def _known(shape: Sequence[int | None] | None) -> bool:
    return shape is not None and all(dim is not None for dim in shape)


def _node_macs(node, shapes: Mapping[str, list[int | None]]) -> int | None:
    """MACs of one node, or None when a needed shape is unknown."""
    if node.op_type == "MatMul":
        left, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not (_known(left) and _known(out)) or not left:
            return None
        # [..., M, K] x [..., K, N] -> [..., M, N]: one MAC per output element per K.
        return math.prod(out) * left[-1]
    if node.op_type == "Gemm":
        left, out = shapes.get(node.input[0]), shapes.get(node.output[0])
        if not (_known(left) and _known(out)) or len(left) != 2:
            return None
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        inner = left[0] if trans_a else left[1]
        return math.prod(out) * inner
    if node.op_type == "Conv":
        weight, out = shapes.get(node.input[1]), shapes.get(node.output[0])
        if not (_known(weight) and _known(out)):
            return None
        # weight [M, C/group, k...]: each output element sums C/group x prod(k) products.
        return math.prod(out) * math.prod(weight[1:])
    if node.op_type == "ConvTranspose":
        data, weight = shapes.get(node.input[0]), shapes.get(node.input[1])
        if not (_known(data) and _known(weight)):
            return None
        # weight [C, M/group, k...]: each input element scatters into M/group x prod(k) outputs.
        return math.prod(data) * math.prod(weight[1:])
    return 0


def count_onnx_macs(path: str | os.PathLike, input_shapes: Mapping[str, Sequence[int]] | None = None) -> dict:
    """MACs per inference of the ONNX model at ``path``, as a manifest-style ``ops`` section.

    Args:
        path: the model.onnx file.
        input_shapes: graph input name -> concrete shape, fixing symbolic dimensions.

    Returns:
        ``{"per": "inference", "macs", "accumulates": 0, "binary_ops": 0, "counted", "source":
        "counted:onnx-graph", "nodes_counted", "nodes_unsized"}``.

    Raises:
        MeasurementUnavailable: onnx is not installed or the file cannot be read.
    """
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        raise MeasurementUnavailable("cannot count ops from the ONNX graph: the onnx package is not installed") from None
    try:
        model = onnx.load(os.fspath(path))
    except Exception as error:  # noqa: BLE001 - OSError, protobuf DecodeError, onnx's own errors
        raise MeasurementUnavailable(f"cannot read {path} to count ops: {error}") from None
    if model.functions:
        try:
            from onnx import inliner

            model = inliner.inline_local_functions(model)
        except (ImportError, AttributeError) as error:
            logger.debug("could not inline local functions: %s", error)
    for graph_input in model.graph.input:
        shape = (input_shapes or {}).get(graph_input.name)
        if shape is None:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        if len(dims) != len(shape):
            continue
        for dim, size in zip(dims, shape):
            dim.ClearField("dim_param")
            dim.dim_value = int(size)
    try:
        model = shape_inference.infer_shapes(model, data_prop=True)
    except Exception as error:  # noqa: BLE001 - onnx raises assorted C++ errors; counting degrades
        logger.warning("ONNX shape inference failed (%s); counting with the shapes stored in the file", error)
    shapes = _shape_map(model)
    macs = 0
    counted = 0
    unsized = []
    for node in model.graph.node:
        if node.op_type not in COUNTED_OPS:
            continue
        value = _node_macs(node, shapes)
        if value is None:
            unsized.append(node.name or node.op_type)
            continue
        macs += value
        counted += 1
    return {
        "per": "inference",
        "macs": int(macs),
        "accumulates": 0,
        "binary_ops": 0,
        "counted": COUNTED_SENTENCE,
        "source": "counted:onnx-graph",
        "nodes_counted": counted,
        "nodes_unsized": unsized,
    }
