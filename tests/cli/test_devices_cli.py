"""`edgesdk devices`: detected device, power sensors (usable or why not), runtimes."""
from __future__ import annotations

import json
import os
import sys

from click.testing import CliRunner

from edgesdk.cli import cli


def _orin_nano_tree(root):
    """A Jetson Orin Nano as Jetson Linux R36 presents itself (device tree, release, hwmon)."""
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    (root / "proc/device-tree/compatible").write_bytes(b"nvidia,p3768-0000+p3767-0005\x00nvidia,tegra234\x00")
    (root / "proc/sys/kernel").mkdir(parents=True)
    (root / "proc/sys/kernel/arch").write_text("aarch64\n")
    (root / "etc").mkdir()
    (root / "etc/nv_tegra_release").write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic\n")
    hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon1"
    hwmon.mkdir(parents=True)
    files = {"name": "ina3221", "in1_label": "VDD_IN", "in1_input": 5000, "curr1_input": 1400,
             "in2_label": "VDD_CPU_GPU_CV", "in2_input": 5000, "curr2_input": 300}
    for name, value in files.items():
        (hwmon / name).write_text(f"{value}\n")
    (root / "sys/class/hwmon").mkdir(parents=True)
    os.symlink(hwmon, root / "sys/class/hwmon/hwmon1")
    return root


def test_json_on_a_fake_jetson(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # as on a Jetson: no NVML
    result = CliRunner().invoke(cli, ["devices", "--json", "--root", str(_orin_nano_tree(tmp_path))])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["device"]["profile"] == "jetson-orin-nano"
    assert facts["device"]["l4t_release"] == "R36.4.3"
    sensors = {s["name"]: s for s in facts["power_sensors"]}
    assert sensors["ina3221"]["available"] and sensors["ina3221"]["reason"] == "module input rail VDD_IN"
    assert sensors["ina3221"]["details"]["rails_summed"] == ["VDD_IN"]
    assert not sensors["rapl"]["available"] and "powercap" in sensors["rapl"]["reason"]
    assert "nvidia-ml-py" in sensors["nvml"]["reason"]
    assert facts["profile"]["onnxruntime_providers"][0] == "TensorrtExecutionProvider"
    # Runtimes are those of this machine, filtered through the Jetson's preferences.
    assert set(facts["onnxruntime"]["preferred_order"]) <= set(facts["onnxruntime"]["providers"])


def test_human_output_on_this_machine():
    result = CliRunner().invoke(cli, ["devices"])
    assert result.exit_code == 0, result.output
    for expected in ("profile", "power sensors", "rapl", "ina3221", "nvml", "android", "onnxruntime", "litert"):
        assert expected in result.output


def test_missing_root_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["devices", "--root", str(tmp_path / "absent")])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_sysfs_root_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setenv("EDGESDK_SYSFS_ROOT", str(_orin_nano_tree(tmp_path)))
    result = CliRunner().invoke(cli, ["devices"])
    assert result.exit_code == 0, result.output
    assert "profile jetson-orin-nano" in result.output
    assert "VDD_IN" in result.output


def test_human_output_shows_the_process_and_the_host_when_they_differ(monkeypatch):
    # The process claims the other ISA family than this machine's CPU, as under qemu-user.
    import edgesdk.devices.detect as detect

    own = detect.process_isa()
    other = (detect.ProcessIsa("aarch64", 64, "aarch64-linux-gnu", "cpython 3.11")
             if detect.isa_family(own.isa) == "x86" else detect.ProcessIsa("x86_64", 64, "x86_64-linux-gnu", "cpython 3.11"))
    monkeypatch.setattr(detect, "process_isa", lambda: other)
    result = CliRunner().invoke(cli, ["devices"])
    assert result.exit_code == 0, result.output
    assert f"process {other.isa} (64-bit, cpython 3.11): emulated on this" in result.output
    assert "host disagrees: /proc/cpuinfo describes an" in result.output
    facts = json.loads(CliRunner().invoke(cli, ["devices", "--json"]).stdout)
    assert facts["device"]["isa"]["emulated"] is True
    assert facts["device"]["isa"]["process_isa"] == other.isa
