"""Pick the held-out clips the demo ships, by a fixed rule that does not look at the model.

For every class, the first clip of ``test.npz`` (held-out voices) whose signal-to-noise ratio is
at least ``--min-snr-db`` (silence clips: the first one that is not digital zero). Writes them as
16-bit mono 16 kHz WAVs to ``examples/kws/clips/`` with ``clips.json`` (file, label, word, voice,
speed, pitch, SNR).

Usage:
    python -m examples.kws.pick_clips [--data out/kws-data] [--min-snr-db 10]
"""
from __future__ import annotations

import argparse
import json
import wave
from pathlib import Path

import numpy as np

from .common import CLIPS_DIR, DEFAULT_DATA_DIR, LABELS, SAMPLE_RATE_HZ, SILENCE, UNKNOWN


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE_HZ)
        handle.writeframes(samples.astype("<i2").tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=CLIPS_DIR)
    parser.add_argument("--min-snr-db", type=float, default=10.0)
    args = parser.parse_args()
    data = np.load(args.data / "test.npz")
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = []
    for label_index, label in enumerate(LABELS):
        for i in np.flatnonzero(data["labels"] == label_index):
            if label == SILENCE:
                if not data["waveforms"][i].any():
                    continue
            elif data["snr_db"][i] < args.min_snr_db:
                continue
            name = {UNKNOWN: "unknown", SILENCE: "silence"}.get(label, label)
            file = f"{name}.wav"
            write_wav(args.out / file, data["waveforms"][i])
            chosen.append({
                "file": file, "label": label, "word": str(data["words"][i]), "voice": str(data["voices"][i]),
                "speed_wpm": int(data["speeds_wpm"][i]), "pitch": int(data["pitches"][i]),
                "snr_db": None if label == SILENCE else round(float(data["snr_db"][i]), 1),
                "test_index": int(i),
            })
            break
    (args.out / "clips.json").write_text(json.dumps(chosen, indent=2) + "\n")
    print(f"wrote {len(chosen)} clips to {args.out}")


if __name__ == "__main__":
    main()
