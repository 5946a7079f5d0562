"""Reduced precision as a property of an artifact: several precisions in one bundle, each with its
recipe and validation; ONNX through onnxruntime.quantization, TFLite through ai-edge-quantizer."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

import edgesdk
from edgesdk.errors import BundleError, UsageError
from edgesdk.exporters.precision.onnx import op_counts
from edgesdk.runtime.compare import cosine_similarity, sqnr_db
from edgesdk.runtime.manifest import check_manifest, read_manifest
from edgesdk.runtime.precision import QuantizationParameters

PRECISIONS = "fp32,fp16,int8-dynamic,int8-weight-only"


@pytest.fixture(scope="module")
def lmu_model():
    return edgesdk.create_model("lmuformer", preset="tiny")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, lmu_model):
    path = tmp_path_factory.mktemp("precision") / "tiny-stream"
    edgesdk.export(lmu_model, path, formats=("onnx", "tflite"), mode="stream", precision=PRECISIONS, random_weights=True)
    return path


def _torch_mean_logits(model, frames: np.ndarray) -> np.ndarray:
    """The fp32 PyTorch step over ``frames`` [steps, 1, 1, mel]: the independent reference."""
    state = model.init_state(1)
    out = []
    with torch.no_grad():
        for frame in frames:
            _, mean, state = model.forward_step(torch.from_numpy(frame[:, 0]), state)
            out.append(mean[0].numpy())
    return np.stack(out)


def test_every_precision_lives_in_one_bundle_with_its_recipe_and_validation(bundle):
    manifest = read_manifest(bundle)  # the manifest reader accepts every new field
    files = {a["file"]: a for a in manifest["artifacts"]}
    assert set(files) == {"model.onnx", "model.tflite", "model.fp16.onnx", "model.fp16.tflite",
                          "model.int8-dynamic.onnx", "model.int8-dynamic.tflite", "model.int8-weight-only.tflite"}
    assert not (bundle / "model.int8-weight-only.onnx").exists()  # ONNX has no weight-only path: skipped, said why
    assert files["model.onnx"]["precision"] == "float32" and "recipe" not in files["model.onnx"]
    for name, artifact in files.items():
        if artifact["precision"] == "float32":
            continue
        recipe = artifact["recipe"]
        assert recipe["tool"].split()[0] in ("onnxruntime.quantization", "onnxruntime.transformers.float16", "ai-edge-quantizer")
        assert recipe["tool"].split()[-1][0].isdigit(), recipe["tool"]  # a version
        assert sum(recipe["quantized_ops"].values()) > 0, name
        assert artifact["size_bytes"] < artifact["float_size_bytes"], name
        validation = artifact["validation"]
        assert validation["passed"] and validation["key"] != artifact["format"]
        for output in ("frame_logits", "mean_logits"):
            facts = validation["outputs"][output]
            assert 30.0 <= facts["sqnr_db"] and 0.999 < facts["cosine_similarity"] <= 1.0 and facts["max_abs"] > 0
    # The LMU recurrence stays float in every int8 file, found by content, with the reason.
    for name in ("model.int8-dynamic.onnx", "model.int8-dynamic.tflite", "model.int8-weight-only.tflite"):
        reasons = " ".join(k["reason"] for k in files[name]["recipe"]["kept_float"])
        assert "recurrence" in reasons, name
        assert "the family's recipe keeps" not in reasons, name  # each kept weight says its own why
    assert manifest["validation"]["min_sqnr_db"] == 30.0


class IndexedWeight(torch.nn.Module):
    """y = x @ W[1].T + b: the weight is picked from a bank in the graph (as LMUFormer's layers
    are: the exporter folds small weights itself, but leaves a Gather or Reshape of a large
    initializer in front of the Gemm)."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.bank = torch.nn.Parameter(torch.randn(2, 256, 512, generator=generator) * 0.05)
        self.bias = torch.nn.Parameter(torch.randn(256, generator=generator) * 0.1)

    def forward(self, x):
        return torch.nn.functional.linear(x, self.bank[1], self.bias)


