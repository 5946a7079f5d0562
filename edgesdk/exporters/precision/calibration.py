"""Calibration and validation data for reduced precision, from real files.

A folder of WAV files (audio families: read through the model's own front-end, described in the
export's ``frontend`` section: log-mel features, or for a waveform model one window of samples)
or of images (vision families: resized, centre-cropped and normalised with the ImageNet
statistics the vision families are trained with). Files are split
by a fixed rule into two disjoint sets: every fourth file (sorted by name) validates, the others
calibrate, so the data an artifact is judged on is never the data its scales were fitted to.

Wrong modality, a WAV at another sample rate or in another encoding, too few files: UsageError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from edgesdk.errors import UsageError
from edgesdk.spec import ExportSpec, as_numpy

AUDIO_SUFFIXES = (".wav",)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VALIDATION_EVERY = 4     # file i validates when i % 4 == 3
MAX_CALIBRATION_FILES = 64
MAX_VALIDATION_FILES = 8


@dataclass(frozen=True)
class CalibrationSet:
    """Real inputs for calibration and for validation, disjoint by file.

    ``calibration`` and ``validation`` are cases in the form of ``ExportSpec.sample_inputs``:
    full mode, feed dicts; stream mode, name -> [steps, *step shape] arrays.
    """

    source: str
    modality: str
    calibration_files: tuple[str, ...]
    validation_files: tuple[str, ...]
    calibration: list[dict[str, np.ndarray]] = field(repr=False)
    validation: list[dict[str, np.ndarray]] = field(repr=False)

    def facts(self) -> dict[str, Any]:
        """What the manifest records of it (file names, not data)."""
        return {"source": self.source, "modality": self.modality,
                "calibration_files": list(self.calibration_files),
                "validation_files": list(self.validation_files),
                "split": f"every {VALIDATION_EVERY}th file (sorted by name) validates; the others calibrate"}


def _end_input(spec: ExportSpec) -> str | None:
    """The stream step's end-of-stream input (streaming.end_input): 0 on every frame of a file."""
    streaming = spec.metadata.get("streaming")
    return streaming.get("end_input") if isinstance(streaming, Mapping) and spec.mode == "stream" else None


def _float_input(spec: ExportSpec) -> tuple[str, tuple[int, ...]]:
    floats = [(n, tuple(t.shape)) for n, t in spec.example_inputs.items()
              if as_numpy(t).dtype.kind == "f" and n != _end_input(spec)]
    if len(floats) != 1:
        raise UsageError(f"calibration from files needs a model with one float input; this one has "
                         f"{', '.join(spec.example_inputs)}")
    return floats[0]


def _split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    validation = [f for i, f in enumerate(files) if i % VALIDATION_EVERY == VALIDATION_EVERY - 1]
    calibration = [f for f in files if f not in validation]
    return calibration[:MAX_CALIBRATION_FILES], validation[:MAX_VALIDATION_FILES]


def load_calibration(path: str | Path, spec: ExportSpec) -> CalibrationSet:
    """Read ``path`` (a folder) into calibration and validation cases for ``spec``."""
    folder = Path(path)
    if not folder.is_dir():
        raise UsageError(f"calibration data {folder} is not a folder (give a folder of WAV files or images)")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    audio = [p for p in files if p.suffix.lower() in AUDIO_SUFFIXES]
    images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    frontend = spec.metadata.get("frontend")
    wants_fbank = isinstance(frontend, Mapping) and frontend.get("type") == "kaldi_fbank"
    name, shape = _float_input(spec)
    wants_waveform = (isinstance(frontend, Mapping) and frontend.get("kind") == "waveform" and spec.mode == "full"
                      and len(shape) == 2 and shape[0] == 1)
    wants_audio = wants_fbank or wants_waveform
    wants_images = not wants_audio and len(shape) == 4 and shape[1] == 3 and spec.mode == "full"
    if not (wants_audio or wants_images):
        raise UsageError(f"calibration from files is not available for this model (input {name!r} {list(shape)}, "
                         "no kaldi_fbank or waveform front-end and not an RGB image): edgesdk reads WAV folders for "
                         "audio models and image folders for vision models")
    chosen, modality = (audio, "audio") if wants_audio else (images, "images")
    if not chosen:
        other = "images" if images else ("WAV files" if audio else "no WAV file or image")
        raise UsageError(f"calibration data {folder} holds {other}; this model takes {modality} "
                         f"({', '.join(AUDIO_SUFFIXES if wants_audio else IMAGE_SUFFIXES)})")
    if len(chosen) < VALIDATION_EVERY:
        raise UsageError(f"calibration data {folder} holds {len(chosen)} {modality} file(s); at least "
                         f"{VALIDATION_EVERY} are needed (a disjoint validation split is taken from them)")
    calibration_files, validation_files = _split(chosen)
    read: Callable[[Path], np.ndarray] = (_audio_reader(frontend) if wants_fbank else
                                          _waveform_reader(frontend, int(shape[1])) if wants_waveform else
                                          _image_reader(shape))
    def cases(paths: list[Path]) -> list[dict[str, np.ndarray]]:
        return [_as_case(spec, name, shape, read(p)) for p in paths]
    return CalibrationSet(str(folder), modality, tuple(p.name for p in calibration_files),
                          tuple(p.name for p in validation_files), cases(calibration_files), cases(validation_files))


