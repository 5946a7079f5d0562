"""The device-side packages load, and a bundle runs, with torch made unimportable."""
from __future__ import annotations

import subprocess
import sys


PROGRAM = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import importlib, numpy as np
for name in {packages!r}:
    importlib.import_module(name)
import edgesdk
from edgesdk.runtime import load
model = load({bundle!r}, backend="onnxruntime")
stream = model.stream()
print(stream.push({{"features": np.zeros((1, 1, 40), np.float32)}})["logits"].shape)
"""


def _present(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def test_runtime_devices_profiler_and_cli_verbs_need_no_torch(streaming_bundle):
    packages = ["edgesdk", "edgesdk.runtime", "edgesdk.runtime.selftest", "edgesdk.runtime.introspect",
                "edgesdk.cli", "edgesdk.cli.run", "edgesdk.cli.validate", "edgesdk.cli.inspect"]
    packages += [p for p in ("edgesdk.devices", "edgesdk.profiler", "edgesdk.runtime.audio",
                             "edgesdk.runtime.chunking") if _present(p)]
    packages += ["edgesdk.runtime.contract", "edgesdk.runtime.decisions", "edgesdk.runtime.wrap", "edgesdk.cli.wrap"]
    result = subprocess.run([sys.executable, "-c", PROGRAM.format(packages=packages, bundle=str(streaming_bundle))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(1, 12)" in result.stdout


def test_importing_torch_really_fails_in_that_setup():
    result = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None; import torch"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "import of torch halted" in result.stderr
