"""Matrix files: cells, unsupported combinations, cache keys, and errors that name the bad key."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgesdk.errors import UsageError
from edgesdk.sweep.matrix import load_matrix, parse_matrix

BASE = {"models": [{"family": "lmuformer", "preset": "tiny", "random_weights": True},
                   {"factory": "examples.python.tiny_models:classifier", "inputs": {"features": "1x40x17"}}],
        "formats": ["onnx", "tflite"], "precisions": ["fp32", "int8"], "devices": ["local", "fake-board"]}


def test_cells_are_the_product_and_int8_is_int8_dynamic_on_both_formats():
    matrix = parse_matrix(BASE)
    cells = matrix.cells()
    assert len(cells) == 2 * 2 * 2 * 2
    assert matrix.precisions == ("fp32", "int8-dynamic")  # the older spelling, read as the export's name
    assert [c.cell_id for c in cells if c.unsupported] == []
    weight_only = parse_matrix({**BASE, "precisions": ["int8-weight-only"]}).cells()
    unsupported = {c.cell_id: c.unsupported for c in weight_only if c.unsupported}
    assert sorted(unsupported) == sorted(f"{m}/onnx/int8-weight-only/{d}" for m in ("lmuformer-tiny", "classifier")
                                         for d in ("local", "fake-board"))
    assert all("onnxruntime has no int8 weight-only path" in why for why in unsupported.values())
    assert matrix.models[1].inputs == (("features", (1, 40, 17)),)


def test_keys_change_with_what_decides_the_result_and_only_with_it():
    matrix = parse_matrix(BASE)
    cells = {c.cell_id: c for c in matrix.cells()}
    onnx = cells["lmuformer-tiny/onnx/fp32/local"]
    onnx_board = cells["lmuformer-tiny/onnx/fp32/fake-board"]
    tflite_int8 = cells["lmuformer-tiny/tflite/int8-dynamic/local"]
    tflite_fp32 = cells["lmuformer-tiny/tflite/fp32/local"]
    assert matrix.export_key(onnx) == matrix.export_key(onnx_board)  # one bundle, measured on two devices
    assert matrix.measure_key(onnx, "x86-64") != matrix.measure_key(onnx_board, "fake-board")
    assert matrix.export_key(tflite_int8) != matrix.export_key(tflite_fp32)
    assert parse_matrix(BASE).export_key(onnx) == matrix.export_key(onnx)  # stable across reads
    changed = parse_matrix({**BASE, "models": [{"family": "lmuformer", "preset": "tiny", "random_weights": True, "options": {"chunk_frames": 4}}]})
    assert changed.export_key(changed.cells()[0]) != matrix.export_key(onnx)
    reprofiled = parse_matrix({**BASE, "profile": {"runs": 7}})
    same_cell = next(c for c in reprofiled.cells() if c.cell_id == onnx.cell_id)
    assert reprofiled.export_key(same_cell) == matrix.export_key(onnx)
    assert reprofiled.measure_key(same_cell, "x86-64") != matrix.measure_key(onnx, "x86-64")


@pytest.mark.parametrize("data, message", [
    ({**BASE, "formats": ["coreml"]}, "unknown coreml"),
    ({**BASE, "precisions": ["int4"]}, "unknown int4"),
    ({**BASE, "models": [{"family": "lmuformer", "factory": "a:b"}]}, "exactly one of family"),
    ({**BASE, "models": [{"factory": "a:b"}]}, "needs inputs"),
    ({**BASE, "models": [{"family": "lmuformer", "preset": "tiny", "random_weights": True, "colour": 1}]}, "unknown keys colour"),
    ({**BASE, "models": [{"family": "lmuformer", "preset": "tiny", "random_weights": True}] * 2}, "repeated: lmuformer-tiny"),
    ({**BASE, "models": [{"family": "lmuformer", "preset": "tiny"}]}, "give lmuformer a checkpoint: FILE, or random_weights: true"),
    ({**BASE, "models": [{"family": "lmuformer", "preset": "tiny", "random_weights": "yes"}]}, "random_weights must be true or false"),
    ({**BASE, "profile": {"runs": 0}}, "runs must be"),
    ({**BASE, "export": {"fold": False}}, "recipe options go under"),
    ({**BASE, "device": ["x"]}, "unknown keys device"),
    ([1, 2], "must be a mapping"),
])
def test_bad_matrices_are_usage_errors_naming_the_problem(data, message):
    with pytest.raises(UsageError, match=message) as raised:
        parse_matrix(data)
    assert raised.value.exit_code == 2


def test_yaml_file_reads_and_bad_yaml_is_a_usage_error(tmp_path):
    good = tmp_path / "m.yaml"
    good.write_text("models:\n  - family: lmuformer\n    preset: tiny\n    random_weights: true\nformats: [onnx]\n")
    matrix = load_matrix(good)
    assert [c.cell_id for c in matrix.cells()] == ["lmuformer-tiny/onnx/fp32/local"]
    assert matrix.base_dir == tmp_path
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_matrix(bad)


def test_the_example_matrix_reads_as_the_readme_says():
    root = Path(__file__).resolve().parents[2]
    matrix = load_matrix(root / "examples" / "sweeps" / "small.yaml")
    assert [(m.family, m.preset) for m in matrix.models] == [("lmuformer", "tiny"), ("slab", "tiny")]
    cells = matrix.cells()
    assert len(cells) == 8 and not any(c.unsupported for c in cells)  # int8-dynamic exists for both formats
    assert {c.device for c in cells} == {"local"}
