"""int8-static: calibrated on real WAVs, validated on a disjoint split, integer I/O handled by the runtime."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgesdk
from edgesdk.runtime.compare import cosine_similarity
from edgesdk.runtime.manifest import read_manifest

CLIPS = Path(__file__).resolve().parents[2] / "examples" / "kws" / "clips"
# Four bundled clips keep the test fast: sorted, the fourth (yes.wav) validates, three calibrate.
FOUR = ("down.wav", "go.wav", "left.wav", "yes.wav")


@pytest.fixture(scope="module")
def static_bundle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("static")
    clips = folder / "clips"
    clips.mkdir()
    for name in FOUR:
        (clips / name).write_bytes((CLIPS / name).read_bytes())
    path = folder / "tiny-static"
    model = edgesdk.create_model("lmuformer", preset="tiny")
    # A random-weight tiny model quantized to 8-bit activations (state included) lands near 7-20 dB;
    # the floor is lowered here to test the mechanism. The benchmark reports the trained spotter.
    edgesdk.export(model, path, formats=("onnx", "tflite"), mode="stream", precision="int8-static",
                   calibration_data=clips, keep_float=("node_linear_1$",), min_sqnr_db=3.0, random_weights=True)
    return path, model


def test_calibration_and_validation_splits_are_disjoint_real_clips(static_bundle):
    path, _ = static_bundle
    manifest = read_manifest(path)
    assert {a["file"] for a in manifest["artifacts"]} == {"model.int8-static.onnx", "model.int8-static.tflite"}
    calibration = manifest["artifacts"][0]["recipe"]["calibration"]
    assert calibration["validation_files"] == ["yes.wav"]
    assert sorted(calibration["calibration_files"] + calibration["validation_files"]) == list(FOUR)
    for artifact in manifest["artifacts"]:
        cases = artifact["validation"]["cases"]
        # Judged on the real validation clips (random inputs lie outside the calibrated ranges).
        assert len(cases) >= len(calibration["validation_files"]) and not any(c.startswith("random") for c in cases)


def test_keep_float_pattern_is_applied_and_recorded(static_bundle):
    path, _ = static_bundle
    onnx_artifact = next(a for a in read_manifest(path)["artifacts"] if a["format"] == "onnx")
    kept = {reason for k in onnx_artifact["recipe"]["kept_float"] for reason in [k["reason"]]}
    assert "--keep-float node_linear_1$" in kept
    import onnx

    names = {n.name for n in onnx.load(str(path / "model.int8-static.onnx")).graph.node}
    assert "node_linear_1" in names  # left as a float Gemm, not rewritten into QDQ form


def test_full_integer_tflite_io_parameters_come_from_the_file(static_bundle):
    from ai_edge_litert.interpreter import Interpreter

    path, _ = static_bundle
    artifact = next(a for a in read_manifest(path)["artifacts"] if a["format"] == "tflite")
    runner = Interpreter(str(path / artifact["file"])).get_signature_runner()
    details = runner.get_input_details()
    io = artifact["io_quantization"]
    assert set(io["inputs"]) == set(artifact["inputs"])  # features and every state input
    for logical, own in artifact["inputs"].items():
        scale, zero_point = details[own]["quantization"]
        assert details[own]["dtype"] == np.int8
        assert io["inputs"][logical] == {"dtype": "int8", "scale": pytest.approx(scale), "zero_point": zero_point}


def test_runtime_takes_and_returns_float_for_a_full_integer_file(static_bundle):
    """Model.run on float feeds equals quantizing by hand with the interpreter's own parameters."""
    from ai_edge_litert.interpreter import Interpreter

    path, _ = static_bundle
    model = edgesdk.load(path, backend="litert", precision="int8-static")
    assert model.precision == "int8-static"
    feeds = model.example_feeds(seed=3)
    got = model.run(feeds)
    assert all(v.dtype == np.float32 for v in got.values())
    runner = Interpreter(str(path / model.artifact["file"])).get_signature_runner()
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    full = {s.input: s.initial(1) for s in model.state_spec}
    full.update(feeds)
    full[model.end_input.name] = np.zeros((1, 1), np.float32)  # what run() feeds: the input lasts
    by_hand = {}
    for logical, value in full.items():
        own = model.artifact["inputs"][logical]
        scale, zero_point = inputs[own]["quantization"]
        by_hand[own] = np.clip(np.round(value / scale) + zero_point, -128, 127).astype(np.int8)
    raw = runner(**by_hand)
    for logical, own in model.artifact["outputs"].items():
        scale, zero_point = outputs[own]["quantization"]
        np.testing.assert_allclose(got[logical], (raw[own].astype(np.float32) - zero_point) * scale, rtol=0, atol=1e-6)


