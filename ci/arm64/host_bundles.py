"""Export the bundles test-arm64 checks (host side, needs torch): the KWS demo bundle and one
small preset per family, ONNX + TFLite each, and the KWS model with int8 TFLite weights
(`--quantize int8`, validated by SQNR). Usage: python host_bundles.py OUT_DIR"""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import edgesdk  # noqa: E402

# (bundle name, family, preset, mode): the smallest preset of each family.
SMALL = [
    ("lmuformer-tiny", "lmuformer", "tiny", "full"),
    ("ecoformer-tiny", "ecoformer", "tiny", "full"),
    ("slab-tiny", "slab", "tiny", "full"),
    ("lighthubert-tiny", "lighthubert", "tiny-supernet", "full"),
]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    from examples.kws.demo import CHECKPOINT, bundled_clips, clip_features, export_bundle
    from examples.kws.model import load_kws_model

    start = time.perf_counter()
    clips = bundled_clips()
    export_bundle(out / "kws", clips=clips)
    print(f"exported kws in {time.perf_counter() - start:.1f} s", flush=True)
    start = time.perf_counter()
    # The same samples as the float bundle (a keyword and silence), int8 weights in the TFLite file.
    edgesdk.export(load_kws_model(CHECKPOINT), out / "kws-int8", formats=("tflite",), mode="stream",
                   quantize="int8", force=True, sample_features=clip_features([clips[0], clips[-1]]))
    print(f"exported kws-int8 in {time.perf_counter() - start:.1f} s", flush=True)
    for name, family, preset, mode in SMALL:
        start = time.perf_counter()
        model = edgesdk.create_model(family, preset=preset, seed=1)
        edgesdk.export(model, out / name, formats=("onnx", "tflite"), mode=mode, force=True, random_weights=True)
        print(f"exported {name} in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
