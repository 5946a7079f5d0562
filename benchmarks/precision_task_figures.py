"""Task figures of reduced-precision artifacts, against the fp32 PyTorch model (issue 13).

- ``ecoformer``: exports fp16, int8-dynamic and int8-weight-only (ONNX and TFLite) and runs each
  artifact on scikit-image's photographs: hash-code bit agreement per layer, logits SQNR, top-1
  agreement on every photograph and on those the float model decides (top-2 margin over 4x the
  artifact's rms logit error).
- ``lighthubert``: writes ``--clips`` speech clips of a synthesized KWS set (``--speech``, an npz with
  ``waveforms`` [n, 16000] int16 and ``words``, as examples/kws/synthesize.py writes) as WAVs,
  exports the ``small`` subnet int8-dynamic with ``probe_data`` pointing at them, and prints each
  artifact's per-layer SQNR and linear-probe agreement from its validation.

    python benchmarks/precision_task_figures.py ecoformer [--preset tiny]
    python benchmarks/precision_task_figures.py lighthubert [--speech /work/kws-data/test.npz] [--clips 40]

Figures on stdout; slow (whole exports): run with ``nice -n 5``. SLAB swin-t has its own
``pytest -m fullsize tests/exporters/test_precision_vision.py -k swin --junitxml=FILE``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import edgesdk  # noqa: E402
from edgesdk.errors import ValidationError  # noqa: E402
from edgesdk.runtime.compare import sqnr_db  # noqa: E402

PHOTOGRAPHS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
               "camera", "coins", "moon", "grass", "gravel", "brick", "cat", "cell", "clock", "page", "text",
               "microaneurysms")


def _export(model, folder: Path, **arguments) -> None:
    try:
        edgesdk.export(model, folder, random_weights=True, **arguments)
        print("export: every artifact passed validation")
    except ValidationError as error:
        print(f"export: {error}")


def ecoformer(preset: str, work: Path) -> None:
    import torch
    from PIL import Image
    from skimage import data

    from edgesdk.exporters.precision.calibration import _image_reader
    from edgesdk.models import ecoformer as family

    model = edgesdk.create_model("ecoformer", preset=preset)
    bundle = work / "bundle"
    _export(model, bundle, formats=("onnx", "tflite"), precision="fp16,int8-dynamic,int8-weight-only")
    manifest = json.loads((bundle / "edgesdk.json").read_text())
    read = _image_reader(tuple(manifest["inputs"][0]["shape"]))
    photos = work / "photos"
    photos.mkdir()
    images = []
    for name in PHOTOGRAPHS:
        Image.fromarray(getattr(data, name)()).convert("RGB").save(photos / f"{name}.png")
        images.append(read(photos / f"{name}.png"))
    layers = model.hash_layer_names()
    reference = family.EcoFormerExport(model)
    with torch.no_grad():
        want = [[o.numpy() for o in reference(torch.from_numpy(image))] for image in images]
    want_all = [np.concatenate([w[k] for w in want]) for k in range(1 + len(layers))]
    print(f"ecoformer {preset}, {len(images)} photographs")
    for backend, precision in (("onnxruntime", "int8-dynamic"), ("onnxruntime", "fp16"), ("litert", "int8-dynamic"),
                               ("litert", "int8-weight-only"), ("litert", "fp16")):
        loaded = edgesdk.load(bundle, backend=backend, precision=precision)
        got = [loaded.run({"image": image}) for image in images]
        got_all = [np.concatenate([g["logits"] for g in got])] + [
            np.concatenate([g[f"hash_codes_{layer}"] for g in got]) for layer in layers]
        bits = [float(np.mean(np.sign(want_all[k]) == np.sign(got_all[k]))) for k in range(1, len(want_all))]
        logits, candidate = want_all[0], got_all[0]
        top2 = np.sort(logits, axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) > 4 * np.sqrt(np.mean((candidate - logits) ** 2, axis=1))
        same = logits.argmax(1) == candidate.argmax(1)
        print(f"  {backend:11s} {precision:16s} validation {'passes' if loaded.artifact['validation']['passed'] else 'FAILS'}"
              f"; bits " + " ".join(f"{layer} {b:.4%}" for layer, b in zip(layers, bits))
              + f"; logits SQNR {sqnr_db(logits, candidate):.1f} dB; top-1 {int(same.sum())}/{len(images)}"
              f", decided {int((same & decided).sum())}/{int(decided.sum())}")


def lighthubert(speech: Path, clips: int, work: Path) -> None:
    data = np.load(speech)
    folder = work / "speech"
    folder.mkdir()
    for index in range(clips):
        with wave.open(str(folder / f"{index:03d}_{data['words'][index]}.wav"), "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(16000)
            file.writeframes(data["waveforms"][index].astype(np.int16).tobytes())
    print(f"lighthubert small: {clips} clips of {speech}, {len(set(data['words'][:clips]))} words")
    model = edgesdk.create_model("lighthubert", preset="small-supernet", seed=0)
    bundle = work / "bundle"
    _export(model, bundle, formats=("onnx", "tflite"), precision="int8-dynamic", subnet="small", layers="all",
            window_seconds=1.0, probe_data=str(folder))
    for artifact in json.loads((bundle / "edgesdk.json").read_text())["artifacts"]:
        validation = artifact["validation"]
        print(f"  {artifact['file']}: validation {'passes' if validation['passed'] else 'FAILS'}")
        for name, facts in validation["outputs"].items():
            print(f"    {name:16s} lowest SQNR {facts.get('sqnr_db', float('nan')):5.1f} dB, "
                  f"lowest probe agreement {facts.get('probe_agreement', float('nan')):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=("ecoformer", "lighthubert"))
    parser.add_argument("--preset", default="tiny", help="ecoformer preset")
    parser.add_argument("--speech", type=Path, default=Path("/work/kws-data/test.npz"))
    parser.add_argument("--clips", type=int, default=40)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if arguments.family == "ecoformer":
            ecoformer(arguments.preset, Path(folder))
        else:
            lighthubert(arguments.speech, arguments.clips, Path(folder))


if __name__ == "__main__":
    main()
