"""Look inside artifacts without torch: op histograms for ONNX and TFLite files."""
from __future__ import annotations

from pathlib import Path

from edgesdk.errors import BackendUnavailable


def _sorted_counts(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def onnx_op_histogram(path: str | Path) -> dict[str, int]:
    """Node count per op type, including nodes inside the file's local functions."""
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("counting ONNX ops needs the onnx package; pip install onnx") from None
    model = onnx.load(str(path), load_external_data=False)
    nodes = list(model.graph.node)
    for function in model.functions:
        nodes.extend(function.node)
    return _sorted_counts([node.op_type for node in nodes])


def tflite_op_histogram(path: str | Path) -> dict[str, int]:
    """Operator count per builtin op, from the LiteRT interpreter's op details."""
    from edgesdk.runtime.backends.litert import LiteRTBackend

    engine = LiteRTBackend(path)
    details = engine.interpreter._get_ops_details()  # the only public-enough op listing LiteRT has
    return _sorted_counts([op["op_name"] for op in details])


def op_histogram(path: str | Path) -> dict[str, int]:
    path = Path(path)
    return onnx_op_histogram(path) if path.suffix == ".onnx" else tflite_op_histogram(path)