def test_onnx_int8_folds_constants_so_the_quantizer_sees_computed_weights(tmp_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    result = edgesdk.export(IndexedWeight(), tmp_path / "own", formats=("onnx",), precision="fp32,int8-dynamic",
                            example_inputs={"x": (4, 512)})
    ours = op_counts(tmp_path / "own" / "model.int8-dynamic.onnx")
    recipe = next(a for a in result.manifest["artifacts"] if a["file"] == "model.int8-dynamic.onnx")["recipe"]
    assert ours.get("MatMulInteger") == ours.get("DynamicQuantizeLinear") == sum(recipe["quantized_ops"].values()) == 1
    # The same quantizer on the unfolded file sees no constant weight and quantizes nothing.
    unfolded = tmp_path / "unfolded.onnx"
    quantize_dynamic(str(tmp_path / "own" / "model.onnx"), str(unfolded), op_types_to_quantize=["MatMul", "Gemm"],
                     per_channel=True, weight_type=QuantType.QUInt8)
    float_ops = op_counts(tmp_path / "own" / "model.onnx")
    assert float_ops.get("Gather", 0) + float_ops.get("Reshape", 0) >= 1, float_ops
    assert op_counts(unfolded).get("MatMulInteger", 0) == 0
    assert any("constant folding" in step for step in recipe["steps"])
    assert any("Conv" in note for note in recipe["notes"])  # the int8-conv measurement is recorded


class PerHeadWeight(torch.nn.Module):
    """A per-head constant weight [1, heads, 64, 32] in a batched MatMul (EcoFormer's hash anchors),
    then a plain 2-D one: onnxruntime rejects per-channel zero points of the first at run time."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.per_head = torch.nn.Parameter(torch.randn(1, 2, 64, 32, generator=generator) * 0.1)
        self.out = torch.nn.Linear(32, 16)

    def forward(self, x):
        return self.out(torch.matmul(x, self.per_head))


def test_onnx_int8_dynamic_keeps_a_batched_weight_float_and_runs(tmp_path):
    module = PerHeadWeight().eval()
    result = edgesdk.export(module, tmp_path / "own", formats=("onnx",), precision="int8-dynamic",
                            example_inputs={"x": (1, 2, 8, 64)})
    recipe = next(a for a in result.manifest["artifacts"] if a["file"] == "model.int8-dynamic.onnx")["recipe"]
    kept = [k for k in recipe["kept_float"] if "b zero point is not valid" in k["reason"]]
    assert len(kept) == 1 and len(kept[0]["ops"]) == 1 and sum(recipe["quantized_ops"].values()) == 1, recipe
    x = np.random.default_rng(0).standard_normal((1, 2, 8, 64)).astype(np.float32)
    got = edgesdk.load(tmp_path / "own", backend="onnxruntime", precision="int8-dynamic").run({"x": x})
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    assert sqnr_db(want, next(iter(got.values()))) > 30.0


def test_onnx_int8_counts_what_it_quantized_and_keeps_the_recurrence(bundle):
    ours = op_counts(bundle / "model.int8-dynamic.onnx")
    float_ops = op_counts(bundle / "model.onnx")
    recipe = next(a for a in read_manifest(bundle)["artifacts"] if a["file"] == "model.int8-dynamic.onnx")["recipe"]
    kept = sum(len(k["ops"]) for k in recipe["kept_float"])
    assert ours["MatMulInteger"] == ours["DynamicQuantizeLinear"] == sum(recipe["quantized_ops"].values())
    assert ours["MatMulInteger"] + kept == float_ops.get("MatMul", 0) + float_ops.get("Gemm", 0)
    assert ours.get("MatMul", 0) + ours.get("Gemm", 0) == kept


def test_onnx_metadata_props_survive_every_transform(bundle):
    def props(path):
        return {p.key: p.value for p in onnx.load(str(path)).metadata_props if p.key.startswith("edgesdk.")}

    float_props = props(bundle / "model.onnx")
    assert "edgesdk.inputs" in float_props and "edgesdk.state" in float_props
    for name in ("model.fp16.onnx", "model.int8-dynamic.onnx"):
        assert props(bundle / name) == float_props, name
        lone = edgesdk.load(bundle / name)  # a lone quantized file still describes itself
        assert lone.is_streaming and [s.name for s in lone.state_spec] == [s["name"] for s in json.loads(float_props["edgesdk.state"])]


def test_fp16_keeps_float32_inputs_and_outputs(bundle):
    model = onnx.load(str(bundle / "model.fp16.onnx"))
    assert {v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)} == {onnx.TensorProto.FLOAT}
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    from ai_edge_litert.interpreter import Interpreter

    tensors = Interpreter(str(bundle / "model.fp16.tflite")).get_tensor_details()
    assert any(t["dtype"] == np.float16 for t in tensors)
    recipe = next(a for a in read_manifest(bundle)["artifacts"] if a["file"] == "model.fp16.onnx")["recipe"]
    assert any("expected slower" in note for note in recipe["notes"])
    assert any(k["reason"].startswith("LMU recurrence") for k in recipe["kept_float"])  # as in the int8 recipes


def test_fp16_ops_kept_float_compute_on_unrounded_tensors(tmp_path):
    """A constructed case with a known answer: x @ W1 -> Relu -> @ W2, both MatMuls kept float
    (--keep-float), W1 and W2 exact in float16, x = k/3 (not exact in float16). The converter
    alone rounds x and the tensors between the kept ops to float16 (error ~1e-4); the written
    file must compute them in float32 and match numpy's float32 answer."""
    from onnx import TensorProto, helper, numpy_helper

    from edgesdk.exporters.capture import ConverterLog
    from edgesdk.exporters.precision.onnx import quantize_onnx
    import onnxruntime

    w1 = np.array([[1, -2, 0.5, 4], [3, 1, -1, 0.25], [-0.5, 2, 1, 1], [1, 1, -3, 2]], np.float32)
    w2 = np.array([[0.5], [-1], [2], [0.75]], np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="first"), helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "w2"], ["y"], name="second")],
        "kept", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    source, target = tmp_path / "float.onnx", tmp_path / "half.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    x = (np.arange(8, dtype=np.float32).reshape(2, 4) + 1) / 3
    want = np.maximum(x @ w1, 0) @ w2
    assert np.abs(x.astype(np.float16).astype(np.float32) - x).max() > 1e-4  # the rounding the test would see

    recipe = quantize_onnx(source, target, "fp16", ConverterLog(), tmp_path, keep_patterns=("MatMul",))
    (got,) = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert np.abs(got - want).max() < 1e-5
    assert any("Cast pairs" in step for step in recipe.steps)
    assert any(k.ops == ("relu",) for k in recipe.kept_float)  # between the two kept MatMuls
    assert recipe.quantized_ops == {}  # every op is kept float32 here, none counts as float16


