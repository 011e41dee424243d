"""Node interventions: set a latent's activation and compare the graph's prediction with the model.

- predicted: the graph is the linearised replacement model, so changing latent s by d changes
  every node along every path: d x J + d x J^2 + ... with J[t, s] = edge(s -> t) / value(s)
  (edges scale with their source's value), read at the logit nodes (logit minus mean logit);
- actual: the real model, with the transcoder's decoder write at that latent's layer and
  position changed by d x W_dec[latent] (added to the MLP's true output), attention, norms and
  every other MLP free to respond.
The gap is what the frozen attention, frozen norms and linearised latents hide.

An operation is `x0` (zero it), `x-1` (flip it), `xK` (scale by K) or `=V` (set it to V).
"""
from __future__ import annotations

import re

import numpy as np
import torch

from analyses.core.errors import SpecError
from analyses.kinds.graph.attribution import Attribution

_OP = re.compile(r"^(x|=)\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)$")


def parse_op(text: str) -> tuple[str, float]:
    match = _OP.match(text.strip())
    if not match:
        raise SpecError("intervene", f"{text.strip()[:40]!r}: an operation is xK (scale by K: x0, x-1, x2) "
                                     "or =V (set to V)")
    return match.group(1), float(match.group(2))


def parse(text: str) -> list[tuple[str, str]]:
    """`1.517@13:x0, 0.3@5:=2` -> [(node id, operation text)]."""
    items = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        node, sep, op = part.rpartition(":")
        if not sep or not node:
            raise SpecError("intervene", f"{part[:40]!r}: expected NODE:OP, e.g. 1.517@13:x0")
        parse_op(op)
        items.append((node.strip(), op.strip()))
    return items


def new_value(old: float, op: str) -> float:
    kind, number = parse_op(op)
    return old * number if kind == "x" else number


def predicted_change(graph: Attribution, node: int, delta: float) -> np.ndarray:
    """Change of every node when latent `node` changes by `delta`, through all paths of the
    linearised graph; [node]."""
    values = graph.values
    per_unit = np.zeros_like(graph.adjacency, dtype=np.float64)
    sources = slice(0, graph.n_features)  # only latents pass a change on (errors, tokens fixed)
    per_unit[:, sources] = graph.adjacency[:, sources] / np.where(values[sources] == 0, 1, values[sources])
    change = np.zeros(len(values))
    change[node] = delta
    step = change.copy()
    for _ in range(graph.n_layers + 2):  # a path crosses each layer at most once
        step = per_unit @ step
        if not step.any():
            break
        change += step
    return change


@torch.no_grad()
def actual_change(bridge, tokens, layer: int, pos: int, direction: torch.Tensor, delta: float,
                  logit_ids: np.ndarray) -> np.ndarray:
    """Change of each logit minus the mean logit at the last position, in the real model, when
    `delta x direction` is added to layer `layer`'s MLP output at `pos`."""
    def add(value, hook):
        value = value.clone()
        value[:, pos] += delta * direction.to(value.dtype)
        return value

    def read(logits):
        last = logits[0, -1].double()
        return (last[torch.as_tensor(logit_ids)] - last.mean()).numpy()

    before = read(bridge(tokens))
    with bridge.hooks(fwd_hooks=[(f"blocks.{layer}.hook_mlp_out", add)]):
        after = read(bridge(tokens))
    return after - before
