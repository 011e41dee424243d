"""Estimates with 95% intervals over a set's examples: the `<table>_summary` tables.

Each row says in its `interval` column which interval it has:
- "t": a plain mean, Student's t on the examples' values (exact quantile, n − 1 degrees of
  freedom), so a handful of examples gets the wide interval it deserves;
- "wilson": an accuracy (each example 0 or 1), Wilson's score interval (Wilson 1927), which
  stays inside [0, 1] and is not [1, 1] when every example is right, as a t interval is;
- "paired delta": a ratio of means over paired examples, mean(a) / mean(b) (patching's
  normalised mean, `analyses.core.restored`), by the delta method on each example's (a, b);
- "single": a quantity measured once per run (the same for every example): n = 1, no interval.
Torch-free: numpy, pandas and scipy's distributions.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pandas as pd
from scipy import stats

from analyses.core.catalogue import SUMMARY_COLUMNS

LEVEL = 0.95


@cache  # a set's summary asks it once per group (thousands), of a few distinct df
def t975(df: int) -> float:
    """The two-sided 95% Student t quantile for `df` degrees of freedom (nan below 1)."""
    return float(stats.t.ppf(0.5 + LEVEL / 2, df)) if df >= 1 else float("nan")


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _row(mean: float, sem: float, low: float, high: float, n: int, interval: str) -> dict[str, float]:
    return {"mean": mean, "sem": sem, "ci_low": low, "ci_high": high, "n": n, "interval": interval}


def mean_interval(values: np.ndarray) -> dict[str, float]:
    """mean, sem, Student-t ci_low and ci_high (95%), n of `values` (NaN dropped)."""
    values = _finite(values)
    n = len(values)
    mean = float(values.mean()) if n else float("nan")
    sem = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = t975(n - 1) * sem
    return _row(mean, sem, mean - half, mean + half, n, "t")


def proportion_interval(values: np.ndarray) -> dict[str, float]:
    """The share of `values` (each 0 or 1; NaN dropped) that are 1, with Wilson's 95% interval
    (scipy's `binomtest(...).proportion_ci(method="wilson")`); sem is the t row's, for reference."""
    values = _finite(values)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(f"an accuracy takes 0 or 1 per example, got {sorted(set(values) - {0.0, 1.0})[:3]}")
    n = len(values)
    if n == 0:
        return mean_interval(values) | {"interval": "wilson"}
    ci = stats.binomtest(int(values.sum()), n).proportion_ci(confidence_level=LEVEL, method="wilson")
    sem = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return _row(float(values.mean()), sem, float(ci.low), float(ci.high), n, "wilson")


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray) -> dict[str, float]:
    """R = mean(numerator) / mean(denominator) over paired examples ([example] each; a pair with
    a non-finite member dropped), with the delta method's 95% interval.

    R's linearisation is R + mean(a − R·b) / mean(b): its standard error is that of the mean of
    the residuals dᵢ = (aᵢ − R·bᵢ) / mean(b), sd(d)/√n, and the interval R ± t(n − 1)·se.
    Each example's a and b enter together, so what they share cancels. It holds while mean(b)
    is well clear of zero (patching refuses examples with no gap; tests hold it to a seeded
    percentile bootstrap over the examples); it is deterministic and cheap for thousands of
    groups, which a bootstrap is not."""
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    kept = np.isfinite(a) & np.isfinite(b)
    a, b = a[kept], b[kept]
    n = len(a)
    if n == 0:
        return _row(float("nan"), float("nan"), float("nan"), float("nan"), 0, "paired delta")
    ratio = float(a.mean() / b.mean())
    residuals = (a - ratio * b) / b.mean()  # [example] each one's influence on R
    sem = float(residuals.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    half = t975(n - 1) * sem
    return _row(ratio, sem, ratio - half, ratio + half, n, "paired delta")


def single_measurement(values: np.ndarray, name: str) -> dict[str, float]:
    """A quantity measured once per run and copied to every example: one measurement (n = 1,
    no interval), not n examples with no spread. Values that differ are refused."""
    values = _finite(values)
    if len(values) and not np.allclose(values, values[0], rtol=1e-9, atol=0):
        raise ValueError(f"{name} is summarised as measured once per run, yet it differs between "
                         f"examples ({values.min():.6g} to {values.max():.6g})")
    mean = float(values[0]) if len(values) else float("nan")
    return _row(mean, float("nan"), float("nan"), float("nan"), min(1, len(values)), "single")


def summarise(frame: pd.DataFrame, keys: list[str], statistic: Callable[[pd.DataFrame], dict]) -> pd.DataFrame:
    """One row per distinct `keys` (missing keys kept as their own group): `statistic` of the
    group's rows (a dict of SUMMARY_COLUMNS)."""
    rows = []
    for group, part in frame.groupby(keys, dropna=False, sort=False):
        group = group if isinstance(group, tuple) else (group,)
        rows.append({**dict(zip(keys, group)), **statistic(part)})
    return pd.DataFrame(rows, columns=[*keys, *SUMMARY_COLUMNS])


def summarise_means(frame: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """`summarise` with `mean_interval` of column `value`, every group at once (one grouped
    count, mean and standard deviation, and one vector of t quantiles) instead of a Python
    call per group: a set's neuron table has a thousand groups. Same rows, same order (first
    seen), same numbers to float rounding."""
    values = frame[value].astype(float)
    values = values.where(np.isfinite(values))  # as mean_interval: non-finite values are dropped
    grouped = values.groupby([frame[k] for k in keys], dropna=False, sort=False)
    moments = grouped.agg(["count", "mean", "std"])  # std: ddof 1, NaN below two values
    n = moments["count"].to_numpy()
    sem = moments["std"].to_numpy() / np.sqrt(n)
    half = stats.t.ppf(0.5 + LEVEL / 2, np.where(n > 1, n - 1, np.nan)) * sem
    mean = moments["mean"].to_numpy()
    index = moments.index
    found = index.to_frame(index=False, name=keys if isinstance(index, pd.MultiIndex) else keys[0])
    return found.assign(mean=mean, sem=sem, ci_low=mean - half, ci_high=mean + half, n=n.astype(int),
                        interval="t")[[*keys, *SUMMARY_COLUMNS]]
