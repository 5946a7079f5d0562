"""Stream each bundled KWS clip through `edgesdk run --wav` on each backend; write the decisions.

Runs the installed `edgesdk` command (torch-free), the same way on the host and in the userland.
Usage: python decisions.py KWS_BUNDLE CLIPS_DIR OUT.json
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BACKENDS = ("onnxruntime", "litert")


def main(bundle: str, clips_dir: Path, out: Path) -> None:
    decisions = {}
    for clip in json.loads((clips_dir / "clips.json").read_text()):
        for backend in BACKENDS:
            command = ["edgesdk", "run", bundle, "--wav", str(clips_dir / clip["file"]), "--stream",
                       "--early-exit", "0.9", "--backend", backend, "--json"]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()}")
            result = json.loads(done.stdout)
            decisions[f"{clip['file']} {backend}"] = [result["decided_label"], result["frames_used"], result["early_exit"]]
    out.write_text(json.dumps(decisions, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
