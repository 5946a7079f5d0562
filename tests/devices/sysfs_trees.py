"""Builders of fake device file-system trees (procfs, sysfs, /etc, /system), for tests.

Each builder writes the files the real kernel or OS exposes, with their real names and units,
under a temporary root; detection and sensors are then pointed at that root.
"""
from __future__ import annotations

import os
from pathlib import Path


def write(root: Path, relative: str, text: str | int | float) -> Path:
    path = root / relative.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")
    return path


X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-1185G7 @ 3.00GHz
flags\t\t: fpu avx2

processor\t: 1
vendor_id\t: GenuineIntel
model name\t: Intel(R) Core(TM) i7-1185G7 @ 3.00GHz
"""

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08

processor\t: 1
CPU implementer\t: 0x41
CPU part\t: 0xd08
"""


def x86_laptop(root: Path) -> Path:
    write(root, "/proc/cpuinfo", X86_CPUINFO)
    write(root, "/proc/sys/kernel/arch", "x86_64")
    return root


def raspberry_pi(root: Path, model: str) -> Path:
    write(root, "/proc/cpuinfo", ARM_CPUINFO + f"\nModel\t\t: {model}\n")
    write(root, "/proc/sys/kernel/arch", "aarch64")
    (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
    # Device-tree strings end in NUL, as the kernel writes them.
    (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    return root


def jetson(root: Path, model: str, compatible: list[str], release: str) -> Path:
    write(root, "/proc/cpuinfo", ARM_CPUINFO)
    write(root, "/proc/sys/kernel/arch", "aarch64")
    (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
    (root / "proc/device-tree/model").write_bytes(model.encode() + b"\x00")
    # compatible is a list of NUL-terminated strings.
    (root / "proc/device-tree/compatible").write_bytes(b"".join(c.encode() + b"\x00" for c in compatible))
    write(root, "/etc/nv_tegra_release", release)
    return root


def hwmon_ina3221(root: Path, index: int, device: str, channels: dict[int, tuple[str, int, int]]) -> Path:
    """An ina3221 hwmon directory as on Jetson Linux R35+ (Orin): labels, mV, mA, no power file.

    ``channels``: channel -> (label, bus millivolts, milliamps). The real layout is
    /sys/bus/i2c/drivers/ina3221/<device>/hwmon/hwmonN with /sys/class/hwmon/hwmonN a link to it.
    """
    directory = root / f"sys/bus/i2c/drivers/ina3221/{device}/hwmon/hwmon{index}"
    directory.mkdir(parents=True, exist_ok=True)
    write(directory, "name", "ina3221")
    for channel, (label, millivolts, milliamps) in channels.items():
        write(directory, f"in{channel}_label", label)
        write(directory, f"in{channel}_input", millivolts)
        write(directory, f"curr{channel}_input", milliamps)
        write(directory, f"shunt{channel}_resistor", 5000)
    # in4..6 are shunt voltages (µV) and curr4 the sum of currents: neither is a rail.
    write(directory, "in4_input", 1234)
    write(directory, "curr4_input", sum(ma for _, _, ma in channels.values()))
    link = root / f"sys/class/hwmon/hwmon{index}"
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(directory, link)
    return directory


def iio_ina3221x(root: Path, device: str, rails: list[tuple[str, int, int, int]]) -> Path:
    """NVIDIA's old ina3221x iio directory (Jetson Linux R32, e.g. Nano).

    ``rails``: (rail name, mW, mA, mV) for channels 0, 1, 2.
    """
    directory = root / f"sys/bus/i2c/drivers/ina3221x/{device}/iio:device0"
    directory.mkdir(parents=True, exist_ok=True)
    for index, (name, milliwatts, milliamps, millivolts) in enumerate(rails):
        write(directory, f"rail_name_{index}", name)
        write(directory, f"in_power{index}_input", milliwatts)
        write(directory, f"in_current{index}_input", milliamps)
        write(directory, f"in_voltage{index}_input", millivolts)
    return directory


def rapl_zone(root: Path, zone: str, name: str, energy_uj: int, max_range_uj: int = 262143328850) -> Path:
    """One powercap zone, e.g. zone "intel-rapl:0", name "package-0"."""
    directory = root / "sys/class/powercap" / zone
    directory.mkdir(parents=True, exist_ok=True)
    write(directory, "name", name)
    write(directory, "energy_uj", energy_uj)
    write(directory, "max_energy_range_uj", max_range_uj)
    return directory


def battery(root: Path, current_now: int, voltage_now: int, status: str = "Discharging", name: str = "battery") -> Path:
    directory = root / "sys/class/power_supply" / name
    directory.mkdir(parents=True, exist_ok=True)
    write(directory, "type", "Battery")
    write(directory, "status", status)
    write(directory, "current_now", current_now)
    write(directory, "voltage_now", voltage_now)
    return directory


def android_phone(root: Path, manufacturer: str = "Google", model: str = "Pixel 7", release: str = "14") -> Path:
    write(root, "/proc/cpuinfo", ARM_CPUINFO)
    write(root, "/proc/sys/kernel/arch", "aarch64")
    write(
        root,
        "/system/build.prop",
        "\n".join(
            [
                "# begin build properties",
                f"ro.build.version.release={release}",
                "ro.build.version.sdk=34",
                f"ro.product.manufacturer={manufacturer}",
                f"ro.product.model={model}",
                "ro.product.cpu.abi=arm64-v8a",
            ]
        ),
    )
    # A USB charger supply beside the battery: not a battery, must be ignored.
    write(root, "/sys/class/power_supply/usb/type", "USB")
    write(root, "/sys/class/power_supply/usb/online", 0)
    return root
