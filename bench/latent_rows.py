"""Rows for a dictionary's latents: AtP over every latent and error node of one shipped
dictionary against one forward pass with cache, and exact patching of all those nodes (one
batched patched run per node) against that forward pass per node."""
from __future__ import annotations

from analyses import AnalysisSpec
from analyses.kinds import attribution_patching
from bench.common import row, timed
from bench.speed import forward_with_cache

SITE = "blocks.1.hook_resid_post"


def latent_attribution_rows(label, model, ref, pair):
    bridge = model.bridge
    spec = AnalysisSpec(kind="attribution_patching", model=ref, exact=False, dictionary=SITE, **pair)
    t_atp, result = timed(lambda: attribution_patching.run(model, spec))
    tokens = bridge.to_tokens(pair["corrupted"])
    t_fwd = forward_with_cache(bridge, tokens)
    n_nodes = len(result.tables["latents"])
    with_exact = AnalysisSpec(kind="attribution_patching", model=ref, exact=True, dictionary=SITE, **pair)
    t_exact, _ = timed(lambda: attribution_patching.run(model, with_exact), repeats=1)
    ratio, per_node = t_atp / t_fwd, (t_exact - t_atp) / n_nodes
    return [
        row(f"AtP over latents ({SITE}) / forward, {label}", t_atp, t_fwd, ratio, None,
            "<= 4x a forward with cache", ratio <= 4,
            f"{int(tokens.shape[1])} tokens, {n_nodes} latent and error nodes; reference = one run_with_cache"),
        row(f"exact patching of every latent node, per node / forward, {label}", per_node, t_fwd,
            per_node / t_fwd, None, "report", None,
            f"{n_nodes} nodes batched 64 to a forward; (AtP with exact − AtP alone) / nodes"),
    ]
