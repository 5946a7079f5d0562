"""The one tolerance rule of edgesdk, shared by export-time validation and the on-device self-test."""
from __future__ import annotations

import numpy as np


def elementwise_error(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """|candidate - reference| in float64, and where it is within ``atol + rtol * |reference|``."""
    reference = reference.astype(np.float64)
    difference = np.abs(candidate.astype(np.float64) - reference)
    return difference, difference <= atol + rtol * np.abs(reference)
