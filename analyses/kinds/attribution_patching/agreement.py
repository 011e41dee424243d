"""How well an estimate (AtP, AtP*, RelP) agrees with exact patching, node kind by node kind:
for one example (`agreement`), or for many that share their nodes at once (`agreements`:
the examples of a prompt set's batch, as [example, node] arrays)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.core.catalogue import CATALOGUE
from analyses.kinds.correlation import pearson_rows, spearman_rows

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
    return agreements(nodes.node.to_numpy(), nodes.atp.to_numpy()[None], nodes.exact.to_numpy()[None],
                      magnitude)[0]


def agreements(kinds: np.ndarray, atp: np.ndarray, exact: np.ndarray, magnitude: bool) -> list[pd.DataFrame]:
    """`agreement` of examples that share their nodes (`kinds`: [node], each node's kind;
    `atp`, `exact`: [example, node]): one table per example, its node kinds in order of first
    appearance, then "all"."""
    target = _tied_at_zero(np.abs(exact) if magnitude else np.asarray(exact, dtype=np.float64))
    estimate = _tied_at_zero(np.asarray(atp, dtype=np.float64))
    names = [*pd.unique(kinds), "all"]
    columns: dict[str, list[np.ndarray]] = {name: [] for name in AGREEMENT_COLUMNS[1:]}
    for name in names:
        mine = np.ones(len(kinds), dtype=bool) if name == "all" else np.asarray(kinds) == name
        a, e = estimate[:, mine], target[:, mine]  # [example, nodes of this kind]
        columns["pearson"].append(pearson_rows(a, e))
        columns["spearman"].append(spearman_rows(a, e))
        columns["top10_overlap"].append(_top_overlap(a, e, min(TOP, int(mine.sum()))))
        columns["n_nodes"].append(np.full(len(a), int(mine.sum())))
        columns["n_signal"].append((e != 0).sum(1))
    stacked = {column: np.stack(parts, axis=1) for column, parts in columns.items()}  # [example, name]
    return [pd.DataFrame({"node": names, **{column: values[i] for column, values in stacked.items()}},
                         columns=AGREEMENT_COLUMNS)
            for i in range(len(estimate))]


def _tied_at_zero(values: np.ndarray, tolerance: float = SIGNAL_TOLERANCE) -> np.ndarray:
    """`tied_at_zero` of an array (NaN, like noise, to 0)."""
    return np.where(np.abs(values) >= tolerance, values, 0.0)


def _top_overlap(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """[example]: the share of the k largest |b| among the k largest |a| of each row (ties
    go to the earlier node, as pandas' `nlargest`); NaN where k is 0."""
    if k == 0:
        return np.full(len(a), np.nan)
    rows = np.arange(len(a))[:, None]
    top_a, top_b = np.zeros(a.shape, dtype=bool), np.zeros(b.shape, dtype=bool)
    top_a[rows, np.argsort(-np.abs(a), axis=1, kind="stable")[:, :k]] = True
    top_b[rows, np.argsort(-np.abs(b), axis=1, kind="stable")[:, :k]] = True
    return (top_a & top_b).sum(1) / k
