"""ONNX reduced precision through onnxruntime's own tools.

int8-dynamic: constant folding, shape inference (``quant_pre_process``), then
``quantize_dynamic`` on MatMul/Gemm with per-channel weights. The folding matters: the
dynamo exporter leaves some Gemm weights behind in-graph Reshape/Transpose nodes, and the
quantizer only quantizes a node whose weight is a constant initializer. Given one call's feeds,
the recipe quantizes only what measures faster in int8 on this machine (``payoff.py``): the
MatMul/Gemm groups at the rows per call the model runs with, and plain 1-D convolutions rewritten
as an exact im2col MatMul (kept only while the written file stays above the validation floor);
the rest stays float, each with its figures. Other convolutions join the quantized ops only where
a measurement on this CPU says int8 convolutions are faster (:func:`conv_int8_speedup`);
onnxruntime's ConvInteger is slow on many x86 CPUs.

int8-static: the same preparation, then ``quantize_static`` (QDQ format, per-channel weights,
MinMax calibration on real data); inputs and outputs stay float32.

fp16: ``onnxruntime.transformers.float16`` with float32 inputs and outputs kept
(``keep_io_types``), meant for GPU/NPU providers; on a CPU provider it is expected to be slower
than float32 (casts around every op without a float16 kernel). Its latency is measured. The
family's kept-float ops (and ``--keep-float``) stay float32 as in int8, with the ops between them,
and the converter's float32 -> float16 -> float32 Cast pairs between them are removed
(``_drop_round_trips``): without that, blocked ops still read float16-rounded tensors.

Every transform keeps the float file's ``metadata_props`` (``edgesdk.*``): quantizers write a new
ModelProto and drop them, so they are copied back and checked.
"""
from __future__ import annotations

import contextlib
import functools
import time
from collections import Counter
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from edgesdk.errors import BackendUnavailable, ConversionError, UsageError
from edgesdk.exporters.capture import ConverterLog
from edgesdk.exporters.precision import A16_HEADROOM, KeptFloat, PrecisionRecipe, compile_patterns
from edgesdk.exporters.precision.payoff import (
    MIN_SPEEDUP,
    ConvShape,
    PayoffDecision,
    activation_shapes,
    conv_stride,
    convs_as_matmul,
    decide,
    matmul_groups,
    plain_conv1d,
    time_conv,
    time_group,
    weight_options,
)
from edgesdk.runtime.compare import MIN_SQNR_DB, sqnr_db

WEIGHT_OPS = ("MatMul", "Gemm")
# int8 convolutions stay only if the written file is this far above the validation floor on the
# example feed: validation's own cases differ, and real speech was 0.5-1 dB lower than them.
CONV_MARGIN_DB = 1.0
# int8-dynamic weights, as quantize_dynamic keywords besides per_channel (hashable: the payoff cache key).
# FAST: signed 7-bit weights (reduce_range). onnxruntime's x86 AVX2 U8S8 kernel (vpmaddubsw) sums
# pairs of u8 x s8 products in int16 and saturates with full 8-bit weights (measured 25 dB vs 40 dB
# on the LMUFormer scv2 step); 7 bits cannot overflow (2 x 255 x 63 < 32767). Its packed weights are
# one byte each (U8U8 packs two), so it is the faster of the two: measured 1.6-2.1x vs 1.2-1.7x over
# float for one-row products of 256-1024 wide weights, 1.5-1.9x vs 1.2-1.4x at 228 rows.
# ACCURATE: 8-bit weights stored as uint8 (U8U8): about 6 dB better, used where int8 is for size only.
FAST_WEIGHTS: tuple[tuple[str, Any], ...] = (("weight_type", "QInt8"), ("reduce_range", True))
ACCURATE_WEIGHTS: tuple[tuple[str, Any], ...] = (("weight_type", "QUInt8"), ("reduce_range", False))
WEIGHT_SCHEMES = {
    FAST_WEIGHTS: "quantize_dynamic: per-channel signed 7-bit weights (reduce_range, U8S8: no int16 saturation in "
                  "onnxruntime's AVX2 kernels, one byte per packed weight), activations quantized per call "
                  "(uint8), one DynamicQuantizeLinear per activation shared by the ops that read it; only the "
                  "MatMul/Gemm groups measured to run faster in int8 at the model's rows per call, and the plain 1-D "
                  "convolutions whose im2col MatMul measured faster in int8 than the float Conv",
    ACCURATE_WEIGHTS: "quantize_dynamic: per-channel 8-bit weights stored as uint8 (U8U8), activations quantized per "
                      "call (uint8), one DynamicQuantizeLinear per activation shared by the ops that read it",
}
# Ops in a written file that show the quantizer did something.
QUANTIZED_MARKERS = ("MatMulInteger", "DynamicQuantizeLinear", "ConvInteger", "QuantizeLinear", "DequantizeLinear",
                     "QLinearMatMul", "QLinearConv")


