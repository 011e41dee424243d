"""The sparsity kind's cost: the PPL-p% search (the curve's CETT grid, then a binary search per
p, each step one sparse forward over the text) against one plain forward over the same text."""
from __future__ import annotations

import torch

from analyses import AnalysisSpec
from analyses.kinds.sparsity import analysis
from analyses.kinds.sparsity.text import corpus_sample
from bench.common import row, timed


def sparsity_row(label, model, ref):
    bridge = model.bridge
    spec = AnalysisSpec(kind="sparsity", model=ref).with_defaults()
    batch = corpus_sample(bridge, spec.seed)
    t_search, result = timed(lambda: analysis.measure(bridge, spec, batch, lambda f, m: None), 1, 0)

    def forward():
        with torch.no_grad():
            bridge(batch.tokens)
    t_forward, _ = timed(forward)
    forwards = result.meta["forwards"]
    found = ", ".join(f"PPL-{r.p:g}% {100 * r.sparsity:.0f}%" for r in result.tables["summary"].itertuples())
    return row(f"sparsity: PPL-p% search (p = {spec.p}) / one forward, {label}", t_search, t_forward,
               t_search / t_forward, None, "report", None,
               f"{forwards} forwards of {batch.n_tokens} tokens (grid {len(analysis.CURVE_GRID)} + "
               f"searches), {t_search / forwards / t_forward:.1f}x a forward each with the thresholds; {found}")
