"""int8-dynamic quantizes only the MatMul/Gemm groups measured to pay (precision/payoff.py):
the decision on constructed timings, the groups found in a constructed graph, and the recipe
that quantize_onnx writes when the measurement says which groups pay."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgesdk.exporters.capture import ConverterLog
from edgesdk.exporters.precision import payoff
from edgesdk.exporters.precision.onnx import _weight_nodes, op_counts, quantize_onnx
from edgesdk.exporters.precision.payoff import GroupTiming, MatMulGroup, decide, matmul_groups, time_group


def _group(name: str, rows: int = 1, depth: int = 64, widths=(32,)) -> MatMulGroup:
    return MatMulGroup(activation=f"{name}_in", rows=rows, depth=depth, widths=tuple(widths),
                       nodes=tuple(f"{name}_{i}" for i in range(len(widths))))


def test_decide_quantizes_the_groups_that_reach_the_threshold_and_keeps_the_others():
    groups = [_group("big", depth=512, widths=(512, 512)), _group("small"), _group("edge"), _group("slow")]
    timings = [GroupTiming(40.0, 20.0, 2.0, 3), GroupTiming(5.0, 5.5, 0.91, 48),
               GroupTiming(10.5, 10.0, 1.05, 48), GroupTiming(6.0, 5.9, 1.017, 48)]
    decision = decide(groups, timings, min_speedup=1.05)
    assert [g.activation for g, _ in decision.quantize] == ["big_in", "edge_in"]  # 1.05 itself reaches it
    assert [g.activation for g, _ in decision.keep] == ["small_in", "slow_in"]
    assert decide(groups, timings, min_speedup=2.5).quantize == ()


def test_kept_reason_and_notes_carry_the_measured_figures():
    groups = [_group("a", rows=228, depth=384, widths=(384, 384, 384)), _group("b", rows=228, depth=384, widths=(384, 384, 384)),
              _group("c", depth=64, widths=(32,))]
    timings = [GroupTiming(123.4, 61.7, 2.0, 4), GroupTiming(120.0, 60.0, 2.01, 4), GroupTiming(3.2, 4.8, 0.667, 48)]
    decision = decide(groups, timings)
    reason = decision.kept_reason(*decision.keep[0])
    for figure in ("1 row(s)", "64 x 32", "float 3.2 us", "int8 4.8 us", "0.67x", "48 copies", "1.05x"):
        assert figure in reason, (figure, reason)
    notes = decision.notes()
    assert len(notes) == 1  # the two groups of one shape share a line, with their count
    assert notes[0].startswith("quantized 2 group(s) of 228 row(s) x K=384 x N=384+384+384")
    assert "float 123.4 us vs int8 61.7 us" in notes[0] and "2.00x" in notes[0]


def _two_activation_graph(path, rows: int):
    """x -> MatMul(A), MatMul(B) (one activation, two ops); relu(x) -> Gemm(transB, C)."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)
               for name, shape in (("A", (48, 40)), ("B", (48, 24)), ("C", (16, 48)))]
    nodes = [helper.make_node("MatMul", ["x", "A"], ["ya"], name="mm_a"),
             helper.make_node("MatMul", ["x", "B"], ["yb"], name="mm_b"),
             helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "C"], ["yc"], name="gemm_c", transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 48])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("ya", "yb", "yc")],
                              weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return {"x": rng.standard_normal((rows, 48)).astype(np.float32)}


def test_groups_are_the_ops_reading_one_activation_at_the_rows_of_a_real_call(tmp_path):
    path = tmp_path / "g.onnx"
    feeds = _two_activation_graph(path, rows=7)
    groups = {g.activation: g for g in matmul_groups(path, _weight_nodes(path, ("MatMul", "Gemm")), feeds)}
    assert set(groups) == {"x", "r"}
    assert (groups["x"].rows, groups["x"].depth, groups["x"].widths, groups["x"].nodes) == (7, 48, (40, 24), ("mm_a", "mm_b"))
    assert (groups["r"].rows, groups["r"].depth, groups["r"].widths, groups["r"].nodes) == (7, 48, (16,), ("gemm_c",))


