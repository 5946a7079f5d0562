"""The one early-exit rule (edgesdk.runtime.decisions), on constructed scores and on the KWS clips."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edgesdk.errors import UsageError
from edgesdk.runtime.decisions import EarlyExit, EarlyExitRule

LABELS = ["_silence_", "_unknown_", "yes", "no"]
REPO = Path(__file__).resolve().parents[2]


def _logits(top: int, logit: float = 5.0) -> np.ndarray:
    scores = np.full(len(LABELS), -5.0, np.float32)
    scores[top] = logit
    return scores


def _first_exit(rule: EarlyExitRule, frames: list[np.ndarray]) -> int | None:
    early = EarlyExit(rule)
    for index, scores in enumerate(frames):
        if early.update(scores):
            return index
    return None


def test_silence_on_top_never_exits_but_a_keyword_does():
    rule = EarlyExitRule.for_labels(LABELS, probability=0.9, frames=10)
    assert rule.deciding_classes == frozenset({2, 3})
    lead_in = [_logits(0)] * 40 + [_logits(2)] * 12  # sigmoid(5) = 0.993 >= 0.9 throughout
    assert _first_exit(rule, lead_in) == 40 + 10 - 1
    # The old rule (every class may exit) decided "silence" on the lead-in: the 24.9 % failure.
    assert _first_exit(EarlyExitRule(0.9, 10), lead_in) == 9


def test_the_streak_restarts_when_the_top_class_changes_or_drops_below_threshold():
    rule = EarlyExitRule.for_labels(LABELS, probability=0.9, frames=3)
    assert _first_exit(rule, [_logits(2), _logits(2), _logits(3), _logits(3), _logits(2), _logits(2)]) is None
    assert _first_exit(rule, [_logits(2), _logits(2), _logits(2, logit=1.0), _logits(2), _logits(2)]) is None
    assert _first_exit(rule, [_logits(3), _logits(2), _logits(2), _logits(2)]) == 3


def test_without_labels_every_class_may_decide():
    assert EarlyExitRule.for_labels([], 0.5, 2).deciding_classes is None


@pytest.mark.parametrize(("arguments", "message"), [((0.0, 5), "probability in"), ((1.5, 5), "probability in"),
                                                     ((0.9, 0), "early_exit_frames must be at least 1")])
def test_bad_rules_are_refused(arguments, message):
    with pytest.raises(UsageError, match=message):
        EarlyExitRule(*arguments)


def test_stream_wav_with_the_library_rule_decides_every_bundled_clip(tmp_path):
    """The shipped KWS model, exported, through stream_wav with early exit: every held-out clip right."""
    pytest.importorskip("torch")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import edgesdk
    from edgesdk.runtime.audio import stream_wav
    from examples.kws.common import CHECKPOINT
    from examples.kws.demo import bundled_clips
    from examples.kws.model import load_kws_model

    exported = edgesdk.export(load_kws_model(CHECKPOINT), tmp_path / "kws", formats=("onnx",), mode="stream")
    model = edgesdk.load(exported.path)
    results = {clip["label"]: stream_wav(model, clip["path"], early_exit=0.98, early_exit_frames=30)
               for clip in bundled_clips()}
    assert {label: r.decided_label for label, r in results.items()} == {label: label for label in results}
    keywords = [r for label, r in results.items() if not label.startswith("_")]
    assert any(r.early_exit for r in keywords)  # the rule does fire on keywords
    assert not any(r.early_exit for label, r in results.items() if label.startswith("_"))
