"""Export validation and the on-device self-test judge a bundle by the same rules, with the same engine.

The self-test re-runs the first validation case (``samples/``) on each backend, so for that case
both must reach the same verdict and measure the same figures.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import edgesdk
from edgesdk.errors import ValidationError
from edgesdk.runtime.backends.base import BACKEND_OF_FORMAT
from edgesdk.runtime.selftest import selftest


def _first_case(bundle):
    report = json.loads((bundle / "validation.json").read_text())
    return {BACKEND_OF_FORMAT[fmt]: facts["cases"][0] for fmt, facts in report["formats"].items()}


def _assert_same_verdicts(bundle):
    exported = _first_case(bundle)
    device = selftest(bundle)
    assert set(device["backends"]) == set(exported)
    for backend, case in exported.items():
        on_device = device["backends"][backend]
        assert on_device["passed"] == case["passed"], backend
        for name, facts in case["outputs"].items():
            again = on_device["outputs"][name]
            assert again["passed"] == facts["passed"], (backend, name)
            assert again["max_abs"] == pytest.approx(facts["max_abs"], rel=1e-2, abs=1e-8), (backend, name)
            if "sqnr_db" in facts:
                assert again["sqnr_db"] == pytest.approx(facts["sqnr_db"], abs=0.01), (backend, name)
    return exported, device


def test_a_passing_stream_bundle_gets_the_same_verdict(streaming_bundle):
    exported, device = _assert_same_verdicts(streaming_bundle)
    assert device["passed"] and all(case["passed"] for case in exported.values())
    for backend, case in exported.items():
        assert device["backends"][backend]["outputs"]["logits"]["per_step_max_abs"] == pytest.approx(
            case["outputs"]["logits"]["per_step_max_abs"], rel=1e-2, abs=1e-8)


def test_a_failing_int8_bundle_gets_the_same_verdict(tmp_path):
    from examples.python.tiny_models import streaming_classifier

    path = tmp_path / "int8"
    # 200 dB is out of int8's reach (about 6 dB a bit): the int8 artifact must fail, the float one pass
    with pytest.raises(ValidationError):
        edgesdk.export(streaming_classifier(), path, formats=("onnx", "tflite"), quantize="int8", min_sqnr_db=200.0,
                       example_inputs={"features": (1, 1, 40)}, states={"conv_buffer": (1, 2, 40), "hidden": (1, 64)},
                       output_names=["logits"])
    exported, device = _assert_same_verdicts(path)
    assert not exported["litert"]["passed"] and exported["onnxruntime"]["passed"]
    assert not device["passed"]
    assert 0.9 < device["backends"]["litert"]["outputs"]["logits"]["cosine_similarity"] <= 1.0


@pytest.fixture(scope="module")
def ecoformer_bundle(tmp_path_factory):
    model = edgesdk.create_model("ecoformer", preset="tiny", seed=0)
    path = tmp_path_factory.mktemp("eco") / "tiny"
    edgesdk.export(model, path, formats=("onnx",), mode="full", random_weights=True)
    return path


def _flip_codes(bundle, tmp_path, flips: int):
    """A copy of ``bundle`` whose expected hash codes of the largest code output have ``flips`` signs flipped."""
    copy = tmp_path / f"flipped-{flips}"
    shutil.copytree(bundle, copy)
    expected = dict(np.load(copy / "samples" / "expected.npz"))
    name = max((n for n in expected if n.startswith("hash_codes_")), key=lambda n: expected[n].size)
    codes = expected[name].copy()
    flat = codes.reshape(-1)
    flat[np.flatnonzero(flat)[:flips]] *= -1
    expected[name] = codes
    np.savez(copy / "samples" / "expected.npz", **expected)
    return copy, name, codes.size


def test_ecoformer_validate_judges_hash_codes_by_bit_agreement(ecoformer_bundle, tmp_path):
    manifest = json.loads((ecoformer_bundle / "edgesdk.json").read_text())
    checks = manifest["validation"]["output_checks"]
    assert checks["logits"]["kind"] == "top1_agreement"
    assert {c["kind"] for n, c in checks.items() if n.startswith("hash_codes_")} == {"bit_agreement"}
    _assert_same_verdicts(ecoformer_bundle)
    untouched = selftest(ecoformer_bundle)["backends"]["onnxruntime"]["outputs"]
    _, name, total = _flip_codes(ecoformer_bundle, tmp_path, 0)
    already = untouched[name]["check"]["flipped_bits"]  # the backend's own flips (near-zero projections)
    allowed = int(np.floor(total * (1 - checks[name]["min_agreement"]) + 1e-9))
    assert allowed - already >= 1, "the largest code output must allow a flip for this test to mean anything"

    within, _, _ = _flip_codes(ecoformer_bundle, tmp_path, allowed - already)
    report = selftest(within)
    facts = report["backends"]["onnxruntime"]["outputs"][name]
    assert facts["passed"] and report["passed"] and facts["max_abs"] == pytest.approx(2.0)  # a flip is |±1 ∓ 1|
    assert facts["check"]["flipped_bits"] == allowed

    beyond, _, _ = _flip_codes(ecoformer_bundle, tmp_path, allowed - already + 1)
    report = selftest(beyond)
    facts = report["backends"]["onnxruntime"]["outputs"][name]
    assert not facts["passed"] and not report["passed"]
    assert facts["check"]["flipped_bits"] == allowed + 1
    assert facts["check"]["bit_agreement"] == pytest.approx(1 - (allowed + 1) / total)


def test_an_old_ecoformer_bundle_falls_back_to_the_share_within_tolerance(ecoformer_bundle, tmp_path):
    copy, name, total = _flip_codes(ecoformer_bundle, tmp_path, 1)
    manifest = json.loads((copy / "edgesdk.json").read_text())
    del manifest["validation"]["output_checks"]  # as bundles exported before the rules were written
    (copy / "edgesdk.json").write_text(json.dumps(manifest))
    facts = selftest(copy)["backends"]["onnxruntime"]["outputs"][name]
    assert "agreement" in facts["check"] and "bit_agreement" not in facts["check"]


def test_a_manifest_with_an_unknown_family_check_is_refused_by_name(stateless_bundle, tmp_path):
    from edgesdk.errors import BundleError
    from edgesdk.runtime.manifest import read_manifest

    copy = tmp_path / "hostile"
    shutil.copytree(stateless_bundle, copy)
    manifest = json.loads((copy / "edgesdk.json").read_text())
    manifest["validation"]["output_checks"] = {"output": {"kind": "vibes"}}
    (copy / "edgesdk.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"validation.output_checks.output kind 'vibes' is not one of bit_agreement"):
        read_manifest(copy)
