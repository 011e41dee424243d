"""Knock out components: a head's output (`hook_z`), a layer's attention output or its
MLP's output, replaced by zero or by its mean over the neutral text.

Only positions after BOS are ablated (position 0 is the attention sink every head leans
on; knocking it out breaks the model in a way no circuit explains), as in the head
detectors' ablation (`analyses.kinds.heads`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from analyses.core.errors import SpecError
from analyses.core.listtext import Component
from analyses.kinds.interventions.neutral import neutral_tokens
from analyses.kinds.interventions.positions import Positions

HOOKS = {"head": "blocks.{layer}.attn.hook_z",  # [batch, pos, head, d_head]
         "attn": "blocks.{layer}.hook_attn_out",  # [batch, pos, d_model]
         "mlp": "blocks.{layer}.hook_mlp_out"}


def hook_name(component: Component) -> str:
    return HOOKS[component.site].format(layer=component.layer)


def check_components(bridge, components: list[Component]) -> None:
    """Each component exists in this model, else a SpecError naming `ablate`."""
    n_layers, n_heads = int(bridge.cfg.n_layers), int(bridge.cfg.n_heads)
    for c in components:
        if c.layer >= n_layers:
            raise SpecError("ablate", f"{c.label}: the model has {n_layers} layers (0 to {n_layers - 1})")
        if c.site == "head" and c.head >= n_heads:
            raise SpecError("ablate", f"{c.label}: layer {c.layer} has {n_heads} heads (0 to {n_heads - 1})")


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
        values = {name: cache[name][0, 1:].float().mean(0) for name in names}
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
            after_bos = positions.current(x.device) >= 1  # [pos]
            value = ablation.values[name].to(x.dtype)
            if chosen:  # x: [batch, pos, head, d_head]
                mask = torch.zeros(x.shape[1], x.shape[2], dtype=torch.bool, device=x.device)
                mask[:, chosen] = True
                mask &= after_bos[:, None]
                return torch.where(mask[None, :, :, None], value[None, None], x)
            return torch.where(after_bos[None, :, None], value[None, None], x)  # [batch, pos, d]
        return hook

    return [(name, replace(name, chosen)) for name, chosen in heads.items()]
