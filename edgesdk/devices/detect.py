"""Which device is this? Read the system's own description of itself and pick a profile.

Sources, in the order they are trusted:

- ``/etc/nv_tegra_release`` and ``/proc/device-tree/model`` / ``compatible`` (Jetson, Raspberry
  Pi and other device-tree boards name themselves there);
- Android system properties (``getprop`` when running on the device, else ``/system/build.prop``
  and ``/vendor/build.prop``);
- ``/proc/cpuinfo`` (x86 ``model name``; Arm ``Hardware``/``Model`` lines);
- the machine architecture (``/proc/sys/kernel/arch``, else ``uname``).

Every path is read under ``root``, so tests can present any device as a directory tree. Each fact
used is recorded as evidence, so ``edgesdk devices`` can show why it decided what it decided.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgesdk.devices.profiles import DeviceProfile, get_profile

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceInfo:
    """What detection found.

    Attributes:
        profile: the chosen profile.
        model: the device's own name for itself (device-tree model, Android model, CPU model).
        arch: machine architecture, e.g. ``"x86_64"``, ``"aarch64"``.
        os: ``"linux"`` or ``"android"``.
        cpu_model: CPU model string, ``""`` when unknown.
        cpu_count: logical CPUs listed in cpuinfo (0 when unknown).
        l4t_release: Jetson Linux release, e.g. ``"R35.4.1"`` (``""`` elsewhere).
        android_release: Android version (``""`` elsewhere).
        evidence: ``(source, fact)`` pairs that led to the choice.
        root: the file-system root that was read.
    """

    profile: DeviceProfile
    model: str
    arch: str
    os: str
    cpu_model: str = ""
    cpu_count: int = 0
    l4t_release: str = ""
    android_release: str = ""
    evidence: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    root: str = "/"

    def as_dict(self) -> dict:
        return {
            "profile": self.profile.name,
            "profile_title": self.profile.title,
            "model": self.model,
            "arch": self.arch,
            "os": self.os,
            "cpu_model": self.cpu_model,
            "cpu_count": self.cpu_count,
            "l4t_release": self.l4t_release,
            "android_release": self.android_release,
            "evidence": [{"source": source, "fact": fact} for source, fact in self.evidence],
        }


def _read_text(root: Path, relative: str) -> str | None:
    """Contents of ``root/relative`` (device-tree strings end in NUL), or None when unreadable."""
    path = root / relative.lstrip("/")
    try:
        return path.read_bytes().decode("utf-8", errors="replace").replace("\x00", "\n").strip()
    except OSError:
        return None


def _parse_cpuinfo(text: str) -> tuple[str, int, dict[str, str]]:
    """Model string, processor count and the other first-seen ``key: value`` fields."""
    fields: dict[str, str] = {}
    processors = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            processors += 1
        fields.setdefault(key, value)
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or ""
    return model, processors, fields


def _parse_properties(text: str) -> dict[str, str]:
    """``key=value`` lines of a build.prop file."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        props[key.strip()] = value.strip()
    return props


