"""Attribution patching, AtP (Nanda 2023; Kramár et al. 2024): estimate every node's activation
patching effect at once, from one forward and one backward pass:

    atp(n) = (n(clean) - n(corrupted)) . d metric / d n   (gradient on the corrupted run)

the first-order Taylor expansion of patching node n from corrupted to clean (denoising, as in
`activation_patching`); `gradient=clean` takes the gradient on the clean run instead (the
effect of corrupting n in the clean run, in the same sign). The metric is the logit
difference `answer - wrong` at the last position. Nodes (table `attributions`, `head` /
`position` -1 where they do not apply):

- `resid`: the residual stream entering block `layer` at one position (`hook_resid_pre`);
  `layer == n_layers` is the final residual stream (the last block's `hook_resid_post`);
- `head`: one head's output at one position (`attn.hook_z`);
- `mlp`: one MLP's output at one position (`hook_mlp_out`);
- `q`, `k`, `v`: one head's query, key or value vector at one position (`attn.hook_q/k/v`;
  on grouped-query models `head` of a `k` / `v` node counts key/value heads).

Units: `atp` and `exact` are both changes of the raw logit difference (`exact` from the
batched patching engine, `patching/engine.py`), not the normalised `value` of that analysis.
`exact` is computed when the spec sets `exact=1`, or when it leaves `exact` unset and there are
at most `AUTO_EXACT_NODES` nodes (one patched run per node); otherwise, or with `exact=0`, it
is NaN and there is no `agreement` table. `agreement` holds, per node kind and for all nodes,
the Pearson and Spearman correlations of `atp` with `exact` and the share of the 10 largest
|exact| nodes among the 10 largest |atp|, after values under `SIGNAL_TOLERANCE` (1e-4) are
tied at zero; `n_signal` counts the nodes whose |exact| reaches it.

One job per module: `nodes` (what is scored, where), `atp` (the gradient pass and the
estimates), `qk_fix` and `graddrop` (AtP*'s two fixes), `exact` (exact patching of the same
nodes), `agreement` (the comparison), `analysis` (the kind's `run`).
"""
from analyses.kinds.attribution_patching.agreement import (
    AGREEMENT_COLUMNS,
    SIGNAL_TOLERANCE,
    agreement,
    tied_at_zero,
)
from analyses.kinds.attribution_patching.analysis import (
    ATTRIBUTION_COLUMNS,
    AUTO_EXACT_NODES,
    LATENT_COLUMNS,
    run,
    run_examples,
)
from analyses.kinds.attribution_patching.atp import Attribution, NodeEstimates, attribute, gradients, node_scores
from analyses.kinds.attribution_patching.exact import exact_effects
from analyses.kinds.attribution_patching.nodes import NODE_KINDS
from analyses.kinds.attribution_patching.qk_fix import key_patch_effects, qk_fixed_scores

__all__ = ["AGREEMENT_COLUMNS", "ATTRIBUTION_COLUMNS", "AUTO_EXACT_NODES", "LATENT_COLUMNS", "NODE_KINDS",
           "SIGNAL_TOLERANCE",
           "Attribution", "NodeEstimates", "agreement", "attribute", "exact_effects", "gradients",
           "key_patch_effects", "node_scores", "qk_fixed_scores", "run", "run_examples", "tied_at_zero"]
