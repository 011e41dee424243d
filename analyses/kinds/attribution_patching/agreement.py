"""How well an estimate (AtP, AtP*, RelP) agrees with exact patching, node kind by node kind."""
from __future__ import annotations

import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.kinds.correlation import pearson, spearman

AGREEMENT_COLUMNS = CATALOGUE["attribution_patching"].tables["agreement"]
TOP = 10
# |effect| below which a node's atp or exact value is float noise, in logit-difference units:
# float32 patching reproduces a no-op to ~1e-6, and on the embedded model's IOI pair 60% of
# nodes have |exact| < 1e-5, so ranking them by their noise moved Spearman by ±0.05.
SIGNAL_TOLERANCE = 1e-4


def tied_at_zero(values: pd.Series, tolerance: float = SIGNAL_TOLERANCE) -> pd.Series:
    """`values` with every |value| below `tolerance` set to exactly 0: nodes whose effect is
    float noise tie at zero, so their ranks (and a rank correlation) do not follow the noise."""
    return values.where(values.abs() >= tolerance, 0.0)


def agreement(nodes: pd.DataFrame, magnitude: bool) -> pd.DataFrame:
    """Per node kind and for all nodes: how well `atp` ranks and tracks `exact`, with values
    under `SIGNAL_TOLERANCE` tied at zero, and how many nodes carry signal (|exact| at or
    above it): a correlation over few such nodes says little. NaN where a side is constant."""
    target = tied_at_zero(nodes.exact.abs() if magnitude else nodes.exact)
    estimate = tied_at_zero(nodes.atp)
    rows = []
    for kind, group in [*nodes.groupby("node", sort=False), ("all", nodes)]:
        atp, exact = estimate.loc[group.index], target.loc[group.index]
        k = min(TOP, len(group))
        top_atp = set(atp.abs().nlargest(k).index)
        top_exact = set(exact.abs().nlargest(k).index)
        rows.append({"node": kind, "pearson": pearson(atp, exact), "spearman": spearman(atp, exact),
                     "top10_overlap": len(top_atp & top_exact) / k if k else float("nan"),
                     "n_nodes": len(group), "n_signal": int((exact != 0).sum())})
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)
