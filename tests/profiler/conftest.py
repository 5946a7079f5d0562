"""Small bundles exported once per test session, for end-to-end profiling."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """{"mlp": full bundle (onnx + tflite), "step": streaming bundle (onnx)} and their layers."""
    torch = pytest.importorskip("torch")
    import edgesdk

    root = tmp_path_factory.mktemp("bundles")
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 8)).eval()
    edgesdk.export(mlp, root / "mlp", example_inputs={"x": torch.randn(1, 16)})

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = torch.nn.Linear(16, 32)
            self.rec = torch.nn.Linear(32, 32)

        def forward(self, x, h):
            h_next = torch.tanh(self.inp(x) + self.rec(h))
            return 2 * h_next, h_next

    edgesdk.export(
        Step().eval(), root / "step", formats=("onnx",), mode="stream",
        example_inputs={"x": torch.randn(1, 16)}, states={"h": (1, 32)},
    )
    # MACs of the Linear layers, from the modules themselves (independent of any ONNX count).
    mlp_macs = sum(layer.in_features * layer.out_features for layer in mlp if isinstance(layer, torch.nn.Linear))
    return {"mlp": root / "mlp", "step": root / "step", "mlp_macs": mlp_macs, "step_macs": 16 * 32 + 32 * 32}


@pytest.fixture(scope="session")
def lmuformer_stream_bundle(tmp_path_factory):
    """A registered family's streaming bundle (LMUFormer tiny): manifest with ops and streaming."""
    pytest.importorskip("torch")
    import edgesdk

    path = tmp_path_factory.mktemp("family") / "lmuformer-tiny-stream"
    model = edgesdk.create_model("lmuformer", preset="tiny")
    edgesdk.export(model, path, formats=("onnx",), mode="stream", random_weights=True)
    return path
