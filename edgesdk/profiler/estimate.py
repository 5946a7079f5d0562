"""Energy estimates without a sensor: arithmetic only (``estimated:ops``), and with memory traffic
(``estimated:ops+memory``).

``estimated:ops`` is the account the efficient-transformer papers give (EcoFormer's
get_energy.py: 3.7 pJ x #Mul + 0.9 pJ x #Add at fp32): kept exactly as it is for float
artifacts, so it reproduces their tables. An int8 artifact whose matrix products run in int8
(``int8-dynamic``, ``int8-static``) is charged int8 operation energies; a weight-only int8
artifact still multiplies in float, so it keeps float operation energies.

``estimated:ops+memory`` adds the energy of the bytes one inference (or one streaming step) must
read: the weights at the artifact's precision (the artifact file's size: its weights plus a few
kB of graph) and the activations (inputs, outputs and carried state; intermediate tensors are
not counted). Each is charged at the memory level that holds it, chosen from the device
profile's cache sizes: the smallest level it fits in, DRAM when it fits in none.

Per-byte energies, from the same source as the operation energies: M. Horowitz, "Computing's
energy problem (and what we can do about it)", ISSCC 2014, Fig. 1.1.9 (45 nm): a 64-bit access
to an 8 KB SRAM cache costs 10 pJ, to a 32 KB cache 20 pJ, to a 1 MB cache 100 pJ, to DRAM
1.3-2.6 nJ. Per byte: 1.25, 2.5, 12.5 and 162.5 pJ (the low end of DRAM's range, so the
estimate stays on the low side). An L1 cache of up to 64 KB is charged as his 32 KB one; Horowitz
gives no larger cache than 1 MB, so a multi-megabyte L2 or last-level cache is charged as his
1 MB one, which understates it. Like the arithmetic figures, none is
rescaled to the device's process node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from edgesdk.devices.profiles import DeviceProfile, EnergyPerOperation
from edgesdk.errors import MeasurementUnavailable
from edgesdk.runtime.sections import OpsCount

OPS_LABEL = "estimated:ops"
MEMORY_LABEL = "estimated:ops+memory"
OPS_SCOPE = (
    "arithmetic only (MACs, accumulates, binary ops x energy per op): excludes memory traffic, "
    "static and idle power, so it is a lower bound on what the device draws"
)
MEMORY_SCOPE = (
    "arithmetic plus the bytes each inference reads (weights at the artifact's precision, inputs, "
    "outputs and state) at the memory level that holds them; excludes intermediate tensors, "
    "static and idle power"
)
HOROWITZ_SOURCE = "M. Horowitz, 'Computing's energy problem', ISSCC 2014, Fig. 1.1.9 (45 nm)"

# Horowitz, Fig. 1.1.9: int8 multiply 0.2 pJ; int32 add 0.1 pJ (int8 products accumulate in
# int32); int8 add 0.03 pJ. fp16: multiply 1.1 pJ, add 0.4 pJ.
INT8_OPS = EnergyPerOperation(
    mac_pj=0.2 + 0.1, accumulate_pj=0.1, binary_pj=0.03,
    source=HOROWITZ_SOURCE + ": int8 MAC = 0.2 pJ int8 multiply + 0.1 pJ int32 add; accumulate = int32 add; "
    "binary op = int8 add",
)
FP16_OPS = EnergyPerOperation(
    mac_pj=1.1 + 0.4, accumulate_pj=0.4, binary_pj=0.03,
    source=HOROWITZ_SOURCE + ": fp16 MAC = 1.1 pJ multiply + 0.4 pJ add; accumulate = fp16 add; binary op = int8 add",
)
INTEGER_COMPUTE = ("int8-dynamic", "int8-static", "int8")


@dataclass(frozen=True)
class MemoryLevel:
    """A memory level: its capacity (bytes; None for DRAM) and energy per byte read (pJ)."""

    name: str
    capacity_bytes: int | None
    pj_per_byte: float


# Horowitz's cache sizes and energies (64-bit access / 8 bytes).
_SRAM_8K, _SRAM_32K, _SRAM_1M, _DRAM_PJ = 10 / 8, 20 / 8, 100 / 8, 1300 / 8


def _energy_of_cache(size_bytes: int) -> float:
    """Horowitz's figure for a cache of this size: L1 caches (up to 64 KB) as his 32 KB one."""
    if size_bytes <= 8 * 1024:
        return _SRAM_8K
    if size_bytes <= 64 * 1024:
        return _SRAM_32K
    return _SRAM_1M


def memory_levels(profile: DeviceProfile) -> list[MemoryLevel]:
    """The profile's caches, smallest first, then DRAM, each with its energy per byte."""
    caches = sorted(getattr(profile, "cache_bytes", ()) or ())
    levels = [MemoryLevel(f"L{index + 1} cache ({_size(size)})", size, _energy_of_cache(size))
              for index, size in enumerate(caches)]
    return levels + [MemoryLevel("DRAM", None, _DRAM_PJ)]