@pytest.mark.parametrize("backend, precision, file", [
    ("onnxruntime", None, "model.onnx"),
    ("litert", "fp32", "model.tflite"),
    ("onnxruntime", "int8-dynamic", "model.int8-dynamic.onnx"),
    ("litert", "int8-weight-only", "model.int8-weight-only.tflite"),
    ("litert", "fp16", "model.fp16.tflite"),
])
def test_load_picks_the_precision_and_tracks_pytorch(bundle, lmu_model, backend, precision, file):
    model = edgesdk.load(bundle, backend=backend, precision=precision)
    assert model.artifact["file"] == file
    frames = np.random.default_rng(7).standard_normal((60, 1, 1, lmu_model.config.mel_bins)).astype(np.float32)
    stream = model.stream()
    got = np.stack([stream.push({"features": f})["mean_logits"][0, 0] for f in frames])
    want = _torch_mean_logits(lmu_model, frames)
    assert sqnr_db(want[5:], got[5:]) >= (60.0 if file.count(".") == 1 else 30.0)


def test_load_names_the_precisions_a_bundle_has(bundle):
    with pytest.raises(UsageError, match="no int8-static artifact.*float16.*int8-dynamic"):
        edgesdk.load(bundle, precision="int8-static")


def test_inspect_shows_precisions_side_by_side(bundle, monkeypatch):
    from click.testing import CliRunner

    from edgesdk.cli import cli
    from edgesdk.cli.common import human

    monkeypatch.setattr(human, "width", 250)  # a wide terminal: one row per artifact, cells unwrapped
    result = CliRunner().invoke(cli, ["inspect", str(bundle)])
    assert result.exit_code == 0, result.output
    table = result.output[result.output.index("precisions"):]
    for text in ("model.int8-dynamic.onnx", "model.fp16.tflite", "int8-weight-only", "float16", "SQNR", "cosine"):
        assert text in table, text