def test_quantize_onnx_quantizes_only_the_groups_measured_to_pay(tmp_path, monkeypatch):
    path = tmp_path / "g.onnx"
    feeds = _two_activation_graph(path, rows=3)
    measured = []

    def constructed_timing(rows, depth, widths, footprint, options):  # the Gemm group pays, the MatMul pair does not
        measured.append((rows, depth, widths))
        return GroupTiming(9.0, 4.5, 2.0, 1) if widths == (16,) else GroupTiming(9.0, 10.0, 0.9, 1)

    monkeypatch.setattr("edgesdk.exporters.precision.onnx.time_group", constructed_timing)
    work = tmp_path / "work"
    work.mkdir()
    target = tmp_path / "g.int8.onnx"
    recipe = quantize_onnx(path, target, "int8-dynamic", ConverterLog(), work, shape_feeds=feeds)
    assert sorted(measured) == [(3, 48, (16,)), (3, 48, (40, 24))]
    written = op_counts(target)
    assert written.get("MatMulInteger") == 1 and written.get("MatMul") == 2  # mm_a, mm_b stay float
    assert recipe.quantized_ops == {"Gemm": 1}
    kept = {ops: reason for k in recipe.kept_float for ops, reason in [(k.ops, k.reason)]}
    assert kept[("mm_a", "mm_b")].startswith("too small to pay for int8 at 3 row(s)") and "0.90x" in kept[("mm_a", "mm_b")]
    assert any("quantized 1 group(s) of 3 row(s) x K=48 x N=16" in note and "2.00x" in note for note in recipe.notes)
    assert "signed 7-bit" in recipe.scheme


def test_when_no_group_pays_every_op_is_quantized_for_size_with_8_bit_weights(tmp_path, monkeypatch):
    path = tmp_path / "g.onnx"
    feeds = _two_activation_graph(path, rows=1)
    monkeypatch.setattr("edgesdk.exporters.precision.onnx.time_group",
                        lambda rows, depth, widths, footprint, options: GroupTiming(5.0, 6.0, 0.8, 1))
    work = tmp_path / "work"
    work.mkdir()
    recipe = quantize_onnx(path, tmp_path / "g.int8.onnx", "int8-dynamic", ConverterLog(), work, shape_feeds=feeds)
    assert op_counts(tmp_path / "g.int8.onnx").get("MatMulInteger") == 3
    assert "U8U8" in recipe.scheme
    assert any(note.startswith("no MatMul/Gemm group pays for int8 here") and "0.80x" in note for note in recipe.notes)


def test_time_group_measures_both_forms_with_copies_up_to_the_model_footprint(monkeypatch):
    monkeypatch.setattr(payoff, "ROUNDS", 3)
    timing = time_group.__wrapped__(2, 32, (16,), 4 * 32 * 16 * 5, (("weight_type", "QInt8"), ("reduce_range", True)))
    assert timing.copies == 5  # the model's weight bytes / the group's
    assert timing.float_us > 0 and timing.int8_us > 0 and timing.speedup > 0
    assert time_group.__wrapped__(2, 32, (16,), 10**9, (("weight_type", "QInt8"), ("reduce_range", True))).copies == payoff.MAX_COPIES


