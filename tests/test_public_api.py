"""The public functions of ``edgesdk``: real signatures and docstrings, and what a new user tries first."""
from __future__ import annotations

import inspect

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import edgesdk
from edgesdk.errors import UsageError


def _underlying():
    from edgesdk.exporters.bundle import export
    from edgesdk.models.registry import create_model
    from edgesdk.runtime import load

    return {"create_model": create_model, "export": export, "load": load}


@pytest.mark.parametrize("name", ["create_model", "export", "load"])
def test_signature_is_the_real_one_and_every_argument_is_documented(name):
    public, real = getattr(edgesdk, name), _underlying()[name]
    shown = inspect.signature(public).parameters
    wanted = inspect.signature(real).parameters
    assert list(shown) == list(wanted)
    for parameter in wanted.values():
        assert shown[parameter.name].kind == parameter.kind, parameter.name
        assert shown[parameter.name].default == parameter.default, parameter.name
    doc = inspect.getdoc(public)
    assert "see bundle.export" not in doc and len(doc.splitlines()) > 10
    undocumented = [p for p in wanted if p != "recipe_options" and p not in doc]
    assert not undocumented


def test_push_takes_one_array_for_a_one_input_step(streaming_bundle):
    model = edgesdk.load(streaming_bundle, backend="onnxruntime")
    steps = np.random.default_rng(3).standard_normal((4, 1, 1, 40)).astype(np.float32)
    by_dict, by_array = model.stream(), model.stream()
    for step in steps:
        expected = by_dict.push({"features": step})["logits"]
        np.testing.assert_array_equal(by_array.push(step)["logits"], expected)


def test_one_array_for_a_two_input_model_names_the_inputs(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])], "add",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3]) for n in ("a", "b")],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    model = edgesdk.load(path, backend="onnxruntime")
    ones = np.ones((1, 3), np.float32)
    np.testing.assert_array_equal(model.run({"a": ones, "b": ones})["sum"], 2 * ones)
    with pytest.raises(UsageError, match=r"one array given, but the model takes 2 inputs \(a, b\)"):
        model.run(ones)
    with pytest.raises(UsageError, match="must be a dict of numpy arrays"):
        model.run([ones, ones])


def test_mode_full_with_states_is_refused(tmp_path):
    from examples.python.tiny_models import streaming_classifier

    with pytest.raises(UsageError, match="mode='full' exports the whole input at once, without state"):
        edgesdk.export(streaming_classifier(), tmp_path / "s", mode="full", example_inputs={"features": (1, 1, 40)},
                       states={"conv_buffer": (1, 2, 40), "hidden": (1, 64)})
    assert not (tmp_path / "s").exists()


def test_an_existing_empty_folder_is_accepted_as_output(tmp_path):
    from examples.python.tiny_models import classifier

    out = tmp_path / "made-ahead"
    out.mkdir()
    result = edgesdk.export(classifier(), out, formats=("onnx",), example_inputs={"features": (1, 40, 5)})
    assert result.valid and (out / "model.onnx").is_file()
    with pytest.raises(UsageError, match="already exists"):  # now a bundle: replacing it needs force
        edgesdk.export(classifier(), out, formats=("onnx",), example_inputs={"features": (1, 40, 5)})
