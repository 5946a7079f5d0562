"""Which MatMul/Gemm pay for dynamic int8 at the shape they run at, measured on this machine.

A dynamically quantized MatMul quantizes its activation on every call (one
DynamicQuantizeLinear per activation, shared by every op that reads it) before the int8
product. At one frame per call the product is a matrix-vector product: the int8 weights save
memory traffic, but for a small weight the quantization and the extra kernel cost as much as
they save, or more. So the recipe does not guess by size: it runs the float and the int8 form
of each *group* (the ops reading one activation) at the rows per call the model really runs
with, on this CPU, one thread, and quantizes only the groups whose int8 form is faster by
:data:`MIN_SPEEDUP`. The others stay float and the recipe says why, with the figures.

The timing graph holds copies of the group with their own weights, as many as make up the
model's own weight footprint, so the weights come from the cache level they come from in the
model. Time is the calling thread's CPU time (onnxruntime with one thread runs kernels on the
caller), so other processes on a shared machine do not enter the figure; float and int8
alternate in short blocks and the speedup is the median of the per-round ratios.
"""
from __future__ import annotations

import functools
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

# Quantize a group when its int8 form is at least this much faster; below it, the accuracy of
# float is worth more than a speed-up inside the noise of one measurement.
MIN_SPEEDUP = 1.05
# Timing budget per group and variant (seconds of CPU time, split into alternating blocks).
BLOCK_SECONDS = 0.004
ROUNDS = 9
MAX_COPIES = 48
# Copies stop here too (multiply-accumulates per timed call): a group this large streams its
# activations through memory whatever the copies, and more of them only lengthen the export.
MAX_COPY_MACS = 50_000_000


@dataclass(frozen=True)
class MatMulGroup:
    """The MatMul/Gemm ops that read one activation (they share its DynamicQuantizeLinear).

    Attributes:
        activation: the tensor they read.
        rows: rows of that activation per call (product of its leading dims, seen on a real call).
        depth: K, the activation's last dim.
        widths: N of each op, in ``nodes`` order.
        nodes: the ops' names in the float graph.
    """

    activation: str
    rows: int
    depth: int
    widths: tuple[int, ...]
    nodes: tuple[str, ...]

    @property
    def shape_text(self) -> str:
        return f"{self.rows} row(s) x K={self.depth} x N={'+'.join(map(str, self.widths))}"


@dataclass(frozen=True)
class GroupTiming:
    """Measured time of one group per call, float and int8 (microseconds, thread CPU time)."""

    float_us: float
    int8_us: float
    speedup: float  # median over rounds of float time / int8 time
    copies: int

    def text(self) -> str:
        return (f"measured float {self.float_us:.1f} us vs int8 {self.int8_us:.1f} us per call "
                f"({self.speedup:.2f}x; {self.copies} copies, thread CPU time, one thread)")


@dataclass(frozen=True)
class PayoffDecision:
    """The groups to quantize and the groups kept float, each with its timing."""

    quantize: tuple[tuple[MatMulGroup, GroupTiming], ...]
    keep: tuple[tuple[MatMulGroup, GroupTiming], ...]
    min_speedup: float = MIN_SPEEDUP

    def kept_reason(self, group: MatMulGroup, timing: GroupTiming) -> str:
        return (f"too small to pay for int8 at {group.rows} row(s) per call: K x N = {group.depth} x "
                f"{'+'.join(map(str, group.widths))}, {timing.text()}; below the {self.min_speedup:.2f}x "
                "a group must gain")

    def notes(self) -> list[str]:
        """One line per distinct quantized shape: what it measured (groups of one shape share one
        measurement, :func:`time_group` is cached per shape; the first group's figures are shown)."""
        seen: dict[str, tuple[int, GroupTiming]] = {}
        for group, timing in self.quantize:
            count, first = seen.get(group.shape_text, (0, timing))
            seen[group.shape_text] = (count + 1, first)
        return [f"quantized {count} group(s) of {shape}: {timing.text()}" for shape, (count, timing) in seen.items()]


def decide(groups: Sequence[MatMulGroup], timings: Sequence[GroupTiming], min_speedup: float = MIN_SPEEDUP) -> PayoffDecision:
    """Quantize the groups whose measured speedup reaches ``min_speedup``; keep the others float."""
    paired = list(zip(groups, timings))
    return PayoffDecision(quantize=tuple(p for p in paired if p[1].speedup >= min_speedup),
                          keep=tuple(p for p in paired if p[1].speedup < min_speedup), min_speedup=min_speedup)


