"""The nodes attribution patching scores: which hook each kind reads, and their table rows."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class NodeKind:
    site: str  # the activation_patching granularity that patches one such node exactly
    hook: str  # hook name with a {layer} field


NODE_KINDS: dict[str, NodeKind] = {
    "resid": NodeKind("resid_pre", "blocks.{layer}.hook_resid_pre"),
    "head": NodeKind("head_out_by_pos", "blocks.{layer}.attn.hook_z"),
    "mlp": NodeKind("mlp_out", "blocks.{layer}.hook_mlp_out"),
    "q": NodeKind("head_q_by_pos", "blocks.{layer}.attn.hook_q"),
    "k": NodeKind("head_k_by_pos", "blocks.{layer}.attn.hook_k"),
    "v": NodeKind("head_v_by_pos", "blocks.{layer}.attn.hook_v"),
}
PATTERN = "blocks.{layer}.attn.hook_pattern"
SCORES = "blocks.{layer}.attn.hook_attn_scores"


def hook_of(kind: str, layer: int, n_layers: int) -> str:
    """The hook a node reads; the final residual stream is the last block's resid_post."""
    if kind == "resid" and layer == n_layers:
        return f"blocks.{n_layers - 1}.hook_resid_post"
    return NODE_KINDS[kind].hook.format(layer=layer)


def node_frame(kind: str, layer: int, score: np.ndarray) -> pd.DataFrame:
    """score: [pos] or [pos, head] -> one row per node, position-major."""
    n_pos = score.shape[0]
    if score.ndim == 1:
        position, head = np.arange(n_pos), np.full(n_pos, -1)
    else:
        grid = np.meshgrid(np.arange(n_pos), np.arange(score.shape[1]), indexing="ij")
        position, head = (a.ravel() for a in grid)
    return pd.DataFrame({"node": kind, "layer": layer, "position": position, "head": head,
                         "atp": score.ravel().astype(np.float64)})