def _conv_model(in_channels, out_channels, kernel, stride, bias: bool, pads=(0, 0), group=1):
    rng = np.random.default_rng(3)
    weight = (rng.standard_normal((out_channels, in_channels // group, kernel)) * 0.2).astype(np.float32)
    initializers = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if bias:
        initializers.append(numpy_helper.from_array(rng.standard_normal(out_channels).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("Conv", inputs, ["y"], name="conv", strides=[stride], pads=list(pads), group=group)
    graph = helper.make_graph([node], "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_channels, "t"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), initializers


@pytest.mark.parametrize("kernel,stride,bias", [(3, 2, False), (2, 2, True), (10, 5, False), (1, 1, True), (4, 3, False)])
def test_a_plain_conv1d_rewritten_as_matmul_computes_the_same_frames_at_any_length(kernel, stride, bias):
    import onnxruntime

    model, initializers = _conv_model(6, 5, kernel, stride, bias)
    arrays = {i.name: numpy_helper.to_array(i) for i in initializers}
    assert payoff.plain_conv1d(model.graph.node[0], arrays["w"])
    assert payoff.convs_as_matmul(model, ["conv"]) == ["conv/im2col/MatMul"]
    assert "Conv" not in {n.op_type for n in model.graph.node}
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(4)
    for length in (kernel, kernel + 1, 23, 40):  # the ends of the strided slices follow the length
        x = rng.standard_normal((1, 6, length)).astype(np.float32)
        frames = (length - kernel) // stride + 1
        # the definition of a 1-D convolution, written out: the independent reference
        want = np.stack([np.einsum("oc k,ck->o".replace(" ", ""), arrays["w"], x[0, :, t * stride:t * stride + kernel])
                         for t in range(frames)], axis=1)[None]
        if bias:
            want = want + arrays["b"][None, :, None]
        (got,) = session.run(None, {"x": x})
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_padded_or_grouped_convs_are_not_rewritten():
    for pads, group in (((1, 1), 1), ((0, 0), 2)):
        model, initializers = _conv_model(6, 6, 3, 1, False, pads=pads, group=group)
        assert not payoff.plain_conv1d(model.graph.node[0], numpy_helper.to_array(initializers[0]))


def _conv_then_matmul(path):
    rng = np.random.default_rng(5)
    weights = [numpy_helper.from_array((rng.standard_normal((16, 8, 3)) * 0.2).astype(np.float32), "cw"),
               numpy_helper.from_array((rng.standard_normal((16, 32)) * 0.2).astype(np.float32), "mw")]
    nodes = [helper.make_node("Conv", ["x", "cw"], ["c"], name="conv", strides=[2]),
             helper.make_node("Transpose", ["c"], ["t"], name="transpose", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["t", "mw"], ["y"], name="matmul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, "n"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return {"x": rng.standard_normal((1, 8, 41)).astype(np.float32)}


@pytest.mark.parametrize("floor", [0.0, 200.0])
def test_int8_convolutions_are_kept_only_while_the_file_stays_above_the_floor(tmp_path, monkeypatch, floor):
    path = tmp_path / "g.onnx"
    feeds = _conv_then_matmul(path)
    monkeypatch.setattr("edgesdk.exporters.precision.onnx.time_conv", lambda shape, options: GroupTiming(100.0, 50.0, 2.0, 1))
    monkeypatch.setattr("edgesdk.exporters.precision.onnx.time_group",
                        lambda rows, depth, widths, footprint, options: GroupTiming(10.0, 5.0, 2.0, 1))
    work = tmp_path / "work"
    work.mkdir()
    target = tmp_path / "g.int8.onnx"
    recipe = quantize_onnx(path, target, "int8-dynamic", ConverterLog(), work, shape_feeds=feeds, min_sqnr_db=floor)
    written = op_counts(target)
    conv_reasons = [k.reason for k in recipe.kept_float if k.ops == ("conv",)]
    if floor == 0.0:  # the conv becomes an int8 MatMul (its 19 frames x K=24), and the recipe says what it measured
        assert "Conv" not in written and written["MatMulInteger"] == 2 and recipe.quantized_ops == {"Conv": 1, "MatMul": 1}
        assert any(note.startswith("conv: Conv1d 8->16 k=3 s=2 on a length of 41 (20 outputs; as MatMul 20 row(s) x K=24")
                   and "2.00x" in note for note in recipe.notes)
        assert not conv_reasons
    else:  # 200 dB cannot be reached: written again with the conv float, and why
        assert written["Conv"] == 1 and written["MatMulInteger"] == 1 and recipe.quantized_ops == {"MatMul": 1}
        assert len(conv_reasons) == 1 and "below the 200 dB floor" in conv_reasons[0] and "2.00x" in conv_reasons[0]
        assert not any(note.startswith("conv:") for note in recipe.notes)


def test_a_gemm_kept_float_is_written_back_as_the_gemm_it_was(tmp_path, monkeypatch):
    path = tmp_path / "g.onnx"
    feeds = _two_activation_graph(path, rows=2)  # the Gemm (transB) is measured not to pay, the MatMul pair to pay
    monkeypatch.setattr("edgesdk.exporters.precision.onnx.time_group",
                        lambda rows, depth, widths, footprint, options:
                        GroupTiming(9.0, 10.0, 0.9, 1) if widths == (16,) else GroupTiming(9.0, 4.5, 2.0, 1))
    work = tmp_path / "work"
    work.mkdir()
    target = tmp_path / "g.int8.onnx"
    quantize_onnx(path, target, "int8-dynamic", ConverterLog(), work, shape_feeds=feeds)
    written = onnx.load(str(target))
    gemm = next(n for n in written.graph.node if n.op_type == "Gemm")
    assert gemm.name == "gemm_c" and list(gemm.input) == ["r", "C"] and op_counts(target)["MatMulInteger"] == 2
    assert "Add" not in op_counts(target)  # quantize_dynamic's MatMul + Add split is gone
    import onnxruntime

    want = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["yc"], feeds)[0]
    got = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(["yc"], feeds)[0]
    np.testing.assert_array_equal(got, want)  # float, bit for bit
