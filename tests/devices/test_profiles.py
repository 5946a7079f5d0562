"""Device profiles: each required device exists with sane facts; provider preference filtering."""
from __future__ import annotations

import pytest

from edgesdk.devices import PROFILES, get_profile, preferred_backends, preferred_delegates, preferred_providers
from edgesdk.errors import UsageError

REQUIRED = ("x86-64", "raspberry-pi-4", "raspberry-pi-5", "android-arm64", "jetson-nano", "jetson-orin-nano", "jetson-agx-orin")


@pytest.mark.parametrize("name", REQUIRED)
def test_required_profiles_exist_with_facts(name):
    profile = get_profile(name)
    assert profile.cpu and profile.title
    assert profile.onnxruntime_providers[-1] == "CPUExecutionProvider"
    assert set(profile.backends) <= {"onnxruntime", "litert"} and profile.backends
    assert "xnnpack" in profile.litert_delegates
    constants = profile.energy_per_op
    # Horowitz ISSCC 2014, 45 nm: fp32 mult 3.7 + add 0.9 pJ.
    assert constants.mac_pj == pytest.approx(3.7 + 0.9)
    assert constants.accumulate_pj == pytest.approx(0.9)
    assert 0 < constants.binary_pj < constants.accumulate_pj
    assert "Horowitz" in constants.source


def test_jetsons_prefer_tensorrt_then_cuda_and_read_ina3221():
    for name in ("jetson-nano", "jetson-orin-nano", "jetson-agx-orin"):
        profile = get_profile(name)
        assert profile.onnxruntime_providers[:2] == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
        assert profile.power_sensors == ("ina3221",)
        assert profile.backends[0] == "onnxruntime"


def test_phone_and_pis():
    assert get_profile("android-arm64").power_sensors == ("android",)
    assert "NnapiExecutionProvider" in get_profile("android-arm64").onnxruntime_providers
    assert get_profile("raspberry-pi-4").power_sensors == ()
    assert get_profile("raspberry-pi-5").process_node_nm == 16


def test_unknown_profile_is_a_usage_error_naming_the_known_ones():
    with pytest.raises(UsageError, match="jetson-nano"):
        get_profile("jetson-thor")


def test_preferred_providers_follow_the_profile_and_keep_cpu_last():
    jetson = get_profile("jetson-orin-nano")
    available = ["CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider", "AzureExecutionProvider"]
    assert preferred_providers(jetson, available) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    # No TensorRT in this build: CUDA first; Azure (not in the profile) never requested.
    assert preferred_providers(jetson, ["AzureExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    x86 = get_profile("x86-64")
    assert preferred_providers(x86, ["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert preferred_providers(x86, []) == []


def test_preferred_delegates_and_backends():
    phone = get_profile("android-arm64")
    assert preferred_delegates(phone, ["nnapi", "xnnpack"]) == ["xnnpack", "nnapi"]
    assert preferred_backends(get_profile("jetson-nano"), ["litert", "onnxruntime"]) == ["onnxruntime", "litert"]
    assert preferred_backends(get_profile("x86-64"), ["onnxruntime"]) == ["onnxruntime"]


def test_every_profile_serialises():
    for profile in PROFILES.values():
        facts = profile.as_dict()
        assert facts["name"] == profile.name
        assert facts["energy_per_op"]["mac_pj"] > 0
