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

The files above describe the host: its kernel and CPU. The ISA the Python process itself runs can
differ, and the runtime's kernels are the process's: a 32-bit userland on a 64-bit kernel (as on
Raspberry Pi OS), or an aarch64 interpreter run by qemu-user on an x86-64 host, where
``/proc/cpuinfo`` and ``/proc/sys/kernel/arch`` still describe the x86 machine. ``check_isa``
compares the two and says where they disagree; an ISA family that differs from the CPU's can
only be emulation.
"""
from __future__ import annotations

import logging
import os
import platform
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edgesdk.devices.profiles import DeviceProfile, get_profile

logger = logging.getLogger(__name__)


# ISA families: a process may run a narrower ISA of its CPU's family natively (armv7l on an
# aarch64 CPU, i686 on x86-64), never another family's.
_ISA_FAMILIES = {
    "x86_64": "x86", "amd64": "x86", "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "x86": "x86",
    "aarch64": "arm", "arm64": "arm", "aarch64_be": "arm", "arm": "arm", "armhf": "arm", "armel": "arm",
    "riscv64": "riscv", "riscv32": "riscv", "ppc64le": "power", "ppc64": "power", "s390x": "s390",
}


def isa_family(machine: str) -> str:
    """``"x86"``, ``"arm"``, ``"riscv"``... for a machine name such as ``"armv7l"``; ``""`` when unknown."""
    name = machine.strip().lower()
    if name.startswith("armv") or name.startswith("arm-"):
        return "arm"
    return _ISA_FAMILIES.get(name, "")


@dataclass(frozen=True)
class ProcessIsa:
    """The ISA this Python process runs, from the interpreter itself (not from /proc).

    Attributes:
        machine: ``platform.machine()`` (uname's machine as the process sees it; qemu-user reports
            the emulated one).
        pointer_bits: 64 or 32, from ``struct.calcsize("P")``.
        multiarch: the interpreter's build target (``sys.implementation._multiarch``, e.g.
            ``"aarch64-linux-gnu"``, ``"arm-linux-gnueabihf"``), ``""`` when the build does not say.
        implementation: e.g. ``"cpython 3.11"``.
    """

    machine: str
    pointer_bits: int
    multiarch: str = ""
    implementation: str = ""

    @property
    def isa(self) -> str:
        """The process's ISA: the interpreter's build target, else uname's machine narrowed by pointer size."""
        target = self.multiarch.split("-", 1)[0].lower()
        if target:
            if target == "arm" or target.startswith("armv"):
                return "armv7l" if target == "arm" else target
            if target in ("i386", "i486", "i586", "i686"):
                return "i686"
            return target
        machine = self.machine.lower()
        if self.pointer_bits == 32 and machine in ("aarch64", "arm64"):
            return "armv7l"
        if self.pointer_bits == 32 and machine in ("x86_64", "amd64"):
            return "i686"
        return machine or "unknown"

    def describe(self) -> str:
        return f"{self.isa} ({self.pointer_bits}-bit{', ' + self.implementation if self.implementation else ''})"


def process_isa() -> ProcessIsa:
    """The running interpreter's ISA facts."""
    version = ".".join(str(part) for part in sys.implementation.version[:2])
    return ProcessIsa(
        machine=platform.machine(),
        pointer_bits=struct.calcsize("P") * 8,
        multiarch=getattr(sys.implementation, "_multiarch", "") or "",
        implementation=f"{sys.implementation.name} {version}",
    )


