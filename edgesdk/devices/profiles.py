"""Device profiles: what edgesdk knows about each kind of target before measuring anything.

A profile holds the facts the runtime and the profiler need on a device: the CPU and
accelerator, the onnxruntime execution providers and LiteRT delegates to try (best first), the
backend to prefer, the power sensors that can exist there, and energy-per-operation constants
for estimates when no sensor works.

Energy per operation
--------------------
Every profile uses the arithmetic energies of M. Horowitz, "Computing's energy problem (and what
we can do about it)", ISSCC 2014, Fig. 1.1.9 (45 nm, 0.9 V): 32-bit float multiply 3.7 pJ,
32-bit float add 0.9 pJ, 8-bit integer add 0.03 pJ. A float32 multiply-accumulate is therefore
4.6 pJ and an accumulate-only operation (a spike-gated add) 0.9 pJ; these are the constants the
efficient-transformer papers use (EcoFormer's get_energy.py: 3.7 pJ x #Mul + 0.9 pJ x #Add;
spiking papers such as Spikformer, ICLR 2023: E_MAC 4.6 pJ, E_AC 0.9 pJ), so estimates stay
comparable with published figures. A binary operation (XNOR/popcount on hash
codes, one bit) is charged as an 8-bit integer add, 0.03 pJ, which over-counts a 1-bit gate.

The constants are deliberately *not* rescaled to each device's process node: no single
published factor converts 45 nm energies to a 5 nm phone core or an 8 nm Orin, and a made-up
factor would look more precise than it is. The process node is recorded beside them so a reader
can judge. An estimate from these constants counts arithmetic only — no memory traffic (a DRAM
read costs ~640 pJ per 32-bit word in the same paper), no static or idle power — so it is a
lower bound on what the board draws, and it is always labelled ``estimated:ops``.

Provider and delegate preferences
---------------------------------
Lists are ordered best first and filtered against what the installed runtime reports
(``preferred_providers``); ``CPUExecutionProvider`` always stays last so that nodes a
accelerator provider cannot take still run. On x86 and Arm CPUs LiteRT with XNNPACK is preferred:
on this project's x86 CPU an SCv2-sized streaming step took 85 µs under LiteRT/XNNPACK against
149 µs under onnxruntime (DESIGN.md, "Measured facts"). On Jetson, onnxruntime with TensorRT or
CUDA reaches the GPU; LiteRT's GPU delegate needs OpenCL, which Jetson Linux does not ship.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from edgesdk.errors import UsageError

# Horowitz, ISSCC 2014 (45 nm): fp32 mult 3.7 pJ + fp32 add 0.9 pJ; int8 add 0.03 pJ.
_HOROWITZ_45NM_PJ = {"mac": 4.6, "accumulate": 0.9, "binary": 0.03}
_HOROWITZ_SOURCE = (
    "M. Horowitz, 'Computing's energy problem', ISSCC 2014, Fig. 1.1.9 (45 nm): fp32 MAC = "
    "3.7 pJ mult + 0.9 pJ add; accumulate = fp32 add; binary op = int8 add. Arithmetic only, "
    "not rescaled to this device's process node: a lower bound."
)

CPU_ONLY_PROVIDERS = ("CPUExecutionProvider",)
# Cache sizes from the vendors' datasheets (Arm Cortex TRMs, NVIDIA Jetson module data sheets:
# Orin Nano 1.5 MB L2 + 4 MB L3 (8 GB module), AGX Orin 3 MB L2 + 6 MB L3; Raspberry Pi 4 1 MB L2,
# Pi 5 512 KB L2 per core + 2 MB L3); generic profiles take typical parts.
_KB, _MB = 1024, 1024 * 1024


@dataclass(frozen=True)
class EnergyPerOperation:
    """Energy of one operation, in picojoules, with where the numbers come from."""

    mac_pj: float
    accumulate_pj: float
    binary_pj: float
    source: str

    def as_dict(self) -> dict:
        return {
            "mac_pj": self.mac_pj,
            "accumulate_pj": self.accumulate_pj,
            "binary_pj": self.binary_pj,
            "source": self.source,
        }


_HOROWITZ = EnergyPerOperation(
    mac_pj=_HOROWITZ_45NM_PJ["mac"],
    accumulate_pj=_HOROWITZ_45NM_PJ["accumulate"],
    binary_pj=_HOROWITZ_45NM_PJ["binary"],
    source=_HOROWITZ_SOURCE,
)


@dataclass(frozen=True)
class DeviceProfile:
    """Static facts about one kind of device.

    Attributes:
        name: registry key, e.g. ``"jetson-orin-nano"``.
        title: human name.
        os: ``"linux"`` or ``"android"``.
        arch: ``"x86_64"`` or ``"aarch64"``.
        cpu: CPU description (cores, micro-architecture, clock).
        accelerator: GPU/NPU description, or ``""`` when there is none worth using.
        process_node_nm: the SoC's process node, for context beside the energy constants
            (``None`` for generic profiles).
        backends: runtime backends best first (``"litert"``, ``"onnxruntime"``).
        onnxruntime_providers: execution providers best first.
        litert_delegates: LiteRT delegates best first (``"xnnpack"``, ``"gpu"``, ``"nnapi"``).
        power_sensors: sensor names that can exist on this device, best first.
        energy_per_op: constants for ``estimated:ops``.
        cache_bytes: data-cache sizes one core can use, smallest first (L1d, L2, last level),
            for ``estimated:ops+memory`` (which level holds a model's weights).
        notes: caveats worth printing.
    """

    name: str
    title: str
    os: str
    arch: str
    cpu: str
    accelerator: str
    process_node_nm: int | None
    backends: tuple[str, ...]
    onnxruntime_providers: tuple[str, ...]
    litert_delegates: tuple[str, ...]
    power_sensors: tuple[str, ...]
    energy_per_op: EnergyPerOperation = _HOROWITZ
    notes: tuple[str, ...] = field(default_factory=tuple)
    cache_bytes: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "os": self.os,
            "arch": self.arch,
            "cpu": self.cpu,
            "accelerator": self.accelerator,
            "process_node_nm": self.process_node_nm,
            "backends": list(self.backends),
            "onnxruntime_providers": list(self.onnxruntime_providers),
            "litert_delegates": list(self.litert_delegates),
            "power_sensors": list(self.power_sensors),
            "energy_per_op": self.energy_per_op.as_dict(),
            "cache_bytes": list(self.cache_bytes),
            "notes": list(self.notes),
        }


_JETSON_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

PROFILES: dict[str, DeviceProfile] = {
    profile.name: profile
    for profile in (
        DeviceProfile(
            name="x86-64",
            cache_bytes=(48 * _KB, 2 * _MB, 16 * _MB),
            title="Generic x86-64 computer",
            os="linux",
            arch="x86_64",
            cpu="x86-64 cores with AVX2/AVX-512 where present",
            accelerator="",
            process_node_nm=None,
            backends=("litert", "onnxruntime"),
            # A discrete NVIDIA GPU, when present and the CUDA build is installed, comes first.
            onnxruntime_providers=(
                "TensorrtExecutionProvider",
                "CUDAExecutionProvider",
                "OpenVINOExecutionProvider",
                "DnnlExecutionProvider",
                "CPUExecutionProvider",
            ),
            litert_delegates=("xnnpack",),
            power_sensors=("rapl", "nvml"),
            notes=("RAPL measures the CPU package (and DRAM where exposed), not the whole system.",),
        ),
        DeviceProfile(
            name="arm64-linux",
            cache_bytes=(64 * _KB, 512 * _KB, 2 * _MB),
            title="Generic arm64 Linux board",
            os="linux",
            arch="aarch64",
            cpu="Armv8-A cores with NEON",
            accelerator="",
            process_node_nm=None,
            backends=("litert", "onnxruntime"),
            onnxruntime_providers=("XnnpackExecutionProvider", "CPUExecutionProvider"),
            litert_delegates=("xnnpack",),
            power_sensors=("ina3221",),
        ),
        DeviceProfile(
            name="raspberry-pi-4",
            cache_bytes=(32 * _KB, 1 * _MB),
            title="Raspberry Pi 4 (BCM2711)",
            os="linux",
            arch="aarch64",
            # BCM2711: 4x Cortex-A72 at 1.5 GHz (1.8 GHz from board revision 1.4), 28 nm.
            cpu="4x Cortex-A72 @ 1.5-1.8 GHz, NEON",
            accelerator="VideoCore VI (no onnxruntime/LiteRT compute path)",
            process_node_nm=28,
            backends=("litert", "onnxruntime"),
            onnxruntime_providers=("XnnpackExecutionProvider", "CPUExecutionProvider"),
            litert_delegates=("xnnpack",),
            # The Pi 4 has no on-board power monitor; use an external USB meter.
            power_sensors=(),
            notes=("No on-board power sensor: energy is estimated unless an external meter is used.",),
        ),
        DeviceProfile(
            name="raspberry-pi-5",
            cache_bytes=(64 * _KB, 512 * _KB, 2 * _MB),
            title="Raspberry Pi 5 (BCM2712)",
            os="linux",
            arch="aarch64",
            # BCM2712: 4x Cortex-A76 at 2.4 GHz, 16 nm.
            cpu="4x Cortex-A76 @ 2.4 GHz, NEON",
            accelerator="VideoCore VII (no onnxruntime/LiteRT compute path)",
            process_node_nm=16,
            backends=("litert", "onnxruntime"),
            onnxruntime_providers=("XnnpackExecutionProvider", "CPUExecutionProvider"),
            litert_delegates=("xnnpack",),
            power_sensors=(),
            notes=(
                "The PMIC's rail readings (vcgencmd pmic_read_adc) are not read by edgesdk yet: "
                "energy is estimated.",
            ),
        ),
        DeviceProfile(
            name="android-arm64",
            cache_bytes=(64 * _KB, 512 * _KB, 8 * _MB),
            title="Generic arm64 Android phone",
            os="android",
            arch="aarch64",
            cpu="big.LITTLE Armv8.2+/Armv9 cores",
            accelerator="mobile GPU and vendor NPU (reached through delegates)",
            process_node_nm=None,
            backends=("litert", "onnxruntime"),
            # For small streaming steps, dispatch overhead dominates GPU/NPU delegates; XNNPACK on
            # the CPU is the reliable first choice, the others are tried after it.
            onnxruntime_providers=(
                "XnnpackExecutionProvider",
                "NnapiExecutionProvider",
                "CPUExecutionProvider",
            ),
            litert_delegates=("xnnpack", "gpu", "nnapi"),
            power_sensors=("android",),
            notes=(
                "Battery current measures the whole phone (screen included) and only while "
                "unplugged.",
            ),
        ),
        DeviceProfile(
            name="jetson-nano",
            cache_bytes=(32 * _KB, 2 * _MB),
            title="NVIDIA Jetson Nano (Tegra X1)",
            os="linux",
            arch="aarch64",
            # Tegra X1 (T210): 4x Cortex-A57 @ 1.43 GHz, 128-core Maxwell GPU, TSMC 20 nm.
            cpu="4x Cortex-A57 @ 1.43 GHz",
            accelerator="128-core Maxwell GPU (CUDA 10.2, TensorRT 8.2 on JetPack 4.6)",
            process_node_nm=20,
            backends=("onnxruntime", "litert"),
            onnxruntime_providers=_JETSON_PROVIDERS,
            litert_delegates=("xnnpack",),
            power_sensors=("ina3221",),
        ),
        DeviceProfile(
            name="jetson-orin-nano",
            cache_bytes=(64 * _KB, 256 * _KB, 4 * _MB),
            title="NVIDIA Jetson Orin Nano / Orin NX (T234)",
            os="linux",
            arch="aarch64",
            # Orin Nano: 6x Cortex-A78AE @ 1.5 GHz, 1024-core Ampere GPU; Samsung 8 nm.
            cpu="6x Cortex-A78AE @ 1.5-1.7 GHz",
            accelerator="1024-core Ampere GPU with 32 tensor cores",
            process_node_nm=8,
            backends=("onnxruntime", "litert"),
            onnxruntime_providers=_JETSON_PROVIDERS,
            litert_delegates=("xnnpack",),
            power_sensors=("ina3221",),
        ),
        DeviceProfile(
            name="jetson-agx-orin",
            cache_bytes=(64 * _KB, 256 * _KB, 6 * _MB),
            title="NVIDIA Jetson AGX Orin (T234)",
            os="linux",
            arch="aarch64",
            # AGX Orin 64GB: 12x Cortex-A78AE @ 2.2 GHz, 2048-core Ampere GPU, 2x NVDLA 2.0; 8 nm.
            cpu="12x Cortex-A78AE @ 2.2 GHz",
            accelerator="2048-core Ampere GPU with 64 tensor cores, 2x NVDLA 2.0",
            process_node_nm=8,
            backends=("onnxruntime", "litert"),
            onnxruntime_providers=_JETSON_PROVIDERS,
            litert_delegates=("xnnpack",),
            power_sensors=("ina3221",),
            notes=(
                "No input-rail monitor on the module: board power is the sum of the module rails "
                "and excludes the carrier board.",
            ),
        ),
        DeviceProfile(
            name="jetson-generic",
            cache_bytes=(32 * _KB, 2 * _MB),
            title="Other NVIDIA Jetson (TX2, Xavier, ...)",
            os="linux",
            arch="aarch64",
            cpu="Arm cores of the Tegra SoC",
            accelerator="integrated NVIDIA GPU (CUDA/TensorRT through onnxruntime)",
            process_node_nm=None,
            backends=("onnxruntime", "litert"),
            onnxruntime_providers=_JETSON_PROVIDERS,
            litert_delegates=("xnnpack",),
            power_sensors=("ina3221",),
            notes=(
                "No dedicated profile: board power is read from the input rail (VDD_IN, "
                "POM_5V_IN or 5V_IN) when the module has one.",
            ),
        ),
        DeviceProfile(
            name="generic-cpu",
            cache_bytes=(32 * _KB, 1 * _MB),
            title="Unrecognised device (CPU only)",
            os="linux",
            arch="unknown",
            cpu="unknown",
            accelerator="",
            process_node_nm=None,
            backends=("onnxruntime", "litert"),
            onnxruntime_providers=CPU_ONLY_PROVIDERS,
            litert_delegates=("xnnpack",),
            power_sensors=("rapl", "ina3221", "nvml", "android"),
        ),
    )
}


def get_profile(name: str) -> DeviceProfile:
    """Return the profile called ``name``; UsageError naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise UsageError(f"unknown device profile {name!r}; known profiles: {known}") from None


def preferred_providers(profile: DeviceProfile, available: Sequence[str]) -> list[str]:
    """onnxruntime providers to request, best first: the profile's order, kept where available.

    ``available`` is what ``onnxruntime.get_available_providers()`` reports. Providers the
    profile does not name (e.g. ``AzureExecutionProvider``) are left out. The CPU provider is
    kept last whenever it is available, because onnxruntime places the nodes an accelerator
    provider rejects on the next provider in the list.
    """
    chosen = [name for name in profile.onnxruntime_providers if name in available]
    if "CPUExecutionProvider" in available and "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    if "CPUExecutionProvider" in chosen:
        chosen.remove("CPUExecutionProvider")
        chosen.append("CPUExecutionProvider")
    return chosen


def preferred_delegates(profile: DeviceProfile, available: Sequence[str]) -> list[str]:
    """LiteRT delegates to try, best first: the profile's order, kept where available."""
    return [name for name in profile.litert_delegates if name in available]


def preferred_backends(profile: DeviceProfile, available: Sequence[str]) -> list[str]:
    """Runtime backends to try, best first: the profile's order, kept where installed."""
    return [name for name in profile.backends if name in available]
