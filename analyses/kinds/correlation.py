"""The correlations that compare an estimate with exact patching (attribution patching's
`agreement`, the circuit's `exact` column): one definition, row by row over [rows, n] arrays
(many examples' vectors at once; ranks by scipy's `rankdata`), held to scipy's `pearsonr` and
`spearmanr` on each row; `pearson` and `spearman` are one row's."""
from __future__ import annotations

import numpy as np
from scipy import stats


def _defined(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool [rows]: a correlation needs two values or more on each side, neither side constant."""
    if a.shape[1] < 2:
        return np.zeros(len(a), dtype=bool)
    return (np.ptp(a, axis=1) > 0) & (np.ptp(b, axis=1) > 0)


def pearson_rows(a, b) -> np.ndarray:
    """Pearson's r of each row of `a` with the same row of `b` (both [rows, n]): float [rows],
    NaN where undefined, within [-1, 1]."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    out = np.full(len(a), np.nan)
    ok = _defined(a, b)
    if ok.any():  # the textbook formula per row (scipy's pearsonr on a row gives it to 1e-15)
        da = a[ok] - a[ok].mean(axis=1, keepdims=True)
        db = b[ok] - b[ok].mean(axis=1, keepdims=True)
        r = (da * db).sum(axis=1) / np.sqrt((da * da).sum(axis=1) * (db * db).sum(axis=1))
        out[ok] = np.clip(r, -1.0, 1.0)
    return out


def spearman_rows(a, b) -> np.ndarray:
    """Spearman's rank correlation of each row pair (ties take their average rank: Pearson's r
    of the ranks, as `scipy.stats.spearmanr`): float [rows], NaN where undefined."""
    a, b = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    return pearson_rows(stats.rankdata(a, axis=1), stats.rankdata(b, axis=1))  # constant ranks: constant values


def pearson(a, b) -> float:
    """Pearson's r of two equal-length vectors; NaN where undefined; within [-1, 1]."""
    return float(pearson_rows(np.reshape(a, (1, -1)), np.reshape(b, (1, -1)))[0])


def spearman(a, b) -> float:
    """Spearman's rank correlation (ties take their average rank); NaN where undefined."""
    return float(spearman_rows(np.reshape(a, (1, -1)), np.reshape(b, (1, -1)))[0])