def level_for(size_bytes: int, levels: list[MemoryLevel]) -> MemoryLevel:
    """The smallest level that holds ``size_bytes``; DRAM when none does."""
    for level in levels:
        if level.capacity_bytes is not None and size_bytes <= level.capacity_bytes:
            return level
    return levels[-1]


def _size(size_bytes: int) -> str:
    for unit, scale in (("MB", 1 << 20), ("KB", 1 << 10)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:g} {unit}"
    return f"{size_bytes} B"


def op_energies(profile: DeviceProfile, precision: str | None) -> EnergyPerOperation:
    """Energy per operation for an artifact of ``precision`` (None or fp32: the profile's own)."""
    if precision in INTEGER_COMPUTE:
        return INT8_OPS
    if precision in ("fp16", "float16"):
        return FP16_OPS
    return profile.energy_per_op


def _ops(ops: OpsCount | Mapping[str, Any]) -> OpsCount:
    ops = ops if isinstance(ops, OpsCount) else OpsCount.from_manifest(ops, "ops counts")
    if not ops.any_counted:
        raise MeasurementUnavailable("no operations counted: nothing to estimate energy from")
    return ops


def estimate_energy(ops: OpsCount | Mapping[str, Any], profile: DeviceProfile, precision: str | None = None) -> dict:
    """Energy of one inference (or step, per ``ops.per``) from op counts, ``estimated:ops``.

    Args:
        ops: the op counts (an ``OpsCount``, or a manifest ``ops`` section); missing counts
            are taken as zero and listed under ``missing_counts``.
        profile: the device profile whose energy-per-operation constants apply.
        precision: the artifact's precision; int8 compute (``int8-dynamic``, ``int8-static``)
            is charged int8 operation energies.
    """
    ops = _ops(ops)
    constants = op_energies(profile, precision)
    counts = ops.counts
    breakdown_pj = {
        "macs": counts["macs"] * constants.mac_pj,
        "accumulates": counts["accumulates"] * constants.accumulate_pj,
        "binary_ops": counts["binary_ops"] * constants.binary_pj,
    }
    result = {
        "provenance": OPS_LABEL,
        "energy_per_inference_j": sum(breakdown_pj.values()) * 1e-12,
        "breakdown_j": {name: value * 1e-12 for name, value in breakdown_pj.items()},
        "per": ops.per,
        "ops": counts,
        "ops_counted": ops.counted or "",
        "ops_source": ops.source or "bundle manifest",
        "missing_counts": ops.missing_counts,
        "constants": constants.as_dict(),
        "device_profile": profile.name,
        "scope": OPS_SCOPE,
    }
    if precision is not None:
        result["precision"] = precision
    return result


def estimate_energy_with_memory(
    ops: OpsCount | Mapping[str, Any],
    profile: DeviceProfile,
    *,
    weight_bytes: int,
    activation_bytes: int,
    precision: str | None = None,
) -> dict:
    """``estimate_energy`` plus the energy of reading ``weight_bytes`` and ``activation_bytes``
    once per inference, each at the level of ``profile``'s memory that holds it,
    ``estimated:ops+memory``."""
    arithmetic = estimate_energy(ops, profile, precision)
    levels = memory_levels(profile)
    # The weights and activations share the caches: the weights' level is chosen for both together.
    weights_level = level_for(weight_bytes + activation_bytes, levels)
    activations_level = level_for(activation_bytes, levels)
    memory_j = {
        "weights_j": weight_bytes * weights_level.pj_per_byte * 1e-12,
        "activations_j": activation_bytes * activations_level.pj_per_byte * 1e-12,
    }
    return {
        **arithmetic,
        "provenance": MEMORY_LABEL,
        "energy_per_inference_j": arithmetic["energy_per_inference_j"] + sum(memory_j.values()),
        "arithmetic_j": arithmetic["energy_per_inference_j"],
        "memory": memory_j,
        "weight_bytes": int(weight_bytes),
        "activation_bytes": int(activation_bytes),
        "weights_level": {"name": weights_level.name, "pj_per_byte": weights_level.pj_per_byte},
        "activations_level": {"name": activations_level.name, "pj_per_byte": activations_level.pj_per_byte},
        "memory_source": HOROWITZ_SOURCE + ": 64-bit reads of 8 KB / 32 KB / 1 MB SRAM 10 / 20 / 100 pJ, DRAM "
        "1.3-2.6 nJ (low end used); caches larger than 1 MB charged as 1 MB",
        "cache_bytes": [level.capacity_bytes for level in levels if level.capacity_bytes],
        "scope": MEMORY_SCOPE,
    }
