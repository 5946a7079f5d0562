"""The tolerance rules of edgesdk, shared by export-time validation and the on-device self-test.

Float artifacts must match element by element (``elementwise_error``). An int8 artifact cannot,
by design; it is judged by its signal-to-quantization-noise ratio over a whole case
(``sqnr_db``), the measure quantization tools report.
"""
from __future__ import annotations

import numpy as np


def elementwise_error(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """|candidate - reference| in float64, and where it is within ``atol + rtol * |reference|``."""
    reference = reference.astype(np.float64)
    difference = np.abs(candidate.astype(np.float64) - reference)
    return difference, difference <= atol + rtol * np.abs(reference)


# Default floor for int8 artifacts. Dynamic-range int8 of LMUFormer scv2 measures 38 dB on frame
# logits and 42 dB on running-mean logits; a wrong scale or a quantized recurrence falls far below.
MIN_SQNR_DB = 30.0


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """10·log10(Σ reference² / Σ (candidate - reference)²), in float64; inf when they are equal."""
    reference = reference.astype(np.float64)
    noise = float(np.sum((candidate.astype(np.float64) - reference) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def cosine_similarity(reference: np.ndarray, candidate: np.ndarray) -> float:
    """cos of the angle between the flattened arrays, in float64; 1.0 when both are all zeros."""
    reference = reference.astype(np.float64).ravel()
    candidate = candidate.astype(np.float64).ravel()
    norms = float(np.linalg.norm(reference)) * float(np.linalg.norm(candidate))
    if norms == 0.0:
        return 1.0 if not reference.any() and not candidate.any() else 0.0
    return float(np.dot(reference, candidate) / norms)
