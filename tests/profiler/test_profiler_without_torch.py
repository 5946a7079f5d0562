"""devices, profiler and their CLI verbs import and work with torch unimportable."""
from __future__ import annotations

import subprocess
import sys
import textwrap


def test_devices_and_profiler_never_import_torch():
    script = textwrap.dedent(
        """
        import sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockTorch())
        import edgesdk.devices, edgesdk.profiler, edgesdk.cli.devices, edgesdk.cli.profile
        facts = edgesdk.devices.describe_system("/")
        assert facts["device"]["profile"]
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
