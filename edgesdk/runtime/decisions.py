"""The one early-exit rule: when a stream of class scores may decide before its window ends.

A classifier that streams (keyword spotting over a running mean of logits, say) may answer
early once one class has been confidently on top for a while. Which classes may answer early
matters: the lead-in of every utterance is silence, so a filler class ("_silence_",
"_unknown_") above threshold after a few frames says only that the word has not started. The
rule therefore names the classes that may decide; by default, every class whose label does not
start with an underscore.

``stream_wav`` (``edgesdk run --wav --early-exit``), the KWS demo's spotter and the sample apps
all use this rule; nothing else implements one. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edgesdk.errors import UsageError


def is_filler(label: str) -> bool:
    """Filler classes are named with a leading underscore (``_silence_``, ``_unknown_``)."""
    return label.startswith("_")


@dataclass(frozen=True)
class EarlyExitRule:
    """Decide at once when one deciding class keeps probability >= ``probability`` for ``frames``
    consecutive decided frames; then skip ``refractory_frames`` frames (the rest of that word).

    ``deciding_classes``: class indices that may exit early; None lets every class exit.
    """

    probability: float
    frames: int
    deciding_classes: frozenset[int] | None = None
    refractory_frames: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.probability <= 1.0:
            raise UsageError(f"early_exit must be a probability in (0, 1], not {self.probability}")
        if self.frames < 1:
            raise UsageError(f"early_exit_frames must be at least 1, not {self.frames}")
        if self.refractory_frames < 0:
            raise UsageError(f"refractory_frames must be at least 0, not {self.refractory_frames}")

    @classmethod
    def for_labels(cls, labels: Sequence[str], probability: float, frames: int,
                   refractory_frames: int = 0) -> "EarlyExitRule":
        """Only the non-filler classes of ``labels`` may decide early (every class when there are no labels)."""
        deciding = frozenset(i for i, label in enumerate(labels) if not is_filler(label)) if labels else None
        return cls(probability, frames, deciding, refractory_frames)

    def may_decide(self, index: int) -> bool:
        return self.deciding_classes is None or index in self.deciding_classes


class EarlyExit:
    """The rule's running count over one window of one stream."""

    def __init__(self, rule: EarlyExitRule):
        self.rule = rule
        self.reset()

    def reset(self) -> None:
        self.streak = 0
        self.top = -1

    def update(self, mean_logits: np.ndarray) -> bool:
        """One decided frame's running-mean logits [classes]; True when the rule fires on it.

        The score is the sigmoid of the top class's logit (per-class sigmoid, as the KWS model is
        trained); the streak counts frames on which the same deciding class stays on top above
        the threshold.
        """
        top = int(np.argmax(mean_logits))
        probability = float(1.0 / (1.0 + np.exp(-float(mean_logits[top]))))
        if probability >= self.rule.probability and self.rule.may_decide(top):
            self.streak = self.streak + 1 if top == self.top else 1
        else:
            self.streak = 0
        self.top = top
        return self.streak >= self.rule.frames
