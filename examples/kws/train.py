"""Train the keyword spotter: edgesdk's numpy Kaldi fbank -> LMUFormer (non-spiking), on CPU.

Features are exactly what the runtime computes on a device (``edgesdk.runtime.audio``
``KaldiFbankFrontend().model_input``: int16 / 32768, clip mean removed, 128-bin Kaldi fbank,
padded to 128 frames, normalised with the authors' constants), so the exported model sees in
deployment what it saw in training.

Training follows the authors' recipe where it fits a small CPU run: Adam, per-class sigmoid
(BCE) on one-hot targets of the mean of per-frame logits, SpecAugment-style masks. One addition
for streaming: the running mean of the per-frame logits at every frame from ``--prefix-start``
on is trained too (weight ``--prefix-weight``), so the stream's posterior stays uncertain until
the word is distinctive, then settles, and the early-exit rule can stop early without guessing.

No model selection on the test set: 10 % of the training clips are held back for the per-epoch
validation line, the last epoch is saved, and ``evaluate.py`` alone reads ``test.npz``.

Usage:
    python -m examples.kws.train [--data out/kws-data] [--epochs 30] [--threads 1]
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .common import CHECKPOINT, DEFAULT_DATA_DIR, LABELS
from .model import config_to_container, kws_config

log = logging.getLogger("kws.train")


def features_of(waveforms: np.ndarray) -> np.ndarray:
    """int16 clips [N, samples] -> model input float32 [N, 128, 128] via the runtime front-end."""
    from edgesdk.runtime.audio import KaldiFbankFrontend

    frontend = KaldiFbankFrontend()
    return np.stack([frontend.model_input(clip) for clip in waveforms])


def with_random_gain(waveforms: np.ndarray, seed: int, low_db: float = -20.0, high_db: float = 6.0) -> np.ndarray:
    """Each clip scaled by a random gain (uniform in dB), clipped to int16: level augmentation.

    The front-end has fixed normalisation constants, so a quiet word (a soft fricative such as
    "off") must have been seen quiet in training.
    """
    gains_db = np.random.default_rng(seed).uniform(low_db, high_db, size=(len(waveforms), 1))
    scaled = waveforms.astype(np.float64) * 10.0 ** (gains_db / 20.0)
    return np.clip(np.round(scaled), -32768, 32767).astype(np.int16)


def load_features(data_dir: Path, split: str, gain_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels of a split (optionally at random gains), cached beside the data (float16)."""
    suffix = "" if gain_seed is None else f"_gain{gain_seed}"
    cache = data_dir / f"{split}{suffix}_features.npy"
    data = np.load(data_dir / f"{split}.npz")
    if cache.is_file() and cache.stat().st_mtime >= (data_dir / f"{split}.npz").stat().st_mtime:
        return np.load(cache).astype(np.float32), data["labels"]
    start = time.perf_counter()
    waveforms = data["waveforms"] if gain_seed is None else with_random_gain(data["waveforms"], gain_seed)
    features = features_of(waveforms)
    np.save(cache, features.astype(np.float16))
    log.info("%s: fbank of %d clips in %.1f s", split, len(features), time.perf_counter() - start)
    return features, data["labels"]


def spec_augment(x: torch.Tensor, generator: torch.Generator, max_freq: int = 16, max_time: int = 16) -> torch.Tensor:
    """One random frequency band and one random time span set to 0 per clip (x [B, T, F])."""
    batch, frames, bins = x.shape
    x = x.clone()
    for i in range(batch):
        width = int(torch.randint(0, max_freq + 1, (1,), generator=generator))
        start = int(torch.randint(0, bins - width + 1, (1,), generator=generator))
        x[i, :, start: start + width] = 0.0
        span = int(torch.randint(0, max_time + 1, (1,), generator=generator))
        begin = int(torch.randint(0, frames - span + 1, (1,), generator=generator))
        x[i, begin: begin + span, :] = 0.0
    return x


def loss_of(frame_logits: torch.Tensor, targets: torch.Tensor, prefix_weight: float, prefix_start: int) -> torch.Tensor:
    """BCE of the clip's mean logits, plus BCE of the running mean at every frame from ``prefix_start``.

    The prefix term is what makes early exit trustworthy: before the word is distinctive the
    running posterior must stay uncertain (BCE against the clip's label teaches the class prior
    there), so it crosses a high threshold only once the evidence is in.
    """
    frames = frame_logits.shape[1]
    count = torch.arange(1, frames + 1, dtype=frame_logits.dtype).view(1, -1, 1)
    running = frame_logits.cumsum(dim=1) / count
    loss = F.binary_cross_entropy_with_logits(running[:, -1], targets)
    if prefix_weight > 0:
        late = running[:, prefix_start:]
        loss = loss + prefix_weight * F.binary_cross_entropy_with_logits(
            late, targets[:, None].expand_as(late))
    return loss


def accuracy(model: torch.nn.Module, features: np.ndarray, labels: np.ndarray, batch: int = 256) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(features), batch):
            logits = model(torch.from_numpy(features[start: start + batch]))
            correct += int((logits.argmax(dim=1).numpy() == labels[start: start + batch]).sum())
    return correct / len(features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=CHECKPOINT)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--prefix-weight", type=float, default=0.5)
    parser.add_argument("--prefix-start", type=int, default=8,
                        help="first frame whose running mean is trained (see loss_of)")
    parser.add_argument("--gain-copies", type=int, default=0,
                        help="extra copies of the training clips at random gains (-20..+6 dB)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    features, labels = load_features(args.data, "train")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(features))
    held = order[: len(order) // 10]
    used = order[len(order) // 10:]
    train_x, train_y = features[used], labels[used]
    val_x, val_y = features[held], labels[held]
    for copy in range(args.gain_copies):
        # Copies of the training clips only: the validation clips stay unseen at every gain.
        louder, _ = load_features(args.data, "train", gain_seed=1000 + copy)
        train_x = np.concatenate([train_x, louder[used]])
        train_y = np.concatenate([train_y, labels[used]])

    config = kws_config(args.embed_dim)
    from edgesdk.models.lmuformer import FAMILY

    model = FAMILY.build(config)
    log.info("LMUFormer %s: %d parameters; %d training clips, %d validation clips",
             config.variant, sum(p.numel() for p in model.parameters()), len(train_x), len(val_x))
    steps_per_epoch = len(train_x) // args.batch
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.95, 0.999))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=args.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(args.seed)
    eye = torch.eye(len(LABELS))
    train_tensor = torch.from_numpy(train_x)
    label_tensor = torch.from_numpy(train_y)
    for epoch in range(args.epochs):
        model.train()
        begin = time.perf_counter()
        permutation = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            index = permutation[step * args.batch: (step + 1) * args.batch]
            x = spec_augment(train_tensor[index], generator)
            loss = loss_of(model.frame_logits(x), eye[label_tensor[index]], args.prefix_weight, args.prefix_start)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
        log.info("epoch %2d  loss %.4f  validation accuracy %.3f  (%.0f s)", epoch + 1,
                 total / steps_per_epoch, accuracy(model, val_x, val_y), time.perf_counter() - begin)
    model.eval()
    torch.save({
        "model": model.state_dict(),
        "config": config_to_container(config),
        "training": {"epochs": args.epochs, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                     "prefix_weight": args.prefix_weight, "prefix_start": args.prefix_start, "gain_copies": args.gain_copies, "train_clips": int(len(train_x)),
                     "data": str(args.data)},
    }, args.out)
    log.info("wrote %s (%.0f kB)", args.out, args.out.stat().st_size / 1024)


if __name__ == "__main__":
    main()
