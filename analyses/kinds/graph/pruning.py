"""Influence on the logits, pruning, and the graph's scores (circuit-tracer's definitions).

- normalised adjacency: |A| with each target's row divided by its sum, so a row says what
  share of the target's (absolute) input each source gives;
- influence of a node: the logit-probability-weighted sum over every path from it to the
  logits of the products of normalised edges: w A + w A^2 + ... (w: the logit probabilities);
- pruning: keep the nodes that hold `node_threshold` of the total influence (tokens and logits
  always), the edges (scored by normalised weight x the target's influence + logit weight)
  that hold `edge_threshold` of theirs, at most `max_features` latents, and drop latents and
  errors left without an outgoing edge, latents without an incoming one, until none change;
- replacement score: of the influence reaching the logits from tokens and errors, the share
  that starts at tokens (every path from a token ends at the logits through latents and the
  frozen stream; an error's influence is what the transcoders failed to explain);
- completeness score: each node's share of non-error input, weighted by its influence
  (plus its logit weight), summed over nodes.
The pruned graph's scores read a graph where each dropped latent is folded into the error
node of its layer and position (what is not shown is unexplained), as Neuronpedia's subgraph
scores do.

Everything is numpy over the dense [node, node] matrix: graphs here have a few thousand nodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """Where each kind of node starts in the node order (latents, errors, tokens, logits)."""

    n_features: int
    n_errors: int
    n_tokens: int
    n_logits: int

    @property
    def token_start(self) -> int:
        return self.n_features + self.n_errors

    @property
    def logit_start(self) -> int:
        return self.token_start + self.n_tokens

    @property
    def n_nodes(self) -> int:
        return self.logit_start + self.n_logits

    def logit_weights(self, probs: np.ndarray) -> np.ndarray:
        weights = np.zeros(self.n_nodes)
        weights[self.logit_start:] = probs
        return weights


def normalized(adjacency: np.ndarray) -> np.ndarray:
    absolute = np.abs(adjacency.astype(np.float64))
    return absolute / np.maximum(absolute.sum(1, keepdims=True), 1e-10)


def influence(normal: np.ndarray, weights: np.ndarray, max_iter: int = 1000) -> np.ndarray:
    """w A + w A^2 + ...: the graph is a DAG, so the series ends after its depth."""
    current = weights @ normal
    total = current.copy()
    for _ in range(max_iter):
        if not current.any():
            return total
        current = current @ normal
        total += current
    raise RuntimeError(f"influence did not converge in {max_iter} steps: the graph has a cycle")


def threshold_of(scores: np.ndarray, keep: float) -> float:
    """The score above which the largest scores hold `keep` of the total."""
    ordered = np.sort(scores.ravel())[::-1]
    total = ordered.sum()
    if total <= 0:
        return float("inf")
    cumulative = np.cumsum(ordered) / total
    index = min(int(np.searchsorted(cumulative, keep)), len(ordered) - 1)
    return float(ordered[index])


@dataclass(frozen=True)
class Pruned:
    node_mask: np.ndarray  # [node] bool
    edge_mask: np.ndarray  # [node, node] bool
    node_influence: np.ndarray  # [node] influence on the logits (full graph)
    cumulative: np.ndarray  # [node] share of total influence held by nodes at least as influential


def prune(adjacency: np.ndarray, layout: Layout, probs: np.ndarray, node_threshold: float = 0.8,
          edge_threshold: float = 0.98, max_features: int | None = None) -> Pruned:
    for name, value in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {value}")
    weights = layout.logit_weights(probs)
    node_influence = influence(normalized(adjacency), weights)
    node_mask = node_influence >= threshold_of(node_influence, node_threshold)
    if max_features is not None:  # the cap: the most influential latents only
        feature_rank = np.argsort(-node_influence[:layout.n_features], kind="stable")
        node_mask[feature_rank[max_features:]] = False
    node_mask[layout.token_start:] = True
    kept = adjacency.copy()
    kept[~node_mask] = 0
    kept[:, ~node_mask] = 0
    normal = normalized(kept)
    edge_scores = normal * (influence(normal, weights) + weights)[:, None]
    edge_mask = edge_scores >= threshold_of(edge_scores, edge_threshold)
    edge_mask &= kept != 0
    upstream, nf = layout.token_start, layout.n_features
    while True:  # drop what has lost its outgoing (or, for latents, incoming) edges
        before = node_mask.copy()
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[:upstream] &= edge_mask[:, :upstream].any(0)
        node_mask[:nf] &= edge_mask[:nf].any(1)
        if (node_mask == before).all():
            break
    order = np.argsort(-node_influence, kind="stable")
    cumulative = np.empty_like(node_influence)
    total = node_influence.sum()
    cumulative[order] = np.cumsum(node_influence[order]) / (total if total > 0 else 1.0)
    return Pruned(node_mask, edge_mask, node_influence, cumulative)


def scores(adjacency: np.ndarray, layout: Layout, probs: np.ndarray) -> tuple[float, float]:
    """(replacement score, completeness score) of a graph (see the module docstring)."""
    weights = layout.logit_weights(probs)
    normal = normalized(adjacency)
    node_influence = influence(normal, weights)
    errors = slice(layout.n_features, layout.token_start)
    tokens = slice(layout.token_start, layout.logit_start)
    token_part, error_part = node_influence[tokens].sum(), node_influence[errors].sum()
    replacement = token_part / (token_part + error_part) if token_part + error_part > 0 else 0.0
    non_error = 1.0 - normal[:, errors].sum(1)
    out = node_influence + weights
    completeness = (non_error * out).sum() / out.sum()
    return float(replacement), float(completeness)


def folded(adjacency: np.ndarray, layout: Layout, feature_layer_pos: np.ndarray, n_pos: int,
           keep: np.ndarray) -> np.ndarray:
    """The graph with every latent not in `keep` folded into the error node of its (layer,
    position): its outgoing edges added to that error's, its own row and column emptied.
    feature_layer_pos [feature, 2]: (layer, pos) of each latent; keep [feature] bool."""
    out = adjacency.astype(np.float64).copy()
    dropped = np.nonzero(~keep)[0]
    error_of = layout.n_features + feature_layer_pos[dropped, 0] * n_pos + feature_layer_pos[dropped, 1]
    np.add.at(out.T, error_of, out.T[dropped])  # columns: sources
    out[:, dropped] = 0
    out[dropped] = 0
    return out