def onnxruntime_version() -> str:
    try:
        return package_metadata.version("onnxruntime")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def op_counts(path: Path) -> dict[str, int]:
    """Node count per op type of an ONNX file (top-level graph)."""
    import onnx

    return dict(Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node))


def copy_metadata(source: Path, target: Path) -> None:
    """Give ``target`` the ``metadata_props`` of ``source`` (replacing any of the same key)."""
    import onnx

    wanted = {p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props}
    model = onnx.load(str(target))
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in wanted]
    del model.metadata_props[:]
    for key, value in kept + list(wanted.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(target))


def fold_constants(source: Path, target: Path) -> None:
    """onnxruntime's basic (portable) graph optimizations, saved offline: constant folding,
    so Reshape/Transpose of a weight becomes a plain initializer the quantizer can see."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    onnxruntime.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _prepare(source: Path, workdir: Path, converter_log: ConverterLog) -> tuple[Path, list[str]]:
    """Fold constants, then shape inference; returns the prepared file and the steps taken."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    workdir = workdir.resolve()  # absolute: quant_pre_process runs inside it
    folded = workdir / f"{source.stem}.folded.onnx"
    prepared = workdir / f"{source.stem}.prepared.onnx"
    steps = ["constant folding (onnxruntime ORT_ENABLE_BASIC, saved offline)"]
    with converter_log.capture("onnxruntime constant folding"):
        fold_constants(source, folded)
    try:
        # Symbolic shape inference writes sym_shape_infer_temp.onnx (+ external data) into the
        # working directory (seen with LightHuBERT small); run it in the export's own work folder.
        with converter_log.capture("onnxruntime quant_pre_process"), contextlib.chdir(workdir):
            quant_pre_process(str(folded), str(prepared), skip_optimization=True)
        steps.append("quant_pre_process: symbolic shape inference + ONNX shape inference")
    except Exception as error:  # symbolic shape inference gives up on some graphs
        with converter_log.capture("onnxruntime quant_pre_process (no symbolic shapes)"), contextlib.chdir(workdir):
            quant_pre_process(str(folded), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
        steps.append(f"quant_pre_process: ONNX shape inference only (symbolic inference failed: {str(error)[:120]})")
    return prepared, steps


def _weight_nodes(path: Path, op_types: Sequence[str]) -> list[tuple[Any, np.ndarray]]:
    """(node, constant weight) for every node of ``op_types`` whose weight is an initializer."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    initializers = {i.name: i for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if node.op_type in op_types and len(node.input) > 1 and node.input[1] in initializers:
            found.append((node, numpy_helper.to_array(initializers[node.input[1]])))
    return found


def _same_values(weight: np.ndarray, data: np.ndarray) -> bool:
    """Equal up to layout (folding transposes and reshapes, never changes values)."""
    return weight.size == data.size and np.array_equal(np.sort(weight.astype(np.float32), axis=None),
                                                       np.sort(data.astype(np.float32), axis=None))


def _exclusions(nodes: Sequence[tuple[Any, np.ndarray]], keep_float: Mapping[str, np.ndarray],
                keep_patterns: Sequence[str], keep_reasons: Mapping[str, str]) -> tuple[list[str], list[KeptFloat]]:
    """Nodes to leave float: the family's weights (found by content) and the user's patterns."""
    excluded: list[str] = []
    kept: list[KeptFloat] = []
    for name, array in keep_float.items():
        hits = [node.name for node, weight in nodes if _same_values(np.asarray(array), weight)]
        if hits:
            excluded += hits
            kept.append(KeptFloat(tuple(hits), keep_reasons.get(name, f"the family's recipe keeps {name} float")))
    for pattern, compiled in zip(keep_patterns, compile_patterns(keep_patterns)):
        hits = [node.name for node, _ in nodes if compiled.search(node.name) or compiled.search(node.op_type)
                or any(compiled.search(i) for i in node.input)]
        if hits:
            excluded += hits
            kept.append(KeptFloat(tuple(hits), f"--keep-float {pattern}"))
    # quantize_dynamic first rewrites a Gemm as MatMul + Add, naming the MatMul "<gemm>_MatMul".
    excluded += [f"{name}_MatMul" for name in excluded]
    return sorted(set(excluded)), kept


def recurrence_nodes(path: Path, state_pairs: Sequence[tuple[str, str]]) -> list[str]:
    """Names of the nodes on a path from a state input to that state's own output.

    ``state_pairs`` is the export's state contract ((input, output) graph names). These nodes
    are the recurrence: whatever error they add is fed back in on the next call and compounds.
    A node that only reads a state (an output projection of a memory) is not among them.
    """
    import onnx

    wiring = _Wiring(onnx.load(str(path), load_external_data=False).graph)
    found: set[str] = set()
    for state_input, state_output in state_pairs:
        found |= wiring.downstream([state_input]) & wiring.upstream([state_output])
    return sorted(found)


class _Wiring:
    """Which node writes and which nodes read each tensor of a graph, and what lies on paths."""

    def __init__(self, graph: Any):
        self.nodes = {node.name: node for node in graph.node}
        self.producer = {output: node for node in graph.node for output in node.output}
        self.consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def downstream(self, tensors: Sequence[str], stop: frozenset[str] = frozenset()) -> set[str]:
        """Names of the nodes that read ``tensors``, directly or through other nodes (not through ``stop``)."""
        seen: set[str] = set()
        stack = list(tensors)
        while stack:
            for node in self.consumers.get(stack.pop(), []):
                if node.name not in seen and node.name not in stop:
                    seen.add(node.name)
                    stack += list(node.output)
        return seen

    def upstream(self, tensors: Sequence[str], stop: frozenset[str] = frozenset()) -> set[str]:
        """Names of the nodes that ``tensors`` are computed from (not through ``stop``)."""
        seen: set[str] = set()
        stack = list(tensors)
        while stack:
            node = self.producer.get(stack.pop())
            if node is not None and node.name not in seen and node.name not in stop:
                seen.add(node.name)
                stack += list(node.input)
        return seen


def _calibrated_ranges(prepared: Path, feeds: Sequence[Mapping[str, np.ndarray]], workdir: Path,
                       headroom: float) -> dict[str, list[dict[str, np.float32]]]:
    """MinMax ranges of every activation on ``feeds``, widened by ``headroom`` (quantize_static's
    TensorQuantOverrides form). Few calibration files rarely reach the extremes of other data:
    on the KWS spotter a residual reached 152 on validation clips against 101 on the calibration ones."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator

    calibrator = create_calibrator(str(prepared), None, augmented_model_path=str(workdir / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax)
    calibrator.collect_data(CalibrationReader(feeds))
    overrides = {}
    for name, tensor_range in calibrator.compute_data().items():
        low, high = (float(np.asarray(v).reshape(-1)[0]) for v in tensor_range.range_value)
        overrides[name] = [{"rmin": np.float32(min(low, 0.0) * headroom), "rmax": np.float32(max(high, 0.0) * headroom)}]
    return overrides


def node_names(path: Path) -> list[str]:
    """Every node name, op type and input name of the file: what --keep-float patterns search."""
    import onnx

    names = []
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        names += [node.name, node.op_type, *node.input]
    return names


@functools.lru_cache(maxsize=1)
def conv_int8_speedup(repeats: int = 30) -> float:
    """float time / int8 time of one 64-channel 3x3 Conv on 32x32 (dynamic int8 vs float), one thread.

    Measured once per process on the exporting machine: whether onnxruntime's ConvInteger is
    worth using here. Above 1.0, int8 convolutions are faster.
    """
    import tempfile

    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.standard_normal((64, 64, 3, 3)) * 0.05).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])], "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 32, 32])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": rng.standard_normal((1, 64, 32, 32)).astype(np.float32)}
    with tempfile.TemporaryDirectory() as folder:
        float_path, int8_path = Path(folder) / "conv.onnx", Path(folder) / "conv.int8.onnx"
        onnx.save(model, str(float_path))
        # Prepared as the model is: quantize_dynamic warns "Please consider to run pre-processing"
        # for any file without quant_pre_process's tag, and this timing graph was its only source.
        prepared = Path(folder) / "conv.prepared.onnx"
        quant_pre_process(str(float_path), str(prepared), skip_optimization=True)
        quantize_dynamic(str(prepared), str(int8_path), op_types_to_quantize=["Conv"], weight_type=QuantType.QInt8)
        timings = []
        for path in (float_path, int8_path):
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            session.run(None, feeds)
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                session.run(None, feeds)
                best = min(best, time.perf_counter() - start)
            timings.append(best)
    return timings[0] / timings[1]