def _audio_reader(section: Mapping[str, Any]) -> Callable[[Path], np.ndarray]:
    from edgesdk.runtime.audio import KaldiFbankFrontend, read_wav

    frontend = KaldiFbankFrontend.from_manifest(section, "the export recipe's metadata")
    # read_wav refuses another sample rate, float or compressed encodings, stereo: UsageError.
    return lambda p: frontend.model_input(read_wav(p, frontend.sample_rate_hz))


def _waveform_reader(section: Mapping[str, Any], samples: int) -> Callable[[Path], np.ndarray]:
    from edgesdk.runtime.chunking import speech_window
    from edgesdk.runtime.sections import WaveformFrontend

    frontend = WaveformFrontend.from_manifest(section, "the export recipe's metadata")
    return lambda p: speech_window(p, samples, frontend.sample_rate_hz, frontend.normalizes,
                                   frontend.normalization_eps)[None]


def _image_reader(shape: tuple[int, ...]) -> Callable[[Path], np.ndarray]:
    height, width = int(shape[2]), int(shape[3])

    def read(path: Path) -> np.ndarray:
        try:
            from PIL import Image
        except ImportError:
            raise UsageError("calibration from images needs Pillow (pip install pillow)") from None
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                scale = max(height / image.height, width / image.width)
                image = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))))
                left, top = (image.width - width) // 2, (image.height - height) // 2
                pixels = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32) / 255.0
        except OSError as error:
            raise UsageError(f"{path} is not a readable image: {error}") from None
        normalized = (pixels - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        return normalized.transpose(2, 0, 1)[None].astype(np.float32)

    return read


def _as_case(spec: ExportSpec, name: str, shape: tuple[int, ...], data: np.ndarray) -> dict[str, np.ndarray]:
    """One file's data as one case: a feed dict (full) or a step sequence (stream)."""
    if data.ndim == 4 or tuple(data.shape) == tuple(shape):  # an image [1, 3, H, W], a waveform window [1, samples]
        return {name: data}
    features = data  # [frames, mel]
    if shape[-1] != features.shape[-1] or int(np.prod(shape[:-2], dtype=np.int64)) != 1:
        raise UsageError(f"the front-end gives {features.shape[-1]} mel bins per frame; input {name!r} takes "
                         f"{list(shape)} (batch 1, [..., frames, mel] expected)")
    frames = shape[-2]
    if spec.mode == "full":
        if features.shape[0] < frames:
            features = np.concatenate([features, np.zeros((frames - features.shape[0], features.shape[1]), np.float32)])
        return {name: features[:frames].reshape(shape).astype(np.float32)}
    steps = features.shape[0] // frames
    if steps < 1:
        raise UsageError(f"a calibration clip gives {features.shape[0]} frames, fewer than one step of {frames}")
    case = {name: features[: steps * frames].reshape((steps,) + shape).astype(np.float32)}
    end = _end_input(spec)
    if end is not None:  # the input lasts on every step of a file
        case[end] = np.zeros((steps, *spec.example_inputs[end].shape), dtype=np.float32)
    return case


def calibration_feeds(spec: ExportSpec, cases: list[dict[str, np.ndarray]], run_reference: Callable,
                      max_feeds: int = 256) -> list[dict[str, np.ndarray]]:
    """Every feed the artifact sees on the calibration cases, states included (graph input names).

    Stream mode steps the reference module through each sequence, carrying its state, so the
    state inputs are calibrated on the values they take in use, not on zeros. At most
    ``max_feeds``, evenly spaced over all steps (ai-edge-quantizer spends ~0.1 s per feed).
    """
    feeds: list[dict[str, np.ndarray]] = []
    for case in cases:
        if spec.mode == "full":
            feeds.append(dict(case))
            continue
        state = {s.input_name: s.initial(s.shape[s.batch_axis]) for s in spec.states}
        steps = len(next(iter(case.values())))
        for step in range(steps):
            feed = {n: case[n][step] for n in spec.example_inputs}
            feed.update(state)
            feeds.append(feed)
            result = run_reference(feed)
            state = {s.input_name: np.asarray(result[s.output_name]) for s in spec.states}
    if len(feeds) > max_feeds:  # evenly spaced, so every part of the clips is represented
        picks = np.linspace(0, len(feeds) - 1, max_feeds).round().astype(int)
        feeds = [feeds[i] for i in picks]
    return feeds
