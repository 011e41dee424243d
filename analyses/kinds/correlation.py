"""The correlations that compare an estimate with exact patching (attribution patching's
`agreement`, the circuit's `exact` column): one definition, on scipy."""
from __future__ import annotations

import numpy as np
from scipy import stats


def _defined(a: np.ndarray, b: np.ndarray) -> bool:
    """A correlation needs two values or more on each side, neither side constant."""
    return len(a) >= 2 and np.ptp(a) > 0 and np.ptp(b) > 0


def pearson(a, b) -> float:
    """Pearson's r of two equal-length vectors; NaN where undefined; within [-1, 1]."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not _defined(a, b):
        return float("nan")
    return float(np.clip(stats.pearsonr(a, b).statistic, -1.0, 1.0))


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties take their average rank); NaN where undefined."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not _defined(a, b):
        return float("nan")
    return float(np.clip(stats.spearmanr(a, b).statistic, -1.0, 1.0))
