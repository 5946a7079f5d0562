"""Look inside artifacts without torch: op histograms for ONNX and TFLite files."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from edgesdk.errors import BackendUnavailable


def _sorted_counts(names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _onnx_nodes(nodes: Iterable[Any]) -> Iterator[Any]:
    """Every node, and every node of the subgraphs its attributes hold (If branches, Loop and
    Scan bodies), at any depth."""
    for node in nodes:
        yield node
        for attribute in node.attribute:
            yield from _onnx_nodes(n for graph in (*([attribute.g] if attribute.HasField("g") else []),
                                                   *attribute.graphs) for n in graph.node)


def onnx_op_histogram(path: str | Path) -> dict[str, int]:
    """Node count per op type, including nodes inside control-flow subgraphs (If, Loop, Scan)
    and the file's local functions (the control-flow node itself counts too)."""
    try:
        import onnx
    except ImportError:
        raise BackendUnavailable("counting ONNX ops needs the onnx package; pip install onnx") from None
    model = onnx.load(str(path), load_external_data=False)
    nodes = list(_onnx_nodes(model.graph.node))
    for function in model.functions:
        nodes.extend(_onnx_nodes(function.node))
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


def describe(path: str | Path) -> dict:
    """Everything ``edgesdk inspect`` shows, for a bundle folder or a lone .onnx / .tflite.

    For a bundle: the manifest, plus op histograms (read from the manifest, or counted).
    For a lone file: the manifest its metadata gives (ONNX) or its signature (TFLite).
    """
    from edgesdk.errors import UsageError
    from edgesdk.runtime.manifest import read_manifest
    from edgesdk.runtime.model import lone_onnx_manifest, lone_tflite_manifest

    path = Path(path)
    if path.is_dir():
        manifest = read_manifest(path, verify_hashes=True)
        folder = path
    elif path.suffix in (".onnx", ".tflite") and path.is_file():
        manifest = lone_onnx_manifest(path) if path.suffix == ".onnx" else lone_tflite_manifest(path)
        folder = path.parent
    else:
        raise UsageError(f"{path} is neither a bundle folder nor a .onnx/.tflite file")
    for artifact in manifest["artifacts"]:
        if "op_histogram" not in artifact:
            artifact["op_histogram"] = op_histogram(folder / artifact["file"])
        if "size_bytes" not in artifact:
            artifact["size_bytes"] = (folder / artifact["file"]).stat().st_size
        if artifact["format"] == "tflite":
            from edgesdk.runtime.backends.litert import RESOURCE_VARIABLE_OPS

            # State the file keeps inside the interpreter: no state input or output shows it.
            internal = [op for op in RESOURCE_VARIABLE_OPS if op in artifact["op_histogram"]]
            if internal:
                artifact["internal_state"] = internal
    return manifest
