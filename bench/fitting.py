"""Power laws fitted to a few measurements, and what they say about a bigger model: pure
functions of numbers (no torch), so that tests can hold them to known answers."""
from __future__ import annotations

import numpy as np


def fit(params, values) -> tuple[float, float]:
    """(exponent, log-intercept) of value = e^b * params^a, least squares on log-log axes."""
    a, b = np.polyfit(np.log(params), np.log(np.maximum(values, 1e-9)), 1)
    return float(a), float(b)


def largest_fitting(params, peaks_mib, base_mib: float, memory_mib: float,
                    bytes_per_param: int = 4) -> float:
    """Parameters at which base + weights + the analysis's own peak (fitted as a power of
    parameter count, and scaled with the weights' dtype) reaches `memory_mib` (bisection on
    a log scale)."""
    a, b = fit(params, peaks_mib)
    scale = bytes_per_param / 4

    def total(n):
        return base_mib + n * bytes_per_param / 2**20 + scale * np.exp(b) * n ** a
    lo, hi = 1e6, 1e13
    for _ in range(100):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if total(mid) < memory_mib else (lo, mid)
    return float(lo)
