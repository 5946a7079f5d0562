"""The comparison engine on constructed arrays whose answers are known in closed form."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgesdk.runtime.compare import (
    BitAgreement,
    CaseResult,
    OutputRule,
    ProbeAgreement,
    Rules,
    ShareWithinTolerance,
    SqnrRule,
    Tolerance,
    TopOneAgreement,
    compare_output,
    compare_steps,
    cosine_similarity,
    family_check_from_manifest,
    family_check_to_manifest,
    sqnr_db,
    tick_line,
)


def test_max_and_mean_abs_of_one_known_error():
    reference = np.zeros(10, dtype=np.float32)
    candidate = reference.copy()
    candidate[3] = -0.5
    result = compare_output("y", reference, candidate, OutputRule(Tolerance(atol=0.4, rtol=0.0)))
    assert result.max_abs == 0.5 and result.mean_abs == pytest.approx(0.05)
    assert not result.passed and result.error is None
    assert compare_output("y", reference, candidate, OutputRule(Tolerance(atol=0.5, rtol=0.0))).passed


def test_rtol_scales_with_the_reference():
    reference = np.array([100.0, 1.0])
    candidate = np.array([100.5, 1.0])
    # 0.5 <= 0 + 0.01 * 100 passes; with rtol 1e-3 the bound is 0.1
    assert compare_output("y", reference, candidate, OutputRule(Tolerance(0.0, 1e-2))).passed
    assert not compare_output("y", reference, candidate, OutputRule(Tolerance(0.0, 1e-3))).passed


def test_shape_is_compared_before_finiteness_and_values():
    reference = np.zeros((2, 3))
    result = compare_output("y", reference, np.full((3, 2), np.nan), OutputRule())
    assert not result.passed and result.error == "shape (3, 2) vs reference (2, 3)"
    result = compare_output("y", reference, np.array([[0, np.inf, 0], [0, 0, 0]]), OutputRule(Tolerance(1e9, 0)))
    assert not result.passed and result.error == "non-finite values where the reference is finite"


def test_sqnr_of_noise_with_known_power():
    rng = np.random.default_rng(0)
    reference = np.ones(10_000)
    noise = 0.1 * np.where(rng.random(10_000) < 0.5, -1.0, 1.0)  # power exactly 0.01
    assert sqnr_db(reference, reference + noise) == pytest.approx(20.0)
    sine = np.sin(np.linspace(0, 2 * np.pi, 1000, endpoint=False))  # power 1/2
    assert sqnr_db(sine, sine + 0.05 * np.sign(noise[:1000])) == pytest.approx(10 * math.log10(0.5 / 0.0025))
    passed = compare_output("y", reference, reference + noise, OutputRule(sqnr=SqnrRule(19.0)))
    failed = compare_output("y", reference, reference + noise, OutputRule(sqnr=SqnrRule(21.0)))
    assert passed.passed and not failed.passed
    assert failed.sqnr_db == pytest.approx(20.0) and failed.min_sqnr_db == 21.0


def test_cosine_similarity_known_angles():
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    assert cosine_similarity(np.array([1.0, 2.0]), np.array([-2.0, 1.0])) == pytest.approx(0.0)
    assert cosine_similarity(np.array([3.0, 4.0]), np.array([6.0, 8.0])) == pytest.approx(1.0)
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    assert cosine_similarity(np.zeros(3), np.ones(3)) == 0.0


def test_reduced_precision_reports_cosine_and_drops_the_tolerance():
    reference = np.array([1.0, 0.0])
    result = compare_output("y", reference, np.array([1.0, 1.0]), OutputRule(sqnr=SqnrRule(-10.0)))
    assert result.cosine_similarity == pytest.approx(1 / math.sqrt(2))
    facts = result.to_dict()
    assert facts["sqnr_db"] == pytest.approx(0.0) and "atol" not in facts and "rtol" not in facts
    float_facts = compare_output("y", reference, reference, OutputRule()).to_dict()
    assert "cosine_similarity" not in float_facts and float_facts["atol"] == 1e-4


def test_bit_agreement_counts_known_flips_and_replaces_the_tolerance():
    reference = np.ones((2, 1, 100, 10), dtype=np.float32)  # 2000 bits; 0.999 allows 2 flips
    candidate = reference.copy()
    candidate[1, 0, 3, 5] = -1e-6
    candidate[1, 0, 7, 1] = -3.0
    rule = OutputRule(Tolerance(1e-4, 0.0), check=BitAgreement(min_agreement=0.999))
    result = compare_output("codes", reference, candidate, rule)
    assert result.passed and result.max_abs == 4.0  # the tolerance fails; the family check decides
    assert result.check["flipped_bits"] == 2 and result.check["flipped_bits_per_image"] == [0, 2]
    assert result.check["bit_agreement"] == pytest.approx(1 - 2 / 2000)
    candidate[0, 0, 0, 0] = -1.0
    result = compare_output("codes", reference, candidate, rule)
    assert not result.passed and result.check["flipped_bits"] == 3


def test_top_one_agreement_needs_the_tolerance_and_the_same_class():
    reference = np.array([[0.0, 1.0, 0.5], [2.0, 0.0, 0.0]])
    near = reference + 1e-3
    swapped = reference.copy()
    swapped[0, 2] = 1.0 + 1e-4  # argmax moves from 1 to 2 within atol
    rule = OutputRule(Tolerance(1e-2, 0.0), check=TopOneAgreement())
    assert compare_output("logits", reference, near, rule).passed
    result = compare_output("logits", reference, swapped, OutputRule(Tolerance(1.0, 0.0), check=TopOneAgreement()))
    assert not result.passed and result.check["top1_agreement"] == 0.5
    assert not compare_output("logits", reference, reference + 0.1, rule).passed


def test_share_within_tolerance_for_old_bundles():
    reference = np.zeros(1000)
    candidate = reference.copy()
    candidate[:2] = 1.0
    rule = OutputRule(Tolerance(1e-4, 0), check=ShareWithinTolerance())
    result = compare_output("codes", reference, candidate, rule)
    assert not result.passed and result.check["agreement"] == pytest.approx(0.998)
    candidate[1] = 0.0
    result = compare_output("codes", reference, candidate, rule)
    assert result.passed and result.check["agreement"] == pytest.approx(0.999)


def test_steps_name_the_worst_step_and_merge_checks():
    reference = [np.zeros(4) for _ in range(3)]
    candidate = [np.zeros(4), np.array([0, 0.3, 0, 0]), np.array([0.1, 0, 0, 0])]
    result = compare_steps("y", reference, candidate, OutputRule(Tolerance(0.2, 0.0)))
    assert not result.passed and result.worst_step == 1 and result.per_step_max_abs == (0.0, 0.3, 0.1)
    assert result.mean_abs == pytest.approx((0 + 0.075 + 0.025) / 3)
    codes = [np.ones(1000), -np.ones(1000)]
    flipped = [np.ones(1000), -np.ones(1000)]
    flipped[1][:5] = 1.0
    merged = compare_steps("codes", codes, flipped, OutputRule(check=BitAgreement(0.999)))
    assert not merged.passed and merged.check["failed_steps"] == [1]
    assert merged.check["bit_agreement"] == pytest.approx(0.995) and merged.check["flipped_bits"] == 5
    broken = compare_steps("y", reference, [np.zeros(4), np.zeros(5), np.zeros(4)], OutputRule())
    assert broken.error == "step 1: shape (5,) vs reference (4,)"


def test_stream_sqnr_is_over_all_steps_at_once():
    reference = [np.zeros(100), np.ones(100)]  # the first step alone has no signal
    candidate = [np.full(100, 0.1), np.ones(100) - 0.1]
    result = compare_steps("y", reference, candidate, OutputRule(sqnr=SqnrRule(15.0)))
    assert result.sqnr_db == pytest.approx(10 * math.log10(100 / 2.0))  # 100 / (200 * 0.01)
    assert result.passed and result.per_step_max_abs == pytest.approx((0.1, 0.1))


def test_rules_round_trip_through_the_manifest():
    rules = Rules(Tolerance(1e-3, 0.0), {"state": Tolerance(1e-2, 1e-3)},
                  {"logits": TopOneAgreement(), "codes": BitAgreement(0.99)}, 25.0)
    section = rules.to_manifest()
    assert section["family_checked_outputs"] == ["codes", "logits"]
    assert section["output_checks"]["codes"] == {"kind": "bit_agreement", "min_agreement": 0.99, "codes": "sign"}
    back = Rules.from_manifest({**section, "min_sqnr_db": 25.0})
    assert back == rules
    assert back.rule("codes", reduced_precision=True) == OutputRule(Tolerance(1e-3, 0.0), SqnrRule(25.0), BitAgreement(0.99))
    assert back.rule("state").tolerance == Tolerance(1e-2, 1e-3)


def test_an_old_manifest_without_rules_falls_back_to_the_share_within_tolerance():
    old = {"atol": 1e-3, "rtol": 0.0, "output_tolerances": {}, "family_checked_outputs": ["codes"], "min_sqnr_db": None}
    rules = Rules.from_manifest(old)
    assert rules.checks == {"codes": ShareWithinTolerance(0.999)} and rules.min_sqnr_db == 30.0


@pytest.mark.parametrize("data, message", [
    ({"min_agreement": 0.9}, "with a 'kind'"),
    ({"kind": "vibes"}, "is not one of"),
    ({"kind": "bit_agreement", "threshold": 1}, "unknown field"),
    ({"kind": "bit_agreement", "min_agreement": 2.0}, "within \\[0, 1\\]"),
    ({"kind": "bit_agreement", "codes": "magnitude"}, "must be 'sign'"),
    ({"kind": "probe_agreement", "weights": [[1.0, 0.0]], "bias": [0.0]}, "classes >= 2"),
    ({"kind": "probe_agreement", "weights": [], "bias": []}, "features\\]\\[classes\\]"),
])
def test_bad_family_checks_are_refused_with_a_reason(data, message):
    with pytest.raises(ValueError, match=message):
        family_check_from_manifest(data)
    assert family_check_from_manifest(family_check_to_manifest(BitAgreement())) == BitAgreement()


def test_tick_lines_keep_their_format():
    where = [("onnx", 6), ("sample[0]", 22)]
    reference = np.zeros(3, dtype=np.float32)
    ok = compare_output("logits", reference, np.array([0, 3.1e-6, 0], np.float32), OutputRule(Tolerance(1e-4, 0.0)))
    line = tick_line(ok, where)
    assert line.startswith("✓ onnx   sample[0]              logits                   max abs 3.1e-06  atol 1e-04")
    assert line.endswith("atol 1e-04")
    bad = compare_output("logits", reference, np.zeros(4), OutputRule())
    assert tick_line(bad, where).endswith("logits                   shape (4,) vs reference (3,)")
    assert tick_line(bad, where).startswith("✗ onnx")
    quantized = compare_output("y", np.ones(4), np.ones(4) * 1.1, OutputRule(sqnr=SqnrRule(30.0)))
    assert "SQNR 20.0 dB, needs 30  (max abs 1.0e-01, cosine 1.000000)" in tick_line(quantized, [("tflite", 12)])
    codes = compare_output("codes", np.ones(10), np.ones(10), OutputRule(check=BitAgreement()))
    assert "[bit_agreement 1, flipped_bits 0, total_bits 10" in tick_line(codes, where)


def test_case_verdict_and_record():
    good = compare_output("a", np.zeros(2), np.zeros(2), OutputRule())
    bad = compare_output("b", np.zeros(2), np.ones(2), OutputRule())
    assert CaseResult("c", (good,)).passed and not CaseResult("c", (good, bad)).passed
    assert not CaseResult("c", (good,), against_reference=(bad,)).passed
    record = CaseResult("c", (good,), steps=4, against_reference=(bad,), diagnostics={"pytorch_float64_gap": None}).to_dict()
    assert record["passed"] is False and record["steps"] == 4 and record["pytorch_float64_gap"] is None
    assert record["vs_stream_reference"]["passed"] is False and record["outputs"]["a"]["max_abs"] == 0.0
    skipped = CaseResult("c", skipped="shapes differ").to_dict()
    assert "passed" not in skipped and skipped["skipped"] == "shapes differ"


def test_a_result_reads_back_from_its_record():
    result = compare_steps("y", [np.zeros(2), np.zeros(2)], [np.zeros(2), np.ones(2)], OutputRule(check=BitAgreement(0.5)))
    back = type(result).from_dict("y", {**result.to_dict(), "pytorch_step_max_abs": 0.25})
    assert back.passed == result.passed and back.per_step_max_abs == (0.0, 1.0) and back.check == result.check
    assert back.notes == {"pytorch_step_max_abs": 0.25}
    assert tick_line(back, [("onnx", 6)]) == tick_line(result, [("onnx", 6)])


def test_reduced_precision_codes_are_judged_by_bit_agreement_and_logits_by_sqnr_and_class():
    codes = np.ones((1, 2, 500, 2), dtype=np.float32)  # 2000 bits
    one_flip = codes.copy()
    one_flip[0, 1, 9, 0] = -1.0  # 99.95 % agreement; as a signal, 10*log10(2000 / 4) = 27 dB
    rule = OutputRule(Tolerance(1e-4, 0.0), SqnrRule(30.0), BitAgreement(0.999))
    result = compare_output("codes", codes, one_flip, rule)
    assert result.passed and result.sqnr_db == pytest.approx(10 * np.log10(500)) and result.sqnr_db < 30
    one_flip[0, 0, :3, 1] = -1.0  # 4 flips: 99.8 %
    assert not compare_output("codes", codes, one_flip, rule).passed
    logits = np.array([[0.0, 1.0, 0.998], [2.0, 0.0, 0.0]])
    noisy = logits + np.array([[1e-3, -5e-4, -1e-3], [-1e-3, 1e-3, 0.0]])  # 62 dB, outside atol 1e-4
    rule = OutputRule(Tolerance(1e-4, 0.0), SqnrRule(30.0), TopOneAgreement())
    assert compare_output("logits", logits, noisy, rule).passed
    swapped = logits.copy()
    swapped[0, 2] += 4e-3  # 55 dB, but row 0 now picks class 2
    result = compare_output("logits", logits, swapped, rule)
    assert not result.passed and result.sqnr_db > 50 and result.check["top1_agreement"] == 0.5


def test_probe_agreement_counts_frames_whose_probe_class_changes():
    # Two features, three classes: class = which of x0, x1, 0.5 is largest.
    probe = ProbeAgreement(((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)), (0.0, 0.0, 0.5), min_agreement=0.75, about="known")
    frames = np.array([[[2.0, 0.0], [0.0, 2.0], [0.1, 0.2], [1.0, 0.9]]])  # [1, 4 frames, 2]: classes 0, 1, 2, 0
    assert probe.predict(frames).tolist() == [0, 1, 2, 0]
    moved = frames.copy()
    moved[0, 3] = [0.9, 1.0]  # the last frame now decides class 1
    rule = OutputRule(Tolerance(1e-4, 0.0), SqnrRule(10.0), probe)
    result = compare_output("hidden", frames, moved, rule)
    assert result.check["probe_agreement"] == 0.75 and result.check["vectors"] == 4 and result.check["classes_seen"] == 3
    assert result.passed  # 75 % agreement meets 0.75, SQNR 10*log10(10.1 / 0.02) = 27 dB meets 10
    moved[0, 2] = [0.6, 0.0]  # a second frame changes class: 50 %
    assert not compare_output("hidden", frames, moved, rule).passed
    # Float artifacts: the element-wise tolerance must hold as well.
    assert not compare_output("hidden", frames, frames + 1e-3, OutputRule(Tolerance(1e-4, 0.0), None, probe)).passed
    back = family_check_from_manifest(family_check_to_manifest(probe))
    assert back == probe and isinstance(back.weights[0], tuple)
    with pytest.raises(ValueError, match="takes 2 features"):
        probe.predict(np.zeros((1, 3, 5)))
