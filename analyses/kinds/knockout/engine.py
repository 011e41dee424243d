"""Attention knockout's engine: many knockouts of one prompt in one batched forward.

Contract. The caller gives a prompt's tokens [1, pos], one query position, and knockouts,
each a window of layers and a set of key positions. In every layer of its window and every
head, a knockout sets the query's attention scores to those keys to −inf before the softmax;
equivalently (what is done here, on `hook_pattern`) it zeroes those entries of the query's
softmax row and divides the row by what is left, so the kept keys keep their proportions
(Geva et al. 2023, §5). Nothing else changes: other queries, other layers and every weight
are the model's own. A row with nothing cut is left untouched, bit for bit, so an empty
knockout returns exactly the intact run's numbers; a row with every key cut (a model without
BOS, source `all`) attends to nothing and its heads write zero there.

All knockouts of a prompt run as one batch (row 0: the intact model; row i: knockout i),
in chunks of `MAX_BATCH` rows, so a sweep costs about one forward per chunk.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

MAX_BATCH = 32  # knockouts per forward: bounded activation memory on long prompts
PATTERN = "blocks.{layer}.attn.hook_pattern"


@dataclass(frozen=True)
class Knockout:
    layers: tuple[int, ...]  # the window: the layers whose attention is cut
    keys: tuple[int, ...]  # the key positions cut from the query's row


def cut_row(pattern: Float[Tensor, "batch head q k"], query: int, blocked: Bool[Tensor, "batch k"]
            ) -> Float[Tensor, "batch head q k"]:
    """`pattern` with the query's row renormalised over the keys not `blocked` (per batch
    row); rows with nothing blocked are returned unchanged."""
    row = pattern[:, :, query, :]  # [batch, head, k]
    kept = row.masked_fill(blocked[:, None, :], 0.0)
    total = kept.sum(-1, keepdim=True)  # [batch, head, 1]
    renormalised = torch.where(total > 0, kept / total.clamp_min(torch.finfo(kept.dtype).tiny),
                               torch.zeros_like(kept))
    touched = blocked.any(-1)[:, None, None]  # [batch, 1, 1]
    out = pattern.clone()
    out[:, :, query, :] = torch.where(touched, renormalised, row)
    return out


def _hook(pattern: Tensor, hook, query: int, blocked: Tensor) -> Tensor:
    return cut_row(pattern, query, blocked.to(pattern.device))


def blocked_by_layer(knockouts: list[Knockout], n_layers: int, n_pos: int
                     ) -> dict[int, Bool[Tensor, "batch k"]]:
    """Per layer that any knockout touches, which keys each batch row cuts there
    (row 0, the intact run, cuts nothing)."""
    blocked: dict[int, Tensor] = {}
    for row, knockout in enumerate(knockouts, start=1):
        for layer in knockout.layers:
            if not 0 <= layer < n_layers:
                raise ValueError(f"layer {layer} is not in a {n_layers}-layer model")
            mask = blocked.setdefault(layer, torch.zeros(len(knockouts) + 1, n_pos, dtype=torch.bool))
            mask[row, list(knockout.keys)] = True
    return blocked


@dataclass(frozen=True)
class Probabilities:
    answer: int  # the token whose probability is read (the intact run's top-1 when not given)
    intact: Float[Tensor, "knockout"]  # noqa: F821 - a jaxtyping shape; the intact run's probability, from each knockout's own batch
    knocked: Float[Tensor, "knockout"]  # noqa: F821 - a jaxtyping shape; the probability with the knockout applied


@torch.no_grad()
def answer_probs(bridge, tokens: Int[Tensor, "1 pos"], query: int, knockouts: list[Knockout],
                 answer: int | None = None) -> Probabilities:
    """The answer's probability at the prompt's last position with each knockout applied,
    and intact (see the module contract). Each chunk of knockouts runs beside its own intact
    row, so a knockout and its baseline always come from the same batched forward."""
    n_pos = tokens.shape[1]
    if not 0 <= query < n_pos:
        raise ValueError(f"query position {query} is not in a {n_pos}-token prompt")
    intact, knocked = [], []
    for lo in range(0, max(1, len(knockouts)), MAX_BATCH):
        part = knockouts[lo:lo + MAX_BATCH]
        blocked = blocked_by_layer(part, bridge.cfg.n_layers, n_pos)  # {layer: [batch, k]}
        hooks = [(PATTERN.format(layer=layer), partial(_hook, query=query, blocked=mask))
                 for layer, mask in blocked.items()]
        logits = bridge.run_with_hooks(tokens.expand(len(part) + 1, -1), fwd_hooks=hooks)
        probs = logits[:, -1].float().softmax(-1)  # [batch, d_vocab]; row 0 intact
        if answer is None:
            answer = int(probs[0].argmax())
        intact.append(probs[0, answer].expand(len(part)))
        knocked.append(probs[1:, answer])
    return Probabilities(answer, torch.cat(intact).cpu(), torch.cat(knocked).cpu())
