"""The task figure of a sweep cell, where the family has one, on real data shipped in examples/.

- lmuformer (a full-utterance keyword spotter): accuracy on the twelve labelled 1 s clips of
  ``examples/kws/clips`` (``clips.json``), through the bundle's own Kaldi fbank front-end and
  the cell's artifact in the torch-free runtime. Meaningful with trained weights (the shipped
  ``examples/kws/kws_lmuformer.pt``); a random-weight preset scores about chance.
- slab, ecoformer (image classifiers): top-1 agreement of the artifact with the PyTorch model
  on crops of a real photograph (``examples/images/grace_hopper.jpg``): what quantization or a
  converter changed in the decisions, with any weights.
- anything else (LightHuBERT features, streaming bundles, user factories): none.

Runs in the export worker (torch is there for the reference); a figure that cannot be made
(the examples folder is not installed) says why instead of a number.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgesdk.errors import EdgeSDKError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KWS_CLIPS = EXAMPLES / "kws" / "clips"
PHOTO = EXAMPLES / "images" / "grace_hopper.jpg"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
# Crops of the 512 x 600 photo (left, top, right, bottom): face, uniform, background, corners.
PHOTO_CROPS = ((96, 60, 416, 380), (0, 300, 300, 600), (300, 0, 512, 212), (0, 0, 256, 256),
               (256, 344, 512, 600), (128, 200, 384, 456), (0, 150, 200, 350), (312, 200, 512, 400))


@dataclass(frozen=True)
class TaskFigure:
    """``value`` in [0, 1] (None: no figure), and what it is, in words."""

    value: float | None
    text: str


def photo_crops(side: int, boxes: tuple[tuple[int, int, int, int], ...] = PHOTO_CROPS) -> np.ndarray:
    """Crops of the photo, resized to side x side, ImageNet-normalised: [len(boxes), 3, side, side]."""
    from PIL import Image

    image = Image.open(PHOTO).convert("RGB")
    crops = [np.asarray(image.crop(box).resize((side, side), Image.BICUBIC), dtype=np.float32) / 255.0 for box in boxes]
    return np.stack([(crop.transpose(2, 0, 1) - IMAGENET_MEAN) / IMAGENET_STD for crop in crops]).astype(np.float32)


def kws_accuracy(bundle: Path, backend: str) -> TaskFigure:
    from edgesdk.sweep.corpus import BundleRunner

    if not (KWS_CLIPS / "clips.json").is_file():
        return TaskFigure(None, f"none: {KWS_CLIPS} is not installed")
    clips = json.loads((KWS_CLIPS / "clips.json").read_text())
    runner = BundleRunner.open(bundle, threads=1, backend=backend)
    labels = list((runner.model.manifest.get("extra") or {}).get("labels") or [])
    results = runner.run([KWS_CLIPS / clip["file"] for clip in clips])
    right = 0
    for clip, result in zip(clips, results):
        if isinstance(result, Exception):
            return TaskFigure(None, f"none: {clip['file']}: {result}")
        top = int(np.argmax(result[runner.output_names[0]].reshape(-1)))
        right += top < len(labels) and labels[top] == clip["label"]
    return TaskFigure(right / len(clips), f"KWS accuracy {right}/{len(clips)} clips of examples/kws/clips")


def top1_agreement(model: Any, bundle: Path, backend: str) -> TaskFigure:
    import torch

    import edgesdk

    if not PHOTO.is_file():
        return TaskFigure(None, f"none: {PHOTO} is not installed")
    runtime = edgesdk.load(bundle, backend=backend)
    name = runtime.manifest["inputs"][0]["name"]
    side = int(runtime.manifest["inputs"][0]["shape"][-1])
    images = photo_crops(side)
    with torch.no_grad():
        reference = model(torch.from_numpy(images))
    reference = (reference[0] if isinstance(reference, (tuple, list)) else reference).numpy()
    # One image per call: a TFLite file has a static batch of 1.
    candidate = np.concatenate([runtime.run({name: images[i:i + 1]})["logits"] for i in range(len(images))])
    agree = int((candidate.argmax(1) == reference.argmax(1)).sum())
    return TaskFigure(agree / len(images), f"top-1 agreement with PyTorch {agree}/{len(images)} photo crops")


def task_figure(family: str | None, mode: str, model: Any, bundle: Path, backend: str) -> TaskFigure:
    """The cell's task figure, or ``TaskFigure(None, "none...")`` where its family has none.

    A figure that fails (Pillow missing, a clip the front-end refuses) is reported as text; the
    cell's export stands.
    """
    if mode != "full":
        return TaskFigure(None, "none (streaming bundle)")
    try:
        if family == "lmuformer":
            return kws_accuracy(bundle, backend)
        if family in ("slab", "ecoformer"):
            return top1_agreement(model, bundle, backend)
    except (ImportError, OSError, EdgeSDKError) as error:
        return TaskFigure(None, f"none: {type(error).__name__}: {error}")
    return TaskFigure(None, "none")
