"""Write a fake Jetson Orin Nano file-system tree: what Jetson Linux R36 shows in /proc, /etc and
/sys (device tree, L4T release, an Arm /proc/cpuinfo, the INA3221 power monitor as the mainline
hwmon driver exposes it). Stdlib only: it runs in the aarch64 userland, which has no test deps.

VDD_IN reads 5000 mV x 1200 mA, so the module's input power is exactly 6.0 W.
Usage: python3 fake_jetson.py ROOT
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

MODEL = "NVIDIA Jetson Orin Nano Developer Kit"
COMPATIBLE = ["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"]
RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025"
CPUINFO = "".join(
    f"processor\t: {n}\nBogoMIPS\t: 62.50\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp "
    f"cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n"
    f"CPU part\t: 0xd42\nCPU revision\t: 1\n\n"
    for n in range(6)
)
# channel: (label, millivolts, milliamps)
RAILS = {1: ("VDD_IN", 5000, 1200), 2: ("VDD_CPU_GPU_CV", 5000, 300), 3: ("VDD_SOC", 5000, 400)}


def write(root: Path, relative: str, data: str | bytes) -> None:
    path = root / relative.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def main(root: Path) -> None:
    write(root, "/proc/device-tree/model", MODEL.encode() + b"\0")
    write(root, "/proc/device-tree/compatible", b"".join(c.encode() + b"\0" for c in COMPATIBLE))
    write(root, "/proc/sys/kernel/arch", "aarch64\n")
    write(root, "/proc/cpuinfo", CPUINFO)
    write(root, "/etc/nv_tegra_release", RELEASE + "\n")
    device = "/sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    write(root, f"{device}/name", "ina3221\n")
    for channel, (label, millivolts, milliamps) in RAILS.items():
        write(root, f"{device}/in{channel}_label", label + "\n")
        write(root, f"{device}/in{channel}_input", f"{millivolts}\n")
        write(root, f"{device}/curr{channel}_input", f"{milliamps}\n")
    (root / "sys/class/hwmon").mkdir(parents=True, exist_ok=True)
    link = root / "sys/class/hwmon/hwmon1"
    if not link.is_symlink():
        os.symlink(os.path.relpath(root / device.lstrip("/"), link.parent), link)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
