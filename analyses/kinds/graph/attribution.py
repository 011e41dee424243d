"""Edges of the attribution graph: the frozen replacement's direct effects, by backward passes.

With patterns and norm scales frozen and each MLP's output cut off from its input (the MLP
outputs and the input embeddings are leaves of the autograd graph), the gradient of a target's
read — a latent's encoder pre-activation W_enc[f] . mlp_in[L, p], or a logit minus the mean
logit, as circuit-tracer reads logits — with respect to a leaf holds only *direct* paths: through
the residual stream, the attention OV circuits and the transcoders' linear skips (where they
have one: x @ W_skip.T is linear, so circuit-tracer keeps it in the replacement), never through
another MLP's nonlinearity or latent. So

    edge(source -> target) = source value x (source's write direction . d target / d leaf)

with the write direction a latent's decoder row (value: its activation), an error term itself
(value 1), an input embedding itself (value 1). Many targets share one forward: the prompt is
repeated along the batch and each batch row carries one target's read direction as its
gradient. What the edges do not carry (transcoder and attention biases, norm biases, b_enc,
b_U) is the target's `bias`: incoming edges + bias = the target's value, exactly.

Node order, as circuit-tracer's: latents, errors (layer-major, then position), input tokens,
logits. `adjacency[target, source]`: rows are targets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from analyses.core.progress import Progress, silent
from analyses.kinds.graph.replacement import Prompt, decoder_writes, run_frozen

BATCH = 256  # targets per backward pass: one forward of the prompt repeated this many times


@dataclass(frozen=True)
class Attribution:
    adjacency: np.ndarray  # [node, node] float32, rows targets, columns sources
    values: np.ndarray  # [node]: latents' activations, 1 for errors and tokens, logit - mean logit
    bias: np.ndarray  # [node]: each target's value minus its incoming edges (0 for sources only)
    logit_ids: np.ndarray  # [logit] token ids of the logit nodes
    logit_probs: np.ndarray  # [logit] their probabilities
    n_features: int
    n_layers: int
    n_pos: int
    passes: int  # forward+backward passes run (each on BATCH copies of the prompt)

    @property
    def n_logits(self) -> int:
        return len(self.logit_ids)

    @property
    def error_start(self) -> int:
        return self.n_features

    @property
    def token_start(self) -> int:
        return self.n_features + self.n_layers * self.n_pos

    @property
    def logit_start(self) -> int:
        return self.token_start + self.n_pos


def top_logits(logits: Float[Tensor, "vocab"], coverage: float = 0.95, most: int = 10  # noqa: F821
               ) -> tuple[np.ndarray, np.ndarray]:
    """The most likely next tokens until their probability reaches `coverage` (at most `most`)."""
    probs = torch.softmax(logits.double(), -1)
    top = torch.topk(probs, min(most, probs.numel()))
    needed = int(torch.searchsorted(torch.cumsum(top.values, 0), torch.tensor(coverage, dtype=probs.dtype))) + 1
    n = min(needed, len(top.values))
    return top.indices[:n].numpy(), top.values[:n].float().numpy()


def _batches(feature_layers: Tensor, n_logits: int, size: int) -> list[Tensor]:
    """Target indices in passes: latents of one layer together (in node order, so a pass stops
    at its layer), then the logits (targets n_features...)."""
    n_features = len(feature_layers)
    batches = []
    for layer in torch.unique(feature_layers).tolist():
        of_layer = (feature_layers == layer).nonzero().squeeze(1)
        batches += list(of_layer.split(size))
    batches.append(torch.arange(n_features, n_features + n_logits))
    return batches


def _target_reads(prompt: Prompt, coders, targets: Tensor, n_features: int, logit_ids: np.ndarray,
                  vocab: int, n_reads: int) -> tuple[list[Tensor], Tensor | None]:
    """Gradient seeds for one pass: per layer read [batch, pos, d_model] on each MLP's input (a
    latent's encoder row at its position), and [batch, pos, vocab] on the logits (None when
    the pass has no logit target)."""
    batch, n_pos = len(targets), prompt.n_pos
    d_model = coders[0].cfg.d_in
    seeds = [torch.zeros(batch, n_pos, d_model) for _ in range(n_reads)]
    logit_seed = torch.zeros(batch, n_pos, vocab) if (targets >= n_features).any() else None
    for row, target in enumerate(targets.tolist()):
        if target < n_features:
            layer, pos, latent = prompt.features[target].tolist()
            seeds[layer][row, pos] = coders[layer].encoder.weight[latent].float()
        else:
            logit_seed[row, -1] = -1.0 / vocab  # logit minus the mean logit
            logit_seed[row, -1, int(logit_ids[target - n_features])] += 1.0
    return seeds, logit_seed


def _edge_rows(prompt: Prompt, coders, grad_embed: Tensor, grad_mlp: list[Tensor | None]
               ) -> Float[Tensor, "batch source"]:
    """Edge weights from every source into each batch row's target, in node order up to the
    logits: latents, errors, tokens. grad_embed [batch, pos, d]; grad_mlp[L] [batch, pos, d]
    or None where no target of the pass reads layer L's output."""
    src = prompt.sources
    batch, n_pos = grad_embed.shape[:2]
    feature_edges = grad_embed.new_zeros(batch, len(prompt.features))
    error_edges = grad_embed.new_zeros(batch, len(coders), n_pos)
    for layer, (coder, grad) in enumerate(zip(coders, grad_mlp)):
        if grad is None:
            continue
        error_edges[:, layer] = (grad * src.errors[layer]).sum(-1)
        mask = (prompt.features[:, 0] == layer).nonzero().squeeze(1)
        if len(mask) == 0:
            continue
        pos, latent = prompt.features[mask, 1], prompt.features[mask, 2]
        # [batch, pos, feature_L]: the gradient read along each latent's decoder row, then
        # each latent's own position
        along = grad @ coder.W_dec[latent].float().T
        feature_edges[:, mask] = along[:, pos, torch.arange(len(mask))] * src.acts[mask]
    token_edges = (grad_embed * src.embeddings).sum(-1)  # [batch, pos]
    return torch.cat([feature_edges, error_edges.flatten(1), token_edges], dim=1)


