"""Device detection on fake file-system trees of each supported kind of device."""
from __future__ import annotations

import os
import platform
import struct
import sys
from pathlib import Path

import pytest
import sysfs_trees as trees

from edgesdk.devices import PROFILES, detect_device
from edgesdk.devices.detect import ProcessIsa, check_isa, isa_family, process_isa

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


# The ISA the process runs against the host the kernel and /proc/cpuinfo describe.
AARCH64_PROCESS = ProcessIsa(machine="aarch64", pointer_bits=64, multiarch="aarch64-linux-gnu", implementation="cpython 3.11")
ARMHF_PROCESS = ProcessIsa(machine="aarch64", pointer_bits=32, multiarch="arm-linux-gnueabihf", implementation="cpython 3.11")
X86_PROCESS = ProcessIsa(machine="x86_64", pointer_bits=64, multiarch="x86_64-linux-gnu", implementation="cpython 3.11")


def test_aarch64_process_on_an_x86_host_is_emulation(tmp_path):
    # qemu-user: uname says aarch64, the host's /proc still describes the x86 machine.
    info = detect_device(trees.x86_laptop(tmp_path), process=AARCH64_PROCESS)
    assert info.profile.name == "x86-64" and info.arch == "x86_64"  # the host, as its files say
    assert info.isa.process.isa == "aarch64"
    assert info.isa.emulated
    assert info.isa.cpu_family == "x86" and info.isa.kernel_arch == "x86_64"
    assert len(info.isa.disagreements) == 2
    assert "x86 CPU" in info.isa.disagreements[0] and "aarch64" in info.isa.disagreements[0]
    assert "x86_64" in info.isa.disagreements[1]
    assert info.as_dict()["isa"]["emulated"] is True


def test_32_bit_userland_on_a_64_bit_kernel_is_native_but_reported(tmp_path):
    # Raspberry Pi OS (32-bit) on its 64-bit kernel: uname says aarch64, the interpreter is armhf.
    info = detect_device(trees.raspberry_pi(tmp_path, "Raspberry Pi 4 Model B Rev 1.5"), process=ARMHF_PROCESS)
    assert info.profile.name == "raspberry-pi-4"
    assert info.isa.process.isa == "armv7l" and info.isa.process.pointer_bits == 32
    assert not info.isa.emulated
    (disagreement,) = info.isa.disagreements
    assert "aarch64" in disagreement and "32-bit userland" in disagreement


def test_native_process_has_no_disagreement(tmp_path):
    info = detect_device(trees.jetson(tmp_path, "NVIDIA Jetson AGX Orin", ["nvidia,tegra234"], ORIN_RELEASE),
                         process=AARCH64_PROCESS)
    assert not info.isa.emulated and info.isa.disagreements == ()
    info = detect_device(trees.x86_laptop(tmp_path / "x86"), process=X86_PROCESS)
    assert not info.isa.emulated and info.isa.disagreements == ()


def test_x86_process_on_an_arm_host_is_emulation_too(tmp_path):
    # The other direction (box64/FEX on an Arm board): cpuinfo alone decides, without the arch file.
    trees.write(tmp_path, "/proc/cpuinfo", trees.ARM_CPUINFO)
    check = check_isa(tmp_path, X86_PROCESS)
    assert check.emulated and check.cpu_family == "arm" and check.kernel_arch == ""


def test_emulated_cpuinfo_does_not_hide_the_kernel(tmp_path):
    # qemu-user 8.2+ presents an Arm /proc/cpuinfo to an aarch64 guest; the kernel's arch stays x86_64.
    trees.write(tmp_path, "/proc/cpuinfo", trees.ARM_CPUINFO)
    trees.write(tmp_path, "/proc/sys/kernel/arch", "x86_64")
    check = check_isa(tmp_path, AARCH64_PROCESS)
    assert check.emulated and check.cpu_family == "arm"
    (disagreement,) = check.disagreements
    assert "x86_64" in disagreement and "another ISA" in disagreement


def test_an_inspected_tree_is_not_compared_with_this_process(tmp_path):
    # `edgesdk devices --root IMAGE` reads a tree from outside: the process does not run there.
    assert detect_device(trees.x86_laptop(tmp_path)).isa is None


def test_this_process_is_read_from_the_interpreter():
    own = process_isa()
    assert own.pointer_bits == struct.calcsize("P") * 8
    assert own.machine == platform.machine()
    assert isa_family(own.isa) != ""
    info = detect_device("/")
    assert info.isa is not None and info.isa.process == own


@pytest.mark.parametrize(
    "process, isa",
    [
        (ProcessIsa("aarch64", 32), "armv7l"),  # no multiarch: uname narrowed by the pointer size
        (ProcessIsa("x86_64", 32), "i686"),
        (ProcessIsa("aarch64", 64), "aarch64"),
        (ProcessIsa("x86_64", 32, "i386-linux-gnu"), "i686"),
        (ProcessIsa("armv8l", 32, "arm-linux-gnueabihf"), "armv7l"),
    ],
)
def test_process_isa_from_partial_facts(process, isa):
    assert process.isa == isa
