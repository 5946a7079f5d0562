"""The trained spotter in ONNX int8 (edgesdk's onnxruntime recipe), judged by its detections."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from examples.kws.common import CHECKPOINT  # noqa: E402


def test_onnx_int8_spotter_detects_every_bundled_clip_like_fp32(tmp_path):
    import edgesdk
    from examples.kws.demo import bundled_clips, clip_features, stream_clips
    from examples.kws.model import load_kws_model

    clips = bundled_clips()
    exported = edgesdk.export(load_kws_model(CHECKPOINT), tmp_path / "kws", formats=("onnx",), mode="stream",
                              precision="fp32,int8-dynamic", sample_features=clip_features([clips[0]]))
    int8 = next(a for a in exported.manifest["artifacts"] if a["precision"] == "int8-dynamic")
    assert int8["file"] == "model.int8-dynamic.onnx" and int8["validation"]["passed"]
    expected = {c["file"]: c["label"] for c in clips}
    for precision in ("fp32", "int8-dynamic"):
        model = edgesdk.load(exported.path, backend="onnxruntime", precision=precision)
        rows = stream_clips(model, clips, early_exit=0.98, early_exit_frames=30)
        assert {row["clip"]: row["detected"] for row in rows} == expected, precision
