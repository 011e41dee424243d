"""Means with 95% intervals over a set's examples: the `<table>_summary` tables.

The interval is Student's t on the examples' values (n − 1 degrees of freedom), so a handful
of examples gets the wide interval it deserves. Torch-free: plain numpy and pandas.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# t such that P(|T| <= t) = 0.95 for 1..30 degrees of freedom, then a few more; between
# the listed ones the next smaller df's value is used (a slightly wider interval, never narrower)
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
         18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060,
         26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
Z975 = 1.960
SUMMARY_COLUMNS = ("mean", "sem", "ci_low", "ci_high", "n")


def t975(df: int) -> float:
    """The two-sided 95% Student t quantile for `df` degrees of freedom (nan below 1)."""
    if df < 1:
        return float("nan")
    if df > 120:
        return Z975 if df > 1000 else _T975[120]
    return _T975[max(k for k in _T975 if k <= df)]


def mean_interval(values: np.ndarray) -> dict[str, float]:
    """mean, sem, ci_low, ci_high (95%) and n of `values` (NaN dropped)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    sem = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = t975(n - 1) * sem
    return {"mean": mean, "sem": sem, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def summarise(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """One row per distinct `keys` (missing keys kept as their own group): the mean of
    `value` over the examples, with its interval."""
    rows = []
    for group, part in frame.groupby(keys, dropna=False, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        rows.append({**dict(zip(keys, group)), **mean_interval(part[value].to_numpy())})
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY_COLUMNS])
