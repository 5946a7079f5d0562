"""In the aarch64 userland: `edgesdk devices` and the Jetson sample app on a fake Orin Nano tree.

The same code paths as on a device: detection reads the tree's device tree and L4T release, the
INA3221 sensor its hwmon files; the app streams a clip and logs the module's input power.
Usage: python3 check_jetson.py FAKE_ROOT KWS_BUNDLE CLIPS_DIR JETSON_APP
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def run(command: list[str], env: dict[str, str] | None = None, both: bool = False) -> str:
    """stdout of a command that must succeed (with stderr too when ``both``: where rich prints)."""
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr.strip()}")
    return done.stdout + done.stderr if both else done.stdout


def main(root: str, bundle: str, clips: Path, app: str) -> None:
    facts = json.loads(run(["edgesdk", "devices", "--json", "--root", root]))
    device, sensors = facts["device"], {s["name"]: s for s in facts["power_sensors"]}
    assert device["profile"] == "jetson-orin-nano", device
    assert device["l4t_release"] == "R36.4.3", device
    assert device["arch"] == "aarch64", device
    assert sensors["ina3221"]["available"], sensors["ina3221"]
    assert sensors["ina3221"]["details"]["rails_summed"] == ["VDD_IN"], sensors["ina3221"]
    print(f"  devices --root: {device['model']}, profile {device['profile']}, L4T {device['l4t_release']}, "
          f"ina3221 usable ({sensors['ina3221']['reason']})")

    human = run(["edgesdk", "devices"], env={**os.environ, "EDGESDK_SYSFS_ROOT": root}, both=True)
    assert "profile jetson-orin-nano" in human, human
    print("  EDGESDK_SYSFS_ROOT: `edgesdk devices` reads the same tree (profile jetson-orin-nano)")

    expected = next(c["label"] for c in json.loads((clips / "clips.json").read_text()) if c["file"] == "stop.wav")
    with tempfile.TemporaryDirectory() as scratch:
        power_csv = Path(scratch) / "power.csv"
        out = run([sys.executable, app, bundle, "--wav", str(clips / "stop.wav"), "--json", "--realtime",
                   "--sysfs-root", root, "--power-log", str(power_csv)])
        summary = json.loads(out[out.index("{"):])
        rows = list(csv.DictReader(power_csv.open()))
    assert summary["keywords"] == [expected], summary["keywords"]
    power = summary["power"]
    assert power["provenance"] == "measured:ina3221", power
    assert abs(power["mean_power_w"] - 6.0) < 1e-9, power  # VDD_IN 5.0 V x 1.2 A
    assert power["samples"] >= 10 and len(rows) >= 10, (power, len(rows))
    print(f"  jetson app: stop.wav -> {summary['keywords']}, providers {summary['providers']}, "
          f"power {power['mean_power_w']:.3f} W {power['provenance']} ({power['samples']} samples, {len(rows)} CSV rows)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4])