def attribute(bridge, prompt: Prompt, coders, coverage: float = 0.95, most_logits: int = 10,
              batch_size: int = BATCH, progress: Progress = silent) -> Attribution:
    """Every edge of the graph of `prompt` (see the module docstring)."""
    n_features, n_layers, n_pos = len(prompt.features), len(coders), prompt.n_pos
    logit_ids, logit_probs = top_logits(prompt.logits[-1], coverage, most_logits)
    vocab = prompt.logits.shape[-1]
    n_targets = n_features + len(logit_ids)
    n_nodes = n_features + n_layers * n_pos + n_pos + len(logit_ids)
    adjacency = np.zeros((n_nodes, n_nodes), dtype=np.float32)
    src = prompt.sources
    # the leaves' values: each layer's decoder writes + error (the MLP output on the prompt)
    mlp_values = (decoder_writes(prompt, coders, src.acts[None])[0] + src.errors).detach()
    passes, done = 0, 0
    for targets in _batches(prompt.features[:, 0], len(logit_ids), batch_size):
        batch = len(targets)
        top = int(targets.max())
        # a pass of latents only stops at the last layer it reads
        stop = int(prompt.features[top, 0]) if top < n_features else None
        embed_leaf = src.embeddings.expand(batch, -1, -1).clone().requires_grad_(True)
        mlp_leaves = [mlp_values[layer].expand(batch, -1, -1).clone().requires_grad_(True)
                      for layer in range(n_layers)]
        reads: list[Tensor] = []
        logits = run_frozen(bridge, prompt, coders, batch_acts=src.acts[None].expand(batch, -1),
                            keep_graph=True, mlp_out_leaves=mlp_leaves, embedding_leaf=embed_leaf,
                            read_mlp_in=reads, stop_after=stop)
        seeds, logit_seed = _target_reads(prompt, coders, targets, n_features, logit_ids, vocab, len(reads))
        outputs, seeds = (reads, seeds) if logit_seed is None else ([logits], [logit_seed])
        grads = torch.autograd.grad(outputs, [embed_leaf, *mlp_leaves], grad_outputs=seeds, allow_unused=True)
        with torch.no_grad():
            rows = _edge_rows(prompt, coders, grads[0], list(grads[1:])).numpy()
        rows_at = np.where(targets.numpy() < n_features, targets.numpy(),
                           targets.numpy() - n_features + n_nodes - len(logit_ids))
        adjacency[rows_at, :n_nodes - len(logit_ids)] = rows
        passes += 1
        done += batch
        progress(0.1 + 0.8 * done / n_targets, f"edges into {done} of {n_targets} targets")
    values = _node_values(prompt, n_layers, logit_ids)
    bias = np.zeros(n_nodes, dtype=np.float64)
    targets_at = np.r_[np.arange(n_features), np.arange(n_nodes - len(logit_ids), n_nodes)]
    bias[targets_at] = values[targets_at] - adjacency[targets_at].astype(np.float64).sum(1)
    return Attribution(adjacency=adjacency, values=values, bias=bias, logit_ids=logit_ids,
                       logit_probs=logit_probs, n_features=n_features, n_layers=n_layers,
                       n_pos=n_pos, passes=passes)


def _node_values(prompt: Prompt, n_layers: int, logit_ids: np.ndarray) -> np.ndarray:
    """Each node's value: a latent's activation, 1 for an error or token (its edges carry it
    whole), a logit node's logit minus the mean logit at the last position."""
    last = prompt.logits[-1].double()
    logit_values = (last[torch.as_tensor(logit_ids)] - last.mean()).numpy()
    ones = np.ones(n_layers * prompt.n_pos + prompt.n_pos)
    return np.r_[prompt.sources.acts.double().numpy(), ones, logit_values]