class CalibrationReader:
    """onnxruntime's CalibrationDataReader over a list of feed dicts (graph input names)."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]):
        self._feeds = list(feeds)
        self._iterator: Iterator[Mapping[str, np.ndarray]] = iter(self._feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return dict(next(self._iterator, None) or {}) or None

    def rewind(self) -> None:
        self._iterator = iter(self._feeds)


def quantize_onnx(
    source: Path,
    target: Path,
    precision: str,
    converter_log: ConverterLog,
    workdir: Path,
    keep_float: Mapping[str, np.ndarray] | None = None,
    keep_reasons: Mapping[str, str] | None = None,
    keep_patterns: Sequence[str] = (),
    calibration_feeds: Sequence[Mapping[str, np.ndarray]] | None = None,
    calibration_facts: Mapping[str, Any] | None = None,
    state_pairs: Sequence[tuple[str, str]] = (),
    activation_bits: int = 8,
    shape_feeds: Mapping[str, np.ndarray] | None = None,
    min_sqnr_db: float | None = None,
) -> PrecisionRecipe:
    """Write ``target``, the ``precision`` form of the float ``source``; return its recipe.

    ``state_pairs``: the (input, output) graph names of the streaming state; int8-static keeps
    the recurrence between them float. ``activation_bits``: int8-static activations, 8 or 16.
    ``shape_feeds``: one call's feeds (graph input names); int8-dynamic then quantizes only the
    MatMul/Gemm groups measured to run faster in int8 at that call's shapes (``payoff.py``).
    ``min_sqnr_db``: the validation floor (default: the SDK's); int8 convolutions are given up
    when the file written with them falls below it (plus a margin) on ``shape_feeds``.
    """
    try:
        with converter_log.capture("import onnxruntime.quantization"):
            import onnxruntime.quantization  # noqa: F401
    except ImportError as error:
        raise BackendUnavailable(f"ONNX {precision} needs onnxruntime ({error}); pip install 'edgesdk[export]'") from None
    tool = f"onnxruntime.quantization {onnxruntime_version()}"
    try:
        if precision == "fp16":
            recipe = _fp16(source, target, converter_log, workdir, dict(keep_float or {}), dict(keep_reasons or {}),
                           list(keep_patterns))
        elif precision in ("int8-dynamic", "int8-static"):
            recipe = _int8(source, target, precision, converter_log, workdir, dict(keep_float or {}),
                           dict(keep_reasons or {}), list(keep_patterns), calibration_feeds, calibration_facts, tool,
                           list(state_pairs), activation_bits, shape_feeds,
                           MIN_SQNR_DB if min_sqnr_db is None else min_sqnr_db)
        else:
            raise UsageError(f"ONNX cannot be written in {precision}")
    except (UsageError, ConversionError):
        raise
    except Exception as error:  # the quantizers raise many unrelated types
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConversionError(f"ONNX {precision} quantization of {source.name} failed: {first_line}") from error
    copy_metadata(source, target)
    return recipe


def _fp16(source: Path, target: Path, converter_log: ConverterLog, workdir: Path,
          keep_float: Mapping[str, np.ndarray], keep_reasons: Mapping[str, str],
          keep_patterns: Sequence[str]) -> PrecisionRecipe:
    import onnx
    from onnxruntime.transformers import float16

    kept = [KeptFloat(("inputs", "outputs"), "float32 at the interface, so callers feed float32 as always")]
    steps: list[str] = []
    model_path, blocked = source, []
    if keep_float or keep_patterns:
        # Constants folded first, so the family's weights are initializers found by content.
        model_path = workdir.resolve() / f"{source.stem}.folded.onnx"
        with converter_log.capture("onnxruntime constant folding"):
            fold_constants(source, model_path)
        steps.append("constant folding (onnxruntime ORT_ENABLE_BASIC, saved offline)")
        weight_nodes = _weight_nodes(model_path, (*WEIGHT_OPS, "Conv"))
        excluded, family_kept = _exclusions(weight_nodes, keep_float, keep_patterns, keep_reasons)
        blocked = [node.name for node, _ in weight_nodes if node.name in set(excluded)]  # (not int8's "_MatMul" aliases)
        between = _nodes_between(model_path, blocked, [node.name for node, _ in weight_nodes])
        kept += family_kept
        if between:
            blocked = sorted(set(blocked) | set(between))
            kept.append(KeptFloat(tuple(between), "on a path from one kept-float op to another that passes no other "
                                                  "weight op (a hash's anchors to its projection, the residual stream "
                                                  "into a hashed to_qk): float16 there would round what they compute"))
    with converter_log.capture("onnxruntime.transformers.float16"):
        model = float16.convert_float_to_float16(onnx.load(str(model_path)), keep_io_types=True,
                                                 node_block_list=blocked or None)
    round_trips = _drop_round_trips(model, set(blocked), _float32_outputs(model_path)) if blocked else 0
    if round_trips:
        steps.append(f"{round_trips} float32 -> float16 -> float32 Cast pairs between kept-float ops removed (the "
                     "converter rounds every tensor it passes between two blocked nodes, the graph input included)")
    onnx.save(model, str(target))
    after = op_counts(target)
    kept_names = set(blocked)
    in_float16 = Counter(node.op_type for node in model.graph.node
                         if node.op_type != "Cast" and node.name not in kept_names)
    return PrecisionRecipe(
        tool=f"onnxruntime.transformers.float16 {onnxruntime_version()}",
        scheme="convert_float_to_float16(keep_io_types=True): float16 weights and compute, float32 inputs/outputs"
               + (f"; {len(blocked)} ops kept float32 (node_block_list)" if blocked else ""),
        quantized_ops=dict(in_float16),  # the ops that compute in float16
        kept_float=tuple(kept), steps=tuple(steps), source=source.name,
        notes=(f"{after.get('Cast', 0)} Cast nodes in the written file",
               "for GPU/NPU providers; expected slower than float32 on a CPU provider (measured in the benchmark)"),
    )


def _float32_outputs(path: Path) -> dict[str, tuple[bool, ...]]:
    """For each node of the (float) model at ``path``: which of its outputs are float32."""
    import onnx
    from onnx import TensorProto, shape_inference

    graph = shape_inference.infer_shapes(onnx.load(str(path))).graph
    float32 = {v.name for v in (*graph.input, *graph.value_info, *graph.output)
               if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    return {node.name: tuple(output in float32 for output in node.output) for node in graph.node}


def _drop_round_trips(model: Any, blocked: set[str], float32_outputs: Mapping[str, tuple[bool, ...]]) -> int:
    """Remove Cast(to float16) -> Cast(to float32) pairs whose first Cast reads a float32 tensor.

    ``convert_float_to_float16`` gives a blocked node's float32 output a Cast to float16 and the
    next blocked node a Cast back, so a tensor between two kept-float ops is rounded all the same
    (with the graph input: the image itself). Readers of the second Cast read the first Cast's
    input instead; a Cast left without readers goes. ``blocked``: the nodes kept float32;
    ``float32_outputs``: which outputs of each node were float32 before conversion (a blocked
    node still writes them in float32, under new names); float32 graph inputs are kept too.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    float32 = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    for node in graph.node:
        if node.name in blocked:
            float32 |= {output for output, is_float in zip(node.output, float32_outputs.get(node.name, ()))
                        if is_float}

    def cast_to(node: Any) -> int | None:
        if node is None or node.op_type != "Cast":
            return None
        return next((helper.get_attribute_value(a) for a in node.attribute if a.name == "to"), None)

    outputs = {o.name for o in graph.output}
    replace: dict[str, str] = {}
    trips = 0
    for node in graph.node:
        if cast_to(node) != TensorProto.FLOAT:
            continue
        first = producer.get(node.input[0])
        if cast_to(first) == TensorProto.FLOAT16 and first.input[0] in float32:
            if node.output[0] in outputs:  # a graph output keeps its name: its Cast now reads float32
                node.input[0] = first.input[0]
                trips += 1
            else:
                replace[node.output[0]] = first.input[0]
    if not replace and not trips:
        return 0
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name in replace:
                node.input[index] = replace[name]
    for value in graph.value_info:  # the converter typed a blocked node's output float16
        if value.name in float32:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    while True:
        unread = [node for node in graph.node if node.op_type == "Cast" and node.output[0] not in read]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    return len(replace) + trips


def _nodes_between(path: Path, names: Sequence[str], walls: Sequence[str]) -> list[str]:
    """Nodes (not among ``names``) downstream of one node of ``names`` and upstream of another,
    on paths that pass no node of ``walls`` (the other weight ops, which bound each float region)."""
    import onnx

    wiring = _Wiring(onnx.load(str(path), load_external_data=False).graph)
    chosen = set(names)
    stop = frozenset(set(walls) - chosen)
    starts = [wiring.nodes[name] for name in chosen if name in wiring.nodes]
    downstream = wiring.downstream([output for node in starts for output in node.output], stop)
    upstream = wiring.upstream([name for node in starts for name in node.input], stop)
    return sorted((downstream & upstream) - chosen)


def _int8(source, target, precision, converter_log, workdir, keep_float, keep_reasons, keep_patterns,
          calibration_feeds, calibration_facts, tool, state_pairs=(), activation_bits=8,
          shape_feeds=None, min_sqnr_db=MIN_SQNR_DB) -> PrecisionRecipe:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    prepared, steps = _prepare(source, workdir, converter_log)
    unrewritten = prepared
    rewritten: dict[str, str] = {}  # im2col MatMul -> the Conv it replaced
    conv_kept: list[KeptFloat] = []
    payoff_notes: list[str] = []
    if precision == "int8-dynamic" and shape_feeds is not None:
        with converter_log.capture("int8 payoff measurement (1-D convolutions)"):
            prepared, rewritten, conv_kept, payoff_notes = _convs_that_pay(prepared, shape_feeds, keep_patterns)
        if rewritten:
            steps.append(f"{len(rewritten)} 1-D Conv rewritten as im2col MatMul (exact in float32) where its int8 form "
                         "measured faster than the float Conv")
    speedup = conv_int8_speedup()
    op_types = list(WEIGHT_OPS)
    kept: list[KeptFloat] = []
    conv_note = (f"int8 Conv measured {speedup:.2f}x the speed of float Conv here "
                 "(64-channel 3x3 Conv on 32x32, one thread)")
    if speedup > 1.1:
        op_types.append("Conv")
    nodes = _weight_nodes(prepared, op_types)
    convs = [n.name for n, _ in _weight_nodes(prepared, ("Conv",))]
    kept += conv_kept
    convs = [name for name in convs if not any(name in k.ops for k in conv_kept)]
    if convs and "Conv" not in op_types:
        kept.append(KeptFloat(tuple(convs), f"{conv_note}: slower, so convolutions stay float"))
    excluded, family_kept = _exclusions(nodes, keep_float, keep_patterns, keep_reasons)
    kept += family_kept
    if precision == "int8-dynamic":
        # quantize_dynamic gives a batched (rank > 2) weight one zero point per column, shape (N,);
        # onnxruntime's MatMulInteger takes that only for a 2-D weight and fails at run time ("b zero
        # point is not valid"; EcoFormer's per-head hash anchors and projection, [1, heads, m, c]).
        batched = [n.name for n, weight in nodes
                   if n.op_type == "MatMul" and weight.ndim > 2 and n.name not in excluded]
        if batched:
            excluded += batched
            kept.append(KeptFloat(tuple(batched), "a batched (rank > 2) constant weight: onnxruntime's MatMulInteger "
                                                  "rejects its per-channel zero points (\"b zero point is not valid\")"))
    quantized = Counter(rewritten.get(n.name) and "Conv" or n.op_type for n, _ in nodes if n.name not in excluded)
    if not quantized:
        raise ConversionError(f"ONNX {precision}: no MatMul/Gemm with a constant weight is left to quantize in "
                              f"{source.name} after folding; keep it float32")
    loop: list[str] = []
    if precision == "int8-dynamic":
        weights = FAST_WEIGHTS
        candidates = [(n, w) for n, w in nodes if n.op_type in WEIGHT_OPS and n.name not in excluded
                      and n.name not in rewritten]
        if shape_feeds is not None and candidates:
            with converter_log.capture("int8 payoff measurement"):
                decision = measure_payoff(prepared, candidates, shape_feeds)
            payoff_notes += decision.notes()
            if decision.quantize or rewritten:
                for group, timing in decision.keep:
                    kept.append(KeptFloat(group.nodes, decision.kept_reason(group, timing)))
                    excluded = sorted(set(excluded) | set(group.nodes) | {f"{n}_MatMul" for n in group.nodes})
            else:
                weights = ACCURATE_WEIGHTS
                best = max(decision.keep, key=lambda pair: pair[1].speedup)
                payoff_notes.append(f"no MatMul/Gemm group pays for int8 here (best: {best[0].shape_text}, "
                                    f"{best[1].text()}): every one is quantized anyway, for size, with 8-bit "
                                    "weights; expect no speed-up over float32 on this machine")
        elif shape_feeds is None:
            weights = ACCURATE_WEIGHTS
            payoff_notes.append("int8 payoff not measured (no example feed): every MatMul/Gemm is quantized")
        scheme = WEIGHT_SCHEMES[weights]
        with converter_log.capture("onnxruntime quantize_dynamic"):
            _write_dynamic(prepared, target, op_types, excluded, weights)
        if rewritten:
            # int8 convolutions round every frame's window once more: keep them only while the
            # written file stays clear of the floor on the example feed (validation checks it again).
            with converter_log.capture("int8 convolutions: accuracy on the example feed"):
                reached = output_sqnr(source, target, shape_feeds)
            if reached < min_sqnr_db + CONV_MARGIN_DB:
                drop = list(rewritten)
                figures = "; ".join(f"{note.split(':', 1)[0]} {note.rsplit(': ', 1)[1]}" for note in payoff_notes
                                    if note.split(":", 1)[0] in rewritten.values())
                kept.append(KeptFloat(tuple(rewritten.values()), (
                    f"int8 1-D convolutions (im2col MatMul) would be faster ({figures}), but the file written with "
                    f"them measured {reached:.1f} dB SQNR against float32 on the example feed, below the "
                    f"{min_sqnr_db:g} dB floor + {CONV_MARGIN_DB:g} dB margin; written again with them as float "
                    "Convs (export with a lower min_sqnr_db to accept them)")))
                payoff_notes = [note for note in payoff_notes if note.split(":", 1)[0] not in rewritten.values()]
                rewritten = {}
                steps[-1] = "1-D Conv im2col rewrite tried and undone (accuracy, see kept float)"
                prepared = unrewritten
                nodes = [(node, weight) for node, weight in nodes if node.name not in drop]
                with converter_log.capture("onnxruntime quantize_dynamic (convolutions float)"):
                    _write_dynamic(prepared, target, op_types, excluded, weights)
            else:
                payoff_notes.append(f"with int8 convolutions the written file measured {reached:.1f} dB SQNR against "
                                    f"float32 on the example feed (floor {min_sqnr_db:g} dB + {CONV_MARGIN_DB:g} dB margin)")
    else:
        if not calibration_feeds:
            raise UsageError("int8-static needs calibration data (--calibration-data PATH)")
        if activation_bits not in (8, 16):
            raise UsageError(f"activation_bits must be 8 or 16, not {activation_bits}")
        loop = recurrence_nodes(prepared, state_pairs)
        if loop:
            kept.append(KeptFloat(tuple(loop), "the streaming state's recurrence (every node on a path from a state "
                                               "input to its own output, from the state contract): its rounding "
                                               "error is fed back every call and compounds"))
        extra: dict[str, Any] = {"MatMulConstBOnly": True, "DedicatedQDQPair": True}
        headroom = A16_HEADROOM if activation_bits == 16 else 1.0
        if headroom != 1.0:
            with converter_log.capture("onnxruntime calibration (ranges)"):
                extra["TensorQuantOverrides"] = _calibrated_ranges(prepared, calibration_feeds, workdir, headroom)
        scheme = (f"quantize_static: QDQ, per-channel int8 weights, int{activation_bits} activations (MinMax "
                  f"calibration{f', ranges widened {headroom:g}x' if headroom != 1.0 else ''}), float32 inputs/"
                  "outputs and state; each quantized op has its own QDQ pair, so float ops never read a rounded tensor")
        with converter_log.capture("onnxruntime quantize_static"):
            quantize_static(str(prepared), str(target), CalibrationReader(calibration_feeds),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=op_types, per_channel=True,
                            activation_type=QuantType.QInt16 if activation_bits == 16 else QuantType.QInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=sorted(set(excluded) | set(loop)),
                            calibrate_method=CalibrationMethod.MinMax, extra_options=extra)
    written = op_counts(target)
    markers = {op: written[op] for op in QUANTIZED_MARKERS if written.get(op)}
    if not markers:
        raise ConversionError(f"ONNX {precision}: the quantizer wrote {target.name} without any quantized op")
    return PrecisionRecipe(
        tool=tool, scheme=scheme, quantized_ops=dict(Counter(rewritten.get(n.name) and "Conv" or n.op_type for n, _ in nodes
                                                             if n.name not in loop and n.name not in excluded)), kept_float=tuple(kept), steps=tuple(steps),
        calibration=dict(calibration_facts) if calibration_facts else None, source=source.name,
        notes=("written file: " + ", ".join(f"{count} {op}" for op, count in markers.items()), conv_note, *payoff_notes),
    )


def _write_dynamic(prepared: Path, target: Path, op_types: Sequence[str], excluded: Sequence[str],
                   weights: tuple[tuple[str, Any], ...]) -> None:
    """quantize_dynamic as the recipe runs it, then the float Gemms put back (``restore_float_gemms``)."""
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(prepared), str(target), op_types_to_quantize=list(op_types), per_channel=True,
                     nodes_to_exclude=list(excluded), extra_options={"MatMulConstBOnly": True},
                     **weight_options(weights))
    restore_float_gemms(prepared, target, excluded)


