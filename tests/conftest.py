"""Shared fixtures: small modules of our own and their exported bundles (built once per run)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # examples/ and tests/ import as packages from a checkout


@pytest.fixture(scope="session")
def stateless_bundle(tmp_path_factory):
    """The bring-your-own classifier, exported to both formats with a dynamic frame axis."""
    import edgesdk
    from examples.python.tiny_models import classifier

    path = tmp_path_factory.mktemp("bundles") / "classifier"
    edgesdk.export(classifier(), path, example_inputs={"features": (1, 40, 17)},
                   dynamic_axes={"features": {2: "frames"}})
    return path


@pytest.fixture(scope="session")
def streaming_bundle(tmp_path_factory):
    """The bring-your-own streaming step, batch axis dynamic in ONNX."""
    import edgesdk
    from examples.python.tiny_models import streaming_classifier

    path = tmp_path_factory.mktemp("bundles") / "streaming"
    edgesdk.export(
        streaming_classifier(), path,
        example_inputs={"features": (1, 1, 40)},
        states={"conv_buffer": (1, 2, 40), "hidden": (1, 64)},
        output_names=["logits"],
        dynamic_axes={"features": {0: "batch"}, "conv_buffer": {0: "batch"}, "hidden": {0: "batch"}},
    )
    return path


def _check_validation(result, formats) -> None:
    """An export's validation report says what its name promises: every asked format ran at least
    one case, each case compared every declared output, and each recorded error is finite and
    within its tolerance (or its family check / SQNR floor passed)."""
    import math

    report = result.validation
    assert result.valid and report["passed"]
    assert set(report["formats"]) == set(formats)
    outputs = {tensor["name"] for tensor in result.manifest["outputs"]}
    for fmt, facts in report["formats"].items():
        ran = [case for case in facts["cases"] if "skipped" not in case]
        assert ran, f"{fmt}: no validation case ran"
        for case in ran:
            where = f"{fmt} {case['name']}"
            assert set(case["outputs"]) == outputs, where
            compared = list(case["outputs"].items())
            compared += [(f"{name} vs stream reference", value)
                         for name, value in case.get("vs_stream_reference", {}).get("outputs", {}).items()]
            for name, value in compared:
                assert value["passed"], (where, name, value)
                assert all(math.isfinite(step) for step in value.get("per_step_max_abs", [])), (where, name)
                if value.get("check"):
                    assert value["check"]["passed"], (where, name, value)  # judged by the family's own check
                    continue
                assert math.isfinite(value["max_abs"]), (where, name, value)
                if value.get("sqnr_db") is not None:
                    assert value["sqnr_db"] >= value["min_sqnr_db"], (where, name, value)
                else:
                    assert value["max_abs"] <= value["atol"], (where, name, value)


@pytest.fixture
def check_validation():
    """``check_validation(result, formats)``: assert an export's validation.json is sound (see above)."""
    return _check_validation
