"""Device detection on fake file-system trees of each supported kind of device."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import pytest
import sysfs_trees as trees

from edgesdk.devices import PROFILES, detect_device

NANO_RELEASE = "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, DATE: Fri Jun  9 04:25:08 UTC 2023"
ORIN_RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025"


@pytest.mark.parametrize(
    "model, compatible, release, profile, l4t",
    [
        ("NVIDIA Jetson Nano Developer Kit", ["nvidia,p3450-0000", "nvidia,jetson-nano", "nvidia,tegra210"], NANO_RELEASE, "jetson-nano", "R32.7.4"),
        (
            "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
            ["nvidia,p3768-0000+p3767-0005-super", "nvidia,p3767-0005", "nvidia,tegra234"],
            ORIN_RELEASE,
            "jetson-orin-nano",
            "R36.4.3",
        ),
        ("Jetson AGX Orin Developer Kit", ["nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"], ORIN_RELEASE, "jetson-agx-orin", "R36.4.3"),
        # Orin NX shares the Orin Nano's SoC and rail layout, and so its profile.
        ("NVIDIA Orin NX Developer Kit", ["nvidia,p3768-0000+p3767-0000", "nvidia,tegra234"], ORIN_RELEASE, "jetson-orin-nano", "R36.4.3"),
        # Modules without a profile of their own get the generic Jetson one, not a wrong module's.
        ("NVIDIA Jetson Xavier NX Developer Kit", ["nvidia,p3509-0000+p3668-0001", "nvidia,tegra194"], NANO_RELEASE, "jetson-generic", "R32.7.4"),
        ("quill", ["nvidia,p2771-0000", "nvidia,tegra186"], NANO_RELEASE, "jetson-generic", "R32.7.4"),
    ],
)
def test_jetson_modules(tmp_path, model, compatible, release, profile, l4t):
    info = detect_device(trees.jetson(tmp_path, model, compatible, release))
    assert info.profile.name == profile
    assert info.l4t_release == l4t
    assert info.model == model
    assert info.arch == "aarch64"
    assert ("/etc/nv_tegra_release", release.lstrip("# ")) in info.evidence


@pytest.mark.parametrize(
    "model, profile",
    [
        ("Raspberry Pi 4 Model B Rev 1.4", "raspberry-pi-4"),
        ("Raspberry Pi 400 Rev 1.0", "raspberry-pi-4"),
        ("Raspberry Pi 5 Model B Rev 1.0", "raspberry-pi-5"),
        ("Raspberry Pi Compute Module 5 Rev 1.0", "raspberry-pi-5"),
    ],
)
def test_raspberry_pi(tmp_path, model, profile):
    info = detect_device(trees.raspberry_pi(tmp_path, model))
    assert info.profile.name == profile
    assert info.model == model  # the trailing NUL of the device-tree string is gone
    assert info.os == "linux"


def test_x86_laptop(tmp_path):
    info = detect_device(trees.x86_laptop(tmp_path))
    assert info.profile.name == "x86-64"
    assert info.cpu_model == "Intel(R) Core(TM) i7-1185G7 @ 3.00GHz"
    assert info.cpu_count == 2


def test_x86_without_arch_file_falls_back_to_cpuinfo(tmp_path):
    trees.write(tmp_path, "/proc/cpuinfo", trees.X86_CPUINFO)
    info = detect_device(tmp_path)
    assert info.arch == "x86_64"
    assert info.profile.name == "x86-64"


def test_android_phone_from_build_prop(tmp_path):
    info = detect_device(trees.android_phone(tmp_path, "samsung", "SM-S918B", "14"))
    assert info.profile.name == "android-arm64"
    assert info.os == "android"
    assert info.android_release == "14"
    assert info.model == "samsung SM-S918B"


def test_unknown_arm64_board_gets_the_generic_profile_and_says_so(tmp_path):
    trees.write(tmp_path, "/proc/cpuinfo", trees.ARM_CPUINFO)
    trees.write(tmp_path, "/proc/sys/kernel/arch", "aarch64")
    info = detect_device(tmp_path)
    assert info.profile.name == "arm64-linux"
    assert any(source == "fallback" for source, _ in info.evidence)


def test_empty_tree_is_generic_cpu(tmp_path):
    info = detect_device(tmp_path)
    assert info.profile.name == "generic-cpu"
    assert info.arch == "unknown"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="detection reads /proc and /sys of a Linux system")
def test_this_machine_detects_its_real_facts():
    info = detect_device("/")
    # What the interpreter and the kernel say about this machine, found without edgesdk.
    assert info.arch == platform.machine()
    assert info.os == "linux"
    assert info.cpu_count == os.cpu_count()
    cpuinfo = Path("/proc/cpuinfo").read_text()
    processors = [line for line in cpuinfo.splitlines() if line.split(":")[0].strip() == "processor"]
    assert info.cpu_count == len(processors)
    names = {line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
             if line.split(":")[0].strip() in ("model name", "Hardware", "Model") and ":" in line}
    if names:
        assert info.cpu_model in names
    # The profile is the one for this architecture (no Jetson, phone or Pi here unless it is one).
    assert info.profile.name in PROFILES
    expected = {"x86_64": "x86-64", "amd64": "x86-64", "aarch64": "arm64-linux", "arm64": "arm64-linux"}
    device_tree = Path("/proc/device-tree/model")
    if not device_tree.exists() and platform.machine() in expected:
        assert info.profile.name == expected[platform.machine()]
        assert info.profile.arch == info.arch
