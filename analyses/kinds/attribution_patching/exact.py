"""Exact activation patching of every node attribution patching scores, on the batched
patching engine (`patching/engine.py`): the reference its estimates are held to."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.core.progress import Progress, silent
from analyses.kinds.attribution_patching.nodes import NODE_KINDS
from analyses.kinds.patching.engine import GRANULARITIES, Patcher

# every site a node kind patches at, and the final residual stream
SITES = tuple(GRANULARITIES[name] for name in (*(k.site for k in NODE_KINDS.values()), "resid_post"))


def exact_effects(patcher: Patcher, nodes: pd.DataFrame, progress: Progress = silent,
                  span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Each node's exact patching effect (patched - corrupted logit difference), [n], for a
    single-pair patcher."""
    if patcher.n_examples != 1:
        raise ValueError(f"this patcher holds {patcher.n_examples} examples: use exact_effects_examples")
    return exact_effects_examples(patcher, nodes, progress, span)[0]


def exact_effects_examples(patcher: Patcher, nodes: pd.DataFrame, progress: Progress = silent,
                           span: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Each node's exact patching effect in every example the patcher holds (pairs of one
    token length, so the same nodes): [example, n]."""
    out = np.full((patcher.n_examples, len(nodes)), np.nan)
    n_layers = patcher.n_layers
    groups = []
    for kind in NODE_KINDS:
        mine = nodes.node.to_numpy() == kind
        if kind == "resid":
            final = mine & (nodes.layer.to_numpy() == n_layers)
            groups.append((GRANULARITIES["resid_pre"], mine & ~final, 0))
            groups.append((GRANULARITIES["resid_post"], final, -1))  # resid_post of the last block
        else:
            groups.append((GRANULARITIES[NODE_KINDS[kind].site], mine, 0))
    total, done = int(sum(rows.sum() for _, rows, _ in groups)), 0
    lo, hi = span
    corrupted = np.asarray(patcher.corrupted_baselines)[:, None]  # [example, 1]
    for site, rows, shift in groups:
        if not rows.any():
            continue
        cells = nodes.loc[rows, ["layer", "position", "head"]].to_numpy(dtype=np.int64, copy=True)
        cells[:, 0] += shift
        part = (lo + (hi - lo) * done / total, lo + (hi - lo) * (done + len(cells)) / total)
        out[:, rows] = patcher.patch_examples(site, cells, progress, part) - corrupted
        done += len(cells)
    return out
