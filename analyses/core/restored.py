"""Wang et al. 2022's normalisation of a patching metric (IOI, arXiv:2211.00593): the share
of the clean − corrupted gap that a patch restores,

    (patched − corrupted) / (clean − corrupted)

so the corrupted run scores 0 and the clean run 1. Written here once: the patching engine
normalises each example with it, a prompt set's summary and a circuit's faithfulness normalise
the examples' means with it, and a set's summary gives that ratio of means its paired interval.
"""
from __future__ import annotations

import math

import numpy as np

from analyses.core.summary import ratio_interval


def share_restored(patched, clean, corrupted):
    """(patched − corrupted) / (clean − corrupted), elementwise (numbers or arrays that broadcast)."""
    return (np.asarray(patched) - corrupted) / (clean - corrupted)  # scalars stay weak: float32 in, float32 out


def has_gap(clean: float, corrupted: float) -> bool:
    """Whether clean and corrupted differ by more than float rounding: without a gap there is
    nothing to restore and the share is not defined."""
    gap = clean - corrupted
    return math.isfinite(gap) and abs(gap) > 1e-6 * max(1.0, abs(clean), abs(corrupted))


def mean_share_restored(patched: np.ndarray, clean: np.ndarray, corrupted: np.ndarray) -> dict:
    """(mean patched − mean corrupted) / (mean clean − mean corrupted) over examples, each
    example's three values paired ([example] each; an example with a non-finite one is left
    out), with the paired delta-method interval of `summary.ratio_interval`.

    Pairing matters: an example's baselines move with its patched value (a prompt with a large
    logit difference has large all three), so mapping the interval of the mean patched value
    through the mean baselines, as if these were exact, overstates the uncertainty many-fold."""
    patched, clean, corrupted = (np.asarray(x, dtype=float) for x in (patched, clean, corrupted))
    return ratio_interval(patched - corrupted, clean - corrupted)
