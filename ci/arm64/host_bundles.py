"""Export the bundles test-arm64 checks (host side, needs torch): the KWS demo bundle and one
small preset per family, ONNX + TFLite each. Usage: python host_bundles.py OUT_DIR"""
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
    from examples.kws.demo import bundled_clips, export_bundle

    start = time.perf_counter()
    export_bundle(out / "kws", clips=bundled_clips())
    print(f"exported kws in {time.perf_counter() - start:.1f} s", flush=True)
    for name, family, preset, mode in SMALL:
        start = time.perf_counter()
        model = edgesdk.create_model(family, preset=preset, seed=1)
        edgesdk.export(model, out / name, formats=("onnx", "tflite"), mode=mode, force=True)
        print(f"exported {name} in {time.perf_counter() - start:.1f} s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