def matmul_groups(path: Path, nodes: Sequence[tuple[Any, np.ndarray]], feeds: Mapping[str, np.ndarray]) -> list[MatMulGroup]:
    """Group ``nodes`` (node, constant weight) by the activation they read, with the rows per call
    seen when the float file at ``path`` runs once on ``feeds`` (graph input names)."""
    values = activation_shapes(path, sorted({node.input[0] for node, _ in nodes}), feeds)
    groups: dict[str, list[tuple[Any, np.ndarray]]] = {}
    for node, weight in nodes:
        groups.setdefault(node.input[0], []).append((node, weight))
    found = []
    for activation, members in groups.items():
        shape = values[activation]
        widths = []
        for node, weight in members:
            transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            widths.append(int(weight.shape[0] if transposed else weight.shape[-1]))
        found.append(MatMulGroup(activation=activation, rows=int(math.prod(shape[:-1])) if len(shape) > 1 else 1,
                                 depth=int(shape[-1]), widths=tuple(widths), nodes=tuple(n.name for n, _ in members)))
    return found


def activation_shapes(path: Path, names: Sequence[str], feeds: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The shapes of the tensors ``names`` when the file at ``path`` runs once on ``feeds``."""
    import onnx
    import onnxruntime

    model = onnx.load(str(path))
    known = {o.name for o in model.graph.output}
    for name in names:
        if name not in known:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    values = session.run(list(names), {k: v for k, v in feeds.items() if k in wanted})
    return {name: tuple(int(d) for d in value.shape) for name, value in zip(names, values)}


def _group_graph(rows: int, depth: int, widths: tuple[int, ...], copies: int) -> Any:
    """``copies`` of the group, each reading its own input with its own weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights, inputs, outputs = [], [], [], []
    for copy in range(copies):
        inputs.append(helper.make_tensor_value_info(f"x{copy}", TensorProto.FLOAT, [rows, depth]))
        for index, width in enumerate(widths):
            name = f"w{copy}_{index}"
            weights.append(numpy_helper.from_array((rng.standard_normal((depth, width)) * 0.05).astype(np.float32), name))
            nodes.append(helper.make_node("MatMul", [f"x{copy}", name], [f"y{copy}_{index}"], name=f"mm{copy}_{index}"))
            outputs.append(helper.make_tensor_value_info(f"y{copy}_{index}", TensorProto.FLOAT, [rows, width]))
    graph = helper.make_graph(nodes, "payoff", inputs, outputs, weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@functools.lru_cache(maxsize=256)
def time_group(rows: int, depth: int, widths: tuple[int, ...], footprint_bytes: int,
               quantize_options: tuple[tuple[str, Any], ...]) -> GroupTiming:
    """Float vs int8 time of one group per call on this machine (see the module docstring).

    ``quantize_options``: the recipe's own ``quantize_dynamic`` weight options, so the timed
    int8 form is the one the recipe writes. Cached per process: one export measures a shape once.
    """
    import onnx

    group_bytes = 4 * depth * sum(widths)
    copies = max(1, min(MAX_COPIES, round(footprint_bytes / group_bytes), MAX_COPY_MACS // (rows * depth * sum(widths))))
    rng = np.random.default_rng(1)
    feeds = {f"x{copy}": rng.standard_normal((rows, depth)).astype(np.float32) for copy in range(copies)}
    with tempfile.TemporaryDirectory() as folder:
        float_path, int8_path = Path(folder) / "group.onnx", Path(folder) / "group.int8.onnx"
        onnx.save(_group_graph(rows, depth, widths, copies), str(float_path))
        _quantize_matmuls(float_path, int8_path, quantize_options)
        float_blocks, int8_blocks = _alternate(_sessions(float_path, int8_path), feeds)
    ratios = float_blocks / int8_blocks
    return GroupTiming(float_us=float(np.median(float_blocks)) / copies, int8_us=float(np.median(int8_blocks)) / copies,
                       speedup=round(float(np.median(ratios)), 3), copies=copies)


def _alternate(sessions: Sequence[Any], feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-call microseconds of each session over ROUNDS alternating blocks (thread CPU time)."""
    for session in sessions:
        for _ in range(3):
            session.run(None, feeds)
    start = time.thread_time_ns()
    sessions[0].run(None, feeds)
    once = max(time.thread_time_ns() - start, 1_000)
    calls = max(1, min(200, int(BLOCK_SECONDS * 1e9 / once)))
    blocks: list[list[float]] = [[], []]
    for round_index in range(ROUNDS):
        order = (0, 1) if round_index % 2 == 0 else (1, 0)
        for index in order:
            start = time.thread_time_ns()
            for _ in range(calls):
                sessions[index].run(None, feeds)
            blocks[index].append((time.thread_time_ns() - start) / calls / 1e3)
    return np.array(blocks[0]), np.array(blocks[1])


def _sessions(*paths: Path) -> list[Any]:
    import onnxruntime

    sessions = []
    for path in paths:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        sessions.append(onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
    return sessions


def weight_options(options: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    """Weight options as hashable pairs (onnx.py's FAST_WEIGHTS / ACCURATE_WEIGHTS) turned into
    quantize_dynamic keywords, the weight type named by its QuantType."""
    from onnxruntime.quantization import QuantType

    return {key: QuantType[value] if key == "weight_type" else value for key, value in options}


def _quantize_matmuls(float_path: Path, int8_path: Path, quantize_options: tuple[tuple[str, Any], ...]) -> None:
    """The recipe's own int8-dynamic MatMul quantization, preparation included, on a timing graph."""
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = float_path.with_suffix(".prepared.onnx")
    quant_pre_process(str(float_path), str(prepared), skip_optimization=True)
    quantize_dynamic(str(prepared), str(int8_path), op_types_to_quantize=["MatMul"], per_channel=True,
                     extra_options={"MatMulConstBOnly": True}, **weight_options(quantize_options))


# ---------------------------------------------------------------------------------------------
# 1-D convolutions as MatMul. onnxruntime's dynamic ConvInteger is slow on x86 (measured 0.25x
# of float for a 3x3 2-D conv; 1.4x with uint8 weights and 0.36x with int8 ones for LightHuBERT's
# 512-channel k=3 s=2 1-D conv at 7303 frames), while its MatMulInteger with signed 7-bit weights
# runs the same products 1.9x faster than the float Conv. A 1-D Conv with no padding, dilation or
# groups is exactly a MatMul on the frames' stacked windows (im2col: k strided slices of the input
# concatenated), so the recipe rewrites such a Conv into that float MatMul, which quantize_dynamic
# then quantizes like any other, where the measurement says the int8 form beats the float Conv.


@dataclass(frozen=True)
class ConvShape:
    """One 1-D Conv as it runs: [batch, in_channels, length] -> [batch, out_channels, frames]."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    length: int
    batch: int = 1

    @property
    def frames(self) -> int:
        return (self.length - self.kernel) // self.stride + 1

    @property
    def text(self) -> str:
        return (f"Conv1d {self.in_channels}->{self.out_channels} k={self.kernel} s={self.stride} on a length of {self.length} "
                f"({self.frames} outputs; as MatMul {self.batch * self.frames} row(s) x K={self.kernel * self.in_channels}"
                f" x N={self.out_channels})")


def plain_conv1d(node: Any, weight: np.ndarray) -> bool:
    """Whether ``node`` is a 1-D Conv the im2col MatMul reproduces exactly (no pads, dilation, groups)."""
    from onnx import helper

    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    return (node.op_type == "Conv" and weight.ndim == 3 and attributes.get("group", 1) == 1
            and not any(attributes.get("pads", [0])) and set(attributes.get("dilations", [1])) == {1}
            and auto_pad in (b"NOTSET", "NOTSET", b"VALID", "VALID"))


def conv_stride(node: Any) -> int:
    from onnx import helper

    return int(next((helper.get_attribute_value(a)[0] for a in node.attribute if a.name == "strides"), 1))


def convs_as_matmul(model: Any, names: Sequence[str]) -> list[str]:
    """Rewrite the Conv nodes ``names`` of ``model`` (in place) into Transpose, strided Slices,
    Concat, MatMul (+ Add bias), Transpose; returns the new MatMuls' names. The length stays
    dynamic: the slices' ends come from the input's shape at run time."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    wanted = set(names)
    rebuilt, matmuls = [], []
    for node in graph.node:
        if node.name not in wanted:
            rebuilt.append(node)
            continue
        weight = numpy_helper.to_array(initializers[node.input[1]])
        out_channels, in_channels, kernel = weight.shape
        stride = conv_stride(node)
        p = f"{node.name}/im2col"

        def constant(suffix: str, values: Sequence[int]) -> str:
            graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), f"{p}/{suffix}"))
            return f"{p}/{suffix}"

        # stacked[b, t, j * C + c] = x[b, c, t * stride + j]; matrix[j * C + c, o] = weight[o, c, j]
        graph.initializer.append(numpy_helper.from_array(
            np.ascontiguousarray(weight.transpose(2, 1, 0).reshape(kernel * in_channels, out_channels)), f"{p}/weight"))
        nodes = [helper.make_node("Transpose", [node.input[0]], [f"{p}/frames_last"], name=f"{p}/Transpose_in", perm=[0, 2, 1])]
        if kernel == 1 and stride == 1:
            stacked = f"{p}/frames_last"
        else:
            one, step = constant("one", [1]), constant("stride", [stride])
            nodes += [helper.make_node("Shape", [f"{p}/frames_last"], [f"{p}/shape"], name=f"{p}/Shape"),
                      helper.make_node("Slice", [f"{p}/shape", one, constant("two", [2])], [f"{p}/length"], name=f"{p}/Length"),
                      helper.make_node("Sub", [f"{p}/length", constant("kernel", [kernel])], [f"{p}/span"], name=f"{p}/Sub"),
                      helper.make_node("Div", [f"{p}/span", step], [f"{p}/last_frame"], name=f"{p}/Div"),
                      helper.make_node("Mul", [f"{p}/last_frame", step], [f"{p}/last_start"], name=f"{p}/Mul")]
            slices = []
            for j in range(kernel):
                nodes += [helper.make_node("Add", [f"{p}/last_start", constant(f"offset{j}", [j + 1])], [f"{p}/end{j}"], name=f"{p}/End{j}"),
                          helper.make_node("Slice", [f"{p}/frames_last", constant(f"start{j}", [j]), f"{p}/end{j}", one, step],
                                           [f"{p}/tap{j}"], name=f"{p}/Tap{j}")]
                slices.append(f"{p}/tap{j}")
            stacked = f"{p}/stacked"
            nodes.append(helper.make_node("Concat", slices, [stacked], name=f"{p}/Concat", axis=2))
        product = f"{p}/product"
        nodes.append(helper.make_node("MatMul", [stacked, f"{p}/weight"], [product], name=f"{p}/MatMul"))
        matmuls.append(f"{p}/MatMul")
        if len(node.input) > 2 and node.input[2]:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [f"{p}/biased"], name=f"{p}/Bias"))
            product = f"{p}/biased"
        nodes.append(helper.make_node("Transpose", [product], [node.output[0]], name=f"{p}/Transpose_out", perm=[0, 2, 1]))
        rebuilt += nodes
    del graph.node[:]
    graph.node.extend(rebuilt)
    used = {name for n in graph.node for name in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return matmuls


@functools.lru_cache(maxsize=64)
def time_conv(shape: ConvShape, quantize_options: tuple[tuple[str, Any], ...]) -> GroupTiming:
    """Float Conv vs its int8 im2col MatMul, one call each at ``shape`` (thread CPU time, one thread)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    weight = (rng.standard_normal((shape.out_channels, shape.in_channels, shape.kernel)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", strides=[shape.stride])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [shape.batch, shape.in_channels, shape.length])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape.batch, shape.out_channels, shape.frames])],
        [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": rng.standard_normal((shape.batch, shape.in_channels, shape.length)).astype(np.float32)}
    with tempfile.TemporaryDirectory() as folder:
        float_path, rewritten_path, int8_path = (Path(folder) / name for name in ("conv.onnx", "im2col.onnx", "im2col.int8.onnx"))
        onnx.save(model, str(float_path))
        convs_as_matmul(model, ["conv"])
        onnx.save(model, str(rewritten_path))
        _quantize_matmuls(rewritten_path, int8_path, quantize_options)
        float_blocks, int8_blocks = _alternate(_sessions(float_path, int8_path), feeds)
    return GroupTiming(float_us=float(np.median(float_blocks)), int8_us=float(np.median(int8_blocks)),
                       speedup=round(float(np.median(float_blocks / int8_blocks)), 3), copies=1)
