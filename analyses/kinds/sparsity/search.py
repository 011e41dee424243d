"""The binary search on CETT for PPL-p% sparsity (Luo et al. 2025): the one CETT value, shared
by every layer, at which zeroing each layer's neurons below its threshold raises perplexity by
p%. Perplexity rises with CETT (more of every MLP's output is cut), so bisection brackets it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

TOLERANCE = 1e-3  # the bracket on CETT the search narrows to at least (issue 29)
PRECISION = 0.1  # percentage points: past TOLERANCE, bisect on until the increase is this near p
FLOOR = 1e-6  # ... but never below this bracket (the paper's own tolerance): the curve can jump


@dataclass(frozen=True)
class Found:
    cett: float  # the bracket's lower end: its measured increase is below p (0 if none was)
    upper: float  # the bracket's upper end: its increase reached p (1.0 if none did)
    increase: float  # the increase (%) at `cett` (0 at CETT 0: nothing zeroed)
    steps: int  # evaluations made (each one sparse forward over the text)
    tried: tuple[tuple[float, float], ...]  # (cett, increase %) in the order tried


def search_cett(increase: Callable[[float], float], p: float, lower: float = 0.0, upper: float = 1.0,
                lower_increase: float = 0.0, tolerance: float = TOLERANCE, precision: float = PRECISION,
                floor: float = FLOOR) -> Found:
    """The largest CETT whose perplexity increase `increase(cett)` (in %) stays below `p`, with
    the bracket narrowed to `tolerance` and then on until the increase is within `precision` of
    p (or the bracket is `floor` wide; or never, when no CETT below 1 reached p). As the paper's
    code: `increase(mid) < p` moves the lower end up, else the upper end down; unlike it, the
    lower end is reported, not the midpoint, so the reported thresholds raise perplexity by less
    than p% on the text searched.
    `lower`, `upper` (with the increase at `lower`): a bracket already measured."""
    tried = []
    # past `tolerance` only while some CETT is known to reach p (an upper end below 1)
    while upper - lower > floor and (upper - lower > tolerance or (upper < 1.0 and p - lower_increase > precision)):
        mid = (lower + upper) / 2
        value = increase(mid)
        tried.append((mid, value))
        if value < p:
            lower, lower_increase = mid, value
        else:
            upper = mid
    return Found(lower, upper, lower_increase, len(tried), tuple(tried))