def measure_payoff(prepared: Path, candidates: Sequence[tuple[Any, np.ndarray]],
                   shape_feeds: Mapping[str, np.ndarray]) -> PayoffDecision:
    """Time every group of ``candidates`` (ops reading one activation) float vs int8 at the rows
    per call the model runs with on ``shape_feeds``; see ``precision/payoff.py``."""
    groups = matmul_groups(prepared, candidates, shape_feeds)
    footprint = sum(4 * weight.size for _, weight in candidates)
    timings = [time_group(g.rows, g.depth, g.widths, footprint, FAST_WEIGHTS) for g in groups]
    return decide(groups, timings)


def _convs_that_pay(prepared: Path, shape_feeds: Mapping[str, np.ndarray], keep_patterns: Sequence[str]
                    ) -> tuple[Path, dict[str, str], list[KeptFloat], list[str]]:
    """Rewrite every plain 1-D Conv whose int8 im2col MatMul measures faster than the float Conv
    at the shape it runs at (``payoff.time_conv``); the others stay float with their figures.
    Returns the file to quantize, {new MatMul: Conv}, the kept-float entries and the notes."""
    import onnx

    patterns = compile_patterns(keep_patterns)
    candidates = [(node, weight) for node, weight in _weight_nodes(prepared, ("Conv",)) if plain_conv1d(node, weight)
                  and not any(c.search(node.name) or c.search(node.op_type) or any(c.search(i) for i in node.input)
                              for c in patterns)]
    if not candidates:
        return prepared, {}, [], []
    lengths = activation_shapes(prepared, sorted({node.input[0] for node, _ in candidates}), shape_feeds)
    paying, kept, notes = [], [], []
    for node, weight in candidates:
        batch, _, length = lengths[node.input[0]]
        shape = ConvShape(in_channels=int(weight.shape[1]), out_channels=int(weight.shape[0]), kernel=int(weight.shape[2]),
                          stride=conv_stride(node), length=int(length), batch=int(batch))
        timing = time_conv(shape, FAST_WEIGHTS)
        if timing.speedup >= MIN_SPEEDUP:
            paying.append(node.name)
            notes.append(f"{node.name}: {shape.text} rewritten as an int8 im2col MatMul: float Conv {timing.float_us:.0f} us "
                         f"vs int8 MatMul {timing.int8_us:.0f} us per call ({timing.speedup:.2f}x; thread CPU time, one thread)")
        else:
            kept.append(KeptFloat((node.name,), f"{shape.text}: its int8 im2col MatMul measured {timing.int8_us:.0f} us "
                                                f"vs float Conv {timing.float_us:.0f} us per call ({timing.speedup:.2f}x, "
                                                f"below the {MIN_SPEEDUP:.2f}x it must gain), so it stays a float Conv"))
    if not paying:
        return prepared, {}, kept, notes
    model = onnx.load(str(prepared))
    matmuls = convs_as_matmul(model, paying)
    target = prepared.with_name(prepared.stem + ".im2col.onnx")
    onnx.save(model, str(target))
    return target, dict(zip(matmuls, paying)), kept, notes