def test_inspect_counts_kept_float_ops_per_reason_headline():
    from edgesdk.cli.inspect import _kept_float_summary

    kept = [{"ops": ["a"], "reason": "too small to pay for int8 at 1 row(s) per call: K x N = 192 x 64, 1.04x"},
            {"ops": ["b", "c"], "reason": "too small to pay for int8 at 1 row(s) per call: K x N = 64 x 12, 0.88x"},
            {"ops": ["lmu"], "reason": "LMU recurrence: eigenvalues next to 1"}]
    assert _kept_float_summary(kept) == "3 op(s): too small to pay for int8 at 1 row(s) per call; 1 op(s): LMU recurrence"


def test_cosine_similarity_known_answers():
    x = np.array([1.0, 2.0, 3.0])
    assert cosine_similarity(x, x) == pytest.approx(1.0)
    assert cosine_similarity(x, -2 * x) == pytest.approx(-1.0)
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 5.0])) == pytest.approx(0.0)
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0


def test_quantization_parameters_round_trip_and_saturate():
    params = QuantizationParameters("int8", 0.5, -3)
    values = np.array([-70.0, -1.0, 0.0, 0.26, 10.0, 70.0], dtype=np.float32)
    integers = params.quantize(values)
    assert integers.dtype == np.int8
    assert integers.tolist() == [-128, -5, -3, -2, 17, 127]
    assert params.dequantize(integers).tolist() == [-62.5, -1.0, 0.0, 0.5, 10.0, 65.0]


@pytest.mark.parametrize("change, field", [
    ({"precision": "int4"}, "artifacts[0].precision"),
    ({"io_quantization": {"inputs": {"x": {"dtype": "int8", "scale": 0.0, "zero_point": 0}}}},
     "artifacts[0].io_quantization.inputs.x.scale"),
    ({"io_quantization": {"outputs": {"y": {"dtype": "float32", "scale": 1.0, "zero_point": 0}}}},
     "artifacts[0].io_quantization.outputs.y.dtype"),
    ({"recipe": "dynamic"}, "artifacts[0].recipe"),
])
def test_manifest_reader_checks_precision_fields(change, field):
    manifest = {"schema_version": 1, "model": {}, "inputs": [{"name": "x", "shape": [1], "dtype": "float32"}],
                "outputs": [{"name": "y", "shape": [1], "dtype": "float32"}], "state": [],
                "artifacts": [{"file": "m.tflite", "format": "tflite", "sha256": "0" * 64,
                               "inputs": {"x": "x"}, "outputs": {"y": "y"}, **change}]}
    with pytest.raises(BundleError, match=field.replace("[", r"\[").replace("]", r"\]")):
        check_manifest(manifest, "edgesdk.json")


def test_selftest_judges_every_artifact_by_its_own_precision(bundle):
    """`edgesdk validate` on a bundle of several precisions runs each artifact, not one per backend:
    the float files by the element-wise tolerance, the reduced ones by SQNR."""
    from edgesdk.runtime.selftest import selftest

    report = selftest(bundle)
    manifest = read_manifest(bundle)
    expected_labels = {("onnxruntime" if a["format"] == "onnx" else "litert")
                       + ("" if a["precision"] == "float32" else f"/{a['precision']}") for a in manifest["artifacts"]}
    assert set(report["backends"]) == expected_labels
    assert report["passed"]
    for label, facts in report["backends"].items():
        for output, result in facts["outputs"].items():
            if "/" in label:
                assert facts["precision"] != "float32" and result["sqnr_db"] >= result["min_sqnr_db"], (label, output)
            else:
                assert facts["precision"] == "float32" and "sqnr_db" not in result, (label, output)
                assert result["max_abs"] <= result["atol"] + result["rtol"] * 10, (label, output)


def test_selftest_keeps_the_backend_name_for_a_backends_only_artifact(tmp_path, lmu_model):
    from edgesdk.runtime.selftest import selftest

    path = tmp_path / "int8-only"
    edgesdk.export(lmu_model, path, formats=("tflite",), mode="stream", precision="int8-dynamic", random_weights=True)
    report = selftest(path)
    assert set(report["backends"]) == {"litert"}
    assert report["backends"]["litert"]["precision"] == "int8-dynamic"
    assert all("sqnr_db" in result for result in report["backends"]["litert"]["outputs"].values())
