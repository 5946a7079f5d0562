"""One backend discovery: the runtime's loader and self-test and `edgesdk devices` agree."""
from __future__ import annotations

import json
import sys

import pytest

from edgesdk.devices import backends as discovery
from edgesdk.devices import describe_system
from edgesdk.errors import BackendUnavailable
from edgesdk.runtime import load
from edgesdk.runtime.backends import available_backends as runtime_available
from edgesdk.runtime.backends import base
from edgesdk.runtime.manifest import sha256_file


def test_runtime_uses_the_devices_discovery():
    assert runtime_available is discovery.available_backends
    assert base.litert_module is discovery.litert_module


def test_discovery_matches_what_imports_here():
    found = discovery.available_backends()
    assert ("onnxruntime" in found) == (discovery.onnxruntime_info()["installed"])
    assert ("litert" in found) == (discovery.litert_info()["installed"])
    assert found == [name for name in ("onnxruntime", "litert") if name in found]


def _onnx_only_bundle(folder):
    """A bundle whose one artifact is ONNX (its bytes never reach a backend in these tests)."""
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not parsed")
    tensor = {"name": "x", "shape": [1, 2], "dtype": "float32"}
    manifest = {"schema_version": 1, "model": {}, "inputs": [tensor], "outputs": [dict(tensor, name="y")],
                "state": [], "artifacts": [{"file": "model.onnx", "format": "onnx",
                                            "sha256": sha256_file(folder / "model.onnx"),
                                            "inputs": {"x": "x"}, "outputs": {"y": "y"}}]}
    (folder / "edgesdk.json").write_text(json.dumps(manifest))
    return folder


@pytest.mark.parametrize("blocked", ["onnxruntime", "litert"])
def test_a_package_that_does_not_import_is_absent_everywhere(blocked, monkeypatch, tmp_path):
    bundle = _onnx_only_bundle(tmp_path / "bundle")
    if blocked == "onnxruntime":
        monkeypatch.setitem(sys.modules, "onnxruntime", None)
    else:
        for module in discovery.LITERT_MODULES:
            monkeypatch.setitem(sys.modules, module, None)
    found = discovery.available_backends()
    assert blocked not in found
    assert runtime_available() == found
    assert blocked not in describe_system(tmp_path)["preferred_backends"]
    if blocked == "onnxruntime":
        # The loader asks the same question: an ONNX-only bundle cannot run.
        with pytest.raises(BackendUnavailable, match="not installed"):
            load(bundle, backend="onnxruntime")
        with pytest.raises(BackendUnavailable, match="no installed backend"):
            load(bundle)
