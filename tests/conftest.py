"""Shared fixtures: small modules of our own and their exported bundles (built once per run)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # examples/ and tests/ import as packages from a checkout


@pytest.fixture(scope="session")
def stateless_bundle(tmp_path_factory):
    """The bring-your-own classifier, exported to both formats with a dynamic frame axis."""
    import edgesdk
    from examples.python.tiny_models import classifier

    path = tmp_path_factory.mktemp("bundles") / "classifier"
    edgesdk.export(classifier(), path, example_inputs={"features": (1, 40, 17)},
                   dynamic_axes={"features": {2: "frames"}})
    return path


@pytest.fixture(scope="session")
def streaming_bundle(tmp_path_factory):
    """The bring-your-own streaming step, batch axis dynamic in ONNX."""
    import edgesdk
    from examples.python.tiny_models import streaming_classifier

    path = tmp_path_factory.mktemp("bundles") / "streaming"
    edgesdk.export(
        streaming_classifier(), path,
        example_inputs={"features": (1, 1, 40)},
        states={"conv_buffer": (1, 2, 40), "hidden": (1, 64)},
        output_names=["logits"],
        dynamic_axes={"features": {0: "batch"}, "conv_buffer": {0: "batch"}, "hidden": {0: "batch"}},
    )
    return path