def output_sqnr(source: Path, target: Path, feeds: Mapping[str, np.ndarray]) -> float:
    """Lowest SQNR over the outputs of ``target`` against the float ``source`` on one call of ``feeds``."""
    import onnxruntime

    results = []
    for path in (source, target):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        results.append(session.run(None, {k: v for k, v in feeds.items() if k in wanted}))
    return min(sqnr_db(want, got) for want, got in zip(*results)
               if np.issubdtype(np.asarray(want).dtype, np.floating) and np.any(want))


def restore_float_gemms(prepared: Path, target: Path, excluded: Sequence[str]) -> int:
    """Put back, in the written ``target``, the float Gemm of every excluded Gemm of ``prepared``.

    quantize_dynamic rewrites *every* Gemm as MatMul + Add (a transposed weight copy when transB),
    the ones it leaves float included. On a one-frame step each extra Add is a kernel launch that
    float32 does not pay (measured: 9 such pairs on the KWS spotter), so a Gemm kept float is
    written back as the Gemm it was, with its own initializers. Returns how many were restored.
    """
    import onnx

    original = onnx.load(str(prepared))
    gemms = {node.name: node for node in original.graph.node if node.op_type == "Gemm" and node.name in set(excluded)}
    if not gemms:
        return 0
    model = onnx.load(str(target))
    graph = model.graph
    by_name = {node.name: node for node in graph.node}
    swap, drop = {}, set()
    for name, gemm in gemms.items():
        matmul, add = by_name.get(f"{name}_MatMul"), by_name.get(f"{name}_Add")
        if matmul is None or matmul.op_type != "MatMul" or matmul.input[0] != gemm.input[0]:
            continue
        if len(gemm.input) > 2 and (add is None or list(add.output) != list(gemm.output)):
            continue
        if len(gemm.input) <= 2 and list(matmul.output) != list(gemm.output):
            continue
        swap[matmul.name] = gemm
        drop |= {add.name} if add is not None and len(gemm.input) > 2 else set()
    if not swap:
        return 0
    rebuilt = []
    for node in graph.node:
        if node.name in swap:
            rebuilt.append(swap[node.name])
        elif node.name not in drop:
            rebuilt.append(node)
    del graph.node[:]
    graph.node.extend(rebuilt)
    present = {i.name for i in graph.initializer}
    wanted = {name for gemm in swap.values() for name in gemm.input[1:]}
    graph.initializer.extend(i for i in original.graph.initializer if i.name in wanted and i.name not in present)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(target))
    return len(swap)
