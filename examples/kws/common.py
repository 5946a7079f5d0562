"""What the keyword-spotting recipe's scripts share: the label set, the clip format and paths.

The recipe is three scripts run in order (see README.md):
``synthesize.py`` (espeak-ng speech -> 16 kHz int16 WAV clips), ``train.py`` (features with
edgesdk's numpy Kaldi fbank -> a small LMUFormer) and ``evaluate.py`` (held-out accuracy, parallel
and streaming). The demo (``edgesdk demo``) needs only what this folder ships: ``kws_lmuformer.pt``
and ``clips/``.
"""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

# The ten Speech Commands core keywords, then the two catch-all classes. The order is the
# class index order of the shipped model's head.
KEYWORDS: tuple[str, ...] = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
LABELS: tuple[str, ...] = KEYWORDS + (UNKNOWN, SILENCE)

# Words spoken for the "unknown" class: the other Speech Commands words, plus near misses that
# share sounds with a keyword (so the model must listen to the whole word).
UNKNOWN_WORDS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "learn", "follow", "forward", "backward", "visual", "hello", "water", "music",
    "yesterday", "nobody", "upper", "downtown", "lefty", "bright", "only", "coffee",
    "stopwatch", "goal", "window", "table",
)

SAMPLE_RATE_HZ = 16000
CLIP_SAMPLES = 16000  # every training clip is 1 s: 98 fbank frames of 10 ms

CHECKPOINT = HERE / "kws_lmuformer.pt"   # the shipped, trained weights
CLIPS_DIR = HERE / "clips"               # held-out WAVs the demo streams
DEFAULT_DATA_DIR = REPO_ROOT / "out" / "kws-data"   # synthesized set (not shipped; out/ is ignored)
