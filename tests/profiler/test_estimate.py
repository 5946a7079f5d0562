"""The two estimates: arithmetic only (the papers' account) and with memory traffic."""
from __future__ import annotations

import pytest

from edgesdk.devices import get_profile
from edgesdk.profiler.estimate import estimate_energy, estimate_energy_with_memory, level_for, memory_levels

OPS = {"per": "step", "macs": 1_000_000, "accumulates": 0, "binary_ops": 0, "counted": "test"}


def test_float_arithmetic_account_is_the_papers_own():
    # EcoFormer's get_energy.py: 3.7 pJ per multiply + 0.9 pJ per add, i.e. 4.6 pJ per fp32 MAC.
    for precision in (None, "fp32", "int8-weight-only"):  # weight-only int8 still multiplies in float
        estimate = estimate_energy(OPS, get_profile("x86-64"), precision)
        assert estimate["energy_per_inference_j"] == pytest.approx(1e6 * (3.7 + 0.9) * 1e-12)
        assert estimate["provenance"] == "estimated:ops"


@pytest.mark.parametrize("precision", ["int8-dynamic", "int8-static"])
def test_int8_compute_uses_int8_operation_energies(precision):
    estimate = estimate_energy(OPS, get_profile("x86-64"), precision)
    # Horowitz: int8 multiply 0.2 pJ + int32 accumulate add 0.1 pJ.
    assert estimate["energy_per_inference_j"] == pytest.approx(1e6 * 0.3e-12)
    assert estimate["constants"]["mac_pj"] == pytest.approx(0.3) and "int8" in estimate["constants"]["source"]


def test_memory_level_comes_from_the_profile_caches():
    levels = memory_levels(get_profile("jetson-orin-nano"))  # 64 KB L1d, 256 KB L2, 4 MB L3
    assert [level.capacity_bytes for level in levels] == [64 * 1024, 256 * 1024, 4 * 1024 * 1024, None]
    assert level_for(10_000, levels).pj_per_byte == pytest.approx(20 / 8)  # L1: Horowitz 32 KB, 20 pJ / 64 bit
    assert level_for(200_000, levels).pj_per_byte == pytest.approx(100 / 8)  # L2: his 1 MB figure
    assert level_for(6_500_000, levels).name == "DRAM"
    assert level_for(6_500_000, levels).pj_per_byte == pytest.approx(1300 / 8)


def test_ops_plus_memory_adds_the_bytes_read():
    profile = get_profile("jetson-orin-nano")
    # The scv2 step of the issue: ~6.5 MB of fp32 weights per frame, 1.7 M MACs.
    ops = {**OPS, "macs": 1_700_000}
    fp32 = estimate_energy_with_memory(ops, profile, weight_bytes=6_500_000, activation_bytes=4_000)
    arithmetic = 1.7e6 * 4.6e-12
    weights = 6_500_000 * 162.5e-12  # DRAM: 1.3 nJ per 64-bit read
    activations = 4_000 * 2.5e-12  # fits the 64 KB L1
    assert fp32["provenance"] == "estimated:ops+memory"
    assert fp32["arithmetic_j"] == pytest.approx(arithmetic)
    assert fp32["energy_per_inference_j"] == pytest.approx(arithmetic + weights + activations)
    assert fp32["weights_level"]["name"] == "DRAM"
    # int8: a quarter of the bytes (now held in the 4 MB L3) and int8 MACs.
    int8 = estimate_energy_with_memory(ops, profile, weight_bytes=1_625_000, activation_bytes=4_000, precision="int8-dynamic")
    assert int8["weights_level"]["name"].startswith("L3")
    assert int8["energy_per_inference_j"] == pytest.approx(1.7e6 * 0.3e-12 + 1_625_000 * 12.5e-12 + activations)
    assert int8["energy_per_inference_j"] < fp32["energy_per_inference_j"] / 10
