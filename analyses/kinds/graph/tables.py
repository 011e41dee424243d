"""The graph as tidy tables: `nodes`, `edges`, `logits`, `scores` (and, over a set, `recurring`).

Node ids are ours and unambiguous (circuit-tracer's own ids are written by `export.py`):
latent `L.latent@pos` (`1.517@13`), error `errL@pos` (`err0@5`), input token `tok@pos`, logit `logit:id`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from analyses.kinds.graph.attribution import Attribution
from analyses.kinds.graph.pruning import Pruned

NODE_TYPES = ("latent", "error", "token", "logit")


def node_ids(features: np.ndarray, graph: Attribution) -> list[str]:
    """Every node's id in node order. features [feature, 3]: (layer, pos, latent)."""
    ids = [f"{layer}.{latent}@{pos}" for layer, pos, latent in features.tolist()]
    ids += [f"err{layer}@{pos}" for layer in range(graph.n_layers) for pos in range(graph.n_pos)]
    ids += [f"tok@{pos}" for pos in range(graph.n_pos)]
    ids += [f"logit:{int(t)}" for t in graph.logit_ids]
    return ids


def nodes_table(features: np.ndarray, graph: Attribution, pruned: Pruned, token_ids: np.ndarray,
                token_texts: list[str], logit_texts: list[str]) -> pd.DataFrame:
    """One row per node (all of them; `kept` says which the pruned graph shows)."""
    nf, n_layers, n_pos = graph.n_features, graph.n_layers, graph.n_pos
    err_layer, err_pos = np.divmod(np.arange(n_layers * n_pos), n_pos)
    last = n_pos - 1
    frame = pd.DataFrame({
        "node": node_ids(features, graph),
        "type": np.repeat(NODE_TYPES, [nf, n_layers * n_pos, n_pos, graph.n_logits]),
        # logits sit above the last layer, tokens below the first (the page's rows)
        "layer": np.r_[features[:, 0], err_layer, np.full(n_pos, -1), np.full(graph.n_logits, n_layers)],
        "position": np.r_[features[:, 1], err_pos, np.arange(n_pos), np.full(graph.n_logits, last)],
        "latent": np.r_[features[:, 2], np.full(n_layers * n_pos + n_pos + graph.n_logits, -1)],
        "token_id": np.r_[token_ids[features[:, 1]], token_ids[err_pos], token_ids, graph.logit_ids],
        "token": [token_texts[p] for p in features[:, 1]] + [token_texts[p] for p in err_pos]
                 + list(token_texts) + list(logit_texts),
        "value": graph.values,
        "bias": graph.bias,
        "influence": pruned.node_influence,
        "cumulative": pruned.cumulative,
        "kept": pruned.node_mask,
    })
    frame["layer"] = frame["layer"].astype(int)
    return frame


def edges_table(ids: list[str], graph: Attribution, pruned: Pruned) -> pd.DataFrame:
    """The pruned graph's edges (sources into targets), strongest first."""
    targets, sources = np.nonzero(pruned.edge_mask)
    weights = graph.adjacency[targets, sources].astype(np.float64)
    order = np.argsort(-np.abs(weights), kind="stable")
    ids_array = np.asarray(ids, dtype=object)
    return pd.DataFrame({"source": ids_array[sources[order]], "target": ids_array[targets[order]],
                         "weight": weights[order]})


def logits_table(graph: Attribution, logit_texts: list[str], final_logits: np.ndarray) -> pd.DataFrame:
    """The logit nodes: each token's probability, logit, logit minus the mean logit (the node's
    value) and the part of it no edge carries (bias)."""
    start = graph.logit_start
    return pd.DataFrame({"token_id": graph.logit_ids.astype(int), "token": logit_texts,
                         "prob": graph.logit_probs.astype(np.float64),
                         "logit": final_logits[graph.logit_ids].astype(np.float64),
                         "value": graph.values[start:], "bias": graph.bias[start:]})


def recurring_table(nodes: pd.DataFrame, n_examples: int) -> pd.DataFrame:
    """Latents that appear in several examples' pruned graphs: in how many, and their mean
    influence over the examples where they are kept (and over all examples, 0 where absent)."""
    kept = nodes[(nodes["type"] == "latent") & nodes["kept"]]
    per = kept.groupby(["example", "layer", "latent"], as_index=False)["influence"].sum()
    grouped = per.groupby(["layer", "latent"], as_index=False).agg(
        n_examples=("example", "nunique"), mean_influence=("influence", "mean"),
        total_influence=("influence", "sum"))
    grouped["share_of_examples"] = grouped["n_examples"] / max(n_examples, 1)
    grouped["mean_influence_all"] = grouped.pop("total_influence") / max(n_examples, 1)
    return grouped.sort_values(["n_examples", "mean_influence_all"], ascending=False, ignore_index=True)
