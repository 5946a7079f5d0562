"""Choose the early-exit rule (probability, frames) on the validation split, never on the test set.

The validation split is the 10 % of training clips ``train.py`` held back (same seed, same
permutation). The rule of ``spotter.py`` is replayed on the running-mean logits of the PyTorch
model (``forward_prefix``: what the exported step outputs 5 frames later). For every candidate it
prints accuracy and mean decision frame; the chosen one is the earliest-deciding candidate whose
accuracy is within ``--max-loss`` of the whole-window accuracy.

Usage:
    python -m examples.kws.tune_early_exit [--data out/kws-data] [--checkpoint ...]
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np

from edgesdk.runtime.decisions import EarlyExit, EarlyExitRule

from .common import CHECKPOINT, DEFAULT_DATA_DIR, LABELS

LOOKAHEAD_FRAMES = 5


def decide(running: np.ndarray, probability: float, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The library's rule (``edgesdk.runtime.decisions``, as the spotter runs it) on running-mean
    logits [clips, 128, classes]: (class, window frame) per clip. A whole-window decision comes
    at frame 128 (``Stream.end()`` returns the look-ahead answers at once); an early one on the
    frame that completes the streak, ``LOOKAHEAD_FRAMES`` after the frame it answers for."""
    clips, window, _ = running.shape
    decided = running[:, -1].argmax(axis=1)
    at = np.full(clips, window)
    early = EarlyExit(EarlyExitRule.for_labels(LABELS, probability, frames))
    for i in range(clips):
        early.reset()
        for t in range(window - LOOKAHEAD_FRAMES):  # the answers that arrive while the window streams
            if early.update(running[i, t]):
                decided[i], at[i] = int(np.argmax(running[i, t])), t + 1 + LOOKAHEAD_FRAMES
                break
    return decided, at


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--seed", type=int, default=0, help="train.py's --seed (the same split)")
    parser.add_argument("--max-loss", type=float, default=0.005, help="accuracy the rule may cost (fraction)")
    args = parser.parse_args()

    import torch

    from .model import load_kws_model
    from .train import load_features

    features, labels = load_features(args.data, "train")
    order = np.random.default_rng(args.seed).permutation(len(features))
    held = order[: len(order) // 10]
    model = load_kws_model(args.checkpoint)
    with torch.no_grad():
        running = np.concatenate([model.forward_prefix(torch.from_numpy(features[held[i: i + 256]])).numpy()
                                  for i in range(0, len(held), 256)])
    truth = labels[held]
    whole = float((running[:, -1].argmax(axis=1) == truth).mean())
    print(f"validation split: {len(held)} clips; whole window (no early exit): {100 * whole:.2f} %")
    candidates = []
    for probability, frames in itertools.product((0.9, 0.95, 0.98, 0.99), (10, 15, 20, 30)):
        decided, at = decide(running, probability, frames)
        accuracy = float((decided == truth).mean())
        candidates.append((probability, frames, accuracy, float(at.mean())))
        print(f"  p >= {probability:.2f} for {frames:2d} frames: {100 * accuracy:.2f} %, "
              f"decided at frame {at.mean():.1f} on average")
    good = [c for c in candidates if c[2] >= whole - args.max_loss]
    probability, frames, accuracy, mean_at = min(good or candidates, key=lambda c: (c[3], -c[2]))
    print(f"chosen: p >= {probability} for {frames} frames ({100 * accuracy:.2f} %, frame {mean_at:.1f} on average)")


if __name__ == "__main__":
    main()
