"""Knock out components: a head's output (`hook_z`), a layer's attention output or its
MLP's output, replaced by zero or by its mean over the neutral text.

Only positions after BOS are ablated, and means are taken over positions after BOS only
(`analyses.kinds.bos`: BOS is the attention sink every head leans on; knocking it out breaks
the model in a way no circuit explains). `MeanAfterBos` and `replace_after_bos` are the one
definition of mean ablation, shared with the head detectors' ablation (`analyses.kinds.heads`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from analyses.core.listtext import Component
from analyses.kinds.bos import first_after_bos, past_bos
from analyses.kinds.interventions.neutral import neutral_tokens
from analyses.kinds.interventions.positions import Positions
from analyses.kinds.ranges import check_index, check_layer

HOOKS = {"head": "blocks.{layer}.attn.hook_z",  # [batch, pos, head, d_head]
         "attn": "blocks.{layer}.hook_attn_out",  # [batch, pos, d_model]
         "mlp": "blocks.{layer}.hook_mlp_out"}


def hook_name(component: Component) -> str:
    return HOOKS[component.site].format(layer=component.layer)


def check_components(bridge, components: list[Component]) -> None:
    """Each component exists in this model, else a SpecError naming `ablate`."""
    n_heads = int(bridge.cfg.n_heads)
    for c in components:
        check_layer(bridge, c.layer, field="ablate", label=c.label)
        if c.site == "head":
            check_index("ablate", c.head, n_heads, f"layer {c.layer} has {n_heads} heads", label=c.label)


class MeanAfterBos:
    """A hook output's mean over batch rows and positions after BOS, gathered over as many
    forward passes as it takes: what mean ablation puts in its place."""

    def __init__(self, first: int):
        self.first = first  # the first position after BOS
        self.total: Tensor | float = 0.0
        self.count = 0

    def add(self, x: Float[Tensor, "batch pos ..."]) -> None:
        kept = past_bos(x, self.first).float()
        self.total = self.total + kept.sum((0, 1))
        self.count += kept.shape[0] * kept.shape[1]

    @property
    def mean(self) -> Float[Tensor, "..."]:
        return self.total / self.count


def replace_after_bos(x: Tensor, value: Tensor, changeable: Bool[Tensor, "pos"],  # noqa: F821
                      heads: list[int] | None = None) -> Tensor:
    """`x` with `value` at the `changeable` positions: x [batch, pos, head, d_head] with
    value [head, d_head] for the `heads` chosen, or x [batch, pos, d] with value [d]."""
    value = value.to(x.dtype)
    if heads:
        mask = torch.zeros(x.shape[1], x.shape[2], dtype=torch.bool, device=x.device)  # [pos, head]
        mask[:, heads] = True
        mask &= changeable.to(x.device)[:, None]
        return torch.where(mask[None, :, :, None], value[None, None], x)
    return torch.where(changeable.to(x.device)[None, :, None], value[None, None], x)


@dataclass(frozen=True)
class Ablation:
    """What to knock out and what replaces it: `values[hook]` is [head, d_head] for a
    layer's heads (only the chosen heads' rows are used), [d_model] for a whole output."""

    components: tuple[Component, ...]
    how: str  # "zero" or "mean"
    values: dict[str, Tensor]

    @property
    def label(self) -> str:
        return ",".join(c.label for c in self.components)


@torch.no_grad()
def prepare(bridge, components: list[Component], how: str) -> Ablation:
    """The replacement values: zeros, or each hook's mean over the neutral text's
    positions after BOS (one forward pass)."""
    check_components(bridge, components)
    names = sorted({hook_name(c) for c in components})
    if how == "zero":
        shapes = {}
        cfg = bridge.cfg
        for name in names:
            shapes[name] = (int(cfg.n_heads), int(cfg.d_head)) if name.endswith("hook_z") else (int(cfg.d_model),)
        device = next(bridge.parameters()).device
        values = {name: torch.zeros(shape, device=device) for name, shape in shapes.items()}
    else:
        _, cache = bridge.run_with_cache(neutral_tokens(bridge), names_filter=names)
        values = {}
        for name in names:
            mean = MeanAfterBos(first_after_bos(bridge))
            mean.add(cache[name])  # [1, pos, ...]
            values[name] = mean.mean
    return Ablation(tuple(components), how, values)


def ablation_hooks(ablation: Ablation, positions: Positions) -> list[tuple[str, object]]:
    """Forward hooks replacing each chosen component's output after BOS by its value."""
    heads: dict[str, list[int]] = {}
    for c in ablation.components:
        heads.setdefault(hook_name(c), [])
        if c.site == "head":
            heads[hook_name(c)].append(c.head)

    def replace(name: str, chosen: list[int]):
        def hook(x: Tensor, hook) -> Tensor:
            return replace_after_bos(x, ablation.values[name], positions.changeable(x.device), chosen)
        return hook

    return [(name, replace(name, chosen)) for name, chosen in heads.items()]
