"""Synthesize the keyword-spotting data set with espeak-ng: 16 kHz mono int16, 1 s clips.

Every clip is one word spoken by one espeak-ng voice (an English accent combined with a voice
variant), at a random speed and pitch, placed at a random time in a 1 s window, at a random level,
over synthetic background noise (white, pink, brown, or mains hum) at a random signal-to-noise
ratio. The "silence" class is background noise alone, from digital zero to loud.

Held-out split: the test set is spoken by voice *variants* that never occur in training (every
fifth variant in sorted order), so test accuracy measures unseen speakers, not memorised clips.

Usage:
    python -m examples.kws.synthesize [--out out/kws-data] [--train-per-word 400] [--seed 0]

Writes ``train.npz`` and ``test.npz`` (``waveforms`` int16 [N, 16000], ``labels`` int64 [N],
``words``, ``voices``, ``speeds_wpm``, ``pitches``, ``snr_db``) and ``synthesis.json`` (the
settings and espeak-ng version). Needs espeak-ng on PATH (Debian: ``apt-get install espeak-ng``)
and scipy; the demo needs neither.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from .common import (
    CLIP_SAMPLES,
    DEFAULT_DATA_DIR,
    KEYWORDS,
    LABELS,
    SAMPLE_RATE_HZ,
    SILENCE,
    UNKNOWN,
    UNKNOWN_WORDS,
)

log = logging.getLogger("kws.synthesize")

# espeak-ng's English voices that need no extra (mbrola) data.
ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)
ESPEAK_RATE_HZ = 22050
# Speech must leave room for a time shift inside the 1 s window.
MAX_SPEECH_SAMPLES = int(0.92 * CLIP_SAMPLES)


@dataclass(frozen=True)
class Utterance:
    word: str
    label: int
    voice: str
    speed_wpm: int
    pitch: int


def espeak_variants() -> list[str]:
    """Names of the installed espeak-ng voice variants (``m3``, ``klatt2``, ``Annie`` ...)."""
    listing = subprocess.run(
        ["espeak-ng", "--voices=variant"], check=True, capture_output=True, text=True
    ).stdout.splitlines()[1:]
    names = sorted({line.split()[4].split("/")[-1] for line in listing if line.strip()})
    return names


def split_variants(variants: list[str]) -> tuple[list[str], list[str]]:
    """Every fifth variant (sorted) speaks only in the test set."""
    test = variants[::5]
    train = [v for v in variants if v not in test]
    return train, test


def speak(word: str, voice: str, speed_wpm: int, pitch: int, workdir: Path) -> np.ndarray:
    """One word from espeak-ng, resampled to 16 kHz float32 in [-1, 1), silence trimmed."""
    path = workdir / "word.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "-w", str(path), word],
        check=True, capture_output=True,
    )
    with wave.open(str(path), "rb") as handle:
        if handle.getframerate() != ESPEAK_RATE_HZ or handle.getsampwidth() != 2:
            raise RuntimeError(f"espeak-ng wrote {handle.getframerate()} Hz, "
                               f"{8 * handle.getsampwidth()} bit; expected 22050 Hz, 16 bit")
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    audio = pcm.astype(np.float64) / 32768.0
    # 22050 -> 16000 Hz is the rational factor 320/441.
    audio = resample_poly(audio, 320, 441)
    loud = np.flatnonzero(np.abs(audio) > 0.02 * np.abs(audio).max())
    return audio[loud[0]: loud[-1] + 1] if loud.size else audio


def background(kind: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS synthetic background noise of the given colour."""
    white = rng.standard_normal(samples)
    if kind == "white":
        noise = white
    elif kind == "pink":
        # 1/f power: shape the spectrum by 1/sqrt(f).
        spectrum = np.fft.rfft(white)
        frequency = np.fft.rfftfreq(samples, 1.0 / SAMPLE_RATE_HZ)
        spectrum[1:] /= np.sqrt(frequency[1:] / frequency[1])
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, n=samples)
    elif kind == "brown":
        noise = np.cumsum(white)
        noise -= np.linspace(noise[0], noise[-1], samples)   # remove the random-walk drift
    elif kind == "hum":
        t = np.arange(samples) / SAMPLE_RATE_HZ
        mains_hz = rng.choice([50.0, 60.0])
        noise = sum(np.sin(2 * np.pi * mains_hz * h * t + rng.uniform(0, 2 * np.pi)) / h
                    for h in (1, 2, 3, 5))
        noise = noise + 0.3 * white
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return noise / max(np.sqrt(np.mean(noise ** 2)), 1e-12)


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def make_word_clip(speech: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Place speech at a random offset and level over random noise; returns (int16 clip, SNR dB)."""
    clip = np.zeros(CLIP_SAMPLES)
    start = int(rng.integers(0, CLIP_SAMPLES - speech.size + 1))
    peak_dbfs = rng.uniform(-26.0, -3.0)
    speech = speech / np.abs(speech).max() * 10 ** (peak_dbfs / 20)
    clip[start: start + speech.size] = speech
    speech_rms = np.sqrt(np.mean(speech ** 2))
    snr_db = float(rng.choice([rng.uniform(5.0, 30.0), 60.0], p=[0.85, 0.15]))
    kind = str(rng.choice(["white", "pink", "brown", "hum"]))
    clip += background(kind, CLIP_SAMPLES, rng) * speech_rms / 10 ** (snr_db / 20)
    return to_int16(clip), snr_db


def make_silence_clip(rng: np.random.Generator) -> np.ndarray:
    """Background alone, from digital zero through a quiet room to loud noise."""
    if rng.uniform() < 0.05:
        return np.zeros(CLIP_SAMPLES, dtype=np.int16)
    kind = str(rng.choice(["white", "pink", "brown", "hum"]))
    rms_dbfs = rng.uniform(-75.0, -25.0)
    return to_int16(background(kind, CLIP_SAMPLES, rng) * 10 ** (rms_dbfs / 20))


def plan(words: list[tuple[str, int]], count: int, variants: list[str],
         rng: np.random.Generator) -> list[Utterance]:
    plans = []
    for index in range(count):
        word, label = words[index % len(words)]
        voice = f"{rng.choice(ACCENTS)}+{rng.choice(variants)}"
        plans.append(Utterance(word, label, voice, int(rng.integers(110, 231)),
                               int(rng.integers(15, 86))))
    return plans


def synthesize_split(plans: list[Utterance], silence_count: int, rng: np.random.Generator,
                     workdir: Path) -> dict[str, np.ndarray]:
    waveforms, labels, words, voices, speeds, pitches, snrs = [], [], [], [], [], [], []
    for number, utterance in enumerate(plans):
        speed = utterance.speed_wpm
        speech = speak(utterance.word, utterance.voice, speed, utterance.pitch, workdir)
        # Slow voices can overrun the 1 s window: speak faster until the word fits.
        while speech.size > MAX_SPEECH_SAMPLES:
            speed += 20
            speech = speak(utterance.word, utterance.voice, speed, utterance.pitch, workdir)
        clip, snr_db = make_word_clip(speech, rng)
        waveforms.append(clip)
        labels.append(utterance.label)
        words.append(utterance.word)
        voices.append(utterance.voice)
        speeds.append(speed)
        pitches.append(utterance.pitch)
        snrs.append(snr_db)
        if (number + 1) % 500 == 0:
            log.info("  %d / %d words", number + 1, len(plans))
    for _ in range(silence_count):
        waveforms.append(make_silence_clip(rng))
        labels.append(LABELS.index(SILENCE))
        words.append("")
        voices.append("")
        speeds.append(0)
        pitches.append(0)
        snrs.append(float("nan"))
    return {
        "waveforms": np.stack(waveforms),
        "labels": np.asarray(labels, dtype=np.int64),
        "words": np.asarray(words),
        "voices": np.asarray(voices),
        "speeds_wpm": np.asarray(speeds, dtype=np.int64),
        "pitches": np.asarray(pitches, dtype=np.int64),
        "snr_db": np.asarray(snrs, dtype=np.float32),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--train-per-word", type=int, default=400,
                        help="training clips per keyword (unknown gets twice, silence the same)")
    parser.add_argument("--test-per-word", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is not on PATH (Debian: apt-get install espeak-ng)")

    rng = np.random.default_rng(args.seed)
    variants = espeak_variants()
    train_variants, test_variants = split_variants(variants)
    keyword_items = [(word, LABELS.index(word)) for word in KEYWORDS]
    unknown_items = [(word, LABELS.index(UNKNOWN)) for word in UNKNOWN_WORDS]
    args.out.mkdir(parents=True, exist_ok=True)
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as workdir:
        for split, per_word, split_variants_ in (
            ("train", args.train_per_word, train_variants),
            ("test", args.test_per_word, test_variants),
        ):
            plans = (plan(keyword_items, per_word * len(KEYWORDS), split_variants_, rng)
                     + plan(unknown_items, 2 * per_word, split_variants_, rng))
            log.info("%s: %d words, %d silences, %d voice variants", split, len(plans),
                     per_word, len(split_variants_))
            data = synthesize_split(plans, per_word, rng, Path(workdir))
            np.savez(args.out / f"{split}.npz", **data)
    (args.out / "synthesis.json").write_text(json.dumps({
        "espeak_ng": version.strip(), "seed": args.seed, "labels": LABELS,
        "accents": ACCENTS, "train_variants": train_variants, "test_variants": test_variants,
        "train_per_word": args.train_per_word, "test_per_word": args.test_per_word,
        "sample_rate_hz": SAMPLE_RATE_HZ, "clip_samples": CLIP_SAMPLES,
    }, indent=2))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