def test_static_stream_follows_the_float_model_on_a_real_clip(static_bundle):
    from edgesdk.runtime.audio import KaldiFbankFrontend, read_wav

    path, model = static_bundle
    int8 = edgesdk.load(path, backend="litert", precision="int8-static")
    frontend = KaldiFbankFrontend.from_manifest(int8.manifest["frontend"])
    features = frontend.model_input(read_wav(CLIPS / "yes.wav"))  # a validation clip
    import torch

    stream, state, got, want = int8.stream(), model.init_state(1), [], []
    with torch.no_grad():
        for frame in features:
            got.append(stream.push({"features": frame[None, None].astype(np.float32)})["frame_logits"][0, 0])
            logits, _, state = model.forward_step(torch.from_numpy(frame[None]), state)
            want.append(logits[0].numpy())
    # Measured about 0.99 on this clip; a wrong scale or a swapped zero point gives far less.
    assert cosine_similarity(np.stack(want), np.stack(got)) >= 0.95


def test_recurrence_is_found_from_the_state_contract(tmp_path):
    """Known answer on a hand-built step: m' = m @ A + x @ B, y = m @ C, s' = s + y.

    The recurrence of m is {m@A, the Add}; of s, its Add. x @ B only feeds the state, and m @ C
    only reads it: neither is on a path from a state to its own output.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgesdk.exporters.precision.onnx import recurrence_nodes

    weights = [numpy_helper.from_array(np.eye(4, dtype=np.float32), name) for name in "ABC"]
    nodes = [helper.make_node("MatMul", ["m", "A"], ["mA"], name="decay"),
             helper.make_node("MatMul", ["x", "B"], ["xB"], name="input_projection"),
             helper.make_node("Add", ["mA", "xB"], ["m_next"], name="memory_update"),
             helper.make_node("MatMul", ["m", "C"], ["y"], name="readout"),
             helper.make_node("Add", ["s", "y"], ["s_next"], name="running_sum")]
    tensor = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 4])  # noqa: E731
    graph = helper.make_graph(nodes, "step", [tensor("x"), tensor("m"), tensor("s")],
                              [tensor("y"), tensor("m_next"), tensor("s_next")], weights)
    path = tmp_path / "step.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert recurrence_nodes(path, [("m", "m_next")]) == ["decay", "memory_update"]
    assert recurrence_nodes(path, [("m", "m_next"), ("s", "s_next")]) == ["decay", "memory_update", "running_sum"]
    assert recurrence_nodes(path, []) == []


def test_onnx_static_keeps_the_recurrence_and_state_float(static_bundle):
    import onnx

    path, _ = static_bundle
    manifest = read_manifest(path)
    artifact = next(a for a in manifest["artifacts"] if a["format"] == "onnx")
    recurrence = [k for k in artifact["recipe"]["kept_float"] if k["reason"].startswith("the streaming state's recurrence")]
    assert recurrence and recurrence[0]["ops"]
    graph = onnx.load(str(path / artifact["file"])).graph
    producer = {output: node for node in graph.node for output in node.output}
    consumers = {name: [n for n in graph.node if name in n.input] for name in (i.name for i in graph.input)}
    for state in manifest["state"]:
        # State goes in and out as float: read by no QuantizeLinear, written by no DequantizeLinear.
        assert all(node.op_type != "QuantizeLinear" for node in consumers[artifact["inputs"][state["input"]]])
        assert producer[artifact["outputs"][state["output"]]].op_type != "DequantizeLinear"
    # Every recurrence node is still its float self in the file.
    assert set(recurrence[0]["ops"]) <= {n.name for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")}