def _parse_getprop(text: str) -> dict[str, str]:
    """``[key]: [value]`` lines printed by Android's getprop."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("]: [")
        if sep and key.startswith("[") and value.endswith("]"):
            props[key[1:]] = value[:-1]
    return props


def _android_properties(root: Path) -> tuple[dict[str, str], str]:
    """Android properties and where they came from; empty when this is not Android."""
    if str(root) == "/" and shutil.which("getprop"):
        try:
            done = subprocess.run(
                ["getprop"], capture_output=True, text=True, timeout=5, check=False
            )
            props = _parse_getprop(done.stdout)
            if props:
                return props, "getprop"
        except (OSError, subprocess.SubprocessError) as error:
            logger.debug("getprop failed: %s", error)
    props: dict[str, str] = {}
    sources = []
    for relative in ("/system/build.prop", "/vendor/build.prop"):
        text = _read_text(root, relative)
        if text is not None:
            # /system wins over /vendor for the keys both define, as Android's init does.
            for key, value in _parse_properties(text).items():
                props.setdefault(key, value)
            sources.append(relative)
    return props, "+".join(sources)


def _machine(root: Path, cpuinfo_fields: dict[str, str]) -> tuple[str, str]:
    """Architecture and where it came from."""
    arch = _read_text(root, "/proc/sys/kernel/arch")
    if arch:
        return arch.splitlines()[0], "/proc/sys/kernel/arch"
    if str(root) == "/":
        return platform.machine(), "uname"
    # A fake tree without the arch file: x86 cpuinfo names a vendor, Arm's an implementer.
    if "vendor_id" in cpuinfo_fields:
        return "x86_64", "/proc/cpuinfo (vendor_id)"
    if "CPU implementer" in cpuinfo_fields:
        return "aarch64", "/proc/cpuinfo (CPU implementer)"
    return "unknown", "none"


def _jetson_profile(model: str, compatible: str) -> str:
    """Profile name for a Jetson, from the device-tree model and compatible strings."""
    text = f"{model}\n{compatible}".lower()
    # Module part numbers: p3701 = AGX Orin, p3767 = Orin NX / Orin Nano, p3448 = Nano.
    if "agx orin" in text or "p3701" in text:
        return "jetson-agx-orin"
    if "orin" in text or "p3767" in text:
        return "jetson-orin-nano"
    if "nano" in text or "p3448" in text or "p3450" in text:
        return "jetson-nano"
    # TX1/TX2/Xavier and newer modules without a profile of their own.
    return "jetson-generic"


def detect_device(root: str | os.PathLike = "/") -> DeviceInfo:
    """Detect the device whose file system is rooted at ``root`` and choose its profile.

    Never raises for an unknown device: it falls back to a generic profile for the architecture
    (``x86-64``, ``arm64-linux``) or ``generic-cpu``, and says so in the evidence.
    """
    base = Path(root)
    evidence: list[tuple[str, str]] = []

    cpuinfo = _read_text(base, "/proc/cpuinfo") or ""
    cpu_model, cpu_count, cpu_fields = _parse_cpuinfo(cpuinfo)
    if cpu_model:
        evidence.append(("/proc/cpuinfo", cpu_model))
    arch, arch_source = _machine(base, cpu_fields)
    evidence.append((arch_source, arch))

    tree_model = _read_text(base, "/proc/device-tree/model") or ""
    compatible = _read_text(base, "/proc/device-tree/compatible") or ""
    if tree_model:
        evidence.append(("/proc/device-tree/model", tree_model))
    tegra_release = _read_text(base, "/etc/nv_tegra_release") or ""
    l4t_release = ""
    if tegra_release:
        # "# R35 (release), REVISION: 4.1, GCID: ..." -> "R35.4.1"
        first = tegra_release.splitlines()[0].lstrip("# ")
        major = first.split(" ", 1)[0]
        revision = first.split("REVISION:", 1)[1].split(",", 1)[0].strip() if "REVISION:" in first else ""
        l4t_release = f"{major}.{revision}" if revision else major
        evidence.append(("/etc/nv_tegra_release", first))

    android_props, props_source = _android_properties(base)
    is_android = bool(android_props) and any(key.startswith("ro.build.version") for key in android_props)
    android_release = android_props.get("ro.build.version.release", "") if is_android else ""

    os_name = "android" if is_android else "linux"
    model = tree_model.splitlines()[0] if tree_model else cpu_model

    if tegra_release or "jetson" in tree_model.lower() or "nvidia,tegra" in compatible:
        name = _jetson_profile(tree_model, compatible)
        if "orin nx" in tree_model.lower():
            evidence.append(("profile", "Orin NX uses the Orin Nano profile: same T234 SoC and INA3221 rail layout"))
    elif is_android:
        manufacturer = android_props.get("ro.product.manufacturer", "")
        product = android_props.get("ro.product.model", "")
        model = f"{manufacturer} {product}".strip() or model
        evidence.append((props_source, f"Android {android_release} on {model}"))
        name = "android-arm64"
    elif "raspberry pi 5" in tree_model.lower() or "compute module 5" in tree_model.lower():
        name = "raspberry-pi-5"
    elif any(key in tree_model.lower() for key in ("raspberry pi 4", "raspberry pi 400", "compute module 4")):
        name = "raspberry-pi-4"
    elif "raspberry pi" in cpu_fields.get("Model", "").lower():
        # Older kernels without a device-tree model still name the board in cpuinfo.
        board = cpu_fields["Model"].lower()
        name = "raspberry-pi-5" if "pi 5" in board else "raspberry-pi-4"
        model = cpu_fields["Model"]
    elif arch in ("x86_64", "amd64"):
        name = "x86-64"
    elif arch in ("aarch64", "arm64"):
        name = "arm64-linux"
        evidence.append(("fallback", "unrecognised arm64 board: generic arm64 profile"))
    else:
        name = "generic-cpu"
        evidence.append(("fallback", f"unrecognised architecture {arch!r}: CPU-only profile"))

    return DeviceInfo(
        profile=get_profile(name),
        model=model,
        arch=arch,
        os=os_name,
        cpu_model=cpu_model,
        cpu_count=cpu_count,
        l4t_release=l4t_release,
        android_release=android_release,
        evidence=tuple(evidence),
        root=str(base),
    )