@dataclass(frozen=True)
class IsaCheck:
    """The process's ISA against what the kernel and ``/proc/cpuinfo`` say about the host.

    Attributes:
        process: the interpreter's facts.
        kernel_arch: ``/proc/sys/kernel/arch`` under the root (``""`` when absent).
        cpu_family: ISA family of the CPU that ``/proc/cpuinfo`` describes (``""`` when it does not say).
        emulated: the process's ISA family is not the CPU's or the kernel's: it runs under an
            emulator such as qemu-user, and its timings are not the host's, nor the target device's.
        disagreements: one sentence per source that disagrees with the process; empty when all agree.
    """

    process: ProcessIsa
    kernel_arch: str
    cpu_family: str
    emulated: bool
    disagreements: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "process_isa": self.process.isa,
            "process_machine": self.process.machine,
            "pointer_bits": self.process.pointer_bits,
            "multiarch": self.process.multiarch,
            "implementation": self.process.implementation,
            "kernel_arch": self.kernel_arch,
            "cpu_family": self.cpu_family,
            "emulated": self.emulated,
            "disagreements": list(self.disagreements),
        }


def _cpu_family(cpuinfo_fields: dict[str, str]) -> str:
    """ISA family of the CPU that cpuinfo describes: x86 names a vendor, Arm an implementer."""
    if "vendor_id" in cpuinfo_fields:
        return "x86"
    if "CPU implementer" in cpuinfo_fields or "CPU architecture" in cpuinfo_fields:
        return "arm"
    if "isa" in cpuinfo_fields and cpuinfo_fields["isa"].startswith("rv"):
        return "riscv"
    return ""


def check_isa(root: str | os.PathLike = "/", process: ProcessIsa | None = None) -> IsaCheck:
    """Compare the process's ISA (the running interpreter's unless given) with the host under ``root``."""
    base = Path(root)
    process = process or process_isa()
    _, _, cpu_fields = _parse_cpuinfo(_read_text(base, "/proc/cpuinfo") or "")
    kernel = (_read_text(base, "/proc/sys/kernel/arch") or "").splitlines()
    kernel_arch = kernel[0] if kernel else ""
    cpu_family = _cpu_family(cpu_fields)
    own_family = isa_family(process.isa)
    kernel_family = isa_family(kernel_arch)
    disagreements = []
    if cpu_family and own_family and cpu_family != own_family:
        disagreements.append(
            f"/proc/cpuinfo describes an {cpu_family} CPU, but this process runs {process.isa}"
        )
    if kernel_arch and kernel_arch != process.isa:
        if kernel_family and own_family and kernel_family != own_family:
            disagreements.append(f"the kernel is {kernel_arch} (/proc/sys/kernel/arch), another ISA than the process's {process.isa}")
        else:
            disagreements.append(
                f"the kernel is {kernel_arch} (/proc/sys/kernel/arch), the process {process.isa} "
                f"({process.pointer_bits}-bit userland)"
            )
    # Natively neither the CPU nor the kernel can be of another family than the process; newer
    # qemu-user versions fake an Arm /proc/cpuinfo, but the kernel's arch still tells.
    emulated = any(family and own_family and family != own_family for family in (cpu_family, kernel_family))
    return IsaCheck(
        process=process,
        kernel_arch=kernel_arch,
        cpu_family=cpu_family,
        emulated=emulated,
        disagreements=tuple(disagreements),
    )


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
        isa: the process's ISA against the host's (``check_isa``); None when ``root`` is a tree
            inspected from outside (not ``/``) and no process was given to compare with it.
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
    isa: IsaCheck | None = None

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
            "isa": self.isa.as_dict() if self.isa is not None else None,
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


def detect_device(root: str | os.PathLike = "/", process: ProcessIsa | None = None) -> DeviceInfo:
    """Detect the device whose file system is rooted at ``root`` and choose its profile.

    Never raises for an unknown device: it falls back to a generic profile for the architecture
    (``x86-64``, ``arm64-linux``) or ``generic-cpu``, and says so in the evidence. ``arch`` and the
    profile describe the host (kernel, CPU, board); ``isa`` compares them with ``process`` (the
    running interpreter when ``root`` is ``/``).
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
        isa=check_isa(base, process) if process is not None or str(base) == "/" else None,
    )
